import Synchronization

extension Engine {
    /// A graph ready to run from C and Fortran: the one engine's plan and executor behind the batch
    /// convenience (every input and output leads with the batch: a symbolic axis 0, or the same fixed
    /// size on every input). Computes in the graph's type (float64 graphs in float64); the entry
    /// points of the other type convert through staging buffers.
    ///
    /// One plan serves every batch size when the graph's shapes are linear in the batch; otherwise a
    /// plan is specialised per batch size (the 8 most recently used are kept).
    ///
    /// Not meant to be run from two threads at once: a concurrent call fails with `.busy`.
    public final class Model: InferenceModel, @unchecked Sendable {  // guarded by `busy`
        public let name: String
        public let inputSpecs: [TensorSpec]
        public let outputSpecs: [TensorSpec]
        public var inputSize: Int { inputSpecs.first?.count ?? 0 }
        public var outputSize: Int { outputSpecs.first?.count ?? 0 }
        public let parameterCount: Int
        public var checkFinite = false
        public var reproducible = false
        /// The batch size every input fixes (no symbolic axis 0), if any.
        public let fixedBatch: Int?
        public let graph: Graph
        /// Plans compiled so far (for tests of plan reuse).
        public private(set) var compileCount = 0

        private enum Runner {
            case single(Executor<Float>)
            case double(Executor<Double>)
        }
        /// The batch-generic runner, when the graph is linear in the batch.
        private var generic: Runner?
        /// Specialised runners by batch size, most recently used last.
        private var specialised: [(n: Int, runner: Runner)] = []
        private static let maxSpecialised = 8
        private let busy = Atomic<Bool>(false)
        /// Staging of the entry points whose type is not the compute type.
        private var stagingIn: [TensorStorage] = []
        private var stagingOut: [TensorStorage] = []
        private let inPointers: UnsafeMutableRawPointer
        private let outPointers: UnsafeMutableRawPointer

