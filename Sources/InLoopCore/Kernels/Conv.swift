// Convolution kernels: Conv (1-D/2-D, any group; im2col + OpenBLAS GEMM, depthwise by direct loops)
// and ConvTranspose (1-D/2-D, any group; GEMM + col2im).
//
// Layouts (row-major / C order, ONNX/PyTorch conventions; a 1-D case is the 2-D case with H = 1):
//   x      N × Cin  × inSpatial            (inSpatial  = [L] or [H, W])
//   y      N × Cout × outSpatial
//   Conv weight            Cout × (Cin / group) × kernel...      (ONNX Conv "W")
//   ConvTranspose weight   Cin  × (Cout / group) × kernel...     (ONNX ConvTranspose "W")
//   bias   Cout values or nil; `activation` is applied after the bias (fused, one pass).
//
// Public API:
//   struct ConvGeometry                 validated sizes of one Conv node
//     init(channelsIn:channelsOut:group:inputSize:kernelSize:strides:dilations:padsBegin:padsEnd:) throws(InLoopError)
//       spatial rank 1 or 2 = inputSize.count; strides/dilations default to 1, pads to 0 when nil;
//       outputSize[i] = (in + padsBegin + padsEnd - ((k - 1)·dilation + 1)) / stride + 1 (floor).
//       Throws .format for inconsistent or non-positive sizes, .unsupported for rank ∉ {1, 2}.
//     outputSize, inputSpatialCount, outputSpatialCount, kernelSpatialCount, weightCount,
//     inputCount (Cin·inSpatial per sample), outputCount (Cout·outSpatial per sample), isDepthwise
//     static autoPads(inputSize:kernelSize:strides:dilations:upper:) -> (begin: [Int], end: [Int])
//       ONNX auto_pad SAME_UPPER (upper = true) / SAME_LOWER; also valid for pooling.
//   struct ColumnMap                    the window of im2col/col2im (ConvGeometry.columns: input →
//                                       output positions; ConvTransposeGeometry.columns: the reverse)
//   func convValidRange(offset:stride:inSize:outSize:)   the one valid-range helper (conv, pooling)
//   enum Conv
//     workspaceCount(geometry:batch:) -> Int       floats of scratch forward needs for this batch
//                                                   (enough for any smaller batch too)
//     forward(x:batch:geometry:weight:bias:activation:y:workspace:)     float32, inference engine
//   Generic over Float and Double (the differentiable engine; one GEMM per sample and group, so a
//   sample's result does not depend on the batch):
//     perSampleWorkspaceCount(geometry:) -> Int
//     forwardPerSample(x:batch:geometry:weight:bias:y:workspace:)       y = conv(x) + bias
//     backward(x:batch:geometry:weight:gy:gx:gw:gb:workspace:)          gx, gw, gb += adjoints
//     im2col(x:channels:map:rowStart:rowEnd:col:ld:), col2im(col:channels:map:image:)  (col2im adds)
//   struct ConvTransposeGeometry        validated sizes of one ConvTranspose node
//     init(channelsIn:channelsOut:group:inputSize:kernelSize:strides:dilations:padsBegin:padsEnd:outputPadding:)
//       throws(InLoopError); outputSize[i] = stride·(in - 1) + outputPadding + (k - 1)·dilation + 1
//       - padsBegin - padsEnd (ONNX formula when output_shape is not given; a compiler that gets
//       output_shape derives pads from it). Requires 0 ≤ outputPadding < max(stride, dilation).
//     outputSize, inputSpatialCount, outputSpatialCount, kernelSpatialCount, weightCount,
//     inputCount, outputCount
//   enum ConvTranspose
//     workspaceCount(geometry:batch:) -> Int
//     forward(x:batch:geometry:weight:bias:activation:y:workspace:)
//
// Strategy of Conv.forward: 2-D, group 1, stride 1, dilation 1 with small channel counts
// (`directFits`: Cin·kH·kW ≤ 1152, Cout ≤ 256, rows ≥ 8 wide, not pointwise) runs the direct C kernel
// (`directForward`, Sources/InLoopKernelsC/conv_body.h) at the avx2/avx512 levels: FMA sums in a fixed
// order, so its values differ from the GEMM path's within float32 rounding, and are the same at every
// batch size and thread split; the baseline level takes the GEMM path below.
// group = Cin > 1 (depthwise, any channel multiplier) runs direct loops (no workspace).
// Otherwise, per group, im2col + cblas_sgemm: when a sample has at most 128 output positions several
// samples share one GEMM (~256 im2col columns side by side; the copy back into y's N×Cout×P layout
// applies bias + activation); else each sample is cut into tiles of whole output rows (~384 columns,
// so the im2col block stays in cache) whose GEMMs write straight into y (ldc = P), each followed by
// bias + activation on that tile while it is in cache. A 1×1 kernel with stride 1 and no padding
// skips im2col (in forward). ConvTranspose does, per sample and group, col = Wᵀ·x (one sgemm) and a
// col2im scatter-add into y preset to the bias.
//
// Preconditions (caller-validated, not checked here): every pointer holds the counts above for
// `batch` samples; `workspace` holds at least workspaceCount(geometry:batch:) floats (0 is a valid
// count: then any non-null pointer will do); x, y and workspace do not overlap. Kernels never
// allocate and never trap. The geometry's 2-D normalised fields (inH, inW, kH, kW, strideH, …,
// outH, outW) are public for callers that need them.

import CBLAS
import InLoopKernelsC

/// Validated sizes of a 1-D or 2-D convolution. Internally everything is 2-D: a 1-D convolution has
/// `inH = kH = outH = 1`, stride/dilation 1 and no padding along H.
///
/// Plain integers only (`BitwiseCopyable`): a plan stores it in its integer table and a step reads it
/// back without allocating. The per-axis lists are computed from the 2-D normalised sizes.
public struct ConvGeometry: Equatable, Sendable, BitwiseCopyable {
    public let channelsIn: Int
    public let channelsOut: Int
    public let group: Int
    /// 1 or 2.
    public let spatialRank: Int

    // The 2-D normalised sizes the kernels use.
    public let inH: Int, inW: Int
    public let kH: Int, kW: Int
    public let strideH: Int, strideW: Int
    public let dilationH: Int, dilationW: Int
    public let padTop: Int, padLeft: Int
    public let padBottom: Int, padRight: Int
    public let outH: Int, outW: Int

