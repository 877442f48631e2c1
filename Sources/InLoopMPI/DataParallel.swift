import InLoopCore
#if canImport(Glibc)
import Glibc
#endif

/// What the C layer needs of a data-parallel trainer's group, whatever its precision.
public protocol DataParallelGroup: AnyObject {
    var comm: Communicator { get }
    /// Completes the optimizer state on every rank (collective; see `DataParallel.gatherState`).
    func gatherState() throws(InLoopError)
    /// Takes part in a training step's reduction with a local error instead of a gradient
    /// (collective): the step then fails on every rank, this one with `error`.
    func fail(_ error: InLoopError) throws(InLoopError) -> Never
}

/// Data-parallel training over a communicator: every rank trains on its own batch; gradients are
/// averaged across ranks, weighted by the local batch sizes (which may differ, or be 0). Each rank
/// receives the global gradient for its shard of the parameters only (a reduce-scatter), updates
/// that shard, and the shards are then gathered by every rank (an all-gather): the optimizer's work
/// is divided among the ranks and all ranks keep bitwise identical weights (see `DistributedStep`).
///
/// The sum is computed in fixed point, with one scale per block of 1024 parameters: a MAX
/// all-reduce agrees on each block's largest magnitude, each rank rounds its values to integers at
/// the block's power-of-two scale, and an integer SUM adds them. Integer addition is associative, so
/// the result is bitwise independent of the MPI reduction algorithm and of the order ranks are
/// combined in: the same run twice gives the same weights. float64 training sums 64-bit integers
/// (rounding error below |block's largest value| × ranks × 2⁻⁵⁰, like a float64 sum's); float32
/// training sums 32-bit integers, half the bytes to move, with an error below
/// |block's largest value| × ranks × 2⁻³⁰, i.e. within a float32 rounding for up to 64 ranks (more
/// ranks use 64-bit integers).
///
/// When all ranks run on one node, gradients and updated shards travel through node-shared memory
/// instead of MPI messages: each rank copies its gradient where the others can read it and, after a
/// fenced barrier, sums its shard straight from everyone's copy, in float64 and in rank order, so
/// again independent of timing and bitwise reproducible, with no fixed-point passes at all. Set
/// INLOOP_MPI_SHARED_MEMORY=0 to use the fixed-point reduce-scatter and MPI all-gather instead
/// (multi-node runs always do), =1 to make its absence an error; the two round differently, so their last bits may differ.
public final class DataParallel<T: Real>: DataParallelGroup, @unchecked Sendable {
    public let comm: Communicator
    /// Parameters of the model.
    public let parameterCount: Int
    /// Every rank's shard of the parameters.
    public let shards: [Range<Int>]
    /// 64-bit (true) or 32-bit fixed point.
    private let wide: Bool
    private let ranks: Int
    private let blockCount: Int
    // MPI counts and displacements (per rank): fixed-point segments (shard + loss + batch),
    // parameters, norm blocks.
    private let segmentCounts: UnsafeMutablePointer<Int32>
    private let shardCounts: UnsafeMutablePointer<Int32>
    private let shardOffsets: UnsafeMutablePointer<Int32>
    private let blockCounts: UnsafeMutablePointer<Int32>
    private let blockOffsets: UnsafeMutablePointer<Int32>
    /// [error flag, loss peak, block peaks…]: the MAX all-reduce.
    private let peaks: UnsafeMutablePointer<Double>
    /// Every rank's segment, back to back (parameterCount + 2·ranks integers of 4 or 8 bytes).
    private let send: UnsafeMutableRawPointer
    /// This rank's segment of the sum.
    private let received: UnsafeMutableRawPointer
    private weak var trainer: Trainer<T>? = nil
    /// Node-shared memory: every rank's region (`regionBytes` each: a 64-byte header with its batch,
    /// loss and error flag, then its gradient), then the parameters.
    private let shared: UnsafeMutableRawPointer?
    private let regionBytes: Int
    private let sharedBytes: Int
    /// One block's float64 sums (shared-memory path).
    private let accumulator: UnsafeMutablePointer<Double>

