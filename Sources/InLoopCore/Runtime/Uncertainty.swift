import Synchronization

// Uncertainty (issue 15, item 2): ensembles and MC-dropout, each one graph whose outputs are the mean
// and the spread over the members (or samples), computed by ops in that graph.
//
// Public API:
//   Engine.Uncertainty.ensemble(_:name:)      one graph from N member graphs: outputs ensemble_mean and
//                                             ensemble_spread; members that are the same Dense chain are
//                                             stacked (one GEMM for the first layer, one batched MatMul
//                                             per later layer), others run side by side
//   Engine.Uncertainty.mcDropout(_:samples:)  S copies of a graph with each Dropout a product with a mask
//                                             input, and the same two outputs
//   Model.isEnsemble                          the graph's outputs are ensemble_mean, ensemble_spread
//   Model.setMCDropout(samples:seed:)         turns MC-dropout on (samples ≥ 1) or off (0)
//   Model.forwardEnsemble(_:batch:mean:spread:)  mean and spread per output value
//
// The spread is the population standard deviation (ddof = 0): sqrt(mean over members of (y − mean)²).
// The masks of MC-dropout come from the model's xoshiro256** generator, seeded by setMCDropout and
// advanced by each call (the same seed and the same calls give the same bits); a kept value is scaled
// by 1/(1 − ratio) (inverted dropout, as PyTorch trains).

extension Engine {
    public enum Uncertainty {
        public static let meanName = "ensemble_mean"
        public static let spreadName = "ensemble_spread"
        /// At most this many members or samples (a bound that keeps every size product small).
        public static let maxMembers = 4096

        /// One Dropout of the MC graph: its drop ratio and the values per sample of its mask input.
        public struct Mask: Equatable, Sendable {
            public let ratio: Double
            public let perSample: Int
        }

        /// The ensemble of `members` (typed graphs of one dtype, each with one output; their inputs
        /// and output have the same shapes and names need not agree). Returns the graph and whether the
        /// members were stacked.
        public static func ensemble(_ members: [Graph], name: String = "ensemble") throws(InLoopError) -> (graph: Graph, stacked: Bool) {
            guard !members.isEmpty else { throw InLoopError(.invalidArgument, "an ensemble needs at least one member") }
            guard members.count <= maxMembers else {
                throw InLoopError(.invalidArgument, "an ensemble of \(members.count) members; at most \(maxMembers)")
            }
            for (k, m) in members.enumerated() {
                do { try m.inferTypes() } catch { throw error.prefixed("member \(k)") }
            }
            let first = members[0]
            for (k, m) in members.enumerated() {
                guard m.outputs.count == 1 else {
                    throw InLoopError(.unsupported, "member \(k) has \(m.outputs.count) outputs; an ensemble member has one")
                }
                guard m.dtype == first.dtype else {
                    throw InLoopError(.sizeMismatch, "member \(k) computes in \(m.dtype), member 0 in \(first.dtype)")
                }
                guard m.inputs.count == first.inputs.count else {
                    throw InLoopError(.sizeMismatch, "member \(k) has \(m.inputs.count) inputs, member 0 has \(first.inputs.count)")
                }
                for (i, v) in m.inputs.enumerated() where m[v].type?.shape.map(\.description) != first[first.inputs[i]].type?.shape.map(\.description) {
                    throw InLoopError(.sizeMismatch, "input \(i) of member \(k) has shape \(m[v].type?.description ?? "?"), member 0's \(first[first.inputs[i]].type?.description ?? "?")")
                }
                let a = m[m.outputs[0]].type, b = first[first.outputs[0]].type
                guard a != nil, a?.shape.map(\.description) == b?.shape.map(\.description) else {
                    throw InLoopError(.sizeMismatch, "the output of member \(k) has shape \(a?.description ?? "?"), member 0's \(b?.description ?? "?")")
                }
            }
            let opset = max(13, members.map(\.opset).max() ?? 0)
            let g = Graph(name: name, dtype: first.dtype, origin: .built, opset: opset)
            g.symbols = first.symbols
            g.batch = first.batch
            for v in first.inputs {
                guard let t = first[v].type else { throw InLoopError(.internal, "untyped graph input") }
                try g.addInput(first[v].name, t)
            }
            let stacked = try stack(members, into: g)
            if !stacked {
                var outs: [ValueID] = []
                for (k, m) in members.enumerated() {
                    var constants: [Int: ValueID] = [:]
                    outs.append(try g.appendCopy(of: m, prefix: "m\(k).", inputs: g.inputs, constants: &constants, dropoutMask: nil))
                }
                try moments(g, outs)
            }
            try g.verify()
            try g.inferTypes()
            return (g, stacked)
        }

