import XCTest
import Foundation
@testable import InLoopFormats
@testable import InLoopCore

/// ONNX models on the one engine (issue 10, step 4.1): the reference models of ../shared/models against
/// their float64 references, through one plan at every batch size, in both entry-point types; the
/// fusion pass on the Gemm/MatMul chains.
final class EngineONNXTests: XCTestCase {
    func sharedBytes(_ name: String) throws -> [UInt8] {
        let url = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        return [UInt8](try Data(contentsOf: url))
    }

    func engineModel(_ name: String) throws -> Engine.Model {
        try ONNXReader.load(bytes: try sharedBytes(name), name: name)
    }

    func check(_ name: String) throws {
        let model = try engineModel(name)
        let io = try SafetensorsFile(bytes: [UInt8](try Data(contentsOf: sharedModels.appendingPathComponent("\(name).io.safetensors"))))
        let x = try io.tensor("x"), yRef = try io.tensor("y_ref_f64")
        let batch = x.shape[0]
        XCTAssertEqual(model.inputSpecs[0].shape, Array(x.shape.dropFirst()), "\(name): input shape")
        XCTAssertEqual(model.outputSpecs[0].shape, Array(yRef.shape.dropFirst()), "\(name): output shape")
        let nIn = model.inputSize, nOut = model.outputSize
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

/// Derivatives and training of ONNX graphs on the one engine (`EngineNetwork`, step 4.3), in float64
/// against the model's own forward, float64 central differences (input, tangent and parameter
/// directions) and the adjoint dot-product identity.
final class EngineNetworkTests: XCTestCase {
    func engineModel(_ name: String) throws -> Engine.Model {
        let url = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        return try ONNXReader.load(bytes: [UInt8](try Data(contentsOf: url)), name: name)
    }

    func check(_ name: String) throws {
        let model = try engineModel(name)
        let net = try EngineNetwork<Double>(model: model)
        XCTAssertEqual(net.inputSize, model.inputSize)
        XCTAssertEqual(net.outputSize, model.outputSize)
        let nIn = net.inputSize, nOut = net.outputSize
        func forward(_ x: [Double], _ b: Int) throws -> [Double] {
            try x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.forward($0.baseAddress!, batch: b), count: b * nOut)) }
        }
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        for b in [1, 3] {
            var rng = RandomState(seed: UInt64(b))
            let x = (0..<(b * nIn)).map { _ in 2 * rng.uniform() - 1 }
            let dy = (0..<(b * nOut)).map { _ in 2 * rng.uniform() - 1 }
            let dx = (0..<(b * nIn)).map { _ in 2 * rng.uniform() - 1 }
            let dp = (0..<net.parameterCount).map { _ in 2 * rng.uniform() - 1 }
            // forward: the float32 model's outputs
            let y = try forward(x, b)
            let y32 = try model.runArrays(batch: b, [x.map { Float($0) }])[0]
            XCTAssertLessThan(OpTestLite.err(y, y32.map { Double($0) }), 1e-5, "\(name) batch \(b): forward")
            // reverse: dy·J dx = (Jᵀdy)·dx, and dy·(∂y/∂p) dp = g·dp against central differences
            var gx = [Double](repeating: .nan, count: b * nIn)
            try dy.withUnsafeBufferPointer { d in
                try gx.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: b, parameterGradients: true, inputGradient: $0.baseAddress!) }
            }
            let g = net.gradients.array
            let t = try dx.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: try net.tangent($0.baseAddress!, batch: b), count: b * nOut)) }
            let scale = max(1, (dot(t, t) * dot(dy, dy)).squareRoot())
            XCTAssertLessThan(abs(dot(t, dy) - dot(gx, dx)) / scale, 1e-12, "\(name) batch \(b): adjoint of the tangent")
            let h = 1e-6
            let fd = zip(try forward(zip(x, dx).map { $0 + h * $1 }, b), try forward(zip(x, dx).map { $0 - h * $1 }, b)).map { ($0 - $1) / (2 * h) }
            XCTAssertLessThan(OpTestLite.err(t, fd), 1e-6, "\(name) batch \(b): tangent vs finite differences")
            let p0 = net.parameters.array
            func setParameters(_ v: [Double]) { for i in 0..<v.count { net.parameters.base[i] = v[i] } }
            setParameters(zip(p0, dp).map { $0 + h * $1 })
            let yp = try forward(x, b)
            setParameters(zip(p0, dp).map { $0 - h * $1 })
            let ym = try forward(x, b)
            setParameters(p0)
            let fdp = zip(yp, ym).map { ($0 - $1) / (2 * h) }
            let gdp = dot(g, dp), want = dot(fdp, dy)
            XCTAssertLessThan(abs(gdp - want) / max(1, abs(want)), 1e-6, "\(name) batch \(b): parameter gradient vs finite differences")
        }
        // Jacobian against tangent columns through the same network
        let b = 2
        let x = (0..<(b * nIn)).map { Double($0 % 7) / 7 - 0.4 }
        var j = [Double](repeating: .nan, count: b * nIn * nOut)
        try x.withUnsafeBufferPointer { xp in try j.withUnsafeMutableBufferPointer { try net.jacobian(xp.baseAddress!, batch: b, into: $0.baseAddress!) } }
        _ = try forward(x, b)
        var worst = 0.0
        for i in stride(from: 0, to: nIn, by: max(1, nIn / 7)) {
            var e = [Double](repeating: 0, count: b * nIn)
            for s in 0..<b { e[s * nIn + i] = 1 }
            let col = Array(UnsafeBufferPointer(start: try e.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: b) }, count: b * nOut))
            for s in 0..<b { for o in 0..<nOut { worst = max(worst, abs(col[s * nOut + o] - j[(s * nIn + i) * nOut + o])) } }
        }
        XCTAssertLessThan(worst, 1e-12, "\(name): Jacobian columns")

        // Ten Adam steps in float64: the loss falls; the fine-tuned model gives the trainer's outputs.
        let config = TrainerConfig(precision: .float64)
        let t1 = try Trainer<Double>(network: net, config: config, random: nil)
        let n = 8
        var rng = RandomState(seed: 99)
        let xs = (0..<(n * nIn)).map { _ in 2 * rng.uniform() - 1 }, ys = (0..<(n * nOut)).map { _ in 2 * rng.uniform() - 1 }
        var losses: [Double] = []
        for _ in 0..<10 {
            losses.append(try xs.withUnsafeBufferPointer { xp in try ys.withUnsafeBufferPointer { try t1.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) } })
        }
        XCTAssertLessThan(losses.last!, losses.first!, "\(name): losses \(losses)")
        let tuned = try net.inferenceModel()
        let yTuned = try tuned.runArrays(batch: n, [xs.map { Float($0) }])[0]
        let yNet = try forward(xs, n)
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

