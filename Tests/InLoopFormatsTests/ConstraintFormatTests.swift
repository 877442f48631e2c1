import XCTest
@testable import InLoopCore
@testable import InLoopFormats

/// Constraints in files and configurations (issue 15, item 1): a model with constraints saved as
/// native v2 and loaded again gives bitwise the same outputs (and re-saves to the same bytes); the
/// trainer configuration's `constraints:` list is parsed, checked and applied, and a trained model
/// keeps its constraints when saved.
final class ConstraintFormatTests: XCTestCase {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    static let yaml = """
    model:
      inputs: 4
      layers:
        - {type: dense, out: 16, activation: tanh}
        - {type: dense, out: 5}
    constraints:
      - {type: bounds, lo: 0, form: softplus}
      - {type: mass_fixer, weights: [1, 2, 1, 0.5, 1]}
      - {type: conservation, weights: [1, 2, 1, 0.5, 1], target_feature: 3}
    optimizer: {type: adam, lr: 0.01}
    seed: 7
    """

    func testConfigurationParsesAndRoundTrips() throws {
        let c = try TrainingConfigFormat.parse(Self.yaml)
        XCTAssertEqual(c.constraints, [.bounds(lo: 0, hi: nil, softplus: true), .massFixer(weights: [1, 2, 1, 0.5, 1]),
                                       .conservation(weights: [1, 2, 1, 0.5, 1], target: .feature(3))])
        XCTAssertEqual(try TrainingConfigFormat.config(TrainingConfigFormat.json(c)), c, "written and read back")
        func status(_ text: String) -> InLoopError.Kind? {
            do { _ = try TrainingConfigFormat.parse(text); return nil } catch { return error.kind }
        }
        let base = "model: {inputs: 4, layers: [{type: dense, out: 5}]}\n"
        for bad in ["constraints: [{type: bounds}]", "constraints: [{type: bounds, lo: 1, hi: 0}]",
                    "constraints: [{type: bounds, lo: 0, form: tanh}]", "constraints: [{type: magic}]",
                    "constraints: [{type: mass_fixer}]", "constraints: [{type: conservation, weights: [1, 1, 1, 1, 1]}]",
                    "constraints: [{type: bounds, lo: 0, weights: [1]}]", "constraints: {type: bounds, lo: 0}"] {
            XCTAssertEqual(status(base + bad), .invalidArgument, bad)
        }
        XCTAssertEqual(status("constraints: [{type: bounds, lo: 0}]"), .invalidArgument, "constraints need the model's layers")
        // sizes are checked when the trainer is made: 4 weights for 5 outputs, feature 4 of 4 inputs
        for bad in ["constraints: [{type: mass_fixer, weights: [1, 1, 1, 1]}]",
                    "constraints: [{type: conservation, weights: [1, 1, 1, 1, 1], target_feature: 4}]"] {
            let c = try TrainingConfigFormat.parse(base + bad)
            XCTAssertThrowsError(try Trainer<Float>(config: c), bad)
        }
    }

    /// A checkpoint of a constrained trainer (a graph checkpoint) restarts exactly: 3 steps, save, 3
    /// more steps against restore + the same 3 steps, bitwise.
    func testCheckpointRestartBitwise() throws {
        let t = try Trainer<Float>(config: try TrainingConfigFormat.parse(Self.yaml))
        let n = 8
        let x: [Float] = (0..<n * 4).map { Float(($0 * 37) % 23) / 10 + 0.1 }
        let y: [Float] = (0..<n * 5).map { Float(($0 * 13) % 7) / 7 }
        func step(_ t: Trainer<Float>) throws -> Double {
            try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { yp in try t.trainStep(x: xp.baseAddress!, y: yp.baseAddress!, batch: n) } }
        }
        for _ in 0..<3 { _ = try step(t) }
        let bytes = try Checkpoint.serialize(t)
        guard case .float32(let r) = try Checkpoint.load(bytes: bytes) else { return XCTFail("a float32 trainer") }
        XCTAssertEqual(r.network.graph.nodes.map { $0.op.name }.filter { ["Bounds", "MassFixer", "ConservationProjection"].contains($0) },
                       ["Bounds", "MassFixer", "ConservationProjection"])
        var a: [Double] = [], b: [Double] = []
        for _ in 0..<3 { a.append(try step(t)); b.append(try step(r)) }
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
        let pa = Array(UnsafeBufferPointer(start: t.network.parameters.base, count: t.network.parameterCount))
        let pb = Array(UnsafeBufferPointer(start: r.network.parameters.base, count: r.network.parameterCount))
        XCTAssertEqual(pa.map(\.bitPattern), pb.map(\.bitPattern))
    }

    /// Train with all three constraints, save (v2: the graph holds them), load: bitwise the same
    /// outputs as the trainer's model, the same bytes when saved again, conservation and positivity.
    func testTrainSaveReloadBitwise() throws {
        let c = try TrainingConfigFormat.parse(Self.yaml)
        let t = try Trainer<Float>(config: c)
        let n = 16
        let x: [Float] = (0..<n * 4).map { Float(($0 * 37) % 23) / 10 + 0.1 }
        let y: [Float] = (0..<n * 5).map { Float(($0 * 13) % 7) / 7 }
        for _ in 0..<10 {
            _ = try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { yp in try t.trainStep(x: xp.baseAddress!, y: yp.baseAddress!, batch: n) } }
        }
        let m1 = try t.network.inferenceModel()
        let bytes = try NativeFormat.serialize(m1)
        let m2 = try NativeFormat.load(bytes: bytes)
        XCTAssertEqual(m2.graph.nodes.filter { $0.op.domain == "inloop" && $0.op.name != "Dense" }.map { $0.op.name },
                       ["Bounds", "MassFixer", "ConservationProjection"])
        XCTAssertEqual(try NativeFormat.serialize(m2), bytes, "re-saving gives the same bytes")
        for batch in [1, n] {
            let xs = Array(x[0 ..< batch * 4])
            let y1 = try m1.runArrays(batch: batch, [xs])[0], y2 = try m2.runArrays(batch: batch, [xs])[0]
            XCTAssertEqual(bits(y1), bits(y2), "batch \(batch)")
            let w: [Double] = [1, 2, 1, 0.5, 1]
            for s in 0..<batch {
                var wy = 0.0
                for j in 0..<5 { wy += w[j] * Double(y2[s * 5 + j]) }
                XCTAssertLessThan(abs(wy - Double(xs[s * 4 + 3])) / Double(xs[s * 4 + 3]), 1e-6, "column \(s)")
            }
        }
    }
}
