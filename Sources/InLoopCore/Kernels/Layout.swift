// Layout kernels, generic over T: Real (Float, Double): the one strided copy behind Transpose, Slice,
// Split and the adjoints of Concat/Slice/Split; Concat; Gather and its adjoint (scatter-add).
//
//   stridedCopy(x:xBase:xStrides:y:yBase:yStrides:dims:rank:accumulate:)
//       for every index i of `dims` (row-major, rank ≤ 8): y[yBase + Σ i_d·ys_d] = (or +=)
//       x[xBase + Σ i_d·xs_d]. Strides may be negative (reversed slices). Size-1 axes are dropped and
//       axes adjacent in both x and y merged; a contiguous innermost run is one block copy, a read
//       transposed against the write is tiled. The map must be injective on y.
//   gather(x:outer:axisLength:inner:indices:indexCount:y:)      ONNX Gather, indices in 0..<axisLength
//   gatherBackward(gradient:outer:axisLength:inner:indices:indexCount:into:accumulate:)
//       gx[o, idx[j], i] += gy[o, j, i] (gx zeroed first unless accumulating): repeated indices add up.
//
// Plan steps keep their geometry in `Plan.ints` as (perBatch, fixed) pairs, so that one plan serves
// every batch size; the `…Step` functions below decode it for batch n (no allocation).
//
// Preconditions (caller-validated, not checked): pointers hold the elements the geometry implies,
// indices are in range, outputs do not overlap inputs. No allocation, no traps.

extension TensorOps {
    /// How a copy step writes its output.
    public enum CopyMode: UInt8, Sendable {
        /// y = x over the geometry (which covers all of y).
        case write
        /// y += x.
        case accumulate
        /// y = 0 over the geometry's zero count, then y += x (an adjoint that reaches part of y).
        case zeroThenAccumulate
    }

    /// See the file header.
    @inlinable
    static func stridedCopy<T: Real>(x: UnsafePointer<T>, xBase: Int, xStrides: Dims, y: UnsafeMutablePointer<T>, yBase: Int,
                                     yStrides: Dims, dims: Dims, rank r: Int, accumulate: Bool) {
        guard r <= maxRank else { return }
        var d = Dims(repeating: 1), xs = Dims(repeating: 0), ys = Dims(repeating: 0)
        var k = 0
        for a in 0..<r {
            let n = dims[a]
            if n <= 0 { return }
            if n == 1 { continue }
            if k > 0 && xs[k - 1] == xStrides[a] &* n && ys[k - 1] == yStrides[a] &* n {
                d[k - 1] = d[k - 1] &* n; xs[k - 1] = xStrides[a]; ys[k - 1] = yStrides[a]
            } else {
                d[k] = n; xs[k] = xStrides[a]; ys[k] = yStrides[a]; k += 1
            }
        }
        let xb = x + xBase, yb = y + yBase
        if k == 0 {
            if accumulate { yb[0] += xb[0] } else { yb[0] = xb[0] }
            return
        }
        let run = d[k - 1], sx = xs[k - 1], sy = ys[k - 1]
        if sx == 1 && sy == 1 {
            forEachOffsetPair(dims: d, a: xs, b: ys, rank: k - 1) { xo, yo in
                let xr = xb + xo, yr = yb + yo
                if accumulate { for j in 0..<run { yr[j] += xr[j] } } else { yr.update(from: xr, count: run) }
            }
        } else if k >= 2 && xs[k - 2] == 1 && sy == 1 {
            // y[.., r, c] = x[.. + r + c·sx]: tiled, so that both sides stay in cache.
            let rows = d[k - 2], xr2 = xs[k - 2], yr2 = ys[k - 2]
            let tile = 32
            forEachOffsetPair(dims: d, a: xs, b: ys, rank: k - 2) { xo, yo in
                var r0 = 0
                while r0 < rows {
                    let r1 = Swift.min(rows, r0 + tile)
                    var c0 = 0
                    while c0 < run {
                        let c1 = Swift.min(run, c0 + tile)
                        for rr in r0..<r1 {
                            let yr = yb + yo + rr * yr2, xr = xb + xo + rr * xr2
                            if accumulate { for cc in c0..<c1 { yr[cc] += xr[cc * sx] } } else { for cc in c0..<c1 { yr[cc] = xr[cc * sx] } }
                        }
                        c0 = c1
                    }
                    r0 = r1
                }
            }
        } else {
            forEachOffsetPair(dims: d, a: xs, b: ys, rank: k - 1) { xo, yo in
                let xr = xb + xo, yr = yb + yo
                if accumulate { for j in 0..<run { yr[j * sy] += xr[j * sx] } } else { for j in 0..<run { yr[j * sy] = xr[j * sx] } }
            }
        }
    }

