/// Reading raw attributes with checks: a missing required one, a wrong kind or a value out of range
/// is a `.format` error naming the attribute.
extension Dictionary where Key == String, Value == Engine.AttributeValue {
    public func int(_ name: String) throws(InLoopError) -> Int? {
        guard let v = self[name] else { return nil }
        guard case .int(let i) = v else { throw InLoopError(.format, "attribute '\(name)' must be an integer") }
        guard i >= -Limits.maxDimension, i <= Limits.maxDimension else {
            throw InLoopError(.format, "attribute '\(name)' is \(i); InLoop takes values up to \(Limits.maxDimension)")
        }
        return i
    }

    public func int(_ name: String, default d: Int) throws(InLoopError) -> Int { try int(name) ?? d }

    public func ints(_ name: String) throws(InLoopError) -> [Int]? {
        guard let v = self[name] else { return nil }
        guard case .ints(let list) = v else { throw InLoopError(.format, "attribute '\(name)' must be a list of integers") }
        guard list.count <= Engine.maxKnownElements else {
            throw InLoopError(.format, "attribute '\(name)' has \(list.count) values")
        }
        try Limits.attribute(list, name)
        return list
    }

    public func float(_ name: String) throws(InLoopError) -> Double? {
        guard let v = self[name] else { return nil }
        switch v {
        case .float(let f): return f
        case .int(let i): return Double(i)
        default: throw InLoopError(.format, "attribute '\(name)' must be a number")
        }
    }

    public func string(_ name: String) throws(InLoopError) -> String? {
        guard let v = self[name] else { return nil }
        guard case .string(let s) = v else { throw InLoopError(.format, "attribute '\(name)' must be a string") }
        return s
    }
}

extension Engine {
    /// The largest tensor rank the engine takes (ONNX has no limit; 8 covers every model seen, and
    /// bounds the strided loops).
    public static let maxRank = 8

    /// A possibly negative axis of a rank-`rank` tensor, normalised to 0..<rank.
    public static func axis(_ a: Int, rank: Int, _ what: @autoclosure () -> String = "axis") throws(InLoopError) -> Int {
        let k = a < 0 ? a + rank : a
        guard k >= 0, k < rank else {
            throw InLoopError(.format, "\(what()) \(a) is out of range for rank \(rank)")
        }
        return k
    }

    /// The rank of an input checked against `maxRank`.
    public static func checkRank(_ t: TensorType, _ what: @autoclosure () -> String) throws(InLoopError) {
        guard t.rank <= maxRank else {
            throw InLoopError(.unsupported, "\(what()) has rank \(t.rank); InLoop takes ranks up to \(maxRank)")
        }
    }

    /// A required input's type.
    public static func input(_ types: [TensorType?], _ k: Int, _ what: String = "input") throws(InLoopError) -> TensorType {
        guard k < types.count, let t = types[k] else { throw InLoopError(.format, "\(what) \(k) is required") }
        try checkRank(t, "\(what) \(k)")
        return t
    }
}
