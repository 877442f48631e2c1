#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBLAS
import InLoopKernelsC
import Synchronization

extension Engine {
    /// The threads InLoop computes with (`docs/ENGINE.md` "Threads"). One count, the caller's
    /// (`inloop_set_num_threads`, else the default of the thread policy, else OpenBLAS's own count):
    ///
    /// - A forward whose plan is batch-separable (`Model.splittable`) and whose batch has enough work
    ///   runs as contiguous slices of the batch, one per thread: part 0 on the calling thread, the
    ///   others on `WorkerPool`'s threads. OpenBLAS is held at 1 thread for the whole call (also when
    ///   the batch is too small to split: a small GEMM on two OpenBLAS threads was slower than on one),
    ///   unless the call runs whole without any BLAS call (`Executor.forwardCallsBLAS`).
    /// - Everything else (training steps, plans that are not separable) runs on the calling thread
    ///   with OpenBLAS at the count, as before.
    ///
    /// So the two never stack: while InLoop's workers run, OpenBLAS runs serially inside them.
    public enum Threads {
        /// The count; 0: not known yet (the first read takes OpenBLAS's, which its environment
        /// variables set, before any call has held OpenBLAS at 1 thread).
        private static let chosen = Atomic<Int>(0)

        /// The number of threads the next call computes with.
        public static var count: Int {
            let c = chosen.load(ordering: .relaxed)
            if c > 0 { return c }
            _ = chosen.compareExchange(expected: 0, desired: Swift.max(1, Kernels.blasThreads()), ordering: .relaxed)
            return chosen.load(ordering: .relaxed)
        }

        /// Calls of splittable plans running now (each holds OpenBLAS at 1 thread), under a lock that
        /// also orders OpenBLAS's count changes: a second caller thread that finishes first must not
        /// give OpenBLAS its threads back under the feet of one still running.
        private static let serialCalls = Lock(0)

        /// Sets the count (n ≥ 1; smaller values count as 1). InLoop's workers are made when a forward
        /// first needs them, never here. OpenBLAS gets n threads now, or when the calls running finish.
        public static func set(_ n: Int) {
            let n = Swift.max(1, n)
            chosen.store(n, ordering: .relaxed)
            serialCalls.withLock { active in if active == 0 { Kernels.setBLASThreads(n) } }
        }

        /// OpenBLAS at one thread for a call that splits (or could split) the batch; `restoreBLAS`
        /// with the same `threads` after it. Nothing happens at a count of 1.
        static func serialBLAS(_ threads: Int) {
            guard threads > 1 else { return }
            serialCalls.withLock { active in
                if active == 0 { Kernels.setBLASThreads(1) }
                active += 1
            }
        }

        static func restoreBLAS(_ threads: Int) {
            guard threads > 1 else { return }
            serialCalls.withLock { active in
                active -= 1
                if active == 0 { Kernels.setBLASThreads(count) }
            }
        }
    }

    /// Work that a `WorkerPool` runs in parts. `runPart` must not throw or trap: a part records its own
    /// failure, which the submitter reads after every part has finished. Any thread may run any part
    /// (each part exactly once), so a part's state belongs to the part, never to a thread.
    public protocol ParallelJob: AnyObject {
        func runPart(_ k: Int)
    }

