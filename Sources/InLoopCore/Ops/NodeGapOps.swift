/// Node-test gaps (issue 10, phase 6): operands that arrive at run time (normalisation parameters
/// given as graph inputs) and optional extra outputs (LayerNormalization's Mean and InvStdDev,
/// BatchNormalization's running statistics in training mode). These forms are composed of existing
/// steps (reduce, broadcast, unary, fill), so they are exact, trainable and have reverse and tangent
/// rules without code of their own.

enum StepComposer {
    typealias Value = RecurrentLowering.Value
    typealias Sym = Engine.SymInt

    /// The mean of x over `axes`, keeping the reduced axes as 1 (into `output` when given).
    static func mean(_ ctx: inout Engine.LoweringContext, _ x: Value, axes: [Int], output: Int32? = nil) throws(InLoopError) -> Value {
        let shape = Engine.reducedShape(x.shape, axes: axes, keepDims: true)
        let size = try ctx.extent(shape, "a mean")
        let y = output ?? ctx.temporary(size)
        try Engine.lowerReduction(&ctx, x: x.id, shape: x.shape, axes: axes, first: .mean, combine: .mean, final: nil, output: y)
        return Value(id: y, shape: shape)
    }

    /// op(a, b) broadcast (NumPy rules) to their common shape.
    static func binary(_ ctx: inout Engine.LoweringContext, _ op: BinaryOp, _ a: Value, _ b: Value,
                       output: Int32? = nil) throws(InLoopError) -> Value {
        let shape = try Engine.broadcast(a.shape, b.shape)
        let size = try ctx.extent(shape, "a broadcast result")
        let y = output ?? ctx.temporary(size)
        try Engine.lowerBroadcast(op, &ctx, a: (a.id, a.shape), b: (b.id, b.shape), output: y, outputShape: shape)
        return Value(id: y, shape: shape)
    }

    static func unary(_ ctx: inout Engine.LoweringContext, _ f: UnaryFunction, _ x: Value,
                      output: Int32? = nil) throws(InLoopError) -> Value {
        let size = try ctx.extent(x.shape, "a unary result")
        let y = output ?? ctx.temporary(size)
        ctx.emit(.unary(f, count: size), [x.id, y])
        return Value(id: y, shape: x.shape)
    }

    /// A constant scalar (shape [1]) written by a `fill` step.
    static func scalar(_ ctx: inout Engine.LoweringContext, _ value: Double) -> Value {
        let size = Engine.Extent(fixed: 1)
        let y = ctx.temporary(size)
        ctx.emit(.fill(count: size, value: value), [y])
        return Value(id: y, shape: [1])
    }

    /// 1 / sqrt(v + epsilon).
    static func inverseDeviation(_ ctx: inout Engine.LoweringContext, _ v: Value, epsilon: Double,
                                 output: Int32? = nil) throws(InLoopError) -> Value {
        let shifted = try binary(&ctx, .add, v, scalar(&ctx, epsilon))
        return try unary(&ctx, .reciprocal, unary(&ctx, .sqrt, shifted), output: output)
    }
}

