// Interpretability on a differentiable network (issue 15, item 5): saliency maps and backwards
// optimisation of the input, both from the network's reverse mode.
//
// Public API (EngineNetwork):
//   saliency(_:batch:output:into:)                       s[b, i] = ∂y_k/∂x_i at sample b
//   optimizeInput(_:batch:output:steps:stepSize:lo:hi:)  projected gradient ascent of y_k on x
// Both run on the caller's thread with the network's own work space; the seed buffer grows with the
// largest batch seen.

extension EngineNetwork {
    /// The one-hot output seed for output `k` at `batch` samples (work space of this network).
    private func seed(_ k: Int, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        let count = try Limits.arrayCount(batch: batch, perSample: outputSize)
        let d = try EngineNetwork.ensure(&explainSeed, count)
        for i in 0..<count { d[i] = 0 }
        for b in 0..<batch { d[b * outputSize + k] = 1 }
        return UnsafePointer(d)
    }

    private func checkOutput(_ k: Int) throws(InLoopError) {
        guard k >= 0, k < outputSize else {
            throw InLoopError(.invalidArgument, "output index \(k) out of range; the model has \(outputSize) output values per sample (0...\(outputSize - 1))")
        }
    }

    /// Saliency: for each of `batch` samples x (batch × inputSize), s = ∂y_k/∂x (batch × inputSize),
    /// the gradient of output value `k` (0-based, within one sample's flattened output).
    public func saliency(_ x: UnsafePointer<T>, batch: Int, output k: Int, into s: UnsafeMutablePointer<T>) throws(InLoopError) {
        try checkOutput(k)
        try forward(x, batch: batch)
        try backward(try seed(k, batch: batch), batch: batch, parameterGradients: false, inputGradient: s)
    }

    /// Backwards optimisation: `steps` steps of projected gradient ascent of output `k` on the input,
    /// x ← clamp(x + stepSize · ∂y_k/∂x, lo, hi) per sample, with the model fixed (a negative stepSize
    /// descends). `lo`/`hi` (inputSize values each, either may be nil) bound every feature; x is
    /// updated in place and `y` (batch × outputSize, if given) receives the outputs at the final x.
    /// A non-finite gradient stops with `.nonFinite`, leaving x at the last finite step.
    public func optimizeInput(_ x: UnsafeMutablePointer<T>, batch: Int, output k: Int, steps: Int, stepSize: Double,
                              lo: UnsafePointer<Double>?, hi: UnsafePointer<Double>?, y: UnsafeMutablePointer<T>?) throws(InLoopError) {
        try checkOutput(k)
        guard steps >= 0 else { throw InLoopError(.invalidArgument, "steps must be >= 0, got \(steps)") }
        guard stepSize.isFinite else { throw InLoopError(.invalidArgument, "step size must be finite, got \(stepSize)") }
        let f = inputSize
        if let lo, let hi {
            for j in 0..<f where !(lo[j] <= hi[j]) { throw InLoopError(.invalidArgument, "bounds of feature \(j): lo \(lo[j]) > hi \(hi[j]) (or NaN)") }
        }
        let n = try Limits.arrayCount(batch: batch, perSample: f)
        let g = try EngineNetwork.ensure(&explainGradient, n)
        let eta = T(stepSize)
        for _ in 0..<steps {
            try saliency(UnsafePointer(x), batch: batch, output: k, into: g)
            for i in 0..<n where !g[i].isFinite {
                throw InLoopError(.nonFinite, "the gradient of output \(k) is \(g[i]) at sample \(i / f), feature \(i % f)")
            }
            for i in 0..<n {
                var v = x[i] + eta * g[i]
                if let lo, Double(v) < lo[i % f] { v = T(lo[i % f]) }
                if let hi, Double(v) > hi[i % f] { v = T(hi[i % f]) }
                x[i] = v
            }
        }
        if let y {
            let out = try forward(UnsafePointer(x), batch: batch)
            y.update(from: out, count: try Limits.arrayCount(batch: batch, perSample: outputSize))
        }
    }
}
