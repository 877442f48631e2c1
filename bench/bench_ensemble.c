/* bench_ensemble: the cost per call of an ensemble's forward_ensemble (mean and spread of N members in
 * one graph) next to N separate forwards of one member and one plain forward, through the C API, in
 * one run (issue 15 item 2); and MC-dropout (S samples) next to the plain forward of a model with
 * Dropout when one is given.
 *
 *   bench_ensemble MODEL [DROPOUT_MODEL] [BATCH...]      default batches 1 256
 *
 * The ensembles hold N = 1, 4, 8 copies of MODEL (equal members: the same graph and arithmetic as N
 * trained members, which the engine cannot tell apart). "N forwards" is one call of
 * inloop_model_forward_f32 on each of N handles loaded separately (each with its own copy of the
 * weights, as N trained members have: 8 column_mlp members are 16 MB, beyond the caches, which one
 * handle called 8 times would hide); no mean or spread: the bare lower bound of running the members
 * apart. For MC-dropout, whose samples share one set of weights, it is N calls on one handle. Each cell is the best of 7 rounds of enough calls for ~50 ms, rounds interleaved across the
 * columns so that machine noise hits them alike. Prints ns per call and the ratio to the plain forward.
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


#define NC 7
static const int members[3] = {1, 4, 8};

/* column k: 0 plain; 1..3 ensemble of members[k-1]; 4..6 members[k-4] separate forwards */
struct ctx { inloop_model *plain, **ens, **sep; const float *x; int64_t n; float *y, *s; };

/* count calls of column k */
static void run(int k, long count, void *p) {
    struct ctx *c = p;
    for (long i = 0; i < count; i++) {
        if (k == 0) inloop_model_forward_f32(c->plain, c->x, c->n, c->y);
        else if (k <= 3) inloop_model_forward_ensemble_f32(c->ens[k - 1], c->x, c->n, c->y, c->s);
        else for (int r = 0; r < members[k - 4]; r++) inloop_model_forward_f32(c->sep[r], c->x, c->n, c->y);
    }
}

static void table(const char *title, const char *const *names, int nc, inloop_model *plain, inloop_model **ens,
                  inloop_model **sep, const int64_t *batches, int nb, int64_t n_in, int64_t n_out, int mc) {
    printf("%s\n%8s", title, "batch");
    for (int k = 0; k < nc; k++) printf(" %20s", names[k]);
    printf("\n");
    for (int b = 0; b < nb; b++) {
        int64_t n = batches[b];
        float *x = malloc((size_t)(n * n_in) * sizeof *x), *y = malloc((size_t)(n * n_out) * sizeof *y);
        float *s = malloc((size_t)(n * n_out) * sizeof *s);
        for (int64_t i = 0; i < n * n_in; i++) x[i] = (float)(0.5 + 0.4 * sin(0.37 * (double)i));
        struct ctx c = {plain, ens, sep, x, n, y, s};
        for (int k = 0; k < nc; k++) {   /* compile, warm up, check */
            run(k, 1, &c);
            if (k >= 1 && k <= 3 && inloop_model_forward_ensemble_f32(ens[k - 1], x, n, y, s) != INLOOP_OK) {
                fprintf(stderr, "%s: %s\n", names[k], inloop_last_error());
                exit(1);
            }
        }
        /* ~50 ms of plain forwards per column: a column of N members gets 1/N of the calls */
        long calls[NC];
        calls[0] = calls_for_50ms(run, 0, &c);
        for (int k = 1; k < nc; k++) calls[k] = calls[0] / (k <= 3 ? members[k - 1] : members[k - 4]) + 1;
        double best[NC];
        bench_rounds(nc, calls, run, &c, best);
        bench_row((long long)n, best, nc, 20);
        free(x); free(y); free(s);
    }
    (void)mc;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_ensemble MODEL [DROPOUT_MODEL] [BATCH...]\n"); return 2; }
    const char *dropout = NULL;
    int first = 2;
    if (argc > 2 && (strstr(argv[2], ".onnx") || strstr(argv[2], ".safetensors"))) { dropout = argv[2]; first = 3; }
    static const int64_t defaults[] = {1, 256};
    int64_t batches[16];
    int nb = bench_batches(argc, argv, first, defaults, 2, batches);
    inloop_set_num_threads(1);
    inloop_model *plain = NULL, *ens[3];
    if (bench_load(argv[1], &plain, 1)) return 1;
    const char *paths[8];
    for (int k = 0; k < 8; k++) paths[k] = argv[1];
    for (int k = 0; k < 3; k++) {
        if (inloop_model_load_ensemble(paths, members[k], &ens[k]) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
    }
    int64_t n_in = 0, n_out = 0;
    inloop_model_input_size(plain, &n_in);
    inloop_model_output_size(plain, &n_out);
    static const char *const names[NC] = {"plain forward", "ensemble N=1", "ensemble N=4", "ensemble N=8",
                                          "1 forward", "4 forwards", "8 forwards"};
    char title[1200];
    snprintf(title, sizeof title, "model %s (%lld -> %lld), 1 thread, ns per call (best of 7 rounds); ensemble = "
             "inloop_model_forward_ensemble_f32 (mean and spread)", argv[1], (long long)n_in, (long long)n_out);
    inloop_model *sep[8];
    if (bench_load(argv[1], sep, 8)) return 1;
    table(title, names, NC, plain, ens, sep, batches, nb, n_in, n_out, 0);
    for (int k = 0; k < 3; k++) inloop_model_free(ens[k]);
    for (int k = 0; k < 8; k++) inloop_model_free(sep[k]);
    inloop_model_free(plain);
    if (dropout) {
        inloop_model *d = NULL, *mc[3];
        if (inloop_model_load(dropout, &d) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
        for (int k = 0; k < 3; k++) {
            if (inloop_model_load(dropout, &mc[k]) != INLOOP_OK || inloop_model_set_mc_dropout(mc[k], members[k], 1) != INLOOP_OK) {
                fprintf(stderr, "%s\n", inloop_last_error());
                return 1;
            }
        }
        inloop_model_input_size(d, &n_in);
        inloop_model_output_size(d, &n_out);
        static const char *const mnames[NC] = {"plain forward", "MC S=1", "MC S=4", "MC S=8",
                                               "1 forward", "4 forwards", "8 forwards"};
        snprintf(title, sizeof title, "\nmodel %s (%lld -> %lld), MC-dropout with S samples per forward_ensemble call",
                 dropout, (long long)n_in, (long long)n_out);
        inloop_model *same[8];
        for (int k = 0; k < 8; k++) same[k] = d;
        table(title, mnames, NC, d, mc, same, batches, nb, n_in, n_out, 1);
        for (int k = 0; k < 3; k++) inloop_model_free(mc[k]);
        inloop_model_free(d);
    }
    return 0;
}
