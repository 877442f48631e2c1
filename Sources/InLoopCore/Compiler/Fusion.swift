extension Engine {
    /// What `fuse` did, for tools and tests.
    public struct FusionSummary: Equatable, Sendable {
        /// Gemm / MatMul (+ Add) rewritten as Dense.
        public var dense = 0
        /// Activations folded into the Dense before them.
        public var activations = 0
        /// BatchNormalization nodes folded into the Conv, ConvTranspose or Dense before them
        /// (`foldNormalization` only).
        public var normalizations = 0
    }

    /// Fusion rules over a verified, typed graph (`docs/ENGINE.md` §2.5, rule 4), each keeping the
    /// graph's meaning:
    /// - ONNX Gemm in the `nn.Linear` form (constant B, alpha = 1, transA = 0, C a constant vector or
    ///   absent with beta = 1) and MatMul by a constant matrix, with a following Add of a constant
    ///   vector, become InLoop's Dense (weights [out, in]: B transposed once when transB = 0);
    /// - an activation whose input is a Dense, Conv or ConvTranspose output used nowhere else is folded
    ///   into that node (the step applies it as it writes, as the graph engine did).
    /// - with `foldNormalization` (inference plans only: training changes the statistics and weights),
    ///   a BatchNormalization with constant scale, B, mean and var whose input is the output of a Conv
    ///   or ConvTranspose (constant W, optional constant B) or of a rank-2 Dense, used nowhere else,
    ///   becomes new constant weights and bias of that node (computed in Double, rounded once).
    ///   A BatchNormalization left standing lowers to one per-channel affine step.
    /// Values that are graph outputs are never fused away. The graph is re-verified and re-typed.
    @discardableResult
    public static func fuse(_ g: Graph, foldNormalization: Bool = false) throws(InLoopError) -> FusionSummary {
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
        // MARK: family fuse (BatchNormalization into the Conv/ConvTranspose/Dense before it)
        if foldNormalization { summary.normalizations = try foldBatchNorms(g, &nodes, &removed) }
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
        guard summary.dense + summary.activations + summary.normalizations > 0 else { return summary }
        g.setNodes(nodes.indices.filter { !removed.contains($0) }.map { nodes[$0] })
        try g.verify()
        try g.inferTypes()
        return summary
    }
}

