/* The kernels, once. Included by kernels.c once per level with ILK_SUFFIX(name) naming the copy and
 * the level's target attribute pushed for every function. Keep every operation and its order as in
 * the Swift scalar definitions (Activation.tanh, Activation.apply, Activation.derivative). */

/* Activation.expCore on every lane: e^r of the Cody–Waite remainder, and n = round(v·log₂e) (the low
 * bits of t − magic), so that e^v = er·2ⁿ. */
static inline ILK_TVF ILK_SUFFIX(exp_core)(ILK_TVF v, ILK_TVI *n) {
    const float magic = 12582912.0f;
    ILK_TVF t = v * 1.44269504088896341f + magic;
    ILK_TVF nn = t - magic;
    ILK_TVF r = (v - nn * 0.693359375f) - nn * -2.12194440e-4f;
    ILK_TVF q = r * 1.9875691500e-4f + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    ILK_TVU ut;
    memcpy(&ut, &t, sizeof ut);
    *n = (ILK_TVI)(ut - 0x4B400000u);   /* 0x4B400000: the bits of magic */
    return q * (r * r) + r + 1.0f;
}

/* 2ⁿ lane-wise for -126 <= n <= 127, by its exponent bits (Activation.pow2; unsigned arithmetic, so a
 * NaN lane's meaningless n wraps instead of overflowing). */
