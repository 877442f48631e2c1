extension Engine {
    /// What an op's `lower` sees of the node it lowers, and how it emits steps.
    public struct LoweringContext {
        let builder: PlanBuilder
        let node: Node
        public let inputTypes: [TensorType?]
        public let outputTypes: [TensorType]

        /// The number of elements of a shape as an extent in the batch (the plan's one free symbol).
        public func extent(_ shape: Shape, _ what: @autoclosure () -> String = "a value") throws(InLoopError) -> Extent {
            try builder.extent(shape, what())
        }

        /// Elements of input k's and output k's values.
        public func inputExtent(_ k: Int) throws(InLoopError) -> Extent { try extent(try Engine.input(inputTypes, k).shape) }
        public func outputExtent(_ k: Int) throws(InLoopError) -> Extent { try extent(outputTypes[k].shape) }

        /// Whether input k is present / a constant of the graph.
        public func hasInput(_ k: Int) -> Bool { k < node.inputs.count && node.inputs[k] != nil }
        public func isConstant(_ k: Int) -> Bool {
            guard k < node.inputs.count, let v = node.inputs[k] else { return false }
            return builder.graph[v].constant != nil
        }

        func input(_ k: Int) throws(InLoopError) -> Int32 {
            guard k < node.inputs.count, let v = node.inputs[k] else { throw InLoopError(.format, "input \(k) is required") }
            return try builder.storage(of: v)
        }

        /// Input k (a constant [out, in] weight) re-laid out for `packedDense`.
        func packedInput(_ k: Int) throws(InLoopError) -> Int32 {
            guard k < node.inputs.count, let v = node.inputs[k], isConstant(k) else { throw InLoopError(.internal, "packed input \(k) is not a constant") }
            return try builder.packed(v)
        }
        func output(_ k: Int) throws(InLoopError) -> Int32 { try builder.define(node.outputs[k], size: try outputExtent(k)) }

        /// Output k is input j's storage (a reshape, an identity): no step, no copy.
        func alias(output k: Int, input j: Int) throws(InLoopError) {
            guard j < node.inputs.count, let v = node.inputs[j] else { throw InLoopError(.format, "input \(j) is required") }
            try builder.alias(node.outputs[k], to: v)
        }

        func emit(_ kind: StepKind, _ operands: [Int32]) { builder.emit(kind, operands) }

        /// A work space storage of its own (an intermediate a differentiable plan keeps, e.g. the
        /// pre-activation of a dense layer).
        func temporary(_ size: Extent) -> Int32 { builder.temporary(size) }

        /// Scratch space for the steps that name it as an operand (before their output): it gets a slot
        /// at its first use and gives it back after its last, like any value (im2col columns, packed
        /// operands).
        func scratch(_ size: Extent) -> Int32 { builder.scratch(size) }

        /// Integer geometry for a step (shapes, strides, index lists): its offset in `Plan.ints`.
        func ints(_ values: [Int]) -> Int32 { builder.addInts(values) }

        public var numerics: Numerics { builder.numerics }
    }

    /// Builds a plan from a verified, typed graph: storages for values, steps from each op's `lower`,
    /// then work space slots by liveness.
    final class PlanBuilder {
        let graph: Graph
        let numerics: Numerics
        var storages: [StorageInfo] = []
        var steps: [Step] = []
        var ids: [Int32] = []
        var ints: [Int] = []
        var constants: [ValueID] = []
        private var storageOf: [Int32]
        private var currentNode: Int32 = -1
        /// Storages that are pending arena slots (assigned by `assignSlots`).
        var pendingSlot: Set<Int32> = []
        /// Pending storages that steps use as scratch (not written as their output).
        var scratchStorages: Set<Int32> = []
        /// The graph output each value goes to first (its producer writes the caller's array).
        private var outputIndex: [ValueID: Int] = [:]

        init(graph: Graph, numerics: Numerics) {
            self.graph = graph
            self.numerics = numerics
            storageOf = [Int32](repeating: -1, count: graph.values.count)
            // An inference plan writes graph outputs straight into the caller's arrays; a
            // differentiable one keeps them (the reverse pass reads them) and copies them out.
            if numerics == .inference {
                for (k, o) in graph.outputs.enumerated() where outputIndex[o] == nil { outputIndex[o] = k }
            } else {
                var offset = 0
                for v in graph.parameters {
                    parameterOffset[v] = offset
                    offset += graph[v].constant?.count ?? 0
                }
                parameterCount = offset
            }
        }

        /// Differentiable plans: the flat-vector offset of each trainable constant.
        var parameterOffset: [ValueID: Int] = [:]
        var parameterCount = 0

        func temporary(_ size: Extent) -> Int32 {
            let s = newStorage(.slot(-1), size)
            pendingSlot.insert(s)
            return s
        }

        func scratch(_ size: Extent) -> Int32 {
            let s = temporary(size)
            scratchStorages.insert(s)
            return s
        }

        func addInts(_ values: [Int]) -> Int32 {
            let offset = Int32(ints.count)
            ints += values
            return offset
        }

        func extent(_ shape: Shape, _ what: String) throws(InLoopError) -> Extent {
            guard let n = shape.elementCount, let e = Extent(n, batch: graph.batch) else {
                throw Engine.notLinear("\(what) of shape \(shape.formatted)")
            }
            return e
        }

        func newStorage(_ kind: StorageKind, _ size: Extent) -> Int32 {
            storages.append(StorageInfo(kind: kind, size: size))
            return Int32(storages.count - 1)
        }

        /// The storage of a value that is read (a graph input, a constant, or an earlier node's output).
        func storage(of v: ValueID) throws(InLoopError) -> Int32 {
            let s = storageOf[v.index]
            if s >= 0 { return s }
            let value = graph[v]
            guard let type = value.type else { throw InLoopError(.internal, "value '\(value.name)' has no type") }
            if let k = graph.inputs.firstIndex(of: v) {
                storageOf[v.index] = newStorage(.input(k), try extent(type.shape, "graph input '\(value.name)'"))
            } else if let offset = parameterOffset[v] {
                storageOf[v.index] = newStorage(.parameter(offset), try extent(type.shape, "parameter '\(value.name)'"))
            } else if value.constant != nil {
                constants.append(v)
                storageOf[v.index] = newStorage(.constant(constants.count - 1), try extent(type.shape, "constant '\(value.name)'"))
            } else if value.known != nil {
                throw InLoopError(.unsupported, "integer value '\(value.name)' (computed from shapes) is needed at run time; InLoop computes float values only")
            } else {
                throw InLoopError(.internal, "value '\(value.name)' is read before it is computed")
            }
            return storageOf[v.index]
        }

        /// A `.packed` storage of constant v (one per constant, shared by the steps that read it).
        func packed(_ v: ValueID) throws(InLoopError) -> Int32 {
            let s = try storage(of: v)
            guard case .constant(let k) = storages[Int(s)].kind else { throw InLoopError(.internal, "value '\(graph[v].name)' is not a constant") }
            if let p = packedOf[k] { return p }
            let p = newStorage(.packed(k), storages[Int(s)].size)
            packedOf[k] = p
            return p
        }
        private var packedOf: [Int: Int32] = [:]

        /// The storage a node output is written to: the caller's output array when it is a graph
        /// output, else a work space slot.
        func define(_ v: ValueID, size: Extent) throws(InLoopError) -> Int32 {
            guard storageOf[v.index] < 0 else { throw InLoopError(.internal, "value '\(graph[v].name)' is computed twice") }
            let s: Int32
            if let k = outputIndex[v] {
                s = newStorage(.output(k), size)
            } else {
                s = newStorage(.slot(-1), size)
                pendingSlot.insert(s)
            }
            storageOf[v.index] = s
            return s
        }

        func alias(_ v: ValueID, to input: ValueID) throws(InLoopError) {
            let s = try storage(of: input)
            if outputIndex[v] != nil {
                // a graph output is the caller's array: copy into it
                let d = try define(v, size: storages[Int(s)].size)
                emit(.copy(count: storages[Int(s)].size), [s, d])
            } else {
                storageOf[v.index] = s
            }
        }

        func emit(_ kind: StepKind, _ operands: [Int32]) {
            steps.append(Step(kind: kind, io: Int32(ids.count), node: currentNode))
            ids += operands
        }

        func build() throws(InLoopError) -> Plan {
            for (i, node) in graph.nodes.enumerated() {
                // shape computations, all known at compile time: nothing to run
                if node.outputs.allSatisfy({ graph[$0].known != nil && outputIndex[$0] == nil }) { continue }
                currentNode = Int32(i)
                let inputTypes = node.inputs.map { $0.flatMap { graph[$0].type } }
                var outputTypes: [TensorType] = []
                for o in node.outputs {
                    guard let t = graph[o].type else { throw InLoopError(.internal, "\(graph.describe(node)): output without a type (inferTypes() first)") }
                    outputTypes.append(t)
                }
                var ctx = LoweringContext(builder: self, node: node, inputTypes: inputTypes, outputTypes: outputTypes)
                do { try node.op.lowerAny(node, &ctx) } catch { throw error.prefixed(graph.describe(node)) }
            }
            currentNode = -1
            // Graph outputs that no step wrote (an input, a constant, a value listed twice): copies.
            var outputStorage = [Int32](repeating: -1, count: graph.outputs.count)
            for (si, s) in storages.enumerated() { if case .output(let k) = s.kind { outputStorage[k] = Int32(si) } }
            for (k, v) in graph.outputs.enumerated() where outputStorage[k] < 0 {
                let src = try storage(of: v)
                let size = storages[Int(src)].size
                let d = newStorage(.output(k), size)
                emit(.copy(count: size), [src, d])
                outputStorage[k] = d
            }
            var inputSizes: [Extent] = []
            for v in graph.inputs {
                guard let t = graph[v].type else { throw InLoopError(.internal, "graph input without a type") }
                inputSizes.append(try extent(t.shape, "graph input '\(graph[v].name)'"))
            }
            let outputSizes = outputStorage.map { storages[Int($0)].size }
            var inputStorage: [Int32] = []
            for v in graph.inputs { inputStorage.append(try storage(of: v)) }
            var outputValueStorage: [Int32] = []
            for v in graph.outputs { outputValueStorage.append(try storage(of: v)) }
            let forwardSteps = steps
            var reverse: [Step] = [], tangent: [Step] = []
            if numerics == .differentiable {
                var d = Differentiator(builder: self, forward: forwardSteps, inputs: inputStorage, outputs: outputValueStorage)
                try d.build()
                reverse = d.reverse
                tangent = d.tangent
            }
            let (offsets, total) = try assignSlots(forwardSteps)
            let plan = Plan(steps: forwardSteps, ids: ids, ints: ints, storages: storages, slotOffsets: offsets, arenaSize: total,
                            constants: constants, inputSizes: inputSizes, outputSizes: outputSizes, numerics: numerics,
                            reverse: reverse, tangent: tangent, parameterCount: parameterCount)
            return plan
        }

        /// Liveness: a slot is reused once the value in it is dead. Element-wise steps whose first
        /// operand dies at that step write in place.
        private func assignSlots(_ steps: [Step]) throws(InLoopError) -> ([Extent], Extent) {
            if numerics == .differentiable {
                // The reverse and tangent passes read forward values: every storage keeps a slot of its
                // own (liveness over the whole schedule comes with the training executor).
                var slotSize: [Extent] = []
                for s in pendingSlot.sorted() {
                    storages[Int(s)].kind = .slot(slotSize.count)
                    slotSize.append(storages[Int(s)].size)
                }
                return try layout(slotSize)
            }
            var lastUse = [Int](repeating: -1, count: storages.count)
            for (i, step) in steps.enumerated() { for s in operands(step) { lastUse[Int(s)] = i } }
            var slotSize: [Extent] = []
            var free: [Int] = []
            var slotOf = [Int](repeating: -1, count: storages.count)
            for (i, step) in steps.enumerated() {
                let ops = operands(step)
                guard let out = ops.last.map({ Int($0) }) else { continue }
                var reused = -1
                if pendingSlot.contains(Int32(out)), slotOf[out] < 0 {
                    if elementwise(step.kind), let first = ops.first.map({ Int($0) }), slotOf[first] >= 0,
                       lastUse[first] == i, storages[first].size == storages[out].size {
                        slotOf[out] = slotOf[first]
                        reused = first
                    } else if let b = free.popLast() {
                        slotOf[out] = b
                        slotSize[b] = slotSize[b].union(storages[out].size)
                    } else {
                        slotOf[out] = slotSize.count
                        slotSize.append(storages[out].size)
                    }
                }
                // scratch operands: a slot from their first use (never the output's, nor an input's:
                // slots read here are freed only after the step)
                for s in ops.dropLast().map({ Int($0) }) where scratchStorages.contains(Int32(s)) && slotOf[s] < 0 {
                    if let b = free.popLast() {
                        slotOf[s] = b
                        slotSize[b] = slotSize[b].union(storages[s].size)
                    } else {
                        slotOf[s] = slotSize.count
                        slotSize.append(storages[s].size)
                    }
                }
                // values read for the last time here (or an output nothing reads) free their slots for
                // the next steps; a slot taken over in place now belongs to the output
                for s in Set(ops.map { Int($0) }).sorted() where s != reused && slotOf[s] >= 0 && lastUse[s] == i {
                    free.append(slotOf[s])
                }
            }
            for s in pendingSlot {
                guard slotOf[Int(s)] >= 0 else { throw InLoopError(.internal, "storage \(s) has no slot") }
                storages[Int(s)].kind = .slot(slotOf[Int(s)])
            }
            return try layout(slotSize)
        }

        private func layout(_ slotSize: [Extent]) throws(InLoopError) -> ([Extent], Extent) {
            var offsets: [Extent] = []
            var total = Extent()
            for size in slotSize {
                offsets.append(total)
                guard let t = total + size.aligned else { throw InLoopError(.outOfMemory, "the work space size overflows") }
                total = t
            }
            return (offsets, total)
        }

        func operands(_ step: Step) -> ArraySlice<Int32> {
            ids[Int(step.io) ..< Int(step.io) + StepKind.operandCount(step.kind)]
        }

        private func elementwise(_ k: StepKind) -> Bool {
            switch k {
            case .activation, .normalize, .add: return true
            // MARK: family elementwise (in place)
            case .broadcast, .unary, .clip, .softmax: return true

            // MARK: family shape (in place)
            case .roundToFloat32: return true

            // MARK: family matmul-norm (in place)
            case .channelAffine, .batchNorm: return true

            // MARK: family conv-pool (in place)

            // MARK: family logic (in place)
            case .logic, .select: return true
            // MARK: family reduce (in place)

            default: return false
            }
        }
    }
}

