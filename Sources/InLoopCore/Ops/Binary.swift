/// Element-wise binary ops with NumPy (multidirectional) broadcasting: Add, Sub, Mul, Div, Pow, and the
/// variadic Min and Max.
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

extension Engine {
    /// Refuses the `broadcast`/`axis` attributes of opset < 7 (no exporter writes them today).
    static func refuseLegacyBroadcast(_ raw: [String: AttributeValue]) throws(InLoopError) {
        if raw["broadcast"] != nil || raw["axis"] != nil {
            throw InLoopError(.unsupported, "legacy broadcast attributes (opset < 7)")
        }
    }

    /// Inputs 0 and 1 of `op`, of one element type, broadcast together: that type and the shape.
    static func broadcastPair(_ inputs: [TensorType?], _ op: String) throws(InLoopError) -> (DType, Shape) {
        let x = try input(inputs, 0), y = try input(inputs, 1)
        guard x.dtype == y.dtype else {
            throw InLoopError(.format, "inputs of types \(x.dtype) and \(y.dtype): \(op) needs one type")
        }
        return (x.dtype, try broadcast(x.shape, y.shape))
    }
}

/// The shared rules of the broadcasting binary ops.
public protocol BinaryOpDefinition: OpDefinition where Attributes == NoAttributes {
    /// The kernel's operator.
    static var op: BinaryOp { get }
    /// The integer result (shape computations), nil when not linear.
    static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt?
}

extension BinaryOpDefinition {
    public static var inputArity: ClosedRange<Int> { 2...2 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        try Engine.refuseLegacyBroadcast(raw)
        return NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let (dtype, shape) = try Engine.broadcastPair(inputs, name)
        return [Engine.TensorType(dtype, shape)]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard known.count == 2, let p = known[0], let q = known[1] else { return nil }
        return try Engine.combineKnown(p, q, outputs[0], combine).map { [$0] }
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try Engine.lowerBroadcast(op, &ctx, 0, 1, output: try ctx.output(0), outputShape: ctx.outputTypes[0].shape)
    }
}

extension Engine {
    /// Element-wise combination of two known integer tensors (broadcast), or nil.
    static func combineKnown(_ p: KnownInts, _ q: KnownInts, _ out: TensorType,
                             _ combine: (SymInt, SymInt) -> SymInt?) throws(InLoopError) -> KnownInts? {
        guard let shape = out.shape.known, let n = try? InLoopCore.Tensor.elementCount(shape), n <= Engine.maxKnownElements else {
            return nil
        }
        let ip = Engine.broadcastIndices(p.shape, to: shape), iq = Engine.broadcastIndices(q.shape, to: shape)
        var values: [SymInt] = []
        values.reserveCapacity(ip.count)
        for k in ip.indices {
            guard let v = combine(p.values[ip[k]], q.values[iq[k]]) else { return nil }
            values.append(v)
        }
        return try KnownInts(shape: shape, values: values)
    }

    /// Emits y = op(input i, input j) into storage `y` of shape `outputShape` (a broadcast step).
    static func lowerBroadcast(_ op: BinaryOp, _ ctx: inout LoweringContext, _ i: Int, _ j: Int,
                               output y: Int32, outputShape: Shape) throws(InLoopError) {
        let a = try input(ctx.inputTypes, i), b = try input(ctx.inputTypes, j)
        guard a.dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "\(op) of \(a.dtype) values at run time; InLoop computes floating values")
        }
        try lowerBroadcast(op, &ctx, a: (try ctx.input(i), a.shape), b: (try ctx.input(j), b.shape), output: y, outputShape: outputShape)
    }

    static func lowerBroadcast(_ op: BinaryOp, _ ctx: inout LoweringContext, a: (Int32, Shape), b: (Int32, Shape),
                               output y: Int32, outputShape: Shape) throws(InLoopError) {
        let layout = try BroadcastLayout.encode(a.1, b.1, outputShape, batch: ctx.builder.graph.batch)
        ctx.emit(.broadcast(op, geometry: ctx.ints(layout)), [a.0, b.0, y])
    }
}

public enum AddOp: BinaryOpDefinition {
    public static let name = "Add"
    public static let op = BinaryOp.add
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a + b }

    /// Same shapes: the plain `add` step (what layer lists' residual blocks run, bit for bit);
    /// otherwise a broadcast.
    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0), y = try Engine.input(ctx.inputTypes, 1)
        if x.shape == y.shape && x.dtype.isFloatingPoint {
            ctx.emit(.add(count: try ctx.outputExtent(0)), [try ctx.input(0), try ctx.input(1), try ctx.output(0)])
        } else {
            try Engine.lowerBroadcast(op, &ctx, 0, 1, output: try ctx.output(0), outputShape: ctx.outputTypes[0].shape)
        }
    }
}

public enum SubOp: BinaryOpDefinition {
    public static let name = "Sub"
    public static let op = BinaryOp.sub
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a - b }
}

public enum MulOp: BinaryOpDefinition {
    public static let name = "Mul"
    public static let op = BinaryOp.mul
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a * b }
}

public enum DivOp: BinaryOpDefinition {
    public static let name = "Div"
    public static let op = BinaryOp.div
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { a / b }
}

