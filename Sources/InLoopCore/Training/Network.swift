/// The architecture of a trainable layer stack, without its weights. Mirrors `Layer` (the inference
/// layers) but is independent of the scalar type; normalisation vectors are data, not parameters.
public indirect enum LayerSpec: Equatable, Sendable {
    case dense(inputs: Int, outputs: Int, activation: Activation, bias: Bool)
    case activation(Activation)
    case normalize(mean: [Double], std: [Double])
    case denormalize(mean: [Double], std: [Double])
    case residual([LayerSpec])

    /// Trainable values of this layer (nested ones included).
    public var parameterCount: Int {
        switch self {
        case .dense(let i, let o, _, let b): return i * o + (b ? o : 0)
        case .activation, .normalize, .denormalize: return 0
        case .residual(let inner): return inner.reduce(0) { $0 + $1.parameterCount }
        }
    }

    /// `parameterCount` of a stack whose sizes are not validated yet: every layer size within
    /// `Limits.maxDimension`, the count within `Limits.maxElements`, or an error naming the layer.
    public static func checkedParameterCount(_ layers: [LayerSpec], path: String = "layers") throws(InLoopError) -> Int {
        var total = 0
        for (i, layer) in layers.enumerated() {
            let at = "\(path)[\(i)]"
            var n = 0
            switch layer {
            case .dense(let nIn, let nOut, _, let b):
                try Limits.dimension(nIn, "\(at): dense inputs", min: 1)
                try Limits.dimension(nOut, "\(at): dense outputs", min: 1)
                n = try Limits.sum(try Limits.product(nIn, nOut, "\(at): dense weight"), b ? nOut : 0, "\(at): dense parameters")
            case .activation, .normalize, .denormalize: n = 0
            case .residual(let inner): n = try checkedParameterCount(inner, path: "\(at).layers")
            }
            total = try Limits.sum(total, n, "parameter count")
            guard total <= Limits.maxElements else {
                throw InLoopError(.format, "\(at): the network has more than \(Limits.maxElements) parameters")
            }
        }
        return total
    }
}

/// A differentiable layer stack in scalar type `T`: forward with the values backward needs, reverse
/// mode (gradients of the parameters and of the input), and forward mode (tangent-linear).
///
/// Parameters live in one flat buffer (each dense layer's `[out, in]` weight, then its bias), so an
/// optimizer, gradient clipping, a checkpoint or an MPI all-reduce treats them as one vector. Work
/// buffers are sized for the largest batch seen and reused: steady-state calls allocate nothing.
public final class Network<T: Real> {
    public let inputSize: Int
    public private(set) var outputSize = 0
    public let layers: [LayerSpec]
    public let parameters: Buffer<T>
    /// d(loss)/d(parameters) after `backward(..., parameterGradients: true)`.
    public let gradients: Buffer<T>
    public var parameterCount: Int { parameters.count }

    enum Kind { case dense, activation, normalize, denormalize, add, copy }
    struct Op {
        var kind: Kind
        var src: Int
        var src2: Int = 0
        var dst: Int
        var cols: Int
        var inCols: Int = 0
        var weight: Int = 0        // offset into parameters
        var bias: Int = -1         // offset, or -1
        var activation: Activation = .identity
        var constant: Int = -1     // index into constants (mean, std)
        /// In the backward pass, whether this op's contribution to src's (src2's) gradient is the
        /// first one (in reverse order): it then writes instead of accumulating, so the gradient
        /// buffers need no zeroing.
        var firstToSrc = false
        var firstToSrc2 = false
    }

    private(set) var ops: [Op] = []
    private var sizes: [Int] = []
    private var constants: [(mean: Buffer<T>, std: Buffer<T>)] = []
    /// Per dense layer (in layer order): parameter offsets, for conversions and initialisation.
    public private(set) var denseLayers: [(weight: Int, bias: Int?, inputs: Int, outputs: Int, activation: Activation)] = []

    // Work memory, grown to `capacity` samples.
    private var capacity = 0
    private var values: [Buffer<T>] = []
    private var grads: [Buffer<T>] = []
    private var tangents: [Buffer<T>] = []
    private var inputPointer: UnsafePointer<T>? = nil
    private var lastBatch = 0
    /// Values whose gradient no op writes (zeroed in each backward pass).
    private var unreachedValues: [Int] = []

