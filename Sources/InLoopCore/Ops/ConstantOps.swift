/// Ops computed when the model is compiled: Constant, ConstantOfShape, Range, Size, and Cast. Integer
/// results are known values (`evaluate`, shape computations); float results of constant inputs are
/// folded into constants of the plan. What stays for run time: a fill when a ConstantOfShape's shape
/// depends on the batch, a float Cast of integers computed from the batch size, and float→float Casts.

extension Engine.TensorValue {
    /// The tensor it describes, with its element count checked.
    func tensor() throws(InLoopError) -> Engine.Tensor {
        let n = try InLoopCore.Tensor.elementCount(shape)
        switch dtype {
        case .float32:
            guard floats.count == n else { throw InLoopError(.format, "a tensor of shape \(InLoopCore.Tensor.format(shape)) holds \(floats.count) values") }
            return try Engine.Tensor(shape: shape, values: floats.map { Float($0) })
        case .float64:
            guard floats.count == n else { throw InLoopError(.format, "a tensor of shape \(InLoopCore.Tensor.format(shape)) holds \(floats.count) values") }
            return try Engine.Tensor(shape: shape, values: floats)
        case .int64:
            guard ints.count == n else { throw InLoopError(.format, "a tensor of shape \(InLoopCore.Tensor.format(shape)) holds \(ints.count) values") }
            return try Engine.Tensor(shape: shape, values: ints.map { Int64($0) })
        case .bool:
            guard ints.count == n else { throw InLoopError(.format, "a tensor of shape \(InLoopCore.Tensor.format(shape)) holds \(ints.count) values") }
            return try Engine.Tensor(shape: shape, values: ints.map { $0 != 0 })
        }
    }

    /// Checks the shape and the number of elements.
    func checked() throws(InLoopError) -> Engine.TensorValue {
        guard shape.count <= Engine.maxRank, shape.allSatisfy({ $0 >= 0 && $0 <= Limits.maxDimension }) else {
            throw InLoopError(.format, "tensor shape \(InLoopCore.Tensor.format(shape)) is out of range")
        }
        let n = try InLoopCore.Tensor.elementCount(shape)
        guard (dtype.isFloatingPoint ? floats.count : ints.count) == n else {
            throw InLoopError(.format, "a \(dtype) tensor of shape \(InLoopCore.Tensor.format(shape)) holds \(dtype.isFloatingPoint ? floats.count : ints.count) values")
        }
        return self
    }

    var knownInts: Engine.KnownInts? {
        guard !dtype.isFloatingPoint, ints.count <= Engine.maxKnownElements else { return nil }
        return try? Engine.KnownInts(shape: shape, values: ints.map { Engine.SymInt(dtype == .bool ? ($0 != 0 ? 1 : 0) : $0) })
    }
}

public struct TensorAttribute: OpAttributeSet, Equatable {
    public var value: Engine.TensorValue
    public func encoded() -> [String: Engine.AttributeValue] { ["value": .tensor(value)] }
}

public enum ConstantOp: OpDefinition {
    public static let name = "Constant"
    public static let inputArity: ClosedRange<Int> = 0...0

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> TensorAttribute {
        let given = raw.keys.filter { $0.hasPrefix("value") || $0 == "sparse_value" }
        guard given.count == 1, let key = given.first, let v = raw[key] else {
            throw InLoopError(.format, "exactly one of value, value_float(s), value_int(s) is required, got \(given.sorted())")
        }
        let t: Engine.TensorValue
        switch (key, v) {
        case ("value", .tensor(let x)): t = x
        case ("value_float", .float(let f)): t = Engine.TensorValue(dtype: .float32, shape: [], floats: [f])
        case ("value_floats", .floats(let f)): t = Engine.TensorValue(dtype: .float32, shape: [f.count], floats: f)
        case ("value_int", .int(let i)): t = Engine.TensorValue(dtype: .int64, shape: [], ints: [i])
        case ("value_ints", .ints(let i)): t = Engine.TensorValue(dtype: .int64, shape: [i.count], ints: i)
        case ("value_string", _), ("value_strings", _), ("sparse_value", _):
            throw InLoopError(.unsupported, "a Constant of \(key)")
        default:
            throw InLoopError(.format, "attribute '\(key)' has the wrong kind")
        }
        return TensorAttribute(value: try t.checked())
    }

