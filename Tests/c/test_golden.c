/* Golden fixtures: the engine rewrite (docs/ENGINE.md) must not change one output bit of today's
 * engine. Compared with memcmp through the public C API:
 *  - every v1 fixture (Tests/fixtures/list.txt) against Tests/fixtures/golden/ (written by
 *    tools/make_golden.py through `inloop run`): batch 1 sample by sample, reproducible mode at batch N,
 *    the f64 entry points (float32 compute, widened), and batch N (dense layers on the packed FMA
 *    kernel, ilk_packed_gemm, on every CPU with AVX2+FMA; other layers on sgemm);
 *  - the checkpoint fixtures checkpoint_v1_{f32,f64}.safetensors (a trainer made from CFG32/CFG64 below
 *    after 5 steps, written by `test_golden --write`): load + save gives the same bytes; load + K steps
 *    equals load, save, reload + K steps; creating the trainer again + 5 steps gives the fixture's bytes;
 *    load + K steps gives the committed losses, gradient norms and checkpoint bytes; the same checkpoint
 *    as written before checkpoints held input statistics (checkpoint_v1_*.pre_ranges) gives the same
 *    losses and norms.
 *  - the model a trainer starts with, for the configurations the tests and the demo train from (seeded
 *    initialisation), at batch 1 on probe inputs (golden/init_*.b1.f32, also written by --write).
 * What depends on the CPU (docs/ENGINE-BASELINE.md): sgemm bits depend on OpenBLAS's kernel family
 * (Haswell, SkylakeX, Cooperlake, Zen... differ), so everything BLAS touches is compared in a child
 * process with OPENBLAS_CORETYPE=Haswell forced (any x86-64 CPU with AVX2+FMA runs that kernel), for
 * the OpenBLAS and glibc recorded in golden/manifest.txt; a different OpenBLAS or glibc (another
 * distribution release) is a SKIP that says to regenerate, never a false failure. Batch 1 with only
 * Swift arithmetic (class "swift") is compared on every CPU with any libraries.
 * Usage: test_golden FIXTURES_DIR TMP_DIR | --write FIXTURES_DIR | --versions.
 * Ends with "N passed, M failed" (SKIP lines count as skipped). */
#define _GNU_SOURCE
#include <gnu/libc-version.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inloop.h"

char *openblas_get_config(void);
char *openblas_get_corename(void);

static int n_pass, n_fail, n_skip;
static void check(int ok, const char *name, const char *detail) {
    if (ok) { n_pass++; printf("PASS %s\n", name); }
    else { n_fail++; printf("FAIL %s: %s\n", name, detail && detail[0] ? detail : inloop_last_error()); }
}
static void skip(const char *name, const char *why) { n_skip++; printf("SKIP golden %s: %s\n", name, why); }

/* ------------------------------------------------------------------ files */

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
        if (buf) { buf[n] = 0; *size = (size_t)n; }
    }
    fclose(f);
    return buf;
}

/* 1 when the two files exist and have the same bytes; else 0 and why in msg */
static int same_file(const char *a, const char *b, char *msg, size_t len) {
    size_t na = 0, nb = 0, i = 0;
    unsigned char *da = read_file(a, &na), *db = read_file(b, &nb);
    int same = 0;
    if (!da || !db) snprintf(msg, len, "cannot read %s", da ? b : a);
    else if (na != nb) snprintf(msg, len, "%s: %zu bytes, %s: %zu bytes", a, na, b, nb);
    else {
        while (i < na && da[i] == db[i]) i++;
        same = i == na;
        if (!same) snprintf(msg, len, "%s and %s differ from byte %zu of %zu", a, b, i, na);
    }
    free(da); free(db);
    return same;
}

/* ------------------------------------------------------------------ versions */

/* The recorded facts the BLAS- and libm-dependent goldens hold for (see the header comment). */
typedef struct { char openblas[256], corename[64], glibc[64]; } versions;

static void current_versions(versions *v) {
    snprintf(v->openblas, sizeof v->openblas, "%s", openblas_get_config());
    snprintf(v->corename, sizeof v->corename, "%s", openblas_get_corename());
    snprintf(v->glibc, sizeof v->glibc, "%s", gnu_get_libc_version());
    size_t n = strlen(v->openblas);                     /* the config string ends with a space */
    while (n > 0 && v->openblas[n - 1] == ' ') v->openblas[--n] = 0;
}

