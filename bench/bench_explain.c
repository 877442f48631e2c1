/* bench_explain: the cost per call of the interpretability calls next to a plain forward of the same
 * model, through the C API, in one run (issue 15 item 5).
 *
 *   bench_explain MODEL TENSOR [BATCH...]      default batches 1 16; e.g. cnn2d.onnx l2_relu
 *
 * For each batch: inloop_model_forward_f32 (the inference plan), inloop_model_saliency_f32 (forward and
 * reverse on the differentiable copy), inloop_model_gradcam_f32 on TENSOR upsampled to the input, and
 * inloop_model_lrp_f32 (epsilon 1e-6); each timed as the best of 7 rounds of enough calls for ~50 ms,
 * rounds interleaved across the four so that machine noise hits them alike. Prints ns per call and
 * the ratio to the forward. 1 thread. Build: make bench (or see the Makefile's bench target).
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inloop.h"

#include "bench_common.h"


#define NK 4
static const char *names[NK] = {"forward", "saliency", "gradcam (upsampled)", "lrp"};

static inloop_model *model;
static const char *tensor;
static float *x, *y, *s, *map;

static inloop_status call(int k, int64_t n) {
    switch (k) {
    case 0: return inloop_model_forward_f32(model, x, n, y);
    case 1: return inloop_model_saliency_f32(model, x, n, 0, s);
    case 2: return inloop_model_gradcam_f32(model, tensor, x, n, 0, 1, map);
    default: return inloop_model_lrp_f32(model, x, n, 0, 1e-6, s);
    }
}

static void run(int k, long count, void *n) {
    for (long i = 0; i < count; i++) call(k, *(int64_t *)n);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: bench_explain MODEL TENSOR [BATCH...]\n"); return 2; }
    static const int64_t defaults[] = {1, 16};
    int64_t batches[16];
    int nb = bench_batches(argc, argv, 3, defaults, 2, batches);
    inloop_set_num_threads(1);
    tensor = argv[2];
    if (bench_load(argv[1], &model, 1)) return 1;
    int64_t n_in = 0, n_out = 0, n_map = 0;
    inloop_model_input_size(model, &n_in);
    inloop_model_output_size(model, &n_out);
    if (inloop_model_gradcam_size(model, tensor, 1, &n_map) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
    printf("model %s (%lld -> %lld), Grad-CAM on '%s', 1 thread, ns per call (best of 7 rounds)\n", argv[1],
           (long long)n_in, (long long)n_out, tensor);
    printf("%8s", "batch");
    for (int k = 0; k < NK; k++) printf(" %22s", names[k]);
    printf("\n");
    for (int b = 0; b < nb; b++) {
        int64_t n = batches[b];
        x = malloc((size_t)(n * n_in) * sizeof *x);
        y = malloc((size_t)(n * n_out) * sizeof *y);
        s = malloc((size_t)(n * n_in) * sizeof *s);
        map = malloc((size_t)(n * n_map) * sizeof *map);
        for (int64_t i = 0; i < n * n_in; i++) x[i] = (float)(0.5 + 0.4 * sin(0.37 * (double)i));
        long calls[NK];
        double best[NK];
        for (int k = 0; k < NK; k++) {
            if (call(k, n) != INLOOP_OK) { fprintf(stderr, "%s: %s\n", names[k], inloop_last_error()); return 1; }
            calls[k] = calls_for_50ms(run, k, &n);
        }
        bench_rounds(NK, calls, run, &n, best);
        bench_row((long long)n, best, NK, 22);
        free(x); free(y); free(s); free(map);
    }
    inloop_model_free(model);
    return 0;
}
