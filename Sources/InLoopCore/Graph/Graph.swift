/// The format-neutral graph IR: what a model file reader (ONNX today) produces and the graph
/// compiler consumes. No protobuf or file-format types appear here; attributes are parsed by the
/// reader into typed `Op` payloads, with opset differences already normalised.
///
/// Values are named. Empty input names mean "optional input absent". Only axis 0 of a graph input may
/// be the dynamic batch; every other dimension is fixed.

/// An integer tensor known at load time (ONNX int64/int32/bool initializers, shape computations).
public struct IntTensor: Equatable, Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let values: [Int]

    public init(shape: [Int], values: [Int]) throws(InLoopError) {
        let n = try Tensor.elementCount(shape)
        guard n == values.count else {
            throw InLoopError(.format, "integer tensor of shape \(Tensor.format(shape)) needs \(n) values, got \(values.count)")
        }
        self.shape = shape
        self.values = values
    }

    /// A rank-1 tensor.
    public init(_ values: [Int]) {
        shape = [values.count]
        self.values = values
    }

    /// A scalar (rank 0).
    public init(scalar v: Int) {
        shape = []
        values = [v]
    }

    public var count: Int { values.count }
    public var description: String { "int\(Tensor.format(shape)) \(values.count <= 8 ? Tensor.format(values) : "")" }
}

/// A constant of the graph: float data (every floating type of a file is converted to float32) or
/// integers (shape tensors, indices).
public enum GraphConstant: CustomStringConvertible {
    case float(Tensor)
    case int(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): return t.shape
        case .int(let t): return t.shape
        }
    }

    public var description: String {
        switch self {
        case .float(let t): return "float\(Tensor.format(t.shape))"
        case .int(let t): return t.description
        }
    }
}

/// ONNX `auto_pad`.
public enum AutoPad: Equatable, Sendable {
    case notSet, sameUpper, sameLower, valid
}

/// Conv and ConvTranspose attributes (kernel shape taken from the weight when nil; pads are
/// [begin..., end...] as in ONNX; nil lists mean the ONNX defaults).
public struct ConvAttributes: Equatable, Sendable {
    public var kernelShape: [Int]?
    public var strides: [Int]?
    public var dilations: [Int]?
    public var pads: [Int]?
    public var group: Int
    public var autoPad: AutoPad
    /// ConvTranspose only.
    public var outputPadding: [Int]?
    /// ConvTranspose only: explicit output spatial shape (pads are then derived from it).
    public var outputShape: [Int]?

    public init(kernelShape: [Int]? = nil, strides: [Int]? = nil, dilations: [Int]? = nil, pads: [Int]? = nil,
                group: Int = 1, autoPad: AutoPad = .notSet, outputPadding: [Int]? = nil, outputShape: [Int]? = nil) {
        self.kernelShape = kernelShape; self.strides = strides; self.dilations = dilations; self.pads = pads
        self.group = group; self.autoPad = autoPad; self.outputPadding = outputPadding; self.outputShape = outputShape
    }
}

/// MaxPool / AveragePool attributes.
public struct PoolAttributes: Equatable, Sendable {
    public var kernelShape: [Int]
    public var strides: [Int]?
    public var dilations: [Int]?
    public var pads: [Int]?
    public var autoPad: AutoPad
    public var ceilMode: Bool
    /// AveragePool only.
    public var countIncludePad: Bool

    public init(kernelShape: [Int], strides: [Int]? = nil, dilations: [Int]? = nil, pads: [Int]? = nil,
                autoPad: AutoPad = .notSet, ceilMode: Bool = false, countIncludePad: Bool = false) {
        self.kernelShape = kernelShape; self.strides = strides; self.dilations = dilations; self.pads = pads
        self.autoPad = autoPad; self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
    }
}

/// Resize (mode nearest) / Upsample attributes. The reader normalises the inputs of every opset to
/// [X, scales, sizes] (absent ones empty); `axes` restricts scales/sizes to those axes (opset 18).
public struct ResizeAttributes: Equatable, Sendable {
    public var coordinateMode: ResizeCoordinateMode
    public var nearestMode: ResizeNearestMode
    public var axes: [Int]?

    public init(coordinateMode: ResizeCoordinateMode = .halfPixel, nearestMode: ResizeNearestMode = .roundPreferFloor,
                axes: [Int]? = nil) {
        self.coordinateMode = coordinateMode; self.nearestMode = nearestMode; self.axes = axes
    }
}

