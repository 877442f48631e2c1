#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftProtobuf
import InLoopCore

/// ONNX → the one engine's graph IR (`Engine.Graph`, `docs/ENGINE.md` §3.1). The reader walks the
/// protobuf and interprets nothing: each node becomes (op_type, raw attributes), and the op table
/// (`OpTable.standard`) finds the op and parses its attributes for the model's opset. Initializers keep
/// their element type (float32, float64, int64, bool; float16/bfloat16 widen to float32, smaller
/// integers to int64).
///
/// The batch: every graph input's axis 0, when it is symbolic (a `dim_param` or no value), is the one
/// batch symbol (the axis the C and Fortran batch convenience maps to), unless its `dim_param` names a
/// dimension that an input has on another axis (then it is that symbol); other symbolic dimensions get
/// symbols of their own, by name.
extension ONNXReader {
    /// Decodes ONNX bytes into a verified, typed `Engine.Graph`.
    /// `directory`: the model file's directory, where its external data files are (nil: none may be).
    public static func engineGraph(bytes: [UInt8], name: String = "", directory: String? = nil) throws(InLoopError) -> Engine.Graph {
        let (model, opset) = try decode(bytes, directory: directory)
        var reader = EngineGraphReader(opset: opset, functions: Set(model.functions.map { $0.name }))
        let g = try reader.read(model.graph)
        if !name.isEmpty { g.name = name }
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}   // typed per batch size when compiled
        return g
    }

    /// The model proto and its default-domain opset, checked; external data read from `directory`
    /// (`ONNXExternalData`), or refused when it is nil.
    static func decode(_ bytes: [UInt8], directory: String? = nil) throws(InLoopError) -> (Onnx_ModelProto, Int) {
        guard !bytes.isEmpty else { throw InLoopError(.format, "file is empty") }
        var model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: bytes, options: options)
        } catch {
            throw InLoopError(.format, "not a valid ONNX file (protobuf decoding failed: \(describe(error))); is it truncated, or not an ONNX model?")
        }
        guard model.hasGraph, model.irVersion > 0 else {
            throw InLoopError(.format, "not an ONNX model (no ir_version or no graph in the protobuf message)")
        }
        var opset: Int? = nil
        for imp in model.opsetImport where imp.domain.isEmpty || imp.domain == "ai.onnx" {
            opset = Int(imp.version)
        }
        guard let opset else {
            throw InLoopError(.format, "the model imports no opset of the default ONNX domain (opset_import)")
        }
        guard opset >= 1, opset <= 1000 else { throw InLoopError(.format, "default-domain opset version \(opset) is invalid") }
        try ONNXExternalData.resolve(&model, bytes: bytes, directory: directory)
        return (model, opset)
    }
}

struct EngineGraphReader {
    let opset: Int
    let functions: Set<String>
    /// Float values of Constant nodes seen so far (by output name).
    var constantNodeFloats: [String: [Double]] = [:]
    /// `dim_param` names that some graph input has on an axis other than 0: such a name on axis 0 is
    /// its own symbol (a sequence length T of x [N, T, 4] leading lev [T, 1]), not the batch.
    var nonLeadingNames: Set<String> = []
    /// Initializers, and the outputs of Identity nodes of an initializer (not graph outputs), which
    /// name the initializer itself: torch's TorchScript exporter writes one initializer for equal
    /// weights (LayerNorm's zero bias and an attention bias) and Identity nodes for the others, which
    /// would make the weight a computed value (not a parameter) to the trainer.
    var initializerNames: Set<String> = []
    var graphOutputs: Set<String> = []
    var alias: [String: String] = [:]