extension LayerNormalizationOp {
    /// The composed form: Mean and InvStdDev outputs, Scale and B given at run time or broadcast over
    /// the normalised shape. Statistics in the input's type (the fused `layerNorm` step keeps its
    /// float64 statistics for the one-output form).
    static func lowerComposed(_ a: Attributes, _ ctx: inout Engine.LoweringContext, x: Engine.TensorType, axis: Int) throws(InLoopError) {
        typealias V = StepComposer.Value
        let axes = Array(axis..<x.rank)
        let outs = ctx.outputTypes.count
        let input = V(id: try ctx.input(0), shape: x.shape)
        let mean = try StepComposer.mean(&ctx, input, axes: axes, output: outs > 1 ? try ctx.output(1) : nil)
        let centred = try StepComposer.binary(&ctx, .sub, input, mean)
        let squares = try StepComposer.binary(&ctx, .mul, centred, centred)
        let variance = try StepComposer.mean(&ctx, squares, axes: axes)
        let inv = try StepComposer.inverseDeviation(&ctx, variance, epsilon: a.epsilon, output: outs > 2 ? try ctx.output(2) : nil)
        let normalised = try StepComposer.binary(&ctx, .mul, centred, inv)
        let scale = V(id: try ctx.input(1), shape: try Engine.input(ctx.inputTypes, 1, "Scale").shape)
        if ctx.hasInput(2) {
            let scaled = try StepComposer.binary(&ctx, .mul, normalised, scale)
            let bias = V(id: try ctx.input(2), shape: try Engine.input(ctx.inputTypes, 2, "B").shape)
            _ = try StepComposer.binary(&ctx, .add, scaled, bias, output: try ctx.output(0))
        } else {
            _ = try StepComposer.binary(&ctx, .mul, normalised, scale, output: try ctx.output(0))
        }
    }
}

extension BatchNormalizationOp {
    /// The composed form: scale, B, mean or var given at run time (inference), or training mode
    /// (batch statistics; outputs Y, running_mean, running_var as ONNX opset ≥ 14 defines them).
    static func lowerComposed(_ a: Attributes, _ ctx: inout Engine.LoweringContext, x: Engine.TensorType, c: Int) throws(InLoopError) {
        typealias V = StepComposer.Value
        let input = V(id: try ctx.input(0), shape: x.shape)
        // the [C] vectors seen as [C, 1, …, 1] against X's axes from 1 on
        let column = [Engine.SymInt(c)] + Array(repeating: Engine.SymInt(1), count: x.rank - 2)
        func vector(_ k: Int) throws(InLoopError) -> V { V(id: try ctx.input(k), shape: column) }
        let centred: V, inv: V
        if a.training {
            let axes = [0] + Array(2..<x.rank)
            let mean = try StepComposer.mean(&ctx, input, axes: axes)
            centred = try StepComposer.binary(&ctx, .sub, input, mean)
            let variance = try StepComposer.mean(&ctx, try StepComposer.binary(&ctx, .mul, centred, centred), axes: axes)
            inv = try StepComposer.inverseDeviation(&ctx, variance, epsilon: a.epsilon)
            // running statistics: input·momentum + batch·(1 − momentum)
            let m = a.momentum ?? 0.9
            let flat = [Engine.SymInt(c)]
            for (k, batch) in [(1, mean), (2, variance)] where k < ctx.outputTypes.count {
                let old = V(id: try ctx.input(k + 2), shape: flat)
                let kept = try StepComposer.binary(&ctx, .mul, old, StepComposer.scalar(&ctx, m))
                let new = try StepComposer.binary(&ctx, .mul, V(id: batch.id, shape: flat), StepComposer.scalar(&ctx, 1 - m))
                _ = try StepComposer.binary(&ctx, .add, kept, new, output: try ctx.output(k))
            }
        } else {
            centred = try StepComposer.binary(&ctx, .sub, input, vector(3))
            inv = try StepComposer.inverseDeviation(&ctx, vector(4), epsilon: a.epsilon)
        }
        let factor = try StepComposer.binary(&ctx, .mul, inv, vector(1))
        let scaled = try StepComposer.binary(&ctx, .mul, centred, factor)
        _ = try StepComposer.binary(&ctx, .add, scaled, vector(2), output: try ctx.output(0))
    }
}

// MARK: - Value inputs (Resize / Upsample scales, float Range bounds given as graph inputs)

extension Engine {
    /// A graph input whose values determine shapes, as operand `operand` of node `node`.
    typealias ValueUse = (node: Int, input: Int, operand: Int)

