/*
 * test_shaped.c - the full-shape entry points of the C API (inloop_model_run_shaped_f32/_f64,
 * inloop_model_output_shapes; docs/ENGINE.md §6.1) as a C program sees them.
 *
 *   gcc -std=c99 -Wall -Wextra -pedantic -Werror -IInclude Tests/c/test_shaped.c \
 *       -L.build/release -lInLoop -Wl,-rpath,$PWD/.build/release -o build/test_shaped
 *   build/test_shaped Tests/fixtures
 *
 * Uses Tests/fixtures/onnx/shaped.onnx (make_shaped.py): x (N,T,4), mask (4), s () and lev (T,1) ->
 * y = x*mask*s + lev (N,T,4) and z = transpose(x) (4,T,N). References are computed here, directly.
 * Checks: results and reported shapes at two (N, T) pairs, f32 against f64, a size seen before allocates
 * nothing, output_shapes, a layer-stack model through run_shaped against forward_f32 (bitwise), the
 * batch convenience, training and derivatives refused with UNSUPPORTED, and every bad argument: NULL pointers, wrong counts and
 * ranks, a dimension that contradicts the model, a symbol bound to two values, zero and overflowing
 * sizes, too little output room; outputs untouched then.
 * Prints "PASS <name>" / "FAIL <name>: <detail>" and "N passed, M failed"; exit status 1 on a failure.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inloop.h"

#include "alloc_count.h"

static int n_pass, n_fail;

static void report(const char *name, int ok, const char *fmt, ...) {
    va_list ap;
    if (ok) { printf("PASS %s\n", name); n_pass++; return; }
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    n_fail++;
}

/* status == want and a non-empty message mentioning `text` (if not NULL). */
static void expect(const char *name, inloop_status got, inloop_status want, const char *text) {
    const char *msg = inloop_last_error();
    int ok = got == want && msg && msg[0] && (!text || strstr(msg, text));
    report(name, ok, "got %s, expected %s mentioning \"%s\" (last error: \"%s\")", inloop_status_string(got),
           inloop_status_string(want), text ? text : "", msg ? msg : "(NULL)");
}

#define MAXN 6
#define MAXT 5

static float x[MAXN * MAXT * 4], mask[4], s[1], lev[MAXT];
static float y[MAXN * MAXT * 4 + 1], z[MAXN * MAXT * 4 + 1];

static void fill_inputs(int n, int t) {
    int i;
    for (i = 0; i < n * t * 4; i++) x[i] = (float)((i * 7) % 11) * 0.25f - 1.0f;
    for (i = 0; i < 4; i++) mask[i] = (float)(i % 2);      /* a land-sea mask */
    s[0] = 1.5f;
    for (i = 0; i < t; i++) lev[i] = 0.125f * (float)(i + 1);
}

/* y and z against direct loops; y exactly as float32 evaluates x*mask*s + lev. */
static int check_values(int n, int t, const float *yy, const float *zz, char *d, size_t dn) {
    int i, j, k;
    for (i = 0; i < n; i++)
        for (j = 0; j < t; j++)
            for (k = 0; k < 4; k++) {
                float want = x[(i * t + j) * 4 + k] * mask[k] * s[0] + lev[j];
                float got = yy[(i * t + j) * 4 + k];
                if (fabsf(got - want) > 1e-6f * (1.0f + fabsf(want))) {
                    snprintf(d, dn, "y[%d,%d,%d] = %g, expected %g", i, j, k, got, want);
                    return 0;
                }
                if (zz[(k * t + j) * n + i] != x[(i * t + j) * 4 + k]) {
                    snprintf(d, dn, "z[%d,%d,%d] = %g, expected x[%d,%d,%d] = %g", k, j, i, zz[(k * t + j) * n + i], i, j, k,
                             x[(i * t + j) * 4 + k]);
                    return 0;
                }
            }
    return 1;
}

