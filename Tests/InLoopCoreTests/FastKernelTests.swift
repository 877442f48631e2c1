import XCTest
@testable import InLoopCore
import InLoopKernelsC
#if canImport(Glibc)
import Glibc
#endif

// The fast paths added for speed (issue 3 targets): the branch-free float tanh, the BLAS-free
// batch-1 dense for small layers, the 2×2/stride-2 pooling loops and the clipped general pooling
// loops, each against a naive reference (float64, or the previous implementation kept verbatim here
// where the results must stay bit-for-bit the same).

final class FastTanhTests: XCTestCase {
    /// Relative error against float64 tanh on a sweep over the float bit patterns (every 1021st
    /// positive float: all exponents, including subnormals and the saturated range). An exhaustive run
    /// over all 2³¹ positive floats gave a maximum of 1.42e-7 (at 0.6283, where the formula switches).
    func testAccuracyOverTheRealLine() {
        var worst = 0.0, at: Float = 0
        var bits: UInt32 = 0
        while bits < 0x7F80_0000 {
            let x = Float(bitPattern: bits)
            let want = Glibc.tanh(Double(x)), got = Double(Activation.tanh(x))
            let rel = want == 0 ? abs(got) : abs(got - want) / abs(want)
            if rel > worst { worst = rel; at = x }
            XCTAssertEqual(Activation.tanh(-x), -Activation.tanh(x), "odd symmetry at \(x)")
            bits += 1021
        }
        XCTAssertLessThan(worst, 3e-7, "worst relative error at \(at)")
        // Near the switch between the polynomial and the exponential form, densely.
        var x: Float = 0.55
        while x < 0.7 {
            let want = Glibc.tanh(Double(x))
            XCTAssertLessThan(abs(Double(Activation.tanh(x)) - want) / want, 3e-7, "at \(x)")
            x = x.nextUp
        }
    }

    func testSpecialValuesAndSaturation() {
        XCTAssertTrue(Activation.tanh(.nan).isNaN)
        XCTAssertTrue(Activation.tanh(-.nan).isNaN)
        XCTAssertEqual(Activation.tanh(.infinity), 1)
        XCTAssertEqual(Activation.tanh(-.infinity), -1)
        XCTAssertEqual(Activation.tanh(0).bitPattern, Float(0).bitPattern)
        XCTAssertEqual(Activation.tanh(-0.0).bitPattern, Float(-0.0).bitPattern)
        XCTAssertEqual(Activation.tanh(.leastNonzeroMagnitude), .leastNonzeroMagnitude)
        XCTAssertEqual(Activation.tanh(1e-20), 1e-20)
        for x: Float in [10, 10.5, 20, 88, 89, 1000, 1e30, .greatestFiniteMagnitude] {
            XCTAssertEqual(Activation.tanh(x), 1, "tanh(\(x))")
            XCTAssertEqual(Activation.tanh(-x), -1, "tanh(\(-x))")
        }
        // Monotone (non-decreasing) on a dense grid.
        var prev = Activation.tanh(-12)
        var x: Float = -12
        while x < 12 {
            x += 0.001
            let v = Activation.tanh(x)
            XCTAssertGreaterThanOrEqual(v, prev, "at \(x)")
            prev = v
        }
    }

    /// The vectorised kernel gives exactly `apply` at every position of a buffer (vector body and
    /// tail alike), so a value's result does not depend on where it sits in a batch.
    func testKernelMatchesScalarBitwiseAtEveryPosition() {
        var r = KTRandom(21)
        for count in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100] {
            let x = (0..<count).map { _ in Float(r.unit() * Double(r.pick([0.1, 1, 5, 30]))) }
            var y = x
            y.withUnsafeMutableBufferPointer { Kernels.activate(.tanh, $0.baseAddress!, count: $0.count) }
            for i in 0..<count {
                XCTAssertEqual(y[i].bitPattern, Activation.tanh(x[i]).bitPattern, "count \(count) index \(i)")
                XCTAssertEqual(y[i].bitPattern, Activation.tanh.apply(x[i]).bitPattern)
            }
        }
    }
}

