/// Matrix products and normalisation (phase 3.3 and part of 3.6 of `docs/ENGINE.md`): ONNX MatMul
/// (NumPy semantics), the general form of Gemm (its `nn.Linear` form is in `Dense.swift`),
/// BatchNormalization (inference form) and LayerNormalization. Every one lowers to GEMM calls or to
/// the normalisation kernels of `Kernels/Norm.swift`; their adjoints and tangents are the step rules
/// of `Compiler/Differentiation.swift`.

extension Engine.LoweringContext {
    /// Whether input k is a trainable parameter (differentiable plans; its gradient goes to the flat
    /// gradient vector).
    func isParameter(_ k: Int) -> Bool {
        guard numerics == .differentiable, k < node.inputs.count, let v = node.inputs[k] else { return false }
        return builder.parameterOffset[v] != nil
    }

    /// The elements of a constant input, widened to Double.
    func constantValues(_ k: Int, _ what: String) throws(InLoopError) -> [Double] {
        guard k < node.inputs.count, let v = node.inputs[k], let t = builder.graph[v].constant else {
            throw InLoopError(.unsupported, "\(what) must be a constant")
        }
        switch t.dtype {
        case .float32: return try t.values(as: Float.self).map(Double.init)
        case .float64: return try t.values(as: Double.self)
        case .int64, .bool: throw InLoopError(.format, "\(what) must be floating point, got \(t.dtype)")
        }
    }
}

/// Geometry of matrix products (MatMul, Gemm) and their lowering to one `matMul` step.
enum MatrixProduct {
    /// Strides of an operand's stack axes (right-aligned against the broadcast stack): 0 where it is
    /// broadcast; its own stride where its dimension is the stack's.
    static func stackStrides(_ ctx: Engine.LoweringContext, _ shape: Engine.Shape, stack: Engine.Shape,
                             _ what: String) throws(InLoopError) -> [Engine.Extent] {
        let own = shape.count - 2, off = stack.count - own
        var out: [Engine.Extent] = []
        for i in 0..<stack.count {
            let j = i - off
            guard j >= 0 else { out.append(Engine.Extent()); continue }
            if shape[j] == stack[i] {
                out.append(try ctx.extent(Array(shape[(j + 1)...]), "\(what)'s stride"))
            } else if shape[j].known == 1 {
                out.append(Engine.Extent())
            } else {
                throw InLoopError(.unsupported, "\(what) \(shape.formatted): stack dimension \(shape[j]) broadcast against \(stack[i]) is not lowered (a symbolic dimension that may be 1)")
            }
        }
        return out
    }

    /// MatMul after promotion of 1-D operands: a is [..., m, k], b [..., k, n], both rank ≥ 2.
    static func lowerMatMul(_ ctx: inout Engine.LoweringContext, a aS: Engine.Shape, b bS: Engine.Shape) throws(InLoopError) {
        let m = aS[aS.count - 2], k = aS[aS.count - 1], n = bS[bS.count - 1]
        let geometry: [Int]
        if bS.count == 2 {
            // B has no stack axes: A's leading axes fold into the rows, one GEMM in all
            geometry = MatMulGeometry.encode(rows: try ctx.extent(Array(aS.dropLast()), "the rows of A"), inner: try ctx.extent([k]),
                                             cols: try ctx.extent([n]), transA: false, transB: false, stack: [])
        } else {
            let stack = try Engine.broadcast(Array(aS.dropLast(2)), Array(bS.dropLast(2)))
            let sa = try stackStrides(ctx, aS, stack: stack, "A"), sb = try stackStrides(ctx, bS, stack: stack, "B")
            var axes: [(dim: Engine.Extent, a: Engine.Extent, b: Engine.Extent, y: Engine.Extent)] = []
            for i in 0..<stack.count {
                let sy = try ctx.extent(Array(stack[(i + 1)...]) + [m, n], "the product's stride")
                axes.append((try ctx.extent([stack[i]]), sa[i], sb[i], sy))
            }
            geometry = MatMulGeometry.encode(rows: try ctx.extent([m]), inner: try ctx.extent([k]), cols: try ctx.extent([n]),
                                             transA: false, transB: false, stack: axes)
        }
        ctx.emit(.matMul(geometry: ctx.ints(geometry), alpha: 1, beta: 0, hasC: false, accumulate: false, activation: .identity),
                 [try ctx.input(0), try ctx.input(1), try ctx.output(0)])
    }
}

