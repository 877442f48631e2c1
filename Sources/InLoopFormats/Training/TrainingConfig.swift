import InLoopCore

/// Reads and writes training configurations (YAML or JSON text; see docs/TRAINING.md):
///
///     model:
///       inputs: 2
///       layers:
///         - {type: dense, out: 32, activation: tanh}
///         - {type: dense, out: 1}
///     loss: mse                      # or {type: huber, delta: 1.0, weights: [...]}, {type: crps, members: 4, fair: true}
///     noise: {first: 3, count: 2, seed: 7}   # input features filled with N(0, 1) noise each step
///     optimizer: {type: adam, lr: 1.0e-3, weight_decay: 0, clip_norm: 1.0}
///     schedule: {type: cosine, period: 10000, min_lr: 1.0e-5, warmup: 100}
///     init: auto                     # auto | xavier | he
///     seed: 42
///     precision: float32             # float32 | float64
///
/// Unknown keys are errors (a misspelt option must not be silently ignored).
public enum TrainingConfigFormat {
    /// Parses YAML or JSON text (JSON is YAML, but the strict JSON parser gives better messages).
    /// `precision`: the precision when the text does not give one.
    public static func parse(_ text: String, precision: TrainerConfig.Precision = .float32) throws(InLoopError) -> TrainerConfig {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        let doc = trimmed.first == "{" ? try JSON.parse(text) : try YAML.parse(text)
        return try config(doc, precision: precision)
    }

    /// Reads a configuration from text, or from a file when `source` names one that exists.
    public static func load(_ source: String, precision: TrainerConfig.Precision = .float32) throws(InLoopError) -> TrainerConfig {
        if let bytes = try? FileIO.read(source) {
            do { return try parse(String(decoding: bytes, as: UTF8.self), precision: precision) } catch { throw error.prefixed(source) }
        }
        if !source.contains("\n"), !source.contains(":"), !source.contains("{") {
            _ = try FileIO.read(source)  // reports the file error (a path was meant)
        }
        return try parse(source, precision: precision)
    }

    static func fail(_ path: String, _ message: String) -> InLoopError {
        InLoopError(.invalidArgument, "configuration \(path): \(message)")
    }

    static func object(_ v: JSON, _ path: String, allowed: [String]) throws(InLoopError) -> [(String, JSON)] {
        guard let members = v.objectValue else { throw fail(path, "expected a mapping, got \(v.kindName)") }
        for (k, _) in members where !allowed.contains(k) {
            throw fail(path, "unknown key \"\(k)\" (allowed: \(allowed.joined(separator: ", ")))")
        }
        return members
    }

    static func number(_ v: JSON?, _ path: String, default d: Double? = nil, min: Double? = nil) throws(InLoopError) -> Double {
        guard let v else {
            if let d { return d }
            throw fail(path, "is required")
        }
        guard let x = v.doubleValue, x.isFinite else { throw fail(path, "must be a finite number, got \(v)") }
        if let min, x < min { throw fail(path, "must be >= \(min), got \(x)") }
        return x
    }

    static func integer(_ v: JSON?, _ path: String, default d: Int? = nil, min: Int = 0) throws(InLoopError) -> Int {
        guard let v else {
            if let d { return d }
            throw fail(path, "is required")
        }
        guard let x = v.intValue, x >= min else { throw fail(path, "must be an integer >= \(min), got \(v)") }
        return x
    }

    /// Losses a trainer keeps at most (`history`): 2^24 (128 MiB).
    static let maxHistory = 1 << 24

    /// A layer size: an integer in 1 ... Limits.maxDimension.
    static func size(_ v: JSON?, _ path: String, default d: Int? = nil) throws(InLoopError) -> Int {
        let n = try integer(v, path, default: d, min: 1)
        guard n <= Limits.maxDimension else { throw fail(path, "must be at most \(Limits.maxDimension), got \(n)") }
        return n
    }

    static func string(_ v: JSON?, _ path: String, default d: String) throws(InLoopError) -> String {
        guard let v else { return d }
        guard let s = v.stringValue else { throw fail(path, "must be a string, got \(v.kindName)") }
        return s
    }

    static func vector(_ v: JSON?, _ path: String) throws(InLoopError) -> [Double] {
        guard let items = v?.arrayValue else { throw fail(path, "must be a list of numbers") }
        var out: [Double] = []
        for (i, item) in items.enumerated() { out.append(try number(item, "\(path)[\(i)]")) }
        return out
    }

