// Run-time CPU dispatch of the float32 elementwise kernels written in C (Sources/InLoopKernelsC): the
// level they run at, and the Swift entry points the generic kernels call for Float.
//
// Public API:
//   enum CPULevel                     baseline, avx2, avx512
//   Kernels.cpuLevel                  the level the kernels run at (CPU check, lowered by INLOOP_CPU)
//   Kernels.supportedCPULevel         the highest level this CPU and OS support
//   Kernels.setCPULevel(_:)           sets the level (clamped to the supported one), for tests/benchmarks
// Internal: the Float branches of Kernels.activate/biasActivate/activationBackward,
// Conv.storeBiasActivate and Pool.max (2×2, stride 2) call the c* functions below.
//
// Every level gives the same bits as the Swift scalar definitions (Activation.apply/derivative).
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
    /// All levels give the same results, so this changes speed only (tests and benchmarks use it).
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
