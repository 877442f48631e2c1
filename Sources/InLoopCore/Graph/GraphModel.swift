import Synchronization

/// A graph compiled for one batch size: the steps, the storages they read and write, and where each
/// storage lives (caller arrays, constants, or an offset in the model's arena).
final class CompiledPlan {
    let batch: Int
    let steps: [Step]
    let storageKinds: [StorageKind]
    let inputStorage: [Int]
    let outputStorage: [Int]
    let inputShapes: [[Int]]
    let outputShapes: [[Int]]
    /// Values of each input / output for this batch.
    let inputCounts: [Int]
    let outputCounts: [Int]
    /// Arena offset (floats) of every buffer storage (-1 for the others).
    let offsets: [Int]
    /// Arena offsets of the float64 path's converted inputs and float32 outputs.
    let stagingIn: [Int]
    let stagingOut: [Int]
    /// Floats of arena this plan needs.
    let arenaCount: Int
    let bufferCount: Int
    let keepAlive: [FloatBuffer]
    let folded: Int, fused: Int, aliased: Int
    /// Base pointer of every storage.
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private(set) var boundArena: UnsafeMutablePointer<Float>? = nil
    var lastUse = 0

    init(batch: Int, steps: [Step], storages: [StorageInfo], inputStorage: [Int], outputStorage: [Int],
         inputShapes: [[Int]], outputShapes: [[Int]], keepAlive: [FloatBuffer],
         folded: Int, fused: Int, aliased: Int) throws(InLoopError) {
        self.batch = batch
        self.steps = steps
        self.storageKinds = storages.map { $0.kind }
        self.inputStorage = inputStorage
        self.outputStorage = outputStorage
        self.inputShapes = inputShapes
        self.outputShapes = outputShapes
        self.inputCounts = inputStorage.map { storages[$0].count }
        self.outputCounts = outputStorage.map { storages[$0].count }
        self.keepAlive = keepAlive
        self.folded = folded; self.fused = fused; self.aliased = aliased

        // Liveness: a buffer is live from the step that first touches it to the step that last does.
        let n = storages.count
        var first = [Int](repeating: -1, count: n), last = [Int](repeating: -1, count: n)
        for (i, st) in steps.enumerated() {
            for s in st.inputs + st.outputs + (st.scratch >= 0 ? [st.scratch] : []) {
                if first[s] < 0 { first[s] = i }
                last[s] = i
            }
        }
        var slotOf = [Int](repeating: -1, count: n)
        var capacity: [Int] = [], free: [Int] = []
        for (i, st) in steps.enumerated() {
            for s in st.outputs + (st.scratch >= 0 ? [st.scratch] : []) {
                guard case .buffer = storages[s].kind, slotOf[s] < 0 else { continue }
                let need = storages[s].count
                var pick = -1
                for (j, slot) in free.enumerated() where capacity[slot] >= need {
                    if pick < 0 || capacity[slot] < capacity[free[pick]] { pick = j }
                }
                if pick < 0, !free.isEmpty {
                    pick = free.indices.max { capacity[free[$0]] < capacity[free[$1]] } ?? 0
                }
                if pick >= 0 {
                    let slot = free.remove(at: pick)
                    capacity[slot] = max(capacity[slot], need)
                    slotOf[s] = slot
                } else {
                    slotOf[s] = capacity.count
                    capacity.append(need)
                }
            }
            var released = Set<Int>()
            for s in st.inputs + st.outputs + (st.scratch >= 0 ? [st.scratch] : []) where last[s] == i && slotOf[s] >= 0 {
                if released.insert(s).inserted { free.append(slotOf[s]) }
            }
        }
        func aligned(_ x: Int) -> Int { (x + 15) & ~15 }
        var slotOffset: [Int] = [], total = 0
        for c in capacity {
            // A saturated scratch count (Conv.workspaceCount) or any count past the element limit.
            guard c <= Limits.maxElements else {
                throw InLoopError(.outOfMemory, "batch \(batch): a buffer of \(c) floats is too large")
            }
            slotOffset.append(total)
            let (t, o) = total.addingReportingOverflow(aligned(c))
            guard !o else { throw InLoopError(.outOfMemory, "batch \(batch): workspace too large") }
            total = t
        }
        self.bufferCount = capacity.count
        self.offsets = slotOf.map { $0 < 0 ? -1 : slotOffset[$0] }
        var si: [Int] = [], so: [Int] = []
        for c in inputCounts { si.append(total); total += aligned(c) }
        for c in outputCounts { so.append(total); total += aligned(c) }
        guard total < (1 << 40) else { throw InLoopError(.outOfMemory, "batch \(batch): workspace of \(total) floats is too large") }
        try Limits.workspace(floats: total, batch: batch)
        self.stagingIn = si
        self.stagingOut = so
        self.arenaCount = total

        pointers = .allocate(capacity: max(n, 1))
        // Placeholder for storages set per call (inputs, outputs); never dereferenced before being set.
        let placeholder = keepAlive.first?.base ?? UnsafeMutablePointer<Float>(bitPattern: 64).unsafelyUnwrapped
        for s in 0..<n {
            if case .constant(let b) = storages[s].kind { pointers[s] = b.base } else { pointers[s] = placeholder }
        }
        // Constant buffers referenced only through storages must stay alive too.
        var extra: [FloatBuffer] = []
        for s in storages { if case .constant(let b) = s.kind { extra.append(b) } }
        constants = extra
        kinds = steps.map { $0.kind }
        let totalIds = steps.reduce(0) { $0 + $1.inputs.count + $1.outputs.count }
        ids = .allocate(capacity: max(totalIds, 1))
        idStart = .allocate(capacity: max(steps.count, 1))
        inputCountOf = .allocate(capacity: max(steps.count, 1))
        scratchOf = .allocate(capacity: max(steps.count, 1))
        var at = 0
        for (i, st) in steps.enumerated() {
            idStart[i] = at; inputCountOf[i] = st.inputs.count; scratchOf[i] = st.scratch
            for v in st.inputs + st.outputs { ids[at] = v; at += 1 }
        }
    }

