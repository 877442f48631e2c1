extension Engine {
    /// The reverse (adjoint) and tangent-linear passes of a differentiable plan, derived from its
    /// forward steps: each step kind has its adjoint and its tangent here, once, so an op that lowers
    /// to existing steps is differentiable without code of its own.
    ///
    /// Reverse pass: steps in reverse order; the first contribution to a value's gradient (in that
    /// order) writes it and later ones add, so gradient storages need no zeroing (the layer-stack
    /// trainer's rule, kept so its results are reproduced bit for bit). Parameter gradients go to the
    /// executor's flat gradient vector, input gradients to the caller's arrays.
    struct Differentiator {
        let builder: PlanBuilder
        let forward: [Step]
        let inputs: [Int32]
        let outputs: [Int32]
        var reverse: [Step] = []
        var tangent: [Step] = []
        private var gradientOf: [Int32: Int32] = [:]
        private var tangentOf: [Int32: Int32] = [:]
        private var reached: Set<Int32> = []

        init(builder: PlanBuilder, forward: [Step], inputs: [Int32], outputs: [Int32]) {
            self.builder = builder; self.forward = forward; self.inputs = inputs; self.outputs = outputs
        }

        private var storages: [StorageInfo] { builder.storages }

        private func isConstant(_ s: Int32) -> Bool {
            if case .constant = storages[Int(s)].kind { return true }
            return false
        }

        private func isParameter(_ s: Int32) -> Bool {
            if case .parameter = storages[Int(s)].kind { return true }
            return false
        }

        private func isGraphInput(_ s: Int32) -> Bool {
            if case .input = storages[Int(s)].kind { return true }
            return false
        }

        /// The storage holding d loss/d s (made on first use).
        private mutating func gradient(_ s: Int32) -> Int32 {
            if let g = gradientOf[s] { return g }
            let g: Int32
            if case .parameter(let offset) = storages[Int(s)].kind {
                g = builder.newStorage(.parameterGradient(offset), storages[Int(s)].size)
            } else {
                g = builder.temporary(storages[Int(s)].size)
            }
            gradientOf[s] = g
            return g
        }

        /// True for the first contribution to s's gradient (it writes; later ones add).
        private mutating func first(_ s: Int32) -> Bool { reached.insert(s).inserted }

        private func role(_ s: Int32) -> GradientRole {
            isGraphInput(s) ? .inputGradientsOnly : isParameter(s) ? .parameterGradientsOnly : .always
        }

        private mutating func emitReverse(_ kind: StepKind, _ ops: [Int32], node: Int32, role: GradientRole) {
            reverse.append(Step(kind: kind, io: Int32(builder.ids.count), node: node, role: role))
            builder.ids += ops
        }

        private mutating func emitTangent(_ kind: StepKind, _ ops: [Int32], node: Int32) {
            tangent.append(Step(kind: kind, io: Int32(builder.ids.count), node: node))
            builder.ids += ops
        }

        mutating func build() throws(InLoopError) {
            try buildReverse()
            try buildTangent()
        }

        private mutating func buildReverse() throws(InLoopError) {
            // d loss/d outputs: the caller's seeds
            for (k, o) in outputs.enumerated() {
                let seed = builder.newStorage(.outputSeed(k), storages[Int(o)].size)
                emitReverse(.accumulate(count: storages[Int(o)].size, accumulate: !first(o)), [seed, gradient(o)], node: -1, role: .always)
            }
            for step in forward.reversed() {
                let ops = Array(builder.operands(step))
                let node = step.node
                guard let y = ops.last, reached.contains(y) else { continue }   // no gradient reaches its result
                let gy = gradient(y)
                switch step.kind {
                case .dense(let rows, let k, let m, let hasBias, let act):
                    guard act == .identity else { throw InLoopError(.internal, "a differentiable plan fuses no activation into dense") }
                    let x = ops[0], w = ops[1]
                    if isParameter(w) {
                        var o = [gy, x, gradient(w)]
                        if hasBias {
                            guard isParameter(ops[2]) else { throw InLoopError(.unsupported, "a constant bias with a trainable weight") }
                            o.append(gradient(ops[2]))
                            _ = first(ops[2])
                        }
                        emitReverse(.denseParameterGradients(rows: rows, inCols: k, outCols: m, hasBias: hasBias, accumulate: !first(w)),
                                    o, node: node, role: .parameterGradientsOnly)
                    } else if hasBias, isParameter(ops[2]) {
                        throw InLoopError(.unsupported, "a trainable bias with a constant weight")
                    }
                    if !isConstant(x) && !isParameter(x) {
                        emitReverse(.denseInputGradient(rows: rows, inCols: k, outCols: m, accumulate: !first(x)), [gy, w, gradient(x)],
                                    node: node, role: role(x))
                    }
                case .activation(let act, let count):
                    let z = ops[0]
                    guard !isConstant(z), !isParameter(z) else { continue }
                    emitReverse(.activationBackward(act, count: count, accumulate: !first(z)), [z, y, gy, gradient(z)], node: node, role: role(z))
                case .normalize(let rows, let cols, let inverse):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.normalizeLinear(rows: rows, cols: cols, inverse: inverse, zeroFirst: first(x), tangent: false),
                                [gy, ops[2], gradient(x)], node: node, role: role(x))
                case .add(let count):
                    for x in [ops[0], ops[1]] where !isConstant(x) && !isParameter(x) {
                        emitReverse(.accumulate(count: count, accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                    }
                case .copy(let count):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.accumulate(count: count, accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                case .zero:
                    continue
                // MARK: family elementwise (reverse rules)

                // MARK: family shape (reverse rules)

                // MARK: family matmul-norm (reverse rules)

                // MARK: family conv-pool (reverse rules)
                case .conv(let geo, let batch, let hasBias, let act), .convTranspose(let geo, let batch, let hasBias, let act):
                    guard act == .identity else { throw InLoopError(.internal, "a differentiable plan fuses no activation into a convolution") }
                    var transposed = false
                    if case .convTranspose = step.kind { transposed = true }
                    func kind(_ of: WindowGradient, _ accumulate: Bool) -> StepKind {
                        transposed ? .convTransposeGradient(geometry: geo, batch: batch, of: of, accumulate: accumulate)
                                   : .convGradient(geometry: geo, batch: batch, of: of, accumulate: accumulate)
                    }
                    let x = ops[0], w = ops[1], scratch = ops[hasBias ? 3 : 2]
                    if !isConstant(w) {
                        emitReverse(kind(.weight, !first(w)), [gy, x, scratch, gradient(w)], node: node, role: role(w))
                    }
                    if hasBias, !isConstant(ops[2]) {
                        emitReverse(kind(.bias, !first(ops[2])), [gy, gradient(ops[2])], node: node, role: role(ops[2]))
                    }
                    if !isConstant(x) && !isParameter(x) {
                        emitReverse(kind(.input, !first(x)), [gy, w, scratch, gradient(x)], node: node, role: role(x))
                    }
                case .maxPool(let geo, let planes):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    let scratch = builder.scratch(try Differentiator.indexScratch(storages[Int(y)].size))
                    emitReverse(.maxPoolDerivative(geometry: geo, planes: planes, spatial: 0, tangent: false, accumulate: !first(x)),
                                [x, gy, scratch, gradient(x)], node: node, role: role(x))
                case .averagePool(let geo, let planes, let cip):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.averagePoolGradient(geometry: geo, planes: planes, spatial: 0, countIncludePad: cip, accumulate: !first(x)),
                                [gy, gradient(x)], node: node, role: role(x))
                case .globalPool(let takesMax, let planes, let spatial):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    if takesMax {
                        let scratch = builder.scratch(try Differentiator.indexScratch(storages[Int(y)].size))
                        emitReverse(.maxPoolDerivative(geometry: -1, planes: planes, spatial: spatial, tangent: false, accumulate: !first(x)),
                                    [x, gy, scratch, gradient(x)], node: node, role: role(x))
                    } else {
                        emitReverse(.averagePoolGradient(geometry: -1, planes: planes, spatial: spatial, countIncludePad: false,
                                                         accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                    }
                case .resizeNearest(let geo, let outer):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.resizeNearestGradient(geometry: geo, outer: outer, accumulate: !first(x)), [gy, gradient(x)],
                                node: node, role: role(x))

                default:
                    throw InLoopError(.internal, "a reverse step in a forward pass")
                }
            }
            // Inputs and parameters no gradient reaches: zero (first, so the reverse pass defines them).
            var prologue: [Step] = []
            let saved = reverse
            reverse = []
            for s in builder.storages.indices.map(Int32.init) where isParameter(s) && !reached.contains(s) {
                emitReverse(.zero(count: storages[Int(s)].size), [gradient(s)], node: -1, role: .parameterGradientsOnly)
            }
            for x in inputs where !reached.contains(x) {
                emitReverse(.zero(count: storages[Int(x)].size), [gradient(x)], node: -1, role: .inputGradientsOnly)
            }
            prologue = reverse
            reverse = prologue + saved
            // d loss/d inputs into the caller's arrays
            for (k, x) in inputs.enumerated() {
                let out = builder.newStorage(.inputGradient(k), storages[Int(x)].size)
                emitReverse(.accumulate(count: storages[Int(x)].size, accumulate: false), [gradient(x), out], node: -1, role: .inputGradientsOnly)
            }
        }

        private mutating func buildTangent() throws(InLoopError) {
            for (k, x) in inputs.enumerated() where tangentOf[x] == nil {
                tangentOf[x] = builder.newStorage(.inputTangent(k), storages[Int(x)].size)
            }
            func tangentStorage(_ s: Int32) -> Int32? { tangentOf[s] }
            for step in forward {
                let ops = Array(builder.operands(step))
                guard let y = ops.last else { continue }
                let ty = builder.temporary(storages[Int(y)].size)
                tangentOf[y] = ty
                switch step.kind {
                case .dense(let rows, let k, let m, _, _):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.dense(rows: rows, inCols: k, outCols: m, hasBias: false, activation: .identity), [tx, ops[1], ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .activation(let act, let count):
                    if let tz = tangentStorage(ops[0]) {
                        emitTangent(.activationBackward(act, count: count, accumulate: false), [ops[0], y, tz, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: count), [ty], node: step.node)
                    }
                case .normalize(let rows, let cols, let inverse):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.normalizeLinear(rows: rows, cols: cols, inverse: inverse, zeroFirst: false, tangent: true),
                                    [tx, ops[2], ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .add(let count):
                    switch (tangentStorage(ops[0]), tangentStorage(ops[1])) {
                    case (let a?, let b?): emitTangent(.add(count: count), [a, b, ty], node: step.node)
                    case (let a?, nil), (nil, let a?): emitTangent(.copy(count: count), [a, ty], node: step.node)
                    case (nil, nil): emitTangent(.zero(count: count), [ty], node: step.node)
                    }
                case .copy(let count):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.copy(count: count), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: count), [ty], node: step.node)
                    }
                case .zero(let count):
                    emitTangent(.zero(count: count), [ty], node: step.node)
                // MARK: family elementwise (tangent rules)

                // MARK: family shape (tangent rules)

                // MARK: family matmul-norm (tangent rules)

                // MARK: family conv-pool (tangent rules)
                case .conv(let geo, let batch, let hasBias, _), .convTranspose(let geo, let batch, let hasBias, _):
                    // linear in x (W and B are constants or parameters, which have no tangent)
                    if let tx = tangentStorage(ops[0]) {
                        var kind = StepKind.conv(geometry: geo, batch: batch, hasBias: false, activation: .identity)
                        if case .convTranspose = step.kind { kind = .convTranspose(geometry: geo, batch: batch, hasBias: false, activation: .identity) }
                        emitTangent(kind, [tx, ops[1], ops[hasBias ? 3 : 2], ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .maxPool(let geo, let planes):
                    if let tx = tangentStorage(ops[0]) {
                        let scratch = builder.scratch(try Differentiator.indexScratch(storages[Int(y)].size))
                        emitTangent(.maxPoolDerivative(geometry: geo, planes: planes, spatial: 0, tangent: true, accumulate: false),
                                    [ops[0], tx, scratch, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .averagePool(let geo, let planes, let cip):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.averagePool(geometry: geo, planes: planes, countIncludePad: cip), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .globalPool(let takesMax, let planes, let spatial):
                    if let tx = tangentStorage(ops[0]) {
                        if takesMax {
                            let scratch = builder.scratch(try Differentiator.indexScratch(storages[Int(y)].size))
                            emitTangent(.maxPoolDerivative(geometry: -1, planes: planes, spatial: spatial, tangent: true, accumulate: false),
                                        [ops[0], tx, scratch, ty], node: step.node)
                        } else {
                            emitTangent(.globalPool(max: false, planes: planes, spatial: spatial), [tx, ty], node: step.node)
                        }
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .resizeNearest(let geo, let outer):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.resizeNearest(geometry: geo, outer: outer), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }

                default:
                    throw InLoopError(.internal, "a reverse step in a forward pass")
                }
            }
            for (k, o) in outputs.enumerated() {
                guard let t = tangentOf[o] else { throw InLoopError(.internal, "output without a tangent") }
                let out = builder.newStorage(.outputTangent(k), storages[Int(o)].size)
                emitTangent(.copy(count: storages[Int(o)].size), [t, out], node: -1)
            }
        }
    }
}
