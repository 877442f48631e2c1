/// Family nd (issue 10, phase 6 of `docs/ENGINE.md`): 3-D Conv and MaxPool/AveragePool (`Conv3D`,
/// `Pool3D`, `ConvTranspose3D`, below: lowered to the 2-D steps), Dropout's mask (in
/// `DropoutOp`), and Resize in its linear and cubic modes. The op
/// itself (attributes, output shapes, nearest mode) is `ResizeOp`/`UpsampleOp` in `ResizeOps.swift`;
/// this file adds the modes' attributes and their lowering to one step, `resizeTaps`
/// (`Kernels/Resize.swift`, `TapResize`): per resized axis, each output position reads a window of
/// taps (2 for linear, 4 for cubic) with weights computed here when the plan is compiled, following
/// the ONNX reference implementation (`onnx.reference.ops.op_resize`): the coordinate transformation,
/// a ratio in (0, 1], the window of the n input positions nearest the source coordinate (edge values
/// repeated past the ends), `cubic_coeff_a` and `exclude_outside`. The step is linear in x: its
/// tangent is itself and its adjoint a scatter-add with the same weights (`resizeTapsGradient`).
///
/// align_corners divides by scale·in as the reference does (its `output_width`), not by the integer
/// output length: where scale·in is not an integer (in 7, scale 0.6) onnxruntime differs from both.
///
/// `antialias` = 1 (linear and cubic): when downsampling (scale s < 1) the filter is stretched by 1/s,
/// as the reference's `_linear_coeffs_antialias` / `_cubic_coeffs_antialias` do: 2 − 2·(⌊−c/s⌋ + 1)
/// taps (c = 1 linear, 2 cubic) with weights f(s·(i − ratio)) normalised to sum 1, at the taps' nearest
/// positions (at most `maxTaps` per output value).
///
/// Refused: coordinate_transformation_mode tf_crop_and_resize (refused by the
/// attribute parser for every mode) and tf_half_pixel_for_nearest (a nearest-only mode).

/// ONNX Resize `mode`.
public enum ResizeMode: String, Equatable, Sendable {
    case nearest, linear, cubic

    /// `mode` (bilinear/trilinear, as Upsample-era exporters spell it, are linear), `cubic_coeff_a`,
    /// `exclude_outside` and `antialias`, into `a`.
    static func parse(_ raw: [String: Engine.AttributeValue], into a: inout ResizeNearestAttributes) throws(InLoopError) {
        let name = try raw.string("mode") ?? "nearest"
        switch name.lowercased() {
        case "nearest": a.mode = .nearest
        case "linear", "bilinear", "trilinear": a.mode = .linear
        case "cubic", "bicubic": a.mode = .cubic
        default: throw InLoopError(.format, "attribute mode='\(name)' is not one of nearest, linear, cubic")
        }
        let c = try raw.float("cubic_coeff_a") ?? -0.75
        guard c.isFinite, abs(c) <= 1e3 else { throw InLoopError(.format, "attribute cubic_coeff_a = \(c) is out of range") }
        a.cubicCoefficient = c
        a.excludeOutside = try raw.int("exclude_outside", default: 0) != 0
        // MARK: family nodes (antialias; the nearest mode ignores it, as the reference does)
        let antialias = try raw.int("antialias", default: 0)
        a.antialias = a.mode != .nearest && antialias != 0
    }
}

enum InterpolatingResize {
    /// The most taps one output value may read (the product over the resized axes): 4 axes of cubic.
    static let maxTaps = 256
    /// The most entries of a step's geometry (indices and weights).
    static let maxGeometry = 1 << 24

    /// Taps, input indices (clamped to the axis) and weights of one axis, as the ONNX reference
    /// computes them (in Double): `scale` is the scale factor of the axis (from `scales`, or
    /// output/input when `sizes` is given).
    /// The taps of an antialiasing filter at scale s (the first relative position is 1 − taps/2), or
    /// nil when there are more than `maxTaps`.
    static func antialiasTaps(scale: Double, mode: ResizeMode) -> Int? {
        let s = Swift.min(scale, 1), support = mode == .cubic ? 2.0 : 1.0
        let start = (-support / s).rounded(.down) + 1
        guard start.isFinite, 2 - 2 * start <= Double(maxTaps) else { return nil }
        return 2 - 2 * Int(start)
    }

