// inloop: the InLoop command-line tool.
//
//   inloop inspect MODEL                          inputs, outputs, shapes, op counts, parameters, FLOPs
//   inloop run MODEL --input x.npy --output y.npy run a model on NumPy arrays
//   inloop convert MODEL.onnx MODEL.safetensors   ONNX layer stack -> native InLoop format
//   inloop explain MODEL --input x.npy --output-index k --method saliency|gradcam:NODE|lrp [--out PREFIX]
//                                                 saliency, Grad-CAM or LRP maps (.npy; .png for images)
//
// MODEL is a native InLoop .safetensors file or an ONNX file (chosen by content, as the library does).
import ArgumentParser
// FoundationEssentials, not Foundation: full Foundation links ICU's data statically (60 MB) into
// the installed `bin/inloop`.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import InLoopCore
import InLoopFormats
import InLoopNpy

@main
struct InLoopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inloop",
        abstract: "Inspect, run, convert and explain InLoop models (native .safetensors or ONNX).",
        version: "InLoop CLI",
        subcommands: [Inspect.self, Run.self, Convert.self, Explain.self])
}

/// A failure printed as `inloop: <message>` with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

func fail(_ error: Error) -> Never {
    let text: String
    if let e = error as? InLoopError { text = e.message } else { text = "\(error)" }
    let bytes = Array("inloop: \(text)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func formatCount(_ n: Int) -> String {
    let s = String(n)
    var out = ""
    for (i, c) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 && c != "-" { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

func formatShape(_ dims: [Int], batch: Bool = true) -> String {
    "[" + ((batch ? ["N"] : []) + dims.map(String.init)).joined(separator: ", ") + "]"
}

// MARK: - inspect

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model's inputs and outputs (per-sample shapes, N = batch), operator counts, parameter count and FLOPs per sample.")

    @Argument(help: "Model file (.safetensors or .onnx).")
    var model: String

    func run() {
        do {
            let m = try LoadedModel.load(path: model)
            print("model: \(model) (\(m.formatName))")
            print("inputs:")
            for t in m.inputs { print("  \(t.name)  \(formatShape(t.dims))") }
            print("outputs:")
            for t in m.outputs { print("  \(t.name)  \(formatShape(t.dims))") }
            print("operators (\(m.opCounts.reduce(0) { $0 + $1.1 }) nodes):")
            let width = m.opCounts.map { $0.0.count }.max() ?? 0
            for (op, n) in m.opCounts {
                print("  \(op)\(String(repeating: " ", count: width - op.count)) \(n)")
            }
            print("parameters: \(formatCount(m.parameterCount))")
            if let f = m.flopsPerSample {
                print("FLOPs per sample: \(formatCount(f))")
            } else {
                print("FLOPs per sample: unknown")
            }
            if let p = m.planDescription { print(p) }
            print("kernels: \(Kernels.cpuLevel) (this CPU: \(Kernels.supportedCPULevel); INLOOP_CPU=baseline|avx2 lowers it)")
        } catch {
            fail(error)
        }
    }
}

// MARK: - run

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on .npy arrays.",
        discussion: """
            Each --input is a float32 or float64 .npy array of shape [batch, per-sample dims...] (or the \
            per-sample dims alone for one sample), given in the model's input order or as NAME=FILE; \
            an ONNX model takes each array with its full shape, as onnxruntime does. Outputs are \
            written with their inferred shapes in the dtype of the first input (an ONNX output that the \
            graph casts to the other type: that type), one --output per model output (in order, or NAME=FILE).
            """)

    @Argument(help: "Model file (.safetensors or .onnx).")
    var model: String

    @Option(name: .long, help: "Input array: FILE.npy or NAME=FILE.npy (repeat for several inputs; none for a model without inputs).")
    var input: [String] = []

    @Option(name: .long, help: "Output array: FILE.npy or NAME=FILE.npy (repeat for several outputs).")
    var output: [String]

    @Option(name: .long, help: "Threads InLoop computes with.")
    var threads: Int = 1

    func run() {
        do {
            guard threads >= 1 else { throw CLIError("--threads must be at least 1") }
            Engine.Threads.set(threads)
            let m = try LoadedModel.load(path: model)
            let inputFiles = try assign(input, to: m.inputs.map(\.name), what: "input")
            let outputFiles = try assign(output, to: m.outputs.map(\.name), what: "output")
            if let runShaped = m.runShaped {
                // Full shapes: each array as it is; one sample may leave out a leading batch axis.
                var xs: [(shape: [Int], values: [Double])] = []
                var dtype: NpyArray.DType? = nil
                var oneSample = false
                for (k, file) in inputFiles.enumerated() {
                    let a = try NpyArray.read(path: file)
                    dtype = dtype ?? a.dtype
                    var shape = a.shape
                    if m.inputBatched[k] && shape.count + 1 == m.declaredRanks[k] {
                        shape = [1] + shape
                        oneSample = true
                    }
                    xs.append((shape, a.values))
                }
                let ys = try runShaped(xs)
                for (k, (file, y)) in zip(outputFiles, ys).enumerated() {
                    var shape = y.shape
                    if oneSample && m.outputBatched[k] && shape.first == 1 { shape.removeFirst() }
                    let declared = k < m.outputFloat64.count ? m.outputFloat64[k] : nil
                    let t: NpyArray.DType = declared.map { $0 ? .float64 : .float32 } ?? dtype ?? .float32
                    try NpyArray(shape: shape, dtype: t, values: y.values).write(path: file)
                }
                return
            }
            var arrays: [NpyArray] = []
            var batch: Int? = nil
            var singleSample = false
            for (t, file) in zip(m.inputs, inputFiles) {
                let a = try NpyArray.read(path: file)
                let b: Int
                if Array(a.shape.dropFirst()) == t.dims && !a.shape.isEmpty {
                    b = a.shape[0]
                } else if a.shape == t.dims {
                    b = 1
                    singleSample = true
                } else {
                    throw CLIError("\(file): array of shape \(a.shape) for input '\(t.name)', which takes \(formatShape(t.dims)) (per-sample \(t.dims), \(t.count) values)")
                }
                guard b >= 1 else { throw CLIError("\(file): empty batch (shape \(a.shape))") }
                if let batch, batch != b {
                    throw CLIError("\(file): batch \(b) differs from the batch \(batch) of the other inputs")
                }
                batch = b
                arrays.append(a)
            }
            guard let batch else { throw CLIError("no input") }
            let ys = try m.run(arrays.map { $0.values.map { Float($0) } }, batch)
            let dtype = arrays.first?.dtype ?? .float32
            for ((t, file), y) in zip(zip(m.outputs, outputFiles), ys) {
                let shape = singleSample ? t.dims : [batch] + t.dims
                try NpyArray(shape: shape, dtype: dtype, values: y.map { Double($0) }).write(path: file)
            }
        } catch {
            fail(error)
        }
    }

    /// Files for each of `names`: positional (in order) or NAME=FILE.
    func assign(_ args: [String], to names: [String], what: String) throws -> [String] {
        var files = [String?](repeating: nil, count: names.count)
        var next = 0
        for a in args {
            if let eq = a.firstIndex(of: "="), let i = names.firstIndex(of: String(a[..<eq])) {
                files[i] = String(a[a.index(after: eq)...])
            } else {
                while next < names.count && files[next] != nil { next += 1 }
                guard next < names.count else {
                    throw CLIError("too many --\(what) arguments: the model has \(names.count) \(what)s (\(names.joined(separator: ", ")))")
                }
                files[next] = a
            }
        }
        let missing = names.indices.filter { files[$0] == nil }.map { names[$0] }
        guard missing.isEmpty else {
            throw CLIError("no --\(what) for \(missing.map { "'\($0)'" }.joined(separator: ", ")) (the model's \(what)s: \(names.joined(separator: ", ")))")
        }
        return files.map { $0! }
    }
}

// MARK: - convert

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert an ONNX model to the native InLoop .safetensors format (version 2: the graph itself).",
        discussion: """
            Any model InLoop runs converts: the graph, its attributes and its initializers (in their own \
            element types) are stored in the safetensors file, which loads without the ONNX reader and \
            gives bitwise the outputs of the ONNX file.
            """)

    @Argument(help: "ONNX model file.")
    var source: String

    @Argument(help: "Native model file to write (.safetensors).")
    var destination: String

    func run() {
        do {
            let graph = try readONNXGraph(path: source)
            try NativeV2.save(graph, to: destination)
            var parameters = 0
            for v in graph.values { if let c = v.constant, c.dtype.isFloatingPoint { parameters += c.count } }
            print("\(destination): \(graph.nodes.count) nodes, \(formatCount(parameters)) parameters")
        } catch {
            fail(error)
        }
    }
}
