/// The architecture of a layer stack (native format version 1, trainer configurations), without its
/// weights; normalisation vectors are data, not parameters. A front end: `Engine.Graph(layerSpecs:...)`
/// lowers it to the one engine's graph.
public indirect enum LayerSpec: Equatable, Sendable {
    case dense(inputs: Int, outputs: Int, activation: Activation, bias: Bool)
    case activation(Activation)
    case normalize(mean: [Double], std: [Double])
    case denormalize(mean: [Double], std: [Double])
    case residual([LayerSpec])

    /// One dense layer's place in the flat parameter vector (each weight [out, in], then its bias).
    public struct DenseSlot: Equatable, Sendable {
        public let weight: Int
        public let bias: Int?
        public let inputs: Int
        public let outputs: Int
        public let activation: Activation
    }

    /// Trainable values of this layer (nested ones included).
    public var parameterCount: Int {
        switch self {
        case .dense(let i, let o, _, let b): return i * o + (b ? o : 0)
        case .activation, .normalize, .denormalize: return 0
        case .residual(let inner): return inner.reduce(0) { $0 + $1.parameterCount }
        }
    }

    /// `parameterCount` of a stack whose sizes are not validated yet: every layer size within
    /// `Limits.maxDimension`, the count within `Limits.maxElements`, or an error naming the layer.
    public static func checkedParameterCount(_ layers: [LayerSpec], path: String = "layers") throws(InLoopError) -> Int {
        var total = 0
        for (i, layer) in layers.enumerated() {
            let at = "\(path)[\(i)]"
            var n = 0
            switch layer {
            case .dense(let nIn, let nOut, _, let b):
                try Limits.dimension(nIn, "\(at): dense inputs", min: 1)
                try Limits.dimension(nOut, "\(at): dense outputs", min: 1)
                n = try Limits.sum(try Limits.product(nIn, nOut, "\(at): dense weight"), b ? nOut : 0, "\(at): dense parameters")
            case .activation, .normalize, .denormalize: n = 0
            case .residual(let inner): n = try checkedParameterCount(inner, path: "\(at).layers")
            }
            total = try Limits.sum(total, n, "parameter count")
            guard total <= Limits.maxElements else {
                throw InLoopError(.format, "\(at): the network has more than \(Limits.maxElements) parameters")
            }
        }
        return total
    }

    /// The dense layers in flat-parameter order (call after `checkedParameterCount`).
    public static func denseSlots(_ layers: [LayerSpec]) -> [DenseSlot] {
        var slots: [DenseSlot] = [], offset = 0
        func walk(_ specs: [LayerSpec]) {
            for s in specs {
                switch s {
                case .dense(let i, let o, let act, let hasBias):
                    let w = offset
                    offset += i * o
                    var b: Int? = nil
                    if hasBias { b = offset; offset += o }
                    slots.append(DenseSlot(weight: w, bias: b, inputs: i, outputs: o, activation: act))
                case .residual(let inner): walk(inner)
                case .activation, .normalize, .denormalize: break
                }
            }
        }
        walk(layers)
        return slots
    }

    /// The trainable tensors' shapes in flat order: each dense weight [out, in], then its bias [out].
    public static func parameterShapes(_ layers: [LayerSpec]) -> [[Int]] {
        var shapes: [[Int]] = []
        for d in denseSlots(layers) {
            shapes.append([d.outputs, d.inputs])
            if d.bias != nil { shapes.append([d.outputs]) }
        }
        return shapes
    }
}

