/// Comparison, logic, selection and broadcasting ops (issue 10, phase 6): Greater, Less, Equal,
/// GreaterOrEqual, LessOrEqual, Not, And, Or, Xor, Mod, PRelu, Where, CastLike, Expand, Tile, Sum,
/// Mean.
///
/// Booleans and integers that exist at run time are carried in the plan's float storage as exact
/// values (`Kernels/Logic.swift`): booleans are 0 and 1, integers are exact up to 2^24 in float32 and
/// 2^53 in float64. Their IR dtype stays `.bool`/`.int64`; integer values known at compile time are
/// folded (`evaluate`) and, when a step needs them at run time, written by a `fillLinear` step.
///
/// Steps: comparisons, logic, Mod and PRelu are one `.logic` broadcast step (the strided loop of the
/// broadcasting binary ops); Where is a `.select` step; Expand and Tile are one strided copy
/// (`.layoutCopy`, stride 0 along repeated axes; its adjoint sums the repeats); Sum is a chain of
/// broadcast adds, Mean that chain and a `.channelAffine` scaling by 1/k.

extension Engine {
    /// Geometry of `.select` steps in `Plan.ints`: `[rank, (dim.perBatch, dim.fixed, varies) × rank]`,
    /// outer axis first, where bit k of `varies` says operand k (condition, x, y) varies along the
    /// axis. Axes along which every operand keeps its pattern are merged.
    enum SelectLayout {
        static func encode(_ shapes: [Shape], _ out: Shape, batch: Symbol?) throws(InLoopError) -> [Int] {
            let r = out.count
            guard r <= maxRank, shapes.allSatisfy({ $0.count <= r }) else {
                throw InLoopError(.unsupported, "a selection of rank \(r); InLoop takes ranks up to \(maxRank)")
            }
            var axes: [(dim: SymInt, varies: Int)] = []
            for i in 0..<r {
                let yd = out[i]
                if yd.known == 1 { continue }
                var v = 0
                for (k, s) in shapes.enumerated() {
                    let j = i - (r - s.count)
                    let d: SymInt = j >= 0 ? s[j] : 1
                    if d.known == 1 { continue }
                    guard d == yd else { throw notLinear("a selection of \(shapes.map(\.formatted).joined(separator: ", "))") }
                    v |= 1 << k
                }
                if let last = axes.last, last.varies == v {
                    axes[axes.count - 1].dim = try linear(last.dim * yd, "a selection to \(out.formatted)")
                } else {
                    axes.append((yd, v))
                }
            }
            var g = [axes.count]
            for ax in axes {
                guard let e = Extent(ax.dim, batch: batch) else { throw notLinear("a selection to \(out.formatted)") }
                g += [e.perBatch, e.fixed, ax.varies]
            }
            return g
        }

        @inline(__always)
        static func decode(_ ints: UnsafeBufferPointer<Int>, _ at: Int32, _ n: Int) -> SelectGeometry {
            let base = Int(at)
            let r = ints[base]
            var dims = Fixed8<Int>(repeating: 1), varies = Fixed8<Int>(repeating: 0)
            for j in 0..<r {
                let o = base + 1 + 3 * j
                dims[j] = ints[o] &* n &+ ints[o + 1]
                varies[j] = ints[o + 2]
            }
            return SelectGeometry(rank: r, dims: dims, varies: varies)
        }
    }

    /// The storage of input k for a step: integer values computed from shapes (known at compile time,
    /// with no storage of their own) are written by a `fillLinear` step into a temporary.
    static func runtimeInput(_ ctx: inout LoweringContext, _ k: Int) throws(InLoopError) -> Int32 {
        guard k < ctx.node.inputs.count, let v = ctx.node.inputs[k] else { throw InLoopError(.format, "input \(k) is required") }
        let value = ctx.builder.graph[v]
        guard value.constant == nil, let known = value.known else { return try ctx.input(k) }
        var g = [known.values.count]
        for s in known.values {
            let e = try ctx.extent([s], "an integer computed from shapes")
            g += [e.perBatch, e.fixed]
        }
        let t = ctx.temporary(Extent(fixed: known.values.count))
        ctx.emit(.fillLinear(geometry: ctx.ints(g), count: Extent(fixed: known.values.count)), [t])
        return t
    }