/// ONNX MatMul: NumPy's matmul. 1-D operands get an axis of 1 (prepended to A, appended to B, removed
/// from the result); the stack axes broadcast. B may be a constant or computed at run time.
public enum MatMulOp: OpDefinition {
    public typealias Attributes = NoAttributes
    public static let name = "MatMul"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    static func promoted(_ a: Engine.TensorType, _ b: Engine.TensorType) throws(InLoopError) -> (Engine.Shape, Engine.Shape) {
        guard a.rank >= 1, b.rank >= 1 else { throw InLoopError(.format, "MatMul operands must have rank ≥ 1, got \(a) and \(b)") }
        guard a.dtype == b.dtype, a.dtype.isFloatingPoint else {
            throw InLoopError(.format, "MatMul takes two operands of one floating type, got \(a.dtype) and \(b.dtype)")
        }
        let aS = a.rank == 1 ? [1] + a.shape : a.shape, bS = b.rank == 1 ? b.shape + [1] : b.shape
        guard aS[aS.count - 1] == bS[bS.count - 2] else {
            throw InLoopError(.format, "A \(a.shape.formatted) and B \(b.shape.formatted) do not multiply (inner sizes \(aS[aS.count - 1]) and \(bS[bS.count - 2]))")
        }
        return (aS, bS)
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0, "A"), w = try Engine.input(inputs, 1, "B")
        let (aS, bS) = try promoted(x, w)
        var shape = try Engine.broadcast(Array(aS.dropLast(2)), Array(bS.dropLast(2)))
        if x.rank > 1 { shape.append(aS[aS.count - 2]) }
        if w.rank > 1 { shape.append(bS[bS.count - 1]) }
        return [Engine.TensorType(x.dtype, shape)]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let (aS, bS) = try promoted(try Engine.input(ctx.inputTypes, 0), try Engine.input(ctx.inputTypes, 1))
        try MatrixProduct.lowerMatMul(&ctx, a: aS, b: bS)
    }
}

