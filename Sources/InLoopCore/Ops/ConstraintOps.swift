/// Hard physical constraints as ops (issue 15, item 1), in InLoop's op domain ("inloop", so native
/// v2 files store them; the ONNX front end still reads default-domain operators only, so an ONNX file
/// cannot name them yet: attach them to a loaded ONNX model instead). Each acts on the last axis of y
/// (a column of K levels; every leading axis, the batch among them, is a column index) and is
/// composed of existing steps (broadcast, reduce, activation, clip, logic, fill; the constant-w
/// projection is one fused step of its own), so it is generic over Float/Double, allocates nothing
/// when run, and its vjp and jvp are the steps' rules (`Compiler/Differentiation.swift`): trainable,
/// with the loss gradient flowing through it.
///
/// - `ConservationProjection(y, w, s)`: y' = y + w·(s − w·y)/(w·w), so that w·y' = s to round-off.
///   w is [K] (a constant such as layer masses Δp/g, or any value) or y's shape (per-column weights);
///   s is y's shape with the last axis 1, or without it. A constant [K] w runs one fused step
///   (`columnProjection`: sums in float64, one rounding per value, then in float32 the rounding's
///   residual put on the level of largest |w| (`settle`), so w·y' = s to ~1e-7 relative; its adjoint and tangent are the same projection, the
///   projection being linear in y and s and symmetric). A constant w with w·w = 0 (or not finite) is
///   INVALID_ARGUMENT when the plan is compiled (at load). A per-column w (y's shape, given or
///   computed at run time) runs the same fused step with one w row per column and its own derivative
///   in w (`columnProjectionWeights`); a column whose w·w is 0 is left unchanged (no direction to
///   project along). Only a [K] w computed at run time (or columns of unknown length) runs composed
///   steps in the compute type (float32 sums: a few 1e-6 relative in float32).
/// - `Bounds(y)`, attributes `lo`, `hi` (either optional, not both absent, lo < hi, finite) and
///   `form`: "clamp" (default) is min(max(y, lo), hi), gradient 1 strictly inside, 0 outside;
///   "softplus" is smooth: lo + softplus(y − lo) with lo only (positivity for lo = 0),
///   hi − softplus(hi − y) with hi only, and lo + softplus(y − lo) − softplus(y − hi) with both
///   (monotone, from lo at −∞ to hi at +∞, close to y well inside the range; in [lo, hi] up to rounding).
/// - `MassFixer(y, w)`: removes negative values and redistributes the deficit over the positive ones,
///   proportionally to their w-weighted mass, so that the column integral T = w·y is unchanged:
///   with p = max(y, 0) and P = w·p, y' = p·max(T, 0)/P. So y' ≥ 0 and w·y' = T whenever T ≥ 0; a
///   column without negative values is returned bit for bit (P = T). A column whose total T is
///   negative (no non-negative field has that integral) becomes 0, and a column with P = 0 becomes 0.
///   Differentiable almost everywhere (away from y_k = 0 and T = 0): the derivative of the piecewise
///   rule. A constant [K] w runs one fused step (`massFixer`: sums in float64, its reverse and tangent
///   written out in `ConstraintKernels.massFixer`), so T is kept to the rounding of y'; a w given at
///   run time runs composed steps (relu, reductions, a division) in the compute type. w must be
///   non-negative: a constant w with a negative or non-finite value, or all zero, is INVALID_ARGUMENT
///   at load.

