extension Engine.Graph {
    /// Gives every node output its type (and, for shape computations, its compile-time integer
    /// elements), in topological order; call `verify()` first. Errors name the node.
    ///
    /// `bindings` fixes symbols to values before inference (a plan specialised on them): inputs'
    /// symbolic dimensions are replaced, so every shape is known. Without bindings, shapes stay
    /// symbolic; an op whose output shape is not linear in a symbol throws `notLinear`, and the
    /// compiler then infers again with the symbol bound.
    public func inferTypes(bindings: [Engine.Symbol: Int] = [:]) throws(InLoopError) {
        for id in inputs {
            guard var t = values[id.index].type else { throw InLoopError(.internal, "graph input without a type") }
            if !bindings.isEmpty {
                t.shape = try t.shape.map { (d: Engine.SymInt) throws(InLoopError) -> Engine.SymInt in
                    guard d.symbol != nil else { return d }
                    guard let v = d.value(bindings), v >= 0, v <= Limits.maxDimension else {
                        throw InLoopError(.invalidArgument, "graph input '\(values[id.index].name)': dimension \(d) has no valid value for \(bindings)")
                    }
                    return Engine.SymInt(v)
                }
                values[id.index].type = t
            }
        }
        for node in nodes {
            let types = node.inputs.map { $0.flatMap { values[$0.index].type } }
            for (k, v) in node.inputs.enumerated() where v != nil && types[k] == nil {
                throw InLoopError(.internal, "\(describe(node)): input \(k) has no type (verify() first)")
            }
            let known = node.inputs.map { $0.flatMap { values[$0.index].known } }
            let result: ([Engine.TensorType], [Engine.KnownInts?]?)
            do { result = try node.op.inferAny(node, types, known) } catch { throw error.prefixed(describe(node)) }
            for (k, o) in node.outputs.enumerated() {
                values[o.index].type = result.0[k]
                values[o.index].known = result.1.flatMap { k < $0.count ? $0[k] : nil }
            }
        }
    }
}

extension Engine {
    /// Marks shape errors that come from symbolic arithmetic (a product of two symbolic dimensions,
    /// an inexact division): the graph is valid, but its plan must be specialised on the symbol.
    public static let notLinearMarker = "not linear in a symbolic dimension"

    public static func notLinear(_ what: String) -> InLoopError {
        InLoopError(.unsupported, "\(what): \(notLinearMarker)")
    }

    public static func isNotLinear(_ e: InLoopError) -> Bool {
        e.kind == .unsupported && e.message.hasSuffix(notLinearMarker)
    }

    /// `x`, or `notLinear(what)` when it is nil.
    public static func linear(_ x: SymInt?, _ what: @autoclosure () -> String) throws(InLoopError) -> SymInt {
        guard let x else { throw notLinear(what()) }
        return x
    }
}
