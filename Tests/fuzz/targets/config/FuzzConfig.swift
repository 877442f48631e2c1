// libFuzzer target: the YAML/JSON training configuration reader, then a trainer built from it and,
// when its sizes are small, one training step. Built by `make fuzz` (Tests/fuzz/README.md).
import InLoopCore
import InLoopFormats

let maxHarnessValues = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Work space limited well below -rss_limit_mb: the fuzzer checks that the limits are kept, and
    // inputs stay fast (-timeout=1 in a debug build).
    try? Limits.setMaxWorkspaceBytes(perSample: 4 << 20, total: 16 << 20)
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let config = try? TrainingConfigFormat.parse(text) else { return 0 }
    // The configuration written back must read again as the same configuration.
    let again = try? TrainingConfigFormat.parse(TrainingConfigFormat.json(config).description)
    if again != config { fatalError("configuration does not survive a JSON round trip: \(config)") }
    switch config.precision {
    case .float32: step(Float.self, config)
    case .float64: step(Double.self, config)
    }
    return 0
}

func step<T: Real>(_: T.Type, _ config: TrainerConfig) {
    guard let t = try? Trainer<T>(config: config) else { return }
    let nIn = t.network.inputSize, nOut = t.network.outputSize
    let batch = 2
    // the step's cost grows with the parameter count: keep inputs fast (a 1 s timeout in a debug build;
    // CI found a configuration whose Adam step alone took longer)
    guard nIn <= maxHarnessValues, nOut <= maxHarnessValues, t.network.parameterCount <= 1 << 18 else { return }
    let x = (0..<(batch * nIn)).map { T(Double($0 % 5) - 2) }
    let y = (0..<(batch * nOut)).map { T(Double($0 % 3) - 1) }
    _ = try? t.trainStep(x: x, y: y, batch: batch)
}