static inline ILK_TVF ILK_SUFFIX(pow2)(ILK_TVI n) {
    ILK_TVU u = ((ILK_TVU)n + 127u) << 23;
    ILK_TVF f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Activation.tanh (Cephes) on every lane of the level's register (ILK_TVF: 4, 8 or 16 floats): its
 * operations in its order, lane by lane (-ffp-contract=off: no FMA), so the same bits. In whole
 * registers so that a short array (a 32-wide layer at batch 1) is vectorised too, which an
 * auto-vectorised loop of 4 interleaved registers (64 floats at AVX-512) left to its scalar remainder. */
static inline ILK_TVF ILK_SUFFIX(tanh_vec)(ILK_TVF x) {
    ILK_TVU ux, ua, ubig, usmall, ularge, ures;
    memcpy(&ux, &x, sizeof ux);
    ILK_TVU sign = ux & 0x80000000u;
    ua = ux & 0x7FFFFFFFu;
    ILK_TVF a;
    memcpy(&a, &ua, sizeof a);
    ILK_TVF z = a * a;
    ILK_TVF p = z * -5.70498872745e-3f + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    ILK_TVF small = p * z * a + a;
    /* min(a, 10) with NaN kept: a > 10 selects 10 */
    ILK_TVF ten = (ILK_TVF){0} + 10.0f;
    memcpy(&ubig, &ten, sizeof ubig);
    ILK_TVU big = (ILK_TVU)(a > 10.0f);
    ILK_TVU um = (ubig & big) | (ua & ~big);
    ILK_TVF am;
    memcpy(&am, &um, sizeof am);
    ILK_TVF v = am * 2.0f;
    ILK_TVI n;
    ILK_TVF er = ILK_SUFFIX(exp_core)(v, &n);
    ILK_TVF e = er * ILK_SUFFIX(pow2)(n);
    ILK_TVF large = 1.0f - 2.0f / (e + 1.0f);
    ILK_TVU sm = (ILK_TVU)(a < 0.625f);
    memcpy(&usmall, &small, sizeof usmall);
    memcpy(&ularge, &large, sizeof ularge);
    ures = ((usmall & sm) | (ularge & ~sm)) | sign;
    ILK_TVF res;
    memcpy(&res, &ures, sizeof res);
    return res;
}

/* Activation.cephesSigmoid on every lane: its operations in its order (-ffp-contract=off), so the
 * same bits: 1 or e over 1 + e, e = Cephes expf of -min(|x|, 104), 2ⁿ applied as two factors. */
static inline ILK_TVF ILK_SUFFIX(sigmoid_vec)(ILK_TVF x) {
    ILK_TVU ux, ua, ucap, ue, unum;
    memcpy(&ux, &x, sizeof ux);
    ua = ux & 0x7FFFFFFFu;
    ILK_TVF a;
    memcpy(&a, &ua, sizeof a);
    ILK_TVF cap = (ILK_TVF){0} + 104.0f;
    memcpy(&ucap, &cap, sizeof ucap);
    ILK_TVU big = (ILK_TVU)(a > 104.0f);   /* a > 104 ? 104 : a, NaN kept */
    ILK_TVU um = (ucap & big) | (ua & ~big);
    ILK_TVF am;
    memcpy(&am, &um, sizeof am);
    ILK_TVF v = -am;
    ILK_TVI n;
    ILK_TVF er = ILK_SUFFIX(exp_core)(v, &n);
    ILK_TVI n1 = n >> 1;
    ILK_TVF e = (er * ILK_SUFFIX(pow2)(n1)) * ILK_SUFFIX(pow2)(n - n1);
    ILK_TVF one = (ILK_TVF){0} + 1.0f;
    ILK_TVU pos = (ILK_TVU)(x >= 0.0f);
    ILK_TVU uone;
    memcpy(&uone, &one, sizeof uone);
    memcpy(&ue, &e, sizeof ue);
    unum = (uone & pos) | (ue & ~pos);
    ILK_TVF num;
    memcpy(&num, &unum, sizeof num);
    return num / (1.0f + e);
}

/* The level's register from n < width floats at p, zeros beyond; and its first n lanes stored. */
static inline ILK_TVF ILK_SUFFIX(load_part)(const float *p, int64_t n) {
    float t[sizeof(ILK_TVF) / sizeof(float)] = {0};
    memcpy(t, p, sizeof(float) * (size_t)n);
    ILK_TVF v;
    memcpy(&v, t, sizeof v);
    return v;
}
static inline void ILK_SUFFIX(store_part)(float *p, ILK_TVF v, int64_t n) {
    float t[sizeof(ILK_TVF) / sizeof(float)];
    memcpy(t, &v, sizeof v);
    memcpy(p, t, sizeof(float) * (size_t)n);
}
static inline ILK_TVF ILK_SUFFIX(load_full)(const float *p) {
    ILK_TVF v;
    memcpy(&v, p, sizeof v);
    return v;
}
/* n floats at p (n <= w, the register's width): a whole register, or a zero-padded part. */
#define ILK_LD(p, n) ((n) == w ? ILK_SUFFIX(load_full)(p) : ILK_SUFFIX(load_part)(p, n))
static inline void ILK_SUFFIX(store)(float *p, ILK_TVF v, int64_t n, int64_t w) {
    if (n == w) memcpy(p, &v, sizeof v);
    else ILK_SUFFIX(store_part)(p, v, n);
}

/* RecurrentKernels' gate arithmetic (inloop_kernels.h), row by row in whole registers. */
static void ILK_SUFFIX(lstm_state)(const float *z, const float *c0, float *c, int64_t rows, int64_t h) {
    const int64_t w = (int64_t)(sizeof(ILK_TVF) / sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * 4 * h, *cp = c0 + r * h;
        float *cr = c + r * h;
        for (int64_t j = 0; j < h; j += w) {
            int64_t n = h - j < w ? h - j : w;
            ILK_TVF t = ILK_SUFFIX(tanh_vec)(ILK_LD(zr + 3 * h + j, n));
            ILK_TVF f = ILK_SUFFIX(sigmoid_vec)(ILK_LD(zr + 2 * h + j, n));
            ILK_TVF i = ILK_SUFFIX(sigmoid_vec)(ILK_LD(zr + j, n));
            ILK_TVF v = f * ILK_LD(cp + j, n) + i * t;
            ILK_SUFFIX(store)(cr + j, v, n, w);
        }
    }
}

static void ILK_SUFFIX(lstm_output)(const float *z, const float *c, float *y, int64_t rows, int64_t h) {
    const int64_t w = (int64_t)(sizeof(ILK_TVF) / sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * 4 * h, *cr = c + r * h;
        float *yr = y + r * h;
        for (int64_t j = 0; j < h; j += w) {
            int64_t n = h - j < w ? h - j : w;
            ILK_TVF t = ILK_SUFFIX(tanh_vec)(ILK_LD(cr + j, n));
            ILK_TVF o = ILK_SUFFIX(sigmoid_vec)(ILK_LD(zr + h + j, n));
            ILK_SUFFIX(store)(yr + j, o * t, n, w);
        }
    }
}

static void ILK_SUFFIX(gru_cell)(const float *g, const float *q, const float *h0, float *y, int64_t rows, int64_t h) {
    const int64_t w = (int64_t)(sizeof(ILK_TVF) / sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const float *gr = g + r * 3 * h, *qr = q + r * 3 * h, *hp = h0 + r * h;
        float *yr = y + r * h;
        for (int64_t j = 0; j < h; j += w) {
            int64_t n = h - j < w ? h - j : w;
            ILK_TVF rg = ILK_SUFFIX(sigmoid_vec)(ILK_LD(gr + h + j, n) + ILK_LD(qr + h + j, n));
            ILK_TVF nv = ILK_SUFFIX(tanh_vec)(ILK_LD(gr + 2 * h + j, n) + rg * ILK_LD(qr + 2 * h + j, n));
            ILK_TVF zg = ILK_SUFFIX(sigmoid_vec)(ILK_LD(gr + j, n) + ILK_LD(qr + j, n));
            ILK_TVF v = nv + zg * (ILK_LD(hp + j, n) - nv);
            ILK_SUFFIX(store)(yr + j, v, n, w);
        }
    }
}

/* y[i] = f(x[i] (+ bias)), f = tanh (fn ILK_TANH) or σ (ILK_SIGMOID), in whole registers, the last (partial) one through a zero-padded copy.
 * x == y allowed (each register is read before it is written). */
static void ILK_SUFFIX(vec_map)(int fn, const float *x, float *y, int64_t n, float bias, int add) {
    const int64_t w = (int64_t)(sizeof(ILK_TVF) / sizeof(float));
    int64_t i = 0;
    for (; i + w <= n; i += w) {
        ILK_TVF v;
        memcpy(&v, x + i, sizeof v);
        if (add) v = v + bias;
        v = fn == ILK_TANH ? ILK_SUFFIX(tanh_vec)(v) : ILK_SUFFIX(sigmoid_vec)(v);
        memcpy(y + i, &v, sizeof v);
    }
    if (i < n) {
        float t[sizeof(ILK_TVF) / sizeof(float)] = {0};
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        ILK_TVF v;
        memcpy(&v, t, sizeof v);
        if (add) v = v + bias;
        v = fn == ILK_TANH ? ILK_SUFFIX(tanh_vec)(v) : ILK_SUFFIX(sigmoid_vec)(v);
        memcpy(t, &v, sizeof v);
        memcpy(y + i, t, sizeof(float) * (size_t)(n - i));
    }
}

/* y[i] = act(x[i] + bias); with add == 0 the bias is not added (activate: x + 0 would turn -0 into
 * +0 and is not the scalar definition). */
static void ILK_SUFFIX(bias_activate)(int act, const float *x, float *y, int64_t n, float bias, float alpha,
                                      int add) {
    if (!add) {
        /* The same loops without the addition; in place (y == x) or into a disjoint y, so that
         * neither needs a run-time overlap check (which an in-place call would fail, falling back
         * to scalar code). */
        switch (act) {
        case ILK_IDENTITY:
            if (x != y) { for (int64_t i = 0; i < n; i++) y[i] = x[i]; }
            return;
#define ILK_MAP_NOADD(EXPR)                                                                \
    do {                                                                                   \
        if (x == y) {                                                                      \
            for (int64_t i = 0; i < n; i++) { float v = y[i]; y[i] = (EXPR); }             \
        } else {                                                                           \
            const float *restrict xr = x; float *restrict yr = y;                          \
            for (int64_t i = 0; i < n; i++) { float v = xr[i]; yr[i] = (EXPR); }           \
        }                                                                                  \
    } while (0)
        case ILK_RELU: ILK_MAP_NOADD(v > 0.0f ? v : 0.0f); return;
        case ILK_RELU_KEEP: ILK_MAP_NOADD(v <= 0.0f ? 0.0f : v); return;
        case ILK_LEAKY_RELU: ILK_MAP_NOADD(v >= 0.0f ? v : alpha * v); return;
        case ILK_TANH: case ILK_SIGMOID: ILK_SUFFIX(vec_map)(act, x, y, n, 0.0f, 0); return;
        default: return;
        }
    }
    if (x == y) {
        /* In place: y[i] = act(y[i] + bias). */
        switch (act) {
        case ILK_IDENTITY: for (int64_t i = 0; i < n; i++) y[i] = y[i] + bias; return;
        case ILK_RELU: for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; y[i] = v > 0.0f ? v : 0.0f; } return;
        case ILK_RELU_KEEP: for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; y[i] = v <= 0.0f ? 0.0f : v; } return;
        case ILK_LEAKY_RELU: for (int64_t i = 0; i < n; i++) { float v = y[i] + bias; y[i] = v >= 0.0f ? v : alpha * v; } return;
        case ILK_TANH: case ILK_SIGMOID: ILK_SUFFIX(vec_map)(act, y, y, n, bias, 1); return;
        default: return;
        }
    }
    const float *restrict xr = x;
    float *restrict yr = y;
    switch (act) {
    case ILK_IDENTITY: for (int64_t i = 0; i < n; i++) yr[i] = xr[i] + bias; return;
    case ILK_RELU: for (int64_t i = 0; i < n; i++) { float v = xr[i] + bias; yr[i] = v > 0.0f ? v : 0.0f; } return;
    case ILK_RELU_KEEP: for (int64_t i = 0; i < n; i++) { float v = xr[i] + bias; yr[i] = v <= 0.0f ? 0.0f : v; } return;
    case ILK_LEAKY_RELU: for (int64_t i = 0; i < n; i++) { float v = xr[i] + bias; yr[i] = v >= 0.0f ? v : alpha * v; } return;
    case ILK_TANH: case ILK_SIGMOID: ILK_SUFFIX(vec_map)(act, x, y, n, bias, 1); return;
    default: return;
    }
}

