import XCTest
import InLoopCore

/// The one engine's IR (issue 10, step 2.1): symbolic dimensions, graph building and verification,
/// type inference through shape computations. Through the public API only.
final class IRTests: XCTestCase {
    typealias S = Engine.SymInt
    let n = Engine.Symbol(id: 0, name: "N")
    let t = Engine.Symbol(id: 1, name: "T")

    func int64(_ shape: [Int], _ values: [Int64]) throws -> Engine.Tensor {
        try Engine.Tensor(shape: shape, values: values)
    }

    func expectError(_ kind: InLoopError.Kind, _ contains: String, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("no error; expected \(kind) with '\(contains)'", file: file, line: line)
        } catch let e as InLoopError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(contains), "'\(e.message)' does not contain '\(contains)'", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    // MARK: - SymInt

    func testSymIntAlgebra() {
        let N = S(n)
        XCTAssertEqual((N * 3)!.description, "3·N")
        XCTAssertEqual(((N * 3)! + 4)!.value(at: 5), 19)
        XCTAssertEqual((((N * 6)! + 4)! / 2)!, (S(3, n, plus: 2)))
        XCTAssertEqual(((N * 32)! / N)!, S(32), "c1·N / c2·N is a known quotient")
        XCTAssertEqual((N - N)!, S(0), "N - N is known")
        XCTAssertNil(N * N, "N·N is not linear")
        XCTAssertNil(N + S(t), "two symbols do not add")
        XCTAssertNil(((N * 3)! + 1)! / 2, "inexact division is not linear")
        XCTAssertNil(S(7) / 0, "division by zero is nil, not a trap")
        XCTAssertEqual(S(-7) / 2, S(-3), "known integers truncate like C")
        XCTAssertEqual(S(-7) % 2, S(-1))
        XCTAssertNil(S(Int.min) / -1, "overflow is nil, not a trap")
        XCTAssertNil(S(Int.max) + 1)
        XCTAssertNil(-S(Int.min))
        XCTAssertNil(S(1 << 40, n) * S(1 << 40))
        XCTAssertNil(S(Int.max, n).value(at: 2), "evaluation overflow is nil")
        XCTAssertEqual(S.max(3, 5), 5)
        XCTAssertEqual(S.min(N, N), N)
        XCTAssertNil(S.max(N, 1), "max with a symbol is not linear")
        XCTAssertEqual([N, 4, 8].elementCount, S(32, n))
        XCTAssertNil([N, S(t)].elementCount)
        XCTAssertEqual(S(0, n), S(0), "a zero coefficient is a known integer")
        XCTAssertEqual(S(2, n, plus: 1).value([n: 10]), 21)
        XCTAssertNil(S(2, n).value([t: 10]), "an unbound symbol has no value")
    }

    // MARK: - Building and verifying

