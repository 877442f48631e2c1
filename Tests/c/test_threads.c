/* The default thread count (issue 11, part 6), run as a plain process and under `mpirun -np 2` without
 * any communicator (and without OMP_NUM_THREADS / OPENBLAS_NUM_THREADS):
 *  - the default is the cores this process may use (its affinity mask) divided by the ranks on the
 *    node (the launcher's OMPI_COMM_WORLD_LOCAL_SIZE, or MPICH's MPI_LOCALNRANKS; 1 without a launcher),
 *    at least 1;
 *  - inloop_get_num_threads() says it before anything else is called, and OpenBLAS (what computes)
 *    already uses it then, after creating a trainer, after a training step and after loading a model:
 *    it never changes under the caller's feet;
 *  - inloop_set_num_threads(n) is then kept, also by later loads.
 * Usage: test_threads FIXTURES_DIR   (prints "N passed, M failed"; under mpirun only local rank 0
 * prints the line, every rank prints its failures and exits non-zero on one)
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inloop.h"

int openblas_get_num_threads(void);   /* what actually computes */

static int passed, failed;

/* got is the default want, or OpenBLAS's compile-time maximum (>= 32) below it on a large node */
static int is_default(int got, int want) { return got == want || (got >= 32 && got < want); }

static void check(int ok, const char *name, int got, int want) {
    if (ok) passed++;
    else {
        failed++;
        printf("FAIL %s: got %d threads, want %d\n", name, got, want);
    }
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    /* the launcher's ranks on this node: Open MPI's or MPICH's (Hydra) variable */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!local) local = getenv("MPI_LOCALNRANKS");
    if (!rank) rank = getenv("PMI_RANK");
    int ranks = local ? atoi(local) : 1;
    if (ranks < 1) ranks = 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long node = sysconf(_SC_NPROCESSORS_ONLN);
    int want = (int)(node / ranks);
    if (mine < want) want = mine;
    if (want < 1) want = 1;
    if (getenv("OMP_NUM_THREADS") || getenv("OPENBLAS_NUM_THREADS")) {
        printf("FAIL run without OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (they make the caller's choice)\n");
        failed++;
    }

    int first = inloop_get_num_threads();
    check(is_default(first, want), "inloop_get_num_threads before any other call is the default", first, want);
    check(openblas_get_num_threads() == first, "OpenBLAS computes with the default before any other call", openblas_get_num_threads(), first);

    inloop_trainer *t = NULL;
    const char *config = "model: {inputs: 2, layers: [{type: dense, out: 64, activation: tanh}, {type: dense, out: 1}]}\n";
    int ok = inloop_trainer_create(config, &t) == INLOOP_OK;
    check(ok && openblas_get_num_threads() == first, "a serial trainer computes with the default from its creation",
          openblas_get_num_threads(), first);
    float x[2 * 64], y[64];
    for (int i = 0; i < 128; i++) x[i] = 0.01f * (float)i;
    for (int i = 0; i < 64; i++) y[i] = 0.5f;
    double loss = 0;
    ok = inloop_trainer_step_f32(t, x, y, 64, &loss) == INLOOP_OK;
    check(ok && openblas_get_num_threads() == first && inloop_get_num_threads() == first,
          "after a training step: unchanged", openblas_get_num_threads(), first);

    char path[600];
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    inloop_model *m = NULL;
    ok = inloop_model_load(path, &m) == INLOOP_OK;
    check(ok && inloop_get_num_threads() == first && openblas_get_num_threads() == first,
          "after loading a model: unchanged", inloop_get_num_threads(), first);

    ok = inloop_set_num_threads(1) == INLOOP_OK;
    inloop_model *m2 = NULL;
    ok = ok && inloop_model_load(path, &m2) == INLOOP_OK;
    inloop_trainer *t2 = NULL;
    ok = ok && inloop_trainer_create(config, &t2) == INLOOP_OK;
    check(ok && inloop_get_num_threads() == 1 && openblas_get_num_threads() == 1,
          "the caller's choice (1) is kept by later loads and trainers", inloop_get_num_threads(), 1);
    check(inloop_set_num_threads(0) == INLOOP_ERR_INVALID_ARGUMENT && inloop_get_num_threads() == 1,
          "set_num_threads(0) is refused and changes nothing", inloop_get_num_threads(), 1);

    inloop_model_free(m);
    inloop_model_free(m2);
    inloop_trainer_free(t);
    inloop_trainer_free(t2);
    if (!rank || strcmp(rank, "0") == 0) printf("%d passed, %d failed (default %d threads: %d usable cores, %ld on the node, %d ranks on it)\n",
                                                passed, failed, want, mine, node, ranks);
    return failed ? 1 : 0;
}
