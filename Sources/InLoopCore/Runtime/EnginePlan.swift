extension Engine {
    /// A count that scales with the batch: `perBatch · n + fixed` values (perBatch = 0 for storages
    /// whose size does not depend on the batch). Sizes in a plan are extents, so one plan serves every
    /// batch size.
    public struct Extent: Hashable, Sendable, CustomStringConvertible {
        public var perBatch: Int
        public var fixed: Int

        public init(perBatch: Int = 0, fixed: Int = 0) {
            self.perBatch = perBatch
            self.fixed = fixed
        }

        /// The value at batch size n; overflow was ruled out when the plan was bound (`check(at:)`).
        @inline(__always)
        public func at(_ n: Int) -> Int { perBatch &* n &+ fixed }

        /// The value at n, or nil on overflow.
        public func checked(at n: Int) -> Int? {
            let (p, o1) = perBatch.multipliedReportingOverflow(by: n)
            let (s, o2) = p.addingReportingOverflow(fixed)
            return o1 || o2 ? nil : s
        }

        /// The extent of a symbolic count in the batch symbol (nil for any other symbol).
        init?(_ s: SymInt, batch: Symbol?) {
            if let sym = s.symbol {
                guard sym == batch else { return nil }
                self.init(perBatch: s.coeff, fixed: s.constant)
            } else {
                self.init(perBatch: 0, fixed: s.constant)
            }
        }

        /// Coefficient-wise max: at least as large as both for every n ≥ 0.
        func union(_ o: Extent) -> Extent { Extent(perBatch: Swift.max(perBatch, o.perBatch), fixed: Swift.max(fixed, o.fixed)) }

        /// Rounded up to a multiple of 16 elements coefficient-wise (64-byte alignment for float32 at
        /// every n).
        var aligned: Extent { Extent(perBatch: (perBatch + 15) & ~15, fixed: (fixed + 15) & ~15) }

        static func + (a: Extent, b: Extent) -> Extent? {
            let (p, o1) = a.perBatch.addingReportingOverflow(b.perBatch)
            let (f, o2) = a.fixed.addingReportingOverflow(b.fixed)
            return o1 || o2 ? nil : Extent(perBatch: p, fixed: f)
        }

        public var description: String {
            perBatch == 0 ? "\(fixed)" : fixed == 0 ? "\(perBatch)·N" : "\(perBatch)·N+\(fixed)"
        }
    }

    /// What a plan step computes: the kernel set, not the op set. POD: running a step retains nothing.
    /// Operand storage ids are in `Plan.ids[step.io ..< step.io + count]`, in the order given per case.
    /// Every step writes one storage, its last operand; operands before it are read, except scratch
    /// storages (`LoweringContext.scratch`), which the step may overwrite and which live only for
    /// that step.
    enum StepKind {
        /// [x, w, b?, y]: y[rows × out] = act(x[rows × in] · wᵀ + b), w stored [out, in].
        case dense(rows: Extent, inCols: Int, outCols: Int, hasBias: Bool, activation: Activation)
        /// [x, y]: y = act(x) (in place when x and y are one storage).
        case activation(Activation, count: Extent)
        /// [x, mean, std, y]: y = (x − mean) / std, or y = x · std + mean (denormalize), per column.
        case normalize(rows: Extent, cols: Int, inverse: Bool)
        /// [a, b, y]: y = a + b, same shapes.
        case add(count: Extent)
        /// [x, y]: y = x.
        case copy(count: Extent)
        /// [x]: x = 0.
        case zero(count: Extent)

        // Op families (phase 3): each family adds its forward cases after its own marker, so that
        // parallel work merges without conflicts. Geometry that does not fit a few integers goes to
        // `Plan.ints` (`LoweringContext.ints`), referenced by offset: steps stay small and POD.
        // MARK: family elementwise (forward)

        // MARK: family shape (forward)

        // MARK: family matmul-norm (forward)

        // MARK: family conv-pool (forward)
        /// [x, w, b?, scratch, y]: y = act(conv(x, w) + b); `geometry`: a ConvGeometry in `Plan.ints`.
        case conv(geometry: Int32, batch: Extent, hasBias: Bool, activation: Activation)
        /// [x, w, b?, scratch, y]: y = act(convTranspose(x, w) + b); a ConvTransposeGeometry.
        case convTranspose(geometry: Int32, batch: Extent, hasBias: Bool, activation: Activation)
        /// [x, y]: max pooling of planes (N·C) of values; a PoolGeometry.
        case maxPool(geometry: Int32, planes: Extent)
        /// [x, y]: average pooling.
        case averagePool(geometry: Int32, planes: Extent, countIncludePad: Bool)
        /// [x, y]: y[p] = max or mean of x[p, 0 ..< spatial].
        case globalPool(max: Bool, planes: Extent, spatial: Int)
        /// [x, y]: nearest resize of `outer` blocks through the index maps at `geometry` (Kernels/Resize.swift).
        case resizeNearest(geometry: Int32, outer: Extent)


        // Reverse and tangent steps (differentiable plans):
        /// [gy, x, gw, gb?]: gw (+)= gyᵀ · x; gb = column sums of gy (zeroed first, then rows added).
        case denseParameterGradients(rows: Extent, inCols: Int, outCols: Int, hasBias: Bool, accumulate: Bool)
        /// [gy, w, gx]: gx (+)= gy · w.
        case denseInputGradient(rows: Extent, inCols: Int, outCols: Int, accumulate: Bool)
        /// [z, a, g, out]: out (+)= g · f'(z) (a = f(z)): an activation's adjoint, and its tangent.
        case activationBackward(Activation, count: Extent, accumulate: Bool)
        /// [g, std, out]: reverse: out (zeroed first when `zeroFirst`) += g / std (or g · std, inverse);
        /// tangent (`tangent`): out = g / std (or g · std).
        case normalizeLinear(rows: Extent, cols: Int, inverse: Bool, zeroFirst: Bool, tangent: Bool)
        /// [g, out]: out (+)= g.
        case accumulate(count: Extent, accumulate: Bool)

        // MARK: family elementwise (reverse, tangent)

        // MARK: family shape (reverse, tangent)

        // MARK: family matmul-norm (reverse, tangent)

        // MARK: family conv-pool (reverse, tangent)
        /// Conv's adjoint: .input [gy, w, scratch, gx], .weight [gy, x, scratch, gw], .bias [gy, gb]
        /// ((+)= by `accumulate`).
        case convGradient(geometry: Int32, batch: Extent, of: WindowGradient, accumulate: Bool)
        /// ConvTranspose's adjoint, operands as convGradient.
        case convTransposeGradient(geometry: Int32, batch: Extent, of: WindowGradient, accumulate: Bool)
        /// [x, g, scratch, out]: max pooling (geometry; -1: global over `spatial`) at x: reverse
        /// out (+)= g routed to each window's first maximum, or tangent out = g there.
        case maxPoolDerivative(geometry: Int32, planes: Extent, spatial: Int, tangent: Bool, accumulate: Bool)
        /// [gy, gx]: gx (+)= the adjoint of average pooling (geometry; -1: global over `spatial`).
        case averagePoolGradient(geometry: Int32, planes: Extent, spatial: Int, countIncludePad: Bool, accumulate: Bool)
        /// [gy, gx]: gx (+)= the adjoint of resizeNearest.
        case resizeNearestGradient(geometry: Int32, outer: Extent, accumulate: Bool)

    }

    struct Step {
        var kind: StepKind
        var io: Int32
        /// The node it came from, for messages.
        var node: Int32
        /// Reverse steps: what the step writes is wanted only for input gradients / parameter
        /// gradients (the executor skips it when those are not asked for).
        var role: GradientRole = .always
    }

    enum GradientRole { case always, inputGradientsOnly, parameterGradientsOnly }

    /// Where a storage lives when the plan runs.
    enum StorageKind: Equatable {
        /// The caller's k-th input array (read only).
        case input(Int)
        /// The caller's k-th output array.
        case output(Int)
        /// The k-th constant of the plan (converted to the executor's type once).
        case constant(Int)
        /// A slot of the work space arena.
        case slot(Int)
        /// The executor's flat parameter vector at this offset (differentiable plans).
        case parameter(Int)
        /// The executor's flat parameter-gradient vector at this offset.
        case parameterGradient(Int)
        /// The caller's arrays of a reverse or tangent pass: d loss/d output k (read), d loss/d input k
        /// (written), the tangent of input k (read), of output k (written).
        case outputSeed(Int), inputGradient(Int), inputTangent(Int), outputTangent(Int)
    }

    struct StorageInfo {
        var kind: StorageKind
        /// Elements.
        var size: Extent
    }

    /// A compiled graph: steps over numbered storages, and the arena layout. Scalar-independent: the
    /// same plan runs in `Executor<Float>` and `Executor<Double>`. Valid for every batch size n ≥ 1
    /// (the graph's batch symbol); sizes that depend on other symbols were bound when it was compiled.
    public final class Plan {
        let steps: [Step]
        /// Differentiable plans: the reverse pass (adjoint of `steps`, in reverse order) and the
        /// tangent-linear pass.
        let reverse: [Step]
        let tangent: [Step]
        /// Trainable values in flat-vector order (differentiable plans).
        public let parameterCount: Int
        let ids: [Int32]
        /// Integer geometry of steps (shapes, strides, offsets), referenced by offset from step payloads.
        let ints: [Int]
        let storages: [StorageInfo]
        /// Offsets of the arena's slots (aligned) and the arena's total size.
        let slotOffsets: [Extent]
        let arenaSize: Extent
        /// The graph's constants the plan uses, by `.constant(k)`.
        let constants: [ValueID]
        /// Elements per input / output array.
        public let inputSizes: [Extent]
        public let outputSizes: [Extent]
        public let numerics: Numerics

        init(steps: [Step], ids: [Int32], ints: [Int], storages: [StorageInfo], slotOffsets: [Extent], arenaSize: Extent,
             constants: [ValueID], inputSizes: [Extent], outputSizes: [Extent], numerics: Numerics,
             reverse: [Step] = [], tangent: [Step] = [], parameterCount: Int = 0) {
            self.reverse = reverse; self.tangent = tangent; self.parameterCount = parameterCount
            self.steps = steps; self.ids = ids; self.ints = ints; self.storages = storages; self.slotOffsets = slotOffsets
            self.arenaSize = arenaSize; self.constants = constants; self.inputSizes = inputSizes
            self.outputSizes = outputSizes; self.numerics = numerics
        }

        /// Steps, for tests and `inloop inspect`.
        public var stepCount: Int { steps.count }
        public var isDifferentiable: Bool { numerics == .differentiable }
        public var slotCount: Int { slotOffsets.count }
        /// Elements of work space at batch n.
        public func workspaceElements(at n: Int) -> Int? { arenaSize.checked(at: n) }
    }
}