static inloop_status run32(inloop_model *m, int n, int t, const int64_t *caps, int64_t *oranks, int64_t *odims, int64_t maxd) {
    int64_t ranks[4] = {3, 1, 0, 2};
    int64_t dims[6];
    const float *ins[4];
    float *outs[2];
    dims[0] = n; dims[1] = t; dims[2] = 4; dims[3] = 4; dims[4] = t; dims[5] = 1;
    ins[0] = x; ins[1] = mask; ins[2] = s; ins[3] = lev;
    outs[0] = y; outs[1] = z;
    return inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, outs, oranks, odims, maxd);
}

static void check_model(const char *fixtures) {
    char path[1024], d[512];
    inloop_model *m = NULL;
    inloop_status st;
    int64_t caps[2] = {MAXN * MAXT * 4, MAXN * MAXT * 4};
    int64_t oranks[2], odims[6];
    int pairs[2][2] = {{2, 3}, {5, 1}}, p, i;

    snprintf(path, sizeof path, "%s/onnx/shaped.onnx", fixtures);
    st = inloop_model_load(path, &m);
    report("shaped/load", st == INLOOP_OK, "%s: %s", inloop_status_string(st), inloop_last_error());
    if (st != INLOOP_OK) return;

    for (p = 0; p < 2; p++) {
        int n = pairs[p][0], t = pairs[p][1];
        char name[64];
        fill_inputs(n, t);
        st = run32(m, n, t, caps, oranks, odims, 6);
        snprintf(name, sizeof name, "shaped/run_f32_N%d_T%d", n, t);
        report(name, st == INLOOP_OK && check_values(n, t, y, z, d, sizeof d), "%s: %s %s", inloop_status_string(st),
               st == INLOOP_OK ? d : inloop_last_error(), "");
        snprintf(name, sizeof name, "shaped/out_shapes_N%d_T%d", n, t);
        report(name, oranks[0] == 3 && oranks[1] == 3 && odims[0] == n && odims[1] == t && odims[2] == 4 && odims[3] == 4 &&
                         odims[4] == t && odims[5] == n,
               "ranks %lld %lld dims %lld %lld %lld / %lld %lld %lld", (long long)oranks[0], (long long)oranks[1],
               (long long)odims[0], (long long)odims[1], (long long)odims[2], (long long)odims[3], (long long)odims[4],
               (long long)odims[5]);
    }
    {   /* f64 against f32 (the model computes in float32) */
        int n = 2, t = 3, k, ok = 1;
        double xd[MAXN * MAXT * 4], md[4], sd[1], ld[MAXT], yd[MAXN * MAXT * 4], zd[MAXN * MAXT * 4];
        int64_t ranks[4] = {3, 1, 0, 2}, dims[6] = {2, 3, 4, 4, 3, 1};
        const double *ins[4];
        double *outs[2];
        fill_inputs(n, t);
        for (k = 0; k < n * t * 4; k++) xd[k] = x[k];
        for (k = 0; k < 4; k++) md[k] = mask[k];
        sd[0] = s[0];
        for (k = 0; k < t; k++) ld[k] = lev[k];
        ins[0] = xd; ins[1] = md; ins[2] = sd; ins[3] = ld;
        outs[0] = yd; outs[1] = zd;
        st = inloop_model_run_shaped_f64(m, 4, ranks, dims, ins, 2, caps, outs, NULL, NULL, 0);
        (void)run32(m, n, t, caps, oranks, odims, 6);
        for (k = 0; st == INLOOP_OK && k < n * t * 4; k++) ok &= yd[k] == (double)y[k] && zd[k] == (double)z[k];
        report("shaped/run_f64_equals_f32", st == INLOOP_OK && ok, "%s: %s", inloop_status_string(st), inloop_last_error());
    }
    if (ALLOC_COUNTING) {   /* sizes seen before: nothing compiled, nothing allocated */
        long allocs;
        fill_inputs(5, 1);
        (void)run32(m, 5, 1, caps, oranks, odims, 6);
        count_start();
        for (i = 0; i < 10; i++) st = run32(m, 5, 1, caps, oranks, odims, 6);
        allocs = count_stop(NULL);
        report("shaped/no_alloc_for_sizes_seen_before", st == INLOOP_OK && allocs == 0, "%s, %ld allocations in 10 calls",
               inloop_status_string(st), allocs);
    }
    {   /* output_shapes without running */
        int64_t ranks[4] = {3, 1, 0, 2}, dims[6] = {6, 5, 4, 4, 5, 1};
        for (i = 0; i < 6; i++) odims[i] = -9;
        st = inloop_model_output_shapes(m, 4, ranks, dims, 2, oranks, odims, 6);
        report("shaped/output_shapes", st == INLOOP_OK && oranks[0] == 3 && odims[0] == 6 && odims[1] == 5 && odims[2] == 4 &&
                                           oranks[1] == 3 && odims[3] == 4 && odims[4] == 5 && odims[5] == 6,
               "%s: %s", inloop_status_string(st), inloop_last_error());
        expect("shaped/output_shapes_room", inloop_model_output_shapes(m, 4, ranks, dims, 2, oranks, odims, 5),
               INLOOP_ERR_SIZE_MISMATCH, "room for 5");
        expect("shaped/output_shapes_null", inloop_model_output_shapes(m, 4, ranks, dims, 2, NULL, odims, 6),
               INLOOP_ERR_NULL_POINTER, "out_ranks");
    }
    {   /* the batch convenience does not apply: T is symbolic, z moves the batch */
        const float *ins[4] = {x, mask, s, lev};
        float *outs[2] = {y, z};
        expect("shaped/convenience_refused", inloop_model_run_f32(m, 2, 4, ins, 2, outs), INLOOP_ERR_UNSUPPORTED, "full shapes");
    }

    {   /* training and derivatives keep needing one batched input and output: a clear UNSUPPORTED */
        inloop_trainer *t = NULL;
        float dx[MAXN * MAXT * 4] = {0}, dy[MAXN * MAXT * 4];
        expect("shaped/trainer_refused", inloop_trainer_create_from_model(m, NULL, &t), INLOOP_ERR_UNSUPPORTED, "input");
        report("shaped/trainer_refused_no_handle", t == NULL, "a trainer handle was returned");
        if (t) (void)inloop_trainer_free(t);
        expect("shaped/jvp_refused", inloop_model_jvp_f32(m, x, dx, 2, y, dy), INLOOP_ERR_UNSUPPORTED, "input");
    }

    /* bad arguments: each leaves y untouched */
    {
        int64_t ranks[4] = {3, 1, 0, 2}, dims[6] = {2, 3, 4, 4, 3, 1};
        const float *ins[4] = {x, mask, s, lev};
        float *outs[2] = {y, z};
        int ok;
        struct { const char *name; int64_t ranks[4]; int64_t dims[6]; inloop_status want; const char *text; } cases[] = {
            {"shaped/bad_rank", {2, 1, 0, 2}, {2, 3, 4, 4, 3, 1}, INLOOP_ERR_SIZE_MISMATCH, "rank 2 given"},
            {"shaped/negative_rank", {3, -1, 0, 2}, {2, 3, 4, 4, 3, 1}, INLOOP_ERR_INVALID_ARGUMENT, "in_ranks[1]"},
            {"shaped/huge_rank", {3, 1, 0, 1000}, {2, 3, 4, 4, 3, 1}, INLOOP_ERR_INVALID_ARGUMENT, "in_ranks[3]"},
            {"shaped/dim_contradicts_model", {3, 1, 0, 2}, {2, 3, 4, 5, 3, 1}, INLOOP_ERR_SIZE_MISMATCH, "the model takes 4"},
            {"shaped/symbol_bound_twice", {3, 1, 0, 2}, {2, 3, 4, 4, 2, 1}, INLOOP_ERR_SIZE_MISMATCH, "made it"},
            {"shaped/zero_dim", {3, 1, 0, 2}, {0, 3, 4, 4, 3, 1}, INLOOP_ERR_INVALID_ARGUMENT, "dimension 0"},
            {"shaped/negative_dim", {3, 1, 0, 2}, {-2, 3, 4, 4, 3, 1}, INLOOP_ERR_INVALID_ARGUMENT, "dimension -2"},
            {"shaped/huge_dim", {3, 1, 0, 2}, {INT64_MAX, 3, 4, 4, 3, 1}, INLOOP_ERR_INVALID_ARGUMENT, "dimension"},
            {"shaped/overflowing_size", {3, 1, 0, 2}, {2147483647, 2147483647, 4, 4, 2147483647, 1}, INLOOP_ERR_INVALID_ARGUMENT,
             "too many elements"},
        };
        size_t c;
        for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            y[0] = 42.0f;
            expect(cases[c].name,
                   inloop_model_run_shaped_f32(m, 4, cases[c].ranks, cases[c].dims, ins, 2, caps, outs, oranks, odims, 6),
                   cases[c].want, cases[c].text);
            report("shaped/untouched_after_error", y[0] == 42.0f, "%s wrote y", cases[c].name);
        }
        y[0] = 42.0f;
        {
            int64_t small[2] = {2 * 3 * 4 - 1, 100};
            expect("shaped/capacity_too_small", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, small, outs, oranks, odims, 6),
                   INLOOP_ERR_SIZE_MISMATCH, "room for 23");
        }
        expect("shaped/out_dims_too_small", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, outs, oranks, odims, 5),
               INLOOP_ERR_SIZE_MISMATCH, "room for 5");
        ok = y[0] == 42.0f;
        report("shaped/untouched_after_room_errors", ok, "y was written");
        expect("shaped/n_inputs", inloop_model_run_shaped_f32(m, 3, ranks, dims, ins, 2, caps, outs, oranks, odims, 6),
               INLOOP_ERR_SIZE_MISMATCH, "n_inputs = 3");
        expect("shaped/n_outputs", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 1, caps, outs, oranks, odims, 6),
               INLOOP_ERR_SIZE_MISMATCH, "n_outputs = 1");
        expect("shaped/null_model", inloop_model_run_shaped_f32(NULL, 4, ranks, dims, ins, 2, caps, outs, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, NULL);
        expect("shaped/null_ranks", inloop_model_run_shaped_f32(m, 4, NULL, dims, ins, 2, caps, outs, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, "in_ranks");
        expect("shaped/null_dims", inloop_model_run_shaped_f32(m, 4, ranks, NULL, ins, 2, caps, outs, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, "in_dims");
        expect("shaped/null_inputs", inloop_model_run_shaped_f32(m, 4, ranks, dims, NULL, 2, caps, outs, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, "inputs");
        expect("shaped/null_outputs", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, NULL, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, "outputs");
        expect("shaped/null_capacity", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, NULL, outs, oranks, odims, 6),
               INLOOP_ERR_NULL_POINTER, "out_capacity");
        expect("shaped/null_out_ranks_only", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, outs, NULL, odims, 6),
               INLOOP_ERR_NULL_POINTER, "out_ranks");
        expect("shaped/negative_max_out_dims", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, outs, oranks, odims, -1),
               INLOOP_ERR_INVALID_ARGUMENT, "max_out_dims");
        {
            const float *nin[4] = {x, NULL, s, lev};
            float *nout[2] = {y, NULL};
            expect("shaped/null_input_k", inloop_model_run_shaped_f32(m, 4, ranks, dims, nin, 2, caps, outs, oranks, odims, 6),
                   INLOOP_ERR_NULL_POINTER, "inputs[1]");
            expect("shaped/null_output_k", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, nout, oranks, odims, 6),
                   INLOOP_ERR_NULL_POINTER, "outputs[1]");
        }
        {
            float *alias[2] = {(float *)x, z};
            expect("shaped/output_overlaps_input", inloop_model_run_shaped_f32(m, 4, ranks, dims, ins, 2, caps, alias, oranks, odims, 6),
                   INLOOP_ERR_INVALID_ARGUMENT, "overlaps");
        }
        report("shaped/untouched_after_all_errors", y[0] == 42.0f, "y was written");
    }
    (void)inloop_model_free(m);
}