    /// Spatial sizes as given (count 1 or 2).
    public var inputSize: [Int] { spatialList(inH, inW) }
    public var kernelSize: [Int] { spatialList(kH, kW) }
    public var strides: [Int] { spatialList(strideH, strideW) }
    public var dilations: [Int] { spatialList(dilationH, dilationW) }
    public var padsBegin: [Int] { spatialList(padTop, padLeft) }
    public var padsEnd: [Int] { spatialList(padBottom, padRight) }
    public var outputSize: [Int] { spatialList(outH, outW) }
    private func spatialList(_ h: Int, _ w: Int) -> [Int] { spatialRank == 2 ? [h, w] : [w] }
    // Counts checked (each at most Limits.maxElements) by init.
    public let inputSpatialCount: Int
    public let outputSpatialCount: Int
    public var kernelSpatialCount: Int { kH * kW }
    /// Cout · (Cin / group) · kernel.
    public let weightCount: Int
    /// Values per sample of x and y.
    public let inputCount: Int
    public let outputCount: Int
    /// One input channel per group (group = Cin > 1): computed by direct loops.
    public var isDepthwise: Bool { group > 1 && group == channelsIn }

    public init(channelsIn: Int, channelsOut: Int, group: Int = 1, inputSize: [Int], kernelSize: [Int],
                strides: [Int]? = nil, dilations: [Int]? = nil, padsBegin: [Int]? = nil,
                padsEnd: [Int]? = nil) throws(InLoopError) {
        let r = inputSize.count
        guard r == 1 || r == 2 else {
            throw InLoopError(.unsupported, "convolution with \(r) spatial dimensions (input spatial shape \(Tensor.format(inputSize))): only 1-D and 2-D are supported")
        }
        let s = strides ?? [Int](repeating: 1, count: r)
        let d = dilations ?? [Int](repeating: 1, count: r)
        let pb = padsBegin ?? [Int](repeating: 0, count: r)
        let pe = padsEnd ?? [Int](repeating: 0, count: r)
        try ConvGeometry.checkCounts(r, ["kernel_shape": kernelSize, "strides": s, "dilations": d,
                                         "pads (begin)": pb, "pads (end)": pe])
        try ConvGeometry.checkLimits(["input spatial shape": inputSize, "kernel_shape": kernelSize, "strides": s, "dilations": d,
                                      "pads": pb + pe, "channels": [channelsIn, channelsOut], "group": [group]])
        guard channelsIn > 0, channelsOut > 0 else {
            throw InLoopError(.format, "convolution channels must be positive, got \(channelsIn) in, \(channelsOut) out")
        }
        guard group > 0, channelsIn % group == 0, channelsOut % group == 0 else {
            throw InLoopError(.format, "convolution group \(group) must be positive and divide both the input channels (\(channelsIn)) and the output channels (\(channelsOut))")
        }
        var out = [Int](repeating: 0, count: r)
        for i in 0..<r {
            guard inputSize[i] > 0 else { throw InLoopError(.format, "convolution input spatial shape \(Tensor.format(inputSize)) has a non-positive size") }
            guard kernelSize[i] > 0, s[i] > 0, d[i] > 0 else {
                throw InLoopError(.format, "convolution kernel_shape \(Tensor.format(kernelSize)), strides \(Tensor.format(s)) and dilations \(Tensor.format(d)) must be positive")
            }
            guard pb[i] >= 0, pe[i] >= 0 else { throw InLoopError(.format, "convolution pads must be non-negative, got \(Tensor.format(pb + pe))") }
            let span = (kernelSize[i] - 1) * d[i] + 1
            let padded = inputSize[i] + pb[i] + pe[i]
            guard padded >= span else {
                throw InLoopError(.format, "convolution input spatial shape \(Tensor.format(inputSize)) with pads \(Tensor.format(pb + pe)) is smaller than the dilated kernel (\(span)) along spatial axis \(i)")
            }
            out[i] = (padded - span) / s[i] + 1
        }
        self.channelsIn = channelsIn; self.channelsOut = channelsOut; self.group = group; spatialRank = r
        let h = r == 2 ? 0 : -1, w = r - 1
        inH = h < 0 ? 1 : inputSize[h]; inW = inputSize[w]
        kH = h < 0 ? 1 : kernelSize[h]; kW = kernelSize[w]
        strideH = h < 0 ? 1 : s[h]; strideW = s[w]
        dilationH = h < 0 ? 1 : d[h]; dilationW = d[w]
        padTop = h < 0 ? 0 : pb[h]; padLeft = pb[w]
        padBottom = h < 0 ? 0 : pe[h]; padRight = pe[w]
        outH = h < 0 ? 1 : out[h]; outW = out[w]
        (inputSpatialCount, outputSpatialCount, weightCount, inputCount, outputCount) = try ConvGeometry.counts(
            channelsIn: channelsIn, channelsOut: channelsOut, input: [inH, inW], output: [outH, outW],
            weightShape: [channelsOut, channelsIn / group, kH, kW])
    }

    /// Every size and attribute of a window within ±Limits.maxDimension: the geometry's arithmetic
    /// (spans, padded sizes, output sizes) then cannot overflow.
    static func checkLimits(_ lists: KeyValuePairs<String, [Int]>) throws(InLoopError) {
        for (name, v) in lists { try Limits.attribute(v, name) }
    }

    /// Spatial, weight and per-sample counts, checked against Limits.maxElements.
    static func counts(channelsIn: Int, channelsOut: Int, input: [Int], output: [Int], weightShape: [Int]) throws(InLoopError)
        -> (inSpatial: Int, outSpatial: Int, weight: Int, input: Int, output: Int) {
        let inP = try Tensor.elementCount(input), outP = try Tensor.elementCount(output)
        let weight = try Tensor.elementCount(weightShape)
        let inCount = try Tensor.elementCount([channelsIn] + input), outCount = try Tensor.elementCount([channelsOut] + output)
        return (inP, outP, weight, inCount, outCount)
    }

    static func checkCounts(_ r: Int, _ lists: KeyValuePairs<String, [Int]>) throws(InLoopError) {
        for (name, v) in lists where v.count != r {
            throw InLoopError(.format, "\(name) has \(v.count) values \(Tensor.format(v)), expected \(r) (one per spatial dimension)")
        }
    }

    /// ONNX `auto_pad` SAME_UPPER (`upper`) / SAME_LOWER pads: output size ceil(in / stride), the
    /// total padding split evenly with the odd one at the end (upper) or the beginning (lower).
    /// Sizes are assumed valid (positive) and of equal counts.
    public static func autoPads(inputSize: [Int], kernelSize: [Int], strides: [Int], dilations: [Int],
                                upper: Bool) -> (begin: [Int], end: [Int]) {
        var b = [Int](repeating: 0, count: inputSize.count), e = b
        for i in 0..<inputSize.count {
            let s = max(strides[i], 1)
            let out = (inputSize[i] + s - 1) / s
            let total = max(0, (out - 1) * s + (kernelSize[i] - 1) * dilations[i] + 1 - inputSize[i])
            if upper { b[i] = total / 2; e[i] = total - b[i] } else { e[i] = total / 2; b[i] = total - e[i] }
        }
        return (b, e)
    }
}

