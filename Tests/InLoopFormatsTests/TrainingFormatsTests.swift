import XCTest
import Foundation
@testable import InLoopFormats
import InLoopCore

let yamlConfig = """
# a column-physics emulator
model:
  inputs: 3
  layers:
    - {type: normalize, mean: [0, 1, -1], std: [1, 2, 0.5]}
    - type: dense
      out: 16
      activation: gelu
      approximate: tanh
    - type: residual
      layers:
        - {type: dense, out: 16, activation: leaky_relu, alpha: 0.1}
    - {type: dense, out: 2, bias: false}
loss: {type: huber, delta: 0.5, weights: [1, 2]}
optimizer:
  type: adamw
  lr: 3.0e-3
  weight_decay: 0.01
  clip_norm: 1
schedule: {type: cosine, period: 100, min_lr: 1e-5, warmup: 10}
init: he
seed: 17
precision: float64
"""

final class TrainingConfigTests: XCTestCase {
    func testYAMLAndJSONGiveTheSameConfiguration() throws {
        let y = try TrainingConfigFormat.parse(yamlConfig)
        XCTAssertEqual(y.inputSize, 3)
        XCTAssertEqual(y.layers.count, 4)
        XCTAssertEqual(y.layers[1], .dense(inputs: 3, outputs: 16, activation: .geluTanh, bias: true))
        XCTAssertEqual(y.layers[3], .dense(inputs: 16, outputs: 2, activation: .identity, bias: false))
        XCTAssertEqual(y.loss, Loss(.huber(delta: 0.5), weights: [1, 2]))
        XCTAssertEqual(y.optimizer, OptimizerConfig(.adamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 3e-3, weightDecay: 0.01, clipNorm: 1))
        XCTAssertEqual(y.schedule, Schedule(.cosine(period: 100, minimum: 1e-5), warmup: 10))
        XCTAssertEqual(y.initialization, .he)
        XCTAssertEqual(y.seed, 17)
        XCTAssertEqual(y.precision, .float64)
        // The configuration written into checkpoints parses back to itself, as JSON and as YAML.
        let json = TrainingConfigFormat.json(y).description
        XCTAssertEqual(try TrainingConfigFormat.parse(json), y)
        XCTAssertEqual(try TrainingConfigFormat.parse(" \n" + json), y)
    }

    func testYAMLScalarsResolveLikeYAML12() throws {
        let v = try YAML.parse("a: 1\nb: 2.5e-3\nc: true\nd: ~\ne: '1'\nf: hello\ng: [1, x, 0x10]\nh: -.inf\n")
        XCTAssertEqual(v["a"], .number(1)); XCTAssertEqual(v["b"], .number(2.5e-3)); XCTAssertEqual(v["c"], .bool(true))
        XCTAssertEqual(v["d"], .null); XCTAssertEqual(v["e"], .string("1")); XCTAssertEqual(v["f"], .string("hello"))
        XCTAssertEqual(v["g"], .array([.number(1), .string("x"), .number(16)])); XCTAssertEqual(v["h"], .number(-.infinity))
    }

    /// `noise:` and the CRPS loss: parsed, written back and read again; their errors name the place.
    func testNoiseAndCRPSConfiguration() throws {
        let text = "model:\n  inputs: 5\n  layers:\n    - {type: dense, out: 1}\nloss: {type: crps, members: 6, fair: true}\n"
            + "noise: {first: 3, count: 2, seed: 99}\n"
        let c = try TrainingConfigFormat.parse(text)
        XCTAssertEqual(c.loss.kind, .crps(members: 6, fair: true))
        XCTAssertEqual(c.noise, TrainerNoise(firstFeature: 3, count: 2, seed: 99))
        XCTAssertEqual(try TrainingConfigFormat.parse(TrainingConfigFormat.json(c).description), c)
        XCTAssertEqual(try TrainingConfigFormat.parse("loss: crps\n").loss.kind, .crps(members: 4, fair: false))
        let bad: [(String, String)] = [
            ("model:\n  inputs: 3\n  layers:\n    - {type: dense, out: 1}\nnoise: {first: 2, count: 2}\n", "noise: features 2..<4"),
            ("noise: {first: 0, cout: 1}\n", "unknown key \"cout\""),
            ("noise: {count: 0}\n", "noise.count"),
            ("loss: {type: crps, members: 1, fair: true}\n", "loss.members"),
            ("loss: {type: crps, members: 5000}\n", "loss.members"),
            ("loss: {type: crps, fair: 1}\n", "loss.fair"),
        ]
        for (t, expect) in bad {
            do {
                _ = try TrainingConfigFormat.parse(t)
                XCTFail("should fail: \(t)")
            } catch {
                XCTAssertTrue("\(error)".contains(expect), "\(error) should mention \(expect)")
            }
        }
    }

