#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import InLoopCore

/// ONNX external data: tensors whose bytes live in another file (`data_location: EXTERNAL` and the
/// `external_data` keys `location`, `offset`, `length`), as `onnx.save(..., save_as_external_data=True)`
/// and `torch.onnx.export(..., dynamo=True)` write them (`model.onnx` + `model.onnx.data`).
///
/// The bytes are read when a model is loaded from its path, from files in the model file's directory
/// only: a `location` that is absolute, has a `..` component, or resolves (through symbolic links)
/// outside that directory is refused, and so is an `offset`/`length` past the end of the file (checked
/// arithmetic). A model loaded from memory has no directory: its external tensors are refused with a
/// message saying so (`EngineGraphReader.tensor`).
enum ONNXExternalData {
    /// Whether the model may refer to external data: every external tensor names a `location` key,
    /// so bytes without that word need no decoding pass (a cheap test, no false negatives).
    static func mayHaveExternalData(_ bytes: [UInt8]) -> Bool {
        let word = Array("location".utf8)
        guard bytes.count >= word.count else { return false }
        var i = 0
        let last = bytes.count - word.count
        while i <= last {
            if bytes[i] == word[0] {
                var k = 1
                while k < word.count, bytes[i + k] == word[k] { k += 1 }
                if k == word.count { return true }
            }
            i += 1
        }
        return false
    }

    /// The directory of a model file's path ("m.onnx" → ".", "/a/m.onnx" → "/a").
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Reads every external tensor of the main graph (initializers and node attribute tensors) from
    /// files in `directory` into its `raw_data`, so the readers see a self-contained model.
    static func inline(_ model: inout Onnx_ModelProto, directory: String) throws(InLoopError) {
        var files = Files(directory: directory)
        defer { files.close() }
        for i in model.graph.initializer.indices where isExternal(model.graph.initializer[i]) {
            let name = model.graph.initializer[i].name
            do { try files.load(&model.graph.initializer[i]) } catch { throw error.prefixed("initializer '\(name)'") }
        }
        for n in model.graph.node.indices {
            for a in model.graph.node[n].attribute.indices {
                let where_ = "node '\(model.graph.node[n].name)' attribute '\(model.graph.node[n].attribute[a].name)'"
                if model.graph.node[n].attribute[a].hasT, isExternal(model.graph.node[n].attribute[a].t) {
                    do { try files.load(&model.graph.node[n].attribute[a].t) } catch { throw error.prefixed(where_) }
                }
                for k in model.graph.node[n].attribute[a].tensors.indices where isExternal(model.graph.node[n].attribute[a].tensors[k]) {
                    do { try files.load(&model.graph.node[n].attribute[a].tensors[k]) } catch { throw error.prefixed(where_) }
                }
            }
        }
    }

    /// The first external tensor of the main graph, if any.
    static func firstExternal(_ model: Onnx_ModelProto) -> Onnx_TensorProto? {
        if let t = model.graph.initializer.first(where: isExternal) { return t }
        for n in model.graph.node {
            for a in n.attribute {
                if a.hasT, isExternal(a.t) { return a.t }
                if let t = a.tensors.first(where: isExternal) { return t }
            }
        }
        return nil
    }

    /// Resolves the external data of a decoded model: read from `directory` (the model file's), or
    /// refused when there is none (a model loaded from memory).
    static func resolve(_ model: inout Onnx_ModelProto, bytes: [UInt8], directory: String?) throws(InLoopError) {
        guard mayHaveExternalData(bytes) else { return }
        if let directory {
            try inline(&model, directory: directory)
        } else if let t = firstExternal(model) {
            throw InLoopError(.unsupported, "tensor '\(t.name)': " + fromMemoryMessage(t))
        }
    }

    static func isExternal(_ t: Onnx_TensorProto) -> Bool { t.dataLocation == .external || !t.externalData.isEmpty }

    /// The message for an external tensor when the model's directory is unknown (loaded from memory).
    static func fromMemoryMessage(_ t: Onnx_TensorProto) -> String {
        let loc = t.externalData.first { $0.key == "location" }?.value ?? "?"
        return "data is stored in an external file ('\(loc)'), which a model loaded from memory (inloop_model_load_buffer) cannot read: load the model from its path (inloop_model_load) with the data file beside it, or save it self-contained (onnx.save(model, path, save_as_external_data=False))"
    }

    /// The external files of one model, each opened once.
    struct Files {
        let directory: String
        /// Canonical directory (realpath), computed on first use.
        var root: String? = nil
        var open: [String: (file: UnsafeMutablePointer<FILE>, size: Int)] = [:]

        init(directory: String) { self.directory = directory }

        mutating func close() {
            for (_, f) in open { fclose(f.file) }
            open = [:]
        }

