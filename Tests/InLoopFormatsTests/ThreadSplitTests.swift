import XCTest
import Foundation
@testable import InLoopFormats
@testable import InLoopCore

/// Threads on the benchmark models of ../shared/models (`Engine.Threads`, docs/ENGINE.md "Threads"):
/// a batch split into slices on 2 and 3 threads gives the outputs of the same batch run whole on one
/// thread (within float32 rounding), at batch sizes that do not divide evenly; a split run repeats bit
/// for bit at its thread count.
final class ThreadSplitTests: XCTestCase {
    private var saved = 1
    override func setUp() { saved = Engine.Threads.count }
    override func tearDown() { Engine.Threads.set(saved) }

    func model(_ name: String) throws -> Engine.Model {
        let url = sharedModels.appendingPathComponent("\(name).onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) not present") }
        return try ONNXReader.load(bytes: [UInt8](try Data(contentsOf: url)), name: name)
    }

    /// Inputs in [-2, 2) from a fixed LCG.
    func inputs(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 40) % 4000) / 1000 - 2
        }
    }

    /// (outputs, parts used) of one batch at `threads` threads.
    func run(_ m: Engine.Model, _ x: [Float], batch: Int, threads: Int) throws -> ([Float], Int) {
        Engine.Threads.set(threads)
        let y = try m.runArrays(batch: batch, [x])[0]
        return (y, m.lastParts)
    }

    func check(_ name: String, batches: [Int]) throws {
        let m = try model(name)
        XCTAssertTrue(m.splittable, "\(name): the benchmark models are batch-separable")
        for batch in batches {
            let x = inputs(batch * m.inputSize, seed: UInt64(batch))
            let (whole, p1) = try run(m, x, batch: batch, threads: 1)
            XCTAssertEqual(p1, 1)
            for threads in [2, 3] {
                let (split, parts) = try run(m, x, batch: batch, threads: threads)
                XCTAssertEqual(parts, threads, "\(name) batch \(batch): expected a split into \(threads) parts (work per sample \(m.workPerSample))")
                XCTAssertEqual(split.count, whole.count)
                var worst: Float = 0, scale: Float = 1e-6, differ = 0
                for i in 0..<whole.count {
                    if split[i] != whole[i] { differ += 1 }
                    worst = max(worst, abs(split[i] - whole[i])); scale = max(scale, abs(whole[i]))
                }
                // OpenBLAS need not give a row slice of a GEMM the whole product's bits (docs/ENGINE.md
                // "Threads"): within float32 rounding of the whole run
                XCTAssertLessThan(worst / scale, 1e-5, "\(name) batch \(batch), \(threads) threads: \(differ) values differ")
                let (again, _) = try run(m, x, batch: batch, threads: threads)
                XCTAssertTrue(again == split, "\(name) batch \(batch), \(threads) threads: a repeat differs")
            }
        }
    }

    func testColumnMLP() throws { try check("column_mlp", batches: [257, 1001]) }
    func testColumnMLPSmall() throws { try check("column_mlp_small", batches: [1023]) }
    func testColumnConv1d() throws { try check("column_conv1d", batches: [255, 517]) }
    func testCNN2d() throws { try check("cnn2d", batches: [21, 33]) }
    func testL96() throws { try check("l96", batches: [613, 8191]) }

    /// The work estimate counts transcendental functions (tanh, here): l96's products alone (about 4 k
    /// flops per sample) would leave batch 613 whole on 2 threads, while its 96 tanh per sample take
    /// longer than the products (`Model.transcendentalWork`).
    func testTanhCountsInTheWorkPerSample() throws {
        let l96 = try model("l96")
        XCTAssertEqual(try l96.graph.transcendentalElements(batch: 1), 96)
        XCTAssertEqual(try l96.graph.transcendentalElements(batch: 7), 7 * 96)
        let gemm = try XCTUnwrap(try l96.graph.flops(batch: 1))
        XCTAssertGreaterThanOrEqual(l96.workPerSample, gemm + 96 * Engine.Model.transcendentalWork,
                                    "the fused plan's tanh are counted too")
        XCTAssertLessThan(613 * (l96.workPerSample - 96 * Engine.Model.transcendentalWork), 2 * Engine.Model.minWorkPerPart)
        // ReLU-type activations cost no more than the element work already counted
        XCTAssertEqual(try model("column_mlp").graph.transcendentalElements(batch: 1), 0)
        XCTAssertEqual(try model("cnn2d").graph.transcendentalElements(batch: 1), 0)
    }

    /// Small batches stay on the calling thread.
    func testSmallBatchesRunWhole() throws {
        let m = try model("column_mlp")
        Engine.Threads.set(2)
        for batch in [1, 2, 7] {
            _ = try m.runArrays(batch: batch, [inputs(batch * m.inputSize, seed: 3)])
            XCTAssertEqual(m.lastParts, 1, "batch \(batch)")
        }
    }
}
