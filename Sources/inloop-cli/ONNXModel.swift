// FoundationEssentials, not Foundation: full Foundation links ICU's data statically (60 MB) into
// the installed `bin/inloop`.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import InLoopCore
import InLoopFormats

// ONNX through the library's reader (InLoopFormats) and graph model (InLoopCore), public API only.

func readONNXGraph(path: String) throws -> Engine.Graph {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("\(path): cannot read the file")
    }
    do {
        return try ONNXReader.engineGraph(bytes: [UInt8](data), name: baseName(path))
    } catch {
        throw CLIError("\(path): \(error.message)")
    }
}

extension LoadedModel {
    static func onnx(path: String, bytes: [UInt8]) throws -> LoadedModel {
        do {
            // decoded once (external data read once): the graph as written, then the model of it
            let graph = try ONNXReader.engineGraph(bytes: bytes, name: baseName(path), directory: ModelFile.directory(of: path))
            return try engine(graph, formatName: "ONNX graph")
        } catch {
            throw CLIError("\(path): \(error.message)")
        }
    }

    /// A model on the one engine of `file` (an ONNX file's graph, or a native version-2 file's).
    static func engine(_ file: Engine.Graph, formatName: String) throws(InLoopError) -> LoadedModel {
        // operator counts and FLOPs of the graph as written, before the model fuses it
        var counts: [(String, Int)] = []
        for n in file.nodes {
            if let i = counts.firstIndex(where: { $0.0 == n.op.name }) { counts[i].1 += 1 } else { counts.append((n.op.name, 1)) }
        }
        let written = try file.copy()
        let m = try Engine.Model(graph: file, name: file.name)
        let b = m.fixedBatch ?? 1
        let flops = (try? written.flops(batch: b)).flatMap { $0 }.map { $0 / b }
        let plan = "\(m.stepCount ?? 0) steps (one plan for \(m.fixedBatch == nil ? "every batch size" : "batch \(b)"))"
        var loaded = LoadedModel(
            formatName: formatName,
            inputs: m.inputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            outputs: m.outputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            opCounts: counts, parameterCount: m.parameterCount, flopsPerSample: flops, planDescription: plan,
            run: { xs, batch in try m.runArrays(batch: batch, xs) })
        loaded.runShaped = { xs in try m.runShaped(xs) }
        loaded.model = m
        loaded.declaredRanks = m.inputShapes.map(\.count)
        loaded.inputBatched = m.inputBatched
        loaded.outputBatched = m.outputBatched
        // inputs of both float types (CastLike's `like`): every output in its own declared type
        let mixed = m.graph.inputs.contains { m.graph[$0].type?.dtype != m.graph.dtype }
        loaded.outputFloat64 = m.graph.outputs.map { (v) -> Bool? in
            guard let t = m.graph[v].type?.dtype, t != m.graph.dtype || mixed else { return nil }
            return t == .float64
        }
        return loaded
    }
}
