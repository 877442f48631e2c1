// The protocol the trainer and the derivative entry points use, and the Jacobian over it.

/// What a trainer and the derivative entry points need of a differentiable model: `Network` (layer
/// stack) and `EngineNetwork` (a graph on the one engine) both conform.
public protocol DifferentiableNetwork<Scalar>: AnyObject {
    associatedtype Scalar: Real
    var inputSize: Int { get }
    var outputSize: Int { get }
    var parameters: Buffer<Scalar> { get }
    var gradients: Buffer<Scalar> { get }
    var parameterCount: Int { get }
    /// The batch size the model fixes (nil: any batch).
    var fixedBatch: Int? { get }
    func forward(_ x: UnsafePointer<Scalar>, batch: Int) throws(InLoopError) -> UnsafePointer<Scalar>
    func backward(_ dy: UnsafePointer<Scalar>, batch: Int, parameterGradients: Bool,
                  inputGradient: UnsafeMutablePointer<Scalar>?) throws(InLoopError)
    func tangent(_ dx: UnsafePointer<Scalar>, batch: Int) throws(InLoopError) -> UnsafePointer<Scalar>
    func jacobian(_ x: UnsafePointer<Scalar>, batch: Int, into j: UnsafeMutablePointer<Scalar>) throws(InLoopError)
}

extension Network: DifferentiableNetwork { public typealias Scalar = T }

/// Per-sample Jacobians J[s] = ∂y/∂x, written as `j[(s·nIn + i)·nOut + o]` = ∂y_o/∂x_i (a Fortran
/// array J(n_out, n_in, batch)), for any differentiable network: nIn tangent-linear sweeps or nOut
/// adjoint sweeps, batched, whichever is fewer (the algorithm of `Network.jacobian`). Samples are
/// taken in chunks of at most `maxRows / sweeps` (at least one) so that memory stays bounded. A
/// network whose batch is fixed to 1 is swept one direction at a time.
public func networkJacobian<N: DifferentiableNetwork>(_ net: N, _ x: UnsafePointer<N.Scalar>, batch: Int,
                                                      into j: UnsafeMutablePointer<N.Scalar>,
                                                      maxRows: Int = 4096) throws(InLoopError) {
    typealias T = N.Scalar
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