        /// `samples` copies of `graph` (typed, one output) where each Dropout multiplies its input by a
        /// mask input (graph inputs after the model's, sample after sample, Dropout after Dropout, each
        /// leading with the batch), with the mean and spread over the copies as outputs.
        public static func mcDropout(_ graph: Graph, samples: Int) throws(InLoopError) -> (graph: Graph, masks: [Mask]) {
            guard samples >= 1, samples <= maxMembers else {
                throw InLoopError(.invalidArgument, "MC-dropout samples must be between 1 and \(maxMembers), got \(samples)")
            }
            guard graph.outputs.count == 1 else {
                throw InLoopError(.unsupported, "MC-dropout is for a model with one output; '\(graph.name)' has \(graph.outputs.count)")
            }
            guard let batch = graph.batch else {
                throw InLoopError(.unsupported, "MC-dropout needs a model whose input leads with a batch axis")
            }
            var masks: [Mask] = []
            for node in graph.nodes where node.op == DropoutOp.self {
                let where_ = graph.describe(node)
                if node.outputs.count > 1, graph.useCounts()[node.outputs[1].index] > 0 {
                    throw InLoopError(.unsupported, "\(where_): its mask output is used")
                }
                guard let x = node.inputs[0], let t = graph[x].type, t.rank >= 1, t.shape[0] == SymInt(batch) else {
                    throw InLoopError(.unsupported, "\(where_): its input does not lead with the batch")
                }
                var per = 1
                for d in t.shape.dropFirst() {
                    guard let k = d.known else { throw InLoopError(.unsupported, "\(where_): its input has the symbolic shape \(t.shape.formatted)") }
                    per = try Limits.product(per, k, "the values per sample of \(where_)")
                }
                var ratio = (node.attributes as? DropoutOp.Attributes)?.ratio ?? 0.5
                if node.inputs.count > 1, let r = node.inputs[1] {
                    guard let c = graph[r].constant, let v = try doubles(c).first else {
                        throw InLoopError(.unsupported, "\(where_): its ratio is computed at run time")
                    }
                    ratio = v
                }
                guard ratio >= 0, ratio < 1 else { throw InLoopError(.invalidArgument, "\(where_): ratio \(ratio) is outside [0, 1)") }
                masks.append(Mask(ratio: ratio, perSample: per))
            }
            guard !masks.isEmpty else {
                throw InLoopError(.invalidArgument, "model '\(graph.name)' has no Dropout node: MC-dropout would give zero spread")
            }
            _ = try Limits.product(samples, masks.count, "MC-dropout masks")
            let g = Graph(name: graph.name + ".mc", dtype: graph.dtype, origin: .built, opset: max(13, graph.opset))
            g.symbols = graph.symbols
            g.batch = graph.batch
            for v in graph.inputs {
                guard let t = graph[v].type else { throw InLoopError(.internal, "untyped graph input") }
                try g.addInput(graph[v].name, t)
            }
            let shared = g.inputs
            var outs: [ValueID] = []
            var constants: [Int: ValueID] = [:]   // the weights once, shared by the copies
            for s in 0..<samples {
                var k = 0
                outs.append(try g.appendCopy(of: graph, prefix: "s\(s).", inputs: shared, constants: &constants) { (x) throws(InLoopError) in
                    defer { k += 1 }
                    return try g.addInput("mc_mask_\(s)_\(k)", x)
                })
            }
            try moments(g, outs)
            try g.verify()
            try g.inferTypes()
            return (g, masks)
        }

