// Input-range guards (out-of-distribution flags): the per-feature range a model was trained on, and
// the check that tells the caller, per column, how many of a call's input features lie outside it.
//
// Public API:
//   Engine.InputRanges            per-feature lo, hi, mean, std of the model's first input, and the
//                                 number of samples they come from (validated on creation)
//   Engine.RangeStatistics        accumulates them over batches (exact min/max; mean and M2 by Chan's
//                                 pairwise update in Double), and merges accumulators in a fixed order
//   Engine.RangeMode              .off, .report, .clamp, .flagOnly (docs: Model.rangeMode)
//   Engine.RangeGuard             the check and the clamp over one call's first input
//
// A feature value v is outside when v < lo or v > hi (compared in Double) or v is NaN. The checks
// run on the batch-convenience calls (forward, run); the guard's buffers grow with the largest
// batch seen, so a call at a batch already seen allocates nothing.

extension Engine {
    /// What the range check does on each forward/run call (`Model.rangeMode`).
    public enum RangeMode: Int, Sendable, CaseIterable {
        /// No check (the default): no cost.
        case off = 0
        /// Counts, per column, the features outside the range, and per feature the columns where it is
        /// outside; the model sees the inputs as given.
        case report = 1
        /// As `.report` for the per-column counts, and the model sees each input clamped into [lo, hi]
        /// (a NaN stays NaN); the caller's array is not changed.
        case clamp = 2
        /// Per column 1 when any feature is outside the range, else 0 (the check stops at the first one);
        /// the model sees the inputs as given.
        case flagOnly = 3
    }

    /// The range of each feature (each value of one sample) of a model's first input.
    public struct InputRanges: Equatable, Sendable {
        public let lo: [Double]
        public let hi: [Double]
        public let mean: [Double]
        public let std: [Double]
        /// The number of samples the statistics come from (0 when the ranges were given, not measured).
        public let samples: Int

        public var count: Int { lo.count }

        /// Ranges with every array of one length ≥ 1, lo ≤ hi and both finite; mean and std finite,
        /// std ≥ 0 (given ranges may pass mean = (lo + hi)/2 and std = 0).
        public init(lo: [Double], hi: [Double], mean: [Double], std: [Double], samples: Int) throws(InLoopError) {
            guard !lo.isEmpty else { throw InLoopError(.invalidArgument, "input ranges need at least one feature") }
            guard hi.count == lo.count, mean.count == lo.count, std.count == lo.count else {
                throw InLoopError(.sizeMismatch, "input ranges: lo has \(lo.count) values, hi \(hi.count), mean \(mean.count), std \(std.count)")
            }
            guard samples >= 0 else { throw InLoopError(.invalidArgument, "input ranges: \(samples) samples") }
            for j in 0..<lo.count {
                guard lo[j].isFinite, hi[j].isFinite, lo[j] <= hi[j] else {
                    throw InLoopError(.invalidArgument, "input range of feature \(j): lo \(lo[j]), hi \(hi[j]); both must be finite with lo ≤ hi")
                }
                guard mean[j].isFinite, std[j].isFinite, std[j] >= 0 else {
                    throw InLoopError(.invalidArgument, "input statistics of feature \(j): mean \(mean[j]), std \(std[j]); both must be finite with std ≥ 0")
                }
            }
            self.lo = lo; self.hi = hi; self.mean = mean; self.std = std; self.samples = samples
        }

        /// Given ranges: mean (lo + hi)/2, std 0, samples 0.
        public init(lo: [Double], hi: [Double]) throws(InLoopError) {
            guard hi.count == lo.count else { throw InLoopError(.sizeMismatch, "input ranges: lo has \(lo.count) values, hi \(hi.count)") }
            try self.init(lo: lo, hi: hi, mean: zip(lo, hi).map { $0 / 2 + $1 / 2 }, std: Array(repeating: 0, count: lo.count), samples: 0)
        }
    }

