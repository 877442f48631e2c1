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
/// optimizer, gradient clipping, a checkpoint or an MPI all-reduce treats them as one vector. The
/// network is the layer list's graph (`Engine.Graph(layerSpecs:...)`), compiled once into a
/// differentiable plan for every batch size and run by `Engine.Executor<T>`, which reads the weights
/// in place; work memory grows to the largest batch seen: steady-state calls allocate nothing.
public final class Network<T: Real> {
    public let inputSize: Int
    public private(set) var outputSize = 0
    public let layers: [LayerSpec]
    public let parameters: Buffer<T>
    /// d(loss)/d(parameters) after `backward(..., parameterGradients: true)`.
    public let gradients: Buffer<T>
    public var parameterCount: Int { parameters.count }
    /// A layer stack takes any batch size.
    public var fixedBatch: Int? { nil }
    /// Per dense layer (in layer order): parameter offsets, for conversions and initialisation.
    public private(set) var denseLayers: [(weight: Int, bias: Int?, inputs: Int, outputs: Int, activation: Activation)] = []

    public let graph: Engine.Graph
    let executor: Engine.Executor<T>
    /// The caller-visible results of `forward` and `tangent` (grown to the largest batch seen).
    private var output: Buffer<T>? = nil
    private var tangentOutput: Buffer<T>? = nil

