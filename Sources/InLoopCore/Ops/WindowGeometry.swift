/// Conv and pooling windows from ONNX attributes: one validation for the inference compiler
/// (`GraphCompiler`) and the differentiable graph (`GraphNetworkPlan`).

extension AutoPad {
    /// Pads [begin...], [end...] of a window over `input` (spatial sizes) from `auto_pad` and the
    /// explicit `pads` ([begin..., end...]).
    func windowPads(_ pads: [Int]?, input: [Int], kernel: [Int], strides: [Int]?, dilations: [Int]?) throws(InLoopError) -> ([Int], [Int]) {
        let r = input.count
        let zeros = [Int](repeating: 0, count: r)
        // Attributes come from the file: bounded before any arithmetic (the geometries check the rest).
        try ConvGeometry.checkLimits(["pads": pads ?? [], "strides": strides ?? [], "dilations": dilations ?? [],
                                      "kernel_shape": kernel, "input spatial shape": input])
        switch self {
        case .valid:
            return (zeros, zeros)
        case .sameUpper, .sameLower:
            let s = strides ?? [Int](repeating: 1, count: r), d = dilations ?? [Int](repeating: 1, count: r)
            guard s.count == r, d.count == r, kernel.count == r else {
                throw InLoopError(.format, "strides/dilations/kernel_shape need \(r) values")
            }
            guard s.allSatisfy({ $0 >= 1 }), d.allSatisfy({ $0 >= 1 }), kernel.allSatisfy({ $0 >= 1 }), input.allSatisfy({ $0 >= 1 }) else {
                throw InLoopError(.format, "kernel_shape \(Tensor.format(kernel)), strides \(Tensor.format(s)) and dilations \(Tensor.format(d)) must be positive")
            }
            let p = ConvGeometry.autoPads(inputSize: input, kernelSize: kernel, strides: s, dilations: d, upper: self == .sameUpper)
            return (p.begin, p.end)
        case .notSet:
            guard let pads else { return (zeros, zeros) }
            guard pads.count == 2 * r else {
                throw InLoopError(.format, "pads has \(pads.count) values \(Tensor.format(pads)), expected \(2 * r) (begin and end per spatial axis)")
            }
            return (Array(pads[..<r]), Array(pads[r...]))
        }
    }
}

extension ConvAttributes {
    /// The geometry of a Conv over input X of shape `x` (N, C, spatial...) with weight W of shape `w`.
    func convGeometry(input x: [Int], weight w: [Int]) throws(InLoopError) -> ConvGeometry {
        let r = x.count
        guard r == 3 || r == 4 else {
            throw InLoopError(.unsupported, "input X has shape \(Tensor.format(x)); only 1-D (N, C, L) and 2-D (N, C, H, W) convolutions are supported")
        }
        try Limits.attribute([group], "group")
        guard w.count == r, group >= 1, x[1] == w[1].multipliedReportingOverflow(by: group).partialValue,
              !w[1].multipliedReportingOverflow(by: group).overflow else {
            throw InLoopError(.format, "weight W has shape \(Tensor.format(w)); for input \(Tensor.format(x)) and group \(group) it must be [M, \(group >= 1 ? x[1] / max(group, 1) : 0), kernel...] of rank \(r)")
        }
        let kernel = Array(w[2...])
        if let kernelShape, kernelShape != kernel {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(kernelShape)) disagrees with the weight's shape \(Tensor.format(w))")
        }
        let spatial = Array(x[2...])
        let (pb, pe) = try autoPad.windowPads(pads, input: spatial, kernel: kernel, strides: strides, dilations: dilations)
        return try ConvGeometry(channelsIn: x[1], channelsOut: w[0], group: group, inputSize: spatial,
                                kernelSize: kernel, strides: strides, dilations: dilations, padsBegin: pb, padsEnd: pe)
    }
}

extension PoolAttributes {
    /// The geometry of MaxPool / AveragePool over input X of shape `x` (N, C, spatial...).
    func geometry(input x: [Int]) throws(InLoopError) -> PoolGeometry {
        guard x.count == 3 || x.count == 4 else {
            throw InLoopError(.unsupported, "input X has shape \(Tensor.format(x)); only 1-D (N, C, L) and 2-D (N, C, H, W) pooling is supported")
        }
        let spatial = Array(x[2...])
        guard kernelShape.count == spatial.count else {
            throw InLoopError(.format, "kernel_shape \(Tensor.format(kernelShape)) needs \(spatial.count) values for input \(Tensor.format(x))")
        }
        let (pb, pe) = try autoPad.windowPads(pads, input: spatial, kernel: kernelShape, strides: strides, dilations: dilations)
        return try PoolGeometry(inputSize: spatial, kernelSize: kernelShape, strides: strides, dilations: dilations,
                                padsBegin: pb, padsEnd: pe, ceilMode: ceilMode)
    }
}