    /// Per-feature minimum, maximum, mean and sum of squared deviations over the samples added.
    public struct RangeStatistics: Sendable {
        public private(set) var count = 0
        public private(set) var lo: [Double]
        public private(set) var hi: [Double]
        public private(set) var mean: [Double]
        public private(set) var m2: [Double]
        /// Per-batch scratch (sums and means of one batch), kept so that `add` allocates nothing.
        private var scratch: [Double]

        public var features: Int { lo.count }

        public init(features: Int) {
            lo = Array(repeating: .infinity, count: features)
            hi = Array(repeating: -.infinity, count: features)
            mean = Array(repeating: 0, count: features)
            m2 = Array(repeating: 0, count: features)
            scratch = Array(repeating: 0, count: features)
        }

        /// The state of another accumulator, e.g. one gathered from another rank (arrays of `features`
        /// values; count ≥ 0).
        public init(count: Int, lo: [Double], hi: [Double], mean: [Double], m2: [Double]) throws(InLoopError) {
            let f = lo.count
            guard count >= 0, count <= 1 << 53, hi.count == f, mean.count == f, m2.count == f else {
                throw InLoopError(.sizeMismatch, "range statistics: \(count) samples, \(f)/\(hi.count)/\(mean.count)/\(m2.count) values")
            }
            self.count = count; self.lo = lo; self.hi = hi; self.mean = mean; self.m2 = m2
            scratch = Array(repeating: 0, count: f)
        }

        /// Adds `batch` samples of `features` values each (sample-major). Non-finite values are
        /// skipped for the moments but a NaN-free ±Inf widens the range to infinity, which `ranges`
        /// then refuses; callers train on finite data.
        public mutating func add<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, batch: Int) {
            let f = features
            guard batch > 0, f > 0 else { return }
            // batch means, then the batch's M2 around them, then Chan's pairwise combination
            scratch.withUnsafeMutableBufferPointer { s in
                lo.withUnsafeMutableBufferPointer { lo in
                    hi.withUnsafeMutableBufferPointer { hi in
                        mean.withUnsafeMutableBufferPointer { mean in
                            m2.withUnsafeMutableBufferPointer { m2 in
                                for j in 0..<f { s[j] = 0 }
                                for b in 0..<batch {
                                    let row = x + b * f
                                    for j in 0..<f {
                                        let v = Double(row[j])
                                        s[j] += v
                                        if v < lo[j] { lo[j] = v }
                                        if v > hi[j] { hi[j] = v }
                                    }
                                }
                                let nb = Double(batch), na = Double(count), n = na + nb
                                for j in 0..<f { s[j] /= nb }
                                for j in 0..<f {
                                    var q = 0.0
                                    for b in 0..<batch { let d = Double(x[b * f + j]) - s[j]; q += d * d }
                                    let delta = s[j] - mean[j]
                                    mean[j] += delta * nb / n
                                    m2[j] += q + delta * delta * na * nb / n
                                }
                            }
                        }
                    }
                }
            }
            count = Model.saturatedSum(count, batch)   // (2^53 at most from files; saturates, never traps)
        }

        /// Combines another accumulator's samples into this one (Chan et al.); merging the same
        /// accumulators in the same order gives the same bits.
        public mutating func merge(_ o: RangeStatistics) throws(InLoopError) {
            guard o.features == features else { throw InLoopError(.sizeMismatch, "range statistics of \(o.features) and \(features) features") }
            guard o.count > 0 else { return }
            let na = Double(count), nb = Double(o.count), n = na + nb
            for j in 0..<features {
                lo[j] = Swift.min(lo[j], o.lo[j])
                hi[j] = Swift.max(hi[j], o.hi[j])
                let delta = o.mean[j] - mean[j]
                mean[j] += delta * nb / n
                m2[j] += o.m2[j] + delta * delta * na * nb / n
            }
            count = Model.saturatedSum(count, o.count)
        }

