/* make footprint: time from inloop_model_load to the end of the first forward (batch 1) of a model, in
 * a fresh process: ./footprint_load model.onnx -> "load_ms first_forward_ms total_ms VmHWM_kB" */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inloop.h"

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }

static long peak_kb(void) {
    char line[256]; long kb = -1; FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    inloop_model *m = NULL;
    int64_t n_in = 0, n_out = 0, i;
    if (argc != 2) { fprintf(stderr, "usage: footprint_load model\n"); return 2; }
    double t0 = now_ms();
    if (inloop_model_load(argv[1], &m) || inloop_model_input_size(m, &n_in) || inloop_model_output_size(m, &n_out)) {
        fprintf(stderr, "%s: %s\n", argv[1], inloop_last_error()); return 1;
    }
    double t1 = now_ms();
    float *x = malloc(sizeof(float) * (size_t)n_in), *y = malloc(sizeof(float) * (size_t)n_out);
    if (!x || !y) return 1;
    for (i = 0; i < n_in; i++) x[i] = 0.01f * (float)(i % 100);
    if (inloop_model_forward_f32(m, x, 1, y)) { fprintf(stderr, "%s: %s\n", argv[1], inloop_last_error()); return 1; }
    double t2 = now_ms();
    printf("%.2f %.2f %.2f %ld\n", t1 - t0, t2 - t1, t2 - t0, peak_kb());
    free(x); free(y);
    return inloop_model_free(m) != INLOOP_OK;
}