/// ONNX Pow: base and exponent broadcast. The exponent may be of another type when it is a constant
/// (float32/float64, converted; int64 known at compile time); a one-element exponent known at compile time lowers to the unary power
/// (exact shortcuts for 2, 1, 0.5 and 3 in inference plans), any other to the broadcast step.
public enum PowOp: BinaryOpDefinition {
    public static let name = "Pow"
    public static let op = BinaryOp.pow
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { nil }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), e = try Engine.input(inputs, 1)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.unsupported, "Pow of \(x.dtype) values; InLoop computes floating values") }
        // ONNX lets the exponent's type differ; InLoop takes any floating one (converted when it is a
        // constant: checked when lowered) and integer ones known at compile time
        guard e.dtype.isFloatingPoint || (e.dtype == .int64 && known.count > 1 && known[1] != nil) else {
            throw InLoopError(.format, "exponent of type \(e.dtype) for a \(x.dtype) base (an integer exponent must be a constant)")
        }
        return [Engine.TensorType(x.dtype, try Engine.broadcast(x.shape, e.shape))]
    }

    /// The exponent when it is one element known at compile time and exact in float32.
    static func scalarExponent(_ ctx: Engine.LoweringContext) throws(InLoopError) -> Float? {
        guard ctx.node.inputs.count > 1, let v = ctx.node.inputs[1] else { return nil }
        let value = ctx.builder.graph[v]
        if let k = value.known, k.values.count == 1, let i = k.values[0].known, let f = Float(exactly: i) { return f }
        guard let t = value.constant, t.count == 1 else { return nil }
        let d: Double
        switch t.dtype {
        case .float32: d = Double(try t.values(as: Float.self)[0])
        case .float64: d = try t.values(as: Double.self)[0]
        case .int64, .bool: return nil
        }
        return Float(exactly: d)
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        if let e = try scalarExponent(ctx) {
            // one exponent for every element: y has x's elements in x's order
            ctx.emit(.unary(.pow(exponent: e), count: try ctx.inputExtent(0)), [try ctx.input(0), try ctx.output(0)])
            return
        }
        let e = try Engine.input(ctx.inputTypes, 1)
        guard e.dtype == x.dtype || (e.dtype.isFloatingPoint && ctx.isConstant(1)) else {
            throw InLoopError(.unsupported, e.dtype.isFloatingPoint
                ? "a \(e.dtype) exponent computed at run time for a \(x.dtype) base"
                : "an integer exponent with more than one element")
        }
        try Engine.lowerBroadcast(op, &ctx, 0, 1, output: try ctx.output(0), outputShape: ctx.outputTypes[0].shape)
    }
}

/// ONNX Min and Max: 1 to N inputs, broadcast together; lowered to a chain of broadcast steps
/// (ties and NaN go to the earlier input, in the forward value and in the gradient).
public protocol VariadicBinaryOpDefinition: OpDefinition where Attributes == NoAttributes {
    static var op: BinaryOp { get }
    static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt?
}

extension VariadicBinaryOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...1024 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        var t = try Engine.input(inputs, 0)
        for k in 1..<Swift.max(inputs.count, 1) {
            let u = try Engine.input(inputs, k)
            guard u.dtype == t.dtype else { throw InLoopError(.format, "input \(k) is \(u.dtype), input 0 \(t.dtype): \(name) needs one type") }
            t.shape = try Engine.broadcast(t.shape, u.shape)
        }
        try Engine.checkRank(t, "the output")
        return [t]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard var acc = known.first ?? nil else { return nil }
        for k in known.dropFirst() {
            guard let k, let next = try Engine.combineKnown(acc, k, outputs[0], combine) else { return nil }
            acc = next
        }
        return [try Engine.KnownInts(shape: outputs[0].shape.known ?? acc.shape, values: acc.values)]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let count = ctx.node.inputs.count
        if count == 1 { try ctx.alias(output: 0, input: 0); return }
        var acc = (try ctx.input(0), try Engine.input(ctx.inputTypes, 0).shape)
        guard try Engine.input(ctx.inputTypes, 0).dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "\(name) of integer values at run time; InLoop computes floating values")
        }
        for k in 1..<count {
            let b = try Engine.input(ctx.inputTypes, k)
            let last = k == count - 1
            let shape = last ? ctx.outputTypes[0].shape : try Engine.broadcast(acc.1, b.shape)
            let y = last ? try ctx.output(0) : ctx.temporary(try ctx.extent(shape))
            try Engine.lowerBroadcast(op, &ctx, a: acc, b: (try ctx.input(k), b.shape), output: y, outputShape: shape)
            acc = (y, shape)
        }
    }
}

public enum MinOp: VariadicBinaryOpDefinition {
    public static let name = "Min"
    public static let op = BinaryOp.min
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { Engine.SymInt.min(a, b) }
}

public enum MaxOp: VariadicBinaryOpDefinition {
    public static let name = "Max"
    public static let op = BinaryOp.max
    public static func combine(_ a: Engine.SymInt, _ b: Engine.SymInt) -> Engine.SymInt? { Engine.SymInt.max(a, b) }
}

extension BinaryOpDefinition {
    /// Per sample (threads): element-wise, static operands broadcast.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension VariadicBinaryOpDefinition {
    /// Per sample (threads): element-wise, static operands broadcast.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
