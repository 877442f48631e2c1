import Foundation
import XCTest
@testable import InLoopCore

/// The element-wise op family on the one engine (issue 10, phase 3.1 and Softmax/LogSoftmax of 3.6):
/// broadcasting binary ops, variadic Min/Max, the unary functions, Gelu, Clip, Softmax/LogSoftmax.
/// Forward against naive loops in Double (Float and Double plans, inference and differentiable, batch 1
/// and 5 through one plan); reverse and tangent against float64 finite differences (`OpTest`).
final class ElementwiseOpTests: XCTestCase {
    // MARK: helpers

    /// A graph over inputs x0, x1, ... of the given shapes ("N": the batch) whose output is "y".
    func graph(_ dtype: Engine.DType = .float64, _ inputs: [[Any]], opset: Int = 17,
               _ body: (Engine.Graph) throws -> Void) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: opset)
        for (k, s) in inputs.enumerated() { try g.addInput("x\(k)", Engine.TensorType(dtype, OpTest.shape(g, s))) }
        try body(g)
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    static func concrete(_ dims: [Any], _ n: Int) -> [Int] { dims.map { ($0 as? Int) ?? n } }

    /// Input values for batch n: input k in ranges[k] (default -2...2).
    static func inputs(_ shapes: [[Any]], _ n: Int, _ ranges: [ClosedRange<Double>]?, seed: UInt64) -> [[Double]] {
        shapes.enumerated().map { k, s in
            OpTest.values(concrete(s, n).reduce(1, *), seed: seed + UInt64(k) * 17 + UInt64(n), in: ranges?[k] ?? -2...2, as: Double.self)
        }
    }

    /// Runs `build`'s graph in T (both numerics) at n = 1 and 5 through one plan each, against
    /// `reference` (Double, from the inputs rounded to T).
    func checkForward<T: EngineScalar>(_: T.Type, _ shapes: [[Any]], ranges: [ClosedRange<Double>]? = nil, opset: Int = 17,
                                       tolerance: Double, _ build: (Engine.Graph) throws -> Void,
                                       reference: ([[Double]], [[Int]]) -> [Double],
                                       file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try graph(T.dtype, shapes, opset: opset, build)
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5] {
                let xs = Self.inputs(shapes, n, ranges, seed: 11).map { $0.map { T($0) } }
                let got = try h.forward(xs, n: n)[0]
                let want = reference(xs.map { $0.map { Double($0) } }, shapes.map { Self.concrete($0, n) })
                XCTAssertEqual(got.count, want.count, "\(T.self) n=\(n)", file: file, line: line)
                guard got.count == want.count else { return }
                for i in want.indices {
                    let w = want[i], v = Double(got[i])
                    if w.isNaN { XCTAssertTrue(v.isNaN, "\(T.self) n=\(n) [\(i)]: \(v), want NaN", file: file, line: line); continue }
                    let err = abs(v - w) / max(1, abs(w))
                    if !(err <= tolerance) {
                        XCTFail("\(g.nodes.map(\.name)) \(T.self) \(numerics == .inference ? "inference" : "differentiable") n=\(n) [\(i)]: \(v), want \(w)",
                                file: file, line: line)
                        return
                    }
                }
            }
        }
    }

    func checkBoth(_ shapes: [[Any]], ranges: [ClosedRange<Double>]? = nil, opset: Int = 17, floatTolerance: Double = 2e-6,
                   _ build: (Engine.Graph) throws -> Void, reference: ([[Double]], [[Int]]) -> [Double],
                   file: StaticString = #filePath, line: UInt = #line) throws {
        try checkForward(Float.self, shapes, ranges: ranges, opset: opset, tolerance: floatTolerance, build, reference: reference,
                         file: file, line: line)
        try checkForward(Double.self, shapes, ranges: ranges, opset: opset, tolerance: 1e-13, build, reference: reference,
                         file: file, line: line)
    }

    /// The float64 gradient check at n = 3 with inputs in `ranges`.
    func checkGradients(_ shapes: [[Any]], ranges: [ClosedRange<Double>]? = nil, opset: Int = 17, parameters: [String] = [],
                        _ build: (Engine.Graph) throws -> Void, file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try graph(.float64, shapes, opset: opset, build)
        g.parameters = parameters.compactMap { g.names[$0] }
        try OpTest.checkGradients(g, n: 3, inputs: Self.inputs(shapes, 3, ranges, seed: 23), tolerance: 1e-6, file: file, line: line)
    }

    /// NumPy broadcasting, naively: y[idx] = f(a[idx mapped], b[idx mapped]).
    static func broadcast(_ a: [Double], _ sa: [Int], _ b: [Double], _ sb: [Int], _ f: (Double, Double) -> Double) -> [Double] {
        let r = max(sa.count, sb.count)
        let pa = [Int](repeating: 1, count: r - sa.count) + sa, pb = [Int](repeating: 1, count: r - sb.count) + sb
        let sy = (0..<r).map { max(pa[$0], pb[$0]) }
        var out: [Double] = []
        for i in 0..<sy.reduce(1, *) {
            var rest = i, ia = 0, ib = 0, ma = 1, mb = 1
            for d in stride(from: r - 1, through: 0, by: -1) {
                let idx = rest % sy[d]; rest /= sy[d]
                ia += (pa[d] == 1 ? 0 : idx) * ma; ma *= pa[d]
                ib += (pb[d] == 1 ? 0 : idx) * mb; mb *= pb[d]
            }
            out.append(f(a[ia], b[ib]))
        }
        return out
    }

    static func constant(_ g: Engine.Graph, _ name: String, _ shape: [Int], _ values: [Double]) throws {
        if g.dtype == .float32 {
            try g.addConstant(name, try Engine.Tensor(shape: shape, values: values.map { Float($0) }))
        } else {
            try g.addConstant(name, try Engine.Tensor(shape: shape, values: values))
        }
    }

    // MARK: binary ops

    static var binaryOps: [(any OpDefinition.Type, (Double, Double) -> Double)] { [
        (AddOp.self, { $0 + $1 }), (SubOp.self, { $0 - $1 }), (MulOp.self, { $0 * $1 }), (DivOp.self, { $0 / $1 }),
        (PowOp.self, { Foundation.pow($0, $1) }), (MinOp.self, { Swift.min($0, $1) }), (MaxOp.self, { Swift.max($0, $1) }),
    ] }

    /// Shape pairs: same shape, per-feature vector (either side), the batch on a later axis, both
    /// sides stretched, a scalar, a rank-0 operand, a batch-free result, rank 8.
    static var shapePairs: [([Any], [Any])] { [
        (["N", 3], ["N", 3]), (["N", 4], [4]), ([4], ["N", 4]), (["N", 1, 4], [2, 1]), ([2, "N"], [2, 1]),
        (["N", 3], [1]), ([], ["N", 2]), ([1, 3], [2, 1]), (["N", 2, 3], ["N", 1, 3]), (["N", 1], [1, 3]),
        (["N", 1, 2, 1, 2, 1, 2, 1], [2, 1, 2, 1, 2, 1, 2]),       // rank 8, nothing merges: 8 strided axes
    ] }

    func testBinaryOpsBroadcastForward() throws {
        for (op, f) in Self.binaryOps {
            for (sa, sb) in Self.shapePairs {
                // Div and Pow: denominators and bases in [0.5, 2]
                let ranges: [ClosedRange<Double>] = op == PowOp.self ? [0.5...2, -2...2] : op == DivOp.self ? [-2...2, 0.5...2] : [-2...2, -2...2]
                try checkBoth([sa, sb], ranges: ranges, floatTolerance: 1e-5, { g in
                    try g.addNode("op", op, inputs: ["x0", "x1"], outputs: ["y"])
                }, reference: { x, s in Self.broadcast(x[0], s[0], x[1], s[1], f) })
            }
        }
    }

    func testBinaryOpsGradients() throws {
        for (op, _) in Self.binaryOps {
            for (sa, sb) in Self.shapePairs {
                let ranges: [ClosedRange<Double>] = op == PowOp.self ? [0.5...2, -2...2] : op == DivOp.self ? [-2...2, 0.5...2] : [-2...2, -2...2]
                try checkGradients([sa, sb], ranges: ranges) { g in
                    try g.addNode("op", op, inputs: ["x0", "x1"], outputs: ["y"])
                }
            }
        }
    }

    /// A trainable per-feature scale and shift (parameters get gradients in the flat vector), a
    /// constant operand none; the same input on both sides of Mul (x·x).
    func testBinaryOpsWithParametersAndSharedOperands() throws {
        try checkGradients([["N", 3]], parameters: ["s", "t"]) { g in
            try Self.constant(g, "s", [3], [0.5, -1.5, 2])
            try Self.constant(g, "t", [1, 3], [0.25, 0.5, -1])
            try Self.constant(g, "c", [3], [1.5, 2, 3])
            try g.addNode("mul", MulOp.self, inputs: ["x0", "s"], outputs: ["a"])
            try g.addNode("sub", SubOp.self, inputs: ["t", "a"], outputs: ["b"])
            try g.addNode("div", DivOp.self, inputs: ["b", "c"], outputs: ["d"])
            try g.addNode("sq", MulOp.self, inputs: ["d", "d"], outputs: ["y"])
        }
        try checkBoth([["N", 3]], { g in
            try Self.constant(g, "s", [3], [0.5, -1.5, 2])
            try g.addNode("mul", MulOp.self, inputs: ["x0", "s"], outputs: ["a"])
            try g.addNode("sq", MulOp.self, inputs: ["a", "a"], outputs: ["y"])
        }, reference: { x, _ in x[0].enumerated().map { i, v in let a = v * [0.5, -1.5, 2][i % 3]; return a * a } })
    }

    /// Pow with a constant scalar exponent (the unary power, also an int64 exponent) and a tensor one.
    func testPowConstantExponents() throws {
        for (e, shape) in [(2.0, [Int]()), (3.0, [1]), (0.5, []), (-1.25, [1, 1])] {
            try checkBoth([["N", 3]], ranges: [0.5...2], floatTolerance: 1e-5, { g in
                try Self.constant(g, "e", shape, [e])
                try g.addNode("pow", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
            }, reference: { x, _ in x[0].map { Foundation.pow($0, e) } })
            try checkGradients([["N", 3]], ranges: [0.5...2]) { g in
                try Self.constant(g, "e", shape, [e])
                try g.addNode("pow", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
            }
        }
        try checkBoth([["N", 2]], ranges: [-2...2], { g in
            try g.addConstant("e", try Engine.Tensor(shape: [], values: [Int64(3)]))
            try g.addNode("pow", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
        }, reference: { x, _ in x[0].map { $0 * $0 * $0 } })
        // an exponent constant of the other float type (ONNX Pow's T1), converted
        try checkForward(Float.self, [["N", 3]], ranges: [0.5...2], tolerance: 1e-5, { g in
            try g.addConstant("e", try Engine.Tensor(shape: [3], values: [2.0, -0.5, 1.25]))
            try g.addNode("pow", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
        }, reference: { x, _ in x[0].enumerated().map { i, v in Foundation.pow(v, [2, -0.5, 1.25][i % 3]) } })
        try checkBoth([["N", 3]], ranges: [0.5...2], floatTolerance: 1e-5, { g in
            try Self.constant(g, "e", [3], [2, -0.5, 1.5])
            try g.addNode("pow", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
        }, reference: { x, _ in x[0].enumerated().map { i, v in Foundation.pow(v, [2, -0.5, 1.5][i % 3]) } })
    }

    /// Pow's derivative conventions: none through a zero exponent, none to the exponent where the
    /// base is not positive.
    func testPowDerivativeConventions() throws {
        let g = try graph(.float64, [[2], [2]]) { g in try g.addNode("pow", PowOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        let y = try h.forward([[0, -2], [0, 2]], n: 1)[0]
        XCTAssertEqual(y, [1, 4])
        let (gx, _) = try h.backward(seeds: [[1, 1]], n: 1)
        XCTAssertEqual(gx[0], [0, -4])     // d/da: 0 for exponent 0; 2·(-2) = -4
        XCTAssertEqual(gx[1], [0, 0])      // d/db: 0 where a ≤ 0
    }

    func testMinMaxVariadic() throws {
        for (op, f) in [(MinOp.self as any OpDefinition.Type, { (a: Double, b: Double) in Swift.min(a, b) }),
                        (MaxOp.self, { (a: Double, b: Double) in Swift.max(a, b) })] {
            // one input: a copy
            try checkBoth([["N", 3]], { g in try g.addNode("m", op, inputs: ["x0"], outputs: ["y"]) },
                          reference: { x, _ in x[0] })
            // three inputs, broadcast together
            try checkBoth([["N", 1, 3], [2, 1], [3]], { g in
                try g.addNode("m", op, inputs: ["x0", "x1", "x2"], outputs: ["y"])
            }, reference: { x, s in
                let ab = Self.broadcast(x[0], s[0], x[1], s[1], f)
                return Self.broadcast(ab, [s[0][0], 2, 3], x[2], s[2], f)
            })
            try checkGradients([["N", 1, 3], [2, 1], [3]]) { g in
                try g.addNode("m", op, inputs: ["x0", "x1", "x2"], outputs: ["y"])
            }
            // ties: the value and the gradient go to the first input
            let g = try graph(.float64, [[3], [3], [3]]) { g in try g.addNode("m", op, inputs: ["x0", "x1", "x2"], outputs: ["y"]) }
            let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
            _ = try h.forward([[1, 2, 3], [1, 2, 0], [1, 5, 3]], n: 1)
            let (gx, _) = try h.backward(seeds: [[1, 1, 1]], n: 1)
            if op == MinOp.self {
                XCTAssertEqual(gx[0], [1, 1, 0]); XCTAssertEqual(gx[1], [0, 0, 1]); XCTAssertEqual(gx[2], [0, 0, 0])
            } else {
                XCTAssertEqual(gx[0], [1, 0, 1]); XCTAssertEqual(gx[1], [0, 0, 0]); XCTAssertEqual(gx[2], [0, 1, 0])
            }
        }
    }

    /// Integer Min/Max/Neg/Abs/Sign on shapes are evaluated at compile time.
    func testIntegerShapeComputations() throws {
        let g = Engine.Graph(dtype: .float32, opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 6])))
        try g.addConstant("two", try Engine.Tensor(shape: [1], values: [Int64(-2)]))
        try g.addConstant("big", try Engine.Tensor(shape: [2], values: [Int64(100), Int64(-3)]))
        try g.addNode("shape", ShapeOp.self, inputs: ["x"], outputs: ["s"])
        try g.addNode("neg", NegOp.self, inputs: ["two"], outputs: ["m"])          // [2]
        try g.addNode("abs", AbsOp.self, inputs: ["big"], outputs: ["ab"])         // [100, 3]
        try g.addNode("min", MinOp.self, inputs: ["ab", "m", "ab"], outputs: ["lim"])    // [2, 2]
        try g.addNode("max", MaxOp.self, inputs: ["s", "s"], outputs: ["t"])          // [N, 6]
        try g.addNode("sign", SignOp.self, inputs: ["big"], outputs: ["sg"])          // [1, -1]
        try g.verify()
        try g.inferTypes()
        let n = g.symbol(named: "N")
        XCTAssertEqual(g[g.names["lim"]!].known?.values, [2, 2])
        XCTAssertEqual(g[g.names["t"]!].known?.values, [Engine.SymInt(n), 6])
        XCTAssertEqual(g[g.names["sg"]!].known?.values, [1, -1])
    }

    // MARK: unary ops

    static var unaryOps: [(any OpDefinition.Type, [String: Engine.AttributeValue], ClosedRange<Double>, (Double) -> Double)] { [
        (ErfOp.self, [:], -2...2, { Foundation.erf($0) }),
        (ExpOp.self, [:], -2...2, { Foundation.exp($0) }),
        (LogOp.self, [:], 0.25...3, { Foundation.log($0) }),
        (SqrtOp.self, [:], 0.25...3, { $0.squareRoot() }),
        (NegOp.self, [:], -2...2, { -$0 }),
        (AbsOp.self, [:], -2...2, { Swift.abs($0) }),
        (ReciprocalOp.self, [:], 0.5...3, { 1 / $0 }),
        (FloorOp.self, [:], -3...3, { Foundation.floor($0) }),
        (CeilOp.self, [:], -3...3, { Foundation.ceil($0) }),
        (RoundOp.self, [:], -3...3, { Foundation.rint($0) }),
        (SignOp.self, [:], -2...2, { $0 > 0 ? 1 : $0 < 0 ? -1 : 0 }),
        (SoftsignOp.self, [:], -3...3, { $0 / (1 + Swift.abs($0)) }),
        (HardSwishOp.self, [:], -5...5, { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }),
        // attribute floats are float32 (as ONNX stores them): alpha = 0.2f
        (HardSigmoidOp.self, [:], -5...5, { Swift.max(0, Swift.min(1, Double(Float(0.2)) * $0 + 0.5)) }),
        (HardSigmoidOp.self, ["alpha": .float(0.5), "beta": .float(0.25)], -3...3,
         { Swift.max(0, Swift.min(1, 0.5 * $0 + 0.25)) }),
        (SeluOp.self, [:], -2...2,
         { $0 > 0 ? Double(Float(1.05070102214813232421875)) * $0
                  : Double(Float(1.05070102214813232421875)) * Double(Float(1.67326319217681884765625)) * Foundation.expm1($0) }),
        (SeluOp.self, ["alpha": .float(2), "gamma": .float(0.5)], -2...2, { $0 > 0 ? 0.5 * $0 : Foundation.expm1($0) }),
        (GeluOp.self, [:], -3...3, { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }),
        (GeluOp.self, ["approximate": .string("tanh")], -3...3,
         { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }),
    ] }

    func testUnaryOpsForward() throws {
        for (op, attrs, range, f) in Self.unaryOps {
            for shape in [["N", 3], [2, "N", 1], [4]] as [[Any]] {
                try checkBoth([shape], ranges: [range], floatTolerance: 4e-6, { g in
                    try g.addNode("\(op.name)\(attrs)", op, attrs, inputs: ["x0"], outputs: ["y"])
                }, reference: { x, _ in x[0].map(f) })
            }
        }
    }

    func testUnaryOpsGradients() throws {
        for (op, attrs, range, _) in Self.unaryOps {
            try checkGradients([["N", 4]], ranges: [range]) { g in
                try g.addNode("op", op, attrs, inputs: ["x0"], outputs: ["y"])
            }
        }
    }

    /// A chain of element-wise steps in an inference plan (slots reused in place) equals the naive
    /// result; so does the differentiable plan.
    func testElementwiseChainInPlace() throws {
        try checkBoth([["N", 4], [4]], { g in
            try g.addNode("exp", ExpOp.self, inputs: ["x0"], outputs: ["a"])
            try g.addNode("neg", NegOp.self, inputs: ["a"], outputs: ["b"])
            try g.addNode("add", AddOp.self, inputs: ["b", "x1"], outputs: ["c"])
            try g.addNode("clip", ClipOp.self, inputs: ["c"], outputs: ["d"])
            try g.addNode("sm", SoftmaxOp.self, inputs: ["d"], outputs: ["y"])
        }, reference: { x, s in
            let c = Self.broadcast(x[0].map { -Foundation.exp($0) }, s[0], x[1], s[1], +)
            return Self.softmax(c, outer: s[0][0], length: 4, inner: 1, log: false)
        })
        let plan = try Engine.compile(try graph(.float32, [["N", 4]]) { g in
            try g.addNode("exp", ExpOp.self, inputs: ["x0"], outputs: ["a"])
            try g.addNode("neg", NegOp.self, inputs: ["a"], outputs: ["b"])
            try g.addNode("sm", LogSoftmaxOp.self, inputs: ["b"], outputs: ["y"])
        })
        XCTAssertEqual(plan.slotCount, 1)   // exp writes the slot neg overwrites in place; log-softmax writes y
    }

    // MARK: Clip

    func testClip() throws {
        func ref(_ lo: Double, _ hi: Double) -> ([[Double]], [[Int]]) -> [Double] {
            { x, _ in x[0].map { Swift.min(Swift.max($0, lo), hi) } }
        }
        // opset < 11: attributes
        try checkBoth([["N", 5]], opset: 6, { g in
            try g.addNode("clip", ClipOp.self, ["min": .float(-0.5), "max": .float(1)], inputs: ["x0"], outputs: ["y"])
        }, reference: ref(-0.5, 1))
        try checkBoth([["N", 5]], opset: 6, { g in
            try g.addNode("clip", ClipOp.self, ["max": .float(0.25)], inputs: ["x0"], outputs: ["y"])
        }, reference: ref(-.infinity, 0.25))
        // opset ≥ 11: constant inputs, either absent
        for (lo, hi) in [(-0.5, 1.0), (-0.5, Double.infinity), (-Double.infinity, 0.75), (-Double.infinity, Double.infinity)] {
            let inputs = [lo.isFinite ? "lo" : "", hi.isFinite ? "hi" : ""]
            try checkBoth([["N", 5]], opset: 13, { g in
                if lo.isFinite { try Self.constant(g, "lo", [], [lo]) }
                if hi.isFinite { try Self.constant(g, "hi", [1], [hi]) }
                try g.addNode("clip", ClipOp.self, inputs: ["x0"] + (inputs[1].isEmpty ? [inputs[0]].filter { !$0.isEmpty } : inputs),
                              outputs: ["y"])
            }, reference: ref(lo, hi))
            try checkGradients([["N", 5]], ranges: [-2...2], opset: 13) { g in
                if lo.isFinite { try Self.constant(g, "lo", [], [lo]) }
                if hi.isFinite { try Self.constant(g, "hi", [1], [hi]) }
                try g.addNode("clip", ClipOp.self, inputs: ["x0"] + (inputs[1].isEmpty ? [inputs[0]].filter { !$0.isEmpty } : inputs),
                              outputs: ["y"])
            }
        }
        // bounds given at run time (graph inputs): forward, and gradients to x and to both bounds
        try checkBoth([["N", 5], [], [1]], ranges: [-2...2, -1...(-0.5), 0.5...1], opset: 13, { g in
            try g.addNode("clip", ClipOp.self, inputs: ["x0", "x1", "x2"], outputs: ["y"])
        }, reference: { x, _ in x[0].map { Swift.min(Swift.max($0, x[1][0]), x[2][0]) } })
        try checkGradients([["N", 5], [], [1]], ranges: [-2...2, -1...(-0.5), 0.5...1], opset: 13) { g in
            try g.addNode("clip", ClipOp.self, inputs: ["x0", "x1", "x2"], outputs: ["y"])
        }
    }

    /// Regression: min > max gives max everywhere (ONNX: min(max(x, lo), hi)); the old kernel gave lo
    /// below lo. At the bounds x gets no gradient (strictly inside only, the old engine's rule).
    func testClipConventions() throws {
        for opset in [6, 13] {
            let g = try graph(.float64, [[4]], opset: opset) { g in
                if opset < 11 {
                    try g.addNode("clip", ClipOp.self, ["min": .float(1), "max": .float(-1)], inputs: ["x0"], outputs: ["y"])
                } else {
                    try Self.constant(g, "lo", [], [1]); try Self.constant(g, "hi", [], [-1])
                    try g.addNode("clip", ClipOp.self, inputs: ["x0", "lo", "hi"], outputs: ["y"])
                }
            }
            XCTAssertEqual(try OpTest.run(g, [[-3, 0, 0.5, 3]] as [[Double]], n: 1)[0], [-1, -1, -1, -1])
        }
        let g = try graph(.float64, [[4]], opset: 13) { g in
            try Self.constant(g, "lo", [], [-1]); try Self.constant(g, "hi", [], [1])
            try g.addNode("clip", ClipOp.self, inputs: ["x0", "lo", "hi"], outputs: ["y"])
        }
        let h = try OpTest.Harness<Double>(g, numerics: .differentiable)
        XCTAssertEqual(try h.forward([[-1, 1, 0.5, -2]], n: 1)[0], [-1, 1, 0.5, -1])
        XCTAssertEqual(try h.backward(seeds: [[1, 1, 1, 1]], n: 1).inputs[0], [0, 0, 1, 0])
    }

    // MARK: Softmax, LogSoftmax

    static func softmax(_ x: [Double], outer: Int, length: Int, inner: Int, log: Bool) -> [Double] {
        var y = x
        for o in 0..<outer {
            for i in 0..<inner {
                let idx = (0..<length).map { (o * length + $0) * inner + i }
                let m = idx.map { x[$0] }.max() ?? 0
                let s = idx.reduce(0.0) { $0 + Foundation.exp(x[$1] - m) }
                for k in idx { y[k] = log ? x[k] - m - Foundation.log(s) : Foundation.exp(x[k] - m) / s }
            }
        }
        return y
    }

    func testSoftmax() throws {
        // (shape, attributes, opset, outer/length/inner from the concrete shape)
        let cases: [([Any], [String: Engine.AttributeValue], Int, ([Int]) -> (Int, Int, Int))] = [
            (["N", 5], [:], 13, { ($0[0], 5, 1) }),
            (["N", 3, 4], ["axis": .int(1)], 13, { ($0[0], 3, 4) }),
            (["N", 3], ["axis": .int(0)], 13, { (1, $0[0], 3) }),                 // over the batch
            ([2, "N", 3], ["axis": .int(-2)], 18, { (2, $0[1], 3) }),
            (["N", 3, 4], [:], 11, { ($0[0], 12, 1) }),                           // opset < 13: 2-D from axis 1
            (["N", 3, 4], ["axis": .int(2)], 11, { ($0[0] * 3, 4, 1) }),
            (["N", 3, 4], ["axis": .int(0)], 11, { (1, $0[0] * 12, 1) }),
        ]
        for log in [false, true] {
            let op: any OpDefinition.Type = log ? LogSoftmaxOp.self : SoftmaxOp.self
            for (shape, attrs, opset, geo) in cases {
                try checkBoth([shape], opset: opset, { g in
                    try g.addNode("sm", op, attrs, inputs: ["x0"], outputs: ["y"])
                }, reference: { x, s in let (o, l, i) = geo(s[0]); return Self.softmax(x[0], outer: o, length: l, inner: i, log: log) })
                try checkGradients([shape], opset: opset) { g in
                    try g.addNode("sm", op, attrs, inputs: ["x0"], outputs: ["y"])
                }
            }
        }
    }

    /// A float64 network of the family's ops with a trainable weight, end to end: gradient check.
    func testMixedGraphGradients() throws {
        try checkGradients([["N", 3], [3]], parameters: ["w"]) { g in
            try Self.constant(g, "w", [2, 3], [0.5, -1, 0.25, 1.5, 0.75, -0.5])
            try Self.constant(g, "e", [], [2])
            try g.addNode("dense", DenseOp.self, inputs: ["x0", "w"], outputs: ["h"])          // [N, 2]
            try g.addNode("us", UnsqueezeOp.self, ["axes": .ints([2])], inputs: ["h"], outputs: ["h3"])   // [N, 2, 1]
            try g.addNode("mul", MulOp.self, inputs: ["h3", "x1"], outputs: ["m"])             // [N, 2, 3]
            try g.addNode("tanh", TanhOp.self, inputs: ["m"], outputs: ["t"])
            try g.addNode("pow", PowOp.self, inputs: ["t", "e"], outputs: ["p"])
            try g.addNode("max", MaxOp.self, inputs: ["p", "h3"], outputs: ["q"])
            try g.addNode("ls", LogSoftmaxOp.self, ["axis": .int(1)], inputs: ["q"], outputs: ["y"])
        }
    }

    // MARK: errors

    func testErrors() throws {
        func fails(_ what: String, opset: Int = 17, compile: Bool = false, _ shapes: [[Any]], _ body: (Engine.Graph) throws -> Void) {
            do {
                let g = try graph(.float32, shapes, opset: opset, body)
                if compile { _ = try Engine.compile(g) }
                XCTFail("\(what): no error")
            } catch let e as InLoopError {
                XCTAssertFalse(e.message.isEmpty, what)
            } catch {
                XCTFail("\(what): \(error)")
            }
        }
        fails("shapes that do not broadcast", [["N", 3], [4]]) { g in try g.addNode("a", SubOp.self, inputs: ["x0", "x1"], outputs: ["y"]) }
        fails("two types", [["N", 3]]) { g in
            try g.addConstant("c", try Engine.Tensor(shape: [3], values: [1.0, 2, 3]))
            try g.addNode("a", MulOp.self, inputs: ["x0", "c"], outputs: ["y"])
        }
        fails("legacy broadcast attribute", [["N", 3], [3]]) { g in
            try g.addNode("a", AddOp.self, ["broadcast": .int(1)], inputs: ["x0", "x1"], outputs: ["y"])
        }
        fails("an integer exponent at run time", [["N", 3]]) { g in
            try g.addInput("e", Engine.TensorType(.int64, [3]))
            try g.addNode("p", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
        }
        fails("an exponent of the other float type at run time", compile: true, [["N", 3]]) { g in
            try g.addInput("e", Engine.TensorType(.float64, [3]))
            try g.addNode("p", PowOp.self, inputs: ["x0", "e"], outputs: ["y"])
        }
        fails("rank above 8", [[1, 1, 1, 1, 1, 1, 1, 1, 2]]) { g in try g.addNode("e", ExpOp.self, inputs: ["x0"], outputs: ["y"]) }
        fails("Min of no input", [["N", 3]]) { g in try g.addNode("m", MinOp.self, inputs: [], outputs: ["y"]) }
        fails("Max of two types", [["N", 3]]) { g in
            try g.addConstant("c", try Engine.Tensor(shape: [3], values: [1.0, 2, 3]))
            try g.addNode("m", MaxOp.self, inputs: ["x0", "c", "x0"], outputs: ["y"])
        }
        fails("a batch stretched to a known size", compile: true, [["N", 3], [4, 3]]) { g in
            try g.addNode("a", AddOp.self, inputs: ["x0", "x1"], outputs: ["y"])
        }
        fails("Exp of integers", [["N", 3]]) { g in
            try g.addConstant("c", try Engine.Tensor(shape: [3], values: [Int64(1), 2, 3]))
            try g.addNode("e", ExpOp.self, inputs: ["c"], outputs: ["y"])
        }
        fails("Neg of integers at run time", compile: true, [["N", 3]]) { g in
            try g.addInput("i", Engine.TensorType(.int64, [3]))
            try g.addNode("n", NegOp.self, inputs: ["i"], outputs: ["y"])
        }
        fails("HardSigmoid alpha infinite", [["N", 3]]) { g in
            try g.addNode("h", HardSigmoidOp.self, ["alpha": .float(.infinity)], inputs: ["x0"], outputs: ["y"])
        }
        fails("Selu gamma not a number", [["N", 3]]) { g in
            try g.addNode("s", SeluOp.self, ["gamma": .string("x")], inputs: ["x0"], outputs: ["y"])
        }
        fails("Gelu approximate unknown", [["N", 3]]) { g in
            try g.addNode("g", GeluOp.self, ["approximate": .string("fast")], inputs: ["x0"], outputs: ["y"])
        }
        fails("Clip bound not a scalar", opset: 13, [["N", 3], [3]]) { g in
            try g.addNode("c", ClipOp.self, inputs: ["x0", "x1"], outputs: ["y"])
        }
        fails("Clip bound of another type", opset: 13, [["N", 3]]) { g in
            try g.addConstant("lo", try Engine.Tensor(shape: [], values: [0.0]))
            try g.addNode("c", ClipOp.self, inputs: ["x0", "lo"], outputs: ["y"])
        }
        fails("Clip attributes at opset 13", opset: 13, [["N", 3]]) { g in
            try g.addNode("c", ClipOp.self, ["min": .float(0)], inputs: ["x0"], outputs: ["y"])
        }
        fails("Clip attribute NaN", opset: 6, [["N", 3]]) { g in
            try g.addNode("c", ClipOp.self, ["min": .float(.nan)], inputs: ["x0"], outputs: ["y"])
        }
        fails("Clip with four inputs", opset: 13, [["N", 3], [], [], []]) { g in
            try g.addNode("c", ClipOp.self, inputs: ["x0", "x1", "x2", "x3"], outputs: ["y"])
        }
        fails("Softmax axis out of range", [["N", 3]]) { g in
            try g.addNode("s", SoftmaxOp.self, ["axis": .int(2)], inputs: ["x0"], outputs: ["y"])
        }
        fails("LogSoftmax axis huge", [["N", 3]]) { g in
            try g.addNode("s", LogSoftmaxOp.self, ["axis": .int(Int.min)], inputs: ["x0"], outputs: ["y"])
        }
        fails("Softmax of a scalar", [[]]) { g in try g.addNode("s", SoftmaxOp.self, inputs: ["x0"], outputs: ["y"]) }
    }
}
