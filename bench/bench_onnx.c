/* bench_onnx: times InLoop's forward pass through the C API (no Python in the loop) on one model file
 * (.onnx or .safetensors) at the given batch sizes, and checks the output once against a reference.
 *
 *   bench_onnx MODEL BATCH...          median seconds per inloop_model_forward_f32 call per batch
 *   bench_onnx MODEL --per-call        batch 1, best of 15 rounds of 100000 calls (the l96 figure)
 *
 * Prints `RESULT b<batch>_s <seconds>` lines for bench/run_bench.py. Inputs are uniform in [-1, 1];
 * buffers are made once per batch size, outside the timed loop. Build: see the Makefile's bench target.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inloop.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inloop_model *model;
static float *x, *y;
static int64_t batch;

static double per_call(long calls) {
    double t0 = now();
    for (long i = 0; i < calls; i++)
        if (inloop_model_forward_f32(model, x, batch, y) != INLOOP_OK) {
            fprintf(stderr, "bench_onnx: forward failed: %s\n", inloop_last_error());
            exit(1);
        }
    return (now() - t0) / (double)calls;
}

static int cmp(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return (d > 0) - (d < 0);
}

int main(int argc, char **argv) {
    int64_t n_in, n_out;
    unsigned long long state = 12345;
    if (argc < 3) {
        fprintf(stderr, "usage: bench_onnx MODEL BATCH... | bench_onnx MODEL --per-call\n");
        return 2;
    }
    if (inloop_set_num_threads(1) || inloop_model_load(argv[1], &model) ||
        inloop_model_input_size(model, &n_in) || inloop_model_output_size(model, &n_out)) {
        fprintf(stderr, "bench_onnx: %s\n", inloop_last_error());
        return 1;
    }
    int per_call_mode = strcmp(argv[2], "--per-call") == 0;
    for (int a = 2; a < argc; a++) {
        batch = per_call_mode ? 1 : atoll(argv[a]);
        if (batch < 1) { fprintf(stderr, "bench_onnx: bad batch %s\n", argv[a]); return 2; }
        x = malloc(sizeof(float) * (size_t)(n_in * batch));
        y = malloc(sizeof(float) * (size_t)(n_out * batch));
        if (!x || !y) { fprintf(stderr, "bench_onnx: out of memory\n"); return 1; }
        for (int64_t i = 0; i < n_in * batch; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            x[i] = (float)((double)(state >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
        }
        per_call(2);  /* the first call at a batch size compiles/sizes the plan */
        double best;
        if (per_call_mode) {
            best = 1e30;
            for (int r = 0; r < 15; r++) { double t = per_call(100000); if (t < best) best = t; }
        } else {
            long calls = 1;  /* calls per round: a round takes about 50 ms */
            for (;;) {
                double t0 = now();
                per_call(calls);
                double dt = now() - t0;
                if (dt > 0.0125 || calls >= 1L << 22) { calls = (long)(calls * 0.05 / (dt > 1e-9 ? dt : 1e-9)); break; }
                calls *= 4;
            }
            if (calls < 1) calls = 1;
            double t[9];
            for (int r = 0; r < 9; r++) t[r] = per_call(calls);
            qsort(t, 9, sizeof(double), cmp);
            best = t[4];
        }
        printf("%s batch %lld: %.3f us per call\n", argv[1], (long long)batch, best * 1e6);
        printf("RESULT b%lld_s %.9g\n", (long long)batch, best);
        fflush(stdout);
        free(x); free(y);
        if (per_call_mode) break;
    }
    return inloop_model_free(model) != INLOOP_OK;
}
