// FoundationEssentials, not Foundation: full Foundation links ICU's data statically (60 MB) into
// the installed `bin/inloop`.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import InLoopCore
import InLoopFormats

// ONNX through the library's reader (InLoopFormats) and graph model (InLoopCore), public API only.

func readONNXGraph(path: String) throws -> Graph {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("\(path): cannot read the file")
    }
    do {
        return try ONNXReader.graph(bytes: [UInt8](data))
    } catch {
        throw CLIError("\(path): \(error.message)")
    }
}

extension LoadedModel {
    static func onnx(path: String, bytes: [UInt8]) throws -> LoadedModel {
        let graph: Graph
        let loaded: any InferenceModel
        do {
            graph = try ONNXReader.graph(bytes: bytes)
            loaded = try ONNXReader.loadModel(bytes: bytes, name: baseName(path))
        } catch {
            throw CLIError("\(path): \(error.message)")
        }
        // the graph engine describes the plan (and counts FLOPs) until the one engine does
        let model: GraphModel
        do { model = try GraphModel(graph: graph, name: baseName(path)) } catch { throw CLIError("\(path): \(error.message)") }
        // operator counts in order of first appearance, by the file's operator names
        var counts: [(String, Int)] = []
        for n in graph.nodes {
            if let i = counts.firstIndex(where: { $0.0 == n.opType }) { counts[i].1 += 1 } else { counts.append((n.opType, 1)) }
        }
        let b = model.fixedBatch ?? 1
        let summary = try? model.summary(batch: b)
        let flops = summary.map { $0.flops / b }
        var plan: String? = nil
        if let s = summary {
            var steps: [(String, Int)] = []
            for k in s.steps {
                if let i = steps.firstIndex(where: { $0.0 == k }) { steps[i].1 += 1 } else { steps.append((k, 1)) }
            }
            plan = (loaded is Engine.Model ? "runs on the one engine (\(ONNXReader.engineStepCount(loaded) ?? 0) steps); graph-engine " : "runs on the graph engine; ")
                + "plan at batch \(b): \(s.steps.count) steps (" + steps.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
                + "); \(s.folded) nodes folded, \(s.fused) fused, \(s.aliased) aliased; \(s.buffers) buffers, "
                + "\(formatCount(s.workspaceFloats)) workspace floats"
        }
        return LoadedModel(
            formatName: "ONNX graph",
            inputs: model.inputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            outputs: model.outputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            opCounts: counts, parameterCount: model.parameterCount, flopsPerSample: flops, planDescription: plan,
            run: { xs, batch in try loaded.runArrays(batch: batch, xs) })
    }
}
