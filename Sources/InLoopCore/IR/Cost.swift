extension Engine.Graph {
    /// Floating-point operations of one forward pass at batch size `batch` (2 per multiply-add of the
    /// matrix products and convolutions: Dense, Gemm, MatMul, Conv, ConvTranspose; element-wise work
    /// is not counted), from the shapes typed for that batch; nil when a shape is not known. The
    /// graph's own types are left as they were (a copy is typed).
    public func flops(batch: Int) throws(InLoopError) -> Int? {
        let g = try copy()
        if let b = g.batch { try g.inferTypes(bindings: [b: batch]) } else { try g.inferTypes() }
        var total = 0
        for n in g.nodes {
            func shape(_ v: Engine.ValueID?) -> [Int]? { v.flatMap { g[$0].type?.shape.known } }
            func product(_ s: [Int]) -> Int? {
                var p = 1
                for d in s {
                    let (r, o) = p.multipliedReportingOverflow(by: d)
                    if o { return nil }
                    p = r
                }
                return p
            }
            var macs: Int? = 0
            switch (n.op.domain, n.op.name) {
            case ("inloop", "Dense"), ("", "Gemm"), ("", "MatMul"):
                // output elements × the inner size
                guard let y = shape(n.outputs.first), let a = shape(n.inputs.first ?? nil), let k = a.last else { return nil }
                var inner = k
                if n.op.name == "Gemm", case .int(let t)? = n.attributes.encoded()["transA"], t != 0, a.count == 2 { inner = a[0] }
                macs = product(y).flatMap { $0.multipliedReportingOverflow(by: inner).overflow ? nil : $0 * inner }
            case ("", "Conv"):
                guard let y = shape(n.outputs.first), let w = shape(n.inputs.count > 1 ? n.inputs[1] : nil), w.count >= 2 else { return nil }
                macs = product(y).flatMap { o in product(Array(w.dropFirst())).flatMap { k in o.multipliedReportingOverflow(by: k).overflow ? nil : o * k } }
            case ("", "ConvTranspose"):
                guard let x = shape(n.inputs.first ?? nil), let w = shape(n.inputs.count > 1 ? n.inputs[1] : nil), w.count >= 2 else { return nil }
                macs = product(x).flatMap { i in product(Array(w.dropFirst())).flatMap { k in i.multipliedReportingOverflow(by: k).overflow ? nil : i * k } }
            default:
                continue
            }
            guard let m = macs, m <= Int.max / 2 else { return nil }
            let (t, o) = total.addingReportingOverflow(2 * m)
            guard !o else { return nil }
            total = t
        }
        return total
    }
}

extension Engine.Graph {
    /// ONNX ops whose every output element costs an exponential, logarithm, error function or
    /// trigonometric function (tens of operations, against one for a sum or a ReLU).
    static let transcendentalOps: Set<String> = [
        "Tanh", "Sigmoid", "Softplus", "Elu", "Selu", "Celu", "Exp", "Log", "Erf", "Gelu", "Mish",
        "Softmax", "LogSoftmax", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
        "Acosh", "Atanh", "Pow",
    ]
    /// `Activation` names (the `activation` attribute of a fused Dense, Conv or Activation node) that
    /// cost an exponential per element.
    static let transcendentalActivations: Set<String> = ["tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "softplus", "elu"]

    /// Output elements of one forward pass at batch size `batch` that each cost a transcendental
    /// function (`transcendentalOps`, and nodes with a transcendental fused `activation`); nil when a
    /// shape is not known. The graph's own types are left as they were (a copy is typed).
    public func transcendentalElements(batch: Int) throws(InLoopError) -> Int? {
        let g = try copy()
        if let b = g.batch { try g.inferTypes(bindings: [b: batch]) } else { try g.inferTypes() }
        var total = 0
        for n in g.nodes {
            var costly = n.op.domain.isEmpty && Engine.Graph.transcendentalOps.contains(n.op.name)
            if !costly, case .string(let act)? = n.attributes.encoded()["activation"] {
                costly = Engine.Graph.transcendentalActivations.contains(act)
            }
            guard costly else { continue }
            for o in n.outputs {
                guard let s = g[o].type?.shape.known else { return nil }
                var p = 1
                for d in s {
                    let (r, of) = p.multipliedReportingOverflow(by: d)
                    guard !of else { return nil }
                    p = r
                }
                let (t, of) = total.addingReportingOverflow(p)
                guard !of else { return nil }
                total = t
            }
        }
        return total
    }
}
