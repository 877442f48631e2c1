// Matrix products over strided stacks: ONNX MatMul (NumPy broadcasting of the stack axes, 1-D
// operands promoted) and Gemm (transposes, alpha, beta, C broadcast to [M, N]), with their adjoints.
// Every product is a call of `Real.gemm` (sgemm/dgemm): one per stack element, or one in all when the
// stack axes fold into the rows (B without stack axes: the common `x[N, k] · W[k, m]`); a stack of
// one-row products calls `Real.gemv` per element.
//
// Public API:
//   MatMulGeometry                     the shape of one product, read from a plan's integer table at
//                                      batch n (layout: `MatMulGeometry.encode`)
//   MatMulKernels.forward(a:b:c:y:geometry:alpha:beta:accumulate:)
//       y_e (+)= alpha·op(A_e)·op(B_e) [+ beta·C] for every stack element e
//   MatMulKernels.gradientA(gy:b:ga:geometry:alpha:accumulate:)    ga (+)= d/dA (summed over broadcast axes)
//   MatMulKernels.gradientB(a:gy:gb:geometry:alpha:accumulate:)    gb (+)= d/dB (summed over broadcast axes)
//   MatMulKernels.broadcastC(_:geometry:beta:into:)                y = beta·C broadcast to [M, N]
//   MatMulKernels.gradientC(gy:gc:geometry:beta:accumulate:)       gc (+)= beta·Σ gy over C's broadcast axes
//
// Preconditions (validated when the plan is compiled): the geometry describes the operands' sizes;
// outputs do not overlap inputs.

/// The geometry of a (stacked) matrix product at batch n, read in place from the plan's integer
/// table: sizes and strides are extents (perBatch·n + fixed), so one plan serves every batch size.
///
/// Layout from `base`: [stackRank, rows (2), inner (2), cols (2), transA, transB, cRowStride (2),
/// cColStride (2)], then per stack axis [dim (2), strideA (2), strideB (2), strideY (2)]; each (2) is
/// an extent's (perBatch, fixed).
public struct MatMulGeometry {
    @usableFromInline let ints: UnsafeBufferPointer<Int>
    @usableFromInline let base: Int
    @usableFromInline let n: Int

    @inlinable
    public init(_ ints: UnsafeBufferPointer<Int>, at base: Int, batch n: Int) {
        self.ints = ints
        self.base = base
        self.n = n
    }

    @usableFromInline static let header = 13
    @usableFromInline static let perAxis = 8

    @inlinable func extent(_ i: Int) -> Int { ints[base + i] &* n &+ ints[base + i + 1] }

    @inlinable public var stackRank: Int { ints[base] }
    /// op(A) is rows × inner, op(B) is inner × cols, Y_e is rows × cols.
    @inlinable public var rows: Int { extent(1) }
    @inlinable public var inner: Int { extent(3) }
    @inlinable public var cols: Int { extent(5) }
    @inlinable public var transA: Bool { ints[base + 7] != 0 }
    @inlinable public var transB: Bool { ints[base + 8] != 0 }
    /// Element strides of C along the rows and columns of Y (0 where C is broadcast).
    @inlinable public var cRowStride: Int { extent(9) }
    @inlinable public var cColStride: Int { extent(11) }

    @inlinable func axis(_ i: Int, _ field: Int) -> Int { extent(MatMulGeometry.header + i * MatMulGeometry.perAxis + 2 * field) }

    /// Number of matrix products.
    @inlinable public var stackCount: Int {
        var c = 1
        for i in 0..<stackRank { c &*= axis(i, 0) }
        return c
    }

    /// Distinct A blocks (or B blocks): fewer than `stackCount` when the operand is broadcast.
    @inlinable public func blocks(operand: Int) -> Int {
        var c = 1
        for i in 0..<stackRank where axis(i, 1 + operand) != 0 { c &*= axis(i, 0) }
        return c
    }

    /// Element offsets of A, B and Y for stack element e.
    @inlinable public func offsets(_ e: Int) -> (a: Int, b: Int, y: Int) {
        var rest = e, oa = 0, ob = 0, oy = 0
        var i = stackRank - 1
        while i >= 0 {
            let d = axis(i, 0)
            let idx = rest % d
            rest /= d
            oa &+= idx &* axis(i, 1); ob &+= idx &* axis(i, 2); oy &+= idx &* axis(i, 3)
            i -= 1
        }
        return (oa, ob, oy)
    }

