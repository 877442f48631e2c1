import InLoopCore
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel training over a communicator: every rank trains on its own batch; gradients are
/// averaged across ranks, weighted by the local batch sizes (which may differ, or be 0), before the
/// same optimizer step on every rank, so all ranks keep identical weights.
///
/// The sum is computed in 64-bit fixed point: a MAX all-reduce agrees on a scale from the largest
/// magnitude, each rank rounds its values to integers at that scale, and an integer SUM all-reduce
/// adds them. Integer addition is associative, so the result is bitwise independent of the MPI
/// reduction algorithm and of the order ranks are combined in: the same run twice gives the same
/// weights. The rounding error is below |largest value| × ranks × 2⁻⁶¹.
public final class DataParallel<T: Real>: @unchecked Sendable {
    public let comm: Communicator
    private let ints: UnsafeMutablePointer<Int64>
    private let capacity: Int

    public init(comm: Communicator, parameterCount: Int) {
        self.comm = comm
        capacity = parameterCount + 2
        ints = .allocate(capacity: capacity)
        ints.initialize(repeating: 0, count: capacity)
    }

    deinit { ints.deallocate() }

    /// Makes every rank start from rank 0's parameters (and optimizer state), after checking that all
    /// ranks hold the same architecture (collective).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func synchronize(_ trainer: Trainer<T>) throws(InLoopError) {
        var sizes: (Double, Double) = (Double(trainer.network.parameterCount), -Double(trainer.network.parameterCount))
        try withUnsafeMutablePointer(to: &sizes) { (p) throws(InLoopError) in
            try p.withMemoryRebound(to: Double.self, capacity: 2) { (d) throws(InLoopError) in try comm.allreduceMax(d, count: 2) }
        }
        guard sizes.0 == -sizes.1, Int(sizes.0) == trainer.network.parameterCount else {
            throw InLoopError(.sizeMismatch, "ranks hold models of different sizes (\(Int(-sizes.1))…\(Int(sizes.0)) parameters); every rank must create the trainer from the same configuration")
        }
        let p = trainer.network.parameters
        try comm.broadcast(UnsafeMutableRawPointer(p.base), bytes: p.count * MemoryLayout<T>.stride)
        for s in trainer.state { try comm.broadcast(UnsafeMutableRawPointer(s.base), bytes: s.count * MemoryLayout<T>.stride) }
    }

    /// Installs the gradient reduction into `trainer` (see `Trainer.reduceGradients`).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func attach(to trainer: Trainer<T>) {
        trainer.reduceGradients = { [unowned self] (g, n, batch, loss, localError) throws(InLoopError) -> Double in
            try self.reduce(g, n, batch, loss, localError)
        }
    }

    func reduce(_ g: UnsafeMutablePointer<T>, _ n: Int, _ batch: Int, _ loss: Double, _ localError: InLoopError?) throws(InLoopError) -> Double {
        guard n + 2 <= capacity else { throw InLoopError(.internal, "data-parallel buffer too small") }
        if comm.size == 1 {  // nothing to combine: the local gradient is the global one
            if let localError { throw localError }
            guard batch > 0 else { throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)") }
            return loss
        }
        // Each rank contributes batch × its mean gradient (and loss): the weighted average's numerator.
        let w = Double(batch)
        var peak = abs(w * loss)
        for i in 0..<n { peak = max(peak, abs(w * Double(g[i]))) }
        var head: (Double, Double) = (peak.isFinite ? peak : .infinity, localError == nil ? 0 : 1)
        try withUnsafeMutablePointer(to: &head) { (p) throws(InLoopError) in
            try p.withMemoryRebound(to: Double.self, capacity: 2) { (d) throws(InLoopError) in try comm.allreduceMax(d, count: 2) }
        }
        if head.1 > 0 {
            if let localError { throw localError }
            throw InLoopError(.nonFinite, "the step was refused on every rank because another rank reported bad data (NaN/Inf or a failed computation); the weights are unchanged")
        }
        guard head.0.isFinite else { throw InLoopError(.nonFinite, "gradients are not finite; the step was not applied") }
        // scale: the sum of all ranks' rounded values stays below 2^61
        var scale = 1.0
        if head.0 > 0 {
            let bound = head.0 * Double(comm.size)
            scale = 0x1p61 / bound
            scale = Double(sign: .plus, exponent: scale.exponent, significand: 1)   // a power of two: exact scaling
        }
        // Truncation toward zero (one instruction; |error| < 1 unit = peak · ranks · 2⁻⁶¹), the same on
        // every rank, so the integer sum stays exact and order-independent.
        let ws = w * scale
        for i in 0..<n { ints[i] = Int64(ws * Double(g[i])) }
        ints[n] = Int64(ws * loss)
        ints[n + 1] = Int64(batch)
        try comm.allreduceSum(ints, count: n + 2)
        let total = ints[n + 1]
        guard total > 0 else {
            throw InLoopError(.invalidArgument, "no rank had training data in this step (every local batch was 0)")
        }
        let inv = 1 / (scale * Double(total))
        for i in 0..<n { g[i] = T(Double(ints[i]) * inv) }
        return Double(ints[n]) * inv
    }
}
