/// Convolution and pooling on the one engine (phases 3.4 and 3.5 of `docs/ENGINE.md`): ONNX Conv,
/// ConvTranspose, MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool, 1-D and 2-D (global
/// pooling: any spatial rank), in NCHW layout. The batch is ONNX's axis 0 and may be symbolic (one plan
/// for every batch size); channels and spatial sizes must be known when the plan is compiled.
///
/// The kernels are `Kernels/Conv.swift` and `Kernels/Pool.swift` (shared with the old engines while
/// they exist); a step's window geometry (`ConvGeometry`, `ConvTransposeGeometry`, `PoolGeometry`,
/// plain integers) is kept in `Plan.ints` and read back by the step without allocating.

// MARK: - Attributes

/// The window attributes of Conv, ConvTranspose, MaxPool and AveragePool, as ONNX spells them.
public struct WindowAttributes: OpAttributeSet, Equatable {
    /// Conv/ConvTranspose: from the weight when nil. Pools: required.
    public var kernelShape: [Int]?
    public var strides: [Int]?
    public var dilations: [Int]?
    /// [begin..., end...].
    public var pads: [Int]?
    public var autoPad: AutoPad = .notSet
    /// Conv, ConvTranspose.
    public var group = 1
    /// ConvTranspose.
    public var outputPadding: [Int]?
    public var outputShape: [Int]?
    /// Pools.
    public var ceilMode = false
    /// AveragePool.
    public var countIncludePad = false
    /// Conv, ConvTranspose: an activation fused into the step (identity unless a fusion pass sets it).
    public var activation: Activation = .identity

    public func encoded() -> [String: Engine.AttributeValue] {
        var r: [String: Engine.AttributeValue] = [:]
        if let kernelShape { r["kernel_shape"] = .ints(kernelShape) }
        if let strides { r["strides"] = .ints(strides) }
        if let dilations { r["dilations"] = .ints(dilations) }
        if let pads { r["pads"] = .ints(pads) }
        switch autoPad {
        case .notSet: break
        case .sameUpper: r["auto_pad"] = .string("SAME_UPPER")
        case .sameLower: r["auto_pad"] = .string("SAME_LOWER")
        case .valid: r["auto_pad"] = .string("VALID")
        }
        if group != 1 { r["group"] = .int(group) }
        if let outputPadding { r["output_padding"] = .ints(outputPadding) }
        if let outputShape { r["output_shape"] = .ints(outputShape) }
        if ceilMode { r["ceil_mode"] = .int(1) }
        if countIncludePad { r["count_include_pad"] = .int(1) }
        for (k, v) in ActivationOp.encode(activation) { r[k] = v }
        return r
    }