/// Valid output range along one axis for kernel tap `offset` (= k·dilation - padBegin):
/// `lo ..< hi` are the outputs o with 0 ≤ o·stride + offset < inSize (lo ≤ hi, both in 0...outSize).
@inlinable @inline(__always)
func convValidRange(offset: Int, stride: Int, inSize: Int, outSize: Int) -> (lo: Int, hi: Int) {
    let lo = offset >= 0 ? 0 : min(outSize, (-offset + stride - 1) / stride)
    let t = inSize - 1 - offset
    let hi = t < 0 ? 0 : min(outSize, t / stride + 1)
    return (lo, max(lo, hi))
}

/// What im2col and col2im need of a window, 2-D normalised: an image of `imageH × imageW` values per
/// channel and `outH × outW` window positions. Column-matrix row (c·kH + i)·kW + j, column oh·outW + ow
/// holds image[c, oh·strideH + i·dilationH - padTop, ow·strideW + j·dilationW - padLeft] (0 outside).
/// A Conv maps its input to its output positions; a ConvTranspose scatters from its input positions
/// into its output image (the same map with the roles of input and output exchanged).
public struct ColumnMap: Sendable {
    public let imageH: Int, imageW: Int, outH: Int, outW: Int, kH: Int, kW: Int
    public let strideH: Int, strideW: Int, dilationH: Int, dilationW: Int, padTop: Int, padLeft: Int

    @inlinable
    public init(imageH: Int, imageW: Int, outH: Int, outW: Int, kH: Int, kW: Int, strideH: Int, strideW: Int,
                dilationH: Int, dilationW: Int, padTop: Int, padLeft: Int) {
        self.imageH = imageH; self.imageW = imageW; self.outH = outH; self.outW = outW; self.kH = kH; self.kW = kW
        self.strideH = strideH; self.strideW = strideW; self.dilationH = dilationH; self.dilationW = dilationW
        self.padTop = padTop; self.padLeft = padLeft
    }
}

extension ConvGeometry {
    /// Input image → output positions.
    @inlinable public var columns: ColumnMap {
        ColumnMap(imageH: inH, imageW: inW, outH: outH, outW: outW, kH: kH, kW: kW, strideH: strideH, strideW: strideW,
                  dilationH: dilationH, dilationW: dilationW, padTop: padTop, padLeft: padLeft)
    }
}

extension ConvTransposeGeometry {
    /// Output image ← input positions (col2im of Wᵀ·x is the transposed convolution).
    @inlinable public var columns: ColumnMap {
        ColumnMap(imageH: outH, imageW: outW, outH: inH, outW: inW, kH: kH, kW: kW, strideH: strideH, strideW: strideW,
                  dilationH: dilationH, dilationW: dilationW, padTop: padTop, padLeft: padLeft)
    }
}

public enum Conv {
    /// Output columns (samples × output positions) one GEMM aims for when samples are batched.
    /// 256 (4 samples of column_conv1d's 60 levels: an im2col block of ≤ 96 KB) measured ~10% faster
    /// than 512 or 1024 on that model at batch 256 and 4096 (1 thread, AVX-512 OpenBLAS kernels).
    @usableFromInline static let targetColumns = 256

    /// Samples per GEMM: 1 when one sample already has enough output positions (then the GEMM writes
    /// straight into y), else several, packed side by side in the im2col matrix.
    @inlinable
    static func samplesPerGEMM(_ g: ConvGeometry, batch: Int) -> Int {
        let p = g.outputSpatialCount
        return max(1, min(batch, targetColumns / max(p, 1)))
    }

    /// Output columns per im2col tile when one sample fills a GEMM on its own.
    @usableFromInline static let tileColumns = 384

    /// Output rows per im2col tile (one sample per GEMM): about `tileColumns` columns, whole rows.
    @inlinable
    static func outputRowsPerTile(_ g: ConvGeometry) -> Int {
        max(1, min(g.outH, tileColumns / max(g.outW, 1)))
    }

    /// A 1×1 kernel with stride 1 and no padding: x itself is the im2col matrix.
    @inlinable
    static func isPointwise(_ g: ConvGeometry) -> Bool {
        g.kH == 1 && g.kW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
            && g.outH == g.inH && g.outW == g.inW
    }

    /// The shapes the direct kernel (`directForward`) takes in `forward`: 1-D or 2-D, group 1, stride 1,
    /// dilation 1, not pointwise, rows of at least 8 outputs (one vector), and small channel counts
    /// (Cin·kH·kW ≤ 1152, e.g. 128 channels 3×3; Cout ≤ 256), where im2col + GEMM spends more on the
    /// copy and on GEMM calls too small for OpenBLAS's blocking than on arithmetic (cnn2d: 2 → 16 →
    /// 32 channels; column_conv1d: 4 → 32 → 32 → 2 channels, 1-D, which is the 2-D case with one
    /// row). Larger layers keep im2col + GEMM, whose cache blocking then pays.
    @inlinable
    static func directFits(_ g: ConvGeometry) -> Bool {
        g.spatialRank <= 2 && directPossible(g) && !isPointwise(g) && g.outW >= 8
            && g.channelsIn * g.kernelSpatialCount <= 1152 && g.channelsOut <= 256
    }

    /// What the direct kernel can compute at all: group 1, stride 1, dilation 1.
    @inlinable
    static func directPossible(_ g: ConvGeometry) -> Bool {
        g.group == 1 && g.strideH == 1 && g.strideW == 1 && g.dilationH == 1 && g.dilationW == 1
    }

    /// Floats of scratch the direct kernel needs (one zero-bordered image: Cin planes of
    /// (outH + kH − 1) rows of outW rounded up to ILK_CONV_SPAN, + kW − 1), saturating.
    @usableFromInline
    static func directWorkspaceCount(_ g: ConvGeometry) -> Int {
        let span = Int(ILK_CONV_SPAN)
        let rowFloats = (g.outW + span - 1) / span * span + g.kW - 1   // sizes ≤ Limits.maxDimension
        return saturatingProduct(g.channelsIn, saturatingProduct(g.outH + g.kH - 1, rowFloats))
    }