extension Engine.Graph {
    /// The graph of a layer list whose trainable tensors are `parameters`, in flat order (each dense
    /// weight [out, in], then its bias [out]; shapes checked), in `dtype` (normalisation vectors are
    /// converted to it): input `inputName` of shape [N, inputSize] with N the batch symbol, one node
    /// per layer, in the order and with the fusions the layer-stack engine used (an activation right
    /// after a dense layer whose result nothing else reads is fused into it), so version-1 files and
    /// checkpoints compute the values they always did, bit for bit. Sizes are checked layer by layer,
    /// errors name the layer. The graph keeps the list (`layerSpecs`): its writer saves it as a
    /// version-1 file and a trainer checkpoints it with the list in its configuration.
    public convenience init(layerSpecs: [LayerSpec], inputSize: Int, dtype: Engine.DType, parameters: [Engine.Tensor],
                            name: String = "", inputName: String = "x", outputName: String = "y") throws(InLoopError) {
        guard dtype.isFloatingPoint else { throw InLoopError(.internal, "a layer list in \(dtype)") }
        self.init(name: name, dtype: dtype, origin: .layerList)
        let n = symbol(named: "N")
        batch = n
        try Limits.dimension(inputSize, "input size", min: 1)
        _ = try LayerSpec.checkedParameterCount(layerSpecs)
        try addInput(inputName, Engine.TensorType(dtype, [Engine.SymInt(n), Engine.SymInt(inputSize)]))
        var builder = LayerListBuilder(graph: self, parameters: parameters)
        var size = inputSize
        let cur = try builder.emit(layerSpecs, input: inputName, size: &size, path: "layers")
        guard builder.parameterIndex == parameters.count else {
            throw InLoopError(.internal, "\(parameters.count) parameter tensors for \(builder.parameterIndex) in the layers")
        }
        if cur == inputName || names[outputName] != nil {
            // an identity model (or a name clash) still computes its output by a node
            try addNode(outputName, IdentityOp.self, inputs: [cur], outputs: [outputName])
        } else {
            try rename(cur, to: outputName)
        }
        try markOutput(outputName)
        try verify()
        try inferTypes()
        self.layerSpecs = layerSpecs
    }

    /// The graph of a layer list with zero weights (a trainer fills them).
    public convenience init(layerSpecs: [LayerSpec], inputSize: Int, dtype: Engine.DType) throws(InLoopError) {
        _ = try LayerSpec.checkedParameterCount(layerSpecs)
        var tensors: [Engine.Tensor] = []
        for s in LayerSpec.parameterShapes(layerSpecs) { tensors.append(try Engine.Tensor(zeros: s, dtype: dtype)) }
        try self.init(layerSpecs: layerSpecs, inputSize: inputSize, dtype: dtype, parameters: tensors)
    }

    /// A layer-list graph's trainable tensors in flat order (each dense weight, then its bias): the
    /// Dense nodes' constants in node order, which is layer order. Nil for any other graph.
    public var layerParameters: [Engine.Tensor]? {
        guard layerSpecs != nil else { return nil }
        var out: [Engine.Tensor] = []
        for node in nodes where node.op.domain == "inloop" && node.op.name == "Dense" {
            for k in 1..<node.inputs.count {
                guard let v = node.inputs[k], let c = self[v].constant else { return nil }
                out.append(c)
            }
        }
        return out
    }

    /// Renames a node output (the last layer's value becomes the model's output name).
    func rename(_ old: String, to new: String) throws(InLoopError) {
        guard let id = names[old], names[new] == nil else { throw InLoopError(.internal, "rename \(old) -> \(new)") }
        values[id.index].name = new
        renameEntry(old, new, id)
    }
}

private struct LayerListBuilder {
    let graph: Engine.Graph
    let parameters: [Engine.Tensor]
    var counter = 0
    var parameterIndex = 0
    /// The last dense node added, for fusing a following activation layer.
    var lastDense: (node: Int, output: String, activation: Activation)? = nil

    init(graph: Engine.Graph, parameters: [Engine.Tensor]) {
        self.graph = graph
        self.parameters = parameters
    }

    mutating func fresh(_ kind: String) -> String {
        counter += 1
        return "\(kind)_\(counter)"
    }

    /// The next trainable tensor, checked against the shape the layer declares.
    mutating func nextParameter(_ name: String, _ shape: [Int], _ path: String) throws(InLoopError) -> String {
        guard parameterIndex < parameters.count else { throw InLoopError(.internal, "\(path): parameter \(parameterIndex) missing") }
        let t = parameters[parameterIndex]
        parameterIndex += 1
        guard t.shape == shape, t.dtype == graph.dtype else {
            throw InLoopError(.format, "\(path): \(name) is \(t); the layer needs \(graph.dtype)\(Tensor.format(shape))")
        }
        let id = fresh(name)
        graph.parameters.append(try graph.addConstant(id, t))
        return id
    }

