// Grad-CAM and layer-wise relevance propagation (issue 15, item 5) on a differentiable network, from
// slices of its graph: each slice is a graph of its own (one input, one output) with the nodes between
// two tensors, run by its own differentiable network. Grad-CAM cuts the graph at the named tensor A
// (head: input → A; tail: A → output), so A is the head's output and ∂y_k/∂A the tail's saliency. LRP
// cuts it after every linear layer, so each slice ends in one linear layer and the relevance of a cut
// is (value × gradient) of the slice after it.
//
// Public API (EngineNetwork):
//   gradCAMShape(tensor:upsample:)                         per-sample shape of a Grad-CAM map
//   gradCAM(_:batch:tensor:output:upsample:into:)          map[b, s] = relu(Σ_c α_c A[b, c, s])
//   lrp(_:batch:output:epsilon:into:)                      relevance of output k on the input (ε rule)
// The slices are made on the first call (Grad-CAM: per tensor name, the last one kept; LRP: once) from
// the network's graph and a snapshot of its parameters; the work space grows with the largest batch.

/// The slices and work space of one network's Grad-CAM and LRP calls.
final class ExplainSlices<T: Real> {
    var camName = ""
    var camHead: EngineNetwork<T>?
    /// nil when the tensor is the graph output (∂y_k/∂A is then the one-hot seed).
    var camTail: EngineNetwork<T>?
    /// Per-sample shape of the tensor: [C, spatial...].
    var camShape: [Int] = []
    var camGradient: Buffer<T>?
    var camMap: Buffer<T>?
    var camSeed: Buffer<T>?

    /// LRP: slices from the input to the first cut, between cuts, and (when the graph ends in
    /// pass-through ops) from the last cut to the output; `linear[j]`: slice j ends in a linear layer.
    var lrpSlices: [EngineNetwork<T>]?
    var lrpLinear: [Bool] = []
    var lrpWork: (Buffer<T>?, Buffer<T>?) = (nil, nil)
    var lrpOutputs: [UnsafePointer<T>] = []
}

extension Engine.Graph {
    /// The graph computing `to` from `from`, as its one input, with this graph's nodes between them
    /// (constants shared). Throws `.unsupported` when `to` depends on another non-constant value
    /// (another input, a skip connection around `from`).
    func slice(from: Engine.ValueID, to: Engine.ValueID) throws(InLoopError) -> Engine.Graph {
        var need = [Bool](repeating: false, count: nodes.count)
        var seen = Set<Engine.ValueID>()
        var stack = [to]
        while let v = stack.popLast() {
            if v == from || !seen.insert(v).inserted || self[v].constant != nil { continue }
            guard let p = self[v].producer else {
                throw InLoopError(.unsupported, "'\(self[to].name)' depends on '\(self[v].name)' other than through '\(self[from].name)'")
            }
            if need[p.index] { continue }
            need[p.index] = true
            for case let i? in nodes[p.index].inputs { stack.append(i) }
        }
        let g = try copy()
        g.inputs = [from]
        g.outputs = [to]
        g.parameters = []
        g.setNodes(nodes.indices.filter { need[$0] }.map { nodes[$0] })
        return g
    }

    /// Dense nodes with a fused relu or leaky relu become Dense (identity) + Activation, so that the
    /// linear result is a value of its own (the cut LRP needs).
    func splitDenseActivations() throws(InLoopError) {
        var out: [Engine.Node] = []
        for node in nodes {
            guard node.op == DenseOp.self, let a = node.attributes as? DenseOp.Attributes, a.activation != .identity else {
                out.append(node)
                continue
            }
            guard values.count < Int(Int32.max), let y = node.outputs.first else { throw InLoopError(.format, "graph '\(name)' has too many values") }
            let z = Engine.ValueID(values.count)
            values.append(Engine.Value(name: "", type: self[y].type, producer: nil, constant: nil, known: nil))
            out.append(Engine.Node(name: node.name, op: DenseOp.self, attributes: DenseOp.Attributes(activation: .identity),
                                   inputs: node.inputs, outputs: [z]))
            out.append(Engine.Node(name: node.name + "/activation", op: ActivationOp.self,
                                   attributes: ActivationOp.Attributes(activation: a.activation), inputs: [z], outputs: [y]))
        }
        setNodes(out)
    }
}