    /// Emits output 0 = op(input i, input j) as one `.logic` step (any dtype: values in T storage).
    static func lowerLogic(_ op: LogicOp, _ ctx: inout LoweringContext, _ i: Int, _ j: Int) throws(InLoopError) {
        let a = try input(ctx.inputTypes, i), b = try input(ctx.inputTypes, j)
        let sa = try runtimeInput(&ctx, i)
        var sb = sa
        if i != j { sb = try runtimeInput(&ctx, j) }
        let layout = try BroadcastLayout.encode(a.shape, b.shape, ctx.outputTypes[0].shape, batch: ctx.builder.graph.batch)
        ctx.unfold(output: 0)
        ctx.emit(.logic(op, geometry: ctx.ints(layout)), [sa, sb, try ctx.output(0)])
    }

    /// Run-time casts that involve booleans or integers (carried in T storage): float → bool is
    /// x != 0, float → int64 truncates toward zero, bool/int64 → float or int64 is the same storage,
    /// int64 → bool is x != 0. Returns false for what `CastOp.lower` does itself (float → float,
    /// integers known at compile time).
    static func lowerRuntimeCast(to: DType, _ ctx: inout LoweringContext) throws(InLoopError) -> Bool {
        let x = try input(ctx.inputTypes, 0)
        if x.dtype.isFloatingPoint && to.isFloatingPoint { return false }
        if !x.dtype.isFloatingPoint && ctx.knownInput(0) != nil { return false }
        switch (x.dtype.isFloatingPoint, to) {
        case (true, .bool): try lowerLogic(.nonzero, &ctx, 0, 0)
        case (true, .int64): try lowerLogic(.truncate, &ctx, 0, 0)
        case (true, _): return false
        case (false, .bool) where x.dtype == .int64: try lowerLogic(.nonzero, &ctx, 0, 0)
        case (false, _):
            ctx.unfold(output: 0)
            try ctx.alias(output: 0, input: 0)
        }
        return true
    }

    /// The known elements of `p` and `q` combined element-wise with broadcasting into booleans or
    /// integers, when every element is a known integer.
    static func combineConcrete(_ known: [KnownInts?], _ out: TensorType, _ f: @escaping (Int, Int) -> Int?) throws(InLoopError) -> [KnownInts?]? {
        guard known.count == 2, let p = known[0], let q = known[1] else { return nil }
        return try combineKnown(p, q, out) { a, b in
            guard let x = a.known, let y = b.known, let v = f(x, y) else { return nil }
            return SymInt(v)
        }.map { [$0] }
    }
}

// MARK: - comparisons and logic

/// The shared rules of the comparison and logic ops: two inputs of one type broadcast together, a
/// boolean result, one `.logic` step; integer inputs known at compile time are compared then.
public protocol LogicBinaryOpDefinition: OpDefinition where Attributes == NoAttributes {
    static var op: LogicOp { get }
    /// Whether the inputs must be booleans (And, Or, Xor).
    static var booleanInputs: Bool { get }
    /// The result on known integers (0/1).
    static func compare(_ a: Int, _ b: Int) -> Bool
}

extension LogicBinaryOpDefinition {
    public static var inputArity: ClosedRange<Int> { 2...2 }
    public static var booleanInputs: Bool { false }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        try Engine.refuseLegacyBroadcast(raw)
        return NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let (dtype, shape) = try Engine.broadcastPair(inputs, name)
        if booleanInputs && dtype != .bool { throw InLoopError(.format, "\(name) takes booleans, not \(dtype)") }
        return [Engine.TensorType(.bool, shape)]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        try Engine.combineConcrete(known, outputs[0]) { compare($0, $1) ? 1 : 0 }
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try Engine.lowerLogic(op, &ctx, 0, 1)
    }
}

public enum GreaterOp: LogicBinaryOpDefinition {
    public static let name = "Greater"
    public static let op = LogicOp.greater
    public static func compare(_ a: Int, _ b: Int) -> Bool { a > b }
}

public enum LessOp: LogicBinaryOpDefinition {
    public static let name = "Less"
    public static let op = LogicOp.less
    public static func compare(_ a: Int, _ b: Int) -> Bool { a < b }
}