/// Native format version 2 (step 4.4): a graph written and read back gives the same outputs bit for
/// bit; a fine-tuned ONNX graph can be saved; hostile files are errors.
final class NativeV2Tests: XCTestCase {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    /// A graph with an int64 constant (Reshape's shape), attributes of several kinds, two inputs.
    func handMade() throws -> Engine.Graph {
        let g = Engine.Graph(name: "hand", dtype: .float32, opset: 13)
        let n = g.symbol(named: "batch")
        g.batch = n
        try g.addInput("a", Engine.TensorType(.float32, [Engine.SymInt(n), 2, 3]))
        try g.addInput("b", Engine.TensorType(.float32, [Engine.SymInt(n), 6]))
        try g.addConstant("shape", try Engine.Tensor(shape: [2], values: [Int64(0), -1]))
        try g.addConstant("w", try Engine.Tensor(shape: [4, 6], values: (0..<24).map { Float($0) / 10 - 1 }))
        try g.addConstant("c", try Engine.Tensor(shape: [4], values: [Float(0.5), -0.25, 1e-3, 3]))
        try g.addNode("flat", ReshapeOp.self, inputs: ["a", "shape"], outputs: ["af"])
        try g.addNode("sum", AddOp.self, inputs: ["af", "b"], outputs: ["s"])
        try g.addNode("gemm", GemmOp.self, ["transB": .int(1), "alpha": .float(1), "beta": .float(1)], inputs: ["s", "w", "c"], outputs: ["h"])
        try g.addNode("act", LeakyReluOp.self, ["alpha": .float(0.125)], inputs: ["h"], outputs: ["y"])
        try g.markOutput("y")
        g.parameters = [g.names["w"]!, g.names["c"]!]
        try g.verify()
        try g.inferTypes()
        return g
    }