    static func parse(_ raw: [String: Engine.AttributeValue], conv: Bool, transpose: Bool = false,
                      average: Bool = false) throws(InLoopError) -> WindowAttributes {
        var a = WindowAttributes()
        a.kernelShape = try raw.ints("kernel_shape")
        a.strides = try raw.ints("strides")
        a.dilations = try raw.ints("dilations")
        a.pads = try raw.ints("pads")
        switch try raw.string("auto_pad") ?? "NOTSET" {
        case "NOTSET", "": a.autoPad = .notSet
        case "SAME_UPPER": a.autoPad = .sameUpper
        case "SAME_LOWER": a.autoPad = .sameLower
        case "VALID": a.autoPad = .valid
        case let s: throw InLoopError(.format, "attribute auto_pad='\(s)' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        }
        for (name, list) in [("kernel_shape", a.kernelShape), ("strides", a.strides), ("dilations", a.dilations)] {
            if let list, list.contains(where: { $0 < 1 }) {
                throw InLoopError(.format, "attribute \(name) \(Tensor.format(list)) must be positive")
            }
        }
        if let pads = a.pads, pads.contains(where: { $0 < 0 }) {
            throw InLoopError(.format, "attribute pads \(Tensor.format(pads)) must be non-negative")
        }
        if conv {
            a.group = try raw.int("group", default: 1)
            guard a.group >= 1 else { throw InLoopError(.format, "attribute group \(a.group) must be positive") }
            a.activation = try ActivationOp.parseActivation(raw, default: .identity)
        } else {
            guard a.kernelShape != nil else { throw InLoopError(.format, "attribute 'kernel_shape' is required") }
            a.ceilMode = try raw.int("ceil_mode", default: 0) != 0
        }
        if transpose {
            a.outputPadding = try raw.ints("output_padding")
            a.outputShape = try raw.ints("output_shape")
            if let op = a.outputPadding, op.contains(where: { $0 < 0 }) {
                throw InLoopError(.format, "attribute output_padding \(Tensor.format(op)) must be non-negative")
            }
            if let os = a.outputShape, os.contains(where: { $0 < 1 }) {
                throw InLoopError(.format, "attribute output_shape \(Tensor.format(os)) must be positive")
            }
        }
        if average { a.countIncludePad = try raw.int("count_include_pad", default: 0) != 0 }
        return a
    }

    var conv: ConvAttributes {
        ConvAttributes(kernelShape: kernelShape, strides: strides, dilations: dilations, pads: pads, group: group,
                       autoPad: autoPad, outputPadding: outputPadding, outputShape: outputShape)
    }

    var pool: PoolAttributes {
        PoolAttributes(kernelShape: kernelShape ?? [], strides: strides, dilations: dilations, pads: pads, autoPad: autoPad,
                       ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

// MARK: - Shapes

enum Window {
    /// X as (batch, channels and spatial sizes known): the spatial rank must be 1 or 2 (`what`
    /// names the op for the 3-D message).
    static func input(_ types: [Engine.TensorType?], _ what: String) throws(InLoopError) -> (Engine.TensorType, [Int]) {
        let x = try Engine.input(types, 0, "input")
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(what) takes floating values, got \(x.dtype)") }
        guard x.rank >= 3 else {
            throw InLoopError(.format, "input X has shape \(x.shape.formatted); \(what) needs (N, C, spatial...)")
        }
        guard x.rank <= 4 else {
            throw InLoopError(.unsupported, "input X has shape \(x.shape.formatted): \(what) with \(x.rank - 2) spatial dimensions; InLoop supports 1-D (N, C, L) and 2-D (N, C, H, W)")
        }
        guard let rest = Array(x.shape.dropFirst()).known else {
            throw InLoopError(.unsupported, "input X has shape \(x.shape.formatted); the channels and spatial sizes must be known when the plan is compiled")
        }
        return (x, rest)
    }

    /// A known weight shape of the input's rank and type.
    static func weight(_ types: [Engine.TensorType?], _ x: Engine.TensorType) throws(InLoopError) -> [Int] {
        let w = try Engine.input(types, 1, "input")
        guard w.dtype == x.dtype else { throw InLoopError(.format, "weight W is \(w.dtype), input X \(x.dtype)") }
        guard let ws = w.shape.known, ws.count == x.rank else {
            throw InLoopError(.format, "weight W has shape \(w.shape.formatted); it must be known and of rank \(x.rank) like X")
        }
        return ws
    }

    static func bias(_ types: [Engine.TensorType?], _ x: Engine.TensorType, channels: Int) throws(InLoopError) {
        guard types.count > 2, let b = types[2] else { return }
        guard b.dtype == x.dtype, b.shape == [Engine.SymInt(channels)] else {
            throw InLoopError(.format, "bias B must be [\(channels)] \(x.dtype), got \(b)")
        }
    }

    /// Elements of scratch as an extent, refused (not trapped) past the element limit.
    static func scratch(_ count: Int) throws(InLoopError) -> Engine.Extent {
        guard count >= 0, count <= Limits.maxElements else {
            throw InLoopError(.outOfMemory, "the window step needs \(count) values of scratch space")
        }
        return Engine.Extent(fixed: Swift.max(1, count))
    }

    /// ConvTranspose's geometry: pads from `output_shape` or `auto_pad` when given (the rules of
    /// onnxruntime), else the explicit pads.
    static func convTranspose(_ at: WindowAttributes, input x: [Int], weight w: [Int]) throws(InLoopError) -> ConvTransposeGeometry {
        let p = try convTransposeAxes(at, input: x, weight: w)
        return try ConvTransposeGeometry(channelsIn: x[1], channelsOut: try Limits.product(w[1], at.group, "output channels (W's axis 1 × group)"),
                                         group: at.group, inputSize: Array(x[2...]), kernelSize: p.kernel, strides: p.strides,
                                         dilations: p.dilations, padsBegin: p.padsBegin, padsEnd: p.padsEnd, outputPadding: p.outputPadding)
    }

    /// ConvTranspose's per-axis window (any spatial rank): the kernel from the weight, strides,
    /// dilations, and pads and output padding as `convTranspose` derives them.
    static func convTransposeAxes(_ at: WindowAttributes, input x: [Int], weight w: [Int]) throws(InLoopError)
        -> (kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int], padsEnd: [Int], outputPadding: [Int]) {
        let kernel = Array(w[2...])
        if let ks = at.kernelShape, ks != kernel {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(ks)) disagrees with the weight's shape \(Tensor.format(w))")
        }
        guard w[0] == x[1] else {
            throw InLoopError(.format, "weight W has shape \(Tensor.format(w)); for input \(Tensor.format(x)) it must be [\(x[1]), M/group, kernel...]")
        }
        let spatial = Array(x[2...])
        let n = spatial.count
        let strides = at.strides ?? [Int](repeating: 1, count: n), dil = at.dilations ?? [Int](repeating: 1, count: n)
        let outPad = at.outputPadding ?? [Int](repeating: 0, count: n)
        guard strides.count == n, dil.count == n, outPad.count == n else {
            throw InLoopError(.format, "strides, dilations and output_padding need \(n) values each")
        }
        var pb = [Int](repeating: 0, count: n), pe = pb
        var outPadding = outPad
        var target: [Int]? = at.outputShape.map { Array($0.suffix(n)) }
        if target == nil, at.autoPad == .sameUpper || at.autoPad == .sameLower {
            target = (0..<n).map { spatial[$0] * strides[$0] }   // both ≤ 2^31: no overflow
        }
        if let target {
            guard target.count == n else { throw InLoopError(.format, "output_shape needs \(n) spatial values") }
            for i in 0..<n {
                let what = "output_shape along spatial axis \(i)"
                let total = try Limits.sum(try Limits.sum(strides[i] * (spatial[i] - 1), (kernel[i] - 1) * dil[i], what),
                                           outPad[i] + 1 - target[i], what)
                if at.autoPad == .sameLower {
                    pb[i] = total - total / 2; pe[i] = total / 2
                } else {
                    pb[i] = total / 2; pe[i] = total - total / 2
                }
                // MARK: family nodes (output_shape larger than the full output: zeros at the end, as
                // onnxruntime gives them, are output padding)
                if total < 0 {
                    guard pb[i] == 0, pe[i] < 0 else {
                        throw InLoopError(.unsupported, "output_shape \(Tensor.format(target)) needs negative padding at the start of spatial axis \(i)")
                    }
                    outPadding[i] = try Limits.sum(outPadding[i], -pe[i], what)
                    pe[i] = 0
                }
            }
        } else if at.autoPad == .notSet, let pads = at.pads {
            guard pads.count == 2 * n else { throw InLoopError(.format, "pads has \(pads.count) values, expected \(2 * n)") }
            pb = Array(pads[..<n]); pe = Array(pads[n...])
        }
        return (kernel, strides, dil, pb, pe, outPadding)
    }
}

extension Engine.LoweringContext {
    /// A plain-integer value (a window geometry) stored in `Plan.ints`; read back with `Engine.load`.
    func store<G: BitwiseCopyable>(_ g: G) -> Int32 {
        var words = [Int](repeating: 0, count: (MemoryLayout<G>.size + 7) / 8)
        withUnsafeBytes(of: g) { src in words.withUnsafeMutableBytes { $0.copyMemory(from: src) } }
        return ints(words)
    }
}

extension Engine {
    /// A value stored by `LoweringContext.store` at `offset` of the plan's integers.
    @inline(__always)
    static func load<G: BitwiseCopyable>(_ ints: UnsafeBufferPointer<Int>, _ offset: Int32, as _: G.Type) -> G {
        UnsafeRawBufferPointer(ints).loadUnaligned(fromByteOffset: Int(offset) &* MemoryLayout<Int>.stride, as: G.self)
    }

    /// Which gradient a convolution's reverse step computes.
    enum WindowGradient { case input, weight, bias }
}

// MARK: - Conv

/// ONNX Conv: Y = conv(X, W) + B over 1-D or 2-D spatial axes, any group (depthwise included),
/// strides, dilations, pads and auto_pad; W and B constant (or trainable parameters).
public enum ConvOp: OpDefinition {
    public static let name = "Conv"
    public static let inputArity: ClosedRange<Int> = 2...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> WindowAttributes {
        try WindowAttributes.parse(raw, conv: true)
    }

    static func geometry(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, ConvGeometry) {
        let (x, rest) = try Window.input(inputs, "Conv")
        let w = try Window.weight(inputs, x)
        let g = try a.conv.convGeometry(input: [1] + rest, weight: w)
        try Window.bias(inputs, x, channels: g.channelsOut)
        return (x, g)
    }

    public static func inferTypes(_ a: WindowAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        if inputs.first??.rank == 5 { return [try Conv3D.outputType(a, inputs)] }   // MARK: family nd (3-D, Ops/NdOps.swift)
        let (x, g) = try geometry(a, inputs)
        return [Engine.TensorType(x.dtype, [x.shape[0], Engine.SymInt(g.channelsOut)] + g.outputSize.map { Engine.SymInt($0) })]
    }

    public static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        if ctx.inputTypes.first??.rank == 5 { return try Conv3D.lower(a, &ctx) }   // MARK: family nd
        let (x, g) = try geometry(a, ctx.inputTypes)
        let batch = try ctx.extent([x.shape[0]], "the batch of input X")
        let hasBias = ctx.hasInput(2)
        if ctx.numerics == .differentiable, !ctx.isConstant(1) || hasBias && !ctx.isConstant(2) {
            throw InLoopError(.unsupported, "a weight or bias computed at run time is not differentiated yet")
        }
        let work = Swift.max(Conv.workspaceCount(geometry: g, batch: 1), Conv.workspaceCount(geometry: g, batch: Conv.targetColumns),
                             Conv.perSampleWorkspaceCount(geometry: g))
        var operands = [try ctx.input(0), try ctx.input(1)]
        if hasBias { operands.append(try ctx.input(2)) }
        operands.append(ctx.scratch(try Window.scratch(work)))
        let geo = ctx.store(g)
        let y = try ctx.output(0)
        if ctx.numerics == .differentiable && a.activation != .identity {
            let z = ctx.temporary(try ctx.outputExtent(0))
            ctx.emit(.conv(geometry: geo, batch: batch, hasBias: hasBias, activation: .identity), operands + [z])
            ctx.emit(.activation(a.activation, count: try ctx.outputExtent(0)), [z, y])
        } else {
            ctx.emit(.conv(geometry: geo, batch: batch, hasBias: hasBias, activation: a.activation), operands + [y])
        }
    }
}

/// ONNX ConvTranspose: strides, pads, dilations, group, output_padding, output_shape and auto_pad;
/// W and B constant (or trainable parameters).
public enum ConvTransposeOp: OpDefinition {
    public static let name = "ConvTranspose"
    public static let inputArity: ClosedRange<Int> = 2...3

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> WindowAttributes {
        try WindowAttributes.parse(raw, conv: true, transpose: true)
    }

    static func geometry(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, ConvTransposeGeometry) {
        let (x, rest) = try Window.input(inputs, "ConvTranspose")
        let w = try Window.weight(inputs, x)
        let g = try Window.convTranspose(a, input: [1] + rest, weight: w)
        try Window.bias(inputs, x, channels: g.channelsOut)
        return (x, g)
    }

    public static func inferTypes(_ a: WindowAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        if inputs.first??.rank == 5 { return [try ConvTranspose3D.outputType(a, inputs)] }   // MARK: family nd (3-D, Ops/NdOps.swift)
        let (x, g) = try geometry(a, inputs)
        return [Engine.TensorType(x.dtype, [x.shape[0], Engine.SymInt(g.channelsOut)] + g.outputSize.map { Engine.SymInt($0) })]
    }

    public static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        if ctx.inputTypes.first??.rank == 5 { return try ConvTranspose3D.lower(a, &ctx) }   // MARK: family nd
        let (x, g) = try geometry(a, ctx.inputTypes)
        let batch = try ctx.extent([x.shape[0]], "the batch of input X")
        let hasBias = ctx.hasInput(2)
        if ctx.numerics == .differentiable, !ctx.isConstant(1) || hasBias && !ctx.isConstant(2) {
            throw InLoopError(.unsupported, "a weight or bias computed at run time is not differentiated yet")
        }
        var operands = [try ctx.input(0), try ctx.input(1)]
        if hasBias { operands.append(try ctx.input(2)) }
        operands.append(ctx.scratch(try Window.scratch(ConvTranspose.workspaceCount(geometry: g, batch: 1))))
        let geo = ctx.store(g)
        let y = try ctx.output(0)
        if ctx.numerics == .differentiable && a.activation != .identity {
            let z = ctx.temporary(try ctx.outputExtent(0))
            ctx.emit(.convTranspose(geometry: geo, batch: batch, hasBias: hasBias, activation: .identity), operands + [z])
            ctx.emit(.activation(a.activation, count: try ctx.outputExtent(0)), [z, y])
        } else {
            ctx.emit(.convTranspose(geometry: geo, batch: batch, hasBias: hasBias, activation: a.activation), operands + [y])
        }
    }
}

// MARK: - Pooling

/// MaxPool and AveragePool share the window rules.
public protocol WindowPoolOp: OpDefinition where Attributes == WindowAttributes {}

extension WindowPoolOp {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    static func geometry(_ a: WindowAttributes, _ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, PoolGeometry) {
        let (x, rest) = try Window.input(inputs, name)
        return (x, try a.pool.geometry(input: [1] + rest))
    }

