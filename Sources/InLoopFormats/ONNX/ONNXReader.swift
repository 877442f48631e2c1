#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftProtobuf
import InLoopCore

/// Reads ONNX model files (protobuf, decoded with swift-protobuf from the committed onnx.pb.swift)
/// into the engine's format-neutral `Graph`: initializers become constants (every floating type
/// float32, integer types Int), node attributes become typed `Op`s with opset differences normalised.
/// Every problem of an untrusted file is an `InLoopError` naming the node, the tensor or the attribute.
public enum ONNXReader {
    /// The ONNX operators InLoop runs (default domain).
    public static let supportedOps: [String] = [
        "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvTranspose", "Div", "Dropout", "Elu", "Erf", "Exp", "Flatten", "Floor",
        "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity",
        "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg",
        "Pow", "Range", "Reciprocal", "Relu", "Reshape", "Resize", "Round", "Selu", "Shape", "Sigmoid", "Sign",
        "Slice", "Softmax", "Softplus", "Softsign", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose",
        "Unsqueeze", "Upsample",
    ]

    /// Loads an ONNX file as a ready-to-run model; errors are prefixed with the path.
    public static func load(path: String) throws(InLoopError) -> GraphModel {
        let bytes = try FileIO.read(path)
        do { return try load(bytes: bytes, name: modelName(path)) } catch { throw error.prefixed(path) }
    }

    /// Loads ONNX bytes as a ready-to-run model (compiled for batch 1 and 2 to validate it).
    public static func load(bytes: [UInt8], name: String = "") throws(InLoopError) -> GraphModel {
        let g = try graph(bytes: bytes)
        return try GraphModel(graph: g, name: name.isEmpty ? g.name : name)
    }

    /// Loads ONNX bytes for the C ABI and the CLI: on the one engine (`Engine.Model`) when every op of
    /// the graph is in its op table and lowers; on the graph engine it replaces otherwise (while the
    /// ops move, `docs/ENGINE.md` phase 3), whose errors are then the ones reported.
    /// `directory`: the model file's directory, where its external data files are (nil: none may be).
    public static func loadModel(bytes: [UInt8], name: String = "", directory: String? = nil) throws(InLoopError) -> any InferenceModel {
        let (proto, opset) = try decode(bytes, directory: directory)
        var reader = GraphReader(opset: opset, functions: Set(proto.functions.map { $0.name }))
        var legacy: Graph? = nil, legacyError: InLoopError? = nil
        do { legacy = try reader.read(proto.graph) } catch { legacyError = error }
        let modelName = name.isEmpty ? proto.graph.name : name
        if let m = try? engineModel(proto, opset: opset, name: modelName, legacy: legacy) { return m }
        guard let legacy else { throw legacyError ?? InLoopError(.internal, "the graph could not be read") }
        return try GraphModel(graph: legacy, name: modelName)
    }

