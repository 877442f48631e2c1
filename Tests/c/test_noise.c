/*
 * test_noise.c - noise inputs of stochastic parameterizations from C (inloop_model_set_noise_input,
 * inloop_model_set_noise_step, inloop_noise_normal; issue 15, item 4) and the CRPS trainer.
 *
 *   build/test_noise Tests/fixtures
 *
 * Uses Tests/fixtures/mlp_medium.safetensors. A forward with noise features equals, bitwise, a plain
 * forward of the same inputs filled here with inloop_noise_normal at each column's key (both models
 * in reproducible mode: outputs independent of the batch), in float32
 * and float64, with consecutive columns and with blocks/stride (ensemble members of a decomposed
 * grid); one batch of 64 columns equals 4 calls of 16 columns with their first columns (any split
 * across ranks draws the same numbers), at 1 and 2 threads; the caller's x is unchanged; calls at a
 * batch seen allocate nothing; a trainer with `loss: {type: crps, members: 4}` and `noise:` steps
 * (allocating nothing after the first step) and its checkpoint restarts bitwise (the noise key is the trainer's step); every bad argument gets its status.
 * Prints "PASS <name>" / "FAIL <name>: <detail>" and "N passed, M failed"; exit status 1 on a failure.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inloop.h"

#include "alloc_count.h"

#include "check.h"

#define NCOL 64
#define FIRST 2   /* first noise feature (0-based) */
#define COUNT 3   /* noise features */
#define SEED 20261204
#define STEP 4711

/* column j of a batch: first + (j / block) * stride + j % block (block 0: first + j) */
static int64_t column(int64_t j, int64_t first, int64_t block, int64_t stride) {
    return block == 0 ? first + j : first + (j / block) * stride + j % block;
}

/* x with the noise features of batch columns 0..n-1 filled by inloop_noise_normal */
static int fill(double *x, int n, int64_t nf, int64_t first, int64_t block, int64_t stride) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < COUNT; i++) {
            double z;
            if (inloop_noise_normal(SEED, STEP, column(j, first, block, stride), i, &z) != INLOOP_OK) return 0;
            x[(size_t)j * nf + FIRST + i] = z;
        }
    return 1;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