    public static func inferTypes(_ a: WindowAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        // MARK: family nd (3-D pooling, Ops/NdOps.swift)
        if inputs.first??.rank == 5 { return [try Pool3D.outputType(a, inputs, name)] }
        let (x, g) = try geometry(a, inputs)
        return [Engine.TensorType(x.dtype, [x.shape[0], x.shape[1]] + g.outputSize.map { Engine.SymInt($0) })]
    }
}

/// ONNX MaxPool (kernel_shape, strides, pads, dilations, ceil_mode, auto_pad); the optional Indices
/// output is not supported. Padding never wins; the reverse pass routes to the first maximum.
public enum MaxPoolOp: WindowPoolOp {
    public static let name = "MaxPool"

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> WindowAttributes {
        try WindowAttributes.parse(raw, conv: false)
    }

    public static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        if ctx.inputTypes.first??.rank == 5 { return try Pool3D.lower(a, &ctx, max: true, what: name) }   // MARK: family nd
        let (x, g) = try geometry(a, ctx.inputTypes)
        let planes = try ctx.extent([x.shape[0], x.shape[1]], "the planes (N·C) of input X")
        ctx.emit(.maxPool(geometry: ctx.store(g), planes: planes), [try ctx.input(0), try ctx.output(0)])
    }
}

