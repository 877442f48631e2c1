// Nearest-neighbour resizing as a gather through per-axis index maps (ONNX Resize mode=nearest,
// Upsample): generic over Float and Double, with its adjoint (a scatter-add).
//
// Geometry (a flat Int list, built once when a plan is compiled): [r, inShape[r], outShape[r], then
// for each axis d the outShape[d] input indices it reads]. x is `outer` blocks of Π inShape values,
// y `outer` blocks of Π outShape values, row-major. 1 ≤ r ≤ 8 (caller-validated). No allocation.

public enum NearestResize {
    /// y[b, o...] = x[b, map_0[o_0], ..., map_{r-1}[o_{r-1}]].
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, outer: Int, geometry p: UnsafePointer<Int>, y: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { src, dst, map, count in
            for o in 0..<count { y[dst + o] = x[src + map[o]] }
        }
    }

    /// The adjoint: gx[b, map...] += gy[b, o...] (output positions in order).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(gy: UnsafePointer<T>, outer: Int, geometry p: UnsafePointer<Int>, gx: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { src, dst, map, count in
            for o in 0..<count { gx[src + map[o]] += gy[dst + o] }
        }
    }

    /// Calls `row(src, dst, lastMap, count)` for every output row (last axis): the input offset of the
    /// row's first element before the last axis's map, the output offset, the last axis's map.
    @inlinable @inline(__always)
    static func visit(outer: Int, geometry p: UnsafePointer<Int>,
                      _ row: (Int, Int, UnsafePointer<Int>, Int) -> Void) {
        let r = p[0]
        guard r >= 1, r <= 8 else { return }
        let inS = p + 1, outS = p + 1 + r
        var step = SIMD8<Int>(repeating: 0), mapAt = SIMD8<Int>(repeating: 0)
        var acc = 1, m = 1 + 2 * r, inCount = 1, outCount = 1
        for d in 0..<r { mapAt[d] = m; m += outS[d]; inCount *= inS[d]; outCount *= outS[d] }
        var e = r - 1
        while e >= 0 { step[e] = acc; acc *= inS[e]; e -= 1 }
        let last = outS[r - 1], lastMap = p + mapAt[r - 1]
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
                    if idx[d] < outS[d] { break }
                    idx[d] = 0
                    d -= 1
                }
                if d < 0 { break }
            }
        }
    }
}