    private let constants: [FloatBuffer]
    /// The step kinds, and every step's storage ids in one flat table: step i reads
    /// ids[idStart[i] ..< idStart[i] + inputs.count], writes the outputs that follow; scratch[i] or -1.
    private let kinds: [StepKind]
    private let ids: UnsafeMutablePointer<Int>
    private let idStart: UnsafeMutablePointer<Int>
    private let inputCountOf: UnsafeMutablePointer<Int>
    private let scratchOf: UnsafeMutablePointer<Int>

    deinit {
        pointers.deallocate()
        ids.deallocate(); idStart.deallocate(); inputCountOf.deallocate(); scratchOf.deallocate()
    }

    /// Points every buffer storage into `arena` (after the arena was (re)allocated).
    func bind(_ arena: UnsafeMutablePointer<Float>) {
        if boundArena == arena { return }
        for s in 0..<offsets.count where offsets[s] >= 0 { pointers[s] = arena + offsets[s] }
        boundArena = arena
    }

    @inline(__always)
    func execute(reproducible: Bool) {
        // Storage ids come from the flat table: running a `Step` itself copied it, with a retain and
        // release of each of its arrays, per step and call.
        for i in kinds.indices {
            let io = UnsafePointer(ids + idStart[i])
            kinds[i].execute(pointers, inputs: io, outputs: io + inputCountOf[i], scratch: scratchOf[i],
                             reproducible: reproducible)
        }
    }
}

/// What a compiled plan looks like (for tests, the CLI and curious users).
public struct PlanSummary: Equatable, Sendable {
    public let batch: Int
    /// Step kinds in execution order, e.g. ["affine", "dense", "dense"].
    public let steps: [String]
    /// Graph nodes evaluated at compile time, absorbed into another step, and turned into aliases.
    public let folded: Int
    public let fused: Int
    public let aliased: Int
    /// Distinct workspace buffers after liveness-based reuse.
    public let buffers: Int
    /// Floats of workspace (intermediates, scratch, float64 staging).
    public let workspaceFloats: Int
    /// Multiply-adds × 2 of the dense, matmul and convolution steps for the whole batch.
    public let flops: Int

