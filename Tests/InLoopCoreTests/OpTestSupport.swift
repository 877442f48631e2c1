import XCTest
@testable import InLoopCore

/// Helpers shared by the op-family tests of the one engine (issue 10, phase 3): run a graph's plan
/// forward, backward and tangent in either scalar type, and check the reverse and tangent passes of a
/// float64 differentiable plan against central finite differences.
enum OpTest {
    /// Deterministic values in `range` (a 64-bit LCG).
    static func values<T: EngineScalar>(_ count: Int, seed: UInt64, in range: ClosedRange<Double> = -2...2,
                                        as _: T.Type = T.self) -> [T] {
        var s = seed &* 0x9E3779B97F4A7C15 &+ 1
        return (0..<count).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            let u = Double(s >> 11) / Double(1 << 53)
            return T(range.lowerBound + (range.upperBound - range.lowerBound) * u)
        }
    }

    /// A graph input of `dtype` and shape: `Int` entries are known sizes, the string "N" is the batch
    /// symbol (made the graph's batch).
    static func shape(_ g: Engine.Graph, _ dims: [Any]) -> Engine.Shape {
        dims.map { d -> Engine.SymInt in
            if let k = d as? Int { return Engine.SymInt(k) }
            let sym = g.symbol(named: d as? String ?? "N")
            if g.batch == nil { g.batch = sym }
            return Engine.SymInt(sym)
        }
    }

    /// An executor with the input arrays of its last forward kept alive: the reverse and tangent
    /// passes read the forward's inputs in place (as a caller's arrays must stay valid between
    /// `forward` and `backward`).
    final class Harness<T: EngineScalar> {
        let ex: Engine.Executor<T>
        private var held: [UnsafeMutableBufferPointer<T>] = []

        init(_ ex: Engine.Executor<T>) { self.ex = ex }
        convenience init(_ g: Engine.Graph, numerics: Numerics = .inference) throws {
            self.init(try Engine.Executor<T>(plan: try Engine.compile(g, numerics: numerics), graph: g))
        }
        deinit { release() }

        private func release() {
            for b in held { b.deallocate() }
            held = []
        }

        /// Forward at batch n: one flat array per graph input; returns one per output (sizes from the plan).
        func forward(_ inputs: [[T]], n: Int) throws -> [[T]] {
            guard inputs.count == ex.plan.inputSizes.count else {
                throw InLoopError(.sizeMismatch, "\(inputs.count) test inputs, the plan takes \(ex.plan.inputSizes.count)")
            }
            for (k, size) in ex.plan.inputSizes.enumerated() where inputs[k].count != size.at(n) {
                throw InLoopError(.sizeMismatch, "test input \(k) has \(inputs[k].count) values, the plan takes \(size.at(n))")
            }
            release()
            for a in inputs {
                let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
                _ = b.initialize(from: a)
                held.append(b)
            }
            var outs = ex.plan.outputSizes.map { [T](repeating: .nan, count: $0.at(n)) }
            try held.map { UnsafePointer($0.baseAddress!) }.withUnsafeBufferPointer { ins in
                try OpTest.withMutablePointers(&outs) { o in try ex.forward(n, inputs: ins, outputs: o) }
            }
            return outs
        }

        /// Reverse pass after a forward at n: d loss/d inputs, and d loss/d parameters (the executor's
        /// flat gradient vector).
        func backward(seeds: [[T]], n: Int) throws -> (inputs: [[T]], parameters: [T]) {
            var gx = ex.plan.inputSizes.map { [T](repeating: .nan, count: $0.at(n)) }
            try OpTest.withPointers(seeds) { s in
                try OpTest.withMutablePointers(&gx) { g in try ex.backward(n, seeds: s, inputGradients: g, parameterGradients: true) }
            }
            let gp = Array(UnsafeBufferPointer(start: try ex.gradients.pointer(as: T.self), count: ex.plan.parameterCount))
            return (gx, gp)
        }

        /// Tangent-linear pass after a forward at n.
        func tangent(_ tangents: [[T]], n: Int) throws -> [[T]] {
            var ty = ex.plan.outputSizes.map { [T](repeating: .nan, count: $0.at(n)) }
            try OpTest.withPointers(tangents) { t in
                try OpTest.withMutablePointers(&ty) { o in try ex.tangent(n, inputTangents: t, outputTangents: o) }
            }
            return ty
        }
    }

    /// Compiles a verified, typed graph and runs it forward (inference numerics by default).
    static func run<T: EngineScalar>(_ g: Engine.Graph, _ inputs: [[T]], n: Int,
                                     numerics: Numerics = .inference) throws -> [[T]] {
        try Harness<T>(g, numerics: numerics).forward(inputs, n: n)
    }

    /// Checks a float64 differentiable plan of `g` at batch n: input gradients, parameter gradients
    /// (`g.parameters`) and the tangent against central differences of the forward pass, with
    /// L = Σ seed·y. `inputs` default to values in [-1.5, 1.5]; pick inputs away from kinks (ReLU at 0,
    /// max ties) for ops that have them. Returns the largest relative error seen.
    @discardableResult
    static func checkGradients(_ g: Engine.Graph, n: Int, inputs given: [[Double]]? = nil, step h: Double = 1e-6,
                               tolerance: Double = 1e-6, file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        let plan = try Engine.compile(g, numerics: .differentiable)
        let ex = try Engine.Executor<Double>(plan: plan, graph: g)
        let hx = Harness(ex)
        let x = given ?? plan.inputSizes.enumerated().map { values($0.element.at(n), seed: UInt64(31 + $0.offset), in: -1.5...1.5) }
        let seeds = plan.outputSizes.enumerated().map { values($0.element.at(n), seed: UInt64(71 + $0.offset), as: Double.self) }
        let dirs = plan.inputSizes.enumerated().map { values($0.element.at(n), seed: UInt64(97 + $0.offset), as: Double.self) }
        func loss(_ xs: [[Double]]) throws -> Double {
            let ys = try hx.forward(xs, n: n)
            var l = 0.0
            for (y, s) in zip(ys, seeds) { for i in y.indices { l += y[i] * s[i] } }
            return l
        }
        _ = try hx.forward(x, n: n)
        let (gx, gp) = try hx.backward(seeds: seeds, n: n)
        _ = try hx.forward(x, n: n)
        let ty = try hx.tangent(dirs, n: n)
        var worst = 0.0
        func compare(_ got: Double, _ want: Double, _ what: String) {
            let err = abs(got - want) / max(1, abs(want))
            worst = max(worst, err)
            if !(err <= tolerance) { XCTFail("\(what): analytic \(got), finite difference \(want)", file: file, line: line) }
        }
        for k in x.indices {
            for i in x[k].indices {
                var xp = x, xm = x
                xp[k][i] += h; xm[k][i] -= h
                compare(gx[k][i], (try loss(xp) - loss(xm)) / (2 * h), "d loss/d input \(k)[\(i)]")
            }
        }
        let p = try ex.parameters.pointer(as: Double.self)
        for i in 0..<plan.parameterCount {
            let v = p[i]
            p[i] = v + h; let lp = try loss(x)
            p[i] = v - h; let lm = try loss(x)
            p[i] = v
            compare(gp[i], (lp - lm) / (2 * h), "d loss/d parameter [\(i)]")
        }
        var xp = x, xm = x
        for k in x.indices { for i in x[k].indices { xp[k][i] += h * dirs[k][i]; xm[k][i] -= h * dirs[k][i] } }
        let yp = try hx.forward(xp, n: n), ym = try hx.forward(xm, n: n)
        for k in ty.indices { for i in ty[k].indices { compare(ty[k][i], (yp[k][i] - ym[k][i]) / (2 * h), "tangent of output \(k)[\(i)]") } }
        return worst
    }

    /// Largest |a − b| / max(1, |b|).
    static func maxRelativeError<T: EngineScalar>(_ a: [T], _ b: [T]) -> Double {
        precondition(a.count == b.count, "sizes differ")
        var worst = 0.0
        for (x, y) in zip(a, b) {
            let dx = Double(x), dy = Double(y)
            worst = max(worst, abs(dx - dy) / max(1, abs(dy)))
        }
        return worst
    }

    static func withPointers<T, R>(_ arrays: [[T]], _ body: (UnsafeBufferPointer<UnsafePointer<T>>) throws -> R) throws -> R {
        var ptrs: [UnsafePointer<T>] = []
        var owners: [UnsafeMutableBufferPointer<T>] = []
        defer { for o in owners { o.deallocate() } }
        for a in arrays {
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
            _ = b.initialize(from: a)
            owners.append(b)
            ptrs.append(UnsafePointer(b.baseAddress!))
        }
        return try ptrs.withUnsafeBufferPointer { try body($0) }
    }

    static func withMutablePointers<T, R>(_ arrays: inout [[T]], _ body: (UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws -> R) throws -> R {
        var owners: [UnsafeMutableBufferPointer<T>] = []
        defer { for o in owners { o.deallocate() } }
        for a in arrays {
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
            _ = b.initialize(from: a)
            owners.append(b)
        }
        let result = try owners.map { $0.baseAddress! }.withUnsafeBufferPointer { try body($0) }
        for k in arrays.indices { arrays[k] = Array(owners[k].prefix(arrays[k].count)) }
        return result
    }
}
