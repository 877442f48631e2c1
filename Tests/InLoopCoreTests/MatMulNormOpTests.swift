import XCTest
@testable import InLoopCore

/// The matrix-product and normalisation family of the one engine (MatMul, Gemm, BatchNormalization,
/// LayerNormalization): forward against naive loops written here (in Double), in Float and Double, at
/// batch 1 and 5 through one plan; reverse and tangent against float64 finite differences; bad
/// attributes and shapes as thrown errors.
final class MatMulNormOpTests: XCTestCase {
    // MARK: - Graph building

    /// A graph input (dims: Int or "N") or a constant (values given; made a parameter when `trainable`).
    enum Operand {
        case input(String, [Any])
        case constant(String, [Int], [Double], trainable: Bool)
    }

    static func graph(_ dtype: Engine.DType, _ operands: [Operand], op: any OpDefinition.Type,
                      _ attributes: [String: Engine.AttributeValue] = [:], inputs: [String]? = nil,
                      outputs: [String] = ["y"], opset: Int = 17) throws -> Engine.Graph {
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
        try g.addNode("node", op, attributes, inputs: inputs ?? names, outputs: outputs)
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// Concrete shape of a test operand at batch n.
    static func dims(_ d: [Any], n: Int) -> [Int] { d.map { ($0 as? Int) ?? n } }

    // MARK: - References (plain loops, Double)

    /// NumPy matmul: 1-D operands promoted, stack axes broadcast.
    static func matmulRef(_ a: [Double], _ aShape: [Int], _ b: [Double], _ bShape: [Int]) -> [Double] {
        let aS = aShape.count == 1 ? [1] + aShape : aShape, bS = bShape.count == 1 ? bShape + [1] : bShape
        let m = aS[aS.count - 2], k = aS[aS.count - 1], n = bS[bS.count - 1]
        let aStack = Array(aS.dropLast(2)), bStack = Array(bS.dropLast(2))
        let r = max(aStack.count, bStack.count)
        let pa = [Int](repeating: 1, count: r - aStack.count) + aStack, pb = [Int](repeating: 1, count: r - bStack.count) + bStack
        let stack = (0..<r).map { max(pa[$0], pb[$0]) }
        let count = stack.reduce(1, *)
        var out: [Double] = []
        for e in 0..<count {
            var idx = [Int](repeating: 0, count: r), rest = e
            for i in stride(from: r - 1, through: 0, by: -1) { idx[i] = rest % stack[i]; rest /= stack[i] }
            var ea = 0, eb = 0
            for i in 0..<r { ea = ea * pa[i] + (pa[i] == 1 ? 0 : idx[i]); eb = eb * pb[i] + (pb[i] == 1 ? 0 : idx[i]) }
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for l in 0..<k { s += a[ea * m * k + i * k + l] * b[eb * k * n + l * n + j] }
                    out.append(s)
                }
            }
        }
        return out
    }

    static func gemmRef(_ a: [Double], _ b: [Double], _ c: [Double]?, cShape: [Int], m: Int, k: Int, n: Int,
                        transA: Bool, transB: Bool, alpha: Double, beta: Double) -> [Double] {
        var y = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<k { s += (transA ? a[l * m + i] : a[i * k + l]) * (transB ? b[j * k + l] : b[l * n + j]) }
                var v = alpha * s
                if let c {
                    let cm = cShape.count == 2 ? cShape[0] : 1, cn = cShape.last ?? 1
                    v += beta * c[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)]
                }
                y[i * n + j] = v
            }
        }
        return y
    }

    static func batchNormRef(_ x: [Double], shape: [Int], _ p: [[Double]], epsilon: Double) -> [Double] {
        let c = shape[1], spatial = shape[2...].reduce(1, *)
        return x.indices.map { i in
            let ch = (i / spatial) % c
            return (x[i] - p[2][ch]) / (p[3][ch] + epsilon).squareRoot() * p[0][ch] + p[1][ch]
        }
    }

    static func layerNormRef(_ x: [Double], rows: Int, cols: Int, scale: [Double], bias: [Double]?, epsilon: Double) -> [Double] {
        var y: [Double] = []
        for r in 0..<rows {
            let row = Array(x[r * cols ..< (r + 1) * cols])
            let mean = row.reduce(0, +) / Double(cols)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
            for j in 0..<cols { y.append((row[j] - mean) / (v + epsilon).squareRoot() * scale[j] + (bias?[j] ?? 0)) }
        }
        return y
    }

    // MARK: - Forward driver

    /// Builds the graph in Float and Double, runs one plan of each at batch 1 and 5, and compares with
    /// `reference(inputs, n)`.
    func checkForward(_ operands: [Operand], op: any OpDefinition.Type, _ attributes: [String: Engine.AttributeValue] = [:],
                      inputs: [String]? = nil, numerics: [Numerics] = [.inference, .differentiable],
                      file: StaticString = #filePath, line: UInt = #line,
                      reference: ([[Double]], Int) -> [Double]) throws {
        for dtype in [Engine.DType.float32, .float64] {
            for num in numerics {
                let g = try Self.graph(dtype, operands, op: op, attributes, inputs: inputs)
                let inputDims: [[Any]] = operands.compactMap { if case .input(_, let d) = $0 { return d } else { return nil } }
                func run<T: EngineScalar>(_: T.Type) throws {
                    let h = try OpTest.Harness<T>(g, numerics: num)
                    for n in [1, 5] {
                        let xs: [[Double]] = inputDims.enumerated().map {
                            OpTest.values(Self.dims($0.element, n: n).reduce(1, *), seed: UInt64(11 + 7 * $0.offset + n))
                                .map { Double(T($0)) }
                        }
                        let y = try h.forward(xs.map { $0.map { T($0) } }, n: n)[0]
                        let want = reference(xs, n)
                        XCTAssertEqual(y.count, want.count, "\(dtype) n=\(n)", file: file, line: line)
                        let err = OpTest.maxRelativeError(y.map { Double($0) }, want)
                        XCTAssertLessThan(err, dtype == .float32 ? 2e-5 : 1e-12, "\(op.name) \(dtype) \(num) n=\(n)", file: file, line: line)
                    }
                }
                if dtype == .float32 { try run(Float.self) } else { try run(Double.self) }
            }
        }
    }

    /// Rounds constant values the way a float32 graph stores them when checking float32 results.
    static func v(_ count: Int, seed: UInt64, in range: ClosedRange<Double> = -2...2) -> [Double] {
        OpTest.values(count, seed: seed, in: range, as: Float.self).map { Double($0) }
    }

    // MARK: - MatMul

    func testMatMulForward() throws {
        let w = Self.v(12, seed: 1)
        // x[N, 3] · W[3, 4]: one GEMM over the rows
        try checkForward([.input("x", ["N", 3]), .constant("w", [3, 4], w, trainable: false)], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [n, 3], w, [3, 4])
        }
        // x[2, N, 3] · W: leading axes fold into the rows, the batch not first
        try checkForward([.input("x", [2, "N", 3]), .constant("w", [3, 4], w, trainable: false)], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [2, n, 3], w, [3, 4])
        }
        // two run-time operands, batch on the stack (attention's Q·Kᵀ shape)
        try checkForward([.input("a", ["N", 2, 3]), .input("b", ["N", 3, 4])], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [n, 2, 3], xs[1], [n, 3, 4])
        }
        // A broadcast against B's stack, the batch on A's rows
        let b3 = Self.v(24, seed: 2)
        try checkForward([.input("a", ["N", 3]), .constant("b", [2, 3, 4], b3, trainable: false)], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [n, 3], b3, [2, 3, 4])
        }
        // stack broadcasting both ways: [N, 1, 2, 3] · [4, 3, 2] → [N, 4, 2, 2]
        try checkForward([.input("a", ["N", 1, 2, 3]), .input("b", [4, 3, 2])], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [n, 1, 2, 3], xs[1], [4, 3, 2])
        }
        // 1-D operands: [N, 3] · [3] → [N]; [3] · [N, 3, 4] → [N, 4]
        try checkForward([.input("a", ["N", 3]), .input("b", [3])], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [n, 3], xs[1], [3])
        }
        try checkForward([.input("a", [3]), .input("b", ["N", 3, 4])], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [3], xs[1], [n, 3, 4])
        }
        // the batch as the contracted axis: [2, N] · [N, 3]
        try checkForward([.input("a", [2, "N"]), .input("b", ["N", 3])], op: MatMulOp.self) { xs, n in
            Self.matmulRef(xs[0], [2, n], xs[1], [n, 3])
        }
    }

    /// x[..., k] · W[k, m] stays one GEMM over every leading row (the geometry has no stack axes);
    /// a batched product loops over its stack.
    func testMatMulPlanShape() throws {
        let folded = try Engine.compile(try Self.graph(.float32, [.input("x", [2, "N", 3]),
                                                                  .constant("w", [3, 4], Self.v(12, seed: 1), trainable: false)],
                                                       op: MatMulOp.self))
        XCTAssertEqual(folded.steps.count, 1)
        guard case .matMul(let geo, _, _, false, false, .identity) = folded.steps[0].kind else { return XCTFail("\(folded.steps[0].kind)") }
        // stack rank 0, rows = 2·N
        XCTAssertEqual(Array(folded.ints[Int(geo) ..< Int(geo) + 3]), [0, 2, 0])
        let batched = try Engine.compile(try Self.graph(.float32, [.input("a", ["N", 2, 3]), .input("b", ["N", 3, 4])], op: MatMulOp.self))
        guard case .matMul(let geo2, _, _, _, _, _) = batched.steps[0].kind else { return XCTFail("\(batched.steps[0].kind)") }
        XCTAssertEqual(batched.ints[Int(geo2)], 1)
    }

    /// Reproducible mode: a row's result of x[N, k] · W (and of Gemm with C) is the same bits at every
    /// batch size. (OpenBLAS on the AMD EPYC this was written on gives equal bits even without the
    /// row-by-row path; the check guards kernels that split the rows of a large GEMM differently.)
    func testReproducibleRows() throws {
        let k = 200, m = 48, n = 300
        let w = Self.v(k * m, seed: 40)
        for op in [MatMulOp.self, GemmOp.self] as [any OpDefinition.Type] {
            var ops: [Operand] = [.input("x", ["N", k]), .constant("w", [k, m], w, trainable: false)]
            if op == GemmOp.self { ops.append(.constant("c", [m], Self.v(m, seed: 41), trainable: false)) }
            let g = try Self.graph(.float32, ops, op: op, op == GemmOp.self ? ["alpha": .float(0.5)] : [:])
            let h = try OpTest.Harness<Float>(g)
            h.ex.reproducible = true
            let x: [Float] = OpTest.values(n * k, seed: 42)
            let all = try h.forward([x], n: n)[0]
            for r in [0, 17, n - 1] {
                let one = try h.forward([Array(x[r * k ..< (r + 1) * k])], n: 1)[0]
                XCTAssertEqual(one.map(\.bitPattern), all[r * m ..< (r + 1) * m].map(\.bitPattern), "\(op.name) row \(r)")
            }
        }
    }

    /// Empty inner dimension: the product is 0 (plus beta·C for Gemm), no BLAS call with k = 0.
    func testEmptyInnerDimension() throws {
        try checkForward([.input("a", ["N", 0]), .input("b", [0, 3])], op: MatMulOp.self) { _, n in
            [Double](repeating: 0, count: 3 * n)
        }
        let c = Self.v(3, seed: 12)
        try checkForward([.input("a", ["N", 0]), .input("b", [0, 3]), .constant("c", [3], c, trainable: false)], op: GemmOp.self,
                         ["beta": .float(2)]) { _, n in
            (0..<(3 * n)).map { 2 * c[$0 % 3] }
        }
    }

    func testMatMulShapes() throws {
        func type(_ a: [Any], _ b: [Any]) throws -> Engine.Shape {
            let g = try Self.graph(.float32, [.input("a", a), .input("b", b)], op: MatMulOp.self)
            return g[g.outputs[0]].type?.shape ?? []
        }
        let g = Engine.Graph()
        let N = Engine.SymInt(g.symbol(named: "N"))
        XCTAssertEqual(try type(["N", 3], [3]).map(\.description), ["N"])
        XCTAssertEqual(try type([3], [3]).count, 0)
        XCTAssertEqual(try type(["N", 1, 2, 3], [4, 3, 2]).map(\.description), [N.description, "4", "2", "2"])
        XCTAssertThrowsError(try type(["N", 3], [4, 2]))            // inner sizes differ
        XCTAssertThrowsError(try type([2, 2, 3], [3, 3, 2]))        // stacks 2 and 3 do not broadcast
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", [2, 3]), .constant("b", [], [1], trainable: false)], op: MatMulOp.self))
    }

    func testMatMulGradients() throws {
        // both operands at run time, batch on the stack
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", ["N", 2, 3]), .input("b", ["N", 3, 4])],
                                                                   op: MatMulOp.self), n: 2), 1e-7)
        // a trainable B broadcast over the batch (its gradient sums over the stack) and folded rows
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", ["N", 2, 3]),
                                                                              .constant("w", [3, 4], Self.v(12, seed: 3), trainable: true)],
                                                                   op: MatMulOp.self), n: 3), 1e-7)
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", ["N", 3]),
                                                                              .constant("w", [2, 3, 4], Self.v(24, seed: 4), trainable: true)],
                                                                   op: MatMulOp.self), n: 2), 1e-7)
        // broadcasting both ways and 1-D operands
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", ["N", 1, 2, 3]), .input("b", [4, 3, 2])],
                                                                   op: MatMulOp.self), n: 2), 1e-7)
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", [3]), .input("b", ["N", 3, 2])],
                                                                   op: MatMulOp.self), n: 2), 1e-7)
        // the same value on both sides: x·x
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, [.input("a", [3, 3])], op: MatMulOp.self,
                                                                   inputs: ["a", "a"]), n: 1), 1e-7)
    }

    // MARK: - Gemm

    func testGemmForward() throws {
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0, 1.0), (0.5, -2.0)] {
                for cShape in [nil, [] as [Int], [4], [1, 4], ["N", 1] as [Any], ["N", 4] as [Any]] as [[Any]?] {
                    let attrs: [String: Engine.AttributeValue] = ["transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0),
                                                                  "alpha": .float(alpha), "beta": .float(beta)]
                    let aDims: [Any] = transA ? [3, "N"] : ["N", 3]
                    // B a constant (the weight), or at run time
                    for bConstant in [true, false] {
                        let bShape = transB ? [4, 3] : [3, 4]
                        let bv = Self.v(12, seed: 5)
                        var ops: [Operand] = [.input("a", aDims), bConstant ? .constant("b", bShape, bv, trainable: false) : .input("b", bShape)]
                        let cConst = cShape.map { s in !s.contains { $0 is String } } ?? false
                        let cv = Self.v(4, seed: 6)
                        if let cShape {
                            ops.append(cConst ? .constant("c", cShape as! [Int], Array(cv.prefix((cShape as! [Int]).reduce(1, *))), trainable: false)
                                              : .input("c", cShape))
                        }
                        try checkForward(ops, op: GemmOp.self, attrs) { xs, n in
                            let b = bConstant ? bv : xs[1]
                            let c: [Double]? = cShape == nil ? nil : cConst ? Array(cv.prefix((cShape as! [Int]).reduce(1, *))) : xs.last
                            return Self.gemmRef(xs[0], b, c, cShape: cShape.map { Self.dims($0, n: n) } ?? [], m: n, k: 3, n: 4,
                                                transA: transA, transB: transB, alpha: alpha, beta: beta)
                        }
                    }
                }
            }
        }
    }

    func testGemmGradients() throws {
        // the general form: every operand at run time, C broadcast along the columns
        for (transA, transB) in [(false, false), (true, true)] {
            let attrs: [String: Engine.AttributeValue] = ["transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0),
                                                          "alpha": .float(0.7), "beta": .float(-1.3)]
            let g = try Self.graph(.float64, [.input("a", transA ? [3, "N"] : ["N", 3]), .input("b", transB ? [4, 3] : [3, 4]),
                                              .input("c", ["N", 1])], op: GemmOp.self, attrs)
            XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-7)
        }
        // trainable B and C (a vector), alpha ≠ 1: the general step with parameter gradients
        let g = try Self.graph(.float64, [.input("a", ["N", 3]), .constant("b", [3, 4], Self.v(12, seed: 7), trainable: true),
                                          .constant("c", [4], Self.v(4, seed: 8), trainable: true)], op: GemmOp.self,
                               ["alpha": .float(2), "beta": .float(0.5)])
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 3), 1e-7)
        // the nn.Linear form (dense step), trainable weight and bias
        let lin = try Self.graph(.float64, [.input("a", ["N", 3]), .constant("w", [4, 3], Self.v(12, seed: 9), trainable: true),
                                            .constant("c", [4], Self.v(4, seed: 10), trainable: true)], op: GemmOp.self, ["transB": .int(1)])
        XCTAssertLessThan(try OpTest.checkGradients(lin, n: 3), 1e-7)
        // a trainable weight with a constant bias: the general step (the dense rule wants both trainable)
        let mixed = try Self.graph(.float64, [.input("a", ["N", 3]), .constant("w", [4, 3], Self.v(12, seed: 9), trainable: true),
                                              .constant("c", [4], Self.v(4, seed: 10), trainable: false)], op: GemmOp.self, ["transB": .int(1)])
        XCTAssertLessThan(try OpTest.checkGradients(mixed, n: 2), 1e-7)
    }

    func testGemmErrors() throws {
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 3]), .input("b", [4, 3])], op: GemmOp.self))   // K 3 vs 4
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 2, 3]), .input("b", [3, 4])], op: GemmOp.self)) // rank 3
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 3]), .input("b", [3, 4]), .input("c", [3])], op: GemmOp.self))
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 3]), .input("b", [3, 4])], op: GemmOp.self, ["transA": .int(2)]))
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 3]), .input("b", [3, 4])], op: GemmOp.self, ["alpha": .float(.nan)]))
        XCTAssertThrowsError(try Self.graph(.float32, [.input("a", ["N", 3]), .input("b", [3, 4])], op: GemmOp.self, ["alpha": .string("x")]))
    }

    // MARK: - BatchNormalization

    func bnParameters(_ c: Int) -> [[Double]] {
        [Self.v(c, seed: 21), Self.v(c, seed: 22), Self.v(c, seed: 23), Self.v(c, seed: 24, in: 0.2...2)]
    }

    func bnOperands(_ x: [Any], _ p: [[Double]], trainable: Bool) -> [Operand] {
        let c = p[0].count
        return [.input("x", x), .constant("scale", [c], p[0], trainable: trainable), .constant("b", [c], p[1], trainable: trainable),
                .constant("mean", [c], p[2], trainable: false), .constant("var", [c], p[3], trainable: false)]
    }

    func testBatchNormForward() throws {
        let p = bnParameters(3)
        for x in [["N", 3, 2, 2], ["N", 3], [2, 3, "N"]] as [[Any]] {
            for trainable in [false, true] {
                try checkForward(bnOperands(x, p, trainable: trainable), op: BatchNormalizationOp.self, ["epsilon": .float(1e-3)]) { xs, n in
                    Self.batchNormRef(xs[0], shape: Self.dims(x, n: n), p, epsilon: 1e-3)
                }
            }
        }
    }

    func testBatchNormGradients() throws {
        let p = bnParameters(3)
        // constants only: the folded affine step, gradient for x
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, bnOperands(["N", 3, 2], p, trainable: false),
                                                                   op: BatchNormalizationOp.self), n: 2), 1e-7)
        // trainable scale and B
        XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, bnOperands(["N", 3, 2], p, trainable: true),
                                                                   op: BatchNormalizationOp.self), n: 2), 1e-7)
    }

    func testBatchNormErrors() throws {
        let p = bnParameters(3)
        XCTAssertThrowsError(try Self.graph(.float32, bnOperands(["N", 4], p, trainable: false), op: BatchNormalizationOp.self))  // 4 channels, 3 values
        XCTAssertThrowsError(try Self.graph(.float32, bnOperands(["N"], p, trainable: false), op: BatchNormalizationOp.self))     // rank 1
        XCTAssertThrowsError(try Self.graph(.float32, bnOperands(["N", 3], p, trainable: false), op: BatchNormalizationOp.self,
                                            ["epsilon": .float(-1)]))
        // training mode, statistics outputs and run-time parameters: NodeGapTests
    }

    // MARK: - LayerNormalization

    func lnOperands(_ x: [Any], cols: [Int], bias: Bool, trainable: Bool) -> [Operand] {
        let c = cols.reduce(1, *)
        var ops: [Operand] = [.input("x", x), .constant("scale", cols, Self.v(c, seed: 31), trainable: trainable)]
        if bias { ops.append(.constant("b", cols, Self.v(c, seed: 32), trainable: trainable)) }
        return ops
    }

    func testLayerNormForward() throws {
        for bias in [true, false] {
            // last axis
            try checkForward(lnOperands(["N", 2, 4], cols: [4], bias: bias, trainable: false), op: LayerNormalizationOp.self,
                             ["epsilon": .float(1e-4)]) { xs, n in
                Self.layerNormRef(xs[0], rows: 2 * n, cols: 4, scale: Self.v(4, seed: 31), bias: bias ? Self.v(4, seed: 32) : nil, epsilon: 1e-4)
            }
            // axis 1: the last two axes together
            try checkForward(lnOperands(["N", 2, 3], cols: [2, 3], bias: bias, trainable: true), op: LayerNormalizationOp.self,
                             ["axis": .int(1)]) { xs, n in
                Self.layerNormRef(xs[0], rows: n, cols: 6, scale: Self.v(6, seed: 31), bias: bias ? Self.v(6, seed: 32) : nil, epsilon: 1e-5)
            }
        }
    }

    func testLayerNormGradients() throws {
        for bias in [true, false] {
            for trainable in [true, false] {
                let g = try Self.graph(.float64, lnOperands(["N", 2, 3], cols: [3], bias: bias, trainable: trainable),
                                       op: LayerNormalizationOp.self)
                XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6)
            }
        }
        let g = try Self.graph(.float64, lnOperands(["N", 2, 2], cols: [2, 2], bias: true, trainable: true), op: LayerNormalizationOp.self,
                               ["axis": .int(-2)])
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6)
    }

    func testLayerNormErrors() throws {
        let ops = lnOperands(["N", 4], cols: [4], bias: true, trainable: false)
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: LayerNormalizationOp.self, ["axis": .int(2)]))
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: LayerNormalizationOp.self, ["epsilon": .float(.infinity)]))
        XCTAssertThrowsError(try Self.graph(.float32, ops, op: LayerNormalizationOp.self, ["stash_type": .int(3)]))
        XCTAssertThrowsError(try Self.graph(.float32, lnOperands(["N", 4], cols: [3], bias: false, trainable: false),
                                            op: LayerNormalizationOp.self))
        // the batch among the normalised axes
        XCTAssertThrowsError(try Engine.compile(try Self.graph(.float32, [.input("x", [2, "N"]), .input("s", ["N"])],
                                                               op: LayerNormalizationOp.self, ["axis": .int(1)])))
        // Mean / InvStdDev outputs: NodeGapTests
        // not in opsets before 17
        XCTAssertThrowsError(try OpTable.standard.lookup("LayerNormalization", opset: 16))
    }
}