    public static func inferTypes(_ a: TensorAttribute, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        [Engine.TensorType(a.value.dtype, a.value.shape.map { Engine.SymInt($0) })]
    }

    public static func evaluate(_ a: TensorAttribute, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        [a.value.knownInts]
    }

    public static func lower(_ a: TensorAttribute, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        guard a.value.dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "an integer Constant is needed at run time; InLoop computes float values only")
        }
        ctx.fold(output: 0, try a.value.tensor())
    }
}

/// ConstantOfShape: a tensor of the given shape filled with `value` (one element; default float32 0).
public enum ConstantOfShapeOp: OpDefinition {
    public static let name = "ConstantOfShape"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> TensorAttribute {
        guard let v = raw["value"] else { return TensorAttribute(value: Engine.TensorValue(dtype: .float32, shape: [1], floats: [0])) }
        guard case .tensor(let t) = v else { throw InLoopError(.format, "attribute 'value' must be a tensor") }
        let c = try t.checked()
        guard (c.dtype.isFloatingPoint ? c.floats.count : c.ints.count) == 1 else {
            throw InLoopError(.format, "value must hold one element, got shape \(InLoopCore.Tensor.format(c.shape))")
        }
        return TensorAttribute(value: c)
    }

    public static func inferTypes(_ a: TensorAttribute, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let s = try Engine.input(inputs, 0)
        guard s.dtype == .int64, s.rank == 1 else { throw InLoopError(.format, "the shape input must be a 1-D int64 tensor, got \(s)") }
        guard let shape = known.first ?? nil else {
            throw InLoopError(.unsupported, "the shape must be known when the model is compiled (a constant or computed from shapes)")
        }
        guard shape.values.count <= Engine.maxRank else { throw InLoopError(.unsupported, "rank \(shape.values.count); InLoop takes ranks up to \(Engine.maxRank)") }
        for d in shape.values {
            if let k = d.known, k < 0 || k > Limits.maxDimension { throw InLoopError(.format, "shape \(shape.values.formatted) holds \(k)") }
        }
        return [Engine.TensorType(a.value.dtype, shape.values)]
    }

    public static func evaluate(_ a: TensorAttribute, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let v = a.value.knownInts?.values.first, let shape = outputs[0].shape.known else { return nil }
        let n = try InLoopCore.Tensor.elementCount(shape)
        guard n <= Engine.maxKnownElements else { return nil }
        return [try Engine.KnownInts(shape: shape, values: [Engine.SymInt](repeating: v, count: n))]
    }

    public static func lower(_ a: TensorAttribute, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        guard a.value.dtype.isFloatingPoint, let value = a.value.floats.first else {
            throw InLoopError(.unsupported, "an integer ConstantOfShape is needed at run time; InLoop computes float values only")
        }
        if let shape = ctx.outputTypes[0].shape.known {
            // allocated with its size checked (a shape from the file may be huge)
            let t = try Engine.Tensor(zeros: shape, dtype: a.value.dtype)
            if a.value.dtype == .float32 {
                try t.storage.pointer(as: Float.self).update(repeating: Float(value), count: t.count)
            } else {
                try t.storage.pointer(as: Double.self).update(repeating: value, count: t.count)
            }
            ctx.fold(output: 0, t)
        } else {
            ctx.emit(.fill(count: try ctx.outputExtent(0), value: value), [try ctx.output(0)])
        }
    }
}

/// Range(start, limit, delta) on integers (shape computations; the limit may depend on the batch when
/// delta is ±1). Float ranges need their bounds when types are inferred, which sees integer values
/// only: the front end passes constant float bounds as the `bounds` attribute (InLoop's own), and
/// bounds given as graph inputs are value inputs (`Engine.Model` specialises the plan on them).
public enum RangeOp: OpDefinition {
    public static let name = "Range"
    public static let inputArity: ClosedRange<Int> = 3...3

