/// Ops on shapes and layout that keep symbolic dimensions symbolic: Identity, Shape, Reshape,
/// Gather, Concat, Unsqueeze. Their integer results are computed at compile time in `SymInt`s, so
/// `Shape → Gather → Concat → Reshape` chains give a plan valid for every batch size; on float data
/// Gather and Concat run as steps (`Kernels/Layout.swift`), the others are aliases.

public enum IdentityOp: OpDefinition {
    public static let name = "Identity"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> NoAttributes {
        NoAttributes()
    }

    public static func inferTypes(_ a: NoAttributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        [try Engine.input(inputs, 0)]
    }

    public static func evaluate(_ a: NoAttributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        [known.first ?? nil]
    }

    public static func lower(_ a: NoAttributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        try ctx.aliasOrFold(output: 0, input: 0)
    }
}

public enum ShapeOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var start: Int
        public var end: Int?
        public func encoded() -> [String: Engine.AttributeValue] {
            var out: [String: Engine.AttributeValue] = [:]
            if start != 0 { out["start"] = .int(start) }
            if let end { out["end"] = .int(end) }
            return out
        }
    }
    public static let name = "Shape"
    public static let inputArity: ClosedRange<Int> = 1...1

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(start: try raw.int("start", default: 0), end: try raw.int("end"))
    }

    /// ONNX clamps start and end into [0, rank] after adding the rank to negative ones.
    static func range(_ a: Attributes, rank: Int) -> Range<Int> {
        func clamp(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + rank : v, 0), rank) }
        let s = clamp(a.start), e = clamp(a.end ?? rank)
        return s..<Swift.max(s, e)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        return [Engine.TensorType(.int64, [Engine.SymInt(range(a, rank: x.rank).count)])]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        let x = try Engine.input(inputs, 0)
        return [Engine.KnownInts(Array(x.shape[range(a, rank: x.rank)]))]
    }
}

public enum ReshapeOp: ReshapingOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var allowZero: Bool
        public func encoded() -> [String: Engine.AttributeValue] { allowZero ? ["allowzero": .int(1)] : [:] }
    }
    public static let name = "Reshape"
    public static let sinceVersion: ClosedRange<Int> = 5...Int.max
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(allowZero: try raw.int("allowzero", default: 0) != 0)
    }

    /// The output shape: 0 copies the input's dimension (unless allowzero), one -1 takes what is left.
    static func outputShape(_ a: Attributes, _ x: Engine.Shape, _ spec: [Engine.SymInt]) throws(InLoopError) -> Engine.Shape {
        guard spec.count <= Engine.maxRank else {
            throw InLoopError(.unsupported, "target rank \(spec.count); InLoop takes ranks up to \(Engine.maxRank)")
        }
        if a.allowZero && spec.contains(0) && spec.contains(-1) {
            throw InLoopError(.format, "shape \(spec.formatted) holds both 0 and -1 with allowzero = 1")
        }
        var out = spec
        var inferred: Int? = nil
        for (i, d) in spec.enumerated() {
            guard let k = d.known else { continue }
            if k == 0 && !a.allowZero {
                guard i < x.count else { throw InLoopError(.format, "shape \(spec.formatted): 0 at axis \(i) has no input dimension to copy") }
                out[i] = x[i]
            } else if k == -1 {
                guard inferred == nil else { throw InLoopError(.format, "shape \(spec.formatted) has more than one -1") }
                inferred = i
            } else if k < 0 {
                throw InLoopError(.format, "shape \(spec.formatted) holds \(k)")
            }
        }
        let total = try Engine.linear(x.elementCount, "reshape of \(x.formatted)")
        if let i = inferred {
            var rest: Engine.SymInt = 1
            for (j, d) in out.enumerated() where j != i { rest = try Engine.linear(rest * d, "reshape to \(spec.formatted)") }
            if rest.known == 0 {
                guard total.known == 0 else {
                    throw InLoopError(.format, "cannot reshape \(x.formatted) to \(spec.formatted): the other dimensions hold no elements")
                }
                out[i] = 0
            } else {
                guard let q = total / rest, let back = q * rest, back == total else {
                    if let t = total.known, let r = rest.known {
                        throw InLoopError(.sizeMismatch, "cannot reshape \(x.formatted) (\(t) elements) to \(spec.formatted): \(t) is not a multiple of \(r)")
                    }
                    throw Engine.notLinear("reshape of \(x.formatted) to \(spec.formatted)")
                }
                out[i] = q
            }
        }
        let product = try Engine.linear(out.elementCount, "reshape to \(spec.formatted)")
        guard product == total else {
            if product.known != nil && total.known != nil {
                throw InLoopError(.sizeMismatch, "cannot reshape \(x.formatted) to \(out.formatted): \(total) elements against \(product)")
            }
            throw Engine.notLinear("reshape of \(x.formatted) to \(out.formatted)")
        }
        return out
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), s = try Engine.input(inputs, 1)
        guard s.dtype == .int64, s.rank == 1 else { throw InLoopError(.format, "the shape input must be a 1-D int64 tensor, got \(s)") }
        guard known.count > 1, let spec = known[1] else {
            throw InLoopError(.unsupported, "the target shape must be known when the model is compiled (a constant or computed from shapes)")
        }
        return [Engine.TensorType(x.dtype, try outputShape(a, x.shape, spec.values))]
    }
}

