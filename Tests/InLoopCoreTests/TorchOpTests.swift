import Foundation
import XCTest
@testable import InLoopCore

/// The ops of family torch (`Ops/TorchOps.swift`, issue 10 item 6): Trilu. Forward against a naive
/// loop in Float and Double (inference and differentiable plans, batch 1 and 5 through one plan);
/// reverse and tangent against float64 finite differences (`OpTest.checkGradients`); compile-time
/// folding of integer inputs; errors as statuses.
final class TorchOpTests: XCTestCase {
    /// x0 of `shape` (with the batch "N"), optional constant k, y = Trilu(x0, k).
    func triluGraph(_ dtype: Engine.DType, _ shape: [Any], upper: Int?, k: Int?) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 18)
        try g.addInput("x0", Engine.TensorType(dtype, OpTest.shape(g, shape)))
        var inputs = ["x0"]
        if let k {
            try g.addConstant("k", try Engine.Tensor(shape: [], values: [Int64(k)]))
            inputs.append("k")
        }
        try g.addNode("trilu", TriluOp.self, upper.map { ["upper": .int($0)] } ?? [:], inputs: inputs, outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// numpy.tril/triu over the last two axes of x (flat, shape dims).
    static func reference(_ x: [Double], _ dims: [Int], upper: Bool, k: Int) -> [Double] {
        let r = dims[dims.count - 2], c = dims[dims.count - 1]
        return x.indices.map { e in
            let i = (e % (r * c)) / c, j = e % c
            return (upper ? j - i >= k : j - i <= k) ? x[e] : 0
        }
    }

    func checkForward<T: EngineScalar>(_: T.Type, _ shape: [Any], upper: Int?, k: Int?, file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try triluGraph(T.dtype, shape, upper: upper, k: k)
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5] {
                let dims = shape.map { ($0 as? Int) ?? n }
                var x = OpTest.values(dims.reduce(1, *), seed: UInt64(7 + n), as: T.self)
                x[x.count - 1] = T.infinity   // outside a lower triangle: must become 0, not NaN
                let got = try h.forward([x], n: n)[0]
                let want = Self.reference(x.map { Double($0) }, dims, upper: (upper ?? 1) == 1, k: k ?? 0)
                XCTAssertEqual(got.map { Double($0) }, want, "\(T.self) \(shape) upper=\(String(describing: upper)) k=\(String(describing: k)) n=\(n)",
                               file: file, line: line)
            }
        }
    }

    func testTriluForward() throws {
        for shape: [Any] in [["N", 4, 5], ["N", 2, 3, 3], [3, 4]] {
            for upper in [nil, 0, 1] {
                for k in [nil, 0, 1, -2, 9] {
                    try checkForward(Float.self, shape, upper: upper, k: k)
                    try checkForward(Double.self, shape, upper: upper, k: k)
                }
            }
        }
    }

    func testTriluGradients() throws {
        for (upper, k) in [(0, 0), (0, 1), (1, -1), (1, 2)] {
            let g = try triluGraph(.float64, ["N", 3, 4], upper: upper, k: k)
            try OpTest.checkGradients(g, n: 3)
        }
        // a parameter through Trilu: its gradient is the masked seed
        let g = Engine.Graph(dtype: .float64, opset: 18)
        try g.addInput("x0", Engine.TensorType(.float64, OpTest.shape(g, ["N", 3, 3])))
        try g.addConstant("w", try Engine.Tensor(shape: [3, 3], values: OpTest.values(9, seed: 3, as: Double.self)))
        try g.addNode("trilu", TriluOp.self, ["upper": .int(0)], inputs: ["w"], outputs: ["t"])
        try g.addNode("mul", MulOp.self, inputs: ["x0", "t"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        g.parameters = [g.names["w"]].compactMap { $0 }
        XCTAssertEqual(g.parameters.count, 1)
        try OpTest.checkGradients(g, n: 2)
    }

    /// Integer Trilu of a constant is folded at compile time (as torch's masks built from ones are).
    func testTriluFoldsKnownIntegers() throws {
        let g = Engine.Graph(dtype: .float32, opset: 18)
        try g.addInput("x0", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3, 3])))
        try g.addConstant("m", try Engine.Tensor(shape: [3, 3], values: (1...9).map { Int64($0) }))
        try g.addNode("trilu", TriluOp.self, ["upper": .int(0)], inputs: ["m"], outputs: ["t"])
        try g.addNode("cast", CastOp.self, ["to": .int(1)], inputs: ["t"], outputs: ["c"])
        try g.addNode("add", AddOp.self, inputs: ["x0", "c"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        let t = try XCTUnwrap(g.names["t"])
        XCTAssertEqual(g[t].known?.values.compactMap(\.known), [1, 0, 0, 4, 5, 0, 7, 8, 9])
        let x = OpTest.values(18, seed: 4, as: Float.self)
        let y = try OpTest.run(g, [x], n: 2)[0]
        let tri: [Float] = [1, 0, 0, 4, 5, 0, 7, 8, 9]
        XCTAssertEqual(y, x.indices.map { x[$0] + tri[$0 % 9] })
    }

    func testTriluErrors() throws {
        // upper must be 0 or 1
        XCTAssertThrowsError(try triluGraph(.float32, ["N", 3, 3], upper: 2, k: nil))
        // rank 1
        XCTAssertThrowsError(try triluGraph(.float32, ["N"], upper: 1, k: nil))
        // k given at run time: refused with a status when compiled, not a trap
        let g = Engine.Graph(dtype: .float32, opset: 18)
        try g.addInput("x0", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3, 3])))
        try g.addInput("k", Engine.TensorType(.int64, []))
        try g.addNode("trilu", TriluOp.self, inputs: ["x0", "k"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        XCTAssertThrowsError(try Engine.compile(g, numerics: .inference)) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .unsupported)
        }
        // a symbolic matrix size
        let s = Engine.Graph(dtype: .float32, opset: 18)
        try s.addInput("x0", Engine.TensorType(.float32, OpTest.shape(s, [3, "N"])))
        try s.addNode("trilu", TriluOp.self, inputs: ["x0"], outputs: ["y"])
        try s.markOutput("y")
        try s.verify()
        try s.inferTypes()
        XCTAssertThrowsError(try Engine.compile(s, numerics: .inference))
    }
}
