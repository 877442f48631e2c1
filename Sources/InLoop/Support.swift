#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import InLoopCore

// Plumbing of the C ABI: per-thread error messages, the handle registry, and the wrapper that
// turns Swift errors into status codes. No engine logic lives here.

/// Per-thread last error message (a malloc'd C string), like `sqlite3_errmsg`.
private let errorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

/// An empty C string for "no error yet".
nonisolated(unsafe) let emptyCString: UnsafeMutablePointer<CChar> = strdup("")

func setLastError(_ message: String) {
    let key = errorKey
    if let old = pthread_getspecific(key) { free(old) }
    pthread_setspecific(key, strdup(message))
}

func lastErrorPointer() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(errorKey) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return UnsafePointer(emptyCString)
}

/// Runs `body`, mapping a thrown `InLoopError` to its status code and recording its message.
@inline(__always)
func guarded(_ body: () throws(InLoopError) -> Void) -> inloop_status {
    do {
        try body()
        return .INLOOP_OK
    } catch {
        setLastError(error.message)
        return inloop_status(error.kind)
    }
}

/// The kinds of handle the C ABI hands out; a handle's low four bits say its kind.
enum HandleKind: UInt, Sendable {
    case model = 1
    case trainer = 2

    var name: String { self == .model ? "model" : "trainer" }
}

/// Every live object behind an opaque handle given to C, of every kind, in one table: a handle is a
/// token (a never-reused number from one counter, its kind in the low four bits), not an address, so
/// a freed or foreign handle, or a handle of the wrong kind, is detected instead of dereferenced.
private let handleTable = Lock(HandleTable())

/// The table's state: the live objects, and the last one looked up (a forward call per time step
/// looks up the same handle again and again: no hashing then).
private struct HandleTable {
    var next: UInt = 0x1000
    var live: [UInt: any AnyObject & Sendable] = [:]
    /// `live[recentToken]` (0: none); cleared when that handle is removed or replaced.
    var recentToken: UInt = 0
    var recent: (any AnyObject & Sendable)? = nil

    mutating func find(_ token: UInt) -> (any AnyObject & Sendable)? {
        if token == recentToken, let recent { return recent }
        let o = live[token]
        if let o { recentToken = token; recent = o }
        return o
    }

    mutating func forget(_ token: UInt) {
        if token == recentToken { recentToken = 0; recent = nil }
    }
}

/// The handles of one kind: a typed view of the one handle table.
final class HandleRegistry<Object: AnyObject & Sendable>: Sendable {
    let kind: HandleKind

    init(kind: HandleKind) { self.kind = kind }

    func register(_ object: Object) -> OpaquePointer {
        let token: UInt = handleTable.withLock { t in
            let token = t.next | kind.rawValue
            t.next += 16
            t.live[token] = object
            return token
        }
        // The token is never zero, so this is a non-null pointer value.
        return OpaquePointer(bitPattern: token).unsafelyUnwrapped
    }

    /// The token of a handle of this kind; a handle of another kind is INVALID_HANDLE, saying so.
    private func token(_ handle: OpaquePointer, _ argument: String) throws(InLoopError) -> UInt {
        let token = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        if token & 15 != kind.rawValue, token >= 0x1000, let other = HandleKind(rawValue: token & 15),
           handleTable.withLock({ $0.live[token] != nil }) {
            throw InLoopError(.invalidHandle, "\(argument): a \(other.name) handle where a \(kind.name) handle is expected")
        }
        return token
    }

    func lookup(_ handle: OpaquePointer?, argument: String = "model") throws(InLoopError) -> Object {
        guard let handle else { throw InLoopError(.nullPointer, "\(argument) handle is NULL (not loaded?)") }
        let token = try token(handle, argument)
        guard let object = handleTable.withLock({ $0.find(token) }) as? Object else {
            throw InLoopError(.invalidHandle, "\(argument) handle is not a live InLoop \(kind.name) (already freed, or not made by InLoop)")
        }
        return object
    }

    /// Removes a live handle of this kind; throws INVALID_HANDLE (and changes nothing) otherwise.
    func remove(_ handle: OpaquePointer, _ what: String) throws(InLoopError) {
        let token = try token(handle, what)
        let removed: Bool = handleTable.withLock { t in
            guard t.live[token] is Object else { return false }
            t.forget(token)
            t.live.removeValue(forKey: token)
            return true
        }
        guard removed else {
            throw InLoopError(.invalidHandle, "\(what): handle is not a live InLoop \(kind.name) (freed twice?)")
        }
    }

    /// Puts `object` behind a live handle of this kind (a model rebuilt with a constraint keeps its
    /// handle); INVALID_HANDLE when the handle is not live.
    func replace(_ handle: OpaquePointer, with object: Object, _ what: String) throws(InLoopError) {
        let token = try token(handle, what)
        let replaced: Bool = handleTable.withLock { t in
            guard t.live[token] is Object else { return false }
            t.forget(token)
            t.live[token] = object
            return true
        }
        guard replaced else { throw InLoopError(.invalidHandle, "\(what): handle is not a live InLoop \(kind.name)") }
    }

    /// Every live object of this kind.
    func all() -> [Object] {
        handleTable.withLock { t in t.live.values.compactMap { $0 as? Object } }
    }
}

let models = HandleRegistry<ModelBox>(kind: .model)
