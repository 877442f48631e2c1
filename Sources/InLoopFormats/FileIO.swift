#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import InLoopCore

/// Whole-file reads and writes through the C library (the formats must not need Foundation).
public enum FileIO {
    /// Largest file the readers accept (model files are weights, not data sets).
    public static let maxFileSize = 1 << 36

    /// Reads a whole regular file; a missing file, a directory or a read error is an `.io` error.
    public static func read(_ path: String) throws(InLoopError) -> [UInt8] {
        guard !path.isEmpty else { throw InLoopError(.io, "empty file name") }
        var st = stat()
        if stat(path, &st) != 0 {
            throw InLoopError(.io, "\(path): cannot open: \(errorText(errno))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw InLoopError(.io, "\(path): is a directory, not a model file")
        }
        guard let f = fopen(path, "rb") else {
            throw InLoopError(.io, "\(path): cannot open: \(errorText(errno))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if bytes.count > maxFileSize {
                throw InLoopError(.io, "\(path): larger than \(maxFileSize >> 30) GiB, not a model file")
            }
            if n < chunk.count {
                if ferror(f) != 0 { throw InLoopError(.io, "\(path): read error: \(errorText(errno))") }
                break
            }
        }
        return bytes
    }

    /// Writes `bytes` to `path` through a temporary file renamed into place, so a crash never
    /// leaves a half-written model behind.
    public static func write(_ bytes: [UInt8], to path: String) throws(InLoopError) {
        guard !path.isEmpty else { throw InLoopError(.io, "empty file name") }
        let tmp = path + ".tmp-inloop"
        guard let f = fopen(tmp, "wb") else {
            throw InLoopError(.io, "\(path): cannot create: \(errorText(errno))")
        }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let flushed = fflush(f) == 0
        fclose(f)
        guard n == bytes.count, flushed else {
            unlink(tmp)
            throw InLoopError(.io, "\(path): write failed: \(errorText(errno))")
        }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw InLoopError(.io, "\(path): cannot replace file: \(errorText(errno))")
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "error \(code)" }
        return String(cString: s)
    }
}