    /// The one engine's model of a decoded file.
    static func engineModel(_ proto: Onnx_ModelProto, opset: Int, name: String, legacy: Graph?) throws(InLoopError) -> Engine.Model {
        var reader = EngineGraphReader(opset: opset, functions: Set(proto.functions.map { $0.name }))
        let g = try reader.read(proto.graph)
        g.name = name
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}   // specialised per batch by the model
        return try Engine.Model(graph: g, name: name, legacy: legacy)
    }

    /// ONNX bytes on the one engine only (no fallback): for tests and tools that compare the engines.
    public static func engineModel(bytes: [UInt8], name: String = "", directory: String? = nil) throws(InLoopError) -> Engine.Model {
        let (proto, opset) = try decode(bytes, directory: directory)
        return try engineModel(proto, opset: opset, name: name.isEmpty ? proto.graph.name : name, legacy: nil)
    }

    /// "dir/column_mlp.onnx" → "column_mlp".
    static func modelName(_ path: String) -> String {
        var base = Substring(path)
        if let slash = base.lastIndex(of: "/") { base = base[base.index(after: slash)...] }
        if base.hasSuffix(".onnx") { base = base.dropLast(5) }
        return String(base)
    }

    /// Decodes ONNX bytes into a `Graph`.
    public static func graph(bytes: [UInt8]) throws(InLoopError) -> Graph {
        let (model, opset) = try decode(bytes)
        var reader = GraphReader(opset: opset, functions: Set(model.functions.map { $0.name }))
        return try reader.read(model.graph)
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? BinaryDecodingError {
            switch e {
            case .truncated: return "the data ends in the middle of a field (truncated)"
            case .malformedProtobuf: return "malformed protobuf"
            case .invalidUTF8: return "a string is not valid UTF-8"
            case .messageDepthLimit: return "messages nested too deeply"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }
}

/// ONNX TensorProto data types InLoop reads.
enum ONNXType: Int32 {
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, string = 8, bool = 9
    case float16 = 10, double = 11, uint32 = 12, uint64 = 13, bfloat16 = 16

    var isFloat: Bool { self == .float || self == .double || self == .float16 || self == .bfloat16 }
    var name: String {
        switch self {
        case .float: return "FLOAT"
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .int32: return "INT32"
        case .int64: return "INT64"
        case .string: return "STRING"
        case .bool: return "BOOL"
        case .float16: return "FLOAT16"
        case .double: return "DOUBLE"
        case .uint32: return "UINT32"
        case .uint64: return "UINT64"
        case .bfloat16: return "BFLOAT16"
        }
    }
    var size: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .float, .int32, .uint32: return 4
        case .int64, .double, .uint64: return 8
        case .string: return 0
        }
    }
}

struct GraphReader {
    let opset: Int
    let functions: Set<String>
    var constants: [String: GraphConstant] = [:]
    var nodeNames = Set<String>()

    init(opset: Int, functions: Set<String>) {
        self.opset = opset
        self.functions = functions
    }

    mutating func read(_ g: Onnx_GraphProto) throws(InLoopError) -> Graph {
        if !g.sparseInitializer.isEmpty {
            throw InLoopError(.unsupported, "the graph has sparse initializers ('\(g.sparseInitializer[0].values.name)'); InLoop reads dense tensors only")
        }
        for t in g.initializer {
            guard !t.name.isEmpty else { throw InLoopError(.format, "an initializer has no name") }
            guard constants[t.name] == nil else { throw InLoopError(.format, "initializer '\(t.name)' is defined twice") }
            do { constants[t.name] = try GraphReader.tensor(t) } catch { throw error.prefixed("initializer '\(t.name)'") }
        }
        var inputs: [GraphInput] = []
        for vi in g.input where constants[vi.name] == nil {
            inputs.append(try GraphReader.graphInput(vi))
        }
        var outputs: [String] = []
        for vi in g.output {
            guard !vi.name.isEmpty else { throw InLoopError(.format, "a graph output has no name") }
            if case .tensorType(let tt)? = vi.type.value, tt.hasElemType {
                if let t = ONNXType(rawValue: tt.elemType), !t.isFloat {
                    throw InLoopError(.unsupported, "graph output '\(vi.name)' has element type \(t.name); InLoop outputs are floating point")
                }
            }
            outputs.append(vi.name)
        }
        var nodes: [Node] = []
        for (i, n) in g.node.enumerated() {
            var name = n.name
            if name.isEmpty || nodeNames.contains(name) { name = "\(n.opType)_\(i)" }
            while nodeNames.contains(name) { name += "_" }
            nodeNames.insert(name)
            do {
                nodes.append(contentsOf: try node(n, name: name))
            } catch {
                throw error.prefixed("node '\(name)' (\(n.opType))")
            }
        }
        return Graph(name: g.name, inputs: inputs, outputs: outputs, constants: constants, nodes: nodes)
    }

