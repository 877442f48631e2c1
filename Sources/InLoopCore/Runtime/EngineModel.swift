import Synchronization

extension Engine {
    /// A graph ready to run from C and Fortran: the one engine's plan and executor. Computes in the
    /// graph's type (float64 graphs in float64); the entry points of the other type convert through
    /// staging buffers.
    ///
    /// Two ways to run it (`docs/ENGINE.md` §6.1 "as built"):
    /// - **Full shapes** (`run(shapes:...)`, `outputShapes(for:)`): every input with its whole shape, as
    ///   onnxruntime takes it. The shapes bind every symbol of the inputs' declared shapes (a symbol
    ///   shared by two inputs must get one value); the output shapes follow from them.
    /// - **The batch convenience** (`forward(_:batch:into:)`, `run(batch:...)`): an input or output
    ///   whose declared shape leads with the batch symbol (`Graph.batch`), or, in a graph without one,
    ///   with the size every input leads with (`fixedBatch`), is *batched*: it holds `batch` samples of
    ///   its per-sample shape (`inputSpecs`). Every other input or output holds its declared static
    ///   shape whatever the batch. A graph with no batch axis at all runs with batch 1. Inputs with other
    ///   symbolic dimensions, and outputs whose size depends on the batch without leading with it
    ///   (a transpose that moves the batch), run only with full shapes.
    ///
    /// One plan serves every size when the graph's shapes are linear in the batch symbol and no other
    /// symbol; otherwise a plan is specialised per set of symbol values (the 8 most recently used are
    /// kept for each way of running), so a size seen before compiles and allocates nothing.
    ///
    /// Not meant to be run from two threads at once: a concurrent call fails with `.busy`.
    public final class Model: @unchecked Sendable {  // guarded by `busy`
        public let name: String
        /// Per-sample shapes of batched inputs, whole shapes of the others (-1: a symbolic dimension
        /// other than the batch; such an input runs only with full shapes).
        public let inputSpecs: [TensorSpec]
        public let outputSpecs: [TensorSpec]
        /// Values per sample of the first input and output (stored: `inputSpecs.first` copied the spec,
        /// retaining its name and shape, on every batch-1 call).
        public let inputSize: Int
        public let outputSize: Int
        public let parameterCount: Int
        public var checkFinite = false
        public var reproducible = false
        /// The batch size every input fixes (no batch symbol, every input leads with this size), if any.
        public let fixedBatch: Int?
        /// Which inputs and outputs the batch convenience gives `batch` samples (see the type's notes).
        public let inputBatched: [Bool]
        public let outputBatched: [Bool]
        /// `inputBatched.contains(true)`, once (checked per call).
        private let anyInputBatched: Bool
        /// The largest batch whose per-sample counts times the batch fit an Int (checked per call).
        private let largestBatch: Int
        /// The inputs' declared shapes (symbolic dimensions included).
        public let inputShapes: [Shape]
        public let graph: Graph
        /// The graph the plans run: `graph`, or a copy of it with inference-only folds (BN folding).
        private let planGraph: Graph
        /// Plans compiled so far (for tests of plan reuse).
        public private(set) var compileCount = 0

        private enum Runner {
            case single(Executor<Float>)
            case double(Executor<Double>)
        }
        /// The batch-generic runner, when the graph is linear in the batch and has no other symbol.
        private var generic: Runner?
        // MARK: family nodes (value inputs)
        /// Graph inputs whose values determine shapes (Resize/Upsample scales given as a graph input),
        /// with the nodes that read them: the full-shape path specialises the plan on their values.
        private let valueUses: [Engine.ValueUse]
        /// The values (float64 bit patterns) of the value inputs for the call at hand; nil outside a
        /// run (then the output shapes cannot be known).
        private var values: [Int]? = nil
        /// The graph's output shapes for the generic runner (symbolic in the batch only).
        private var genericOutputShapes: [Shape] = []
        /// Why the batch convenience does not apply to this graph (nil: it does).
        public let convenienceError: InLoopError?
        /// Specialised runners of the batch convenience by batch size, most recently used last.
        private var specialised: [(n: Int, runner: Runner)] = []
        /// Specialised runners of the full-shape path by symbol values (index = symbol id), with their
        /// output shapes; most recently used last.
        private var shaped: [(key: [Int], runner: Runner, outputs: [[Int]])] = []
        private static let maxSpecialised = 8
        private let busy = Atomic<Bool>(false)
        /// Staging of the entry points whose type is not the compute type.
        private var stagingIn: [TensorStorage] = []
        private var stagingOut: [TensorStorage] = []
        private let inPointers: UnsafeMutableRawPointer
        private let outPointers: UnsafeMutableRawPointer
        /// The input pointers a range-guarded call passes on (input 0 replaced by its clamped copy).
        private let guardPointers: UnsafeMutableRawPointer
        /// The input-range check (RangeGuard.swift); nil until ranges are set.
        var rangeGuard: RangeGuard? = nil
        /// MC-dropout (Uncertainty.swift); nil while off.
        var mcDropout: MCDropout? = nil
        /// An ensemble (outputs mean and spread, `isEnsemble`): plain forward calls return the mean, the
        /// spread going to this scratch array.
        let ensembleScratch = EnsembleScratch()
        private let ensembleForward: Bool
        /// The noise input (Noise.swift); nil until declared.
        var noiseState: NoiseState? = nil
        /// Work arrays of the full-shape path (sized at init: running them allocates nothing).
        private var bound: [Int]
        /// (raw buffers, not arrays: writing them per call needs no uniqueness or exclusivity check)
        private let inCounts: UnsafeMutableBufferPointer<Int>
        private let outCounts: UnsafeMutableBufferPointer<Int>
        // MARK: threads (`Engine.Threads`, docs/ENGINE.md "Threads")
        /// Whether a batch may run as contiguous slices on several threads: one plan for every batch
        /// size, every input and output leads with the batch symbol, and every node that runs is per
        /// sample (`OpDefinition.perSample`). Other graphs run whole on the calling thread.
        public let splittable: Bool
        /// The work of one sample, for the split threshold: the flops of its matrix products and
        /// convolutions plus `elementWork` per work-space value (element-wise work).
        public let workPerSample: Int
        /// Parts the last batch-convenience or full-shape run used (1: it ran whole).
        public private(set) var lastParts = 1
        /// The split state (a `SplitJob` of the compute type), made by the first call that splits.
        private var splitJob: AnyObject? = nil
        /// Set by a split run whose parts found every output value finite (the caller's check is then done).
        private var outputsChecked = false

