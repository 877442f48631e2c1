/* Run-time dispatch of the kernels in kernels_body.h: one copy per level, chosen once from cpuid and
 * xgetbv (the OS must save the YMM/ZMM state, not only the CPU support the instructions), lowered by
 * INLOOP_CPU. Built with -ffp-contract=off: a contracted a*b + c (FMA) would change bits between
 * levels. */
#define _POSIX_C_SOURCE 200112L /* clock_gettime */
#include "inloop_kernels.h"
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#if defined(__x86_64__) && defined(__clang__)
#define ILK_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define ILK_X86 0
#endif

/* GCC/clang vector extensions: lane-wise IEEE operations, lowered to the level's widest registers. */
typedef float ilk_v8 __attribute__((vector_size(32)));
typedef float ilk_v4 __attribute__((vector_size(16)));
typedef float ilk_v16 __attribute__((vector_size(64)));
typedef uint32_t ilk_u4 __attribute__((vector_size(16)));
typedef uint32_t ilk_u8 __attribute__((vector_size(32)));
typedef uint32_t ilk_u16 __attribute__((vector_size(64)));
typedef int32_t ilk_i4 __attribute__((vector_size(16)));
typedef int32_t ilk_i8 __attribute__((vector_size(32)));
typedef int32_t ilk_i16 __attribute__((vector_size(64)));

#define ILK_SUFFIX(name) name##_baseline
#define ILK_TVF ilk_v4 /* the level's register of floats (tanh_vec) and of their bits */
#define ILK_TVU ilk_u4
#define ILK_TVI ilk_i4
#include "kernels_body.h"
#undef ILK_TVF
#undef ILK_TVU
#undef ILK_TVI
#undef ILK_SUFFIX

#if ILK_X86
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define ILK_SUFFIX(name) name##_avx2
#define ILK_PACKED_GEMM 1
#define ILK_PACKED_MR 6 /* 12 accumulators, 2 panel loads, 1 broadcast */
#define ILK_TVF ilk_v8
#define ILK_TVU ilk_u8
#define ILK_TVI ilk_i8
#include "kernels_body.h"
#undef ILK_TVF
#undef ILK_TVU
#undef ILK_TVI
#undef ILK_PACKED_MR
#include "conv_body.h"
#undef ILK_SUFFIX
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl"))), \
                             apply_to = function)
#define ILK_SUFFIX(name) name##_avx512
#define ILK_PACKED_MR 12 /* 12 ZMM accumulators of 16 columns */
#define ILK_PACKED_ZMM 1
#define ILK_TVF ilk_v16
#define ILK_TVU ilk_u16
#define ILK_TVI ilk_i16
#include "kernels_body.h"
#undef ILK_TVF
#undef ILK_TVU
#undef ILK_TVI
#undef ILK_PACKED_MR
#undef ILK_PACKED_ZMM
#undef ILK_PACKED_GEMM
#define ILK_CONV_ZMM 1
#define ILK_CONV_CB 8 /* 8 ZMM accumulators of 16 columns */
#include "conv_body.h"
#undef ILK_CONV_ZMM
#undef ILK_SUFFIX
#pragma clang attribute pop
#endif

static int detect(void) {
#if ILK_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return ILK_BASELINE;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return ILK_BASELINE;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6u) != 0x6u) return ILK_BASELINE;   /* XMM and YMM state enabled */
    if (__get_cpuid_max(0, 0) < 7) return ILK_BASELINE;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 5) & 1)) return ILK_BASELINE;        /* AVX2 */
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1); /* F DQ BW VL */
    if (avx512 && (xlo & 0xE6u) == 0xE6u) return ILK_AVX512;  /* + opmask, ZMM0-15 high, ZMM16-31 */
    return ILK_AVX2;
#else
    return ILK_BASELINE;
#endif
}

/* -1: not chosen yet. Races are benign: every thread computes the same value. */
static int supported_level = -1;
static int active_level = -1;

int ilk_cpu_supported_level(void) {
    int s = __atomic_load_n(&supported_level, __ATOMIC_RELAXED);
    if (s < 0) {
        s = detect();
        __atomic_store_n(&supported_level, s, __ATOMIC_RELAXED);
    }
    return s;
}

int ilk_set_cpu_level(int level) {
    int s = ilk_cpu_supported_level();
    int l = level < ILK_BASELINE ? ILK_BASELINE : level > s ? s : level;
    __atomic_store_n(&active_level, l, __ATOMIC_RELAXED);
    return l;
}

static int choose(void) {
    int l = ilk_cpu_supported_level();
    const char *e = getenv("INLOOP_CPU");
    if (e) {
        if (strcmp(e, "baseline") == 0) l = ILK_BASELINE;
        else if (strcmp(e, "avx2") == 0 && l > ILK_AVX2) l = ILK_AVX2;
        /* "avx512" or anything else: the supported level (the variable only ever lowers it). */
    }
    return ilk_set_cpu_level(l);
}

static inline int level(void) {
    int l = __atomic_load_n(&active_level, __ATOMIC_RELAXED);
    return l >= 0 ? l : choose();
}