final class SmallDenseTests: XCTestCase {
    /// Batch-1 dense for small layers (no BLAS) against a float64 loop, sizes around the SIMD widths.
    func testBatchOneSmallLayersMatchNaiveLoop() throws {
        var r = KTRandom(22)
        for (m, k) in [(1, 1), (32, 1), (1, 32), (32, 32), (3, 5), (7, 9), (5, 12), (9, 17), (64, 64), (4, 1023),
                       (64, 65), (17, 240)] {
            let x = r.floats(k), w = r.floats(m * k), b = r.floats(m)
            for act in [Activation.identity, .relu, .tanh] {
                for useBias in [false, true] {
                    var y = [Float](repeating: .nan, count: m)
                    b.withUnsafeBufferPointer { bp in
                        Kernels.dense(x: x, batch: 1, inFeatures: k, weight: w, bias: useBias ? bp.baseAddress : nil,
                                      outFeatures: m, activation: act, y: &y)
                    }
                    let want = (0..<m).map { o -> Double in
                        var s = useBias ? Double(b[o]) : 0
                        for j in 0..<k { s += Double(w[o * k + j]) * Double(x[j]) }
                        return ktAct(act, s)
                    }
                    ktAssertClose(y, want, "dense \(m)x\(k) \(act) bias \(useBias)")
                }
            }
        }
    }

    /// A sample's batch-1 result does not depend on the address it is read from or written to
    /// (reproducible mode runs every column through this path).
    func testBatchOneIsIndependentOfPosition() {
        var r = KTRandom(23)
        let m = 32, k = 37
        let w = r.floats(m * k), b = r.floats(m)
        let xs = r.floats(5 * k)
        var ref = [Float](repeating: 0, count: m)
        xs.withUnsafeBufferPointer { xp in
            Kernels.dense(x: xp.baseAddress!, batch: 1, inFeatures: k, weight: w, bias: b, outFeatures: m,
                          activation: .tanh, y: &ref)
        }
        for shift in 1..<5 {
            var buf = [Float](repeating: 0, count: shift + k)
            for j in 0..<k { buf[shift + j] = xs[j] }
            var y = [Float](repeating: 0, count: shift + m)
            buf.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                Kernels.dense(x: xp.baseAddress! + shift, batch: 1, inFeatures: k, weight: w, bias: b, outFeatures: m,
                              activation: .tanh, y: yp.baseAddress! + shift)
            } }
            XCTAssertEqual(Array(y[shift...]), ref, "shift \(shift)")
        }
    }

    func testDot() {
        var r = KTRandom(24)
        for k in 0..<40 {
            let a = r.floats(k), b = r.floats(k)
            let want = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let got = Kernels.dot(a, b, count: k)
            XCTAssertEqual(Double(got), want, accuracy: 1e-5, "k \(k)")
        }
    }
}

