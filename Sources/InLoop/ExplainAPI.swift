import InLoopCore

// Interpretability (issue 15, item 5): saliency maps, backwards optimisation of the input, Grad-CAM and
// LRP, on the model's differentiable copy (the one the derivative functions use).

/// Saliency: for each of the batch samples x (batch x n_in, Fortran x(n_in, batch)), s (batch x n_in)
/// receives the gradient of output value `output_index` (0-based, within one sample's n_out values)
/// with respect to the inputs: s[b*n_in + i] = dy_k/dx_i of sample b.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, output_index out of
/// range), UNSUPPORTED (a model that cannot be differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_saliency_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64,
                                         _ output_index: Int64, _ s: UnsafeMutablePointer<Float>?) -> inloop_status {
    saliency(model, x, batch, output_index, s)
}

/// As inloop_model_saliency_f32 in double precision.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_saliency_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64,
                                         _ output_index: Int64, _ s: UnsafeMutablePointer<Double>?) -> inloop_status {
    saliency(model, x, batch, output_index, s)
}

/// Backwards optimisation of the input: `steps` steps of projected gradient ascent of output value
/// `output_index` on x (batch x n_in, updated in place) with the model fixed,
/// x <- min(max(x + step_size * dy_k/dx, lo), hi) per feature (a negative step_size descends). lo and
/// hi hold n_in bounds each and may be NULL (unbounded); y (batch x n_out, may be NULL) receives the
/// outputs at the final x. A non-finite gradient stops with NONFINITE, x then holds the last step.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch, output_index, steps < 0, a non-finite
/// step_size, lo > hi), NONFINITE, UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_optimize_input(_ model: OpaquePointer?, _ x: UnsafeMutablePointer<Double>?, _ batch: Int64,
                                               _ output_index: Int64, _ steps: Int64, _ step_size: Double,
                                               _ lo: UnsafePointer<Double>?, _ hi: UnsafePointer<Double>?,
                                               _ y: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(model, batch, [UnsafeRawPointer(x)], "x")
        guard let x else { return }
        guard output_index >= 0, output_index <= Int64(Int32.max) else {
            throw InLoopError(.invalidArgument, "optimize_input: output index \(output_index) out of range")
        }
        guard steps >= 0, steps <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "optimize_input: steps must be 0...\(Int32.max), got \(steps)") }
        try box.derivatives.use(box, Double.self) { (net) throws(InLoopError) in
            try net.optimizeInput(x, batch: n, output: Int(output_index), steps: Int(steps), stepSize: step_size, lo: lo, hi: hi, y: y)
        }
    }
}

private func saliency<T: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ batch: Int64, _ k: Int64,
                               _ s: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(x), UnsafeRawPointer(s)], "x, s")
        guard let x, let s else { return }
        guard k >= 0, k <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "saliency: output index \(k) out of range") }
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in try net.saliency(x, batch: n, output: Int(k), into: s) }
    }
}

/// The number of values per sample of a Grad-CAM map of the tensor named `tensor` (see
/// inloop_model_gradcam_f32): the product of its spatial dimensions (1 for an [N, C] tensor), or with
/// upsample != 0 the product of the input's spatial dimensions.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (no tensor of that name, a constant or the
/// input, a rank outside 2...5, upsampling a map that is not of the input's rank 3 or 4), UNSUPPORTED
/// (the output depends on the input other than through the tensor; a model that cannot be
/// differentiated), BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_gradcam_size(_ model: OpaquePointer?, _ tensor: UnsafePointer<CChar>?, _ upsample: Int32,
                                         _ count: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let tensor, let count else { throw InLoopError(.nullPointer, "gradcam_size: tensor or count is NULL") }
        let name = String(cString: tensor)
        try box.derivatives.use(box, Double.self) { (net) throws(InLoopError) in
            count.pointee = Int64(try net.gradCAMShape(tensor: name, upsample: upsample != 0).reduce(1, *))
        }
    }
}

