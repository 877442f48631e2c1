/*
 * test_constraints.c - hard physical constraints attached to a loaded model through the C API
 * (inloop_model_add_constraint_*; issue 15, item 1), checked with plain loops here.
 *
 *   build/test_constraints Tests/fixtures build
 *
 * Fixture mlp_medium (20 -> 10). Checks: the conservation projection with the target as a new input
 * (float64 weights) and as feature 19 of x (float32 weights): w.y' = s to 1e-6 relative (float32
 * model) and y' equal to the projection of the plain output computed here; softplus positivity and
 * clamp bounds; the mass fixer (no negative value, column integrals kept); training through the
 * constraint (conservation before and after 5 steps); a model saved by the trainer and loaded again
 * gives bitwise the same outputs; the constrained forward allocates nothing after its first call;
 * every bad argument gives its status and leaves the model as it was.
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

#define NIN 20
#define NOUT 10
#define B 8

static float x[NIN * B], yplain[NOUT * B], y[NOUT * B], y2[NOUT * B], s[B];
static double wd[NOUT];
static float wf[NOUT];

static inloop_model *load(const char *fixtures) {
    char path[600];
    inloop_model *m = NULL;
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    inloop_status st = inloop_model_load(path, &m);
    if (st != INLOOP_OK) { printf("FAIL load %s: %s\n", path, inloop_last_error()); exit(1); }
    return m;
}

/* max over columns of |w.y - target| / |target| (in double). */
static double conservation_error(const float *out, const float *target, int stride) {
    double worst = 0;
    for (int c = 0; c < B; c++) {
        double wy = 0, t = target[c * stride];
        for (int j = 0; j < NOUT; j++) wy += (double)wf[j] * out[c * NOUT + j];
        double e = fabs(wy - t) / fabs(t);
        if (e > worst) worst = e;
    }
    return worst;
}

/* the projection of the plain output yplain onto w.y = target, in double; max relative difference to out */
static double projection_error(const float *out, const float *target, int stride) {
    double worst = 0, ww = 0;
    for (int j = 0; j < NOUT; j++) ww += (double)wf[j] * wf[j];
    for (int c = 0; c < B; c++) {
        double wy = 0;
        for (int j = 0; j < NOUT; j++) wy += (double)wf[j] * yplain[c * NOUT + j];
        double k = (target[c * stride] - wy) / ww;
        for (int j = 0; j < NOUT; j++) {
            double want = yplain[c * NOUT + j] + wf[j] * k;
            double e = fabs(out[c * NOUT + j] - want) / fmax(1, fabs(want));
            if (e > worst) worst = e;
        }
    }
    return worst;
}