    public func count(_ kind: String) -> Int { steps.filter { $0 == kind }.count }
}

/// A model defined by a `Graph` (read from ONNX): compiled per batch size on first use, with the
/// plans of the most recent batch sizes cached. Running a compiled plan allocates nothing.
public final class GraphModel: InferenceModel, @unchecked Sendable {  // shared use is guarded by `busy`
    public let name: String
    public let inputSpecs: [TensorSpec]
    public let outputSpecs: [TensorSpec]
    public var inputSize: Int { inputSpecs.first?.count ?? 0 }
    public var outputSize: Int { outputSpecs.first?.count ?? 0 }
    public let parameterCount: Int
    public var checkFinite = false
    public var reproducible = false
    /// The batch size every input fixes (a first dimension that is a number, not a symbol), if any.
    public let fixedBatch: Int?
    /// Compiled plans kept (least recently used is dropped first).
    public let maxCachedPlans: Int
    /// How many times a plan was compiled (for tests of plan reuse).
    public private(set) var compileCount = 0

    let graph: Graph
    let order: [Int]
    let uses: [String: Int]
    let derived = DerivedCache()
    private var plans: [CompiledPlan] = []
    private var useClock = 0
    private var arena: FloatBuffer? = nil
    private let busy = Atomic<Bool>(false)

