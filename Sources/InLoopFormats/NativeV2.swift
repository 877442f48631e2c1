import InLoopCore

/// Native format version 2 (`docs/FORMAT.md`): the one engine's graph itself in a safetensors file.
/// `__metadata__["inloop"]` holds the graph (inputs with symbolic dimensions, nodes with their op,
/// domain and attributes, outputs, the trainable constants), and every constant is a tensor of the
/// file under its value name, in its own type (F32, F64, I64, BOOL). Any graph the engine runs can be
/// written, a fine-tuned ONNX graph included, and reads back to the same values bit for bit.
public enum NativeV2 {
    public static let version = 2

    // MARK: Writing

    /// The bytes of a version-2 file holding `graph` (verified; its constants are written as they are).
    public static func serialize(_ graph: Engine.Graph) throws(InLoopError) -> [UInt8] {
        var tensors: [SafetensorsFile.RawTensor] = []
        var constants: [JSON] = []
        var written = Set<String>()
        // A node whose outputs are all known (folded at compile time, e.g. a Constant node, or one whose
        // value was fine-tuned) is written as its values: the file holds each value once.
        let kept = graph.nodes.filter { n in !n.outputs.allSatisfy { graph[$0].constant != nil } }
        for v in graph.values.indices.map(Engine.ValueID.init) {
            let value = graph[v]
            guard let c = value.constant, !graph.inputs.contains(v) else { continue }
            // constants nothing uses (left behind by fusion or folding) are not written
            guard kept.contains(where: { $0.inputs.contains(v) }) || graph.outputs.contains(v) else { continue }
            guard !value.name.isEmpty, written.insert(value.name).inserted else {
                throw InLoopError(.internal, "constant '\(value.name)' has no unique name")
            }
            tensors.append(try SafetensorsFile.RawTensor(name: value.name, tensor: c))
            constants.append(.string(value.name))
        }
        var inputs: [JSON] = []
        for v in graph.inputs {
            guard let t = graph[v].type else { throw InLoopError(.internal, "graph input without a type") }
            inputs.append(.object([("name", .string(graph[v].name)), ("dtype", .string(t.dtype.description)),
                                   ("shape", .array(t.shape.map(dimension)))]))
        }
        var nodes: [JSON] = []
        for n in kept {
            var m: [(String, JSON)] = [("name", .string(n.name)), ("op", .string(n.op.name))]
            if !n.op.domain.isEmpty { m.append(("domain", .string(n.op.domain))) }
            m.append(("inputs", .array(n.inputs.map { .string($0.map { graph[$0].name } ?? "") })))
            m.append(("outputs", .array(n.outputs.map { .string(graph[$0].name) })))
            let attributes = n.attributes.encoded()
            if !attributes.isEmpty {
                m.append(("attributes", .object(try attributes.keys.sorted().map { (k) throws(InLoopError) in (k, try encode(attributes[k]!)) })))
            }
            nodes.append(.object(m))
        }
        var arch: [(String, JSON)] = [("format", .string("inloop")), ("version", .number(Double(version)))]
        if !graph.name.isEmpty { arch.append(("name", .string(graph.name))) }
        arch += [("dtype", .string(graph.dtype.description)), ("opset", .number(Double(graph.opset)))]
        if let b = graph.batch { arch.append(("batch", .string(b.name))) }
        arch += [("inputs", .array(inputs)), ("outputs", .array(graph.outputs.map { .string(graph[$0].name) })),
                 ("constants", .array(constants)), ("parameters", .array(graph.parameters.map { .string(graph[$0].name) })),
                 ("nodes", .array(nodes))]
        return SafetensorsFile.serialize(raw: tensors, metadata: [(NativeFormat.metadataKey, JSON.object(arch).description)])
    }

    public static func save(_ graph: Engine.Graph, to path: String) throws(InLoopError) {
        try FileIO.write(try serialize(graph), to: path)
    }

    static func dimension(_ d: Engine.SymInt) -> JSON {
        if let k = d.known { return .number(Double(k)) }
        return .string(d.description)
    }

