/// What a training run is: the network (for a new model), the loss, the optimizer and its schedule,
/// initialisation, seed and precision. Parsed from YAML/JSON by the formats module.
public struct TrainerConfig: Equatable, Sendable {
    public enum Precision: String, Sendable { case float32, float64 }

    public var inputSize: Int
    public var layers: [LayerSpec]
    public var loss: Loss
    public var optimizer: OptimizerConfig
    public var schedule: Schedule
    public var initialization: Initialization
    public var seed: UInt64
    public var precision: Precision
    /// Losses kept for `lossHistory` (the most recent ones).
    public var historyCapacity: Int
    /// Hard constraints applied, in order, to the output of `layers` (`constraints:`; a trainer's
    /// own configuration has none: its graph holds them).
    public var constraints: [ConstraintSpec] = []
    /// Noise features of the input (`noise:`): filled on every step with standard normals keyed by
    /// (seed, step, column) (Engine.Noise); the caller's values there are ignored.
    public var noise: TrainerNoise? = nil

    public init(inputSize: Int = 0, layers: [LayerSpec] = [], loss: Loss = Loss(.mse),
                optimizer: OptimizerConfig = OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 1e-3),
                schedule: Schedule = Schedule(), initialization: Initialization = .auto, seed: UInt64 = 0,
                precision: Precision = .float32, historyCapacity: Int = 10_000) {
        self.inputSize = inputSize
        self.layers = layers
        self.loss = loss
        self.optimizer = optimizer
        self.schedule = schedule
        self.initialization = initialization
        self.seed = seed
        self.precision = precision
        self.historyCapacity = historyCapacity
    }
}

/// Input features a trainer fills with noise (a stochastic parameterization's noise inputs).
public struct TrainerNoise: Equatable, Sendable {
    public var firstFeature: Int
    public var count: Int
    public var seed: UInt64
    public init(firstFeature: Int, count: Int, seed: UInt64) {
        self.firstFeature = firstFeature; self.count = count; self.seed = seed
    }
}

/// Mini-batch training of an `EngineNetwork<T>` (a layer stack from a configuration, or a loaded
/// model being fine-tuned): one call = forward, loss, backward, (optional gradient
/// reduction across processes), clipping, optimizer update. Bad data (NaN/Inf in inputs, labels, loss
/// or gradients) is refused before anything changes. Steady-state steps allocate nothing.
public final class Trainer<T: Real> {
    /// The network being trained.
    public let network: EngineNetwork<T>
    public private(set) var config: TrainerConfig
    /// Completed optimizer steps.
    public private(set) var step = 0
    public private(set) var random: RandomState
    /// Global gradient norm of the last step, before clipping.
    public private(set) var lastGradientNorm = 0.0
    /// Base learning rate the schedule scales (settable: `setLearningRate`).
    public private(set) var baseLearningRate: Double

    /// Optimizer state vectors (momentum / Adam moments), each `parameterCount` long. In
    /// data-parallel training each process updates only its shard (see `DistributedStep`).
    public let state: [Buffer<T>]
    private let statePointers: [UnsafeMutablePointer<T>]
    private let history: Buffer<Double>
    private var historyCount = 0
    private var outputGradient: Buffer<T>? = nil
    private var xConverted: Buffer<T>? = nil
    private var yConverted: Buffer<T>? = nil
    /// The rows of a step with noise features or CRPS members (each sample `members` times, noise
    /// filled), grown only.
    private var xRows: Buffer<T>? = nil
    /// This process's rank in data-parallel training (set by InLoopMPI): its noise columns of a step
    /// start at rank × rows.
    public var noiseRank = 0

    /// Data-parallel training (set by InLoopMPI): nil when this process trains alone.
    public var distributed: DistributedStep<T>? = nil
    /// Per-feature range and moments of the inputs of every applied step on this process (the saved
    /// model's input ranges; data-parallel ranks merge theirs when the model is saved).
    public var inputStatistics: Engine.RangeStatistics
    /// Per-block sums of squares of the gradient (blocks of `DistributedStep.block` parameters).
    private let blockSums: Buffer<Double>

