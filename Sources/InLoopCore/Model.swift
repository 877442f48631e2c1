import Synchronization

/// A layer-stack model ready to run: validated layers, a compiled plan, and its workspace.
///
/// Inputs and outputs are batches of samples: `batch` rows of `inputSize` values, row after row
/// (the layout of a Fortran array `x(inputSize, batch)`). Compute is float32; the float64 entry
/// points convert on the way in and out.
///
/// A model is not meant to be run from two threads at once: a concurrent call fails with `.busy`
/// instead of corrupting the shared workspace.
public final class Model: @unchecked Sendable {  // shared use is guarded by `busy`
    public let name: String
    public let inputName: String
    public let outputName: String
    public let inputSize: Int
    public let outputSize: Int
    public let layers: [Layer]
    /// When true, `forward` fails with `.nonFinite` if the input or the output holds NaN or ±Inf.
    public var checkFinite = false
    /// When true, every sample's output is bitwise independent of how samples are batched: of the
    /// batch size, of the sample's position in the batch, hence of the MPI decomposition. Dense
    /// layers then run one matrix-vector product per sample instead of one matrix-matrix product
    /// (slower at large batches). When false (default), results are bitwise reproducible from run to
    /// run for the same batching, but a sample's bits may change with its position in the batch,
    /// because optimised GEMM kernels order their sums by tile (differences ~1e-7 relative).
    public var reproducible = false

    /// The model as a graph, compiled once for every batch size, and run by the one engine.
    public let graph: Engine.Graph
    let executor: Engine.Executor<Float>
    /// The float64 entry points' float32 copies of x and y (grown to the largest batch seen).
    private var staging: (x: FloatBuffer, y: FloatBuffer)? = nil
    private let busy = Atomic<Bool>(false)

    public init(name: String = "", inputName: String = "x", outputName: String = "y",
                inputSize: Int, layers: [Layer]) throws(InLoopError) {
        guard inputSize >= 1 else {
            throw InLoopError(.format, "model input size must be at least 1, got \(inputSize)")
        }
        try Limits.dimension(inputSize, "model input size", min: 1)
        var size = inputSize
        for (i, layer) in layers.enumerated() {
            size = try layer.outputSize(input: size, path: "layers[\(i)]")
        }
        guard size >= 1 else { throw InLoopError(.format, "model output size must be at least 1, got \(size)") }
        self.name = name
        self.inputName = inputName
        self.outputName = outputName
        self.inputSize = inputSize
        self.outputSize = size
        self.layers = layers
        graph = try Engine.Graph(layers: layers, inputSize: inputSize, name: name, inputName: inputName, outputName: outputName)
        let plan = try Engine.compile(graph)
        // The work space of one sample (the plan's and the float64 path's input and output), checked at load.
        guard let arena = plan.workspaceElements(at: 1) else { throw InLoopError(.outOfMemory, "the work space size overflows") }
        let perSample = try Limits.sum(try Limits.sum(arena, inputSize, "work space per sample"), size, "work space per sample")
        try Limits.workspace(floats: perSample, batch: 1)
        executor = try Engine.Executor<Float>(plan: plan, graph: graph)
    }

    public var parameterCount: Int { layers.reduce(0) { $0 + $1.parameterCount } }
    public var flopsPerSample: Int { layers.reduce(0) { $0 + $1.flopsPerSample } }

    // MARK: - Forward

    /// Runs the model on `batch` samples of `x` (at least `batch × inputSize` values) and writes
    /// `batch × outputSize` values to `y`. `y` is not touched when an argument is wrong.
    public func forward(_ x: UnsafeBufferPointer<Float>, batch: Int,
                        into y: UnsafeMutableBufferPointer<Float>) throws(InLoopError) {
        let (nx, ny) = try checkSizes(batch: batch, xCount: x.count, yCount: y.count)
        guard let xBase = x.baseAddress, let yBase = y.baseAddress else {
            throw InLoopError(.nullPointer, "input or output buffer is null")
        }
        // The float32 path reads x while it writes y; the two must not share memory.
        let xStart = UnsafeRawPointer(xBase), yStart = UnsafeRawPointer(yBase)
        if xStart < yStart + 4 * ny, yStart < xStart + 4 * nx {
            throw InLoopError(.invalidArgument, "input and output arrays overlap; pass a separate output array")
        }
        try acquire()
        defer { release() }
        if checkFinite, !Kernels.allFinite(xBase, count: nx) {
            throw InLoopError(.nonFinite, nonFiniteMessage("input", xBase, count: nx))
        }
        try run(batch: batch, UnsafePointer(xBase), yBase)
        if checkFinite, !Kernels.allFinite(yBase, count: ny) {
            throw InLoopError(.nonFinite, nonFiniteMessage("output", yBase, count: ny))
        }
    }

