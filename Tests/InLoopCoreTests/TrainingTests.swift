import XCTest
import Foundation
@testable import InLoopCore

/// Every layer type, as a small float64 network, for the derivative tests.
let derivativeCases: [(String, Int, [LayerSpec])] = {
    let acts: [Activation] = [.identity, .relu, .leakyRelu(alpha: 0.2), .tanh, .sigmoid, .gelu, .geluTanh, .silu, .softplus, .elu(alpha: 0.7)]
    var cases: [(String, Int, [LayerSpec])] = acts.map { a in
        ("dense+\(a)", 3, [.dense(inputs: 3, outputs: 4, activation: a, bias: true), .dense(inputs: 4, outputs: 2, activation: .identity, bias: false)])
    }
    cases += acts.map { a in ("activation layer \(a)", 3, [.dense(inputs: 3, outputs: 4, activation: .identity, bias: true), .activation(a)]) }
    cases.append(("normalize/denormalize", 3, [
        .normalize(mean: [0.5, -1, 2], std: [2, 0.5, 3]),
        .dense(inputs: 3, outputs: 3, activation: .tanh, bias: true),
        .denormalize(mean: [1, 2, 3], std: [4, 0.25, 1.5]),
    ]))
    cases.append(("nested residual", 4, [
        .dense(inputs: 4, outputs: 5, activation: .silu, bias: true),
        .residual([.dense(inputs: 5, outputs: 5, activation: .tanh, bias: true),
                   .residual([.activation(.softplus), .dense(inputs: 5, outputs: 5, activation: .identity, bias: false)])]),
        .residual([.activation(.identity)]),
        .dense(inputs: 5, outputs: 2, activation: .identity, bias: true),
    ]))
    return cases
}()

func makeNetwork(_ inputSize: Int, _ layers: [LayerSpec], seed: UInt64 = 5) throws -> EngineNetwork<Double> {
    let net = try EngineNetwork<Double>(inputSize: inputSize, layers: layers)
    var rng = RandomState(seed: seed)
    Initialization.xavier.initialize(net, random: &rng)
    // non-zero biases so every path matters
    for l in LayerSpec.denseSlots(layers) { if let b = l.bias { for i in 0..<l.outputs { net.parameters.base[b + i] = 0.3 * (rng.uniform() - 0.5) } } }
    return net
}

func randomArray(_ n: Int, _ rng: inout RandomState, scale: Double = 1) -> [Double] { (0..<n).map { _ in scale * (2 * rng.uniform() - 1) } }