        // MARK: - Building blocks

        /// A floating constant's elements as Double (exact from float32).
        static func doubles(_ t: Tensor) throws(InLoopError) -> [Double] {
            t.dtype == .float64 ? try t.values(as: Double.self) : try t.converted(to: .float64).values(as: Double.self)
        }

        /// Adds the outputs mean and spread over the member outputs `outs` (each [batch, per-sample...]).
        static func moments(_ g: Graph, _ outs: [ValueID]) throws(InLoopError) {
            guard let t = g[outs[0]].type ?? outputType(g, outs[0]) else { throw InLoopError(.internal, "untyped member output") }
            let per = t.shape.dropFirst().map { $0.known ?? -1 }
            guard !per.contains(-1), t.rank >= 1 else {
                throw InLoopError(.unsupported, "an ensemble output of shape \(t.shape.formatted): the batch first, then known sizes")
            }
            // each [B, 1, per...], concatenated along axis 1: [B, N, per...]
            let shape = try g.addConstant("ens.shape1", try Tensor(shape: [per.count + 2], values: ([0, 1] + per).map { Int64($0) }))
            var names: [String] = []
            for (k, o) in outs.enumerated() {
                let n = "ens.y\(k)"
                try g.addNode("ens.reshape\(k)", ReshapeOp.self, inputs: [g[o].name.isEmpty ? try g.name(o) : g[o].name, g[shape].name], outputs: [n])
                names.append(n)
            }
            let y: String
            if names.count == 1 { y = names[0] } else {
                y = "ens.stack"
                try g.addNode("ens.concat", ConcatOp.self, ["axis": .int(1)], inputs: names, outputs: [y])
            }
            try momentsOver(g, y, axis: 1)
        }

        /// mean = ReduceMean(y, axis), spread = sqrt(ReduceMean((y − mean)², axis)), both graph outputs.
        static func momentsOver(_ g: Graph, _ y: String, axis: Int) throws(InLoopError) {
            func reduceMean(_ x: String, _ out: String) throws(InLoopError) {
                if g.opset >= ReduceMeanOp.axesInputSince {
                    let a = try g.addConstant(out + ".axes", try Tensor(shape: [1], values: [Int64(axis)]))
                    try g.addNode(out + ".node", ReduceMeanOp.self, ["keepdims": .int(0)], inputs: [x, g[a].name], outputs: [out])
                } else {
                    try g.addNode(out + ".node", ReduceMeanOp.self, ["keepdims": .int(0), "axes": .ints([axis])], inputs: [x], outputs: [out])
                }
            }
            try reduceMean(y, meanName)
            // the mean broadcast back over the member axis: [B, 1, per...] against [B, N, per...]
            var centered = meanName
            if axis == 1 {
                let t = "ens.mean1"
                if g.opset >= 13 {   // Unsqueeze's axes are input 1 from opset 13
                    let a = try g.addConstant("ens.unsq.axes", try Tensor(shape: [1], values: [Int64(1)]))
                    try g.addNode("ens.unsq", UnsqueezeOp.self, inputs: [meanName, g[a].name], outputs: [t])
                } else {
                    try g.addNode("ens.unsq", UnsqueezeOp.self, ["axes": .ints([1])], inputs: [meanName], outputs: [t])
                }
                centered = t
            }
            try g.addNode("ens.dev", SubOp.self, inputs: [y, centered], outputs: ["ens.dev"])
            try g.addNode("ens.sq", MulOp.self, inputs: ["ens.dev", "ens.dev"], outputs: ["ens.sq"])
            try reduceMean("ens.sq", "ens.var")
            try g.addNode("ens.sqrt", SqrtOp.self, inputs: ["ens.var"], outputs: [spreadName])
            try g.markOutput(meanName)
            try g.markOutput(spreadName)
        }

