import XCTest
import Foundation
@testable import InLoopFormats
import InLoopCore

/// The reference models of ../shared/models (skipped when that directory is absent).
let sharedModels = URL(fileURLWithPath: ProcessInfo.processInfo.environment["INLOOP_SHARED_MODELS"]
                       ?? repoRoot.deletingLastPathComponent().appendingPathComponent("shared/models").path)
let onnxFixtures = repoRoot.appendingPathComponent("Tests/fixtures/onnx")

/// max |a - b| / max |b|.
func maxRelErr(_ a: [Float], _ b: [Float]) -> Double {
    let scale = max(b.map { Double(abs($0)) }.max() ?? 0, 1e-30)
    return zip(a, b).map { Double(abs($0 - $1)) }.max().map { $0 / scale } ?? .infinity
}

final class ONNXReferenceModelTests: XCTestCase {
    static let models = ["l96", "column_mlp", "column_mlp_small", "column_conv1d", "cnn2d"]

    func check(_ name: String) throws {
        let onnx = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: onnx.path) else { throw XCTSkip("\(onnx.path) not present") }
        let model = try ONNXReader.load(path: onnx.path)
        let io = try SafetensorsFile(bytes: [UInt8](try Data(contentsOf: sharedModels.appendingPathComponent("\(name).io.safetensors"))))
        let x = try io.tensor("x"), yRef = try io.tensor("y_ref_f64")
        let batch = x.shape[0]
        XCTAssertEqual(model.inputSpecs.count, 1)
        XCTAssertEqual(model.inputSpecs[0].shape, Array(x.shape.dropFirst()), "\(name): input shape")
        XCTAssertEqual(model.outputSpecs[0].shape, Array(yRef.shape.dropFirst()), "\(name): output shape")
        let nIn = model.inputSize, nOut = model.outputSize
        // Full batch, float32 and float64 paths.
        let y = try model.runArrays(batch: batch, [x.values])[0]
        let err = maxRelErr(y, yRef.values)
        XCTAssertLessThan(err, 1e-5, "\(name): batch \(batch) max relative error \(err)")
        let y64 = try model.forward(x.values.map { Double($0) }, batch: batch)
        XCTAssertLessThan(maxRelErr(y64.map { Float($0) }, yRef.values), 1e-5, "\(name): float64 path")
        // Batch 1, every sample of the first few, against the same reference rows.
        for s in 0..<min(batch, 3) {
            let y1 = try model.runArrays(batch: 1, [Array(x.values[(s * nIn)..<((s + 1) * nIn)])])[0]
            let ref = Array(yRef.values[(s * nOut)..<((s + 1) * nOut)])
            XCTAssertLessThan(maxRelErr(y1, ref), 1e-5, "\(name): batch 1, sample \(s)")
        }
        print("ONNX \(name): batch \(batch), max relative error vs y_ref_f64 \(err)")
    }

    func testL96() throws { try check("l96") }
    func testColumnMLP() throws { try check("column_mlp") }
    func testColumnMLPSmall() throws { try check("column_mlp_small") }
    func testColumnConv1D() throws { try check("column_conv1d") }
    func testCNN2D() throws { try check("cnn2d") }
}


