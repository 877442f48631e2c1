// Element-wise unary functions beyond `Activation` (which covers relu, leaky relu, tanh, sigmoid,
// gelu, silu, softplus, elu and is what Conv/dense fuse).
//
// Public API:
//   enum UnaryFunction: Equatable, Sendable
//     erf, exp, log, sqrt, neg, abs, reciprocal, floor, ceil, round (half to even), sign,
//     softsign, hardSwish, selu(alpha:gamma:), pow(exponent:), clip(min:max:),
//     hardSigmoid(alpha:beta:)   (ONNX defaults: selu α = 1.67326319217681884765625,
//     γ = 1.05070102214813232421875; hardSigmoid α = 0.2, β = 0.5; clip bounds ±infinity)
//     apply(_ x: T, _ numerics: Numerics = .inference) -> T     the scalar definition (T: Real)
//     derivative(_ x: T, _ y: T) -> T                 f'(x) given y = f(x) (0 almost everywhere for
//                                                     floor, ceil, round, sign; clip: 1 strictly inside)
//     static backward(_ f:x:y:gradient:into:accumulate:count:)   out[i] (+)= g[i]·f'(x[i]): the
//                                                     adjoint and the tangent-linear map
//     static clip(x:lo:hi:y:count:)                    y = min(max(x, lo), hi), bounds read from
//                                                     scalars (nil: unbounded) at run time
//     static clipLinear(x:lo:hi:gradient:into:target:tangent:accumulate:count:)   derivatives of it
//     static apply(_ f: UnaryFunction, x:y:count:numerics:)   y[i] = f(x[i]) for count values;
//                                                     y may equal x
//     (Numerics.elementary picks how log, pow and selu are evaluated: see Kernels/Elementwise.swift)
//     description                                     ONNX-style name for messages
//
// Preconditions: x and y hold `count` values and are identical or disjoint. No allocation, no traps.

/// Element-wise unary functions (ONNX Erf, Exp, Log, Sqrt, Neg, Abs, Reciprocal, Floor, Ceil, Round,
/// Sign, Softsign, HardSwish, Selu, Pow with a constant exponent, Clip, HardSigmoid).
public enum UnaryFunction: Equatable, Sendable, CustomStringConvertible {
    case erf, exp, log, sqrt, neg, abs, reciprocal, floor, ceil, round, sign, softsign, hardSwish
    case selu(alpha: Float, gamma: Float)
    case pow(exponent: Float)
    case clip(min: Float, max: Float)
    case hardSigmoid(alpha: Float, beta: Float)

    public var description: String {
        switch self {
        case .erf: return "Erf"
        case .exp: return "Exp"
        case .log: return "Log"
        case .sqrt: return "Sqrt"
        case .neg: return "Neg"
        case .abs: return "Abs"
        case .reciprocal: return "Reciprocal"
        case .floor: return "Floor"
        case .ceil: return "Ceil"
        case .round: return "Round"
        case .sign: return "Sign"
        case .softsign: return "Softsign"
        case .hardSwish: return "HardSwish"
        case .selu(let a, let g): return "Selu(alpha=\(a), gamma=\(g))"
        case .pow(let e): return "Pow(exponent=\(e))"
        case .clip(let lo, let hi): return "Clip(min=\(lo), max=\(hi))"
        case .hardSigmoid(let a, let b): return "HardSigmoid(alpha=\(a), beta=\(b))"
        }
    }

    /// The scalar definition under `numerics` (the kernel below agrees with it bit for bit).
    @inlinable @inline(__always)
    public func apply<T: Real>(_ x: T, _ numerics: Numerics = .inference) -> T {
        switch self {
        case .erf: return T.erf(x)
        case .exp: return T.exp(x)
        case .log: return numerics.log(x)
        case .sqrt: return T.sqrt(x)
        case .neg: return -x
        case .abs: return Swift.abs(x)
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .softsign: return x / (1 + Swift.abs(x))
        case .hardSwish: return x * UnaryFunction.clamp01(x / 6 + 0.5)
        case .selu(let a, let g):
            return x > 0 ? T(g) * x : T(g) * T(a) * (numerics.elementary == .native ? T.exp(x) - 1 : T.expm1(x))
        case .pow(let e): return UnaryFunction.power(x, T(e), numerics)
        case .clip(let lo, let hi): return UnaryFunction.clip(x, T(lo), T(hi))
        case .hardSigmoid(let a, let b): return UnaryFunction.clamp01(T(a) * x + T(b))
        }
    }

