import CBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The scalar types the differentiable engine computes in: `Float` (training speed) and `Double`
/// (gradient checks, tangent-linear/adjoint models for data assimilation). Each brings its BLAS
/// routines and elementary functions, so the engine code is written once, generically.
public protocol Real: BinaryFloatingPoint, Sendable, StorableElement where RawSignificand: FixedWidthInteger {
    /// The one engine's dense step (`Runtime/Kernels+Engine.swift`): Float under `.inference` takes the
    /// float32 inference kernels, everything else GEMM, bias, activation.
    static func denseStep(x: UnsafePointer<Self>, rows n: Int, inCols k: Int, w: UnsafePointer<Self>, b: UnsafePointer<Self>?,
                          outCols m: Int, activation: Activation, y: UnsafeMutablePointer<Self>, numerics: Numerics)
    /// `denseStep` of inference plans with the weight also re-laid out (`Engine.StepKind.packedDense`):
    /// Float runs batches ≥ 2 on the packed kernel when the CPU level has FMA; otherwise `denseStep`.
    static func packedDenseStep(x: UnsafePointer<Self>, rows n: Int, inCols k: Int, w: UnsafePointer<Self>,
                                packed: UnsafePointer<Self>, b: UnsafePointer<Self>?, outCols m: Int,
                                activation: Activation, y: UnsafeMutablePointer<Self>)
    /// y = alpha·op(A)·x + beta·y, row-major A of rows × cols (op(A) is cols × rows when transposed),
    /// unit strides.
    static func gemv(trans: Bool, rows: Int, cols: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     x: UnsafePointer<Self>, beta: Self, y: UnsafeMutablePointer<Self>)
    /// C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    static func tanh(_ x: Self) -> Self
    /// tanh by Cephes' float32 polynomial (`Numerics.Tanh.cephes`; libm tanh in Double).
    static func cephesTanh(_ x: Self) -> Self
    /// σ(x) with Cephes' float32 exponential (`Numerics.Exp.cephes`; libm exp in Double).
    static func cephesSigmoid(_ x: Self) -> Self
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
    static func expm1(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func sqrt(_ x: Self) -> Self
    static func cos(_ x: Self) -> Self
    init(_ value: Float)
    var float: Float { get }
    /// The largest |p[i]| of `count` values (0 when count is 0), or a non-finite value when any of
    /// them is NaN or ±Inf: one vectorised pass over the bit patterns.
    static func largestMagnitude(_ p: UnsafePointer<Self>, count: Int) -> Self
}

extension Real {
    /// Σ p[i]² in Double, accumulated in a fixed order (eight interleaved partial sums, then a fixed
    /// tree): the same bits on every run and machine, and not limited by one addition's latency.
    @inlinable
    public static func sumOfSquares(_ p: UnsafePointer<Self>, count: Int) -> Double {
        var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0, a5 = 0.0, a6 = 0.0, a7 = 0.0
        var i = 0
        while i + 8 <= count {
            let v0 = Double(p[i]), v1 = Double(p[i + 1]), v2 = Double(p[i + 2]), v3 = Double(p[i + 3])
            let v4 = Double(p[i + 4]), v5 = Double(p[i + 5]), v6 = Double(p[i + 6]), v7 = Double(p[i + 7])
            a0 += v0 * v0; a1 += v1 * v1; a2 += v2 * v2; a3 += v3 * v3
            a4 += v4 * v4; a5 += v5 * v5; a6 += v6 * v6; a7 += v7 * v7
            i += 8
        }
        var tail = 0.0
        while i < count { let v = Double(p[i]); tail += v * v; i += 1 }
        return (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))) + tail
    }
}