    func testConfigurationErrorsNameThePlace() {
        let cases: [(String, String)] = [
            ("model:\n  inputs: 2\n  layers:\n    - {type: dense, out: 4, activaton: relu}\n", "model.layers[0]: unknown key \"activaton\""),
            ("optimizer: {type: adam, learning_rat: 1}\n", "unknown key \"learning_rat\""),
            ("optimizer: {type: rmsprop}\n", "unknown optimizer \"rmsprop\""),
            ("model:\n  inputs: 2\n  layers:\n    - {type: dense, in: 3, out: 4}\n", "model.layers[0].in: is 3 but the layer receives 2"),
            ("model:\n  inputs: 2\n  layers:\n    - {type: dense, out: 4, activation: swish2}\n", "swish2"),
            ("loss: {type: mse, weights: [1, 2, 3]}\nmodel: {inputs: 1, layers: [{type: dense, out: 2}]}\n", "loss.weights"),
            ("a: [1, 2\n", "invalid YAML at line"),
            ("x: &a 1\ny: *a\n", "aliases"),
            ("precision: float16\n", "float16"),
            ("schedule: {type: step}\n", "schedule.step_size: is required"),
            ("seed: -1\n", "seed"),
            ("{\"optimizer\": {\"lr\": \"fast\"}}", "optimizer.lr: must be a finite number"),
        ]
        for (text, expect) in cases {
            do {
                _ = try TrainingConfigFormat.parse(text)
                XCTFail("should fail: \(text)")
            } catch {
                XCTAssertTrue("\(error)".contains(expect), "\(error) should mention \(expect)")
            }
        }
    }
}

final class CheckpointTests: XCTestCase {
    func batches<T: Real>(_: T.Type, count: Int) -> [([T], [T])] {
        var rng = RandomState(seed: 4)
        return (0..<count).map { _ in
            var x: [T] = [], y: [T] = []
            for _ in 0..<32 {
                let a = 2 * rng.uniform() - 1, b = 2 * rng.uniform() - 1, c = 2 * rng.uniform() - 1
                x += [T(a), T(b), T(c)]
                y += [T(a * b + c), T(a - b * c)]
            }
            return (x, y)
        }
    }

