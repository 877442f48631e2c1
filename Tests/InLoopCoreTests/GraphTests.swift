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

/// Graph compiler tests on graphs built in Swift, checked against naive loops.
final class GraphTests: XCTestCase {
    func t(_ shape: [Int], _ values: [Float]) throws -> GraphConstant { .float(try Tensor(shape: shape, values: values)) }
    func n(_ name: String, _ op: Op, _ inputs: [String], _ outputs: [String]) -> Node {
        Node(name: name, opType: "\(op)".components(separatedBy: "(").first ?? "op", op: op, inputs: inputs, outputs: outputs)
    }
    func seq(_ count: Int, _ scale: Float = 0.1) -> [Float] { (0..<count).map { Float(($0 * 7919) % 23 - 11) * scale } }

    /// x (N, 2, 3) → view(N, -1) by the exporter's Shape → Gather → Unsqueeze → Concat → Reshape chain,
    /// then MatMul(W (6, 4)) + b → Relu.
    func flattenGraph() throws -> Graph {
        let w = seq(24), b: [Float] = [0.5, -0.25, 0, 1]
        return Graph(name: "chain", inputs: [GraphInput(name: "x", dims: [nil, 2, 3])], outputs: ["y"],
                     constants: ["W": try t([6, 4], w), "b": try t([4], b), "zero": .int(IntTensor(scalar: 0)),
                                 "minus1": .int(IntTensor([-1]))],
                     nodes: [n("shape", .shape(start: 0, end: nil), ["x"], ["s"]),
                             n("gather", .gather(axis: 0), ["s", "zero"], ["s0"]),
                             n("unsq", .unsqueeze(axes: [0]), ["s0"], ["s0u"]),
                             n("cat", .concat(axis: 0), ["s0u", "minus1"], ["target"]),
                             n("reshape", .reshape(allowZero: false), ["x", "target"], ["flat"]),
                             n("matmul", .matMul, ["flat", "W"], ["h"]),
                             n("bias", .binary(.add), ["h", "b"], ["hb"]),
                             n("relu", .activation(.relu), ["hb"], ["y"])])
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
        let m = try GraphModel(graph: try flattenGraph())
        XCTAssertEqual(m.inputSpecs, [TensorSpec(name: "x", shape: [2, 3])])
        XCTAssertEqual(m.outputSpecs, [TensorSpec(name: "y", shape: [4])])
        for batch in [1, 2, 5] {
            let s = try m.summary(batch: batch)
            XCTAssertEqual(s.steps, ["dense"], "batch \(batch): shape chain folded, reshape aliased, bias and relu fused")
            XCTAssertEqual(s.folded, 4, "Shape, Gather, Unsqueeze, Concat evaluated at compile time")
            XCTAssertEqual(s.aliased, 1)
            XCTAssertEqual(s.fused, 2)
            let x = seq(batch * 6, 0.3)
            assertClose(try m.run(batch: batch, [x])[0], naiveFlattenGraph(x, batch: batch), 1e-5, "batch \(batch)")
        }
    }

    func testNormalisationFusesIntoOneAffineStep() throws {
        let mean: [Float] = [1, 2, 3], std: [Float] = [2, 4, 0.5]
        let g = Graph(inputs: [GraphInput(name: "x", dims: [nil, 3])], outputs: ["y"],
                      constants: ["m": try t([3], mean), "s": try t([1, 3], std)],
                      nodes: [n("sub", .binary(.sub), ["x", "m"], ["c"]), n("div", .binary(.div), ["c", "s"], ["y"])])
        let m = try GraphModel(graph: g)
        XCTAssertEqual(try m.summary(batch: 4).steps, ["affine"])
        let x: [Float] = [1, 2, 3, 5, 6, 7, -1, 0, 1, 3, 2, 1]
        var want: [Float] = []
        for i in 0..<12 { want.append((x[i] - mean[i % 3]) / std[i % 3]) }
        assertClose(try m.run(batch: 4, [x])[0], want, 1e-6)
    }

