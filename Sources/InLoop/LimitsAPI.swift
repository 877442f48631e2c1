import InLoopCore

// MARK: - Limits

/// Sets the work-space limits (bytes; process-wide; for models loaded and batch sizes first run
/// afterwards). per_sample bounds the work space a model needs per sample (activations and scratch of
/// a batch / batch; default 1 GiB); total bounds the work space of one batch and any single allocation
/// (weights, trainer state; default 16 GiB). A model or batch over a limit fails with
/// INLOOP_ERR_OUT_OF_MEMORY naming the sizes, instead of taking gigabytes. 0 restores a default.
/// Fixed limits, not settable: every tensor dimension, layer size and window attribute (kernel,
/// stride, dilation, pad, group) is at most 2^31 - 1, every tensor at most 2^40 elements; larger
/// values in a file are INLOOP_ERR_FORMAT.
/// Statuses: INVALID_ARGUMENT (a negative value).
/// Section: library.
@c public func inloop_set_max_workspace_bytes(_ per_sample: Int64, _ total: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in
        try Limits.setMaxWorkspaceBytes(perSample: Int(per_sample), total: Int(total))
    }
}

/// Stores the work-space limits in *per_sample and *total (bytes).
/// Statuses: NULL_POINTER.
/// Section: library.
@c public func inloop_get_max_workspace_bytes(_ per_sample: UnsafeMutablePointer<Int64>?,
                                              _ total: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let per_sample, let total else { throw InLoopError(.nullPointer, "get_max_workspace_bytes: per_sample or total is NULL") }
        per_sample.pointee = Int64(Limits.maxWorkspaceBytesPerSample)
        total.pointee = Int64(Limits.maxWorkspaceBytes)
    }
}
