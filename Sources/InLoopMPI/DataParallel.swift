import InLoopCore
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel training over a communicator: every rank trains on its own batch; gradients are
/// averaged across ranks, weighted by the local batch sizes (which may differ, or be 0). Each rank
/// receives the global gradient for its shard of the parameters only (a reduce-scatter), updates
/// that shard, and the shards are then gathered by every rank (an all-gather): the optimizer's work
/// is divided among the ranks and all ranks keep bitwise identical weights (see `DistributedStep`).
///
/// The sum is computed in 64-bit fixed point: a MAX all-reduce agrees on a scale from the largest
/// magnitude, each rank rounds its values to integers at that scale, and an integer SUM adds them.
/// Integer addition is associative, so the result is bitwise independent of the MPI reduction
/// algorithm and of the order ranks are combined in: the same run twice gives the same weights.
/// The rounding error is below |largest value| × ranks × 2⁻⁵⁰, like a float64 sum's.
public final class DataParallel<T: Real>: @unchecked Sendable {
    public let comm: Communicator
    /// Parameters of the model.
    public let parameterCount: Int
    /// Every rank's shard of the parameters.
    public let shards: [Range<Int>]
    private let ranks: Int
    // MPI counts and displacements (per rank): fixed-point segments (shard + loss + batch),
    // parameters, norm blocks.
    private let segmentCounts: UnsafeMutablePointer<Int32>
    private let shardCounts: UnsafeMutablePointer<Int32>
    private let shardOffsets: UnsafeMutablePointer<Int32>
    private let blockCounts: UnsafeMutablePointer<Int32>
    private let blockOffsets: UnsafeMutablePointer<Int32>
    /// Every rank's segment, back to back (parameterCount + 2·ranks integers).
    private let send: UnsafeMutablePointer<Int64>
    /// This rank's segment of the sum.
    private let received: UnsafeMutablePointer<Int64>
    private weak var trainer: Trainer<T>? = nil

    public init(comm: Communicator, parameterCount n: Int) throws(InLoopError) {
        guard n + 2 * comm.size < Int(Int32.max) else {
            throw InLoopError(.unsupported, "data-parallel training supports up to 2^31 parameters; the model has \(n)")
        }
        self.comm = comm
        parameterCount = n
        ranks = comm.size
        shards = DistributedStep<T>.shards(parameterCount: n, processes: comm.size)
        segmentCounts = .allocate(capacity: ranks)
        shardCounts = .allocate(capacity: ranks)
        shardOffsets = .allocate(capacity: ranks)
        blockCounts = .allocate(capacity: ranks)
        blockOffsets = .allocate(capacity: ranks)
        let b = DistributedStep<T>.block
        for (r, s) in shards.enumerated() {
            segmentCounts[r] = Int32(s.count + 2)
            shardCounts[r] = Int32(s.count)
            shardOffsets[r] = Int32(s.lowerBound)
            let firstBlock = s.lowerBound / b, endBlock = (s.upperBound + b - 1) / b
            blockCounts[r] = Int32(s.isEmpty ? 0 : endBlock - firstBlock)
            blockOffsets[r] = Int32(firstBlock)
        }
        send = .allocate(capacity: n + 2 * ranks)
        send.initialize(repeating: 0, count: n + 2 * ranks)
        let mine = shards[comm.rank].count + 2
        received = .allocate(capacity: mine)
        received.initialize(repeating: 0, count: mine)
    }

    deinit {
        for p in [segmentCounts, shardCounts, shardOffsets, blockCounts, blockOffsets] { p.deallocate() }
        send.deallocate()
        received.deallocate()
    }

