// Run-time CPU dispatch of the float32 elementwise kernels written in C (Sources/InLoopKernelsC): the
// level they run at, and the Swift entry points the generic kernels call for Float.
//
// Public API:
//   enum CPULevel                     baseline, avx2, avx512
//   Kernels.cpuLevel                  the level the kernels run at (CPU check, lowered by INLOOP_CPU)
//   Kernels.supportedCPULevel         the highest level this CPU and OS support
//   Kernels.setCPULevel(_:)           sets the level (clamped to the supported one), for tests/benchmarks
// Internal: the Float branches of Kernels.activate/biasActivate/activationBackward,
// Conv.storeBiasActivate, Pool.max (2×2, stride 2) and OptimizerStep.apply (Adam) call the c*
// functions below.
//
// Every level gives the same bits as the Swift scalar definitions (Activation.apply/derivative),
// except the direct convolution (Conv.directForward, avx2/avx512 only: FMA sums; baseline keeps
// im2col + GEMM, which rounds differently).
import InLoopKernelsC

/// The instruction-set level of InLoop's own float32 kernels.
public enum CPULevel: Int, Sendable, CaseIterable, CustomStringConvertible {
    case baseline = 0, avx2 = 1, avx512 = 2
    public var description: String {
        switch self {
        case .baseline: return "baseline"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        }
    }
}

extension Kernels {
    /// The level the C kernels run at: the CPU's (cpuid + xgetbv), lowered by the environment
    /// variable INLOOP_CPU=baseline|avx2|avx512 when it is first read, or by `setCPULevel`.
    public static var cpuLevel: CPULevel { CPULevel(rawValue: Int(ilk_cpu_level())) ?? .baseline }

    /// The highest level this CPU and OS support.
    public static var supportedCPULevel: CPULevel { CPULevel(rawValue: Int(ilk_cpu_supported_level())) ?? .baseline }

    /// Sets the level for the whole process (never above `supportedCPULevel`); returns the level set.
    /// All levels give the same results (but for the direct convolution's rounding, see the file
    /// header), so this changes speed only (tests and benchmarks use it).
    @discardableResult
    public static func setCPULevel(_ level: CPULevel) -> CPULevel {
        CPULevel(rawValue: Int(ilk_set_cpu_level(Int32(level.rawValue)))) ?? .baseline
    }

    /// The C kernel of `act` under `numerics` and its parameter, or nil (then the Swift loops run).
    @inline(__always)
    static func cKernel(_ act: Activation, _ numerics: Numerics) -> (code: Int32, alpha: Float)? {
        switch act {
        case .identity: return (ILK_IDENTITY, 0)
        case .relu: return (numerics.reluNaN == .zero ? ILK_RELU : ILK_RELU_KEEP, 0)
        case .leakyRelu(let a): return (ILK_LEAKY_RELU, a)
        case .tanh: return numerics.tanh == .cephes ? (ILK_TANH, 0) : nil
        case .sigmoid: return numerics.exp == .cephes ? (ILK_SIGMOID, 0) : nil
        default: return nil
        }
    }

    /// y[i] = act(x[i]) in C when `act` has a C kernel (not identity); false: nothing done.
    @usableFromInline
    static func cActivate(_ act: Activation, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                          count: Int, numerics: Numerics) -> Bool {
        guard act != .identity, let (code, alpha) = cKernel(act, numerics) else { return false }
        ilk_activate(code, x, y, Int64(count), alpha)
        return true
    }

    /// y[r, c] = act(y[r, c] + b[c]) in C when `act` has a C kernel; false: nothing done.
    @usableFromInline
    static func cBiasActivateRows(_ act: Activation, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                  bias b: UnsafePointer<Float>, numerics: Numerics) -> Bool {
        guard let (code, alpha) = cKernel(act, numerics) else { return false }
        ilk_bias_activate_rows(code, y, Int64(rows), Int64(cols), b, alpha)
        return true
    }

    /// dst[i] = act(src[i] + bias) in C (inference numerics) when `act` has a C kernel; false: nothing done.
    @usableFromInline
    static func cBiasActivate(_ act: Activation, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                              count: Int, bias: Float) -> Bool {
        guard let (code, alpha) = cKernel(act, .inference) else { return false }
        ilk_bias_activate(code, src, dst, Int64(count), bias, alpha)
        return true
    }

    /// y[o] = dot(w + o·k, x) (+ b[o]) for o < m (w row-major m × k) in C, bit for bit `Kernels.dot` per
    /// row at every CPU level. y must not overlap w, x or b.
    @usableFromInline
    static func smallGEMV(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, bias b: UnsafePointer<Float>?,
                          _ y: UnsafeMutablePointer<Float>, rows m: Int, cols k: Int) {
        ilk_small_gemv(w, x, b, y, Int64(m), Int64(k))
    }

