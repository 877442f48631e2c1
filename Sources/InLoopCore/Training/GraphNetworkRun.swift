#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Running a `GraphPlan`: forward (values kept), reverse mode and forward mode, step by step.
/// Everything is generic over `T`; matrix products go to `T.gemm`.
extension GraphPlan {
    // MARK: Memory

    func ensureGradients() throws(InLoopError) {
        guard !gradsReady else { return }
        for s in 0..<storages.count {
            switch storages[s].kind {
            case .input, .runtime:
                guard storages[s].onInput || storages[s].onParameter, grads[s] == nil else { continue }
                // Aliases share the storage index, so one buffer per storage is enough.
                let b = try Buffer<T>(count: storages[s].count)
                owned.append(b)
                grads[s] = b.base
            case .parameter, .constant: break
            }
        }
        gradsReady = true
    }

    func ensureTangents() throws(InLoopError) {
        guard !tangentsReady else { return }
        for s in 0..<storages.count where storages[s].onInput {
            if case .runtime = storages[s].kind {
                let b = try Buffer<T>(count: storages[s].count)
                owned.append(b)
                tangents[s] = b.base
            }
        }
        // An output that does not depend on the input (a constant graph) has the tangent 0.
        if tangents[outputStorage] == nil {
            let b = try Buffer<T>(count: storages[outputStorage].count)
            owned.append(b)
            tangents[outputStorage] = b.base
        }
        tangentsReady = true
    }

    // MARK: Forward

    func runForward(_ x: UnsafePointer<T>, parameters: UnsafeMutablePointer<T>) {
        values[inputStorage] = UnsafeMutablePointer(mutating: x)
        for step in steps { forwardStep(step) }
    }

    // MARK: Reverse

    func runBackward(_ dy: UnsafePointer<T>, parameterGradients: Bool, gradients: Buffer<T>,
                     inputGradient: UnsafeMutablePointer<T>?) throws(InLoopError) {
        try ensureGradients()
        let want = wanted(parameters: parameterGradients, input: inputGradient != nil)
        for s in 0..<storages.count where want[s] {
            if case .parameter = storages[s].kind { continue }
            if let g = grads[s] { g.update(repeating: 0, count: storages[s].count) }
        }
        if parameterGradients { gradients.zero() }
        let out = outputStorage
        if want[out], let g = grads[out] {
            for i in 0..<storages[out].count { g[i] += dy[i] }
        }
        for step in steps.reversed() where want[step.output] {
            backwardStep(step, want)
        }
        if let inputGradient {
            if let g = grads[inputStorage] {
                inputGradient.update(from: g, count: storages[inputStorage].count)
            } else {
                inputGradient.update(repeating: 0, count: storages[inputStorage].count)
            }
        }
    }

    /// Storages whose gradient a backward computes: those depending on a parameter (when parameter
    /// gradients are asked for) or on the input (when the input gradient is); cached per combination.
    func wanted(parameters: Bool, input: Bool) -> [Bool] {
        let key = (parameters ? 1 : 0) + (input ? 2 : 0)
        if let w = wantCache[key] { return w }
        var want = [Bool](repeating: false, count: storages.count)
        for s in 0..<storages.count {
            want[s] = (parameters && storages[s].onParameter) || (input && storages[s].onInput)
            if case .constant = storages[s].kind { want[s] = false }
        }
        wantCache[key] = want
        return want
    }

    // MARK: Tangent

    func runTangent(_ dx: UnsafePointer<T>) throws(InLoopError) -> UnsafePointer<T> {
        try ensureTangents()
        tangents[inputStorage] = UnsafeMutablePointer(mutating: dx)
        for step in steps where storages[step.output].onInput { tangentStep(step) }
        guard let out = tangents[outputStorage] else { throw InLoopError(.internal, "tangent of the output was not set up") }
        return UnsafePointer(out)
    }

    // MARK: Steps

    @inline(__always) func v(_ s: Int) -> UnsafeMutablePointer<T> { values[s] }