    /// An attribute as JSON: `{"int": 3}`, `{"float": 0.5}` (non-finite values as the strings "inf",
    /// "-inf", "nan"), `{"string": ...}`, `{"ints": [...]}`, `{"floats": [...]}`, `{"strings": [...]}`,
    /// `{"tensor": {"dtype", "shape", "values"}}`.
    static func encode(_ a: Engine.AttributeValue) throws(InLoopError) -> JSON {
        func number(_ x: Double) -> JSON {
            if x.isNaN { return .string("nan") }
            if x.isInfinite { return .string(x > 0 ? "inf" : "-inf") }
            return .number(x)
        }
        // beyond 2^53 a JSON number is not exact (Slice's INT64_MAX ends): a decimal string then
        func integer(_ i: Int) -> JSON { i.magnitude <= 9_007_199_254_740_992 ? .number(Double(i)) : .string(String(i)) }
        switch a {
        case .int(let i): return .object([("int", integer(i))])
        case .float(let f): return .object([("float", number(f))])
        case .string(let s): return .object([("string", .string(s))])
        case .ints(let l): return .object([("ints", .array(l.map(integer)))])
        case .floats(let l): return .object([("floats", .array(l.map(number)))])
        case .strings(let l): return .object([("strings", .array(l.map { .string($0) }))])
        case .tensor(let t):
            let values: [JSON] = t.dtype.isFloatingPoint ? t.floats.map(number) : t.ints.map(integer)
            return .object([("tensor", .object([("dtype", .string(t.dtype.description)), ("shape", .array(t.shape.map { .number(Double($0)) })),
                                                 ("values", .array(values))]))])
        }
    }

    // MARK: Reading

    /// The graph of a version-2 architecture (verified and typed, or left for typing per batch size).
    static func graph(arch: JSON, file: SafetensorsFile, tensorPrefix: String = "") throws(InLoopError) -> Engine.Graph {
        func strings(_ key: String) throws(InLoopError) -> [String] {
            guard let list = arch[key]?.arrayValue else { throw InLoopError(.format, "architecture \"\(key)\" must be an array") }
            var out: [String] = []
            for (i, s) in list.enumerated() {
                guard let v = s.stringValue else { throw InLoopError(.format, "architecture \"\(key)\"[\(i)] must be a string") }
                out.append(v)
            }
            return out
        }
        guard let dt = arch["dtype"]?.stringValue, let dtype = dtypeNamed(dt), dtype.isFloatingPoint else {
            throw InLoopError(.format, "architecture \"dtype\" must be \"float32\" or \"float64\"")
        }
        guard let opset = arch["opset"]?.intValue, opset >= 0, opset <= 1000 else {
            throw InLoopError(.format, "architecture \"opset\" must be an integer from 0 to 1000")
        }
        let g = Engine.Graph(name: arch["name"]?.stringValue ?? "", dtype: dtype, origin: .native2, opset: opset)
        if let b = arch["batch"] {
            guard let name = b.stringValue, !name.isEmpty else { throw InLoopError(.format, "architecture \"batch\" must be a symbol name") }
            g.batch = g.symbol(named: name)
        }
        for name in try strings("constants") {
            do { try g.addConstant(name, try file.engineTensor(tensorPrefix + name)) } catch { throw error.prefixed("constant '\(name)'") }
        }
        guard let inputs = arch["inputs"]?.arrayValue, !inputs.isEmpty else {
            throw InLoopError(.format, "architecture \"inputs\" must be a non-empty array")
        }
        for (i, input) in inputs.enumerated() {
            let at = "inputs[\(i)]"
            guard let name = input["name"]?.stringValue, let t = input["dtype"]?.stringValue, let dtype = dtypeNamed(t),
                  dtype.isFloatingPoint, let dims = input["shape"]?.arrayValue, dims.count <= Engine.maxRank else {
                throw InLoopError(.format, "\(at) must have \"name\", a floating \"dtype\" and a \"shape\" of up to \(Engine.maxRank) dimensions")
            }
            var shape: Engine.Shape = []
            for d in dims {
                if let k = d.intValue, k >= 0, k <= Limits.maxDimension {
                    shape.append(Engine.SymInt(k))
                } else if let s = d.stringValue, !s.isEmpty {
                    shape.append(Engine.SymInt(g.symbol(named: s)))
                } else {
                    throw InLoopError(.format, "\(at): dimension \(d) is neither a size nor a symbol name")
                }
            }
            try g.addInput(name, Engine.TensorType(dtype, shape))
        }
        guard let nodes = arch["nodes"]?.arrayValue else { throw InLoopError(.format, "architecture \"nodes\" must be an array") }
        for (i, n) in nodes.enumerated() {
            let at = "nodes[\(i)]"
            guard let op = n["op"]?.stringValue, let ins = n["inputs"]?.arrayValue, let outs = n["outputs"]?.arrayValue else {
                throw InLoopError(.format, "\(at) must have \"op\", \"inputs\" and \"outputs\"")
            }
            let name = n["name"]?.stringValue ?? "\(op)_\(i)"
            var inputNames: [String] = [], outputNames: [String] = []
            for v in ins { guard let s = v.stringValue else { throw InLoopError(.format, "\(at): inputs must be strings") }; inputNames.append(s) }
            for v in outs { guard let s = v.stringValue else { throw InLoopError(.format, "\(at): outputs must be strings") }; outputNames.append(s) }
            var raw: [String: Engine.AttributeValue] = [:]
            if let attributes = n["attributes"] {
                guard let members = attributes.objectValue else { throw InLoopError(.format, "\(at): \"attributes\" must be an object") }
                for (k, v) in members {
                    do { raw[k] = try decode(v) } catch { throw error.prefixed("\(at): attribute '\(k)'") }
                }
            }
            let definition: any OpDefinition.Type
            // "opset" is the default domain's (0: a graph not from ONNX, e.g. a layer stack with
            // constraints); InLoop's own ops have one version
            let domain = n["domain"]?.stringValue ?? ""
            do { definition = try OpTable.standard.lookup(op, domain: domain, opset: domain == "inloop" ? max(opset, 1) : opset) } catch { throw error.prefixed(at) }
            try g.addNode(name, definition, raw, inputs: inputNames, outputs: outputNames)
        }
        for name in try strings("outputs") { try g.markOutput(name) }
        var parameters: [Engine.ValueID] = []
        for name in try strings("parameters") {
            guard let v = g.names[name], g[v].constant?.dtype.isFloatingPoint == true else {
                throw InLoopError(.format, "parameter '\(name)' is not a floating constant of the file")
            }
            parameters.append(v)
        }
        g.parameters = parameters
        try g.verify()
        do { try g.inferTypes() } catch where Engine.isNotLinear(error) {}
        return g
    }