/// Grad-CAM of output value `output_index` (0-based) on the intermediate tensor named `tensor` (a
/// feature map A [N, C, spatial...] or an [N, C] tensor of the graph): per sample,
/// alpha_c = mean over space of dy_k/dA_c and map = relu(sum_c alpha_c A_c), at A's resolution; with
/// upsample != 0 resized to the input's spatial size by bilinear interpolation with half-pixel centres
/// (PyTorch's F.interpolate(mode="bilinear", align_corners=False)). x holds batch x n_in values, map
/// batch x inloop_model_gradcam_size values. The model is cut at the tensor on the first call with
/// that name (a later call with the same name reuses the cut).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch, output_index, the tensor as for
/// inloop_model_gradcam_size), UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_gradcam_f32(_ model: OpaquePointer?, _ tensor: UnsafePointer<CChar>?, _ x: UnsafePointer<Float>?,
                                        _ batch: Int64, _ output_index: Int64, _ upsample: Int32,
                                        _ map: UnsafeMutablePointer<Float>?) -> inloop_status {
    gradCAM(model, tensor, x, batch, output_index, upsample, map)
}

/// As inloop_model_gradcam_f32 in double precision.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_gradcam_f64(_ model: OpaquePointer?, _ tensor: UnsafePointer<CChar>?, _ x: UnsafePointer<Double>?,
                                        _ batch: Int64, _ output_index: Int64, _ upsample: Int32,
                                        _ map: UnsafeMutablePointer<Double>?) -> inloop_status {
    gradCAM(model, tensor, x, batch, output_index, upsample, map)
}

/// Layer-wise relevance propagation (epsilon rule) of output value `output_index` to the inputs: r
/// (batch x n_in) receives each input's relevance. At every linear layer z = W a + b (Conv,
/// ConvTranspose, Gemm, Dense, MatMul with a constant weight, and a constant bias Add),
/// R_a = a * W^T (R_z / (z + epsilon sign z)) (sign 0 = +1); relevance passes unchanged through Relu,
/// LeakyRelu, max pooling (to the maximum), average pooling (in proportion), Flatten, Reshape, Squeeze,
/// Unsqueeze, Transpose, Identity and Dropout. The output's relevance is y_k, so sum(r) = y_k less what
/// the biases and epsilon absorb (exactly y_k with zero biases and epsilon -> 0). Any other op, or a
/// graph that is not a chain of layers, gets UNSUPPORTED naming the node and op.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch, output_index, epsilon negative or
/// not finite), UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_lrp_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64, _ output_index: Int64,
                                    _ epsilon: Double, _ r: UnsafeMutablePointer<Float>?) -> inloop_status {
    lrp(model, x, batch, output_index, epsilon, r)
}

/// As inloop_model_lrp_f32 in double precision.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, UNSUPPORTED, BUSY, OUT_OF_MEMORY.
/// Section: derivatives.
@c public func inloop_model_lrp_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64, _ output_index: Int64,
                                    _ epsilon: Double, _ r: UnsafeMutablePointer<Double>?) -> inloop_status {
    lrp(model, x, batch, output_index, epsilon, r)
}

private func gradCAM<T: Real>(_ handle: OpaquePointer?, _ tensor: UnsafePointer<CChar>?, _ x: UnsafePointer<T>?, _ batch: Int64,
                              _ k: Int64, _ upsample: Int32, _ map: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(tensor), UnsafeRawPointer(x), UnsafeRawPointer(map)], "tensor, x, map")
        guard let tensor, let x, let map else { return }
        guard k >= 0, k <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "gradcam: output index \(k) out of range") }
        let name = String(cString: tensor)
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in
            try net.gradCAM(x, batch: n, tensor: name, output: Int(k), upsample: upsample != 0, into: map)
        }
    }
}

private func lrp<T: Real>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ batch: Int64, _ k: Int64, _ epsilon: Double,
                          _ r: UnsafeMutablePointer<T>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let (box, n) = try derivativeArguments(handle, batch, [UnsafeRawPointer(x), UnsafeRawPointer(r)], "x, r")
        guard let x, let r else { return }
        guard k >= 0, k <= Int64(Int32.max) else { throw InLoopError(.invalidArgument, "lrp: output index \(k) out of range") }
        try box.derivatives.use(box, T.self) { (net) throws(InLoopError) in
            try net.lrp(x, batch: n, output: Int(k), epsilon: epsilon, into: r)
        }
    }
}