    static func axis(inLength n: Int, outLength m: Int, scale: Double, mode: ResizeMode, coordinates: ResizeCoordinateMode,
                     cubicA: Double, excludeOutside: Bool, antialias: Bool = false) -> (taps: Int, indices: [Int], weights: [Double]) {
        let taps = antialias ? antialiasTaps(scale: scale, mode: mode) ?? 2 : mode == .cubic ? 4 : 2
        let pad = taps / 2
        let outWidth = scale * Double(n)   // the reference's output_width (a float)
        var indices: [Int] = [], weights: [Double] = []
        indices.reserveCapacity(m * taps); weights.reserveCapacity(m * taps)
        for o in 0..<m {
            let xr = Double(o)
            let x: Double
            switch coordinates {
            case .alignCorners: x = outWidth == 1 ? 0 : xr * Double(n - 1) / (outWidth - 1)
            case .asymmetric: x = xr / scale
            case .pytorchHalfPixel: x = outWidth == 1 ? -0.5 : (xr + 0.5) / scale - 0.5
            case .halfPixelSymmetric:
                let adjustment = Double(m) / outWidth
                x = Double(n) / 2 * (1 - adjustment) + (xr + 0.5) / scale - 0.5
            case .halfPixel, .tfHalfPixelForNearest: x = (xr + 0.5) / scale - 0.5
            }
            let fl = x.rounded(.down)
            let ratio = x == fl ? 1 : x - fl
            // the window of the `taps` nearest positions of the edge-padded axis
            let left = (x == fl ? fl - 1 : fl) - Double(pad - 1)
            let startD = Swift.min(Swift.max(left, Double(-pad)), Double(n + pad - taps))
            let start = Int(startD)
            var c: [Double]
            if antialias {
                // f(s·(i − ratio)) for the relative positions i = 1 − taps/2 ..< 1 + taps/2, normalised
                let s = Swift.min(scale, 1), a = cubicA
                c = (0..<taps).map { k in
                    let t = abs(s * (Double(1 - pad + k) - ratio))
                    if mode == .linear { return Swift.max(0, 1 - t) }
                    if t <= 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
                    return t < 2 ? ((a * t - 5 * a) * t + 8 * a) * t - 4 * a : 0
                }
                let sum = c.reduce(0, +)
                if sum != 0 { c = c.map { $0 / sum } }
            } else if mode == .cubic {
                let a = cubicA, r = ratio, s = 1 - ratio
                c = [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                     ((a + 2) * r - (a + 3)) * r * r + 1,
                     ((a + 2) * s - (a + 3)) * s * s + 1,
                     ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a]
            } else {
                c = [1 - ratio, ratio]
            }
            if excludeOutside {
                var sum = 0.0
                for k in 0..<taps {
                    if start + k < 0 || start + k >= n { c[k] = 0 }
                    sum += c[k]
                }
                if sum != 0 { for k in 0..<taps { c[k] /= sum } }
            }
            for k in 0..<taps {
                indices.append(Swift.min(Swift.max(start + k, 0), n - 1))
                weights.append(c[k])
            }
        }
        return (taps, indices, weights)
    }

    /// One tap of weight 1 at the same position: the axis is not resized.
    static func isIdentity(_ t: (taps: Int, indices: [Int], weights: [Double]), length m: Int) -> Bool {
        for o in 0..<m {
            for k in 0..<t.taps {
                let i = t.indices[o * t.taps + k], w = t.weights[o * t.taps + k]
                if w != 0 && (i != o || w != 1) { return false }
            }
        }
        return true
    }