    // MARK: family nodes (float Range)
    public struct Attributes: OpAttributeSet, Equatable {
        /// start, limit, delta of a float Range, known when the plan is compiled.
        public var bounds: [Double]?
        public func encoded() -> [String: Engine.AttributeValue] { bounds.map { ["bounds": .floats($0)] } ?? [:] }
    }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        guard let v = raw["bounds"] else { return Attributes() }
        guard case .floats(let b) = v, b.count == 3, b.allSatisfy({ $0.isFinite }), b[2] != 0 else {
            throw InLoopError(.format, "attribute 'bounds' must be three finite floats (start, limit, delta ≠ 0)")
        }
        return Attributes(bounds: b)
    }

    /// The float Range's values: start + i·delta for i < max(⌈(limit − start)/delta⌉, 0).
    static func floatValues(_ b: [Double]) throws(InLoopError) -> [Double] {
        let n = ((b[1] - b[0]) / b[2]).rounded(.up)
        guard n.isFinite, n <= Double(1 << 24) else { throw InLoopError(.unsupported, "Range(\(b[0]), \(b[1]), \(b[2])) has too many values") }
        return (0..<Swift.max(0, Int(n))).map { b[0] + Double($0) * b[2] }
    }

    static func floatType(_ a: Attributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> Engine.TensorType? {
        let t = try Engine.input(inputs, 0)
        guard t.dtype.isFloatingPoint else { return nil }
        for k in 0..<3 {
            let u = try Engine.input(inputs, k)
            guard u.dtype == t.dtype, u.shape.known?.reduce(1, *) == 1 else { throw InLoopError(.format, "Range takes three scalars of one type, got \(u)") }
        }
        guard let b = a.bounds else { throw Engine.notLinear("a float Range with bounds given at run time (the plan is specialised on their values)") }
        return Engine.TensorType(t.dtype, [Engine.SymInt(try floatValues(b).count)])
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        guard let t = try floatType(a, ctx.inputTypes), let b = a.bounds else {
            throw InLoopError(.unsupported, "Range is computed only when its inputs are known at compile time (shape computations)")
        }
        try ctx.fold(output: 0, dtype: t.dtype, try floatValues(b))
    }

    static func bounds(_ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?]) throws(InLoopError) -> (Engine.SymInt, Engine.SymInt, Int, Engine.SymInt) {
        var v: [Engine.SymInt] = []
        for (k, what) in ["start", "limit", "delta"].enumerated() {
            let t = try Engine.input(inputs, k)
            guard t.dtype == .int64 else {
                throw InLoopError(.unsupported, "Range on \(t.dtype) values: InLoop computes ranges of int64 values only (their bounds must be known when the model is compiled)")
            }
            guard t.shape.known?.reduce(1, *) == 1 else { throw InLoopError(.format, "\(what) must be a scalar, got \(t)") }
            guard k < known.count, let kn = known[k] else { throw InLoopError(.unsupported, "\(what) must be known when the model is compiled") }
            v.append(kn.values[0])
        }
        guard let delta = v[2].known, delta != 0 else { throw InLoopError(.format, "delta must be a non-zero integer known when the model is compiled") }
        let what = "Range(\(v[0]), \(v[1]), \(delta))"
        let span = try Engine.linear(v[1] - v[0], what)
        let count: Engine.SymInt
        if let s = span.known {
            guard !(s == Int.min && delta == -1) else { throw InLoopError(.format, "\(what) overflows") }
            let (q, r) = s.quotientAndRemainder(dividingBy: delta)
            count = Engine.SymInt(Swift.max(0, r != 0 && (r > 0) == (delta > 0) ? q + 1 : q))
        } else {
            guard delta == 1 || delta == -1 else { throw Engine.notLinear(what) }
            count = try Engine.symmetricChoice(try Engine.linear(span * Engine.SymInt(delta), what), 0, larger: true, what)
        }
        if let c = count.known, c > Limits.maxDimension { throw InLoopError(.unsupported, "\(what) has \(c) values") }
        return (v[0], v[1], delta, count)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        if let t = try floatType(a, inputs) { return [t] }
        return [Engine.TensorType(.int64, [try bounds(inputs, known).3])]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        if outputs.first?.dtype.isFloatingPoint == true { return nil }
        let (start, _, delta, count) = try bounds(inputs, known)
        guard let n = count.known, n <= Engine.maxKnownElements else { return nil }
        var values: [Engine.SymInt] = []
        for i in 0..<n {
            let (step, overflow) = i.multipliedReportingOverflow(by: delta)
            guard !overflow, let v = start + Engine.SymInt(step) else { return nil }
            values.append(v)
        }
        return [Engine.KnownInts(values)]
    }
}

