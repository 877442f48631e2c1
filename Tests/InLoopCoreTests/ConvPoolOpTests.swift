import XCTest
@testable import InLoopCore

/// Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool on the one engine:
/// forward against naive loops written here (in Double), in Float and Double, at batch 1 and 5 through
/// one plan; reverse and tangent against float64 finite differences; bad attributes and shapes throw.
final class ConvPoolOpTests: XCTestCase {
    typealias A = Engine.AttributeValue

    /// A window along one axis: input size, kernel, stride, dilation, pads; output size.
    struct Axis {
        var size: Int, k: Int, s = 1, d = 1, pb = 0, pe = 0
        var out: Int { (size + pb + pe - ((k - 1) * d + 1)) / s + 1 }
        /// ONNX SAME_UPPER / SAME_LOWER pads.
        func same(upper: Bool) -> Axis {
            let o = (size + s - 1) / s
            let total = max(0, (o - 1) * s + (k - 1) * d + 1 - size)
            var a = self
            a.pb = upper ? total / 2 : total - total / 2
            a.pe = total - a.pb
            return a
        }
    }

    // MARK: - References (plain loops over indices, Double)

    /// Conv over (N, C, H, W) (1-D: H is the axis of size 1); weight (M, C/group, kH, kW).
    static func conv(_ x: [Double], n: Int, c: Int, h: Axis, w: Axis, weight: [Double], m: Int, group: Int,
                     bias: [Double]?) -> [Double] {
        let cg = c / group, mg = m / group
        var y = [Double](repeating: 0, count: n * m * h.out * w.out)
        for s in 0..<n { for o in 0..<m { for oh in 0..<h.out { for ow in 0..<w.out {
            var acc = bias?[o] ?? 0
            let gr = o / mg
            for ci in 0..<cg { for i in 0..<h.k { for j in 0..<w.k {
                let ih = oh * h.s + i * h.d - h.pb, iw = ow * w.s + j * w.d - w.pb
                guard ih >= 0, ih < h.size, iw >= 0, iw < w.size else { continue }
                acc += x[((s * c + gr * cg + ci) * h.size + ih) * w.size + iw] * weight[((o * cg + ci) * h.k + i) * w.k + j]
            } } }
            y[((s * m + o) * h.out + oh) * w.out + ow] = acc
        } } } }
        return y
    }

    /// ConvTranspose: weight (C, M/group, kH, kW); output size per axis given.
    static func convTranspose(_ x: [Double], n: Int, c: Int, h: Axis, w: Axis, outH: Int, outW: Int, weight: [Double],
                              m: Int, group: Int, bias: [Double]?) -> [Double] {
        let cg = c / group, mg = m / group
        var y = [Double](repeating: 0, count: n * m * outH * outW)
        for s in 0..<n { for o in 0..<m { for p in 0..<(outH * outW) { y[(s * m + o) * outH * outW + p] = bias?[o] ?? 0 } } }
        for s in 0..<n { for ci in 0..<c { for ih in 0..<h.size { for iw in 0..<w.size {
            let gr = ci / cg
            for ol in 0..<mg { for i in 0..<h.k { for j in 0..<w.k {
                let oh = ih * h.s + i * h.d - h.pb, ow = iw * w.s + j * w.d - w.pb
                guard oh >= 0, oh < outH, ow >= 0, ow < outW else { continue }
                let o = gr * mg + ol
                y[((s * m + o) * outH + oh) * outW + ow] += x[((s * c + ci) * h.size + ih) * w.size + iw] * weight[((ci * mg + ol) * h.k + i) * w.k + j]
            } } }
        } } } }
        return y
    }

    /// Max / average pooling of planes; `ceil` output sizes (with the PyTorch rule for the last window).
    static func pool(_ x: [Double], planes: Int, h: Axis, w: Axis, outH: Int, outW: Int, max takesMax: Bool,
                     includePad: Bool = false) -> [Double] {
        var y = [Double](repeating: 0, count: planes * outH * outW)
        for p in 0..<planes { for oh in 0..<outH { for ow in 0..<outW {
            var m = -Double.infinity, sum = 0.0, count = 0, padded = 0
            for i in 0..<h.k { for j in 0..<w.k {
                let ih = oh * h.s + i * h.d - h.pb, iw = ow * w.s + j * w.d - w.pb
                if ih < h.size + h.pe && iw < w.size + w.pe { padded += 1 }
                guard ih >= 0, ih < h.size, iw >= 0, iw < w.size else { continue }
                let v = x[(p * h.size + ih) * w.size + iw]
                m = Swift.max(m, v); sum += v; count += 1
            } }
            y[(p * outH + oh) * outW + ow] = takesMax ? m : sum / Double(includePad ? padded : count)
        } } }
        return y
    }

    // MARK: - Graphs

