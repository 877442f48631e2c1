/// Layout ops that move data (Transpose, Slice, Split; Concat and Gather are in `ShapeOps.swift`) and
/// the ones that only rename it (Flatten, Squeeze, Dropout at inference). Data moves through one
/// strided-copy step (`.layoutCopy`, `Kernels/Layout.swift`) whose geometry is stored in `Plan.ints` as
/// (perBatch, fixed) pairs: the batch may sit on any axis, and may move (a transpose of the batch axis).

extension Engine {
    /// Geometry of `.layoutCopy` steps (format: `TensorOps.layoutCopyStep`).
    enum Layout {
        static let header = 8

        /// Row-major strides of a shape, as symbolic integers (nil entries never: not linear throws).
        static func strides(_ shape: Shape) throws(InLoopError) -> [SymInt] {
            var out = [SymInt](repeating: 1, count: shape.count)
            var acc: SymInt = 1
            var i = shape.count - 1
            while i > 0 {
                acc = try Engine.linear(acc * shape[i], "the strides of \(shape.formatted)")
                out[i - 1] = acc
                i -= 1
            }
            return out
        }

        /// y (contiguous, of shape `dims`) = x[xBase + Σ i_d·xStrides_d]: the forward geometry.
        static func gatherGeometry(_ ctx: LoweringContext, dims: [SymInt], xStrides: [SymInt], xBase: SymInt,
                                   coversSource: Bool) throws(InLoopError) -> [Int] {
            try encode(ctx, dims: dims, xStrides: xStrides, xBase: xBase, yStrides: try strides(dims), yBase: 0,
                       coversSource: coversSource)
        }

        static func encode(_ ctx: LoweringContext, dims: [SymInt], xStrides: [SymInt], xBase: SymInt, yStrides: [SymInt], yBase: SymInt,
                           coversSource: Bool) throws(InLoopError) -> [Int] {
            guard dims.count <= maxRank else { throw InLoopError(.unsupported, "rank \(dims.count); InLoop takes ranks up to \(maxRank)") }
            func pair(_ s: SymInt) throws(InLoopError) -> [Int] {
                let e = try ctx.extent([s], "a layout stride")
                return [e.perBatch, e.fixed]
            }
            var g = [dims.count, coversSource ? 1 : 0] + (try pair(xBase)) + (try pair(yBase)) + [0, 0]
            for a in dims.indices { g += try pair(dims[a]) + (try pair(xStrides[a])) + (try pair(yStrides[a])) }
            return g
        }

        static func coversSource(_ ints: [Int], _ g: Int32) -> Bool { ints[Int(g) + 1] != 0 }

        /// The adjoint's geometry: source and destination swapped; `zeroCount` elements of the new
        /// destination are zeroed first when the step's mode says so.
        static func reversed(_ ints: [Int], _ g: Int32, zeroCount: Extent) -> [Int] {
            let o = Int(g), r = ints[o]
            var out = Array(ints[o ..< o + header + 6 * r])
            out.swapAt(2, 4); out.swapAt(3, 5)
            out[6] = zeroCount.perBatch; out[7] = zeroCount.fixed
            for a in 0..<r {
                let k = header + 6 * a
                out.swapAt(k + 2, k + 4); out.swapAt(k + 3, k + 5)
            }
            return out
        }

        /// The geometry (its offset in `Plan.ints`) of input `part`'s slice of a concat's output.
        static func concatSlice(_ ints: [Int], _ g: Int32, part i: Int) -> Int32 { Int32(truncatingIfNeeded: ints[Int(g) + 6 + 3 * i + 2]) }

