extension Engine {
    /// What `fuse` did, for tools and tests.
    public struct FusionSummary: Equatable, Sendable {
        /// Gemm / MatMul (+ Add) rewritten as Dense.
        public var dense = 0
        /// Activations folded into the Dense before them.
        public var activations = 0
    }

    /// Fusion rules over a verified, typed graph (`docs/ENGINE.md` §2.5, rule 4), each keeping the
    /// graph's meaning:
    /// - ONNX Gemm in the `nn.Linear` form (constant B, alpha = 1, transA = 0, C a constant vector or
    ///   absent with beta = 1) and MatMul by a constant matrix, with a following Add of a constant
    ///   vector, become InLoop's Dense (weights [out, in]: B transposed once when transB = 0);
    /// - an activation whose input is a Dense, Conv or ConvTranspose output used nowhere else is folded
    ///   into that node (the step applies it as it writes, as the graph engine did).
    /// Values that are graph outputs are never fused away. The graph is re-verified and re-typed.
    @discardableResult
    public static func fuse(_ g: Graph) throws(InLoopError) -> FusionSummary {
        var summary = FusionSummary()
        var uses = g.useCounts()
        var nodes = g.nodes
        var removed = Set<Int>()
        var transposed: [ValueID: ValueID] = [:]
        let isOutput = Set(g.outputs)
        var consumer = [Int](repeating: -1, count: g.values.count)   // the single consumer, when one
        for (i, n) in nodes.enumerated() { for case let v? in n.inputs { consumer[v.index] = i } }

        func constant(_ v: ValueID?) -> Tensor? { v.flatMap { g[$0].constant } }
        func floatMatrix(_ v: ValueID?) -> Tensor? {
            guard let t = constant(v), t.dtype.isFloatingPoint, t.rank == 2, t.shape[0] >= 1, t.shape[1] >= 1 else { return nil }
            return t
        }
        /// A constant vector of n values (shape [n] or [1, n]) as a [n] constant.
        func biasVector(_ v: ValueID?, _ n: Int, _ dtype: DType) throws(InLoopError) -> ValueID? {
            guard let v, let t = constant(v), t.dtype == dtype else { return nil }
            if t.shape == [n] { return v }
            guard t.shape == [1, n] else { return nil }
            let name = g[v].name + "__vector"
            if let existing = g.names[name] { return existing }
            return try g.addConstant(name, try Tensor(shape: [n], storage: t.storage))
        }
        /// Bᵀ as a new constant ([k, n] → [n, k]), made once per value.
        func transpose(_ v: ValueID, _ t: Tensor) throws(InLoopError) -> ValueID {
            if let done = transposed[v] { return done }
            let (r, c) = (t.shape[0], t.shape[1])
            let out = try Tensor(zeros: [c, r], dtype: t.dtype)
            switch t.dtype {
            case .float32:
                let s = try t.storage.pointer(as: Float.self), d = try out.storage.pointer(as: Float.self)
                for i in 0..<r { for j in 0..<c { d[j * r + i] = s[i * c + j] } }
            case .float64:
                let s = try t.storage.pointer(as: Double.self), d = try out.storage.pointer(as: Double.self)
                for i in 0..<r { for j in 0..<c { d[j * r + i] = s[i * c + j] } }
            default: throw InLoopError(.internal, "transpose of a \(t.dtype) weight")
            }
            var name = g[v].name + "__T"
            while g.names[name] != nil { name += "_" }
            let id = try g.addConstant(name, out)
            transposed[v] = id
            return id
        }

        for i in nodes.indices where !removed.contains(i) {
            let n = nodes[i]
            guard let x = n.inputs.first ?? nil, let xt = g[x].type, xt.dtype == g.dtype else { continue }
            var dense: (w: ValueID, b: ValueID?)? = nil
            if n.op == GemmOp.self {
                let raw = n.attributes.encoded()
                func num(_ k: String, _ d: Double) -> Double {
                    switch raw[k] { case .float(let f)?: return f; case .int(let v)?: return Double(v); default: return d }
                }
                let hasC = n.inputs.count > 2 && n.inputs[2] != nil
                guard num("alpha", 1) == 1, num("transA", 0) == 0, !hasC || num("beta", 1) == 1,
                      let wv = n.inputs[1], let w = floatMatrix(wv), w.dtype == xt.dtype else { continue }
                let transB = num("transB", 0) != 0
                let out = transB ? w.shape[0] : w.shape[1]
                var b: ValueID? = nil
                if hasC {
                    guard let bv = try biasVector(n.inputs[2], out, xt.dtype) else { continue }
                    b = bv
                }
                dense = (transB ? wv : try transpose(wv, w), b)
            } else if n.op == MatMulOp.self, xt.rank >= 2, let wv = n.inputs[1], let w = floatMatrix(wv), w.dtype == xt.dtype {
                var b: ValueID? = nil
                // a following Add of a constant vector, when the product is used only there
                if let y = n.outputs.first, uses[y.index] == 1, !isOutput.contains(y), consumer[y.index] >= 0 {
                    let j = consumer[y.index], add = nodes[j]
                    if add.op == AddOp.self, !removed.contains(j) {
                        let other = add.inputs[0] == y ? add.inputs[1] : add.inputs[0]
                        if let bv = try biasVector(other, w.shape[1], xt.dtype) {
                            b = bv
                            // the Add's output becomes the Dense's
                            nodes[i].outputs = add.outputs
                            removed.insert(j)
                        }
                    }
                }
                dense = (try transpose(wv, w), b)
            }
            if let dense {
                nodes[i] = Node(name: n.name, op: DenseOp.self, attributes: DenseOp.Attributes(activation: .identity),
                                inputs: [x, dense.w] + (dense.b.map { [$0] } ?? []), outputs: nodes[i].outputs)
                summary.dense += 1
            }
        }
        // activations into the Dense before them
        uses = g.useCounts()
        for (i, n) in nodes.enumerated() { for case let v? in n.inputs where removed.contains(i) { uses[v.index] -= 1 } }
        consumer = [Int](repeating: -1, count: g.values.count)
        for (i, n) in nodes.enumerated() where !removed.contains(i) { for case let v? in n.inputs { consumer[v.index] = i } }
        for i in nodes.indices where !removed.contains(i) {
            let isDense = nodes[i].op == DenseOp.self
            let isConv = nodes[i].op == ConvOp.self || nodes[i].op == ConvTransposeOp.self
            guard isDense || isConv, let y = nodes[i].outputs.first, uses[y.index] == 1, !isOutput.contains(y),
                  consumer[y.index] >= 0 else { continue }
            let j = consumer[y.index]
            guard !removed.contains(j), let act = nodes[j].op as? any ActivationOpDefinition.Type,
                  let f = act.activationAny(nodes[j]) else { continue }
            if isDense {
                guard let a = nodes[i].attributes as? DenseOp.Attributes, a.activation == .identity else { continue }
                nodes[i].attributes = DenseOp.Attributes(activation: f)
            } else {
                guard var a = nodes[i].attributes as? WindowAttributes, a.activation == .identity else { continue }
                a.activation = f
                nodes[i].attributes = a
            }
            nodes[i].outputs = nodes[j].outputs
            removed.insert(j)
            summary.activations += 1
        }
        guard summary.dense + summary.activations > 0 else { return summary }
        g.setNodes(nodes.indices.filter { !removed.contains($0) }.map { nodes[$0] })
        try g.verify()
        try g.inferTypes()
        return summary
    }
}

extension ActivationOpDefinition {
    /// The activation of a node of this op (nil if the node holds other attributes).
    static func activationAny(_ node: Engine.Node) -> Activation? {
        guard let a = node.attributes as? Attributes else { return nil }
        return activation(a)
    }
}
