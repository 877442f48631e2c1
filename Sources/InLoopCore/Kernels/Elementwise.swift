// Activation functions, generic over the scalar type: one scalar definition, one forward kernel, one
// backward (and tangent-linear) kernel, for both engines and both precisions.
//
// Public API:
//   struct Numerics                 the numeric variants the engines differ in (docs/ENGINE.md §1.4, D1):
//       .inference      Cephes tanh and sigmoid, ReLU(NaN) = 0,   log/pow in T      (Model, Engine.Model)
//       .differentiable libm tanh and sigmoid,   ReLU(NaN) = NaN, log/pow in Double (Network, EngineNetwork)
//       log(_:), pow(_:_:)           log and pow under those variants
//   Activation.apply(_ x: T, _ numerics:) -> T          the scalar definition (numerics default: .inference)
//   Activation.derivative(z:a:) -> T                     f'(z) given a = f(z)
//   Kernels.activate(_:_:into:count:numerics:)           y[i] = f(x[i]); y may equal x
//   Kernels.activate(_:_:count:numerics:)                in place (numerics default: .inference)
//   Kernels.biasActivate(_:_:rows:cols:bias:numerics:)   y[r, c] = f(y[r, c] + b[c]), one pass
//   Kernels.activationBackward(_:z:a:gradient:into:accumulate:count:)
//       out[i] (+)= gradient[i]·f'(z[i]): an activation's backward pass and its tangent-linear one
//
// Float and Double share the code; what differs per type is in `Real` (tanh, cephesTanh, exp, ...).
// For Float, identity/ReLU/leaky ReLU/Cephes tanh (forward, bias-fused, backward) run in the C kernels
// of Kernels/CPU.swift at the CPU's vector width (AVX2/AVX-512), with the same bits as the loops here.
// In Double both tanh variants are libm tanh (Cephes is a float32 polynomial).
// Preconditions: pointers hold `count` values; x and y are identical or disjoint. No allocation.

/// Numeric variants kept while the two engines' outputs must stay bitwise what they were
/// (docs/ENGINE.md D1). They pick between kernel variants, never between code paths per engine.
public struct Numerics: Equatable, Sendable {
    public enum Tanh: Sendable { case cephes, libm }
    public enum ReluNaN: Sendable { case zero, keep }
    /// `.native`: log and pow in T (logf/powf for Float; the unary Pow takes the exact shortcuts for
    /// exponents 2, 1, 0.5 and 3), Selu as γα·(eˣ − 1), log-softmax as x − (m + log s).
    /// `.widened`: log and pow computed in Double and rounded to T, Selu as γα·expm1(x), log-softmax
    /// as (x − m) − log s. (In Double the two differ only in the Pow shortcuts, Selu and log-softmax.)
    public enum Elementary: Sendable { case native, widened }
    /// The exponential inside the float32 logistic sigmoid (Sigmoid, SiLU, the LSTM and GRU gates):
    /// `.cephes`, Cephes' branch-free expf (`Activation.cephesSigmoid`: loops over it vectorise; at
    /// most 2 ulp from libm's, exhaustively checked); `.libm`, libm's expf. In Double both are libm.
    public enum Exp: Sendable { case cephes, libm }
    public var tanh: Tanh
    public var reluNaN: ReluNaN
    public var elementary: Elementary
    public var exp: Exp

    public init(tanh: Tanh, reluNaN: ReluNaN, elementary: Elementary, exp: Exp = .libm) {
        self.tanh = tanh; self.reluNaN = reluNaN; self.elementary = elementary; self.exp = exp
    }

    /// σ(x) under `exp`.
    @inlinable @inline(__always)
    public func sigmoid<T: Real>(_ x: T) -> T { exp == .cephes ? T.cephesSigmoid(x) : Activation.sigmoid(x) }

    /// The inference plans (`Model`, `Engine.Model`).
    public static let inference = Numerics(tanh: .cephes, reluNaN: .zero, elementary: .native, exp: .cephes)
    /// The differentiable plans (`Network`, `EngineNetwork`).
    public static let differentiable = Numerics(tanh: .libm, reluNaN: .keep, elementary: .widened)

