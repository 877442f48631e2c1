// Pooling kernels: MaxPool and AveragePool (1-D/2-D; kernel, strides, pads, dilations, ceil_mode,
// count_include_pad) and global average / max pooling.
//
// Layout: x is `planes × inSpatial`, y is `planes × outSpatial`, row-major, where planes = N·C (pooling
// never mixes channels, so batch and channels are one axis). inSpatial = [L] or [H, W].
//
// Public API:
//   struct PoolGeometry
//     init(inputSize:kernelSize:strides:dilations:padsBegin:padsEnd:ceilMode:) throws(InLoopError)
//       spatial rank 1 or 2 = inputSize.count; strides/dilations default to 1, pads to 0 when nil.
//       outputSize[i] = floor-or-ceil((in + pb + pe - ((k - 1)·d + 1)) / stride) + 1; with ceilMode a
//       last window that would start at or after in + pb (entirely in the end padding) is dropped
//       (PyTorch / onnxruntime rule). Throws .format / .unsupported with a message.
//     outputSize, inputSpatialCount, outputSpatialCount
//     (for ONNX auto_pad use ConvGeometry.autoPads.)
//   enum Pool (generic over Float and Double; the inference and the differentiable engine share them)
//     max(x:planes:geometry:y:indices:)
//         padding never wins; a window with no input element gives -infinity (index -1).
//         indices (optional): per output, the position in its plane of the element taken.
//     average(x:planes:geometry:countIncludePad:y:)
//         countIncludePad = false: mean over window elements inside the input;
//         countIncludePad = true: divisor counts window positions inside the padded input
//         [-padsBegin, in + padsEnd) (positions past it, possible only with ceilMode, are not counted);
//         an empty window gives 0.
//     averageBackward(gy:planes:geometry:countIncludePad:gx:)   gx += adjoint of average
//     maxBackward / maxTangent(…:planes:inputSpatial:outputSpatial:indices:…)   through the indices
//     globalAverage(x:planes:spatial:y:)       y[p] = mean of x[p, 0..<spatial]; globalAverageBackward
//     globalMax(x:planes:spatial:y:indices:)   y[p] = max  of x[p, 0..<spatial]
//
// Loops: 2×2 windows with stride 2, no padding and no partial window (the CNN case) run a dedicated
// loop that vectorises (max only without indices); everything else runs per output over the kernel
// taps clipped to the input (convValidRange, Conv.swift; no per-tap bounds tests). Both visit a
// window's elements in the same order (row by row), so results are identical either way: max keeps
// the first of equal values and returns NaN if the window holds one; average sums from 0 in that order.
//
// Preconditions (caller-validated): x holds planes·inputSpatialCount values, y (and indices)
// planes·outputSpatialCount; they do not overlap. No allocation, no traps.

/// Validated sizes of a 1-D or 2-D pooling window (2-D normalised like ConvGeometry: 1-D has H = 1).
/// Plain values only (`BitwiseCopyable`): a plan stores it in its integer table.
public struct PoolGeometry: Equatable, Sendable, BitwiseCopyable {
    /// 1 or 2.
    public let spatialRank: Int
    public let ceilMode: Bool

    public let inH: Int, inW: Int
    public let kH: Int, kW: Int
    public let strideH: Int, strideW: Int
    public let dilationH: Int, dilationW: Int
    public let padTop: Int, padLeft: Int
    public let padBottom: Int, padRight: Int
    public let outH: Int, outW: Int

    public var inputSize: [Int] { spatialList(inH, inW) }
    public var kernelSize: [Int] { spatialList(kH, kW) }
    public var strides: [Int] { spatialList(strideH, strideW) }
    public var dilations: [Int] { spatialList(dilationH, dilationW) }
    public var padsBegin: [Int] { spatialList(padTop, padLeft) }
    public var padsEnd: [Int] { spatialList(padBottom, padRight) }
    public var outputSize: [Int] { spatialList(outH, outW) }
    private func spatialList(_ h: Int, _ w: Int) -> [Int] { spatialRank == 2 ? [h, w] : [w] }

    // Checked (at most Limits.maxElements) by init.
    public let inputSpatialCount: Int
    public let outputSpatialCount: Int

