/// ONNX Pad and Einsum (issue 10, phase 6 of `docs/ENGINE.md`).
///
/// Pad lowers to one `pad` step (index maps per axis, `Kernels/Reduce.swift`), whose adjoint is a
/// scatter-add and whose tangent is the pad of the tangent. Einsum lowers to existing steps: sums
/// over letters only one operand has (`reduce`), transposes (`layoutCopy`, only where an operand is
/// not already in a matrix order; diagonals of a letter repeated in one operand) and one batched matrix
/// product (`matMul`); its derivatives are those steps' rules.

// MARK: - Pad

public enum PadOp: OpDefinition {
    public enum Mode: String, Sendable, Equatable { case constant, reflect, edge, wrap }
    public struct Attributes: OpAttributeSet, Equatable {
        public var mode: Mode
        /// Before opset 11: the pads and the constant as attributes (nil from 11 on: inputs 1 and 2).
        public var pads: [Int]?
        public var value: Double
        public func encoded() -> [String: Engine.AttributeValue] {
            var out: [String: Engine.AttributeValue] = ["mode": .string(mode.rawValue)]
            if let pads { out["pads"] = .ints(pads); out["value"] = .float(value) }
            return out
        }
    }
    public static let name = "Pad"
    public static let inputArity: ClosedRange<Int> = 1...4
    /// Index-map entries a plan may hold for one Pad (Σ of the padded output dimensions).
    static let maxMapEntries = 1 << 24

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let m = try raw.string("mode") ?? "constant"
        guard let mode = Mode(rawValue: m) else { throw InLoopError(.format, "attribute 'mode' is '\(m)'; Pad takes constant, reflect, edge or wrap") }
        if mode == .wrap && opset > 0 && opset < 19 { throw InLoopError(.format, "mode 'wrap' exists from opset 19") }
        if opset >= 11 {
            guard raw["pads"] == nil, raw["paddings"] == nil, raw["value"] == nil else {
                throw InLoopError(.format, "from opset 11, pads and the constant value are inputs, not attributes")
            }
            return Attributes(mode: mode, pads: nil, value: 0)
        }
        let given = try raw.ints("pads"), legacy = try raw.ints("paddings")
        guard let pads = given ?? legacy else { throw InLoopError(.format, "attribute 'pads' is required before opset 11") }
        let value = try raw.float("value") ?? 0
        guard value.isFinite || value.isInfinite else { throw InLoopError(.format, "attribute 'value' is NaN") }
        return Attributes(mode: mode, pads: pads, value: value)
    }

    /// Per axis of x: (begin, end) pads (negative: removed).
    static func pads(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?], rank r: Int) throws(InLoopError) -> [(Int, Int)] {
        let list: [Int]
        var axes = Array(0..<r)
        if let p = a.pads {
            list = p
        } else {
            guard let p = try Engine.knownList(inputs, known, 1, "pads") else { throw InLoopError(.format, "input 1 (pads) is required") }
            list = p
            if let ax = try Engine.knownList(inputs, known, 3, "axes") { axes = try Engine.axes(ax, rank: r) }
        }
        guard list.count == 2 * axes.count else {
            throw InLoopError(.format, "pads has \(list.count) values for \(axes.count) axes (two per axis)")
        }
        var out = [(Int, Int)](repeating: (0, 0), count: r)
        for (i, ax) in axes.enumerated() {
            let b = list[i], e = list[i + axes.count]
            guard abs(b) <= Limits.maxDimension, abs(e) <= Limits.maxDimension else {
                throw InLoopError(.format, "pads \(b), \(e) on axis \(ax) exceed \(Limits.maxDimension)")
            }
            out[ax] = (b, e)
        }
        return out
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        guard x.dtype.isFloatingPoint else { throw InLoopError(.unsupported, "Pad of \(x.dtype) values; InLoop pads floating values") }
        if inputs.count > 2, let v = inputs[2] {
            guard v.dtype == x.dtype, v.shape.elementCount?.known == 1 else {
                throw InLoopError(.format, "constant_value must be one \(x.dtype) value, got \(v)")
            }
        }
        let p = try pads(a, inputs, known, rank: x.rank)
        var shape = x.shape
        for d in 0..<x.rank where p[d] != (0, 0) {
            guard let s = x.shape[d] + Engine.SymInt(p[d].0 + p[d].1) else { throw Engine.notLinear("Pad of axis \(d)") }
            if let k = s.known, k < 0 { throw InLoopError(.format, "pads \(p[d]) remove more than axis \(d)'s \(x.shape[d]) elements") }
            if a.mode != .constant, let k = x.shape[d].known, k == 0, s.known != 0 {
                throw InLoopError(.format, "\(a.mode.rawValue) padding of the empty axis \(d)")
            }
            shape[d] = s
        }
        return [Engine.TensorType(x.dtype, shape)]
    }

    /// The input index output index o of an axis of `n` elements reads (begin pad b), or −1 for the constant.
    static func source(_ o: Int, begin b: Int, count n: Int, mode: Mode) -> Int {
        let i = o - b
        if i >= 0 && i < n { return i }
        switch mode {
        case .constant: return -1
        case .edge: return i < 0 ? 0 : n - 1
        case .wrap: return ((i % n) + n) % n
        case .reflect:
            if n == 1 { return 0 }
            let period = 2 * (n - 1)
            let j = ((i % period) + period) % period
            return j < n ? j : period - j
        }
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let known = ctx.node.inputs.indices.map { ctx.knownInput($0) }
        let p = try pads(a, ctx.inputTypes, known, rank: x.rank)
        guard let first = p.firstIndex(where: { $0 != (0, 0) }) else { try ctx.aliasOrFold(output: 0, input: 0); return }
        let yShape = ctx.outputTypes[0].shape
        var inS: [Int] = [], outS: [Int] = [], maps: [Int] = []
        for d in first..<x.rank {
            guard let n = x.shape[d].known, let m = yShape[d].known else {
                throw Engine.notLinear("Pad of a symbolic axis, or of an axis before one")
            }
            inS.append(n); outS.append(m)
            guard maps.count + m <= maxMapEntries else { throw InLoopError(.unsupported, "Pad to \(yShape.formatted): too many positions") }
            if n == 0 && a.mode != .constant && m > 0 { throw InLoopError(.format, "\(a.mode.rawValue) padding of an empty axis") }
            for o in 0..<m { maps.append(source(o, begin: p[d].0, count: n, mode: a.mode)) }
        }
        let outer = try ctx.extent(Array(x.shape[..<first]), "the axes before the first padded one")
        let hasValue = a.mode == .constant && ctx.hasInput(2)
        let value = hasValue ? 0 : a.value
        ctx.unfold(output: 0)
        let geometry = ctx.ints([NormKernels.bits(value), inS.count] + inS + outS + maps)
        var ops = [try ctx.input(0)]
        if hasValue { ops.append(try ctx.input(2)) }
        ctx.emit(.pad(geometry: geometry, outer: outer, hasValue: hasValue), ops + [try ctx.output(0)])
    }
}