/// ONNX AveragePool (kernel_shape, strides, pads, dilations, ceil_mode, auto_pad, count_include_pad).
public enum AveragePoolOp: WindowPoolOp {
    public static let name = "AveragePool"

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> WindowAttributes {
        try WindowAttributes.parse(raw, conv: false, average: true)
    }

    public static func lower(_ a: WindowAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        if ctx.inputTypes.first??.rank == 5 { return try Pool3D.lower(a, &ctx, max: false, what: name) }   // MARK: family nd
        let (x, g) = try geometry(a, ctx.inputTypes)
        let planes = try ctx.extent([x.shape[0], x.shape[1]], "the planes (N·C) of input X")
        ctx.emit(.averagePool(geometry: ctx.store(g), planes: planes, countIncludePad: a.countIncludePad),
                 [try ctx.input(0), try ctx.output(0)])
    }
}

/// GlobalAveragePool and GlobalMaxPool: (N, C, spatial...) → (N, C, 1, ...), any spatial rank.
public protocol GlobalPoolOp: OpDefinition where Attributes == NoAttributes {
    static var takesMax: Bool { get }
}

extension GlobalPoolOp {
    public static var inputArity: ClosedRange<Int> { 1...1 }

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes { NoAttributes() }

    static func spatial(_ inputs: [Engine.TensorType?]) throws(InLoopError) -> (Engine.TensorType, Int) {
        let x = try Engine.input(inputs, 0, "input")
        guard x.dtype.isFloatingPoint else { throw InLoopError(.format, "\(name) takes floating values, got \(x.dtype)") }
        guard x.rank >= 3 else { throw InLoopError(.format, "input X has shape \(x.shape.formatted); \(name) needs (N, C, spatial...)") }
        guard let sp = Array(x.shape.dropFirst(2)).known else {
            throw InLoopError(.unsupported, "input X has shape \(x.shape.formatted); the spatial sizes must be known when the plan is compiled")
        }
        let count = try Tensor.elementCount(sp)
        guard count >= 1 else { throw InLoopError(.format, "input X has shape \(x.shape.formatted): no spatial values to pool") }
        return (x, count)
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let (x, _) = try spatial(inputs)
        return [Engine.TensorType(x.dtype, [x.shape[0], x.shape[1]] + [Engine.SymInt](repeating: 1, count: x.rank - 2))]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let (x, spatial) = try spatial(ctx.inputTypes)
        let planes = try ctx.extent([x.shape[0], x.shape[1]], "the planes (N·C) of input X")
        ctx.emit(.globalPool(max: takesMax, planes: planes, spatial: spatial), [try ctx.input(0), try ctx.output(0)])
    }
}