extension Engine.StepKind {
    static func operandCount(_ k: Engine.StepKind) -> Int {
        switch k {
        case .dense(_, _, _, let hasBias, _): return hasBias ? 4 : 3
        case .packedDense(_, _, _, let hasBias, _): return hasBias ? 5 : 4
        case .activation, .copy, .accumulate: return 2
        case .normalize, .activationBackward: return 4
        case .add, .denseInputGradient, .normalizeLinear: return 3
        case .zero: return 1
        case .denseParameterGradients(_, _, _, let hasBias, _): return hasBias ? 4 : 3
        // MARK: family elementwise (operands)
        case .broadcast: return 3
        case .broadcastAdjoint, .broadcastTangent: return 5
        case .unary, .softmax: return 2
        case .unaryBackward: return 4
        case .clip(_, let lo, let hi): return 2 + (lo ? 1 : 0) + (hi ? 1 : 0)
        case .clipLinear(_, let lo, let hi, _, _, _): return 3 + (lo ? 1 : 0) + (hi ? 1 : 0)
        case .softmaxBackward, .softmaxTangent: return 3

        // MARK: family shape (operands)
        case .layoutCopy, .gather, .roundToFloat32, .gatherBackward: return 2
        // MARK: family constraints (operands)
        case .columnProjection(_, _, let hasY, let hasS, _, _): return 2 + (hasY ? 1 : 0) + (hasS ? 1 : 0)
        case .columnProjectionTarget: return 3
        case .columnProjectionWeights: return 5
        case .massFixer(_, _, let mode, _): return mode == 0 ? 3 : 4
        case .concat(_, let parts): return parts + 1
        case .fill, .fillLinear: return 1

        // MARK: family matmul-norm (operands)
        case .matMul(_, _, _, let hasC, _, _): return hasC ? 4 : 3
        case .channelAffine, .matMulGradientC, .matMulBroadcastC, .channelSums: return 2
        case .batchNorm, .layerNormLinear: return 4
        case .layerNorm(_, _, _, let hasBias): return hasBias ? 4 : 3
        case .matMulGradientA, .matMulGradientB, .batchNormInputGradient, .batchNormScaleGradient, .layerNormScaleGradient: return 3

        // MARK: family conv-pool (operands)
        case .conv(_, _, let hasBias, _), .convTranspose(_, _, let hasBias, _): return hasBias ? 5 : 4
        case .maxPool, .averagePool, .globalPool, .averagePoolGradient, .resizeNearest, .resizeNearestGradient: return 2
        case .convGradient(_, _, let of, _), .convTransposeGradient(_, _, let of, _): return of == .bias ? 2 : 4
        case .maxPoolDerivative: return 4

        // MARK: family logic (operands)
        case .logic, .selectAdjoint: return 3
        case .select, .logicAdjoint, .logicTangent: return 4

        // MARK: family nd (operands)
        case .resizeTaps, .resizeTapsGradient, .depthColumns, .depthColumnsGradient: return 2
        // MARK: family reduce (operands)
        case .reduce, .padGradient: return 2
        case .reduceDerivative: return 4
        case .pad(_, _, let hasValue): return hasValue ? 3 : 2
        // MARK: family fuse (operands)
        case .lstmState, .lstmOutput: return 3
        case .gruCell: return 4

        }
    }
}

extension Engine {
    /// Compiles a graph (verified and typed, `verify()` and `inferTypes()`) into a plan for every batch
    /// size. `notLinear` errors mean the graph's shapes depend on the batch in a way one plan cannot
    /// describe (the caller then specialises: `inferTypes(bindings:)` and compile again).
    public static func compile(_ graph: Graph, numerics: Numerics = .inference) throws(InLoopError) -> Plan {
        try PlanBuilder(graph: graph, numerics: numerics).build()
    }
}