final class FastPoolTests: XCTestCase {
    /// The pooling loops as they were before the fast paths (per-tap bounds checks), kept verbatim as
    /// the bit-for-bit reference: max keeps the earlier of equal values and propagates NaN; average
    /// sums in window order starting from 0.
    func legacyMax(_ x: [Float], planes: Int, _ g: PoolGeometry) -> [Float] {
        var y = [Float](repeating: 0, count: planes * g.outputSpatialCount)
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        for pl in 0..<planes {
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padTop
                for ow in 0..<g.outW {
                    let w0 = ow * g.strideW - g.padLeft
                    var m = -Float.infinity
                    for i in 0..<g.kH {
                        let ih = h0 + i * g.dilationH
                        if ih < 0 || ih >= g.inH { continue }
                        for j in 0..<g.kW {
                            let iw = w0 + j * g.dilationW
                            if iw < 0 || iw >= g.inW { continue }
                            let v = x[pl * inP + ih * g.inW + iw]
                            if v > m || v.isNaN { m = v }
                        }
                    }
                    y[pl * p + oh * g.outW + ow] = m
                }
            }
        }
        return y
    }

    func legacyAverage(_ x: [Float], planes: Int, _ g: PoolGeometry, includePad: Bool) -> [Float] {
        var y = [Float](repeating: 0, count: planes * g.outputSpatialCount)
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let hEnd = g.inH + g.padBottom, wEnd = g.inW + g.padRight
        for pl in 0..<planes {
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padTop
                for ow in 0..<g.outW {
                    let w0 = ow * g.strideW - g.padLeft
                    var s: Float = 0
                    var inside = 0, padded = 0
                    for i in 0..<g.kH {
                        let ih = h0 + i * g.dilationH
                        if ih >= hEnd { break }
                        let rowInside = ih >= 0 && ih < g.inH
                        for j in 0..<g.kW {
                            let iw = w0 + j * g.dilationW
                            if iw >= wEnd { break }
                            padded += 1
                            if rowInside && iw >= 0 && iw < g.inW { s += x[pl * inP + ih * g.inW + iw]; inside += 1 }
                        }
                    }
                    let div = includePad ? padded : inside
                    y[pl * p + oh * g.outW + ow] = div > 0 ? s / Float(div) : 0
                }
            }
        }
        return y
    }

    func check(_ g: PoolGeometry, planes: Int, _ r: inout KTRandom, specials: Bool, _ what: String) {
        var x = r.floats(planes * g.inputSpatialCount, scale: 3)
        if specials {
            // NaN, infinities, signed zeros and ties, to pin down propagation and tie-breaking.
            let pool: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, 1, 1, -1]
            for i in x.indices where r.int(0, 5) == 0 { x[i] = r.pick(pool) }
        }
        var y = [Float](repeating: 7, count: planes * g.outputSpatialCount)
        Pool.max(x: x, planes: planes, geometry: g, y: &y)
        let wantMax = legacyMax(x, planes: planes, g)
        for i in y.indices {
            XCTAssertTrue(y[i].bitPattern == wantMax[i].bitPattern || (y[i].isNaN && wantMax[i].isNaN),
                          "max \(what) at \(i): \(y[i]) vs \(wantMax[i])")
        }
        for includePad in [false, true] {
            Pool.average(x: x, planes: planes, geometry: g, countIncludePad: includePad, y: &y)
            let want = legacyAverage(x, planes: planes, g, includePad: includePad)
            for i in y.indices {
                XCTAssertTrue(y[i].bitPattern == want[i].bitPattern || (y[i].isNaN && want[i].isNaN),
                              "avg \(what) includePad \(includePad) at \(i): \(y[i]) vs \(want[i])")
            }
        }
    }

    /// 2×2 / stride 2 without padding (the fast path), odd sizes (last row/column dropped), ceil mode
    /// (the general path takes the partial windows), 1-D.
    func testTwoByTwoStrideTwoBitwise() throws {
        var r = KTRandom(31)
        for (h, w) in [(2, 2), (4, 6), (5, 7), (64, 64), (2, 9), (3, 3), (32, 33)] {
            for ceil in [false, true] {
                let g = try PoolGeometry(inputSize: [h, w], kernelSize: [2, 2], strides: [2, 2], ceilMode: ceil)
                for specials in [false, true] {
                    check(g, planes: 3, &r, specials: specials, "\(h)x\(w) ceil \(ceil)")
                }
            }
        }
        for l in [2, 7, 60] {
            let g = try PoolGeometry(inputSize: [l], kernelSize: [2], strides: [2])
            check(g, planes: 4, &r, specials: true, "1-D \(l)")
        }
        XCTAssertTrue(Pool.isPlain2x2(try PoolGeometry(inputSize: [64, 64], kernelSize: [2, 2], strides: [2, 2])))
        XCTAssertFalse(Pool.isPlain2x2(try PoolGeometry(inputSize: [5, 5], kernelSize: [2, 2], strides: [2, 2], ceilMode: true)))
        XCTAssertFalse(Pool.isPlain2x2(try PoolGeometry(inputSize: [4, 4], kernelSize: [2, 2], strides: [2, 2],
                                                         padsBegin: [1, 0], padsEnd: [1, 0])))
    }

    /// The clipped general loops give the previous results bit for bit over random geometries with
    /// pads, strides, dilations and ceil mode.
    func testGeneralPathBitwiseAgainstPrevious() throws {
        var r = KTRandom(32)
        for iter in 0..<400 {
            let rank = r.int(1, 2)
            var input = [Int](), kernel = [Int](), strides = [Int](), dil = [Int](), pb = [Int](), pe = [Int]()
            for _ in 0..<rank {
                let k = r.pick([1, 2, 3, 4]), d = iter % 3 == 0 ? r.pick([1, 2, 3]) : 1, s = r.pick([1, 2, 3])
                let span = (k - 1) * d + 1
                let a = r.int(0, k - 1), b = r.int(0, k - 1)
                input.append(max(r.int(1, 12), span - a - b)); kernel.append(k); strides.append(s); dil.append(d)
                pb.append(a); pe.append(b)
            }
            let g = try PoolGeometry(inputSize: input, kernelSize: kernel, strides: strides, dilations: dil,
                                     padsBegin: pb, padsEnd: pe, ceilMode: r.bool())
            check(g, planes: r.pick([1, 2, 3]), &r, specials: iter % 2 == 0,
                  "in \(input) k \(kernel) s \(strides) d \(dil) pads \(pb)/\(pe) ceil \(g.ceilMode)")
        }
    }
}