extension Float: Real {
    @inlinable
    public static func gemv(trans: Bool, rows: Int, cols: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(rows), Int32(cols), alpha, a, Int32(lda),
                    x, 1, beta, y, 1)
    }
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        // InLoop's FMA kernel (Kernels/CPU.swift) for the forms the engine uses, at 4 rows and up
        // (below, copying B into panels costs more than the product); sgemm otherwise.
        if alpha == 1, beta == 0 || beta == 1, m >= 4,
           Kernels.fmaGEMM(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                           accumulate: beta == 1, c: c, ldc: ldc) { return }
        var beta = beta
        if beta == 0, m > 0, n > 0 {
            // C = 0 here (memset), then β = 1: OpenBLAS's own β = 0 pass (sgemm_beta, one float store
            // at a time) was ~7 % of a column_mlp training step. Same bits: its kernels add αAB to
            // the zeroed C either way (NaNs in the old C are cleared either way).
            if ldc == n {
                memset(c, 0, m * n * MemoryLayout<Float>.stride)
            } else {
                for r in 0..<m { memset(c + r * ldc, 0, n * MemoryLayout<Float>.stride) }
            }
            beta = 1
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func tanh(_ x: Float) -> Float { tanhf(x) }
    @inlinable public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func log(_ x: Float) -> Float { logf(x) }
    @inlinable public static func pow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
    @inlinable public static func expm1(_ x: Float) -> Float { expm1f(x) }
    @inlinable public static func log1p(_ x: Float) -> Float { log1pf(x) }
    @inlinable public static func erf(_ x: Float) -> Float { erff(x) }
    // IEEE square root; built with -fno-math-errno (Package.swift), loops vectorise it.
    @inlinable public static func sqrt(_ x: Float) -> Float { x.squareRoot() }
    @inlinable public static func cos(_ x: Float) -> Float { cosf(x) }
    @inlinable public var float: Float { self }
    @inlinable
    public static func largestMagnitude(_ p: UnsafePointer<Float>, count: Int) -> Float {
        // |x| as a bit pattern orders like the value, and NaN/Inf lie above every finite value.
        let bits = UnsafeRawPointer(p).assumingMemoryBound(to: Int32.self)
        var m: Int32 = 0
        for i in 0..<count { m = Swift.max(m, bits[i] & 0x7fff_ffff) }
        return Float(bitPattern: UInt32(m))
    }
}

extension Double: Real {
    @inlinable
    public static func gemv(trans: Bool, rows: Int, cols: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>) {
        cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(rows), Int32(cols), alpha, a, Int32(lda),
                    x, 1, beta, y, 1)
    }
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
    @inlinable public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable public static func log(_ x: Double) -> Double { Glibc.log(x) }
    @inlinable public static func pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
    @inlinable public static func expm1(_ x: Double) -> Double { Glibc.expm1(x) }
    @inlinable public static func log1p(_ x: Double) -> Double { Glibc.log1p(x) }
    @inlinable public static func erf(_ x: Double) -> Double { Glibc.erf(x) }
    @inlinable public static func sqrt(_ x: Double) -> Double { x.squareRoot() }
    @inlinable public static func cos(_ x: Double) -> Double { Glibc.cos(x) }
    @inlinable public var float: Float { Float(self) }
    @inlinable
    public static func largestMagnitude(_ p: UnsafePointer<Double>, count: Int) -> Double {
        let bits = UnsafeRawPointer(p).assumingMemoryBound(to: Int64.self)
        var m: Int64 = 0
        for i in 0..<count { m = Swift.max(m, bits[i] & 0x7fff_ffff_ffff_ffff) }
        return Double(bitPattern: UInt64(m))
    }
}

/// Owned, aligned scalar storage for the differentiable engine (the generic sibling of `FloatBuffer`).
public final class Buffer<T: Real> {
    public let count: Int
    public let base: UnsafeMutablePointer<T>

    public init(count: Int) throws(InLoopError) {
        let (bytes, o) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !o else { throw InLoopError(.outOfMemory, "cannot allocate \(count) values") }
        try Limits.allocation(bytes: bytes, "a buffer of \(count) values")
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw InLoopError(.outOfMemory, "cannot allocate \(bytes) bytes")
        }
        base = raw.initializeMemory(as: T.self, repeating: 0, count: max(count, 1))
        self.count = count
    }

    deinit { free(base) }

    public var array: [T] { Array(UnsafeBufferPointer(start: base, count: count)) }
    public func zero() { base.update(repeating: 0, count: count) }
}
