/// A fully connected layer y = W x + b (per sample), with a fused activation.
public struct Dense {
    /// `[out, in]`, PyTorch layout.
    public let weight: Tensor
    /// `[out]`, or nil for no bias.
    public let bias: Tensor?
    public let activation: Activation

    public var inFeatures: Int { weight.shape.count == 2 ? weight.shape[1] : 0 }
    public var outFeatures: Int { weight.shape.count == 2 ? weight.shape[0] : 0 }

    public init(weight: Tensor, bias: Tensor?, activation: Activation = .identity) throws(InLoopError) {
        guard weight.rank == 2 else {
            throw InLoopError(.format, "dense weight must have shape [out, in], got \(Tensor.format(weight.shape))")
        }
        // BLAS takes 32-bit sizes.
        guard weight.shape[0] <= Int(Int32.max), weight.shape[1] <= Int(Int32.max) else {
            throw InLoopError(.unsupported, "dense weight \(Tensor.format(weight.shape)) is larger than 2^31-1 in one dimension")
        }
        if let bias, bias.shape != [weight.shape[0]] {
            throw InLoopError(.format, "dense bias must have shape [\(weight.shape[0])] to match weight \(Tensor.format(weight.shape)), got \(Tensor.format(bias.shape))")
        }
        self.weight = weight
        self.bias = bias
        self.activation = activation
    }
}

/// Per-feature affine normalisation: `normalize` computes (x - mean) / std, `denormalize` x * std + mean.
public struct Normalization {
    public let mean: Tensor
    public let std: Tensor
    public var size: Int { mean.count }

    public init(mean: Tensor, std: Tensor) throws(InLoopError) {
        guard mean.rank == 1, std.shape == mean.shape else {
            throw InLoopError(.format, "normalisation mean and std must be vectors of one length, got \(Tensor.format(mean.shape)) and \(Tensor.format(std.shape))")
        }
        for i in 0..<std.count {
            let s = std.storage[i]
            guard s.isFinite, s > 0 else {
                throw InLoopError(.format, "normalisation std[\(i)] = \(s); every std must be finite and > 0")
            }
            guard mean.storage[i].isFinite else {
                throw InLoopError(.format, "normalisation mean[\(i)] = \(mean.storage[i]) is not finite")
            }
        }
        self.mean = mean
        self.std = std
    }
}

/// One step of a layer-stack model. Sizes are per sample.
public indirect enum Layer {
    case dense(Dense)
    case activation(Activation)
    case normalize(Normalization)
    case denormalize(Normalization)
    /// y = x + f(x), f the nested stack (non-empty, size-preserving).
    case residual([Layer])

    /// Number of trainable values (weights, biases; normalisation vectors are not counted).
    public var parameterCount: Int {
        switch self {
        case .dense(let d): return d.weight.count + (d.bias?.count ?? 0)
        case .activation, .normalize, .denormalize: return 0
        case .residual(let inner): return inner.reduce(0) { $0 + $1.parameterCount }
        }
    }

    /// Multiply-adds × 2 per sample.
    public var flopsPerSample: Int {
        switch self {
        case .dense(let d): return 2 * d.weight.count
        case .activation, .normalize, .denormalize: return 0
        case .residual(let inner): return inner.reduce(0) { $0 + $1.flopsPerSample }
        }
    }

    /// The output size for an input of `size` values, or a message-bearing error naming `path`.
    public func outputSize(input size: Int, path: String) throws(InLoopError) -> Int {
        switch self {
        case .dense(let d):
            guard d.inFeatures == size else {
                throw InLoopError(.format, "\(path): dense layer expects \(d.inFeatures) inputs (weight \(Tensor.format(d.weight.shape))) but receives \(size)")
            }
            return d.outFeatures
        case .activation:
            return size
        case .normalize(let n), .denormalize(let n):
            guard n.size == size else {
                throw InLoopError(.format, "\(path): normalisation vectors have \(n.size) values but the layer receives \(size)")
            }
            return size
        case .residual(let inner):
            guard !inner.isEmpty else { throw InLoopError(.format, "\(path): residual block has no layers") }
            var s = size
            for (i, l) in inner.enumerated() { s = try l.outputSize(input: s, path: "\(path).layers[\(i)]") }
            guard s == size else {
                throw InLoopError(.format, "\(path): residual block maps \(size) values to \(s); it must preserve the size to be added to its input")
            }
            return size
        }
    }
}

extension Array where Element == Layer {
    /// The trainable tensors in the trainer's flat order: each dense weight, then its bias, nested
    /// residual blocks in place.
    public var trainableTensors: [Tensor] {
        var out: [Tensor] = []
        for layer in self {
            switch layer {
            case .dense(let d):
                out.append(d.weight)
                if let b = d.bias { out.append(b) }
            case .residual(let inner): out += inner.trainableTensors
            case .activation, .normalize, .denormalize: break
            }
        }
        return out
    }
}