    public init(inputSize: Int, layers: [LayerSpec], parameters initial: [T]? = nil) throws(InLoopError) {
        guard inputSize >= 1 else { throw InLoopError(.invalidArgument, "network input size must be at least 1") }
        try Limits.dimension(inputSize, "network input size", min: 1)
        self.inputSize = inputSize
        self.layers = layers
        let count = try LayerSpec.checkedParameterCount(layers)
        parameters = try Buffer<T>(count: count)
        gradients = try Buffer<T>(count: count)
        if let initial {
            guard initial.count == count else {
                throw InLoopError(.sizeMismatch, "network has \(count) parameters, \(initial.count) given")
            }
            for (i, v) in initial.enumerated() { parameters.base[i] = v }
        }
        sizes = [inputSize]
        var offset = 0
        let (out, size) = try compile(layers, input: 0, size: inputSize, offset: &offset, path: "layers")
        var final = out
        if final == 0 {
            final = newValue(size)
            ops.append(Op(kind: .copy, src: 0, dst: final, cols: size))
        }
        finalValue = final
        outputSize = size
        // Backward order: the first op to reach a value's gradient writes it; later ones add.
        var reached = Set([finalValue])
        for i in ops.indices.reversed() {
            ops[i].firstToSrc = reached.insert(ops[i].src).inserted
            if ops[i].kind == .add { ops[i].firstToSrc2 = reached.insert(ops[i].src2).inserted }
        }
        unreachedValues = sizes.indices.filter { !reached.contains($0) }
    }

    private func newValue(_ size: Int) -> Int {
        sizes.append(size)
        return sizes.count - 1
    }

    private func compile(_ layers: [LayerSpec], input: Int, size: Int, offset: inout Int,
                         path: String) throws(InLoopError) -> (Int, Int) {
        var cur = input, size = size
        for (i, layer) in layers.enumerated() {
            let at = "\(path)[\(i)]"
            switch layer {
            case .dense(let nIn, let nOut, let act, let hasBias):
                guard nIn == size, nOut >= 1 else {
                    throw InLoopError(.format, "\(at): dense layer takes \(nIn) inputs but receives \(size)")
                }
                let z = newValue(nOut)
                let w = offset
                offset += nIn * nOut
                var b = -1
                if hasBias { b = offset; offset += nOut }
                ops.append(Op(kind: .dense, src: cur, dst: z, cols: nOut, inCols: nIn, weight: w, bias: b))
                denseLayers.append((w, hasBias ? b : nil, nIn, nOut, act))
                cur = z
                if act != .identity {
                    let a = newValue(nOut)
                    ops.append(Op(kind: .activation, src: z, dst: a, cols: nOut, activation: act))
                    cur = a
                }
                size = nOut
            case .activation(let act):
                if act == .identity { continue }
                let a = newValue(size)
                ops.append(Op(kind: .activation, src: cur, dst: a, cols: size, activation: act))
                cur = a
            case .normalize(let mean, let std), .denormalize(let mean, let std):
                guard mean.count == size, std.count == size else {
                    throw InLoopError(.format, "\(at): normalisation vectors have \(mean.count)/\(std.count) values but the layer receives \(size)")
                }
                guard std.allSatisfy({ $0 > 0 && $0.isFinite }), mean.allSatisfy({ $0.isFinite }) else {
                    throw InLoopError(.format, "\(at): normalisation needs finite means and finite std > 0")
                }
                let m = try Buffer<T>(count: size), s = try Buffer<T>(count: size)
                for k in 0..<size { m.base[k] = T(mean[k]); s.base[k] = T(std[k]) }
                constants.append((m, s))
                let dst = newValue(size)
                var kind = Kind.normalize
                if case .denormalize = layer { kind = .denormalize }
                ops.append(Op(kind: kind, src: cur, dst: dst, cols: size, constant: constants.count - 1))
                cur = dst
            case .residual(let inner):
                guard !inner.isEmpty else { throw InLoopError(.format, "\(at): residual block has no layers") }
                let (res, s) = try compile(inner, input: cur, size: size, offset: &offset, path: "\(at).layers")
                guard s == size else {
                    throw InLoopError(.format, "\(at): residual block maps \(size) values to \(s); it must preserve the size")
                }
                let dst = newValue(size)
                ops.append(Op(kind: .add, src: cur, src2: res, dst: dst, cols: size))
                cur = dst
            }
        }
        return (cur, size)
    }