public enum ConservationProjectionOp: OpDefinition {
    public static let name = "ConservationProjection"
    public static let domain = "inloop"
    public static let inputArity: ClosedRange<Int> = 3...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        try ConstraintShapes.noAttributes(raw, name)
        return NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let y = try ConstraintShapes.field(inputs)
        try ConstraintShapes.weights(inputs, y)
        let s = try Engine.input(inputs, 2, "target s")
        let lead = Array(y.shape.dropLast())
        guard s.dtype == y.dtype, s.shape == lead + [1] || s.shape == lead else {
            throw InLoopError(.sizeMismatch, "target s is \(s); it must be \(y.dtype)\((lead + [1]).formatted) or \(y.dtype)\(lead.formatted) (y is \(y))")
        }
        return [y]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        typealias V = StepComposer.Value
        let yt = try Engine.input(ctx.inputTypes, 0), wt = try Engine.input(ctx.inputTypes, 1)
        let last = yt.rank - 1
        let y = V(id: try ctx.input(0), shape: yt.shape), w = V(id: try ctx.input(1), shape: wt.shape)
        let s = V(id: try ctx.input(2), shape: Array(yt.shape.dropLast()) + [1])   // [..] and [.., 1] are the same memory
        if let values = try ctx.constantDoubles(1)?.values, wt.rank == 1, let cols = yt.shape[last].known {
            var ww = 0.0
            for v in values { ww += v * v }
            guard ww > 0, ww.isFinite else {
                throw InLoopError(.invalidArgument, "ConservationProjection: w·w = \(ww); the weights must be finite and not all zero")
            }
            // the fused step: sums in float64, one rounding per value
            let rows = try ctx.extent(Array(yt.shape.dropLast()), "the columns")
            ctx.emit(.columnProjection(rows: rows, cols: cols, hasY: true, hasS: true, accumulate: false, perColumnW: false),
                     [y.id, w.id, s.id, try ctx.output(0)])
            return
        }
        if wt.rank == yt.rank, let cols = yt.shape[last].known {
            // w per column, given or computed at run time: the fused step too (float64 sums), with its
            // derivative in w
            let rows = try ctx.extent(Array(yt.shape.dropLast()), "the columns")
            ctx.emit(.columnProjection(rows: rows, cols: cols, hasY: true, hasS: true, accumulate: false, perColumnW: true),
                     [y.id, w.id, s.id, try ctx.output(0)])
            return
        }
        // a [K] w computed at run time, or columns of unknown length: composed steps in the compute type
        let wy = try StepComposer.sum(&ctx, try StepComposer.binary(&ctx, .mul, y, w), axis: last)
        let deficit = try StepComposer.binary(&ctx, .sub, s, wy)
        let ww = try StepComposer.sum(&ctx, try StepComposer.binary(&ctx, .mul, w, w), axis: wt.rank - 1)
        let c = try StepComposer.binary(&ctx, .div, deficit, try StepComposer.nonZero(&ctx, ww))
        _ = try StepComposer.binary(&ctx, .add, y, try StepComposer.binary(&ctx, .mul, c, w), output: try ctx.output(0))
    }
}

public enum BoundsOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var lo: Double?
        public var hi: Double?
        public var softplus: Bool
        public func encoded() -> [String: Engine.AttributeValue] {
            var e: [String: Engine.AttributeValue] = ["form": .string(softplus ? "softplus" : "clamp")]
            if let lo { e["lo"] = .float(lo) }
            if let hi { e["hi"] = .float(hi) }
            return e
        }
    }
    public static let name = "Bounds"
    public static let domain = "inloop"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        for k in raw.keys where !["lo", "hi", "form"].contains(k) {
            throw InLoopError(.format, "Bounds: unknown attribute '\(k)' (lo, hi, form)")
        }
        let lo = try raw.float("lo"), hi = try raw.float("hi")
        let form = try raw.string("form") ?? "clamp"
        guard form == "clamp" || form == "softplus" else {
            throw InLoopError(.format, "Bounds: form '\(form)'; it must be 'clamp' or 'softplus'")
        }
        guard lo != nil || hi != nil else { throw InLoopError(.format, "Bounds needs lo, hi or both") }
        for (n, v) in [("lo", lo), ("hi", hi)] {
            if let v, !v.isFinite || abs(v) > Double(Float.greatestFiniteMagnitude) {
                throw InLoopError(.format, "Bounds: \(n) is \(v); it must be a finite float32 value")
            }
        }
        if let lo, let hi, !(lo < hi) { throw InLoopError(.format, "Bounds: lo \(lo) must be below hi \(hi)") }
        return Attributes(lo: lo, hi: hi, softplus: form == "softplus")
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let y = try Engine.input(inputs, 0)
        guard y.dtype.isFloatingPoint else { throw InLoopError(.format, "Bounds takes floating values, got \(y.dtype)") }
        return [y]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        typealias V = StepComposer.Value
        let yt = try Engine.input(ctx.inputTypes, 0)
        let y = V(id: try ctx.input(0), shape: yt.shape)
        let count = try ctx.inputExtent(0)
        if !a.softplus {
            var operands = [y.id]
            if let lo = a.lo { operands.append(StepComposer.scalar(&ctx, lo).id) }
            if let hi = a.hi { operands.append(StepComposer.scalar(&ctx, hi).id) }
            ctx.emit(.clip(count: count, hasMin: a.lo != nil, hasMax: a.hi != nil), operands + [try ctx.output(0)])
            return
        }
        func softplus(_ x: V) -> V {
            let out = ctx.temporary(count)
            ctx.emit(.activation(.softplus, count: count), [x.id, out])
            return V(id: out, shape: x.shape)
        }
        switch (a.lo, a.hi) {
        case (let lo?, nil):
            let l = StepComposer.scalar(&ctx, lo)
            let up = softplus(try StepComposer.binary(&ctx, .sub, y, l))
            _ = try StepComposer.binary(&ctx, .add, up, l, output: try ctx.output(0))
        case (nil, let hi?):
            let h = StepComposer.scalar(&ctx, hi)
            let down = softplus(try StepComposer.binary(&ctx, .sub, h, y))
            _ = try StepComposer.binary(&ctx, .sub, h, down, output: try ctx.output(0))
        case (let lo?, let hi?):
            let l = StepComposer.scalar(&ctx, lo), h = StepComposer.scalar(&ctx, hi)
            let up = softplus(try StepComposer.binary(&ctx, .sub, y, l))
            let over = softplus(try StepComposer.binary(&ctx, .sub, y, h))
            _ = try StepComposer.binary(&ctx, .add, try StepComposer.binary(&ctx, .sub, up, over), l, output: try ctx.output(0))
        case (nil, nil):
            throw InLoopError(.internal, "Bounds without lo and hi")
        }
    }
}

