/// Fully connected layers: InLoop's `Dense` (the layer of native files and trainer configurations,
/// activation fused) and ONNX `Gemm` in the form exporters write for `nn.Linear` (constant weight,
/// transB = 1, alpha = beta = 1).

/// y = act(x · wᵀ + b) over the last axis of x; w is [out, in] (PyTorch layout), b is [out] or absent.
public enum DenseOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var activation: Activation
        public func encoded() -> [String: Engine.AttributeValue] { ActivationOp.encode(activation) }
    }
    public static let name = "Dense"
    public static let domain = "inloop"
    public static let inputArity: ClosedRange<Int> = 2...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(activation: try ActivationOp.parseActivation(raw, default: .identity))
    }

    static func check(_ x: Engine.TensorType, _ w: Engine.TensorType, _ b: Engine.TensorType?) throws(InLoopError) -> Int {
        guard w.rank == 2, let out = w.shape[0].known, let inp = w.shape[1].known else {
            throw InLoopError(.format, "the weight must be a [out, in] matrix of known size, got \(w)")
        }
        guard x.rank >= 1, x.shape[x.rank - 1] == Engine.SymInt(inp) else {
            throw InLoopError(.format, "input \(x.shape.formatted) does not end with the weight's \(inp) inputs (weight [\(out), \(inp)])")
        }
        guard x.dtype == w.dtype, x.dtype.isFloatingPoint else {
            throw InLoopError(.format, "input \(x.dtype) and weight \(w.dtype): one floating type is needed")
        }
        if let b, b.dtype != x.dtype || b.shape != [Engine.SymInt(out)] {
            throw InLoopError(.format, "the bias must be [\(out)] \(x.dtype), got \(b)")
        }
        guard out >= 1, inp >= 1 else { throw InLoopError(.format, "weight [\(out), \(inp)] is empty") }
        return out
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), w = try Engine.input(inputs, 1)
        let out = try check(x, w, inputs.count > 2 ? inputs[2] : nil)
        return [Engine.TensorType(x.dtype, Array(x.shape.dropLast()) + [Engine.SymInt(out)])]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try lowerDense(&ctx, activation: a.activation, weight: 1, bias: 2)
    }

    static func lowerDense(_ ctx: inout Engine.LoweringContext, activation: Activation, weight: Int, bias: Int?) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0), w = try Engine.input(ctx.inputTypes, weight)
        guard ctx.isConstant(weight) else {
            throw InLoopError(.unsupported, "a weight computed at run time is not lowered yet")
        }
        guard let out = w.shape[0].known, let inp = w.shape[1].known else { throw InLoopError(.internal, "weight shape") }
        let rows = try ctx.extent(Array(x.shape.dropLast()), "the rows of the input")
        let hasBias = bias.map { ctx.hasInput($0) } ?? false
        if hasBias, let bias, !ctx.isConstant(bias) {
            throw InLoopError(.unsupported, "a bias computed at run time is not lowered yet")
        }
        var operands = [try ctx.input(0), try ctx.input(weight)]
        if hasBias, let bias { operands.append(try ctx.input(bias)) }
        let y = try ctx.output(0)
        if ctx.numerics == .differentiable && activation != .identity {
            // the reverse pass needs the pre-activation z as well as y = f(z)
            let z = ctx.temporary(try ctx.outputExtent(0))
            ctx.emit(.dense(rows: rows, inCols: inp, outCols: out, hasBias: hasBias, activation: .identity), operands + [z])
            ctx.emit(.activation(activation, count: try ctx.outputExtent(0)), [z, y])
        } else {
            ctx.emit(.dense(rows: rows, inCols: inp, outCols: out, hasBias: hasBias, activation: activation), operands + [y])
        }
    }
}

/// ONNX Gemm, Y = alpha·A'·B' + beta·C: lowered here in the `nn.Linear` form (B constant and transposed,
/// alpha = beta = 1, C a vector or absent); other forms join with the general matrix product.
public enum GemmOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var alpha: Double, beta: Double
        public var transA: Bool, transB: Bool
        public func encoded() -> [String: Engine.AttributeValue] {
            ["alpha": .float(alpha), "beta": .float(beta), "transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0)]
        }
    }
    public static let name = "Gemm"
    public static let inputArity: ClosedRange<Int> = 2...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(alpha: try raw.float("alpha") ?? 1, beta: try raw.float("beta") ?? 1,
                   transA: try raw.int("transA", default: 0) != 0, transB: try raw.int("transB", default: 0) != 0)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), w = try Engine.input(inputs, 1)
        guard x.rank == 2, w.rank == 2 else { throw InLoopError(.format, "Gemm takes matrices, got \(x) and \(w)") }
        guard x.dtype == w.dtype, x.dtype.isFloatingPoint else { throw InLoopError(.format, "inputs \(x.dtype) and \(w.dtype)") }
        let m = a.transA ? x.shape[1] : x.shape[0], k = a.transA ? x.shape[0] : x.shape[1]
        let k2 = a.transB ? w.shape[1] : w.shape[0], n = a.transB ? w.shape[0] : w.shape[1]
        guard k == k2 else { throw InLoopError(.format, "A is \(x.shape.formatted) and B \(w.shape.formatted): inner sizes \(k) and \(k2) differ") }
        if inputs.count > 2, let c = inputs[2] {
            let b = try Engine.broadcast(c.shape, [m, n])
            guard b == [m, n] else { throw InLoopError(.format, "C \(c.shape.formatted) does not broadcast to [\(m), \(n)]") }
        }
        return [Engine.TensorType(x.dtype, [m, n])]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let hasC = ctx.hasInput(2)
        let c = hasC ? try Engine.input(ctx.inputTypes, 2) : nil
        let w = try Engine.input(ctx.inputTypes, 1)
        guard a.alpha == 1, !a.transA, a.transB, !hasC || a.beta == 1, c == nil || c!.shape == [w.shape[0]] else {
            throw InLoopError(.unsupported, "Gemm with alpha=\(a.alpha), beta=\(a.beta), transA=\(a.transA), transB=\(a.transB) is not lowered yet")
        }
        try DenseOp.lowerDense(&ctx, activation: .identity, weight: 1, bias: hasC ? 2 : nil)
    }
}