    /// A new network from `config.layers` (then `config.constraints` on its output), initialised from
    /// `config.seed` (the same draws with and without constraints: they have no trainable values).
    public convenience init(config: TrainerConfig) throws(InLoopError) {
        guard !config.layers.isEmpty else { throw InLoopError(.invalidArgument, "the training configuration has no layers") }
        let net: EngineNetwork<T>
        if config.constraints.isEmpty {
            net = try EngineNetwork<T>(inputSize: config.inputSize, layers: config.layers)
        } else {
            guard config.inputSize >= 1 else { throw InLoopError(.invalidArgument, "network input size must be at least 1") }
            let g = try Engine.Graph(layerSpecs: config.layers, inputSize: config.inputSize, dtype: T.dtype)
            try g.inferTypes()
            for (i, c) in config.constraints.enumerated() {
                do { try g.addConstraint(c, output: 0) } catch { throw error.prefixed("constraints[\(i)]") }
            }
            net = try EngineNetwork<T>(graph: g, modelType: .float32)
        }
        var random = RandomState(seed: config.seed)
        config.initialization.initialize(net, random: &random, layers: config.layers)
        try self.init(network: net, config: config, random: random)
    }

    /// Trains `network` (fine-tuning a loaded model, or a restored one); `config.layers` is ignored.
    public init(network: EngineNetwork<T>, config: TrainerConfig, random: RandomState? = nil) throws(InLoopError) {
        guard config.optimizer.learningRate >= 0, config.optimizer.learningRate.isFinite else {
            throw InLoopError(.invalidArgument, "learning rate must be finite and >= 0")
        }
        if let nz = config.noise {
            guard nz.count >= 1, nz.firstFeature >= 0, nz.firstFeature < network.inputSize, nz.count <= network.inputSize - nz.firstFeature else {
                throw InLoopError(.invalidArgument, "noise: features \(nz.firstFeature)..<\(nz.firstFeature + nz.count) of an input with \(network.inputSize) per sample")
            }
        }
        guard config.loss.members >= 1, config.loss.members <= 4096 else {
            throw InLoopError(.invalidArgument, "crps loss: members must be between 1 and 4096, got \(config.loss.members)")
        }
        if case .crps(let m, true) = config.loss.kind, m < 2 { throw InLoopError(.invalidArgument, "fair crps loss: members must be at least 2, got \(m)") }
        if !config.loss.weights.isEmpty, config.loss.weights.count != network.outputSize {
            throw InLoopError(.sizeMismatch, "loss has \(config.loss.weights.count) output weights but the model has \(network.outputSize) outputs")
        }
        self.network = network
        var c = config
        c.inputSize = network.inputSize
        c.layers = network.graph.layerSpecs ?? []
        c.constraints = []   // the graph holds them
        c.precision = T.self == Double.self ? .float64 : .float32  // what this trainer computes in
        c.noise = config.noise
        self.config = c
        self.random = random ?? RandomState(seed: config.seed)
        self.baseLearningRate = config.optimizer.learningRate
        var s: [Buffer<T>] = []
        for _ in 0..<config.optimizer.stateVectors { s.append(try Buffer<T>(count: network.parameterCount)) }
        state = s
        statePointers = s.map { $0.base }
        history = try Buffer<Double>(count: max(1, config.historyCapacity))
        blockSums = try Buffer<Double>(count: DistributedStep<T>.blocks(network.parameterCount))
        inputStatistics = Engine.RangeStatistics(features: network.inputSize)
    }

    public var learningRate: Double { config.schedule.rate(base: baseLearningRate, step: step) }

    public func setLearningRate(_ lr: Double) throws(InLoopError) {
        guard lr >= 0, lr.isFinite else { throw InLoopError(.invalidArgument, "learning rate must be finite and >= 0, got \(lr)") }
        baseLearningRate = lr
    }

    /// The most recent losses, oldest first (at most `historyCapacity`).
    public var lossHistory: [Double] {
        let cap = history.count, n = min(historyCount, cap)
        return (0..<n).map { history.base[(historyCount - n + $0) % cap] }
    }

