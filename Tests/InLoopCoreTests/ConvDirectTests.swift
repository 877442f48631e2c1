import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import InLoopCore

// The direct float32 convolution (Sources/InLoopKernelsC/conv_body.h, Conv.directForward): against a
// float64 reference convolution on random shapes (channels 1–40, sizes 1–70, kernels 1–5 square and
// not, pads 0/1 symmetric and not, with and without bias, each fused activation and tanh after it) at
// every CPU level this CPU supports (baseline has no direct kernel: directForward declines and
// Conv.forward's im2col + GEMM path runs); avx2 and avx512 give the same bits; a batch-N row equals
// batch 1 bit for bit through Conv.forward and through a cnn2d-shaped model; no allocation in steady
// state; the direct path and the im2col path agree within float32 rounding.
final class ConvDirectTests: XCTestCase {
    private var savedLevel = CPULevel.baseline
    private var savedThreads = 1
    override func setUp() { savedLevel = Kernels.cpuLevel; savedThreads = Engine.Threads.count }
    override func tearDown() { Kernels.setCPULevel(savedLevel); Engine.Threads.set(savedThreads) }

    struct Case: CustomStringConvertible {
        var batch, cin, cout, h, w, kh, kw, pt, pl, pb, pr: Int
        var bias: Bool
        var act: Activation
        /// A 1-D convolution (h = kh = 1, no top/bottom pads): the rank-1 geometry of Conv1d.
        var oneD = false
        var description: String {
            "batch \(batch) \(cin)→\(cout) \(h)×\(w) k \(kh)×\(kw) pads t\(pt) l\(pl) b\(pb) r\(pr) bias \(bias) \(act)\(oneD ? " 1-D" : "")"
        }
        func geometry() throws -> ConvGeometry {
            if oneD {
                return try ConvGeometry(channelsIn: cin, channelsOut: cout, inputSize: [w], kernelSize: [kw],
                                        padsBegin: [pl], padsEnd: [pr])
            }
            return try ConvGeometry(channelsIn: cin, channelsOut: cout, inputSize: [h, w], kernelSize: [kh, kw],
                                    padsBegin: [pt, pl], padsEnd: [pb, pr])
        }
    }

    struct Rng {
        var s: UInt64
        mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
        mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(next() % UInt64(r.count)) }
        mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
            (0..<n).map { _ in (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
        }
    }

    /// Random cases: channels 1–40, sizes 1–70 (the output at least 1 wide), a work bound so that the
    /// float64 reference stays quick in a debug build.
    static func cases(_ count: Int, seed: UInt64) -> [Case] {
        var r = Rng(s: seed)
        let acts: [Activation] = [.identity, .relu, .leakyRelu(alpha: 0.1), .tanh]
        var out: [Case] = []
        while out.count < count {
            let kh = [1, 2, 3, 3, 3, 5][r.int(0...5)], kw = r.int(0...3) == 0 ? [1, 2, 5][r.int(0...2)] : kh
            let c = Case(batch: r.int(1...3), cin: r.int(1...40), cout: r.int(1...40), h: r.int(1...70), w: r.int(1...70),
                         kh: kh, kw: kw, pt: r.int(0...1), pl: r.int(0...1), pb: r.int(0...1), pr: r.int(0...1),
                         bias: r.int(0...1) == 1, act: acts[r.int(0...3)])
            guard c.h + c.pt + c.pb >= c.kh, c.w + c.pl + c.pr >= c.kw else { continue }
            let work = c.batch * c.cin * c.cout * c.kh * c.kw * c.h * c.w
            guard work <= 1_500_000 else { continue }
            out.append(c)
        }
        // The edges: 1×1 images, one channel, the widest rows, rows of exactly one tile.
        out.append(Case(batch: 2, cin: 1, cout: 1, h: 1, w: 1, kh: 1, kw: 1, pt: 0, pl: 0, pb: 0, pr: 0, bias: true, act: .relu))
        out.append(Case(batch: 1, cin: 3, cout: 7, h: 1, w: 1, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: false, act: .identity))
        out.append(Case(batch: 1, cin: 2, cout: 13, h: 5, w: 70, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu))
        out.append(Case(batch: 2, cin: 40, cout: 40, h: 16, w: 16, kh: 3, kw: 3, pt: 0, pl: 0, pb: 0, pr: 0, bias: true, act: .relu))
        // 1-D (Conv1d, e.g. column_conv1d: 4 → 32 → 32 → 2 channels, 60 levels, kernel 3, pads 1).
        out.append(Case(batch: 3, cin: 4, cout: 32, h: 1, w: 60, kh: 1, kw: 3, pt: 0, pl: 1, pb: 0, pr: 1, bias: true, act: .relu, oneD: true))
        out.append(Case(batch: 2, cin: 32, cout: 2, h: 1, w: 60, kh: 1, kw: 3, pt: 0, pl: 1, pb: 0, pr: 1, bias: true, act: .identity, oneD: true))
        for _ in 0..<6 {
            let kw = r.int(1...5), w = r.int(1...70)
            let c = Case(batch: r.int(1...3), cin: r.int(1...40), cout: r.int(1...40), h: 1, w: w, kh: 1, kw: kw, pt: 0,
                         pl: r.int(0...2), pb: 0, pr: r.int(0...2), bias: r.int(0...1) == 1, act: acts[r.int(0...3)], oneD: true)
            if c.w + c.pl + c.pr >= kw { out.append(c) }
        }
        return out
    }