        /// Emits y = x through the forward geometry (no step when x is y's storage already).
        static func emitCopy(_ ctx: inout LoweringContext, input: Int, output: Int, dims: [SymInt], xStrides: [SymInt],
                             xBase: SymInt) throws(InLoopError) {
            let covers = try ctx.outputExtent(output) == ctx.inputExtent(input)
            let geometry = try gatherGeometry(ctx, dims: dims, xStrides: xStrides, xBase: xBase, coversSource: covers)
            if let (dtype, x) = try ctx.constantDoubles(input), var y = ctx.foldBuffer(try ctx.outputExtent(output).fixed) {
                // a constant in, a constant out: the same kernel, now
                geometry.withUnsafeBufferPointer { g in
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            if let gb = g.baseAddress, let xb = xp.baseAddress, let yb = yp.baseAddress {
                                TensorOps.layoutCopyStep(xb, yb, geometry: gb, n: 0, mode: .write)
                            }
                        }
                    }
                }
                try ctx.fold(output: output, dtype: dtype, y)
                return
            }
            ctx.unfold(output: output)
            ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [try ctx.input(input), try ctx.output(output)])
        }
    }

    /// max(a, b) / min(a, b) for every batch size n ≥ 1 when the order of a and b does not change with
    /// n (two linear forms; checked at n = 1 and for large n); else not linear.
    static func symmetricChoice(_ a: SymInt, _ b: SymInt, larger: Bool, _ what: @autoclosure () -> String) throws(InLoopError) -> SymInt {
        if let x = a.known, let y = b.known { return SymInt(larger ? Swift.max(x, y) : Swift.min(x, y)) }
        guard let d = a - b, let lo = d.value(at: 1), let hi = d.value(at: 1 << 31) else { throw notLinear(what()) }
        if lo >= 0 && hi >= 0 { return larger ? a : b }
        if lo <= 0 && hi <= 0 { return larger ? b : a }
        throw notLinear(what())
    }

    /// The list of a known integer input (nil when the input is absent); an error when it is present
    /// but not known at compile time, or symbolic.
    static func knownList(_ inputs: [TensorType?], _ known: [KnownInts?], _ k: Int, _ what: String) throws(InLoopError) -> [Int]? {
        guard k < inputs.count, inputs[k] != nil else { return nil }
        guard k < known.count, let kn = known[k] else {
            throw InLoopError(.unsupported, "\(what) must be known when the model is compiled (a constant or computed from shapes)")
        }
        var out: [Int] = []
        for v in kn.values {
            guard let i = v.known else { throw InLoopError(.unsupported, "\(what) \(kn.values.formatted) depends on a symbolic dimension") }
            out.append(i)
        }
        return out
    }

    /// Distinct axes of a rank-`rank` tensor, normalised.
    static func axes(_ list: [Int], rank: Int, _ what: String = "axes") throws(InLoopError) -> [Int] {
        var out: [Int] = []
        for v in list {
            let k = try axis(v, rank: rank, what)
            guard !out.contains(k) else { throw InLoopError(.format, "\(what) \(InLoopCore.Tensor.format(list)) repeat axis \(v)") }
            out.append(k)
        }
        return out
    }
}

extension Engine.LoweringContext {
    /// The compile-time integer elements of input k, if any.
    func knownInput(_ k: Int) -> Engine.KnownInts? {
        guard k < node.inputs.count, let v = node.inputs[k] else { return nil }
        return builder.graph[v].known
    }

    /// Whether input k is a constant that is not trained (a parameter of a differentiable plan is not).
    func isFoldable(_ k: Int) -> Bool {
        guard k < node.inputs.count, let v = node.inputs[k], builder.graph[v].constant != nil else { return false }
        return builder.parameterOffset[v] == nil
    }

    /// Output k is a constant computed at compile time (float results of constant inputs).
    func fold(output k: Int, _ t: Engine.Tensor) {
        builder.graph[node.outputs[k]].constant = t
    }

    /// Output k is computed by steps: a constant left by an earlier compile (when its inputs were
    /// constants, e.g. parameters of an inference plan) is dropped.
    func unfold(output k: Int) {
        builder.graph[node.outputs[k]].constant = nil
    }

    /// The elements of input k, widened to Double, when it is a float constant that may be folded.
    func constantDoubles(_ k: Int) throws(InLoopError) -> (dtype: Engine.DType, values: [Double])? {
        guard isFoldable(k), let v = node.inputs[k], let t = builder.graph[v].constant else { return nil }
        switch t.dtype {
        case .float32: return (.float32, try t.values(as: Float.self).map { Double($0) })
        case .float64: return (.float64, try t.values(as: Double.self))
        case .int64, .bool: return nil
        }
    }

    /// A zeroed buffer for a folded output of `count` elements, or nil when it is too large to fold
    /// (an op on constants may make a larger constant, e.g. a Gather with repeated indices: it then
    /// runs as a step on the constant).
    func foldBuffer(_ count: Int) -> [Double]? {
        guard count >= 0, count <= 1 << 24 else { return nil }
        return [Double](repeating: 0, count: count)
    }

