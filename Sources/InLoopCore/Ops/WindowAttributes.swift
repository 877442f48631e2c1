// Conv and pooling window attributes as ONNX gives them (parsed by `Ops/ConvPool.swift`).

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
