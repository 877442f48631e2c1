import XCTest
@testable import InLoopCore

/// The shape and layout ops of the one engine (issue 10, phase 3.2): forward against naive index
/// loops in Double (Float and Double executors, inference and differentiable plans, batch 1 and 5
/// through one plan), float64 finite-difference checks of the reverse and tangent passes, and errors.
final class ShapeLayoutOpTests: XCTestCase {
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

    /// y[i] = x[map(index of i in outShape)], row-major, in Double.
    static func naive(_ x: [Double], _ xShape: [Int], _ outShape: [Int], _ map: ([Int]) -> [Int]) -> [Double] {
        let n = outShape.reduce(1, *)
        return (0..<n).map { x[ravel(map(unravel($0, outShape)), xShape)] }
    }

    /// ONNX Slice's indices along one axis, from the operator's definition.
    static func sliceIndices(dim: Int, start: Int, end: Int, step: Int) -> [Int] {
        var s = start, e = end
        if s < 0 { s += dim }
        if e < 0 { e += dim }
        if step > 0 {
            s = min(max(s, 0), dim); e = min(max(e, 0), dim)
            return Array(stride(from: s, to: e, by: step))
        }
        s = min(max(s, 0), dim - 1); e = min(max(e, -1), dim - 1)
        return Array(stride(from: s, to: e, by: step))
    }

    static func graph(opset: Int = 17, _ inputs: [(String, [Any])]) throws -> G {
        let g = G(dtype: .float64, opset: opset)
        for (name, dims) in inputs { try g.addInput(name, Engine.TensorType(.float64, OpTest.shape(g, dims))) }
        return g
    }

    static func ints(_ g: G, _ name: String, _ v: [Int], shape: [Int]? = nil) throws {
        try g.addConstant(name, try Engine.Tensor(shape: shape ?? [v.count], values: v.map { Int64($0) }))
    }

