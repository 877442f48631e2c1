/*
 * test_ensemble.c - ensembles and MC-dropout from C (inloop_model_load_ensemble,
 * inloop_model_forward_ensemble_f32/_f64, inloop_model_set_mc_dropout; issue 15, item 2).
 *
 *   build/test_ensemble Tests/fixtures build
 *
 * Fixtures from Tests/fixtures/make_ensemble.py: ens_member_{0,1,2,odd,bad}.safetensors, ens_ref.bin
 * (NumPy's mean and population std over the members, float64 on the float32 weights) and
 * mc_linear.onnx (y = w . Dropout(x, 0.3)) with mc_linear.w.bin.
 *   - the ensemble's mean and spread equal NumPy's (2e-6 relative to the output scale: the members are
 *     float32 models, which compute in float32 from either entry point, and the stacked GEMM sums in
 *     another order than a member alone), for stacked members (0, 1, 2) and for members of another
 *     structure (+ odd), from float64 and float32 arrays;
 *   - and equal the mean and std computed here over each member loaded alone (same tolerance);
 *   - plain forward on an ensemble gives the mean bitwise; a saved ensemble loads as the same ensemble;
 *   - MC-dropout's mean and variance on the linear model match E = w.x and Var = sum w_i^2 x_i^2 p/(1-p)
 *     within 5 standard errors of the estimates (see mc_check); same seed same bits, another seed other
 *     bits; calls at one batch allocate nothing;
 *   - every bad argument gets its status;
 *   - inloop_trainer_save_ensemble: three trainers (one configuration, seeds 1, 2, 3, a few steps on the
 *     same data) write one ensemble file; loaded, its mean and spread equal the mean and population std
 *     computed here over each trainer's own model (copy_model), and bitwise the ensemble that
 *     load_ensemble makes of the three trainers' saved model files; bad arguments get their statuses.
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

#define NOUT 3
#define MAXB 64

static double xref[MAXB * 5], yref[MAXB * 12];
static int64_t batch_ref;

static int read_ref(const char *path) {
    FILE *f = fopen(path, "rb");
    int64_t h[3];
    if (!f) return 0;
    int ok = fread(h, 8, 3, f) == 3 && h[0] == 5 && h[1] == 12 && h[2] <= MAXB &&
             fread(xref, 8, (size_t)(h[2] * 5), f) == (size_t)(h[2] * 5) &&
             fread(yref, 8, (size_t)(h[2] * 12), f) == (size_t)(h[2] * 12);
    fclose(f);
    batch_ref = h[2];
    return ok;
}

/* largest |a - b| over n values, relative to max(1, max |b|) */
static double rel_diff(const double *a, const double *b, int n, int stride_b, int off_b) {
    double worst = 0, scale = 1;
    for (int i = 0; i < n; i++) {
        double r = b[(i / NOUT) * stride_b + off_b + i % NOUT];
        if (fabs(r) > scale) scale = fabs(r);
    }
    for (int i = 0; i < n; i++) {
        double d = fabs(a[i] - b[(i / NOUT) * stride_b + off_b + i % NOUT]);
        if (!(d <= worst)) worst = d;
    }
    return worst / scale;
}