    /// act(Σ w·x + b) in float64, and Σ |w·x| + |b| (the scale of the rounding error).
    static func reference(_ c: Case, _ g: ConvGeometry, x: [Float], w: [Float], b: [Float]?) -> (y: [Double], scale: [Double]) {
        let oh = g.outH, ow = g.outW
        var y = [Double](repeating: 0, count: c.batch * c.cout * oh * ow), scale = y
        for n in 0..<c.batch {
            for co in 0..<c.cout {
                for r in 0..<oh {
                    for q in 0..<ow {
                        var s = Double(b?[co] ?? 0), a = abs(s)
                        for ci in 0..<c.cin {
                            for i in 0..<c.kh {
                                let ir = r + i - c.pt
                                if ir < 0 || ir >= c.h { continue }
                                for j in 0..<c.kw {
                                    let iq = q + j - c.pl
                                    if iq < 0 || iq >= c.w { continue }
                                    let t = Double(w[((co * c.cin + ci) * c.kh + i) * c.kw + j]) * Double(x[((n * c.cin + ci) * c.h + ir) * c.w + iq])
                                    s += t; a += abs(t)
                                }
                            }
                        }
                        let k = ((n * c.cout + co) * oh + r) * ow + q
                        switch c.act {
                        case .relu: y[k] = s > 0 ? s : 0
                        case .leakyRelu(let al): y[k] = s >= 0 ? s : Double(al) * s
                        case .tanh: y[k] = tanh(s)
                        default: y[k] = s
                        }
                        scale[k] = a
                    }
                }
            }
        }
        return (y, scale)
    }