        private static func outputType(_ g: Graph, _ v: ValueID) -> TensorType? {
            try? g.inferTypes()
            return g[v].type
        }

        /// Members that are the same chain of Dense nodes on a [batch, in] input: one Dense with the
        /// weights concatenated along the output axis, then per later layer one MatMul batched over a
        /// member axis (weights [N, in, out]), bias and activation. False (nothing added) otherwise.
        static func stack(_ members: [Graph], into g: Graph) throws(InLoopError) -> Bool {
            guard members.count > 1 else { return false }
            struct Layer { var w: [Double]; var b: [Double]?; var out: Int; var inp: Int; var act: Activation }
            // a prefix of one-output nodes on the input whose other operands are constants (the input
            // normalisation), then Dense nodes only
            func chain(_ m: Graph) throws(InLoopError) -> (prefix: [Node], layers: [Layer])? {
                guard m.inputs.count == 1, let t = m[m.inputs[0]].type, t.rank == 2, !m.nodes.isEmpty else { return nil }
                var prev = m.inputs[0]
                var prefix: [Node] = [], layers: [Layer] = []
                for node in m.nodes {
                    if layers.isEmpty, node.op != DenseOp.self {
                        guard node.outputs.count == 1, node.inputs.first == prev,
                              node.inputs.dropFirst().allSatisfy({ $0.map { m[$0].constant != nil } ?? true }) else { return nil }
                        prefix.append(node)
                        prev = node.outputs[0]
                        continue
                    }
                    guard node.op == DenseOp.self, let a = node.attributes as? DenseOp.Attributes, node.inputs[0] == prev,
                          let wv = node.inputs[1], let w = m[wv].constant, w.rank == 2 else { return nil }
                    var b: [Double]? = nil
                    if node.inputs.count > 2, let bv = node.inputs[2] {
                        guard let c = m[bv].constant else { return nil }
                        b = try doubles(c)
                    }
                    layers.append(Layer(w: try doubles(w), b: b, out: w.shape[0], inp: w.shape[1], act: a.activation))
                    prev = node.outputs[0]
                }
                return m.outputs == [prev] && !layers.isEmpty ? (prefix, layers) : nil
            }
            /// The same prefix: ops, attributes and constants (bitwise) alike, so the members share it.
            func samePrefix(_ a: [Node], _ ga: Graph, _ b: [Node], _ gb: Graph) throws(InLoopError) -> Bool {
                guard a.count == b.count else { return false }
                func attrs(_ n: Node) -> String { n.attributes.encoded().sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";") }
                for (x, y) in zip(a, b) {
                    guard x.op == y.op, x.inputs.count == y.inputs.count, attrs(x) == attrs(y) else { return false }
                    for (i, j) in zip(x.inputs.dropFirst(), y.inputs.dropFirst()) {
                        guard (i == nil) == (j == nil) else { return false }
                        if let i, let j {
                            guard let c = ga[i].constant, let d = gb[j].constant, c.shape == d.shape, c.dtype == d.dtype,
                                  try doubles(c).map(\.bitPattern) == doubles(d).map(\.bitPattern) else { return false }
                        }
                    }
                }
                return true
            }
            guard let (p0, l0) = try chain(members[0]) else { return false }
            var all = [l0]
            for m in members.dropFirst() {
                guard let (p, l) = try chain(m), try samePrefix(p, m, p0, members[0]), l.count == l0.count,
                      zip(l, l0).allSatisfy({ $0.out == $1.out && $0.inp == $1.inp && $0.act == $1.act && ($0.b == nil) == ($1.b == nil) })
                else { return false }
                all.append(l)
            }
            let n = members.count
            func tensor(_ shape: [Int], _ v: [Double]) throws(InLoopError) -> Tensor {
                g.dtype == .float64 ? try Tensor(shape: shape, values: v) : try Tensor(shape: shape, values: v.map { Float($0) })
            }
            // layer 0: [N·h, in] rows member after member, bias likewise
            let f = l0[0]
            let rows = try Limits.product(n, f.out, "the stacked first layer")
            _ = try Limits.product(rows, f.inp, "the stacked first layer")
            let w0 = try g.addConstant("ens.w0", try tensor([rows, f.inp], all.flatMap { $0[0].w }))
            // the shared prefix, once
            let m0 = members[0]
            var x = g.inputs[0]
            for node in p0 {
                var ins: [ValueID?] = [x]
                for i in node.inputs.dropFirst() {
                    guard let i else { ins.append(nil); continue }
                    ins.append(try g.addConstant("ens.p.\(g.values.count)", m0[i].constant!))
                }
                let out = ValueID(g.values.count)
                let name = "ens.p.\(node.name).\(out.index)"
                g.values.append(Value(name: name, type: nil, producer: NodeID(g.nodes.count), constant: nil, known: nil))
                g.names[name] = out
                g.nodes.append(Node(name: "ens.p." + node.name, op: node.op, attributes: node.attributes, inputs: ins, outputs: [out]))
                x = out
            }
            var ins = [g[x].name, g[w0].name]
            g.parameters = [w0]
            if f.b != nil {
                let b0 = try g.addConstant("ens.b0", try tensor([rows], all.flatMap { $0[0].b! }))
                g.parameters.append(b0)
                ins.append(g[b0].name)
            }
            try g.addNode("ens.dense0", DenseOp.self, ActivationOp.encode(f.act), inputs: ins, outputs: ["ens.h0"])
            // [B, N·h] → [B, N, h]
            let s = try g.addConstant("ens.shape0", try Tensor(shape: [3], values: [Int64(0), Int64(n), Int64(f.out)]))
            try g.addNode("ens.reshape0", ReshapeOp.self, inputs: ["ens.h0", g[s].name], outputs: ["ens.h0r"])
            guard l0.count > 1 else {
                try momentsOver(g, "ens.h0r", axis: 1)
                return true
            }
            // member axis first: [N, B, h]; per layer H·W[N, in, out] + b[N, 1, out], activation
            try g.addNode("ens.t0", TransposeOp.self, ["perm": .ints([1, 0, 2])], inputs: ["ens.h0r"], outputs: ["ens.h0t"])
            var h = "ens.h0t"
            for l in 1..<l0.count {
                let li = l0[l]
                var wt: [Double] = []
                wt.reserveCapacity(try Limits.product(n, try Limits.product(li.inp, li.out, "a stacked layer"), "a stacked layer"))
                for m in all {
                    for i in 0..<li.inp { for o in 0..<li.out { wt.append(m[l].w[o * li.inp + i]) } }   // wᵀ per member
                }
                let w = try g.addConstant("ens.w\(l)", try tensor([n, li.inp, li.out], wt))
                g.parameters.append(w)
                try g.addNode("ens.mm\(l)", MatMulOp.self, inputs: [h, g[w].name], outputs: ["ens.z\(l)"])
                var z = "ens.z\(l)"
                if li.b != nil {
                    let b = try g.addConstant("ens.b\(l)", try tensor([n, 1, li.out], all.flatMap { $0[l].b! }))
                    g.parameters.append(b)
                    try g.addNode("ens.add\(l)", AddOp.self, inputs: [z, g[b].name], outputs: ["ens.zb\(l)"])
                    z = "ens.zb\(l)"
                }
                if li.act != .identity {
                    try g.addNode("ens.act\(l)", ActivationOp.self, ActivationOp.encode(li.act), inputs: [z], outputs: ["ens.a\(l)"])
                    z = "ens.a\(l)"
                }
                h = z
            }
            try momentsOver(g, h, axis: 0)
            return true
        }
    }

    /// The MC-dropout state of a model: the graph of `samples` copies, its model, the masks' layout,
    /// the generator and the mask buffers (grown to the largest batch seen).
    final class MCDropout {
        let model: Model
        let samples: Int
        let masks: [Uncertainty.Mask]
        let seed: UInt64
        var random: RandomState
        /// Mask values of one call, input after input (caller's type), and the input pointer list.
        private var buffer: UnsafeMutableRawPointer? = nil
        private var bufferBytes = 0
        let pointers: UnsafeMutablePointer<UnsafeRawPointer?>

        init(model: Model, samples: Int, masks: [Uncertainty.Mask], seed: UInt64) {
            self.model = model; self.samples = samples; self.masks = masks; self.seed = seed
            random = RandomState(seed: seed)
            pointers = .allocate(capacity: model.inputSpecs.count)
            pointers.initialize(repeating: nil, count: model.inputSpecs.count)
        }

        deinit { buffer?.deallocate(); pointers.deallocate() }

        /// Draws the masks of one call of `batch` samples into the buffer and fills `pointers` from
        /// index `first` (the model's own inputs come before).
        func draw<U: EngineScalar>(_: U.Type, batch: Int, first: Int) throws(InLoopError) {
            var total = 0
            for m in masks { total = try Limits.sum(total, try Limits.product(batch, m.perSample, "a mask"), "the masks") }
            total = try Limits.product(total, samples, "the masks")
            let bytes = try Limits.product(total, MemoryLayout<U>.stride, "the masks")
            if bufferBytes < bytes {
                try Limits.allocation(bytes: bytes, "MC-dropout masks")
                buffer?.deallocate()
                buffer = .allocate(byteCount: bytes, alignment: 64)
                bufferBytes = bytes
            }
            let p = buffer!.bindMemory(to: U.self, capacity: total)
            var at = 0, k = first
            // two 32-bit draws per generator step: kept when the draw is ≥ ratio·2³² (probability
            // 1 − ratio to within 2⁻³²), integer compares only
            for _ in 0..<samples {
                for m in masks {
                    let c = batch * m.perSample, keep = U(1 / (1 - m.ratio))
                    let t = UInt32(clamping: UInt64((m.ratio * 4294967296).rounded(.up)))
                    let q = p + at
                    var i = 0
                    while i + 1 < c {
                        let r = random.next()
                        q[i] = UInt32(truncatingIfNeeded: r >> 32) < t ? 0 : keep
                        q[i + 1] = UInt32(truncatingIfNeeded: r) < t ? 0 : keep
                        i += 2
                    }
                    if i < c { q[i] = UInt32(truncatingIfNeeded: random.next() >> 32) < t ? 0 : keep }
                    pointers[k] = UnsafeRawPointer(q)
                    at += c; k += 1
                }
            }
        }
    }

    /// The scratch spread of a plain forward on an ensemble (the caller asked for the mean only).
    final class EnsembleScratch {
        private var buffer: UnsafeMutableRawPointer? = nil
        private var bytes = 0
        let busy = Atomic<Bool>(false)
        deinit { buffer?.deallocate() }
        func get<U>(_: U.Type, count: Int) throws(InLoopError) -> UnsafeMutablePointer<U> {
            let b = try Limits.product(max(count, 1), MemoryLayout<U>.stride, "the spread")
            if bytes < b {
                try Limits.allocation(bytes: b, "the spread")
                buffer?.deallocate()
                buffer = .allocate(byteCount: b, alignment: 64)
                bytes = b
            }
            return buffer!.bindMemory(to: U.self, capacity: count)
        }
    }
}