    /// Folds output k from Double values (exact for the copies of layout ops).
    func fold(output k: Int, dtype: Engine.DType, _ values: [Double]) throws(InLoopError) {
        guard let shape = outputTypes[k].shape.known else { throw InLoopError(.internal, "a folded value of symbolic shape") }
        fold(output: k, dtype == .float32 ? try Engine.Tensor(shape: shape, values: values.map { Float($0) })
                                          : try Engine.Tensor(shape: shape, values: values))
    }

    /// Output k is input j's storage; when input j is a constant, output k is that constant seen in
    /// its own shape (so that ops which need constant operands, such as a dense weight, see it).
    func aliasOrFold(output k: Int, input j: Int) throws(InLoopError) {
        if isFoldable(j), let v = node.inputs[j], let t = builder.graph[v].constant, let shape = outputTypes[k].shape.known,
           t.dtype == outputTypes[k].dtype {
            fold(output: k, try Engine.Tensor(shape: shape, storage: t.storage))
            return
        }
        if outputTypes[k].dtype.isFloatingPoint, let (_, values) = try constantDoubles(j) {
            // a widening Cast of a constant
            try fold(output: k, dtype: outputTypes[k].dtype, values)
            return
        }
        unfold(output: k)
        try alias(output: k, input: j)
    }
}

// MARK: - Transpose

public enum TransposeOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        /// nil: the axes reversed.
        public var perm: [Int]?
        public func encoded() -> [String: Engine.AttributeValue] { perm.map { ["perm": .ints($0)] } ?? [:] }
    }
    public static let name = "Transpose"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let perm = try raw.ints("perm")
        if let perm, perm.count > Engine.maxRank { throw InLoopError(.unsupported, "perm has \(perm.count) axes; InLoop takes ranks up to \(Engine.maxRank)") }
        return Attributes(perm: perm)
    }

    static func perm(_ a: Attributes, rank r: Int) throws(InLoopError) -> [Int] {
        let p = a.perm ?? Array((0..<r).reversed())
        guard p.count == r, Set(p) == Set(0..<r) else {
            throw InLoopError(.format, "perm \(InLoopCore.Tensor.format(p)) is not a permutation of \(r) axes")
        }
        return p
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        return [Engine.TensorType(x.dtype, try perm(a, rank: x.rank).map { x.shape[$0] })]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil, let outShape = outputs[0].shape.known else { return nil }
        let p = try perm(a, rank: k.shape.count)
        var xs = [Int](repeating: 1, count: p.count)
        for i in stride(from: p.count - 2, through: 0, by: -1) { xs[i] = xs[i + 1] * k.shape[i + 1] }
        var values: [Engine.SymInt] = []
        values.reserveCapacity(k.values.count)
        var idx = [Int](repeating: 0, count: p.count)
        for _ in 0..<k.values.count {
            var off = 0
            for d in 0..<p.count { off += idx[d] * xs[p[d]] }
            values.append(k.values[off])
            var d = p.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < outShape[d] { break }; idx[d] = 0; d -= 1 }
        }
        return [try Engine.KnownInts(shape: outShape, values: values)]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let p = try perm(a, rank: x.rank)
        // moving only size-1 axes keeps the memory order
        let moved = p.filter { x.shape[$0].known != 1 }
        if moved == moved.sorted() { try ctx.aliasOrFold(output: 0, input: 0); return }
        let xs = try Engine.Layout.strides(x.shape)
        try Engine.Layout.emitCopy(&ctx, input: 0, output: 0, dims: p.map { x.shape[$0] }, xStrides: p.map { xs[$0] }, xBase: 0)
    }
}

// MARK: - Slice

