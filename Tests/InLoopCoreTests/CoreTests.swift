import XCTest
import Foundation
@testable import InLoopCore
#if canImport(Glibc)
import Glibc
#endif

/// Independent float64 reference of the layer semantics: naive loops, no BLAS, no plan.
func referenceForward(_ layers: [Layer], _ x: [Double], size: Int) -> [Double] {
    var v = x
    var n = size
    for layer in layers {
        switch layer {
        case .dense(let d):
            let w = d.weight.values, b = d.bias?.values
            var out = [Double](repeating: 0, count: d.outFeatures)
            for o in 0..<d.outFeatures {
                var s = Double(b?[o] ?? 0)
                for i in 0..<n { s += Double(w[o * n + i]) * v[i] }
                out[o] = referenceActivation(d.activation, s)
            }
            v = out; n = d.outFeatures
        case .activation(let a): v = v.map { referenceActivation(a, $0) }
        case .normalize(let nm): v = (0..<n).map { (v[$0] - Double(nm.mean.values[$0])) / Double(nm.std.values[$0]) }
        case .denormalize(let nm): v = (0..<n).map { v[$0] * Double(nm.std.values[$0]) + Double(nm.mean.values[$0]) }
        case .residual(let inner):
            let f = referenceForward(inner, v, size: n)
            v = zip(v, f).map { $0 + $1 }
        }
    }
    return v
}

func referenceActivation(_ a: Activation, _ x: Double) -> Double {
    switch a {
    case .identity: return x
    case .relu: return max(x, 0)
    case .leakyRelu(let al): return x >= 0 ? x : Double(al) * x
    case .tanh: return Glibc.tanh(x)
    case .sigmoid: return 1 / (1 + exp(-x))
    case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
    case .geluTanh: return 0.5 * x * (1 + Glibc.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    case .silu: return x / (1 + exp(-x))
    case .softplus: return log1p(exp(x))
    case .elu(let al): return x > 0 ? x : Double(al) * (exp(x) - 1)
    }
}

struct LCG {
    var s: UInt64
    mutating func next() -> Double {  // uniform in [-1, 1)
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Double(s >> 11) / Double(1 << 52) - 1
    }
    mutating func floats(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(next() * scale) } }
}

func dense(_ rng: inout LCG, _ nIn: Int, _ nOut: Int, _ act: Activation = .identity, bias: Bool = true) throws -> Layer {
    let w = try Tensor(shape: [nOut, nIn], values: rng.floats(nIn * nOut, scale: 1.5 / Double(nIn).squareRoot()))
    let b = bias ? try Tensor(shape: [nOut], values: rng.floats(nOut, scale: 0.1)) : nil
    return .dense(Dense(weight: w, bias: b, activation: act))
}