extension Engine.Graph {
    /// Appends the nodes of `m` with its inputs bound to `inputs` (values of this graph), its constants
    /// and node outputs renamed with `prefix`; with `dropoutMask`, each Dropout becomes x · mask, the
    /// mask a value the closure makes for x's type. Returns the value of m's (one) output.
    func appendCopy(of m: Engine.Graph, prefix: String, inputs: [Engine.ValueID], constants: inout [Int: Engine.ValueID],
                    dropoutMask: ((Engine.TensorType) throws(InLoopError) -> Engine.ValueID)?) throws(InLoopError) -> Engine.ValueID {
        var map = [Engine.ValueID?](repeating: nil, count: m.values.count)
        for (k, v) in m.inputs.enumerated() { map[v.index] = inputs[k] }
        let fresh = constants.isEmpty
        for (i, v) in m.values.enumerated() where v.constant != nil && map[i] == nil {
            if let id = constants[i] { map[i] = id; continue }
            let id = try addConstant(prefix + (v.name.isEmpty ? "c\(i)" : v.name), v.constant!)
            constants[i] = id
            map[i] = id
        }
        if fresh { for p in m.parameters { if let id = map[p.index] { parameters.append(id) } } }
        for node in m.nodes {
            var ins: [Engine.ValueID?] = []
            for i in node.inputs {
                guard let i else { ins.append(nil); continue }
                guard let id = map[i.index] else { throw InLoopError(.internal, "\(m.describe(node)): an input is not defined before it") }
                ins.append(id)
            }
            let nodeID = Engine.NodeID(nodes.count)
            var outs: [Engine.ValueID] = []
            for o in node.outputs {
                let name = m[o].name.isEmpty ? "" : prefix + m[o].name
                guard name.isEmpty || names[name] == nil else { throw InLoopError(.format, "'\(name)' is defined twice") }
                let id = Engine.ValueID(values.count)
                values.append(Engine.Value(name: name, type: nil, producer: nodeID, constant: nil, known: nil))
                if !name.isEmpty { names[name] = id }
                map[o.index] = id
                outs.append(id)
            }
            if node.op == DropoutOp.self, let dropoutMask {
                guard let t = m[node.inputs[0]!].type, let x = ins[0] else { throw InLoopError(.internal, "untyped Dropout input") }
                let mask = try dropoutMask(t)
                nodes.append(Engine.Node(name: prefix + node.name, op: MulOp.self, attributes: NoAttributes(),
                                         inputs: [x, mask], outputs: [outs[0]]))
                continue
            }
            nodes.append(Engine.Node(name: prefix + node.name, op: node.op, attributes: node.attributes, inputs: ins, outputs: outs))
        }
        guard let out = map[m.outputs[0].index] else { throw InLoopError(.internal, "member output not defined") }
        return out
    }

