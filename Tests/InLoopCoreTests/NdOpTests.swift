import XCTest
@testable import InLoopCore

/// Family nd of the one engine (issue 10, phase 6): Resize linear and cubic (forward against a
/// transcription of the ONNX reference implementation written here in Double, reverse and tangent
/// against finite differences), Resize `sizes` carrying the batch symbol, Dropout's mask output.
final class NdOpTests: XCTestCase {
    typealias A = Engine.AttributeValue

    // MARK: - Reference (ONNX's op_resize.py, in Double, written independently of Ops/NdOps.swift)

    /// `_interpolate_1d_with_x`: the neighbours are found by sorting the edge-padded positions by
    /// distance, as the reference does.
    static func interpolate1D(_ data: [Double], scale: Double, outLength: Int, x o: Int, mode: String, cm: String,
                              a: Double, exclude: Bool) -> Double {
        let n = data.count
        let outWidth = scale * Double(n)
        let xr = Double(o)
        var x: Double
        switch cm {
        case "align_corners": x = outWidth == 1 ? 0 : xr * Double(n - 1) / (outWidth - 1)
        case "asymmetric": x = xr / scale
        case "pytorch_half_pixel": x = outWidth == 1 ? -0.5 : (xr + 0.5) / scale - 0.5
        case "half_pixel_symmetric":
            let adj = Double(outLength) / outWidth
            x = Double(n) / 2 * (1 - adj) + (xr + 0.5) / scale - 0.5
        default: x = (xr + 0.5) / scale - 0.5
        }
        let xi = x.rounded(.down)
        let ratio = x == xi ? 1 : x - xi
        var c: [Double]
        if mode == "cubic" {
            func w(_ t: Double) -> Double {   // Keys' kernel at distance t
                let t = abs(t)
                if t <= 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
                if t < 2 { return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a }
                return 0
            }
            c = [w(ratio + 1), w(ratio), w(1 - ratio), w(2 - ratio)]
        } else {
            c = [1 - ratio, ratio]
        }
        let taps = c.count, pad = (taps + 1) / 2
        let padded = (0..<(n + 2 * pad)).map { data[min(max($0 - pad, 0), n - 1)] }
        let xp = x + Double(pad)
        let nearest = (0..<padded.count).sorted { (abs(xp - Double($0)), $0) < (abs(xp - Double($1)), $1) }.prefix(taps).sorted()
        if exclude {
            for (k, i) in nearest.enumerated() where i - pad < 0 || i - pad >= n { c[k] = 0 }
            let s = c.reduce(0, +)
            c = c.map { $0 / s }
        }
        var r = 0.0
        for (k, i) in nearest.enumerated() { r += c[k] * padded[i] }
        return r
    }

    /// `_interpolate_nd`: inner axes first, then axis 0 (recursively), on a block of shape `shape`.
    static func interpolateND(_ x: [Double], shape: [Int], out: [Int], scales: [Double], mode: String, cm: String,
                              a: Double, exclude: Bool) -> [Double] {
        let outCount = out.reduce(1, *)
        var y = [Double](repeating: 0, count: outCount)
        for k in 0..<outCount {
            var idx = [Int](repeating: 0, count: out.count), rem = k
            for d in stride(from: out.count - 1, through: 0, by: -1) { idx[d] = rem % out[d]; rem /= out[d] }
            y[k] = point(x, shape, idx, out, scales, mode, cm, a, exclude)
        }
        return y
    }

    static func point(_ x: [Double], _ shape: [Int], _ idx: [Int], _ out: [Int], _ scales: [Double], _ mode: String,
                      _ cm: String, _ a: Double, _ exclude: Bool) -> Double {
        if shape.count == 1 {
            return interpolate1D(x, scale: scales[0], outLength: out[0], x: idx[0], mode: mode, cm: cm, a: a, exclude: exclude)
        }
        let inner = shape.dropFirst().reduce(1, *)
        let column = (0..<shape[0]).map { i in
            point(Array(x[(i * inner)..<((i + 1) * inner)]), Array(shape.dropFirst()), Array(idx.dropFirst()), Array(out.dropFirst()),
                  Array(scales.dropFirst()), mode, cm, a, exclude)
        }
        return interpolate1D(column, scale: scales[0], outLength: out[0], x: idx[0], mode: mode, cm: cm, a: a, exclude: exclude)
    }

    // MARK: - Resize linear and cubic

    /// A Resize (or Upsample) node on input x: `ConvPoolOpTests.resizeGraph`.
    static func resizeGraph(_ dtype: Engine.DType, opset: Int = 13, x: [Any], attrs: [String: A], sizes: [Int]? = nil,
                            op: any OpDefinition.Type = ResizeOp.self) throws -> Engine.Graph {
        try ConvPoolOpTests.resizeGraph(dtype, op, opset: opset, x: x, attrs: attrs, sizes: sizes)
    }