int ilk_cpu_level(void) { return level(); }

const char *ilk_cpu_level_name(int l) {
    switch (l) {
    case ILK_BASELINE: return "baseline";
    case ILK_AVX2: return "avx2";
    case ILK_AVX512: return "avx512";
    default: return "?";
    }
}

#if ILK_X86
#define ILK_DISPATCH(name, ...)                                  \
    switch (level()) {                                           \
    case ILK_AVX512: name##_avx512(__VA_ARGS__); return;         \
    case ILK_AVX2: name##_avx2(__VA_ARGS__); return;             \
    default: name##_baseline(__VA_ARGS__); return;               \
    }
#else
#define ILK_DISPATCH(name, ...) name##_baseline(__VA_ARGS__);
#endif

void ilk_lstm_state(const float *z, const float *c0, float *c, int64_t rows, int64_t h) {
    ILK_DISPATCH(lstm_state, z, c0, c, rows, h)
}

void ilk_lstm_output(const float *z, const float *c, float *y, int64_t rows, int64_t h) {
    ILK_DISPATCH(lstm_output, z, c, y, rows, h)
}

void ilk_gru_cell(const float *g, const float *q, const float *h0, float *y, int64_t rows, int64_t h) {
    ILK_DISPATCH(gru_cell, g, q, h0, y, rows, h)
}

void ilk_activate(int act, const float *x, float *y, int64_t n, float alpha) {
    ILK_DISPATCH(bias_activate, act, x, y, n, 0.0f, alpha, 0)
}

void ilk_bias_activate(int act, const float *x, float *y, int64_t n, float bias, float alpha) {
    ILK_DISPATCH(bias_activate, act, x, y, n, bias, alpha, 1)
}

void ilk_bias_activate_rows(int act, float *y, int64_t rows, int64_t cols, const float *b, float alpha) {
    ILK_DISPATCH(bias_activate_rows, act, y, rows, cols, b, alpha)
}

void ilk_activation_backward(int act, const float *z, const float *a, const float *d, float *out,
                             int64_t n, int accumulate, float alpha) {
    ILK_DISPATCH(activation_backward, act, z, a, d, out, n, accumulate, alpha)
}

void ilk_max_pool_2x2(const float *x, float *y, int64_t planes, int64_t inH, int64_t inW, int64_t outH,
                      int64_t outW) {
    ILK_DISPATCH(max_pool_2x2, x, y, planes, inH, inW, outH, outW)
}

void ilk_small_gemv(const float *w, const float *x, const float *b, float *y, int64_t m, int64_t k) {
    ILK_DISPATCH(small_gemv, w, x, b, y, m, k)
}

/* w (m rows of k values, leading dimension ldw) as panels of 16 rows: out[(q·k + j)·16 + c] =
 * w[(16q + c)·ldw + j], zero past row m. */
static void pack_panels(const float *w, int64_t m, int64_t k, int64_t ldw, float *out) {
    for (int64_t q = 0; q < (m + 15) / 16; q++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t c = 0; c < 16; c++) {
                int64_t o = q * 16 + c;
                out[(q * k + j) * 16 + c] = o < m ? w[o * ldw + j] : 0.0f;
            }
}

void ilk_pack_dense_weights(const float *w, int64_t m, int64_t k, float *out) { pack_panels(w, m, k, k, out); }

int ilk_packed_gemm(const float *p, const float *x, const float *b, float *y, int64_t n, int64_t m, int64_t k,
                    int act, float alpha) {
#if ILK_X86
    switch (level()) {
    case ILK_AVX512: packed_gemm_avx512(p, x, b, y, n, m, k, act, alpha); return 1;
    case ILK_AVX2: packed_gemm_avx2(p, x, b, y, n, m, k, act, alpha); return 1;
    default: return 0;
    }
#else
    (void)p; (void)x; (void)b; (void)y; (void)n; (void)m; (void)k; (void)act; (void)alpha;
    return 0;
#endif
}

/* The packed copy of B, per thread: grown (never shrunk) when a call needs more, freed
 * when the thread ends. */
static pthread_key_t pack_key;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static int pack_key_ok;
struct pack_buffer { float *p; int64_t cap; };
static void pack_free(void *v) {
    struct pack_buffer *b = v;
    free(b->p);
    free(b);
}
static void pack_init(void) { pack_key_ok = pthread_key_create(&pack_key, pack_free) == 0; }
static float *pack_space(int64_t count) {
    pthread_once(&pack_once, pack_init);
    if (!pack_key_ok) return NULL;
    struct pack_buffer *b = pthread_getspecific(pack_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        if (pthread_setspecific(pack_key, b) != 0) { free(b); return NULL; }
    }
    if (b->cap < count) {
        if (count > INT64_MAX / 4) return NULL;
        float *p = malloc((size_t)count * sizeof(float));
        if (!p) return NULL;
        free(b->p);
        b->p = p;
        b->cap = count;
    }
    return b->p;
}