    func forwardStep(_ st: GStep) {
        let y = values[st.output]
        let count = storages[st.output].count
        switch st.kind {
        case .gemm(let g):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            var beta: T = 0
            if st.inputs[2] >= 0 {
                GKernels.broadcastC(v(st.inputs[2]), g, scale: T(g.beta), into: y)
                beta = 1
            }
            T.gemm(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, alpha: T(g.alpha),
                   a: a, lda: g.transA ? g.m : g.k, b: b, ldb: g.transB ? g.k : g.n, beta: beta, c: y, ldc: g.n)
        case .matMul(let g):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            for e in 0..<g.aOffsets.count {
                T.gemm(transA: false, transB: false, m: g.m, n: g.n, k: g.k, alpha: 1, a: a + g.aOffsets[e], lda: g.k,
                       b: b + g.bOffsets[e], ldb: g.n, beta: 0, c: y + g.yOffsets[e], ldc: g.n)
            }
        case .binary(let op, _, _, let aShape, let bShape, let yShape):
            TensorOps.broadcastBinary(op, a: v(st.inputs[0]), aShape: aShape, b: v(st.inputs[1]), bShape: bShape,
                                      y: y, yShape: yShape, numerics: .differentiable)
        case .activation(let act):
            Kernels.activate(act, v(st.inputs[0]), into: y, count: count, numerics: .differentiable)
        case .unary(let f):
            UnaryFunction.apply(f, x: v(st.inputs[0]), y: y, count: count, numerics: .differentiable)
        case .transpose(let m):
            GKernels.gather(v(st.inputs[0]), m, y)
        case .concat(let outer, let inner, let sizes):
            let total = sizes.reduce(0, +) * inner
            var start = 0
            for (i, size) in sizes.enumerated() {
                let run = size * inner, x = values[st.inputs[i]]
                for o in 0..<outer { (y + o * total + start).update(from: x + o * run, count: run) }
                start += run
            }
        case .softmax(let outer, let length, let inner, let log):
            if log {
                TensorOps.logSoftmax(x: v(st.inputs[0]), outer: outer, axisLength: length, inner: inner, y: y, numerics: .differentiable)
            } else {
                TensorOps.softmax(x: v(st.inputs[0]), outer: outer, axisLength: length, inner: inner, y: y)
            }
        case .conv(let g, let n):
            Conv.forwardPerSample(x: v(st.inputs[0]), batch: n, geometry: g, weight: v(st.inputs[1]),
                                  bias: st.inputs[2] >= 0 ? UnsafePointer(v(st.inputs[2])) : nil, y: y, workspace: workspace!.base)
        case .maxPool(let g, let planes, let idx):
            Pool.max(x: v(st.inputs[0]), planes: planes, geometry: g, y: y, indices: indexStores[idx].base)
        case .averagePool(let g, let planes, let includePad):
            Pool.average(x: v(st.inputs[0]), planes: planes, geometry: g, countIncludePad: includePad, y: y)
        case .globalAverage(let planes, let spatial):
            Pool.globalAverage(x: v(st.inputs[0]), planes: planes, spatial: spatial, y: y)
        case .globalMax(let planes, let spatial, let idx):
            Pool.globalMax(x: v(st.inputs[0]), planes: planes, spatial: spatial, y: y, indices: indexStores[idx].base)
        case .batchNorm(let n, let c, let spatial, let eps):
            let x = v(st.inputs[0]), sc = v(st.inputs[1]), b = v(st.inputs[2]), mean = v(st.inputs[3]), vr = v(st.inputs[4])
            for ch in 0..<c {
                let inv = 1 / T.sqrt(vr[ch] + T(eps))
                let a = sc[ch] * inv, shift = b[ch] - mean[ch] * a
                for s in 0..<n {
                    let base = (s * c + ch) * spatial
                    for i in 0..<spatial { y[base + i] = x[base + i] * a + shift }
                }
            }
        case .layerNorm(let rows, let cols, let eps, let scaleMap, let biasMap, let stats):
            let x = v(st.inputs[0]), sc = v(st.inputs[1])
            let bias: UnsafeMutablePointer<T>? = st.inputs[2] >= 0 ? v(st.inputs[2]) : nil
            let stat = statBuffers[stats].base
            let invN = 1 / T(cols)
            for r in 0..<rows {
                let xr = x + r * cols, yr = y + r * cols
                var mu: T = 0
                for j in 0..<cols { mu += xr[j] }
                mu *= invN
                var vsum: T = 0
                for j in 0..<cols { let d = xr[j] - mu; vsum += d * d }
                let rstd = 1 / T.sqrt(vsum * invN + T(eps))
                stat[2 * r] = mu
                stat[2 * r + 1] = rstd
                for j in 0..<cols {
                    var o = (xr[j] - mu) * rstd * sc[scaleMap[j]]
                    if let bias, let bm = biasMap { o += bias[bm[j]] }
                    yr[j] = o
                }
            }
        }
    }