    static func dtypeNamed(_ s: String) -> Engine.DType? {
        [Engine.DType.float32, .float64, .int64, .bool].first { $0.description == s }
    }

    static func decode(_ j: JSON) throws(InLoopError) -> Engine.AttributeValue {
        func number(_ x: JSON) throws(InLoopError) -> Double {
            if let d = x.doubleValue { return d }
            switch x.stringValue {
            case "nan": return .nan
            case "inf": return .infinity
            case "-inf": return -.infinity
            default: throw InLoopError(.format, "\(x) is not a number")
            }
        }
        func integer(_ x: JSON) throws(InLoopError) -> Int {
            if let s = x.stringValue, let i = Int(s) { return i }   // written so beyond 2^53
            guard let i = x.intValue else { throw InLoopError(.format, "\(x) is not an integer") }
            return i
        }
        guard let members = j.objectValue, members.count == 1, let (kind, v) = members.first else {
            throw InLoopError(.format, "an attribute is an object with one member (its kind)")
        }
        switch kind {
        case "int": return .int(try integer(v))
        case "float": return .float(try number(v))
        case "string":
            guard let s = v.stringValue else { throw InLoopError(.format, "a string attribute holds \(v.kindName)") }
            return .string(s)
        case "ints", "floats", "strings":
            guard let list = v.arrayValue, list.count <= Engine.maxKnownElements else { throw InLoopError(.format, "\(kind) must be an array") }
            if kind == "ints" { var o: [Int] = []; for x in list { o.append(try integer(x)) }; return .ints(o) }
            if kind == "floats" { var o: [Double] = []; for x in list { o.append(try number(x)) }; return .floats(o) }
            var o: [String] = []
            for x in list { guard let s = x.stringValue else { throw InLoopError(.format, "strings must be strings") }; o.append(s) }
            return .strings(o)
        case "tensor":
            guard let t = v["dtype"]?.stringValue, let dtype = dtypeNamed(t), let dims = v["shape"]?.arrayValue,
                  let values = v["values"]?.arrayValue, values.count <= Engine.maxKnownElements else {
                throw InLoopError(.format, "a tensor attribute needs \"dtype\", \"shape\" and \"values\"")
            }
            var shape: [Int] = []
            for d in dims { let k = try integer(d); guard k >= 0 else { throw InLoopError(.format, "negative dimension") }; shape.append(k) }
            guard try InLoopCore.Tensor.elementCount(shape) == values.count else {
                throw InLoopError(.format, "a tensor attribute of shape \(shape) holds \(values.count) values")
            }
            if dtype.isFloatingPoint {
                var f: [Double] = []
                for x in values { f.append(try number(x)) }
                return .tensor(Engine.TensorValue(dtype: dtype, shape: shape, floats: f))
            }
            var ints: [Int] = []
            for x in values { ints.append(try integer(x)) }
            return .tensor(Engine.TensorValue(dtype: dtype, shape: shape, ints: ints))
        default:
            throw InLoopError(.format, "unknown attribute kind \"\(kind)\"")
        }
    }
}