    /// Makes every rank start from rank 0's parameters (and optimizer state), after checking that all
    /// ranks hold the same architecture (collective).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func synchronize(_ trainer: Trainer<T>) throws(InLoopError) {
        var sizes: (Double, Double) = (Double(trainer.network.parameterCount), -Double(trainer.network.parameterCount))
        try withUnsafeMutablePointer(to: &sizes) { (p) throws(InLoopError) in
            try p.withMemoryRebound(to: Double.self, capacity: 2) { (d) throws(InLoopError) in try comm.allreduceMax(d, count: 2) }
        }
        guard sizes.0 == -sizes.1, Int(sizes.0) == trainer.network.parameterCount, parameterCount == trainer.network.parameterCount else {
            throw InLoopError(.sizeMismatch, "ranks hold models of different sizes (\(Int(-sizes.1))…\(Int(sizes.0)) parameters); every rank must create the trainer from the same configuration")
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
        let single = ranks == 1
        trainer.distributed = DistributedStep<T>(
            shard: shards[comm.rank],
            reduce: { [unowned self] (g, n, batch, loss, localError) throws(InLoopError) -> Double in
                try self.reduce(g, n, batch, loss, localError)
            },
            shareBlockSums: { [unowned self] (sums) throws(InLoopError) in
                if !single { try self.comm.allgather(sums, counts: self.blockCounts, displacements: self.blockOffsets) }
            },
            shareParameters: { [unowned self] (p) throws(InLoopError) in
                if !single { try self.comm.allgather(p, counts: self.shardCounts, displacements: self.shardOffsets) }
            })
    }

    /// Completes the optimizer state on every rank from every rank's shard (collective): needed
    /// before the state is read whole, as for a checkpoint, since each rank updates only its shard.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func gatherState() throws(InLoopError) {
        guard ranks > 1, let trainer else { return }
        for s in trainer.state { try comm.allgather(s.base, counts: shardCounts, displacements: shardOffsets) }
    }

    func reduce(_ g: UnsafeMutablePointer<T>, _ n: Int, _ batch: Int, _ loss: Double, _ localError: InLoopError?) throws(InLoopError) -> Double {
        guard n == parameterCount else { throw InLoopError(.internal, "data-parallel buffer does not match the model") }
        if ranks == 1 {  // nothing to combine: the local gradient is the global one
            if let localError { throw localError }
            guard batch > 0 else { throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)") }
            return loss
        }
        // Each rank contributes batch × its mean gradient (and loss): the weighted average's numerator.
        let w = Double(batch)
        let gradientPeak = w * Double(T.largestMagnitude(g, count: n))
        let lossPeak = abs(w * loss)
        let peak = gradientPeak.isFinite && lossPeak.isFinite ? Swift.max(gradientPeak, lossPeak) : .infinity
        var head: (Double, Double) = (peak, localError == nil ? 0 : 1)
        try withUnsafeMutablePointer(to: &head) { (p) throws(InLoopError) in
            try p.withMemoryRebound(to: Double.self, capacity: 2) { (d) throws(InLoopError) in try comm.allreduceMax(d, count: 2) }
        }
        if head.1 > 0 {
            if let localError { throw localError }
            throw InLoopError(.nonFinite, "the step was refused on every rank because another rank reported bad data (NaN/Inf or a failed computation); the weights are unchanged")
        }
        guard head.0.isFinite else { throw InLoopError(.nonFinite, "gradients are not finite; the step was not applied") }
        // A power-of-two scale (exact) that keeps the sum of all ranks' values within 2^50.
        var scale = 1.0
        if head.0 > 0 { scale = Double(sign: .plus, exponent: (0x1p50 / (head.0 * Double(ranks))).exponent, significand: 1) }
        let ws = w * scale
        let lossValue = FixedPoint.round(ws * loss)
        for (r, s) in shards.enumerated() {
            let segment = send + s.lowerBound + 2 * r
            FixedPoint.quantize(UnsafePointer(g + s.lowerBound), count: s.count, scale: ws, into: segment)
            segment[s.count] = lossValue
            segment[s.count + 1] = Int64(batch)
        }
        try comm.reduceScatterSum(send, received, counts: segmentCounts)
        let mine = shards[comm.rank]
        let total = received[mine.count + 1]
        guard total > 0 else {
            throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)")
        }
        let inv = 1 / (scale * Double(total))
        FixedPoint.dequantize(UnsafePointer(received), count: mine.count, factor: inv, into: g + mine.lowerBound)
        return FixedPoint.double(received[mine.count]) * inv
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
    static func quantize<T: Real>(_ x: UnsafePointer<T>, count: Int, scale: Double, into out: UnsafeMutablePointer<Int64>) {
        for i in 0..<count { out[i] = round(scale * Double(x[i])) }
    }

    @inline(__always)
    static func dequantize<T: Real>(_ q: UnsafePointer<Int64>, count: Int, factor: Double, into out: UnsafeMutablePointer<T>) {
        for i in 0..<count { out[i] = T(double(q[i]) * factor) }
    }
}
