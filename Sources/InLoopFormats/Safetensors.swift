import InLoopCore

/// Reader and writer of the safetensors container: an 8-byte little-endian header length, a JSON
/// header describing each tensor (dtype, shape, byte range), then the raw little-endian data.
/// Every field of an untrusted file is checked before any tensor is touched.
public struct SafetensorsFile {
    public enum DType: String, Sendable {
        case f32 = "F32", f64 = "F64", i64 = "I64", bool = "BOOL"
        var size: Int {
            switch self {
            case .f32: return 4
            case .f64, .i64: return 8
            case .bool: return 1
            }
        }
        var isFloat: Bool { self == .f32 || self == .f64 }
    }

    public struct Entry {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Byte range within the data section.
        public let begin: Int
        public let end: Int
    }

    /// Tensor entries in header order.
    public let entries: [Entry]
    public let metadata: [(String, String)]
    private let bytes: [UInt8]
    private let dataStart: Int

    /// Largest JSON header accepted (the format's reference implementation uses the same limit).
    public static let maxHeaderSize = 100_000_000

    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }
    public func metadataValue(_ key: String) -> String? { metadata.first { $0.0 == key }?.1 }

    public init(bytes: [UInt8]) throws(InLoopError) {
        guard bytes.count >= 8 else {
            throw InLoopError(.format, bytes.isEmpty ? "file is empty" :
                "file is \(bytes.count) bytes, too short for a safetensors header (8-byte length prefix)")
        }
        var n: UInt64 = 0
        for k in 0..<8 { n |= UInt64(bytes[k]) << (8 * UInt64(k)) }
        guard n > 0 else { throw InLoopError(.format, "header length is 0") }
        guard n <= UInt64(SafetensorsFile.maxHeaderSize) else {
            throw InLoopError(.format, "header length \(n) bytes is larger than the \(SafetensorsFile.maxHeaderSize)-byte limit; not a safetensors file?")
        }
        guard Int(n) <= bytes.count - 8 else {
            throw InLoopError(.format, "header length \(n) bytes runs past the end of the file (\(bytes.count) bytes); the file is truncated or not a safetensors file")
        }
        let headerEnd = 8 + Int(n)
        let header: JSON
        do {
            header = try JSON.parse(bytes[8..<headerEnd])
        } catch {
            throw error.prefixed("safetensors header")
        }
        guard let members = header.objectValue else {
            throw InLoopError(.format, "safetensors header is \(header.kindName), expected an object")
        }
        let dataSize = bytes.count - headerEnd
        var entries: [Entry] = []
        var metadata: [(String, String)] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard let m = value.objectValue else {
                    throw InLoopError(.format, "__metadata__ is \(value.kindName), expected an object of strings")
                }
                for (k, v) in m {
                    guard let s = v.stringValue else {
                        throw InLoopError(.format, "__metadata__[\"\(k)\"] is \(v.kindName), expected a string")
                    }
                    metadata.append((k, s))
                }
                continue
            }
            entries.append(try SafetensorsFile.entry(name, value, dataSize: dataSize))
        }
        // Byte ranges must not overlap (sorted sweep).
        let sorted = entries.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for k in sorted.indices.dropFirst() where sorted[k].begin < sorted[k - 1].end {
            throw InLoopError(.format, "tensors '\(sorted[k - 1].name)' (bytes \(sorted[k - 1].begin)..<\(sorted[k - 1].end)) and '\(sorted[k].name)' (bytes \(sorted[k].begin)..<\(sorted[k].end)) overlap")
        }
        self.entries = entries
        self.metadata = metadata
        self.bytes = bytes
        self.dataStart = headerEnd
    }

    private static func entry(_ name: String, _ value: JSON, dataSize: Int) throws(InLoopError) -> Entry {
        let at = "tensor '\(name)'"
        guard value.objectValue != nil else { throw InLoopError(.format, "\(at): entry is \(value.kindName), expected an object") }
        guard let dt = value["dtype"]?.stringValue else { throw InLoopError(.format, "\(at): missing \"dtype\"") }
        guard let dtype = DType(rawValue: dt) else {
            throw InLoopError(.format, "\(at): dtype \(dt) is not supported (InLoop reads F32, F64, I64 and BOOL)")
        }
        guard let shapeJSON = value["shape"]?.arrayValue else { throw InLoopError(.format, "\(at): missing \"shape\" array") }
        var shape: [Int] = []
        for d in shapeJSON {
            guard let v = d.intValue, v >= 0 else { throw InLoopError(.format, "\(at): shape entries must be non-negative integers, got \(d)") }
            shape.append(v)
        }
        guard let off = value["data_offsets"]?.arrayValue, off.count == 2,
              let begin = off[0].intValue, let end = off[1].intValue else {
            throw InLoopError(.format, "\(at): \"data_offsets\" must be [begin, end]")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw InLoopError(.format, "\(at): data_offsets [\(begin), \(end)] lie outside the \(dataSize)-byte data section (truncated file?)")
        }
        let count: Int
        do { count = try Tensor.elementCount(shape) } catch { throw error.prefixed(at) }
        let (bytesNeeded, o) = count.multipliedReportingOverflow(by: dtype.size)
        guard !o, bytesNeeded == end - begin else {
            throw InLoopError(.format, "\(at): shape \(Tensor.format(shape)) of \(dtype.rawValue) needs \(o ? "more than \(Int.max)" : String(bytesNeeded)) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// The named tensor in its own type, for the one engine (F32, F64, I64 as int64, BOOL as bool;
    /// a BOOL byte other than 0 or 1 is an error).
    public func engineTensor(_ name: String) throws(InLoopError) -> Engine.Tensor {
        guard let e = entry(name) else { throw InLoopError(.format, "tensor '\(name)' is missing from the file") }
        let dtype: Engine.DType
        switch e.dtype {
        case .f32: dtype = .float32
        case .f64: dtype = .float64
        case .i64: dtype = .int64
        case .bool: dtype = .bool
        }
        let t = try Engine.Tensor(zeros: e.shape, dtype: dtype)
        let start = dataStart + e.begin, n = e.end - e.begin
        if e.dtype == .bool {
            for i in 0..<n where bytes[start + i] > 1 {
                throw InLoopError(.format, "tensor '\(name)': BOOL byte \(i) is \(bytes[start + i]), not 0 or 1")
            }
        }
        // little-endian data into the (aligned) storage, byte for byte (this library runs on
        // little-endian machines only: x86-64, aarch64)
        let dst = t.storage.raw
        bytes.withUnsafeBufferPointer { b in
            if n > 0, let base = b.baseAddress { dst.copyMemory(from: base + start, byteCount: n) }
        }
        return t
    }

    /// The named tensor as float32 (F64 values are rounded to nearest).
    public func tensor(_ name: String) throws(InLoopError) -> Tensor {
        guard let e = entry(name) else { throw InLoopError(.format, "tensor '\(name)' is missing from the file") }
        guard e.dtype.isFloat else { throw InLoopError(.format, "tensor '\(name)' is \(e.dtype.rawValue), a floating type is needed") }
        let t = try Tensor(zeros: e.shape)
        let p = t.storage.base
        let start = dataStart + e.begin
        switch e.dtype {
        case .f32:
            for i in 0..<t.count {
                let o = start + 4 * i
                let u = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
                p[i] = Float(bitPattern: u)
            }
        case .f64:
            for i in 0..<t.count {
                let o = start + 8 * i
                var u: UInt64 = 0
                for k in 0..<8 { u |= UInt64(bytes[o + k]) << (8 * UInt64(k)) }
                p[i] = Float(Double(bitPattern: u))
            }
        default: break
        }
        return t
    }

    /// Values of the named tensor, exactly (F32 widened, F64 as stored).
    public func doubles(_ name: String) throws(InLoopError) -> [Double] {
        guard let e = entry(name) else { throw InLoopError(.format, "tensor '\(name)' is missing from the file") }
        guard e.dtype.isFloat else { throw InLoopError(.format, "tensor '\(name)' is \(e.dtype.rawValue), a floating type is needed") }
        let count = (e.end - e.begin) / e.dtype.size
        let start = dataStart + e.begin
        var out = [Double](repeating: 0, count: count)
        for i in 0..<count {
            let o = start + e.dtype.size * i
            var u: UInt64 = 0
            for k in 0..<e.dtype.size { u |= UInt64(bytes[o + k]) << (8 * UInt64(k)) }
            out[i] = e.dtype == .f32 ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: u))) : Double(bitPattern: u)
        }
        return out
    }

    /// One tensor to write: little-endian bytes of `dtype` values in row-major order.
    public struct RawTensor {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: [UInt8]

        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
        }

        /// An engine tensor's bytes (little-endian, as stored).
        public init(name: String, tensor t: Engine.Tensor) throws(InLoopError) {
            let dtype: DType
            switch t.dtype {
            case .float32: dtype = .f32
            case .float64: dtype = .f64
            case .int64: dtype = .i64
            case .bool: dtype = .bool
            }
            let n = t.count * t.dtype.size
            let src = t.storage.raw
            self.init(name: name, dtype: dtype, shape: t.shape, bytes: Array(UnsafeRawBufferPointer(start: src, count: n)))
        }

        public init(name: String, float32 values: [Float], shape: [Int]? = nil) {
            var b: [UInt8] = []
            b.reserveCapacity(values.count * 4)
            for v in values { let u = v.bitPattern; for k in 0..<4 { b.append(UInt8(truncatingIfNeeded: u >> (8 * UInt32(k)))) } }
            self.init(name: name, dtype: .f32, shape: shape ?? [values.count], bytes: b)
        }

        public init(name: String, float64 values: [Double], shape: [Int]? = nil) {
            var b: [UInt8] = []
            b.reserveCapacity(values.count * 8)
            for v in values { let u = v.bitPattern; for k in 0..<8 { b.append(UInt8(truncatingIfNeeded: u >> (8 * UInt64(k)))) } }
            self.init(name: name, dtype: .f64, shape: shape ?? [values.count], bytes: b)
        }
    }

    /// Serialises tensors and string metadata; tensors are laid out in the given order and the
    /// header is padded with spaces to a multiple of 8 bytes, so the output is deterministic.
    public static func serialize(raw tensors: [RawTensor], metadata: [(String, String)]) -> [UInt8] {
        var members: [(String, JSON)] = []
        if !metadata.isEmpty { members.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        var offset = 0
        for t in tensors {
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .number(Double($0)) })),
                ("data_offsets", .array([.number(Double(offset)), .number(Double(offset + t.bytes.count))])),
            ])))
            offset += t.bytes.count
        }
        var header = Array(JSON.object(members).description.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        let h = UInt64(header.count)
        for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: h >> (8 * UInt64(k)))) }
        out += header
        for t in tensors { out += t.bytes }
        return out
    }

    /// Serialises float32 tensors and string metadata (see `serialize(raw:metadata:)`).
    public static func serialize(tensors: [(String, Tensor)], metadata: [(String, String)]) -> [UInt8] {
        serialize(raw: tensors.map { RawTensor(name: $0.0, float32: $0.1.values, shape: $0.1.shape) }, metadata: metadata)
    }
}