final class SmallGEMVTests: XCTestCase {
    /// Every row of the C batch-1 dense kernel is bit for bit the single-row Swift dot (so a row's result
    /// depends neither on whether it falls in a block of four or in the remainder, nor on the CPU level).
    func testRowsEqualDotBitwiseAtEveryLevel() {
        let saved = Kernels.cpuLevel
        defer { Kernels.setCPULevel(saved) }
        for level in CPULevel.allCases where level.rawValue <= Kernels.supportedCPULevel.rawValue {
            Kernels.setCPULevel(level)
            var r = KTRandom(25)
            for k in 0..<45 {
                let m = r.int(1, 9)
                let w = r.floats(m * k + 1, scale: 3), x = r.floats(k + 1, scale: 2)
                var y = [Float](repeating: 7, count: m)
                w.withUnsafeBufferPointer { wp in x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer {
                        Kernels.smallGEMV(wp.baseAddress!, xp.baseAddress!, bias: nil, $0.baseAddress!, rows: m, cols: k)
                    }
                    for o in 0..<m {
                        XCTAssertEqual(y[o].bitPattern, Kernels.dot(wp.baseAddress! + o * k, xp.baseAddress!, count: k).bitPattern,
                                       "\(level) k \(k) m \(m) row \(o)")
                    }
                } }
            }
        }
    }
}

/// The float32 sigmoid of the inference numerics (`Activation.cephesSigmoid`, Cephes' expf) and the
/// C kernels of the LSTM/GRU gates built on it.
final class CephesSigmoidTests: XCTestCase {
    static func ulps(_ a: Float, _ b: Float) -> Int {
        if a.isNaN && b.isNaN { return 0 }
        return abs(Int(Int32(bitPattern: a.bitPattern)) - Int(Int32(bitPattern: b.bitPattern)))
    }
    /// σ in libm's form (the differentiable numerics, and the inference numerics before 2026-12-05).
    static func libm(_ x: Float) -> Float { Activation.sigmoid(x) }

    /// At most 2 ulp from the correctly rounded σ and from libm's form, on a sweep over the bit
    /// patterns of both signs (every 1021st: all exponents, subnormal results included). The
    /// exhaustive run over all 2³² floats gave 2 and 2 (99.8 % equal to libm's form).
    func testWithinTwoUlpOfTheTruthAndOfLibm() {
        var worstTrue = 0, worstLibm = 0, atTrue: Float = 0, atLibm: Float = 0, equal = 0, total = 0
        var bits: UInt32 = 0
        while bits < 0xFF80_0000 {
            defer { bits &+= 1021 }
            let x = Float(bitPattern: bits)
            if x.isNaN { continue }
            let got = Activation.cephesSigmoid(x)
            let want = Float(1 / (1 + Glibc.exp(-Double(x))))
            let dt = Self.ulps(got, want), dl = Self.ulps(got, Self.libm(x))
            if dt > worstTrue { worstTrue = dt; atTrue = x }
            if dl > worstLibm { worstLibm = dl; atLibm = x }
            if dl == 0 { equal += 1 }
            total += 1
        }
        XCTAssertLessThanOrEqual(worstTrue, 2, "against the correctly rounded σ, at \(atTrue)")
        XCTAssertLessThanOrEqual(worstLibm, 2, "against libm's form, at \(atLibm)")
        XCTAssertGreaterThan(Double(equal) / Double(total), 0.99)
    }