public enum MassFixerOp: OpDefinition {
    public static let name = "MassFixer"
    public static let domain = "inloop"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        try ConstraintShapes.noAttributes(raw, name)
        return NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let y = try ConstraintShapes.field(inputs)
        try ConstraintShapes.weights(inputs, y)
        return [y]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        typealias V = StepComposer.Value
        let yt = try Engine.input(ctx.inputTypes, 0), wt = try Engine.input(ctx.inputTypes, 1)
        if let values = try ctx.constantDoubles(1)?.values {
            guard values.allSatisfy({ $0.isFinite && $0 >= 0 }), values.contains(where: { $0 > 0 }) else {
                throw InLoopError(.invalidArgument, "MassFixer: the weights must be finite, non-negative and not all zero")
            }
            if wt.rank == 1, let cols = yt.shape[yt.rank - 1].known {
                // the fused step: sums in float64 (the integral kept to the rounding of y')
                let rows = try ctx.extent(Array(yt.shape.dropLast()), "the columns")
                ctx.emit(.massFixer(rows: rows, cols: cols, mode: 0, accumulate: false), [try ctx.input(0), try ctx.input(1), try ctx.output(0)])
                return
            }
        }
        let last = yt.rank - 1
        let y = V(id: try ctx.input(0), shape: yt.shape), w = V(id: try ctx.input(1), shape: wt.shape)
        let count = try ctx.inputExtent(0)
        let positive = V(id: ctx.temporary(count), shape: yt.shape)
        ctx.emit(.activation(.relu, count: count), [y.id, positive.id])
        let mass = try StepComposer.sum(&ctx, try StepComposer.binary(&ctx, .mul, positive, w), axis: last)
        let total = try StepComposer.sum(&ctx, try StepComposer.binary(&ctx, .mul, y, w), axis: last)
        let kept = V(id: ctx.temporary(try ctx.extent(total.shape)), shape: total.shape)
        ctx.emit(.activation(.relu, count: try ctx.extent(total.shape)), [total.id, kept.id])
        let ratio = try StepComposer.binary(&ctx, .div, kept, try StepComposer.nonZero(&ctx, mass))
        _ = try StepComposer.binary(&ctx, .mul, positive, ratio, output: try ctx.output(0))
    }
}

/// Shape rules the constraint ops share.
enum ConstraintShapes {
    static func noAttributes(_ raw: [String: Engine.AttributeValue], _ op: String) throws(InLoopError) {
        if let k = raw.keys.sorted().first { throw InLoopError(.format, "\(op): unknown attribute '\(k)' (it takes none)") }
    }

    /// y: floating, rank ≥ 1 (its last axis holds a column).
    static func field(_ inputs: [Engine.TensorType?]) throws(InLoopError) -> Engine.TensorType {
        let y = try Engine.input(inputs, 0, "field y")
        guard y.dtype.isFloatingPoint, y.rank >= 1 else {
            throw InLoopError(.format, "field y is \(y); it must be floating with at least one axis")
        }
        return y
    }