    public init(inputSize: [Int], kernelSize: [Int], strides: [Int]? = nil, dilations: [Int]? = nil,
                padsBegin: [Int]? = nil, padsEnd: [Int]? = nil, ceilMode: Bool = false) throws(InLoopError) {
        let r = inputSize.count
        guard r == 1 || r == 2 else {
            throw InLoopError(.unsupported, "pooling with \(r) spatial dimensions (input spatial shape \(Tensor.format(inputSize))): only 1-D and 2-D are supported")
        }
        let s = strides ?? [Int](repeating: 1, count: r)
        let d = dilations ?? [Int](repeating: 1, count: r)
        let pb = padsBegin ?? [Int](repeating: 0, count: r)
        let pe = padsEnd ?? [Int](repeating: 0, count: r)
        try ConvGeometry.checkCounts(r, ["kernel_shape": kernelSize, "strides": s, "dilations": d,
                                         "pads (begin)": pb, "pads (end)": pe])
        try ConvGeometry.checkLimits(["input spatial shape": inputSize, "kernel_shape": kernelSize, "strides": s,
                                      "dilations": d, "pads": pb + pe])
        var out = [Int](repeating: 0, count: r)
        for i in 0..<r {
            guard inputSize[i] > 0 else { throw InLoopError(.format, "pooling input spatial shape \(Tensor.format(inputSize)) has a non-positive size") }
            guard kernelSize[i] > 0, s[i] > 0, d[i] > 0 else {
                throw InLoopError(.format, "pooling kernel_shape \(Tensor.format(kernelSize)), strides \(Tensor.format(s)) and dilations \(Tensor.format(d)) must be positive")
            }
            guard pb[i] >= 0, pe[i] >= 0 else { throw InLoopError(.format, "pooling pads must be non-negative, got \(Tensor.format(pb + pe))") }
            let span = (kernelSize[i] - 1) * d[i] + 1
            let padded = inputSize[i] + pb[i] + pe[i]
            guard padded >= span else {
                throw InLoopError(.format, "pooling input spatial shape \(Tensor.format(inputSize)) with pads \(Tensor.format(pb + pe)) is smaller than the dilated kernel (\(span)) along spatial axis \(i)")
            }
            var o = (ceilMode ? padded - span + s[i] - 1 : padded - span) / s[i] + 1
            if ceilMode && (o - 1) * s[i] >= inputSize[i] + pb[i] { o -= 1 }
            out[i] = o
        }
        spatialRank = r; self.ceilMode = ceilMode
        let h = r == 2 ? 0 : -1, w = r - 1
        inH = h < 0 ? 1 : inputSize[h]; inW = inputSize[w]
        kH = h < 0 ? 1 : kernelSize[h]; kW = kernelSize[w]
        strideH = h < 0 ? 1 : s[h]; strideW = s[w]
        dilationH = h < 0 ? 1 : d[h]; dilationW = d[w]
        padTop = h < 0 ? 0 : pb[h]; padLeft = pb[w]
        padBottom = h < 0 ? 0 : pe[h]; padRight = pe[w]
        outH = h < 0 ? 1 : out[h]; outW = out[w]
        inputSpatialCount = try Tensor.elementCount([inH, inW])
        outputSpatialCount = try Tensor.elementCount([outH, outW])
    }
}

public enum Pool {
    /// Number of taps t in 0 ..< k with start + t·dilation < end.
    @inlinable @inline(__always)
    static func tapsBefore(end: Int, start: Int, dilation d: Int, k: Int) -> Int {
        let t = end - 1 - start
        return t < 0 ? 0 : min(k, t / d + 1)
    }

    /// The max-pool update: NaN propagates (as in onnxruntime / PyTorch), ties keep the earlier value.
    @inlinable @inline(__always)
    static func maxStep<T: Real>(_ m: T, _ v: T) -> T { (v > m || v != v) ? v : m }

    /// maxStep with element k of xp, keeping the position of the value taken in `best`.
    @inlinable @inline(__always)
    static func maxStep<T: Real>(_ m: inout T, _ best: inout Int, _ xp: UnsafePointer<T>, _ k: Int) {
        let v = xp[k]
        if v > m { m = v; best = k } else if v != v { m = v; best = k }
    }

    /// 2×2 windows, stride 2, no padding or dilation, every window inside the input.
    @inlinable
    static func isPlain2x2(_ g: PoolGeometry) -> Bool {
        g.kH == 2 && g.kW == 2 && g.strideH == 2 && g.strideW == 2 && g.dilationH == 1 && g.dilationW == 1
            && g.padTop == 0 && g.padLeft == 0 && 2 * g.outH <= g.inH && 2 * g.outW <= g.inW
    }

