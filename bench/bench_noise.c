/* bench_noise: the cost per call of a forward with noise inputs next to the plain forward of the same
 * model, through the C API, in one run (issue 15 item 4).
 *
 *   bench_noise MODEL [BATCH...]      default batches 1 16 256 4096
 *
 * For each batch: the plain model, then copies with 1, 2 and all-but-one input features declared noise
 * (inloop_model_set_noise_input; the key moved on with inloop_model_set_noise_step before every call, as
 * a host model does each time step); each timed as the best of 7 rounds of enough calls for ~50 ms,
 * rounds interleaved across the models so that machine noise hits them alike. Prints ns per call and
 * the ratio to the plain model. Build: make bench (or see the Makefile's bench target).
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inloop.h"

#include "bench_common.h"

struct ctx { inloop_model **m; const float *x; float *y; int64_t n; long step; };

/* column 0: the plain forward; the others: set_noise_step (a new step each call), then forward */
static void run(int k, long count, void *p) {
    struct ctx *c = p;
    for (long i = 0; i < count; i++) {
        if (k > 0) inloop_model_set_noise_step(c->m[k], ++c->step, 1000, 0, 0);
        inloop_model_forward_f32(c->m[k], c->x, c->n, c->y);
    }
}


#define NM 4

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_noise MODEL [BATCH...]\n"); return 2; }
    static const int64_t defaults[] = {1, 16, 256, 4096};
    int64_t batches[16];
    int nb = bench_batches(argc, argv, 2, defaults, 4, batches);
    inloop_set_num_threads(1);
    inloop_model *m[NM];
    if (bench_load(argv[1], m, NM)) return 1;
    int64_t n_in = 0, n_out = 0;
    inloop_model_input_size(m[0], &n_in);
    inloop_model_output_size(m[0], &n_out);
    if (n_in < 2) { fprintf(stderr, "the model needs at least 2 input features\n"); return 1; }
    int64_t counts[NM] = {0, 1, 2, n_in - 1};
    char names[NM][40];
    snprintf(names[0], sizeof names[0], "plain");
    for (int k = 1; k < NM; k++) {
        snprintf(names[k], sizeof names[k], "%lld noise feature%s", (long long)counts[k], counts[k] == 1 ? "" : "s");
        if (inloop_model_set_noise_input(m[k], 0, n_in - counts[k], counts[k], 12345) != INLOOP_OK) {
            fprintf(stderr, "set_noise_input: %s\n", inloop_last_error());
            return 1;
        }
    }
    printf("model %s (%lld -> %lld), 1 thread, ns per set_noise_step + inloop_model_forward_f32 (plain: forward only; best of 7 rounds)\n",
           argv[1], (long long)n_in, (long long)n_out);
    printf("%8s", "batch");
    for (int k = 0; k < NM; k++) printf(" %22s", names[k]);
    printf("\n");
    struct ctx c = {m, NULL, NULL, 0, 0};
    for (int b = 0; b < nb; b++) {
        int64_t n = batches[b];
        float *x = malloc((size_t)(n * n_in) * sizeof *x), *y = malloc((size_t)(n * n_out) * sizeof *y);
        for (int64_t i = 0; i < n * n_in; i++) x[i] = (float)(0.5 + 0.4 * sin(0.37 * (double)i));
        for (int k = 0; k < NM; k++) inloop_model_forward_f32(m[k], x, n, y);   /* compile, warm up */
        c.x = x; c.y = y; c.n = n;
        long calls[NM];
        calls[0] = calls_for_50ms(run, 0, &c);
        for (int k = 1; k < NM; k++) calls[k] = calls[0];
        double best[NM];
        bench_rounds(NM, calls, run, &c, best);
        bench_row((long long)n, best, NM, 22);
        free(x);
        free(y);
    }
    for (int k = 0; k < NM; k++) inloop_model_free(m[k]);
    return 0;
}