final class GradientCheckTests: XCTestCase {
    /// d loss/d parameters and d loss/d inputs against central finite differences, in float64.
    func testEveryLayerTypeAgainstFiniteDifferences() throws {
        for (name, nIn, layers) in derivativeCases {
            let net = try makeNetwork(nIn, layers)
            var rng = RandomState(seed: 9)
            let batch = 3
            let x = randomArray(batch * nIn, &rng, scale: 1.5)
            let y = randomArray(batch * net.outputSize, &rng)
            let loss = Loss(.mse)
            func lossAt() throws -> Double {
                let p = try net.forward(x, batch: batch)
                return y.withUnsafeBufferPointer { loss.evaluate(prediction: p, target: $0.baseAddress!, batch: batch, outputs: net.outputSize, gradient: nil) }
            }
            let pred = try net.forward(x, batch: batch)
            var dy = [Double](repeating: 0, count: batch * net.outputSize)
            _ = y.withUnsafeBufferPointer { yp in dy.withUnsafeMutableBufferPointer { loss.evaluate(prediction: pred, target: yp.baseAddress!, batch: batch, outputs: net.outputSize, gradient: $0.baseAddress!) } }
            var dx = [Double](repeating: 0, count: batch * nIn)
            try dy.withUnsafeBufferPointer { d in try dx.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: batch, parameterGradients: true, inputGradient: $0.baseAddress!) } }
            let analytic = net.gradients.array
            let h = 1e-6
            var worst = 0.0
            for i in 0..<net.parameterCount {
                let p0 = net.parameters.base[i]
                net.parameters.base[i] = p0 + h; let lp = try lossAt()
                net.parameters.base[i] = p0 - h; let lm = try lossAt()
                net.parameters.base[i] = p0
                let fd = (lp - lm) / (2 * h)
                worst = max(worst, abs(fd - analytic[i]) / max(1e-3, abs(fd)))
            }
            // inputs
            for i in 0..<x.count {
                var xp = x, xm = x
                xp[i] += h; xm[i] -= h
                let lp = try y.withUnsafeBufferPointer { yp in loss.evaluate(prediction: try net.forward(xp, batch: batch), target: yp.baseAddress!, batch: batch, outputs: net.outputSize, gradient: nil) }
                let lm = try y.withUnsafeBufferPointer { yp in loss.evaluate(prediction: try net.forward(xm, batch: batch), target: yp.baseAddress!, batch: batch, outputs: net.outputSize, gradient: nil) }
                let fd = (lp - lm) / (2 * h)
                worst = max(worst, abs(fd - dx[i]) / max(1e-3, abs(fd)))
            }
            XCTAssertLessThan(worst, 1e-6, "\(name): worst relative gradient error \(worst)")
        }
    }

    func testLossGradientsAgainstFiniteDifferences() {
        for loss in [Loss(.mse), Loss(.mae), Loss(.huber(delta: 0.5)), Loss(.mse, weights: [1, 3, 0.5]), Loss(.huber(delta: 2), weights: [2, 1, 1])] {
            let p: [Double] = [0.3, -1.2, 2.5, 0.1, 0.05, -3], y: [Double] = [0, -1, 1, 0.4, -0.2, -0.5]
            var g = [Double](repeating: 0, count: 6)
            _ = g.withUnsafeMutableBufferPointer { loss.evaluate(prediction: p, target: y, batch: 2, outputs: 3, gradient: $0.baseAddress!) }
            for i in 0..<6 {
                var pp = p, pm = p
                pp[i] += 1e-6; pm[i] -= 1e-6
                let fd = (loss.evaluate(prediction: pp, target: y, batch: 2, outputs: 3, gradient: Optional<UnsafeMutablePointer<Double>>.none)
                          - loss.evaluate(prediction: pm, target: y, batch: 2, outputs: 3, gradient: Optional<UnsafeMutablePointer<Double>>.none)) / 2e-6
                XCTAssertEqual(g[i], fd, accuracy: 1e-6, "\(loss.kind) \(i)")
            }
        }
        // MSE value: mean of squares
        XCTAssertEqual(Loss(.mse).evaluate(prediction: [1.0, 3.0], target: [0.0, 0.0], batch: 1, outputs: 2, gradient: Optional<UnsafeMutablePointer<Double>>.none), 5)
    }
}

final class TangentLinearAdjointTests: XCTestCase {
    /// The 4D-Var checks: tangent-linear vs finite differences, and the adjoint dot-product test
    /// <J dx, dy> = <dx, Jᵀ dy> to round-off.
    func testTangentLinearAndAdjointForEveryLayerType() throws {
        for (name, nIn, layers) in derivativeCases {
            let net = try makeNetwork(nIn, layers)
            var rng = RandomState(seed: 21)
            let batch = 4, nOut = net.outputSize
            let x = randomArray(batch * nIn, &rng, scale: 1.5)
            let dx = randomArray(batch * nIn, &rng)
            let dyIn = randomArray(batch * nOut, &rng)
            _ = try net.forward(x, batch: batch)
            let jdx = Array(UnsafeBufferPointer(start: try dx.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: batch) }, count: batch * nOut))
            var jtdy = [Double](repeating: 0, count: batch * nIn)
            try dyIn.withUnsafeBufferPointer { d in try jtdy.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: batch, parameterGradients: false, inputGradient: $0.baseAddress!) } }
            let lhs = zip(jdx, dyIn).reduce(0) { $0 + $1.0 * $1.1 }
            let rhs = zip(dx, jtdy).reduce(0) { $0 + $1.0 * $1.1 }
            // Relative to ‖J dx‖·‖dy‖ (Cauchy–Schwarz bound of both sides), as adjoint tests normalise.
            let dotScale = (jdx.reduce(0) { $0 + $1 * $1 }).squareRoot() * (dyIn.reduce(0) { $0 + $1 * $1 }).squareRoot()
            XCTAssertLessThan(abs(lhs - rhs) / dotScale, 1e-14, "\(name): dot-product test \(lhs) vs \(rhs)")
            // tangent-linear vs central differences: (f(x + h dx) - f(x - h dx)) / 2h
            let h = 1e-6
            let fp = Array(UnsafeBufferPointer(start: try net.forward(zip(x, dx).map { $0 + h * $1 }, batch: batch), count: batch * nOut))
            let fm = Array(UnsafeBufferPointer(start: try net.forward(zip(x, dx).map { $0 - h * $1 }, batch: batch), count: batch * nOut))
            let fd = zip(fp, fm).map { ($0 - $1) / (2 * h) }
            let scale = max(fd.map(abs).max() ?? 0, 1e-3)
            XCTAssertLessThan(zip(fd, jdx).map { abs($0 - $1) }.max()! / scale, 1e-7, "\(name): tangent-linear vs finite differences")
        }
    }
}