public enum EqualOp: LogicBinaryOpDefinition {
    public static let name = "Equal"
    public static let op = LogicOp.equal
    public static func compare(_ a: Int, _ b: Int) -> Bool { a == b }
}

public enum GreaterOrEqualOp: LogicBinaryOpDefinition {
    public static let name = "GreaterOrEqual"
    public static let op = LogicOp.greaterOrEqual
    public static func compare(_ a: Int, _ b: Int) -> Bool { a >= b }
}

public enum LessOrEqualOp: LogicBinaryOpDefinition {
    public static let name = "LessOrEqual"
    public static let op = LogicOp.lessOrEqual
    public static func compare(_ a: Int, _ b: Int) -> Bool { a <= b }
}

public enum AndOp: LogicBinaryOpDefinition {
    public static let name = "And"
    public static let op = LogicOp.and
    public static var booleanInputs: Bool { true }
    public static func compare(_ a: Int, _ b: Int) -> Bool { a != 0 && b != 0 }
}

public enum OrOp: LogicBinaryOpDefinition {
    public static let name = "Or"
    public static let op = LogicOp.or
    public static var booleanInputs: Bool { true }
    public static func compare(_ a: Int, _ b: Int) -> Bool { a != 0 || b != 0 }
}

public enum XorOp: LogicBinaryOpDefinition {
    public static let name = "Xor"
    public static let op = LogicOp.xor
    public static var booleanInputs: Bool { true }
    public static func compare(_ a: Int, _ b: Int) -> Bool { (a != 0) != (b != 0) }
}

/// ONNX Not: a boolean input, its negation.
public enum NotOp: OpDefinition {
    public static let name = "Not"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype == .bool else { throw InLoopError(.format, "Not takes booleans, not \(x.dtype)") }
        return [x]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil else { return nil }
        var values: [Engine.SymInt] = []
        for v in k.values {
            guard let i = v.known else { return nil }
            values.append(Engine.SymInt(i == 0 ? 1 : 0))
        }
        return [try Engine.KnownInts(shape: k.shape, values: values)]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try Engine.lowerLogic(.not, &ctx, 0, 0)
    }
}

// MARK: - Mod, PRelu

/// ONNX Mod (opset 10, 13): `fmod` = 1 is C's fmod (the result has the dividend's sign), `fmod` = 0
/// the remainder with the divisor's sign (Python's %, NumPy's mod; ONNX first allowed it for
/// integers only, its current test cases also for floats). Integers are
/// exact in T storage up to 2^24 (float32) / 2^53 (float64); an integer division by zero is refused
/// when known at compile time and gives NaN at run time. Float Mod is differentiable: 1 for the
/// dividend, −trunc(a/b) (fmod = 1) or −floor(a/b) (fmod = 0) for the divisor.
public enum ModOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var fmod: Bool
        public func encoded() -> [String: Engine.AttributeValue] { fmod ? ["fmod": .int(1)] : [:] }
    }
    public static let name = "Mod"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let f = try raw.int("fmod", default: 0)
        guard f == 0 || f == 1 else { throw InLoopError(.format, "attribute 'fmod' is \(f); Mod takes 0 or 1") }
        return Attributes(fmod: f == 1)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let (dtype, shape) = try Engine.broadcastPair(inputs, name)
        guard dtype != .bool else { throw InLoopError(.format, "Mod of booleans") }
        return [Engine.TensorType(dtype, shape)]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard known.count == 2, let q = known[1] else { return nil }
        if q.values.contains(where: { $0.known == 0 }) { throw InLoopError(.format, "integer Mod by zero") }
        return try Engine.combineConcrete(known, outputs[0]) { x, y in
            let (r, overflow) = x.remainderReportingOverflow(dividingBy: y)
            if overflow { return nil }
            return !a.fmod && r != 0 && (r < 0) != (y < 0) ? r + y : r
        }
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try Engine.lowerLogic(a.fmod ? .fmod : .mod, &ctx, 0, 1)
    }
}