// MARK: family fuse (BatchNormalization folding)
extension Engine {
    /// Folds each BatchNormalization of `nodes` into the Conv, ConvTranspose or Dense producing its
    /// input (see `fuse`); returns how many. The folded node takes the BN node's outputs, the BN node
    /// joins `removed`, and the new weights and bias are new constants of `g`.
    static func foldBatchNorms(_ g: Graph, _ nodes: inout [Node], _ removed: inout Set<Int>) throws(InLoopError) -> Int {
        var uses = [Int](repeating: 0, count: g.values.count)
        var producer = [Int](repeating: -1, count: g.values.count)
        for (i, n) in nodes.enumerated() where !removed.contains(i) {
            for case let v? in n.inputs { uses[v.index] += 1 }
            for v in n.outputs { producer[v.index] = i }
        }
        for o in g.outputs { uses[o.index] += 1 }
        let trainable = Set(g.parameters)
        func values(_ v: ValueID?) throws(InLoopError) -> [Double]? {
            guard let v, !trainable.contains(v), let t = g[v].constant else { return nil }
            switch t.dtype {
            case .float32:
                let p = try t.storage.pointer(as: Float.self)
                return (0..<t.count).map { Double(p[$0]) }
            case .float64:
                let p = try t.storage.pointer(as: Double.self)
                return (0..<t.count).map { p[$0] }
            default: return nil
            }
        }
        func newConstant(_ base: String, _ shape: [Int], _ data: [Double], _ dtype: DType) throws(InLoopError) -> ValueID {
            let t = try Tensor(zeros: shape, dtype: dtype)
            switch dtype {
            case .float32:
                let p = try t.storage.pointer(as: Float.self)
                for k in data.indices { p[k] = Float(data[k]) }
            case .float64:
                let p = try t.storage.pointer(as: Double.self)
                for k in data.indices { p[k] = data[k] }
            default: throw InLoopError(.internal, "a folded \(dtype) constant")
            }
            var name = base
            while g.names[name] != nil { name += "_" }
            return try g.addConstant(name, t)
        }
        var folded = 0
        for i in nodes.indices where !removed.contains(i) && nodes[i].op == BatchNormalizationOp.self {
            let bn = nodes[i]
            guard let a = bn.attributes as? BatchNormalizationOp.Attributes, bn.inputs.count == 5,
                  let x = bn.inputs[0], uses[x.index] == 1, producer[x.index] >= 0 else { continue }
            let p = producer[x.index], n = nodes[p]
            guard !removed.contains(p), n.outputs.count == 1, let xt = g[x].type, xt.dtype == g.dtype, xt.rank >= 2,
                  let c = xt.shape[1].known, c >= 1,
                  let scale = try values(bn.inputs[1]), let shift = try values(bn.inputs[2]),
                  let mean = try values(bn.inputs[3]), let variance = try values(bn.inputs[4]),
                  scale.count == c, shift.count == c, mean.count == c, variance.count == c,
                  n.inputs.count >= 2, let wv = n.inputs[1], let wt = g[wv].constant, wt.dtype == g.dtype,
                  wt.rank >= 2, var w = try values(wv) else { continue }
            // the channel of each weight element
            let channelOf: (Int) -> Int
            if n.op == ConvOp.self {
                guard let wa = n.attributes as? WindowAttributes, wa.activation == .identity, wt.shape[0] == c else { continue }
                let per = wt.count / c
                channelOf = { $0 / per }
            } else if n.op == ConvTransposeOp.self {
                // W [C_in, C_out/group, k...]: output channel (i / (C_in/group))·(C_out/group) + j
                guard let wa = n.attributes as? WindowAttributes, wa.activation == .identity, wa.group >= 1,
                      wt.shape[0] % wa.group == 0, wt.shape[1] * wa.group == c else { continue }
                let inPerGroup = wt.shape[0] / wa.group, outPerGroup = wt.shape[1], kernel = wt.count / (wt.shape[0] * wt.shape[1])
                channelOf = { e in
                    let j = (e / kernel) % outPerGroup, row = e / (kernel * outPerGroup)
                    return (row / inPerGroup) * outPerGroup + j
                }
            } else if n.op == DenseOp.self {
                // W [out, in]; the BN channel axis is the Dense output's last axis only at rank 2
                guard let da = n.attributes as? DenseOp.Attributes, da.activation == .identity, xt.rank == 2,
                      wt.rank == 2, wt.shape[0] == c else { continue }
                let per = wt.shape[1]
                channelOf = { $0 / per }
            } else { continue }
            var b = [Double](repeating: 0, count: c)
            if n.inputs.count > 2, let bv = n.inputs[2] {
                guard let bias = try values(bv), bias.count == c, g[bv].constant?.dtype == g.dtype else { continue }
                b = bias
            }
            // y = (z − mean)·s + B with s = scale/sqrt(var + ε): W' = W·s, b' = (b − mean)·s + B
            var s = [Double](repeating: 0, count: c)
            for k in 0..<c { s[k] = scale[k] / (variance[k] + a.epsilon).squareRoot() }
            for e in w.indices { w[e] *= s[channelOf(e)] }
            for k in 0..<c { b[k] = (b[k] - mean[k]) * s[k] + shift[k] }
            guard w.allSatisfy({ $0.isFinite }), b.allSatisfy({ $0.isFinite }) else { continue }
            let newW = try newConstant(g[wv].name + "__bn", wt.shape, w, g.dtype)
            let biasName = (n.inputs.count > 2 ? n.inputs[2].map { g[$0].name } : nil) ?? (g[wv].name + "_bias")
            let newB = try newConstant(biasName + "__bn", [c], b, g.dtype)
            nodes[p].inputs = [n.inputs[0], newW, newB]
            nodes[p].outputs = bn.outputs
            removed.insert(i)
            folded += 1
        }
        return folded
    }
}

extension ActivationOpDefinition {
    /// The activation of a node of this op (nil if the node holds other attributes).
    static func activationAny(_ node: Engine.Node) -> Activation? {
        guard let a = node.attributes as? Attributes else { return nil }
        return activation(a)
    }
}