int ilk_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
             const float *b, int64_t ldb, int accumulate, float *c, int64_t ldc) {
#if ILK_X86
    int l = level();
    if (l < ILK_AVX2 || m < 1 || n < 1 || k < 1) return 0;
    int64_t xrs = trans_a ? 1 : lda, xts = trans_a ? lda : 1;
    /* B in panels either way: read in place, a row-major B's panel rows lie ldb apart, and at
     * ldb = 256 floats a 256-term chunk maps onto 4 of L1's 64 sets. */
    if ((n + 15) / 16 > INT64_MAX / 16 / k) return 0;
    float *p = pack_space((n + 15) / 16 * 16 * k);
    if (!p) return 0;
    if (trans_b) {
        pack_panels(b, n, k, ldb, p);
    } else {
        for (int64_t q = 0; q < (n + 15) / 16; q++) {
            int64_t cols = n - q * 16 < 16 ? n - q * 16 : 16;
            for (int64_t j = 0; j < k; j++) {
                float *d = p + (q * k + j) * 16;
                memcpy(d, b + j * ldb + q * 16, sizeof(float) * (size_t)cols);
                for (int64_t c2 = cols; c2 < 16; c2++) d[c2] = 0.0f;
            }
        }
    }
    int64_t pstride = 16 * k, ps = 16;
    int padded = 1;
    if (l == ILK_AVX512) fma_gemm_avx512(a, xrs, xts, m, p, pstride, ps, padded, NULL, c, ldc, n, k, accumulate, -1, 0);
    else fma_gemm_avx2(a, xrs, xts, m, p, pstride, ps, padded, NULL, c, ldc, n, k, accumulate, -1, 0);
    return 1;
#else
    (void)trans_a; (void)trans_b; (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb;
    (void)accumulate; (void)c; (void)ldc;
    return 0;
#endif
}

int ilk_conv2d_direct(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w, const float *wt,
                      const float *bias, int64_t cout, int64_t kh, int64_t kw, int64_t pt, int64_t pl, int64_t oh,
                      int64_t ow, int act, float alpha, float *y, float *work) {
    return ilk_conv2d_direct_rows(x, batch, cin, h, w, wt, bias, cout, kh, kw, pt, pl, oh, ow, act, alpha, y, work,
                                  0, oh, 1);
}

int ilk_conv2d_direct_rows(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w, const float *wt,
                           const float *bias, int64_t cout, int64_t kh, int64_t kw, int64_t pt, int64_t pl,
                           int64_t oh, int64_t ow, int act, float alpha, float *y, float *work, int64_t r0,
                           int64_t r1, int pad) {
    if (act != ILK_IDENTITY && act != ILK_RELU && act != ILK_RELU_KEEP && act != ILK_LEAKY_RELU) return 0;
    if (r0 < 0 || r1 > oh || r0 > r1 || (!pad && batch != 1)) return 0;
#if ILK_X86
    switch (level()) {
    case ILK_AVX512:
        conv2d_direct_avx512(x, batch, cin, h, w, wt, bias, cout, kh, kw, pt, pl, oh, ow, act, alpha, y, work, r0, r1, pad);
        return 1;
    case ILK_AVX2:
        conv2d_direct_avx2(x, batch, cin, h, w, wt, bias, cout, kh, kw, pt, pl, oh, ow, act, alpha, y, work, r0, r1, pad);
        return 1;
    default: return 0;
    }
#else
    (void)x; (void)batch; (void)cin; (void)h; (void)w; (void)wt; (void)bias; (void)cout; (void)kh; (void)kw;
    (void)pt; (void)pl; (void)oh; (void)ow; (void)alpha; (void)y; (void)work; (void)r0; (void)r1; (void)pad;
    return 0;
#endif
}

void ilk_adam(float *p, const float *g, float *m, float *v, int64_t n, float beta1, float beta2, float eps,
              float step, float bc2, float lr, float wd, int decoupled) {
    ILK_DISPATCH(adam, p, g, m, v, n, beta1, beta2, eps, step, bc2, lr, wd, decoupled)
}

void ilk_word_store(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static int64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Reads *p (acquire) until (v != seen) == differ, or about ns have passed; returns the last value. */
static int64_t spin(const int64_t *p, int64_t seen, int differ, int64_t ns) {
    int64_t v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    if ((v != seen) == differ || ns <= 0) return v;
    const int64_t end = monotonic_ns() + ns;
    for (;;) {
        for (int i = 0; i < 32; i++) {
#if ILK_X86
            _mm_pause();
#endif
            v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
            if ((v != seen) == differ) return v;
        }
        if (monotonic_ns() >= end) return v;
    }
}

int64_t ilk_spin_while_equal(const int64_t *p, int64_t seen, int64_t ns) { return spin(p, seen, 1, ns); }
int64_t ilk_spin_until_zero(const int64_t *p, int64_t ns) { return spin(p, 0, 0, ns); }

int64_t ilk_claim_part(int64_t *p, int64_t tag, int64_t limit) {
    int64_t v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((v >> 16) != tag || (v & 0xFFFF) >= limit) return -1;
        if (__atomic_compare_exchange_n(p, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return v & 0xFFFF;
    }
}
