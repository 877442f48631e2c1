/// ONNX Resize (mode nearest) and Upsample on the one engine (phase 3.6 of `docs/ENGINE.md`), in the
/// forms the old graph engine accepts: every coordinate_transformation_mode but tf_crop_and_resize,
/// every nearest_mode, keep_aspect_ratio_policy stretch, `axes` (opset 18); Upsample and Resize-10 use
/// asymmetric coordinates and floor.
///
/// Output sizes come from `sizes` (an integer input known at compile time) or from `scales`. Scales
/// are floats, which type inference does not see as inputs: the front end passes constant scales as
/// the `scales` attribute (as Upsample-7 stores them); a scales tensor input is refused.
///
/// Axes before the first resized one (the batch among them) are one outer block and may be symbolic;
/// from the first resized axis on, sizes must be known. The step gathers through per-axis index maps
/// computed when the plan is compiled (`Kernels/Resize.swift`); its adjoint scatters back.

public struct ResizeNearestAttributes: OpAttributeSet, Equatable {
    public var coordinateMode: ResizeCoordinateMode = .halfPixel
    public var nearestMode: ResizeNearestMode = .roundPreferFloor
    public var axes: [Int]?
    /// Constant scales (float32 values, as ONNX stores them).
    public var scales: [Float]?
    /// Input positions of scales and sizes (by opset).
    public var scalesInput = 2
    public var sizesInput: Int? = 3
    // MARK: family nd (attributes): linear and cubic modes (`Ops/NdOps.swift`)
    public var mode: ResizeMode = .nearest
    public var cubicCoefficient = -0.75
    public var excludeOutside = false
    // MARK: family nodes (attributes): antialias (linear and cubic, `Ops/NdOps.swift`)
    public var antialias = false

    public func encoded() -> [String: Engine.AttributeValue] {
        var r: [String: Engine.AttributeValue] = ["mode": .string(mode.rawValue)]
        if mode == .cubic { r["cubic_coeff_a"] = .float(cubicCoefficient) }
        if excludeOutside { r["exclude_outside"] = .int(1) }
        let cm: String
        switch coordinateMode {
        case .halfPixel: cm = "half_pixel"
        case .halfPixelSymmetric: cm = "half_pixel_symmetric"
        case .asymmetric: cm = "asymmetric"
        case .alignCorners: cm = "align_corners"
        case .pytorchHalfPixel: cm = "pytorch_half_pixel"
        case .tfHalfPixelForNearest: cm = "tf_half_pixel_for_nearest"
        }
        let nm: String
        switch nearestMode {
        case .roundPreferFloor: nm = "round_prefer_floor"
        case .roundPreferCeil: nm = "round_prefer_ceil"
        case .floor: nm = "floor"
        case .ceil: nm = "ceil"
        }
        if sizesInput != nil {
            r["coordinate_transformation_mode"] = .string(cm)
            r["nearest_mode"] = .string(nm)
        }
        if let axes { r["axes"] = .ints(axes) }
        if antialias { r["antialias"] = .int(1) }
        if let scales { r["scales"] = .floats(scales.map { Double($0) }) }
        return r
    }

