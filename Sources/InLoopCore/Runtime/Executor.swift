extension Engine {
    /// Runs a plan in one scalar type: the work space, the constants converted to `T` once, and the
    /// step loop. Not thread-safe (a model holds one per scalar type, under its run lock).
    ///
    /// Running allocates nothing once the arena is as large as the largest batch seen: `bind(n)` only
    /// recomputes the slot pointers when n changes.
    public final class Executor<T: EngineScalar> {
        public let plan: Plan
        private let constants: [TensorStorage]
        /// The `.packed` storages' weights by constant index (Float executors only).
        private let packedWeights: [Int: TensorStorage]
        private var arena: TensorStorage?
        private var boundN = -1
        /// Storage id → pointer, filled by `bind` (slots and constants) and per call (inputs, outputs).
        private let table: UnsafeMutablePointer<UnsafeMutablePointer<T>>
        /// When true, dense steps run one matrix-vector product per row: each sample's result does not
        /// depend on the batch it is in.
        public var reproducible = false

        /// Differentiable plans: the trainable values (flat, in `graph.parameters` order, read in place
        /// by the steps) and d loss/d parameters after `backward(parameterGradients: true)`.
        public let parameters: TensorStorage
        public let gradients: TensorStorage
        private var lastForwardN = -1
        /// (storage, caller's array) of the plan's inputs and outputs, set per call.
        private let inputStorages: [(Int, Int)]
        private let outputStorages: [(Int, Int)]
        /// The plan's step lists, operand ids and integers in buffers the executor owns: a call reads
        /// them without retaining the plan's arrays (a dozen retain/release pairs per batch-1 call).
        private let code: Code

        struct Code {
            let forward: UnsafeBufferPointer<Step>, reverse: UnsafeBufferPointer<Step>, tangent: UnsafeBufferPointer<Step>
            let ids: UnsafeBufferPointer<Int32>, ints: UnsafeBufferPointer<Int>

            init(_ plan: Plan) {
                func copy<E>(_ a: [E]) -> UnsafeBufferPointer<E> {
                    let b = UnsafeMutableBufferPointer<E>.allocate(capacity: Swift.max(a.count, 1))
                    _ = b.initialize(from: a)
                    return UnsafeBufferPointer(rebasing: b[..<a.count])
                }
                forward = copy(plan.steps); reverse = copy(plan.reverse); tangent = copy(plan.tangent)
                ids = copy(plan.ids); ints = copy(plan.ints)
            }

            func deallocate() {
                func free<E>(_ b: UnsafeBufferPointer<E>) {
                    let m = UnsafeMutablePointer(mutating: b.baseAddress!)
                    m.deinitialize(count: b.count)
                    m.deallocate()
                }
                free(forward); free(reverse); free(tangent); free(ids); free(ints)
            }
        }

        /// Takes the plan's constants (and parameters) from `graph` (the graph it was compiled from),
        /// converted to `T`. With `sharing`, the parameters are read in place from that flat vector
        /// (it holds `plan.parameterCount` values in the graph's parameter order) and gradients go to
        /// the other: a trainer's own buffers, seen by its optimizer without a copy. With `packedFrom`
        /// (an executor of the same plan, e.g. the model's main one for a thread's part), its packed
        /// weights are read instead of packing them again.
        public init(plan: Plan, graph: Graph,
                    sharing: (parameters: TensorStorage, gradients: TensorStorage)? = nil,
                    packedFrom: Executor<T>? = nil) throws(InLoopError) {
            self.plan = plan
            var cs: [TensorStorage] = []
            for v in plan.constants {
                guard let t = graph[v].constant else { throw InLoopError(.internal, "constant '\(graph[v].name)' has no data") }
                cs.append(try Executor.convert(t))
            }
            constants = cs
            if let sharing {
                guard sharing.parameters.count == plan.parameterCount, sharing.gradients.count == plan.parameterCount,
                      sharing.parameters.dtype == T.dtype, sharing.gradients.dtype == T.dtype else {
                    throw InLoopError(.internal, "shared parameter vectors of the wrong size or type")
                }
                parameters = sharing.parameters
                gradients = sharing.gradients
            } else {
                parameters = try TensorStorage(dtype: T.dtype, count: plan.parameterCount)
                gradients = try TensorStorage(dtype: T.dtype, count: plan.parameterCount)
            }
            if plan.isDifferentiable && sharing == nil {
                let p = try parameters.pointer(as: T.self)
                var offset = 0
                for v in graph.parameters {
                    guard let t = graph[v].constant else { throw InLoopError(.internal, "parameter '\(graph[v].name)' has no data") }
                    let converted = try Executor.convert(t)
                    (p + offset).update(from: try converted.pointer(as: T.self), count: t.count)
                    withExtendedLifetime(converted) {}
                    offset += t.count
                }
                guard offset == plan.parameterCount else { throw InLoopError(.internal, "parameter layout") }
            }
            table = .allocate(capacity: Swift.max(plan.storages.count, 1))
            let p = try parameters.pointer(as: T.self), g = try gradients.pointer(as: T.self)
            var ins: [(Int, Int)] = [], outs: [(Int, Int)] = []
            var packed: [Int: TensorStorage] = [:]
            for (s, info) in plan.storages.enumerated() {
                switch info.kind {
                case .constant(let k): table[s] = try cs[k].pointer(as: T.self)
                case .packed(let k):
                    guard T.self == Float.self else { table[s] = try cs[k].pointer(as: T.self); break }
                    guard let shape = graph[plan.constants[k]].constant?.shape, shape.count == 2 else {
                        throw InLoopError(.internal, "a packed weight that is not a matrix")
                    }
                    let out: TensorStorage
                    if let shared = packedFrom?.packedWeights[k], packedFrom?.plan === plan {
                        out = shared
                    } else {
                        out = try TensorStorage(dtype: .float32, count: try Kernels.packedDenseCount(rows: shape[0], cols: shape[1]))
                        Kernels.packDenseWeights(try cs[k].pointer(as: Float.self), rows: shape[0], cols: shape[1],
                                                 into: try out.pointer(as: Float.self))
                    }
                    packed[k] = out
                    table[s] = UnsafeMutableRawPointer(try out.pointer(as: Float.self)).assumingMemoryBound(to: T.self)
                case .parameter(let o): table[s] = p + o
                case .parameterGradient(let o): table[s] = g + o
                case .input(let k): ins.append((s, k))
                case .output(let k): outs.append((s, k))
                default: break
                }
            }
            inputStorages = ins
            outputStorages = outs
            packedWeights = packed
            code = Code(plan)
        }

        deinit { table.deallocate(); code.deallocate() }

        private static func convert(_ t: Tensor) throws(InLoopError) -> TensorStorage {
            if t.dtype == T.dtype { return t.storage }
            let out = try TensorStorage(dtype: T.dtype, count: t.count)
            let d = try out.pointer(as: T.self)
            switch t.dtype {
            case .float32: let s = try t.storage.pointer(as: Float.self); for i in 0..<t.count { d[i] = T(s[i]) }
            case .float64: let s = try t.storage.pointer(as: Double.self); for i in 0..<t.count { d[i] = T(s[i]) }
            case .int64, .bool:
                // booleans and integers at run time are carried in T storage (0/1; integers exact up to
                // 2^24 in float32, 2^53 in float64)
                guard let ints = t.integers else { throw InLoopError(.internal, "integer constant without integers") }
                for i in 0..<t.count { d[i] = T(ints[i]) }
            }
            return out
        }

        /// Checks that batch n fits the sizes and the work-space limits (`bind` does, and a model whose
        /// batch runs as slices checks the whole batch); returns the arena's size at n.
        @discardableResult
        public func checkLimits(_ n: Int) throws(InLoopError) -> Int {
            guard n >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(n)") }
            guard let elements = plan.arenaSize.checked(at: n) else { throw InLoopError(.outOfMemory, "batch \(n) is too large") }
            for info in plan.storages where info.size.checked(at: n) == nil {
                throw InLoopError(.outOfMemory, "batch \(n) is too large")
            }
            // The outputs count against the limits too: a hostile model must not make a call write gigabytes.
            guard let claimed = plan.claimedElements(at: n) else { throw InLoopError(.outOfMemory, "batch \(n) is too large") }
            let (floats, overflow) = claimed.multipliedReportingOverflow(by: T.dtype.size / 4)
            guard !overflow else { throw InLoopError(.outOfMemory, "batch \(n) is too large") }
            try Limits.workspace(floats: floats, batch: n)
            return elements
        }

        /// Sizes the arena for n and points the slots into it (only when n changes; the arena only grows).
        public func bind(_ n: Int) throws(InLoopError) {
            if n == boundN { return }
            let elements = try checkLimits(n)
            if arena == nil || arena!.count < elements {
                arena = try TensorStorage(dtype: T.dtype, count: elements)
            }
            let base = try arena!.pointer(as: T.self)
            for (s, info) in plan.storages.enumerated() {
                if case .slot(let k) = info.kind { table[s] = base + plan.slotOffsets[k].at(n) }
            }
            boundN = n
        }

        /// Runs the plan for batch n on the caller's arrays (sizes checked by the caller against
        /// `plan.inputSizes`/`outputSizes` at n).
        public func forward(_ n: Int, inputs: UnsafeBufferPointer<UnsafePointer<T>>,
                            outputs: UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws(InLoopError) {
            guard inputs.count == plan.inputSizes.count, outputs.count == plan.outputSizes.count else {
                throw InLoopError(.sizeMismatch, "the plan takes \(plan.inputSizes.count) inputs and \(plan.outputSizes.count) outputs, got \(inputs.count) and \(outputs.count)")
            }
            try bind(n)
            // (indexed, not `for (s, k) in`: iterating copies the array, a retain/release pair per call)
            for i in 0..<inputStorages.count { let (s, k) = inputStorages[i]; table[s] = UnsafeMutablePointer(mutating: inputs[k]) }
            for i in 0..<outputStorages.count { let (s, k) = outputStorages[i]; table[s] = outputs[k] }
            run(code.forward, n, wantInputs: true, wantParameters: true)
            lastForwardN = n
        }

        /// Steps that hold no weight matrix and never call BLAS: element-wise, normalisation, layout
        /// copies, pooling windows (the classification both questions below share).
        static func isWeightFree(_ kind: StepKind) -> Bool {
            switch kind {
            case .activation, .normalize, .add, .copy, .zero, .fill, .roundToFloat32, .maxPool, .averagePool,
                 .broadcast, .unary, .clip, .softmax, .layoutCopy, .concat, .gather, .fillLinear, .channelAffine,
                 .batchNorm, .layerNorm, .globalPool:
                return true
            default:
                return false
            }
        }

        /// Whether `forward` at batch n may call BLAS (OpenBLAS): false only when every step is one the
        /// engine computes itself at n (batch-1 float32 inference dense layers small enough for
        /// `Kernels.smallGEMV`, weight-free steps). A caller that holds OpenBLAS at one thread around
        /// a call may skip that when false. Cached for the last n asked.
        public func forwardCallsBLAS(_ n: Int) -> Bool {
            if n != blasCheckedN {
                blasAtCheckedN = code.forward.contains { step in
                    switch step.kind {
                    case .dense(let rows, let k, let m, _, _), .packedDense(let rows, let k, let m, _, _):
                        // batch 1 on the small-GEMV kernel; batch ≥ 2 may fall back to sgemm (baseline level)
                        return !(T.dtype == .float32 && plan.numerics == .inference && rows.at(n) == 1
                                 && m * k <= Kernels.smallGEMVLimit)
                    case let kind:
                        return !Executor.isWeightFree(kind)
                    }
                }
                blasCheckedN = n
            }
            return blasAtCheckedN
        }
        private var blasCheckedN = -1
        private var blasAtCheckedN = true

        /// Whether `forward` re-lays out weight matrices inside every call: sgemm packs its operands per
        /// call, so each part of a split batch packs all the weights again (`Model.minWorkPerParameter`
        /// exists for that). false when every step with weights runs on the engine's own kernels on
        /// weights laid out once (packed dense layers, direct convolutions: float32 inference at the
        /// avx2/avx512 levels) and every other step is weight-free. Cached for the CPU level last asked at.
        public func forwardPacksWeights() -> Bool {
            let level = Kernels.cpuLevel
            if level != packsCheckedLevel {
                let ints = code.ints
                packsAtCheckedLevel = T.dtype != .float32 || plan.numerics != .inference || level == .baseline
                    || code.forward.contains { step in
                        switch step.kind {
                        case .packedDense: return false
                        case .conv(let geo, _, _, _): return !Conv.directFits(Engine.load(ints, geo, as: ConvGeometry.self))
                        case let kind: return !Executor.isWeightFree(kind)
                        }
                    }
                packsCheckedLevel = level
            }
            return packsAtCheckedLevel
        }
        private var packsCheckedLevel: CPULevel? = nil
        private var packsAtCheckedLevel = true

        /// Reverse mode at the point of the last `forward` (same n; its input arrays must still hold
        /// the same values): `seeds[k]` is d loss/d output k; d loss/d input k goes to
        /// `inputGradients[k]` when given; with `parameterGradients`, `gradients` is overwritten with
        /// d loss/d parameters.
        public func backward(_ n: Int, seeds: UnsafeBufferPointer<UnsafePointer<T>>,
                             inputGradients: UnsafeBufferPointer<UnsafeMutablePointer<T>>?,
                             parameterGradients: Bool) throws(InLoopError) {
            guard plan.isDifferentiable else { throw InLoopError(.internal, "backward on an inference plan") }
            guard n == lastForwardN else { throw InLoopError(.invalidArgument, "backward needs a forward on the same batch first") }
            guard seeds.count == plan.outputSizes.count, inputGradients.map({ $0.count == plan.inputSizes.count }) ?? true else {
                throw InLoopError(.sizeMismatch, "backward takes \(plan.outputSizes.count) seeds and \(plan.inputSizes.count) input gradients")
            }
            for (s, info) in plan.storages.enumerated() {
                switch info.kind {
                case .outputSeed(let k): table[s] = UnsafeMutablePointer(mutating: seeds[k])
                case .inputGradient(let k): if let inputGradients { table[s] = inputGradients[k] }
                default: break
                }
            }
            run(code.reverse, n, wantInputs: inputGradients != nil, wantParameters: parameterGradients)
        }

        /// Tangent-linear model at the point of the last `forward` (same n): output tangents from
        /// input tangents.
        public func tangent(_ n: Int, inputTangents: UnsafeBufferPointer<UnsafePointer<T>>,
                            outputTangents: UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws(InLoopError) {
            guard plan.isDifferentiable else { throw InLoopError(.internal, "tangent on an inference plan") }
            guard n == lastForwardN else { throw InLoopError(.invalidArgument, "tangent needs a forward on the same batch first") }
            guard inputTangents.count == plan.inputSizes.count, outputTangents.count == plan.outputSizes.count else {
                throw InLoopError(.sizeMismatch, "tangent takes \(plan.inputSizes.count) input and \(plan.outputSizes.count) output tangents")
            }
            for (s, info) in plan.storages.enumerated() {
                switch info.kind {
                case .inputTangent(let k): table[s] = UnsafeMutablePointer(mutating: inputTangents[k])
                case .outputTangent(let k): table[s] = outputTangents[k]
                default: break
                }
            }
            run(code.tangent, n, wantInputs: true, wantParameters: true)
        }

        /// A `dense` or `packedDense` step (operands [x, w, wPacked (packed only), b?, y]): with `perRow`
        /// one batch-1 product per row, else the whole batch (on the packed weight when there is one).
        @inline(__always)
        private func denseStep(_ io: Int, rows r: Int, _ k: Int, _ m: Int, _ hasBias: Bool, _ act: Activation, packed: Bool,
                               perRow: Bool, _ numerics: Numerics) {
            let t = table, ids = code.ids
            let x = UnsafePointer(t[Int(ids[io])]), w = UnsafePointer(t[Int(ids[io + 1])])
            let bi = io + (packed ? 3 : 2)
            let b: UnsafePointer<T>? = hasBias ? UnsafePointer(t[Int(ids[bi])]) : nil
            let y = t[Int(ids[bi + (hasBias ? 1 : 0)])]
            if perRow {
                for s in 0..<r {
                    T.denseStep(x: x + s * k, rows: 1, inCols: k, w: w, b: b, outCols: m, activation: act, y: y + s * m, numerics: numerics)
                }
            } else if packed {
                T.packedDenseStep(x: x, rows: r, inCols: k, w: w, packed: UnsafePointer(t[Int(ids[io + 2])]), b: b, outCols: m,
                                  activation: act, y: y)
            } else {
                T.denseStep(x: x, rows: r, inCols: k, w: w, b: b, outCols: m, activation: act, y: y, numerics: numerics)
            }
        }

        /// The step loop: a switch per step over POD payloads; no allocation, no look-up.
        private func run(_ steps: UnsafeBufferPointer<Step>, _ n: Int, wantInputs: Bool, wantParameters: Bool) {
            let numerics = plan.numerics, perRow = reproducible && n > 1
            let t = table, ids = code.ids, ints = code.ints
            do {
              do {
                do {
                    for step in steps {
                        switch step.role {
                        case .always: break
                        case .inputGradientsOnly: if !wantInputs { continue }
                        case .parameterGradientsOnly: if !wantParameters { continue }
                        }
                        let io = Int(step.io)
                        switch step.kind {
                        case .dense(let rows, let k, let m, let hasBias, let act):
                            denseStep(io, rows: rows.at(n), k, m, hasBias, act, packed: false, perRow: perRow, numerics)
                        case .packedDense(let rows, let k, let m, let hasBias, let act):
                            denseStep(io, rows: rows.at(n), k, m, hasBias, act, packed: true, perRow: perRow, numerics)
                        case .activation(let act, let count):
                            T.activationStep(act, UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 1])], count: count.at(n), numerics: numerics)
                        case .normalize(let rows, let cols, let inverse):
                            T.normalizeStep(UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 3])], rows: rows.at(n), cols: cols,
                                            mean: UnsafePointer(t[Int(ids[io + 1])]), std: UnsafePointer(t[Int(ids[io + 2])]),
                                            inverse: inverse)
                        case .add(let count):
                            T.addStep(UnsafePointer(t[Int(ids[io])]), UnsafePointer(t[Int(ids[io + 1])]), t[Int(ids[io + 2])], count: count.at(n))
                        case .copy(let count):
                            let d = t[Int(ids[io + 1])], s = t[Int(ids[io])]
                            if d != s { d.update(from: s, count: count.at(n)) }
                        case .zero(let count):
                            t[Int(ids[io])].update(repeating: 0, count: count.at(n))
                        case .denseParameterGradients(let rows, let k, let m, let hasBias, let accumulate):
                            let gy = UnsafePointer(t[Int(ids[io])]), x = UnsafePointer(t[Int(ids[io + 1])])
                            let r = rows.at(n)
                            // dW[out, in] (+)= gyᵀ · x
                            T.gemm(transA: true, transB: false, m: m, n: k, k: r, alpha: 1, a: gy, lda: m, b: x, ldb: k,
                                   beta: accumulate ? 1 : 0, c: t[Int(ids[io + 2])], ldc: k)
                            if hasBias {
                                let db = t[Int(ids[io + 3])]
                                if !accumulate { db.update(repeating: 0, count: m) }
                                for row in 0..<r { let g = gy + row * m; for c in 0..<m { db[c] += g[c] } }
                            }
                        case .denseInputGradient(let rows, let k, let m, let accumulate):
                            // dx (+)= gy · W
                            T.gemm(transA: false, transB: false, m: rows.at(n), n: k, k: m, alpha: 1, a: UnsafePointer(t[Int(ids[io])]), lda: m,
                                   b: UnsafePointer(t[Int(ids[io + 1])]), ldb: k, beta: accumulate ? 1 : 0, c: t[Int(ids[io + 2])], ldc: k)
                        case .activationBackward(let act, let count, let accumulate):
                            Kernels.activationBackward(act, z: UnsafePointer(t[Int(ids[io])]), a: UnsafePointer(t[Int(ids[io + 1])]),
                                                       gradient: UnsafePointer(t[Int(ids[io + 2])]), into: t[Int(ids[io + 3])],
                                                       accumulate: accumulate, count: count.at(n))
                        case .normalizeLinear(let rows, let cols, let inverse, let zeroFirst, let tangent):
                            let g = UnsafePointer(t[Int(ids[io])]), sd = UnsafePointer(t[Int(ids[io + 1])]), out = t[Int(ids[io + 2])]
                            let r = rows.at(n)
                            if tangent {
                                for row in 0..<r {
                                    let gi = g + row * cols, o = out + row * cols
                                    if inverse { for c in 0..<cols { o[c] = gi[c] * sd[c] } } else { for c in 0..<cols { o[c] = gi[c] / sd[c] } }
                                }
                            } else {
                                if zeroFirst { out.update(repeating: 0, count: r * cols) }
                                for row in 0..<r {
                                    let gi = g + row * cols, o = out + row * cols
                                    if inverse { for c in 0..<cols { o[c] += gi[c] * sd[c] } } else { for c in 0..<cols { o[c] += gi[c] / sd[c] } }
                                }
                            }
                        case .accumulate(let count, let accumulate):
                            let g = UnsafePointer(t[Int(ids[io])]), out = t[Int(ids[io + 1])], c = count.at(n)
                            if accumulate { for i in 0..<c { out[i] += g[i] } } else if UnsafePointer(out) != g { out.update(from: g, count: c) }
                        // MARK: family elementwise (run)
                        case .broadcast(let op, let geometry):
                            TensorOps.broadcastBinary(op, a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                      y: t[Int(ids[io + 2])], geometry: BroadcastLayout.decode(ints, geometry, n),
                                                      numerics: numerics)
                        case .broadcastAdjoint(let op, let k, let geometry, let accumulate):
                            TensorOps.broadcastAdjoint(op, operand: Int(k), a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                       y: UnsafePointer(t[Int(ids[io + 2])]), gradient: UnsafePointer(t[Int(ids[io + 3])]),
                                                       into: t[Int(ids[io + 4])], geometry: BroadcastLayout.decode(ints, geometry, n),
                                                       accumulate: accumulate)
                        case .broadcastTangent(let op, let k, let geometry, let accumulate):
                            TensorOps.broadcastTangent(op, operand: Int(k), a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                       y: UnsafePointer(t[Int(ids[io + 2])]), tangent: UnsafePointer(t[Int(ids[io + 3])]),
                                                       into: t[Int(ids[io + 4])], geometry: BroadcastLayout.decode(ints, geometry, n),
                                                       accumulate: accumulate)
                        case .unary(let f, let count):
                            UnaryFunction.apply(f, x: UnsafePointer(t[Int(ids[io])]), y: t[Int(ids[io + 1])], count: count.at(n), numerics: numerics)
                        case .unaryBackward(let f, let count, let accumulate):
                            UnaryFunction.backward(f, x: UnsafePointer(t[Int(ids[io])]), y: UnsafePointer(t[Int(ids[io + 1])]),
                                                   gradient: UnsafePointer(t[Int(ids[io + 2])]), into: t[Int(ids[io + 3])],
                                                   accumulate: accumulate, count: count.at(n))
                        case .clip(let count, let hasMin, let hasMax):
                            let lo: UnsafePointer<T>? = hasMin ? UnsafePointer(t[Int(ids[io + 1])]) : nil
                            let hi: UnsafePointer<T>? = hasMax ? UnsafePointer(t[Int(ids[io + (hasMin ? 2 : 1)])]) : nil
                            UnaryFunction.clip(x: UnsafePointer(t[Int(ids[io])]), lo: lo, hi: hi,
                                               y: t[Int(ids[io + 1 + (hasMin ? 1 : 0) + (hasMax ? 1 : 0)])], count: count.at(n))
                        case .clipLinear(let count, let hasMin, let hasMax, let target, let tangent, let accumulate):
                            let lo: UnsafePointer<T>? = hasMin ? UnsafePointer(t[Int(ids[io + 1])]) : nil
                            let hi: UnsafePointer<T>? = hasMax ? UnsafePointer(t[Int(ids[io + (hasMin ? 2 : 1)])]) : nil
                            let g = io + 1 + (hasMin ? 1 : 0) + (hasMax ? 1 : 0)
                            UnaryFunction.clipLinear(x: UnsafePointer(t[Int(ids[io])]), lo: lo, hi: hi, gradient: UnsafePointer(t[Int(ids[g])]),
                                                     into: t[Int(ids[g + 1])], target: Int(target), tangent: tangent,
                                                     accumulate: accumulate, count: count.at(n))
                        case .softmax(let geometry, let log):
                            let (o, l, i) = SoftmaxLayout.decode(ints, geometry, n)
                            let x = UnsafePointer(t[Int(ids[io])]), y = t[Int(ids[io + 1])]
                            if log {
                                TensorOps.logSoftmax(x: x, outer: o, axisLength: l, inner: i, y: y, numerics: numerics)
                            } else {
                                TensorOps.softmax(x: x, outer: o, axisLength: l, inner: i, y: y)
                            }
                        case .softmaxBackward(let geometry, let log, let accumulate):
                            let (o, l, i) = SoftmaxLayout.decode(ints, geometry, n)
                            TensorOps.softmaxBackward(y: UnsafePointer(t[Int(ids[io])]), gradient: UnsafePointer(t[Int(ids[io + 1])]), outer: o,
                                                      axisLength: l, inner: i, log: log, into: t[Int(ids[io + 2])], accumulate: accumulate)
                        case .softmaxTangent(let geometry, let log):
                            let (o, l, i) = SoftmaxLayout.decode(ints, geometry, n)
                            TensorOps.softmaxTangent(y: UnsafePointer(t[Int(ids[io])]), tangent: UnsafePointer(t[Int(ids[io + 1])]), outer: o,
                                                     axisLength: l, inner: i, log: log, into: t[Int(ids[io + 2])])

                        // MARK: family shape (run)
                        case .layoutCopy(let g, let mode):
                            if let gb = ints.baseAddress {
                                TensorOps.layoutCopyStep(UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 1])], geometry: gb + Int(g), n: n, mode: mode)
                            }
                        case .concat(let g, let parts):
                            if let gb = ints.baseAddress, let ib = ids.baseAddress {
                                TensorOps.concatStep(t, ids: ib + io, parts: parts, geometry: gb + Int(g), n: n)
                            }
                        case .gather(let g):
                            if let gb = ints.baseAddress {
                                TensorOps.gatherStep(UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 1])], geometry: gb + Int(g), n: n)
                            }
                        case .gatherBackward(let g, let accumulate):
                            if let gb = ints.baseAddress {
                                TensorOps.gatherBackwardStep(UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 1])], geometry: gb + Int(g), n: n,
                                                             accumulate: accumulate)
                            }
                        case .roundToFloat32(let count):
                            TensorOps.roundToFloat32(UnsafePointer(t[Int(ids[io])]), t[Int(ids[io + 1])], count: count.at(n))
                        case .columnProjection(let rows, let cols, let hasY, let hasS, let accumulate, let perColumnW):
                            var at = io
                            let y: UnsafePointer<T>? = hasY ? UnsafePointer(t[Int(ids[at])]) : nil
                            if hasY { at += 1 }
                            let w = UnsafePointer(t[Int(ids[at])])
                            let s: UnsafePointer<T>? = hasS ? UnsafePointer(t[Int(ids[at + 1])]) : nil
                            ConstraintKernels.project(y: y, w: w, s: s, out: t[Int(ids[at + (hasS ? 2 : 1)])], rows: rows.at(n), cols: cols,
                                                      wStride: perColumnW ? cols : 0, accumulate: accumulate)
                        case .columnProjectionWeights(let rows, let cols, let mode, let accumulate):
                            ConstraintKernels.projectionWeights(y: UnsafePointer(t[Int(ids[io])]), w: UnsafePointer(t[Int(ids[io + 1])]),
                                                                s: UnsafePointer(t[Int(ids[io + 2])]), g: UnsafePointer(t[Int(ids[io + 3])]),
                                                                out: t[Int(ids[io + 4])], rows: rows.at(n), cols: cols, mode: mode,
                                                                accumulate: accumulate)
                        case .massFixer(let rows, let cols, let mode, let accumulate):
                            let y = UnsafePointer(t[Int(ids[io])]), w = UnsafePointer(t[Int(ids[io + 1])])
                            let g: UnsafePointer<T>? = mode == 0 ? nil : UnsafePointer(t[Int(ids[io + 2])])
                            ConstraintKernels.massFixer(y: y, w: w, g: g, out: t[Int(ids[io + (mode == 0 ? 2 : 3)])], rows: rows.at(n),
                                                        cols: cols, mode: mode, accumulate: accumulate)
                        case .columnProjectionTarget(let rows, let cols, let accumulate, let perColumnW):
                            ConstraintKernels.targetAdjoint(g: UnsafePointer(t[Int(ids[io])]), w: UnsafePointer(t[Int(ids[io + 1])]),
                                                            out: t[Int(ids[io + 2])], rows: rows.at(n), cols: cols,
                                                            wStride: perColumnW ? cols : 0, accumulate: accumulate)
                        case .fill(let count, let value):
                            t[Int(ids[io])].update(repeating: T(value), count: count.at(n))
                        case .fillLinear(let g, _):
                            if let gb = ints.baseAddress { TensorOps.fillLinearStep(t[Int(ids[io])], geometry: gb + Int(g), n: n) }

                        // MARK: family matmul-norm (run)
                        case .matMul(let geo, let alpha, let beta, let hasC, let accumulate, let act):
                            let y = t[Int(ids[io + (hasC ? 3 : 2)])]
                            let g = MatMulGeometry(ints, at: Int(geo), batch: n)
                            MatMulKernels.forward(a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                  c: hasC ? UnsafePointer(t[Int(ids[io + 2])]) : nil, y: y, geometry: g,
                                                  alpha: T(alpha), beta: T(beta), accumulate: accumulate, rowByRow: perRow)
                            if act != .identity {
                                Kernels.activate(act, UnsafePointer(y), into: y, count: g.rows &* g.cols &* g.stackCount, numerics: numerics)
                            }
                        case .matMulGradientA(let geo, let alpha, let accumulate):
                            MatMulKernels.gradientA(gy: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                    ga: t[Int(ids[io + 2])], geometry: MatMulGeometry(ints, at: Int(geo), batch: n),
                                                    alpha: T(alpha), accumulate: accumulate)
                        case .matMulGradientB(let geo, let alpha, let accumulate):
                            MatMulKernels.gradientB(a: UnsafePointer(t[Int(ids[io])]), gy: UnsafePointer(t[Int(ids[io + 1])]),
                                                    gb: t[Int(ids[io + 2])], geometry: MatMulGeometry(ints, at: Int(geo), batch: n),
                                                    alpha: T(alpha), accumulate: accumulate)
                        case .matMulGradientC(let geo, let beta, let accumulate):
                            MatMulKernels.gradientC(gy: UnsafePointer(t[Int(ids[io])]), gc: t[Int(ids[io + 1])],
                                                    geometry: MatMulGeometry(ints, at: Int(geo), batch: n), beta: T(beta), accumulate: accumulate)
                        case .matMulBroadcastC(let geo, let beta):
                            MatMulKernels.broadcastC(UnsafePointer(t[Int(ids[io])]), geometry: MatMulGeometry(ints, at: Int(geo), batch: n),
                                                     beta: T(beta), into: t[Int(ids[io + 1])], accumulate: false)
                        case .channelAffine(let outer, let channels, let spatial, let coef, let shift, let accumulate):
                            NormKernels.channelAffine(x: UnsafePointer(t[Int(ids[io])]), outer: outer.at(n), channels: channels,
                                                      spatial: spatial.at(n), table: ints, at: Int(coef), shift: shift,
                                                      accumulate: accumulate, y: t[Int(ids[io + 1])])
                        case .batchNorm(let outer, let channels, let spatial, let stats):
                            NormKernels.batchNorm(x: UnsafePointer(t[Int(ids[io])]), scale: UnsafePointer(t[Int(ids[io + 1])]),
                                                  bias: UnsafePointer(t[Int(ids[io + 2])]), outer: outer.at(n), channels: channels,
                                                  spatial: spatial.at(n), table: ints, at: Int(stats), y: t[Int(ids[io + 3])])
                        case .layerNorm(let rows, let cols, let eps, let hasBias):
                            TensorOps.layerNorm(x: UnsafePointer(t[Int(ids[io])]), rows: rows.at(n), cols: cols,
                                                scale: UnsafePointer(t[Int(ids[io + 1])]),
                                                bias: hasBias ? UnsafePointer(t[Int(ids[io + 2])]) : nil, epsilon: T(eps),
                                                y: t[Int(ids[io + (hasBias ? 3 : 2)])])
                        case .batchNormInputGradient(let outer, let channels, let spatial, let stats, let accumulate):
                            NormKernels.batchNormInputGradient(g: UnsafePointer(t[Int(ids[io])]), scale: UnsafePointer(t[Int(ids[io + 1])]),
                                                               outer: outer.at(n), channels: channels, spatial: spatial.at(n), table: ints,
                                                               at: Int(stats), accumulate: accumulate, out: t[Int(ids[io + 2])])
                        case .batchNormScaleGradient(let outer, let channels, let spatial, let stats, let accumulate):
                            NormKernels.batchNormScaleGradient(gy: UnsafePointer(t[Int(ids[io])]), x: UnsafePointer(t[Int(ids[io + 1])]),
                                                               outer: outer.at(n), channels: channels, spatial: spatial.at(n), table: ints,
                                                               at: Int(stats), accumulate: accumulate, gs: t[Int(ids[io + 2])])
                        case .channelSums(let outer, let channels, let spatial, let accumulate):
                            NormKernels.channelSums(gy: UnsafePointer(t[Int(ids[io])]), outer: outer.at(n), channels: channels,
                                                    spatial: spatial.at(n), accumulate: accumulate, g: t[Int(ids[io + 1])])
                        case .layerNormLinear(let rows, let cols, let eps, let tangent, let accumulate):
                            NormKernels.layerNormLinear(x: UnsafePointer(t[Int(ids[io])]), scale: UnsafePointer(t[Int(ids[io + 1])]),
                                                        g: UnsafePointer(t[Int(ids[io + 2])]), rows: rows.at(n), cols: cols, epsilon: T(eps),
                                                        tangent: tangent, accumulate: accumulate, out: t[Int(ids[io + 3])])
                        case .layerNormScaleGradient(let rows, let cols, let eps, let accumulate):
                            NormKernels.layerNormScaleGradient(x: UnsafePointer(t[Int(ids[io])]), gy: UnsafePointer(t[Int(ids[io + 1])]),
                                                               rows: rows.at(n), cols: cols, epsilon: T(eps), accumulate: accumulate,
                                                               gs: t[Int(ids[io + 2])])

                        // MARK: family conv-pool (run)
                        case .conv(let geo, let batch, let hasBias, let act):
                            let b = hasBias ? 1 : 0
                            T.convStep(x: UnsafePointer(t[Int(ids[io])]), batch: batch.at(n), geometry: Engine.load(ints, geo, as: ConvGeometry.self),
                                       weight: UnsafePointer(t[Int(ids[io + 1])]), bias: hasBias ? UnsafePointer(t[Int(ids[io + 2])]) : nil,
                                       activation: act, y: t[Int(ids[io + 3 + b])], workspace: t[Int(ids[io + 2 + b])],
                                       numerics: numerics, perSample: perRow)
                        case .convTranspose(let geo, let batch, let hasBias, let act):
                            let b = hasBias ? 1 : 0
                            ConvTranspose.forward(x: UnsafePointer(t[Int(ids[io])]), batch: batch.at(n),
                                                  geometry: Engine.load(ints, geo, as: ConvTransposeGeometry.self),
                                                  weight: UnsafePointer(t[Int(ids[io + 1])]), bias: hasBias ? UnsafePointer(t[Int(ids[io + 2])]) : nil,
                                                  activation: act, y: t[Int(ids[io + 3 + b])], workspace: t[Int(ids[io + 2 + b])], numerics: numerics)
                        case .maxPool(let geo, let planes):
                            Pool.max(x: UnsafePointer(t[Int(ids[io])]), planes: planes.at(n), geometry: Engine.load(ints, geo, as: PoolGeometry.self),
                                     y: t[Int(ids[io + 1])])
                        case .averagePool(let geo, let planes, let cip):
                            Pool.average(x: UnsafePointer(t[Int(ids[io])]), planes: planes.at(n), geometry: Engine.load(ints, geo, as: PoolGeometry.self),
                                         countIncludePad: cip, y: t[Int(ids[io + 1])])
                        case .globalPool(let takesMax, let planes, let spatial):
                            let x = UnsafePointer(t[Int(ids[io])]), y = t[Int(ids[io + 1])]
                            if takesMax { Pool.globalMax(x: x, planes: planes.at(n), spatial: spatial, y: y) } else {
                                Pool.globalAverage(x: x, planes: planes.at(n), spatial: spatial, y: y)
                            }
                        case .convGradient(let geo, let batch, let of, let accumulate):
                            let g = Engine.load(ints, geo, as: ConvGeometry.self), nb = batch.at(n)
                            let gy = UnsafePointer(t[Int(ids[io])])
                            switch of {
                            case .input:
                                let gx = t[Int(ids[io + 3])]
                                if !accumulate { gx.update(repeating: 0, count: nb * g.inputCount) }
                                Conv.backward(x: gy, batch: nb, geometry: g, weight: UnsafePointer(t[Int(ids[io + 1])]), gy: gy,
                                              gx: gx, gw: nil, gb: nil, workspace: t[Int(ids[io + 2])])
                            case .weight:
                                let gw = t[Int(ids[io + 3])]
                                if !accumulate { gw.update(repeating: 0, count: g.weightCount) }
                                Conv.backward(x: UnsafePointer(t[Int(ids[io + 1])]), batch: nb, geometry: g, weight: gy, gy: gy,
                                              gx: nil, gw: gw, gb: nil, workspace: t[Int(ids[io + 2])])
                            case .bias:
                                let gb = t[Int(ids[io + 1])]
                                if !accumulate { gb.update(repeating: 0, count: g.channelsOut) }
                                Conv.backward(x: gy, batch: nb, geometry: g, weight: gy, gy: gy, gx: nil, gw: nil, gb: gb, workspace: gb)
                            }
                        case .convTransposeGradient(let geo, let batch, let of, let accumulate):
                            let g = Engine.load(ints, geo, as: ConvTransposeGeometry.self), nb = batch.at(n)
                            let gy = UnsafePointer(t[Int(ids[io])])
                            switch of {
                            case .input:
                                let gx = t[Int(ids[io + 3])]
                                if !accumulate { gx.update(repeating: 0, count: nb * g.inputCount) }
                                ConvTranspose.backward(x: gy, batch: nb, geometry: g, weight: UnsafePointer(t[Int(ids[io + 1])]), gy: gy,
                                                       gx: gx, gw: nil, gb: nil, workspace: t[Int(ids[io + 2])])
                            case .weight:
                                let gw = t[Int(ids[io + 3])]
                                if !accumulate { gw.update(repeating: 0, count: g.weightCount) }
                                ConvTranspose.backward(x: UnsafePointer(t[Int(ids[io + 1])]), batch: nb, geometry: g, weight: gy, gy: gy,
                                                       gx: nil, gw: gw, gb: nil, workspace: t[Int(ids[io + 2])])
                            case .bias:
                                let gb = t[Int(ids[io + 1])]
                                if !accumulate { gb.update(repeating: 0, count: g.channelsOut) }
                                ConvTranspose.backward(x: gy, batch: nb, geometry: g, weight: gy, gy: gy, gx: nil, gw: nil, gb: gb, workspace: gb)
                            }
                        case .maxPoolDerivative(let geo, let planes, let spatial, let tangent, let accumulate):
                            T.maxPoolDerivative(x: UnsafePointer(t[Int(ids[io])]), planes: planes.at(n),
                                                geometry: geo < 0 ? nil : Engine.load(ints, geo, as: PoolGeometry.self), spatial: spatial,
                                                gradient: UnsafePointer(t[Int(ids[io + 1])]), scratch: t[Int(ids[io + 2])],
                                                out: t[Int(ids[io + 3])], tangent: tangent, accumulate: accumulate)
                        case .averagePoolGradient(let geo, let planes, let spatial, let cip, let accumulate):
                            let gy = UnsafePointer(t[Int(ids[io])]), gx = t[Int(ids[io + 1])], p = planes.at(n)
                            if geo < 0 {
                                if !accumulate { gx.update(repeating: 0, count: p * spatial) }
                                Pool.globalAverageBackward(gy: gy, planes: p, spatial: spatial, gx: gx)
                            } else {
                                let g = Engine.load(ints, geo, as: PoolGeometry.self)
                                if !accumulate { gx.update(repeating: 0, count: p * g.inputSpatialCount) }
                                Pool.averageBackward(gy: gy, planes: p, geometry: g, countIncludePad: cip, gx: gx)
                            }
                        case .resizeNearest(let geo, let outer):
                            NearestResize.forward(x: UnsafePointer(t[Int(ids[io])]), outer: outer.at(n), geometry: UnsafeBufferPointer(rebasing: ints[Int(geo)...]),
                                                  y: t[Int(ids[io + 1])])
                        case .resizeNearestGradient(let geo, let outer, let accumulate):
                            let gx = t[Int(ids[io + 1])], p = UnsafeBufferPointer(rebasing: ints[Int(geo)...]), o = outer.at(n)
                            if !accumulate {
                                var count = o
                                for d in 0..<p[0] { count *= p[1 + d] }
                                gx.update(repeating: 0, count: count)
                            }
                            NearestResize.backward(gy: UnsafePointer(t[Int(ids[io])]), outer: o, geometry: p, gx: gx)

                        // MARK: family logic (run)
                        case .logic(let op, let geometry):
                            TensorOps.logicBroadcast(op, a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                     y: t[Int(ids[io + 2])], geometry: BroadcastLayout.decode(ints, geometry, n))
                        case .select(let geometry):
                            TensorOps.select(c: UnsafePointer(t[Int(ids[io])]), x: UnsafePointer(t[Int(ids[io + 1])]),
                                             y: UnsafePointer(t[Int(ids[io + 2])]), out: t[Int(ids[io + 3])],
                                             geometry: SelectLayout.decode(ints, geometry, n))
                        case .logicAdjoint(let op, let k, let geometry, let accumulate):
                            TensorOps.logicAdjoint(op, operand: Int(k), a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                   gradient: UnsafePointer(t[Int(ids[io + 2])]), into: t[Int(ids[io + 3])],
                                                   geometry: BroadcastLayout.decode(ints, geometry, n), accumulate: accumulate)
                        case .logicTangent(let op, let k, let geometry, let accumulate):
                            TensorOps.logicTangent(op, operand: Int(k), a: UnsafePointer(t[Int(ids[io])]), b: UnsafePointer(t[Int(ids[io + 1])]),
                                                   tangent: UnsafePointer(t[Int(ids[io + 2])]), into: t[Int(ids[io + 3])],
                                                   geometry: BroadcastLayout.decode(ints, geometry, n), accumulate: accumulate)
                        case .selectAdjoint(let k, let geometry, let accumulate):
                            TensorOps.selectAdjoint(c: UnsafePointer(t[Int(ids[io])]), gradient: UnsafePointer(t[Int(ids[io + 1])]),
                                                    into: t[Int(ids[io + 2])], operand: Int(k), geometry: SelectLayout.decode(ints, geometry, n),
                                                    accumulate: accumulate)

                        // MARK: family nd (run)
                        case .resizeTaps(let geo, let outer):
                            let p = UnsafeBufferPointer(rebasing: ints[Int(geo)...]), o = outer.at(n), y = t[Int(ids[io + 1])]
                            y.update(repeating: 0, count: o * TapResize.blockCount(geometry: p, input: false))
                            TapResize.forward(x: UnsafePointer(t[Int(ids[io])]), outer: o, geometry: p, y: y)
                        case .resizeTapsGradient(let geo, let outer, let accumulate):
                            let p = UnsafeBufferPointer(rebasing: ints[Int(geo)...]), o = outer.at(n), gx = t[Int(ids[io + 1])]
                            if !accumulate { gx.update(repeating: 0, count: o * TapResize.blockCount(geometry: p, input: true)) }
                            TapResize.backward(gy: UnsafePointer(t[Int(ids[io])]), outer: o, geometry: p, gx: gx)
                        case .depthColumns(let geo, let batch):
                            DepthColumns.forward(x: UnsafePointer(t[Int(ids[io])]), batch: batch.at(n), geometry: UnsafeBufferPointer(rebasing: ints[Int(geo)...]),
                                                 columns: t[Int(ids[io + 1])])
                        case .depthColumnsGradient(let geo, let batch, let accumulate):
                            DepthColumns.backward(columns: UnsafePointer(t[Int(ids[io])]), batch: batch.at(n), geometry: UnsafeBufferPointer(rebasing: ints[Int(geo)...]),
                                                  gx: t[Int(ids[io + 1])], accumulate: accumulate)
                        // MARK: family reduce (run)
                        case .reduce(let f, let geo):
                            let v = SoftmaxLayout.decode(ints, geo, n)
                            ReduceKernels.forward(f, x: UnsafePointer(t[Int(ids[io])]), y: t[Int(ids[io + 1])],
                                                  outer: v.outer, length: v.length, inner: v.inner)
                        case .reduceDerivative(let f, let geo, let tangent, let accumulate):
                            let v = SoftmaxLayout.decode(ints, geo, n)
                            ReduceKernels.derivative(f, x: UnsafePointer(t[Int(ids[io])]), y: UnsafePointer(t[Int(ids[io + 1])]),
                                                     g: UnsafePointer(t[Int(ids[io + 2])]), out: t[Int(ids[io + 3])], outer: v.outer,
                                                     length: v.length, inner: v.inner, tangent: tangent, accumulate: accumulate)
                        case .pad(let geo, let outer, let hasValue):
                            // geometry: [constant's bits, index maps (`PadKernels`)]
                            PadKernels.forward(x: UnsafePointer(t[Int(ids[io])]),
                                               value: hasValue ? t[Int(ids[io + 1])].pointee : NormKernels.real(ints, Int(geo)),
                                               outer: outer.at(n), geometry: UnsafeBufferPointer(rebasing: ints[(Int(geo) + 1)...]),
                                               y: t[Int(ids[io + (hasValue ? 2 : 1)])])
                        case .padGradient(let geo, let outer, let ofValue, let accumulate):
                            let out = t[Int(ids[io + 1])], p = UnsafeBufferPointer(rebasing: ints[(Int(geo) + 1)...]), o = outer.at(n)
                            if !accumulate {
                                var count = ofValue ? 1 : o
                                if !ofValue { for d in 0..<p[0] { count &*= p[1 + d] } }
                                out.update(repeating: 0, count: count)
                            }
                            PadKernels.backward(gy: UnsafePointer(t[Int(ids[io])]), outer: o, geometry: p, ofValue: ofValue, out: out)
                        // MARK: family fuse (run)
                        case .lstmState(let rows, let h):
                            RecurrentKernels.lstmState(z: UnsafePointer(t[Int(ids[io])]), c0: UnsafePointer(t[Int(ids[io + 1])]),
                                                       c: t[Int(ids[io + 2])], rows: rows.at(n), hidden: h, numerics: numerics)
                        case .lstmOutput(let rows, let h):
                            RecurrentKernels.lstmOutput(z: UnsafePointer(t[Int(ids[io])]), c: UnsafePointer(t[Int(ids[io + 1])]),
                                                        h: t[Int(ids[io + 2])], rows: rows.at(n), hidden: h, numerics: numerics)
                        case .gruCell(let rows, let h):
                            RecurrentKernels.gruCell(g: UnsafePointer(t[Int(ids[io])]), q: UnsafePointer(t[Int(ids[io + 1])]),
                                                     h0: UnsafePointer(t[Int(ids[io + 2])]), h: t[Int(ids[io + 3])],
                                                     rows: rows.at(n), hidden: h, numerics: numerics)

                        }
                    }
                }
              }
            }
        }
    }
}