    /// log x under `elementary`.
    @inlinable @inline(__always)
    public func log<T: Real>(_ x: T) -> T { elementary == .native ? T.log(x) : T(Double.log(Double(x))) }

    /// xᵉ under `elementary` (no shortcuts).
    @inlinable @inline(__always)
    public func pow<T: Real>(_ x: T, _ e: T) -> T { elementary == .native ? T.pow(x, e) : T(Double.pow(Double(x), Double(e))) }
}

extension Float {
    /// Cephes tanh (`Activation.tanh`): branch-free, so loops over it vectorise.
    @inlinable @inline(__always) public static func cephesTanh(_ x: Float) -> Float { Activation.tanh(x) }
    /// σ(x) with Cephes' expf (`Activation.cephesSigmoid`): branch-free, so loops over it vectorise.
    @inlinable @inline(__always) public static func cephesSigmoid(_ x: Float) -> Float { Activation.cephesSigmoid(x) }
}

extension Double {
    /// Cephes' polynomial is a float32 one: in Double this is libm tanh.
    @inlinable @inline(__always) public static func cephesTanh(_ x: Double) -> Double { tanh(x) }
    /// In Double, σ with libm's exp.
    @inlinable @inline(__always) public static func cephesSigmoid(_ x: Double) -> Double { Activation.sigmoid(x) }
}

extension Activation {
    /// The scalar definition under `numerics` (the kernels below agree with it bit for bit).
    @inlinable @inline(__always)
    public func apply<T: Real>(_ x: T, _ numerics: Numerics = .inference) -> T {
        switch self {
        case .identity: return x
        case .relu: return numerics.reluNaN == .zero ? (x > 0 ? x : 0) : (x <= 0 ? 0 : x)
        case .leakyRelu(let a): return x >= 0 ? x : T(a) * x
        case .tanh: return numerics.tanh == .cephes ? T.cephesTanh(x) : T.tanh(x)
        case .sigmoid: return numerics.sigmoid(x)
        case .gelu: return 0.5 * x * (1 + T.erf(x * T(0.70710678118654752440)))
        case .geluTanh:
            let u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)
            return 0.5 * x * (1 + T.tanh(u))
        case .silu: return x * numerics.sigmoid(x)
        case .softplus: return max(x, 0) + T.log1p(T.exp(-abs(x)))   // log(1+eˣ) = max(x,0) + log1p(e^{-|x|})
        case .elu(let a): return x > 0 ? x : T(a) * T.expm1(x)
        }
    }

    /// f'(z), given z and a = f(z).
    @inlinable @inline(__always)
    public func derivative<T: Real>(z: T, a: T) -> T {
        switch self {
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
            let s = Activation.sigmoid(z)
            return s * (1 + z * (1 - s))
        case .softplus: return Activation.sigmoid(z)
        case .elu(let al): return z > 0 ? 1 : a + T(al)
        }
    }

    /// σ(x); both branches avoid overflow of exp for large |x|.
    @inlinable @inline(__always)
    static func sigmoid<T: Real>(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }
}

