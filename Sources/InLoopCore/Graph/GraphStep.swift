import CBLAS

/// One operation of a compiled graph plan: a kernel call with every size fixed for the plan's batch
/// size, reading and writing numbered storages. Weights are pointers into tensors the plan keeps alive.
struct Step {
    var kind: StepKind
    /// Storage ids read (in kernel order).
    var inputs: [Int]
    /// Storage ids written.
    var outputs: [Int]
    /// Scratch storage id, or -1.
    var scratch: Int = -1
    /// The graph node this step comes from (for summaries and messages).
    var node: String
}

/// A batched matrix product C[b] = alpha · op(A[b]) · op(B[b]) (row-major), over `count` matrix pairs
/// at the given element offsets (broadcast operands repeat an offset).
struct MatMulParams {
    var m: Int, n: Int, k: Int
    var transA: Bool, transB: Bool
    var alpha: Float
    var aOffsets: [Int], bOffsets: [Int]
}

enum StepKind {
    /// y[rows × outCols] = act(x[rows × inCols] · Wᵀ + b), W stored [outCols, inCols].
    case dense(rows: Int, inCols: Int, outCols: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
               activation: Activation)
    /// Two runtime operands (or a constant left operand): one GEMM per matrix pair.
    case matMul(MatMulParams)
    /// y[r, c] = x[r, c] · scale[c] + shift[c] (either may be nil: 1 / 0): fused Sub/Div/Mul/Add by constants.
    case affine(rows: Int, cols: Int, scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?)
    case binary(BinaryOp, aShape: [Int], bShape: [Int], yShape: [Int])
    case activation(Activation, count: Int)
    case unary(UnaryFunction, count: Int)
    case softmax(outer: Int, length: Int, inner: Int, log: Bool)
    case transpose(shape: [Int], perm: [Int])
    /// One input per part; lengths along the axis.
    case concat(outer: Int, inner: Int, lengths: [Int], total: Int)
    /// One output per part.
    case split(outer: Int, inner: Int, length: Int, offsets: [Int], lengths: [Int])
    case slice(shape: [Int], starts: [Int], ends: [Int], steps: [Int])
    case gather(shape: [Int], axis: Int, indices: [Int])
    case conv(ConvGeometry, batch: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: Activation)
    case convTranspose(ConvTransposeGeometry, batch: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                       activation: Activation)
    case maxPool(PoolGeometry, planes: Int)
    case averagePool(PoolGeometry, planes: Int, countIncludePad: Bool)
    case globalAveragePool(planes: Int, spatial: Int)
    case globalMaxPool(planes: Int, spatial: Int)
    /// y[n, c, s] = x[n, c, s] · scale[c] + shift[c] (BatchNormalization at inference).
    case channelAffine(batch: Int, channels: Int, spatial: Int, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>)
    case layerNorm(rows: Int, cols: Int, scale: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, epsilon: Float)
    case resize(inShape: [Int], outShape: [Int], scales: [Float]?, ResizeCoordinateMode, ResizeNearestMode)
    case copy(count: Int)

    /// Short name for plan summaries.
    var name: String {
        switch self {
        case .dense: return "dense"
        case .matMul: return "matmul"
        case .affine: return "affine"
        case .binary(let op, _, _, _): return op.description.lowercased()
        case .activation: return "activation"
        case .unary: return "unary"
        case .softmax: return "softmax"
        case .transpose: return "transpose"
        case .concat: return "concat"
        case .split: return "split"
        case .slice: return "slice"
        case .gather: return "gather"
        case .conv: return "conv"
        case .convTranspose: return "conv_transpose"
        case .maxPool: return "max_pool"
        case .averagePool: return "average_pool"
        case .globalAveragePool: return "global_average_pool"
        case .globalMaxPool: return "global_max_pool"
        case .channelAffine: return "batch_norm"
        case .layerNorm: return "layer_norm"
        case .resize: return "resize"
        case .copy: return "copy"
        }
    }

