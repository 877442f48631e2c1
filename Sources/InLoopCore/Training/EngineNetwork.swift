/// A differentiable graph on the one engine: what a trainer trains and the derivative entry points
/// differentiate (a loaded model of any kind, or a trainer configuration's layer stack), in scalar
/// type `T`. Forward, reverse and tangent passes are the
/// executor's over one differentiable plan for every batch size (specialised per batch size only for
/// graphs whose shapes are not linear in it).
///
/// **Parameters.** The trainable constants, by default those feeding a trainable slot of the ops
/// (Gemm and Dense: weight and bias; MatMul: B, and the constant of an Add right after it when that
/// MatMul's B is trainable and its result goes only there; Conv and ConvTranspose: W and B;
/// BatchNormalization and LayerNormalization: scale and B), or the names given, laid out in one flat
/// vector in the order the nodes (in topological order) first use them, each row-major. The executor
/// reads them in place, so an optimizer step is seen by the next forward without a copy.
public final class EngineNetwork<T: Real> {
    public struct ParameterInfo: Equatable, Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
    }

    /// The trainer's copy of the graph, in `T`; its parameter constants are views of `parameters`.
    public let graph: Engine.Graph
    public let inputName: String
    public let outputShape: [Int]
    public let inputSize: Int
    public let outputSize: Int
    public let parameters: Buffer<T>
    public let gradients: Buffer<T>
    public var parameterCount: Int { parameters.count }
    public let parameterInfo: [ParameterInfo]
    /// The batch size the graph input fixes, or nil when axis 0 is the batch symbol.
    public let fixedBatch: Int?
    /// The type the model was loaded in (what `inferenceModel` gives back).
    public let modelType: Engine.DType

    private var generic: Engine.Executor<T>?
    private var specialised: [(n: Int, executor: Engine.Executor<T>)] = []
    private static var maxSpecialised: Int { 4 }
    private var current: Engine.Executor<T>?
    private var lastBatch = 0
    private var output: Buffer<T>? = nil
    private var tangentOutput: Buffer<T>? = nil
    /// Work space of the interpretability calls (Explain.swift): the one-hot seed and the input gradient.
    var explainSeed: Buffer<T>? = nil
    var explainGradient: Buffer<T>? = nil
    /// The sliced networks and work space of Grad-CAM and LRP (ExplainSlices.swift), made on first use.
    var explainSlices: ExplainSlices<T>? = nil
    /// True when one plan serves every batch size (the graph's types are in the batch symbol).
    var batchGeneric: Bool { generic != nil }
    private let sharedParameters: Engine.TensorStorage
    private let sharedGradients: Engine.TensorStorage

    /// A trainer configuration's layer stack: the list's graph in `T` (normalisation vectors exact in
    /// float64), zero weights (`Initialization` fills them); its inference model is float32, a
    /// version-1 file.
    public convenience init(inputSize: Int, layers: [LayerSpec]) throws(InLoopError) {
        guard inputSize >= 1 else { throw InLoopError(.invalidArgument, "network input size must be at least 1") }
        try self.init(graph: try Engine.Graph(layerSpecs: layers, inputSize: inputSize, dtype: T.dtype), modelType: .float32)
    }

    /// A differentiable copy of a model's graph (the model is not changed).
    public convenience init(model: Engine.Model, trainable: Set<String>? = nil) throws(InLoopError) {
        try self.init(graph: model.graph, trainable: trainable)
    }

    /// `source` must be verified (and typed unless it is typed per batch size). `modelType`: the type
    /// `inferenceModel` gives back (default: the source graph's).
    public init(graph source: Engine.Graph, trainable: Set<String>? = nil, modelType: Engine.DType? = nil) throws(InLoopError) {
        self.modelType = modelType ?? source.dtype
        let g = try source.copy(as: T.dtype)
        graph = g
        guard g.inputs.count == 1 else {
            throw InLoopError(.unsupported, "derivatives and training take graphs with exactly one input; this graph has \(g.inputs.count) (\(g.inputs.map { "'\(g[$0].name)'" }.joined(separator: ", ")))")
        }
        guard g.outputs.count == 1 else {
            throw InLoopError(.unsupported, "derivatives and training take graphs with exactly one output; this graph has \(g.outputs.count) (\(g.outputs.map { "'\(g[$0].name)'" }.joined(separator: ", ")))")
        }
        let input = g[g.inputs[0]]
        guard let it = input.type, let d0 = it.shape.first else {
            throw InLoopError(.unsupported, "graph input '\(input.name)' is a scalar; a batch axis (axis 0) is needed")
        }
        var shape: [Int] = []
        for (i, d) in it.shape.enumerated().dropFirst() {
            guard let k = d.known, k >= 1 else {
                throw InLoopError(.unsupported, "graph input '\(input.name)' has dimension \(d) on axis \(i); only axis 0 (the batch) may be symbolic")
            }
            shape.append(k)
        }
        fixedBatch = d0.known
        if let f = fixedBatch, f < 1 { throw InLoopError(.format, "graph input '\(input.name)' has batch dimension \(f)") }
        inputName = input.name
        inputSize = try InLoopCore.Tensor.elementCount(shape)

        // Parameters: chosen, laid out, and made views of the flat vector.
        let chosen = try EngineNetwork.trainable(g, explicit: trainable)
        var infos: [ParameterInfo] = []
        var total = 0
        for v in chosen {
            guard let c = g[v].constant else { continue }
            infos.append(ParameterInfo(name: g[v].name, shape: c.shape, offset: total, count: c.count))
            total = try Limits.sum(total, c.count, "parameter count")
        }
        parameterInfo = infos
        parameters = try Buffer<T>(count: total)
        gradients = try Buffer<T>(count: total)
        for (info, v) in zip(infos, chosen) {
            guard let c = g[v].constant else { continue }
            (parameters.base + info.offset).update(from: try c.storage.pointer(as: T.self), count: info.count)
            g[v].constant = try Engine.Tensor(shape: info.shape, storage: Engine.TensorStorage(
                borrowing: UnsafeMutableRawPointer(parameters.base + info.offset), dtype: T.dtype, count: info.count, owner: parameters))
        }
        g.parameters = chosen
        sharedParameters = Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(parameters.base), dtype: T.dtype, count: total, owner: parameters)
        sharedGradients = Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(gradients.base), dtype: T.dtype, count: total, owner: gradients)

        // One plan for every batch size, or plans per batch size (validated at 1 and 2).
        var outShape: [Int]
        do {
            try g.inferTypes()
            let plan = try Engine.compile(g, numerics: .differentiable)
            generic = try Engine.Executor<T>(plan: plan, graph: g, sharing: (sharedParameters, sharedGradients))
            outShape = try EngineNetwork.outputShape(g, fixed: fixedBatch)
        } catch where Engine.isNotLinear(error) {
            generic = nil
            try g.inferTypes(bindings: g.batch.map { [$0: 1] } ?? [:])
            outShape = try EngineNetwork.outputShape(g, fixed: 1)
            try g.inferTypes(bindings: g.batch.map { [$0: 2] } ?? [:])
            guard try EngineNetwork.outputShape(g, fixed: 2) == outShape else {
                throw InLoopError(.unsupported, "graph output '\(g[g.outputs[0]].name)': its per-sample shape depends on the batch")
            }
        }
        outputShape = outShape
        outputSize = try InLoopCore.Tensor.elementCount(outShape)
    }

    private static func outputShape(_ g: Engine.Graph, fixed: Int?) throws(InLoopError) -> [Int] {
        let o = g[g.outputs[0]]
        guard let t = o.type, let d0 = t.shape.first, d0 == (fixed.map { Engine.SymInt($0) } ?? g.batch.map { Engine.SymInt($0) }) else {
            throw InLoopError(.unsupported, "graph output '\(o.name)' needs the batch as its axis 0")
        }
        var shape: [Int] = []
        for d in t.shape.dropFirst() {
            guard let k = d.known else { throw InLoopError(.unsupported, "graph output '\(o.name)' has a symbolic per-sample dimension") }
            shape.append(k)
        }
        return shape
    }

    /// The trainable constants, in order of first use (see the type's documentation).
    static func trainable(_ g: Engine.Graph, explicit: Set<String>?) throws(InLoopError) -> [Engine.ValueID] {
        func isFloatConstant(_ v: Engine.ValueID?) -> Bool {
            guard let v, let c = g[v].constant else { return false }
            return c.dtype.isFloatingPoint
        }
        var wanted = Set<Engine.ValueID>()
        if let explicit {
            for name in explicit.sorted() {
                guard let v = g.names[name], isFloatConstant(v) else {
                    throw InLoopError(.invalidArgument, "trainable '\(name)' is not a float constant (initializer) of the graph")
                }
                wanted.insert(v)
            }
        } else {
            let uses = g.useCounts()
            var matMulOutputs: [Engine.ValueID: Bool] = [:]   // MatMul output → its B is trainable
            for node in g.nodes {
                var slots: [Int] = []
                switch (node.op.domain, node.op.name) {
                case ("", "Gemm"), ("inloop", "Dense"), ("", "Conv"), ("", "ConvTranspose"),
                     ("", "BatchNormalization"), ("", "LayerNormalization"):
                    slots = [1, 2]
                case ("", "MatMul"):
                    slots = [1]
                    if node.inputs.count > 1, let out = node.outputs.first { matMulOutputs[out] = isFloatConstant(node.inputs[1]) }
                case ("", "Add") where node.inputs.count == 2:
                    for k in 0..<2 {
                        if let other = node.inputs[1 - k], matMulOutputs[other] == true, uses[other.index] == 1,
                           isFloatConstant(node.inputs[k]) { slots = [k] }
                    }
                // MARK: family rnn (trainable slots): W, R, B and LSTM's peepholes P
                case ("", "RNN"), ("", "GRU"), ("", "LSTM"):
                    slots = [1, 2, 3, 7]
                default: break
                }
                for s in slots where s < node.inputs.count && isFloatConstant(node.inputs[s]) {
                    if let v = node.inputs[s] { wanted.insert(v) }
                }
            }
        }
        var ordered: [Engine.ValueID] = []
        var seen = Set<Engine.ValueID>()
        for node in g.nodes {
            for case let v? in node.inputs where wanted.contains(v) && !seen.contains(v) {
                seen.insert(v)
                ordered.append(v)
            }
        }
        if explicit != nil {
            let unused = wanted.subtracting(seen).map { g[$0].name }.sorted()
            guard unused.isEmpty else {
                throw InLoopError(.invalidArgument, "trainable constant\(unused.count == 1 ? "" : "s") \(unused.map { "'\($0)'" }.joined(separator: ", ")) \(unused.count == 1 ? "is" : "are") used by no node")
            }
        }
        return ordered
    }

    /// The executor for batch n.
    private func executor(_ n: Int) throws(InLoopError) -> Engine.Executor<T> {
        guard n >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(n)") }
        if let f = fixedBatch, n != f {
            throw InLoopError(.sizeMismatch, "graph input '\(inputName)' fixes the batch to \(f); got batch \(n)")
        }
        if let generic { return generic }
        if let k = specialised.lastIndex(where: { $0.n == n }) { return specialised[k].executor }
        if let b = graph.batch { try graph.inferTypes(bindings: [b: n]) }
        let e = try Engine.Executor<T>(plan: try Engine.compile(graph, numerics: .differentiable), graph: graph,
                                        sharing: (sharedParameters, sharedGradients))
        if specialised.count >= EngineNetwork.maxSpecialised {
            if let victim = specialised.first?.executor, victim === current { current = nil }
            specialised.removeFirst()
        }
        specialised.append((n, e))
        return e
    }

    static func ensure(_ b: inout Buffer<T>?, _ count: Int) throws(InLoopError) -> UnsafeMutablePointer<T> {
        if let have = b, have.count >= count { return have.base }
        let new = try Buffer<T>(count: count)
        b = new
        return new.base
    }

    // MARK: Forward, reverse, tangent

    /// Runs the graph on `batch` samples and keeps what `backward` and `tangent` need; returns the
    /// output (valid until the next call). `x` must stay valid and unchanged until then.
    @discardableResult
    public func forward(_ x: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        let e = try executor(batch)
        let y = try EngineNetwork.ensure(&output, try Limits.arrayCount(batch: batch, perSample: outputSize))
        var xs = x, ys = y
        try withUnsafePointer(to: &xs) { (xp) throws(InLoopError) in
            try withUnsafePointer(to: &ys) { (yp) throws(InLoopError) in
                try e.forward(batch, inputs: UnsafeBufferPointer(start: xp, count: 1), outputs: UnsafeBufferPointer(start: yp, count: 1))
            }
        }
        current = e
        lastBatch = batch
        return UnsafePointer(y)
    }

    /// Back-propagates `dy` through the last `forward`: parameter gradients into `gradients`
    /// (overwritten) when asked, d loss/d input into `inputGradient` when given.
    public func backward(_ dy: UnsafePointer<T>, batch: Int, parameterGradients: Bool = true,
                         inputGradient: UnsafeMutablePointer<T>? = nil) throws(InLoopError) {
        guard let e = current, batch == lastBatch else { throw InLoopError(.invalidArgument, "backward needs a forward on the same batch first") }
        var seed = dy
        try withUnsafePointer(to: &seed) { (sp) throws(InLoopError) in
            let seeds = UnsafeBufferPointer(start: sp, count: 1)
            if var gx = inputGradient {
                try withUnsafePointer(to: &gx) { (gp) throws(InLoopError) in
                    try e.backward(batch, seeds: seeds, inputGradients: UnsafeBufferPointer(start: gp, count: 1), parameterGradients: parameterGradients)
                }
            } else {
                try e.backward(batch, seeds: seeds, inputGradients: nil, parameterGradients: parameterGradients)
            }
        }
    }

    /// Tangent-linear model at the point of the last `forward`; returns dy (valid until the next call).
    public func tangent(_ dx: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        guard let e = current, batch == lastBatch else { throw InLoopError(.invalidArgument, "tangent needs a forward on the same batch first") }
        let t = try EngineNetwork.ensure(&tangentOutput, try Limits.arrayCount(batch: batch, perSample: outputSize))
        var xs = dx, ts = t
        try withUnsafePointer(to: &xs) { (xp) throws(InLoopError) in
            try withUnsafePointer(to: &ts) { (tp) throws(InLoopError) in
                try e.tangent(batch, inputTangents: UnsafeBufferPointer(start: xp, count: 1), outputTangents: UnsafeBufferPointer(start: tp, count: 1))
            }
        }
        return UnsafePointer(t)
    }

    public func jacobian(_ x: UnsafePointer<T>, batch: Int, into j: UnsafeMutablePointer<T>) throws(InLoopError) {
        try networkJacobian(self, x, batch: batch, into: j)
    }

    // MARK: Back to inference

    /// The graph with the current parameters as its own constants, in the model's type.
    public func trainedGraph() throws(InLoopError) -> Engine.Graph {
        let g = try graph.copy()
        for (info, v) in zip(parameterInfo, graph.parameters) {
            let snapshot = try Engine.Tensor(zeros: info.shape, dtype: T.dtype)
            try snapshot.storage.pointer(as: T.self).update(from: parameters.base + info.offset, count: info.count)
            g[v].constant = snapshot
        }
        g.parameters = []
        return try g.copy(as: modelType)
    }

    /// An inference model of the graph with the current parameters.
    public func inferenceModel(name: String = "") throws(InLoopError) -> Engine.Model {
        let g = try trainedGraph()
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}
        return try Engine.Model(graph: g, name: name.isEmpty ? graph.name : name)
    }
}

