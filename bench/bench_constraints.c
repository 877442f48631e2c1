/* bench_constraints: the cost per call of a constrained forward next to the plain forward of the same
 * model, through the C API, in one run (issue 15 item 1).
 *
 *   bench_constraints MODEL [BATCH...]      default batches 1 16 256
 *
 * For each batch: the plain model, then one copy each with a conservation projection (target = input
 * feature 0, float64 weights), softplus positivity, the mass fixer, and all three; each timed as the
 * best of 7 rounds of enough calls for ~50 ms, rounds interleaved across the five models so that
 * machine noise hits them alike. Prints ns per call and the ratio to the plain model.
 * Build: make bench (or see the Makefile's bench target).
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inloop.h"

#include "bench_common.h"


#define NM 5
static const char *names[NM] = {"plain", "+ conservation", "+ softplus bound", "+ mass fixer", "+ all three"};

struct ctx { inloop_model **m; const float *x; float *y; int64_t n; };

static void run(int k, long count, void *p) {
    struct ctx *c = p;
    for (long i = 0; i < count; i++) inloop_model_forward_f32(c->m[k], c->x, c->n, c->y);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_constraints MODEL [BATCH...]\n"); return 2; }
    static const int64_t defaults[] = {1, 16, 256};
    int64_t batches[16];
    int nb = bench_batches(argc, argv, 2, defaults, 3, batches);
    inloop_set_num_threads(1);
    inloop_model *m[NM];
    if (bench_load(argv[1], m, NM)) return 1;
    int64_t n_in = 0, n_out = 0;
    inloop_model_input_size(m[0], &n_in);
    inloop_model_output_size(m[0], &n_out);
    double *w = malloc((size_t)n_out * sizeof *w);
    for (int64_t j = 0; j < n_out; j++) w[j] = 50 + 5.0 * (double)(j % 13);
    int ok = inloop_model_add_constraint_conservation_f64(m[1], 0, w, n_out, 0) == INLOOP_OK
          && inloop_model_add_constraint_bounds(m[2], 0, 0.0, INFINITY, 1) == INLOOP_OK
          && inloop_model_add_constraint_mass_fixer_f64(m[3], 0, w, n_out) == INLOOP_OK
          && inloop_model_add_constraint_conservation_f64(m[4], 0, w, n_out, 0) == INLOOP_OK
          && inloop_model_add_constraint_bounds(m[4], 0, 0.0, INFINITY, 1) == INLOOP_OK
          && inloop_model_add_constraint_mass_fixer_f64(m[4], 0, w, n_out) == INLOOP_OK;
    if (!ok) { fprintf(stderr, "attach: %s\n", inloop_last_error()); return 1; }
    printf("model %s (%lld -> %lld), 1 thread, ns per inloop_model_forward_f32 call (best of 7 rounds)\n", argv[1],
           (long long)n_in, (long long)n_out);
    printf("%8s", "batch");
    for (int k = 0; k < NM; k++) printf(" %22s", names[k]);
    printf("\n");
    for (int b = 0; b < nb; b++) {
        int64_t n = batches[b];
        float *x = malloc((size_t)(n * n_in) * sizeof *x), *y = malloc((size_t)(n * n_out) * sizeof *y);
        for (int64_t i = 0; i < n * n_in; i++) x[i] = (float)(0.5 + 0.4 * sin(0.37 * (double)i));
        for (int k = 0; k < NM; k++) inloop_model_forward_f32(m[k], x, n, y);   /* compile, warm up */
        struct ctx c = {m, x, y, n};
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
    free(w);
    return 0;
}