/* y[r, c] = act(y[r, c] + b[c]). */
static void ILK_SUFFIX(bias_activate_rows)(int act, float *y, int64_t rows, int64_t cols, const float *b,
                                           float alpha) {
    for (int64_t r = 0; r < rows; r++) {
        float *restrict row = y + r * cols;
        const float *restrict bb = b;
        switch (act) {
        case ILK_IDENTITY: for (int64_t c = 0; c < cols; c++) row[c] = row[c] + bb[c]; break;
        case ILK_RELU: for (int64_t c = 0; c < cols; c++) { float v = row[c] + bb[c]; row[c] = v > 0.0f ? v : 0.0f; } break;
        case ILK_RELU_KEEP: for (int64_t c = 0; c < cols; c++) { float v = row[c] + bb[c]; row[c] = v <= 0.0f ? 0.0f : v; } break;
        case ILK_LEAKY_RELU: for (int64_t c = 0; c < cols; c++) { float v = row[c] + bb[c]; row[c] = v >= 0.0f ? v : alpha * v; } break;
        case ILK_TANH: case ILK_SIGMOID:
            for (int64_t c = 0; c < cols; c++) row[c] = row[c] + bb[c];
            ILK_SUFFIX(vec_map)(act, row, row, cols, 0.0f, 0);
            break;
        default: return;
        }
    }
}