    /// f'(x), given x and y = f(x), for the functions the differentiable engine takes (0 for the others);
    /// pow is evaluated as `Numerics.Elementary.widened`.
    @inlinable @inline(__always)
    public func derivative<T: Real>(_ x: T, _ y: T) -> T {
        switch self {
        case .erf: return T(1.12837916709551257390) * T.exp(-x * x)
        case .exp: return y
        case .log: return 1 / x
        case .sqrt: return 0.5 / y
        case .neg: return -1
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .reciprocal: return -y * y
        case .softsign: let d = 1 + Swift.abs(x); return 1 / (d * d)
        case .selu(let alpha, let gamma): return x > 0 ? T(gamma) : T(gamma) * T(alpha) * T.exp(x)
        case .pow(let e): return e == 0 ? 0 : T(e) * Numerics.differentiable.pow(x, T(e) - 1)
        case .clip(let lo, let hi): return x > T(lo) && x < T(hi) ? 1 : 0
        case .hardSwish: return x < -3 ? 0 : (x <= 3 ? x / 3 + 0.5 : 1)
        case .hardSigmoid(let a, let b): let v = T(a) * x + T(b); return v > 0 && v < 1 ? T(a) : 0
        case .floor, .ceil, .round, .sign: return 0
        }
    }

    @inlinable @inline(__always)
    static func clamp01<T: Real>(_ v: T) -> T { v < 0 ? 0 : (v > 1 ? 1 : v) }

    /// min(max(x, lo), hi) (so every value is hi when lo > hi, as ONNX and onnxruntime have it); NaN
    /// stays NaN (the comparisons are false).
    @inlinable @inline(__always)
    static func clip<T: Real>(_ x: T, _ lo: T, _ hi: T) -> T {
        let v = x < lo ? lo : x
        return v > hi ? hi : v
    }

    /// xᵉ: `.native` takes the exact shortcuts for e = 2, 1, 0.5, 3, `.widened` is pow in Double.
    @inlinable @inline(__always)
    static func power<T: Real>(_ x: T, _ e: T, _ numerics: Numerics) -> T {
        if numerics.elementary == .native {
            if e == 2 { return x * x }
            if e == 1 { return x }
            if e == 0.5 { return T.sqrt(x) }
            if e == 3 { return x * x * x }
        }
        return numerics.pow(x, e)
    }

