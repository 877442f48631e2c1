#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import InLoopCore
import InLoopFormats
import InLoopMPI

// The C ABI of training and of model derivatives: trainer handles (create from a configuration or
// from a model, step, evaluate, learning rate, checkpoints, statistics) and the tangent-linear,
// adjoint and Jacobian of a model. Same conventions as API.swift: validate, call the core, map
// errors to statuses; x holds `batch` contiguous samples (Fortran x(n_in, batch)).

/// What a trainer handle refers to.
final class TrainerBox: @unchecked Sendable {  // a trainer is used by one thread at a time (`busy`)
    var trainer: AnyTrainer
    /// Set by inloop_trainer_set_communicator: data-parallel training over this communicator.
    var comm: Communicator? = nil
    var parallel: (any DataParallelGroup)? = nil
    private let busy = Atomic<Bool>(false)

    init(_ trainer: AnyTrainer) { self.trainer = trainer }

    /// Runs `body` with exclusive use of the trainer; a concurrent call gets INLOOP_ERR_BUSY.
    func use<R>(_ body: (AnyTrainer) throws(InLoopError) -> R) throws(InLoopError) -> R {
        guard acquire() else { throw InLoopError(.busy, "trainer is being used by another thread") }
        defer { release() }
        return try body(trainer)
    }

    /// Takes exclusive use of the trainer (false when another thread has it); `release` gives it back.
    func acquire() -> Bool { busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged }
    func release() { busy.store(false, ordering: .releasing) }
}

/// A collective call with a bad trainer handle (NULL, freed, of the wrong kind) cannot know the
/// trainer's communicator: when this process has exactly one data-parallel trainer, the call takes
/// part in that trainer's collective with the error, so the other ranks fail with it instead of
/// waiting (`join`); otherwise the error stays on this rank. Always throws.
func failCollective(_ error: InLoopError, _ join: (TrainerBox, any DataParallelGroup) throws(InLoopError) -> Void) throws(InLoopError) -> Never {
    let groups = trainers.all().filter { $0.parallel != nil }
    if groups.count == 1, let box = groups.first, let group = box.parallel, box.acquire() {
        defer { box.release() }
        try join(box, group)
    }
    throw error
}

let trainers = HandleRegistry<TrainerBox>(kind: .trainer)

/// The trainer behind a live handle (for functions whose parameter `trainers` hides the registry).
func trainerBox(_ handle: OpaquePointer) throws(InLoopError) -> TrainerBox { try trainers.lookup(handle, argument: "trainer") }

/// Differentiable copies of a model (float32 and float64), made on first use.
final class DerivativeCache: @unchecked Sendable {  // guarded by `busy`
    private var f32: EngineNetwork<Float>? = nil
    private var f64: EngineNetwork<Double>? = nil
    private let busy = Atomic<Bool>(false)

    func use<T: Real, R>(_ box: ModelBox, _ type: T.Type, _ body: (EngineNetwork<T>) throws(InLoopError) -> R) throws(InLoopError) -> R {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw InLoopError(.busy, "model derivatives are being computed by another thread; use one handle per thread")
        }
        defer { busy.store(false, ordering: .releasing) }
        if T.self == Float.self {
            if f32 == nil { f32 = try EngineNetwork<Float>(model: box.model) }
            if let net = f32 as? EngineNetwork<T> { return try body(net) }
        } else {
            if f64 == nil { f64 = try EngineNetwork<Double>(model: box.model) }
            if let net = f64 as? EngineNetwork<T> { return try body(net) }
        }
        throw InLoopError(.internal, "no derivatives in \(T.self)")
    }
}

extension AnyTrainer {
    var inputSize: Int { switch self { case .float32(let t): return t.network.inputSize; case .float64(let t): return t.network.inputSize } }
    var outputSize: Int { switch self { case .float32(let t): return t.network.outputSize; case .float64(let t): return t.network.outputSize } }

    func step<U: Real>(_ x: UnsafePointer<U>?, _ y: UnsafePointer<U>?, _ batch: Int) throws(InLoopError) -> Double {
        switch self {
        case .float32(let t): return try t.trainStep(x: x, y: y, batch: batch)
        case .float64(let t): return try t.trainStep(x: x, y: y, batch: batch)
        }
    }