public enum SliceOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        /// Before opset 10: the lists as attributes (nil from 10 on: inputs 1-4).
        public var starts: [Int]?, ends: [Int]?, axes: [Int]?
        public func encoded() -> [String: Engine.AttributeValue] {
            var out: [String: Engine.AttributeValue] = [:]
            if let starts { out["starts"] = .ints(starts) }
            if let ends { out["ends"] = .ints(ends) }
            if let axes { out["axes"] = .ints(axes) }
            return out
        }
    }
    public static let name = "Slice"
    public static let inputArity: ClosedRange<Int> = 1...5

    /// Starts and ends beyond any dimension act as ±infinity: clamped (to ±2^40, beyond every
    /// dimension, also of a symbolic one at the largest batch) so that arithmetic cannot overflow.
    static func clampIndex(_ v: Int) -> Int { Swift.min(Swift.max(v, -(1 << 40)), 1 << 40) }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        func list(_ name: String) throws(InLoopError) -> [Int]? {
            guard let v = raw[name] else { return nil }
            guard case .ints(let l) = v else { throw InLoopError(.format, "attribute '\(name)' must be a list of integers") }
            guard l.count <= Engine.maxRank else { throw InLoopError(.unsupported, "attribute '\(name)' has \(l.count) values; InLoop takes ranks up to \(Engine.maxRank)") }
            return l.map(clampIndex)
        }
        if opset >= 10 {
            guard raw["starts"] == nil, raw["ends"] == nil, raw["axes"] == nil else {
                throw InLoopError(.format, "from opset 10, starts, ends and axes are inputs, not attributes")
            }
            return Attributes()
        }
        guard let s = try list("starts"), let e = try list("ends") else {
            throw InLoopError(.format, "attributes 'starts' and 'ends' are required before opset 10")
        }
        return Attributes(starts: s, ends: e, axes: try list("axes"))
    }

    /// Per axis of x: the first index, the count and the step.
    static func plan(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                     shape: Engine.Shape) throws(InLoopError) -> [(start: Engine.SymInt, count: Engine.SymInt, step: Int)] {
        let starts: [Int], ends: [Int], axesIn: [Int]?, stepsIn: [Int]?
        if let s = a.starts, let e = a.ends {
            starts = s; ends = e; axesIn = a.axes; stepsIn = nil
        } else {
            guard let s = try Engine.knownList(inputs, known, 1, "starts"), let e = try Engine.knownList(inputs, known, 2, "ends") else {
                throw InLoopError(.format, "inputs starts and ends are required")
            }
            starts = s.map(clampIndex); ends = e.map(clampIndex)
            axesIn = try Engine.knownList(inputs, known, 3, "axes")
            stepsIn = try Engine.knownList(inputs, known, 4, "steps")
        }
        let r = shape.count
        let axes = try Engine.axes(axesIn ?? Array(0..<starts.count), rank: r)
        let steps = stepsIn ?? [Int](repeating: 1, count: starts.count)
        guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
            throw InLoopError(.format, "starts, ends, axes and steps have different lengths (\(starts.count), \(ends.count), \(axes.count), \(steps.count))")
        }
        var out = shape.map { (start: Engine.SymInt(0), count: $0, step: 1) }
        for (i, ax) in axes.enumerated() {
            let step = steps[i]
            guard step != 0, step >= -Limits.maxDimension, step <= Limits.maxDimension else {
                throw InLoopError(.format, "step \(step) on axis \(ax): steps must be non-zero and at most \(Limits.maxDimension) in size")
            }
            out[ax] = try axisRange(shape[ax], start: starts[i], end: ends[i], step: step)
        }
        return out
    }

    /// ONNX's clamping of one axis (`TensorOps.sliceRange`), also for a symbolic dimension as long as
    /// the result is linear in it for every batch size.
    static func axisRange(_ dim: Engine.SymInt, start: Int, end: Int, step: Int) throws(InLoopError) -> (start: Engine.SymInt, count: Engine.SymInt, step: Int) {
        if let d = dim.known {
            let (s, c) = TensorOps.sliceRange(dim: d, start: start, end: end, step: step)
            return (Engine.SymInt(s), Engine.SymInt(c), step)
        }
        let what = "a slice [\(start):\(end):\(step)] of an axis of size \(dim)"
        func norm(_ v: Int) throws(InLoopError) -> Engine.SymInt {
            v < 0 ? try Engine.linear(dim + Engine.SymInt(v), what) : Engine.SymInt(v)
        }
        func clamp(_ v: Engine.SymInt, _ lo: Engine.SymInt, _ hi: Engine.SymInt) throws(InLoopError) -> Engine.SymInt {
            try Engine.symmetricChoice(try Engine.symmetricChoice(v, lo, larger: true, what), hi, larger: false, what)
        }
        let s: Engine.SymInt, span: Engine.SymInt
        if step > 0 {
            s = try clamp(try norm(start), 0, dim)
            let e = try clamp(try norm(end), 0, dim)
            span = try Engine.symmetricChoice(try Engine.linear(e - s, what), 0, larger: true, what)
        } else {
            let last = try Engine.linear(dim - 1, what)
            s = try clamp(try norm(start), 0, last)
            let e = try clamp(try norm(end), -1, last)
            span = try Engine.symmetricChoice(try Engine.linear(s - e, what), 0, larger: true, what)
        }
        let m = Swift.abs(step)
        if m == 1 { return (s, span, step) }
        guard let k = span.known else { throw Engine.notLinear(what) }
        return (s, Engine.SymInt((k + m - 1) / m), step)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        return [Engine.TensorType(x.dtype, try plan(a, inputs, known, shape: x.shape).map(\.count))]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let data = known.first ?? nil, let outShape = outputs[0].shape.known else { return nil }
        let p = try plan(a, inputs, known, shape: data.shape.map { Engine.SymInt($0) })
        let r = data.shape.count
        var xs = [Int](repeating: 1, count: r)
        for i in stride(from: r - 2, through: 0, by: -1) { xs[i] = xs[i + 1] * data.shape[i + 1] }
        let total = outShape.reduce(1, *)
        var values: [Engine.SymInt] = []
        values.reserveCapacity(total)
        var idx = [Int](repeating: 0, count: r)
        for _ in 0..<total {
            var off = 0
            for d in 0..<r { off += ((p[d].start.known ?? 0) + idx[d] * p[d].step) * xs[d] }
            values.append(data.values[off])
            var d = r - 1
            while d >= 0 { idx[d] += 1; if idx[d] < outShape[d] { break }; idx[d] = 0; d -= 1 }
        }
        return [try Engine.KnownInts(shape: outShape, values: values)]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let known = (0..<ctx.inputTypes.count).map { ctx.knownInput($0) }
        let p = try plan(a, ctx.inputTypes, known, shape: x.shape)
        if p.indices.allSatisfy({ p[$0].step == 1 && p[$0].start == 0 && p[$0].count == x.shape[$0] }) {
            try ctx.aliasOrFold(output: 0, input: 0)
            return
        }
        let xs = try Engine.Layout.strides(x.shape)
        var base: Engine.SymInt = 0
        var strides: [Engine.SymInt] = []
        for d in p.indices {
            base = try Engine.linear(base + (try Engine.linear(p[d].start * xs[d], "slice offset")), "slice offset")
            strides.append(try Engine.linear(xs[d] * Engine.SymInt(p[d].step), "slice stride"))
        }
        try Engine.Layout.emitCopy(&ctx, input: 0, output: 0, dims: p.map(\.count), xStrides: strides, xBase: base)
    }
}

