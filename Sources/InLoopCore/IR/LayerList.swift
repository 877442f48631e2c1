extension Engine.Graph {
    /// The graph of a layer-stack model (native format version 1, trainer configurations): input
    /// `inputName` of shape [N, inputSize] with N the batch symbol, one node per layer, in the order
    /// and with the fusions the layer-stack engine uses (an activation right after a dense layer whose
    /// result nothing else reads is fused into it), so the plan computes the same values bit for bit.
    /// The dense weights and biases are `parameters`, in the trainer's flat order (each weight, then
    /// its bias); they share the layers' memory.
    public convenience init(layers: [Layer], inputSize: Int, name: String = "", inputName: String = "x",
                            outputName: String = "y") throws(InLoopError) {
        var tensors: [Engine.Tensor] = []
        for t in layers.trainableTensors { tensors.append(try Engine.Tensor(layerTensor: t)) }
        try self.init(layerSpecs: LayerSpec.from(layers), inputSize: inputSize, dtype: .float32, parameters: tensors,
                      name: name, inputName: inputName, outputName: outputName)
    }

    /// The graph of a layer list whose trainable tensors are `parameters`, in flat order (each dense
    /// weight [out, in], then its bias [out]; shapes checked), in `dtype` (normalisation vectors are
    /// converted to it).
    public convenience init(layerSpecs: [LayerSpec], inputSize: Int, dtype: Engine.DType, parameters: [Engine.Tensor],
                            name: String = "", inputName: String = "x", outputName: String = "y") throws(InLoopError) {
        guard dtype.isFloatingPoint else { throw InLoopError(.internal, "a layer list in \(dtype)") }
        self.init(name: name, dtype: dtype, origin: .layerList)
        let n = symbol(named: "N")
        batch = n
        try Limits.dimension(inputSize, "input size", min: 1)
        try addInput(inputName, Engine.TensorType(dtype, [Engine.SymInt(n), Engine.SymInt(inputSize)]))
        var builder = LayerListBuilder(graph: self, parameters: parameters)
        var cur = inputName
        cur = try builder.emit(layerSpecs, input: cur, path: "layers")
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

    /// Emits `layers` reading `input`; returns the value holding the result. `protected` values are
    /// read again later (a residual block's input), so an activation is not fused into their producer.
    mutating func emit(_ layers: [LayerSpec], input: String, path: String, protected: Set<String> = []) throws(InLoopError) -> String {
        var cur = input
        for (i, layer) in layers.enumerated() {
            let here = "\(path)[\(i)]"
            switch layer {
            case .dense(let nIn, let nOut, let act, let hasBias):
                // trainable, in the layer-stack trainer's flat order: each dense weight, then its bias
                let w = try nextParameter("weight", [nOut, nIn], here)
                var inputs = [cur, w]
                if hasBias { inputs.append(try nextParameter("bias", [nOut], here)) }
                let out = fresh("dense")
                try graph.addNode(here, DenseOp.self, ActivationOp.encode(act), inputs: inputs, outputs: [out])
                lastDense = (graph.nodes.count - 1, out, act)
                cur = out
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
                let res = try emit(inner, input: cur, path: "\(here).layers", protected: protected.union([cur]))
                let out = fresh("residual")
                // the layer-stack engine adds the block's input into its result: f(x) + x (addition
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
    /// A float32 layer tensor, sharing its memory.
    init(layerTensor t: Tensor) throws(InLoopError) {
        try self.init(shape: t.shape, storage: Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(t.storage.base), dtype: .float32,
                                                                    count: t.count, owner: t.storage))
    }
}