    func evaluate<U: Real>(_ x: UnsafePointer<U>, _ y: UnsafePointer<U>, _ batch: Int) throws(InLoopError) -> Double {
        switch self {
        case .float32(let t): return try t.evaluate(x: x, y: y, batch: batch)
        case .float64(let t): return try t.evaluate(x: x, y: y, batch: batch)
        }
    }

    /// The per-feature statistics of the inputs this process trained on.
    var inputStatistics: Engine.RangeStatistics {
        switch self { case .float32(let t): return t.inputStatistics; case .float64(let t): return t.inputStatistics }
    }

    func setInputStatistics(_ s: Engine.RangeStatistics) {
        switch self { case .float32(let t): t.inputStatistics = s; case .float64(let t): t.inputStatistics = s }
    }

    /// An inference model with the current weights, and as input ranges those of `statistics` (default:
    /// this process's) when it has samples (statistics that are not valid ranges, e.g. after non-finite
    /// inputs, are left out).
    func model(statistics: Engine.RangeStatistics? = nil) throws(InLoopError) -> Engine.Model {
        let m: Engine.Model
        switch self {
        case .float32(let t): m = try t.network.inferenceModel()
        case .float64(let t): m = try t.network.inferenceModel()
        }
        if let r = try? (statistics ?? inputStatistics).ranges() { try? m.setInputRanges(r) }
        return m
    }

    /// The bytes of a model file with the current weights: native version 1 for a layer list,
    /// version 2 for any other graph.
    func modelFile(statistics: Engine.RangeStatistics? = nil) throws(InLoopError) -> [UInt8] {
        try NativeFormat.serialize(try model(statistics: statistics))
    }

}

private func cString(_ p: UnsafePointer<CChar>?, _ what: String) throws(InLoopError) -> String {
    guard let p else { throw InLoopError(.nullPointer, "\(what) is NULL") }
    return String(cString: p)
}

private func makeTrainer(_ config: TrainerConfig, model: ModelBox? = nil) throws(InLoopError) -> AnyTrainer {
    switch config.precision {
    case .float32:
        if let model { return .float32(try Trainer<Float>(network: try EngineNetwork<Float>(model: model.model), config: config)) }
        return .float32(try Trainer<Float>(config: config))
    case .float64:
        if let model { return .float64(try Trainer<Double>(network: try EngineNetwork<Double>(model: model.model), config: config)) }
        return .float64(try Trainer<Double>(config: config))
    }
}

// MARK: - Trainer life cycle

/// Creates a trainer for a new model from a configuration: YAML or JSON text, or the path of a file
/// holding it (see docs/TRAINING.md: model layers, loss, optimizer, schedule, init, seed, precision).
/// The weights are initialised from the seed, so a run is reproducible. Free with inloop_trainer_free.
/// Statuses: NULL_POINTER, IO (config file), FORMAT (not YAML/JSON), INVALID_ARGUMENT (a bad setting or no
/// model section), UNSUPPORTED, SIZE_MISMATCH, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_create(_ config: UnsafePointer<CChar>?, _ trainer: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainer else { throw InLoopError(.nullPointer, "trainer_create: the output handle pointer is NULL") }
        trainer.pointee = nil
        ThreadPolicy.applyDefault()
        let c = try TrainingConfigFormat.load(try cString(config, "trainer_create: config"))
        guard !c.layers.isEmpty else {
            throw InLoopError(.invalidArgument, "trainer_create: the configuration has no model section; to fine-tune a loaded model use inloop_trainer_create_from_model")
        }
        trainer.pointee = trainers.register(TrainerBox(try makeTrainer(c)))
    }
}