    static func graphInput(_ vi: Onnx_ValueInfoProto) throws(InLoopError) -> GraphInput {
        guard !vi.name.isEmpty else { throw InLoopError(.format, "a graph input has no name") }
        guard case .tensorType(let tt)? = vi.type.value else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' is not a tensor")
        }
        if let t = ONNXType(rawValue: tt.elemType) {
            guard t.isFloat else {
                throw InLoopError(.unsupported, "graph input '\(vi.name)' has element type \(t.name); InLoop inputs are floating point (float32 or float64 arrays)")
            }
        } else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has element type \(tt.elemType), which InLoop does not read")
        }
        guard tt.hasShape else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has no shape; InLoop needs the shape of every input (the first dimension may be symbolic)")
        }
        var dims: [Int?] = []
        for (i, d) in tt.shape.dim.enumerated() {
            switch d.value {
            case .dimValue(let v)?:
                guard v >= 0, v <= Int64(1 << 40) else { throw InLoopError(.format, "graph input '\(vi.name)' has dimension \(v) on axis \(i)") }
                dims.append(Int(v))
            default:
                dims.append(nil)
            }
        }
        return GraphInput(name: vi.name, dims: dims)
    }

    // MARK: - Tensors

    static func tensor(_ t: Onnx_TensorProto) throws(InLoopError) -> GraphConstant {
        if t.dataLocation == .external || !t.externalData.isEmpty {
            let loc = t.externalData.first { $0.key == "location" }?.value ?? "?"
            throw InLoopError(.unsupported, "data is stored in an external file ('\(loc)'); InLoop reads self-contained .onnx files only (re-export without external data, e.g. onnx.save(model, path, save_as_external_data=False))")
        }
        if t.hasSegment { throw InLoopError(.unsupported, "segmented tensors are not supported") }
        guard let type = ONNXType(rawValue: t.dataType), type != .string else {
            throw InLoopError(.unsupported, "element type \(t.dataType) is not supported (InLoop reads floating-point and integer tensors)")
        }
        var shape: [Int] = []
        for d in t.dims {
            guard d >= 0, d <= Int64(1 << 40) else { throw InLoopError(.format, "dimension \(d) in dims \(t.dims) is invalid") }
            shape.append(Int(d))
        }
        let count = try Tensor.elementCount(shape)
        // Integer tensors are held as Int (8 bytes a value, whatever the file's type): the allocation limit.
        if !type.isFloat {
            try Limits.allocation(bytes: count.multipliedReportingOverflow(by: 8).overflow ? Int.max : count * 8,
                                  "integer tensor of shape \(Tensor.format(shape))")
        }
        if t.hasRawData {
            let raw = t.rawData
            let (need, o) = count.multipliedReportingOverflow(by: type.size)
            guard !o, raw.count == need else {
                throw InLoopError(.format, "raw_data has \(raw.count) bytes but shape \(Tensor.format(shape)) of \(type.name) needs \(o ? "too many" : String(need))")
            }
            return try decodeRaw([UInt8](raw), type: type, shape: shape, count: count)
        }
        func check(_ n: Int, _ field: String) throws(InLoopError) {
            guard n == count else {
                throw InLoopError(.format, "\(field) has \(n) values but shape \(Tensor.format(shape)) needs \(count)")
            }
        }
        switch type {
        case .float:
            try check(t.floatData.count, "float_data")
            return .float(try Tensor(shape: shape, values: t.floatData))
        case .double:
            try check(t.doubleData.count, "double_data")
            return .float(try Tensor(shape: shape, values: t.doubleData.map { Float($0) }))
        case .float16, .bfloat16:
            try check(t.int32Data.count, "int32_data")
            return .float(try Tensor(shape: shape, values: t.int32Data.map { half(UInt16(truncatingIfNeeded: $0), bfloat: type == .bfloat16) }))
        case .int64:
            try check(t.int64Data.count, "int64_data")
            return .int(try IntTensor(shape: shape, values: t.int64Data.map { Int($0) }))
        case .uint32, .uint64:
            try check(t.uint64Data.count, "uint64_data")
            var v: [Int] = []
            for x in t.uint64Data {
                guard x <= UInt64(Int.max) else { throw InLoopError(.format, "value \(x) is too large") }
                v.append(Int(x))
            }
            return .int(try IntTensor(shape: shape, values: v))
        default:
            try check(t.int32Data.count, "int32_data")
            return .int(try IntTensor(shape: shape, values: t.int32Data.map { Int($0) }))
        }
    }

    static func decodeRaw(_ b: [UInt8], type: ONNXType, shape: [Int], count: Int) throws(InLoopError) -> GraphConstant {
        func u(_ i: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(b[i * n + k]) << (8 * UInt64(k)) }
            return v
        }
        switch type {
        case .float, .double, .float16, .bfloat16:
            let t = try Tensor(zeros: shape)
            let p = t.storage.base
            switch type {
            case .float: for i in 0..<count { p[i] = Float(bitPattern: UInt32(truncatingIfNeeded: u(i, 4))) }
            case .double: for i in 0..<count { p[i] = Float(Double(bitPattern: u(i, 8))) }
            default: for i in 0..<count { p[i] = half(UInt16(truncatingIfNeeded: u(i, 2)), bfloat: type == .bfloat16) }
            }
            return .float(t)
        default:
            var v: [Int] = []
            v.reserveCapacity(count)
            for i in 0..<count {
                switch type {
                case .int64: v.append(Int(Int64(bitPattern: u(i, 8))))
                case .uint64:
                    let x = u(i, 8)
                    guard x <= UInt64(Int.max) else { throw InLoopError(.format, "value \(x) is too large") }
                    v.append(Int(x))
                case .int32: v.append(Int(Int32(bitPattern: UInt32(truncatingIfNeeded: u(i, 4)))))
                case .uint32: v.append(Int(u(i, 4)))
                case .int16: v.append(Int(Int16(bitPattern: UInt16(truncatingIfNeeded: u(i, 2)))))
                case .uint16: v.append(Int(u(i, 2)))
                case .int8: v.append(Int(Int8(bitPattern: UInt8(truncatingIfNeeded: u(i, 1)))))
                default: v.append(Int(u(i, 1)))  // uint8, bool
                }
            }
            return .int(try IntTensor(shape: shape, values: v))
        }
    }

    /// IEEE half or bfloat16 bits → Float.
    static func half(_ h: UInt16, bfloat: Bool) -> Float {
        if bfloat { return Float(bitPattern: UInt32(h) << 16) }
        let sign = UInt32(h >> 15) << 31, exp = Int((h >> 10) & 0x1f), frac = UInt32(h & 0x3ff)
        if exp == 0 {
            let v = Float(frac) * 0x1p-24
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (frac << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (frac << 13))
    }

    // MARK: - Nodes

    mutating func node(_ n: Onnx_NodeProto, name: String) throws(InLoopError) -> [Node] {
        if !(n.domain.isEmpty || n.domain == "ai.onnx") {
            throw InLoopError(.unsupported, "operator domain '\(n.domain)' is not supported; InLoop runs operators of the default ONNX domain: \(ONNXReader.supportedOps.joined(separator: ", "))")
        }
        let a = try Attributes(n.attribute)
        var inputs = n.input
        let outputs = n.output
        func make(_ op: Op) -> [Node] { [Node(name: name, opType: n.opType, op: op, inputs: inputs, outputs: outputs)] }
        func activation(_ act: Activation) -> [Node] { make(.activation(act)) }
        switch n.opType {
        case "Gemm":
            return make(.gemm(alpha: try a.float("alpha", 1), beta: try a.float("beta", 1),
                              transA: try a.int("transA", 0) != 0, transB: try a.int("transB", 0) != 0))
        case "MatMul": return make(.matMul)
        case "Add": return make(.binary(.add))
        case "Sub": return make(.binary(.sub))
        case "Mul": return make(.binary(.mul))
        case "Div": return make(.binary(.div))
        case "Pow": return make(.binary(.pow))
        case "Min", "Max":
            guard inputs.count == 2 else {
                throw InLoopError(.unsupported, "\(n.opType) with \(inputs.count) inputs; InLoop supports exactly 2")
            }
            return make(.binary(n.opType == "Min" ? .min : .max))
        case "Relu": return activation(.relu)
        case "LeakyRelu": return activation(.leakyRelu(alpha: try a.float("alpha", 0.01)))
        case "Tanh": return activation(.tanh)
        case "Sigmoid": return activation(.sigmoid)
        case "Softplus": return activation(.softplus)
        case "Elu": return activation(.elu(alpha: try a.float("alpha", 1)))
        case "Gelu":
            switch try a.string("approximate", "none") {
            case "none": return activation(.gelu)
            case "tanh": return activation(.geluTanh)
            case let s: throw InLoopError(.unsupported, "attribute approximate='\(s)' (supported: none, tanh)")
            }
        case "Erf": return make(.unary(.erf))
        case "Exp": return make(.unary(.exp))
        case "Log": return make(.unary(.log))
        case "Sqrt": return make(.unary(.sqrt))
        case "Neg": return make(.unary(.neg))
        case "Abs": return make(.unary(.abs))
        case "Reciprocal": return make(.unary(.reciprocal))
        case "Floor": return make(.unary(.floor))
        case "Ceil": return make(.unary(.ceil))
        case "Round": return make(.unary(.round))
        case "Sign": return make(.unary(.sign))
        case "Softsign": return make(.unary(.softsign))
        case "HardSwish": return make(.unary(.hardSwish))
        case "HardSigmoid": return make(.unary(.hardSigmoid(alpha: try a.float("alpha", 0.2), beta: try a.float("beta", 0.5))))
        case "Selu":
            return make(.unary(.selu(alpha: try a.float("alpha", 1.67326319217681884765625),
                                     gamma: try a.float("gamma", 1.05070102214813232421875))))
        case "Clip":
            if opset < 11 {
                return make(.clip(min: try a.float("min", -Float.infinity), max: try a.float("max", Float.infinity)))
            }
            return make(.clip(min: nil, max: nil))
        case "Softmax", "LogSoftmax":
            let log = n.opType == "LogSoftmax"
            if opset < 13 { return make(.softmax(axis: try a.int("axis", 1), coerce2D: true, log: log)) }
            return make(.softmax(axis: try a.int("axis", -1), coerce2D: false, log: log))
        case "Identity": return make(.identity)
        case "Dropout":
            if opset >= 12, inputs.count >= 3, !inputs[2].isEmpty {
                guard case .int(let t)? = constants[inputs[2]], t.values.allSatisfy({ $0 == 0 }) else {
                    throw InLoopError(.unsupported, "Dropout in training mode (input training_mode must be a constant false)")
                }
            }
            inputs = Array(inputs.prefix(1))
            return make(.identity)
        case "Flatten": return make(.flatten(axis: try a.int("axis", 1)))
        case "Reshape":
            if opset < 5 { throw InLoopError(.unsupported, "Reshape of opset \(opset) (shape as an attribute); re-export with opset ≥ 5") }
            return make(.reshape(allowZero: try a.int("allowzero", 0) != 0))
        case "Transpose": return make(.transpose(perm: try a.intsOrNil("perm")))
        case "Concat":
            guard let axis = try a.intOrNil("axis") else { throw InLoopError(.format, "attribute 'axis' is required") }
            return make(.concat(axis: axis))
        case "Split":
            let sizes = opset < 13 ? try a.intsOrNil("split") : nil
            return make(.split(axis: try a.int("axis", 0), sizes: sizes))
        case "Slice":
            if opset < 10 {
                guard let s = try a.intsOrNil("starts"), let e = try a.intsOrNil("ends") else {
                    throw InLoopError(.format, "attributes 'starts' and 'ends' are required")
                }
                return make(.slice(SliceAttributes(starts: s, ends: e, axes: try a.intsOrNil("axes"))))
            }
            return make(.slice(nil))
        case "Squeeze": return make(.squeeze(axes: opset < 13 ? try a.intsOrNil("axes") : nil))
        case "Unsqueeze":
            if opset < 13 {
                guard let axes = try a.intsOrNil("axes") else { throw InLoopError(.format, "attribute 'axes' is required") }
                return make(.unsqueeze(axes: axes))
            }
            return make(.unsqueeze(axes: nil))
        case "Gather": return make(.gather(axis: try a.int("axis", 0)))
        case "Conv", "ConvTranspose":
            var c = ConvAttributes(kernelShape: try a.intsOrNil("kernel_shape"), strides: try a.intsOrNil("strides"),
                                   dilations: try a.intsOrNil("dilations"), pads: try a.intsOrNil("pads"),
                                   group: try a.int("group", 1), autoPad: try autoPad(a))
            if n.opType == "Conv" { return make(.conv(c)) }
            c.outputPadding = try a.intsOrNil("output_padding")
            c.outputShape = try a.intsOrNil("output_shape")
            return make(.convTranspose(c))
        case "MaxPool", "AveragePool":
            guard let k = try a.intsOrNil("kernel_shape") else { throw InLoopError(.format, "attribute 'kernel_shape' is required") }
            let p = PoolAttributes(kernelShape: k, strides: try a.intsOrNil("strides"), dilations: try a.intsOrNil("dilations"),
                                   pads: try a.intsOrNil("pads"), autoPad: try autoPad(a), ceilMode: try a.int("ceil_mode", 0) != 0,
                                   countIncludePad: try a.int("count_include_pad", 0) != 0)
            return make(n.opType == "MaxPool" ? .maxPool(p) : .averagePool(p))
        case "GlobalAveragePool": return make(.globalAveragePool)
        case "GlobalMaxPool": return make(.globalMaxPool)
        case "BatchNormalization":
            if try a.int("training_mode", 0) != 0 {
                throw InLoopError(.unsupported, "attribute training_mode=1; InLoop runs BatchNormalization in inference mode only")
            }
            if opset < 9, try a.int("spatial", 1) != 1 {
                throw InLoopError(.unsupported, "attribute spatial=0 (per-element statistics) is not supported")
            }
            return make(.batchNormalization(epsilon: try a.float("epsilon", 1e-5)))
        case "LayerNormalization":
            return make(.layerNormalization(axis: try a.int("axis", -1), epsilon: try a.float("epsilon", 1e-5)))
        case "Resize", "Upsample":
            let mode = try a.string("mode", "nearest")
            guard mode == "nearest" else {
                throw InLoopError(.unsupported, "attribute mode='\(mode)'; InLoop supports \(n.opType) with mode='nearest' only")
            }
            if n.opType == "Upsample" || opset < 11 {
                // Upsample and Resize-10: asymmetric coordinates, floor ("simple" nearest in onnxruntime).
                var scales = inputs.count > 1 ? inputs[1] : ""
                if let s = try a.floatsOrNil("scales") {
                    scales = name + "/scales"
                    constants[scales] = .float(try Tensor(shape: [s.count], values: s))
                }
                inputs = [inputs.first ?? "", scales, ""]
                return make(.resize(ResizeAttributes(coordinateMode: .asymmetric, nearestMode: .floor)))
            }
            let cmName = try a.string("coordinate_transformation_mode", "half_pixel")
            guard let cm = ResizeCoordinateMode(onnxName: cmName) else {
                throw InLoopError(.unsupported, "attribute coordinate_transformation_mode='\(cmName)' (supported: half_pixel, half_pixel_symmetric, asymmetric, align_corners, pytorch_half_pixel, tf_half_pixel_for_nearest)")
            }
            let nmName = try a.string("nearest_mode", "round_prefer_floor")
            guard let nm = ResizeNearestMode(onnxName: nmName) else {
                throw InLoopError(.unsupported, "attribute nearest_mode='\(nmName)' (supported: round_prefer_floor, round_prefer_ceil, floor, ceil)")
            }
            let policy = try a.string("keep_aspect_ratio_policy", "stretch")
            guard policy == "stretch" else {
                throw InLoopError(.unsupported, "attribute keep_aspect_ratio_policy='\(policy)' (supported: stretch)")
            }
            func at(_ i: Int) -> String { i < inputs.count ? inputs[i] : "" }
            inputs = [at(0), at(2), at(3)]
            return make(.resize(ResizeAttributes(coordinateMode: cm, nearestMode: nm, axes: try a.intsOrNil("axes"))))
        case "Shape":
            return make(.shape(start: try a.int("start", 0), end: try a.intOrNil("end")))
        case "Constant":
            return make(.constant(try constantValue(a)))
        case "ConstantOfShape":
            var v: GraphConstant? = nil
            if let t = a.raw("value") {
                guard t.type == .tensor || t.hasT else { throw InLoopError(.format, "attribute 'value' must be a tensor") }
                do { v = try GraphReader.tensor(t.t) } catch { throw error.prefixed("attribute 'value'") }
            }
            return make(.constantOfShape(v))
        case "Cast":
            guard let to = try a.intOrNil("to") else { throw InLoopError(.format, "attribute 'to' is required") }
            guard let t = ONNXType(rawValue: Int32(truncatingIfNeeded: to)), t != .string else {
                throw InLoopError(.unsupported, "Cast to element type \(to)")
            }
            return make(.cast(to: t.isFloat ? .float : .int))
        case "Range": return make(.range)
        default:
            if functions.contains(n.opType) {
                throw InLoopError(.unsupported, "operator '\(n.opType)' is a model-local function; InLoop runs only the standard operators: \(ONNXReader.supportedOps.joined(separator: ", "))")
            }
            throw InLoopError(.unsupported, "operator '\(n.opType)' is not supported; InLoop supports: \(ONNXReader.supportedOps.joined(separator: ", "))")
        }
    }

    func autoPad(_ a: Attributes) throws(InLoopError) -> AutoPad {
        switch try a.string("auto_pad", "NOTSET") {
        case "NOTSET", "": return .notSet
        case "SAME_UPPER": return .sameUpper
        case "SAME_LOWER": return .sameLower
        case "VALID": return .valid
        case let s: throw InLoopError(.format, "attribute auto_pad='\(s)' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        }
    }

    func constantValue(_ a: Attributes) throws(InLoopError) -> GraphConstant {
        if let t = a.raw("value") {
            do { return try GraphReader.tensor(t.t) } catch { throw error.prefixed("attribute 'value'") }
        }
        if let f = try a.floatOrNil("value_float") { return .float(try Tensor(shape: [], values: [f])) }
        if let f = try a.floatsOrNil("value_floats") { return .float(try Tensor(shape: [f.count], values: f)) }
        if let i = try a.intOrNil("value_int") { return .int(IntTensor(scalar: i)) }
        if let i = try a.intsOrNil("value_ints") { return .int(IntTensor(i)) }
        if a.raw("sparse_value") != nil { throw InLoopError(.unsupported, "sparse constants are not supported") }
        if a.raw("value_string") != nil || a.raw("value_strings") != nil {
            throw InLoopError(.unsupported, "string constants are not supported")
        }
        throw InLoopError(.format, "Constant has no value attribute")
    }
}

/// A node's attributes by name, with typed, checked access.
struct Attributes {
    private var byName: [String: Onnx_AttributeProto] = [:]

    init(_ list: [Onnx_AttributeProto]) throws(InLoopError) {
        for at in list {
            guard byName[at.name] == nil else { throw InLoopError(.format, "attribute '\(at.name)' is given twice") }
            if !at.refAttrName.isEmpty {
                throw InLoopError(.unsupported, "attribute '\(at.name)' refers to a function attribute")
            }
            byName[at.name] = at
        }
    }

    func raw(_ name: String) -> Onnx_AttributeProto? { byName[name] }

    private func typed(_ name: String, _ want: Onnx_AttributeProto.AttributeType, _ wantName: String) throws(InLoopError) -> Onnx_AttributeProto? {
        guard let at = byName[name] else { return nil }
        guard at.type == want || at.type == .undefined else {
            throw InLoopError(.format, "attribute '\(name)' must be \(wantName), got type \(at.type)")
        }
        return at
    }

    func intOrNil(_ name: String) throws(InLoopError) -> Int? {
        try typed(name, .int, "an integer").map { Int($0.i) }
    }

    func int(_ name: String, _ def: Int) throws(InLoopError) -> Int { try intOrNil(name) ?? def }

    func floatOrNil(_ name: String) throws(InLoopError) -> Float? {
        guard let at = try typed(name, .float, "a float") else { return nil }
        guard !at.f.isNaN else { throw InLoopError(.format, "attribute '\(name)' is NaN") }
        return at.f
    }

    func float(_ name: String, _ def: Float) throws(InLoopError) -> Float { try floatOrNil(name) ?? def }

    func intsOrNil(_ name: String) throws(InLoopError) -> [Int]? {
        try typed(name, .ints, "a list of integers").map { $0.ints.map { Int($0) } }
    }

    func floatsOrNil(_ name: String) throws(InLoopError) -> [Float]? {
        try typed(name, .floats, "a list of floats").map { $0.floats }
    }

    func string(_ name: String, _ def: String) throws(InLoopError) -> String {
        guard let at = try typed(name, .string, "a string") else { return def }
        guard let s = String(validating: at.s, as: UTF8.self) else {
            throw InLoopError(.format, "attribute '\(name)' is not valid UTF-8")
        }
        return s
    }
}