        /// The ranges of the samples added (none added: nil); std is the population standard deviation.
        public func ranges() throws(InLoopError) -> InputRanges? {
            guard count > 0 else { return nil }
            let n = Double(count)
            return try InputRanges(lo: lo, hi: hi, mean: mean, std: m2.map { ($0 / n).squareRoot() }, samples: count)
        }
    }

    /// The range check of one model: its ranges, its mode, and the results of the last call.
    final class RangeGuard {
        let ranges: InputRanges
        var mode: RangeMode = .off
        /// Per column of the last checked call: the number of features outside (1/0 in .flagOnly).
        private(set) var columnCounts: [Int32] = []
        /// Per feature, the number of columns of the last .report call where it was outside.
        private(set) var featureCounts: [Int64]
        /// The batch of the last checked call (0: none yet, or the mode was changed since).
        private(set) var lastBatch = 0
        /// The clamped copy of the last .clamp call's input (bytes), grown to the largest batch seen.
        private var clamped: UnsafeMutableRawPointer? = nil
        private var clampedBytes = 0

        init(_ ranges: InputRanges) {
            self.ranges = ranges
            featureCounts = Array(repeating: 0, count: ranges.count)
        }

        deinit { clamped?.deallocate() }

        func reset() { lastBatch = 0 }

        /// Checks `batch` samples at `x` (features values each). In .clamp mode returns a pointer to
        /// the clamped copy the model must see instead of x (valid until the next call).
        func check<U: EngineScalar>(_ x: UnsafePointer<U>, batch: Int) -> UnsafePointer<U>? {
            let f = ranges.count
            if columnCounts.count < batch { columnCounts = Array(repeating: 0, count: batch) }
            lastBatch = batch
            switch mode {
            case .off:
                return nil
            case .flagOnly:
                ranges.lo.withUnsafeBufferPointer { lo in
                    ranges.hi.withUnsafeBufferPointer { hi in
                        for b in 0..<batch {
                            let row = x + b * f
                            var flag: Int32 = 0
                            for j in 0..<f {
                                let v = Double(row[j])
                                if !(v >= lo[j] && v <= hi[j]) { flag = 1; break }
                            }
                            columnCounts[b] = flag
                        }
                    }
                }
                return nil
            case .report:
                ranges.lo.withUnsafeBufferPointer { lo in
                    ranges.hi.withUnsafeBufferPointer { hi in
                        featureCounts.withUnsafeMutableBufferPointer { fc in
                            for j in 0..<f { fc[j] = 0 }
                            for b in 0..<batch {
                                let row = x + b * f
                                var c: Int32 = 0
                                for j in 0..<f {
                                    let v = Double(row[j])
                                    if !(v >= lo[j] && v <= hi[j]) { c &+= 1; fc[j] &+= 1 }
                                }
                                columnCounts[b] = c
                            }
                        }
                    }
                }
                return nil
            case .clamp:
                // batch × features values were checked against the plan's input size before
                let bytes = batch * f * MemoryLayout<U>.stride
                if clampedBytes < bytes {
                    clamped?.deallocate()
                    clamped = .allocate(byteCount: bytes, alignment: 16)
                    clampedBytes = bytes
                }
                let y = clamped!.bindMemory(to: U.self, capacity: batch * f)
                clamp(x, batch, y)
                return UnsafePointer(y)
            }
        }

        /// y = x clamped into [lo, hi] per feature, counting per column the features moved or NaN.
        /// Bounds are rounded into the range in V (a float32 model never sees a value outside it).
        private func clamp<V: BinaryFloatingPoint>(_ x: UnsafePointer<V>, _ batch: Int, _ y: UnsafeMutablePointer<V>) {
            let f = ranges.count
            ranges.lo.withUnsafeBufferPointer { lo in
                ranges.hi.withUnsafeBufferPointer { hi in
                    for b in 0..<batch {
                        var c: Int32 = 0
                        for j in 0..<f {
                            let v = x[b * f + j], d = Double(v)
                            if d < lo[j] {
                                var l = V(lo[j]); if Double(l) < lo[j] { l = l.nextUp }
                                y[b * f + j] = l; c &+= 1
                            } else if d > hi[j] {
                                var h = V(hi[j]); if Double(h) > hi[j] { h = h.nextDown }
                                y[b * f + j] = h; c &+= 1
                            } else {
                                y[b * f + j] = v
                                if d.isNaN { c &+= 1 }
                            }
                        }
                        columnCounts[b] = c
                    }
                }
            }
        }
    }
}