    static func parse(_ raw: [String: Engine.AttributeValue], legacy: Bool) throws(InLoopError) -> ResizeNearestAttributes {
        var a = ResizeNearestAttributes()
        try ResizeMode.parse(raw, into: &a)
        if let v = raw["scales"] {
            guard case .floats(let list) = v, list.count <= Engine.maxRank else {
                throw InLoopError(.format, "attribute 'scales' must be a list of at most \(Engine.maxRank) floats")
            }
            a.scales = try list.map { (f: Double) throws(InLoopError) -> Float in
                guard f.isFinite, f > 0, f <= 1e6 else { throw InLoopError(.format, "scales must be positive, got \(f)") }
                return Float(f)
            }
        }
        if legacy {
            a.coordinateMode = .asymmetric
            a.nearestMode = .floor
            a.scalesInput = 1
            a.sizesInput = nil
            return a
        }
        let cmName = try raw.string("coordinate_transformation_mode") ?? "half_pixel"
        guard let cm = ResizeCoordinateMode(onnxName: cmName) else {
            throw InLoopError(.unsupported, "attribute coordinate_transformation_mode='\(cmName)' (supported: half_pixel, half_pixel_symmetric, asymmetric, align_corners, pytorch_half_pixel, tf_half_pixel_for_nearest)")
        }
        let nmName = try raw.string("nearest_mode") ?? "round_prefer_floor"
        guard let nm = ResizeNearestMode(onnxName: nmName) else {
            throw InLoopError(.unsupported, "attribute nearest_mode='\(nmName)' (supported: round_prefer_floor, round_prefer_ceil, floor, ceil)")
        }
        let policy = try raw.string("keep_aspect_ratio_policy") ?? "stretch"
        guard policy == "stretch" else {
            throw InLoopError(.unsupported, "attribute keep_aspect_ratio_policy='\(policy)' (supported: stretch)")
        }
        a.coordinateMode = cm
        a.nearestMode = nm
        a.axes = try raw.ints("axes")
        return a
    }
}

/// The shared rules of Resize and Upsample.
public protocol NearestResizeOp: OpDefinition where Attributes == ResizeNearestAttributes {}

extension NearestResizeOp {
    /// Output shape and the full-rank scales (1 on axes not resized).
    static func shape(_ a: ResizeNearestAttributes, _ inputs: [Engine.TensorType?],
                      _ known: [Engine.KnownInts?]) throws(InLoopError) -> (Engine.TensorType, Engine.Shape, [Float]) {
        let x = try Engine.input(inputs, 0, "input")
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(name) takes floating values, got \(x.dtype)") }
        let r = x.rank
        guard r >= 1 else { throw InLoopError(.format, "\(name) needs an input of rank ≥ 1") }
        var axes: [Int] = []
        for v in a.axes ?? Array(0..<r) {
            let d = try Engine.axis(v, rank: r, "axes")
            guard !axes.contains(d) else { throw InLoopError(.format, "axes \(Tensor.format(a.axes ?? [])) repeat an axis") }
            axes.append(d)
        }
        var out = x.shape
        var scales = [Float](repeating: 1, count: r)
        func present(_ k: Int?) -> Bool {
            guard let k, k < inputs.count, let t = inputs[k] else { return false }
            return t.shape != [Engine.SymInt(0)]
        }
        if present(a.sizesInput), let k = a.sizesInput {
            // a size equal to the input's (also a symbolic one: Shape(x)[0:2] ++ [h, w]) keeps the axis
            guard let values = known[k]?.values else {
                throw InLoopError(.unsupported, "sizes must be known when the plan is compiled")
            }
            guard values.count == axes.count else { throw InLoopError(.format, "sizes has \(values.count) values for \(axes.count) axes") }
            for (i, d) in axes.enumerated() {
                if x.shape[d] == values[i] { continue }
                guard let size = values[i].known else {
                    throw InLoopError(.unsupported, "sizes[\(i)] = \(values[i]) differs from the input's axis \(d) (\(x.shape[d])) and is not known when the plan is compiled")
                }
                guard size >= 1, size <= Limits.maxDimension else { throw InLoopError(.format, "sizes[\(i)] = \(size) must be positive") }
                guard let n = x.shape[d].known, n >= 1 else {
                    throw InLoopError(.unsupported, "axis \(d) of size \(x.shape[d]) is resized: its size must be known and positive")
                }
                out[d] = Engine.SymInt(size)
                scales[d] = Float(size) / Float(n)
            }
        } else if let s = a.scales {
            guard s.count == axes.count else { throw InLoopError(.format, "scales has \(s.count) values for \(axes.count) axes") }
            for (i, d) in axes.enumerated() where s[i] != 1 {
                guard let n = x.shape[d].known, n >= 1 else {
                    throw InLoopError(.unsupported, "axis \(d) of size \(x.shape[d]) is resized: its size must be known and positive")
                }
                let o = (Double(n) * Double(s[i])).rounded(.down)
                guard o >= 1, o <= Double(Limits.maxDimension) else {
                    throw InLoopError(.format, "scale \(s[i]) gives output size \(o) along axis \(d)")
                }
                out[d] = Engine.SymInt(Int(o))
                scales[d] = s[i]
            }
        } else if present(a.scalesInput) {
            // MARK: family nodes (value inputs: a plan is specialised on the scales' values, Engine.Model)
            throw Engine.notLinear("scales given as a tensor input (the plan is specialised on its values when they are known)")
        } else {
            throw InLoopError(.format, "neither scales nor sizes is given")
        }
        return (x, out, scales)
    }