/// ONNX PRelu: y = x < 0 ? slope·x : x, the slope unidirectionally broadcast to x (torch exports
/// nn.PReLU(C) with a slope of shape [C, 1, 1] for NCHW, [1] for one shared slope). The slope may be a
/// constant or a trainable parameter (its gradient is summed over the axes it is broadcast along).
public enum PReluOp: OpDefinition {
    public static let name = "PRelu"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), s = try Engine.input(inputs, 1)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.unsupported, "PRelu of \(x.dtype) values") }
        guard s.dtype == x.dtype else { throw InLoopError(.format, "a \(s.dtype) slope for \(x.dtype) values") }
        let y = try Engine.broadcast(x.shape, s.shape)
        guard y == x.shape else {
            throw InLoopError(.format, "slope of shape \(s.shape.formatted) does not broadcast to the input's \(x.shape.formatted)")
        }
        return [x]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try Engine.lowerLogic(.prelu, &ctx, 0, 1)
    }
}

// MARK: - Where

/// ONNX Where: out = condition ? x : y, the three broadcast together (one `.select` step). The
/// gradient goes to x where the condition holds and to y where it does not (summed over the axes each
/// is broadcast along); the condition gets none.
public enum WhereOp: OpDefinition {
    public static let name = "Where"
    public static let inputArity: ClosedRange<Int> = 3...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let c = try Engine.input(inputs, 0), x = try Engine.input(inputs, 1), y = try Engine.input(inputs, 2)
        guard c.dtype == .bool else { throw InLoopError(.format, "condition of type \(c.dtype); Where takes booleans") }
        guard x.dtype == y.dtype else { throw InLoopError(.format, "inputs of types \(x.dtype) and \(y.dtype): Where needs one type") }
        let out = Engine.TensorType(x.dtype, try Engine.broadcast(try Engine.broadcast(c.shape, x.shape), y.shape))
        try Engine.checkRank(out, "the output")
        return [out]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard known.count == 3, let c = known[0], let x = known[1], let y = known[2], let shape = outputs[0].shape.known,
              let n = try? InLoopCore.Tensor.elementCount(shape), n <= Engine.maxKnownElements else { return nil }
        let ic = Engine.broadcastIndices(c.shape, to: shape), ix = Engine.broadcastIndices(x.shape, to: shape)
        let iy = Engine.broadcastIndices(y.shape, to: shape)
        var values: [Engine.SymInt] = []
        for k in 0..<n {
            guard let cv = c.values[ic[k]].known else { return nil }
            values.append(cv != 0 ? x.values[ix[k]] : y.values[iy[k]])
        }
        return [try Engine.KnownInts(shape: shape, values: values)]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        var shapes: [Engine.Shape] = []
        var ops: [Int32] = []
        for k in 0..<3 {
            shapes.append(try Engine.input(ctx.inputTypes, k).shape)
            ops.append(try Engine.runtimeInput(&ctx, k))
        }
        let layout = try Engine.SelectLayout.encode(shapes, ctx.outputTypes[0].shape, batch: ctx.builder.graph.batch)
        ctx.unfold(output: 0)
        ctx.emit(.select(geometry: ctx.ints(layout)), ops + [try ctx.output(0)])
    }
}

// MARK: - CastLike

/// ONNX CastLike (opset 15): Cast to the type of the second input (its values are not read).
/// Booleans and integers at run time are carried in T storage (see the file header).
public enum CastLikeOp: OpDefinition {
    public static let name = "CastLike"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        // `saturate` (opset 19) only concerns float8 targets, which InLoop does not have
        NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), like = try Engine.input(inputs, 1)
        return [Engine.TensorType(like.dtype, x.shape)]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        try CastOp.evaluate(CastOp.Attributes(to: outputs[0].dtype), Array(inputs.prefix(1)), Array(known.prefix(1)), outputs: outputs)
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let to = ctx.outputTypes[0].dtype
        if try Engine.lowerRuntimeCast(to: to, &ctx) { return }
        try CastOp.lower(CastOp.Attributes(to: to), &ctx)
    }
}

// MARK: - Expand, Tile