/* x86-64 with AVX2 and FMA: OpenBLAS's Haswell kernels run, glibc takes its FMA code paths */
static int cpu_has_avx2_fma(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ manifest */

typedef struct { char name[64], file[96], klass[8]; int64_t batch, n_out; } entry;
typedef struct { versions v; entry e[256]; int n; } manifest;

static int read_manifest(const char *path, manifest *m, char *msg, size_t len) {
    size_t size = 0;
    char *text = (char *)read_file(path, &size), *save = NULL;
    memset(m, 0, sizeof *m);
    if (!text) { snprintf(msg, len, "missing %s: regenerate with python3 tools/make_golden.py", path); return 0; }
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "openblas ", 9)) snprintf(m->v.openblas, sizeof m->v.openblas, "%s", line + 9);
        else if (!strncmp(line, "corename ", 9)) snprintf(m->v.corename, sizeof m->v.corename, "%s", line + 9);
        else if (!strncmp(line, "glibc ", 6)) snprintf(m->v.glibc, sizeof m->v.glibc, "%s", line + 6);
        else if (m->n < 256) {
            entry *e = &m->e[m->n];
            long long b = 0, o = 0;
            if (sscanf(line, "%63s %95s %lld %lld %7s", e->name, e->file, &b, &o, e->klass) != 5 || b < 1 || o < 1) {
                snprintf(msg, len, "%s: bad line '%s'", path, line);
                free(text);
                return 0;
            }
            e->batch = b; e->n_out = o;
            m->n++;
        }
    }
    free(text);
    if (!m->v.openblas[0] || !m->v.glibc[0] || m->n == 0) { snprintf(msg, len, "%s: incomplete", path); return 0; }
    return 1;
}

/* ------------------------------------------------------------------ inference goldens */

/* x of <name>.io.bin as float32 (exact: the generator checks it) */
static float *read_x(const char *fixtures, const char *name, int64_t *n_in, int64_t *batch) {
    char path[1200];
    size_t size = 0;
    int64_t head[3];
    snprintf(path, sizeof path, "%s/%s.io.bin", fixtures, name);
    unsigned char *d = read_file(path, &size);
    float *x = NULL;
    if (d && size >= sizeof head) {
        memcpy(head, d, sizeof head);
        if (head[0] > 0 && head[2] > 0 && head[0] < 100000 && head[2] < 100000 &&
            size >= sizeof head + (size_t)(head[0] * head[2]) * sizeof(double)) {
            *n_in = head[0]; *batch = head[2];
            x = malloc(sizeof(float) * (size_t)(head[0] * head[2]));
            for (int64_t i = 0; x && i < head[0] * head[2]; i++) {
                double v;
                memcpy(&v, d + sizeof head + (size_t)i * sizeof v, sizeof v);
                x[i] = (float)v;
            }
        }
    }
    free(d);
    return x;
}

/* index of the first difference of y against the golden g (count values), -1 if bitwise equal; the
 * difference goes to msg */
static int64_t first_difference(const float *y, const float *g, int64_t count, char *msg, size_t len) {
    for (int64_t i = 0; i < count; i++) {
        if (memcmp(&y[i], &g[i], sizeof *y) != 0) {
            int32_t a, b;
            memcpy(&a, &y[i], sizeof a); memcpy(&b, &g[i], sizeof b);
            snprintf(msg, len, "value %lld: %.9g (0x%08x), golden %.9g (0x%08x), %lld ulp", (long long)i, (double)y[i],
                     (unsigned)a, (double)g[i], (unsigned)b, (long long)a - (long long)b);
            return i;
        }
    }
    return -1;
}

/* The same for the f64 entry points, which compute in float32: y must be the golden widened, bit for bit. */
static int64_t first_difference64(const double *y, const float *g, int64_t count, char *msg, size_t len) {
    for (int64_t i = 0; i < count; i++) {
        const double w = g[i];
        if (memcmp(&y[i], &w, sizeof w) != 0) {
            snprintf(msg, len, "value %lld: %.17g, golden %.9g widened (forward_f64)", (long long)i, y[i], (double)g[i]);
            return i;
        }
    }
    return -1;
}

/* Compares one manifest entry. batch-1 ("b1") goldens: forward_f32 sample by sample, forward_f64 of
 * sample 0 (float32 compute: the golden widened), reproducible mode at batch N (per-sample dense).
 * batch-N ("bN") goldens: forward_f32 and forward_f64 at batch N. */
