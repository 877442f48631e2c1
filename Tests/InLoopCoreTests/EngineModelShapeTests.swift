import XCTest
@testable import InLoopCore

/// `Engine.Model` on graphs that do not fit the batch convenience (ENGINE.md §6.1): full shapes for
/// every input and output, symbols bound from the caller's shapes, plan reuse per bound sizes; and the
/// convenience on models where only some inputs have a batch axis. Each result is compared with a
/// naive reference computed here.
final class EngineModelShapeTests: XCTestCase {
    private func S(_ s: Engine.Symbol) -> Engine.SymInt { Engine.SymInt(s) }

    private func values(_ n: Int, _ seed: UInt64) -> [Double] {
        OpTest.values(n, seed: seed, as: Double.self).map { Double(Float($0)) }   // exact in float32
    }

    private func model(_ g: Engine.Graph) throws -> Engine.Model {
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}
        return try Engine.Model(graph: g)
    }

    private func expectError(_ kind: InLoopError.Kind, _ fragment: String, _ body: () throws -> Void,
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected \(kind)", file: file, line: line)
        } catch let e as InLoopError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(fragment), "'\(e.message)' lacks '\(fragment)'", file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    /// NumPy broadcasting of a binary op, naive (shapes right-aligned).
    private func broadcast(_ a: [Double], _ sa: [Int], _ b: [Double], _ sb: [Int], _ f: (Double, Double) -> Double) -> ([Double], [Int]) {
        let r = max(sa.count, sb.count)
        let pa = [Int](repeating: 1, count: r - sa.count) + sa, pb = [Int](repeating: 1, count: r - sb.count) + sb
        let sy = zip(pa, pb).map { max($0, $1) }
        let n = sy.reduce(1, *)
        var y = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var rem = i, ia = 0, ib = 0, stA = 1, stB = 1
            var idx = [Int](repeating: 0, count: r)
            for d in stride(from: r - 1, through: 0, by: -1) { idx[d] = rem % sy[d]; rem /= sy[d] }
            for d in stride(from: r - 1, through: 0, by: -1) {
                ia += (pa[d] == 1 ? 0 : idx[d]) * stA; stA *= pa[d]
                ib += (pb[d] == 1 ? 0 : idx[d]) * stB; stB *= pb[d]
            }
            y[i] = f(a[ia], b[ib])
        }
        return (y, sy)
    }

    private func close(_ a: [Double], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) where abs(x - y) > 1e-6 * max(1, abs(y)) {
            XCTFail("\(x) != \(y)", file: file, line: line)
            return
        }
    }

    func testStaticInputsWithDifferentLeadingDimensions() throws {
        // ONNX node test style: Add of [3,4,5] and [5]
        let g = Engine.Graph(opset: 13)
        try g.addInput("a", Engine.TensorType(.float32, [3, 4, 5]))
        try g.addInput("b", Engine.TensorType(.float32, [5]))
        try g.addNode("add", AddOp.self, inputs: ["a", "b"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        let a = values(60, 1), b = values(5, 2)
        let out = try m.runShaped([([3, 4, 5], a), ([5], b)])
        XCTAssertEqual(out[0].shape, [3, 4, 5])
        close(out[0].values, broadcast(a, [3, 4, 5], b, [5], +).0)
        // the convenience: no common leading size, so no batch axis: batch 1, whole shapes
        XCTAssertEqual(m.inputBatched, [false, false])
        XCTAssertEqual(m.inputSpecs.map(\.shape), [[3, 4, 5], [5]])
        let y = try m.runArrays(batch: 1, [a.map { Float($0) }, b.map { Float($0) }])
        close(y[0].map { Double($0) }, out[0].values)
        expectError(.sizeMismatch, "no batch axis") { _ = try m.runArrays(batch: 2, [a.map { Float($0) }, b.map { Float($0) }]) }
        // a wrong static dimension or rank
        expectError(.sizeMismatch, "the model takes 5") { _ = try m.runShaped([([3, 4, 5], a), ([4], Array(b.prefix(4)))]) }
        expectError(.sizeMismatch, "rank 2 given") { _ = try m.runShaped([([12, 5], a), ([5], b)]) }
    }

    func testInputWithoutBatchAxisInABatchedModel() throws {
        // y = x · mask, x [N, 4], mask [4] (a land-sea mask); z = x + w, w [N, 4]
        let g = Engine.Graph(opset: 13)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 4])))
        try g.addInput("mask", Engine.TensorType(.float32, [4]))
        try g.addNode("mul", MulOp.self, inputs: ["x", "mask"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        XCTAssertEqual(m.inputBatched, [true, false])
        XCTAssertEqual(m.outputBatched, [true])
        XCTAssertEqual(m.inputSpecs.map(\.shape), [[4], [4]])
        for n in [1, 3, 7] {
            let x = values(4 * n, UInt64(n)), mask = values(4, 99)
            let want = broadcast(x, [n, 4], mask, [4], *).0
            let y = try m.runArrays(batch: n, [x.map { Float($0) }, mask.map { Float($0) }])
            close(y[0].map { Double($0) }, want)
            let s = try m.runShaped([([n, 4], x), ([4], mask)])
            XCTAssertEqual(s[0].shape, [n, 4])
            XCTAssertEqual(s[0].values, y[0].map { Double($0) }, "the two paths agree bitwise")
        }
        XCTAssertEqual(m.compileCount, 1, "one plan for every batch size")
    }

    func testScalarInputAndWeightsAsInput() throws {
        // y = (x · W) · s: W [3, 2] arrives as a graph input, s a scalar
        let g = Engine.Graph(opset: 13)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3])))
        try g.addInput("W", Engine.TensorType(.float32, [3, 2]))
        try g.addInput("s", Engine.TensorType(.float32, []))
        try g.addNode("mm", MatMulOp.self, inputs: ["x", "W"], outputs: ["h"])
        try g.addNode("mul", MulOp.self, inputs: ["h", "s"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        XCTAssertEqual(m.inputBatched, [true, false, false])
        let n = 5
        let x = values(3 * n, 3), w = values(6, 4), s = [2.5]
        var want = [Double](repeating: 0, count: 2 * n)
        for i in 0..<n { for j in 0..<2 { for k in 0..<3 { want[i * 2 + j] += x[i * 3 + k] * w[k * 2 + j] } } }
        want = want.map { $0 * 2.5 }
        let out = try m.runShaped([([n, 3], x), ([3, 2], w), ([], s)])
        XCTAssertEqual(out[0].shape, [n, 2])
        close(out[0].values, want)
        let y = try m.runArrays(batch: n, [x, w, s].map { $0.map { Float($0) } })
        close(y[0].map { Double($0) }, want)
    }

    func testTransposeThatMovesTheBatchAxis() throws {
        let g = Engine.Graph(opset: 13)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3])))
        try g.addNode("t", TransposeOp.self, ["perm": .ints([1, 0])], inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        for n in [2, 5] {
            let x = values(3 * n, UInt64(10 + n))
            let out = try m.runShaped([([n, 3], x)])
            XCTAssertEqual(out[0].shape, [3, n])
            var want = [Double](repeating: 0, count: 3 * n)
            for i in 0..<n { for j in 0..<3 { want[j * n + i] = x[i * 3 + j] } }
            XCTAssertEqual(out[0].values, want)
        }
        expectError(.unsupported, "full shapes") { _ = try m.runArrays(batch: 2, [[Float](repeating: 0, count: 6)]) }
    }

    func testTwoSymbolsBoundFromShapesAndPlanReuse() throws {
        // y = a + b + bias; a, b [N, T, 3], bias [3]
        let g = Engine.Graph(opset: 13)
        try g.addInput("a", Engine.TensorType(.float32, OpTest.shape(g, ["N", "T", 3])))
        try g.addInput("b", Engine.TensorType(.float32, OpTest.shape(g, ["N", "T", 3])))
        try g.addInput("bias", Engine.TensorType(.float32, [3]))
        try g.addNode("add", AddOp.self, inputs: ["a", "b"], outputs: ["h"])
        try g.addNode("add2", AddOp.self, inputs: ["h", "bias"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        let before = m.compileCount
        for (n, t) in [(2, 5), (4, 1), (2, 5), (4, 1)] {
            let a = values(n * t * 3, UInt64(n)), b = values(n * t * 3, UInt64(t + 20)), bias = values(3, 7)
            let out = try m.runShaped([([n, t, 3], a), ([n, t, 3], b), ([3], bias)])
            XCTAssertEqual(out[0].shape, [n, t, 3])
            let h = broadcast(a, [n, t, 3], b, [n, t, 3], +).0
            close(out[0].values, broadcast(h, [n, t, 3], bias, [3], +).0)
        }
        XCTAssertEqual(m.compileCount - before, 2, "a plan per distinct (N, T); sizes seen before reuse theirs")
        // a symbol shared by two inputs bound to two values
        expectError(.sizeMismatch, "made it") {
            _ = try m.runShaped([([2, 3, 3], values(18, 1)), ([2, 4, 3], values(24, 1)), ([3], values(3, 1))])
        }
        // the batch convenience does not apply (T is symbolic)
        expectError(.unsupported, "full shapes") { _ = try m.runArrays(batch: 1, [[], [], []]) }
        expectError(.invalidArgument, "too many elements") {
            _ = try m.runShaped([([Int(Int32.max), Int(Int32.max), 3], []), ([1, 1, 3], []), ([3], values(3, 1))])
        }
        expectError(.invalidArgument, "dimension 0") {
            _ = try m.runShaped([([0, 3, 3], []), ([0, 3, 3], []), ([3], values(3, 1))])
        }
    }

    func testCapacityAndOverflowAreChecked() throws {
        let g = Engine.Graph(opset: 13)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 4])))
        try g.addNode("r", ReluOp.self, inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        let x: [Float] = [1, -2, 3, -4, 5, -6, 7, -8]
        var y = [Float](repeating: 42, count: 7)
        let ranks: [Int64] = [2], dims: [Int64] = [2, 4]
        func call(_ dims: [Int64], _ caps: [Int64]) throws {
            try x.withUnsafeBufferPointer { xb in
                try y.withUnsafeMutableBufferPointer { yb in
                    let ip = [xb.baseAddress!], op = [yb.baseAddress!]
                    try ranks.withUnsafeBufferPointer { r in
                        try dims.withUnsafeBufferPointer { d in
                            try ip.withUnsafeBufferPointer { i in
                                try op.withUnsafeBufferPointer { o in
                                    try caps.withUnsafeBufferPointer { c in
                                        try m.run(ranks: r, dims: d, inputs: i, outputs: o, capacities: c, outRanks: nil, outDims: nil)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        expectError(.sizeMismatch, "room for 7") { try call(dims, [7]) }
        XCTAssertEqual(y, [Float](repeating: 42, count: 7), "outputs untouched on error")
        expectError(.invalidArgument, "dimension") { try call([Int64.max, 4], [7]) }
        expectError(.sizeMismatch, "room for 7") { try call([Int64(Int32.max), 4], [7]) }
    }
}