// MARK: - Split

public enum SplitOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axis: Int
        /// Before opset 13: the sizes as an attribute (from 13: input 1).
        public var split: [Int]?
        /// Opset 18: the number of outputs (the last part may be smaller).
        public var numOutputs: Int?
        public func encoded() -> [String: Engine.AttributeValue] {
            var out: [String: Engine.AttributeValue] = ["axis": .int(axis)]
            if let split { out["split"] = .ints(split) }
            if let numOutputs { out["num_outputs"] = .int(numOutputs) }
            return out
        }
    }
    public static let name = "Split"
    public static let inputArity: ClosedRange<Int> = 1...2
    public static let outputArity: ClosedRange<Int> = 1...Engine.maxKnownElements

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let split = try raw.ints("split")
        if opset >= 13 && split != nil { throw InLoopError(.format, "from opset 13, split is an input, not an attribute") }
        let num = try raw.int("num_outputs")
        if let num {
            guard opset >= 18 else { throw InLoopError(.format, "num_outputs exists from opset 18") }
            guard num >= 1 else { throw InLoopError(.format, "num_outputs is \(num); it must be at least 1") }
        }
        if let split, split.contains(where: { $0 < 0 }) { throw InLoopError(.format, "split \(InLoopCore.Tensor.format(split)) holds a negative size") }
        return Attributes(axis: try raw.int("axis", default: 0), split: split, numOutputs: num)
    }

    /// The axis and the size of each part.
    static func parts(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                      outputCount: Int) throws(InLoopError) -> (axis: Int, sizes: [Engine.SymInt]) {
        let x = try Engine.input(inputs, 0)
        let axis = try Engine.axis(a.axis, rank: x.rank)
        let len = x.shape[axis]
        var sizes: [Engine.SymInt]
        var given = a.split
        if given == nil { given = try Engine.knownList(inputs, known, 1, "split") }
        if let s = given {
            guard a.numOutputs == nil else { throw InLoopError(.format, "split and num_outputs are both given") }
            guard s.allSatisfy({ $0 >= 0 && $0 <= Limits.maxDimension }) else {
                throw InLoopError(.format, "split \(InLoopCore.Tensor.format(s)) holds a size out of range")
            }
            sizes = s.map { Engine.SymInt($0) }
            var total: Engine.SymInt = 0
            for v in sizes { total = try Engine.linear(total + v, "split sizes") }
            guard total == len else {
                throw InLoopError(.format, "split \(InLoopCore.Tensor.format(s)) does not add up to axis \(a.axis) of size \(len)")
            }
        } else {
            guard let length = len.known else { throw Engine.notLinear("a split into equal parts of an axis of size \(len)") }
            let parts = a.numOutputs ?? outputCount
            guard parts >= 1, parts == outputCount else {
                throw InLoopError(.format, "\(parts) parts for \(outputCount) outputs")
            }
            if a.numOutputs == nil {
                // before opset 18 the parts are equal
                guard length % parts == 0 else {
                    throw InLoopError(.format, "axis \(a.axis) of size \(length) does not split into \(parts) equal parts")
                }
            }
            let each = (length + parts - 1) / parts
            sizes = (0..<parts).map { Engine.SymInt(Swift.max(0, Swift.min(each, length - $0 * each))) }
        }
        guard sizes.count == outputCount else {
            throw InLoopError(.format, "\(sizes.count) parts for \(outputCount) outputs")
        }
        return (axis, sizes)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        throw InLoopError(.internal, "Split's types depend on its number of outputs")
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        let (axis, sizes) = try parts(a, inputs, known, outputCount: outputCount)
        return sizes.map { s in
            var shape = x.shape
            shape[axis] = s
            return Engine.TensorType(x.dtype, shape)
        }
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let data = known.first ?? nil else { return nil }
        let (axis, sizes) = try parts(a, inputs, known, outputCount: outputs.count)
        let outer = data.shape[..<axis].reduce(1, *), inner = data.shape[(axis + 1)...].reduce(1, *), len = data.shape[axis]
        var result: [Engine.KnownInts?] = []
        var offset = 0
        for (k, s) in sizes.enumerated() {
            guard let size = s.known, let shape = outputs[k].shape.known else { return nil }
            var values: [Engine.SymInt] = []
            for o in 0..<outer { values += data.values[((o * len + offset) * inner)..<((o * len + offset + size) * inner)] }
            result.append(try Engine.KnownInts(shape: shape, values: values))
            offset += size
        }
        return result
    }

    /// One step per output: the output is its slab of x.
    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let known = (0..<ctx.inputTypes.count).map { ctx.knownInput($0) }
        let (axis, sizes) = try parts(a, ctx.inputTypes, known, outputCount: ctx.outputTypes.count)
        let xs = try Engine.Layout.strides(x.shape)
        if sizes.count == 1 {
            try ctx.aliasOrFold(output: 0, input: 0)
            return
        }
        var offset: Engine.SymInt = 0
        for (k, s) in sizes.enumerated() {
            let base = try Engine.linear(offset * xs[axis], "split offset")
            try Engine.Layout.emitCopy(&ctx, input: 0, output: k, dims: ctx.outputTypes[k].shape, xStrides: xs, xBase: base)
            offset = try Engine.linear(offset + s, "split offset")
        }
    }
}

