import InLoopCore
import InLoopFormats

// Input-range guards (out-of-distribution flags): the per-feature range of the first input a model
// was trained on (stored by the trainer in the saved model, or set here), and a check on every
// forward/run call that counts, per column, the features outside it.

/// The range check run on each forward/run call of a model (inloop_model_set_range_check).
@c public enum inloop_range_mode: Int32 {
    /// No check (the default).
    case INLOOP_RANGE_OFF = 0
    /// Per column, the number of input features outside their range (and, per feature, the number
    /// of columns where it is outside: inloop_model_range_feature_counts); the model sees the inputs
    /// as given.
    case INLOOP_RANGE_REPORT = 1
    /// As REPORT for the per-column counts, and the model sees each value clamped into its range (a
    /// NaN stays NaN and counts as outside); the caller's array is not changed.
    case INLOOP_RANGE_CLAMP = 2
    /// Per column 1 when any feature is outside its range, else 0 (the cheapest check); the model
    /// sees the inputs as given.
    case INLOOP_RANGE_FLAG_ONLY = 3
}

/// Sets the range check of every later forward/run call on this model (`mode` is an
/// inloop_range_mode value). Anything but INLOOP_RANGE_OFF needs the model's input ranges: stored by
/// the trainer that saved it, or set with inloop_model_set_input_range,
/// inloop_model_set_input_range_from_samples_f32 (or f64) or inloop_model_set_input_range_from_file. A value v is outside when v < lo or v > hi or v is NaN. run_shaped refuses to run
/// while the check is on (UNSUPPORTED). Read the results with inloop_model_range_flags.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (an unknown mode; no input ranges), BUSY.
/// Section: running.
@c public func inloop_model_set_range_check(_ model: OpaquePointer?, _ mode: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let m = Engine.RangeMode(rawValue: Int(mode)) else {
            throw InLoopError(.invalidArgument, "set_range_check: mode must be 0 (off), 1 (report), 2 (clamp) or 3 (flag only), got \(mode)")
        }
        try box.model.setRangeMode(m)
    }
}

/// Copies into counts[0..batch-1] the per-column results of the last checked forward/run call: the
/// number of input features outside their range (REPORT, CLAMP) or 1/0 (FLAG_ONLY). `batch` must be
/// that call's batch. Zero everywhere means every column was inside the training range.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (the check is off, or no call was checked
/// since it was set), SIZE_MISMATCH (batch is not the last call's), BUSY.
/// Section: running.
@c public func inloop_model_range_flags(_ model: OpaquePointer?, _ batch: Int64, _ counts: UnsafeMutablePointer<Int32>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let counts else { throw InLoopError(.nullPointer, "range_flags: counts is NULL") }
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "range_flags: batch must be >= 1, got \(batch)") }
        try box.model.rangeFlags(into: UnsafeMutableBufferPointer(start: counts, count: Int(batch)), batch: Int(batch))
    }
}

/// Copies into counts[0..n-1] (n = the first input's values per sample, inloop_model_input_size), for
/// each feature, the number of columns of the last REPORT call where it was outside its range.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (the mode is not REPORT, or no call was
/// checked), SIZE_MISMATCH (n is not the number of features), BUSY.
/// Section: running.
@c public func inloop_model_range_feature_counts(_ model: OpaquePointer?, _ n: Int64, _ counts: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let counts else { throw InLoopError(.nullPointer, "range_feature_counts: counts is NULL") }
        guard n == Int64(box.model.inputSize) else {
            throw InLoopError(.sizeMismatch, "range_feature_counts: n is \(n); the first input has \(box.model.inputSize) values per sample")
        }
        try box.model.rangeFeatureCounts(into: UnsafeMutableBufferPointer(start: counts, count: Int(n)))
    }
}

/// Sets the input ranges of the model's first input: lo[j] <= hi[j], finite, for each of its n values
/// per sample (n = inloop_model_input_size). Replaces any ranges the file had; the check's mode is kept.
/// Statuses: NULL_POINTER, INVALID_HANDLE, SIZE_MISMATCH (n), INVALID_ARGUMENT (lo > hi, a non-finite
/// bound), UNSUPPORTED (a model whose first input does not lead with the batch), BUSY.
/// Section: running.
@c public func inloop_model_set_input_range(_ model: OpaquePointer?, _ n: Int64, _ lo: UnsafePointer<Double>?,
                                                _ hi: UnsafePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let lo, let hi else { throw InLoopError(.nullPointer, "set_input_range: lo or hi is NULL") }
        guard n == Int64(box.model.inputSize), n >= 1 else {
            throw InLoopError(.sizeMismatch, "set_input_range: n is \(n); the first input has \(box.model.inputSize) values per sample")
        }
        let c = Int(n)
        try box.model.setInputRanges(try Engine.InputRanges(lo: Array(UnsafeBufferPointer(start: lo, count: c)),
                                                            hi: Array(UnsafeBufferPointer(start: hi, count: c))))
    }
}

