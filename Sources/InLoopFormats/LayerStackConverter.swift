import InLoopCore

/// Turns a graph that is a plain chain of layers into a native layer-stack `Model`:
///
///   Gemm (constant B, optional constant C; alpha, beta, transB honoured; transA = 0)  -> dense
///   MatMul (constant [in, out] weight) [+ Add of a constant [out] bias]              -> dense
///   activation (Relu, LeakyRelu, Tanh, Sigmoid, Gelu, Softplus, Elu, ...)             -> fused into
///                                                the dense layer before it, else an activation layer
///   Sub / Div by a per-feature constant (x - mean, / std)                            -> normalize
///   Mul / Add by a per-feature constant (x * std, + mean)                            -> denormalize
///   Identity, Dropout, Flatten / Reshape / Squeeze / Unsqueeze keeping [N, features] -> nothing
///
/// Every other node, a branch, or a value used twice is refused with a message naming the node.
/// Used by `inloop convert`, and to fine-tune ONNX layer stacks with the full training path.
public enum LayerStackConverter {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let supported = "Gemm, MatMul(+Add), activations (Relu, LeakyRelu, Tanh, Sigmoid, Gelu, Softplus, Elu, ...), Sub/Div/Mul/Add by constants, Identity, Dropout, Flatten"

    /// The layer-stack model equal to `g`, or `.unsupported` naming what cannot be converted.
    public static func convert(_ g: Graph, name: String) throws(InLoopError) -> Model {
        do {
            return try convertChecked(g, name: name)
        } catch let e as InLoopError {
            throw e
        } catch let f as Failure {
            throw InLoopError(.unsupported, f.description)
        } catch {
            throw InLoopError(.internal, "\(error)")
        }
    }

