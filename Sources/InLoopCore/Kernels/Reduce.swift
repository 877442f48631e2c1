// Reductions over the middle axis of an (outer × length × inner) view, and padding through per-axis
// index maps: generic over Float and Double, with their adjoints and tangents. No allocation.
//
// Public API:
//   ReduceFunction                                   what a reduction computes (ONNX Reduce*, ArgMax/ArgMin)
//   ReduceKernels.forward(_:x:y:outer:length:inner:)  y[o, i] = f(x[o, 0..<length, i])
//   ReduceKernels.derivative(_:x:y:g:out:...)        reverse: out[o, l, i] (+)= g[o, i]·∂y/∂x[o, l, i];
//                                                    tangent: out[o, i] = Σ_l ∂y/∂x[o, l, i]·g[o, l, i]
//   PadKernels.forward / backward                    ONNX Pad (constant, reflect, edge, wrap) and its adjoint
//
// Preconditions (validated when the plan is compiled): the extents describe the storages; outputs do
// not overlap inputs.

/// What a reduction step computes along its axis. `argMax`/`argMin` write the index as a value of T
/// (exact: float32 holds integers exactly up to 2^24, float64 up to 2^53; plans refuse longer axes).
public enum ReduceFunction: Equatable, Sendable, CustomStringConvertible {
    case sum, mean, max, min, prod
    /// Σ x².
    case sumSquare
    /// Σ |x|.
    case sumAbs
    /// log Σ exp(x), computed as m + log Σ exp(x − m) with m the maximum.
    case logSumExp
    /// The position of the first (or, `last`, the last) maximum / minimum.
    case argMax(last: Bool), argMin(last: Bool)

    public var description: String {
        switch self {
        case .sum: return "sum"
        case .mean: return "mean"
        case .max: return "max"
        case .min: return "min"
        case .prod: return "prod"
        case .sumSquare: return "sum of squares"
        case .sumAbs: return "sum of absolute values"
        case .logSumExp: return "log-sum-exp"
        case .argMax(let last): return last ? "last arg-max" : "arg-max"
        case .argMin(let last): return last ? "last arg-min" : "arg-min"
        }
    }

    /// Whether the result is an index (no derivative).
    public var isIndex: Bool {
        switch self {
        case .argMax, .argMin: return true
        default: return false
        }
    }
}

