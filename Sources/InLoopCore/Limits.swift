import Synchronization

/// The engine's size limits, in one place: every dimension and attribute a model declares is checked
/// against them once, where the model is read or compiled, and every product of sizes that input
/// reaches goes through the checked helpers below (an `InLoopError`, never an overflow trap).
///
/// - `maxDimension` (2^31 - 1): any tensor dimension, any layer size, any window attribute (kernel,
///   stride, dilation, pad, group, output padding). BLAS takes 32-bit sizes; a real model is far below.
/// - `maxElements` (2^40): the product of a tensor's dimensions (of its non-zero ones, so that no
///   partial product of a shape can overflow either).
/// - Work space, settable (`setMaxWorkspaceBytes`, C: `inloop_set_max_workspace_bytes`):
///   `maxWorkspaceBytesPerSample` (default 1 GiB) bounds what a model compiled for one sample needs
///   (activations and scratch, checked at load and for each batch size: work space / batch), and
///   `maxWorkspaceBytes` (default 16 GiB) bounds the work space of one batch and any single buffer the
///   engine allocates (weights, folded constants, trainer state). Going over is `.outOfMemory` with
///   the sizes in the message — instead of gigabytes and minutes for a hostile 60 KB file.
public enum Limits {
    public static let maxDimension = Int(Int32.max)
    public static let maxElements = 1 << 40

    public static let defaultMaxWorkspaceBytesPerSample = 1 << 30
    public static let defaultMaxWorkspaceBytes = 1 << 34

    private static let perSample = Atomic<Int>(defaultMaxWorkspaceBytesPerSample)
    private static let total = Atomic<Int>(defaultMaxWorkspaceBytes)

    /// Bytes of work space a model may need per sample (process-wide setting).
    public static var maxWorkspaceBytesPerSample: Int { perSample.load(ordering: .relaxed) }
    /// Bytes of work space one batch may need, and largest single allocation (process-wide setting).
    public static var maxWorkspaceBytes: Int { total.load(ordering: .relaxed) }

    /// Sets both work-space limits (bytes, each >= 1); 0 restores a limit's default. Applies to models
    /// loaded and batch sizes compiled afterwards.
    public static func setMaxWorkspaceBytes(perSample p: Int, total t: Int) throws(InLoopError) {
        guard p >= 0, t >= 0 else {
            throw InLoopError(.invalidArgument, "work-space limits must be >= 0 bytes (0: the default), got \(p) per sample and \(t) in total")
        }
        perSample.store(p == 0 ? defaultMaxWorkspaceBytesPerSample : p, ordering: .relaxed)
        total.store(t == 0 ? defaultMaxWorkspaceBytes : t, ordering: .relaxed)
    }

    // MARK: - Checks

    /// `value` as a size: 0 ... maxDimension (or `min` ... maxDimension).
    @discardableResult
    public static func dimension(_ value: Int, _ what: @autoclosure () -> String, min: Int = 0) throws(InLoopError) -> Int {
        guard value >= min, value <= maxDimension else {
            throw InLoopError(.format, "\(what()) is \(value); it must be between \(min) and \(maxDimension)")
        }
        return value
    }

    /// Every value of an attribute list within -maxDimension ... maxDimension (signs are the caller's
    /// to check: pads may be rejected, axes may be negative).
    public static func attribute(_ values: [Int]?, _ name: String) throws(InLoopError) {
        guard let values else { return }
        for v in values where v < -maxDimension || v > maxDimension {
            throw InLoopError(.format, "\(name) \(Tensor.format(values)) holds \(v); InLoop takes sizes up to \(maxDimension)")
        }
    }

    /// a · b for sizes, or an error naming `what`.
    @inlinable
    public static func product(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(InLoopError) -> Int {
        let (p, o) = a.multipliedReportingOverflow(by: b)
        guard !o else { throw InLoopError(.format, "\(what()): \(a) × \(b) is too large") }
        return p
    }

    /// a + b for sizes, or an error naming `what`.
    @inlinable
    public static func sum(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(InLoopError) -> Int {
        let (s, o) = a.addingReportingOverflow(b)
        guard !o else { throw InLoopError(.format, "\(what()): \(a) + \(b) is too large") }
        return s
    }

    /// The element counts of the caller's arrays for `batch` samples of `perSample` values each
    /// (the C layer's only size arithmetic, checked here). `.invalidArgument` when they overflow.
    public static func arrayCount(batch: Int, perSample: Int) throws(InLoopError) -> Int {
        let (n, o) = batch.multipliedReportingOverflow(by: perSample)
        guard !o, batch >= 0, perSample >= 0 else {
            throw InLoopError(.invalidArgument, "batch \(batch) × \(perSample) values per sample is too large")
        }
        return n
    }

    /// A single allocation of `bytes`: at most `maxWorkspaceBytes`.
    public static func allocation(bytes: Int, _ what: @autoclosure () -> String) throws(InLoopError) {
        let limit = maxWorkspaceBytes
        guard bytes >= 0, bytes <= limit else {
            throw InLoopError(.outOfMemory, "\(what()) needs \(bytes) bytes, more than the work-space limit of \(limit) bytes (inloop_set_max_workspace_bytes)")
        }
    }

    /// A work space of `floats` float32 values for `batch` samples: within both limits.
    public static func workspace(floats: Int, batch: Int) throws(InLoopError) {
        let (bytes, o) = floats.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        let total = maxWorkspaceBytes, per = maxWorkspaceBytesPerSample
        guard !o, bytes <= total else {
            throw InLoopError(.outOfMemory, "batch \(batch) needs \(o ? "more than \(Int.max)" : "\(bytes)") bytes of work space, more than the limit of \(total) bytes (inloop_set_max_workspace_bytes)")
        }
        let b = Swift.max(batch, 1)
        guard bytes / b <= per else {
            throw InLoopError(.outOfMemory, "the model needs \(bytes / b) bytes of work space per sample (\(bytes) for batch \(batch)), more than the limit of \(per) bytes per sample (inloop_set_max_workspace_bytes)")
        }
    }
}
