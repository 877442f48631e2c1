// Normalisation kernels of the one engine, generic over Float and Double: BatchNormalization in its
// inference form (a per-channel affine map whose coefficients were folded at compile time) and with
// trainable scale and bias, and the adjoint and tangent of layer normalisation (its forward is
// `TensorOps.layerNorm`).
//
// Layouts: x is outer × channels × spatial (NCHW...: outer = N, spatial = H·W·...); layer
// normalisation works on rows × cols. Per-channel numbers folded at compile time (affine
// coefficients, BN statistics) live in the plan's integer table as Double bit patterns
// (`NormKernels.bits`), 2·channels of them: [first quantity per channel..., second per channel...].
//
// Public API (enum NormKernels):
//   bits(_:) / real(_:_:)                              Double ⇄ integer-table entry
//   channelAffine(x:outer:channels:spatial:table:at:shift:accumulate:y:)
//       y (+)= x·s[c] (+ t[c] when shift); table holds [s..., t...]
//   batchNorm(x:scale:bias:outer:channels:spatial:table:at:y:)
//       y = (x − mean[c])·inv[c]·scale[c] + bias[c]; table holds [mean..., inv...]
//   batchNormInputGradient(g:scale:outer:channels:spatial:table:at:accumulate:out:)   out (+)= g·scale[c]·inv[c]
//   batchNormScaleGradient(gy:x:outer:channels:spatial:table:at:accumulate:gs:)       gs[c] (+)= Σ gy·(x − mean[c])·inv[c]
//   channelSums(gy:outer:channels:spatial:accumulate:g:)                              g[c] (+)= Σ gy over outer and spatial
//   layerNormLinear(x:scale:g:rows:cols:epsilon:tangent:accumulate:out:)
//       the Jacobian of y = LN(x)·scale with respect to x: reverse out (+)= Jᵀ·g, tangent out = J·g
//   layerNormScaleGradient(x:gy:rows:cols:epsilon:accumulate:gs:)                    gs[c] (+)= Σ_rows gy·x̂
//
// Preconditions (validated at compile time): pointers hold the counts implied by the sizes; outputs
// do not overlap inputs, except that channelAffine and batchNorm may write y over x.

public enum NormKernels {
    /// A Double as an entry of the plan's integer table, and back.
    public static func bits(_ d: Double) -> Int { Int(truncatingIfNeeded: d.bitPattern) }