    public init(comm: Communicator, parameterCount n: Int) throws(InLoopError) {
        guard n + 2 * comm.size < Int(Int32.max) else {
            throw InLoopError(.unsupported, "data-parallel training supports up to 2^31 parameters; the model has \(n)")
        }
        // Collective checks and decisions first (every rank reaches the same ones), before anything
        // is sized from n: all ranks must hold the same model.
        let sizes = try comm.extremes(n)
        guard sizes.min == sizes.max else {
            throw InLoopError(.sizeMismatch, "ranks hold models of different sizes (\(sizes.min)…\(sizes.max) parameters); every rank must create the trainer from the same configuration")
        }
        let ranks = comm.size
        regionBytes = 64 + (n * MemoryLayout<T>.stride + 63) / 64 * 64
        sharedBytes = regionBytes * ranks + n * MemoryLayout<T>.stride
        // INLOOP_MPI_SHARED_MEMORY: 0 = never, 1 = required (an error when impossible), else when possible.
        let setting = getenv("INLOOP_MPI_SHARED_MEMORY").map { String(cString: $0) } ?? ""
        var mapped: UnsafeMutableRawPointer? = nil
        if ranks > 1, try comm.allAgree(setting != "0"), try comm.localSize() == ranks {
            mapped = try comm.mapSharedMemory(bytes: sharedBytes)
        }
        if mapped == nil, ranks > 1, try !comm.allAgree(setting != "1") {
            throw InLoopError(.mpi, "INLOOP_MPI_SHARED_MEMORY=1 but the ranks cannot share memory (they are not all on one node, or /dev/shm has no room for \(sharedBytes) bytes)")
        }
        shared = mapped

        self.comm = comm
        self.ranks = ranks
        parameterCount = n
        wide = T.self == Double.self || ranks > 64
        shards = DistributedStep<T>.shards(parameterCount: n, processes: ranks)
        blockCount = DistributedStep<T>.blocks(n)
        segmentCounts = .allocate(capacity: ranks)
        shardCounts = .allocate(capacity: ranks)
        shardOffsets = .allocate(capacity: ranks)
        blockCounts = .allocate(capacity: ranks)
        blockOffsets = .allocate(capacity: ranks)
        let b = DistributedStep<T>.block
        for r in 0..<ranks {
            let s = shards[r]
            segmentCounts[r] = Int32(s.count + 2)
            shardCounts[r] = Int32(s.count)
            shardOffsets[r] = Int32(s.lowerBound)
            let firstBlock = s.lowerBound / b, endBlock = (s.upperBound + b - 1) / b
            blockCounts[r] = Int32(s.isEmpty ? 0 : endBlock - firstBlock)
            blockOffsets[r] = Int32(firstBlock)
        }
        peaks = .allocate(capacity: blockCount + 2)
        peaks.initialize(repeating: 0, count: blockCount + 2)
        // The fixed-point buffers only when the exchange goes through MPI.
        let width = wide ? 8 : 4
        let sendBytes = mapped == nil ? (n + 2 * ranks) * width : 64
        send = .allocate(byteCount: sendBytes, alignment: 64)
        send.initializeMemory(as: UInt8.self, repeating: 0, count: sendBytes)
        let mine = mapped == nil ? (shards[comm.rank].count + 2) * width : 64
        received = .allocate(byteCount: mine, alignment: 64)
        received.initializeMemory(as: UInt8.self, repeating: 0, count: mine)
        accumulator = .allocate(capacity: DistributedStep<T>.block)
        accumulator.initialize(repeating: 0, count: DistributedStep<T>.block)
    }

    deinit {
        for p in [segmentCounts, shardCounts, shardOffsets, blockCounts, blockOffsets] { p.deallocate() }
        peaks.deallocate()
        accumulator.deallocate()
        if let shared { Communicator.unmapSharedMemory(shared, bytes: sharedBytes) }
        send.deallocate()
        received.deallocate()
    }