    static func convertChecked(_ g: Graph, name: String) throws -> Model {
        guard g.inputs.count == 1, g.outputs.count == 1 else {
            throw Failure(description: "a layer stack has one input and one output; this graph has \(g.inputs.count) inputs and \(g.outputs.count) outputs")
        }
        // Operators that have no layer-stack equivalent, named up front.
        var foreign: [String] = []
        for n in g.nodes {
            switch n.op {
            case .gemm, .matMul, .activation, .identity, .flatten, .constant,
                 .binary(.add), .binary(.sub), .binary(.mul), .binary(.div):
                continue
            default:
                foreign.append("'\(n.name)' (\(n.opType))")
            }
        }
        guard foreign.isEmpty else {
            throw Failure(description: "not a plain layer stack: node\(foreign.count > 1 ? "s" : "") \(foreign.prefix(6).joined(separator: ", "))\(foreign.count > 6 ? ", ..." : "") "
                          + "cannot be converted; supported: \(supported)")
        }
        let input = g.inputs[0]
        guard input.dims.count == 2, let inSize = input.dims[1], inSize >= 1 else {
            throw Failure(description: "input '\(input.name)' has shape [\(input.dims.map { $0.map(String.init) ?? "N" }.joined(separator: ", "))]; a layer stack takes [N, features]")
        }
        var consumers: [String: [Int]] = [:]
        for (i, n) in g.nodes.enumerated() {
            for v in n.inputs where !v.isEmpty { consumers[v, default: []].append(i) }
        }
        func constant(_ name: String) -> Tensor? {
            if case .float(let t)? = g.constants[name] { return t }
            if let p = g.nodes.first(where: { $0.outputs.contains(name) }), case .constant(.float(let t)) = p.op { return t }
            return nil
        }
        /// A per-feature vector of `size` values from a constant of shape [], [1], [size] or [1, size].
        func vector(_ t: Tensor, _ size: Int, _ node: Node) throws -> [Float] {
            let v = t.values
            if v.count == 1 { return [Float](repeating: v[0], count: size) }
            guard v.count == size, t.shape.last == size, t.shape.dropLast().allSatisfy({ $0 == 1 }) else {
                throw Failure(description: "node '\(node.name)' (\(node.opType)): constant of shape \(Tensor.format(t.shape)) is not a vector of the \(size) features")
            }
            return v
        }

        var layers: [Layer] = []
        var size = inSize
        var cur = input.name
        var pendingNorm: (mean: [Float], std: [Float])? = nil      // Sub/Div being merged
        var pendingDenorm: (std: [Float], mean: [Float])? = nil    // Mul/Add being merged
        func flushNorm() throws {
            if let p = pendingNorm {
                layers.append(.normalize(try Normalization(mean: Tensor(shape: [size], values: p.mean),
                                                           std: Tensor(shape: [size], values: p.std))))
                pendingNorm = nil
            }
            if let p = pendingDenorm {
                layers.append(.denormalize(try Normalization(mean: Tensor(shape: [size], values: p.mean),
                                                             std: Tensor(shape: [size], values: p.std))))
                pendingDenorm = nil
            }
        }

        while cur != g.outputs[0] {
            let uses = consumers[cur] ?? []
            guard uses.count == 1 else {
                throw Failure(description: uses.isEmpty ? "value '\(cur)' is not used and is not the graph output"
                              : "value '\(cur)' is used by \(uses.count) nodes (\(uses.map { "'\(g.nodes[$0].name)'" }.joined(separator: ", "))): not a plain layer stack")
            }
            let node = g.nodes[uses[0]]
            let others = node.inputs.enumerated().filter { $0.element != cur && !$0.element.isEmpty }
            func refuse(_ why: String = "") -> Failure {
                Failure(description: "node '\(node.name)' (\(node.opType)) cannot be converted to a layer stack\(why.isEmpty ? "" : ": " + why); "
                        + "supported: \(supported)")
            }
            guard node.outputs.filter({ !$0.isEmpty && consumers[$0] != nil || $0 == g.outputs[0] }).count <= 1 else {
                throw refuse("several of its outputs are used")
            }
            var next = node.outputs[0]
            switch node.op {
            case .gemm(let alpha, let beta, let transA, let transB):
                guard !transA, node.inputs.first == cur else { throw refuse("the input must be operand A, not transposed") }
                guard node.inputs.count >= 2, let b = constant(node.inputs[1]), b.rank == 2 else { throw refuse("B must be a constant matrix") }
                let (k, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
                guard k == size else { throw refuse("B is \(Tensor.format(b.shape)) but the layer receives \(size) features") }
                var w = [Float](repeating: 0, count: n * k)   // [out, in]
                let bv = b.values
                for o in 0..<n {
                    for i in 0..<k { w[o * k + i] = alpha * (transB ? bv[o * k + i] : bv[i * n + o]) }
                }
                var bias: [Float]? = nil
                if node.inputs.count >= 3 && !node.inputs[2].isEmpty {
                    guard let c = constant(node.inputs[2]) else { throw refuse("C must be a constant") }
                    bias = try vector(c, n, node).map { $0 * beta }
                }
                try flushNorm()
                layers.append(.dense(try Dense(weight: Tensor(shape: [n, k], values: w),
                                               bias: try bias.map { b throws(InLoopError) in try Tensor(shape: [n], values: b) })))
                size = n
            case .matMul:
                guard node.inputs.count == 2, node.inputs[0] == cur, let wt = constant(node.inputs[1]), wt.rank == 2,
                      wt.shape[0] == size else { throw refuse("expects x · W with a constant [\(size), out] W") }
                let n = wt.shape[1]
                var w = [Float](repeating: 0, count: n * size)
                let wv = wt.values
                for o in 0..<n { for i in 0..<size { w[o * size + i] = wv[i * n + o] } }
                var bias: [Float]? = nil
                // a following Add of a constant [out] vector is the bias
                if let adds = consumers[next], adds.count == 1, case .binary(.add) = g.nodes[adds[0]].op,
                   next != g.outputs[0] {
                    let add = g.nodes[adds[0]]
                    let other = add.inputs.first { $0 != next } ?? ""
                    if let c = constant(other) {
                        bias = try vector(c, n, add)
                        next = add.outputs[0]
                    }
                }
                try flushNorm()
                layers.append(.dense(try Dense(weight: Tensor(shape: [n, size], values: w),
                                               bias: try bias.map { b throws(InLoopError) in try Tensor(shape: [n], values: b) })))
                size = n
            case .activation(let a):
                try flushNorm()
                if case .dense(let d)? = layers.last, d.activation == .identity {
                    layers[layers.count - 1] = .dense(try Dense(weight: d.weight, bias: d.bias, activation: a))
                } else {
                    layers.append(.activation(a))
                }
            case .identity:
                break
            case .flatten(let axis):
                guard axis == 1 || axis == -1 else { throw refuse("only Flatten(axis=1) of [N, features]") }
            case .reshape, .squeeze, .unsqueeze:
                throw refuse("reshaping is not part of a layer stack")
            case .binary(let op):
                guard others.count == 1, let c = constant(others[0].element) else {
                    throw refuse("only arithmetic with a constant is supported")
                }
                let v = try vector(c, size, node)
                let left = others[0].offset == 0   // constant is the left operand
                switch op {
                case .sub where !left:
                    if pendingDenorm != nil { try flushNorm() }
                    if let p = pendingNorm, p.std.allSatisfy({ $0 == 1 }) {
                        pendingNorm = (zip(p.mean, v).map { $0 + $1 }, p.std)
                    } else {
                        try flushNorm()
                        pendingNorm = (v, [Float](repeating: 1, count: size))
                    }
                case .div where !left:
                    guard v.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw refuse("division by a non-positive constant") }
                    if pendingDenorm != nil { try flushNorm() }
                    if let p = pendingNorm {
                        pendingNorm = (p.mean, zip(p.std, v).map { $0 * $1 })
                    } else {
                        pendingNorm = ([Float](repeating: 0, count: size), v)
                    }
                case .mul:
                    guard v.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw refuse("multiplication by a non-positive constant") }
                    if pendingNorm != nil || pendingDenorm != nil { try flushNorm() }
                    pendingDenorm = (v, [Float](repeating: 0, count: size))
                case .add:
                    if pendingNorm != nil { try flushNorm() }
                    if let p = pendingDenorm {
                        pendingDenorm = (p.std, zip(p.mean, v).map { $0 + $1 })
                    } else {
                        pendingDenorm = ([Float](repeating: 1, count: size), v)
                    }
                default:
                    throw refuse(left ? "the constant must be the right operand" : "\(op) is not supported")
                }
            default:
                throw refuse()
            }
            cur = next
        }
        try flushNorm()
        guard !layers.isEmpty else { throw Failure(description: "the graph has no layers") }
        return try Model(name: name, inputName: input.name, outputName: g.outputs[0], inputSize: inSize, layers: layers)
    }
}
