/// Reductions (issue 10, phase 6 of `docs/ENGINE.md`): ONNX ReduceSum, ReduceMean, ReduceMax, ReduceMin,
/// ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp, ArgMax and ArgMin.
///
/// Every one lowers to `reduce` steps over an (outer × length × inner) view (`Kernels/Reduce.swift`):
/// the reduced axes are merged into runs of adjacent axes (axes of size 1 join either side), and each
/// run is one step, innermost first (a mean of means over equal counts is the mean; a log-sum-exp of
/// log-sum-exps is the log-sum-exp; L1, L2 and the sum of squares sum their first step's results).
/// ReduceL2 and ReduceLogSum end with the unary sqrt / log step. The batch may be on any axis,
/// reduced or not: sizes are extents, so one plan serves every batch size.
///
/// Derivatives are the step rules of `Compiler/Differentiation.swift`; ReduceMax and ReduceMin send
/// the gradient (and the tangent) to the first arg-max / arg-min of each reduced run.

extension Engine {
    /// The output shape of a reduction of `shape` over `axes` (normalised).
    static func reducedShape(_ shape: Shape, axes: [Int], keepDims: Bool) -> Shape {
        var out: Shape = []
        for (d, s) in shape.enumerated() {
            if axes.contains(d) { if keepDims { out.append(1) } } else { out.append(s) }
        }
        return out
    }

    /// Emits y = reduction of x (storage, shape) over `axes` (normalised, distinct, non-empty):
    /// `first` on the innermost run, `combine` on the others, into storage `output` (after `final`
    /// when given). Returns nothing; throws when a size is not linear in the batch.
    static func lowerReduction(_ ctx: inout LoweringContext, x: Int32, shape: Shape, axes: [Int], first: ReduceFunction,
                               combine: ReduceFunction, final: UnaryFunction?, output: Int32) throws(InLoopError) {
        // runs of adjacent reduced / kept axes, size-1 axes joining the run before them
        var runs: [(dims: Shape, reduced: Bool)] = []
        for (d, s) in shape.enumerated() {
            let reduced = axes.contains(d)
            if s.known == 1, !runs.isEmpty { runs[runs.count - 1].dims.append(s); continue }
            if let last = runs.last, last.reduced == reduced {
                runs[runs.count - 1].dims.append(s)
            } else {
                runs.append(([s], reduced))
            }
        }
        let outCount = try ctx.extent(reducedShape(shape, axes: axes, keepDims: false), "the reduction's result")
        var steps = runs.indices.filter { runs[$0].reduced }.reversed().map { $0 }
        if steps.isEmpty {
            // only axes of size 1 are reduced: one step of length 1 (x², |x|, or the value itself)
            runs = [(shape, false), ([], true)]
            steps = [1]
        }
        var current = x
        for (k, j) in steps.enumerated() {
            let before = runs[..<j].flatMap { $0.dims }, after = runs[(j + 1)...].flatMap { $0.dims }
            let outer = try ctx.extent(before, "the axes before a reduced run")
            let length = try ctx.extent(runs[j].dims, "a reduced run")
            let inner = try ctx.extent(after, "the axes after a reduced run")
            if first.isIndex, length.perBatch == 0, length.fixed > 1 << 24 {
                throw InLoopError(.unsupported, "an index along an axis of \(length.fixed) elements (float32 holds integers exactly up to 2^24)")
            }
            let last = k == steps.count - 1
            let y: Int32
            if last && final == nil { y = output } else {
                guard let e = Extent.product(outer, inner) else {
                    throw notLinear("the reduction's intermediate result")
                }
                y = last ? ctx.temporary(outCount) : ctx.temporary(e)
            }
            let geometry = ctx.ints([outer.perBatch, outer.fixed, length.perBatch, length.fixed, inner.perBatch, inner.fixed])
            ctx.emit(.reduce(k == 0 ? first : combine, geometry: geometry), [current, y])
            runs[j].dims = []
            current = y
        }
        if let final { ctx.emit(.unary(final, count: outCount), [current, output]) }
    }
}