    /// y = activation(conv(x) + bias) by the direct kernel (`ilk_conv2d_direct`) when the CPU level
    /// has one (avx2, avx512) and `directPossible(g)`; false (nothing written) otherwise. Relu, leaky
    /// relu and identity are applied in the kernel's store; other activations in a pass after it.
    /// Each value is Σ over (ci, i, j) of FMAs in that order, + bias: the im2col + GEMM path's value
    /// within float32 rounding, the same at every batch size and thread split. `workspace` holds
    /// `directWorkspaceCount(g)` floats.
    @usableFromInline
    static func directForward(x: UnsafePointer<Float>, batch: Int, geometry g: ConvGeometry,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: Activation,
                              y: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>) -> Bool {
        guard directPossible(g) else { return false }
        let c = Kernels.cKernel(activation, .inference)
        let fused = c != nil && c!.code != ILK_TANH && c!.code != ILK_SIGMOID   // (the kernel fuses the ReLUs)
        let (code, alpha) = fused ? c! : (ILK_IDENTITY, 0)
        let call = DirectCall(g: g, weight: weight, bias: bias, code: code, alpha: alpha, workspace: workspace)
        // One image's rows on several threads when the pool is free (not inside a split batch) and the
        // image has the work: cnn2d at batch 1 on 2 threads.
        let threads = Engine.Threads.count
        let parts = threads > 1 ? Swift.min(threads, Engine.WorkerPool.maxParts, g.outH,
                                            Conv.saturatingProduct(g.outputCount, 2 * g.channelsIn * g.kH * g.kW) / minRowsWork) : 1
        if parts > 1, Kernels.cpuLevel != .baseline {
            let job = RowsJob.shared
            for n in 0..<batch {
                let xn = x + n * g.inputCount, yn = y + n * g.outputCount
                // the zero-bordered copy once, on this thread; the parts share it
                guard call.rows(xn, batch: 1, yn, 0, 0, pad: true) else { return false }
                let ran = Engine.WorkerPool.shared.tryRun(job, parts: parts) { m in job.set(call, x: xn, y: yn, parts: m) }
                if !ran { _ = call.rows(xn, batch: 1, yn, 0, g.outH, pad: false) }
            }
        } else {
            guard call.rows(x, batch: batch, y, 0, g.outH, pad: true) else { return false }
        }
        if !fused && activation != .identity { Kernels.activate(activation, y, count: batch * g.outputCount) }
        return true
    }

    /// Flops of one image's convolution per thread, at least, for its rows to be split (with the
    /// pool's spin a hand-off costs a few microseconds; 1 M flops is about 10 µs on one core).
    static let minRowsWork = 1_000_000

    /// What one direct convolution call passes to the C kernel besides the images.
    struct DirectCall {
        let g: ConvGeometry
        let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?
        let code: Int32, alpha: Float
        let workspace: UnsafeMutablePointer<Float>

        /// `ilk_conv2d_direct_rows`: output rows r0 ..< r1 of `batch` images at x (pad: make each
        /// image's zero-bordered copy in the workspace first; without: batch 1, the copy made already).
        func rows(_ x: UnsafePointer<Float>, batch: Int, _ y: UnsafeMutablePointer<Float>, _ r0: Int, _ r1: Int,
                  pad: Bool) -> Bool {
            ilk_conv2d_direct_rows(x, Int64(batch), Int64(g.channelsIn), Int64(g.inH), Int64(g.inW), weight, bias,
                                   Int64(g.channelsOut), Int64(g.kH), Int64(g.kW), Int64(g.padTop), Int64(g.padLeft),
                                   Int64(g.outH), Int64(g.outW), code, alpha, y, workspace, Int64(r0), Int64(r1),
                                   pad ? 1 : 0) != 0
        }
    }

    /// The rows of one image in parts (`directForward`): one object, used only while the pool's
    /// submit lock is held (`tryRun` sets it through `using` before any part runs), so never by two
    /// calls at once, and nothing is allocated per call.
    final class RowsJob: Engine.ParallelJob, @unchecked Sendable {
        static let shared = RowsJob()
        private var call: DirectCall? = nil
        private var x: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>? = nil
        private(set) var parts = 1

        func set(_ call: DirectCall, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, parts: Int) {
            self.call = call; self.x = x; self.y = y; self.parts = parts
        }

        /// Rows [oh·k/parts, oh·(k+1)/parts) on the shared zero-bordered copy.
        func runPart(_ k: Int) {
            guard let call, let x, let y else { return }
            let oh = call.g.outH
            _ = call.rows(x, batch: 1, y, oh * k / parts, oh * (k + 1) / parts, pad: false)
        }
    }

    /// Floats of scratch `forward` needs for `batch` samples (also enough for any smaller batch).
    /// Saturates at Int.max (a count the work-space limit then refuses) instead of overflowing.
    /// A shape the direct kernel takes gets room for either path (the CPU level decides at run time).
    @inlinable
    public static func workspaceCount(geometry g: ConvGeometry, batch: Int) -> Int {
        let gemm = gemmWorkspaceCount(geometry: g, batch: batch)
        return directFits(g) ? Swift.max(gemm, directWorkspaceCount(g)) : gemm
    }

    @inlinable
    static func gemmWorkspaceCount(geometry g: ConvGeometry, batch: Int) -> Int {
        if g.isDepthwise { return 0 }
        let b = samplesPerGEMM(g, batch: batch)
        let k = g.channelsIn / g.group * g.kernelSpatialCount   // ≤ weightCount ≤ 2^40
        let m = g.channelsOut / g.group
        let p = g.outputSpatialCount
        if b == 1 { return isPointwise(g) ? 0 : saturatingProduct(k, outputRowsPerTile(g) * g.outW) }
        return saturatingProduct(k + m, b * p)   // b · p ≤ max(p, targetColumns)
    }

    @inlinable
    static func saturatingProduct(_ a: Int, _ b: Int) -> Int {
        let (p, o) = a.multipliedReportingOverflow(by: b)
        return o ? Int.max : p
    }

