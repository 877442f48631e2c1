import XCTest
import Foundation
@testable import InLoopCore
#if canImport(Glibc)
import Glibc
#endif

// Every kernel of Sources/InLoopCore/Kernels/ against a naive float64 reference written here
// (direct convolution / pooling loops, index arithmetic for layout ops), on randomized shapes.
// Tolerance: max |y - ref| ≤ 1e-5 · max(max |ref|, 1e-30).

// MARK: helpers (kt-prefixed: this file shares a module with other test files)

struct KTRandom {
    var s: UInt64
    init(_ seed: UInt64) { s = seed &* 0x9E3779B97F4A7C15 | 1 }
    mutating func next() -> UInt64 {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return s
    }
    /// Uniform in [lo, hi].
    mutating func int(_ lo: Int, _ hi: Int) -> Int { lo + Int(next() % UInt64(hi - lo + 1)) }
    /// Uniform in [-1, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 52) - 1 }
    mutating func bool() -> Bool { next() & 1 == 1 }
    mutating func floats(_ n: Int, scale: Double = 1, offset: Double = 0) -> [Float] {
        (0..<n).map { _ in Float(unit() * scale + offset) }
    }
    mutating func pick<T>(_ a: [T]) -> T { a[int(0, a.count - 1)] }
}

func ktMaxErr(_ got: [Float], _ want: [Double]) -> (err: Double, scale: Double) {
    var e = 0.0, m = 0.0
    for i in 0..<min(got.count, want.count) {
        e = max(e, abs(Double(got[i]) - want[i]))
        m = max(m, abs(want[i]))
    }
    return (e, m)
}

func ktAssertClose(_ got: [Float], _ want: [Double], tol: Double = 1e-5, _ what: @autoclosure () -> String,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, want.count, "count: \(what())", file: file, line: line)
    let (e, m) = ktMaxErr(got, want)
    XCTAssert(e <= tol * max(m, 1e-30), "max error \(e) vs scale \(m): \(what())", file: file, line: line)
}

func ktAct(_ a: Activation, _ x: Double) -> Double {
    switch a {
    case .identity: return x
    case .relu: return max(x, 0)
    case .leakyRelu(let al): return x >= 0 ? x : Double(al) * x
    case .tanh: return Foundation.tanh(x)
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    default: return Double(a.apply(Float(x)))
    }
}

func ktProduct(_ s: [Int]) -> Int { s.reduce(1, *) }

/// Row-major strides.
func ktStrides(_ s: [Int]) -> [Int] {
    var st = [Int](repeating: 1, count: s.count)
    var acc = 1
    for i in stride(from: s.count - 1, through: 0, by: -1) { st[i] = acc; acc *= s[i] }
    return st
}

/// Multi-index of flat index `f` in shape `s`.
func ktUnflatten(_ f: Int, _ s: [Int]) -> [Int] {
    var idx = [Int](repeating: 0, count: s.count)
    var r = f
    for i in stride(from: s.count - 1, through: 0, by: -1) { idx[i] = r % s[i]; r /= s[i] }
    return idx
}

/// y = the strided view of x (`dims`, element strides `xStrides` from `xBase`) in row-major order: one
/// `TensorOps.stridedCopy`, the engine's copy step for Transpose, Slice and Split.
func ktStridedCopy(_ x: [Float], xBase: Int = 0, xStrides: [Int], dims: [Int]) -> [Float] {
    var y = [Float](repeating: .nan, count: ktProduct(dims))
    var d = Fixed8<Int>(repeating: 1), xs = Fixed8<Int>(repeating: 0), ys = Fixed8<Int>(repeating: 0)
    for (i, st) in ktStrides(dims).enumerated() { d[i] = dims[i]; xs[i] = xStrides[i]; ys[i] = st }
    TensorOps.stridedCopy(x: x, xBase: xBase, xStrides: xs, y: &y, yBase: 0, yStrides: ys, dims: d, rank: dims.count,
                          accumulate: false)
    return y
}

let ktActivations: [Activation] = [.identity, .relu, .tanh, .leakyRelu(alpha: 0.1), .sigmoid]

// MARK: convolution

/// A random valid convolution configuration.
struct KTConvCase: CustomStringConvertible {
    var rank: Int, batch: Int, cin: Int, cout: Int, group: Int
    var input: [Int], kernel: [Int], strides: [Int], dilations: [Int], pb: [Int], pe: [Int]
    var bias: Bool, act: Activation
    var description: String {
        "rank \(rank) N \(batch) Cin \(cin) Cout \(cout) group \(group) in \(input) k \(kernel) s \(strides) d \(dilations) pads \(pb)/\(pe) bias \(bias) \(act)"
    }

    static func random(_ r: inout KTRandom, depthwise: Bool = false, grouped: Bool = false) -> KTConvCase {
        let rank = r.int(1, 2)
        var c = KTConvCase(rank: rank, batch: r.pick([1, 3, 2]), cin: r.int(1, 5), cout: r.int(1, 6), group: 1,
                           input: [], kernel: [], strides: [], dilations: [], pb: [], pe: [],
                           bias: r.bool(), act: r.pick(ktActivations))
        if depthwise {
            c.cin = r.int(2, 5); c.group = c.cin; c.cout = c.cin * r.int(1, 3)
        } else if grouped {
            c.group = r.int(2, 3); c.cin = c.group * r.int(1, 3); c.cout = c.group * r.int(1, 3)
        }
        for _ in 0..<rank {
            let k = r.pick([1, 2, 3, 3, 5]), d = r.pick([1, 1, 2, 3]), s = r.pick([1, 1, 2, 3])
            let span = (k - 1) * d + 1
            let pb = r.int(0, span - 1), pe = r.int(0, span - 1)
            let n = max(r.int(1, rank == 1 ? 40 : 13), span - pb - pe)
            c.input.append(n); c.kernel.append(k); c.strides.append(s); c.dilations.append(d)
            c.pb.append(pb); c.pe.append(pe)
        }
        return c
    }

    func geometry() throws -> ConvGeometry {
        try ConvGeometry(channelsIn: cin, channelsOut: cout, group: group, inputSize: input, kernelSize: kernel,
                         strides: strides, dilations: dilations, padsBegin: pb, padsEnd: pe)
    }

    /// Output spatial sizes by the ONNX formula.
    var outputSize: [Int] {
        (0..<rank).map { (input[$0] + pb[$0] + pe[$0] - ((kernel[$0] - 1) * dilations[$0] + 1)) / strides[$0] + 1 }
    }
}

/// Direct convolution in float64 (any group), 1-D treated via explicit index lists.
func ktReferenceConv(_ c: KTConvCase, x: [Float], w: [Float], b: [Float]?) -> [Double] {
    let out = c.outputSize
    let inH = c.rank == 2 ? c.input[0] : 1, inW = c.input[c.rank - 1]
    let kH = c.rank == 2 ? c.kernel[0] : 1, kW = c.kernel[c.rank - 1]
    let sH = c.rank == 2 ? c.strides[0] : 1, sW = c.strides[c.rank - 1]
    let dH = c.rank == 2 ? c.dilations[0] : 1, dW = c.dilations[c.rank - 1]
    let pT = c.rank == 2 ? c.pb[0] : 0, pL = c.pb[c.rank - 1]
    let oH = c.rank == 2 ? out[0] : 1, oW = out[c.rank - 1]
    let cg = c.cin / c.group, mg = c.cout / c.group
    var y = [Double](repeating: 0, count: c.batch * c.cout * oH * oW)
    for n in 0..<c.batch {
        for co in 0..<c.cout {
            let grp = co / mg
            for oh in 0..<oH {
                for ow in 0..<oW {
                    var s = Double(b?[co] ?? 0)
                    for ci in 0..<cg {
                        let cin = grp * cg + ci
                        for i in 0..<kH {
                            let ih = oh * sH - pT + i * dH
                            if ih < 0 || ih >= inH { continue }
                            for j in 0..<kW {
                                let iw = ow * sW - pL + j * dW
                                if iw < 0 || iw >= inW { continue }
                                s += Double(x[((n * c.cin + cin) * inH + ih) * inW + iw])
                                    * Double(w[((co * cg + ci) * kH + i) * kW + j])
                            }
                        }
                    }
                    y[((n * c.cout + co) * oH + oh) * oW + ow] = ktAct(c.act, s)
                }
            }
        }
    }
    return y
}