public enum ReduceKernels {
    /// y[o, i] = f(x[o, l, i] for l in 0..<length). An empty axis gives the identity of f (0 for sums,
    /// 1 for the product, −∞ for max and log-sum-exp, +∞ for min; the mean of nothing is NaN; an index
    /// of nothing is 0). Max and min propagate NaN.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(_ f: ReduceFunction, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>,
                                        outer: Int, length: Int, inner: Int) {
        if inner > 1, let identity = rowwiseIdentity(f, T.self) {
            // contiguous rows of x combined into y's row: the same order per element (l = 0, 1, ...) as
            // the loop below, so the same bits, with unit-stride inner loops
            for o in 0..<outer {
                let xo = x + o &* length &* inner, yo = y + o &* inner
                yo.update(repeating: identity, count: inner)
                for l in 0..<length {
                    let row = xo + l &* inner
                    switch f {
                    case .sum, .mean: for i in 0..<inner { yo[i] += row[i] }
                    case .sumSquare: for i in 0..<inner { let v = row[i]; yo[i] += v * v }
                    case .sumAbs: for i in 0..<inner { yo[i] += abs(row[i]) }
                    case .prod: for i in 0..<inner { yo[i] *= row[i] }
                    case .max: for i in 0..<inner { let v = row[i]; if v > yo[i] || v != v { yo[i] = v } }
                    case .min: for i in 0..<inner { let v = row[i]; if v < yo[i] || v != v { yo[i] = v } }
                    default: break
                    }
                }
                if f == .mean { let c = T(length); for i in 0..<inner { yo[i] /= c } }
            }
            return
        }
        for o in 0..<outer {
            let xo = x + o &* length &* inner, yo = y + o &* inner
            for i in 0..<inner {
                let p = xo + i
                var acc: T
                switch f {
                case .sum, .mean:
                    acc = 0
                    for l in 0..<length { acc += p[l &* inner] }
                    if f == .mean { acc /= T(length) }
                case .sumSquare:
                    acc = 0
                    for l in 0..<length { let v = p[l &* inner]; acc += v * v }
                case .sumAbs:
                    acc = 0
                    for l in 0..<length { acc += abs(p[l &* inner]) }
                case .prod:
                    acc = 1
                    for l in 0..<length { acc *= p[l &* inner] }
                case .max:
                    acc = -.infinity
                    for l in 0..<length { let v = p[l &* inner]; if v > acc || v != v { acc = v } }
                case .min:
                    acc = .infinity
                    for l in 0..<length { let v = p[l &* inner]; if v < acc || v != v { acc = v } }
                case .logSumExp:
                    var m = -T.infinity
                    for l in 0..<length { let v = p[l &* inner]; if v > m || v != v { m = v } }
                    if m.isFinite {
                        var s: T = 0
                        for l in 0..<length { s += T.exp(p[l &* inner] - m) }
                        acc = m + T.log(s)
                    } else {
                        acc = m
                    }
                case .argMax(let last), .argMin(let last):
                    let isMax = f == .argMax(last: last)
                    var best = 0
                    if length > 0 {
                        var m = p[0]
                        for l in 1..<length {
                            let v = p[l &* inner]
                            if m != m { break }   // the first NaN wins (NumPy)
                            let better = isMax ? (last ? v >= m : v > m) : (last ? v <= m : v < m)
                            if better || v != v { m = v; best = l }
                        }
                    }
                    acc = T(best)
                }
                yo[i] = acc
            }
        }
    }

    /// The starting value of the functions `forward` computes row by row (nil: element by element).
    @inlinable @inline(__always)
    static func rowwiseIdentity<T: Real>(_ f: ReduceFunction, _: T.Type) -> T? {
        switch f {
        case .sum, .mean, .sumSquare, .sumAbs: return 0
        case .prod: return 1
        case .max: return -.infinity
        case .min: return .infinity
        case .logSumExp, .argMax, .argMin: return nil
        }
    }

    /// The position along the axis that max/min took (the first one equal to y, NaN included): where
    /// their derivative goes. -1 when there is none (an empty axis).
    @inlinable @inline(__always)
    static func firstMatch<T: Real>(_ p: UnsafePointer<T>, _ length: Int, _ inner: Int, _ y: T) -> Int {
        for l in 0..<length {
            let v = p[l &* inner]
            if v == y || (v != v && y != y) { return l }
        }
        return -1
    }

    /// Derivatives of `forward` (not of the index functions, which have none). Reverse (`tangent`
    /// false): out has x's shape, out (+)= g[o, i]·∂y[o, i]/∂x. Tangent: out has y's shape,
    /// out = Σ_l ∂y/∂x·g (g has x's shape). Max and min route the whole derivative to the first
    /// element equal to the result (ties: the first arg-max / arg-min, as PyTorch's max with indices).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func derivative<T: Real>(_ f: ReduceFunction, x: UnsafePointer<T>, y: UnsafePointer<T>,
                                           g: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                           outer: Int, length: Int, inner: Int, tangent: Bool, accumulate: Bool) {
        if !tangent && !accumulate { out.update(repeating: 0, count: outer &* length &* inner) }
        for o in 0..<outer {
            let base = o &* length &* inner
            for i in 0..<inner {
                let p = x + base + i, yv = y[o &* inner + i]
                // reverse: d(l) is added g·∂y/∂x_l at x's position; tangent: Σ ∂y/∂x_l · g_l
                let gy: T = tangent ? 0 : g[o &* inner + i]
                let gx = tangent ? g + base + i : g
                let ox = out + base + i
                var t: T = 0
                @inline(__always) func put(_ l: Int, _ d: T) {
                    if tangent { t += d * gx[l &* inner] } else { ox[l &* inner] += gy * d }
                }
                switch f {
                case .sum:
                    for l in 0..<length { put(l, 1) }
                case .mean:
                    let s = 1 / T(length)
                    for l in 0..<length { put(l, s) }
                case .sumSquare:
                    for l in 0..<length { put(l, 2 * p[l &* inner]) }
                case .sumAbs:
                    for l in 0..<length { let v = p[l &* inner]; put(l, v > 0 ? 1 : (v < 0 ? -1 : 0)) }
                case .logSumExp:
                    for l in 0..<length { put(l, T.exp(p[l &* inner] - yv)) }
                case .max, .min:
                    let l = firstMatch(p, length, inner, yv)
                    if l >= 0 { put(l, 1) }
                case .prod:
                    // ∂/∂x_l = Π_{j≠l} x_j: y/x_l without zeros; with one zero only its own position
                    // has a non-zero derivative; with two or more, none has
                    var zeros = 0, zeroAt = -1
                    var others: T = 1
                    for l in 0..<length {
                        let v = p[l &* inner]
                        if v == 0 { zeros += 1; zeroAt = l } else { others *= v }
                    }
                    if zeros == 0 {
                        for l in 0..<length { put(l, yv / p[l &* inner]) }
                    } else if zeros == 1 {
                        put(zeroAt, others)
                    }
                case .argMax, .argMin:
                    break
                }
                if tangent {
                    let ty = out + o &* inner + i
                    ty.pointee = accumulate ? ty.pointee + t : t
                }
            }
        }
    }
}

