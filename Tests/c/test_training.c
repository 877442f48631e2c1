/* C tests of training and model derivatives through the public header:
 *  - a trainer made from a YAML string learns a smooth function (validation loss target),
 *  - statistics, learning rate, checkpoint -> reload -> continue equals uninterrupted (bitwise),
 *  - no allocation in steady-state train steps, evaluations, jvp and vjp (interposed allocator),
 *  - bad input gives statuses and messages: NULL pointers, bad configs, NaN data (weights kept),
 *    freed handles, wrong files,
 *  - tangent-linear/adjoint dot-product test in double precision, Jacobian vs tangent-linear.
 *  - models loaded from ONNX (MODELS_DIR/l96.onnx when present): adjoint test, fine-tuning.
 * Usage: test_training FIXTURES_DIR TMP_DIR [MODELS_DIR]. Ends with "N passed, M failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inloop.h"
#include "alloc_count.h"

static int n_pass, n_fail;
static void check(int ok, const char *name, const char *detail) {
    if (ok) { n_pass++; printf("PASS %s\n", name); }
    else { n_fail++; printf("FAIL %s: %s\n", name, detail ? detail : inloop_last_error()); }
}
#define CHECK_OK(call, name) do { inloop_status st_ = (call); check(st_ == INLOOP_OK, name, NULL); } while (0)
#define CHECK_STATUS(call, want, name) do { inloop_status st_ = (call); char d_[600]; \
    snprintf(d_, sizeof d_, "status %d (%s), want %d; message: %s", (int)st_, inloop_status_string(st_), (int)(want), inloop_last_error()); \
    check(st_ == (want) && inloop_last_error()[0] != 0, name, d_); } while (0)

static const char *config =
    "model:\n"
    "  inputs: 2\n"
    "  layers:\n"
    "    - {type: dense, out: 32, activation: tanh}\n"
    "    - {type: dense, out: 32, activation: tanh}\n"
    "    - {type: dense, out: 1}\n"
    "optimizer: {type: adam, lr: 0.01}\n"
    "schedule: {type: cosine, period: 600, min_lr: 0.0005}\n"
    "seed: 7\n";

/* y = sin(2a) cos(b): a smooth function of two variables, samples from a fixed LCG */
static unsigned long long lcg = 12345;
static double uniform(void) { lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL; return (double)(lcg >> 11) / 9007199254740992.0; }
static void make_data(float *x, float *y, int n) {
    for (int i = 0; i < n; i++) {
        double a = 2 * uniform() - 1, b = 2 * uniform() - 1;
        x[2 * i] = (float)a; x[2 * i + 1] = (float)b; y[i] = (float)(sin(2 * a) * cos(b));
    }
}

