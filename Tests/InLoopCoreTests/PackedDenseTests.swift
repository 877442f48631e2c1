import XCTest
@testable import InLoopCore

// The packed dense kernel (ilk_packed_gemm, Kernels.packedDense): float32 inference Dense/Gemm layers
// at batch >= 2 on a weight re-laid out once per executor, with one FMA per term in the order of k.
// Checked against a float64 reference on random shapes (output counts off the 16-column panels, k from
// 1, with and without bias, activations with a C kernel and without), for batch independence (a row
// gets the same bits at any batch size and position), for equal bits at every level that has the
// kernel, and through a model: batch N against slices of it, and the fall-back at the baseline level.

final class PackedDenseTests: XCTestCase {
    struct Rng {
        var s: UInt64
        mutating func next() -> Float {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return Float(s >> 40) / Float(1 << 24) - 0.5
        }
        mutating func int(_ n: Int) -> Int {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return Int((s >> 33) % UInt64(n))
        }
    }

    static let activations: [Activation] = [.identity, .relu, .tanh, .sigmoid, .leakyRelu(alpha: 0.1)]

    /// Levels at which the kernel runs (AVX2 and up, as the CPU allows).
    static var packedLevels: [CPULevel] { CPULevel.allCases.filter { $0 != .baseline && $0.rawValue <= Kernels.supportedCPULevel.rawValue } }

    /// The levels with the kernel, skipping the test on a CPU without AVX2+FMA; the CPU level the test
    /// started at is restored when it ends.
    func packedLevelsRestoringLevel() throws -> [CPULevel] {
        let levels = Self.packedLevels
        try XCTSkipIf(levels.isEmpty, "this CPU has no AVX2+FMA: the packed kernel never runs")
        let saved = Kernels.cpuLevel
        addTeardownBlock { Kernels.setCPULevel(saved) }
        return levels
    }

    func run(_ w: [Float], _ x: [Float], _ b: [Float]?, n: Int, m: Int, k: Int, _ act: Activation) throws -> [Float]? {
        var p = [Float](repeating: .nan, count: try Kernels.packedDenseCount(rows: m, cols: k))
        p.withUnsafeMutableBufferPointer { Kernels.packDenseWeights(w, rows: m, cols: k, into: $0.baseAddress!) }
        var y = [Float](repeating: .nan, count: n * m)
        let done = y.withUnsafeMutableBufferPointer { yp in
            x.withUnsafeBufferPointer { xp in
                if let b {
                    return b.withUnsafeBufferPointer { Kernels.packedDense(p, x: xp.baseAddress!, bias: $0.baseAddress!, yp.baseAddress!, rows: n, outCols: m, inCols: k, activation: act) }
                }
                return Kernels.packedDense(p, x: xp.baseAddress!, bias: nil, yp.baseAddress!, rows: n, outCols: m, inCols: k, activation: act)
            }
        }
        return done ? y : nil
    }

    /// One output (m = 1) runs rows in the lanes (fma_rows1), not a 16-column panel: each value must be
    /// the panel path's, bit for bit, i.e. column 0 of the same layer with a second output, at every
    /// row count (whole registers and the tail), across the 256-term chunk, with every activation.
    func testSingleOutputEqualsPanelColumn() throws {
        let levels = try packedLevelsRestoringLevel()
        var rng = Rng(s: 0x5151)
        for (trial, (n, k)) in [(2, 1), (7, 3), (8, 32), (16, 32), (17, 5), (37, 300), (64, 257), (100, 94)].enumerated() {
            let act = Self.activations[trial % Self.activations.count]
            let w0 = (0..<k).map { _ in rng.next() }, w1 = (0..<k).map { _ in rng.next() }
            let x = (0..<(n * k)).map { _ in 2 * rng.next() }
            let b: [Float]? = trial % 3 == 1 ? nil : [rng.next(), rng.next()]
            for level in levels {
                Kernels.setCPULevel(level)
                let one = try XCTUnwrap(try run(w0, x, b.map { [$0[0]] }, n: n, m: 1, k: k, act))
                let two = try XCTUnwrap(try run(w0 + w1, x, b, n: n, m: 2, k: k, act))
                for r in 0..<n {
                    XCTAssertEqual(one[r].bitPattern, two[2 * r].bitPattern, "n \(n) k \(k) \(act) row \(r) at \(level)")
                }
            }
        }
    }

