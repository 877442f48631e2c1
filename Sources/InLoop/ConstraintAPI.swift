import InLoopCore

// Hard physical constraints attached to a loaded model (issue 15, item 1): each call puts one
// constraint op (Sources/InLoopCore/Ops/ConstraintOps.swift) after one model output. The handle stays
// the same; the model behind it is rebuilt (its plans are compiled again on the next run).

/// Applies `spec` to output `output` of the model behind `model`: a new graph, a new model in the
/// same handle (its options kept).
private func attach(_ model: OpaquePointer?, _ what: String, _ output: Int64,
                    _ spec: () throws(InLoopError) -> ConstraintSpec) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        let old = box.model
        do throws(InLoopError) {
            guard output >= 0, output < Int64(box.outputs.count) else {
                throw InLoopError(.invalidArgument, "output \(output) out of range; the model has \(box.outputs.count) output\(box.outputs.count == 1 ? "" : "s") (0-based)")
            }
            let c = try spec()
            let g = try old.graph.copy()
            try g.addConstraint(c, output: Int(output))
            let m = try Engine.Model(graph: g, name: old.name)
            try m.setOptions(checkFinite: old.checkFinite, reproducible: old.reproducible)
            guard let handle = model else { throw InLoopError(.nullPointer, "model handle is NULL") }
            try models.replace(handle, with: try ModelBox(m), what)
        } catch {
            throw error.prefixed("\(what) (model '\(old.name)')")
        }
    }
}

/// Reads k weights (w NULL with k = 0: none given).
private func weights<T: BinaryFloatingPoint>(_ w: UnsafePointer<T>?, _ k: Int64, allowNone: Bool) throws(InLoopError) -> [Double]? {
    guard k >= 0, k <= Int64(Limits.maxDimension) else {
        throw InLoopError(.invalidArgument, "k must be between 0 and \(Limits.maxDimension), got \(k)")
    }
    guard let w else {
        if allowNone && k == 0 { return nil }
        throw InLoopError(.nullPointer, allowNone ? "w is NULL with k = \(k) (NULL w takes k = 0: the weights are then a run-time input)" : "w is NULL")
    }
    guard k >= 1 else { throw InLoopError(.invalidArgument, "k must be at least 1 when w is given") }
    return UnsafeBufferPointer(start: w, count: Int(k)).map { Double($0) }
}

private func conservation<T: BinaryFloatingPoint>(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<T>?, _ k: Int64,
                                                  _ targetFeature: Int64, _ name: String) -> inloop_status {
    attach(model, name, output) { () throws(InLoopError) -> ConstraintSpec in
        let ws = try weights(w, k, allowNone: true)
        guard targetFeature >= -1, targetFeature <= Int64(Limits.maxDimension) else {
            throw InLoopError(.invalidArgument, "target_feature must be -1 (a new input) or a feature index >= 0, got \(targetFeature)")
        }
        return .conservation(weights: ws, target: targetFeature < 0 ? .input : .feature(Int(targetFeature)))
    }
}

/// Conservation projection on output `output` (0-based, shape [..., K]): y' = y + w (s - w.y)/(w.w),
/// so that every column's integral w.y' equals its target s to round-off. w holds the k = K weights
/// (e.g. layer masses dp/g), read once (the caller keeps w); w NULL with k = 0 makes the weights a
/// run-time input of the output's per-sample shape. target_feature >= 0: s is that feature (0-based)
/// of input 0, which must be [batch, n] (the model keeps one input; forward and training still
/// apply); -1: s is a new input of per-sample shape [1] (output's leading shape then 1), named
/// "<output>_target", appended after the existing inputs (index = the old inloop_model_num_inputs),
/// followed by "<output>_weights" when w is NULL. A model with more than one input runs with
/// inloop_model_run_* (forward takes one input), and cannot be trained or differentiated.
/// The output keeps its name; the handle stays valid. Nothing changes when an argument is wrong.
/// Statuses: NULL_POINTER (model, or w with k > 0), INVALID_HANDLE, INVALID_ARGUMENT (output or
/// target_feature out of range, k < 0, a weight not finite, w.w = 0), SIZE_MISMATCH (k is not the
/// output's last dimension, input 0 and the output do not lead with the same columns), UNSUPPORTED
/// (an output that is not floating with a known last axis, input 0 not [batch, n]), OUT_OF_MEMORY.
/// Section: constraints.
@c public func inloop_model_add_constraint_conservation_f32(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<Float>?,
                                                            _ k: Int64, _ target_feature: Int64) -> inloop_status {
    conservation(model, output, w, k, target_feature, "add_constraint_conservation_f32")
}