    func vector(_ values: [Double]) throws(InLoopError) -> Engine.Tensor {
        switch graph.dtype {
        case .float64: return try Engine.Tensor(shape: [values.count], values: values)
        default: return try Engine.Tensor(shape: [values.count], values: values.map { Float($0) })
        }
    }

    /// Emits `layers` reading `input` (of `size` values per sample; updated to the output's); returns
    /// the value holding the result. `protected` values are read again later (a residual block's
    /// input), so an activation is not fused into their producer.
    mutating func emit(_ layers: [LayerSpec], input: String, size: inout Int, path: String,
                       protected: Set<String> = []) throws(InLoopError) -> String {
        var cur = input
        for (i, layer) in layers.enumerated() {
            let here = "\(path)[\(i)]"
            switch layer {
            case .dense(let nIn, let nOut, let act, let hasBias):
                guard nIn == size else {
                    throw InLoopError(.format, "\(here): dense layer takes \(nIn) inputs but receives \(size)")
                }
                // BLAS takes 32-bit sizes.
                guard nIn <= Int(Int32.max), nOut <= Int(Int32.max) else {
                    throw InLoopError(.unsupported, "\(here): dense weight [\(nOut), \(nIn)] is larger than 2^31-1 in one dimension")
                }
                // trainable, in the layer-stack trainer's flat order: each dense weight, then its bias
                let w = try nextParameter("weight", [nOut, nIn], here)
                var inputs = [cur, w]
                if hasBias { inputs.append(try nextParameter("bias", [nOut], here)) }
                let out = fresh("dense")
                try graph.addNode(here, DenseOp.self, ActivationOp.encode(act), inputs: inputs, outputs: [out])
                lastDense = (graph.nodes.count - 1, out, act)
                cur = out
                size = nOut
            case .activation(let act):
                if act == .identity { continue }
                if let last = lastDense, last.output == cur, last.activation == .identity, !protected.contains(cur) {
                    try graph.setActivation(ofNode: last.node, act)
                    lastDense = (last.node, last.output, act)
                    continue
                }
                let out = fresh("act")
                try graph.addNode(here, ActivationOp.self, ActivationOp.encode(act), inputs: [cur], outputs: [out])
                lastDense = nil
                cur = out
            case .normalize(let mean, let std), .denormalize(let mean, let std):
                guard mean.count == size, std.count == size else {
                    throw InLoopError(.format, "\(here): normalisation vectors have \(mean.count)/\(std.count) values but the layer receives \(size)")
                }
                for k in 0..<size {
                    guard std[k].isFinite, std[k] > 0 else {
                        throw InLoopError(.format, "\(here): normalisation std[\(k)] = \(std[k]); every std must be finite and > 0")
                    }
                    guard mean[k].isFinite else {
                        throw InLoopError(.format, "\(here): normalisation mean[\(k)] = \(mean[k]) is not finite")
                    }
                }
                let m = fresh("mean"), s = fresh("std"), out = fresh("norm")
                try graph.addConstant(m, try vector(mean))
                try graph.addConstant(s, try vector(std))
                let op: any OpDefinition.Type
                if case .normalize = layer { op = NormalizeOp.self } else { op = DenormalizeOp.self }
                try graph.addNode(here, op, inputs: [cur, m, s], outputs: [out])
                lastDense = nil
                cur = out
            case .residual(let inner):
                guard !inner.isEmpty else { throw InLoopError(.format, "\(here): residual block has no layers") }
                var s = size
                let res = try emit(inner, input: cur, size: &s, path: "\(here).layers", protected: protected.union([cur]))
                guard s == size else {
                    throw InLoopError(.format, "\(here): residual block maps \(size) values to \(s); it must preserve the size to be added to its input")
                }
                let out = fresh("residual")
                // the layer-stack engine added the block's input into its result: f(x) + x (addition
                // commutes bit for bit, so the operand order does not matter)
                try graph.addNode(here, AddOp.self, inputs: [res, cur], outputs: [out])
                lastDense = nil
                cur = out
            }
        }
        return cur
    }
}

extension Engine.Tensor {
    /// A float32 tensor of a file reader, sharing its memory.
    public init(layerTensor t: Tensor) throws(InLoopError) {
        try self.init(shape: t.shape, storage: Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(t.storage.base), dtype: .float32,
                                                                    count: t.count, owner: t.storage))
    }
}
