import XCTest
@testable import InLoopCore

// The generic (Float/Double) window kernels the differentiable engine runs: Conv.forwardPerSample,
// Conv.backward (im2col/col2im), Pool.average/averageBackward, Pool.max and Pool.globalMax with arg-max
// indices. Checked in Double against the float64 direct loops of KernelTests.swift
// (ktReferenceConv, KernelTestsPool.referencePool); the adjoints by the dot-product identity
// <A·dx, gy> = <dx, Aᵀ·gy> with A applied by those references, to 1e-12 relative.

private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

private func assertRelative(_ a: Double, _ b: Double, scale: Double, _ what: @autoclosure () -> String,
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssert(abs(a - b) <= 1e-12 * max(scale, 1e-300), "\(a) vs \(b): \(what())", file: file, line: line)
}

final class WindowKernelTests: XCTestCase {
    func testConvPerSampleForwardAndBackwardInFloat64() throws {
        var r = KTRandom(31)
        for iter in 0..<60 {
            var c = KTConvCase.random(&r, depthwise: iter % 5 == 1, grouped: iter % 5 == 2)
            c.act = .identity
            let g = try c.geometry()
            let x = r.floats(c.batch * g.inputCount), w = r.floats(g.weightCount, scale: 0.5)
            let b = r.floats(c.cout, scale: 0.5)
            let gy = (0..<(c.batch * g.outputCount)).map { _ in r.unit() }
            let dx = r.floats(x.count), dw = r.floats(w.count)
            let xd = x.map(Double.init), wd = w.map(Double.init), bd = b.map(Double.init)
            var ws = [Double](repeating: .nan, count: max(1, Conv.perSampleWorkspaceCount(geometry: g)))
            var y = [Double](repeating: .nan, count: gy.count)
            // Gradients accumulate: start from a known offset.
            var gx = [Double](repeating: 1, count: x.count), gw = [Double](repeating: 2, count: w.count)
            var gb = [Double](repeating: 3, count: b.count)
            Conv.forwardPerSample(x: xd, batch: c.batch, geometry: g, weight: wd, bias: bd, y: &y, workspace: &ws)
            Conv.backward(x: xd, batch: c.batch, geometry: g, weight: wd, gy: gy, gx: &gx, gw: &gw, gb: &gb, workspace: &ws)
            let ref = ktReferenceConv(c, x: x, w: w, b: b)
            let scale = ref.map { abs($0) }.max() ?? 0
            for i in 0..<y.count { assertRelative(y[i], ref[i], scale: scale, "forward \(c)") }
            // <conv(dx, w), gy> = <dx, gx - 1>; <conv(x, dw), gy> = <dw, gw - 2>.
            let jx = ktReferenceConv(c, x: dx, w: w, b: nil), jw = ktReferenceConv(c, x: x, w: dw, b: nil)
            let sx = dot(jx.map { abs($0) }, gy.map { abs($0) }), sw = dot(jw.map { abs($0) }, gy.map { abs($0) })
            assertRelative(dot(jx, gy), dot(dx.map(Double.init), gx.map { $0 - 1 }), scale: sx, "gx \(c)")
            assertRelative(dot(jw, gy), dot(dw.map(Double.init), gw.map { $0 - 2 }), scale: sw, "gw \(c)")
            let p = g.outputSpatialCount
            for o in 0..<c.cout {
                var s = 0.0
                for n in 0..<c.batch { for q in 0..<p { s += gy[(n * c.cout + o) * p + q] } }
                assertRelative(gb[o] - 3, s, scale: Double(c.batch * p), "gb \(c)")
            }
            // Only what is asked for: no gx, gw, gb pointers, nothing written.
            Conv.backward(x: xd, batch: c.batch, geometry: g, weight: wd, gy: gy, gx: nil, gw: nil, gb: nil, workspace: &ws)
        }
    }

}