    // MARK: Memory

    private func ensure(batch: Int, gradients needGrads: Bool, tangents needTangents: Bool) throws(InLoopError) {
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        if batch > capacity {
            values = []
            grads = []
            tangents = []
            for s in sizes { values.append(try Buffer<T>(count: try Limits.arrayCount(batch: batch, perSample: s))) }
            capacity = batch
        }
        if needGrads, grads.isEmpty { for s in sizes { grads.append(try Buffer<T>(count: try Limits.arrayCount(batch: capacity, perSample: s))) } }
        if needTangents, tangents.isEmpty { for s in sizes { tangents.append(try Buffer<T>(count: try Limits.arrayCount(batch: capacity, perSample: s))) } }
    }

    private func valuePointer(_ v: Int) -> UnsafeMutablePointer<T> { values[v].base }
    /// The value holding the network's output (the last op produces it).
    private var finalValue = 0

    /// Values of value `v` for the last forward: the input is the caller's array.
    private func read(_ v: Int) -> UnsafePointer<T> {
        if v == 0, let inputPointer { return inputPointer }
        return UnsafePointer(values[v].base)
    }

    // MARK: Forward

    /// Runs the network on `batch` samples (`batch × inputSize` values, sample after sample) and keeps
    /// what `backward` and `tangent` need. Returns the output (`batch × outputSize`), valid until the
    /// next call. `x` must stay valid and unchanged until `backward`/`tangent` have run.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    @discardableResult
    public func forward(_ x: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        try ensure(batch: batch, gradients: false, tangents: false)
        inputPointer = x
        lastBatch = batch
        let n = batch
        let p = UnsafePointer(parameters.base)
        for op in ops {
            let dst = values[op.dst].base
            switch op.kind {
            case .dense:
                let src = read(op.src)
                T.gemm(transA: false, transB: true, m: n, n: op.cols, k: op.inCols, alpha: 1, a: src, lda: op.inCols,
                       b: p + op.weight, ldb: op.inCols, beta: 0, c: dst, ldc: op.cols)
                if op.bias >= 0 {
                    let b = p + op.bias
                    for r in 0..<n { let row = dst + r * op.cols; for c in 0..<op.cols { row[c] += b[c] } }
                }
            case .activation:
                Kernels.activate(op.activation, read(op.src), into: dst, count: n * op.cols, numerics: .differentiable)
            case .normalize, .denormalize:
                let src = read(op.src)
                let (m, s) = constants[op.constant]
                for r in 0..<n {
                    let a = src + r * op.cols, d = dst + r * op.cols
                    if op.kind == .normalize {
                        for c in 0..<op.cols { d[c] = (a[c] - m.base[c]) / s.base[c] }
                    } else {
                        for c in 0..<op.cols { d[c] = a[c] * s.base[c] + m.base[c] }
                    }
                }
            case .add:
                let a = read(op.src), b = read(op.src2)
                for i in 0..<(n * op.cols) { dst[i] = a[i] + b[i] }
            case .copy:
                dst.update(from: read(op.src), count: n * op.cols)
            }
        }
        return read(finalValue)
    }

    // MARK: Reverse mode