extension EngineNetwork {
    private func slices() -> ExplainSlices<T> {
        if let s = explainSlices { return s }
        let s = ExplainSlices<T>()
        explainSlices = s
        return s
    }

    private func checkIndex(_ k: Int) throws(InLoopError) {
        guard k >= 0, k < outputSize else {
            throw InLoopError(.invalidArgument, "output index \(k) out of range; the model has \(outputSize) output values per sample (0...\(outputSize - 1))")
        }
    }

    private func requireBatchGeneric(_ what: String) throws(InLoopError) {
        guard batchGeneric else {
            throw InLoopError(.unsupported, "\(what) needs a graph whose shapes are linear in the batch (this one is typed per batch size)")
        }
    }

    // MARK: Grad-CAM

    /// Makes (or reuses) the head and tail of the named tensor.
    private func camSlices(_ name: String) throws(InLoopError) -> ExplainSlices<T> {
        let s = slices()
        if s.camHead != nil, s.camName == name { return s }
        try requireBatchGeneric("Grad-CAM")
        guard let v = graph.names[name], graph[v].producer != nil || graph[v].constant != nil || graph.inputs.contains(v) else {
            throw InLoopError(.invalidArgument, "Grad-CAM: the graph has no tensor named '\(name)'")
        }
        let value = graph[v]
        guard value.constant == nil, !graph.inputs.contains(v) else {
            throw InLoopError(.invalidArgument, "Grad-CAM: '\(name)' is \(value.constant != nil ? "a constant" : "the graph input"), not an intermediate tensor")
        }
        guard let t = value.type, t.dtype.isFloatingPoint, (2...5).contains(t.rank) else {
            let r = value.type.map { "rank \($0.rank) (\($0))" } ?? "an unknown type"
            throw InLoopError(.invalidArgument, "Grad-CAM: '\(name)' has \(r); Grad-CAM takes a floating [N, C] or [N, C, spatial...] tensor (rank 2 to 5)")
        }
        // axis 0 is the batch: the batch symbol, or the batch a fixed-batch graph declares
        let lead = fixedBatch.map { Engine.SymInt($0) } ?? graph.batch.map { Engine.SymInt($0) }
        guard let lead, t.shape[0] == lead else {
            throw InLoopError(.invalidArgument, "Grad-CAM: '\(name)' (\(t)) does not lead with the batch axis")
        }
        var shape: [Int] = []
        for d in t.shape.dropFirst() {
            guard let k = d.known, k >= 1 else { throw InLoopError(.invalidArgument, "Grad-CAM: '\(name)' (\(t)) has a symbolic or empty per-sample dimension") }
            shape.append(k)
        }
        let head = try EngineNetwork(graph: try graph.slice(from: graph.inputs[0], to: v), modelType: modelType)
        let tail = graph.outputs[0] == v ? nil : try EngineNetwork(graph: try graph.slice(from: v, to: graph.outputs[0]), modelType: modelType)
        s.camHead = head
        s.camTail = tail
        s.camShape = shape
        s.camName = name
        return s
    }

    /// The input's spatial shape when a map of `tensor` can be upsampled to it (same rank, 1 or 2
    /// spatial axes).
    private func upsampleTarget(_ s: ExplainSlices<T>) throws(InLoopError) -> [Int] {
        guard let it = graph[graph.inputs[0]].type, it.rank == s.camShape.count + 1, (3...4).contains(it.rank) else {
            throw InLoopError(.invalidArgument, "Grad-CAM: upsampling needs a feature map [N, C, H, W] (or [N, C, L]) of the input's rank; '\(s.camName)' is [N, \(s.camShape.map(String.init).joined(separator: ", "))]")
        }
        return it.shape.dropFirst(2).map { $0.known ?? 1 }
    }