extension EngineNetwork where T == Double {
    func forward(_ x: [Double], batch: Int) throws -> UnsafePointer<Double> {
        // the network reads x until the next forward; keep it alive in a box
        let box = UnsafeMutablePointer<Double>.allocate(capacity: x.count)
        box.initialize(from: x, count: x.count)
        keepAlive.append(box)
        return try forward(UnsafePointer(box), batch: batch)
    }
}
nonisolated(unsafe) var keepAlive: [UnsafeMutablePointer<Double>] = []

final class OptimizerTests: XCTestCase {
    /// Independent scalar references of the PyTorch update rules, step by step.
    func testUpdateRulesMatchPyTorchFormulas() {
        let grads: [[Double]] = [[0.5, -2, 0.1], [0.3, -1, -0.4], [-0.2, 0.5, 0.9], [0.1, 0.1, 0.1]]
        let start: [Double] = [1, -0.5, 2]
        let configs: [OptimizerConfig] = [
            OptimizerConfig(.sgd(momentum: 0, nesterov: false), learningRate: 0.1, weightDecay: 0.01),
            OptimizerConfig(.sgd(momentum: 0.9, nesterov: false), learningRate: 0.1),
            OptimizerConfig(.sgd(momentum: 0.9, nesterov: true), learningRate: 0.1, weightDecay: 0.05),
            OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 0.01, weightDecay: 0.1),
            OptimizerConfig(.adamW(beta1: 0.8, beta2: 0.99, epsilon: 1e-6), learningRate: 0.01, weightDecay: 0.1),
        ]
        for config in configs {
            var p = start
            let s0 = UnsafeMutablePointer<Double>.allocate(capacity: 3); s0.initialize(repeating: 0, count: 3)
            let s1 = UnsafeMutablePointer<Double>.allocate(capacity: 3); s1.initialize(repeating: 0, count: 3)
            // reference state
            var ref = start, buf = [0.0, 0, 0], m = [0.0, 0, 0], v = [0.0, 0, 0]
            for (t, g) in grads.enumerated() {
                p.withUnsafeMutableBufferPointer { pp in
                    OptimizerStep.apply(config, learningRate: config.learningRate, step: t + 1, parameters: pp.baseAddress!, gradients: g, count: 3, state: [s0, s1])
                }
                for i in 0..<3 {
                    let lr = config.learningRate, wd = config.weightDecay
                    switch config.kind {
                    case .sgd(let mu, let nesterov):
                        var d = g[i] + wd * ref[i]
                        if mu != 0 { buf[i] = t == 0 ? d : mu * buf[i] + d; d = nesterov ? d + mu * buf[i] : buf[i] }
                        ref[i] -= lr * d
                    case .adam(let b1, let b2, let eps), .adamW(let b1, let b2, let eps):
                        var d = g[i]
                        if case .adamW = config.kind { ref[i] *= 1 - lr * wd } else { d += wd * ref[i] }
                        m[i] = b1 * m[i] + (1 - b1) * d
                        v[i] = b2 * v[i] + (1 - b2) * d * d
                        let mhat = m[i] / (1 - pow(b1, Double(t + 1))), vhat = v[i] / (1 - pow(b2, Double(t + 1)))
                        ref[i] -= lr * mhat / (vhat.squareRoot() + eps)
                    }
                }
            }
            for i in 0..<3 { XCTAssertEqual(p[i], ref[i], accuracy: 1e-12, "\(config.kind)") }
            s0.deallocate(); s1.deallocate()
        }
    }

    func testSchedules() {
        XCTAssertEqual(Schedule(.step(stepSize: 10, gamma: 0.5)).rate(base: 1, step: 25), 0.25)
        XCTAssertEqual(Schedule(.cosine(period: 100, minimum: 0.1)).rate(base: 1.1, step: 0), 1.1, accuracy: 1e-15)
        XCTAssertEqual(Schedule(.cosine(period: 100, minimum: 0.1)).rate(base: 1.1, step: 50), 0.6, accuracy: 1e-12)
        XCTAssertEqual(Schedule(.cosine(period: 100, minimum: 0.1)).rate(base: 1.1, step: 500), 0.1, accuracy: 1e-15)
        XCTAssertEqual(Schedule(.constant, warmup: 4).rate(base: 2, step: 0), 0.5)
        XCTAssertEqual(Schedule(.constant, warmup: 4).rate(base: 2, step: 10), 2)
    }
}