    /// Makes every rank start from rank 0's parameters (and optimizer state) (collective; `init`
    /// has checked that all ranks hold models of the same size).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func synchronize(_ trainer: Trainer<T>) throws(InLoopError) {
        guard parameterCount == trainer.network.parameterCount else {
            throw InLoopError(.internal, "data-parallel set up for \(parameterCount) parameters, the trainer has \(trainer.network.parameterCount)")
        }
        let p = trainer.network.parameters
        try comm.broadcast(UnsafeMutableRawPointer(p.base), bytes: p.count * MemoryLayout<T>.stride)
        for s in trainer.state { try comm.broadcast(UnsafeMutableRawPointer(s.base), bytes: s.count * MemoryLayout<T>.stride) }
    }

    /// Makes the trainer data-parallel over this communicator (see `Trainer.distributed`).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func attach(to trainer: Trainer<T>) {
        self.trainer = trainer
        trainer.noiseRank = comm.rank
        trainer.distributed = DistributedStep<T>(
            shard: shards[comm.rank],
            reduce: { [unowned self] (g, n, batch, loss, localError) throws(InLoopError) -> Double in
                try self.reduce(g, n, batch, loss, localError)
            },
            shareBlockSums: { [unowned self] (sums) throws(InLoopError) in try self.shareBlockSums(sums) },
            shareParameters: { [unowned self] (p) throws(InLoopError) in try self.shareParameters(p) })
    }

    /// Completes the optimizer state on every rank from every rank's shard (collective): needed
    /// before the state is read whole, as for a checkpoint, since each rank updates only its shard.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func gatherState() throws(InLoopError) {
        guard ranks > 1, let trainer else { return }
        for s in trainer.state { try comm.allgather(s.base, counts: shardCounts, displacements: shardOffsets) }
    }

    /// Every rank's norm blocks to every rank.
    private func shareBlockSums(_ sums: UnsafeMutablePointer<Double>) throws(InLoopError) {
        if ranks > 1 { try comm.allgather(sums, counts: blockCounts, displacements: blockOffsets) }
    }

    /// Every rank's updated shard to every rank.
    private func shareParameters(_ p: UnsafeMutablePointer<T>) throws(InLoopError) {
        guard ranks > 1 else { return }
        guard let shared else { return try comm.allgather(p, counts: shardCounts, displacements: shardOffsets) }
        let all = (shared + regionBytes * ranks).assumingMemoryBound(to: T.self)
        let mine = shards[comm.rank]
        (all + mine.lowerBound).update(from: p + mine.lowerBound, count: mine.count)
        try comm.fencedBarrier()
        for r in 0..<ranks where r != comm.rank {
            (p + shards[r].lowerBound).update(from: all + shards[r].lowerBound, count: shards[r].count)
        }
        // Nobody writes these parameters again before the next step's barrier, which every rank
        // reaches only after copying them.
    }

    /// Takes part in a step's reduction with `error` and no gradient: the step fails on every rank.
    public func fail(_ error: InLoopError) throws(InLoopError) -> Never {
        _ = try reduce(nil, parameterCount, 0, 0, error)
        throw InLoopError(.internal, "a failed data-parallel step was not refused")
    }

    /// `g` is read only when `localError` is nil. A failure on any rank throws on every rank: its own
    /// error on a rank that failed, "rank r: …" (the lowest failing rank's error) on the others.
    func reduce(_ g: UnsafeMutablePointer<T>?, _ n: Int, _ batch: Int, _ loss: Double, _ localError: InLoopError?) throws(InLoopError) -> Double {
        guard n == parameterCount else { throw InLoopError(.internal, "data-parallel buffer does not match the model") }
        var localError = localError
        if localError == nil, g == nil { localError = InLoopError(.internal, "data-parallel step without a gradient") }
        if ranks == 1 {  // nothing to combine: the local gradient is the global one
            if let localError { throw localError }
            guard batch > 0 else { throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)") }
            return loss
        }
        if shared != nil { return try reduceShared(g, batch, loss, localError) }
        if localError == nil, !wide, batch > Int(Int32.max) / ranks {   // the batch sum must fit 32 bits
            localError = InLoopError(.invalidArgument, "a local batch of \(batch) is too large for 32-bit fixed-point reduction over \(ranks) ranks")
        }
        // Each rank contributes batch × its mean gradient (and loss): the weighted average's numerator.
        // A failed rank contributes nothing but ranks − rank in the flag: the MAX names the lowest.
        let w = Double(batch)
        let B = DistributedStep<T>.block
        if let g, localError == nil {
            peaks[0] = 0
            peaks[1] = abs(w * loss)
            for b in 0..<blockCount {
                peaks[2 + b] = w * Double(T.largestMagnitude(g + b * B, count: Swift.min(B, n - b * B)))
            }
        } else {
            peaks[0] = Double(ranks - comm.rank)
            for i in 1..<(blockCount + 2) { peaks[i] = 0 }
        }
        try comm.allreduceMax(peaks, count: blockCount + 2)
        if peaks[0] > 0 { try comm.failTogether(root: ranks - Int(peaks[0]), localError) }
        guard let g else { throw InLoopError(.internal, "data-parallel step without a gradient") }
        for i in 1..<(blockCount + 2) where !peaks[i].isFinite {
            throw InLoopError(.nonFinite, "gradients are not finite; the step was not applied")
        }
        // Each block's scale: a power of two (exact) keeping the sum over all ranks within the
        // integers' range; the peaks' slots are reused for the scales.
        let limit = (wide ? 0x1p50 : 0x1p30) / Double(ranks)
        for i in 1..<(blockCount + 2) {
            let peak = peaks[i]
            peaks[i] = peak > 0 ? Double(sign: .plus, exponent: (limit / peak).exponent, significand: 1) : 1
        }
        return wide ? try exchange(Int64.self, g, batch, loss) : try exchange(Int32.self, g, batch, loss)
    }

    /// The shared-memory reduction: every rank publishes its batch, loss, error flag and gradient in
    /// its region; after a fenced barrier each rank forms Σ batch_r · gradient_r / Σ batch_r for its
    /// shard, in float64 and in rank order. Regions are written again only after the next barrier
    /// that follows everyone's reads (the parameter exchange, the norm's all-gather, or the barrier
    /// before a refused step returns).
    private func reduceShared(_ g: UnsafeMutablePointer<T>?, _ batch: Int, _ loss: Double, _ localError: InLoopError?) throws(InLoopError) -> Double {
        guard let shared else { throw InLoopError(.internal, "no shared memory") }
        let n = parameterCount
        let me = shared + regionBytes * comm.rank
        let ok = localError == nil ? g : nil
        me.storeBytes(of: Int64(ok == nil ? 0 : batch), toByteOffset: 0, as: Int64.self)
        me.storeBytes(of: ok == nil ? 0 : loss, toByteOffset: 8, as: Double.self)
        me.storeBytes(of: Int64(ok == nil ? 1 : 0), toByteOffset: 16, as: Int64.self)
        if let ok { (me + 64).assumingMemoryBound(to: T.self).update(from: ok, count: n) }
        try comm.fencedBarrier()
        var total = 0, firstFailed: Int? = nil, lossSum = 0.0
        for r in 0..<ranks {
            let header = shared + regionBytes * r
            let b = Int(header.load(fromByteOffset: 0, as: Int64.self))
            total += b
            lossSum += Double(b) * header.load(fromByteOffset: 8, as: Double.self)
            if header.load(fromByteOffset: 16, as: Int64.self) != 0, firstFailed == nil { firstFailed = r }
        }
        if firstFailed != nil || total == 0 {
            try comm.fencedBarrier()   // everyone has read the headers before anyone writes again
            if let firstFailed { try comm.failTogether(root: firstFailed, localError) }
            throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)")
        }
        guard let g else { throw InLoopError(.internal, "data-parallel step without a gradient") }
        let inv = 1 / Double(total)
        let mine = shards[comm.rank]
        let acc = accumulator
        var i = mine.lowerBound
        let (w0, x0) = published(shared, 0), (w1, x1) = published(shared, 1)   // ranks ≥ 2 here
        while i < mine.upperBound {   // block by block, so the float64 sums stay in L1
            let m = Swift.min(DistributedStep<T>.block, mine.upperBound - i)
            // (w0·x0 + w1·x1) + w2·x2 + …: the products are exact, the additions in rank order.
            if ranks == 2 {
                for j in i..<(i + m) { g[j] = T((w0 * Double(x0[j]) + w1 * Double(x1[j])) * inv) }
            } else {
                for j in 0..<m { acc[j] = w0 * Double(x0[i + j]) + w1 * Double(x1[i + j]) }
                for r in 2..<ranks {
                    let (w, x) = published(shared, r)
                    for j in 0..<m { acc[j] += w * Double(x[i + j]) }
                }
                for j in 0..<m { g[i + j] = T(acc[j] * inv) }
            }
            i += m
        }
        return lossSum * inv
    }

    /// Rank r's batch (as a weight) and gradient in the shared memory.
    @inline(__always)
    private func published(_ shared: UnsafeMutableRawPointer, _ r: Int) -> (Double, UnsafePointer<T>) {
        let header = shared + regionBytes * r
        return (Double(header.load(fromByteOffset: 0, as: Int64.self)), UnsafePointer((header + 64).assumingMemoryBound(to: T.self)))
    }

    /// Rounds to integers at the scales in `peaks`, reduce-scatters them and returns this rank's shard
    /// of the mean (in `g`) and the mean loss.
    @inline(__always)
    private func exchange<I: FixedWidthInteger & SignedInteger>(_: I.Type, _ g: UnsafeMutablePointer<T>, _ batch: Int, _ loss: Double) throws(InLoopError) -> Double {
        let w = Double(batch)
        let B = DistributedStep<T>.block
        let out = send.assumingMemoryBound(to: I.self)
        for (r, s) in shards.enumerated() {
            let segment = out + s.lowerBound + 2 * r
            var i = s.lowerBound
            while i < s.upperBound {
                let b = i / B, end = Swift.min(s.upperBound, (b + 1) * B)
                FixedPoint.quantize(UnsafePointer(g + i), count: end - i, scale: w * peaks[2 + b], into: segment + (i - s.lowerBound))
                i = end
            }
            segment[s.count] = I(truncatingIfNeeded: FixedPoint.round(w * peaks[1] * loss))
            segment[s.count + 1] = I(truncatingIfNeeded: batch)
        }
        let sum = received.assumingMemoryBound(to: I.self)
        let mine = shards[comm.rank]
        try comm.reduceScatterSum(UnsafePointer(out), sum, counts: segmentCounts)
        let total = Int(sum[mine.count + 1])
        guard total > 0 else {
            throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)")
        }
        var i = mine.lowerBound
        while i < mine.upperBound {
            let b = i / B, end = Swift.min(mine.upperBound, (b + 1) * B)
            FixedPoint.dequantize(UnsafePointer(sum + (i - mine.lowerBound)), count: end - i, factor: 1 / (peaks[2 + b] * Double(total)), into: g + i)
            i = end
        }
        return FixedPoint.double(Int64(sum[mine.count])) / (peaks[1] * Double(total))
    }
}