    /// InLoop's own threads: made lazily (the first call that splits a batch into more parts than
    /// there are workers), parked on a condition variable while idle, never ended (they sleep until
    /// the process exits). One job at a time: a second caller thread waits for the first job to finish
    /// (a few milliseconds), then runs its own.
    ///
    /// Waking a parked thread costs tens of microseconds on a VM, as much as a whole part of a small
    /// batch. So a worker that finished a part spins for `workerSpin` (pausing between reads of the
    /// job counter) before it parks: a caller that splits call after call (a loop over blocks of
    /// columns, a benchmark) hands it the next job while it still runs. The calling thread likewise
    /// spins up to `callerSpin` for the workers' parts before it waits on the condition variable.
    /// Between the calls of a time loop that does other work the worker is parked, using no CPU.
    ///
    /// Parts 1, 2, ... are not bound to threads: the calling thread runs part 0, then claims and runs
    /// every part no worker has claimed yet (`ilk_claim_part`), and only then waits for the parts the
    /// workers run. A worker that is late (parked and slow to wake, or sharing its core with another
    /// library's spinning threads) thus costs at most the parts it did claim, never a whole part's
    /// wait on top of the serial time.
    public final class WorkerPool: @unchecked Sendable {  // state guarded by `mutex`
        public static let shared = WorkerPool()
        /// The largest number of parts of one job (threads beyond it are not used).
        public static let maxParts = 64

        private let submit: UnsafeMutablePointer<pthread_mutex_t>
        private let mutex: UnsafeMutablePointer<pthread_mutex_t>
        private let work: UnsafeMutablePointer<pthread_cond_t>
        private let done: UnsafeMutablePointer<pthread_cond_t>
        /// Workers made so far (only grows; read and written under `submit`).
        public private(set) var workers = 0
        // under `mutex`:
        private var generation = 0
        private var job: (any ParallelJob)? = nil
        private var parts = 0
        private var pending = 0
        /// `generation` and `pending`, also stored (release, under `mutex`) for the spinning reads
        /// (acquire, outside it); the mutex stays what orders everything else.
        private let generationWord: UnsafeMutablePointer<Int64>
        private let pendingWord: UnsafeMutablePointer<Int64>
        /// The job's next unclaimed part, tagged with the job's generation (`ilk_claim_part`): tag·2¹⁶ + part.
        private let claimWord: UnsafeMutablePointer<Int64>
        /// The tag of a generation: its low 47 bits.
        private static func tag(_ generation: Int) -> Int64 { Int64(truncatingIfNeeded: generation) & (1 << 47 - 1) }
        /// How long a worker spins for the next job after a part, and the caller for the parts (ns).
        static let workerSpin: Int64 = 50_000
        static let callerSpin: Int64 = 200_000

        private init() {
            submit = .allocate(capacity: 1); submit.initialize(to: pthread_mutex_t()); pthread_mutex_init(submit, nil)
            mutex = .allocate(capacity: 1); mutex.initialize(to: pthread_mutex_t()); pthread_mutex_init(mutex, nil)
            work = .allocate(capacity: 1); work.initialize(to: pthread_cond_t()); pthread_cond_init(work, nil)
            done = .allocate(capacity: 1); done.initialize(to: pthread_cond_t()); pthread_cond_init(done, nil)
            generationWord = .allocate(capacity: 1); generationWord.initialize(to: 0)
            pendingWord = .allocate(capacity: 1); pendingWord.initialize(to: 0)
            claimWord = .allocate(capacity: 1); claimWord.initialize(to: 0)
        }

        /// Runs parts 0..<n of `job`, part 0 on the calling thread and each other part on the first thread
        /// to claim it (a worker, or the caller once part 0 is done), and returns when all have finished.
        /// `n` is first lowered to the threads that exist or can be made (a failed pthread_create
        /// leaves fewer workers, never an error); the parts actually run are returned *before* any
        /// runs, through `using`, so the job can cut its slices: `using(m)` must make parts 0..<m
        /// cover the work.
        public func run(_ job: any ParallelJob, parts n: Int, using: (Int) -> Void) {
            pthread_mutex_lock(submit)
            defer { pthread_mutex_unlock(submit) }
            runHeld(job, parts: n, using: using)
        }

        /// As `run` when no job holds the pool; false at once (nothing run, `using` not called) when one
        /// does: a kernel that splits one step's work (the rows of an image) inside a call whose batch
        /// is already split, or beside another caller's job, runs serially instead of nesting or waiting.
        public func tryRun(_ job: any ParallelJob, parts n: Int, using: (Int) -> Void) -> Bool {
            guard pthread_mutex_trylock(submit) == 0 else { return false }
            defer { pthread_mutex_unlock(submit) }
            runHeld(job, parts: n, using: using)
            return true
        }