    @inlinable @inline(__always)
    public static func real<T: Real>(_ table: UnsafeBufferPointer<Int>, _ i: Int) -> T {
        T(Double(bitPattern: UInt64(truncatingIfNeeded: table[i])))
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func channelAffine<T: Real>(x: UnsafePointer<T>, outer: Int, channels: Int, spatial: Int,
                                              table: UnsafeBufferPointer<Int>, at base: Int, shift: Bool, accumulate: Bool,
                                              y: UnsafeMutablePointer<T>) {
        for c in 0..<channels {
            let s: T = real(table, base + c), t: T = shift ? real(table, base + channels + c) : 0
            for o in 0..<outer {
                let off = (o * channels + c) * spatial
                let xr = x + off, yr = y + off
                if accumulate {
                    for i in 0..<spatial { yr[i] += xr[i] * s + t }
                } else if shift {
                    for i in 0..<spatial { yr[i] = xr[i] * s + t }
                } else {
                    for i in 0..<spatial { yr[i] = xr[i] * s }
                }
            }
        }
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func batchNorm<T: Real>(x: UnsafePointer<T>, scale: UnsafePointer<T>, bias: UnsafePointer<T>, outer: Int,
                                          channels: Int, spatial: Int, table: UnsafeBufferPointer<Int>, at base: Int,
                                          y: UnsafeMutablePointer<T>) {
        for c in 0..<channels {
            let mean: T = real(table, base + c), inv: T = real(table, base + channels + c)
            let sc = scale[c], b = bias[c]
            for o in 0..<outer {
                let off = (o * channels + c) * spatial
                let xr = x + off, yr = y + off
                for i in 0..<spatial { yr[i] = (xr[i] - mean) * inv * sc + b }
            }
        }
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func batchNormInputGradient<T: Real>(g: UnsafePointer<T>, scale: UnsafePointer<T>, outer: Int, channels: Int,
                                                       spatial: Int, table: UnsafeBufferPointer<Int>, at base: Int,
                                                       accumulate: Bool, out: UnsafeMutablePointer<T>) {
        for c in 0..<channels {
            let a = scale[c] * (real(table, base + channels + c) as T)
            for o in 0..<outer {
                let off = (o * channels + c) * spatial
                let gr = g + off, r = out + off
                if accumulate { for i in 0..<spatial { r[i] += gr[i] * a } } else { for i in 0..<spatial { r[i] = gr[i] * a } }
            }
        }
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func batchNormScaleGradient<T: Real>(gy: UnsafePointer<T>, x: UnsafePointer<T>, outer: Int, channels: Int,
                                                       spatial: Int, table: UnsafeBufferPointer<Int>, at base: Int,
                                                       accumulate: Bool, gs: UnsafeMutablePointer<T>) {
        for c in 0..<channels {
            let mean: T = real(table, base + c), inv: T = real(table, base + channels + c)
            var s: T = 0
            for o in 0..<outer {
                let off = (o * channels + c) * spatial
                for i in 0..<spatial { s += gy[off + i] * (x[off + i] - mean) }
            }
            if accumulate { gs[c] += s * inv } else { gs[c] = s * inv }
        }
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func channelSums<T: Real>(gy: UnsafePointer<T>, outer: Int, channels: Int, spatial: Int, accumulate: Bool,
                                            g: UnsafeMutablePointer<T>) {
        if !accumulate { g.update(repeating: 0, count: channels) }
        for o in 0..<outer {
            for c in 0..<channels {
                let row = gy + (o * channels + c) * spatial
                var s: T = 0
                for i in 0..<spatial { s += row[i] }
                g[c] += s
            }
        }
    }

    /// y = x̂·s + b with x̂ = (x − μ)·r per row; dy/dx = diag(s)·r·P with P = I − 11ᵀ/n − x̂x̂ᵀ/n
    /// (P symmetric): reverse out (+)= r·P·(s∘g), tangent out = s∘(r·P·g).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func layerNormLinear<T: Real>(x: UnsafePointer<T>, scale: UnsafePointer<T>, g: UnsafePointer<T>, rows: Int,
                                                cols: Int, epsilon: T, tangent: Bool, accumulate: Bool,
                                                out: UnsafeMutablePointer<T>) {
        guard cols > 0 else { return }
        let invN = 1 / T(cols)
        for r in 0..<rows {
            let xr = x + r * cols, gr = g + r * cols, o = out + r * cols
            let (mu, rstd) = TensorOps.layerNormStatistics(xr, cols: cols, epsilon: epsilon)
            var mg: T = 0, mgx: T = 0
            for j in 0..<cols {
                let v = tangent ? gr[j] : gr[j] * scale[j]
                mg += v
                mgx += v * (xr[j] - mu) * rstd
            }
            mg *= invN
            mgx *= invN
            for j in 0..<cols {
                let xh = (xr[j] - mu) * rstd
                let v = tangent ? gr[j] : gr[j] * scale[j]
                let p = rstd * (v - mg - xh * mgx)
                if tangent { o[j] = p * scale[j] } else if accumulate { o[j] += p } else { o[j] = p }
            }
        }
    }

    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func layerNormScaleGradient<T: Real>(x: UnsafePointer<T>, gy: UnsafePointer<T>, rows: Int, cols: Int,
                                                       epsilon: T, accumulate: Bool, gs: UnsafeMutablePointer<T>) {
        if !accumulate { gs.update(repeating: 0, count: cols) }
        guard cols > 0 else { return }
        for r in 0..<rows {
            let xr = x + r * cols, gr = gy + r * cols
            let (mu, rstd) = TensorOps.layerNormStatistics(xr, cols: cols, epsilon: epsilon)
            for j in 0..<cols { gs[j] += gr[j] * (xr[j] - mu) * rstd }
        }
    }
}