    /// y[i] = f(x[i]) for `count` values; y may equal x. Each function gets its own loop (vectorised
    /// where the function allows it).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func apply<T: Real>(_ f: UnaryFunction, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, count: Int,
                                      numerics: Numerics = .inference) {
        let n = count
        switch f {
        case .erf: Kernels.map(x, y, n) { T.erf($0) }
        case .exp: Kernels.map(x, y, n) { T.exp($0) }
        case .log: Kernels.map(x, y, n) { numerics.log($0) }
        case .sqrt: Kernels.map(x, y, n) { T.sqrt($0) }
        case .neg: Kernels.map(x, y, n) { -$0 }
        case .abs: Kernels.map(x, y, n) { Swift.abs($0) }
        case .reciprocal: Kernels.map(x, y, n) { 1 / $0 }
        case .floor: Kernels.map(x, y, n) { $0.rounded(.down) }
        case .ceil: Kernels.map(x, y, n) { $0.rounded(.up) }
        case .round: Kernels.map(x, y, n) { $0.rounded(.toNearestOrEven) }
        case .sign: Kernels.map(x, y, n) { f.apply($0, numerics) }
        case .softsign: Kernels.map(x, y, n) { $0 / (1 + Swift.abs($0)) }
        case .hardSwish: Kernels.map(x, y, n) { $0 * clamp01($0 / 6 + 0.5) }
        case .selu(let a, let g):
            let gg = T(g), ga = T(g) * T(a)
            if numerics.elementary == .native {
                Kernels.map(x, y, n) { $0 > 0 ? gg * $0 : ga * (T.exp($0) - 1) }
            } else {
                Kernels.map(x, y, n) { $0 > 0 ? gg * $0 : ga * T.expm1($0) }
            }
        case .pow(let e):
            let p = T(e)
            if numerics.elementary == .widened {
                Kernels.map(x, y, n) { numerics.pow($0, p) }
            } else if e == 2 {
                Kernels.map(x, y, n) { $0 * $0 }
            } else if e == 1 {
                if UnsafePointer(y) != x { y.update(from: x, count: n) }
            } else if e == 0.5 {
                Kernels.map(x, y, n) { T.sqrt($0) }
            } else {
                Kernels.map(x, y, n) { power($0, p, numerics) }
            }
        case .clip(let lo, let hi):
            let l = T(lo), h = T(hi)
            Kernels.map(x, y, n) { clip($0, l, h) }
        case .hardSigmoid(let a, let b):
            let s = T(a), o = T(b)
            Kernels.map(x, y, n) { clamp01(s * $0 + o) }
        }
    }

    /// out[i] (+)= g[i]·f'(x[i]) (y = f(x)): the adjoint of `apply` and its tangent-linear map.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func backward<T: Real>(_ f: UnaryFunction, x: UnsafePointer<T>, y: UnsafePointer<T>, gradient g: UnsafePointer<T>,
                                         into out: UnsafeMutablePointer<T>, accumulate: Bool, count: Int) {
        if accumulate {
            for i in 0..<count { out[i] += g[i] * f.derivative(x[i], y[i]) }
        } else {
            for i in 0..<count { out[i] = g[i] * f.derivative(x[i], y[i]) }
        }
    }

    /// ONNX Clip (opset ≥ 11) with bounds read at run time from one-element tensors (nil: unbounded):
    /// y = min(max(x, lo), hi); y may equal x.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func clip<T: Real>(x: UnsafePointer<T>, lo: UnsafePointer<T>?, hi: UnsafePointer<T>?,
                                     y: UnsafeMutablePointer<T>, count: Int) {
        let l = lo?[0] ?? -T.infinity, h = hi?[0] ?? T.infinity
        Kernels.map(x, y, count) { clip($0, l, h) }
    }

    /// Derivatives of `clip(x:lo:hi:y:count:)`, as `UnaryFunction.clip` has them: x passes the
    /// gradient strictly inside (lo < x < hi); lo takes it where x < lo (unless lo > hi), hi where
    /// max(x, lo) > hi. target 0 (x): out[i] (+)= g[i]·∂y[i]/∂x[i] (reverse and tangent alike);
    /// target 1 (lo) or 2 (hi): reverse, out[0] (+)= Σ g[i]·∂y[i]/∂bound; tangent, out[i] (+)=
    /// g[0]·∂y[i]/∂bound.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func clipLinear<T: Real>(x: UnsafePointer<T>, lo: UnsafePointer<T>?, hi: UnsafePointer<T>?,
                                           gradient g: UnsafePointer<T>, into out: UnsafeMutablePointer<T>,
                                           target: Int, tangent: Bool, accumulate: Bool, count: Int) {
        let l = lo?[0] ?? -T.infinity, h = hi?[0] ?? T.infinity
        @inline(__always) func d(_ v: T) -> T {
            switch target {
            case 0: return v > l && v < h ? 1 : 0
            case 1: return v < l && !(l > h) ? 1 : 0
            default: return (v < l ? l : v) > h ? 1 : 0
            }
        }
        if target == 0 || tangent {
            // the gradient element by element (x), or the bound's one tangent broadcast
            let step = target == 0 ? 1 : 0
            if accumulate {
                for i in 0..<count { out[i] += g[i * step] * d(x[i]) }
            } else {
                for i in 0..<count { out[i] = g[i * step] * d(x[i]) }
            }
        } else {
            var sum: T = 0
            for i in 0..<count { sum += g[i] * d(x[i]) }
            if accumulate { out[0] += sum } else { out[0] = sum }
        }
    }
}