/// Conversions between floating point and the fixed-point integers of the reduction, for values
/// of magnitude below 2^51: adding 1.5·2^52 leaves the value rounded to the nearest integer (ties to
/// even) in the low bits of the double, so both directions are an addition and an integer
/// subtraction, which the compiler vectorises (x86-64's baseline has no vector int64 conversion).
enum FixedPoint {
    static let magic = 0x1.8p52
    static let magicBits = Int64(bitPattern: 0x1.8p52.bitPattern)

    @inline(__always) static func round(_ x: Double) -> Int64 { Int64(bitPattern: (x + magic).bitPattern) &- magicBits }
    @inline(__always) static func double(_ i: Int64) -> Double { Double(bitPattern: UInt64(bitPattern: i &+ magicBits)) - magic }

    @inline(__always)
    static func quantize<T: Real, I: FixedWidthInteger>(_ x: UnsafePointer<T>, count: Int, scale: Double, into out: UnsafeMutablePointer<I>) {
        for i in 0..<count { out[i] = I(truncatingIfNeeded: round(scale * Double(x[i]))) }
    }

    @inline(__always)
    static func dequantize<T: Real, I: FixedWidthInteger>(_ q: UnsafePointer<I>, count: Int, factor: Double, into out: UnsafeMutablePointer<T>) {
        for i in 0..<count { out[i] = T(double(Int64(truncatingIfNeeded: q[i])) * factor) }
    }
}

