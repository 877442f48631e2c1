// Test support: layer stacks with their weights inline (what native version-1 files hold), built into
// the one engine's graph through the public front end (`Engine.Graph(layerSpecs:...)`). Shared by the
// core and formats test targets (a symbolic link in Tests/InLoopFormatsTests).
@testable import InLoopCore

struct Dense {
    let weight: Tensor
    let bias: Tensor?
    let activation: Activation
    var inFeatures: Int { weight.shape[1] }
    var outFeatures: Int { weight.shape[0] }
    init(weight: Tensor, bias: Tensor?, activation: Activation = .identity) {
        self.weight = weight
        self.bias = bias
        self.activation = activation
    }
}

struct Normalization {
    let mean: Tensor
    let std: Tensor
}

indirect enum Layer {
    case dense(Dense)
    case activation(Activation)
    case normalize(Normalization)
    case denormalize(Normalization)
    case residual([Layer])
}

extension Array where Element == Layer {
    /// The architecture.
    var specs: [LayerSpec] {
        map { layer in
            switch layer {
            case .dense(let d): return .dense(inputs: d.inFeatures, outputs: d.outFeatures, activation: d.activation, bias: d.bias != nil)
            case .activation(let a): return .activation(a)
            case .normalize(let n): return .normalize(mean: n.mean.values.map(Double.init), std: n.std.values.map(Double.init))
            case .denormalize(let n): return .denormalize(mean: n.mean.values.map(Double.init), std: n.std.values.map(Double.init))
            case .residual(let inner): return .residual(inner.specs)
            }
        }
    }

    /// The trainable tensors in flat order (each dense weight, then its bias).
    var weights: [Tensor] {
        var out: [Tensor] = []
        for layer in self {
            switch layer {
            case .dense(let d): out.append(d.weight); if let b = d.bias { out.append(b) }
            case .residual(let inner): out += inner.weights
            default: break
            }
        }
        return out
    }

    /// The flat parameter vector.
    var flatParameters: [Float] { weights.flatMap { $0.values } }
}

/// The graph of a float32 layer stack, as a version-1 file gives it.
func layerGraph(name: String = "", inputSize: Int, layers: [Layer]) throws -> Engine.Graph {
    var tensors: [Engine.Tensor] = []
    for t in layers.weights { tensors.append(try Engine.Tensor(layerTensor: t)) }
    return try Engine.Graph(layerSpecs: layers.specs, inputSize: inputSize, dtype: .float32, parameters: tensors, name: name)
}

/// A float32 layer-stack model on the one engine.
func layerModel(name: String = "", inputSize: Int, layers: [Layer]) throws -> Engine.Model {
    try Engine.Model(graph: try layerGraph(name: name, inputSize: inputSize, layers: layers))
}

/// A differentiable layer stack in `T` holding `layers`' weights.
func layerNetwork<T: Real>(_: T.Type, inputSize: Int, layers: [Layer]) throws -> EngineNetwork<T> {
    let net = try EngineNetwork<T>(inputSize: inputSize, layers: layers.specs)
    let p = layers.flatParameters
    precondition(p.count == net.parameterCount)
    for (i, v) in p.enumerated() { net.parameters.base[i] = T(Double(v)) }
    return net
}

extension Engine.Model {
    /// Single input and output, arrays in and out (batch × per-sample values).
    func forward(_ x: [Float], batch: Int) throws(InLoopError) -> [Float] { try runArrays(batch: batch, [x])[0] }

    func forward(_ x: [Double], batch: Int) throws(InLoopError) -> [Double] {
        var y = [Double](repeating: 0, count: Swift.max(batch, 0) * outputSize)
        try x.withUnsafeBufferPointer { (xp) throws(InLoopError) in
            try y.withUnsafeMutableBufferPointer { (yp) throws(InLoopError) in try forward(xp, batch: batch, into: yp) }
        }
        return y
    }
}