    func testSpecialValues() {
        XCTAssertTrue(Activation.cephesSigmoid(.nan).isNaN)
        XCTAssertEqual(Activation.cephesSigmoid(0), 0.5)
        XCTAssertEqual(Activation.cephesSigmoid(-0.0), 0.5)
        XCTAssertEqual(Activation.cephesSigmoid(.infinity), 1)
        XCTAssertEqual(Activation.cephesSigmoid(-.infinity).bitPattern, Float(0).bitPattern)
        XCTAssertEqual(Activation.cephesSigmoid(-104), 0)
        XCTAssertEqual(Activation.cephesSigmoid(-100), Self.libm(-100), "subnormal, rounded once")
        XCTAssertEqual(Activation.cephesSigmoid(-87.5), Self.libm(-87.5))
        XCTAssertEqual(Activation.cephesSigmoid(20), 1)
        XCTAssertEqual(Activation.sigmoid.apply(Float(0.3), .inference), Activation.cephesSigmoid(0.3))
        XCTAssertEqual(Activation.sigmoid.apply(Float(0.3), .differentiable), Self.libm(0.3))
        // the kernel gives the scalar's bits at every position
        var r = KTRandom(31)
        let x = (0..<37).map { _ in Float(r.unit() * 40 - 20) }
        var y = x
        y.withUnsafeMutableBufferPointer { Kernels.activate(.sigmoid, $0.baseAddress!, count: $0.count) }
        for i in 0..<x.count { XCTAssertEqual(y[i].bitPattern, Activation.cephesSigmoid(x[i]).bitPattern, "at \(i)") }
    }

    /// `ilk_lstm_state`, `ilk_lstm_output` and `ilk_gru_cell` against the scalar definitions
    /// (`RecurrentKernels`' loops, written out here), bit for bit, at every CPU level this machine has,
    /// for hidden sizes around the register widths (whole registers and tails).
    func testGateKernelsMatchTheScalarDefinitionAtEveryLevel() {
        let saved = Kernels.cpuLevel
        defer { Kernels.setCPULevel(saved) }
        let s: (Float) -> Float = { Activation.cephesSigmoid($0) }, t: (Float) -> Float = { Activation.tanh($0) }
        var r = KTRandom(32)
        for level in CPULevel.allCases where level.rawValue <= Kernels.supportedCPULevel.rawValue {
            Kernels.setCPULevel(level)
            for h in [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33] {
                let rows = 3
                func vals(_ n: Int, _ scale: Double) -> [Float] { (0..<n).map { _ in Float(r.unit() * scale) } }
                var z = vals(rows * 4 * h, 6), c0 = vals(rows * h, 2), g = vals(rows * 3 * h, 5), q = vals(rows * 3 * h, 5)
                z[0] = .nan; g[min(2, g.count - 1)] = -.infinity   // NaN and ±∞ lanes follow the scalar rules
                var c = [Float](repeating: 0, count: rows * h), y = c, hy = c
                ilk_lstm_state(z, c0, &c, Int64(rows), Int64(h))
                ilk_lstm_output(z, c, &y, Int64(rows), Int64(h))
                ilk_gru_cell(g, q, c0, &hy, Int64(rows), Int64(h))
                for row in 0..<rows {
                    for j in 0..<h {
                        let zr = row * 4 * h, gr = row * 3 * h, k = row * h + j
                        let wantC = s(z[zr + 2 * h + j]) * c0[k] + s(z[zr + j]) * t(z[zr + 3 * h + j])
                        XCTAssertEqual(c[k].bitPattern, wantC.bitPattern, "\(level) lstm state h \(h) [\(row), \(j)]")
                        let wantY = s(z[zr + h + j]) * t(c[k])
                        XCTAssertEqual(y[k].bitPattern, wantY.bitPattern, "\(level) lstm output h \(h) [\(row), \(j)]")
                        let n = t(g[gr + 2 * h + j] + s(g[gr + h + j] + q[gr + h + j]) * q[gr + 2 * h + j])
                        let wantH = n + s(g[gr + j] + q[gr + j]) * (c0[k] - n)
                        XCTAssertEqual(hy[k].bitPattern, wantH.bitPattern, "\(level) gru h \(h) [\(row), \(j)]")
                    }
                }
            }
        }
    }
}
