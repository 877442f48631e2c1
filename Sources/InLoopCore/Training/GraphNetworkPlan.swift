/// The per-batch-size compiled form of a `GraphNetwork`: storages (buffers of values, gradients and
/// tangents) and the list of differentiable steps, and the builder that lowers graph nodes into it.

/// Where a value lives. Aliases (reshape-like ops) share their source's storage.
enum GStorageKind {
    /// The caller's input array (read only).
    case input
    /// Computed by a step, one buffer per plan.
    case runtime
    /// A slice of `parameters` / `gradients` at this offset.
    case parameter(Int)
    /// A graph constant (or a constant made at compile time), no gradient.
    case constant
}

struct GStorage {
    var kind: GStorageKind
    var count: Int
    /// Depends on the graph input (has a tangent; can carry an input gradient).
    var onInput: Bool
    /// Depends on a parameter (carries parameter gradients).
    var onParameter: Bool
}

/// Element (r, j) of a value seen as `rows.count × length` ↦ offset `rows[r] + j·stride` in another
/// value: broadcasting operands and transposes.
struct StridedMap {
    var rows: [Int]
    var length: Int
    var stride: Int

    /// `strides[d]`: the element stride in the source of output axis d (0 for a broadcast axis).
    init(shape: [Int], strides: [Int]) {
        let r = shape.count
        guard r > 0 else { rows = [0]; length = 1; stride = 0; return }
        length = shape[r - 1]
        stride = strides[r - 1]
        let outer = product(shape[..<(r - 1)])
        var rows: [Int] = []
        rows.reserveCapacity(outer)
        var idx = [Int](repeating: 0, count: r - 1)
        var off = 0
        for _ in 0..<outer {
            rows.append(off)
            var d = r - 2
            while d >= 0 {
                idx[d] += 1
                off += strides[d]
                if idx[d] < shape[d] { break }
                off -= strides[d] * shape[d]
                idx[d] = 0
                d -= 1
            }
        }
        self.rows = rows
    }

    /// Strides of a (right-aligned, NumPy) broadcast operand of shape `s` within `out`.
    static func broadcastStrides(_ s: [Int], to out: [Int]) -> [Int] {
        var st = [Int](repeating: 0, count: out.count)
        var acc = 1
        for i in Swift.stride(from: s.count - 1, through: 0, by: -1) {
            let o = i + out.count - s.count
            st[o] = s[i] == 1 ? 0 : acc
            acc *= s[i]
        }
        return st
    }
}

struct GemmInfo {
    var m: Int, n: Int, k: Int
    var transA: Bool, transB: Bool
    var alpha: Double, beta: Double
    /// Element strides of C along Y's rows and columns (0 where C is broadcast).
    var cRow: Int, cCol: Int
}

struct MatMulInfo {
    var m: Int, n: Int, k: Int
    /// One GEMM per entry: offsets into A, B and Y.
    var aOffsets: [Int], bOffsets: [Int], yOffsets: [Int]
}

enum GKind {
    case gemm(GemmInfo)
    case matMul(MatMulInfo)
    /// Maps for the backward and tangent sweeps; shapes for the forward kernel.
    case binary(BinaryOp, a: StridedMap, b: StridedMap, aShape: [Int], bShape: [Int], yShape: [Int])
    case activation(Activation)
    case unary(UnaryFunction)
    case transpose(StridedMap)
    /// Inputs stacked along an axis: `outer` blocks, input i contributing `sizes[i]·inner` values each.
    case concat(outer: Int, inner: Int, sizes: [Int])
    case softmax(outer: Int, length: Int, inner: Int, log: Bool)
    case conv(ConvGeometry, batch: Int)
    /// `indices`: the plan's index store of the arg-max of every output.
    case maxPool(PoolGeometry, planes: Int, indices: Int)
    case averagePool(PoolGeometry, planes: Int, includePad: Bool)
    case globalAverage(planes: Int, spatial: Int)
    case globalMax(planes: Int, spatial: Int, indices: Int)
    case batchNorm(batch: Int, channels: Int, spatial: Int, epsilon: Double)
    /// Maps: offset in Scale / B of each normalised column (broadcast). `stats`: the plan's buffer of
    /// per-row mean and 1/σ.
    case layerNorm(rows: Int, cols: Int, epsilon: Double, scaleMap: [Int], biasMap: [Int]?, stats: Int)
}

