/* Shared by the C benchmarks that print a "cost per call next to a plain forward" table
 * (bench_constraints, bench_ensemble, bench_explain, bench_noise): the clock, the interleaved rounds
 * (best of 7, the columns taking turns so that machine noise hits them alike) and a table row (ns per
 * call; from the second column on, the ratio to the first), the batch list from the command line and
 * loading copies of a model. Include after defining _POSIX_C_SOURCE 199309L (clock_gettime) and
 * including inloop.h. */
#ifndef INLOOP_BENCH_COMMON_H
#define INLOOP_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* How many calls of `run` column k fill ~50 ms. */
static long calls_for_50ms(void (*run)(int k, long count, void *ctx), int k, void *ctx) {
    double t0 = now();
    long calls = 0;
    while (now() - t0 < 0.05) { run(k, 1, ctx); calls++; }
    return calls;
}

/* best[k] = the fastest of 7 rounds of calls[k] calls of column k, in seconds per call; run(k, count,
 * ctx) makes `count` calls of column k. */
static void bench_rounds(int nc, const long *calls, void (*run)(int k, long count, void *ctx), void *ctx, double *best) {
    for (int k = 0; k < nc; k++) best[k] = 1e30;
    for (int r = 0; r < 7; r++) {
        for (int k = 0; k < nc; k++) {
            double t0 = now();
            run(k, calls[k], ctx);
            double per = (now() - t0) / (double)calls[k];
            if (per < best[k]) best[k] = per;
        }
    }
}

/* "batch" then the columns' ns per call, the first plain, the others with their ratio to the first. */
static void bench_row(long long batch, const double *best, int nc, int width) {
    printf("%8lld", batch);
    for (int k = 0; k < nc; k++) {
        char cell[64];
        if (k == 0) snprintf(cell, sizeof cell, "%.0f", best[k] * 1e9);
        else snprintf(cell, sizeof cell, "%.0f (%.2fx)", best[k] * 1e9, best[k] / best[0]);
        printf(" %*s", width, cell);
    }
    printf("\n");
}

/* The batch sizes: argv[first..argc-1] when given (at most 16), else the nd defaults. Returns how many. */
static int bench_batches(int argc, char **argv, int first, const int64_t *defaults, int nd, int64_t out[16]) {
    int nb = 0;
    if (argc > first) {
        for (int i = first; i < argc && nb < 16; i++) out[nb++] = atoll(argv[i]);
    } else {
        for (; nb < nd && nb < 16; nb++) out[nb] = defaults[nb];
    }
    return nb;
}

/* n handles on the model at path (each its own weights); 0, or 1 after printing the error. */
static int bench_load(const char *path, inloop_model **m, int n) {
    for (int k = 0; k < n; k++) {
        if (inloop_model_load(path, &m[k]) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
    }
    return 0;
}

#endif