/* out[i] (+)= d[i]·f'(z[i]), the loads outside any conditional (a select, not a branch). No restrict:
 * out may be d; the compiler checks overlap at run time. */
static void ILK_SUFFIX(activation_backward)(int act, const float *z, const float *a, const float *d, float *out,
                                            int64_t n, int accumulate, float alpha) {
#define ILK_WRITE(EXPR)                                                                    \
    do {                                                                                   \
        if (accumulate) { for (int64_t i = 0; i < n; i++) out[i] += (EXPR); }              \
        else { for (int64_t i = 0; i < n; i++) out[i] = (EXPR); }                          \
    } while (0)
    switch (act) {
    case ILK_RELU: case ILK_RELU_KEEP: ILK_WRITE(z[i] > 0.0f ? d[i] : 0.0f); return;
    case ILK_LEAKY_RELU: ILK_WRITE(z[i] >= 0.0f ? d[i] : alpha * d[i]); return;
    case ILK_TANH: ILK_WRITE(d[i] * (1.0f - a[i] * a[i])); return;
    default: return;
    }
#undef ILK_WRITE
}
#undef ILK_MAP_NOADD

/* Pool.maxStep: v if v > m or v is NaN, else m. */
static inline float ILK_SUFFIX(max_step)(float m, float v) { return ((v > m) | (v != v)) ? v : m; }

/* Max pooling, 2×2 windows, stride 2, no padding, every window inside the input (Pool.isPlain2x2):
 * y[p, oh, ow] = the maxStep fold of the window in the order (0,0), (0,1), (1,0), (1,1). */
static void ILK_SUFFIX(max_pool_2x2)(const float *x, float *y, int64_t planes, int64_t inH, int64_t inW,
                                     int64_t outH, int64_t outW) {
    for (int64_t pl = 0; pl < planes; pl++) {
        for (int64_t oh = 0; oh < outH; oh++) {
            const float *restrict r0 = x + pl * inH * inW + 2 * oh * inW;
            const float *restrict r1 = r0 + inW;
            float *restrict yr = y + (pl * outH + oh) * outW;
            for (int64_t ow = 0; ow < outW; ow++) {
                float m = ILK_SUFFIX(max_step)(r0[2 * ow], r0[2 * ow + 1]);
                m = ILK_SUFFIX(max_step)(m, r1[2 * ow]);
                yr[ow] = ILK_SUFFIX(max_step)(m, r1[2 * ow + 1]);
            }
        }
    }
}

