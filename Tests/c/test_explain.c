/*
 * test_explain.c - interpretability from C (issue 15, item 5): inloop_model_saliency_f32/_f64 and
 * inloop_model_optimize_input, against independent references computed here.
 *
 *   build/test_explain
 *
 * Uses a float64 model (7 -> 16 tanh -> 16 tanh -> 4, a seeded trainer's initial weights). Saliency
 * equals central finite differences of the model's own forward (1e-6 relative to the largest entry) and float32 saliency equals float64 to 1e-4;
 * backwards optimisation raises (or, with a negative step, lowers) the chosen output at every step,
 * keeps x inside its bounds, ends on the bound where the gradient still pushes, and with 0 steps
 * returns the forward output; every bad argument gets its status. Grad-CAM and LRP on a zero-bias ReLU
 * network (7 -> 16 relu -> 16 relu -> 4), where positive homogeneity gives exact references: Grad-CAM of
 * a hidden [N, C] tensor is relu(y_k); LRP with epsilon 0 is saliency times input and sums to y_k.
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

#include "check.h"

#define B 3

/* The float64 forward of the model's differentiable copy (what the derivative calls differentiate; a
   model made by a trainer runs inference in float32): jvp's y, with a zero tangent. */
static void fwd64(inloop_model *m, const double *x, double *y, double *scratch, size_t ni, size_t nn) {
    memset(scratch, 0, 8 * (ni > nn ? ni : nn));
    (void)inloop_model_jvp_f64(m, x, scratch, B, y, scratch + ni);
}

