import XCTest
@testable import InLoopCore

/// Ensembles and MC-dropout (issue 15, item 2): the ensemble's mean and spread against the same
/// statistics computed here over the members' own forwards (stacked and side-by-side graphs), and
/// MC-dropout on a linear model against its analytic mean and variance.
final class UncertaintyTests: XCTestCase {
    /// A dense chain with weights drawn from `seed` (sizes[0] inputs).
    func member(_ seed: UInt64, _ sizes: [Int], _ acts: [Activation], _ dtype: Engine.DType = .float64) throws -> Engine.Graph {
        var r = RandomState(seed: seed)
        var specs: [LayerSpec] = [], params: [Engine.Tensor] = []
        for (k, (a, b)) in zip(sizes.dropLast(), sizes.dropFirst()).enumerated() {
            specs.append(.dense(inputs: a, outputs: b, activation: acts[k], bias: true))
            let w = (0..<a * b).map { _ in (r.uniform() * 2 - 1) / Double(a).squareRoot() }
            let bias = (0..<b).map { _ in r.uniform() * 0.4 - 0.2 }
            if dtype == .float64 {
                params += [try Engine.Tensor(shape: [b, a], values: w), try Engine.Tensor(shape: [b], values: bias)]
            } else {
                params += [try Engine.Tensor(shape: [b, a], values: w.map { Float($0) }), try Engine.Tensor(shape: [b], values: bias.map { Float($0) })]
            }
        }
        return try Engine.Graph(layerSpecs: specs, inputSize: sizes[0], dtype: dtype, parameters: params)
    }

