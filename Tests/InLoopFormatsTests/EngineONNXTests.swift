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

/// Derivatives and training of ONNX graphs on the one engine (`EngineNetwork`, step 4.3), against the
/// graph engine's `GraphNetwork` (float64, same weights) and float64 central differences.
final class EngineNetworkTests: XCTestCase {
    func engineModel(_ name: String) throws -> (Engine.Model, [UInt8]) {
        let url = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        let bytes = [UInt8](try Data(contentsOf: url))
        do { return (try ONNXReader.engineModel(bytes: bytes, name: name), bytes) } catch {
            throw XCTSkip("\(name) does not run on the one engine yet: \(error.message)")
        }
    }

    func check(_ name: String) throws {
        let (model, bytes) = try engineModel(name)
        let legacy = try GraphNetwork<Double>(graph: try ONNXReader.graph(bytes: bytes))
        let net = try EngineNetwork<Double>(model: model)
        XCTAssertEqual(net.inputSize, legacy.inputSize)
        XCTAssertEqual(net.outputSize, legacy.outputSize)
        XCTAssertEqual(net.parameterCount, legacy.parameterCount, "\(name): the same trainable values")
        let nIn = net.inputSize, nOut = net.outputSize
        for b in [1, 3] {
            var rng = RandomState(seed: UInt64(b))
            let x = (0..<(b * nIn)).map { _ in 2 * rng.uniform() - 1 }
            let dy = (0..<(b * nOut)).map { _ in 2 * rng.uniform() - 1 }
            let dx = (0..<(b * nIn)).map { _ in 2 * rng.uniform() - 1 }
            try x.withUnsafeBufferPointer { xp in
                let y = Array(UnsafeBufferPointer(start: try net.forward(xp.baseAddress!, batch: b), count: b * nOut))
                let yl = Array(UnsafeBufferPointer(start: try legacy.forward(xp.baseAddress!, batch: b), count: b * nOut))
                XCTAssertLessThan(OpTestLite.err(y, yl), 1e-12, "\(name) batch \(b): forward")
                var gx = [Double](repeating: .nan, count: b * nIn), gxl = gx
                try dy.withUnsafeBufferPointer { d in
                    try gx.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: b, parameterGradients: true, inputGradient: $0.baseAddress!) }
                    try gxl.withUnsafeMutableBufferPointer { try legacy.backward(d.baseAddress!, batch: b, parameterGradients: true, inputGradient: $0.baseAddress!) }
                }
                XCTAssertLessThan(OpTestLite.err(gx, gxl), 1e-12, "\(name) batch \(b): input gradient")
                XCTAssertLessThan(OpTestLite.err(net.gradients.array.sorted(), legacy.gradients.array.sorted()), 1e-10,
                                  "\(name) batch \(b): parameter gradients (as a set: the layouts may differ)")
                let t = try dx.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.tangent($0.baseAddress!, batch: b), count: b * nOut)) }
                _ = try legacy.forward(xp.baseAddress!, batch: b)
                let tl = try dx.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try legacy.tangent($0.baseAddress!, batch: b), count: b * nOut)) }
                XCTAssertLessThan(OpTestLite.err(t, tl), 1e-12, "\(name) batch \(b): tangent")
            }
        }
        // Jacobian against tangent columns through the same network
        let b = 2
        let x = (0..<(b * nIn)).map { Double($0 % 7) / 7 - 0.4 }
        var j = [Double](repeating: .nan, count: b * nIn * nOut)
        try x.withUnsafeBufferPointer { xp in try j.withUnsafeMutableBufferPointer { try net.jacobian(xp.baseAddress!, batch: b, into: $0.baseAddress!) } }
        var jl = j
        try x.withUnsafeBufferPointer { xp in try jl.withUnsafeMutableBufferPointer { try legacy.jacobian(xp.baseAddress!, batch: b, into: $0.baseAddress!) } }
        XCTAssertLessThan(OpTestLite.err(j, jl), 1e-12, "\(name): Jacobian")

        // Ten Adam steps in float64 on both engines: the same losses; the fine-tuned model runs on the
        // one engine and gives the trainer's outputs.
        let config = TrainerConfig(precision: .float64)
        let t1 = try Trainer<Double>(backend: .engine(net), config: config, random: nil)
        let t2 = try Trainer<Double>(backend: .graph(legacy), config: config, random: nil)
        let n = 8
        var rng = RandomState(seed: 99)
        let xs = (0..<(n * nIn)).map { _ in 2 * rng.uniform() - 1 }, ys = (0..<(n * nOut)).map { _ in 2 * rng.uniform() - 1 }
        for _ in 0..<10 {
            let l1 = try xs.withUnsafeBufferPointer { xp in try ys.withUnsafeBufferPointer { try t1.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) } }
            let l2 = try xs.withUnsafeBufferPointer { xp in try ys.withUnsafeBufferPointer { try t2.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) } }
            XCTAssertEqual(l1, l2, accuracy: 1e-10 * max(1, abs(l2)), "\(name): loss")
        }
        let tuned = try net.inferenceModel()
        let yTuned = try tuned.runArrays(batch: n, [xs.map { Float($0) }])[0]
        let yNet = try xs.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: n), count: n * nOut)) }
        XCTAssertLessThan(OpTestLite.err(yTuned.map { Double($0) }, yNet), 1e-5, "\(name): fine-tuned model")
    }

    func testL96() throws { try check("l96") }
    func testColumnMLP() throws { try check("column_mlp") }
    func testColumnMLPSmall() throws { try check("column_mlp_small") }
    func testColumnConv1D() throws { try check("column_conv1d") }
    func testCNN2D() throws { try check("cnn2d") }
}

enum OpTestLite {
    /// max |a − b| / max(1, max |b|).
    static func err(_ a: [Double], _ b: [Double]) -> Double {
        guard a.count == b.count else { return .infinity }
        let scale = max(1, b.map(abs).max() ?? 0)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }
}
