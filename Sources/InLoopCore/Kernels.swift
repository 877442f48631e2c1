import CBLAS

/// The numeric kernels: plain functions over raw pointers with explicit sizes.
/// Matrices are row-major; a batch of `n` samples of `k` values is an `n × k` matrix, which is the
/// memory layout of a Fortran array `x(k, n)`.
public enum Kernels {
    /// y[n × out] = x[n × in] · Wᵀ + b, then `act`, with W stored `[out, in]` (PyTorch layout).
    /// Batch 1 goes through GEMV, larger batches through GEMM; bias and activation are fused in
    /// one pass over y.
    @inlinable
    public static func dense(x: UnsafePointer<Float>, batch n: Int, inFeatures k: Int,
                             weight w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?,
                             outFeatures m: Int, activation act: Activation,
                             y: UnsafeMutablePointer<Float>) {
        if n == 1 {
            if let b {
                // y = W x + b in one GEMV: preload b, beta = 1.
                y.update(from: b, count: m)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(k), 1, w, Int32(k), x, 1, 1, y, 1)
            } else {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(k), 1, w, Int32(k), x, 1, 0, y, 1)
            }
            activate(act, y, count: m)
            return
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(m), Int32(k),
                    1, x, Int32(k), w, Int32(k), 0, y, Int32(m))
        if let b {
            biasActivate(act, y, rows: n, cols: m, bias: b)
        } else {
            activate(act, y, count: n * m)
        }
    }

    /// y[r, c] = act(y[r, c] + b[c]) for a rows × cols row-major matrix.
    @inlinable
    public static func biasActivate(_ act: Activation, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                    bias b: UnsafePointer<Float>) {
        switch act {
        case .identity:
            for r in 0..<rows { let row = y + r * cols; for c in 0..<cols { row[c] += b[c] } }
        case .relu:
            for r in 0..<rows { let row = y + r * cols; for c in 0..<cols { let v = row[c] + b[c]; row[c] = v > 0 ? v : 0 } }
        case .leakyRelu(let a):
            for r in 0..<rows { let row = y + r * cols; for c in 0..<cols { let v = row[c] + b[c]; row[c] = v >= 0 ? v : a * v } }
        default:
            for r in 0..<rows {
                let row = y + r * cols
                for c in 0..<cols { row[c] += b[c] }
                activate(act, row, count: cols)
            }
        }
    }

    /// y[i] = act(y[i]) for `count` values, in place.
    @inlinable
    public static func activate(_ act: Activation, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch act {
        case .identity: return
        case .relu: for i in 0..<count { let v = y[i]; y[i] = v > 0 ? v : 0 }
        case .leakyRelu(let a): for i in 0..<count { let v = y[i]; y[i] = v >= 0 ? v : a * v }
        default: for i in 0..<count { y[i] = act.apply(y[i]) }
        }
    }

    /// dst[r, c] = (src[r, c] - mean[c]) * invStd[c].
    @inlinable
    public static func normalize(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                 mean: UnsafePointer<Float>, std: UnsafePointer<Float>) {
        for r in 0..<rows {
            let s = src + r * cols, d = dst + r * cols
            for c in 0..<cols { d[c] = (s[c] - mean[c]) / std[c] }
        }
    }

    /// dst[r, c] = src[r, c] * std[c] + mean[c].
    @inlinable
    public static func denormalize(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                   mean: UnsafePointer<Float>, std: UnsafePointer<Float>) {
        for r in 0..<rows {
            let s = src + r * cols, d = dst + r * cols
            for c in 0..<cols { d[c] = s[c] * std[c] + mean[c] }
        }
    }

    /// dst[i] += src[i].
    @inlinable
    public static func add(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dst[i] += src[i] }
    }

    /// True when all `count` values are finite.
    @inlinable
    public static func allFinite<T: BinaryFloatingPoint>(_ p: UnsafePointer<T>, count: Int) -> Bool {
        // A sum of x*0 is NaN iff some x is NaN or ±Inf; one branch-free pass.
        var acc: T = 0
        for i in 0..<count { acc += p[i] * 0 }
        return acc == 0
    }

    /// Sets the number of threads OpenBLAS uses.
    public static func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(clamping: n)) }
    public static func blasThreads() -> Int { Int(openblas_get_num_threads()) }
}
