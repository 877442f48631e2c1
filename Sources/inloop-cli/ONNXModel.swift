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
        let loaded: any InferenceModel
        do {
            loaded = try ONNXReader.loadModel(bytes: bytes, name: baseName(path))
        } catch {
            throw CLIError("\(path): \(error.message)")
        }
        if let m = loaded as? Engine.Model {
            // operator counts and FLOPs from the file's graph as written (before fusion)
            let file = try? ONNXReader.engineGraph(bytes: bytes)
            var counts: [(String, Int)] = []
            for n in file?.nodes ?? [] {
                if let i = counts.firstIndex(where: { $0.0 == n.op.name }) { counts[i].1 += 1 } else { counts.append((n.op.name, 1)) }
            }
            let b = m.fixedBatch ?? 1
            let flops = (try? file?.flops(batch: b)).flatMap { $0 }.map { $0 / b }
            let plan = "runs on the one engine: \(m.stepCount ?? 0) steps (plan for \(m.fixedBatch == nil ? "every batch size" : "batch \(b)"))"
            var loaded = LoadedModel(
                formatName: "ONNX graph",
                inputs: m.inputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
                outputs: m.outputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
                opCounts: counts, parameterCount: m.parameterCount, flopsPerSample: flops, planDescription: plan,
                run: { xs, batch in try m.runArrays(batch: batch, xs) })
            loaded.runShaped = { xs in try m.runShaped(xs) }
            loaded.declaredRanks = m.inputShapes.map(\.count)
            loaded.inputBatched = m.inputBatched
            loaded.outputBatched = m.outputBatched
            loaded.outputFloat64 = m.graph.outputs.map { (v) -> Bool? in
                guard let t = m.graph[v].type?.dtype, t != m.graph.dtype else { return nil }
                return t == .float64
            }
            return loaded
        }
        // the graph engine (ops not yet on the one engine)
        let graph: Graph
        let model: GraphModel
        do {
            graph = try ONNXReader.graph(bytes: bytes)
            model = try GraphModel(graph: graph, name: baseName(path))
        } catch {
            throw CLIError("\(path): \(error.message)")
        }
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
            plan = "runs on the graph engine; plan at batch \(b): \(s.steps.count) steps (" + steps.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
                + "); \(s.folded) nodes folded, \(s.fused) fused, \(s.aliased) aliased; \(s.buffers) buffers, "
                + "\(formatCount(s.workspaceFloats)) workspace floats"
        }
        return LoadedModel(
            formatName: "ONNX graph",
            inputs: model.inputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            outputs: model.outputSpecs.map { TensorInfo(name: $0.name, dims: $0.shape) },
            opCounts: counts, parameterCount: model.parameterCount, flopsPerSample: flops, planDescription: plan,
            run: { xs, batch in try model.run(batch: batch, xs) })
    }
}