extension KernelTestsPool {
    func testPoolAverageBackwardAndMaxIndicesInFloat64() throws {
        var r = KTRandom(32)
        let pools = self
        for iter in 0..<200 {
            let rank = r.int(1, 2)
            var input = [Int](), kernel = [Int](), strides = [Int](), dil = [Int](), pb = [Int](), pe = [Int]()
            for _ in 0..<rank {
                let k = r.pick([1, 2, 3, 4]), d = iter % 3 == 0 ? r.pick([1, 2, 3]) : 1, s = r.pick([1, 2, 3])
                let span = (k - 1) * d + 1
                let a = r.int(0, k - 1), b = r.int(0, k - 1)
                input.append(max(r.int(1, 12), span - a - b)); kernel.append(k); strides.append(s); dil.append(d)
                pb.append(a); pe.append(b)
            }
            if iter % 7 == 0 { input = [2 * r.int(1, 5), 2 * r.int(1, 5)]; kernel = [2, 2]; strides = [2, 2]; dil = [1, 1]; pb = [0, 0]; pe = [0, 0] }
            let ceil = r.bool(), includePad = r.bool(), planes = r.pick([1, 3])
            let g = try PoolGeometry(inputSize: input, kernelSize: kernel, strides: strides, dilations: dil,
                                     padsBegin: pb, padsEnd: pe, ceilMode: ceil)
            let what = "in \(input) k \(kernel) s \(strides) d \(dil) pads \(pb)/\(pe) ceil \(ceil) includePad \(includePad)"
            let x = r.floats(planes * g.inputSpatialCount)
            let xd = x.map(Double.init)
            let gy = (0..<(planes * g.outputSpatialCount)).map { _ in r.unit() }
            var y = [Double](repeating: .nan, count: gy.count)
            Pool.average(x: xd, planes: planes, geometry: g, countIncludePad: includePad, y: &y)
            let ref = pools.referencePool(x, planes: planes, input: input, kernel: kernel, strides: strides, dilations: dil,
                                          pb: pb, pe: pe, out: g.outputSize, isMax: false, includePad: includePad)
            for i in 0..<y.count { assertRelative(y[i], ref[i], scale: 1, "average " + what) }
            var gx = [Double](repeating: 1, count: x.count)
            Pool.averageBackward(gy: gy, planes: planes, geometry: g, countIncludePad: includePad, gx: &gx)
            assertRelative(dot(ref, gy), dot(xd, gx.map { $0 - 1 }), scale: Double(gy.count), "averageBackward " + what)
            // Max with indices: the value is the reference maximum and sits at the index it names.
            var ind = [Int](repeating: -7, count: gy.count)
            Pool.max(x: xd, planes: planes, geometry: g, y: &y, indices: &ind)
            let refMax = pools.referencePool(x, planes: planes, input: input, kernel: kernel, strides: strides, dilations: dil,
                                             pb: pb, pe: pe, out: g.outputSize, isMax: true, includePad: false)
            let p = g.outputSpatialCount
            for i in 0..<y.count {
                XCTAssertEqual(y[i], refMax[i], "max " + what)
                if ind[i] >= 0 { XCTAssertEqual(xd[(i / p) * g.inputSpatialCount + ind[i]], y[i], "index " + what) } else {
                    XCTAssertEqual(y[i], -.infinity, "empty window " + what)
                }
            }
            // Through the indices: the tangent gathers dx there, the adjoint scatters gy back.
            let dx = (0..<x.count).map { _ in r.unit() }
            var ty = [Double](repeating: .nan, count: gy.count), gxm = [Double](repeating: 0, count: x.count)
            Pool.maxTangent(tx: dx, planes: planes, inputSpatial: g.inputSpatialCount, outputSpatial: p, indices: ind, ty: &ty)
            Pool.maxBackward(gy: gy, planes: planes, inputSpatial: g.inputSpatialCount, outputSpatial: p, indices: ind, gx: &gxm)
            for i in 0..<gy.count { XCTAssertEqual(ty[i], ind[i] >= 0 ? dx[(i / p) * g.inputSpatialCount + ind[i]] : 0, what) }
            assertRelative(dot(ty, gy), dot(dx, gxm), scale: Double(gy.count), "maxBackward " + what)
            // Float without indices (the inference engine's call): the same values.
            var yf = [Float](repeating: .nan, count: gy.count)
            Pool.max(x: x, planes: planes, geometry: g, y: &yf)
            XCTAssertEqual(yf.map(Double.init), y, "float max " + what)
        }
    }

    func testGlobalAverageBackwardIsTheAdjointOfTheMean() {
        var r = KTRandom(33)
        let planes = 3, spatial = 7
        let dx = (0..<(planes * spatial)).map { _ in r.unit() }, gy = (0..<planes).map { _ in r.unit() }
        var gx = [Double](repeating: 0.5, count: dx.count)
        Pool.globalAverageBackward(gy: gy, planes: planes, spatial: spatial, gx: &gx)
        let mean = (0..<planes).map { p in (0..<spatial).reduce(0.0) { $0 + dx[p * spatial + $1] } / Double(spatial) }
        assertRelative(dot(mean, gy), dot(dx, gx.map { $0 - 0.5 }), scale: 1, "globalAverageBackward")
    }

    /// The differentiable engine used to drop a NaN behind the first element of a max window
    /// (`x > m` only); the inference engine and onnxruntime propagate it. One rule now, also with indices.
    func testMaxPoolPropagatesNaNWithIndices() throws {
        let g = try PoolGeometry(inputSize: [6], kernelSize: [3], strides: [3])
        let x: [Double] = [1, .nan, 5, -.infinity, -.infinity, -.infinity]
        var y = [Double](repeating: 0, count: 2), ind = [Int](repeating: 0, count: 2)
        Pool.max(x: x, planes: 1, geometry: g, y: &y, indices: &ind)
        XCTAssert(y[0].isNaN)
        XCTAssertEqual(ind, [1, 3])
        XCTAssertEqual(y[1], -.infinity)
        // The 2×2 stride-2 loop: the first maximum (-0 == +0 keeps the earlier), the last NaN.
        let g2 = try PoolGeometry(inputSize: [2, 6], kernelSize: [2, 2], strides: [2, 2])
        let x2: [Float] = [-0.0, 0, 3, .nan, 4, 4,
                           0, -1, 2, .nan, 4, 1]
        var y2 = [Float](repeating: 0, count: 3), i2 = [Int](repeating: -7, count: 3)
        Pool.max(x: x2, planes: 1, geometry: g2, y: &y2, indices: &i2)
        XCTAssertEqual(i2, [0, 9, 4])
        XCTAssertEqual(y2[0].sign, .minus); XCTAssert(y2[1].isNaN); XCTAssertEqual(y2[2], 4)
        var y3 = [Float](repeating: 0, count: 3)
        Pool.max(x: x2, planes: 1, geometry: g2, y: &y3)
        XCTAssertEqual(y3[0].bitPattern, y2[0].bitPattern); XCTAssert(y3[1].isNaN); XCTAssertEqual(y3[2], 4)
        var gy = [Double](repeating: 0, count: 1), gi = [Int](repeating: -1, count: 1)
        Pool.globalMax(x: [2, .nan, 7], planes: 1, spatial: 3, y: &gy, indices: &gi)
        XCTAssert(gy[0].isNaN)
        XCTAssertEqual(gi, [1])
        Pool.globalMax(x: [-.infinity, -.infinity, 3, 3], planes: 1, spatial: 4, y: &gy, indices: &gi)
        XCTAssertEqual(gy, [3]); XCTAssertEqual(gi, [2])
    }
}
