// FoundationEssentials, not Foundation: full Foundation links ICU's data statically (60 MB) into
// the installed `bin/inloop`.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import InLoopCore
import InLoopFormats

/// A model as the CLI sees it: named inputs and outputs with per-sample shapes, a summary, and a
/// forward over float32 arrays (one per input, batch × per-sample values each).
struct LoadedModel {
    struct TensorInfo {
        var name: String
        var dims: [Int]
        var count: Int { dims.reduce(1, *) }
    }

    var formatName: String
    var inputs: [TensorInfo]
    var outputs: [TensorInfo]
    var opCounts: [(String, Int)]
    var parameterCount: Int
    var flopsPerSample: Int?
    /// How the engine runs it (compiled plan at batch 1), when there is one to describe.
    var planDescription: String? = nil
    var run: ([[Float]], Int) throws -> [[Float]]
    /// Full shapes (the one engine): each input with its whole shape, each output with its inferred one.
    var runShaped: (([(shape: [Int], values: [Double])]) throws -> [(shape: [Int], values: [Double])])? = nil
    /// Declared ranks of the inputs and whether each leads with the batch (for one sample given
    /// without its batch axis), when `runShaped` is set.
    var declaredRanks: [Int] = []
    var inputBatched: [Bool] = []
    var outputBatched: [Bool] = []
    /// Per output: the dtype to write when the graph declares it in a type other than the one it
    /// computes in (a Cast at the end); nil: the dtype of the first input.
    var outputFloat64: [Bool?] = []
    /// The engine model (for `inloop explain`, which differentiates it).
    var model: Engine.Model? = nil

    /// Picks the reader by content, as inloop_model_load does: safetensors starts with an 8-byte
    /// little-endian header length followed by '{'.
    static func load(path: String) throws -> LoadedModel {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("\(path): cannot read the file")
        }
        let bytes = [UInt8](data)
        if bytes.count > 8 && bytes[8] == UInt8(ascii: "{") {
            do {
                // version 2 holds a graph; version 1 a layer stack, lowered to a graph
                let g = try NativeFormat.graph(bytes: bytes)
                return try engine(g, formatName: g.layerSpecs == nil ? "native InLoop graph (version 2)" : "native InLoop layer stack (version 1)")
            } catch {
                throw CLIError("\(path): \(error.message)")
            }
        }
        return try onnx(path: path, bytes: bytes)
    }
}

/// The last component of a path ("dir/model.onnx" → "model.onnx"), as NSString's lastPathComponent.
func baseName(_ path: String) -> String {
    let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
    return trimmed.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
}
