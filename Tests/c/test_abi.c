/* C ABI regressions of issue 11 (parts 5 and 9).
 *
 * One handle space: every entry point that takes a model or trainer handle, given a handle of the
 * other kind (a live one), returns INLOOP_ERR_INVALID_HANDLE with "a trainer handle where a model
 * handle is expected" (or the reverse) and changes nothing: afterwards the model still computes the
 * same outputs and the trainer still has its step count; inloop_model_free(trainer) and
 * inloop_trainer_free(model) free nothing. Each entry point checked prints "covered: <name>";
 * tools/run_tests.py checks that this list holds every header function with a handle parameter.
 *
 * inloop_model_run_f64 refuses two outputs that overlap each other, as inloop_model_run_f32 does,
 * while an output may overlap an input in float64 (inputs are read first): the results then equal
 * those of separate arrays (and the float32 run's, converted).
 *
 * Usage: test_abi FIXTURES_DIR    (prints "N passed, M failed")
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inloop.h"

static int passed, failed;

/* `detail` is often inloop_last_error(): the macro evaluates the checked call first, since the order in
   which a function's arguments are evaluated is unspecified (a stale message was printed otherwise). */
#define check(ok, name, detail) do { int check_ok_ = (ok); check_((check_ok_), (name), (detail)); } while (0)
static void check_(int ok, const char *name, const char *detail) {
    if (ok) passed++;
    else {
        failed++;
        printf("FAIL %s%s%s\n", name, detail ? ": " : "", detail ? detail : "");
    }
}

/* A call given a handle of the wrong kind: INVALID_HANDLE naming both kinds. */
static void wrong_kind(const char *fn, inloop_status st, const char *want_kind, const char *got_kind) {
    char want[160], detail[700];
    snprintf(want, sizeof want, "a %s handle where a %s handle is expected", got_kind, want_kind);
    snprintf(detail, sizeof detail, "status %d, message '%s'", (int)st, inloop_last_error());
    check(st == INLOOP_ERR_INVALID_HANDLE && strstr(inloop_last_error(), want) != NULL, fn, detail);
    printf("covered: %s\n", fn);
}

