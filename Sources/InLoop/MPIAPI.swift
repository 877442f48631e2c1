import InLoopCore
import InLoopFormats
import InLoopMPI

// The C ABI of MPI use: communicators are passed as Fortran handles (MPI_Fint, an int32_t here so
// the header does not need mpi.h): from Fortran `use mpi` pass the integer communicator, from
// `use mpi_f08` pass comm%MPI_VAL, from C pass MPI_Comm_c2f(comm). All of these are collective
// over the communicator. InLoop never calls MPI_Init or MPI_Finalize; without MPI initialised they
// return INLOOP_ERR_MPI. InLoop works on its own duplicate of the communicator, with errors
// returned rather than fatal.

private func communicator(_ comm: Int32) throws(InLoopError) -> Communicator {
    guard Communicator.isUsable else {
        throw InLoopError(.mpi, "MPI is not initialized (call MPI_Init before passing a communicator to InLoop)")
    }
    let c = try Communicator(fortran: comm)
    ThreadPolicy.applyDefault(localRanks: try c.localSize())
    return c
}

/// Loads a model (either format, as inloop_model_load) with rank 0 reading the file and broadcasting
/// its bytes: one file-system read for the whole job. A missing or corrupt file, or an argument error on any rank (a NULL path or output
/// pointer), gives the status on every rank: that rank's own message there, "rank r: ..." on the others.
/// Statuses: NULL_POINTER, IO, FORMAT, UNSUPPORTED, SIZE_MISMATCH, INVALID_ARGUMENT, OUT_OF_MEMORY, MPI
/// (also: MPI not initialised, an invalid communicator).
/// Section: mpi.
@c public func inloop_model_load_mpi(_ path: UnsafePointer<CChar>?, _ comm: Int32, _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        model?.pointee = nil
        // Every rank must take part in the collectives even with a bad argument: agree first.
        let c = try communicator(comm)
        try c.agree(model == nil ? InLoopError(.nullPointer, "model_load_mpi: the output handle pointer is NULL")
                    : path == nil ? InLoopError(.nullPointer, "model_load_mpi: path is NULL") : nil)
        guard let path, let model else { throw InLoopError(.internal, "model_load_mpi: agreement failed") }
        let p = String(cString: path)
        let bytes = try RankZeroFile.read(p, c)
        var box: ModelBox? = nil, failure: InLoopError? = nil
        do throws(InLoopError) { box = try ModelBox(try ModelFile.load(bytes: bytes, directory: ModelFile.directory(of: p))) } catch { failure = error.prefixed(p) }
        try c.agree(failure)
        guard let box else { throw InLoopError(.internal, "model_load_mpi: agreement failed") }
        model.pointee = models.register(box)
    }
}

/// Makes a trainer data-parallel over a communicator: every rank then calls inloop_trainer_step with
/// its own batch (sizes may differ, or be 0); gradients are averaged over all ranks, weighted by the
/// local batch sizes, with a deterministic reduction (float64 sums in rank order through node-shared
/// memory when all ranks share a node, else exact fixed-point sums through MPI), so all ranks keep
/// bitwise identical weights and the same run twice gives the same weights. Each rank updates its
/// own shard of the parameters and the shards are then exchanged. The reported loss is the global
/// mean. Rank 0's weights and optimizer state are broadcast first. A step that fails on one rank
/// (NaN in its data) fails on all ranks with the weights unchanged. Checkpoints and saved models are
/// then written by rank 0. Environment: INLOOP_MPI_SHARED_MEMORY=0 avoids shared memory, =1 requires it.
/// Collective: a bad trainer handle or a busy trainer on one rank fails the call on every rank.
/// The collective calls of a data-parallel trainer are inloop_trainer_step_* and
/// inloop_trainer_save_checkpoint / _save_model; a bad handle passed to them on one rank reaches the
/// other ranks only when that process has exactly one data-parallel trainer (it cannot know the
/// communicator otherwise; in particular a data-parallel trainer freed on one rank only leaves the
/// others waiting in their next collective call). An invalid communicator cannot be agreed on: the
/// other ranks' MPI waits.
/// Statuses: NULL_POINTER, INVALID_HANDLE, BUSY, SIZE_MISMATCH (ranks hold different models), MPI.
/// Section: mpi.
@c public func inloop_trainer_set_communicator(_ trainer: OpaquePointer?, _ comm: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        var failure: InLoopError? = nil
        var box: TrainerBox? = nil
        do throws(InLoopError) { box = try trainers.lookup(trainer, argument: "set_communicator: trainer") } catch { failure = error }
        // Without MPI there is nothing to agree on: the handle's error comes first.
        if let failure, !Communicator.isUsable { throw failure }
        let c = try communicator(comm)
        let locked = box?.acquire() ?? false
        defer { if locked { box?.release() } }
        if box != nil, !locked { failure = InLoopError(.busy, "set_communicator: trainer is being used by another thread") }
        try c.agree(failure)
        guard let box else { throw InLoopError(.internal, "set_communicator: agreement failed") }
        try attach(box, c)
    }
}