func ktRunConv(_ c: KTConvCase, _ r: inout KTRandom, file: StaticString = #filePath, line: UInt = #line) throws {
    let g = try c.geometry()
    XCTAssertEqual(g.outputSize, c.outputSize, "\(c)", file: file, line: line)
    let x = r.floats(c.batch * g.inputCount)
    let w = r.floats(g.weightCount, scale: 0.5)
    let b: [Float]? = c.bias ? r.floats(c.cout, scale: 0.5) : nil
    var y = [Float](repeating: .nan, count: c.batch * g.outputCount)
    var ws = [Float](repeating: .nan, count: max(1, Conv.workspaceCount(geometry: g, batch: c.batch)))
    let bp = b ?? []
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bp.withUnsafeBufferPointer { bpp in
        y.withUnsafeMutableBufferPointer { yp in ws.withUnsafeMutableBufferPointer { wsp in
            Conv.forward(x: xp.baseAddress!, batch: c.batch, geometry: g, weight: wp.baseAddress!,
                         bias: b == nil ? nil : bpp.baseAddress!, activation: c.act, y: yp.baseAddress!,
                         workspace: wsp.baseAddress!)
        } }
    } } }
    ktAssertClose(y, ktReferenceConv(c, x: x, w: w, b: b), "conv \(c)", file: file, line: line)
}

/// Direct transposed convolution (scatter form) in float64.
func ktReferenceConvTranspose(_ c: KTConvCase, outputPadding op: [Int], x: [Float], w: [Float], b: [Float]?) -> [Double] {
    var out = [Int]()
    for d in 0..<c.rank {
        let full: Int = c.strides[d] * (c.input[d] - 1) + op[d] + (c.kernel[d] - 1) * c.dilations[d] + 1
        out.append(full - c.pb[d] - c.pe[d])
    }
    let inH = c.rank == 2 ? c.input[0] : 1, inW = c.input[c.rank - 1]
    let kH = c.rank == 2 ? c.kernel[0] : 1, kW = c.kernel[c.rank - 1]
    let sH = c.rank == 2 ? c.strides[0] : 1, sW = c.strides[c.rank - 1]
    let dH = c.rank == 2 ? c.dilations[0] : 1, dW = c.dilations[c.rank - 1]
    let pT = c.rank == 2 ? c.pb[0] : 0, pL = c.pb[c.rank - 1]
    let oH = c.rank == 2 ? out[0] : 1, oW = out[c.rank - 1]
    let cg = c.cin / c.group, mg = c.cout / c.group
    var y = [Double](repeating: 0, count: c.batch * c.cout * oH * oW)
    for n in 0..<c.batch {
        for co in 0..<c.cout {
            let bv: Double = Double(b?[co] ?? 0)
            let base: Int = (n * c.cout + co) * oH * oW
            for q in 0..<(oH * oW) { y[base + q] = bv }
        }
        for ci in 0..<c.cin {
            let grp = ci / cg
            for ih in 0..<inH {
                for iw in 0..<inW {
                    let xv = Double(x[((n * c.cin + ci) * inH + ih) * inW + iw])
                    for m in 0..<mg {
                        let co = grp * mg + m
                        for i in 0..<kH {
                            let oh = ih * sH - pT + i * dH
                            if oh < 0 || oh >= oH { continue }
                            for j in 0..<kW {
                                let ow = iw * sW - pL + j * dW
                                if ow < 0 || ow >= oW { continue }
                                let wi: Int = ((ci * mg + m) * kH + i) * kW + j
                                let yi: Int = ((n * c.cout + co) * oH + oh) * oW + ow
                                y[yi] += xv * Double(w[wi])
                            }
                        }
                    }
                }
            }
        }
    }
    return y.map { ktAct(c.act, $0) }
}

final class KernelTestsConv: XCTestCase {
    func testConvGroup1Random() throws {
        var r = KTRandom(1)
        for _ in 0..<150 { try ktRunConv(KTConvCase.random(&r), &r) }
    }

    func testConvDepthwiseRandom() throws {
        var r = KTRandom(2)
        for _ in 0..<80 { try ktRunConv(KTConvCase.random(&r, depthwise: true), &r) }
    }

    func testConvGroupedRandom() throws {
        var r = KTRandom(3)
        for _ in 0..<60 { try ktRunConv(KTConvCase.random(&r, grouped: true), &r) }
    }

    func testConvShapesOfInterest() throws {
        var r = KTRandom(4)
        // column_conv1d-like: several GEMM chunks with a remainder (batch 37, 60 positions per sample).
        try ktRunConv(KTConvCase(rank: 1, batch: 37, cin: 4, cout: 32, group: 1, input: [60], kernel: [3], strides: [1],
                                 dilations: [1], pb: [1], pe: [1], bias: true, act: .relu), &r)
        // cnn2d-like, one sample per GEMM straight into y.
        try ktRunConv(KTConvCase(rank: 2, batch: 3, cin: 2, cout: 16, group: 1, input: [64, 64], kernel: [5, 5],
                                 strides: [1, 1], dilations: [1, 1], pb: [2, 2], pe: [2, 2], bias: true, act: .tanh), &r)
        // Pointwise (x is the im2col matrix), with and without batching.
        try ktRunConv(KTConvCase(rank: 2, batch: 3, cin: 5, cout: 7, group: 1, input: [40, 30], kernel: [1, 1],
                                 strides: [1, 1], dilations: [1, 1], pb: [0, 0], pe: [0, 0], bias: false, act: .identity), &r)
        try ktRunConv(KTConvCase(rank: 1, batch: 3, cin: 5, cout: 7, group: 1, input: [9], kernel: [1],
                                 strides: [1], dilations: [1], pb: [0], pe: [0], bias: true, act: .relu), &r)
        // Batch 1, stride 2, dilation 2, pointwise with stride 2 (not the fast path).
        try ktRunConv(KTConvCase(rank: 2, batch: 1, cin: 3, cout: 4, group: 1, input: [11, 7], kernel: [3, 2],
                                 strides: [2, 3], dilations: [2, 1], pb: [2, 0], pe: [1, 1], bias: true, act: .identity), &r)
        try ktRunConv(KTConvCase(rank: 2, batch: 3, cin: 3, cout: 4, group: 1, input: [9, 8], kernel: [1, 1],
                                 strides: [2, 2], dilations: [1, 1], pb: [0, 0], pe: [0, 0], bias: true, act: .identity), &r)
        // Output of size 1, kernel covering the whole padded input.
        try ktRunConv(KTConvCase(rank: 1, batch: 3, cin: 2, cout: 3, group: 1, input: [3], kernel: [5],
                                 strides: [4], dilations: [1], pb: [1], pe: [1], bias: true, act: .identity), &r)
        // One sample per GEMM cut into several row tiles (35 output rows of 25), with strides,
        // dilations and padding rows in the first and last tile; also grouped.
        try ktRunConv(KTConvCase(rank: 2, batch: 2, cin: 3, cout: 5, group: 1, input: [70, 50], kernel: [3, 3],
                                 strides: [2, 2], dilations: [2, 2], pb: [2, 2], pe: [2, 2], bias: true, act: .relu), &r)
        try ktRunConv(KTConvCase(rank: 2, batch: 1, cin: 4, cout: 6, group: 2, input: [70, 50], kernel: [3, 2],
                                 strides: [2, 2], dilations: [2, 1], pb: [2, 1], pe: [1, 0], bias: false, act: .identity), &r)
        // 1-D, long sequence: one output row, so one tile per sample.
        try ktRunConv(KTConvCase(rank: 1, batch: 2, cin: 3, cout: 4, group: 1, input: [1500], kernel: [5],
                                 strides: [1], dilations: [3], pb: [6], pe: [6], bias: true, act: .tanh), &r)
        // Depthwise with a channel multiplier, strides and dilations.
        try ktRunConv(KTConvCase(rank: 2, batch: 3, cin: 4, cout: 8, group: 4, input: [10, 9], kernel: [3, 3],
                                 strides: [2, 1], dilations: [1, 2], pb: [1, 2], pe: [1, 2], bias: true, act: .relu), &r)
    }

