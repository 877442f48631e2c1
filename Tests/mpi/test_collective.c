/* Collective calls fail together (issue 11, part 4), from C, on any number of ranks.
 *
 * For every collective entry point (inloop_model_load_mpi, inloop_trainer_set_communicator,
 * inloop_trainer_load_checkpoint_mpi, and on a data-parallel trainer inloop_trainer_step_f32/_f64,
 * inloop_trainer_step_sized_f32/_f64, inloop_trainer_save_checkpoint, inloop_trainer_save_model) an
 * argument error on one rank — a NULL pointer, a wrong size, NaN, a NULL or wrong-kind handle — must
 * become a status on every rank: the failing rank's own status and message there, the same status
 * with "rank r: <message>" on the others; nobody may wait for ever (run it under `timeout`). After
 * each refused step the weights and the step count are unchanged and the same on every rank, and a
 * good step still works (same loss and weights on every rank; test_mpi_training.f90 compares the
 * data-parallel step itself with serial runs).
 *
 * Usage: mpirun -np N test_collective TMPDIR   (prints "N passed, M failed" on rank 0)
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inloop.h"

static int rank, size, passed, failed;

static const char *config =
    "model:\n"
    "  inputs: 2\n"
    "  layers:\n"
    "    - {type: dense, out: 8, activation: tanh}\n"
    "    - {type: dense, out: 1}\n"
    "optimizer: {type: adam, lr: 0.01}\n"
    "seed: 3\n";

/* A check that every rank makes: it passes only if it holds on every rank. */
/* `detail` is often inloop_last_error(): the macro evaluates the checked call first, since the order in
   which a function's arguments are evaluated is unspecified (a stale message was printed otherwise). */
#define check(ok, name, detail) do { int check_ok_ = (ok); check_((check_ok_), (name), (detail)); } while (0)
static void check_(int ok, const char *name, const char *detail) {
    int all = 0;
    if (!ok) fprintf(stderr, "rank %d: FAIL %s%s%s\n", rank, name, detail ? ": " : "", detail ? detail : "");
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (all) passed++; else failed++;
    if (rank == 0 && !all) printf("FAIL: %s\n", name);
}

/* The statuses and messages of a call that failed on rank `bad` with `own`: the same status on
 * every rank; bad's own message there; "rank bad: <bad's message>" elsewhere. */
static void failed_together(const char *name, inloop_status st, int bad, inloop_status own) {
    char msg[600], detail[800];
    snprintf(msg, sizeof msg, "%s", inloop_last_error());
    /* bad's message to every rank, to compare */
    char theirs[600];
    memcpy(theirs, msg, sizeof theirs);
    MPI_Bcast(theirs, sizeof theirs, MPI_CHAR, bad, MPI_COMM_WORLD);
    int ok;
    if (rank == bad) {
        ok = st == own && strncmp(msg, "rank ", 5) != 0 && msg[0] != '\0';
    } else {
        char want[700];
        snprintf(want, sizeof want, "rank %d: %s", bad, theirs);
        ok = st == own && strncmp(msg, want, strlen(want) < sizeof msg - 1 ? strlen(want) : sizeof msg - 1) == 0;
    }
    snprintf(detail, sizeof detail, "status %d (want %d), message '%s'", (int)st, (int)own, msg);
    check(ok, name, detail);
}

static int64_t steps_of(inloop_trainer *t) {
    int64_t n = -1;
    if (inloop_trainer_step_count(t, &n) != INLOOP_OK) return -1;
    return n;
}