    static func lower(_ a: ResizeNearestAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        guard a.coordinateMode != .tfHalfPixelForNearest else {
            throw InLoopError(.unsupported, "coordinate_transformation_mode='tf_half_pixel_for_nearest' is for mode='nearest' only")
        }
        let x = try Engine.input(ctx.inputTypes, 0, "input")
        let out = ctx.outputTypes[0].shape
        var scales = [Double](repeating: 1, count: x.rank)
        let sizesGiven = a.sizesInput.map { k in ctx.hasInput(k) && ctx.inputTypes[k]?.shape != [Engine.SymInt(0)] } ?? false
        if !sizesGiven, let s = a.scales {
            for (i, v) in (a.axes ?? Array(0..<x.rank)).enumerated() where i < s.count {
                scales[try Engine.axis(v, rank: x.rank, "axes")] = Double(s[i])
            }
        } else {
            for d in 0..<x.rank { if let n = x.shape[d].known, let m = out[d].known, n != m { scales[d] = Double(m) / Double(n) } }
        }
        var first = -1
        var axes: [(taps: Int, indices: [Int], weights: [Double])] = []
        var total = 0, product = 1
        for d in 0..<x.rank {
            guard let n = x.shape[d].known, let m = out[d].known else {
                if first >= 0 { throw InLoopError(.unsupported, "axis \(d) of size \(x.shape[d]) follows a resized axis: its size must be known") }
                continue
            }
            if a.antialias, antialiasTaps(scale: scales[d], mode: a.mode) == nil {
                throw InLoopError(.unsupported, "antialiasing at scale \(scales[d]) reads more than \(maxTaps) input values per output value")
            }
            var t = axis(inLength: n, outLength: m, scale: scales[d], mode: a.mode, coordinates: a.coordinateMode,
                         cubicA: a.cubicCoefficient, excludeOutside: a.excludeOutside, antialias: a.antialias)
            if n == m, isIdentity(t, length: m) {
                if first < 0 { continue }
                t = (1, Array(0..<m), [Double](repeating: 1, count: m))
            }
            if first < 0 { first = d }
            axes.append(t)
            let (sum, o1) = total.addingReportingOverflow(m.multipliedReportingOverflow(by: 2 * t.taps).partialValue)
            product *= t.taps
            guard !o1, sum <= maxGeometry else {
                throw InLoopError(.outOfMemory, "the resize's interpolation tables need \(sum) entries (InLoop takes up to \(maxGeometry))")
            }
            guard product <= maxTaps else {
                throw InLoopError(.unsupported, "the resize reads \(product) input values per output value (InLoop takes up to \(maxTaps))")
            }
            total = sum
        }
        guard first >= 0 else { try ctx.alias(output: 0, input: 0); return }
        let inner = Array(first..<x.rank)
        var geometry = [inner.count]
        for d in inner { geometry.append(x.shape[d].known ?? 0) }
        for d in inner { geometry.append(out[d].known ?? 0) }
        for t in axes { geometry.append(t.taps) }
        for t in axes { geometry += t.indices }
        for t in axes { geometry += t.weights.map { Int(Int64(bitPattern: $0.bitPattern)) } }
        let outer = try ctx.extent(Array(x.shape[..<first]), "the axes before the first resized one")
        ctx.emit(.resizeTaps(geometry: ctx.ints(geometry), outer: outer), [try ctx.input(0), try ctx.output(0)])
    }
}

// MARK: - 3-D pooling

