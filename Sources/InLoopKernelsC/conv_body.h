/* Direct float32 convolution (NCHW, group 1, stride 1, dilation 1, any kH × kW and pads), once per
 * FMA level: included by kernels.c for the avx2 and avx512 copies only (ILK_SUFFIX names the copy; the
 * level's target attribute is pushed). Both copies do the same operations per output value in the
 * same order (8-lane registers at avx2, 16-lane at avx512), so they give the same bits; the baseline
 * level keeps im2col + sgemm (different rounding).
 *
 * Per image: the input is copied once into a zero-bordered buffer (xp, cin planes of hp × wp; rows
 * long enough that whole-register loads past the last output column read zeros, so the inner loop
 * has no bounds checks), then every output row is computed in tiles of ILK_CONV_CB output channels ×
 * ILK_CONV_NV registers of output columns (ILK_CONV_SPAN in all) held in registers: for each input
 * channel and tap, the tile's NV input vectors are loaded once and multiplied by each channel's weight, broadcast from the
 * original [cout][cin][kh][kw] layout (no re-laid-out copy: a trainer that changes the weights between
 * calls is always read afresh). Each output value is thus the sum over (ci, i, j) in that order, each
 * term fused (FMA) into a running sum that starts at 0; then + bias, then the activation, in the
 * store. The order does not depend on the batch, on the image's position in it or on the tile a value
 * falls in, so a row of batch N equals batch 1 bit for bit. */

/* Loops over the tile's channels and vectors are unrolled in full, so that the accumulators live in
 * registers (a partly unrolled loop leaves the array in memory: a store after every FMA). */
#define ILK_UNROLL _Pragma("clang loop unroll(full)")

/* The register: 8 lanes (YMM), or 16 (ZMM) where kernels.c defines ILK_CONV_ZMM (the AVX-512 copy:
 * half the FMA instructions, each with its weight broadcast from memory). Each lane is one output
 * column's sum in the same order either way, so both give the same bits. */
#if ILK_CONV_ZMM
#define ILK_CV __m512
#define ILK_CVL 16
#define ILK_CV_ZERO() _mm512_setzero_ps()
#define ILK_CV_LOADU(p) _mm512_loadu_ps(p)
#define ILK_CV_STOREU(p, v) _mm512_storeu_ps(p, v)
#define ILK_CV_SET1(s) _mm512_set1_ps(s)
#define ILK_CV_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define ILK_CV_ADD(a, b) _mm512_add_ps(a, b)
#else
#define ILK_CV __m256
#define ILK_CVL 8
#define ILK_CV_ZERO() _mm256_setzero_ps()
#define ILK_CV_LOADU(p) _mm256_loadu_ps(p)
#define ILK_CV_STOREU(p, v) _mm256_storeu_ps(p, v)
#define ILK_CV_SET1(s) _mm256_set1_ps(s)
#define ILK_CV_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define ILK_CV_ADD(a, b) _mm256_add_ps(a, b)
#endif

#ifndef ILK_CONV_CB
#define ILK_CONV_CB 6   /* output channels per register tile (12 YMM accumulators: 6 of 4/3/8 measured fastest) */
#endif
#define ILK_CONV_NV (ILK_CONV_SPAN / ILK_CVL)   /* registers of output columns per register tile */

/* act(v) for the activations of the direct path (identity, relu, relu-keep, leaky relu), lane-wise
 * with the scalar definitions' comparisons (bit-exact, NaN and -0 included). */
static inline ILK_CV ILK_SUFFIX(conv_act)(ILK_CV v, int act, ILK_CV alpha) {
    const ILK_CV zero = ILK_CV_ZERO();
    switch (act) {
#if ILK_CONV_ZMM
    case ILK_RELU:        /* v > 0 ? v : 0 */
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v);
    case ILK_RELU_KEEP:   /* v <= 0 ? 0 : v */
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);
    case ILK_LEAKY_RELU:  /* v >= 0 ? v : alpha*v */
        return _mm512_mask_mov_ps(_mm512_mul_ps(alpha, v), _mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ), v);