/* Kernels.dot, operation for operation, for one row: lanes 0-3 of the 8-lane accumulator are the Swift
 * code's s0, lanes 4-7 its s1. */
static inline float ILK_SUFFIX(dot_row)(const float *w, const float *x, int64_t k) {
    ilk_v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        ilk_v8 a, b;
        memcpy(&a, w + j, sizeof a);
        memcpy(&b, x + j, sizeof b);
        acc += a * b;
    }
    ilk_v4 lo = __builtin_shufflevector(acc, acc, 0, 1, 2, 3);
    ilk_v4 hi = __builtin_shufflevector(acc, acc, 4, 5, 6, 7);
    if (j + 4 <= k) {
        ilk_v4 a, b;
        memcpy(&a, w + j, sizeof a);
        memcpy(&b, x + j, sizeof b);
        lo += a * b;
        j += 4;
    }
    ilk_v4 v = lo + hi;
    float s = (v[0] + v[1]) + (v[2] + v[3]);
    for (; j < k; j++) s += w[j] * x[j];
    return s;
}

/* [a0 + a1, a2 + a3, b0 + b1, b2 + b3]: the pairwise sums of two rows' lanes (haddps). */
static inline ilk_v4 ILK_SUFFIX(pair_sums)(ilk_v4 a, ilk_v4 b) {
    return __builtin_shufflevector(a, b, 0, 2, 4, 6) + __builtin_shufflevector(a, b, 1, 3, 5, 7);
}

/* The row sums of four 8-lane accumulators after the 4-wide step at j (when k - j >= 4): lane r is
 * (v[0] + v[1]) + (v[2] + v[3]) with v = lo + hi of row r, as dot_row computes it. */
static inline ilk_v4 ILK_SUFFIX(four_sums)(const ilk_v8 *a, const float *w0, int64_t k, const float *x,
                                           int64_t j) {
    ilk_v4 v[4];
    for (int r = 0; r < 4; r++) {
        ilk_v4 lo = __builtin_shufflevector(a[r], a[r], 0, 1, 2, 3);
        if (j + 4 <= k) {
            ilk_v4 wv, xv;
            memcpy(&wv, w0 + r * k + j, sizeof wv);
            memcpy(&xv, x + j, sizeof xv);
            lo += wv * xv;
        }
        v[r] = lo + __builtin_shufflevector(a[r], a[r], 4, 5, 6, 7);
    }
    return ILK_SUFFIX(pair_sums)(ILK_SUFFIX(pair_sums)(v[0], v[1]), ILK_SUFFIX(pair_sums)(v[2], v[3]));
}

/* y[0 .. rows-1] = dot(w0 + r*k, x) (+ b[r]) for a block of rows = 8 or 4 rows: their chains
 * interleaved, their final sums done four rows at a time (four_sums), then the scalar tail lane-wise;
 * each row's operations and their order are dot_row's. body: k rounded down to 8; after4: where the
 * scalar tail starts. */
static inline __attribute__((always_inline)) void ILK_SUFFIX(gemv_block)(const float *w0, const float *x, const float *b, float *y, int64_t k,
                                          int64_t body, int64_t after4, int rows) {
    ilk_v8 a[8];
    for (int r = 0; r < rows; r++) a[r] = (ilk_v8){0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; j < body; j += 8) {
        ilk_v8 xv;
        memcpy(&xv, x + j, sizeof xv);
        for (int r = 0; r < rows; r++) {
            ilk_v8 wv;
            memcpy(&wv, w0 + r * k + j, sizeof wv);
            a[r] += wv * xv;
        }
    }
    /* lanes 4-7 hold rows 4-7 of an 8-row block; in a 4-row block they stay 0 and are not stored */
    ilk_v4 s0 = ILK_SUFFIX(four_sums)(a, w0, k, x, body);
    ilk_v4 s1 = rows == 8 ? ILK_SUFFIX(four_sums)(a + 4, w0 + 4 * k, k, x, body) : (ilk_v4){0, 0, 0, 0};
    ilk_v8 s = __builtin_shufflevector(s0, s1, 0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t j = after4; j < k; j++) {
        ilk_v8 wj = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int r = 0; r < rows; r++) wj[r] = w0[r * k + j];
        s += wj * x[j];
    }
    if (b) {
        ilk_v8 bv = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(&bv, b, sizeof(float) * (size_t)rows);
        s += bv;
    }
    memcpy(y, &s, sizeof(float) * (size_t)rows);
}