        /// `graph` must be verified and typed (`verify()`, `inferTypes()`; a graph whose shapes are
        /// not linear in the batch may fail `inferTypes()` with `notLinear`: it is then specialised).
        public init(graph: Graph, name: String = "") throws(InLoopError) {
            self.graph = graph
            self.name = name.isEmpty ? graph.name : name
            // (a graph without inputs, e.g. one Constant, runs with zero input arrays)
            guard !graph.outputs.isEmpty else { throw InLoopError(.format, "the graph has no outputs") }
            guard graph.dtype == .float32 || graph.dtype == .float64 else {
                throw InLoopError(.unsupported, "a graph of \(graph.dtype) values")
            }
            // Fusion (Dense from Gemm/MatMul, activations into Dense) on a typed graph; a graph that is
            // typed per batch size runs unfused.
            var compiled = graph
            do {
                try graph.inferTypes()
                try Engine.fuse(graph)
                // MARK: family fuse (BN folding): on a copy the plans run; `graph`, which training and
                // saving read, keeps its BatchNormalization nodes
                let folded = try graph.copy()
                if let s = try? Engine.fuse(folded, foldNormalization: true), s.normalizations > 0 { compiled = folded }
            } catch where Engine.isNotLinear(error) {}
            let planGraph = compiled
            self.planGraph = planGraph
            var declared: [Shape] = []
            for v in planGraph.inputs {
                guard let t = planGraph[v].type else { throw InLoopError(.internal, "graph input '\(planGraph[v].name)' has no type") }
                for (i, d) in t.shape.enumerated() {
                    // 0 is allowed (an empty tensor, e.g. CastLike's `like` that gives only a type)
                    if let k = d.known, k < 0 {
                        throw InLoopError(.format, "planGraph input '\(planGraph[v].name)' has dimension \(k) on axis \(i)")
                    }
                }
                declared.append(t.shape)
            }
            inputShapes = declared
            valueUses = Engine.valueInputUses(planGraph)
            let batchSym = planGraph.batch
            // The batch convenience: which inputs lead with the batch.
            var fixed: Int? = nil
            var batchedIn: [Bool]
            if let b = batchSym {
                batchedIn = declared.map { $0.first == SymInt(b) }
            } else {
                let firsts = declared.map { $0.first?.known }
                if let f = firsts.first ?? nil, firsts.allSatisfy({ $0 == f }) { fixed = f }
                batchedIn = declared.map { _ in fixed != nil }
            }
            var convError: InLoopError? = nil
            if let u = valueUses.first {
                convError = InLoopError(.unsupported, "the output shapes depend on the values of input '\(graph[graph.inputs[u.input]].name)' (Resize scales or float Range bounds given as inputs); run it with full shapes (inloop_model_run_shaped_f32/_f64)")
            }
            var specs: [TensorSpec] = []
            for (k, v) in planGraph.inputs.enumerated() {
                let dims = batchedIn[k] ? Array(declared[k].dropFirst()) : declared[k]
                var rest: [Int] = []
                for (i, d) in dims.enumerated() {
                    if let n = d.known {
                        rest.append(n)
                    } else {
                        rest.append(-1)
                        if convError == nil {
                            convError = InLoopError(.unsupported, "graph input '\(planGraph[v].name)' has shape \(declared[k].formatted): \(batchedIn[k] ? "a symbolic dimension on axis \(i + 1)" : "a symbolic dimension that is not a leading batch axis"); run it with full shapes (inloop_model_run_shaped_f32/_f64)")
                        }
                    }
                }
                if !rest.contains(-1) { _ = try InLoopCore.Tensor.elementCount(rest) }
                specs.append(TensorSpec(name: planGraph[v].name, shape: rest))
            }
            fixedBatch = fixed
            inputBatched = batchedIn
            anyInputBatched = batchedIn.contains(true)
            inputSpecs = specs
            inputSize = specs.first?.count ?? 0
            // floating constants the nodes use (not those a fusion left behind), counted on the model's
            // graph (a folded BN's statistics count, as training sees them)
            var params = 0
            var used = Set<ValueID>()
            for n in graph.nodes { for case let v? in n.inputs { used.insert(v) } }
            for v in used.sorted() {
                if let c = graph[v].constant, c.dtype.isFloatingPoint { params += c.count }
            }
            parameterCount = params
            inPointers = .allocate(byteCount: Swift.max(planGraph.inputs.count, 1) * 8, alignment: 8)
            outPointers = .allocate(byteCount: Swift.max(planGraph.outputs.count, 1) * 8, alignment: 8)
            guardPointers = .allocate(byteCount: Swift.max(planGraph.inputs.count, 1) * 8, alignment: 8)
            bound = [Int](repeating: -1, count: planGraph.symbols.count)
            inCounts = .allocate(capacity: planGraph.inputs.count)
            inCounts.initialize(repeating: 0)
            outCounts = .allocate(capacity: planGraph.outputs.count)
            outCounts.initialize(repeating: 0)

            // Compile: one plan for every batch size, or (batch convenience only) specialised ones,
            // validated at 1 and 2 now; the full-shape path specialises on first use.
            var outs: [TensorSpec] = []
            var batchedOut: [Bool] = []
            do {
                try planGraph.inferTypes()
                generic = try Model.makeRunner(planGraph, declared, bindings: [:])
                genericOutputShapes = try planGraph.outputs.map { (v) throws(InLoopError) -> Shape in
                    guard let t = planGraph[v].type else { throw InLoopError(.internal, "output without a type") }
                    return t.shape
                }
                compileCount = 1
                (outs, batchedOut) = Model.outputSpecs(planGraph, genericOutputShapes, batch: batchSym, fixed: fixed, error: &convError)
            } catch where Engine.isNotLinear(error) {
                generic = nil
                if convError == nil, let b = batchSym {
                    let r1 = try Model.makeRunner(planGraph, declared, bindings: [b: 1])
                    let s1 = Model.typedOutputs(planGraph)
                    var o1: [TensorSpec], b1: [Bool]
                    (o1, b1) = Model.outputSpecs(planGraph, s1, batch: nil, fixed: 1, error: &convError)
                    let r2 = try Model.makeRunner(planGraph, declared, bindings: [b: 2])
                    let s2 = Model.typedOutputs(planGraph)
                    var never: InLoopError? = nil
                    let (o2, b2) = Model.outputSpecs(planGraph, s2, batch: nil, fixed: 2, error: &never)
                    for (k, s) in o2.enumerated() where s.shape != o1[k].shape || b1[k] != b2[k] || !b1[k] {
                        if convError == nil {
                            convError = InLoopError(.unsupported, "graph output '\(s.name)' has shape \(s1[k].formatted) at batch 1 but \(s2[k].formatted) at batch 2; the batch convenience needs outputs that lead with the batch; run it with full shapes (inloop_model_run_shaped_f32/_f64)")
                        }
                    }
                    if convError == nil {
                        specialised = [(1, r1), (2, r2)]
                        compileCount = 2
                    }
                    outs = o1
                    batchedOut = b1
                } else {
                    for v in planGraph.outputs {
                        outs.append(TensorSpec(name: planGraph[v].name, shape: []))
                        batchedOut.append(false)
                    }
                    if convError == nil {
                        convError = InLoopError(.unsupported, "the graph's shapes are not linear in its symbolic dimensions; run it with full shapes (inloop_model_run_shaped_f32/_f64)")
                    }
                }
            }
            outputSpecs = outs
            outputSize = outs.first?.count ?? 0
            ensembleForward = outs.count == 2 && outs[0].name == Engine.Uncertainty.meanName && outs[1].name == Engine.Uncertainty.spreadName
                && inputSpecs.count == 1 && outs[0].count == outs[1].count
            outputBatched = batchedOut
            convenienceError = convError
            // the largest batch whose element counts all fit an Int
            var largest = Int.max
            for c in (specs + outs).map(\.count) where c > 0 { largest = Swift.min(largest, Int.max / c) }
            largestBatch = largest
            (splittable, workPerSample) = Model.separability(planGraph, generic: generic != nil, convenience: convError == nil,
                                                             inputBatched: batchedIn, outputBatched: batchedOut)
        }

        /// Element-wise work per work-space value, in flops (a proxy: an activation or a pooling
        /// window costs several, a copy less); measured only as part of the threshold below.
        static let elementWork = 8
        /// Work per element of a transcendental function (`Graph.transcendentalElements`: tanh, sigmoid,
        /// exp, ...), in flops of the matrix products.
        /// Measured: one tanh of the kernels costs as long as 60 (AMD EPYC, AVX-512) to 105 (AMD EPYC,
        /// AVX2) flops of l96's packed 32 × 32 products; the lower end is taken, so that a split is
        /// never made on the tanh estimate alone where it would not pay. l96 (96 tanh per sample) then
        /// splits from batch 384 on instead of 768: at batch 512 on 2 threads 233 → 118 µs back to back,
        /// 146 µs with the worker parked between calls (AMD EPYC, AVX2).
        static let transcendentalWork = 64
        /// Work one part must have for a batch to be split, at least: below it the pool's hand-off
        /// (waking a worker) costs more than the second thread saves. 4 M until the direct and packed
        /// kernels; at 2 M column_conv1d at batch 16 (3.5 M per part) splits: 2 threads ÷ 1 went from
        /// 0.94–0.97× to 1.45–1.62× (same run, old/new library alternately), no other row moved.
        public static let minWorkPerPart = 2_000_000
        /// ... and at least this many flops per parameter: every part's GEMMs pack the whole weight
        /// matrices again (OpenBLAS packs per call), so a part must do enough work per weight. Measured
        /// (process CPU time per call, loaded 2-core AMD EPYC): column_mlp (0.5 M parameters) split at
        /// batch 16 (8 M flops per part, 16 per parameter) took 35–50 % more CPU than whole, at batch
        /// 256 (128 M, 256 per parameter) about 5 % more.
        public static let minWorkPerParameter = 128

