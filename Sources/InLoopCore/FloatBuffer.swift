#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An owned, 64-byte aligned block of `Float`s: the one place the engine allocates numeric memory.
/// Weights and workspaces are `FloatBuffer`s; kernels see only their raw pointers.
public final class FloatBuffer {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    /// Allocates `count` floats, zero-filled. Throws `outOfMemory` for sizes that cannot be allocated.
    public init(count: Int) throws(InLoopError) {
        guard count >= 0 else { throw InLoopError(.invalidArgument, "negative buffer size \(count)") }
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        // Refuse absurd sizes up front instead of letting the allocator trap.
        guard !overflow else { throw InLoopError(.outOfMemory, "cannot allocate \(count) floats") }
        try Limits.allocation(bytes: bytes, "a buffer of \(count) floats")
        // posix_memalign reports failure; Swift's allocate would abort the host process instead.
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw InLoopError(.outOfMemory, "cannot allocate \(bytes) bytes for \(count) floats")
        }
        base = raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        self.count = count
    }

    /// A buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) throws(InLoopError) {
        try self.init(count: values.count)
        for (i, v) in values.enumerated() { base[i] = v }
    }

    deinit { free(base) }

    public subscript(i: Int) -> Float {
        get { base[i] }
        set { base[i] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
    public var array: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