    func testConvWorkspaceForLargerBatchServesSmaller() throws {
        let g = try ConvGeometry(channelsIn: 4, channelsOut: 32, inputSize: [60], kernelSize: [3], padsBegin: [1], padsEnd: [1])
        var last = 0
        for n in 1...300 {
            let w = Conv.workspaceCount(geometry: g, batch: n)
            XCTAssertGreaterThanOrEqual(w, last)
            last = w
        }
    }

    func testConvTransposeRandom() throws {
        var r = KTRandom(5)
        for iter in 0..<120 {
            var c = KTConvCase.random(&r, grouped: iter % 4 == 3)
            var op = [Int]()
            for i in 0..<c.rank { op.append(r.int(0, max(c.strides[i], c.dilations[i]) - 1)) }
            // Keep the output positive.
            for i in 0..<c.rank {
                let full = c.strides[i] * (c.input[i] - 1) + op[i] + (c.kernel[i] - 1) * c.dilations[i] + 1
                if c.pb[i] + c.pe[i] >= full { c.pb[i] = 0; c.pe[i] = 0 }
            }
            let g = try ConvTransposeGeometry(channelsIn: c.cin, channelsOut: c.cout, group: c.group, inputSize: c.input,
                                              kernelSize: c.kernel, strides: c.strides, dilations: c.dilations,
                                              padsBegin: c.pb, padsEnd: c.pe, outputPadding: op)
            let x = r.floats(c.batch * g.inputCount)
            let w = r.floats(g.weightCount, scale: 0.5)
            let b: [Float]? = c.bias ? r.floats(c.cout, scale: 0.5) : nil
            var y = [Float](repeating: .nan, count: c.batch * g.outputCount)
            var ws = [Float](repeating: .nan, count: max(1, ConvTranspose.workspaceCount(geometry: g, batch: c.batch)))
            let bp = b ?? []
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bp.withUnsafeBufferPointer { bpp in
                y.withUnsafeMutableBufferPointer { yp in ws.withUnsafeMutableBufferPointer { wsp in
                    ConvTranspose.forward(x: xp.baseAddress!, batch: c.batch, geometry: g, weight: wp.baseAddress!,
                                          bias: b == nil ? nil : bpp.baseAddress!, activation: c.act,
                                          y: yp.baseAddress!, workspace: wsp.baseAddress!)
                } }
            } } }
            ktAssertClose(y, ktReferenceConvTranspose(c, outputPadding: op, x: x, w: w, b: b), "convTranspose \(c) op \(op)")
        }
    }

    func testConvTransposeKnownShape() throws {
        // PyTorch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) doubles 7 → 14.
        let g = try ConvTransposeGeometry(channelsIn: 1, channelsOut: 1, inputSize: [7, 5], kernelSize: [3, 3],
                                          strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], outputPadding: [1, 1])
        XCTAssertEqual(g.outputSize, [14, 10])
    }

    func testGeometryErrors() {
        func kind(_ body: () throws -> Void) -> InLoopError.Kind? {
            do { try body(); return nil } catch { return (error as? InLoopError)?.kind ?? .internal }
        }
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, group: 2, inputSize: [8], kernelSize: [3]) }, .format)
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [8, 8, 8], kernelSize: [3, 3, 3]) }, .unsupported)
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [2], kernelSize: [5]) }, .format)
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [8, 8], kernelSize: [3]) }, .format)
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [8], kernelSize: [3], strides: [0]) }, .format)
        XCTAssertEqual(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [8], kernelSize: [3], padsBegin: [-1], padsEnd: [0]) }, .format)
        XCTAssertNil(kind { _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, inputSize: [2], kernelSize: [5], padsBegin: [2], padsEnd: [1]) })
        XCTAssertEqual(kind { _ = try ConvTransposeGeometry(channelsIn: 2, channelsOut: 2, inputSize: [4], kernelSize: [3], strides: [2], outputPadding: [2]) }, .format)
        XCTAssertEqual(kind { _ = try ConvTransposeGeometry(channelsIn: 2, channelsOut: 2, inputSize: [1], kernelSize: [1], padsBegin: [1], padsEnd: [0]) }, .format)
        XCTAssertEqual(kind { _ = try PoolGeometry(inputSize: [2], kernelSize: [3]) }, .format)
        XCTAssertEqual(kind { _ = try PoolGeometry(inputSize: [1, 2, 3], kernelSize: [1, 1, 1]) }, .unsupported)
        do {
            _ = try ConvGeometry(channelsIn: 3, channelsOut: 4, group: 2, inputSize: [8], kernelSize: [3])
        } catch {
            XCTAssert(error.message.contains("group 2"), error.message)
        }
    }

    func testAutoPads() {
        // SAME_UPPER, in 7, k 4, s 2: out 4, total pad 3 → 1 before, 2 after; SAME_LOWER the reverse.
        let u = ConvGeometry.autoPads(inputSize: [7], kernelSize: [4], strides: [2], dilations: [1], upper: true)
        XCTAssertEqual(u.begin, [1]); XCTAssertEqual(u.end, [2])
        let l = ConvGeometry.autoPads(inputSize: [7], kernelSize: [4], strides: [2], dilations: [1], upper: false)
        XCTAssertEqual(l.begin, [2]); XCTAssertEqual(l.end, [1])
        let z = ConvGeometry.autoPads(inputSize: [8, 9], kernelSize: [1, 3], strides: [1, 1], dilations: [1, 2], upper: true)
        XCTAssertEqual(z.begin, [0, 2]); XCTAssertEqual(z.end, [0, 2])
    }

    /// Timing of the two shapes named in the design (prints GFLOP/s; run with INLOOP_KERNEL_BENCH=1 in a
    /// release build: swift test -c release -Xswiftc -enable-testing --filter KernelTestsConv/testSpeed).
    func testSpeed() throws {
        guard ProcessInfo.processInfo.environment["INLOOP_KERNEL_BENCH"] != nil else {
            throw XCTSkip("timing only: set INLOOP_KERNEL_BENCH=1")   // counted as skipped, not passed
        }
        let cases: [(String, ConvGeometry)] = [
            ("conv1d 4x60 k3 32f", try ConvGeometry(channelsIn: 4, channelsOut: 32, inputSize: [60], kernelSize: [3], padsBegin: [1], padsEnd: [1])),
            ("conv2d 2x64x64 k3 16f", try ConvGeometry(channelsIn: 2, channelsOut: 16, inputSize: [64, 64], kernelSize: [3, 3], padsBegin: [1, 1], padsEnd: [1, 1])),
            ("conv2d 2x64x64 k5 32f", try ConvGeometry(channelsIn: 2, channelsOut: 32, inputSize: [64, 64], kernelSize: [5, 5], padsBegin: [2, 2], padsEnd: [2, 2])),
            ("conv2d 16x64x64 k3 32f", try ConvGeometry(channelsIn: 16, channelsOut: 32, inputSize: [64, 64], kernelSize: [3, 3], padsBegin: [1, 1], padsEnd: [1, 1])),
        ]
        let n = 256
        var r = KTRandom(9)
        for (name, g) in cases {
            let x = r.floats(n * g.inputCount), w = r.floats(g.weightCount), b = r.floats(g.channelsOut)
            var y = [Float](repeating: 0, count: n * g.outputCount)
            var ws = [Float](repeating: 0, count: max(1, Conv.workspaceCount(geometry: g, batch: n)))
            let flops = 2.0 * Double(n * g.outputCount * g.kernelSpatialCount * g.channelsIn / g.group)
            var best = Double.infinity
            for _ in 0..<7 {
                let t0 = Date()
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in ws.withUnsafeMutableBufferPointer { wsp in
                        Conv.forward(x: xp.baseAddress!, batch: n, geometry: g, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                     activation: .relu, y: yp.baseAddress!, workspace: wsp.baseAddress!)
                    } }
                } } }
                best = min(best, Date().timeIntervalSince(t0))
            }
            print("SPEED \(name) batch \(n): \(String(format: "%.3f", best * 1e3)) ms, \(String(format: "%.1f", flops / best / 1e9)) GFLOP/s")
        }
    }
}

