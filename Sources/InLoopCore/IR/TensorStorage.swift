#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Engine {
    /// The element types a graph value can have. Floating values are computed in; integers and
    /// booleans are shape computations, indices and masks.
    public enum DType: UInt8, Sendable, CustomStringConvertible, CaseIterable {
        case float32, float64, int64, bool

        /// Bytes per element in storage (bool: one byte, as ONNX and safetensors store it).
        public var size: Int {
            switch self {
            case .float32: return 4
            case .float64, .int64: return 8
            case .bool: return 1
            }
        }

        public var isFloatingPoint: Bool { self == .float32 || self == .float64 }

        public var description: String {
            switch self {
            case .float32: return "float32"
            case .float64: return "float64"
            case .int64: return "int64"
            case .bool: return "bool"
            }
        }
    }

    /// An owned, 64-byte aligned, zero-filled block of `count` elements of one dtype: the one owner of
    /// numeric memory in the engine. Kernels see typed pointers, checked against the dtype here.
    public final class TensorStorage {
        public let dtype: DType
        public let count: Int
        public let raw: UnsafeMutableRawPointer

        /// Allocates `count` zero-filled elements; `.outOfMemory` for what cannot or may not be allocated
        /// (the limits of `Limits.allocation`), never a trap.
        public init(dtype: DType, count: Int) throws(InLoopError) {
            guard count >= 0 else { throw InLoopError(.invalidArgument, "negative buffer size \(count)") }
            let bytes = try Limits.product(max(count, 1), dtype.size, "a buffer of \(count) \(dtype) values")
            try Limits.allocation(bytes: bytes, "a buffer of \(count) \(dtype) values")
            var p: UnsafeMutableRawPointer? = nil
            // posix_memalign reports failure; Swift's allocate would abort the host process instead.
            guard posix_memalign(&p, 64, bytes) == 0, let p else {
                throw InLoopError(.outOfMemory, "cannot allocate \(bytes) bytes for \(count) \(dtype) values")
            }
            memset(p, 0, bytes)
            raw = p
            self.dtype = dtype
            self.count = count
            owner = nil
        }

        /// Set when the memory belongs to another object (kept alive here, never freed here).
        private let owner: AnyObject?

        /// A view of `count` elements owned by `owner` (a layer's `FloatBuffer`): weights shared, not
        /// copied, between a model's layers and its graph.
        public init(borrowing raw: UnsafeMutableRawPointer, dtype: DType, count: Int, owner: AnyObject) {
            self.raw = raw
            self.dtype = dtype
            self.count = count
            self.owner = owner
        }

        deinit { if owner == nil { free(raw) } }

        /// The elements as `T`; `T` must be the storage's element type (checked: a wrong type is an
        /// internal error, not a reinterpretation).
        public func pointer<T: StorableElement>(as _: T.Type) throws(InLoopError) -> UnsafeMutablePointer<T> {
            guard T.dtype == dtype else {
                throw InLoopError(.internal, "a \(dtype) buffer read as \(T.dtype)")
            }
            return raw.assumingMemoryBound(to: T.self)
        }
    }

    /// A tensor: a shape and row-major (C-order) storage. Values; the storage is shared and treated as
    /// immutable once a graph holds it as a constant.
    public struct Tensor: CustomStringConvertible {
        public let shape: [Int]
        public let storage: TensorStorage

        public var dtype: DType { storage.dtype }
        public var count: Int { storage.count }
        public var rank: Int { shape.count }

        /// A zero-filled tensor.
        public init(zeros shape: [Int], dtype: DType) throws(InLoopError) {
            let n = try InLoopCore.Tensor.elementCount(shape)
            self.shape = shape
            storage = try TensorStorage(dtype: dtype, count: n)
        }

        /// A tensor holding `values` (row-major); the dtype is `T`'s.
        public init<T: StorableElement>(shape: [Int], values: [T]) throws(InLoopError) {
            let n = try InLoopCore.Tensor.elementCount(shape)
            guard n == values.count else {
                throw InLoopError(.sizeMismatch, "shape \(InLoopCore.Tensor.format(shape)) needs \(n) values, got \(values.count)")
            }
            self.shape = shape
            storage = try TensorStorage(dtype: T.dtype, count: n)
            let p = storage.raw.assumingMemoryBound(to: T.self)
            for (i, v) in values.enumerated() { p[i] = v }
        }

        /// Wraps existing storage; its count must be the product of `shape`.
        public init(shape: [Int], storage: TensorStorage) throws(InLoopError) {
            let n = try InLoopCore.Tensor.elementCount(shape)
            guard n == storage.count else {
                throw InLoopError(.sizeMismatch, "shape \(InLoopCore.Tensor.format(shape)) needs \(n) values, storage has \(storage.count)")
            }
            self.shape = shape
            self.storage = storage
        }

        /// A floating tensor converted to another floating type (new storage; itself when it has it).
        public func converted(to dtype: DType) throws(InLoopError) -> Tensor {
            if dtype == self.dtype { return self }
            let out = try Tensor(zeros: shape, dtype: dtype)
            switch (self.dtype, dtype) {
            case (.float32, .float64):
                let s = try storage.pointer(as: Float.self), d = try out.storage.pointer(as: Double.self)
                for i in 0..<count { d[i] = Double(s[i]) }
            case (.float64, .float32):
                let s = try storage.pointer(as: Double.self), d = try out.storage.pointer(as: Float.self)
                for i in 0..<count { d[i] = Float(s[i]) }
            default:
                throw InLoopError(.unsupported, "a \(self.dtype) tensor converted to \(dtype)")
            }
            return out
        }

        /// The elements as `[T]` (T must be the dtype's type).
        public func values<T: StorableElement>(as _: T.Type) throws(InLoopError) -> [T] {
            Array(UnsafeBufferPointer(start: try storage.pointer(as: T.self), count: count))
        }

        /// Integer elements (int64 or bool) as `[Int]`; nil for floating tensors.
        public var integers: [Int]? {
            switch dtype {
            case .int64:
                let p = storage.raw.assumingMemoryBound(to: Int64.self)
                return (0..<count).map { Int(p[$0]) }
            case .bool:
                let p = storage.raw.assumingMemoryBound(to: UInt8.self)
                return (0..<count).map { p[$0] != 0 ? 1 : 0 }
            case .float32, .float64:
                return nil
            }
        }

        public var description: String { "\(dtype)\(InLoopCore.Tensor.format(shape))" }
    }
}

/// A Swift type that is the element type of one `Engine.DType`.
public protocol StorableElement {
    static var dtype: Engine.DType { get }
}
extension Float: StorableElement { public static var dtype: Engine.DType { .float32 } }
extension Double: StorableElement { public static var dtype: Engine.DType { .float64 } }
extension Int64: StorableElement { public static var dtype: Engine.DType { .int64 } }
extension Bool: StorableElement { public static var dtype: Engine.DType { .bool } }