    func forward(_ m: Engine.Model, _ x: [Double], batch: Int) throws -> [Double] {
        var y = [Double](repeating: 0, count: batch * m.outputSize)
        try x.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { yp in try m.forward(xp, batch: batch, into: yp) } }
        return y
    }

    func ensemble(_ m: Engine.Model, _ x: [Double], batch: Int) throws -> (mean: [Double], spread: [Double]) {
        var mean = [Double](repeating: .nan, count: batch * m.outputSize), spread = mean
        try x.withUnsafeBufferPointer { xp in
            try mean.withUnsafeMutableBufferPointer { mp in
                try spread.withUnsafeMutableBufferPointer { sp in
                    try m.forwardEnsemble(xp.baseAddress!, batch: batch, mean: mp.baseAddress!, spread: sp.baseAddress!)
                }
            }
        }
        return (mean, spread)
    }

    /// Mean and population standard deviation over the members' own forwards (two passes).
    func reference(_ members: [Engine.Graph], _ x: [Double], batch: Int) throws -> (mean: [Double], spread: [Double]) {
        let ys = try members.map { try forward(try Engine.Model(graph: try $0.copy()), x, batch: batch) }
        let n = Double(ys.count)
        let mean = (0..<ys[0].count).map { i in ys.reduce(0) { $0 + $1[i] } / n }
        let spread = (0..<ys[0].count).map { i in (ys.reduce(0) { $0 + ($1[i] - mean[i]) * ($1[i] - mean[i]) } / n).squareRoot() }
        return (mean, spread)
    }

    func input(_ batch: Int, _ n: Int) -> [Double] {
        var r = RandomState(seed: 7)
        return (0..<batch * n).map { _ in r.uniform() * 4 - 2 }
    }

    func assertClose(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .nan
        XCTAssertLessThanOrEqual(worst, tol, "\(what): largest difference \(worst)", file: file, line: line)
    }

    func testStackedEnsembleMatchesMembers() throws {
        let sizes = [4, 6, 5, 2], acts: [Activation] = [.tanh, .relu, .identity]
        let members = try (1...3).map { try member(UInt64($0), sizes, acts) }
        let (g, stacked) = try Engine.Uncertainty.ensemble(try members.map { try $0.copy() })
        XCTAssertTrue(stacked)
        XCTAssertEqual(g.nodes.filter { $0.op == DenseOp.self }.count, 1, "one Dense for the first layer of all members")
        XCTAssertEqual(g.nodes.filter { $0.op == MatMulOp.self }.count, 2, "one batched MatMul per later layer")
        let m = try Engine.Model(graph: g)
        XCTAssertTrue(m.isEnsemble)
        let x = input(11, 4)
        let (mean, spread) = try ensemble(m, x, batch: 11)
        let ref = try reference(members, x, batch: 11)
        assertClose(mean, ref.mean, 1e-13, "mean")
        assertClose(spread, ref.spread, 1e-12, "spread")
        XCTAssertTrue(spread.contains { $0 > 1e-3 }, "members differ, so the spread is not zero")
        // plain forward: the mean, bitwise
        XCTAssertEqual(try forward(m, x, batch: 11).map(\.bitPattern), mean.map(\.bitPattern))
    }

    func testSingleLayerMembersStack() throws {
        let members = try (1...4).map { try member(UInt64(10 + $0), [3, 5], [.sigmoid]) }
        let (g, stacked) = try Engine.Uncertainty.ensemble(try members.map { try $0.copy() })
        XCTAssertTrue(stacked)
        let x = input(6, 3)
        let (mean, spread) = try ensemble(try Engine.Model(graph: g), x, batch: 6)
        let ref = try reference(members, x, batch: 6)
        assertClose(mean, ref.mean, 1e-14, "mean")
        assertClose(spread, ref.spread, 1e-13, "spread")
    }

    func testDifferentMembersRunSideBySide() throws {
        let members = [try member(1, [4, 6, 2], [.tanh, .identity]), try member(2, [4, 3, 2], [.relu, .identity]),
                       try member(3, [4, 2], [.identity])]
        let (g, stacked) = try Engine.Uncertainty.ensemble(try members.map { try $0.copy() })
        XCTAssertFalse(stacked)
        let x = input(5, 4)
        let (mean, spread) = try ensemble(try Engine.Model(graph: g), x, batch: 5)
        let ref = try reference(members, x, batch: 5)
        assertClose(mean, ref.mean, 1e-14, "mean")
        assertClose(spread, ref.spread, 1e-13, "spread")
    }

    /// x − shift, then Dense(tanh) 4 → 6 and Dense 6 → 2 (an ONNX-style normalisation prefix).
    func prefixed(_ seed: UInt64, shift: [Double]) throws -> Engine.Graph {
        var r = RandomState(seed: seed)
        let g = Engine.Graph(name: "p\(seed)", dtype: .float64, opset: 13)
        let n = g.symbol(named: "N")
        g.batch = n
        try g.addInput("x", Engine.TensorType(.float64, [Engine.SymInt(n), 4]))
        try g.addConstant("shift", try Engine.Tensor(shape: [4], values: shift))
        try g.addNode("sub", SubOp.self, inputs: ["x", "shift"], outputs: ["xs"])
        for (k, (a, b)) in [(4, 6), (6, 2)].enumerated() {
            try g.addConstant("w\(k)", try Engine.Tensor(shape: [b, a], values: (0..<a * b).map { _ in r.uniform() - 0.5 }))
            try g.addConstant("b\(k)", try Engine.Tensor(shape: [b], values: (0..<b).map { _ in r.uniform() - 0.5 }))
            try g.addNode("d\(k)", DenseOp.self, ActivationOp.encode(k == 0 ? .tanh : .identity),
                          inputs: [k == 0 ? "xs" : "h0", "w\(k)", "b\(k)"], outputs: [k == 0 ? "h0" : "y"])
        }
        try g.markOutput("y")
        try g.verify()
        return g
    }

    func testSharedPrefixStacksAndOtherPrefixRunsSideBySide() throws {
        let shift = [0.5, -1, 0.25, 2]
        for other in [shift, [0.5, -1, 0.25, 2.5]] {
            let members = [try prefixed(1, shift: shift), try prefixed(2, shift: other), try prefixed(3, shift: shift)]
            let (g, stacked) = try Engine.Uncertainty.ensemble(try members.map { try $0.copy() })
            XCTAssertEqual(stacked, other == shift)
            XCTAssertEqual(g.nodes.filter { $0.op == SubOp.self }.count, other == shift ? 2 : 4, "the prefix once (plus the spread's Sub)")
            let x = input(5, 4)
            let (mean, spread) = try ensemble(try Engine.Model(graph: g), x, batch: 5)
            let ref = try reference(members, x, batch: 5)
            assertClose(mean, ref.mean, 1e-14, "mean")
            assertClose(spread, ref.spread, 1e-13, "spread")
        }
    }

    func testFloat32Ensemble() throws {
        let members = try (1...3).map { try member(UInt64($0), [4, 8, 3], [.tanh, .identity], .float32) }
        let m = try Engine.Model(graph: try Engine.Uncertainty.ensemble(try members.map { try $0.copy() }).graph)
        let x = input(7, 4).map { Double(Float($0)) }
        let (mean, spread) = try ensemble(m, x, batch: 7)
        let ref = try reference(members, x, batch: 7)
        assertClose(mean, ref.mean, 1e-5, "mean")
        assertClose(spread, ref.spread, 1e-5, "spread")
    }

    func testMismatchedMembersAreRefused() throws {
        XCTAssertThrowsError(try Engine.Uncertainty.ensemble([])) { XCTAssertEqual(($0 as? InLoopError)?.kind, .invalidArgument) }
        let a = try member(1, [4, 3], [.identity]), b = try member(2, [4, 2], [.identity]), c = try member(3, [5, 3], [.identity])
        XCTAssertThrowsError(try Engine.Uncertainty.ensemble([a, b])) { XCTAssertEqual(($0 as? InLoopError)?.kind, .sizeMismatch) }
        XCTAssertThrowsError(try Engine.Uncertainty.ensemble([a, c])) { XCTAssertEqual(($0 as? InLoopError)?.kind, .sizeMismatch) }
        let d = try member(4, [4, 3], [.identity], .float32)
        XCTAssertThrowsError(try Engine.Uncertainty.ensemble([a, d])) { XCTAssertEqual(($0 as? InLoopError)?.kind, .sizeMismatch) }
        // not an ensemble, MC-dropout off
        let m = try Engine.Model(graph: a)
        XCTAssertThrowsError(try ensemble(m, input(2, 4), batch: 2)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .invalidArgument) }
        XCTAssertThrowsError(try m.setMCDropout(samples: 4, seed: 1)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .invalidArgument) }
    }

    /// y = w · dropout(x) on [N, 6] inputs, dropout ratio p.
    func linearDropout(_ w: [Double], ratio p: Double) throws -> Engine.Model {
        let g = Engine.Graph(name: "mc_linear", dtype: .float64, opset: 13)
        let n = g.symbol(named: "N")
        g.batch = n
        try g.addInput("x", Engine.TensorType(.float64, [Engine.SymInt(n), 6]))
        try g.addConstant("ratio", try Engine.Tensor(shape: [], values: [p]))
        try g.addConstant("w", try Engine.Tensor(shape: [6, 1], values: w))
        try g.addNode("dropout", DropoutOp.self, inputs: ["x", "ratio"], outputs: ["xd"])
        try g.addNode("matmul", MatMulOp.self, inputs: ["xd", "w"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return try Engine.Model(graph: g)
    }

    func testMCDropoutMatchesAnalyticMoments() throws {
        let w = [0.5, -1.25, 2.0, 0.75, -0.5, 1.5], x0 = [1.0, 0.5, -0.25, 2.0, -1.5, 0.75], p = 0.3
        let m = try linearDropout(w, ratio: p)
        let samples = 500, batch = 40
        try m.setMCDropout(samples: samples, seed: 42)
        XCTAssertEqual(m.mcDropoutSamples, samples)
        let x = Array((0..<batch).map { _ in x0 }.joined())
        let (mean, spread) = try ensemble(m, x, batch: batch)
        // analytic: E = w·x; Var = Σ w²x² p/(1−p); the ensemble's spread² estimates Var (S−1)/S
        let mu = zip(w, x0).reduce(0) { $0 + $1.0 * $1.1 }
        let a = zip(w, x0).map { $0 * $1 / (1 - p) }   // y = Σ a_i B_i, B_i ~ Bernoulli(1 − p)
        let q = 1 - p
        let variance = a.reduce(0) { $0 + $1 * $1 } * q * p
        let kappa4 = a.reduce(0) { $0 + pow($1, 4) } * q * p * (1 - 6 * q * p)
        let mu4 = kappa4 + 3 * variance * variance
        // Standard errors over batch × samples independent draws: the mean of the column means has
        // sd sqrt(Var/(S·B)); the mean of the column variances sd sqrt((μ4 − Var²)/S / B). 5 of them:
        // a correct implementation fails about once in 10⁶ runs; a wrong scale (1 instead of 1/(1−p))
        // or ratio moves the mean by ≥ 30 of them.
        let sMean = (variance / Double(samples * batch)).squareRoot()
        let sVar = ((mu4 - variance * variance) / Double(samples) / Double(batch)).squareRoot()
        let gotMean = mean.reduce(0, +) / Double(batch)
        let gotVar = spread.reduce(0) { $0 + $1 * $1 } / Double(batch)
        XCTAssertEqual(gotMean, mu, accuracy: 5 * sMean)
        XCTAssertEqual(gotVar, variance * Double(samples - 1) / Double(samples), accuracy: 5 * sVar)
        // plain forward stays deterministic: w·x
        let y = try forward(m, x0, batch: 1)
        XCTAssertEqual(y[0], mu, accuracy: 1e-14)
    }

    func testMCDropoutIsReproducible() throws {
        let w = [0.5, -1.25, 2.0, 0.75, -0.5, 1.5]
        let x = input(3, 6)
        func run(_ seed: UInt64, calls: Int = 1) throws -> [UInt64] {
            let m = try linearDropout(w, ratio: 0.5)
            try m.setMCDropout(samples: 16, seed: seed)
            var r: [Double] = []
            for _ in 0..<calls { let (a, b) = try ensemble(m, x, batch: 3); r = a + b }
            return r.map(\.bitPattern)
        }
        XCTAssertEqual(try run(5), try run(5))
        XCTAssertNotEqual(try run(5), try run(6))
        XCTAssertNotEqual(try run(5), try run(5, calls: 2), "the generator advances from call to call")
        // setting it again with the seed restarts the sequence
        let m = try linearDropout(w, ratio: 0.5)
        try m.setMCDropout(samples: 16, seed: 5)
        let first = try ensemble(m, x, batch: 3)
        try m.setMCDropout(samples: 16, seed: 5)
        let again = try ensemble(m, x, batch: 3)
        XCTAssertEqual((first.mean + first.spread).map(\.bitPattern), (again.mean + again.spread).map(\.bitPattern))
        try m.setMCDropout(samples: 0, seed: 0)
        XCTAssertEqual(m.mcDropoutSamples, 0)
        XCTAssertThrowsError(try ensemble(m, x, batch: 3))
        XCTAssertThrowsError(try m.setMCDropout(samples: -1, seed: 0))
        XCTAssertThrowsError(try m.setMCDropout(samples: Engine.Uncertainty.maxMembers + 1, seed: 0))
    }
}
