extension Engine.Graph {
    /// The graph of a layer-stack model (native format version 1, trainer configurations): input
    /// `inputName` of shape [N, inputSize] with N the batch symbol, one node per layer, in the order
    /// and with the fusions the layer-stack engine uses (an activation right after a dense layer whose
    /// result nothing else reads is fused into it), so the plan computes the same values bit for bit.
    public convenience init(layers: [Layer], inputSize: Int, name: String = "", inputName: String = "x",
                            outputName: String = "y") throws(InLoopError) {
        self.init(name: name, dtype: .float32, origin: .layerList)
        let n = symbol(named: "N")
        batch = n
        try addInput(inputName, Engine.TensorType(.float32, [Engine.SymInt(n), Engine.SymInt(inputSize)]))
        var builder = LayerListBuilder(graph: self)
        var cur = inputName
        cur = try builder.emit(layers, input: cur, path: "layers")
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
    var counter = 0
    /// The last node added and its activation slot, for fusing a following activation layer.
    var lastDense: (node: Int, output: String, activation: Activation)? = nil

    init(graph: Engine.Graph) { self.graph = graph }

    mutating func fresh(_ kind: String) -> String {
        counter += 1
        return "\(kind)_\(counter)"
    }

    /// Emits `layers` reading `input`; returns the value holding the result. `protected` values are
    /// read again later (a residual block's input), so an activation is not fused into their producer.
    mutating func emit(_ layers: [Layer], input: String, path: String, protected: Set<String> = []) throws(InLoopError) -> String {
        var cur = input
        for (i, layer) in layers.enumerated() {
            let here = "\(path)[\(i)]"
            switch layer {
            case .dense(let d):
                let w = fresh("weight"), out = fresh("dense")
                // trainable, in the layer-stack trainer's flat order: each dense weight, then its bias
                graph.parameters.append(try graph.addConstant(w, try Engine.Tensor(layerTensor: d.weight)))
                var inputs = [cur, w]
                if let bias = d.bias {
                    let b = fresh("bias")
                    graph.parameters.append(try graph.addConstant(b, try Engine.Tensor(layerTensor: bias)))
                    inputs.append(b)
                }
                try graph.addNode(here, DenseOp.self, ActivationOp.encode(d.activation), inputs: inputs, outputs: [out])
                lastDense = (graph.nodes.count - 1, out, d.activation)
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
            case .normalize(let nrm), .denormalize(let nrm):
                let m = fresh("mean"), s = fresh("std"), out = fresh("norm")
                try graph.addConstant(m, try Engine.Tensor(layerTensor: nrm.mean))
                try graph.addConstant(s, try Engine.Tensor(layerTensor: nrm.std))
                let op: any OpDefinition.Type
                if case .normalize = layer { op = NormalizeOp.self } else { op = DenormalizeOp.self }
                try graph.addNode(here, op, inputs: [cur, m, s], outputs: [out])
                lastDense = nil
                cur = out
            case .residual(let inner):
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
