/// Parsed, checked attributes of one node (each op has its own type). Encodes back to the raw form for
/// files written by InLoop (native format version 2).
public protocol OpAttributeSet: Sendable {
    func encoded() -> [String: Engine.AttributeValue]
}

/// For ops without attributes.
public struct NoAttributes: OpAttributeSet, Equatable {
    public init() {}
    public func encoded() -> [String: Engine.AttributeValue] { [:] }
}

/// One operator: everything the engine knows about it, in one place (`docs/ENGINE.md` §2.3). Adding an
/// op is one conforming type (in a file of its family under `Ops/`) plus its entry in `OpTable.all`.
///
/// This is the part the IR needs (step 2.1: attributes, arity, type inference, compile-time evaluation);
/// lowering to kernel steps and the vjp/jvp rules join it with the plan (steps 2.2, 2.3).
public protocol OpDefinition: SendableMetatype {
    associatedtype Attributes: OpAttributeSet
    /// The ONNX op_type; also the op's name in native files.
    static var name: String { get }
    /// "" is ai.onnx; "inloop" for ops of InLoop's own.
    static var domain: String { get }
    /// The opsets whose definition this type implements.
    static var sinceVersion: ClosedRange<Int> { get }
    static var inputArity: ClosedRange<Int> { get }
    static var outputArity: ClosedRange<Int> { get }

    /// Attributes from their raw form, with every limit checked (typed errors naming the attribute,
    /// never a trap).
    static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes

    /// Output types from input types (nil: an optional input left out). `known` gives the
    /// compile-time integer elements of inputs where they are known (shapes, axes, indices).
    static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                           _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType]

    /// `inferTypes` for a node with `outputCount` outputs: ops whose number of outputs is the node's
    /// (Split into equal parts) implement this one; the default calls `inferTypes`.
    static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                           outputCount: Int) throws(InLoopError) -> [Engine.TensorType]

    /// The integer elements of the outputs when they can be known at compile time (shape
    /// computations); nil when not. Called after `inferTypes` succeeded, with its result.
    static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                         outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]?

    /// Forward: emits the node's steps (kernel calls) into the plan.
    static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError)

    /// Batch separability (threads, `docs/ENGINE.md` "Threads"): true when sample i of every output
    /// (along the leading batch axis, the symbol `batch`) is computed from sample i of the inputs that
    /// lead with it and from static operands (weights, broadcast constants) only, so that a plan made of
    /// such nodes may run a batch as contiguous slices on separate threads. Conservative: the default is
    /// false (the batch runs whole); an op opts in, usually with `Engine.perSampleShapes` plus its own
    /// conditions (Softmax: not over the batch axis).
    static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType],
                          batch: Engine.SymInt) -> Bool
}

extension OpDefinition {
    public static var domain: String { "" }
    public static var sinceVersion: ClosedRange<Int> { 1...Int.max }
    public static var outputArity: ClosedRange<Int> { 1...1 }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        try inferTypes(a, inputs, known)
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? { nil }

    /// Ops that are only evaluated at compile time (shape computations) have no steps: a plan that
    /// needs their result at run time is refused, naming the op.
    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        throw InLoopError(.unsupported, "\(name) is computed only when its inputs are known at compile time (shape computations)")
    }

    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType],
                                 batch: Engine.SymInt) -> Bool { false }

    static func perSampleAny(_ node: Engine.Node, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType],
                             batch: Engine.SymInt) -> Bool {
        guard let a = node.attributes as? Attributes else { return false }
        return perSample(a, inputs, outputs, batch: batch)
    }

    static func lowerAny(_ node: Engine.Node, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try lower(try attributes(of: node), &ctx)
    }

    /// `parse`, boxed (what the graph stores).
    static func parseAny(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> any OpAttributeSet {
        try parse(raw, opset: opset)
    }

    /// The node's attributes as this op's type (an internal error if a pass put another op's there).
    static func attributes(of node: Engine.Node) throws(InLoopError) -> Attributes {
        guard let a = node.attributes as? Attributes else {
            throw InLoopError(.internal, "node '\(node.name)' (\(name)) holds attributes of another op")
        }
        return a
    }

    static func inferAny(_ node: Engine.Node, _ inputs: [Engine.TensorType?],
                         _ known: [Engine.KnownInts?]) throws(InLoopError) -> ([Engine.TensorType], [Engine.KnownInts?]?) {
        let a = try attributes(of: node)
        let types = try inferTypes(a, inputs, known, outputCount: node.outputs.count)
        guard types.count == node.outputs.count else {
            throw InLoopError(.internal, "\(name) inferred \(types.count) output types for \(node.outputs.count) outputs")
        }
        return (types, try evaluate(a, inputs, known, outputs: types))
    }
}

extension Engine {
    /// The shape condition of a per-sample node (`OpDefinition.perSample`): every output leads with
    /// `batch` (exactly: not 2·batch, not batch − 1) and has static dimensions after it, and every
    /// input present either does the same or has a static shape (a weight, a broadcast operand: ONNX
    /// broadcasting aligns shapes on the right, so a static operand of the output's rank has 1 on the
    /// batch axis). Not sufficient alone: an op that mixes samples along the batch axis (Softmax over
    /// axis 0, a reversing Slice) keeps these shapes, so each op states its own conditions.
    public static func perSampleShapes(_ inputs: [TensorType?], _ outputs: [TensorType], batch: SymInt) -> Bool {
        func leads(_ s: Shape) -> Bool { s.first == batch && s.dropFirst().allSatisfy { $0.known != nil } }
        guard !outputs.isEmpty, outputs.allSatisfy({ leads($0.shape) }) else { return false }
        for case let t? in inputs where !leads(t.shape) && t.shape.known == nil { return false }
        return true
    }
}