/* A layer-stack model through run_shaped: [batch, n_in] -> [batch, n_out], bitwise as forward_f32. */
static void check_layer_stack(const char *fixtures) {
    char path[1024];
    inloop_model *m = NULL;
    inloop_status st;
    int64_t nin = 0, nout = 0, i;
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    st = inloop_model_load(path, &m);
    report("stack/load", st == INLOOP_OK, "%s: %s", inloop_status_string(st), inloop_last_error());
    if (st != INLOOP_OK) return;
    (void)inloop_model_input_size(m, &nin);
    (void)inloop_model_output_size(m, &nout);
    if (nin > 0 && nout > 0 && nin * 3 <= (int64_t)(sizeof x / sizeof x[0]) && nout * 3 <= MAXN * MAXT * 4) {
        float ya[MAXN * MAXT * 4], yb[MAXN * MAXT * 4];
        int64_t ranks[1] = {2}, dims[2] = {3, nin}, caps[1] = {nout * 3}, oranks[1], odims[2];
        const float *ins[1] = {x};
        float *outs[1] = {yb};
        int same = 1;
        for (i = 0; i < nin * 3; i++) x[i] = (float)(i % 13) * 0.1f - 0.6f;
        st = inloop_model_forward_f32(m, x, 3, ya);
        st = st == INLOOP_OK ? inloop_model_run_shaped_f32(m, 1, ranks, dims, ins, 1, caps, outs, oranks, odims, 2) : st;
        for (i = 0; st == INLOOP_OK && i < nout * 3; i++) same &= memcmp(&ya[i], &yb[i], sizeof(float)) == 0;
        report("stack/run_shaped_equals_forward", st == INLOOP_OK && same && oranks[0] == 2 && odims[0] == 3 && odims[1] == nout,
               "%s: %s", inloop_status_string(st), inloop_last_error());
        dims[1] = nin + 1;
        expect("stack/wrong_dim", inloop_model_run_shaped_f32(m, 1, ranks, dims, ins, 1, caps, outs, oranks, odims, 2),
               INLOOP_ERR_SIZE_MISMATCH, "the model takes");
    } else {
        printf("SKIP stack: mlp_medium sizes %lld -> %lld do not fit the test arrays\n", (long long)nin, (long long)nout);
    }
    (void)inloop_model_free(m);
}

