/// Element-wise activations: InLoop's `Activation` (named as in native files) and the ONNX ops that
/// are one of them (Relu, Tanh, Sigmoid, LeakyRelu, Elu, Softplus).

/// The shared rules: same type out as in, one `activation` step.
public protocol ActivationOpDefinition: OpDefinition {
    static func activation(_ a: Attributes) -> Activation
}

extension ActivationOpDefinition {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(name) takes floating values, got \(x.dtype)") }
        return [x]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        ctx.emit(.activation(activation(a), count: try ctx.inputExtent(0)), [try ctx.input(0), try ctx.output(0)])
    }
}

public enum ActivationOp: ActivationOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var activation: Activation
        public func encoded() -> [String: Engine.AttributeValue] { ActivationOp.encode(activation) }
    }
    public static let name = "Activation"
    public static let domain = "inloop"

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(activation: try parseActivation(raw, default: nil))
    }

    public static func activation(_ a: Attributes) -> Activation { a.activation }

    /// `activation` (a name of `Activation.supportedNames`) and `alpha` (leaky_relu, elu).
    static func parseActivation(_ raw: [String: Engine.AttributeValue], default d: Activation?) throws(InLoopError) -> Activation {
        guard let name = try raw.string("activation") else {
            guard let d else { throw InLoopError(.format, "attribute 'activation' is required") }
            return d
        }
        func alpha(_ d: Double) throws(InLoopError) -> Float {
            let v = try raw.float("alpha") ?? d
            guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                throw InLoopError(.format, "alpha \(v) is not a finite float32")
            }
            return Float(v)
        }
        switch name {
        case "identity": return .identity
        case "relu": return .relu
        case "leaky_relu": return .leakyRelu(alpha: try alpha(0.01))
        case "tanh": return .tanh
        case "sigmoid": return .sigmoid
        case "gelu": return .gelu
        case "gelu_tanh": return .geluTanh
        case "silu": return .silu
        case "softplus": return .softplus
        case "elu": return .elu(alpha: try alpha(1))
        default:
            throw InLoopError(.format, "unknown activation '\(name)'; InLoop knows \(Activation.supportedNames.joined(separator: ", "))")
        }
    }

    static func encode(_ act: Activation) -> [String: Engine.AttributeValue] {
        switch act {
        case .identity: return [:]
        case .relu: return ["activation": .string("relu")]
        case .leakyRelu(let a): return ["activation": .string("leaky_relu"), "alpha": .float(Double(a))]
        case .tanh: return ["activation": .string("tanh")]
        case .sigmoid: return ["activation": .string("sigmoid")]
        case .gelu: return ["activation": .string("gelu")]
        case .geluTanh: return ["activation": .string("gelu_tanh")]
        case .silu: return ["activation": .string("silu")]
        case .softplus: return ["activation": .string("softplus")]
        case .elu(let a): return ["activation": .string("elu"), "alpha": .float(Double(a))]
        }
    }
}

/// An ONNX activation without attributes.
public protocol PlainActivation: ActivationOpDefinition where Attributes == NoAttributes {
    static var function: Activation { get }
}

extension PlainActivation {
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }
    public static func activation(_ a: NoAttributes) -> Activation { function }
}

public enum ReluOp: PlainActivation { public static let name = "Relu"; public static let function = Activation.relu }
public enum TanhOp: PlainActivation { public static let name = "Tanh"; public static let function = Activation.tanh }
public enum SigmoidOp: PlainActivation { public static let name = "Sigmoid"; public static let function = Activation.sigmoid }
public enum SoftplusOp: PlainActivation { public static let name = "Softplus"; public static let function = Activation.softplus }

/// ONNX activations with an `alpha`.
public struct AlphaAttributes: OpAttributeSet, Equatable {
    public var alpha: Float
    public func encoded() -> [String: Engine.AttributeValue] { ["alpha": .float(Double(alpha))] }

    static func parse(_ raw: [String: Engine.AttributeValue], default d: Double) throws(InLoopError) -> AlphaAttributes {
        let v = try raw.float("alpha") ?? d
        guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
            throw InLoopError(.format, "alpha \(v) is not a finite float32")
        }
        return AlphaAttributes(alpha: Float(v))
    }
}

public enum LeakyReluOp: ActivationOpDefinition {
    public static let name = "LeakyRelu"
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> AlphaAttributes {
        try AlphaAttributes.parse(raw, default: 0.01)
    }
    public static func activation(_ a: AlphaAttributes) -> Activation { .leakyRelu(alpha: a.alpha) }
}

public enum EluOp: ActivationOpDefinition {
    public static let name = "Elu"
    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> AlphaAttributes {
        try AlphaAttributes.parse(raw, default: 1)
    }
    public static func activation(_ a: AlphaAttributes) -> Activation { .elu(alpha: a.alpha) }
}

extension ActivationOpDefinition {
    /// Per sample (threads): element-wise.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