/// Creates a trainer that fine-tunes a copy of a loaded model's weights (the model handle is not
/// changed). config (text or path, may be NULL for defaults: Adam, lr 1e-3, MSE, the model's precision)
/// sets the loss, optimizer, schedule and precision; it must not have a model section. Without a
/// precision setting, a float64 model trains in float64, any other in float32.
/// Statuses: NULL_POINTER, INVALID_HANDLE, IO, FORMAT, INVALID_ARGUMENT, UNSUPPORTED (a model kind that
/// cannot be trained), SIZE_MISMATCH, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_create_from_model(_ model: OpaquePointer?, _ config: UnsafePointer<CChar>?,
                                                _ trainer: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainer else { throw InLoopError(.nullPointer, "trainer_create_from_model: the output handle pointer is NULL") }
        trainer.pointee = nil
        ThreadPolicy.applyDefault()
        let box = try models.lookup(model)
        // the trainer computes in the model's type unless the configuration says otherwise (a float32
        // trainer of a float64 graph would mix types at its Cast nodes)
        let precision: TrainerConfig.Precision = box.model.graph.dtype == .float64 ? .float64 : .float32
        let c = config == nil ? TrainerConfig(precision: precision) : try TrainingConfigFormat.load(try cString(config, "config"), precision: precision)
        guard c.layers.isEmpty else {
            throw InLoopError(.invalidArgument, "trainer_create_from_model: the configuration must not have a model section (the model comes from the handle)")
        }
        trainer.pointee = trainers.register(TrainerBox(try makeTrainer(c, model: box)))
    }
}

/// Restores a trainer from a checkpoint written by inloop_trainer_save_checkpoint: weights,
/// optimizer state, step count, schedule position, random state and loss history. Continuing gives
/// bitwise the weights the uninterrupted run would have.
/// Statuses: NULL_POINTER, IO, FORMAT (not a checkpoint, or inconsistent), UNSUPPORTED (a newer version),
/// INVALID_ARGUMENT, SIZE_MISMATCH, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_load_checkpoint(_ path: UnsafePointer<CChar>?, _ trainer: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainer else { throw InLoopError(.nullPointer, "trainer_load_checkpoint: the output handle pointer is NULL") }
        trainer.pointee = nil
        ThreadPolicy.applyDefault()
        trainer.pointee = trainers.register(TrainerBox(try Checkpoint.load(path: try cString(path, "checkpoint path"))))
    }
}

/// With a communicator, only rank 0 runs `body`; every rank returns its outcome (collective).
private func onRankZero(_ comm: Communicator?, _ body: () throws(InLoopError) -> Void) throws(InLoopError) {
    guard let comm else { return try body() }
    var failure: InLoopError? = nil
    if comm.rank == 0 {
        do throws(InLoopError) { try body() } catch { failure = error }
    }
    try comm.shareOutcome(failure)
}

/// The shared frame of the calls that are collective on a data-parallel trainer (saving): the
/// handle, the lock and `check`'s argument errors are agreed on by every rank before `body` runs.
private func collective(_ handle: OpaquePointer?, _ what: String, check: (AnyTrainer) throws(InLoopError) -> Void,
                        _ body: (TrainerBox, AnyTrainer) throws(InLoopError) -> Void) throws(InLoopError) {
    let box: TrainerBox
    do throws(InLoopError) { box = try trainers.lookup(handle, argument: "\(what): trainer") } catch {
        try failCollective(error) { (_, group) throws(InLoopError) in try group.comm.agree(error) }
    }
    try box.use { (t) throws(InLoopError) in
        var failure: InLoopError? = nil
        do throws(InLoopError) { try check(t) } catch { failure = error }
        if let comm = box.comm { try comm.agree(failure) } else if let failure { throw failure }
        try body(box, t)
    }
}

