/// The one error type of the engine. Everything that can fail throws it; the C ABI maps `kind`
/// to a status code and `message` to `inloop_last_error()`.
public struct InLoopError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Int32, Sendable {
        case nullPointer = 1
        case invalidArgument = 2
        case sizeMismatch = 3
        case invalidHandle = 4
        case io = 5
        case format = 6
        case unsupported = 7
        case nonFinite = 8
        case outOfMemory = 9
        case busy = 10
        case `internal` = 11
        case mpi = 12
    }

    public var kind: Kind
    /// What went wrong and where, in words a scientist can act on.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The same error with `context: ` put in front of its message (e.g. a file name).
    public func prefixed(_ context: String) -> InLoopError {
        InLoopError(kind, "\(context): \(message)")
    }
}