struct GStep {
    var kind: GKind
    /// Storages read (-1: optional input absent).
    var inputs: [Int]
    var output: Int
    var node: String
}

/// Integer scratch (arg-max positions), owned.
final class IndexBuffer {
    let base: UnsafeMutablePointer<Int>
    init(count: Int) throws(InLoopError) {
        let (bytes, o) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Int>.stride)
        guard !o else { throw InLoopError(.outOfMemory, "cannot allocate \(count) indices") }
        try Limits.allocation(bytes: bytes, "\(count) arg-max indices")
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: -1, count: max(count, 1))
    }
    deinit { base.deallocate() }
}

final class GraphPlan<T: Real> {
    let batch: Int
    var storages: [GStorage] = []
    var steps: [GStep] = []
    var values: [UnsafeMutablePointer<T>] = []
    var grads: [UnsafeMutablePointer<T>?] = []
    var tangents: [UnsafeMutablePointer<T>?] = []
    var owned: [Buffer<T>] = []
    var indexStores: [IndexBuffer] = []
    var statBuffers: [Buffer<T>] = []
    var workspace: Buffer<T>? = nil
    var inputStorage = 0
    var outputStorage = 0
    var outputShape: [Int] = []
    var lastUse = 0
    var gradsReady = false
    var tangentsReady = false
    /// `wanted(parameters:input:)` per combination (index: parameters + 2·input).
    var wantCache: [[Bool]?] = [nil, nil, nil, nil]
    /// Placeholder value pointer of the input until the first forward.
    let inputPlaceholder: Buffer<T>

    init(batch: Int) throws(InLoopError) {
        self.batch = batch
        inputPlaceholder = try Buffer<T>(count: 1)
    }
}

/// Lowers the graph's nodes (in topological order) into a `GraphPlan` for one batch size.
struct GraphPlanBuilder<T: Real> {
    /// What the builder knows about a named value.
    enum Known {
        /// Integers known at compile time (shape computations).
        case int(IntTensor)
        /// A float value in a storage; `tensor` holds its data when it is a compile-time constant.
        case slot(shape: [Int], storage: Int, tensor: Tensor?)
    }

    let net: GraphNetwork<T>
    let batch: Int
    let plan: GraphPlan<T>
    var known: [String: Known] = [:]
    var workspaceNeed = 0
    /// Floats of the runtime values allocated so far (checked against the work-space limits).
    var runtimeFloats = 0
    var uses: [String: Int] = [:]

    init(network: GraphNetwork<T>, batch: Int) throws(InLoopError) {
        net = network
        self.batch = batch
        plan = try GraphPlan<T>(batch: batch)
    }

    // MARK: Driver