        /// (Only for a plan whose forward packs weights per call, `Executor.forwardPacksWeights`: the
        /// packed dense and direct convolution kernels read weights laid out once, shared by the parts.
        /// Then column_mlp and column_conv1d at batch 16 split: 2 threads ÷ 1 went from 1.00× to 1.16×
        /// and from 0.98× to 1.24× (AMD EPYC, AVX-512, same run as ORT), no other row moved.)

        /// The work one part of this model must have (`minWorkPerPart`, and `minWorkPerParameter` when
        /// the forward packs weights per call).
        public func minWorkPerPart(packsWeights: Bool) -> Int {
            packsWeights ? Swift.max(Model.minWorkPerPart, Model.saturated(parameterCount, Model.minWorkPerParameter))
                         : Model.minWorkPerPart
        }
        /// Fewest samples in a part.
        static let minSamplesPerPart = 4

        /// `splittable` and `workPerSample` for a graph (see them).
        private static func separability(_ g: Graph, generic: Bool, convenience: Bool,
                                         inputBatched: [Bool], outputBatched: [Bool]) -> (Bool, Int) {
            guard generic, convenience, let b = g.batch, !g.inputs.isEmpty,
                  inputBatched.allSatisfy({ $0 }), outputBatched.allSatisfy({ $0 }) else { return (false, 0) }
            let batch = SymInt(b)
            let outputs = Set(g.outputs)
            for node in g.nodes {
                // shape computations known at compile time do not run
                if node.outputs.allSatisfy({ g[$0].known != nil && !outputs.contains($0) }) { continue }
                let inputTypes = node.inputs.map { $0.flatMap { g[$0].type } }
                var outputTypes: [TensorType] = []
                for o in node.outputs {
                    guard let t = g[o].type else { return (false, 0) }
                    outputTypes.append(t)
                }
                guard node.op.perSampleAny(node, inputTypes, outputTypes, batch: batch) else { return (false, 0) }
            }
            guard let flops = (try? g.flops(batch: 1)) ?? nil,
                  let transcendentals = (try? g.transcendentalElements(batch: 1)) ?? nil,
                  let plan = try? Engine.compile(g) else { return (false, 0) }
            let (e, o) = plan.arenaSize.perBatch.multipliedReportingOverflow(by: elementWork)
            let (t, ot) = transcendentals.multipliedReportingOverflow(by: transcendentalWork)
            return (true, o || ot ? Int.max : Model.saturatedSum(Model.saturatedSum(flops, e), t))
        }

        static func saturatedSum(_ a: Int, _ b: Int) -> Int {
            let (s, o) = a.addingReportingOverflow(b)
            return o ? Int.max : s
        }

        /// Parts for batch n at `threads` threads: 1 (run whole) unless each part gets at least
        /// `minWorkPerPart` (of this model) of work and `minSamplesPerPart` samples.
        func parts(batch n: Int, threads: Int, packsWeights: Bool) -> Int {
            guard splittable, threads > 1, n >= 2 * Model.minSamplesPerPart else { return 1 }
            let work = Model.saturated(n, Swift.max(workPerSample, 1))
            return Swift.max(1, Swift.min(threads, WorkerPool.maxParts, n / Model.minSamplesPerPart,
                                          work / minWorkPerPart(packsWeights: packsWeights)))
        }

        deinit {
            inPointers.deallocate()
            outPointers.deallocate()
            guardPointers.deallocate()
            inCounts.deallocate()
            outCounts.deallocate()
        }

        private static func typedOutputs(_ g: Graph) -> [Shape] {
            g.outputs.map { g[$0].type?.shape ?? [] }
        }

        /// Output specs of the batch convenience: per-sample shapes of outputs that lead with the batch
        /// (the symbol, or the fixed size), whole shapes of static ones; `error` is set (if nil) for an
        /// output that fits neither.
        private static func outputSpecs(_ g: Graph, _ shapes: [Shape], batch: Symbol?, fixed: Int?,
                                        error: inout InLoopError?) -> ([TensorSpec], [Bool]) {
            var specs: [TensorSpec] = [], batched: [Bool] = []
            for (k, v) in g.outputs.enumerated() {
                let shape = shapes[k]
                let first: SymInt? = batch.map { SymInt($0) } ?? fixed.map { SymInt($0) }
                let leads = first != nil && shape.first == first
                var rest: [Int] = []
                for d in leads ? Array(shape.dropFirst()) : shape {
                    guard let n = d.known else {
                        rest = []
                        if error == nil {
                            error = InLoopError(.unsupported, "graph output '\(g[v].name)' has shape \(shape.formatted); the batch convenience needs outputs that lead with the batch or have a static shape; run it with full shapes (inloop_model_run_shaped_f32/_f64)")
                        }
                        break
                    }
                    rest.append(n)
                }
                if (try? InLoopCore.Tensor.elementCount(rest)) == nil {
                    rest = []
                    if error == nil { error = InLoopError(.unsupported, "graph output '\(g[v].name)' has too many elements") }
                }
                specs.append(TensorSpec(name: g[v].name, shape: rest))
                batched.append(leads)
            }
            return (specs, batched)
        }

        /// Compiles with the symbols in `bindings` fixed (inputs first reset to their declared shapes),
        /// and makes the executor of the compute type.
        private static func makeRunner(_ graph: Graph, _ declared: [Shape], bindings: [Symbol: Int],
                                       retype: Bool = false) throws(InLoopError) -> Runner {
            if !bindings.isEmpty || retype {
                for (k, v) in graph.inputs.enumerated() { graph[v].type?.shape = declared[k] }
                try graph.inferTypes(bindings: bindings)
            }
            // the inputs keep their declared shapes (the trainer and later specialisations read them);
            // the other values keep the types of this binding, which the caller reads
            defer { for (k, v) in graph.inputs.enumerated() { graph[v].type?.shape = declared[k] } }
            let plan = try Engine.compile(graph)
            // at load: the work space and outputs of one sample (a hostile file is refused here)
            guard let w = plan.claimedElements(at: 1), case let (floats, false) = w.multipliedReportingOverflow(by: graph.dtype.size / 4) else {
                throw InLoopError(.outOfMemory, "the work space size overflows")
            }
            try Limits.workspace(floats: floats, batch: 1)
            if graph.dtype == .float64 { return .double(try Executor<Double>(plan: plan, graph: graph)) }
            return .single(try Executor<Float>(plan: plan, graph: graph))
        }

        /// The runner for batch n of the convenience (specialising when the graph needs it).
        private func runner(_ n: Int) throws(InLoopError) -> Runner {
            if let generic { return generic }
            if let k = specialised.lastIndex(where: { $0.n == n }) {
                if k != specialised.count - 1 { specialised.append(specialised.remove(at: k)) }
                return specialised[specialised.count - 1].runner
            }
            guard let b = planGraph.batch else { throw InLoopError(.internal, "a specialised plan without a batch symbol") }
            let r = try Model.makeRunner(planGraph, inputShapes, bindings: [b: n])
            compileCount += 1
            if specialised.count >= Model.maxSpecialised { specialised.removeFirst() }
            specialised.append((n, r))
            return r
        }

