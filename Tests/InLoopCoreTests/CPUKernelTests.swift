import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import InLoopCore

// The C kernels of Sources/InLoopKernelsC (Kernels/CPU.swift) at every level this CPU supports,
// against the Swift scalar definitions, bit for bit: Activation.apply for the forward kernels, the
// previous Swift loops (kept here verbatim) for the backward ones. Special values and random data
// of odd lengths, so that the vector bodies and their scalar tails both run. A level the CPU lacks is
// skipped (AVX-512 on this AMD EPYC; Intel Sapphire Rapids runs it).

final class CPUKernelTests: XCTestCase {
    func testBaseline() throws { try check(.baseline) }
    func testAVX2() throws { try check(.avx2) }
    func testAVX512() throws { try check(.avx512) }

    func testAdamBaseline() throws { try checkAdam(.baseline) }
    func testAdamAVX2() throws { try checkAdam(.avx2) }
    func testAdamAVX512() throws { try checkAdam(.avx512) }

    /// The float32 Adam/AdamW step (C, `Kernels.cAdam`) against the Swift loop it replaced (kept here
    /// verbatim), bit for bit, over several steps (the bias corrections change with t), with and
    /// without weight decay, from a slice offset, for lengths with every vector tail.
    func checkAdam(_ level: CPULevel) throws {
        try enter(level)
        var checked = 0
        for (li, extra) in [0, 1, 7, 8, 9, 15, 16, 17, 33, 1001].enumerated() {
            // gradients: the specials and random values; parameters finite (as training keeps them)
            let g0 = Self.data(extra, seed: UInt64(li + 300))
            let n = g0.count
            let p0 = Self.data(extra, seed: UInt64(li + 400)).map { $0.isFinite ? $0 : 0.5 }
            for kind in [OptimizerConfig.Kind.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8),
                         .adamW(beta1: 0.8, beta2: 0.99, epsilon: 1e-6)] {
                for wd in [0.0, 0.01] {
                    var config = OptimizerConfig(kind, learningRate: 3e-3)
                    config.weightDecay = wd
                    let offset = li % 3
                    // reference: the Swift loop; under test: OptimizerStep.apply on a slice of the state
                    var pr = p0, mr = [Float](repeating: 0, count: n), vr = mr
                    var pc = p0, sc = [Float](repeating: 0, count: n + offset), tc = sc
                    for t in 1...4 {
                        let g = g0.map { $0 * Float(t) * 0.5 }
                        Self.swiftAdam(config, lr: config.learningRate, t: t, &pr, g, &mr, &vr)
                        pc.withUnsafeMutableBufferPointer { pp in g.withUnsafeBufferPointer { gp in
                            sc.withUnsafeMutableBufferPointer { s0 in tc.withUnsafeMutableBufferPointer { s1 in
                                OptimizerStep.apply(config, learningRate: config.learningRate, step: t, parameters: pp.baseAddress!,
                                                    gradients: gp.baseAddress!, count: n, state: [s0.baseAddress!, s1.baseAddress!],
                                                    stateOffset: offset)
                            } }
                        } }
                        for i in 0..<n {
                            let what = "\(level) \(config.name) wd=\(wd) n=\(n) t=\(t) g[\(i)]=\(g[i])"
                            guard same(pc[i], pr[i], "adam p", what + " p"), same(sc[offset + i], mr[i], "adam m", what + " m"),
                                  same(tc[offset + i], vr[i], "adam v", what + " v") else { return }
                            checked += 3
                        }
                        for i in 0..<offset { XCTAssertEqual(sc[i], 0); XCTAssertEqual(tc[i], 0) }   // before the slice: untouched
                    }
                }
            }
        }
        XCTAssertEqual(mismatches, 0, "\(level): Adam values that differ from the Swift loop: \(mismatchesPerKernel)")
        XCTAssertGreaterThan(checked, 10_000)
    }

    /// OptimizerStep.apply's Adam/AdamW loop before the C kernel, verbatim (T = Float).
    static func swiftAdam(_ config: OptimizerConfig, lr: Double, t: Int, _ p: inout [Float], _ g: [Float],
                          _ m: inout [Float], _ v: inout [Float]) {
        typealias T = Float
        let wd = T(config.weightDecay)
        let lrT = T(lr)
        let b1: Double, b2: Double, eps: Double, decoupled: Bool
        switch config.kind {
        case .adam(let x, let y, let z): (b1, b2, eps, decoupled) = (x, y, z, false)
        case .adamW(let x, let y, let z): (b1, b2, eps, decoupled) = (x, y, z, true)
        default: return XCTFail("not Adam")
        }
        let beta1 = T(b1), beta2 = T(b2), e = T(eps)
        let bc1 = 1 - Glibc.pow(b1, Double(t)), bc2 = 1 - Glibc.pow(b2, Double(t))
        let stepSize = T(lr / bc1), bc2Sqrt = T(bc2.squareRoot())
        for i in 0..<p.count {
            var d = g[i]
            if decoupled { p[i] *= 1 - lrT * wd } else { d += wd * p[i] }
            m[i] = beta1 * m[i] + (1 - beta1) * d
            v[i] = beta2 * v[i] + (1 - beta2) * d * d
            let denom = T.sqrt(v[i]) / bc2Sqrt + e
            p[i] -= stepSize * m[i] / denom
        }
    }

    /// INLOOP_CPU and setCPULevel only ever lower the level; the level is restored after each test.
    func testLevelIsClampedToTheCPU() {
        let saved = Kernels.cpuLevel
        defer { Kernels.setCPULevel(saved) }
        let top = Kernels.supportedCPULevel
        XCTAssertLessThanOrEqual(saved.rawValue, top.rawValue)
        XCTAssertEqual(Kernels.setCPULevel(.avx512), top)
        XCTAssertEqual(Kernels.cpuLevel, top)
        XCTAssertEqual(Kernels.setCPULevel(.baseline), .baseline)
        XCTAssertEqual(Kernels.cpuLevel, .baseline)
    }

    /// ±0, ±Inf, NaNs (quiet, signalling, negative, with payload), denormals, the tanh branch point
    /// 0.625 and its neighbours, the clamp at 10, large and tiny values.
    static let specials: [Float] = {
        var v: [Float] = [0, -0, .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001),
                          Float(bitPattern: 0xFFC0_1234), Float(bitPattern: 0x7FC0_0ABC),
                          .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude,
                          -.leastNormalMagnitude, Float(bitPattern: 0x007F_FFFF), Float(bitPattern: 0x8040_0000),
                          10, -10, Float(10).nextUp, Float(10).nextDown, -Float(10).nextUp, 9.01, 20, -88.7, 1e30,
                          -1e30, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1, -1, 0.5, 1e-4, Float(bitPattern: 0x8020_AB01)]
        for b: Float in [0.625, -0.625] { v += [b, b.nextUp, b.nextDown, b.nextUp.nextUp, b.nextDown.nextDown] }
        return v
    }()

    /// The specials, then `count` random values (normal-ish spread over ±12, some exact zeros).
    static func data(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = specials
        for i in 0..<count {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            let u = Float(s >> 40) / Float(1 << 24)             // [0, 1)
            out.append(i % 37 == 0 ? 0 : (u - 0.5) * 24 * u)
        }
        return out
    }

    static let activations: [Activation] = [.identity, .relu, .leakyRelu(alpha: 0.01), .leakyRelu(alpha: -1.5), .tanh]

    /// Mismatches of the running `check` (the first few are reported, all are counted per kernel).
    var mismatches = 0
    var mismatchesPerKernel: [String: Int] = [:]

    func same(_ got: Float, _ want: Float, _ kernel: String, _ what: @autoclosure () -> String,
              file: StaticString = #filePath, line: UInt = #line) -> Bool {
        if got.bitPattern == want.bitPattern { return true }
        mismatches += 1
        mismatchesPerKernel[kernel, default: 0] += 1
        if mismatches <= 5 {
            XCTFail("\(what()): got \(got) (0x\(String(got.bitPattern, radix: 16))), want \(want) (0x\(String(want.bitPattern, radix: 16)))",
                    file: file, line: line)
        }
        return mismatches < 1000
    }

    /// Runs the test at `level` (skipped where the CPU lacks it; the level it started at is restored
    /// when it ends) with the mismatch counters cleared.
    func enter(_ level: CPULevel) throws {
        guard level.rawValue <= Kernels.supportedCPULevel.rawValue else {
            throw XCTSkip("this CPU has no \(level) (supported: \(Kernels.supportedCPULevel))")
        }
        let saved = Kernels.cpuLevel
        addTeardownBlock { Kernels.setCPULevel(saved) }
        XCTAssertEqual(Kernels.setCPULevel(level), level)
        mismatches = 0
        mismatchesPerKernel = [:]
    }

    func check(_ level: CPULevel) throws {
        try enter(level)
        var checked = 0
        defer {
            XCTAssertEqual(mismatches, 0, "\(level): values that differ from the Swift definition, per kernel: "
                           + mismatchesPerKernel.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        // Lengths with every tail size of an 8- and 16-lane body, plus a long odd one.
        for (li, extra) in [0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 63, 65, 127, 1001].enumerated() {
            let x = Self.data(extra, seed: UInt64(li + 1))
            let n = x.count
            let bias = Self.data(extra, seed: UInt64(li + 100)).map { $0.isNaN ? 0.25 : $0 }
            for act in Self.activations {
                for numerics in [Numerics.inference, .differentiable] {
                    let name = "\(level) \(act) \(numerics.reluNaN) n=\(n)"
                    // y = act(x), into another array and in place.
                    var y = [Float](repeating: 7, count: n)
                    var z = x
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            Kernels.activate(act, xp.baseAddress!, into: yp.baseAddress!, count: n, numerics: numerics)
                        }
                    }
                    z.withUnsafeMutableBufferPointer { Kernels.activate(act, $0.baseAddress!, count: n, numerics: numerics) }
                    for i in 0..<n {
                        let want = act.apply(x[i], numerics)
                        guard same(y[i], want, "activate \(act)", "\(name) activate x[\(i)]=\(x[i])"),
                              same(z[i], want, "activate in place \(act)", "\(name) in place x[\(i)]=\(x[i])") else { return }
                        checked += 2
                    }
                    // Rows × cols with a bias row: y[r, c] = act(y[r, c] + b[c]).
                    let cols = max(1, n / 3), rows = n / cols
                    var m = Array(x[0..<(rows * cols)])
                    m.withUnsafeMutableBufferPointer { mp in
                        bias.withUnsafeBufferPointer { bp in
                            Kernels.biasActivate(act, mp.baseAddress!, rows: rows, cols: cols, bias: bp.baseAddress!,
                                                 numerics: numerics)
                        }
                    }
                    for r in 0..<rows {
                        for c in 0..<cols {
                            let want = act.apply(x[r * cols + c] + bias[c], numerics)
                            guard same(m[r * cols + c], want, "biasActivate \(act)", "\(name) biasActivate [\(r), \(c)]") else { return }
                            checked += 1
                        }
                    }
                }
                // The convolution's per-channel pass dst = act(src + b) (inference numerics).
                for bv in [Float(0.375), -2.5, 0, -0] {
                    var d = [Float](repeating: 7, count: n)
                    var p = x
                    x.withUnsafeBufferPointer { xp in
                        d.withUnsafeMutableBufferPointer { dp in
                            Conv.storeBiasActivate(act, xp.baseAddress!, dp.baseAddress!, count: n, bias: bv)
                        }
                    }
                    p.withUnsafeMutableBufferPointer {
                        Conv.storeBiasActivate(act, UnsafePointer($0.baseAddress!), $0.baseAddress!, count: n, bias: bv)
                    }
                    for i in 0..<n {
                        let want = act.apply(x[i] + bv, .inference)
                        guard same(d[i], want, "storeBiasActivate \(act)", "\(level) \(act) storeBiasActivate(\(bv)) x[\(i)]=\(x[i])"),
                              same(p[i], want, "storeBiasActivate in place \(act)", "\(level) \(act) storeBiasActivate(\(bv)) in place x[\(i)]") else { return }
                        checked += 2
                    }
                }
                // Backward: out (+)= d·f'(z), a = f(z), against the Swift loops it replaced.
                let a = x.map { act.apply($0, .inference) }
                let g = bias
                for accumulate in [false, true] {
                    let start = Self.data(extra, seed: UInt64(li + 200))
                    var out = start
                    x.withUnsafeBufferPointer { zp in a.withUnsafeBufferPointer { ap in g.withUnsafeBufferPointer { gp in
                        out.withUnsafeMutableBufferPointer { op in
                            Kernels.activationBackward(act, z: zp.baseAddress!, a: ap.baseAddress!, gradient: gp.baseAddress!,
                                                       into: op.baseAddress!, accumulate: accumulate, count: n)
                        }
                    } } }
                    for i in 0..<n {
                        let term: Float
                        switch act {
                        case .relu: term = x[i] > 0 ? g[i] : 0
                        case .leakyRelu(let s): term = x[i] >= 0 ? g[i] : s * g[i]
                        case .tanh: term = g[i] * (1 - a[i] * a[i])
                        default: term = g[i] * act.derivative(z: x[i], a: a[i])
                        }
                        let want = accumulate ? start[i] + term : term
                        guard same(out[i], want, "backward \(act)", "\(level) \(act) backward acc=\(accumulate) z[\(i)]=\(x[i])") else { return }
                        checked += 1
                    }
                }
            }
        }
        // Max pooling, 2×2 windows with stride 2 (odd input sizes leave the last row/column out),
        // against the maxStep fold (NaN wins, the first of ±0 stays).
        for (inH, inW) in [(2, 2), (4, 6), (6, 34), (9, 35), (5, 67), (64, 64)] {
            let planes = 3
            let g = try PoolGeometry(inputSize: [inH, inW], kernelSize: [2, 2], strides: [2, 2])
            XCTAssertTrue(Pool.isPlain2x2(g))
            var x = Self.data(planes * inH * inW, seed: UInt64(inH * 1000 + inW))
            x = Array(x.suffix(planes * inH * inW))
            // Specials where windows meet them: NaN in every window position, ±0 pairs, infinities.
            for (k, v) in Self.specials.enumerated() where 5 * k < x.count { x[5 * k] = v }
            var y = [Float](repeating: 7, count: planes * g.outH * g.outW)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { Pool.max(x: xp.baseAddress!, planes: planes, geometry: g, y: $0.baseAddress!) }
            }
            for pl in 0..<planes {
                for oh in 0..<g.outH {
                    for ow in 0..<g.outW {
                        let r0 = pl * inH * inW + 2 * oh * inW + 2 * ow, r1 = r0 + inW
                        let want = Pool.maxStep(Pool.maxStep(Pool.maxStep(x[r0], x[r0 + 1]), x[r1]), x[r1 + 1])
                        guard same(y[(pl * g.outH + oh) * g.outW + ow], want, "max pool 2x2",
                                   "\(level) max pool \(inH)×\(inW) [\(pl), \(oh), \(ow)]") else { return }
                        checked += 1
                    }
                }
            }
        }
        // Batch-1 dense (smallGEMV): each row bit for bit Kernels.dot plus the bias, for every row
        // count modulo 4 and every column tail (mod 8 and mod 4), with and without a bias.
        for (m, k) in [(1, 1), (3, 1), (32, 1), (1, 32), (5, 3), (4, 4), (7, 12), (32, 32), (13, 37), (64, 63), (9, 94)] {
            let w = Array(Self.data(m * k, seed: UInt64(m * 100 + k)).suffix(m * k))
            let x = Array(Self.data(k, seed: UInt64(k + 7)).suffix(k))
            let b = Array(Self.data(m, seed: UInt64(m + 11)).suffix(m))
            for withBias in [false, true] {
                var y = [Float](repeating: 7, count: m)
                w.withUnsafeBufferPointer { wp in x.withUnsafeBufferPointer { xp in b.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer {
                        Kernels.smallGEMV(wp.baseAddress!, xp.baseAddress!, bias: withBias ? bp.baseAddress! : nil,
                                          $0.baseAddress!, rows: m, cols: k)
                    }
                } } }
                for o in 0..<m {
                    let d = w.withUnsafeBufferPointer { wp in x.withUnsafeBufferPointer { Kernels.dot(wp.baseAddress! + o * k, $0.baseAddress!, count: k) } }
                    guard same(y[o], withBias ? d + b[o] : d, "smallGEMV", "\(level) smallGEMV \(m)×\(k) bias=\(withBias) row \(o)") else { return }
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 100_000)
    }
}