public enum GatherOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axis: Int
        public func encoded() -> [String: Engine.AttributeValue] { axis == 0 ? [:] : ["axis": .int(axis)] }
    }
    public static let name = "Gather"
    public static let inputArity: ClosedRange<Int> = 2...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        Attributes(axis: try raw.int("axis", default: 0))
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0), i = try Engine.input(inputs, 1)
        guard x.rank >= 1 else { throw InLoopError(.format, "data must have rank >= 1, got a scalar") }
        guard i.dtype == .int64 else { throw InLoopError(.format, "indices must be int64 (int32 indices are widened on import), got \(i.dtype)") }
        let axis = try Engine.axis(a.axis, rank: x.rank)
        let shape = Array(x.shape[..<axis]) + i.shape + Array(x.shape[(axis + 1)...])
        guard shape.count <= Engine.maxRank else { throw InLoopError(.unsupported, "output rank \(shape.count); InLoop takes ranks up to \(Engine.maxRank)") }
        return [Engine.TensorType(x.dtype, shape)]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        guard known.count == 2, let data = known[0], let idx = known[1], let outShape = outputs[0].shape.known else { return nil }
        let axis = try Engine.axis(a.axis, rank: data.shape.count)
        let outer = data.shape[..<axis].reduce(1, *), inner = data.shape[(axis + 1)...].reduce(1, *)
        let dim = data.shape[axis]
        var values: [Engine.SymInt] = []
        values.reserveCapacity(outer * idx.values.count * inner)
        for o in 0..<outer {
            for iv in idx.values {
                guard let i0 = iv.known else { return nil }
                let i = i0 < 0 ? i0 + dim : i0
                guard i >= 0, i < dim else { throw InLoopError(.format, "index \(i0) is out of range for axis \(axis) of size \(dim)") }
                for k in 0..<inner { values.append(data.values[(o * dim + i) * inner + k]) }
            }
        }
        return [try Engine.KnownInts(shape: outShape, values: values)]
    }
}

extension GatherOp {
    /// Float data at run time, indices known at compile time (negative ones wrap): one gather step;
    /// its adjoint scatter-adds (repeated indices accumulate).
    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let x = try Engine.input(ctx.inputTypes, 0)
        let axis = try Engine.axis(a.axis, rank: x.rank)
        guard let dim = x.shape[axis].known else {
            throw InLoopError(.unsupported, "a Gather along axis \(axis) of size \(x.shape[axis]) (indices are checked when the model is compiled)")
        }
        guard let k = ctx.knownInput(1), let idx = k.values.known else {
            throw InLoopError(.unsupported, "Gather indices must be known when the model is compiled")
        }
        var indices: [Int] = []
        for i in idx {
            guard i >= -dim, i < dim else { throw InLoopError(.format, "index \(i) is out of range for axis \(axis) of size \(dim)") }
            indices.append(i < 0 ? i + dim : i)
        }
        let outer = try ctx.extent(Array(x.shape[..<axis]), "the axes before the gather axis")
        let inner = try ctx.extent(Array(x.shape[(axis + 1)...]), "the axes after the gather axis")
        let geometry = [outer.perBatch, outer.fixed, dim, inner.perBatch, inner.fixed, indices.count] + indices
        if let (dtype, x) = try ctx.constantDoubles(0), var y = ctx.foldBuffer(try ctx.outputExtent(0).fixed) {
            geometry.withUnsafeBufferPointer { g in
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        if let gb = g.baseAddress, let xb = xp.baseAddress, let yb = yp.baseAddress {
                            TensorOps.gatherStep(xb, yb, geometry: gb, n: 0)
                        }
                    }
                }
            }
            try ctx.fold(output: 0, dtype: dtype, y)
            return
        }
        ctx.unfold(output: 0)
        ctx.emit(.gather(geometry: ctx.ints(geometry)), [try ctx.input(0), try ctx.output(0)])
    }
}

