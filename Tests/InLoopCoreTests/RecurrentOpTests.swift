import XCTest
@testable import InLoopCore

/// The recurrent family of the one engine (ONNX RNN, GRU, LSTM): forward against the ONNX equations
/// written here as plain loops (Double), in Float and Double, at two batch sizes through one plan,
/// with the batch on axis 1 (layout 0) or axis 0 (layout 1); reverse (backprop through time) and
/// tangent against float64 finite differences, with W, R, B (and P) trainable; bad attributes and
/// shapes as thrown errors.
final class RecurrentOpTests: XCTestCase {
    /// One test configuration.
    struct Config {
        var cell: RecurrentCell
        var direction = "forward"
        var layout = 0
        var seq = 3, input = 2, hidden = 2
        var bias = true
        var initialH = false
        var initialC = false
        var peepholes = false
        var clip: Double? = nil
        var inputForget = false
        var linearBeforeReset = false
        var activations: [String]? = nil
        var alphas: [Double]? = nil
        var betas: [Double]? = nil
        var outputs = 0          // 0: all the cell has

        var dirs: Int { direction == "bidirectional" ? 2 : 1 }
        var gates: Int { cell.gates }
        var outputCount: Int { outputs > 0 ? outputs : (cell == .lstm ? 3 : 2) }
        var op: any OpDefinition.Type {
            switch cell {
            case .rnn: return RNNOp.self
            case .gru: return GRUOp.self
            case .lstm: return LSTMOp.self
            }
        }

        var attributes: [String: Engine.AttributeValue] {
            var a: [String: Engine.AttributeValue] = ["hidden_size": .int(hidden), "direction": .string(direction)]
            if layout != 0 { a["layout"] = .int(layout) }
            if let clip { a["clip"] = .float(clip) }
            if inputForget { a["input_forget"] = .int(1) }
            if linearBeforeReset { a["linear_before_reset"] = .int(1) }
            if let activations { a["activations"] = .strings(activations) }
            if let alphas { a["activation_alpha"] = .floats(alphas) }
            if let betas { a["activation_beta"] = .floats(betas) }
            return a
        }

        /// Constant weights (values in ±0.6, deterministic).
        var w: [Double] { OpTest.values(dirs * gates * hidden * input, seed: 3, in: -0.6...0.6) }
        var r: [Double] { OpTest.values(dirs * gates * hidden * hidden, seed: 4, in: -0.6...0.6) }
        var b: [Double] { OpTest.values(dirs * 2 * gates * hidden, seed: 5, in: -0.5...0.5) }
        var p: [Double] { OpTest.values(dirs * 3 * hidden, seed: 6, in: -0.5...0.5) }

        func xDims() -> [Any] { layout == 0 ? [seq, "N", input] : ["N", seq, input] }
        func stateDims() -> [Any] { layout == 0 ? [dirs, "N", hidden] : ["N", dirs, hidden] }
    }

    /// The graph of one node: X (and initial_h, initial_c when asked) are graph inputs, W, R, B, P
    /// constants (parameters when `trainable`).
    static func graph(_ c: Config, dtype: Engine.DType, trainable: Bool = false) throws -> Engine.Graph {
        let g = Engine.Graph(dtype: dtype, opset: 17)
        try g.addInput("X", Engine.TensorType(dtype, OpTest.shape(g, c.xDims())))
        func constant(_ name: String, _ shape: [Int], _ values: [Double]) throws {
            let t = dtype == .float32 ? try Engine.Tensor(shape: shape, values: values.map { Float($0) })
                                      : try Engine.Tensor(shape: shape, values: values)
            let id = try g.addConstant(name, t)
            if trainable { g.parameters.append(id) }
        }
        try constant("W", [c.dirs, c.gates * c.hidden, c.input], c.w)
        try constant("R", [c.dirs, c.gates * c.hidden, c.hidden], c.r)
        var inputs = ["X", "W", "R", c.bias ? "B" : "", ""]
        if c.bias { try constant("B", [c.dirs, 2 * c.gates * c.hidden], c.b) }
        if c.initialH {
            try g.addInput("h0", Engine.TensorType(dtype, OpTest.shape(g, c.stateDims())))
            inputs.append("h0")
        }
        if c.initialC || c.peepholes {
            if !c.initialH { inputs.append("") }
            if c.initialC { try g.addInput("c0", Engine.TensorType(dtype, OpTest.shape(g, c.stateDims()))) }
            inputs.append(c.initialC ? "c0" : "")
        }
        if c.peepholes {
            try constant("P", [c.dirs, 3 * c.hidden], c.p)
            inputs.append("P")
        }
        while inputs.last == "" { inputs.removeLast() }
        let outs = ["Y", "Y_h", "Y_c"].prefix(c.outputCount)
        try g.addNode("rnn", c.op, c.attributes, inputs: inputs, outputs: Array(outs))
        for o in outs { try g.markOutput(o) }
        try g.verify()
        try g.inferTypes()
        return g
    }