/* A model without inputs (constant.onnx, make_constant.py: one Constant node): zero inputs, NULL arrays. */
static void check_no_inputs(const char *fixtures) {
    char path[1024];
    inloop_model *m = NULL;
    inloop_status st;
    float out[6] = {0}, want[6] = {1.5f, -2.0f, 3.0f, 0.25f, 7.0f, -1.0f};
    float *outs[1] = {out};
    int64_t caps[1] = {6}, oranks[1] = {0}, odims[2] = {0, 0}, n_in = -1;
    int k, same = 1;

    snprintf(path, sizeof path, "%s/onnx/constant.onnx", fixtures);
    st = inloop_model_load(path, &m);
    report("no_inputs/load", st == INLOOP_OK, "%s: %s", inloop_status_string(st), inloop_last_error());
    if (st != INLOOP_OK) return;
    st = inloop_model_num_inputs(m, &n_in);
    report("no_inputs/num_inputs", st == INLOOP_OK && n_in == 0, "%s, n = %lld", inloop_status_string(st), (long long)n_in);
    st = inloop_model_run_shaped_f32(m, 0, NULL, NULL, NULL, 1, caps, outs, oranks, odims, 2);
    for (k = 0; k < 6; k++) same = same && out[k] == want[k];
    report("no_inputs/run", st == INLOOP_OK && same && oranks[0] == 2 && odims[0] == 2 && odims[1] == 3,
           "%s: %s (rank %lld)", inloop_status_string(st), inloop_last_error(), (long long)oranks[0]);
    (void)inloop_model_free(m);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    check_model(argv[1]);
    check_layer_stack(argv[1]);
    check_no_inputs(argv[1]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