    /// Accumulates into the gradients of the wanted inputs of `st`.
    func backwardStep(_ st: GStep, _ want: [Bool]) {
        guard let gy = grads[st.output] else { return }
        let count = storages[st.output].count
        func g(_ i: Int) -> UnsafeMutablePointer<T>? {
            let s = st.inputs[i]
            return s >= 0 && want[s] ? grads[s] : nil
        }
        switch st.kind {
        case .gemm(let info):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            let lda = info.transA ? info.m : info.k, ldb = info.transB ? info.k : info.n
            let alpha = T(info.alpha)
            let (m, n, k) = (info.m, info.n, info.k)
            if let ga = g(0) {
                if !info.transA {
                    T.gemm(transA: false, transB: !info.transB, m: m, n: k, k: n, alpha: alpha, a: gy, lda: n,
                           b: b, ldb: ldb, beta: 1, c: ga, ldc: k)
                } else {
                    T.gemm(transA: info.transB, transB: true, m: k, n: m, k: n, alpha: alpha, a: b, lda: ldb,
                           b: gy, ldb: n, beta: 1, c: ga, ldc: m)
                }
            }
            if let gb = g(1) {
                if !info.transB {
                    T.gemm(transA: !info.transA, transB: false, m: k, n: n, k: m, alpha: alpha, a: a, lda: lda,
                           b: gy, ldb: n, beta: 1, c: gb, ldc: n)
                } else {
                    T.gemm(transA: true, transB: info.transA, m: n, n: k, k: m, alpha: alpha, a: gy, lda: n,
                           b: a, ldb: lda, beta: 1, c: gb, ldc: k)
                }
            }
            if st.inputs[2] >= 0, let gc = g(2) {
                let beta = T(info.beta)
                for r in 0..<m { for c in 0..<n { gc[r * info.cRow + c * info.cCol] += beta * gy[r * n + c] } }
            }
        case .matMul(let info):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            let (m, n, k) = (info.m, info.n, info.k)
            let ga = g(0), gb = g(1)
            for e in 0..<info.aOffsets.count {
                let gye = gy + info.yOffsets[e]
                if let ga {
                    T.gemm(transA: false, transB: true, m: m, n: k, k: n, alpha: 1, a: gye, lda: n, b: b + info.bOffsets[e], ldb: n,
                           beta: 1, c: ga + info.aOffsets[e], ldc: k)
                }
                if let gb {
                    T.gemm(transA: true, transB: false, m: k, n: n, k: m, alpha: 1, a: a + info.aOffsets[e], lda: k, b: gye, ldb: n,
                           beta: 1, c: gb + info.bOffsets[e], ldc: n)
                }
            }
        case .binary(let op, let ma, let mb, _, _, _):
            GKernels.binaryBackward(op, v(st.inputs[0]), ma, v(st.inputs[1]), mb, values[st.output], gy, g(0), g(1))
        case .activation(let act):
            guard let gx = g(0) else { return }
            Kernels.activationBackward(act, z: v(st.inputs[0]), a: values[st.output], gradient: gy, into: gx, accumulate: true, count: count)
        case .unary(let f):
            guard let gx = g(0) else { return }
            let x = v(st.inputs[0]), y = values[st.output]
            for i in 0..<count { gx[i] += gy[i] * f.derivative(x[i], y[i]) }
        case .transpose(let map):
            guard let gx = g(0) else { return }
            GKernels.scatterAdd(gy, map, gx)
        case .concat(let outer, let inner, let sizes):
            let total = sizes.reduce(0, +) * inner
            var start = 0
            for (i, size) in sizes.enumerated() {
                let run = size * inner
                if let gx = g(i) {
                    for o in 0..<outer {
                        let src = gy + o * total + start, dst = gx + o * run
                        for j in 0..<run { dst[j] += src[j] }
                    }
                }
                start += run
            }
        case .softmax(let outer, let length, let inner, let log):
            guard let gx = g(0) else { return }
            TensorOps.softmaxBackward(y: values[st.output], gradient: gy, outer: outer, axisLength: length, inner: inner, log: log, into: gx)
        case .conv(let geo, let n):
            Conv.backward(x: v(st.inputs[0]), batch: n, geometry: geo, weight: v(st.inputs[1]), gy: gy,
                          gx: g(0), gw: g(1), gb: st.inputs[2] >= 0 ? g(2) : nil, workspace: workspace!.base)
        case .maxPool(let geo, let planes, let idx):
            guard let gx = g(0) else { return }
            Pool.maxBackward(gy: gy, planes: planes, inputSpatial: geo.inputSpatialCount, outputSpatial: geo.outputSpatialCount,
                             indices: indexStores[idx].base, gx: gx)
        case .averagePool(let geo, let planes, let includePad):
            guard let gx = g(0) else { return }
            Pool.averageBackward(gy: gy, planes: planes, geometry: geo, countIncludePad: includePad, gx: gx)
        case .globalAverage(let planes, let spatial):
            guard let gx = g(0) else { return }
            Pool.globalAverageBackward(gy: gy, planes: planes, spatial: spatial, gx: gx)
        case .globalMax(let planes, let spatial, let idx):
            guard let gx = g(0) else { return }
            Pool.maxBackward(gy: gy, planes: planes, inputSpatial: spatial, outputSpatial: 1, indices: indexStores[idx].base, gx: gx)
        case .batchNorm(let n, let c, let spatial, let eps):
            let x = v(st.inputs[0]), sc = v(st.inputs[1]), mean = v(st.inputs[3]), vr = v(st.inputs[4])
            let gx = g(0), gs = g(1), gb = g(2), gm = g(3), gv = g(4)
            for ch in 0..<c {
                let inv = 1 / T.sqrt(vr[ch] + T(eps))
                var sumG: T = 0, sumGX: T = 0
                for s in 0..<n {
                    let base = (s * c + ch) * spatial
                    for i in 0..<spatial {
                        let d = gy[base + i]
                        sumG += d
                        sumGX += d * (x[base + i] - mean[ch])
                        if let gx { gx[base + i] += d * sc[ch] * inv }
                    }
                }
                if let gs { gs[ch] += sumGX * inv }
                if let gb { gb[ch] += sumG }
                if let gm { gm[ch] -= sumG * sc[ch] * inv }
                if let gv { gv[ch] += sumGX * sc[ch] * T(-0.5) * inv * inv * inv }
            }
        case .layerNorm(let rows, let cols, _, let scaleMap, let biasMap, let stats):
            let x = v(st.inputs[0]), sc = v(st.inputs[1]), stat = statBuffers[stats].base
            let gx = g(0), gs = g(1), gb = st.inputs[2] >= 0 ? g(2) : nil
            let invN = 1 / T(cols)
            for r in 0..<rows {
                let xr = x + r * cols, gyr = gy + r * cols
                let mu = stat[2 * r], rstd = stat[2 * r + 1]
                var meanG: T = 0, meanGX: T = 0
                for j in 0..<cols {
                    let xh = (xr[j] - mu) * rstd
                    let gj = gyr[j] * sc[scaleMap[j]]
                    meanG += gj
                    meanGX += gj * xh
                    if let gs { gs[scaleMap[j]] += gyr[j] * xh }
                    if let gb, let bm = biasMap { gb[bm[j]] += gyr[j] }
                }
                meanG *= invN
                meanGX *= invN
                if let gx {
                    let gxr = gx + r * cols
                    for j in 0..<cols {
                        let xh = (xr[j] - mu) * rstd
                        gxr[j] += rstd * (gyr[j] * sc[scaleMap[j]] - meanG - xh * meanGX)
                    }
                }
            }
        }
    }