    mutating func read(_ proto: Onnx_GraphProto) throws(InLoopError) -> Engine.Graph {
        if !proto.sparseInitializer.isEmpty {
            throw InLoopError(.unsupported, "the graph has sparse initializers ('\(proto.sparseInitializer[0].values.name)'); InLoop reads dense tensors only")
        }
        let g = Engine.Graph(name: proto.name, dtype: .float32, origin: .onnx, opset: opset)
        var initializers = Set<String>()
        var sawDouble = false, sawSingle = false, doubleWeights = false, singleInputs = false, doubleInputs = false
        for t in proto.initializer {
            guard !t.name.isEmpty else { throw InLoopError(.format, "an initializer has no name") }
            guard initializers.insert(t.name).inserted else { throw InLoopError(.format, "initializer '\(t.name)' is defined twice") }
            let tensor: Engine.Tensor
            do { tensor = try EngineGraphReader.tensor(t) } catch { throw error.prefixed("initializer '\(t.name)'") }
            if tensor.dtype == .float64 { sawDouble = true; doubleWeights = true } else if tensor.dtype == .float32 { sawSingle = true }
            try g.addConstant(t.name, tensor)
        }
        // Graph inputs (an input that is also an initializer is a constant with a default: InLoop uses
        // the initializer, as ONNX Runtime does when the input is not fed).
        var batchName: String? = nil
        for vi in proto.input where !initializers.contains(vi.name) {
            if case .tensorType(let tt)? = vi.type.value {
                for d in tt.shape.dim.dropFirst() {
                    if case .dimParam(let p)? = d.value, !p.isEmpty { nonLeadingNames.insert(p) }
                }
            }
        }
        for vi in proto.input where !initializers.contains(vi.name) {
            let type = try inputType(vi, g, batchName: &batchName)
            if type.dtype == .float64 { sawDouble = true; doubleInputs = true } else { sawSingle = true; singleInputs = true }
            try g.addInput(vi.name, type)
        }
        // float64 when every float is; also when the inputs are float64 and weights are, beside a few
        // float32 scalars (torch's dynamo exporter writes the 0/1 of a causal mask so in a .double() model)
        if sawDouble && !sawSingle || doubleInputs && !singleInputs && doubleWeights { g.dtype = .float64 }
        initializerNames = initializers
        graphOutputs = Set(proto.output.map { $0.name })
        for (i, n) in proto.node.enumerated() {
            let name = n.name.isEmpty ? "\(n.opType)_\(i)" : n.name
            do {
                try node(n, name: name, into: g)
            } catch {
                throw error.prefixed("node '\(name)' (\(n.opType))")
            }
        }
        for vi in proto.output {
            guard !vi.name.isEmpty else { throw InLoopError(.format, "a graph output has no name") }
            if case .tensorType(let tt)? = vi.type.value, tt.hasElemType, let t = ONNXType(rawValue: tt.elemType), !t.isFloat {
                throw InLoopError(.unsupported, "graph output '\(vi.name)' has element type \(t.name); InLoop outputs are floating point")
            }
            try g.markOutput(vi.name)
        }
        guard !g.outputs.isEmpty else { throw InLoopError(.format, "the graph has no outputs") }
        return g
    }

