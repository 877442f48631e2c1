import XCTest
import Foundation
@testable import InLoopCore

/// Builds small graphs in Swift: random float constants, integer constants, nodes.
struct GraphMaker {
    var constants: [String: GraphConstant] = [:]
    var nodes: [Node] = []
    var rng: RandomState
    var counter = 0

    init(seed: UInt64 = 3) { rng = RandomState(seed: seed) }

    mutating func fresh(_ prefix: String) -> String { counter += 1; return "\(prefix)\(counter)" }

    /// A random float constant, uniform in [offset - scale, offset + scale].
    mutating func rand(_ shape: [Int], scale: Double = 0.6, offset: Double = 0, name: String? = nil) -> String {
        let n = shape.reduce(1, *)
        var v: [Float] = []
        for _ in 0..<n { v.append(Float(offset + scale * (2 * rng.uniform() - 1))) }
        return values(shape, v, name: name)
    }

    mutating func values(_ shape: [Int], _ v: [Float], name: String? = nil) -> String {
        let nm = name ?? fresh("c")
        constants[nm] = .float(try! Tensor(shape: shape, values: v))
        return nm
    }

    mutating func ints(_ v: [Int]) -> String {
        let nm = fresh("i")
        constants[nm] = .int(IntTensor(v))
        return nm
    }

    /// Adds a node; returns its first output.
    @discardableResult
    mutating func op(_ op: Op, _ type: String, _ inputs: [String], outputs: Int = 1) -> String {
        let name = fresh(type.lowercased())
        let outs = (0..<outputs).map { "\(name)_out\($0)" }
        nodes.append(Node(name: name, opType: type, op: op, inputs: inputs, outputs: outs))
        return outs[0]
    }

    /// y = Gemm(x, W[n, k]ᵀ, b[n]).
    mutating func dense(_ x: String, _ k: Int, _ n: Int) -> String {
        op(.gemm(alpha: 1, beta: 1, transA: false, transB: true), "Gemm", [x, rand([n, k], scale: 0.8), rand([n], scale: 0.3)])
    }

    func graph(_ name: String, input dims: [Int?], output: String) -> Graph {
        Graph(name: name, inputs: [GraphInput(name: "x", dims: dims)], outputs: [output], constants: constants, nodes: nodes)
    }
}

struct GraphCase {
    var name: String
    var graph: Graph
    var trainable: Set<String>? = nil
    var xScale: Double = 1
}

