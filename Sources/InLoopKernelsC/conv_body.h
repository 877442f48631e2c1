/* Direct float32 convolution (NCHW, group 1, stride 1, dilation 1, any kH × kW and pads), once per
 * FMA level: included by kernels.c for the avx2 and avx512 copies only (ILK_SUFFIX names the copy; the
 * level's target attribute is pushed). Both copies use the same 8-lane AVX instructions in the same
 * order, so they give the same bits; the baseline level keeps im2col + sgemm (different rounding).
 *
 * Per image: the input is copied once into a zero-bordered buffer (xp, cin planes of hp × wp; rows
 * long enough that whole 8-lane loads past the last output column read zeros, so the inner loop has
 * no bounds checks), then every output row is computed in tiles of ILK_CONV_CB output channels ×
 * ILK_CONV_NV vectors of 8 output columns held in registers: for each input channel and tap, the
 * tile's NV input vectors are loaded once and multiplied by each channel's weight, broadcast from the
 * original [cout][cin][kh][kw] layout (no re-laid-out copy: a trainer that changes the weights between
 * calls is always read afresh). Each output value is thus the sum over (ci, i, j) in that order, each
 * term fused (FMA) into a running sum that starts at 0; then + bias, then the activation, in the
 * store. The order does not depend on the batch, on the image's position in it or on the tile a value
 * falls in, so a row of batch N equals batch 1 bit for bit. */

/* Loops over the tile's channels and vectors are unrolled in full, so that the accumulators live in
 * registers (a partly unrolled loop leaves the array in memory: a store after every FMA). */
#define ILK_UNROLL _Pragma("clang loop unroll(full)")

#ifndef ILK_CONV_CB
#define ILK_CONV_CB 6   /* output channels per register tile (12 accumulators: 6 of 4/3/8 measured fastest) */
#endif
#ifndef ILK_CONV_NV
#define ILK_CONV_NV (ILK_CONV_SPAN / 8)   /* 8-lane vectors of output columns per register tile */
#endif

/* act(v) for the activations of the direct path (identity, relu, relu-keep, leaky relu), lane-wise
 * with the scalar definitions' comparisons (bit-exact, NaN and -0 included). */
static inline __m256 ILK_SUFFIX(conv_act)(__m256 v, int act, __m256 alpha) {
    const __m256 zero = _mm256_setzero_ps();
    switch (act) {
    case ILK_RELU:        /* v > 0 ? v : 0 */
        return _mm256_and_ps(v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
    case ILK_RELU_KEEP:   /* v <= 0 ? 0 : v */
        return _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LE_OQ), v);
    case ILK_LEAKY_RELU:  /* v >= 0 ? v : alpha*v */
        return _mm256_blendv_ps(_mm256_mul_ps(alpha, v), v, _mm256_cmp_ps(v, zero, _CMP_GE_OQ));
    default: return v;
    }
}

/* One tile: output channels co0 ..< co0 + cb (cb <= ILK_CONV_CB, a constant once inlined), columns
 * ow0 ..< ow0 + 8·NV of output row `o` (only the first `valid` written). */
static inline __attribute__((always_inline)) void ILK_SUFFIX(conv_tile)(
    const int cb, const float *xp, int64_t hp, int64_t wp, int64_t cin, const float *wt, int64_t kh,
    int64_t kw, const float *bias, int64_t co0, int64_t o, int64_t ow0, int64_t valid, int act, float alpha,
    float *y, int64_t plane, int64_t ow) {
    __m256 acc[ILK_CONV_CB][ILK_CONV_NV];
    ILK_UNROLL for (int c = 0; c < cb; c++)
        ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) acc[c][v] = _mm256_setzero_ps();
    const int64_t kk = kh * kw;
    const float *wc[ILK_CONV_CB];
    ILK_UNROLL for (int c = 0; c < cb; c++) wc[c] = wt + (co0 + c) * cin * kk;
    for (int64_t ci = 0; ci < cin; ci++) {
        const float *xrow = xp + (ci * hp + o) * wp + ow0;
        for (int64_t i = 0; i < kh; i++) {
            for (int64_t j = 0; j < kw; j++) {
                __m256 in[ILK_CONV_NV];
                ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) in[v] = _mm256_loadu_ps(xrow + j + 8 * v);
                ILK_UNROLL for (int c = 0; c < cb; c++) {
                    __m256 w = _mm256_broadcast_ss(wc[c] + j);
                    ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) acc[c][v] = _mm256_fmadd_ps(in[v], w, acc[c][v]);
                }
            }
            xrow += wp;
            ILK_UNROLL for (int c = 0; c < cb; c++) wc[c] += kw;
        }
    }
    const __m256 va = _mm256_set1_ps(alpha);
    ILK_UNROLL for (int c = 0; c < cb; c++) {
        __m256 b = _mm256_set1_ps(bias ? bias[co0 + c] : 0.0f);
        float *dst = y + (co0 + c) * plane + o * ow + ow0;
        ILK_UNROLL for (int v = 0; v < ILK_CONV_NV; v++) {
            __m256 r = acc[c][v];
            if (bias) r = _mm256_add_ps(r, b);
            r = ILK_SUFFIX(conv_act)(r, act, va);
            int64_t n = valid - 8 * v;
            if (n >= 8) {
                _mm256_storeu_ps(dst + 8 * v, r);
            } else if (n > 0) {
                float t[8];
                _mm256_storeu_ps(t, r);
                for (int64_t l = 0; l < n; l++) dst[8 * v + l] = t[l];
            }
        }
    }
}

#define ILK_CONV_TILE(CB, KH, KW) \
    ILK_SUFFIX(conv_tile)(CB, xp, hp, wp, cin, wt, KH, KW, bias, co0, o, ow0, ow - ow0, act, alpha, yn, plane, ow)

static void ILK_SUFFIX(conv2d_direct)(const float *x, int64_t batch, int64_t cin, int64_t h, int64_t w,
                                      const float *wt, const float *bias, int64_t cout, int64_t kh, int64_t kw,
                                      int64_t pt, int64_t pl, int64_t oh, int64_t ow, int act, float alpha,
                                      float *y, float *xp) {
    const int64_t span = 8 * ILK_CONV_NV;
    const int64_t hp = oh + kh - 1, wp = (ow + span - 1) / span * span + kw - 1;
    const int64_t plane = oh * ow;
    for (int64_t n = 0; n < batch; n++) {
        const float *xn = x + n * cin * h * w;
        float *yn = y + n * cout * plane;
        /* xp[ci][r][c] = x[ci][r - pt][c - pl], 0 outside the image. */
        for (int64_t ci = 0; ci < cin; ci++) {
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
        for (int64_t o = 0; o < oh; o++) {
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