    /// The per-sample shape of a Grad-CAM map of `tensor`: its spatial shape ([1] for an [N, C] tensor),
    /// or with `upsample` the input's spatial shape.
    public func gradCAMShape(tensor name: String, upsample: Bool) throws(InLoopError) -> [Int] {
        let s = try camSlices(name)
        if upsample { return try upsampleTarget(s) }
        return s.camShape.count == 1 ? [1] : Array(s.camShape.dropFirst())
    }

    /// Grad-CAM of output `k` on the tensor named `tensor` (A, per sample [C, spatial...]): α_c = the
    /// mean over space of ∂y_k/∂A_c, map = relu(Σ_c α_c A_c), per sample, at A's resolution; with
    /// `upsample`, resized to the input's spatial size by (bi)linear interpolation with half-pixel
    /// centres (PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`, OpenCV's resize).
    /// `map` holds batch × (the product of `gradCAMShape`) values. Specialised for Float and Double (the
    /// C layer is another module; generic, the per-value loops ran through value witnesses).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func gradCAM(_ x: UnsafePointer<T>, batch: Int, tensor name: String, output k: Int, upsample: Bool,
                        into map: UnsafeMutablePointer<T>) throws(InLoopError) {
        try checkIndex(k)
        let s = try camSlices(name)
        let target = upsample ? try upsampleTarget(s) : []
        let c = s.camShape[0]
        let spatial = s.camShape.dropFirst().reduce(1, *)
        let n = try Limits.arrayCount(batch: batch, perSample: c * spatial)
        guard let head = s.camHead else { throw InLoopError(.internal, "Grad-CAM without a head") }
        let a = try head.forward(x, batch: batch)
        let g = try EngineNetwork.ensure(&s.camGradient, n)
        if let tail = s.camTail {
            try tail.saliency(a, batch: batch, output: k, into: g)
        } else {
            for i in 0..<n { g[i] = 0 }
            for b in 0..<batch { g[b * outputSize + k] = 1 }
        }
        let out = upsample ? try EngineNetwork.ensure(&s.camMap, try Limits.arrayCount(batch: batch, perSample: spatial)) : map
        for b in 0..<batch {
            let ab = a + b * c * spatial, gb = g + b * c * spatial, ob = out + b * spatial
            for p in 0..<spatial { ob[p] = 0 }
            for ch in 0..<c {
                var alpha: T = 0
                for p in 0..<spatial { alpha += gb[ch * spatial + p] }
                alpha /= T(spatial)
                for p in 0..<spatial { ob[p] += alpha * ab[ch * spatial + p] }
            }
            for p in 0..<spatial where !(ob[p] > 0) { ob[p] = 0 }
        }
        guard upsample else { return }
        let from = Array(s.camShape.dropFirst())
        let (hi, wi) = from.count == 2 ? (from[0], from[1]) : (1, from[0])
        let (ho, wo) = target.count == 2 ? (target[0], target[1]) : (1, target[0])
        let per = ho * wo
        for b in 0..<batch {
            ExplainSlices<T>.resize(UnsafePointer(out + b * hi * wi), hi, wi, map + b * per, ho, wo)
        }
    }

    // MARK: LRP

    /// The LRP slices (made once): the graph must be a chain of linear layers (Conv, ConvTranspose,
    /// Gemm, Dense, MatMul with a constant operand, each with an optional constant bias Add) and
    /// pass-through ops.
    private func lrpSlices() throws(InLoopError) -> ExplainSlices<T> {
        let s = slices()
        if s.lrpSlices != nil { return s }
        try requireBatchGeneric("LRP")
        let g = try graph.copy()
        try g.splitDenseActivations()
        let x = g.inputs[0], y = g.outputs[0]
        // walk back from the output along the data path
        var chain: [Int] = []
        var v = y
        while v != x {
            guard let p = g[v].producer else { throw InLoopError(.unsupported, "LRP: '\(g[v].name)' is neither computed nor the input") }
            let node = g.nodes[p.index]
            let data = node.inputs.compactMap { $0 }.filter { g[$0].constant == nil && g[$0].known == nil }
            guard data.count == 1 else {
                throw InLoopError(.unsupported, "LRP takes a chain of layers; \(g.describe(node)) has \(data.count) non-constant inputs")
            }
            chain.append(p.index)
            v = data[0]
        }
        chain.reverse()
        // cuts: after each linear layer (after its bias Add when one follows)
        var cuts: [Engine.ValueID] = []
        var i = 0
        while i < chain.count {
            let node = g.nodes[chain[i]]
            switch try EngineNetwork.lrpRole(g, node) {
            case .linear:
                var out = node.outputs[0]
                if i + 1 < chain.count, try EngineNetwork.lrpRole(g, g.nodes[chain[i + 1]]) == .bias {
                    i += 1
                    out = g.nodes[chain[i]].outputs[0]
                }
                cuts.append(out)
            case .bias:
                throw InLoopError(.unsupported, "LRP: \(g.describe(node)) adds a constant that follows no linear layer; LRP has no rule for it")
            case .passThrough:
                break
            }
            i += 1
        }
        guard !cuts.isEmpty else { throw InLoopError(.unsupported, "LRP: the graph has no linear layer (Conv, Gemm, Dense, MatMul)") }
        var nets: [EngineNetwork<T>] = []
        var linear: [Bool] = []
        var from = x
        for c in cuts {
            nets.append(try EngineNetwork(graph: try g.slice(from: from, to: c), modelType: modelType))
            linear.append(true)
            from = c
        }
        if from != y {
            nets.append(try EngineNetwork(graph: try g.slice(from: from, to: y), modelType: modelType))
            linear.append(false)
        }
        s.lrpSlices = nets
        s.lrpLinear = linear
        s.lrpOutputs = []
        s.lrpOutputs.reserveCapacity(nets.count)
        return s
    }

    enum LRPRole { case linear, bias, passThrough }

    /// The node's part in LRP; throws `.unsupported` naming the op when LRP has no rule for it.
    static func lrpRole(_ g: Engine.Graph, _ node: Engine.Node) throws(InLoopError) -> LRPRole {
        func constant(_ k: Int) -> Bool { k < node.inputs.count && node.inputs[k].map { g[$0].constant != nil } == true }
        switch (node.op.domain, node.op.name) {
        case ("", "Conv"), ("", "ConvTranspose"), ("", "Gemm"):
            if constant(1) { return .linear }
        case ("inloop", "Dense"):
            if let a = node.attributes as? DenseOp.Attributes, a.activation == .identity { return .linear }
        case ("", "MatMul"):
            if constant(0) || constant(1) { return .linear }
        case ("", "Add"):
            if constant(0) || constant(1) { return .bias }
        case ("", "Relu"), ("", "LeakyRelu"), ("", "MaxPool"), ("", "GlobalMaxPool"), ("", "AveragePool"), ("", "GlobalAveragePool"),
             ("", "Flatten"), ("", "Reshape"), ("", "Squeeze"), ("", "Unsqueeze"), ("", "Transpose"), ("", "Identity"), ("", "Dropout"):
            return .passThrough
        case ("inloop", "Activation"):
            if let a = node.attributes as? ActivationOp.Attributes {
                switch a.activation {
                case .identity, .relu, .leakyRelu: return .passThrough
                default: break
                }
            }
        default: break
        }
        var what = g.describe(node)
        if let a = node.attributes as? DenseOp.Attributes { what += " with activation \(a.activation)" }
        if let a = node.attributes as? ActivationOp.Attributes { what += " \(a.activation)" }
        throw InLoopError(.unsupported, "LRP has no rule for \(what); it takes Conv, ConvTranspose, Gemm, Dense and MatMul "
                          + "(with a constant weight and bias) and passes relevance through Relu, LeakyRelu, max and average pooling, "
                          + "Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Identity and Dropout")
    }

    /// Layer-wise relevance propagation, ε rule, of output `k` to the input: at each linear layer
    /// z = W a + b, R_a = a ⊙ Wᵀ (R_z / (z + ε·sign z)) (sign 0 = +1; a zero denominator gives 0);
    /// relevance passes unchanged through ReLU-like activations (R_z = R_relu(z)), max pooling (to the
    /// maximum), average pooling (in proportion, ε = 0) and layout ops. The output's relevance is y_k,
    /// so Σ r = y_k less what biases and ε absorb. `r` holds batch × inputSize values. Specialised as
    /// `gradCAM` is.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func lrp(_ x: UnsafePointer<T>, batch: Int, output k: Int, epsilon: Double,
                    into r: UnsafeMutablePointer<T>) throws(InLoopError) {
        try checkIndex(k)
        guard epsilon >= 0, epsilon.isFinite else { throw InLoopError(.invalidArgument, "LRP: epsilon must be finite and >= 0, got \(epsilon)") }
        let s = try lrpSlices()
        guard let nets = s.lrpSlices else { throw InLoopError(.internal, "LRP without slices") }
        var widest = try Limits.arrayCount(batch: batch, perSample: inputSize)
        for net in nets { widest = Swift.max(widest, try Limits.arrayCount(batch: batch, perSample: net.outputSize)) }
        var w0 = try EngineNetwork.ensure(&s.lrpWork.0, widest), w1 = try EngineNetwork.ensure(&s.lrpWork.1, widest)
        s.lrpOutputs.removeAll(keepingCapacity: true)
        var cur = x
        for net in nets {
            cur = try net.forward(cur, batch: batch)
            s.lrpOutputs.append(cur)
        }
        // the seed: one-hot at output k
        let ny = try Limits.arrayCount(batch: batch, perSample: outputSize)
        for i in 0..<ny { w0[i] = 0 }
        for b in 0..<batch { w0[b * outputSize + k] = 1 }
        let eps = T(epsilon)
        for j in stride(from: nets.count - 1, through: 0, by: -1) {
            let net = nets[j]
            if s.lrpLinear[j] {
                // w0 holds ∂-form relevance at this slice's output z: R_z = z ⊙ w0; the seed is R_z / stab(z)
                let z = s.lrpOutputs[j], count = try Limits.arrayCount(batch: batch, perSample: net.outputSize)
                for i in 0..<count {
                    let zi = z[i], d = zi + (zi >= 0 ? eps : -eps)
                    w0[i] = d == 0 ? 0 : w0[i] * zi / d
                }
            }
            try net.backward(UnsafePointer(w0), batch: batch, parameterGradients: false, inputGradient: w1)
            swap(&w0, &w1)
        }
        let nx = try Limits.arrayCount(batch: batch, perSample: inputSize)
        for i in 0..<nx { r[i] = x[i] * w0[i] }
    }
}

