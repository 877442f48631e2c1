/* Run-time dispatch of the kernels in kernels_body.h: one copy per level, chosen once from cpuid and
 * xgetbv (the OS must save the YMM/ZMM state, not only the CPU support the instructions), lowered by
 * INLOOP_CPU. Built with -ffp-contract=off: a contracted a*b + c (FMA) would change bits between
 * levels. */
#include "inloop_kernels.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define ILK_X86 1
#include <cpuid.h>
#else
#define ILK_X86 0
#endif

/* GCC/clang vector extensions: lane-wise IEEE operations, lowered to the level's widest registers. */
typedef float ilk_v8 __attribute__((vector_size(32)));
typedef float ilk_v4 __attribute__((vector_size(16)));
/* Several vectors of a latency-bound loop in flight (same per-element operations). */
#define ILK_INTERLEAVE _Pragma("clang loop interleave_count(4)")

#define ILK_SUFFIX(name) name##_baseline
#include "kernels_body.h"
#undef ILK_SUFFIX

#if ILK_X86
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define ILK_SUFFIX(name) name##_avx2
#include "kernels_body.h"
#undef ILK_SUFFIX
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl"))), \
                             apply_to = function)
#define ILK_SUFFIX(name) name##_avx512
#include "kernels_body.h"
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
