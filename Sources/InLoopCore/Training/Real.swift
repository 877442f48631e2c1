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

    /// dst[i] = f(src[i]), the common activations in loops of their own, which the compiler
    /// vectorises (ReLU propagates NaN, like max(x, 0)); the others element by element.
    @inlinable
    public static func apply<T: Real>(_ act: Activation, _ src: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, count: Int) {
        switch act {
        case .identity: dst.update(from: src, count: count)
        case .relu: for i in 0..<count { let z = src[i]; dst[i] = z <= 0 ? 0 : z }   // = max(z, 0), NaN kept
        case .leakyRelu(let alpha):
            let a = T(alpha)
            for i in 0..<count { let z = src[i]; dst[i] = z >= 0 ? z : a * z }
        default: for i in 0..<count { dst[i] = apply(act, src[i]) }
        }
    }

    /// out[i] (+)= gradient[i] · f'(z[i]) (a = f(z)): an activation's backward pass (and its
    /// tangent-linear one), accumulating into `out` or overwriting it.
    @inlinable
    public static func backward<T: Real>(_ act: Activation, z: UnsafePointer<T>, a: UnsafePointer<T>, gradient d: UnsafePointer<T>,
                                          into out: UnsafeMutablePointer<T>, accumulate: Bool, count: Int) {
        switch act {
        // Loads outside the conditional: a select, not a branch, so the loops vectorise.
        case .relu:
            if accumulate {
                for i in 0..<count { let g = d[i]; out[i] += z[i] > 0 ? g : 0 }
            } else {
                for i in 0..<count { let g = d[i]; out[i] = z[i] > 0 ? g : 0 }
            }
        case .leakyRelu(let alpha):
            let s = T(alpha)
            if accumulate {
                for i in 0..<count { let g = d[i]; out[i] += z[i] >= 0 ? g : s * g }
            } else {
                for i in 0..<count { let g = d[i]; out[i] = z[i] >= 0 ? g : s * g }
            }
        case .tanh:
            if accumulate { for i in 0..<count { out[i] += d[i] * (1 - a[i] * a[i]) } } else { for i in 0..<count { out[i] = d[i] * (1 - a[i] * a[i]) } }
        default:
            if accumulate {
                for i in 0..<count { out[i] += d[i] * derivative(act, z: z[i], a: a[i]) }
            } else {
                for i in 0..<count { out[i] = d[i] * derivative(act, z: z[i], a: a[i]) }
            }
        }
    }

    @inlinable
    public static func sigmoid<T: Real>(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }
}