/// MaxPool and AveragePool over 3 spatial axes (N, C, D, H, W), lowered to two steps of the 2-D
/// pooling kernels (`Kernels/Pool.swift`), which is exact: the window is a box, so its maximum is the
/// maximum over depth of the (H, W) maxima, and its average (either count_include_pad: the divisor is
/// the product of the per-axis counts) the average over depth of the (H, W) averages. Step 1 pools
/// every depth slice over (H, W) (planes N·C·D); step 2 pools (D, oh·ow) with a (kd, 1) window
/// (planes N·C). Reverse and tangent are those of the two steps.
enum Pool3D {
    /// The two geometries and the output's spatial sizes [od, oh, ow].
    static func geometries(_ a: WindowAttributes, _ x: Engine.TensorType, _ what: String) throws(InLoopError)
        -> (hw: PoolGeometry, depth: PoolGeometry, out: [Int]) {
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(what) takes floating values, got \(x.dtype)") }
        guard let spatial = Array(x.shape.dropFirst(2)).known else {
            throw InLoopError(.unsupported, "input X has shape \(x.shape.formatted); the spatial sizes must be known when the plan is compiled")
        }
        guard let kernel = a.kernelShape, kernel.count == 3 else {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(a.kernelShape ?? [])) needs 3 values for input \(x.shape.formatted)")
        }
        let s = a.strides ?? [1, 1, 1], d = a.dilations ?? [1, 1, 1]
        guard s.count == 3, d.count == 3 else { throw InLoopError(.format, "strides and dilations need 3 values each") }
        let (pb, pe) = try a.autoPad.windowPads(a.pads, input: spatial, kernel: kernel, strides: s, dilations: d)
        let hw = try PoolGeometry(inputSize: Array(spatial[1...]), kernelSize: Array(kernel[1...]), strides: Array(s[1...]),
                                  dilations: Array(d[1...]), padsBegin: Array(pb[1...]), padsEnd: Array(pe[1...]), ceilMode: a.ceilMode)
        let depth = try PoolGeometry(inputSize: [spatial[0], hw.outputSpatialCount], kernelSize: [kernel[0], 1], strides: [s[0], 1],
                                     dilations: [d[0], 1], padsBegin: [pb[0], 0], padsEnd: [pe[0], 0], ceilMode: a.ceilMode)
        return (hw, depth, [depth.outputSize[0]] + hw.outputSize)
    }

    static func outputType(_ a: WindowAttributes, _ inputs: [Engine.TensorType?], _ what: String) throws(InLoopError) -> Engine.TensorType {
        let x = try Engine.input(inputs, 0, "input")
        let (_, _, out) = try geometries(a, x, what)
        return Engine.TensorType(x.dtype, [x.shape[0], x.shape[1]] + out.map { Engine.SymInt($0) })
    }

    static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext, max: Bool, what: String) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0, "input")
        let (hw, depth, _) = try geometries(a, x, what)
        let slices = try ctx.extent([x.shape[0], x.shape[1], x.shape[2]], "the depth slices (N·C·D) of input X")
        let planes = try ctx.extent([x.shape[0], x.shape[1]], "the planes (N·C) of input X")
        let mid = try ctx.extent([x.shape[0], x.shape[1], x.shape[2], Engine.SymInt(hw.outputSpatialCount)], "the pooled slices")
        let t = ctx.temporary(mid)
        if max {
            ctx.emit(.maxPool(geometry: ctx.store(hw), planes: slices), [try ctx.input(0), t])
            ctx.emit(.maxPool(geometry: ctx.store(depth), planes: planes), [t, try ctx.output(0)])
        } else {
            ctx.emit(.averagePool(geometry: ctx.store(hw), planes: slices, countIncludePad: a.countIncludePad), [try ctx.input(0), t])
            ctx.emit(.averagePool(geometry: ctx.store(depth), planes: planes, countIncludePad: a.countIncludePad), [t, try ctx.output(0)])
        }
    }
}

// MARK: - 3-D convolution

/// Conv over 3 spatial axes (N, C, D, H, W) on the 2-D convolution step: the depth columns
/// (`depthColumns`: (N, od, C, kd, H, W), zeros where the window leaves the depth axis) are N·od
/// samples of C·kd channels, convolved over (H, W) with the weight [M, C/g, kd, kh, kw] read as
/// [M, C/g·kd, kh, kw] (the same memory), into (N, od, M, oh·ow), then transposed to (N, M, od, oh, ow)
/// (`layoutCopy`). Reverse and tangent are those of the three steps.
enum Conv3D {
    struct Geometry {
        var conv: ConvGeometry      // the 2-D convolution over (H, W) of the columns
        var depth: [Int]            // DepthColumns geometry
        var od: Int
    }

