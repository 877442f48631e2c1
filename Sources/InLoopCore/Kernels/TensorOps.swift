// Tensor-shaped kernels: concat, the Slice clamping rule, broadcasting binary ops over a merged
// geometry, softmax / log-softmax, layer norm, the nearest-resize index map. (Transpose, Split, Slice
// and Gather run as the copy and gather steps of `Kernels/Layout.swift`.)
//
// All tensors are dense row-major (C order). Ranks are at most 8 (TensorOps.maxRank). Integer
// arguments follow ONNX after the caller's normalisation, as stated per function.
//
// Public API (enum TensorOps unless stated):
//   concat(x:outer:axisLength:inner:y:yAxisLength:axisOffset:)
//       x (outer × axisLength × inner) is copied into y (outer × yAxisLength × inner) at
//       y[:, axisOffset ..< axisOffset + axisLength, :]; one call per Concat input.
//       outer = product of dims before the axis, inner = product of dims after it.
//   sliceRange(dim:start:end:step:) -> (start: Int, count: Int)
//       ONNX Slice clamping of one axis (negative start/end count from the end; any Int, e.g.
//       Int.max / Int.min, is fine); step ≠ 0. count ≥ 0 elements start, start+step, …
//   softmax(x:outer:axisLength:inner:y:)              numerically stable softmax over the middle axis
//   logSoftmax(x:outer:axisLength:inner:y:numerics:)  of x (outer × axisLength × inner); y may equal
//       x. (ONNX opset ≥ 13: axis = the softmax axis; opset < 13 coerces to 2-D: inner = 1.) Generic.
//   broadcastBinary(_:a:b:y:geometry:numerics:)   (generic over T: Real)
//       y = op(a, b) with NumPy broadcasting over a merged BroadcastGeometry (Engine.BroadcastLayout
//       encodes it from the shapes); y may alias a when a is not broadcast.
//   broadcastAdjoint(_:operand:a:b:y:gradient:into:geometry:accumulate:)
//       gx (+)= Σ over broadcast axes of BinaryOp.adjoint (unbroadcast / sum-to-shape)
//   broadcastTangent(_:operand:a:b:y:tangent:into:geometry:accumulate:)   ty (+)= adjoint of tx
//   softmaxBackward(y:gradient:outer:axisLength:inner:log:into:accumulate:)
//       gx (+)= Jᵀ·gy (y: the output; accumulate defaults to true)
//   softmaxTangent(y:tangent:outer:axisLength:inner:log:into:)     ty = J·tx
//   layerNorm(x:rows:cols:scale:bias:epsilon:y:)
//       each row of x (rows × cols): (x - mean) / sqrt(var + epsilon) · scale[c] + bias[c];
//       scale / bias (cols values) may be nil (= 1 / 0). Biased variance. y may equal x.
//   nearestIndex(_:inLength:outLength:scale:coordinateMode:nearestMode:) -> Int
//       ONNX Resize mode=nearest along one axis: the input index nearestMode(transform(o)) clamped
//       to 0..<inLength; scale is the axis' Resize scale (outLength / inLength with `sizes`).
//
//   enum BinaryOp { add, sub, mul, div, pow, min, max }; apply(_:_:_:) is the scalar definition
//       (generic; the numerics argument picks how pow is evaluated, see Numerics.Elementary).
//   enum ResizeCoordinateMode { halfPixel, halfPixelSymmetric, asymmetric, alignCorners,
//       pytorchHalfPixel, tfHalfPixelForNearest }; init?(onnxName:) ("half_pixel", …)
//       (tf_crop_and_resize is not supported).
//   enum ResizeNearestMode { roundPreferFloor, roundPreferCeil, floor, ceil }; init?(onnxName:)
//
// Preconditions (caller-validated, not checked): pointers hold the element counts implied by the
// sizes; sizes and geometries are valid; outputs do not overlap inputs unless stated.
// No allocation and no traps (validate ranks at compile time).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise binary operators with NumPy broadcasting (ONNX Add, Sub, Mul, Div, Pow, Min, Max).
public enum BinaryOp: Equatable, Sendable, CustomStringConvertible {
    case add, sub, mul, div, pow, min, max

