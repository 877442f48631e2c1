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
//   enum Pool
//     max(x:planes:geometry:y:)
//         padding never wins; a window with no input element gives -infinity.
//     average(x:planes:geometry:countIncludePad:y:)
//         countIncludePad = false: mean over window elements inside the input;
//         countIncludePad = true: divisor counts window positions inside the padded input
//         [-padsBegin, in + padsEnd) (positions past it, possible only with ceilMode, are not counted);
//         an empty window gives 0.
//     globalAverage(x:planes:spatial:y:)       y[p] = mean of x[p, 0..<spatial]
//     globalMax(x:planes:spatial:y:)           y[p] = max  of x[p, 0..<spatial]
//
// Preconditions (caller-validated): x holds planes·inputSpatialCount floats, y planes·outputSpatialCount;
// they do not overlap. No allocation, no traps.

/// Validated sizes of a 1-D or 2-D pooling window (2-D normalised like ConvGeometry: 1-D has H = 1).
public struct PoolGeometry: Equatable, Sendable {
    public let inputSize: [Int]
    public let kernelSize: [Int]
    public let strides: [Int]
    public let dilations: [Int]
    public let padsBegin: [Int]
    public let padsEnd: [Int]
    public let ceilMode: Bool
    public let outputSize: [Int]

    public let inH: Int, inW: Int
    public let kH: Int, kW: Int
    public let strideH: Int, strideW: Int
    public let dilationH: Int, dilationW: Int
    public let padTop: Int, padLeft: Int
    public let padBottom: Int, padRight: Int
    public let outH: Int, outW: Int

    public var spatialRank: Int { inputSize.count }
    public var inputSpatialCount: Int { inH * inW }
    public var outputSpatialCount: Int { outH * outW }

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
        self.inputSize = inputSize; self.kernelSize = kernelSize; self.strides = s; self.dilations = d
        self.padsBegin = pb; self.padsEnd = pe; self.ceilMode = ceilMode; self.outputSize = out
        let h = r == 2 ? 0 : -1, w = r - 1
        inH = h < 0 ? 1 : inputSize[h]; inW = inputSize[w]
        kH = h < 0 ? 1 : kernelSize[h]; kW = kernelSize[w]
        strideH = h < 0 ? 1 : s[h]; strideW = s[w]
        dilationH = h < 0 ? 1 : d[h]; dilationW = d[w]
        padTop = h < 0 ? 0 : pb[h]; padLeft = pb[w]
        padBottom = h < 0 ? 0 : pe[h]; padRight = pe[w]
        outH = h < 0 ? 1 : out[h]; outW = out[w]
    }
}

public enum Pool {
    /// Max pooling; layouts and preconditions in the file header.
    @inlinable
    public static func max(x: UnsafePointer<Float>, planes: Int, geometry g: PoolGeometry,
                           y: UnsafeMutablePointer<Float>) {
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        for pl in 0..<planes {
            let xp = x + pl * inP, yp = y + pl * p
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padTop
                for ow in 0..<g.outW {
                    let w0 = ow * g.strideW - g.padLeft
                    var m = -Float.infinity
                    for i in 0..<g.kH {
                        let ih = h0 + i * g.dilationH
                        if ih < 0 || ih >= g.inH { continue }
                        let row = xp + ih * g.inW
                        for j in 0..<g.kW {
                            let iw = w0 + j * g.dilationW
                            if iw < 0 || iw >= g.inW { continue }
                            let v = row[iw]
                            // NaN propagates (as in onnxruntime / PyTorch).
                            if v > m || v.isNaN { m = v }
                        }
                    }
                    yp[oh * g.outW + ow] = m
                }
            }
        }
    }

    /// Average pooling; the divisor rule is in the file header.
    @inlinable
    public static func average(x: UnsafePointer<Float>, planes: Int, geometry g: PoolGeometry,
                               countIncludePad: Bool, y: UnsafeMutablePointer<Float>) {
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let hEnd = g.inH + g.padBottom, wEnd = g.inW + g.padRight
        for pl in 0..<planes {
            let xp = x + pl * inP, yp = y + pl * p
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padTop
                for ow in 0..<g.outW {
                    let w0 = ow * g.strideW - g.padLeft
                    var s: Float = 0
                    var inside = 0, padded = 0
                    for i in 0..<g.kH {
                        let ih = h0 + i * g.dilationH
                        if ih >= hEnd { break }
                        let rowInside = ih >= 0 && ih < g.inH
                        let row = xp + ih * g.inW
                        for j in 0..<g.kW {
                            let iw = w0 + j * g.dilationW
                            if iw >= wEnd { break }
                            padded += 1
                            if rowInside && iw >= 0 && iw < g.inW { s += row[iw]; inside += 1 }
                        }
                    }
                    let div = countIncludePad ? padded : inside
                    yp[oh * g.outW + ow] = div > 0 ? s / Float(div) : 0
                }
            }
        }
    }

    /// y[p] = mean of x[p, 0..<spatial].
    @inlinable
    public static func globalAverage(x: UnsafePointer<Float>, planes: Int, spatial: Int,
                                     y: UnsafeMutablePointer<Float>) {
        let inv = spatial > 0 ? 1 / Float(spatial) : 0
        for pl in 0..<planes {
            let xp = x + pl * spatial
            var s: Float = 0
            for i in 0..<spatial { s += xp[i] }
            y[pl] = s * inv
        }
    }

    /// y[p] = max of x[p, 0..<spatial] (-infinity when spatial = 0).
    @inlinable
    public static func globalMax(x: UnsafePointer<Float>, planes: Int, spatial: Int,
                                 y: UnsafeMutablePointer<Float>) {
        for pl in 0..<planes {
            let xp = x + pl * spatial
            var m = -Float.infinity
            for i in 0..<spatial { let v = xp[i]; if v > m || v.isNaN { m = v } }
            y[pl] = m
        }
    }
}
