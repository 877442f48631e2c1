import InLoopCore

/// The native InLoop model file: a safetensors file whose `__metadata__["inloop"]` holds the
/// versioned architecture JSON (see docs/FORMAT.md). `load` checks everything and reports the first
/// problem with its location; `serialize` writes the same format.
public enum NativeFormat {
    public static let version = 1
    public static let metadataKey = "inloop"
    static let layerTypes = ["dense", "activation", "normalize", "denormalize", "residual"]

    /// Loads a model from a file path; errors are prefixed with the path.
    public static func load(path: String) throws(InLoopError) -> Engine.Model {
        let bytes = try FileIO.read(path)
        do { return try load(bytes: bytes) } catch { throw error.prefixed(path) }
    }

    /// Loads a model from the bytes of a native model file of either version.
    public static func load(bytes: [UInt8]) throws(InLoopError) -> Engine.Model {
        try InputRangesFile.attach(bytes, to: try Engine.Model(graph: try graph(bytes: bytes)))
    }

    /// The graph of a native file of either version: a graph (version 2), or a layer stack (version 1)
    /// lowered by `Engine.Graph(layerSpecs:...)` (it keeps its `layerSpecs`).
    public static func graph(bytes: [UInt8]) throws(InLoopError) -> Engine.Graph {
        let file = try SafetensorsFile(bytes: bytes)
        guard let archText = file.metadataValue(metadataKey) else {
            throw InLoopError(.format, "no InLoop architecture in the file (__metadata__ has no \"\(metadataKey)\" entry); it holds \(file.entries.count) tensors but no layer list — a weights-only file must be converted (tools/convert_peer_model.py)")
        }
        let arch: JSON
        do { arch = try JSON.parse(archText) } catch { throw error.prefixed("architecture") }
        if arch["version"]?.intValue == NativeV2.version, arch["format"]?.stringValue == "inloop" {
            do { return try NativeV2.graph(arch: arch, file: file) } catch { throw error.prefixed("architecture") }
        }
        return try layerGraph(arch: arch, tensors: file)
    }

    /// The graph of a version-1 architecture.
    static func layerGraph(arch: JSON, tensors: SafetensorsFile) throws(InLoopError) -> Engine.Graph {
        guard arch.objectValue != nil else {
            throw InLoopError(.format, "architecture is \(arch.kindName), expected an object")
        }
        guard arch["format"]?.stringValue == "inloop" else {
            throw InLoopError(.format, "architecture \"format\" must be \"inloop\", got \(arch["format"].map { $0.description } ?? "nothing")")
        }
        guard let v = arch["version"]?.intValue else {
            throw InLoopError(.format, "architecture \"version\" must be an integer")
        }
        guard v == version else {
            throw InLoopError(v > NativeV2.version ? .unsupported : .format,
                              "architecture version \(v) is not supported; this InLoop reads versions \(version) and \(NativeV2.version)")
        }
        let name = arch["name"]?.stringValue ?? ""
        guard let input = arch["input"], let inSize = input["size"]?.intValue, inSize >= 1 else {
            throw InLoopError(.format, "architecture \"input\" must be an object with an integer \"size\" ≥ 1")
        }
        guard let output = arch["output"], let outSize = output["size"]?.intValue, outSize >= 1 else {
            throw InLoopError(.format, "architecture \"output\" must be an object with an integer \"size\" ≥ 1")
        }
        guard let layerList = arch["layers"]?.arrayValue else {
            throw InLoopError(.format, "architecture \"layers\" must be an array")
        }
        try Limits.dimension(inSize, "model input size", min: 1)
        var weights: [Engine.Tensor] = []
        let layers = try parseLayers(layerList, path: "layers", tensors: tensors, weights: &weights)
        let graph = try Engine.Graph(layerSpecs: layers, inputSize: inSize, dtype: .float32, parameters: weights, name: name,
                                     inputName: input["name"]?.stringValue ?? "x", outputName: output["name"]?.stringValue ?? "y")
        let produced = graph.outputs.first.flatMap { graph[$0].type?.shape.last?.known } ?? 0
        guard produced == outSize else {
            throw InLoopError(.format, "architecture says output size \(outSize) but the layers produce \(produced)")
        }
        return graph
    }

    /// The layer list; the dense weights and biases, in flat order, are appended to `weights`.
    static func parseLayers(_ list: [JSON], path: String, tensors: SafetensorsFile,
                            weights: inout [Engine.Tensor]) throws(InLoopError) -> [LayerSpec] {
        var layers: [LayerSpec] = []
        for (i, spec) in list.enumerated() {
            let at = "\(path)[\(i)]"
            do {
                layers.append(try parseLayer(spec, at: at, tensors: tensors, weights: &weights))
            } catch {
                throw error.message.hasPrefix(at) ? error : error.prefixed(at)
            }
        }
        return layers
    }