        /// The batch-generic executor when it computes in the caller's type U (the common call: no
        /// runner look-up, no conversion), else nil.
        @inline(__always)
        private func genericNative<U: EngineScalar>(_: U.Type) -> Executor<U>? {
            switch generic {
            case .single(let e)?: return U.self == Float.self ? unsafeDowncast(e, to: Executor<U>.self) : nil
            case .double(let e)?: return U.self == Double.self ? unsafeDowncast(e, to: Executor<U>.self) : nil
            case nil: return nil
            }
        }

        /// Steps of the (generic, or most recent) plan.
        public var stepCount: Int? {
            guard let r = generic ?? specialised.last?.runner ?? shaped.last?.runner else { return nil }
            return plan(of: r).stepCount
        }

        private func plan(of r: Runner) -> Plan {
            switch r {
            case .single(let e): return e.plan
            case .double(let e): return e.plan
            }
        }

        // MARK: - Full shapes

        /// Binds the symbols from the callers' input shapes (`ranks[k]` dimensions of input k, one
        /// after another in `dims`) into `bound`, and the element counts into `inCounts`.
        private func bind(ranks: UnsafeBufferPointer<Int64>, dims: UnsafeBufferPointer<Int64>) throws(InLoopError) {
            guard ranks.count == inputShapes.count else {
                throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputShapes.count) input\(inputShapes.count == 1 ? "" : "s"); got \(ranks.count) shapes")
            }
            for i in 0..<bound.count { bound[i] = -1 }
            var at = 0
            for k in 0..<ranks.count {
                let declared = inputShapes[k]
                // (a function: a message is built only when there is an error; running allocates nothing)
                func what() -> String { "input \(k) ('\(inputSpecs[k].name)', declared \(declared.formatted))" }
                guard ranks[k] == Int64(declared.count) else {
                    throw InLoopError(.sizeMismatch, "\(what()): rank \(ranks[k]) given, the model takes rank \(declared.count)")
                }
                guard dims.count - at >= declared.count else {
                    throw InLoopError(.sizeMismatch, "\(what()): the dims array ends before this input's dimensions")
                }
                var count = 1
                for (i, d) in declared.enumerated() {
                    let g = dims[at + i]
                    guard g >= 0, g <= Int64(Limits.maxDimension) else {
                        throw InLoopError(.invalidArgument, "\(what()): dimension \(g) on axis \(i); dimensions are between 0 and \(Limits.maxDimension)")
                    }
                    // an empty dimension only where the model declares it (a symbol is ≥ 1)
                    guard g >= 1 || d.known == 0 else {
                        throw InLoopError(.invalidArgument, "\(what()): dimension 0 on axis \(i), the model takes \(d)")
                    }
                    let v = Int(g)
                    if let s = d.symbol {
                        // v = coeff·s + constant
                        let (r, o) = v.subtractingReportingOverflow(d.constant)
                        guard !o, d.coeff != 0, r % d.coeff == 0, r / d.coeff >= 1 else {
                            throw InLoopError(.sizeMismatch, "\(what()): dimension \(v) on axis \(i) does not fit \(d) for any \(s) ≥ 1")
                        }
                        let sv = r / d.coeff
                        guard s.id >= 0, s.id < bound.count else { throw InLoopError(.internal, "symbol \(s) is not the graph's") }
                        if bound[s.id] >= 0, bound[s.id] != sv {
                            throw InLoopError(.sizeMismatch, "\(what()): axis \(i) makes \(s) = \(sv), but an earlier dimension made it \(bound[s.id])")
                        }
                        bound[s.id] = sv
                    } else if d.known != v {
                        throw InLoopError(.sizeMismatch, "\(what()): dimension \(v) on axis \(i), the model takes \(d)")
                    }
                    let (c, o) = count.multipliedReportingOverflow(by: v)
                    guard !o, c <= Limits.maxElements else {
                        throw InLoopError(.invalidArgument, "\(what()): the shape has too many elements")
                    }
                    count = c
                }
                inCounts[k] = count
                at += declared.count
            }
        }

        /// The runner for the bound symbols, the batch value to run it at, and the output shapes: the
        /// generic runner's (written into `outCounts` and, when given, `outRanks`/`outDims`), or a
        /// specialised one's.
        private func shapedRunner(outRanks: UnsafeMutableBufferPointer<Int64>?,
                                  outDims: UnsafeMutableBufferPointer<Int64>?) throws(InLoopError) -> (Runner, Int) {
            let runner: Runner, n: Int
            var known: [[Int]]? = nil
            if let generic {
                runner = generic
                n = planGraph.batch.map { bound[$0.id] } ?? 1
                guard n >= 1 else { throw InLoopError(.internal, "the batch symbol is not bound by the inputs") }
            } else {
                if valueUses.isEmpty, let k = shaped.lastIndex(where: { $0.key == bound }) {
                    if k != shaped.count - 1 { shaped.append(shaped.remove(at: k)) }
                } else if !valueUses.isEmpty, let values, let k = shaped.lastIndex(where: { $0.key == bound + values }) {
                    if k != shaped.count - 1 { shaped.append(shaped.remove(at: k)) }
                } else {
                    var bindings: [Symbol: Int] = [:]
                    for s in planGraph.symbols where bound[s.id] >= 1 { bindings[s] = bound[s.id] }
                    let r: Runner
                    if valueUses.isEmpty {
                        r = try Model.makeRunner(planGraph, inputShapes, bindings: bindings)
                    } else {
                        // the value inputs' values become the nodes' constant scales for this plan
                        guard let values else {
                            throw InLoopError(.invalidArgument, "the output shapes of model '\(name)' depend on the values of input '\(planGraph[planGraph.inputs[valueUses[0].input]].name)'; they are known when it runs")
                        }
                        let saved = valueUses.map { planGraph.nodes[$0.node].attributes }
                        defer { for (i, u) in valueUses.enumerated() { planGraph.nodes[u.node].attributes = saved[i] } }
                        try Engine.bindValueInputs(planGraph, valueUses, values, counts: valueUses.map { inCounts[$0.input] })
                        r = try Model.makeRunner(planGraph, inputShapes, bindings: bindings, retype: true)
                    }
                    var outs: [[Int]] = []
                    for v in planGraph.outputs {
                        guard let s = planGraph[v].type?.shape.known else {
                            throw InLoopError(.internal, "output '\(planGraph[v].name)' has no static shape with every symbol bound")
                        }
                        outs.append(s)
                    }
                    compileCount += 1
                    if shaped.count >= Model.maxSpecialised { shaped.removeFirst() }
                    shaped.append((bound.map { $0 } + (valueUses.isEmpty ? [] : values ?? []), r, outs))   // a copy: `bound` stays unshared (no copy-on-write when run)
                }
                runner = shaped[shaped.count - 1].runner
                known = shaped[shaped.count - 1].outputs
                n = 1
            }
            // output shapes and counts
            var total = 0
            for k in 0..<planGraph.outputs.count {
                let rank = known?[k].count ?? genericOutputShapes[k].count
                total += rank
            }
            if let outRanks, outRanks.count < planGraph.outputs.count {
                throw InLoopError(.sizeMismatch, "output ranks have room for \(outRanks.count) values; the model has \(planGraph.outputs.count) outputs")
            }
            if let outDims, outDims.count < total {
                throw InLoopError(.sizeMismatch, "output dims have room for \(outDims.count) values; the outputs have \(total) dimensions in all")
            }
            var at = 0
            for k in 0..<planGraph.outputs.count {
                let rank = known?[k].count ?? genericOutputShapes[k].count
                var count = 1
                for i in 0..<rank {
                    let v: Int
                    if let known { v = known[k][i] } else {
                        let d = genericOutputShapes[k][i]
                        if let s = d.symbol {
                            guard s.id >= 0, s.id < bound.count, let x = d.value(at: bound[s.id]), x >= 0 else {
                                throw InLoopError(.invalidArgument, "output \(k) ('\(planGraph[planGraph.outputs[k]].name)'): dimension \(d) has no valid value")
                            }
                            v = x
                        } else { v = d.constant }
                    }
                    let (c, o) = count.multipliedReportingOverflow(by: v)
                    guard !o else { throw InLoopError(.invalidArgument, "output \(k) has too many elements") }
                    count = c
                    outDims?[at + i] = Int64(v)
                }
                outRanks?[k] = Int64(rank)
                outCounts[k] = count
                at += rank
            }
            return (runner, n)
        }

