// libFuzzer target: the training checkpoint reader (safetensors + JSON state + configuration), then
// one training step of the restored trainer when its sizes are small. Built by `make fuzz`.
import InLoopCore
import InLoopFormats

let maxHarnessValues = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Work space limited well below -rss_limit_mb: the fuzzer checks that the limits are kept, and
    // inputs stay fast (-timeout=1 in a debug build).
    try? Limits.setMaxWorkspaceBytes(perSample: 4 << 20, total: 16 << 20)
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    guard let restored = try? Checkpoint.load(bytes: bytes) else { return 0 }
    switch restored {
    case .float32(let t): step(t)
    case .float64(let t): step(t)
    }
    return 0
}

func step<T: Real>(_ t: Trainer<T>) {
    let nIn = t.network.inputSize, nOut = t.network.outputSize
    let batch = 2
    guard nIn <= maxHarnessValues, nOut <= maxHarnessValues else { return }
    let x = (0..<(batch * nIn)).map { T(Double($0 % 5) - 2) }
    let y = (0..<(batch * nOut)).map { T(Double($0 % 3) - 1) }
    _ = try? t.trainStep(x: x, y: y, batch: batch)
    _ = try? Checkpoint.serialize(t)
}