    /// Conv1d (2 → 3 channels, k = 3, pad 1) → BatchNormalization → Relu: one conv step.
    func testBatchNormFoldsIntoConvAndReluFuses() throws {
        let cin = 2, cout = 3, len = 5, k = 3
        let w = seq(cout * cin * k), bias: [Float] = [0.1, -0.2, 0.3]
        let gamma: [Float] = [1.5, 0.5, -1], beta: [Float] = [0, 1, -1], mu: [Float] = [0.2, -0.1, 0], v: [Float] = [1, 4, 0.25]
        let eps: Float = 1e-5
        let g = Graph(inputs: [GraphInput(name: "x", dims: [nil, cin, len])], outputs: ["y"],
                      constants: ["W": try t([cout, cin, k], w), "B": try t([cout], bias), "g": try t([cout], gamma),
                                  "be": try t([cout], beta), "mu": try t([cout], mu), "v": try t([cout], v)],
                      nodes: [n("conv", .conv(ConvAttributes(pads: [1, 1])), ["x", "W", "B"], ["c"]),
                              n("bn", .batchNormalization(epsilon: eps), ["c", "g", "be", "mu", "v"], ["b"]),
                              n("relu", .activation(.relu), ["b"], ["y"])])
        let m = try GraphModel(graph: g)
        let s = try m.summary(batch: 3)
        XCTAssertEqual(s.steps, ["conv"])
        XCTAssertEqual(s.fused, 2)
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
        assertClose(try m.run(batch: batch, [x])[0], want, 1e-5)
    }

    func testNoFusionWhenIntermediateIsAlsoAnOutput() throws {
        var g = try flattenGraph()
        g.outputs = ["y", "h"]
        let m = try GraphModel(graph: g)
        let s = try m.summary(batch: 2)
        XCTAssertEqual(s.count("dense"), 1)
        XCTAssertEqual(s.fused, 0, "h is an output: bias and relu must stay separate")
        XCTAssertEqual(s.count("copy"), 0, "outputs are written straight into the caller's arrays")
        let x = seq(12, 0.3)
        let out = try m.run(batch: 2, [x])
        assertClose(out[0], naiveFlattenGraph(x, batch: 2))
        XCTAssertEqual(out[1].count, 8)
    }

    func testTransposeOfSizeOneAxesIsAnAlias() throws {
        let g = Graph(inputs: [GraphInput(name: "x", dims: [nil, 2, 3])], outputs: ["y", "z"],
                      constants: ["one": .int(IntTensor([1]))],
                      nodes: [n("unsq", .unsqueeze(axes: nil), ["x", "one"], ["x1"]),
                              n("t1", .transpose(perm: [0, 2, 1, 3]), ["x1"], ["y"]),
                              n("t2", .transpose(perm: [0, 2, 1]), ["x"], ["z"])])
        let m = try GraphModel(graph: g)
        XCTAssertEqual(m.outputSpecs.map { $0.shape }, [[2, 1, 3], [3, 2]])
        let s = try m.summary(batch: 3)
        XCTAssertEqual(s.aliased, 2, "Unsqueeze and a Transpose that moves only a size-1 axis")
        XCTAssertEqual(s.steps.sorted(), ["copy", "transpose"], "an output that aliases a graph input is copied")
        let x = seq(18)
        let out = try m.run(batch: 3, [x])
        XCTAssertEqual(out[0], x)
        var z = [Float](repeating: 0, count: 18)
        for b in 0..<3 { for i in 0..<2 { for j in 0..<3 { z[b * 6 + j * 2 + i] = x[b * 6 + i * 3 + j] } } }
        XCTAssertEqual(out[1], z)
    }

    func testPlanReuseAndBoundedCache() throws {
        let m = try GraphModel(graph: try flattenGraph(), maxCachedPlans: 4)
        XCTAssertEqual(m.compileCount, 2, "batch 1 and 2 compiled at load")
        _ = try m.run(batch: 7, [seq(42)])
        _ = try m.run(batch: 7, [seq(42)])
        _ = try m.run(batch: 1, [seq(6)])
        XCTAssertEqual(m.compileCount, 3, "batch 7 compiled once, batch 1 reused")
        for b in 3...6 { _ = try m.run(batch: b, [seq(6 * b)]) }
        XCTAssertEqual(m.cachedBatchSizes.count, 4)
        XCTAssertEqual(m.cachedBatchSizes.last, 6)
        XCTAssertFalse(m.cachedBatchSizes.contains(7), "least recently used plan dropped")
        let x = seq(42, 0.3)
        assertClose(try m.run(batch: 7, [x])[0], naiveFlattenGraph(x, batch: 7), 1e-5, "recompiled plan")
    }

