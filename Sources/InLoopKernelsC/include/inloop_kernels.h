/* InLoop's hot float32 elementwise kernels, written once in plain C and compiled three times with
 * per-function targets (baseline x86-64, AVX2+FMA, AVX-512 F/DQ/BW/VL); each entry point calls the
 * instantiation of the level chosen once at run time (cpuid + xgetbv, so the OS must enable the
 * vector state), lowered by the environment variable INLOOP_CPU=baseline|avx2|avx512 or by
 * ilk_set_cpu_level. Every level gives the same bits: per-element kernels with the operations of the
 * Swift scalar definitions (Activation.apply) in the same order, no FMA contraction
 * (-ffp-contract=off), no reassociation. Internal to InLoopCore (prefix ilk_, not part of the C API).
 * Preconditions (checked by the Swift callers): n, rows, cols >= 0; arrays hold that many values;
 * x and y are identical or disjoint. No allocation, no errno. */
#ifndef INLOOP_KERNELS_H
#define INLOOP_KERNELS_H
#include <stdint.h>

/* Levels, lowest first. */
#define ILK_BASELINE 0
#define ILK_AVX2 1
#define ILK_AVX512 2

/* Activations of the kernels below (float32, inference numerics unless said otherwise). */
#define ILK_IDENTITY 0
#define ILK_RELU 1        /* v > 0 ? v : 0 (NaN -> 0) */
#define ILK_LEAKY_RELU 2  /* v >= 0 ? v : alpha*v */
#define ILK_TANH 3        /* Cephes tanh, Activation.tanh */
#define ILK_RELU_KEEP 4   /* v <= 0 ? 0 : v (NaN kept; differentiable numerics) */

/* The level the kernels run at (the first call fixes it from the CPU and INLOOP_CPU). */
int ilk_cpu_level(void);
/* The highest level this CPU and OS support (ignores INLOOP_CPU). */
int ilk_cpu_supported_level(void);
/* Sets the level, clamped to [ILK_BASELINE, ilk_cpu_supported_level()]; returns the level set. */
int ilk_set_cpu_level(int level);
/* "baseline", "avx2", "avx512" ("?" for anything else). */
const char *ilk_cpu_level_name(int level);

/* y[i] = act(x[i]). */
void ilk_activate(int act, const float *x, float *y, int64_t n, float alpha);
/* y[r*cols + c] = act(y[r*cols + c] + b[c]). */
void ilk_bias_activate_rows(int act, float *y, int64_t rows, int64_t cols, const float *b, float alpha);
/* y[i] = act(x[i] + bias). */
void ilk_bias_activate(int act, const float *x, float *y, int64_t n, float bias, float alpha);
/* out[i] (+)= d[i]*f'(z[i]) given a = f(z): ILK_RELU/ILK_RELU_KEEP (z > 0 ? d : 0),
 * ILK_LEAKY_RELU (z >= 0 ? d : alpha*d), ILK_TANH (d*(1 - a*a)). Other codes: nothing written. */
void ilk_activation_backward(int act, const float *z, const float *a, const float *d, float *out,
                             int64_t n, int accumulate, float alpha);
/* Max pooling over `planes` planes of inH × inW, 2×2 windows, stride 2, no padding, 2·outH <= inH,
 * 2·outW <= inW: y[p, oh, ow] = the Pool.maxStep fold (NaN wins) of its window, row by row. */
void ilk_max_pool_2x2(const float *x, float *y, int64_t planes, int64_t inH, int64_t inW, int64_t outH,
                      int64_t outW);
/* y[o] = dot(w + o*k, x) (+ b[o] when b is not NULL) for o < m, w row-major m × k, with Kernels.dot's
 * summation order (lanes j mod 8 in two 4-lane halves, the halves added, then the lanes pairwise,
 * then the tail). y disjoint from w, x and b. */
void ilk_small_gemv(const float *w, const float *x, const float *b, float *y, int64_t m, int64_t k);

#endif