static void check_against_numpy(const char *name, const char *dir, const char *const *members, int n, int off) {
    char paths[4][1024], what[160];
    const char *p[4];
    for (int k = 0; k < n; k++) { snprintf(paths[k], sizeof paths[k], "%s/%s", dir, members[k]); p[k] = paths[k]; }
    inloop_model *e = NULL;
    snprintf(what, sizeof what, "%s/load", name);
    expect(what, inloop_model_load_ensemble(p, n, &e), INLOOP_OK);
    if (!e) return;
    int b = (int)batch_ref;
    double mean[MAXB * NOUT], spread[MAXB * NOUT], y[MAXB * NOUT];
    float xf[MAXB * 5], mf[MAXB * NOUT], sf[MAXB * NOUT];
    double md[MAXB * NOUT], sd[MAXB * NOUT];
    snprintf(what, sizeof what, "%s/forward_ensemble_f64", name);
    expect(what, inloop_model_forward_ensemble_f64(e, xref, b, mean, spread), INLOOP_OK);
    double dm = rel_diff(mean, yref, b * NOUT, 12, off), ds = rel_diff(spread, yref, b * NOUT, 12, off + NOUT);
    snprintf(what, sizeof what, "%s/f64_against_numpy", name);
    /* float32 models: float32 arithmetic, NumPy's float64 numbers to float32 rounding (~1e-7 per op) */
    report(what, dm <= 2e-6 && ds <= 2e-6, "mean %.3g, spread %.3g relative", dm, ds);
    /* float32 caller: the model computes in float32 */
    for (int i = 0; i < b * 5; i++) xf[i] = (float)xref[i];
    snprintf(what, sizeof what, "%s/forward_ensemble_f32", name);
    expect(what, inloop_model_forward_ensemble_f32(e, xf, b, mf, sf), INLOOP_OK);
    for (int i = 0; i < b * NOUT; i++) { md[i] = mf[i]; sd[i] = sf[i]; }
    dm = rel_diff(md, yref, b * NOUT, 12, off); ds = rel_diff(sd, yref, b * NOUT, 12, off + NOUT);
    snprintf(what, sizeof what, "%s/f32_against_numpy", name);
    report(what, dm <= 2e-6 && ds <= 2e-6, "mean %.3g, spread %.3g relative", dm, ds);
    /* the same statistics over each member loaded alone */
    double ys[4][MAXB * NOUT], rm[MAXB * NOUT * 2];
    int ok = 1;
    for (int k = 0; k < n; k++) {
        inloop_model *m = NULL;
        ok &= inloop_model_load(p[k], &m) == INLOOP_OK && inloop_model_forward_f64(m, xref, b, ys[k]) == INLOOP_OK;
        inloop_model_free(m);
    }
    for (int i = 0; i < b * NOUT; i++) {
        double s = 0, q = 0;
        for (int k = 0; k < n; k++) s += ys[k][i];
        s /= n;
        for (int k = 0; k < n; k++) q += (ys[k][i] - s) * (ys[k][i] - s);
        rm[(i / NOUT) * 2 * NOUT + i % NOUT] = s;
        rm[(i / NOUT) * 2 * NOUT + NOUT + i % NOUT] = sqrt(q / n);
    }
    dm = rel_diff(mean, rm, b * NOUT, 2 * NOUT, 0); ds = rel_diff(spread, rm, b * NOUT, 2 * NOUT, NOUT);
    snprintf(what, sizeof what, "%s/against_members_alone", name);
    report(what, ok && dm <= 2e-6 && ds <= 2e-6, "loads %d, mean %.3g, spread %.3g relative", ok, dm, ds);
    /* plain forward: the mean, bitwise */
    snprintf(what, sizeof what, "%s/forward_gives_mean", name);
    inloop_status st = inloop_model_forward_f64(e, xref, b, y);
    report(what, st == INLOOP_OK && memcmp(y, mean, sizeof(double) * (size_t)(b * NOUT)) == 0, "%s", inloop_status_string(st));
    inloop_model_free(e);
}

/* mean of the column means and of the column variances of an MC-dropout call against the analytic
 * moments of y = sum_i a_i B_i, a_i = w_i x_i / (1 - p), B_i ~ Bernoulli(q = 1 - p), independent. */
