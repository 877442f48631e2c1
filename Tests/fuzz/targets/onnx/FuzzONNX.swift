// libFuzzer target: the ONNX reader + the one engine's compiler, then a first forward of what loads
// (batch 1 and 2, every input), and the differentiable plan (EngineNetwork) of single-input models. Built by
// `make fuzz` (Tests/fuzz/README.md). Bad bytes must give an InLoopError: never a trap, a hang or gigabytes.
import InLoopCore
import InLoopFormats

let maxHarnessValues = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Work space limited well below -rss_limit_mb: the fuzzer checks that the limits are kept, and
    // inputs stay fast (-timeout=1 in a debug build).
    try? Limits.setMaxWorkspaceBytes(perSample: 4 << 20, total: 16 << 20)
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    guard let model = try? ONNXReader.load(bytes: bytes, name: "fuzz") else { return 0 }
    for batch in [1, 2] {
        var inputs: [[Float]] = []
        for spec in model.inputSpecs {
            // count −1: a size fixed per call (full-shape entry points), not by the batch
            let (n, o) = batch.multipliedReportingOverflow(by: spec.count)
            guard !o, n >= 0, n <= maxHarnessValues else { return 0 }
            inputs.append((0..<n).map { Float($0 % 5) - 2 })
        }
        for spec in model.outputSpecs {
            let (n, o) = batch.multipliedReportingOverflow(by: spec.count)
            guard !o, n >= 0, n <= maxHarnessValues else { return 0 }
        }
        _ = try? model.runArrays(batch: batch, inputs)
    }
    // The differentiable graph (fine-tuning, jvp/vjp of an ONNX model) compiles the same graph again:
    // a forward and a tangent on one sample (single-input models).
    if model.inputSpecs.count == 1, model.outputSpecs.count == 1, model.inputSize >= 0, model.inputSize <= maxHarnessValues,
       let net = try? EngineNetwork<Float>(model: model) {
        let x = (0..<model.inputSize).map { Float($0 % 5) - 2 }
        x.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress else { return }
            _ = try? net.forward(base, batch: 1)
            _ = try? net.tangent(base, batch: 1)
        }
    }
    return 0
}