/// Bad ONNX files, built with the generated protobuf types (independently of the reader).
final class ONNXBadFileTests: XCTestCase {
    func tensor(_ name: String, _ dims: [Int64], _ values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims
        t.dataType = 1
        var raw = [UInt8]()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw += $0 } }
        t.rawData = Data(raw)
        return t
    }

    func valueInfo(_ name: String, _ dims: [Int64?]) -> Onnx_ValueInfoProto {
        var vi = Onnx_ValueInfoProto()
        vi.name = name
        var tt = Onnx_TypeProto.Tensor()
        tt.elemType = 1
        var shape = Onnx_TensorShapeProto()
        for d in dims {
            var dim = Onnx_TensorShapeProto.Dimension()
            if let d { dim.dimValue = d } else { dim.dimParam = "N" }
            shape.dim.append(dim)
        }
        tt.shape = shape
        vi.type.tensorType = tt
        return vi
    }

    func node(_ op: String, _ inputs: [String], _ outputs: [String], _ name: String) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op; n.input = inputs; n.output = outputs; n.name = name
        return n
    }

    /// x (N, 3) → Gemm(W (2, 3), transB) → Relu → y (N, 2).
    func model(nodes: [Onnx_NodeProto]? = nil, initializers: [Onnx_TensorProto]? = nil) -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = "tiny"
        g.input = [valueInfo("x", [nil, 3])]
        g.output = [valueInfo("y", [nil, 2])]
        g.initializer = initializers ?? [tensor("W", [2, 3], [1, 2, 3, 4, 5, 6]), tensor("b", [2], [0.5, -10])]
        var gemm = node("Gemm", ["x", "W", "b"], ["h"], "gemm")
        var at = Onnx_AttributeProto()
        at.name = "transB"; at.type = .int; at.i = 1
        gemm.attribute = [at]
        g.node = nodes ?? [gemm, node("Relu", ["h"], ["y"], "relu")]
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var op = Onnx_OperatorSetIdProto()
        op.domain = ""; op.version = 17
        m.opsetImport = [op]
        m.graph = g
        return m
    }

    func bytes(_ m: Onnx_ModelProto) throws -> [UInt8] { try m.serializedBytes() }

    func failure(_ b: [UInt8]) -> InLoopError? {
        do { _ = try ModelFile.load(bytes: b, name: "bad"); return nil } catch { return error }
    }

    func testTinyModelRuns() throws {
        let m = try ONNXReader.load(bytes: try bytes(model()))
        let y = try m.runArrays(batch: 2, [[1, 1, 1, -1, 0, 2]])[0]
        // Row 1: [6 + 0.5, 15 - 10] = [6.5, 5]; row 2: [-1 + 6 + 0.5, -4 + 12 - 10] → [5.5, relu(-2) = 0].
        XCTAssertEqual(y, [6.5, 5, 5.5, 0])
    }

    func testTruncatedProtobuf() throws {
        let b = try bytes(model())
        for cut in [b.count / 2, b.count - 1, 3] {
            let e = failure(Array(b[0..<cut]))
            XCTAssertEqual(e?.kind, .format, "cut at \(cut): \(e?.message ?? "loaded")")
        }
        XCTAssertTrue(failure(Array(b[0..<(b.count / 2)]))?.message.contains("truncated") ?? false)
    }

    func testWrongMagic() {
        XCTAssertEqual(failure(Array("GIF89a this is not a model at all".utf8))?.kind, .format)
        XCTAssertEqual(failure([])?.message, "file is empty")
        var lcg: UInt32 = 12345
        let garbage = (0..<4096).map { _ -> UInt8 in lcg = lcg &* 1103515245 &+ 12345; return UInt8(truncatingIfNeeded: lcg >> 16) }
        XCTAssertEqual(failure(garbage)?.kind, .format)
        // A protobuf message that is not a model (no graph).
        var op = Onnx_OperatorSetIdProto()
        op.domain = "x"; op.version = 3
        let e = failure((try? op.serializedBytes()) ?? [])
        XCTAssertEqual(e?.kind, .format)
    }

    func testCycle() throws {
        let nodes = [node("Add", ["x", "c"], ["a"], "first"), node("Add", ["a", "a"], ["c"], "second"),
                     node("Relu", ["c"], ["y"], "last")]
        let e = failure(try bytes(model(nodes: nodes)))
        XCTAssertEqual(e?.kind, .format)
        XCTAssertTrue(e?.message.contains("cycle") ?? false, e?.message ?? "")
        XCTAssertTrue(e?.message.contains("'first'") ?? false, e?.message ?? "")
    }

    func testUnknownOp() throws {
        let e = failure(try bytes(model(nodes: [node("FancyAttention", ["x"], ["y"], "attn")])))
        XCTAssertEqual(e?.kind, .unsupported)
        for part in ["FancyAttention", "'attn'", "Gemm", "Conv"] {
            XCTAssertTrue(e?.message.contains(part) ?? false, "\(part) missing in: \(e?.message ?? "")")
        }
    }

    func testOtherDomainIsUnsupported() throws {
        var n = node("Relu", ["x"], ["y"], "ms")
        n.domain = "com.microsoft"
        let e = failure(try bytes(model(nodes: [n])))
        XCTAssertEqual(e?.kind, .unsupported)
        XCTAssertTrue(e?.message.contains("com.microsoft") ?? false)
    }

    func testRawDataLengthDisagreesWithShape() throws {
        var w = tensor("W", [2, 3], [1, 2, 3, 4, 5, 6])
        w.rawData = w.rawData.prefix(20)
        let e = failure(try bytes(model(initializers: [w, tensor("b", [2], [0, 0])])))
        XCTAssertEqual(e?.kind, .format)
        XCTAssertTrue(e?.message.contains("'W'") ?? false, e?.message ?? "")
        XCTAssertTrue(e?.message.contains("20 bytes") ?? false, e?.message ?? "")
    }

    func testExternalDataRefused() throws {
        var w = tensor("W", [2, 3], [])
        w.clearRawData()
        w.dataLocation = .external
        var loc = Onnx_StringStringEntryProto()
        loc.key = "location"; loc.value = "weights.bin"
        w.externalData = [loc]
        let e = failure(try bytes(model(initializers: [w, tensor("b", [2], [0, 0])])))
        XCTAssertEqual(e?.kind, .unsupported)
        XCTAssertTrue(e?.message.contains("external") ?? false, e?.message ?? "")
        XCTAssertTrue(e?.message.contains("weights.bin") ?? false, e?.message ?? "")
    }

    func testShapeMismatchNamesNode() throws {
        let e = failure(try bytes(model(initializers: [tensor("W", [2, 4], [Float](repeating: 1, count: 8)), tensor("b", [2], [0, 0])])))
        XCTAssertEqual(e?.kind, .format)
        XCTAssertTrue(e?.message.contains("node 'gemm' (Gemm)") ?? false, e?.message ?? "")
    }

    /// A symbolic inner dimension that a weight fixes (x [N, M] times W [2, 3]ᵀ): type inference cannot
    /// bind M from the weight yet, so the model is refused at load, naming the node (onnxruntime runs
    /// it with M = 3; known limitation, docs/ENGINE.md §6.1).
    func testSymbolicInnerDimensionFixedByAWeightIsRefusedNamingTheNode() throws {
        var m = model()
        m.graph.input = [valueInfo("x", [nil, nil])]
        let e = failure(try bytes(m))
        XCTAssertNotNil(e)
        XCTAssertTrue(e?.message.contains("'gemm'") ?? false, e?.message ?? "")
    }

    func testWrongSizesAtRunTime() throws {
        let m = try ONNXReader.load(bytes: try bytes(model()))
        XCTAssertEqual(kind { _ = try m.runArrays(batch: 2, [[1, 2, 3]]) }, .sizeMismatch)
        XCTAssertEqual(kind { _ = try m.runArrays(batch: 0, [[]]) }, .invalidArgument)
        XCTAssertEqual(kind { _ = try m.runArrays(batch: 1, [[1, 2, 3], [1]]) }, .sizeMismatch)
    }

    func testSafetensorsStillLoadsByContent() throws {
        let path = fixturesDir.appendingPathComponent("mlp_medium.safetensors").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no fixture") }
        let m = try ModelFile.load(path: path)
        XCTAssertNotNil(m.graph.layerSpecs, "a version-1 file is a layer stack")
    }
}