final class TrainerTests: XCTestCase {
    func smoothTask(_ n: Int, seed: UInt64) -> ([Double], [Double]) {
        var rng = RandomState(seed: seed)
        var x: [Double] = [], y: [Double] = []
        for _ in 0..<n {
            let a = 2 * rng.uniform() - 1, b = 2 * rng.uniform() - 1
            x += [a, b]
            y += [sin(3 * a) * cos(2 * b), a * b]
        }
        return (x, y)
    }

    func testLearnsASmoothFunctionInBothPrecisions() throws {
        for precision in [TrainerConfig.Precision.float32, .float64] {
            var config = TrainerConfig(inputSize: 2, layers: [.dense(inputs: 2, outputs: 32, activation: .tanh, bias: true),
                                                              .dense(inputs: 32, outputs: 32, activation: .tanh, bias: true),
                                                              .dense(inputs: 32, outputs: 2, activation: .identity, bias: true)])
            config.optimizer = OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 0.01)
            config.seed = 3
            config.precision = precision
            let (xv, yv) = smoothTask(256, seed: 99)
            func run<T: Real>(_ t: Trainer<T>) throws -> (Double, Double) {
                let (x, y) = smoothTask(2048, seed: 1)
                let xs = x.map { T($0) }, ys = y.map { T($0) }
                var first = 0.0
                for epoch in 0..<30 {
                    for b in 0..<16 {
                        let l = try xs[(b * 256)..<(b * 256 + 256)].withUnsafeBufferPointer { xp in
                            try ys[(b * 256)..<(b * 256 + 256)].withUnsafeBufferPointer { yp in
                                try t.trainStep(x: xp.baseAddress!, y: yp.baseAddress!, batch: 128)
                            }
                        }
                        if epoch == 0, b == 0 { first = l }
                    }
                }
                let xt = xv.map { T($0) }, yt = yv.map { T($0) }
                return (first, try t.evaluate(x: xt, y: yt, batch: 256))
            }
            let (first, validation) = precision == .float32 ? try run(try Trainer<Float>(config: config)) : try run(try Trainer<Double>(config: config))
            XCTAssertLessThan(validation, 2e-3, "\(precision): validation MSE \(validation) (first batch \(first))")
            XCTAssertLessThan(validation, first / 20)
        }
    }

    func testNonFiniteDataOrLossLeavesWeightsIntact() throws {
        let config = TrainerConfig(inputSize: 2, layers: [.dense(inputs: 2, outputs: 2, activation: .identity, bias: true)], seed: 1)
        let t = try Trainer<Double>(config: config)
        let before = t.network.parameters.array
        for (x, y) in [([Double.nan, 1, 0, 0], [0.0, 0, 0, 0]), ([0, 1, 0, 0], [0.0, .infinity, 0, 0]), ([1e300, 1e300, 1, 1], [0.0, 0, 0, 0])] {
            XCTAssertThrowsError(try t.trainStep(x: x, y: y, batch: 2)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .nonFinite) }
        }
        XCTAssertEqual(t.network.parameters.array, before)
        XCTAssertEqual(t.step, 0)
        XCTAssertTrue(t.lossHistory.isEmpty)
        try t.trainStep(x: [1, 2, 3, 4], y: [0, 1, 0, 1], batch: 2)
        XCTAssertEqual(t.step, 1)
        XCTAssertNotEqual(t.network.parameters.array, before)
    }

    func testGradientClippingAndHistory() throws {
        var config = TrainerConfig(inputSize: 1, layers: [.dense(inputs: 1, outputs: 1, activation: .identity, bias: false)], seed: 1)
        config.optimizer = OptimizerConfig(.sgd(momentum: 0, nesterov: false), learningRate: 1, clipNorm: 0.5)
        let t = try Trainer<Double>(config: config)
        t.network.parameters.base[0] = 0
        let l = try t.trainStep(x: [1.0], y: [10.0], batch: 1)  // gradient 2·(0−10) = −20, clipped to norm 0.5
        XCTAssertEqual(l, 100)
        XCTAssertEqual(t.lastGradientNorm, 20)
        XCTAssertEqual(t.network.parameters.base[0], 0.5 * 20 / (20 + 1e-6), accuracy: 1e-12)
        XCTAssertEqual(t.lossHistory, [100])
    }

    func testInferenceModelRoundTripMatchesNetwork() throws {
        let net = try makeNetwork(4, derivativeCases.last!.2)
        let model = try net.inferenceModel()
        let back = try EngineNetwork<Double>(model: model)
        XCTAssertEqual(model.graph.layerSpecs, net.graph.layerSpecs, "the inference model is still the layer stack")
        XCTAssertEqual(back.parameterCount, net.parameterCount)
        let x = (0..<12).map { Double($0) / 7 - 0.8 }
        let a = Array(UnsafeBufferPointer(start: try net.forward(x, batch: 3), count: 6))
        let b = try model.forward(x, batch: 3)
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testShardsCoverTheParametersInWholeBlocks() {
        let b = DistributedStep<Float>.block
        for n in [0, 1, 370, b - 1, b, b + 1, 4546, 501_757] {
            for p in [1, 2, 3, 7, 64, 1000] {
                let shards = DistributedStep<Float>.shards(parameterCount: n, processes: p)
                XCTAssertEqual(shards.count, p)
                var next = 0
                for s in shards {
                    XCTAssertEqual(s.lowerBound, next, "n \(n), p \(p): contiguous, in rank order")
                    XCTAssertTrue(s.lowerBound % b == 0 || s.isEmpty, "starts on a block boundary")
                    XCTAssertTrue(s.upperBound % b == 0 || s.upperBound == n, "ends on a block boundary or at the end")
                    next = s.upperBound
                }
                XCTAssertEqual(next, n, "n \(n), p \(p): every parameter in exactly one shard")
                let sizes = shards.map { ($0.count + b - 1) / b }
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "as even as whole blocks allow")
            }
        }
    }

    func testLargestMagnitudeAndSumOfSquares() {
        var f: [Float] = (0..<1003).map { Float(($0 * 37) % 101) - 50.5 }
        f[611] = -77.25
        XCTAssertEqual(f.withUnsafeBufferPointer { Float.largestMagnitude($0.baseAddress!, count: $0.count) }, 77.25)
        XCTAssertEqual(f.withUnsafeBufferPointer { Float.largestMagnitude($0.baseAddress!, count: 0) }, 0)
        for bad: Float in [.nan, -.infinity, .infinity] {
            var g = f
            g[1002] = bad
            XCTAssertFalse(g.withUnsafeBufferPointer { Float.largestMagnitude($0.baseAddress!, count: $0.count) }.isFinite)
        }
        let d = f.map { Double($0) * 1e-3 }
        XCTAssertEqual(d.withUnsafeBufferPointer { Double.largestMagnitude($0.baseAddress!, count: $0.count) }, 77.25e-3)
        var nd = d
        nd[0] = -.nan
        XCTAssertTrue(nd.withUnsafeBufferPointer { Double.largestMagnitude($0.baseAddress!, count: $0.count) }.isNaN)
        let naive = f.reduce(0.0) { $0 + Double($1) * Double($1) }
        let fast = f.withUnsafeBufferPointer { Float.sumOfSquares($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(fast, naive, accuracy: 1e-12 * naive)
        XCTAssertEqual(f.withUnsafeBufferPointer { Float.sumOfSquares($0.baseAddress!, count: 5) },
                       f[0..<5].reduce(0.0) { $0 + Double($1) * Double($1) })
    }
}