/// Writes the full training state to one file (atomically: a crash never leaves half a file).
/// With a communicator attached this is collective: rank 0 writes, every rank gets the status; an
/// argument error on one rank (NULL path, a bad handle) fails the call on every rank.
/// Statuses: NULL_POINTER, INVALID_HANDLE, IO, BUSY, MPI.
/// Section: training.
@c public func inloop_trainer_save_checkpoint(_ trainer: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        try collective(trainer, "save_checkpoint", check: { (_) throws(InLoopError) in
            _ = try cString(path, "save_checkpoint: checkpoint path")
        }) { (box, t) throws(InLoopError) in
            let p = try cString(path, "save_checkpoint: checkpoint path")
            // Data-parallel ranks each update a shard of the optimizer state: complete it first.
            try box.parallel?.gatherState()
            // every rank's input statistics, merged (a restart gives them to rank 0 alone)
            let merged = try box.comm.map { (c) throws(InLoopError) in try c.merged(t.inputStatistics) }
            try onRankZero(box.comm) { () throws(InLoopError) in
                switch t {
                case .float32(let tr): try Checkpoint.save(tr, to: p, statistics: merged)
                case .float64(let tr): try Checkpoint.save(tr, to: p, statistics: merged)
                }
            }
        }
    }
}

/// Writes the current weights as an inference model file loadable with inloop_model_load: native
/// format version 1 (a layer list) for a layer-stack model, version 2 (the graph itself) for a
/// fine-tuned graph, in the model's type. With a communicator attached: collective, rank 0 writes (as
/// inloop_trainer_save_checkpoint).
/// Statuses: NULL_POINTER, INVALID_HANDLE, IO, BUSY, MPI.
/// Section: training.
@c public func inloop_trainer_save_model(_ trainer: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        try collective(trainer, "save_model", check: { (t) throws(InLoopError) in
            _ = try cString(path, "save_model: model path")
            _ = try t.modelFile()
        }) { (box, t) throws(InLoopError) in
            let p = try cString(path, "save_model: model path")
            // the input ranges of every rank's data (collective, before rank 0 writes)
            let merged = try box.comm.map { (c) throws(InLoopError) in try c.merged(t.inputStatistics) }
            try onRankZero(box.comm) { () throws(InLoopError) in try FileIO.write(try t.modelFile(statistics: merged), to: p) }
        }
    }
}

/// Stores in *model a new inference model handle holding the current weights (free it with
/// inloop_model_free; later training does not change it).
/// Statuses: NULL_POINTER, INVALID_HANDLE, BUSY, UNSUPPORTED, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_copy_model(_ trainer: OpaquePointer?, _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { throw InLoopError(.nullPointer, "trainer_copy_model: the output handle pointer is NULL") }
        model.pointee = nil
        let box = try trainers.lookup(trainer, argument: "trainer")
        let m = try box.use { (t) throws(InLoopError) in try t.model() }
        model.pointee = models.register(try ModelBox(m))
    }
}

/// Frees a trainer. NULL is a no-op; a freed handle gives INLOOP_ERR_INVALID_HANDLE.
/// Statuses: INVALID_HANDLE.
/// Section: training.
@c public func inloop_trainer_free(_ trainer: OpaquePointer?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainer else { return }
        try trainers.remove(trainer, "trainer_free")
    }
}

// MARK: - Training

/// One optimizer step on a mini-batch: x holds batch x n_in inputs, y batch x n_out targets (sample
/// after sample). Stores the loss before the update in *loss (may be NULL). NaN/Inf in x, y, the loss
/// or the gradients gives INLOOP_ERR_NONFINITE and leaves the weights and optimizer state unchanged.
/// On a data-parallel trainer this is collective (see inloop_trainer_set_communicator): batch may be 0
/// (x and y may then be NULL), and an error on any rank (a NULL array, a bad batch, NaN, a bad handle
/// when the process has one data-parallel trainer) fails the step on every rank, that rank's own
/// message there and "rank r: ..." on the others. BUSY (another thread of this process is using the
/// trainer) is returned on this rank only: a data-parallel trainer belongs to one thread per rank.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, NONFINITE, BUSY, MPI, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_step_f32(_ trainer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?,
                                       _ batch: Int64, _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    trainStep(trainer, x, nil, batch, y, nil, batch, loss)
}

/// As inloop_trainer_step_f32 for double arrays (converted to the trainer's precision).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, NONFINITE, BUSY,
/// MPI, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_step_f64(_ trainer: OpaquePointer?, _ x: UnsafePointer<Double>?, _ y: UnsafePointer<Double>?,
                                       _ batch: Int64, _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    trainStep(trainer, x, nil, batch, y, nil, batch, loss)
}