        /// The output shapes for the given input shapes (ranks and dims as in `run(ranks:...)`), without
        /// running: `outRanks[k]` gets output k's rank, `outDims` its dimensions, one output after
        /// another. Compiles the plan for these sizes if needed.
        public func outputShapes(ranks: UnsafeBufferPointer<Int64>, dims: UnsafeBufferPointer<Int64>,
                                 outRanks: UnsafeMutableBufferPointer<Int64>,
                                 outDims: UnsafeMutableBufferPointer<Int64>) throws(InLoopError) {
            try outputShapes(ranks: ranks, dims: dims, outRanks: outRanks, outDims: outDims, valueArrays: nil)
        }

        /// `outputShapes`, with the value inputs' arrays of a `runShaped` call (bound under the lock).
        private func outputShapes(ranks: UnsafeBufferPointer<Int64>, dims: UnsafeBufferPointer<Int64>,
                                  outRanks: UnsafeMutableBufferPointer<Int64>, outDims: UnsafeMutableBufferPointer<Int64>,
                                  valueArrays: [[Double]]?) throws(InLoopError) {
            try acquire()
            defer { release() }
            try bind(ranks: ranks, dims: dims)
            if let valueArrays {
                var v: [Int] = []
                for (i, u) in valueUses.enumerated() { for x in valueArrays[i].prefix(inCounts[u.input]) { v.append(Int(truncatingIfNeeded: x.bitPattern)) } }
                values = v
            }
            defer { values = nil }
            _ = try shapedRunner(outRanks: outRanks, outDims: outDims)
        }

        /// Runs with full shapes: input k has shape `dims[...]` of rank `ranks[k]` (dimensions of the
        /// inputs one after another); output k is written to `outputs[k]`, which has room for
        /// `capacities[k]` values, and its shape to `outRanks[k]` and `outDims` (one output after
        /// another). Outputs are untouched when an argument is wrong.
        public func run(ranks: UnsafeBufferPointer<Int64>, dims: UnsafeBufferPointer<Int64>,
                        inputs: UnsafeBufferPointer<UnsafePointer<Float>>,
                        outputs: UnsafeBufferPointer<UnsafeMutablePointer<Float>>, capacities: UnsafeBufferPointer<Int64>,
                        outRanks: UnsafeMutableBufferPointer<Int64>?, outDims: UnsafeMutableBufferPointer<Int64>?) throws(InLoopError) {
            try executeShaped(ranks, dims, inputs, outputs, capacities, outRanks, outDims)
        }

        public func run(ranks: UnsafeBufferPointer<Int64>, dims: UnsafeBufferPointer<Int64>,
                        inputs: UnsafeBufferPointer<UnsafePointer<Double>>,
                        outputs: UnsafeBufferPointer<UnsafeMutablePointer<Double>>, capacities: UnsafeBufferPointer<Int64>,
                        outRanks: UnsafeMutableBufferPointer<Int64>?, outDims: UnsafeMutableBufferPointer<Int64>?) throws(InLoopError) {
            try executeShaped(ranks, dims, inputs, outputs, capacities, outRanks, outDims)
        }