    /// w: y's type, shape [K] or y's shape.
    static func weights(_ inputs: [Engine.TensorType?], _ y: Engine.TensorType) throws(InLoopError) {
        let w = try Engine.input(inputs, 1, "weights w")
        guard let k = y.shape.last, w.dtype == y.dtype, w.shape == [k] || w.shape == y.shape else {
            throw InLoopError(.sizeMismatch, "weights w are \(w); they must be \(y.dtype)[\(y.shape.last?.description ?? "?")] or \(y) (y is \(y))")
        }
    }
}

extension StepComposer {
    /// The sum of x over `axis`, keeping it as 1.
    static func sum(_ ctx: inout Engine.LoweringContext, _ x: Value, axis: Int) throws(InLoopError) -> Value {
        let shape = Engine.reducedShape(x.shape, axes: [axis], keepDims: true)
        let y = ctx.temporary(try ctx.extent(shape, "a sum"))
        try Engine.lowerReduction(&ctx, x: x.id, shape: x.shape, axes: [axis], first: .sum, combine: .sum, final: nil, output: y)
        return Value(id: y, shape: shape)
    }

    /// x where x ≠ 0, 1 where x = 0 (x + (x == 0)): a divisor that leaves the nonzero values' bits
    /// alone; no derivative flows through the correction.
    static func nonZero(_ ctx: inout Engine.LoweringContext, _ x: Value) throws(InLoopError) -> Value {
        let zero = scalar(&ctx, 0)
        let flag = ctx.temporary(try ctx.extent(x.shape, "a flag"))
        let layout = try Engine.BroadcastLayout.encode(x.shape, zero.shape, x.shape, batch: ctx.builder.graph.batch)
        ctx.emit(.logic(.equal, geometry: ctx.ints(layout)), [x.id, zero.id, flag])
        return try binary(&ctx, .add, x, Value(id: flag, shape: x.shape))
    }
}

// MARK: - Attaching constraints to a graph

/// A hard constraint on one graph output, as declared in a trainer configuration (`constraints:`) or
/// attached to a loaded model (`inloop_model_add_constraint_*`).
public enum ConstraintSpec: Equatable, Sendable {
    /// Where the conservation target s comes from.
    public enum Target: Equatable, Sendable {
        /// A new graph input (the output's leading shape, then 1), appended after the existing ones.
        case input
        /// Feature k (0-based) of graph input 0, which must be [batch, n] (so the model keeps one
        /// input and can be trained).
        case feature(Int)
    }

    /// `weights` nil: w is a new graph input of the output's shape, after the target input if any.
    case conservation(weights: [Double]?, target: Target)
    case bounds(lo: Double?, hi: Double?, softplus: Bool)
    case massFixer(weights: [Double])
}