public enum GlobalAveragePoolOp: GlobalPoolOp { public static let name = "GlobalAveragePool"; public static let takesMax = false }
public enum GlobalMaxPoolOp: GlobalPoolOp { public static let name = "GlobalMaxPool"; public static let takesMax = true }

// MARK: - Kernels of the steps

extension Real {
    /// The conv step: Float under `.inference` takes the float32 inference kernel (samples batched
    /// into one GEMM, fused bias and activation; one sample at a time when `perSample`), everything
    /// else the per-sample generic kernel, then the activation.
    @inlinable
    static func convStep(x: UnsafePointer<Self>, batch n: Int, geometry g: ConvGeometry, weight: UnsafePointer<Self>,
                         bias: UnsafePointer<Self>?, activation: Activation, y: UnsafeMutablePointer<Self>,
                         workspace: UnsafeMutablePointer<Self>, numerics: Numerics, perSample: Bool) {
        if numerics == .inference, Self.self == Float.self {
            let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
            let wf = UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self)
            let bf = bias.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }
            let yf = UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self)
            let wsf = UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Float.self)
            if perSample {
                for s in 0..<n {
                    Conv.forward(x: xf + s * g.inputCount, batch: 1, geometry: g, weight: wf, bias: bf, activation: activation,
                                 y: yf + s * g.outputCount, workspace: wsf)
                }
            } else {
                Conv.forward(x: xf, batch: n, geometry: g, weight: wf, bias: bf, activation: activation, y: yf, workspace: wsf)
            }
            return
        }
        Conv.forwardPerSample(x: x, batch: n, geometry: g, weight: weight, bias: bias, y: y, workspace: workspace)
        if activation != .identity { Kernels.activate(activation, y, count: n * g.outputCount, numerics: numerics) }
    }

    /// Max pooling's reverse (out (+)= gradient at each window's first maximum) or tangent (out = the
    /// tangent there): the arg-max is found again from x, into `scratch` (3 values per output: the
    /// indices as Int, then the maxima).
    @inlinable
    static func maxPoolDerivative(x: UnsafePointer<Self>, planes: Int, geometry g: PoolGeometry?, spatial: Int,
                                  gradient: UnsafePointer<Self>, scratch: UnsafeMutablePointer<Self>,
                                  out: UnsafeMutablePointer<Self>, tangent: Bool, accumulate: Bool) {
        let inP = g?.inputSpatialCount ?? spatial, outP = g?.outputSpatialCount ?? 1
        let count = planes * outP
        let raw = UnsafeMutableRawPointer(scratch)
        let indices = raw.bindMemory(to: Int.self, capacity: count)
        let y = (raw + count * MemoryLayout<Int>.stride).bindMemory(to: Self.self, capacity: count)
        if let g {
            Pool.max(x: x, planes: planes, geometry: g, y: y, indices: indices)
        } else {
            Pool.globalMax(x: x, planes: planes, spatial: spatial, y: y, indices: indices)
        }
        if tangent {
            Pool.maxTangent(tx: gradient, planes: planes, inputSpatial: inP, outputSpatial: outP, indices: indices, ty: out)
        } else {
            if !accumulate { out.update(repeating: 0, count: planes * inP) }
            Pool.maxBackward(gy: gradient, planes: planes, inputSpatial: inP, outputSpatial: outP, indices: indices, gx: out)
        }
        raw.bindMemory(to: Self.self, capacity: 3 * count)
    }
}

extension Engine.Differentiator {
    /// Scratch of max pooling's reverse and tangent steps: 3 values per output (an Int index in the
    /// room of one Double or two Floats, then the maximum).
    static func indexScratch(_ outputs: Engine.Extent) throws(InLoopError) -> Engine.Extent {
        let (p, o1) = outputs.perBatch.multipliedReportingOverflow(by: 3)
        let (f, o2) = outputs.fixed.multipliedReportingOverflow(by: 3)
        guard !o1, !o2, p <= Limits.maxElements, f <= Limits.maxElements else {
            throw InLoopError(.outOfMemory, "max pooling's derivative needs too much scratch space")
        }
        return Engine.Extent(perBatch: p, fixed: f)
    }
}

extension ConvOp {
    /// Per sample (threads): per image with static weights.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}

extension WindowPoolOp {
    /// Per sample (threads): per image; not with the Indices output (its indices count across the batch).
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch) && outputs.count == 1
    }
}

extension GlobalPoolOp {
    /// Per sample (threads): per image.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