    static func parseLayer(_ spec: JSON, at: String, tensors: SafetensorsFile,
                           weights: inout [Engine.Tensor]) throws(InLoopError) -> LayerSpec {
        guard spec.objectValue != nil else { throw InLoopError(.format, "layer is \(spec.kindName), expected an object") }
        guard let type = spec["type"]?.stringValue else { throw InLoopError(.format, "layer has no \"type\"") }
        func tensor(_ key: String, optional: Bool = false) throws(InLoopError) -> Tensor? {
            guard let v = spec[key], v != .null else {
                if optional { return nil }
                throw InLoopError(.format, "\(type) layer needs \"\(key)\" (a tensor name)")
            }
            guard let name = v.stringValue else {
                throw InLoopError(.format, "\"\(key)\" must be a tensor name (a string), got \(v.kindName)")
            }
            guard tensors.entry(name) != nil else {
                throw InLoopError(.format, "\"\(key)\" names tensor '\(name)', which is not in the file")
            }
            return try tensors.tensor(name)
        }
        switch type {
        case "dense":
            guard let w = try tensor("weight") else { throw InLoopError(.internal, "weight") }
            guard let nIn = spec["in"]?.intValue, let nOut = spec["out"]?.intValue else {
                throw InLoopError(.format, "dense layer needs integer \"in\" and \"out\"")
            }
            guard w.shape == [nOut, nIn] else {
                throw InLoopError(.format, "dense weight '\(spec["weight"]?.stringValue ?? "")' has shape \(Tensor.format(w.shape)), expected [out, in] = [\(nOut), \(nIn)]")
            }
            let b = try tensor("bias", optional: true)
            if let b, b.shape != [nOut] {
                throw InLoopError(.format, "dense bias '\(spec["bias"]?.stringValue ?? "")' has shape \(Tensor.format(b.shape)), expected [\(nOut)]")
            }
            let act = try activation(spec, key: "activation", optional: true)
            weights.append(try Engine.Tensor(layerTensor: w))
            if let b { weights.append(try Engine.Tensor(layerTensor: b)) }
            return .dense(inputs: nIn, outputs: nOut, activation: act, bias: b != nil)
        case "activation":
            return .activation(try activation(spec, key: "activation", optional: false))
        case "normalize", "denormalize":
            guard let mean = try tensor("mean"), let std = try tensor("std") else { throw InLoopError(.internal, "mean/std") }
            guard mean.rank == 1, std.shape == mean.shape else {
                throw InLoopError(.format, "normalisation mean and std must be vectors of one length, got \(Tensor.format(mean.shape)) and \(Tensor.format(std.shape))")
            }
            let m = mean.values.map(Double.init), sd = std.values.map(Double.init)
            return type == "normalize" ? .normalize(mean: m, std: sd) : .denormalize(mean: m, std: sd)
        case "residual":
            guard let inner = spec["layers"]?.arrayValue else {
                throw InLoopError(.format, "residual layer needs a \"layers\" array")
            }
            guard !inner.isEmpty else { throw InLoopError(.format, "residual block has no layers") }
            return .residual(try parseLayers(inner, path: "\(at).layers", tensors: tensors, weights: &weights))
        default:
            throw InLoopError(.unsupported, "unknown layer type \"\(type)\"; supported: \(layerTypes.joined(separator: ", "))")
        }
    }

    static func activation(_ spec: JSON, key: String, optional: Bool) throws(InLoopError) -> Activation {
        guard let v = spec[key], v != .null else {
            if optional { return .identity }
            throw InLoopError(.format, "activation layer needs \"activation\"")
        }
        guard let name = v.stringValue else { throw InLoopError(.format, "\"\(key)\" must be a string, got \(v.kindName)") }
        func param(_ k: String, default d: Float) throws(InLoopError) -> Float {
            guard let p = spec[k] else { return d }
            guard let x = p.doubleValue, Float(x).isFinite else {
                throw InLoopError(.format, "\"\(k)\" must be a finite float32 number, got \(p)")
            }
            return Float(x)
        }
        switch name {
        case "identity", "none", "linear": return .identity
        case "relu": return .relu
        case "leaky_relu": return .leakyRelu(alpha: try param("alpha", default: 0.01))
        case "tanh": return .tanh
        case "sigmoid": return .sigmoid
        case "gelu":
            switch spec["approximate"]?.stringValue ?? "none" {
            case "none": return .gelu
            case "tanh": return .geluTanh
            case let other: throw InLoopError(.unsupported, "gelu \"approximate\": \"\(other)\" is not supported (use \"none\" or \"tanh\")")
            }
        case "gelu_tanh": return .geluTanh
        case "silu", "swish": return .silu
        case "softplus": return .softplus
        case "elu": return .elu(alpha: try param("alpha", default: 1.0))
        default:
            throw InLoopError(.unsupported, "unknown activation \"\(name)\"; supported: \(Activation.supportedNames.joined(separator: ", "))")
        }
    }