static void compare_entry(const char *fixtures, const entry *e) {
    char path[1200], name[2048], msg[4096] = "";
    size_t size = 0;
    int64_t n_in = 0, batch = 0, n_out = 0;
    inloop_model *m = NULL;
    int ok = 0;
    const int b1 = strstr(e->file, ".b1.") != NULL;
    snprintf(name, sizeof name, "golden %s: %s", e->file,
             b1 ? "batch 1 per sample, f64 entry, reproducible batch N equal the golden bitwise"
                : "batch N (packed kernel / sgemm), f32 and f64 entries, equal the golden bitwise");
    snprintf(path, sizeof path, "%s/golden/%s", fixtures, e->file);
    float *g = (float *)read_file(path, &size);
    float *x = read_x(fixtures, e->name, &n_in, &batch);
    snprintf(path, sizeof path, "%s/%s.safetensors", fixtures, e->name);
    if (!g || !x) {
        snprintf(msg, sizeof msg, "missing %s or %s.io.bin: regenerate with python3 tools/make_golden.py", e->file, e->name);
    } else if (batch != e->batch || size != (size_t)(e->batch * e->n_out) * sizeof(float)) {
        snprintf(msg, sizeof msg, "golden has %zu bytes for batch %lld x %lld outputs; fixture batch %lld",
                 size, (long long)e->batch, (long long)e->n_out, (long long)batch);
    } else if (inloop_model_load(path, &m) != INLOOP_OK || inloop_model_output_size(m, &n_out) != INLOOP_OK) {
        snprintf(msg, sizeof msg, "load %s: %s", path, inloop_last_error());
    } else if (n_out != e->n_out) {
        snprintf(msg, sizeof msg, "model has %lld outputs, golden %lld", (long long)n_out, (long long)e->n_out);
    } else {
        const size_t ny = (size_t)(batch * n_out), nx = (size_t)(batch * n_in);
        float *y = calloc(ny, sizeof *y);
        double *x64 = calloc(nx, sizeof *x64), *y64 = calloc(ny, sizeof *y64);
        ok = y && x64 && y64;
        if (!ok) snprintf(msg, sizeof msg, "out of memory");
        for (size_t i = 0; ok && i < nx; i++) x64[i] = x[i];
        if (b1) {
            for (int64_t s = 0; ok && s < batch; s++) {
                if (inloop_model_forward_f32(m, x + s * n_in, 1, y + s * n_out) != INLOOP_OK) {
                    snprintf(msg, sizeof msg, "forward_f32 batch 1: %s", inloop_last_error()); ok = 0;
                }
            }
            if (ok && first_difference(y, g, batch * n_out, msg, sizeof msg) >= 0) ok = 0;
            if (ok && inloop_model_forward_f64(m, x64, 1, y64) != INLOOP_OK) {
                snprintf(msg, sizeof msg, "forward_f64 batch 1: %s", inloop_last_error()); ok = 0;
            }
            if (ok && first_difference64(y64, g, n_out, msg, sizeof msg) >= 0) ok = 0;
            memset(y, 0, ny * sizeof *y);
            if (ok && (inloop_model_set_reproducible(m, 1) != INLOOP_OK || inloop_model_forward_f32(m, x, batch, y) != INLOOP_OK)) {
                snprintf(msg, sizeof msg, "reproducible forward_f32: %s", inloop_last_error()); ok = 0;
            }
            if (ok && first_difference(y, g, batch * n_out, msg, sizeof msg) >= 0) {
                strncat(msg, " (reproducible mode, batch N)", sizeof msg - strlen(msg) - 1); ok = 0;
            }
        } else {
            if (inloop_model_forward_f32(m, x, batch, y) != INLOOP_OK) {
                snprintf(msg, sizeof msg, "forward_f32: %s", inloop_last_error()); ok = 0;
            }
            if (ok && first_difference(y, g, batch * n_out, msg, sizeof msg) >= 0) ok = 0;
            if (ok && inloop_model_forward_f64(m, x64, batch, y64) != INLOOP_OK) {
                snprintf(msg, sizeof msg, "forward_f64: %s", inloop_last_error()); ok = 0;
            }
            if (ok && first_difference64(y64, g, batch * n_out, msg, sizeof msg) >= 0) ok = 0;
        }
        free(y); free(x64); free(y64);
    }
    check(ok, name, msg);
    (void)inloop_model_free(m);
    free(g); free(x);
}

/* Every fixture of list.txt has a batch-1 and a batch-N golden in the manifest. */
static void check_coverage(const char *fixtures, const manifest *m) {
    char path[1200], msg[4096] = "", *save = NULL;
    size_t size = 0;
    snprintf(path, sizeof path, "%s/list.txt", fixtures);
    char *text = (char *)read_file(path, &size);
    int ok = text != NULL, count = 0;
    if (!text) snprintf(msg, sizeof msg, "cannot read %s", path);
    for (char *line = text ? strtok_r(text, "\n \t", &save) : NULL; ok && line; line = strtok_r(NULL, "\n \t", &save)) {
        int have = 0;
        for (int i = 0; i < m->n; i++) have += !strcmp(m->e[i].name, line);
        if (have != 2) { snprintf(msg, sizeof msg, "fixture %s has %d golden files, want 2 (b1, bN): regenerate with python3 tools/make_golden.py", line, have); ok = 0; }
        count++;
    }
    check(ok && count > 0, "golden: every fixture of list.txt has its batch-1 and batch-N goldens", msg);
    free(text);
}