extension ConcatOp {
    /// One step writes the output; in differentiable plans each input's slice of the output is also
    /// described (the adjoint copies it out).
    public static func lower(_ a: Attributes, _ ctx: inout Engine.LoweringContext) throws(InLoopError) {
        let y = ctx.outputTypes[0]
        let axis = try Engine.axis(a.axis, rank: y.rank)
        var present: [Int] = []
        for k in 0..<ctx.inputTypes.count where ctx.hasInput(k) { present.append(k) }
        if present.count == 1 { try ctx.aliasOrFold(output: 0, input: present[0]); return }
        let outer = try ctx.extent(Array(y.shape[..<axis]), "the axes before the concat axis")
        let innerShape = Array(y.shape[(axis + 1)...])
        let inner = try ctx.extent(innerShape, "the axes after the concat axis")
        let total = try ctx.extent([y.shape[axis]], "the concat axis")
        var g = [outer.perBatch, outer.fixed, inner.perBatch, inner.fixed, total.perBatch, total.fixed]
        var offset: Engine.SymInt = 0
        var operands: [Int32] = []
        let innerCount = try Engine.linear(innerShape.elementCount, "the axes after the concat axis")
        let outerShape = Array(y.shape[..<axis])
        for k in present {
            let t = try Engine.input(ctx.inputTypes, k)
            let len = try ctx.extent([t.shape[axis]], "the concat axis")
            var slice: Int32 = -1
            if ctx.numerics == .differentiable {
                // the input's gradient: y[outer, offset ..< offset + len, inner] as an [outer, len, inner] block
                let xs = try Engine.Layout.strides(y.shape)
                let dims = outerShape + [t.shape[axis]] + innerShape
                let base = try Engine.linear(offset * innerCount, "concat offset")
                slice = ctx.ints(try Engine.Layout.gatherGeometry(ctx, dims: dims, xStrides: xs, xBase: base, coversSource: false))
            }
            g += [len.perBatch, len.fixed, Int(slice)]
            offset = try Engine.linear(offset + t.shape[axis], "concat offset")
            operands.append(try ctx.input(k))
        }
        var constants: [[Double]] = []
        var dtype: Engine.DType? = nil
        for k in present {
            guard let (d, x) = try ctx.constantDoubles(k) else { break }
            constants.append(x); dtype = d
        }
        if constants.count == present.count, let dtype, var y = ctx.foldBuffer(try ctx.outputExtent(0).fixed) {
            // every input a constant: the output is one, concatenated now
            var at = 0
            for (k, x) in zip(present, constants) {
                let len = try Engine.input(ctx.inputTypes, k).shape[axis].known ?? 0
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        if let xb = xp.baseAddress, let yb = yp.baseAddress {
                            TensorOps.concat(x: xb, outer: outer.fixed, axisLength: len, inner: inner.fixed, y: yb,
                                             yAxisLength: total.fixed, axisOffset: at)
                        }
                    }
                }
                at += len
            }
            try ctx.fold(output: 0, dtype: dtype, y)
            return
        }
        ctx.unfold(output: 0)
        let geometry = ctx.ints(g)
        ctx.emit(.concat(geometry: geometry, parts: operands.count), operands + [try ctx.output(0)])
    }
}