    /// A name for an unnamed value (giving it one).
    func name(_ v: Engine.ValueID) throws(InLoopError) -> String {
        if !values[v.index].name.isEmpty { return values[v.index].name }
        let n = "ens.v\(v.index)"
        values[v.index].name = n
        names[n] = v
        return n
    }
}

extension Engine.Model {
    /// Whether this model is an ensemble (`Engine.Uncertainty.ensemble`, or a file saved from one):
    /// its two outputs are the mean and the spread.
    public var isEnsemble: Bool {
        outputSpecs.count == 2 && outputSpecs[0].name == Engine.Uncertainty.meanName && outputSpecs[1].name == Engine.Uncertainty.spreadName
    }

    /// MC-dropout samples per forwardEnsemble call (0: off).
    public var mcDropoutSamples: Int { mcDropout?.samples ?? 0 }

    /// Turns MC-dropout on with `samples` ≥ 1 samples per forwardEnsemble call and the generator
    /// seeded by `seed` (restarting it), or off with 0. Plain forward calls are not affected (Dropout
    /// stays the identity). Needs a model with one output and at least one Dropout node.
    public func setMCDropout(samples: Int, seed: UInt64) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard samples != 0 else { mcDropout = nil; return }
        if let convenienceError { throw convenienceError }
        guard samples >= 1, samples <= Engine.Uncertainty.maxMembers else {
            throw InLoopError(.invalidArgument, "MC-dropout samples must be between 0 and \(Engine.Uncertainty.maxMembers), got \(samples)")
        }
        if isEnsemble { throw InLoopError(.unsupported, "model '\(name)' is an ensemble: MC-dropout is for a single model") }
        // the same graph and samples: keep the compiled model, restart the generator
        if let mc = mcDropout, mc.samples == samples {
            mcDropout = Engine.MCDropout(model: mc.model, samples: samples, masks: mc.masks, seed: seed)
            return
        }
        let (g, masks) = try Engine.Uncertainty.mcDropout(try graph.copy(), samples: samples)
        let m = try Engine.Model(graph: g, name: name + ".mc")
        m.reproducible = reproducible
        mcDropout = Engine.MCDropout(model: m, samples: samples, masks: masks, seed: seed)
    }

    /// The mean and spread (population standard deviation) per output value of `batch` samples of
    /// the first input x: over the members of an ensemble, or over the MC-dropout samples. x, mean and
    /// spread as `forward`'s x and y.
    public func forwardEnsemble(_ x: UnsafePointer<Float>, batch: Int, mean: UnsafeMutablePointer<Float>,
                                spread: UnsafeMutablePointer<Float>) throws(InLoopError) {
        try ensembleForward(x, batch: batch, mean: mean, spread: spread)
    }

    public func forwardEnsemble(_ x: UnsafePointer<Double>, batch: Int, mean: UnsafeMutablePointer<Double>,
                                spread: UnsafeMutablePointer<Double>) throws(InLoopError) {
        try ensembleForward(x, batch: batch, mean: mean, spread: spread)
    }

    /// (Generic inside the module only: the public entry points above are concrete, so that this is
    /// specialised and a call allocates nothing.)
    private func ensembleForward<U: EngineScalar>(_ x: UnsafePointer<U>, batch: Int, mean: UnsafeMutablePointer<U>,
                                                  spread: UnsafeMutablePointer<U>) throws(InLoopError) {
        guard inputSpecs.count == 1 else {
            throw InLoopError(.invalidArgument, "model '\(name)' has \(inputSpecs.count) inputs; forward_ensemble takes one")
        }
        if let mc = mcDropout {
            try acquire()
            defer { release() }
            try mc.draw(U.self, batch: batch, first: 1)
            mc.pointers[0] = UnsafeRawPointer(x)
            var outs = (mean, spread)
            try withUnsafePointer(to: &outs) { (o) throws(InLoopError) in
                let ob = UnsafeBufferPointer(start: UnsafeRawPointer(o).assumingMemoryBound(to: UnsafeMutablePointer<U>.self), count: 2)
                let ib = UnsafeBufferPointer(start: UnsafeRawPointer(mc.pointers).assumingMemoryBound(to: UnsafePointer<U>.self),
                                             count: mc.model.inputSpecs.count)
                mc.model.checkFinite = checkFinite
                mc.model.reproducible = reproducible
                try mc.model.runAny(batch: batch, inputs: ib, outputs: ob)
            }
            return
        }
        guard isEnsemble else {
            throw InLoopError(.invalidArgument, "model '\(name)' is not an ensemble and MC-dropout is off (inloop_model_set_mc_dropout)")
        }
        var xp = x
        var outs = (mean, spread)
        try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
            try withUnsafePointer(to: &outs) { (o) throws(InLoopError) in
                let ob = UnsafeBufferPointer(start: UnsafeRawPointer(o).assumingMemoryBound(to: UnsafeMutablePointer<U>.self), count: 2)
                try runAny(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: ob)
            }
        }
    }

    /// A plain forward of an ensemble: the mean (the spread goes to a scratch array of the model).
    func forwardEnsembleMean<U: EngineScalar>(_ x: UnsafePointer<U>, batch: Int, into y: UnsafeMutablePointer<U>) throws(InLoopError) {
        guard ensembleScratch.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw InLoopError(.busy, "model '\(name)' is in use by another call")
        }
        defer { ensembleScratch.busy.store(false, ordering: .releasing) }
        guard batch >= 1, batch <= Int(Int32.max) else { throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)") }
        let s = try ensembleScratch.get(U.self, count: try Limits.arrayCount(batch: batch, perSample: outputSpecs[1].count))
        var xp = x
        var outs = (y, s)
        try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
            try withUnsafePointer(to: &outs) { (o) throws(InLoopError) in
                let ob = UnsafeBufferPointer(start: UnsafeRawPointer(o).assumingMemoryBound(to: UnsafeMutablePointer<U>.self), count: 2)
                try runAny(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: ob)
            }
        }
    }
}