#else
    case ILK_RELU:        /* v > 0 ? v : 0 */
        return _mm256_and_ps(v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
    case ILK_RELU_KEEP:   /* v <= 0 ? 0 : v */
        return _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LE_OQ), v);
    case ILK_LEAKY_RELU:  /* v >= 0 ? v : alpha*v */
        return _mm256_blendv_ps(_mm256_mul_ps(alpha, v), v, _mm256_cmp_ps(v, zero, _CMP_GE_OQ));
#endif
    default: return v;
    }
}

/* One tile: output channels co0 ..< co0 + cb (cb <= ILK_CONV_CB, a constant once inlined), columns
 * ow0 ..< ow0 + 8·NV of output row `o` (only the first `valid` written). */
static inline __attribute__((always_inline)) void ILK_SUFFIX(conv_tile)(
    const int cb, const float *xp, int64_t hp, int64_t wp, int64_t cin, const float *wt, int64_t kh,
    int64_t kw, const float *bias, int64_t co0, int64_t o, int64_t ow0, int64_t valid, int act, float alpha,
    float *y, int64_t plane, int64_t ow) {
    ILK_CV acc[ILK_CONV_CB][ILK_CONV_NV];
    ILK_UNROLL for (int c = 0; c < cb; c++)
        ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) acc[c][v] = ILK_CV_ZERO();
    const int64_t kk = kh * kw;
    const float *wc[ILK_CONV_CB];
    ILK_UNROLL for (int c = 0; c < cb; c++) wc[c] = wt + (co0 + c) * cin * kk;
    for (int64_t ci = 0; ci < cin; ci++) {
        const float *xrow = xp + (ci * hp + o) * wp + ow0;
        for (int64_t i = 0; i < kh; i++) {
            for (int64_t j = 0; j < kw; j++) {
                ILK_CV in[ILK_CONV_NV];
                ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) in[v] = ILK_CV_LOADU(xrow + j + ILK_CVL * v);
                ILK_UNROLL for (int c = 0; c < cb; c++) {
                    ILK_CV w = ILK_CV_SET1(wc[c][j]);
                    ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) acc[c][v] = ILK_CV_FMADD(in[v], w, acc[c][v]);
                }
            }
            xrow += wp;
            ILK_UNROLL for (int c = 0; c < cb; c++) wc[c] += kw;
        }
    }
    const ILK_CV va = ILK_CV_SET1(alpha);
    ILK_UNROLL for (int c = 0; c < cb; c++) {
        ILK_CV b = ILK_CV_SET1(bias ? bias[co0 + c] : 0.0f);
        float *dst = y + (co0 + c) * plane + o * ow + ow0;
        ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) {
            ILK_CV r = acc[c][v];
            if (bias) r = ILK_CV_ADD(r, b);
            r = ILK_SUFFIX(conv_act)(r, act, va);
            int64_t n = valid - ILK_CVL * v;
            if (n >= ILK_CVL) {
                ILK_CV_STOREU(dst + ILK_CVL * v, r);
            } else if (n > 0) {
                float t[ILK_CVL];
                ILK_CV_STOREU(t, r);
                for (int64_t l = 0; l < n; l++) dst[ILK_CVL * v + l] = t[l];
            }
        }
    }
}

#define ILK_CONV_TILE(CB, KH, KW) \
    ILK_SUFFIX(conv_tile)(CB, xp, hp, wp, cin, wt, KH, KW, bias, co0, o, ow0, ow - ow0, act, alpha, yn, plane, ow)

/* Output rows r0 ..< r1 of every image (all rows: 0, oh); with pad == 0 the zero-bordered copy xp is
 * taken as already made (by a call with pad != 0 and r0 == r1 on the same single image): the parts of
 * one image split by rows share it. */
