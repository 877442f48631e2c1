extension Network {
    /// Per-sample Jacobians J[s] = ∂y/∂x at each of `batch` samples, written as `j[(s·nIn + i)·nOut + o]`
    /// = ∂y_o/∂x_i: the memory of a Fortran array J(n_out, n_in, batch). Uses nIn tangent-linear
    /// sweeps or nOut adjoint sweeps, batched, whichever is fewer.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func jacobian(_ x: UnsafePointer<T>, batch: Int, into j: UnsafeMutablePointer<T>) throws(InLoopError) {
        let nIn = inputSize, nOut = outputSize
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        let sweeps = min(nIn, nOut)
        let (big, o) = batch.multipliedReportingOverflow(by: sweeps)
        guard !o, big <= Int(Int32.max) else { throw InLoopError(.invalidArgument, "batch × \(sweeps) is too large for one Jacobian call") }
        // Each sample repeated once per sweep.
        let xr = try Buffer<T>(count: big * nIn)
        for s in 0..<batch {
            for k in 0..<sweeps { (xr.base + (s * sweeps + k) * nIn).update(from: x + s * nIn, count: nIn) }
        }
        _ = try forward(UnsafePointer(xr.base), batch: big)
        if nIn <= nOut {
            // forward mode: dx = e_i gives column i of J, exactly the layout wanted.
            let dx = try Buffer<T>(count: big * nIn)
            for s in 0..<batch { for i in 0..<nIn { dx.base[(s * nIn + i) * nIn + i] = 1 } }
            let dy = try tangent(UnsafePointer(dx.base), batch: big)
            j.update(from: dy, count: big * nOut)
        } else {
            // reverse mode: dy = e_o gives row o of J.
            let dy = try Buffer<T>(count: big * nOut)
            for s in 0..<batch { for k in 0..<nOut { dy.base[(s * nOut + k) * nOut + k] = 1 } }
            let dx = try Buffer<T>(count: big * nIn)
            try backward(UnsafePointer(dy.base), batch: big, parameterGradients: false, inputGradient: dx.base)
            for s in 0..<batch {
                for k in 0..<nOut {
                    let row = dx.base + (s * nOut + k) * nIn
                    for i in 0..<nIn { j[(s * nIn + i) * nOut + k] = row[i] }
                }
            }
        }
    }
}