    /// Row lengths of A and B as stored.
    @inlinable public var lda: Int { Swift.max(1, transA ? rows : inner) }
    @inlinable public var ldb: Int { Swift.max(1, transB ? inner : cols) }

    /// Sizes BLAS takes (32-bit).
    @inlinable var fitsBLAS: Bool {
        let limit = Int(Int32.max)
        return rows <= limit && inner <= limit && cols <= limit && lda <= limit && ldb <= limit
    }

    /// The integer table entries of a geometry (compile time). Extents are (perBatch, fixed).
    public static func encode(rows: Engine.Extent, inner: Engine.Extent, cols: Engine.Extent, transA: Bool, transB: Bool,
                              cRowStride: Engine.Extent = Engine.Extent(), cColStride: Engine.Extent = Engine.Extent(),
                              stack: [(dim: Engine.Extent, a: Engine.Extent, b: Engine.Extent, y: Engine.Extent)]) -> [Int] {
        var out = [stack.count]
        for e in [rows, inner, cols] { out += [e.perBatch, e.fixed] }
        out += [transA ? 1 : 0, transB ? 1 : 0]
        for e in [cRowStride, cColStride] { out += [e.perBatch, e.fixed] }
        for s in stack { for e in [s.dim, s.a, s.b, s.y] { out += [e.perBatch, e.fixed] } }
        return out
    }
}