/// Ops that only give their input a new shape (Reshape, Unsqueeze, Flatten, Squeeze): row-major data
/// does not move, so known values pass through in order and the output is the input's storage.
public protocol ReshapingOpDefinition: OpDefinition {}

extension ReshapingOpDefinition {
    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard let k = known.first ?? nil, let shape = outputs[0].shape.known else { return nil }
        return [try Engine.KnownInts(shape: shape, values: k.values)]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try ctx.aliasOrFold(output: 0, input: 0)
    }
}

/// The op table: every op the engine runs, found by (domain, op_type).
public struct OpRegistry: Sendable {
    private let ops: [String: [any OpDefinition.Type]]

    public init(_ list: [any OpDefinition.Type]) {
        var ops: [String: [any OpDefinition.Type]] = [:]
        for op in list { ops[OpRegistry.key(op.domain, op.name), default: []].append(op) }
        self.ops = ops
    }

    private static func key(_ domain: String, _ name: String) -> String {
        domain == "ai.onnx" || domain.isEmpty ? name : domain + "::" + name
    }

    /// The definition of `name` for `opset` (its domain's version), or `.unsupported` naming the op.
    public func lookup(_ name: String, domain: String = "", opset: Int) throws(InLoopError) -> any OpDefinition.Type {
        guard let candidates = ops[OpRegistry.key(domain, name)] else {
            let d = domain.isEmpty || domain == "ai.onnx" ? "" : "\(domain)."
            throw InLoopError(.unsupported, "operator '\(d)\(name)' is not supported")
        }
        for op in candidates where op.sinceVersion.contains(opset) { return op }
        throw InLoopError(.unsupported, "operator '\(name)' is not supported in opset \(opset)")
    }

    public var names: [String] { ops.keys.sorted() }
}

public enum OpTable {
    /// Every op of the one engine.
    public static let all: [any OpDefinition.Type] = [
        IdentityOp.self,
        AddOp.self, SubOp.self, MulOp.self, DivOp.self,
        ShapeOp.self, ReshapeOp.self, GatherOp.self, ConcatOp.self, UnsqueezeOp.self,
        DenseOp.self, GemmOp.self, ActivationOp.self,
        ReluOp.self, TanhOp.self, SigmoidOp.self, LeakyReluOp.self, EluOp.self, SoftplusOp.self,
        NormalizeOp.self, DenormalizeOp.self,
        // MARK: family elementwise (ops)
        PowOp.self, MinOp.self, MaxOp.self,
        ErfOp.self, ExpOp.self, LogOp.self, SqrtOp.self, NegOp.self, AbsOp.self, ReciprocalOp.self, FloorOp.self,
        CeilOp.self, RoundOp.self, SignOp.self, SoftsignOp.self, HardSwishOp.self, HardSigmoidOp.self, SeluOp.self,
        GeluOp.self, ClipOp.self, SoftmaxOp.self, LogSoftmaxOp.self,

        // MARK: family shape (ops)
        TransposeOp.self, SliceOp.self, SplitOp.self, FlattenOp.self, SqueezeOp.self, DropoutOp.self,
        ConstantOp.self, ConstantOfShapeOp.self, RangeOp.self, CastOp.self, SizeOp.self,

        // MARK: family matmul-norm (ops)
        MatMulOp.self, BatchNormalizationOp.self, LayerNormalizationOp.self,

        // MARK: family conv-pool (ops)
        ConvOp.self, ConvTransposeOp.self, MaxPoolOp.self, AveragePoolOp.self, GlobalAveragePoolOp.self, GlobalMaxPoolOp.self,
        ResizeOp.self, UpsampleOp.self,

        // MARK: family logic (ops)
        GreaterOp.self, LessOp.self, EqualOp.self, GreaterOrEqualOp.self, LessOrEqualOp.self, NotOp.self, AndOp.self, OrOp.self,
        XorOp.self, ModOp.self, PReluOp.self, WhereOp.self, CastLikeOp.self, ExpandOp.self, TileOp.self, SumOp.self, MeanOp.self,
        // MARK: family reduce (ops)
        ReduceSumOp.self, ReduceMeanOp.self, ReduceMaxOp.self, ReduceMinOp.self, ReduceProdOp.self, ReduceSumSquareOp.self,
        ReduceL1Op.self, ReduceL2Op.self, ReduceLogSumOp.self, ReduceLogSumExpOp.self, ArgMaxOp.self, ArgMinOp.self,
        PadOp.self, EinsumOp.self,
        // MARK: family rnn (ops)
        RNNOp.self, GRUOp.self, LSTMOp.self,
        // MARK: family torch (ops)
        TriluOp.self,
        // MARK: family constraints (ops)
        ConservationProjectionOp.self, BoundsOp.self, MassFixerOp.self,

    ]

    public static let standard = OpRegistry(all)
}

extension ReshapingOpDefinition {
    /// Per sample (threads): a view of the same row-major data: per sample when both shapes lead with the batch.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
