/// Element-wise unary ops (the `UnaryFunction`s: Erf, Exp, Log, ..., HardSigmoid, Selu), Gelu, Clip,
/// and Softmax / LogSoftmax. Their derivatives are the steps' own (`Compiler/Differentiation.swift`):
/// `unaryBackward`, `clipLinear`, `softmaxBackward` / `softmaxTangent`.

/// The shared rules of the unary functions: same type out as in, one `unary` step.
public protocol UnaryOpDefinition: OpDefinition {
    static func function(_ a: Attributes) -> UnaryFunction
}

extension UnaryOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(name) takes floating values, got \(x.dtype)") }
        return [x]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        ctx.emit(.unary(function(a), count: try ctx.inputExtent(0)), [try ctx.input(0), try ctx.output(0)])
    }
}

/// A unary ONNX op without attributes.
public protocol PlainUnaryOp: UnaryOpDefinition where Attributes == NoAttributes {
    static var unary: UnaryFunction { get }
}

extension PlainUnaryOp {
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }
    public static func function(_ a: NoAttributes) -> UnaryFunction { unary }
}

public enum ErfOp: PlainUnaryOp { public static let name = "Erf"; public static let unary = UnaryFunction.erf }
public enum ExpOp: PlainUnaryOp { public static let name = "Exp"; public static let unary = UnaryFunction.exp }
public enum LogOp: PlainUnaryOp { public static let name = "Log"; public static let unary = UnaryFunction.log }
public enum SqrtOp: PlainUnaryOp { public static let name = "Sqrt"; public static let unary = UnaryFunction.sqrt }
public enum ReciprocalOp: PlainUnaryOp { public static let name = "Reciprocal"; public static let unary = UnaryFunction.reciprocal }
public enum FloorOp: PlainUnaryOp { public static let name = "Floor"; public static let unary = UnaryFunction.floor }
public enum CeilOp: PlainUnaryOp { public static let name = "Ceil"; public static let unary = UnaryFunction.ceil }
public enum RoundOp: PlainUnaryOp { public static let name = "Round"; public static let unary = UnaryFunction.round }
public enum SoftsignOp: PlainUnaryOp { public static let name = "Softsign"; public static let unary = UnaryFunction.softsign }
public enum HardSwishOp: PlainUnaryOp { public static let name = "HardSwish"; public static let unary = UnaryFunction.hardSwish }

/// Neg, Abs and Sign also take integers in shape computations (evaluated at compile time).
public protocol IntegerUnaryOp: PlainUnaryOp {
    static func integer(_ v: Engine.SymInt) -> Engine.SymInt?
}

extension IntegerUnaryOp {
    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint || x.dtype == .int64 else { throw InLoopError(.format, "\(name) takes numbers, got \(x.dtype)") }
        return [x]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil else { return nil }
        var values: [Engine.SymInt] = []
        for v in k.values { guard let r = integer(v) else { return nil }; values.append(r) }
        return [try Engine.KnownInts(shape: k.shape, values: values)]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        guard try Engine.input(ctx.inputTypes, 0).dtype.isFloatingPoint else {
            throw InLoopError(.unsupported, "\(name) of integer values at run time; InLoop computes floating values")
        }
        ctx.emit(.unary(unary, count: try ctx.inputExtent(0)), [try ctx.input(0), try ctx.output(0)])
    }
}

public enum NegOp: IntegerUnaryOp {
    public static let name = "Neg"
    public static let unary = UnaryFunction.neg
    public static func integer(_ v: Engine.SymInt) -> Engine.SymInt? { -v }
}

public enum AbsOp: IntegerUnaryOp {
    public static let name = "Abs"
    public static let unary = UnaryFunction.abs
    public static func integer(_ v: Engine.SymInt) -> Engine.SymInt? {
        guard let k = v.known, k != Int.min else { return nil }
        return Engine.SymInt(Swift.abs(k))
    }
}

public enum SignOp: IntegerUnaryOp {
    public static let name = "Sign"
    public static let unary = UnaryFunction.sign
    public static func integer(_ v: Engine.SymInt) -> Engine.SymInt? { v.known.map { Engine.SymInt($0.signum()) } }
}