/* y[o] = dot(w + o*k, x) (+ b[o]): blocks of eight rows, then of four, then single rows (dot_row);
 * every row gets the operations of Kernels.dot in its order, whichever block it falls in. */
static void ILK_SUFFIX(small_gemv)(const float *w, const float *x, const float *b, float *y, int64_t m,
                                   int64_t k) {
    int64_t o = 0;
    if (k < 4) {
        /* No vector step: each row is ((0 + w[o,0]·x[0]) + ...) (+ b[o]), as dot_row and the blocks
         * compute it (their lane sums are +0). k = 1 (a layer fed by one input, l96's first) is one
         * pass over contiguous rows, in registers; the blocks took 29 ns for 32 rows. */
        if (k == 1) {
            const float x0 = x[0];
            if (b) {
                for (; o < m; o++) y[o] = (0.0f + w[o] * x0) + b[o];
            } else {
                for (; o < m; o++) y[o] = 0.0f + w[o] * x0;
            }
            return;
        }
        for (; o < m; o++) {
            float t = 0.0f;
            for (int64_t j = 0; j < k; j++) t += w[o * k + j] * x[j];
            y[o] = b ? t + b[o] : t;
        }
        return;
    }
    int64_t body = k - k % 8, after4 = (k - body >= 4) ? body + 4 : body;
    for (; o + 8 <= m; o += 8) ILK_SUFFIX(gemv_block)(w + o * k, x, b ? b + o : NULL, y + o, k, body, after4, 8);
    for (; o + 4 <= m; o += 4) ILK_SUFFIX(gemv_block)(w + o * k, x, b ? b + o : NULL, y + o, k, body, after4, 4);
    for (; o < m; o++) {
        float t = ILK_SUFFIX(dot_row)(w + o * k, x, k);
        y[o] = b ? t + b[o] : t;
    }
}

#if ILK_PACKED_GEMM
/* The FMA GEMM of dense layers and of ilk_gemm: y[r, c] = Σ_j x[r, j]·B[j, c] over a panel of 16
 * columns of B, read at p + j·ps (pfull: all 16 values readable; otherwise only cols of them).
 * x[r, j] is read at x0[r·xrs + j·xts] and broadcast. A tile of xr rows over terms j0 <= j < j1:
 * 2·xr 8-lane (or xr 16-lane) accumulators that start from 0 or, with from_y, from y (an earlier chunk's sums, stored
 * exactly, or the values accumulated into); one FMA per term and lane in the order of j; the bias
 * after the last term (last). So every element's value depends only on its row of x, its column of
 * B, what it starts from and the CPU having FMA: not on the batch size, the tile, the blocking of k or
 * the level above baseline. */
/* The tile's registers: ILK_PH per 16 columns (2 YMM, or 1 ZMM at the AVX-512 level, which halves
 * the FMA instructions; the bits are the same: each lane is one column's FMA chain). */
#if ILK_PACKED_ZMM
typedef ilk_v16 ILK_SUFFIX(pacc);
#define ILK_PH 1
#else
typedef ilk_v8 ILK_SUFFIX(pacc);
#define ILK_PH 2
#endif
#define ILK_PL (16 / ILK_PH) /* lanes per register */
static inline __attribute__((always_inline)) void ILK_SUFFIX(fma_tile)(const float *p, int64_t ps, int pfull,
                                          const float *x0, int64_t xrs, int64_t xts, const float *b,
                                          float *y0, int64_t ldy, int64_t j0, int64_t j1, int from_y,
                                          int last, int64_t cols, int xr) {
    ILK_SUFFIX(pacc) a[ILK_PACKED_MR][ILK_PH];
    for (int i = 0; i < xr; i++) {
        if (!from_y) {
            for (int h = 0; h < ILK_PH; h++) memset(&a[i][h], 0, sizeof a[i][h]);
        } else if (cols == 16) {
            for (int h = 0; h < ILK_PH; h++) memcpy(&a[i][h], y0 + i * ldy + h * ILK_PL, sizeof a[i][h]);
        } else {
            float t[16] = {0};
            memcpy(t, y0 + i * ldy, sizeof(float) * (size_t)cols);
            for (int h = 0; h < ILK_PH; h++) memcpy(&a[i][h], t + h * ILK_PL, sizeof a[i][h]);
        }
    }
    for (int64_t j = j0; j < j1; j++) {
        ILK_SUFFIX(pacc) w[ILK_PH];
        if (pfull) {
            for (int h = 0; h < ILK_PH; h++) memcpy(&w[h], p + ps * j + h * ILK_PL, sizeof w[h]);
        } else {
            float t[16] = {0};
            memcpy(t, p + ps * j, sizeof(float) * (size_t)cols);
            for (int h = 0; h < ILK_PH; h++) memcpy(&w[h], t + h * ILK_PL, sizeof w[h]);
        }
        for (int i = 0; i < xr; i++) {
            float s = x0[i * xrs + j * xts];
            ILK_SUFFIX(pacc) xv;
            for (int l = 0; l < ILK_PL; l++) xv[l] = s;
            for (int h = 0; h < ILK_PH; h++) a[i][h] = __builtin_elementwise_fma(w[h], xv, a[i][h]);
        }
    }
    ILK_SUFFIX(pacc) bv[ILK_PH];
    int bias = last && b;
    if (bias) {
        for (int h = 0; h < ILK_PH; h++) memcpy(&bv[h], b + h * ILK_PL, sizeof bv[h]);
    }
    for (int i = 0; i < xr; i++) {
        if (bias) {
            for (int h = 0; h < ILK_PH; h++) a[i][h] += bv[h];
        }
        if (cols == 16) {
            for (int h = 0; h < ILK_PH; h++) memcpy(y0 + i * ldy + h * ILK_PL, &a[i][h], sizeof a[i][h]);
        } else {
            float t[16];
            for (int h = 0; h < ILK_PH; h++) memcpy(t + h * ILK_PL, &a[i][h], sizeof a[i][h]);
            for (int64_t c = 0; c < cols; c++) y0[i * ldy + c] = t[c];
        }
    }
}
#undef ILK_PH
#undef ILK_PL