    public init(inputSize: Int, layers: [LayerSpec], parameters initial: [T]? = nil) throws(InLoopError) {
        guard inputSize >= 1 else { throw InLoopError(.invalidArgument, "network input size must be at least 1") }
        try Limits.dimension(inputSize, "network input size", min: 1)
        self.inputSize = inputSize
        self.layers = layers
        let count = try LayerSpec.checkedParameterCount(layers)
        let p = try Buffer<T>(count: count), g = try Buffer<T>(count: count)
        parameters = p
        gradients = g
        if let initial {
            guard initial.count == count else {
                throw InLoopError(.sizeMismatch, "network has \(count) parameters, \(initial.count) given")
            }
            for (i, v) in initial.enumerated() { p.base[i] = v }
        }
        var offset = 0, dense: [(weight: Int, bias: Int?, inputs: Int, outputs: Int, activation: Activation)] = []
        outputSize = try Network.validate(layers, size: inputSize, offset: &offset, dense: &dense, path: "layers")
        denseLayers = dense
        // the graph's trainable tensors are views of the flat parameter buffer
        var views: [(offset: Int, shape: [Int])] = []
        for d in dense {
            views.append((d.weight, [d.outputs, d.inputs]))
            if let b = d.bias { views.append((b, [d.outputs])) }
        }
        var tensors: [Engine.Tensor] = []
        for v in views {
            tensors.append(try Engine.Tensor(shape: v.shape, storage: Engine.TensorStorage(
                borrowing: UnsafeMutableRawPointer(p.base + v.offset), dtype: T.dtype, count: v.shape.reduce(1, *), owner: p)))
        }
        graph = try Engine.Graph(layerSpecs: layers, inputSize: inputSize, dtype: T.dtype, parameters: tensors)
        let plan = try Engine.compile(graph, numerics: .differentiable)
        executor = try Engine.Executor<T>(plan: plan, graph: graph, sharing: (
            Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(p.base), dtype: T.dtype, count: count, owner: p),
            Engine.TensorStorage(borrowing: UnsafeMutableRawPointer(g.base), dtype: T.dtype, count: count, owner: g)))
    }

    /// Checks the layer sizes (errors name the layer) and lays out the parameters; returns the output size.
    private static func validate(_ layers: [LayerSpec], size: Int, offset: inout Int,
                                 dense: inout [(weight: Int, bias: Int?, inputs: Int, outputs: Int, activation: Activation)],
                                 path: String) throws(InLoopError) -> Int {
        var size = size
        for (i, layer) in layers.enumerated() {
            let at = "\(path)[\(i)]"
            switch layer {
            case .dense(let nIn, let nOut, let act, let hasBias):
                guard nIn == size, nOut >= 1 else {
                    throw InLoopError(.format, "\(at): dense layer takes \(nIn) inputs but receives \(size)")
                }
                let w = offset
                offset += nIn * nOut
                var b: Int? = nil
                if hasBias { b = offset; offset += nOut }
                dense.append((w, b, nIn, nOut, act))
                size = nOut
            case .activation:
                continue
            case .normalize(let mean, let std), .denormalize(let mean, let std):
                guard mean.count == size, std.count == size else {
                    throw InLoopError(.format, "\(at): normalisation vectors have \(mean.count)/\(std.count) values but the layer receives \(size)")
                }
                guard std.allSatisfy({ $0 > 0 && $0.isFinite }), mean.allSatisfy({ $0.isFinite }) else {
                    throw InLoopError(.format, "\(at): normalisation needs finite means and finite std > 0")
                }
            case .residual(let inner):
                guard !inner.isEmpty else { throw InLoopError(.format, "\(at): residual block has no layers") }
                let s = try validate(inner, size: size, offset: &offset, dense: &dense, path: "\(at).layers")
                guard s == size else {
                    throw InLoopError(.format, "\(at): residual block maps \(size) values to \(s); it must preserve the size")
                }
            }
        }
        return size
    }

    /// A buffer of at least `count` values, grown (the only allocation) when too small.
    private static func ensure(_ b: inout Buffer<T>?, _ count: Int) throws(InLoopError) -> UnsafeMutablePointer<T> {
        if let have = b, have.count >= count { return have.base }
        let new = try Buffer<T>(count: count)
        b = new
        return new.base
    }

    // MARK: Forward

    /// Runs the network on `batch` samples (`batch × inputSize` values, sample after sample) and keeps
    /// what `backward` and `tangent` need. Returns the output (`batch × outputSize`), valid until the
    /// next call. `x` must stay valid and unchanged until `backward`/`tangent` have run.
    @discardableResult
    public func forward(_ x: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        let y = try Network.ensure(&output, try Limits.arrayCount(batch: batch, perSample: outputSize))
        var xs = x, ys = y
        try withUnsafePointer(to: &xs) { (xp) throws(InLoopError) in
            try withUnsafePointer(to: &ys) { (yp) throws(InLoopError) in
                try executor.forward(batch, inputs: UnsafeBufferPointer(start: xp, count: 1), outputs: UnsafeBufferPointer(start: yp, count: 1))
            }
        }
        return UnsafePointer(y)
    }

    // MARK: Reverse mode

    /// Back-propagates `dy` (`batch × outputSize`, d loss/d output) through the last `forward`.
    /// With `parameterGradients`, `gradients` receives d loss/d parameters (overwritten); with
    /// `inputGradient`, d loss/d input is written there (`batch × inputSize`).
    public func backward(_ dy: UnsafePointer<T>, batch: Int, parameterGradients: Bool,
                         inputGradient: UnsafeMutablePointer<T>? = nil) throws(InLoopError) {
        var seed = dy
        try withUnsafePointer(to: &seed) { (sp) throws(InLoopError) in
            let seeds = UnsafeBufferPointer(start: sp, count: 1)
            if var gx = inputGradient {
                try withUnsafePointer(to: &gx) { (gp) throws(InLoopError) in
                    try executor.backward(batch, seeds: seeds, inputGradients: UnsafeBufferPointer(start: gp, count: 1),
                                          parameterGradients: parameterGradients)
                }
            } else {
                try executor.backward(batch, seeds: seeds, inputGradients: nil, parameterGradients: parameterGradients)
            }
        }
    }

    // MARK: Forward mode

    /// Tangent-linear model at the point of the last `forward`: dy = J dx for each sample
    /// (`dx`: `batch × inputSize`). Returns dy (`batch × outputSize`), valid until the next call.
    public func tangent(_ dx: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        let t = try Network.ensure(&tangentOutput, try Limits.arrayCount(batch: batch, perSample: outputSize))
        var xs = dx, ts = t
        try withUnsafePointer(to: &xs) { (xp) throws(InLoopError) in
            try withUnsafePointer(to: &ts) { (tp) throws(InLoopError) in
                try executor.tangent(batch, inputTangents: UnsafeBufferPointer(start: xp, count: 1),
                                     outputTangents: UnsafeBufferPointer(start: tp, count: 1))
            }
        }
        return UnsafePointer(t)
    }
}

extension Network {
    /// Per-sample Jacobians J[s] = ∂y/∂x at each of `batch` samples, written as `j[(s·nIn + i)·nOut + o]`
    /// = ∂y_o/∂x_i: the memory of a Fortran array J(n_out, n_in, batch). The one implementation
    /// (`networkJacobian`): nIn tangent-linear or nOut adjoint sweeps, whichever is fewer, batched in
    /// chunks so that memory stays bounded.
    public func jacobian(_ x: UnsafePointer<T>, batch: Int, into j: UnsafeMutablePointer<T>) throws(InLoopError) {
        try networkJacobian(self, x, batch: batch, into: j)
    }
}