/* ------------------------------------------------------------------ checkpoints */

/* Small networks the checkpoint fixtures are made from: every v1 layer kind, the tanh (libm tanhf in
 * training), relu, normalisation, both precisions, two losses, adam and adamw with clipping, a schedule. */
static const char *CFG32 =
    "model:\n"
    "  inputs: 3\n"
    "  layers:\n"
    "    - {type: normalize, mean: [0.5, -0.25, 1.0], std: [2.0, 0.5, 3.0]}\n"
    "    - {type: dense, out: 16, activation: tanh}\n"
    "    - {type: dense, out: 16, activation: relu}\n"
    "    - {type: dense, out: 2}\n"
    "    - {type: denormalize, mean: [0.1, -0.2], std: [1.5, 0.75]}\n"
    "loss: mse\n"
    "optimizer: {type: adamw, lr: 0.01, weight_decay: 0.01, clip_norm: 1.0}\n"
    "schedule: {type: cosine, period: 50, min_lr: 0.001, warmup: 3}\n"
    "seed: 5\n"
    "precision: float32\n";
static const char *CFG64 =
    "model:\n"
    "  inputs: 3\n"
    "  layers:\n"
    "    - {type: normalize, mean: [0.5, -0.25, 1.0], std: [2.0, 0.5, 3.0]}\n"
    "    - {type: dense, out: 16, activation: tanh}\n"
    "    - {type: dense, out: 16, activation: relu}\n"
    "    - {type: dense, out: 2}\n"
    "    - {type: denormalize, mean: [0.1, -0.2], std: [1.5, 0.75]}\n"
    "loss: {type: huber, delta: 0.5, weights: [1, 2]}\n"
    "optimizer: {type: adam, lr: 0.01}\n"
    "seed: 6\n"
    "precision: float64\n";
enum { NI = 3, NO = 2, NB = 16, FIRST = 5, K = 5 };

/* Batch `step` of the training data: x on a grid of 1/64 in [-2, 2), y a polynomial of x (exact in
 * double, rounded to float: no libm in the data). */
static void batch_data(int step, double *x, double *y) {
    uint64_t s = 0x9E3779B97F4A7C15ULL * (uint64_t)(step + 1);
    for (int i = 0; i < NB; i++) {
        for (int j = 0; j < NI; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            x[i * NI + j] = (double)((int)(s >> 56) - 128) / 64.0;
        }
        const double a = x[i * NI], b = x[i * NI + 1], c = x[i * NI + 2];
        y[i * NO] = (float)(a * b - 0.5 * c + 0.25);
        y[i * NO + 1] = (float)(a * a - b * c * 0.75);
    }
}

/* One training step number `step` in the trainer's precision; loss and gradient norm returned. */
static int train_step(inloop_trainer *t, int f64, int step, double *loss, double *norm) {
    double x[NB * NI], y[NB * NO];
    float xf[NB * NI], yf[NB * NO];
    batch_data(step, x, y);
    for (int i = 0; i < NB * NI; i++) xf[i] = (float)x[i];
    for (int i = 0; i < NB * NO; i++) yf[i] = (float)y[i];
    inloop_status st = f64 ? inloop_trainer_step_f64(t, x, y, NB, loss) : inloop_trainer_step_f32(t, xf, yf, NB, loss);
    return st == INLOOP_OK && inloop_trainer_gradient_norm(t, norm) == INLOOP_OK;
}

/* Steps first..first+K-1 on t; losses and norms into out[2K]; then the checkpoint to path. */
static int continue_k(inloop_trainer *t, int f64, int first, double *out, const char *path) {
    for (int k = 0; k < K; k++)
        if (!train_step(t, f64, first + k, &out[2 * k], &out[2 * k + 1])) return 0;
    return !path || inloop_trainer_save_checkpoint(t, path) == INLOOP_OK;
}

static const char *const PRECISION[2] = {"f32", "f64"};

static void fixture_paths(const char *fixtures, int f64, char *ckpt, char *after, char *losses, size_t len) {
    snprintf(ckpt, len, "%s/checkpoint_v1_%s.safetensors", fixtures, PRECISION[f64]);
    snprintf(after, len, "%s/golden/checkpoint_v1_%s.after%d.safetensors", fixtures, PRECISION[f64], K);
    snprintf(losses, len, "%s/golden/checkpoint_v1_%s.losses.txt", fixtures, PRECISION[f64]);
}