    /// Values of a [rows, cols] weight re-laid out by `packDenseWeights` (whole panels of 16 rows).
    static func packedDenseCount(rows m: Int, cols k: Int) throws(InLoopError) -> Int {
        try Limits.product((m + 15) / 16 * 16, k, "a packed dense weight")
    }

    /// The weight w [m, k] (row-major, PyTorch's [out, in]) as panels of 16 output rows for
    /// `packedDense`: `packedDenseCount` values.
    static func packDenseWeights(_ w: UnsafePointer<Float>, rows m: Int, cols k: Int, into out: UnsafeMutablePointer<Float>) {
        ilk_pack_dense_weights(w, Int64(m), Int64(k), out)
    }

    /// y = act(x · wᵀ + b) for `rows` rows on the packed weight, in C (FMA in the order of k: a row's
    /// result does not depend on the batch). false: this CPU level has no such kernel, nothing done.
    @usableFromInline
    static func packedDense(_ p: UnsafePointer<Float>, x: UnsafePointer<Float>, bias b: UnsafePointer<Float>?,
                            _ y: UnsafeMutablePointer<Float>, rows n: Int, outCols m: Int, inCols k: Int,
                            activation act: Activation) -> Bool {
        let c = cKernel(act, .inference)
        guard ilk_packed_gemm(p, x, b, y, Int64(n), Int64(m), Int64(k), c?.code ?? -1, c?.alpha ?? 0) != 0 else { return false }
        if c == nil { activate(act, y, count: n * m) }
        return true
    }

    /// C = op(A)·op(B) (+ C when accumulate), row-major, on the FMA kernel of `packedDense` (B copied
    /// into panels in a per-thread buffer): each element one FMA per term in the order of k, the same
    /// bits on every CPU with AVX2+FMA whatever OpenBLAS picks. false: not done (the baseline level,
    /// an empty product, no buffer); the caller runs sgemm.
    @usableFromInline
    static func fmaGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                        b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        ilk_gemm(transA ? 1 : 0, transB ? 1 : 0, Int64(m), Int64(n), Int64(k), a, Int64(lda), b, Int64(ldb),
                 accumulate ? 1 : 0, c, Int64(ldc)) != 0
    }

    /// out[i] (+)= d[i]·f'(z[i]) in C for relu, leaky relu and tanh; false: nothing done.
    @usableFromInline
    static func cActivationBackward(_ act: Activation, z: UnsafePointer<Float>, a: UnsafePointer<Float>,
                                    gradient d: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                                    accumulate: Bool, count: Int) -> Bool {
        let code: Int32, alpha: Float
        switch act {
        case .relu: (code, alpha) = (ILK_RELU, 0)
        case .leakyRelu(let s): (code, alpha) = (ILK_LEAKY_RELU, s)
        case .tanh: (code, alpha) = (ILK_TANH, 0)
        default: return false
        }
        ilk_activation_backward(code, z, a, d, out, Int64(count), accumulate ? 1 : 0, alpha)
        return true
    }
}

extension Kernels {
    /// One Adam/AdamW step over `count` values in C (one pass, the level's vector width), bit for bit
    /// `OptimizerStep.apply`'s loop. The four arrays must not overlap.
    @usableFromInline
    static func cAdam(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                      _ v: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, epsilon: Float,
                      stepSize: Float, bc2Sqrt: Float, learningRate: Float, weightDecay: Float, decoupled: Bool) {
        ilk_adam(p, g, m, v, Int64(count), beta1, beta2, epsilon, stepSize, bc2Sqrt, learningRate, weightDecay, decoupled ? 1 : 0)
    }
}

extension Pool {
    /// `max` for Float over plain 2×2 windows (`isPlain2x2`) without indices, in C.
    @usableFromInline
    static func cMaxPool2x2(_ x: UnsafePointer<Float>, planes: Int, geometry g: PoolGeometry,
                            _ y: UnsafeMutablePointer<Float>) {
        ilk_max_pool_2x2(x, y, Int64(planes), Int64(g.inH), Int64(g.inW), Int64(g.outH), Int64(g.outW))
    }
}

extension UnsafePointer {
    /// The same address as a Float pointer (for `T == Float` branches of generic kernels).
    @inlinable @inline(__always)
    var asFloat: UnsafePointer<Float> { UnsafeRawPointer(self).assumingMemoryBound(to: Float.self) }
}

extension UnsafeMutablePointer {
    @inlinable @inline(__always)
    var asFloat: UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(self).assumingMemoryBound(to: Float.self) }
}