extension Engine.Extent {
    /// The product of two extents when it is one (at most one of them scales with the batch).
    fileprivate static func product(_ a: Engine.Extent, _ b: Engine.Extent) -> Engine.Extent? {
        if a.perBatch != 0 && b.perBatch != 0 { return nil }
        let (p1, o1) = a.perBatch.multipliedReportingOverflow(by: b.fixed)
        let (p2, o2) = b.perBatch.multipliedReportingOverflow(by: a.fixed)
        let (f, o3) = a.fixed.multipliedReportingOverflow(by: b.fixed)
        let (p, o4) = p1.addingReportingOverflow(p2)
        return o1 || o2 || o3 || o4 ? nil : Engine.Extent(perBatch: p, fixed: f)
    }
}

/// Attributes of the Reduce* ops.
public struct ReduceAttributes: OpAttributeSet, Equatable {
    /// The axes attribute (opsets before the axes input); nil: from input 1, or every axis.
    public var axes: [Int]?
    public var keepDims: Bool
    /// With no axes: the identity (true) or a reduction over every axis (false).
    public var noopWithEmptyAxes: Bool
    public func encoded() -> [String: Engine.AttributeValue] {
        var out: [String: Engine.AttributeValue] = ["keepdims": .int(keepDims ? 1 : 0)]
        if let axes { out["axes"] = .ints(axes) }
        if noopWithEmptyAxes { out["noop_with_empty_axes"] = .int(1) }
        return out
    }
}

/// The shared rules of the Reduce* ops.
public protocol ReduceOpDefinition: OpDefinition where Attributes == ReduceAttributes {
    /// The step on the innermost reduced run, on the others, and the unary step after them.
    static var first: ReduceFunction { get }
    static var combine: ReduceFunction { get }
    static var final: UnaryFunction? { get }
    /// The opset from which the axes are input 1 (18; 13 for ReduceSum).
    static var axesInputSince: Int { get }
    /// Integer evaluation (shape computations): the reduction of known values, nil when not linear.
    static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt?
    /// The result of an empty reduction of integers (nil: none).
    static var knownIdentity: Engine.SymInt? { get }
}