/* --write: the checkpoint fixtures and their continuation goldens, from today's code */
static int write_checkpoints(const char *fixtures) {
    char ckpt[1200], after[1200], losses[1200];
    for (int f64 = 0; f64 < 2; f64++) {
        inloop_trainer *t = NULL;
        double l, nrm, out[2 * K];
        fixture_paths(fixtures, f64, ckpt, after, losses, sizeof ckpt);
        if (inloop_trainer_create(f64 ? CFG64 : CFG32, &t) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
        for (int s = 0; s < FIRST; s++)
            if (!train_step(t, f64, s, &l, &nrm)) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
        if (inloop_trainer_save_checkpoint(t, ckpt) != INLOOP_OK) { fprintf(stderr, "%s\n", inloop_last_error()); return 1; }
        (void)inloop_trainer_free(t);
        t = NULL;
        if (inloop_trainer_load_checkpoint(ckpt, &t) != INLOOP_OK || !continue_k(t, f64, FIRST, out, after)) {
            fprintf(stderr, "%s\n", inloop_last_error()); return 1;
        }
        (void)inloop_trainer_free(t);
        FILE *f = fopen(losses, "w");
        if (!f) { perror(losses); return 1; }
        fprintf(f, "# loss and gradient norm of steps %d..%d from %s (C99 hex floats; tools/make_golden.py)\n",
                FIRST + 1, FIRST + K, strrchr(ckpt, '/') + 1);
        for (int k = 0; k < K; k++) fprintf(f, "%a %a\n", out[2 * k], out[2 * k + 1]);
        if (fclose(f) != 0) { perror(losses); return 1; }
        printf("wrote %s, %s, %s\n", ckpt, after, losses);
    }
    return 0;
}

/* Checks that hold with any BLAS kernel (same-run comparisons and file round trips). */
static void checkpoint_checks(const char *fixtures, const char *tmp) {
    char ckpt[1200], after[1200], losses[1200], t1[1200], t2[1200], t3[1200], name[2048], msg[4096];
    for (int f64 = 0; f64 < 2; f64++) {
        const char *p = PRECISION[f64];
        inloop_trainer *a = NULL, *b = NULL, *c = NULL;
        double la[2 * K], lb[2 * K];
        int64_t steps = -1;
        fixture_paths(fixtures, f64, ckpt, after, losses, sizeof ckpt);
        snprintf(t1, sizeof t1, "%s/golden_resave_%s.safetensors", tmp, p);
        snprintf(t2, sizeof t2, "%s/golden_continue_a_%s.safetensors", tmp, p);
        snprintf(t3, sizeof t3, "%s/golden_continue_b_%s.safetensors", tmp, p);
        msg[0] = 0;
        if (access(ckpt, R_OK) != 0) {
            snprintf(name, sizeof name, "golden: checkpoint fixture %s present", ckpt);
            check(0, name, "missing: regenerate with python3 tools/make_golden.py");
            continue;
        }
        int ok = inloop_trainer_load_checkpoint(ckpt, &a) == INLOOP_OK && inloop_trainer_step_count(a, &steps) == INLOOP_OK &&
                 inloop_trainer_save_checkpoint(a, t1) == INLOOP_OK;
        snprintf(name, sizeof name, "golden: checkpoint_v1_%s loads (step %d) and saves again byte for byte", p, FIRST);
        check(ok && steps == FIRST && same_file(ckpt, t1, msg, sizeof msg), name, ok && steps != FIRST ? "wrong step count" : msg);
        /* load + K steps against load, save, reload + K steps */
        ok = a && continue_k(a, f64, FIRST, la, t2) &&
             inloop_trainer_load_checkpoint(ckpt, &b) == INLOOP_OK && inloop_trainer_save_checkpoint(b, t1) == INLOOP_OK &&
             inloop_trainer_load_checkpoint(t1, &c) == INLOOP_OK && continue_k(c, f64, FIRST, lb, t3);
        msg[0] = 0;
        if (ok && memcmp(la, lb, sizeof la) != 0) { snprintf(msg, sizeof msg, "losses or gradient norms differ"); ok = 0; }
        else if (ok && !same_file(t2, t3, msg, sizeof msg)) ok = 0;
        snprintf(name, sizeof name, "golden: checkpoint_v1_%s + %d steps equals load, save, reload + %d steps (losses, norms, checkpoint bytes)", p, K, K);
        check(ok, name, msg);
        (void)inloop_trainer_free(a); (void)inloop_trainer_free(b); (void)inloop_trainer_free(c);
        remove(t1); remove(t2); remove(t3);
    }
}

/* Checks of the trajectory itself (BLAS bits: run with the recorded kernel and libraries). */
static void checkpoint_goldens(const char *fixtures, const char *tmp) {
    char ckpt[1200], after[1200], losses[1200], t1[1200], name[2048], msg[4096];
    for (int f64 = 0; f64 < 2; f64++) {
        const char *p = PRECISION[f64];
        inloop_trainer *t = NULL;
        double l, nrm, out[2 * K], want[2 * K];
        fixture_paths(fixtures, f64, ckpt, after, losses, sizeof ckpt);
        snprintf(t1, sizeof t1, "%s/golden_blas_%s.safetensors", tmp, p);
        /* the config + seed + 5 steps give the fixture again: initialisation and trajectory pinned */
        int ok = inloop_trainer_create(f64 ? CFG64 : CFG32, &t) == INLOOP_OK;
        for (int s = 0; ok && s < FIRST; s++) ok = train_step(t, f64, s, &l, &nrm);
        ok = ok && inloop_trainer_save_checkpoint(t, t1) == INLOOP_OK;
        msg[0] = 0;
        snprintf(name, sizeof name, "golden: a trainer made from the config (seed) after %d steps is checkpoint_v1_%s byte for byte", FIRST, p);
        check(ok && same_file(ckpt, t1, msg, sizeof msg), name, msg);
        (void)inloop_trainer_free(t);
        t = NULL;
        /* continuing from the fixture: the committed losses, norms and checkpoint */
        size_t size = 0;
        char *text = (char *)read_file(losses, &size), *line = text, *end = NULL;
        int n = 0;
        while (line && *line && n < 2 * K) {
            if (*line == '#') { line = strchr(line, '\n'); if (line) line++; continue; }
            want[n] = strtod(line, &end);
            if (end == line) break;
            n++; line = end;
            while (*line == ' ' || *line == '\n') line++;
        }
        free(text);
        msg[0] = 0;
        ok = n == 2 * K && inloop_trainer_load_checkpoint(ckpt, &t) == INLOOP_OK && continue_k(t, f64, FIRST, out, t1);
        if (n != 2 * K) snprintf(msg, sizeof msg, "missing or short %s: regenerate with python3 tools/make_golden.py", losses);
        for (int k = 0; ok && k < 2 * K; k++)
            if (memcmp(&out[k], &want[k], sizeof out[k]) != 0) {
                snprintf(msg, sizeof msg, "step %d %s: %a, golden %a", FIRST + 1 + k / 2, k % 2 ? "gradient norm" : "loss", out[k], want[k]);
                ok = 0;
            }
        if (ok && !same_file(after, t1, msg, sizeof msg)) ok = 0;
        snprintf(name, sizeof name, "golden: checkpoint_v1_%s + %d steps gives the committed losses, gradient norms and checkpoint", p, K);
        check(ok, name, msg);
        (void)inloop_trainer_free(t);
        t = NULL;
        /* a checkpoint written before input statistics existed (the same state without them) restarts
           exactly: the same losses and gradient norms */
        char legacy[1200];
        snprintf(legacy, sizeof legacy, "%s/checkpoint_v1_%s.pre_ranges.safetensors", fixtures, p);
        msg[0] = 0;
        ok = n == 2 * K && inloop_trainer_load_checkpoint(legacy, &t) == INLOOP_OK && continue_k(t, f64, FIRST, out, t1);
        if (!ok && !msg[0]) snprintf(msg, sizeof msg, "%s", inloop_last_error());
        for (int k = 0; ok && k < 2 * K; k++)
            if (memcmp(&out[k], &want[k], sizeof out[k]) != 0) {
                snprintf(msg, sizeof msg, "step %d %s: %a, golden %a", FIRST + 1 + k / 2, k % 2 ? "gradient norm" : "loss", out[k], want[k]);
                ok = 0;
            }
        snprintf(name, sizeof name, "golden: checkpoint_v1_%s.pre_ranges (no input statistics) + %d steps gives the committed losses and gradient norms", p, K);
        check(ok, name, msg);
        (void)inloop_trainer_free(t);
        remove(t1);
    }
}

/* ------------------------------------------------------------------ seeded initialisation */

/* The configurations the tests and the demo train from: the model a trainer starts with (seeded
 * initialisation, the config -> network lowering), run at batch 1 on PROBES probe inputs. Class "swift":
 * Xavier draws (uniform only) and tanh/identity layers; "libm": He draws use log1p and cos. */
typedef struct { const char *name, *config, *klass; } init_case;
static const init_case INITS[] = {
    {"test_training_c",   /* Tests/c/test_training.c */
     "model:\n  inputs: 2\n  layers:\n    - {type: dense, out: 32, activation: tanh}\n"
     "    - {type: dense, out: 32, activation: tanh}\n    - {type: dense, out: 1}\n"
     "optimizer: {type: adam, lr: 0.01}\nschedule: {type: cosine, period: 600, min_lr: 0.0005}\nseed: 7\n", "swift"},
    {"test_training_f90", /* Tests/fortran/test_training.f90 */
     "model:\n  inputs: 2\n  layers:\n    - {type: dense, out: 32, activation: tanh}\n"
     "    - {type: dense, out: 32, activation: tanh}\n    - {type: dense, out: 1}\n"
     "optimizer: {type: adam, lr: 0.01}\nschedule: {type: cosine, period: 800, min_lr: 0.0005}\nseed: 3\n"
     "precision: float64\n", "swift"},
    {"lorenz96", "examples/lorenz96/training.yaml", "libm"},   /* the demo's file, relative to the repository */
};
enum { N_INITS = sizeof INITS / sizeof INITS[0], PROBES = 7 };

/* The outputs (PROBES x n_out floats, malloc'ed) of the model a trainer made from c starts with. */
static float *init_outputs(const char *fixtures, const init_case *c, int64_t *n_out, char *msg, size_t len) {
    char cfg[1200];
    inloop_trainer *t = NULL;
    inloop_model *m = NULL;
    int64_t n_in = 0;
    float *y = NULL;
    /* a file name is taken relative to the repository root (fixtures is <root>/Tests/fixtures) */
    if (strchr(c->config, '\n')) snprintf(cfg, sizeof cfg, "%s", c->config);
    else snprintf(cfg, sizeof cfg, "%s/../../%s", fixtures, c->config);
    if (inloop_trainer_create(cfg, &t) != INLOOP_OK || inloop_trainer_sizes(t, &n_in, n_out) != INLOOP_OK ||
        inloop_trainer_copy_model(t, &m) != INLOOP_OK) {
        snprintf(msg, len, "trainer from %s: %s", c->name, inloop_last_error());
    } else {
        float *x = calloc((size_t)n_in, sizeof *x);
        y = calloc((size_t)(PROBES * *n_out), sizeof *y);
        for (int s = 0; x && y && s < PROBES; s++) {
            for (int64_t j = 0; j < n_in; j++) x[j] = (float)((s * 7 + j * 3) % 17 - 8) / 4.0f;
            if (inloop_model_forward_f32(m, x, 1, y + s * *n_out) != INLOOP_OK) {
                snprintf(msg, len, "forward of %s's initial model: %s", c->name, inloop_last_error());
                free(y); y = NULL; break;
            }
        }
        free(x);
    }
    (void)inloop_model_free(m);
    (void)inloop_trainer_free(t);
    return y;
}

static int write_inits(const char *fixtures) {
    char path[1200], msg[4096] = "";
    for (int i = 0; i < N_INITS; i++) {
        int64_t n_out = 0;
        float *y = init_outputs(fixtures, &INITS[i], &n_out, msg, sizeof msg);
        snprintf(path, sizeof path, "%s/golden/init_%s.b1.f32", fixtures, INITS[i].name);
        FILE *f = y ? fopen(path, "wb") : NULL;
        int ok = f && fwrite(y, sizeof *y, (size_t)(PROBES * n_out), f) == (size_t)(PROBES * n_out);
        if (f && fclose(f) != 0) ok = 0;
        free(y);
        if (!ok) { fprintf(stderr, "%s: %s\n", path, msg); return 1; }
        printf("wrote %s\n", path);
    }
    return 0;
}

static void check_inits(const char *fixtures, int libm_ok, const char *libm_why) {
    char path[1200], name[2048], msg[4096];
    for (int i = 0; i < N_INITS; i++) {
        const init_case *c = &INITS[i];
        int64_t n_out = 0;
        size_t size = 0;
        snprintf(name, sizeof name, "golden init_%s.b1.f32: the initial model of a trainer made from the config (seed) equals the golden bitwise (batch 1)", c->name);
        if (!strcmp(c->klass, "libm") && !libm_ok) { skip(name + 7, libm_why); continue; }
        msg[0] = 0;
        snprintf(path, sizeof path, "%s/golden/init_%s.b1.f32", fixtures, c->name);
        float *g = (float *)read_file(path, &size);
        float *y = g ? init_outputs(fixtures, c, &n_out, msg, sizeof msg) : NULL;
        if (!g) snprintf(msg, sizeof msg, "missing %s: regenerate with python3 tools/make_golden.py", path);
        int ok = g && y && size == (size_t)(PROBES * n_out) * sizeof(float) && first_difference(y, g, PROBES * n_out, msg, sizeof msg) < 0;
        if (g && y && size != (size_t)(PROBES * n_out) * sizeof(float)) snprintf(msg, sizeof msg, "golden has %zu bytes", size);
        check(ok, name, msg);
        free(g); free(y);
    }
}

/* ------------------------------------------------------------------ driver */

/* The BLAS part in a child with OPENBLAS_CORETYPE=Haswell (read by OpenBLAS when it is loaded, so
 * it cannot be set in this process); its PASS/FAIL/SKIP lines are echoed and its counts added. */
static void run_haswell_child(const char *fixtures, const char *tmp) {
    char exe[1024], cmd[4096], line[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int got = 0;
    if (n <= 0) { check(0, "golden: start the OPENBLAS_CORETYPE=Haswell child", "readlink /proc/self/exe failed"); return; }
    exe[n] = 0;
    if (strchr(exe, '\'') || strchr(fixtures, '\'') || strchr(tmp, '\'')) {
        check(0, "golden: start the OPENBLAS_CORETYPE=Haswell child", "a path contains a quote");
        return;
    }
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=Haswell '%s' --blas '%s' '%s' 2>&1", exe, fixtures, tmp);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) { check(0, "golden: start the OPENBLAS_CORETYPE=Haswell child", "popen failed"); return; }
    while (fgets(line, sizeof line, p)) {
        int a, b, c;
        if (sscanf(line, "%d passed, %d failed, %d skipped", &a, &b, &c) == 3) {
            n_pass += a; n_fail += b; n_skip += c; got = 1;
        } else {
            fputs(line, stdout);
        }
    }
    int status = pclose(p);
    check(got && status == 0, "golden: the OPENBLAS_CORETYPE=Haswell child ran to the end",
          got ? "exit status not 0" : "no summary line (crashed?)");
}

/* The BLAS-dependent goldens; in a process whose OpenBLAS runs the Haswell kernels. */
static void blas_part(const char *fixtures, const char *tmp, const manifest *m) {
    versions v;
    char why[2048];
    current_versions(&v);
    if (strcmp(v.corename, m->v.corename) != 0 || strcmp(v.openblas, m->v.openblas) != 0 || strcmp(v.glibc, m->v.glibc) != 0) {
        snprintf(why, sizeof why, "OpenBLAS '%s' (core %s), glibc %s here; goldens for '%s' (core %s), glibc %s: "
                 "regenerate with python3 tools/make_golden.py on this system to compare", v.openblas, v.corename, v.glibc,
                 m->v.openblas, m->v.corename, m->v.glibc);
        skip("batch-N outputs and training trajectories (sgemm bits)", why);
        return;
    }
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].klass, "blas")) compare_entry(fixtures, &m->e[i]);
    checkpoint_goldens(fixtures, tmp);
}