extension Engine {
    /// Emits output 0 = input 0 through a strided copy over `dims` (row-major output) with input
    /// strides `xStrides` (0 along repeated axes). Folded when the input is a constant and the output
    /// shape is known; its adjoint (the reversed copy, accumulating) sums the repeats.
    static func emitRepeat(_ ctx: inout LoweringContext, dims: [SymInt], xStrides: [SymInt]) throws(InLoopError) {
        // size-1 axes move nothing
        var d: [SymInt] = [], s: [SymInt] = []
        for (k, v) in dims.enumerated() where v.known != 1 { d.append(v); s.append(xStrides[k]) }
        guard d.count <= maxRank else {
            throw InLoopError(.unsupported, "a repeat over \(d.count) strided axes; InLoop takes up to \(maxRank)")
        }
        if ctx.outputTypes[0].shape.known != nil {
            try Layout.emitCopy(&ctx, input: 0, output: 0, dims: d, xStrides: s, xBase: 0)
            return
        }
        let covers = try ctx.outputExtent(0) == ctx.inputExtent(0)
        let geometry = try Layout.gatherGeometry(ctx, dims: d, xStrides: s, xBase: 0, coversSource: covers)
        ctx.unfold(output: 0)
        ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [try ctx.input(0), try ctx.output(0)])
    }

    /// The elements of a known integer tensor (shape dims may be symbolic, e.g. from Shape).
    static func knownSymbols(_ known: [KnownInts?], _ k: Int, _ what: String) throws(InLoopError) -> [SymInt] {
        guard k < known.count, let kn = known[k] else {
            throw InLoopError(.unsupported, "\(what) must be known when the model is compiled (a constant or computed from shapes)")
        }
        guard kn.shape.count == 1 else { throw InLoopError(.format, "\(what) must be a 1-D tensor, got shape \(InLoopCore.Tensor.format(kn.shape))") }
        guard kn.values.count <= maxRank else { throw InLoopError(.unsupported, "\(what) has \(kn.values.count) entries; InLoop takes ranks up to \(maxRank)") }
        return kn.values
    }

    /// Known integer elements of the repeat of `k` to `outShape` (Expand, Tile), through `source`
    /// (the input's flat index of each output element).
    static func repeatKnown(_ k: KnownInts?, _ out: TensorType, _ source: ([Int], [Int]) -> [Int]) throws(InLoopError) -> [KnownInts?]? {
        guard let k, let shape = out.shape.known, let n = try? InLoopCore.Tensor.elementCount(shape), n <= maxKnownElements else { return nil }
        return [try KnownInts(shape: shape, values: source(k.shape, shape).map { k.values[$0] })]
    }
}

/// ONNX Expand (opset 8, 13): the input broadcast with a shape (bidirectionally: a 1 in the shape
/// keeps the input's dimension). The shape must be known at compile time; it may hold the batch
/// symbol (a [1, K] constant expanded to Shape(x) = [N, K]).
public enum ExpandOp: OpDefinition {
    public static let name = "Expand"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), s = try Engine.input(inputs, 1)
        guard s.dtype == .int64 else { throw InLoopError(.format, "shape of type \(s.dtype); Expand takes int64") }
        let shape = try Engine.knownSymbols(known, 1, "Expand's shape")
        for v in shape where (v.known ?? 0) < 0 { throw InLoopError(.format, "Expand's shape \(shape.formatted) has a negative dimension") }
        let out = Engine.TensorType(x.dtype, try Engine.broadcast(x.shape, shape))
        try Engine.checkRank(out, "the output")
        return [out]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        try Engine.repeatKnown(known.first ?? nil, outputs[0]) { Engine.broadcastIndices($0, to: $1) }
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0), out = ctx.outputTypes[0].shape
        if x.shape == out { try ctx.aliasOrFold(output: 0, input: 0); return }
        let xs = try Engine.Layout.strides(x.shape)
        let r = out.count, off = r - x.rank
        var strides: [Engine.SymInt] = []
        for i in 0..<r {
            let j = i - off
            if j < 0 || x.shape[j].known == 1 { strides.append(0); continue }
            // a symbolic dimension stretched to a known size depends on the batch's value
            guard x.shape[j] == out[i] else { throw Engine.notLinear("Expand of \(x.shape.formatted) to \(out.formatted)") }
            strides.append(xs[j])
        }
        try Engine.emitRepeat(&ctx, dims: out, xStrides: strides)
    }
}