        /// `graph` must be verified and typed (`verify()`, `inferTypes()`; a graph whose shapes are
        /// not linear in the batch may fail `inferTypes()` with `notLinear`: it is then specialised).
        public init(graph: Graph, name: String = "") throws(InLoopError) {
            self.graph = graph
            self.name = name.isEmpty ? graph.name : name
            guard !graph.inputs.isEmpty else { throw InLoopError(.unsupported, "the graph has no inputs") }
            guard !graph.outputs.isEmpty else { throw InLoopError(.format, "the graph has no outputs") }
            guard graph.dtype == .float32 || graph.dtype == .float64 else {
                throw InLoopError(.unsupported, "a graph of \(graph.dtype) values")
            }
            // Fusion (Dense from Gemm/MatMul, activations into Dense) on a typed graph; a graph that is
            // typed per batch size runs unfused.
            do {
                try graph.inferTypes()
                try Engine.fuse(graph)
            } catch where Engine.isNotLinear(error) {}
            // The batch convenience: axis 0 of every input is the batch.
            var fixed: Int? = nil
            var specs: [TensorSpec] = []
            for v in graph.inputs {
                let value = graph[v]
                guard let t = value.type, let d0 = t.shape.first else {
                    throw InLoopError(.unsupported, "graph input '\(value.name)' is a scalar; InLoop needs a batch axis (axis 0) on every input")
                }
                if let k = d0.known {
                    guard k >= 1 else { throw InLoopError(.format, "graph input '\(value.name)' has batch dimension \(k)") }
                    if let f = fixed, f != k {
                        throw InLoopError(.unsupported, "graph inputs fix different batch sizes (\(f) and \(k) for '\(value.name)')")
                    }
                    fixed = k
                } else if d0 != SymInt(graph.batch ?? Symbol(id: -1, name: "")) {
                    throw InLoopError(.unsupported, "graph input '\(value.name)' has \(d0) on axis 0, not the batch")
                }
                var rest: [Int] = []
                for (i, d) in t.shape.enumerated().dropFirst() {
                    guard let k = d.known else {
                        throw InLoopError(.unsupported, "graph input '\(value.name)' has a symbolic dimension on axis \(i); only axis 0 (the batch) may be symbolic")
                    }
                    guard k >= 1 else { throw InLoopError(.format, "graph input '\(value.name)' has dimension \(k) on axis \(i)") }
                    rest.append(k)
                }
                _ = try InLoopCore.Tensor.elementCount(rest)
                specs.append(TensorSpec(name: value.name, shape: rest))
            }
            if fixed != nil, graph.batch != nil {
                throw InLoopError(.unsupported, "graph inputs mix a fixed and a symbolic batch size")
            }
            fixedBatch = fixed
            inputSpecs = specs
            // floating constants the nodes use (not those a fusion left behind)
            var params = 0
            var used = Set<ValueID>()
            for n in graph.nodes { for case let v? in n.inputs { used.insert(v) } }
            for v in used.sorted() {
                if let c = graph[v].constant, c.dtype.isFloatingPoint { params += c.count }
            }
            parameterCount = params
            inPointers = .allocate(byteCount: Swift.max(graph.inputs.count, 1) * 8, alignment: 8)
            outPointers = .allocate(byteCount: Swift.max(graph.outputs.count, 1) * 8, alignment: 8)

            // Compile: one plan for every batch size, or specialised ones (validated at 1 and 2 now).
            var outs: [TensorSpec]
            if let fixed {
                generic = try Model.makeRunner(graph, specialisedAt: nil)
                outs = try Model.outputSpecs(graph, batch: nil, fixed: fixed)
                compileCount = 1
            } else {
                do {
                    try graph.inferTypes()
                    generic = try Model.makeRunner(graph, specialisedAt: nil)
                    outs = try Model.outputSpecs(graph, batch: graph.batch, fixed: nil)
                    compileCount = 1
                } catch where Engine.isNotLinear(error) {
                    generic = nil
                    let r1 = try Model.makeRunner(graph, specialisedAt: 1)
                    outs = try Model.outputSpecs(graph, batch: nil, fixed: 1)
                    let r2 = try Model.makeRunner(graph, specialisedAt: 2)
                    let outs2 = try Model.outputSpecs(graph, batch: nil, fixed: 2)
                    for (k, s) in outs2.enumerated() where s.shape != outs[k].shape {
                        throw InLoopError(.unsupported, "graph output '\(s.name)' has per-sample shape \(InLoopCore.Tensor.format(outs[k].shape)) at batch 1 but \(InLoopCore.Tensor.format(s.shape)) at batch 2; InLoop needs outputs whose per-sample shape does not depend on the batch")
                    }
                    specialised = [(1, r1), (2, r2)]
                    compileCount = 2
                }
            }
            outputSpecs = outs
        }

        deinit {
            inPointers.deallocate()
            outPointers.deallocate()
        }

        /// Per-sample output shapes from the typed graph: axis 0 must be the batch (or the fixed size).
        private static func outputSpecs(_ g: Graph, batch: Symbol?, fixed: Int?) throws(InLoopError) -> [TensorSpec] {
            var specs: [TensorSpec] = []
            for v in g.outputs {
                guard let t = g[v].type else { throw InLoopError(.internal, "output without a type") }
                let first: SymInt? = batch.map { SymInt($0) } ?? fixed.map { SymInt($0) }
                guard let d0 = t.shape.first, d0 == first else {
                    throw InLoopError(.unsupported, "graph output '\(g[v].name)' has shape \(t.shape.formatted); InLoop needs the batch as the first axis of every output")
                }
                var rest: [Int] = []
                for d in t.shape.dropFirst() {
                    guard let k = d.known else {
                        throw InLoopError(.unsupported, "graph output '\(g[v].name)' has shape \(t.shape.formatted); its per-sample dimensions must be known")
                    }
                    rest.append(k)
                }
                _ = try InLoopCore.Tensor.elementCount(rest)
                specs.append(TensorSpec(name: g[v].name, shape: rest))
            }
            return specs
        }