    static func finish(_ g: G, _ outputs: [String]) throws -> G {
        for o in outputs { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// Runs `g` at batch 1 and 5 through one plan per (scalar type, numerics) and compares every output
    /// with `reference` (data moves are exact).
    func checkForward(_ g: G, sizes: (Int) -> [Int], tolerance: Double = 0,
                      _ reference: (Int, [[Double]]) -> [[Double]], file: StaticString = #filePath, line: UInt = #line) throws {
        func run<T: EngineScalar>(_: T.Type, _ numerics: Numerics) throws {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5] {
                let x = sizes(n).enumerated().map { OpTest.values($0.element, seed: UInt64(7 + $0.offset), as: Double.self) }
                let y = try h.forward(x.map { $0.map { T($0) } }, n: n)
                let want = reference(n, x)
                XCTAssertEqual(y.count, want.count, file: file, line: line)
                for (k, (got, w)) in zip(y, want).enumerated() {
                    XCTAssertEqual(got.count, w.count, "output \(k) at n = \(n) (\(T.self), \(numerics))", file: file, line: line)
                    guard got.count == w.count else { continue }
                    let err = OpTest.maxRelativeError(got, w.map { T($0) })
                    XCTAssertLessThanOrEqual(err, tolerance, "output \(k) at n = \(n) (\(T.self), \(numerics))", file: file, line: line)
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

    // MARK: - Transpose

    func testTransposeMovesTheBatchAxis() throws {
        func make() throws -> G {
            let g = try Self.graph([("x", ["N", 3, 4])])
            try g.addNode("t", TransposeOp.self, ["perm": .ints([2, 0, 1])], inputs: ["x"], outputs: ["y"])
            try g.addNode("r", TransposeOp.self, inputs: ["x"], outputs: ["z"])   // default: reversed
            return try Self.finish(g, ["y", "z"])
        }
        let g = try make()
        XCTAssertEqual(g[g.outputs[0]].type?.shape, OpTest.shape(g, [4, "N", 3]))
        try checkForward(g, sizes: { [$0 * 12] }) { n, x in
            [Self.naive(x[0], [n, 3, 4], [4, n, 3]) { [$0[1], $0[2], $0[0]] },
             Self.naive(x[0], [n, 3, 4], [4, 3, n]) { [$0[2], $0[1], $0[0]] }]
        }
        try OpTest.checkGradients(try make(), n: 2)
    }

    func testTransposeOfSizeOneAxesIsAnAliasAndLargeTransposesTile() throws {
        let g = try Self.graph([("x", ["N", 1, 3])])
        try g.addNode("t", TransposeOp.self, ["perm": .ints([1, 0, 2])], inputs: ["x"], outputs: ["h"])
        try g.addNode("u", TransposeOp.self, ["perm": .ints([0, 2, 1])], inputs: ["h"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        XCTAssertEqual(try Engine.compile(g).stepCount, 1)   // the first transpose moves no data
        try checkForward(g, sizes: { [$0 * 3] }) { n, x in [Self.naive(x[0], [n, 3], [1, 3, n]) { [$0[2], $0[1]] }] }
        // a transpose larger than one tile (the tiled path), batch on the inner axis
        let b = try Self.graph([("x", [40, "N", 37])])
        try b.addNode("t", TransposeOp.self, ["perm": .ints([2, 1, 0])], inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(b, ["y"])
        try checkForward(b, sizes: { [40 * $0 * 37] }) { n, x in [Self.naive(x[0], [40, n, 37], [37, n, 40]) { [$0[2], $0[1], $0[0]] }] }
    }

    // MARK: - Slice

    func testSliceInputsNegativeAndClampedIndicesAndNegativeSteps() throws {
        let starts = [1, -1, 0], ends = [-1, Int(Int64.min), Int(Int64.max)], axes = [1, 2, 0], steps = [2, -2, 1]
        func make() throws -> G {
            let g = try Self.graph(opset: 13, [("x", ["N", 6, 5])])
            try Self.ints(g, "s", starts); try Self.ints(g, "e", ends); try Self.ints(g, "a", axes); try Self.ints(g, "st", steps)
            try g.addNode("sl", SliceOp.self, inputs: ["x", "s", "e", "a", "st"], outputs: ["y"])
            return try Self.finish(g, ["y"])
        }
        let g = try make()
        XCTAssertEqual(g[g.outputs[0]].type?.shape, OpTest.shape(g, ["N", 2, 3]))
        try checkForward(g, sizes: { [$0 * 30] }) { n, x in
            let i1 = Self.sliceIndices(dim: 6, start: 1, end: -1, step: 2), i2 = Self.sliceIndices(dim: 5, start: -1, end: Int(Int64.min), step: -2)
            return [Self.naive(x[0], [n, 6, 5], [n, i1.count, i2.count]) { [$0[0], i1[$0[1]], i2[$0[2]]] }]
        }
        try OpTest.checkGradients(try make(), n: 2)
    }

    func testSliceAttributesBeforeOpset10AndOnTheBatchAxis() throws {
        // opset 9: attributes; a start past the end gives an empty axis only where the dimension is known
        let g = try Self.graph(opset: 9, [("x", ["N", 4])])
        try g.addNode("sl", SliceOp.self, ["starts": .ints([1]), "ends": .ints([Int(Int64.max)]), "axes": .ints([-1])],
                      inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        try checkForward(g, sizes: { [$0 * 4] }) { n, x in [Self.naive(x[0], [n, 4], [n, 3]) { [$0[0], $0[1] + 1] }] }
        // the batch axis: x[1:] (N − 1 rows, none at batch 1) and x[::-1] (the rows reversed)
        func make() throws -> G {
            let b = try Self.graph(opset: 13, [("x", ["N", 3])])
            try Self.ints(b, "s1", [1]); try Self.ints(b, "e1", [Int(Int64.max)]); try Self.ints(b, "a", [0])
            try Self.ints(b, "s2", [-1]); try Self.ints(b, "e2", [Int(Int64.min)]); try Self.ints(b, "m1", [-1])
            try b.addNode("tail", SliceOp.self, inputs: ["x", "s1", "e1", "a"], outputs: ["y"])
            try b.addNode("rev", SliceOp.self, inputs: ["x", "s2", "e2", "a", "m1"], outputs: ["z"])
            return try Self.finish(b, ["y", "z"])
        }
        let b = try make()
        XCTAssertEqual(b[b.outputs[0]].type?.shape, [Engine.SymInt(1, b.symbol(named: "N"), plus: -1), 3])
        try checkForward(b, sizes: { [$0 * 3] }) { n, x in
            [Self.naive(x[0], [n, 3], [n - 1, 3]) { [$0[0] + 1, $0[1]] }, Self.naive(x[0], [n, 3], [n, 3]) { [n - 1 - $0[0], $0[1]] }]
        }
        try OpTest.checkGradients(try make(), n: 3)
        // a slice whose size would depend on the batch in a non-linear way is refused, not guessed
        let c = try Self.graph(opset: 9, [("x", ["N", 3])])
        try c.addNode("sl", SliceOp.self, ["starts": .ints([0]), "ends": .ints([2]), "axes": .ints([0])], inputs: ["x"], outputs: ["y"])
        try c.markOutput("y")
        try c.verify()
        XCTAssertThrowsError(try c.inferTypes()) { XCTAssertTrue(Engine.isNotLinear($0 as! InLoopError)) }
    }

    func testSliceOfShapesIsKnownAtCompileTime() throws {
        // Shape → Slice → Concat → Reshape: the last two dims merged, for every batch size
        let g = try Self.graph(opset: 13, [("x", ["N", 2, 3])])
        try Self.ints(g, "s", [0]); try Self.ints(g, "e", [1]); try Self.ints(g, "m", [-1])
        try g.addNode("sh", ShapeOp.self, inputs: ["x"], outputs: ["shape"])
        try g.addNode("sl", SliceOp.self, inputs: ["shape", "s", "e"], outputs: ["lead"])
        try g.addNode("c", ConcatOp.self, ["axis": .int(0)], inputs: ["lead", "m"], outputs: ["spec"])
        try g.addNode("r", ReshapeOp.self, inputs: ["x", "spec"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        XCTAssertEqual(g[g.outputs[0]].type?.shape, OpTest.shape(g, ["N", 6]))
        try checkForward(g, sizes: { [$0 * 6] }) { _, x in [x[0]] }
    }

    // MARK: - Split and Concat

    func testSplitForms() throws {
        // opset 13: sizes as an input; opset 11: the attribute; equal parts; opset 18: num_outputs
        func make(_ opset: Int, _ attrs: [String: Engine.AttributeValue], sizesInput: [Int]?, outputs: Int) throws -> G {
            let g = try Self.graph(opset: opset, [("x", ["N", 7])])
            var ins = ["x"]
            if let s = sizesInput { try Self.ints(g, "sizes", s); ins.append("sizes") }
            let outs = (0..<outputs).map { "y\($0)" }
            try g.addNode("sp", SplitOp.self, attrs.merging(["axis": .int(1)]) { a, _ in a }, inputs: ins, outputs: outs)
            return try Self.finish(g, outs)
        }
        let cases: [(G, [Int])] = [
            (try make(13, [:], sizesInput: [2, 5], outputs: 2), [2, 5]),
            (try make(11, ["split": .ints([3, 0, 4])], sizesInput: nil, outputs: 3), [3, 0, 4]),
            (try make(18, ["num_outputs": .int(4)], sizesInput: nil, outputs: 4), [2, 2, 2, 1]),
            (try make(13, [:], sizesInput: nil, outputs: 1), [7]),
        ]
        for (g, sizes) in cases {
            try checkForward(g, sizes: { [$0 * 7] }) { n, x in
                var off = 0
                return sizes.map { s in
                    defer { off += s }
                    let o = off
                    return Self.naive(x[0], [n, 7], [n, s]) { [$0[0], $0[1] + o] }
                }
            }
        }
        try OpTest.checkGradients(try make(13, [:], sizesInput: [2, 5], outputs: 2), n: 2)
        try OpTest.checkGradients(try make(18, ["num_outputs": .int(4)], sizesInput: nil, outputs: 4), n: 2)
        // equal parts
        let e = try Self.graph(opset: 13, [("x", [6, "N"])])
        try e.addNode("sp", SplitOp.self, inputs: ["x"], outputs: ["a", "b", "c"])
        _ = try Self.finish(e, ["a", "b", "c"])
        try checkForward(e, sizes: { [6 * $0] }) { n, x in
            (0..<3).map { k in Self.naive(x[0], [6, n], [2, n]) { [$0[0] + 2 * k, $0[1]] } }
        }
        // an unused output gets no gradient step; the input's gradient is zero there
        let u = try Self.graph(opset: 13, [("x", ["N", 4])])
        try u.addNode("sp", SplitOp.self, ["axis": .int(1)], inputs: ["x"], outputs: ["a", "b"])
        try u.addNode("t", TransposeOp.self, inputs: ["b"], outputs: ["y"])
        _ = try Self.finish(u, ["y"])
        try OpTest.checkGradients(u, n: 2)
    }

    func testConcatAtRunTimeAlongTheBatchAxisWithAConstant() throws {
        func make() throws -> G {
            let g = try Self.graph([("x", ["N", 3]), ("w", ["N", 2])])
            try g.addConstant("c", try Engine.Tensor(shape: [2, 3], values: [1.0, 2, 3, 4, 5, 6]))
            try g.addNode("c0", ConcatOp.self, ["axis": .int(0)], inputs: ["x", "c", "x"], outputs: ["y"])
            try g.addNode("c1", ConcatOp.self, ["axis": .int(-1)], inputs: ["w", "x"], outputs: ["z"])
            return try Self.finish(g, ["y", "z"])
        }
        let g = try make()
        XCTAssertEqual(g[g.outputs[0]].type?.shape, [Engine.SymInt(2, g.symbol(named: "N"), plus: 2), 3])
        try checkForward(g, sizes: { [$0 * 3, $0 * 2] }) { n, x in
            let c: [Double] = [1, 2, 3, 4, 5, 6]
            let y = x[0] + c + x[0]
            let z = (0..<(n * 5)).map { i -> Double in
                let r = i / 5, col = i % 5
                return col < 2 ? x[1][r * 2 + col] : x[0][r * 3 + col - 2]
            }
            return [y, z]
        }
        try OpTest.checkGradients(try make(), n: 2)
    }

    // MARK: - Gather

    func testGatherOnFloatDataWithRepeatedAndNegativeIndices() throws {
        let idx = [4, -1, 0, 4]
        func make() throws -> G {
            let g = try Self.graph([("x", ["N", 5])])
            try Self.ints(g, "i", idx, shape: [2, 2])
            try g.addNode("g", GatherOp.self, ["axis": .int(1)], inputs: ["x", "i"], outputs: ["y"])
            return try Self.finish(g, ["y"])
        }
        let g = try make()
        XCTAssertEqual(g[g.outputs[0]].type?.shape, OpTest.shape(g, ["N", 2, 2]))
        try checkForward(g, sizes: { [$0 * 5] }) { n, x in
            [Self.naive(x[0], [n, 5], [n, 2, 2]) { let j = idx[$0[1] * 2 + $0[2]]; return [$0[0], j < 0 ? j + 5 : j] }]
        }
        try OpTest.checkGradients(try make(), n: 2)   // repeated indices: the gradients add up
    }

    func testGatherOfATrainedTableScatterAddsIntoItsGradient() throws {
        // an embedding lookup: rows 1, 3, 1 of a trained [4, 3] table, concatenated under the input rows
        let g = try Self.graph([("x", ["N", 3])])
        let w = try g.addConstant("w", try Engine.Tensor(shape: [4, 3], values: OpTest.values(12, seed: 3, as: Double.self)))
        try Self.ints(g, "i", [1, 3, 1])
        try g.addNode("g", GatherOp.self, inputs: ["w", "i"], outputs: ["e"])
        try g.addNode("c", ConcatOp.self, ["axis": .int(0)], inputs: ["x", "e"], outputs: ["y"])
        g.parameters = [w]
        _ = try Self.finish(g, ["y"])
        try OpTest.checkGradients(g, n: 2)
        let table = OpTest.values(12, seed: 3, as: Double.self)
        try checkForward(g, sizes: { [$0 * 3] }) { _, x in
            [x[0] + [1, 3, 1].flatMap { Array(table[($0 * 3)..<($0 * 3 + 3)]) }]
        }
        // the plan's parameter gradient itself: row 1 twice, row 3 once, rows 0 and 2 zero
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        _ = try h.forward([[0, 0, 0]], n: 1)
        let seed = (0..<12).map { Double($0 + 1) }
        let (_, gp) = try h.backward(seeds: [seed], n: 1)
        XCTAssertEqual(gp, [0, 0, 0, 4 + 10, 5 + 11, 6 + 12, 0, 0, 0, 7, 8, 9])
    }

    // MARK: - Aliases

    func testAliasesFlattenSqueezeUnsqueezeReshapeIdentityDropout() throws {
        func make() throws -> G {
            let g = try Self.graph(opset: 13, [("x", ["N", 1, 3, 2])])
            try Self.ints(g, "ax", [1]); try Self.ints(g, "shape", [0, -1, 2])
            try g.addNode("sq", SqueezeOp.self, inputs: ["x", "ax"], outputs: ["a"])          // [N, 3, 2]
            try g.addNode("un", UnsqueezeOp.self, inputs: ["a", "ax"], outputs: ["b"])        // [N, 1, 3, 2]
            try g.addNode("fl", FlattenOp.self, ["axis": .int(2)], inputs: ["b"], outputs: ["c"])   // [N, 6]
            try g.addNode("rs", ReshapeOp.self, inputs: ["c", "shape"], outputs: ["d"])      // [N, 3, 2]
            try g.addNode("id", IdentityOp.self, inputs: ["d"], outputs: ["e"])
            try g.addNode("dr", DropoutOp.self, inputs: ["e"], outputs: ["f"])
            try g.addNode("t", TransposeOp.self, ["perm": .ints([2, 1, 0])], inputs: ["f"], outputs: ["y"])
            try g.addNode("id2", IdentityOp.self, inputs: ["x"], outputs: ["z"])               // the input itself, aliased
            return try Self.finish(g, ["y", "z", "e"])
        }
        let g = try make()
        XCTAssertEqual(g[g.outputs[2]].type?.shape, OpTest.shape(g, ["N", 3, 2]))
        XCTAssertEqual(try Engine.compile(g).stepCount, 3)   // the transpose and two copies into the caller's arrays
        try checkForward(g, sizes: { [$0 * 6] }) { n, x in
            [Self.naive(x[0], [n, 3, 2], [2, 3, n]) { [$0[2], $0[1], $0[0]] }, x[0], x[0]]
        }
        try OpTest.checkGradients(try make(), n: 2)
    }

    func testFlattenAndSqueezeShapes() throws {
        let g = try Self.graph(opset: 11, [("x", [2, "N", 1, 3])])
        try g.addNode("f0", FlattenOp.self, ["axis": .int(0)], inputs: ["x"], outputs: ["a"])
        try g.addNode("f1", FlattenOp.self, ["axis": .int(-2)], inputs: ["x"], outputs: ["b"])
        try g.addNode("f4", FlattenOp.self, ["axis": .int(4)], inputs: ["x"], outputs: ["c"])
        try g.addNode("s", SqueezeOp.self, inputs: ["x"], outputs: ["d"])
        try g.addNode("s2", SqueezeOp.self, ["axes": .ints([-2])], inputs: ["x"], outputs: ["e"])
        _ = try Self.finish(g, ["a", "b", "c", "d", "e"])
        let N = g.symbol(named: "N")
        let shapes = g.outputs.map { g[$0].type!.shape }
        XCTAssertEqual(shapes[0], [1, Engine.SymInt(6, N)])
        XCTAssertEqual(shapes[1], [Engine.SymInt(2, N), 3])
        XCTAssertEqual(shapes[2], [Engine.SymInt(6, N), 1])
        XCTAssertEqual(shapes[3], [2, Engine.SymInt(N), 3])   // the batch is not squeezed
        XCTAssertEqual(shapes[4], [2, Engine.SymInt(N), 3])
        try checkForward(g, sizes: { [6 * $0] }) { _, x in [x[0], x[0], x[0], x[0], x[0]] }
    }

    // MARK: - Compile-time ops and Cast

    func testConstantsRangeSizeAndCastsOfShapes() throws {
        let g = try Self.graph(opset: 13, [("x", ["N", 3])])
        try g.addNode("k", ConstantOp.self, ["value_floats": .floats([0.5, -1.5, 2])], inputs: [], outputs: ["k"])
        try g.addNode("sh", ShapeOp.self, inputs: ["x"], outputs: ["shape"])
        try g.addNode("cs", CastOp.self, ["to": .int(1)], inputs: ["shape"], outputs: ["fshape"])    // [N, 3] at run time
        try g.addNode("sz", SizeOp.self, inputs: ["x"], outputs: ["size"])
        try g.addNode("cz", CastOp.self, ["to": .int(11)], inputs: ["size"], outputs: ["fsize"])     // 3N
        try g.addNode("r0", ConstantOp.self, ["value_int": .int(1)], inputs: [], outputs: ["one"])
        try g.addNode("r1", ConstantOp.self, ["value_int": .int(10)], inputs: [], outputs: ["ten"])
        try g.addNode("r2", ConstantOp.self, ["value": .tensor(Engine.TensorValue(dtype: .int64, shape: [], ints: [3]))],
                      inputs: [], outputs: ["three"])
        try g.addNode("rg", RangeOp.self, inputs: ["one", "ten", "three"], outputs: ["range"])       // 1, 4, 7
        try g.addNode("cr", CastOp.self, ["to": .int(1)], inputs: ["range"], outputs: ["frange"])
        try g.addNode("co", ConstantOfShapeOp.self, ["value": .tensor(Engine.TensorValue(dtype: .float64, shape: [1], floats: [2.5]))],
                      inputs: ["shape"], outputs: ["filled"])                                          // [N, 3] of 2.5 at run time
        try Self.ints(g, "len3", [3])
        try g.addNode("ck", ConstantOfShapeOp.self, inputs: ["len3"], outputs: ["zeros"])             // [3] zeros, folded
        try g.addNode("cat", ConcatOp.self, ["axis": .int(0)], inputs: ["x", "filled"], outputs: ["y"])
        _ = try Self.finish(g, ["k", "fshape", "fsize", "frange", "filled", "zeros", "y"])
        XCTAssertEqual(g[g.names["range"]!].known?.values, [1, 4, 7])
        XCTAssertEqual(g[g.names["size"]!].known?.values, [Engine.SymInt(3, g.symbol(named: "N"))])
        try checkForward(g, sizes: { [3 * $0] }) { n, x in
            [[0.5, -1.5, 2], [Double(n), 3], [Double(3 * n)], [1, 4, 7], [Double](repeating: 2.5, count: 3 * n), [0, 0, 0],
             x[0] + [Double](repeating: 2.5, count: 3 * n)]
        }
        // a Range whose limit is the batch size: its shape is known symbolically
        let r = try Self.graph(opset: 13, [("x", ["N", 3])])
        try Self.ints(r, "zero", [0], shape: []); try Self.ints(r, "i0", [0], shape: []); try Self.ints(r, "one", [1], shape: [])
        try r.addNode("sh", ShapeOp.self, inputs: ["x"], outputs: ["shape"])
        try r.addNode("n", GatherOp.self, inputs: ["shape", "i0"], outputs: ["n"])
        try r.addNode("rg", RangeOp.self, inputs: ["zero", "n", "one"], outputs: ["range"])
        try r.addNode("t", TransposeOp.self, inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(r, ["y"])
        XCTAssertEqual(r[r.names["range"]!].type?.shape, OpTest.shape(r, ["N"]))
    }

    func testCastBetweenFloatTypes() throws {
        // float64 → float32 rounds (a step); float32 → float64 and same-type casts are aliases
        let g = try Self.graph([("x", ["N", 4])])
        try g.addNode("c32", CastOp.self, ["to": .int(1)], inputs: ["x"], outputs: ["a"])
        try g.addNode("c64", CastOp.self, ["to": .string("DOUBLE")], inputs: ["a"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        let x: [Double] = [1.0 / 3, -0.1, 1e-40, 123456.789]
        XCTAssertEqual(try h.forward([x], n: 1)[0], x.map { Double(Float($0)) })
        // the rounding passes gradients and tangents through unchanged
        let seed: [Double] = [1, -2, 3, 0.5]
        XCTAssertEqual(try h.backward(seeds: [seed], n: 1).inputs[0], seed)
        _ = try h.forward([x], n: 1)
        XCTAssertEqual(try h.tangent([seed], n: 1)[0], seed)
        try checkForward(g, sizes: { [4 * $0] }, tolerance: 1e-7) { _, x in [x[0]] }
        // an alias-only cast chain differentiates exactly
        let a = try Self.graph([("x", ["N", 2])])
        try a.addNode("c", CastOp.self, ["to": .int(11)], inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(a, ["y"])
        try OpTest.checkGradients(a, n: 2)
    }

    func testLayoutOpsOfConstantsAreFoldedIntoConstants() throws {
        // Transpose/Slice/Concat/Gather/Reshape/Cast of constants are constants: a dense layer takes
        // the result as its weight (it needs a constant weight), and no step moves them at run time
        let w: [Double] = OpTest.values(12, seed: 9)
        let g = try Self.graph(opset: 13, [("x", ["N", 3])])
        try g.addConstant("w", try Engine.Tensor(shape: [3, 4], values: w))
        try g.addConstant("extra", try Engine.Tensor(shape: [3, 1], values: [1.0, 2, 3]))
        try Self.ints(g, "s", [1]); try Self.ints(g, "e", [5]); try Self.ints(g, "a", [1]); try Self.ints(g, "i", [3, 0, 1, 2])
        try Self.ints(g, "shape", [3, 4])
        try g.addNode("cat", ConcatOp.self, ["axis": .int(1)], inputs: ["w", "extra"], outputs: ["w5"])     // [3, 5]
        try g.addNode("sl", SliceOp.self, inputs: ["w5", "s", "e", "a"], outputs: ["w4"])                    // [3, 4]: columns 1..4
        try g.addNode("ga", GatherOp.self, ["axis": .int(1)], inputs: ["w4", "i"], outputs: ["wg"])         // columns permuted
        try g.addNode("c32", CastOp.self, ["to": .int(1)], inputs: ["wg"], outputs: ["w32"])
        try g.addNode("c64", CastOp.self, ["to": .int(11)], inputs: ["w32"], outputs: ["w64"])
        try g.addNode("rs", ReshapeOp.self, inputs: ["w64", "shape"], outputs: ["wr"])
        try g.addNode("t", TransposeOp.self, inputs: ["wr"], outputs: ["wt"])                                // [4, 3]
        try g.addNode("d", DenseOp.self, inputs: ["x", "wt"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        XCTAssertEqual(try Engine.compile(g).stepCount, 1)
        // the folded weight: wt[o, i] = float32(w5[i, 1 + perm[o]]) with w5 = [w | extra]
        let perm = [3, 0, 1, 2]
        func w5(_ i: Int, _ j: Int) -> Double { j < 4 ? w[i * 4 + j] : Double(i + 1) }
        let wt = (0..<4).map { o in (0..<3).map { i in Double(Float(w5(i, 1 + perm[o]))) } }
        func dense(_ n: Int, _ x: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: n * 4)
            for r in 0..<n { for o in 0..<4 { for i in 0..<3 { y[r * 4 + o] += x[r * 3 + i] * wt[o][i] } } }
            return y
        }
        try checkForward(g, sizes: { [3 * $0] }, tolerance: 1e-6) { n, x in [dense(n, x[0])] }
    }

    // MARK: - Errors

    func testBadInputIsAnErrorNotATrap() throws {
        func node(_ op: any OpDefinition.Type, _ attrs: [String: Engine.AttributeValue] = [:], opset: Int = 13,
                  input: [Any] = ["N", 4], extra: [(String, [Int])] = [], outputs: Int = 1) throws {
            let g = try Self.graph(opset: opset, [("x", input)])
            for (name, v) in extra { try Self.ints(g, name, v) }
            let outs = (0..<outputs).map { "y\($0)" }
            try g.addNode("n", op, attrs, inputs: ["x"] + extra.map(\.0), outputs: outs)
            for o in outs { try g.markOutput(o) }
            try g.verify()
            try g.inferTypes()
            _ = try Engine.compile(g)
        }
        assertThrows("perm not a permutation") { try node(TransposeOp.self, ["perm": .ints([0, 0])]) }
        assertThrows("perm of the wrong length") { try node(TransposeOp.self, ["perm": .ints([1, 0, 2])]) }
        assertThrows("slice step 0") { try node(SliceOp.self, extra: [("s", [0]), ("e", [2]), ("a", [1]), ("st", [0])]) }
        assertThrows("slice lists of different lengths") { try node(SliceOp.self, extra: [("s", [0, 1]), ("e", [2])]) }
        assertThrows("slice axis repeated") { try node(SliceOp.self, extra: [("s", [0, 1]), ("e", [2, 3]), ("a", [1, -1])]) }
        assertThrows("slice attributes from opset 10") { try node(SliceOp.self, ["starts": .ints([0]), "ends": .ints([1])]) }
        assertThrows("split sizes that do not add up") { try node(SplitOp.self, ["axis": .int(1)], extra: [("s", [1, 2])], outputs: 2) }
        assertThrows("split into unequal parts") { try node(SplitOp.self, ["axis": .int(1)], outputs: 3) }
        assertThrows("num_outputs before opset 18") { try node(SplitOp.self, ["num_outputs": .int(2)], outputs: 2) }
        assertThrows("split of the batch into equal parts") { try node(SplitOp.self, outputs: 2) }
        assertThrows("gather index out of range") { try node(GatherOp.self, ["axis": .int(1)], extra: [("i", [4])]) }
        assertThrows("gather along the batch axis") { try node(GatherOp.self, extra: [("i", [0])]) }
        assertThrows("squeeze of an axis of size 4") { try node(SqueezeOp.self, extra: [("a", [1])]) }
        assertThrows("squeeze of the batch axis") { try node(SqueezeOp.self, extra: [("a", [0])]) }
        assertThrows("flatten axis out of range") { try node(FlattenOp.self, ["axis": .int(3)]) }
        assertThrows("Dropout with three outputs") { try node(DropoutOp.self, outputs: 3) }   // the mask (2) is supported: NdOpTests
        assertThrows("Cast to an unsupported type") { try node(CastOp.self, ["to": .int(6)]) }
        // (a Cast of floats to integers at run time truncates in T storage: LogicOpTests.testModForward)
        assertThrows("Cast without 'to'") { try node(CastOp.self) }
        assertThrows("Reshape with 0 and -1 under allowzero") { try node(ReshapeOp.self, ["allowzero": .int(1)], extra: [("s", [0, -1])]) }
        assertThrows("Concat of different ranks") {
            let g = try Self.graph([("x", ["N", 4]), ("w", ["N", 4, 1])])
            try g.addNode("c", ConcatOp.self, ["axis": .int(0)], inputs: ["x", "w"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
        }
        assertThrows("Dropout in training mode") {
            let g = try Self.graph([("x", ["N", 4])])
            try g.addConstant("r", try Engine.Tensor(shape: [], values: [0.5]))
            try g.addConstant("t", try Engine.Tensor(shape: [], values: [true]))
            try g.addNode("d", DropoutOp.self, inputs: ["x", "r", "t"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
        }
        assertThrows("Constant with two values") {
            _ = try ConstantOp.parse(["value_float": .float(1), "value_int": .int(1)], opset: 13)
        }
        assertThrows("Constant of a string") { _ = try ConstantOp.parse(["value_string": .string("a")], opset: 13) }
        assertThrows("Constant tensor of the wrong size") {
            _ = try ConstantOp.parse(["value": .tensor(Engine.TensorValue(dtype: .float32, shape: [2, 2], floats: [1]))], opset: 13)
        }
        assertThrows("ConstantOfShape of two values") {
            _ = try ConstantOfShapeOp.parse(["value": .tensor(Engine.TensorValue(dtype: .float32, shape: [2], floats: [1, 2]))], opset: 13)
        }
        assertThrows("Range with delta 0") {
            let g = try Self.graph([("x", ["N", 4])])
            try Self.ints(g, "a", [0], shape: []); try Self.ints(g, "b", [0], shape: [])
            try g.addNode("r", RangeOp.self, inputs: ["a", "a", "b"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
        }
        assertThrows("Range of floats") {
            let g = try Self.graph([("x", ["N", 4])])
            try g.addConstant("a", try Engine.Tensor(shape: [], values: [1.0]))
            try g.addNode("r", RangeOp.self, inputs: ["a", "a", "a"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
        }
        assertThrows("num_outputs far from the node's outputs") { try node(SplitOp.self, ["num_outputs": .int(Int(Int32.max))], opset: 18, outputs: 2) }
        assertThrows("Range whose span overflows") {
            let g = try Self.graph([("x", ["N", 4])])
            try Self.ints(g, "a", [0], shape: []); try Self.ints(g, "b", [Int.min], shape: []); try Self.ints(g, "m", [-1], shape: [])
            try g.addNode("r", RangeOp.self, inputs: ["a", "b", "m"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
        }
        assertThrows("ConstantOfShape too large to allocate") {
            let g = try Self.graph([("x", ["N", 4])])
            try Self.ints(g, "s", [Int(Int32.max), Int(Int32.max)])
            try g.addNode("c", ConstantOfShapeOp.self, inputs: ["s"], outputs: ["y"])
            try g.markOutput("y"); try g.verify(); try g.inferTypes()
            _ = try Engine.compile(g)
        }
        // huge slice bounds and steps are clamped, not overflowed
        let g = try Self.graph(opset: 9, [("x", ["N", 4])])
        try g.addNode("sl", SliceOp.self, ["starts": .ints([Int.min]), "ends": .ints([Int.max]), "axes": .ints([1])], inputs: ["x"], outputs: ["y"])
        _ = try Self.finish(g, ["y"])
        XCTAssertEqual(g[g.outputs[0]].type?.shape, OpTest.shape(g, ["N", 4]))
    }
}