    public static func config(_ doc: JSON, precision: TrainerConfig.Precision = .float32) throws(InLoopError) -> TrainerConfig {
        let top = try object(doc, "(top level)", allowed: ["model", "constraints", "loss", "noise", "optimizer", "schedule", "init", "seed", "precision", "history"])
        var c = TrainerConfig()
        let get = { (k: String) -> JSON? in top.first { $0.0 == k }?.1 }
        if let model = get("model") {
            let m = try object(model, "model", allowed: ["inputs", "layers"])
            let inputs = try Self.size(m.first { $0.0 == "inputs" }?.1, "model.inputs")
            guard let list = m.first(where: { $0.0 == "layers" })?.1.arrayValue, !list.isEmpty else {
                throw fail("model.layers", "must be a non-empty list of layers")
            }
            var size = inputs
            c.inputSize = inputs
            c.layers = try layers(list, path: "model.layers", size: &size)
        }
        if let list = get("constraints") {
            guard c.layers.count > 0 else { throw fail("constraints", "need a model with layers (attach constraints to a loaded model with inloop_model_add_constraint_*)") }
            c.constraints = try constraints(list)
        }
        if let l = get("loss") { c.loss = try loss(l) }
        if let n = get("noise") {
            let m = try object(n, "noise", allowed: ["first", "count", "seed"])
            let g = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
            let first = try integer(g("first"), "noise.first", default: 0, min: 0)
            let count = try integer(g("count"), "noise.count", default: 1, min: 1)
            let seed = try integer(g("seed"), "noise.seed", default: 0, min: 0)
            guard seed <= 1 << 53 else { throw fail("noise.seed", "must be at most 2^53 (it is written back as a number), got \(seed)") }
            if c.inputSize > 0, first + count > c.inputSize {
                throw fail("noise", "features \(first)..<\(first + count), but the model has \(c.inputSize) inputs")
            }
            c.noise = TrainerNoise(firstFeature: first, count: count, seed: UInt64(seed))
        }
        if let o = get("optimizer") { c.optimizer = try optimizer(o) }
        if let s = get("schedule") { c.schedule = try schedule(s) }
        let initName = try string(get("init"), "init", default: "auto")
        guard let i = Initialization(rawValue: initName) else { throw fail("init", "must be auto, xavier or he, got \(initName)") }
        c.initialization = i
        c.seed = UInt64(try integer(get("seed"), "seed", default: 0))
        let p = try string(get("precision"), "precision", default: precision.rawValue)
        guard let prec = TrainerConfig.Precision(rawValue: p) else { throw fail("precision", "must be float32 or float64, got \(p)") }
        c.precision = prec
        c.historyCapacity = try integer(get("history"), "history", default: 10_000, min: 1)
        guard c.historyCapacity <= maxHistory else { throw fail("history", "must be at most \(maxHistory) losses, got \(c.historyCapacity)") }
        if !c.loss.weights.isEmpty, let out = outputSize(c), c.loss.weights.count != out {
            throw fail("loss.weights", "has \(c.loss.weights.count) values but the model has \(out) outputs")
        }
        return c
    }

    static func outputSize(_ c: TrainerConfig) -> Int? {
        guard !c.layers.isEmpty else { return nil }
        var size = c.inputSize
        func walk(_ ls: [LayerSpec]) { for l in ls { if case .dense(_, let o, _, _) = l { size = o } else if case .residual(let inner) = l { walk(inner) } } }
        walk(c.layers)
        return size
    }