    /// Float64 variant: converts `x` to float32 once into the workspace and the float32 result into `y`.
    /// `x` is fully read before `y` is written, so the two may be the same array.
    public func forward(_ x: UnsafeBufferPointer<Double>, batch: Int,
                        into y: UnsafeMutableBufferPointer<Double>) throws(InLoopError) {
        let (nx, ny) = try checkSizes(batch: batch, xCount: x.count, yCount: y.count)
        guard let xBase = x.baseAddress, let yBase = y.baseAddress else {
            throw InLoopError(.nullPointer, "input or output buffer is null")
        }
        try acquire()
        defer { release() }
        if checkFinite, !Kernels.allFinite(xBase, count: nx) {
            throw InLoopError(.nonFinite, nonFiniteMessage("input", xBase, count: nx))
        }
        if staging == nil || staging!.x.count < nx || staging!.y.count < ny {
            try Limits.workspace(floats: try Limits.sum(nx, ny, "float64 staging"), batch: batch)
            staging = (try FloatBuffer(count: nx), try FloatBuffer(count: ny))
        }
        guard let (xs, ys) = staging else { throw InLoopError(.internal, "staging was not set up") }
        let xf = xs.base, yf = ys.base
        for i in 0..<nx { xf[i] = Float(xBase[i]) }
        try run(batch: batch, UnsafePointer(xf), yf)
        for i in 0..<ny { yBase[i] = Double(yf[i]) }
        if checkFinite, !Kernels.allFinite(yBase, count: ny) {
            throw InLoopError(.nonFinite, nonFiniteMessage("output", yBase, count: ny))
        }
    }

    /// Convenience for Swift callers and tests: returns a new array of `batch × outputSize` values.
    public func forward(_ x: [Float], batch: Int) throws(InLoopError) -> [Float] {
        var y = [Float](repeating: 0, count: max(batch, 0) * outputSize)
        try x.withUnsafeBufferPointer { (xp) throws(InLoopError) in
            try y.withUnsafeMutableBufferPointer { (yp) throws(InLoopError) in try forward(xp, batch: batch, into: yp) }
        }
        return y
    }

    public func forward(_ x: [Double], batch: Int) throws(InLoopError) -> [Double] {
        var y = [Double](repeating: 0, count: max(batch, 0) * outputSize)
        try x.withUnsafeBufferPointer { (xp) throws(InLoopError) in
            try y.withUnsafeMutableBufferPointer { (yp) throws(InLoopError) in try forward(xp, batch: batch, into: yp) }
        }
        return y
    }

    // MARK: - Internals

    private func checkSizes(batch: Int, xCount: Int, yCount: Int) throws(InLoopError) -> (Int, Int) {
        guard batch >= 1, batch <= Int(Int32.max) else {
            throw InLoopError(.invalidArgument, "batch must be between 1 and \(Int32.max), got \(batch)")
        }
        let (nx, o1) = batch.multipliedReportingOverflow(by: inputSize)
        let (ny, o2) = batch.multipliedReportingOverflow(by: outputSize)
        guard !o1, !o2 else { throw InLoopError(.invalidArgument, "batch \(batch) is too large") }
        guard xCount >= nx else {
            throw InLoopError(.sizeMismatch, "input has \(xCount) values; batch \(batch) × \(inputSize) inputs needs \(nx)")
        }
        guard yCount >= ny else {
            throw InLoopError(.sizeMismatch, "output has room for \(yCount) values; batch \(batch) × \(outputSize) outputs needs \(ny)")
        }
        return (nx, ny)
    }

    public func setOptions(checkFinite: Bool?, reproducible: Bool?) throws(InLoopError) {
        try acquire()
        defer { release() }
        if let checkFinite { self.checkFinite = checkFinite }
        if let reproducible { self.reproducible = reproducible }
    }

    private func acquire() throws(InLoopError) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw InLoopError(.busy, "model is being run by another thread; use one model handle per thread")
        }
    }

    private func release() { busy.store(false, ordering: .releasing) }

    private func nonFiniteMessage<T: BinaryFloatingPoint>(_ what: String, _ p: UnsafePointer<T>, count: Int) -> String {
        var i = 0
        while i < count, p[i].isFinite { i += 1 }
        let per = what == "input" ? inputSize : outputSize
        return "\(what) value \(i % per + 1) of column \(i / per + 1) is \(p[i]) (not finite)"
    }

    /// Runs the compiled graph on float32 arrays (the executor binds its work space to the batch).
    private func run(batch n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) throws(InLoopError) {
        executor.reproducible = reproducible
        var xs = x, ys = y
        try withUnsafePointer(to: &xs) { (xp) throws(InLoopError) in
            try withUnsafePointer(to: &ys) { (yp) throws(InLoopError) in
                try executor.forward(n, inputs: UnsafeBufferPointer(start: xp, count: 1), outputs: UnsafeBufferPointer(start: yp, count: 1))
            }
        }
    }
}