extension Kernels {
    /// y[i] = f(x[i]) for `count` values, as two plain loops (in place, or not) that the compiler
    /// vectorises when f allows it.
    @inlinable @inline(__always)
    static func map<T>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ count: Int, _ f: (T) -> T) {
        if UnsafePointer(y) == x {
            for i in 0..<count { y[i] = f(y[i]) }
        } else {
            for i in 0..<count { y[i] = f(x[i]) }
        }
    }

    /// y[i] = act(x[i]) for `count` values; y may equal x. The common activations get loops of their
    /// own (vectorised), the others go element by element through `Activation.apply`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func activate<T: Real>(_ act: Activation, _ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>,
                                         count: Int, numerics: Numerics) {
        // Float: the C kernels at the CPU's vector width (Kernels/CPU.swift), same bits.
        if T.self == Float.self, cActivate(act, x.asFloat, y.asFloat, count: count, numerics: numerics) { return }
        let zero: T = 0   // (a literal 0 inside these closures keeps the loops from vectorising)
        switch act {
        case .identity: if UnsafePointer(y) != x { y.update(from: x, count: count) }
        case .relu:
            if numerics.reluNaN == .zero {
                map(x, y, count) { $0 > zero ? $0 : zero }
            } else {
                map(x, y, count) { $0 <= zero ? zero : $0 }
            }
        case .leakyRelu(let alpha):
            let a = T(alpha)
            map(x, y, count) { $0 >= zero ? $0 : a * $0 }
        case .tanh:
            if numerics.tanh == .cephes { map(x, y, count) { T.cephesTanh($0) } } else { map(x, y, count) { T.tanh($0) } }
        case .sigmoid where numerics.exp == .cephes: map(x, y, count) { T.cephesSigmoid($0) }
        default: map(x, y, count) { act.apply($0, numerics) }
        }
    }

    /// y[i] = act(y[i]) for `count` values, in place.
    @inlinable
    public static func activate<T: Real>(_ act: Activation, _ y: UnsafeMutablePointer<T>, count: Int,
                                         numerics: Numerics = .inference) {
        activate(act, UnsafePointer(y), into: y, count: count, numerics: numerics)
    }

    /// y[r, c] = act(y[r, c] + b[c]) for a rows × cols row-major matrix (identity and the ReLUs in one
    /// pass over y).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func biasActivate<T: Real>(_ act: Activation, _ y: UnsafeMutablePointer<T>, rows: Int, cols: Int,
                                             bias b: UnsafePointer<T>, numerics: Numerics = .inference) {
        if T.self == Float.self,
           cBiasActivateRows(act, y.asFloat, rows: rows, cols: cols, bias: b.asFloat, numerics: numerics) { return }
        @inline(__always) func fused(_ f: (T) -> T) {
            for r in 0..<rows { let row = y + r * cols; for c in 0..<cols { row[c] = f(row[c] + b[c]) } }
        }
        let zero: T = 0
        switch act {
        case .identity: fused { $0 }
        case .relu:
            if numerics.reluNaN == .zero { fused { $0 > zero ? $0 : zero } } else { fused { $0 <= zero ? zero : $0 } }
        case .leakyRelu(let alpha):
            let a = T(alpha)
            fused { $0 >= zero ? $0 : a * $0 }
        default:
            for r in 0..<rows {
                let row = y + r * cols
                for c in 0..<cols { row[c] += b[c] }
                activate(act, row, count: cols, numerics: numerics)
            }
        }
    }

    /// out[i] (+)= gradient[i]·f'(z[i]) (a = f(z)): an activation's backward pass (and its
    /// tangent-linear one), accumulating into `out` or overwriting it.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func activationBackward<T: Real>(_ act: Activation, z: UnsafePointer<T>, a: UnsafePointer<T>,
                                                   gradient d: UnsafePointer<T>, into out: UnsafeMutablePointer<T>,
                                                   accumulate: Bool, count: Int) {
        // out[i] (+)= f(i), with the loads outside any conditional (a select, not a branch), so that
        // the loops vectorise.
        @inline(__always) func write(_ f: (Int) -> T) {
            if accumulate { for i in 0..<count { out[i] += f(i) } } else { for i in 0..<count { out[i] = f(i) } }
        }
        if T.self == Float.self,
           cActivationBackward(act, z: z.asFloat, a: a.asFloat, gradient: d.asFloat, into: out.asFloat,
                               accumulate: accumulate, count: count) { return }
        let zero: T = 0
        switch act {
        case .relu: write { let g = d[$0]; return z[$0] > zero ? g : zero }
        case .leakyRelu(let alpha):
            let s = T(alpha)
            write { let g = d[$0]; return z[$0] >= zero ? g : s * g }
        case .tanh: write { d[$0] * (1 - a[$0] * a[$0]) }
        default: write { d[$0] * act.derivative(z: z[$0], a: a[$0]) }
        }
    }
}