func maxRelErr(_ a: [Double], _ b: [Double]) -> Double {
    let scale = max(b.map { abs($0) }.max() ?? 0, 1e-30)
    return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

final class ActivationTests: XCTestCase {
    static let all: [Activation] = [.identity, .relu, .leakyRelu(alpha: 0.2), .tanh, .sigmoid, .gelu, .geluTanh,
                                    .silu, .softplus, .elu(alpha: 0.7)]

    func testScalarDefinitionsMatchFloat64Reference() {
        for a in Self.all {
            for k in -400...400 {
                let x = Float(k) * 0.05  // -20 ... 20
                let got = Double(a.apply(x)), want = referenceActivation(a, Double(x))
                XCTAssertEqual(got, want, accuracy: 2e-6 * max(1, abs(want)), "\(a) at \(x)")
            }
        }
    }

    func testKernelsAgreeWithScalarDefinitionAndSurviveExtremes() {
        let xs: [Float] = [-1e30, -1000, -100, -88.8, -20, -1, -1e-30, 0, 1e-30, 1, 20, 88.8, 100, 1000, 1e30]
        for a in Self.all {
            var y = xs
            y.withUnsafeMutableBufferPointer { Kernels.activate(a, $0.baseAddress!, count: $0.count) }
            for (x, v) in zip(xs, y) {
                XCTAssertTrue(v.isFinite, "\(a)(\(x)) = \(v) is not finite")
                XCTAssertEqual(v, a.apply(x), "\(a) kernel vs scalar at \(x)")
            }
        }
        XCTAssertEqual(Activation.softplus.apply(1000), 1000)
        XCTAssertEqual(Activation.sigmoid.apply(-1000), 0)
        XCTAssertEqual(Activation.sigmoid.apply(1000), 1)
    }

    /// The generic kernels (in place and not, fused with a bias, backward) agree bit for bit with the
    /// scalar definition under both numerics, in Float and Double, NaN/±Inf/±0 included; the two
    /// numerics differ only where documented (tanh, ReLU of NaN). (Regression: the float64 scalar ReLU
    /// turned NaN into 0 while the differentiable kernel kept it.)
    func testGenericKernelsAgreeWithScalarDefinitionUnderBothNumerics() {
        func same<T: Real>(_ a: T, _ b: T) -> Bool {
            a.isNaN ? b.isNaN : (a.sign == b.sign && a.exponentBitPattern == b.exponentBitPattern && a.significandBitPattern == b.significandBitPattern)
        }
        func check<T: Real>(_ type: T.Type) {
            var xs: [T] = [.nan, .infinity, -.infinity, 0, -0.0, T.leastNonzeroMagnitude, 1e-20, -1e-20, 0.625, -0.625, 10, 30, -30, 100, -100]
            var rng = RandomState(seed: 6)
            for _ in 0..<100 { xs.append(T(Float(24 * rng.uniform() - 12))) }
            let bias: [T] = [0.5, -0.25, 0]
            for num in [Numerics.inference, .differentiable] {
                for a in Self.all + [.leakyRelu(alpha: 0.3), .elu(alpha: 1)] {
                    let want = xs.map { a.apply($0, num) }
                    var inPlace = xs
                    inPlace.withUnsafeMutableBufferPointer { Kernels.activate(a, $0.baseAddress!, count: $0.count, numerics: num) }
                    var outOfPlace = [T](repeating: 7, count: xs.count)
                    xs.withUnsafeBufferPointer { x in outOfPlace.withUnsafeMutableBufferPointer {
                        Kernels.activate(a, x.baseAddress!, into: $0.baseAddress!, count: x.count, numerics: num)
                    } }
                    let rows = xs.count / bias.count
                    var fused = Array(xs[0..<(rows * bias.count)])
                    fused.withUnsafeMutableBufferPointer { y in bias.withUnsafeBufferPointer {
                        Kernels.biasActivate(a, y.baseAddress!, rows: rows, cols: 3, bias: $0.baseAddress!, numerics: num)
                    } }
                    for i in 0..<xs.count {
                        XCTAssertTrue(same(inPlace[i], want[i]), "\(T.self) \(a) \(num) in place at \(xs[i])")
                        XCTAssertTrue(same(outOfPlace[i], want[i]), "\(T.self) \(a) \(num) out of place at \(xs[i])")
                        if i < fused.count {
                            XCTAssertTrue(same(fused[i], a.apply(xs[i] + bias[i % 3], num)), "\(T.self) \(a) \(num) bias at \(xs[i])")
                        }
                    }
                    // Backward: out = d·f'(z) (overwrite), then += d·f'(z) (accumulate).
                    let d = xs.indices.map { T(Float($0 % 7) - 3) }
                    var out = [T](repeating: 0, count: xs.count)
                    for accumulate in [false, true] {
                        xs.withUnsafeBufferPointer { z in want.withUnsafeBufferPointer { y in d.withUnsafeBufferPointer { g in out.withUnsafeMutableBufferPointer {
                            Kernels.activationBackward(a, z: z.baseAddress!, a: y.baseAddress!, gradient: g.baseAddress!, into: $0.baseAddress!,
                                                       accumulate: accumulate, count: z.count)
                        } } } }
                    }
                    for i in 0..<xs.count {
                        let one = d[i] * a.derivative(z: xs[i], a: want[i])
                        // (ReLUs select the gradient or 0 rather than multiply: ±0 may differ.)
                        XCTAssertTrue(out[i] == one + one || (out[i].isNaN && one.isNaN), "\(T.self) \(a) \(num) backward at \(xs[i])")
                    }
                }
                XCTAssertEqual(Activation.relu.apply(T.nan, num).isNaN, num.reluNaN == .keep, "\(T.self) ReLU(NaN) under \(num)")
            }
            // Cephes and libm tanh agree to float32 rounding; in Double both are libm.
            for x in xs where x.isFinite {
                let c = Activation.tanh.apply(x, .inference), l = Activation.tanh.apply(x, .differentiable)
                if T.self == Double.self { XCTAssertTrue(same(c, l)) } else { XCTAssertEqual(Double(c), Double(l), accuracy: 3e-7 * max(1e-30, abs(Double(l)))) }
            }
        }
        check(Float.self)
        check(Double.self)
    }
}

final class DenseKernelTests: XCTestCase {
    func testDenseMatchesNaiveLoopForBatchSizesAndBias() throws {
        var rng = LCG(s: 7)
        for (nIn, nOut) in [(1, 1), (3, 5), (17, 9), (64, 33)] {
            for batch in [1, 2, 7, 64] {
                for bias in [true, false] {
                    for act in [Activation.identity, .relu, .leakyRelu(alpha: 0.3), .tanh] {
                        let layer = try dense(&rng, nIn, nOut, act, bias: bias)
                        let model = try layerModel(inputSize: nIn, layers: [layer])
                        let x = rng.floats(batch * nIn, scale: 2)
                        let y = try model.forward(x, batch: batch)
                        for s in 0..<batch {
                            let ref = referenceForward([layer], x[(s * nIn)..<((s + 1) * nIn)].map(Double.init), size: nIn)
                            let got = y[(s * nOut)..<((s + 1) * nOut)].map(Double.init)
                            XCTAssertLessThan(maxRelErr(got, ref), 1e-5, "in \(nIn) out \(nOut) batch \(batch) bias \(bias) \(act)")
                        }
                    }
                }
            }
        }
    }
}

final class ModelTests: XCTestCase {
    /// A model exercising every layer kind, nested residuals, in-place and out-of-place ops.
    func makeLayers() throws -> [Layer] {
        var rng = LCG(s: 42)
        let mean = try Tensor(shape: [6], values: rng.floats(6, scale: 3))
        let std = try Tensor(shape: [6], values: rng.floats(6).map { abs($0) + 0.5 })
        let omean = try Tensor(shape: [3], values: rng.floats(3, scale: 10))
        let ostd = try Tensor(shape: [3], values: rng.floats(3).map { abs($0) * 4 + 0.5 })
        let layers: [Layer] = [
            .normalize(Normalization(mean: mean, std: std)),
            try dense(&rng, 6, 16, .gelu),
            .residual([
                try dense(&rng, 16, 16, .silu),
                .residual([.activation(.tanh), try dense(&rng, 16, 16, bias: false)]),
                try dense(&rng, 16, 16, .elu(alpha: 0.7)),
            ]),
            .activation(.softplus),
            .residual([.activation(.identity)]),
            try dense(&rng, 16, 8, .geluTanh),
            .activation(.sigmoid),
            try dense(&rng, 8, 3),
            .denormalize(Normalization(mean: omean, std: ostd)),
        ]
        return layers
    }

    func makeModel() throws -> Engine.Model { try layerModel(name: "mix", inputSize: 6, layers: try makeLayers()) }

    func testForwardMatchesFloat64ReferenceForManyBatchSizes() throws {
        let model = try makeModel(), layers = try makeLayers()
        var rng = LCG(s: 3)
        // Growing, shrinking and repeated batch sizes exercise workspace reuse.
        for batch in [1, 5, 64, 3, 64, 1, 200, 2] {
            let x = rng.floats(batch * 6, scale: 4)
            let y32 = try model.forward(x, batch: batch)
            let y64 = try model.forward(x.map(Double.init), batch: batch)
            for s in 0..<batch {
                let ref = referenceForward(layers, x[(s * 6)..<((s + 1) * 6)].map(Double.init), size: 6)
                XCTAssertLessThan(maxRelErr(y32[(s * 3)..<((s + 1) * 3)].map(Double.init), ref), 1e-5, "batch \(batch) sample \(s)")
                XCTAssertLessThan(maxRelErr(Array(y64[(s * 3)..<((s + 1) * 3)]), ref), 1e-5)
            }
            XCTAssertEqual(y32.map(Double.init), y64, "float32 and float64 entry points compute the same float32 numbers")
        }
    }

    func testPlanReusesBuffers() throws {
        let model = try makeModel()
        let plan = try Engine.compile(model.graph)
        XCTAssertLessThan(plan.slotCount, try makeLayers().count - 1,
                          "workspace buffers should be shared between storages with disjoint lifetimes")
    }

    func testIdentityAndActivationOnlyModelsNeverWriteTheirInput() throws {
        for layers: [Layer] in [[], [.activation(.relu)], [.residual([.activation(.identity)])]] {
            let model = try layerModel(inputSize: 4, layers: layers)
            let x: [Float] = [-1, 2, -3, 4]
            let y = try model.forward(x, batch: 1)
            XCTAssertEqual(x, [-1, 2, -3, 4])
            XCTAssertEqual(y.map(Double.init), referenceForward(layers, x.map(Double.init), size: 4))
        }
    }

    func testInvalidArchitecturesAreErrorsNamingTheLayer() throws {
        var rng = LCG(s: 1)
        XCTAssertThrowsError(try layerModel(inputSize: 5, layers: [try dense(&rng, 4, 3)])) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .format)
            XCTAssertTrue("\(e)".contains("layers[0]") && "\(e)".contains("4") && "\(e)".contains("5"), "\(e)")
        }
        XCTAssertThrowsError(try layerModel(inputSize: 4, layers: [.residual([try dense(&rng, 4, 3)])])) { e in
            XCTAssertTrue("\(e)".contains("residual"), "\(e)")
        }
        XCTAssertThrowsError(try layerModel(inputSize: 4, layers: [.residual([])]))
        XCTAssertThrowsError(try layerModel(inputSize: 0, layers: []))
        for bad: [Double] in [[1, 0], [1, -1], [1, .nan], [1, .infinity]] {
            XCTAssertThrowsError(try Engine.Graph(layerSpecs: [.normalize(mean: [0, 0], std: bad)], inputSize: 2, dtype: .float32)) { e in
                XCTAssertTrue("\(e)".contains("layers[0]") && "\(e)".contains("std[1]"), "\(e)")
            }
        }
        XCTAssertThrowsError(try Engine.Graph(layerSpecs: [.denormalize(mean: [0, .nan], std: [1, 1])], inputSize: 2, dtype: .float64))
        XCTAssertThrowsError(try Engine.Graph(layerSpecs: [.normalize(mean: [0], std: [1])], inputSize: 2, dtype: .float32))
        // a weight of the wrong shape for its layer
        XCTAssertThrowsError(try Engine.Graph(layerSpecs: [.dense(inputs: 3, outputs: 1, activation: .identity, bias: false)], inputSize: 3,
                                              dtype: .float32, parameters: [try Engine.Tensor(zeros: [3], dtype: .float32)]))
    }

    func testBadCallsThrowAndLeaveOutputUntouched() throws {
        let model = try makeModel()
        var y = [Float](repeating: 7, count: 30)
        let x = [Float](repeating: 1, count: 60)
        func call(_ batch: Int, _ xs: ArraySlice<Float>, _ ny: Int) -> InLoopError.Kind? {
            do {
                try xs.withUnsafeBufferPointer { xp in
                    try y.withUnsafeMutableBufferPointer { yp in
                        try model.forward(xp, batch: batch, into: UnsafeMutableBufferPointer(rebasing: yp[0..<ny]))
                    }
                }
                return nil
            } catch { return (error as? InLoopError)?.kind }
        }
        XCTAssertEqual(call(0, x[...], 30), .invalidArgument)
        XCTAssertEqual(call(-2, x[...], 30), .invalidArgument)
        XCTAssertEqual(call(10, x[0..<59], 30), .sizeMismatch)
        XCTAssertEqual(call(10, x[...], 29), .sizeMismatch)
        XCTAssertEqual(y, [Float](repeating: 7, count: 30))
        XCTAssertNil(call(10, x[...], 30))
    }

    func testOverlappingInputAndOutputIsRefusedOnTheFloat32Path() throws {
        let model = try layerModel(inputSize: 2, layers: [.activation(.relu)])
        var buf: [Float] = [1, -2, 3, -4]
        XCTAssertThrowsError(try buf.withUnsafeMutableBufferPointer { p in
            try model.forward(UnsafeBufferPointer(p), batch: 2, into: p)
        }) { XCTAssertEqual(($0 as? InLoopError)?.kind, .invalidArgument) }
        var d: [Double] = [1, -2, 3, -4]
        try d.withUnsafeMutableBufferPointer { p in try model.forward(UnsafeBufferPointer(p), batch: 2, into: p) }
        XCTAssertEqual(d, [1, 0, 3, 0])
    }

    func testCheckFiniteReportsTheFirstBadValue() throws {
        let model = try layerModel(inputSize: 3, layers: [.activation(.identity)])
        let x: [Float] = [1, 2, 3, 4, .nan, 6]
        XCTAssertNoThrow(try model.forward(x, batch: 2))
        model.checkFinite = true
        XCTAssertThrowsError(try model.forward(x, batch: 2)) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .nonFinite)
            XCTAssertTrue("\(e)".contains("value 2 of sample 2"), "\(e)")
        }
        XCTAssertThrowsError(try model.forward([Float(1), 2, Float.infinity], batch: 1))
    }

    func testConcurrentUseOfOneModelIsBusyNotACrash() throws {
        let model = try makeModel()
        let x = [Float](repeating: 0.5, count: 6 * 512)
        let expected = try model.forward(x, batch: 512)
        nonisolated(unsafe) var busy = 0, ok = 0, wrong = 0
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 400) { _ in
            do {
                let y = try model.forward(x, batch: 512)
                lock.lock(); ok += 1; if y != expected { wrong += 1 }; lock.unlock()
            } catch {
                lock.lock(); if (error as? InLoopError)?.kind == .busy { busy += 1 }; lock.unlock()
            }
        }
        XCTAssertEqual(ok + busy, 400)
        XCTAssertEqual(wrong, 0, "a call that succeeded must give the right answer")
        XCTAssertGreaterThan(ok, 0)
    }
}