    /// dy = J dx for the step, from the tangents of its inputs (nil: zero).
    func tangentStep(_ st: GStep) {
        guard let ty = tangents[st.output] else { return }
        let count = storages[st.output].count
        func t(_ i: Int) -> UnsafeMutablePointer<T>? {
            let s = st.inputs[i]
            return s >= 0 ? tangents[s] : nil
        }
        switch st.kind {
        case .gemm(let info):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            let lda = info.transA ? info.m : info.k, ldb = info.transB ? info.k : info.n
            let alpha = T(info.alpha)
            if st.inputs[2] >= 0, let tc = t(2) {
                GKernels.broadcastC(tc, info, scale: T(info.beta), into: ty)
            } else {
                ty.update(repeating: 0, count: count)
            }
            if let ta = t(0) {
                T.gemm(transA: info.transA, transB: info.transB, m: info.m, n: info.n, k: info.k, alpha: alpha,
                       a: ta, lda: lda, b: b, ldb: ldb, beta: 1, c: ty, ldc: info.n)
            }
            if let tb = t(1) {
                T.gemm(transA: info.transA, transB: info.transB, m: info.m, n: info.n, k: info.k, alpha: alpha,
                       a: a, lda: lda, b: tb, ldb: ldb, beta: 1, c: ty, ldc: info.n)
            }
        case .matMul(let info):
            let a = v(st.inputs[0]), b = v(st.inputs[1])
            ty.update(repeating: 0, count: count)
            let ta = t(0), tb = t(1)
            for e in 0..<info.aOffsets.count {
                if let ta {
                    T.gemm(transA: false, transB: false, m: info.m, n: info.n, k: info.k, alpha: 1, a: ta + info.aOffsets[e], lda: info.k,
                           b: b + info.bOffsets[e], ldb: info.n, beta: 1, c: ty + info.yOffsets[e], ldc: info.n)
                }
                if let tb {
                    T.gemm(transA: false, transB: false, m: info.m, n: info.n, k: info.k, alpha: 1, a: a + info.aOffsets[e], lda: info.k,
                           b: tb + info.bOffsets[e], ldb: info.n, beta: 1, c: ty + info.yOffsets[e], ldc: info.n)
                }
            }
        case .binary(let op, let ma, let mb, _, _, _):
            GKernels.binaryTangent(op, v(st.inputs[0]), ma, t(0), v(st.inputs[1]), mb, t(1), values[st.output], ty)
        case .activation(let act):
            Kernels.activationBackward(act, z: v(st.inputs[0]), a: values[st.output], gradient: t(0)!, into: ty, accumulate: false, count: count)
        case .unary(let f):
            let x = v(st.inputs[0]), y = values[st.output], tx = t(0)!
            for i in 0..<count { ty[i] = tx[i] * f.derivative(x[i], y[i]) }
        case .transpose(let map):
            GKernels.gather(t(0)!, map, ty)
        case .concat(let outer, let inner, let sizes):
            let total = sizes.reduce(0, +) * inner
            var start = 0
            for (i, size) in sizes.enumerated() {
                let run = size * inner
                let tx = t(i)
                for o in 0..<outer {
                    let dst = ty + o * total + start
                    if let tx { dst.update(from: tx + o * run, count: run) } else { dst.update(repeating: 0, count: run) }
                }
                start += run
            }
        case .softmax(let outer, let length, let inner, let log):
            TensorOps.softmaxTangent(y: values[st.output], tangent: t(0)!, outer: outer, axisLength: length, inner: inner, log: log, into: ty)
        case .conv(let geo, let n):
            // Weights and bias do not depend on the input: dy = W * dx.
            Conv.forwardPerSample(x: t(0)!, batch: n, geometry: geo, weight: v(st.inputs[1]), bias: nil, y: ty,
                                  workspace: workspace!.base)
        case .maxPool(let geo, let planes, let idx):
            Pool.maxTangent(tx: t(0)!, planes: planes, inputSpatial: geo.inputSpatialCount, outputSpatial: geo.outputSpatialCount,
                            indices: indexStores[idx].base, ty: ty)
        case .averagePool(let geo, let planes, let includePad):
            Pool.average(x: t(0)!, planes: planes, geometry: geo, countIncludePad: includePad, y: ty)
        case .globalAverage(let planes, let spatial):
            Pool.globalAverage(x: t(0)!, planes: planes, spatial: spatial, y: ty)
        case .globalMax(let planes, let spatial, let idx):
            Pool.maxTangent(tx: t(0)!, planes: planes, inputSpatial: spatial, outputSpatial: 1, indices: indexStores[idx].base, ty: ty)
        case .batchNorm(let n, let c, let spatial, let eps):
            let tx = t(0)!, sc = v(st.inputs[1]), vr = v(st.inputs[4])
            for ch in 0..<c {
                let a = sc[ch] / T.sqrt(vr[ch] + T(eps))
                for s in 0..<n {
                    let base = (s * c + ch) * spatial
                    for i in 0..<spatial { ty[base + i] = tx[base + i] * a }
                }
            }
        case .layerNorm(let rows, let cols, _, let scaleMap, _, let stats):
            let x = v(st.inputs[0]), sc = v(st.inputs[1]), stat = statBuffers[stats].base, tx = t(0)!
            let invN = 1 / T(cols)
            for r in 0..<rows {
                let xr = x + r * cols, txr = tx + r * cols, tyr = ty + r * cols
                let mu = stat[2 * r], rstd = stat[2 * r + 1]
                var meanT: T = 0, meanTX: T = 0
                for j in 0..<cols {
                    meanT += txr[j]
                    meanTX += txr[j] * (xr[j] - mu) * rstd
                }
                meanT *= invN
                meanTX *= invN
                for j in 0..<cols {
                    let xh = (xr[j] - mu) * rstd
                    tyr[j] = sc[scaleMap[j]] * rstd * (txr[j] - meanT - xh * meanTX)
                }
            }
        }
    }
}

