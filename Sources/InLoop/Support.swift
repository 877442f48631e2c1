#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
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

/// Live objects behind the opaque handles given to C. A handle is a token (a never-reused
/// number), not an address, so a freed or foreign handle is detected instead of dereferenced.
final class HandleRegistry<Object: AnyObject & Sendable>: Sendable {
    private let table = Mutex<(next: UInt, live: [UInt: Object])>((next: 0x1000, live: [:]))
    let kind: String

    init(kind: String) { self.kind = kind }

    func register(_ object: Object) -> OpaquePointer {
        let token: UInt = table.withLock { t in
            let token = t.next
            t.next += 16
            t.live[token] = object
            return token
        }
        // The token is never zero, so this is a non-null pointer value.
        return OpaquePointer(bitPattern: token).unsafelyUnwrapped
    }

    func lookup(_ handle: OpaquePointer?, argument: String = "model") throws(InLoopError) -> Object {
        guard let handle else { throw InLoopError(.nullPointer, "\(argument) handle is NULL (not loaded?)") }
        let token = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        guard let object = table.withLock({ $0.live[token] }) else {
            throw InLoopError(.invalidHandle, "\(argument) handle is not a live InLoop \(kind) (already freed, or not made by InLoop)")
        }
        return object
    }

    /// Removes the handle; false when it was not live.
    func remove(_ handle: OpaquePointer) -> Bool {
        let token = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        return table.withLock { $0.live.removeValue(forKey: token) } != nil
    }
}

let models = HandleRegistry<ModelBox>(kind: "model")