/// As inloop_model_add_constraint_conservation_f32 with float64 weights (a float32 model rounds them
/// to float32; w.w is summed in float64).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH, UNSUPPORTED, OUT_OF_MEMORY.
/// Section: constraints.
@c public func inloop_model_add_constraint_conservation_f64(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<Double>?,
                                                            _ k: Int64, _ target_feature: Int64) -> inloop_status {
    conservation(model, output, w, k, target_feature, "add_constraint_conservation_f64")
}

/// Bounds on output `output` (0-based), element by element: lo <= y' <= hi. lo = -INFINITY or hi =
/// +INFINITY leaves that side open (not both). form 0: clamp, y' = min(max(y, lo), hi) (gradient 1
/// strictly inside, 0 outside); form 1: softplus, smooth and strictly monotone: lo + softplus(y - lo)
/// (positivity with lo = 0), hi - softplus(hi - y), or lo + softplus(y - lo) - softplus(y - hi) with
/// both (close to y well inside the range).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (output out of range, lo or hi NaN or
/// beyond float32, lo >= hi, both open, form not 0 or 1), UNSUPPORTED, OUT_OF_MEMORY.
/// Section: constraints.
@c public func inloop_model_add_constraint_bounds(_ model: OpaquePointer?, _ output: Int64, _ lo: Double, _ hi: Double,
                                                  _ form: Int32) -> inloop_status {
    attach(model, "add_constraint_bounds", output) { () throws(InLoopError) -> ConstraintSpec in
        guard form == 0 || form == 1 else { throw InLoopError(.invalidArgument, "form must be 0 (clamp) or 1 (softplus), got \(form)") }
        guard !lo.isNaN, !hi.isNaN else { throw InLoopError(.invalidArgument, "lo and hi must not be NaN") }
        guard lo != .infinity, hi != -.infinity else { throw InLoopError(.invalidArgument, "lo = +inf or hi = -inf leaves no value") }
        let l: Double? = lo == -.infinity ? nil : lo, h: Double? = hi == .infinity ? nil : hi
        guard l != nil || h != nil else { throw InLoopError(.invalidArgument, "both bounds are open (lo = -inf, hi = +inf)") }
        for v in [l, h] { if let v, abs(v) > Double(Float.greatestFiniteMagnitude) { throw InLoopError(.invalidArgument, "bound \(v) is beyond float32") } }
        if let l, let h, !(l < h) { throw InLoopError(.invalidArgument, "lo \(l) must be below hi \(h)") }
        return .bounds(lo: l, hi: h, softplus: form == 1)
    }
}

private func massFixer<T: BinaryFloatingPoint>(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<T>?, _ k: Int64,
                                               _ name: String) -> inloop_status {
    attach(model, name, output) { () throws(InLoopError) -> ConstraintSpec in
        guard let ws = try weights(w, k, allowNone: false) else { throw InLoopError(.nullPointer, "w is NULL") }
        return .massFixer(weights: ws)
    }
}

/// Conservative mass fixer on output `output` (0-based, shape [..., K]): negative values are removed
/// and the deficit taken from the positive values in proportion to their w-weighted mass, so every
/// column's integral T = w.y is unchanged: y' = max(y, 0) * max(T, 0) / (w.max(y, 0)). A column with
/// no negative value is returned unchanged (bitwise); a column whose total T is negative becomes 0
/// (no non-negative column has that integral). w: the k = K non-negative weights, not all zero.
/// Statuses: NULL_POINTER (model or w), INVALID_HANDLE, INVALID_ARGUMENT (output out of range, k < 1,
/// a weight negative or not finite, all zero), SIZE_MISMATCH (k is not the output's last dimension),
/// UNSUPPORTED, OUT_OF_MEMORY.
/// Section: constraints.
@c public func inloop_model_add_constraint_mass_fixer_f32(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<Float>?,
                                                          _ k: Int64) -> inloop_status {
    massFixer(model, output, w, k, "add_constraint_mass_fixer_f32")
}

/// As inloop_model_add_constraint_mass_fixer_f32 with float64 weights.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH, UNSUPPORTED, OUT_OF_MEMORY.
/// Section: constraints.
@c public func inloop_model_add_constraint_mass_fixer_f64(_ model: OpaquePointer?, _ output: Int64, _ w: UnsafePointer<Double>?,
                                                          _ k: Int64) -> inloop_status {
    massFixer(model, output, w, k, "add_constraint_mass_fixer_f64")
}