static void mc_check(const char *name, const double *mean, const double *spread, int batch, int samples,
                     const double *w, const double *x, double p) {
    double mu = 0, var = 0, k4 = 0, q = 1 - p;
    for (int i = 0; i < 6; i++) {
        double a = w[i] * x[i] / q;
        mu += w[i] * x[i];
        var += a * a * q * p;
        k4 += a * a * a * a * q * p * (1 - 6 * q * p);
    }
    double mu4 = k4 + 3 * var * var, gm = 0, gv = 0;
    for (int c = 0; c < batch; c++) { gm += mean[c]; gv += spread[c] * spread[c]; }
    gm /= batch; gv /= batch;
    /* Standard errors over batch x samples independent draws: the mean of the column means has sd
     * sqrt(Var / (S B)); the mean of the column (population) variances, whose expectation is
     * Var (S-1)/S, sd sqrt((mu4 - Var^2) / S / B). 5 of them: a correct implementation fails about once
     * in 10^6 runs, while a wrong keep scale (1 instead of 1/(1-p)) or a wrong ratio moves the
     * estimates by far more. */
    double se_m = sqrt(var / samples / batch), se_v = sqrt((mu4 - var * var) / samples / batch);
    double want_v = var * (samples - 1) / samples;
    report(name, fabs(gm - mu) <= 5 * se_m && fabs(gv - want_v) <= 5 * se_v,
           "mean %.6g (w.x %.6g, se %.3g), variance %.6g (analytic %.6g, se %.3g)", gm, mu, se_m, gv, want_v, se_v);
}