// MARK: pooling

final class KernelTestsPool: XCTestCase {
    func referencePool(_ x: [Float], planes: Int, input: [Int], kernel: [Int], strides: [Int], dilations: [Int],
                       pb: [Int], pe: [Int], out: [Int], isMax: Bool, includePad: Bool) -> [Double] {
        let rank = input.count
        let inP = ktProduct(input), outP = ktProduct(out)
        var y = [Double](repeating: 0, count: planes * outP)
        for p in 0..<planes {
            for o in 0..<outP {
                let oi = ktUnflatten(o, out)
                var m = -Double.infinity, s = 0.0, inside = 0, padded = 0
                for k in 0..<ktProduct(kernel) {
                    let ki = ktUnflatten(k, kernel)
                    var pos = [Int](), inInput = true, inPadded = true
                    for d in 0..<rank {
                        let v = oi[d] * strides[d] - pb[d] + ki[d] * dilations[d]
                        pos.append(v)
                        if v < 0 || v >= input[d] { inInput = false }
                        if v >= input[d] + pe[d] { inPadded = false }
                    }
                    if inPadded { padded += 1 }
                    if inInput {
                        var f = 0
                        for d in 0..<rank { f = f * input[d] + pos[d] }
                        let v = Double(x[p * inP + f])
                        m = max(m, v); s += v; inside += 1
                    }
                }
                if isMax { y[p * outP + o] = m } else {
                    let div = includePad ? padded : inside
                    y[p * outP + o] = div > 0 ? s / Double(div) : 0
                }
            }
        }
        return y
    }

    func testPoolRandom() throws {
        var r = KTRandom(11)
        for iter in 0..<300 {
            let rank = r.int(1, 2)
            var input = [Int](), kernel = [Int](), strides = [Int](), dil = [Int](), pb = [Int](), pe = [Int]()
            for _ in 0..<rank {
                let k = r.pick([1, 2, 3, 4]), d = iter % 3 == 0 ? r.pick([1, 2, 3]) : 1, s = r.pick([1, 2, 3])
                let span = (k - 1) * d + 1
                let a = r.int(0, k - 1), b = r.int(0, k - 1)
                input.append(max(r.int(1, 12), span - a - b)); kernel.append(k); strides.append(s); dil.append(d)
                pb.append(a); pe.append(b)
            }
            let ceil = r.bool(), includePad = r.bool(), planes = r.pick([1, 3, 4])
            let g = try PoolGeometry(inputSize: input, kernelSize: kernel, strides: strides, dilations: dil,
                                     padsBegin: pb, padsEnd: pe, ceilMode: ceil)
            // Output size: floor/ceil formula, then drop a window starting in the end padding.
            let want = (0..<rank).map { d -> Int in
                let num = Double(input[d] + pb[d] + pe[d] - ((kernel[d] - 1) * dil[d] + 1)) / Double(strides[d])
                var o = Int(ceil ? num.rounded(.up) : num.rounded(.down)) + 1
                if ceil && (o - 1) * strides[d] >= input[d] + pb[d] { o -= 1 }
                return o
            }
            XCTAssertEqual(g.outputSize, want)
            let x = r.floats(planes * g.inputSpatialCount)
            var y = [Float](repeating: .nan, count: planes * g.outputSpatialCount)
            let what = "in \(input) k \(kernel) s \(strides) d \(dil) pads \(pb)/\(pe) ceil \(ceil) includePad \(includePad)"
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                Pool.max(x: xp.baseAddress!, planes: planes, geometry: g, y: yp.baseAddress!)
            } }
            ktAssertClose(y, referencePool(x, planes: planes, input: input, kernel: kernel, strides: strides, dilations: dil,
                                           pb: pb, pe: pe, out: g.outputSize, isMax: true, includePad: false), "max " + what)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                Pool.average(x: xp.baseAddress!, planes: planes, geometry: g, countIncludePad: includePad, y: yp.baseAddress!)
            } }
            ktAssertClose(y, referencePool(x, planes: planes, input: input, kernel: kernel, strides: strides, dilations: dil,
                                           pb: pb, pe: pe, out: g.outputSize, isMax: false, includePad: includePad), "avg " + what)
        }
    }

    func testPoolKnownValues() throws {
        // PyTorch MaxPool1d(2, stride 2, padding 1, ceil_mode=True) on length 5 gives 3 outputs (the 4th
        // window would start in the padding).
        XCTAssertEqual(try PoolGeometry(inputSize: [5], kernelSize: [2], strides: [2], padsBegin: [1], padsEnd: [1], ceilMode: true).outputSize, [3])
        XCTAssertEqual(try PoolGeometry(inputSize: [6], kernelSize: [3], strides: [2], padsBegin: [1], padsEnd: [1], ceilMode: true).outputSize, [4])
        XCTAssertEqual(try PoolGeometry(inputSize: [5], kernelSize: [2], strides: [2], ceilMode: true).outputSize, [3])
        // AvgPool1d(3, stride 2, padding 1, ceil_mode=True, count_include_pad=True) on [1, 2, 3, 4, 5, 6]:
        // windows [-1,1], [1,3], [3,5], [5,7] → 3/3, 9/3, 15/3, 6/2 (the last window reaches past the padding).
        let g = try PoolGeometry(inputSize: [6], kernelSize: [3], strides: [2], padsBegin: [1], padsEnd: [1], ceilMode: true)
        let x: [Float] = [1, 2, 3, 4, 5, 6]
        var y = [Float](repeating: 0, count: 4)
        Pool.average(x: x, planes: 1, geometry: g, countIncludePad: true, y: &y)
        XCTAssertEqual(y, [1, 3, 5, 3])
        Pool.average(x: x, planes: 1, geometry: g, countIncludePad: false, y: &y)
        XCTAssertEqual(y, [1.5, 3, 5, 6])
        Pool.max(x: x, planes: 1, geometry: g, y: &y)
        XCTAssertEqual(y, [2, 4, 6, 6])
    }

    func testGlobalPools() {
        var r = KTRandom(12)
        for (planes, spatial) in [(1, 1), (3, 7), (6, 4096), (2, 60)] {
            let x = r.floats(planes * spatial, scale: 2, offset: 0.5)
            var y = [Float](repeating: .nan, count: planes)
            Pool.globalAverage(x: x, planes: planes, spatial: spatial, y: &y)
            ktAssertClose(y, (0..<planes).map { p in (0..<spatial).reduce(0.0) { $0 + Double(x[p * spatial + $1]) } / Double(spatial) }, "gap")
            Pool.globalMax(x: x, planes: planes, spatial: spatial, y: &y)
            ktAssertClose(y, (0..<planes).map { p in (0..<spatial).map { Double(x[p * spatial + $0]) }.max()! }, "gmp")
        }
    }
}