    func testAgainstFloat64AndBatchIndependence() throws {
        let levels = try packedLevelsRestoringLevel()
        var rng = Rng(s: 0x1234_5678_9ABC_DEF1)
        var cases = 0
        for trial in 0..<60 {
            let n = 2 + rng.int(40), m = 1 + rng.int(70), k = 1 + rng.int(trial % 3 == 0 ? 700 : 40)
            let act = Self.activations[trial % Self.activations.count]
            let w = (0..<(m * k)).map { _ in rng.next() }, x = (0..<(n * k)).map { _ in 2 * rng.next() }
            let b: [Float]? = trial % 4 == 1 ? nil : (0..<m).map { _ in rng.next() }
            var first: [Float]? = nil
            for level in levels {
                Kernels.setCPULevel(level)
                guard let y = try run(w, x, b, n: n, m: m, k: k, act) else { return XCTFail("no packed kernel at \(level)") }
                // float64 reference, bound from the sum of |terms|
                for r in 0..<n {
                    for o in 0..<m {
                        var z = Double(b?[o] ?? 0), mag = abs(z)
                        for j in 0..<k { let t = Double(x[r * k + j]) * Double(w[o * k + j]); z += t; mag += abs(t) }
                        let want: Double
                        switch act {
                        case .identity: want = z
                        case .relu: want = max(z, 0)
                        case .tanh: want = Foundation_tanh(z)
                        case .sigmoid: want = 1 / (1 + Foundation_exp(-z))
                        case .leakyRelu(let a): want = z >= 0 ? z : Double(a) * z
                        default: want = z
                        }
                        let tol = 4e-7 * Double(k + 2) * max(mag, 1e-30) + 1e-6 * abs(want)
                        if abs(Double(y[r * m + o]) - want) > tol {
                            return XCTFail("n \(n) m \(m) k \(k) \(act) at \(level): y[\(r), \(o)] = \(y[r * m + o]), float64 \(want)")
                        }
                    }
                }
                // each row alone (and the first two rows as a batch of 2) gives the same bits
                for r in [0, n / 2, n - 1] {
                    let xr = Array(x[(r * k)..<((r + 1) * k)])
                    guard let yr = try run(w, xr, b, n: 1, m: m, k: k, act) else { return XCTFail("no kernel") }
                    XCTAssertEqual(yr.map(\.bitPattern), y[(r * m)..<((r + 1) * m)].map(\.bitPattern), "row \(r) alone, n \(n) m \(m) k \(k) \(act)")
                }
                if let f = first { XCTAssertEqual(f.map(\.bitPattern), y.map(\.bitPattern), "levels differ, n \(n) m \(m) k \(k)") } else { first = y }
                cases += 1
            }
        }
        XCTAssertEqual(cases, 60 * levels.count)
    }