    private func converted<U: Real>(_ p: UnsafePointer<U>, count: Int, into slot: inout Buffer<T>?) throws(InLoopError) -> UnsafePointer<T> {
        if U.self == T.self { return UnsafeRawPointer(p).assumingMemoryBound(to: T.self) }
        let b: Buffer<T>
        if let existing = slot, existing.count >= count { b = existing } else { b = try Buffer<T>(count: count); slot = b }
        for i in 0..<count { b.base[i] = T(Double(p[i])) }
        return UnsafePointer(b.base)
    }

    private func checkData<U: Real>(_ x: UnsafePointer<U>, _ y: UnsafePointer<U>, batch: Int) throws(InLoopError) {
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        if !Kernels.allFinite(x, count: try Limits.arrayCount(batch: batch, perSample: network.inputSize)) {
            throw InLoopError(.nonFinite, "training inputs contain NaN or Inf; the step was not applied")
        }
        if !Kernels.allFinite(y, count: try Limits.arrayCount(batch: batch, perSample: network.outputSize)) {
            throw InLoopError(.nonFinite, "training targets contain NaN or Inf; the step was not applied")
        }
    }

    /// The network's input rows for x: x itself (converted), or, with noise features or CRPS members,
    /// each sample `members` times in a row with its noise filled, keyed by (seed, this step, column
    /// (noiseRank · batch + s) · members + m). Returns the rows and their number.
    private func inputRows<U: Real>(_ x: UnsafePointer<U>, batch: Int) throws(InLoopError) -> (UnsafePointer<T>, Int) {
        let m = config.loss.members, per = network.inputSize
        guard config.noise != nil || m > 1 else {
            return (try converted(x, count: try Limits.arrayCount(batch: batch, perSample: per), into: &xConverted), batch)
        }
        let (rows, o) = batch.multipliedReportingOverflow(by: m)
        guard !o else { throw InLoopError(.invalidArgument, "batch \(batch) × \(m) members overflows") }
        let count = try Limits.arrayCount(batch: rows, perSample: per)
        let b: Buffer<T>
        if let existing = xRows, existing.count >= count { b = existing } else { b = try Buffer<T>(count: count); xRows = b }
        let d = b.base
        for s in 0..<batch {
            for a in 0..<m {
                let r = d + (s * m + a) * per
                for i in 0..<per { r[i] = T(Double(x[s * per + i])) }
            }
        }
        if let nz = config.noise {
            var key = Engine.NoiseInput(input: 0, firstFeature: nz.firstFeature, count: nz.count, seed: nz.seed)
            let (first, o2) = noiseRank.multipliedReportingOverflow(by: rows)
            guard !o2, first >= 0, first < Engine.Noise.columnLimit else {
                throw InLoopError(.invalidArgument, "noise: rank \(noiseRank) × \(rows) rows is beyond the noise columns (2^32)")
            }
            key.step = step; key.firstColumn = first
            try key.checkColumns(batch: rows)
            key.fill(d, batch: rows, per: per)
        }
        return (UnsafePointer(d), rows)
    }

    /// Loss of the current network on (x, y) without training.
    @_specialize(exported: true, where T == Float, U == Float)
    @_specialize(exported: true, where T == Float, U == Double)
    @_specialize(exported: true, where T == Double, U == Float)
    @_specialize(exported: true, where T == Double, U == Double)
    public func evaluate<U: Real>(x: UnsafePointer<U>, y: UnsafePointer<U>, batch: Int) throws(InLoopError) -> Double {
        try checkData(x, y, batch: batch)
        let (xt, rows) = try inputRows(x, batch: batch)
        let yt = try converted(y, count: try Limits.arrayCount(batch: batch, perSample: network.outputSize), into: &yConverted)
        let pred = try network.forward(xt, batch: rows)
        return config.loss.evaluate(prediction: pred, target: yt, batch: batch, outputs: network.outputSize, gradient: nil)
    }