extension Engine.Graph {
    /// Applies `c` to graph output `output` (0-based): the output's producer now writes a value named
    /// `<name>.unconstrained` and a constraint node writes the output, which keeps its name. New graph
    /// inputs (a conservation target or weights given at run time) are appended to `inputs`; their
    /// names are returned. The graph stops being a layer stack (it is saved as native v2). Type-checks
    /// the result; the graph is unchanged when an argument is wrong.
    @discardableResult
    public func addConstraint(_ c: ConstraintSpec, output: Int) throws(InLoopError) -> [String] {
        guard output >= 0, output < outputs.count else {
            throw InLoopError(.invalidArgument, "output index \(output) out of range; the graph has \(outputs.count) output\(outputs.count == 1 ? "" : "s")")
        }
        let y = outputs[output]
        let yName = self[y].name
        guard let yt = self[y].type, yt.dtype.isFloatingPoint, yt.rank >= 1 else {
            throw InLoopError(.unsupported, "output '\(yName)' is \(self[y].type?.description ?? "untyped"); a constraint needs a floating output with at least one axis")
        }
        let k = yt.shape.last?.known
        func constantWeights(_ w: [Double], _ what: String) throws(InLoopError) -> Engine.Tensor {
            guard let k, w.count == k else {
                throw InLoopError(.sizeMismatch, "\(what): \(w.count) weights for output '\(yName)' of shape \(yt.shape.formatted) (the last axis must be \(k.map(String.init) ?? "known"))")
            }
            guard w.allSatisfy({ $0.isFinite && abs($0) <= Double(Float.greatestFiniteMagnitude) }) else {
                throw InLoopError(.invalidArgument, "\(what): a weight is not finite (or beyond float32)")
            }
            return dtype == .float64 ? try Engine.Tensor(shape: [k], values: w) : try Engine.Tensor(shape: [k], values: w.map { Float($0) })
        }
        // Check every argument before changing the graph.
        let lead = Array(yt.shape.dropLast())
        var weights: Engine.Tensor? = nil
        var op: any OpDefinition.Type = BoundsOp.self
        var raw: [String: Engine.AttributeValue] = [:]
        var featureOf: (input: Engine.ValueID, index: Int)? = nil
        switch c {
        case .conservation(let w, let target):
            op = ConservationProjectionOp.self
            if let w {
                weights = try constantWeights(w, "conservation")
                guard w.reduce(0, { $0 + $1 * $1 }) > 0 else {
                    throw InLoopError(.invalidArgument, "conservation: w·w = 0 (all weights zero); there is no direction to project along")
                }
            }
            if case .feature(let j) = target {
                guard let x = inputs.first, let xt = self[x].type, xt.rank == 2, xt.dtype == yt.dtype, let n = xt.shape[1].known else {
                    throw InLoopError(.unsupported, "conservation target feature: input 0 must be a [batch, n] \(yt.dtype) array")
                }
                guard j >= 0, j < n else { throw InLoopError(.invalidArgument, "conservation target feature \(j) out of range; input 0 has \(n) features (0...\(n - 1))") }
                guard lead == [xt.shape[0]] else {
                    throw InLoopError(.sizeMismatch, "conservation target feature: output '\(yName)' \(yt.shape.formatted) and input 0 \(xt.shape.formatted) do not lead with the same columns")
                }
                featureOf = (x, j)
            }
        case .bounds(let lo, let hi, let softplus):
            raw["form"] = .string(softplus ? "softplus" : "clamp")
            if let lo { raw["lo"] = .float(lo) }
            if let hi { raw["hi"] = .float(hi) }
            _ = try BoundsOp.parse(raw, opset: opset)
        case .massFixer(let w):
            op = MassFixerOp.self
            weights = try constantWeights(w, "mass fixer")
            guard w.allSatisfy({ $0 >= 0 }), w.contains(where: { $0 > 0 }) else {
                throw InLoopError(.invalidArgument, "mass fixer: the weights must be non-negative and not all zero")
            }
        }
        // Edit a copy, then take its state (so a failure leaves this graph as it was).
        let g = try copy()
        func unique(_ base: String) -> String {
            var name = base, i = 1
            while g.names[name] != nil { name = "\(base)_\(i)"; i += 1 }
            return name
        }
        let inner = unique(yName + ".unconstrained")
        g.values[y.index].name = inner
        g.renameEntry(yName, inner, y)
        var operands = [inner]
        var added: [String] = []
        if let weights {
            let name = unique(yName + ".constraint_weights")
            try g.addConstant(name, weights)
            operands.append(name)
        }
        var tail: [String] = []
        if case .conservation(let w, let target) = c {
            if let (x, j) = featureOf {
                // a default-domain node (Gather, opset 1 on) in a graph not from ONNX (opset 0): name
                // an opset, so that a native v2 file of it reads back
                if g.opset < 1 { g.opset = 1 }
                let index = unique(yName + ".target_index")
                try g.addConstant(index, try Engine.Tensor(shape: [1], values: [Int64(j)]))
                let s = unique(yName + ".target")
                try g.addNode(unique(yName + ".target_gather"), GatherOp.self, ["axis": .int(1)], inputs: [g[x].name, index], outputs: [s])
                tail = [s]
            } else {
                let s = unique(yName + "_target")
                try g.addInput(s, Engine.TensorType(yt.dtype, lead + [1]))
                added.append(s)
                tail = [s]
            }
            if w == nil {
                let name = unique(yName + "_weights")
                try g.addInput(name, Engine.TensorType(yt.dtype, yt.shape))
                added.append(name)
                operands.append(name)
            }
            _ = target
        }
        let nodeName = unique(yName + "." + op.name)
        let out = try g.addNode(nodeName, op, raw, inputs: operands + tail, outputs: [yName])
        g.outputs[output] = out[0]
        g.layerSpecs = nil
        try g.verify()
        try g.inferTypes()
        // take the edited state
        values = g.values; nodes = g.nodes; inputs = g.inputs; outputs = g.outputs
        names = g.names; layerSpecs = nil; pending = g.pending; symbols = g.symbols; opset = g.opset
        return added
    }
}