/// ONNX BatchNormalization in its inference form: y = (x − mean)/sqrt(var + epsilon)·scale + B per
/// channel (axis 1), any rank ≥ 2. Scale, B, mean and var are constants; an inference plan folds them
/// into one affine map per channel at compile time. In a differentiable plan, scale and B may be
/// trainable parameters (mean and var stay constants).
public enum BatchNormalizationOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var epsilon: Double
        public var momentum: Double?
        /// training_mode = 1 (opset ≥ 14): batch statistics, optional running_mean and running_var outputs.
        public var training = false
        public func encoded() -> [String: Engine.AttributeValue] {
            var out: [String: Engine.AttributeValue] = ["epsilon": .float(epsilon)]
            if let momentum { out["momentum"] = .float(momentum) }
            if training { out["training_mode"] = .int(1) }
            return out
        }
    }
    public static let name = "BatchNormalization"
    public static let inputArity: ClosedRange<Int> = 5...5
    public static let outputArity: ClosedRange<Int> = 1...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let eps = try raw.float("epsilon") ?? 1e-5
        guard eps.isFinite, eps >= 0 else { throw InLoopError(.format, "attribute 'epsilon' is \(eps); it must be finite and ≥ 0") }
        let training = try raw.int("training_mode", default: 0)
        guard training == 0 || training == 1 else { throw InLoopError(.format, "attribute 'training_mode' is \(training); it must be 0 or 1") }
        if try raw.int("spatial", default: 1) != 1 {
            throw InLoopError(.unsupported, "BatchNormalization with spatial = 0 (opset < 9, statistics per element) is not supported")
        }
        let momentum = try raw.float("momentum")
        if let momentum, !momentum.isFinite { throw InLoopError(.format, "attribute 'momentum' is \(momentum); it must be finite") }
        return Attributes(epsilon: eps, momentum: momentum, training: training == 1)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        try inferTypes(a, inputs, known, outputCount: 1)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        guard outputCount == 1 || a.training else {
            throw InLoopError(.unsupported, "BatchNormalization with \(outputCount) outputs outside training_mode = 1 (opset < 14 statistics outputs) is not supported")
        }
        let x = try Engine.input(inputs, 0, "X")
        guard x.rank >= 2, x.dtype.isFloatingPoint else {
            throw InLoopError(.format, "input X must be a floating tensor of rank ≥ 2 (N, C, ...), got \(x)")
        }
        guard let c = x.shape[1].known else {
            throw InLoopError(.unsupported, "the channel axis of X \(x.shape.formatted) must have a known size")
        }
        for (k, what) in ["scale", "B", "input_mean", "input_var"].enumerated() {
            let t = try Engine.input(inputs, k + 1, what)
            guard t.dtype == x.dtype, t.shape == [Engine.SymInt(c)] else {
                throw InLoopError(.format, "input \(k + 1) (\(what)) must be [\(c)] \(x.dtype) for X \(x.shape.formatted), got \(t)")
            }
        }
        return [x] + Array(repeating: Engine.TensorType(x.dtype, [Engine.SymInt(c)]), count: max(0, outputCount - 1))
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0, "X")
        guard let c = x.shape[1].known else { throw InLoopError(.internal, "channels") }
        let outer = try ctx.extent([x.shape[0]], "the batch axis of X"), spatial = try ctx.extent(Array(x.shape[2...]), "the spatial axes of X")
        guard outer.perBatch == 0 || spatial.perBatch == 0 else { throw Engine.notLinear("X \(x.shape.formatted)") }
        // MARK: family nodes (run-time parameters, training mode)
        if a.training || !(1...4).allSatisfy({ ctx.isConstant($0) }) {
            try lowerComposed(a, &ctx, x: x, c: c)
            return
        }
        let scale = try ctx.constantValues(1, "scale"), bias = try ctx.constantValues(2, "B")
        let mean = try ctx.constantValues(3, "input_mean"), variance = try ctx.constantValues(4, "input_var")
        guard scale.count == c, bias.count == c, mean.count == c, variance.count == c else {
            throw InLoopError(.internal, "BatchNormalization parameter sizes")
        }
        let inverse = variance.map { 1 / ($0 + a.epsilon).squareRoot() }
        if ctx.isParameter(1) || ctx.isParameter(2) {
            // y = (x − mean)·inv·scale + B, with gradients for the trainable scale and B
            let stats = ctx.ints(mean.map(NormKernels.bits) + inverse.map(NormKernels.bits))
            ctx.emit(.batchNorm(outer: outer, channels: c, spatial: spatial, statistics: stats),
                     [try ctx.input(0), try ctx.input(1), try ctx.input(2), try ctx.output(0)])
        } else {
            // folded: y = x·s + t, s = scale·inv, t = B − mean·s
            let s = (0..<c).map { scale[$0] * inverse[$0] }
            let t = (0..<c).map { bias[$0] - mean[$0] * s[$0] }
            let coef = ctx.ints(s.map(NormKernels.bits) + t.map(NormKernels.bits))
            ctx.emit(.channelAffine(outer: outer, channels: c, spatial: spatial, coefficients: coef, shift: true, accumulate: false),
                     [try ctx.input(0), try ctx.output(0)])
        }
    }
}

