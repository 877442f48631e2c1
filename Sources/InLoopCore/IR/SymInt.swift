extension Engine {
    /// A named symbolic dimension: the batch ("N"), a sequence length, ... . Symbols are numbered per
    /// graph; the name is for messages and files.
    public struct Symbol: Hashable, Sendable, CustomStringConvertible {
        public let id: Int
        public let name: String

        public init(id: Int, name: String) {
            self.id = id
            self.name = name
        }

        public var description: String { name.isEmpty ? "s\(id)" : name }
    }

    /// A dimension or an integer computed from dimensions: `coeff · symbol + constant`, or a plain
    /// integer when `symbol` is nil. Shapes are `[SymInt]`, so a plan built from them works for every
    /// value of the symbol (every batch size).
    ///
    /// Arithmetic stays in this form where it can: sums and differences of forms over the same symbol,
    /// products and exact quotients with known integers, `min`/`max` of known integers. Anything else
    /// (a product of two symbolic values, an inexact quotient, overflow) is `nil`: "not linear", and the
    /// compiler then specialises the plan on the symbol's value. No operation traps.
    public struct SymInt: Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
        public private(set) var coeff: Int
        public private(set) var symbol: Symbol?
        public private(set) var constant: Int

        /// A known integer.
        public init(_ value: Int) {
            coeff = 0
            symbol = nil
            constant = value
        }

        public init(integerLiteral value: Int) { self.init(value) }

        /// `coeff · symbol + constant` (a plain integer when coeff is 0).
        public init(_ coeff: Int, _ symbol: Symbol, plus constant: Int = 0) {
            self.coeff = coeff
            self.symbol = coeff == 0 ? nil : symbol
            self.constant = constant
        }

        /// The symbol itself.
        public init(_ symbol: Symbol) { self.init(1, symbol) }

        /// The value when known at compile time.
        public var known: Int? { symbol == nil ? constant : nil }

        /// The value for a given value of the symbol, or nil on overflow.
        public func value(at n: Int) -> Int? {
            guard symbol != nil else { return constant }
            let (p, o1) = coeff.multipliedReportingOverflow(by: n)
            let (s, o2) = p.addingReportingOverflow(constant)
            return o1 || o2 ? nil : s
        }

        /// The value when every symbol takes its entry in `bindings` (nil when the symbol is unbound).
        public func value(_ bindings: [Symbol: Int]) -> Int? {
            guard let symbol else { return constant }
            guard let n = bindings[symbol] else { return nil }
            return value(at: n)
        }

        public var description: String {
            guard let symbol else { return String(constant) }
            let head = coeff == 1 ? symbol.description : coeff == -1 ? "-\(symbol)" : "\(coeff)·\(symbol)"
            if constant == 0 { return head }
            return constant > 0 ? "\(head)+\(constant)" : "\(head)\(constant)"
        }

        // MARK: - Arithmetic (nil: not linear, or overflow)

        private static func make(_ coeff: Int, _ symbol: Symbol?, _ constant: Int) -> SymInt {
            guard let symbol, coeff != 0 else { return SymInt(constant) }
            return SymInt(coeff, symbol, plus: constant)
        }

        /// The symbol two forms share (nil when both are known), or `.conflict` when they differ.
        private static func common(_ a: SymInt, _ b: SymInt) -> Symbol?? {
            switch (a.symbol, b.symbol) {
            case (nil, nil): return .some(nil)
            case (let s?, nil), (nil, let s?): return .some(s)
            case (let s?, let t?): return s == t ? .some(s) : nil
            }
        }

        public static func + (a: SymInt, b: SymInt) -> SymInt? {
            guard let s = common(a, b) else { return nil }
            let (c, o1) = a.coeff.addingReportingOverflow(b.coeff)
            let (k, o2) = a.constant.addingReportingOverflow(b.constant)
            return o1 || o2 ? nil : make(c, s, k)
        }

        public static prefix func - (a: SymInt) -> SymInt? {
            guard a.coeff != Int.min, a.constant != Int.min else { return nil }
            return make(-a.coeff, a.symbol, -a.constant)
        }

        public static func - (a: SymInt, b: SymInt) -> SymInt? {
            guard let nb = -b else { return nil }
            return a + nb
        }

        public static func * (a: SymInt, b: SymInt) -> SymInt? {
            if let k = b.known { return a.scaled(by: k) }
            if let k = a.known { return b.scaled(by: k) }
            return nil
        }

        private func scaled(by k: Int) -> SymInt? {
            let (c, o1) = coeff.multipliedReportingOverflow(by: k)
            let (v, o2) = constant.multipliedReportingOverflow(by: k)
            return o1 || o2 ? nil : SymInt.make(c, symbol, v)
        }

        /// Exact division of a symbolic form by a known non-zero integer (coefficient and constant both
        /// divisible); for two known integers, C truncation (as onnxruntime's integer Div).
        public static func / (a: SymInt, b: SymInt) -> SymInt? {
            // c1·s / c2·s = c1/c2 when exact (a reshape's -1 next to a dimension taken from the input)
            if let s = a.symbol, s == b.symbol, a.constant == 0, b.constant == 0, b.coeff != 0,
               a.coeff % b.coeff == 0, !(b.coeff == -1 && a.coeff == Int.min) {
                return SymInt(a.coeff / b.coeff)
            }
            guard let d = b.known, d != 0 else { return nil }
            if let x = a.known {
                guard !(x == Int.min && d == -1) else { return nil }
                return SymInt(x / d)
            }
            guard a.coeff % d == 0, a.constant % d == 0, !(d == -1 && (a.coeff == Int.min || a.constant == Int.min)) else {
                return nil
            }
            return make(a.coeff / d, a.symbol, a.constant / d)
        }

        /// Remainder of two known integers, with the sign of the dividend (C truncation); symbolic
        /// operands are not linear.
        public static func % (a: SymInt, b: SymInt) -> SymInt? {
            guard let x = a.known, let d = b.known, d != 0, !(x == Int.min && d == -1) else { return nil }
            return SymInt(x % d)
        }

        public static func min(_ a: SymInt, _ b: SymInt) -> SymInt? {
            if a == b { return a }
            guard let x = a.known, let y = b.known else { return nil }
            return SymInt(Swift.min(x, y))
        }

        public static func max(_ a: SymInt, _ b: SymInt) -> SymInt? {
            if a == b { return a }
            guard let x = a.known, let y = b.known else { return nil }
            return SymInt(Swift.max(x, y))
        }
    }

    public typealias Shape = [SymInt]
}

extension Array where Element == Engine.SymInt {
    /// The shape with every dimension known, or nil.
    public var known: [Int]? {
        var out: [Int] = []
        out.reserveCapacity(count)
        for d in self {
            guard let k = d.known else { return nil }
            out.append(k)
        }
        return out
    }

    /// The number of elements as a SymInt (nil when not linear: two symbolic dimensions multiplied).
    public var elementCount: Engine.SymInt? {
        var p: Engine.SymInt = 1
        for d in self {
            guard let q = p * d else { return nil }
            p = q
        }
        return p
    }

    /// `[N, 3]` style formatting for messages.
    public var formatted: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}