/// Size: the number of elements, an int64 scalar.
public enum SizeOp: OpDefinition {
    public static let name = "Size"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        _ = try Engine.input(inputs, 0)
        return [Engine.TensorType(.int64, [])]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let n = try Engine.input(inputs, 0).shape.elementCount else { return nil }
        return [try Engine.KnownInts(shape: [], values: [n])]
    }
}

/// Cast to float32, float64, int64 or bool. Integers stay known values (shape computations); integers
/// cast to floats become constants, or a fill computed from the batch size; float64 → float32 rounds
/// at run time (a step), every other float → float Cast is the identity (an alias). Floats cast to
/// integers at run time are refused: InLoop computes float values only.
public enum CastOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var to: Engine.DType
        public func encoded() -> [String: Engine.AttributeValue] {
            let code: Int
            switch to {
            case .float32: code = 1
            case .float64: code = 11
            case .int64: code = 7
            case .bool: code = 9
            }
            return ["to": .int(code)]
        }
    }
    public static let name = "Cast"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        switch raw["to"] {
        case .int(let code)?:
            switch code {
            case 1: return Attributes(to: .float32)
            case 11: return Attributes(to: .float64)
            case 7: return Attributes(to: .int64)
            case 9: return Attributes(to: .bool)
            default: throw InLoopError(.unsupported, "Cast to ONNX type \(code); InLoop casts to float, double, int64 and bool")
            }
        case .string(let s)?:
            switch s.uppercased() {
            case "FLOAT": return Attributes(to: .float32)
            case "DOUBLE": return Attributes(to: .float64)
            case "INT64": return Attributes(to: .int64)
            case "BOOL": return Attributes(to: .bool)
            default: throw InLoopError(.unsupported, "Cast to \(s); InLoop casts to FLOAT, DOUBLE, INT64 and BOOL")
            }
        case nil: throw InLoopError(.format, "attribute 'to' is required")
        default: throw InLoopError(.format, "attribute 'to' must be an integer (a string before opset 6)")
        }
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        [Engine.TensorType(a.to, try Engine.input(inputs, 0).shape)]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil else { return nil }
        switch a.to {
        case .int64: return [k]
        case .bool:
            var values: [Engine.SymInt] = []
            for v in k.values {
                guard let i = v.known else { return nil }
                values.append(Engine.SymInt(i != 0 ? 1 : 0))
            }
            return [try Engine.KnownInts(shape: k.shape, values: values)]
        case .float32, .float64: return nil
        }
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        // booleans and integers at run time (family logic: `Engine.lowerRuntimeCast`)
        if try Engine.lowerRuntimeCast(to: a.to, &ctx) { return }
        let x = try Engine.input(ctx.inputTypes, 0)
        guard a.to.isFloatingPoint else {
            throw InLoopError(.unsupported, "a Cast of \(x.dtype) values to \(a.to) at run time; InLoop computes float values only")
        }
        if x.dtype.isFloatingPoint {
            if x.dtype == .float64 && a.to == .float32 {
                if let (_, values) = try ctx.constantDoubles(0) {
                    try ctx.fold(output: 0, dtype: .float32, values)
                    return
                }
                ctx.unfold(output: 0)
                ctx.emit(.roundToFloat32(count: try ctx.inputExtent(0)), [try ctx.input(0), try ctx.output(0)])
            } else {
                try ctx.aliasOrFold(output: 0, input: 0)
            }
            return
        }
        guard let k = ctx.knownInput(0) else {
            throw InLoopError(.unsupported, "a Cast of \(x.dtype) values computed at run time; InLoop computes float values only")
        }
        if let ints = k.values.known {
            let t = a.to == .float32 ? try Engine.Tensor(shape: k.shape, values: ints.map { Float($0) })
                                     : try Engine.Tensor(shape: k.shape, values: ints.map { Double($0) })
            ctx.fold(output: 0, t)
        } else {
            // integers computed from the batch size: evaluated when the plan runs
            var g = [k.values.count]
            for v in k.values {
                let e = try ctx.extent([v], "an integer computed from shapes")
                g += [e.perBatch, e.fixed]
            }
            ctx.emit(.fillLinear(geometry: ctx.ints(g), count: try ctx.outputExtent(0)), [try ctx.output(0)])
        }
    }
}

extension CastOp {
    /// Per sample (threads): element-wise.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
