import XCTest
import Foundation
@testable import InLoopFormats
@testable import InLoopCore

/// ONNX models on the one engine (issue 10, step 4.1): the reference models of ../shared/models against
/// their float64 references, through one plan at every batch size, in both entry-point types; the
/// fusion pass on the Gemm/MatMul chains; and which engine the loader picks.
final class EngineONNXTests: XCTestCase {
    func sharedBytes(_ name: String) throws -> [UInt8] {
        let url = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        return [UInt8](try Data(contentsOf: url))
    }

    /// The model on the one engine, or a skip naming what is missing (ops still moving, phase 3).
    func engineModel(_ name: String) throws -> Engine.Model {
        let bytes = try sharedBytes(name)
        do {
            return try ONNXReader.engineModel(bytes: bytes, name: name)
        } catch {
            throw XCTSkip("\(name) does not run on the one engine yet: \(error.message)")
        }
    }

    func check(_ name: String) throws {
        let model = try engineModel(name)
        let io = try SafetensorsFile(bytes: [UInt8](try Data(contentsOf: sharedModels.appendingPathComponent("\(name).io.safetensors"))))
        let x = try io.tensor("x"), yRef = try io.tensor("y_ref_f64")
        let batch = x.shape[0]
        XCTAssertEqual(model.inputSpecs[0].shape, Array(x.shape.dropFirst()), "\(name): input shape")
        XCTAssertEqual(model.outputSpecs[0].shape, Array(yRef.shape.dropFirst()), "\(name): output shape")
        let nIn = model.inputSize, nOut = model.outputSize
        _ = nIn
        let y = try model.runArrays(batch: batch, [x.values])[0]
        XCTAssertLessThan(maxRelErr(y, yRef.values), 1e-5, "\(name): batch \(batch)")
        let x64 = x.values.map { Double($0) }
        var y64 = [Double](repeating: .nan, count: batch * nOut)
        try x64.withUnsafeBufferPointer { xp in try y64.withUnsafeMutableBufferPointer { try model.forward(xp, batch: batch, into: $0) } }
        XCTAssertLessThan(maxRelErr(y64.map { Float($0) }, yRef.values), 1e-5, "\(name): float64 entry point")
        for s in 0..<min(batch, 3) {
            let y1 = try model.runArrays(batch: 1, [Array(x.values[(s * nIn)..<((s + 1) * nIn)])])[0]
            XCTAssertLessThan(maxRelErr(y1, Array(yRef.values[(s * nOut)..<((s + 1) * nOut)])), 1e-5, "\(name): batch 1, sample \(s)")
        }
        XCTAssertEqual(model.compileCount, 1, "\(name): one plan for every batch size")
        // the loader picks the one engine for it
        XCTAssertTrue(try ONNXReader.loadModel(bytes: try sharedBytes(name), name: name) is Engine.Model, name)
    }

    func testL96() throws { try check("l96") }
    func testColumnMLP() throws { try check("column_mlp") }
    func testColumnMLPSmall() throws { try check("column_mlp_small") }
    func testColumnConv1D() throws { try check("column_conv1d") }
    func testCNN2D() throws { try check("cnn2d") }

    /// l96 is Gemm → Tanh → Gemm → Tanh → Gemm → Tanh → Gemm: after fusion, four Dense nodes (three
    /// with tanh) and one step each, like the layer-stack plan of the same network.
    func testFusionOfGemmChains() throws {
        let g = try ONNXReader.engineGraph(bytes: try sharedBytes("l96"))
        XCTAssertEqual(g.nodes.filter { $0.op == GemmOp.self }.count, 4)
        let before = try Engine.compile(g).stepCount
        let summary = try Engine.fuse(g)
        XCTAssertEqual(summary, Engine.FusionSummary(dense: 4, activations: 3))
        XCTAssertEqual(g.nodes.count, 4)
        XCTAssertTrue(g.nodes.allSatisfy { $0.op == DenseOp.self })
        let after = try Engine.compile(g).stepCount
        XCTAssertEqual(after, 4)
        XCTAssertGreaterThan(before, after)
    }

    /// A graph output between a Gemm and its activation is not fused away; a Gemm with alpha ≠ 1 is
    /// not rewritten.
    func testFusionKeepsOutputsAndSemantics() throws {
        func graph(alpha: Double, exposeHidden: Bool) throws -> Engine.Graph {
            let g = Engine.Graph(dtype: .float32, opset: 13)
            try g.addInput("x", Engine.TensorType(.float32, [Engine.SymInt(g.symbol(named: "N")), 3]))
            g.batch = g.symbol(named: "N")
            try g.addConstant("w", try Engine.Tensor(shape: [2, 3], values: [Float](repeating: 0.5, count: 6)))
            try g.addConstant("b", try Engine.Tensor(shape: [2], values: [Float(0.1), -0.2]))
            try g.addNode("gemm", GemmOp.self, ["alpha": .float(alpha), "transB": .int(1)], inputs: ["x", "w", "b"], outputs: ["h"])
            try g.addNode("act", TanhOp.self, inputs: ["h"], outputs: ["y"])
            try g.markOutput("y")
            if exposeHidden { try g.markOutput("h") }
            try g.verify()
            try g.inferTypes()
            return g
        }
        let exposed = try graph(alpha: 1, exposeHidden: true)
        XCTAssertEqual(try Engine.fuse(exposed), Engine.FusionSummary(dense: 1, activations: 0))
        XCTAssertEqual(exposed.nodes.count, 2)
        let scaled = try graph(alpha: 2, exposeHidden: false)
        XCTAssertEqual(try Engine.fuse(scaled), Engine.FusionSummary(dense: 0, activations: 0))
        // the model (which fuses) against the formula
        let plain = try graph(alpha: 1, exposeHidden: false)
        let x: [Float] = [0.3, -1.2, 2.0, 0.7, 0.1, -0.4]
        let a = try Engine.Model(graph: plain).runArrays(batch: 2, [x])[0]
        let ref: [Float] = [0, 1].flatMap { s -> [Float] in
            let sum = 0.5 * (x[3 * s] + x[3 * s + 1] + x[3 * s + 2])
            return [Float(Foundation.tanh(Double(sum + 0.1))), Float(Foundation.tanh(Double(sum - 0.2)))]
        }
        XCTAssertLessThan(maxRelErr(a, ref), 1e-6)
        XCTAssertEqual(plain.nodes.count, 1, "Gemm and Tanh fused into one Dense")
    }
}