    struct ResizeCase {
        var rest: [Int]            // x = [N] + rest
        var out: [Int]             // y = [N] + out
        var scales: [Double]       // per axis of rest (sizes: out/in)
        var mode = "linear"
        var cm = "half_pixel"
        var a = -0.75
        var exclude = false
        var bySizes = false
        var opset = 13
        var op: any OpDefinition.Type = ResizeOp.self

        var attrs: [String: A] {
            var r: [String: A] = ["mode": .string(mode)]
            if op == ResizeOp.self && opset >= 11 {
                r["coordinate_transformation_mode"] = .string(cm)
                if mode == "cubic" { r["cubic_coeff_a"] = .float(a) }
                if exclude { r["exclude_outside"] = .int(1) }
            }
            if !bySizes { r["scales"] = .floats([1] + scales) } else { r["axes"] = .ints(Array(1...rest.count)) }   // sizes: not the batch
            return r
        }

        func graph(_ dtype: Engine.DType) throws -> Engine.Graph {
            try NdOpTests.resizeGraph(dtype, opset: opset, x: ["N"] + rest, attrs: attrs, sizes: bySizes ? out : nil, op: op)
        }
    }

    static let resizeCases: [ResizeCase] = [
        ResizeCase(rest: [2, 3, 4], out: [2, 6, 6], scales: [1, 2, 1.5]),                                   // bilinear up
        ResizeCase(rest: [1, 5, 7], out: [1, 3, 4], scales: [1, 0.6, 0.6], cm: "align_corners"),           // down
        ResizeCase(rest: [1, 4, 4], out: [1, 3, 7], scales: [1, 0.75, 1.75], cm: "pytorch_half_pixel", bySizes: true, opset: 18),
        ResizeCase(rest: [2, 3], out: [2, 7], scales: [1, 7.0 / 3], cm: "half_pixel_symmetric", bySizes: true, opset: 19),
        ResizeCase(rest: [3, 4], out: [3, 8], scales: [1, 2], cm: "asymmetric"),
        ResizeCase(rest: [1, 4, 4], out: [1, 8, 8], scales: [1, 2, 2], mode: "cubic"),                     // bicubic
        ResizeCase(rest: [1, 4, 4], out: [1, 3, 3], scales: [1, 0.8, 0.8], mode: "cubic", cm: "align_corners", a: -0.5, exclude: true),
        ResizeCase(rest: [2, 5], out: [2, 8], scales: [1, 1.8], mode: "cubic", cm: "asymmetric", exclude: true),  // 5 · float32(1.8) < 9
        ResizeCase(rest: [1, 2, 3, 2], out: [1, 4, 6, 3], scales: [1, 2, 2, 1.5]),                          // trilinear
        ResizeCase(rest: [2, 3, 3], out: [2, 6, 6], scales: [1, 2, 2], opset: 10),                         // asymmetric (legacy)
        ResizeCase(rest: [2, 3, 3], out: [2, 6, 6], scales: [1, 2, 2], opset: 9, op: UpsampleOp.self),
    ]

    func reference(_ c: ResizeCase, _ x: [Double], n: Int) -> [Double] {
        let cm = c.op == ResizeOp.self && c.opset >= 11 ? c.cm : "asymmetric"
        var scales = c.scales.map { Double(Float($0)) }   // ONNX scales are float32
        if c.bySizes { scales = zip(c.out, c.rest).map { Double($0) / Double($1) } }
        let inC = c.rest.reduce(1, *)
        var y: [Double] = []
        for b in 0..<n {
            y += Self.interpolateND(Array(x[(b * inC)..<((b + 1) * inC)]), shape: c.rest, out: c.out, scales: scales,
                                    mode: c.mode, cm: cm, a: c.a, exclude: c.exclude)
        }
        return y
    }

    func testResizeLinearCubicForward() throws {
        for (i, c) in Self.resizeCases.enumerated() {
            for dtype in [Engine.DType.float32, .float64] {
                let g = try c.graph(dtype)
                XCTAssertEqual(g[g.outputs[0]].type?.shape.dropFirst().map { $0.known ?? -1 }, c.out, "case \(i)")
                let plan = try Engine.compile(g)
                if dtype == .float64 {
                    let h = OpTest.Harness<Double>(try Engine.Executor<Double>(plan: plan, graph: g))
                    for n in [1, 3] {
                        let x = OpTest.values(n * c.rest.reduce(1, *), seed: UInt64(i + 1), as: Double.self)
                        let y = try h.forward([x], n: n)[0]
                        XCTAssertLessThan(OpTest.maxRelativeError(y, reference(c, x, n: n)), 1e-12, "case \(i) n \(n) \(c.mode) \(c.cm)")
                    }
                } else {
                    let h = OpTest.Harness<Float>(try Engine.Executor<Float>(plan: plan, graph: g))
                    for n in [1, 3] {
                        let x = OpTest.values(n * c.rest.reduce(1, *), seed: UInt64(i + 1), as: Float.self)
                        let y = try h.forward([x], n: n)[0]
                        let want = reference(c, x.map { Double($0) }, n: n)
                        XCTAssertLessThan(OpTest.maxRelativeError(y.map { Double($0) }, want), 1e-5, "case \(i) n \(n) float32")
                    }
                }
            }
        }
    }