    /// X (N, C, D, H, W) of a floating type with C, D, H, W known: X's type and [C, D, H, W].
    static func input(_ inputs: [Engine.TensorType?], _ op: String) throws(InLoopError) -> (Engine.TensorType, [Int]) {
        let x = try Engine.input(inputs, 0, "input")
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(op) takes floating values, got \(x.dtype)") }
        guard let rest = Array(x.shape.dropFirst()).known else {
            throw InLoopError(.unsupported, "input X has shape \(x.shape.formatted); the channels and spatial sizes must be known when the plan is compiled")
        }
        return (x, rest)
    }

    static func geometry(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, Geometry) {
        let (x, rest) = try input(inputs, "Conv")
        let w = try Window.weight(inputs, x)
        let c = rest[0], spatial = Array(rest[1...])
        let kernel = Array(w[2...])
        if let ks = a.kernelShape, ks != kernel {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(ks)) disagrees with the weight's shape \(Tensor.format(w))")
        }
        let s = a.strides ?? [1, 1, 1], d = a.dilations ?? [1, 1, 1]
        guard s.count == 3, d.count == 3 else { throw InLoopError(.format, "strides and dilations need 3 values each") }
        guard a.group >= 1, c % a.group == 0, w[1] * a.group == c else {
            throw InLoopError(.format, "weight W has shape \(Tensor.format(w)); for input channels \(c) and group \(a.group) its axis 1 must be \(c / Swift.max(a.group, 1))")
        }
        let (pb, pe) = try a.autoPad.windowPads(a.pads, input: spatial, kernel: kernel, strides: s, dilations: d)
        // the depth axis: its window as ConvGeometry checks one (sizes, limits, output length)
        let depthAxis = try ConvGeometry(channelsIn: 1, channelsOut: 1, inputSize: [spatial[0]], kernelSize: [kernel[0]], strides: [s[0]],
                                         dilations: [d[0]], padsBegin: [pb[0]], padsEnd: [pe[0]])
        let od = depthAxis.outputSize[0]
        let cols = try Limits.product(c, kernel[0], "input channels × kernel depth")
        let conv = try ConvGeometry(channelsIn: cols, channelsOut: w[0], group: a.group, inputSize: Array(spatial[1...]),
                                    kernelSize: Array(kernel[1...]), strides: Array(s[1...]), dilations: Array(d[1...]),
                                    padsBegin: Array(pb[1...]), padsEnd: Array(pe[1...]))
        try Window.bias(inputs, x, channels: conv.channelsOut)
        let hw = try Limits.product(spatial[1], spatial[2], "H × W")
        return (x, Geometry(conv: conv, depth: [c, spatial[0], hw, od, kernel[0], s[0], d[0], pb[0]], od: od))
    }

    static func outputType(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> Engine.TensorType {
        let (x, g) = try geometry(a, inputs)
        return Engine.TensorType(x.dtype, [x.shape[0], Engine.SymInt(g.conv.channelsOut), Engine.SymInt(g.od)]
                                 + g.conv.outputSize.map { Engine.SymInt($0) })
    }

    static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let (x, g) = try geometry(a, ctx.inputTypes)
        let n = x.shape[0]
        let hasBias = ctx.hasInput(2)
        if ctx.numerics == .differentiable, !ctx.isConstant(1) || hasBias && !ctx.isConstant(2) {
            throw InLoopError(.unsupported, "a weight or bias computed at run time is not differentiated yet")
        }
        let batch = try ctx.extent([n], "the batch of input X")
        let samples = try ctx.extent([n, Engine.SymInt(g.od)], "the depth columns' samples (N·od)")
        let columns = ctx.temporary(try ctx.extent([n, Engine.SymInt(g.od), Engine.SymInt(g.conv.inputCount)], "the depth columns"))
        ctx.emit(.depthColumns(geometry: ctx.ints(g.depth), batch: batch), [try ctx.input(0), columns])
        let c = g.conv
        let work = Swift.max(Conv.workspaceCount(geometry: c, batch: 1), Conv.workspaceCount(geometry: c, batch: Conv.targetColumns),
                             Conv.perSampleWorkspaceCount(geometry: c))
        var operands = [columns, try ctx.input(1)]
        if hasBias { operands.append(try ctx.input(2)) }
        operands.append(ctx.scratch(try Window.scratch(work)))
        let p = c.outputSpatialCount
        let z = ctx.temporary(try ctx.extent([n, Engine.SymInt(g.od), Engine.SymInt(c.outputCount)], "the convolved columns"))
        let fuse = ctx.numerics == .inference || a.activation == .identity
        ctx.emit(.conv(geometry: ctx.store(c), batch: samples, hasBias: hasBias, activation: fuse ? a.activation : .identity), operands + [z])
        // (N, od, M, P) -> (N, M, od, P)
        let m = c.channelsOut, od = g.od
        let dims = [n, Engine.SymInt(m), Engine.SymInt(od), Engine.SymInt(p)]
        let block = try Limits.product(od, c.outputCount, "the convolution's output per sample")   // od·M·P
        let strides = [Engine.SymInt(block), Engine.SymInt(p), Engine.SymInt(c.outputCount), Engine.SymInt(1)]
        let geometry = try Engine.Layout.gatherGeometry(ctx, dims: dims, xStrides: strides, xBase: 0, coversSource: true)
        let y = try ctx.output(0)
        if fuse {
            ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [z, y])
        } else {
            let t = ctx.temporary(try ctx.outputExtent(0))
            ctx.emit(.layoutCopy(geometry: ctx.ints(geometry), mode: .write), [z, t])
            ctx.emit(.activation(a.activation, count: try ctx.outputExtent(0)), [t, y])
        }
    }
}