extension Communicator {
    /// Every rank's input statistics merged in rank order (collective; every rank gets the same bits).
    /// All ranks must pass statistics of the same number of features (a trainer's input size).
    public func merged(_ s: Engine.RangeStatistics) throws(InLoopError) -> Engine.RangeStatistics {
        let f = s.features
        let per = 1 + 4 * f
        guard size > 0, per <= Int(Int32.max) / size else {
            throw InLoopError(.unsupported, "merging input statistics of \(f) features over \(size) ranks exceeds MPI's counts")
        }
        var buffer = [Double](repeating: 0, count: per * size)
        let base = rank * per
        buffer[base] = Double(s.count)
        for j in 0..<f {
            buffer[base + 1 + j] = s.lo[j]; buffer[base + 1 + f + j] = s.hi[j]
            buffer[base + 1 + 2 * f + j] = s.mean[j]; buffer[base + 1 + 3 * f + j] = s.m2[j]
        }
        let counts = [Int32](repeating: Int32(per), count: size)
        let displacements = (0..<size).map { Int32($0 * per) }
        try buffer.withUnsafeMutableBufferPointer { (b) throws(InLoopError) in
            try counts.withUnsafeBufferPointer { (c) throws(InLoopError) in
                try displacements.withUnsafeBufferPointer { (d) throws(InLoopError) in
                    try allgather(b.baseAddress!, counts: c.baseAddress!, displacements: d.baseAddress!)
                }
            }
        }
        var total = Engine.RangeStatistics(features: f)
        for r in 0..<size {
            let o = r * per
            let part = try Engine.RangeStatistics(count: Int(buffer[o]), lo: Array(buffer[(o + 1)..<(o + 1 + f)]),
                                                  hi: Array(buffer[(o + 1 + f)..<(o + 1 + 2 * f)]),
                                                  mean: Array(buffer[(o + 1 + 2 * f)..<(o + 1 + 3 * f)]),
                                                  m2: Array(buffer[(o + 1 + 3 * f)..<(o + 1 + 4 * f)]))
            try total.merge(part)
        }
        return total
    }
}