    // MARK: - Reference (the ONNX equations, plain loops in Double)

    static func activation(_ name: String, alpha: Double?, beta: Double?) -> (Double) -> Double {
        switch name.lowercased() {
        case "sigmoid": return { 1 / (1 + exp(-$0)) }
        case "tanh": return { tanh($0) }
        case "relu": return { max($0, 0) }
        case "leakyrelu": let a = alpha ?? Double(Float(0.01)); return { $0 >= 0 ? $0 : a * $0 }
        case "hardsigmoid": let a = alpha ?? Double(Float(0.2)), b = beta ?? 0.5; return { max(0, min(1, a * $0 + b)) }
        case "softsign": return { $0 / (1 + abs($0)) }
        default: return { _ in .nan }
        }
    }

    /// Y, Y_h, Y_c for inputs [X, h0?, c0?] at batch n.
    static func reference(_ c: Config, _ inputs: [[Double]], n: Int) -> [[Double]] {
        let S = c.seq, B = n, I = c.input, H = c.hidden, G = c.gates, D = c.dirs
        let x = inputs[0]
        let h0 = c.initialH ? inputs[1] : nil
        let c0 = c.initialC ? inputs[c.initialH ? 2 : 1] : nil
        let w = c.w, r = c.r, b = c.bias ? c.b : [Double](repeating: 0, count: D * 2 * G * H), p = c.peepholes ? c.p : [Double](repeating: 0, count: D * 3 * H)
        let k = c.cell.activationCount
        var names = c.activations ?? c.cell.defaultActivations
        if names.count == k { names += names }
        var fs: [(Double) -> Double] = []
        var ia = 0, ib = 0
        for name in names {
            var alpha: Double? = nil, beta: Double? = nil
            let l = name.lowercased()
            // the engine keeps activation parameters and clip in float32
            if ["leakyrelu", "hardsigmoid", "elu"].contains(l), let al = c.alphas, ia < al.count { alpha = Double(Float(al[ia])); ia += 1 }
            if l == "hardsigmoid", let be = c.betas, ib < be.count { beta = Double(Float(be[ib])); ib += 1 }
            fs.append(activation(name, alpha: alpha, beta: beta))
        }
        func xAt(_ t: Int, _ bi: Int, _ i: Int) -> Double { c.layout == 0 ? x[(t * B + bi) * I + i] : x[(bi * S + t) * I + i] }
        func stateAt(_ s: [Double], _ d: Int, _ bi: Int, _ j: Int) -> Double { c.layout == 0 ? s[(d * B + bi) * H + j] : s[(bi * D + d) * H + j] }
        func clip(_ v: Double) -> Double { c.clip.map { min(max(v, -Double(Float($0))), Double(Float($0))) } ?? v }
        var y = [Double](repeating: 0, count: S * D * B * H)
        var yh = [Double](repeating: 0, count: D * B * H), yc = yh
        func yIndex(_ t: Int, _ d: Int, _ bi: Int, _ j: Int) -> Int { c.layout == 0 ? ((t * D + d) * B + bi) * H + j : ((bi * S + t) * D + d) * H + j }
        func sIndex(_ d: Int, _ bi: Int, _ j: Int) -> Int { c.layout == 0 ? (d * B + bi) * H + j : (bi * D + d) * H + j }
        for d in 0..<D {
            let backward = c.direction == "reverse" || d == 1
            let f = fs[d * k], g = k > 1 ? fs[d * k + 1] : f, hf = k > 2 ? fs[d * k + 2] : f
            // W[d][gate*H + j][i], R[d][gate*H + j][l], Wb / Rb
            func W(_ gate: Int, _ j: Int, _ i: Int) -> Double { w[((d * G + gate) * H + j) * I + i] }
            func R(_ gate: Int, _ j: Int, _ l: Int) -> Double { r[((d * G + gate) * H + j) * H + l] }
            func Wb(_ gate: Int, _ j: Int) -> Double { b[d * 2 * G * H + gate * H + j] }
            func Rb(_ gate: Int, _ j: Int) -> Double { b[d * 2 * G * H + G * H + gate * H + j] }
            for bi in 0..<B {
                var h = [Double](repeating: 0, count: H), cs = h
                for j in 0..<H {
                    if let h0 { h[j] = stateAt(h0, d, bi, j) }
                    if let c0 { cs[j] = stateAt(c0, d, bi, j) }
                }
                for step in 0..<S {
                    let t = backward ? S - 1 - step : step
                    func xw(_ gate: Int, _ j: Int) -> Double { (0..<I).reduce(Wb(gate, j)) { $0 + W(gate, j, $1) * xAt(t, bi, $1) } }
                    func hr(_ gate: Int, _ j: Int, _ v: [Double]) -> Double { (0..<H).reduce(0) { $0 + R(gate, j, $1) * v[$1] } }
                    var hNew = [Double](repeating: 0, count: H)
                    switch c.cell {
                    case .rnn:
                        for j in 0..<H { hNew[j] = f(clip(xw(0, j) + hr(0, j, h) + Rb(0, j))) }
                    case .gru:
                        let z = (0..<H).map { f(clip(xw(0, $0) + hr(0, $0, h) + Rb(0, $0))) }
                        let rr = (0..<H).map { f(clip(xw(1, $0) + hr(1, $0, h) + Rb(1, $0))) }
                        let rh = (0..<H).map { rr[$0] * h[$0] }
                        for j in 0..<H {
                            let nPre = c.linearBeforeReset ? xw(2, j) + rr[j] * (hr(2, j, h) + Rb(2, j)) : xw(2, j) + hr(2, j, rh) + Rb(2, j)
                            let nv = g(clip(nPre))
                            hNew[j] = (1 - z[j]) * nv + z[j] * h[j]
                        }
                    case .lstm:
                        var cNew = cs
                        for j in 0..<H {
                            let pi: Double = p[d * 3 * H + j], po: Double = p[d * 3 * H + H + j], pf: Double = p[d * 3 * H + 2 * H + j]
                            let zi: Double = xw(0, j) + hr(0, j, h) + Rb(0, j) + pi * cs[j]
                            let i = f(clip(zi))
                            let zf: Double = xw(2, j) + hr(2, j, h) + Rb(2, j) + pf * cs[j]
                            let fg: Double = c.inputForget ? 1 - i : f(clip(zf))
                            let zc: Double = xw(3, j) + hr(3, j, h) + Rb(3, j)
                            let cand = g(clip(zc))
                            cNew[j] = fg * cs[j] + i * cand
                            let zo: Double = xw(1, j) + hr(1, j, h) + Rb(1, j) + po * cNew[j]
                            let o = f(clip(zo))
                            hNew[j] = o * hf(cNew[j])
                        }
                        cs = cNew
                    }
                    h = hNew
                    for j in 0..<H { y[yIndex(t, d, bi, j)] = h[j] }
                }
                for j in 0..<H { yh[sIndex(d, bi, j)] = h[j]; yc[sIndex(d, bi, j)] = cs[j] }
            }
        }
        return Array([y, yh, yc].prefix(c.outputCount))
    }