    /// The graph inputs that are the scales of a Resize or Upsample node (no scales attribute, no
    /// sizes given) or a bound of a float Range (no bounds attribute; its other bounds graph inputs
    /// or constants): their values determine shapes, so a plan is specialised on them (`Engine.Model`,
    /// full-shape path; `docs/ENGINE.md`, "Value inputs").
    static func valueInputUses(_ graph: Graph) -> [ValueUse] {
        var uses: [ValueUse] = []
        for (i, node) in graph.nodes.enumerated() {
            if let a = node.attributes as? ResizeNearestAttributes {
                guard a.scales == nil, a.scalesInput < node.inputs.count, let v = node.inputs[a.scalesInput],
                      let k = graph.inputs.firstIndex(of: v), graph[v].type?.shape != [SymInt(0)] else { continue }
                if let s = a.sizesInput, s < node.inputs.count, let sv = node.inputs[s], graph[sv].type?.shape != [SymInt(0)] { continue }
                uses.append((i, k, a.scalesInput))
            } else if let a = node.attributes as? RangeOp.Attributes, a.bounds == nil, node.inputs.count == 3 {
                let vs = node.inputs.compactMap { $0 }
                guard vs.count == 3, vs.allSatisfy({ graph[$0].type?.dtype.isFloatingPoint == true }),
                      vs.allSatisfy({ graph.inputs.contains($0) || graph[$0].constant != nil }) else { continue }
                for (j, v) in vs.enumerated() { if let k = graph.inputs.firstIndex(of: v) { uses.append((i, k, j)) } }
            }
        }
        return uses
    }

    /// Writes the callers' values (float64 bit patterns, `counts[i]` values for use i, one use after
    /// another) into the nodes' attributes (Resize `scales`, Range `bounds`); bad values are the
    /// caller's error.
    static func bindValueInputs(_ graph: Graph, _ uses: [ValueUse], _ bits: [Int], counts: [Int]) throws(InLoopError) {
        var at = 0
        var given: [Int: [Int: [Double]]] = [:]   // node → operand → values
        for (i, u) in uses.enumerated() {
            guard at + counts[i] <= bits.count else { throw InLoopError(.internal, "value input \(u.input) of node \(u.node)") }
            let single = graph[graph.inputs[u.input]].type?.dtype == .float32   // the values as the input's type holds them
            let values = bits[at ..< at + counts[i]].map { (b: Int) -> Double in
                let d = Double(bitPattern: UInt64(truncatingIfNeeded: b))
                return single ? Double(Float(d)) : d
            }
            at += counts[i]
            let what = "input '\(graph[graph.inputs[u.input]].name)' of '\(graph.nodes[u.node].name)'"
            guard values.allSatisfy({ $0.isFinite }) else { throw InLoopError(.invalidArgument, "\(what): a value is not finite") }
            given[u.node, default: [:]][u.operand] = values
        }
        for (n, operands) in given.sorted(by: { $0.key < $1.key }) {
            let node = graph.nodes[n]
            if var a = node.attributes as? ResizeNearestAttributes, let v = operands[a.scalesInput] {
                guard v.allSatisfy({ $0 > 0 && $0 <= 1e6 }) else {
                    throw InLoopError(.invalidArgument, "scales of '\(node.name)': \(v); scales are positive and at most 10^6")
                }
                a.scales = v.map { Float($0) }
                graph.nodes[n].attributes = a
            } else if var a = node.attributes as? RangeOp.Attributes {
                var b: [Double] = []
                for j in 0..<3 {
                    if let v = operands[j] { b.append(v.first ?? .nan); continue }
                    guard let id = node.inputs[j], let c = graph[id].constant, c.count == 1 else { throw InLoopError(.internal, "Range bound \(j)") }
                    b.append(c.dtype == .float32 ? Double(try c.values(as: Float.self)[0]) : try c.values(as: Double.self)[0])
                }
                guard b.allSatisfy({ $0.isFinite }), b[2] != 0 else {
                    throw InLoopError(.invalidArgument, "Range '\(node.name)' of \(b): the bounds must be finite and delta non-zero")
                }
                a.bounds = b
                graph.nodes[n].attributes = a
            }
        }
    }
}
