import XCTest
import Foundation
@testable import InLoopFormats
import InLoopCore

/// GraphNetwork on the shared ONNX models (skipped when ../shared/models is absent): float32 forward
/// equals the inference engine's, float64 forward equals the float64 reference, derivatives pass the
/// adjoint and finite-difference tests, and a fine-tuned graph goes back into a GraphModel.
final class GraphNetworkONNXTests: XCTestCase {
    struct Loaded {
        let graph: Graph
        let model: GraphModel
        let x: Tensor
        let yRef64: Tensor
    }

    func load(_ name: String) throws -> Loaded {
        let onnx = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: onnx.path) else { throw XCTSkip("\(onnx.path) not present") }
        let bytes = [UInt8](try Data(contentsOf: onnx))
        let graph = try ONNXReader.graph(bytes: bytes)
        let model = try ONNXReader.load(bytes: bytes, name: name)
        let io = try SafetensorsFile(bytes: [UInt8](try Data(contentsOf: sharedModels.appendingPathComponent("\(name).io.safetensors"))))
        return Loaded(graph: graph, model: model, x: try io.tensor("x"), yRef64: try io.tensor("y_ref_f64"))
    }

    func check(_ name: String) throws {
        let m = try load(name)
        let batch = m.x.shape[0]
        // float32: GraphNetwork<Float> vs GraphModel.
        let net32 = try GraphNetwork<Float>(model: m.model)
        XCTAssertEqual(net32.inputSize, m.model.inputSize)
        XCTAssertEqual(net32.outputSize, m.model.outputSize)
        XCTAssertEqual(net32.parameterCount, m.model.parameterCount - (name == "column_mlp" ? 188 : 0), "\(name): trainable values")
        let ref = try m.model.run(batch: batch, [m.x.values])[0]
        let y32 = try m.x.values.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net32.forward($0.baseAddress!, batch: batch), count: batch * net32.outputSize)) }
        let e32 = maxRelErr(y32, ref)
        XCTAssertLessThan(e32, 1e-5, "\(name): GraphNetwork<Float> vs GraphModel")
        // float64 forward vs the float64 reference of the same weights.
        let net = try GraphNetwork<Double>(graph: m.graph)
        let x64 = m.x.values.map { Double($0) }
        let xs = UnsafeMutablePointer<Double>.allocate(capacity: x64.count)
        defer { xs.deallocate() }
        xs.initialize(from: x64, count: x64.count)
        let nIn = net.inputSize, nOut = net.outputSize
        let y64 = Array(UnsafeBufferPointer(start: try net.forward(xs, batch: batch), count: batch * nOut))
        let e64 = maxRelErr(y64.map { Float($0) }, m.yRef64.values)
        XCTAssertLessThan(e64, 1e-6, "\(name): GraphNetwork<Double> vs y_ref_f64")
        // Adjoint dot-product test and tangent-linear vs central differences, on 2 samples.
        let b = 2
        var rng = RandomState(seed: 17)
        let dx = (0..<(b * nIn)).map { _ in 2 * rng.uniform() - 1 }
        let dy = (0..<(b * nOut)).map { _ in 2 * rng.uniform() - 1 }
        _ = try net.forward(xs, batch: b)
        let jdx = Array(UnsafeBufferPointer(start: try dx.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: b) }, count: b * nOut))
        var jtdy = [Double](repeating: 0, count: b * nIn)
        try dy.withUnsafeBufferPointer { d in try jtdy.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: b, parameterGradients: false, inputGradient: $0.baseAddress!) } }
        let lhs = zip(jdx, dy).reduce(0) { $0 + $1.0 * $1.1 }, rhs = zip(dx, jtdy).reduce(0) { $0 + $1.0 * $1.1 }
        let dotScale = (jdx.reduce(0) { $0 + $1 * $1 }).squareRoot() * (dy.reduce(0) { $0 + $1 * $1 }).squareRoot()
        let dot = abs(lhs - rhs) / dotScale
        XCTAssertLessThan(dot, 1e-13, "\(name): dot-product test")
        let h = 1e-6
        let xp = (0..<(b * nIn)).map { x64[$0] + h * dx[$0] }, xm = (0..<(b * nIn)).map { x64[$0] - h * dx[$0] }
        let fp = try xp.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: b), count: b * nOut)) }
        let fm = try xm.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: b), count: b * nOut)) }
        let fd = zip(fp, fm).map { ($0 - $1) / (2 * h) }
        let tl = zip(fd, jdx).map { abs($0 - $1) }.max()! / max(fd.map(abs).max()!, 1e-3)
        XCTAssertLessThan(tl, 1e-6, "\(name): tangent-linear vs finite differences")
        print("GraphNetwork \(name): float32 vs GraphModel \(e32), float64 vs y_ref_f64 \(e64), dot-product \(dot), tangent vs FD \(tl), \(net.parameterCount) parameters")
    }

    func testL96() throws { try check("l96") }
    func testColumnMLP() throws { try check("column_mlp") }
    func testColumnMLPSmall() throws { try check("column_mlp_small") }
    func testColumnConv1D() throws { try check("column_conv1d") }
    func testCNN2D() throws { try check("cnn2d") }

    /// The Jacobian of a loaded ONNX model against tangent-linear columns (column_conv1d, 240 → 120).
    func testJacobianOfLoadedModel() throws {
        let m = try load("column_conv1d")
        let net = try GraphNetwork<Double>(graph: m.graph)
        let nIn = net.inputSize, nOut = net.outputSize, b = 2
        let x = m.x.values.prefix(b * nIn).map { Double($0) }
        var j = [Double](repeating: 0, count: b * nIn * nOut)
        try x.withUnsafeBufferPointer { xp in try j.withUnsafeMutableBufferPointer { try net.jacobian(xp.baseAddress!, batch: b, into: $0.baseAddress!) } }
        let xs = UnsafeMutablePointer<Double>.allocate(capacity: x.count)
        defer { xs.deallocate() }
        xs.initialize(from: x, count: x.count)
        _ = try net.forward(xs, batch: b)
        var worst = 0.0
        for i in stride(from: 0, to: nIn, by: 17) {
            var e = [Double](repeating: 0, count: b * nIn)
            for s in 0..<b { e[s * nIn + i] = 1 }
            let col = Array(UnsafeBufferPointer(start: try e.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: b) }, count: b * nOut))
            for s in 0..<b { for o in 0..<nOut { worst = max(worst, abs(col[s * nOut + o] - j[(s * nIn + i) * nOut + o])) } }
        }
        XCTAssertLessThan(worst, 1e-12)
    }

    /// Fine-tuning a loaded ONNX model: gradient steps reduce the loss, and the trained graph runs in
    /// the inference engine with the same outputs.
    func testFineTuneAndWriteBack() throws {
        let m = try load("l96")
        let net = try GraphNetwork<Float>(graph: m.graph)
        let batch = m.x.shape[0]
        let x = m.x.values
        let target = m.yRef64.values.map { 0.8 * $0 + 0.1 }
        var dy = [Float](repeating: 0, count: batch)
        var losses: [Double] = []
        for _ in 0..<200 {
            let l = try x.withUnsafeBufferPointer { xp in
                let p = try net.forward(xp.baseAddress!, batch: batch)
                let l = target.withUnsafeBufferPointer { tp in dy.withUnsafeMutableBufferPointer { Loss(.mse).evaluate(prediction: p, target: tp.baseAddress!, batch: batch, outputs: 1, gradient: $0.baseAddress!) } }
                try dy.withUnsafeBufferPointer { try net.backward($0.baseAddress!, batch: batch, parameterGradients: true) }
                return l
            }
            losses.append(l)
            for i in 0..<net.parameterCount { net.parameters.base[i] -= 0.05 * net.gradients.base[i] }
        }
        XCTAssertLessThan(losses.last!, 0.5 * losses.first!, "losses \(losses.first!) → \(losses.last!)")
        let tuned = try net.inferenceModel()
        let yModel = try tuned.run(batch: batch, [x])[0]
        let yNet = try x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: batch), count: batch)) }
        XCTAssertLessThan(maxRelErr(yNet, yModel), 1e-6)
        XCTAssertGreaterThan(maxRelErr(yModel, try m.model.run(batch: batch, [x])[0]), 1e-3, "the weights changed")
    }
}
