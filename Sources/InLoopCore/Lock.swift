#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// State guarded by a pthread mutex: the library's lock for tables shared between the caller's threads
/// (handles, the thread policy). Synchronization's `Mutex` would do the same job, but it waits with raw
/// futex calls inside an uninstrumented runtime library, so ThreadSanitizer (`make sanitize`) cannot see
/// its ordering and reports every access under it as a race; it sees pthread mutexes.
public final class Lock<State>: @unchecked Sendable {
    // (usable from inline: `withLock` is inlined into the C-ABI module, specialised for its state,
    // instead of a generic call with closure context per handle look-up)
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var state: State

    public init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the state, holding the lock.
    @inlinable @inline(__always)
    public func withLock<R>(_ body: (inout State) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }
}