    /// Back-propagates `dy` (`batch × outputSize`, d loss/d output) through the last `forward`.
    /// With `parameterGradients`, `gradients` receives d loss/d parameters (overwritten); with
    /// `inputGradient`, d loss/d input is written there (`batch × inputSize`).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(_ dy: UnsafePointer<T>, batch: Int, parameterGradients: Bool,
                         inputGradient: UnsafeMutablePointer<T>? = nil) throws(InLoopError) {
        guard batch == lastBatch, inputPointer != nil else {
            throw InLoopError(.invalidArgument, "backward needs a forward on the same batch first")
        }
        try ensure(batch: batch, gradients: true, tangents: false)
        let n = batch
        for v in unreachedValues { grads[v].base.update(repeating: 0, count: n * sizes[v]) }
        grads[finalValue].base.update(from: dy, count: n * outputSize)
        let p = UnsafePointer(parameters.base)
        let g = gradients.base
        for op in ops.reversed() {
            let gOut = UnsafePointer(grads[op.dst].base)
            let first = op.firstToSrc
            switch op.kind {
            case .dense:
                let x = read(op.src)
                if parameterGradients {
                    // dW[out, in] = dzᵀ · x ; db = column sums of dz
                    T.gemm(transA: true, transB: false, m: op.cols, n: op.inCols, k: n, alpha: 1, a: gOut, lda: op.cols,
                           b: x, ldb: op.inCols, beta: 0, c: g + op.weight, ldc: op.inCols)
                    if op.bias >= 0 {
                        let db = g + op.bias
                        db.update(repeating: 0, count: op.cols)
                        for r in 0..<n { let row = gOut + r * op.cols; for c in 0..<op.cols { db[c] += row[c] } }
                    }
                }
                if op.src != 0 || inputGradient != nil {
                    // dx (+)= dz · W
                    T.gemm(transA: false, transB: false, m: n, n: op.inCols, k: op.cols, alpha: 1, a: gOut, lda: op.cols,
                           b: p + op.weight, ldb: op.inCols, beta: first ? 0 : 1, c: grads[op.src].base, ldc: op.inCols)
                } else if first {
                    grads[op.src].base.update(repeating: 0, count: n * op.inCols)   // not wanted, but defined
                }
            case .activation:
                Kernels.activationBackward(op.activation, z: read(op.src), a: read(op.dst), gradient: gOut,
                                           into: grads[op.src].base, accumulate: !first, count: n * op.cols)
            case .normalize, .denormalize:
                let s = constants[op.constant].std.base, gIn = grads[op.src].base
                if first { gIn.update(repeating: 0, count: n * op.cols) }
                for r in 0..<n {
                    let gi = gIn + r * op.cols, go = gOut + r * op.cols
                    if op.kind == .normalize {
                        for c in 0..<op.cols { gi[c] += go[c] / s[c] }
                    } else {
                        for c in 0..<op.cols { gi[c] += go[c] * s[c] }
                    }
                }
            case .add:
                let ga = grads[op.src].base, gb = grads[op.src2].base
                if first { ga.update(from: gOut, count: n * op.cols) } else { for i in 0..<(n * op.cols) { ga[i] += gOut[i] } }
                if op.firstToSrc2 { gb.update(from: gOut, count: n * op.cols) } else { for i in 0..<(n * op.cols) { gb[i] += gOut[i] } }
            case .copy:
                let gi = grads[op.src].base
                if first { gi.update(from: gOut, count: n * op.cols) } else { for i in 0..<(n * op.cols) { gi[i] += gOut[i] } }
            }
        }
        if let inputGradient { inputGradient.update(from: grads[0].base, count: n * inputSize) }
    }

    // MARK: Forward mode

    /// Tangent-linear model at the point of the last `forward`: dy = J dx for each sample
    /// (`dx`: `batch × inputSize`). Returns dy (`batch × outputSize`), valid until the next call.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func tangent(_ dx: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        guard batch == lastBatch, inputPointer != nil else {
            throw InLoopError(.invalidArgument, "tangent needs a forward on the same batch first")
        }
        try ensure(batch: batch, gradients: false, tangents: true)
        let n = batch
        tangents[0].base.update(from: dx, count: n * inputSize)
        let p = UnsafePointer(parameters.base)
        for op in ops {
            let t = tangents[op.dst].base, tIn = UnsafePointer(tangents[op.src].base)
            switch op.kind {
            case .dense:
                T.gemm(transA: false, transB: true, m: n, n: op.cols, k: op.inCols, alpha: 1, a: tIn, lda: op.inCols,
                       b: p + op.weight, ldb: op.inCols, beta: 0, c: t, ldc: op.cols)
            case .activation:
                let z = read(op.src), a = read(op.dst)
                Kernels.activationBackward(op.activation, z: z, a: a, gradient: tIn, into: t, accumulate: false, count: n * op.cols)
            case .normalize, .denormalize:
                let s = constants[op.constant].std.base
                for r in 0..<n {
                    let ti = tIn + r * op.cols, to = t + r * op.cols
                    if op.kind == .normalize {
                        for c in 0..<op.cols { to[c] = ti[c] / s[c] }
                    } else {
                        for c in 0..<op.cols { to[c] = ti[c] * s[c] }
                    }
                }
            case .add:
                let tb = tangents[op.src2].base
                for i in 0..<(n * op.cols) { t[i] = tIn[i] + tb[i] }
            case .copy:
                t.update(from: tIn, count: n * op.cols)
            }
        }
        return UnsafePointer(tangents[finalValue].base)
    }
}