extension Engine.Model {
    /// The ranges of the first input the range check uses (nil: none set).
    public var inputRanges: Engine.InputRanges? { rangeGuard?.ranges }

    /// Sets (or with nil removes) the ranges of the first input: one per value of one sample
    /// (`inputSize`); the model must take the batch convenience (its first input leads with the batch).
    /// The mode is kept when ranges are replaced, and set off when they are removed.
    public func setInputRanges(_ ranges: Engine.InputRanges?) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard let ranges else { rangeGuard = nil; return }
        if let convenienceError { throw convenienceError }
        guard !inputSpecs.isEmpty, inputBatched[0] else {
            throw InLoopError(.unsupported, "model '\(name)': input ranges are for a first input that leads with the batch")
        }
        guard ranges.count == inputSpecs[0].count else {
            throw InLoopError(.sizeMismatch, "model '\(name)': input '\(inputSpecs[0].name)' has \(inputSpecs[0].count) values per sample; the ranges have \(ranges.count)")
        }
        let mode = rangeGuard?.mode ?? .off
        let g = Engine.RangeGuard(ranges)
        g.mode = mode
        rangeGuard = g
    }

    /// The range check run on every forward/run call (`Engine.RangeMode`); anything but .off needs
    /// ranges (set by the trainer that saved the model, by `setInputRanges`, or from samples).
    public var rangeMode: Engine.RangeMode { rangeGuard?.mode ?? .off }

    public func setRangeMode(_ mode: Engine.RangeMode) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard let g = rangeGuard else {
            if mode == .off { return }
            throw InLoopError(.invalidArgument, "model '\(name)' has no input ranges: set them (from samples or lo/hi arrays) before the range check")
        }
        g.mode = mode
        g.reset()
    }

    /// Copies the per-column counts of the last checked call (features outside the range; 1/0 in
    /// .flagOnly) into `counts`, which must hold `batch` values, the batch of that call.
    public func rangeFlags(into counts: UnsafeMutableBufferPointer<Int32>, batch: Int) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard let g = rangeGuard, g.mode != .off else { throw InLoopError(.invalidArgument, "model '\(name)': the range check is off") }
        guard g.lastBatch > 0 else { throw InLoopError(.invalidArgument, "model '\(name)': no call has been checked since the range check was set") }
        guard batch == g.lastBatch else {
            throw InLoopError(.sizeMismatch, "model '\(name)': the last checked call had batch \(g.lastBatch), asked for \(batch) counts")
        }
        guard counts.count >= batch, let p = counts.baseAddress else { throw InLoopError(.sizeMismatch, "the counts array holds \(counts.count) values, the batch is \(batch)") }
        g.columnCounts.withUnsafeBufferPointer { c in for b in 0..<batch { p[b] = c[b] } }
    }

    /// Copies, per feature, the number of columns of the last .report call where it was outside.
    public func rangeFeatureCounts(into counts: UnsafeMutableBufferPointer<Int64>) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard let g = rangeGuard, g.mode == .report else { throw InLoopError(.invalidArgument, "model '\(name)': feature counts are kept in report mode only") }
        guard g.lastBatch > 0 else { throw InLoopError(.invalidArgument, "model '\(name)': no call has been checked since the range check was set") }
        guard counts.count >= g.ranges.count, let p = counts.baseAddress else {
            throw InLoopError(.sizeMismatch, "the counts array holds \(counts.count) values, the input has \(g.ranges.count) features")
        }
        g.featureCounts.withUnsafeBufferPointer { c in for j in 0..<c.count { p[j] = c[j] } }
    }
}