extension ReduceOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...2 }
    public static var final: UnaryFunction? { nil }
    public static var axesInputSince: Int { 18 }
    public static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { nil }
    public static var knownIdentity: Engine.SymInt? { nil }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> ReduceAttributes {
        let keep = try raw.int("keepdims", default: 1)
        guard keep == 0 || keep == 1 else { throw InLoopError(.format, "attribute 'keepdims' is \(keep); it must be 0 or 1") }
        let noop = try raw.int("noop_with_empty_axes", default: 0)
        guard noop == 0 || noop == 1 else { throw InLoopError(.format, "attribute 'noop_with_empty_axes' is \(noop); it must be 0 or 1") }
        let axes = try raw.ints("axes")
        if let axes, axes.count > Engine.maxRank {
            throw InLoopError(.unsupported, "attribute 'axes' has \(axes.count) values; InLoop takes ranks up to \(Engine.maxRank)")
        }
        if opset >= axesInputSince {
            guard axes == nil else { throw InLoopError(.format, "from opset \(axesInputSince), \(name)'s axes are input 1, not an attribute") }
        } else if noop != 0 {
            throw InLoopError(.format, "attribute 'noop_with_empty_axes' exists from opset \(axesInputSince)")
        }
        return ReduceAttributes(axes: axes, keepDims: keep == 1, noopWithEmptyAxes: noop == 1)
    }

    /// The normalised axes to reduce, or nil for the identity (no axes and noop_with_empty_axes).
    static func axes(_ a: ReduceAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                     rank: Int) throws(InLoopError) -> [Int]? {
        var list = a.axes
        if inputs.count > 1, inputs[1] != nil {
            guard a.axes == nil else { throw InLoopError(.format, "axes given as attribute and as input") }
            guard let t = inputs[1], t.dtype == .int64, t.rank == 1 else { throw InLoopError(.format, "input 1 (axes) must be a 1-D int64 tensor") }
            list = try Engine.knownList(inputs, known, 1, "axes")
        }
        let given = list ?? []
        if given.isEmpty { return a.noopWithEmptyAxes ? nil : Array(0..<rank) }
        return try Engine.axes(given, rank: rank)
    }

    public static func inferTypes(_ a: ReduceAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint || x.dtype == .int64 else { throw InLoopError(.format, "\(name) of \(x.dtype) values") }
        guard let axes = try axes(a, inputs, known, rank: x.rank) else { return [x] }
        return [Engine.TensorType(x.dtype, Engine.reducedShape(x.shape, axes: axes, keepDims: a.keepDims))]
    }

    public static func evaluate(_ a: ReduceAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil, let outShape = outputs[0].shape.known else { return nil }
        guard let axes = try axes(a, inputs, known, rank: k.shape.count) else { return [k] }
        // y's element for each x element: x's index with the reduced axes dropped
        let kept = (0..<k.shape.count).filter { !axes.contains($0) }
        var acc = [Engine.SymInt?](repeating: nil, count: outShape.reduce(1, *))
        var idx = [Int](repeating: 0, count: k.shape.count)
        for v in k.values {
            var o = 0
            for d in kept { o = o * k.shape[d] + idx[d] }
            if let prev = acc[o] {
                guard let c = combineKnown(prev, v) else { return nil }
                acc[o] = c
            } else {
                acc[o] = v
            }
            var d = k.shape.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < k.shape[d] { break }; idx[d] = 0; d -= 1 }
        }
        var values: [Engine.SymInt] = []
        for v in acc {
            guard let v = v ?? knownIdentity else { return nil }
            values.append(v)
        }
        return [try Engine.KnownInts(shape: outShape, values: values)]
    }

    public static func lower(_ a: ReduceAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        guard x.dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "\(name) of \(x.dtype) values at run time; InLoop computes floating values")
        }
        let knownAxes = ctx.hasInput(1) ? [nil, ctx.knownInput(1)] : [nil]
        guard let axes = try axes(a, ctx.inputTypes, knownAxes, rank: x.rank) else {
            try ctx.aliasOrFold(output: 0, input: 0)
            return
        }
        ctx.unfold(output: 0)
        try Engine.lowerReduction(&ctx, x: try ctx.input(0), shape: x.shape, axes: axes, first: first, combine: combine,
                                  final: final, output: try ctx.output(0))
    }
}

public enum ReduceSumOp: ReduceOpDefinition {
    public static let name = "ReduceSum"
    public static let first = ReduceFunction.sum, combine = ReduceFunction.sum
    public static var axesInputSince: Int { 13 }
    public static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a + b }
    public static var knownIdentity: Engine.SymInt? { 0 }
}

public enum ReduceMeanOp: ReduceOpDefinition {
    public static let name = "ReduceMean"
    public static let first = ReduceFunction.mean, combine = ReduceFunction.mean
}

public enum ReduceMaxOp: ReduceOpDefinition {
    public static let name = "ReduceMax"
    public static let first = ReduceFunction.max, combine = ReduceFunction.max
    public static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { Engine.SymInt.max(a, b) }
}

public enum ReduceMinOp: ReduceOpDefinition {
    public static let name = "ReduceMin"
    public static let first = ReduceFunction.min, combine = ReduceFunction.min
    public static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { Engine.SymInt.min(a, b) }
}

public enum ReduceProdOp: ReduceOpDefinition {
    public static let name = "ReduceProd"
    public static let first = ReduceFunction.prod, combine = ReduceFunction.prod
    public static func combineKnown(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a * b }
    public static var knownIdentity: Engine.SymInt? { 1 }
}

public enum ReduceSumSquareOp: ReduceOpDefinition {
    public static let name = "ReduceSumSquare"
    public static let first = ReduceFunction.sumSquare, combine = ReduceFunction.sum
}

public enum ReduceL1Op: ReduceOpDefinition {
    public static let name = "ReduceL1"
    public static let first = ReduceFunction.sumAbs, combine = ReduceFunction.sum
}