// MARK: - 3-D transposed convolution

/// ConvTranspose over 3 spatial axes (N, C, D, H, W), the mirror of `Conv3D`: X is transposed to
/// (N, D, C, H·W) (`layoutCopy`), each of the N·D depth slices goes through the 2-D transposed
/// convolution over (H, W) with the weight [C, M/g, kd, kh, kw] read as [C, M/g·kd, kh, kw] (the same
/// memory), giving (N, D, M·kd, oh·ow), and the depth taps are scattered to their output depth
/// od = d·stride + k·dilation − pad_begin (`depthColumnsGradient`, the adjoint of Conv3D's depth
/// columns; positions past either end are dropped, output padding stays zero). The bias is a
/// broadcast add over (M, 1, 1, 1). Reverse and tangent are those of the steps.
enum ConvTranspose3D {
    struct Geometry {
        var hw: ConvTransposeGeometry   // the 2-D transposed convolution of the depth slices
        var depth: [Int]                 // DepthColumns geometry, read as the output's columns
        var od: Int
        var channelsOut: Int
    }

    static func geometry(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, Geometry) {
        let (x, rest) = try Conv3D.input(inputs, "ConvTranspose")
        let w = try Window.weight(inputs, x)
        let p = try Window.convTransposeAxes(a, input: [1] + rest, weight: w)
        let c = rest[0], spatial = Array(rest[1...])
        guard a.group >= 1, c % a.group == 0 else {
            throw InLoopError(.format, "transposed convolution group \(a.group) must divide the input channels (\(c))")
        }
        let m = try Limits.product(w[1], a.group, "output channels (W's axis 1 × group)")
        // the depth axis: a 1-D transposed window checks its sizes and gives the output depth
        let depthAxis = try ConvTransposeGeometry(channelsIn: 1, channelsOut: 1, inputSize: [spatial[0]], kernelSize: [p.kernel[0]],
                                                  strides: [p.strides[0]], dilations: [p.dilations[0]], padsBegin: [p.padsBegin[0]],
                                                  padsEnd: [p.padsEnd[0]], outputPadding: [p.outputPadding[0]])
        let od = depthAxis.outputSize[0]
        let taps = try Limits.product(m, p.kernel[0], "output channels × kernel depth")
        let hw = try ConvTransposeGeometry(channelsIn: c, channelsOut: taps, group: a.group, inputSize: Array(spatial[1...]),
                                           kernelSize: Array(p.kernel[1...]), strides: Array(p.strides[1...]),
                                           dilations: Array(p.dilations[1...]), padsBegin: Array(p.padsBegin[1...]),
                                           padsEnd: Array(p.padsEnd[1...]), outputPadding: Array(p.outputPadding[1...]))
        try Window.bias(inputs, x, channels: m)
        _ = try Limits.product(try Limits.product(m, od, "output channels × depth"), hw.outputSpatialCount, "the output per sample")
        // DepthColumns reads x (N, M, od, P) into columns (N, d, M·kd, P): here the output is its x
        let depth = [m, od, hw.outputSpatialCount, spatial[0], p.kernel[0], p.strides[0], p.dilations[0], p.padsBegin[0]]
        return (x, Geometry(hw: hw, depth: depth, od: od, channelsOut: m))
    }

