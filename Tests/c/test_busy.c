/* One handle used from two threads at once (issue 11, part 8): the second caller gets
 * INLOOP_ERR_BUSY (with a message), never a wrong result or a crash, for forward (float32 and
 * float64), run, jvp and the trainer step. Two threads call on the same handle (calls of a few ms)
 * until BUSY was returned 10 times and 2 calls succeeded (at most 20 s); BUSY must have been seen, and
 * every call that returned OK must have the single-threaded result bitwise: for the model
 * calls the outputs; for the trainer (both threads step on the same data) the final weights equal a
 * serial trainer's after as many steps as returned OK, and the step count equals that number.
 * Usage: test_busy FIXTURES_DIR   (prints "N passed, M failed")
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "inloop.h"

static int passed, failed;

/* `detail` is often inloop_last_error(): the macro evaluates the checked call first, since the order in
   which a function's arguments are evaluated is unspecified (a stale message was printed otherwise). */
#define check(ok, name, detail) do { int check_ok_ = (ok); check_((check_ok_), (name), (detail)); } while (0)
static void check_(int ok, const char *name, const char *detail) {
    if (ok) passed++;
    else {
        failed++;
        printf("FAIL %s%s%s\n", name, detail ? ": " : "", detail ? detail : "");
    }
}

enum { OP_FORWARD32, OP_FORWARD64, OP_RUN32, OP_JVP32, OP_STEP, N_OPS };
static const char *op_names[N_OPS] = {"forward_f32", "forward_f64", "run_f32", "jvp_f32", "trainer_step_f32"};

typedef struct {
    int op;
    void *handle;
    int64_t n_in, n_out, batch;
    const float *x, *dx, *yt;           /* inputs (batch columns), tangent, targets */
    const double *xd;
    const float *ref;                   /* single-threaded output of the op (model ops) */
    const double *refd;
} job_t;

typedef struct {
    const job_t *job;
    atomic_int *busy_total, *ok_total, *stop;
    int id;
    long ok, busy, other, wrong, no_message;
    int other_status;
} worker_t;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inloop_status call(const job_t *j, float *y, double *yd) {
    switch (j->op) {
    case OP_FORWARD32: return inloop_model_forward_f32(j->handle, j->x, j->batch, y);
    case OP_FORWARD64: return inloop_model_forward_f64(j->handle, j->xd, j->batch, yd);
    case OP_RUN32: {
        const float *in[1] = {j->x};
        float *out[1] = {y};
        return inloop_model_run_f32(j->handle, j->batch, 1, in, 1, out);
    }
    case OP_JVP32: return inloop_model_jvp_f32(j->handle, j->x, j->dx, j->batch, NULL, y);
    default: {
        double loss;
        return inloop_trainer_step_f32(j->handle, j->x, j->yt, j->batch, &loss);
    }
    }
}

static void *work(void *arg) {
    worker_t *w = arg;
    const job_t *j = w->job;
    int64_t ny = j->batch * j->n_out;
    float *y = malloc((size_t)ny * sizeof *y);
    double *yd = malloc((size_t)ny * sizeof *yd);
    /* both threads call until BUSY was seen 10 times and 2 calls succeeded, for at most 20 s (one
     * thread may win the handle every time on a loaded machine: no fairness is promised) */
    double t0 = seconds();
    for (long calls = 0; calls < 200000 && !atomic_load(w->stop) && seconds() - t0 < 20; calls++) {
        inloop_status s = call(j, y, yd);
        if (s == INLOOP_OK) {
            w->ok++;
            atomic_fetch_add(w->ok_total, 1);
            if (j->op == OP_FORWARD64 ? memcmp(yd, j->refd, (size_t)ny * sizeof *yd) != 0
                : j->op != OP_STEP && memcmp(y, j->ref, (size_t)ny * sizeof *y) != 0)
                w->wrong++;
        } else if (s == INLOOP_ERR_BUSY) {
            w->busy++;
            atomic_fetch_add(w->busy_total, 1);
            if (!inloop_last_error()[0]) w->no_message++;
            sched_yield();
        } else {
            w->other++;
            w->other_status = s;
        }
        if (atomic_load(w->busy_total) >= 10 && atomic_load(w->ok_total) >= 2) atomic_store(w->stop, 1);
    }
    free(y);
    free(yd);
    return NULL;
}