/// ONNX Pad through per-axis index maps. Geometry (compile time): [r, inShape[r], outShape[r], then for
/// each axis d the outShape[d] input indices it reads, −1 where the output is the constant]; x is
/// `outer` blocks of Π inShape values, y `outer` blocks of Π outShape values. 1 ≤ r ≤ 8.
public enum PadKernels {
    /// y[b, o...] = x[b, map_0[o_0], ...], or `value` where any map is −1.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, value: T, outer: Int, geometry p: UnsafeBufferPointer<Int>,
                                        y: UnsafeMutablePointer<T>) {
        visit(outer: outer, geometry: p) { src, dst, map, count in
            if src < 0 { y.advanced(by: dst).update(repeating: value, count: count); return }
            for o in 0..<count {
                let k = p[map + o]
                y[dst + o] = k < 0 ? value : x[src + k]
            }
        }
    }

    /// The adjoint: gx[b, map...] += gy[b, o...] where the maps are valid (`ofValue` false), or
    /// gv[0] += Σ gy over the constant positions (`ofValue`). The caller zeroes first.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(gy: UnsafePointer<T>, outer: Int, geometry p: UnsafeBufferPointer<Int>,
                                         ofValue: Bool, out: UnsafeMutablePointer<T>) {
        var s: T = 0
        visit(outer: outer, geometry: p) { src, dst, map, count in
            if src < 0 {
                if ofValue { for o in 0..<count { s += gy[dst + o] } }
                return
            }
            for o in 0..<count {
                let k = p[map + o]
                if k < 0 { if ofValue { s += gy[dst + o] } } else if !ofValue { out[src + k] += gy[dst + o] }
            }
        }
        if ofValue { out[0] += s }
    }

    /// Calls `row(src, dst, lastMap, count)` for every output row (last axis): the input offset of the
    /// row before the last axis's map (−1 when a leading axis is padding there), the output offset,
    /// where the last axis's map starts in `p`, the row's length.
    @inlinable @inline(__always)
    static func visit(outer: Int, geometry p: UnsafeBufferPointer<Int>, _ row: (Int, Int, Int, Int) -> Void) {
        let r = p[0]
        guard r >= 1, r <= 8 else { return }
        var step = SIMD8<Int>(repeating: 0), mapAt = SIMD8<Int>(repeating: 0), outS = SIMD8<Int>(repeating: 1)
        var acc = 1, m = 1 + 2 * r, inCount = 1, outCount = 1
        for d in 0..<r { outS[d] = p[1 + r + d]; mapAt[d] = m; m += outS[d]; inCount *= p[1 + d]; outCount *= outS[d] }
        var e = r - 1
        while e >= 0 { step[e] = acc; acc *= p[1 + e]; e -= 1 }
        let last = outS[r - 1], lastMap = mapAt[r - 1]
        if outCount == 0 { return }
        var dst = 0
        for b in 0..<outer {
            var idx = SIMD8<Int>(repeating: 0)
            while true {
                var src = b &* inCount
                for d in 0..<(r - 1) {
                    let k = p[mapAt[d] + idx[d]]
                    if k < 0 { src = -1; break }
                    src += k * step[d]
                }
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
