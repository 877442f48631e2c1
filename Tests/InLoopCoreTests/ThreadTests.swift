import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import InLoopCore
import InLoopKernelsC

/// Threads (`Engine.Threads`, `Engine.WorkerPool`, docs/ENGINE.md "Threads"): a batch-separable plan
/// split into slices on 2 and 3 threads gives the outputs of the whole batch on one thread (MLP, CNN,
/// two inputs and two outputs, odd batch sizes); a plan that is not separable (Softmax over the batch
/// axis) keeps the serial path; no allocation after the first split call at a batch size; a failure
/// in a worker's part (a non-finite output under the finite check) is the call's error, worded as the
/// serial run words it.
final class ThreadTests: XCTestCase {
    typealias G = Engine.Graph
    typealias A = Engine.AttributeValue
    private var saved = 1
    override func setUp() { saved = Engine.Threads.count }
    override func tearDown() { Engine.Threads.set(saved) }

    /// Values in [-1, 1) from a fixed LCG.
    func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var s = seed &* 2654435761 &+ 1
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return (Float(Int(s >> 40) % 2000) / 1000 - 1) * scale
        }
    }

    func constant(_ g: G, _ name: String, _ shape: [Int], seed: UInt64, scale: Float = 0.5) throws {
        try g.addConstant(name, try Engine.Tensor(shape: shape, values: values(shape.reduce(1, *), seed: seed, scale: scale)))
    }

    func model(_ g: G) throws -> Engine.Model {
        try g.verify()
        try g.inferTypes()
        return try Engine.Model(graph: g)
    }

    /// x (N, 12) → Gemm 16 → LeakyRelu → Gemm 5.
    func mlp() throws -> Engine.Model {
        let g = G(opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 12])))
        try constant(g, "w1", [16, 12], seed: 1); try constant(g, "b1", [16], seed: 2)
        try constant(g, "w2", [5, 16], seed: 3); try constant(g, "b2", [5], seed: 4)
        try g.addNode("g1", GemmOp.self, ["transB": .int(1)], inputs: ["x", "w1", "b1"], outputs: ["h"])
        try g.addNode("a1", LeakyReluOp.self, ["alpha": .float(0.1)], inputs: ["h"], outputs: ["ha"])
        try g.addNode("g2", GemmOp.self, ["transB": .int(1)], inputs: ["ha", "w2", "b2"], outputs: ["y"])
        try g.markOutput("y")
        return try model(g)
    }

    /// x (N, 2, 8, 8) → Conv 4×3×3 (pad 1) → Relu → MaxPool 2 → Flatten → Gemm 3.
    func cnn() throws -> Engine.Model {
        let g = G(opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 2, 8, 8])))
        try constant(g, "w", [4, 2, 3, 3], seed: 5); try constant(g, "b", [4], seed: 6)
        try constant(g, "wd", [3, 64], seed: 7, scale: 0.2)
        try g.addNode("conv", ConvOp.self, ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])], inputs: ["x", "w", "b"], outputs: ["c"])
        try g.addNode("relu", ReluOp.self, inputs: ["c"], outputs: ["r"])
        try g.addNode("pool", MaxPoolOp.self, ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])], inputs: ["r"], outputs: ["p"])
        try g.addNode("flat", FlattenOp.self, ["axis": .int(1)], inputs: ["p"], outputs: ["f"])
        try g.addNode("dense", GemmOp.self, ["transB": .int(1)], inputs: ["f", "wd"], outputs: ["y"])
        try g.markOutput("y")
        return try model(g)
    }

    /// a (N, 6), b (N, 3) → p = a·Waᵀ, q = b·Wbᵀ → y1 = tanh(p + q), y2 = relu(p).
    func twoInputs() throws -> Engine.Model {
        let g = G(opset: 17)
        try g.addInput("a", Engine.TensorType(.float32, OpTest.shape(g, ["N", 6])))
        try g.addInput("b", Engine.TensorType(.float32, OpTest.shape(g, ["N", 3])))
        try constant(g, "wa", [4, 6], seed: 8); try constant(g, "wb", [4, 3], seed: 9)
        try g.addNode("ga", GemmOp.self, ["transB": .int(1)], inputs: ["a", "wa"], outputs: ["p"])
        try g.addNode("gb", GemmOp.self, ["transB": .int(1)], inputs: ["b", "wb"], outputs: ["q"])
        try g.addNode("add", AddOp.self, inputs: ["p", "q"], outputs: ["s"])
        try g.addNode("tanh", TanhOp.self, inputs: ["s"], outputs: ["y1"])
        try g.addNode("relu", ReluOp.self, inputs: ["p"], outputs: ["y2"])
        try g.markOutput("y1")
        try g.markOutput("y2")
        return try model(g)
    }

    /// x (N, 8) → Gemm 8 → Softmax over axis 0 (across the batch): not separable.
    func softmaxOverBatch() throws -> Engine.Model {
        let g = G(opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 8])))
        try constant(g, "w", [8, 8], seed: 10)
        try g.addNode("g", GemmOp.self, ["transB": .int(1)], inputs: ["x", "w"], outputs: ["h"])
        try g.addNode("sm", SoftmaxOp.self, ["axis": .int(0)], inputs: ["h"], outputs: ["y"])
        try g.markOutput("y")
        return try model(g)
    }

    /// A batch with enough work to be split into `parts` parts.
    func splitBatch(_ m: Engine.Model, parts: Int) -> Int {
        let per = max(m.workPerSample, 1)
        return (m.minWorkPerPart(packsWeights: true) * parts + per - 1) / per + 3   // + 3: a remainder
    }

    func run(_ m: Engine.Model, batch: Int, threads: Int, seed: UInt64 = 11) throws -> ([[Float]], Int) {
        Engine.Threads.set(threads)
        let xs = m.inputSpecs.enumerated().map { values(batch * $1.count, seed: seed + UInt64($0)) }
        let ys = try m.runArrays(batch: batch, xs)
        return (ys, m.lastParts)
    }

    /// Largest |a − b| over the largest |b| (0 when equal).
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        var worst: Float = 0, scale: Float = 1e-6
        for i in b.indices { worst = max(worst, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
        return worst / scale
    }

    /// A split run gives the whole run's values within float32 rounding (OpenBLAS need not give a row
    /// slice of a GEMM the whole product's bits), and repeats bit for bit at its thread count.
    func checkSplitMatchesWhole(_ m: Engine.Model, _ name: String) throws {
        XCTAssertTrue(m.splittable, name)
        for threads in [2, 3] {
            for batch in [splitBatch(m, parts: threads) | 1, splitBatch(m, parts: threads) * 2 + 1] {
                let (whole, p1) = try run(m, batch: batch, threads: 1)
                XCTAssertEqual(p1, 1)
                let (split, parts) = try run(m, batch: batch, threads: threads)
                XCTAssertEqual(parts, threads, "\(name) at batch \(batch)")
                XCTAssertEqual(split.count, whole.count)
                for k in whole.indices {
                    let d = Self.relativeDifference(split[k], whole[k])
                    XCTAssertLessThan(d, 1e-5, "\(name) output \(k), batch \(batch), \(threads) threads")
                }
                let (again, _) = try run(m, batch: batch, threads: threads)
                XCTAssertTrue(again == split, "\(name) batch \(batch), \(threads) threads: a repeat differs")
            }
        }
    }

    func testMLPSplitMatchesWhole() throws { try checkSplitMatchesWhole(try mlp(), "mlp") }
    func testCNNSplitMatchesWhole() throws { try checkSplitMatchesWhole(try cnn(), "cnn") }
    func testTwoInputsTwoOutputsSplitMatchesWhole() throws { try checkSplitMatchesWhole(try twoInputs(), "two inputs") }

    /// The split against an independent reference: the MLP's y computed with plain loops in Double.
    func testMLPSplitMatchesLoops() throws {
        let m = try mlp()
        let batch = splitBatch(m, parts: 2)
        let (ys, parts) = try run(m, batch: batch, threads: 2)
        XCTAssertEqual(parts, 2)
        let x = values(batch * 12, seed: 11)
        let w1 = values(16 * 12, seed: 1, scale: 0.5), b1 = values(16, seed: 2, scale: 0.5)
        let w2 = values(5 * 16, seed: 3, scale: 0.5), b2 = values(5, seed: 4, scale: 0.5)
        var worst = 0.0
        for s in 0..<batch {
            var h = [Double](repeating: 0, count: 16)
            for o in 0..<16 {
                var acc = Double(b1[o])
                for i in 0..<12 { acc += Double(w1[o * 12 + i]) * Double(x[s * 12 + i]) }
                h[o] = acc > 0 ? acc : 0.1 * acc
            }
            for o in 0..<5 {
                var acc = Double(b2[o])
                for i in 0..<16 { acc += Double(w2[o * 16 + i]) * h[i] }
                worst = max(worst, abs(Double(ys[0][s * 5 + o]) - acc))
            }
        }
        XCTAssertLessThan(worst, 1e-4)
    }

    func testNotSeparableKeepsTheSerialPath() throws {
        let m = try softmaxOverBatch()
        XCTAssertFalse(m.splittable)
        let batch = 20_001
        let (whole, _) = try run(m, batch: batch, threads: 1)
        let (two, parts) = try run(m, batch: batch, threads: 2)
        XCTAssertEqual(parts, 1)
        // (OpenBLAS at 2 threads need not give its 1-thread bits: compared within rounding)
        XCTAssertLessThan(Self.relativeDifference(two[0], whole[0]), 1e-5)
        // and it is a softmax over the whole batch: each column sums to 1
        for c in 0..<8 {
            var sum = 0.0
            for s in 0..<batch { sum += Double(two[0][s * 8 + c]) }
            XCTAssertEqual(sum, 1, accuracy: 1e-3)
        }
    }

    func testSmallBatchRunsWhole() throws {
        let m = try mlp()
        for batch in [1, 7, 100] {
            let (_, parts) = try run(m, batch: batch, threads: 2)
            XCTAssertEqual(parts, 1, "batch \(batch)")
        }
    }

    /// A model whose weights the engine's kernels read as laid out once (packed dense layers) splits
    /// a batch by the work alone; where the forward runs sgemm (the baseline level), which packs the
    /// weights again in every part, the work per parameter must also be there. Parts equal the
    /// serial run bit for bit either way.
    func testPackedWeightsSplitByWorkAlone() throws {
        let g = G(opset: 17)
        try g.addInput("x", Engine.TensorType(.float32, OpTest.shape(g, ["N", 256])))
        try constant(g, "w", [256, 256], seed: 21)
        try g.addNode("g", GemmOp.self, ["transB": .int(1)], inputs: ["x", "w"], outputs: ["h"])
        try g.addNode("r", ReluOp.self, inputs: ["h"], outputs: ["y"])
        try g.markOutput("y")
        let m = try model(g)
        // work per part >= minWorkPerPart, but far below parameterCount * minWorkPerParameter
        let batch = (2 * Engine.Model.minWorkPerPart + m.workPerSample - 1) / m.workPerSample + 1
        XCTAssertLessThan(batch * m.workPerSample, 2 * m.minWorkPerPart(packsWeights: true))
        let level = Kernels.cpuLevel
        defer { Kernels.setCPULevel(level) }
        for l in [CPULevel.baseline, level] {
            Kernels.setCPULevel(l)
            let (serial, _) = try run(m, batch: batch, threads: 1)
            let (split, parts) = try run(m, batch: batch, threads: 2)
            XCTAssertEqual(parts, l == .baseline ? 1 : 2, "\(l)")
            XCTAssertTrue(serial.map { $0.map(\.bitPattern) } == split.map { $0.map(\.bitPattern) }, "\(l)")
        }
    }

    func testSplitRunsDoNotAllocate() throws {
        let m = try cnn()
        Engine.Threads.set(2)
        let batch = splitBatch(m, parts: 2)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: batch * m.inputSize)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: batch * m.outputSize)
        defer { x.deallocate(); y.deallocate() }
        let v = values(batch * m.inputSize, seed: 12)
        for i in v.indices { x[i] = v[i] }
        func once(_ n: Int) throws {
            try m.forward(UnsafeBufferPointer(start: x, count: n * m.inputSize), batch: n,
                          into: UnsafeMutableBufferPointer(start: y, count: n * m.outputSize))
        }
        try once(batch)
        XCTAssertEqual(m.lastParts, 2)
        guard var before = heapInUse() else { throw XCTSkip("mallinfo2 cannot see the allocator in use (other platform, or a sanitizer)") }
        for _ in 0..<30 { try once(batch) }
        var after = heapInUse()
        // A one-time change (a worker thread's first use of its malloc arena or tcache, seen in CI) is
        // not a per-call allocation: then a second window must be flat; per-call growth shows in both.
        if after != before {
            before = after ?? before
            for _ in 0..<30 { try once(batch) }
            after = heapInUse()
        }
        XCTAssertEqual(after, before, "heap in use changed across split runs at a batch size seen before")
    }

    /// A worker's part finds a non-finite output (a sample that overflows, in the second half of the
    /// batch): the call fails with NON_FINITE, with the message of the serial run.
    func testNonFiniteInAWorkersPartIsTheCallsError() throws {
        let m = try mlp()
        try m.setOptions(checkFinite: true, reproducible: nil)
        let batch = splitBatch(m, parts: 2)
        var x = values(batch * 12, seed: 13)
        let bad = batch - 2   // in the last part, which a worker runs
        for i in 0..<12 { x[bad * 12 + i] = Float.greatestFiniteMagnitude * (i % 2 == 0 ? 1 : -1) }
        func failure(threads: Int) -> InLoopError? {
            Engine.Threads.set(threads)
            do { _ = try m.runArrays(batch: batch, [x]); return nil } catch { return error }
        }
        let serial = failure(threads: 1)
        let split = failure(threads: 2)
        XCTAssertEqual(m.lastParts, 2)
        XCTAssertEqual(serial?.kind, .nonFinite)
        XCTAssertEqual(split?.kind, .nonFinite)
        XCTAssertEqual(split?.message, serial?.message)
        XCTAssertTrue(serial?.message.contains("sample \(bad + 1)") == true, serial?.message ?? "")
        // the model still runs: a clean batch after the failure
        x[bad * 12..<(bad + 1) * 12] = ArraySlice(repeating: 0.5, count: 12)
        XCTAssertNil(failure(threads: 2))
    }

    /// A second caller thread with a model of its own waits for the pool (one job at a time) and
    /// gets its own, correct outputs.
    func testTwoCallerThreadsShareThePool() throws {
        let a = try mlp(), b = try mlp()
        let batch = splitBatch(a, parts: 2)
        let (whole, _) = try run(a, batch: batch, threads: 2)
        let x = values(batch * 12, seed: 11)
        final class Results: @unchecked Sendable { var y: [[Float]?] = [nil, nil]; var same = [true, true] }
        let r = Results()
        let models = [a, b]
        DispatchQueueless.concurrent(2) { k in
            for _ in 0..<5 {
                let y = try? models[k].runArrays(batch: batch, [x])[0]
                if y != whole[0] { r.same[k] = false }
                r.y[k] = y
            }
        }
        XCTAssertEqual(r.same, [true, true], "each caller thread gets the outputs of a split run on its own")
    }

    /// `ilk_claim_part` hands out parts 1 ..< limit once each, and nothing for a word of another job
    /// (a worker that read an earlier job's tag must not take a part of the next job).
    func testClaimWordHandsOutEachPartOnce() {
        let word = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        defer { word.deallocate() }
        let tag: Int64 = (1 << 47) - 1
        word.pointee = tag << 16 | 1
        XCTAssertEqual(ilk_claim_part(word, tag - 1, 4), -1, "another job's tag")
        XCTAssertEqual((0..<5).map { _ in ilk_claim_part(word, tag, 4) }, [1, 2, 3, -1, -1])
        XCTAssertEqual(word.pointee, tag << 16 | 4, "claims past the limit leave the word alone")
        word.pointee = 0 << 16 | 1
        XCTAssertEqual(ilk_claim_part(word, 0, 1), -1, "a job of one part has nothing to claim")
    }

    /// Every part of every job runs exactly once, on the caller or on a worker, and all have finished
    /// when `run` returns: jobs back to back (workers spinning) and after pauses long enough for the
    /// workers to park (then the caller claims the parts no worker has woken for).
    func testEveryPartRunsOnceWhicheverThreadClaimsIt() {
        final class CountingJob: Engine.ParallelJob, @unchecked Sendable {
            let counts = UnsafeMutablePointer<Int64>.allocate(capacity: Engine.WorkerPool.maxParts)
            let sink = UnsafeMutablePointer<Float>.allocate(capacity: Engine.WorkerPool.maxParts)
            let byCaller = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
            var caller = pthread_self()
            init() {
                counts.initialize(repeating: 0, count: Engine.WorkerPool.maxParts)
                sink.initialize(repeating: 0, count: Engine.WorkerPool.maxParts)
                byCaller.initialize(to: 0)
            }
            deinit { counts.deallocate(); sink.deallocate(); byCaller.deallocate() }
            func runPart(_ k: Int) {
                // a little work, so that parts overlap
                var v: Float = Float(k)
                for i in 0..<2_000 { v = v * 0.999 + Float(i & 7) }
                sink[k] = v
                counts[k] += 1
                if k > 0 && pthread_equal(pthread_self(), caller) != 0 { byCaller.pointee += 1 }
            }
        }
        Engine.Threads.set(4)
        let job = CountingJob()
        job.caller = pthread_self()
        var used = 0
        for round in 0..<400 {
            if round % 50 == 0 { usleep(2_000) }   // workers park (their spin is 50 µs)
            for k in 0..<Engine.WorkerPool.maxParts { job.counts[k] = 0 }
            Engine.WorkerPool.shared.run(job, parts: 4) { m in used = m }
            XCTAssertGreaterThanOrEqual(used, 2, "the pool makes workers on a 1-core machine too")
            for k in 0..<used where job.counts[k] != 1 {
                XCTFail("round \(round): part \(k) ran \(job.counts[k]) times")
            }
            XCTAssertEqual(job.counts[used], 0)
        }
        print("ThreadTests: parts 1… run by the calling thread in 400 jobs: \(job.byCaller.pointee)")
    }
}

/// Runs `body(k)` for k in 0..<n on n pthreads (no Foundation in the core's tests) and joins them.
enum DispatchQueueless {
    static func concurrent(_ n: Int, _ body: @escaping (Int) -> Void) {
        final class Box { let body: (Int) -> Void; let k: Int; init(_ b: @escaping (Int) -> Void, _ k: Int) { body = b; self.k = k } }
        var threads: [pthread_t] = []
        for k in 0..<n {
            var t = pthread_t()
            let box = Unmanaged.passRetained(Box(body, k)).toOpaque()
            pthread_create(&t, nil, { p in
                let b = Unmanaged<Box>.fromOpaque(p!).takeRetainedValue()
                b.body(b.k)
                return nil
            }, box)
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
    }
}
