// inloop-bench: times the engine core's forward pass against the bare BLAS calls it is built on,
// on the same layer shapes, in the same run (ratios, not absolute times, are the result: these
// machines are shared and noisy). Prints a table and `RESULT key value` lines for bench/run_bench.py.
//
//   inloop-bench MODELS_DIR [--l96-only]   (MODELS_DIR holds column_mlp.safetensors and l96.safetensors)
import CBLAS
import InLoopCore
import InLoopFormats
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Median seconds per call of `body`, over `rounds` rounds of `calls` calls each.
func medianPerCall(rounds: Int, calls: Int, _ body: () -> Void) -> Double {
    var times: [Double] = []
    for _ in 0..<rounds {
        let t0 = now()
        for _ in 0..<calls { body() }
        times.append((now() - t0) / Double(calls))
    }
    times.sort()
    return times[times.count / 2]
}

/// Calls per round so that one round takes about `target` seconds.
func calibrate(target: Double, _ body: () -> Void) -> Int {
    var n = 1
    while true {
        let t0 = now()
        for _ in 0..<n { body() }
        let dt = now() - t0
        if dt > target / 4 || n >= 1 << 22 { return max(1, Int(Double(n) * target / max(dt, 1e-9))) }
        n *= 4
    }
}

func fmtTime(_ s: Double) -> String {
    if s < 1e-6 { return "\(Double(Int(s * 1e10)) / 10) ns" }
    if s < 1e-3 { return "\(Double(Int(s * 1e7)) / 10) µs" }
    return "\(Double(Int(s * 1e5)) / 100) ms"
}

func fmt1(_ x: Double) -> String { "\(Double(Int(x * 10)) / 10)" }

/// l96 at batch 1 through `Engine.Model.forward`, with the buffers made once (best of 15 rounds, as the
/// Fortran side measures).
func timeL96(_ dir: String) throws -> Double {
    let l96 = try NativeFormat.load(path: "\(dir)/l96.safetensors")
    let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
    let y = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
    defer { x.deallocate(); y.deallocate() }
    x[0] = 0.7
    let xr = UnsafeBufferPointer(x)
    func call() { _ = try? l96.forward(xr, batch: 1, into: y) }
    call()
    var best = Double.infinity
    for _ in 0..<15 { best = min(best, medianPerCall(rounds: 1, calls: 100_000, call)) }
    return best
}

let args = CommandLine.arguments
let dir = args.count > 1 ? args[1] : "build/models"
struct Random {
    var state: UInt64 = 12345
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Double(state >> 11) / Double(1 << 53)) * 2 - 1
    }
}
var random = Random()

print("InLoop kernels: \(Kernels.cpuLevel) (this CPU: \(Kernels.supportedCPULevel); INLOOP_CPU=baseline|avx2 lowers it)")
do {
    let t = try timeL96(dir)
    print("l96 batch 1, engine core called from Swift: \(fmtTime(t)) per call")
    print("RESULT l96_b1_core_s \(t)")
    if args.contains("--l96-only") { exit(0) }

    let mlp = try NativeFormat.load(path: "\(dir)/column_mlp.safetensors")
    // The dense shapes of the model, for the bare-BLAS reference.
    var shapes: [(Int, Int, UnsafePointer<Float>)] = []
    for w in mlp.graph.layerParameters ?? [] where w.shape.count == 2 {
        shapes.append((w.shape[1], w.shape[0], UnsafePointer(try w.storage.pointer(as: Float.self))))
    }
    let flopsPerSample = shapes.reduce(0) { $0 + 2 * $1.0 * $1.1 }
    let maxWidth = shapes.map { max($0.0, $0.1) }.max() ?? 1

    print("column_mlp: \(mlp.inputSize) → \(mlp.outputSize), \(shapes.count) dense layers, \(flopsPerSample) FLOP/sample; OpenBLAS threads \(openblas_get_num_threads()), core \(String(cString: openblas_get_corename()))")
    print("batch | InLoop forward (core)      | bare BLAS, same shapes      | InLoop / bare")
    print("------|----------------------------|-----------------------------|--------------")
    for batch in [1, 16, 256, 4096] {
        let x = (0..<(batch * mlp.inputSize)).map { _ in random.next() }
        var y = [Float](repeating: 0, count: batch * mlp.outputSize)
        let a = UnsafeMutablePointer<Float>.allocate(capacity: batch * maxWidth)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: batch * maxWidth)
        a.initialize(repeating: 0.5, count: batch * maxWidth)
        b.initialize(repeating: 0, count: batch * maxWidth)
        defer { a.deallocate(); b.deallocate() }
        func engine() {
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in _ = try? mlp.forward(xp, batch: batch, into: yp) }
            }
        }
        func bare() {
            var src = a, dst = b
            for (k, m, w) in shapes {
                if batch == 1 {
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(k), 1, w, Int32(k), src, 1, 0, dst, 1)
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(m), Int32(k),
                                1, src, Int32(k), w, Int32(k), 0, dst, Int32(m))
                }
                swap(&src, &dst)
            }
        }
        engine(); bare()
        let calls = calibrate(target: 0.05, engine)
        // Interleave rounds of the two so both see the same machine conditions.
        var te: [Double] = [], tb: [Double] = []
        for _ in 0..<9 {
            te.append(medianPerCall(rounds: 1, calls: calls, engine))
            tb.append(medianPerCall(rounds: 1, calls: calls, bare))
        }
        te.sort(); tb.sort()
        let e = te[4], r = tb[4]
        mlp.reproducible = true
        let rep = medianPerCall(rounds: 5, calls: max(1, calls / 4), engine)
        mlp.reproducible = false
        print("RESULT column_mlp_b\(batch)_reproducible_s \(rep)")
        let flops = Double(flopsPerSample * batch)
        let pad = { (s: String, n: Int) in s + String(repeating: " ", count: max(0, n - s.count)) }
        print("\(pad(String(batch), 5)) | \(pad(fmtTime(e) + "  " + fmt1(flops / e / 1e9) + " GFLOP/s", 26)) | \(pad(fmtTime(r) + "  " + fmt1(flops / r / 1e9) + " GFLOP/s", 27)) | \(fmt1(100 * r / e))% of bare throughput")
        print("RESULT column_mlp_b\(batch)_engine_s \(e)")
        print("RESULT column_mlp_b\(batch)_bare_s \(r)")
    }

} catch {
    print("inloop-bench: \(error)")
    exit(1)
}
