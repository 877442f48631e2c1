extension Engine {
    /// A value of a graph, by index into `Graph.values`: no name look-ups after import.
    public struct ValueID: Hashable, Sendable, Comparable, CustomStringConvertible {
        public let raw: Int32
        public init(_ index: Int) { raw = Int32(truncatingIfNeeded: index) }
        public var index: Int { Int(raw) }
        public static func < (a: ValueID, b: ValueID) -> Bool { a.raw < b.raw }
        public var description: String { "%\(raw)" }
    }

    /// A node of a graph, by index into `Graph.nodes`.
    public struct NodeID: Hashable, Sendable, Comparable {
        public let raw: Int32
        public init(_ index: Int) { raw = Int32(truncatingIfNeeded: index) }
        public var index: Int { Int(raw) }
        public static func < (a: NodeID, b: NodeID) -> Bool { a.raw < b.raw }
    }

    /// What a value holds: element type and (symbolic) shape.
    public struct TensorType: Hashable, Sendable, CustomStringConvertible {
        public var dtype: DType
        public var shape: Shape

        public init(_ dtype: DType, _ shape: Shape) {
            self.dtype = dtype
            self.shape = shape
        }

        public var rank: Int { shape.count }
        public var description: String { "\(dtype)\(shape.formatted)" }
    }

    /// An integer tensor whose elements are known at compile time, possibly in terms of a symbol:
    /// what `Shape`, `Gather`, `Concat`, ... compute on shapes, so that `Shape → Gather → Reshape`
    /// stays valid for every batch size.
    public struct KnownInts: Hashable, Sendable, CustomStringConvertible {
        public let shape: [Int]
        public let values: [SymInt]

        public init(shape: [Int], values: [SymInt]) throws(InLoopError) {
            let n = try InLoopCore.Tensor.elementCount(shape)
            guard n == values.count else {
                throw InLoopError(.format, "integer tensor of shape \(InLoopCore.Tensor.format(shape)) needs \(n) values, got \(values.count)")
            }
            self.shape = shape
            self.values = values
        }

        /// A rank-1 list.
        public init(_ values: [SymInt]) {
            shape = [values.count]
            self.values = values
        }

        public var description: String { "int\(InLoopCore.Tensor.format(shape)) \(values.formatted)" }
    }

    /// A node attribute as the file stores it, before the op parses it.
    public enum AttributeValue: Sendable {
        case int(Int)
        case float(Double)
        case string(String)
        case ints([Int])
        case floats([Double])
        case strings([String])
        case tensor(TensorValue)
    }

    /// A tensor attribute's content (the `value` of ONNX Constant): shape, dtype and elements widened to
    /// Double or Int. Kept apart from `Tensor` so attributes stay plain, comparable values.
    public struct TensorValue: Hashable, Sendable {
        public var dtype: DType
        public var shape: [Int]
        public var floats: [Double]
        public var ints: [Int]

        public init(dtype: DType, shape: [Int], floats: [Double] = [], ints: [Int] = []) {
            self.dtype = dtype; self.shape = shape; self.floats = floats; self.ints = ints
        }
    }

    /// A graph value: a graph input, a constant (an initializer or a folded result), or a node output.
    public struct Value {
        /// The name in the source file, for messages and for files written back.
        public var name: String
        /// Filled in by type inference (graph inputs and constants have it from the start).
        public var type: TensorType?
        /// The node computing it, if any.
        public var producer: NodeID?
        /// The data of a constant.
        public var constant: Tensor?
        /// Integer elements known at compile time (shape computations), from type inference.
        public var known: KnownInts?
    }

    /// One operation: the op (its definition in the op table), its parsed attributes and its values.
    public struct Node {
        public var name: String
        public var op: any OpDefinition.Type
        public var attributes: any OpAttributeSet
        /// nil: an optional input left out.
        public var inputs: [ValueID?]
        public var outputs: [ValueID]
    }

    /// Where a graph came from (the writer picks the file version from it, `docs/ENGINE.md` D2).
    public enum Origin: Sendable {
        case layerList, onnx, native2, built
    }

    /// The graph IR: what every front end (ONNX, native files, trainer configurations) produces and the
    /// compiler consumes. A reference type: a few big graphs, edited in place by passes.
    ///
    /// Build it with `addInput`, `addConstant`, `addNode` and `markOutput`; then `verify()` checks it and
    /// puts the nodes in topological order, and `inferTypes()` gives every value its type.
    public final class Graph {
        public var name: String
        /// Values are computed in this type (float32 or float64).
        public var dtype: DType
        public internal(set) var values: [Value] = []
        public internal(set) var nodes: [Node] = []
        public internal(set) var inputs: [ValueID] = []
        public internal(set) var outputs: [ValueID] = []
        /// The symbol the C/Fortran batch convenience maps to (the last Fortran dimension), if any.
        public var batch: Symbol?
        /// Trainable constants, in flat-vector order.
        public var parameters: [ValueID] = []
        public var origin: Origin
        /// The layer list a layer-stack graph was built from (`Engine.Graph(layerSpecs:...)`), else nil.
        public internal(set) var layerSpecs: [LayerSpec]? = nil
        /// Symbols by name (one per distinct symbolic dimension name of the inputs).
        public internal(set) var symbols: [Symbol] = []
        /// Values by name, for front ends while they build the graph.
        public internal(set) var names: [String: ValueID] = [:]
        /// The opset the attributes were parsed for (ONNX default domain; 0 when not from ONNX).
        public var opset: Int

        public init(name: String = "", dtype: DType = .float32, origin: Origin = .built, opset: Int = 0) {
            self.name = name
            self.dtype = dtype
            self.origin = origin
            self.opset = opset
        }

        public subscript(_ id: ValueID) -> Value {
            get { values[id.index] }
            set { values[id.index] = newValue }
        }

        /// The symbol of this name, made on first use.
        public func symbol(named name: String) -> Symbol {
            if let s = symbols.first(where: { $0.name == name }) { return s }
            let s = Symbol(id: symbols.count, name: name)
            symbols.append(s)
            return s
        }

        /// Values used by a node before any node, input or constant defined them (files may list nodes
        /// in any order); `verify()` reports those still undefined.
        var pending: Set<ValueID> = []

        private func newValue(_ name: String, type: TensorType?, constant: Tensor? = nil,
                              claimPending: Bool = false) throws(InLoopError) -> ValueID {
            if let id = names[name], claimPending, pending.contains(id) {
                pending.remove(id)
                values[id.index].type = type
                values[id.index].constant = constant
                return id
            }
            guard names[name] == nil else {
                throw InLoopError(.format, "'\(name)' is defined twice (a graph input, an initializer or a node output)")
            }
            guard values.count < Int(Int32.max) else { throw InLoopError(.format, "graph '\(self.name)' has too many values") }
            let id = ValueID(values.count)
            values.append(Value(name: name, type: type, producer: nil, constant: constant, known: nil))
            if !name.isEmpty { names[name] = id }
            return id
        }

        /// A graph input of the given type.
        @discardableResult
        public func addInput(_ name: String, _ type: TensorType) throws(InLoopError) -> ValueID {
            let id = try newValue(name, type: type, claimPending: true)
            inputs.append(id)
            return id
        }

        /// A constant (an initializer). Small integer constants are also known to shape computations.
        @discardableResult
        public func addConstant(_ name: String, _ tensor: Tensor) throws(InLoopError) -> ValueID {
            let id = try newValue(name, type: TensorType(tensor.dtype, tensor.shape.map { SymInt($0) }), constant: tensor,
                                  claimPending: true)
            if tensor.count <= Engine.maxKnownElements, let ints = tensor.integers {
                values[id.index].known = try KnownInts(shape: tensor.shape, values: ints.map { SymInt($0) })
            }
            return id
        }

        /// A node of `op` with raw attributes (parsed and checked here: a bad attribute is an error
        /// naming the node) on the named inputs ("" = an optional input left out); its outputs get the
        /// given names ("" = an optional output not wanted). Nodes may come in any order (a later
        /// node may define an input); `verify()` sorts them and reports what stays undefined.
        @discardableResult
        public func addNode(_ nodeName: String, _ op: any OpDefinition.Type, _ raw: [String: AttributeValue] = [:],
                            inputs: [String], outputs: [String]) throws(InLoopError) -> [ValueID] {
            let where_ = "node '\(nodeName)' (\(op.name))"
            guard op.inputArity.contains(inputs.count) else {
                throw InLoopError(.format, "\(where_) has \(inputs.count) inputs; \(op.name) takes \(op.inputArity.lowerBound)...\(op.inputArity.upperBound)")
            }
            guard op.outputArity.contains(outputs.count) else {
                throw InLoopError(.format, "\(where_) has \(outputs.count) outputs; \(op.name) gives \(op.outputArity.lowerBound)...\(op.outputArity.upperBound)")
            }
            // an optional output left out ("") may come first (ONNX's LSTM test models give only Y_h)
            guard outputs.contains(where: { !$0.isEmpty }) else { throw InLoopError(.format, "\(where_) has no output") }
            let attributes: any OpAttributeSet
            do { attributes = try op.parseAny(raw, opset: opset) } catch { throw error.prefixed(where_) }
            var ins: [ValueID?] = []
            for name in inputs {
                if name.isEmpty { ins.append(nil); continue }
                if let id = names[name] {
                    ins.append(id)
                } else {
                    let id = try newValue(name, type: nil)
                    pending.insert(id)
                    ins.append(id)
                }
            }
            let nodeID = NodeID(nodes.count)
            var outs: [ValueID] = []
            for name in outputs {
                let id: ValueID
                if name.isEmpty {
                    id = try newValue("", type: nil)
                } else {
                    do { id = try newValue(name, type: nil, claimPending: true) } catch { throw error.prefixed(where_) }
                }
                values[id.index].producer = nodeID
                outs.append(id)
            }
            nodes.append(Node(name: nodeName, op: op, attributes: attributes, inputs: ins, outputs: outs))
            return outs
        }

        /// The names used as node inputs that nothing defines (yet).
        public var undefinedNames: [String] { pending.sorted().map { values[$0.index].name } }

        /// Replaces the node list (passes that reorder or rewrite nodes); producers are updated.
        func setNodes(_ newNodes: [Node]) {
            nodes = newNodes
            for i in values.indices where values[i].producer != nil { values[i].producer = nil }
            for (k, node) in nodes.enumerated() { for o in node.outputs { values[o.index].producer = NodeID(k) } }
        }

        func renameEntry(_ old: String, _ new: String, _ id: ValueID) {
            names[old] = nil
            names[new] = id
        }

        /// Sets the activation fused into a Dense node (the layer-list front end fuses as it goes).
        func setActivation(ofNode k: Int, _ act: Activation) throws(InLoopError) {
            guard k < nodes.count, nodes[k].op == DenseOp.self else { throw InLoopError(.internal, "not a Dense node") }
            nodes[k].attributes = DenseOp.Attributes(activation: act)
        }

        /// Makes the named value a graph output.
        public func markOutput(_ name: String) throws(InLoopError) {
            guard let id = names[name] else { throw InLoopError(.format, "graph output '\(name)' is not defined") }
            outputs.append(id)
        }

        /// Uses of each value: node inputs and graph outputs.
        public func useCounts() -> [Int] {
            var uses = [Int](repeating: 0, count: values.count)
            for node in nodes { for case let i? in node.inputs { uses[i.index] += 1 } }
            for o in outputs { uses[o.index] += 1 }
            return uses
        }

        /// A copy to edit apart from this graph (constants share their storage, which is immutable).
        /// With `dtype`, every floating constant and input is converted to that type (a trainer in
        /// float64 of a float32 model, and back).
        public func copy(as newType: DType? = nil) throws(InLoopError) -> Graph {
            let g = Graph(name: name, dtype: newType ?? dtype, origin: origin, opset: opset)
            g.values = values
            g.nodes = nodes
            g.inputs = inputs
            g.outputs = outputs
            g.batch = batch
            g.parameters = parameters
            g.layerSpecs = layerSpecs
            g.symbols = symbols
            g.names = names
            g.pending = pending
            if let newType, newType != dtype {
                guard newType.isFloatingPoint else { throw InLoopError(.internal, "a graph in \(newType)") }
                for i in g.values.indices {
                    if let c = g.values[i].constant, c.dtype.isFloatingPoint, c.dtype != newType {
                        g.values[i].constant = try c.converted(to: newType)
                    }
                    if var t = g.values[i].type, t.dtype.isFloatingPoint {
                        t.dtype = newType
                        g.values[i].type = t
                    }
                }
            }
            return g
        }

        /// The message prefix for a node.
        public func describe(_ node: Node) -> String { "node '\(node.name)' (\(node.op.name))" }
    }

    /// Integer constants up to this many elements are known to shape computations.
    public static let maxKnownElements = 1 << 16
}