        private func executeShaped<U: EngineScalar>(_ ranks: UnsafeBufferPointer<Int64>, _ dims: UnsafeBufferPointer<Int64>,
                                                   _ inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                                   _ outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>,
                                                   _ capacities: UnsafeBufferPointer<Int64>,
                                                   _ outRanks: UnsafeMutableBufferPointer<Int64>?,
                                                   _ outDims: UnsafeMutableBufferPointer<Int64>?) throws(InLoopError) {
            guard inputs.count == inputSpecs.count, outputs.count == outputSpecs.count, capacities.count == outputSpecs.count else {
                throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) input\(inputSpecs.count == 1 ? "" : "s") and \(outputSpecs.count) output\(outputSpecs.count == 1 ? "" : "s"); got \(inputs.count) input and \(outputs.count) output arrays")
            }
            if let g = rangeGuard, g.mode != .off {
                throw InLoopError(.unsupported, "the input-range check (mode \(g.mode)) runs on forward/run calls, not on run_shaped; set it off to run with full shapes")
            }
            if noiseState != nil {
                throw InLoopError(.unsupported, "noise inputs are filled on forward/run calls, not on run_shaped; remove the noise declaration to run with full shapes")
            }
            try acquire()
            defer { release() }
            outputsChecked = false
            try bind(ranks: ranks, dims: dims)
            if !valueUses.isEmpty {
                var v: [Int] = []
                for u in valueUses { for i in 0..<inCounts[u.input] { v.append(Int(truncatingIfNeeded: Double(inputs[u.input][i]).bitPattern)) } }
                values = v
            }
            defer { values = nil }
            // Check the output room before anything is written (the shapes go to scratch first).
            let (r, n) = try shapedRunner(outRanks: nil, outDims: nil)
            for k in 0..<outputs.count where capacities[k] < Int64(outCounts[k]) {
                throw InLoopError(.sizeMismatch, "output \(k) ('\(outputSpecs[k].name)') has room for \(capacities[k]) values; it has \(outCounts[k])")
            }
            let native = U.dtype == planGraph.dtype
            try checkOverlaps(inputs: native ? inputs : nil, outputs: outputs, inCounts, outCounts)
            if checkFinite {
                for k in 0..<inputs.count { try finite("input", k, inputs[k], inCounts[k], per: inCounts[k]) }
            }
            _ = try shapedRunner(outRanks: outRanks, outDims: outDims)
            switch r {
            case .single(let e): try forward(e, n, inputs, outputs, inCounts, outCounts)
            case .double(let e): try forward(e, n, inputs, outputs, inCounts, outCounts)
            }
            if checkFinite && !outputsChecked {
                for k in 0..<outputs.count { try finite("output", k, UnsafePointer(outputs[k]), outCounts[k], per: outCounts[k]) }
            }
        }

        /// Runs Swift arrays with full shapes (for tools and tests; allocates): returns each output's
        /// shape and values.
        public func runShaped(_ inputs: [(shape: [Int], values: [Double])]) throws(InLoopError) -> [(shape: [Int], values: [Double])] {
            guard inputs.count == inputSpecs.count else {
                throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) inputs; got \(inputs.count) arrays")
            }
            let ranks = inputs.map { Int64($0.shape.count) }
            let dims = inputs.flatMap { $0.shape.map { Int64($0) } }
            guard inputs.count == graph.inputs.count else {
                throw InLoopError(.sizeMismatch, "model '\(name)' has \(graph.inputs.count) inputs; got \(inputs.count)")
            }
            let valueArrays = valueUses.isEmpty ? nil : valueUses.map { inputs[$0.input].values }
            var outRanks = [Int64](repeating: 0, count: outputSpecs.count)
            var outDims = [Int64](repeating: 0, count: outputSpecs.count * Engine.maxRank)
            try ranks.withUnsafeBufferPointer { (r) throws(InLoopError) in
                try dims.withUnsafeBufferPointer { (d) throws(InLoopError) in
                    try outRanks.withUnsafeMutableBufferPointer { (orr) throws(InLoopError) in
                        try outDims.withUnsafeMutableBufferPointer { (od) throws(InLoopError) in
                            try outputShapes(ranks: r, dims: d, outRanks: orr, outDims: od, valueArrays: valueArrays)
                        }
                    }
                }
            }
            for (k, x) in inputs.enumerated() {
                guard let c = try? InLoopCore.Tensor.elementCount(x.shape), c == x.values.count else {
                    throw InLoopError(.sizeMismatch, "input '\(inputSpecs[k].name)': \(x.values.count) values for shape \(InLoopCore.Tensor.format(x.shape))")
                }
            }
            var shapes: [[Int]] = [], at = 0
            for k in 0..<outputSpecs.count {
                let rank = Int(outRanks[k])
                shapes.append(outDims[at ..< at + rank].map { Int($0) })
                at += rank
            }
            let counts = shapes.map { $0.reduce(1, *) }
            var ins: [UnsafeMutableBufferPointer<Double>] = [], outs: [UnsafeMutableBufferPointer<Double>] = []
            defer { for b in ins + outs { b.deallocate() } }
            for x in inputs {
                let b = UnsafeMutableBufferPointer<Double>.allocate(capacity: Swift.max(x.values.count, 1))
                b.initialize(repeating: 0)
                _ = b.update(from: x.values)
                ins.append(b)
            }
            for c in counts {
                let b = UnsafeMutableBufferPointer<Double>.allocate(capacity: Swift.max(c, 1))
                b.initialize(repeating: 0)
                outs.append(b)
            }
            let caps = counts.map { Int64($0) }
            let ip = ins.map { UnsafePointer($0.baseAddress!) }, op = outs.map { $0.baseAddress! }
            try ranks.withUnsafeBufferPointer { (r) throws(InLoopError) in
                try dims.withUnsafeBufferPointer { (d) throws(InLoopError) in
                    try ip.withUnsafeBufferPointer { (i) throws(InLoopError) in
                        try op.withUnsafeBufferPointer { (o) throws(InLoopError) in
                            try caps.withUnsafeBufferPointer { (c) throws(InLoopError) in
                                try run(ranks: r, dims: d, inputs: i, outputs: o, capacities: c, outRanks: nil, outDims: nil)
                            }
                        }
                    }
                }
            }
            return (0..<counts.count).map { (shapes[$0], Array(outs[$0].prefix(counts[$0]))) }
        }

        // MARK: - Forward (the batch convenience)

        @inline(__always)
        private func inElements(_ k: Int, _ n: Int) -> Int { inputBatched[k] ? Model.saturated(n, inputSpecs[k].count) : inputSpecs[k].count }
        @inline(__always)
        private func outElements(_ k: Int, _ n: Int) -> Int { outputBatched[k] ? Model.saturated(n, outputSpecs[k].count) : outputSpecs[k].count }
        /// a × b, or Int.max when that overflows (a count no buffer can have: later checks refuse it).
        @inline(__always)
        static func saturated(_ a: Int, _ b: Int) -> Int {
            let (p, o) = a.multipliedReportingOverflow(by: b)
            return o ? Int.max : p
        }

        public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int, into y: UnsafeMutableBufferPointer<Float>) throws(InLoopError) {
            try single(x, batch: batch, into: y)
        }

        public func forward(_ x: UnsafeBufferPointer<Double>, batch: Int, into y: UnsafeMutableBufferPointer<Double>) throws(InLoopError) {
            try single(x, batch: batch, into: y)
        }

        /// One input, one output (an ensemble: its mean, Uncertainty.swift), for either caller type.
        private func single<U: EngineScalar>(_ x: UnsafeBufferPointer<U>, batch: Int, into y: UnsafeMutableBufferPointer<U>) throws(InLoopError) {
            try checkSingle(x.count, y.count, batch)
            guard let xb = x.baseAddress, let yb = y.baseAddress else { throw InLoopError(.nullPointer, "input or output buffer is null") }
            if ensembleForward { return try forwardEnsembleMean(xb, batch: batch, into: yb) }
            var xp = UnsafePointer(xb), yp = yb
            try withUnsafePointer(to: &xp) { (i) throws(InLoopError) in
                try withUnsafePointer(to: &yp) { (o) throws(InLoopError) in
                    try execute(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: UnsafeBufferPointer(start: o, count: 1),
                                batchChecked: true)
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

        /// `run` for either caller type (Uncertainty.swift).
        func runAny<U: EngineScalar>(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                     outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>) throws(InLoopError) {
            try execute(batch: batch, inputs: inputs, outputs: outputs)
        }

        /// The call's input pointers with input k replaced by `p` (noise filled in, or clamped), in the
        /// model's own pointer array (no allocation); `inputs` may already be that array.
        private func replacing<U: EngineScalar>(_ inputs: UnsafeBufferPointer<UnsafePointer<U>>, _ k: Int,
                                                with p: UnsafePointer<U>) -> UnsafeBufferPointer<UnsafePointer<U>> {
            let a = guardPointers.bindMemory(to: UnsafePointer<U>.self, capacity: inputs.count)
            for i in 0..<inputs.count where i != k { a[i] = inputs[i] }
            a[k] = p
            return UnsafeBufferPointer(start: a, count: inputs.count)
        }

        /// Checks the call, then runs in the compute type: in place when the caller's type is it, else
        /// through the staging buffers (every input converted before any output is written, so then
        /// outputs may overlap inputs).
        private func execute<U: EngineScalar>(batch: Int, inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                              outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>,
                                              batchChecked: Bool = false) throws(InLoopError) {
            // (`single` has checked the one input and output and the batch: not twice per call)
            if !batchChecked { try checkArrays(batch: batch, inputs.count, outputs.count) }
            try acquire()
            defer { release() }
            outputsChecked = false
            for k in 0..<inputs.count { inCounts[k] = inElements(k, batch) }
            for k in 0..<outputs.count { outCounts[k] = outElements(k, batch) }
            let native = U.dtype == planGraph.dtype
            try checkOverlaps(inputs: native ? inputs : nil, outputs: outputs, inCounts, outCounts)
            if checkFinite {
                for k in 0..<inputs.count { try finite("input", k, inputs[k], inElements(k, batch), per: inputSpecs[k].count) }
            }
            var inputs = inputs
            if let ns = noiseState {
                let k = ns.spec.input
                inputs = replacing(inputs, k, with: try ns.filled(inputs[k], batch: batch, per: inputSpecs[k].count))
            }
            if let g = rangeGuard, g.mode != .off, let clamped = g.check(inputs[0], batch: batch) {
                inputs = replacing(inputs, 0, with: clamped)
            }
            if let e = genericNative(U.self) {
                try forward(e, batch, inputs, outputs, inCounts, outCounts)
            } else {
                switch try runner(batch) {
                case .single(let e): try forward(e, batch, inputs, outputs, inCounts, outCounts)
                case .double(let e): try forward(e, batch, inputs, outputs, inCounts, outCounts)
                }
            }
            if checkFinite && !outputsChecked {
                for k in 0..<outputs.count { try finite("output", k, UnsafePointer(outputs[k]), outElements(k, batch), per: outputSpecs[k].count) }
            }
        }

        private func forward<T: EngineScalar, U: EngineScalar>(_ e: Executor<T>, _ n: Int, _ inputs: UnsafeBufferPointer<UnsafePointer<U>>,
                                                             _ outputs: UnsafeBufferPointer<UnsafeMutablePointer<U>>,
                                                             _ inCounts: UnsafeMutableBufferPointer<Int>, _ outCounts: UnsafeMutableBufferPointer<Int>) throws(InLoopError) {
            // the plan takes the caller's counts at n (an internal check; the executor's plan is read in
            // place: copying the Plan value out would retain its dozen arrays on every call)
            for k in 0..<inputs.count where e.plan.inputSizes[k].checked(at: n) != inCounts[k] {
                throw InLoopError(.internal, "input \(k): the plan takes \(e.plan.inputSizes[k].at(n)) values at batch \(n), the call has \(inCounts[k])")
            }
            for k in 0..<outputs.count where e.plan.outputSizes[k].checked(at: n) != outCounts[k] {
                throw InLoopError(.internal, "output \(k): the plan gives \(e.plan.outputSizes[k].at(n)) values at batch \(n), the call has \(outCounts[k])")
            }
            e.reproducible = reproducible
            if T.self == U.self {
                let i = UnsafeRawBufferPointer(inputs).bindMemory(to: UnsafePointer<T>.self)
                let o = UnsafeRawBufferPointer(outputs).bindMemory(to: UnsafeMutablePointer<T>.self)
                outputsChecked = try runPlan(e, n, i, o, checkOutputs: checkFinite)
                return
            }
            try stage(inCounts, outCounts)
            let ip = inPointers.bindMemory(to: UnsafePointer<T>.self, capacity: inputs.count)
            let op = outPointers.bindMemory(to: UnsafeMutablePointer<T>.self, capacity: outputs.count)
            for k in 0..<inputs.count {
                let d = try stagingIn[k].pointer(as: T.self), s = inputs[k]
                for i in 0..<inCounts[k] { d[i] = T(s[i]) }
                ip[k] = UnsafePointer(d)
            }
            for k in 0..<outputs.count { op[k] = try stagingOut[k].pointer(as: T.self) }
            _ = try runPlan(e, n, UnsafeBufferPointer(start: ip, count: inputs.count),
                            UnsafeBufferPointer(start: op, count: outputs.count), checkOutputs: false)
            for k in 0..<outputs.count {
                let s = op[k], d = outputs[k]
                for i in 0..<outCounts[k] { d[i] = U(s[i]) }
            }
        }

        /// Staging buffers of the compute type for these element counts (grown only).
        private func stage(_ inCounts: UnsafeMutableBufferPointer<Int>, _ outCounts: UnsafeMutableBufferPointer<Int>) throws(InLoopError) {
            if stagingIn.count == inCounts.count, stagingOut.count == outCounts.count {
                var fits = true
                for k in 0..<inCounts.count where stagingIn[k].count < inCounts[k] { fits = false }
                for k in 0..<outCounts.count where stagingOut[k].count < outCounts[k] { fits = false }
                if fits { return }
            }
            var need = 0
            for c in Array(inCounts) + Array(outCounts) {
                let (s, o) = need.addingReportingOverflow(c)
                guard !o else { throw InLoopError(.outOfMemory, "the staging buffers' size overflows") }
                need = s
            }
            let (floats, o) = need.multipliedReportingOverflow(by: planGraph.dtype.size / 4)
            guard !o else { throw InLoopError(.outOfMemory, "the staging buffers' size overflows") }
            try Limits.workspace(floats: floats, batch: 1)
            let oldIn = stagingIn, oldOut = stagingOut
            stagingIn = try inCounts.enumerated().map { (k, c) throws(InLoopError) in
                k < oldIn.count && oldIn[k].count >= c ? oldIn[k] : try TensorStorage(dtype: planGraph.dtype, count: Swift.max(c, 1))
            }
            stagingOut = try outCounts.enumerated().map { (k, c) throws(InLoopError) in
                k < oldOut.count && oldOut[k].count >= c ? oldOut[k] : try TensorStorage(dtype: planGraph.dtype, count: Swift.max(c, 1))
            }
        }

        // MARK: - Threads

        /// Runs the plan for batch n on the compute type's arrays: whole on the calling thread, or, for a
        /// splittable plan with enough work, as contiguous slices of the batch on `Threads.count`
        /// threads (one executor, with its own work space, per part). OpenBLAS runs serially during
        /// any call of a splittable plan (`Threads.serialBLAS`). With `checkOutputs`, the parts check
        /// their output slices; returns true when they did and found every value finite (a non-finite
        /// value is left to the caller's check, which words the error as a serial run would).
        private func runPlan<T: EngineScalar>(_ e: Executor<T>, _ n: Int, _ i: UnsafeBufferPointer<UnsafePointer<T>>,
                                              _ o: UnsafeBufferPointer<UnsafeMutablePointer<T>>,
                                              checkOutputs: Bool) throws(InLoopError) -> Bool {
            lastParts = 1
            guard splittable else {
                try e.forward(n, inputs: i, outputs: o)
                return false
            }
            let threads = Threads.count
            let want = threads > 1 ? parts(batch: n, threads: threads, packsWeights: e.forwardPacksWeights()) : 1
            // A call that runs whole and never reaches BLAS (l96 at batch 1: the engine's own batch-1
            // kernels) leaves OpenBLAS's thread count alone: setting it and back cost two locks and
            // two openblas_set_num_threads per call.
            if want <= 1, !e.forwardCallsBLAS(n) {
                try e.forward(n, inputs: i, outputs: o)
                return false
            }
            Threads.serialBLAS(threads)
            defer { Threads.restoreBLAS(threads) }
            guard want > 1 else {
                try e.forward(n, inputs: i, outputs: o)
                return false
            }
            // the limits of the whole batch, as the serial run checks them (the parts are smaller)
            try e.checkLimits(n)
            let job: SplitJob<T>
            if let j = splitJob { job = unsafeDowncast(j, to: SplitJob<T>.self) } else {
                job = SplitJob<T>(inputs: inputSpecs.map(\.count), outputs: outputSpecs.map(\.count))
                splitJob = job
            }
            while job.executors.count < want - 1 { job.executors.append(try Executor<T>(plan: e.plan, graph: planGraph, packedFrom: e)) }
            job.prepare(main: e, inputs: i, outputs: o, checkFinite: checkOutputs, reproducible: reproducible)
            WorkerPool.shared.run(job, parts: want) { m in job.cut(batch: n, parts: m) }
            lastParts = job.parts
            if let error = job.firstError() { throw error }
            return checkOutputs && job.allFinite()
        }

        // MARK: - Checks

        private func checkSingle(_ nx: Int, _ ny: Int, _ batch: Int) throws(InLoopError) {
            // (an ensemble's two outputs, mean and spread, have one size: forward gives the mean)
            guard inputSpecs.count == 1, outputSpecs.count == 1 || ensembleForward else {
                throw InLoopError(.invalidArgument, "model '\(name)' has \(inputSpecs.count) inputs and \(outputSpecs.count) outputs; run it with all of them (inloop_model_run_f32/_f64)")
            }
            try checkBatch(batch)
            try checkCount(input: true, nx, inElements(0, batch), batch)
            try checkCount(input: false, ny, outElements(0, batch), batch)
        }

        private func checkBatch(_ batch: Int) throws(InLoopError) {
            if convenienceError != nil, let convenienceError { throw convenienceError }
            guard batch >= 1, batch <= Int(Int32.max) else {
                throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
            }
            if let f = fixedBatch, batch != f {
                throw InLoopError(.sizeMismatch, "model '\(name)' has a fixed batch size of \(f) (the first dimension of its inputs); got batch \(batch)")
            }
            if fixedBatch == nil, !anyInputBatched, batch != 1 {
                throw InLoopError(.sizeMismatch, "model '\(name)' has no batch axis (its inputs have static shapes that do not all lead with one size); run it with batch 1 or with full shapes")
            }
            if batch > largestBatch { throw InLoopError(.invalidArgument, "batch \(batch) is too large") }
        }

        /// The single input (or output) array holds `need` values; the spec is read only to word the error
        /// (passing it would retain its name and shape on every call).
        private func checkCount(input: Bool, _ count: Int, _ need: Int, _ batch: Int) throws(InLoopError) {
            guard count >= need else {
                let spec = input ? inputSpecs[0] : outputSpecs[0]
                throw InLoopError(.sizeMismatch, "\(input ? "input" : "output") '\(spec.name)' has \(count) values; batch \(batch) × \(spec.count) (shape \(InLoopCore.Tensor.format(spec.shape))) needs \(need)")
            }
        }

        private func checkArrays(batch: Int, _ ni: Int, _ no: Int) throws(InLoopError) {
            guard ni == inputSpecs.count, no == outputSpecs.count else {
                throw InLoopError(.sizeMismatch, "model '\(name)' has \(inputSpecs.count) input\(inputSpecs.count == 1 ? "" : "s") and \(outputSpecs.count) output\(outputSpecs.count == 1 ? "" : "s"); got \(ni) input and \(no) output arrays")
            }
            try checkBatch(batch)
        }

        private func finite<T: BinaryFloatingPoint>(_ what: String, _ k: Int, _ p: UnsafePointer<T>, _ count: Int, per: Int) throws(InLoopError) {
            if Kernels.allFinite(p, count: count) { return }
            var i = 0
            while i < count, p[i].isFinite { i += 1 }
            let spec = what == "input" ? inputSpecs[k] : outputSpecs[k]
            let per = Swift.max(per, 1)
            throw InLoopError(.nonFinite, "\(what) '\(spec.name)' value \(i % per + 1) of sample \(i / per + 1) is \(i < count ? Double(p[i]) : 0) (not finite)")
        }

        /// No output may overlap another output, nor (when `inputs` are given) an input.
        private func checkOverlaps<T>(inputs: UnsafeBufferPointer<UnsafePointer<T>>?,
                                      outputs: UnsafeBufferPointer<UnsafeMutablePointer<T>>,
                                      _ inCounts: UnsafeMutableBufferPointer<Int>, _ outCounts: UnsafeMutableBufferPointer<Int>) throws(InLoopError) {
            // address ranges in UInt, saturated: a claimed size past the end of memory (a huge batch) reaches the end
            let width = MemoryLayout<T>.stride
            func range(_ p: UnsafeRawPointer, _ count: Int) -> (UInt, UInt) {
                let start = UInt(bitPattern: Int(bitPattern: p))
                let (bytes, o1) = count.multipliedReportingOverflow(by: width)
                guard !o1, bytes >= 0 else { return (start, UInt.max) }
                let (end, o2) = start.addingReportingOverflow(UInt(bytes))
                return (start, o2 ? UInt.max : end)
            }
            for k in 0..<outputs.count {
                let (o0, o1) = range(UnsafeRawPointer(outputs[k]), outCounts[k])
                if let inputs {
                    for j in 0..<inputs.count {
                        let (i0, i1) = range(UnsafeRawPointer(inputs[j]), inCounts[j])
                        if o0 < i1 && i0 < o1 {
                            throw InLoopError(.invalidArgument, "output \(k) ('\(outputSpecs[k].name)') overlaps input \(j) ('\(inputSpecs[j].name)'); pass separate arrays")
                        }
                    }
                }
                for j in 0..<k {
                    let (p0, p1) = range(UnsafeRawPointer(outputs[j]), outCounts[j])
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

        func acquire() throws(InLoopError) {
            guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
                throw InLoopError(.busy, "model is being run by another thread; use one model handle per thread")
            }
        }

        func release() { busy.store(false, ordering: .releasing) }
    }
}

/// One split run of a model (`Model.runPlan`): part k runs samples starts[k]..<starts[k + 1] with its
/// own executor (part 0 with the model's), on the caller's arrays at those offsets. Made once per
/// model; a run writes only its buffers (no allocation).
final class SplitJob<T: EngineScalar>: Engine.ParallelJob {
    /// The executors of parts 1, 2, ... (made as more parts are wanted; never fewer).
    var executors: [Engine.Executor<T>] = []
    private unowned(unsafe) var main: Engine.Executor<T>? = nil
    private let inPer: UnsafeMutableBufferPointer<Int>, outPer: UnsafeMutableBufferPointer<Int>
    private let starts: UnsafeMutableBufferPointer<Int>
    private let inSlices: UnsafeMutablePointer<UnsafePointer<T>>
    private let outSlices: UnsafeMutablePointer<UnsafeMutablePointer<T>>
    private let errors: UnsafeMutablePointer<InLoopError?>
    private let nonFinite: UnsafeMutablePointer<Bool>
    private var inputs = UnsafeBufferPointer<UnsafePointer<T>>(start: nil, count: 0)
    private var outputs = UnsafeBufferPointer<UnsafeMutablePointer<T>>(start: nil, count: 0)
    private var checkFinite = false, reproducible = false
    private(set) var parts = 1

    /// Values per sample of each input and output.
    init(inputs: [Int], outputs: [Int]) {
        let m = Engine.WorkerPool.maxParts
        inPer = .allocate(capacity: inputs.count); _ = inPer.initialize(from: inputs)
        outPer = .allocate(capacity: outputs.count); _ = outPer.initialize(from: outputs)
        starts = .allocate(capacity: m + 1); starts.initialize(repeating: 0)
        inSlices = .allocate(capacity: m * Swift.max(inputs.count, 1))
        outSlices = .allocate(capacity: m * Swift.max(outputs.count, 1))
        errors = .allocate(capacity: m); errors.initialize(repeating: nil, count: m)
        nonFinite = .allocate(capacity: m); nonFinite.initialize(repeating: false, count: m)
    }

    deinit {
        let m = Engine.WorkerPool.maxParts
        inPer.deallocate(); outPer.deallocate(); starts.deallocate()
        inSlices.deallocate(); outSlices.deallocate()
        errors.deinitialize(count: m); errors.deallocate()
        nonFinite.deallocate()
    }

    func prepare(main: Engine.Executor<T>, inputs: UnsafeBufferPointer<UnsafePointer<T>>,
                 outputs: UnsafeBufferPointer<UnsafeMutablePointer<T>>, checkFinite: Bool, reproducible: Bool) {
        self.main = main
        self.inputs = inputs
        self.outputs = outputs
        self.checkFinite = checkFinite
        self.reproducible = reproducible
    }

    /// Samples a slice boundary falls on a multiple of, when the parts are large enough (16 granules:
    /// the rounding then unbalances the parts by at most 3 %): OpenBLAS's sgemm (0.3.21, Zen/Haswell
    /// kernels) gives a row slice of y = x·Wᵀ the whole product's bits when the slice starts at a
    /// multiple of 24 rows, not at other offsets (`docs/ENGINE.md` §2.11).
    static var granule: Int { 24 }

    /// Slices of n samples for m parts: as equal as possible, with the boundaries rounded to a
    /// multiple of `granule` when each part has at least 16 granules.
    func cut(batch n: Int, parts m: Int) {
        parts = m
        let g = SplitJob.granule
        for k in 0...m {
            let even = k * (n / m) + Swift.min(k, n % m)
            starts[k] = k == 0 || k == m || n / m < 16 * g ? even : (even + g / 2) / g * g
        }
        for k in 0..<m { errors[k] = nil; nonFinite[k] = false }
    }

    func runPart(_ k: Int) {
        guard let e = k == 0 ? main : executors[k - 1] else { return }
        let s = starts[k], n = starts[k + 1] - s
        let ni = inPer.count, no = outPer.count
        let ip = inSlices + k * ni, op = outSlices + k * no
        for j in 0..<ni { ip[j] = inputs[j] + s * inPer[j] }
        for j in 0..<no { op[j] = outputs[j] + s * outPer[j] }
        e.reproducible = reproducible
        do {
            try e.forward(n, inputs: UnsafeBufferPointer(start: ip, count: ni), outputs: UnsafeBufferPointer(start: op, count: no))
        } catch {
            errors[k] = error
            return
        }
        if checkFinite {
            for j in 0..<no where !Kernels.allFinite(UnsafePointer(op[j]), count: n * outPer[j]) { nonFinite[k] = true }
        }
    }

    /// The first failed part's error, in part order.
    func firstError() -> InLoopError? {
        for k in 0..<parts { if let e = errors[k] { return e } }
        return nil
    }

    func allFinite() -> Bool {
        for k in 0..<parts where nonFinite[k] { return false }
        return true
    }
}
