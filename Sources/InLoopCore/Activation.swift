#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise activation functions. Each has a scalar definition (`apply`) and a vectorisable
/// in-place kernel (`Kernels.activate`); the kernels are what the engine runs.
public enum Activation: Equatable, Sendable, CustomStringConvertible {
    case identity
    case relu
    case leakyRelu(alpha: Float)
    case tanh
    case sigmoid
    /// GELU, exact form x·Φ(x) = x/2·(1 + erf(x/√2)).
    case gelu
    /// GELU, tanh approximation x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
    case geluTanh
    /// SiLU / swish: x·σ(x).
    case silu
    /// log(1 + eˣ), computed without overflow.
    case softplus
    case elu(alpha: Float)

    /// Every activation the engine knows, in the spelling of the model format, for error messages.
    public static let supportedNames = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu",
                                        "gelu_tanh", "silu", "softplus", "elu"]

    public var description: String {
        switch self {
        case .identity: return "identity"
        case .relu: return "relu"
        case .leakyRelu(let a): return "leaky_relu(alpha=\(a))"
        case .tanh: return "tanh"
        case .sigmoid: return "sigmoid"
        case .gelu: return "gelu"
        case .geluTanh: return "gelu_tanh"
        case .silu: return "silu"
        case .softplus: return "softplus"
        case .elu(let a): return "elu(alpha=\(a))"
        }
    }

    /// The scalar definition (reference for tests; the kernels below must agree with it).
    @inlinable
    public func apply(_ x: Float) -> Float {
        switch self {
        case .identity: return x
        case .relu: return x > 0 ? x : 0
        case .leakyRelu(let a): return x >= 0 ? x : a * x
        case .tanh: return tanhf(x)
        case .sigmoid: return Activation.sigmoid(x)
        case .gelu: return 0.5 * x * (1 + erff(x * 0.70710678118654752))
        case .geluTanh:
            let u = 0.79788456080286536 * (x + 0.044715 * x * x * x)
            return 0.5 * x * (1 + tanhf(u))
        case .silu: return x * Activation.sigmoid(x)
        case .softplus: return Activation.softplus(x)
        case .elu(let a): return x > 0 ? x : a * expm1f(x)
        }
    }

    @inlinable
    static func sigmoid(_ x: Float) -> Float {
        // Both branches avoid overflow of exp for large |x|.
        if x >= 0 {
            return 1 / (1 + expf(-x))
        } else {
            let e = expf(x)
            return e / (1 + e)
        }
    }

    @inlinable
    static func softplus(_ x: Float) -> Float {
        // log(1+e^x) = max(x,0) + log1p(e^{-|x|})
        return max(x, 0) + log1pf(expf(-abs(x)))
    }
}