    static func layers(_ list: [JSON], path: String, size: inout Int) throws(InLoopError) -> [LayerSpec] {
        var out: [LayerSpec] = []
        for (i, item) in list.enumerated() {
            let at = "\(path)[\(i)]"
            let m = try object(item, at, allowed: ["type", "in", "out", "activation", "alpha", "approximate", "bias", "mean", "std", "layers"])
            let get = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
            let type = try string(get("type"), "\(at).type", default: "")
            switch type {
            case "dense":
                let nIn = try Self.size(get("in"), "\(at).in", default: size)
                guard nIn == size else { throw fail("\(at).in", "is \(nIn) but the layer receives \(size) values") }
                let nOut = try Self.size(get("out"), "\(at).out")
                var bias = true
                if let b = get("bias") { guard case .bool(let v) = b else { throw fail("\(at).bias", "must be true or false") }; bias = v }
                out.append(.dense(inputs: nIn, outputs: nOut, activation: try activation(item, at, optional: true), bias: bias))
                size = nOut
            case "activation":
                out.append(.activation(try activation(item, at, optional: false)))
            case "normalize", "denormalize":
                let mean = try vector(get("mean"), "\(at).mean"), std = try vector(get("std"), "\(at).std")
                guard mean.count == size, std.count == size else { throw fail(at, "mean and std need \(size) values each") }
                guard std.allSatisfy({ $0 > 0 }) else { throw fail("\(at).std", "values must be > 0") }
                out.append(type == "normalize" ? .normalize(mean: mean, std: std) : .denormalize(mean: mean, std: std))
            case "residual":
                guard let inner = get("layers")?.arrayValue, !inner.isEmpty else { throw fail("\(at).layers", "must be a non-empty list") }
                var s = size
                let l = try layers(inner, path: "\(at).layers", size: &s)
                guard s == size else { throw fail(at, "residual block maps \(size) values to \(s)") }
                out.append(.residual(l))
            default:
                throw fail("\(at).type", "unknown layer type \"\(type)\" (dense, activation, normalize, denormalize, residual)")
            }
        }
        return out
    }

    static func activation(_ item: JSON, _ at: String, optional: Bool) throws(InLoopError) -> Activation {
        guard item["activation"] != nil || !optional else { return .identity }
        do {
            // The same names and parameters as the model format.
            return try NativeFormat.activation(item, key: "activation", optional: optional)
        } catch {
            throw InLoopError(.invalidArgument, "configuration \(at): \(error.message)")
        }
    }

    static func loss(_ v: JSON) throws(InLoopError) -> Loss {
        if let name = v.stringValue { return try loss(.object([("type", .string(name))])) }
        let m = try object(v, "loss", allowed: ["type", "delta", "weights", "members", "fair"])
        let get = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
        let weights = get("weights") == nil ? [] : try vector(get("weights"), "loss.weights")
        switch try string(get("type"), "loss.type", default: "mse") {
        case "mse": return Loss(.mse, weights: weights)
        case "mae", "l1": return Loss(.mae, weights: weights)
        case "huber": return Loss(.huber(delta: try number(get("delta"), "loss.delta", default: 1, min: 1e-300)), weights: weights)
        case "crps":
            let members = try integer(get("members"), "loss.members", default: 4, min: 1)
            guard members <= 4096 else { throw fail("loss.members", "must be at most 4096, got \(members)") }
            var fair = false
            if let f = get("fair") { guard case .bool(let v) = f else { throw fail("loss.fair", "must be true or false") }; fair = v }
            guard !fair || members >= 2 else { throw fail("loss.members", "must be at least 2 for the fair CRPS, got \(members)") }
            return Loss(.crps(members: members, fair: fair), weights: weights)
        case let other: throw fail("loss.type", "unknown loss \"\(other)\" (mse, mae, huber, crps)")
        }
    }

    static func optimizer(_ v: JSON) throws(InLoopError) -> OptimizerConfig {
        if let name = v.stringValue { return try optimizer(.object([("type", .string(name))])) }
        let m = try object(v, "optimizer", allowed: ["type", "lr", "learning_rate", "momentum", "nesterov", "beta1", "beta2",
                                                     "eps", "epsilon", "weight_decay", "clip_norm"])
        let get = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
        let type = try string(get("type"), "optimizer.type", default: "adam")
        let lr = try number(get("lr") ?? get("learning_rate"), "optimizer.lr", default: type == "sgd" ? 0.01 : 1e-3, min: 0)
        let wd = try number(get("weight_decay"), "optimizer.weight_decay", default: type == "adamw" ? 0.01 : 0, min: 0)
        let clip = try number(get("clip_norm"), "optimizer.clip_norm", default: 0, min: 0)
        let eps = try number(get("eps") ?? get("epsilon"), "optimizer.eps", default: 1e-8, min: 0)
        let b1 = try number(get("beta1"), "optimizer.beta1", default: 0.9, min: 0)
        let b2 = try number(get("beta2"), "optimizer.beta2", default: 0.999, min: 0)
        guard b1 < 1, b2 < 1 else { throw fail("optimizer", "beta1 and beta2 must be < 1") }
        switch type {
        case "sgd":
            var nesterov = false
            if let n = get("nesterov") { guard case .bool(let b) = n else { throw fail("optimizer.nesterov", "must be true or false") }; nesterov = b }
            let mu = try number(get("momentum"), "optimizer.momentum", default: 0, min: 0)
            if nesterov, mu == 0 { throw fail("optimizer.nesterov", "needs momentum > 0") }
            return OptimizerConfig(.sgd(momentum: mu, nesterov: nesterov), learningRate: lr, weightDecay: wd, clipNorm: clip)
        case "adam": return OptimizerConfig(.adam(beta1: b1, beta2: b2, epsilon: eps), learningRate: lr, weightDecay: wd, clipNorm: clip)
        case "adamw": return OptimizerConfig(.adamW(beta1: b1, beta2: b2, epsilon: eps), learningRate: lr, weightDecay: wd, clipNorm: clip)
        case let other: throw fail("optimizer.type", "unknown optimizer \"\(other)\" (sgd, adam, adamw)")
        }
    }

