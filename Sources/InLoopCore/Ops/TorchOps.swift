/// Ops that torch's exporters emit for everyday models and the other families lack (issue 10, item 6):
/// Trilu (the causal mask of `F.scaled_dot_product_attention(..., is_causal=True)` and
/// `nn.Transformer.generate_square_subsequent_mask`, both exporters).
///
/// Trilu keeps the lower (`upper = 0`) or upper (`upper = 1`, the default) triangle of the last two
/// axes, from diagonal k (optional input 1, an int64 scalar known at compile time), and zeros the
/// rest. Integer inputs known at compile time are folded (`evaluate`); floating inputs lower to a
/// `.select` step whose condition is the triangle (a `fillLinear` of 0/1, the matrix size must be
/// known) and whose other branch is a filled zero: the value is routed exactly (an infinity outside
/// the triangle becomes 0, not NaN), and the reverse and tangent are `.select`'s rules.

public struct TriluAttributes: OpAttributeSet, Equatable {
    public var upper: Bool
    public func encoded() -> [String: Engine.AttributeValue] { ["upper": .int(upper ? 1 : 0)] }
}

public enum TriluOp: OpDefinition {
    public static let name = "Trilu"
    public static let sinceVersion: ClosedRange<Int> = 14...Int.max
    public static let inputArity: ClosedRange<Int> = 1...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> TriluAttributes {
        let u = try raw.int("upper", default: 1)
        guard u == 0 || u == 1 else { throw InLoopError(.format, "attribute 'upper' is \(u); it must be 0 or 1") }
        return TriluAttributes(upper: u == 1)
    }

    public static func inferTypes(_ a: TriluAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.rank >= 2 else { throw InLoopError(.format, "input \(x.shape.formatted) has rank \(x.rank); Trilu needs rank 2 or more") }
        if inputs.count > 1, let k = inputs[1] {
            guard k.dtype == .int64, k.shape.elementCount?.known == 1 else {
                throw InLoopError(.format, "k is \(k); it must be an int64 scalar")
            }
        }
        return [x]
    }

    /// The diagonal k: 0 without input 1, else its value known at compile time.
    static func diagonal(_ known: [Engine.KnownInts?], present: Bool) throws(InLoopError) -> Int {
        guard present else { return 0 }
        guard known.count > 1, let k = known[1], k.values.count == 1, let v = k.values[0].known else {
            throw InLoopError(.unsupported, "Trilu's k must be known at compile time (a constant or computed from shapes)")
        }
        return v
    }

    /// Whether element (i, j) of a matrix is kept. Overflow-free for any k (|k| is clamped by the sizes).
    static func keeps(_ i: Int, _ j: Int, k: Int, upper: Bool) -> Bool {
        let d = j - i   // |d| < 2^31: the dimensions are bounded
        return upper ? d >= k : d <= k
    }

    public static func evaluate(_ a: TriluAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let x = known.first ?? nil, x.shape.count >= 2,
              let k = try? diagonal(known, present: inputs.count > 1 && inputs[1] != nil) else { return nil }
        let r = x.shape[x.shape.count - 2], c = x.shape[x.shape.count - 1]
        var values = x.values
        for e in values.indices {
            let inMatrix = e % max(r * c, 1)
            if !keeps(inMatrix / max(c, 1), inMatrix % max(c, 1), k: k, upper: a.upper) { values[e] = 0 }
        }
        return [try Engine.KnownInts(shape: x.shape, values: values)]
    }

    public static func lower(_ a: TriluAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        guard x.dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "Trilu of \(x.dtype) values at run time; InLoop computes floating values")
        }
        let present = ctx.hasInput(1)
        var known: [Engine.KnownInts?] = [nil, nil]
        if present, let v = ctx.node.inputs[1] { known[1] = ctx.builder.graph[v].known }
        let k = try diagonal(known, present: present)
        guard let r = x.shape[x.rank - 2].known, let c = x.shape[x.rank - 1].known else {
            throw InLoopError(.unsupported, "Trilu of \(x.shape.formatted): the last two dimensions must be known at compile time")
        }
        let count = r * c   // both ≤ 2^31 − 1, so no overflow on 64 bits
        guard count <= Engine.maxKnownElements else {
            throw InLoopError(.unsupported, "Trilu of a \(r)×\(c) matrix; InLoop takes up to \(Engine.maxKnownElements) elements")
        }
        var g = [count]
        g.reserveCapacity(1 + 2 * count)
        for i in 0..<r {
            for j in 0..<c { g += [0, keeps(i, j, k: k, upper: a.upper) ? 1 : 0] }
        }
        let mask = ctx.temporary(Engine.Extent(fixed: count))
        ctx.emit(.fillLinear(geometry: ctx.ints(g), count: Engine.Extent(fixed: count)), [mask])
        let zero = ctx.temporary(Engine.Extent(fixed: 1))
        ctx.emit(.fill(count: Engine.Extent(fixed: 1), value: 0), [zero])
        let layout = try Engine.SelectLayout.encode([[Engine.SymInt(r), Engine.SymInt(c)], x.shape, []], ctx.outputTypes[0].shape,
                                                    batch: ctx.builder.graph.batch)
        ctx.unfold(output: 0)
        ctx.emit(.select(geometry: ctx.ints(layout)), [mask, try ctx.input(0), zero, try ctx.output(0)])
    }
}