    func testRepeatedRunsDoNotAllocate() throws {
        let m = try GraphModel(graph: try flattenGraph())
        let batch = 16
        let x = UnsafeMutablePointer<Float>.allocate(capacity: batch * 6)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: batch * 4)
        defer { x.deallocate(); y.deallocate() }
        for i in 0..<(batch * 6) { x[i] = Float(i % 7) - 3 }
        var xp = UnsafePointer(x), yp = y
        func once() throws {
            try withUnsafePointer(to: &xp) { i in
                try withUnsafePointer(to: &yp) { o in
                    try m.run(batch: batch, inputs: UnsafeBufferPointer(start: i, count: 1), outputs: UnsafeBufferPointer(start: o, count: 1))
                }
            }
        }
        try once()
        let workspace = m.workspaceFloats
        guard let before = heapInUse() else { throw XCTSkip("mallinfo2 cannot see the allocator in use (other platform, or a sanitizer)") }
        for _ in 0..<200 { try once() }
        let after = heapInUse()
        XCTAssertEqual(after, before, "heap in use changed across 200 runs at one batch size")
        XCTAssertEqual(m.workspaceFloats, workspace)
        XCTAssertEqual(m.compileCount, 3)
        _ = try m.run(batch: 5, [seq(30)])  // a new batch size compiles, and allocates
        XCTAssertNotEqual(heapInUse(), after, "the heap probe sees allocations")
    }

    func testFixedBatchMustMatch() throws {
        let g = Graph(inputs: [GraphInput(name: "x", dims: [1, 3])], outputs: ["y"],
                      nodes: [n("relu", .activation(.relu), ["x"], ["y"])])
        let m = try GraphModel(graph: g)
        XCTAssertEqual(m.fixedBatch, 1)
        XCTAssertEqual(try m.run(batch: 1, [[-1, 0, 2]])[0], [0, 0, 2])
        do { _ = try m.run(batch: 2, [[1, 2, 3, 4, 5, 6]]); XCTFail("batch 2 accepted") } catch {
            XCTAssertEqual(error.kind, .sizeMismatch)
            XCTAssertTrue(error.message.contains("fixed batch size of 1"), error.message)
        }
    }

    func testLoadErrorsNameTheNode() {
        func err(_ g: Graph) -> InLoopError? { do { _ = try GraphModel(graph: g); return nil } catch { return error } }
        let x = GraphInput(name: "x", dims: [nil, 4])
        let cycle = Graph(inputs: [x], outputs: ["y"], nodes: [n("a", .binary(.add), ["x", "c"], ["b"]),
                                                               n("b2", .activation(.tanh), ["b"], ["c"]),
                                                               n("out", .identity, ["c"], ["y"])])
        XCTAssertEqual(err(cycle)?.kind, .format)
        XCTAssertTrue(err(cycle)?.message.contains("cycle") ?? false)
        let undefined = Graph(inputs: [x], outputs: ["y"], nodes: [n("a", .binary(.add), ["x", "nope"], ["y"])])
        XCTAssertTrue(err(undefined)?.message.contains("'nope'") ?? false)
        let runtimeInt = Graph(inputs: [x], outputs: ["y"], nodes: [n("cast", .cast(to: .int), ["x"], ["y"])])
        XCTAssertEqual(err(runtimeInt)?.kind, .unsupported)
        XCTAssertTrue(err(runtimeInt)?.message.contains("node 'cast'") ?? false, err(runtimeInt)?.message ?? "")
        let badReshape = Graph(inputs: [x], outputs: ["y"], constants: ["s": .int(IntTensor([3, 5]))],
                               nodes: [n("rs", .reshape(allowZero: false), ["x", "s"], ["y"])])
        XCTAssertEqual(err(badReshape)?.kind, .format)
        XCTAssertTrue(err(badReshape)?.message.contains("node 'rs'") ?? false)
        let noBatch = Graph(inputs: [x], outputs: ["y"], constants: ["c": .float((try? Tensor(shape: [2], values: [1, 2]))!)],
                            nodes: [n("id", .identity, ["c"], ["y"])])
        XCTAssertEqual(err(noBatch)?.kind, .unsupported)
    }

    func testReproducibleModeIsBatchIndependent() throws {
        let m = try GraphModel(graph: try flattenGraph())
        m.reproducible = true
        let x = seq(6 * 33, 0.37)
        let all = try m.run(batch: 33, [x])[0]
        for s in [0, 16, 32] {
            let one = try m.run(batch: 1, [Array(x[(s * 6)..<(s * 6 + 6)])])[0]
            XCTAssertEqual(one, Array(all[(s * 4)..<(s * 4 + 4)]), "sample \(s) bitwise")
        }
    }

    func testDoublePathAndCheckFinite() throws {
        let m = try GraphModel(graph: try flattenGraph())
        let x = seq(12, 0.3)
        var y = [Double](repeating: 0, count: 8)
        let xd = x.map { Double($0) }
        try xd.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { yp in try m.forward(xp, batch: 2, into: yp) } }
        assertClose(y.map { Float($0) }, naiveFlattenGraph(x, batch: 2))
        m.checkFinite = true
        var bad = x
        bad[7] = .nan
        do { _ = try m.run(batch: 2, [bad]); XCTFail("NaN accepted") } catch {
            XCTAssertEqual(error.kind, .nonFinite)
            XCTAssertTrue(error.message.contains("sample 2"), error.message)
        }
    }
}