    static func schedule(_ v: JSON) throws(InLoopError) -> Schedule {
        if let name = v.stringValue { return try schedule(.object([("type", .string(name))])) }
        let m = try object(v, "schedule", allowed: ["type", "step_size", "gamma", "period", "min_lr", "warmup"])
        let get = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
        let warmup = try integer(get("warmup"), "schedule.warmup", default: 0)
        switch try string(get("type"), "schedule.type", default: "constant") {
        case "constant": return Schedule(.constant, warmup: warmup)
        case "step":
            return Schedule(.step(stepSize: try integer(get("step_size"), "schedule.step_size", min: 1),
                                  gamma: try number(get("gamma"), "schedule.gamma", default: 0.1, min: 0)), warmup: warmup)
        case "cosine":
            return Schedule(.cosine(period: try integer(get("period"), "schedule.period", min: 1),
                                    minimum: try number(get("min_lr"), "schedule.min_lr", default: 0, min: 0)), warmup: warmup)
        case let other: throw fail("schedule.type", "unknown schedule \"\(other)\" (constant, step, cosine)")
        }
    }

    /// `constraints:` a list applied in order to the network's output:
    ///   - {type: conservation, weights: [w_1, ..., w_K], target_feature: j}: w·y' = x[j] (0-based
    ///     feature of the input; a trainer takes one input, so the target is one of its features);
    ///   - {type: bounds, lo: 0, hi: 1, form: clamp | softplus} (lo or hi may be left out);
    ///   - {type: mass_fixer, weights: [w_1, ..., w_K]}.
    static func constraints(_ v: JSON) throws(InLoopError) -> [ConstraintSpec] {
        guard let items = v.arrayValue else { throw fail("constraints", "must be a list of constraints") }
        var out: [ConstraintSpec] = []
        for (i, item) in items.enumerated() {
            let at = "constraints[\(i)]"
            let m = try object(item, at, allowed: ["type", "weights", "target_feature", "lo", "hi", "form"])
            let get = { (k: String) -> JSON? in m.first { $0.0 == k }?.1 }
            let type = try string(get("type"), "\(at).type", default: "")
            func only(_ keys: [String]) throws(InLoopError) {
                for (k, _) in m where k != "type" && !keys.contains(k) { throw fail("\(at).\(k)", "is not an option of \(type) (\(keys.joined(separator: ", ")))") }
            }
            switch type {
            case "conservation":
                try only(["weights", "target_feature"])
                out.append(.conservation(weights: try vector(get("weights"), "\(at).weights"),
                                         target: .feature(try integer(get("target_feature"), "\(at).target_feature"))))
            case "bounds":
                try only(["lo", "hi", "form"])
                let form = try string(get("form"), "\(at).form", default: "clamp")
                guard form == "clamp" || form == "softplus" else { throw fail("\(at).form", "must be clamp or softplus, got \(form)") }
                let lo = try get("lo").map { (j: JSON) throws(InLoopError) -> Double in try number(j, "\(at).lo") }
                let hi = try get("hi").map { (j: JSON) throws(InLoopError) -> Double in try number(j, "\(at).hi") }
                guard lo != nil || hi != nil else { throw fail(at, "bounds need lo, hi or both") }
                if let lo, let hi, !(lo < hi) { throw fail(at, "lo \(lo) must be below hi \(hi)") }
                out.append(.bounds(lo: lo, hi: hi, softplus: form == "softplus"))
            case "mass_fixer":
                try only(["weights"])
                out.append(.massFixer(weights: try vector(get("weights"), "\(at).weights")))
            default:
                throw fail("\(at).type", "unknown constraint \"\(type)\" (conservation, bounds, mass_fixer)")
            }
        }
        return out
    }

