/// Step geometry of the element-wise family in `Plan.ints`: written when a node is lowered, read by
/// the executor at each run for the batch size at hand (no allocation: fixed-size, on the stack).
extension Engine {
    /// A broadcast after merging (`BroadcastGeometry`), as extents in the batch:
    /// `[rank, (dim.perBatch, dim.fixed, aVaries, bVaries) × rank]`, outer axis first, rank ≤ 8.
    enum BroadcastLayout {
        /// The merged layout of y = op(a, b) (types from `inferTypes`). Every operand dimension is
        /// either the output's (the same symbolic form) or a known 1; a symbolic dimension stretched
        /// to a known size (`[N, 3] + [4, 3]`) depends on the batch's value and throws `notLinear`
        /// (the plan is then specialised on it).
        static func encode(_ a: Shape, _ b: Shape, _ y: Shape, batch: Symbol?) throws(InLoopError) -> [Int] {
            let r = y.count
            guard r <= maxRank, a.count <= r, b.count <= r else {
                throw InLoopError(.unsupported, "broadcast of rank \(r); InLoop takes ranks up to \(maxRank)")
            }
            // per axis (outer to inner): dimension and whether a / b vary along it
            var axes: [(dim: SymInt, a: Bool, b: Bool)] = []
            for i in 0..<r {
                let yd = y[i]
                if yd.known == 1 { continue }
                func varies(_ s: Shape) throws(InLoopError) -> Bool {
                    let j = i - (r - s.count)
                    let d: SymInt = j >= 0 ? s[j] : 1
                    if d.known == 1 { return false }
                    guard d == yd else { throw notLinear("broadcast of \(a.formatted) and \(b.formatted)") }
                    return true
                }
                let va = try varies(a), vb = try varies(b)
                if let last = axes.last, last.a == va, last.b == vb {
                    axes[axes.count - 1].dim = try linear(last.dim * yd, "broadcast of \(a.formatted) and \(b.formatted)")
                } else {
                    axes.append((yd, va, vb))
                }
            }
            var out = [axes.count]
            for ax in axes {
                guard let e = Extent(ax.dim, batch: batch) else { throw notLinear("broadcast to \(y.formatted)") }
                out += [e.perBatch, e.fixed, ax.a ? 1 : 0, ax.b ? 1 : 0]
            }
            return out
        }

        @inline(__always)
        static func decode(_ ints: UnsafeBufferPointer<Int>, _ at: Int32, _ n: Int) -> BroadcastGeometry {
            let base = Int(at)
            let r = ints[base]
            var dims = Fixed8<Int>(repeating: 1), av = Fixed8<Int>(repeating: 0), bv = Fixed8<Int>(repeating: 0)
            for j in 0..<r {
                let o = base + 1 + 4 * j
                dims[j] = ints[o] &* n &+ ints[o + 1]
                av[j] = ints[o + 2]
                bv[j] = ints[o + 3]
            }
            return BroadcastGeometry(rank: r, dims: dims, aVaries: av, bVaries: bv)
        }
    }

    /// Softmax geometry: `[outer, length, inner]` as three extents (perBatch, fixed).
    enum SoftmaxLayout {
        @inline(__always)
        static func decode(_ ints: UnsafeBufferPointer<Int>, _ at: Int32, _ n: Int) -> (outer: Int, length: Int, inner: Int) {
            let b = Int(at)
            return (ints[b] &* n &+ ints[b + 1], ints[b + 2] &* n &+ ints[b + 3], ints[b + 4] &* n &+ ints[b + 5])
        }
    }
}