/// As inloop_trainer_step_f32 with the caller's array shapes, checked against the trainer within the
/// step (so on a data-parallel trainer a wrong size on one rank fails the step on every rank): x holds
/// batch_x samples of n_in values, y batch_y samples of n_out values; n_in and n_out must be the
/// model's and batch_x must equal batch_y (else INLOOP_ERR_SIZE_MISMATCH). The Fortran module's step
/// calls this.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH (n_in, n_out not the model's,
/// batch_x /= batch_y), NONFINITE, BUSY, MPI, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_step_sized_f32(_ trainer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n_in: Int64, _ batch_x: Int64,
                                             _ y: UnsafePointer<Float>?, _ n_out: Int64, _ batch_y: Int64,
                                             _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    trainStep(trainer, x, n_in, batch_x, y, n_out, batch_y, loss)
}

/// As inloop_trainer_step_sized_f32 for double arrays.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH (n_in, n_out not the model's,
/// batch_x /= batch_y), NONFINITE, BUSY, MPI, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_step_sized_f64(_ trainer: OpaquePointer?, _ x: UnsafePointer<Double>?, _ n_in: Int64, _ batch_x: Int64,
                                             _ y: UnsafePointer<Double>?, _ n_out: Int64, _ batch_y: Int64,
                                             _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    trainStep(trainer, x, n_in, batch_x, y, n_out, batch_y, loss)
}

/// Stores in *loss the loss of the current weights on (x, y), without training. On a data-parallel
/// trainer this is the calling rank's loss (no communication): combine ranks yourself if needed.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large), NONFINITE, BUSY,
/// OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_evaluate_f32(_ trainer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?,
                                           _ batch: Int64, _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    evaluate(trainer, x, y, batch, loss)
}

/// As inloop_trainer_evaluate_f32 for double arrays.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large), NONFINITE, BUSY,
/// OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_evaluate_f64(_ trainer: OpaquePointer?, _ x: UnsafePointer<Double>?, _ y: UnsafePointer<Double>?,
                                           _ batch: Int64, _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    evaluate(trainer, x, y, batch, loss)
}

private func trainStep<U: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<U>?, _ nIn: Int64?, _ batchX: Int64,
                                _ y: UnsafePointer<U>?, _ nOut: Int64?, _ batchY: Int64,
                                _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box: TrainerBox
        do throws(InLoopError) { box = try trainers.lookup(handle, argument: "trainer_step: trainer") } catch {
            try failCollective(error) { (_, group) throws(InLoopError) in try group.fail(error) }
        }
        let l = try box.use { (t) throws(InLoopError) in
            // Argument errors of a data-parallel rank go into the step's reduction, so that every rank
            // fails together instead of leaving the others waiting in a collective.
            let parallel = box.parallel
            var failure: InLoopError? = nil
            if let nIn, nIn != Int64(t.inputSize) {
                failure = InLoopError(.sizeMismatch, "trainer_step: x has \(nIn) values per sample but the model takes \(t.inputSize)")
            } else if let nOut, nOut != Int64(t.outputSize) {
                failure = InLoopError(.sizeMismatch, "trainer_step: y has \(nOut) values per sample but the model gives \(t.outputSize)")
            } else if batchX != batchY {
                failure = InLoopError(.sizeMismatch, "trainer_step: x has \(batchX) samples but y has \(batchY)")
            } else if batchX < (parallel == nil ? 1 : 0) || batchX > Int64(Int32.max) {
                failure = InLoopError(.invalidArgument, "trainer_step: batch must be between \(parallel == nil ? 1 : 0) and \(Int32.max), got \(batchX)")
            } else if batchX > 0, x == nil || y == nil {
                failure = InLoopError(.nullPointer, "trainer_step: x or y is NULL")
            }
            if let failure {
                if let parallel { try parallel.fail(failure) }
                throw failure
            }
            return try t.step(x, y, Int(batchX))
        }
        loss?.pointee = l
    }
}

