import Foundation
import XCTest
@testable import InLoopCore

/// The comparison, logic, selection and broadcasting ops on the one engine (issue 10, phase 6):
/// Greater, Less, Equal, GreaterOrEqual, LessOrEqual, Not, And, Or, Xor, Mod, PRelu, Where, CastLike,
/// Expand, Tile, Sum, Mean. Forward against naive loops in Double (Float and Double plans, inference
/// and differentiable, batch 1 and 5 through one plan); reverse and tangent against float64 finite
/// differences (`OpTest.checkGradients`); compile-time evaluation on known integers; errors.
final class LogicOpTests: XCTestCase {
    // MARK: helpers

    func graph(_ dtype: Engine.DType, _ inputs: [[Any]], _ body: (Engine.Graph) throws -> Void) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 17)
        for (k, s) in inputs.enumerated() { try g.addInput("x\(k)", Engine.TensorType(dtype, OpTest.shape(g, s))) }
        try body(g)
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    static func concrete(_ dims: [Any], _ n: Int) -> [Int] { dims.map { ($0 as? Int) ?? n } }

    /// Inputs for batch n: values in `range`, rounded to multiples of `grid` when it is not 0 (ties
    /// for the comparisons).
    static func inputs(_ shapes: [[Any]], _ n: Int, range: ClosedRange<Double>, grid: Double, seed: UInt64) -> [[Double]] {
        shapes.enumerated().map { k, s in
            OpTest.values(concrete(s, n).reduce(1, *), seed: seed + UInt64(k) * 13 + UInt64(n), in: range, as: Double.self)
                .map { grid == 0 ? $0 : ($0 / grid).rounded() * grid }
        }
    }

    /// NumPy broadcasting of any number of operands, naively: out[idx] = f(operands at idx).
    static func broadcast(_ xs: [[Double]], _ shapes: [[Int]], _ f: ([Double]) -> Double) -> [Double] {
        let r = shapes.map(\.count).max() ?? 0
        let padded = shapes.map { [Int](repeating: 1, count: r - $0.count) + $0 }
        let sy = (0..<r).map { d in padded.map { $0[d] }.max() ?? 1 }
        return (0..<sy.reduce(1, *)).map { i in
            var rest = i
            var offs = [Int](repeating: 0, count: xs.count), mult = [Int](repeating: 1, count: xs.count)
            for d in stride(from: r - 1, through: 0, by: -1) {
                let idx = rest % sy[d]; rest /= sy[d]
                for k in xs.indices {
                    offs[k] += (padded[k][d] == 1 ? 0 : idx) * mult[k]
                    mult[k] *= padded[k][d]
                }
            }
            return f(xs.indices.map { xs[$0][offs[$0]] })
        }
    }

    /// Runs the graph in T (both numerics) at n = 1 and 5 through one plan each against `reference`.
    func checkForward<T: EngineScalar>(_: T.Type, _ shapes: [[Any]], range: ClosedRange<Double> = -2...2, grid: Double = 0,
                                       tolerance: Double, _ build: (Engine.Graph) throws -> Void,
                                       reference: ([[Double]], [[Int]], Int) -> [Double],
                                       file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try graph(T.dtype, shapes, build)
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5] {
                let xs = Self.inputs(shapes, n, range: range, grid: grid, seed: 5).map { $0.map { T($0) } }
                let got = try h.forward(xs, n: n)[0]
                let want = reference(xs.map { $0.map { Double($0) } }, shapes.map { Self.concrete($0, n) }, n)
                XCTAssertEqual(got.count, want.count, "\(T.self) n=\(n)", file: file, line: line)
                guard got.count == want.count else { return }
                for i in want.indices {
                    let w = want[i], v = Double(got[i])
                    if w.isNaN { XCTAssertTrue(v.isNaN, "\(T.self) n=\(n) [\(i)]: \(v), want NaN", file: file, line: line); continue }
                    if !(abs(v - w) / max(1, abs(w)) <= tolerance) {
                        XCTFail("\(g.nodes.map(\.name)) \(T.self) n=\(n) [\(i)]: \(v), want \(w)", file: file, line: line)
                        return
                    }
                }
            }
        }
    }

    func checkBoth(_ shapes: [[Any]], range: ClosedRange<Double> = -2...2, grid: Double = 0, exact: Bool = false,
                   _ build: (Engine.Graph) throws -> Void, reference: ([[Double]], [[Int]], Int) -> [Double],
                   file: StaticString = #filePath, line: UInt = #line) throws {
        try checkForward(Float.self, shapes, range: range, grid: grid, tolerance: exact ? 0 : 2e-6, build, reference: reference,
                         file: file, line: line)
        try checkForward(Double.self, shapes, range: range, grid: grid, tolerance: exact ? 0 : 1e-14, build, reference: reference,
                         file: file, line: line)
    }

    func checkGradients(_ shapes: [[Any]], range: ClosedRange<Double> = -2...2, parameters: [String] = [],
                        _ build: (Engine.Graph) throws -> Void, file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try graph(.float64, shapes, build)
        g.parameters = parameters.compactMap { g.names[$0] }
        try OpTest.checkGradients(g, n: 3, inputs: Self.inputs(shapes, 3, range: range, grid: 0, seed: 29), tolerance: 1e-6,
                                  file: file, line: line)
    }

    static func constant(_ g: Engine.Graph, _ name: String, _ shape: [Int], _ values: [Double]) throws {
        if g.dtype == .float32 {
            try g.addConstant(name, try Engine.Tensor(shape: shape, values: values.map { Float($0) }))
        } else {
            try g.addConstant(name, try Engine.Tensor(shape: shape, values: values))
        }
    }

    static func ints(_ g: Engine.Graph, _ name: String, _ values: [Int], shape: [Int]? = nil) throws {
        try g.addConstant(name, try Engine.Tensor(shape: shape ?? [values.count], values: values.map { Int64($0) }))
    }

    static var shapePairs: [([Any], [Any])] { [
        (["N", 3], ["N", 3]), (["N", 4], [4]), ([4], ["N", 4]), (["N", 1, 4], [2, 1]), ([2, "N"], [2, 1]), ([], ["N", 2]),
    ] }

    // MARK: comparisons and logic

    static var comparisons: [(any OpDefinition.Type, (Double, Double) -> Bool)] { [
        (GreaterOp.self, { $0 > $1 }), (LessOp.self, { $0 < $1 }), (EqualOp.self, { $0 == $1 }),
        (GreaterOrEqualOp.self, { $0 >= $1 }), (LessOrEqualOp.self, { $0 <= $1 }),
    ] }

    /// Comparisons of float inputs (with ties) give exact 0/1, broadcast.
    func testComparisonsForward() throws {
        for (op, f) in Self.comparisons {
            for (sa, sb) in Self.shapePairs {
                try checkBoth([sa, sb], grid: 0.5, exact: true, { g in
                    try g.addNode("cmp", op, inputs: ["x0", "x1"], outputs: ["y"])
                }, reference: { x, s, _ in Self.broadcast(x, s) { f($0[0], $0[1]) ? 1 : 0 } })
            }
        }
    }

    /// And, Or, Xor, Not on booleans computed at run time (x0 > 0, x1 < 0.5).
    func testLogicForward() throws {
        let ops: [(any OpDefinition.Type, (Bool, Bool) -> Bool)] = [
            (AndOp.self, { $0 && $1 }), (OrOp.self, { $0 || $1 }), (XorOp.self, { $0 != $1 }),
        ]
        for (op, f) in ops {
            for (sa, sb) in Self.shapePairs {
                try checkBoth([sa, sb], grid: 0.5, exact: true, { g in
                    try Self.constant(g, "z", [], [0])
                    try Self.constant(g, "h", [1], [0.5])
                    try g.addNode("p", GreaterOp.self, inputs: ["x0", "z"], outputs: ["a"])
                    try g.addNode("q", LessOp.self, inputs: ["x1", "h"], outputs: ["b"])
                    try g.addNode("op", op, inputs: ["a", "b"], outputs: ["y"])
                }, reference: { x, s, _ in Self.broadcast(x, s) { f($0[0] > 0, $0[1] < 0.5) ? 1 : 0 } })
            }
        }
        try checkBoth([["N", 3]], grid: 0.5, exact: true, { g in
            try Self.constant(g, "z", [], [0])
            try g.addNode("p", GreaterOrEqualOp.self, inputs: ["x0", "z"], outputs: ["a"])
            try g.addNode("not", NotOp.self, inputs: ["a"], outputs: ["y"])
        }, reference: { x, _, _ in x[0].map { $0 >= 0 ? 0 : 1 } })
    }

    /// A boolean constant (stored as bytes) and an int64 constant feed run-time steps as exact 0/1 and
    /// integers; integers computed from shapes (Shape of a batch input) are compared at run time, per
    /// batch size, through one plan.
    func testBooleanAndIntegerOperandsAtRunTime() throws {
        try checkBoth([["N", 3]], exact: true, { g in
            try g.addConstant("m", try Engine.Tensor(shape: [3], values: [true, false, true]))
            try Self.constant(g, "z", [], [0])
            try g.addNode("p", GreaterOp.self, inputs: ["x0", "z"], outputs: ["a"])
            try g.addNode("and", AndOp.self, inputs: ["a", "m"], outputs: ["y"])
        }, reference: { x, _, _ in x[0].enumerated().map { i, v in v > 0 && i % 3 != 1 ? 1 : 0 } })
        try checkBoth([["N", 3]], exact: true, { g in
            try g.addNode("shape", ShapeOp.self, inputs: ["x0"], outputs: ["s"])
            try Self.ints(g, "two", [2, 2])
            try g.addNode("gt", GreaterOp.self, inputs: ["s", "two"], outputs: ["c"])
            try Self.constant(g, "a", [2], [10, 20])
            try Self.constant(g, "b", [2], [-1, -2])
            try g.addNode("where", WhereOp.self, inputs: ["c", "a", "b"], outputs: ["y"])
        }, reference: { _, _, n in [n > 2 ? 10 : -1, 20] })
    }

    /// Known integers (shape computations) are compared, negated, selected and reduced modulo at
    /// compile time.
    func testEvaluatedOnKnownIntegers() throws {
        let g = Engine.Graph(dtype: .float32, opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 6, 4])))
        try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
        try Self.ints(g, "k", [1, 6, 5])
        try Self.ints(g, "m", [-4, 4, 3])
        try g.addNode("eq", EqualOp.self, inputs: ["s", "k"], outputs: ["e"])
        try g.addNode("ne", NotOp.self, inputs: ["e"], outputs: ["ne"])
        try g.addNode("where", WhereOp.self, inputs: ["ne", "k", "m"], outputs: ["w"])
        try g.addNode("mod0", ModOp.self, inputs: ["w", "m"], outputs: ["r0"])
        try Self.ints(g, "d", [-3, 3, -3])
        try Self.ints(g, "v", [7, -7, -7])
        try g.addNode("mod0b", ModOp.self, inputs: ["v", "d"], outputs: ["r1"])
        try g.addNode("mod1", ModOp.self, ["fmod": .int(1)], inputs: ["v", "d"], outputs: ["r2"])
        try Self.ints(g, "three", [2, 3])
        try g.addNode("ex", ExpandOp.self, inputs: ["d", "three"], outputs: ["ex"])
        try g.addNode("sum", SumOp.self, inputs: ["v", "d", "d"], outputs: ["sm"])
        try Self.ints(g, "two", [2])
        try g.addNode("tile", TileOp.self, inputs: ["v", "two"], outputs: ["t"])
        try g.addNode("y", IdentityOp.self, inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        func known(_ name: String) -> [Int]? { g.names[name].flatMap { g[$0].known?.values.known } }
        XCTAssertNil(known("e"))                    // N == 1 is not known at compile time
        guard let n = g.batch else { return XCTFail("no batch symbol") }
        try g.inferTypes(bindings: [n: 1])
        XCTAssertEqual(known("e"), [1, 1, 0])
        XCTAssertEqual(known("ne"), [0, 0, 1])
        XCTAssertEqual(known("w"), [-4, 4, 5])
        XCTAssertEqual(known("r0"), [0, 0, 2])
        XCTAssertEqual(known("r1"), [-2, 2, -1])    // Python's %: the divisor's sign
        XCTAssertEqual(known("r2"), [1, -1, -1])    // C's fmod: the dividend's sign
        XCTAssertEqual(known("ex"), [-3, 3, -3, -3, 3, -3])
        XCTAssertEqual(known("sm"), [1, -1, -13])
        XCTAssertEqual(known("t"), [7, -7, -7, 7, -7, -7])
    }

    // MARK: Mod, PRelu

    /// Float Mod (fmod = 1) against C's fmod, and its gradients; integer Mod (both modes) of values
    /// cast to int64 at run time, cast back.
    func testModForward() throws {
        for (sa, sb) in Self.shapePairs {
            try checkBoth([sa, sb], range: 0.5...3, { g in
                try Self.constant(g, "sign", [2], [1, -1])
                try g.addNode("mod", ModOp.self, ["fmod": .int(1)], inputs: ["x0", "x1"], outputs: ["y"])
            }, reference: { x, s, _ in Self.broadcast(x, s) { Foundation.fmod($0[0], $0[1]) } })
        }
        // signs mixed: dividend and divisor of both signs (divisors away from 0)
        try checkBoth([["N", 4], [4]], range: -9...9, { g in
            try g.addNode("mod", ModOp.self, ["fmod": .int(1)], inputs: ["x0", "x1"], outputs: ["y"])
        }, reference: { x, s, _ in Self.broadcast(x, s) { $0[1].magnitude < 1e-3 ? .nan : Foundation.fmod($0[0], $0[1]) } })
        // fmod = 0 on floats: the divisor's sign (NumPy's mod)
        try checkBoth([["N", 4], [4]], range: -9...9, { g in
            try g.addNode("mod", ModOp.self, inputs: ["x0", "x1"], outputs: ["y"])
        }, reference: { x, s, _ in
            Self.broadcast(x, s) { v in
                let r = Foundation.fmod(v[0], v[1])
                return v[1].magnitude < 1e-3 ? .nan : r != 0 && (r < 0) != (v[1] < 0) ? r + v[1] : r
            }
        })
        for fmod in [0, 1] {
            try checkBoth([["N", 4]], range: -9...9, exact: true, { g in
                try Self.ints(g, "d", [3, -3, 4, -5])
                try g.addNode("toint", CastOp.self, ["to": .int(7)], inputs: ["x0"], outputs: ["i"])
                try g.addNode("mod", ModOp.self, ["fmod": .int(fmod)], inputs: ["i", "d"], outputs: ["r"])
                try g.addNode("back", CastOp.self, ["to": .int(g.dtype == .float32 ? 1 : 11)], inputs: ["r"], outputs: ["y"])
            }, reference: { x, _, _ in
                x[0].enumerated().map { i, v in
                    let a = Int(v.rounded(.towardZero)), d = [3, -3, 4, -5][i % 4]
                    let r = a % d
                    return Double(fmod == 1 || r == 0 || (r < 0) == (d < 0) ? r : r + d)
                }
            })
        }
    }

    func testModGradients() throws {
        for (sa, sb) in Self.shapePairs {
            try checkGradients([sa, sb], range: 0.55...2.95) { g in
                try g.addNode("mod", ModOp.self, ["fmod": .int(1)], inputs: ["x0", "x1"], outputs: ["y"])
            }
        }
        // fmod = 0, dividends of both signs
        try checkGradients([["N", 3], [3]], range: 0.55...2.95) { g in
            try Self.constant(g, "m", [3], [-1, 1, -1])
            try g.addNode("neg", MulOp.self, inputs: ["x0", "m"], outputs: ["a"])
            try g.addNode("mod", ModOp.self, inputs: ["a", "x1"], outputs: ["y"])
        }
    }

    /// PRelu with the slopes torch exports (per channel [C, 1, 1] for NCHW, one shared [1]), a slope
    /// broadcast along the batch, forward and gradients (the slope as an input and as a parameter).
    func testPRelu() throws {
        let prelu: ([Double]) -> Double = { $0[0] < 0 ? $0[1] * $0[0] : $0[0] }
        let cases: [([Any], [Int], [Double])] = [
            (["N", 3, 2, 2], [3, 1, 1], [0.25, -0.5, 1.5]), (["N", 4], [1], [0.1]), (["N", 2, 3], [3], [0.2, 0.3, -0.4]),
        ]
        for (xs, ss, sv) in cases {
            try checkBoth([xs], { g in
                try Self.constant(g, "s", ss, sv)
                try g.addNode("prelu", PReluOp.self, inputs: ["x0", "s"], outputs: ["y"])
            }, reference: { x, s, _ in Self.broadcast([x[0], sv], [s[0], ss], prelu) })
            try checkGradients([xs], parameters: ["s"]) { g in
                try Self.constant(g, "s", ss, sv)
                try g.addNode("prelu", PReluOp.self, inputs: ["x0", "s"], outputs: ["y"])
            }
        }
        try checkBoth([["N", 3], [3]], { g in
            try g.addNode("prelu", PReluOp.self, inputs: ["x0", "x1"], outputs: ["y"])
        }, reference: { x, s, _ in Self.broadcast(x, s, prelu) })
        try checkGradients([["N", 3], [3]]) { g in try g.addNode("prelu", PReluOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
    }

    // MARK: Where

    static var selectShapes: [([Any], [Any], [Any])] { [
        (["N", 3], ["N", 3], ["N", 3]), (["N", 3], [3], []), ([3], ["N", 1], ["N", 3]), (["N", 1, 4], [2, 1], [4]),
        ([2, "N"], ["N"], [2, 1]),
    ] }

    /// Where with the condition (x0 > 0) and both values broadcast every way; gradients routed by
    /// the condition to x and y, none to the condition.
    func testWhere() throws {
        for (sc, sx, sy) in Self.selectShapes {
            try checkBoth([sc, sx, sy], exact: true, { g in
                try Self.constant(g, "z", [], [0])
                try g.addNode("c", GreaterOp.self, inputs: ["x0", "z"], outputs: ["c"])
                try g.addNode("where", WhereOp.self, inputs: ["c", "x1", "x2"], outputs: ["y"])
            }, reference: { x, s, _ in Self.broadcast(x, s) { $0[0] > 0 ? $0[1] : $0[2] } })
            try checkGradients([sc, sx, sy]) { g in
                try Self.constant(g, "z", [], [0])
                try g.addNode("c", GreaterOp.self, inputs: ["x0", "z"], outputs: ["c"])
                try g.addNode("where", WhereOp.self, inputs: ["c", "x1", "x2"], outputs: ["y"])
            }
        }
        // a trainable value on one side, a constant on the other (masking as exporters emit it)
        try checkGradients([["N", 3]], parameters: ["p"]) { g in
            try Self.constant(g, "z", [], [0.25])
            try Self.constant(g, "p", [3], [1, 2, 3])
            try Self.constant(g, "ninf", [], [-10])
            try g.addNode("c", LessOp.self, inputs: ["x0", "z"], outputs: ["c"])
            try g.addNode("w1", WhereOp.self, inputs: ["c", "p", "ninf"], outputs: ["w"])
            try g.addNode("mul", MulOp.self, inputs: ["w", "x0"], outputs: ["y"])
        }
    }

    // MARK: CastLike

    func testCastLike() throws {
        // float64 → float32 (rounded), float → bool (x != 0) → float
        try checkForward(Double.self, [["N", 3]], tolerance: 0, { g in
            try g.addConstant("f", try Engine.Tensor(shape: [1], values: [Float(0)]))
            try g.addConstant("d", try Engine.Tensor(shape: [1], values: [Double(0)]))
            try g.addNode("down", CastLikeOp.self, inputs: ["x0", "f"], outputs: ["r"])
            try g.addNode("up", CastLikeOp.self, inputs: ["r", "d"], outputs: ["y"])
        }, reference: { x, _, _ in x[0].map { Double(Float($0)) } })
        try checkBoth([["N", 4]], grid: 1, exact: true, { g in
            try g.addConstant("b", try Engine.Tensor(shape: [], values: [true]))
            try Self.constant(g, "f", [], [0])
            try g.addNode("tobool", CastLikeOp.self, inputs: ["x0", "b"], outputs: ["m"])
            try g.addNode("tofloat", CastLikeOp.self, inputs: ["m", "f"], outputs: ["y"])
        }, reference: { x, _, _ in x[0].map { $0 != 0 ? 1 : 0 } })
        try checkGradients([["N", 3]]) { g in
            try Self.constant(g, "f", [], [0])
            try g.addNode("same", CastLikeOp.self, inputs: ["x0", "f"], outputs: ["y"])
        }
    }

    // MARK: Expand, Tile

    /// Expand of a [1, K] constant to Shape(x) = [N, K] (the batch symbol in the target shape), of an
    /// input along new and size-1 axes, and with 1s in the shape keeping the input's dimension.
    func testExpand() throws {
        try checkBoth([["N", 3]], exact: true, { g in
            try Self.constant(g, "c", [1, 3], [1, 2, 3])
            try g.addNode("shape", ShapeOp.self, inputs: ["x0"], outputs: ["s"])
            try g.addNode("expand", ExpandOp.self, inputs: ["c", "s"], outputs: ["y"])
        }, reference: { _, _, n in (0..<n).flatMap { _ in [1.0, 2, 3] } })
        let cases: [([Any], [Int], ([Int], Int) -> [Int])] = [
            (["N", 1, 3], [1, 4, 1], { _, n in [n, 4, 3] }),
            ([3], [2, 1, 3], { _, _ in [2, 1, 3] }),
            (["N", 2, 1], [2, 5], { _, n in [n, 2, 5] }),
        ]
        for (xs, target, outShape) in cases {
            try checkBoth([xs], exact: true, { g in
                try Self.ints(g, "t", target)
                try g.addNode("expand", ExpandOp.self, inputs: ["x0", "t"], outputs: ["y"])
            }, reference: { x, s, n in
                let o = outShape(s[0], n)
                return Self.broadcast([x[0], [Double](repeating: 0, count: o.reduce(1, *))], [s[0], o]) { $0[0] }
            })
            try checkGradients([xs]) { g in
                try Self.ints(g, "t", target)
                try g.addNode("expand", ExpandOp.self, inputs: ["x0", "t"], outputs: ["y"])
            }
        }
        // the batch-shaped expansion of a trainable [1, K] row gets the sum of the rows' gradients
        try checkGradients([["N", 3]], parameters: ["c"]) { g in
            try Self.constant(g, "c", [1, 3], [1, 2, 3])
            try g.addNode("shape", ShapeOp.self, inputs: ["x0"], outputs: ["s"])
            try g.addNode("expand", ExpandOp.self, inputs: ["c", "s"], outputs: ["e"])
            try g.addNode("mul", MulOp.self, inputs: ["e", "x0"], outputs: ["y"])
        }
    }

    /// Tile with the batch on the first and on a later axis, repeats of 1 and of 0.
    func testTile() throws {
        let cases: [([Any], [Int])] = [(["N", 2, 3], [2, 1, 3]), ([2, "N"], [3, 2]), (["N", 3], [1, 1]), (["N", 1, 2], [1, 3, 2])]
        for (xs, reps) in cases {
            try checkBoth([xs], exact: true, { g in
                try Self.ints(g, "r", reps)
                try g.addNode("tile", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
            }, reference: { x, s, _ in
                let inS = s[0], outS = zip(inS, reps).map { $0 * $1 }
                var out: [Double] = []
                for i in 0..<outS.reduce(1, *) {
                    var rest = i, off = 0, mult = 1
                    for d in stride(from: outS.count - 1, through: 0, by: -1) {
                        let idx = rest % outS[d]; rest /= outS[d]
                        off += (idx % inS[d]) * mult; mult *= inS[d]
                    }
                    out.append(x[0][off])
                }
                return out
            })
            try checkGradients([xs]) { g in
                try Self.ints(g, "r", reps)
                try g.addNode("tile", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
            }
        }
        let g = try graph(.float32, [["N", 2]]) { g in
            try Self.ints(g, "r", [1, 0])
            try g.addNode("tile", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
        }
        XCTAssertEqual(try OpTest.run(g, [[1, 2, 3, 4]] as [[Float]], n: 2)[0], [])
    }

    // MARK: Sum, Mean

    func testSumAndMean() throws {
        let shapes: [[Any]] = [["N", 3], [3], ["N", 1]]
        try checkBoth(shapes, { g in
            try g.addNode("sum", SumOp.self, inputs: ["x0", "x1", "x2"], outputs: ["y"])
        }, reference: { x, s, _ in Self.broadcast(x, s) { $0[0] + $0[1] + $0[2] } })
        try checkBoth(shapes, { g in
            try g.addNode("mean", MeanOp.self, inputs: ["x0", "x1", "x2"], outputs: ["y"])
        }, reference: { x, s, _ in Self.broadcast(x, s) { ($0[0] + $0[1] + $0[2]) / 3 } })
        try checkBoth([["N", 2]], exact: true, { g in
            try g.addNode("mean", MeanOp.self, inputs: ["x0"], outputs: ["y"])
        }, reference: { x, _, _ in x[0] })
        for op in [SumOp.self, MeanOp.self] as [any OpDefinition.Type] {
            try checkGradients(shapes) { g in try g.addNode("op", op, inputs: ["x0", "x1", "x2"], outputs: ["y"]) }
        }
    }

    // MARK: errors

    func testErrors() throws {
        func refused(_ shapes: [[Any]], _ what: String, _ build: (Engine.Graph) throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try { let g = try graph(.float32, shapes, build); _ = try Engine.compile(g) }(), what,
                                 file: file, line: line)
        }
        refused([["N", 3], ["N", 3]], "fmod 2") { g in try g.addNode("m", ModOp.self, ["fmod": .int(2)], inputs: ["x0", "x1"], outputs: ["y"]) }
        refused([["N", 3], ["N", 3]], "Mod of booleans") { g in
            try Self.constant(g, "z", [], [0])
            try g.addNode("a", LessOp.self, inputs: ["x0", "z"], outputs: ["a"])
            try g.addNode("b", LessOp.self, inputs: ["x1", "z"], outputs: ["b"])
            try g.addNode("m", ModOp.self, inputs: ["a", "b"], outputs: ["y"])
        }
        refused([["N", 3]], "integer Mod by zero") { g in
            try Self.ints(g, "a", [3, 4]); try Self.ints(g, "b", [1, 0])
            try g.addNode("m", ModOp.self, inputs: ["a", "b"], outputs: ["r"])
            try g.addNode("y", IdentityOp.self, inputs: ["x0"], outputs: ["y"])
        }
        refused([["N", 3], [4]], "a PRelu slope that does not broadcast") { g in try g.addNode("p", PReluOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        refused([["N", 3], [2, 1, 3]], "a PRelu slope that stretches x") { g in try g.addNode("p", PReluOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        refused([["N", 3], ["N", 3], ["N", 3]], "a float condition") { g in try g.addNode("w", WhereOp.self, inputs: ["x0", "x1", "x2"], outputs: ["y"]) }
        refused([["N", 3], ["N", 3]], "And of floats") { g in try g.addNode("a", AndOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        refused([["N", 3], [4]], "shapes that do not broadcast") { g in try g.addNode("c", LessOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        refused([["N", 3]], "Not of floats") { g in try g.addNode("n", NotOp.self, inputs: ["x0"], outputs: ["y"]) }
        refused([["N", 3]], "Tile repeats of the wrong length") { g in
            try Self.ints(g, "r", [2]); try g.addNode("t", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
        }
        refused([["N", 3]], "negative Tile repeats") { g in
            try Self.ints(g, "r", [1, -2]); try g.addNode("t", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
        }
        refused([["N", 3], [2]], "Tile repeats known only at run time") { g in
            try g.addNode("c", CastOp.self, ["to": .int(7)], inputs: ["x1"], outputs: ["r"])
            try g.addNode("t", TileOp.self, inputs: ["x0", "r"], outputs: ["y"])
        }
        refused([["N", 3]], "Expand to a shape that does not broadcast") { g in
            try Self.ints(g, "s", [4]); try g.addNode("e", ExpandOp.self, inputs: ["x0", "s"], outputs: ["y"])
        }
        refused([["N", 3]], "Expand to a negative dimension") { g in
            try Self.ints(g, "s", [-1, 3]); try g.addNode("e", ExpandOp.self, inputs: ["x0", "s"], outputs: ["y"])
        }
        refused([["N", 3]], "Expand to rank 9") { g in
            try Self.ints(g, "s", [Int](repeating: 1, count: 9)); try g.addNode("e", ExpandOp.self, inputs: ["x0", "s"], outputs: ["y"])
        }
        refused([["N", 3], ["N", 3]], "comparison of two types") { g in
            try g.addNode("c", CastOp.self, ["to": .int(11)], inputs: ["x1"], outputs: ["d"])
            try g.addNode("e", EqualOp.self, inputs: ["x0", "d"], outputs: ["y"])
        }
    }
}
