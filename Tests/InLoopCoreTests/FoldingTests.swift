import XCTest
@testable import InLoopCore

/// BatchNormalization folded into the Conv, ConvTranspose or Dense before it (issue 10, item 3):
/// the folded graph against the same graph run unfolded (BN as its own per-channel step) on random
/// data, in Float and Double; the rules that keep a BN standing (its input also a graph output, a
/// rank-3 Dense whose channel axis is not the BN's, trainable BN parameters); the plan an
/// `Engine.Model` runs folds while its `graph`, which training and saving read, keeps the BN node.
final class FoldingTests: XCTestCase {
    /// x → producer (`op`, constant W and optional bias) → BatchNormalization → [Relu] → y.
    static func graph(_ dtype: Engine.DType, x: [Any], op: any OpDefinition.Type, w: [Int], bias: Bool,
                      channels c: Int, attributes: [String: Engine.AttributeValue] = [:], relu: Bool = true,
                      outputs extra: [String] = [], trainableBN: Bool = false) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 17)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, x)))
        @discardableResult
        func constant(_ name: String, _ shape: [Int], _ seed: UInt64, _ range: ClosedRange<Double> = -1...1) throws -> Engine.ValueID {
            let n = shape.reduce(1, *)
            let t = dtype == .float32 ? try Engine.Tensor(shape: shape, values: OpTest.values(n, seed: seed, in: range, as: Float.self))
                                      : try Engine.Tensor(shape: shape, values: OpTest.values(n, seed: seed, in: range, as: Double.self))
            return try g.addConstant(name, t)
        }
        try constant("W", w, 1)
        var ins = ["x", "W"]
        if bias { try constant("b", [c], 2); ins.append("b") }
        try g.addNode("producer", op, attributes, inputs: ins, outputs: ["z"])
        let s = try constant("scale", [c], 3, 0.5...2), b = try constant("B", [c], 4)
        try constant("mean", [c], 5); try constant("var", [c], 6, 0.1...3)
        if trainableBN { g.parameters = [s, b] }
        try g.addNode("bn", BatchNormalizationOp.self, ["epsilon": .float(1e-3)], inputs: ["z", "scale", "B", "mean", "var"],
                      outputs: [relu ? "u" : "y"])
        if relu { try g.addNode("relu", ReluOp.self, inputs: ["u"], outputs: ["y"]) }
        try g.markOutput("y")
        for o in extra { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        return g
    }

    static func inputCount(_ g: Engine.Graph, n: Int) -> Int {
        let t = g[g.inputs[0]].type!
        return t.shape.map { $0.known ?? n }.reduce(1, *)
    }

    /// Folds a copy of `g`; checks the count and that no BN node is left when `expect` is 1; compares
    /// every output with the unfolded graph's at batch n.
    func check<T: EngineScalar>(_ g: Engine.Graph, _: T.Type, n: Int = 3, expect: Int, tolerance: Double,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let plain = try g.copy()
        try Engine.fuse(plain)
        let folded = try g.copy()
        let summary = try Engine.fuse(folded, foldNormalization: true)
        XCTAssertEqual(summary.normalizations, expect, file: file, line: line)
        let bnLeft = folded.nodes.filter { $0.op == BatchNormalizationOp.self }.count
        XCTAssertEqual(bnLeft, 1 - expect, file: file, line: line)
        let x: [T] = OpTest.values(Self.inputCount(g, n: n), seed: 99, in: -2...2)
        let want = try OpTest.run(plain, [x], n: n)
        let got = try OpTest.run(folded, [x], n: n)
        XCTAssertEqual(got.count, want.count, file: file, line: line)
        for (a, b) in zip(got, want) {
            XCTAssertEqual(a.count, b.count, file: file, line: line)
            XCTAssertFalse(a.contains { !$0.isFinite }, file: file, line: line)
            // relative to the output's scale: the folded weights are rounded once to T
            let scale = b.map { abs(Double($0)) }.max() ?? 1
            let err = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(err, tolerance * max(scale, 1), "max |Δ| \(err)", file: file, line: line)
        }
        if expect == 1 {
            // the folded form differs from the unfolded one (the check above could not pass by accident
            // on a graph that was not changed): its weights are new constants
            XCTAssertFalse(folded.nodes.contains { n in n.inputs.contains { $0 == g.names["W"] } }, file: file, line: line)
        }
    }

    func testConvFolds() throws {
        for (dtype, tol) in [(Engine.DType.float32, 2e-6), (.float64, 1e-13)] {
            for bias in [true, false] {
                for relu in [true, false] {
                    let g = try Self.graph(dtype, x: ["N", 4, 5, 6], op: ConvOp.self, w: [6, 2, 3, 3], bias: bias, channels: 6,
                                           attributes: ["group": .int(2), "pads": .ints([1, 0, 1, 1])], relu: relu)
                    if dtype == .float32 { try check(g, Float.self, expect: 1, tolerance: tol) }
                    else { try check(g, Double.self, expect: 1, tolerance: tol) }
                }
            }
        }
        // Conv + BN + Relu becomes one step: the activation folds into the conv after the BN did
        let g = try Self.graph(.float32, x: ["N", 3, 4, 4], op: ConvOp.self, w: [5, 3, 3, 3], bias: true, channels: 5)
        let s = try Engine.fuse(g, foldNormalization: true)
        XCTAssertEqual(s.normalizations, 1)
        XCTAssertEqual(s.activations, 1)
        XCTAssertEqual(g.nodes.count, 1)
    }

    func testConvTransposeFolds() throws {
        // W [C_in, C_out/group, k, k]: 4 input channels, group 2, 3 outputs per group → 6 channels
        for bias in [true, false] {
            let attrs: [String: Engine.AttributeValue] = ["group": .int(2), "strides": .ints([2, 2])]
            try check(try Self.graph(.float32, x: ["N", 4, 3, 3], op: ConvTransposeOp.self, w: [4, 3, 2, 2], bias: bias,
                                     channels: 6, attributes: attrs), Float.self, expect: 1, tolerance: 2e-6)
            try check(try Self.graph(.float64, x: ["N", 4, 3, 3], op: ConvTransposeOp.self, w: [4, 3, 2, 2], bias: bias,
                                     channels: 6, attributes: attrs), Double.self, expect: 1, tolerance: 1e-13)
        }
    }

    func testGemmFolds() throws {
        // Gemm (transB = 1: W [out, in]) becomes a Dense, then the BN folds into it
        for bias in [true, false] {
            try check(try Self.graph(.float32, x: ["N", 7], op: GemmOp.self, w: [5, 7], bias: bias, channels: 5,
                                     attributes: ["transB": .int(1)]), Float.self, expect: 1, tolerance: 2e-6)
            try check(try Self.graph(.float64, x: ["N", 7], op: GemmOp.self, w: [7, 5], bias: bias, channels: 5),
                      Double.self, expect: 1, tolerance: 1e-13)
        }
    }

    func testWhatStaysUnfolded() throws {
        // the conv output is also a graph output: the BN stays
        let shared = try Self.graph(.float32, x: ["N", 3, 4, 4], op: ConvOp.self, w: [5, 3, 3, 3], bias: true, channels: 5, outputs: ["z"])
        try check(shared, Float.self, expect: 0, tolerance: 0)
        // a MatMul over [N, 3, 4]: the Dense's features are on axis 2, the BN's channels on axis 1
        let g = Engine.Graph(dtype: .float32, opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3, 4])))
        try g.addConstant("W", try Engine.Tensor(shape: [4, 3], values: OpTest.values(12, seed: 7, as: Float.self)))
        for (k, name) in ["scale", "B", "mean", "var"].enumerated() {
            try g.addConstant(name, try Engine.Tensor(shape: [3], values: OpTest.values(3, seed: UInt64(8 + k), in: 0.5...1.5, as: Float.self)))
        }
        try g.addNode("mm", MatMulOp.self, inputs: ["x", "W"], outputs: ["z"])
        try g.addNode("bn", BatchNormalizationOp.self, inputs: ["z", "scale", "B", "mean", "var"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        try check(g, Float.self, expect: 0, tolerance: 0)
        // trainable BN parameters (a differentiable graph) are never folded
        let t = try Self.graph(.float64, x: ["N", 3, 4, 4], op: ConvOp.self, w: [5, 3, 3, 3], bias: true, channels: 5, trainableBN: true)
        XCTAssertEqual(try Engine.fuse(t, foldNormalization: true).normalizations, 0)
        // the default fusion (as for differentiable plans) does not fold
        let d = try Self.graph(.float32, x: ["N", 3, 4, 4], op: ConvOp.self, w: [5, 3, 3, 3], bias: true, channels: 5)
        XCTAssertEqual(try Engine.fuse(d).normalizations, 0)
        XCTAssertEqual(d.nodes.filter { $0.op == BatchNormalizationOp.self }.count, 1)
    }

    /// `Engine.Model` runs the folded plan; its `graph` keeps the BN, so the differentiable plan of a
    /// trainer made from the model is the plan of the unfolded graph (BN scale and B trainable).
    func testModelFoldsAndTrainingKeepsTheBN() throws {
        for dtype in [Engine.DType.float32, .float64] {
            let g = try Self.graph(dtype, x: ["N", 3, 4, 4], op: ConvOp.self, w: [5, 3, 3, 3], bias: true, channels: 5)
            let reference = try g.copy()
            let model = try Engine.Model(graph: g)
            XCTAssertEqual(model.graph.nodes.filter { $0.op == BatchNormalizationOp.self }.count, 1)
            // the model's parameters as the graph has them: W, b and the BN's four vectors
            XCTAssertEqual(model.parameterCount, 5 * 3 * 3 * 3 + 5 + 4 * 5)
            let n = 2
            let x: [Double] = OpTest.values(n * 48, seed: 5)
            let got = try model.runShaped([(shape: [n, 3, 4, 4], values: x)])
            try Engine.fuse(reference)
            let want: [Double]
            if dtype == .float32 {
                want = try OpTest.run(reference, [x.map { Float($0) }], n: n)[0].map { Double($0) }
            } else {
                want = try OpTest.run(reference, [x], n: n)[0]
            }
            XCTAssertEqual(got.count, 1)
            XCTAssertEqual(got[0].values.count, want.count)
            let err = zip(got[0].values, want).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(err, dtype == .float32 ? 2e-5 : 1e-12)
            // the differentiable plan of the model's graph has the BN's own step, and its trainable
            // parameters include the BN scale and B
            let net = try EngineNetwork<Double>(model: model)
            let names = Set(net.parameterInfo.map(\.name))
            XCTAssertTrue(names.isSuperset(of: ["W", "b", "scale", "B"]), "\(names)")
        }
    }

    // MARK: - Fused LSTM/GRU cells

    /// An inference plan of an LSTM (default activations) or a GRU with linear_before_reset computes
    /// each time step's gates in fused steps; the values are the unrolled steps' bit for bit. The
    /// unrolled form is what the same node with a clip no value reaches (1e30) lowers to.
    func testFusedRecurrentCellsMatchTheUnrolledSteps() throws {
        typealias C = RecurrentOpTests.Config
        let configs: [C] = [
            C(cell: .lstm, seq: 4, input: 3, hidden: 5),
            C(cell: .lstm, direction: "bidirectional", layout: 1, seq: 3, input: 2, hidden: 4, initialH: true, initialC: true),
            C(cell: .lstm, direction: "reverse", seq: 3, input: 3, hidden: 2, bias: false, outputs: 2),
            C(cell: .gru, seq: 4, input: 3, hidden: 5, linearBeforeReset: true),
            C(cell: .gru, direction: "bidirectional", layout: 1, seq: 3, input: 2, hidden: 3, bias: false, initialH: true, linearBeforeReset: true),
        ]
        for c in configs {
            var unrolled = c
            unrolled.clip = 1e30
            for dtype in [Engine.DType.float32, .float64] {
                let fusedGraph = try RecurrentOpTests.graph(c, dtype: dtype)
                let plainGraph = try RecurrentOpTests.graph(unrolled, dtype: dtype)
                let fusedPlan = try Engine.compile(fusedGraph)
                let cellSteps = fusedPlan.steps.filter {
                    switch $0.kind { case .lstmState, .gruCell: return true; default: return false }
                }.count
                XCTAssertEqual(cellSteps, c.seq * c.dirs, "\(c.cell) \(dtype)")
                XCTAssertLessThan(fusedPlan.steps.count, try Engine.compile(plainGraph).steps.count)
                // differentiable plans keep the unrolled steps (they have reverse and tangent rules)
                let diff = try Engine.compile(fusedGraph, numerics: .differentiable)
                XCTAssertFalse(diff.steps.contains { if case .lstmState = $0.kind { return true }; if case .gruCell = $0.kind { return true }; return false })
                func run<T: EngineScalar>(_: T.Type) throws {
                    for n in [1, 3] {
                        var xs: [[T]] = [OpTest.values(c.seq * n * c.input, seed: UInt64(7 + n))]
                        if c.initialH { xs.append(OpTest.values(c.dirs * n * c.hidden, seed: 17, in: -1...1)) }
                        if c.initialC { xs.append(OpTest.values(c.dirs * n * c.hidden, seed: 18, in: -1...1)) }
                        let got = try OpTest.run(fusedGraph, xs, n: n)
                        let want = try OpTest.run(plainGraph, xs, n: n)
                        XCTAssertEqual(got.count, want.count)
                        for (a, b) in zip(got, want) {
                            XCTAssertEqual(a.map { Double($0).bitPattern }, b.map { Double($0).bitPattern },
                                           "\(c.cell) \(dtype) n=\(n)")
                        }
                    }
                }
                if dtype == .float32 { try run(Float.self) } else { try run(Double.self) }
            }
        }
    }
}