private func evaluate<U: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<U>?, _ y: UnsafePointer<U>?, _ batch: Int64,
                               _ loss: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(handle, argument: "trainer")
        guard let x, let y else { throw InLoopError(.nullPointer, "trainer_evaluate: x or y is NULL") }
        guard let loss else { throw InLoopError(.nullPointer, "trainer_evaluate: loss is NULL") }
        guard batch >= 1, batch <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "trainer_evaluate: batch must be between 1 and \(Int32.max), got \(batch)") }
        loss.pointee = try box.use { (t) throws(InLoopError) in try t.evaluate(x, y, Int(batch)) }
    }
}

/// Sets the base learning rate (the schedule scales it from the current step on).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (lr negative
/// or not finite), BUSY.
/// Section: training.
@c public func inloop_trainer_set_learning_rate(_ trainer: OpaquePointer?, _ lr: Double) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        try box.use { (t) throws(InLoopError) in
            switch t {
            case .float32(let tr): try tr.setLearningRate(lr)
            case .float64(let tr): try tr.setLearningRate(lr)
            }
        }
    }
}

/// Stores in *lr the learning rate the next step will use (base rate x schedule x warm-up).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, BUSY.
/// Section: training.
@c public func inloop_trainer_get_learning_rate(_ trainer: OpaquePointer?, _ lr: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let lr else { throw InLoopError(.nullPointer, "trainer_get_learning_rate: lr is NULL") }
        lr.pointee = try box.use { (t) throws(InLoopError) in
            switch t { case .float32(let tr): return tr.learningRate; case .float64(let tr): return tr.learningRate }
        }
    }
}

/// Stores in *steps the number of optimizer steps taken so far (restored from checkpoints).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, BUSY.
/// Section: training.
@c public func inloop_trainer_step_count(_ trainer: OpaquePointer?, _ steps: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let steps else { throw InLoopError(.nullPointer, "trainer_step_count: steps is NULL") }
        steps.pointee = try box.use { (t) throws(InLoopError) in
            switch t { case .float32(let tr): return Int64(tr.step); case .float64(let tr): return Int64(tr.step) }
        }
    }
}

/// Stores in *norm the global gradient norm of the last step (before clipping).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, BUSY.
/// Section: training.
@c public func inloop_trainer_gradient_norm(_ trainer: OpaquePointer?, _ norm: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let norm else { throw InLoopError(.nullPointer, "trainer_gradient_norm: norm is NULL") }
        norm.pointee = try box.use { (t) throws(InLoopError) in
            switch t { case .float32(let tr): return tr.lastGradientNorm; case .float64(let tr): return tr.lastGradientNorm }
        }
    }
}

/// Copies the most recent training losses, oldest first, into losses (room for `capacity` values)
/// and stores how many were copied in *count (the trainer keeps the last `history` of them).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (capacity <
/// 0), BUSY.
/// Section: training.
@c public func inloop_trainer_loss_history(_ trainer: OpaquePointer?, _ losses: UnsafeMutablePointer<Double>?,
                                           _ capacity: Int64, _ count: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let count else { throw InLoopError(.nullPointer, "trainer_loss_history: count is NULL") }
        guard capacity >= 0 else { throw InLoopError(.invalidArgument, "trainer_loss_history: capacity must be >= 0") }
        guard capacity == 0 || losses != nil else { throw InLoopError(.nullPointer, "trainer_loss_history: losses is NULL") }
        let h = try box.use { (t) throws(InLoopError) in
            switch t { case .float32(let tr): return tr.lossHistory; case .float64(let tr): return tr.lossHistory }
        }
        let n = min(Int(capacity), h.count)
        for i in 0..<n { losses?[i] = h[h.count - n + i] }
        count.pointee = Int64(n)
    }
}

/// Stores the model's number of inputs and outputs per sample in *n_in and *n_out.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: training.
@c public func inloop_trainer_sizes(_ trainer: OpaquePointer?, _ n_in: UnsafeMutablePointer<Int64>?,
                                    _ n_out: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let n_in, let n_out else { throw InLoopError(.nullPointer, "trainer_sizes: n_in or n_out is NULL") }
        n_in.pointee = Int64(box.trainer.inputSize)
        n_out.pointee = Int64(box.trainer.outputSize)
    }
}

