import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import InLoopCore

/// Bytes of heap in use (glibc mallinfo2().uordblks), or nil where it cannot be read: on other platforms,
/// and where glibc's allocator is not the one in use (a sanitizer's runtime owns malloc in `make
/// sanitize`; mallinfo2 then sees no allocation, which the probe checks with one of its own).
/// mallinfo2 returns a 10-word struct through a hidden result pointer, passed like a first argument on x86-64.
func heapInUse() -> Int? {
    #if os(Linux) && arch(x86_64)
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallinfo2") else { return nil }
    typealias Fn = @convention(c) (UnsafeMutableRawPointer) -> UnsafeMutableRawPointer
    let f = unsafeBitCast(sym, to: Fn.self)
    func read() -> Int {
        var info = [Int](repeating: 0, count: 10)
        info.withUnsafeMutableBytes { _ = f($0.baseAddress!) }
        return info[7]
    }
    let probe = malloc(4096)
    let with = read()
    free(probe)
    let without = read()
    return with == without ? nil : without
    #else
    return nil
    #endif
}

/// `Engine.Model` (what the C ABI holds for a graph) on graphs built in Swift, checked against naive
/// loops: folding of shape chains, fusion, plan reuse across batch sizes, no allocation when running,
/// fixed batches, errors naming the node, the reproducible mode, the float64 path, the finite check.
final class GraphTests: XCTestCase {
    typealias G = Engine.Graph
    func seq(_ count: Int, _ scale: Float = 0.1) -> [Float] { (0..<count).map { Float(($0 * 7919) % 23 - 11) * scale } }
    func f(_ shape: [Int], _ values: [Float]) throws -> Engine.Tensor { try Engine.Tensor(shape: shape, values: values) }
    func i(_ values: [Int64]) throws -> Engine.Tensor { try Engine.Tensor(shape: [values.count], values: values) }
    func input(_ g: G, _ name: String, _ dims: [Any]) throws {
        try g.addInput(name, Engine.TensorType(.float32, OpTest.shape(g, dims)))
    }
    func model(_ g: G) throws -> Engine.Model {
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}
        return try Engine.Model(graph: g)
    }

    /// x (N, 2, 3) → view(N, -1) by the exporter's Shape → Gather → Unsqueeze → Concat → Reshape chain,
    /// then MatMul(W (6, 4)) + b → Relu.
    func flattenGraph(extraOutput: Bool = false) throws -> G {
        let g = G(opset: 17)
        try input(g, "x", ["N", 2, 3])
        try g.addConstant("W", try f([6, 4], seq(24)))
        try g.addConstant("b", try f([4], [0.5, -0.25, 0, 1]))
        try g.addConstant("zero", try Engine.Tensor(shape: [], values: [Int64(0)]))
        try g.addConstant("minus1", try i([-1]))
        try g.addConstant("axes0", try i([0]))
        try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
        try g.addNode("gather", GatherOp.self, ["axis": .int(0)], inputs: ["s", "zero"], outputs: ["s0"])
        try g.addNode("unsq", UnsqueezeOp.self, inputs: ["s0", "axes0"], outputs: ["s0u"])
        try g.addNode("cat", ConcatOp.self, ["axis": .int(0)], inputs: ["s0u", "minus1"], outputs: ["target"])
        try g.addNode("reshape", ReshapeOp.self, inputs: ["x", "target"], outputs: ["flat"])
        try g.addNode("matmul", MatMulOp.self, inputs: ["flat", "W"], outputs: ["h"])
        try g.addNode("bias", AddOp.self, inputs: ["h", "b"], outputs: ["hb"])
        try g.addNode("relu", ReluOp.self, inputs: ["hb"], outputs: ["y"])
        try g.markOutput("y")
        if extraOutput { try g.markOutput("h") }
        return g
    }

    func naiveFlattenGraph(_ x: [Float], batch: Int) -> [Float] {
        let w = seq(24), b: [Float] = [0.5, -0.25, 0, 1]
        var y = [Float](repeating: 0, count: batch * 4)
        for s in 0..<batch {
            for o in 0..<4 {
                var acc = b[o]
                for i in 0..<6 { acc += x[s * 6 + i] * w[i * 4 + o] }
                y[s * 4 + o] = max(acc, 0)
            }
        }
        return y
    }

    func assertClose(_ a: [Float], _ b: [Float], _ tol: Float = 1e-5, _ what: String = "", line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, line: line)
        let scale = max(b.map { abs($0) }.max() ?? 1, 1e-6)
        for (i, (u, v)) in zip(a, b).enumerated() where abs(u - v) > tol * scale {
            XCTFail("\(what) [\(i)]: \(u) vs \(v)", line: line)
            return
        }
    }

    func testShapeChainFoldsToOneDenseStep() throws {
        let m = try model(try flattenGraph())
        XCTAssertEqual(m.inputSpecs, [TensorSpec(name: "x", shape: [2, 3])])
        XCTAssertEqual(m.outputSpecs, [TensorSpec(name: "y", shape: [4])])
        XCTAssertEqual(m.stepCount, 1, "shape chain folded, reshape aliased, MatMul + bias + Relu one dense step")
        XCTAssertEqual(m.compileCount, 1, "one plan for every batch size")
        for batch in [1, 2, 5] {
            let x = seq(batch * 6, 0.3)
            assertClose(try m.runArrays(batch: batch, [x])[0], naiveFlattenGraph(x, batch: batch), 1e-5, "batch \(batch)")
        }
        XCTAssertEqual(m.compileCount, 1)
    }

    func testNormalisationByConstants() throws {
        let mean: [Float] = [1, 2, 3], std: [Float] = [2, 4, 0.5]
        let g = G(opset: 17)
        try input(g, "x", ["N", 3])
        try g.addConstant("m", try f([3], mean))
        try g.addConstant("s", try f([1, 3], std))
        try g.addNode("sub", SubOp.self, inputs: ["x", "m"], outputs: ["c"])
        try g.addNode("div", DivOp.self, inputs: ["c", "s"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        let x: [Float] = [1, 2, 3, 5, 6, 7, -1, 0, 1, 3, 2, 1]
        var want: [Float] = []
        for i in 0..<12 { want.append((x[i] - mean[i % 3]) / std[i % 3]) }
        assertClose(try m.runArrays(batch: 4, [x])[0], want, 1e-6)
    }

    /// Conv1d (2 → 3 channels, k = 3, pad 1) → BatchNormalization → Relu.
    func testConvBatchNormRelu() throws {
        let cin = 2, cout = 3, len = 5, k = 3
        let w = seq(cout * cin * k), bias: [Float] = [0.1, -0.2, 0.3]
        let gamma: [Float] = [1.5, 0.5, -1], beta: [Float] = [0, 1, -1], mu: [Float] = [0.2, -0.1, 0], v: [Float] = [1, 4, 0.25]
        let eps: Float = 1e-5
        let g = G(opset: 17)
        try input(g, "x", ["N", cin, len])
        try g.addConstant("W", try f([cout, cin, k], w))
        try g.addConstant("B", try f([cout], bias))
        try g.addConstant("g", try f([cout], gamma))
        try g.addConstant("be", try f([cout], beta))
        try g.addConstant("mu", try f([cout], mu))
        try g.addConstant("v", try f([cout], v))
        try g.addNode("conv", ConvOp.self, ["pads": .ints([1, 1])], inputs: ["x", "W", "B"], outputs: ["c"])
        try g.addNode("bn", BatchNormalizationOp.self, ["epsilon": .float(Double(eps))], inputs: ["c", "g", "be", "mu", "v"], outputs: ["b"])
        try g.addNode("relu", ReluOp.self, inputs: ["b"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        let batch = 3
        let x = seq(batch * cin * len, 0.2)
        var want = [Float](repeating: 0, count: batch * cout * len)
        for b in 0..<batch {
            for o in 0..<cout {
                for p in 0..<len {
                    var acc = bias[o]
                    for c in 0..<cin { for j in 0..<k where p + j - 1 >= 0 && p + j - 1 < len {
                        acc += w[(o * cin + c) * k + j] * x[(b * cin + c) * len + p + j - 1]
                    } }
                    let bn = (acc - mu[o]) / (v[o] + eps).squareRoot() * gamma[o] + beta[o]
                    want[(b * cout + o) * len + p] = max(bn, 0)
                }
            }
        }
        assertClose(try m.runArrays(batch: batch, [x])[0], want, 1e-5)
    }

    func testNoFusionWhenIntermediateIsAlsoAnOutput() throws {
        let m = try model(try flattenGraph(extraOutput: true))
        let x = seq(12, 0.3)
        let out = try m.runArrays(batch: 2, [x])
        assertClose(out[0], naiveFlattenGraph(x, batch: 2))
        // h = flat · W, before bias and Relu: the fusion must not have overwritten it
        let w = seq(24)
        var h = [Float](repeating: 0, count: 8)
        for s in 0..<2 { for o in 0..<4 { for i in 0..<6 { h[s * 4 + o] += x[s * 6 + i] * w[i * 4 + o] } } }
        assertClose(out[1], h)
    }

    func testTransposes() throws {
        let g = G(opset: 17)
        try input(g, "x", ["N", 2, 3])
        try g.addConstant("one", try i([1]))
        try g.addNode("unsq", UnsqueezeOp.self, inputs: ["x", "one"], outputs: ["x1"])
        try g.addNode("t1", TransposeOp.self, ["perm": .ints([0, 2, 1, 3])], inputs: ["x1"], outputs: ["y"])
        try g.addNode("t2", TransposeOp.self, ["perm": .ints([0, 2, 1])], inputs: ["x"], outputs: ["z"])
        try g.markOutput("y")
        try g.markOutput("z")
        let m = try model(g)
        XCTAssertEqual(m.outputSpecs.map { $0.shape }, [[2, 1, 3], [3, 2]])
        let x = seq(18)
        let out = try m.runArrays(batch: 3, [x])
        XCTAssertEqual(out[0], x)
        var z = [Float](repeating: 0, count: 18)
        for b in 0..<3 { for i in 0..<2 { for j in 0..<3 { z[b * 6 + j * 2 + i] = x[b * 6 + i * 3 + j] } } }
        XCTAssertEqual(out[1], z)
    }

    /// A batch-linear graph compiles once and serves every batch size, in any order.
    func testOnePlanForEveryBatchSize() throws {
        let m = try model(try flattenGraph())
        for b in [7, 7, 1, 3, 4, 5, 6, 9, 10, 11, 12] {
            let x = seq(6 * b, 0.3)
            assertClose(try m.runArrays(batch: b, [x])[0], naiveFlattenGraph(x, batch: b), 1e-5, "batch \(b)")
        }
        XCTAssertEqual(m.compileCount, 1, "the batch-linear graph compiles once")
    }

    func testRepeatedRunsDoNotAllocate() throws {
        let m = try model(try flattenGraph())
        let batch = 16
        let x = UnsafeMutablePointer<Float>.allocate(capacity: batch * 6)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: batch * 4)
        defer { x.deallocate(); y.deallocate() }
        for i in 0..<(batch * 6) { x[i] = Float(i % 7) - 3 }
        var xp = UnsafePointer(x), yp = y
        func once(_ n: Int) throws {
            try withUnsafePointer(to: &xp) { i in
                try withUnsafePointer(to: &yp) { o in
                    try m.run(batch: n, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: UnsafeBufferPointer(start: o, count: 1))
                }
            }
        }
        try once(batch)
        guard let before = heapInUse() else { throw XCTSkip("mallinfo2 cannot see the allocator in use (other platform, or a sanitizer)") }
        for _ in 0..<200 { try once(batch) }
        for _ in 0..<20 { try once(batch / 2) }   // a smaller batch reuses the arena
        let after = heapInUse()
        XCTAssertEqual(after, before, "heap in use changed across runs at batch sizes seen before")
        XCTAssertEqual(m.compileCount, 1)
    }

    func testFixedBatchMustMatch() throws {
        let g = G(opset: 17)
        try input(g, "x", [1, 3])
        try g.addNode("relu", ReluOp.self, inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        XCTAssertEqual(m.fixedBatch, 1)
        XCTAssertEqual(try m.runArrays(batch: 1, [[-1, 0, 2]])[0], [0, 0, 2])
        do { _ = try m.runArrays(batch: 2, [[1, 2, 3, 4, 5, 6]]); XCTFail("batch 2 accepted") } catch {
            XCTAssertEqual(error.kind, .sizeMismatch)
            XCTAssertTrue(error.message.contains("1"), error.message)
        }
    }

    func testBuildErrorsNameTheNode() throws {
        func err(_ build: (G) throws -> Void) -> InLoopError? {
            let g = G(opset: 17)
            do {
                try input(g, "x", ["N", 4])
                try build(g)
                _ = try model(g)
                return nil
            } catch let e as InLoopError { return e } catch { return InLoopError(.internal, "\(error)") }
        }
        let undefined = err { g in try g.addNode("a", AddOp.self, inputs: ["x", "nope"], outputs: ["y"]); try g.markOutput("y") }
        XCTAssertTrue(undefined?.message.contains("'nope'") ?? false, undefined?.message ?? "accepted")
        let badReshape = err { g in
            try g.addConstant("s", try self.i([3, 5]))
            try g.addNode("rs", ReshapeOp.self, inputs: ["x", "s"], outputs: ["y"])
            try g.markOutput("y")
        }
        XCTAssertTrue(badReshape?.message.contains("'rs'") ?? false, badReshape?.message ?? "accepted")
        let badAxis = err { g in
            try g.addNode("sm", SoftmaxOp.self, ["axis": .int(7)], inputs: ["x"], outputs: ["y"])
            try g.markOutput("y")
        }
        XCTAssertTrue(badAxis?.message.contains("'sm'") ?? false, badAxis?.message ?? "accepted")
    }

    func testReproducibleModeIsBatchIndependent() throws {
        let m = try model(try flattenGraph())
        m.reproducible = true
        let x = seq(6 * 33, 0.37)
        let all = try m.runArrays(batch: 33, [x])[0]
        for s in [0, 16, 32] {
            let one = try m.runArrays(batch: 1, [Array(x[(s * 6)..<(s * 6 + 6)])])[0]
            XCTAssertEqual(one, Array(all[(s * 4)..<(s * 4 + 4)]), "sample \(s) bitwise")
        }
    }

    func testDoublePathAndCheckFinite() throws {
        let m = try model(try flattenGraph())
        let x = seq(12, 0.3)
        var y = [Double](repeating: 0, count: 8)
        let xd = x.map { Double($0) }
        try xd.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { yp in try m.forward(xp, batch: 2, into: yp) } }
        assertClose(y.map { Float($0) }, naiveFlattenGraph(x, batch: 2))
        m.checkFinite = true
        var bad = x
        bad[7] = .nan
        do { _ = try m.runArrays(batch: 2, [bad]); XCTFail("NaN accepted") } catch {
            XCTAssertEqual(error.kind, .nonFinite)
            XCTAssertTrue(error.message.contains("sample 2"), error.message)
        }
    }
}
