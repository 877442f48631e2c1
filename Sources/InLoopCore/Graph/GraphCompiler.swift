/// Compiles a `Graph` for one batch size N into a `CompiledPlan`: every shape concrete, everything that
/// does not depend on the inputs evaluated (integer shape computations and float constant folding),
/// dense/convolution ops fused with their bias, batch norm and activation, reshape-like ops turned
/// into aliases, and buffers assigned by liveness in one arena.

/// What the compiler knows about a value.
enum Value {
    /// Float data known at compile time; `fromGraph` when it is a constant of the graph itself (the same
    /// storage for every batch size, so tensors derived from it can be cached across compilations).
    case float(Tensor, fromGraph: Bool)
    case int(IntTensor)
    /// Computed at run time into `storage`, with a concrete shape.
    case runtime(shape: [Int], storage: Int)

    var shape: [Int] {
        switch self {
        case .float(let t, _): return t.shape
        case .int(let t): return t.shape
        case .runtime(let s, _): return s
        }
    }

    var isRuntime: Bool { if case .runtime = self { return true } else { return false } }
}

/// Tensors derived from graph constants (transposed weights, folded batch norms), shared by the plans
/// of all batch sizes.
final class DerivedCache {
    var tensors: [String: Tensor] = [:]
}

enum StorageKind {
    case input(Int)
    case output(Int)
    case constant(FloatBuffer)
    case buffer
}

struct StorageInfo {
    var kind: StorageKind
    var count: Int
}

/// Per-step facts the fusion rules need.
struct StepInfo {
    /// Cache key of the step's current weight and bias when both derive from graph constants only.
    var weightKey: String?
}

struct GraphCompiler {
    let graph: Graph
    let batch: Int
    let derived: DerivedCache
    /// Number of uses of each value (node inputs + graph outputs).
    let uses: [String: Int]
    let graphOutputs: Set<String>

    var values: [String: Value] = [:]
    var storages: [StorageInfo] = []
    var steps: [Step] = []
    var stepInfo: [StepInfo] = []
    /// Producing step of each storage, or -1.
    var producer: [Int] = []
    /// Number of value names bound to each storage.
    var refs: [Int] = []
    var keepAlive: [FloatBuffer] = []
    var folded = 0, fused = 0, aliased = 0

    init(graph: Graph, batch: Int, derived: DerivedCache, uses: [String: Int]) {
        self.graph = graph
        self.batch = batch
        self.derived = derived
        self.uses = uses
        self.graphOutputs = Set(graph.outputs)
    }

    // MARK: - Driver

    mutating func compile(order: [Int]) throws(InLoopError) -> CompiledPlan {
        for (name, c) in graph.constants {
            switch c {
            case .float(let t): values[name] = .float(t, fromGraph: true)
            case .int(let t): values[name] = .int(t)
            }
        }
        var inputStorage: [Int] = [], inputShapes: [[Int]] = []
        for (k, input) in graph.inputs.enumerated() {
            var shape: [Int] = []
            for (i, d) in input.dims.enumerated() { shape.append(i == 0 ? batch : (d ?? 0)) }
            let count = try Tensor.elementCount(shape)
            let s = newStorage(.input(k), count: count)
            inputStorage.append(s)
            inputShapes.append(shape)
            bind(input.name, .runtime(shape: shape, storage: s))
        }
        for i in order {
            let node = graph.nodes[i]
            do {
                try lower(node)
            } catch {
                throw error.prefixed("node '\(node.name)' (\(node.opType))")
            }
            for (k, out) in node.outputs.enumerated() where !out.isEmpty && values[out] == nil && (uses[out] ?? 0) > 0 {
                throw InLoopError(.unsupported, "node '\(node.name)' (\(node.opType)): output \(k) ('\(out)') is used but InLoop computes only the inference outputs of \(node.opType)")
            }
        }
        // Graph outputs: written straight into the caller's arrays when possible.
        var outputStorage: [Int] = []
        var outputShapes: [[Int]] = []
        for (k, name) in graph.outputs.enumerated() {
            guard let v = values[name] else { throw InLoopError(.format, "graph output '\(name)' is not produced by any node") }
            guard case .runtime(let shape, let s) = v else {
                throw InLoopError(.unsupported, "graph output '\(name)' does not depend on the inputs (it is a constant of shape \(Tensor.format(v.shape))); InLoop needs outputs with a batch axis")
            }
            guard let first = shape.first, first == batch else {
                throw InLoopError(.unsupported, "graph output '\(name)' has shape \(Tensor.format(shape)) for batch \(batch); InLoop needs the batch as the first axis of every output")
            }
            var target = s
            if case .buffer = storages[s].kind, producer[s] >= 0 {
                storages[s].kind = .output(k)
            } else {
                target = newStorage(.output(k), count: storages[s].count)
                emit(.copy(count: storages[s].count), inputs: [s], outputs: [target], node: "output '\(name)'")
            }
            outputStorage.append(target)
            outputShapes.append(shape)
        }
        return try CompiledPlan(batch: batch, steps: steps, storages: storages, inputStorage: inputStorage,
                                outputStorage: outputStorage, inputShapes: inputShapes,
                                outputShapes: outputShapes, keepAlive: keepAlive,
                                folded: folded, fused: fused, aliased: aliased)
    }

    // MARK: - Storages, steps, values

    mutating func newStorage(_ kind: StorageKind, count: Int) -> Int {
        storages.append(StorageInfo(kind: kind, count: count))
        producer.append(-1)
        refs.append(0)
        return storages.count - 1
    }

    mutating func newBuffer(_ shape: [Int]) throws(InLoopError) -> Int {
        newStorage(.buffer, count: try Tensor.elementCount(shape))
    }

    @discardableResult
    mutating func emit(_ kind: StepKind, inputs: [Int], outputs: [Int], scratch: Int = -1, node: String,
                       weightKey: String? = nil) -> Int {
        steps.append(Step(kind: kind, inputs: inputs, outputs: outputs, scratch: scratch, node: node))
        stepInfo.append(StepInfo(weightKey: weightKey))
        for o in outputs where producer[o] < 0 { producer[o] = steps.count - 1 }
        return steps.count - 1
    }

    /// Binds `name` to storage `s` that the consumed value `old` (read only by this node) leaves behind.
    mutating func takeOver(_ name: String, shape: [Int], storage s: Int) {
        refs[s] -= 1
        bind(name, .runtime(shape: shape, storage: s))
        fused += 1
    }

    mutating func bind(_ name: String, _ v: Value) {
        guard !name.isEmpty else { return }
        values[name] = v
        if case .runtime(_, let s) = v { refs[s] += 1 }
    }

    /// A tensor kept alive by the plan (or the cache) holding `count` floats.
    mutating func scratchTensor(_ shape: [Int]) throws(InLoopError) -> Tensor {
        try Tensor(zeros: shape)
    }

    /// The storage of a float input (a constant gets a constant storage).
    mutating func storage(of v: Value, _ what: String) throws(InLoopError) -> Int {
        switch v {
        case .runtime(_, let s): return s
        case .float(let t, _): return newStorage(.constant(t.storage), count: t.count)
        case .int:
            throw InLoopError(.unsupported, "\(what) is an integer tensor; InLoop computes in float32 and supports integer tensors only in shape computations known at load time")
        }
    }

    func input(_ node: Node, _ i: Int) -> Value? {
        guard i < node.inputs.count, !node.inputs[i].isEmpty else { return nil }
        return values[node.inputs[i]]
    }

