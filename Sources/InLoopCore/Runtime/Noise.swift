// Noise inputs of stochastic parameterizations: numbers from a counter-based generator keyed by
// (seed, step, global column index, feature), so a stochastic run draws the same numbers on any
// number of ranks, with any batch split or thread count, and after a restart that passes the step.
//
// Public API:
//   Philox.block(counter:key:)   Philox4x32-10 (Salmon et al. 2011, Random123): one 128-bit block
//   Engine.Noise                 the standard normal of (seed, step, column, feature), and the column
//                                numbering of a call's batch (first column, blocks, stride)
//   Model.setNoise / noiseInput / setNoiseStep   a model input's features filled with it on each call
//
// The normal of (seed, step, column c, feature i) (i counts from the first noise feature): block
// p = i / 2 of Philox4x32-10 with counter (p, c, step low 32 bits, step high 32 bits) and key (seed
// low, seed high) gives two 64-bit words a = w0 + 2³² w1, b = w2 + 2³² w3; u1 = ((a >> 11) + 1)·2⁻⁵³
// in (0, 1], u2 = (b >> 11)·2⁻⁵³ in [0, 1); r = √(−2 ln u1); feature 2p gets r cos 2πu2, 2p + 1 gets
// r sin 2πu2 (Box–Muller, in float64, then rounded to the array's type). Columns and feature pairs
// are below 2³², steps below 2⁶³.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC11).
public enum Philox {
    /// The 10-round block of `counter` under `key`.
    @inlinable
    public static func block(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for r in 0..<10 {
            if r > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0), p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return (c0, c1, c2, c3)
    }
}

extension Engine {
    /// The standard normals of noise inputs (see the file's notes for the exact recipe).
    public enum Noise {
        /// Columns must be below this (the counter word holding them is 32 bits).
        public static let columnLimit = 1 << 32

        /// The two normals of feature pair `pair` (features 2·pair and 2·pair + 1).
        @inlinable
        public static func normalPair(seed: UInt64, step: Int, column: Int, pair: Int) -> (Double, Double) {
            let s = UInt64(truncatingIfNeeded: step)
            let w = Philox.block(counter: (UInt32(truncatingIfNeeded: pair), UInt32(truncatingIfNeeded: column),
                                           UInt32(truncatingIfNeeded: s), UInt32(truncatingIfNeeded: s >> 32)),
                                 key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
            let a = UInt64(w.0) | UInt64(w.1) << 32, b = UInt64(w.2) | UInt64(w.3) << 32
            let u1 = Double((a >> 11) + 1) * 0x1.0p-53, u2 = Double(b >> 11) * 0x1.0p-53
            let r = (-2 * log(u1)).squareRoot(), t = 2 * Double.pi * u2
            return (r * cos(t), r * sin(t))
        }

        /// The normal of (seed, step, column, feature).
        @inlinable
        public static func normal(seed: UInt64, step: Int, column: Int, feature: Int) -> Double {
            let z = normalPair(seed: seed, step: step, column: column, pair: feature / 2)
            return feature % 2 == 0 ? z.0 : z.1
        }

        /// The global column of local column j: `first + j` (block 0), or, for a batch made of blocks
        /// of `block` consecutive columns whose global indices are `stride` apart (members × local
        /// columns, or rows of a 2-D patch), `first + (j / block)·stride + j % block`.
        @inlinable
        public static func column(_ j: Int, first: Int, block: Int, stride: Int) -> Int {
            block == 0 ? first + j : first + (j / block) * stride + j % block
        }
    }

    /// A model input's noise features and the key of the next call.
    public struct NoiseInput: Equatable, Sendable {
        /// The input (index into the model's inputs), its first noise feature and their number.
        public var input: Int
        public var firstFeature: Int
        public var count: Int
        public var seed: UInt64
        /// The key of the next calls: the step, the global index of the batch's first column, and
        /// the block/stride numbering (block 0: consecutive columns).
        public var step = 0
        public var firstColumn = 0
        public var block = 0
        public var stride = 0

        public init(input: Int, firstFeature: Int, count: Int, seed: UInt64) {
            self.input = input; self.firstFeature = firstFeature; self.count = count; self.seed = seed
        }

        /// Checks that the columns of a batch of `batch` fit below `Noise.columnLimit`.
        func checkColumns(batch: Int) throws(InLoopError) {
            guard batch >= 1 else { return }
            let j = batch - 1
            var last = firstColumn
            if block == 0 {
                last = firstColumn.addingReportingOverflow(j).overflow ? Int.max : firstColumn + j
            } else {
                let (m, o1) = (j / block).multipliedReportingOverflow(by: stride)
                let (s, o2) = firstColumn.addingReportingOverflow(m)
                last = o1 || o2 ? Int.max : s + j % block
            }
            guard last < Noise.columnLimit else {
                throw InLoopError(.invalidArgument, "noise: the batch of \(batch) from column \(firstColumn) (block \(block), stride \(stride)) reaches column \(last == Int.max ? "beyond 2^63" : String(last)); columns must be below 2^32")
            }
        }

