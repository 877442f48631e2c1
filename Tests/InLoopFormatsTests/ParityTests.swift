import Foundation
import XCTest
import InLoopCore
import InLoopFormats

/// Version-1 files on the one engine (issue 10, steps 2.2 and 5.1): every v1 fixture, lowered to the
/// graph IR and run by a bare `Engine.Executor<Float>`, gives the loaded model's (`Engine.Model`'s)
/// outputs bit for bit at every batch size, batched and in reproducible mode; in float64 it matches the
/// fixtures' float64 NumPy references. (Written against the layer-stack engine, which the one engine
/// replaced and which is now deleted; what guards the numbers across that rewrite are the committed
/// goldens of `Tests/c/test_golden.c`.)
final class ParityTests: XCTestCase {
    /// Deterministic inputs in [-2, 2) (a 64-bit LCG), with the batch-1 dense paths and GEMM both hit.
    func inputs(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 4_000_000) / 1_000_000 - 2
        }
    }

    func run(_ ex: Engine.Executor<Float>, _ x: [Float], batch: Int, outCount: Int) throws -> [Float] {
        var y = [Float](repeating: .nan, count: batch * outCount)
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { yp in
                let ins = [xp.baseAddress!], outs = [yp.baseAddress!]
                try ins.withUnsafeBufferPointer { i in try outs.withUnsafeBufferPointer { o in try ex.forward(batch, inputs: i, outputs: o) } }
            }
        }
        return y
    }

    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    func testV1FixturesBitwise() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixturesDir.path)
            .filter { $0.hasSuffix(".io.bin") }.map { String($0.dropLast(7)) }.sorted()
        XCTAssertGreaterThan(names.count, 10)
        var checked = 0
        for name in names {
            let bytes = try FileIO.read(fixturesDir.appendingPathComponent("\(name).safetensors").path)
            let m = try NativeFormat.load(bytes: bytes)
            let g = try NativeFormat.graph(bytes: bytes)
            XCTAssertEqual(g[g.outputs[0]].type?.shape.count, 2, name)
            let plan = try Engine.compile(g)
            XCTAssertEqual(plan.inputSizes, [Engine.Extent(perBatch: m.inputSize)], name)
            XCTAssertEqual(plan.outputSizes, [Engine.Extent(perBatch: m.outputSize)], name)
            let ex = try Engine.Executor<Float>(plan: plan, graph: g)
            // one plan for every batch size, smaller after larger (the arena only grows)
            for batch in [1, 3, 64, 2, 1, 17] {
                let x = inputs(batch * m.inputSize, seed: UInt64(batch) &+ UInt64(name.utf8.count))
                for reproducible in [false, true] {
                    m.reproducible = reproducible
                    ex.reproducible = reproducible
                    let want = try m.forward(x, batch: batch)
                    let got = try run(ex, x, batch: batch, outCount: m.outputSize)
                    XCTAssertEqual(bits(got), bits(want), "\(name) batch \(batch) reproducible \(reproducible)")
                }
            }
            m.reproducible = false
            checked += 1
        }
        XCTAssertEqual(checked, names.count)
    }

    func testFloat64AgainstNumPy() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixturesDir.path)
            .filter { $0.hasSuffix(".io.bin") }.map { String($0.dropLast(7)) }.sorted()
        var worst = 0.0, worstName = "", errors: [Double] = []
        for name in names {
            let io = try readIOBin(fixturesDir.appendingPathComponent("\(name).io.bin"))
            let g = try NativeFormat.graph(bytes: try FileIO.read(fixturesDir.appendingPathComponent("\(name).safetensors").path))
            let ex = try Engine.Executor<Double>(plan: try Engine.compile(g), graph: g)
            var y = [Double](repeating: .nan, count: io.batch * io.nOut)
            try io.x.withUnsafeBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in
                    let ins = [xp.baseAddress!], outs = [yp.baseAddress!]
                    try ins.withUnsafeBufferPointer { i in try outs.withUnsafeBufferPointer { o in try ex.forward(io.batch, inputs: i, outputs: o) } }
                }
            }
            let e = relErr(y, io.y)
            errors.append(e)
            if e > worst { worst = e; worstName = name }
        }
        // Activation parameters (leaky_relu/elu alpha) are float32 in `Activation`, so models with them
        // differ from NumPy's exact alpha by ~1e-8; every other fixture agrees to round-off. A float32
        // evaluation of these fixtures is ~1e-6 off, so both bounds tell float64 compute from float32.
        XCTAssertLessThan(worst, 5e-8, "worst: \(worstName)")
        XCTAssertGreaterThan(errors.filter { $0 < 1e-13 }.count * 3, errors.count * 2, "float64 round-off on most fixtures: \(errors)")
    }

    /// The plan shares slots between values whose lifetimes do not overlap, and element-wise steps
    /// write in place: a deep residual model needs a few slots, not one per layer.
    func testLivenessReusesSlots() throws {
        let g = try NativeFormat.graph(bytes: try FileIO.read(fixturesDir.appendingPathComponent("l96_like.safetensors").path))
        let plan = try Engine.compile(g)
        XCTAssertLessThanOrEqual(plan.slotCount, 2, "a chain of dense layers ping-pongs between two slots")
        XCTAssertGreaterThan(plan.stepCount, 1)
    }

    // MARK: - Differentiable plans: the trainer's network against a bare executor (steps 2.3, 5.1)

    func values<T: EngineScalar>(_ count: Int, seed: UInt64, as _: T.Type) -> [T] {
        inputs(count, seed: seed).map { T($0) }
    }

    /// Forward, reverse (parameter and input gradients, and input gradients alone) and tangent of
    /// every v1 fixture: the trainer's `EngineNetwork<T>` (parameters in one flat buffer the executor
    /// reads in place) bit for bit against a bare executor of the file's graph, in float32 and float64,
    /// at several batches.
    func checkDifferentiable<T: EngineScalar>(_: T.Type) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixturesDir.path)
            .filter { $0.hasSuffix(".io.bin") }.map { String($0.dropLast(7)) }.sorted()
        XCTAssertGreaterThan(names.count, 10)
        for name in names {
            let bytes = try FileIO.read(fixturesDir.appendingPathComponent("\(name).safetensors").path)
            let m = try NativeFormat.load(bytes: bytes)
            let net = try EngineNetwork<T>(model: m)
            let g = try NativeFormat.graph(bytes: bytes)
            let plan = try Engine.compile(g, numerics: .differentiable)
            XCTAssertEqual(plan.parameterCount, net.parameterCount, name)
            let ex = try Engine.Executor<T>(plan: plan, graph: g)
            let p0 = UnsafeBufferPointer(start: try ex.parameters.pointer(as: T.self), count: plan.parameterCount)
            XCTAssertEqual(Array(p0), Array(UnsafeBufferPointer(start: net.parameters.base, count: net.parameterCount)), "\(name): the parameter layout is the trainer's")
            let nIn = m.inputSize, nOut = m.outputSize
            for batch in [1, 5, 33, 2] {
                let x: [T] = values(batch * nIn, seed: UInt64(batch), as: T.self)
                let dy: [T] = values(batch * nOut, seed: UInt64(batch) + 100, as: T.self)
                let dx: [T] = values(batch * nIn, seed: UInt64(batch) + 200, as: T.self)
                var y = [T](repeating: .nan, count: batch * nOut)
                var gx = [T](repeating: .nan, count: batch * nIn), gx2 = gx
                var ty = [T](repeating: .nan, count: batch * nOut)
                try x.withUnsafeBufferPointer { xp in
                    // the trainer
                    let wantY = Array(UnsafeBufferPointer(start: try net.forward(xp.baseAddress!, batch: batch), count: batch * nOut))
                    var wantGx = [T](repeating: 0, count: batch * nIn)
                    try dy.withUnsafeBufferPointer { d in
                        try wantGx.withUnsafeMutableBufferPointer { try net.backward(d.baseAddress!, batch: batch, parameterGradients: true, inputGradient: $0.baseAddress!) }
                    }
                    let wantG = Array(UnsafeBufferPointer(start: net.gradients.base, count: net.parameterCount))
                    let wantTy = Array(UnsafeBufferPointer(start: try dx.withUnsafeBufferPointer { try net.tangent($0.baseAddress!, batch: batch) }, count: batch * nOut))
                    // the one engine
                    try y.withUnsafeMutableBufferPointer { yp in
                        try [xp.baseAddress!].withUnsafeBufferPointer { i in try [yp.baseAddress!].withUnsafeBufferPointer { o in try ex.forward(batch, inputs: i, outputs: o) } }
                    }
                    try dy.withUnsafeBufferPointer { d in
                        try [d.baseAddress!].withUnsafeBufferPointer { seeds in
                            try gx.withUnsafeMutableBufferPointer { g in
                                try [g.baseAddress!].withUnsafeBufferPointer { try ex.backward(batch, seeds: seeds, inputGradients: $0, parameterGradients: true) }
                            }
                        }
                    }
                    let gotG = Array(UnsafeBufferPointer(start: try ex.gradients.pointer(as: T.self), count: plan.parameterCount))
                    // input gradients alone leave the parameter gradients as they were
                    try dy.withUnsafeBufferPointer { d in
                        try [d.baseAddress!].withUnsafeBufferPointer { seeds in
                            try gx2.withUnsafeMutableBufferPointer { g in
                                try [g.baseAddress!].withUnsafeBufferPointer { try ex.backward(batch, seeds: seeds, inputGradients: $0, parameterGradients: false) }
                            }
                        }
                    }
                    try dx.withUnsafeBufferPointer { t in
                        try ty.withUnsafeMutableBufferPointer { o in
                            try [t.baseAddress!].withUnsafeBufferPointer { i in try [o.baseAddress!].withUnsafeBufferPointer { try ex.tangent(batch, inputTangents: i, outputTangents: $0) } }
                        }
                    }
                    let what = "\(name) \(T.self) batch \(batch)"
                    XCTAssertTrue(same(y, wantY), "\(what): forward")
                    XCTAssertTrue(same(gotG, wantG), "\(what): parameter gradients")
                    XCTAssertTrue(same(gx, wantGx), "\(what): input gradients")
                    XCTAssertTrue(same(gx2, wantGx), "\(what): input gradients alone")
                    XCTAssertTrue(same(Array(UnsafeBufferPointer(start: try ex.gradients.pointer(as: T.self), count: plan.parameterCount)), wantG),
                                  "\(what): parameter gradients untouched when not asked for")
                    XCTAssertTrue(same(ty, wantTy), "\(what): tangent")
                }
            }
        }
    }

    /// Bitwise equality (NaN patterns included).
    func same<T: EngineScalar>(_ a: [T], _ b: [T]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy {
            $0.sign == $1.sign && $0.exponentBitPattern == $1.exponentBitPattern && $0.significandBitPattern == $1.significandBitPattern
        }
    }

    func testDifferentiableFloat() throws { try checkDifferentiable(Float.self) }
    func testDifferentiableDouble() throws { try checkDifferentiable(Double.self) }
}
