/// Fully connected layers: InLoop's `Dense` (the layer of native files and trainer configurations,
/// activation fused) and ONNX `Gemm` (its `nn.Linear` form on the dense step, every other form on the
/// general matrix product of `Ops/MatMulNorm.swift`).

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
        } else if ctx.numerics == .inference {
            operands.insert(try ctx.packedInput(weight), at: 2)
            ctx.emit(.packedDense(rows: rows, inCols: inp, outCols: out, hasBias: hasBias, activation: activation), operands + [y])
        } else {
            ctx.emit(.dense(rows: rows, inCols: inp, outCols: out, hasBias: hasBias, activation: activation), operands + [y])
        }
    }
}

/// ONNX Gemm, Y = alpha·A'·B' + beta·C (A' = Aᵀ when transA, B' likewise; C absent, a scalar, a
/// vector or a matrix broadcast to [M, N]); A, B and C constants or computed at run time. The
/// `nn.Linear` form (B constant and transposed, alpha = beta = 1, C a vector or absent) is a `dense`
/// step; every other form one `matMul` step (`Ops/MatMulNorm.swift`).
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
        let alpha = try raw.float("alpha") ?? 1, beta = try raw.float("beta") ?? 1
        guard alpha.isFinite, beta.isFinite else { throw InLoopError(.format, "alpha \(alpha) and beta \(beta) must be finite") }
        let transA = try raw.int("transA", default: 0), transB = try raw.int("transB", default: 0)
        guard (0...1).contains(transA), (0...1).contains(transB) else {
            throw InLoopError(.format, "transA \(transA) and transB \(transB) must be 0 or 1")
        }
        if opset > 0 && opset < 7 && raw["broadcast"] != nil {
            throw InLoopError(.unsupported, "the legacy 'broadcast' attribute (opset < 7)")
        }
        return Attributes(alpha: alpha, beta: beta, transA: transA != 0, transB: transB != 0)
    }

    /// (M, K, N) of op(A)·op(B).
    static func sizes(_ a: Attributes, _ x: Engine.TensorType, _ w: Engine.TensorType) throws(InLoopError) -> (Engine.SymInt, Engine.SymInt, Engine.SymInt) {
        guard x.rank == 2, w.rank == 2 else { throw InLoopError(.format, "Gemm takes matrices, got \(x) and \(w)") }
        guard x.dtype == w.dtype, x.dtype.isFloatingPoint else { throw InLoopError(.format, "inputs \(x.dtype) and \(w.dtype)") }
        let m = a.transA ? x.shape[1] : x.shape[0], k = a.transA ? x.shape[0] : x.shape[1]
        let k2 = a.transB ? w.shape[1] : w.shape[0], n = a.transB ? w.shape[0] : w.shape[1]
        guard k == k2 else { throw InLoopError(.format, "A is \(x.shape.formatted) and B \(w.shape.formatted): inner sizes \(k) and \(k2) differ") }
        return (m, k, n)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0, "A"), w = try Engine.input(inputs, 1, "B")
        let (m, _, n) = try sizes(a, x, w)
        if inputs.count > 2, let c = inputs[2] {
            guard c.rank <= 2, c.dtype == x.dtype, try Engine.broadcast(c.shape, [m, n]) == [m, n] else {
                throw InLoopError(.format, "C \(c) does not broadcast to [\(m), \(n)]")
            }
        }
        return [Engine.TensorType(x.dtype, [m, n])]
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0, "A"), w = try Engine.input(ctx.inputTypes, 1, "B")
        let (m, k, n) = try sizes(a, x, w)
        let hasC = ctx.hasInput(2)
        let c = hasC ? try Engine.input(ctx.inputTypes, 2, "C") : nil
        // the nn.Linear form: a dense step (its reverse rule wants weight and bias both trainable or both not)
        if !a.transA, a.transB, a.alpha == 1, ctx.isConstant(1), let nk = n.known, nk >= 1, k.known.map({ $0 >= 1 }) == true,
           c.map({ c in a.beta == 1 && ctx.isConstant(2) && c.shape.known?.last == nk && c.shape.dropLast().allSatisfy { $0 == 1 } }) ?? true,
           !hasC || ctx.isParameter(1) == ctx.isParameter(2) {
            try DenseOp.lowerDense(&ctx, activation: .identity, weight: 1, bias: hasC ? 2 : nil)
            return
        }
        var cRow = Engine.Extent(), cCol = Engine.Extent()
        if let c {
            let cm: Engine.SymInt = c.rank == 2 ? c.shape[0] : 1, cn: Engine.SymInt = c.rank >= 1 ? c.shape[c.rank - 1] : 1
            if cm != 1 { cRow = try ctx.extent([cn], "C's row stride") }
            if cn != 1 { cCol = Engine.Extent(fixed: 1) }
            guard (cm == m || cm == 1), (cn == n || cn == 1) else {
                throw InLoopError(.unsupported, "C \(c.shape.formatted) against [\(m), \(n)]: a symbolic dimension that may be 1 is not lowered")
            }
        }
        let geometry = MatMulGeometry.encode(rows: try ctx.extent([m], "M"), inner: try ctx.extent([k], "K"), cols: try ctx.extent([n], "N"),
                                             transA: a.transA, transB: a.transB, cRowStride: cRow, cColStride: cCol, stack: [])
        var operands = [try ctx.input(0), try ctx.input(1)]
        if hasC { operands.append(try ctx.input(2)) }
        ctx.emit(.matMul(geometry: ctx.ints(geometry), alpha: a.alpha, beta: a.beta, hasC: hasC, accumulate: false, activation: .identity),
                 operands + [try ctx.output(0)])
    }
}

extension DenseOp {
    /// Per sample (threads): a row per sample times static weights.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension GemmOp {
    /// Per sample (threads): a row per sample times static weights (transA: A does not lead with the batch, refused by the shapes).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