    // MARK: Writing (checkpoints store the configuration they ran with)

    public static func json(_ c: TrainerConfig) -> JSON {
        func num(_ x: Double) -> JSON { .number(x) }
        func layerJSON(_ ls: [LayerSpec]) -> JSON {
            .array(ls.map { l -> JSON in
                switch l {
                case .dense(let i, let o, let a, let b):
                    return .object([("type", .string("dense")), ("in", num(Double(i))), ("out", num(Double(o))), ("bias", .bool(b))]
                                   + NativeFormat.activationFields(a))
                case .activation(let a): return .object([("type", .string("activation"))] + NativeFormat.activationFields(a))
                case .normalize(let m, let s): return .object([("type", .string("normalize")), ("mean", .array(m.map(num))), ("std", .array(s.map(num)))])
                case .denormalize(let m, let s): return .object([("type", .string("denormalize")), ("mean", .array(m.map(num))), ("std", .array(s.map(num)))])
                case .residual(let inner): return .object([("type", .string("residual")), ("layers", layerJSON(inner))])
                }
            })
        }
        var loss: [(String, JSON)] = [("type", .string(c.loss.name))]
        if case .huber(let d) = c.loss.kind { loss.append(("delta", num(d))) }
        if case .crps(let m, let fair) = c.loss.kind { loss += [("members", num(Double(m))), ("fair", .bool(fair))] }
        let noise: [(String, JSON)] = c.noise.map { n in
            [("noise", .object([("first", num(Double(n.firstFeature))), ("count", num(Double(n.count))), ("seed", num(Double(n.seed)))]))]
        } ?? []
        if !c.loss.weights.isEmpty { loss.append(("weights", .array(c.loss.weights.map(num)))) }
        var opt: [(String, JSON)] = [("type", .string(c.optimizer.name)), ("lr", num(c.optimizer.learningRate)),
                                     ("weight_decay", num(c.optimizer.weightDecay)), ("clip_norm", num(c.optimizer.clipNorm))]
        switch c.optimizer.kind {
        case .sgd(let mu, let nesterov): opt += [("momentum", num(mu)), ("nesterov", .bool(nesterov))]
        case .adam(let b1, let b2, let e), .adamW(let b1, let b2, let e): opt += [("beta1", num(b1)), ("beta2", num(b2)), ("eps", num(e))]
        }
        var sched: [(String, JSON)] = [("type", .string(c.schedule.name)), ("warmup", num(Double(c.schedule.warmup)))]
        switch c.schedule.kind {
        case .constant: break
        case .step(let size, let g): sched += [("step_size", num(Double(size))), ("gamma", num(g))]
        case .cosine(let p, let m): sched += [("period", num(Double(p))), ("min_lr", num(m))]
        }
        // No layers (a configuration for fine-tuning a loaded model): no "model" section, which would
        // not read back ("inputs": 0, "layers": []).
        let model: [(String, JSON)] = c.layers.isEmpty ? []
            : [("model", .object([("inputs", num(Double(c.inputSize))), ("layers", layerJSON(c.layers))]))]
        let constraints: [(String, JSON)] = c.constraints.isEmpty || c.layers.isEmpty ? []
            : [("constraints", .array(c.constraints.map { k -> JSON in
                switch k {
                case .conservation(let w, let target):
                    var f: [(String, JSON)] = [("type", .string("conservation"))]
                    if let w { f.append(("weights", .array(w.map(num)))) }
                    if case .feature(let j) = target { f.append(("target_feature", num(Double(j)))) }
                    return .object(f)
                case .bounds(let lo, let hi, let softplus):
                    var f: [(String, JSON)] = [("type", .string("bounds")), ("form", .string(softplus ? "softplus" : "clamp"))]
                    if let lo { f.append(("lo", num(lo))) }
                    if let hi { f.append(("hi", num(hi))) }
                    return .object(f)
                case .massFixer(let w):
                    return .object([("type", .string("mass_fixer")), ("weights", .array(w.map(num)))])
                }
            }))]
        return .object(model + constraints + [
            ("loss", .object(loss))] + noise + [("optimizer", .object(opt)), ("schedule", .object(sched)),
            ("init", .string(c.initialization.rawValue)), ("seed", num(Double(c.seed))),
            ("precision", .string(c.precision.rawValue)), ("history", num(Double(c.historyCapacity))),
        ])
    }
}