// MARK: - Kernels

/// The fused conservation projection for a constant w (`StepKind.columnProjection`): every sum in
/// float64 and one rounding per output value, so w·y' = s holds to the rounding of y' itself
/// (float32: ~1e-7 relative for 30 levels instead of the few 1e-6 of float32 sums). No allocation.
enum ConstraintKernels {
    /// out[r, :] (+)= y[r, :] + w·(s[r] − w·y[r, :])/(w·w) (y or s nil: 0). w·w = 0 leaves y (not
    /// reached: the op refuses such a constant when it is compiled).
    @inlinable
    static func project<T: Real>(y: UnsafePointer<T>?, w: UnsafePointer<T>, s: UnsafePointer<T>?, out: UnsafeMutablePointer<T>,
                                 rows: Int, cols: Int, wStride: Int, accumulate: Bool) {
        var inv = wStride == 0 ? inverseSquare(w, cols) : 0   // per column: computed in the loop
        for r in 0..<rows {
            let row = r * cols, wr = w + r * wStride
            if wStride != 0 { inv = inverseSquare(wr, cols) }
            var wy = 0.0
            if let y { for j in 0..<cols { wy += Double(wr[j]) * Double(y[row + j]) } }
            let c = ((s.map { Double($0[r]) } ?? 0) - wy) * inv
            for j in 0..<cols {
                let v = (y.map { Double($0[row + j]) } ?? 0) + Double(wr[j]) * c
                out[row + j] = accumulate ? out[row + j] + T(v) : T(v)
            }
            if T.self == Float.self, y != nil, let s, !accumulate, inv > 0 {
                settle(out + row, wr, s[r], cols)
            }
        }
    }

    /// Float32 storage rounds each value of y' (~6e-8 relative), so w·y' misses s by the rounding of
    /// Σ w_k·y'_k, which for columns with large, mixed-sign terms exceeds 1e-6 of s. The residual
    /// s − w·y' (float64) goes onto the level with the largest |w| (the first of equals), which leaves
    /// only that one value's rounding. A rounding correction: no derivative flows through it.
    @inlinable
    static func settle<T: Real>(_ y: UnsafeMutablePointer<T>, _ w: UnsafePointer<T>, _ s: T, _ cols: Int) {
        var m = 0, wy = 0.0
        for j in 0..<cols {
            wy += Double(w[j]) * Double(y[j])
            if abs(w[j]) > abs(w[m]) { m = j }
        }
        let r = Double(s) - wy
        guard r.isFinite, r != 0, w[m] != 0 else { return }
        y[m] = T(Double(y[m]) + r / Double(w[m]))
    }

    /// 1/(w·w) over `cols` values (sum in float64), 0 when w·w is 0.
    @inlinable
    static func inverseSquare<T: Real>(_ w: UnsafePointer<T>, _ cols: Int) -> Double {
        var ww = 0.0
        for j in 0..<cols { let v = Double(w[j]); ww += v * v }
        return ww > 0 ? 1 / ww : 0
    }

