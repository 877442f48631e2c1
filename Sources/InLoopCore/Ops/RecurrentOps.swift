/// Recurrent layers (phase 6 of `docs/ENGINE.md`): ONNX RNN, GRU and LSTM, as torch exports `nn.RNN`,
/// `nn.GRU` (linear_before_reset = 1) and `nn.LSTM`, and as ONNX defines them: directions forward,
/// reverse and bidirectional, layouts 0 ([seq, batch, input]) and 1 ([batch, seq, input]), optional
/// B, initial_h, initial_c and peepholes P, clip, input_forget, linear_before_reset, and the
/// activations the engine has (Sigmoid, Tanh, Relu, LeakyRelu, Elu, Softplus, Softsign, HardSigmoid).
///
/// Lowering unrolls the sequence into existing steps, so reverse (backprop through time) and tangent
/// come from the step rules of `Compiler/Differentiation.swift`, with no kernel of their own:
/// - one stacked GEMM (`.matMul`) computes the input projection X·Wᵀ of every time step and direction
///   at once, and one broadcast add its bias;
/// - per time step and direction: one recurrent GEMM h·Rᵀ (+ C), strided copies (`.layoutCopy`) of
///   the gate blocks, the gate activations (`.activation`/`.unary`) and element-wise products and sums;
/// - Y, Y_h and Y_c are `.concat`s of the hidden (cell) states of each step.
/// Inference plans of LSTM with the default activations (no clip, peepholes or input_forget) and of GRU
/// with linear_before_reset compute each step's gates in fused steps instead (`.lstmState` and
/// `.lstmOutput`, `.gruCell`: `Kernels/Recurrent.swift`), with the same values bit for bit.
/// Every intermediate is a plan storage (nothing is allocated at run time). The sequence length must
/// be known when the plan is compiled: when it is the batch symbol (a graph whose batch is the
/// sequence axis), lowering throws `notLinear` and the model is specialised per batch size.
/// sequence_lens is taken when it is a constant whose every entry is the sequence length; other
/// lengths are refused.

/// The cell of a recurrent op.
public enum RecurrentCell: Sendable, Equatable {
    case rnn, gru, lstm

    /// Gate blocks in W and R (RNN 1, GRU 3: z r h, LSTM 4: i o f c).
    var gates: Int { self == .rnn ? 1 : self == .gru ? 3 : 4 }
    /// Activations per direction (RNN f; GRU f g; LSTM f g h).
    var activationCount: Int { self == .rnn ? 1 : self == .gru ? 2 : 3 }
    var name: String { self == .rnn ? "RNN" : self == .gru ? "GRU" : "LSTM" }
    var defaultActivations: [String] { self == .rnn ? ["Tanh"] : self == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"] }
}

/// One activation of a recurrent cell: an `Activation` step or a `UnaryFunction` step.
public enum RecurrentActivation: Sendable {
    case activation(Activation)
    case unary(UnaryFunction)
}

public enum RecurrentDirection: String, Sendable, Equatable {
    case forward, reverse, bidirectional
}

/// Parsed attributes of RNN, GRU and LSTM.
public struct RecurrentAttributes: OpAttributeSet {
    public var cell: RecurrentCell
    /// nil: R's last dimension.
    public var hiddenSize: Int?
    public var direction: RecurrentDirection
    public var layout: Int
    /// Threshold of the pre-activation clip (nil: none).
    public var clip: Float?
    public var inputForget: Bool
    public var linearBeforeReset: Bool
    /// Per direction (`cell.activationCount` each).
    public var activations: [[RecurrentActivation]]
    /// The raw attributes InLoop reads (written back to native files as they came).
    var raw: [String: Engine.AttributeValue]

    public func encoded() -> [String: Engine.AttributeValue] { raw }

    var directions: Int { direction == .bidirectional ? 2 : 1 }

    static let keys = ["hidden_size", "direction", "layout", "clip", "input_forget", "linear_before_reset",
                       "activations", "activation_alpha", "activation_beta"]