        /// Writes the noise of `batch` samples into `x` (sample s's values start at s·per), features
        /// firstFeature..<firstFeature + count.
        @inlinable
        public func fill<U: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<U>, batch: Int, per: Int) {
            for j in 0..<batch {
                let c = Noise.column(j, first: firstColumn, block: block, stride: stride)
                let row = x + j * per + firstFeature
                var i = 0
                while i < count {
                    let z = Noise.normalPair(seed: seed, step: step, column: c, pair: i / 2)
                    row[i] = U(z.0)
                    if i + 1 < count { row[i + 1] = U(z.1) }
                    i += 2
                }
            }
        }
    }

    /// The noise state of a model: the declaration and the scratch copy of the input (grown only).
    final class NoiseState {
        var spec: NoiseInput
        private var buffer: UnsafeMutableRawPointer? = nil
        private var bytes = 0

        init(_ spec: NoiseInput) { self.spec = spec }
        deinit { buffer?.deallocate() }

        /// The caller's input `x` (batch × per values of U) copied with the noise features filled.
        func filled<U: EngineScalar>(_ x: UnsafePointer<U>, batch: Int, per: Int) throws(InLoopError) -> UnsafePointer<U> {
            try spec.checkColumns(batch: batch)
            let n = try Limits.arrayCount(batch: batch, perSample: per)
            let (need, o) = n.multipliedReportingOverflow(by: MemoryLayout<U>.stride)
            guard !o else { throw InLoopError(.outOfMemory, "noise: the input copy's size overflows") }
            if need > bytes {
                try Limits.workspace(floats: need / 4 + 1, batch: 1)
                buffer?.deallocate()
                buffer = .allocate(byteCount: need, alignment: 64)
                bytes = need
            }
            let p = buffer!.bindMemory(to: U.self, capacity: n)
            p.update(from: x, count: n)
            spec.fill(p, batch: batch, per: per)
            return UnsafePointer(p)
        }
    }
}

extension Engine.Model {
    /// Declares features firstFeature..<firstFeature + count of input `input` noise: every later
    /// forward/run fills them (in a copy; the caller's array is not changed, and what it holds there
    /// is ignored) with standard normals of (seed, step, global column, feature) — the key set by
    /// `setNoiseStep`, step 0 and columns from 0 until then. count 0 removes the declaration.
    public func setNoise(input: Int, firstFeature: Int, count: Int, seed: UInt64) throws(InLoopError) {
        try acquire()
        defer { release() }
        if count == 0 { noiseState = nil; return }
        guard input >= 0, input < inputSpecs.count else {
            throw InLoopError(.invalidArgument, "noise input: model '\(name)' has \(inputSpecs.count) input\(inputSpecs.count == 1 ? "" : "s"); got index \(input)")
        }
        guard inputBatched[input], inputSpecs[input].count >= 1 else {
            throw InLoopError(.unsupported, "noise input: input \(input) ('\(inputSpecs[input].name)') does not lead with the batch")
        }
        let per = inputSpecs[input].count
        guard count > 0, firstFeature >= 0, firstFeature < per, count <= per - firstFeature else {
            throw InLoopError(.invalidArgument, "noise input: features \(firstFeature)..<\(firstFeature + count) of input \(input), which has \(per) per sample")
        }
        var spec = Engine.NoiseInput(input: input, firstFeature: firstFeature, count: count, seed: seed)
        if let old = noiseState?.spec { spec.step = old.step; spec.firstColumn = old.firstColumn; spec.block = old.block; spec.stride = old.stride }
        noiseState = Engine.NoiseState(spec)
    }

    /// The noise declaration and key (nil: no noise input).
    public var noiseInput: Engine.NoiseInput? { noiseState?.spec }

    /// The key of the next forward/run calls: the step (≥ 0) and the global index of the batch's first
    /// column (≥ 0); with block > 0, the batch is made of blocks of `block` columns whose global
    /// indices are `stride` (≥ block) apart (Engine.Noise.column).
    public func setNoiseStep(_ step: Int, firstColumn: Int, block: Int = 0, stride: Int = 0) throws(InLoopError) {
        try acquire()
        defer { release() }
        guard let s = noiseState else { throw InLoopError(.invalidArgument, "model '\(name)' has no noise input: declare one first") }
        guard step >= 0 else { throw InLoopError(.invalidArgument, "noise step must be >= 0, got \(step)") }
        guard firstColumn >= 0, firstColumn < Engine.Noise.columnLimit else {
            throw InLoopError(.invalidArgument, "noise: first column must be between 0 and 2^32 - 1, got \(firstColumn)")
        }
        guard block >= 0, block == 0 || stride >= block else {
            throw InLoopError(.invalidArgument, "noise: block must be >= 0 and stride >= block, got block \(block), stride \(stride)")
        }
        s.spec.step = step; s.spec.firstColumn = firstColumn; s.spec.block = block; s.spec.stride = block == 0 ? 0 : stride
    }
}