// MARK: - Renaming ops (aliases)

/// Flatten(axis): [d0 · … · d(axis−1), d(axis) · … ] (a leading 1 for axis 0).
public enum FlattenOp: ReshapingOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axis: Int
        public func encoded() -> [String: Engine.AttributeValue] { ["axis": .int(axis)] }
    }
    public static let name = "Flatten"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(axis: try raw.int("axis", default: 1))
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        // axis may equal the rank (ONNX: [-r, r])
        let k = a.axis < 0 ? a.axis + x.rank : a.axis
        guard k >= 0, k <= x.rank else { throw InLoopError(.format, "axis \(a.axis) is out of range for rank \(x.rank)") }
        let outer = try Engine.linear(Array(x.shape[..<k]).elementCount, "flatten of \(x.shape.formatted)")
        let inner = try Engine.linear(Array(x.shape[k...]).elementCount, "flatten of \(x.shape.formatted)")
        return [Engine.TensorType(x.dtype, [outer, inner])]
    }
}

/// Squeeze: axes as an attribute before opset 13, as input 1 from 13; absent: every axis of known
/// size 1 (a symbolic dimension, such as the batch, is kept: it is 1 only for some batch sizes).
public enum SqueezeOp: ReshapingOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axes: [Int]?
        public func encoded() -> [String: Engine.AttributeValue] { axes.map { ["axes": .ints($0)] } ?? [:] }
    }
    public static let name = "Squeeze"
    public static let inputArity: ClosedRange<Int> = 1...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let axes = try raw.ints("axes")
        if opset >= 13 && axes != nil { throw InLoopError(.format, "from opset 13, axes is an input, not an attribute") }
        return Attributes(axes: axes)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        var list = a.axes
        if list == nil { list = try Engine.knownList(inputs, known, 1, "axes") }
        var drop: [Int]
        if let list {
            drop = try Engine.axes(list, rank: x.rank)
            for k in drop where x.shape[k] != 1 {
                if x.shape[k].known == nil { throw Engine.notLinear("a squeeze of axis \(k) of size \(x.shape[k])") }
                throw InLoopError(.format, "cannot squeeze axis \(k) of \(x.shape.formatted): its size is not 1")
            }
        } else {
            drop = x.shape.indices.filter { x.shape[$0].known == 1 }
        }
        return [Engine.TensorType(x.dtype, x.shape.indices.filter { !drop.contains($0) }.map { x.shape[$0] })]
    }
}