// MARK: tensor ops

final class KernelTestsTensorOps: XCTestCase {
    func randomShape(_ r: inout KTRandom, rank: Int, maxDim: Int = 5) -> [Int] {
        (0..<rank).map { _ in r.int(1, maxDim) }
    }

    func testTranspose() {
        var r = KTRandom(21)
        var shapes: [([Int], [Int])] = [([3, 4], [1, 0]), ([40, 70], [1, 0]), ([2, 3, 4, 5], [0, 2, 3, 1]),
                                        ([2, 5, 4, 3], [0, 3, 1, 2]), ([1, 3, 1, 4], [3, 2, 1, 0]), ([7], [0]), ([], [])]
        for _ in 0..<120 {
            let rank = r.int(1, 6)
            var perm = Array(0..<rank)
            for i in stride(from: rank - 1, to: 0, by: -1) { perm.swapAt(i, r.int(0, i)) }
            shapes.append((randomShape(&r, rank: rank, maxDim: rank > 4 ? 3 : 6), perm))
        }
        for (shape, perm) in shapes {
            let n = ktProduct(shape)
            let x = (0..<n).map { Float($0) }
            let yShape = perm.map { shape[$0] }
            let xs = ktStrides(shape)
            let y = ktStridedCopy(x, xStrides: perm.map { xs[$0] }, dims: yShape)
            let want = (0..<n).map { f -> Double in
                let yi = ktUnflatten(f, yShape)
                var off = 0
                for i in 0..<perm.count { off += yi[i] * xs[perm[i]] }
                return Double(off)
            }
            XCTAssertEqual(y.map(Double.init), want, "transpose \(shape) perm \(perm)")
        }
    }

    func testConcatSplit() {
        var r = KTRandom(22)
        for _ in 0..<60 {
            let rank = r.int(1, 4)
            let base = randomShape(&r, rank: rank)
            let axis = r.int(0, rank - 1)
            let lengths = (0..<r.int(1, 4)).map { _ in r.int(0, 4) }
            let total = lengths.reduce(0, +)
            let outer = ktProduct(Array(base[..<axis])), inner = ktProduct(Array(base[(axis + 1)...]))
            var parts = [[Float]]()
            for l in lengths { parts.append(r.floats(outer * l * inner)) }
            var y = [Float](repeating: .nan, count: outer * total * inner)
            var off = 0
            for (i, l) in lengths.enumerated() {
                TensorOps.concat(x: parts[i], outer: outer, axisLength: l, inner: inner, y: &y, yAxisLength: total, axisOffset: off)
                off += l
            }
            // Reference: y[o, a, i] comes from the part holding a.
            var want = [Double]()
            for o in 0..<outer {
                for (pi, l) in lengths.enumerated() {
                    for a in 0..<l { for i in 0..<inner { want.append(Double(parts[pi][(o * l + a) * inner + i])) } }
                }
            }
            XCTAssertEqual(y.map(Double.init), want, "concat \(base) axis \(axis) lengths \(lengths)")
            off = 0
            for (i, l) in lengths.enumerated() {
                let p = ktStridedCopy(y, xBase: off * inner, xStrides: [total * inner, 1], dims: [outer, l * inner])
                XCTAssertEqual(p, parts[i], "split \(base) axis \(axis) lengths \(lengths) part \(i)")
                off += l
            }
        }
    }

    /// ONNX Slice semantics for one axis, written as an explicit index list.
    func referenceIndices(dim: Int, start: Int, end: Int, step: Int) -> [Int] {
        var s = start < 0 ? start + dim : start
        var e = end < 0 ? (end == Int.min ? -1 : end + dim) : end
        var out = [Int]()
        if step > 0 {
            s = min(max(s, 0), dim); e = min(max(e, 0), dim)
            var i = s
            while i < e { out.append(i); i += step }
        } else {
            s = min(max(s, 0), dim - 1); e = min(max(e, -1), dim - 1)
            var i = s
            while i > e { out.append(i); i += step }
        }
        return out
    }

    /// ONNX Slice with one start/end/step per axis as the engine lowers it (`Ops/LayoutOps.swift`):
    /// `TensorOps.sliceRange` per axis, then one strided copy.
    func slice(_ x: [Float], _ shape: [Int], _ starts: [Int], _ ends: [Int], _ steps: [Int]) -> (shape: [Int], y: [Float]) {
        let xs = ktStrides(shape)
        var dims = [Int](), strides = [Int](), base = 0
        for d in shape.indices {
            let (s, c) = TensorOps.sliceRange(dim: shape[d], start: starts[d], end: ends[d], step: steps[d])
            let step = steps[d] > 0 ? min(steps[d], shape[d]) : max(steps[d], -shape[d])
            dims.append(c); strides.append(step * xs[d]); base += s * xs[d]
        }
        return (dims, ktStridedCopy(x, xBase: base, xStrides: strides, dims: dims))
    }