    /// y = activation(conv(x, weight) + bias); layouts and preconditions in the file header.
    @inlinable
    public static func forward(x: UnsafePointer<Float>, batch: Int, geometry g: ConvGeometry,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               activation: Activation, y: UnsafeMutablePointer<Float>,
                               workspace: UnsafeMutablePointer<Float>) {
        if batch <= 0 { return }
        if directFits(g), directForward(x: x, batch: batch, geometry: g, weight: weight, bias: bias,
                                        activation: activation, y: y, workspace: workspace) { return }
        if g.isDepthwise {
            depthwise(x: x, batch: batch, geometry: g, weight: weight, bias: bias, activation: activation, y: y)
            return
        }
        let cg = g.channelsIn / g.group           // input channels per group
        let m = g.channelsOut / g.group           // output channels per group
        let kk = g.kernelSpatialCount
        let k = cg * kk                           // GEMM inner dimension
        let p = g.outputSpatialCount
        let inP = g.inputSpatialCount
        let b = samplesPerGEMM(g, batch: batch)
        let pointwise = isPointwise(g)
        let rowsPerTile = outputRowsPerTile(g)
        let map = g.columns

        if b == 1 {
            for n in 0..<batch {
                for gi in 0..<g.group {
                    let xs = x + (n * g.channelsIn + gi * cg) * inP
                    let ys = y + (n * g.channelsOut + gi * m) * p
                    if pointwise {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(p), Int32(k),
                                    1, weight + gi * m * k, Int32(k), xs, Int32(p), 0, ys, Int32(p))
                        biasActivateColumns(activation, ys, channels: m, p: p, start: 0, count: p,
                                            bias: bias.map { $0 + gi * m })
                        continue
                    }
                    // Tiles of output rows keep the im2col block and its slice of y in cache; each
                    // tile's GEMM writes straight into y (ldc = P), and bias + activation follow
                    // on the tile while it is still in cache.
                    var r0 = 0
                    while r0 < g.outH {
                        let r1 = min(g.outH, r0 + rowsPerTile)
                        let cols = (r1 - r0) * g.outW
                        im2col(x: xs, channels: cg, map: map, rowStart: r0, rowEnd: r1, col: workspace, ld: cols)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(cols), Int32(k),
                                    1, weight + gi * m * k, Int32(k), workspace, Int32(cols), 0,
                                    ys + r0 * g.outW, Int32(p))
                        biasActivateColumns(activation, ys, channels: m, p: p, start: r0 * g.outW, count: cols,
                                            bias: bias.map { $0 + gi * m })
                        r0 = r1
                    }
                }
            }
            return
        }

        // Several samples per GEMM: col is k × (b·p), the GEMM result c is m × (b·p); the copy back into
        // y's N × Cout × P layout also adds the bias and applies the activation.
        let col = workspace
        let c = workspace + k * b * p
        var n0 = 0
        while n0 < batch {
            let nb = min(b, batch - n0)
            let ld = nb * p
            for gi in 0..<g.group {
                for s in 0..<nb {
                    im2col(x: x + ((n0 + s) * g.channelsIn + gi * cg) * inP, channels: cg, map: map,
                           rowStart: 0, rowEnd: g.outH, col: col + s * p, ld: ld)
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(ld), Int32(k),
                            1, weight + gi * m * k, Int32(k), col, Int32(ld), 0, c, Int32(ld))
                for s in 0..<nb {
                    let ys = y + ((n0 + s) * g.channelsOut + gi * m) * p
                    for o in 0..<m {
                        let src = c + o * ld + s * p, dst = ys + o * p
                        let bv = bias?[gi * m + o] ?? 0
                        storeBiasActivate(activation, src, dst, count: p, bias: bv)
                    }
                }
            }
            n0 += nb
        }
    }

    /// For channels c < `channels` of y (`p` values each): y[c, start ..< start + count] =
    /// act(y[c, …] + bias[c]) (bias 0 when nil).
    @inlinable @inline(__always)
    static func biasActivateColumns(_ act: Activation, _ y: UnsafeMutablePointer<Float>, channels: Int, p: Int,
                                    start: Int, count: Int, bias: UnsafePointer<Float>?) {
        for c in 0..<channels {
            let yc = y + c * p + start
            if let bias {
                storeBiasActivate(act, UnsafePointer(yc), yc, count: count, bias: bias[c])
            } else {
                Kernels.activate(act, yc, count: count)
            }
        }
    }

    /// dst[i] = act(src[i] + bias).
    @inlinable @inline(__always)
    static func storeBiasActivate(_ act: Activation, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                  count: Int, bias bv: Float) {
        if Kernels.cBiasActivate(act, src, dst, count: count, bias: bv) { return }
        switch act {
        case .identity: for i in 0..<count { dst[i] = src[i] + bv }
        case .relu: for i in 0..<count { let v = src[i] + bv; dst[i] = v > 0 ? v : 0 }
        case .leakyRelu(let a): for i in 0..<count { let v = src[i] + bv; dst[i] = v >= 0 ? v : a * v }
        default:
            for i in 0..<count { dst[i] = src[i] + bv }
            Kernels.activate(act, dst, count: count)
        }
    }

    /// Writes the im2col matrix of `channels` image channels (layout in `ColumnMap`): row
    /// (c·kH + i)·kW + j, column oh·outW + ow (0 in the padding). Rows are `ld` values apart. Only
    /// output rows `rowStart ..< rowEnd` are written (column (oh - rowStart)·outW + ow).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func im2col<T: Real>(x: UnsafePointer<T>, channels: Int, map g: ColumnMap,
                                       rowStart: Int, rowEnd: Int, col: UnsafeMutablePointer<T>, ld: Int) {
        let inH = g.imageH, inW = g.imageW, outW = g.outW
        let sH = g.strideH, sW = g.strideW
        let kk = g.kH * g.kW
        // The valid ranges depend on the kernel tap only: computed once per tap, not per channel.
        for i in 0..<g.kH {
            let hOff = i * g.dilationH - g.padTop
            var (ohLo, ohHi) = convValidRange(offset: hOff, stride: sH, inSize: inH, outSize: g.outH)
            ohLo = min(max(ohLo, rowStart), rowEnd); ohHi = min(max(ohHi, ohLo), rowEnd)
            for j in 0..<g.kW {
                let wOff = j * g.dilationW - g.padLeft
                let (lo, hi) = convValidRange(offset: wOff, stride: sW, inSize: inW, outSize: outW)
                for c in 0..<channels {
                    let xc = x + c * inH * inW
                    let row = col + (c * kk + i * g.kW + j) * ld - rowStart * outW
                    if ohLo > rowStart { fillZero(row + rowStart * outW, count: (ohLo - rowStart) * outW) }
                    if ohHi < rowEnd { fillZero(row + ohHi * outW, count: (rowEnd - ohHi) * outW) }
                    for oh in ohLo..<ohHi {
                        let dst = row + oh * outW
                        let src = xc + (oh * sH + hOff) * inW + wOff
                        for ow in 0..<lo { dst[ow] = 0 }
                        if sW == 1 {
                            copyElements(dst + lo, src + lo, count: hi - lo)
                        } else {
                            for ow in lo..<hi { dst[ow] = src[ow * sW] }
                        }
                        for ow in hi..<outW { dst[ow] = 0 }
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col` over all output positions (rows `outH·outW` values apart):
    /// image[c, …] += col[(c·kH + i)·kW + j, oh·outW + ow] for every tap inside the image, in the
    /// order c, i, j, oh, ow.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func col2im<T: Real>(col: UnsafePointer<T>, channels: Int, map g: ColumnMap,
                                       image: UnsafeMutablePointer<T>) {
        let p = g.outH * g.outW, inW = g.imageW, sH = g.strideH, sW = g.strideW
        for c in 0..<channels {
            let xc = image + c * g.imageH * inW
            for i in 0..<g.kH {
                let hOff = i * g.dilationH - g.padTop
                let (ohLo, ohHi) = convValidRange(offset: hOff, stride: sH, inSize: g.imageH, outSize: g.outH)
                for j in 0..<g.kW {
                    let wOff = j * g.dilationW - g.padLeft
                    let (lo, hi) = convValidRange(offset: wOff, stride: sW, inSize: inW, outSize: g.outW)
                    let row = col + ((c * g.kH + i) * g.kW + j) * p
                    for oh in ohLo..<ohHi {
                        let src = row + oh * g.outW
                        let dst = xc + (oh * sH + hOff) * inW + wOff
                        if sW == 1 {
                            for ow in lo..<hi { dst[ow] += src[ow] }
                        } else {
                            for ow in lo..<hi { dst[ow * sW] += src[ow] }
                        }
                    }
                }
            }
        }
    }

    /// dst[0 ..< count] = src[0 ..< count]: rows under 256 bytes inline (a memmove call per short row
    /// cost more than the copy), 32 bytes per step, then the tail; longer rows by memmove (wider vectors).
    @inlinable @inline(__always)
    static func copyElements<T>(_ dst: UnsafeMutablePointer<T>, _ src: UnsafePointer<T>, count n: Int) {
        let rd = UnsafeMutableRawPointer(dst), rs = UnsafeRawPointer(src)
        let bytes = n * MemoryLayout<T>.stride
        if bytes >= 256 { dst.update(from: src, count: n); return }
        var i = 0
        while i + 32 <= bytes {
            let a = rs.loadUnaligned(fromByteOffset: i, as: SIMD4<UInt32>.self)
            let b = rs.loadUnaligned(fromByteOffset: i + 16, as: SIMD4<UInt32>.self)
            rd.storeBytes(of: a, toByteOffset: i, as: SIMD4<UInt32>.self)
            rd.storeBytes(of: b, toByteOffset: i + 16, as: SIMD4<UInt32>.self)
            i += 32
        }
        var k = i / MemoryLayout<T>.stride
        while k < n { dst[k] = src[k]; k += 1 }
    }

    /// dst[0 ..< count] = 0 inline (short runs in im2col).
    @inlinable @inline(__always)
    static func fillZero<T: Real>(_ dst: UnsafeMutablePointer<T>, count n: Int) {
        if n > 64 { dst.update(repeating: 0, count: n); return }
        for i in 0..<n { dst[i] = 0 }
    }

    /// Floats of scratch `forwardPerSample` and `backward` need (independent of the batch).
    @inlinable
    public static func perSampleWorkspaceCount(geometry g: ConvGeometry) -> Int {
        saturatingProduct(2 * (g.channelsIn / g.group) * g.kernelSpatialCount, g.outputSpatialCount)
    }

    /// y = conv(x, weight) + bias, the differentiable engine's order of operations: per sample and
    /// group an im2col and one GEMM (β = 0) into y, then the bias added. No fusion, no batching of
    /// samples, so a sample's result does not depend on the batch. `workspace` holds
    /// perSampleWorkspaceCount(geometry:) values.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forwardPerSample<T: Real>(x: UnsafePointer<T>, batch: Int, geometry g: ConvGeometry,
                                                 weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                                 y: UnsafeMutablePointer<T>, workspace: UnsafeMutablePointer<T>) {
        let cg = g.channelsIn / g.group, mg = g.channelsOut / g.group
        let kc = cg * g.kernelSpatialCount, p = g.outputSpatialCount, inP = g.inputSpatialCount
        let map = g.columns
        for s in 0..<batch {
            for gr in 0..<g.group {
                im2col(x: x + (s * g.channelsIn + gr * cg) * inP, channels: cg, map: map,
                       rowStart: 0, rowEnd: g.outH, col: workspace, ld: p)
                T.gemm(transA: false, transB: false, m: mg, n: p, k: kc, alpha: 1, a: weight + gr * mg * kc, lda: kc,
                       b: workspace, ldb: p, beta: 0, c: y + (s * g.channelsOut + gr * mg) * p, ldc: p)
            }
            if let bias {
                for o in 0..<g.channelsOut {
                    let yo = y + (s * g.channelsOut + o) * p, b = bias[o]
                    for i in 0..<p { yo[i] += b }
                }
            }
        }
    }

    /// The adjoint of `forwardPerSample`: gw += dy ⋆ x, gb += Σ dy, gx += col2im(Wᵀ·dy) (each only
    /// when given). `workspace` holds perSampleWorkspaceCount(geometry:) values.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(x: UnsafePointer<T>, batch: Int, geometry g: ConvGeometry,
                                         weight: UnsafePointer<T>, gy: UnsafePointer<T>,
                                         gx: UnsafeMutablePointer<T>?, gw: UnsafeMutablePointer<T>?,
                                         gb: UnsafeMutablePointer<T>?, workspace: UnsafeMutablePointer<T>) {
        let cg = g.channelsIn / g.group, mg = g.channelsOut / g.group
        let kc = cg * g.kernelSpatialCount, p = g.outputSpatialCount, inP = g.inputSpatialCount
        let map = g.columns
        let col = workspace, dcol = workspace + kc * p
        for s in 0..<batch {
            for gr in 0..<g.group {
                let gys = gy + (s * g.channelsOut + gr * mg) * p
                if let gw {
                    im2col(x: x + (s * g.channelsIn + gr * cg) * inP, channels: cg, map: map,
                           rowStart: 0, rowEnd: g.outH, col: col, ld: p)
                    T.gemm(transA: false, transB: true, m: mg, n: kc, k: p, alpha: 1, a: gys, lda: p, b: col, ldb: p,
                           beta: 1, c: gw + gr * mg * kc, ldc: kc)
                }
                if let gx {
                    T.gemm(transA: true, transB: false, m: kc, n: p, k: mg, alpha: 1, a: weight + gr * mg * kc, lda: kc,
                           b: gys, ldb: p, beta: 0, c: dcol, ldc: p)
                    col2im(col: dcol, channels: cg, map: map, image: gx + (s * g.channelsIn + gr * cg) * inP)
                }
            }
            if let gb {
                for o in 0..<g.channelsOut {
                    let go = gy + (s * g.channelsOut + o) * p
                    var acc: T = 0
                    for i in 0..<p { acc += go[i] }
                    gb[o] += acc
                }
            }
        }
    }

    /// group = Cin: output channel co reads input channel co / (Cout / Cin) only.
    @inlinable
    static func depthwise(x: UnsafePointer<Float>, batch: Int, geometry g: ConvGeometry,
                          weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                          activation: Activation, y: UnsafeMutablePointer<Float>) {
        let mult = g.channelsOut / g.channelsIn
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let inH = g.inH, inW = g.inW, outH = g.outH, outW = g.outW
        let sH = g.strideH, sW = g.strideW, kH = g.kH, kW = g.kW
        for n in 0..<batch {
            for co in 0..<g.channelsOut {
                let xc = x + (n * g.channelsIn + co / mult) * inP
                let yc = y + (n * g.channelsOut + co) * p
                let wk = weight + co * kH * kW
                yc.update(repeating: bias?[co] ?? 0, count: p)
                for i in 0..<kH {
                    let hOff = i * g.dilationH - g.padTop
                    let (ohLo, ohHi) = convValidRange(offset: hOff, stride: sH, inSize: inH, outSize: outH)
                    for j in 0..<kW {
                        let wv = wk[i * kW + j]
                        let wOff = j * g.dilationW - g.padLeft
                        let (lo, hi) = convValidRange(offset: wOff, stride: sW, inSize: inW, outSize: outW)
                        for oh in ohLo..<ohHi {
                            let dst = yc + oh * outW
                            let src = xc + (oh * sH + hOff) * inW + wOff
                            if sW == 1 {
                                for ow in lo..<hi { dst[ow] += wv * src[ow] }
                            } else {
                                for ow in lo..<hi { dst[ow] += wv * src[ow * sW] }
                            }
                        }
                    }
                }
                Kernels.activate(activation, yc, count: p)
            }
        }
    }
}

/// Validated sizes of a 1-D or 2-D transposed convolution (same 2-D normalisation as ConvGeometry).
/// Plain integers only, like ConvGeometry.
public struct ConvTransposeGeometry: Equatable, Sendable, BitwiseCopyable {
    public let channelsIn: Int
    public let channelsOut: Int
    public let group: Int
    /// 1 or 2.
    public let spatialRank: Int

    public let inH: Int, inW: Int
    public let kH: Int, kW: Int
    public let strideH: Int, strideW: Int
    public let dilationH: Int, dilationW: Int
    public let padTop: Int, padLeft: Int
    public let padBottom: Int, padRight: Int
    public let outputPaddingH: Int, outputPaddingW: Int
    public let outH: Int, outW: Int

    public var inputSize: [Int] { spatialList(inH, inW) }
    public var kernelSize: [Int] { spatialList(kH, kW) }
    public var strides: [Int] { spatialList(strideH, strideW) }
    public var dilations: [Int] { spatialList(dilationH, dilationW) }
    public var padsBegin: [Int] { spatialList(padTop, padLeft) }
    public var padsEnd: [Int] { spatialList(padBottom, padRight) }
    public var outputPadding: [Int] { spatialList(outputPaddingH, outputPaddingW) }
    public var outputSize: [Int] { spatialList(outH, outW) }
    private func spatialList(_ h: Int, _ w: Int) -> [Int] { spatialRank == 2 ? [h, w] : [w] }
    // Counts checked (each at most Limits.maxElements) by init.
    public let inputSpatialCount: Int
    public let outputSpatialCount: Int
    public var kernelSpatialCount: Int { kH * kW }
    /// Cin · (Cout / group) · kernel.
    public let weightCount: Int
    public let inputCount: Int
    public let outputCount: Int

    public init(channelsIn: Int, channelsOut: Int, group: Int = 1, inputSize: [Int], kernelSize: [Int],
                strides: [Int]? = nil, dilations: [Int]? = nil, padsBegin: [Int]? = nil,
                padsEnd: [Int]? = nil, outputPadding: [Int]? = nil) throws(InLoopError) {
        let r = inputSize.count
        guard r == 1 || r == 2 else {
            throw InLoopError(.unsupported, "transposed convolution with \(r) spatial dimensions (input spatial shape \(Tensor.format(inputSize))): only 1-D and 2-D are supported")
        }
        let s = strides ?? [Int](repeating: 1, count: r)
        let d = dilations ?? [Int](repeating: 1, count: r)
        let pb = padsBegin ?? [Int](repeating: 0, count: r)
        let pe = padsEnd ?? [Int](repeating: 0, count: r)
        let op = outputPadding ?? [Int](repeating: 0, count: r)
        try ConvGeometry.checkCounts(r, ["kernel_shape": kernelSize, "strides": s, "dilations": d,
                                         "pads (begin)": pb, "pads (end)": pe, "output_padding": op])
        try ConvGeometry.checkLimits(["input spatial shape": inputSize, "kernel_shape": kernelSize, "strides": s, "dilations": d,
                                      "pads": pb + pe, "output_padding": op, "channels": [channelsIn, channelsOut], "group": [group]])
        guard channelsIn > 0, channelsOut > 0 else {
            throw InLoopError(.format, "transposed convolution channels must be positive, got \(channelsIn) in, \(channelsOut) out")
        }
        guard group > 0, channelsIn % group == 0, channelsOut % group == 0 else {
            throw InLoopError(.format, "transposed convolution group \(group) must be positive and divide both the input channels (\(channelsIn)) and the output channels (\(channelsOut))")
        }
        var out = [Int](repeating: 0, count: r)
        for i in 0..<r {
            guard inputSize[i] > 0 else { throw InLoopError(.format, "transposed convolution input spatial shape \(Tensor.format(inputSize)) has a non-positive size") }
            guard kernelSize[i] > 0, s[i] > 0, d[i] > 0 else {
                throw InLoopError(.format, "transposed convolution kernel_shape \(Tensor.format(kernelSize)), strides \(Tensor.format(s)) and dilations \(Tensor.format(d)) must be positive")
            }
            guard pb[i] >= 0, pe[i] >= 0 else { throw InLoopError(.format, "transposed convolution pads must be non-negative, got \(Tensor.format(pb + pe))") }
            guard op[i] >= 0, op[i] < max(s[i], d[i]) else {
                throw InLoopError(.format, "transposed convolution output_padding \(Tensor.format(op)) must be non-negative and smaller than the stride or the dilation")
            }
            // Both products are below 2^62 (sizes and attributes are at most 2^31 - 1); their sum is checked.
            let grown = s[i] * (inputSize[i] - 1), span = (kernelSize[i] - 1) * d[i]
            let what = "transposed convolution output size along spatial axis \(i)"
            out[i] = try Limits.sum(try Limits.sum(grown, span, what), op[i] + 1 - pb[i] - pe[i], what)
            guard out[i] > 0 else {
                throw InLoopError(.format, "transposed convolution output size \(out[i]) along spatial axis \(i) is not positive (pads \(Tensor.format(pb + pe)) too large)")
            }
        }
        self.channelsIn = channelsIn; self.channelsOut = channelsOut; self.group = group; spatialRank = r
        let h = r == 2 ? 0 : -1, w = r - 1
        inH = h < 0 ? 1 : inputSize[h]; inW = inputSize[w]
        kH = h < 0 ? 1 : kernelSize[h]; kW = kernelSize[w]
        strideH = h < 0 ? 1 : s[h]; strideW = s[w]
        dilationH = h < 0 ? 1 : d[h]; dilationW = d[w]
        padTop = h < 0 ? 0 : pb[h]; padLeft = pb[w]
        padBottom = h < 0 ? 0 : pe[h]; padRight = pe[w]
        outputPaddingH = h < 0 ? 0 : op[h]; outputPaddingW = op[w]
        outH = h < 0 ? 1 : out[h]; outW = out[w]
        (inputSpatialCount, outputSpatialCount, weightCount, inputCount, outputCount) = try ConvGeometry.counts(
            channelsIn: channelsIn, channelsOut: channelsOut, input: [inH, inW], output: [outH, outW],
            weightShape: [channelsIn, channelsOut / group, kH, kW])
    }
}

public enum ConvTranspose {
    /// Floats of scratch `forward` needs (independent of the batch).
    @inlinable
    public static func workspaceCount(geometry g: ConvTransposeGeometry, batch: Int) -> Int {
        Conv.saturatingProduct((g.channelsOut / g.group) * g.kernelSpatialCount, g.inputSpatialCount)
    }

    /// y = activation(convTranspose(x, weight) + bias): per sample and group one GEMM
    /// col = W_gᵀ · x_g (rows (co·kH + i)·kW + j, one column per input position), then col2im
    /// scatter-adds col into y, which was preset to the bias.
    /// Generic over Float and Double (the same GEMM and scatter order in both); `numerics` picks the
    /// activation variant.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, batch: Int, geometry g: ConvTransposeGeometry,
                                        weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                        activation: Activation, y: UnsafeMutablePointer<T>,
                                        workspace: UnsafeMutablePointer<T>, numerics: Numerics = .inference) {
        let cg = g.channelsIn / g.group, m = g.channelsOut / g.group
        let kk = g.kernelSpatialCount
        let rows = m * kk
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let map = g.columns
        for n in 0..<batch {
            let yn = y + n * g.channelsOut * p
            for co in 0..<g.channelsOut { (yn + co * p).update(repeating: bias?[co] ?? 0, count: p) }
            for gi in 0..<g.group {
                let xs = x + (n * g.channelsIn + gi * cg) * inP
                // weight rows of this group: cg × rows, transposed into rows × cg.
                T.gemm(transA: true, transB: false, m: rows, n: inP, k: cg, alpha: 1, a: weight + gi * cg * rows, lda: rows,
                       b: xs, ldb: inP, beta: 0, c: workspace, ldc: inP)
                Conv.col2im(col: UnsafePointer(workspace), channels: m, map: map, image: yn + gi * m * p)
            }
            if activation != .identity { Kernels.activate(activation, yn, count: g.channelsOut * p, numerics: numerics) }
        }
    }

    /// The adjoint of `forward` (identity activation): with dcol = im2col(gy) over the same window map,
    /// gx += W_g · dcol, gw += x_g · dcolᵀ, gb += Σ gy (each only when given). `workspace` holds
    /// workspaceCount(geometry:batch:) values.
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(x: UnsafePointer<T>, batch: Int, geometry g: ConvTransposeGeometry,
                                         weight: UnsafePointer<T>, gy: UnsafePointer<T>,
                                         gx: UnsafeMutablePointer<T>?, gw: UnsafeMutablePointer<T>?,
                                         gb: UnsafeMutablePointer<T>?, workspace: UnsafeMutablePointer<T>) {
        let cg = g.channelsIn / g.group, m = g.channelsOut / g.group
        let rows = m * g.kernelSpatialCount
        let inP = g.inputSpatialCount, p = g.outputSpatialCount
        let map = g.columns
        for n in 0..<batch {
            for gi in 0..<g.group where gx != nil || gw != nil {
                Conv.im2col(x: gy + (n * g.channelsOut + gi * m) * p, channels: m, map: map,
                            rowStart: 0, rowEnd: g.inH, col: workspace, ld: inP)
                let off = (n * g.channelsIn + gi * cg) * inP
                if let gx {
                    T.gemm(transA: false, transB: false, m: cg, n: inP, k: rows, alpha: 1, a: weight + gi * cg * rows, lda: rows,
                           b: workspace, ldb: inP, beta: 1, c: gx + off, ldc: inP)
                }
                if let gw {
                    T.gemm(transA: false, transB: true, m: cg, n: rows, k: inP, alpha: 1, a: x + off, lda: inP,
                           b: workspace, ldb: inP, beta: 1, c: gw + gi * cg * rows, ldc: rows)
                }
            }
            if let gb {
                for o in 0..<g.channelsOut {
                    let go = gy + (n * g.channelsOut + o) * p
                    var acc: T = 0
                    for i in 0..<p { acc += go[i] }
                    gb[o] += acc
                }
            }
        }
    }
}

// MARK: family nd (depth columns of 3-D convolution)

/// The depth part of a 3-D convolution's im2col: x (N, C, D, HW) → columns (N, od, C, kd, HW), where
/// columns[n, o, c, a] = x[n, c, o·stride + a·dilation − padBegin] (zeros outside 0..<D). A 2-D
/// convolution of the columns (N·od samples, C·kd channels; the weight [M, C/g, kd, kh, kw] read as
/// [M, C/g·kd, kh, kw]) is then the 3-D convolution. Generic over Float and Double; the adjoint adds
/// the columns back. Geometry (ints, from the plan): [C, D, HW, od, kd, stride, dilation, padBegin].
/// No allocation; sizes caller-validated.
public enum DepthColumns {
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func forward<T: Real>(x: UnsafePointer<T>, batch: Int, geometry p: UnsafeBufferPointer<Int>,
                                        columns: UnsafeMutablePointer<T>) {
        let c = p[0], d = p[1], hw = p[2], od = p[3], kd = p[4], s = p[5], dil = p[6], pb = p[7]
        var dst = columns
        for n in 0..<batch {
            for o in 0..<od {
                for ch in 0..<c {
                    for a in 0..<kd {
                        let z = o * s + a * dil - pb
                        if z >= 0 && z < d {
                            dst.update(from: x + ((n * c + ch) * d + z) * hw, count: hw)
                        } else {
                            dst.update(repeating: 0, count: hw)
                        }
                        dst += hw
                    }
                }
            }
        }
    }

    /// gx (+)= the adjoint of `forward` (zeroed first unless `accumulate`).
    @inlinable
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func backward<T: Real>(columns: UnsafePointer<T>, batch: Int, geometry p: UnsafeBufferPointer<Int>,
                                         gx: UnsafeMutablePointer<T>, accumulate: Bool) {
        let c = p[0], d = p[1], hw = p[2], od = p[3], kd = p[4], s = p[5], dil = p[6], pb = p[7]
        if !accumulate { gx.update(repeating: 0, count: batch * c * d * hw) }
        var src = columns
        for n in 0..<batch {
            for o in 0..<od {
                for ch in 0..<c {
                    for a in 0..<kd {
                        let z = o * s + a * dil - pb
                        if z >= 0 && z < d {
                            let g = gx + ((n * c + ch) * d + z) * hw
                            for i in 0..<hw { g[i] += src[i] }
                        }
                        src += hw
                    }
                }
            }
        }
    }
}
