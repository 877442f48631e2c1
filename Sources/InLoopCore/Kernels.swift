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
                // Small layers (e.g. 32 × 32): plain SIMD loops, no BLAS call overhead.
                // Four rows at a time (same per-row arithmetic as `dot`), then the remaining rows.
                var o = 0
                while o &+ 4 <= m {
                    let s = dot4(w + o &* k, rowStride: k, x, count: k)
                    if let b {
                        y[o] = s[0] + b[o]; y[o &+ 1] = s[1] + b[o &+ 1]
                        y[o &+ 2] = s[2] + b[o &+ 2]; y[o &+ 3] = s[3] + b[o &+ 3]
                    } else {
                        y[o] = s[0]; y[o &+ 1] = s[1]; y[o &+ 2] = s[2]; y[o &+ 3] = s[3]
                    }
                    o &+= 4
                }
                while o < m {
                    let s = dot(w + o &* k, x, count: k)
                    y[o] = b.map { s + $0[o] } ?? s
                    o &+= 1
                }
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
    /// depends only on the two vectors, never on where they sit in a batch.
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

    /// `dot` of four rows (a, a + rowStride, a + 2·rowStride, a + 3·rowStride) with b at once: lane r
    /// is bit for bit `dot(a + r·rowStride, b, count: k)` (the same operations in the same order,
    /// interleaved so that the four accumulation chains overlap).
    @inlinable @inline(__always)
    public static func dot4(_ a: UnsafePointer<Float>, rowStride ld: Int, _ b: UnsafePointer<Float>,
                            count k: Int) -> SIMD4<Float> {
        let r0 = UnsafeRawPointer(a), r1 = UnsafeRawPointer(a + ld), r2 = UnsafeRawPointer(a + 2 &* ld)
        let r3 = UnsafeRawPointer(a + 3 &* ld), rb = UnsafeRawPointer(b)
        var a0 = SIMD4<Float>(), a1 = SIMD4<Float>(), a2 = SIMD4<Float>(), a3 = SIMD4<Float>()
        var c0 = SIMD4<Float>(), c1 = SIMD4<Float>(), c2 = SIMD4<Float>(), c3 = SIMD4<Float>()
        var j = 0
        while j &+ 8 <= k {
            let o = 4 &* j
            let x0 = rb.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            let x1 = rb.loadUnaligned(fromByteOffset: o &+ 16, as: SIMD4<Float>.self)
            a0 += r0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a1 += r1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a2 += r2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a3 += r3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            c0 += r0.loadUnaligned(fromByteOffset: o &+ 16, as: SIMD4<Float>.self) * x1
            c1 += r1.loadUnaligned(fromByteOffset: o &+ 16, as: SIMD4<Float>.self) * x1
            c2 += r2.loadUnaligned(fromByteOffset: o &+ 16, as: SIMD4<Float>.self) * x1
            c3 += r3.loadUnaligned(fromByteOffset: o &+ 16, as: SIMD4<Float>.self) * x1
            j &+= 8
        }
        if j &+ 4 <= k {
            let o = 4 &* j
            let x0 = rb.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            a0 += r0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a1 += r1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a2 += r2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            a3 += r3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self) * x0
            j &+= 4
        }
        let v0 = a0 + c0, v1 = a1 + c1, v2 = a2 + c2, v3 = a3 + c3
        // Lane r: (v_r[0] + v_r[1]) + (v_r[2] + v_r[3]), as in `dot`.
        let t01 = SIMD4(v0[0], v1[0], v2[0], v3[0]) + SIMD4(v0[1], v1[1], v2[1], v3[1])
        let t23 = SIMD4(v0[2], v1[2], v2[2], v3[2]) + SIMD4(v0[3], v1[3], v2[3], v3[3])
        var s = t01 + t23
        while j < k {
            s += SIMD4(a[j], a[ld &+ j], a[2 &* ld &+ j], a[3 &* ld &+ j]) * SIMD4(repeating: b[j])
            j &+= 1
        }
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
