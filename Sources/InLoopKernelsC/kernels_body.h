/* The kernels, once. Included by kernels.c once per level with ILK_SUFFIX(name) naming the copy and
 * the level's target attribute pushed for every function. Keep every operation and its order as in
 * the Swift scalar definitions (Activation.tanh, Activation.apply, Activation.derivative). */

static inline float ILK_SUFFIX(fbits)(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ILK_SUFFIX(ubits)(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Activation.tanh, operation for operation. */
static inline float ILK_SUFFIX(tanh1)(float x) {
    uint32_t sign = ILK_SUFFIX(ubits)(x) & 0x80000000u;
    float a = ILK_SUFFIX(fbits)(ILK_SUFFIX(ubits)(x) & 0x7FFFFFFFu);
    float z = a * a;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * a + a;
    /* Activation.expNonNegative(2 * min(a, 10)), NaN kept. */
    float v = 2.0f * (a > 10.0f ? 10.0f : a);
    const float magic = 12582912.0f;
    float t = v * 1.44269504088896341f + magic;
    float nn = t - magic;
    float r = (v - nn * 0.693359375f) - nn * -2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    float er = q * (r * r) + r + 1.0f;
    float scale = ILK_SUFFIX(fbits)((ILK_SUFFIX(ubits)(t) - ILK_SUFFIX(ubits)(magic) + 127u) << 23);
    float e = er * scale;
    float large = 1.0f - 2.0f / (e + 1.0f);
    float res = a < 0.625f ? small : large;
    return ILK_SUFFIX(fbits)(ILK_SUFFIX(ubits)(res) | sign);
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
        case ILK_TANH: ILK_MAP_NOADD(ILK_SUFFIX(tanh1)(v)); return;
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
        case ILK_TANH: for (int64_t i = 0; i < n; i++) y[i] = ILK_SUFFIX(tanh1)(y[i] + bias); return;
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
    case ILK_TANH: for (int64_t i = 0; i < n; i++) yr[i] = ILK_SUFFIX(tanh1)(xr[i] + bias); return;
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
        case ILK_TANH: for (int64_t c = 0; c < cols; c++) row[c] = ILK_SUFFIX(tanh1)(row[c] + bb[c]); break;
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