    func required(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> Value {
        guard let v = input(node, i) else {
            throw InLoopError(.format, "input \(i) (\(what)) is missing")
        }
        return v
    }

    /// Integers known at compile time (from an integer tensor; float constants must hold integers).
    func ints(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> [Int]? {
        guard let v = input(node, i) else { return nil }
        switch v {
        case .int(let t): return t.values
        case .float(let t, _):
            var out: [Int] = []
            for x in t.values {
                guard x.isFinite, x == x.rounded(), abs(x) < 9.0e15 else {
                    throw InLoopError(.format, "input \(i) (\(what)) must hold integers, got \(x)")
                }
                out.append(Int(x))
            }
            return out
        case .runtime:
            throw InLoopError(.unsupported, "input \(i) (\(what)) depends on the model inputs; InLoop needs it known at load time")
        }
    }

    func floats(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> Tensor? {
        guard let v = input(node, i) else { return nil }
        switch v {
        case .float(let t, _): return t
        case .int(let t): return try Tensor(shape: t.shape, values: t.values.map { Float($0) })
        case .runtime:
            throw InLoopError(.unsupported, "input \(i) (\(what)) depends on the model inputs; InLoop needs it known at load time")
        }
    }

    /// True when the value `name` is read only once, by one node, is not a graph output, and its storage
    /// holds no other value: the producing step may then be changed to absorb its consumer.
    func soleUse(_ name: String, storage s: Int) -> Bool {
        (uses[name] ?? 0) == 1 && !graphOutputs.contains(name) && refs[s] == 1 && producer[s] >= 0
            && !graph.inputs.contains { $0.name == name }
    }

    /// A tensor derived from constants: cached across batch sizes when `key` is non-nil.
    mutating func derive(_ key: String?, _ make: () throws(InLoopError) -> Tensor) throws(InLoopError) -> Tensor {
        if let key, let t = derived.tensors[key] { return t }
        let t = try make()
        if let key { derived.tensors[key] = t } else { keepAlive.append(t.storage) }
        return t
    }

    // MARK: - Lowering

    mutating func lower(_ node: Node) throws(InLoopError) {
        for (i, name) in node.inputs.enumerated() where !name.isEmpty && values[name] == nil {
            throw InLoopError(.format, "input \(i) '\(name)' is not defined (not a graph input, constant or earlier output)")
        }
        let present = node.inputs.compactMap { $0.isEmpty ? nil : values[$0] }
        let anyRuntime = present.contains { $0.isRuntime }
        // Shape only needs shapes; the other shape ops never see runtime data.
        if case .shape(let start, let end) = node.op {
            let v = try required(node, 0, "data")
            let r = v.shape.count
            var s = start < 0 ? start + r : start, e = end.map { $0 < 0 ? $0 + r : $0 } ?? r
            s = min(max(s, 0), r); e = min(max(e, 0), r)
            bind(node.outputs[0], .int(IntTensor(Array(v.shape[s..<max(s, e)]))))
            folded += 1
            return
        }
        if !anyRuntime {
            if let results = try IntEvaluator.evaluate(node, present: node.inputs.map { $0.isEmpty ? nil : values[$0] }) {
                for (k, v) in results.enumerated() where k < node.outputs.count {
                    switch v {
                    case .float(let t, _): keepAlive.append(t.storage)
                    default: break
                    }
                    bind(node.outputs[k], v)
                }
                folded += 1
                return
            }
            try fold(node)
            folded += 1
            return
        }
        try lowerRuntime(node)
    }

    /// Constant folding of a float op: lower it on constant storages, run the steps now, keep the results.
    mutating func fold(_ node: Node) throws(InLoopError) {
        let stepMark = steps.count, storageMark = storages.count
        let saved = values
        let savedFolded = (fused, aliased)
        try lowerRuntime(node)
        // Run the new steps on temporary buffers.
        var temp: [FloatBuffer] = []
        let table = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: max(storages.count, 1))
        defer { table.deallocate() }
        let unused = try FloatBuffer(count: 1)   // storages before the node's: never read by its steps
        for s in 0..<storages.count {
            switch storages[s].kind {
            case .constant(let b): table[s] = b.base
            default:
                guard s >= storageMark else { table[s] = unused.base; continue }
                let b = try FloatBuffer(count: storages[s].count)
                temp.append(b)
                table[s] = b.base
            }
        }
        for st in steps[stepMark...] { st.execute(table, reproducible: false) }
        var results: [(String, Value)] = []
        for out in node.outputs where !out.isEmpty {
            guard let v = values[out] else { continue }
            if case .runtime(let shape, let s) = v {
                let t: Tensor
                if case .constant(let b) = storages[s].kind, b.count == storages[s].count {
                    t = try Tensor(shape: shape, storage: b)   // an alias of a constant: no copy
                } else {
                    t = try Tensor(zeros: shape)
                    t.storage.base.update(from: table[s], count: t.count)
                }
                results.append((out, .float(t, fromGraph: false)))
            } else {
                results.append((out, v))
            }
        }
        steps.removeSubrange(stepMark...)
        stepInfo.removeSubrange(stepMark...)
        storages.removeSubrange(storageMark...)
        producer.removeSubrange(storageMark...)
        refs.removeSubrange(storageMark...)
        values = saved
        (fused, aliased) = savedFolded
        for (name, v) in results {
            if case .float(let t, _) = v { keepAlive.append(t.storage) }
            bind(name, v)
        }
    }

    mutating func lowerRuntime(_ node: Node) throws(InLoopError) {
        let out = node.outputs.first ?? ""
        switch node.op {
        case .gemm(let alpha, let beta, let transA, let transB):
            try lowerGemm(node, alpha: alpha, beta: beta, transA: transA, transB: transB)
        case .matMul:
            try lowerMatMul(node)
        case .binary(let op):
            try lowerBinary(node, op)
        case .activation(let act):
            try lowerActivation(node, act)
        case .unary(let f):
            let (shape, s) = try floatInput(node, 0, "X")
            let y = try newBuffer(shape)
            emit(.unary(f, count: storages[s].count), inputs: [s], outputs: [y], node: node.name)
            bind(out, .runtime(shape: shape, storage: y))
        case .clip(let minAttr, let maxAttr):
            var lo = minAttr ?? -Float.infinity, hi = maxAttr ?? Float.infinity
            if let t = try floats(node, 1, "min") {
                guard t.count == 1 else { throw InLoopError(.format, "input 1 (min) must be a scalar, got shape \(Tensor.format(t.shape))") }
                lo = t.storage[0]
            }
            if let t = try floats(node, 2, "max") {
                guard t.count == 1 else { throw InLoopError(.format, "input 2 (max) must be a scalar, got shape \(Tensor.format(t.shape))") }
                hi = t.storage[0]
            }
            if lo == 0 && hi == .infinity {
                try lowerActivation(node, .relu)
            } else {
                let (shape, s) = try floatInput(node, 0, "X")
                let y = try newBuffer(shape)
                emit(.unary(.clip(min: lo, max: hi), count: storages[s].count), inputs: [s], outputs: [y], node: node.name)
                bind(out, .runtime(shape: shape, storage: y))
            }
        case .softmax(let axis, let coerce2D, let log):
            let (shape, s) = try floatInput(node, 0, "input")
            let a = try normalizedAxis(axis, rank: shape.count, "axis")
            let outer = product(shape[..<a])
            let (length, inner) = coerce2D ? (product(shape[a...]), 1) : (shape.isEmpty ? 1 : shape[a], product(shape[(a + 1)...]))
            let y = try newBuffer(shape)
            emit(.softmax(outer: outer, length: length, inner: inner, log: log), inputs: [s], outputs: [y], node: node.name)
            bind(out, .runtime(shape: shape, storage: y))
        case .identity:
            try alias(node, try required(node, 0, "input").shape)
        case .flatten(let axis):
            let shape = try required(node, 0, "input").shape
            let a = try normalizedAxis(axis, rank: shape.count + 1, "axis")
            try alias(node, [product(shape[..<a]), product(shape[a...])])
        case .reshape(let allowZero):
            let shape = try required(node, 0, "data").shape
            guard let target = try ints(node, 1, "shape") else { throw InLoopError(.format, "input 1 (shape) is missing") }
            try alias(node, try reshaped(shape, target, allowZero: allowZero))
        case .transpose(let permAttr):
            try lowerTranspose(node, permAttr)
        case .concat(let axis):
            try lowerConcat(node, axis)
        case .split(let axis, let sizes):
            try lowerSplit(node, axis, sizes)
        case .slice(let attrs):
            try lowerSlice(node, attrs)
        case .squeeze(let axesAttr):
            let shape = try required(node, 0, "data").shape
            var axes = axesAttr
            if axes == nil { axes = try ints(node, 1, "axes") }
            try alias(node, try squeezedShape(shape, axes: axes))
        case .unsqueeze(let axesAttr):
            let shape = try required(node, 0, "data").shape
            var axes = axesAttr
            if axes == nil { axes = try ints(node, 1, "axes") }
            guard let axes else { throw InLoopError(.format, "no axes given") }
            try alias(node, try unsqueezedShape(shape, axes: axes))
        case .gather(let axis):
            try lowerGather(node, axis)
        case .conv(let attrs):
            try lowerConv(node, attrs)
        case .convTranspose(let attrs):
            try lowerConvTranspose(node, attrs)
        case .maxPool(let attrs), .averagePool(let attrs):
            try lowerPool(node, attrs)
        case .globalAveragePool, .globalMaxPool:
            let (shape, s) = try floatInput(node, 0, "X")
            guard shape.count >= 3 else { throw InLoopError(.format, "input X must have rank ≥ 3 (N, C, spatial...), got shape \(Tensor.format(shape))") }
            let planes = shape[0] * shape[1], spatial = product(shape[2...])
            let yShape = [shape[0], shape[1]] + [Int](repeating: 1, count: shape.count - 2)
            let y = try newBuffer(yShape)
            if case .globalAveragePool = node.op {
                emit(.globalAveragePool(planes: planes, spatial: spatial), inputs: [s], outputs: [y], node: node.name)
            } else {
                emit(.globalMaxPool(planes: planes, spatial: spatial), inputs: [s], outputs: [y], node: node.name)
            }
            bind(out, .runtime(shape: yShape, storage: y))
        case .batchNormalization(let eps):
            try lowerBatchNorm(node, eps)
        case .layerNormalization(let axis, let eps):
            try lowerLayerNorm(node, axis, eps)
        case .resize(let attrs):
            try lowerResize(node, attrs)
        case .cast(let to):
            guard to == .float else {
                throw InLoopError(.unsupported, "casting a tensor computed from the model inputs to an integer type; InLoop supports integer tensors only in shape computations known at load time")
            }
            try alias(node, try required(node, 0, "input").shape)
        case .shape, .constant, .constantOfShape, .range:
            throw InLoopError(.unsupported, "\(node.opType) on a tensor computed from the model inputs; InLoop evaluates \(node.opType) only at load time")
        }
    }

    /// Binds output 0 to input 0's data under a new shape (no copy).
    mutating func alias(_ node: Node, _ shape: [Int]) throws(InLoopError) {
        let v = try required(node, 0, "input")
        let n = try Tensor.elementCount(shape)
        guard n == (try Tensor.elementCount(v.shape)) else {
            throw InLoopError(.format, "cannot view \(Tensor.format(v.shape)) (\(try Tensor.elementCount(v.shape)) values) as \(Tensor.format(shape)) (\(n) values)")
        }
        switch v {
        case .runtime(_, let s):
            bind(node.outputs[0], .runtime(shape: shape, storage: s))
            aliased += 1
        case .float(let t, let g):
            bind(node.outputs[0], .float(try Tensor(shape: shape, storage: t.storage), fromGraph: g))
        case .int(let t):
            bind(node.outputs[0], .int(try IntTensor(shape: shape, values: t.values)))
        }
    }

    mutating func floatInput(_ node: Node, _ i: Int, _ what: String) throws(InLoopError) -> ([Int], Int) {
        let v = try required(node, i, what)
        return (v.shape, try storage(of: v, "input \(i) (\(what))"))
    }

    // MARK: Dense algebra

    mutating func lowerGemm(_ node: Node, alpha: Float, beta: Float, transA: Bool, transB: Bool) throws(InLoopError) {
        let a = try required(node, 0, "A"), b = try required(node, 1, "B")
        guard a.shape.count == 2, b.shape.count == 2 else {
            throw InLoopError(.format, "A and B must be matrices, got shapes \(Tensor.format(a.shape)) and \(Tensor.format(b.shape))")
        }
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
        guard k == kb else {
            throw InLoopError(.format, "A \(Tensor.format(a.shape))\(transA ? "ᵀ" : "") and B \(Tensor.format(b.shape))\(transB ? "ᵀ" : "") do not multiply (inner sizes \(k) and \(kb))")
        }
        try checkBLAS(m, n, k)
        let out = node.outputs[0]
        var y: Int
        if !transA, a.isRuntime, case .float(let bt, let g) = b {
            // Dense: W[n, k] = alpha · op(B)ᵀ.
            let key: String? = g ? "gemm-w:\(node.name)" : nil
            let w: Tensor
            if transB && alpha == 1 {
                w = bt
                if !g { keepAlive.append(bt.storage) }
            } else {
                w = try derive(key) { () throws(InLoopError) in
                    let t = try Tensor(zeros: [n, k])
                    for i in 0..<n { for j in 0..<k { t.storage[i * k + j] = alpha * (transB ? bt.storage[i * k + j] : bt.storage[j * n + i]) } }
                    return t
                }
            }
            var bias: Tensor? = nil
            var cRest: Value? = nil
            if let c = input(node, 2), beta != 0 {
                if case .float(let ct, let cg) = c, let vec = try vectorAlongLast(ct, length: n) {
                    bias = try derive(cg && g ? "gemm-b:\(node.name)" : nil) { () throws(InLoopError) in
                        try Tensor(shape: [n], values: vec.map { beta * $0 })
                    }
                } else {
                    cRest = c
                }
            }
            let s = try storage(of: a, "A")
            y = try newBuffer([m, n])
            emit(.dense(rows: m, inCols: k, outCols: n, weight: UnsafePointer(w.storage.base),
                        bias: bias.map { UnsafePointer($0.storage.base) }, activation: .identity),
                 inputs: [s], outputs: [y], node: node.name,
                 weightKey: g && (bias == nil || input(node, 2).map(isGraphConstant) == true) ? "gemm:\(node.name)" : nil)
            if let c = cRest { y = try addC(node, c, beta: beta, to: y, shape: [m, n]) }
        } else {
            let sa = try storage(of: a, "A"), sb = try storage(of: b, "B")
            y = try newBuffer([m, n])
            emit(.matMul(MatMulParams(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha,
                                      aOffsets: [0], bOffsets: [0])),
                 inputs: [sa, sb], outputs: [y], node: node.name)
            if let c = input(node, 2), beta != 0 { y = try addC(node, c, beta: beta, to: y, shape: [m, n]) }
        }
        bind(out, .runtime(shape: [m, n], storage: y))
    }

    func isGraphConstant(_ v: Value) -> Bool {
        if case .float(_, true) = v { return true }
        return false
    }

    /// y += beta · C (broadcast), in place.
    mutating func addC(_ node: Node, _ c: Value, beta: Float, to y: Int, shape: [Int]) throws(InLoopError) -> Int {
        let yShape = try TensorOps.broadcastShape(shape, c.shape)
        guard yShape == shape else {
            throw InLoopError(.format, "C of shape \(Tensor.format(c.shape)) does not broadcast to the product's shape \(Tensor.format(shape))")
        }
        var cv = c
        if beta != 1 {
            guard case .float(let ct, _) = c else {
                throw InLoopError(.unsupported, "beta = \(beta) with a C computed from the inputs (only beta = 1 is supported then)")
            }
            let scaled = try Tensor(shape: ct.shape, values: ct.values.map { beta * $0 })
            keepAlive.append(scaled.storage)
            cv = .float(scaled, fromGraph: false)
        }
        let sc = try storage(of: cv, "C")
        emit(.binary(.add, aShape: shape, bShape: cv.shape, yShape: shape), inputs: [y, sc], outputs: [y], node: node.name)
        return y
    }

    /// The values of `t` when it broadcasts along the last axis only (shape [..., 1, length] or a scalar).
    func vectorAlongLast(_ t: Tensor, length: Int) throws(InLoopError) -> [Float]? {
        let lead = t.shape.dropLast()
        guard lead.allSatisfy({ $0 == 1 }) else { return nil }
        if t.count == length { return t.values }
        if t.count == 1 { return [Float](repeating: t.storage[0], count: length) }
        return nil
    }

    func checkBLAS(_ dims: Int...) throws(InLoopError) {
        for d in dims where d > Int(Int32.max) {
            throw InLoopError(.unsupported, "matrix dimension \(d) is larger than 2^31-1 (the BLAS limit)")
        }
    }

    mutating func lowerMatMul(_ node: Node) throws(InLoopError) {
        let a = try required(node, 0, "A"), b = try required(node, 1, "B")
        guard !a.shape.isEmpty, !b.shape.isEmpty else { throw InLoopError(.format, "MatMul operands must have rank ≥ 1") }
        let out = node.outputs[0]
        if a.isRuntime, case .float(let bt, let g) = b, bt.rank == 2 {
            let k = a.shape[a.shape.count - 1], n = bt.shape[1]
            guard bt.shape[0] == k else {
                throw InLoopError(.format, "A \(Tensor.format(a.shape)) and B \(Tensor.format(bt.shape)) do not multiply (inner sizes \(k) and \(bt.shape[0]))")
            }
            let rows = product(a.shape.dropLast())
            try checkBLAS(rows, n, k)
            let w = try derive(g ? "matmul-w:\(node.name)" : nil) { () throws(InLoopError) in
                let t = try Tensor(zeros: [n, k])
                for i in 0..<n { for j in 0..<k { t.storage[i * k + j] = bt.storage[j * n + i] } }
                return t
            }
            let s = try storage(of: a, "A")
            let yShape = Array(a.shape.dropLast()) + [n]
            let y = try newBuffer(yShape)
            emit(.dense(rows: rows, inCols: k, outCols: n, weight: UnsafePointer(w.storage.base), bias: nil, activation: .identity),
                 inputs: [s], outputs: [y], node: node.name, weightKey: g ? "matmul:\(node.name)" : nil)
            bind(out, .runtime(shape: yShape, storage: y))
            return
        }
        // General (batched, broadcasting) product.
        let aS = a.shape.count == 1 ? [1] + a.shape : a.shape
        let bS = b.shape.count == 1 ? b.shape + [1] : b.shape
        let m = aS[aS.count - 2], k = aS[aS.count - 1], kb = bS[bS.count - 2], n = bS[bS.count - 1]
        guard k == kb else {
            throw InLoopError(.format, "A \(Tensor.format(a.shape)) and B \(Tensor.format(b.shape)) do not multiply (inner sizes \(k) and \(kb))")
        }
        try checkBLAS(m, n, k)
        let aBatch = Array(aS.dropLast(2)), bBatch = Array(bS.dropLast(2))
        let batchShape = try TensorOps.broadcastShape(aBatch, bBatch)
        let count = product(batchShape[...])
        var aOff: [Int] = [], bOff: [Int] = []
        aOff.reserveCapacity(count); bOff.reserveCapacity(count)
        let aStrides = broadcastStrides(aBatch, to: batchShape, matrix: m * k)
        let bStrides = broadcastStrides(bBatch, to: batchShape, matrix: k * n)
        var index = [Int](repeating: 0, count: batchShape.count)
        for _ in 0..<count {
            var ao = 0, bo = 0
            for d in 0..<index.count { ao += index[d] * aStrides[d]; bo += index[d] * bStrides[d] }
            aOff.append(ao); bOff.append(bo)
            var d = index.count - 1
            while d >= 0 { index[d] += 1; if index[d] < batchShape[d] { break }; index[d] = 0; d -= 1 }
        }
        var yShape = batchShape
        if a.shape.count > 1 { yShape.append(m) }
        if b.shape.count > 1 { yShape.append(n) }
        let sa = try storage(of: a, "A"), sb = try storage(of: b, "B")
        let y = try newBuffer(yShape)
        emit(.matMul(MatMulParams(m: m, n: n, k: k, transA: false, transB: false, alpha: 1, aOffsets: aOff, bOffsets: bOff)),
             inputs: [sa, sb], outputs: [y], node: node.name)
        bind(out, .runtime(shape: yShape, storage: y))
    }

    /// Element strides of a broadcast operand's batch axes (0 where it is broadcast).
    func broadcastStrides(_ shape: [Int], to full: [Int], matrix: Int) -> [Int] {
        var strides = [Int](repeating: 0, count: full.count)
        var step = matrix
        for i in stride(from: full.count - 1, through: 0, by: -1) {
            let j = i - (full.count - shape.count)
            if j >= 0 {
                strides[i] = shape[j] == 1 ? 0 : step
                step *= shape[j]
            }
        }
        return strides
    }

    // MARK: Element-wise

    mutating func lowerBinary(_ node: Node, _ op: BinaryOp) throws(InLoopError) {
        let a = try required(node, 0, "A"), b = try required(node, 1, "B")
        let yShape: [Int]
        do { yShape = try TensorOps.broadcastShape(a.shape, b.shape) } catch {
            throw InLoopError(.format, "shapes \(Tensor.format(a.shape)) and \(Tensor.format(b.shape)) do not broadcast")
        }
        let out = node.outputs[0]
        // Pow by a constant scalar.
        if op == .pow, case .float(let e, _) = b, e.count == 1, a.isRuntime, yShape == a.shape {
            let s = try storage(of: a, "A")
            let y = try newBuffer(yShape)
            emit(.unary(.pow(exponent: e.storage[0]), count: storages[s].count), inputs: [s], outputs: [y], node: node.name)
            bind(out, .runtime(shape: yShape, storage: y))
            return
        }
        // A runtime tensor and a constant that broadcasts per sample: bias or affine.
        if [.add, .sub, .mul, .div].contains(op) {
            var x: Value? = nil, c: Tensor? = nil, xName = "", constFirst = false
            if case .runtime = a, case .float(let t, _) = b { x = a; c = t; xName = node.inputs[0] }
            if case .float(let t, _) = a, case .runtime = b, op != .div { x = b; c = t; xName = node.inputs[1]; constFirst = true }
            if let x, let c, case .runtime(let xShape, let xs) = x, yShape == xShape, !xShape.isEmpty {
                if op == .add, try fuseBias(node, xName: xName, shape: xShape, storage: xs, c) { return }
                if let perSample = try expandPerSample(c, xShape) {
                    let cols = perSample.count
                    var scale: [Float]? = nil, shift: [Float]? = nil
                    switch op {
                    case .add: shift = perSample
                    case .sub:
                        if constFirst { scale = [Float](repeating: -1, count: cols); shift = perSample }
                        else { shift = perSample.map { -$0 } }
                    case .mul: scale = perSample
                    default: scale = perSample.map { 1 / $0 }
                    }
                    try emitAffine(node, xName: xName, shape: xShape, storage: xs, scale: scale, shift: shift)
                    return
                }
            }
        }
        let sa = try storage(of: a, "A"), sb = try storage(of: b, "B")
        let y = try newBuffer(yShape)
        emit(.binary(op, aShape: a.shape, bShape: b.shape, yShape: yShape), inputs: [sa, sb], outputs: [y], node: node.name)
        bind(out, .runtime(shape: yShape, storage: y))
    }

    /// `c` expanded to one sample of `xShape` when it broadcasts without involving the batch axis.
    func expandPerSample(_ c: Tensor, _ xShape: [Int]) throws(InLoopError) -> [Float]? {
        var cShape = c.shape
        if cShape.count == xShape.count {
            guard cShape[0] == 1 else { return nil }
            cShape.removeFirst()
        }
        guard cShape.count < xShape.count else { return nil }
        let ps = Array(xShape.dropFirst())
        guard (try? TensorOps.broadcastShape(ps, cShape)) == ps else { return nil }
        let n = product(ps[...])
        let zeros = try FloatBuffer(count: n), outBuf = try FloatBuffer(count: n)
        TensorOps.broadcastBinary(.add, a: zeros.base, aShape: ps, b: c.storage.base, bShape: cShape, y: outBuf.base, yShape: ps)
        return outBuf.array
    }

    /// Adds constant `c` into the bias of the dense/conv step producing `x`, when allowed.
    mutating func fuseBias(_ node: Node, xName: String, shape: [Int], storage xs: Int, _ c: Tensor) throws(InLoopError) -> Bool {
        guard soleUse(xName, storage: xs) else { return false }
        let p = producer[xs]
        var vec: [Float]? = nil
        switch steps[p].kind {
        case .dense(_, _, let n, _, _, .identity):
            vec = try vectorAlongLast(c, length: n)
        case .conv(let g, _, _, _, .identity):
            vec = channelVector(c, channels: g.channelsOut, rank: shape.count)
        case .convTranspose(let g, _, _, _, .identity):
            vec = channelVector(c, channels: g.channelsOut, rank: shape.count)
        default: return false
        }
        guard let vec else { return false }
        let info = stepInfo[p]
        let key = info.weightKey.map { "\($0)|bias:\(node.name)" }
        var old: UnsafePointer<Float>? = nil
        switch steps[p].kind {
        case .dense(_, _, _, _, let b, _), .conv(_, _, _, let b, _), .convTranspose(_, _, _, let b, _): old = b
        default: break
        }
        let bias = try derive(key) { () throws(InLoopError) in
            try Tensor(shape: [vec.count], values: (0..<vec.count).map { (old?[$0] ?? 0) + vec[$0] })
        }
        let bp = UnsafePointer(bias.storage.base)
        switch steps[p].kind {
        case .dense(let r, let k, let n, let w, _, let a): steps[p].kind = .dense(rows: r, inCols: k, outCols: n, weight: w, bias: bp, activation: a)
        case .conv(let g, let nb, let w, _, let a): steps[p].kind = .conv(g, batch: nb, weight: w, bias: bp, activation: a)
        case .convTranspose(let g, let nb, let w, _, let a): steps[p].kind = .convTranspose(g, batch: nb, weight: w, bias: bp, activation: a)
        default: break
        }
        if !isGraphConstantTensor(c) { stepInfo[p].weightKey = nil } else { stepInfo[p].weightKey = key }
        takeOver(node.outputs[0], shape: shape, storage: xs)
        return true
    }

    func isGraphConstantTensor(_ t: Tensor) -> Bool {
        graph.constants.values.contains { if case .float(let g) = $0 { return g.storage === t.storage } else { return false } }
    }

    /// Per-channel values of `c` for an (N, C, spatial...) tensor: shape [C, 1...] or [1, C, 1...].
    func channelVector(_ c: Tensor, channels: Int, rank: Int) -> [Float]? {
        var s = c.shape
        if s.count == rank { guard s.first == 1 else { return nil }; s.removeFirst() }
        guard s.count == rank - 1, s.first == channels || c.count == 1, s.dropFirst().allSatisfy({ $0 == 1 }) else { return nil }
        if c.count == 1 { return [Float](repeating: c.storage[0], count: channels) }
        return c.values
    }

    mutating func emitAffine(_ node: Node, xName: String, shape: [Int], storage xs: Int,
                             scale: [Float]?, shift: [Float]?) throws(InLoopError) {
        let cols = product(shape.dropFirst()), rows = shape[0]
        // Chain onto a preceding affine step that only feeds this node.
        if soleUse(xName, storage: xs), case .affine(let r, let c, let s1, let t1) = steps[producer[xs]].kind, c == cols {
            var s = [Float](repeating: 1, count: cols), t = [Float](repeating: 0, count: cols)
            for i in 0..<cols {
                let a1 = s1?[i] ?? 1, b1 = t1?[i] ?? 0, a2 = scale?[i] ?? 1, b2 = shift?[i] ?? 0
                s[i] = a1 * a2; t[i] = b1 * a2 + b2
            }
            let st = try Tensor(shape: [cols], values: s), tt = try Tensor(shape: [cols], values: t)
            keepAlive += [st.storage, tt.storage]
            steps[producer[xs]].kind = .affine(rows: r, cols: c, scale: UnsafePointer(st.storage.base), shift: UnsafePointer(tt.storage.base))
            takeOver(node.outputs[0], shape: shape, storage: xs)
            return
        }
        let st = try scale.map { (v) throws(InLoopError) in try Tensor(shape: [cols], values: v) }
        let tt = try shift.map { (v) throws(InLoopError) in try Tensor(shape: [cols], values: v) }
        if let st { keepAlive.append(st.storage) }
        if let tt { keepAlive.append(tt.storage) }
        let y = try newBuffer(shape)
        emit(.affine(rows: rows, cols: cols, scale: st.map { UnsafePointer($0.storage.base) },
                     shift: tt.map { UnsafePointer($0.storage.base) }), inputs: [xs], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: shape, storage: y))
    }

    mutating func lowerActivation(_ node: Node, _ act: Activation) throws(InLoopError) {
        let x = try required(node, 0, "X")
        let out = node.outputs[0]
        if case .runtime(let shape, let s) = x, soleUse(node.inputs[0], storage: s), act != .identity {
            let p = producer[s]
            switch steps[p].kind {
            case .dense(let r, let k, let n, let w, let b, .identity):
                steps[p].kind = .dense(rows: r, inCols: k, outCols: n, weight: w, bias: b, activation: act)
                takeOver(out, shape: shape, storage: s); return
            case .conv(let g, let nb, let w, let b, .identity):
                steps[p].kind = .conv(g, batch: nb, weight: w, bias: b, activation: act)
                takeOver(out, shape: shape, storage: s); return
            case .convTranspose(let g, let nb, let w, let b, .identity):
                steps[p].kind = .convTranspose(g, batch: nb, weight: w, bias: b, activation: act)
                takeOver(out, shape: shape, storage: s); return
            default: break
            }
        }
        let s = try storage(of: x, "X")
        let y = try newBuffer(x.shape)
        emit(.activation(act, count: storages[s].count), inputs: [s], outputs: [y], node: node.name)
        bind(out, .runtime(shape: x.shape, storage: y))
    }

    // MARK: Layout

    mutating func lowerTranspose(_ node: Node, _ permAttr: [Int]?) throws(InLoopError) {
        let x = try required(node, 0, "data")
        let r = x.shape.count
        guard r <= TensorOps.maxRank else { throw InLoopError(.unsupported, "rank \(r) is larger than \(TensorOps.maxRank)") }
        let perm = permAttr ?? Array((0..<r).reversed())
        guard perm.count == r, Set(perm) == Set(0..<r) else {
            throw InLoopError(.format, "perm \(Tensor.format(perm)) is not a permutation of the \(r) axes of \(Tensor.format(x.shape))")
        }
        let yShape = perm.map { x.shape[$0] }
        // Moving only size-1 axes keeps the memory order: an alias.
        let moved = perm.filter { x.shape[$0] != 1 }
        if moved == moved.sorted() { try alias(node, yShape); return }
        let s = try storage(of: x, "data")
        let y = try newBuffer(yShape)
        emit(.transpose(shape: x.shape, perm: perm), inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerConcat(_ node: Node, _ axis: Int) throws(InLoopError) {
        let parts = node.inputs.compactMap { $0.isEmpty ? nil : values[$0] }
        guard let first = parts.first else { throw InLoopError(.format, "no inputs") }
        let r = first.shape.count
        let a = try normalizedAxis(axis, rank: r, "axis")
        var total = 0
        for p in parts {
            guard p.shape.count == r, (0..<r).allSatisfy({ $0 == a || p.shape[$0] == first.shape[$0] }) else {
                throw InLoopError(.format, "input shapes \(parts.map { Tensor.format($0.shape) }.joined(separator: ", ")) differ outside axis \(axis)")
            }
            total = try Limits.sum(total, p.shape[a], "Concat length")
        }
        var yShape = first.shape
        yShape[a] = total
        var ins: [Int] = []
        for (i, p) in parts.enumerated() { ins.append(try storage(of: p, "input \(i)")) }
        let y = try newBuffer(yShape)
        emit(.concat(outer: product(first.shape[..<a]), inner: product(first.shape[(a + 1)...]),
                     lengths: parts.map { $0.shape[a] }, total: total), inputs: ins, outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerSplit(_ node: Node, _ axis: Int, _ sizesAttr: [Int]?) throws(InLoopError) {
        let x = try required(node, 0, "input")
        let a = try normalizedAxis(axis, rank: x.shape.count, "axis")
        let length = x.shape[a]
        let parts = node.outputs.count
        var sizes = sizesAttr
        if sizes == nil { sizes = try ints(node, 1, "split") }
        if sizes == nil {
            guard parts > 0 else { throw InLoopError(.format, "no outputs") }
            let each = (length + parts - 1) / parts
            sizes = (0..<parts).map { max(0, min(each, length - $0 * each)) }
        }
        guard let sizes, sizes.count == parts, sizes.allSatisfy({ $0 >= 0 && $0 <= Limits.maxDimension }),
              sizes.reduce(0, +) == length else {
            throw InLoopError(.format, "split sizes \(Tensor.format(sizesAttr ?? [])) do not divide axis \(axis) of length \(length) into \(parts) outputs")
        }
        let s = try storage(of: x, "input")
        var outs: [Int] = [], offsets: [Int] = [], off = 0
        for size in sizes {
            var shape = x.shape
            shape[a] = size
            outs.append(try newBuffer(shape))
            offsets.append(off)
            off += size
        }
        emit(.split(outer: product(x.shape[..<a]), inner: product(x.shape[(a + 1)...]), length: length,
                    offsets: offsets, lengths: sizes), inputs: [s], outputs: outs, node: node.name)
        for (k, o) in outs.enumerated() {
            var shape = x.shape
            shape[a] = sizes[k]
            bind(node.outputs[k], .runtime(shape: shape, storage: o))
        }
    }

    mutating func lowerSlice(_ node: Node, _ attrs: SliceAttributes?) throws(InLoopError) {
        let x = try required(node, 0, "data")
        let r = x.shape.count
        let starts: [Int], ends: [Int], axesIn: [Int]?, stepsIn: [Int]?
        if let attrs {
            starts = attrs.starts; ends = attrs.ends; axesIn = attrs.axes; stepsIn = nil
        } else {
            guard let s = try ints(node, 1, "starts"), let e = try ints(node, 2, "ends") else {
                throw InLoopError(.format, "inputs starts and ends are required")
            }
            starts = s; ends = e
            axesIn = try ints(node, 3, "axes"); stepsIn = try ints(node, 4, "steps")
        }
        let axes = axesIn ?? Array(0..<starts.count)
        let stepList = stepsIn ?? [Int](repeating: 1, count: starts.count)
        guard ends.count == starts.count, axes.count == starts.count, stepList.count == starts.count else {
            throw InLoopError(.format, "starts, ends, axes and steps have different lengths (\(starts.count), \(ends.count), \(axes.count), \(stepList.count))")
        }
        var fs = [Int](repeating: 0, count: r), fe = x.shape, fst = [Int](repeating: 1, count: r)
        var seen = Set<Int>()
        for i in 0..<axes.count {
            let a = try normalizedAxis(axes[i], rank: r, "axes")
            guard seen.insert(a).inserted else { throw InLoopError(.format, "axes \(Tensor.format(axes)) repeat an axis") }
            guard stepList[i] != 0 else { throw InLoopError(.format, "steps must not be 0") }
            fs[a] = starts[i]; fe[a] = ends[i]; fst[a] = stepList[i]
        }
        let yShape = TensorOps.sliceShape(shape: x.shape, starts: fs, ends: fe, steps: fst)
        let whole = (0..<r).allSatisfy { TensorOps.sliceRange(dim: x.shape[$0], start: fs[$0], end: fe[$0], step: fst[$0]) == (0, x.shape[$0]) && fst[$0] == 1 }
        if whole { try alias(node, yShape); return }
        guard r <= TensorOps.maxRank else { throw InLoopError(.unsupported, "rank \(r) is larger than \(TensorOps.maxRank)") }
        let s = try storage(of: x, "data")
        let y = try newBuffer(yShape)
        emit(.slice(shape: x.shape, starts: fs, ends: fe, steps: fst), inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerGather(_ node: Node, _ axis: Int) throws(InLoopError) {
        let x = try required(node, 0, "data")
        guard case .int(let ind) = try required(node, 1, "indices") else {
            throw InLoopError(.unsupported, "indices must be an integer tensor known at load time")
        }
        guard !x.shape.isEmpty else { throw InLoopError(.format, "input 0 (data) is a scalar; Gather needs rank ≥ 1") }
        let a = try normalizedAxis(axis, rank: x.shape.count, "axis")
        let dim = x.shape[a]
        var idx: [Int] = []
        for i in ind.values {
            guard i >= -dim, i < dim else { throw InLoopError(.format, "index \(i) is out of range for axis \(axis) of size \(dim)") }
            idx.append(i < 0 ? i + dim : i)
        }
        let yShape = Array(x.shape[..<a]) + ind.shape + Array(x.shape[(a + 1)...])
        _ = try Tensor.elementCount(yShape)
        let s = try storage(of: x, "data")
        let y = try newBuffer(yShape)
        emit(.gather(shape: x.shape, axis: a, indices: idx), inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    // MARK: Convolution, pooling, normalisation

    mutating func lowerConv(_ node: Node, _ at: ConvAttributes) throws(InLoopError) {
        let x = try required(node, 0, "X")
        guard case .float(let w, let wg) = try required(node, 1, "W") else {
            throw InLoopError(.unsupported, "weight W must be a constant (an initializer), not computed from the inputs")
        }
        let g = try at.convGeometry(input: x.shape, weight: w.shape)
        var bias: Tensor? = nil, bg = true
        if let bv = input(node, 2) {
            guard case .float(let b, let g2) = bv, b.count == g.channelsOut else {
                throw InLoopError(.format, "bias B must be a constant of \(g.channelsOut) values, got \(Tensor.format(bv.shape))")
            }
            bias = b; bg = g2
            if !g2 { keepAlive.append(b.storage) }
        }
        if !wg { keepAlive.append(w.storage) }
        let s = try storage(of: x, "X")
        let yShape = [x.shape[0], g.channelsOut] + g.outputSize
        let y = try newBuffer(yShape)
        let scratch = newStorage(.buffer, count: max(1, Conv.workspaceCount(geometry: g, batch: x.shape[0])))
        emit(.conv(g, batch: x.shape[0], weight: UnsafePointer(w.storage.base), bias: bias.map { UnsafePointer($0.storage.base) },
                   activation: .identity), inputs: [s], outputs: [y], scratch: scratch, node: node.name,
             weightKey: wg && bg ? "conv:\(node.name)" : nil)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerConvTranspose(_ node: Node, _ at: ConvAttributes) throws(InLoopError) {
        let x = try required(node, 0, "X")
        guard case .float(let w, let wg) = try required(node, 1, "W") else {
            throw InLoopError(.unsupported, "weight W must be a constant (an initializer), not computed from the inputs")
        }
        let r = x.shape.count
        guard r == 3 || r == 4 else {
            throw InLoopError(.unsupported, "input X has shape \(Tensor.format(x.shape)); only 1-D and 2-D transposed convolutions are supported")
        }
        guard w.rank == r, w.shape[0] == x.shape[1], at.group >= 1 else {
            throw InLoopError(.format, "weight W has shape \(Tensor.format(w.shape)); for input \(Tensor.format(x.shape)) it must be [\(x.shape[1]), M/group, kernel...]")
        }
        let kernel = Array(w.shape[2...])
        if let ks = at.kernelShape, ks != kernel {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(ks)) disagrees with the weight's shape \(Tensor.format(w.shape))")
        }
        let spatial = Array(x.shape[2...])
        let n = spatial.count
        let strides = at.strides ?? [Int](repeating: 1, count: n), dil = at.dilations ?? [Int](repeating: 1, count: n)
        let outPad = at.outputPadding ?? [Int](repeating: 0, count: n)
        guard strides.count == n, dil.count == n, outPad.count == n else {
            throw InLoopError(.format, "strides, dilations and output_padding need \(n) values each")
        }
        // File attributes bounded before any arithmetic; signs and the rest are ConvTransposeGeometry's.
        try ConvGeometry.checkLimits(["strides": strides, "dilations": dil, "output_padding": outPad, "group": [at.group],
                                      "pads": at.pads ?? [], "output_shape": at.outputShape ?? []])
        guard strides.allSatisfy({ $0 >= 1 }), dil.allSatisfy({ $0 >= 1 }), outPad.allSatisfy({ $0 >= 0 }) else {
            throw InLoopError(.format, "strides \(Tensor.format(strides)) and dilations \(Tensor.format(dil)) must be positive, output_padding \(Tensor.format(outPad)) non-negative")
        }
        var pb = [Int](repeating: 0, count: n), pe = pb
        var target: [Int]? = at.outputShape.map { Array($0.suffix(n)) }
        if target == nil, at.autoPad == .sameUpper || at.autoPad == .sameLower {
            target = (0..<n).map { spatial[$0] * strides[$0] }
        }
        if let target {
            guard target.count == n else { throw InLoopError(.format, "output_shape needs \(n) spatial values") }
            for i in 0..<n {
                // products below 2^62 (bounded factors); their sum checked
                let what = "output_shape along spatial axis \(i)"
                let total = try Limits.sum(try Limits.sum(strides[i] * (spatial[i] - 1), (kernel[i] - 1) * dil[i], what),
                                           outPad[i] + 1 - target[i], what)
                guard total >= 0 else {
                    throw InLoopError(.unsupported, "output_shape \(Tensor.format(target)) needs negative padding along spatial axis \(i)")
                }
                if at.autoPad == .sameUpper || at.outputShape != nil && at.autoPad != .sameLower {
                    pb[i] = total / 2; pe[i] = total - total / 2
                } else {
                    pb[i] = total - total / 2; pe[i] = total / 2
                }
            }
        } else if at.autoPad == .notSet, let pads = at.pads {
            guard pads.count == 2 * n else { throw InLoopError(.format, "pads has \(pads.count) values, expected \(2 * n)") }
            pb = Array(pads[..<n]); pe = Array(pads[n...])
        }
        let g = try ConvTransposeGeometry(channelsIn: x.shape[1], channelsOut: try Limits.product(w.shape[1], at.group, "output channels (W's axis 1 × group)"), group: at.group,
                                          inputSize: spatial, kernelSize: kernel, strides: strides, dilations: dil,
                                          padsBegin: pb, padsEnd: pe, outputPadding: outPad)
        var bias: Tensor? = nil
        if let bv = input(node, 2) {
            guard case .float(let b, let g2) = bv, b.count == g.channelsOut else {
                throw InLoopError(.format, "bias B must be a constant of \(g.channelsOut) values, got \(Tensor.format(bv.shape))")
            }
            bias = b
            if !g2 { keepAlive.append(b.storage) }
        }
        if !wg { keepAlive.append(w.storage) }
        let s = try storage(of: x, "X")
        let yShape = [x.shape[0], g.channelsOut] + g.outputSize
        let y = try newBuffer(yShape)
        let scratch = newStorage(.buffer, count: max(1, ConvTranspose.workspaceCount(geometry: g, batch: x.shape[0])))
        emit(.convTranspose(g, batch: x.shape[0], weight: UnsafePointer(w.storage.base),
                            bias: bias.map { UnsafePointer($0.storage.base) }, activation: .identity),
             inputs: [s], outputs: [y], scratch: scratch, node: node.name)
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerPool(_ node: Node, _ at: PoolAttributes) throws(InLoopError) {
        let x = try required(node, 0, "X")
        let g = try at.geometry(input: x.shape)
        let s = try storage(of: x, "X")
        let yShape = [x.shape[0], x.shape[1]] + g.outputSize
        let y = try newBuffer(yShape)
        let planes = x.shape[0] * x.shape[1]
        if case .maxPool = node.op {
            emit(.maxPool(g, planes: planes), inputs: [s], outputs: [y], node: node.name)
        } else {
            emit(.averagePool(g, planes: planes, countIncludePad: at.countIncludePad), inputs: [s], outputs: [y], node: node.name)
        }
        bind(node.outputs[0], .runtime(shape: yShape, storage: y))
    }

    mutating func lowerBatchNorm(_ node: Node, _ eps: Float) throws(InLoopError) {
        let x = try required(node, 0, "X")
        guard x.shape.count >= 2 else { throw InLoopError(.format, "input X must have rank ≥ 2, got \(Tensor.format(x.shape))") }
        let c = x.shape[1]
        var params: [Tensor] = []
        var allGraph = true
        for (i, what) in ["scale", "B", "input_mean", "input_var"].enumerated() {
            guard case .float(let t, let g) = try required(node, i + 1, what) else {
                throw InLoopError(.unsupported, "input \(i + 1) (\(what)) must be a constant")
            }
            guard t.count == c else {
                throw InLoopError(.format, "input \(i + 1) (\(what)) has \(t.count) values but X \(Tensor.format(x.shape)) has \(c) channels")
            }
            params.append(t)
            allGraph = allGraph && g
        }
        let coefKey: String? = allGraph ? "bn:\(node.name)" : nil
        let scale = try derive(coefKey.map { $0 + ":scale" }) { () throws(InLoopError) in try Tensor(zeros: [c]) }
        let shift = try derive(coefKey.map { $0 + ":shift" }) { () throws(InLoopError) in try Tensor(zeros: [c]) }
        TensorOps.batchNormCoefficients(channels: c, gamma: params[0].storage.base, beta: params[1].storage.base,
                                        mean: params[2].storage.base, variance: params[3].storage.base, epsilon: eps,
                                        scale: scale.storage.base, shift: shift.storage.base)
        // Fold into the preceding conv (weights [M, C/g, k...]) or dense (weights [out, in]).
        if case .runtime(let shape, let xs) = x, soleUse(node.inputs[0], storage: xs) {
            let p = producer[xs]
            let key = allGraph ? stepInfo[p].weightKey.map { "\($0)|bn:\(node.name)" } : nil
            switch steps[p].kind {
            case .conv(let g, let nb, let w, let b, .identity) where g.channelsOut == c:
                let per = g.weightCount / c
                let nw = try derive(key.map { $0 + ":w" }) { () throws(InLoopError) in
                    let t = try Tensor(zeros: [g.weightCount])
                    for o in 0..<c { for j in 0..<per { t.storage[o * per + j] = w[o * per + j] * scale.storage[o] } }
                    return t
                }
                let nbias = try derive(key.map { $0 + ":b" }) { () throws(InLoopError) in
                    try Tensor(shape: [c], values: (0..<c).map { (b?[$0] ?? 0) * scale.storage[$0] + shift.storage[$0] })
                }
                steps[p].kind = .conv(g, batch: nb, weight: UnsafePointer(nw.storage.base), bias: UnsafePointer(nbias.storage.base), activation: .identity)
                stepInfo[p].weightKey = key
                takeOver(node.outputs[0], shape: shape, storage: xs)
                return
            case .dense(let rows, let k, let n, let w, let b, .identity) where n == c && shape.count == 2:
                let nw = try derive(key.map { $0 + ":w" }) { () throws(InLoopError) in
                    let t = try Tensor(zeros: [n, k])
                    for o in 0..<n { for j in 0..<k { t.storage[o * k + j] = w[o * k + j] * scale.storage[o] } }
                    return t
                }
                let nbias = try derive(key.map { $0 + ":b" }) { () throws(InLoopError) in
                    try Tensor(shape: [c], values: (0..<c).map { (b?[$0] ?? 0) * scale.storage[$0] + shift.storage[$0] })
                }
                steps[p].kind = .dense(rows: rows, inCols: k, outCols: n, weight: UnsafePointer(nw.storage.base),
                                       bias: UnsafePointer(nbias.storage.base), activation: .identity)
                stepInfo[p].weightKey = key
                takeOver(node.outputs[0], shape: shape, storage: xs)
                return
            default: break
            }
        }
        let s = try storage(of: x, "X")
        let y = try newBuffer(x.shape)
        emit(.channelAffine(batch: x.shape[0], channels: c, spatial: product(x.shape[2...]),
                            scale: UnsafePointer(scale.storage.base), shift: UnsafePointer(shift.storage.base)),
             inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: x.shape, storage: y))
    }

    mutating func lowerLayerNorm(_ node: Node, _ axis: Int, _ eps: Float) throws(InLoopError) {
        let x = try required(node, 0, "X")
        let a = try normalizedAxis(axis, rank: x.shape.count, "axis")
        let normShape = Array(x.shape[a...])
        let cols = product(normShape[...]), rows = product(x.shape[..<a])
        func expanded(_ i: Int, _ what: String) throws(InLoopError) -> Tensor? {
            guard let v = input(node, i) else { return nil }
            guard case .float(let t, _) = v else { throw InLoopError(.unsupported, "input \(i) (\(what)) must be a constant") }
            guard (try? TensorOps.broadcastShape(normShape, t.shape)) == normShape else {
                throw InLoopError(.format, "input \(i) (\(what)) of shape \(Tensor.format(t.shape)) does not broadcast to the normalised shape \(Tensor.format(normShape))")
            }
            let e = try Tensor(zeros: [cols]), z = try FloatBuffer(count: cols)
            TensorOps.broadcastBinary(.add, a: z.base, aShape: normShape, b: t.storage.base, bShape: t.shape, y: e.storage.base, yShape: normShape)
            return e
        }
        let scaleT = try expanded(1, "Scale"), biasT = try expanded(2, "B")
        if let scaleT { keepAlive.append(scaleT.storage) }
        if let biasT { keepAlive.append(biasT.storage) }
        let s = try storage(of: x, "X")
        let y = try newBuffer(x.shape)
        emit(.layerNorm(rows: rows, cols: cols, scale: scaleT.map { UnsafePointer($0.storage.base) },
                        bias: biasT.map { UnsafePointer($0.storage.base) }, epsilon: eps),
             inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: x.shape, storage: y))
    }

    mutating func lowerResize(_ node: Node, _ at: ResizeAttributes) throws(InLoopError) {
        let x = try required(node, 0, "X")
        let r = x.shape.count
        guard r <= TensorOps.maxRank else { throw InLoopError(.unsupported, "rank \(r) is larger than \(TensorOps.maxRank)") }
        let axes = try (at.axes ?? Array(0..<r)).map { (a) throws(InLoopError) in try normalizedAxis(a, rank: r, "axes") }
        var outShape = x.shape
        var scales: [Float]? = nil
        if let sizes = try ints(node, 2, "sizes"), !sizes.isEmpty {
            guard sizes.count == axes.count else { throw InLoopError(.format, "sizes has \(sizes.count) values for \(axes.count) axes") }
            for (i, a) in axes.enumerated() {
                guard sizes[i] >= 1 else { throw InLoopError(.format, "sizes \(Tensor.format(sizes)) must be positive") }
                outShape[a] = sizes[i]
            }
        } else if let st = try floats(node, 1, "scales"), st.count > 0 {
            guard st.count == axes.count else { throw InLoopError(.format, "scales has \(st.count) values for \(axes.count) axes") }
            var full = [Float](repeating: 1, count: r)
            for (i, a) in axes.enumerated() {
                let f = st.storage[i]
                guard f.isFinite, f > 0 else { throw InLoopError(.format, "scales must be positive, got \(f)") }
                full[a] = f
                let o = (Double(x.shape[a]) * Double(f)).rounded(.down)
                guard o >= 1, o < Double(1 << 40) else { throw InLoopError(.format, "scale \(f) gives output size \(o) along axis \(a)") }
                outShape[a] = Int(o)
            }
            scales = full
        } else {
            throw InLoopError(.format, "neither scales nor sizes is given")
        }
        let s = try storage(of: x, "X")
        let y = try newBuffer(outShape)
        emit(.resize(inShape: x.shape, outShape: outShape, scales: scales, at.coordinateMode, at.nearestMode),
             inputs: [s], outputs: [y], node: node.name)
        bind(node.outputs[0], .runtime(shape: outShape, storage: y))
    }
}

// MARK: - Shape helpers

func product<C: Collection>(_ dims: C) -> Int where C.Element == Int {
    dims.reduce(1, *)
}

/// Squeeze's output shape: `axes` removed (each of size 1), or every size-1 axis when nil.
func squeezedShape(_ shape: [Int], axes: [Int]?) throws(InLoopError) -> [Int] {
    var drop = Set<Int>()
    if let axes {
        for a in axes {
            let n = try normalizedAxis(a, rank: shape.count, "axes")
            guard shape[n] == 1 else {
                throw InLoopError(.format, "cannot squeeze axis \(a) of shape \(Tensor.format(shape)): its size is \(shape[n]), not 1")
            }
            drop.insert(n)
        }
    } else {
        for (i, d) in shape.enumerated() where d == 1 { drop.insert(i) }
    }
    return shape.enumerated().filter { !drop.contains($0.offset) }.map { $0.element }
}

/// Unsqueeze's output shape: size-1 axes inserted at `axes` (positions in the output).
func unsqueezedShape(_ shape: [Int], axes: [Int]) throws(InLoopError) -> [Int] {
    let r = shape.count + axes.count
    var insert = Set<Int>()
    for a in axes {
        let n = try normalizedAxis(a, rank: r, "axes")
        guard insert.insert(n).inserted else { throw InLoopError(.format, "axes \(Tensor.format(axes)) repeat an axis") }
    }
    var result: [Int] = [], k = 0
    for i in 0..<r {
        if insert.contains(i) { result.append(1) } else { result.append(shape[k]); k += 1 }
    }
    return result
}

func normalizedAxis(_ axis: Int, rank: Int, _ what: String) throws(InLoopError) -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0, a < max(rank, 1) else {
        throw InLoopError(.format, "\(what) \(axis) is out of range for rank \(rank)")
    }
    return a
}

/// ONNX Reshape target resolution: 0 copies the input dimension (unless allowZero), -1 is inferred.
func reshaped(_ shape: [Int], _ target: [Int], allowZero: Bool) throws(InLoopError) -> [Int] {
    let total = try Tensor.elementCount(shape)
    var out: [Int] = []
    var infer = -1
    for (i, d) in target.enumerated() {
        if d == -1 {
            guard infer < 0 else { throw InLoopError(.format, "shape \(Tensor.format(target)) has more than one -1") }
            infer = i
            out.append(1)
        } else if d == 0 && !allowZero {
            guard i < shape.count else { throw InLoopError(.format, "shape \(Tensor.format(target)) copies dimension \(i) (0) but the input \(Tensor.format(shape)) has rank \(shape.count)") }
            out.append(shape[i])
        } else {
            guard d >= 0 else { throw InLoopError(.format, "shape \(Tensor.format(target)) has a negative dimension") }
            out.append(d)
        }
    }
    let known = try Tensor.elementCount(out)
    if infer >= 0 {
        guard known > 0, total % known == 0 else {
            throw InLoopError(.format, "cannot reshape \(Tensor.format(shape)) (\(total) values) to \(Tensor.format(target))")
        }
        out[infer] = total / known
    }
    guard try Tensor.elementCount(out) == total else {
        throw InLoopError(.format, "cannot reshape \(Tensor.format(shape)) (\(total) values) to \(Tensor.format(target))")
    }
    return out
}