final class ReproducibilityTests: XCTestCase {
    /// In reproducible mode a sample's output bits do not depend on the batch it is computed in.
    func testReproducibleModeIsIndependentOfBatchingBitwise() throws {
        var rng = LCG(s: 11)
        let model = try layerModel(inputSize: 40, layers: [try dense(&rng, 40, 96, .tanh), try dense(&rng, 96, 96, .relu),
                                                      try dense(&rng, 96, 7)])
        model.reproducible = true
        let total = 301
        let x = rng.floats(total * 40, scale: 2)
        let full = try model.forward(x, batch: total)
        for (start, end) in [(0, 151), (151, 301), (1, 300), (17, 18), (0, 1), (100, 233)] {
            let part = try model.forward(Array(x[(start * 40)..<(end * 40)]), batch: end - start)
            XCTAssertEqual(part, Array(full[(start * 7)..<(end * 7)]), "columns \(start)..<\(end)")
        }
        // The same numbers as the default path's batch-1 computation, and close to its batched one.
        model.reproducible = false
        let fast = try model.forward(x, batch: total)
        XCTAssertLessThan(maxRelErr(fast.map(Double.init), full.map(Double.init)), 1e-5)
        XCTAssertEqual(try model.forward(Array(x[0..<40]), batch: 1), Array(full[0..<7]))
        XCTAssertEqual(try model.forward(x, batch: total), fast, "default mode is deterministic run to run")
    }
}
