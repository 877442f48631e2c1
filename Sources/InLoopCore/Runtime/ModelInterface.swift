/// A named tensor of a model's interface: its per-sample shape (without the batch axis).
public struct TensorSpec: Equatable, Sendable {
    public let name: String
    /// Per-sample dimensions in the model's (row-major) order, e.g. [C, H, W] for an (N, C, H, W) input.
    public let shape: [Int]
    /// Values per sample: the product of `shape`; −1 when it is not fixed (a dimension is −1: a symbol
    /// other than the batch, bound per call by the full-shape entry points) or does not fit an Int.
    public let count: Int

    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
        var n = 1
        for d in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow else { n = -1; break }
            n = p
        }
        self.count = n
    }
}

extension Engine.Model {
    /// Values of input or output k at this batch size under the batch convenience: batch × the
    /// per-sample count, or the whole count of an input or output without a batch axis (one-engine
    /// models, `Engine.Model.inputBatched`).
    public func elements(input: Bool, _ k: Int, batch: Int) -> Int {
        let spec = input ? inputSpecs[k] : outputSpecs[k]
        if !(input ? inputBatched[k] : outputBatched[k]) { return spec.count }
        let (n, o) = batch.multipliedReportingOverflow(by: spec.count)
        return o ? Int.max : n
    }

    /// Convenience for Swift callers, tools and tests: runs arrays (batch × per-sample values each, in
    /// input order), returns arrays.
    public func runArrays(batch: Int, _ inputs: [[Float]]) throws(InLoopError) -> [[Float]] {
        guard inputs.count == inputSpecs.count else {
            throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) inputs; got \(inputs.count) arrays")
        }
        if let error = convenienceError { throw error }
        guard batch >= 1, batch <= Int(Int32.max) else {
            throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
        }
        var outs: [UnsafeMutableBufferPointer<Float>] = []
        var ins: [UnsafeMutableBufferPointer<Float>] = []
        defer { for b in outs + ins { b.deallocate() } }
        for (k, x) in inputs.enumerated() {
            guard x.count == elements(input: true, k, batch: batch) else {
                throw InLoopError(.sizeMismatch, "input '\(inputSpecs[k].name)' has \(x.count) values; batch \(batch) needs \(elements(input: true, k, batch: batch))")
            }
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: Swift.max(x.count, 1))
            _ = b.initialize(from: x)
            ins.append(b)
        }
        for k in outputSpecs.indices {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: Swift.max(elements(input: false, k, batch: batch), 1))
            b.initialize(repeating: 0)
            outs.append(b)
        }
        let ip = ins.map { UnsafePointer($0.baseAddress!) }, op = outs.map { $0.baseAddress! }
        try ip.withUnsafeBufferPointer { (i) throws(InLoopError) in
            try op.withUnsafeBufferPointer { (o) throws(InLoopError) in try run(batch: batch, inputs: i, outputs: o) }
        }
        return outs.indices.map { Array(outs[$0].prefix(elements(input: false, $0, batch: batch))) }
    }
}