    static func parse(_ raw: [String: Engine.AttributeValue], cell: RecurrentCell, opset: Int) throws(InLoopError) -> RecurrentAttributes {
        var kept: [String: Engine.AttributeValue] = [:]
        for k in keys { if let v = raw[k] { kept[k] = v } }
        let hidden = try raw.int("hidden_size")
        if let hidden, hidden < 1 { throw InLoopError(.format, "attribute 'hidden_size' is \(hidden); it must be ≥ 1") }
        let dirName = try raw.string("direction") ?? "forward"
        guard let direction = RecurrentDirection(rawValue: dirName) else {
            throw InLoopError(.format, "attribute 'direction' is '\(dirName)'; it must be forward, reverse or bidirectional")
        }
        let layout = try raw.int("layout", default: 0)
        guard layout == 0 || layout == 1 else { throw InLoopError(.format, "attribute 'layout' is \(layout); it must be 0 or 1") }
        var clip: Float? = nil
        if let c = try raw.float("clip") {
            guard c.isFinite, c > 0, c <= Double(Float.greatestFiniteMagnitude) else {
                throw InLoopError(.format, "attribute 'clip' is \(c); it must be a positive finite float32")
            }
            clip = Float(c)
        }
        let inputForget = try raw.int("input_forget", default: 0)
        guard inputForget == 0 || inputForget == 1 else { throw InLoopError(.format, "attribute 'input_forget' is \(inputForget); it must be 0 or 1") }
        guard cell == .lstm || inputForget == 0 else { throw InLoopError(.format, "attribute 'input_forget' is an LSTM attribute") }
        let lbr = try raw.int("linear_before_reset", default: 0)
        guard lbr == 0 || lbr == 1 else { throw InLoopError(.format, "attribute 'linear_before_reset' is \(lbr); it must be 0 or 1") }
        guard cell == .gru || lbr == 0 else { throw InLoopError(.format, "attribute 'linear_before_reset' is a GRU attribute") }

        let dirs = direction == .bidirectional ? 2 : 1
        var names = cell.defaultActivations
        if let v = raw["activations"] {
            guard case .strings(let list) = v else { throw InLoopError(.format, "attribute 'activations' must be a list of strings") }
            guard list.count == cell.activationCount || list.count == cell.activationCount * dirs else {
                throw InLoopError(.format, "attribute 'activations' has \(list.count) names; \(cell.name) takes \(cell.activationCount) per direction")
            }
            names = list
        }
        if names.count == cell.activationCount && dirs == 2 { names += names }
        func floats(_ key: String) throws(InLoopError) -> [Double] {
            guard let v = raw[key] else { return [] }
            switch v {
            case .floats(let f): return f
            case .float(let f): return [f]
            default: throw InLoopError(.format, "attribute '\(key)' must be a list of floats")
            }
        }
        let alphas = try floats("activation_alpha"), betas = try floats("activation_beta")
        var ia = 0, ib = 0
        func value(_ list: [Double], _ i: inout Int, _ d: Double, _ key: String) throws(InLoopError) -> Float {
            var v = d
            if i < list.count { v = list[i]; i += 1 }
            guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                throw InLoopError(.format, "attribute '\(key)' holds \(v); values must be finite float32")
            }
            return Float(v)
        }
        var acts: [RecurrentActivation] = []
        for name in names {
            switch name.lowercased() {
            case "sigmoid": acts.append(.activation(.sigmoid))
            case "tanh": acts.append(.activation(.tanh))
            case "relu": acts.append(.activation(.relu))
            case "softplus": acts.append(.activation(.softplus))
            case "softsign": acts.append(.unary(.softsign))
            case "leakyrelu": acts.append(.activation(.leakyRelu(alpha: try value(alphas, &ia, 0.01, "activation_alpha"))))
            case "elu": acts.append(.activation(.elu(alpha: try value(alphas, &ia, 1, "activation_alpha"))))
            case "hardsigmoid":
                let a = try value(alphas, &ia, 0.2, "activation_alpha"), b = try value(betas, &ib, 0.5, "activation_beta")
                acts.append(.unary(.hardSigmoid(alpha: a, beta: b)))
            default:
                throw InLoopError(.unsupported, "\(cell.name) activation '\(name)' is not supported (InLoop takes Sigmoid, Tanh, Relu, LeakyRelu, Elu, Softplus, Softsign, HardSigmoid)")
            }
        }
        let k = cell.activationCount
        return RecurrentAttributes(cell: cell, hiddenSize: hidden, direction: direction, layout: layout, clip: clip,
                                   inputForget: inputForget == 1, linearBeforeReset: lbr == 1,
                                   activations: (0..<dirs).map { Array(acts[($0 * k)..<($0 * k + k)]) }, raw: kept)
    }
}

/// The shared definition of RNN, GRU and LSTM (inputs X, W, R, B, sequence_lens, initial_h, and for
/// LSTM initial_c and P; outputs Y, Y_h, and for LSTM Y_c).
public protocol RecurrentOpDefinition: OpDefinition where Attributes == RecurrentAttributes {
    static var cell: RecurrentCell { get }
}