    public static func inferTypes(_ a: ResizeNearestAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let (x, out, _) = try shape(a, inputs, known)
        return [Engine.TensorType(x.dtype, out)]
    }

    public static func lower(_ a: ResizeNearestAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        // MARK: family nd (linear, cubic)
        if a.mode != .nearest { return try InterpolatingResize.lower(a, &ctx) }
        let x = try Engine.input(ctx.inputTypes, 0, "input")
        let out = ctx.outputTypes[0].shape
        // the first axis whose map is not the identity
        var maps: [[Int]] = []
        var first = -1
        // the scales type inference used: the attribute's on their axes, else (sizes) out / in
        var scales = [Float](repeating: 1, count: x.rank)
        let sizesGiven = a.sizesInput.map { k in ctx.hasInput(k) && ctx.inputTypes[k]?.shape != [Engine.SymInt(0)] } ?? false
        if !sizesGiven, let s = a.scales {
            for (i, v) in (a.axes ?? Array(0..<x.rank)).enumerated() where i < s.count {
                scales[try Engine.axis(v, rank: x.rank, "axes")] = s[i]
            }
        } else {
            for d in 0..<x.rank { if let n = x.shape[d].known, let m = out[d].known, n != m { scales[d] = Float(m) / Float(n) } }
        }
        for d in 0..<x.rank {
            guard let n = x.shape[d].known, let m = out[d].known else {
                if first >= 0 { throw InLoopError(.unsupported, "axis \(d) of size \(x.shape[d]) follows a resized axis: its size must be known") }
                continue
            }
            let map = (0..<m).map {
                TensorOps.nearestIndex($0, inLength: n, outLength: m, scale: scales[d], coordinateMode: a.coordinateMode, nearestMode: a.nearestMode)
            }
            if first < 0 && n == m && map == Array(0..<m) { continue }
            if first < 0 { first = d; maps = (0..<d).map { _ in [] } }
            maps.append(map)
        }
        guard first >= 0 else { try ctx.alias(output: 0, input: 0); return }
        let inner = Array(first..<x.rank)
        var geometry = [inner.count]
        for d in inner { geometry.append(x.shape[d].known ?? 0) }
        for d in inner { geometry.append(out[d].known ?? 0) }
        for d in inner { geometry += maps[d] }
        let outer = try ctx.extent(Array(x.shape[..<first]), "the axes before the first resized one")
        ctx.emit(.resizeNearest(geometry: ctx.ints(geometry), outer: outer), [try ctx.input(0), try ctx.output(0)])
    }
}

/// ONNX Resize, mode nearest: inputs [X, roi, scales, sizes] (opset ≥ 11) or [X, scales] (opset 10).
public enum ResizeOp: NearestResizeOp {
    public static let name = "Resize"
    public static let inputArity: ClosedRange<Int> = 1...4

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> ResizeNearestAttributes {
        try ResizeNearestAttributes.parse(raw, legacy: opset > 0 && opset < 11)
    }
}

/// ONNX Upsample (opsets 7 and 9), mode nearest: asymmetric coordinates, floor.
public enum UpsampleOp: NearestResizeOp {
    public static let name = "Upsample"
    public static let inputArity: ClosedRange<Int> = 1...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> ResizeNearestAttributes {
        try ResizeNearestAttributes.parse(raw, legacy: true)
    }
}
