import InLoopKernelsC

// MARK: family fuse (recurrent cells)
/// The gate arithmetic of one LSTM or GRU time step in one step (inference plans: `Ops/RecurrentOps.swift`
/// emits these for cells with the default activations and no clip, peepholes or input_forget). Each
/// value is the expression the unrolled steps compute, in the same order, with the same sigmoid and
/// tanh (`Activation.apply` under `numerics`, which the activation kernels agree with bit for bit), so
/// the fused plan gives the unfused plan's bits. Float under the inference numerics (Cephes tanh and
/// sigmoid) runs the C kernels (`ilk_lstm_state`, `ilk_lstm_output`, `ilk_gru_cell`: whole registers
/// at the CPU's width, the same operations lane by lane); the loops here are the definition, and run
/// for Double and the differentiable numerics.
enum RecurrentKernels {
    /// Whether the C kernels compute `numerics`' gates (Cephes tanh and sigmoid).
    @inlinable @inline(__always)
    static func cKernels(_ numerics: Numerics) -> Bool { numerics.tanh == .cephes && numerics.exp == .cephes }

    /// y[j] = tanh(x[j]) for j < count, the Cephes/libm choice made once.
    @inlinable @inline(__always)
    static func tanh<T: Real>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ count: Int, _ numerics: Numerics) {
        Kernels.activate(.tanh, x, into: y, count: count, numerics: numerics)
    }

    /// c[r, j] = σ(z[r, 2h + j])·c0[r, j] + σ(z[r, j])·tanh(z[r, 3h + j]).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func lstmState<T: Real>(z: UnsafePointer<T>, c0: UnsafePointer<T>, c: UnsafeMutablePointer<T>,
                                   rows: Int, hidden h: Int, numerics: Numerics) {
        if T.self == Float.self, cKernels(numerics) {
            ilk_lstm_state(z.asFloat, c0.asFloat, c.asFloat, Int64(rows), Int64(h))
            return
        }
        for r in 0..<rows {
            let zr = z + r * 4 * h, cp = c0 + r * h, cr = c + r * h
            tanh(zr + 3 * h, cr, h, numerics)                       // the candidate, in c's row
            for j in 0..<h {
                cr[j] = numerics.sigmoid(zr[2 * h + j]) * cp[j] + numerics.sigmoid(zr[j]) * cr[j]
            }
        }
    }

    /// h[r, j] = σ(z[r, h + j])·tanh(c[r, j]).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func lstmOutput<T: Real>(z: UnsafePointer<T>, c: UnsafePointer<T>, h out: UnsafeMutablePointer<T>,
                                    rows: Int, hidden h: Int, numerics: Numerics) {
        if T.self == Float.self, cKernels(numerics) {
            ilk_lstm_output(z.asFloat, c.asFloat, out.asFloat, Int64(rows), Int64(h))
            return
        }
        tanh(c, out, rows * h, numerics)
        for r in 0..<rows {
            let zr = z + r * 4 * h, hr = out + r * h
            for j in 0..<h { hr[j] = numerics.sigmoid(zr[h + j]) * hr[j] }
        }
    }

    /// z, r = σ(g + q) (blocks 0 and 1), n = tanh(g_h + r·q_h), h = n + z·(h0 − n).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inlinable
    static func gruCell<T: Real>(g: UnsafePointer<T>, q: UnsafePointer<T>, h0: UnsafePointer<T>, h out: UnsafeMutablePointer<T>,
                                 rows: Int, hidden h: Int, numerics: Numerics) {
        if T.self == Float.self, cKernels(numerics) {
            ilk_gru_cell(g.asFloat, q.asFloat, h0.asFloat, out.asFloat, Int64(rows), Int64(h))
            return
        }
        for r in 0..<rows {
            let gr = g + r * 3 * h, qr = q + r * 3 * h, hp = h0 + r * h, hr = out + r * h
            for j in 0..<h {                                        // n's argument, in h's row
                hr[j] = gr[2 * h + j] + numerics.sigmoid(gr[h + j] + qr[h + j]) * qr[2 * h + j]
            }
            tanh(UnsafePointer(hr), hr, h, numerics)
            for j in 0..<h {
                let n = hr[j]
                hr[j] = n + numerics.sigmoid(gr[j] + qr[j]) * (hp[j] - n)
            }
        }
    }
}
