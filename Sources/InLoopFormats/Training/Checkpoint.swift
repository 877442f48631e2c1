import InLoopCore

/// A trainer of either precision, as restored from a checkpoint.
public enum AnyTrainer {
    case float32(Trainer<Float>)
    case float64(Trainer<Double>)
}

/// Checkpoints: the full training state in one safetensors file — parameters and optimizer state
/// vectors in the trainer's own precision (bit-exact), the loss history, and in `__metadata__` the
/// configuration, step count, base learning rate, last gradient norm and random-generator state.
/// Restoring and continuing gives bitwise the weights of an uninterrupted run.
public enum Checkpoint {
    public static let metadataKey = "inloop_checkpoint"
    public static let version = 1

    /// `statistics`: the input statistics to write (default: the trainer's; data-parallel ranks pass
    /// every rank's merged).
    public static func serialize<T: Real>(_ t: Trainer<T>, statistics: Engine.RangeStatistics? = nil) throws(InLoopError) -> [UInt8] {
        func raw(_ name: String, _ b: Buffer<T>) -> SafetensorsFile.RawTensor {
            if T.self == Double.self { return .init(name: name, float64: (0..<b.count).map { Double(b.base[$0]) }) }
            return .init(name: name, float32: (0..<b.count).map { b.base[$0].float })
        }
        var tensors = [raw("parameters", t.network.parameters)]
        for (i, s) in t.state.enumerated() { tensors.append(raw("optimizer.state.\(i)", s)) }
        tensors.append(.init(name: "loss_history", float64: t.lossHistory))
        // the inputs trained on so far (the saved model's input ranges): a restart keeps them; none yet,
        // none written (the file is then what it was before input ranges existed)
        let st = statistics ?? t.inputStatistics
        if st.count > 0 {
            tensors += [.init(name: "input_statistics.lo", float64: st.lo), .init(name: "input_statistics.hi", float64: st.hi),
                        .init(name: "input_statistics.mean", float64: st.mean), .init(name: "input_statistics.m2", float64: st.m2)]
        }
        let words = t.random.words
        var metadata: [(String, String)] = []
        var graphFields: [(String, JSON)] = []
        if t.network.graph.layerSpecs == nil {
            let net = t.network
            // a graph trainer: its graph (native version 2, parameters at their current values) too;
            // a layer stack's list is in its configuration
            let file = try SafetensorsFile(bytes: try NativeV2.serialize(net.graph))
            for e in file.entries { tensors.append(try .init(name: "graph." + e.name, tensor: try file.engineTensor(e.name))) }
            if let arch = file.metadataValue(NativeFormat.metadataKey) { metadata.append((NativeFormat.metadataKey, arch)) }
            graphFields = [("model", .string("graph")), ("model_dtype", .string(net.modelType.description))]
        }
        let state: JSON = .object([
            ("format", .string("inloop-checkpoint")), ("version", .number(Double(version))),
            ("config", TrainingConfigFormat.json(t.config)),
            ("step", .number(Double(t.step))),
            ("base_lr", .string(hex(t.baseLearningRate.bitPattern))),
            ("gradient_norm", .string(hex(t.lastGradientNorm.bitPattern))),
            // 64-bit words as hex strings: JSON numbers hold only 53 bits exactly.
            ("rng", .array(words.map { .string(hex($0)) })),
        ] + (st.count > 0 ? [("input_samples", .number(Double(st.count)))] : []) + graphFields)
        return SafetensorsFile.serialize(raw: tensors, metadata: [(metadataKey, state.description)] + metadata)
    }

    public static func save<T: Real>(_ t: Trainer<T>, to path: String, statistics: Engine.RangeStatistics? = nil) throws(InLoopError) {
        try FileIO.write(try serialize(t, statistics: statistics), to: path)
    }

    public static func load(path: String) throws(InLoopError) -> AnyTrainer {
        let bytes = try FileIO.read(path)
        do { return try load(bytes: bytes) } catch { throw error.prefixed(path) }
    }

