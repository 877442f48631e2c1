// Comparison, logic and selection kernels (ONNX Greater, Less, Equal, GreaterOrEqual, LessOrEqual,
// Not, And, Or, Xor, Mod, PRelu, Where), generic over T: Real (Float, Double).
//
// Booleans and integers live in T storage as exact values: booleans are 0 and 1 (any non-zero value
// reads as true), integers are exact up to 2^24 in float32 and 2^53 in float64 (beyond that they are
// what T rounds them to). Results of comparisons and logic ops are exactly 0 or 1.
//
//   enum LogicOp                                  the element-wise operators; apply(_:_:) is the scalar
//       definition, adjoint(_:_:_:_:) the derivative of the float ones (fmod, mod, prelu)
//   TensorOps.logicBroadcast(_:a:b:y:geometry:)   y = op(a, b) over a merged BroadcastGeometry (the
//       strided loop of the broadcasting binary ops, `TensorOps.broadcastLoop`); unary ops (not,
//       nonzero, truncate) read a and ignore b (pass the same pointer)
//   TensorOps.logicAdjoint(_:operand:a:b:gradient:into:geometry:accumulate:)
//       gx (+)= Σ over broadcast axes of LogicOp.adjoint (the unbroadcast reduction)
//   TensorOps.logicTangent(_:operand:a:b:tangent:into:geometry:accumulate:)   ty (+)= adjoint of tx
//   SelectGeometry                                a three-operand broadcast (condition, x, y)
//   TensorOps.select(c:x:y:out:geometry:)          out = c != 0 ? x : y (ONNX Where)
//   TensorOps.selectAdjoint(c:gradient:into:operand:geometry:accumulate:)
//       operand 1: gx (+)= Σ (c != 0 ? g : 0), operand 2: gy (+)= Σ (c != 0 ? 0 : g), summed over the
//       axes the operand is broadcast along
//
// Preconditions (caller-validated): pointers hold the elements the geometry implies; outputs do not
// overlap inputs except y = a when a is not broadcast. No allocation, no traps.

/// Element-wise comparison, logic and selection-like operators with NumPy broadcasting.
public enum LogicOp: Equatable, Sendable, CustomStringConvertible {
    case greater, less, equal, greaterOrEqual, lessOrEqual
    case and, or, xor
    /// Unary (b is ignored): not (x == 0), nonzero (x != 0: a Cast to bool), truncate (toward zero: a
    /// Cast of floats to int64).
    case not, nonzero, truncate
    /// ONNX Mod with fmod = 1 (C fmod: the sign of the dividend; float and integer) and fmod = 0
    /// (integers: the sign of the divisor, as Python's %).
    case fmod, mod
    /// ONNX PRelu: a < 0 ? b·a : a (b the slope).
    case prelu

    public var description: String {
        switch self {
        case .greater: return "Greater"
        case .less: return "Less"
        case .equal: return "Equal"
        case .greaterOrEqual: return "GreaterOrEqual"
        case .lessOrEqual: return "LessOrEqual"
        case .and: return "And"
        case .or: return "Or"
        case .xor: return "Xor"
        case .not: return "Not"
        case .nonzero: return "Cast(bool)"
        case .truncate: return "Cast(int64)"
        case .fmod: return "Mod(fmod=1)"
        case .mod: return "Mod(fmod=0)"
        case .prelu: return "PRelu"
        }
    }

    /// Whether the op has a derivative (float results that depend smoothly on the operands almost
    /// everywhere); the others' results are booleans or integers.
    public var isDifferentiable: Bool { self == .fmod || self == .mod || self == .prelu }

    /// The scalar definition. Comparisons with NaN are false (Equal too), as in NumPy.
    @inlinable @inline(__always)
    public func apply<T: Real>(_ a: T, _ b: T) -> T {
        switch self {
        case .greater: return a > b ? 1 : 0
        case .less: return a < b ? 1 : 0
        case .equal: return a == b ? 1 : 0
        case .greaterOrEqual: return a >= b ? 1 : 0
        case .lessOrEqual: return a <= b ? 1 : 0
        case .and: return a != 0 && b != 0 ? 1 : 0
        case .or: return a != 0 || b != 0 ? 1 : 0
        case .xor: return (a != 0) != (b != 0) ? 1 : 0
        case .not: return a == 0 ? 1 : 0
        case .nonzero: return a != 0 ? 1 : 0
        case .truncate: return a.rounded(.towardZero)
        case .fmod: return a.truncatingRemainder(dividingBy: b)
        case .mod:
            let r = a.truncatingRemainder(dividingBy: b)
            return r != 0 && (r < 0) != (b < 0) ? r + b : r
        case .prelu: return a < 0 ? b * a : a
        }
    }

