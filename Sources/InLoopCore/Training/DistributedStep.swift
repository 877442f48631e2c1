/// How a `Trainer` takes part in data-parallel training; InLoopMPI provides it over a communicator.
///
/// Every process computes the gradient of its own batch; `reduce` turns it into the global mean
/// gradient, but only within this process's `shard` of the parameters. Each process then clips and
/// updates just its shard, and `shareParameters` gives every process every shard. The optimizer's
/// work is thus divided among the processes (as in ZeRO stage 1) while all keep bitwise identical
/// weights, and every parameter is updated by the same arithmetic as when training alone.
///
/// The optimizer state is then current only within each process's shard; the owner of the hooks
/// must complete it (a collective) before anyone reads it whole, as for a checkpoint.
public struct DistributedStep<T: Real> {
    /// Parameters per block of the gradient norm; shards are made of whole blocks.
    public static var block: Int { 1024 }

    /// Number of norm blocks for `parameterCount` parameters.
    public static func blocks(_ parameterCount: Int) -> Int { (parameterCount + block - 1) / block }

    /// The parameters this process updates: whole blocks, except that the last may end at the end.
    public let shard: Range<Int>
    /// (gradients, count, local batch, local loss, local error) → global mean loss. Afterwards the
    /// gradients hold the global mean gradient within `shard` (the rest is undefined). Throws on
    /// every process alike when any process failed; a process whose data was bad or empty passes
    /// batch 0 and zero gradients, so that it still takes part.
    public let reduce: (UnsafeMutablePointer<T>, Int, Int, Double, InLoopError?) throws(InLoopError) -> Double
    /// Given this process's entries of the per-block sums of squares, fills in everyone else's.
    public let shareBlockSums: (UnsafeMutablePointer<Double>) throws(InLoopError) -> Void
    /// Given this process's shard of the updated parameters, fills in everyone else's.
    public let shareParameters: (UnsafeMutablePointer<T>) throws(InLoopError) -> Void

    public init(shard: Range<Int>,
                reduce: @escaping (UnsafeMutablePointer<T>, Int, Int, Double, InLoopError?) throws(InLoopError) -> Double,
                shareBlockSums: @escaping (UnsafeMutablePointer<Double>) throws(InLoopError) -> Void,
                shareParameters: @escaping (UnsafeMutablePointer<T>) throws(InLoopError) -> Void) {
        self.shard = shard
        self.reduce = reduce
        self.shareBlockSums = shareBlockSums
        self.shareParameters = shareParameters
    }

    /// The shards of `parameterCount` parameters among `processes`: contiguous runs of whole
    /// blocks in process order, as even as blocks allow (some may be empty).
    public static func shards(parameterCount n: Int, processes: Int) -> [Range<Int>] {
        let nb = blocks(n), p = max(1, processes)
        return (0..<p).map { r in
            let lo = min(n, (r * nb / p) * block), hi = min(n, ((r + 1) * nb / p) * block)
            return lo..<hi
        }
    }
}
