/// The kernels a plan's steps call, per scalar type: the `Real` types (Float, Double). They share the
/// generic code; where `Numerics.inference` must reproduce the float32 inference engines bit for bit,
/// Float calls their kernels (`Kernels.dense`: the batch-1 SIMD path, GEMV/GEMM).
public typealias EngineScalar = Real

extension Real {
    /// GEMM with β = 0, then the bias, then the activation: the training engines' order (the bias and
    /// the activation in one pass over y, per element the same operations: `Kernels.biasActivate`,
    /// in C for Float).
    @inlinable
    static func genericDense(x: UnsafePointer<Self>, rows n: Int, inCols k: Int, w: UnsafePointer<Self>, b: UnsafePointer<Self>?,
                             outCols m: Int, activation: Activation, y: UnsafeMutablePointer<Self>) {
        Self.gemm(transA: false, transB: true, m: n, n: m, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: 0, c: y, ldc: m)
        if let b {
            Kernels.biasActivate(activation, y, rows: n, cols: m, bias: b, numerics: .differentiable)
        } else if activation != .identity {
            Kernels.activate(activation, UnsafePointer(y), into: y, count: n * m, numerics: .differentiable)
        }
    }

    /// y = (x − mean) / std per column, or x · std + mean.
    @inlinable
    static func normalizeStep(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, rows: Int, cols: Int,
                              mean: UnsafePointer<Self>, std: UnsafePointer<Self>, inverse: Bool) {
        if inverse {
            for r in 0..<rows { let s = x + r * cols, d = y + r * cols; for c in 0..<cols { d[c] = s[c] * std[c] + mean[c] } }
        } else {
            for r in 0..<rows { let s = x + r * cols, d = y + r * cols; for c in 0..<cols { d[c] = (s[c] - mean[c]) / std[c] } }
        }
    }

    @inlinable
    static func activationStep(_ act: Activation, _ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int,
                               numerics: Numerics) {
        Kernels.activate(act, x, into: y, count: count, numerics: numerics)
    }

    @inlinable
    static func addStep(_ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) {
        for i in 0..<count { y[i] = a[i] + b[i] }
    }
}

extension Float {
    @inlinable
    public static func denseStep(x: UnsafePointer<Float>, rows n: Int, inCols k: Int, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                                 outCols m: Int, activation: Activation, y: UnsafeMutablePointer<Float>, numerics: Numerics) {
        if numerics == .inference {
            Kernels.dense(x: x, batch: n, inFeatures: k, weight: w, bias: b, outFeatures: m, activation: activation, y: y)
        } else {
            genericDense(x: x, rows: n, inCols: k, w: w, b: b, outCols: m, activation: activation, y: y)
        }
    }

    @inlinable
    public static func packedDenseStep(x: UnsafePointer<Float>, rows n: Int, inCols k: Int, w: UnsafePointer<Float>,
                                       packed: UnsafePointer<Float>, b: UnsafePointer<Float>?, outCols m: Int,
                                       activation: Activation, y: UnsafeMutablePointer<Float>) {
        if n >= 2, Kernels.packedDense(packed, x: x, bias: b, y, rows: n, outCols: m, inCols: k, activation: activation) { return }
        Kernels.dense(x: x, batch: n, inFeatures: k, weight: w, bias: b, outFeatures: m, activation: activation, y: y)
    }

}

extension Double {
    /// Double has one variant (Cephes tanh and the SIMD batch-1 path are float32 algorithms).
    @inlinable
    public static func denseStep(x: UnsafePointer<Double>, rows n: Int, inCols k: Int, w: UnsafePointer<Double>, b: UnsafePointer<Double>?,
                                 outCols m: Int, activation: Activation, y: UnsafeMutablePointer<Double>, numerics: Numerics) {
        genericDense(x: x, rows: n, inCols: k, w: w, b: b, outCols: m, activation: activation, y: y)
    }

    @inlinable
    public static func packedDenseStep(x: UnsafePointer<Double>, rows n: Int, inCols k: Int, w: UnsafePointer<Double>,
                                       packed: UnsafePointer<Double>, b: UnsafePointer<Double>?, outCols m: Int,
                                       activation: Activation, y: UnsafeMutablePointer<Double>) {
        genericDense(x: x, rows: n, inCols: k, w: w, b: b, outCols: m, activation: activation, y: y)
    }

}