static int same_outputs(inloop_trainer *a, inloop_trainer *b, const float *x, int n) {
    inloop_model *ma = NULL, *mb = NULL;
    float *ya = calloc((size_t)n, sizeof *ya), *yb = calloc((size_t)n, sizeof *yb);
    int same = inloop_trainer_get_model(a, &ma) == INLOOP_OK && inloop_trainer_get_model(b, &mb) == INLOOP_OK &&
               inloop_model_forward_f32(ma, x, n, ya) == INLOOP_OK && inloop_model_forward_f32(mb, x, n, yb) == INLOOP_OK &&
               memcmp(ya, yb, (size_t)n * sizeof *ya) == 0;
    (void)inloop_model_free(ma); (void)inloop_model_free(mb);
    free(ya); free(yb);
    return same;
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    const char *tmp = argc > 2 ? argv[2] : "/tmp";
    enum { N = 4096, B = 128, NV = 512 };
    float *x = malloc(sizeof(float) * 2 * N), *y = malloc(sizeof(float) * N);
    float *xv = malloc(sizeof(float) * 2 * NV), *yv = malloc(sizeof(float) * NV);
    double *x64 = malloc(sizeof(double) * 2 * B), *y64 = malloc(sizeof(double) * B);
    inloop_trainer *t = NULL, *t2 = NULL, *r = NULL;
    double loss = 0, first = 0, val = 0, lr = 0, norm = 0, hist[8];
    int64_t steps = 0, count = 0, n_in = 0, n_out = 0;
    char ckpt[1024], modelpath[1024], msg[256];
    make_data(x, y, N);
    make_data(xv, yv, NV);
    for (int i = 0; i < 2 * B; i++) x64[i] = x[i];
    for (int i = 0; i < B; i++) y64[i] = y[i];
    snprintf(ckpt, sizeof ckpt, "%s/inloop_test_training.ckpt", tmp);
    snprintf(modelpath, sizeof modelpath, "%s/inloop_test_training.safetensors", tmp);

    /* --- training to a stated validation loss --- */
    CHECK_OK(inloop_trainer_create(config, &t), "create trainer from a YAML string");
    CHECK_OK(inloop_trainer_sizes(t, &n_in, &n_out), "trainer sizes");
    check(n_in == 2 && n_out == 1, "trainer sizes are 2 -> 1", "wrong sizes");
    CHECK_OK(inloop_trainer_create(config, &t2), "second trainer, same seed");
    for (int epoch = 0; epoch < 20; epoch++) {
        for (int b = 0; b < N / B; b++) {
            inloop_status st = inloop_trainer_step_f32(t, x + 2 * b * B, y + b * B, B, &loss);
            if (st != INLOOP_OK) { check(0, "train step", NULL); break; }
            if (epoch == 0 && b == 0) first = loss;
            if (epoch == 0 && b == 9) CHECK_OK(inloop_trainer_save_checkpoint(t, ckpt), "checkpoint after 10 steps");
        }
    }
    CHECK_OK(inloop_trainer_evaluate_f32(t, xv, yv, NV, &val), "evaluate on validation data");
    snprintf(msg, sizeof msg, "validation MSE %.3g (first batch %.3g), want < 1e-3", val, first);
    check(val < 1e-3 && val < first / 50, "learns sin(2a)cos(b) to validation MSE < 1e-3", msg);
    printf("INFO validation MSE %.3e after 640 steps (first batch loss %.3e)\n", val, first);
    CHECK_OK(inloop_trainer_step_count(t, &steps), "step count");
    check(steps == 20 * (N / B), "step count is 640", "wrong step count");
    CHECK_OK(inloop_trainer_loss_history(t, hist, 8, &count), "loss history");
    check(count == 8 && fabs(hist[7] - loss) == 0, "loss history ends with the last loss", "history mismatch");
    CHECK_OK(inloop_trainer_gradient_norm(t, &norm), "gradient norm");
    check(norm > 0 && isfinite(norm), "gradient norm is positive and finite", "bad gradient norm");
    CHECK_OK(inloop_trainer_get_learning_rate(t, &lr), "learning rate");
    check(fabs(lr - 0.0005) < 1e-12, "cosine schedule reached its minimum", "wrong learning rate");

    /* --- exact restart: reload after 10 steps, redo the remaining 630, compare bitwise --- */
    CHECK_OK(inloop_trainer_load_checkpoint(ckpt, &r), "reload checkpoint");
    for (int epoch = 0; epoch < 20; epoch++)
        for (int b = (epoch == 0 ? 10 : 0); b < N / B; b++) (void)inloop_trainer_step_f32(r, x + 2 * b * B, y + b * B, B, &loss);
    check(same_outputs(t, r, xv, NV), "checkpoint + reload + continue gives bitwise the same model", "outputs differ");

    /* --- the trained model as a plain inference model file --- */
    CHECK_OK(inloop_trainer_save_model(t, modelpath), "save model");
    {
        inloop_model *m = NULL;
        float *ym = malloc(sizeof(float) * NV);
        double mse = 0;
        CHECK_OK(inloop_model_load(modelpath, &m), "load the saved model");
        CHECK_OK(inloop_model_forward_f32(m, xv, NV, ym), "forward the saved model");
        for (int i = 0; i < NV; i++) mse += (ym[i] - yv[i]) * (double)(ym[i] - yv[i]) / NV;
        snprintf(msg, sizeof msg, "saved model MSE %.6g vs trainer %.6g", mse, val);
        check(fabs(mse - val) <= 1e-6 * val + 1e-9, "saved model reproduces the validation loss", msg);
        (void)inloop_model_free(m);
        free(ym);
    }

    /* --- no allocation in steady state (1 OpenBLAS thread) --- */
    (void)inloop_set_num_threads(1);
    (void)inloop_trainer_step_f64(t2, x64, y64, B, &loss);   /* warm-up of the f64 conversion buffers */
    {
        long a, f;
        count_start();
        for (int i = 0; i < 50; i++) (void)inloop_trainer_step_f32(t2, x, y, B, &loss);
        a = count_stop(&f);
        snprintf(msg, sizeof msg, "%ld allocations in 50 steps", a);
        check(a == 0, "train step f32 allocates nothing in steady state", msg);
        count_start();
        for (int i = 0; i < 50; i++) (void)inloop_trainer_step_f64(t2, x64, y64, B, &loss);
        a = count_stop(&f);
        snprintf(msg, sizeof msg, "%ld allocations in 50 steps", a);
        check(a == 0, "train step f64 allocates nothing in steady state", msg);
        count_start();
        for (int i = 0; i < 50; i++) (void)inloop_trainer_evaluate_f32(t2, x, y, B, &loss);
        a = count_stop(&f);
        snprintf(msg, sizeof msg, "%ld allocations in 50 evaluations", a);
        check(a == 0, "evaluate allocates nothing in steady state", msg);
        count_start();
        (void)inloop_trainer_create(config, &r);
        a = count_stop(&f);
        check(a > 0, "allocation counter works (creating a trainer allocates)", "counter saw nothing");
        (void)inloop_trainer_free(r);
    }

    /* --- errors --- */
    CHECK_STATUS(inloop_trainer_create(NULL, &r), INLOOP_ERR_NULL_POINTER, "NULL config");
    CHECK_STATUS(inloop_trainer_create(config, NULL), INLOOP_ERR_NULL_POINTER, "NULL handle pointer");
    CHECK_STATUS(inloop_trainer_create("model: {inputs: 2, layers: [\n", &r), INLOOP_ERR_FORMAT, "invalid YAML");
    check(strstr(inloop_last_error(), "line") != NULL, "invalid YAML message names the line", inloop_last_error());
    CHECK_STATUS(inloop_trainer_create("optimizer: {type: adam}\n", &r), INLOOP_ERR_INVALID_ARGUMENT, "config without a model");
    CHECK_STATUS(inloop_trainer_create("model: {inputs: 2, layers: [{type: dense, out: 1, activaton: relu}]}\n", &r),
                 INLOOP_ERR_INVALID_ARGUMENT, "misspelt key");
    check(strstr(inloop_last_error(), "activaton") != NULL, "misspelt key is named", inloop_last_error());
    CHECK_STATUS(inloop_trainer_create("/nonexistent/config.yaml", &r), INLOOP_ERR_IO, "missing config file");
    CHECK_STATUS(inloop_trainer_step_f32(t, x, y, 0, &loss), INLOOP_ERR_INVALID_ARGUMENT, "batch 0");
    CHECK_STATUS(inloop_trainer_step_f32(t, NULL, y, B, &loss), INLOOP_ERR_NULL_POINTER, "NULL x");
    CHECK_STATUS(inloop_trainer_evaluate_f32(t, x, y, B, NULL), INLOOP_ERR_NULL_POINTER, "NULL loss for evaluate");
    {
        float saved = x[5];
        double before = 0;
        (void)inloop_trainer_step_count(t, &steps);
        (void)inloop_trainer_evaluate_f32(t, xv, yv, NV, &before);   /* same thread count as after */
        x[5] = NAN;
        CHECK_STATUS(inloop_trainer_step_f32(t, x, y, B, &loss), INLOOP_ERR_NONFINITE, "NaN in inputs");
        x[5] = saved;
        saved = y[3]; y[3] = INFINITY;
        CHECK_STATUS(inloop_trainer_step_f32(t, x, y, B, &loss), INLOOP_ERR_NONFINITE, "Inf in targets");
        y[3] = saved;
        int64_t after = 0;
        (void)inloop_trainer_step_count(t, &after);
        CHECK_OK(inloop_trainer_evaluate_f32(t, xv, yv, NV, &loss), "evaluate after refused steps");
        snprintf(msg, sizeof msg, "steps %lld -> %lld, validation loss %.17g -> %.17g", (long long)steps, (long long)after, before, loss);
        check(after == steps && loss == before, "refused steps change neither the step count nor the weights", msg);
    }
    CHECK_STATUS(inloop_trainer_set_learning_rate(t, -1), INLOOP_ERR_INVALID_ARGUMENT, "negative learning rate");
    CHECK_STATUS(inloop_trainer_load_checkpoint(modelpath, &r), INLOOP_ERR_FORMAT, "a model file is not a checkpoint");
    CHECK_STATUS(inloop_trainer_load_checkpoint("/nonexistent.ckpt", &r), INLOOP_ERR_IO, "missing checkpoint");
    CHECK_OK(inloop_trainer_free(t2), "free trainer");
    CHECK_STATUS(inloop_trainer_step_f32(t2, x, y, B, &loss), INLOOP_ERR_INVALID_HANDLE, "freed trainer");
    CHECK_STATUS(inloop_trainer_free(t2), INLOOP_ERR_INVALID_HANDLE, "double free");
    CHECK_OK(inloop_trainer_free(NULL), "free(NULL)");

    /* --- derivatives of a model: dot-product test in double, Jacobian vs tangent-linear --- */
    {
        char path[1024];
        inloop_model *m = NULL;
        int64_t ni = 0, no = 0;
        snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
        CHECK_OK(inloop_model_load(path, &m), "load mlp_medium for derivatives");
        (void)inloop_model_input_size(m, &ni);
        (void)inloop_model_output_size(m, &no);
        {
            const int nb = 5;
            double *xd = malloc(sizeof(double) * nb * ni), *dx = malloc(sizeof(double) * nb * ni), *adj = malloc(sizeof(double) * nb * ni);
            double *dy = malloc(sizeof(double) * nb * no), *tl = malloc(sizeof(double) * nb * no), *yy = malloc(sizeof(double) * nb * no);
            double *jac = malloc(sizeof(double) * nb * ni * no);
            double lhs = 0, rhs = 0, n1 = 0, n2 = 0, worst = 0;
            long a, f;
            for (int i = 0; i < nb * ni; i++) { xd[i] = 2 * uniform() - 1; dx[i] = 2 * uniform() - 1; }
            for (int i = 0; i < nb * no; i++) dy[i] = 2 * uniform() - 1;
            CHECK_OK(inloop_model_jvp_f64(m, xd, dx, nb, yy, tl), "jvp f64");
            CHECK_OK(inloop_model_vjp_f64(m, xd, dy, nb, adj), "vjp f64");
            for (int i = 0; i < nb * no; i++) { lhs += tl[i] * dy[i]; n1 += tl[i] * tl[i]; n2 += dy[i] * dy[i]; }
            for (int i = 0; i < nb * ni; i++) rhs += dx[i] * adj[i];
            snprintf(msg, sizeof msg, "<J dx, dy> = %.17g, <dx, J^T dy> = %.17g", lhs, rhs);
            check(fabs(lhs - rhs) <= 1e-14 * sqrt(n1 * n2), "adjoint dot-product test to round-off (C, float64)", msg);
            CHECK_OK(inloop_model_jacobian_f64(m, xd, nb, jac), "jacobian f64");
            /* J dx from the Jacobian equals the tangent-linear */
            for (int s = 0; s < nb; s++)
                for (int o = 0; o < no; o++) {
                    double v = 0;
                    for (int i = 0; i < ni; i++) v += jac[((size_t)s * ni + i) * no + o] * dx[s * ni + i];
                    worst = fmax(worst, fabs(v - tl[s * no + o]));
                }
            snprintf(msg, sizeof msg, "max |J dx - jvp| = %.3g", worst);
            check(worst < 1e-12, "Jacobian agrees with the tangent-linear model", msg);
            /* the Jacobian call above grew the work buffers: one warm-up call of each at this batch size */
            (void)inloop_model_jvp_f64(m, xd, dx, nb, yy, tl);
            (void)inloop_model_vjp_f64(m, xd, dy, nb, adj);
            count_start();
            for (int k = 0; k < 20; k++) { (void)inloop_model_jvp_f64(m, xd, dx, nb, yy, tl); (void)inloop_model_vjp_f64(m, xd, dy, nb, adj); }
            a = count_stop(&f);
            snprintf(msg, sizeof msg, "%ld allocations", a);
            check(a == 0, "jvp/vjp allocate nothing in steady state", msg);
            CHECK_STATUS(inloop_model_vjp_f64(m, xd, NULL, nb, adj), INLOOP_ERR_NULL_POINTER, "vjp with NULL dy");
            CHECK_STATUS(inloop_model_jacobian_f32(m, NULL, nb, NULL), INLOOP_ERR_NULL_POINTER, "jacobian with NULL x");
            free(xd); free(dx); free(adj); free(dy); free(tl); free(yy); free(jac);
        }
        {
            inloop_trainer *ft = NULL;
            CHECK_OK(inloop_trainer_create_from_model(m, "optimizer: {type: sgd, lr: 0.01, momentum: 0.9}\nprecision: float64\n", &ft),
                     "fine-tune trainer from a loaded model");
            CHECK_STATUS(inloop_trainer_create_from_model(m, config, &r), INLOOP_ERR_INVALID_ARGUMENT, "fine-tune config with a model section");
            (void)inloop_trainer_free(ft);
        }
        (void)inloop_model_free(m);
    }
    /* --- a model loaded from ONNX: derivatives and fine-tuning --- */
    if (argc > 3) {
        char path[1024];
        inloop_model *m = NULL;
        FILE *probe;
        snprintf(path, sizeof path, "%s/l96.onnx", argv[3]);
        if ((probe = fopen(path, "rb")) == NULL) {
            printf("SKIP onnx derivatives: %s not found\n", path);
        } else {
            double xo[16], dxo[16], dyo[16], tlo[16], adjo[16], lhs = 0, rhs = 0, n1 = 0, n2 = 0;
            inloop_trainer *ft = NULL;
            inloop_model *tuned = NULL, *saved = NULL;
            float xs[64], ys[64], y1[64], y2[64];
            fclose(probe);
            CHECK_OK(inloop_model_load(path, &m), "load l96.onnx");
            for (int i = 0; i < 16; i++) { xo[i] = 10 * uniform() - 3; dxo[i] = uniform() - 0.5; dyo[i] = uniform() - 0.5; }
            CHECK_OK(inloop_model_jvp_f64(m, xo, dxo, 16, NULL, tlo), "jvp of an ONNX model");
            CHECK_OK(inloop_model_vjp_f64(m, xo, dyo, 16, adjo), "vjp of an ONNX model");
            for (int i = 0; i < 16; i++) { lhs += tlo[i] * dyo[i]; rhs += dxo[i] * adjo[i]; n1 += tlo[i] * tlo[i]; n2 += dyo[i] * dyo[i]; }
            snprintf(msg, sizeof msg, "<J dx, dy> = %.17g, <dx, J^T dy> = %.17g", lhs, rhs);
            check(fabs(lhs - rhs) <= 1e-14 * sqrt(n1 * n2), "adjoint dot-product test of an ONNX model", msg);
            for (int i = 0; i < 64; i++) { xs[i] = (float)(16 * uniform() - 5); ys[i] = (float)sin(xs[i]); }
            CHECK_OK(inloop_trainer_create_from_model(m, "optimizer: {type: adam, lr: 0.001}", &ft), "fine-tune trainer from an ONNX model");
            for (int i = 0; i < 5; i++) (void)inloop_trainer_step_f32(ft, xs, ys, 64, &loss);
            CHECK_OK(inloop_trainer_save_model(ft, modelpath), "save the fine-tuned ONNX model (native format)");
            CHECK_OK(inloop_trainer_get_model(ft, &tuned), "get the fine-tuned model");
            CHECK_OK(inloop_model_load(modelpath, &saved), "load the saved fine-tuned model");
            (void)inloop_model_forward_f32(tuned, xs, 64, y1);
            (void)inloop_model_forward_f32(saved, xs, 64, y2);
            check(memcmp(y1, y2, sizeof y1) == 0, "saved fine-tuned model equals the trainer's model", "outputs differ");
            (void)inloop_model_free(tuned);
            (void)inloop_model_free(saved);
            (void)inloop_trainer_free(ft);
            (void)inloop_model_free(m);
        }
        /* a convolutional ONNX graph: derivatives and fine-tuning as a graph */
        snprintf(path, sizeof path, "%s/column_conv1d.onnx", argv[3]);
        if ((probe = fopen(path, "rb")) == NULL) {
            printf("SKIP onnx conv derivatives: %s not found\n", path);
        } else {
            enum { NB = 3, NI = 4 * 60, NO = 2 * 60 };
            double *xc = malloc(sizeof(double) * NB * NI), *dxc = malloc(sizeof(double) * NB * NI), *adj = malloc(sizeof(double) * NB * NI);
            double *dyc = malloc(sizeof(double) * NB * NO), *tl = malloc(sizeof(double) * NB * NO);
            float *xf = malloc(sizeof(float) * NB * NI), *yf = malloc(sizeof(float) * NB * NO), *y0 = malloc(sizeof(float) * NB * NO);
            double lhs = 0, rhs = 0, n1 = 0, n2 = 0;
            inloop_trainer *ct = NULL;
            inloop_model *tuned = NULL;
            fclose(probe);
            CHECK_OK(inloop_model_load(path, &m), "load column_conv1d.onnx");
            for (int i = 0; i < NB * NI; i++) { xc[i] = 2 * uniform() - 1; dxc[i] = uniform() - 0.5; xf[i] = (float)xc[i]; }
            for (int i = 0; i < NB * NO; i++) { dyc[i] = uniform() - 0.5; yf[i] = (float)(0.1 * sin(i)); }
            CHECK_OK(inloop_model_jvp_f64(m, xc, dxc, NB, NULL, tl), "jvp of a convolutional ONNX model");
            CHECK_OK(inloop_model_vjp_f64(m, xc, dyc, NB, adj), "vjp of a convolutional ONNX model");
            for (int i = 0; i < NB * NO; i++) { lhs += tl[i] * dyc[i]; n1 += tl[i] * tl[i]; n2 += dyc[i] * dyc[i]; }
            for (int i = 0; i < NB * NI; i++) rhs += dxc[i] * adj[i];
            snprintf(msg, sizeof msg, "<J dx, dy> = %.17g, <dx, J^T dy> = %.17g", lhs, rhs);
            check(fabs(lhs - rhs) <= 1e-14 * sqrt(n1 * n2), "adjoint dot-product test of a convolutional ONNX model", msg);
            CHECK_OK(inloop_trainer_create_from_model(m, "optimizer: {type: adam, lr: 0.001}", &ct), "fine-tune a convolutional ONNX graph");
            double first = 0, last = 0;
            for (int i = 0; i < 20; i++) { (void)inloop_trainer_step_f32(ct, xf, yf, NB, &loss); if (i == 0) first = loss; last = loss; }
            snprintf(msg, sizeof msg, "loss %.4g -> %.4g", first, last);
            check(last < first, "fine-tuning the graph lowers its loss", msg);
            CHECK_OK(inloop_trainer_get_model(ct, &tuned), "get the fine-tuned graph as a model");
            CHECK_OK(inloop_model_forward_f32(tuned, xf, NB, y0), "forward of the fine-tuned graph");
            CHECK_STATUS(inloop_trainer_save_model(ct, modelpath), INLOOP_ERR_UNSUPPORTED, "save_model of a fine-tuned graph is refused clearly");
            CHECK_STATUS(inloop_trainer_save_checkpoint(ct, ckpt), INLOOP_ERR_UNSUPPORTED, "checkpoint of a fine-tuned graph is refused clearly");
            (void)inloop_model_free(tuned);
            (void)inloop_trainer_free(ct);
            (void)inloop_model_free(m);
            free(xc); free(dxc); free(adj); free(dyc); free(tl); free(xf); free(yf); free(y0);
        }
    }
    (void)inloop_trainer_free(t);
    (void)inloop_trainer_free(r);
    remove(ckpt);
    remove(modelpath);
    free(x); free(y); free(xv); free(yv); free(x64); free(y64);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