        /// A non-negative decimal integer of an `offset`/`length` key.
        static func number(_ s: String, _ key: String) throws(InLoopError) -> Int {
            guard !s.isEmpty, s.utf8.count <= 19, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let v = Int(s) else {
                throw InLoopError(.format, "external data key '\(key)' is '\(s)', not a non-negative integer")
            }
            return v
        }

        static func canonical(_ path: String) -> String? {
            guard let p = realpath(path, nil) else { return nil }
            defer { free(p) }
            return String(cString: p)
        }

        /// The opened file of `location`, checked to lie inside the model's directory.
        mutating func file(_ location: String) throws(InLoopError) -> (file: UnsafeMutablePointer<FILE>, size: Int) {
            if let f = open[location] { return f }
            guard !location.isEmpty, !location.utf8.contains(0) else {
                throw InLoopError(.format, "external data location is empty")
            }
            guard !location.hasPrefix("/"), !location.contains("\\"), !location.contains(":") else {
                throw InLoopError(.format, "external data location '\(location)' is not a relative path; InLoop reads external data only from files in the model's directory")
            }
            guard !location.split(separator: "/", omittingEmptySubsequences: false).contains("..") else {
                throw InLoopError(.format, "external data location '\(location)' leaves the model's directory ('..'); InLoop reads external data only from files in the model's directory")
            }
            if root == nil {
                guard let r = Files.canonical(directory) else {
                    throw InLoopError(.io, "\(directory): cannot resolve the model's directory: \(String(cString: strerror(errno)))")
                }
                root = r
            }
            guard let root else { throw InLoopError(.internal, "model directory not resolved") }
            let full = (directory.hasSuffix("/") ? directory : directory + "/") + location
            guard let resolved = Files.canonical(full) else {
                throw InLoopError(.io, "external data file '\(location)' (\(full)): cannot open: \(String(cString: strerror(errno)))")
            }
            let prefix = root.hasSuffix("/") ? root : root + "/"
            guard resolved.hasPrefix(prefix) else {
                throw InLoopError(.format, "external data location '\(location)' resolves to \(resolved), outside the model's directory \(root)")
            }
            var st = stat()
            guard stat(resolved, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw InLoopError(.io, "external data file '\(location)' is not a regular file")
            }
            guard let f = fopen(resolved, "rb") else {
                throw InLoopError(.io, "external data file '\(location)': cannot open: \(String(cString: strerror(errno)))")
            }
            let size = Int(st.st_size)
            open[location] = (f, size)
            return (f, size)
        }

        /// Reads one tensor's bytes into `raw_data` and marks it internal.
        mutating func load(_ t: inout Onnx_TensorProto) throws(InLoopError) {
            var location: String? = nil, offset = 0, length: Int? = nil
            for e in t.externalData {
                switch e.key {
                case "location": location = e.value
                case "offset": offset = try Files.number(e.value, "offset")
                case "length": length = try Files.number(e.value, "length")
                default: break   // checksum, basepath: not needed to read the bytes
                }
            }
            guard let location else { throw InLoopError(.format, "external data has no 'location' key") }
            guard let type = ONNXType(rawValue: t.dataType), type != .string else {
                throw InLoopError(.unsupported, "element type \(t.dataType) is not supported in external data (InLoop reads floating-point, integer and boolean tensors)")
            }
            var shape: [Int] = []
            for d in t.dims {
                guard d >= 0, d <= Int64(Limits.maxDimension) else { throw InLoopError(.format, "dimension \(d) in dims \(t.dims) is invalid") }
                shape.append(Int(d))
            }
            let count = try InLoopCore.Tensor.elementCount(shape)
            let (need, o) = count.multipliedReportingOverflow(by: type.size)
            guard !o, need <= FileIO.maxFileSize else {
                throw InLoopError(.format, "shape \(InLoopCore.Tensor.format(shape)) of \(type.name) is too large")
            }
            if let length, length != need {
                throw InLoopError(.format, "external data length \(length) but shape \(InLoopCore.Tensor.format(shape)) of \(type.name) needs \(need) bytes")
            }
            try Limits.allocation(bytes: need, "tensor of shape \(InLoopCore.Tensor.format(shape))")
            let (f, size) = try file(location)
            let (end, o2) = offset.addingReportingOverflow(need)
            guard !o2, end <= size else {
                throw InLoopError(.format, "external data at offset \(offset) with \(need) bytes goes past the end of '\(location)' (\(size) bytes); is the file truncated?")
            }
            var bytes = [UInt8](repeating: 0, count: need)
            if need > 0 {
                guard fseeko(f, off_t(offset), SEEK_SET) == 0 else {
                    throw InLoopError(.io, "external data file '\(location)': cannot seek to \(offset)")
                }
                let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, need, f) }
                guard got == need else {
                    throw InLoopError(.io, "external data file '\(location)': read \(got) of \(need) bytes at offset \(offset)")
                }
            }
            t.rawData = Data(bytes)
            t.externalData = []
            t.dataLocation = .default
        }
    }
}