    /// Validates the graph (every value defined, no cycle, shapes consistent), and compiles it for
    /// batch 1 and 2 (or the fixed batch) so that unsupported ops and shape errors surface at load.
    public init(graph: Graph, name: String = "", maxCachedPlans: Int = 8) throws(InLoopError) {
        self.graph = graph
        self.name = name.isEmpty ? graph.name : name
        self.maxCachedPlans = max(1, maxCachedPlans)
        guard !graph.inputs.isEmpty else { throw InLoopError(.unsupported, "the graph has no inputs") }
        guard !graph.outputs.isEmpty else { throw InLoopError(.format, "the graph has no outputs") }
        var fixed: Int? = nil
        var names = Set<String>()
        for input in graph.inputs {
            guard names.insert(input.name).inserted else { throw InLoopError(.format, "graph input '\(input.name)' is declared twice") }
            guard let d0 = input.dims.first else {
                throw InLoopError(.unsupported, "graph input '\(input.name)' is a scalar; InLoop needs a batch axis (axis 0) on every input")
            }
            for (i, d) in input.dims.enumerated().dropFirst() {
                guard let d else {
                    throw InLoopError(.unsupported, "graph input '\(input.name)' has a symbolic dimension on axis \(i); only axis 0 (the batch) may be symbolic")
                }
                guard d >= 1 else { throw InLoopError(.format, "graph input '\(input.name)' has dimension \(d) on axis \(i)") }
            }
            if let d0 {
                guard d0 >= 1 else { throw InLoopError(.format, "graph input '\(input.name)' has batch dimension \(d0)") }
                if let f = fixed, f != d0 {
                    throw InLoopError(.unsupported, "graph inputs fix different batch sizes (\(f) and \(d0) for '\(input.name)')")
                }
                fixed = d0
            }
        }
        fixedBatch = fixed
        let specsIn = graph.inputs.map { TensorSpec(name: $0.name, shape: $0.dims.dropFirst().map { $0 ?? 0 }) }
        for s in specsIn { _ = try Tensor.elementCount(s.shape) }
        inputSpecs = specsIn
        order = try GraphModel.topologicalOrder(graph)
        var uses: [String: Int] = [:]
        for node in graph.nodes { for i in node.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
        for o in graph.outputs { uses[o, default: 0] += 1 }
        self.uses = uses
        parameterCount = graph.constants.values.reduce(0) { if case .float(let t) = $1 { return $0 + t.count } else { return $0 } }

        // Validation compiles; the output shapes come from them.
        let first = fixed ?? 1
        let p1 = try GraphModel.compile(graph, order: order, batch: first, derived: derived, uses: uses)
        outputSpecs = zip(graph.outputs, p1.outputShapes).map { TensorSpec(name: $0.0, shape: Array($0.1.dropFirst())) }
        plans.append(p1)
        compileCount = 1
        if fixed == nil {
            let p2 = try GraphModel.compile(graph, order: order, batch: 2, derived: derived, uses: uses)
            for (k, s) in p2.outputShapes.enumerated() where Array(s.dropFirst()) != outputSpecs[k].shape {
                throw InLoopError(.unsupported, "graph output '\(graph.outputs[k])' has per-sample shape \(Tensor.format(outputSpecs[k].shape)) at batch 1 but \(Tensor.format(Array(s.dropFirst()))) at batch 2; InLoop needs outputs whose per-sample shape does not depend on the batch")
            }
            plans.append(p2)
            compileCount = 2
        }
    }

    static func compile(_ graph: Graph, order: [Int], batch: Int, derived: DerivedCache,
                        uses: [String: Int]) throws(InLoopError) -> CompiledPlan {
        var c = GraphCompiler(graph: graph, batch: batch, derived: derived, uses: uses)
        return try c.compile(order: order)
    }

    /// Kahn's algorithm over value names; a cycle or an undefined input is an error naming the node.
    static func topologicalOrder(_ graph: Graph) throws(InLoopError) -> [Int] {
        var producerOf: [String: Int] = [:]
        var defined = Set(graph.inputs.map { $0.name })
        for k in graph.constants.keys { defined.insert(k) }
        for (i, node) in graph.nodes.enumerated() {
            // Every op InLoop runs has a first output, which the compilers bind (found by fuzzing).
            guard let first = node.outputs.first, !first.isEmpty else {
                throw InLoopError(.format, "node '\(node.name)' (\(node.opType)) has no output")
            }
            for o in node.outputs where !o.isEmpty {
                guard producerOf[o] == nil, !defined.contains(o) else {
                    throw InLoopError(.format, "node '\(node.name)' (\(node.opType)): output '\(o)' is also produced elsewhere (a graph input, an initializer or another node)")
                }
                producerOf[o] = i
            }
        }
        var pending = [Int](repeating: 0, count: graph.nodes.count)
        var consumers = [[Int]](repeating: [], count: graph.nodes.count)
        for (i, node) in graph.nodes.enumerated() {
            for name in node.inputs where !name.isEmpty {
                if let p = producerOf[name] {
                    pending[i] += 1
                    consumers[p].append(i)
                } else if !defined.contains(name) {
                    throw InLoopError(.format, "node '\(node.name)' (\(node.opType)): input '\(name)' is not defined (not a graph input, an initializer or a node output)")
                }
            }
        }
        var ready = (0..<graph.nodes.count).filter { pending[$0] == 0 }.reversed() as [Int]
        var order: [Int] = []
        order.reserveCapacity(graph.nodes.count)
        while let i = ready.popLast() {
            order.append(i)
            for c in consumers[i] {
                pending[c] -= 1
                if pending[c] == 0 { ready.append(c) }
            }
        }
        if order.count < graph.nodes.count {
            let stuck = (0..<graph.nodes.count).filter { pending[$0] > 0 }.map { "'\(graph.nodes[$0].name)' (\(graph.nodes[$0].opType))" }
            throw InLoopError(.format, "the graph has a cycle through node\(stuck.count == 1 ? "" : "s") \(stuck.prefix(5).joined(separator: ", "))\(stuck.count > 5 ? ", ..." : "")")
        }
        for o in graph.outputs where producerOf[o] == nil && !defined.contains(o) {
            throw InLoopError(.format, "graph output '\(o)' is not produced by any node")
        }
        return order
    }

    // MARK: - Plans

    /// The plan for `batch`, compiled on first use; the arena grows to fit it.
    private func plan(for batch: Int) throws(InLoopError) -> CompiledPlan {
        useClock &+= 1
        var found: CompiledPlan? = nil
        for p in plans where p.batch == batch { found = p; break }
        let p: CompiledPlan
        if let found {
            p = found
        } else {
            let new = try GraphModel.compile(graph, order: order, batch: batch, derived: derived, uses: uses)
            compileCount += 1
            if plans.count >= maxCachedPlans, let victim = plans.indices.min(by: { plans[$0].lastUse < plans[$1].lastUse }) {
                plans.remove(at: victim)
            }
            plans.append(new)
            p = new
        }
        p.lastUse = useClock
        if arena == nil || (arena?.count ?? 0) < p.arenaCount {
            arena = try FloatBuffer(count: p.arenaCount)
        }
        guard let base = arena?.base else { throw InLoopError(.internal, "workspace missing") }
        p.bind(base)
        return p
    }

    /// Batch sizes with a compiled plan in the cache, most recently used last.
    public var cachedBatchSizes: [Int] { plans.sorted { $0.lastUse < $1.lastUse }.map { $0.batch } }

    /// Floats of workspace currently allocated.
    public var workspaceFloats: Int { arena?.count ?? 0 }

    /// The compiled plan for `batch` (compiling it if needed), described.
    public func summary(batch: Int) throws(InLoopError) -> PlanSummary {
        try checkBatch(batch)
        try acquire()
        defer { release() }
        let p = try plan(for: batch)
        var flops = 0
        for st in p.steps {
            switch st.kind {
            case .dense(let r, let k, let n, _, _, _): flops += 2 * r * k * n
            case .matMul(let mm): flops += 2 * mm.m * mm.n * mm.k * mm.aOffsets.count
            case .conv(let g, let nb, _, _, _): flops += 2 * nb * g.outputCount * (g.channelsIn / g.group) * g.kernelSpatialCount
            case .convTranspose(let g, let nb, _, _, _): flops += 2 * nb * g.inputCount * (g.channelsOut / g.group) * g.kernelSpatialCount
            default: break
            }
        }
        return PlanSummary(batch: batch, steps: p.steps.map { $0.kind.name }, folded: p.folded, fused: p.fused,
                           aliased: p.aliased, buffers: p.bufferCount, workspaceFloats: p.arenaCount, flops: flops)
    }

    // MARK: - Forward

    public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, into y: UnsafeMutableBufferPointer<Float>) throws(InLoopError) {
        try forwardSingle(x, batch, y) { (i, o) throws(InLoopError) in try run(batch: batch, inputs: i, outputs: o) }
    }