    /// The activation fused into this step, for dense and convolution steps.
    var fusedActivation: Activation? {
        switch self {
        case .dense(_, _, _, _, _, let a), .conv(_, _, _, _, let a), .convTranspose(_, _, _, _, let a): return a
        default: return nil
        }
    }
}

extension Step {
    /// Runs the step on the storages of `p` (compile-time folding; plans run `StepKind.execute` directly).
    func execute(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Float>>, reproducible: Bool) {
        let io = inputs + outputs
        io.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return }
            kind.execute(p, inputs: base, outputs: base + inputs.count, scratch: scratch, reproducible: reproducible)
        }
    }
}

extension StepKind {
    /// Runs the step on the storages of `p` (every id of the step has a valid pointer). Allocates nothing.
    /// `inputs`, `outputs`, `scratch`: the step's storage ids (`Step.inputs`, …), passed as plain
    /// pointers into a table of the plan so that running a step copies nothing reference-counted.
    /// `reproducible`: per-sample products, so a sample's result does not depend on the batch.
    @inline(__always)
    func execute(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Float>>, inputs: UnsafePointer<Int>,
                 outputs: UnsafePointer<Int>, scratch: Int, reproducible: Bool) {
        switch self {
        case .dense(let rows, let k, let m, let w, let b, let act):
            let x = p[inputs[0]], y = p[outputs[0]]
            if reproducible && rows > 1 {
                for r in 0..<rows {
                    Kernels.dense(x: x + r * k, batch: 1, inFeatures: k, weight: w, bias: b, outFeatures: m,
                                  activation: act, y: y + r * m)
                }
            } else {
                Kernels.dense(x: x, batch: rows, inFeatures: k, weight: w, bias: b, outFeatures: m, activation: act, y: y)
            }
        case .matMul(let mm):
            let a = p[inputs[0]], b = p[inputs[1]], y = p[outputs[0]]
            let lda = mm.transA ? mm.m : mm.k, ldb = mm.transB ? mm.k : mm.n
            for i in 0..<mm.aOffsets.count {
                cblas_sgemm(CblasRowMajor, mm.transA ? CblasTrans : CblasNoTrans, mm.transB ? CblasTrans : CblasNoTrans,
                            Int32(mm.m), Int32(mm.n), Int32(mm.k), mm.alpha, a + mm.aOffsets[i], Int32(lda),
                            b + mm.bOffsets[i], Int32(ldb), 0, y + i * mm.m * mm.n, Int32(mm.n))
            }
        case .affine(let rows, let cols, let scale, let shift):
            let x = p[inputs[0]], y = p[outputs[0]]
            for r in 0..<rows {
                let xr = x + r * cols, yr = y + r * cols
                if let scale, let shift {
                    for c in 0..<cols { yr[c] = xr[c] * scale[c] + shift[c] }
                } else if let scale {
                    for c in 0..<cols { yr[c] = xr[c] * scale[c] }
                } else if let shift {
                    for c in 0..<cols { yr[c] = xr[c] + shift[c] }
                } else if xr != yr {
                    yr.update(from: xr, count: cols)
                }
            }
        case .binary(let op, let aShape, let bShape, let yShape):
            TensorOps.broadcastBinary(op, a: p[inputs[0]], aShape: aShape, b: p[inputs[1]], bShape: bShape,
                                      y: p[outputs[0]], yShape: yShape)
        case .activation(let act, let count):
            let x = p[inputs[0]], y = p[outputs[0]]
            if x != y { y.update(from: x, count: count) }
            Kernels.activate(act, y, count: count)
        case .unary(let f, let count):
            UnaryFunction.apply(f, x: p[inputs[0]], y: p[outputs[0]], count: count)
        case .softmax(let outer, let length, let inner, let log):
            if log {
                TensorOps.logSoftmax(x: p[inputs[0]], outer: outer, axisLength: length, inner: inner, y: p[outputs[0]])
            } else {
                TensorOps.softmax(x: p[inputs[0]], outer: outer, axisLength: length, inner: inner, y: p[outputs[0]])
            }
        case .transpose(let shape, let perm):
            TensorOps.transpose(x: p[inputs[0]], shape: shape, perm: perm, y: p[outputs[0]])
        case .concat(let outer, let inner, let lengths, let total):
            var offset = 0
            for i in 0..<lengths.count {
                TensorOps.concat(x: p[inputs[i]], outer: outer, axisLength: lengths[i], inner: inner,
                                 y: p[outputs[0]], yAxisLength: total, axisOffset: offset)
                offset += lengths[i]
            }
        case .split(let outer, let inner, let length, let offsets, let lengths):
            for i in 0..<lengths.count {
                TensorOps.split(x: p[inputs[0]], outer: outer, axisLength: length, inner: inner, axisOffset: offsets[i],
                                y: p[outputs[i]], yAxisLength: lengths[i])
            }
        case .slice(let shape, let starts, let ends, let steps):
            TensorOps.slice(x: p[inputs[0]], shape: shape, starts: starts, ends: ends, steps: steps, y: p[outputs[0]])
        case .gather(let shape, let axis, let indices):
            indices.withUnsafeBufferPointer { ind in
                if let base = ind.baseAddress {
                    TensorOps.gather(x: p[inputs[0]], shape: shape, axis: axis, indices: base, indexCount: ind.count,
                                     y: p[outputs[0]])
                }
            }
        case .conv(let g, let batch, let w, let b, let act):
            let x = p[inputs[0]], y = p[outputs[0]], ws = p[scratch]
            if reproducible && batch > 1 {
                for n in 0..<batch {
                    Conv.forward(x: x + n * g.inputCount, batch: 1, geometry: g, weight: w, bias: b, activation: act,
                                 y: y + n * g.outputCount, workspace: ws)
                }
            } else {
                Conv.forward(x: x, batch: batch, geometry: g, weight: w, bias: b, activation: act, y: y, workspace: ws)
            }
        case .convTranspose(let g, let batch, let w, let b, let act):
            ConvTranspose.forward(x: p[inputs[0]], batch: batch, geometry: g, weight: w, bias: b, activation: act,
                                  y: p[outputs[0]], workspace: p[scratch])
        case .maxPool(let g, let planes):
            Pool.max(x: p[inputs[0]], planes: planes, geometry: g, y: p[outputs[0]])
        case .averagePool(let g, let planes, let cip):
            Pool.average(x: p[inputs[0]], planes: planes, geometry: g, countIncludePad: cip, y: p[outputs[0]])
        case .globalAveragePool(let planes, let spatial):
            Pool.globalAverage(x: p[inputs[0]], planes: planes, spatial: spatial, y: p[outputs[0]])
        case .globalMaxPool(let planes, let spatial):
            Pool.globalMax(x: p[inputs[0]], planes: planes, spatial: spatial, y: p[outputs[0]])
        case .channelAffine(let batch, let channels, let spatial, let scale, let shift):
            TensorOps.batchNormAffine(x: p[inputs[0]], batch: batch, channels: channels, spatial: spatial,
                                      scale: scale, shift: shift, y: p[outputs[0]])
        case .layerNorm(let rows, let cols, let scale, let bias, let eps):
            TensorOps.layerNorm(x: p[inputs[0]], rows: rows, cols: cols, scale: scale, bias: bias, epsilon: eps,
                                y: p[outputs[0]])
        case .resize(let inShape, let outShape, let scales, let cm, let nm):
            TensorOps.resizeNearest(x: p[inputs[0]], inShape: inShape, outShape: outShape, scales: scales,
                                    coordinateMode: cm, nearestMode: nm, y: p[outputs[0]])
        case .copy(let count):
            let x = p[inputs[0]], y = p[outputs[0]]
            if x != y { y.update(from: x, count: count) }
        }
    }
}
