/// Compile-time evaluation of the integer (shape) computations exporters emit, and of the
/// constant-producing ops (Constant, ConstantOfShape, Cast, Range). Integer tensors never reach run time.
enum IntEvaluator {
    /// Largest integer tensor built at compile time (they are shapes and indices, not data): 2^16.
    /// (2^24 let a 300-byte Range take seconds at load in the fuzz build; found by the onnx fuzz target.)
    static let maxCount = 1 << 16

    /// The outputs of `node` when it is evaluated here, or nil when it is a float op (for the folder).
    static func evaluate(_ node: Node, present: [Value?]) throws(InLoopError) -> [Value]? {
        func inp(_ i: Int) -> Value? { i < present.count ? present[i] : nil }
        func intInput(_ i: Int, _ what: String) throws(InLoopError) -> IntTensor {
            guard let v = inp(i) else { throw InLoopError(.format, "input \(i) (\(what)) is missing") }
            switch v {
            case .int(let t): return t
            case .float(let t, _): return try toInt(t)
            case .runtime: throw InLoopError(.unsupported, "input \(i) (\(what)) must be known at load time")
            }
        }
        let anyFloat = present.contains { if case .float = $0 { return true } else { return false } }
        switch node.op {
        case .constant(let c):
            switch c {
            case .float(let t): return [.float(t, fromGraph: false)]
            case .int(let t): return [.int(t)]
            }
        case .constantOfShape(let v):
            let shape = try intInput(0, "shape").values
            let n = try Tensor.elementCount(shape)
            guard n <= maxCount * 4 else { throw InLoopError(.unsupported, "ConstantOfShape of \(n) values is too large (at most \(maxCount * 4))") }
            switch v {
            case .int(let t)?:
                guard t.count == 1 else { throw InLoopError(.format, "value must hold one element") }
                return [.int(try IntTensor(shape: shape, values: [Int](repeating: t.values[0], count: n)))]
            case .float(let t)?:
                guard t.count == 1 else { throw InLoopError(.format, "value must hold one element") }
                let out = try Tensor(zeros: shape)
                out.storage.base.update(repeating: t.storage[0], count: n)
                return [.float(out, fromGraph: false)]
            case nil:
                return [.float(try Tensor(zeros: shape), fromGraph: false)]
            }
        case .cast(let to):
            guard let v = inp(0) else { throw InLoopError(.format, "input is missing") }
            switch (v, to) {
            case (.int(let t), .int): return [.int(t)]
            case (.int(let t), .float): return [.float(try Tensor(shape: t.shape, values: t.values.map { Float($0) }), fromGraph: false)]
            case (.float(let t, _), .int): return [.int(try toInt(t, truncating: true))]
            case (.float(let t, let g), .float): return [.float(t, fromGraph: g)]
            default: return nil
            }
        case .range:
            if anyFloat {
                var s: [Float] = []
                for i in 0..<3 {
                    guard case .float(let t, _)? = inp(i), t.count == 1 else {
                        if case .int(let t)? = inp(i), t.count == 1 { s.append(Float(t.values[0])); continue }
                        throw InLoopError(.format, "start, limit and delta must be scalars")
                    }
                    s.append(t.storage[0])
                }
                guard s[2] != 0, s.allSatisfy({ $0.isFinite }) else { throw InLoopError(.format, "delta must be non-zero and every bound finite") }
                let c = max(0, ((s[1] - s[0]) / s[2]).rounded(.up))
                guard c <= Float(maxCount) else { throw InLoopError(.unsupported, "Range of \(c) values is too large") }
                let n = Int(c)
                return [.float(try Tensor(shape: [n], values: (0..<n).map { s[0] + Float($0) * s[2] }), fromGraph: false)]
            }
            let start = try scalar(intInput(0, "start")), limit = try scalar(intInput(1, "limit")), delta = try scalar(intInput(2, "delta"))
            guard delta != 0 else { throw InLoopError(.format, "delta must not be 0") }
            let (span, o) = limit.subtractingReportingOverflow(start)
            guard !o else { throw InLoopError(.format, "Range bounds overflow") }
            var n = span / delta
            if n * delta != span { n += 1 }
            n = max(n, 0)
            guard n <= maxCount else { throw InLoopError(.unsupported, "Range of \(n) values is too large") }
            return [.int(IntTensor((0..<n).map { start + $0 * delta }))]
        case .gather(let axis):
            guard case .int(let data)? = inp(0) else { return nil }
            let ind = try intInput(1, "indices")
            guard !data.shape.isEmpty else { throw InLoopError(.format, "input 0 (data) is a scalar; Gather needs rank ≥ 1") }
            let a = try normalizedAxis(axis, rank: data.shape.count, "axis")
            let outShape = Array(data.shape[..<a]) + ind.shape + Array(data.shape[(a + 1)...])
            guard try Tensor.elementCount(outShape) <= maxCount else {
                throw InLoopError(.unsupported, "integer Gather result of shape \(Tensor.format(outShape)) is too large")
            }
            let dim = data.shape[a]
            let outer = product(data.shape[..<a]), inner = product(data.shape[(a + 1)...])
            var out: [Int] = []
            for o in 0..<outer {
                for i in ind.values {
                    guard i >= -dim, i < dim else { throw InLoopError(.format, "index \(i) is out of range for axis \(axis) of size \(dim)") }
                    let j = i < 0 ? i + dim : i
                    for k in 0..<inner { out.append(data.values[(o * dim + j) * inner + k]) }
                }
            }
            return [.int(try IntTensor(shape: Array(data.shape[..<a]) + ind.shape + Array(data.shape[(a + 1)...]), values: out))]
        case .concat(let axis):
            guard !anyFloat else { return nil }
            var parts: [IntTensor] = []
            for v in present { if case .int(let t)? = v { parts.append(t) } }
            guard let first = parts.first else { return nil }
            let r = first.shape.count
            let a = try normalizedAxis(axis, rank: r, "axis")
            for p in parts where p.shape.count != r || (0..<r).contains(where: { $0 != a && p.shape[$0] != first.shape[$0] }) {
                throw InLoopError(.format, "input shapes \(parts.map { Tensor.format($0.shape) }.joined(separator: ", ")) differ outside axis \(axis)")
            }
            var shape = first.shape
            shape[a] = 0
            for p in parts { shape[a] = try Limits.sum(shape[a], p.shape[a], "Concat length") }
            guard try Tensor.elementCount(shape) <= maxCount else {
                throw InLoopError(.unsupported, "integer Concat result of shape \(Tensor.format(shape)) is too large")
            }
            let outer = product(first.shape[..<a]), inner = product(first.shape[(a + 1)...])
            var out: [Int] = []
            for o in 0..<outer {
                for p in parts {
                    let run = p.shape[a] * inner
                    out += p.values[(o * run)..<((o + 1) * run)]
                }
            }
            return [.int(try IntTensor(shape: shape, values: out))]
        case .slice(let attrs):
            guard case .int(let data)? = inp(0) else { return nil }
            let r = data.shape.count
            let starts: [Int], ends: [Int], axesIn: [Int]?, stepsIn: [Int]?
            if let attrs { starts = attrs.starts; ends = attrs.ends; axesIn = attrs.axes; stepsIn = nil }
            else {
                starts = try intInput(1, "starts").values; ends = try intInput(2, "ends").values
                axesIn = inp(3) == nil ? nil : try intInput(3, "axes").values
                stepsIn = inp(4) == nil ? nil : try intInput(4, "steps").values
            }
            let axes = axesIn ?? Array(0..<starts.count), steps = stepsIn ?? [Int](repeating: 1, count: starts.count)
            guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
                throw InLoopError(.format, "starts, ends, axes and steps have different lengths")
            }
            var fs = [Int](repeating: 0, count: r), fst = [Int](repeating: 1, count: r), counts = data.shape
            for i in 0..<axes.count {
                let a = try normalizedAxis(axes[i], rank: r, "axes")
                guard steps[i] != 0 else { throw InLoopError(.format, "steps must not be 0") }
                let rg = TensorOps.sliceRange(dim: data.shape[a], start: starts[i], end: ends[i], step: steps[i])
                fs[a] = rg.start; fst[a] = steps[i]; counts[a] = rg.count
            }
            let total = try Tensor.elementCount(counts)
            var strides = [Int](repeating: 1, count: r)
            for d in stride(from: r - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * data.shape[d + 1] }
            var out: [Int] = [], idx = [Int](repeating: 0, count: r)
            for _ in 0..<total {
                var off = 0
                for d in 0..<r { off += (fs[d] + idx[d] * fst[d]) * strides[d] }
                out.append(data.values[off])
                var d = r - 1
                while d >= 0 { idx[d] += 1; if idx[d] < counts[d] { break }; idx[d] = 0; d -= 1 }
            }
            return [.int(try IntTensor(shape: counts, values: out))]
        case .binary(let op):
            guard case .int(let a)? = inp(0), case .int(let b)? = inp(1) else { return nil }
            let shape = try TensorOps.broadcastShape(a.shape, b.shape)
            let n = try Tensor.elementCount(shape)
            guard n <= maxCount else { throw InLoopError(.unsupported, "integer tensor of \(n) values is too large") }
            var out: [Int] = []
            out.reserveCapacity(n)
            let r = shape.count
            func strides(_ s: [Int]) -> [Int] {
                var st = [Int](repeating: 0, count: r), acc = 1
                for i in stride(from: s.count - 1, through: 0, by: -1) {
                    st[i + r - s.count] = s[i] == 1 ? 0 : acc
                    acc *= s[i]
                }
                return st
            }
            let sa = strides(a.shape), sb = strides(b.shape)
            var idx = [Int](repeating: 0, count: r)
            for _ in 0..<n {
                var ia = 0, ib = 0
                for d in 0..<r { ia += idx[d] * sa[d]; ib += idx[d] * sb[d] }
                let x = a.values[ia], y = b.values[ib]
                let v: (Int, Bool)
                switch op {
                case .add: v = x.addingReportingOverflow(y)
                case .sub: v = x.subtractingReportingOverflow(y)
                case .mul: v = x.multipliedReportingOverflow(by: y)
                case .div:
                    guard y != 0 else { throw InLoopError(.format, "integer division by zero") }
                    v = x.dividedReportingOverflow(by: y)
                case .min: v = (Swift.min(x, y), false)
                case .max: v = (Swift.max(x, y), false)
                case .pow:
                    guard y >= 0, y < 64 else { throw InLoopError(.unsupported, "integer Pow with exponent \(y)") }
                    var acc = 1, ov = false
                    for _ in 0..<y { let m = acc.multipliedReportingOverflow(by: x); acc = m.0; ov = ov || m.1 }
                    v = (acc, ov)
                }
                guard !v.1 else { throw InLoopError(.format, "integer \(op) of \(x) and \(y) overflows") }
                out.append(v.0)
                var d = r - 1
                while d >= 0 { idx[d] += 1; if idx[d] < shape[d] { break }; idx[d] = 0; d -= 1 }
            }
            return [.int(try IntTensor(shape: shape, values: out))]
        case .unary(let f):
            guard case .int(let a)? = inp(0) else { return nil }
            switch f {
            case .neg:
                guard !a.values.contains(Int.min) else { throw InLoopError(.format, "integer Neg overflows") }
                return [.int(try IntTensor(shape: a.shape, values: a.values.map { -$0 }))]
            case .abs:
                guard !a.values.contains(Int.min) else { throw InLoopError(.format, "integer Abs overflows") }
                return [.int(try IntTensor(shape: a.shape, values: a.values.map { Swift.abs($0) }))]
            default:
                throw InLoopError(.unsupported, "\(f) of an integer tensor")
            }
        default:
            return nil
        }
    }

    static func scalar(_ t: IntTensor) throws(InLoopError) -> Int {
        guard t.count == 1 else { throw InLoopError(.format, "expected a scalar, got shape \(Tensor.format(t.shape))") }
        return t.values[0]
    }

    /// Float constant → integers (exact, or truncated toward zero for Cast).
    static func toInt(_ t: Tensor, truncating: Bool = false) throws(InLoopError) -> IntTensor {
        var out: [Int] = []
        out.reserveCapacity(t.count)
        for i in 0..<t.count {
            let x = t.storage[i]
            guard x.isFinite, Swift.abs(x) < 9.0e15, truncating || x == x.rounded() else {
                throw InLoopError(.format, "value \(x) cannot be used as an integer")
            }
            out.append(Int(x.rounded(.towardZero)))
        }
        return try IntTensor(shape: t.shape, values: out)
    }
}
