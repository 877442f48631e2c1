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

/// What the C ABI holds: a loaded model of any kind (layer stack, ONNX graph) with named inputs and
/// outputs and a forward pass over caller-owned buffers. Each input k is one contiguous buffer of
/// `batch × inputSpecs[k].count` values (sample after sample); outputs likewise.
///
/// A model is not meant to be run from two threads at once: a concurrent call fails with `.busy`.
public protocol InferenceModel: AnyObject {
    var name: String { get }
    var inputSpecs: [TensorSpec] { get }
    var outputSpecs: [TensorSpec] { get }
    /// Values per sample of input 0 / output 0 (the single-input API).
    var inputSize: Int { get }
    var outputSize: Int { get }
    /// Trainable values (weights and biases).
    var parameterCount: Int { get }
    /// When true, forward fails with `.nonFinite` if an input or an output holds NaN or ±Inf.
    var checkFinite: Bool { get set }
    /// When true, each sample's output is bitwise independent of how samples are batched.
    var reproducible: Bool { get set }
    /// Sets the options (nil: unchanged) under the model's run lock, so that a change never races a run
    /// on another thread: that gives `.busy` instead.
    func setOptions(checkFinite: Bool?, reproducible: Bool?) throws(InLoopError)

    /// Single input, single output, float32 (x and y must not overlap).
    func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, into y: UnsafeMutableBufferPointer<Float>) throws(InLoopError)
    /// Single input, single output, float64 (x is read completely before y is written).
    func forward(_ x: UnsafeBufferPointer<Double>, batch: Int, into y: UnsafeMutableBufferPointer<Double>) throws(InLoopError)
    /// All inputs and outputs by index; sizes are `batch × spec.count` each.
    func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Float>>,
             outputs: UnsafeBufferPointer<UnsafeMutablePointer<Float>>) throws(InLoopError)
    func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Double>>,
             outputs: UnsafeBufferPointer<UnsafeMutablePointer<Double>>) throws(InLoopError)
}

extension InferenceModel {
    /// Values of input or output k at this batch size under the batch convenience: batch × the
    /// per-sample count, or the whole count of an input or output without a batch axis (one-engine
    /// models, `Engine.Model.inputBatched`).
    public func elements(input: Bool, _ k: Int, batch: Int) -> Int {
        let spec = input ? inputSpecs[k] : outputSpecs[k]
        if let e = self as? Engine.Model, !(input ? e.inputBatched[k] : e.outputBatched[k]) { return spec.count }
        let (n, o) = batch.multipliedReportingOverflow(by: spec.count)
        return o ? Int.max : n
    }

    /// Convenience for Swift callers, tools and tests: runs arrays (batch × per-sample values each, in
    /// input order), returns arrays.
    public func runArrays(batch: Int, _ inputs: [[Float]]) throws(InLoopError) -> [[Float]] {
        guard inputs.count == inputSpecs.count else {
            throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) inputs; got \(inputs.count) arrays")
        }
        if let e = self as? Engine.Model, let error = e.convenienceError { throw error }
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

    public func inputIndex(_ name: String) -> Int? { inputSpecs.firstIndex { $0.name == name } }
    public func outputIndex(_ name: String) -> Int? { outputSpecs.firstIndex { $0.name == name } }
}

extension Model: InferenceModel {
    public var inputSpecs: [TensorSpec] { [TensorSpec(name: inputName, shape: [inputSize])] }
    public var outputSpecs: [TensorSpec] { [TensorSpec(name: outputName, shape: [outputSize])] }

    public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Float>>,
                    outputs: UnsafeBufferPointer<UnsafeMutablePointer<Float>>) throws(InLoopError) {
        try checkCounts(inputs.count, outputs.count)
        let (nx, ny) = try Model.sizes(batch, inputSize, outputSize)
        try forward(UnsafeBufferPointer(start: inputs[0], count: nx), batch: batch,
                    into: UnsafeMutableBufferPointer(start: outputs[0], count: ny))
    }

    public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Double>>,
                    outputs: UnsafeBufferPointer<UnsafeMutablePointer<Double>>) throws(InLoopError) {
        try checkCounts(inputs.count, outputs.count)
        let (nx, ny) = try Model.sizes(batch, inputSize, outputSize)
        try forward(UnsafeBufferPointer(start: inputs[0], count: nx), batch: batch,
                    into: UnsafeMutableBufferPointer(start: outputs[0], count: ny))
    }

    private func checkCounts(_ ni: Int, _ no: Int) throws(InLoopError) {
        guard ni == 1, no == 1 else {
            throw InLoopError(.sizeMismatch, "model '\(name)' has 1 input and 1 output; got \(ni) input and \(no) output arrays")
        }
    }

    private static func sizes(_ batch: Int, _ i: Int, _ o: Int) throws(InLoopError) -> (Int, Int) {
        guard batch >= 1, batch <= Int(Int32.max) else {
            throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
        }
        let (nx, o1) = batch.multipliedReportingOverflow(by: i)
        let (ny, o2) = batch.multipliedReportingOverflow(by: o)
        guard !o1, !o2 else { throw InLoopError(.invalidArgument, "batch \(batch) is too large") }
        return (nx, ny)
    }
}
