import InLoopCore
import InLoopFormats
import InLoopMPI

// Uncertainty (issue 15, item 2): an ensemble of N member files in one handle, and MC-dropout on a
// loaded model; forward_ensemble gives the mean and the spread (Sources/InLoopCore/Runtime/Uncertainty.swift).

/// Loads `n` model files (native or ONNX, each as inloop_model_load takes it) as one ensemble and stores
/// a new handle in *model. The members must have the same inputs and the same output shapes (one output
/// each) and compute in one type. Members that are the same chain of dense layers run stacked (one
/// matrix product per layer for all members); others run side by side in one graph. The handle's
/// outputs are `ensemble_mean` and `ensemble_spread`: inloop_model_forward_ensemble_f32 gives both, and
/// inloop_model_forward_f32 gives the mean. Saving it (a trainer from it, inloop_trainer_save_model)
/// writes one ensemble file, which inloop_model_load loads as this ensemble. Input ranges of the members
/// are not kept (set them on the ensemble). On error *model is NULL and the message names the member.
/// Statuses: NULL_POINTER (model, paths or one of its n strings), INVALID_ARGUMENT (n < 1 or n > 4096),
/// IO, FORMAT, UNSUPPORTED (a member with more than one output), SIZE_MISMATCH (members whose inputs,
/// output shapes or types differ), OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_load_ensemble(_ paths: UnsafePointer<UnsafePointer<CChar>?>?, _ n: Int64,
                                          _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { throw InLoopError(.nullPointer, "model_load_ensemble: the output handle pointer is NULL") }
        model.pointee = nil
        guard let paths else { throw InLoopError(.nullPointer, "model_load_ensemble: paths is NULL") }
        var files: [String] = []
        let g = try ensembleGraph("model_load_ensemble", n) { (k) throws(InLoopError) in
            guard let p = paths[k] else { throw InLoopError(.nullPointer, "model_load_ensemble: paths[\(k)] is NULL") }
            files.append(String(cString: p))
        } member: { (k) throws(InLoopError) in
            if k == 0 { ThreadPolicy.applyDefault() }
            let m = try ModelFile.load(path: files[k])
            if let e = m.convenienceError { throw e }
            return m.graph
        }
        model.pointee = models.register(try ModelBox(try Engine.Model(graph: g, name: "ensemble")))
    }
}

/// Runs `batch` samples x (as inloop_model_forward_f32) and writes the mean and the spread (the
/// population standard deviation, ddof = 0: sqrt of the mean squared deviation) of each output value:
/// over the members of an ensemble (inloop_model_load_ensemble), or over the samples of MC-dropout
/// (inloop_model_set_mc_dropout, which then takes precedence). mean and spread each hold batch x n_out
/// values; nothing is written when an argument is wrong. A call at a batch size seen before allocates
/// nothing.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (not an ensemble and MC-dropout off; a model
/// with more than one input; batch < 1 or too large; overlapping arrays), NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_forward_ensemble_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64,
                                                 _ mean: UnsafeMutablePointer<Float>?, _ spread: UnsafeMutablePointer<Float>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        try forwardEnsemble(model, x, batch, mean, spread) { (m, x, n, a, b) throws(InLoopError) in try m.forwardEnsemble(x, batch: n, mean: a, spread: b) }
    }
}

/// As inloop_model_forward_ensemble_f32 for double arrays (the model computes in its own type).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_forward_ensemble_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64,
                                                 _ mean: UnsafeMutablePointer<Double>?, _ spread: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        try forwardEnsemble(model, x, batch, mean, spread) { (m, x, n, a, b) throws(InLoopError) in try m.forwardEnsemble(x, batch: n, mean: a, spread: b) }
    }
}

/// MC-dropout: with samples >= 1, each inloop_model_forward_ensemble call runs the model `samples`
/// times with every Dropout node active (inverted dropout: a value is kept with probability 1 - ratio
/// and scaled by 1/(1 - ratio)), and gives the mean and spread over the samples. The masks come from a
/// generator (xoshiro256**) seeded with `seed` here and advanced by each call: the same seed and the
/// same calls give the same bits. samples = 0 turns it off. Plain forward/run calls stay deterministic
/// (Dropout the identity). Attaching a constraint afterwards turns it off.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (samples < 0 or > 4096; no Dropout node; a
/// ratio below 0 or not below 1), UNSUPPORTED (an ensemble; a model with more than one output or without a batch
/// axis), BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_set_mc_dropout(_ model: OpaquePointer?, _ samples: Int64, _ seed: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard samples >= 0, samples <= Int64(Engine.Uncertainty.maxMembers) else {
            throw InLoopError(.invalidArgument, "set_mc_dropout: samples must be between 0 and \(Engine.Uncertainty.maxMembers), got \(samples)")
        }
        try box.model.setMCDropout(samples: Int(samples), seed: UInt64(bitPattern: seed))
    }
}