/* y (n × m, leading dimension ldy) = x·B (+ b) (+ y when accumulate), B's panel q at
 * p + q·pstride, its term j at + j·ps (padded: the last panel is zero-padded to 16 readable
 * columns). Rows in blocks of ILK_PACKED_ROWS and terms in chunks of ILK_PACKED_KC: while the tiles
 * of a row block run over one panel, the panel's chunk stays in L1 and the block's rows of x in L2;
 * the activation (act >= 0) runs on the block while it is in cache. The bias is padded to whole
 * panels. */
#define ILK_PACKED_ROWS 48
#define ILK_PACKED_KC 256
static void ILK_SUFFIX(fma_gemm)(const float *x, int64_t xrs, int64_t xts, int64_t n, const float *p,
                                 int64_t pstride, int64_t ps, int padded, const float *b, float *y,
                                 int64_t ldy, int64_t m, int64_t k, int accumulate, int act, float alpha) {
    int64_t panels = (m + 15) / 16;
    for (int64_t r0 = 0; r0 < n; r0 += ILK_PACKED_ROWS) {
        int64_t rows = n - r0 < ILK_PACKED_ROWS ? n - r0 : ILK_PACKED_ROWS;
        const float *xb = x + r0 * xrs;
        float *yb = y + r0 * ldy;
        for (int64_t j0 = 0; j0 < k; j0 += ILK_PACKED_KC) {
            int64_t j1 = k - j0 < ILK_PACKED_KC ? k : j0 + ILK_PACKED_KC;
            int last = j1 == k, from_y = accumulate || j0 > 0;
            for (int64_t q = 0; q < panels; q++) {
                const float *pq = p + q * pstride, *bq = b ? b + q * 16 : NULL;
                int64_t cols = m - q * 16 < 16 ? m - q * 16 : 16;
                int pfull = padded || cols == 16;
                float padb[16];
                if (bq && cols < 16) {
                    memset(padb, 0, sizeof padb);
                    memcpy(padb, bq, sizeof(float) * (size_t)cols);
                    bq = padb;
                }
                int64_t i = 0;
                for (; i + ILK_PACKED_MR <= rows; i += ILK_PACKED_MR)
                    ILK_SUFFIX(fma_tile)(pq, ps, pfull, xb + i * xrs, xrs, xts, bq, yb + i * ldy + q * 16, ldy, j0, j1,
                                         from_y, last, cols, ILK_PACKED_MR);
                const float *xt = xb + i * xrs;
                float *yt = yb + i * ldy + q * 16;
                switch (rows - i) {  /* the last rows in one tile, each size its own copy */
#define ILK_TAIL(R) case R: ILK_SUFFIX(fma_tile)(pq, ps, pfull, xt, xrs, xts, bq, yt, ldy, j0, j1, from_y, last, cols, R); break;
                ILK_TAIL(1) ILK_TAIL(2) ILK_TAIL(3) ILK_TAIL(4) ILK_TAIL(5)
#if ILK_PACKED_MR > 6
                ILK_TAIL(6) ILK_TAIL(7) ILK_TAIL(8) ILK_TAIL(9) ILK_TAIL(10) ILK_TAIL(11)
#endif
#undef ILK_TAIL
                default: break;
                }
            }
        }
        if (act >= 0 && ldy == m) {
            ILK_SUFFIX(bias_activate)(act, yb, yb, rows * m, 0.0f, alpha, 0);
        } else if (act >= 0) {
            for (int64_t r = 0; r < rows; r++) ILK_SUFFIX(bias_activate)(act, yb + r * ldy, yb + r * ldy, m, 0.0f, alpha, 0);
        }
    }
}