/// Generic kernels of the differentiable graph executor (naive loops; GEMMs on BLAS).
enum GKernels {
    // MARK: Element-wise

    static func binaryBackward<T: Real>(_ op: BinaryOp, _ a: UnsafePointer<T>, _ ma: StridedMap, _ b: UnsafePointer<T>, _ mb: StridedMap,
                                        _ y: UnsafePointer<T>, _ gy: UnsafePointer<T>,
                                        _ ga: UnsafeMutablePointer<T>?, _ gb: UnsafeMutablePointer<T>?) {
        let n = ma.length, sa = ma.stride, sb = mb.stride
        for r in 0..<ma.rows.count {
            let ar = ma.rows[r], br = mb.rows[r], yr = r * n
            for j in 0..<n {
                let g = gy[yr + j], ia = ar + j * sa, ib = br + j * sb
                switch op {
                case .add:
                    ga?[ia] += g; gb?[ib] += g
                case .sub:
                    ga?[ia] += g; gb?[ib] -= g
                case .mul:
                    ga?[ia] += g * b[ib]; gb?[ib] += g * a[ia]
                case .div:
                    ga?[ia] += g / b[ib]; gb?[ib] -= g * a[ia] / (b[ib] * b[ib])
                case .pow:
                    let e = b[ib]
                    ga?[ia] += g * (e == 0 ? 0 : e * Numerics.differentiable.pow(a[ia], e - 1))
                    gb?[ib] += g * (a[ia] > 0 ? y[yr + j] * Numerics.differentiable.log(a[ia]) : 0)
                default: break
                }
            }
        }
    }