@inline(__always)
private func forwardEnsemble<T>(_ model: OpaquePointer?, _ x: UnsafePointer<T>?, _ batch: Int64,
                                 _ mean: UnsafeMutablePointer<T>?, _ spread: UnsafeMutablePointer<T>?,
                                 _ run: (Engine.Model, UnsafePointer<T>, Int, UnsafeMutablePointer<T>, UnsafeMutablePointer<T>) throws(InLoopError) -> Void)
                                 throws(InLoopError) {
    let m = try models.lookup(model).model
    guard let x else { throw InLoopError(.nullPointer, "forward_ensemble: input array x is NULL") }
    guard let mean, let spread else { throw InLoopError(.nullPointer, "forward_ensemble: mean or spread is NULL") }
    guard batch >= 1, batch <= Int64(Int32.max) else {
        throw InLoopError(.invalidArgument, "forward_ensemble: batch must be between 1 and \(Int32.max), got \(batch)")
    }
    _ = try Limits.arrayCount(batch: Int(batch), perSample: m.inputSize)
    _ = try Limits.arrayCount(batch: Int(batch), perSample: m.outputSize)
    try run(m, x, Int(batch), mean, spread)
}

/// Writes the current weights of n trainers (typically the same configuration with different seeds,
/// trained on the same data) as one ensemble file at `path`: the file inloop_model_load_ensemble would
/// make of their n saved models, without the n files; inloop_model_load loads it as that ensemble. Not
/// collective: on a data-parallel run (every rank holds the same weights) call it on one rank. The
/// trainers are not changed and may train on; a trainer used by another thread gives BUSY.
/// Statuses: NULL_POINTER (trainers, one of its n handles, path), INVALID_HANDLE, INVALID_ARGUMENT (n < 1
/// or n > 4096), SIZE_MISMATCH (trainers whose models' inputs, output shapes or types differ),
/// UNSUPPORTED, IO, BUSY, OUT_OF_MEMORY.
/// Section: training.
@c public func inloop_trainer_save_ensemble(_ trainers: UnsafePointer<OpaquePointer?>?, _ n: Int64,
                                           _ path: UnsafePointer<CChar>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainers else { throw InLoopError(.nullPointer, "trainer_save_ensemble: trainers is NULL") }
        guard let path else { throw InLoopError(.nullPointer, "trainer_save_ensemble: path is NULL") }
        var boxes: [TrainerBox] = []
        let g = try ensembleGraph("trainer_save_ensemble", n) { (k) throws(InLoopError) in
            guard let h = trainers[k] else { throw InLoopError(.nullPointer, "trainer_save_ensemble: trainers[\(k)] is NULL") }
            do throws(InLoopError) { boxes.append(try trainerBox(h)) } catch { throw error.prefixed("ensemble member \(k)") }
        } member: { (k) throws(InLoopError) in
            try boxes[k].use { (t) throws(InLoopError) in try t.model() }.graph
        }
        try save(g, to: String(cString: path))
    }
}

/// The ensemble graph of n members: n checked (1 ... maxMembers), then every member's argument checked
/// (`check(k)`, before any member is read), then the members' graphs (`member(k)`; an error names the
/// member).
private func ensembleGraph(_ what: String, _ n: Int64, check: (Int) throws(InLoopError) -> Void,
                           member: (Int) throws(InLoopError) -> Engine.Graph) throws(InLoopError) -> Engine.Graph {
    guard n >= 1, n <= Int64(Engine.Uncertainty.maxMembers) else {
        throw InLoopError(.invalidArgument, "\(what): n must be between 1 and \(Engine.Uncertainty.maxMembers), got \(n)")
    }
    for k in 0..<Int(n) { try check(k) }
    var graphs: [Engine.Graph] = []
    for k in 0..<Int(n) {
        do throws(InLoopError) { graphs.append(try member(k)) } catch { throw error.prefixed("ensemble member \(k)") }
    }
    return try Engine.Uncertainty.ensemble(graphs, name: "ensemble").0
}

/// Writes `g` as a native version-2 file at `path` (an error names the path).
private func save(_ g: Engine.Graph, to path: String) throws(InLoopError) {
    do throws(InLoopError) { try NativeV2.save(g, to: path) } catch { throw error.prefixed(path) }
}

/// Saves the model behind the handle as a native version-2 file at `path` (its graph as loaded: an
/// ensemble gives one ensemble file, which inloop_model_load loads as the same ensemble). Options,
/// input ranges and MC-dropout settings are not saved.
/// Statuses: NULL_POINTER, INVALID_HANDLE, IO, UNSUPPORTED (a graph the native format cannot hold), BUSY.
/// Section: model.
@c public func inloop_model_save(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let path else { throw InLoopError(.nullPointer, "model_save: path is NULL") }
        try save(box.model.graph, to: String(cString: path))
    }
}