/* inloop_trainer_save_ensemble: one ensemble file from three trainers, against their own models. */
static void trainer_ensemble(const char *tmp) {
    enum { TN = 3, TB = 16, TIN = 4, TOUT = 2 };
    inloop_trainer *tr[TN] = {NULL, NULL, NULL}, *odd = NULL;
    char cfg[512], path[600], files[TN][600];
    float x[TB * TIN], y[TB * TOUT];
    for (int i = 0; i < TB * TIN; i++) x[i] = (float)sin(0.7 * i);
    for (int i = 0; i < TB * TOUT; i++) y[i] = (float)cos(0.3 * i);
    int ok = 1;
    for (int k = 0; k < TN; k++) {
        snprintf(cfg, sizeof cfg, "model: {inputs: %d, layers: [{type: dense, out: 8, activation: tanh}, {type: dense, out: %d}]}\n"
                 "loss: mse\noptimizer: {type: adam, lr: 0.01}\nseed: %d\n", TIN, TOUT, k + 1);
        ok = ok && inloop_trainer_create(cfg, &tr[k]) == INLOOP_OK;
        for (int s = 0; ok && s < 5; s++) ok = inloop_trainer_step_f32(tr[k], x, y, TB, NULL) == INLOOP_OK;
        snprintf(files[k], sizeof files[k], "%s/trainer_member_%d.safetensors", tmp, k);
        ok = ok && inloop_trainer_save_model(tr[k], files[k]) == INLOOP_OK;
    }
    report("trainer_ensemble/trainers", ok, "%s", inloop_last_error());
    if (!ok) return;
    snprintf(path, sizeof path, "%s/trainer_ensemble.safetensors", tmp);
    expect("trainer_save_ensemble/writes", inloop_trainer_save_ensemble(tr, TN, path), INLOOP_OK);
    inloop_model *e = NULL, *e2 = NULL, *m[TN] = {NULL, NULL, NULL};
    double xd[TB * TIN], mean[TB * TOUT], spread[TB * TOUT], mean2[TB * TOUT], spread2[TB * TOUT], yk[TN][TB * TOUT];
    for (int i = 0; i < TB * TIN; i++) xd[i] = x[i];
    inloop_status st = inloop_model_load(path, &e);
    st = st == INLOOP_OK ? inloop_model_forward_ensemble_f64(e, xd, TB, mean, spread) : st;
    report("trainer_ensemble/loads_and_runs", st == INLOOP_OK, "%s: %s", inloop_status_string(st), inloop_last_error());
    if (st != INLOOP_OK) return;
    for (int k = 0; k < TN; k++) {
        if (inloop_trainer_copy_model(tr[k], &m[k]) != INLOOP_OK || inloop_model_forward_f64(m[k], xd, TB, yk[k]) != INLOOP_OK) ok = 0;
    }
    double dm = 0, ds = 0, scale = 1;
    for (int i = 0; i < TB * TOUT; i++) {
        double mu = 0, v = 0;
        for (int k = 0; k < TN; k++) mu += yk[k][i];
        mu /= TN;
        for (int k = 0; k < TN; k++) v += (yk[k][i] - mu) * (yk[k][i] - mu);
        double sd = sqrt(v / TN);
        if (fabs(mu) > scale) scale = fabs(mu);
        if (fabs(mean[i] - mu) > dm) dm = fabs(mean[i] - mu);
        if (fabs(spread[i] - sd) > ds) ds = fabs(spread[i] - sd);
    }
    dm /= scale; ds /= scale;
    double top = 0;
    for (int i = 0; i < TB * TOUT; i++) if (spread[i] > top) top = spread[i];
    report("trainer_ensemble/members_differ", top > 1e-3, "largest spread %.3g", top);
    /* float32 models: the stacked members sum in another order than each alone (as above: 2e-6) */
    report("trainer_ensemble/mean_spread_of_the_trainers_models", ok && dm <= 2e-6 && ds <= 2e-6, "mean %.3g, spread %.3g relative", dm, ds);
    const char *paths[TN] = {files[0], files[1], files[2]};
    st = inloop_model_load_ensemble(paths, TN, &e2);
    st = st == INLOOP_OK ? inloop_model_forward_ensemble_f64(e2, xd, TB, mean2, spread2) : st;
    report("trainer_ensemble/bitwise_load_ensemble_of_saved_models", st == INLOOP_OK && memcmp(mean, mean2, sizeof mean) == 0 &&
           memcmp(spread, spread2, sizeof spread) == 0, "%s", inloop_status_string(st));
    /* the trainers are unchanged and train on */
    report("trainer_ensemble/trainers_train_on", inloop_trainer_step_f32(tr[0], x, y, TB, NULL) == INLOOP_OK, "%s", inloop_last_error());
    /* bad arguments */
    expect("trainer_save_ensemble/null_array", inloop_trainer_save_ensemble(NULL, TN, path), INLOOP_ERR_NULL_POINTER);
    expect("trainer_save_ensemble/n_0", inloop_trainer_save_ensemble(tr, 0, path), INLOOP_ERR_INVALID_ARGUMENT);
    expect("trainer_save_ensemble/n_huge", inloop_trainer_save_ensemble(tr, INT64_MAX, path), INLOOP_ERR_INVALID_ARGUMENT);
    expect("trainer_save_ensemble/null_path", inloop_trainer_save_ensemble(tr, TN, NULL), INLOOP_ERR_NULL_POINTER);
    inloop_trainer *with_null[2] = {tr[0], NULL};
    expect("trainer_save_ensemble/null_member", inloop_trainer_save_ensemble(with_null, 2, path), INLOOP_ERR_NULL_POINTER);
    snprintf(cfg, sizeof cfg, "model: {inputs: %d, layers: [{type: dense, out: %d}]}\nloss: mse\noptimizer: {type: sgd, lr: 0.1}\nseed: 1\n",
             TIN + 1, TOUT);
    if (inloop_trainer_create(cfg, &odd) == INLOOP_OK) {
        inloop_trainer *mixed[2] = {tr[0], odd};
        expect("trainer_save_ensemble/other_inputs", inloop_trainer_save_ensemble(mixed, 2, path), INLOOP_ERR_SIZE_MISMATCH);
        inloop_trainer_free(odd);
        expect("trainer_save_ensemble/freed_member", inloop_trainer_save_ensemble(mixed, 2, path), INLOOP_ERR_INVALID_HANDLE);
    }
    expect("trainer_save_ensemble/no_directory", inloop_trainer_save_ensemble(tr, TN, "/nonexistent-dir/e.safetensors"), INLOOP_ERR_IO);
    inloop_model_free(e);
    inloop_model_free(e2);
    for (int k = 0; k < TN; k++) { inloop_model_free(m[k]); inloop_trainer_free(tr[k]); remove(files[k]); }
    remove(path);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "Tests/fixtures";
    const char *tmp = argc > 2 ? argv[2] : "build";
    char path[1024];
    inloop_set_num_threads(1);   /* OpenBLAS's threaded GEMM allocates its buffers per call */
    snprintf(path, sizeof path, "%s/ens_ref.bin", dir);
    if (!read_ref(path)) {
        printf("FAIL read %s\n0 passed, 1 failed\n", path);
        return 1;
    }
    const char *stacked[] = {"ens_member_0.safetensors", "ens_member_1.safetensors", "ens_member_2.safetensors"};
    const char *mixed[] = {"ens_member_0.safetensors", "ens_member_1.safetensors", "ens_member_2.safetensors",
                           "ens_member_odd.safetensors"};
    check_against_numpy("stacked", dir, stacked, 3, 0);
    check_against_numpy("side_by_side", dir, mixed, 4, 2 * NOUT);

    /* save and load: the same ensemble */
    char p0[1024], p1[1024], p2[1024], pbad[1024], saved[1024];
    snprintf(p0, sizeof p0, "%s/%s", dir, stacked[0]);
    snprintf(p1, sizeof p1, "%s/%s", dir, stacked[1]);
    snprintf(p2, sizeof p2, "%s/%s", dir, stacked[2]);
    snprintf(pbad, sizeof pbad, "%s/ens_member_bad.safetensors", dir);
    snprintf(saved, sizeof saved, "%s/test_ensemble_saved.safetensors", tmp);
    const char *three[] = {p0, p1, p2};
    inloop_model *e = NULL, *e2 = NULL;
    expect("load_ensemble/three", inloop_model_load_ensemble(three, 3, &e), INLOOP_OK);
    int64_t no = 0, nout = 0;
    expect("ensemble/num_outputs", inloop_model_num_outputs(e, &no), INLOOP_OK);
    inloop_model_output_size(e, &nout);
    report("ensemble/outputs_mean_spread", no == 2 && nout == NOUT, "%lld outputs of %lld", (long long)no, (long long)nout);
    expect("model_save/ensemble", inloop_model_save(e, saved), INLOOP_OK);
    expect("model_load/saved_ensemble", inloop_model_load(saved, &e2), INLOOP_OK);
    int b = (int)batch_ref;
    double m1[MAXB * NOUT], s1[MAXB * NOUT], m2[MAXB * NOUT], s2[MAXB * NOUT];
    inloop_status st = inloop_model_forward_ensemble_f64(e, xref, b, m1, s1);
    inloop_status st2 = inloop_model_forward_ensemble_f64(e2, xref, b, m2, s2);
    report("model_save/same_ensemble_bitwise", st == INLOOP_OK && st2 == INLOOP_OK && memcmp(m1, m2, sizeof(double) * (size_t)(b * NOUT)) == 0 &&
           memcmp(s1, s2, sizeof(double) * (size_t)(b * NOUT)) == 0, "%s, %s", inloop_status_string(st), inloop_status_string(st2));
    inloop_model_free(e2);
    remove(saved);

    /* zero allocations after the first call at a batch */
    float xf[MAXB * 5], mf[MAXB * NOUT], sf[MAXB * NOUT];
    for (int i = 0; i < b * 5; i++) xf[i] = (float)xref[i];
    inloop_model_forward_ensemble_f32(e, xf, b, mf, sf);
    inloop_model_forward_f32(e, xf, b, mf);
    count_start();
    st = INLOOP_OK;
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) st = inloop_model_forward_ensemble_f32(e, xf, b, mf, sf);
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) st = inloop_model_forward_f32(e, xf, b, mf);
    long frees = 0, allocs = count_stop(&frees);
    report("ensemble/no_alloc_after_first_call", st == INLOOP_OK && (!ALLOC_COUNTING || allocs == 0), "%s, %ld allocations",
           inloop_status_string(st), allocs);

    /* bad arguments */
    inloop_model *bad = (inloop_model *)1;
    const char *with_bad[] = {p0, pbad};
    const char *with_null[] = {p0, NULL};
    const char *missing[] = {p0, "/nonexistent/member.safetensors"};
    expect("load_ensemble/n_zero", inloop_model_load_ensemble(three, 0, &bad), INLOOP_ERR_INVALID_ARGUMENT);
    report("load_ensemble/handle_null_on_error", bad == NULL, "handle not cleared");
    expect("load_ensemble/n_negative", inloop_model_load_ensemble(three, -1, &bad), INLOOP_ERR_INVALID_ARGUMENT);
    expect("load_ensemble/n_huge", inloop_model_load_ensemble(three, INT64_MAX, &bad), INLOOP_ERR_INVALID_ARGUMENT);
    expect("load_ensemble/paths_null", inloop_model_load_ensemble(NULL, 2, &bad), INLOOP_ERR_NULL_POINTER);
    expect("load_ensemble/path_null", inloop_model_load_ensemble(with_null, 2, &bad), INLOOP_ERR_NULL_POINTER);
    expect("load_ensemble/out_null", inloop_model_load_ensemble(three, 3, NULL), INLOOP_ERR_NULL_POINTER);
    expect("load_ensemble/mismatched_member", inloop_model_load_ensemble(with_bad, 2, &bad), INLOOP_ERR_SIZE_MISMATCH);
    expect("load_ensemble/missing_member", inloop_model_load_ensemble(missing, 2, &bad), INLOOP_ERR_IO);
    expect("forward_ensemble/null_handle", inloop_model_forward_ensemble_f32(NULL, xf, b, mf, sf), INLOOP_ERR_NULL_POINTER);
    expect("forward_ensemble/null_x", inloop_model_forward_ensemble_f32(e, NULL, b, mf, sf), INLOOP_ERR_NULL_POINTER);
    expect("forward_ensemble/null_mean", inloop_model_forward_ensemble_f64(e, xref, b, NULL, s1), INLOOP_ERR_NULL_POINTER);
    expect("forward_ensemble/null_spread", inloop_model_forward_ensemble_f64(e, xref, b, m1, NULL), INLOOP_ERR_NULL_POINTER);
    expect("forward_ensemble/batch_zero", inloop_model_forward_ensemble_f64(e, xref, 0, m1, s1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("forward_ensemble/batch_huge", inloop_model_forward_ensemble_f64(e, xref, INT64_MAX, m1, s1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("forward_ensemble/mean_is_spread", inloop_model_forward_ensemble_f64(e, xref, b, m1, m1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_mc_dropout/ensemble", inloop_model_set_mc_dropout(e, 8, 1), INLOOP_ERR_UNSUPPORTED);
    inloop_model *single = NULL;
    inloop_model_load(p0, &single);
    expect("forward_ensemble/not_an_ensemble", inloop_model_forward_ensemble_f64(single, xref, b, m1, s1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_mc_dropout/no_dropout", inloop_model_set_mc_dropout(single, 8, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_mc_dropout/null", inloop_model_set_mc_dropout(NULL, 8, 1), INLOOP_ERR_NULL_POINTER);
    inloop_model_free(single);
    inloop_model_free(e);
    expect("forward_ensemble/freed_handle", inloop_model_forward_ensemble_f64(e, xref, b, m1, s1), INLOOP_ERR_INVALID_HANDLE);

    /* MC-dropout on y = w . dropout(x), p = 0.3 */
    double w[6];
    snprintf(path, sizeof path, "%s/mc_linear.w.bin", dir);
    FILE *f = fopen(path, "rb");
    int got_w = f && fread(w, 8, 6, f) == 6;
    if (f) fclose(f);
    report("mc/read_weights", got_w, "%s", path);
    snprintf(path, sizeof path, "%s/mc_linear.onnx", dir);
    inloop_model *mc = NULL, *mc2 = NULL;
    expect("mc/load", inloop_model_load(path, &mc), INLOOP_OK);
    inloop_model_load(path, &mc2);
    enum { S = 1000, B = 48 };
    static double xm[B * 6], mm[B], sm[B], mm2[B], sm2[B];
    static float xmf[B * 6], mmf[B], smf[B];
    const double x0[6] = {1.0, 0.5, -0.25, 2.0, -1.5, 0.75};
    for (int c = 0; c < B; c++) for (int i = 0; i < 6; i++) { xm[c * 6 + i] = x0[i]; xmf[c * 6 + i] = (float)x0[i]; }
    expect("set_mc_dropout/negative", inloop_model_set_mc_dropout(mc, -1, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_mc_dropout/huge", inloop_model_set_mc_dropout(mc, INT64_MAX, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("mc/off_not_an_ensemble", inloop_model_forward_ensemble_f64(mc, xm, B, mm, sm), INLOOP_ERR_INVALID_ARGUMENT);
    expect("set_mc_dropout/on", inloop_model_set_mc_dropout(mc, S, 12345), INLOOP_OK);
    expect("mc/forward_ensemble_f64", inloop_model_forward_ensemble_f64(mc, xm, B, mm, sm), INLOOP_OK);
    mc_check("mc/f64_moments_analytic", mm, sm, B, S, w, x0, 0.3);
    expect("mc/forward_ensemble_f32", inloop_model_forward_ensemble_f32(mc, xmf, B, mmf, smf), INLOOP_OK);
    for (int c = 0; c < B; c++) { mm2[c] = mmf[c]; sm2[c] = smf[c]; }
    mc_check("mc/f32_moments_analytic", mm2, sm2, B, S, w, x0, 0.3);
    /* plain forward: deterministic, w.x */
    double y1 = 0, wx = 0;
    for (int i = 0; i < 6; i++) wx += w[i] * x0[i];
    expect("mc/plain_forward", inloop_model_forward_f64(mc, xm, 1, &y1), INLOOP_OK);
    report("mc/plain_forward_is_w_dot_x", fabs(y1 - wx) <= 1e-6 * fabs(wx), "%.9g vs %.9g", y1, wx);
    /* reproducibility: the same seed on two handles gives the same bits; another seed other bits */
    inloop_model_set_mc_dropout(mc, 64, 7);
    inloop_model_set_mc_dropout(mc2, 64, 7);
    inloop_model_forward_ensemble_f64(mc, xm, B, mm, sm);
    inloop_model_forward_ensemble_f64(mc2, xm, B, mm2, sm2);
    report("mc/same_seed_same_bits", memcmp(mm, mm2, sizeof mm) == 0 && memcmp(sm, sm2, sizeof sm) == 0, "differ");
    inloop_model_set_mc_dropout(mc2, 64, 8);
    inloop_model_forward_ensemble_f64(mc2, xm, B, mm2, sm2);
    report("mc/other_seed_other_bits", memcmp(mm, mm2, sizeof mm) != 0, "equal");
    /* zero allocations after the first call at a batch */
    inloop_model_forward_ensemble_f32(mc, xmf, B, mmf, smf);
    count_start();
    st = INLOOP_OK;
    for (int k = 0; k < 10 && st == INLOOP_OK; k++) st = inloop_model_forward_ensemble_f32(mc, xmf, B, mmf, smf);
    allocs = count_stop(&frees);
    report("mc/no_alloc_after_first_call", st == INLOOP_OK && (!ALLOC_COUNTING || allocs == 0), "%s, %ld allocations",
           inloop_status_string(st), allocs);
    expect("set_mc_dropout/off", inloop_model_set_mc_dropout(mc, 0, 0), INLOOP_OK);
    expect("mc/off_again", inloop_model_forward_ensemble_f64(mc, xm, B, mm, sm), INLOOP_ERR_INVALID_ARGUMENT);
    inloop_model_free(mc);
    inloop_model_free(mc2);

    trainer_ensemble(tmp);

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