// MARK: - Derivatives of a model with respect to its inputs

/// Tangent-linear model: for each of `batch` samples, dy = J(x) dx, J = dy/dx at x. x and dx hold
/// batch x n_in values, dy batch x n_out; y (may be NULL) receives the model output at x.
/// Computed in single precision (see inloop_model_jvp_f64 for data assimilation).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_jvp_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ dx: UnsafePointer<Float>?, _ batch: Int64,
                                    _ y: UnsafeMutablePointer<Float>?, _ dy: UnsafeMutablePointer<Float>?) -> inloop_status {
    jvp(model, x, dx, batch, y, dy)
}

/// As inloop_model_jvp_f32, computed in double precision with the model's float32 weights: the
/// tangent-linear model of a 4D-Var system (passes the adjoint dot-product test to round-off).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_jvp_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ dx: UnsafePointer<Double>?, _ batch: Int64,
                                    _ y: UnsafeMutablePointer<Double>?, _ dy: UnsafeMutablePointer<Double>?) -> inloop_status {
    jvp(model, x, dx, batch, y, dy)
}

/// Adjoint model: for each sample, dx = J(x)^T dy (dy: batch x n_out, dx: batch x n_in).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_vjp_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>?, _ batch: Int64,
                                    _ dx: UnsafeMutablePointer<Float>?) -> inloop_status {
    vjp(model, x, dy, batch, dx)
}

/// As inloop_model_vjp_f32 in double precision (the adjoint of inloop_model_jvp_f64).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_vjp_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ dy: UnsafePointer<Double>?, _ batch: Int64,
                                    _ dx: UnsafeMutablePointer<Double>?) -> inloop_status {
    vjp(model, x, dy, batch, dx)
}

/// Per-sample Jacobians: j receives n_out x n_in x batch values, j[(s*n_in + i)*n_out + o] = dy_o/dx_i
/// of sample s: the memory of a Fortran array J(n_out, n_in, batch).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_jacobian_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64,
                                         _ j: UnsafeMutablePointer<Float>?) -> inloop_status {
    jacobian(model, x, batch, j)
}

/// As inloop_model_jacobian_f32 in double precision.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or
/// too large), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_jacobian_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64,
                                         _ j: UnsafeMutablePointer<Double>?) -> inloop_status {
    jacobian(model, x, batch, j)
}

/// The model and batch of a derivative call (also the interpretability calls, ExplainAPI.swift).
func derivativeArguments(_ handle: OpaquePointer?, _ batch: Int64, _ pointers: [UnsafeRawPointer?], _ names: String) throws(InLoopError) -> (ModelBox, Int) {
    let box = try models.lookup(handle)
    guard !pointers.contains(where: { $0 == nil }) else { throw InLoopError(.nullPointer, "one of \(names) is NULL") }
    guard batch >= 1, batch <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)") }
    return (box, Int(batch))
}

private func jvp<T: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ dx: UnsafePointer<T>?, _ batch: Int64,
                          _ y: UnsafeMutablePointer<T>?, _ dy: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(x), UnsafeRawPointer(dx), UnsafeRawPointer(dy)], "x, dx, dy")
        guard let x, let dx, let dy else { return }
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in
            let out = try net.forward(x, batch: n)
            let count = try Limits.arrayCount(batch: n, perSample: net.outputSize)
            if let y { y.update(from: out, count: count) }
            dy.update(from: try net.tangent(dx, batch: n), count: count)
        }
    }
}

private func vjp<T: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ dy: UnsafePointer<T>?, _ batch: Int64,
                          _ dx: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(x), UnsafeRawPointer(dy), UnsafeRawPointer(dx)], "x, dy, dx")
        guard let x, let dy, let dx else { return }
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in
            _ = try net.forward(x, batch: n)
            try net.backward(dy, batch: n, inputGradient: dx)
        }
    }
}

private func jacobian<T: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ batch: Int64, _ j: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(x), UnsafeRawPointer(j)], "x, j")
        guard let x, let j else { return }
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in try net.jacobian(x, batch: n, into: j) }
    }
}