/* An option set while another thread runs the model: the setter takes the run lock (OK or BUSY, never
 * a race: make sanitize runs this under ThreadSanitizer), and the runs keep their result bitwise. */
typedef struct { inloop_model *m; const float *x, *ref; int64_t batch, ny; int setter; long ok, busy, other, wrong; double t_end; } opt_worker_t;

static void *opt_work(void *arg) {
    opt_worker_t *w = arg;
    float *y = malloc((size_t)w->ny * sizeof *y);
    for (long k = 0; k < 100000 && seconds() < w->t_end; k++) {
        inloop_status s = w->setter ? inloop_model_set_check_finite(w->m, (int32_t)(k & 1))
                                    : inloop_model_forward_f32(w->m, w->x, w->batch, y);
        if (s == INLOOP_OK) {
            w->ok++;
            if (!w->setter && memcmp(y, w->ref, (size_t)w->ny * sizeof *y) != 0) w->wrong++;
        } else if (s == INLOOP_ERR_BUSY) {
            w->busy++;
            sched_yield();
        } else w->other++;
    }
    free(y);
    return NULL;
}

static void contend_options(inloop_model *m, const float *x, const float *ref, int64_t batch, int64_t n_out) {
    opt_worker_t w[2];
    pthread_t th[2];
    double t_end = seconds() + 2;
    for (int k = 0; k < 2; k++) w[k] = (opt_worker_t){m, x, ref, batch, batch * n_out, k, 0, 0, 0, 0, t_end};
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, opt_work, &w[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    char detail[300];
    snprintf(detail, sizeof detail, "forward: %ld OK, %ld BUSY, %ld other, %ld wrong; set_check_finite: %ld OK, %ld BUSY, %ld other",
             w[0].ok, w[0].busy, w[0].other, w[0].wrong, w[1].ok, w[1].busy, w[1].other);
    /* How often each side got through depends on the scheduler (on a loaded machine the setter can
     * find the model busy on every try): what must hold is OK or BUSY, never another status or a
     * changed result, and both calls work again once the other thread is gone. */
    float *y = malloc((size_t)(batch * n_out) * sizeof *y);
    int after = y && inloop_model_set_check_finite(m, 0) == INLOOP_OK && inloop_model_forward_f32(m, x, batch, y) == INLOOP_OK &&
                memcmp(y, ref, (size_t)(batch * n_out) * sizeof *y) == 0;
    free(y);
    check(w[0].other + w[1].other == 0 && w[0].wrong == 0 && after,
          "set_check_finite while another thread runs forward: OK or BUSY, results unchanged", detail);
    (void)inloop_model_set_check_finite(m, 0);
}

static void contend(const job_t *j) {
    atomic_int busy_total = 0, ok_total = 0, stop = 0;
    worker_t w[2];
    memset(w, 0, sizeof w);
    pthread_t th[2];
    for (int k = 0; k < 2; k++) { w[k].job = j; w[k].busy_total = &busy_total; w[k].ok_total = &ok_total; w[k].stop = &stop; w[k].id = k; }
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, work, &w[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    char name[200], detail[300];
    snprintf(name, sizeof name, "%s: one handle, two threads: the second gets BUSY", op_names[j->op]);
    snprintf(detail, sizeof detail, "thread 1: %ld OK, %ld BUSY; thread 2: %ld OK, %ld BUSY", w[0].ok, w[0].busy, w[1].ok, w[1].busy);
    check(w[0].busy + w[1].busy > 0, name, detail);
    snprintf(name, sizeof name, "%s: every OK call has the single-threaded result bitwise; BUSY has a message", op_names[j->op]);
    check(w[0].wrong + w[1].wrong == 0 && w[0].no_message + w[1].no_message == 0 && w[0].ok + w[1].ok > 0, name, detail);
    snprintf(name, sizeof name, "%s: no other status", op_names[j->op]);
    snprintf(detail, sizeof detail, "status %d", w[0].other ? w[0].other_status : w[1].other_status);
    check(w[0].other + w[1].other == 0, name, detail);
    if (j->op == OP_STEP) {
        /* no step lost or doubled: same weights as a serial trainer after ok(A) + ok(B) steps */
        long steps = w[0].ok + w[1].ok;
        int64_t count = -1;
        inloop_trainer_step_count(j->handle, &count);
        check(count == steps + 1, "trainer_step: step count equals the calls that returned OK", NULL);
        printf("(trainer: %ld steps OK, %ld BUSY)\n", steps, w[0].busy + w[1].busy);
        ((job_t *)j)->batch = steps;   /* hand the count back */
    }
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "Tests/fixtures";
    char path[600];
    snprintf(path, sizeof path, "%s/mlp_medium.safetensors", fixtures);
    inloop_set_num_threads(1);
    inloop_model *m = NULL;
    if (inloop_model_load(path, &m) != INLOOP_OK) { printf("load: %s\n0 passed, 1 failed\n", inloop_last_error()); return 1; }
    int64_t n_in = 0, n_out = 0, B = 2000;
    inloop_model_input_size(m, &n_in);
    inloop_model_output_size(m, &n_out);
    float *x = malloc((size_t)(n_in * B) * sizeof *x), *dx = malloc((size_t)(n_in * B) * sizeof *dx);
    double *xd = malloc((size_t)(n_in * B) * sizeof *xd);
    for (int64_t i = 0; i < n_in * B; i++) { x[i] = (float)sin(0.01 * (double)i); xd[i] = x[i]; dx[i] = (float)cos(0.02 * (double)i); }
    float *ref[N_OPS];
    double *refd = malloc((size_t)(n_out * B) * sizeof *refd);
    for (int op = 0; op < N_OPS; op++) ref[op] = malloc((size_t)(n_out * B) * sizeof(float));
    inloop_status s = inloop_model_forward_f32(m, x, B, ref[OP_FORWARD32]);
    s |= inloop_model_forward_f64(m, xd, B, refd);
    memcpy(ref[OP_RUN32], ref[OP_FORWARD32], (size_t)(n_out * B) * sizeof(float));
    s |= inloop_model_jvp_f32(m, x, dx, B, NULL, ref[OP_JVP32]);
    check(s == INLOOP_OK, "single-threaded references", inloop_last_error());
    for (int op = OP_FORWARD32; op <= OP_JVP32; op++) {
        job_t j = {op, m, n_in, n_out, B, x, dx, NULL, xd, ref[op], refd};
        contend(&j);
    }
    contend_options(m, x, ref[OP_FORWARD32], B, n_out);

    /* The trainer: both threads step on the same data. */
    const char *config = "model: {inputs: 8, layers: [{type: dense, out: 256, activation: tanh}, {type: dense, out: 256, activation: tanh}, {type: dense, out: 4}]}\n"
                         "optimizer: {type: adam, lr: 0.001}\nseed: 5\n";
    enum { TB = 512 };
    float tx[8 * TB], ty[4 * TB];
    for (int i = 0; i < 8 * TB; i++) tx[i] = (float)sin(0.37 * i);
    for (int i = 0; i < 4 * TB; i++) ty[i] = (float)cos(0.11 * i);
    inloop_trainer *t = NULL, *serial = NULL;
    double loss;
    s = inloop_trainer_create(config, &t);
    s |= inloop_trainer_step_f32(t, tx, ty, TB, &loss);   /* warm up: workspaces made */
    check(s == INLOOP_OK, "trainer created", inloop_last_error());
    job_t j = {OP_STEP, t, 8, 4, TB, tx, NULL, ty, NULL, NULL, NULL};
    contend(&j);
    long steps = (long)j.batch;
    s = inloop_trainer_create(config, &serial);
    for (long k = 0; k < steps + 1 && s == INLOOP_OK; k++) s = inloop_trainer_step_f32(serial, tx, ty, TB, &loss);
    inloop_model *a = NULL, *b = NULL;
    float pa[4 * 16], pb[4 * 16];
    s |= inloop_trainer_copy_model(t, &a);
    s |= inloop_trainer_copy_model(serial, &b);
    s |= inloop_model_forward_f32(a, tx, 16, pa);
    s |= inloop_model_forward_f32(b, tx, 16, pb);
    check(s == INLOOP_OK && memcmp(pa, pb, sizeof pa) == 0,
          "trainer_step: the contended trainer's weights equal a serial trainer's after the same number of steps", inloop_last_error());
    inloop_model_free(a);
    inloop_model_free(b);
    inloop_trainer_free(t);
    inloop_trainer_free(serial);
    inloop_model_free(m);
    for (int op = 0; op < N_OPS; op++) free(ref[op]);
    free(refd); free(x); free(dx); free(xd);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