    // MARK: - Drivers

    /// v in T (exact for Double; v is already a float32 value for Float).
    static func cast<T: EngineScalar>(_ v: Double) -> T { (v as? T) ?? T(Float(v)) }

    /// Forward in Float and Double, inference and differentiable plans, one plan at batch 2 and 3.
    func checkForward(_ c: Config, file: StaticString = #filePath, line: UInt = #line) throws {
        for dtype in [Engine.DType.float32, .float64] {
            for num in [Numerics.inference, .differentiable] {
                let g = try Self.graph(c, dtype: dtype)
                func run<T: EngineScalar>(_: T.Type) throws {
                    let h = try OpTest.Harness<T>(g, numerics: num)
                    for n in [2, 3] {
                        var xs: [[Double]] = [OpTest.values(c.seq * n * c.input, seed: UInt64(20 + n))]
                        if c.initialH { xs.append(OpTest.values(c.dirs * n * c.hidden, seed: UInt64(30 + n), in: -1...1)) }
                        if c.initialC { xs.append(OpTest.values(c.dirs * n * c.hidden, seed: UInt64(40 + n), in: -1...1)) }
                        if T.self == Float.self { xs = xs.map { $0.map { Double(Float($0)) } } }
                        let ys = try h.forward(xs.map { $0.map { Self.cast($0) } }, n: n)
                        let want = Self.reference(c, xs, n: n)
                        XCTAssertEqual(ys.count, want.count, file: file, line: line)
                        for (k, (y, w)) in zip(ys, want).enumerated() {
                            XCTAssertEqual(y.count, w.count, "output \(k)", file: file, line: line)
                            let err = OpTest.maxRelativeError(y.map { Double($0) }, w)
                            XCTAssertLessThan(err, dtype == .float32 ? 2e-5 : 1e-12, "\(c.cell) \(dtype) \(num) n=\(n) output \(k)", file: file, line: line)
                        }
                    }
                }
                if dtype == .float32 { try run(Float.self) } else { try run(Double.self) }
            }
        }
    }