    /// Max pooling; layouts and preconditions in the file header. With `indices`, also stores for
    /// each output the position (within its plane) of the element it took, -1 for an empty window.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func max<T: Real>(x: UnsafePointer<T>, planes: Int, geometry g: PoolGeometry,
                                    y: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int>? = nil) {
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let inH = g.inH, inW = g.inW, outH = g.outH, outW = g.outW
        if isPlain2x2(g) {
            if T.self == Float.self && indices == nil {
                cMaxPool2x2(x.asFloat, planes: planes, geometry: g, y.asFloat)   // same loop in C, CPU's width
                return
            }
            for pl in 0..<planes {
                let xp = x + pl * inP, yp = y + pl * p
                for oh in 0..<outH {
                    let r0 = xp + 2 * oh * inW, r1 = r0 + inW, yr = yp + oh * outW
                    // Window order as in the general loop: (0,0), (0,1), (1,0), (1,1).
                    if let indices {
                        let ir = indices + pl * p + oh * outW
                        for ow in 0..<outW {
                            let v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1]
                            let m = maxStep(maxStep(maxStep(v0, v1), v2), v3)
                            // The element maxStep took: the first equal to m, or the last NaN.
                            var t = v0 == m ? 0 : v1 == m ? 1 : v2 == m ? inW : inW + 1
                            if m != m { t = v3 != v3 ? inW + 1 : v2 != v2 ? inW : v1 != v1 ? 1 : 0 }
                            yr[ow] = m
                            ir[ow] = 2 * oh * inW + 2 * ow + t
                        }
                    } else {
                        for ow in 0..<outW {   // vectorises
                            yr[ow] = maxStep(maxStep(maxStep(r0[2 * ow], r0[2 * ow + 1]), r1[2 * ow]), r1[2 * ow + 1])
                        }
                    }
                }
            }
            return
        }
        let kH = g.kH, kW = g.kW, sH = g.strideH, sW = g.strideW, dH = g.dilationH, dW = g.dilationW
        for pl in 0..<planes {
            let xp = x + pl * inP, yp = y + pl * p
            for oh in 0..<outH {
                let h0 = oh * sH - g.padTop
                let (iLo, iHi) = convValidRange(offset: h0, stride: dH, inSize: inH, outSize: kH)
                for ow in 0..<outW {
                    let w0 = ow * sW - g.padLeft
                    let (jLo, jHi) = convValidRange(offset: w0, stride: dW, inSize: inW, outSize: kW)
                    var m = -T.infinity
                    var best = iLo < iHi && jLo < jHi ? (h0 + iLo * dH) * inW + w0 + jLo * dW : -1
                    for i in iLo..<iHi {
                        let row = (h0 + i * dH) * inW + w0
                        for j in jLo..<jHi { maxStep(&m, &best, xp, row + j * dW) }
                    }
                    yp[oh * outW + ow] = m
                    indices?[pl * p + oh * outW + ow] = best
                }
            }
        }
    }

    /// The divisor of average-pooling output (oh, ow) (the rule in the file header), and the kernel
    /// taps inside the input: rows iLo ..< iHi, columns jLo ..< jHi.
    @inlinable @inline(__always)
    static func averageWindow(_ g: PoolGeometry, oh: Int, ow: Int, countIncludePad: Bool)
        -> (divisor: Int, iLo: Int, iHi: Int, jLo: Int, jHi: Int) {
        let h0 = oh * g.strideH - g.padTop, w0 = ow * g.strideW - g.padLeft
        let (iLo, iHi) = convValidRange(offset: h0, stride: g.dilationH, inSize: g.inH, outSize: g.kH)
        let (jLo, jHi) = convValidRange(offset: w0, stride: g.dilationW, inSize: g.inW, outSize: g.kW)
        // Window positions counted with countIncludePad: those before the end of the padded input.
        let div = countIncludePad
            ? tapsBefore(end: g.inH + g.padBottom, start: h0, dilation: g.dilationH, k: g.kH)
                * tapsBefore(end: g.inW + g.padRight, start: w0, dilation: g.dilationW, k: g.kW)
            : (iHi - iLo) * (jHi - jLo)
        return (div, iLo, iHi, jLo, jHi)
    }

    /// Average pooling; the divisor rule is in the file header.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func average<T: Real>(x: UnsafePointer<T>, planes: Int, geometry g: PoolGeometry,
                                        countIncludePad: Bool, y: UnsafeMutablePointer<T>) {
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let inW = g.inW, outH = g.outH, outW = g.outW
        if isPlain2x2(g) {
            for pl in 0..<planes {
                let xp = x + pl * inP, yp = y + pl * p
                for oh in 0..<outH {
                    let r0 = xp + 2 * oh * inW, r1 = r0 + inW, yr = yp + oh * outW
                    for ow in 0..<outW {
                        // Summation order of the general loop (starting from 0, so -0 sums give +0).
                        var s: T = 0
                        s += r0[2 * ow]; s += r0[2 * ow + 1]; s += r1[2 * ow]; s += r1[2 * ow + 1]
                        yr[ow] = s / 4
                    }
                }
            }
            return
        }
        let sH = g.strideH, sW = g.strideW, dH = g.dilationH, dW = g.dilationW
        for pl in 0..<planes {
            let xp = x + pl * inP, yp = y + pl * p
            for oh in 0..<outH {
                let h0 = oh * sH - g.padTop
                for ow in 0..<outW {
                    let w0 = ow * sW - g.padLeft
                    let a = averageWindow(g, oh: oh, ow: ow, countIncludePad: countIncludePad)
                    var s: T = 0
                    for i in a.iLo..<a.iHi {
                        let row = xp + (h0 + i * dH) * inW + w0
                        for j in a.jLo..<a.jHi { s += row[j * dW] }
                    }
                    yp[oh * outW + ow] = a.divisor > 0 ? s / T(a.divisor) : 0
                }
            }
        }
    }

    /// The adjoint of `average`: gx[window of output o] += gy[o] / divisor(o), outputs in order.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func averageBackward<T: Real>(gy: UnsafePointer<T>, planes: Int, geometry g: PoolGeometry,
                                                countIncludePad: Bool, gx: UnsafeMutablePointer<T>) {
        let inP = g.inputSpatialCount, p = g.outputSpatialCount, inW = g.inW
        for pl in 0..<planes {
            let gp = gx + pl * inP
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padTop
                for ow in 0..<g.outW {
                    let a = averageWindow(g, oh: oh, ow: ow, countIncludePad: countIncludePad)
                    guard a.divisor > 0 else { continue }
                    let d = gy[pl * p + oh * g.outW + ow] / T(a.divisor)
                    let w0 = ow * g.strideW - g.padLeft
                    for i in a.iLo..<a.iHi {
                        let row = gp + (h0 + i * g.dilationH) * inW + w0
                        for j in a.jLo..<a.jHi { row[j * g.dilationW] += d }
                    }
                }
            }
        }
    }

    /// The adjoint of `max` through its arg-max indices (also of `globalMax`: outputSpatial 1):
    /// gx[plane, indices[o]] += gy[o], outputs in order; an output with index -1 adds nothing.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func maxBackward<T: Real>(gy: UnsafePointer<T>, planes: Int, inputSpatial inP: Int, outputSpatial outP: Int,
                                            indices: UnsafePointer<Int>, gx: UnsafeMutablePointer<T>) {
        for p in 0..<planes {
            for o in 0..<outP where indices[p * outP + o] >= 0 { gx[p * inP + indices[p * outP + o]] += gy[p * outP + o] }
        }
    }

    /// The tangent of `max` (and `globalMax`) at its arg-max indices: ty[o] = tx[plane, indices[o]] (0 for -1).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func maxTangent<T: Real>(tx: UnsafePointer<T>, planes: Int, inputSpatial inP: Int, outputSpatial outP: Int,
                                           indices: UnsafePointer<Int>, ty: UnsafeMutablePointer<T>) {
        for p in 0..<planes {
            for o in 0..<outP {
                let j = indices[p * outP + o]
                ty[p * outP + o] = j >= 0 ? tx[p * inP + j] : 0
            }
        }
    }

    /// The adjoint of `globalAverage`: gx[p, i] += gy[p] / spatial.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func globalAverageBackward<T: Real>(gy: UnsafePointer<T>, planes: Int, spatial: Int,
                                                      gx: UnsafeMutablePointer<T>) {
        let inv = 1 / T(spatial)
        for p in 0..<planes { let d = gy[p] * inv; for i in 0..<spatial { gx[p * spatial + i] += d } }
    }

    /// y[p] = mean of x[p, 0..<spatial].
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func globalAverage<T: Real>(x: UnsafePointer<T>, planes: Int, spatial: Int,
                                              y: UnsafeMutablePointer<T>) {
        let inv = spatial > 0 ? 1 / T(spatial) : 0
        for pl in 0..<planes {
            let xp = x + pl * spatial
            var s: T = 0
            for i in 0..<spatial { s += xp[i] }
            y[pl] = s * inv
        }
    }

    /// y[p] = max of x[p, 0..<spatial] (-infinity when spatial = 0; NaN propagates). With `indices`,
    /// also the position of the element taken (the first maximum; 0 when none is above -infinity).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func globalMax<T: Real>(x: UnsafePointer<T>, planes: Int, spatial: Int,
                                          y: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int>? = nil) {
        for pl in 0..<planes {
            let xp = x + pl * spatial
            var m = -T.infinity, best = 0
            for i in 0..<spatial { let v = xp[i]; if v > m || v != v { m = v; best = i } }
            y[pl] = m
            indices?[pl] = best
        }
    }
}