extension ExplainSlices {
    /// Bilinear resize of one hi × wi plane to ho × wo with half-pixel centres, source coordinates
    /// clamped at 0 (PyTorch's `align_corners=False`).
    static func resize(_ src: UnsafePointer<T>, _ hi: Int, _ wi: Int, _ dst: UnsafeMutablePointer<T>, _ ho: Int, _ wo: Int) {
        func taps(_ o: Int, _ nOut: Int, _ nIn: Int) -> (Int, Int, Double) {
            let v = Swift.max((Double(o) + 0.5) * Double(nIn) / Double(nOut) - 0.5, 0)
            let i0 = Swift.min(Int(v), nIn - 1)
            return (i0, Swift.min(i0 + 1, nIn - 1), v - Double(i0))
        }
        for oy in 0..<ho {
            let (y0, y1, ly) = taps(oy, ho, hi)
            for ox in 0..<wo {
                let (x0, x1, lx) = taps(ox, wo, wi)
                let top = (1 - lx) * Double(src[y0 * wi + x0]) + lx * Double(src[y0 * wi + x1])
                let bottom = (1 - lx) * Double(src[y1 * wi + x0]) + lx * Double(src[y1 * wi + x1])
                dst[oy * wo + ox] = T((1 - ly) * top + ly * bottom)
            }
        }
    }
}
