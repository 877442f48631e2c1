import InLoopCore

/// Input ranges in a model file (either native version) or a checkpoint: four float64 tensors
/// `inloop.input_range.{lo,hi,mean,std}` (one value per feature of the first input) and the
/// `__metadata__` entry `inloop_input_ranges` = {"input": name, "samples": n} (docs/FORMAT.md). Readers
/// that do not know them ignore them; a file without them has no ranges.
public enum InputRangesFile {
    public static let metadataKey = "inloop_input_ranges"
    static let prefix = "inloop.input_range."

    /// The tensors and metadata entry of `r`.
    static func entries(_ r: Engine.InputRanges, input: String) -> ([SafetensorsFile.RawTensor], (String, String)) {
        let t: [SafetensorsFile.RawTensor] = [.init(name: prefix + "lo", float64: r.lo), .init(name: prefix + "hi", float64: r.hi),
                                              .init(name: prefix + "mean", float64: r.mean), .init(name: prefix + "std", float64: r.std)]
        let meta: JSON = .object([("input", .string(input)), ("samples", .number(Double(r.samples)))])
        return (t, (metadataKey, meta.description))
    }

    /// `bytes` (a safetensors file) with `r` added.
    public static func adding(_ r: Engine.InputRanges, input: String, to bytes: [UInt8]) throws(InLoopError) -> [UInt8] {
        let file = try SafetensorsFile(bytes: bytes)
        var raw: [SafetensorsFile.RawTensor] = []
        for e in file.entries where !e.name.hasPrefix(prefix) { raw.append(try .init(name: e.name, tensor: try file.engineTensor(e.name))) }
        let (t, m) = entries(r, input: input)
        return SafetensorsFile.serialize(raw: raw + t, metadata: file.metadata.filter { $0.0 != metadataKey } + [m])
    }

    /// The ranges a file holds, or nil.
    public static func read(_ file: SafetensorsFile) throws(InLoopError) -> Engine.InputRanges? {
        guard let text = file.metadataValue(metadataKey) else { return nil }
        do throws(InLoopError) {
            let meta = try JSON.parse(text)
            guard let n = meta["samples"]?.intValue, n >= 0 else { throw InLoopError(.format, "\"samples\" must be an integer ≥ 0") }
            return try Engine.InputRanges(lo: try file.doubles(prefix + "lo"), hi: try file.doubles(prefix + "hi"),
                                          mean: try file.doubles(prefix + "mean"), std: try file.doubles(prefix + "std"), samples: n)
        } catch {
            throw error.prefixed("input ranges")
        }
    }

    /// Sets the ranges `bytes` hold (if any) on `model`.
    static func attach(_ bytes: [UInt8], to model: Engine.Model) throws(InLoopError) -> Engine.Model {
        if let r = try read(try SafetensorsFile(bytes: bytes)) {
            do { try model.setInputRanges(r) } catch { throw error.prefixed("input ranges") }
        }
        return model
    }
}