/// One small graph per op type (and per important attribute), float64-checkable.
func graphCases() -> [GraphCase] {
    var cases: [GraphCase] = []

    // Gemm: transB, alpha, beta, C as a vector and as a [1, n] row; tanh between.
    do {
        var g = GraphMaker()
        let h = g.op(.gemm(alpha: 0.7, beta: 1.3, transA: false, transB: true), "Gemm", ["x", g.rand([4, 3]), g.rand([4])])
        let t = g.op(.activation(.tanh), "Tanh", [h])
        let y = g.op(.gemm(alpha: 1, beta: 0.5, transA: false, transB: false), "Gemm", [t, g.rand([4, 2]), g.rand([1, 2])])
        cases.append(GraphCase(name: "Gemm transB alpha beta", graph: g.graph("gemm", input: [nil, 3], output: y)))
    }
    // Gemm transA (A = Transpose(x)), C a column broadcast [n] and no C.
    do {
        var g = GraphMaker()
        let xt = g.op(.transpose(perm: nil), "Transpose", ["x"])
        let h = g.op(.gemm(alpha: 1.1, beta: 1, transA: true, transB: false), "Gemm", [xt, g.rand([3, 4]), g.rand([4])])
        let y = g.op(.gemm(alpha: 1, beta: 1, transA: false, transB: true), "Gemm", [h, g.rand([2, 4])])
        cases.append(GraphCase(name: "Gemm transA", graph: g.graph("gemmT", input: [nil, 3], output: y)))
    }
    // MatMul with a constant B on rank 3 + Add bias (trainable by the MatMul-bias rule).
    do {
        var g = GraphMaker()
        let h = g.op(.matMul, "MatMul", ["x", g.rand([3, 4], name: "W")])
        let hb = g.op(.binary(.add), "Add", [h, g.rand([4], name: "b")])
        let r = g.op(.activation(.sigmoid), "Sigmoid", [hb])
        let y = g.op(.flatten(axis: 1), "Flatten", [r])
        cases.append(GraphCase(name: "MatMul + bias", graph: g.graph("matmul", input: [nil, 2, 3], output: y)))
    }
    // Batched MatMul of two activations; MatMul by a trainable vector (rank-1 B).
    do {
        var g = GraphMaker()
        let xt = g.op(.transpose(perm: [0, 2, 1]), "Transpose", ["x"])
        let p = g.op(.matMul, "MatMul", ["x", xt])
        let pf = g.op(.flatten(axis: 1), "Flatten", [p])
        let q = g.op(.matMul, "MatMul", ["x", g.rand([3])])
        let y = g.op(.concat(axis: 1), "Concat", [pf, q])
        cases.append(GraphCase(name: "MatMul batched", graph: g.graph("bmm", input: [nil, 2, 3], output: y)))
    }
    // Broadcasting Add/Sub/Mul/Div with constant vectors (made trainable), residual add, both-activation
    // broadcasting, constant first operand.
    do {
        var g = GraphMaker()
        let m = g.rand([4], name: "m"), s = g.rand([4], scale: 0.5, offset: 1.5, name: "s")
        let gm = g.rand([1, 4], name: "gm"), cv = g.rand([4], name: "cv")
        let a = g.op(.binary(.sub), "Sub", ["x", m])
        let b = g.op(.binary(.div), "Div", [a, s])
        let c = g.op(.binary(.mul), "Mul", [b, gm])
        let d = g.op(.binary(.add), "Add", [c, "x"])
        let e = g.op(.binary(.sub), "Sub", [cv, d])
        let sq = g.op(.binary(.mul), "Mul", ["x", "x"])
        let den = g.op(.binary(.add), "Add", [sq, g.values([], [1])])
        let f = g.op(.binary(.div), "Div", [e, den])
        let col = g.op(.reshape(allowZero: false), "Reshape", [f, g.ints([-1, 4, 1])])
        let row = g.op(.reshape(allowZero: false), "Reshape", ["x", g.ints([-1, 1, 4])])
        let outer = g.op(.binary(.mul), "Mul", [col, row])
        let y = g.op(.flatten(axis: 1), "Flatten", [outer])
        cases.append(GraphCase(name: "Add/Sub/Mul/Div broadcasting", graph: g.graph("binary", input: [nil, 4], output: y),
                               trainable: ["m", "s", "gm", "cv"]))
    }
    // Pow: constant scalar exponent, activation exponent, trainable exponent vector.
    do {
        var g = GraphMaker()
        let sq = g.op(.binary(.mul), "Mul", ["x", "x"])
        let base = g.op(.binary(.add), "Add", [sq, g.values([], [0.5])])
        let p1 = g.op(.binary(.pow), "Pow", [base, g.values([], [1.5])])
        let p2 = g.op(.binary(.pow), "Pow", [base, g.op(.activation(.tanh), "Tanh", ["x"])])
        let p3 = g.op(.binary(.pow), "Pow", [base, g.rand([4], scale: 0.5, offset: 1, name: "e")])
        let y = g.op(.concat(axis: 1), "Concat", [p1, p2, p3])
        cases.append(GraphCase(name: "Pow", graph: g.graph("pow", input: [nil, 4], output: y), trainable: ["e"]))
    }
    // Every activation between two dense layers.
    let acts: [Activation] = [.relu, .leakyRelu(alpha: 0.3), .tanh, .sigmoid, .gelu, .geluTanh, .silu, .softplus, .elu(alpha: 0.7), .identity]
    for act in acts {
        var g = GraphMaker()
        let h = g.dense("x", 3, 5)
        let a = g.op(.activation(act), "\(act)", [h])
        let y = g.dense(a, 5, 2)
        cases.append(GraphCase(name: "activation \(act)", graph: g.graph("act", input: [nil, 3], output: y)))
    }
    // Element-wise functions (positive arguments where needed).
    let unaries: [(UnaryFunction, Bool)] = [(.erf, false), (.exp, false), (.log, true), (.sqrt, true), (.neg, false), (.abs, false),
                                            (.reciprocal, true), (.softsign, false),
                                            (.selu(alpha: 1.67326319217681884765625, gamma: 1.05070102214813232421875), false),
                                            (.pow(exponent: 2.5), true), (.clip(min: -0.3, max: 0.4), false)]
    for (f, positive) in unaries {
        var g = GraphMaker()
        var h = g.dense("x", 3, 5)
        if positive {
            let sq = g.op(.binary(.mul), "Mul", [h, h])
            h = g.op(.binary(.add), "Add", [sq, g.values([], [0.5])])
        }
        let a = g.op(.unary(f), "\(f)", [h])
        let y = g.dense(a, 5, 2)
        cases.append(GraphCase(name: "unary \(f)", graph: g.graph("unary", input: [nil, 3], output: y)))
    }
    // Clip with bounds as inputs (opset ≥ 11).
    do {
        var g = GraphMaker()
        let h = g.dense("x", 3, 5)
        let c = g.op(.clip(min: nil, max: nil), "Clip", [h, g.values([], [-0.2]), g.values([], [0.5])])
        let y = g.dense(c, 5, 2)
        cases.append(GraphCase(name: "Clip", graph: g.graph("clip", input: [nil, 3], output: y)))
    }
    // Reshape-like ops, Transpose, Dropout/Identity, Squeeze/Unsqueeze with attribute and input axes.
    do {
        var g = GraphMaker()
        let a = g.op(.identity, "Identity", ["x"])
        let b = g.op(.reshape(allowZero: false), "Reshape", [a, g.ints([0, 3, 2])])
        let c = g.op(.transpose(perm: [0, 2, 1]), "Transpose", [b])
        let d = g.op(.unsqueeze(axes: [1]), "Unsqueeze", [c])
        let e = g.op(.unsqueeze(axes: nil), "Unsqueeze", [d, g.ints([-1])])
        let f = g.op(.squeeze(axes: nil), "Squeeze", [e, g.ints([1, 4])])
        let h = g.op(.transpose(perm: [2, 0, 1]), "Transpose", [f])
        let i = g.op(.activation(.tanh), "Tanh", [h])
        let j = g.op(.transpose(perm: [1, 2, 0]), "Transpose", [i])
        let k = g.op(.flatten(axis: 1), "Flatten", [j])
        let l = g.op(.identity, "Dropout", [k], outputs: 2)
        let y = g.dense(l, 6, 3)
        cases.append(GraphCase(name: "Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Identity/Dropout",
                               graph: g.graph("views", input: [nil, 2, 3], output: y)))
    }
    // The exporter's Shape → Gather → Unsqueeze → Concat → Reshape chain.
    do {
        var g = GraphMaker()
        let s = g.op(.shape(start: 0, end: nil), "Shape", ["x"])
        g.constants["zero"] = .int(IntTensor(scalar: 0))
        let s0 = g.op(.gather(axis: 0), "Gather", [s, "zero"])
        let s0u = g.op(.unsqueeze(axes: [0]), "Unsqueeze", [s0])
        let target = g.op(.concat(axis: 0), "Concat", [s0u, g.ints([-1])])
        let flat = g.op(.reshape(allowZero: false), "Reshape", ["x", target])
        let h = g.op(.matMul, "MatMul", [flat, g.rand([6, 4])])
        let hb = g.op(.binary(.add), "Add", [h, g.rand([4])])
        let y = g.op(.activation(.elu(alpha: 1)), "Elu", [hb])
        cases.append(GraphCase(name: "Shape chain", graph: g.graph("chain", input: [nil, 2, 3], output: y)))
    }
    // Concat of activations along axis 1 (rank 2) and along a middle axis (rank 3).
    do {
        var g = GraphMaker()
        let a = g.op(.activation(.tanh), "Tanh", ["x"])
        let b = g.dense(g.op(.flatten(axis: 1), "Flatten", ["x"]), 6, 3)
        let c3 = g.op(.concat(axis: 1), "Concat", ["x", a])            // [N, 4, 3]
        let c3f = g.op(.flatten(axis: 1), "Flatten", [c3])
        let y = g.op(.concat(axis: -1), "Concat", [b, c3f, b])
        cases.append(GraphCase(name: "Concat", graph: g.graph("concat", input: [nil, 2, 3], output: y)))
    }
    // Softmax over the last axis, a middle axis, coerced 2-D; LogSoftmax.
    do {
        var g = GraphMaker()
        let s1 = g.op(.softmax(axis: -1, coerce2D: false, log: false), "Softmax", ["x"])
        let s2 = g.op(.softmax(axis: 1, coerce2D: false, log: false), "Softmax", ["x"])
        let s3 = g.op(.softmax(axis: 1, coerce2D: true, log: false), "Softmax", ["x"])
        let s4 = g.op(.softmax(axis: -1, coerce2D: false, log: true), "LogSoftmax", ["x"])
        let c = g.op(.concat(axis: 1), "Concat", [s1, s2, s3, s4])   // [N, 8, 3]
        let f = g.op(.flatten(axis: 1), "Flatten", [c])
        let y = g.dense(f, 24, 3)
        cases.append(GraphCase(name: "Softmax/LogSoftmax", graph: g.graph("softmax", input: [nil, 2, 3], output: y), xScale: 2))
    }
    // Conv 1-D: pads, strides, dilations.
    do {
        var g = GraphMaker()
        let c1 = g.op(.conv(ConvAttributes(pads: [1, 1], group: 1)), "Conv", ["x", g.rand([3, 2, 3]), g.rand([3])])
        let t = g.op(.activation(.tanh), "Tanh", [c1])
        let c2 = g.op(.conv(ConvAttributes(strides: [2], dilations: [2])), "Conv", [t, g.rand([2, 3, 2]), g.rand([2])])
        let y = g.op(.flatten(axis: 1), "Flatten", [c2])
        cases.append(GraphCase(name: "Conv1d", graph: g.graph("conv1d", input: [nil, 2, 7], output: y)))
    }
    // Conv 2-D: asymmetric pads, strides, dilations, no bias.
    do {
        var g = GraphMaker()
        let c1 = g.op(.conv(ConvAttributes(strides: [1, 2], dilations: [2, 1], pads: [1, 0, 1, 1])), "Conv",
                      ["x", g.rand([4, 2, 3, 2]), g.rand([4])])
        let r = g.op(.activation(.softplus), "Softplus", [c1])
        let c2 = g.op(.conv(ConvAttributes(pads: [1, 1, 1, 1])), "Conv", [r, g.rand([2, 4, 3, 3])])
        let y = g.op(.flatten(axis: 1), "Flatten", [c2])
        cases.append(GraphCase(name: "Conv2d", graph: g.graph("conv2d", input: [nil, 2, 5, 6], output: y)))
    }
    // Depthwise (channel multiplier 2, SAME_UPPER) and grouped 2-D convolutions.
    do {
        var g = GraphMaker()
        let c1 = g.op(.conv(ConvAttributes(strides: [2, 1], group: 2, autoPad: .sameUpper)), "Conv",
                      ["x", g.rand([4, 1, 3, 3]), g.rand([4])])
        let t = g.op(.activation(.tanh), "Tanh", [c1])
        let c2 = g.op(.conv(ConvAttributes(pads: [0, 1, 0, 1], group: 2)), "Conv", [t, g.rand([2, 2, 2, 2]), g.rand([2])])
        let y = g.op(.flatten(axis: 1), "Flatten", [c2])
        cases.append(GraphCase(name: "Conv2d depthwise/grouped", graph: g.graph("dwconv", input: [nil, 2, 5, 5], output: y)))
    }
    // MaxPool 2-D (pads, strides) and 1-D (dilations, ceil_mode).
    do {
        var g = GraphMaker()
        let p = g.op(.maxPool(PoolAttributes(kernelShape: [2, 2], strides: [2, 2], pads: [0, 0, 1, 0])), "MaxPool", ["x"])
        let y = g.op(.flatten(axis: 1), "Flatten", [p])
        cases.append(GraphCase(name: "MaxPool2d", graph: g.graph("maxpool", input: [nil, 2, 5, 6], output: y)))
    }
    do {
        var g = GraphMaker()
        let p = g.op(.maxPool(PoolAttributes(kernelShape: [3], strides: [2], dilations: [2], ceilMode: true)), "MaxPool", ["x"])
        let y = g.op(.flatten(axis: 1), "Flatten", [p])
        cases.append(GraphCase(name: "MaxPool1d", graph: g.graph("maxpool1", input: [nil, 2, 10], output: y)))
    }
    // AveragePool with and without count_include_pad, ceil_mode.
    for include in [false, true] {
        var g = GraphMaker()
        let p = g.op(.averagePool(PoolAttributes(kernelShape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true,
                                                 countIncludePad: include)), "AveragePool", ["x"])
        let q = g.op(.averagePool(PoolAttributes(kernelShape: [2], strides: [1], pads: [1, 0], countIncludePad: include)),
                     "AveragePool", [g.op(.reshape(allowZero: false), "Reshape", ["x", g.ints([0, 2, -1])])])
        let y = g.op(.concat(axis: 1), "Concat", [g.op(.flatten(axis: 1), "Flatten", [p]), g.op(.flatten(axis: 1), "Flatten", [q])])
        cases.append(GraphCase(name: "AveragePool count_include_pad=\(include)", graph: g.graph("avgpool", input: [nil, 2, 5, 6], output: y)))
    }
    // GlobalAveragePool and GlobalMaxPool.
    do {
        var g = GraphMaker()
        let a = g.op(.globalAveragePool, "GlobalAveragePool", ["x"])
        let m = g.op(.globalMaxPool, "GlobalMaxPool", ["x"])
        let c = g.op(.concat(axis: 1), "Concat", [a, m])
        let y = g.op(.flatten(axis: 1), "Flatten", [c])
        cases.append(GraphCase(name: "GlobalAveragePool/GlobalMaxPool", graph: g.graph("global", input: [nil, 3, 4, 5], output: y)))
    }
    // BatchNormalization after a conv (rank 4) and after a dense layer (rank 2); default trainables
    // (scale, B) and all four inputs trainable.
    for all in [false, true] {
        var g = GraphMaker()
        let c = g.op(.conv(ConvAttributes(pads: [1, 1, 1, 1])), "Conv", ["x", g.rand([3, 2, 3, 3]), g.rand([3])])
        let bn = g.op(.batchNormalization(epsilon: 1e-3), "BatchNormalization",
                      [c, g.rand([3], name: "s1"), g.rand([3], name: "b1"), g.rand([3], name: "m1"),
                       g.rand([3], scale: 0.4, offset: 1, name: "v1")])
        let f = g.op(.flatten(axis: 1), "Flatten", [g.op(.activation(.tanh), "Tanh", [bn])])
        let h = g.dense(f, 48, 4)
        let bn2 = g.op(.batchNormalization(epsilon: 1e-5), "BatchNormalization",
                       [h, g.rand([4], name: "s2"), g.rand([4], name: "b2"), g.rand([4], name: "m2"),
                        g.rand([4], scale: 0.4, offset: 1, name: "v2")])
        let trainable: Set<String>? = all ? Set(g.constants.keys) : nil
        cases.append(GraphCase(name: "BatchNormalization\(all ? " (mean/var trainable)" : "")",
                               graph: g.graph("bn", input: [nil, 2, 4, 4], output: bn2), trainable: trainable))
    }
    // LayerNormalization: last axis with bias; over two axes with a broadcast scale and no bias.
    do {
        var g = GraphMaker()
        let h = g.dense(g.op(.flatten(axis: 1), "Flatten", ["x"]), 6, 5)
        let ln = g.op(.layerNormalization(axis: -1, epsilon: 1e-5), "LayerNormalization", [h, g.rand([5], offset: 1), g.rand([5])])
        let ln2 = g.op(.layerNormalization(axis: 1, epsilon: 1e-3), "LayerNormalization", ["x", g.rand([3], offset: 1)])
        let y = g.op(.concat(axis: 1), "Concat", [ln, g.op(.flatten(axis: 1), "Flatten", [ln2])])
        cases.append(GraphCase(name: "LayerNormalization", graph: g.graph("ln", input: [nil, 2, 3], output: y)))
    }
    return cases
}