    func checkGradients(_ c: Config, file: StaticString = #filePath, line: UInt = #line) throws {
        let g = try Self.graph(c, dtype: .float64, trainable: true)
        try OpTest.checkGradients(g, n: 2, tolerance: 1e-6, file: file, line: line)
    }

    // MARK: - LSTM

    func testLSTMForward() throws {
        try checkForward(Config(cell: .lstm))
        try checkForward(Config(cell: .lstm, direction: "bidirectional", initialH: true, initialC: true))
        try checkForward(Config(cell: .lstm, direction: "reverse", layout: 1, bias: false, initialH: true, outputs: 2))
        try checkForward(Config(cell: .lstm, direction: "bidirectional", layout: 1, peepholes: true, clip: 0.7))
        try checkForward(Config(cell: .lstm, seq: 2, initialC: true, inputForget: true, outputs: 1))
        try checkForward(Config(cell: .lstm, activations: ["HardSigmoid", "Tanh", "Softsign"], alphas: [0.3], betas: [0.4]))
    }

    func testLSTMGradients() throws {
        try checkGradients(Config(cell: .lstm, direction: "bidirectional", initialH: true, initialC: true))
        try checkGradients(Config(cell: .lstm, layout: 1, seq: 2, peepholes: true))
    }

    // MARK: - GRU

    func testGRUForward() throws {
        try checkForward(Config(cell: .gru, linearBeforeReset: true))
        try checkForward(Config(cell: .gru, direction: "bidirectional", initialH: true, linearBeforeReset: true))
        try checkForward(Config(cell: .gru, direction: "bidirectional", layout: 1, initialH: true))
        try checkForward(Config(cell: .gru, direction: "reverse", bias: false, clip: 0.5))
        try checkForward(Config(cell: .gru, activations: ["Sigmoid", "Relu"], outputs: 1))
    }

    func testGRUGradients() throws {
        try checkGradients(Config(cell: .gru, direction: "bidirectional", initialH: true, linearBeforeReset: true))
        try checkGradients(Config(cell: .gru, layout: 1, seq: 2))
    }

    // MARK: - RNN

    func testRNNForward() throws {
        try checkForward(Config(cell: .rnn))
        try checkForward(Config(cell: .rnn, direction: "bidirectional", layout: 1, initialH: true))
        try checkForward(Config(cell: .rnn, direction: "reverse", activations: ["LeakyRelu"], alphas: [0.2]))
        try checkForward(Config(cell: .rnn, bias: false, clip: 0.4))
    }

    func testRNNGradients() throws {
        try checkGradients(Config(cell: .rnn, direction: "bidirectional", initialH: true))
    }

    // MARK: - Fine-tuning

