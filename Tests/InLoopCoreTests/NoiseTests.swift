import XCTest
@testable import InLoopCore

/// Noise inputs and the CRPS loss: Philox4x32-10 against the published Random123 known answers, the
/// normals' moments, noise-filled forwards against explicitly filled inputs (whatever the batch
/// split), the CRPS against a direct formula and its gradient against float64 finite differences, and
/// the trainer's noise rows against the same generator.
final class NoiseTests: XCTestCase {
    /// Random123's kat_vectors for philox4x32_10: counter, key → output.
    func testPhiloxKnownAnswers() {
        let kat: [((UInt32, UInt32, UInt32, UInt32), (UInt32, UInt32), [UInt32])] = [
            ((0, 0, 0, 0), (0, 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), (0xffff_ffff, 0xffff_ffff), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            ((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0), [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
        ]
        for (c, k, want) in kat {
            let w = Philox.block(counter: c, key: k)
            XCTAssertEqual([w.0, w.1, w.2, w.3], want)
        }
    }

    /// Mean, variance and kurtosis of 200,000 normals (4 features × 50,000 columns) within 5 standard
    /// errors; neighbouring features uncorrelated; different steps and seeds give different numbers.
    func testNormalMoments() {
        var s1 = 0.0, s2 = 0.0, s4 = 0.0, cross = 0.0
        let cols = 50_000, feats = 4
        for c in 0..<cols {
            var z = [Double](repeating: 0, count: feats)
            for f in 0..<feats { z[f] = Engine.Noise.normal(seed: 11, step: 3, column: c, feature: f) }
            for v in z { s1 += v; s2 += v * v; s4 += v * v * v * v }
            cross += z[0] * z[1] + z[1] * z[2]
        }
        let n = Double(cols * feats)
        let mean = s1 / n, variance = s2 / n - mean * mean, kurt = s4 / n
        XCTAssertLessThan(abs(mean), 5 / n.squareRoot())
        XCTAssertLessThan(abs(variance - 1), 5 * (2 / n).squareRoot())
        XCTAssertLessThan(abs(kurt - 3), 5 * (96 / n).squareRoot())
        XCTAssertLessThan(abs(cross / Double(2 * cols)), 5 / Double(2 * cols).squareRoot())
        let a = Engine.Noise.normal(seed: 11, step: 3, column: 7, feature: 1)
        XCTAssertNotEqual(a, Engine.Noise.normal(seed: 11, step: 4, column: 7, feature: 1))
        XCTAssertNotEqual(a, Engine.Noise.normal(seed: 12, step: 3, column: 7, feature: 1))
        XCTAssertNotEqual(a, Engine.Noise.normal(seed: 11, step: 3, column: 8, feature: 1))
        XCTAssertEqual(a, Engine.Noise.normal(seed: 11, step: 3, column: 7, feature: 1))
    }

    /// 4 → 3 dense model with fixed weights.
    func model(_ dtype: Engine.DType = .float32) throws -> Engine.Model {
        let w = try Engine.Tensor(shape: [3, 4], values: (0..<12).map { Float(Double($0 % 5) * 0.3 - 0.6) })
        let b = try Engine.Tensor(shape: [3], values: [Float(0.1), -0.2, 0.3])
        let params = dtype == .float32 ? [w, b] : [try w.converted(to: .float64), try b.converted(to: .float64)]
        let g = try Engine.Graph(layerSpecs: [.dense(inputs: 4, outputs: 3, activation: .tanh, bias: true)], inputSize: 4,
                                 dtype: dtype, parameters: params)
        return try Engine.Model(graph: g)
    }

    func forward(_ m: Engine.Model, _ x: [Double], batch: Int) throws -> [Double] {
        var y = [Double](repeating: 0, count: batch * 3)
        try x.withUnsafeBufferPointer { xp in try y.withUnsafeMutableBufferPointer { yp in try m.forward(xp, batch: batch, into: yp) } }
        return y
    }

    /// The noise forward equals a plain forward of inputs filled with Noise.normal, bitwise; split
    /// into two calls with their first columns, the same bits; the caller's array is unchanged.
    func testNoiseForwardMatchesExplicitInputsAndSplits() throws {
        for dtype in [Engine.DType.float32, .float64] {
            let plain = try model(dtype), noisy = try model(dtype)
            plain.reproducible = true   // outputs independent of the batch size: the split below
            noisy.reproducible = true
            let batch = 10, seed: UInt64 = 0xDEAD_BEEF_1234, step = 17, first = 100
            var x = (0..<batch * 4).map { Double($0) * 0.05 - 1 }
            let x0 = x
            var filled = x
            for j in 0..<batch { for i in 0..<2 { filled[j * 4 + 1 + i] = Engine.Noise.normal(seed: seed, step: step, column: first + j, feature: i) } }
            let want = try forward(plain, filled, batch: batch)
            try noisy.setNoise(input: 0, firstFeature: 1, count: 2, seed: seed)
            try noisy.setNoiseStep(step, firstColumn: first)
            XCTAssertEqual(try forward(noisy, x, batch: batch).map(\.bitPattern), want.map(\.bitPattern), "\(dtype)")
            XCTAssertEqual(x, x0)
            // the same columns in two calls
            try noisy.setNoiseStep(step, firstColumn: first)
            let a = try forward(noisy, Array(x[0..<16]), batch: 4)
            try noisy.setNoiseStep(step, firstColumn: first + 4)
            let b = try forward(noisy, Array(x[16...]), batch: 6)
            XCTAssertEqual((a + b).map(\.bitPattern), want.map(\.bitPattern), "\(dtype) split")
            // another step: other numbers
            try noisy.setNoiseStep(step + 1, firstColumn: first)
            XCTAssertNotEqual(try forward(noisy, x, batch: batch), want)
            x[0] = x[0]
        }
    }

    /// Blocks and stride: column j = first + (j / block)·stride + j % block.
    func testBlockStrideColumns() throws {
        let m = try model(.float64), plain = try model(.float64)
        let batch = 6, seed: UInt64 = 5
        try m.setNoise(input: 0, firstFeature: 3, count: 1, seed: seed)
        try m.setNoiseStep(2, firstColumn: 7, block: 2, stride: 50)
        let x = [Double](repeating: 0.5, count: batch * 4)
        var filled = x
        let cols = [7, 8, 57, 58, 107, 108]
        for j in 0..<batch { filled[j * 4 + 3] = Engine.Noise.normal(seed: seed, step: 2, column: cols[j], feature: 0) }
        XCTAssertEqual(try forward(m, x, batch: batch), try forward(plain, filled, batch: batch))
    }

    func testBadArgumentsAreErrors() throws {
        let m = try model()
        XCTAssertThrowsError(try m.setNoiseStep(0, firstColumn: 0))            // no noise input
        XCTAssertThrowsError(try m.setNoise(input: 1, firstFeature: 0, count: 1, seed: 0))
        XCTAssertThrowsError(try m.setNoise(input: 0, firstFeature: 3, count: 2, seed: 0))
        XCTAssertThrowsError(try m.setNoise(input: 0, firstFeature: -1, count: 1, seed: 0))
        try m.setNoise(input: 0, firstFeature: 0, count: 4, seed: 0)
        XCTAssertThrowsError(try m.setNoiseStep(-1, firstColumn: 0))
        XCTAssertThrowsError(try m.setNoiseStep(0, firstColumn: -1))
        XCTAssertThrowsError(try m.setNoiseStep(0, firstColumn: 1 << 32))
        XCTAssertThrowsError(try m.setNoiseStep(0, firstColumn: 0, block: 4, stride: 3))
        // a batch reaching column 2^32 fails at the call
        try m.setNoiseStep(0, firstColumn: (1 << 32) - 2)
        XCTAssertThrowsError(try forward(m, [Double](repeating: 0, count: 12), batch: 3))
        XCTAssertNoThrow(try forward(m, [Double](repeating: 0, count: 8), batch: 2))
        try m.setNoise(input: 0, firstFeature: 0, count: 0, seed: 0)           // removed
        XCTAssertNil(m.noiseInput)
    }

    /// The ensemble CRPS against its definition (E|X − y| − ½E|X − X'|, written with sorted members as
    /// a second form) and its gradient against central differences in float64.
    func testCRPSValueAndGradient() {
        for fair in [false, true] { checkCRPS(fair: fair) }
    }

    func checkCRPS(fair: Bool) {
        var rng = RandomState(seed: 9)
        let members = 5, batch = 3, outputs = 2
        let loss = Loss(.crps(members: members, fair: fair), weights: [1, 0.5])
        let pairs = Double(fair ? members * (members - 1) : members * members)
        let p = randomArray(batch * members * outputs, &rng)
        let y = randomArray(batch * outputs, &rng)
        var g = [Double](repeating: 0, count: p.count)
        let value = p.withUnsafeBufferPointer { pp in y.withUnsafeBufferPointer { yp in g.withUnsafeMutableBufferPointer { gp in
            loss.evaluate(prediction: pp.baseAddress!, target: yp.baseAddress!, batch: batch, outputs: outputs, gradient: gp.baseAddress!) } } }
        // the sorted-member form: CRPS = (1/M) Σ|x_i − y| − (1/pairs) Σ_i (2i − M − 1) x_(i) (i from 1),
        // pairs = M² (M(M − 1) for the fair form)
        var want = 0.0
        for s in 0..<batch {
            for o in 0..<outputs {
                let xs = (0..<members).map { p[(s * members + $0) * outputs + o] }.sorted()
                let yv = y[s * outputs + o]
                var v = xs.map { abs($0 - yv) }.reduce(0, +) / Double(members)
                for (i, xi) in xs.enumerated() { v -= Double(2 * (i + 1) - members - 1) * xi / pairs }
                want += [1, 0.5][o] * v
            }
        }
        want /= Double(batch * outputs)
        XCTAssertEqual(value, want, accuracy: 1e-13, "fair \(fair)")
        let h = 1e-6
        for i in 0..<p.count {
            var a = p, b = p
            a[i] += h; b[i] -= h
            func f(_ q: [Double]) -> Double {
                q.withUnsafeBufferPointer { qp in y.withUnsafeBufferPointer { yp in
                    loss.evaluate(prediction: qp.baseAddress!, target: yp.baseAddress!, batch: batch, outputs: outputs, gradient: nil as UnsafeMutablePointer<Double>?) } }
            }
            XCTAssertEqual(g[i], (f(a) - f(b)) / (2 * h), accuracy: 1e-8, "d/dp[\(i)], fair \(fair)")
        }
    }

    /// A CRPS trainer with a noise feature: its evaluate equals the CRPS of the rows it builds (each
    /// sample `members` times, noise at (seed, step, s·members + m)) through the same network; its
    /// training brings the fair CRPS near that of the true distribution and the outputs' spread over
    /// the noise near the data's.
    func testCRPSTrainerRowsAndTraining() throws {
        var config = TrainerConfig(inputSize: 2, layers: [.dense(inputs: 2, outputs: 16, activation: .tanh, bias: true),
                                                          .dense(inputs: 16, outputs: 1, activation: .identity, bias: true)],
                                   loss: Loss(.crps(members: 4, fair: true)), seed: 3, precision: .float64)
        config.optimizer.learningRate = 1e-2
        config.noise = TrainerNoise(firstFeature: 1, count: 1, seed: 77)
        let t = try Trainer<Double>(config: config)
        XCTAssertEqual(t.config.noise, config.noise)
        let batch = 8
        var rng = RandomState(seed: 1)
        // target: x0 plus N(0, 0.5²) noise: the network must learn a spread
        func data() -> ([Double], [Double]) {
            var x = [Double](repeating: 0, count: batch * 2), y = [Double](repeating: 0, count: batch)
            for s in 0..<batch { x[s * 2] = 2 * rng.uniform() - 1; y[s] = x[s * 2] + 0.5 * rng.normal() }
            return (x, y)
        }
        let (x, y) = data()
        let loss = try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { yp in try t.evaluate(x: xp.baseAddress!, y: yp.baseAddress!, batch: batch) } }
        var rows = [Double](repeating: 0, count: batch * 4 * 2)
        for r in 0..<batch * 4 { rows[r * 2] = x[r / 4 * 2]; rows[r * 2 + 1] = Engine.Noise.normal(seed: 77, step: 0, column: r, feature: 0) }
        let pred = try rows.withUnsafeBufferPointer { rp in Array(UnsafeBufferPointer(start: try t.network.forward(rp.baseAddress!, batch: batch * 4), count: batch * 4)) }
        let want = pred.withUnsafeBufferPointer { pp in y.withUnsafeBufferPointer { yp in
            Loss(.crps(members: 4, fair: true)).evaluate(prediction: pp.baseAddress!, target: yp.baseAddress!, batch: batch, outputs: 1, gradient: nil as UnsafeMutablePointer<Double>?) } }
        XCTAssertEqual(loss, want)
        var first = 0.0, last = 0.0
        for k in 0..<600 {
            let (xb, yb) = data()
            let l = try xb.withUnsafeBufferPointer { xp in try yb.withUnsafeBufferPointer { yp in try t.trainStep(x: xp.baseAddress!, y: yp.baseAddress!, batch: batch) } }
            if k < 50 { first += l } else if k >= 550 { last += l }
        }
        // the fair CRPS of the true N(x, 0.5²) is 0.5/√π = 0.28 (a fresh network's is above 0.4)
        XCTAssertLessThan(last / 50, 0.36)
        XCTAssertLessThan(last, first)
        // the trained spread: the outputs for one x over many noise draws have a standard deviation near 0.5
        var zs: [Double] = []
        for r in 0..<400 {
            let row = [0.2, Engine.Noise.normal(seed: 1234, step: 0, column: r, feature: 0)]
            zs.append(try row.withUnsafeBufferPointer { try t.network.forward($0.baseAddress!, batch: 1)[0] })
        }
        let mean = zs.reduce(0, +) / 400, sd = (zs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 400).squareRoot()
        XCTAssertGreaterThan(sd, 0.15, "the stochastic network learned no spread")
        XCTAssertLessThan(sd, 1.0)
    }
}
