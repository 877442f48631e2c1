extension Engine {
    /// Runs a plan in one scalar type: the work space, the constants converted to `T` once, and the
    /// step loop. Not thread-safe (a model holds one per scalar type, under its run lock).
    ///
    /// Running allocates nothing once the arena is as large as the largest batch seen: `bind(n)` only
    /// recomputes the slot pointers when n changes.
    public final class Executor<T: EngineScalar> {
        public let plan: Plan
        private let constants: [TensorStorage]
        private var arena: TensorStorage?
        private var boundN = -1
        /// Storage id → pointer, filled by `bind` (slots and constants) and per call (inputs, outputs).
        private let table: UnsafeMutablePointer<UnsafeMutablePointer<T>>
        /// When true, dense steps run one matrix-vector product per row: each sample's result does not
        /// depend on the batch it is in.
        public var reproducible = false

        /// Takes the plan's constants from `graph` (the graph it was compiled from), converted to `T`.
        public init(plan: Plan, graph: Graph) throws(InLoopError) {
            self.plan = plan
            var cs: [TensorStorage] = []
            for v in plan.constants {
                guard let t = graph[v].constant else { throw InLoopError(.internal, "constant '\(graph[v].name)' has no data") }
                cs.append(try Executor.convert(t))
            }
            constants = cs
            table = .allocate(capacity: Swift.max(plan.storages.count, 1))
            for (s, info) in plan.storages.enumerated() {
                if case .constant(let k) = info.kind { table[s] = try cs[k].pointer(as: T.self) }
            }
        }

        deinit { table.deallocate() }

        private static func convert(_ t: Tensor) throws(InLoopError) -> TensorStorage {
            if t.dtype == T.dtype { return t.storage }
            let out = try TensorStorage(dtype: T.dtype, count: t.count)
            let d = try out.pointer(as: T.self)
            switch t.dtype {
            case .float32: let s = try t.storage.pointer(as: Float.self); for i in 0..<t.count { d[i] = T(s[i]) }
            case .float64: let s = try t.storage.pointer(as: Double.self); for i in 0..<t.count { d[i] = T(s[i]) }
            case .int64, .bool: throw InLoopError(.unsupported, "an integer constant used as \(T.dtype) data")
            }
            return out
        }

        /// Sizes the arena for n and points the slots into it (only when n changes; the arena only grows).
        public func bind(_ n: Int) throws(InLoopError) {
            if n == boundN { return }
            guard n >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(n)") }
            guard let elements = plan.arenaSize.checked(at: n) else { throw InLoopError(.outOfMemory, "batch \(n) is too large") }
            for info in plan.storages where info.size.checked(at: n) == nil {
                throw InLoopError(.outOfMemory, "batch \(n) is too large")
            }
            try Limits.workspace(floats: elements * (T.dtype.size / 4), batch: n)
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
            for (s, info) in plan.storages.enumerated() {
                switch info.kind {
                case .input(let k): table[s] = UnsafeMutablePointer(mutating: inputs[k])
                case .output(let k): table[s] = outputs[k]
                case .constant, .slot: break
                }
            }
            run(n)
        }

        /// The step loop: a switch per step over POD payloads; no allocation, no look-up.
        private func run(_ n: Int) {
            let numerics = plan.numerics, perRow = reproducible && n > 1
            let t = table
            plan.ids.withUnsafeBufferPointer { ids in
                plan.steps.withUnsafeBufferPointer { steps in
                    for step in steps {
                        let io = Int(step.io)
                        switch step.kind {
                        case .dense(let rows, let k, let m, let hasBias, let act):
                            let x = UnsafePointer(t[Int(ids[io])]), w = UnsafePointer(t[Int(ids[io + 1])])
                            let b: UnsafePointer<T>? = hasBias ? UnsafePointer(t[Int(ids[io + 2])]) : nil
                            let y = t[Int(ids[io + (hasBias ? 3 : 2)])]
                            let r = rows.at(n)
                            if perRow {
                                for s in 0..<r {
                                    T.denseStep(x: x + s * k, rows: 1, inCols: k, w: w, b: b, outCols: m, activation: act,
                                                y: y + s * m, numerics: numerics)
                                }
                            } else {
                                T.denseStep(x: x, rows: r, inCols: k, w: w, b: b, outCols: m, activation: act, y: y, numerics: numerics)
                            }
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
                        }
                    }
                }
            }
        }
    }
}
