/*
 * test_c.c - tests of the InLoop C API (Include/inloop.h) as a C program sees it.
 *
 *   gcc -std=c99 -Wall -Wextra -pedantic -Werror -IInclude Tests/c/test_c.c \
 *       -L.build/release -lInLoop -Wl,-rpath,$PWD/.build/release -lpthread -o build/test_c
 *   build/test_c Tests/fixtures [build/models]
 *
 * Prints "PASS <name>" or "FAIL <name>: <detail>" per check ("SKIP ..." lines are not counted) and
 * ends with "N passed, M failed"; the exit status is 1 when a check failed.
 *
 *  1. every <name>.io.bin reference in FIXTURES_DIR and MODELS_DIR: sizes, names, forward_f64/f32
 *     and the sized variants against the reference, batch 1, load_buffer == load (bitwise);
 *  2. no malloc/calloc/realloc/memalign/... in steady-state forward calls with 1 thread (with
 *     more threads OpenBLAS's threaded GEMM allocates; reported as INFO); the allocator is
 *     interposed below, and the counter must see the allocations of a model load, so it cannot
 *     pass by not counting;
 *  3. bad arguments and bad files give the documented status and a fresh, non-empty message,
 *     y untouched, *model NULL, never a crash;
 *  4. threads: per-thread last error, concurrent handles give bitwise-identical results, a shared
 *     handle gives only OK or BUSY.
 *
 * INLOOP_TEST_VERBOSE=1 also prints the message of every expected error under its PASS line.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inloop.h"

#include "alloc_count.h"

/* ------------------------------------------------------------------------------------------ */
/* Reporting                                                                                  */

static int n_pass, n_fail;

static void pass(const char *name) {
    printf("PASS %s\n", name);
    n_pass++;
}

static void failf(const char *name, const char *fmt, ...) {
    va_list ap;
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    n_fail++;
}