    // MARK: Writing

    /// The bytes of a native model file holding `model`: version 1 (a layer list) for a layer-stack
    /// model in float32, version 2 (its graph) for any other.
    /// The bytes of a native file holding `model`: version 1 for a float32 layer list, else version 2;
    /// with the model's input ranges when it has them.
    public static func serialize(_ model: Engine.Model) throws(InLoopError) -> [UInt8] {
        let bytes = try serializeModel(model)
        guard let r = model.inputRanges else { return bytes }
        return try InputRangesFile.adding(r, input: model.inputSpecs.first?.name ?? "", to: bytes)
    }

    static func serializeModel(_ model: Engine.Model) throws(InLoopError) -> [UInt8] {
        let g = model.graph
        guard let specs = g.layerSpecs, g.dtype == .float32, let weights = g.layerParameters,
              let input = g.inputs.first, let output = g.outputs.first else {
            return try NativeV2.serialize(g)
        }
        var tensors: [(String, Tensor)] = []
        var next = 0
        let layers = try describe(specs, prefix: "layers", weights: weights, next: &next, tensors: &tensors)
        var members: [(String, JSON)] = [("format", .string("inloop")), ("version", .number(Double(version)))]
        if !model.name.isEmpty { members.append(("name", .string(model.name))) }
        members += [
            ("input", .object([("name", .string(g[input].name)), ("size", .number(Double(model.inputSize)))])),
            ("output", .object([("name", .string(g[output].name)), ("size", .number(Double(model.outputSize)))])),
            ("layers", .array(layers)),
        ]
        return SafetensorsFile.serialize(tensors: tensors, metadata: [(metadataKey, JSON.object(members).description)])
    }

    /// Writes `model` to `path` (atomically, through a temporary file).
    public static func save(_ model: Engine.Model, to path: String) throws(InLoopError) {
        try FileIO.write(try serialize(model), to: path)
    }

    static func describe(_ layers: [LayerSpec], prefix: String, weights: [Engine.Tensor], next: inout Int,
                         tensors: inout [(String, Tensor)]) throws(InLoopError) -> [JSON] {
        func take() throws(InLoopError) -> Tensor {
            guard next < weights.count else { throw InLoopError(.internal, "the layer list has more weights than its graph") }
            next += 1
            let t = weights[next - 1]
            return try Tensor(shape: t.shape, values: Array(UnsafeBufferPointer(start: try t.storage.pointer(as: Float.self), count: t.count)))
        }
        func vector(_ v: [Double]) throws(InLoopError) -> Tensor { try Tensor(shape: [v.count], values: v.map { Float($0) }) }
        var out: [JSON] = []
        for (i, layer) in layers.enumerated() {
            let p = "\(prefix).\(i)"
            switch layer {
            case .dense(let nIn, let nOut, let act, let hasBias):
                tensors.append(("\(p).weight", try take()))
                var m: [(String, JSON)] = [("type", .string("dense")), ("in", .number(Double(nIn))),
                                           ("out", .number(Double(nOut))), ("weight", .string("\(p).weight"))]
                if hasBias { tensors.append(("\(p).bias", try take())); m.append(("bias", .string("\(p).bias"))) }
                m += activationFields(act)
                out.append(.object(m))
            case .activation(let a):
                out.append(.object([("type", .string("activation"))] + activationFields(a)))
            case .normalize(let mean, let std), .denormalize(let mean, let std):
                tensors.append(("\(p).mean", try vector(mean)))
                tensors.append(("\(p).std", try vector(std)))
                let type: String
                if case .normalize = layer { type = "normalize" } else { type = "denormalize" }
                out.append(.object([("type", .string(type)), ("mean", .string("\(p).mean")), ("std", .string("\(p).std"))]))
            case .residual(let inner):
                out.append(.object([("type", .string("residual")),
                                    ("layers", .array(try describe(inner, prefix: "\(p).layers", weights: weights, next: &next, tensors: &tensors)))]))
            }
        }
        return out
    }

    static func activationFields(_ a: Activation) -> [(String, JSON)] {
        switch a {
        case .identity: return [("activation", .string("identity"))]
        case .relu: return [("activation", .string("relu"))]
        case .leakyRelu(let alpha): return [("activation", .string("leaky_relu")), ("alpha", .number(Double(alpha)))]
        case .tanh: return [("activation", .string("tanh"))]
        case .sigmoid: return [("activation", .string("sigmoid"))]
        case .gelu: return [("activation", .string("gelu"))]
        case .geluTanh: return [("activation", .string("gelu")), ("approximate", .string("tanh"))]
        case .silu: return [("activation", .string("silu"))]
        case .softplus: return [("activation", .string("softplus"))]
        case .elu(let alpha): return [("activation", .string("elu")), ("alpha", .number(Double(alpha)))]
        }
    }
}