extension RecurrentOpDefinition {
    public static var name: String { cell.name }
    public static var inputArity: ClosedRange<Int> { cell == .lstm ? 3...8 : 3...6 }
    public static var outputArity: ClosedRange<Int> { cell == .lstm ? 1...3 : 1...2 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> RecurrentAttributes {
        try RecurrentAttributes.parse(raw, cell: cell, opset: opset)
    }

    public static func inferTypes(_ a: RecurrentAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        try inferTypes(a, inputs, known, outputCount: cell == .lstm ? 3 : 2)
    }

    public static func inferTypes(_ a: RecurrentAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                  outputCount: Int) throws(InLoopError) -> [Engine.TensorType] {
        let s = try RecurrentShapes(a, inputs, known)
        let hs: [Engine.SymInt] = a.layout == 0 ? [s.dirs, s.batch, Engine.SymInt(s.hidden)] : [s.batch, s.dirs, Engine.SymInt(s.hidden)]
        let y: [Engine.SymInt] = a.layout == 0 ? [s.seq, s.dirs, s.batch, Engine.SymInt(s.hidden)] : [s.batch, s.seq, s.dirs, Engine.SymInt(s.hidden)]
        let all = [Engine.TensorType(s.dtype, y), Engine.TensorType(s.dtype, hs), Engine.TensorType(s.dtype, hs)]
        guard outputCount >= 1, outputCount <= (cell == .lstm ? 3 : 2) else {
            throw InLoopError(.format, "\(name) has \(outputCount) outputs")
        }
        return Array(all.prefix(outputCount))
    }

    public static func lower(_ a: RecurrentAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try RecurrentLowering.lower(a, &ctx)
    }
}

public enum RNNOp: RecurrentOpDefinition {
    public typealias Attributes = RecurrentAttributes
    public static let cell = RecurrentCell.rnn
}

public enum GRUOp: RecurrentOpDefinition {
    public typealias Attributes = RecurrentAttributes
    public static let cell = RecurrentCell.gru
}

public enum LSTMOp: RecurrentOpDefinition {
    public typealias Attributes = RecurrentAttributes
    public static let cell = RecurrentCell.lstm
}

/// The checked shapes of a recurrent node's inputs.
struct RecurrentShapes {
    let dtype: Engine.DType
    let seq: Engine.SymInt
    let batch: Engine.SymInt
    let input: Int
    let hidden: Int
    let dirs: Engine.SymInt

    init(_ a: RecurrentAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?]) throws(InLoopError) {
        let cell = a.cell, op = cell.name
        let x = try Engine.input(inputs, 0, "X"), w = try Engine.input(inputs, 1, "W"), r = try Engine.input(inputs, 2, "R")
        guard x.dtype.isFloatingPoint, w.dtype == x.dtype, r.dtype == x.dtype else {
            throw InLoopError(.format, "\(op) takes X, W and R of one floating type, got \(x.dtype), \(w.dtype) and \(r.dtype)")
        }
        guard x.rank == 3, w.rank == 3, r.rank == 3 else {
            throw InLoopError(.format, "\(op) takes X, W and R of rank 3, got \(x.shape.formatted), \(w.shape.formatted) and \(r.shape.formatted)")
        }
        let d = a.directions
        guard let hR = r.shape[2].known, hR >= 1 else { throw InLoopError(.unsupported, "\(op): R \(r.shape.formatted) must have a known hidden size") }
        if let h = a.hiddenSize, h != hR {
            throw InLoopError(.format, "\(op): hidden_size is \(h) but R is \(r.shape.formatted)")
        }
        let h = hR
        let (gh, o1) = h.multipliedReportingOverflow(by: cell.gates)
        guard !o1, gh <= Limits.maxDimension else { throw InLoopError(.format, "\(op): hidden_size \(h) is too large") }
        guard let inSize = x.shape[2].known, inSize >= 1 else {
            throw InLoopError(.unsupported, "\(op): X \(x.shape.formatted) must have a known input size")
        }
        guard w.shape == [Engine.SymInt(d), Engine.SymInt(gh), Engine.SymInt(inSize)] else {
            throw InLoopError(.format, "\(op): W is \(w.shape.formatted); with X \(x.shape.formatted), \(d) direction(s) and hidden size \(h) it must be [\(d), \(gh), \(inSize)]")
        }
        guard r.shape == [Engine.SymInt(d), Engine.SymInt(gh), Engine.SymInt(h)] else {
            throw InLoopError(.format, "\(op): R is \(r.shape.formatted); it must be [\(d), \(gh), \(h)]")
        }
        let seq = a.layout == 0 ? x.shape[0] : x.shape[1], batch = a.layout == 0 ? x.shape[1] : x.shape[0]
        func optional(_ k: Int, _ what: String, _ shape: [Engine.SymInt]) throws(InLoopError) {
            guard k < inputs.count, let t = inputs[k] else { return }
            guard t.dtype == x.dtype, t.shape == shape else {
                throw InLoopError(.format, "\(op): \(what) is \(t); it must be \(x.dtype)\(shape.formatted)")
            }
        }
        let (g2, o2) = gh.multipliedReportingOverflow(by: 2)
        guard !o2 else { throw InLoopError(.format, "\(op): hidden_size \(h) is too large") }
        try optional(3, "B", [Engine.SymInt(d), Engine.SymInt(g2)])
        let state: [Engine.SymInt] = a.layout == 0 ? [Engine.SymInt(d), batch, Engine.SymInt(h)] : [batch, Engine.SymInt(d), Engine.SymInt(h)]
        try optional(5, "initial_h", state)
        if cell == .lstm {
            try optional(6, "initial_c", state)
            try optional(7, "P", [Engine.SymInt(d), Engine.SymInt(3 * h)])
        }
        if inputs.count > 4, let lens = inputs[4] {
            guard lens.rank == 1, lens.shape[0] == batch else {
                throw InLoopError(.format, "\(op): sequence_lens is \(lens.shape.formatted); it must be [\(batch)]")
            }
            guard known.count > 4, let values = known[4] else {
                throw InLoopError(.unsupported, "\(op): sequence_lens must be a constant (every entry the sequence length); lengths given at run time are not supported")
            }
            for v in values.values where v != seq {
                if seq.known == nil { throw Engine.notLinear("\(op) sequence_lens against a symbolic sequence length") }
                throw InLoopError(.unsupported, "\(op): sequence_lens holds \(v), the sequence length is \(seq); sequences of different lengths are not supported")
            }
        }
        dtype = x.dtype
        self.seq = seq
        self.batch = batch
        input = inSize
        hidden = h
        dirs = Engine.SymInt(d)
    }
}

