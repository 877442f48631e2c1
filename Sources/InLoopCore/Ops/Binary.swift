/// Element-wise binary ops with NumPy (multidirectional) broadcasting: Add, Sub, Mul, Div.
extension Engine {
    /// The broadcast shape of two shapes, aligned at their last axes. A dimension of 1 stretches; a
    /// symbolic dimension against a known one larger than 1 takes the known one (at run time the
    /// symbol must then be 1 or that value, checked when the plan is bound); two different symbols
    /// are not linear (the plan is specialised).
    public static func broadcast(_ a: Shape, _ b: Shape) throws(InLoopError) -> Shape {
        let r = Swift.max(a.count, b.count)
        var out = Shape(repeating: 1, count: r)
        for i in 0..<r {
            let x: SymInt = i < r - a.count ? 1 : a[i - (r - a.count)]
            let y: SymInt = i < r - b.count ? 1 : b[i - (r - b.count)]
            if x == y || y.known == 1 { out[i] = x; continue }
            if x.known == 1 { out[i] = y; continue }
            switch (x.known, y.known) {
            case (let p?, let q?):
                throw InLoopError(.format, "shapes \(a.formatted) and \(b.formatted) do not broadcast (\(p) against \(q))")
            case (nil, let q?): out[i] = SymInt(q)
            case (let p?, nil): out[i] = SymInt(p)
            case (nil, nil): throw notLinear("shapes \(a.formatted) and \(b.formatted)")
            }
        }
        return out
    }

    /// For each element of a tensor of `outShape`, the index of the element of a tensor of `inShape`
    /// that broadcasting maps to it (all shapes known).
    static func broadcastIndices(_ inShape: [Int], to outShape: [Int]) -> [Int] {
        let r = outShape.count, off = r - inShape.count
        var strides = [Int](repeating: 0, count: r)
        var s = 1
        for i in stride(from: inShape.count - 1, through: 0, by: -1) {
            strides[i + off] = inShape[i] == 1 ? 0 : s
            s *= inShape[i]
        }
        let n = outShape.reduce(1, *)
        var out = [Int](repeating: 0, count: n)
        var idx = [Int](repeating: 0, count: r)
        for k in 0..<n {
            var p = 0
            for i in 0..<r { p += idx[i] * strides[i] }
            out[k] = p
            var i = r - 1
            while i >= 0 {
                idx[i] += 1
                if idx[i] < outShape[i] { break }
                idx[i] = 0
                i -= 1
            }
        }
        return out
    }
}

/// The shared rules of the broadcasting binary ops.
public protocol BinaryOpDefinition: OpDefinition where Attributes == NoAttributes {
    /// The integer result (shape computations), nil when not linear.
    static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt?
}

extension BinaryOpDefinition {
    public static var inputArity: ClosedRange<Int> { 2...2 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        // opset < 7 `broadcast`/`axis` legacy attributes are not supported (no exporter writes them today).
        if raw["broadcast"] != nil || raw["axis"] != nil {
            throw InLoopError(.unsupported, "legacy broadcast attributes (opset < 7)")
        }
        return NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), y = try Engine.input(inputs, 1)
        guard x.dtype == y.dtype else {
            throw InLoopError(.format, "inputs of types \(x.dtype) and \(y.dtype): \(name) needs one type")
        }
        return [Engine.TensorType(x.dtype, try Engine.broadcast(x.shape, y.shape))]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard known.count == 2, let p = known[0], let q = known[1], let shape = outputs[0].shape.known,
              shape.reduce(1, *) <= Engine.maxKnownElements else { return nil }
        let ip = Engine.broadcastIndices(p.shape, to: shape), iq = Engine.broadcastIndices(q.shape, to: shape)
        var values: [Engine.SymInt] = []
        values.reserveCapacity(ip.count)
        for k in ip.indices {
            guard let v = combine(p.values[ip[k]], q.values[iq[k]]) else { return nil }
            values.append(v)
        }
        return [try Engine.KnownInts(shape: shape, values: values)]
    }
}

public enum AddOp: BinaryOpDefinition {
    public static let name = "Add"
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a + b }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0), y = try Engine.input(ctx.inputTypes, 1)
        guard x.shape == y.shape else {
            throw InLoopError(.unsupported, "broadcasting Add (\(x.shape.formatted) + \(y.shape.formatted)) is not lowered yet")
        }
        let count = try ctx.outputExtent(0)
        ctx.emit(.add(count: count), [try ctx.input(0), try ctx.input(1), try ctx.output(0)])
    }
}

public enum SubOp: BinaryOpDefinition {
    public static let name = "Sub"
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a - b }
}

public enum MulOp: BinaryOpDefinition {
    public static let name = "Mul"
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a * b }
}

public enum DivOp: BinaryOpDefinition {
    public static let name = "Div"
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a / b }
}
