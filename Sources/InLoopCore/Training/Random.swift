/// xoshiro256** — a small, fast generator whose whole state (4 words) goes into checkpoints, so a
/// restarted run draws exactly the numbers the uninterrupted run would have.
public struct RandomState: Equatable, Sendable {
    public var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        // SplitMix64 expands the seed, as the xoshiro authors recommend.
        var z = seed
        func next() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (next(), next(), next(), next())
    }

    public init(words: [UInt64]) {
        s = (words.count > 0 ? words[0] : 1, words.count > 1 ? words[1] : 2, words.count > 2 ? words[2] : 3, words.count > 3 ? words[3] : 4)
    }

    public var words: [UInt64] { [s.0, s.1, s.2, s.3] }

    public static func == (a: RandomState, b: RandomState) -> Bool { a.words == b.words }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * Double.log1p(u1 - 1)).squareRoot() * Double.cos(2 * Double.pi * u2)
    }
}

/// Weight initialisation of the dense layers of a network; biases start at zero.
public enum Initialization: String, Sendable {
    /// Glorot/Xavier uniform: U(±√(6/(fan_in+fan_out))) — tanh, sigmoid, linear layers.
    case xavier
    /// He/Kaiming normal: N(0, 2/fan_in) — ReLU-family layers.
    case he
    /// xavier for tanh/sigmoid/identity layers, he for ReLU-like ones.
    case auto

    /// Fills the dense weights of a layer-stack network (`net.graph.layerSpecs`; any other graph is
    /// left as it is) and zeroes its biases. `layers`: the list a graph with constraints after its
    /// layer stack was built from (its parameters are the list's, in the list's order).
    public func initialize<T: Real>(_ net: EngineNetwork<T>, random: inout RandomState, layers: [LayerSpec]? = nil) {
        guard let specs = net.graph.layerSpecs ?? layers else { return }
        let p = net.parameters.base
        for layer in LayerSpec.denseSlots(specs) {
            var scheme = self
            if scheme == .auto {
                switch layer.activation {
                case .relu, .leakyRelu, .elu, .gelu, .geluTanh, .silu, .softplus: scheme = .he
                default: scheme = .xavier
                }
            }
            let n = layer.inputs * layer.outputs
            for i in 0..<n {
                switch scheme {
                case .he: p[layer.weight + i] = T(random.normal() * (2 / Double(layer.inputs)).squareRoot())
                default:
                    let a = (6 / Double(layer.inputs + layer.outputs)).squareRoot()
                    p[layer.weight + i] = T((2 * random.uniform() - 1) * a)
                }
            }
            if let b = layer.bias { for i in 0..<layer.outputs { p[b + i] = 0 } }
        }
    }
}
