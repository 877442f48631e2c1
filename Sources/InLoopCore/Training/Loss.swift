/// Regression losses, averaged over the batch and the outputs, with optional per-output weights:
/// L = 1/(batch·n) Σ_samples Σ_o w_o ℓ(ŷ_o − y_o).
public struct Loss: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case mse
        case mae
        /// ℓ(r) = r²/2 for |r| ≤ delta, delta·(|r| − delta/2) beyond (PyTorch's HuberLoss).
        case huber(delta: Double)
        /// The ensemble CRPS of `members` predictions per target (Gneiting & Raftery 2007):
        /// (1/M) Σ_m |x_m − y| − 1/(2M²) Σ_m Σ_m' |x_m − x_m'|; the prediction has `members` rows per
        /// target row, one after another (the trainer replicates each sample with different noise).
        /// `fair` (Ferro 2014): 1/(2M(M−1)) for the second term, whose expectation is then the CRPS of
        /// the members' distribution (the plain form rewards an ensemble narrower than the truth's
        /// spread: by 37 % for 4 Gaussian members); needs M ≥ 2.
        case crps(members: Int, fair: Bool)
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
        case .crps: return "crps"
        }
    }

    /// Prediction rows per target row (the CRPS ensemble's members; 1 for the others).
    public var members: Int {
        if case .crps(let m, _) = kind { return m }
        return 1
    }

    /// The loss of `prediction` against `target` (both `batch × outputs`; for the CRPS, the prediction
    /// has `members` rows per target row, and so has the gradient); with `gradient`, also
    /// d loss / d prediction. Accumulates in Double whatever `T` is.
    @inlinable
    public func evaluate<T: Real>(prediction p: UnsafePointer<T>, target y: UnsafePointer<T>, batch: Int, outputs: Int,
                                  gradient g: UnsafeMutablePointer<T>?) -> Double {
        let scale = 1 / Double(batch * outputs)
        var total = 0.0
        if case .crps(let m, let fair) = kind {
            // sample s's members are prediction rows s·m ..< (s+1)·m; the gradient of member a is
            // (1/m) sign(x_a − y) − (1/pairs) Σ_b sign(x_a − x_b)
            let mm = Double(m), pairs = fair ? mm * (mm - 1) : mm * mm   // 1/(2·pairs) Σ_m Σ_m' |x_m − x_m'|
            for s in 0..<batch {
                for o in 0..<outputs {
                    let w = weights.isEmpty ? 1.0 : weights[o]
                    let yv = Double(y[s * outputs + o])
                    var skill = 0.0, spread = 0.0
                    for a in 0..<m {
                        let xa = Double(p[(s * m + a) * outputs + o])
                        skill += abs(xa - yv)
                        var slope = 0.0
                        for b in 0..<m {
                            let d = xa - Double(p[(s * m + b) * outputs + o])
                            spread += abs(d)
                            slope += d > 0 ? 1 : (d < 0 ? -1 : 0)
                        }
                        if let g {
                            let r = xa - yv
                            g[(s * m + a) * outputs + o] = T(w * ((r > 0 ? 1 : (r < 0 ? -1 : 0)) / mm - slope / pairs) * scale)
                        }
                    }
                    total += w * (skill / mm - spread / (2 * pairs))
                }
            }
            return total * scale
        }
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
                case .crps:
                    value = 0; slope = 0   // handled above
                }
                total += w * value
                if let g { g[i] = T(w * slope * scale) }
            }
        }
        return total * scale
    }
}
