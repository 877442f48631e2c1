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
public protocol Real: BinaryFloatingPoint, Sendable where RawSignificand: FixedWidthInteger {
    /// C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    static func tanh(_ x: Self) -> Self
    static func exp(_ x: Self) -> Self
    static func expm1(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func sqrt(_ x: Self) -> Self
    static func cos(_ x: Self) -> Self
    init(_ value: Float)
    var float: Float { get }
}

extension Float: Real {
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func tanh(_ x: Float) -> Float { tanhf(x) }
    @inlinable public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func expm1(_ x: Float) -> Float { expm1f(x) }
    @inlinable public static func log1p(_ x: Float) -> Float { log1pf(x) }
    @inlinable public static func erf(_ x: Float) -> Float { erff(x) }
    @inlinable public static func sqrt(_ x: Float) -> Float { sqrtf(x) }
    @inlinable public static func cos(_ x: Float) -> Float { cosf(x) }
    @inlinable public var float: Float { self }
}

extension Double: Real {
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable public static func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
    @inlinable public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable public static func expm1(_ x: Double) -> Double { Glibc.expm1(x) }
    @inlinable public static func log1p(_ x: Double) -> Double { Glibc.log1p(x) }
    @inlinable public static func erf(_ x: Double) -> Double { Glibc.erf(x) }
    @inlinable public static func sqrt(_ x: Double) -> Double { Glibc.sqrt(x) }
    @inlinable public static func cos(_ x: Double) -> Double { Glibc.cos(x) }
    @inlinable public var float: Float { Float(self) }
}

/// Owned, aligned scalar storage for the differentiable engine (the generic sibling of `FloatBuffer`).
public final class Buffer<T: Real> {
    public let count: Int
    public let base: UnsafeMutablePointer<T>

    public init(count: Int) throws(InLoopError) {
        let (bytes, o) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !o, bytes <= (1 << 40) else { throw InLoopError(.outOfMemory, "cannot allocate \(count) values") }
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

/// Element-wise activation functions and their derivatives, generic over the scalar type.
/// The float32 forward of `Activation.apply` and this one agree (same formulas).
public enum Elementwise {
    @inlinable
    public static func apply<T: Real>(_ act: Activation, _ z: T) -> T {
        switch act {
        case .identity: return z
        case .relu: return z > 0 ? z : 0
        case .leakyRelu(let a): return z >= 0 ? z : T(a) * z
        case .tanh: return T.tanh(z)
        case .sigmoid: return sigmoid(z)
        case .gelu: return 0.5 * z * (1 + T.erf(z * T(0.70710678118654752440)))
        case .geluTanh:
            let u = T(0.79788456080286535588) * (z + T(0.044715) * z * z * z)
            return 0.5 * z * (1 + T.tanh(u))
        case .silu: return z * sigmoid(z)
        case .softplus: return max(z, 0) + T.log1p(T.exp(-abs(z)))
        case .elu(let a): return z > 0 ? z : T(a) * T.expm1(z)
        }
    }

    /// f'(z), given z and a = f(z).
    @inlinable
    public static func derivative<T: Real>(_ act: Activation, z: T, a: T) -> T {
        switch act {
        case .identity: return 1
        case .relu: return z > 0 ? 1 : 0
        case .leakyRelu(let al): return z >= 0 ? 1 : T(al)
        case .tanh: return 1 - a * a
        case .sigmoid: return a * (1 - a)
        case .gelu:
            let phi = T.exp(-0.5 * z * z) * T(0.39894228040143267794)
            return 0.5 * (1 + T.erf(z * T(0.70710678118654752440))) + z * phi
        case .geluTanh:
            let c = T(0.79788456080286535588)
            let t = T.tanh(c * (z + T(0.044715) * z * z * z))
            return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * T(0.044715) * z * z)
        case .silu:
            let s = sigmoid(z)
            return s * (1 + z * (1 - s))
        case .softplus: return sigmoid(z)
        case .elu(let al): return z > 0 ? 1 : a + T(al)
        }
    }

    @inlinable
    public static func sigmoid<T: Real>(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }
}
