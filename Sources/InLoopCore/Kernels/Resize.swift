// Nearest-neighbour resizing as a gather through per-axis index maps (ONNX Resize mode=nearest,
// Upsample): generic over Float and Double, with its adjoint (a scatter-add).
//
// Geometry (a flat Int list, built once when a plan is compiled): [r, inShape[r], outShape[r], then
// for each axis d the outShape[d] input indices it reads]. x is `outer` blocks of Π inShape values,
// y `outer` blocks of Π outShape values, row-major. 1 ≤ r ≤ 8 (caller-validated). No allocation.
// `geometry` is the plan's integer table from the list's start on.

public enum NearestResize {
    /// y[b, o...] = x[b, map_0[o_0], ..., map_{r-1}[o_{r-1}]].
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, outer: Int, geometry p: UnsafeBufferPointer<Int>, y: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { src, dst, map, count in
            for o in 0..<count { y[dst + o] = x[src + p[map + o]] }
        }
    }

    /// The adjoint: gx[b, map...] += gy[b, o...] (output positions in order).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(gy: UnsafePointer<T>, outer: Int, geometry p: UnsafeBufferPointer<Int>, gx: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { src, dst, map, count in
            for o in 0..<count { gx[src + p[map + o]] += gy[dst + o] }
        }
    }

    /// Calls `row(src, dst, lastMap, count)` for every output row (last axis): the input offset of the
    /// row's first element before the last axis's map, the output offset, where the last axis's map
    /// starts in `p`.
    @inlinable @inline(__always)
    static func visit(outer: Int, geometry p: UnsafeBufferPointer<Int>, _ row: (Int, Int, Int, Int) -> Void) {
        let r = p[0]
        guard r >= 1, r <= 8 else { return }
        @inline(__always) func inS(_ d: Int) -> Int { p[1 + d] }
        @inline(__always) func outS(_ d: Int) -> Int { p[1 + r + d] }
        var step = SIMD8<Int>(repeating: 0), mapAt = SIMD8<Int>(repeating: 0)
        var acc = 1, m = 1 + 2 * r, inCount = 1, outCount = 1
        for d in 0..<r { mapAt[d] = m; m += outS(d); inCount *= inS(d); outCount *= outS(d) }
        var e = r - 1
        while e >= 0 { step[e] = acc; acc *= inS(e); e -= 1 }
        let last = outS(r - 1), lastMap = mapAt[r - 1]
        if outCount == 0 { return }
        var idx = SIMD8<Int>(repeating: 0)
        var dst = 0
        for b in 0..<outer {
            let base = b * inCount
            idx = SIMD8<Int>(repeating: 0)
            while true {
                var src = base
                for d in 0..<(r - 1) { src += p[mapAt[d] + idx[d]] * step[d] }
                row(src, dst, lastMap, last)
                dst += last
                var d = r - 2
                while d >= 0 {
                    idx[d] += 1
                    if idx[d] < outS(d) { break }
                    idx[d] = 0
                    d -= 1
                }
                if d < 0 { break }
            }
        }
    }
}

// MARK: family nd (linear and cubic resizing)

/// Linear and cubic resizing (ONNX Resize mode=linear/cubic, Upsample mode=linear) as weighted sums
/// over a window of taps per axis (the tensor product of per-axis weights), generic over Float and
/// Double, with its adjoint (a scatter-add with the same weights); the tangent is `forward` itself.
///
/// Geometry (built once when a plan is compiled, `Ops/NdOps.swift`): [r, inShape[r], outShape[r],
/// taps[r], then for each axis d outShape[d]·taps[d] input indices (in 0..<inShape[d]), then for each
/// axis d as many weights, as the bit patterns of Doubles]. 1 ≤ r ≤ 8 (caller-validated). No
/// allocation. Both directions accumulate: the caller zeroes the output first.
public enum TapResize {
    /// y[b, o...] += Σ_k Π_d w_d[o_d, k_d] · x[b, idx_0[o_0, k_0], ...].
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, outer: Int, geometry p: UnsafeBufferPointer<Int>, y: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { dst, src, w in y[dst] += T(w) * x[src] }
    }

    /// The adjoint: gx[b, idx...] += w · gy[b, o...].
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(gy: UnsafePointer<T>, outer: Int, geometry p: UnsafeBufferPointer<Int>, gx: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { dst, src, w in gx[src] += T(w) * gy[dst] }
    }

    /// Elements of one outer block of the input (`input` true) or the output.
    @inlinable
    public static func blockCount(geometry p: UnsafeBufferPointer<Int>, input: Bool) -> Int {
        let r = p[0]
        guard r >= 1, r <= 8 else { return 0 }
        var c = 1
        for d in 0..<r { c &*= p[(input ? 1 : 1 + r) + d] }
        return c
    }

    /// Calls `tap(dst, src, w)` for every output element and every tap of nonzero weight.
    @inlinable @inline(__always)
    static func visit(outer: Int, geometry p: UnsafeBufferPointer<Int>, _ tap: (Int, Int, Double) -> Void) {
        let r = p[0]
        guard r >= 1, r <= 8 else { return }
        @inline(__always) func inS(_ d: Int) -> Int { p[1 + d] }
        @inline(__always) func outS(_ d: Int) -> Int { p[1 + r + d] }
        @inline(__always) func taps(_ d: Int) -> Int { p[1 + 2 * r + d] }
        var step = SIMD8<Int>(repeating: 0), idxAt = SIMD8<Int>(repeating: 0), wAt = SIMD8<Int>(repeating: 0)
        var m = 1 + 3 * r, inCount = 1, outCount = 1
        for d in 0..<r { idxAt[d] = m; m += outS(d) * taps(d); inCount *= inS(d); outCount *= outS(d) }
        for d in 0..<r { wAt[d] = m; m += outS(d) * taps(d) }
        var acc = 1, e = r - 1
        while e >= 0 { step[e] = acc; acc *= inS(e); e -= 1 }
        if outCount == 0 { return }
        var dst = 0
        for b in 0..<outer {
            let base = b * inCount
            var o = SIMD8<Int>(repeating: 0)
            while true {
                var k = SIMD8<Int>(repeating: 0)
                while true {
                    var w = 1.0, src = base
                    for d in 0..<r {
                        let j = o[d] * taps(d) + k[d]
                        src += p[idxAt[d] + j] * step[d]
                        w *= Double(bitPattern: UInt64(bitPattern: Int64(p[wAt[d] + j])))
                    }
                    if w != 0 { tap(dst, src, w) }
                    var d = r - 1
                    while d >= 0 {
                        k[d] += 1
                        if k[d] < taps(d) { break }
                        k[d] = 0
                        d -= 1
                    }
                    if d < 0 { break }
                }
                dst += 1
                var d = r - 1
                while d >= 0 {
                    o[d] += 1
                    if o[d] < outS(d) { break }
                    o[d] = 0
                    d -= 1
                }
                if d < 0 { break }
            }
        }
    }
}
