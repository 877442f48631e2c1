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
            if m * k <= smallGEMVLimit {
                // Small layers (e.g. 32 × 32): the C kernel at the CPU's vector width, no BLAS call
                // overhead; each row summed as `dot` sums it (see smallGEMV).
                smallGEMV(w, x, bias: b, y, rows: m, cols: k)
                activate(act, y, count: m)
                return
            }
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

    /// Largest weight matrix (out × in values) that batch-1 dense runs without BLAS.
    public static let smallGEMVLimit = 4096

    /// Σ a[i]·b[i], summed in a fixed order (two 4-lane accumulators, then the tail): the result
    /// depends only on the two vectors, never on where they sit in a batch. The definition the C kernel
    /// of batch-1 dense layers (smallGEMV) reproduces at every CPU level; the tests compare the two.
    @inlinable @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count k: Int) -> Float {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var s0 = SIMD4<Float>(), s1 = SIMD4<Float>()
        var j = 0
        while j &+ 8 <= k {
            s0 += ra.loadUnaligned(fromByteOffset: 4 &* j, as: SIMD4<Float>.self)
                * rb.loadUnaligned(fromByteOffset: 4 &* j, as: SIMD4<Float>.self)
            s1 += ra.loadUnaligned(fromByteOffset: 4 &* j &+ 16, as: SIMD4<Float>.self)
                * rb.loadUnaligned(fromByteOffset: 4 &* j &+ 16, as: SIMD4<Float>.self)
            j &+= 8
        }
        if j &+ 4 <= k {
            s0 += ra.loadUnaligned(fromByteOffset: 4 &* j, as: SIMD4<Float>.self)
                * rb.loadUnaligned(fromByteOffset: 4 &* j, as: SIMD4<Float>.self)
            j &+= 4
        }
        let v = s0 + s1
        var s = (v[0] + v[1]) + (v[2] + v[3])
        while j < k { s += a[j] * b[j]; j &+= 1 }
        return s
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