// MARK: - Einsum

public enum EinsumOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var equation: String
        public func encoded() -> [String: Engine.AttributeValue] { ["equation": .string(equation)] }
    }
    public static let name = "Einsum"
    public static let inputArity: ClosedRange<Int> = 1...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        guard let e = try raw.string("equation") else { throw InLoopError(.format, "attribute 'equation' is required") }
        guard e.utf8.count <= 256 else { throw InLoopError(.format, "equation of \(e.utf8.count) characters") }
        for c in e.unicodeScalars where !(("a"..."z").contains(c) || ("A"..."Z").contains(c) || ",->. ".unicodeScalars.contains(c)) {
            throw InLoopError(.format, "equation '\(e)': character '\(c)'")
        }
        return Attributes(equation: e.filter { $0 != " " })
    }

    /// The equation with "..." expanded into letters of their own (one per broadcast axis, numbered
    /// from the right) for operands of the given ranks: each operand's letters and the output's.
    static func terms(_ equation: String, ranks: [Int]) throws(InLoopError) -> (inputs: [[Character]], output: [Character]) {
        // '-' only in "->", at most once
        let chars = Array(equation)
        for (i, c) in chars.enumerated() {
            if c == "-" && (i + 1 == chars.count || chars[i + 1] != ">") || c == ">" && (i == 0 || chars[i - 1] != "-") {
                throw InLoopError(.format, "equation '\(equation)': '-' and '>' only as '->'")
            }
        }
        let sides = equation.filter { $0 != "-" }.split(separator: ">", omittingEmptySubsequences: false).map(String.init)
        guard sides.count <= 2 else { throw InLoopError(.format, "equation '\(equation)' has more than one '->'") }
        let ins = sides[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard ins.count == ranks.count else {
            throw InLoopError(.format, "equation '\(equation)' has \(ins.count) operands, the node \(ranks.count) inputs")
        }
        // "..." stands for the same leading axes in every operand (refused when the counts differ)
        let ellipsisLetters: [Character] = (0..<Engine.maxRank).map { Character(Unicode.Scalar(UInt32(0x100 + $0))!) }
        var ellipsis: Int? = nil
        func expand(_ s: String, rank: Int?) throws(InLoopError) -> [Character] {
            let t = Array(s)
            guard let dot = t.firstIndex(of: ".") else { return t }
            guard dot + 3 <= t.count, t[dot + 1] == ".", t[dot + 2] == ".", !t[(dot + 3)...].contains(".") else {
                throw InLoopError(.format, "equation '\(equation)': '.' other than one '...' in a term")
            }
            let parts = [t[..<dot], t[(dot + 3)...]]
            let letters = parts[0].count + parts[1].count
            let count: Int
            if let rank {
                guard rank >= letters, rank - letters <= Engine.maxRank else { throw InLoopError(.format, "equation '\(equation)': term '\(s)' for rank \(rank)") }
                count = rank - letters
                if let e = ellipsis, e != count {
                    throw InLoopError(.unsupported, "equation '\(equation)': '...' of different ranks (broadcast) is not supported")
                }
                ellipsis = count
            } else {
                guard let e = ellipsis else { throw InLoopError(.format, "equation '\(equation)': '...' in the output only") }
                count = e
            }
            return Array(parts[0]) + Array(ellipsisLetters[..<count]) + Array(parts[1])
        }
        var inputs: [[Character]] = []
        for (k, s) in ins.enumerated() { inputs.append(try expand(s, rank: ranks[k])) }
        for (k, t) in inputs.enumerated() where t.count != ranks[k] {
            throw InLoopError(.format, "equation '\(equation)': term \(k) has \(t.count) letters for an input of rank \(ranks[k])")
        }
        var output: [Character]
        if sides.count == 2 {
            output = try expand(sides[1], rank: nil)
        } else {
            // implicit: the broadcast axes, then the letters that appear once, in alphabetical order
            var count: [Character: Int] = [:]
            for t in inputs { for c in t { count[c, default: 0] += 1 } }
            output = Array(ellipsisLetters[..<(ellipsis ?? 0)]) + count.keys.filter { count[$0] == 1 && $0.isASCII }.sorted()
        }
        guard Set(output).count == output.count else { throw InLoopError(.format, "equation '\(equation)': a letter twice in the output") }
        guard output.count <= Engine.maxRank else { throw InLoopError(.unsupported, "equation '\(equation)': output of rank \(output.count)") }
        return (inputs, output)
    }

    /// Each letter's dimension (equal in every operand that has it).
    static func dims(_ terms: [[Character]], _ types: [Engine.TensorType], _ equation: String) throws(InLoopError) -> [Character: Engine.SymInt] {
        var out: [Character: Engine.SymInt] = [:]
        for (k, t) in terms.enumerated() {
            for (i, c) in t.enumerated() {
                let d = types[k].shape[i]
                if let e = out[c], e != d {
                    throw InLoopError(.format, "equation '\(equation)': letter '\(c)' has sizes \(e) and \(d)")
                }
                out[c] = d
            }
        }
        return out
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        var types: [Engine.TensorType] = []
        for k in 0..<inputs.count { types.append(try Engine.input(inputs, k)) }
        guard let t0 = types.first, t0.dtype.isFloatingPoint, types.allSatisfy({ $0.dtype == t0.dtype }) else {
            throw InLoopError(.unsupported, "Einsum takes operands of one floating type")
        }
        let (ins, out) = try terms(a.equation, ranks: types.map(\.rank))
        let d = try dims(ins, types, a.equation)
        var shape: Engine.Shape = []
        for c in out {
            guard let s = d[c] else { throw InLoopError(.format, "equation '\(a.equation)': output letter '\(c)' is in no operand") }
            shape.append(s)
        }
        return [Engine.TensorType(t0.dtype, shape)]
    }

    /// Emits y = x with its axes in the order `to` (x's letters `from`), into `output` or a temporary.
    static func permute(_ ctx: inout Engine.LoweringContext, _ x: Int32, from: [Character], to: [Character],
                        dims: [Character: Engine.SymInt], output: Int32?) throws(InLoopError) -> Int32 {
        let shape = from.compactMap { dims[$0] }
        let xs = try Engine.Layout.strides(shape)
        let perm = to.compactMap { from.firstIndex(of: $0) }
        let count = try ctx.extent(shape, "an Einsum operand")
        let y = output ?? ctx.temporary(count)
        let geometry = try Engine.Layout.gatherGeometry(ctx, dims: perm.map { shape[$0] }, xStrides: perm.map { xs[$0] }, xBase: 0,
                                                         coversSource: true)
        ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [x, y])
        return y
    }

    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        var types: [Engine.TensorType] = []
        for k in 0..<ctx.node.inputs.count { types.append(try Engine.input(ctx.inputTypes, k)) }
        var (terms, out) = try terms(a.equation, ranks: types.map(\.rank))
        let dims = try dims(terms, types, a.equation)
        ctx.unfold(output: 0)
        let y = try ctx.output(0)
        var operands: [Int32] = []
        for k in terms.indices { operands.append(try ctx.input(k)) }
        // 0. a letter repeated in one operand takes its diagonal: a strided copy whose stride along the
        // letter is the sum of the strides of its axes
        for k in terms.indices where Set(terms[k]).count != terms[k].count {
            let shape = terms[k].compactMap { dims[$0] }
            let xs = try Engine.Layout.strides(shape)
            var unique: [Character] = [], strides: [Engine.SymInt] = []
            for (i, c) in terms[k].enumerated() {
                if let j = unique.firstIndex(of: c) {
                    strides[j] = try Engine.linear(strides[j] + xs[i], "the diagonal of an Einsum operand")
                } else {
                    unique.append(c); strides.append(xs[i])
                }
            }
            let udims = unique.compactMap { dims[$0] }
            let d = ctx.temporary(try ctx.extent(udims, "an Einsum diagonal"))
            let geometry = try Engine.Layout.gatherGeometry(ctx, dims: udims, xStrides: strides, xBase: 0, coversSource: false)
            ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [operands[k], d])
            operands[k] = d
            terms[k] = unique
        }
        // 1. letters of one operand that are in no other term: summed away first
        for k in terms.indices {
            let others = Set(out + terms.indices.filter { $0 != k }.flatMap { terms[$0] })
            let axes = terms[k].indices.filter { !others.contains(terms[k][$0]) }
            guard !axes.isEmpty else { continue }
            let kept = terms[k].filter { others.contains($0) }
            let shape = terms[k].compactMap { dims[$0] }
            let direct = terms.count == 1 && kept == out
            let target = direct ? y : ctx.temporary(try ctx.extent(kept.compactMap { dims[$0] }, "an Einsum operand"))
            try Engine.lowerReduction(&ctx, x: operands[k], shape: shape, axes: axes, first: .sum, combine: .sum, final: nil, output: target)
            operands[k] = target
            terms[k] = kept
            if direct { return }
        }
        if terms.count == 1 {
            if terms[0] == out {
                ctx.emit(.copy(count: try ctx.outputExtent(0)), [operands[0], y])
            } else {
                _ = try permute(&ctx, operands[0], from: terms[0], to: out, dims: dims, output: y)
            }
            return
        }
        // 2. one batched product: batch letters (both operands and the output), M (A and the output),
        // N (B and the output), K (both operands only)
        let ta = terms[0], tb = terms[1]
        let batch = out.filter { ta.contains($0) && tb.contains($0) }
        let mLetters = out.filter { ta.contains($0) && !tb.contains($0) }
        let nLetters = out.filter { tb.contains($0) && !ta.contains($0) }
        let kLetters = ta.filter { tb.contains($0) && !out.contains($0) }
        func extent(_ letters: [Character], _ what: String) throws(InLoopError) -> Engine.Extent {
            try ctx.extent(letters.compactMap { dims[$0] }, what)
        }
        // an operand already in [batch, M, K] or [batch, K, M] order is read in place (transposed flag)
        var a0 = operands[0], b0 = operands[1], transA = false, transB = false
        if ta == batch + kLetters + mLetters && !mLetters.isEmpty && !kLetters.isEmpty { transA = true }
        else if ta != batch + mLetters + kLetters { a0 = try permute(&ctx, a0, from: ta, to: batch + mLetters + kLetters, dims: dims, output: nil) }
        if tb == batch + nLetters + kLetters && !nLetters.isEmpty && !kLetters.isEmpty { transB = true }
        else if tb != batch + kLetters + nLetters { b0 = try permute(&ctx, b0, from: tb, to: batch + kLetters + nLetters, dims: dims, output: nil) }
        let rows = try extent(mLetters, "Einsum's rows"), inner = try extent(kLetters, "Einsum's contraction")
        let cols = try extent(nLetters, "Einsum's columns")
        var stack: [(dim: Engine.Extent, a: Engine.Extent, b: Engine.Extent, y: Engine.Extent)] = []
        if !batch.isEmpty {
            stack.append((try extent(batch, "Einsum's batch"), try extent(mLetters + kLetters, "an Einsum stride"),
                          try extent(kLetters + nLetters, "an Einsum stride"), try extent(mLetters + nLetters, "an Einsum stride")))
        }
        let product = batch + mLetters + nLetters
        let target = product == out ? y : ctx.temporary(try ctx.outputExtent(0))
        let geometry = MatMulGeometry.encode(rows: rows, inner: inner, cols: cols, transA: transA, transB: transB, stack: stack)
        ctx.emit(.matMul(geometry: ctx.ints(geometry), alpha: 1, beta: 0, hasC: false, accumulate: false, activation: .identity),
                 [a0, b0, target])
        if product != out { _ = try permute(&ctx, target, from: product, to: out, dims: dims, output: y) }
    }
}