/// ONNX LayerNormalization (opset 17): each slice x[i, ...] over the axes from `axis` on is
/// normalised by its mean and biased variance, then scaled and shifted (Scale and the optional B are
/// constants or trainable parameters, with the normalised slice's shape). The optional Mean and
/// InvStdDev outputs are refused.
public enum LayerNormalizationOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axis: Int
        public var epsilon: Double
        public var stashType: Int
        public func encoded() -> [String: Engine.AttributeValue] {
            ["axis": .int(axis), "epsilon": .float(epsilon), "stash_type": .int(stashType)]
        }
    }
    public static let name = "LayerNormalization"
    public static let sinceVersion: ClosedRange<Int> = 17...Int.max
    public static let inputArity: ClosedRange<Int> = 2...3
    public static let outputArity: ClosedRange<Int> = 1...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let eps = try raw.float("epsilon") ?? 1e-5
        guard eps.isFinite, eps >= 0 else { throw InLoopError(.format, "attribute 'epsilon' is \(eps); it must be finite and ≥ 0") }
        let stash = try raw.int("stash_type", default: 1)
        guard stash == 1 || stash == 11 else {
            throw InLoopError(.unsupported, "stash_type \(stash); InLoop computes the statistics in float64 (stash_type 1 or 11)")
        }
        return Attributes(axis: try raw.int("axis", default: -1), epsilon: eps, stashType: stash)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        try inferTypes(a, inputs, known, outputCount: 1)
    }

    /// Mean and InvStdDev: X's shape with the normalised axes of size 1.
    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0, "X")
        guard x.rank >= 1, x.dtype.isFloatingPoint else { throw InLoopError(.format, "input X must be a floating tensor of rank ≥ 1, got \(x)") }
        let axis = try Engine.axis(a.axis, rank: x.rank)
        let norm = Array(x.shape[axis...])
        for k in 1..<min(3, inputs.count) {
            guard let t = inputs[k] else { continue }
            let what = k == 1 ? "Scale" : "B"
            guard t.dtype == x.dtype, t.rank <= norm.count, try Engine.broadcast(norm, t.shape) == norm else {
                throw InLoopError(.format, "input \(k) (\(what)) \(t) does not broadcast to the normalised shape \(norm.formatted) of X")
            }
        }
        let stats = Engine.TensorType(x.dtype, Array(x.shape[..<axis]) + Array(repeating: Engine.SymInt(1), count: x.rank - axis))
        return [x] + Array(repeating: stats, count: max(0, outputCount - 1))
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0, "X")
        let axis = try Engine.axis(a.axis, rank: x.rank)
        guard let cols = Array(x.shape[axis...]).elementCount?.known else {
            throw InLoopError(.unsupported, "the normalised axes \(Array(x.shape[axis...]).formatted) must have known sizes")
        }
        let rows = try ctx.extent(Array(x.shape[..<axis]), "the rows of X")
        let hasBias = ctx.hasInput(2)
        // MARK: family nodes (Mean/InvStdDev outputs, run-time or broadcast Scale and B)
        let fused = ctx.outputTypes.count == 1 && (hasBias ? [1, 2] : [1]).allSatisfy { k in
            ctx.isConstant(k) && ctx.inputTypes[k]?.shape.elementCount?.known == cols
        }
        if !fused {
            try lowerComposed(a, &ctx, x: x, axis: axis)
            return
        }
        var operands = [try ctx.input(0), try ctx.input(1)]
        if hasBias { operands.append(try ctx.input(2)) }
        ctx.emit(.layerNorm(rows: rows, cols: cols, epsilon: a.epsilon, hasBias: hasBias), operands + [try ctx.output(0)])
    }
}

extension MatMulOp {
    /// Per sample (threads): per sample times a static operand.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension BatchNormalizationOp {
    /// Per sample (threads): inference only (per channel with constant statistics; training mode uses
    /// the batch's statistics).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        !a.training && Engine.perSampleShapes(inputs, outputs, batch: batch) && outputs.count == 1
    }
}

extension LayerNormalizationOp {
    /// Per sample (threads): over axes after the batch; the mean and inverse-deviation outputs lead with it too.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch) && (inputs.first ?? nil).map { t in (a.axis < 0 ? a.axis + t.rank : a.axis) >= 1 } == true
    }
}