public enum ReduceL2Op: ReduceOpDefinition {
    public static let name = "ReduceL2"
    public static let first = ReduceFunction.sumSquare, combine = ReduceFunction.sum
    public static var final: UnaryFunction? { .sqrt }
}

public enum ReduceLogSumOp: ReduceOpDefinition {
    public static let name = "ReduceLogSum"
    public static let first = ReduceFunction.sum, combine = ReduceFunction.sum
    public static var final: UnaryFunction? { .log }
}

public enum ReduceLogSumExpOp: ReduceOpDefinition {
    public static let name = "ReduceLogSumExp"
    public static let first = ReduceFunction.logSumExp, combine = ReduceFunction.logSumExp
}

// MARK: - ArgMax, ArgMin

public struct ArgReduceAttributes: OpAttributeSet, Equatable {
    public var axis: Int
    public var keepDims: Bool
    public var selectLastIndex: Bool
    public func encoded() -> [String: Engine.AttributeValue] {
        ["axis": .int(axis), "keepdims": .int(keepDims ? 1 : 0), "select_last_index": .int(selectLastIndex ? 1 : 0)]
    }
}

/// ONNX ArgMax and ArgMin: the int64 position of the first (or last, `select_last_index`) maximum /
/// minimum along one axis. The result is carried at run time in the plan's float storage as exact
/// integers (float32: axes of up to 2^24 elements, checked when the plan is compiled; an axis that
/// grows with the batch is exact up to 2^24 rows in float32, 2^53 in float64). No gradient.
public protocol ArgReduceOpDefinition: OpDefinition where Attributes == ArgReduceAttributes {
    static var isMax: Bool { get }
}

extension ArgReduceOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> ArgReduceAttributes {
        let keep = try raw.int("keepdims", default: 1), last = try raw.int("select_last_index", default: 0)
        guard keep == 0 || keep == 1 else { throw InLoopError(.format, "attribute 'keepdims' is \(keep); it must be 0 or 1") }
        guard last == 0 || last == 1 else { throw InLoopError(.format, "attribute 'select_last_index' is \(last); it must be 0 or 1") }
        if last == 1 && opset > 0 && opset < 12 { throw InLoopError(.format, "attribute 'select_last_index' exists from opset 12") }
        return ArgReduceAttributes(axis: try raw.int("axis", default: 0), keepDims: keep == 1, selectLastIndex: last == 1)
    }

    public static func inferTypes(_ a: ArgReduceAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.unsupported, "\(name) of \(x.dtype) values; InLoop takes floating values") }
        let axis = try Engine.axis(a.axis, rank: x.rank)
        return [Engine.TensorType(.int64, Engine.reducedShape(x.shape, axes: [axis], keepDims: a.keepDims))]
    }

    public static func lower(_ a: ArgReduceAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let axis = try Engine.axis(a.axis, rank: x.rank)
        let f: ReduceFunction = isMax ? .argMax(last: a.selectLastIndex) : .argMin(last: a.selectLastIndex)
        let outer = try ctx.extent(Array(x.shape[..<axis]), "the axes before \(axis)")
        let length = try ctx.extent([x.shape[axis]], "axis \(axis)")
        let inner = try ctx.extent(Array(x.shape[(axis + 1)...]), "the axes after \(axis)")
        if length.perBatch == 0, length.fixed > 1 << 24 {
            throw InLoopError(.unsupported, "\(name) along an axis of \(length.fixed) elements (float32 holds integers exactly up to 2^24)")
        }
        ctx.unfold(output: 0)
        let geometry = ctx.ints([outer.perBatch, outer.fixed, length.perBatch, length.fixed, inner.perBatch, inner.fixed])
        ctx.emit(.reduce(f, geometry: geometry), [try ctx.input(0), try ctx.output(0)])
    }
}

public enum ArgMaxOp: ArgReduceOpDefinition {
    public static let name = "ArgMax"
    public static let isMax = true
}

public enum ArgMinOp: ArgReduceOpDefinition {
    public static let name = "ArgMin"
    public static let isMax = false
}