    /// Conv.directForward (direct: true) or Conv.forward; returns y and whether directForward ran.
    static func run(_ c: Case, _ g: ConvGeometry, x: [Float], w: [Float], b: [Float]?, direct: Bool) -> ([Float], Bool) {
        var y = [Float](repeating: .nan, count: c.batch * g.outputCount)
        var ws = [Float](repeating: .nan, count: max(1, direct ? Conv.directWorkspaceCount(g) : Conv.workspaceCount(geometry: g, batch: c.batch)))
        var ran = false
        let bb = b ?? [0]
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bb.withUnsafeBufferPointer { bp in
            y.withUnsafeMutableBufferPointer { yp in ws.withUnsafeMutableBufferPointer { wsp in
                let bias = b == nil ? nil : bp.baseAddress!
                if direct {
                    ran = Conv.directForward(x: xp.baseAddress!, batch: c.batch, geometry: g, weight: wp.baseAddress!, bias: bias,
                                             activation: c.act, y: yp.baseAddress!, workspace: wsp.baseAddress!)
                } else {
                    Conv.forward(x: xp.baseAddress!, batch: c.batch, geometry: g, weight: wp.baseAddress!, bias: bias,
                                 activation: c.act, y: yp.baseAddress!, workspace: wsp.baseAddress!)
                }
            } }
        } } }
        return (y, ran)
    }

    func checkAgainstReference(_ level: CPULevel) throws {
        guard Kernels.supportedCPULevel.rawValue >= level.rawValue else { throw XCTSkip("this CPU has no \(level)") }
        XCTAssertEqual(Kernels.setCPULevel(level), level)
        var r = Rng(s: 0x5EED)
        var worst = 0.0, checked = 0
        for c in Self.cases(44, seed: 77) {
            let g = try c.geometry()
            let x = r.floats(c.batch * g.inputCount), w = r.floats(g.weightCount, scale: 0.5)
            let b: [Float]? = c.bias ? r.floats(c.cout, scale: 0.5) : nil
            let (want, scale) = Self.reference(c, g, x: x, w: w, b: b)
            // The kernel itself (every shape it can take), then Conv.forward (its own choice of path).
            let (got, ran) = Self.run(c, g, x: x, w: w, b: b, direct: true)
            XCTAssertEqual(ran, level != .baseline, "\(c): directForward at \(level)")
            let (viaForward, _) = Self.run(c, g, x: x, w: w, b: b, direct: false)
            for (k, out) in [(0, got), (1, viaForward)] where ran || k == 1 {
                var bad = 0
                for i in want.indices {
                    // Σ|terms|·1e-5 bounds float32 rounding of up to 40·25 terms with room; a wrong tap,
                    // channel or border is off by a whole term.
                    let e = abs(Double(out[i]) - want[i]), tol = 1e-5 * scale[i] + 1e-30
                    if !(e <= tol) { bad += 1 }
                    if scale[i] > 0 { worst = max(worst, e / scale[i]) }
                }
                XCTAssertEqual(bad, 0, "\(c), \(k == 0 ? "directForward" : "Conv.forward") at \(level): \(bad) of \(want.count) values off")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 48)
        print("ConvDirectTests \(level): \(checked) runs checked, worst |error| / Σ|terms| = \(worst)")
    }

    func testBaselineAgainstReference() throws { try checkAgainstReference(.baseline) }
    func testAVX2AgainstReference() throws { try checkAgainstReference(.avx2) }
    func testAVX512AgainstReference() throws { try checkAgainstReference(.avx512) }

    /// One image's rows split over 2 threads (the pool free: batch 1, and images one after another at
    /// batch 3) give the 1-thread values bit for bit, with and without a fused activation.
    func testRowsSplitOverThreadsEqualOneThread() throws {
        guard Kernels.supportedCPULevel != .baseline else { throw XCTSkip("this CPU has no avx2") }
        var r = Rng(s: 123)
        defer { Engine.Threads.set(1) }
        for c in [Case(batch: 1, cin: 16, cout: 32, h: 32, w: 32, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu),
                  Case(batch: 3, cin: 2, cout: 16, h: 64, w: 64, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: false, act: .identity),
                  Case(batch: 1, cin: 8, cout: 13, h: 41, w: 37, kh: 5, kw: 3, pt: 2, pl: 0, pb: 1, pr: 1, bias: true, act: .leakyRelu(alpha: 0.1))] {
            let g = try c.geometry()
            let x = r.floats(c.batch * g.inputCount), w = r.floats(g.weightCount), b = r.floats(c.cout)
            Engine.Threads.set(1)
            let (one, ran1) = Self.run(c, g, x: x, w: w, b: c.bias ? b : nil, direct: true)
            Engine.Threads.set(2)
            let (two, ran2) = Self.run(c, g, x: x, w: w, b: c.bias ? b : nil, direct: true)
            XCTAssertTrue(ran1 && ran2)
            XCTAssertEqual(Conv.RowsJob.shared.parts, 2, "\(c): the rows were split")
            XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern), "\(c)")
        }
    }

    /// avx2 (8-lane registers) and avx512 (16-lane) do the same operations per value in the same order: the same bits.
    func testAVX2AndAVX512GiveTheSameBits() throws {
        guard Kernels.supportedCPULevel == .avx512 else { throw XCTSkip("this CPU has no avx512") }
        var r = Rng(s: 99)
        for c in Self.cases(20, seed: 5) {
            let g = try c.geometry()
            let x = r.floats(c.batch * g.inputCount), w = r.floats(g.weightCount), b = r.floats(c.cout)
            Kernels.setCPULevel(.avx2)
            let (a, _) = Self.run(c, g, x: x, w: w, b: b, direct: true)
            Kernels.setCPULevel(.avx512)
            let (z, _) = Self.run(c, g, x: x, w: w, b: b, direct: true)
            XCTAssertEqual(a.map(\.bitPattern), z.map(\.bitPattern), "\(c)")
        }
    }

    /// Every sample of a batch through Conv.forward equals that sample alone, bit for bit (the cnn2d
    /// shapes and odd ones), at every level.
    func testBatchRowEqualsBatchOne() throws {
        var r = Rng(s: 4242)
        let shapes = [Case(batch: 7, cin: 2, cout: 16, h: 64, w: 64, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu),
                      Case(batch: 5, cin: 16, cout: 32, h: 32, w: 32, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu),
                      Case(batch: 9, cin: 5, cout: 11, h: 13, w: 21, kh: 5, kw: 3, pt: 0, pl: 1, pb: 1, pr: 0, bias: false, act: .tanh)]
        for level in CPULevel.allCases where level.rawValue <= Kernels.supportedCPULevel.rawValue {
            Kernels.setCPULevel(level)
            for c in shapes {
                let g = try c.geometry()
                let x = r.floats(c.batch * g.inputCount), w = r.floats(g.weightCount, scale: 0.3), b = r.floats(c.cout)
                let (whole, _) = Self.run(c, g, x: x, w: w, b: b, direct: false)
                var one = c
                one.batch = 1
                for n in 0..<c.batch {
                    let xs = Array(x[(n * g.inputCount)..<((n + 1) * g.inputCount)])
                    let (alone, _) = Self.run(one, g, x: xs, w: w, b: b, direct: false)
                    let row = whole[(n * g.outputCount)..<((n + 1) * g.outputCount)]
                    XCTAssertTrue(alone.map(\.bitPattern) == row.map(\.bitPattern), "\(c) sample \(n) at \(level)")
                }
            }
        }
    }

    /// x (N, 2, 64, 64) → Conv 16 3×3 pad 1 → Relu → MaxPool 2 → Conv 32 3×3 pad 1 → Relu → MaxPool 2
    /// → Flatten (cnn2d's convolutions without its dense head: a Dense at batch 1 takes the SIMD dot
    /// path and at batch N sgemm, which need not agree bit for bit).
    func cnn2dLike() throws -> Engine.Model {
        typealias G = Engine.Graph
        let g = G(opset: 17)
        var r = Rng(s: 7)
        func constant(_ name: String, _ shape: [Int], _ scale: Float) throws {
            try g.addConstant(name, try Engine.Tensor(shape: shape, values: r.floats(shape.reduce(1, *), scale: scale)))
        }
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 2, 64, 64])))
        try constant("w1", [16, 2, 3, 3], 0.5); try constant("b1", [16], 0.1)
        try constant("w2", [32, 16, 3, 3], 0.2); try constant("b2", [32], 0.1)
        let pool: [String: Engine.AttributeValue] = ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]
        let conv: [String: Engine.AttributeValue] = ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]
        try g.addNode("c1", ConvOp.self, conv, inputs: ["x", "w1", "b1"], outputs: ["c1"])
        try g.addNode("r1", ReluOp.self, inputs: ["c1"], outputs: ["r1"])
        try g.addNode("p1", MaxPoolOp.self, pool, inputs: ["r1"], outputs: ["p1"])
        try g.addNode("c2", ConvOp.self, conv, inputs: ["p1", "w2", "b2"], outputs: ["c2"])
        try g.addNode("r2", ReluOp.self, inputs: ["c2"], outputs: ["r2"])
        try g.addNode("p2", MaxPoolOp.self, pool, inputs: ["r2"], outputs: ["p2"])
        try g.addNode("f", FlattenOp.self, ["axis": .int(1)], inputs: ["p2"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return try Engine.Model(graph: g)
    }

    /// Through the engine, 1 thread: each output row of batch 6 equals batch 1 bit for bit; the
    /// direct path agrees with the baseline (im2col + GEMM) path within float32 rounding; no heap
    /// growth over repeated calls at a batch size seen before.
    func testModelRowsAllocationsAndBaselineAgreement() throws {
        let m = try cnn2dLike()
        Engine.Threads.set(1)
        var r = Rng(s: 31)
        let batch = 6
        let x = r.floats(batch * m.inputSize)
        func forward(_ xs: ArraySlice<Float>, _ n: Int) throws -> [Float] {
            let xp = UnsafeMutablePointer<Float>.allocate(capacity: xs.count)
            let yp = UnsafeMutablePointer<Float>.allocate(capacity: n * m.outputSize)
            defer { xp.deallocate(); yp.deallocate() }
            for (i, v) in xs.enumerated() { xp[i] = v }
            try m.forward(UnsafeBufferPointer(start: xp, count: xs.count), batch: n,
                          into: UnsafeMutableBufferPointer(start: yp, count: n * m.outputSize))
            return Array(UnsafeBufferPointer(start: yp, count: n * m.outputSize))
        }
        let whole = try forward(x[...], batch)
        for n in 0..<batch {
            let one = try forward(x[(n * m.inputSize)..<((n + 1) * m.inputSize)], 1)
            XCTAssertTrue(one.map(\.bitPattern) == whole[(n * m.outputSize)..<((n + 1) * m.outputSize)].map(\.bitPattern), "sample \(n)")
        }
        let level = Kernels.cpuLevel
        Kernels.setCPULevel(.baseline)
        let base = try forward(x[...], batch)
        Kernels.setCPULevel(level)
        XCTAssertLessThan(ThreadTests.relativeDifference(whole, base), 1e-5)
        if level != .baseline {
            // The model ran the direct kernel: its output equals the chain computed here by
            // Conv.directForward and a plain max-pool, bit for bit. (Comparing with the baseline
            // path's bits cannot tell: OpenBLAS's AVX-512 sgemm sums in the order of k with FMA too,
            // and then im2col + sgemm gives the direct kernel's bits.)
            var wr = Rng(s: 7)
            let w1 = wr.floats(16 * 2 * 9, scale: 0.5), b1 = wr.floats(16, scale: 0.1)
            let w2 = wr.floats(32 * 16 * 9, scale: 0.2), b2 = wr.floats(32, scale: 0.1)
            func pool(_ v: [Float], planes: Int, h: Int, w: Int) -> [Float] {
                var out = [Float](repeating: 0, count: planes * (h / 2) * (w / 2))
                for p in 0..<planes { for i in 0..<(h / 2) { for j in 0..<(w / 2) {
                    let a = v[(p * h + 2 * i) * w + 2 * j], b = v[(p * h + 2 * i) * w + 2 * j + 1]
                    let c = v[(p * h + 2 * i + 1) * w + 2 * j], d = v[(p * h + 2 * i + 1) * w + 2 * j + 1]
                    out[(p * (h / 2) + i) * (w / 2) + j] = Swift.max(Swift.max(a, b), Swift.max(c, d))
                } } }
                return out
            }
            let c1 = Case(batch: batch, cin: 2, cout: 16, h: 64, w: 64, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu)
            let c2 = Case(batch: batch, cin: 16, cout: 32, h: 32, w: 32, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, bias: true, act: .relu)
            let (y1, ran1) = Self.run(c1, try c1.geometry(), x: x, w: w1, b: b1, direct: true)
            let (y2, ran2) = Self.run(c2, try c2.geometry(), x: pool(y1, planes: batch * 16, h: 64, w: 64), w: w2, b: b2, direct: true)
            XCTAssertTrue(ran1 && ran2, "directForward at \(level)")
            let chain = pool(y2, planes: batch * 32, h: 32, w: 32)
            XCTAssertTrue(chain.map(\.bitPattern) == whole.map(\.bitPattern), "the model ran the direct kernel at \(level)")
        }

        let xb = UnsafeMutablePointer<Float>.allocate(capacity: batch * m.inputSize)
        let yb = UnsafeMutablePointer<Float>.allocate(capacity: batch * m.outputSize)
        defer { xb.deallocate(); yb.deallocate() }
        for i in x.indices { xb[i] = x[i] }
        func once() throws {
            try m.forward(UnsafeBufferPointer(start: xb, count: batch * m.inputSize), batch: batch,
                          into: UnsafeMutableBufferPointer(start: yb, count: batch * m.outputSize))
        }
        try once()
        guard let before = heapInUse() else { throw XCTSkip("mallinfo2 cannot see the allocator in use") }
        for _ in 0..<20 { try once() }
        XCTAssertEqual(heapInUse(), before, "heap in use changed across forward calls at a batch size seen before")
    }
}
