/// A float32 tensor: a shape and row-major (C-order) data in a `FloatBuffer`.
/// Tensors are values; the storage is shared and treated as immutable once a model holds it.
public struct Tensor: CustomStringConvertible {
    public let shape: [Int]
    public let storage: FloatBuffer

    /// Number of elements: the product of `shape` (1 for a scalar).
    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// A zero-filled tensor of the given shape.
    public init(zeros shape: [Int]) throws(InLoopError) {
        let n = try Tensor.elementCount(shape)
        self.shape = shape
        self.storage = try FloatBuffer(count: n)
    }

    /// A tensor holding `values` (row-major) with the given shape.
    public init(shape: [Int], values: [Float]) throws(InLoopError) {
        let n = try Tensor.elementCount(shape)
        guard n == values.count else {
            throw InLoopError(.sizeMismatch, "shape \(Tensor.format(shape)) needs \(n) values, got \(values.count)")
        }
        self.shape = shape
        self.storage = try FloatBuffer(values)
    }

    /// Wraps existing storage; `storage.count` must equal the product of `shape`.
    public init(shape: [Int], storage: FloatBuffer) throws(InLoopError) {
        let n = try Tensor.elementCount(shape)
        guard n == storage.count else {
            throw InLoopError(.sizeMismatch, "shape \(Tensor.format(shape)) needs \(n) values, storage has \(storage.count)")
        }
        self.shape = shape
        self.storage = storage
    }

    public var values: [Float] { storage.array }
    public var description: String { "Tensor\(Tensor.format(shape))" }

    /// Product of the dimensions, with negative dimensions and overflow reported instead of trapping.
    /// Every dimension is at most `Limits.maxDimension` and the product of the non-zero ones at most
    /// `Limits.maxElements`, so any partial product of a shape that passed is safe too.
    public static func elementCount(_ shape: [Int]) throws(InLoopError) -> Int {
        var nonZero = 1
        var hasZero = false
        for d in shape {
            guard d >= 0 else { throw InLoopError(.format, "negative dimension in shape \(format(shape))") }
            guard d <= Limits.maxDimension else {
                throw InLoopError(.format, "shape \(format(shape)) is too large: dimension \(d) is larger than \(Limits.maxDimension)")
            }
            if d == 0 { hasZero = true; continue }
            let (p, o) = nonZero.multipliedReportingOverflow(by: d)
            guard !o, p <= Limits.maxElements else {
                throw InLoopError(.format, "shape \(format(shape)) is too large: more than \(Limits.maxElements) elements")
            }
            nonZero = p
        }
        return hasZero ? 0 : nonZero
    }

    /// `[2, 3]` style formatting for messages.
    public static func format(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ", ") + "]"
    }
}