    func testRoundTripIsBitwise() throws {
        let g = try handMade()
        let bytes = try NativeV2.serialize(g)
        let back = try NativeFormat.graph(bytes: bytes)
        XCTAssertEqual(back.nodes.map { $0.op.name }, g.nodes.map { $0.op.name })
        XCTAssertEqual(back.parameters.map { back[$0].name }, ["w", "c"])
        XCTAssertEqual(back[back.inputs[0]].type, g[g.inputs[0]].type)
        XCTAssertEqual(try NativeV2.serialize(back), bytes, "re-saving gives the same bytes")
        let m1 = try Engine.Model(graph: g), m2 = try NativeFormat.load(bytes: bytes)
        XCTAssertTrue(m2 is Engine.Model)
        for batch in [1, 4] {
            let a: [Float] = OpTestFloats.make(batch * 6, seed: 1), b: [Float] = OpTestFloats.make(batch * 6, seed: 2)
            let y1 = try m1.runArrays(batch: batch, [a, b])[0], y2 = try m2.runArrays(batch: batch, [a, b])[0]
            XCTAssertEqual(bits(y1), bits(y2), "batch \(batch)")
            // against the formula: leaky_relu(W·(a+b) + c)
            for s in 0..<batch {
                for o in 0..<4 {
                    var z = Double([0.5, -0.25, 1e-3, 3][o])
                    for k in 0..<6 { z += Double(Float(o * 6 + k) / 10 - 1) * Double(a[s * 6 + k] + b[s * 6 + k]) }
                    let want = z > 0 ? z : 0.125 * z
                    XCTAssertEqual(Double(y1[s * 4 + o]), want, accuracy: 1e-5 * max(1, abs(want)))
                }
            }
        }
    }

    /// Load an ONNX model, fine-tune 10 steps on the one engine, save (v2), load again: the outputs
    /// are bitwise those of the in-memory fine-tuned model (float32 and float64 trainers).
    func testFineTunedONNXSavesAndReloadsBitwise() throws {
        let url = sharedModels.appendingPathComponent("l96.onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        let model = try ONNXReader.load(bytes: [UInt8](try Data(contentsOf: url)), name: "l96")
        func run<T: Real>(_: T.Type) throws {
            let net = try EngineNetwork<T>(model: model)
            let trainer = try Trainer<T>(network: net, config: TrainerConfig(), random: nil)
            let n = 16
            let x: [T] = (0..<n).map { T(Float($0) / 4 - 2) }, y: [T] = (0..<n).map { T(sin(Float($0) / 3)) }
            var losses: [Double] = []
            for _ in 0..<10 {
                losses.append(try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { try trainer.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) } })
            }
            XCTAssertLessThan(losses.last!, losses.first!, "training moves the loss")
            let tuned = try net.inferenceModel()
            let file = try NativeV2.serialize(tuned.graph)
            let reloaded = try NativeFormat.load(bytes: file)
            let xf = x.map { Float($0) }
            XCTAssertEqual(bits(try tuned.runArrays(batch: n, [xf])[0]), bits(try reloaded.runArrays(batch: n, [xf])[0]), "\(T.self)")
            XCTAssertNotEqual(bits(try tuned.runArrays(batch: n, [xf])[0]), bits(try model.runArrays(batch: n, [xf])[0]), "the weights changed")
        }
        try run(Float.self)
        try run(Double.self)
    }

    func testHostileFilesAreErrors() throws {
        let bytes = try NativeV2.serialize(try handMade())
        // every truncation is an error, never a trap
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            XCTAssertThrowsError(try NativeFormat.load(bytes: Array(bytes.prefix(cut))), "cut at \(cut)")
        }
        // edits of the architecture
        let text = String(decoding: bytes, as: UTF8.self)
        for (old, new) in [("\"op\":\"Gemm\"", "\"op\":\"Nope\""), ("\"transB\":{\"int\":1}", "\"transB\":{\"blob\":1}"),
                           ("\"opset\":13", "\"opset\":-4"), ("\"constants\":[", "\"constants\":[\"ghost\","),
                           ("\"outputs\":[\"y\"]", "\"outputs\":[\"nowhere\"]")] {
            // the architecture is a JSON string inside the header: its quotes are escaped
            let old = old.replacingOccurrences(of: "\"", with: "\\\""), new = new.replacingOccurrences(of: "\"", with: "\\\"")
            guard text.contains(old) else { XCTFail("fixture text lacks \(old)"); continue }
            let edited = Array(text.replacingOccurrences(of: old, with: new).utf8)
            // the header length prefix no longer matches when sizes change: fix it
            var fixed = edited
            let delta = edited.count - bytes.count
            var n: UInt64 = 0
            for k in 0..<8 { n |= UInt64(bytes[k]) << (8 * UInt64(k)) }
            n = UInt64(Int(n) + delta)
            for k in 0..<8 { fixed[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
            XCTAssertThrowsError(try NativeFormat.load(bytes: fixed), "\(old) → \(new)")
        }
    }
}

