/* ./example model.safetensors: runs the model on the inputs stored next to it in model.io.bin */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "inloop.h"

static int fail(const char *what, const char *why) { fprintf(stderr, "%s: %s\n", what, why); return 1; }

int main(int argc, char **argv) {
    inloop_model *model = NULL;
    int64_t n_in, n_out, n[3], i;                  /* n = n_in, n_out, ncol stored in model.io.bin */
    char io[4096]; FILE *f;
    if (argc != 2 || strlen(argv[1]) < 13 || strlen(argv[1]) > 4000) return fail("usage", "example model.safetensors");
    sprintf(io, "%.*s.io.bin", (int)strlen(argv[1]) - 12, argv[1]);
    if (inloop_model_load(argv[1], &model) || inloop_model_input_size(model, &n_in) ||  /* INLOOP_OK is 0 */
        inloop_model_output_size(model, &n_out)) return fail("InLoop", inloop_last_error());
    if (!(f = fopen(io, "rb")) || fread(n, 8, 3, f) != 3 || n[0] != n_in || n[1] != n_out || n[2] < 1)
        return fail(io, "missing, or not the inputs of this model");
    double *x = malloc(sizeof(double) * n_in * n[2]), *y = malloc(sizeof(double) * n_out * n[2]);  /* x(n_in, ncol) */
    if (!x || !y || fread(x, sizeof(double), n_in * n[2], f) != (size_t)(n_in * n[2])) return fail(io, "cannot read x");
    if (inloop_model_forward_f64(model, x, n[2], y)) return fail("InLoop", inloop_last_error());  /* y(n_out, ncol) */
    for (i = 0; i < n_out * n[2]; i++) printf("%16.8e%s", y[i], (i + 1) % n_out ? "" : "\n");    /* a line per column */
    fclose(f); free(x); free(y);
    return inloop_model_free(model) != INLOOP_OK;
}