/// Slice parameters given as attributes (ONNX opset < 10); from opset 10 they are inputs 1...4.
public struct SliceAttributes: Equatable, Sendable {
    public var starts: [Int]
    public var ends: [Int]
    public var axes: [Int]?

    public init(starts: [Int], ends: [Int], axes: [Int]? = nil) {
        self.starts = starts; self.ends = ends; self.axes = axes
    }
}

/// Element type a Cast converts to, as the compiler sees it.
public enum ElementKind: Equatable, Sendable {
    case float, int
}

/// A typed graph operation. Inputs that ONNX passes as tensors but that must be known at compile time
/// (Reshape's shape, Slice's starts/ends/axes/steps, Squeeze/Unsqueeze axes, Split sizes, Clip bounds,
/// Resize scales/sizes) stay inputs; the compiler resolves them and fails clearly when they are not
/// compile-time constants.
public enum Op {
    /// Y = alpha·op(A)·op(B) + beta·C; inputs A, B, optional C.
    case gemm(alpha: Float, beta: Float, transA: Bool, transB: Bool)
    /// NumPy matmul; inputs A, B.
    case matMul
    /// Broadcasting element-wise binary op (floats; integers at compile time).
    case binary(BinaryOp)
    /// A fusable activation (Relu, LeakyRelu, Tanh, Sigmoid, Gelu, Softplus, Elu, ...).
    case activation(Activation)
    /// Any other element-wise function (Erf, Exp, Log, Sqrt, Selu, Neg, ...).
    case unary(UnaryFunction)
    /// Clip; bounds from the attributes (opset < 11) or from inputs 1 and 2 (either may be absent).
    case clip(min: Float?, max: Float?)
    /// Softmax / LogSoftmax over `axis`; `coerce2D` for opset < 13 (over all axes from `axis` on).
    case softmax(axis: Int, coerce2D: Bool, log: Bool)
    /// Identity, and Dropout at inference.
    case identity
    case flatten(axis: Int)
    /// Input 1 is the shape.
    case reshape(allowZero: Bool)
    /// nil: reverse the axes.
    case transpose(perm: [Int]?)
    case concat(axis: Int)
    /// Sizes from the attribute (opset < 13), else from input 1, else equal parts (one per output).
    case split(axis: Int, sizes: [Int]?)
    /// nil: starts, ends, axes, steps are inputs 1...4 (opset ≥ 10).
    case slice(SliceAttributes?)
    /// nil axes: from input 1 (opset ≥ 13), or (Squeeze) every size-1 axis when absent.
    case squeeze(axes: [Int]?)
    case unsqueeze(axes: [Int]?)
    /// Indices (input 1) must be a compile-time constant.
    case gather(axis: Int)
    case conv(ConvAttributes)
    case convTranspose(ConvAttributes)
    case maxPool(PoolAttributes)
    case averagePool(PoolAttributes)
    case globalAveragePool
    case globalMaxPool
    /// Inference form; inputs X, scale, B, mean, var.
    case batchNormalization(epsilon: Float)
    /// Inputs X, scale, optional B.
    case layerNormalization(axis: Int, epsilon: Float)
    /// Nearest-neighbour Resize / Upsample; inputs normalised to [X, scales, sizes].
    case resize(ResizeAttributes)
    // Shape computations, evaluated at compile time:
    case shape(start: Int, end: Int?)
    case constant(GraphConstant)
    /// nil: float zeros.
    case constantOfShape(GraphConstant?)
    case cast(to: ElementKind)
    case range
}

/// One node of the graph.
public struct Node {
    public var name: String
    /// The operator's name in the source format (e.g. "Gemm"), for messages.
    public var opType: String
    public var op: Op
    public var inputs: [String]
    public var outputs: [String]

    public init(name: String, opType: String, op: Op, inputs: [String], outputs: [String]) {
        self.name = name; self.opType = opType; self.op = op; self.inputs = inputs; self.outputs = outputs
    }
}

/// A graph input. `dims[i] == nil` marks a symbolic dimension, allowed only on axis 0 (the batch).
public struct GraphInput {
    public var name: String
    public var dims: [Int?]

    public init(name: String, dims: [Int?]) {
        self.name = name
        self.dims = dims
    }
}

public struct Graph {
    public var name: String
    public var inputs: [GraphInput]
    public var outputs: [String]
    public var constants: [String: GraphConstant]
    public var nodes: [Node]

    public init(name: String = "", inputs: [GraphInput], outputs: [String], constants: [String: GraphConstant] = [:],
                nodes: [Node]) {
        self.name = name; self.inputs = inputs; self.outputs = outputs; self.constants = constants; self.nodes = nodes
    }
}
