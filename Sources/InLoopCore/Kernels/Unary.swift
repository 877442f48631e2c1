// Element-wise unary functions beyond `Activation` (which covers relu, leaky relu, tanh, sigmoid,
// gelu, silu, softplus, elu and is what Conv/dense fuse).
//
// Public API:
//   enum UnaryFunction: Equatable, Sendable
//     erf, exp, log, sqrt, neg, abs, reciprocal, floor, ceil, round (half to even), sign,
//     softsign, hardSwish, selu(alpha:gamma:), pow(exponent:), clip(min:max:),
//     hardSigmoid(alpha:beta:)   (ONNX defaults: selu α = 1.67326319217681884765625,
//     γ = 1.05070102214813232421875; hardSigmoid α = 0.2, β = 0.5; clip bounds ±infinity)
//     apply(_ x: Float) -> Float                     the scalar definition
//     static apply(_ f: UnaryFunction, x:y:count:)   y[i] = f(x[i]) for count values; y may equal x
//     description                                     ONNX-style name for messages
//
// Preconditions: x and y hold `count` floats and are identical or disjoint. No allocation, no traps.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// The scalar definition.
    @inlinable
    public func apply(_ x: Float) -> Float {
        switch self {
        case .erf: return erff(x)
        case .exp: return expf(x)
        case .log: return logf(x)
        case .sqrt: return sqrtf(x)
        case .neg: return -x
        case .abs: return Swift.abs(x)
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .softsign: return x / (1 + Swift.abs(x))
        case .hardSwish: return x * UnaryFunction.clamp01(x / 6 + 0.5)
        case .selu(let a, let g): return x > 0 ? g * x : g * a * (expf(x) - 1)
        case .pow(let e): return UnaryFunction.power(x, e)
        case .clip(let lo, let hi): return UnaryFunction.clip(x, lo, hi)
        case .hardSigmoid(let a, let b): return UnaryFunction.clamp01(a * x + b)
        }
    }

    @inlinable @inline(__always)
    static func clamp01(_ v: Float) -> Float { v < 0 ? 0 : (v > 1 ? 1 : v) }

    /// NaN stays NaN (the comparisons are false).
    @inlinable @inline(__always)
    static func clip(_ x: Float, _ lo: Float, _ hi: Float) -> Float { x < lo ? lo : (x > hi ? hi : x) }

    @inlinable @inline(__always)
    static func power(_ x: Float, _ e: Float) -> Float {
        if e == 2 { return x * x }
        if e == 1 { return x }
        if e == 0.5 { return sqrtf(x) }
        if e == 3 { return x * x * x }
        return powf(x, e)
    }

    /// y[i] = f(x[i]) for `count` values; y may equal x.
    @inlinable
    public static func apply(_ f: UnaryFunction, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .erf: for i in 0..<count { y[i] = erff(x[i]) }
        case .exp: for i in 0..<count { y[i] = expf(x[i]) }
        case .log: for i in 0..<count { y[i] = logf(x[i]) }
        case .sqrt: for i in 0..<count { y[i] = x[i].squareRoot() }
        case .neg: for i in 0..<count { y[i] = -x[i] }
        case .abs: for i in 0..<count { y[i] = Swift.abs(x[i]) }
        case .reciprocal: for i in 0..<count { y[i] = 1 / x[i] }
        case .floor: for i in 0..<count { y[i] = x[i].rounded(.down) }
        case .ceil: for i in 0..<count { y[i] = x[i].rounded(.up) }
        case .round: for i in 0..<count { y[i] = x[i].rounded(.toNearestOrEven) }
        case .sign: for i in 0..<count { y[i] = f.apply(x[i]) }
        case .softsign: for i in 0..<count { let v = x[i]; y[i] = v / (1 + Swift.abs(v)) }
        case .hardSwish: for i in 0..<count { let v = x[i]; y[i] = v * clamp01(v / 6 + 0.5) }
        case .selu(let a, let g):
            let ga = g * a
            for i in 0..<count { let v = x[i]; y[i] = v > 0 ? g * v : ga * (expf(v) - 1) }
        case .pow(let e):
            if e == 2 {
                for i in 0..<count { let v = x[i]; y[i] = v * v }
            } else if e == 1 {
                if UnsafePointer(y) != x { y.update(from: x, count: count) }
            } else if e == 0.5 {
                for i in 0..<count { y[i] = x[i].squareRoot() }
            } else {
                for i in 0..<count { y[i] = power(x[i], e) }
            }
        case .clip(let lo, let hi): for i in 0..<count { y[i] = clip(x[i], lo, hi) }
        case .hardSigmoid(let a, let b): for i in 0..<count { y[i] = clamp01(a * x[i] + b) }
        }
    }
}