/* m == 1 (one output, a regression head such as l96's last layer): the 16-column panel would run 16
 * FMA lanes for one column. Rows in the lanes instead (ILK_TVF: 8 or 16 rows, x gathered), each lane
 * one row's FMA chain over j from 0 in order, then + bias: fma_tile's operations for that element, so
 * the same bits; the last rows one at a time with the same chain. */
static void ILK_SUFFIX(fma_rows1)(const float *p, const float *x, const float *b, float *y, int64_t n, int64_t k) {
    enum { L = (int)(sizeof(ILK_TVF) / sizeof(float)) };
    int64_t r = 0;
    for (; r + L <= n; r += L) {
        const float *xr = x + r * k;
        ILK_TVF acc;
        memset(&acc, 0, sizeof acc);
        for (int64_t j = 0; j < k; j++) {
            ILK_TVF xv, wv;
            const float w = p[16 * j];
            for (int l = 0; l < L; l++) { xv[l] = xr[l * k + j]; wv[l] = w; }
            acc = __builtin_elementwise_fma(wv, xv, acc);
        }
        if (b) acc = acc + b[0];
        memcpy(y + r, &acc, sizeof acc);
    }
    for (; r < n; r++) {
        float s = 0.0f;
        for (int64_t j = 0; j < k; j++) s = __builtin_fmaf(p[16 * j], x[r * k + j], s);
        y[r] = b ? s + b[0] : s;
    }
}

static void ILK_SUFFIX(packed_gemm)(const float *p, const float *x, const float *b, float *y, int64_t n,
                                    int64_t m, int64_t k, int act, float alpha) {
    if (m == 1) {
        ILK_SUFFIX(fma_rows1)(p, x, b, y, n, k);
        if (act >= 0) ILK_SUFFIX(bias_activate)(act, y, y, n, 0.0f, alpha, 0);
        return;
    }
    ILK_SUFFIX(fma_gemm)(x, k, 1, n, p, 16 * k, 16, 1, b, y, m, m, k, 0, act, alpha);
}
#endif

/* One Adam (decoupled == 0) or AdamW (decoupled != 0) update of n values, OptimizerStep.apply's loop
 * operation for operation (its order, no contraction): d = g (+ wd·p); m = β1·m + (1 − β1)·d;
 * v = β2·v + (1 − β2)·d·d; p −= step·m / (√v / bc2 + eps), after p ·= 1 − lr·wd when decoupled.
 * One pass over the four arrays (they must not overlap). */
/* One value's moments and update, after d (the gradient with any coupled decay) and pi (p, decayed
 * when decoupled): the part both forms share. */
static inline __attribute__((always_inline)) float ILK_SUFFIX(adam1)(float pi, float d, float *restrict m,
                                                                    float *restrict v, float beta1, float omb1,
                                                                    float beta2, float omb2, float eps, float step,
                                                                    float bc2) {
    float mi = beta1 * *m + omb1 * d;
    float vi = beta2 * *v + omb2 * d * d;
    *m = mi;
    *v = vi;
    float denom = __builtin_sqrtf(vi) / bc2 + eps;
    return pi - step * mi / denom;
}

static void ILK_SUFFIX(adam)(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                             int64_t n, float beta1, float beta2, float eps, float step, float bc2, float lr,
                             float wd, int decoupled) {
    const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
    if (decoupled) {
        const float keep = 1.0f - lr * wd;
        for (int64_t i = 0; i < n; i++)
            p[i] = ILK_SUFFIX(adam1)(p[i] * keep, g[i], m + i, v + i, beta1, omb1, beta2, omb2, eps, step, bc2);
    } else {
        for (int64_t i = 0; i < n; i++)
            p[i] = ILK_SUFFIX(adam1)(p[i], g[i] + wd * p[i], m + i, v + i, beta1, omb1, beta2, omb2, eps, step, bc2);
    }
}
#undef ILK_LD