    public var description: String {
        switch self {
        case .add: return "Add"
        case .sub: return "Sub"
        case .mul: return "Mul"
        case .div: return "Div"
        case .pow: return "Pow"
        case .min: return "Min"
        case .max: return "Max"
        }
    }

    /// The scalar definition. Min/Max propagate NaN. Pow under `numerics.elementary`.
    @inlinable @inline(__always)
    public func apply<T: Real>(_ a: T, _ b: T, _ numerics: Numerics = .inference) -> T {
        switch self {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return numerics.pow(a, b)
        case .min: return BinaryOp.minimum(a, b)
        case .max: return BinaryOp.maximum(a, b)
        }
    }

    /// g·∂op/∂(operand k) at (a, b) with y = op(a, b): the reverse contribution of a gradient g, and
    /// the tangent contribution of a tangent g. Pow as the differentiable engine has it (base: 0 for
    /// a zero exponent; exponent: 0 where a ≤ 0); Min/Max route to the selected operand, a on ties
    /// and when a is NaN (the first input of a variadic Min/Max).
    @inlinable @inline(__always)
    public func adjoint<T: Real>(_ k: Int, _ g: T, _ a: T, _ b: T, _ y: T) -> T {
        switch self {
        case .add: return g
        case .sub: return k == 0 ? g : -g
        case .mul: return k == 0 ? g * b : g * a
        case .div: return k == 0 ? g / b : -(g * a / (b * b))
        case .pow:
            if k == 0 { return g * (b == 0 ? 0 : b * Numerics.differentiable.pow(a, b - 1)) }
            return g * (a > 0 ? y * Numerics.differentiable.log(a) : 0)
        case .min:
            let first = a.isNaN || a <= b
            return (k == 0) == first ? g : 0
        case .max:
            let first = a.isNaN || a >= b
            return (k == 0) == first ? g : 0
        }
    }

    @inlinable @inline(__always)
    static func minimum<T: Real>(_ a: T, _ b: T) -> T { a.isNaN || a < b ? a : b }
    @inlinable @inline(__always)
    static func maximum<T: Real>(_ a: T, _ b: T) -> T { a.isNaN || a > b ? a : b }
}

/// ONNX Resize `coordinate_transformation_mode` (tf_crop_and_resize is not supported).
public enum ResizeCoordinateMode: Equatable, Sendable {
    case halfPixel, halfPixelSymmetric, asymmetric, alignCorners, pytorchHalfPixel, tfHalfPixelForNearest

    public init?(onnxName: String) {
        switch onnxName {
        case "half_pixel": self = .halfPixel
        case "half_pixel_symmetric": self = .halfPixelSymmetric
        case "asymmetric": self = .asymmetric
        case "align_corners": self = .alignCorners
        case "pytorch_half_pixel": self = .pytorchHalfPixel
        case "tf_half_pixel_for_nearest": self = .tfHalfPixelForNearest
        default: return nil
        }
    }
}

/// ONNX Resize `nearest_mode`.
public enum ResizeNearestMode: Equatable, Sendable {
    case roundPreferFloor, roundPreferCeil, floor, ceil

    public init?(onnxName: String) {
        switch onnxName {
        case "round_prefer_floor": self = .roundPreferFloor
        case "round_prefer_ceil": self = .roundPreferCeil
        case "floor": self = .floor
        case "ceil": self = .ceil
        default: return nil
        }
    }
}

public enum TensorOps {
    /// The largest rank the N-D kernels handle.
    public static let maxRank = 8

    @usableFromInline typealias Dims = Fixed8<Int>

    // MARK: concat

    /// Copies x (outer × axisLength × inner) into y (outer × yAxisLength × inner) at axis offset
    /// `axisOffset`.
    @inlinable
    public static func concat<T: Real>(x: UnsafePointer<T>, outer: Int, axisLength: Int, inner: Int,
                                       y: UnsafeMutablePointer<T>, yAxisLength: Int, axisOffset: Int) {
        let run = axisLength * inner, ys = yAxisLength * inner
        if run == 0 { return }
        for o in 0..<outer { (y + o * ys + axisOffset * inner).update(from: x + o * run, count: run) }
    }

    // MARK: slice