    func testSliceKnown() {
        let x = (0..<10).map { Float($0) }
        func run(_ s: Int, _ e: Int, _ st: Int) -> [Float] { slice(x, [10], [s], [e], [st]).y }
        XCTAssertEqual(run(-1, Int.min, -1), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
        XCTAssertEqual(run(8, 1, -3), [8, 5, 2])
        XCTAssertEqual(run(1, Int.max, 4), [1, 5, 9])
        XCTAssertEqual(run(-3, -1, 1), [7, 8])
        XCTAssertEqual(run(20, -20, -7), [9, 2])
        XCTAssertEqual(run(5, 5, 1), [])
        XCTAssertEqual(run(0, 10, 100), [0])
        XCTAssertEqual(run(9, -11, Int.min), [9])
    }

    func testSliceRandom() {
        var r = KTRandom(23)
        let special = [Int.max, Int.min, -100, 100]
        for _ in 0..<200 {
            let rank = r.int(1, 4)
            let shape = randomShape(&r, rank: rank, maxDim: 7)
            var starts = [Int](), ends = [Int](), steps = [Int]()
            for d in 0..<rank {
                starts.append(r.int(0, 9) == 0 ? r.pick(special) : r.int(-shape[d] - 2, shape[d] + 2))
                ends.append(r.int(0, 5) == 0 ? r.pick(special) : r.int(-shape[d] - 2, shape[d] + 2))
                let s = r.int(1, 3)
                steps.append(r.bool() ? s : -s)
            }
            let idx = (0..<rank).map { referenceIndices(dim: shape[$0], start: starts[$0], end: ends[$0], step: steps[$0]) }
            let yShape = idx.map(\.count)
            let n = ktProduct(shape)
            let x = (0..<n).map { Float($0) }
            let (sliced, y) = slice(x, shape, starts, ends, steps)
            XCTAssertEqual(sliced, yShape)
            let xs = ktStrides(shape)
            let want = (0..<ktProduct(yShape)).map { f -> Float in
                let yi = ktUnflatten(f, yShape)
                var off = 0
                for d in 0..<rank { off += idx[d][yi[d]] * xs[d] }
                return Float(off)
            }
            XCTAssertEqual(y, want, "slice \(shape) starts \(starts) ends \(ends) steps \(steps)")
        }
    }

    func testGather() {
        var r = KTRandom(24)
        for _ in 0..<80 {
            let rank = r.int(1, 4)
            let shape = randomShape(&r, rank: rank)
            let axis = r.int(0, rank - 1)
            let indices = (0..<r.int(0, 6)).map { _ in r.int(0, shape[axis] - 1) }
            let outer = ktProduct(Array(shape[..<axis])), inner = ktProduct(Array(shape[(axis + 1)...]))
            let x = r.floats(ktProduct(shape))
            var y = [Float](repeating: .nan, count: outer * indices.count * inner)
            TensorOps.gather(x: x, outer: outer, axisLength: shape[axis], inner: inner, indices: indices,
                             indexCount: indices.count, y: &y)
            var want = [Float]()
            for o in 0..<outer { for j in indices { for i in 0..<inner { want.append(x[(o * shape[axis] + j) * inner + i]) } } }
            XCTAssertEqual(y, want, "gather \(shape) axis \(axis) indices \(indices)")
        }
    }

    func referenceBinary(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return Foundation.pow(a, b)
        case .min: return min(a, b)
        case .max: return max(a, b)
        }
    }

    /// y = op(a, b) as the engine's broadcast step runs it: the geometry `Engine.BroadcastLayout`
    /// encodes at lowering, decoded and run by `TensorOps.broadcastBinary(_:a:b:y:geometry:numerics:)`.
    func broadcastBinary(_ op: BinaryOp, _ a: UnsafePointer<Float>, _ aShape: [Int], _ b: UnsafePointer<Float>,
                         _ bShape: [Int], _ y: UnsafeMutablePointer<Float>, _ yShape: [Int]) throws {
        let ints = try Engine.BroadcastLayout.encode(aShape.map { Engine.SymInt($0) }, bShape.map { Engine.SymInt($0) },
                                                     yShape.map { Engine.SymInt($0) }, batch: nil)
        let g = ints.withUnsafeBufferPointer { Engine.BroadcastLayout.decode($0, 0, 1) }
        TensorOps.broadcastBinary(op, a: a, b: b, y: y, geometry: g, numerics: .inference)
    }

    func checkBroadcast(_ op: BinaryOp, _ aShape: [Int], _ bShape: [Int], _ r: inout KTRandom, inPlace: Bool = false) throws {
        let rank = max(aShape.count, bShape.count)   // NumPy rule (the operands here always broadcast)
        let yShape = (0..<rank).map { i -> Int in
            let ia = i - (rank - aShape.count), ib = i - (rank - bShape.count)
            return max(ia >= 0 ? aShape[ia] : 1, ib >= 0 ? bShape[ib] : 1)
        }
        let positive = op == .pow || op == .div
        let a = r.floats(ktProduct(aShape), scale: positive ? 0.7 : 1, offset: positive ? 1.2 : 0)
        let b = r.floats(ktProduct(bShape), scale: positive ? 0.7 : 1, offset: positive ? 1.2 : 0)
        var y = [Float](repeating: .nan, count: ktProduct(yShape))
        if inPlace {
            y = a
            try y.withUnsafeMutableBufferPointer { yp in
                try broadcastBinary(op, yp.baseAddress!, aShape, b, bShape, yp.baseAddress!, yShape)
            }
        } else {
            try broadcastBinary(op, a, aShape, b, bShape, &y, yShape)
        }
        let r0 = yShape.count
        let want = (0..<ktProduct(yShape)).map { f -> Double in
            let yi = ktUnflatten(f, yShape)
            func at(_ v: [Float], _ s: [Int]) -> Double {
                var off = 0
                for (d, n) in s.enumerated() { off = off * n + (n == 1 ? 0 : yi[r0 - s.count + d]) }
                return Double(v[off])
            }
            return referenceBinary(op, at(a, aShape), at(b, bShape))
        }
        ktAssertClose(y, want, "\(op) \(aShape) \(bShape)\(inPlace ? " in place" : "")")
    }

    func testBroadcastPatterns() throws {
        var r = KTRandom(25)
        let ops: [BinaryOp] = [.add, .sub, .mul, .div, .pow, .min, .max]
        let patterns: [([Int], [Int])] = [
            ([2, 3, 4], [2, 3, 4]), ([5], [5]), ([], []), ([3, 4], []), ([], [3, 4]), ([3, 4], [1]), ([1], [3, 4]),
            ([3, 4], [4]), ([4], [3, 4]), ([2, 3, 5], [5]), ([2, 3, 4, 5], [1, 3, 1, 1]), ([2, 3, 4, 5], [3, 1, 1]),
            ([1, 3, 1, 1], [2, 3, 4, 5]), ([2, 3, 4, 5], [2, 3, 1, 1]), ([3, 1], [1, 4]), ([2, 1, 4], [3, 1]),
            ([2, 3, 1, 5], [1, 1, 4, 1]), ([1, 1, 1], [2, 3, 4]), ([2, 1, 3, 1, 2, 1, 2, 1], [1, 2, 1, 3, 1, 2, 1, 2]),
            ([2, 3, 4], [2, 1, 4]), ([6, 1], [6, 7]), ([1, 7], [6, 1]),
        ]
        for op in ops {
            for (a, b) in patterns { try checkBroadcast(op, a, b, &r) }
        }
        // Random shapes: every dim of each operand randomly 1 or the output's, leading dims dropped.
        for _ in 0..<300 {
            let rank = r.int(0, 6)
            let y = randomShape(&r, rank: rank, maxDim: 4)
            func operand(_ r: inout KTRandom) -> [Int] {
                let drop = r.int(0, rank)
                return Array(y[drop...]).map { r.int(0, 2) == 0 ? 1 : $0 }
            }
            try checkBroadcast(r.pick(ops), operand(&r), operand(&r), &r)
        }
        // In place (y aliases a, which has the output's shape).
        try checkBroadcast(.add, [2, 3, 4, 5], [3, 1, 1], &r, inPlace: true)
        try checkBroadcast(.mul, [6, 7], [6, 7], &r, inPlace: true)
        try checkBroadcast(.sub, [2, 3, 4], [4], &r, inPlace: true)
    }

