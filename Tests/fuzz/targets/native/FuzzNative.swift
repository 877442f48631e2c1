// libFuzzer target: the native model reader (safetensors container + InLoop layer-stack metadata),
// then a first forward pass (float32 and float64) of what loads and a forward + tangent of its
// differentiable view. Built by `make fuzz` (see
// Tests/fuzz/README.md). Any trap, hang or runaway allocation here is a bug: bad bytes must give an
// InLoopError.
import InLoopCore
import InLoopFormats

/// Largest input/output array the harness itself allocates for a forward (the caller's arrays; the
/// engine's own work space is limited by `Limits`).
let maxHarnessValues = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNative(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Work space limited well below -rss_limit_mb: the fuzzer checks that the limits are kept, and
    // inputs stay fast (-timeout=1 in a debug build).
    try? Limits.setMaxWorkspaceBytes(perSample: 4 << 20, total: 16 << 20)
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    guard let model = try? NativeFormat.load(bytes: bytes) else { return 0 }
    for batch in [1, 3] {
        let (nx, o1) = batch.multipliedReportingOverflow(by: model.inputSize)
        let (ny, o2) = batch.multipliedReportingOverflow(by: model.outputSize)
        // (a version-2 graph may have no fixed per-sample size: -1)
        guard !o1, !o2, nx >= 0, ny >= 0, nx <= maxHarnessValues, ny <= maxHarnessValues else { return 0 }
        let x = (0..<nx).map { Float($0 % 7) - 3 }
        _ = try? model.runArrays(batch: batch, [x])
        let x64 = x.map(Double.init)
        var y64 = [Double](repeating: 0, count: ny)
        x64.withUnsafeBufferPointer { xp in y64.withUnsafeMutableBufferPointer { yp in _ = try? model.forward(xp, batch: batch, into: yp) } }
        // The differentiable view of the same model (jvp/vjp entry points): a forward and a tangent.
        if let net = try? EngineNetwork<Float>(model: model) {
            x.withUnsafeBufferPointer { p in
                guard let base = p.baseAddress else { return }
                _ = try? net.forward(base, batch: batch)
                _ = try? net.tangent(base, batch: batch)
            }
        }
    }
    return 0
}