    func testResizeLinearCubicGradients() throws {
        for i in [0, 2, 5, 6, 8] {
            try OpTest.checkGradients(try Self.resizeCases[i].graph(.float64), n: 2)
        }
    }

    /// sizes = Shape(x)[0:1] ++ [8, 15], as exporters emit for size=(8, 15): the batch symbol in sizes.
    func testResizeSizesWithTheBatchSymbol() throws {
        for mode in ["nearest", "linear"] {
            let g = Engine.Graph(dtype: .float64, opset: 13)
            try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 4, 5])))
            try g.addConstant("s0", try Engine.Tensor(shape: [1], values: [Int64(0)]))
            try g.addConstant("s1", try Engine.Tensor(shape: [1], values: [Int64(1)]))
            try g.addConstant("hw", try Engine.Tensor(shape: [2], values: [Int64(8), 15]))
            try g.addNode("shape", ShapeOp.self, [:], inputs: ["x"], outputs: ["sh"])
            try g.addNode("slice", SliceOp.self, [:], inputs: ["sh", "s0", "s1", "s0"], outputs: ["nc"])
            try g.addNode("cat", ConcatOp.self, ["axis": .int(0)], inputs: ["nc", "hw"], outputs: ["sizes"])
            try g.addNode("r", ResizeOp.self, ["mode": .string(mode), "coordinate_transformation_mode": .string("asymmetric"),
                                               "nearest_mode": .string("floor")], inputs: ["x", "", "", "sizes"], outputs: ["y"])
            try g.markOutput("y")
            try g.verify()
            try g.inferTypes()
            let h = try OpTest.Harness<Double>(g)
            for n in [1, 2] {
                let x = OpTest.values(n * 20, seed: 5, as: Double.self)
                let y = try h.forward([x], n: n)[0]
                var want: [Double] = []
                for b in 0..<(n * 4) {
                    let plane = Array(x[(b * 5)..<((b + 1) * 5)])
                    for o in 0..<15 {
                        if mode == "nearest" {
                            want.append(plane[min(Int((Double(o) / 3).rounded(.down)), 4)])
                        } else {
                            want.append(Self.interpolate1D(plane, scale: 3, outLength: 15, x: o, mode: "linear", cm: "asymmetric", a: -0.75, exclude: false))
                        }
                    }
                }
                // axis 1 resized 4 -> 8 too (nearest: floor(o / 2); linear: the 1-D rule)
                var full: [Double] = []
                for s in 0..<n {
                    for o1 in 0..<8 {
                        for o2 in 0..<15 {
                            if mode == "nearest" {
                                full.append(want[(s * 4 + o1 / 2) * 15 + o2])
                            } else {
                                let col = (0..<4).map { want[(s * 4 + $0) * 15 + o2] }
                                full.append(Self.interpolate1D(col, scale: 2, outLength: 8, x: o1, mode: "linear", cm: "asymmetric", a: -0.75, exclude: false))
                            }
                        }
                    }
                }
                XCTAssertEqual(y.count, n * 8 * 15)
                XCTAssertLessThan(OpTest.maxRelativeError(y, full), 1e-12, "\(mode) n \(n)")
            }
        }
    }

    func testResizeBadAttributesThrow() throws {
        func fails(_ attrs: [String: A], x: [Any] = ["N", 2, 3], _ kind: InLoopError.Kind, line: UInt = #line) {
            do {
                _ = try Engine.compile(try Self.resizeGraph(.float32, x: x, attrs: attrs))
                XCTFail("no error", line: line)
            } catch let e as InLoopError {
                XCTAssertEqual(e.kind, kind, e.message, line: line)
                XCTAssertFalse(e.message.isEmpty, line: line)
            } catch {
                XCTFail("\(error)", line: line)
            }
        }
        let s: A = .floats([1, 1, 2])
        fails(["mode": .string("lanczos"), "scales": s], .format)
        // antialias (NodeGapTests): a filter of 2000 taps is refused
        fails(["mode": .string("linear"), "antialias": .int(1), "scales": .floats([1, 1, 0.001])], x: ["N", 2, 30000], .unsupported)
        fails(["mode": .string("cubic"), "cubic_coeff_a": .float(.infinity), "scales": s], .format)
        fails(["mode": .string("linear"), "coordinate_transformation_mode": .string("tf_half_pixel_for_nearest"), "scales": s], .unsupported)
        fails(["mode": .string("linear"), "coordinate_transformation_mode": .string("tf_crop_and_resize"), "scales": s], .unsupported)
        fails(["mode": .string("linear"), "scales": .floats([2, 1, 1])], .unsupported)    // the batch axis resized
        fails(["mode": .string("cubic"), "scales": .floats([1, 2, 2, 2, 2, 2])], x: ["N", 2, 2, 2, 2, 2], .unsupported)  // 4^5 taps
    }

    // MARK: - Dropout's mask

    static func dropoutGraph(_ dtype: Engine.DType, training: Bool? = nil) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 13)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, ["N", 2, 3])))
        try g.addConstant("ratio", dtype == .float32 ? try Engine.Tensor(shape: [], values: [Float(0.5)])
                                                     : try Engine.Tensor(shape: [], values: [0.5]))
        var inputs = ["x", "ratio"]
        if let training {
            try g.addConstant("mode", try Engine.Tensor(shape: [], values: [training]))
            inputs.append("mode")
        }
        try g.addNode("d", DropoutOp.self, [:], inputs: inputs, outputs: ["y", "mask"])
        try g.addNode("t", TanhOp.self, [:], inputs: ["y"], outputs: ["z"])
        try g.markOutput("z")
        try g.markOutput("mask")
        try g.verify()
        try g.inferTypes()
        return g
    }

    func testDropoutMaskIsAllTrue() throws {
        for training in [nil, false] as [Bool?] {
            let g = try Self.dropoutGraph(.float64, training: training)
            XCTAssertEqual(g[g.outputs[1]].type?.dtype, .bool)
            let h = try OpTest.Harness<Double>(g)
            let hf = try OpTest.Harness<Float>(try Self.dropoutGraph(.float32, training: training))
            for n in [1, 4] {
                let x = OpTest.values(n * 6, seed: 3, as: Double.self)
                let out = try h.forward([x], n: n)
                XCTAssertEqual(out[0], x.map { Foundation.tanh($0) })
                XCTAssertEqual(out[1], [Double](repeating: 1, count: n * 6))
                let outF = try hf.forward([x.map { Float($0) }], n: n)
                XCTAssertLessThan(OpTest.maxRelativeError(outF[0].map { Double($0) }, x.map { Foundation.tanh($0) }), 1e-6)
                XCTAssertEqual(outF[1], [Float](repeating: 1, count: n * 6))
            }
        }
        // the mask has no gradient; the data output's is tanh's
        try OpTest.checkGradients(try Self.dropoutGraph(.float64), n: 2)
    }

    func testDropoutTrainingModeIsRefused() throws {
        XCTAssertThrowsError(try Self.dropoutGraph(.float32, training: true)) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .unsupported)
        }
    }

    // MARK: - 3-D pooling

    /// Direct 3-D pooling of one plane (D, H, W) in Double: the ONNX definition (window positions
    /// o·s + k·d − pb; padding never wins; the average divides by the valid count, or with
    /// count_include_pad by the positions inside the padded input).
    static func pool3D(_ x: [Double], _ inS: [Int], out: [Int], k: [Int], s: [Int], d: [Int], pb: [Int], pe: [Int],
                       max: Bool, includePad: Bool) -> [Double] {
        var y: [Double] = []
        for o0 in 0..<out[0] { for o1 in 0..<out[1] { for o2 in 0..<out[2] {
            var best = -Double.infinity, sum = 0.0, count = 0, padded = 1
            var pos = [0, 0, 0]
            for a in 0..<3 {
                var c = 0
                for t in 0..<k[a] {
                    let p = [o0, o1, o2][a] * s[a] + t * d[a] - pb[a]
                    if p >= -pb[a] && p < inS[a] + pe[a] { c += 1 }
                }
                padded *= c
            }
            for t0 in 0..<k[0] { for t1 in 0..<k[1] { for t2 in 0..<k[2] {
                pos = [o0 * s[0] + t0 * d[0] - pb[0], o1 * s[1] + t1 * d[1] - pb[1], o2 * s[2] + t2 * d[2] - pb[2]]
                guard (0..<3).allSatisfy({ pos[$0] >= 0 && pos[$0] < inS[$0] }) else { continue }
                let v = x[(pos[0] * inS[1] + pos[1]) * inS[2] + pos[2]]
                best = Swift.max(best, v); sum += v; count += 1
            } } }
            y.append(max ? best : count == 0 ? 0 : sum / Double(includePad ? padded : count))
        } } }
        return y
    }

    struct PoolCase {
        var rest: [Int]   // C, D, H, W
        var out: [Int]    // od, oh, ow
        var k: [Int]; var s = [1, 1, 1]; var d = [1, 1, 1]; var pb = [0, 0, 0]; var pe = [0, 0, 0]
        var ceil = false; var includePad = false; var autoPad: String? = nil

        func attrs(_ max: Bool) -> [String: A] {
            var r: [String: A] = ["kernel_shape": .ints(k), "strides": .ints(s), "dilations": .ints(d)]
            if let autoPad { r["auto_pad"] = .string(autoPad) } else { r["pads"] = .ints(pb + pe) }
            if ceil { r["ceil_mode"] = .int(1) }
            if includePad && !max { r["count_include_pad"] = .int(1) }
            return r
        }
    }

    static let poolCases: [PoolCase] = [
        PoolCase(rest: [2, 4, 5, 6], out: [3, 4, 5], k: [2, 2, 2]),
        PoolCase(rest: [1, 5, 6, 5], out: [3, 3, 3], k: [3, 2, 3], s: [2, 2, 2], pb: [1, 0, 1], pe: [1, 1, 1], includePad: true),
        PoolCase(rest: [1, 6, 5, 5], out: [3, 3, 3], k: [2, 2, 2], s: [2, 2, 2], d: [2, 1, 2], pb: [0, 1, 0], pe: [0, 0, 1], ceil: true),
        PoolCase(rest: [2, 3, 4, 5], out: [2, 3, 3], k: [2, 3, 3], s: [2, 2, 2], pb: [0, 1, 1], pe: [1, 1, 1], ceil: true, includePad: true),
        PoolCase(rest: [1, 5, 4, 3], out: [3, 2, 2], k: [3, 3, 2], s: [2, 2, 2], pb: [1, 0, 0], pe: [1, 1, 1], autoPad: "SAME_UPPER"),
    ]

    static func poolGraph(_ dtype: Engine.DType, _ op: any OpDefinition.Type, _ c: PoolCase) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 19)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, ["N"] + c.rest)))
        try g.addNode("p", op, c.attrs(op == MaxPoolOp.self), inputs: ["x"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    func testPool3DForward() throws {
        for (i, c) in Self.poolCases.enumerated() {
            for op in [MaxPoolOp.self, AveragePoolOp.self] as [any OpDefinition.Type] {
                let isMax = op == MaxPoolOp.self
                let g = try Self.poolGraph(.float64, op, c)
                XCTAssertEqual(g[g.outputs[0]].type?.shape.dropFirst(2).map { $0.known ?? -1 }, c.out, "case \(i)")
                let h = try OpTest.Harness<Double>(g)
                let hf = try OpTest.Harness<Float>(try Self.poolGraph(.float32, op, c))
                let plane = c.rest.dropFirst().reduce(1, *)
                for n in [1, 3] {
                    let x = OpTest.values(n * c.rest.reduce(1, *), seed: UInt64(40 + i), as: Double.self)
                    var want: [Double] = []
                    for p in 0..<(n * c.rest[0]) {
                        want += Self.pool3D(Array(x[(p * plane)..<((p + 1) * plane)]), Array(c.rest.dropFirst()), out: c.out, k: c.k, s: c.s,
                                            d: c.d, pb: c.pb, pe: c.pe, max: isMax, includePad: c.includePad)
                    }
                    let y = try h.forward([x], n: n)[0]
                    XCTAssertLessThan(OpTest.maxRelativeError(y, want), 1e-14, "case \(i) \(op.name) n \(n)")
                    let yf = try hf.forward([x.map { Float($0) }], n: n)[0]
                    XCTAssertLessThan(OpTest.maxRelativeError(yf.map { Double($0) }, want), 1e-6, "case \(i) \(op.name) n \(n) float32")
                }
            }
        }
    }

    func testPool3DGradients() throws {
        for c in [Self.poolCases[1], Self.poolCases[3]] {
            try OpTest.checkGradients(try Self.poolGraph(.float64, AveragePoolOp.self, c), n: 2)
            // distinct values (no ties in a window): max has a derivative
            let count: Int = 2 * c.rest.reduce(1, *)
            var values: [Double] = []
            for i in 0..<count { values.append(Double((i * 7919) % 1009) / 97.0 - 5.0) }
            let x: [[Double]] = [values]
            try OpTest.checkGradients(try Self.poolGraph(.float64, MaxPoolOp.self, c), n: 2, inputs: x)
        }
    }

    func testPool3DBadAttributesThrow() throws {
        var c = Self.poolCases[0]
        c.k = [2, 2]
        XCTAssertThrowsError(try Self.poolGraph(.float32, MaxPoolOp.self, c)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        c = Self.poolCases[0]
        c.s = [1, 1]
        XCTAssertThrowsError(try Self.poolGraph(.float32, AveragePoolOp.self, c)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        c = Self.poolCases[0]
        c.k = [9, 2, 2]   // larger than the input along D
        XCTAssertThrowsError(try Self.poolGraph(.float32, MaxPoolOp.self, c)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
    }

    // MARK: - 3-D convolution

    struct Conv3DCase {
        var c: Int, m: Int, group = 1
        var size: [Int]                 // D, H, W
        var k: [Int]; var s = [1, 1, 1]; var d = [1, 1, 1]; var pb = [0, 0, 0]; var pe = [0, 0, 0]
        var bias = true
        var activation: String? = nil

        var out: [Int] { (0..<3).map { (size[$0] + pb[$0] + pe[$0] - ((k[$0] - 1) * d[$0] + 1)) / s[$0] + 1 } }
        var weightShape: [Int] { [m, c / group] + k }
        var attrs: [String: A] {
            var r: [String: A] = ["strides": .ints(s), "dilations": .ints(d), "pads": .ints(pb + pe), "group": .int(group)]
            if let activation { r["activation"] = .string(activation) }
            return r
        }
    }

    static let conv3DCases: [Conv3DCase] = [
        Conv3DCase(c: 2, m: 3, size: [4, 5, 4], k: [2, 3, 2]),
        Conv3DCase(c: 2, m: 4, size: [5, 4, 6], k: [3, 3, 3], s: [2, 1, 2], pb: [1, 1, 1], pe: [1, 1, 0]),
        Conv3DCase(c: 4, m: 2, group: 2, size: [6, 4, 4], k: [2, 2, 3], s: [1, 2, 1], d: [2, 1, 1], pb: [1, 0, 1], pe: [0, 1, 1], bias: false),
        Conv3DCase(c: 1, m: 2, size: [3, 3, 3], k: [3, 1, 1], pb: [2, 0, 0], pe: [2, 0, 0]),
    ]

    /// Direct 3-D convolution of one sample in Double: y[m, o] = b[m] + Σ w[m, ci, t] · x[g·C/g + ci, o·s + t·d − pb].
    static func conv3D(_ x: [Double], _ w: [Double], _ b: [Double]?, _ cc: Conv3DCase) -> [Double] {
        let out = cc.out, cg = cc.c / cc.group, mg = cc.m / cc.group, sz = cc.size, k = cc.k
        var y: [Double] = []
        for mo in 0..<cc.m { for o0 in 0..<out[0] { for o1 in 0..<out[1] { for o2 in 0..<out[2] {
            var acc = b?[mo] ?? 0
            let gi = mo / mg
            for ci in 0..<cg { for t0 in 0..<k[0] { for t1 in 0..<k[1] { for t2 in 0..<k[2] {
                let p0 = o0 * cc.s[0] + t0 * cc.d[0] - cc.pb[0], p1 = o1 * cc.s[1] + t1 * cc.d[1] - cc.pb[1]
                let p2 = o2 * cc.s[2] + t2 * cc.d[2] - cc.pb[2]
                guard p0 >= 0, p0 < sz[0], p1 >= 0, p1 < sz[1], p2 >= 0, p2 < sz[2] else { continue }
                let xc = gi * cg + ci
                acc += w[(((mo * cg + ci) * k[0] + t0) * k[1] + t1) * k[2] + t2] * x[((xc * sz[0] + p0) * sz[1] + p1) * sz[2] + p2]
            } } } }
            y.append(acc)
        } } } }
        return y
    }

    static func conv3DGraph(_ dtype: Engine.DType, _ cc: Conv3DCase, train: Bool = false) throws -> Engine.Graph {
        try windowGraph(dtype, ConvOp.self, cc.attrs, input: [cc.c] + cc.size, weight: cc.weightShape, seed: 17,
                        bias: cc.bias ? cc.m : nil, biasSeed: 19, train: train)
    }

    /// x [N, input...] → op(x, w, b?) → y, with seeded constant weight and bias (trainable with `train`).
    static func windowGraph(_ dtype: Engine.DType, _ op: any OpDefinition.Type, _ attrs: [String: A], input: [Int],
                            weight: [Int], seed: UInt64, bias: Int?, biasSeed: UInt64, train: Bool) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, ["N"] + input)))
        func constant(_ name: String, _ shape: [Int], _ v: [Double]) throws -> Engine.ValueID {
            dtype == .float32 ? try g.addConstant(name, try Engine.Tensor(shape: shape, values: v.map { Float($0) }))
                              : try g.addConstant(name, try Engine.Tensor(shape: shape, values: v))
        }
        var inputs = ["x", "w"]
        let wid = try constant("w", weight, OpTest.values(weight.reduce(1, *), seed: seed, in: -1...1, as: Double.self))
        if train { g.parameters.append(wid) }
        if let bias {
            let bid = try constant("b", [bias], OpTest.values(bias, seed: biasSeed, in: -1...1, as: Double.self))
            inputs.append("b")
            if train { g.parameters.append(bid) }
        }
        try g.addNode("node", op, attrs, inputs: inputs, outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    func testConv3DForward() throws {
        for (i, cc) in Self.conv3DCases.enumerated() {
            let w = OpTest.values(cc.weightShape.reduce(1, *), seed: 17, in: -1...1, as: Double.self)
            let b: [Double]? = cc.bias ? OpTest.values(cc.m, seed: 19, in: -1...1, as: Double.self) : nil
            let g = try Self.conv3DGraph(.float64, cc)
            XCTAssertEqual(g[g.outputs[0]].type?.shape.dropFirst().map { $0.known ?? -1 }, [cc.m] + cc.out, "case \(i)")
            let h = try OpTest.Harness<Double>(g)
            let hf = try OpTest.Harness<Float>(try Self.conv3DGraph(.float32, cc))
            let inC = cc.c * cc.size.reduce(1, *)
            for n in [1, 3] {
                let x = OpTest.values(n * inC, seed: UInt64(60 + i), as: Double.self)
                var want: [Double] = []
                for s in 0..<n { want += Self.conv3D(Array(x[(s * inC)..<((s + 1) * inC)]), w, b, cc) }
                XCTAssertLessThan(OpTest.maxRelativeError(try h.forward([x], n: n)[0], want), 1e-12, "case \(i) n \(n)")
                let yf = try hf.forward([x.map { Float($0) }], n: n)[0]
                XCTAssertLessThan(OpTest.maxRelativeError(yf.map { Double($0) }, want), 1e-5, "case \(i) n \(n) float32")
            }
        }
        // a fused activation (inference: in the conv step; differentiable: a step after the transpose)
        var cc = Self.conv3DCases[1]
        cc.activation = "relu"
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<Double>(try Self.conv3DGraph(.float64, cc), numerics: numerics)
            let x = OpTest.values(2 * cc.c * cc.size.reduce(1, *), seed: 5, as: Double.self)
            let plain = try OpTest.Harness<Double>(try Self.conv3DGraph(.float64, Self.conv3DCases[1])).forward([x], n: 2)[0]
            XCTAssertEqual(try h.forward([x], n: 2)[0], plain.map { Swift.max($0, 0) })
        }
    }

    func testConv3DGradients() throws {
        for cc in Self.conv3DCases {
            XCTAssertLessThan(try OpTest.checkGradients(try Self.conv3DGraph(.float64, cc, train: true), n: 2), 1e-6)
        }
        try OpTest.checkGradients(try Self.conv3DGraph(.float64, Self.conv3DCases[1]), n: 2)   // constant weights
    }

    func testConv3DBadShapesThrow() throws {
        var cc = Self.conv3DCases[0]
        cc.k = [5, 3, 2]   // deeper than the input (4)
        XCTAssertThrowsError(try Self.conv3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        cc = Self.conv3DCases[2]
        cc.group = 3       // does not divide 4 channels
        XCTAssertThrowsError(try Self.conv3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        cc = Self.conv3DCases[0]
        cc.s = [1, 1]
        XCTAssertThrowsError(try Self.conv3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
    }

    // MARK: - 3-D transposed convolution

    struct ConvT3DCase {
        var c: Int, m: Int, group = 1
        var size: [Int]                 // D, H, W
        var k: [Int]; var s = [1, 1, 1]; var d = [1, 1, 1]; var pb = [0, 0, 0]; var pe = [0, 0, 0]; var op = [0, 0, 0]
        var outputShape: [Int]? = nil
        var bias = true
        var activation: String? = nil

        /// ONNX's output size; with output_shape, the pads it implies (NOTSET: total split begin-first).
        var out: [Int] { outputShape ?? (0..<3).map { s[$0] * (size[$0] - 1) + op[$0] + (k[$0] - 1) * d[$0] + 1 - pb[$0] - pe[$0] } }
        var padsBegin: [Int] {
            guard let outputShape else { return pb }
            return (0..<3).map { (s[$0] * (size[$0] - 1) + op[$0] + (k[$0] - 1) * d[$0] + 1 - outputShape[$0]) / 2 }
        }
        var weightShape: [Int] { [c, m / group] + k }
        var attrs: [String: A] {
            var r: [String: A] = ["strides": .ints(s), "dilations": .ints(d), "group": .int(group), "output_padding": .ints(op)]
            if let outputShape { r["output_shape"] = .ints(outputShape) } else { r["pads"] = .ints(pb + pe) }
            if let activation { r["activation"] = .string(activation) }
            return r
        }
    }

    static let convT3DCases: [ConvT3DCase] = [
        ConvT3DCase(c: 2, m: 3, size: [3, 4, 3], k: [2, 3, 2]),
        ConvT3DCase(c: 2, m: 4, size: [3, 2, 4], k: [3, 3, 3], s: [2, 1, 2], pb: [1, 1, 1], pe: [1, 0, 0], op: [1, 0, 1]),
        ConvT3DCase(c: 4, m: 2, group: 2, size: [4, 3, 3], k: [2, 2, 3], s: [1, 2, 1], d: [2, 1, 1], pb: [1, 0, 1], pe: [0, 1, 1], bias: false),
        ConvT3DCase(c: 1, m: 2, size: [2, 3, 2], k: [3, 1, 2], s: [3, 2, 1], outputShape: [7, 5, 3]),
    ]

    /// Direct 3-D transposed convolution of one sample in Double, as a scatter:
    /// y[g·M/g + mo, i·s + t·d − pb] += x[ci, i] · w[ci, mo, t] for ci in group g, plus b.
    static func convTranspose3D(_ x: [Double], _ w: [Double], _ b: [Double]?, _ cc: ConvT3DCase) -> [Double] {
        let out = cc.out, pb = cc.padsBegin, cg = cc.c / cc.group, mg = cc.m / cc.group, sz = cc.size, k = cc.k
        let plane = out[0] * out[1] * out[2]
        var y = [Double](repeating: 0, count: cc.m * plane)
        for ci in 0..<cc.c { for i0 in 0..<sz[0] { for i1 in 0..<sz[1] { for i2 in 0..<sz[2] {
            let xv = x[((ci * sz[0] + i0) * sz[1] + i1) * sz[2] + i2], gi = ci / cg
            for mo in 0..<mg { for t0 in 0..<k[0] { for t1 in 0..<k[1] { for t2 in 0..<k[2] {
                let o0 = i0 * cc.s[0] + t0 * cc.d[0] - pb[0], o1 = i1 * cc.s[1] + t1 * cc.d[1] - pb[1]
                let o2 = i2 * cc.s[2] + t2 * cc.d[2] - pb[2]
                guard o0 >= 0, o0 < out[0], o1 >= 0, o1 < out[1], o2 >= 0, o2 < out[2] else { continue }
                let m = gi * mg + mo
                y[m * plane + (o0 * out[1] + o1) * out[2] + o2] += xv * w[(((ci * mg + mo) * k[0] + t0) * k[1] + t1) * k[2] + t2]
            } } } }
        } } } }
        if let b { for m in 0..<cc.m { for i in 0..<plane { y[m * plane + i] += b[m] } } }
        return y
    }

    static func convT3DGraph(_ dtype: Engine.DType, _ cc: ConvT3DCase, train: Bool = false) throws -> Engine.Graph {
        try windowGraph(dtype, ConvTransposeOp.self, cc.attrs, input: [cc.c] + cc.size, weight: cc.weightShape, seed: 23,
                        bias: cc.bias ? cc.m : nil, biasSeed: 29, train: train)
    }

    func testConvTranspose3DForward() throws {
        for (i, cc) in Self.convT3DCases.enumerated() {
            let w = OpTest.values(cc.weightShape.reduce(1, *), seed: 23, in: -1...1, as: Double.self)
            let b: [Double]? = cc.bias ? OpTest.values(cc.m, seed: 29, in: -1...1, as: Double.self) : nil
            let g = try Self.convT3DGraph(.float64, cc)
            XCTAssertEqual(g[g.outputs[0]].type?.shape.dropFirst().map { $0.known ?? -1 }, [cc.m] + cc.out, "case \(i)")
            let h = try OpTest.Harness<Double>(g)
            let hf = try OpTest.Harness<Float>(try Self.convT3DGraph(.float32, cc))
            let inC = cc.c * cc.size.reduce(1, *)
            for n in [1, 3] {
                let x = OpTest.values(n * inC, seed: UInt64(80 + i), as: Double.self)
                var want: [Double] = []
                for s in 0..<n { want += Self.convTranspose3D(Array(x[(s * inC)..<((s + 1) * inC)]), w, b, cc) }
                XCTAssertLessThan(OpTest.maxRelativeError(try h.forward([x], n: n)[0], want), 1e-12, "case \(i) n \(n)")
                let yf = try hf.forward([x.map { Float($0) }], n: n)[0]
                XCTAssertLessThan(OpTest.maxRelativeError(yf.map { Double($0) }, want), 1e-5, "case \(i) n \(n) float32")
            }
        }
        // a fused activation, in both numerics
        var cc = Self.convT3DCases[1]
        cc.activation = "relu"
        for numerics in [Numerics.inference, .differentiable] {
            let h = try OpTest.Harness<Double>(try Self.convT3DGraph(.float64, cc), numerics: numerics)
            let x = OpTest.values(2 * cc.c * cc.size.reduce(1, *), seed: 5, as: Double.self)
            let plain = try OpTest.Harness<Double>(try Self.convT3DGraph(.float64, Self.convT3DCases[1])).forward([x], n: 2)[0]
            XCTAssertEqual(try h.forward([x], n: 2)[0], plain.map { Swift.max($0, 0) })
        }
    }

    func testConvTranspose3DGradients() throws {
        for cc in Self.convT3DCases {
            XCTAssertLessThan(try OpTest.checkGradients(try Self.convT3DGraph(.float64, cc, train: true), n: 2), 1e-6)
        }
        try OpTest.checkGradients(try Self.convT3DGraph(.float64, Self.convT3DCases[1]), n: 2)   // constant weights
    }

    func testConvTranspose3DBadAttributesThrow() throws {
        var cc = Self.convT3DCases[0]
        cc.pb = [4, 0, 0]; cc.pe = [4, 0, 0]   // no output depth left
        XCTAssertThrowsError(try Self.convT3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        cc = Self.convT3DCases[2]
        cc.group = 3       // does not divide 4 channels
        XCTAssertThrowsError(try Self.convT3DGraph(.float32, cc)) { XCTAssertNotNil($0 as? InLoopError) }
        cc = Self.convT3DCases[0]
        cc.s = [1, 1]
        XCTAssertThrowsError(try Self.convT3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        cc = Self.convT3DCases[1]
        cc.op = [2, 0, 0]  // output padding not below the stride
        XCTAssertThrowsError(try Self.convT3DGraph(.float32, cc)) { XCTAssertEqual(($0 as? InLoopError)?.kind, .format) }
        cc = Self.convT3DCases[0]
        cc.s = [Int(Int32.max), 1, 1]; cc.size = [Int(Int32.max), 4, 3]   // sizes whose product overflows: a status, not a trap
        XCTAssertThrowsError(try Self.convT3DGraph(.float32, cc)) { XCTAssertNotNil($0 as? InLoopError) }
    }
}
