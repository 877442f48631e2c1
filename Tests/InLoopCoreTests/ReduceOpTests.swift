import XCTest
@testable import InLoopCore

/// Reductions, ArgMax/ArgMin, Pad and Einsum on the one engine (issue 10, phase 6): forward against
/// naive loops in Double (Float and Double executors, inference and differentiable plans, batch 1 and
/// 4 through one plan), float64 finite-difference checks of the reverse and tangent passes, and errors.
final class ReduceOpTests: XCTestCase {
    typealias G = Engine.Graph

    // MARK: - helpers

    static func unravel(_ i: Int, _ shape: [Int]) -> [Int] {
        var idx = [Int](repeating: 0, count: shape.count), r = i
        for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = r % shape[d]; r /= shape[d] }
        return idx
    }

    static func ravel(_ idx: [Int], _ shape: [Int]) -> Int {
        var off = 0
        for d in shape.indices { off = off * shape[d] + idx[d] }
        return off
    }

    static func graph(opset: Int = 17, _ inputs: [(String, [Any])]) throws -> G {
        let g = G(dtype: .float64, opset: opset)
        for (name, dims) in inputs { try g.addInput(name, Engine.TensorType(.float64, OpTest.shape(g, dims))) }
        return g
    }

    static func ints(_ g: G, _ name: String, _ v: [Int]) throws {
        try g.addConstant(name, try Engine.Tensor(shape: [v.count], values: v.map { Int64($0) }))
    }

    static func finish(_ g: G, _ outputs: [String]) throws -> G {
        for o in outputs { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// Runs `g` at batch 1 and 4 through one plan per (scalar type, numerics) and compares every output
    /// with `reference` (relative error against max(1, |reference|)).
    func checkForward(_ g: G, sizes: (Int) -> [Int], inputs: ((Int, Int, Int) -> [Double])? = nil, tolerance: Double = 1e-5,
                      _ reference: (Int, [[Double]]) -> [[Double]], file: StaticString = #filePath, line: UInt = #line) throws {
        func run<T: EngineScalar>(_: T.Type, _ numerics: Numerics) throws {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 4] {
                let x = sizes(n).enumerated().map { inputs?($0.offset, $0.element, n)
                    ?? OpTest.values($0.element, seed: UInt64(7 + $0.offset), as: Double.self) }
                // the reference sees the values the executor sees (rounded to T)
                let xt = x.map { $0.map { Double(T($0)) } }
                let y = try h.forward(x.map { $0.map { T($0) } }, n: n)
                let want = reference(n, xt)
                XCTAssertEqual(y.count, want.count, file: file, line: line)
                for (k, (got, w)) in zip(y, want).enumerated() {
                    XCTAssertEqual(got.count, w.count, "output \(k) at n = \(n) (\(T.self), \(numerics))", file: file, line: line)
                    guard got.count == w.count else { continue }
                    let err = OpTest.maxRelativeError(got.map { Double($0) }, w)
                    let tol = T.self == Float.self ? tolerance : 1e-12
                    XCTAssertLessThanOrEqual(err, tol, "output \(k) at n = \(n) (\(T.self), \(numerics))", file: file, line: line)
                }
            }
        }
        for numerics in [Numerics.inference, .differentiable] {
            try run(Float.self, numerics)
            try run(Double.self, numerics)
        }
    }

    func assertThrows(_ what: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("\(what): no error", file: file, line: line)
        } catch let e as InLoopError {
            XCTAssertFalse(e.message.isEmpty, file: file, line: line)
        } catch {
            XCTFail("\(what): \(error)", file: file, line: line)
        }
    }

    /// y = f over the `axes` of x (shape), naive: every x element goes to its output position.
    static func naiveReduce(_ x: [Double], _ shape: [Int], axes: [Int], _ f: ([Double]) -> Double) -> [Double] {
        let outShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        var groups = [[Double]](repeating: [], count: outShape.reduce(1, *))
        for i in x.indices {
            var idx = unravel(i, shape)
            for a in axes { idx[a] = 0 }
            groups[ravel(idx, outShape)].append(x[i])
        }
        return groups.map(f)
    }

    static var reductions: [(op: any OpDefinition.Type, f: ([Double]) -> Double)] { [
        (ReduceSumOp.self, { $0.reduce(0, +) }),
        (ReduceMeanOp.self, { $0.reduce(0, +) / Double($0.count) }),
        (ReduceMaxOp.self, { $0.max()! }),
        (ReduceMinOp.self, { $0.min()! }),
        (ReduceProdOp.self, { $0.reduce(1, *) }),
        (ReduceSumSquareOp.self, { $0.reduce(0) { $0 + $1 * $1 } }),
        (ReduceL1Op.self, { $0.reduce(0) { $0 + abs($1) } }),
        (ReduceL2Op.self, { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }),
        (ReduceLogSumOp.self, { log($0.reduce(0, +)) }),
        (ReduceLogSumExpOp.self, { xs in let m = xs.max()!; return m + log(xs.reduce(0) { $0 + exp($1 - m) }) }),
    ] }

    /// A one-node reduction graph over x [N, 3, 4]; axes as attribute (opset 13) or input (opset 18).
    static func reduceGraph(_ op: any OpDefinition.Type, axes: [Int]?, keepDims: Bool, opset: Int,
                            noop: Bool = false, dims: [Any] = ["N", 3, 4]) throws -> G {
        let g = try graph(opset: opset, [("x", dims)])
        var raw: [String: Engine.AttributeValue] = ["keepdims": .int(keepDims ? 1 : 0)]
        if noop { raw["noop_with_empty_axes"] = .int(1) }
        var inputs = ["x"]
        let asInput = opset >= (op == ReduceSumOp.self ? 13 : 18)
        if let axes {
            if asInput { try ints(g, "axes", axes); inputs.append("axes") } else { raw["axes"] = .ints(axes) }
        }
        try g.addNode("r", op, raw, inputs: inputs, outputs: ["y"])
        return try finish(g, ["y"])
    }

    // MARK: - Reductions

    func testReductionsForwardOverEveryAxisPattern() throws {
        // positive inputs keep ReduceLogSum defined; the values differ, so max/min have no ties
        let positive: (Int, Int, Int) -> [Double] = { k, count, _ in OpTest.values(count, seed: UInt64(11 + k), in: 0.2...2) }
        for (op, f) in Self.reductions {
            for (axes, keep) in [([1], true), ([0, 2], false), ([-1], false), ([0], true), (nil, false), ([1, 2], true)] as [([Int]?, Bool)] {
                for opset in [13, 18] {
                    let g = try Self.reduceGraph(op, axes: axes, keepDims: keep, opset: opset)
                    let norm = (axes ?? [0, 1, 2]).map { $0 < 0 ? $0 + 3 : $0 }
                    let want = Engine.reducedShape(OpTest.shape(g, ["N", 3, 4]), axes: norm, keepDims: keep)
                    XCTAssertEqual(g[g.outputs[0]].type?.shape, want, "\(op.name) axes \(String(describing: axes))")
                    try checkForward(g, sizes: { [$0 * 12] }, inputs: positive) { n, x in
                        [Self.naiveReduce(x[0], [n, 3, 4], axes: norm, f)]
                    }
                }
            }
        }
    }

    /// The row-by-row loop (inner > 1) combines each element in the order of the axis, as a plain loop
    /// in T does: the same bits.
    func testReduceKernelRowsAreBitwiseTheElementOrder() {
        func check<T: EngineScalar>(_: T.Type) {
            let (outer, length, inner) = (2, 5, 3)
            let x: [T] = OpTest.values(outer * length * inner, seed: 21, in: -2...2)
            let cases: [(ReduceFunction, T, (T, T) -> T)] = [
                (.sum, 0, { $0 + $1 }), (.mean, 0, { $0 + $1 }), (.sumSquare, 0, { $0 + $1 * $1 }), (.sumAbs, 0, { $0 + abs($1) }),
                (.prod, 1, { $0 * $1 }), (.max, -.infinity, { Swift.max($0, $1) }), (.min, .infinity, { Swift.min($0, $1) }),
            ]
            for (f, start, step) in cases {
                var y = [T](repeating: .nan, count: outer * inner)
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { ReduceKernels.forward(f, x: xp.baseAddress!, y: $0.baseAddress!, outer: outer, length: length, inner: inner) }
                }
                for o in 0..<outer {
                    for i in 0..<inner {
                        var acc = start
                        for l in 0..<length { acc = step(acc, x[(o * length + l) * inner + i]) }
                        if f == .mean { acc /= T(length) }
                        XCTAssertEqual(y[o * inner + i], acc, "\(f) \(T.self)")
                    }
                }
            }
        }
        check(Float.self)
        check(Double.self)
    }

    func testReductionsOfSizeOneAxesAndScalars() throws {
        // reducing only an axis of size 1: the element-wise part still applies (x² for SumSquare)
        let g = try Self.reduceGraph(ReduceSumSquareOp.self, axes: [1], keepDims: false, opset: 13, dims: ["N", 1, 3])
        try checkForward(g, sizes: { [$0 * 3] }) { _, x in [x[0].map { $0 * $0 }] }
        let h = try Self.reduceGraph(ReduceMeanOp.self, axes: [2], keepDims: true, opset: 13, dims: [2, "N", 1])
        try checkForward(h, sizes: { [$0 * 2] }) { _, x in [x[0]] }
        // a reduction over every axis, the batch included, to a scalar
        let s = try Self.reduceGraph(ReduceMeanOp.self, axes: nil, keepDims: false, opset: 18, dims: ["N", 2])
        XCTAssertEqual(s[s.outputs[0]].type?.shape, [])
        try checkForward(s, sizes: { [$0 * 2] }) { _, x in [[x[0].reduce(0, +) / Double(x[0].count)]] }
    }

    func testNoopWithEmptyAxes() throws {
        for noop in [true, false] {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try Self.ints(g, "axes", [])
            try g.addNode("r", ReduceMaxOp.self, ["noop_with_empty_axes": .int(noop ? 1 : 0), "keepdims": .int(0)], inputs: ["x", "axes"], outputs: ["y"])
            _ = try Self.finish(g, ["y"])
            try checkForward(g, sizes: { [$0 * 3] }) { _, x in [noop ? x[0] : [x[0].max()!]] }
        }
    }

    func testReductionGradients() throws {
        for (op, _) in Self.reductions {
            for axes in [[0, 2], [1]] {
                let g = try Self.reduceGraph(op, axes: axes, keepDims: axes.count == 1, opset: 13)
                // distinct positive inputs: no max/min ties, ReduceLogSum defined, no zero in the product
                let x = [OpTest.values(24, seed: 5, in: 0.3...1.7, as: Double.self)]
                try OpTest.checkGradients(g, n: 2, inputs: x, tolerance: 1e-6)
            }
        }
        // L1 across zero crossings (signs), ReduceProd with a zero (its derivative is the others' product)
        let g = try Self.reduceGraph(ReduceL1Op.self, axes: [2], keepDims: false, opset: 13)
        try OpTest.checkGradients(g, n: 2)
        let p = try Self.reduceGraph(ReduceProdOp.self, axes: [2], keepDims: false, opset: 13)
        var x = OpTest.values(24, seed: 9, in: 0.5...1.5, as: Double.self)
        x[1] = 0
        try OpTest.checkGradients(p, n: 2, inputs: [x])
    }

    func testReduceMaxGradientGoesToTheFirstMaximum() throws {
        let g = try Self.reduceGraph(ReduceMaxOp.self, axes: [1], keepDims: false, opset: 13, dims: ["N", 4])
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        let y = try h.forward([[1, 3, 3, 2, -1, -1, -1, -1]], n: 2)
        XCTAssertEqual(y[0], [3, -1])
        let (gx, _) = try h.backward(seeds: [[2, 5]], n: 2)
        XCTAssertEqual(gx[0], [0, 2, 0, 0, 5, 0, 0, 0])
    }

    func testReduceProdOfShapesIsKnownAtCompileTime() throws {
        let g = try Self.graph(opset: 13, [("x", ["N", 3, 4])])
        try g.addNode("s", ShapeOp.self, inputs: ["x"], outputs: ["shape"])
        try g.addNode("p", ReduceProdOp.self, ["keepdims": .int(1)], inputs: ["shape"], outputs: ["count"])
        try g.addNode("r", ReshapeOp.self, inputs: ["x", "count"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        XCTAssertEqual(g[g.outputs[0]].type?.shape, [Engine.SymInt(12, g.batch!)])
        try checkForward(g, sizes: { [$0 * 12] }) { _, x in [x[0]] }
    }

    func testReductionErrors() throws {
        assertThrows("keepdims 2") {
            let g = try Self.graph(opset: 13, [("x", ["N", 3])])
            try g.addNode("r", ReduceMeanOp.self, ["keepdims": .int(2)], inputs: ["x"], outputs: ["y"]) }
        assertThrows("axis out of range") { _ = try Self.reduceGraph(ReduceMeanOp.self, axes: [3], keepDims: true, opset: 13) }
        assertThrows("axis repeated") { _ = try Self.reduceGraph(ReduceMeanOp.self, axes: [1, -2], keepDims: true, opset: 13) }
        assertThrows("axes attribute at opset 18") {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try g.addNode("r", ReduceMeanOp.self, ["axes": .ints([1])], inputs: ["x"], outputs: ["y"])
        }
        assertThrows("noop_with_empty_axes at opset 13") { _ = try Self.reduceGraph(ReduceMaxOp.self, axes: nil, keepDims: true, opset: 13, noop: true) }
        assertThrows("axes only known at run time") {
            let g = G(dtype: .float64, opset: 18)
            try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 3])))
            try g.addInput("axes", Engine.TensorType(.int64, [1]))
            try g.addNode("r", ReduceMeanOp.self, inputs: ["x", "axes"], outputs: ["y"])
            _ = try Self.finish(g, ["y"])
        }
    }

    // MARK: - ArgMax, ArgMin

    func testArgMaxArgMinWithTiesAndEitherEnd() throws {
        // integer-valued inputs make ties
        let tied: (Int, Int, Int) -> [Double] = { _, count, _ in OpTest.values(count, seed: 3, in: 0...3, as: Double.self).map { $0.rounded(.down) } }
        for isMax in [true, false] {
            for last in [false, true] {
                for (axis, keep) in [(1, true), (0, false), (-1, false)] {
                    let g = try Self.graph(opset: 13, [("x", ["N", 4, 3])])
                    try g.addNode("a", isMax ? ArgMaxOp.self : ArgMinOp.self,
                                  ["axis": .int(axis), "keepdims": .int(keep ? 1 : 0), "select_last_index": .int(last ? 1 : 0)],
                                  inputs: ["x"], outputs: ["i"])
                    _ = try Self.finish(g, ["i"])
                    XCTAssertEqual(g[g.outputs[0]].type?.dtype, .int64)
                    let a = axis < 0 ? axis + 3 : axis
                    try checkForward(g, sizes: { [$0 * 12] }, inputs: tied, tolerance: 0) { n, x in
                        let shape = [n, 4, 3]
                        var out: [Double] = []
                        let outShape = shape.enumerated().map { $0.offset == a ? 1 : $0.element }
                        for o in 0..<outShape.reduce(1, *) {
                            var idx = Self.unravel(o, outShape)
                            var best = 0, bestValue = isMax ? -Double.infinity : Double.infinity
                            for l in 0..<shape[a] {
                                idx[a] = l
                                let v = x[0][Self.ravel(idx, shape)]
                                let better = isMax ? (last ? v >= bestValue : v > bestValue) : (last ? v <= bestValue : v < bestValue)
                                if better { best = l; bestValue = v }
                            }
                            out.append(Double(best))
                        }
                        return [out]
                    }
                }
            }
        }
        // an index has no gradient: a differentiable plan of it compiles and its tangent is zero
        let g = try Self.graph(opset: 13, [("x", ["N", 3])])
        try g.addNode("a", ArgMaxOp.self, ["axis": .int(1)], inputs: ["x"], outputs: ["i"])
        _ = try Self.finish(g, ["i"])
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        _ = try h.forward([[1, 2, 3]], n: 1)
        XCTAssertEqual(try h.tangent([[1, 1, 1]], n: 1)[0], [0])
        XCTAssertEqual(try h.backward(seeds: [[1]], n: 1).inputs[0], [0, 0, 0])
    }

    func testArgMaxErrors() throws {
        assertThrows("select_last_index 2") {
            let g = try Self.graph(opset: 13, [("x", ["N", 3])])
            try g.addNode("a", ArgMaxOp.self, ["select_last_index": .int(2)], inputs: ["x"], outputs: ["i"])
        }
        assertThrows("axis out of range") {
            let g = try Self.graph(opset: 13, [("x", ["N", 3])])
            try g.addNode("a", ArgMinOp.self, ["axis": .int(2)], inputs: ["x"], outputs: ["i"])
            _ = try Self.finish(g, ["i"])
        }
    }

    // MARK: - Pad

    /// Pad in Double from the operator's definition (numpy.pad's modes; negative pads crop).
    static func naivePad(_ x: [Double], _ shape: [Int], _ pads: [(Int, Int)], mode: String, value: Double) -> [Double] {
        let outShape = shape.indices.map { shape[$0] + pads[$0].0 + pads[$0].1 }
        return (0..<outShape.reduce(1, *)).map { o in
            var idx = unravel(o, outShape)
            for d in shape.indices {
                var i = idx[d] - pads[d].0
                let n = shape[d]
                if i < 0 || i >= n {
                    switch mode {
                    case "constant": return value
                    case "edge": i = i < 0 ? 0 : n - 1
                    case "wrap": while i < 0 { i += n }; i %= n
                    default: // reflect: bounce off the ends
                        if n == 1 { i = 0 } else { while i < 0 || i >= n { i = i < 0 ? -i : 2 * (n - 1) - i } }
                    }
                }
                idx[d] = i
            }
            return x[ravel(idx, shape)]
        }
    }

    func testPadModes() throws {
        for mode in ["constant", "reflect", "edge", "wrap"] {
            for (pads, axes) in [([0, 1, 2, 0, 2, 1], nil), ([2, -1, 1, 3], [1, 2]), ([1, 1], [-1])] as [([Int], [Int]?)] {
                let g = try Self.graph(opset: 19, [("x", ["N", 3, 4])])
                try Self.ints(g, "pads", pads)
                var inputs = ["x", "pads"]
                if mode == "constant" { try g.addConstant("v", try Engine.Tensor(shape: [], values: [1.5])); inputs.append("v") }
                if let axes { try Self.ints(g, "axes", axes); inputs += mode == "constant" ? ["axes"] : ["", "axes"] }
                try g.addNode("p", PadOp.self, ["mode": .string(mode)], inputs: inputs, outputs: ["y"])
                _ = try Self.finish(g, ["y"])
                let axs = (axes ?? [0, 1, 2]).map { $0 < 0 ? $0 + 3 : $0 }
                var pp = [(Int, Int)](repeating: (0, 0), count: 3)
                for (i, a) in axs.enumerated() { pp[a] = (pads[i], pads[i + axs.count]) }
                try checkForward(g, sizes: { [$0 * 12] }, tolerance: 0) { n, x in
                    [Self.naivePad(x[0], [n, 3, 4], pp, mode: mode, value: 1.5)]
                }
            }
        }
    }

    func testPadAttributeFormAndRuntimeConstant() throws {
        // opset 2: pads and value as attributes
        let g = try Self.graph(opset: 2, [("x", ["N", 2, 3])])
        try g.addNode("p", PadOp.self, ["pads": .ints([0, 1, 1, 0, 0, 2]), "value": .float(-2)], inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        try checkForward(g, sizes: { [$0 * 6] }, tolerance: 0) { n, x in
            [Self.naivePad(x[0], [n, 2, 3], [(0, 0), (1, 0), (1, 2)], mode: "constant", value: -2)]
        }
        try OpTest.checkGradients(g, n: 2)
        // the constant as a graph input: it gets a gradient (the sum over the padded positions)
        let h = try Self.graph(opset: 18, [("x", ["N", 2, 3]), ("v", [])])
        try Self.ints(h, "pads", [0, 0, 1, 0, 2, 0])
        try h.addNode("p", PadOp.self, inputs: ["x", "pads", "v"], outputs: ["y"])
        _ = try Self.finish(h, ["y"])
        try checkForward(h, sizes: { [$0 * 6, 1] }, tolerance: 0) { n, x in
            [Self.naivePad(x[0], [n, 2, 3], [(0, 0), (0, 2), (1, 0)], mode: "constant", value: x[1][0])]
        }
        try OpTest.checkGradients(h, n: 2)
    }

    func testPadGradients() throws {
        for mode in ["reflect", "edge", "wrap"] {
            let g = try Self.graph(opset: 19, [("x", ["N", 3, 4])])
            try Self.ints(g, "pads", [0, 2, 1, 0, 1, 3])
            try g.addNode("p", PadOp.self, ["mode": .string(mode)], inputs: ["x", "pads"], outputs: ["y"])
            try OpTest.checkGradients(try Self.finish(g, ["y"]), n: 2)
        }
        // cropping (negative pads)
        let g = try Self.graph(opset: 18, [("x", ["N", 5])])
        try Self.ints(g, "pads", [0, -1, 0, 2])
        try g.addNode("p", PadOp.self, inputs: ["x", "pads"], outputs: ["y"])
        try OpTest.checkGradients(try Self.finish(g, ["y"]), n: 2)
    }

    func testPadErrors() throws {
        assertThrows("unknown mode") {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try g.addNode("p", PadOp.self, ["mode": .string("mirror")], inputs: ["x"], outputs: ["y"])
        }
        assertThrows("wrap before opset 19") {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try g.addNode("p", PadOp.self, ["mode": .string("wrap")], inputs: ["x"], outputs: ["y"])
        }
        assertThrows("pads of the wrong length") {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try Self.ints(g, "pads", [0, 1, 1])
            try g.addNode("p", PadOp.self, inputs: ["x", "pads"], outputs: ["y"])
            _ = try Self.finish(g, ["y"])
        }
        assertThrows("cropping more than the axis") {
            let g = try Self.graph(opset: 18, [("x", ["N", 3])])
            try Self.ints(g, "pads", [0, -2, 0, -2])
            try g.addNode("p", PadOp.self, inputs: ["x", "pads"], outputs: ["y"])
            _ = try Self.finish(g, ["y"])
        }
        assertThrows("pads only known at run time") {
            let g = G(dtype: .float64, opset: 18)
            try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 3])))
            try g.addInput("pads", Engine.TensorType(.int64, [4]))
            try g.addNode("p", PadOp.self, inputs: ["x", "pads"], outputs: ["y"])
            _ = try Self.finish(g, ["y"])
        }
    }

    // MARK: - Einsum

    /// Einsum in Double by its definition: every assignment of the letters, products summed.
    static func naiveEinsum(_ equation: String, _ xs: [[Double]], _ shapes: [[Int]]) -> [Double] {
        let sides = equation.components(separatedBy: "->")
        let terms = sides[0].split(separator: ",").map { Array($0) }
        let out = Array(sides[1])
        var size: [Character: Int] = [:]
        for (t, s) in zip(terms, shapes) { for (c, d) in zip(t, s) { size[c] = d } }
        let letters = Array(size.keys).sorted()
        let outShape = out.map { size[$0]! }
        var y = [Double](repeating: 0, count: outShape.reduce(1, *))
        let total = letters.map { size[$0]! }
        for i in 0..<total.reduce(1, *) {
            let idx = unravel(i, total)
            func at(_ c: Character) -> Int { idx[letters.firstIndex(of: c)!] }
            var p = 1.0
            for (k, t) in terms.enumerated() { p *= xs[k][ravel(t.map(at), shapes[k])] }
            y[ravel(out.map(at), outShape)] += p
        }
        return y
    }

    func testEinsumEquationsTorchEmits() throws {
        let cases: [(String, [[Any]])] = [
            ("bij,bjk->bik", [["N", 2, 3], ["N", 3, 4]]),
            ("bhqd,bhkd->bhqk", [["N", 2, 3, 4], ["N", 2, 5, 4]]),
            ("ij->ji", [["N", 3]]),
            ("ij->i", [["N", 3]]),
            ("ij->", [["N", 3]]),
            ("bij,jk->bik", [["N", 2, 3], [3, 4]]),
            ("i,j->ij", [["N"], [3]]),
            ("nc,nc->n", [["N", 3], ["N", 3]]),
            ("ijk,jil->kl", [[2, "N", 3], ["N", 2, 4]]),
            ("bik,bjk->bji", [["N", 2, 3], ["N", 4, 3]]),
            ("ij,kj->ikj", [["N", 3], [2, 3]]),
            ("abc,c->ba", [["N", 2, 3], [3]]),
            ("bii->bi", [["N", 3, 3]]),
            ("ii->", [[3, 3]]),
            ("nii,ij->nj", [["N", 3, 3], [3, 2]]),
        ]
        for (equation, dims) in cases {
            let g = try Self.graph(opset: 12, dims.enumerated().map { ("x\($0.offset)", $0.element) })
            try g.addNode("e", EinsumOp.self, ["equation": .string(equation)], inputs: dims.indices.map { "x\($0)" }, outputs: ["y"])
            _ = try Self.finish(g, ["y"])
            func concrete(_ d: [Any], _ n: Int) -> [Int] { d.map { ($0 as? Int) ?? n } }
            try checkForward(g, sizes: { n in dims.map { concrete($0, n).reduce(1, *) } }) { n, x in
                [Self.naiveEinsum(equation, x, dims.map { concrete($0, n) })]
            }
            try OpTest.checkGradients(g, n: 2)
        }
    }

    func testEinsumImplicitOutputAndEllipsis() throws {
        let g = try Self.graph(opset: 12, [("a", ["N", 3]), ("b", [3, 2])])
        try g.addNode("e", EinsumOp.self, ["equation": .string("ij,jk")], inputs: ["a", "b"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        try checkForward(g, sizes: { [$0 * 3, 6] }) { n, x in [Self.naiveEinsum("ij,jk->ik", x, [[n, 3], [3, 2]])] }
        let h = try Self.graph(opset: 12, [("a", ["N", 2, 3, 4]), ("b", ["N", 2, 4, 2])])
        try h.addNode("e", EinsumOp.self, ["equation": .string("...ij,...jk->...ik")], inputs: ["a", "b"], outputs: ["y"])
        _ = try Self.finish(h, ["y"])
        try checkForward(h, sizes: { [$0 * 24, $0 * 16] }) { n, x in
            [Self.naiveEinsum("abij,abjk->abik", x, [[n, 2, 3, 4], [n, 2, 4, 2]])]
        }
    }

    func testEinsumErrors() throws {
        func make(_ equation: String, _ dims: [[Any]]) throws {
            let g = try Self.graph(opset: 12, dims.enumerated().map { ("x\($0.offset)", $0.element) })
            try g.addNode("e", EinsumOp.self, ["equation": .string(equation)], inputs: dims.indices.map { "x\($0)" }, outputs: ["y"])
            _ = try Self.finish(g, ["y"])
        }
        assertThrows("sizes that differ") { try make("ij,jk->ik", [["N", 3], [4, 2]]) }
        assertThrows("a bad character") { try make("i1,jk->ik", [["N", 3], [3, 2]]) }
        assertThrows("an output letter in no operand") { try make("ij,jk->iz", [["N", 3], [3, 2]]) }
        assertThrows("wrong number of letters") { try make("ijk,jk->ik", [["N", 3], [3, 2]]) }
        assertThrows("operand count") { try make("ij,jk,kl->il", [["N", 3], [3, 2]]) }
        assertThrows("two arrows") { try make("ij->j->i", [["N", 3]]) }
    }
}
