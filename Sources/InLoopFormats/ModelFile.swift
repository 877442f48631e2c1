import InLoopCore

/// Loads any model file InLoop reads, choosing the reader by content (not by file name): a native
/// safetensors file starts with an 8-byte little-endian header length followed by `{`; anything else
/// is read as an ONNX protobuf.
public enum ModelFile {
    public static func load(path: String) throws(InLoopError) -> Engine.Model {
        let bytes = try FileIO.read(path)
        do {
            return try load(bytes: bytes, name: ONNXReader.modelName(path), directory: directory(of: path))
        } catch { throw error.prefixed(path) }
    }

    /// `name` names an ONNX model in messages (a native file carries its own name). `directory`: the
    /// model file's directory, where an ONNX model's external data files are; nil (a model in memory):
    /// external data is refused.
    public static func load(bytes: [UInt8], name: String = "", directory: String? = nil) throws(InLoopError) -> Engine.Model {
        if isSafetensors(bytes) { return try NativeFormat.load(bytes: bytes) }
        do {
            return try ONNXReader.load(bytes: bytes, name: name, directory: directory)
        } catch {
            // Not protobuf, but a plausible safetensors length prefix: the safetensors reader's message
            // says more (e.g. "header is an array").
            if error.kind == .format, error.message.hasPrefix("not a"), looksLikeSafetensorsPrefix(bytes) {
                do { _ = try NativeFormat.load(bytes: bytes) } catch let native { throw native }
            }
            throw error
        }
    }

    /// The directory of a model file's path, where an ONNX model's external data files are
    /// ("m.onnx" → ".", "/a/m.onnx" → "/a").
    public static func directory(of path: String) -> String { ONNXExternalData.directory(of: path) }

    /// 8-byte little-endian length, then `{`.
    public static func isSafetensors(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 9 && bytes[8] == UInt8(ascii: "{") && bytes[0..<8].contains { $0 != 0 }
    }

    static func looksLikeSafetensorsPrefix(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 8 else { return true }
        var n: UInt64 = 0
        for k in 0..<8 { n |= UInt64(bytes[k]) << (8 * UInt64(k)) }
        return n <= UInt64(bytes.count - 8)
    }
}