    func testNodesInAnyOrderAreSortedStably() throws {
        let g = Engine.Graph(name: "g", opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, [S(n), 4]))
        // c uses b, which is defined by the node listed after it; a is independent
        try g.addNode("c", AddOp.self, inputs: ["b", "x"], outputs: ["y"])
        try g.addNode("a", IdentityOp.self, inputs: ["x"], outputs: ["z"])
        try g.addNode("b", IdentityOp.self, inputs: ["x"], outputs: ["b"])
        try g.markOutput("y")
        try g.markOutput("z")
        try g.verify()
        XCTAssertEqual(g.nodes.map(\.name), ["a", "b", "c"], "ready nodes in file order")
        for (k, node) in g.nodes.enumerated() {
            for o in node.outputs { XCTAssertEqual(g[o].producer?.index, k, "producers follow the new order") }
        }
        try g.inferTypes()
        XCTAssertEqual(g[g.outputs[0]].type, Engine.TensorType(.float32, [S(n), 4]))
        XCTAssertEqual(g.useCounts()[g.names["x"]!.index], 3)
    }

    func testStructuralErrors() throws {
        expectError(.format, "'q' is not defined") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addNode("a", AddOp.self, inputs: ["x", "q"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
        }
        expectError(.format, "cycle") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addNode("a", AddOp.self, inputs: ["x", "v"], outputs: ["u"])
            try g.addNode("b", IdentityOp.self, inputs: ["u"], outputs: ["v"])
            try g.markOutput("v")
            try g.verify()
        }
        expectError(.format, "defined twice") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addNode("a", IdentityOp.self, inputs: ["x"], outputs: ["y"])
            try g.addNode("b", IdentityOp.self, inputs: ["x"], outputs: ["y"])
        }
        expectError(.format, "'x' is defined twice") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addConstant("x", try Engine.Tensor(shape: [2], values: [Float(1), 2]))
        }
        expectError(.format, "graph output 'w' is not defined") {
            let g = Engine.Graph()
            try g.markOutput("w")
        }
        expectError(.format, "has 1 inputs") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addNode("a", AddOp.self, inputs: ["x"], outputs: ["y"])
        }
        expectError(.format, "has no output") {
            let g = Engine.Graph()
            try g.addInput("x", Engine.TensorType(.float32, [2]))
            try g.addNode("a", IdentityOp.self, inputs: ["x"], outputs: [""])
        }
    }

    func testAttributesAreCheckedNotTrapped() {
        expectError(.format, "node 'g' (Gather): attribute 'axis' is 4611686018427387904") {
            let g = Engine.Graph(opset: 13)
            try g.addNode("g", GatherOp.self, ["axis": .int(1 << 62)], inputs: ["x", "i"], outputs: ["y"])
        }
        expectError(.format, "attribute 'axis' is required") {
            let g = Engine.Graph(opset: 13)
            try g.addNode("c", ConcatOp.self, inputs: ["x"], outputs: ["y"])
        }
        expectError(.format, "must be an integer") {
            let g = Engine.Graph(opset: 13)
            try g.addNode("c", ConcatOp.self, ["axis": .string("0")], inputs: ["x"], outputs: ["y"])
        }
        expectError(.format, "axis 5 is out of range for rank 2") {
            let g = Engine.Graph(opset: 13)
            try g.addInput("x", Engine.TensorType(.float32, [S(n), 3]))
            try g.addConstant("i", try int64([], [0]))
            try g.addNode("g", GatherOp.self, ["axis": .int(5)], inputs: ["x", "i"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            try g.inferTypes()
        }
    }

    // MARK: - Type inference

    /// The batch-generic shape computation torch exporters emit for `x.view(x.size(0), -1)`:
    /// Shape → Gather(0) → Unsqueeze → Concat([-1]) → Reshape. Its result is symbolic in N.
    func testShapeComputationStaysSymbolic() throws {
        let g = Engine.Graph(opset: 13)
        let N = g.symbol(named: "N")
        XCTAssertEqual(g.symbol(named: "N"), N, "one symbol per name")
        try g.addInput("x", Engine.TensorType(.float32, [S(N), 4, 8]))
        try g.addConstant("zero", try int64([], [0]))
        try g.addConstant("axes0", try int64([1], [0]))
        try g.addConstant("minus1", try int64([1], [-1]))
        try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
        try g.addNode("gather", GatherOp.self, inputs: ["s", "zero"], outputs: ["n"])
        try g.addNode("unsq", UnsqueezeOp.self, inputs: ["n", "axes0"], outputs: ["n1"])
        try g.addNode("cat", ConcatOp.self, ["axis": .int(0)], inputs: ["n1", "minus1"], outputs: ["spec"])
        try g.addNode("reshape", ReshapeOp.self, inputs: ["x", "spec"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        let y = g.names["y"]!
        XCTAssertEqual(g[y].type, Engine.TensorType(.float32, [S(N), 32]))
        XCTAssertEqual(g[g.names["spec"]!].known?.values, [S(N), -1])
        XCTAssertEqual(g[g.names["n"]!].type?.shape, [], "a scalar index gives a scalar")

        // specialised: the symbol bound to 3 makes every shape known
        try g.inferTypes(bindings: [N: 3])
        XCTAssertEqual(g[y].type?.shape.known, [3, 32])
    }

    func testBroadcastShapes() throws {
        XCTAssertEqual(try Engine.broadcast([S(n), 1, 3], [4, 1]), [S(n), 4, 3])
        XCTAssertEqual(try Engine.broadcast([S(n), 3], [1, 3]), [S(n), 3])
        XCTAssertEqual(try Engine.broadcast([], [S(n)]), [S(n)], "a scalar broadcasts")
        XCTAssertEqual(try Engine.broadcast([S(n), 3], [5, 3]), [5, 3], "N against 5: N must be 1 or 5 at run time")
        expectError(.format, "do not broadcast (2 against 4)") { _ = try Engine.broadcast([2, 3], [4, 3]) }
        do {
            _ = try Engine.broadcast([S(n)], [S(t)])
            XCTFail("two symbols broadcast")
        } catch let e {
            XCTAssertTrue(Engine.isNotLinear(e), e.message)
        }
    }

    func testIntegerArithmeticOnShapes() throws {
        // (Shape(x)[1] * 2) broadcast against a constant vector: computed at compile time
        let g = Engine.Graph(opset: 13)
        let N = g.symbol(named: "N")
        try g.addInput("x", Engine.TensorType(.float32, [S(N), 6]))
        try g.addConstant("two", try int64([], [2]))
        try g.addConstant("v", try int64([2], [1, -1]))
        try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
        try g.addNode("mul", MulOp.self, inputs: ["s", "two"], outputs: ["m"])
        try g.addNode("add", AddOp.self, inputs: ["m", "v"], outputs: ["a"])
        try g.addNode("div", DivOp.self, inputs: ["m", "two"], outputs: ["d"])
        try g.markOutput("a")
        try g.markOutput("d")
        try g.verify()
        try g.inferTypes()
        XCTAssertEqual(g[g.names["m"]!].known?.values, [S(2, N), 12])
        XCTAssertEqual(g[g.names["a"]!].known?.values, [S(2, N, plus: 1), 11])
        XCTAssertEqual(g[g.names["d"]!].known?.values, [S(N), 6])
        expectError(.format, "float32 and int64") {
            let h = Engine.Graph(opset: 13)
            try h.addInput("x", Engine.TensorType(.float32, [2]))
            try h.addConstant("c", try int64([1], [1]))
            try h.addNode("add", AddOp.self, inputs: ["x", "c"], outputs: ["y"])
            try h.markOutput("y")
            try h.verify()
            try h.inferTypes()
        }
    }

    func testReshapeRules() throws {
        func reshape(_ x: Engine.Shape, _ spec: [Int64], allowZero: Bool = false) throws -> Engine.Shape? {
            let g = Engine.Graph(opset: 14)
            try g.addInput("x", Engine.TensorType(.float32, x))
            try g.addConstant("s", try int64([spec.count], spec))
            try g.addNode("r", ReshapeOp.self, allowZero ? ["allowzero": .int(1)] : [:], inputs: ["x", "s"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            try g.inferTypes()
            return g[g.names["y"]!].type?.shape
        }
        XCTAssertEqual(try reshape([S(n), 4, 8], [0, -1]), [S(n), 32])
        XCTAssertEqual(try reshape([S(n), 4, 8], [-1, 8]), [S(4, n), 8])
        XCTAssertEqual(try reshape([2, 0], [0, 5, -1], allowZero: false), [2, 5, 0])
        XCTAssertEqual(try reshape([2, 3], [3, 2]), [3, 2])
        expectError(.sizeMismatch, "6 is not a multiple of 4") { _ = try reshape([2, 3], [4, -1]) }
        expectError(.format, "more than one -1") { _ = try reshape([2, 3], [-1, -1]) }
        expectError(.format, "holds -2") { _ = try reshape([2, 3], [-2, 3]) }
        expectError(.sizeMismatch, "6 elements against 8") { _ = try reshape([2, 3], [2, 4]) }
        do {
            _ = try reshape([S(n), 4], [8])
            XCTFail("[N, 4] to [8] is valid for N = 2 only")
        } catch let e as InLoopError {
            XCTAssertTrue(Engine.isNotLinear(e), e.message)
        }
        // specialised on N = 2, the same graph is fine
        let g = Engine.Graph(opset: 14)
        let N = g.symbol(named: "N")
        try g.addInput("x", Engine.TensorType(.float32, [S(N), 4]))
        try g.addConstant("s", try int64([1], [8]))
        try g.addNode("r", ReshapeOp.self, inputs: ["x", "s"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes(bindings: [N: 2])
        XCTAssertEqual(g[g.names["y"]!].type?.shape, [8])
    }

    func testGatherIndexOutOfRangeIsAnError() {
        expectError(.format, "index 3 is out of range for axis 0 of size 2") {
            let g = Engine.Graph(opset: 13)
            try g.addInput("x", Engine.TensorType(.float32, [S(n), 5]))
            try g.addConstant("i", try int64([], [3]))
            try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
            try g.addNode("gather", GatherOp.self, inputs: ["s", "i"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            try g.inferTypes()
        }
    }

    func testShapeStartEnd() throws {
        let g = Engine.Graph(opset: 15)
        try g.addInput("x", Engine.TensorType(.float32, [S(n), 3, 4, 5]))
        try g.addNode("a", ShapeOp.self, ["start": .int(-2)], inputs: ["x"], outputs: ["a"])
        try g.addNode("b", ShapeOp.self, ["start": .int(1), "end": .int(-1)], inputs: ["x"], outputs: ["b"])
        try g.addNode("c", ShapeOp.self, ["start": .int(9)], inputs: ["x"], outputs: ["c"])
        for o in ["a", "b", "c"] { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        XCTAssertEqual(g[g.names["a"]!].known?.values, [4, 5])
        XCTAssertEqual(g[g.names["b"]!].known?.values, [3, 4])
        XCTAssertEqual(g[g.names["c"]!].known?.values, [], "start past the end clamps to an empty shape")
    }

    // MARK: - Op table and storage

    func testRegistry() throws {
        XCTAssertTrue(try OpTable.standard.lookup("Reshape", opset: 14) == ReshapeOp.self)
        XCTAssertTrue(try OpTable.standard.lookup("Add", domain: "ai.onnx", opset: 7) == AddOp.self)
        expectError(.unsupported, "operator 'Frobnicate' is not supported") { _ = try OpTable.standard.lookup("Frobnicate", opset: 13) }
        expectError(.unsupported, "not supported in opset 1") { _ = try OpTable.standard.lookup("Reshape", opset: 1) }
        expectError(.unsupported, "operator 'com.x.Add'") { _ = try OpTable.standard.lookup("Add", domain: "com.x", opset: 1) }
    }

    func testStorage() throws {
        let s = try Engine.TensorStorage(dtype: .float64, count: 5)
        XCTAssertEqual(Int(bitPattern: s.raw) % 64, 0, "64-byte aligned")
        XCTAssertEqual(try s.pointer(as: Double.self)[4], 0, "zero-filled")
        expectError(.internal, "a float64 buffer read as float32") { _ = try s.pointer(as: Float.self) }
        expectError(.outOfMemory, "work-space limit") { _ = try Engine.TensorStorage(dtype: .float32, count: 1 << 40) }
        expectError(.format, "too large") { _ = try Engine.TensorStorage(dtype: .float64, count: Int.max / 2) }
        let b = try Engine.Tensor(shape: [3], values: [true, false, true])
        XCTAssertEqual(b.integers, [1, 0, 1])
        XCTAssertEqual(try Engine.Tensor(shape: [2], values: [Int64(-3), 7]).integers, [-3, 7])
        XCTAssertNil(try Engine.Tensor(shape: [1], values: [Float(1)]).integers)
        expectError(.sizeMismatch, "needs 4 values, got 3") { _ = try Engine.Tensor(shape: [2, 2], values: [Float(1), 2, 3]) }
    }

    /// The shared gradient check (`OpTest.checkGradients`) on a Dense(tanh) → Dense graph with trainable
    /// weights: it passes on the correct reverse and tangent passes, and it fails when the weights move
    /// under it (a check that cannot fail would guard nothing).
    func testGradientCheckHelper() throws {
        func graph() throws -> Engine.Graph {
            let g = Engine.Graph(dtype: .float64)
            try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 3])))
            let w1 = try g.addConstant("w1", try Engine.Tensor(shape: [4, 3], values: OpTest.values(12, seed: 1, as: Double.self)))
            let b1 = try g.addConstant("b1", try Engine.Tensor(shape: [4], values: OpTest.values(4, seed: 2, as: Double.self)))
            let w2 = try g.addConstant("w2", try Engine.Tensor(shape: [2, 4], values: OpTest.values(8, seed: 3, as: Double.self)))
            try g.addNode("d1", DenseOp.self, ["activation": .string("tanh")], inputs: ["x", "w1", "b1"], outputs: ["h"])
            try g.addNode("d2", DenseOp.self, inputs: ["h", "w2"], outputs: ["y"])
            try g.markOutput("y")
            g.parameters = [w1, b1, w2]
            try g.verify()
            try g.inferTypes()
            return g
        }
        let worst = try OpTest.checkGradients(try graph(), n: 3)
        XCTAssertLessThan(worst, 1e-7)
        // the forward of a float64 inference plan agrees with the differentiable one
        let g = try graph()
        let x: [Double] = OpTest.values(9, seed: 5)
        let a = try OpTest.run(g, [x], n: 3), b = try OpTest.run(g, [x], n: 3, numerics: .differentiable)
        XCTAssertLessThan(OpTest.maxRelativeError(a[0], b[0]), 1e-15)
    }
}
