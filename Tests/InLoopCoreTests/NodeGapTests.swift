import XCTest
@testable import InLoopCore

/// Node-test gaps of the one engine (issue 10): operands given at run time (graph inputs, as ONNX's
/// node tests give every operand) and optional extra outputs. Forward against naive loops written here
/// (in Double), in Float and Double, at batch 1 and 5 through one plan; reverse and tangent against
/// float64 finite differences; bad forms as thrown errors.
final class NodeGapTests: XCTestCase {
    typealias Operand = MatMulNormOpTests.Operand

    /// A one-node graph with several outputs (all graph outputs).
    static func graph(_ dtype: Engine.DType, _ operands: [Operand], op: any OpDefinition.Type,
                      _ attributes: [String: Engine.AttributeValue] = [:], outputs: [String], opset: Int = 17) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: opset)
        var names: [String] = []
        for o in operands {
            switch o {
            case .input(let name, let dims):
                try g.addInput(name, Engine.TensorType(dtype, OpTest.shape(g, dims)))
                names.append(name)
            case .constant(let name, let shape, let values, let trainable):
                let t = dtype == .float32 ? try Engine.Tensor(shape: shape, values: values.map { Float($0) })
                                          : try Engine.Tensor(shape: shape, values: values)
                let id = try g.addConstant(name, t)
                if trainable { g.parameters.append(id) }
                names.append(name)
            }
        }
        try g.addNode("node", op, attributes, inputs: names, outputs: outputs)
        for o in outputs { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// Runs `g` in its dtype at batch n on `xs` (Double values rounded to the dtype) with both numerics.
    static func forward(_ g: Engine.Graph, _ xs: [[Double]], n: Int, numerics: Numerics) throws -> [[Double]] {
        if g.dtype == .float32 {
            return try OpTest.run(g, xs.map { $0.map { Float($0) } }, n: n, numerics: numerics).map { $0.map { Double($0) } }
        }
        return try OpTest.run(g, xs, n: n, numerics: numerics)
    }

    /// Checks every output of the graph built by `make` against `reference` in Float and Double,
    /// inference and differentiable plans, batch 1 and 5.
    func checkForward(_ dims: [[Any]], file: StaticString = #filePath, line: UInt = #line,
                      make: (Engine.DType) throws -> Engine.Graph,
                      reference: ([[Double]], Int) -> [[Double]]) throws {
        for dtype in [Engine.DType.float32, .float64] {
            let g = try make(dtype)
            for num in [Numerics.inference, .differentiable] {
                for n in [1, 5] {
                    let xs: [[Double]] = dims.enumerated().map {
                        let values = OpTest.values(MatMulNormOpTests.dims($0.element, n: n).reduce(1, *), seed: UInt64(5 + 3 * $0.offset + n),
                                                   in: 0.25...2, as: Double.self)
                        return dtype == .float32 ? values.map { Double(Float($0)) } : values
                    }
                    let ys = try Self.forward(g, xs, n: n, numerics: num)
                    let want = reference(xs, n)
                    XCTAssertEqual(ys.count, want.count, file: file, line: line)
                    for (k, y) in ys.enumerated() where k < want.count {
                        XCTAssertEqual(y.count, want[k].count, "output \(k)", file: file, line: line)
                        guard y.count == want[k].count else { continue }
                        XCTAssertLessThan(OpTest.maxRelativeError(y, want[k]), dtype == .float32 ? 3e-5 : 1e-12,
                                          "\(dtype) \(num) n=\(n) output \(k)", file: file, line: line)
                    }
                }
            }
        }
    }

    // MARK: - LayerNormalization: Mean and InvStdDev, run-time and broadcast Scale / B

    /// Rows of `cols` values: y, mean, 1/sqrt(var + eps); scale and bias broadcast from their last
    /// `scale.count` / `bias.count` values.
    static func layerNormRef(_ x: [Double], cols: Int, scale: [Double], bias: [Double]?, epsilon: Double) -> [[Double]] {
        var y: [Double] = [], means: [Double] = [], invs: [Double] = []
        for r in 0..<(x.count / cols) {
            let row = Array(x[r * cols ..< (r + 1) * cols])
            let mean = row.reduce(0, +) / Double(cols)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
            let inv = 1 / (v + epsilon).squareRoot()
            means.append(mean)
            invs.append(inv)
            for j in 0..<cols {
                let s = scale[j % scale.count], b = bias.map { $0[j % $0.count] } ?? 0
                y.append((row[j] - mean) * inv * s + b)
            }
        }
        return [y, means, invs]
    }

    func testLayerNormStatisticsOutputs() throws {
        let scale = MatMulNormOpTests.v(6, seed: 3), bias = MatMulNormOpTests.v(6, seed: 4)
        // constant Scale and B, three outputs, axis 1 of [N, 2, 3]
        try checkForward([["N", 2, 3]], make: { dtype in
            try Self.graph(dtype, [.input("x", ["N", 2, 3]), .constant("s", [2, 3], scale, trainable: false),
                                   .constant("b", [2, 3], bias, trainable: false)],
                           op: LayerNormalizationOp.self, ["axis": .int(1), "epsilon": .float(1e-3)], outputs: ["y", "mean", "inv"])
        }) { xs, _ in Self.layerNormRef(xs[0], cols: 6, scale: scale, bias: bias, epsilon: 1e-3) }
        // the statistics' shapes: X's with the normalised axes of size 1
        let g = try Self.graph(.float32, [.input("x", ["N", 2, 3]), .constant("s", [3], Array(scale[..<3]), trainable: false)],
                               op: LayerNormalizationOp.self, outputs: ["y", "mean", "inv"])
        XCTAssertEqual(g.outputs.map { g[$0].type?.shape.count }, [3, 3, 3])
        XCTAssertEqual(g[g.outputs[1]].type?.shape.map(\.known), [nil, 2, 1])
    }

    func testLayerNormRuntimeScale() throws {
        // Scale and B as graph inputs, the batch on axis 0, normalised over the last axis
        try checkForward([["N", 4], [4], [4]], make: { dtype in
            try Self.graph(dtype, [.input("x", ["N", 4]), .input("s", [4]), .input("b", [4])], op: LayerNormalizationOp.self, outputs: ["y"])
        }) { xs, _ in [Self.layerNormRef(xs[0], cols: 4, scale: xs[1], bias: xs[2], epsilon: 1e-5)[0]] }
        // Scale broadcast over the normalised shape ([1] against [3, 2]), axis 0: one row
        let s = [1.5]
        try checkForward([[3, 2]], make: { dtype in
            try Self.graph(dtype, [.input("x", [3, 2]), .constant("s", [1], s, trainable: false)], op: LayerNormalizationOp.self,
                           ["axis": .int(0)], outputs: ["y", "mean"])
        }) { xs, _ in Array(Self.layerNormRef(xs[0], cols: 6, scale: s, bias: nil, epsilon: 1e-5).prefix(2)) }
    }

    func testLayerNormComposedGradients() throws {
        let g1 = try Self.graph(.float64, [.input("x", ["N", 2, 3]), .input("s", [3]), .input("b", [3])],
                                op: LayerNormalizationOp.self, outputs: ["y", "mean", "inv"])
        XCTAssertLessThan(try OpTest.checkGradients(g1, n: 2, tolerance: 1e-6), 1e-6)
        // trainable Scale and B with the statistics outputs: parameter gradients too
        let g2 = try Self.graph(.float64, [.input("x", ["N", 4]), .constant("s", [4], MatMulNormOpTests.v(4, seed: 8), trainable: true),
                                           .constant("b", [4], MatMulNormOpTests.v(4, seed: 9), trainable: true)],
                                op: LayerNormalizationOp.self, outputs: ["y", "mean", "inv"])
        XCTAssertLessThan(try OpTest.checkGradients(g2, n: 3, tolerance: 1e-6), 1e-6)
    }

    // MARK: - BatchNormalization: run-time parameters, training mode

    static func bnDims(_ x: [Int]) -> (c: Int, spatial: Int) { (x[1], x[2...].reduce(1, *)) }

    /// Inference: y = (x − mean)/sqrt(var + eps)·scale + B per channel.
    static func batchNormRef(_ x: [Double], shape: [Int], scale: [Double], bias: [Double], mean: [Double], variance: [Double],
                             epsilon: Double) -> [Double] {
        let (c, spatial) = bnDims(shape)
        return x.indices.map { i in
            let ch = (i / spatial) % c
            return (x[i] - mean[ch]) / (variance[ch] + epsilon).squareRoot() * scale[ch] + bias[ch]
        }
    }

    /// Training mode (ONNX's `_batchnorm_training_mode`): batch mean and biased variance per channel;
    /// y from them; running statistics input·momentum + batch·(1 − momentum).
    static func batchNormTrainingRef(_ x: [Double], shape: [Int], scale: [Double], bias: [Double], mean: [Double],
                                     variance: [Double], epsilon: Double, momentum: Double) -> [[Double]] {
        let (c, spatial) = bnDims(shape)
        var sums = [Double](repeating: 0, count: c), counts = [Double](repeating: 0, count: c)
        for i in x.indices { sums[(i / spatial) % c] += x[i]; counts[(i / spatial) % c] += 1 }
        let bm = (0..<c).map { sums[$0] / counts[$0] }
        var sq = [Double](repeating: 0, count: c)
        for i in x.indices { let ch = (i / spatial) % c; sq[ch] += (x[i] - bm[ch]) * (x[i] - bm[ch]) }
        let bv = (0..<c).map { sq[$0] / counts[$0] }
        let y = batchNormRef(x, shape: shape, scale: scale, bias: bias, mean: bm, variance: bv, epsilon: epsilon)
        return [y, (0..<c).map { mean[$0] * momentum + bm[$0] * (1 - momentum) },
                (0..<c).map { variance[$0] * momentum + bv[$0] * (1 - momentum) }]
    }

    func testBatchNormRuntimeParameters() throws {
        for x in [["N", 3, 2, 2], ["N", 3]] as [[Any]] {
            try checkForward([x, [3], [3], [3], [3]], make: { dtype in
                try Self.graph(dtype, [.input("x", x), .input("s", [3]), .input("b", [3]), .input("m", [3]), .input("v", [3])],
                               op: BatchNormalizationOp.self, ["epsilon": .float(1e-2)], outputs: ["y"])
            }) { xs, n in
                [Self.batchNormRef(xs[0], shape: MatMulNormOpTests.dims(x, n: n), scale: xs[1], bias: xs[2], mean: xs[3],
                                   variance: xs[4], epsilon: 1e-2)]
            }
        }
        // constant statistics, scale at run time
        let m = MatMulNormOpTests.v(3, seed: 5), v = MatMulNormOpTests.v(3, seed: 6, in: 0.5...2)
        try checkForward([["N", 3, 4], [3], [3]], make: { dtype in
            try Self.graph(dtype, [.input("x", ["N", 3, 4]), .input("s", [3]), .input("b", [3]), .constant("m", [3], m, trainable: false),
                                   .constant("v", [3], v, trainable: false)], op: BatchNormalizationOp.self, outputs: ["y"])
        }) { xs, n in
            [Self.batchNormRef(xs[0], shape: [n, 3, 4], scale: xs[1], bias: xs[2], mean: m, variance: v, epsilon: 1e-5)]
        }
        let g = try Self.graph(.float64, [.input("x", ["N", 3, 2]), .input("s", [3]), .input("b", [3]), .input("m", [3]), .input("v", [3])],
                               op: BatchNormalizationOp.self, outputs: ["y"])
        // the variance stays positive: inputs drawn in [0.25, 2]
        let xs = [12, 3, 3, 3, 3].enumerated().map { OpTest.values($0.element, seed: UInt64(40 + $0.offset), in: 0.25...2, as: Double.self) }
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 2, inputs: xs, tolerance: 1e-6), 1e-6)
    }

    func testBatchNormTrainingMode() throws {
        for (x, outs) in [(["N", 3, 2, 2], ["y", "rm", "rv"]), (["N", 2], ["y", "rm"]), ([2, 3, 4, 5], ["y", "rm", "rv"])] as [([Any], [String])] {
            let c = x[1] as? Int ?? 0
            try checkForward([x, [c], [c], [c], [c]], make: { dtype in
                try Self.graph(dtype, [.input("x", x), .input("s", [c]), .input("b", [c]), .input("m", [c]), .input("v", [c])],
                               op: BatchNormalizationOp.self, ["epsilon": .float(1e-2), "training_mode": .int(1), "momentum": .float(0.8)],
                               outputs: outs, opset: 15)
            }) { xs, n in
                Array(Self.batchNormTrainingRef(xs[0], shape: MatMulNormOpTests.dims(x, n: n), scale: xs[1], bias: xs[2], mean: xs[3],
                                                variance: xs[4], epsilon: 1e-2, momentum: 0.8).prefix(outs.count))
            }
        }
        let g = try Self.graph(.float64, [.input("x", ["N", 2, 3]), .input("s", [2]), .input("b", [2]), .input("m", [2]), .input("v", [2])],
                               op: BatchNormalizationOp.self, ["training_mode": .int(1)], outputs: ["y", "rm", "rv"], opset: 15)
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 3, tolerance: 1e-6), 1e-6)
    }

    func testBatchNormErrors() throws {
        let ops: [Operand] = [.input("x", ["N", 3]), .input("s", [3]), .input("b", [3]), .input("m", [3]), .input("v", [3])]
        // statistics outputs outside training mode (opset < 14 semantics)
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: BatchNormalizationOp.self, outputs: ["y", "rm"])) { e in
            XCTAssertTrue("\(e)".contains("training_mode"), "\(e)")
        }
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: BatchNormalizationOp.self, ["training_mode": .int(2)], outputs: ["y"]))
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: BatchNormalizationOp.self, ["training_mode": .int(1), "momentum": .float(.nan)],
                                            outputs: ["y"]))
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: BatchNormalizationOp.self, outputs: ["y", "a", "b", "c"]))
        // a wrong vector size is a format error, not a trap
        XCTAssertThrowsError(try Self.graph(.float32, [.input("x", ["N", 3]), .input("s", [4]), .input("b", [3]), .input("m", [3]),
                                                       .input("v", [3])], op: BatchNormalizationOp.self, outputs: ["y"]))
    }

    // MARK: - Engine.Model: value inputs, no inputs, empty inputs

    func expectError(_ kind: InLoopError.Kind, _ text: String, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            guard let e = e as? InLoopError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertTrue(e.message.contains(text), "\(e)", file: file, line: line)
        }
    }

    /// Resize (nearest, asymmetric, floor) with its scales a graph input: the plan is specialised on
    /// the values given with each call; y[n, c, i, j] = x[n, c, ⌊i/sh⌋, ⌊j/sw⌋] for integer scales.
    func testResizeScalesAsInput() throws {
        for dtype in [Engine.DType.float32, .float64] {
            let g = Engine.Graph(dtype: dtype, opset: 13)
            try g.addInput("x", Engine.TensorType(dtype, [1, 2, 2, 3]))
            try g.addInput("scales", Engine.TensorType(dtype, [4]))
            try g.addNode("r", ResizeOp.self, ["coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")],
                          inputs: ["x", "", "scales"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            let m = try Engine.Model(graph: g)
            let x = OpTest.values(12, seed: 3, as: Double.self).map { dtype == .float32 ? Double(Float($0)) : $0 }
            for (sh, sw) in [(2, 3), (1, 2), (2, 3), (3, 1)] {
                let y = try m.runShaped([([1, 2, 2, 3], x), ([4], [1, 1, Double(sh), Double(sw)])])
                XCTAssertEqual(y[0].shape, [1, 2, 2 * sh, 3 * sw])
                var want: [Double] = []
                for c in 0..<2 { for i in 0..<(2 * sh) { for j in 0..<(3 * sw) { want.append(x[c * 6 + (i / sh) * 3 + j / sw]) } } }
                XCTAssertEqual(y[0].values, want, "\(dtype) scales \(sh), \(sw)")
            }
            // three distinct scale values: three plans (the repeated call reused its plan)
            XCTAssertEqual(m.compileCount, 3)
            expectError(.invalidArgument, "scales are positive") { _ = try m.runShaped([([1, 2, 2, 3], x), ([4], [1, 1, -2, 1])]) }
            expectError(.invalidArgument, "not finite") { _ = try m.runShaped([([1, 2, 2, 3], x), ([4], [1, 1, .nan, 1])]) }
            expectError(.sizeMismatch, "the model takes 4") { _ = try m.runShaped([([1, 2, 2, 3], x), ([3], [1, 1, 2])]) }
            // without values (the batch convenience, or output shapes asked ahead) the shapes are unknown
            XCTAssertNotNil(m.convenienceError)
            let ranks: [Int64] = [4, 1], dims: [Int64] = [1, 2, 2, 3, 4]
            var outRanks: [Int64] = [0], outDims = [Int64](repeating: 0, count: 8)
            expectError(.invalidArgument, "depend on the values") {
                try ranks.withUnsafeBufferPointer { r in
                    try dims.withUnsafeBufferPointer { d in
                        try outRanks.withUnsafeMutableBufferPointer { orr in
                            try outDims.withUnsafeMutableBufferPointer { od in try m.outputShapes(ranks: r, dims: d, outRanks: orr, outDims: od) }
                        }
                    }
                }
            }
        }
    }

    /// Range on floats with its bounds given as graph inputs (value inputs) or as a constant and
    /// inputs: start + i·delta for i < max(⌈(limit − start)/delta⌉, 0).
    func testFloatRange() throws {
        func reference(_ s: Double, _ l: Double, _ d: Double) -> [Double] {
            var out: [Double] = [], v = s
            while d > 0 ? v < l : v > l { out.append(v); v = s + Double(out.count) * d }
            return out
        }
        for dtype in [Engine.DType.float32, .float64] {
            let g = Engine.Graph(dtype: dtype, opset: 11)
            for name in ["start", "limit"] { try g.addInput(name, Engine.TensorType(dtype, [])) }
            try g.addConstant("delta", dtype == .float32 ? try Engine.Tensor(shape: [], values: [Float(0.75)]) : try Engine.Tensor(shape: [], values: [0.75]))
            try g.addNode("r", RangeOp.self, inputs: ["start", "limit", "delta"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            let m = try Engine.Model(graph: g)
            for (s, l) in [(1.0, 5.0), (-2.5, 3.0), (1.0, 5.0), (0.5, 0.75)] {
                let y = try m.runShaped([([], [s]), ([], [l])])
                let want = reference(s, l, 0.75)
                XCTAssertEqual(y[0].shape, [want.count], "\(dtype) \(s) \(l)")
                XCTAssertEqual(y[0].values, want, "\(dtype) \(s) \(l)")
            }
            XCTAssertEqual(m.compileCount, 3)
            expectError(.invalidArgument, "not finite") { _ = try m.runShaped([([], [.nan]), ([], [1])]) }
            // all three bounds as inputs, counting down
            let h = Engine.Graph(dtype: dtype, opset: 11)
            for name in ["start", "limit", "delta"] { try h.addInput(name, Engine.TensorType(dtype, [])) }
            try h.addNode("r", RangeOp.self, inputs: ["start", "limit", "delta"], outputs: ["y"])
            try h.markOutput("y")
            try h.verify()
            let mh = try Engine.Model(graph: h)
            let y = try mh.runShaped([([], [10]), ([], [4]), ([], [-1.5])])
            XCTAssertEqual(y[0].values, reference(10, 4, -1.5))
            expectError(.invalidArgument, "delta non-zero") { _ = try mh.runShaped([([], [1]), ([], [4]), ([], [0])]) }
        }
        // constant bounds: the `bounds` attribute the ONNX front end writes
        let c = Engine.Graph(dtype: .float64, opset: 11)
        try c.addInput("x", Engine.TensorType(.float64, [3]))
        for (name, v) in [("s", 0.5), ("l", 2.0), ("d", 0.5)] { try c.addConstant(name, try Engine.Tensor(shape: [], values: [v])) }
        try c.addNode("r", RangeOp.self, ["bounds": .floats([0.5, 2.0, 0.5])], inputs: ["s", "l", "d"], outputs: ["range"])
        try c.addNode("a", AddOp.self, inputs: ["x", "range"], outputs: ["y"])
        try c.markOutput("y")
        try c.verify()
        try c.inferTypes()
        XCTAssertEqual(try OpTest.run(c, [[1, 2, 3]], n: 1)[0], [1.5, 3, 4.5])
        XCTAssertThrowsError(try RangeOp.parse(["bounds": .floats([0, 1, 0])], opset: 11))
    }

    /// A graph without inputs (one Constant) runs with zero input arrays.
    func testGraphWithoutInputs() throws {
        let g = Engine.Graph(dtype: .float32, opset: 13)
        let values: [Float] = [1.5, -2, 3, 0.25, 7, -1]
        try g.addNode("c", ConstantOp.self, ["value": .tensor(Engine.TensorValue(dtype: .float32, shape: [2, 3], floats: values.map { Double($0) }))], inputs: [], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        let m = try Engine.Model(graph: g)
        let y = try m.runShaped([])
        XCTAssertEqual(y[0].shape, [2, 3])
        XCTAssertEqual(y[0].values, values.map { Double($0) })
        expectError(.sizeMismatch, "has 0 inputs") { _ = try m.runShaped([([1], [1])]) }
    }

    /// An input declared with an empty dimension (CastLike's `like`, which gives only the type) takes
    /// an empty array; a dimension 0 where the model declares another size is refused.
    func testEmptyInput() throws {
        let g = Engine.Graph(dtype: .float32, opset: 15)
        try g.addInput("x", Engine.TensorType(.float64, [2, 2]))
        try g.addInput("like", Engine.TensorType(.float32, [0]))
        try g.addNode("c", CastLikeOp.self, inputs: ["x", "like"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        let m = try Engine.Model(graph: g)
        let x = [1.0 + 1e-12, -2, 3.25, 1e-30]
        let y = try m.runShaped([([2, 2], x), ([0], [])])
        XCTAssertEqual(y[0].shape, [2, 2])
        XCTAssertEqual(y[0].values, x.map { Double(Float($0)) })
        expectError(.invalidArgument, "dimension 0 on axis 0") { _ = try m.runShaped([([0, 2], []), ([0], [])]) }
    }

    // MARK: - ConvTranspose: output_shape beyond the full output

    /// output_shape one larger than the full output along both axes: ONNX's reference (and
    /// onnxruntime) add a row and a column of zeros at the end.
    func testConvTransposeOutputShapeLarger() throws {
        for dtype in [Engine.DType.float32, .float64] {
            let g = Engine.Graph(dtype: dtype, opset: 13)
            try g.addInput("x", Engine.TensorType(dtype, [1, 1, 3, 3]))
            try g.addInput("w", Engine.TensorType(dtype, [1, 2, 3, 3]))
            try g.addNode("t", ConvTransposeOp.self, ["strides": .ints([3, 2]), "output_shape": .ints([10, 8])], inputs: ["x", "w"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            let m = try Engine.Model(graph: g)
            let x = OpTest.values(9, seed: 1, as: Double.self).map { dtype == .float32 ? Double(Float($0)) : $0 }
            let w = OpTest.values(18, seed: 2, as: Double.self).map { dtype == .float32 ? Double(Float($0)) : $0 }
            let y = try m.runShaped([([1, 1, 3, 3], x), ([1, 2, 3, 3], w)])
            XCTAssertEqual(y[0].shape, [1, 2, 10, 8])
            // naive scatter: y[co, i·s0 + ki, j·s1 + kj] += x[i, j]·w[co, ki, kj]
            var want = [Double](repeating: 0, count: 2 * 10 * 8)
            for co in 0..<2 { for i in 0..<3 { for j in 0..<3 { for ki in 0..<3 { for kj in 0..<3 {
                want[co * 80 + (i * 3 + ki) * 8 + j * 2 + kj] += x[i * 3 + j] * w[co * 9 + ki * 3 + kj]
            } } } } }
            XCTAssertLessThan(OpTest.maxRelativeError(y[0].values, want), dtype == .float32 ? 1e-5 : 1e-12)
            // a larger output needing padding at the start as well is refused, not trapped
            let h = Engine.Graph(dtype: dtype, opset: 13)
            try h.addInput("x", Engine.TensorType(dtype, [1, 1, 3, 3]))
            try h.addInput("w", Engine.TensorType(dtype, [1, 2, 3, 3]))
            try h.addNode("t", ConvTransposeOp.self, ["strides": .ints([3, 2]), "output_shape": .ints([12, 8])], inputs: ["x", "w"], outputs: ["y"])
            try h.markOutput("y")
            try h.verify()
            XCTAssertThrowsError(try Engine.Model(graph: h))
        }
    }

    // MARK: - Resize antialias

    /// ONNX's `_interpolate_1d_with_x` with `_linear_coeffs_antialias` / `_cubic_coeffs_antialias`
    /// (op_resize.py), in Double: the n nearest positions of the edge-padded axis, found by sorting.
    static func antialias1D(_ data: [Double], scale: Double, x o: Int, cubic: Bool, a: Double = -0.75,
                            halfPixel: Bool = true, exclude: Bool = false) -> Double {
        let n = data.count
        let x = halfPixel ? (Double(o) + 0.5) / scale - 0.5 : Double(o) / scale
        let xi = x.rounded(.down)
        let ratio = x == xi ? 1 : x - xi
        let s = min(scale, 1)
        var c: [Double]
        if cubic {
            let start = Int((-2 / s).rounded(.down)) + 1
            c = (start..<(2 - start)).map { i in
                let t = abs(s * (Double(i) - ratio))
                if t <= 1 { return (a + 2) * t * t * t - (a + 3) * t * t + 1 }
                if t < 2 { return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a }
                return 0
            }
        } else {
            let start = Int((-1 / s).rounded(.down)) + 1
            c = (start..<(start + 2 - 2 * start)).map { i in min(max(1 - abs((Double(i) - ratio) * s), 0), 1) }
        }
        let total = c.reduce(0, +)
        c = c.map { $0 / total }
        let taps = c.count, pad = (taps + 1) / 2
        let padded = (0..<(n + 2 * pad)).map { data[min(max($0 - pad, 0), n - 1)] }
        let xp = x + Double(pad)
        let nearest = (0..<padded.count).sorted { (abs(xp - Double($0)), $0) < (abs(xp - Double($1)), $1) }.prefix(taps).sorted()
        if exclude {
            for (k, i) in nearest.enumerated() where i - pad < 0 || i - pad >= n { c[k] = 0 }
            let sum = c.reduce(0, +)
            c = c.map { $0 / sum }
        }
        var r = 0.0
        for (k, i) in nearest.enumerated() { r += c[k] * padded[i] }
        return r
    }

    func testResizeAntialias() throws {
        // [2, 3, 12] resized along the last axis (and [2, 3, 12] → [2, 2, 7] along both inner axes)
        for (cubic, scales, exclude) in [(false, [1.0, 1, 0.5], false), (true, [1.0, 1, 0.6], false), (true, [1.0, 0.7, 0.6], true),
                                         (false, [1.0, 0.7, 1.5], false)] {
            for dtype in [Engine.DType.float32, .float64] {
                let g = Engine.Graph(dtype: dtype, opset: 18)
                try g.addInput("x", Engine.TensorType(dtype, [2, 3, 12]))
                try g.addNode("r", ResizeOp.self, ["mode": .string(cubic ? "cubic" : "linear"), "antialias": .int(1),
                                                   "exclude_outside": .int(exclude ? 1 : 0), "scales": .floats(scales)],
                              inputs: ["x"], outputs: ["y"])
                try g.markOutput("y")
                try g.verify()
                try g.inferTypes()
                let x = OpTest.values(72, seed: 9, as: Double.self).map { dtype == .float32 ? Double(Float($0)) : $0 }
                let h = Int((3 * scales[1]).rounded(.down)), w = Int((12 * scales[2]).rounded(.down))
                // reference: the last axis, then axis 1 (the reference's inner-first order)
                var want: [Double] = []
                for b in 0..<2 {
                    let rows = (0..<3).map { r in (0..<w).map { o in
                        Self.antialias1D(Array(x[(b * 36 + r * 12)..<(b * 36 + r * 12 + 12)]), scale: Double(Float(scales[2])), x: o, cubic: cubic, exclude: exclude)
                    } }
                    for i in 0..<h {
                        for j in 0..<w {
                            want.append(h == 3 ? rows[i][j]
                                        : Self.antialias1D(rows.map { $0[j] }, scale: Double(Float(scales[1])), x: i, cubic: cubic, exclude: exclude))
                        }
                    }
                }
                for numerics in [Numerics.inference, .differentiable] {
                    let y: [Double] = dtype == .float32
                        ? try OpTest.run(g, [x.map { Float($0) }], n: 1, numerics: numerics)[0].map { Double($0) }
                        : try OpTest.run(g, [x], n: 1, numerics: numerics)[0]
                    XCTAssertEqual(y.count, want.count)
                    XCTAssertLessThan(OpTest.maxRelativeError(y, want), dtype == .float32 ? 2e-6 : 1e-12, "\(cubic) \(scales) \(dtype)")
                }
            }
        }
        // the adjoint and tangent of the (linear) step, in float64
        let g = Engine.Graph(dtype: .float64, opset: 18)
        try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 2, 9])))
        try g.addNode("r", ResizeOp.self, ["mode": .string("cubic"), "antialias": .int(1), "scales": .floats([1, 1, 0.4])],
                      inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-7)
        // a filter wider than InLoop takes is refused, not allocated
        let big = Engine.Graph(dtype: .float32, opset: 18)
        try big.addInput("x", Engine.TensorType(.float32, [1, 100000]))
        try big.addNode("r", ResizeOp.self, ["mode": .string("linear"), "antialias": .int(1), "scales": .floats([1, 0.0001])],
                        inputs: ["x"], outputs: ["y"])
        try big.markOutput("y")
        try big.verify()
        try big.inferTypes()
        XCTAssertThrowsError(try Engine.compile(big))
    }
}