static double softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    const char *build = argc > 2 ? argv[2] : "build";
    inloop_status st;
    int64_t n = 0;
    for (int i = 0; i < NIN * B; i++) x[i] = (float)(0.5 + 0.4 * sin(0.37 * i));   /* feature 19 stays > 0.1 */
    for (int j = 0; j < NOUT; j++) { wd[j] = 0.5 + 0.1 * ((j * 7) % 11); wf[j] = (float)wd[j]; }  /* masses dp/g */
    for (int c = 0; c < B; c++) s[c] = (float)(1.0 + 0.25 * c);

    inloop_model *plain = load(fixtures);
    st = inloop_model_forward_f32(plain, x, B, yplain);
    expect("plain forward", st, INLOOP_OK);

    /* 1. conservation, target a new input (float64 weights) */
    inloop_model *m = load(fixtures);
    expect("conservation_f64 target input", inloop_model_add_constraint_conservation_f64(m, 0, wd, NOUT, -1), INLOOP_OK);
    inloop_model_num_inputs(m, &n);
    const char *name = NULL;
    inloop_model_input_name(m, 1, &name);
    report("conservation/new input", n == 2 && name && strstr(name, "_target"), "%lld inputs, input 1 '%s'", (long long)n,
           name ? name : "(NULL)");
    {
        const float *ins[2] = {x, s};
        float *outs[1] = {y};
        st = inloop_model_run_f32(m, B, 2, ins, 1, outs);
        double c = conservation_error(y, s, 1), p = projection_error(y, s, 1);
        report("conservation/target input: |w.y'-s|/|s| < 1e-6", st == INLOOP_OK && c < 1e-6, "%s, error %.3g", inloop_status_string(st), c);
        report("conservation/target input: y' is the projection of y", st == INLOOP_OK && p < 1e-5, "error %.3g", p);
        expect("conservation/forward refuses two inputs", inloop_model_forward_f32(m, x, B, y), INLOOP_ERR_INVALID_ARGUMENT);
        if (ALLOC_COUNTING) {
            long allocs;
            count_start();
            for (int i = 0; i < 10; i++) st = inloop_model_run_f32(m, B, 2, ins, 1, outs);
            allocs = count_stop(NULL);
            report("conservation/no allocation after the first call", st == INLOOP_OK && allocs == 0, "%ld allocations in 10 calls", allocs);
        }
    }

    /* 2. conservation, target = feature 19 of x (float32 weights): one input, trainable */
    inloop_model *f = load(fixtures);
    expect("conservation_f32 target feature", inloop_model_add_constraint_conservation_f32(f, 0, wf, NOUT, 19), INLOOP_OK);
    inloop_model_num_inputs(f, &n);
    st = inloop_model_forward_f32(f, x, B, y);
    {
        double c = conservation_error(y, x + 19, NIN), p = projection_error(y, x + 19, NIN);
        report("conservation/target feature: one input, |w.y'-x19|/|x19| < 1e-6", n == 1 && st == INLOOP_OK && c < 1e-6,
               "%lld inputs, %s, error %.3g", (long long)n, inloop_status_string(st), c);
        report("conservation/target feature: the projection", st == INLOOP_OK && p < 1e-5, "error %.3g", p);
    }

    /* 3. training through the constraint; save (v2) and load: bitwise the same outputs */
    {
        inloop_trainer *t = NULL;
        st = inloop_trainer_create_from_model(f, "optimizer: {type: adam, lr: 0.01}", &t);
        expect("trainer from the constrained model", st, INLOOP_OK);
        float target[NOUT * B];
        for (int i = 0; i < NOUT * B; i++) target[i] = (float)(0.1 * (i % 5));
        double loss = 0, first = 0;
        for (int k = 0; st == INLOOP_OK && k < 5; k++) {
            st = inloop_trainer_step_f32(t, x, target, B, &loss);
            if (k == 0) first = loss;
        }
        report("training/5 steps lower the loss", st == INLOOP_OK && loss < first, "%s, loss %g -> %g", inloop_status_string(st), first, loss);
        char path[600];
        snprintf(path, sizeof path, "%s/test_constraints_trained.safetensors", build);
        expect("training/save_model", inloop_trainer_save_model(t, path), INLOOP_OK);
        inloop_model *trained = NULL, *back = NULL;
        expect("training/copy_model", inloop_trainer_copy_model(t, &trained), INLOOP_OK);
        expect("training/load saved", inloop_model_load(path, &back), INLOOP_OK);
        if (trained && back) {
            st = inloop_model_forward_f32(trained, x, B, y);
            inloop_status st2 = inloop_model_forward_f32(back, x, B, y2);
            double c = conservation_error(y, x + 19, NIN);
            report("training/conservation after training < 1e-6", st == INLOOP_OK && c < 1e-6, "error %.3g", c);
            report("training/reloaded model bitwise equal", st == INLOOP_OK && st2 == INLOOP_OK && memcmp(y, y2, sizeof y) == 0,
                   "%s / %s", inloop_status_string(st), inloop_status_string(st2));
        }
        inloop_model_free(trained);
        inloop_model_free(back);
        inloop_trainer_free(t);
        remove(path);
    }

    /* 4. bounds: softplus positivity, clamp range */
    inloop_model *b = load(fixtures);
    expect("bounds softplus lo=0", inloop_model_add_constraint_bounds(b, 0, 0.0, INFINITY, 1), INLOOP_OK);
    st = inloop_model_forward_f32(b, x, B, y);
    {
        double worst = 0;
        int pos = 1;
        for (int i = 0; i < NOUT * B; i++) {
            double want = softplus(yplain[i]);
            worst = fmax(worst, fabs(y[i] - want) / fmax(1, fabs(want)));
            pos &= y[i] >= 0;
        }
        report("bounds/softplus positivity", st == INLOOP_OK && pos && worst < 1e-6, "error %.3g, all >= 0: %d", worst, pos);
    }
    inloop_model *cl = load(fixtures);
    expect("bounds clamp [-0.05, 0.05]", inloop_model_add_constraint_bounds(cl, 0, -0.05, 0.05, 0), INLOOP_OK);
    st = inloop_model_forward_f32(cl, x, B, y);
    {
        int ok = st == INLOOP_OK;
        for (int i = 0; i < NOUT * B; i++) ok &= y[i] == fminf(fmaxf(yplain[i], -0.05f), 0.05f);
        report("bounds/clamp", ok, "%s", inloop_status_string(st));
    }

    /* 5. the mass fixer (float64 weights) */
    inloop_model *mf = load(fixtures);
    expect("mass fixer f64", inloop_model_add_constraint_mass_fixer_f64(mf, 0, wd, NOUT), INLOOP_OK);
    st = inloop_model_forward_f32(mf, x, B, y);
    {
        int ok = st == INLOOP_OK, negatives = 0;
        double worst = 0;
        for (int c = 0; c < B; c++) {
            double before = 0, after = 0, p = 0;
            for (int j = 0; j < NOUT; j++) {
                before += (double)wf[j] * yplain[c * NOUT + j];
                after += (double)wf[j] * y[c * NOUT + j];
                p += (double)wf[j] * fmax(yplain[c * NOUT + j], 0);
                negatives += yplain[c * NOUT + j] < 0;
                ok &= y[c * NOUT + j] >= 0;
            }
            for (int j = 0; j < NOUT; j++) {   /* the rule, here */
                double want = before > 0 ? fmax(yplain[c * NOUT + j], 0) * before / p : 0;
                worst = fmax(worst, fabs(y[c * NOUT + j] - want) / fmax(1e-3, fabs(want)));
            }
            if (before > 0) worst = fmax(worst, fabs(after - before) / before);
        }
        report("mass fixer/no negative value, integrals kept, the rule", ok && worst < 1e-5 && negatives > 0,
               "error %.3g, %d negative values before", worst, negatives);
    }

    /* 6. bad arguments: a status, and the model unchanged */
    inloop_model *e = load(fixtures);
    double zero[NOUT] = {0}, neg[NOUT];
    for (int j = 0; j < NOUT; j++) neg[j] = j == 3 ? -1 : 1;
    expect("bad/NULL model", inloop_model_add_constraint_bounds(NULL, 0, 0, 1, 0), INLOOP_ERR_NULL_POINTER);
    expect("bad/output out of range", inloop_model_add_constraint_conservation_f64(e, 1, wd, NOUT, -1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/output negative", inloop_model_add_constraint_bounds(e, -1, 0, 1, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/k not the output size", inloop_model_add_constraint_conservation_f64(e, 0, wd, NOUT - 1, -1), INLOOP_ERR_SIZE_MISMATCH);
    expect("bad/k negative", inloop_model_add_constraint_mass_fixer_f64(e, 0, wd, -3), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/w NULL with k > 0", inloop_model_add_constraint_conservation_f32(e, 0, NULL, NOUT, -1), INLOOP_ERR_NULL_POINTER);
    expect("bad/mass fixer w NULL", inloop_model_add_constraint_mass_fixer_f32(e, 0, NULL, 0), INLOOP_ERR_NULL_POINTER);
    expect("bad/w.w = 0", inloop_model_add_constraint_conservation_f64(e, 0, zero, NOUT, -1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/target feature 20 of 20", inloop_model_add_constraint_conservation_f64(e, 0, wd, NOUT, 20), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/target feature -2", inloop_model_add_constraint_conservation_f64(e, 0, wd, NOUT, -2), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/weight NaN", inloop_model_add_constraint_conservation_f64(e, 0, (double[NOUT]){1, NAN, 1, 1, 1, 1, 1, 1, 1, 1}, NOUT, -1),
           INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/bounds lo >= hi", inloop_model_add_constraint_bounds(e, 0, 1, 1, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/bounds NaN", inloop_model_add_constraint_bounds(e, 0, NAN, 1, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/bounds both open", inloop_model_add_constraint_bounds(e, 0, -INFINITY, INFINITY, 1), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/bounds form 2", inloop_model_add_constraint_bounds(e, 0, 0, 1, 2), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/bounds beyond float32", inloop_model_add_constraint_bounds(e, 0, -1e300, 1, 0), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/mass fixer negative weight", inloop_model_add_constraint_mass_fixer_f64(e, 0, neg, NOUT), INLOOP_ERR_INVALID_ARGUMENT);
    expect("bad/mass fixer all zero", inloop_model_add_constraint_mass_fixer_f64(e, 0, zero, NOUT), INLOOP_ERR_INVALID_ARGUMENT);
    inloop_model_num_inputs(e, &n);
    st = inloop_model_forward_f32(e, x, B, y);
    report("bad/model unchanged after the errors", n == 1 && st == INLOOP_OK && memcmp(y, yplain, sizeof y) == 0, "%lld inputs, %s",
           (long long)n, inloop_status_string(st));

    inloop_model_free(plain);
    inloop_model_free(m);
    inloop_model_free(f);
    inloop_model_free(b);
    inloop_model_free(cl);
    inloop_model_free(mf);
    inloop_model_free(e);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