    public static func load(bytes: [UInt8]) throws(InLoopError) -> AnyTrainer {
        let file = try SafetensorsFile(bytes: bytes)
        guard let text = file.metadataValue(metadataKey) else {
            throw InLoopError(.format, file.metadataValue(NativeFormat.metadataKey) != nil
                ? "this is a model file, not a training checkpoint (create a trainer from the model to fine-tune it)"
                : "not an InLoop checkpoint (no \"\(metadataKey)\" metadata)")
        }
        let state = try JSON.parse(text)
        guard state["format"]?.stringValue == "inloop-checkpoint" else { throw InLoopError(.format, "checkpoint metadata has the wrong format tag") }
        guard state["version"]?.intValue == version else {
            throw InLoopError(.unsupported, "checkpoint version \(state["version"].map { $0.description } ?? "?") is not supported; this InLoop reads version \(version)")
        }
        guard let configJSON = state["config"] else { throw InLoopError(.format, "checkpoint has no configuration") }
        let config: TrainerConfig
        do { config = try TrainingConfigFormat.config(configJSON) } catch { throw error.prefixed("checkpoint configuration") }
        guard let step = state["step"]?.intValue, step >= 0,
              let baseBits = unhex(state["base_lr"]?.stringValue), let normBits = unhex(state["gradient_norm"]?.stringValue),
              let rng = state["rng"]?.arrayValue, rng.count == 4 else {
            throw InLoopError(.format, "checkpoint state (step, base_lr, gradient_norm, rng) is incomplete")
        }
        var words: [UInt64] = []
        for w in rng { guard let v = unhex(w.stringValue) else { throw InLoopError(.format, "checkpoint rng state is malformed") }; words.append(v) }
        let history = try file.doubles("loss_history")
        if state["model"]?.stringValue == "graph" {
            guard let arch = file.metadataValue(NativeFormat.metadataKey), let t = state["model_dtype"]?.stringValue,
                  let modelType = NativeV2.dtypeNamed(t), modelType.isFloatingPoint else {
                throw InLoopError(.format, "graph checkpoint without its graph")
            }
            let archJSON: JSON
            do { archJSON = try JSON.parse(arch) } catch { throw error.prefixed("checkpoint graph") }
            let g: Engine.Graph
            do { g = try NativeV2.graph(arch: archJSON, file: file, tensorPrefix: "graph.") } catch { throw error.prefixed("checkpoint graph") }
            switch config.precision {
            case .float32:
                let net = try EngineNetwork<Float>(graph: g, trainable: Set(g.parameters.map { g[$0].name }), modelType: modelType)
                return .float32(try restore(net, file, config, step, words, Double(bitPattern: baseBits), history, Double(bitPattern: normBits)))
            case .float64:
                let net = try EngineNetwork<Double>(graph: g, trainable: Set(g.parameters.map { g[$0].name }), modelType: modelType)
                return .float64(try restore(net, file, config, step, words, Double(bitPattern: baseBits), history, Double(bitPattern: normBits)))
            }
        }
        switch config.precision {
        case .float32:
            return .float32(try restore(Trainer<Float>.self, file, config, step, words, Double(bitPattern: baseBits), history, Double(bitPattern: normBits)))
        case .float64:
            return .float64(try restore(Trainer<Double>.self, file, config, step, words, Double(bitPattern: baseBits), history, Double(bitPattern: normBits)))
        }
    }

    static func restore<T: Real>(_: Trainer<T>.Type, _ file: SafetensorsFile, _ config: TrainerConfig, _ step: Int,
                                 _ words: [UInt64], _ baseLR: Double, _ history: [Double], _ norm: Double) throws(InLoopError) -> Trainer<T> {
        try restore(try EngineNetwork<T>(inputSize: config.inputSize, layers: config.layers), file, config, step, words, baseLR, history, norm)
    }

    static func restore<T: Real>(_ net: EngineNetwork<T>, _ file: SafetensorsFile, _ config: TrainerConfig, _ step: Int,
                                 _ words: [UInt64], _ baseLR: Double, _ history: [Double], _ norm: Double) throws(InLoopError) -> Trainer<T> {
        let t = try Trainer<T>(network: net, config: config, random: RandomState(words: words))
        func fill(_ name: String, _ b: Buffer<T>) throws(InLoopError) {
            let v = try file.doubles(name)
            guard v.count == b.count else { throw InLoopError(.format, "checkpoint tensor '\(name)' has \(v.count) values, expected \(b.count)") }
            for i in 0..<v.count { b.base[i] = T(v[i]) }
        }
        try fill("parameters", net.parameters)
        for (i, s) in t.state.enumerated() { try fill("optimizer.state.\(i)", s) }
        t.restore(step: step, random: RandomState(words: words), baseLearningRate: baseLR, history: history, gradientNorm: norm)
        // checkpoints written before input ranges existed have no statistics: the trainer starts afresh
        if let text = file.metadataValue(metadataKey), let n = (try? JSON.parse(text))?["input_samples"]?.intValue {
            do throws(InLoopError) {
                let s = try Engine.RangeStatistics(count: n, lo: try file.doubles("input_statistics.lo"), hi: try file.doubles("input_statistics.hi"),
                                                   mean: try file.doubles("input_statistics.mean"), m2: try file.doubles("input_statistics.m2"))
                guard s.features == t.inputStatistics.features else {
                    throw InLoopError(.format, "\(s.features) features, the network takes \(t.inputStatistics.features)")
                }
                t.inputStatistics = s
            } catch {
                throw error.prefixed("checkpoint input statistics")
            }
        }
        return t
    }

    static func hex(_ v: UInt64) -> String { String(v, radix: 16) }
    static func unhex(_ s: String?) -> UInt64? { s.flatMap { UInt64($0, radix: 16) } }
}
