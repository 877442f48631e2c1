import InLoopCore

// Interpretability (issue 15, item 5): saliency maps and backwards optimisation of the input, on the
// model's differentiable copy (the one the derivative functions use).

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
