/*
 * test_ranges.c - input-range guards from C (inloop_model_set_range_check and friends; issue 15,
 * item 3), against references computed here with plain loops.
 *
 *   build/test_ranges_c Tests/fixtures
 *
 * Uses Tests/fixtures/mlp_medium.safetensors. Ranges from samples equal the samples' minimum and
 * maximum (and mean and population standard deviation within 1e-12); REPORT's per-column and
 * per-feature counts, FLAG_ONLY's flags and CLAMP's counts equal a loop's, in float32 and float64; CLAMP's
 * outputs are bitwise those of the model on the clamped inputs with the check off and the caller's x
 * is unchanged; repeated checked calls at one batch allocate nothing; every bad argument gets its status.
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

#include "check.h"

static uint64_t rng = 88172645463325252ull;
static double uniform(double a, double b) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return a + (b - a) * (double)(rng >> 11) / 9007199254740992.0;
}

#define NTRAIN 500
#define NCOL 300

/* per column the features outside [lo, hi] (NaN counts), per feature the columns */
static void reference(const double *x, int ncol, int nf, const double *lo, const double *hi, int32_t *col, int64_t *feat) {
    for (int j = 0; j < nf; j++) feat[j] = 0;
    for (int c = 0; c < ncol; c++) {
        col[c] = 0;
        for (int j = 0; j < nf; j++) {
            double v = x[(size_t)c * nf + j];
            if (!(v >= lo[j] && v <= hi[j])) { col[c]++; feat[j]++; }
        }
    }
}