    func testSoftmax() {
        var r = KTRandom(26)
        for (outer, len, inner) in [(1, 1, 1), (3, 10, 1), (2, 7, 5), (4, 1, 3), (1, 300, 1), (5, 3, 64)] {
            var x = r.floats(outer * len * inner, scale: 20)
            if outer > 1 { for i in 0..<inner { x[i] += 1000 } }   // stability: huge logits
            var want = [Double](repeating: 0, count: x.count), wantLog = want
            for o in 0..<outer {
                for i in 0..<inner {
                    let idx = (0..<len).map { (o * len + $0) * inner + i }
                    let m = idx.map { Double(x[$0]) }.max()!
                    let s = idx.reduce(0.0) { $0 + Foundation.exp(Double(x[$1]) - m) }
                    for j in idx {
                        want[j] = Foundation.exp(Double(x[j]) - m) / s
                        wantLog[j] = Double(x[j]) - m - Foundation.log(s)
                    }
                }
            }
            var y = [Float](repeating: .nan, count: x.count)
            TensorOps.softmax(x: x, outer: outer, axisLength: len, inner: inner, y: &y)
            ktAssertClose(y, want, "softmax \(outer)×\(len)×\(inner)")
            TensorOps.logSoftmax(x: x, outer: outer, axisLength: len, inner: inner, y: &y)
            ktAssertClose(y, wantLog, "logSoftmax \(outer)×\(len)×\(inner)")
            var z = x
            z.withUnsafeMutableBufferPointer { p in
                TensorOps.softmax(x: p.baseAddress!, outer: outer, axisLength: len, inner: inner, y: p.baseAddress!)
            }
            ktAssertClose(z, want, "softmax in place \(outer)×\(len)×\(inner)")
        }
    }

    func testLayerNorm() {
        var r = KTRandom(27)
        for (rows, cols) in [(1, 1), (3, 7), (5, 64), (2, 1000)] {
            let x = r.floats(rows * cols, scale: 3, offset: 10)
            let sc = r.floats(cols), bi = r.floats(cols)
            let eps: Float = 1e-5
            for mode in 0..<4 {
                let s: [Float]? = mode & 1 == 1 ? sc : nil, b: [Float]? = mode & 2 == 2 ? bi : nil
                var want = [Double]()
                for rr in 0..<rows {
                    let row = (0..<cols).map { Double(x[rr * cols + $0]) }
                    let mean = row.reduce(0, +) / Double(cols)
                    let v = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(cols)
                    for c in 0..<cols {
                        want.append((row[c] - mean) / (v + Double(eps)).squareRoot() * Double(s?[c] ?? 1) + Double(b?[c] ?? 0))
                    }
                }
                var y = [Float](repeating: .nan, count: x.count)
                let sp = s ?? [], bp = b ?? []
                sp.withUnsafeBufferPointer { spp in bp.withUnsafeBufferPointer { bpp in
                    TensorOps.layerNorm(x: x, rows: rows, cols: cols, scale: s == nil ? nil : spp.baseAddress,
                                        bias: b == nil ? nil : bpp.baseAddress, epsilon: eps, y: &y)
                } }
                ktAssertClose(y, want, "layerNorm \(rows)×\(cols) mode \(mode)")
            }
        }
    }

    /// The ONNX reference formulas (float arithmetic, as onnxruntime evaluates them).
    func referenceNearest(_ o: Int, _ inLen: Int, _ outLen: Int, _ scale: Float,
                          _ mode: ResizeCoordinateMode, _ nearest: ResizeNearestMode) -> Int {
        let xr = Float(o)
        var x: Float
        switch mode {
        case .halfPixel: x = (xr + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adj = Float(outLen) / (scale * Float(inLen))
            x = Float(inLen) / 2 * (1 - adj) + (xr + 0.5) / scale - 0.5
        case .asymmetric: x = xr / scale
        case .alignCorners: x = outLen == 1 ? 0 : xr * Float(inLen - 1) / Float(outLen - 1)
        case .pytorchHalfPixel: x = outLen > 1 ? (xr + 0.5) / scale - 0.5 : 0
        case .tfHalfPixelForNearest: x = (xr + 0.5) / scale
        }
        let d = Double(x)
        var i: Double
        switch nearest {
        case .roundPreferFloor: i = d - d.rounded(.down) == 0.5 ? d.rounded(.down) : d.rounded()
        case .roundPreferCeil: i = d - d.rounded(.down) == 0.5 ? d.rounded(.up) : d.rounded()
        case .floor: i = d.rounded(.down)
        case .ceil: i = d.rounded(.up)
        }
        return min(max(Int(i), 0), inLen - 1)
    }

    /// ONNX Resize (nearest) over every axis, composed from `TensorOps.nearestIndex` per axis as the
    /// engine's Resize lowering (`Ops/ResizeOps.swift`) uses it; scales nil: outShape[d] / inShape[d].
    func resizeNearest(_ x: [Float], _ inShape: [Int], _ outShape: [Int], _ scales: [Float]?,
                       _ mode: ResizeCoordinateMode, _ nearest: ResizeNearestMode) -> [Float] {
        let xs = ktStrides(inShape)
        return (0..<ktProduct(outShape)).map { f -> Float in
            let yi = ktUnflatten(f, outShape)
            var off = 0
            for d in 0..<inShape.count {
                off += TensorOps.nearestIndex(yi[d], inLength: inShape[d], outLength: outShape[d],
                                              scale: scales?[d] ?? Float(outShape[d]) / Float(inShape[d]),
                                              coordinateMode: mode, nearestMode: nearest) * xs[d]
            }
            return x[off]
        }
    }

    func testResizeNearestKnown() {
        func run(_ x: [Float], _ outLen: Int, _ mode: ResizeCoordinateMode, _ nearest: ResizeNearestMode) -> [Float] {
            resizeNearest(x, [x.count], [outLen], nil, mode, nearest)
        }
        XCTAssertEqual(run([0, 1], 4, .asymmetric, .floor), [0, 0, 1, 1])
        XCTAssertEqual(run([0, 1], 4, .halfPixel, .roundPreferFloor), [0, 0, 1, 1])
        XCTAssertEqual(run([0, 1, 2, 3], 2, .halfPixel, .roundPreferFloor), [0, 2])
        XCTAssertEqual(run([0, 1, 2, 3], 2, .halfPixel, .roundPreferCeil), [1, 3])
        XCTAssertEqual(run([0, 1, 2], 5, .alignCorners, .roundPreferFloor), [0, 0, 1, 1, 2])
        XCTAssertEqual(run([0, 1, 2], 5, .alignCorners, .roundPreferCeil), [0, 1, 1, 2, 2])
        XCTAssertEqual(run([0, 1, 2, 3], 2, .asymmetric, .ceil), [0, 2])
        XCTAssertEqual(run([0, 1, 2, 3], 2, .tfHalfPixelForNearest, .floor), [1, 3])
        XCTAssertEqual(run([0, 1, 2, 3], 1, .pytorchHalfPixel, .floor), [0])
        // Explicit scales differ from out/in: scale 3 on length 2 → 5 outputs (ONNX rounds sizes down).
        XCTAssertEqual(resizeNearest([0, 1], [2], [5], [3], .asymmetric, .floor), [0, 0, 0, 1, 1])
    }

    func testResizeNearestRandom() {
        var r = KTRandom(29)
        let modes: [ResizeCoordinateMode] = [.halfPixel, .halfPixelSymmetric, .asymmetric, .alignCorners, .pytorchHalfPixel, .tfHalfPixelForNearest]
        let nearests: [ResizeNearestMode] = [.roundPreferFloor, .roundPreferCeil, .floor, .ceil]
        for _ in 0..<200 {
            let rank = r.int(1, 4)
            let inShape = randomShape(&r, rank: rank, maxDim: 6)
            let outShape = inShape.map { r.int(0, 3) == 0 ? $0 : r.int(1, 9) }
            let useScales = r.int(0, 3) == 0
            let scales: [Float]? = useScales ? (0..<rank).map { Float(outShape[$0]) / Float(inShape[$0]) * (r.bool() ? 1 : 1.01) } : nil
            let mode = r.pick(modes), nearest = r.pick(nearests)
            let x = (0..<ktProduct(inShape)).map { Float($0) }
            let y = resizeNearest(x, inShape, outShape, scales, mode, nearest)
            let xs = ktStrides(inShape)
            let want = (0..<ktProduct(outShape)).map { f -> Float in
                let yi = ktUnflatten(f, outShape)
                var off = 0
                for d in 0..<rank {
                    let sc = scales?[d] ?? Float(outShape[d]) / Float(inShape[d])
                    off += referenceNearest(yi[d], inShape[d], outShape[d], sc, mode, nearest) * xs[d]
                }
                return Float(off)
            }
            XCTAssertEqual(y, want, "resize \(inShape) → \(outShape) scales \(String(describing: scales)) \(mode) \(nearest)")
        }
    }
}

// MARK: unary

final class KernelTestsUnary: XCTestCase {
    func testUnaryFunctions() {
        var r = KTRandom(31)
        let cases: [(UnaryFunction, (Double) -> Double, Bool)] = [   // (f, reference, positive inputs only)
            (.erf, { Foundation.erf($0) }, false),
            (.exp, { Foundation.exp($0) }, false),
            (.log, { Foundation.log($0) }, true),
            (.sqrt, { $0.squareRoot() }, true),
            (.neg, { -$0 }, false),
            (.abs, { Swift.abs($0) }, false),
            (.reciprocal, { 1 / $0 }, true),
            (.floor, { $0.rounded(.down) }, false),
            (.ceil, { $0.rounded(.up) }, false),
            (.round, { $0.rounded(.toNearestOrEven) }, false),
            (.sign, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, false),
            (.softsign, { $0 / (1 + Swift.abs($0)) }, false),
            (.hardSwish, { $0 * min(max($0 / 6 + 0.5, 0), 1) }, false),
            (.selu(alpha: 1.6732632, gamma: 1.0507010), { $0 > 0 ? 1.0507010 * $0 : 1.0507010 * 1.6732632 * (Foundation.exp($0) - 1) }, false),
            (.pow(exponent: 2), { $0 * $0 }, false),
            (.pow(exponent: 3), { $0 * $0 * $0 }, false),
            (.pow(exponent: 0.5), { $0.squareRoot() }, true),
            (.pow(exponent: 1), { $0 }, false),
            (.pow(exponent: -1.5), { Foundation.pow($0, -1.5) }, true),
            (.clip(min: -0.5, max: 1.25), { min(max($0, -0.5), 1.25) }, false),
            (.clip(min: -.infinity, max: 0), { min($0, 0) }, false),
            (.hardSigmoid(alpha: 0.2, beta: 0.5), { min(max(0.2 * $0 + 0.5, 0), 1) }, false),
        ]
        for (f, ref, positive) in cases {
            var x = positive ? r.floats(257, scale: 2.4, offset: 2.5) : r.floats(257, scale: 4)
            x += positive ? [2.5, 0.5, 1] : [2.5, -2.5, 0.5, -0.5, 1.5, 0, -0.0]
            var y = [Float](repeating: .nan, count: x.count)
            UnaryFunction.apply(f, x: x, y: &y, count: x.count)
            let want = x.map { ref(Double($0)) }
            ktAssertClose(y, want, "\(f)")
            // Scalar definition agrees with the kernel; in place gives the same values.
            XCTAssertEqual(x.map { f.apply($0) }, y, "\(f) scalar vs kernel")
            var z = x
            z.withUnsafeMutableBufferPointer { p in UnaryFunction.apply(f, x: p.baseAddress!, y: p.baseAddress!, count: x.count) }
            XCTAssertEqual(z, y, "\(f) in place")
        }
    }