    /// The climate-model exact-restart test: N steps straight through, and k steps + checkpoint +
    /// reload + N−k steps, give bitwise identical weights, optimizer state and step count.
    func exactRestart<T: Real>(_: T.Type, _ config: TrainerConfig) throws {
        let data = batches(T.self, count: 12)
        let straight = try Trainer<T>(config: config)
        for (x, y) in data { try straight.trainStep(x: x, y: y, batch: 32) }

        let first = try Trainer<T>(config: config)
        for (x, y) in data[0..<5] { try first.trainStep(x: x, y: y, batch: 32) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("inloop-ckpt-\(getpid())-\(T.self).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Checkpoint.save(first, to: path)
        let restored: Trainer<T>
        switch try Checkpoint.load(path: path) {
        case .float32(let t): restored = try XCTUnwrap(t as? Trainer<T>)
        case .float64(let t): restored = try XCTUnwrap(t as? Trainer<T>)
        }
        XCTAssertEqual(restored.step, 5)
        for (x, y) in data[5...] { try restored.trainStep(x: x, y: y, batch: 32) }
        XCTAssertEqual(restored.network.parameters.array, straight.network.parameters.array, "\(T.self) \(config.optimizer.kind): weights differ after restart")
        for (a, b) in zip(restored.state, straight.state) { XCTAssertEqual(a.array, b.array) }
        XCTAssertEqual(restored.step, straight.step)
        XCTAssertEqual(restored.lossHistory, straight.lossHistory)
        XCTAssertEqual(restored.random, straight.random)
        XCTAssertEqual(restored.learningRate, straight.learningRate)
    }

    func testExactRestartForEveryOptimizerAndPrecision() throws {
        var config = try TrainingConfigFormat.parse("""
            model: {inputs: 3, layers: [{type: dense, out: 24, activation: tanh}, {type: dense, out: 24, activation: silu}, {type: dense, out: 2}]}
            schedule: {type: cosine, period: 20, min_lr: 1e-4, warmup: 3}
            seed: 8
            """)
        for opt in ["{type: adam, lr: 0.01}", "{type: adamw, lr: 0.01, weight_decay: 0.1, clip_norm: 0.5}", "{type: sgd, lr: 0.05, momentum: 0.9, nesterov: true}"] {
            config.optimizer = try TrainingConfigFormat.parse("optimizer: \(opt)").optimizer
            try exactRestart(Float.self, config)
            try exactRestart(Double.self, config)
        }
    }

    func testCheckpointIsNotAModelAndViceVersa() throws {
        let t = try Trainer<Float>(config: try TrainingConfigFormat.parse("model: {inputs: 2, layers: [{type: dense, out: 1}]}"))
        let ckpt = try Checkpoint.serialize(t)
        XCTAssertThrowsError(try NativeFormat.load(bytes: ckpt))
        let model = try NativeFormat.serialize(try t.network.inferenceModel())
        XCTAssertTrue(message { _ = try Checkpoint.load(bytes: model) }.contains("model file, not a training checkpoint"))
        // a truncated checkpoint is a format error
        XCTAssertEqual(kind { _ = try Checkpoint.load(bytes: Array(ckpt[0..<(ckpt.count - 3)])) }, .format)
    }

    func testJacobianAgreesWithTangentAndAdjointSweeps() throws {
        for (nIn, nOut) in [(3, 5), (5, 2)] {
            let net = try EngineNetwork<Double>(inputSize: nIn, layers: [.dense(inputs: nIn, outputs: 7, activation: .tanh, bias: true),
                                                                   .dense(inputs: 7, outputs: nOut, activation: .softplus, bias: true)])
            var rng = RandomState(seed: 2)
            Initialization.xavier.initialize(net, random: &rng)
            let batch = 3
            let x = (0..<(batch * nIn)).map { _ in 2 * rng.uniform() - 1 }
            var j = [Double](repeating: 0, count: batch * nIn * nOut)
            try x.withUnsafeBufferPointer { xp in try j.withUnsafeMutableBufferPointer { try net.jacobian(xp.baseAddress!, batch: batch, into: $0.baseAddress!) } }
            // central differences, column by column
            for s in 0..<batch {
                for i in 0..<nIn {
                    var xp = Array(x[(s * nIn)..<((s + 1) * nIn)]), xm = xp
                    xp[i] += 1e-6; xm[i] -= 1e-6
                    let fp = try xp.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: 1), count: nOut)) }
                    let fm = try xm.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: 1), count: nOut)) }
                    for o in 0..<nOut {
                        XCTAssertEqual(j[(s * nIn + i) * nOut + o], (fp[o] - fm[o]) / 2e-6, accuracy: 1e-8, "J[\(o),\(i),\(s)] (\(nIn)→\(nOut))")
                    }
                }
            }
        }
    }
}