/// Dropout at inference: the identity. The optional mask output (bool, X's shape) is all true: at
/// run time 1 in T storage, exact in both scalar types; it has no gradient. `training_mode` = true is
/// refused.
public enum DropoutOp: OpDefinition {
    /// `ratio` of opsets before 12 (later: input 1); only MC-dropout reads it (Uncertainty.swift).
    public struct Attributes: OpAttributeSet, Equatable {
        public var ratio: Double?
        public func encoded() -> [String: Engine.AttributeValue] { ratio.map { ["ratio": .float($0)] } ?? [:] }
    }
    public static let name = "Dropout"
    public static let inputArity: ClosedRange<Int> = 1...3
    public static let outputArity: ClosedRange<Int> = 1...2

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        let y = try inferTypes(a, inputs, known)
        return outputCount == 2 ? y + [Engine.TensorType(.bool, y[0].shape)] : y
    }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        // `seed`, `is_test` (before 7): no effect at inference; `ratio` (before 12) is kept for MC-dropout
        Attributes(ratio: try raw.float("ratio"))
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        if inputs.count > 1, let r = inputs[1], !(r.dtype.isFloatingPoint && r.rank == 0) {
            throw InLoopError(.format, "ratio must be a floating scalar, got \(r)")
        }
        if inputs.count > 2, inputs[2] != nil {
            guard let mode = try Engine.knownList(inputs, known, 2, "training_mode"), mode.count == 1 else {
                throw InLoopError(.format, "training_mode must be a boolean scalar")
            }
            guard mode[0] == 0 else { throw InLoopError(.unsupported, "Dropout in training mode (training_mode = true)") }
        }
        return [x]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        outputs.count == 2 ? [known.first ?? nil, nil] : [known.first ?? nil]   // the mask is filled at run time
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try ctx.aliasOrFold(output: 0, input: 0)
        // MARK: family nd (Dropout mask)
        if ctx.outputTypes.count == 2 {
            ctx.emit(.fill(count: try ctx.outputExtent(1), value: 1), [try ctx.output(1)])
        }
    }
}

extension TransposeOp {
    /// Per sample (threads): the batch axis stays first (the shapes say so: one batch axis, leading in and out).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension DropoutOp {
    /// Per sample (threads): identity at inference (a mask output is per element).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
