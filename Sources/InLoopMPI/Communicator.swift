import InLoopMPIShim
import InLoopCore
import InLoopFormats
#if canImport(Glibc)
import Glibc
#endif

/// InLoop's own duplicate of a caller's communicator (MPI_Comm_dup with MPI_ERRORS_RETURN): its
/// collectives never mix with the caller's messages, and an MPI error becomes an `InLoopError`
/// instead of aborting the job. The library never calls MPI_Init or MPI_Finalize.
public final class Communicator: @unchecked Sendable {
    /// Fortran handle (MPI_Fint) of the private duplicate.
    let handle: Int32
    public let rank: Int
    public let size: Int

    /// Duplicates the communicator whose Fortran handle is `fortran` (collective over it).
    public init(fortran: Int32) throws(InLoopError) {
        var dup: Int32 = 0
        try Communicator.check(ilshim_comm_dup(fortran, &dup), "duplicating the communicator")
        var r: Int32 = 0, s: Int32 = 0
        try Communicator.check(ilshim_comm_rank(dup, &r), "MPI_Comm_rank")
        try Communicator.check(ilshim_comm_size(dup, &s), "MPI_Comm_size")
        handle = dup
        rank = Int(r)
        size = Int(s)
    }

    deinit {
        // Freeing needs MPI alive; after MPI_Finalize the duplicate is gone with it.
        if ilshim_mpi_is_usable() != 0 { _ = ilshim_comm_free(handle) }
    }

    public static var isUsable: Bool { ilshim_mpi_is_usable() != 0 }
    public static var worldHandle: Int32 { ilshim_comm_world() }

    static func check(_ code: Int32, _ what: String) throws(InLoopError) {
        guard code != 0 else { return }
        var buf = [CChar](repeating: 0, count: 512)
        ilshim_error_string(code, &buf, Int32(buf.count))
        buf[buf.count - 1] = 0
        let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw InLoopError(.mpi, "\(what): \(text)")
    }

    /// Ranks of this communicator on this node (collective).
    public func localSize() throws(InLoopError) -> Int {
        var n: Int32 = 1
        try Communicator.check(ilshim_comm_local_size(handle, &n), "MPI_Comm_split_type")
        return Int(n)
    }

    public func allreduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws(InLoopError) {
        try Communicator.check(ilshim_allreduce_max_f64(handle, buffer, Int64(count)), "MPI_Allreduce")
    }

    /// recv = this rank's segment of the sum of every rank's `send` (segments of counts[r] values).
    public func reduceScatterSum<I: FixedWidthInteger & SignedInteger>(_ send: UnsafePointer<I>, _ recv: UnsafeMutablePointer<I>,
                                                                         counts: UnsafePointer<Int32>) throws(InLoopError) {
        let bytes = Int32(MemoryLayout<I>.stride)
        guard bytes == 4 || bytes == 8 else { throw InLoopError(.internal, "reduce-scatter of \(I.self) is not supported") }
        try Communicator.check(ilshim_reduce_scatter_sum_int(handle, send, recv, counts, bytes), "MPI_Reduce_scatter")
    }

    /// In place: rank r's counts[r] values at displacements[r] go to every rank.
    public func allgather<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, counts: UnsafePointer<Int32>,
                                                  displacements: UnsafePointer<Int32>) throws(InLoopError) {
        let bytes = Int32(MemoryLayout<T>.stride)
        guard bytes == 4 || bytes == 8 else { throw InLoopError(.internal, "allgather of \(T.self) is not supported") }
        try Communicator.check(ilshim_allgatherv_real(handle, buffer, counts, displacements, bytes), "MPI_Allgatherv")
    }

    /// Shared memory of `bytes` bytes mapped by every rank (all must run on one node), or nil on
    /// every rank when it cannot be had (collective). Release with `unmapSharedMemory`.
    public func mapSharedMemory(bytes: Int) throws(InLoopError) -> UnsafeMutableRawPointer? {
        var base: UnsafeMutableRawPointer? = nil
        try Communicator.check(ilshim_shm_map(handle, Int64(bytes), &base), "mapping shared memory")
        return base
    }

    public static func unmapSharedMemory(_ base: UnsafeMutableRawPointer, bytes: Int) {
        ilshim_shm_unmap(base, Int64(bytes))
    }

    /// A barrier after which every rank sees the others' earlier stores to shared memory.
    public func fencedBarrier() throws(InLoopError) {
        try Communicator.check(ilshim_barrier_fenced(handle), "MPI_Barrier")
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int = 0) throws(InLoopError) {
        try Communicator.check(ilshim_bcast_bytes(handle, buffer, Int64(bytes), Int32(root)), "MPI_Bcast")
    }

    /// Broadcasts the contents of an array (whose size every rank already knows).
    public func broadcast<E>(_ array: inout [E], root: Int = 0) throws(InLoopError) {
        var code: Int32 = 0
        let h = handle
        array.withUnsafeMutableBytes { p in
            if let base = p.baseAddress { code = ilshim_bcast_bytes(h, base, Int64(p.count), Int32(root)) }
        }
        try Communicator.check(code, "MPI_Bcast")
    }

    /// Makes every rank see the outcome of an operation done on `root` only (collective): returns
    /// normally everywhere, or throws root's error everywhere ("rank r: …" on the other ranks).
    public func shareOutcome(_ rootError: InLoopError?, root: Int = 0) throws(InLoopError) {
        var header: [Int64] = [Int64(rank == root && rootError != nil ? 1 : 0)]
        try broadcast(&header, root: root)
        guard header[0] != 0 else { return }
        try failTogether(root: root, rank == root ? rootError : nil)
    }

    /// Agreement (collective): each rank passes its own error so far, or nil. Returns on every rank
    /// when no rank failed (one MAX all-reduce); otherwise throws on every rank: a rank that failed
    /// throws its own error, the others the error of the lowest failing rank r as "rank r: …".
    public func agree(_ local: InLoopError?) throws(InLoopError) {
        var v: Double = local == nil ? 0 : Double(size - rank)
        try allreduceMax(&v, count: 1)
        guard v > 0 else { return }
        try failTogether(root: size - Int(v), local)
    }

    /// When every rank knows that `root` failed (collective): root's error reaches every rank; a rank
    /// with its own error throws that, the others root's error as "rank root: …".
    public func failTogether(root: Int, _ local: InLoopError?) throws(InLoopError) -> Never {
        var message: [UInt8] = rank == root ? Array((local?.message ?? "unknown error").utf8.prefix(4096)) : []
        var header: [Int64] = [Int64(local?.kind.rawValue ?? InLoopError.Kind.internal.rawValue), Int64(message.count)]
        try broadcast(&header, root: root)
        if rank != root { message = [UInt8](repeating: 0, count: Int(max(0, min(header[1], 4096)))) }
        if !message.isEmpty { try broadcast(&message, root: root) }
        if let local { throw local }
        let kind = InLoopError.Kind(rawValue: Int32(truncatingIfNeeded: header[0])) ?? .internal
        throw InLoopError(kind, "rank \(root): " + String(decoding: message, as: UTF8.self))
    }

    /// The smallest and largest of `value` over all ranks (collective).
    public func extremes(_ value: Int) throws(InLoopError) -> (min: Int, max: Int) {
        var v = (Double(value), -Double(value))
        try withUnsafeMutablePointer(to: &v) { (p) throws(InLoopError) in
            try p.withMemoryRebound(to: Double.self, capacity: 2) { (d) throws(InLoopError) in try allreduceMax(d, count: 2) }
        }
        return (Int(-v.1), Int(v.0))
    }

    /// Agreement: true on every rank only if `ok` is true on every rank (collective).
    public func allAgree(_ ok: Bool) throws(InLoopError) -> Bool {
        var v: Double = ok ? 0 : 1
        try allreduceMax(&v, count: 1)
        return v == 0
    }
}

