// The Jacobian of a differentiable graph.

/// Per-sample Jacobians J[s] = ∂y/∂x, written as `j[(s·nIn + i)·nOut + o]` = ∂y_o/∂x_i (a Fortran
/// array J(n_out, n_in, batch)): nIn tangent-linear sweeps or nOut adjoint sweeps, batched,
/// whichever is fewer. Samples are
/// taken in chunks of at most `maxRows / sweeps` (at least one) so that memory stays bounded. A
/// network whose batch is fixed to 1 is swept one direction at a time.
func networkJacobian<T: Real>(_ net: EngineNetwork<T>, _ x: UnsafePointer<T>, batch: Int,
                              into j: UnsafeMutablePointer<T>, maxRows: Int = 4096) throws(InLoopError) {
    let nIn = net.inputSize, nOut = net.outputSize
    guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
    let sweeps = min(nIn, nOut)
    if let fixed = net.fixedBatch {
        guard fixed == 1 else {
            throw InLoopError(.unsupported, "the Jacobian of a graph with a fixed batch of \(fixed) is not available")
        }
        let dv = try Buffer<T>(count: max(nIn, nOut)), dx = try Buffer<T>(count: nIn)
        for s in 0..<batch {
            _ = try net.forward(x + s * nIn, batch: 1)
            for k in 0..<sweeps {
                dv.zero()
                dv.base[k] = 1
                if nIn <= nOut {
                    let dy = try net.tangent(UnsafePointer(dv.base), batch: 1)
                    (j + (s * nIn + k) * nOut).update(from: dy, count: nOut)
                } else {
                    try net.backward(UnsafePointer(dv.base), batch: 1, parameterGradients: false, inputGradient: dx.base)
                    for i in 0..<nIn { j[(s * nIn + i) * nOut + k] = dx.base[i] }
                }
            }
        }
        return
    }
    let chunk = min(batch, max(1, maxRows / sweeps))
    let big = chunk * sweeps
    guard big <= Int(Int32.max) else { throw InLoopError(.invalidArgument, "\(sweeps) Jacobian sweeps are too many for one call") }
    let xr = try Buffer<T>(count: try Limits.arrayCount(batch: big, perSample: nIn))
    let seed = try Buffer<T>(count: try Limits.arrayCount(batch: big, perSample: nIn <= nOut ? nIn : nOut))
    let dx = try Buffer<T>(count: nIn <= nOut ? 1 : try Limits.arrayCount(batch: big, perSample: nIn))
    var first = 0
    while first < batch {
        let c = min(chunk, batch - first), rows = c * sweeps
        let xc = x + first * nIn, jc = j + first * nIn * nOut
        for s in 0..<c {
            for k in 0..<sweeps { (xr.base + (s * sweeps + k) * nIn).update(from: xc + s * nIn, count: nIn) }
        }
        _ = try net.forward(UnsafePointer(xr.base), batch: rows)
        if nIn <= nOut {
            // forward mode: dx = e_i gives column i of J, exactly the layout wanted.
            seed.base.update(repeating: 0, count: rows * nIn)
            for s in 0..<c { for i in 0..<nIn { seed.base[(s * nIn + i) * nIn + i] = 1 } }
            let dy = try net.tangent(UnsafePointer(seed.base), batch: rows)
            jc.update(from: dy, count: rows * nOut)
        } else {
            // reverse mode: dy = e_o gives row o of J.
            seed.base.update(repeating: 0, count: rows * nOut)
            for s in 0..<c { for k in 0..<nOut { seed.base[(s * nOut + k) * nOut + k] = 1 } }
            try net.backward(UnsafePointer(seed.base), batch: rows, parameterGradients: false, inputGradient: dx.base)
            for s in 0..<c {
                for k in 0..<nOut {
                    let row = dx.base + (s * nOut + k) * nIn
                    for i in 0..<nIn { jc[(s * nIn + i) * nOut + k] = row[i] }
                }
            }
        }
        first += c
    }
}