    /// A few Adam steps on an LSTM and a GRU (layout 1: the batch is axis 0, as the trainer takes it)
    /// with W, R and B trained: the loss decreases, in Float and Double.
    func testFineTuning() throws {
        func train<T: EngineScalar>(_ c: Config, _: T.Type) throws {
            let g = try Self.graph(c, dtype: T.self == Float.self ? .float32 : .float64, trainable: true)
            let net = try EngineNetwork<T>(graph: g)
            XCTAssertEqual(net.parameterCount, c.w.count + c.r.count + c.b.count)
            let config = TrainerConfig(optimizer: OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 0.02))
            let trainer = try Trainer<T>(network: net, config: config, random: nil)
            let n = 8
            let x: [T] = OpTest.values(n * net.inputSize, seed: 5)
            let y: [T] = (0..<(n * net.outputSize)).map { T(Float(sin(Double($0) / 3) * 0.5)) }
            var losses: [Double] = []
            for _ in 0..<10 {
                losses.append(try x.withUnsafeBufferPointer { xp in
                    try y.withUnsafeBufferPointer { try trainer.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) }
                })
            }
            XCTAssertTrue(losses.allSatisfy { $0.isFinite }, "\(c.cell) \(T.self): \(losses)")
            XCTAssertLessThan(losses[9], 0.8 * losses[0], "\(c.cell) \(T.self): \(losses)")
        }
        for c in [Config(cell: .lstm, layout: 1, seq: 4, input: 3, hidden: 3, outputs: 1),
                  Config(cell: .gru, direction: "bidirectional", layout: 1, seq: 4, input: 3, hidden: 3, linearBeforeReset: true, outputs: 1)] {
            try train(c, Float.self)
            try train(c, Double.self)
        }
    }

    /// Y left out ("" first output, as ONNX's own LSTM test models write it): Y_h alone is computed.
    func testFirstOutputLeftOut() throws {
        let c = Config(cell: .lstm, direction: "bidirectional")
        let g = Engine.Graph(dtype: .float64, opset: 17)
        try g.addInput("X", Engine.TensorType(.float64, OpTest.shape(g, c.xDims())))
        _ = try g.addConstant("W", try Engine.Tensor(shape: [2, 4 * c.hidden, c.input], values: c.w))
        _ = try g.addConstant("R", try Engine.Tensor(shape: [2, 4 * c.hidden, c.hidden], values: c.r))
        _ = try g.addConstant("B", try Engine.Tensor(shape: [2, 8 * c.hidden], values: c.b))
        try g.addNode("lstm", LSTMOp.self, c.attributes, inputs: ["X", "W", "R", "B"], outputs: ["", "Y_h"])
        try g.markOutput("Y_h")
        try g.verify()
        try g.inferTypes()
        let x: [Double] = OpTest.values(c.seq * 2 * c.input, seed: 4)
        let y = try OpTest.run(g, [x], n: 2)
        XCTAssertLessThan(OpTest.maxRelativeError(y[0], Self.reference(c, [x], n: 2)[1]), 1e-12)
        XCTAssertThrowsError(try g.addNode("lstm2", LSTMOp.self, c.attributes, inputs: ["X", "W", "R"], outputs: ["", ""]))
    }

    // MARK: - Errors

    func testErrors() throws {
        func fails(_ c: Config, _ what: String, line: UInt = #line) {
            XCTAssertThrowsError(try Self.graph(c, dtype: .float32), what, line: line)
        }
        var c = Config(cell: .lstm)
        c.direction = "sideways"; fails(c, "direction")
        c = Config(cell: .lstm, layout: 2); fails(c, "layout")
        c = Config(cell: .gru, activations: ["Sigmoid", "ScaledTanh"]); fails(c, "activation")
        c = Config(cell: .gru, activations: ["Sigmoid"], outputs: 0); c.activations = ["Sigmoid", "Tanh", "Tanh"]; fails(c, "activation count")
        c = Config(cell: .rnn, clip: -1); fails(c, "clip")
        c = Config(cell: .gru, inputForget: true); fails(c, "input_forget on GRU")
        c = Config(cell: .lstm, linearBeforeReset: true); fails(c, "linear_before_reset on LSTM")
        // hidden_size against R
        let g = Engine.Graph(dtype: .float32, opset: 17)
        try g.addInput("X", Engine.TensorType(.float32, OpTest.shape(g, [3, "N", 2])))
        _ = try g.addConstant("W", try Engine.Tensor(shape: [1, 8, 2], values: [Float](repeating: 0.1, count: 16)))
        _ = try g.addConstant("R", try Engine.Tensor(shape: [1, 8, 2], values: [Float](repeating: 0.1, count: 16)))
        try g.addNode("lstm", LSTMOp.self, ["hidden_size": .int(3)], inputs: ["X", "W", "R"], outputs: ["Y"])
        try g.markOutput("Y")
        try g.verify()
        XCTAssertThrowsError(try g.inferTypes())
        // sequence_lens given at run time
        let g2 = Engine.Graph(dtype: .float32, opset: 17)
        try g2.addInput("X", Engine.TensorType(.float32, OpTest.shape(g2, [3, "N", 2])))
        try g2.addInput("L", Engine.TensorType(.int64, OpTest.shape(g2, ["N"])))
        _ = try g2.addConstant("W", try Engine.Tensor(shape: [1, 2, 2], values: [Float](repeating: 0.1, count: 4)))
        _ = try g2.addConstant("R", try Engine.Tensor(shape: [1, 2, 2], values: [Float](repeating: 0.1, count: 4)))
        try g2.addNode("rnn", RNNOp.self, [:], inputs: ["X", "W", "R", "", "L"], outputs: ["Y"])
        try g2.markOutput("Y")
        try g2.verify()
        XCTAssertThrowsError(try g2.inferTypes())
        // a wrong W shape
        let g3 = Engine.Graph(dtype: .float32, opset: 17)
        try g3.addInput("X", Engine.TensorType(.float32, OpTest.shape(g3, [3, "N", 2])))
        _ = try g3.addConstant("W", try Engine.Tensor(shape: [1, 3, 2], values: [Float](repeating: 0.1, count: 6)))
        _ = try g3.addConstant("R", try Engine.Tensor(shape: [1, 6, 2], values: [Float](repeating: 0.1, count: 12)))
        try g3.addNode("gru", GRUOp.self, [:], inputs: ["X", "W", "R"], outputs: ["Y"])
        try g3.markOutput("Y")
        try g3.verify()
        XCTAssertThrowsError(try g3.inferTypes())
        // a sequence longer than the unrolling limit: refused when compiled, before any step is made
        let g4 = Engine.Graph(dtype: .float32, opset: 17)
        try g4.addInput("X", Engine.TensorType(.float32, OpTest.shape(g4, [9000, "N", 1])))
        _ = try g4.addConstant("W", try Engine.Tensor(shape: [1, 1, 1], values: [Float(0.5)]))
        _ = try g4.addConstant("R", try Engine.Tensor(shape: [1, 1, 1], values: [Float(0.5)]))
        try g4.addNode("rnn", RNNOp.self, [:], inputs: ["X", "W", "R"], outputs: ["Y"])
        try g4.markOutput("Y")
        try g4.verify()
        try g4.inferTypes()
        XCTAssertThrowsError(try Engine.compile(g4))
    }

    /// A sequence axis that is the batch symbol: one plan cannot unroll it (notLinear, so models
    /// specialise per batch size).
    func testSequenceOnTheBatchAxisIsNotLinear() throws {
        let g = Engine.Graph(dtype: .float32, opset: 17)
        try g.addInput("X", Engine.TensorType(.float32, OpTest.shape(g, ["N", 2, 2])))
        _ = try g.addConstant("W", try Engine.Tensor(shape: [1, 2, 2], values: [Float](repeating: 0.1, count: 4)))
        _ = try g.addConstant("R", try Engine.Tensor(shape: [1, 2, 2], values: [Float](repeating: 0.1, count: 4)))
        try g.addNode("rnn", RNNOp.self, [:], inputs: ["X", "W", "R"], outputs: ["Y"])
        try g.markOutput("Y")
        try g.verify()
        try g.inferTypes()
        XCTAssertThrowsError(try Engine.compile(g)) { e in
            XCTAssertTrue(Engine.isNotLinear(e as? InLoopError ?? InLoopError(.internal, "")), "\(e)")
        }
    }
}