        /// Compiles (types inferred for n when specialised) and makes the executor of the compute type;
        /// checks the plan's array sizes against the specs.
        private static func makeRunner(_ graph: Graph, specialisedAt n: Int?) throws(InLoopError) -> Runner {
            if let n, let b = graph.batch { try graph.inferTypes(bindings: [b: n]) }
            let plan = try Engine.compile(graph)
            guard var w = plan.workspaceElements(at: 1) else { throw InLoopError(.outOfMemory, "the work space size overflows") }
            // The outputs the caller provides count too: a hostile file must not make the caller
            // allocate (and the model fill) gigabytes per sample.
            for o in plan.outputSizes {
                let (sum, overflow) = w.addingReportingOverflow(o.at(1))
                guard !overflow else { throw InLoopError(.outOfMemory, "the work space size overflows") }
                w = sum
            }
            try Limits.workspace(floats: w * (graph.dtype.size / 4), batch: 1)
            if graph.dtype == .float64 { return .double(try Executor<Double>(plan: plan, graph: graph)) }
            return .single(try Executor<Float>(plan: plan, graph: graph))
        }

        /// The runner for batch n (specialising when the graph needs it; compiled plans are kept).
        private func runner(_ n: Int) throws(InLoopError) -> Runner {
            if let generic { return generic }
            if let k = specialised.lastIndex(where: { $0.n == n }) {
                if k != specialised.count - 1 { specialised.append(specialised.remove(at: k)) }
                return specialised[specialised.count - 1].runner
            }
            let r = try Model.makeRunner(graph, specialisedAt: n)
            compileCount += 1
            if specialised.count >= Model.maxSpecialised { specialised.removeFirst() }
            specialised.append((n, r))
            return r
        }

        /// Steps of the (generic, or most recent) plan.
        public var stepCount: Int? {
            guard let r = generic ?? specialised.last?.runner else { return nil }
            return plan(of: r).stepCount
        }

        private func plan(of r: Runner) -> Plan {
            switch r {
            case .single(let e): return e.plan
            case .double(let e): return e.plan
            }
        }

        // MARK: - Forward