int main(int argc, char **argv) {
    inloop_model *m = NULL;
    inloop_trainer *t = NULL;
    int64_t nf = 0, no = 0;
    (void)argc; (void)argv;
    inloop_set_num_threads(1);
    /* a float64 model (a seeded trainer's initial weights): finite differences of its forward are exact
       to ~1e-10 */
    const char *cfg = "model:\n  inputs: 7\n  layers:\n    - {type: dense, out: 16, activation: tanh}\n"
                      "    - {type: dense, out: 16, activation: tanh}\n    - {type: dense, out: 4}\n"
                      "seed: 11\nprecision: float64\n";
    if (inloop_trainer_create(cfg, &t) != INLOOP_OK || inloop_trainer_copy_model(t, &m) != INLOOP_OK ||
        inloop_model_input_size(m, &nf) != INLOOP_OK || inloop_model_output_size(m, &no) != INLOOP_OK) {
        printf("FAIL a float64 model from a trainer: %s\n0 passed, 1 failed\n", inloop_last_error());
        return 1;
    }
    inloop_trainer_free(t);
    size_t ni = (size_t)(B * nf), nn = (size_t)(B * no);
    double *x = malloc(8 * ni), *s = malloc(8 * ni), *xp = malloc(8 * ni), *yp = malloc(8 * nn), *ym = malloc(8 * nn);
    double *y = malloc(8 * nn), *y0 = malloc(8 * nn), *lo = malloc(8 * nf), *hi = malloc(8 * nf), *x0 = malloc(8 * ni);
    float *x4 = malloc(4 * ni), *s4 = malloc(4 * ni);
    double *scratch = malloc(8 * (ni + nn));
    for (size_t i = 0; i < ni; i++) { x4[i] = (float)(0.8 * sin(0.7 * (double)i + 0.3)); x[i] = x4[i]; }
    int64_t k = no > 2 ? 2 : 0;

    /* saliency against central finite differences of forward_f64 */
    expect("saliency_f64", inloop_model_saliency_f64(m, x, B, k, s), INLOOP_OK);
    double h = 1e-6, worst = 0, scale = 0;
    for (size_t i = 0; i < ni; i++) scale = fabs(s[i]) > scale ? fabs(s[i]) : scale;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < nf; i++) {
            memcpy(xp, x, 8 * ni);
            xp[b * nf + i] = x[b * nf + i] + h;
            fwd64(m, xp, yp, scratch, ni, nn);
            xp[b * nf + i] = x[b * nf + i] - h;
            fwd64(m, xp, ym, scratch, ni, nn);
            double fd = (yp[b * no + k] - ym[b * no + k]) / (2 * h);
            double e = fabs(fd - s[b * nf + i]);
            worst = e > worst ? e : worst;
        }
    report("saliency/equals_central_differences", scale > 0 && worst <= 1e-6 * scale, "worst %.3g, largest entry %.3g", worst, scale);
    expect("saliency_f32", inloop_model_saliency_f32(m, x4, B, k, s4), INLOOP_OK);
    worst = 0;
    for (size_t i = 0; i < ni; i++) { double e = fabs((double)s4[i] - s[i]); worst = e > worst ? e : worst; }
    report("saliency/f32_equals_f64_1e-4", worst <= 1e-4 * scale, "worst %.3g", worst);

    /* backwards optimisation: ascent raises y_k every step and stays in bounds */
    for (int64_t i = 0; i < nf; i++) { lo[i] = -1; hi[i] = 1; }
    memcpy(x0, x, 8 * ni);
    expect("optimize_input/0_steps", inloop_model_optimize_input(m, x, B, k, 0, 0.1, lo, hi, y0), INLOOP_OK);
    fwd64(m, x0, y, scratch, ni, nn);
    report("optimize_input/0_steps_is_forward", memcmp(y, y0, 8 * nn) == 0 && memcmp(x, x0, 8 * ni) == 0, "differs");
    int up = 1, inside = 1;
    for (int step = 0; step < 20; step++) {
        expect(step == 0 ? "optimize_input/1_step" : "optimize_input/next_step",
               inloop_model_optimize_input(m, x, B, k, 1, 0.05, lo, hi, y), INLOOP_OK);
        for (int64_t b = 0; b < B; b++) up = up && y[b * no + k] >= y0[b * no + k] - 1e-12;
        for (size_t i = 0; i < ni; i++) inside = inside && x[i] >= -1 && x[i] <= 1;
        memcpy(y0, y, 8 * nn);
    }
    report("optimize_input/ascent_never_lowers_the_output", up, "an ascent step lowered y_k");
    report("optimize_input/stays_in_bounds", inside, "x left [lo, hi]");
    fwd64(m, x0, ym, scratch, ni, nn);
    int gained = 1;
    for (int64_t b = 0; b < B; b++) gained = gained && y[b * no + k] > ym[b * no + k];
    report("optimize_input/raises_the_output", gained, "y_k not above the start");
    /* a feature on a bound stays there only where the gradient pushes outwards */
    inloop_model_saliency_f64(m, x, B, k, s);
    int stuck = 1;
    for (size_t i = 0; i < ni; i++) {
        if (x[i] == 1 && s[i] < 0) stuck = 0;
        if (x[i] == -1 && s[i] > 0) stuck = 0;
    }
    report("optimize_input/bound_features_push_outwards", stuck, "a feature rests on a bound the gradient pulls away from");
    memcpy(x, x0, 8 * ni);
    expect("optimize_input/descent", inloop_model_optimize_input(m, x, B, k, 10, -0.05, NULL, NULL, y), INLOOP_OK);
    int lower = 1;
    for (int64_t b = 0; b < B; b++) lower = lower && y[b * no + k] < ym[b * no + k];
    report("optimize_input/negative_step_lowers_the_output", lower, "y_k not below the start");

    /* bad arguments */
    expect("saliency/output_index_high", inloop_model_saliency_f64(m, x, B, no, s), INLOOP_ERR_INVALID_ARGUMENT);
    expect("saliency/output_index_negative", inloop_model_saliency_f64(m, x, B, -1, s), INLOOP_ERR_INVALID_ARGUMENT);
    expect("saliency/batch_0", inloop_model_saliency_f64(m, x, 0, k, s), INLOOP_ERR_INVALID_ARGUMENT);
    expect("saliency/null_s", inloop_model_saliency_f32(m, x4, B, k, NULL), INLOOP_ERR_NULL_POINTER);
    expect("saliency/null_handle", inloop_model_saliency_f32(NULL, x4, B, k, s4), INLOOP_ERR_NULL_POINTER);
    expect("optimize_input/negative_steps", inloop_model_optimize_input(m, x, B, k, -1, 0.1, NULL, NULL, NULL), INLOOP_ERR_INVALID_ARGUMENT);
    expect("optimize_input/nan_step", inloop_model_optimize_input(m, x, B, k, 1, NAN, NULL, NULL, NULL), INLOOP_ERR_INVALID_ARGUMENT);
    lo[1] = 2;
    expect("optimize_input/lo_above_hi", inloop_model_optimize_input(m, x, B, k, 1, 0.1, lo, hi, NULL), INLOOP_ERR_INVALID_ARGUMENT);
    expect("optimize_input/null_x", inloop_model_optimize_input(m, NULL, B, k, 1, 0.1, NULL, NULL, NULL), INLOOP_ERR_NULL_POINTER);
    expect("optimize_input/output_index_high", inloop_model_optimize_input(m, x, B, no, 1, 0.1, NULL, NULL, NULL), INLOOP_ERR_INVALID_ARGUMENT);

    /* Grad-CAM and LRP on a float64 ReLU network with zero biases (a trainer's initial weights):
       7 -> 16 relu -> 16 relu -> 4. Such a network is positively homogeneous layer by layer, so
       sum_c (dy_k/dh_c) h_c = y_k at every hidden layer h: Grad-CAM of an [N, C] tensor (one value per
       sample) is relu(y_k), and LRP with epsilon 0 is x * dy_k/dx (saliency times input) and conserves
       y_k: sum_i r_i = y_k. */
    expect("gradcam/tanh_model_works", inloop_model_gradcam_f64(m, "dense_3", x, B, k, 0, y), INLOOP_OK);
    expect("lrp/tanh_is_unsupported", inloop_model_lrp_f64(m, x, B, k, 0, s), INLOOP_ERR_UNSUPPORTED);
    inloop_model_free(m);
    m = NULL;
    const char *relu = "model:\n  inputs: 7\n  layers:\n    - {type: dense, out: 16, activation: relu}\n"
                       "    - {type: dense, out: 16, activation: relu}\n    - {type: dense, out: 4}\n"
                       "seed: 5\nprecision: float64\n";
    if (inloop_trainer_create(relu, &t) != INLOOP_OK || inloop_trainer_copy_model(t, &m) != INLOOP_OK) {
        printf("FAIL a float64 relu model from a trainer: %s\n", inloop_last_error());
        n_fail++;
    } else {
        inloop_trainer_free(t);
        double cam[B], *r = malloc(8 * ni), *r1 = malloc(8 * ni);
        float cam4[B], *r4 = malloc(4 * ni);
        int64_t count = 0;
        for (size_t i = 0; i < ni; i++) { x4[i] = (float)(0.8 * sin(0.7 * (double)i + 0.3)); x[i] = x4[i]; }
        fwd64(m, x, y, scratch, ni, nn);
        int positive = 0;
        for (int64_t b = 0; b < B; b++) positive += y[b * no + k] > 0;
        for (int layer = 1; layer <= 2; layer++) {
            const char *name = layer == 1 ? "dense_3" : "dense_6";
            char label[96];
            snprintf(label, sizeof label, "gradcam/%s_size_is_1", name);
            report(label, inloop_model_gradcam_size(m, name, 0, &count) == INLOOP_OK && count == 1, "count %lld: %s", (long long)count, inloop_last_error());
            snprintf(label, sizeof label, "gradcam/%s_f64", name);
            expect(label, inloop_model_gradcam_f64(m, name, x, B, k, 0, cam), INLOOP_OK);
            worst = 0;
            for (int64_t b = 0; b < B; b++) {
                double want = y[b * no + k] > 0 ? y[b * no + k] : 0, e = fabs(cam[b] - want);
                worst = e > worst ? e : worst;
            }
            snprintf(label, sizeof label, "gradcam/%s_is_relu_of_y_k_1e-12", name);
            report(label, worst <= 1e-12, "worst %.3g", worst);
            snprintf(label, sizeof label, "gradcam/%s_f32_equals_f64_1e-5", name);
            expect(label, inloop_model_gradcam_f32(m, name, x4, B, k, 0, cam4), INLOOP_OK);
            worst = 0;
            for (int64_t b = 0; b < B; b++) { double e = fabs((double)cam4[b] - cam[b]); worst = e > worst ? e : worst; }
            report(label, worst <= 1e-5, "worst %.3g", worst);
        }
        report("gradcam/some_sample_has_y_k_above_0", positive > 0, "no y_k > 0 among %d samples", B);
        expect("gradcam/output_tensor", inloop_model_gradcam_f64(m, "y", x, B, k, 0, cam), INLOOP_OK);
        worst = 0;
        for (int64_t b = 0; b < B; b++) { double want = y[b * no + k] > 0 ? y[b * no + k] : 0; worst = fmax(worst, fabs(cam[b] - want)); }
        report("gradcam/output_tensor_is_relu_of_y_k", worst <= 1e-14, "worst %.3g", worst);

        expect("lrp_f64/epsilon_0", inloop_model_lrp_f64(m, x, B, k, 0, r), INLOOP_OK);
        expect("saliency_f64/relu", inloop_model_saliency_f64(m, x, B, k, s), INLOOP_OK);
        worst = 0, scale = 0;
        for (size_t i = 0; i < ni; i++) { worst = fmax(worst, fabs(r[i] - x[i] * s[i])); scale = fmax(scale, fabs(r[i])); }
        report("lrp/epsilon_0_is_gradient_times_input", scale > 0 && worst <= 1e-13 * scale, "worst %.3g of %.3g", worst, scale);
        double cons = 0;
        for (int64_t b = 0; b < B; b++) {
            double sum = 0;
            for (int64_t i = 0; i < nf; i++) sum += r[b * nf + i];
            cons = fmax(cons, fabs(sum - y[b * no + k]) / fmax(fabs(y[b * no + k]), 1e-300));
        }
        report("lrp/conserves_y_k_1e-12", cons <= 1e-12, "worst relative %.3g", cons);
        expect("lrp_f64/epsilon_1e-9", inloop_model_lrp_f64(m, x, B, k, 1e-9, r1), INLOOP_OK);
        worst = 0;
        for (size_t i = 0; i < ni; i++) worst = fmax(worst, fabs(r1[i] - r[i]));
        report("lrp/small_epsilon_is_close_to_0", worst <= 1e-6 * scale && worst > 0, "worst %.3g", worst);
        expect("lrp_f64/epsilon_10", inloop_model_lrp_f64(m, x, B, k, 10, r1), INLOOP_OK);
        int absorbs = 1;
        for (int64_t b = 0; b < B; b++) {
            double sum = 0, sum0 = 0;
            for (int64_t i = 0; i < nf; i++) { sum += fabs(r1[b * nf + i]); sum0 += fabs(r[b * nf + i]); }
            absorbs = absorbs && sum < sum0;
        }
        report("lrp/large_epsilon_absorbs_relevance", absorbs, "sum |r| did not shrink");
        expect("lrp_f32", inloop_model_lrp_f32(m, x4, B, k, 0, r4), INLOOP_OK);
        worst = 0;
        for (size_t i = 0; i < ni; i++) worst = fmax(worst, fabs((double)r4[i] - r[i]));
        report("lrp/f32_equals_f64_1e-5", worst <= 1e-5 * scale, "worst %.3g", worst);

        /* bad arguments */
        expect("gradcam/unknown_tensor", inloop_model_gradcam_f64(m, "no_such_tensor", x, B, k, 0, cam), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/input_tensor", inloop_model_gradcam_f64(m, "x", x, B, k, 0, cam), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/a_weight", inloop_model_gradcam_size(m, "weight_1", 0, &count), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/upsample_a_dense_tensor", inloop_model_gradcam_f64(m, "dense_3", x, B, k, 1, cam), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/output_index_high", inloop_model_gradcam_f64(m, "dense_3", x, B, no, 0, cam), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/batch_0", inloop_model_gradcam_f64(m, "dense_3", x, 0, k, 0, cam), INLOOP_ERR_INVALID_ARGUMENT);
        expect("gradcam/null_name", inloop_model_gradcam_f64(m, NULL, x, B, k, 0, cam), INLOOP_ERR_NULL_POINTER);
        expect("gradcam/null_map", inloop_model_gradcam_f32(m, "dense_3", x4, B, k, 0, NULL), INLOOP_ERR_NULL_POINTER);
        expect("gradcam/null_handle", inloop_model_gradcam_f32(NULL, "dense_3", x4, B, k, 0, cam4), INLOOP_ERR_NULL_POINTER);
        expect("gradcam_size/null_count", inloop_model_gradcam_size(m, "dense_3", 0, NULL), INLOOP_ERR_NULL_POINTER);
        expect("lrp/negative_epsilon", inloop_model_lrp_f64(m, x, B, k, -1e-3, r), INLOOP_ERR_INVALID_ARGUMENT);
        expect("lrp/nan_epsilon", inloop_model_lrp_f64(m, x, B, k, NAN, r), INLOOP_ERR_INVALID_ARGUMENT);
        expect("lrp/output_index_negative", inloop_model_lrp_f64(m, x, B, -1, 0, r), INLOOP_ERR_INVALID_ARGUMENT);
        expect("lrp/null_r", inloop_model_lrp_f32(m, x4, B, k, 0, NULL), INLOOP_ERR_NULL_POINTER);
        expect("lrp/null_handle", inloop_model_lrp_f64(NULL, x, B, k, 0, r), INLOOP_ERR_NULL_POINTER);
        free(r); free(r1); free(r4);
    }
    inloop_model_free(m);
    free(x); free(s); free(xp); free(yp); free(ym); free(y); free(y0); free(lo); free(hi); free(x0); free(x4); free(s4); free(scratch);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