/// Sets the input ranges from `batch` samples x (batch x n_in values, Fortran x(n_in, batch)): each
/// feature's minimum and maximum, mean and standard deviation over them (non-finite samples: NONFINITE).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1), NONFINITE, UNSUPPORTED, BUSY.
/// Section: running.
@c public func inloop_model_set_input_range_from_samples_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in try setRangesFromSamples(model, x, batch) }
}

/// As inloop_model_set_input_range_from_samples_f32, for double samples.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, NONFINITE, UNSUPPORTED, BUSY.
/// Section: running.
@c public func inloop_model_set_input_range_from_samples_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in try setRangesFromSamples(model, x, batch) }
}

/// Sets the input ranges from a safetensors file: the ranges a native model file (or a file written
/// by a trainer) holds, or else samples, the tensor named like the model's first input (or the
/// file's only tensor), whose element count is a multiple of the input's values per sample.
/// Statuses: NULL_POINTER, INVALID_HANDLE, IO, FORMAT, SIZE_MISMATCH, NONFINITE, UNSUPPORTED, BUSY.
/// Section: running.
@c public func inloop_model_set_input_range_from_file(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let path else { throw InLoopError(.nullPointer, "set_input_range_from_file: path is NULL") }
        let p = String(cString: path)
        do throws(InLoopError) {
            let file = try SafetensorsFile(bytes: try FileIO.read(p))
            if let r = try InputRangesFile.read(file) {
                try box.model.setInputRanges(r)
                return
            }
            let name = box.model.inputSpecs.first?.name ?? ""
            guard let e = file.entry(name) ?? (file.entries.count == 1 ? file.entries[0] : nil) else {
                throw InLoopError(.format, "no input ranges and no samples: no tensor is named '\(name)' and the file has \(file.entries.count) tensors")
            }
            let v = try file.doubles(e.name)
            let f = box.model.inputSize
            guard f > 0, !v.isEmpty, v.count % f == 0 else {
                throw InLoopError(.sizeMismatch, "samples '\(e.name)' hold \(v.count) values, not a multiple of the input's \(f) per sample")
            }
            try v.withUnsafeBufferPointer { (b) throws(InLoopError) in try setRanges(box.model, b.baseAddress!, v.count / f) }
        } catch {
            throw error.prefixed(p)
        }
    }
}

/// Copies the model's input ranges into lo, hi, mean, std (n values each, n = inloop_model_input_size;
/// mean and std may be NULL) and the number of samples they come from into *samples (may be NULL; 0
/// for given ranges).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (the model has no ranges), SIZE_MISMATCH.
/// Section: running.
@c public func inloop_model_input_range(_ model: OpaquePointer?, _ n: Int64, _ lo: UnsafeMutablePointer<Double>?,
                                            _ hi: UnsafeMutablePointer<Double>?, _ mean: UnsafeMutablePointer<Double>?,
                                            _ std: UnsafeMutablePointer<Double>?, _ samples: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let lo, let hi else { throw InLoopError(.nullPointer, "input_range: lo or hi is NULL") }
        guard let r = box.model.inputRanges else { throw InLoopError(.invalidArgument, "input_range: model '\(box.model.name)' has no input ranges") }
        guard n == Int64(r.count) else { throw InLoopError(.sizeMismatch, "input_range: n is \(n); the ranges have \(r.count) features") }
        for j in 0..<r.count {
            lo[j] = r.lo[j]; hi[j] = r.hi[j]
            mean?[j] = r.mean[j]; std?[j] = r.std[j]
        }
        samples?.pointee = Int64(r.samples)
    }
}

private func setRangesFromSamples<T: BinaryFloatingPoint>(_ model: OpaquePointer?, _ x: UnsafePointer<T>?, _ batch: Int64) throws(InLoopError) {
    let box = try models.lookup(model)
    guard let x else { throw InLoopError(.nullPointer, "set_input_range_from_samples: x is NULL") }
    guard batch >= 1 else { throw InLoopError(.invalidArgument, "set_input_range_from_samples: batch must be >= 1, got \(batch)") }
    _ = try Limits.arrayCount(batch: Int(batch), perSample: box.model.inputSize)
    try setRanges(box.model, x, Int(batch))
}

private func setRanges<T: BinaryFloatingPoint>(_ m: Engine.Model, _ x: UnsafePointer<T>, _ batch: Int) throws(InLoopError) {
    let f = m.inputSize
    for i in 0..<batch * f where !x[i].isFinite {
        throw InLoopError(.nonFinite, "sample \(i / f), feature \(i % f) is \(x[i]); input ranges come from finite samples")
    }
    var s = Engine.RangeStatistics(features: f)
    s.add(x, batch: batch)
    guard let r = try s.ranges() else { throw InLoopError(.invalidArgument, "no samples") }
    try m.setInputRanges(r)
}