static void skipf(const char *fmt, ...) {
    va_list ap;
    printf("SKIP ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* Verbose mode: the message of an expected error, printed after its PASS line. */
static char pending_note[1024];

/* PASS when ok, otherwise FAIL with detail. */
static void report(const char *name, int ok, const char *detail) {
    if (ok) pass(name);
    else failf(name, "%s", detail);
    if (ok && pending_note[0]) printf("     %s\n", pending_note);
    pending_note[0] = '\0';
}

static const char *sname(int status) { return inloop_status_string(status); }

/* INLOOP_TEST_VERBOSE=1 in the environment: also print the messages of the expected errors. */
static int verbose;

static void note(const char *fmt, ...) {
    va_list ap;
    if (!verbose) return;
    printf("     ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                      */

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); fclose(f); return NULL; }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted base names (without ".io.bin") of the references in dir; NULL if dir cannot be opened. */
static char **list_refs(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (!d) return NULL;
    while ((e = readdir(d)) != NULL) {
        if (!has_suffix(e->d_name, ".io.bin")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            names = realloc(names, cap * sizeof *names);
        }
        names[n] = strdup(e->d_name);
        names[n][strlen(names[n]) - strlen(".io.bin")] = '\0';
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    if (!names) names = malloc(sizeof *names);
    *count = n;
    return names;
}

static void free_list(char **names, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* ------------------------------------------------------------------------------------------ */
/* Reference pairs (<name>.io.bin)                                                            */

typedef struct {
    int64_t n_in, n_out, batch;
    double *x; /* batch x n_in */
    double *y; /* batch x n_out */
    double ymax; /* max |y| */
} ref_t;

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

static int load_ref(const char *path, ref_t *r, char *err, size_t errlen) {
    size_t size = 0, i, nx, ny;
    unsigned char *b = read_file(path, &size);
    memset(r, 0, sizeof *r);
    if (!b) { snprintf(err, errlen, "cannot read %s", path); return 0; }
    if (size < 24) { snprintf(err, errlen, "%s: %zu bytes, too short", path, size); free(b); return 0; }
    r->n_in = (int64_t)le64(b);
    r->n_out = (int64_t)le64(b + 8);
    r->batch = (int64_t)le64(b + 16);
    if (r->n_in < 1 || r->n_out < 1 || r->batch < 1 || r->n_in > 1000000 || r->n_out > 1000000 || r->batch > 1000000 ||
        size != 24 + 8 * (size_t)(r->batch * (r->n_in + r->n_out))) {
        snprintf(err, errlen, "%s: bad header (n_in %lld, n_out %lld, batch %lld, %zu bytes)", path,
                 (long long)r->n_in, (long long)r->n_out, (long long)r->batch, size);
        free(b);
        return 0;
    }
    nx = (size_t)(r->batch * r->n_in);
    ny = (size_t)(r->batch * r->n_out);
    r->x = malloc(nx * sizeof(double));
    r->y = malloc(ny * sizeof(double));
    for (i = 0; i < nx; i++) { uint64_t v = le64(b + 24 + 8 * i); memcpy(&r->x[i], &v, 8); }
    for (i = 0; i < ny; i++) {
        uint64_t v = le64(b + 24 + 8 * (nx + i));
        double a;
        memcpy(&r->y[i], &v, 8);
        a = r->y[i] < 0 ? -r->y[i] : r->y[i];
        if (a > r->ymax) r->ymax = a;
    }
    free(b);
    return 1;
}

static void free_ref(ref_t *r) {
    free(r->x);
    free(r->y);
    memset(r, 0, sizeof *r);
}

/* got[i] within tol of ref[i] for all i (a NaN fails). */
static int close_d(const double *got, const double *ref, int64_t n, double tol, char *d, size_t dn) {
    int64_t i;
    for (i = 0; i < n; i++) {
        double diff = got[i] - ref[i];
        if (diff < 0) diff = -diff;
        if (!(diff <= tol)) {
            snprintf(d, dn, "element %lld: got %.9g, reference %.9g (|diff| %.3g > tol %.3g)", (long long)i, got[i],
                     ref[i], diff, tol);
            return 0;
        }
    }
    return 1;
}

static int close_f(const float *got, const double *ref, int64_t n, double tol, char *d, size_t dn) {
    int64_t i;
    for (i = 0; i < n; i++) {
        double diff = (double)got[i] - ref[i];
        if (diff < 0) diff = -diff;
        if (!(diff <= tol)) {
            snprintf(d, dn, "element %lld: got %.9g, reference %.9g (|diff| %.3g > tol %.3g)", (long long)i,
                     (double)got[i], ref[i], diff, tol);
            return 0;
        }
    }
    return 1;
}

/* |got[i] - ref[i]| <= 1e-6 + 1e-5 |ref[i]| for all i (a NaN fails); got is g64 or else g32. */
static int close_elementwise(const double *g64, const float *g32, const double *ref, int64_t n, char *d, size_t dn) {
    int64_t i;
    snprintf(d, dn, "ok");
    for (i = 0; i < n; i++) {
        double got = g64 ? g64[i] : (double)g32[i], diff = got - ref[i], tol = 1e-6 + 1e-5 * (ref[i] < 0 ? -ref[i] : ref[i]);
        if (diff < 0) diff = -diff;
        if (!(diff <= tol)) {
            snprintf(d, dn, "element %lld: got %.9g, reference %.9g (|diff| %.3g > %.3g)", (long long)i, got, ref[i], diff, tol);
            return 0;
        }
    }
    return 1;
}

#define TAIL 8               /* extra elements after y that must stay untouched */
static const double SENT_D = -987654.25;
static const float SENT_F = -987654.25f;

static double *sent_d(int64_t n) {
    double *p = malloc((size_t)(n + TAIL) * sizeof *p);
    int64_t i;
    for (i = 0; i < n + TAIL; i++) p[i] = SENT_D;
    return p;
}

static float *sent_f(int64_t n) {
    float *p = malloc((size_t)(n + TAIL) * sizeof *p);
    int64_t i;
    for (i = 0; i < n + TAIL; i++) p[i] = SENT_F;
    return p;
}

static int tail_ok_d(const double *y, int64_t n) {
    int i;
    for (i = 0; i < TAIL; i++) if (y[n + i] != SENT_D) return 0;
    return 1;
}

static int tail_ok_f(const float *y, int64_t n) {
    int i;
    for (i = 0; i < TAIL; i++) if (y[n + i] != SENT_F) return 0;
    return 1;
}

static char *join(const char *dir, const char *base, const char *ext) {
    size_t n = strlen(dir) + strlen(base) + strlen(ext) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s%s", dir, base, ext);
    return p;
}

/* The model a reference <base>.io.bin belongs to: <base> itself when it names a file with its
 * extension (e.g. "l96.onnx"), else the native <base>.safetensors. */
static char *model_file(const char *dir, const char *base) {
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".onnx") == 0) return join(dir, base, "");
    return join(dir, base, ".safetensors");
}

/* ------------------------------------------------------------------------------------------ */
/* 1. Reference checks                                                                        */

static void check_reference(const char *label, const char *dir, const char *base) {
    char name[512], d[1024], err[512];
    char *ref_path = join(dir, base, ".io.bin"), *model_path = model_file(dir, base);
    ref_t r;
    inloop_model *m = NULL, *mb = NULL;
    inloop_status st;
    int64_t nx, ny, i, n_in = -1, n_out = -1, n_inputs = -1, n_outputs = -1;
    double tol, *y64 = NULL, *y64s = NULL, *y64b = NULL, *x64copy = NULL;
    float *xf = NULL, *xfcopy = NULL, *y32 = NULL, *y32s = NULL, *y32b = NULL;
    const char *in_name = NULL, *out_name = NULL;
    unsigned char *bytes = NULL;
    size_t nbytes = 0;
    int ok, exact_x = 1;

#define NAME(what) (snprintf(name, sizeof name, "%s/%s/%s", label, base, what), name)

    if (!load_ref(ref_path, &r, err, sizeof err)) {
        failf(NAME("reference"), "%s", err);
        goto done;
    }
    nx = r.batch * r.n_in;
    ny = r.batch * r.n_out;
    tol = 1e-5 * r.ymax;

    st = inloop_model_load(model_path, &m);
    if (st != INLOOP_OK || !m) {
        failf(NAME("load"), "inloop_model_load(%s): %s; %s", model_path, sname(st), inloop_last_error());
        goto done;
    }
    /* loading is set-up, not a check: its failure above fails the test, its success is not counted */

    /* sizes */
    ok = inloop_model_num_inputs(m, &n_inputs) == INLOOP_OK && inloop_model_num_outputs(m, &n_outputs) == INLOOP_OK &&
         inloop_model_input_size(m, &n_in) == INLOOP_OK && inloop_model_output_size(m, &n_out) == INLOOP_OK;
    snprintf(d, sizeof d, "num_inputs %lld, num_outputs %lld, input_size %lld (reference %lld), output_size %lld (reference %lld); %s",
             (long long)n_inputs, (long long)n_outputs, (long long)n_in, (long long)r.n_in, (long long)n_out,
             (long long)r.n_out, ok ? "" : inloop_last_error());
    report(NAME("sizes"), ok && n_inputs == 1 && n_outputs == 1 && n_in == r.n_in && n_out == r.n_out, d);
    if (n_in != r.n_in || n_out != r.n_out) goto done; /* the forward checks would overrun */

    /* names */
    ok = inloop_model_input_name(m, 0, &in_name) == INLOOP_OK && inloop_model_output_name(m, 0, &out_name) == INLOOP_OK;
    snprintf(d, sizeof d, "input name %s%s%s, output name %s%s%s", in_name ? "'" : "", in_name ? in_name : "NULL",
             in_name ? "'" : "", out_name ? "'" : "", out_name ? out_name : "NULL", out_name ? "'" : "");
    report(NAME("names"), ok && in_name && out_name && in_name[0] && out_name[0], d);

    /* forward_f64 */
    x64copy = malloc((size_t)nx * sizeof *x64copy);
    memcpy(x64copy, r.x, (size_t)nx * sizeof *x64copy);
    y64 = sent_d(ny);
    st = inloop_model_forward_f64(m, r.x, r.batch, y64);
    if (st != INLOOP_OK) failf(NAME("forward_f64"), "%s; %s", sname(st), inloop_last_error());
    else if (!tail_ok_d(y64, ny)) failf(NAME("forward_f64"), "wrote past batch x n_out values of y");
    else if (memcmp(x64copy, r.x, (size_t)nx * sizeof *x64copy) != 0) failf(NAME("forward_f64"), "modified x");
    else if (close_d(y64, r.y, ny, tol, d, sizeof d)) pass(NAME("forward_f64"));
    else failf(NAME("forward_f64"), "%s", d);

    /* forward_f32 */
    xf = malloc((size_t)nx * sizeof *xf);
    xfcopy = malloc((size_t)nx * sizeof *xfcopy);
    for (i = 0; i < nx; i++) {
        xf[i] = (float)r.x[i];
        if ((double)xf[i] != r.x[i]) exact_x = 0;
    }
    memcpy(xfcopy, xf, (size_t)nx * sizeof *xf);
    y32 = sent_f(ny);
    st = inloop_model_forward_f32(m, xf, r.batch, y32);
    if (st != INLOOP_OK) failf(NAME("forward_f32"), "%s; %s", sname(st), inloop_last_error());
    else if (!tail_ok_f(y32, ny)) failf(NAME("forward_f32"), "wrote past batch x n_out values of y");
    else if (memcmp(xfcopy, xf, (size_t)nx * sizeof *xf) != 0) failf(NAME("forward_f32"), "modified x");
    else if (close_f(y32, r.y, ny, tol, d, sizeof d)) pass(NAME("forward_f32"));
    else failf(NAME("forward_f32"), "%s", d);

    /* the wide-range activation fixtures: element-wise, |y - ref| <= 1e-6 + 1e-5 |ref| (1e-5 max|y| is
     * 1e-3 absolute there, where many values are below 0.1), as the Fortran test does */
    if (strncmp(base, "wide_", 5) == 0) {
        report(NAME("forward_f64_elementwise"), st == INLOOP_OK && close_elementwise(y64, NULL, r.y, ny, d, sizeof d), d);
        report(NAME("forward_f32_elementwise"), st == INLOOP_OK && close_elementwise(NULL, y32, r.y, ny, d, sizeof d), d);
    }

    /* x exactly representable in float32 (the fixtures): both paths compute the same numbers */
    if (exact_x) {
        for (i = 0; i < ny; i++) if (y64[i] != (double)y32[i]) break;
        if (i == ny) pass(NAME("f64_equals_f32"));
        else failf(NAME("f64_equals_f32"), "element %lld: forward_f64 %.9g, forward_f32 %.9g", (long long)i, y64[i], (double)y32[i]);
    }

    /* sized variants: within tolerance and bitwise what the unsized calls gave */
    y64s = sent_d(ny);
    st = inloop_model_forward_sized_f64(m, r.x, r.n_in, r.batch, y64s, r.n_out);
    if (st != INLOOP_OK) failf(NAME("forward_sized_f64"), "%s; %s", sname(st), inloop_last_error());
    else if (!tail_ok_d(y64s, ny)) failf(NAME("forward_sized_f64"), "wrote past batch x n_out values of y");
    else if (!close_d(y64s, r.y, ny, tol, d, sizeof d)) failf(NAME("forward_sized_f64"), "%s", d);
    else if (memcmp(y64s, y64, (size_t)ny * sizeof *y64) != 0) failf(NAME("forward_sized_f64"), "differs from forward_f64");
    else pass(NAME("forward_sized_f64"));

    y32s = sent_f(ny);
    st = inloop_model_forward_sized_f32(m, xf, r.n_in, r.batch, y32s, r.n_out);
    if (st != INLOOP_OK) failf(NAME("forward_sized_f32"), "%s; %s", sname(st), inloop_last_error());
    else if (!tail_ok_f(y32s, ny)) failf(NAME("forward_sized_f32"), "wrote past batch x n_out values of y");
    else if (!close_f(y32s, r.y, ny, tol, d, sizeof d)) failf(NAME("forward_sized_f32"), "%s", d);
    else if (memcmp(y32s, y32, (size_t)ny * sizeof *y32) != 0) failf(NAME("forward_sized_f32"), "differs from forward_f32");
    else pass(NAME("forward_sized_f32"));

    /* batch 1: the first sample alone (the GEMV path) */
    {
        double *y1 = sent_d(r.n_out);
        float *y1f = sent_f(r.n_out);
        inloop_status s64 = inloop_model_forward_f64(m, r.x, 1, y1);
        inloop_status s32 = inloop_model_forward_f32(m, xf, 1, y1f);
        if (s64 != INLOOP_OK || s32 != INLOOP_OK)
            failf(NAME("batch1"), "f64 %s, f32 %s; %s", sname(s64), sname(s32), inloop_last_error());
        else if (!tail_ok_d(y1, r.n_out) || !tail_ok_f(y1f, r.n_out))
            failf(NAME("batch1"), "wrote past n_out values of y");
        else if (!close_d(y1, r.y, r.n_out, tol, d, sizeof d)) failf(NAME("batch1"), "f64: %s", d);
        else if (!close_f(y1f, r.y, r.n_out, tol, d, sizeof d)) failf(NAME("batch1"), "f32: %s", d);
        else pass(NAME("batch1"));
        free(y1);
        free(y1f);
    }

    /* load_buffer of the file bytes (scribbled over and freed before use) == load from the path */
    bytes = read_file(model_path, &nbytes);
    if (!bytes) {
        failf(NAME("load_buffer"), "cannot read %s", model_path);
        goto done;
    }
    st = inloop_model_load_buffer(bytes, (int64_t)nbytes, &mb);
    memset(bytes, 0xA5, nbytes);
    free(bytes);
    bytes = NULL;
    if (st != INLOOP_OK || !mb) {
        failf(NAME("load_buffer"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    n_in = n_out = -1;
    inloop_model_input_size(mb, &n_in);
    inloop_model_output_size(mb, &n_out);
    if (n_in != r.n_in || n_out != r.n_out) {
        failf(NAME("load_buffer"), "sizes %lld -> %lld, expected %lld -> %lld", (long long)n_in, (long long)n_out,
              (long long)r.n_in, (long long)r.n_out);
        goto done;
    }
    y64b = sent_d(ny);
    y32b = sent_f(ny);
    st = inloop_model_forward_f64(mb, r.x, r.batch, y64b);
    if (st == INLOOP_OK) st = inloop_model_forward_f32(mb, xf, r.batch, y32b);
    if (st != INLOOP_OK) failf(NAME("load_buffer"), "forward: %s; %s", sname(st), inloop_last_error());
    else if (memcmp(y64b, y64, (size_t)(ny + TAIL) * sizeof *y64) != 0) failf(NAME("load_buffer"), "forward_f64 differs from the model loaded from the path");
    else if (memcmp(y32b, y32, (size_t)(ny + TAIL) * sizeof *y32) != 0) failf(NAME("load_buffer"), "forward_f32 differs from the model loaded from the path");
    else pass(NAME("load_buffer"));

done:
    if (m) {
        st = inloop_model_free(m);
        if (st != INLOOP_OK) failf(NAME("free"), "%s; %s", sname(st), inloop_last_error());
    }
    if (mb) {
        st = inloop_model_free(mb);
        if (st != INLOOP_OK) failf(NAME("free_buffer_model"), "%s; %s", sname(st), inloop_last_error());
    }
    free(bytes);
    free(y64); free(y64s); free(y64b); free(x64copy);
    free(xf); free(xfcopy); free(y32); free(y32s); free(y32b);
    free_ref(&r);
    free(ref_path);
    free(model_path);
#undef NAME
}

/* ------------------------------------------------------------------------------------------ */
/* 2. No allocation in steady state                                                           */

static void check_counter(void) {
    void *volatile p;
    long a, f;
    count_start();
    p = malloc(24);
    free(p);
    a = count_stop(&f);
    if (a == 1 && f == 1) pass("alloc/counter_sees_malloc");
    else failf("alloc/counter_sees_malloc", "counted %ld allocations and %ld frees for one malloc/free", a, f);
}

#define ITERS 100

/* threads: the InLoop thread count to run with (restored afterwards) */
static void check_no_alloc(const char *label, const char *dir, const char *base, int32_t threads) {
    char name[512], d[1024], err[512], prefix[64];
    int32_t threads_before = inloop_get_num_threads();
    char *ref_path = join(dir, base, ".io.bin"), *model_path = model_file(dir, base);
    ref_t r;
    inloop_model *m = NULL;
    inloop_status st, bad;
    int64_t nx, ny, i, small;
    long a, f;
    int k;
    double tol, *y64 = NULL;
    float *xf = NULL, *y32 = NULL;

#define NAME(what) (snprintf(name, sizeof name, "%s/%s/alloc/%s/%s", label, base, prefix, what), name)
/* counts the allocations over ITERS calls of `call`; every call must return INLOOP_OK */
#define COUNT(what, call)                                                                                           \
    do {                                                                                                            \
        bad = INLOOP_OK;                                                                                            \
        count_start();                                                                                              \
        for (k = 0; k < ITERS; k++) { st = (call); if (st != INLOOP_OK) bad = st; }                                 \
        a = count_stop(&f);                                                                                         \
        if (bad != INLOOP_OK) failf(NAME(what), "a call returned %s; %s", sname(bad), inloop_last_error());         \
        else if (a != 0) failf(NAME(what), "%ld allocations (%ld frees) in %d calls", a, f, ITERS);                 \
        else pass(NAME(what));                                                                                      \
    } while (0)

    snprintf(prefix, sizeof prefix, "threads=%ld", (long)threads);
    if (!load_ref(ref_path, &r, err, sizeof err)) {
        failf(NAME("reference"), "%s", err);
        goto done;
    }
    if ((st = inloop_set_num_threads(threads)) != INLOOP_OK) {
        failf(NAME("set_num_threads"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    nx = r.batch * r.n_in;
    ny = r.batch * r.n_out;
    tol = 1e-5 * r.ymax;
    small = r.batch / 2 > 0 ? r.batch / 2 : 1;

    /* self-check of the counter: loading a model allocates */
    count_start();
    st = inloop_model_load(model_path, &m);
    a = count_stop(&f);
    if (st != INLOOP_OK) {
        failf(NAME("load"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    if (a > 0) pass(NAME("counter_sees_load"));
    else failf(NAME("counter_sees_load"), "no allocation counted during inloop_model_load: the interposition does not work");

    xf = malloc((size_t)nx * sizeof *xf);
    for (i = 0; i < nx; i++) xf[i] = (float)r.x[i];
    y32 = malloc((size_t)ny * sizeof *y32);
    y64 = malloc((size_t)ny * sizeof *y64);

    st = inloop_model_forward_f32(m, xf, r.batch, y32); /* warm-up */
    if (st != INLOOP_OK) {
        failf(NAME("warmup_f32"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    COUNT("forward_f32_batch", inloop_model_forward_f32(m, xf, r.batch, y32));
    if (!close_f(y32, r.y, ny, tol, d, sizeof d)) failf(NAME("forward_f32_result"), "%s", d);
    COUNT("forward_f32_smaller_batch", inloop_model_forward_f32(m, xf, small, y32));
    COUNT("forward_f32_batch1", inloop_model_forward_f32(m, xf, 1, y32));
    COUNT("forward_sized_f32", inloop_model_forward_sized_f32(m, xf, r.n_in, r.batch, y32, r.n_out));

    st = inloop_model_forward_f64(m, r.x, r.batch, y64); /* warm-up */
    if (st != INLOOP_OK) {
        failf(NAME("warmup_f64"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    COUNT("forward_f64_batch", inloop_model_forward_f64(m, r.x, r.batch, y64));
    if (!close_d(y64, r.y, ny, tol, d, sizeof d)) failf(NAME("forward_f64_result"), "%s", d);
    COUNT("forward_f64_smaller_batch", inloop_model_forward_f64(m, r.x, small, y64));
    COUNT("forward_sized_f64", inloop_model_forward_sized_f64(m, r.x, r.n_in, r.batch, y64, r.n_out));

done:
    inloop_set_num_threads(threads_before);
    if (m) inloop_model_free(m);
    free(xf); free(y32); free(y64);
    free_ref(&r);
    free(ref_path);
    free(model_path);
#undef COUNT
#undef NAME
}

/* ------------------------------------------------------------------------------------------ */
/* 3. Errors                                                                                  */

/* Before each failing call, "prime" sets a known different message, so a test can see that the
   call under test set its own message (a stale one would also be non-empty). */
static char prime_msg[512];
/* Counts (without judging) the allocations of steady-state forward calls with `threads` threads. */
static void report_threaded_allocs(const char *dir, const char *base, int32_t threads) {
    char path[4096];
    inloop_model *m = NULL;
    int64_t n_in = 0, n_out = 0;
    const int64_t batch = 64;
    float *x, *y;
    long a, f;
    int i;
    int32_t before = inloop_get_num_threads();
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, base);
    if (inloop_model_load(path, &m) != INLOOP_OK) return;
    (void)inloop_model_input_size(m, &n_in);
    (void)inloop_model_output_size(m, &n_out);
    x = calloc((size_t)(n_in * batch), sizeof *x);
    y = calloc((size_t)(n_out * batch), sizeof *y);
    (void)inloop_set_num_threads(threads);
    (void)inloop_model_forward_f32(m, x, batch, y);
    count_start();
    for (i = 0; i < 100; i++) (void)inloop_model_forward_f32(m, x, batch, y);
    a = count_stop(&f);
    printf("INFO %s: %ld allocations in 100 forward calls with %d threads (OpenBLAS's threaded GEMM; 0 with 1 thread)\n",
           base, a, (int)threads);
    (void)inloop_set_num_threads(before);
    free(x);
    free(y);
    (void)inloop_model_free(m);
}

static void prime(void) { (void)inloop_set_num_threads(-7777); }

#define BOGUS_HANDLE ((inloop_model *)(uintptr_t)0x1234)
#define SENTINEL_HANDLE ((inloop_model *)(uintptr_t)0x8)

/* status == want, and a fresh non-empty message containing s1 and s2 (if not NULL). */
static int err_ok(inloop_status got, inloop_status want, const char *s1, const char *s2, char *d, size_t dn) {
    const char *msg = inloop_last_error();
    if (got != want) {
        snprintf(d, dn, "got %s, expected %s (last error: \"%s\")", sname(got), sname(want), msg ? msg : "(NULL)");
        return 0;
    }
    if (!msg || !msg[0]) { snprintf(d, dn, "inloop_last_error() is empty"); return 0; }
    if (strcmp(msg, prime_msg) == 0) { snprintf(d, dn, "the call did not set inloop_last_error() (still \"%s\")", msg); return 0; }
    if (s1 && !strstr(msg, s1)) { snprintf(d, dn, "message \"%s\" does not mention \"%s\"", msg, s1); return 0; }
    if (s2 && !strstr(msg, s2)) { snprintf(d, dn, "message \"%s\" does not mention \"%s\"", msg, s2); return 0; }
    if (verbose) snprintf(pending_note, sizeof pending_note, "%s", msg);
    return 1;
}

#define EXPECT(name, want, call, s1, s2)                                                                            \
    do {                                                                                                            \
        inloop_status st_;                                                                                          \
        char d_[1024];                                                                                              \
        prime();                                                                                                    \
        st_ = (call);                                                                                               \
        report(name, err_ok(st_, want, s1, s2, d_, sizeof d_), d_);                                                 \
    } while (0)

static char tmpdir[256];

static void expect_load_path(const char *name, const char *path, inloop_status want, const char *s1, const char *s2) {
    inloop_model *m = SENTINEL_HANDLE;
    inloop_status st;
    char d[1024];
    int ok;
    prime();
    st = inloop_model_load(path, &m);
    ok = err_ok(st, want, s1, s2, d, sizeof d);
    if (ok && m != NULL) { ok = 0; snprintf(d, sizeof d, "*model not set to NULL on error"); }
    report(name, ok, d);
    if (m && m != SENTINEL_HANDLE) inloop_model_free(m);
}

static void expect_load_bytes(const char *name, const void *data, int64_t size, inloop_status want, const char *s1) {
    inloop_model *m = SENTINEL_HANDLE;
    inloop_status st;
    char d[1024];
    int ok;
    prime();
    st = inloop_model_load_buffer(data, size, &m);
    ok = err_ok(st, want, s1, NULL, d, sizeof d);
    if (ok && m != NULL) { ok = 0; snprintf(d, sizeof d, "*model not set to NULL on error"); }
    report(name, ok, d);
    if (m && m != SENTINEL_HANDLE) inloop_model_free(m);
}

/* Writes bytes to <tmpdir>/<file>, then expects `want` from load (message naming the file, and s1)
   and from load_buffer of the same bytes (message with s1). */
static void expect_bad_file(const char *name, const char *file, const void *data, size_t size, inloop_status want,
                            const char *s1) {
    char path[512], n[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    if (!write_file(path, data, size)) {
        failf(name, "cannot write %s", path);
        return;
    }
    snprintf(n, sizeof n, "%s/load", name);
    expect_load_path(n, path, want, file, s1);
    snprintf(n, sizeof n, "%s/load_buffer", name);
    /* a non-NULL pointer even for 0 bytes */
    expect_load_bytes(n, size ? data : (const void *)"", (int64_t)size, want, s1);
    unlink(path);
}

/* A model file: 8-byte length, header `{<tensors>"__metadata__":{"inloop":"<arch, quotes escaped>"}}`, data. */
static unsigned char *make_model(const char *tensors, const char *arch, const void *data, size_t ndata, size_t *size) {
    size_t cap = strlen(tensors) + 2 * strlen(arch) + 64, n = 0, i;
    char *h = malloc(cap);
    unsigned char *out;
    n += (size_t)sprintf(h + n, "{%s\"__metadata__\":{\"inloop\":\"", tensors);
    for (i = 0; arch[i]; i++) {
        if (arch[i] == '"' || arch[i] == '\\') h[n++] = '\\';
        h[n++] = arch[i];
    }
    n += (size_t)sprintf(h + n, "\"}}");
    out = malloc(8 + n + ndata);
    put_le64(out, (uint64_t)n);
    memcpy(out + 8, h, n);
    if (ndata) memcpy(out + 8 + n, data, ndata);
    free(h);
    *size = 8 + n + ndata;
    return out;
}

/* Loads bytes that must be a good model (the control of a hand-written bad file). */
static inloop_model *load_good_bytes(const char *name, const unsigned char *bytes, size_t size) {
    inloop_model *m = NULL;
    inloop_status st = inloop_model_load_buffer(bytes, (int64_t)size, &m);
    if (st == INLOOP_OK && m) pass(name);
    else failf(name, "%s; %s", sname(st), inloop_last_error());
    return st == INLOOP_OK ? m : NULL;
}

static void check_bad_files(const char *fixtures) {
    char path[512], *mlp_path = join(fixtures, "mlp_medium", ".safetensors");
    unsigned char buf[256], *b;
    size_t n, i;
    uint32_t lcg = 12345;
    inloop_model *m;
    static const float w22[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const char *dense_arch =
        "{\"format\":\"inloop\",\"version\":1,\"input\":{\"size\":2},\"output\":{\"size\":2},"
        "\"layers\":[{\"type\":\"dense\",\"in\":2,\"out\":2,\"weight\":\"wt9\"}]}";

    memset(buf, 0, sizeof buf);

    /* arguments */
    {
        inloop_model *mm = SENTINEL_HANDLE;
        inloop_status st;
        char d[1024];
        int ok;
        prime();
        st = inloop_model_load(NULL, &mm);
        ok = err_ok(st, INLOOP_ERR_NULL_POINTER, NULL, NULL, d, sizeof d);
        if (ok && mm != NULL) { ok = 0; snprintf(d, sizeof d, "*model not set to NULL on error"); }
        report("errors/load_null_path", ok, d);
    }
    EXPECT("errors/load_null_model_pointer", INLOOP_ERR_NULL_POINTER, inloop_model_load(mlp_path, NULL), NULL, NULL);
    {
        inloop_model *mm = SENTINEL_HANDLE;
        inloop_status st;
        char d[1024];
        int ok;
        prime();
        st = inloop_model_load_buffer(NULL, 100, &mm);
        ok = err_ok(st, INLOOP_ERR_NULL_POINTER, NULL, NULL, d, sizeof d);
        if (ok && mm != NULL) { ok = 0; snprintf(d, sizeof d, "*model not set to NULL on error"); }
        report("errors/load_buffer_null_data", ok, d);
    }
    expect_load_bytes("errors/load_buffer_negative_size", buf, -1, INLOOP_ERR_INVALID_ARGUMENT, "-1");
    EXPECT("errors/load_buffer_null_model_pointer", INLOOP_ERR_NULL_POINTER, inloop_model_load_buffer(buf, 8, NULL), NULL, NULL);

    /* files that are not there or not files */
    snprintf(path, sizeof path, "%s/no_such_model.safetensors", tmpdir);
    expect_load_path("errors/missing_file", path, INLOOP_ERR_IO, "no_such_model.safetensors", NULL);
    expect_load_path("errors/directory", tmpdir, INLOOP_ERR_IO, tmpdir, NULL);
    expect_load_path("errors/empty_path", "", INLOOP_ERR_IO, NULL, NULL);

    /* malformed files */
    expect_bad_file("errors/empty_file", "empty.safetensors", buf, 0, INLOOP_ERR_FORMAT, NULL);
    memcpy(buf, "\x05\x00\x00\x00\x00", 5);
    expect_bad_file("errors/5_byte_file", "five.safetensors", buf, 5, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 1000);
    memcpy(buf + 8, "{\"__metadata__\":{}}", 19);
    expect_bad_file("errors/header_longer_than_file", "long_header.safetensors", buf, 27, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 0);
    expect_bad_file("errors/header_length_0", "zero_header.safetensors", buf, 8, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, UINT64_MAX);
    memcpy(buf + 8, "{}", 2);
    expect_bad_file("errors/header_length_2^64-1", "huge_header.safetensors", buf, 10, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, UINT64_MAX - 6);  /* 8 + N wraps around to 1 */
    expect_bad_file("errors/header_length_wraps", "wrap_header.safetensors", buf, 10, INLOOP_ERR_FORMAT, NULL);
    for (i = 0; i < sizeof buf; i++) { lcg = lcg * 1103515245u + 12345u; buf[i] = (unsigned char)(lcg >> 16); }
    expect_bad_file("errors/garbage", "garbage.safetensors", buf, sizeof buf, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 64);  /* a plausible length over garbage */
    expect_bad_file("errors/garbage_header", "garbage2.safetensors", buf, sizeof buf, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 22);
    memcpy(buf + 8, "{\"__metadata__\": {\"in", 22);
    expect_bad_file("errors/invalid_json", "bad_json.safetensors", buf, 30, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 5);
    memcpy(buf + 8, "[1,2]", 5);
    expect_bad_file("errors/json_not_object", "json_array.safetensors", buf, 13, INLOOP_ERR_FORMAT, NULL);
    put_le64(buf, 2);
    memcpy(buf + 8, "{}", 2);
    expect_bad_file("errors/no_metadata", "no_metadata.safetensors", buf, 10, INLOOP_ERR_FORMAT, NULL);

    /* a real model cut in half */
    b = read_file(mlp_path, &n);
    if (!b) failf("errors/truncated_file", "cannot read %s", mlp_path);
    else {
        expect_bad_file("errors/truncated_file", "truncated.safetensors", b, n / 2, INLOOP_ERR_FORMAT, NULL);
        expect_bad_file("errors/last_byte_missing", "minus1.safetensors", b, n - 1, INLOOP_ERR_FORMAT, NULL);
        free(b);
    }

    /* hand-written architectures: controls that load, then one change each */
    b = make_model("", "{\"format\":\"inloop\",\"version\":1,\"input\":{\"size\":2},\"output\":{\"size\":2},"
                       "\"layers\":[{\"type\":\"activation\",\"activation\":\"relu\"}]}", NULL, 0, &n);
    m = load_good_bytes("errors/control_activation_model_loads", b, n);
    if (m) {
        double x[4] = {-1.5, 2.0, 3.0, -4.0}, y[4];
        inloop_status st = inloop_model_forward_f64(m, x, 2, y);
        if (st == INLOOP_OK && y[0] == 0.0 && y[1] == 2.0 && y[2] == 3.0 && y[3] == 0.0) pass("errors/control_activation_model_forward");
        else failf("errors/control_activation_model_forward", "%s, y = %g %g %g %g", sname(st), y[0], y[1], y[2], y[3]);
        inloop_model_free(m);
    }
    free(b);
    b = make_model("", "{\"format\":\"inloop\",\"version\":1,\"input\":{\"size\":2},\"output\":{\"size\":2},"
                       "\"layers\":[{\"type\":\"conv9d\"}]}", NULL, 0, &n);
    {
        /* exactly the header of the brief */
        static const char want[] = "{\"__metadata__\":{\"inloop\":\"{\\\"format\\\":\\\"inloop\\\",\\\"version\\\":1,"
                                   "\\\"input\\\":{\\\"size\\\":2},\\\"output\\\":{\\\"size\\\":2},\\\"layers\\\":"
                                   "[{\\\"type\\\":\\\"conv9d\\\"}]}\"}}";
        if (n != 8 + strlen(want) || memcmp(b + 8, want, strlen(want)) != 0) failf("errors/unknown_layer_file", "test bug: header differs");
    }
    expect_bad_file("errors/unknown_layer_type", "conv9d.safetensors", b, n, INLOOP_ERR_UNSUPPORTED, "conv9d");
    free(b);
    b = make_model("", "{\"format\":\"inloop\",\"version\":99,\"input\":{\"size\":2},\"output\":{\"size\":2},"
                       "\"layers\":[{\"type\":\"activation\",\"activation\":\"relu\"}]}", NULL, 0, &n);
    expect_bad_file("errors/version_99", "v99.safetensors", b, n, INLOOP_ERR_UNSUPPORTED, "version");
    free(b);
    b = make_model("", "{\"format\":\"inloop\",\"version\":1,\"input\":{\"size\":2},\"output\":{\"size\":2},"
                       "\"layers\":[{\"type\":\"activation\",\"activation\":\"swish9\"}]}", NULL, 0, &n);
    expect_bad_file("errors/unknown_activation", "swish9.safetensors", b, n, INLOOP_ERR_UNSUPPORTED, "swish9");
    free(b);

    b = make_model("\"wt9\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},", dense_arch, w22, 16, &n);
    m = load_good_bytes("errors/control_dense_model_loads", b, n);
    if (m) {
        double x[2] = {1.0, -1.0}, y[2];
        inloop_status st = inloop_model_forward_f64(m, x, 1, y);
        if (st == INLOOP_OK && y[0] == -1.0 && y[1] == -1.0) pass("errors/control_dense_model_forward");
        else failf("errors/control_dense_model_forward", "%s, y = %g %g (expected -1 -1)", sname(st), y[0], y[1]);
        inloop_model_free(m);
    }
    free(b);
    b = make_model("\"wt9\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]},", dense_arch, w22, 16, &n);
    expect_bad_file("errors/data_offsets_disagree_with_shape", "offsets.safetensors", b, n, INLOOP_ERR_FORMAT, "wt9");
    free(b);
    b = make_model("\"wt9\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]},", dense_arch, w22, 16, &n);
    expect_bad_file("errors/shape_disagrees_with_data_offsets", "shape.safetensors", b, n, INLOOP_ERR_FORMAT, "wt9");
    free(b);
    b = make_model("\"wt9\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,32]},", dense_arch, w22, 16, &n);
    expect_bad_file("errors/data_offsets_past_end", "past_end.safetensors", b, n, INLOOP_ERR_FORMAT, "wt9");
    free(b);
    b = make_model("\"wt9\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},", dense_arch, w22, 16, &n);
    expect_bad_file("errors/weight_shape_mismatch", "wshape.safetensors", b, n, INLOOP_ERR_FORMAT, NULL);
    free(b);
    b = make_model("", dense_arch, NULL, 0, &n);
    expect_bad_file("errors/missing_tensor", "missing_tensor.safetensors", b, n, INLOOP_ERR_FORMAT, "wt9");
    free(b);
    b = make_model("\"wt9\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]},", dense_arch, w22, 16, &n);
    {
        /* the docs: F32 or F64, "others are refused by name"; FORMAT or UNSUPPORTED are both fair */
        inloop_model *mm = NULL;
        inloop_status st;
        prime();
        st = inloop_model_load_buffer(b, (int64_t)n, &mm);
        if ((st == INLOOP_ERR_FORMAT || st == INLOOP_ERR_UNSUPPORTED) && strstr(inloop_last_error(), "I8")) {
            pass("errors/dtype_I8");
            note("%s: %s", sname(st), inloop_last_error());
        }
        else failf("errors/dtype_I8", "%s; \"%s\"", sname(st), inloop_last_error());
        if (mm) inloop_model_free(mm);
    }
    free(b);
    free(mlp_path);
}

/* float/double buffers for the forward argument checks */
#define EB 4    /* batch */
static float ex_f[EB * 64], ey_f[EB * 64];
static double ex_d[EB * 64], ey_d[EB * 64];

static void fill_y(void) {
    size_t i;
    for (i = 0; i < sizeof ey_f / sizeof ey_f[0]; i++) ey_f[i] = SENT_F;
    for (i = 0; i < sizeof ey_d / sizeof ey_d[0]; i++) ey_d[i] = SENT_D;
}

static int y_untouched(void) {
    size_t i;
    for (i = 0; i < sizeof ey_f / sizeof ey_f[0]; i++) if (ey_f[i] != SENT_F) return 0;
    for (i = 0; i < sizeof ey_d / sizeof ey_d[0]; i++) if (ey_d[i] != SENT_D) return 0;
    return 1;
}

/* A failing forward call: status, fresh message (with s1, s2) and y untouched. */
#define FWD_ERR(name, want, call, s1, s2)                                                                           \
    do {                                                                                                            \
        inloop_status st_;                                                                                          \
        char d_[1024];                                                                                              \
        int ok_;                                                                                                    \
        fill_y();                                                                                                   \
        prime();                                                                                                    \
        st_ = (call);                                                                                               \
        ok_ = err_ok(st_, want, s1, s2, d_, sizeof d_);                                                             \
        if (ok_ && !y_untouched()) { ok_ = 0; snprintf(d_, sizeof d_, "y was written by a failed call"); }          \
        report(name, ok_, d_);                                                                                      \
    } while (0)

static void check_forward_errors(const char *fixtures) {
    char *path = join(fixtures, "mlp_medium", ".safetensors"), *ref_path = join(fixtures, "mlp_medium", ".io.bin");
    char d[1024], err[512], num_in[32], num_out[32], bad_in[32], bad_out[32];
    ref_t r;
    inloop_model *m = NULL, *m2 = NULL;
    inloop_status st;
    int64_t nin, nout, i, n = -1;
    double tol;
    const char *s = NULL;

    if (!load_ref(ref_path, &r, err, sizeof err)) { failf("errors/forward_setup", "%s", err); goto done; }
    if ((st = inloop_model_load(path, &m)) != INLOOP_OK) {
        failf("errors/forward_setup", "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    nin = r.n_in;
    nout = r.n_out;
    if (nin > 64 || nout > 64 || r.batch < EB) { failf("errors/forward_setup", "mlp_medium larger than expected"); goto done; }
    tol = 1e-5 * r.ymax;
    for (i = 0; i < EB * nin; i++) { ex_d[i] = r.x[i]; ex_f[i] = (float)r.x[i]; }
    snprintf(num_in, sizeof num_in, "%lld", (long long)nin);
    snprintf(num_out, sizeof num_out, "%lld", (long long)nout);
    snprintf(bad_in, sizeof bad_in, "%lld", (long long)nin + 17);
    snprintf(bad_out, sizeof bad_out, "%lld", (long long)nout + 3);

    FWD_ERR("errors/forward_f32_batch_0", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_forward_f32(m, ex_f, 0, ey_f), NULL, NULL);
    FWD_ERR("errors/forward_f64_batch_0", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_forward_f64(m, ex_d, 0, ey_d), NULL, NULL);
    FWD_ERR("errors/forward_f32_batch_-3", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_forward_f32(m, ex_f, -3, ey_f), "-3", NULL);
    FWD_ERR("errors/forward_f64_batch_-3", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_forward_f64(m, ex_d, -3, ey_d), "-3", NULL);
    FWD_ERR("errors/forward_sized_f32_batch_0", INLOOP_ERR_INVALID_ARGUMENT,
            inloop_model_forward_sized_f32(m, ex_f, nin, 0, ey_f, nout), NULL, NULL);
    FWD_ERR("errors/forward_sized_f64_batch_-3", INLOOP_ERR_INVALID_ARGUMENT,
            inloop_model_forward_sized_f64(m, ex_d, nin, -3, ey_d, nout), NULL, NULL);
    FWD_ERR("errors/forward_f32_batch_huge", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_forward_f32(m, ex_f, INT64_MAX, ey_f), NULL, NULL);
    FWD_ERR("errors/forward_f32_null_x", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f32(m, NULL, EB, ey_f), NULL, NULL);
    FWD_ERR("errors/forward_f64_null_x", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f64(m, NULL, EB, ey_d), NULL, NULL);
    FWD_ERR("errors/forward_sized_f32_null_x", INLOOP_ERR_NULL_POINTER,
            inloop_model_forward_sized_f32(m, NULL, nin, EB, ey_f, nout), NULL, NULL);
    FWD_ERR("errors/forward_f32_null_y", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f32(m, ex_f, EB, NULL), NULL, NULL);
    FWD_ERR("errors/forward_f64_null_y", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f64(m, ex_d, EB, NULL), NULL, NULL);
    FWD_ERR("errors/forward_sized_f64_null_y", INLOOP_ERR_NULL_POINTER,
            inloop_model_forward_sized_f64(m, ex_d, nin, EB, NULL, nout), NULL, NULL);
    FWD_ERR("errors/forward_sized_f32_wrong_n_in", INLOOP_ERR_SIZE_MISMATCH,
            inloop_model_forward_sized_f32(m, ex_f, nin + 17, EB, ey_f, nout), bad_in, num_in);
    FWD_ERR("errors/forward_sized_f64_wrong_n_in", INLOOP_ERR_SIZE_MISMATCH,
            inloop_model_forward_sized_f64(m, ex_d, nin + 17, EB, ey_d, nout), bad_in, num_in);
    FWD_ERR("errors/forward_sized_f32_wrong_n_out", INLOOP_ERR_SIZE_MISMATCH,
            inloop_model_forward_sized_f32(m, ex_f, nin, EB, ey_f, nout + 3), bad_out, num_out);
    FWD_ERR("errors/forward_sized_f64_wrong_n_out", INLOOP_ERR_SIZE_MISMATCH,
            inloop_model_forward_sized_f64(m, ex_d, nin, EB, ey_d, nout + 3), bad_out, num_out);
    FWD_ERR("errors/forward_f32_null_handle", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f32(NULL, ex_f, EB, ey_f), NULL, NULL);
    FWD_ERR("errors/forward_f64_null_handle", INLOOP_ERR_NULL_POINTER, inloop_model_forward_f64(NULL, ex_d, EB, ey_d), NULL, NULL);
    FWD_ERR("errors/forward_f32_bogus_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_forward_f32(BOGUS_HANDLE, ex_f, EB, ey_f), NULL, NULL);
    FWD_ERR("errors/forward_sized_f64_bogus_handle", INLOOP_ERR_INVALID_HANDLE,
            inloop_model_forward_sized_f64(BOGUS_HANDLE, ex_d, nin, EB, ey_d, nout), NULL, NULL);

    /* overlapping x and y on the float32 path */
    {
        static float buf[EB * 64 * 2 + 64];
        float saved[sizeof buf / sizeof buf[0]];
        const char *what[3] = {"errors/forward_f32_overlap_y_inside_x", "errors/forward_f32_overlap_x_equals_y",
                               "errors/forward_f32_overlap_y_before_x"};
        float *xs[3], *ys[3];
        int k;
        xs[0] = buf; ys[0] = buf + 8;
        xs[1] = buf; ys[1] = buf;
        xs[2] = buf + 8; ys[2] = buf;
        for (i = 0; i < (int64_t)(sizeof buf / sizeof buf[0]); i++) buf[i] = (float)((i % 13) - 6) * 0.25f;
        for (k = 0; k < 3; k++) {
            memcpy(saved, buf, sizeof buf);
            prime();
            st = inloop_model_forward_f32(m, xs[k], EB, ys[k]);
            if (!err_ok(st, INLOOP_ERR_INVALID_ARGUMENT, NULL, NULL, d, sizeof d)) failf(what[k], "%s", d);
            else if (memcmp(saved, buf, sizeof buf) != 0) failf(what[k], "the array was written by a failed call");
            else pass(what[k]);
        }
        /* control: adjacent, not overlapping */
        st = inloop_model_forward_f32(m, buf, EB, buf + EB * nin);
        if (st == INLOOP_OK) pass("errors/forward_f32_adjacent_arrays_ok");
        else failf("errors/forward_f32_adjacent_arrays_ok", "%s; %s", sname(st), inloop_last_error());
    }

    /* in place on the float64 path */
    {
        double inplace[EB * 64], sep[EB * 64];
        int64_t big = nin > nout ? nin : nout;
        for (i = 0; i < EB * big; i++) inplace[i] = i < EB * nin ? r.x[i] : 0.0;
        st = inloop_model_forward_f64(m, r.x, EB, sep);
        if (st == INLOOP_OK) st = inloop_model_forward_f64(m, inplace, EB, inplace);
        if (st != INLOOP_OK) failf("errors/forward_f64_in_place", "%s; %s", sname(st), inloop_last_error());
        else if (!close_d(inplace, r.y, EB * nout, tol, d, sizeof d)) failf("errors/forward_f64_in_place", "%s", d);
        else if (memcmp(inplace, sep, (size_t)(EB * nout) * sizeof(double)) != 0)
            failf("errors/forward_f64_in_place", "differs from the result with separate arrays");
        else pass("errors/forward_f64_in_place");
    }

    /* check_finite */
    {
        int64_t bad = 2 * nin + 4; /* value 5 of sample 3 (1-based, as in Fortran x(5, 3)) */
        double saved = ex_d[bad];
        ex_d[bad] = NAN;
        ex_f[bad] = NAN;
        st = inloop_model_set_check_finite(m, 1);
        if (st != INLOOP_OK) failf("errors/set_check_finite", "%s; %s", sname(st), inloop_last_error());
        FWD_ERR("errors/check_finite_f64_nan", INLOOP_ERR_NONFINITE, inloop_model_forward_f64(m, ex_d, EB, ey_d), "value 5 of sample 3", NULL);
        FWD_ERR("errors/check_finite_f32_nan", INLOOP_ERR_NONFINITE, inloop_model_forward_f32(m, ex_f, EB, ey_f), "value 5 of sample 3", NULL);
        ex_f[bad] = INFINITY;
        FWD_ERR("errors/check_finite_f32_inf", INLOOP_ERR_NONFINITE, inloop_model_forward_f32(m, ex_f, EB, ey_f), "value 5 of sample 3", NULL);
        ex_f[bad] = NAN;
        /* control: finite input passes with checking on */
        st = inloop_model_forward_f64(m, r.x, EB, ey_d);
        if (st == INLOOP_OK) pass("errors/check_finite_on_finite_ok");
        else failf("errors/check_finite_on_finite_ok", "%s; %s", sname(st), inloop_last_error());
        st = inloop_model_set_check_finite(m, 0);
        if (st != INLOOP_OK) failf("errors/set_check_finite_off", "%s; %s", sname(st), inloop_last_error());
        st = inloop_model_forward_f64(m, ex_d, EB, ey_d);
        if (st == INLOOP_OK) pass("errors/check_finite_off_f64_ok");
        else failf("errors/check_finite_off_f64_ok", "%s; %s", sname(st), inloop_last_error());
        st = inloop_model_forward_f32(m, ex_f, EB, ey_f);
        if (st == INLOOP_OK) pass("errors/check_finite_off_f32_ok");
        else failf("errors/check_finite_off_f32_ok", "%s; %s", sname(st), inloop_last_error());
        ex_d[bad] = saved;
        ex_f[bad] = (float)saved;
        EXPECT("errors/set_check_finite_null_handle", INLOOP_ERR_NULL_POINTER, inloop_model_set_check_finite(NULL, 1), NULL, NULL);
        EXPECT("errors/set_check_finite_bogus_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_set_check_finite(BOGUS_HANDLE, 1), NULL, NULL);
    }

    /* queries */
    EXPECT("errors/input_name_index_1", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_input_name(m, 1, &s), NULL, NULL);
    EXPECT("errors/input_name_index_-1", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_input_name(m, -1, &s), NULL, NULL);
    EXPECT("errors/output_name_index_1", INLOOP_ERR_INVALID_ARGUMENT, inloop_model_output_name(m, 1, &s), NULL, NULL);
    EXPECT("errors/input_name_null_out", INLOOP_ERR_NULL_POINTER, inloop_model_input_name(m, 0, NULL), NULL, NULL);
    EXPECT("errors/input_size_null_out", INLOOP_ERR_NULL_POINTER, inloop_model_input_size(m, NULL), NULL, NULL);
    EXPECT("errors/output_size_null_out", INLOOP_ERR_NULL_POINTER, inloop_model_output_size(m, NULL), NULL, NULL);
    EXPECT("errors/input_size_null_handle", INLOOP_ERR_NULL_POINTER, inloop_model_input_size(NULL, &n), NULL, NULL);
    EXPECT("errors/input_size_bogus_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_input_size(BOGUS_HANDLE, &n), NULL, NULL);
    EXPECT("errors/num_inputs_bogus_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_num_inputs(BOGUS_HANDLE, &n), NULL, NULL);

    /* handles */
    st = inloop_model_free(NULL);
    if (st == INLOOP_OK) pass("errors/free_null_ok");
    else failf("errors/free_null_ok", "%s; %s", sname(st), inloop_last_error());
    EXPECT("errors/free_bogus_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_free(BOGUS_HANDLE), NULL, NULL);
    if ((st = inloop_model_load(path, &m2)) != INLOOP_OK) {
        failf("errors/freed_handle_setup", "%s; %s", sname(st), inloop_last_error());
    } else {
        st = inloop_model_free(m2);
        if (st == INLOOP_OK) pass("errors/free_ok");
        else failf("errors/free_ok", "%s; %s", sname(st), inloop_last_error());
        FWD_ERR("errors/forward_f32_freed_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_forward_f32(m2, ex_f, EB, ey_f), NULL, NULL);
        FWD_ERR("errors/forward_f64_freed_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_forward_f64(m2, ex_d, EB, ey_d), NULL, NULL);
        EXPECT("errors/input_size_freed_handle", INLOOP_ERR_INVALID_HANDLE, inloop_model_input_size(m2, &n), NULL, NULL);
        EXPECT("errors/double_free", INLOOP_ERR_INVALID_HANDLE, inloop_model_free(m2), NULL, NULL);
        /* a new model does not bring the freed handle back */
        {
            inloop_model *m3 = NULL;
            if (inloop_model_load(path, &m3) == INLOOP_OK) {
                if (m3 == m2) failf("errors/handle_not_reused", "a new load returned the freed handle value");
                else pass("errors/handle_not_reused");
                EXPECT("errors/freed_handle_after_new_load", INLOOP_ERR_INVALID_HANDLE, inloop_model_input_size(m2, &n), NULL, NULL);
                inloop_model_free(m3);
            }
        }
    }

    /* after all these failures the good handle still works */
    fill_y();
    st = inloop_model_forward_f64(m, r.x, EB, ey_d);
    if (st != INLOOP_OK) failf("errors/handle_survives_failed_calls", "%s; %s", sname(st), inloop_last_error());
    else if (!close_d(ey_d, r.y, EB * nout, tol, d, sizeof d)) failf("errors/handle_survives_failed_calls", "%s", d);
    else pass("errors/handle_survives_failed_calls");

    /* the last error stays after a successful call */
    prime();
    st = inloop_model_input_size(m, &n);
    if (st == INLOOP_OK && strcmp(inloop_last_error(), prime_msg) == 0) pass("errors/last_error_kept_after_success");
    else failf("errors/last_error_kept_after_success", "%s, last error now \"%s\"", sname(st), inloop_last_error());

done:
    if (m) inloop_model_free(m);
    free_ref(&r);
    free(path);
    free(ref_path);
}

static void check_library(void) {
    const char *v = inloop_version(), *seen[13];
    static const char *const names[13] = {
        "INLOOP_OK", "INLOOP_ERR_NULL_POINTER", "INLOOP_ERR_INVALID_ARGUMENT", "INLOOP_ERR_SIZE_MISMATCH",
        "INLOOP_ERR_INVALID_HANDLE", "INLOOP_ERR_IO", "INLOOP_ERR_FORMAT", "INLOOP_ERR_UNSUPPORTED",
        "INLOOP_ERR_NONFINITE", "INLOOP_ERR_OUT_OF_MEMORY", "INLOOP_ERR_BUSY", "INLOOP_ERR_INTERNAL",
        "INLOOP_ERR_MPI"};
    int a, b, c, k, j, ok = 1;
    char d[512] = "";
    int32_t before, now;
    inloop_status st;

    if (v && v[0] && sscanf(v, "%d.%d.%d", &a, &b, &c) == 3) pass("library/version");
    else failf("library/version", "inloop_version() = \"%s\", expected MAJOR.MINOR.PATCH", v ? v : "(NULL)");

    for (k = 0; k < 13 && ok; k++) {
        seen[k] = inloop_status_string(k);
        if (!seen[k] || !seen[k][0]) { ok = 0; snprintf(d, sizeof d, "code %d: empty", k); break; }
        if (strncmp(seen[k], names[k], strlen(names[k])) != 0 || seen[k][strlen(names[k])] != ':') {
            ok = 0;
            snprintf(d, sizeof d, "code %d: \"%s\" does not start with \"%s:\"", k, seen[k], names[k]);
        }
        for (j = 0; j < k && ok; j++)
            if (strcmp(seen[j], seen[k]) == 0) { ok = 0; snprintf(d, sizeof d, "codes %d and %d: same \"%s\"", j, k, seen[k]); }
        if (ok && strcmp(seen[k], "unknown InLoop status code") == 0) { ok = 0; snprintf(d, sizeof d, "code %d: unknown", k); }
    }
    report("library/status_strings", ok, d);
    ok = 1;
    {
        const int32_t unknown[4] = {13, -1, 99, INT32_MIN};
        for (k = 0; k < 4; k++) {
            const char *u = inloop_status_string(unknown[k]);
            if (!u || strcmp(u, "unknown InLoop status code") != 0) {
                ok = 0;
                snprintf(d, sizeof d, "code %ld: \"%s\"", (long)unknown[k], u ? u : "(NULL)");
            }
        }
    }
    report("library/status_string_unknown", ok, d);

    /* threads */
    before = inloop_get_num_threads();
    EXPECT("library/set_num_threads_0", INLOOP_ERR_INVALID_ARGUMENT, inloop_set_num_threads(0), "0", NULL);
    EXPECT("library/set_num_threads_-1", INLOOP_ERR_INVALID_ARGUMENT, inloop_set_num_threads(-1), NULL, NULL);
    now = inloop_get_num_threads();
    if (now == before) pass("library/set_num_threads_failure_keeps_count");
    else failf("library/set_num_threads_failure_keeps_count", "was %ld, now %ld", (long)before, (long)now);
    st = inloop_set_num_threads(1);
    now = inloop_get_num_threads();
    if (st == INLOOP_OK && now == 1) pass("library/set_num_threads_1");
    else failf("library/set_num_threads_1", "%s, get_num_threads() = %ld", sname(st), (long)now);
    st = inloop_set_num_threads(before >= 1 ? before : 1);
    now = inloop_get_num_threads();
    if (st == INLOOP_OK && now == (before >= 1 ? before : 1)) pass("library/set_num_threads_restore");
    else failf("library/set_num_threads_restore", "%s, get_num_threads() = %ld, wanted %ld", sname(st), (long)now, (long)before);
}

/* ------------------------------------------------------------------------------------------ */
/* 4. Threads                                                                                 */

typedef struct {
    char msg[512];
    int initial_empty;
    inloop_status st;
} err_thread_t;

static void *error_thread(void *arg) {
    err_thread_t *t = arg;
    inloop_model *m = NULL;
    const char *e = inloop_last_error();
    t->initial_empty = e != NULL && e[0] == '\0';
    t->st = inloop_model_load("/nonexistent-dir/inloop-thread-test.safetensors", &m);
    snprintf(t->msg, sizeof t->msg, "%s", inloop_last_error());
    return NULL;
}

static void check_thread_errors(void) {
    pthread_t th;
    err_thread_t t;
    memset(&t, 0, sizeof t);
    prime();
    if (pthread_create(&th, NULL, error_thread, &t) != 0) { failf("threads/last_error_per_thread", "pthread_create failed"); return; }
    pthread_join(th, NULL);
    if (!t.initial_empty) failf("threads/last_error_initially_empty", "a new thread sees a last error");
    else pass("threads/last_error_initially_empty");
    if (t.st != INLOOP_ERR_IO || !strstr(t.msg, "inloop-thread-test"))
        failf("threads/error_in_thread", "%s; \"%s\"", sname(t.st), t.msg);
    else pass("threads/error_in_thread");
    if (strcmp(inloop_last_error(), prime_msg) != 0)
        failf("threads/last_error_per_thread", "main thread's last error changed to \"%s\"", inloop_last_error());
    else pass("threads/last_error_per_thread");
}

typedef struct {
    const char *path;        /* load own handle from here, or */
    inloop_model *shared;    /* use this shared handle */
    const ref_t *r;
    const float *xf;
    const float *ref32;      /* single-threaded results */
    const double *ref64;
    int iters;
    pthread_barrier_t *barrier;
    /* results */
    inloop_status load_status;
    long ok_calls, busy_calls, other_calls, mismatches, busy_without_message;
    inloop_status other_status;
} worker_t;

static void *worker(void *arg) {
    worker_t *w = arg;
    inloop_model *m = w->shared;
    int64_t ny = w->r->batch * w->r->n_out;
    float *y32 = malloc((size_t)ny * sizeof *y32);
    double *y64 = malloc((size_t)ny * sizeof *y64);
    int it;
    if (!m) w->load_status = inloop_model_load(w->path, &m);
    pthread_barrier_wait(w->barrier);
    if (w->load_status == INLOOP_OK) {
        /* until iters calls succeeded; on a shared handle a BUSY call is retried (bounded) */
        long attempts = 0;
        for (it = 0; it < w->iters && attempts < 100000L * w->iters; attempts++) {
            inloop_status s = (it % 2) ? inloop_model_forward_f64(m, w->r->x, w->r->batch, y64)
                                       : inloop_model_forward_f32(m, w->xf, w->r->batch, y32);
            if (s == INLOOP_OK) {
                w->ok_calls++;
                if ((it % 2) ? memcmp(y64, w->ref64, (size_t)ny * sizeof *y64) != 0
                             : memcmp(y32, w->ref32, (size_t)ny * sizeof *y32) != 0)
                    w->mismatches++;
                it++;
            } else if (s == INLOOP_ERR_BUSY) {
                w->busy_calls++;
                if (!inloop_last_error()[0]) w->busy_without_message++;
                if (!w->shared) it++;
                else sched_yield();
            } else {
                w->other_calls++;
                w->other_status = s;
                it++;
            }
        }
    }
    if (!w->shared && m) inloop_model_free(m);
    free(y32);
    free(y64);
    return NULL;
}

static void check_threads_model(const char *label, const char *dir, const char *base, int iters) {
    char name[512], err[512];
    char *ref_path = join(dir, base, ".io.bin"), *model_path = model_file(dir, base);
    ref_t r;
    inloop_model *m = NULL;
    inloop_status st;
    int64_t i, nx, ny;
    float *xf = NULL, *ref32 = NULL;
    double *ref64 = NULL;
    pthread_t th[2];
    worker_t w[2];
    pthread_barrier_t barrier;
    int k, shared;

#define NAME(what) (snprintf(name, sizeof name, "%s/%s/%s", label, base, what), name)
    if (!load_ref(ref_path, &r, err, sizeof err)) { failf(NAME("threads/reference"), "%s", err); goto done; }
    if ((st = inloop_model_load(model_path, &m)) != INLOOP_OK) {
        failf(NAME("threads/load"), "%s; %s", sname(st), inloop_last_error());
        goto done;
    }
    nx = r.batch * r.n_in;
    ny = r.batch * r.n_out;
    xf = malloc((size_t)nx * sizeof *xf);
    for (i = 0; i < nx; i++) xf[i] = (float)r.x[i];
    ref32 = malloc((size_t)ny * sizeof *ref32);
    ref64 = malloc((size_t)ny * sizeof *ref64);
    if (inloop_model_forward_f32(m, xf, r.batch, ref32) != INLOOP_OK || inloop_model_forward_f64(m, r.x, r.batch, ref64) != INLOOP_OK) {
        failf(NAME("threads/reference_forward"), "%s", inloop_last_error());
        goto done;
    }

    for (shared = 0; shared < 2; shared++) {
        const char *what = shared ? "threads/shared_handle_ok_or_busy" : "threads/own_handles_bitwise_identical";
        pthread_barrier_init(&barrier, NULL, 2);
        for (k = 0; k < 2; k++) {
            memset(&w[k], 0, sizeof w[k]);
            w[k].path = model_path;
            w[k].shared = shared ? m : NULL;
            w[k].r = &r;
            w[k].xf = xf;
            w[k].ref32 = ref32;
            w[k].ref64 = ref64;
            w[k].iters = iters;
            w[k].barrier = &barrier;
        }
        for (k = 0; k < 2; k++)
            if (pthread_create(&th[k], NULL, worker, &w[k]) != 0) { failf(NAME(what), "pthread_create failed"); exit(1); }
        for (k = 0; k < 2; k++) pthread_join(th[k], NULL);
        pthread_barrier_destroy(&barrier);
        for (k = 0; k < 2; k++) {
            if (w[k].load_status != INLOOP_OK) { failf(NAME(what), "thread %d: load %s", k, sname(w[k].load_status)); break; }
            if (w[k].mismatches) { failf(NAME(what), "thread %d: %ld of %ld results differ from the single-threaded ones", k, w[k].mismatches, w[k].ok_calls); break; }
            if (w[k].other_calls) { failf(NAME(what), "thread %d: %ld calls returned %s", k, w[k].other_calls, sname(w[k].other_status)); break; }
            if (!shared && w[k].busy_calls) { failf(NAME(what), "thread %d: %ld calls returned BUSY on its own handle", k, w[k].busy_calls); break; }
            if (w[k].busy_without_message) { failf(NAME(what), "thread %d: BUSY without a message", k); break; }
            if (w[k].ok_calls != iters) { failf(NAME(what), "thread %d: only %ld calls succeeded", k, w[k].ok_calls); break; }
        }
        if (k == 2) pass(NAME(what));
        note("%d iterations per thread: thread 0 %ld OK, %ld BUSY; thread 1 %ld OK, %ld BUSY", iters, w[0].ok_calls,
             w[0].busy_calls, w[1].ok_calls, w[1].busy_calls);
    }
    /* the shared handle is usable after the contention */
    {
        float *y = malloc((size_t)ny * sizeof *y);
        st = inloop_model_forward_f32(m, xf, r.batch, y);
        if (st != INLOOP_OK) failf(NAME("threads/shared_handle_after"), "%s; %s", sname(st), inloop_last_error());
        else if (memcmp(y, ref32, (size_t)ny * sizeof *y) != 0) failf(NAME("threads/shared_handle_after"), "result differs");
        else pass(NAME("threads/shared_handle_after"));
        free(y);
    }
done:
    if (m) inloop_model_free(m);
    free(xf); free(ref32); free(ref64);
    free_ref(&r);
    free(ref_path);
    free(model_path);
#undef NAME
}

/* ------------------------------------------------------------------------------------------ */

static int file_exists(const char *dir, const char *base, const char *ext) {
    char *p = join(dir, base, ext);
    struct stat st;
    int ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

int main(int argc, char **argv) {
    const char *fixtures, *models = NULL;
    char **names;
    size_t n = 0, i;
    int have_models = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    verbose = getenv("INLOOP_TEST_VERBOSE") != NULL && getenv("INLOOP_TEST_VERBOSE")[0] != '\0';
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FIXTURES_DIR [MODELS_DIR]\n", argv[0]);
        return 2;
    }
    fixtures = argv[1];
    if (argc == 3) models = argv[2];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/inloop_test_c_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }

    /* the priming message used to see that each failing call sets its own */
    if (inloop_set_num_threads(-7777) != INLOOP_ERR_INVALID_ARGUMENT || !strstr(inloop_last_error(), "-7777")) {
        failf("library/prime_message", "inloop_set_num_threads(-7777) did not fail with a message naming -7777: \"%s\"", inloop_last_error());
    } else pass("library/prime_message");
    snprintf(prime_msg, sizeof prime_msg, "%s", inloop_last_error());

    check_library();
    if (ALLOC_COUNTING) check_counter();

    /* 1. references */
    names = list_refs(fixtures, &n);
    if (!names) failf("fixtures", "cannot open directory %s", fixtures);
    else if (n == 0) failf("fixtures", "no *.io.bin in %s", fixtures);
    for (i = 0; names && i < n; i++) check_reference("fixtures", fixtures, names[i]);
    if (names) free_list(names, n);
    {   /* an ONNX graph with strided convolutions around a tanh (float64 NumPy reference) */
        char *onnx_dir = join(fixtures, "onnx", "");
        check_reference("fixtures", onnx_dir, "strided_tanh.onnx");
        free(onnx_dir);
    }

    if (!models) skipf("models: no MODELS_DIR given");
    else {
        names = list_refs(models, &n);
        if (!names) skipf("models: directory %s not found", models);
        else if (n == 0) skipf("models: no *.io.bin in %s", models);
        else have_models = 1;
        for (i = 0; names && i < n; i++) check_reference("models", models, names[i]);
        if (names) free_list(names, n);
    }

    /* 2. allocations. InLoop's guarantee is checked with 1 thread (a typical MPI rank). With more
       threads, OpenBLAS's threaded GEMM driver (0.3.21 as packaged by Debian, MAX_THREADS=64) mallocs
       a job array on every call, which InLoop cannot prevent; that is reported, not counted. */

    if (!ALLOC_COUNTING) {
        skipf("alloc: a sanitizer owns malloc (built with INLOOP_SANITIZE); the ordinary run counts allocations");
    } else {
        check_no_alloc("fixtures", fixtures, "mlp_medium", 1);
        if (have_models && file_exists(models, "column_mlp", ".io.bin")) {
            check_no_alloc("models", models, "column_mlp", 1);
            report_threaded_allocs(models, "column_mlp", 2);
        } else skipf("models/column_mlp/alloc: not available");
        /* cnn2d: the direct convolution kernels (scratch sized at plan time, nothing per call) */
        if (have_models && file_exists(models, "cnn2d.onnx", ".io.bin")) {
            check_no_alloc("models", models, "cnn2d.onnx", 1);
            /* 2 threads: at batch 1 each image's convolution rows are split over the pool (Conv.RowsJob) */
            check_no_alloc("models", models, "cnn2d.onnx", 2);
        } else skipf("models/cnn2d/alloc: not available");
    }

    /* 3. errors */
    check_bad_files(fixtures);
    check_forward_errors(fixtures);

    /* 4. threads */
    check_thread_errors();
    check_threads_model("fixtures", fixtures, "mlp_medium", 400);
    if (have_models && file_exists(models, "column_mlp", ".io.bin")) check_threads_model("models", models, "column_mlp", 60);
    else skipf("models/column_mlp/threads: not available");

    rmdir(tmpdir);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail > 0 ? 1 : 0;
}
