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
                case .broadcast(let op, let geometry):
                    // constants get no gradient; parameters theirs in the flat vector (role)
                    for (k, x) in [ops[0], ops[1]].enumerated() where !isConstant(x) {
                        emitReverse(.broadcastAdjoint(op, operand: Int8(k), geometry: geometry, accumulate: !first(x)),
                                    [ops[0], ops[1], y, gy, gradient(x)], node: node, role: role(x))
                    }
                case .unary(let f, let count):
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    emitReverse(.unaryBackward(f, count: count, accumulate: !first(x)), [x, y, gy, gradient(x)], node: node, role: role(x))
                case .clip(let count, let hasMin, let hasMax):
                    let bounds = Array(ops[1..<(ops.count - 1)])
                    var targets: [(Int8, Int32)] = [(0, ops[0])]
                    if hasMin { targets.append((1, ops[1])) }
                    if hasMax { targets.append((2, ops[hasMin ? 2 : 1])) }
                    for (target, x) in targets where !isConstant(x) {
                        emitReverse(.clipLinear(count: count, hasMin: hasMin, hasMax: hasMax, target: target, tangent: false, accumulate: !first(x)),
                                    [ops[0]] + bounds + [gy, gradient(x)], node: node, role: role(x))
                    }
                case .softmax(let geometry, let log):
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    emitReverse(.softmaxBackward(geometry: geometry, log: log, accumulate: !first(x)), [y, gy, gradient(x)], node: node, role: role(x))

                // MARK: family shape (reverse rules)
                case .layoutCopy(let geometry, _):
                    // gx (+)= gy through the inverse map; zero first where the map reaches part of x
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    let mode: TensorOps.CopyMode = !first(x) ? .accumulate : Layout.coversSource(builder.ints, geometry) ? .write : .zeroThenAccumulate
                    let g = builder.addInts(Layout.reversed(builder.ints, geometry, zeroCount: storages[Int(x)].size))
                    emitReverse(.layoutCopy(geometry: g, mode: mode), [gy, gradient(x)], node: node, role: role(x))
                case .concat(let geometry, let parts):
                    // each input's gradient is its slice of gy
                    for i in 0..<parts where !isConstant(ops[i]) {
                        let x = ops[i]
                        emitReverse(.layoutCopy(geometry: Layout.concatSlice(builder.ints, geometry, part: i), mode: first(x) ? .write : .accumulate),
                                    [gy, gradient(x)], node: node, role: role(x))
                    }
                case .gather(let geometry):
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    emitReverse(.gatherBackward(geometry: geometry, accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                // MARK: family constraints (reverse rules)
                case .columnProjection(let rows, let cols, true, true, false, let perColumnW):
                    // y' = P y + w s/(w·w), P = I − w wᵀ/(w·w) symmetric: gy (+)= P g, gs (+)= w·g/(w·w);
                    // a per-column w (a value of the graph) also gets its own adjoint
                    let x = ops[0], w = ops[1], s = ops[2]
                    if !isConstant(x) && !isParameter(x) {
                        emitReverse(.columnProjection(rows: rows, cols: cols, hasY: true, hasS: false, accumulate: !first(x),
                                                      perColumnW: perColumnW),
                                    [gy, w, gradient(x)], node: node, role: role(x))
                    }
                    if !isConstant(s) && !isParameter(s) {
                        emitReverse(.columnProjectionTarget(rows: rows, cols: cols, accumulate: !first(s), perColumnW: perColumnW),
                                    [gy, w, gradient(s)], node: node, role: role(s))
                    }
                    if perColumnW && !isConstant(w) && !isParameter(w) {
                        emitReverse(.columnProjectionWeights(rows: rows, cols: cols, mode: 0, accumulate: !first(w)),
                                    [x, w, s, gy, gradient(w)], node: node, role: role(w))
                    }
                case .massFixer(let rows, let cols, 0, false):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.massFixer(rows: rows, cols: cols, mode: 1, accumulate: !first(x)), [x, ops[1], gy, gradient(x)],
                                node: node, role: role(x))
                case .columnProjection, .columnProjectionTarget, .columnProjectionWeights, .massFixer:
                    throw InLoopError(.internal, "a derivative step in a forward plan")
                case .roundToFloat32(let count):
                    // rounding passes gradients through unchanged (as PyTorch's cast)
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    emitReverse(.accumulate(count: count, accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                case .fill, .fillLinear:
                    continue

                // MARK: family matmul-norm (reverse rules)
                case .matMul(let geo, let alpha, let beta, let hasC, let accumulate, let act):
                    guard act == .identity, !accumulate else {
                        throw InLoopError(.internal, "a differentiable plan fuses no activation into a matrix product")
                    }
                    let a = ops[0], b = ops[1]
                    if !isConstant(a) {
                        emitReverse(.matMulGradientA(geometry: geo, alpha: alpha, accumulate: !first(a)), [gy, b, gradient(a)],
                                    node: node, role: role(a))
                    }
                    if !isConstant(b) {
                        emitReverse(.matMulGradientB(geometry: geo, alpha: alpha, accumulate: !first(b)), [a, gy, gradient(b)],
                                    node: node, role: role(b))
                    }
                    if hasC, !isConstant(ops[2]) {
                        let c = ops[2]
                        emitReverse(.matMulGradientC(geometry: geo, beta: beta, accumulate: !first(c)), [gy, gradient(c)],
                                    node: node, role: role(c))
                    }
                case .channelAffine(let outer, let channels, let spatial, let coef, let shift, let accumulate):
                    guard shift, !accumulate else { throw InLoopError(.internal, "a linear channel map in a forward pass") }
                    let x = ops[0]
                    guard !isConstant(x) else { continue }
                    emitReverse(.channelAffine(outer: outer, channels: channels, spatial: spatial, coefficients: coef, shift: false,
                                               accumulate: !first(x)), [gy, gradient(x)], node: node, role: role(x))
                case .batchNorm(let outer, let channels, let spatial, let stats):
                    let x = ops[0], sc = ops[1], bias = ops[2]
                    if !isConstant(x) {
                        emitReverse(.batchNormInputGradient(outer: outer, channels: channels, spatial: spatial, statistics: stats,
                                                            accumulate: !first(x)), [gy, sc, gradient(x)], node: node, role: role(x))
                    }
                    if !isConstant(sc) {
                        emitReverse(.batchNormScaleGradient(outer: outer, channels: channels, spatial: spatial, statistics: stats,
                                                            accumulate: !first(sc)), [gy, x, gradient(sc)], node: node, role: role(sc))
                    }
                    if !isConstant(bias) {
                        emitReverse(.channelSums(outer: outer, channels: channels, spatial: spatial, accumulate: !first(bias)),
                                    [gy, gradient(bias)], node: node, role: role(bias))
                    }
                case .layerNorm(let rows, let cols, let eps, let hasBias):
                    let x = ops[0], sc = ops[1]
                    if !isConstant(x) {
                        emitReverse(.layerNormLinear(rows: rows, cols: cols, epsilon: eps, tangent: false, accumulate: !first(x)),
                                    [x, sc, gy, gradient(x)], node: node, role: role(x))
                    }
                    if !isConstant(sc) {
                        emitReverse(.layerNormScaleGradient(rows: rows, cols: cols, epsilon: eps, accumulate: !first(sc)),
                                    [x, gy, gradient(sc)], node: node, role: role(sc))
                    }
                    if hasBias, !isConstant(ops[2]) {
                        let bias = ops[2]
                        emitReverse(.channelSums(outer: rows, channels: cols, spatial: Extent(fixed: 1), accumulate: !first(bias)),
                                    [gy, gradient(bias)], node: node, role: role(bias))
                    }

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

                // MARK: family logic (reverse rules)
                case .logic(let op, let geometry):
                    // comparisons and logic: boolean results, no gradient reaches their operands
                    guard op.isDifferentiable else { continue }
                    for (k, x) in [ops[0], ops[1]].enumerated() where !isConstant(x) {
                        emitReverse(.logicAdjoint(op, operand: Int8(k), geometry: geometry, accumulate: !first(x)),
                                    [ops[0], ops[1], gy, gradient(x)], node: node, role: role(x))
                    }
                case .select(let geometry):
                    // the gradient goes where the condition routed the value; none to the condition
                    for k in 1...2 where !isConstant(ops[k]) {
                        let x = ops[k]
                        emitReverse(.selectAdjoint(operand: Int8(k), geometry: geometry, accumulate: !first(x)),
                                    [ops[0], gy, gradient(x)], node: node, role: role(x))
                    }
                // MARK: family nd (reverse rules)
                case .resizeTaps(let geo, let outer):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.resizeTapsGradient(geometry: geo, outer: outer, accumulate: !first(x)), [gy, gradient(x)],
                                node: node, role: role(x))
                case .depthColumns(let geo, let batch):
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    emitReverse(.depthColumnsGradient(geometry: geo, batch: batch, accumulate: !first(x)), [gy, gradient(x)],
                                node: node, role: role(x))
                case .depthColumnsGradient(let geo, let batch, _):
                    // in a forward pass (ConvTranspose3D's depth scatter, which writes): its adjoint is the
                    // gather, which writes too; a later contribution goes through a temporary
                    let x = ops[0]
                    guard !isConstant(x), !isParameter(x) else { continue }
                    if first(x) {
                        emitReverse(.depthColumns(geometry: geo, batch: batch), [gy, gradient(x)], node: node, role: role(x))
                    } else {
                        let size = storages[Int(x)].size, t = builder.temporary(size)
                        emitReverse(.depthColumns(geometry: geo, batch: batch), [gy, t], node: node, role: role(x))
                        emitReverse(.accumulate(count: size, accumulate: true), [t, gradient(x)], node: node, role: role(x))
                    }
                // MARK: family reduce (reverse rules)
                case .reduce(let f, let geo):
                    // index results (ArgMax/ArgMin) carry no gradient; max and min send theirs to the
                    // first arg-max / arg-min (`ReduceKernels.derivative`)
                    let x = ops[0]
                    guard !f.isIndex, !isConstant(x) else { continue }
                    emitReverse(.reduceDerivative(f, geometry: geo, tangent: false, accumulate: !first(x)), [x, y, gy, gradient(x)],
                                node: node, role: role(x))
                case .pad(let geo, let outer, let hasValue):
                    let x = ops[0]
                    if !isConstant(x) {
                        emitReverse(.padGradient(geometry: geo, outer: outer, ofValue: false, accumulate: !first(x)), [gy, gradient(x)],
                                    node: node, role: role(x))
                    }
                    if hasValue, !isConstant(ops[1]) {
                        let v = ops[1]
                        emitReverse(.padGradient(geometry: geo, outer: outer, ofValue: true, accumulate: !first(v)), [gy, gradient(v)],
                                    node: node, role: role(v))
                    }

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
                case .broadcast(let op, let geometry):
                    var wrote = false
                    for (k, x) in [ops[0], ops[1]].enumerated() {
                        guard let tx = tangentStorage(x) else { continue }
                        emitTangent(.broadcastTangent(op, operand: Int8(k), geometry: geometry, accumulate: wrote),
                                    [ops[0], ops[1], y, tx, ty], node: step.node)
                        wrote = true
                    }
                    if !wrote { emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node) }
                case .unary(let f, let count):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.unaryBackward(f, count: count, accumulate: false), [ops[0], y, tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: count), [ty], node: step.node)
                    }
                case .clip(let count, let hasMin, let hasMax):
                    let bounds = Array(ops[1..<(ops.count - 1)])
                    var targets: [(Int8, Int32)] = [(0, ops[0])]
                    if hasMin { targets.append((1, ops[1])) }
                    if hasMax { targets.append((2, ops[hasMin ? 2 : 1])) }
                    var wrote = false
                    for (target, x) in targets {
                        guard let tx = tangentStorage(x) else { continue }
                        emitTangent(.clipLinear(count: count, hasMin: hasMin, hasMax: hasMax, target: target, tangent: true, accumulate: wrote),
                                    [ops[0]] + bounds + [tx, ty], node: step.node)
                        wrote = true
                    }
                    if !wrote { emitTangent(.zero(count: count), [ty], node: step.node) }
                case .softmax(let geometry, let log):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.softmaxTangent(geometry: geometry, log: log), [y, tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }

                // MARK: family shape (tangent rules)
                case .layoutCopy(let geometry, _):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.layoutCopy(geometry: geometry, mode: .write), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .concat(let geometry, let parts):
                    var o: [Int32] = []
                    for x in ops.prefix(parts) {
                        if let tx = tangentStorage(x) { o.append(tx); continue }
                        let z = builder.temporary(storages[Int(x)].size)
                        emitTangent(.zero(count: storages[Int(x)].size), [z], node: step.node)
                        o.append(z)
                    }
                    emitTangent(.concat(geometry: geometry, parts: parts), o + [ty], node: step.node)
                case .gather(let geometry):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.gather(geometry: geometry), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                // MARK: family constraints (tangent rules)
                case .columnProjection(let rows, let cols, true, true, false, let perColumnW):
                    // linear in (y, s): the same projection of the tangents (a missing one is 0); plus,
                    // for a per-column w with a tangent, its term
                    let tx = tangentStorage(ops[0]), ts = tangentStorage(ops[2])
                    let tw = perColumnW ? tangentStorage(ops[1]) : nil
                    if tx == nil && ts == nil {
                        if tw == nil { emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node) }
                    } else {
                        emitTangent(.columnProjection(rows: rows, cols: cols, hasY: tx != nil, hasS: ts != nil, accumulate: false,
                                                      perColumnW: perColumnW),
                                    (tx.map { [$0] } ?? []) + [ops[1]] + (ts.map { [$0] } ?? []) + [ty], node: step.node)
                    }
                    if let tw {
                        emitTangent(.columnProjectionWeights(rows: rows, cols: cols, mode: 1, accumulate: tx != nil || ts != nil),
                                    [ops[0], ops[1], ops[2], tw, ty], node: step.node)
                    }
                case .massFixer(let rows, let cols, 0, false):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.massFixer(rows: rows, cols: cols, mode: 2, accumulate: false), [ops[0], ops[1], tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .columnProjection, .columnProjectionTarget, .columnProjectionWeights, .massFixer:
                    throw InLoopError(.internal, "a derivative step in a forward plan")
                case .roundToFloat32(let count):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.copy(count: count), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: count), [ty], node: step.node)
                    }
                case .fill(let count, _), .fillLinear(_, let count):
                    emitTangent(.zero(count: count), [ty], node: step.node)

                // MARK: family matmul-norm (tangent rules)
                case .matMul(let geo, let alpha, let beta, let hasC, _, _):
                    // ty = alpha·(tA·B + A·tB) + beta·tC (weights and parameters have no tangent)
                    let a = ops[0], b = ops[1]
                    let tc = hasC ? tangentStorage(ops[2]) : nil
                    var wrote = false
                    for isA in [true, false] {
                        guard let tx = tangentStorage(isA ? a : b) else { continue }
                        let withC = !wrote && tc != nil
                        var o = isA ? [tx, b] : [a, tx]
                        if withC, let tc { o.append(tc) }
                        emitTangent(.matMul(geometry: geo, alpha: alpha, beta: beta, hasC: withC, accumulate: wrote, activation: .identity),
                                    o + [ty], node: step.node)
                        wrote = true
                    }
                    if !wrote {
                        if let tc {
                            emitTangent(.matMulBroadcastC(geometry: geo, beta: beta), [tc, ty], node: step.node)
                        } else {
                            emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                        }
                    }
                case .channelAffine(let outer, let channels, let spatial, let coef, _, _):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.channelAffine(outer: outer, channels: channels, spatial: spatial, coefficients: coef, shift: false,
                                                   accumulate: false), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .batchNorm(let outer, let channels, let spatial, let stats):
                    // scale and bias are constants or parameters: no tangent of their own
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.batchNormInputGradient(outer: outer, channels: channels, spatial: spatial, statistics: stats,
                                                            accumulate: false), [tx, ops[1], ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .layerNorm(let rows, let cols, let eps, _):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.layerNormLinear(rows: rows, cols: cols, epsilon: eps, tangent: true, accumulate: false),
                                    [ops[0], ops[1], tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }

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

                // MARK: family logic (tangent rules)
                case .logic(let op, let geometry):
                    var wrote = false
                    if op.isDifferentiable {
                        for (k, x) in [ops[0], ops[1]].enumerated() {
                            guard let tx = tangentStorage(x) else { continue }
                            emitTangent(.logicTangent(op, operand: Int8(k), geometry: geometry, accumulate: wrote),
                                        [ops[0], ops[1], tx, ty], node: step.node)
                            wrote = true
                        }
                    }
                    if !wrote { emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node) }
                case .select(let geometry):
                    // ty = c ? tx : ty' (an operand without a tangent contributes zeros)
                    let tx = tangentStorage(ops[1]), tv = tangentStorage(ops[2])
                    if tx == nil && tv == nil {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    } else {
                        var o: [Int32] = [ops[0]]
                        for (k, t) in [(1, tx), (2, tv)] {
                            if let t { o.append(t); continue }
                            let z = builder.temporary(storages[Int(ops[k])].size)
                            emitTangent(.zero(count: storages[Int(ops[k])].size), [z], node: step.node)
                            o.append(z)
                        }
                        emitTangent(.select(geometry: geometry), o + [ty], node: step.node)
                    }

                // MARK: family nd (tangent rules)
                case .resizeTaps(let geo, let outer):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.resizeTaps(geometry: geo, outer: outer), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .depthColumns(let geo, let batch):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.depthColumns(geometry: geo, batch: batch), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .depthColumnsGradient(let geo, let batch, _):
                    if let tx = tangentStorage(ops[0]) {
                        emitTangent(.depthColumnsGradient(geometry: geo, batch: batch, accumulate: false), [tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }

                // MARK: family reduce (tangent rules)
                case .reduce(let f, let geo):
                    if !f.isIndex, let tx = tangentStorage(ops[0]) {
                        emitTangent(.reduceDerivative(f, geometry: geo, tangent: true, accumulate: false), [ops[0], y, tx, ty], node: step.node)
                    } else {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    }
                case .pad(let geo, let outer, let hasValue):
                    // linear in (x, value): pad(tx, tvalue), a missing tangent being zero
                    let tv = hasValue ? tangentStorage(ops[1]) : nil
                    if tangentStorage(ops[0]) == nil && tv == nil {
                        emitTangent(.zero(count: storages[Int(y)].size), [ty], node: step.node)
                    } else {
                        var tx: Int32
                        if let t = tangentStorage(ops[0]) { tx = t } else {
                            tx = builder.temporary(storages[Int(ops[0])].size)
                            emitTangent(.zero(count: storages[Int(ops[0])].size), [tx], node: step.node)
                        }
                        // the same maps with a constant of 0 where the value has no tangent
                        let o = Int(geo), r = builder.ints[o + 1]
                        var length = 2 + 2 * r
                        for d in 0..<r { length += builder.ints[o + 2 + r + d] }
                        let zeroed = builder.addInts([0] + Array(builder.ints[(o + 1) ..< (o + length)]))
                        emitTangent(.pad(geometry: tv != nil ? geo : zeroed, outer: outer, hasValue: tv != nil), [tx] + (tv.map { [$0] } ?? []) + [ty],
                                    node: step.node)
                    }

                default:
                    throw InLoopError(.internal, "a reverse step in a forward pass")
                }
            }
            for (k, o) in outputs.enumerated() {
                let out = builder.newStorage(.outputTangent(k), storages[Int(o)].size)
                // an output no step computes (a constant, also a folded one) has a zero tangent
                guard let t = tangentOf[o] else {
                    emitTangent(.zero(count: storages[Int(o)].size), [out], node: -1)
                    continue
                }
                emitTangent(.copy(count: storages[Int(o)].size), [t, out], node: -1)
            }
        }
    }
}
