/// Per-feature affine normalisation of InLoop's native files and trainer configurations, over the last
/// axis: `Normalize` y = (x − mean) / std (a division, bitwise as the layer-stack engine computes it),
/// `Denormalize` y = x · std + mean. mean and std are constant vectors.
public protocol NormalizationOpDefinition: OpDefinition where Attributes == NoAttributes {
    static var inverse: Bool { get }
}

extension NormalizationOpDefinition {
    public static var domain: String { "inloop" }
    public static var inputArity: ClosedRange<Int> { 3...3 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), mean = try Engine.input(inputs, 1), std = try Engine.input(inputs, 2)
        guard x.rank >= 1, let cols = x.shape[x.rank - 1].known else {
            throw InLoopError(.format, "input \(x.shape.formatted) needs a last axis of known size")
        }
        for v in [mean, std] where v.shape != [Engine.SymInt(cols)] || v.dtype != x.dtype {
            throw InLoopError(.format, "mean and std must be [\(cols)] \(x.dtype) vectors, got \(v)")
        }
        return [x]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        guard ctx.isConstant(1), ctx.isConstant(2), let cols = x.shape[x.rank - 1].known else {
            throw InLoopError(.unsupported, "mean and std must be constants")
        }
        let rows = try ctx.extent(Array(x.shape.dropLast()), "the rows of the input")
        ctx.emit(.normalize(rows: rows, cols: cols, inverse: inverse),
                 [try ctx.input(0), try ctx.input(1), try ctx.input(2), try ctx.output(0)])
    }
}

public enum NormalizeOp: NormalizationOpDefinition {
    public static let name = "Normalize"
    public static let inverse = false
}

public enum DenormalizeOp: NormalizationOpDefinition {
    public static let name = "Denormalize"
    public static let inverse = true
}

extension NormalizationOpDefinition {
    /// Per sample (threads): per feature, with constant statistics.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