int main(int argc, char **argv) {
    manifest *m = calloc(1, sizeof *m);
    char path[1200], msg[4096] = "";
    versions v;
    if (!m) return 2;
    (void)inloop_set_num_threads(1);
    current_versions(&v);
    if (argc == 2 && !strcmp(argv[1], "--versions")) {
        printf("openblas %s\ncorename %s\nglibc %s\n", v.openblas, v.corename, v.glibc);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_checkpoints(argv[2]) || write_inits(argv[2]);
    const int blas_only = argc == 4 && !strcmp(argv[1], "--blas");
    const char *fixtures = argc > 1 + blas_only ? argv[1 + blas_only] : "Tests/fixtures";
    const char *tmp = argc > 2 + blas_only ? argv[2 + blas_only] : "/tmp";
    snprintf(path, sizeof path, "%s/golden/manifest.txt", fixtures);
    if (!read_manifest(path, m, msg, sizeof msg)) {
        check(0, "golden: manifest", msg);
    } else if (blas_only) {
        blas_part(fixtures, tmp, m);
    } else {
        const int fma = cpu_has_avx2_fma(), same_glibc = !strcmp(v.glibc, m->v.glibc);
        check_coverage(fixtures, m);
        for (int i = 0; i < m->n; i++) {
            const entry *e = &m->e[i];
            if (!strcmp(e->klass, "swift")) compare_entry(fixtures, e);
            else if (!strcmp(e->klass, "libm")) {
                if (fma && same_glibc) compare_entry(fixtures, e);
                else {
                    char why[1024];
                    snprintf(why, sizeof why, "libm activations: goldens for glibc %s on x86-64 with FMA; here glibc %s%s",
                             m->v.glibc, v.glibc, fma ? "" : ", no AVX2/FMA");
                    skip(e->file, why);
                }
            }
        }
        {
            char why[1024];
            snprintf(why, sizeof why, "He initialisation draws with libm (log1p, cos): goldens for glibc %s on x86-64 with FMA; here glibc %s%s",
                     m->v.glibc, v.glibc, fma ? "" : ", no AVX2/FMA");
            check_inits(fixtures, fma && same_glibc, why);
        }
        checkpoint_checks(fixtures, tmp);
        if (!cpu_has_avx2_fma()) skip("batch-N outputs and training trajectories (sgemm bits)",
                                      "no AVX2/FMA: OpenBLAS's Haswell kernels, which the goldens were written with, cannot run");
        else if (getenv("OPENBLAS_CORETYPE") && !strcmp(v.corename, "Haswell")) blas_part(fixtures, tmp, m);
        else run_haswell_child(fixtures, tmp);
    }
    printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
    free(m);
    return n_fail ? 1 : 0;
}