/// ONNX Tile (opset 6, 13): each axis repeated `repeats[i]` times; the repeats must be known at
/// compile time (non-negative integers); the input may hold the batch symbol on any axis.
public enum TileOp: OpDefinition {
    public static let name = "Tile"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    static func repeats(_ x: Engine.TensorType, _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Int] {
        let r = try Engine.knownSymbols(known, 1, "Tile's repeats")
        guard r.count == x.rank else { throw InLoopError(.format, "Tile's repeats \(r.formatted) for an input of rank \(x.rank)") }
        var out: [Int] = []
        for v in r {
            guard let k = v.known else { throw InLoopError(.unsupported, "Tile's repeats \(r.formatted) depend on the batch") }
            guard k >= 0, k <= Limits.maxDimension else { throw InLoopError(.format, "Tile's repeat \(k) is out of range") }
            out.append(k)
        }
        return out
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), rt = try Engine.input(inputs, 1)
        guard rt.dtype == .int64 else { throw InLoopError(.format, "repeats of type \(rt.dtype); Tile takes int64") }
        let reps = try repeats(x, known)
        var shape: Engine.Shape = []
        for (d, k) in zip(x.shape, reps) { shape.append(try Engine.linear(d * Engine.SymInt(k), "Tile of \(x.shape.formatted)")) }
        return [Engine.TensorType(x.dtype, shape)]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        try Engine.repeatKnown(known.first ?? nil, outputs[0]) { inShape, outShape in
            // output index → input index i_d mod inShape[d] (all shapes known)
            let r = outShape.count
            let total = outShape.reduce(1, *)
            var idx = [Int](repeating: 0, count: r), out: [Int] = []
            out.reserveCapacity(total)
            for _ in 0..<total {
                var p = 0
                for d in 0..<r { p = p * inShape[d] + idx[d] % Swift.max(inShape[d], 1) }
                out.append(p)
                var d = r - 1
                while d >= 0 { idx[d] += 1; if idx[d] < outShape[d] { break }; idx[d] = 0; d -= 1 }
            }
            return out
        }
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let reps = try repeats(x, [nil, ctx.knownInput(1)])
        if reps.allSatisfy({ $0 == 1 }) { try ctx.aliasOrFold(output: 0, input: 0); return }
        let xs = try Engine.Layout.strides(x.shape)
        // axis d of size x_d repeated k times: output axes (k, x_d) with input strides (0, stride_d)
        var dims: [Engine.SymInt] = [], strides: [Engine.SymInt] = []
        for d in 0..<x.rank {
            if reps[d] != 1 { dims.append(Engine.SymInt(reps[d])); strides.append(0) }
            dims.append(x.shape[d]); strides.append(xs[d])
        }
        try Engine.emitRepeat(&ctx, dims: dims, xStrides: strides)
    }
}

// MARK: - Sum, Mean

/// ONNX Sum: 1 to N inputs broadcast together, a chain of broadcast adds (left to right).
public enum SumOp: VariadicBinaryOpDefinition {
    public static let name = "Sum"
    public static let op = BinaryOp.add
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a + b }
}

/// ONNX Mean: the Sum chain, then one scaling by 1/k (`.channelAffine`, one channel; the result may
/// differ from a division by k in the last bit).
public enum MeanOp: OpDefinition {
    public static let name = "Mean"
    public static var inputArity: ClosedRange<Int> { 1...1024 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let t = try SumOp.inferTypes(a, inputs, known)
        guard t[0].dtype.isFloatingPoint else { throw InLoopError(.unsupported, "Mean of \(t[0].dtype) values") }
        return t
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let count = ctx.node.inputs.count
        if count == 1 { try ctx.aliasOrFold(output: 0, input: 0); return }
        var acc = (try ctx.input(0), try Engine.input(ctx.inputTypes, 0).shape)
        for k in 1..<count {
            let b = try Engine.input(ctx.inputTypes, k)
            let shape = k == count - 1 ? ctx.outputTypes[0].shape : try Engine.broadcast(acc.1, b.shape)
            let y = ctx.temporary(try ctx.extent(shape))
            try Engine.lowerBroadcast(.add, &ctx, a: acc, b: (try ctx.input(k), b.shape), output: y, outputShape: shape)
            acc = (y, shape)
        }
        let coef = ctx.ints([NormKernels.bits(1 / Double(count)), NormKernels.bits(0)])
        ctx.emit(.channelAffine(outer: try ctx.outputExtent(0), channels: 1, spatial: Engine.Extent(fixed: 1), coefficients: coef,
                                shift: true, accumulate: false), [acc.0, try ctx.output(0)])
    }
}