/* The trainer's weights: the outputs of its model on fixed probe inputs (same on every rank?). */
static void weights_same_everywhere(inloop_trainer *t, const char *name, double *probe_out) {
    inloop_model *m = NULL;
    float x[8] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f}, y[4] = {0};
    int ok = inloop_trainer_copy_model(t, &m) == INLOOP_OK && inloop_model_forward_f32(m, x, 4, y) == INLOOP_OK;
    inloop_model_free(m);
    float lo[4], hi[4];
    MPI_Allreduce(y, lo, 4, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(y, hi, 4, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    for (int i = 0; i < 4; i++) ok = ok && lo[i] == hi[i] && lo[i] == y[i];
    if (probe_out) for (int i = 0; i < 4; i++) ok = ok && (double)y[i] == probe_out[i];
    check(ok, name, "weights differ between ranks, or changed");
}

static void probe(inloop_trainer *t, double *out) {
    inloop_model *m = NULL;
    float x[8] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f}, y[4] = {0};
    if (inloop_trainer_copy_model(t, &m) == INLOOP_OK) (void)inloop_model_forward_f32(m, x, 4, y);
    inloop_model_free(m);
    for (int i = 0; i < 4; i++) out[i] = y[i];
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *tmp = argc > 1 ? argv[1] : "/tmp";
    int32_t world = (int32_t)MPI_Comm_c2f(MPI_COMM_WORLD);
    char name[200], ckpt[400], saved[400], missing[400];
    snprintf(ckpt, sizeof ckpt, "%s/collective_%d.ckpt", tmp, size);
    snprintf(saved, sizeof saved, "%s/collective_%d.safetensors", tmp, size);
    snprintf(missing, sizeof missing, "%s/no_such_dir_%d/none.safetensors", tmp, size);

    /* Data: 4 columns per rank, x(2, 4), y(1, 4), different on every rank. */
    enum { B = 4 };
    float x[2 * B], y[B], xnan[2 * B];
    double xd[2 * B], yd[B];
    for (int i = 0; i < B; i++) {
        float a = 0.1f * (float)(i + 1) + 0.37f * (float)rank, b = -0.2f * (float)i + 0.05f * (float)rank;
        x[2 * i] = a; x[2 * i + 1] = b;
        y[i] = sinf(a) * cosf(b);
        xd[2 * i] = a; xd[2 * i + 1] = b; yd[i] = y[i];
    }
    memcpy(xnan, x, sizeof x);
    xnan[3] = NAN;

    inloop_trainer *t = NULL, *t2 = NULL, *freed = NULL;
    inloop_model *m = NULL;
    int ok = inloop_trainer_create(config, &t) == INLOOP_OK && inloop_trainer_set_communicator(t, world) == INLOOP_OK;
    check(ok, "data-parallel trainer set up", inloop_last_error());
    ok = inloop_trainer_create(config, &t2) == INLOOP_OK && inloop_trainer_create(config, &freed) == INLOOP_OK &&
         inloop_trainer_free(freed) == INLOOP_OK && inloop_trainer_copy_model(t2, &m) == INLOOP_OK;
    check(ok, "a second (serial) trainer, a freed trainer handle and a model handle", inloop_last_error());

    /* One good step first: the reference state for "unchanged". */
    double loss = 0;
    check(inloop_trainer_step_f32(t, x, y, B, &loss) == INLOOP_OK, "a good step", inloop_last_error());
    double before[4];
    probe(t, before);
    int64_t steps = steps_of(t);

    /* Every failure scenario with the failing rank at the end and at rank 0. */
    int bads[2] = {size - 1, 0};
    for (int k = 0; k < (size > 1 ? 2 : 1); k++) {
        int bad = bads[k];
        int me = rank == bad;
        inloop_status st;
#define SCENARIO(label, call, own)                                                   \
        do {                                                                         \
            snprintf(name, sizeof name, "%s on rank %d of %d", label, bad, size);    \
            st = (call);                                                             \
            failed_together(name, st, bad, own);                                     \
        } while (0)

        SCENARIO("step_f32: x NULL", inloop_trainer_step_f32(t, me ? NULL : x, y, B, &loss), INLOOP_ERR_NULL_POINTER);
        SCENARIO("step_f32: y NULL", inloop_trainer_step_f32(t, x, me ? NULL : y, B, &loss), INLOOP_ERR_NULL_POINTER);
        SCENARIO("step_f32: batch -1", inloop_trainer_step_f32(t, x, y, me ? -1 : B, &loss), INLOOP_ERR_INVALID_ARGUMENT);
        SCENARIO("step_f64: batch 2^40", inloop_trainer_step_f64(t, xd, yd, me ? (int64_t)1 << 40 : B, &loss), INLOOP_ERR_INVALID_ARGUMENT);
        SCENARIO("step_f32: NaN in x", inloop_trainer_step_f32(t, me ? xnan : x, y, B, &loss), INLOOP_ERR_NONFINITE);
        SCENARIO("step_f32: NULL trainer handle", inloop_trainer_step_f32(me ? NULL : t, x, y, B, &loss), INLOOP_ERR_NULL_POINTER);
        SCENARIO("step_f64: a model handle as the trainer", inloop_trainer_step_f64(me ? (inloop_trainer *)(void *)m : t, xd, yd, B, &loss),
                 INLOOP_ERR_INVALID_HANDLE);
        SCENARIO("step_f32: a freed trainer handle", inloop_trainer_step_f32(me ? freed : t, x, y, B, &loss), INLOOP_ERR_INVALID_HANDLE);
        SCENARIO("step_sized_f32: n_in 3", inloop_trainer_step_sized_f32(t, x, me ? 3 : 2, B, y, 1, B, &loss), INLOOP_ERR_SIZE_MISMATCH);
        SCENARIO("step_sized_f32: n_out 2", inloop_trainer_step_sized_f32(t, x, 2, B, y, me ? 2 : 1, B, &loss), INLOOP_ERR_SIZE_MISMATCH);
        SCENARIO("step_sized_f64: y has one column fewer", inloop_trainer_step_sized_f64(t, xd, 2, B, yd, 1, me ? B - 1 : B, &loss),
                 INLOOP_ERR_SIZE_MISMATCH);
        SCENARIO("step_sized_f64: NULL trainer", inloop_trainer_step_sized_f64(me ? NULL : t, xd, 2, B, yd, 1, B, &loss),
                 INLOOP_ERR_NULL_POINTER);
        snprintf(name, sizeof name, "weights and step count unchanged after the refused steps (bad rank %d)", bad);
        weights_same_everywhere(t, name, before);
        check(steps_of(t) == steps, name, "step count changed");

        SCENARIO("save_checkpoint: path NULL", inloop_trainer_save_checkpoint(t, me ? NULL : ckpt), INLOOP_ERR_NULL_POINTER);
        SCENARIO("save_checkpoint: NULL trainer", inloop_trainer_save_checkpoint(me ? NULL : t, ckpt), INLOOP_ERR_NULL_POINTER);
        SCENARIO("save_model: path NULL", inloop_trainer_save_model(t, me ? NULL : saved), INLOOP_ERR_NULL_POINTER);
        SCENARIO("save_model: a model handle as the trainer", inloop_trainer_save_model(me ? (inloop_trainer *)(void *)m : t, saved),
                 INLOOP_ERR_INVALID_HANDLE);

        inloop_model *lm = (inloop_model *)(void *)&lm;   /* must become NULL */
        SCENARIO("model_load_mpi: path NULL", inloop_model_load_mpi(me ? NULL : saved, world, &lm), INLOOP_ERR_NULL_POINTER);
        check(lm == NULL, "model_load_mpi: the handle is NULL after a failure", NULL);
        SCENARIO("model_load_mpi: output pointer NULL", inloop_model_load_mpi(saved, world, me ? NULL : &lm), INLOOP_ERR_NULL_POINTER);
        inloop_trainer *lt = NULL;
        SCENARIO("load_checkpoint_mpi: path NULL", inloop_trainer_load_checkpoint_mpi(me ? NULL : ckpt, world, &lt), INLOOP_ERR_NULL_POINTER);
        SCENARIO("load_checkpoint_mpi: output pointer NULL", inloop_trainer_load_checkpoint_mpi(ckpt, world, me ? NULL : &lt),
                 INLOOP_ERR_NULL_POINTER);
        check(lt == NULL, "load_checkpoint_mpi: the handle is NULL after a failure", NULL);
        SCENARIO("set_communicator: NULL trainer", inloop_trainer_set_communicator(me ? NULL : t2, world), INLOOP_ERR_NULL_POINTER);
        SCENARIO("set_communicator: a model handle as the trainer",
                 inloop_trainer_set_communicator(me ? (inloop_trainer *)(void *)m : t2, world), INLOOP_ERR_INVALID_HANDLE);
        int32_t r = -1, s = -1;
        check(inloop_trainer_rank(t2, &r, &s) == INLOOP_OK && r == 0 && s == 1,
              "set_communicator: a refused call leaves the trainer serial", NULL);
    }

    /* Errors found on rank 0 only (the file is read there): every rank, rank 0's message. */
    inloop_model *lm = NULL;
    failed_together("model_load_mpi: missing file", inloop_model_load_mpi(missing, world, &lm), 0, INLOOP_ERR_IO);
    inloop_trainer *lt = NULL;
    failed_together("load_checkpoint_mpi: missing file", inloop_trainer_load_checkpoint_mpi(missing, world, &lt), 0, INLOOP_ERR_IO);
    failed_together("save_checkpoint: unwritable path", inloop_trainer_save_checkpoint(t, missing), 0, INLOOP_ERR_IO);

    if (size > 2) {   /* two failing ranks: each keeps its own error, the others get the lowest's */
        inloop_status st = inloop_trainer_step_f32(t, rank == 1 ? NULL : x, y, rank == 2 ? -5 : B, &loss);
        const char *msg = inloop_last_error();
        int good = rank == 1 ? st == INLOOP_ERR_NULL_POINTER && strncmp(msg, "rank ", 5) != 0
                 : rank == 2 ? st == INLOOP_ERR_INVALID_ARGUMENT && strncmp(msg, "rank ", 5) != 0
                 : st == INLOOP_ERR_NULL_POINTER && strncmp(msg, "rank 1: ", 8) == 0;
        check(good, "two ranks fail at once: own errors there, the lowest failing rank's elsewhere", msg);
    }

    /* Still working: a good step on every rank gives the same loss and weights everywhere. */
    int64_t before_steps = steps_of(t);
    check(inloop_trainer_step_f32(t, x, y, B, &loss) == INLOOP_OK && steps_of(t) == before_steps + 1,
          "a good step after the failures", inloop_last_error());
    double lo, hi;
    MPI_Allreduce(&loss, &lo, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&loss, &hi, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    check(lo == hi && isfinite(loss), "the good step's loss is the same on every rank", NULL);
    weights_same_everywhere(t, "weights the same on every rank after the good step", NULL);

    /* The collective saves and loads still work together. */
    check(inloop_trainer_save_checkpoint(t, ckpt) == INLOOP_OK, "save_checkpoint after the failures", inloop_last_error());
    check(inloop_trainer_load_checkpoint_mpi(ckpt, world, &lt) == INLOOP_OK, "load_checkpoint_mpi after the failures", inloop_last_error());
    double a[4], b[4];
    probe(t, a);
    probe(lt, b);
    check(memcmp(a, b, sizeof a) == 0, "the reloaded checkpoint has the trainer's weights", NULL);
    check(inloop_trainer_save_model(t, saved) == INLOOP_OK && inloop_model_load_mpi(saved, world, &lm) == INLOOP_OK,
          "save_model and model_load_mpi after the failures", inloop_last_error());

    inloop_trainer_free(lt);
    inloop_model_free(lm);
    inloop_model_free(m);
    inloop_trainer_free(t2);
    inloop_trainer_free(t);
    if (rank == 0) {
        remove(ckpt);
        remove(saved);
        printf("%d passed, %d failed\n", passed, failed);
    }
    MPI_Finalize();
    return failed ? 1 : 0;
}