    /// ONNX Slice clamping along one axis of size `dim`: the first index and the number of elements.
    @inlinable
    public static func sliceRange(dim: Int, start: Int, end: Int, step: Int) -> (start: Int, count: Int) {
        if dim <= 0 || step == 0 { return (0, 0) }
        var s = start, e = end
        if s < 0 { s += dim }
        if e < 0 { e += dim }
        if step > 0 {
            let st = Swift.min(step, dim)
            s = Swift.min(Swift.max(s, 0), dim)
            e = Swift.min(Swift.max(e, 0), dim)
            return (s, e > s ? (e - s + st - 1) / st : 0)
        } else {
            let st = Swift.min(0 &- Swift.max(step, -dim), dim)
            s = Swift.min(Swift.max(s, 0), dim - 1)
            e = Swift.min(Swift.max(e, -1), dim - 1)
            return (s, s > e ? (s - e + st - 1) / st : 0)
        }
    }

    // MARK: broadcasting binary ops

    /// y = f(a, b) over a merged broadcast geometry (y contiguous, a and b strided): the strided loop
    /// of `broadcastBinary`, which the engine's broadcast step runs. Runs along the innermost axis
    /// take the contiguous or scalar-operand forms.
    @inlinable @inline(__always)
    static func broadcastLoop<T>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>,
                                 _ g: BroadcastGeometry, _ f: (T, T) -> T) {
        let k = g.rank
        if k == 0 { y[0] = f(a[0], b[0]); return }
        let dims = g.dims, sa = g.sa, sb = g.sb
        let run = dims[k - 1], ia = sa[k - 1], ib = sb[k - 1]
        var count = 1
        for d in 0..<(k - 1) { count *= dims[d] }
        if count == 0 || run == 0 { return }
        var idx = Dims(repeating: 0)
        var offA = 0, offB = 0
        var yr = y
        for _ in 0..<count {
            let ar = a + offA, br = b + offB
            if ia == 1 && ib == 1 {
                for j in 0..<run { yr[j] = f(ar[j], br[j]) }
            } else if ia == 1 {
                let bv = br[0]
                for j in 0..<run { yr[j] = f(ar[j], bv) }
            } else if ib == 1 {
                let av = ar[0]
                for j in 0..<run { yr[j] = f(av, br[j]) }
            } else {
                let v = f(ar[0], br[0])
                yr.update(repeating: v, count: run)
            }
            yr += run
            var d = k - 2
            while d >= 0 {
                idx[d] += 1
                offA += sa[d]; offB += sb[d]
                if idx[d] < dims[d] { break }
                offA -= sa[d] * dims[d]; offB -= sb[d] * dims[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// Calls body(i, ia, ib) for every element i of y (row-major) with the offsets of the a and b
    /// elements broadcasting maps to it.
    @inlinable @inline(__always)
    static func forEachBroadcast(_ g: BroadcastGeometry, _ body: (_ i: Int, _ ia: Int, _ ib: Int) -> Void) {
        let k = g.rank
        if k == 0 { body(0, 0, 0); return }
        let dims = g.dims, sa = g.sa, sb = g.sb
        let run = dims[k - 1], ra = sa[k - 1], rb = sb[k - 1]
        var count = 1
        for d in 0..<(k - 1) { count *= dims[d] }
        if count == 0 || run == 0 { return }
        var idx = Dims(repeating: 0)
        var offA = 0, offB = 0, i = 0
        for _ in 0..<count {
            for j in 0..<run { body(i + j, offA + j * ra, offB + j * rb) }
            i += run
            var d = k - 2
            while d >= 0 {
                idx[d] += 1
                offA += sa[d]; offB += sb[d]
                if idx[d] < dims[d] { break }
                offA -= sa[d] * dims[d]; offB -= sb[d] * dims[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// y = op(a, b) over a merged broadcast geometry; y may equal a when a is not broadcast.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func broadcastBinary<T: Real>(_ op: BinaryOp, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                                y: UnsafeMutablePointer<T>, geometry g: BroadcastGeometry,
                                                numerics: Numerics) {
        switch op {
        case .add: broadcastLoop(a, b, y, g) { $0 + $1 }
        case .sub: broadcastLoop(a, b, y, g) { $0 - $1 }
        case .mul: broadcastLoop(a, b, y, g) { $0 * $1 }
        case .div: broadcastLoop(a, b, y, g) { $0 / $1 }
        case .pow: broadcastLoop(a, b, y, g) { numerics.pow($0, $1) }
        case .min: broadcastLoop(a, b, y, g) { BinaryOp.minimum($0, $1) }
        case .max: broadcastLoop(a, b, y, g) { BinaryOp.maximum($0, $1) }
        }
    }

    /// The adjoint of y = op(a, b) with respect to operand k (0: a, 1: b): gx (+)= the sum, over the
    /// elements broadcasting maps x's element to, of `BinaryOp.adjoint` (the unbroadcast / sum-to-shape
    /// reduction). gx holds x's elements (zeroed first unless `accumulate`).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func broadcastAdjoint<T: Real>(_ op: BinaryOp, operand k: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                                 y: UnsafePointer<T>, gradient gy: UnsafePointer<T>,
                                                 into gx: UnsafeMutablePointer<T>, geometry g: BroadcastGeometry,
                                                 accumulate: Bool) {
        if !accumulate {
            var n = 1
            for d in 0..<g.rank where (k == 0 ? g.sa[d] : g.sb[d]) != 0 { n *= g.dims[d] }
            gx.update(repeating: 0, count: n)
        }
        if k == 0 {
            forEachBroadcast(g) { i, ia, ib in gx[ia] += op.adjoint(0, gy[i], a[ia], b[ib], y[i]) }
        } else {
            forEachBroadcast(g) { i, ia, ib in gx[ib] += op.adjoint(1, gy[i], a[ia], b[ib], y[i]) }
        }
    }

    /// The tangent of y = op(a, b) along operand k: ty (+)= `BinaryOp.adjoint` of the broadcast
    /// tangent tx (x's elements) at every element of y.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func broadcastTangent<T: Real>(_ op: BinaryOp, operand k: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                                 y: UnsafePointer<T>, tangent tx: UnsafePointer<T>,
                                                 into ty: UnsafeMutablePointer<T>, geometry g: BroadcastGeometry,
                                                 accumulate: Bool) {
        switch (k == 0, accumulate) {
        case (true, false): forEachBroadcast(g) { i, ia, ib in ty[i] = op.adjoint(0, tx[ia], a[ia], b[ib], y[i]) }
        case (true, true): forEachBroadcast(g) { i, ia, ib in ty[i] += op.adjoint(0, tx[ia], a[ia], b[ib], y[i]) }
        case (false, false): forEachBroadcast(g) { i, ia, ib in ty[i] = op.adjoint(1, tx[ib], a[ia], b[ib], y[i]) }
        case (false, true): forEachBroadcast(g) { i, ia, ib in ty[i] += op.adjoint(1, tx[ib], a[ia], b[ib], y[i]) }
        }
    }

    // MARK: softmax

    /// Numerically stable softmax over the middle axis of x (outer × axisLength × inner).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func softmax<T: Real>(x: UnsafePointer<T>, outer: Int, axisLength: Int, inner: Int,
                                        y: UnsafeMutablePointer<T>) {
        let len = axisLength
        if len == 0 { return }
        for o in 0..<outer {
            for i in 0..<inner {
                let xr = x + o * len * inner + i, yr = y + o * len * inner + i
                let m = axisMax(xr, len, inner)
                var s: T = 0
                for a in 0..<len { let e = T.exp(xr[a * inner] - m); yr[a * inner] = e; s += e }
                let inv = 1 / s
                for a in 0..<len { yr[a * inner] *= inv }
            }
        }
    }

    /// Numerically stable log-softmax over the middle axis of x (outer × axisLength × inner); the
    /// last subtraction and the log follow `numerics.elementary`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func logSoftmax<T: Real>(x: UnsafePointer<T>, outer: Int, axisLength: Int, inner: Int,
                                           y: UnsafeMutablePointer<T>, numerics: Numerics = .inference) {
        let len = axisLength
        if len == 0 { return }
        for o in 0..<outer {
            for i in 0..<inner {
                let xr = x + o * len * inner + i, yr = y + o * len * inner + i
                let m = axisMax(xr, len, inner)
                var s: T = 0
                for a in 0..<len { s += T.exp(xr[a * inner] - m) }
                let ls = numerics.log(s)
                if numerics.elementary == .native {
                    let shift = m + ls
                    for a in 0..<len { yr[a * inner] = xr[a * inner] - shift }
                } else {
                    for a in 0..<len { yr[a * inner] = xr[a * inner] - m - ls }
                }
            }
        }
    }

    /// The largest of x[0], x[stride], …, x[(len − 1)·stride] (len ≥ 1), skipping NaN after the first.
    @inlinable @inline(__always)
    static func axisMax<T: Real>(_ x: UnsafePointer<T>, _ len: Int, _ stride: Int) -> T {
        var m = x[0]
        for a in 1..<len { let v = x[a * stride]; if v > m { m = v } }
        return m
    }

    /// The adjoint of (log-)softmax: gx += Jᵀ·gy, given its output y.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func softmaxBackward<T: Real>(y: UnsafePointer<T>, gradient gy: UnsafePointer<T>, outer: Int,
                                                axisLength length: Int, inner: Int, log isLog: Bool,
                                                into gx: UnsafeMutablePointer<T>, accumulate: Bool = true) {
        if !accumulate { gx.update(repeating: 0, count: outer * length * inner) }
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var s: T = 0
                if isLog {
                    for l in 0..<length { s += gy[base + l * inner] }
                    for l in 0..<length { let k = base + l * inner; gx[k] += gy[k] - T.exp(y[k]) * s }
                } else {
                    for l in 0..<length { let k = base + l * inner; s += gy[k] * y[k] }
                    for l in 0..<length { let k = base + l * inner; gx[k] += y[k] * (gy[k] - s) }
                }
            }
        }
    }

    /// The tangent-linear map of (log-)softmax: ty = J·tx, given its output y.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    public static func softmaxTangent<T: Real>(y: UnsafePointer<T>, tangent tx: UnsafePointer<T>, outer: Int,
                                               axisLength length: Int, inner: Int, log isLog: Bool,
                                               into ty: UnsafeMutablePointer<T>) {
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var s: T = 0
                if isLog {
                    for l in 0..<length { let k = base + l * inner; s += T.exp(y[k]) * tx[k] }
                    for l in 0..<length { let k = base + l * inner; ty[k] = tx[k] - s }
                } else {
                    for l in 0..<length { let k = base + l * inner; s += y[k] * tx[k] }
                    for l in 0..<length { let k = base + l * inner; ty[k] = y[k] * (tx[k] - s) }
                }
            }
        }
    }

    // MARK: normalisation

    /// Layer normalisation of each row of x (rows × cols); see the file header. The row statistics are
    /// accumulated in Double (`layerNormStatistics`), in Float and Double alike.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func layerNorm<T: Real>(x: UnsafePointer<T>, rows: Int, cols: Int, scale: UnsafePointer<T>?,
                                          bias: UnsafePointer<T>?, epsilon: T, y: UnsafeMutablePointer<T>) {
        if cols == 0 { return }
        for r in 0..<rows {
            let xr = x + r * cols, yr = y + r * cols
            let (mf, inv) = layerNormStatistics(xr, cols: cols, epsilon: epsilon)
            switch (scale, bias) {
            case let (sc?, bi?): for c in 0..<cols { yr[c] = (xr[c] - mf) * inv * sc[c] + bi[c] }
            case let (sc?, nil): for c in 0..<cols { yr[c] = (xr[c] - mf) * inv * sc[c] }
            case let (nil, bi?): for c in 0..<cols { yr[c] = (xr[c] - mf) * inv + bi[c] }
            case (nil, nil): for c in 0..<cols { yr[c] = (xr[c] - mf) * inv }
            }
        }
    }

    /// Mean and 1/sqrt(biased variance + epsilon) of one row (cols ≥ 1), accumulated in Double and
    /// rounded to T: what `layerNorm` computes, and what its adjoint and tangent recompute.
    @inlinable
    public static func layerNormStatistics<T: Real>(_ xr: UnsafePointer<T>, cols: Int, epsilon: T) -> (mean: T, inverse: T) {
        var s: Double = 0
        for c in 0..<cols { s += Double(xr[c]) }
        let mean = s / Double(cols)
        var q: Double = 0
        for c in 0..<cols { let d = Double(xr[c]) - mean; q += d * d }
        return (T(mean), T(1 / (q / Double(cols) + Double(epsilon)).squareRoot()))
    }

    // MARK: resize

    /// The input index ONNX Resize (nearest) reads for output index `o` along one axis.
    @inlinable @inline(__always)
    public static func nearestIndex(_ o: Int, inLength: Int, outLength: Int, scale: Float,
                                    coordinateMode: ResizeCoordinateMode, nearestMode: ResizeNearestMode) -> Int {
        let xr = Float(o)
        let xo: Float
        switch coordinateMode {
        case .halfPixel: xo = (xr + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = Float(outLength) / (scale * Float(inLength))
            let center = Float(inLength) / 2
            xo = center * (1 - adjustment) + (xr + 0.5) / scale - 0.5
        case .asymmetric: xo = xr / scale
        case .alignCorners: xo = outLength == 1 ? 0 : xr * Float(inLength - 1) / Float(outLength - 1)
        case .pytorchHalfPixel: xo = outLength > 1 ? (xr + 0.5) / scale - 0.5 : 0
        case .tfHalfPixelForNearest: xo = (xr + 0.5) / scale
        }
        let r: Float
        switch nearestMode {
        case .roundPreferFloor:
            let f = xo.rounded(.down)
            r = xo - f == 0.5 ? f : xo.rounded(.toNearestOrAwayFromZero)
        case .roundPreferCeil:
            let f = xo.rounded(.down)
            r = xo - f == 0.5 ? f + 1 : xo.rounded(.toNearestOrAwayFromZero)
        case .floor: r = xo.rounded(.down)
        case .ceil: r = xo.rounded(.up)
        }
        if !(r > 0) { return 0 }   // also NaN
        if r >= Float(inLength - 1) { return inLength - 1 }
        return Int(r)
    }
}