public enum ConcatOp: OpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        public var axis: Int
        public func encoded() -> [String: Engine.AttributeValue] { ["axis": .int(axis)] }
    }
    public static let name = "Concat"
    public static let inputArity: ClosedRange<Int> = 1...Engine.maxKnownElements

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        guard let axis = try raw.int("axis") else { throw InLoopError(.format, "attribute 'axis' is required") }
        return Attributes(axis: axis)
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let first = try Engine.input(inputs, 0)
        let axis = try Engine.axis(a.axis, rank: first.rank)
        var shape = first.shape
        for k in 1..<inputs.count {
            let t = try Engine.input(inputs, k)
            guard t.dtype == first.dtype, t.rank == first.rank else {
                throw InLoopError(.format, "input \(k) is \(t); input 0 is \(first)")
            }
            for i in 0..<t.rank where i != axis && t.shape[i] != shape[i] {
                guard t.shape[i].known == nil || shape[i].known == nil else {
                    throw InLoopError(.format, "input \(k) is \(t); input 0 is \(first): they differ outside axis \(axis)")
                }
                throw Engine.notLinear("concat of \(first.shape.formatted) and \(t.shape.formatted)")
            }
            shape[axis] = try Engine.linear(shape[axis] + t.shape[axis], "concat along axis \(axis)")
        }
        return [Engine.TensorType(first.dtype, shape)]
    }

    public static func evaluate(_ a: Attributes, _ inputs: [Engine.TensorType?], _ known: [Engine.KnownInts?],
                                outputs: [Engine.TensorType]) throws(InLoopError) -> [Engine.KnownInts?]? {
        var parts: [Engine.KnownInts] = []
        for k in known { guard let k else { return nil }; parts.append(k) }
        guard let outShape = outputs[0].shape.known, let first = parts.first else { return nil }
        let axis = try Engine.axis(a.axis, rank: first.shape.count)
        let outer = first.shape[..<axis].reduce(1, *)
        var values: [Engine.SymInt] = []
        for o in 0..<outer {
            for p in parts {
                let chunk = p.shape[axis...].reduce(1, *)
                values += p.values[(o * chunk)..<((o + 1) * chunk)]
            }
        }
        return [try Engine.KnownInts(shape: outShape, values: values)]
    }
}

public enum UnsqueezeOp: ReshapingOpDefinition {
    public struct Attributes: OpAttributeSet, Equatable {
        /// nil: from input 1 (opset >= 13).
        public var axes: [Int]?
        public func encoded() -> [String: Engine.AttributeValue] { axes.map { ["axes": .ints($0)] } ?? [:] }
    }
    public static let name = "Unsqueeze"
    public static let inputArity: ClosedRange<Int> = 1...2

    public static func parse(_ raw: [String: Engine.AttributeValue], opset: Int) throws(InLoopError) -> Attributes {
        let axes = try raw.ints("axes")
        if opset < 13 && axes == nil { throw InLoopError(.format, "attribute 'axes' is required before opset 13") }
        return Attributes(axes: axes)
    }

    static func axes(_ a: Attributes, _ known: [Engine.KnownInts?], outRank: (Int) -> Int) throws(InLoopError) -> [Int] {
        var list = a.axes
        if list == nil, known.count > 1, let k = known[1] {
            list = try k.values.map { (v: Engine.SymInt) throws(InLoopError) -> Int in
                guard let i = v.known else { throw InLoopError(.unsupported, "axes must be known when the model is compiled") }
                return i
            }
        }
        guard let list else { throw InLoopError(.unsupported, "axes must be given (attribute, or a constant input 1)") }
        let r = outRank(list.count)
        var out: [Int] = []
        for v in list {
            let k = try Engine.axis(v, rank: r, "axis")
            guard !out.contains(k) else { throw InLoopError(.format, "axis \(v) is listed twice") }
            out.append(k)
        }
        return out.sorted()
    }

    public static func inferTypes(_ a: Attributes, _ inputs: [Engine.TensorType?],
                                  _ known: [Engine.KnownInts?]) throws(InLoopError) -> [Engine.TensorType] {
        let x = try Engine.input(inputs, 0)
        let list = try axes(a, known) { x.rank + $0 }
        var shape = x.shape
        for k in list { shape.insert(1, at: k) }
        guard shape.count <= Engine.maxRank else { throw InLoopError(.unsupported, "output rank \(shape.count); InLoop takes ranks up to \(Engine.maxRank)") }
        return [Engine.TensorType(x.dtype, shape)]
    }
}

extension IdentityOp {
    /// Per sample (threads): a copy.
    public static func perSample(_ a: Attributes, _ inputs: [Engine.TensorType?], _ outputs: [Engine.TensorType], batch: Engine.SymInt) -> Bool {
        Engine.perSampleShapes(inputs, outputs, batch: batch)
    }
}