    /// One node on input x [N, c, spatial...] (and constant weight/bias when given); the weight and
    /// bias are the graph's parameters when `train`.
    static func graph(_ dtype: Engine.DType, _ op: any OpDefinition.Type, _ attrs: [String: A], x: [Int],
                      weight: (shape: [Int], values: [Double])? = nil, bias: [Double]? = nil,
                      train: Bool = false) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, ["N"] + x)))
        var inputs = ["x"]
        func constant(_ name: String, _ shape: [Int], _ v: [Double]) throws -> Engine.ValueID {
            dtype == .float32 ? try g.addConstant(name, try Engine.Tensor(shape: shape, values: v.map { Float($0) }))
                              : try g.addConstant(name, try Engine.Tensor(shape: shape, values: v))
        }
        if let weight {
            let id = try constant("w", weight.shape, weight.values)
            inputs.append("w")
            if train { g.parameters.append(id) }
        }
        if let bias {
            let id = try constant("b", [bias.count], bias)
            inputs.append("b")
            if train { g.parameters.append(id) }
        }
        try g.addNode("n", op, attrs, inputs: inputs, outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    /// Runs `g` (float32 and float64 versions from `make`) at batch 1 and 5 through one plan per type and
    /// numerics, against `reference(x, n)`.
    func check(_ make: (Engine.DType) throws -> Engine.Graph, inputPerSample: Int,
               reference: ([Double], Int) -> [Double], _ what: String, line: UInt = #line) throws {
        for numerics in [Numerics.inference, .differentiable] {
            let gf = try make(.float32), gd = try make(.float64)
            let hf = try OpTest.Harness<Float>(gf, numerics: numerics), hd = try OpTest.Harness<Double>(gd, numerics: numerics)
            for n in [1, 5, 2] {
                let x: [Double] = OpTest.values(n * inputPerSample, seed: UInt64(n + 11))
                let want = reference(x, n)
                let yd = try hd.forward([x], n: n)[0]
                let yf = try hf.forward([x.map { Float($0) }], n: n)[0]
                XCTAssertEqual(yd.count, want.count, "\(what) n=\(n)", line: line)
                XCTAssertLessThan(OpTest.maxRelativeError(yd, want), 1e-12, "\(what) Double n=\(n) \(numerics)", line: line)
                XCTAssertLessThan(OpTest.maxRelativeError(yf.map { Double($0) }, want), 2e-5, "\(what) Float n=\(n) \(numerics)", line: line)
            }
        }
    }

    static func ints(_ v: [Int]) -> A { .ints(v) }

    // MARK: - Conv

    struct ConvCase {
        var name: String
        var c: Int, m: Int, group = 1
        var h: Axis?            // nil: 1-D
        var w: Axis
        var bias = true
        var autoPad: String? = nil
        var activation: String? = nil

        var x: [Int] { h.map { [c, $0.size, w.size] } ?? [c, w.size] }
        var kernel: [Int] { h.map { [$0.k, w.k] } ?? [w.k] }
        var weightShape: [Int] { [m, c / group] + kernel }
        var attrs: [String: A] {
            var a: [String: A] = ["kernel_shape": .ints(kernel)]
            let axes = (h.map { [$0] } ?? []) + [w]
            a["strides"] = .ints(axes.map(\.s))
            a["dilations"] = .ints(axes.map(\.d))
            if let autoPad { a["auto_pad"] = .string(autoPad) } else { a["pads"] = .ints(axes.map(\.pb) + axes.map(\.pe)) }
            if group != 1 { a["group"] = .int(group) }
            if let activation { a["activation"] = .string(activation) }
            return a
        }
        /// The axes with the pads auto_pad gives.
        var resolved: (Axis, Axis) {
            var hh = h ?? Axis(size: 1, k: 1), ww = w
            switch autoPad {
            case "SAME_UPPER"?: hh = hh.same(upper: true); ww = ww.same(upper: true)
            case "SAME_LOWER"?: hh = hh.same(upper: false); ww = ww.same(upper: false)
            case "VALID"?: hh.pb = 0; hh.pe = 0; ww.pb = 0; ww.pe = 0
            default: break
            }
            return (hh, ww)
        }
        var weights: [Double] { OpTest.values(weightShape.reduce(1, *), seed: 3) }
        var biases: [Double]? { bias ? OpTest.values(m, seed: 4) : nil }
    }

    static let convCases: [ConvCase] = [
        ConvCase(name: "3x3 pad 1", c: 3, m: 4, h: Axis(size: 6, k: 3, pb: 1, pe: 1), w: Axis(size: 5, k: 3, pb: 1, pe: 1)),
        ConvCase(name: "stride, dilation, uneven pads", c: 2, m: 3, h: Axis(size: 9, k: 3, s: 2, d: 2, pb: 2, pe: 0),
                 w: Axis(size: 8, k: 2, s: 3, d: 1, pb: 0, pe: 1), bias: false),
        ConvCase(name: "group 2", c: 4, m: 6, group: 2, h: Axis(size: 5, k: 3, pb: 1, pe: 0), w: Axis(size: 5, k: 2, s: 2)),
        ConvCase(name: "depthwise x2", c: 3, m: 6, group: 3, h: Axis(size: 6, k: 3, s: 2, pb: 1, pe: 1), w: Axis(size: 7, k: 3, d: 2, pb: 2, pe: 2)),
        ConvCase(name: "pointwise", c: 5, m: 3, h: Axis(size: 4, k: 1), w: Axis(size: 6, k: 1)),
        ConvCase(name: "large output (tiles)", c: 2, m: 3, h: Axis(size: 20, k: 3, pb: 1, pe: 1), w: Axis(size: 21, k: 3, pb: 1, pe: 1)),
        ConvCase(name: "1-D", c: 3, m: 2, h: nil, w: Axis(size: 10, k: 3, s: 2, pb: 1, pe: 2)),
        ConvCase(name: "1-D depthwise", c: 4, m: 4, group: 4, h: nil, w: Axis(size: 9, k: 5, pb: 2, pe: 2)),
        ConvCase(name: "SAME_UPPER", c: 2, m: 2, h: Axis(size: 7, k: 4, s: 2), w: Axis(size: 6, k: 3, s: 3), autoPad: "SAME_UPPER"),
        ConvCase(name: "SAME_LOWER", c: 2, m: 2, h: Axis(size: 7, k: 4, s: 2), w: Axis(size: 6, k: 2, d: 2), autoPad: "SAME_LOWER"),
        ConvCase(name: "VALID", c: 2, m: 3, h: Axis(size: 6, k: 3, pb: 5, pe: 5), w: Axis(size: 5, k: 2), autoPad: "VALID"),
        ConvCase(name: "fused relu", c: 3, m: 4, h: Axis(size: 5, k: 3, pb: 1, pe: 1), w: Axis(size: 5, k: 3), activation: "relu"),
    ]

    func testConvForward() throws {
        for cc in Self.convCases {
            let (h, w) = cc.resolved
            let perSample = cc.x.reduce(1, *)
            try check({ try Self.graph($0, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights), bias: cc.biases) },
                      inputPerSample: perSample, reference: { x, n in
                          let y = Self.conv(x, n: n, c: cc.c, h: h, w: w, weight: cc.weights, m: cc.m, group: cc.group, bias: cc.biases)
                          return cc.activation == "relu" ? y.map { max($0, 0) } : y
                      }, cc.name)
            // the output shape keeps the symbolic batch
            let g = try Self.graph(.float32, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights), bias: cc.biases)
            let out = g[g.outputs[0]].type!.shape
            XCTAssertNil(out[0].known, cc.name)
            XCTAssertEqual(Array(out.dropFirst()).known, [cc.m] + (cc.h == nil ? [w.out] : [h.out, w.out]), cc.name)
        }
    }

    /// The float32 inference plan takes the fast kernel (samples batched into one GEMM): the same
    /// outputs as the old graph engine's call, and, in reproducible mode, as one sample at a time.
    func testConvReproducibleMatchesPerSample() throws {
        let cc = Self.convCases[0]
        let g = try Self.graph(.float32, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights), bias: cc.biases)
        let h = try OpTest.Harness<Float>(g)
        h.ex.reproducible = true
        let x: [Float] = OpTest.values(5 * cc.x.reduce(1, *), seed: 9)
        let all = try h.forward([x], n: 5)[0]
        let per = all.count / 5
        for s in 0..<5 {
            let one = try h.forward([Array(x[(s * 90)..<((s + 1) * 90)])], n: 1)[0]
            XCTAssertEqual(Array(all[(s * per)..<((s + 1) * per)]), one)
        }
    }

    /// The float32 inference step is the graph engine's kernel call (samples batched into one GEMM,
    /// bias and activation fused): bit for bit what `Conv.forward` gives on the same arrays.
    func testConvFloatInferenceIsTheFastKernel() throws {
        for k in [0, 3, 5, 6, 11] {
            let cc = Self.convCases[k]
            let g = try Self.graph(.float32, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights), bias: cc.biases)
            let (h, w) = cc.resolved
            let geo = try ConvGeometry(channelsIn: cc.c, channelsOut: cc.m, group: cc.group, inputSize: cc.h == nil ? [w.size] : [h.size, w.size],
                                       kernelSize: cc.kernel, strides: cc.h == nil ? [w.s] : [h.s, w.s],
                                       dilations: cc.h == nil ? [w.d] : [h.d, w.d], padsBegin: cc.h == nil ? [w.pb] : [h.pb, w.pb],
                                       padsEnd: cc.h == nil ? [w.pe] : [h.pe, w.pe])
            let x: [Float] = OpTest.values(5 * cc.x.reduce(1, *), seed: 21)
            let got = try OpTest.run(g, [x], n: 5)[0]
            let wts = cc.weights.map { Float($0) }, b = cc.biases?.map { Float($0) }
            var want = [Float](repeating: .nan, count: got.count)
            var work = [Float](repeating: 0, count: max(1, Conv.workspaceCount(geometry: geo, batch: 5)))
            let act: Activation = cc.activation == "relu" ? .relu : .identity
            x.withUnsafeBufferPointer { xp in wts.withUnsafeBufferPointer { wp in want.withUnsafeMutableBufferPointer { yp in
                work.withUnsafeMutableBufferPointer { ws in
                    if let b {
                        b.withUnsafeBufferPointer { bp in
                            Conv.forward(x: xp.baseAddress!, batch: 5, geometry: geo, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                         activation: act, y: yp.baseAddress!, workspace: ws.baseAddress!)
                        }
                    } else {
                        Conv.forward(x: xp.baseAddress!, batch: 5, geometry: geo, weight: wp.baseAddress!, bias: nil,
                                     activation: act, y: yp.baseAddress!, workspace: ws.baseAddress!)
                    }
                }
            } } }
            XCTAssertEqual(got, want, cc.name)
        }
    }

    /// A weight given as a graph input (valid ONNX): inference plans take it; differentiable plans
    /// refuse it with an error (its tangent and gradient are not wired yet).
    func testWeightAsInput() throws {
        let cc = Self.convCases[2]
        let g = Engine.Graph(dtype: .float64)
        try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N"] + cc.x)))
        try g.addInput("w", Engine.TensorType(.float64, cc.weightShape.map { Engine.SymInt($0) }))
        try g.addNode("n", ConvOp.self, cc.attrs, inputs: ["x", "w"], outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        let x: [Double] = OpTest.values(3 * cc.x.reduce(1, *), seed: 8)
        let (h, w) = cc.resolved
        let want = Self.conv(x, n: 3, c: cc.c, h: h, w: w, weight: cc.weights, m: cc.m, group: cc.group, bias: nil)
        XCTAssertLessThan(OpTest.maxRelativeError(try OpTest.run(g, [x, cc.weights], n: 3)[0], want), 1e-12)
        XCTAssertThrowsError(try Engine.compile(g, numerics: .differentiable)) {
            XCTAssertEqual(($0 as? InLoopError)?.kind, .unsupported)
        }
    }

    func testConvGradients() throws {
        for k in [0, 1, 2, 3, 6, 7] {
            var cc = Self.convCases[k]
            if k == 0 { cc.activation = "tanh" }
            let g = try Self.graph(.float64, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights),
                                   bias: cc.biases, train: true)
            XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6, cc.name)
        }
        // constant weights: input gradients and tangent only
        let cc = Self.convCases[2]
        let g = try Self.graph(.float64, ConvOp.self, cc.attrs, x: cc.x, weight: (cc.weightShape, cc.weights), bias: cc.biases)
        try OpTest.checkGradients(g, n: 3)
    }

    // MARK: - ConvTranspose

    struct TransposeCase {
        var name: String
        var c: Int, m: Int, group = 1
        var h: Axis?
        var w: Axis
        var outputPadding: [Int]? = nil
        var outputShape: [Int]? = nil
        var autoPad: String? = nil
        var bias = true

        var x: [Int] { h.map { [c, $0.size, w.size] } ?? [c, w.size] }
        var kernel: [Int] { h.map { [$0.k, w.k] } ?? [w.k] }
        var weightShape: [Int] { [c, m / group] + kernel }
        var axes: [Axis] { (h.map { [$0] } ?? []) + [w] }
        var attrs: [String: A] {
            var a: [String: A] = ["strides": .ints(axes.map(\.s)), "dilations": .ints(axes.map(\.d))]
            if let autoPad { a["auto_pad"] = .string(autoPad) } else if outputShape == nil {
                a["pads"] = .ints(axes.map(\.pb) + axes.map(\.pe))
            }
            if group != 1 { a["group"] = .int(group) }
            if let outputPadding { a["output_padding"] = .ints(outputPadding) }
            if let outputShape { a["output_shape"] = .ints(outputShape) }
            return a
        }
        /// Output sizes and the pads the op must use (ONNX's definition, written out here).
        var resolved: (Axis, Axis, Int, Int) {
            var list = axes
            let op = outputPadding ?? [Int](repeating: 0, count: list.count)
            var outs: [Int] = []
            for i in list.indices {
                let a = list[i]
                let full = a.s * (a.size - 1) + op[i] + (a.k - 1) * a.d + 1
                if let target = outputShape?[i] ?? (autoPad != nil ? a.size * a.s : nil) {
                    let total = full - target
                    list[i].pb = autoPad == "SAME_LOWER" ? total - total / 2 : total / 2
                    list[i].pe = total - list[i].pb
                    outs.append(target)
                } else {
                    outs.append(full - a.pb - a.pe)
                }
            }
            if list.count == 1 { return (Axis(size: 1, k: 1), list[0], 1, outs[0]) }
            return (list[0], list[1], outs[0], outs[1])
        }
        var weights: [Double] { OpTest.values(weightShape.reduce(1, *), seed: 5) }
        var biases: [Double]? { bias ? OpTest.values(m, seed: 6) : nil }
    }

    static let transposeCases: [TransposeCase] = [
        TransposeCase(name: "stride 2 pads", c: 3, m: 2, h: Axis(size: 4, k: 3, s: 2, pb: 1, pe: 1), w: Axis(size: 3, k: 3, s: 2, pb: 1, pe: 0)),
        TransposeCase(name: "output_padding, dilation", c: 2, m: 3, h: Axis(size: 3, k: 2, s: 3, d: 2), w: Axis(size: 4, k: 3, s: 2, pb: 1, pe: 1),
                      outputPadding: [2, 1], bias: false),
        TransposeCase(name: "group 2", c: 4, m: 6, group: 2, h: Axis(size: 3, k: 2, s: 2), w: Axis(size: 3, k: 3, pb: 1, pe: 1)),
        TransposeCase(name: "1-D", c: 2, m: 3, h: nil, w: Axis(size: 5, k: 4, s: 2, pb: 1, pe: 2)),
        TransposeCase(name: "output_shape", c: 2, m: 2, h: Axis(size: 3, k: 3, s: 2), w: Axis(size: 4, k: 3, s: 2), outputShape: [6, 8]),
        TransposeCase(name: "SAME_UPPER", c: 2, m: 2, h: Axis(size: 3, k: 4, s: 2), w: Axis(size: 4, k: 3, s: 2), autoPad: "SAME_UPPER"),
        TransposeCase(name: "SAME_LOWER", c: 2, m: 2, h: Axis(size: 3, k: 3, s: 2), w: Axis(size: 2, k: 4, s: 3), autoPad: "SAME_LOWER"),
    ]

    func testConvTransposeForward() throws {
        for tc in Self.transposeCases {
            let (h, w, oh, ow) = tc.resolved
            try check({ try Self.graph($0, ConvTransposeOp.self, tc.attrs, x: tc.x, weight: (tc.weightShape, tc.weights), bias: tc.biases) },
                      inputPerSample: tc.x.reduce(1, *), reference: { x, n in
                          Self.convTranspose(x, n: n, c: tc.c, h: h, w: w, outH: oh, outW: ow, weight: tc.weights, m: tc.m,
                                             group: tc.group, bias: tc.biases)
                      }, tc.name)
        }
    }

    func testConvTransposeGradients() throws {
        for k in [0, 1, 2, 3] {
            let tc = Self.transposeCases[k]
            let g = try Self.graph(.float64, ConvTransposeOp.self, tc.attrs, x: tc.x, weight: (tc.weightShape, tc.weights),
                                   bias: tc.biases, train: true)
            XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6, tc.name)
        }
    }

    // MARK: - Pooling

    struct PoolCase {
        var name: String
        var c: Int
        var h: Axis?
        var w: Axis
        var ceil = false
        var includePad = false
        var autoPad: String? = nil

        var x: [Int] { h.map { [c, $0.size, w.size] } ?? [c, w.size] }
        var axes: [Axis] { (h.map { [$0] } ?? []) + [w] }
        var attrs: [String: A] {
            var a: [String: A] = ["kernel_shape": .ints(axes.map(\.k)), "strides": .ints(axes.map(\.s)), "dilations": .ints(axes.map(\.d))]
            if let autoPad { a["auto_pad"] = .string(autoPad) } else { a["pads"] = .ints(axes.map(\.pb) + axes.map(\.pe)) }
            if ceil { a["ceil_mode"] = .int(1) }
            if includePad { a["count_include_pad"] = .int(1) }
            return a
        }
        /// Axes with auto pads, and output sizes (ceil mode: a last window starting in the end padding dropped).
        var resolved: (Axis, Axis, Int, Int) {
            func out(_ a: Axis) -> Int {
                let span = (a.k - 1) * a.d + 1, padded = a.size + a.pb + a.pe
                if !ceil { return (padded - span) / a.s + 1 }
                var o = (padded - span + a.s - 1) / a.s + 1
                if (o - 1) * a.s >= a.size + a.pb { o -= 1 }
                return o
            }
            var list = axes
            if let autoPad { list = list.map { $0.same(upper: autoPad == "SAME_UPPER") } }
            let hh = list.count == 2 ? list[0] : Axis(size: 1, k: 1)
            return (hh, list.last!, list.count == 2 ? out(hh) : 1, out(list.last!))
        }
    }

    static let poolCases: [PoolCase] = [
        PoolCase(name: "2x2 stride 2", c: 3, h: Axis(size: 6, k: 2, s: 2), w: Axis(size: 8, k: 2, s: 2)),
        PoolCase(name: "3x3 stride 2 pad 1", c: 2, h: Axis(size: 7, k: 3, s: 2, pb: 1, pe: 1), w: Axis(size: 6, k: 3, s: 2, pb: 1, pe: 1)),
        PoolCase(name: "dilation, uneven pads", c: 2, h: Axis(size: 7, k: 2, s: 1, d: 2, pb: 1, pe: 0), w: Axis(size: 5, k: 3, s: 2, d: 2, pb: 0, pe: 2)),
        PoolCase(name: "ceil_mode", c: 2, h: Axis(size: 7, k: 3, s: 2), w: Axis(size: 6, k: 2, s: 3, pb: 1, pe: 1), ceil: true),
        PoolCase(name: "ceil_mode, count_include_pad", c: 2, h: Axis(size: 5, k: 2, s: 2, pb: 1, pe: 1), w: Axis(size: 6, k: 3, s: 2, pb: 1, pe: 1),
                 ceil: true, includePad: true),
        PoolCase(name: "1-D", c: 3, h: nil, w: Axis(size: 11, k: 3, s: 2, pb: 1, pe: 1)),
        PoolCase(name: "SAME_UPPER", c: 2, h: Axis(size: 5, k: 3, s: 2), w: Axis(size: 6, k: 2, s: 2), autoPad: "SAME_UPPER"),
        PoolCase(name: "SAME_LOWER", c: 2, h: Axis(size: 5, k: 2, s: 1), w: Axis(size: 4, k: 3, s: 1), autoPad: "SAME_LOWER", ),
    ]

    func testPoolForward() throws {
        for pc in Self.poolCases {
            let (h, w, oh, ow) = pc.resolved
            for (op, takesMax) in [(MaxPoolOp.self as any OpDefinition.Type, true), (AveragePoolOp.self, false)] {
                var attrs = pc.attrs
                if takesMax { attrs["count_include_pad"] = nil }
                try check({ try Self.graph($0, op, attrs, x: pc.x) }, inputPerSample: pc.x.reduce(1, *), reference: { x, n in
                    Self.pool(x, planes: n * pc.c, h: h, w: w, outH: oh, outW: ow, max: takesMax, includePad: pc.includePad)
                }, "\(op.name) \(pc.name)")
            }
        }
    }

    func testPoolGradients() throws {
        for k in [0, 1, 2, 3, 4, 5] {
            let pc = Self.poolCases[k]
            var attrs = pc.attrs
            attrs["count_include_pad"] = nil
            XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, MaxPoolOp.self, attrs, x: pc.x), n: 2), 1e-6, "MaxPool \(pc.name)")
            XCTAssertLessThan(try OpTest.checkGradients(try Self.graph(.float64, AveragePoolOp.self, pc.attrs, x: pc.x), n: 2), 1e-6,
                              "AveragePool \(pc.name)")
        }
    }

    /// Max pooling routes the gradient to the first maximum of a window (ties), and its tangent reads it.
    func testMaxPoolTiesGoToTheFirst() throws {
        let g = try Self.graph(.float64, MaxPoolOp.self, ["kernel_shape": .ints([2, 2]), "strides": .ints([1, 1])], x: [1, 3, 3])
        let h = OpTest.Harness<Double>(try Engine.Executor<Double>(plan: try Engine.compile(g, numerics: .differentiable), graph: g))
        let x: [Double] = [1, 1, 0, 1, 1, 0, 0, 0, 0]
        XCTAssertEqual(try h.forward([x], n: 1)[0], [1, 1, 1, 1])
        let gx = try h.backward(seeds: [[1, 10, 100, 1000]], n: 1).inputs[0]
        // windows (0,0), (0,1), (1,0), (1,1): first maxima at x[0], x[1], x[3], x[4]
        XCTAssertEqual(gx, [1, 10, 0, 100, 1000, 0, 0, 0, 0])
        XCTAssertEqual(try h.tangent([[1, 2, 3, 4, 5, 6, 7, 8, 9]], n: 1)[0], [1, 2, 4, 5])
    }

    func testGlobalPools() throws {
        for x in [[3, 4, 5], [2, 7], [2, 3, 2, 2]] {   // 2-D, 1-D and 3-D spatial axes
            let spatial = x.dropFirst().reduce(1, *)
            for (op, takesMax) in [(GlobalMaxPoolOp.self as any OpDefinition.Type, true), (GlobalAveragePoolOp.self, false)] {
                try check({ try Self.graph($0, op, [:], x: x) }, inputPerSample: x.reduce(1, *), reference: { v, n in
                    (0..<(n * x[0])).map { p in
                        let s = v[(p * spatial)..<((p + 1) * spatial)]
                        return takesMax ? s.max()! : s.reduce(0, +) / Double(spatial)
                    }
                }, "\(op.name) \(x)")
                let g = try Self.graph(.float64, op, [:], x: x)
                XCTAssertEqual(Array(g[g.outputs[0]].type!.shape.dropFirst()).known, [x[0]] + [Int](repeating: 1, count: x.count - 1))
                XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6, "\(op.name) \(x)")
            }
        }
    }

    /// A network of the family: conv (relu) → max pool → conv transpose → global average pool, trained
    /// weights; the gradient check covers how the steps' rules chain.
    func testChainGradients() throws {
        let g = Engine.Graph(dtype: .float64)
        try g.addInput("x", Engine.TensorType(.float64, OpTest.shape(g, ["N", 2, 6, 6])))
        let w1 = try g.addConstant("w1", try Engine.Tensor(shape: [3, 2, 3, 3], values: OpTest.values(54, seed: 1, as: Double.self)))
        let b1 = try g.addConstant("b1", try Engine.Tensor(shape: [3], values: OpTest.values(3, seed: 2, as: Double.self)))
        let w2 = try g.addConstant("w2", try Engine.Tensor(shape: [3, 2, 2, 2], values: OpTest.values(24, seed: 3, as: Double.self)))
        try g.addNode("c1", ConvOp.self, ["pads": .ints([1, 1, 1, 1]), "activation": .string("tanh")], inputs: ["x", "w1", "b1"], outputs: ["h1"])
        try g.addNode("p1", MaxPoolOp.self, ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])], inputs: ["h1"], outputs: ["h2"])
        try g.addNode("t1", ConvTransposeOp.self, ["strides": .ints([2, 2])], inputs: ["h2", "w2"], outputs: ["h3"])
        try g.addNode("p2", GlobalAveragePoolOp.self, inputs: ["h3"], outputs: ["y"])
        try g.markOutput("y")
        try g.markOutput("h3")
        g.parameters = [w1, b1, w2]
        try g.verify()
        try g.inferTypes()
        XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6)
    }

    // MARK: - Resize (nearest)

    /// ONNX's nearest index for output o along an axis (the operator's definition, in float32 as
    /// onnxruntime computes it).
    static func nearest(_ o: Int, _ n: Int, _ m: Int, scale: Float, _ cm: String, _ nm: String) -> Int {
        let xr = Float(o)
        var xo: Float
        switch cm {
        case "asymmetric": xo = xr / scale
        case "align_corners": xo = m == 1 ? 0 : xr * Float(n - 1) / Float(m - 1)
        case "pytorch_half_pixel": xo = m > 1 ? (xr + 0.5) / scale - 0.5 : 0
        case "tf_half_pixel_for_nearest": xo = (xr + 0.5) / scale
        default: xo = (xr + 0.5) / scale - 0.5
        }
        switch nm {
        case "floor": xo = xo.rounded(.down)
        case "ceil": xo = xo.rounded(.up)
        case "round_prefer_ceil": xo = xo - xo.rounded(.down) == 0.5 ? xo.rounded(.up) : xo.rounded()
        default: xo = xo - xo.rounded(.down) == 0.5 ? xo.rounded(.down) : xo.rounded()
        }
        return Swift.min(Swift.max(Int(xo), 0), n - 1)
    }

    /// Resize of x [N, rest...] to [N, out...] (the batch axis not resized).
    static func resize(_ x: [Double], n: Int, rest: [Int], out: [Int], scales: [Float], _ cm: String, _ nm: String) -> [Double] {
        let inCount = rest.reduce(1, *), outCount = out.reduce(1, *)
        var y = [Double](repeating: 0, count: n * outCount)
        for b in 0..<n { for k in 0..<outCount {
            var rem = k, src = 0, st = 1
            var idx = [Int](repeating: 0, count: out.count)
            for d in stride(from: out.count - 1, through: 0, by: -1) { idx[d] = rem % out[d]; rem /= out[d] }
            for d in stride(from: out.count - 1, through: 0, by: -1) {
                src += nearest(idx[d], rest[d], out[d], scale: scales[d], cm, nm) * st
                st *= rest[d]
            }
            y[b * outCount + k] = x[b * inCount + src]
        } }
        return y
    }

    static func resizeGraph(_ dtype: Engine.DType, _ op: any OpDefinition.Type, opset: Int, x: [Any], attrs: [String: A],
                            sizes: [Int]? = nil) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: opset)
        try g.addInput("x", Engine.TensorType(dtype, OpTest.shape(g, x)))
        var inputs = ["x"]
        if let sizes {
            try g.addConstant("sizes", try Engine.Tensor(shape: [sizes.count], values: sizes.map { Int64($0) }))
            inputs += ["", "", "sizes"]
        }
        try g.addNode("r", op, attrs, inputs: inputs, outputs: ["y"])
        try g.markOutput("y")
        try g.verify()
        try g.inferTypes()
        return g
    }

    func testResizeNearest() throws {
        struct Case { var op: any OpDefinition.Type = ResizeOp.self; var opset = 13; var rest: [Int]; var out: [Int]; var scales: [Float]
                      var attrs: [String: A]; var sizes: [Int]? = nil; var cm = "half_pixel"; var nm = "round_prefer_floor" }
        let cases: [Case] = [
            Case(rest: [2, 3, 4], out: [2, 6, 8], scales: [1, 2, 2], attrs: ["scales": .floats([1, 1, 2, 2])]),
            Case(rest: [2, 6, 5], out: [2, 3, 2], scales: [1, 0.5, 0.5], attrs: ["scales": .floats([1, 1, 0.5, 0.5]),
                 "coordinate_transformation_mode": .string("align_corners"), "nearest_mode": .string("round_prefer_ceil")],
                 cm: "align_corners", nm: "round_prefer_ceil"),
            Case(opset: 18, rest: [2, 3, 4], out: [2, 5, 3], scales: [1, 5.0 / 3, 3.0 / 4],
                 attrs: ["axes": .ints([2, 3]), "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")],
                 sizes: [5, 3], cm: "asymmetric", nm: "floor"),
            Case(rest: [3, 4], out: [3, 7], scales: [1, 1.75], attrs: ["coordinate_transformation_mode": .string("pytorch_half_pixel"),
                 "nearest_mode": .string("ceil"), "scales": .floats([1, 1, 1.75])], cm: "pytorch_half_pixel", nm: "ceil"),
            Case(op: UpsampleOp.self, opset: 7, rest: [2, 5], out: [2, 15], scales: [1, 3], attrs: ["scales": .floats([1, 1, 3])],
                 cm: "asymmetric", nm: "floor"),
            Case(opset: 10, rest: [1, 3, 3], out: [1, 6, 4], scales: [1, 2, 1.5], attrs: ["scales": .floats([1, 1, 2, 1.5])],
                 cm: "asymmetric", nm: "floor"),
        ]
        for (k, c) in cases.enumerated() {
            let attrs = c.attrs, sizes = c.sizes
            let perSample = c.rest.reduce(1, *)
            try check({ try Self.resizeGraph($0, c.op, opset: c.opset, x: ["N"] + c.rest, attrs: attrs, sizes: sizes) },
                      inputPerSample: perSample, reference: { x, n in
                          Self.resize(x, n: n, rest: c.rest, out: c.out, scales: c.scales, c.cm, c.nm)
                      }, "resize case \(k)")
            let g = try Self.resizeGraph(.float64, c.op, opset: c.opset, x: ["N"] + c.rest, attrs: attrs, sizes: sizes)
            XCTAssertEqual(Array(g[g.outputs[0]].type!.shape.dropFirst()).known, c.out, "resize case \(k)")
            XCTAssertLessThan(try OpTest.checkGradients(g, n: 2), 1e-6, "resize case \(k)")
        }
        // an input without a batch axis, resized along both axes
        let g = try Self.resizeGraph(.float64, ResizeOp.self, opset: 13, x: [3, 2], attrs: ["scales": .floats([2, 2])])
        let x: [Double] = [1, 2, 3, 4, 5, 6]
        XCTAssertEqual(try OpTest.run(g, [x], n: 4)[0], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4, 5, 5, 6, 6, 5, 5, 6, 6])
    }

    // MARK: - Errors

    func testBadAttributesAndShapesThrow() throws {
        func fails(_ op: any OpDefinition.Type, _ attrs: [String: A], x: [Any], w: [Int]? = nil, _ kind: InLoopError.Kind,
                   line: UInt = #line) {
            do {
                let g = Engine.Graph(dtype: .float32)
                try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, x)))
                var inputs = ["x"]
                if let w {
                    try g.addConstant("w", try Engine.Tensor(shape: w, values: [Float](repeating: 1, count: w.reduce(1, *))))
                    inputs.append("w")
                }
                try g.addNode("n", op, attrs, inputs: inputs, outputs: ["y"])
                try g.markOutput("y")
                try g.verify()
                try g.inferTypes()
                _ = try Engine.compile(g)
                XCTFail("no error", line: line)
            } catch {
                XCTAssertEqual(error.kind, kind, error.message, line: line)
            }
        }
        fails(ConvOp.self, ["strides": .ints([0, 1])], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["pads": .ints([-1, 0, 0, 0])], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["pads": .ints([1, 1])], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["auto_pad": .string("SAME")], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["group": .int(3)], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["group": .int(0)], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, ["kernel_shape": .ints([2, 2])], x: ["N", 2, 5, 5], w: [2, 2, 3, 3], .format)
        fails(ConvOp.self, [:], x: ["N", 2, 2, 2], w: [2, 2, 3, 3], .format)                 // kernel larger than the input
        fails(ConvOp.self, [:], x: ["N", 3, 5, 5], w: [2, 2, 3, 3], .format)                 // channels
        fails(ConvOp.self, ["strides": .ints([Int.max])], x: ["N", 2, 5], w: [2, 2, 3], .format)
        fails(ConvOp.self, [:], x: ["N", 2, 4, 4, 4, 4], w: [2, 2, 3, 3, 3, 3], .unsupported)   // 4-D (3-D: NdOpTests)
        fails(ConvOp.self, [:], x: ["N", "C", 5, 5], w: [2, 2, 3, 3], .unsupported)           // symbolic channels
        fails(ConvOp.self, [:], x: ["N", 2], w: [2, 2], .format)
        fails(ConvTransposeOp.self, ["strides": .ints([2]), "output_padding": .ints([2])], x: ["N", 2, 5], w: [2, 2, 3], .format)
        fails(ConvTransposeOp.self, ["output_shape": .ints([9])], x: ["N", 2, 5], w: [2, 2, 3], .unsupported)
        fails(ConvTransposeOp.self, ["pads": .ints([5, 5])], x: ["N", 2, 2], w: [2, 2, 3], .format)
        fails(MaxPoolOp.self, [:], x: ["N", 2, 5, 5], .format)                                  // kernel_shape required
        fails(MaxPoolOp.self, ["kernel_shape": .ints([2])], x: ["N", 2, 5, 5], .format)
        fails(MaxPoolOp.self, ["kernel_shape": .ints([6, 6])], x: ["N", 2, 5, 5], .format)
        fails(AveragePoolOp.self, ["kernel_shape": .ints([2, 2]), "strides": .ints([-1, 1])], x: ["N", 2, 5, 5], .format)
        fails(AveragePoolOp.self, ["kernel_shape": .ints([2, 2, 2, 2])], x: ["N", 2, 5, 5, 5, 5], .unsupported)   // 4-D (3-D: NdOpTests)
        fails(GlobalAveragePoolOp.self, [:], x: ["N", 2], .format)
        fails(GlobalMaxPoolOp.self, [:], x: ["N", 2, 0], .format)
        fails(ResizeOp.self, ["mode": .string("lanczos"), "scales": .floats([1, 1, 2])], x: ["N", 2, 3], .format)
        fails(ResizeOp.self, ["scales": .floats([2, 1, 1])], x: ["N", 2, 3], .unsupported)       // the batch axis resized
        fails(ResizeOp.self, ["scales": .floats([1, 2])], x: ["N", 2, 3], .format)
        fails(ResizeOp.self, ["scales": .floats([1, 1, -2])], x: ["N", 2, 3], .format)
        fails(ResizeOp.self, [:], x: ["N", 2, 3], .format)
        fails(ResizeOp.self, ["coordinate_transformation_mode": .string("tf_crop_and_resize"), "scales": .floats([1, 1, 2])],
              x: ["N", 2, 3], .unsupported)
    }
}