    public func forward(_ x: UnsafeBufferPointer<Double>, batch: Int, into y: UnsafeMutableBufferPointer<Double>) throws(InLoopError) {
        try forwardSingle(x, batch, y) { (i, o) throws(InLoopError) in try run(batch: batch, inputs: i, outputs: o) }
    }

    /// A one-input, one-output call: checks it, then hands `run` the two pointers as arrays of one.
    @inline(__always)
    private func forwardSingle<T>(_ x: UnsafeBufferPointer<T>, _ batch: Int, _ y: UnsafeMutableBufferPointer<T>,
                                  _ run: (UnsafeBufferPointer<UnsafePointer<T>>, UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws(InLoopError) -> Void) throws(InLoopError) {
        try checkSingle()
        try checkBatch(batch)
        guard let xb = x.baseAddress, let yb = y.baseAddress else { throw InLoopError(.nullPointer, "input or output buffer is null") }
        try checkCount("input", inputSpecs[0], x.count, batch)
        try checkCount("output", outputSpecs[0], y.count, batch)
        var xp = UnsafePointer(xb), yp = yb
        try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
            try withUnsafePointer(to: &yp) { (o) throws(InLoopError) in
                try run(UnsafeBufferPointer(start: i, count: 1), UnsafeBufferPointer(start: o, count: 1))
            }
        }
    }