static void ILK_SUFFIX(conv2d_direct)(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w,
                                      const float *wt, const float *bias, int64_t cout, int64_t kh, int64_t kw,
                                      int64_t pt, int64_t pl, int64_t oh, int64_t ow, int act, float alpha,
                                      float *y, float *xp, int64_t r0, int64_t r1, int pad) {
    const int64_t span = ILK_CVL * ILK_CONV_NV;
    const int64_t hp = oh + kh - 1, wp = (ow + span - 1) / span * span + kw - 1;
    const int64_t plane = oh * ow;
    for (int64_t n = 0; n < batch; n++) {
        const float *xn = x + n * cin * h * w;
        float *yn = y + n * cout * plane;
        /* xp[ci][r][c] = x[ci][r - pt][c - pl], 0 outside the image. */
        for (int64_t ci = 0; ci < cin && pad; ci++) {
            for (int64_t r = 0; r < hp; r++) {
                float *dst = xp + (ci * hp + r) * wp;
                int64_t ir = r - pt;
                if (ir < 0 || ir >= h) {
                    for (int64_t c = 0; c < wp; c++) dst[c] = 0.0f;
                    continue;
                }
                const float *src = xn + (ci * h + ir) * w;
                int64_t c0 = pl < wp ? pl : wp;             /* first column holding input */
                int64_t c1 = pl + w < wp ? pl + w : wp;     /* past the last */
                for (int64_t c = 0; c < c0; c++) dst[c] = 0.0f;
                memcpy(dst + c0, src, (size_t)(c1 - c0) * sizeof(float));
                for (int64_t c = c1; c < wp; c++) dst[c] = 0.0f;
            }
        }
        for (int64_t o = r0; o < r1; o++) {
            int64_t co0 = 0;
            if (kh == 3 && kw == 3) {   /* the common case: taps unrolled (constants once inlined) */
                for (; co0 + ILK_CONV_CB <= cout; co0 += ILK_CONV_CB)
                    for (int64_t ow0 = 0; ow0 < ow; ow0 += span) ILK_CONV_TILE(ILK_CONV_CB, 3, 3);
            } else {
                for (; co0 + ILK_CONV_CB <= cout; co0 += ILK_CONV_CB)
                    for (int64_t ow0 = 0; ow0 < ow; ow0 += span) ILK_CONV_TILE(ILK_CONV_CB, kh, kw);
            }
            /* The last cout mod CB channels: a narrower tile (the same order per value). */
            for (int64_t ow0 = 0; ow0 < ow && co0 < cout; ow0 += span) {
                switch (cout - co0) {
#if ILK_CONV_CB > 7
                case 7: ILK_CONV_TILE(7, kh, kw); break;
#endif
#if ILK_CONV_CB > 6
                case 6: ILK_CONV_TILE(6, kh, kw); break;
#endif
#if ILK_CONV_CB > 5
                case 5: ILK_CONV_TILE(5, kh, kw); break;
#endif
#if ILK_CONV_CB > 4
                case 4: ILK_CONV_TILE(4, kh, kw); break;
#endif
#if ILK_CONV_CB > 3
                case 3: ILK_CONV_TILE(3, kh, kw); break;
#endif
#if ILK_CONV_CB > 2
                case 2: ILK_CONV_TILE(2, kh, kw); break;
#endif
                default: ILK_CONV_TILE(1, kh, kw); break;
                }
            }
        }
    }
}

#undef ILK_CONV_TILE
#undef ILK_UNROLL
#undef ILK_CONV_CB
#undef ILK_CONV_NV
#undef ILK_CV
#undef ILK_CVL
#undef ILK_CV_ZERO
#undef ILK_CV_LOADU
#undef ILK_CV_STOREU
#undef ILK_CV_SET1
#undef ILK_CV_FMADD
#undef ILK_CV_ADD