    mutating func build() throws(InLoopError) -> GraphPlan<T> {
        let graph = net.graph
        for node in graph.nodes { for i in node.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
        for o in graph.outputs { uses[o, default: 0] += 1 }
        // The input.
        let inShape = [batch] + net.inputShape
        plan.inputStorage = addStorage(GStorage(kind: .input, count: batch * net.inputSize, onInput: true, onParameter: false),
                                       value: plan.inputPlaceholder.base)
        known[net.inputName] = .slot(shape: inShape, storage: plan.inputStorage, tensor: nil)
        // Constants and parameters.
        for (name, c) in graph.constants {
            switch c {
            case .int(let t): known[name] = .int(t)
            case .float(let t):
                if let off = net.parameterOffsets[name] {
                    let s = addStorage(GStorage(kind: .parameter(off), count: t.count, onInput: false, onParameter: true),
                                       value: net.parameters.base + off)
                    plan.grads[s] = net.gradients.base + off
                    known[name] = .slot(shape: t.shape, storage: s, tensor: nil)
                } else {
                    let b = try net.constantBuffer(name, t)
                    let s = addStorage(GStorage(kind: .constant, count: t.count, onInput: false, onParameter: false), value: b.base)
                    known[name] = .slot(shape: t.shape, storage: s, tensor: t)
                }
            }
        }
        for i in net.order {
            let node = graph.nodes[i]
            do {
                try lower(node)
            } catch {
                throw error.prefixed("node '\(node.name)' (\(node.opType))")
            }
            for (k, out) in node.outputs.enumerated() where !out.isEmpty && known[out] == nil && (uses[out] ?? 0) > 0 {
                throw InLoopError(.unsupported, "node '\(node.name)' (\(node.opType)): output \(k) ('\(out)') is used, but GraphNetwork computes only the inference output of \(node.opType)")
            }
        }
        guard let v = known[net.outputName] else {
            throw InLoopError(.format, "graph output '\(net.outputName)' is not produced by any node")
        }
        guard case .slot(let shape, let s, _) = v, plan.storages[s].onInput else {
            throw InLoopError(.unsupported, "graph output '\(net.outputName)' does not depend on the input '\(net.inputName)'")
        }
        guard shape.first == batch else {
            throw InLoopError(.unsupported, "graph output '\(net.outputName)' has shape \(Tensor.format(shape)) for batch \(batch); the batch must be its first axis")
        }
        plan.outputStorage = s
        plan.outputShape = Array(shape.dropFirst())
        plan.workspace = try Buffer<T>(count: workspaceNeed)
        return plan
    }

    mutating func addStorage(_ s: GStorage, value: UnsafeMutablePointer<T>) -> Int {
        plan.storages.append(s)
        plan.values.append(value)
        plan.grads.append(nil)
        plan.tangents.append(nil)
        return plan.storages.count - 1
    }

    /// A new computed value depending on `inputs` (storages).
    mutating func newRuntime(_ shape: [Int], from inputs: [Int]) throws(InLoopError) -> Int {
        let count = try Tensor.elementCount(shape)
        // Every value of the differentiable plan has its own buffer: their sum is its work space.
        runtimeFloats = try Limits.sum(runtimeFloats, count, "work space")
        try Limits.workspace(floats: runtimeFloats, batch: batch)
        let b = try Buffer<T>(count: count)
        plan.owned.append(b)
        let present = inputs.filter { $0 >= 0 }
        return addStorage(GStorage(kind: .runtime, count: count,
                                   onInput: present.contains { plan.storages[$0].onInput },
                                   onParameter: present.contains { plan.storages[$0].onParameter }),
                          value: b.base)
    }

    /// A compile-time constant made here (from integers or the integer evaluator).
    mutating func newConstant(_ t: Tensor) throws(InLoopError) -> Int {
        let b = try Buffer<T>(count: t.count)
        for i in 0..<t.count { b.base[i] = T(t.storage.base[i]) }
        plan.owned.append(b)
        return addStorage(GStorage(kind: .constant, count: t.count, onInput: false, onParameter: false), value: b.base)
    }

    mutating func emit(_ kind: GKind, _ node: Node, inputs: [Int], shape: [Int]) throws(InLoopError) {
        let y = try newRuntime(shape, from: inputs)
        plan.steps.append(GStep(kind: kind, inputs: inputs, output: y, node: node.name))
        bind(node.outputs.first ?? "", .slot(shape: shape, storage: y, tensor: nil))
    }

    mutating func bind(_ name: String, _ v: Known) {
        guard !name.isEmpty else { return }
        known[name] = v
    }

    // MARK: Inputs of a node

    func input(_ node: Node, _ i: Int) -> Known? {
        guard i < node.inputs.count, !node.inputs[i].isEmpty else { return nil }
        return known[node.inputs[i]]
    }

    /// A float input: its shape and storage (integers become a constant).
    mutating func slot(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> (shape: [Int], storage: Int) {
        guard let v = input(node, i) else { throw InLoopError(.format, "input \(i) (\(what)) is missing") }
        switch v {
        case .slot(let shape, let s, _): return (shape, s)
        case .int(let t):
            let s = try newConstant(try Tensor(shape: t.shape, values: t.values.map { Float($0) }))
            return (t.shape, s)
        }
    }

    /// An optional float input.
    mutating func optionalSlot(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> (shape: [Int], storage: Int)? {
        guard input(node, i) != nil else { return nil }
        return try slot(node, i, what)
    }

    /// A float input that must not depend on the graph input (weights, normalisation vectors).
    mutating func weightSlot(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> (shape: [Int], storage: Int)? {
        guard let r = try optionalSlot(node, i, what) else { return nil }
        guard !plan.storages[r.storage].onInput else {
            throw InLoopError(.unsupported, "input \(i) (\(what)) depends on the graph input; GraphNetwork needs it constant or trainable")
        }
        return r
    }

    /// Integers known at compile time.
    func ints(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> [Int]? {
        guard let v = input(node, i) else { return nil }
        switch v {
        case .int(let t): return t.values
        case .slot(_, _, let t?):
            var out: [Int] = []
            for x in t.values {
                guard x.isFinite, x == x.rounded(), abs(x) < 9.0e15 else {
                    throw InLoopError(.format, "input \(i) (\(what)) must hold integers, got \(x)")
                }
                out.append(Int(x))
            }
            return out
        case .slot:
            throw InLoopError(.unsupported, "input \(i) (\(what)) is computed at run time or trainable; it must be known at load time")
        }
    }

    /// A float scalar known at compile time.
    func scalar(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> Float? {
        guard let v = input(node, i) else { return nil }
        switch v {
        case .int(let t):
            guard t.count == 1 else { throw InLoopError(.format, "input \(i) (\(what)) must be a scalar") }
            return Float(t.values[0])
        case .slot(_, _, let t?):
            guard t.count == 1 else { throw InLoopError(.format, "input \(i) (\(what)) must be a scalar, got shape \(Tensor.format(t.shape))") }
            return t.storage[0]
        case .slot:
            throw InLoopError(.unsupported, "input \(i) (\(what)) must be a constant known at load time")
        }
    }

    // MARK: Lowering

    mutating func lower(_ node: Node) throws(InLoopError) {
        for (i, name) in node.inputs.enumerated() where !name.isEmpty && known[name] == nil {
            throw InLoopError(.format, "input \(i) '\(name)' is not defined (not a graph input, constant or earlier output)")
        }
        let out = node.outputs.first ?? ""
        if case .shape(let start, let end) = node.op {
            guard let v = input(node, 0) else { throw InLoopError(.format, "input 0 (data) is missing") }
            let shape: [Int]
            switch v {
            case .int(let t): shape = t.shape
            case .slot(let s, _, _): shape = s
            }
            let r = shape.count
            var s = start < 0 ? start + r : start, e = end.map { $0 < 0 ? $0 + r : $0 } ?? r
            s = min(max(s, 0), r); e = min(max(e, 0), r)
            bind(out, .int(IntTensor(Array(shape[s..<max(s, e)]))))
            return
        }
        // Integer (shape) computations and constant-producing ops, at compile time.
        var present: [Value?] = []
        var allKnown = true
        for name in node.inputs {
            if name.isEmpty { present.append(nil); continue }
            switch known[name] {
            case .int(let t)?: present.append(.int(t))
            case .slot(_, _, let t?)?: present.append(.float(t, fromGraph: false))
            case .slot(let shape, let s, nil)?: allKnown = false; present.append(.runtime(shape: shape, storage: s))
            case nil: present.append(nil)
            }
        }
        if allKnown, let results = try IntEvaluator.evaluate(node, present: present) {
            for (k, v) in results.enumerated() where k < node.outputs.count {
                switch v {
                case .int(let t): bind(node.outputs[k], .int(t))
                case .float(let t, _): bind(node.outputs[k], .slot(shape: t.shape, storage: try newConstant(t), tensor: t))
                case .runtime: throw InLoopError(.internal, "compile-time evaluation produced a run-time value")
                }
            }
            return
        }
        switch node.op {
        case .gemm(let alpha, let beta, let transA, let transB):
            try lowerGemm(node, alpha: alpha, beta: beta, transA: transA, transB: transB)
        case .matMul:
            try lowerMatMul(node)
        case .binary(let op):
            guard [.add, .sub, .mul, .div, .pow].contains(op) else { throw unsupported(node) }
            let a = try slot(node, 0, "A"), b = try slot(node, 1, "B")
            let yShape: [Int]
            do { yShape = try TensorOps.broadcastShape(a.shape, b.shape) } catch {
                throw InLoopError(.format, "shapes \(Tensor.format(a.shape)) and \(Tensor.format(b.shape)) do not broadcast")
            }
            try emit(.binary(op, a: StridedMap(shape: yShape, strides: StridedMap.broadcastStrides(a.shape, to: yShape)),
                             b: StridedMap(shape: yShape, strides: StridedMap.broadcastStrides(b.shape, to: yShape)),
                             aShape: a.shape, bShape: b.shape, yShape: yShape),
                     node, inputs: [a.storage, b.storage], shape: yShape)
        case .activation(let act):
            let x = try slot(node, 0, "X")
            try emit(.activation(act), node, inputs: [x.storage], shape: x.shape)
        case .unary(let f):
            switch f {
            case .erf, .exp, .log, .sqrt, .neg, .abs, .reciprocal, .softsign, .selu, .pow, .clip: break
            default: throw unsupported(node)
            }
            let x = try slot(node, 0, "X")
            try emit(.unary(f), node, inputs: [x.storage], shape: x.shape)
        case .clip(let minAttr, let maxAttr):
            let lo = try scalar(node, 1, "min") ?? minAttr ?? -Float.infinity
            let hi = try scalar(node, 2, "max") ?? maxAttr ?? Float.infinity
            let x = try slot(node, 0, "input")
            try emit(.unary(.clip(min: lo, max: hi)), node, inputs: [x.storage], shape: x.shape)
        case .softmax(let axis, let coerce2D, let log):
            let x = try slot(node, 0, "input")
            let shape = x.shape
            let a = try normalizedAxis(axis, rank: shape.count, "axis")
            let outer = product(shape[..<a])
            let (length, inner) = coerce2D ? (product(shape[a...]), 1) : (shape.isEmpty ? 1 : shape[a], product(shape[(a + 1)...]))
            try emit(.softmax(outer: outer, length: length, inner: inner, log: log), node, inputs: [x.storage], shape: shape)
        case .identity:
            try alias(node, try slot(node, 0, "input").shape)
        case .cast(let to):
            guard to == .float else {
                throw InLoopError(.unsupported, "casting a value computed at run time to an integer type is not differentiable")
            }
            try alias(node, try slot(node, 0, "input").shape)
        case .flatten(let axis):
            let shape = try slot(node, 0, "input").shape
            let a = try normalizedAxis(axis, rank: shape.count + 1, "axis")
            try alias(node, [product(shape[..<a]), product(shape[a...])])
        case .reshape(let allowZero):
            let shape = try slot(node, 0, "data").shape
            guard let target = try ints(node, 1, "shape") else { throw InLoopError(.format, "input 1 (shape) is missing") }
            try alias(node, try reshaped(shape, target, allowZero: allowZero))
        case .squeeze(let axesAttr):
            let shape = try slot(node, 0, "data").shape
            var axes = axesAttr
            if axes == nil { axes = try ints(node, 1, "axes") }
            try alias(node, try squeezedShape(shape, axes: axes))
        case .unsqueeze(let axesAttr):
            let shape = try slot(node, 0, "data").shape
            var axes = axesAttr
            if axes == nil { axes = try ints(node, 1, "axes") }
            guard let axes else { throw InLoopError(.format, "no axes given") }
            try alias(node, try unsqueezedShape(shape, axes: axes))
        case .transpose(let permAttr):
            let x = try slot(node, 0, "data")
            let r = x.shape.count
            let perm = permAttr ?? Array((0..<r).reversed())
            guard perm.count == r, Set(perm) == Set(0..<r) else {
                throw InLoopError(.format, "perm \(Tensor.format(perm)) is not a permutation of the \(r) axes of \(Tensor.format(x.shape))")
            }
            var inStrides = [Int](repeating: 1, count: r)
            for d in stride(from: r - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * x.shape[d + 1] }
            let yShape = perm.map { x.shape[$0] }
            try emit(.transpose(StridedMap(shape: yShape, strides: perm.map { inStrides[$0] })), node, inputs: [x.storage], shape: yShape)
        case .concat(let axis):
            var parts: [(shape: [Int], storage: Int)] = []
            for i in 0..<node.inputs.count where !node.inputs[i].isEmpty { parts.append(try slot(node, i, "input \(i)")) }
            guard let first = parts.first else { throw InLoopError(.format, "no inputs") }
            let r = first.shape.count
            let a = try normalizedAxis(axis, rank: r, "axis")
            for p in parts where p.shape.count != r || (0..<r).contains(where: { $0 != a && p.shape[$0] != first.shape[$0] }) {
                throw InLoopError(.format, "input shapes \(parts.map { Tensor.format($0.shape) }.joined(separator: ", ")) differ outside axis \(axis)")
            }
            var yShape = first.shape
            yShape[a] = parts.reduce(0) { $0 + $1.shape[a] }
            try emit(.concat(outer: product(first.shape[..<a]), inner: product(first.shape[(a + 1)...]), sizes: parts.map { $0.shape[a] }),
                     node, inputs: parts.map { $0.storage }, shape: yShape)
        case .conv(let attrs):
            try lowerConv(node, attrs)
        case .maxPool(let attrs), .averagePool(let attrs):
            try lowerPool(node, attrs)
        case .globalAveragePool, .globalMaxPool:
            let x = try slot(node, 0, "X")
            guard x.shape.count >= 3 else { throw InLoopError(.format, "input X must have rank ≥ 3 (N, C, spatial...), got shape \(Tensor.format(x.shape))") }
            let planes = x.shape[0] * x.shape[1], spatial = product(x.shape[2...])
            let yShape = [x.shape[0], x.shape[1]] + [Int](repeating: 1, count: x.shape.count - 2)
            if case .globalAveragePool = node.op {
                try emit(.globalAverage(planes: planes, spatial: spatial), node, inputs: [x.storage], shape: yShape)
            } else {
                plan.indexStores.append(try IndexBuffer(count: planes))
                try emit(.globalMax(planes: planes, spatial: spatial, indices: plan.indexStores.count - 1), node, inputs: [x.storage], shape: yShape)
            }
        case .batchNormalization(let eps):
            let x = try slot(node, 0, "X")
            guard x.shape.count >= 2 else { throw InLoopError(.format, "input X must have rank ≥ 2, got \(Tensor.format(x.shape))") }
            let c = x.shape[1]
            var ins = [x.storage]
            for (i, what) in ["scale", "B", "input_mean", "input_var"].enumerated() {
                guard let p = try weightSlot(node, i + 1, what) else { throw InLoopError(.format, "input \(i + 1) (\(what)) is missing") }
                guard p.shape.reduce(1, *) == c else {
                    throw InLoopError(.format, "input \(i + 1) (\(what)) has shape \(Tensor.format(p.shape)) but X \(Tensor.format(x.shape)) has \(c) channels")
                }
                ins.append(p.storage)
            }
            try emit(.batchNorm(batch: x.shape[0], channels: c, spatial: product(x.shape[2...]), epsilon: Double(eps)),
                     node, inputs: ins, shape: x.shape)
        case .layerNormalization(let axis, let eps):
            let x = try slot(node, 0, "X")
            let a = try normalizedAxis(axis, rank: x.shape.count, "axis")
            let normShape = Array(x.shape[a...])
            let cols = product(normShape[...]), rows = product(x.shape[..<a])
            guard let scale = try weightSlot(node, 1, "Scale") else { throw InLoopError(.format, "input 1 (Scale) is missing") }
            let bias = try weightSlot(node, 2, "B")
            func columnMap(_ p: (shape: [Int], storage: Int), _ what: String) throws(InLoopError) -> [Int] {
                guard p.shape.count <= normShape.count, (try? TensorOps.broadcastShape(normShape, p.shape)) == normShape else {
                    throw InLoopError(.format, "\(what) of shape \(Tensor.format(p.shape)) does not broadcast to the normalised shape \(Tensor.format(normShape))")
                }
                let m = StridedMap(shape: normShape, strides: StridedMap.broadcastStrides(p.shape, to: normShape))
                var out: [Int] = []
                out.reserveCapacity(cols)
                for r in m.rows { for j in 0..<m.length { out.append(r + j * m.stride) } }
                return out
            }
            let scaleMap = try columnMap(scale, "Scale")
            let biasMap = try bias.map { (b) throws(InLoopError) in try columnMap(b, "B") }
            plan.statBuffers.append(try Buffer<T>(count: 2 * rows))
            try emit(.layerNorm(rows: rows, cols: cols, epsilon: Double(eps), scaleMap: scaleMap, biasMap: biasMap,
                                stats: plan.statBuffers.count - 1),
                     node, inputs: [x.storage, scale.storage, bias?.storage ?? -1], shape: x.shape)
        default:
            throw unsupported(node)
        }
    }

    func unsupported(_ node: Node) -> InLoopError {
        var what = node.opType
        switch node.op {
        case .binary(let op): what = "\(op)"
        case .unary(let f): what = "\(f)"
        default: break
        }
        return InLoopError(.unsupported, "\(what) has no derivative in GraphNetwork; differentiable ops: \(GraphNetwork<T>.supportedOps.joined(separator: ", "))")
    }

    /// Output 0 is input 0 under a new shape (shared storage: values, gradients and tangents).
    mutating func alias(_ node: Node, _ shape: [Int]) throws(InLoopError) {
        guard let v = input(node, 0) else { throw InLoopError(.format, "input 0 is missing") }
        let n = try Tensor.elementCount(shape)
        switch v {
        case .int(let t):
            guard n == t.count else { throw InLoopError(.format, "cannot view \(Tensor.format(t.shape)) as \(Tensor.format(shape))") }
            bind(node.outputs.first ?? "", .int(try IntTensor(shape: shape, values: t.values)))
        case .slot(let old, let s, let t):
            guard n == plan.storages[s].count else {
                throw InLoopError(.format, "cannot view \(Tensor.format(old)) (\(plan.storages[s].count) values) as \(Tensor.format(shape)) (\(n) values)")
            }
            let tensor = try t.map { (t) throws(InLoopError) in try Tensor(shape: shape, storage: t.storage) }
            bind(node.outputs.first ?? "", .slot(shape: shape, storage: s, tensor: tensor))
        }
    }

    mutating func lowerGemm(_ node: Node, alpha: Float, beta: Float, transA: Bool, transB: Bool) throws(InLoopError) {
        let a = try slot(node, 0, "A"), b = try slot(node, 1, "B")
        guard a.shape.count == 2, b.shape.count == 2 else {
            throw InLoopError(.format, "A and B must be matrices, got shapes \(Tensor.format(a.shape)) and \(Tensor.format(b.shape))")
        }
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
        guard k == kb else {
            throw InLoopError(.format, "A \(Tensor.format(a.shape))\(transA ? "ᵀ" : "") and B \(Tensor.format(b.shape))\(transB ? "ᵀ" : "") do not multiply (inner sizes \(k) and \(kb))")
        }
        var info = GemmInfo(m: m, n: n, k: k, transA: transA, transB: transB, alpha: Double(alpha), beta: Double(beta), cRow: 0, cCol: 0)
        var inputs = [a.storage, b.storage, -1]
        if let c = try optionalSlot(node, 2, "C"), beta != 0 {
            guard c.shape.count <= 2, (try? TensorOps.broadcastShape([m, n], c.shape)) == [m, n] else {
                throw InLoopError(.format, "C of shape \(Tensor.format(c.shape)) does not broadcast to [\(m), \(n)]")
            }
            let st = StridedMap.broadcastStrides(c.shape, to: [m, n])
            info.cRow = st[0]; info.cCol = st[1]
            inputs[2] = c.storage
        }
        try emit(.gemm(info), node, inputs: inputs, shape: [m, n])
    }

    mutating func lowerMatMul(_ node: Node) throws(InLoopError) {
        let a = try slot(node, 0, "A"), b = try slot(node, 1, "B")
        guard !a.shape.isEmpty, !b.shape.isEmpty else { throw InLoopError(.format, "MatMul operands must have rank ≥ 1") }
        let aS = a.shape.count == 1 ? [1] + a.shape : a.shape
        let bS = b.shape.count == 1 ? b.shape + [1] : b.shape
        let m = aS[aS.count - 2], k = aS[aS.count - 1], kb = bS[bS.count - 2], n = bS[bS.count - 1]
        guard k == kb else {
            throw InLoopError(.format, "A \(Tensor.format(a.shape)) and B \(Tensor.format(b.shape)) do not multiply (inner sizes \(k) and \(kb))")
        }
        let aBatch = Array(aS.dropLast(2)), bBatch = Array(bS.dropLast(2))
        let batchShape = try TensorOps.broadcastShape(aBatch, bBatch)
        var yShape = batchShape
        if a.shape.count > 1 { yShape.append(m) }
        if b.shape.count > 1 { yShape.append(n) }
        var info: MatMulInfo
        if bBatch.allSatisfy({ $0 == 1 }) && product(batchShape[...]) == product(aBatch[...]) {
            // B is one matrix: all of A's rows in one GEMM.
            info = MatMulInfo(m: product(aBatch[...]) * m, n: n, k: k, aOffsets: [0], bOffsets: [0], yOffsets: [0])
        } else {
            let count = product(batchShape[...])
            func offsets(_ s: [Int], matrix: Int) -> [Int] {
                var st = StridedMap.broadcastStrides(s, to: batchShape)
                st = st.map { $0 * matrix }
                let map = StridedMap(shape: batchShape, strides: st)
                var out: [Int] = []
                for r in map.rows { for j in 0..<map.length { out.append(r + j * map.stride) } }
                return out
            }
            info = MatMulInfo(m: m, n: n, k: k, aOffsets: offsets(aBatch, matrix: m * k), bOffsets: offsets(bBatch, matrix: k * n),
                              yOffsets: (0..<count).map { $0 * m * n })
        }
        try emit(.matMul(info), node, inputs: [a.storage, b.storage], shape: yShape)
    }

    mutating func lowerConv(_ node: Node, _ at: ConvAttributes) throws(InLoopError) {
        let x = try slot(node, 0, "X")
        guard let w = try weightSlot(node, 1, "W") else { throw InLoopError(.format, "input 1 (W) is missing") }
        let g = try at.convGeometry(input: x.shape, weight: w.shape)
        let b = try weightSlot(node, 2, "B")
        if let b, b.shape.reduce(1, *) != g.channelsOut {
            throw InLoopError(.format, "bias B has shape \(Tensor.format(b.shape)), expected \(g.channelsOut) values")
        }
        workspaceNeed = max(workspaceNeed, Conv.perSampleWorkspaceCount(geometry: g))
        try emit(.conv(g, batch: x.shape[0]), node, inputs: [x.storage, w.storage, b?.storage ?? -1],
                 shape: [x.shape[0], g.channelsOut] + g.outputSize)
    }

    mutating func lowerPool(_ node: Node, _ at: PoolAttributes) throws(InLoopError) {
        let x = try slot(node, 0, "X")
        let g = try at.geometry(input: x.shape)
        let planes = x.shape[0] * x.shape[1]
        let yShape = [x.shape[0], x.shape[1]] + g.outputSize
        if case .maxPool = node.op {
            plan.indexStores.append(try IndexBuffer(count: try Limits.product(planes, g.outputSpatialCount, "arg-max indices")))
            try emit(.maxPool(g, planes: planes, indices: plan.indexStores.count - 1), node, inputs: [x.storage], shape: yShape)
        } else {
            try emit(.averagePool(g, planes: planes, includePad: at.countIncludePad), node, inputs: [x.storage], shape: yShape)
        }
    }
}