/// Emits the unrolled steps of a recurrent node (see the file's comment).
enum RecurrentLowering {
    typealias Sym = Engine.SymInt

    /// A plan storage with its (symbolic) shape.
    struct Value {
        var id: Int32
        var shape: [Sym]
    }

    static func lower(_ a: RecurrentAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let s = try RecurrentShapes(a, ctx.inputTypes, ctx.node.inputs.indices.map { ctx.knownInput($0) })
        let cell = a.cell, op = cell.name
        guard let seq = s.seq.known else { throw Engine.notLinear("\(op) over a sequence of length \(s.seq)") }
        guard seq >= 1 else { throw InLoopError(.unsupported, "\(op) over an empty sequence") }
        // every time step is about 20 steps per direction (and their storages in differentiable plans):
        // longer sequences would make plans of millions of steps
        guard seq <= 1 << 13 else { throw InLoopError(.unsupported, "\(op) over \(seq) time steps; InLoop unrolls sequences of up to 8192") }
        let dirs = a.directions, h = s.hidden, gh = cell.gates * h, batch = s.batch
        let H = Sym(h), GH = Sym(gh)
        let rows = try Engine.linear(s.seq * batch, "\(op)'s rows")
        let x = Value(id: try ctx.input(0), shape: ctx.inputTypes[0]?.shape ?? [])
        let w = Value(id: try ctx.input(1), shape: [Sym(dirs), GH, Sym(s.input)])
        let r = Value(id: try ctx.input(2), shape: [Sym(dirs), GH, H])

        // Input projection of every step and direction: XW[d, row, :] = X[row, :]·W[d]ᵀ (+ bias).
        let xwShape = [Sym(dirs), rows, GH]
        var xw = Value(id: ctx.temporary(try ctx.extent(xwShape)), shape: xwShape)
        var stack: [(dim: Engine.Extent, a: Engine.Extent, b: Engine.Extent, y: Engine.Extent)] = []
        if dirs > 1 {
            stack = [(Engine.Extent(fixed: dirs), Engine.Extent(), try ctx.extent([GH, Sym(s.input)]), try ctx.extent([rows, GH]))]
        }
        let projection = MatMulGeometry.encode(rows: try ctx.extent([rows]), inner: Engine.Extent(fixed: s.input), cols: Engine.Extent(fixed: gh),
                                               transA: false, transB: true, stack: stack)
        ctx.emit(.matMul(geometry: ctx.ints(projection), alpha: 1, beta: 0, hasC: false, accumulate: false, activation: .identity),
                 [x.id, w.id, xw.id])
        // Recurrent bias per direction [dirs, gh] added in the recurrent GEMM (GRU: all of Rb; RNN and
        // LSTM: Rb goes with Wb into the projection).
        var recurrentBias: Value? = nil
        if ctx.hasInput(3) {
            let b = Value(id: try ctx.input(3), shape: [Sym(dirs), Sym(2 * gh)])
            let wb = try slice(&ctx, b, [Sym(dirs), Sym(1), GH], strides: [Sym(2 * gh), 0, 1], base: 0)
            let rb = try slice(&ctx, b, [Sym(dirs), Sym(1), GH], strides: [Sym(2 * gh), 0, 1], base: GH)
            let inputBias: Value
            if cell == .gru {
                inputBias = wb
                recurrentBias = rb
            } else {
                inputBias = try add(&ctx, wb, rb)
            }
            xw = try binary(&ctx, .add, xw, inputBias, shape: xwShape)
        }

        // Per direction: weights, initial state, then the steps.
        var hs = [[Value]](repeating: [], count: dirs)       // hs[d][t]: hidden state at time t
        var cs = [[Value]](repeating: [], count: dirs)
        for d in 0..<dirs {
            let backward = a.direction == .reverse || d == 1
            let acts = a.activations[d]
            let rd = try directionSlice(&ctx, r, d, dirs: dirs, [GH, H])
            var rbd: Value? = nil
            if let rb = recurrentBias { rbd = try directionSlice(&ctx, rb, d, dirs: dirs, [Sym(1), GH]) }
            var hPrev = try initialState(&ctx, a, 5, d, dirs: dirs, batch: batch, h: h)
            var cPrev: Value? = cell == .lstm ? try initialState(&ctx, a, 6, d, dirs: dirs, batch: batch, h: h) : nil
            // peepholes p_i, p_o, p_f as [1, h] rows
            var peep: [Value] = []
            if cell == .lstm, ctx.hasInput(7) {
                let p = Value(id: try ctx.input(7), shape: [Sym(dirs), Sym(3 * h)])
                for k in 0..<3 { peep.append(try slice(&ctx, p, [Sym(1), H], strides: [0, 1], base: Sym(d * 3 * h + k * h))) }
            }
            // GRU without linear_before_reset: R and Rb split into the z r block and the h block
            var rzr: Value? = nil, rh: Value? = nil, rbzr: Value? = nil, rbh: Value? = nil
            if cell == .gru && !a.linearBeforeReset {
                rzr = try slice(&ctx, rd, [Sym(2 * h), H], strides: [H, 1], base: 0)
                rh = try slice(&ctx, rd, [H, H], strides: [H, 1], base: Sym(2 * h * h))
                if let rbd {
                    rbzr = try slice(&ctx, rbd, [Sym(1), Sym(2 * h)], strides: [0, 1], base: 0)
                    rbh = try slice(&ctx, rbd, [Sym(1), H], strides: [0, 1], base: Sym(2 * h))
                }
            }
            // MARK: family fuse (recurrent cells): an inference plan computes the gates of a cell with the
            // default activations (no clip, peepholes, input_forget; GRU with linear_before_reset) in one
            // step per time step (`RecurrentKernels`, the same values as the unrolled steps)
            func isActivation(_ f: RecurrentActivation, _ want: Activation) -> Bool {
                if case .activation(let act) = f { return act == want }
                return false
            }
            let defaults = acts.count == cell.activationCount && isActivation(acts[0], .sigmoid)
                && acts.dropFirst().allSatisfy { isActivation($0, .tanh) }
            let fused = ctx.numerics == .inference && defaults && a.clip == nil && !a.inputForget && peep.isEmpty
                && (cell == .lstm || cell == .gru && a.linearBeforeReset)
            let batchRows = try ctx.extent([batch])
            var hOut = [Value?](repeating: nil, count: seq), cOut = [Value?](repeating: nil, count: seq)
            for step in 0..<seq {
                let t = backward ? seq - 1 - step : step
                // this step's projection: XW[d, rows of time t, :] as [batch, gh]
                let rowBase: Sym, rowStride: Sym
                let dirBase = try Engine.linear(Sym(d) * rows, "\(op) offsets")
                if a.layout == 0 {
                    rowBase = try Engine.linear(dirBase + (try Engine.linear(Sym(t) * batch, "\(op) offsets")), "\(op) offsets"); rowStride = 1
                } else {
                    rowBase = try Engine.linear(dirBase + Sym(t), "\(op) offsets"); rowStride = Sym(seq)
                }
                let g = try slice(&ctx, xw, [batch, GH], strides: [try Engine.linear(rowStride * GH, "\(op) strides"), 1],
                                  base: try Engine.linear(rowBase * GH, "\(op) offsets"))
                switch cell {
                case .rnn:
                    let z = try clipped(&ctx, a, try matMul(&ctx, hPrev, rd, c: g, cRow: GH))
                    hPrev = try activate(&ctx, acts[0], z)
                case .lstm where fused:
                    // MARK: family fuse (LSTM cell)
                    let z = try matMul(&ctx, hPrev, rd, c: g, cRow: GH)
                    guard let c0 = cPrev else { throw InLoopError(.internal, "LSTM without a cell state") }
                    let c = Value(id: ctx.temporary(try ctx.extent([batch, H])), shape: [batch, H])
                    ctx.emit(.lstmState(rows: batchRows, hidden: h), [z.id, c0.id, c.id])
                    let hv = Value(id: ctx.temporary(try ctx.extent([batch, H])), shape: [batch, H])
                    ctx.emit(.lstmOutput(rows: batchRows, hidden: h), [z.id, c.id, hv.id])
                    hPrev = hv
                    cPrev = c
                    cOut[t] = c
                case .gru where fused:
                    // MARK: family fuse (GRU cell)
                    let q = try matMul(&ctx, hPrev, rd, c: rbd, cRow: 0)          // h·Rᵀ + Rb, [batch, 3h]
                    let hv = Value(id: ctx.temporary(try ctx.extent([batch, H])), shape: [batch, H])
                    ctx.emit(.gruCell(rows: batchRows, hidden: h), [g.id, q.id, hPrev.id, hv.id])
                    hPrev = hv
                case .lstm:
                    let z = try matMul(&ctx, hPrev, rd, c: g, cRow: GH)
                    func gate(_ k: Int) throws(InLoopError) -> Value {
                        try slice(&ctx, z, [batch, H], strides: [GH, 1], base: Sym(k * h))
                    }
                    guard let c0 = cPrev else { throw InLoopError(.internal, "LSTM without a cell state") }
                    var zi = try gate(0), zo = try gate(1), zf = try gate(2)
                    if !peep.isEmpty {
                        zi = try add(&ctx, zi, try binary(&ctx, .mul, c0, peep[0], shape: [batch, H]))
                        zf = try add(&ctx, zf, try binary(&ctx, .mul, c0, peep[2], shape: [batch, H]))
                    }
                    let i = try activate(&ctx, acts[0], try clipped(&ctx, a, zi))
                    let f: Value
                    if a.inputForget {
                        let one = Value(id: ctx.temporary(Engine.Extent(fixed: 1)), shape: [Sym(1)])
                        ctx.emit(.fill(count: Engine.Extent(fixed: 1), value: 1), [one.id])
                        f = try binary(&ctx, .sub, one, i, shape: [batch, H])
                    } else {
                        f = try activate(&ctx, acts[0], try clipped(&ctx, a, zf))
                    }
                    let cand = try activate(&ctx, acts[1], try clipped(&ctx, a, try gate(3)))
                    let c = try add(&ctx, try binary(&ctx, .mul, f, c0, shape: [batch, H]), try binary(&ctx, .mul, i, cand, shape: [batch, H]))
                    if !peep.isEmpty { zo = try add(&ctx, zo, try binary(&ctx, .mul, c, peep[1], shape: [batch, H])) }
                    let o = try activate(&ctx, acts[0], try clipped(&ctx, a, zo))
                    hPrev = try binary(&ctx, .mul, o, try activate(&ctx, acts[2], c), shape: [batch, H])
                    cPrev = c
                    cOut[t] = c
                case .gru:
                    let zr: Value, n: Value
                    if a.linearBeforeReset {
                        let q = try matMul(&ctx, hPrev, rd, c: rbd, cRow: 0)          // h·Rᵀ + Rb, [batch, 3h]
                        let gzr = try slice(&ctx, g, [batch, Sym(2 * h)], strides: [GH, 1], base: 0)
                        let qzr = try slice(&ctx, q, [batch, Sym(2 * h)], strides: [GH, 1], base: 0)
                        zr = try activate(&ctx, acts[0], try clipped(&ctx, a, try add(&ctx, gzr, qzr)))
                        let reset = try slice(&ctx, zr, [batch, H], strides: [Sym(2 * h), 1], base: H)
                        let gHid = try slice(&ctx, g, [batch, H], strides: [GH, 1], base: Sym(2 * h))
                        let qh = try slice(&ctx, q, [batch, H], strides: [GH, 1], base: Sym(2 * h))
                        n = try activate(&ctx, acts[1], try clipped(&ctx, a, try add(&ctx, gHid, try binary(&ctx, .mul, reset, qh, shape: [batch, H]))))
                    } else {
                        guard let rzr, let rh else { throw InLoopError(.internal, "GRU weights not split") }
                        let q = try matMul(&ctx, hPrev, rzr, c: rbzr, cRow: 0)        // [batch, 2h]
                        let gzr = try slice(&ctx, g, [batch, Sym(2 * h)], strides: [GH, 1], base: 0)
                        zr = try activate(&ctx, acts[0], try clipped(&ctx, a, try add(&ctx, gzr, q)))
                        let reset = try slice(&ctx, zr, [batch, H], strides: [Sym(2 * h), 1], base: H)
                        let gHid = try slice(&ctx, g, [batch, H], strides: [GH, 1], base: Sym(2 * h))
                        let qh = try matMul(&ctx, try binary(&ctx, .mul, reset, hPrev, shape: [batch, H]), rh, c: rbh, cRow: 0)
                        n = try activate(&ctx, acts[1], try clipped(&ctx, a, try add(&ctx, gHid, qh)))
                    }
                    let z = try slice(&ctx, zr, [batch, H], strides: [Sym(2 * h), 1], base: 0)
                    // h = (1 − z)·n + z·h_prev = n + z·(h_prev − n)
                    let diff = try binary(&ctx, .sub, hPrev, n, shape: [batch, H])
                    hPrev = try add(&ctx, n, try binary(&ctx, .mul, z, diff, shape: [batch, H]))
                }
                hOut[t] = hPrev
            }
            for t in 0..<seq {
                guard let v = hOut[t] else { throw InLoopError(.internal, "\(op) step \(t) not computed") }
                hs[d].append(v)
                if let c = cOut[t] { cs[d].append(c) }
            }
        }

        // Outputs: Y (every hidden state), Y_h and Y_c (the last state of each direction).
        let outputs = ctx.outputTypes.count
        if outputs > 0 {
            var parts: [Value] = []
            for t in 0..<seq { for d in 0..<dirs { parts.append(hs[d][t]) } }
            try concat(&ctx, parts, output: 0, layout: a.layout, batch: batch, h: h)
        }
        func last(_ list: [[Value]], _ d: Int) -> Value? {
            let backward = a.direction == .reverse || d == 1
            return backward ? list[d].first : list[d].last
        }
        if outputs > 1 {
            var parts: [Value] = []
            for d in 0..<dirs { if let v = last(hs, d) { parts.append(v) } }
            try concat(&ctx, parts, output: 1, layout: a.layout, batch: batch, h: h)
        }
        if outputs > 2 {
            var parts: [Value] = []
            for d in 0..<dirs { if let v = last(cs, d) { parts.append(v) } }
            try concat(&ctx, parts, output: 2, layout: a.layout, batch: batch, h: h)
        }
    }