/// A copy of `x` that outlives the calls (the network reads its input until backward/tangent).
final class Stable {
    let p: UnsafeMutablePointer<Double>
    let count: Int
    init(_ x: [Double]) { count = x.count; p = .allocate(capacity: max(count, 1)); p.initialize(from: x, count: count) }
    deinit { p.deallocate() }
}

final class GraphNetworkTests: XCTestCase {
    func output(_ p: UnsafePointer<Double>, _ n: Int) -> [Double] { Array(UnsafeBufferPointer(start: p, count: n)) }

    /// Gradients of a loss w.r.t. parameters and inputs vs central differences; tangent-linear vs
    /// central differences; the adjoint dot-product test; the Jacobian vs tangent and adjoint sweeps.
    func check(_ c: GraphCase) throws {
        let net = try GraphNetwork<Double>(graph: c.graph, trainable: c.trainable)
        var rng = RandomState(seed: 9)
        let batch = 3, nIn = net.inputSize, nOut = net.outputSize
        let x0 = randomArray(batch * nIn, &rng, scale: c.xScale)
        let x = Stable(x0)
        let target = randomArray(batch * nOut, &rng)
        let loss = Loss(.mse)
        func lossAt() throws -> Double {
            let p = try net.forward(UnsafePointer(x.p), batch: batch)
            return target.withUnsafeBufferPointer { loss.evaluate(prediction: p, target: $0.baseAddress!, batch: batch, outputs: nOut, gradient: nil) }
        }
        // Reverse mode vs finite differences.
        let pred = try net.forward(UnsafePointer(x.p), batch: batch)
        var dy = [Double](repeating: 0, count: batch * nOut)
        _ = target.withUnsafeBufferPointer { tp in dy.withUnsafeMutableBufferPointer { loss.evaluate(prediction: pred, target: tp.baseAddress!, batch: batch, outputs: nOut, gradient: $0.baseAddress!) } }
        var dx = [Double](repeating: 0, count: batch * nIn)
        try dy.withUnsafeBufferPointer { d in try dx.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: batch, parameterGradients: true, inputGradient: $0.baseAddress!) } }
        let analytic = net.gradients.array
        let h = 1e-6
        var worstP = 0.0, worstX = 0.0
        for i in 0..<net.parameterCount {
            let p0 = net.parameters.base[i]
            net.parameters.base[i] = p0 + h; let lp = try lossAt()
            net.parameters.base[i] = p0 - h; let lm = try lossAt()
            net.parameters.base[i] = p0
            let fd = (lp - lm) / (2 * h)
            worstP = max(worstP, abs(fd - analytic[i]) / max(1e-3, abs(fd)))
        }
        for i in 0..<(batch * nIn) {
            x.p[i] = x0[i] + h; let lp = try lossAt()
            x.p[i] = x0[i] - h; let lm = try lossAt()
            x.p[i] = x0[i]
            let fd = (lp - lm) / (2 * h)
            worstX = max(worstX, abs(fd - dx[i]) / max(1e-3, abs(fd)))
        }
        XCTAssertLessThan(worstP, 1e-6, "\(c.name): worst relative parameter-gradient error \(worstP)")
        XCTAssertLessThan(worstX, 1e-6, "\(c.name): worst relative input-gradient error \(worstX)")

        // Tangent-linear and adjoint at x.
        let dxIn = randomArray(batch * nIn, &rng), dyIn = randomArray(batch * nOut, &rng)
        _ = try net.forward(UnsafePointer(x.p), batch: batch)
        let jdx = output(try dxIn.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: batch) }, batch * nOut)
        var jtdy = [Double](repeating: 0, count: batch * nIn)
        try dyIn.withUnsafeBufferPointer { d in try jtdy.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: batch, parameterGradients: false, inputGradient: $0.baseAddress!) } }
        let lhs = zip(jdx, dyIn).reduce(0) { $0 + $1.0 * $1.1 }
        let rhs = zip(dxIn, jtdy).reduce(0) { $0 + $1.0 * $1.1 }
        let dotScale = (jdx.reduce(0) { $0 + $1 * $1 }).squareRoot() * (dyIn.reduce(0) { $0 + $1 * $1 }).squareRoot()
        XCTAssertLessThan(abs(lhs - rhs) / dotScale, 1e-13, "\(c.name): dot-product test \(lhs) vs \(rhs)")
        let xp = Stable(zip(x0, dxIn).map { $0 + h * $1 }), xm = Stable(zip(x0, dxIn).map { $0 - h * $1 })
        let fp = output(try net.forward(UnsafePointer(xp.p), batch: batch), batch * nOut)
        let fm = output(try net.forward(UnsafePointer(xm.p), batch: batch), batch * nOut)
        let fd = zip(fp, fm).map { ($0 - $1) / (2 * h) }
        let scale = max(fd.map(abs).max() ?? 0, 1e-3)
        let tlErr = zip(fd, jdx).map { abs($0 - $1) }.max()! / scale
        XCTAssertLessThan(tlErr, 1e-7, "\(c.name): tangent-linear vs finite differences \(tlErr)")

        // Jacobian vs one tangent sweep and one adjoint sweep per direction, batch 2.
        let b2 = 2
        var jac = [Double](repeating: 0, count: b2 * nIn * nOut)
        try jac.withUnsafeMutableBufferPointer { try net.jacobian(UnsafePointer(x.p), batch: b2, into: $0.baseAddress!) }
        _ = try net.forward(UnsafePointer(x.p), batch: b2)
        var worstJ = 0.0
        for i in 0..<nIn {
            var e = [Double](repeating: 0, count: b2 * nIn)
            for s in 0..<b2 { e[s * nIn + i] = 1 }
            let col = output(try e.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: b2) }, b2 * nOut)
            for s in 0..<b2 { for o in 0..<nOut { worstJ = max(worstJ, abs(col[s * nOut + o] - jac[(s * nIn + i) * nOut + o])) } }
        }
        for o in 0..<nOut {
            var e = [Double](repeating: 0, count: b2 * nOut)
            for s in 0..<b2 { e[s * nOut + o] = 1 }
            var row = [Double](repeating: 0, count: b2 * nIn)
            try e.withUnsafeBufferPointer { d in try row.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: b2, parameterGradients: false, inputGradient: $0.baseAddress!) } }
            for s in 0..<b2 { for i in 0..<nIn { worstJ = max(worstJ, abs(row[s * nIn + i] - jac[(s * nIn + i) * nOut + o])) } }
        }
        let jScale = max(jac.map(abs).max() ?? 0, 1e-3)
        XCTAssertLessThan(worstJ / jScale, 1e-12, "\(c.name): Jacobian vs tangent/adjoint sweeps")
        // In chunks of one sample (bounded memory): the same numbers.
        var jacChunked = [Double](repeating: 0, count: b2 * nIn * nOut)
        try jacChunked.withUnsafeMutableBufferPointer { try networkJacobian(net, UnsafePointer(x.p), batch: b2, into: $0.baseAddress!, maxRows: 1) }
        XCTAssertLessThan(zip(jac, jacChunked).map { abs($0 - $1) }.max()! / jScale, 1e-12, "\(c.name): chunked Jacobian")
    }

    func testEveryOpAgainstFiniteDifferencesInFloat64() throws {
        for c in graphCases() {
            do { try check(c) } catch { XCTFail("\(c.name): \(error)") }
        }
    }

    /// float32 forward of GraphNetwork<Float> equals the inference engine's on every test graph.
    func testFloat32ForwardMatchesGraphModel() throws {
        for c in graphCases() {
            do {
                let net = try GraphNetwork<Float>(graph: c.graph, trainable: c.trainable)
                let model = try GraphModel(graph: c.graph)
                var rng = RandomState(seed: 4)
                for batch in [1, 3] {
                    let x = (0..<(batch * net.inputSize)).map { _ in Float(2 * rng.uniform() - 1) }
                    let ref = try model.run(batch: batch, [x])[0]
                    let y = try x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: batch), count: batch * net.outputSize)) }
                    let scale = max(ref.map { abs($0) }.max() ?? 0, 1)
                    let err = zip(y, ref).map { abs($0 - $1) }.max()! / scale
                    XCTAssertLessThan(err, 1e-5, "\(c.name), batch \(batch): GraphNetwork<Float> vs GraphModel \(err)")
                }
            } catch {
                XCTFail("\(c.name): \(error)")
            }
        }
    }

    /// Parameters: which constants, in which order; writing them back gives the same model.
    func testParametersOrderAndWriteBack() throws {
        var g = GraphMaker()
        let w1 = g.rand([4, 3], name: "w1"), b1 = g.rand([4], name: "b1")
        let mean = g.rand([3], name: "mean")
        let a = g.op(.binary(.sub), "Sub", ["x", mean])
        let h = g.op(.gemm(alpha: 1, beta: 1, transA: false, transB: true), "Gemm", [a, w1, b1])
        let r = g.op(.activation(.relu), "Relu", [h])
        let m = g.op(.matMul, "MatMul", [r, g.rand([4, 2], name: "w2")])
        let y = g.op(.binary(.add), "Add", [g.rand([2], name: "b2"), m])
        let graph = g.graph("order", input: [nil, 3], output: y)
        let net = try GraphNetwork<Float>(graph: graph)
        XCTAssertEqual(net.parameterInfo.map { $0.name }, ["w1", "b1", "w2", "b2"])
        XCTAssertEqual(net.parameterInfo.map { $0.offset }, [0, 12, 16, 24])
        XCTAssertEqual(net.parameterCount, 26)
        for i in 0..<net.parameterCount { net.parameters.base[i] += 0.01 * Float(i % 7) }
        let model = try GraphModel(graph: try net.writeParameters(into: graph))
        let x: [Float] = [0.3, -0.7, 1.1, 0.5, 0.2, -0.4]
        let ref = try model.run(batch: 2, [x])[0]
        let yNet = try x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: 2), count: 4)) }
        for (a, b) in zip(yNet, ref) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // An explicit choice, and a wrong name.
        XCTAssertEqual(try GraphNetwork<Float>(graph: graph, trainable: ["mean", "w2"]).parameterInfo.map { $0.name }, ["mean", "w2"])
        XCTAssertThrowsError(try GraphNetwork<Float>(graph: graph, trainable: ["nope"])) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .invalidArgument)
        }
    }

    /// Unsupported ops and graphs are refused at construction, naming the op and the node.
    func testRefusals() throws {
        var g = GraphMaker()
        let a = g.op(.binary(.max), "Max", ["x", g.rand([3])])
        let bad = g.graph("bad", input: [nil, 3], output: a)
        XCTAssertThrowsError(try GraphNetwork<Double>(graph: bad)) { e in
            let err = e as? InLoopError
            XCTAssertEqual(err?.kind, .unsupported)
            XCTAssertTrue(err?.message.contains("node 'max") ?? false, err?.message ?? "")
            XCTAssertTrue(err?.message.contains("Max") ?? false, err?.message ?? "")
        }
        var g2 = GraphMaker()
        let r = g2.op(.resize(ResizeAttributes()), "Resize", ["x", "", g2.ints([1, 3])])
        XCTAssertThrowsError(try GraphNetwork<Double>(graph: g2.graph("resize", input: [nil, 3], output: r))) { e in
            XCTAssertTrue((e as? InLoopError)?.message.contains("Resize") ?? false)
        }
        // Two inputs.
        let two = Graph(inputs: [GraphInput(name: "x", dims: [nil, 2]), GraphInput(name: "z", dims: [nil, 2])], outputs: ["y"],
                        nodes: [Node(name: "add", opType: "Add", op: .binary(.add), inputs: ["x", "z"], outputs: ["y"])])
        XCTAssertThrowsError(try GraphNetwork<Double>(graph: two)) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .unsupported)
        }
        // A used second output (MaxPool indices).
        var g3 = GraphMaker()
        let p = g3.op(.maxPool(PoolAttributes(kernelShape: [2])), "MaxPool", ["x"], outputs: 2)
        let idx = p.replacingOccurrences(of: "_out0", with: "_out1")
        let s = g3.op(.binary(.add), "Add", [p, idx])
        XCTAssertThrowsError(try GraphNetwork<Double>(graph: g3.graph("idx", input: [nil, 1, 4], output: s))) { e in
            XCTAssertTrue((e as? InLoopError)?.message.contains("output 1") ?? false, "\(e)")
        }
        // backward before forward
        var g4 = GraphMaker()
        let d4 = g4.dense("x", 2, 2)
        let net = try GraphNetwork<Double>(graph: g4.graph("id", input: [nil, 2], output: d4))
        XCTAssertThrowsError(try net.backward([1, 1], batch: 1, parameterGradients: true))
    }

    /// The shared Jacobian algorithm on a layer-stack Network gives Network.jacobian's numbers.
    func testNetworkConformsToDifferentiableNetwork() throws {
        let net = try makeNetwork(3, [.dense(inputs: 3, outputs: 4, activation: .tanh, bias: true), .dense(inputs: 4, outputs: 2, activation: .identity, bias: true)])
        let x: [Double] = [0.1, -0.4, 0.7, 1.2, 0.3, -0.9]
        var a = [Double](repeating: 0, count: 12), b = a
        try a.withUnsafeMutableBufferPointer { try net.jacobian(x, batch: 2, into: $0.baseAddress!) }
        try b.withUnsafeMutableBufferPointer { try networkJacobian(net, x, batch: 2, into: $0.baseAddress!, maxRows: 2) }
        for (p, q) in zip(a, b) { XCTAssertEqual(p, q, accuracy: 1e-14) }
        let any: any DifferentiableNetwork<Double> = net
        XCTAssertEqual(any.parameterCount, 26)
    }

    /// Plain gradient descent through GraphNetwork fits a small regression (fine-tuning path).
    func testGradientDescentReducesLoss() throws {
        var g = GraphMaker()
        let h = g.op(.activation(.tanh), "Tanh", [g.dense("x", 2, 8)])
        let y = g.dense(h, 8, 1)
        let net = try GraphNetwork<Double>(graph: g.graph("fit", input: [nil, 2], output: y))
        var rng = RandomState(seed: 1)
        let n = 64
        let x = Stable((0..<(2 * n)).map { _ in 2 * rng.uniform() - 1 })
        let t = (0..<n).map { sin(2 * x.p[2 * $0]) * x.p[2 * $0 + 1] }
        var dy = [Double](repeating: 0, count: n)
        var first = 0.0, last = 0.0
        for step in 0..<500 {
            let p = try net.forward(UnsafePointer(x.p), batch: n)
            let l = t.withUnsafeBufferPointer { tp in dy.withUnsafeMutableBufferPointer { Loss(.mse).evaluate(prediction: p, target: tp.baseAddress!, batch: n, outputs: 1, gradient: $0.baseAddress!) } }
            if step == 0 { first = l }
            last = l
            try dy.withUnsafeBufferPointer { try net.backward($0.baseAddress!, batch: n, parameterGradients: true) }
            for i in 0..<net.parameterCount { net.parameters.base[i] -= 0.2 * net.gradients.base[i] }
        }
        XCTAssertLessThan(last, 0.2 * first, "loss \(first) → \(last)")
    }
}
