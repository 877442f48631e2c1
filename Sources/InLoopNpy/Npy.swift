// FoundationEssentials, not Foundation: full Foundation links ICU's data statically (60 MB) into
// the installed `bin/inloop`.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A NumPy `.npy` array of float32 or float64 values, held in C (row-major) order.
///
/// Reads format versions 1.0, 2.0 and 3.0, little- or big-endian `f4`/`f8`, C or Fortran order
/// (Fortran-order data is reordered to C order on reading). Writes version 1.0, little-endian, C order.
public struct NpyArray {
    public enum DType: String, Sendable {
        case float32 = "<f4"
        case float64 = "<f8"

        public var size: Int { self == .float32 ? 4 : 8 }
    }

    public var shape: [Int]
    public var dtype: DType
    /// The values in C order, as Double (exact for both dtypes).
    public var values: [Double]

    public var count: Int { values.count }

    public init(shape: [Int], dtype: DType, values: [Double]) throws {
        guard NpyArray.elementCount(shape) == values.count else {
            throw Failure(description: "npy: shape \(shape) does not match \(values.count) values")
        }
        self.shape = shape
        self.dtype = dtype
        self.values = values
    }

    /// The product of `shape`, or nil when a dimension is negative or the product overflows.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = m
        }
        return n
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public static func read(path: String) throws -> NpyArray {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "\(path): cannot read the file")
        }
        do {
            return try parse([UInt8](data))
        } catch let e as Failure {
            throw Failure(description: "\(path): \(e.description)")
        }
    }

    public static func parse(_ b: [UInt8]) throws -> NpyArray {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard b.count >= 10, Array(b[0..<6]) == magic else { throw Failure(description: "not a .npy file (no \\x93NUMPY magic)") }
        let major = b[6]
        var headerStart = 10
        var headerLen: Int
        switch major {
        case 1:
            headerLen = Int(b[8]) | Int(b[9]) << 8
        case 2, 3:
            guard b.count >= 12 else { throw Failure(description: "truncated .npy header") }
            headerLen = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24
            headerStart = 12
        default:
            throw Failure(description: ".npy format version \(major).\(b[7]) is not supported (1, 2 or 3)")
        }
        guard headerStart + headerLen <= b.count,
              let header = String(bytes: b[headerStart..<(headerStart + headerLen)], encoding: major == 3 ? .utf8 : .isoLatin1)
        else { throw Failure(description: "truncated .npy header") }
        let descr = try field(header, "descr")
        let fortran = try field(header, "fortran_order")
        let shapeText = try field(header, "shape")

        let unquoted = trimmed(descr, "'\"")
        let little: Bool
        let size: Int
        switch unquoted {
        case "<f4", "|f4", "=f4": little = true; size = 4
        case "<f8", "|f8", "=f8": little = true; size = 8
        case ">f4": little = false; size = 4
        case ">f8": little = false; size = 8
        default:
            throw Failure(description: "dtype \(unquoted) is not supported: use float32 or float64 (e.g. x.astype(np.float32))")
        }
        guard fortran == "False" || fortran == "True" else { throw Failure(description: "bad fortran_order \(fortran)") }
        let inner = trimmed(shapeText, "() ")
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let p = trimmed(part, whitespace)
            if p.isEmpty { continue }
            guard let v = Int(p.hasSuffix("L") ? String(p.dropLast()) : p), v >= 0 else {
                throw Failure(description: "bad shape \(shapeText)")
            }
            shape.append(v)
        }
        var n = 1
        for d in shape {
            let (m, o) = n.multipliedReportingOverflow(by: d)
            guard !o, m <= Int.max / 8 else { throw Failure(description: "shape \(shape) is too large") }
            n = m
        }
        let dataStart = headerStart + headerLen
        guard b.count - dataStart >= n * size else {
            throw Failure(description: "holds \(b.count - dataStart) data bytes, shape \(shape) of \(size)-byte floats needs \(n * size)")
        }
        var values = [Double](repeating: 0, count: n)
        b.withUnsafeBufferPointer { p in
            for i in 0..<n {
                var bits: UInt64 = 0
                let o = dataStart + i * size
                for k in 0..<size {
                    let byte = UInt64(p[o + (little ? k : size - 1 - k)])
                    bits |= byte << (8 * UInt64(k))
                }
                values[i] = size == 4 ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits))) : Double(bitPattern: bits)
            }
        }
        if fortran == "True" && shape.count > 1 {
            values = fortranToC(values, shape: shape)
        }
        return try NpyArray(shape: shape, dtype: size == 4 ? .float32 : .float64, values: values)
    }

    /// The value of `key` in the header dict (a Python literal), as text.
    private static func field(_ header: String, _ key: String) throws -> String {
        for quote in ["'", "\""] {
            guard let r = header.firstRange(of: "\(quote)\(key)\(quote)") else { continue }
            var rest = header[r.upperBound...].drop { $0 == " " || $0 == ":" }
            if rest.first == "(" {
                guard let close = rest.firstIndex(of: ")") else { break }
                return String(rest[...close])
            }
            var out = ""
            var q: Character? = nil
            while let c = rest.first {
                if q == nil && (c == "'" || c == "\"") { q = c } else if c == q { out.append(c); break }
                if q == nil && (c == "," || c == "}") { break }
                out.append(c)
                rest = rest.dropFirst()
            }
            return trimmed(out, whitespace)
        }
        throw Failure(description: "the .npy header has no '\(key)'")
    }

    /// Reorders column-major data of `shape` into row-major order.
    private static func fortranToC(_ v: [Double], shape: [Int]) -> [Double] {
        let r = shape.count
        var fStride = [Int](repeating: 1, count: r)
        for k in 1..<r { fStride[k] = fStride[k - 1] * shape[k - 1] }
        var out = [Double](repeating: 0, count: v.count)
        var idx = [Int](repeating: 0, count: r)
        for i in 0..<v.count {
            var off = 0
            for k in 0..<r { off += idx[k] * fStride[k] }
            out[i] = v[off]
            var k = r - 1
            while k >= 0 {
                idx[k] += 1
                if idx[k] < shape[k] { break }
                idx[k] = 0
                k -= 1
            }
        }
        return out
    }

    public func bytes() -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        // magic(6) + version(2) + length(2) + header + '\n', padded with spaces to a multiple of 64
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
        let n = header.utf8.count
        out += [UInt8(n & 0xFF), UInt8(n >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + values.count * dtype.size)
        for v in values {
            let bits: UInt64 = dtype == .float32 ? UInt64(Float(v).bitPattern) : v.bitPattern
            for k in 0..<dtype.size { out.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(k)))) }
        }
        return out
    }

    public func write(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes())) else {
            throw Failure(description: "\(path): cannot write the file")
        }
    }
}

/// Space and tab, what a .npy header pads with.
private let whitespace = " \t\r\n"

/// `text` without the leading and trailing characters that are in `set`.
private func trimmed(_ text: some StringProtocol, _ set: String) -> String {
    let drop = Set(set)
    guard let first = text.firstIndex(where: { !drop.contains($0) }),
          let last = text.lastIndex(where: { !drop.contains($0) }) else { return "" }
    return String(text[first...last])
}