enum OpTestFloats {
    static func make(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed &* 0x9E3779B97F4A7C15 &+ 7
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Double(s >> 11) / Double(1 << 53) * 4 - 2)
        }
    }
}

/// Checkpoints of graph trainers on the one engine: 5 steps, checkpoint, restore, 5 more steps gives
/// bitwise the parameters, optimizer state and losses of 10 uninterrupted steps (float32 and float64).
final class GraphCheckpointTests: XCTestCase {
    func testGraphCheckpointRestartsExactly() throws {
        let url = sharedModels.appendingPathComponent("column_mlp_small.onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        let model = try ONNXReader.load(bytes: [UInt8](try Data(contentsOf: url)), name: "column_mlp_small")
        func check<T: Real>(_: T.Type, _ wrap: (Trainer<T>) -> AnyTrainer, _ unwrap: (AnyTrainer) -> Trainer<T>?) throws {
            let n = 6, nIn = model.inputSize, nOut = model.outputSize
            let x: [T] = (0..<(n * nIn)).map { T(Float(($0 * 37) % 19) / 9 - 1) }
            let y: [T] = (0..<(n * nOut)).map { T(Float(($0 * 11) % 7) / 7 - 0.5) }
            func steps(_ t: Trainer<T>, _ k: Int) throws -> [Double] {
                try (0..<k).map { _ in try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { try t.trainStep(x: xp.baseAddress!, y: $0.baseAddress!, batch: n) } } }
            }
            let config = TrainerConfig(precision: T.self == Double.self ? .float64 : .float32)
            let straight = try Trainer<T>(network: try EngineNetwork<T>(model: model), config: config, random: nil)
            let all = try steps(straight, 10)
            let first = try Trainer<T>(network: try EngineNetwork<T>(model: model), config: config, random: nil)
            let a = try steps(first, 5)
            let bytes = try Checkpoint.serialize(first)
            guard let restored = unwrap(try Checkpoint.load(bytes: bytes)) else { return XCTFail("restored in another precision") }
            XCTAssertNil(restored.network.graph.layerSpecs, "restored as the graph it was, not as a layer stack")
            let b = try steps(restored, 5)
            XCTAssertEqual((a + b).map(\.bitPattern), all.map(\.bitPattern), "\(T.self): losses")
            XCTAssertEqual(restored.network.parameters.array, straight.network.parameters.array, "\(T.self): parameters")
            for (s1, s2) in zip(restored.state, straight.state) { XCTAssertEqual(s1.array, s2.array, "\(T.self): optimizer state") }
            XCTAssertEqual(restored.step, 10)
            // and the model a restored trainer gives back runs in the loaded model's type
            XCTAssertEqual(try restored.network.inferenceModel().graph.dtype, .float32)
            _ = wrap
        }
        try check(Float.self, { .float32($0) }, { if case .float32(let t) = $0 { return t }; return nil })
        try check(Double.self, { .float64($0) }, { if case .float64(let t) = $0 { return t }; return nil })
    }
}