    public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Float>>,
                    outputs: UnsafeBufferPointer<UnsafeMutablePointer<Float>>) throws(InLoopError) {
        try checkArrays(batch: batch, inputs.count, outputs.count)
        // The float32 path reads inputs in place while outputs are written: no output may overlap anything.
        try checkOverlaps(batch: batch, inputs: inputs, outputs: outputs)
        try acquire()
        defer { release() }
        if checkFinite {
            for k in 0..<inputs.count { try finite("input", k, inputs[k], batch * inputSpecs[k].count) }
        }
        let p = try plan(for: batch)
        for k in 0..<inputs.count { p.pointers[p.inputStorage[k]] = UnsafeMutablePointer(mutating: inputs[k]) }
        for k in 0..<outputs.count { p.pointers[p.outputStorage[k]] = outputs[k] }
        p.execute(reproducible: reproducible)
        if checkFinite {
            for k in 0..<outputs.count { try finite("output", k, UnsafePointer(outputs[k]), batch * outputSpecs[k].count) }
        }
    }

    public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Double>>,
                    outputs: UnsafeBufferPointer<UnsafeMutablePointer<Double>>) throws(InLoopError) {
        try checkArrays(batch: batch, inputs.count, outputs.count)
        // Inputs are staged before any output is written, so outputs may overlap inputs, not each other.
        try checkOverlaps(batch: batch, inputs: nil, outputs: outputs)
        try acquire()
        defer { release() }
        if checkFinite {
            for k in 0..<inputs.count { try finite("input", k, inputs[k], batch * inputSpecs[k].count) }
        }
        let p = try plan(for: batch)
        guard let base = arena?.base else { throw InLoopError(.internal, "workspace missing") }
        for k in 0..<inputs.count {
            let dst = base + p.stagingIn[k], src = inputs[k]
            for i in 0..<p.inputCounts[k] { dst[i] = Float(src[i]) }
            p.pointers[p.inputStorage[k]] = dst
        }
        for k in 0..<outputs.count { p.pointers[p.outputStorage[k]] = base + p.stagingOut[k] }
        p.execute(reproducible: reproducible)
        for k in 0..<outputs.count {
            let src = base + p.stagingOut[k], dst = outputs[k]
            for i in 0..<p.outputCounts[k] { dst[i] = Double(src[i]) }
        }
        if checkFinite {
            for k in 0..<outputs.count { try finite("output", k, UnsafePointer(outputs[k]), batch * outputSpecs[k].count) }
        }
    }

    /// Convenience for Swift callers and tests: runs arrays, returns arrays.
    public func run(batch: Int, _ inputs: [[Float]]) throws(InLoopError) -> [[Float]] {
        guard inputs.count == inputSpecs.count else {
            throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) inputs; got \(inputs.count) arrays")
        }
        for (k, x) in inputs.enumerated() { try checkCount("input", inputSpecs[k], x.count, batch) }
        var outs = outputSpecs.map { [Float](repeating: 0, count: max(batch, 0) * $0.count) }
        let inPtrs = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: max(inputs.count, 1))
        let outPtrs = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: max(outs.count, 1))
        defer { inPtrs.deallocate(); outPtrs.deallocate() }
        var keep: [UnsafeMutablePointer<Float>] = []
        for x in inputs {
            let c = UnsafeMutablePointer<Float>.allocate(capacity: max(x.count, 1))
            c.initialize(from: x, count: x.count)
            keep.append(c)
        }
        defer { for c in keep { c.deallocate() } }
        for k in 0..<inputs.count { inPtrs[k] = UnsafePointer(keep[k]) }
        var outBufs: [UnsafeMutablePointer<Float>] = []
        for o in outs { outBufs.append(.allocate(capacity: max(o.count, 1))) }
        defer { for b in outBufs { b.deallocate() } }
        for k in 0..<outs.count { outPtrs[k] = outBufs[k] }
        try run(batch: batch, inputs: UnsafeBufferPointer(start: inPtrs, count: inputs.count),
                outputs: UnsafeBufferPointer(start: outPtrs, count: outs.count))
        for k in 0..<outs.count { outs[k] = Array(UnsafeBufferPointer(start: outBufs[k], count: outs[k].count)) }
        return outs
    }

    // MARK: - Checks

    private func checkSingle() throws(InLoopError) {
        guard inputSpecs.count == 1, outputSpecs.count == 1 else {
            throw InLoopError(.invalidArgument, "model '\(name)' has \(inputSpecs.count) inputs and \(outputSpecs.count) outputs; run it with all of them (inloop_model_run_f32/_f64)")
        }
    }

    private func checkBatch(_ batch: Int) throws(InLoopError) {
        guard batch >= 1, batch <= Int(Int32.max) else {
            throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
        }
        if let f = fixedBatch, batch != f {
            throw InLoopError(.sizeMismatch, "model '\(name)' has a fixed batch size of \(f) (the first dimension of its inputs); got batch \(batch)")
        }
        // (two loops: `inputSpecs + outputSpecs` would allocate on every call)
        for s in inputSpecs where batch.multipliedReportingOverflow(by: s.count).overflow {
            throw InLoopError(.invalidArgument, "batch \(batch) is too large")
        }
        for s in outputSpecs where batch.multipliedReportingOverflow(by: s.count).overflow {
            throw InLoopError(.invalidArgument, "batch \(batch) is too large")
        }
    }

    private func checkCount(_ what: String, _ spec: TensorSpec, _ count: Int, _ batch: Int) throws(InLoopError) {
        let need = batch * spec.count
        guard count >= need else {
            throw InLoopError(.sizeMismatch, "\(what) '\(spec.name)' has \(count) values; batch \(batch) × \(spec.count) (shape \(Tensor.format(spec.shape))) needs \(need)")
        }
    }

    private func checkArrays(batch: Int, _ ni: Int, _ no: Int) throws(InLoopError) {
        guard ni == inputSpecs.count, no == outputSpecs.count else {
            throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) input\(inputSpecs.count == 1 ? "" : "s") and \(outputSpecs.count) output\(outputSpecs.count == 1 ? "" : "s"); got \(ni) input and \(no) output arrays")
        }
        try checkBatch(batch)
    }

    private func finite<T: BinaryFloatingPoint>(_ what: String, _ k: Int, _ p: UnsafePointer<T>, _ count: Int) throws(InLoopError) {
        if Kernels.allFinite(p, count: count) { return }
        var i = 0
        while i < count, p[i].isFinite { i += 1 }
        let spec = what == "input" ? inputSpecs[k] : outputSpecs[k]
        throw InLoopError(.nonFinite, "\(what) '\(spec.name)' value \(i % max(spec.count, 1) + 1) of sample \(i / max(spec.count, 1) + 1) is \(i < count ? Double(p[i]) : 0) (not finite)")
    }

    /// No output may overlap another output, nor (when `inputs` are given) an input.
    private func checkOverlaps<T>(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<T>>?,
                                  outputs: UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws(InLoopError) {
        let width = MemoryLayout<T>.stride
        for k in 0..<outputs.count {
            let o0 = UnsafeRawPointer(outputs[k]), o1 = o0 + width * batch * outputSpecs[k].count
            if let inputs {
                for j in 0..<inputs.count {
                    let i0 = UnsafeRawPointer(inputs[j]), i1 = i0 + width * batch * inputSpecs[j].count
                    if o0 < i1 && i0 < o1 {
                        throw InLoopError(.invalidArgument, "output \(k) ('\(outputSpecs[k].name)') overlaps input \(j) ('\(inputSpecs[j].name)'); pass separate arrays")
                    }
                }
            }
            for j in 0..<k {
                let p0 = UnsafeRawPointer(outputs[j]), p1 = p0 + width * batch * outputSpecs[j].count
                if o0 < p1 && p0 < o1 {
                    throw InLoopError(.invalidArgument, "outputs \(j) and \(k) overlap; pass separate arrays")
                }
            }
        }
    }

    public func setOptions(checkFinite: Bool?, reproducible: Bool?) throws(InLoopError) {
        try acquire()
        defer { release() }
        if let checkFinite { self.checkFinite = checkFinite }
        if let reproducible { self.reproducible = reproducible }
    }

    private func acquire() throws(InLoopError) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw InLoopError(.busy, "model is being run by another thread; use one model handle per thread")
        }
    }

    private func release() { busy.store(false, ordering: .releasing) }
}
