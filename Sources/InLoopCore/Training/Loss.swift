/// Regression losses, averaged over the batch and the outputs, with optional per-output weights:
/// L = 1/(batch·n) Σ_samples Σ_o w_o ℓ(ŷ_o − y_o).
public struct Loss: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case mse
        case mae
        /// ℓ(r) = r²/2 for |r| ≤ delta, delta·(|r| − delta/2) beyond (PyTorch's HuberLoss).
        case huber(delta: Double)
    }

    public var kind: Kind
    /// One weight per output, or empty for all ones.
    public var weights: [Double]

    public init(_ kind: Kind, weights: [Double] = []) {
        self.kind = kind
        self.weights = weights
    }

    public var name: String {
        switch kind {
        case .mse: return "mse"
        case .mae: return "mae"
        case .huber: return "huber"
        }
    }

    /// The loss of `prediction` against `target` (both `batch × outputs`); with `gradient`, also
    /// d loss / d prediction. Accumulates in Double whatever `T` is.
    @inlinable
    public func evaluate<T: Real>(prediction p: UnsafePointer<T>, target y: UnsafePointer<T>, batch: Int, outputs: Int,
                                  gradient g: UnsafeMutablePointer<T>?) -> Double {
        let scale = 1 / Double(batch * outputs)
        var total = 0.0
        for s in 0..<batch {
            for o in 0..<outputs {
                let i = s * outputs + o
                let w = weights.isEmpty ? 1.0 : weights[o]
                let r = Double(p[i]) - Double(y[i])
                let value: Double, slope: Double
                switch kind {
                case .mse:
                    value = r * r; slope = 2 * r
                case .mae:
                    value = abs(r); slope = r > 0 ? 1 : (r < 0 ? -1 : 0)
                case .huber(let d):
                    if abs(r) <= d { value = 0.5 * r * r; slope = r } else { value = d * (abs(r) - 0.5 * d); slope = r > 0 ? d : -d }
                }
                total += w * value
                if let g { g[i] = T(w * slope * scale) }
            }
        }
        return total * scale
    }
}
