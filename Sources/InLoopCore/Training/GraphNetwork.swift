/// A differentiable executor for a `Graph` (the IR the ONNX reader produces), in scalar type `T`:
/// forward keeping what the derivatives need, reverse mode (gradients of the parameters and of the
/// input) and forward mode (tangent-linear), with the public surface of `Network<T>` so a trainer and
/// the derivative entry points can use either (see `DifferentiableNetwork`).
///
/// **Parameters.** The float constants of the graph that feed a trainable slot become one flat
/// `parameters` buffer (and a matching `gradients` buffer); every other constant stays a constant.
/// Trainable slots, by default:
/// - Gemm: B and C; MatMul: B;
/// - Conv: W and B;
/// - BatchNormalization: scale and B (input_mean / input_var stay constants: inference semantics);
/// - LayerNormalization: Scale and B;
/// - Add(MatMul output, constant) when that MatMul's B is trainable and the MatMul output feeds only
///   this Add: the constant is the MatMul's bias (how exporters write `Linear` on rank > 2 inputs).
/// Only graph constants (initializers) can be parameters; a trainable slot fed by a computed value
/// (e.g. `Transpose(W)`) is differentiated through, but its source constant stays constant. Pass
/// `trainable:` to choose the set of parameter names yourself.
///
/// **Order.** Parameters are laid out in the order the nodes first use them, nodes taken in the
/// graph's topological order (Kahn's algorithm from the node list: for an exported graph, its node
/// order) and, within a node, by input position; each parameter's values row-major in the graph's
/// own layout (e.g. a Gemm B as stored, `[out, in]` when transB = 1). `parameterInfo` lists names,
/// shapes and offsets.
///
/// **Plans.** The graph is compiled once per batch size (shapes concrete, integer shape
/// computations evaluated) into a list of steps; a few plans are cached. Every intermediate value
/// keeps its own buffer (backward needs them); reshape-like ops (Reshape, Flatten, Squeeze,
/// Unsqueeze, Identity, Dropout, Cast to float) alias their input. Steady-state calls on a cached
/// batch size allocate nothing.
///
/// One graph input and one graph output (both with the batch as axis 0) are supported.
public final class GraphNetwork<T: Real> {
    /// One trainable tensor: its graph constant name, shape and place in `parameters`.
    public struct ParameterInfo: Equatable, Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
    }

    /// The graph as given (its constants hold the initial parameter values).
    public let graph: Graph
    public let inputName: String
    public let outputName: String
    /// Per-sample shapes (without the batch axis).
    public let inputShape: [Int]
    public private(set) var outputShape: [Int] = []
    /// Values per sample, flattened.
    public let inputSize: Int
    public private(set) var outputSize = 0
    public let parameters: Buffer<T>
    /// d(loss)/d(parameters) after `backward(..., parameterGradients: true)`.
    public let gradients: Buffer<T>
    public var parameterCount: Int { parameters.count }
    public let parameterInfo: [ParameterInfo]
    /// The batch size the graph input fixes, or nil when axis 0 is symbolic.
    public let fixedBatch: Int?
    /// Plans kept (one per batch size).
    public let maxCachedPlans: Int

    let order: [Int]
    let parameterOffsets: [String: Int]
    /// Graph constants converted to `T`, shared by all plans.
    var constantCache: [String: Buffer<T>] = [:]
    private var plans: [GraphPlan<T>] = []
    private var clock = 0
    private var current: GraphPlan<T>? = nil
    private var lastBatch = 0

    /// Ops `GraphNetwork` differentiates (ONNX spelling), for messages.
    public static var supportedOps: [String] {
        ["Abs", "Add", "AveragePool", "BatchNormalization", "Cast (to float)", "Clip", "Concat", "Conv", "Div",
         "Dropout", "Elu", "Erf", "Exp", "Flatten", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
         "Identity", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "MatMul", "MaxPool", "Mul", "Neg",
         "Pow", "Reciprocal", "Relu", "Reshape", "Selu", "Sigmoid", "Softmax", "Softplus", "Softsign", "Sqrt",
         "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
         "and shape computations known at load time (Shape, Constant, ConstantOfShape, Range, Gather/Slice/Concat/... on integers)"]
    }

    /// - Parameters:
    ///   - trainable: names of the float constants to train; nil for the default rule (type doc).
    ///   - parameters: initial values (count `parameterCount`) instead of the graph's constants.
    public init(graph: Graph, trainable: Set<String>? = nil, parameters initial: [T]? = nil,
                maxCachedPlans: Int = 4) throws(InLoopError) {
        self.graph = graph
        self.maxCachedPlans = max(1, maxCachedPlans)
        guard graph.inputs.count == 1 else {
            throw InLoopError(.unsupported, "GraphNetwork differentiates graphs with exactly one input; this graph has \(graph.inputs.count) (\(graph.inputs.map { "'\($0.name)'" }.joined(separator: ", ")))")
        }
        guard graph.outputs.count == 1 else {
            throw InLoopError(.unsupported, "GraphNetwork differentiates graphs with exactly one output; this graph has \(graph.outputs.count) (\(graph.outputs.map { "'\($0)'" }.joined(separator: ", ")))")
        }
        let input = graph.inputs[0]
        guard let d0 = input.dims.first else {
            throw InLoopError(.unsupported, "graph input '\(input.name)' is a scalar; a batch axis (axis 0) is needed")
        }
        var shape: [Int] = []
        for (i, d) in input.dims.enumerated().dropFirst() {
            guard let d else {
                throw InLoopError(.unsupported, "graph input '\(input.name)' has a symbolic dimension on axis \(i); only axis 0 (the batch) may be symbolic")
            }
            guard d >= 1 else { throw InLoopError(.format, "graph input '\(input.name)' has dimension \(d) on axis \(i)") }
            shape.append(d)
        }
        if let d0, d0 < 1 { throw InLoopError(.format, "graph input '\(input.name)' has batch dimension \(d0)") }
        fixedBatch = d0
        inputName = input.name
        outputName = graph.outputs[0]
        inputShape = shape
        inputSize = try Tensor.elementCount(shape)
        order = try GraphModel.topologicalOrder(graph)

        // Parameters, in order of first use.
        let names = try GraphNetwork.trainableNames(graph, order: order, explicit: trainable)
        var infos: [ParameterInfo] = []
        var offsets: [String: Int] = [:]
        var total = 0
        for name in names {
            guard case .float(let t)? = graph.constants[name] else { continue }
            infos.append(ParameterInfo(name: name, shape: t.shape, offset: total, count: t.count))
            offsets[name] = total
            total += t.count
        }
        parameterInfo = infos
        parameterOffsets = offsets
        parameters = try Buffer<T>(count: total)
        gradients = try Buffer<T>(count: total)
        if let initial {
            guard initial.count == total else {
                throw InLoopError(.sizeMismatch, "the graph has \(total) trainable values, \(initial.count) given")
            }
            for (i, v) in initial.enumerated() { parameters.base[i] = v }
        } else {
            for info in infos {
                guard case .float(let t)? = graph.constants[info.name] else { continue }
                let src = t.storage.base, dst = parameters.base + info.offset
                for i in 0..<info.count { dst[i] = T(src[i]) }
            }
        }

        // Validation compiles: unsupported ops and shape errors surface here.
        let first = try plan(batch: fixedBatch ?? 1)
        outputShape = first.outputShape
        outputSize = try Tensor.elementCount(outputShape)
        if fixedBatch == nil {
            let second = try plan(batch: 2)
            guard second.outputShape == outputShape else {
                throw InLoopError(.unsupported, "graph output '\(outputName)' has per-sample shape \(Tensor.format(outputShape)) at batch 1 but \(Tensor.format(second.outputShape)) at batch 2; the per-sample shape must not depend on the batch")
            }
        }
    }

    /// A differentiable copy of an ONNX-derived inference model (its float32 constants as initial
    /// parameters).
    public convenience init(model: GraphModel, trainable: Set<String>? = nil) throws(InLoopError) {
        try self.init(graph: model.graph, trainable: trainable)
    }

    /// The default trainable names (type documentation), or the explicit set validated, in order of
    /// first use.
    static func trainableNames(_ graph: Graph, order: [Int], explicit: Set<String>?) throws(InLoopError) -> [String] {
        func isFloatConstant(_ name: String) -> Bool {
            if case .float? = graph.constants[name] { return true }
            return false
        }
        var wanted = Set<String>()
        if let explicit {
            for name in explicit.sorted() {
                guard isFloatConstant(name) else {
                    throw InLoopError(.invalidArgument, "trainable '\(name)' is not a float constant (initializer) of the graph")
                }
            }
            wanted = explicit
        } else {
            var uses: [String: Int] = [:]
            for node in graph.nodes { for i in node.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
            for o in graph.outputs { uses[o, default: 0] += 1 }
            var matMulOutputs: [String: Bool] = [:]   // MatMul output → its B is trainable
            for i in order {
                let node = graph.nodes[i]
                var slots: [Int] = []
                switch node.op {
                case .gemm: slots = [1, 2]
                case .matMul:
                    slots = [1]
                    if node.inputs.count > 1, let out = node.outputs.first {
                        matMulOutputs[out] = isFloatConstant(node.inputs[1])
                    }
                case .conv: slots = [1, 2]
                case .batchNormalization: slots = [1, 2]
                case .layerNormalization: slots = [1, 2]
                case .binary(.add) where node.inputs.count == 2:
                    for k in 0..<2 {
                        let other = node.inputs[1 - k]
                        if matMulOutputs[other] == true, uses[other] == 1, isFloatConstant(node.inputs[k]) { slots = [k] }
                    }
                default: break
                }
                for s in slots where s < node.inputs.count && isFloatConstant(node.inputs[s]) { wanted.insert(node.inputs[s]) }
            }
        }
        var ordered: [String] = []
        var seen = Set<String>()
        for i in order {
            for name in graph.nodes[i].inputs where wanted.contains(name) && !seen.contains(name) {
                seen.insert(name)
                ordered.append(name)
            }
        }
        if let explicit {
            let unused = explicit.subtracting(seen)
            guard unused.isEmpty else {
                throw InLoopError(.invalidArgument, "trainable constant\(unused.count == 1 ? "" : "s") \(unused.sorted().map { "'\($0)'" }.joined(separator: ", ")) \(unused.count == 1 ? "is" : "are") used by no node")
            }
        }
        return ordered
    }

    // MARK: Plans

    func plan(batch: Int) throws(InLoopError) -> GraphPlan<T> {
        guard batch >= 1 else { throw InLoopError(.invalidArgument, "batch must be at least 1, got \(batch)") }
        if let f = fixedBatch, batch != f {
            throw InLoopError(.sizeMismatch, "graph input '\(inputName)' fixes the batch to \(f); got batch \(batch)")
        }
        clock &+= 1
        for p in plans where p.batch == batch { p.lastUse = clock; return p }
        var builder = try GraphPlanBuilder<T>(network: self, batch: batch)
        let p = try builder.build()
        if plans.count >= maxCachedPlans, let victim = plans.indices.min(by: { plans[$0].lastUse < plans[$1].lastUse }) {
            if plans[victim] === current { current = nil }
            plans.remove(at: victim)
        }
        p.lastUse = clock
        plans.append(p)
        return p
    }

    /// Batch sizes with a compiled plan.
    public var cachedBatchSizes: [Int] { plans.map { $0.batch } }

    /// Constant `name` of the graph in `T` (converted once).
    func constantBuffer(_ name: String, _ t: Tensor) throws(InLoopError) -> Buffer<T> {
        if let b = constantCache[name] { return b }
        let b = try Buffer<T>(count: t.count)
        for i in 0..<t.count { b.base[i] = T(t.storage.base[i]) }
        constantCache[name] = b
        return b
    }

    // MARK: Forward

    /// Runs the graph on `batch` samples (`batch × inputSize` values, sample after sample) and keeps
    /// what `backward` and `tangent` need. Returns the output (`batch × outputSize`), valid until the
    /// next call. `x` must stay valid and unchanged until `backward`/`tangent` have run.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    @discardableResult
    public func forward(_ x: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        let p = try plan(batch: batch)
        current = p
        lastBatch = batch
        p.runForward(x, parameters: parameters.base)
        return UnsafePointer(p.values[p.outputStorage])
    }

    // MARK: Reverse mode

    /// Back-propagates `dy` (`batch × outputSize`, d loss/d output) through the last `forward`.
    /// With `parameterGradients`, `gradients` receives d loss/d parameters (overwritten); with
    /// `inputGradient`, d loss/d input is written there (`batch × inputSize`).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(_ dy: UnsafePointer<T>, batch: Int, parameterGradients: Bool,
                         inputGradient: UnsafeMutablePointer<T>? = nil) throws(InLoopError) {
        guard let p = current, batch == lastBatch, p.batch == batch else {
            throw InLoopError(.invalidArgument, "backward needs a forward on the same batch first")
        }
        try p.runBackward(dy, parameterGradients: parameterGradients, gradients: gradients, inputGradient: inputGradient)
    }

    // MARK: Forward mode

    /// Tangent-linear model at the point of the last `forward`: dy = J dx for each sample
    /// (`dx`: `batch × inputSize`). Returns dy (`batch × outputSize`), valid until the next call.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func tangent(_ dx: UnsafePointer<T>, batch: Int) throws(InLoopError) -> UnsafePointer<T> {
        guard let p = current, batch == lastBatch, p.batch == batch else {
            throw InLoopError(.invalidArgument, "tangent needs a forward on the same batch first")
        }
        return try p.runTangent(dx)
    }

    /// Per-sample Jacobians, laid out as `Network.jacobian` (a Fortran array J(n_out, n_in, batch)).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func jacobian(_ x: UnsafePointer<T>, batch: Int, into j: UnsafeMutablePointer<T>) throws(InLoopError) {
        try networkJacobian(self, x, batch: batch, into: j)
    }

    // MARK: Back to inference

    /// `graph` with every parameter constant replaced by the current values (rounded to float32):
    /// give it to `GraphModel(graph:)` to run the fine-tuned model for inference.
    public func writeParameters(into graph: Graph) throws(InLoopError) -> Graph {
        var g = graph
        for info in parameterInfo {
            guard let old = g.constants[info.name], old.shape == info.shape else {
                throw InLoopError(.sizeMismatch, "the graph has no float constant '\(info.name)' of shape \(Tensor.format(info.shape))")
            }
            let p = parameters.base + info.offset
            g.constants[info.name] = .float(try Tensor(shape: info.shape, values: (0..<info.count).map { p[$0].float }))
        }
        return g
    }

    /// The graph with the current parameters.
    public func trainedGraph() throws(InLoopError) -> Graph { try writeParameters(into: graph) }

    /// An inference model of the graph with the current parameters.
    public func inferenceModel(name: String = "") throws(InLoopError) -> GraphModel {
        try GraphModel(graph: try trainedGraph(), name: name.isEmpty ? graph.name : name)
    }
}

// MARK: - One protocol for both differentiable executors

/// What a trainer and the derivative entry points need of a differentiable model: `Network` (layer
/// stack) and `GraphNetwork` (graph) both conform.
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
extension GraphNetwork: DifferentiableNetwork { public typealias Scalar = T }

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
