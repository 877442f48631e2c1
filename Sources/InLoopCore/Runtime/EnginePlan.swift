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
        /// [x, w, wPacked, b?, y]: `dense` of inference plans, where w is a constant: a `.packed`
        /// storage holds w re-laid out for the batch ≥ 2 kernel (Float at a level with FMA); batch 1
        /// and the other cases read w itself.
        case packedDense(rows: Extent, inCols: Int, outCols: Int, hasBias: Bool, activation: Activation)
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
        /// [a, b, y]: y = op(a, b) with NumPy broadcasting; the merged geometry (`Engine.BroadcastLayout`)
        /// is in `Plan.ints` at `geometry`.
        case broadcast(BinaryOp, geometry: Int32)
        /// [x, y]: y = f(x) (in place when x and y are one storage).
        case unary(UnaryFunction, count: Extent)
        /// [x, lo?, hi?, y]: y = min(max(x, lo), hi) with one-element bounds read at run time.
        case clip(count: Extent, hasMin: Bool, hasMax: Bool)
        /// [x, y]: (log-)softmax over the middle axis of x (outer × length × inner; three extents in
        /// `Plan.ints` at `geometry`).
        case softmax(geometry: Int32, log: Bool)

        // MARK: family shape (forward)
        /// [x, y]: y (=, += or zero-then-+=, `mode`) x through a strided map (Transpose, Slice, Split;
        /// geometry in `Plan.ints`, see `TensorOps.layoutCopyStep`; forward steps write all of y).
        case layoutCopy(geometry: Int32, mode: TensorOps.CopyMode)
        /// [x1, …, x_parts, y]: y = the inputs concatenated (`TensorOps.concatStep`).
        case concat(geometry: Int32, parts: Int)
        /// [x, y]: y = x gathered along an axis at compile-time indices (`TensorOps.gatherStep`).
        case gather(geometry: Int32)
        /// [x, y]: y = x rounded to float32 (Cast from float64).
        case roundToFloat32(count: Extent)
        /// [y]: y = value (ConstantOfShape of a shape known only at run time).
        case fill(count: Extent, value: Double)
        /// [y]: y[i] = integer form i at the batch size (a Cast of integers computed from shapes).
        case fillLinear(geometry: Int32, count: Extent)

        // MARK: family matmul-norm (forward)
        /// [a, b, c?, y]: y_e (+)= act(alpha·op(A_e)·op(B_e) [+ beta·C]) over the stack elements of the
        /// geometry (`MatMulGeometry`, at `geometry` in `Plan.ints`); `accumulate` adds to y (tangents).
        case matMul(geometry: Int32, alpha: Double, beta: Double, hasC: Bool, accumulate: Bool, activation: Activation)
        /// [x, y]: y (+)= x·s[c] (+ t[c] when `shift`) over x = outer × channels × spatial; s, t folded at
        /// compile time, at `coefficients` in `Plan.ints` (`NormKernels`).
        case channelAffine(outer: Extent, channels: Int, spatial: Extent, coefficients: Int32, shift: Bool, accumulate: Bool)
        /// [x, scale, bias, y]: y = (x − mean[c])·inv[c]·scale[c] + bias[c] (BatchNormalization with
        /// trainable scale/bias; mean and inv at `statistics` in `Plan.ints`).
        case batchNorm(outer: Extent, channels: Int, spatial: Extent, statistics: Int32)
        /// [x, scale, bias?, y]: layer normalisation of each row (rows × cols) times scale plus bias.
        case layerNorm(rows: Extent, cols: Int, epsilon: Double, hasBias: Bool)

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

        // MARK: family logic (forward)
        /// [a, b, y]: y = op(a, b) with NumPy broadcasting (comparisons and logic give 0/1; unary ops
        /// read a and take a as b too); the geometry is a `BroadcastLayout` in `Plan.ints`.
        case logic(LogicOp, geometry: Int32)
        /// [c, x, y, out]: out = c != 0 ? x : y with broadcasting (ONNX Where; a `SelectLayout`).
        case select(geometry: Int32)

        // MARK: family nd (forward)
        /// [x, y]: linear or cubic resize of `outer` blocks, taps and weights at `geometry` (Kernels/Resize.swift,
        /// `TapResize`); also the tangent (the map is linear).
        case resizeTaps(geometry: Int32, outer: Extent)
        /// [x, columns]: the depth columns of a 3-D convolution (Kernels/Conv.swift, `DepthColumns`); also the tangent.
        case depthColumns(geometry: Int32, batch: Extent)
        // MARK: family reduce (forward)
        /// [x, y]: y[o, i] = f(x[o, 0 ..< length, i]) (`ReduceKernels`; outer, length, inner: three
        /// extents in `Plan.ints` at `geometry`, as softmax's).
        case reduce(ReduceFunction, geometry: Int32)
        /// [x, v?, y]: ONNX Pad of `outer` blocks; `geometry`: [the constant's bits (Double), then the
        /// index maps of `PadKernels`]; the constant is v's one element when v is given.
        case pad(geometry: Int32, outer: Extent, hasValue: Bool)
        // MARK: family fuse (forward; inference plans only, no reverse or tangent rule)
        /// [z, c0, c]: the LSTM cell state c = σ(z_f)·c0 + σ(z_i)·tanh(z_c), z = rows × 4h (gates i o f c).
        case lstmState(rows: Extent, hidden: Int)
        /// [z, c, h]: the LSTM hidden state h = σ(z_o)·tanh(c).
        case lstmOutput(rows: Extent, hidden: Int)
        /// [g, q, h0, h]: a GRU step with linear_before_reset (g = x·Wᵀ + Wb, q = h0·Rᵀ + Rb, rows × 3h,
        /// gates z r h): z, r = σ(g + q), n = tanh(g_h + r·q_h), h = n + z·(h0 − n).
        case gruCell(rows: Extent, hidden: Int)


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
        /// [a, b, y, g, out]: out (+)= the broadcast adjoint of `broadcast(op)` for operand k (0: a, 1: b),
        /// summed over the axes k is broadcast along (out holds k's elements).
        case broadcastAdjoint(BinaryOp, operand: Int8, geometry: Int32, accumulate: Bool)
        /// [a, b, y, t, out]: out (+)= the tangent of `broadcast(op)` along operand k (t holds k's elements).
        case broadcastTangent(BinaryOp, operand: Int8, geometry: Int32, accumulate: Bool)
        /// [x, y, g, out]: out (+)= g · f'(x) (y = f(x)): a unary function's adjoint, and its tangent.
        case unaryBackward(UnaryFunction, count: Extent, accumulate: Bool)
        /// [x, lo?, hi?, g, out]: derivatives of `clip` w.r.t. x (target 0), lo (1) or hi (2); reverse
        /// (a bound's gradient is a sum) or tangent (`UnaryFunction.clipLinear`).
        case clipLinear(count: Extent, hasMin: Bool, hasMax: Bool, target: Int8, tangent: Bool, accumulate: Bool)
        /// [y, g, out]: out (+)= Jᵀ·g of `softmax` (y its output).
        case softmaxBackward(geometry: Int32, log: Bool, accumulate: Bool)
        /// [y, t, out]: out = J·t of `softmax`.
        case softmaxTangent(geometry: Int32, log: Bool)

        // MARK: family shape (reverse, tangent)
        /// [gy, gx]: gx (+)= scatter-add of gy at the gather's indices (zeroed first unless accumulating).
        case gatherBackward(geometry: Int32, accumulate: Bool)

        // MARK: family matmul-norm (reverse, tangent)
        /// [gy, b, ga]: ga (+)= the adjoint of `matMul` with respect to A (summed over broadcast axes).
        case matMulGradientA(geometry: Int32, alpha: Double, accumulate: Bool)
        /// [a, gy, gb]: gb (+)= the adjoint of `matMul` with respect to B.
        case matMulGradientB(geometry: Int32, alpha: Double, accumulate: Bool)
        /// [gy, gc]: gc (+)= beta·gy summed over C's broadcast axes.
        case matMulGradientC(geometry: Int32, beta: Double, accumulate: Bool)
        /// [c, y]: y = beta·C broadcast (the tangent of Gemm when only C has one).
        case matMulBroadcastC(geometry: Int32, beta: Double)
        /// [g, scale, out]: out (+)= g·scale[c]·inv[c].
        case batchNormInputGradient(outer: Extent, channels: Int, spatial: Extent, statistics: Int32, accumulate: Bool)
        /// [gy, x, gs]: gs[c] (+)= Σ gy·(x − mean[c])·inv[c].
        case batchNormScaleGradient(outer: Extent, channels: Int, spatial: Extent, statistics: Int32, accumulate: Bool)
        /// [gy, g]: g[c] (+)= Σ gy over outer and spatial (a bias gradient).
        case channelSums(outer: Extent, channels: Int, spatial: Extent, accumulate: Bool)
        /// [x, scale, g, out]: layer normalisation's Jacobian in x: reverse out (+)= Jᵀg, tangent out = Jg.
        case layerNormLinear(rows: Extent, cols: Int, epsilon: Double, tangent: Bool, accumulate: Bool)
        /// [x, gy, gs]: gs (+)= Σ_rows gy·x̂.
        case layerNormScaleGradient(rows: Extent, cols: Int, epsilon: Double, accumulate: Bool)

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

        // MARK: family logic (reverse, tangent)
        /// [a, b, g, out]: out (+)= the broadcast adjoint of `logic(op)` for operand k (summed over the
        /// axes k is broadcast along; out holds k's elements).
        case logicAdjoint(LogicOp, operand: Int8, geometry: Int32, accumulate: Bool)
        /// [a, b, t, out]: out (+)= the tangent of `logic(op)` along operand k (t holds k's elements).
        case logicTangent(LogicOp, operand: Int8, geometry: Int32, accumulate: Bool)
        /// [c, g, out]: out (+)= the adjoint of `select` for operand k (1: x, 2: y).
        case selectAdjoint(operand: Int8, geometry: Int32, accumulate: Bool)
        // MARK: family nd (reverse, tangent)
        /// [gy, gx]: gx (+)= the adjoint of resizeTaps.
        case resizeTapsGradient(geometry: Int32, outer: Extent, accumulate: Bool)
        /// [gcolumns, gx]: gx (+)= the adjoint of depthColumns.
        case depthColumnsGradient(geometry: Int32, batch: Extent, accumulate: Bool)
        // MARK: family reduce (reverse, tangent)
        /// [x, y, g, out]: derivatives of `reduce(f)`: reverse out (+)= g·∂y/∂x (out has x's elements),
        /// tangent out (+)= Σ ∂y/∂x·g (out has y's).
        case reduceDerivative(ReduceFunction, geometry: Int32, tangent: Bool, accumulate: Bool)
        /// [gy, out]: the adjoint of `pad`: out (+)= gy gathered back to x (`ofValue` false), or summed
        /// over the constant positions into the one-element value (`ofValue`).
        case padGradient(geometry: Int32, outer: Extent, ofValue: Bool, accumulate: Bool)

        // MARK: family constraints (steps)
        /// [y?, w, s?, out]: out[r, :] (+)= y[r, :] + w·(s[r] − w·y[r, :])/(w·w) over `rows` columns of
        /// `cols` values, w a constant [cols] or (perColumnW) one row of w per column, sums in float64
        /// (y or s left out: 0; a column with w·w = 0 keeps y). Forward, the tangent in (y, s), and with
        /// neither s nor accumulate the adjoint of y (the projection is symmetric).
        case columnProjection(rows: Extent, cols: Int, hasY: Bool, hasS: Bool, accumulate: Bool, perColumnW: Bool)
        /// [g, w, out]: out[r] (+)= w·g[r, :]/(w·w): the adjoint of `columnProjection` for s.
        case columnProjectionTarget(rows: Extent, cols: Int, accumulate: Bool, perColumnW: Bool)
        /// The projection's derivative in a per-column w, [y, w, s, g, out]: mode 0 the adjoint (g the
        /// seed, out (+)= gᵀ∂y'/∂w), mode 1 the tangent (g = ẇ, out (+)= (∂y'/∂w)·ẇ).
        case columnProjectionWeights(rows: Extent, cols: Int, mode: Int8, accumulate: Bool)
        /// The mass fixer for a constant w (sums in float64): mode 0 forward [y, w, out]; mode 1
        /// reverse [y, w, g, out] (out (+)= gᵀ∂y'/∂y); mode 2 tangent [y, w, t, out].
        case massFixer(rows: Extent, cols: Int, mode: Int8, accumulate: Bool)

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
        /// The k-th constant, a [out, in] weight, re-laid out for `packedDense` once per Float executor
        /// (`Kernels.packDenseWeights`; a Double executor sees the constant itself).
        case packed(Int)
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

        /// The elements a call at batch n claims: the work space and the outputs (the caller's arrays,
        /// filled by the plan), which the memory limits bound together; nil when it overflows.
        public func claimedElements(at n: Int) -> Int? {
            guard var total = arenaSize.checked(at: n) else { return nil }
            for o in outputSizes {
                guard let k = o.checked(at: n) else { return nil }
                let (sum, overflow) = total.addingReportingOverflow(k)
                if overflow { return nil }
                total = sum
            }
            return total
        }
    }
}