    /// One optimizer step on the mini-batch (x, y); returns the loss before the update.
    /// `batch` may be 0 only when `distributed` is set (a process with no data this step).
    @_specialize(exported: true, where T == Float, U == Float)
    @_specialize(exported: true, where T == Float, U == Double)
    @_specialize(exported: true, where T == Double, U == Float)
    @_specialize(exported: true, where T == Double, U == Double)
    @discardableResult
    public func trainStep<U: Real>(x: UnsafePointer<U>?, y: UnsafePointer<U>?, batch: Int) throws(InLoopError) -> Double {
        let n = network.parameterCount
        let g = network.gradients.base
        var loss = 0.0
        var localError: InLoopError? = nil
        if batch > 0 {
            do throws(InLoopError) {
                loss = try localGradient(x: x, y: y, batch: batch)
            } catch {
                localError = error
            }
        } else if batch < 0 || distributed == nil {
            localError = InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)")
        }
        if localError != nil || batch == 0 { network.gradients.zero() }
        var shard = 0..<n
        if let d = distributed {
            loss = try d.reduce(g, n, localError == nil ? batch : 0, loss, localError)
            shard = d.shard
        } else if let localError {
            throw localError
        }
        // The global norm from per-block sums: the same blocks and order however many processes
        // share the work, so one process and many compute the same bits.
        let blockSize = DistributedStep<T>.block
        let sums = blockSums.base
        var b = shard.lowerBound / blockSize
        while b * blockSize < shard.upperBound, !shard.isEmpty {   // this process's blocks
            sums[b] = T.sumOfSquares(g + b * blockSize, count: min(blockSize, n - b * blockSize))
            b += 1
        }
        if let d = distributed { try d.shareBlockSums(sums) }
        var sq = 0.0
        for i in 0..<blockSums.count { sq += sums[i] }
        let norm = sq.squareRoot()
        guard norm.isFinite else { throw InLoopError(.nonFinite, "gradient norm is \(norm); the step was not applied") }
        lastGradientNorm = norm
        let clip = config.optimizer.clipNorm
        if clip > 0, norm > clip {
            let f = T(clip / (norm + 1e-6))
            for i in shard { g[i] *= f }
        }
        let lr = learningRate
        step += 1
        // This process's share of the update (all of it when alone), then every share to everyone.
        OptimizerStep.apply(config.optimizer, learningRate: lr, step: step, parameters: network.parameters.base + shard.lowerBound,
                            gradients: UnsafePointer(g + shard.lowerBound), count: shard.count, state: statePointers,
                            stateOffset: shard.lowerBound)
        if let d = distributed { try d.shareParameters(network.parameters.base) }
        history.base[historyCount % history.count] = loss
        historyCount += 1
        if batch > 0, localError == nil, let x {
            // with noise, the rows the network saw (the noise features' range included)
            if config.noise != nil, let r = xRows { inputStatistics.add(UnsafePointer(r.base), batch: batch * config.loss.members) } else { inputStatistics.add(x, batch: batch) }
        }
        return loss
    }

    /// Forward, loss and backward on the local batch; leaves d(loss)/d(parameters) in the network.
    private func localGradient<U: Real>(x: UnsafePointer<U>?, y: UnsafePointer<U>?, batch: Int) throws(InLoopError) -> Double {
        guard let x, let y else { throw InLoopError(.nullPointer, "training inputs or targets are NULL") }
        try checkData(x, y, batch: batch)
        let (xt, rows) = try inputRows(x, batch: batch)
        let yt = try converted(y, count: try Limits.arrayCount(batch: batch, perSample: network.outputSize), into: &yConverted)
        let need = try Limits.arrayCount(batch: rows, perSample: network.outputSize)
        let dy: Buffer<T>
        if let existing = outputGradient, existing.count >= need { dy = existing } else { dy = try Buffer<T>(count: need); outputGradient = dy }
        let pred = try network.forward(xt, batch: rows)
        let loss = config.loss.evaluate(prediction: pred, target: yt, batch: batch, outputs: network.outputSize, gradient: dy.base)
        guard loss.isFinite else { throw InLoopError(.nonFinite, "loss is \(loss); the step was not applied") }
        try network.backward(UnsafePointer(dy.base), batch: rows)
        return loss
    }

    /// Restores the counters of a checkpoint (the parameters and state vectors are written directly).
    public func restore(step: Int, random: RandomState, baseLearningRate: Double, history: [Double], gradientNorm: Double) {
        self.step = step
        self.random = random
        self.baseLearningRate = baseLearningRate
        self.lastGradientNorm = gradientNorm
        historyCount = 0
        for v in history { self.history.base[historyCount % self.history.count] = v; historyCount += 1 }
    }
}