    // MARK: - Step emitters (each returns a new storage)

    /// y (contiguous, shape `dims`) = x[base + Σ i·strides]: a `.layoutCopy`.
    static func slice(_ ctx: inout Engine.LoweringContext, _ x: Value, _ dims: [Sym], strides: [Sym], base: Sym) throws(InLoopError) -> Value {
        let size = try ctx.extent(dims, "a recurrent slice")
        let covers = size == ctx.builder.storages[Int(x.id)].size
        let geometry = try Engine.Layout.gatherGeometry(ctx, dims: dims, xStrides: strides, xBase: base, coversSource: covers)
        let y = ctx.temporary(size)
        ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [x.id, y])
        return Value(id: y, shape: dims)
    }

    /// Direction d's block of a [dirs, …] weight (the storage itself when there is one direction).
    static func directionSlice(_ ctx: inout Engine.LoweringContext, _ x: Value, _ d: Int, dirs: Int, _ dims: [Sym]) throws(InLoopError) -> Value {
        if dirs == 1 { return Value(id: x.id, shape: dims) }
        let inner = try Engine.Layout.strides(dims)
        let count = try Engine.linear(dims.count > 0 ? dims[0] * (inner.first ?? 1) : 1, "a weight's size")
        return try slice(&ctx, x, dims, strides: inner, base: try Engine.linear(Sym(d) * count, "a weight's offset"))
    }

    /// Direction d's initial state (input k: initial_h or initial_c) as [batch, h], or zeros.
    static func initialState(_ ctx: inout Engine.LoweringContext, _ a: RecurrentAttributes, _ k: Int, _ d: Int, dirs: Int,
                             batch: Sym, h: Int) throws(InLoopError) -> Value {
        let dims = [batch, Sym(h)]
        guard ctx.hasInput(k) else {
            let size = try ctx.extent(dims)
            let z = ctx.temporary(size)
            ctx.emit(.zero(count: size), [z])
            return Value(id: z, shape: dims)
        }
        let x = Value(id: try ctx.input(k), shape: a.layout == 0 ? [Sym(dirs), batch, Sym(h)] : [batch, Sym(dirs), Sym(h)])
        if dirs == 1 { return Value(id: x.id, shape: dims) }
        if a.layout == 0 {
            let block = try Engine.linear(batch * Sym(h), "an initial state's size")
            return try slice(&ctx, x, dims, strides: [Sym(h), 1], base: try Engine.linear(Sym(d) * block, "an initial state's offset"))
        }
        return try slice(&ctx, x, dims, strides: [Sym(dirs * h), 1], base: Sym(d * h))
    }

    /// y = a·bᵀ (+ C): a [rows, k], b stored [cols, k]; C [rows, cols] (cRow = cols) or a row [1, cols]
    /// broadcast (cRow = 0).
    static func matMul(_ ctx: inout Engine.LoweringContext, _ a: Value, _ b: Value, c: Value?, cRow: Sym) throws(InLoopError) -> Value {
        guard a.shape.count == 2, b.shape.count == 2, a.shape[1] == b.shape[1] else {
            throw InLoopError(.internal, "recurrent product of \(a.shape.formatted) and \(b.shape.formatted)")
        }
        let dims = [a.shape[0], b.shape[0]]
        let geometry = MatMulGeometry.encode(rows: try ctx.extent([a.shape[0]]), inner: try ctx.extent([a.shape[1]]),
                                             cols: try ctx.extent([b.shape[0]]), transA: false, transB: true,
                                             cRowStride: try ctx.extent([cRow]), cColStride: Engine.Extent(fixed: 1), stack: [])
        let y = ctx.temporary(try ctx.extent(dims))
        ctx.emit(.matMul(geometry: ctx.ints(geometry), alpha: 1, beta: 1, hasC: c != nil, accumulate: false, activation: .identity),
                 [a.id, b.id] + (c.map { [$0.id] } ?? []) + [y])
        return Value(id: y, shape: dims)
    }

    /// y = a + b (same shapes).
    static func add(_ ctx: inout Engine.LoweringContext, _ a: Value, _ b: Value) throws(InLoopError) -> Value {
        guard a.shape == b.shape else { return try binary(&ctx, .add, a, b, shape: a.shape) }
        let size = try ctx.extent(a.shape)
        let y = ctx.temporary(size)
        ctx.emit(.add(count: size), [a.id, b.id, y])
        return Value(id: y, shape: a.shape)
    }

    /// y = op(a, b) broadcast to `shape`.
    static func binary(_ ctx: inout Engine.LoweringContext, _ op: BinaryOp, _ a: Value, _ b: Value, shape: [Sym]) throws(InLoopError) -> Value {
        let y = ctx.temporary(try ctx.extent(shape))
        try Engine.lowerBroadcast(op, &ctx, a: (a.id, a.shape), b: (b.id, b.shape), output: y, outputShape: shape)
        return Value(id: y, shape: shape)
    }

    static func activate(_ ctx: inout Engine.LoweringContext, _ f: RecurrentActivation, _ x: Value) throws(InLoopError) -> Value {
        let size = try ctx.extent(x.shape)
        let y = ctx.temporary(size)
        switch f {
        case .activation(let act): ctx.emit(.activation(act, count: size), [x.id, y])
        case .unary(let u): ctx.emit(.unary(u, count: size), [x.id, y])
        }
        return Value(id: y, shape: x.shape)
    }

    /// x clipped to [−clip, clip] when the node has a clip.
    static func clipped(_ ctx: inout Engine.LoweringContext, _ a: RecurrentAttributes, _ x: Value) throws(InLoopError) -> Value {
        guard let c = a.clip else { return x }
        return try activate(&ctx, .unary(.clip(min: -c, max: c)), x)
    }

    /// Output k = the [batch, h] parts in order along the sequence·direction axis: layout 0 stacks
    /// them ([parts, batch, h]), layout 1 interleaves them ([batch, parts, h]).
    static func concat(_ ctx: inout Engine.LoweringContext, _ parts: [Value], output k: Int, layout: Int, batch: Sym, h: Int) throws(InLoopError) {
        let y = try ctx.output(k)
        let partSize = try ctx.extent([batch, Sym(h)])
        if parts.count == 1 {
            ctx.emit(.copy(count: partSize), [parts[0].id, y])
            return
        }
        let total = parts.count
        let outer: Sym = layout == 0 ? 1 : batch, inner: Sym = layout == 0 ? try Engine.linear(batch * Sym(h), "\(total) states") : Sym(h)
        let o = try ctx.extent([outer]), i = try ctx.extent([inner])
        var g = [o.perBatch, o.fixed, i.perBatch, i.fixed, 0, total]
        let yStrides = try Engine.Layout.strides([outer, Sym(total), inner])
        for p in 0..<total {
            var slice: Int32 = -1
            if ctx.numerics == .differentiable {
                let geometry = try Engine.Layout.gatherGeometry(ctx, dims: [outer, 1, inner], xStrides: yStrides,
                                                                xBase: try Engine.linear(Sym(p) * inner, "a state's offset"), coversSource: false)
                slice = ctx.ints(geometry)
            }
            g += [0, 1, Int(slice)]
        }
        ctx.emit(.concat(geometry: ctx.ints(g), parts: total), parts.map(\.id) + [y])
    }
}