/// A float attribute that must be finite in float32 (ONNX stores attribute floats as float32).
private func float32Attribute(_ raw: [String: Engine.AttributeValue], _ name: String, default d: Double) throws(InLoopError) -> Float {
    let v = try raw.float(name) ?? d
    guard v.isFinite, Swift.abs(v) <= Double(Float.greatestFiniteMagnitude) else {
        throw InLoopError(.format, "attribute '\(name)' is \(v); a finite float32 is needed")
    }
    return Float(v)
}

/// Two float attributes (HardSigmoid alpha/beta, Selu alpha/gamma).
public struct TwoFloatAttributes: OpAttributeSet, Equatable {
    public var first: Float, second: Float
    let names: [String]
    public func encoded() -> [String: Engine.AttributeValue] {
        [names[0]: .float(Double(first)), names[1]: .float(Double(second))]
    }
}

public enum HardSigmoidOp: UnaryOpDefinition {
    public static let name = "HardSigmoid"
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> TwoFloatAttributes {
        TwoFloatAttributes(first: try float32Attribute(raw, "alpha", default: 0.2), second: try float32Attribute(raw, "beta", default: 0.5),
                           names: ["alpha", "beta"])
    }
    public static func function(_ a: TwoFloatAttributes) -> UnaryFunction { .hardSigmoid(alpha: a.first, beta: a.second) }
}

public enum SeluOp: UnaryOpDefinition {
    public static let name = "Selu"
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> TwoFloatAttributes {
        TwoFloatAttributes(first: try float32Attribute(raw, "alpha", default: 1.67326319217681884765625),
                           second: try float32Attribute(raw, "gamma", default: 1.05070102214813232421875), names: ["alpha", "gamma"])
    }
    public static func function(_ a: TwoFloatAttributes) -> UnaryFunction { .selu(alpha: a.first, gamma: a.second) }
}

/// ONNX Gelu (opset 20): `approximate` "none" (erf) or "tanh"; the activation steps of `Activation`.
public enum GeluOp: ActivationOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var tanh: Bool
        public func encoded() -> [String: Engine.AttributeValue] { tanh ? ["approximate": .string("tanh")] : [:] }
    }
    public static let name = "Gelu"

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        switch try raw.string("approximate") ?? "none" {
        case "none": return Attributes(tanh: false)
        case "tanh": return Attributes(tanh: true)
        case let s: throw InLoopError(.format, "attribute approximate='\(s)' (ONNX has none, tanh)")
        }
    }

    public static func activation(_ a: Attributes) -> Activation { a.tanh ? .geluTanh : .gelu }
}