/// Eight values stored inline (no heap allocation): per-axis scratch of the N-D kernels, indexed
/// 0..<8 without bounds checks (the kernels return early for ranks above `TensorOps.maxRank`).
@frozen @usableFromInline
struct Fixed8<T> {
    @usableFromInline var storage: (T, T, T, T, T, T, T, T)

    @inlinable @inline(__always)
    init(repeating v: T) { storage = (v, v, v, v, v, v, v, v) }

    @inlinable
    subscript(i: Int) -> T {
        @inline(__always) get {
            withUnsafeBytes(of: storage) { $0.load(fromByteOffset: i &* MemoryLayout<T>.stride, as: T.self) }
        }
        @inline(__always) set {
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: newValue, toByteOffset: i &* MemoryLayout<T>.stride, as: T.self) }
        }
    }
}

/// A broadcast after merging: `rank` axes (outer to inner, rank ≤ 8) of sizes `dims`, and the element
/// strides of a and b along them (0 where that operand is broadcast). Size-1 axes are dropped and
/// adjacent axes along which both operands keep their pattern are merged, so a same-shape operation
/// is one axis and a per-feature vector along the last axis is two.
@frozen @usableFromInline
struct BroadcastGeometry {
    @usableFromInline var rank: Int
    @usableFromInline var dims: Fixed8<Int>
    @usableFromInline var sa: Fixed8<Int>
    @usableFromInline var sb: Fixed8<Int>

    /// From merged axes: `dims[0..<rank]` and whether a / b vary along each (true) or are broadcast.
    @inlinable @inline(__always)
    init(rank: Int, dims: Fixed8<Int>, aVaries: Fixed8<Int>, bVaries: Fixed8<Int>) {
        self.rank = rank
        self.dims = dims
        sa = Fixed8(repeating: 0)
        sb = Fixed8(repeating: 0)
        var strideA = 1, strideB = 1
        var i = rank - 1
        while i >= 0 {
            if aVaries[i] != 0 { sa[i] = strideA; strideA &*= dims[i] }
            if bVaries[i] != 0 { sb[i] = strideB; strideB &*= dims[i] }
            i -= 1
        }
    }
}