    /// Calls body(Σ index[d]·a[d], Σ index[d]·b[d]) for every index of the first `rank` axes of `dims`.
    @inlinable @inline(__always)
    static func forEachOffsetPair(dims: Dims, a: Dims, b: Dims, rank: Int, _ body: (Int, Int) -> Void) {
        var count = 1
        for d in 0..<rank { count &*= dims[d] }
        var idx = Dims(repeating: 0)
        var oa = 0, ob = 0
        for _ in 0..<count {
            body(oa, ob)
            var d = rank - 1
            while d >= 0 {
                idx[d] += 1
                oa &+= a[d]; ob &+= b[d]
                if idx[d] < dims[d] { break }
                oa &-= a[d] &* dims[d]; ob &-= b[d] &* dims[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// ONNX Gather along the middle axis of x (outer × axisLength × inner) with normalised indices:
    /// y (outer × indexCount × inner).
    @inlinable
    public static func gather<T: Real>(x: UnsafePointer<T>, outer: Int, axisLength len: Int, inner: Int, indices: UnsafePointer<Int>,
                                       indexCount: Int, y: UnsafeMutablePointer<T>) {
        if inner == 0 { return }
        for o in 0..<outer {
            let xo = x + o * len * inner, yo = y + o * indexCount * inner
            if inner == 1 {
                for j in 0..<indexCount { yo[j] = xo[indices[j]] }
            } else {
                for j in 0..<indexCount { (yo + j * inner).update(from: xo + indices[j] * inner, count: inner) }
            }
        }
    }

    /// The adjoint of `gather`: gx[o, idx[j], i] += gy[o, j, i], in index order (repeated indices add
    /// up); gx is zeroed first unless `accumulate`.
    @inlinable
    public static func gatherBackward<T: Real>(gradient gy: UnsafePointer<T>, outer: Int, axisLength len: Int, inner: Int,
                                               indices: UnsafePointer<Int>, indexCount: Int, into gx: UnsafeMutablePointer<T>,
                                               accumulate: Bool) {
        if !accumulate { gx.update(repeating: 0, count: outer * len * inner) }
        for o in 0..<outer {
            let go = gx + o * len * inner, yo = gy + o * indexCount * inner
            for j in 0..<indexCount {
                let d = go + indices[j] * inner, s = yo + j * inner
                for i in 0..<inner { d[i] += s[i] }
            }
        }
    }

    // MARK: plan steps (geometry from Plan.ints at batch n)

    /// `perBatch · n + fixed` from a pair at g[k].
    @inlinable @inline(__always)
    static func linear(_ g: UnsafePointer<Int>, _ k: Int, _ n: Int) -> Int { g[k] &* n &+ g[k + 1] }

    /// A strided-copy step. Geometry: [rank, coversSource, xBase(2), yBase(2), zeroCount(2), then per
    /// axis dim(2), xStride(2), yStride(2)] (pairs are perBatch, fixed).
    @inlinable
    static func layoutCopyStep<T: Real>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, geometry g: UnsafePointer<Int>, n: Int,
                                        mode: CopyMode) {
        let r = g[0]
        guard r >= 0, r <= maxRank else { return }
        var dims = Dims(repeating: 1), xs = Dims(repeating: 0), ys = Dims(repeating: 0)
        for a in 0..<r {
            let k = 8 + 6 * a
            dims[a] = linear(g, k, n); xs[a] = linear(g, k + 2, n); ys[a] = linear(g, k + 4, n)
        }
        if mode == .zeroThenAccumulate { y.update(repeating: 0, count: linear(g, 6, n)) }
        stridedCopy(x: x, xBase: linear(g, 2, n), xStrides: xs, y: y, yBase: linear(g, 4, n), yStrides: ys, dims: dims, rank: r,
                    accumulate: mode != .write)
    }

    /// A concat step over `parts` inputs (their storages at ids[io ..< io + parts], the output after).
    /// Geometry: [outer(2), inner(2), total(2), then per part length(2), offset of its slice geometry].
    @inlinable
    static func concatStep<T: Real>(_ table: UnsafeMutablePointer<UnsafeMutablePointer<T>>, ids: UnsafePointer<Int32>, parts: Int,
                                    geometry g: UnsafePointer<Int>, n: Int) {
        let outer = linear(g, 0, n), inner = linear(g, 2, n), total = linear(g, 4, n)
        let y = table[Int(ids[parts])]
        var offset = 0
        for i in 0..<parts {
            let len = linear(g, 6 + 3 * i, n)
            concat(x: UnsafePointer(table[Int(ids[i])]), outer: outer, axisLength: len, inner: inner, y: y, yAxisLength: total,
                   axisOffset: offset)
            offset &+= len
        }
    }

    /// Geometry of gather steps: [outer(2), axisLength, inner(2), indexCount, indices...].
    @inlinable
    static func gatherStep<T: Real>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, geometry g: UnsafePointer<Int>, n: Int) {
        gather(x: x, outer: linear(g, 0, n), axisLength: g[2], inner: linear(g, 3, n), indices: g + 6, indexCount: g[5], y: y)
    }

    @inlinable
    static func gatherBackwardStep<T: Real>(_ gy: UnsafePointer<T>, _ gx: UnsafeMutablePointer<T>, geometry g: UnsafePointer<Int>,
                                            n: Int, accumulate: Bool) {
        gatherBackward(gradient: gy, outer: linear(g, 0, n), axisLength: g[2], inner: linear(g, 3, n), indices: g + 6,
                       indexCount: g[5], into: gx, accumulate: accumulate)
    }

    /// y[i] = the value of the i-th linear form at batch n: geometry [count, pairs...].
    @inlinable
    static func fillLinearStep<T: Real>(_ y: UnsafeMutablePointer<T>, geometry g: UnsafePointer<Int>, n: Int) {
        for i in 0..<g[0] { y[i] = T(linear(g, 1 + 2 * i, n)) }
    }

    /// y = x rounded to float32 (a Cast from float64 to float32).
    @inlinable
    static func roundToFloat32<T: Real>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, count: Int) {
        for i in 0..<count { y[i] = T(x[i].float) }
    }
}