/// ONNX Clip. Before opset 11 the bounds are the `min`/`max` attributes (a `unary` clip); from 11 on
/// they are the optional one-element inputs 1 and 2 (constants or values computed at run time, read
/// by the `clip` step). y = min(max(x, lo), hi). Gradients: x where lo < x < hi (strictly, as the
/// differentiable graph engine had it), a bound where it was taken.
public enum ClipOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        /// opset < 11: the attribute bounds; nil: the inputs.
        public var bounds: ClosedRangeBounds?
        public func encoded() -> [String: Engine.AttributeValue] {
            guard let bounds else { return [:] }
            return ["min": .float(Double(bounds.min)), "max": .float(Double(bounds.max))]
        }
    }
    public struct ClosedRangeBounds: Equatable, Sendable { public var min: Float, max: Float }
    public static let name = "Clip"
    public static let inputArity: ClosedRange<Int> = 1...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        if opset > 0 && opset < 11 {
            func bound(_ n: String, _ d: Float) throws(InLoopError) -> Float {
                guard let v = try raw.float(n) else { return d }
                guard !v.isNaN, Swift.abs(v) <= Double(Float.greatestFiniteMagnitude) || v.isInfinite else {
                    throw InLoopError(.format, "attribute '\(n)' is \(v)")
                }
                return Float(v)
            }
            return Attributes(bounds: ClosedRangeBounds(min: try bound("min", -.infinity), max: try bound("max", .infinity)))
        }
        if raw["min"] != nil || raw["max"] != nil {
            throw InLoopError(.format, "Clip takes its bounds as inputs from opset 11 on (attributes min/max are of opset < 11)")
        }
        return Attributes(bounds: nil)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.unsupported, "Clip of \(x.dtype) values; InLoop computes floating values") }
        if a.bounds != nil && inputs.count > 1 { throw InLoopError(.format, "Clip before opset 11 takes one input") }
        for k in 1..<Swift.max(inputs.count, 1) {
            guard let t = inputs[k] else { continue }
            guard t.dtype == x.dtype else { throw InLoopError(.format, "bound \(k) is \(t.dtype), the input \(x.dtype)") }
            guard t.shape.allSatisfy({ $0.known == 1 }) else {
                throw InLoopError(.format, "bound \(k) must be a scalar (one element), got shape \(t.shape.formatted)")
            }
        }
        return [x]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let count = try ctx.inputExtent(0)
        if let b = a.bounds {
            ctx.emit(.unary(.clip(min: b.min, max: b.max), count: count), [try ctx.input(0), try ctx.output(0)])
            return
        }
        var operands = [try ctx.input(0)]
        let hasMin = ctx.hasInput(1), hasMax = ctx.hasInput(2)
        if hasMin { operands.append(try ctx.input(1)) }
        if hasMax { operands.append(try ctx.input(2)) }
        ctx.emit(.clip(count: count, hasMin: hasMin, hasMax: hasMax), operands + [try ctx.output(0)])
    }
}

/// ONNX Softmax and LogSoftmax. From opset 13: over `axis` (default −1). Before 13: the input is
/// coerced to 2-D at `axis` (default 1) and normalised over all axes from `axis` on.
public protocol SoftmaxOpDefinition: OpDefinition where Attributes == SoftmaxAttributes {
    static var log: Bool { get }
}

public struct SoftmaxAttributes: OpAttributeSet, Equatable {
    public var axis: Int
    /// opset < 13: normalise over every axis from `axis` on.
    public var coerce2D: Bool
    public func encoded() -> [String: Engine.AttributeValue] { ["axis": .int(axis)] }
}

extension SoftmaxOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> SoftmaxAttributes {
        let old = opset > 0 && opset < 13
        return SoftmaxAttributes(axis: try raw.int("axis", default: old ? 1 : -1), coerce2D: old)
    }

    public static func inferTypes(_ a: SoftmaxAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(name) takes floating values, got \(x.dtype)") }
        _ = try Engine.axis(a.axis, rank: x.rank)
        return [x]
    }

    public static func lower(_ a: SoftmaxAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let axis = try Engine.axis(a.axis, rank: x.rank)
        let outer = try ctx.extent(Array(x.shape[..<axis]), "the axes before \(axis)")
        let length = try ctx.extent(a.coerce2D ? Array(x.shape[axis...]) : [x.shape[axis]], "axis \(axis)")
        let inner = try ctx.extent(a.coerce2D ? [] : Array(x.shape[(axis + 1)...]), "the axes after \(axis)")
        let geometry = ctx.ints([outer.perBatch, outer.fixed, length.perBatch, length.fixed, inner.perBatch, inner.fixed])
        ctx.emit(.softmax(geometry: geometry, log: log), [try ctx.input(0), try ctx.output(0)])
    }
}

public enum SoftmaxOp: SoftmaxOpDefinition {
    public static let name = "Softmax"
    public static let log = false
}

public enum LogSoftmaxOp: SoftmaxOpDefinition {
    public static let name = "LogSoftmax"
    public static let log = true
}

extension UnaryOpDefinition {
    /// Per sample (threads): element-wise.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension ClipOp {
    /// Per sample (threads): element-wise (bounds are static scalars).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension SoftmaxOpDefinition {
    /// Per sample (threads): over an axis after the batch (opset < 13: over every axis from `axis` on).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch) && (inputs.first ?? nil).map { t in (a.axis < 0 ? a.axis + t.rank : a.axis) >= 1 } == true
    }
}
