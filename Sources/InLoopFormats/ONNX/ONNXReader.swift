#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftProtobuf
import InLoopCore

/// Reads ONNX model files (protobuf, decoded with swift-protobuf from the committed onnx.pb.swift) into
/// the one engine's graph (`ONNXFrontEnd.swift`) and a ready-to-run `Engine.Model`. Every problem of an
/// untrusted file is an `InLoopError` naming the node, the tensor or the attribute.
public enum ONNXReader {
    /// The ONNX operators InLoop runs (default domain): the op table's.
    public static var supportedOps: [String] {
        OpTable.standard.names.filter { !$0.contains("::") }
    }

    /// Loads an ONNX file as a ready-to-run model; errors are prefixed with the path.
    public static func load(path: String) throws(InLoopError) -> Engine.Model {
        let bytes = try FileIO.read(path)
        do { return try load(bytes: bytes, name: modelName(path), directory: ModelFile.directory(of: path)) } catch { throw error.prefixed(path) }
    }

    /// Loads ONNX bytes as a ready-to-run model on the one engine. `directory`: the model file's
    /// directory, where its external data files are (nil: none may be).
    public static func load(bytes: [UInt8], name: String = "", directory: String? = nil) throws(InLoopError) -> Engine.Model {
        let g = try engineGraph(bytes: bytes, name: name, directory: directory)
        return try Engine.Model(graph: g, name: g.name)
    }

    /// "dir/column_mlp.onnx" → "column_mlp".
    static func modelName(_ path: String) -> String {
        var base = Substring(path)
        if let slash = base.lastIndex(of: "/") { base = base[base.index(after: slash)...] }
        if base.hasSuffix(".onnx") { base = base.dropLast(5) }
        return String(base)
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? BinaryDecodingError {
            switch e {
            case .truncated: return "the data ends in the middle of a field (truncated)"
            case .malformedProtobuf: return "malformed protobuf"
            case .invalidUTF8: return "a string is not valid UTF-8"
            case .messageDepthLimit: return "messages nested too deeply"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }
}

/// ONNX TensorProto data types InLoop reads.
enum ONNXType: Int32 {
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, string = 8, bool = 9
    case float16 = 10, double = 11, uint32 = 12, uint64 = 13, bfloat16 = 16

    var isFloat: Bool { self == .float || self == .double || self == .float16 || self == .bfloat16 }
    var name: String {
        switch self {
        case .float: return "FLOAT"
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .int32: return "INT32"
        case .int64: return "INT64"
        case .string: return "STRING"
        case .bool: return "BOOL"
        case .float16: return "FLOAT16"
        case .double: return "DOUBLE"
        case .uint32: return "UINT32"
        case .uint64: return "UINT64"
        case .bfloat16: return "BFLOAT16"
        }
    }
    var size: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .float, .int32, .uint32: return 4
        case .int64, .double, .uint64: return 8
        case .string: return 0
        }
    }

    /// IEEE half or bfloat16 bits → Float.
    static func half(_ h: UInt16, bfloat: Bool) -> Float {
        if bfloat { return Float(bitPattern: UInt32(h) << 16) }
        let sign = UInt32(h >> 15) << 31, exp = Int((h >> 10) & 0x1f), frac = UInt32(h & 0x3ff)
        if exp == 0 {
            let v = Float(frac) * 0x1p-24
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (frac << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (frac << 13))
    }
}