    static func outputType(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> Engine.TensorType {
        let (x, g) = try geometry(a, inputs)
        return Engine.TensorType(x.dtype, [x.shape[0], Engine.SymInt(g.channelsOut), Engine.SymInt(g.od)]
                                 + g.hw.outputSize.map { Engine.SymInt($0) })
    }

    static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        typealias Sym = Engine.SymInt
        let (x, g) = try geometry(a, ctx.inputTypes)
        let n = x.shape[0], hw = g.hw
        let hasBias = ctx.hasInput(2)
        if ctx.numerics == .differentiable, !ctx.isConstant(1) || hasBias && !ctx.isConstant(2) {
            throw InLoopError(.unsupported, "a weight or bias computed at run time is not differentiated yet")
        }
        let c = hw.channelsIn, d = g.depth[3], p = hw.inputSpatialCount
        // (N, C, D, P) -> (N, D, C, P)
        let slices = ctx.temporary(try ctx.extent([n, Sym(d), Sym(c), Sym(p)], "the depth slices"))
        let cdp = try Limits.product(try Limits.product(c, d, "C × D"), p, "the input per sample")
        let strides = [Sym(cdp), Sym(p), Sym(try Limits.product(d, p, "D × H × W")), Sym(1)]
        let gather = try Engine.Layout.gatherGeometry(ctx, dims: [n, Sym(d), Sym(c), Sym(p)], xStrides: strides, xBase: 0, coversSource: true)
        ctx.emit(.layoutCopy(geometry: ctx.ints(gather), mode: .write), [try ctx.input(0), slices])
        // the 2-D transposed convolution of the N·D slices: (N, D, M·kd, oh·ow)
        let samples = try ctx.extent([n, Sym(d)], "the depth slices' samples (N·D)")
        let columns = ctx.temporary(try ctx.extent([n, Sym(d), Sym(hw.outputCount)], "the transposed slices"))
        let scratch = ctx.scratch(try Window.scratch(ConvTranspose.workspaceCount(geometry: hw, batch: 1)))
        ctx.emit(.convTranspose(geometry: ctx.store(hw), batch: samples, hasBias: false, activation: .identity),
                 [slices, try ctx.input(1), scratch, columns])
        // scatter the depth taps: (N, M, od, oh·ow)
        let outShape = [n, Sym(g.channelsOut), Sym(g.od)] + hw.outputSize.map { Sym($0) }
        let y = try ctx.output(0)
        let batch = try ctx.extent([n], "the batch of input X")
        let last = hasBias || a.activation != .identity
        let z = last ? ctx.temporary(try ctx.outputExtent(0)) : y
        ctx.emit(.depthColumnsGradient(geometry: ctx.ints(g.depth), batch: batch, accumulate: false), [columns, z])
        var v = StepComposer.Value(id: z, shape: outShape)
        if hasBias {
            let b = StepComposer.Value(id: try ctx.input(2), shape: [Sym(g.channelsOut), 1, 1, 1])
            v = try StepComposer.binary(&ctx, .add, v, b, output: a.activation == .identity ? y : nil)
        }
        if a.activation != .identity {
            ctx.emit(.activation(a.activation, count: try ctx.outputExtent(0)), [v.id, y])
        }
    }
}