        public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, into y: UnsafeMutableBufferPointer<Float>) throws(InLoopError) {
            try checkSingle(x.count, y.count, batch)
            guard let xb = x.baseAddress, let yb = y.baseAddress else { throw InLoopError(.nullPointer, "input or output buffer is null") }
            var xp = UnsafePointer(xb), yp = yb
            try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
                try withUnsafePointer(to: &yp) { (o) throws(InLoopError) in
                    try run(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: UnsafeBufferPointer(start: o, count: 1))
                }
            }
        }

        public func forward(_ x: UnsafeBufferPointer<Double>, batch: Int, into y: UnsafeMutableBufferPointer<Double>) throws(InLoopError) {
            try checkSingle(x.count, y.count, batch)
            guard let xb = x.baseAddress, let yb = y.baseAddress else { throw InLoopError(.nullPointer, "input or output buffer is null") }
            var xp = UnsafePointer(xb), yp = yb
            try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
                try withUnsafePointer(to: &yp) { (o) throws(InLoopError) in
                    try run(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: UnsafeBufferPointer(start: o, count: 1))
                }
            }
        }

        public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Float>>,
                        outputs: UnsafeBufferPointer<UnsafeMutablePointer<Float>>) throws(InLoopError) {
            try execute(batch: batch, inputs: inputs, outputs: outputs)
        }

        public func run(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<Double>>,
                        outputs: UnsafeBufferPointer<UnsafeMutablePointer<Double>>) throws(InLoopError) {
            try execute(batch: batch, inputs: inputs, outputs: outputs)
        }

        /// Checks the call, then runs in the compute type: in place when the caller's type is it, else
        /// through the staging buffers (every input converted before any output is written, so then
        /// outputs may overlap inputs).
        private func execute<U: EngineScalar>(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                              outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>) throws(InLoopError) {
            try checkArrays(batch: batch, inputs.count, outputs.count)
            let native = U.dtype == graph.dtype
            try checkOverlaps(batch: batch, inputs: native ? inputs : nil, outputs: outputs)
            try acquire()
            defer { release() }
            if checkFinite {
                for k in 0..<inputs.count { try finite("input", k, inputs[k], batch * inputSpecs[k].count) }
            }
            let r = try runner(batch)
            let p = plan(of: r)
            for k in 0..<inputs.count where p.inputSizes[k].at(batch) != batch * inputSpecs[k].count {
                throw InLoopError(.internal, "input \(k): the plan takes \(p.inputSizes[k].at(batch)) values at batch \(batch)")
            }
            for k in 0..<outputs.count where p.outputSizes[k].at(batch) != batch * outputSpecs[k].count {
                throw InLoopError(.internal, "output \(k): the plan gives \(p.outputSizes[k].at(batch)) values at batch \(batch)")
            }
            switch r {
            case .single(let e): try forward(e, batch, inputs, outputs)
            case .double(let e): try forward(e, batch, inputs, outputs)
            }
            if checkFinite {
                for k in 0..<outputs.count { try finite("output", k, UnsafePointer(outputs[k]), batch * outputSpecs[k].count) }
            }
        }

        private func forward<T: EngineScalar, U: EngineScalar>(_ e: Executor<T>, _ n: Int, _ inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                                             _ outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>) throws(InLoopError) {
            e.reproducible = reproducible
            if T.self == U.self {
                let i = UnsafeRawBufferPointer(inputs).bindMemory(to: UnsafePointer<T>.self)
                let o = UnsafeRawBufferPointer(outputs).bindMemory(to: UnsafeMutablePointer<T>.self)
                try e.forward(n, inputs: i, outputs: o)
                return
            }
            try stage(n)
            let ip = inPointers.bindMemory(to: UnsafePointer<T>.self, capacity: inputs.count)
            let op = outPointers.bindMemory(to: UnsafeMutablePointer<T>.self, capacity: outputs.count)
            for k in 0..<inputs.count {
                let d = try stagingIn[k].pointer(as: T.self), s = inputs[k]
                for i in 0..<n * inputSpecs[k].count { d[i] = T(s[i]) }
                ip[k] = UnsafePointer(d)
            }
            for k in 0..<outputs.count { op[k] = try stagingOut[k].pointer(as: T.self) }
            try e.forward(n, inputs: UnsafeBufferPointer(start: ip, count: inputs.count),
                          outputs: UnsafeBufferPointer(start: op, count: outputs.count))
            for k in 0..<outputs.count {
                let s = op[k], d = outputs[k]
                for i in 0..<n * outputSpecs[k].count { d[i] = U(s[i]) }
            }
        }

        /// Staging buffers of the compute type for batch n (grown only).
        private func stage(_ n: Int) throws(InLoopError) {
            if stagingIn.count == inputSpecs.count,
               zip(stagingIn, inputSpecs).allSatisfy({ $0.0.count >= n * $0.1.count }),
               zip(stagingOut, outputSpecs).allSatisfy({ $0.0.count >= n * $0.1.count }) { return }
            let need = (inputSpecs + outputSpecs).reduce(0) { $0 + n * $1.count }
            try Limits.workspace(floats: need * (graph.dtype.size / 4), batch: n)
            stagingIn = try inputSpecs.map { (s) throws(InLoopError) in try TensorStorage(dtype: graph.dtype, count: Swift.max(n * s.count, 1)) }
            stagingOut = try outputSpecs.map { (s) throws(InLoopError) in try TensorStorage(dtype: graph.dtype, count: Swift.max(n * s.count, 1)) }
        }

        // MARK: - Checks

        private func checkSingle(_ nx: Int, _ ny: Int, _ batch: Int) throws(InLoopError) {
            guard inputSpecs.count == 1, outputSpecs.count == 1 else {
                throw InLoopError(.invalidArgument, "model '\(name)' has \(inputSpecs.count) inputs and \(outputSpecs.count) outputs; run it with all of them (inloop_model_run_f32/_f64)")
            }
            try checkBatch(batch)
            try checkCount("input", inputSpecs[0], nx, batch)
            try checkCount("output", outputSpecs[0], ny, batch)
        }

        private func checkBatch(_ batch: Int) throws(InLoopError) {
            guard batch >= 1, batch <= Int(Int32.max) else {
                throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
            }
            if let f = fixedBatch, batch != f {
                throw InLoopError(.sizeMismatch, "model '\(name)' has a fixed batch size of \(f) (the first dimension of its inputs); got batch \(batch)")
            }
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
                throw InLoopError(.sizeMismatch, "\(what) '\(spec.name)' has \(count) values; batch \(batch) × \(spec.count) (shape \(InLoopCore.Tensor.format(spec.shape))) needs \(need)")
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
            throw InLoopError(.nonFinite, "\(what) '\(spec.name)' value \(i % Swift.max(spec.count, 1) + 1) of sample \(i / Swift.max(spec.count, 1) + 1) is \(i < count ? Double(p[i]) : 0) (not finite)")
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
}