/// Restores a checkpoint with rank 0 reading the file and broadcasting it, and makes the trainer
/// data-parallel over the communicator (see inloop_trainer_set_communicator). Collective: an error
/// on any rank (NULL path or output pointer, a bad file) is a status on every rank.
/// Statuses: NULL_POINTER, IO, FORMAT, UNSUPPORTED, SIZE_MISMATCH, INVALID_ARGUMENT, OUT_OF_MEMORY, MPI.
/// Section: mpi.
@c public func inloop_trainer_load_checkpoint_mpi(_ path: UnsafePointer<CChar>?, _ comm: Int32,
                                                  _ trainer: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        trainer?.pointee = nil
        let c = try communicator(comm)
        try c.agree(trainer == nil ? InLoopError(.nullPointer, "trainer_load_checkpoint_mpi: the output handle pointer is NULL")
                    : path == nil ? InLoopError(.nullPointer, "trainer_load_checkpoint_mpi: path is NULL") : nil)
        guard let path, let trainer else { throw InLoopError(.internal, "trainer_load_checkpoint_mpi: agreement failed") }
        let p = String(cString: path)
        let bytes = try RankZeroFile.read(p, c)
        var box: TrainerBox? = nil, failure: InLoopError? = nil
        do throws(InLoopError) { box = TrainerBox(try Checkpoint.load(bytes: bytes)) } catch { failure = error.prefixed(p) }
        try c.agree(failure)
        guard let box else { throw InLoopError(.internal, "trainer_load_checkpoint_mpi: agreement failed") }
        // the checkpoint's input statistics are every rank's merged: rank 0 carries them on, so that
        // merging again at the next save counts each sample once
        if c.rank != 0 { box.trainer.setInputStatistics(Engine.RangeStatistics(features: box.trainer.inputSize)) }
        try attach(box, c)
        trainer.pointee = trainers.register(box)
    }
}

/// Makes the trainer data-parallel over `c` (collective; the caller holds the trainer's lock).
private func attach(_ box: TrainerBox, _ c: Communicator) throws(InLoopError) {
    try box.parallel?.gatherState()   // a rank-0 state to broadcast whole
    switch box.trainer {
    case .float32(let tr):
        let dp = try DataParallel<Float>(comm: c, parameterCount: tr.network.parameterCount)
        try dp.synchronize(tr)
        dp.attach(to: tr)
        box.parallel = dp
    case .float64(let tr):
        let dp = try DataParallel<Double>(comm: c, parameterCount: tr.network.parameterCount)
        try dp.synchronize(tr)
        dp.attach(to: tr)
        box.parallel = dp
    }
    box.comm = c
}

/// Stores in *rank and *size this process's rank in the trainer's communicator and its size
/// (0 and 1 for a trainer without one).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: mpi.
@c public func inloop_trainer_rank(_ trainer: OpaquePointer?, _ rank: UnsafeMutablePointer<Int32>?, _ size: UnsafeMutablePointer<Int32>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let rank, let size else { throw InLoopError(.nullPointer, "trainer_rank: rank or size is NULL") }
        rank.pointee = Int32(box.comm?.rank ?? 0)
        size.pointee = Int32(box.comm?.size ?? 1)
    }
}