    /// g·∂op/∂(operand k) at (a, b): the reverse contribution of a gradient g and the tangent
    /// contribution of a tangent g. Mod: 1 for the dividend, −trunc(a/b) (fmod) or −floor(a/b) for the
    /// divisor; PRelu: b or 1 for x, x where x < 0 (else 0) for the slope; 0 for the others.
    @inlinable @inline(__always)
    public func adjoint<T: Real>(_ k: Int, _ g: T, _ a: T, _ b: T) -> T {
        switch self {
        case .fmod: return k == 0 ? g : -(g * (a / b).rounded(.towardZero))
        case .mod: return k == 0 ? g : -(g * (a / b).rounded(.down))
        case .prelu:
            if k == 0 { return a < 0 ? g * b : g }
            return a < 0 ? g * a : 0
        default: return 0
        }
    }
}

extension TensorOps {
    /// y = op(a, b) over a merged broadcast geometry; y may equal a when a is not broadcast.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func logicBroadcast<T: Real>(_ op: LogicOp, a: UnsafePointer<T>, b: UnsafePointer<T>, y: UnsafeMutablePointer<T>,
                                        geometry g: BroadcastGeometry) {
        let zero: T = 0, one: T = 1
        switch op {
        case .greater: broadcastLoop(a, b, y, g) { $0 > $1 ? one : zero }
        case .less: broadcastLoop(a, b, y, g) { $0 < $1 ? one : zero }
        case .equal: broadcastLoop(a, b, y, g) { $0 == $1 ? one : zero }
        case .greaterOrEqual: broadcastLoop(a, b, y, g) { $0 >= $1 ? one : zero }
        case .lessOrEqual: broadcastLoop(a, b, y, g) { $0 <= $1 ? one : zero }
        case .and: broadcastLoop(a, b, y, g) { $0 != zero && $1 != zero ? one : zero }
        case .or: broadcastLoop(a, b, y, g) { $0 != zero || $1 != zero ? one : zero }
        case .xor: broadcastLoop(a, b, y, g) { ($0 != zero) != ($1 != zero) ? one : zero }
        case .not: broadcastLoop(a, b, y, g) { x, _ in x == zero ? one : zero }
        case .nonzero: broadcastLoop(a, b, y, g) { x, _ in x != zero ? one : zero }
        case .prelu: broadcastLoop(a, b, y, g) { $0 < zero ? $1 * $0 : $0 }
        case .truncate, .fmod, .mod: broadcastLoop(a, b, y, g) { op.apply($0, $1) }
        }
    }

    /// The adjoint of y = op(a, b) with respect to operand k (0: a, 1: b): gx (+)= the sum, over the
    /// elements broadcasting maps x's element to, of `LogicOp.adjoint`. gx holds x's elements (zeroed
    /// first unless `accumulate`).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func logicAdjoint<T: Real>(_ op: LogicOp, operand k: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                      gradient gy: UnsafePointer<T>, into gx: UnsafeMutablePointer<T>,
                                      geometry g: BroadcastGeometry, accumulate: Bool) {
        if !accumulate {
            var n = 1
            for d in 0..<g.rank where (k == 0 ? g.sa[d] : g.sb[d]) != 0 { n &*= g.dims[d] }
            gx.update(repeating: 0, count: n)
        }
        if k == 0 {
            forEachBroadcast(g) { i, ia, ib in gx[ia] += op.adjoint(0, gy[i], a[ia], b[ib]) }
        } else {
            forEachBroadcast(g) { i, ia, ib in gx[ib] += op.adjoint(1, gy[i], a[ia], b[ib]) }
        }
    }

    /// The tangent of y = op(a, b) along operand k: ty (+)= `LogicOp.adjoint` of the broadcast tangent
    /// tx (x's elements) at every element of y.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func logicTangent<T: Real>(_ op: LogicOp, operand k: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                      tangent tx: UnsafePointer<T>, into ty: UnsafeMutablePointer<T>,
                                      geometry g: BroadcastGeometry, accumulate: Bool) {
        switch (k == 0, accumulate) {
        case (true, false): forEachBroadcast(g) { i, ia, ib in ty[i] = op.adjoint(0, tx[ia], a[ia], b[ib]) }
        case (true, true): forEachBroadcast(g) { i, ia, ib in ty[i] += op.adjoint(0, tx[ia], a[ia], b[ib]) }
        case (false, false): forEachBroadcast(g) { i, ia, ib in ty[i] = op.adjoint(1, tx[ib], a[ia], b[ib]) }
        case (false, true): forEachBroadcast(g) { i, ia, ib in ty[i] += op.adjoint(1, tx[ib], a[ia], b[ib]) }
        }
    }

    /// Calls body(i, ic, ix, iy) for every element i of the output (row-major) with the offsets of the
    /// three operands' elements broadcasting maps to it.
    @inlinable @inline(__always)
    static func forEachSelect(_ g: SelectGeometry, _ body: (_ i: Int, _ ic: Int, _ ix: Int, _ iy: Int) -> Void) {
        let k = g.rank
        if k == 0 { body(0, 0, 0, 0); return }
        let dims = g.dims, s0 = g.s0, s1 = g.s1, s2 = g.s2
        let run = dims[k - 1], r0 = s0[k - 1], r1 = s1[k - 1], r2 = s2[k - 1]
        var count = 1
        for d in 0..<(k - 1) { count &*= dims[d] }
        if count == 0 || run == 0 { return }
        var idx = Dims(repeating: 0)
        var o0 = 0, o1 = 0, o2 = 0, i = 0
        for _ in 0..<count {
            for j in 0..<run { body(i &+ j, o0 &+ j &* r0, o1 &+ j &* r1, o2 &+ j &* r2) }
            i &+= run
            var d = k - 2
            while d >= 0 {
                idx[d] += 1
                o0 &+= s0[d]; o1 &+= s1[d]; o2 &+= s2[d]
                if idx[d] < dims[d] { break }
                o0 &-= s0[d] &* dims[d]; o1 &-= s1[d] &* dims[d]; o2 &-= s2[d] &* dims[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// out = c != 0 ? x : y with broadcasting (ONNX Where); out may equal c when c is not broadcast.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func select<T: Real>(c: UnsafePointer<T>, x: UnsafePointer<T>, y: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                geometry g: SelectGeometry) {
        let zero: T = 0
        forEachSelect(g) { i, ic, ix, iy in out[i] = c[ic] != zero ? x[ix] : y[iy] }
    }

    /// The adjoint of `select` for operand 1 (x) or 2 (y): out (+)= Σ of g where the condition picks
    /// that operand, over the elements broadcasting maps the operand's element to (zeroed first unless
    /// `accumulate`). The condition gets no gradient.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func selectAdjoint<T: Real>(c: UnsafePointer<T>, gradient gy: UnsafePointer<T>, into gx: UnsafeMutablePointer<T>,
                                       operand k: Int, geometry g: SelectGeometry, accumulate: Bool) {
        let zero: T = 0
        if !accumulate {
            var n = 1
            for d in 0..<g.rank where (k == 1 ? g.s1[d] : g.s2[d]) != 0 { n &*= g.dims[d] }
            gx.update(repeating: 0, count: n)
        }
        if k == 1 {
            forEachSelect(g) { i, ic, ix, _ in if c[ic] != zero { gx[ix] += gy[i] } }
        } else {
            forEachSelect(g) { i, ic, _, iy in if c[ic] == zero { gx[iy] += gy[i] } }
        }
    }
}

/// A three-operand broadcast after merging (condition, x, y of ONNX Where): `rank` axes (outer to
/// inner, ≤ 8) of sizes `dims`, and each operand's element strides along them (0 where broadcast).
@frozen @usableFromInline
struct SelectGeometry {
    @usableFromInline var rank: Int
    @usableFromInline var dims: Fixed8<Int>
    @usableFromInline var s0: Fixed8<Int>
    @usableFromInline var s1: Fixed8<Int>
    @usableFromInline var s2: Fixed8<Int>

    /// From merged axes: `dims[0..<rank]` and whether each operand varies along each axis (bit k of
    /// `varies[d]` for operand k).
    @inlinable @inline(__always)
    init(rank: Int, dims: Fixed8<Int>, varies: Fixed8<Int>) {
        self.rank = rank
        self.dims = dims
        s0 = Fixed8(repeating: 0); s1 = Fixed8(repeating: 0); s2 = Fixed8(repeating: 0)
        var t0 = 1, t1 = 1, t2 = 1
        var i = rank - 1
        while i >= 0 {
            let v = varies[i]
            if v & 1 != 0 { s0[i] = t0; t0 &*= dims[i] }
            if v & 2 != 0 { s1[i] = t1; t1 &*= dims[i] }
            if v & 4 != 0 { s2[i] = t2; t2 &*= dims[i] }
            i -= 1
        }
    }
}