    /// The generic kernels in Double and under both numerics: the vector kernel (in place and not)
    /// equals the scalar definition bit for bit, and both agree with libm in float64; softmax and
    /// log-softmax in Double against a naive float64 loop, and the two log-softmax variants agree.
    func testGenericUnaryAndSoftmaxInDouble() {
        var r = KTRandom(12)
        let cases: [(UnaryFunction, (Double) -> Double)] = [
            (.erf, { Foundation.erf($0) }), (.exp, { Foundation.exp($0) }), (.log, { Foundation.log($0) }),
            (.sqrt, { $0.squareRoot() }), (.neg, { -$0 }), (.abs, { Swift.abs($0) }), (.reciprocal, { 1 / $0 }),
            (.softsign, { $0 / (1 + Swift.abs($0)) }),
            (.selu(alpha: 1.5, gamma: 1.25), { $0 > 0 ? 1.25 * $0 : 1.25 * 1.5 * Foundation.expm1($0) }),
            (.pow(exponent: 2), { $0 * $0 }), (.pow(exponent: 0.5), { $0.squareRoot() }), (.pow(exponent: 3), { $0 * $0 * $0 }),
            (.pow(exponent: -1.5), { Foundation.pow($0, -1.5) }), (.clip(min: -0.5, max: 1.25), { min(max($0, -0.5), 1.25) }),
        ]
        let x = r.floats(200, scale: 2.4, offset: 2.5).map { Double($0) + 1e-9 } + [0.5, 1, 2.5, .infinity, -0.5, -2]
        for (f, ref) in cases {
            for num in [Numerics.inference, .differentiable] {
                var y = [Double](repeating: .nan, count: x.count)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer {
                    UnaryFunction.apply(f, x: xp.baseAddress!, y: $0.baseAddress!, count: x.count, numerics: num)
                } }
                var z = x
                z.withUnsafeMutableBufferPointer { UnaryFunction.apply(f, x: $0.baseAddress!, y: $0.baseAddress!, count: x.count, numerics: num) }
                for i in 0..<x.count {
                    let s = f.apply(x[i], num), want = ref(x[i])
                    XCTAssertEqual(y[i].bitPattern, s.bitPattern, "\(f) \(num) kernel vs scalar at \(x[i])")
                    XCTAssertEqual(z[i].bitPattern, s.bitPattern, "\(f) \(num) in place at \(x[i])")
                    if want.isFinite { XCTAssertEqual(s, want, accuracy: 1e-15 * max(1, Swift.abs(want)), "\(f) \(num) at \(x[i])") }
                }
            }
        }
        // Softmax over the middle axis of 3 × 5 × 4, against float64 loops.
        let (o, l, inner) = (3, 5, 4)
        let v = r.floats(o * l * inner, scale: 30).map(Double.init)
        var sm = [Double](repeating: 0, count: v.count)
        v.withUnsafeBufferPointer { xp in sm.withUnsafeMutableBufferPointer { TensorOps.softmax(x: xp.baseAddress!, outer: o, axisLength: l, inner: inner, y: $0.baseAddress!) } }
        var logs: [[Double]] = []
        for num in [Numerics.inference, .differentiable] {
            var ls = v
            ls.withUnsafeMutableBufferPointer { TensorOps.logSoftmax(x: $0.baseAddress!, outer: o, axisLength: l, inner: inner, y: $0.baseAddress!, numerics: num) }
            logs.append(ls)
        }
        for a in 0..<o {
            for i in 0..<inner {
                let idx = (0..<l).map { (a * l + $0) * inner + i }
                let m = idx.map { v[$0] }.max()!
                let sum = idx.map { Foundation.exp(v[$0] - m) }.reduce(0, +)
                for k in idx {
                    XCTAssertEqual(sm[k], Foundation.exp(v[k] - m) / sum, accuracy: 1e-15)
                    for ls in logs { XCTAssertEqual(ls[k], v[k] - m - Foundation.log(sum), accuracy: 1e-13 * max(1, Swift.abs(ls[k]))) }
                }
            }
        }
    }
}