public enum MatMulKernels {
    /// y_e (+)= alpha·op(A_e)·op(B_e) for every stack element; with C (no stack axes, Gemm), y = beta·C
    /// broadcast first and the product added to it. `rowByRow`: a product without stack axes runs one
    /// row of op(A) at a time, so that each row's result does not depend on how many rows there are
    /// (the reproducible mode; rows of a stored Aᵀ are not split).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(a: UnsafePointer<T>, b: UnsafePointer<T>, c: UnsafePointer<T>?, y: UnsafeMutablePointer<T>,
                                        geometry g: MatMulGeometry, alpha: T, beta: T, accumulate: Bool, rowByRow: Bool = false) {
        let m = g.rows, k = g.inner, cols = g.cols, count = g.stackCount
        guard m > 0, cols > 0, count > 0 else { return }
        var betaY: T = accumulate ? 1 : 0
        if let c {
            broadcastC(c, geometry: g, beta: beta, into: y, accumulate: accumulate)
            betaY = 1
        }
        guard g.fitsBLAS else { y.update(repeating: .nan, count: m &* cols &* count); return }
        if k == 0 {
            if betaY == 0 { y.update(repeating: 0, count: m &* cols &* count) }
            return
        }
        if rowByRow && g.stackRank == 0 && !g.transA {
            for r in 0..<m {
                T.gemm(transA: false, transB: g.transB, m: 1, n: cols, k: k, alpha: alpha, a: a + r &* g.lda, lda: g.lda,
                       b: b, ldb: g.ldb, beta: betaY, c: y + r &* cols, ldc: cols)
            }
            return
        }
        if m == 1 && count > 1 {
            // a stack of one-row products (an ensemble's members at batch 1, one query per head): a GEMV
            // each; sgemm would pack every B block for its single row
            for e in 0..<count {
                let o = g.offsets(e)
                // (zeroed first: some BLAS scale y by beta = 0, which keeps a NaN left from a former call)
                if betaY == 0 { (y + o.y).update(repeating: 0, count: cols) }
                // y (1 × cols) = A_e (1 × k) · op(B_e): B stored [k, cols] is transposed, [cols, k] not
                T.gemv(trans: !g.transB, rows: g.transB ? cols : k, cols: g.transB ? k : cols, alpha: alpha, a: b + o.b,
                       lda: g.ldb, x: a + o.a, beta: betaY, y: y + o.y)
            }
            return
        }
        for e in 0..<count {
            let o = g.offsets(e)
            T.gemm(transA: g.transA, transB: g.transB, m: m, n: cols, k: k, alpha: alpha, a: a + o.a, lda: g.lda,
                   b: b + o.b, ldb: g.ldb, beta: betaY, c: y + o.y, ldc: cols)
        }
    }

    /// ga (+)= d(alpha·op(A)·op(B))/dA applied to gy, summed over the stack elements sharing an A block.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func gradientA<T: Real>(gy: UnsafePointer<T>, b: UnsafePointer<T>, ga: UnsafeMutablePointer<T>,
                                          geometry g: MatMulGeometry, alpha: T, accumulate: Bool) {
        let m = g.rows, k = g.inner, cols = g.cols, count = g.stackCount
        let blocks = g.blocks(operand: 0)
        var beta: T = accumulate ? 1 : 0
        if (blocks != count || cols == 0 || !g.fitsBLAS) && !accumulate {
            ga.update(repeating: 0, count: m &* k &* blocks)
            beta = 1
        }
        guard m > 0, k > 0, cols > 0, g.fitsBLAS else { return }
        for e in 0..<count {
            let o = g.offsets(e)
            if g.transA {
                // A stored [k, m]: dA = alpha·op(B)·gyᵀ
                T.gemm(transA: g.transB, transB: true, m: k, n: m, k: cols, alpha: alpha, a: b + o.b, lda: g.ldb,
                       b: gy + o.y, ldb: cols, beta: beta, c: ga + o.a, ldc: Swift.max(1, m))
            } else {
                // dA = alpha·gy·op(B)ᵀ
                T.gemm(transA: false, transB: !g.transB, m: m, n: k, k: cols, alpha: alpha, a: gy + o.y, lda: cols,
                       b: b + o.b, ldb: g.ldb, beta: beta, c: ga + o.a, ldc: Swift.max(1, k))
            }
        }
    }

    /// gb (+)= d(alpha·op(A)·op(B))/dB applied to gy, summed over the stack elements sharing a B block.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func gradientB<T: Real>(a: UnsafePointer<T>, gy: UnsafePointer<T>, gb: UnsafeMutablePointer<T>,
                                          geometry g: MatMulGeometry, alpha: T, accumulate: Bool) {
        let m = g.rows, k = g.inner, cols = g.cols, count = g.stackCount
        let blocks = g.blocks(operand: 1)
        var beta: T = accumulate ? 1 : 0
        if (blocks != count || m == 0 || !g.fitsBLAS) && !accumulate {
            gb.update(repeating: 0, count: k &* cols &* blocks)
            beta = 1
        }
        guard m > 0, k > 0, cols > 0, g.fitsBLAS else { return }
        for e in 0..<count {
            let o = g.offsets(e)
            if g.transB {
                // B stored [cols, k]: dB = alpha·gyᵀ·op(A)
                T.gemm(transA: true, transB: g.transA, m: cols, n: k, k: m, alpha: alpha, a: gy + o.y, lda: cols,
                       b: a + o.a, ldb: g.lda, beta: beta, c: gb + o.b, ldc: Swift.max(1, k))
            } else {
                // dB = alpha·op(A)ᵀ·gy
                T.gemm(transA: !g.transA, transB: false, m: k, n: cols, k: m, alpha: alpha, a: a + o.a, lda: g.lda,
                       b: gy + o.y, ldb: cols, beta: beta, c: gb + o.b, ldc: cols)
            }
        }
    }

    /// y (+)= beta·C broadcast to rows × cols (C's strides in the geometry; no stack axes).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func broadcastC<T: Real>(_ c: UnsafePointer<T>, geometry g: MatMulGeometry, beta: T,
                                           into y: UnsafeMutablePointer<T>, accumulate: Bool) {
        let m = g.rows, cols = g.cols, rs = g.cRowStride, cs = g.cColStride
        for r in 0..<m {
            let row = y + r &* cols, cr = c + r &* rs
            if accumulate {
                for j in 0..<cols { row[j] += beta * cr[j &* cs] }
            } else {
                for j in 0..<cols { row[j] = beta * cr[j &* cs] }
            }
        }
    }

    /// gc (+)= beta·gy summed over the axes C is broadcast along.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func gradientC<T: Real>(gy: UnsafePointer<T>, gc: UnsafeMutablePointer<T>, geometry g: MatMulGeometry,
                                          beta: T, accumulate: Bool) {
        let m = g.rows, cols = g.cols, rs = g.cRowStride, cs = g.cColStride
        if !accumulate { gc.update(repeating: 0, count: (rs != 0 ? m : 1) &* (cs != 0 ? cols : 1)) }
        for r in 0..<m {
            let row = gy + r &* cols, cr = gc + r &* rs
            for j in 0..<cols { cr[j &* cs] += beta * row[j] }
        }
    }
}