int main(int argc, char **argv) {
    char path[1024];
    inloop_model *m = NULL;
    int64_t nf = 0, no = 0;
    inloop_set_num_threads(1);   /* OpenBLAS's threaded GEMM allocates its buffers per call */
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", argc > 1 ? argv[1] : "Tests/fixtures");
    if (inloop_model_load(path, &m) != INLOOP_OK || inloop_model_input_size(m, &nf) != INLOOP_OK ||
        inloop_model_output_size(m, &no) != INLOOP_OK) {
        printf("FAIL load %s: %s\n0 passed, 1 failed\n", path, inloop_last_error());
        return 1;
    }
    float *xt = malloc(sizeof(float) * NTRAIN * nf), *x4 = malloc(sizeof(float) * NCOL * nf);
    double *x = malloc(sizeof(double) * NCOL * nf), *xc = malloc(sizeof(double) * NCOL * nf), *xs = malloc(sizeof(double) * NCOL * nf);
    double *y = malloc(sizeof(double) * NCOL * no), *yc = malloc(sizeof(double) * NCOL * no);
    float *y4 = malloc(sizeof(float) * NCOL * no);
    double *lo = malloc(sizeof(double) * nf), *hi = malloc(sizeof(double) * nf), *mean = malloc(sizeof(double) * nf);
    double *sd = malloc(sizeof(double) * nf), *rlo = malloc(sizeof(double) * nf), *rhi = malloc(sizeof(double) * nf);
    int64_t *feat = malloc(sizeof(int64_t) * nf), *wfeat = malloc(sizeof(int64_t) * nf), samples = -1;
    int32_t col[NCOL], want[NCOL];

    expect("range_check/without_ranges_invalid", inloop_model_set_range_check(m, INLOOP_RANGE_REPORT), INLOOP_ERR_INVALID_ARGUMENT);
    expect("range_check/off_without_ranges_ok", inloop_model_set_range_check(m, INLOOP_RANGE_OFF), INLOOP_OK);
    expect("input_range/none_invalid", inloop_model_input_range(m, nf, lo, hi, NULL, NULL, NULL), INLOOP_ERR_INVALID_ARGUMENT);

    /* ranges from float32 samples: feature j in [-1 - j/nf, 1 + j/nf] */
    for (int c = 0; c < NTRAIN; c++)
        for (int j = 0; j < nf; j++) xt[(size_t)c * nf + j] = (float)uniform(-1 - (double)j / nf, 1 + (double)j / nf);
    expect("from_samples_f32", inloop_model_set_input_range_from_samples_f32(m, xt, NTRAIN), INLOOP_OK);
    expect("input_range_f64", inloop_model_input_range(m, nf, lo, hi, mean, sd, &samples), INLOOP_OK);
    int ok = samples == NTRAIN;
    double worst = 0;
    for (int j = 0; j < nf; j++) {
        double a = INFINITY, b = -INFINITY, s = 0, q = 0;
        for (int c = 0; c < NTRAIN; c++) { double v = xt[(size_t)c * nf + j]; a = v < a ? v : a; b = v > b ? v : b; s += v; }
        s /= NTRAIN;
        for (int c = 0; c < NTRAIN; c++) { double d = xt[(size_t)c * nf + j] - s; q += d * d; }
        q = sqrt(q / NTRAIN);
        ok = ok && lo[j] == a && hi[j] == b;
        double e = fabs(mean[j] - s) + fabs(sd[j] - q);
        worst = e > worst ? e : worst;
    }
    report("from_samples/min_max_exact_moments_1e-12", ok && worst < 1e-12, "samples %lld, worst moment error %.3g", (long long)samples, worst);

    /* inputs partly outside, a NaN, a column on the bounds */
    /* every third column has up to three features drawn 30% wider than the range, the others are inside */
    for (int c = 0; c < NCOL; c++)
        for (int j = 0; j < nf; j++) {
            double w = (c % 3 == 0 && j % 7 == c % 7) ? 1.3 : 1.0;
            x[(size_t)c * nf + j] = (float)uniform(lo[j] - (w - 1) * (hi[j] - lo[j]), hi[j] + (w - 1) * (hi[j] - lo[j]));
            if (w == 1.0 && (x[(size_t)c * nf + j] < lo[j] || x[(size_t)c * nf + j] > hi[j])) x[(size_t)c * nf + j] = lo[j];
        }
    x[5 * nf + 2] = NAN;
    for (int j = 0; j < nf; j++) { x[8 * nf + j] = lo[j]; x[9 * nf + j] = hi[j]; }
    reference(x, NCOL, (int)nf, lo, hi, want, wfeat);
    int inside = 0, outside = 0;
    for (int c = 0; c < NCOL; c++) { inside += want[c] == 0; outside += want[c] > 0; }
    report("data/has_columns_inside_and_outside", inside > 10 && outside > 10 && want[5] >= 1 && want[8] == 0 && want[9] == 0,
           "%d inside, %d outside", inside, outside);

    expect("forward_f64/check_off", inloop_model_forward_f64(m, x, NCOL, yc), INLOOP_OK);
    expect("set_range_check/report", inloop_model_set_range_check(m, INLOOP_RANGE_REPORT), INLOOP_OK);
    expect("range_flags/before_a_checked_call", inloop_model_range_flags(m, NCOL, col), INLOOP_ERR_INVALID_ARGUMENT);
    expect("forward_f64/report", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_OK);
    expect("range_flags/report", inloop_model_range_flags(m, NCOL, col), INLOOP_OK);
    report("report/column_counts_equal_loop", memcmp(col, want, sizeof col) == 0, "counts differ");
    expect("range_feature_counts", inloop_model_range_feature_counts(m, nf, feat), INLOOP_OK);
    report("report/feature_counts_equal_loop", memcmp(feat, wfeat, sizeof(int64_t) * nf) == 0, "counts differ");
    ok = 1;
    for (int i = 0; i < NCOL * no; i++) if (i / no != 5 && memcmp(&y[i], &yc[i], sizeof(double)) != 0) ok = 0;
    report("report/outputs_unchanged_bitwise", ok, "outputs differ");

    /* float32 inputs, FLAG_ONLY */
    for (int i = 0; i < NCOL * nf; i++) { x4[i] = (float)x[i]; xs[i] = x4[i]; }
    reference(xs, NCOL, (int)nf, lo, hi, want, wfeat);
    expect("set_range_check/flag_only", inloop_model_set_range_check(m, INLOOP_RANGE_FLAG_ONLY), INLOOP_OK);
    expect("forward_f32/flag_only", inloop_model_forward_f32(m, x4, NCOL, y4), INLOOP_OK);
    expect("range_flags/flag_only", inloop_model_range_flags(m, NCOL, col), INLOOP_OK);
    ok = 1;
    for (int c = 0; c < NCOL; c++) ok = ok && col[c] == (want[c] > 0);
    report("flag_only/flags_equal_loop_f32", ok, "flags differ");
    expect("range_feature_counts/not_report", inloop_model_range_feature_counts(m, nf, feat), INLOOP_ERR_INVALID_ARGUMENT);

    /* CLAMP, float64 */
    reference(x, NCOL, (int)nf, lo, hi, want, wfeat);
    memcpy(xc, x, sizeof(double) * NCOL * nf);
    expect("set_range_check/clamp", inloop_model_set_range_check(m, INLOOP_RANGE_CLAMP), INLOOP_OK);
    expect("forward_f64/clamp", inloop_model_forward_f64(m, x, NCOL, y), INLOOP_OK);
    report("clamp/caller_x_unchanged", memcmp(x, xc, sizeof(double) * NCOL * nf) == 0, "x changed");
    expect("range_flags/clamp", inloop_model_range_flags(m, NCOL, col), INLOOP_OK);
    report("clamp/column_counts_equal_loop", memcmp(col, want, sizeof col) == 0, "counts differ");
    for (int c = 0; c < NCOL; c++)
        for (int j = 0; j < nf; j++) {
            double v = x[(size_t)c * nf + j];
            if (v == v) xc[(size_t)c * nf + j] = v < lo[j] ? lo[j] : v > hi[j] ? hi[j] : v;
        }
    expect("set_range_check/off", inloop_model_set_range_check(m, INLOOP_RANGE_OFF), INLOOP_OK);
    expect("forward_f64/clamped_by_hand", inloop_model_forward_f64(m, xc, NCOL, yc), INLOOP_OK);
    ok = 1;
    for (int i = 0; i < NCOL * no; i++) if (i / no != 5 && memcmp(&y[i], &yc[i], sizeof(double)) != 0) ok = 0;
    report("clamp/outputs_equal_clamped_inputs_bitwise", ok, "outputs differ");

    /* no allocation after the first checked call at a batch */
    inloop_model_set_range_check(m, INLOOP_RANGE_CLAMP);
    inloop_model_forward_f32(m, x4, NCOL, y4);
    count_start();
    inloop_status st = INLOOP_OK;
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) st = inloop_model_forward_f32(m, x4, NCOL, y4);
    long frees = 0, allocs = count_stop(&frees);
    count_start();
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) st = inloop_model_range_flags(m, NCOL, col);
    allocs += count_stop(&frees);
    report("clamp/no_alloc_after_first_call", st == INLOOP_OK && (!ALLOC_COUNTING || allocs == 0), "%s, %ld allocations",
           inloop_status_string(st), allocs);

    /* bad arguments */
    expect("range_flags/null", inloop_model_range_flags(m, NCOL, NULL), INLOOP_ERR_NULL_POINTER);
    expect("range_flags/other_batch", inloop_model_range_flags(m, NCOL - 1, col), INLOOP_ERR_SIZE_MISMATCH);
    expect("range_flags/batch_0", inloop_model_range_flags(m, 0, col), INLOOP_ERR_INVALID_ARGUMENT);
    expect("range_flags/null_handle", inloop_model_range_flags(NULL, NCOL, col), INLOOP_ERR_NULL_POINTER);
    expect("set_range_check/unknown_mode", inloop_model_set_range_check(m, 4), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_range_check/negative_mode", inloop_model_set_range_check(m, -1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("range_feature_counts/wrong_n", inloop_model_range_feature_counts(m, nf + 1, feat), INLOOP_ERR_SIZE_MISMATCH);
    {
        int64_t ranks[1] = {2}, dims[2] = {1, nf}, cap[1] = {no}, oranks[1], odims[2];
        const double *ins[1] = {x};
        double *outs[1] = {y};
        expect("run_shaped/refused_while_checking",
               inloop_model_run_shaped_f64(m, 1, ranks, dims, ins, 1, cap, outs, oranks, odims, 2), INLOOP_ERR_UNSUPPORTED);
    }
    memcpy(rlo, lo, sizeof(double) * nf);
    memcpy(rhi, hi, sizeof(double) * nf);
    rlo[1] = hi[1] + 1;
    expect("set_input_range/lo_above_hi", inloop_model_set_input_range(m, nf, rlo, rhi), INLOOP_ERR_INVALID_ARGUMENT);
    rlo[1] = NAN;
    expect("set_input_range/nan_bound", inloop_model_set_input_range(m, nf, rlo, rhi), INLOOP_ERR_INVALID_ARGUMENT);
    rlo[1] = -INFINITY;
    expect("set_input_range/infinite_bound", inloop_model_set_input_range(m, nf, rlo, rhi), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_input_range/wrong_n", inloop_model_set_input_range(m, nf - 1, lo, hi), INLOOP_ERR_SIZE_MISMATCH);
    expect("set_input_range/null", inloop_model_set_input_range(m, nf, NULL, hi), INLOOP_ERR_NULL_POINTER);
    expect("from_samples/nan", inloop_model_set_input_range_from_samples_f64(m, x, NCOL), INLOOP_ERR_NONFINITE);
    expect("from_samples/batch_0", inloop_model_set_input_range_from_samples_f32(m, xt, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("from_samples/huge_batch", inloop_model_set_input_range_from_samples_f32(m, xt, INT64_MAX / 2), INLOOP_ERR_INVALID_ARGUMENT);
    expect("from_file/missing", inloop_model_set_input_range_from_file(m, "/nonexistent/ranges.safetensors"), INLOOP_ERR_IO);
    expect("from_file/null", inloop_model_set_input_range_from_file(m, NULL), INLOOP_ERR_NULL_POINTER);
    expect("input_range/wrong_n", inloop_model_input_range(m, nf + 1, rlo, rhi, NULL, NULL, NULL), INLOOP_ERR_SIZE_MISMATCH);
    /* the ranges are unchanged by the failed calls */
    expect("input_range/after_failures", inloop_model_input_range(m, nf, rlo, rhi, NULL, NULL, NULL), INLOOP_OK);
    report("input_range/unchanged_by_failures", memcmp(rlo, lo, sizeof(double) * nf) == 0 && memcmp(rhi, hi, sizeof(double) * nf) == 0, "changed");

    inloop_model_free(m);
    expect("range_flags/freed_handle", inloop_model_range_flags(m, NCOL, col), INLOOP_ERR_INVALID_HANDLE);
    free(xt); free(x4); free(x); free(xc); free(xs); free(y); free(yc); free(y4);
    free(lo); free(hi); free(mean); free(sd); free(rlo); free(rhi); free(feat); free(wfeat);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