    static func binaryTangent<T: Real>(_ op: BinaryOp, _ a: UnsafePointer<T>, _ ma: StridedMap, _ ta: UnsafePointer<T>?,
                                       _ b: UnsafePointer<T>, _ mb: StridedMap, _ tb: UnsafePointer<T>?,
                                       _ y: UnsafePointer<T>, _ ty: UnsafeMutablePointer<T>) {
        let n = ma.length, sa = ma.stride, sb = mb.stride
        for r in 0..<ma.rows.count {
            let ar = ma.rows[r], br = mb.rows[r], yr = r * n
            for j in 0..<n {
                let ia = ar + j * sa, ib = br + j * sb
                let da: T = ta?[ia] ?? 0, db: T = tb?[ib] ?? 0
                var d: T
                switch op {
                case .add: d = da + db
                case .sub: d = da - db
                case .mul: d = da * b[ib] + a[ia] * db
                case .div: d = da / b[ib] - a[ia] * db / (b[ib] * b[ib])
                case .pow:
                    let e = b[ib]
                    d = da * (e == 0 ? 0 : e * Numerics.differentiable.pow(a[ia], e - 1))
                    if db != 0 { d += db * (a[ia] > 0 ? y[yr + j] * Numerics.differentiable.log(a[ia]) : 0) }
                default: d = 0
                }
                ty[yr + j] = d
            }
        }
    }

    /// y[r·n + j] = x[map(r, j)].
    static func gather<T: Real>(_ x: UnsafePointer<T>, _ m: StridedMap, _ y: UnsafeMutablePointer<T>) {
        let n = m.length, s = m.stride
        for r in 0..<m.rows.count {
            let xr = x + m.rows[r], yr = y + r * n
            for j in 0..<n { yr[j] = xr[j * s] }
        }
    }

    /// gx[map(r, j)] += gy[r·n + j].
    static func scatterAdd<T: Real>(_ gy: UnsafePointer<T>, _ m: StridedMap, _ gx: UnsafeMutablePointer<T>) {
        let n = m.length, s = m.stride
        for r in 0..<m.rows.count {
            let gr = gx + m.rows[r], yr = gy + r * n
            for j in 0..<n { gr[j * s] += yr[j] }
        }
    }

    /// y = scale · C broadcast to m × n.
    static func broadcastC<T: Real>(_ c: UnsafePointer<T>, _ g: GemmInfo, scale: T, into y: UnsafeMutablePointer<T>) {
        for r in 0..<g.m { for j in 0..<g.n { y[r * g.n + j] = scale * c[r * g.cRow + j * g.cCol] } }
    }

}
