/// Conversions between the inference layer stack (`Model`, float32 tensors) and the differentiable
/// `Network` (flat parameters in any `Real`).
extension LayerSpec {
    /// The architecture of inference layers.
    public static func from(_ layers: [Layer]) -> [LayerSpec] {
        layers.map { layer in
            switch layer {
            case .dense(let d): return .dense(inputs: d.inFeatures, outputs: d.outFeatures, activation: d.activation, bias: d.bias != nil)
            case .activation(let a): return .activation(a)
            case .normalize(let n): return .normalize(mean: n.mean.values.map(Double.init), std: n.std.values.map(Double.init))
            case .denormalize(let n): return .denormalize(mean: n.mean.values.map(Double.init), std: n.std.values.map(Double.init))
            case .residual(let inner): return .residual(from(inner))
            }
        }
    }
}

extension Network {
    /// A differentiable copy of an inference model (its float32 weights, converted to `T`).
    public convenience init(model: Model) throws(InLoopError) {
        let values = model.layers.trainableTensors.flatMap { $0.values.map { T($0) } }
        try self.init(inputSize: model.inputSize, layers: LayerSpec.from(model.layers), parameters: values)
    }

    /// An inference model holding the current parameters (rounded to float32).
    public func inferenceModel(name: String = "", inputName: String = "x", outputName: String = "y") throws(InLoopError) -> Model {
        var offset = 0
        let p = parameters.base
        func build(_ specs: [LayerSpec]) throws(InLoopError) -> [Layer] {
            var out: [Layer] = []
            for spec in specs {
                switch spec {
                case .dense(let i, let o, let act, let hasBias):
                    let w = try Tensor(shape: [o, i], values: (0..<(i * o)).map { p[offset + $0].float })
                    offset += i * o
                    var b: Tensor? = nil
                    if hasBias {
                        b = try Tensor(shape: [o], values: (0..<o).map { p[offset + $0].float })
                        offset += o
                    }
                    out.append(.dense(try Dense(weight: w, bias: b, activation: act)))
                case .activation(let a): out.append(.activation(a))
                case .normalize(let m, let s), .denormalize(let m, let s):
                    let n = try Normalization(mean: try Tensor(shape: [m.count], values: m.map { Float($0) }),
                                              std: try Tensor(shape: [s.count], values: s.map { Float($0) }))
                    if case .normalize = spec { out.append(.normalize(n)) } else { out.append(.denormalize(n)) }
                case .residual(let inner): out.append(.residual(try build(inner)))
                }
            }
            return out
        }
        return try Model(name: name, inputName: inputName, outputName: outputName, inputSize: inputSize, layers: try build(layers))
    }
}