#define MODEL_CALL(fn, ...) wrong_kind(#fn, fn((inloop_model *)(void *)t, __VA_ARGS__), "model", "trainer")
#define TRAINER_CALL(fn, ...) wrong_kind(#fn, fn((inloop_trainer *)(void *)m, __VA_ARGS__), "trainer", "model")

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    char path[600];
    inloop_model *m = NULL, *got = NULL;
    inloop_trainer *t = NULL, *made = NULL;
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    if (inloop_model_load(path, &m) != INLOOP_OK) { printf("cannot load %s: %s\n0 passed, 1 failed\n", path, inloop_last_error()); return 1; }
    if (inloop_trainer_create_from_model(m, NULL, &t) != INLOOP_OK) { printf("trainer: %s\n0 passed, 1 failed\n", inloop_last_error()); return 1; }
    check((uintptr_t)(void *)m != (uintptr_t)(void *)t, "model and trainer handles differ", NULL);

    int64_t n_in = 0, n_out = 0, B = 3;
    inloop_model_input_size(m, &n_in);
    inloop_model_output_size(m, &n_out);
    float *x = calloc((size_t)(n_in * B), sizeof *x), *y = calloc((size_t)(n_out * B), sizeof *y),
          *yref = calloc((size_t)(n_out * B), sizeof *yref), *dx = calloc((size_t)(n_in * B), sizeof *dx),
          *j = calloc((size_t)(n_in * n_out * B), sizeof *j);
    double *xd = calloc((size_t)(n_in * B), sizeof *xd), *yd = calloc((size_t)(n_out * B), sizeof *yd),
           *dxd = calloc((size_t)(n_in * B), sizeof *dxd), *jd = calloc((size_t)(n_in * n_out * B), sizeof *jd);
    for (int64_t i = 0; i < n_in * B; i++) { x[i] = (float)sin(0.3 * (double)i); xd[i] = x[i]; dx[i] = 1; dxd[i] = 1; }
    for (int64_t i = 0; i < n_out * B; i++) { y[i] = 0.5f; yd[i] = 0.5; }
    check(inloop_model_forward_f32(m, x, B, yref) == INLOOP_OK, "reference forward", inloop_last_error());
    double loss = 0;
    check(inloop_trainer_step_f32(t, x, y, B, &loss) == INLOOP_OK, "one trainer step", inloop_last_error());
    int64_t steps = -1, v = 0;
    inloop_trainer_step_count(t, &steps);

    /* Every entry point that takes a model handle, given the trainer. */
    const char *name = NULL;
    int32_t r32 = 0;
    int64_t dims[8];
    const float *ins[1] = {x};
    float *outs[1] = {y};
    const double *insd[1] = {xd};
    double *outsd[1] = {yd};
    MODEL_CALL(inloop_model_num_inputs, &v);
    MODEL_CALL(inloop_model_num_outputs, &v);
    MODEL_CALL(inloop_model_input_size, &v);
    MODEL_CALL(inloop_model_output_size, &v);
    MODEL_CALL(inloop_model_input_name, 0, &name);
    MODEL_CALL(inloop_model_output_name, 0, &name);
    MODEL_CALL(inloop_model_forward_f32, x, B, y);
    MODEL_CALL(inloop_model_forward_f64, xd, B, yd);
    MODEL_CALL(inloop_model_forward_sized_f32, x, n_in, B, y, n_out);
    MODEL_CALL(inloop_model_forward_sized_f64, xd, n_in, B, yd, n_out);
    MODEL_CALL(inloop_model_input_rank, 0, &v);
    MODEL_CALL(inloop_model_output_rank, 0, &v);
    MODEL_CALL(inloop_model_input_shape, 0, dims, 8);
    MODEL_CALL(inloop_model_output_shape, 0, dims, 8);
    MODEL_CALL(inloop_model_input_index, "x", &v);
    MODEL_CALL(inloop_model_output_index, "y", &v);
    MODEL_CALL(inloop_model_run_f32, B, 1, ins, 1, outs);
    MODEL_CALL(inloop_model_run_f64, B, 1, insd, 1, outsd);
    {
        int64_t ranks[1] = {2}, sdims[2] = {B, n_in}, caps[1] = {n_out * B}, oranks[1], odims[2];
        MODEL_CALL(inloop_model_run_shaped_f32, 1, ranks, sdims, ins, 1, caps, outs, oranks, odims, 2);
        MODEL_CALL(inloop_model_run_shaped_f64, 1, ranks, sdims, insd, 1, caps, outsd, oranks, odims, 2);
        MODEL_CALL(inloop_model_output_shapes, 1, ranks, sdims, 1, oranks, odims, 2);
    }
    MODEL_CALL(inloop_model_set_check_finite, 1);
    MODEL_CALL(inloop_model_set_reproducible, 1);
    {
        int32_t flags[8];
        int64_t fcounts[8];
        double lo[8] = {0}, hi[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        MODEL_CALL(inloop_model_set_range_check, 1);
        MODEL_CALL(inloop_model_range_flags, B, flags);
        MODEL_CALL(inloop_model_range_feature_counts, 1, fcounts);
        MODEL_CALL(inloop_model_set_input_range, 1, lo, hi);
        MODEL_CALL(inloop_model_set_input_range_from_samples_f32, x, B);
        MODEL_CALL(inloop_model_set_input_range_from_samples_f64, xd, B);
        MODEL_CALL(inloop_model_set_input_range_from_file, "/tmp/inloop_test_abi_never_read.safetensors");
        MODEL_CALL(inloop_model_input_range, 1, lo, hi, NULL, NULL, NULL);
        MODEL_CALL(inloop_model_set_noise_input, 0, 0, 1, 7);
        MODEL_CALL(inloop_model_set_noise_step, 0, 0, 0, 0);
        MODEL_CALL(inloop_model_saliency_f32, x, B, 0, dx);
        MODEL_CALL(inloop_model_saliency_f64, xd, B, 0, dxd);
        MODEL_CALL(inloop_model_optimize_input, xd, B, 0, 1, 0.1, NULL, NULL, NULL);
        {
            int64_t cam_count = 0;
            MODEL_CALL(inloop_model_gradcam_size, "y", 0, &cam_count);
        }
        MODEL_CALL(inloop_model_gradcam_f32, "y", x, B, 0, 0, dx);
        MODEL_CALL(inloop_model_gradcam_f64, "y", xd, B, 0, 0, dxd);
        MODEL_CALL(inloop_model_lrp_f32, x, B, 0, 1e-6, dx);
        MODEL_CALL(inloop_model_lrp_f64, xd, B, 0, 1e-6, dxd);
        const float w32[1] = {1};
        const double w64[1] = {1};
        MODEL_CALL(inloop_model_add_constraint_conservation_f32, 0, w32, 1, -1);
        MODEL_CALL(inloop_model_add_constraint_conservation_f64, 0, w64, 1, -1);
        MODEL_CALL(inloop_model_add_constraint_bounds, 0, 0.0, 1.0, 0);
        MODEL_CALL(inloop_model_add_constraint_mass_fixer_f32, 0, w32, 1);
        MODEL_CALL(inloop_model_add_constraint_mass_fixer_f64, 0, w64, 1);
        MODEL_CALL(inloop_model_forward_ensemble_f32, x, B, y, dx);
        MODEL_CALL(inloop_model_forward_ensemble_f64, xd, B, yd, dxd);
        MODEL_CALL(inloop_model_set_mc_dropout, 4, 1);
        MODEL_CALL(inloop_model_save, "/tmp/inloop_test_abi_never_written.safetensors");
    }
    MODEL_CALL(inloop_model_jvp_f32, x, dx, B, y, y);
    MODEL_CALL(inloop_model_jvp_f64, xd, dxd, B, yd, yd);
    MODEL_CALL(inloop_model_vjp_f32, x, y, B, dx);
    MODEL_CALL(inloop_model_vjp_f64, xd, yd, B, dxd);
    MODEL_CALL(inloop_model_jacobian_f32, x, B, j);
    MODEL_CALL(inloop_model_jacobian_f64, xd, B, jd);
    MODEL_CALL(inloop_trainer_create_from_model, NULL, &made);
    check(made == NULL, "create_from_model(trainer) makes no trainer", NULL);
    wrong_kind("inloop_model_free", inloop_model_free((inloop_model *)(void *)t), "model", "trainer");

    /* Every entry point that takes a trainer handle, given the model. */
    double d = 0;
    int32_t rank = -1, size = -1;
    TRAINER_CALL(inloop_trainer_set_communicator, 0);
    TRAINER_CALL(inloop_trainer_rank, &rank, &size);
    TRAINER_CALL(inloop_trainer_save_checkpoint, "/tmp/inloop_test_abi_never_written.ckpt");
    TRAINER_CALL(inloop_trainer_save_model, "/tmp/inloop_test_abi_never_written.safetensors");
    TRAINER_CALL(inloop_trainer_copy_model, &got);
    check(got == NULL, "copy_model(model) makes no model", NULL);
    TRAINER_CALL(inloop_trainer_step_f32, x, y, B, &loss);
    TRAINER_CALL(inloop_trainer_step_f64, xd, yd, B, &loss);
    TRAINER_CALL(inloop_trainer_step_sized_f32, x, n_in, B, y, n_out, B, &loss);
    TRAINER_CALL(inloop_trainer_step_sized_f64, xd, n_in, B, yd, n_out, B, &loss);
    TRAINER_CALL(inloop_trainer_evaluate_f32, x, y, B, &loss);
    TRAINER_CALL(inloop_trainer_evaluate_f64, xd, yd, B, &loss);
    TRAINER_CALL(inloop_trainer_set_learning_rate, 0.5);
    TRAINER_CALL(inloop_trainer_get_learning_rate, &d);
    TRAINER_CALL(inloop_trainer_step_count, &v);
    TRAINER_CALL(inloop_trainer_gradient_norm, &d);
    TRAINER_CALL(inloop_trainer_loss_history, &d, 1, &v);
    TRAINER_CALL(inloop_trainer_sizes, &v, &v);
    wrong_kind("inloop_trainer_free", inloop_trainer_free((inloop_trainer *)(void *)m), "trainer", "model");
    (void)r32;

    /* Nothing changed: the model computes the same, the trainer kept its state. */
    float *y2 = calloc((size_t)(n_out * B), sizeof *y2);
    check(inloop_model_forward_f32(m, x, B, y2) == INLOOP_OK && memcmp(y2, yref, (size_t)(n_out * B) * sizeof *y2) == 0,
          "the model computes the same after the wrong-kind calls (not freed, not changed)", inloop_last_error());
    int64_t steps2 = -2;
    check(inloop_trainer_step_count(t, &steps2) == INLOOP_OK && steps2 == steps,
          "the trainer keeps its step count after the wrong-kind calls", inloop_last_error());
    check(inloop_trainer_step_f32(t, x, y, B, &loss) == INLOOP_OK, "the trainer still steps", inloop_last_error());
    /* Freed handles stay invalid, and a freed handle of one kind is not taken for the other. */
    check(inloop_trainer_free(t) == INLOOP_OK && inloop_trainer_free(t) == INLOOP_ERR_INVALID_HANDLE &&
          inloop_model_free((inloop_model *)(void *)t) == INLOOP_ERR_INVALID_HANDLE,
          "a freed trainer handle is invalid for both kinds", inloop_last_error());
    check(inloop_model_forward_f32(m, x, B, y2) == INLOOP_OK && memcmp(y2, yref, (size_t)(n_out * B) * sizeof *y2) == 0,
          "the model is untouched by freeing the trainer", inloop_last_error());
    check(inloop_model_free(m) == INLOOP_OK && inloop_model_free(m) == INLOOP_ERR_INVALID_HANDLE,
          "the model frees once", inloop_last_error());

    /* run_f64 and overlapping outputs (two_io.onnx: x1 (3,4), x2 (4) -> y1 (3,5), y2 (4,4)). */
    snprintf(path, sizeof path, "%s/onnx/two_io.onnx", fixtures);
    inloop_model *g = NULL;
    if (inloop_model_load(path, &g) != INLOOP_OK) {
        check(0, "load two_io.onnx", inloop_last_error());
    } else {
        enum { N = 4, X1 = 12, X2 = 4, Y1 = 15, Y2 = 16 };
        double a1[N * X1], a2[N * X2], o1[N * Y1], o2[N * Y2], big[N * (Y1 + Y2)], both[N * X1 + N * Y2];
        float f1[N * X1], f2[N * X2], p1[N * Y1], p2[N * Y2], bigf[N * (Y1 + Y2)];
        for (int i = 0; i < N * X1; i++) { a1[i] = sin(0.7 * i); f1[i] = (float)a1[i]; }
        for (int i = 0; i < N * X2; i++) { a2[i] = cos(0.4 * i); f2[i] = (float)a2[i]; }
        const double *in64[2] = {a1, a2};
        double *out64[2] = {o1, o2};
        const float *in32[2] = {f1, f2};
        float *out32[2] = {p1, p2};
        check(inloop_model_run_f64(g, N, 2, in64, 2, out64) == INLOOP_OK, "run_f64 with separate outputs", inloop_last_error());
        check(inloop_model_run_f32(g, N, 2, in32, 2, out32) == INLOOP_OK, "run_f32 with separate outputs", inloop_last_error());
        int same = 1;
        for (int i = 0; i < N * Y1; i++) same = same && o1[i] == (double)p1[i];
        for (int i = 0; i < N * Y2; i++) same = same && o2[i] == (double)p2[i];
        check(same, "run_f64 equals run_f32 converted (float32 compute)", NULL);
        /* outputs overlapping each other: y2 starts inside y1 */
        for (int i = 0; i < N * (Y1 + Y2); i++) big[i] = -7;
        double *overlap64[2] = {big, big + 5};
        inloop_status st = inloop_model_run_f64(g, N, 2, in64, 2, overlap64);
        int untouched = 1;
        for (int i = 0; i < N * (Y1 + Y2); i++) untouched = untouched && big[i] == -7;
        check(st == INLOOP_ERR_INVALID_ARGUMENT && strstr(inloop_last_error(), "overlap") != NULL && untouched,
              "run_f64 refuses two outputs that overlap (outputs untouched)", inloop_last_error());
        double *overlap64b[2] = {big + 5, big};   /* the other order */
        st = inloop_model_run_f64(g, N, 2, in64, 2, overlap64b);
        check(st == INLOOP_ERR_INVALID_ARGUMENT, "run_f64 refuses overlapping outputs in either order", inloop_last_error());
        float *overlap32[2] = {bigf, bigf + 5};
        st = inloop_model_run_f32(g, N, 2, in32, 2, overlap32);
        check(st == INLOOP_ERR_INVALID_ARGUMENT, "run_f32 refuses two outputs that overlap", inloop_last_error());
        /* adjacent outputs (no overlap) in one array are fine */
        double *adjacent[2] = {big, big + N * Y1};
        st = inloop_model_run_f64(g, N, 2, in64, 2, adjacent);
        check(st == INLOOP_OK && memcmp(big, o1, sizeof o1) == 0 && memcmp(big + N * Y1, o2, sizeof o2) == 0,
              "run_f64 with adjacent outputs in one array", inloop_last_error());
        /* float64: an output may overlap an input (inputs are read first) */
        memcpy(both, a1, sizeof a1);
        const double *in_both[2] = {both, a2};
        double *out_both[2] = {o1, both};   /* y2 written over x1 */
        double expect2[N * Y2];
        memcpy(expect2, o2, sizeof o2);
        st = inloop_model_run_f64(g, N, 2, in_both, 2, out_both);
        check(st == INLOOP_OK && memcmp(both, expect2, sizeof expect2) == 0,
              "run_f64: an output overlapping an input gives the separate arrays' result", inloop_last_error());
        inloop_model_free(g);
    }

    free(x); free(y); free(yref); free(dx); free(j); free(xd); free(yd); free(dxd); free(jd); free(y2);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