int main(int argc, char **argv) {
    char path[1024];
    inloop_model *m = NULL, *plain = NULL;
    int64_t nf = 0, no = 0;
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    inloop_set_num_threads(1);   /* OpenBLAS's threaded GEMM allocates its buffers per call */
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    if (inloop_model_load(path, &m) != INLOOP_OK || inloop_model_load(path, &plain) != INLOOP_OK ||
        inloop_model_input_size(m, &nf) != INLOOP_OK || inloop_model_output_size(m, &no) != INLOOP_OK || nf < FIRST + COUNT) {
        printf("FAIL load %s: %s\n0 passed, 1 failed\n", path, inloop_last_error());
        return 1;
    }
    double *x = malloc(sizeof(double) * NCOL * nf), *x0 = malloc(sizeof(double) * NCOL * nf), *xf = malloc(sizeof(double) * NCOL * nf);
    double *y = malloc(sizeof(double) * NCOL * no), *yr = malloc(sizeof(double) * NCOL * no);
    float *x4 = malloc(sizeof(float) * NCOL * nf), *xf4 = malloc(sizeof(float) * NCOL * nf);
    float *y4 = malloc(sizeof(float) * NCOL * no), *yr4 = malloc(sizeof(float) * NCOL * no);
    for (int i = 0; i < NCOL * nf; i++) x[i] = sin(0.37 * i) * 1.5;
    memcpy(x0, x, sizeof(double) * NCOL * nf);

    expect("set_noise_input", inloop_model_set_noise_input(m, 0, FIRST, COUNT, SEED), INLOOP_OK);
    /* batch-size independent outputs (the split checks below compare calls of 16 and 64 columns) */
    expect("set_reproducible", inloop_model_set_reproducible(m, 1), INLOOP_OK);
    expect("set_reproducible/plain", inloop_model_set_reproducible(plain, 1), INLOOP_OK);

    /* consecutive columns from 1000, float64 */
    expect("set_noise_step", inloop_model_set_noise_step(m, STEP, 1000, 0, 0), INLOOP_OK);
    memcpy(xf, x, sizeof(double) * NCOL * nf);
    int ok = fill(xf, NCOL, nf, 1000, 0, 0);
    expect("forward_f64/plain_reference", inloop_model_forward_f64(plain, xf, NCOL, yr), INLOOP_OK);
    expect("forward_f64/noise", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_OK);
    report("f64/equals_inputs_filled_with_noise_normal_bitwise", ok && same_bits(y, yr, sizeof(double) * NCOL * no), "outputs differ");
    report("f64/caller_array_unchanged", same_bits(x, x0, sizeof(double) * NCOL * nf), "x changed");

    /* float32: the normals rounded to float */
    for (int i = 0; i < NCOL * nf; i++) { x4[i] = (float)x[i]; xf4[i] = (float)xf[i]; }
    expect("forward_f32/plain_reference", inloop_model_forward_f32(plain, xf4, NCOL, yr4), INLOOP_OK);
    expect("forward_f32/noise", inloop_model_forward_f32(m, x4, NCOL, y4), INLOOP_OK);
    report("f32/equals_inputs_filled_with_noise_normal_bitwise", same_bits(y4, yr4, sizeof(float) * NCOL * no), "outputs differ");

    /* 4 calls of 16 columns (as 4 ranks would) = 1 call of 64, at 1 and 2 threads */
    for (int threads = 1; threads <= 2; threads++) {
        inloop_set_num_threads(threads);
        ok = 1;
        for (int part = 0; part < 4; part++) {
            ok &= inloop_model_set_noise_step(m, STEP, 1000 + 16 * part, 0, 0) == INLOOP_OK;
            ok &= inloop_model_forward_f64(m, x + (size_t)16 * part * nf, 16, y + (size_t)16 * part * no) == INLOOP_OK;
        }
        char name[80];
        snprintf(name, sizeof name, "f64/split_4x16_equals_64_bitwise_%d_threads", threads);
        report(name, ok && same_bits(y, yr, sizeof(double) * NCOL * no), "outputs differ (%s)", inloop_last_error());
    }
    inloop_set_num_threads(1);

    /* blocks and stride: 4 members of 16 local columns of a 100-column grid, the rank's first column 48 */
    expect("set_noise_step/blocks", inloop_model_set_noise_step(m, STEP, 48, 16, 100), INLOOP_OK);
    memcpy(xf, x, sizeof(double) * NCOL * nf);
    ok = fill(xf, NCOL, nf, 48, 16, 100);
    expect("forward_f64/plain_reference_blocks", inloop_model_forward_f64(plain, xf, NCOL, yr), INLOOP_OK);
    expect("forward_f64/noise_blocks", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_OK);
    report("blocks/equals_inputs_filled_with_noise_normal_bitwise", ok && same_bits(y, yr, sizeof(double) * NCOL * no), "outputs differ");

    /* no allocation after the first call at a batch (both types) */
    inloop_model_forward_f32(m, x4, NCOL, y4);
    count_start();
    inloop_status st = INLOOP_OK;
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) {
        st = inloop_model_set_noise_step(m, STEP + k, 48, 16, 100);
        if (st == INLOOP_OK) st = inloop_model_forward_f64(m, x, NCOL, y);
        if (st == INLOOP_OK) st = inloop_model_forward_f32(m, x4, NCOL, y4);
    }
    long frees = 0, allocs = count_stop(&frees);
    report("no_alloc_after_first_call", st == INLOOP_OK && (!ALLOC_COUNTING || allocs == 0), "%s, %ld allocations",
           inloop_status_string(st), allocs);

    /* bad arguments */
    expect("set_noise_input/null", inloop_model_set_noise_input(NULL, 0, 0, 1, 1), INLOOP_ERR_NULL_POINTER);
    expect("set_noise_input/input_index", inloop_model_set_noise_input(m, 1, 0, 1, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_input/beyond_features", inloop_model_set_noise_input(m, 0, nf - 1, 2, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_input/negative_count", inloop_model_set_noise_input(m, 0, 0, -1, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/negative_step", inloop_model_set_noise_step(m, -1, 0, 0, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/negative_column", inloop_model_set_noise_step(m, 0, -5, 0, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/column_2^32", inloop_model_set_noise_step(m, 0, (int64_t)1 << 32, 0, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/stride_below_block", inloop_model_set_noise_step(m, 0, 0, 8, 7), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/near_2^32", inloop_model_set_noise_step(m, 0, ((int64_t)1 << 32) - 10, 0, 0), INLOOP_OK);
    expect("forward/columns_beyond_2^32", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_noise_step/no_noise_input", inloop_model_set_noise_step(plain, 0, 0, 0, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("noise_normal/null", inloop_noise_normal(1, 0, 0, 0, NULL), INLOOP_ERR_NULL_POINTER);
    expect("noise_normal/column", inloop_noise_normal(1, 0, (int64_t)1 << 32, 0, y), INLOOP_ERR_INVALID_ARGUMENT);
    {
        int64_t ranks[1] = {2}, dims[2], cap[1], oranks[1], odims[8];
        const double *in[1];
        double *out[1];
        dims[0] = 4; dims[1] = nf; cap[0] = 4 * no; in[0] = x; out[0] = y;
        expect("run_shaped/refused_with_noise", inloop_model_run_shaped_f64(m, 1, ranks, dims, in, 1, cap, out, oranks, odims, 8),
               INLOOP_ERR_UNSUPPORTED);
    }
    expect("set_noise_input/remove", inloop_model_set_noise_input(m, 0, 0, 0, 0), INLOOP_OK);
    expect("forward_f64/after_remove", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_OK);
    expect("forward_f64/plain", inloop_model_forward_f64(plain, x, NCOL, yr), INLOOP_OK);
    report("removed/plain_forward_again", same_bits(y, yr, sizeof(double) * NCOL * no), "outputs differ");

    /* a CRPS trainer with a noise feature: steps, checkpoint at step 5, restart: bitwise the same losses */
    {
        const char *cfg = "model:\n  inputs: 3\n  layers:\n    - {type: dense, out: 16, activation: tanh}\n    - {type: dense, out: 1}\n"
                          "loss: {type: crps, members: 4}\nnoise: {first: 2, count: 1, seed: 9}\noptimizer: {type: adam, lr: 0.01}\nseed: 2\n";
        const char *bad = "model:\n  inputs: 3\n  layers:\n    - {type: dense, out: 1}\nnoise: {first: 2, count: 2, seed: 9}\n";
        inloop_trainer *t = NULL, *r = NULL, *b = NULL;
        float tx[3 * 8], ty[8];
        double la[10], lb[10];
        char ck[1100];
        snprintf(ck, sizeof ck, "%s/test_noise.ckpt", argc > 2 ? argv[2] : "build");
        expect("trainer/create_crps_noise", inloop_trainer_create(cfg, &t), INLOOP_OK);
        expect("trainer/noise_beyond_inputs", inloop_trainer_create(bad, &b), INLOOP_ERR_INVALID_ARGUMENT);
        ok = t != NULL;
        for (int k = 0; k < 10 && ok; k++) {
            for (int s = 0; s < 8; s++) {
                tx[3 * s] = (float)sin(k + 0.3 * s); tx[3 * s + 1] = (float)cos(0.7 * k + s); tx[3 * s + 2] = 0;
                ty[s] = tx[3 * s] + 0.5f * tx[3 * s + 1];
            }
            if (k == 5) ok &= inloop_trainer_save_checkpoint(t, ck) == INLOOP_OK && inloop_trainer_load_checkpoint(ck, &r) == INLOOP_OK;
            ok &= inloop_trainer_step_f32(t, tx, ty, 8, &la[k]) == INLOOP_OK;
            if (k >= 5 && r) ok &= inloop_trainer_step_f32(r, tx, ty, 8, &lb[k]) == INLOOP_OK;
        }
        report("trainer/crps_losses_finite_and_positive", ok && isfinite(la[0]) && la[0] > 0, "%s", inloop_last_error());
        /* steps with noise rows and CRPS members allocate nothing after the first at a batch */
        count_start();
        inloop_status ts = INLOOP_OK;
        for (int k = 0; k < 10 && ts == INLOOP_OK; k++) ts = inloop_trainer_step_f32(t, tx, ty, 8, &la[0]);
        long tfrees = 0, tallocs = count_stop(&tfrees);
        report("trainer/crps_noise_steps_allocate_nothing", ts == INLOOP_OK && (!ALLOC_COUNTING || tallocs == 0),
               "%s, %ld allocations", inloop_status_string(ts), tallocs);
        report("trainer/checkpoint_restart_bitwise", ok && r && same_bits(la + 5, lb + 5, 5 * sizeof(double)), "losses differ after the restart");
        inloop_trainer_free(r);
        inloop_trainer_free(t);
        remove(ck);
    }

    inloop_model_free(m);
    inloop_model_free(plain);
    free(x); free(x0); free(xf); free(y); free(yr); free(x4); free(xf4); free(y4); free(yr4);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