        /// `run`'s body, `submit` held.
        private func runHeld(_ job: any ParallelJob, parts n: Int, using: (Int) -> Void) {
            let want = Swift.min(Swift.max(n, 1), WorkerPool.maxParts)
            while workers < want - 1, start(index: workers) { workers += 1 }
            let m = Swift.min(want, workers + 1)
            using(m)
            if m == 1 {
                job.runPart(0)
                return
            }
            pthread_mutex_lock(mutex)
            self.job = job
            parts = m
            pending = m - 1
            generation &+= 1
            let tag = WorkerPool.tag(generation)
            ilk_word_store(pendingWord, Int64(pending))
            ilk_word_store(claimWord, tag << 16 | 1)
            ilk_word_store(generationWord, Int64(truncatingIfNeeded: generation))
            pthread_cond_broadcast(work)
            pthread_mutex_unlock(mutex)
            job.runPart(0)
            // the parts no worker has taken yet
            var mine = 0
            while true {
                let k = ilk_claim_part(claimWord, tag, Int64(m))
                if k < 0 { break }
                job.runPart(Int(k))
                mine += 1
            }
            if mine > 0 { finished(mine) }
            _ = ilk_spin_until_zero(pendingWord, WorkerPool.callerSpin)
            pthread_mutex_lock(mutex)
            while pending > 0 { pthread_cond_wait(done, mutex) }
            self.job = nil
            pthread_mutex_unlock(mutex)
        }

        /// Starts worker `index` (it runs part index + 1); false when the thread cannot be made.
        private func start(index: Int) -> Bool {
            var attr = pthread_attr_t()
            guard pthread_attr_init(&attr) == 0 else { return false }
            defer { pthread_attr_destroy(&attr) }
            pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
            var thread = pthread_t()
            // (index, the generation it starts after: read here, under `submit`, before the job that
            // needs this worker is published; read by the worker itself it could be that job's)
            let arg = UnsafeMutablePointer<(Int, Int)>.allocate(capacity: 1)
            arg.initialize(to: (index, generation))
            let ok = pthread_create(&thread, &attr, { arg in
                let p = arg!.assumingMemoryBound(to: (Int, Int).self)
                let (index, seen) = p.pointee
                p.deallocate()
                WorkerPool.shared.loop(index: index, seen: seen)
            }, UnsafeMutableRawPointer(arg)) == 0
            if !ok { arg.deallocate() }
            return ok
        }

        /// Counts `count` parts of the current job as finished.
        private func finished(_ count: Int) {
            pthread_mutex_lock(mutex)
            pending -= count
            ilk_word_store(pendingWord, Int64(pending))
            if pending == 0 { pthread_cond_signal(done) }
            pthread_mutex_unlock(mutex)
        }

        private func loop(index: Int, seen start: Int) -> Never {
            var seen = start
            pthread_mutex_lock(mutex)
            while true {
                if generation == seen {
                    pthread_mutex_unlock(mutex)
                    _ = ilk_spin_while_equal(generationWord, Int64(truncatingIfNeeded: seen), WorkerPool.workerSpin)
                    pthread_mutex_lock(mutex)
                    while generation == seen { pthread_cond_wait(work, mutex) }
                }
                seen = generation
                guard let job else { continue }
                // (the job, its part count and its tag are read together, under the mutex: a part
                // claimed with this tag belongs to this job even if the caller has moved on since)
                let m = Int64(parts), tag = WorkerPool.tag(seen)
                pthread_mutex_unlock(mutex)
                var ran = 0
                while true {
                    let k = ilk_claim_part(claimWord, tag, m)
                    if k < 0 { break }
                    job.runPart(Int(k))
                    ran += 1
                }
                if ran > 0 { finished(ran) }
                pthread_mutex_lock(mutex)
            }
        }
    }
}
