#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Optimizers over the flat parameter vector, with PyTorch's update rules (so a run can be compared
/// with torch.optim step by step).
public struct OptimizerConfig: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case sgd(momentum: Double, nesterov: Bool)
        case adam(beta1: Double, beta2: Double, epsilon: Double)
        /// Adam with decoupled weight decay.
        case adamW(beta1: Double, beta2: Double, epsilon: Double)
    }

    public var kind: Kind
    public var learningRate: Double
    /// L2 penalty added to the gradient (SGD, Adam) or decoupled decay (AdamW).
    public var weightDecay: Double
    /// Global gradient-norm clipping threshold; 0 = off.
    public var clipNorm: Double

    public init(_ kind: Kind, learningRate: Double, weightDecay: Double = 0, clipNorm: Double = 0) {
        self.kind = kind
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
    }

    public var name: String {
        switch kind {
        case .sgd: return "sgd"
        case .adam: return "adam"
        case .adamW: return "adamw"
        }
    }

    /// How many state vectors (each the size of the parameters) the optimizer keeps.
    public var stateVectors: Int {
        switch kind {
        case .sgd(let m, _): return m != 0 ? 1 : 0
        case .adam, .adamW: return 2
        }
    }
}

/// Learning rate as a function of the step: a schedule times an optional linear warm-up.
public struct Schedule: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case constant
        /// lr · gamma^⌊step / stepSize⌋
        case step(stepSize: Int, gamma: Double)
        /// minimum + (lr − minimum)(1 + cos(π · min(step, period)/period))/2
        case cosine(period: Int, minimum: Double)
    }

    public var kind: Kind
    /// Steps of linear warm-up: the rate is multiplied by min(1, (step+1)/warmup).
    public var warmup: Int

    public init(_ kind: Kind = .constant, warmup: Int = 0) {
        self.kind = kind
        self.warmup = warmup
    }

    public var name: String {
        switch kind {
        case .constant: return "constant"
        case .step: return "step"
        case .cosine: return "cosine"
        }
    }

    /// The learning rate for 0-based `step` given the base rate.
    public func rate(base: Double, step: Int) -> Double {
        var lr = base
        switch kind {
        case .constant: break
        case .step(let size, let gamma):
            var p = 1.0
            for _ in 0..<(step / max(size, 1)) { p *= gamma }
            lr = base * p
        case .cosine(let period, let minimum):
            let t = Double(min(step, period)) / Double(max(period, 1))
            lr = minimum + (base - minimum) * (1 + Double.cos(Double.pi * t)) / 2
        }
        if warmup > 0 { lr *= min(1, Double(step + 1) / Double(warmup)) }
        return lr
    }
}

/// Applies one optimizer update to `parameters` from `gradients` (both `count` long), with state
/// vectors `state` (`config.stateVectors` of them, used from `stateOffset` on: the position of
/// `parameters` in the whole vector when only a slice is updated) and the 1-based step number `t`.
public enum OptimizerStep {
    @inlinable
    public static func apply<T: Real>(_ config: OptimizerConfig, learningRate lr: Double, step t: Int,
                                      parameters p: UnsafeMutablePointer<T>, gradients g: UnsafePointer<T>,
                                      count: Int, state: [UnsafeMutablePointer<T>], stateOffset: Int = 0) {
        let wd = T(config.weightDecay)
        let lrT = T(lr)
        switch config.kind {
        case .sgd(let momentum, let nesterov):
            let mu = T(momentum)
            for i in 0..<count {
                var d = g[i] + wd * p[i]
                if momentum != 0 {
                    let b = t == 1 ? d : mu * state[0][stateOffset + i] + d
                    state[0][stateOffset + i] = b
                    d = nesterov ? d + mu * b : b
                }
                p[i] -= lrT * d
            }
        case .adam(let b1, let b2, let eps), .adamW(let b1, let b2, let eps):
            var decoupled = false
            if case .adamW = config.kind { decoupled = true }
            let beta1 = T(b1), beta2 = T(b2), e = T(eps)
            let bc1 = 1 - Glibc.pow(b1, Double(t)), bc2 = 1 - Glibc.pow(b2, Double(t))
            let stepSize = T(lr / bc1), bc2Sqrt = T(bc2.squareRoot())
            let m = state[0] + stateOffset, v = state[1] + stateOffset
            if T.self == Float.self {
                // float32: the same loop in C, at the CPU's vector width (Kernels/CPU.swift), same bits
                Kernels.cAdam(UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self), g.asFloat,
                              UnsafeMutableRawPointer(m).assumingMemoryBound(to: Float.self),
                              UnsafeMutableRawPointer(v).assumingMemoryBound(to: Float.self), count: count,
                              beta1: Float(b1), beta2: Float(b2), epsilon: Float(eps), stepSize: Float(lr / bc1),
                              bc2Sqrt: Float(bc2.squareRoot()), learningRate: Float(lr), weightDecay: Float(config.weightDecay),
                              decoupled: decoupled)
                return
            }
            for i in 0..<count {
                var d = g[i]
                if decoupled { p[i] *= 1 - lrT * wd } else { d += wd * p[i] }
                m[i] = beta1 * m[i] + (1 - beta1) * d
                v[i] = beta2 * v[i] + (1 - beta2) * d * d
                let denom = T.sqrt(v[i]) / bc2Sqrt + e
                p[i] -= stepSize * m[i] / denom
            }
        }
    }
}
