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

/// Loads a model (either format, as inloop_model_load) with rank 0 reading the file and broadcasting its bytes: one file-system read for
/// the whole job. A missing or corrupt file gives the same status and message on every rank.
@c public func inloop_model_load_mpi(_ path: UnsafePointer<CChar>?, _ comm: Int32, _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { throw InLoopError(.nullPointer, "model_load_mpi: the output handle pointer is NULL") }
        model.pointee = nil
        // Every rank must take part in the collectives even with a bad argument: check after.
        let c = try communicator(comm)
        guard try c.allAgree(path != nil) else { throw InLoopError(.nullPointer, "model_load_mpi: path is NULL on some rank") }
        let p = path.map { String(cString: $0) } ?? ""
        let bytes = try RankZeroFile.read(p, c)
        do throws(InLoopError) {
            model.pointee = models.register(try ModelBox(try ModelFile.load(bytes: bytes)))
        } catch {
            throw error.prefixed(p)
        }
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
@c public func inloop_trainer_set_communicator(_ trainer: OpaquePointer?, _ comm: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        let c = try communicator(comm)
        try attach(box, c)
    }
}

/// Restores a checkpoint with rank 0 reading the file and broadcasting it, and makes the trainer
/// data-parallel over the communicator (see inloop_trainer_set_communicator).
@c public func inloop_trainer_load_checkpoint_mpi(_ path: UnsafePointer<CChar>?, _ comm: Int32,
                                                  _ trainer: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let trainer else { throw InLoopError(.nullPointer, "trainer_load_checkpoint_mpi: the output handle pointer is NULL") }
        trainer.pointee = nil
        let c = try communicator(comm)
        guard try c.allAgree(path != nil) else { throw InLoopError(.nullPointer, "trainer_load_checkpoint_mpi: path is NULL on some rank") }
        let p = path.map { String(cString: $0) } ?? ""
        let bytes = try RankZeroFile.read(p, c)
        let box: TrainerBox
        do throws(InLoopError) { box = TrainerBox(try Checkpoint.load(bytes: bytes)) } catch { throw error.prefixed(p) }
        try attach(box, c)
        trainer.pointee = trainers.register(box)
    }
}

private func attach(_ box: TrainerBox, _ c: Communicator) throws(InLoopError) {
    try box.use { (t) throws(InLoopError) in
        switch t {
        case .float32(let tr):
            try (box.parallel as? DataParallel<Float>)?.gatherState()   // a rank-0 state to broadcast whole
            let dp = try DataParallel<Float>(comm: c, parameterCount: tr.network.parameterCount)
            try dp.synchronize(tr)
            dp.attach(to: tr)
            box.parallel = dp
        case .float64(let tr):
            try (box.parallel as? DataParallel<Double>)?.gatherState()
            let dp = try DataParallel<Double>(comm: c, parameterCount: tr.network.parameterCount)
            try dp.synchronize(tr)
            dp.attach(to: tr)
            box.parallel = dp
        }
        box.comm = c
    }
}

/// Stores in *rank and *size this process's rank in the trainer's communicator and its size
/// (0 and 1 for a trainer without one).
@c public func inloop_trainer_rank(_ trainer: OpaquePointer?, _ rank: UnsafeMutablePointer<Int32>?, _ size: UnsafeMutablePointer<Int32>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try trainers.lookup(trainer, argument: "trainer")
        guard let rank, let size else { throw InLoopError(.nullPointer, "trainer_rank: rank or size is NULL") }
        rank.pointee = Int32(box.comm?.rank ?? 0)
        size.pointee = Int32(box.comm?.size ?? 1)
    }
}