    /// Kernels.fmaGEMM (Float.gemm's kernel): the four transpose forms, accumulate or not, leading
    /// dimensions larger than the matrices (the gaps must stay untouched), against float64; and
    /// X·Wᵀ + b through it gives the bits of the packed dense kernel (training forward = inference).
    func testGEMMFormsAgainstFloat64() throws {
        let levels = try packedLevelsRestoringLevel()
        var rng = Rng(s: 99)
        for level in levels {
            Kernels.setCPULevel(level)
            for trial in 0..<64 {
                let ta = trial & 1 != 0, tb = trial & 2 != 0, acc = trial & 4 != 0
                let m = 1 + rng.int(50), n = 1 + rng.int(60), k = 1 + rng.int(trial % 5 == 0 ? 600 : 40)
                let lda = (ta ? m : k) + rng.int(3), ldb = (tb ? k : n) + rng.int(3), ldc = n + rng.int(3)
                let a = (0..<(lda * (ta ? k : m))).map { _ in rng.next() }, b = (0..<(ldb * (tb ? n : k))).map { _ in rng.next() }
                let c0 = (0..<(ldc * m)).map { _ in rng.next() }
                var c = c0
                let done = c.withUnsafeMutableBufferPointer { cp in
                    Kernels.fmaGEMM(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: acc,
                                    c: cp.baseAddress!, ldc: ldc)
                }
                XCTAssertTrue(done)
                for i in 0..<m {
                    for j in 0..<ldc {
                        let got = c[i * ldc + j]
                        guard j < n else { XCTAssertEqual(got.bitPattern, c0[i * ldc + j].bitPattern, "gap written"); continue }
                        var z = acc ? Double(c0[i * ldc + j]) : 0, mag = abs(z)
                        for t in 0..<k {
                            let av = Double(ta ? a[t * lda + i] : a[i * lda + t]), bv = Double(tb ? b[j * ldb + t] : b[t * ldb + j])
                            z += av * bv; mag += abs(av * bv)
                        }
                        if abs(Double(got) - z) > 4e-7 * Double(k + 2) * max(mag, 1e-30) {
                            return XCTFail("ta \(ta) tb \(tb) acc \(acc) m \(m) n \(n) k \(k): c[\(i), \(j)] = \(got), float64 \(z)")
                        }
                    }
                }
            }
            // x·wᵀ through Float.gemm, then + b, equals the packed dense kernel bit for bit
            let n = 13, m = 37, k = 300
            let w = (0..<(m * k)).map { _ in rng.next() }, x = (0..<(n * k)).map { _ in rng.next() }, bias = (0..<m).map { _ in rng.next() }
            var y = [Float](repeating: 0, count: n * m)
            y.withUnsafeMutableBufferPointer { yp in
                Float.gemm(transA: false, transB: true, m: n, n: m, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: 0, c: yp.baseAddress!, ldc: m)
            }
            for r in 0..<n { for o in 0..<m { y[r * m + o] += bias[o] } }
            let packed = try XCTUnwrap(try run(w, x, bias, n: n, m: m, k: k, .identity))
            XCTAssertEqual(y.map(\.bitPattern), packed.map(\.bitPattern), "training forward vs inference forward at \(level)")
        }
    }

    func testBaselineHasNoPackedKernel() throws {
        let saved = Kernels.cpuLevel
        defer { Kernels.setCPULevel(saved) }
        Kernels.setCPULevel(.baseline)
        XCTAssertNil(try run([1, 2, 3, 4], [1, 1, 2, 2], nil, n: 2, m: 2, k: 2, .identity))
    }

    /// Through a model: batch N equals the same rows run as smaller batches bitwise (every level with
    /// the kernel), and at the baseline level (sgemm) agrees within float32 rounding.
    func testModelBatchesAgree() throws {
        var rng = Rng(s: 77)
        func dense(_ i: Int, _ o: Int, _ a: Activation) throws -> Layer {
            .dense(Dense(weight: try Tensor(shape: [o, i], values: (0..<(o * i)).map { _ in rng.next() }),
                         bias: try Tensor(shape: [o], values: (0..<o).map { _ in rng.next() }), activation: a))
        }
        let model = try layerModel(inputSize: 37, layers: [try dense(37, 70, .tanh), try dense(70, 33, .relu), try dense(33, 5, .sigmoid)])
        let n = 29
        let x = (0..<(n * 37)).map { _ in 3 * rng.next() }
        let saved = Kernels.cpuLevel
        defer { Kernels.setCPULevel(saved) }
        var results: [[Float]] = []
        for level in Self.packedLevels + [.baseline] {
            Kernels.setCPULevel(level)
            let whole = try model.forward(x, batch: n)
            if level != .baseline {
                var sliced: [Float] = []
                for (lo, hi) in [(0, 2), (2, 19), (19, 29)] {
                    sliced += try model.forward(Array(x[(lo * 37)..<(hi * 37)]), batch: hi - lo)
                }
                XCTAssertEqual(sliced.map(\.bitPattern), whole.map(\.bitPattern), "batch slices at \(level)")
            }
            results.append(whole)
        }
        for r in results.dropFirst() {
            for i in r.indices { XCTAssertEqual(r[i], results[0][i], accuracy: 1e-5 * max(1, abs(results[0][i]))) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
private func Foundation_tanh(_ x: Double) -> Double { tanh(x) }
private func Foundation_exp(_ x: Double) -> Double { exp(x) }