    /// The derivative of y' = y + w·c, c = (s − w·y)/(w·w), in a per-column w (sums in float64; a
    /// column with w·w = 0, which keeps y, has none). With ∂c/∂w_j = −(y_j + 2c·w_j)/(w·w):
    /// mode 0 (adjoint, g the seed): out_j (+)= g_j·c − (w·g)(y_j + 2c·w_j)/(w·w);
    /// mode 1 (tangent, g = ẇ): out_k (+)= ẇ_k·c − w_k·(ẇ·y + 2c·w·ẇ)/(w·w).
    @inlinable
    static func projectionWeights<T: Real>(y: UnsafePointer<T>, w: UnsafePointer<T>, s: UnsafePointer<T>, g: UnsafePointer<T>,
                                           out: UnsafeMutablePointer<T>, rows: Int, cols: Int, mode: Int8, accumulate: Bool) {
        for r in 0..<rows {
            let row = r * cols
            let inv = inverseSquare(w + row, cols)
            var wy = 0.0
            for j in 0..<cols { wy += Double(w[row + j]) * Double(y[row + j]) }
            let c = (Double(s[r]) - wy) * inv
            if mode == 0 {
                var wg = 0.0
                for j in 0..<cols { wg += Double(w[row + j]) * Double(g[row + j]) }
                for j in 0..<cols {
                    let v = Double(g[row + j]) * c - wg * (Double(y[row + j]) + 2 * c * Double(w[row + j])) * inv
                    out[row + j] = accumulate ? out[row + j] + T(v) : T(v)
                }
            } else {
                var gy = 0.0, wg = 0.0
                for j in 0..<cols {
                    gy += Double(g[row + j]) * Double(y[row + j])
                    wg += Double(w[row + j]) * Double(g[row + j])
                }
                let dc = -(gy + 2 * c * wg) * inv
                for k in 0..<cols {
                    let v = Double(g[row + k]) * c + Double(w[row + k]) * dc
                    out[row + k] = accumulate ? out[row + k] + T(v) : T(v)
                }
            }
        }
    }

    /// The mass fixer's rule per column (P = w·max(y, 0), T = w·y, r = max(T, 0)/P, 0 when P = 0), sums
    /// in float64. Mode 0: out = max(y, 0)·r. Mode 1 (reverse, g the seed): out_k (+)= 1[y_k > 0]·r·g_k
    /// + w_k·(1[T > 0] − r·1[y_k > 0])/P · Σ_j g_j·max(y_j, 0). Mode 2 (tangent of g): out_j =
    /// 1[y_j > 0]·r·g_j + max(y_j, 0)/P · Σ_k w_k·(1[T > 0] − r·1[y_k > 0])·g_k.
    @inlinable
    static func massFixer<T: Real>(y: UnsafePointer<T>, w: UnsafePointer<T>, g: UnsafePointer<T>?, out: UnsafeMutablePointer<T>,
                                   rows: Int, cols: Int, mode: Int8, accumulate: Bool) {
        for r in 0..<rows {
            let row = r * cols
            var p = 0.0, total = 0.0
            for j in 0..<cols {
                let v = Double(y[row + j]), wj = Double(w[j])
                total += wj * v
                if v > 0 { p += wj * v }
            }
            let ratio = p > 0 ? Swift.max(total, 0) / p : 0
            let above: Double = total > 0 ? 1 : 0
            switch (mode, g) {
            case (1, let g?):
                var gp = 0.0
                for j in 0..<cols where y[row + j] > 0 { gp += Double(g[row + j]) * Double(y[row + j]) }
                for k in 0..<cols {
                    let pos = y[row + k] > 0
                    var v = pos ? ratio * Double(g[row + k]) : 0
                    if p > 0 { v += Double(w[k]) * (above - (pos ? ratio : 0)) / p * gp }
                    out[row + k] = accumulate ? out[row + k] + T(v) : T(v)
                }
            case (2, let g?):
                var s = 0.0
                for k in 0..<cols { s += Double(w[k]) * (above - (y[row + k] > 0 ? ratio : 0)) * Double(g[row + k]) }
                for j in 0..<cols {
                    let v = Double(y[row + j])
                    var d = v > 0 ? ratio * Double(g[row + j]) : 0
                    if p > 0, v > 0 { d += v / p * s }
                    out[row + j] = accumulate ? out[row + j] + T(d) : T(d)
                }
            default:
                for j in 0..<cols {
                    let v = Double(y[row + j])
                    let d = v > 0 ? v * ratio : 0
                    out[row + j] = accumulate ? out[row + j] + T(d) : T(d)
                }
            }
        }
    }

    /// out[r] (+)= w·g[r, :]/(w·w).
    @inlinable
    static func targetAdjoint<T: Real>(g: UnsafePointer<T>, w: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                       rows: Int, cols: Int, wStride: Int, accumulate: Bool) {
        var inv = wStride == 0 ? inverseSquare(w, cols) : 0   // per column: computed in the loop
        for r in 0..<rows {
            let wr = w + r * wStride
            if wStride != 0 { inv = inverseSquare(wr, cols) }
            var wg = 0.0
            for j in 0..<cols { wg += Double(wr[j]) * Double(g[r * cols + j]) }
            let v = T(wg * inv)
            out[r] = accumulate ? out[r] + v : v
        }
    }
}
