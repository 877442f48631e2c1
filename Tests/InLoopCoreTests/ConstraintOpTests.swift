import XCTest
@testable import InLoopCore

/// The constraint ops (`Ops/ConstraintOps.swift`, issue 15 item 1): forward against direct loops in
/// Float and Double (inference and differentiable plans, batch 1 and 5 through one plan), the
/// conservation property |w·y' − s| / |s| on random inputs (1e-6 in float32, 1e-12 in float64),
/// reverse and tangent against float64 central differences, bad attributes and weights as statuses,
/// and `Graph.addConstraint` (names, new inputs, training through the constraint).
final class ConstraintOpTests: XCTestCase {
    static let k = 30

    /// Layer masses: positive, uneven (as Δp/g over a column).
    static func masses(_ k: Int = k) -> [Double] { (0..<k).map { 0.5 + Double(($0 * 7) % 11) / 10 } }

    /// y [N, K] → ConservationProjection(y, w, s): w a constant [K] (or an input [N, K] when nil),
    /// s an input [N, 1] (or [N] when `flatTarget`).
    func conservationGraph(_ dtype: Engine.DType, w: [Double]?, flatTarget: Bool = false) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 18)
        let k = Self.k
        try g.addInput("y", Engine.TensorType(dtype, OpTest.shape(g, ["N", k])))
        if let w {
            try g.addConstant("w", dtype == .float64 ? try Engine.Tensor(shape: [k], values: w) : try Engine.Tensor(shape: [k], values: w.map { Float($0) }))
        } else {
            try g.addInput("w", Engine.TensorType(dtype, OpTest.shape(g, ["N", k])))
        }
        try g.addInput("s", Engine.TensorType(dtype, OpTest.shape(g, flatTarget ? ["N"] : ["N", 1])))
        try g.addNode("project", ConservationProjectionOp.self, inputs: ["y", "w", "s"], outputs: ["out"])
        try g.markOutput("out")
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// The projection in float64, column by column.
    static func project(_ y: [Double], _ w: [Double], perColumnW: Bool, _ s: [Double], n: Int) -> [Double] {
        var out = y
        for c in 0..<n {
            let wc = perColumnW ? Array(w[c * k ..< (c + 1) * k]) : w
            var wy = 0.0, ww = 0.0
            for j in 0..<k { wy += wc[j] * y[c * k + j]; ww += wc[j] * wc[j] }
            for j in 0..<k { out[c * k + j] = ww == 0 ? y[c * k + j] : y[c * k + j] + wc[j] * (s[c] - wy) / ww }
        }
        return out
    }

    /// max over columns of |w·y' − s| / |s| (in float64 of the computed y').
    static func conservationError(_ out: [Double], _ w: [Double], perColumnW: Bool, _ s: [Double], n: Int) -> Double {
        var worst = 0.0
        for c in 0..<n {
            var wy = 0.0
            for j in 0..<k { wy += (perColumnW ? w[c * k + j] : w[j]) * out[c * k + j] }
            worst = max(worst, abs(wy - s[c]) / abs(s[c]))
        }
        return worst
    }

    func checkConservation<T: EngineScalar>(_: T.Type, constantW: Bool, flatTarget: Bool, tolerance: Double,
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        let k = Self.k
        let g = try conservationGraph(T.dtype, w: constantW ? Self.masses() : nil, flatTarget: flatTarget)
        var worst = 0.0
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5, 64] {
                let y: [T] = OpTest.values(n * k, seed: UInt64(3 + n), in: -3...3)
                let s: [T] = OpTest.values(n, seed: UInt64(5 + n), in: 0.5...4)
                let wIn: [T] = OpTest.values(n * k, seed: UInt64(9 + n), in: 0.1...2)
                let w = constantW ? Self.masses().map { Double(T($0)) } : wIn.map { Double($0) }
                let got = try h.forward(constantW ? [y, s] : [y, wIn, s], n: n)[0].map { Double($0) }
                let want = Self.project(y.map { Double($0) }, w, perColumnW: !constantW, s.map { Double($0) }, n: n)
                let err = OpTest.maxRelativeError(got, want)
                XCTAssertLessThan(err, T.self == Float.self ? 2e-5 : 1e-12, "\(T.self) n=\(n) \(numerics)", file: file, line: line)
                let c = Self.conservationError(got, w, perColumnW: !constantW, s.map { Double($0) }, n: n)
                worst = max(worst, c)
                XCTAssertLessThan(c, tolerance, "conservation \(T.self) n=\(n) \(numerics)", file: file, line: line)
            }
        }
        print("conservation \(T.self) constantW=\(constantW): worst |w.y' - s|/|s| = \(worst)")
    }

    func testConservationForwardAndProperty() throws {
        for constantW in [true, false] {
            for flat in [false, true] {
                // a constant w and a w given per column both run the fused step (float64 sums): 1e-6
                try checkConservation(Float.self, constantW: constantW, flatTarget: flat, tolerance: 1e-6)
                try checkConservation(Double.self, constantW: constantW, flatTarget: flat, tolerance: 1e-12)
            }
        }
    }

    /// A column whose run-time weights are all zero is left as it is (documented); the others project.
    func testConservationZeroInputWeights() throws {
        let k = Self.k, n = 2
        let g = try conservationGraph(.float64, w: nil)
        let y: [Double] = OpTest.values(n * k, seed: 1)
        var w: [Double] = OpTest.values(n * k, seed: 2, in: 0.1...1)
        for j in 0..<k { w[j] = 0 }
        let s: [Double] = [1, 2]
        let out = try OpTest.run(g, [y, w, s], n: n)[0]
        XCTAssertEqual(Array(out[0..<k]), Array(y[0..<k]))
        XCTAssertLessThan(Self.conservationError(Array(out[k...]), Array(w[k...]), perColumnW: true, [2], n: 1), 1e-12)
    }

    func testConservationGradients() throws {
        try OpTest.checkGradients(try conservationGraph(.float64, w: Self.masses()), n: 3)
        try OpTest.checkGradients(try conservationGraph(.float64, w: nil, flatTarget: true), n: 2,
                                  inputs: [OpTest.values(2 * Self.k, seed: 4), OpTest.values(2 * Self.k, seed: 5, in: 0.2...1.5),
                                           OpTest.values(2, seed: 6, in: 1...2)])
        // per-column w and s with its trailing 1: the fused step's rules in y, w and s (w = 0 is a
        // singular point, where y is kept: no finite difference there)
        try OpTest.checkGradients(try conservationGraph(.float64, w: nil), n: 3,
                                  inputs: [OpTest.values(3 * Self.k, seed: 7), OpTest.values(3 * Self.k, seed: 8, in: 0.2...1.5),
                                           OpTest.values(3, seed: 9, in: 1...2)])
    }

    // MARK: Bounds

    func boundsGraph(_ dtype: Engine.DType, _ raw: [String: Engine.AttributeValue]) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 18)
        try g.addInput("y", Engine.TensorType(dtype, OpTest.shape(g, ["N", 7])))
        try g.addNode("bounds", BoundsOp.self, raw, inputs: ["y"], outputs: ["out"])
        try g.markOutput("out")
        try g.verify()
        try g.inferTypes()
        return g
    }

    static func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }

    static func bound(_ y: Double, lo: Double?, hi: Double?, softplus sp: Bool) -> Double {
        if !sp { return min(max(y, lo ?? -.infinity), hi ?? .infinity) }
        switch (lo, hi) {
        case (let l?, nil): return l + softplus(y - l)
        case (nil, let h?): return h - softplus(h - y)
        case (let l?, let h?): return l + softplus(y - l) - softplus(y - h)
        default: return y
        }
    }

    func checkBounds<T: EngineScalar>(_: T.Type, lo: Double?, hi: Double?, softplus: Bool) throws {
        var raw: [String: Engine.AttributeValue] = ["form": .string(softplus ? "softplus" : "clamp")]
        if let lo { raw["lo"] = .float(lo) }
        if let hi { raw["hi"] = .float(hi) }
        let g = try boundsGraph(T.dtype, raw)
        let tol = T.self == Float.self ? 1e-6 : 1e-14
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5] {
                let y: [T] = OpTest.values(n * 7, seed: UInt64(n), in: -40...40)
                let got = try h.forward([y], n: n)[0].map { Double($0) }
                let l = lo.map { Double(T($0)) }, hh = hi.map { Double(T($0)) }
                let want = y.map { Self.bound(Double($0), lo: l, hi: hh, softplus: softplus) }
                XCTAssertLessThan(OpTest.maxRelativeError(got, want), tol, "\(T.self) lo=\(String(describing: lo)) hi=\(String(describing: hi)) softplus=\(softplus)")
                for v in got {
                    if let l { XCTAssertGreaterThanOrEqual(v, l - 4 * tol * max(1, abs(l))) }
                    if let hh { XCTAssertLessThanOrEqual(v, hh + 4 * tol * max(1, abs(hh))) }
                }
            }
        }
    }

    func testBoundsForward() throws {
        for softplus in [false, true] {
            for (lo, hi) in [(0.0, nil), (nil, 2.5), (-1.0, 3.0)] as [(Double?, Double?)] {
                try checkBounds(Float.self, lo: lo, hi: hi, softplus: softplus)
                try checkBounds(Double.self, lo: lo, hi: hi, softplus: softplus)
            }
        }
        // positivity in softplus form is never negative, even far below
        let g = try boundsGraph(.float32, ["lo": .float(0), "form": .string("softplus")])
        let out = try OpTest.run(g, [[-1e30, -200, -1, 0, 1, 200, 1e30] as [Float]], n: 1)[0]
        XCTAssertTrue(out.allSatisfy { $0 >= 0 && $0.isFinite }, "\(out)")
    }

    func testBoundsGradients() throws {
        for softplus in [false, true] {
            for (lo, hi) in [(0.0, nil), (nil, 0.5), (-0.7, 0.9)] as [(Double?, Double?)] {
                var raw: [String: Engine.AttributeValue] = ["form": .string(softplus ? "softplus" : "clamp")]
                if let lo { raw["lo"] = .float(lo) }
                if let hi { raw["hi"] = .float(hi) }
                // clamp: inputs away from the kinks (finite differences straddle them otherwise)
                let x: [Double] = OpTest.values(21, seed: 8).map { v in
                    for b in [lo, hi].compactMap({ $0 }) where abs(v - b) < 1e-3 { return v + 0.01 }
                    return v
                }
                try OpTest.checkGradients(try boundsGraph(.float64, raw), n: 3, inputs: [x])
            }
        }
    }

    // MARK: Mass fixer

    func massFixerGraph(_ dtype: Engine.DType, w: [Double]) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 18)
        try g.addInput("y", Engine.TensorType(dtype, OpTest.shape(g, ["N", w.count])))
        try g.addConstant("w", dtype == .float64 ? try Engine.Tensor(shape: [w.count], values: w) : try Engine.Tensor(shape: [w.count], values: w.map { Float($0) }))
        try g.addNode("fix", MassFixerOp.self, inputs: ["y", "w"], outputs: ["out"])
        try g.markOutput("out")
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// The rule of the doc comment, column by column, in float64.
    static func fix(_ y: [Double], _ w: [Double], n: Int) -> [Double] {
        let k = w.count
        var out = y
        for c in 0..<n {
            var p = 0.0, t = 0.0
            for j in 0..<k { p += w[j] * max(y[c * k + j], 0); t += w[j] * y[c * k + j] }
            for j in 0..<k { out[c * k + j] = p == 0 ? 0 : max(y[c * k + j], 0) * (max(t, 0) / p) }
        }
        return out
    }

    func checkMassFixer<T: EngineScalar>(_: T.Type) throws {
        let k = Self.k, w = Self.masses().map { Double(T($0)) }
        let g = try massFixerGraph(T.dtype, w: w)
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<T>(g, numerics: numerics)
            for n in [1, 5, 64] {
                var y: [T] = OpTest.values(n * k, seed: UInt64(11 + n), in: -0.5...2)
                if n > 1 {
                    for j in 0..<k { y[k + j] = abs(y[k + j]) }        // column 1: no negative value
                }
                if n > 2 { for j in 0..<k { y[2 * k + j] = -abs(y[2 * k + j]) - 0.1 } }  // column 2: negative total
                let got = try h.forward([y], n: n)[0]
                let want = Self.fix(y.map { Double($0) }, w, n: n)
                XCTAssertLessThan(OpTest.maxRelativeError(got.map { Double($0) }, want), T.self == Float.self ? 1e-5 : 1e-13, "\(T.self) n=\(n)")
                XCTAssertTrue(got.allSatisfy { $0 >= 0 }, "no negative value left")
                if n > 1 { XCTAssertEqual(Array(got[k ..< 2 * k]), Array(y[k ..< 2 * k]), "a non-negative column is unchanged, bitwise") }
                if n > 2 { XCTAssertTrue(got[2 * k ..< 3 * k].allSatisfy { $0 == 0 }, "a negative total gives 0") }
                for c in 0..<n where c != 2 {
                    var before = 0.0, after = 0.0
                    for j in 0..<k { before += w[j] * Double(y[c * k + j]); after += w[j] * Double(got[c * k + j]) }
                    if before > 0 { XCTAssertLessThan(abs(after - before) / before, T.self == Float.self ? 1e-6 : 1e-12, "integral of column \(c)") }
                }
            }
        }
    }

    func testMassFixerForward() throws {
        try checkMassFixer(Float.self)
        try checkMassFixer(Double.self)
    }

    /// w given at run time ([K], a graph input): the composed steps, same rule, derivatives in y and w.
    func testMassFixerRunTimeWeights() throws {
        let k = 8, n = 3
        let g = Engine.Graph(dtype: .float64, opset: 18)
        try g.addInput("y", Engine.TensorType(.float64, OpTest.shape(g, ["N", k])))
        try g.addInput("w", Engine.TensorType(.float64, [Engine.SymInt(k)]))
        try g.addNode("fix", MassFixerOp.self, inputs: ["y", "w"], outputs: ["out"])
        try g.markOutput("out")
        try g.verify()
        try g.inferTypes()
        let y: [Double] = OpTest.values(n * k, seed: 21, in: -0.6...1.5).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        let w = Array(Self.masses(k))
        let out = try OpTest.run(g, [y, w], n: n)[0]
        XCTAssertLessThan(OpTest.maxRelativeError(out, Self.fix(y, w, n: n)), 1e-13)
        try OpTest.checkGradients(g, n: n, inputs: [y, w])
    }

    func testMassFixerGradients() throws {
        // away from the kinks: |y| ≥ 0.05, column totals well above 0
        let x: [Double] = OpTest.values(3 * 8, seed: 21, in: -0.6...1.5).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        try OpTest.checkGradients(try massFixerGraph(.float64, w: Array(Self.masses(8))), n: 3, inputs: [x])
    }

    // MARK: Errors

    func kind(_ body: () throws -> Void) -> InLoopError.Kind? {
        do { try body(); return nil } catch { return (error as? InLoopError)?.kind }
    }

    func testBadAttributesAndWeights() throws {
        for raw: [String: Engine.AttributeValue] in [[:], ["lo": .float(1), "hi": .float(1)], ["lo": .float(2), "hi": .float(1)],
                                                      ["lo": .float(0), "form": .string("tanh")], ["lo": .float(.nan)],
                                                      ["hi": .float(.infinity)], ["lo": .float(0), "scale": .float(1)],
                                                      ["lo": .string("0")]] {
            XCTAssertEqual(kind { _ = try boundsGraph(.float32, raw) }, .format, "\(raw)")
        }
        // constant w with w·w = 0: refused when the plan is compiled (at load), not NaN at run time
        let zero = try conservationGraph(.float32, w: [Double](repeating: 0, count: Self.k))
        XCTAssertEqual(kind { _ = try Engine.Model(graph: zero) }, .invalidArgument)
        XCTAssertEqual(kind { _ = try Engine.compile(zero, numerics: .differentiable) }, .invalidArgument)
        // mass fixer: negative or all-zero weights
        var neg = Self.masses(); neg[3] = -1
        XCTAssertEqual(kind { _ = try Engine.Model(graph: try massFixerGraph(.float64, w: neg)) }, .invalidArgument)
        XCTAssertEqual(kind { _ = try Engine.Model(graph: try massFixerGraph(.float64, w: [0, 0, 0])) }, .invalidArgument)
        // shapes: w of the wrong length, s of the wrong shape, an attribute on an op that takes none
        let g = Engine.Graph(dtype: .float32, opset: 18)
        try g.addInput("y", Engine.TensorType(.float32, OpTest.shape(g, ["N", 4])))
        try g.addInput("w", Engine.TensorType(.float32, [3]))
        try g.addInput("s", Engine.TensorType(.float32, OpTest.shape(g, ["N", 2])))
        try g.addNode("p", ConservationProjectionOp.self, inputs: ["y", "w", "s"], outputs: ["out"])
        try g.markOutput("out")
        try g.verify()
        XCTAssertEqual(kind { try g.inferTypes() }, .sizeMismatch)
        XCTAssertEqual(kind { _ = try MassFixerOp.parse(["axis": .int(1)], opset: 1) }, .format)
    }

    // MARK: Graph.addConstraint and training through it

    /// A 2-layer layer stack x[N, 5] → y[N, K] with conservation (target = feature 4 of x), then the
    /// softplus positivity and the mass fixer: the loss gradient flows through all three, and after
    /// training the conservation still holds.
    func testAddConstraintsAndTrain() throws {
        let k = 6, w = Self.masses(k)
        for precision in [TrainerConfig.Precision.float32, .float64] {
            var config = TrainerConfig(inputSize: 5, layers: [.dense(inputs: 5, outputs: 16, activation: .tanh, bias: true),
                                                              .dense(inputs: 16, outputs: k, activation: .identity, bias: true)],
                                       optimizer: OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 1e-2),
                                       seed: 3, precision: precision)
            config.constraints = [.conservation(weights: w, target: .feature(4))]
            let n = 32
            let x: [Double] = OpTest.values(n * 5, seed: 40, in: 0.5...2)
            let y: [Double] = OpTest.values(n * k, seed: 41, in: 0...1)
            func check<T: Real & EngineScalar>(_ t: Trainer<T>, _ tol: Double, _ what: String) throws {
                let xs = x.map { T($0) }
                let out = try xs.withUnsafeBufferPointer { p in Array(UnsafeBufferPointer(start: try t.network.forward(p.baseAddress!, batch: n), count: n * k)) }
                var worst = 0.0
                for c in 0..<n {
                    var wy = 0.0
                    for j in 0..<k { wy += Double(T(w[j])) * Double(out[c * k + j]) }
                    let s = Double(xs[c * 5 + 4])
                    worst = max(worst, abs(wy - s) / abs(s))
                }
                XCTAssertLessThan(worst, tol, "\(what): |w.y' - s|/|s|")
                print("trained conservation \(T.self) \(what): \(worst)")
            }
            func train<T: Real & EngineScalar>(_: T.Type, _ tol: Double) throws {
                let t = try Trainer<T>(config: config)
                XCTAssertNil(t.network.graph.layerSpecs, "a constrained stack is a graph")
                XCTAssertEqual(t.network.parameterCount, 5 * 16 + 16 + 16 * k + k, "the constraint adds no trainable value")
                try check(t, tol, "before training")
                let xs = x.map { T($0) }, ys = y.map { T($0) }
                var first = 0.0, last = 0.0
                for step in 0..<40 {
                    let loss = try xs.withUnsafeBufferPointer { xp in try ys.withUnsafeBufferPointer { yp in
                        try t.trainStep(x: xp.baseAddress!, y: yp.baseAddress!, batch: n) } }
                    if step == 0 { first = loss }
                    last = loss
                }
                XCTAssertLessThan(last, first, "the loss falls: the gradient flows through the projection")
                try check(t, tol, "after 40 steps")
                let m = try t.network.inferenceModel()
                XCTAssertTrue(m.graph.nodes.contains { $0.op == ConservationProjectionOp.self })
            }
            if precision == .float32 { try train(Float.self, 1e-6) } else { try train(Double.self, 1e-12) }
        }
    }

    func testAddConstraintNamesAndInputs() throws {
        let g = try Engine.Graph(layerSpecs: [.dense(inputs: 3, outputs: 4, activation: .identity, bias: true)], inputSize: 3, dtype: .float32)
        try g.inferTypes()
        let name = g[g.outputs[0]].name
        let added = try g.addConstraint(.conservation(weights: nil, target: .input), output: 0)
        XCTAssertEqual(added, [name + "_target", name + "_weights"])
        XCTAssertEqual(g.inputs.count, 3)
        XCTAssertEqual(g[g.outputs[0]].name, name, "the output keeps its name")
        XCTAssertEqual(g[g.inputs[1]].type?.shape.count, 2)
        // bad arguments leave the graph as it was
        let before = (g.nodes.count, g.inputs.count, g.values.count)
        XCTAssertEqual(kind { try g.addConstraint(.massFixer(weights: [1, 2, 3]), output: 0) }, .sizeMismatch)
        XCTAssertEqual(kind { try g.addConstraint(.massFixer(weights: [1, 2, 3, 4]), output: 1) }, .invalidArgument)
        XCTAssertEqual(kind { try g.addConstraint(.conservation(weights: [0, 0, 0, 0], target: .input), output: 0) }, .invalidArgument)
        XCTAssertEqual(kind { try g.addConstraint(.conservation(weights: [1, 1, 1, 1], target: .feature(3)), output: 0) }, .invalidArgument)
        XCTAssertEqual(kind { try g.addConstraint(.conservation(weights: [1, .nan, 1, 1], target: .input), output: 0) }, .invalidArgument)
        XCTAssertEqual(kind { try g.addConstraint(.bounds(lo: 1, hi: 0, softplus: false), output: 0) }, .format)
        XCTAssertEqual(before.0, g.nodes.count); XCTAssertEqual(before.1, g.inputs.count); XCTAssertEqual(before.2, g.values.count)
        try g.addConstraint(.bounds(lo: 0, hi: nil, softplus: true), output: 0)
        try g.addConstraint(.massFixer(weights: [1, 2, 3, 4]), output: 0)
        XCTAssertEqual(g[g.outputs[0]].name, name)
        _ = try Engine.Model(graph: g)
    }
}