    /// A graph input's type: float32 or float64 (float16/bfloat16 inputs are read as float32 arrays),
    /// known dimensions, and symbols for the others (axis 0: the batch).
    func inputType(_ vi: Onnx_ValueInfoProto, _ g: Engine.Graph, batchName: inout String?) throws(InLoopError) -> Engine.TensorType {
        guard !vi.name.isEmpty else { throw InLoopError(.format, "a graph input has no name") }
        guard case .tensorType(let tt)? = vi.type.value else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' is not a tensor")
        }
        guard let t = ONNXType(rawValue: tt.elemType) else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has element type \(tt.elemType), which InLoop does not read")
        }
        guard t.isFloat else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has element type \(t.name); InLoop inputs are floating point (float32 or float64 arrays)")
        }
        guard tt.hasShape else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has no shape; InLoop needs the shape of every input (the first dimension may be symbolic)")
        }
        guard tt.shape.dim.count <= Engine.maxRank else {
            throw InLoopError(.unsupported, "graph input '\(vi.name)' has rank \(tt.shape.dim.count); InLoop takes ranks up to \(Engine.maxRank)")
        }
        var shape: Engine.Shape = []
        for (i, d) in tt.shape.dim.enumerated() {
            switch d.value {
            case .dimValue(let v)?:
                guard v >= 0, v <= Int64(Limits.maxDimension) else {
                    throw InLoopError(.format, "graph input '\(vi.name)' has dimension \(v) on axis \(i)")
                }
                shape.append(Engine.SymInt(Int(v)))
            case .dimParam(let p)?:
                if i == 0, !nonLeadingNames.contains(p) || p == batchName {
                    let b = batchName ?? (p.isEmpty ? "N" : p)
                    batchName = b
                    let s = g.symbol(named: b)
                    g.batch = s
                    shape.append(Engine.SymInt(s))
                } else {
                    shape.append(Engine.SymInt(g.symbol(named: p.isEmpty ? "\(vi.name):\(i)" : p)))
                }
            case nil:
                if i == 0 {
                    let b = batchName ?? "N"
                    batchName = b
                    let s = g.symbol(named: b)
                    g.batch = s
                    shape.append(Engine.SymInt(s))
                } else {
                    shape.append(Engine.SymInt(g.symbol(named: "\(vi.name):\(i)")))
                }
            }
        }
        return Engine.TensorType(t == .double ? .float64 : .float32, shape)
    }

    /// The float values of a constant: an initializer, or the value of an earlier Constant node.
    func constantFloats(_ name: String, _ g: Engine.Graph) -> [Double]? {
        if let v = constantNodeFloats[name] { return v }
        guard let id = g.names[name], let c = g[id].constant, c.count <= Engine.maxKnownElements else { return nil }
        switch c.dtype {
        case .float32: return (try? c.values(as: Float.self))?.map { Double($0) }
        case .float64: return try? c.values(as: Double.self)
        default: return nil
        }
    }

    mutating func node(_ n: Onnx_NodeProto, name: String, into g: Engine.Graph) throws(InLoopError) {
        guard n.domain.isEmpty || n.domain == "ai.onnx" else {
            throw InLoopError(.unsupported, "operator domain '\(n.domain)' is not supported; InLoop runs operators of the default ONNX domain: \(ONNXReader.supportedOps.joined(separator: ", "))")
        }
        let op: any OpDefinition.Type
        do {
            op = try OpTable.standard.lookup(n.opType, opset: opset)
        } catch {
            if functions.contains(n.opType) {
                throw InLoopError(.unsupported, "operator '\(n.opType)' is a model-local function; InLoop runs only the standard operators")
            }
            // the list of what runs, so the user sees what to export to
            throw InLoopError(error.kind, "\(error.message); InLoop runs: \(ONNXReader.supportedOps.joined(separator: ", "))")
        }
        var raw: [String: Engine.AttributeValue] = [:]
        for at in n.attribute {
            guard raw[at.name] == nil else { throw InLoopError(.format, "attribute '\(at.name)' is given twice") }
            if !at.refAttrName.isEmpty { throw InLoopError(.unsupported, "attribute '\(at.name)' refers to a function attribute") }
            raw[at.name] = try EngineGraphReader.attribute(at)
        }
        for o in n.output where alias[o] != nil { throw InLoopError(.format, "value '\(o)' is defined twice") }
        var inputs = n.input.map { alias[$0] ?? $0 }
        if n.opType == "Identity", inputs.count == 1, n.output.count == 1, initializerNames.contains(inputs[0]),
           !graphOutputs.contains(n.output[0]), !initializerNames.contains(n.output[0]), alias[n.output[0]] == nil {
            alias[n.output[0]] = inputs[0]
            return
        }
        // Resize/Upsample: constant scales (an initializer or a Constant node's value) become the
        // `scales` attribute (floats are not visible to type inference as inputs)
        if n.opType == "Resize" || n.opType == "Upsample", raw["scales"] == nil {
            let k = n.opType == "Upsample" || opset < 11 ? 1 : 2
            if k < inputs.count, !inputs[k].isEmpty, let values = constantFloats(inputs[k], g) {
                if !values.isEmpty { raw["scales"] = .floats(values) }
                inputs[k] = ""
            }
        }
        // Range with constant float bounds: the `bounds` attribute (as scales above)
        if n.opType == "Range", raw["bounds"] == nil, inputs.count == 3 {
            let b = inputs.compactMap { constantFloats($0, g) }
            if b.count == 3, b.allSatisfy({ $0.count == 1 }) { raw["bounds"] = .floats(b.map { $0[0] }) }
        }
        if n.opType == "Constant", let out = n.output.first, case .tensor(let t)? = raw["value"], t.dtype.isFloatingPoint {
            constantNodeFloats[out] = t.floats
        }
        // trailing optional outputs left out ("") are not outputs (BatchNormalization's statistics,
        // Dropout's mask, LayerNormalization's Mean/InvStdDev, as exporters write them)
        var outputs = n.output
        while outputs.count > 1, outputs.last == "" { outputs.removeLast() }
        while inputs.last == "" { inputs.removeLast() }
        try g.addNode(name, op, raw, inputs: inputs, outputs: outputs)
    }

    /// A raw attribute value (its kind from the declared type, or from the field set when the type is
    /// missing, as old exporters write).
    static func attribute(_ at: Onnx_AttributeProto) throws(InLoopError) -> Engine.AttributeValue {
        func text(_ bytes: Data) throws(InLoopError) -> String {
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw InLoopError(.format, "attribute '\(at.name)' is not valid UTF-8")
            }
            return s
        }
        var type = at.type
        if type == .undefined {
            if at.hasF { type = .float } else if at.hasI { type = .int } else if at.hasS { type = .string }
            else if at.hasT { type = .tensor } else if !at.floats.isEmpty { type = .floats } else if !at.ints.isEmpty { type = .ints }
            else if !at.strings.isEmpty { type = .strings }
        }
        switch type {
        case .int: return .int(Int(at.i))
        case .float:
            guard !at.f.isNaN else { throw InLoopError(.format, "attribute '\(at.name)' is NaN") }
            return .float(Double(at.f))
        case .string: return .string(try text(at.s))
        case .ints:
            guard at.ints.count <= Engine.maxKnownElements else { throw InLoopError(.format, "attribute '\(at.name)' has \(at.ints.count) values") }
            return .ints(at.ints.map { Int($0) })
        case .floats:
            guard at.floats.count <= Engine.maxKnownElements else { throw InLoopError(.format, "attribute '\(at.name)' has \(at.floats.count) values") }
            return .floats(at.floats.map { Double($0) })
        case .strings:
            var list: [String] = []
            for s in at.strings { list.append(try text(s)) }
            return .strings(list)
        case .tensor:
            let t: Engine.Tensor
            do { t = try tensor(at.t) } catch { throw error.prefixed("attribute '\(at.name)'") }
            return .tensor(try tensorValue(t))
        default:
            throw InLoopError(.unsupported, "attribute '\(at.name)' is of type \(at.type) (graphs, sparse tensors and tensor lists are not supported)")
        }
    }

    /// A tensor attribute as the op table takes it: elements widened to Double or Int.
    static func tensorValue(_ t: Engine.Tensor) throws(InLoopError) -> Engine.TensorValue {
        guard t.count <= Engine.maxKnownElements else {
            throw InLoopError(.unsupported, "a tensor attribute of \(t.count) values (InLoop takes up to \(Engine.maxKnownElements))")
        }
        switch t.dtype {
        case .float32: return Engine.TensorValue(dtype: .float32, shape: t.shape, floats: try t.values(as: Float.self).map { Double($0) })
        case .float64: return Engine.TensorValue(dtype: .float64, shape: t.shape, floats: try t.values(as: Double.self))
        case .int64: return Engine.TensorValue(dtype: .int64, shape: t.shape, ints: try t.values(as: Int64.self).map { Int($0) })
        case .bool: return Engine.TensorValue(dtype: .bool, shape: t.shape, ints: try t.values(as: Bool.self).map { $0 ? 1 : 0 })
        }
    }

    // MARK: - Tensors

    static func tensor(_ t: Onnx_TensorProto) throws(InLoopError) -> Engine.Tensor {
        if t.dataLocation == .external || !t.externalData.isEmpty {
            let loc = t.externalData.first { $0.key == "location" }?.value ?? "?"
            throw InLoopError(.unsupported, "data is stored in an external file ('\(loc)'); InLoop reads self-contained .onnx files only (re-export without external data, e.g. onnx.save(model, path, save_as_external_data=False))")
        }
        if t.hasSegment { throw InLoopError(.unsupported, "segmented tensors are not supported") }
        guard let type = ONNXType(rawValue: t.dataType), type != .string else {
            throw InLoopError(.unsupported, "element type \(t.dataType) is not supported (InLoop reads floating-point, integer and boolean tensors)")
        }
        var shape: [Int] = []
        for d in t.dims {
            guard d >= 0, d <= Int64(Limits.maxDimension) else { throw InLoopError(.format, "dimension \(d) in dims \(t.dims) is invalid") }
            shape.append(Int(d))
        }
        let count = try InLoopCore.Tensor.elementCount(shape)
        let dtype: Engine.DType = type == .double ? .float64 : type.isFloat ? .float32 : type == .bool ? .bool : .int64
        try Limits.allocation(bytes: count.multipliedReportingOverflow(by: dtype.size).overflow ? Int.max : count * dtype.size,
                              "tensor of shape \(InLoopCore.Tensor.format(shape))")
        let out = try Engine.Tensor(zeros: shape, dtype: dtype)
        if t.hasRawData {
            let raw = t.rawData
            let (need, o) = count.multipliedReportingOverflow(by: type.size)
            guard !o, raw.count == need else {
                throw InLoopError(.format, "raw_data has \(raw.count) bytes but shape \(InLoopCore.Tensor.format(shape)) of \(type.name) needs \(o ? "too many" : String(need))")
            }
            var failure: InLoopError? = nil
            raw.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
                do { try decodeRaw(b, type: type, count: count, into: out) } catch let e as InLoopError { failure = e } catch { failure = InLoopError(.internal, "\(error)") }
            }
            if let failure { throw failure }
            return out
        }
        func check(_ n: Int, _ field: String) throws(InLoopError) {
            guard n == count else {
                throw InLoopError(.format, "\(field) has \(n) values but shape \(InLoopCore.Tensor.format(shape)) needs \(count)")
            }
        }
        switch type {
        case .float:
            try check(t.floatData.count, "float_data")
            let p = try out.storage.pointer(as: Float.self)
            for i in 0..<count { p[i] = t.floatData[i] }
        case .double:
            try check(t.doubleData.count, "double_data")
            let p = try out.storage.pointer(as: Double.self)
            for i in 0..<count { p[i] = t.doubleData[i] }
        case .float16, .bfloat16:
            try check(t.int32Data.count, "int32_data")
            let p = try out.storage.pointer(as: Float.self)
            for i in 0..<count { p[i] = ONNXType.half(UInt16(truncatingIfNeeded: t.int32Data[i]), bfloat: type == .bfloat16) }
        case .int64:
            try check(t.int64Data.count, "int64_data")
            let p = try out.storage.pointer(as: Int64.self)
            for i in 0..<count { p[i] = t.int64Data[i] }
        case .uint32, .uint64:
            try check(t.uint64Data.count, "uint64_data")
            let p = try out.storage.pointer(as: Int64.self)
            for i in 0..<count {
                guard t.uint64Data[i] <= UInt64(Int64.max) else { throw InLoopError(.format, "value \(t.uint64Data[i]) is too large") }
                p[i] = Int64(t.uint64Data[i])
            }
        case .bool:
            try check(t.int32Data.count, "int32_data")
            let p = try out.storage.pointer(as: Bool.self)
            for i in 0..<count { p[i] = t.int32Data[i] != 0 }
        default:
            try check(t.int32Data.count, "int32_data")
            let p = try out.storage.pointer(as: Int64.self)
            for i in 0..<count { p[i] = Int64(t.int32Data[i]) }
        }
        return out
    }

    static func decodeRaw(_ b: UnsafeRawBufferPointer, type: ONNXType, count: Int, into out: Engine.Tensor) throws(InLoopError) {
        func u(_ i: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(b[i * n + k]) << (8 * UInt64(k)) }
            return v
        }
        switch type {
        case .float:
            let p = try out.storage.pointer(as: Float.self)
            for i in 0..<count { p[i] = Float(bitPattern: UInt32(truncatingIfNeeded: u(i, 4))) }
        case .double:
            let p = try out.storage.pointer(as: Double.self)
            for i in 0..<count { p[i] = Double(bitPattern: u(i, 8)) }
        case .float16, .bfloat16:
            let p = try out.storage.pointer(as: Float.self)
            for i in 0..<count { p[i] = ONNXType.half(UInt16(truncatingIfNeeded: u(i, 2)), bfloat: type == .bfloat16) }
        case .bool:
            let p = try out.storage.pointer(as: Bool.self)
            for i in 0..<count { p[i] = u(i, 1) != 0 }
        default:
            let p = try out.storage.pointer(as: Int64.self)
            for i in 0..<count {
                switch type {
                case .int64: p[i] = Int64(bitPattern: u(i, 8))
                case .uint64:
                    let x = u(i, 8)
                    guard x <= UInt64(Int64.max) else { throw InLoopError(.format, "value \(x) is too large") }
                    p[i] = Int64(x)
                case .int32: p[i] = Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: u(i, 4))))
                case .uint32: p[i] = Int64(u(i, 4))
                case .int16: p[i] = Int64(Int16(bitPattern: UInt16(truncatingIfNeeded: u(i, 2))))
                case .uint16: p[i] = Int64(u(i, 2))
                case .int8: p[i] = Int64(Int8(bitPattern: UInt8(truncatingIfNeeded: u(i, 1))))
                default: p[i] = Int64(u(i, 1))  // uint8
                }
            }
        }
    }
}