/// Reads a file on rank 0 and broadcasts its bytes (and any error) to every rank, so thousands of
/// ranks do not hit the file system at once and all ranks see the same outcome.
public enum RankZeroFile {
    public static func read(_ path: String, _ comm: Communicator) throws(InLoopError) -> [UInt8] {
        var bytes: [UInt8] = []
        var header: [Int64] = [0, 0, 0]   // size or -1, error kind, message length
        var message: [UInt8] = []
        if comm.rank == 0 {
            do throws(InLoopError) {
                bytes = try FileIO.read(path)
                header[0] = Int64(bytes.count)
            } catch {
                message = Array(error.message.utf8)
                header = [-1, Int64(error.kind.rawValue), Int64(message.count)]
            }
        }
        try comm.broadcast(&header)
        if header[0] < 0 {
            if comm.rank != 0 { message = [UInt8](repeating: 0, count: Int(header[2])) }
            if !message.isEmpty { try comm.broadcast(&message) }
            let kind = InLoopError.Kind(rawValue: Int32(header[1])) ?? .io
            throw InLoopError(kind, (comm.rank == 0 ? "" : "rank 0: ") + String(decoding: message, as: UTF8.self))
        }
        if comm.rank != 0 { bytes = [UInt8](repeating: 0, count: Int(header[0])) }
        if !bytes.isEmpty { try comm.broadcast(&bytes) }
        return bytes
    }
}

/// Threads are the caller's: InLoop only picks a default when nobody chose — no
/// inloop_set_num_threads call, no OPENBLAS_NUM_THREADS / OMP_NUM_THREADS — and then never lets
/// ranks per node × threads exceed the cores this process may use. The default is applied before
/// the first handle is made (and when `inloop_get_num_threads` is asked), from the launcher's
/// environment; a communicator that shows more ranks on this node lowers it.
public enum ThreadPolicy {
    /// (the caller chose, the largest number of ranks on this node seen so far)
    private static let state = Lock<(explicitlySet: Bool, localRanks: Int)>((false, 0))

    public static func userChose() { state.withLock { $0.explicitlySet = true } }

    static var environmentChose: Bool {
        getenv("OPENBLAS_NUM_THREADS") != nil || getenv("OMP_NUM_THREADS") != nil
    }

    /// Ranks on this node known without communication (launcher environment), or nil.
    public static var localRanksFromEnvironment: Int? {
        for name in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MPI_LOCAL_NRANKS", "SLURM_NTASKS_PER_NODE", "PMI_LOCAL_SIZE"] {
            if let v = getenv(name), let n = Int(String(cString: v)), n >= 1 { return n }
        }
        return nil
    }

    /// Cores this process may use divided among `localRanks` ranks (at least 1).
    public static func threads(localRanks: Int) -> Int {
        let cores = Int(ilshim_affinity_cores())
        let nodeCores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        // A rank bound to a few cores uses those; an unbound one shares the node with its peers.
        return max(1, min(cores, nodeCores / max(1, localRanks)))
    }

    /// Applies the default unless the caller or the environment chose: threads for the largest of
    /// `localRanks` (from a communicator), the launcher's count and any count seen before (1 when
    /// none is known). Cheap after the first call; safe from any thread.
    public static func applyDefault(localRanks: Int? = nil) {
        guard !environmentChose else { return }
        state.withLock { s in
            guard !s.explicitlySet else { return }
            let ranks = max(localRanks ?? 0, localRanksFromEnvironment ?? 0, 1)
            guard ranks > s.localRanks else { return }
            s.localRanks = ranks
            Engine.Threads.set(threads(localRanks: ranks))
        }
    }
}
