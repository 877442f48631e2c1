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
#define ILK_SIGMOID 5     /* Activation.cephesSigmoid (forward kernels only) */

/* The level the kernels run at (the first call fixes it from the CPU and INLOOP_CPU). */
int ilk_cpu_level(void);
/* The highest level this CPU and OS support (ignores INLOOP_CPU). */
int ilk_cpu_supported_level(void);
/* Sets the level, clamped to [ILK_BASELINE, ilk_cpu_supported_level()]; returns the level set. */
int ilk_set_cpu_level(int level);
/* "baseline", "avx2", "avx512" ("?" for anything else). */
const char *ilk_cpu_level_name(int level);

/* The thread pool's hand-off words (Engine.WorkerPool): *p stored with release / read with acquire
 * beside the pool's mutex, so that a waiting thread can spin a few microseconds before it parks. */
void ilk_word_store(int64_t *p, int64_t v);
/* Reads *p until it differs from `seen` or about `ns` nanoseconds have passed, pausing between reads;
 * returns the last value read. */
int64_t ilk_spin_while_equal(const int64_t *p, int64_t seen, int64_t ns);
/* Reads *p until it is 0 or about `ns` nanoseconds have passed; returns the last value read. */
int64_t ilk_spin_until_zero(const int64_t *p, int64_t ns);
/* Claims the next part of a job from *p = tag·2¹⁶ + next part: when the word still carries `tag` and
 * next < limit, increments it (compare-and-swap, acquire-release) and returns the part claimed; else
 * -1 (the job's parts are all claimed, or the word belongs to another job). 0 <= tag < 2⁴⁷,
 * limit < 2¹⁶. */
int64_t ilk_claim_part(int64_t *p, int64_t tag, int64_t limit);

/* The gate arithmetic of one LSTM/GRU step (RecurrentKernels, inference numerics: Cephes tanh and
 * sigmoid), in whole registers, each value with the Swift loops' operations in their order:
 * lstm_state:  c[r, j] = σ(z[r, 2h+j])·c0[r, j] + σ(z[r, j])·tanh(z[r, 3h+j])   (z: rows × 4h)
 * lstm_output: y[r, j] = σ(z[r, h+j])·tanh(c[r, j])
 * gru_cell:    n = tanh(g[r, 2h+j] + σ(g[r, h+j] + q[r, h+j])·q[r, 2h+j]),
 *              y[r, j] = n + σ(g[r, j] + q[r, j])·(h0[r, j] - n)              (g, q: rows × 3h)
 * Outputs disjoint from the inputs. */
void ilk_lstm_state(const float *z, const float *c0, float *c, int64_t rows, int64_t h);
void ilk_lstm_output(const float *z, const float *c, float *y, int64_t rows, int64_t h);
void ilk_gru_cell(const float *g, const float *q, const float *h0, float *y, int64_t rows, int64_t h);

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
/* Dense layers at batch >= 2 with the weights re-laid out once (panels of 16 output columns, each k
 * rows of 16 values, the last panel padded with zeros): ceil(m/16)·16·k values, written by
 * ilk_pack_dense_weights from w (row-major m × k). ilk_packed_gemm computes y = x·wᵀ (+ b), then
 * act(y) when act >= 0, with one FMA per term in the order of k: each element depends on its row of x
 * and column of w only (the same bits at any batch size, tile or level above baseline; not the bits of
 * ilk_small_gemm). Returns 0 and writes nothing at the baseline level (no FMA): the caller then uses
 * its unpacked path. y disjoint from p, x and b. */
void ilk_pack_dense_weights(const float *w, int64_t m, int64_t k, float *out);
int ilk_packed_gemm(const float *p, const float *x, const float *b, float *y, int64_t n, int64_t m, int64_t k,
                    int act, float alpha);
/* C (m × n, ldc) = op(A)·op(B) (+ C when accumulate), row-major, op(A) m × k (A stored k × m when
 * trans_a), op(B) k × n (B stored n × k when trans_b), copied into panels in the calling thread's
 * buffer (allocated when a call needs a larger one). The FMA kernel of ilk_packed_gemm: each element
 * one FMA per term in the order of k, starting from 0 or from C. Returns 0 and writes nothing at the
 * baseline level, for an empty product, or when the buffer cannot be had: the caller then uses sgemm.
 * C disjoint from A and B. */
int ilk_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
             const float *b, int64_t ldb, int accumulate, float *c, int64_t ldc);

/* Direct float32 convolution at the FMA levels (avx2, avx512: the same bits at both), NCHW, group 1,
 * stride 1, dilation 1: y[n, co, r, c] = act(sum over ci, i < kh, j < kw in that order, each term
 * fused into the running sum, of wt[co, ci, i, j]·x[n, ci, r + i - pt, c + j - pl] (0 outside the
 * image), + bias[co] when bias is not NULL) for r < oh, c < ow, where oh <= h + pt - kh + 1 + (pads
 * below) and ow likewise (the caller's geometry). act: ILK_IDENTITY, ILK_RELU, ILK_RELU_KEEP or
 * ILK_LEAKY_RELU. `work` holds the count below (scratch: a zero-bordered copy of one image). Every image is computed
 * the same way (a batch-N row equals batch 1, bit for bit). Returns 0 and does nothing at the
 * baseline level or for another activation (the caller then takes im2col + GEMM); 1 when done. */
int ilk_conv2d_direct(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w, const float *wt,
                      const float *bias, int64_t cout, int64_t kh, int64_t kw, int64_t pt, int64_t pl, int64_t oh,
                      int64_t ow, int act, float alpha, float *y, float *work);
/* ilk_conv2d_direct for output rows r0 ..< r1 only (of every image). pad != 0: first makes the
 * zero-bordered copy of each image in `work`; pad == 0 (batch 1 only): takes `work` as holding it
 * already, from a call with pad != 0 and r0 == r1, so that threads can share one image's rows. The
 * same values as the whole call, bit for bit. Returns 0 (nothing done) also for r0 < 0, r1 > oh,
 * r0 > r1 or pad == 0 with batch != 1. */
int ilk_conv2d_direct_rows(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w, const float *wt,
                           const float *bias, int64_t cout, int64_t kh, int64_t kw, int64_t pt, int64_t pl,
                           int64_t oh, int64_t ow, int act, float alpha, float *y, float *work, int64_t r0,
                           int64_t r1, int pad);
/* Output columns of one register tile: work = cin·(oh + kh - 1)·(ow rounded up to ILK_CONV_SPAN
 * + kw - 1) floats. */
#ifndef ILK_CONV_SPAN
#define ILK_CONV_SPAN 16
#endif

/* One Adam (decoupled = 0) or AdamW (decoupled = 1) step over n values, bit for bit OptimizerStep.apply:
 * d = g (+ wd*p when not decoupled); m = beta1*m + (1-beta1)*d; v = beta2*v + (1-beta2)*d*d;
 * p -= step*m / (sqrt(v)/bc2 + eps), p first scaled by 1 - lr*wd when decoupled. p, g, m, v must not
 * overlap. */
void ilk_adam(float *p, const float *g, float *m, float *v, int64_t n, float beta1, float beta2, float eps,
              float step, float bc2, float lr, float wd, int decoupled);

#endif
