// inloop explain: saliency, Grad-CAM and LRP maps of one output of a model (issue 15, item 5), written
// as .npy and, for image inputs ([C, H, W] per sample), as PNG heat maps over the input image.
import ArgumentParser
import FoundationEssentials
import InLoopCore
import InLoopNpy

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain one output of a model: saliency, Grad-CAM or LRP maps of the input (.npy, and .png for images).",
        discussion: """
            The model is differentiated in float64. --input is a float32 or float64 .npy array of shape \
            [batch, per-sample dims...] (or one sample without the batch axis). Methods: saliency \
            (dy_k/dx, the input's shape), gradcam:NODE (Grad-CAM on the tensor named NODE; [batch, H, W] \
            upsampled bilinearly to the input's size when the tensor has the input's rank, else at the \
            tensor's resolution; --no-upsample keeps that resolution), lrp (epsilon-rule relevance, the \
            input's shape). Writes PREFIX.npy in the input's dtype and, when each sample is an image \
            [C, H, W] (or [H, W]) and the map covers it, PREFIX.png (one sample) or PREFIX-<b>.png per \
            sample: the image's first channel in grey, blended towards red by the heat h in [0, 1] \
            (red - green = 255 h): h is the map (Grad-CAM), max over channels of |s| (saliency) or the \
            positive part of the sum over channels (LRP), each divided by its maximum.
            """)

    @Argument(help: "Model file (.safetensors or .onnx).")
    var model: String

    @Option(name: .long, help: "Input array (.npy).")
    var input: String

    @Option(name: .long, help: "Output value to explain (0-based, within one sample's flattened output).")
    var outputIndex: Int

    @Option(name: .long, help: "saliency, gradcam:NODE or lrp.")
    var method: String

    @Option(name: .long, help: "Output prefix: writes PREFIX.npy (and PREFIX.png).")
    var out: String = "explain"

    @Option(name: .long, help: "LRP stabiliser epsilon.")
    var epsilon: Double = 1e-6

    @Flag(name: .long, help: "Grad-CAM: keep the map at the tensor's resolution.")
    var noUpsample = false

    func run() {
        do {
            let m = try LoadedModel.load(path: model)
            guard let engineModel = m.model else { throw CLIError("\(model): no engine model to differentiate") }
            let net = try EngineNetwork<Double>(model: engineModel)
            guard m.inputs.count == 1 else { throw CLIError("explain takes models with one input; this one has \(m.inputs.count)") }
            let dims = m.inputs[0].dims
            let a = try NpyArray.read(path: input)
            let batch: Int, single: Bool
            if !a.shape.isEmpty && Array(a.shape.dropFirst()) == dims {
                (batch, single) = (a.shape[0], false)
            } else if a.shape == dims {
                (batch, single) = (1, true)
            } else {
                throw CLIError("\(input): array of shape \(a.shape) for input '\(m.inputs[0].name)', which takes \(formatShape(dims))")
            }
            guard batch >= 1 else { throw CLIError("\(input): empty batch (shape \(a.shape))") }
            guard outputIndex >= 0, outputIndex < net.outputSize else {
                throw CLIError("--output-index \(outputIndex) out of range: the model has \(net.outputSize) output values per sample")
            }
            let x = a.values
            var values: [Double]
            var shape: [Int]
            var heat: [Double]? = nil   // per sample H × W, for the PNG
            let image = dims.count == 3 ? (h: dims[1], w: dims[2]) : dims.count == 2 ? (h: dims[0], w: dims[1]) : nil
            if method == "saliency" || method == "lrp" {
                values = [Double](repeating: 0, count: x.count)
                try x.withUnsafeBufferPointer { (xp) throws(InLoopError) in
                    try values.withUnsafeMutableBufferPointer { (vp) throws(InLoopError) in
                        if method == "lrp" {
                            try net.lrp(xp.baseAddress!, batch: batch, output: outputIndex, epsilon: epsilon, into: vp.baseAddress!)
                        } else {
                            try net.saliency(xp.baseAddress!, batch: batch, output: outputIndex, into: vp.baseAddress!)
                        }
                    }
                }
                shape = a.shape
                if let image {
                    let plane = image.h * image.w, channels = dims.count == 3 ? dims[0] : 1
                    var h = [Double](repeating: 0, count: batch * plane)
                    for b in 0..<batch {
                        for p in 0..<plane {
                            var v = method == "lrp" ? 0 : -Double.infinity
                            for c in 0..<channels {
                                let s = values[(b * channels + c) * plane + p]
                                v = method == "lrp" ? v + s : Swift.max(v, abs(s))
                            }
                            h[b * plane + p] = Swift.max(v, 0)
                        }
                    }
                    heat = h
                }
            } else if method.hasPrefix("gradcam:") {
                let node = String(method.dropFirst("gradcam:".count))
                guard !node.isEmpty else { throw CLIError("--method gradcam:NODE needs a tensor name") }
                // upsample by default when the tensor has the input's rank (a feature map of the image)
                var upsample = !noUpsample
                if upsample, (try? net.gradCAMShape(tensor: node, upsample: true)) == nil {
                    _ = try net.gradCAMShape(tensor: node, upsample: false)   // a bad name fails here
                    upsample = false
                }
                let mapShape = try net.gradCAMShape(tensor: node, upsample: upsample)
                let per = mapShape.reduce(1, *)
                values = [Double](repeating: 0, count: batch * per)
                try x.withUnsafeBufferPointer { (xp) throws(InLoopError) in
                    try values.withUnsafeMutableBufferPointer { (vp) throws(InLoopError) in
                        try net.gradCAM(xp.baseAddress!, batch: batch, tensor: node, output: outputIndex, upsample: upsample,
                                        into: vp.baseAddress!)
                    }
                }
                shape = (single ? [] : [batch]) + mapShape
                if let image, mapShape == [image.h, image.w] { heat = values }
            } else {
                throw CLIError("--method must be saliency, gradcam:NODE or lrp; got '\(method)'")
            }
            try NpyArray(shape: shape, dtype: a.dtype, values: values).write(path: out + ".npy")
            print("\(out).npy: \(method) of output \(outputIndex), shape \(shape)")
            if let image, let heat {
                let plane = image.h * image.w, channels = dims.count == 3 ? dims[0] : 1
                for b in 0..<batch {
                    let grey = Array(x[(b * channels * plane)..<(b * channels * plane + plane)])
                    let png = PNG.heatMap(grey: grey, heat: Array(heat[(b * plane)..<((b + 1) * plane)]), width: image.w, height: image.h)
                    let path = batch == 1 ? out + ".png" : "\(out)-\(b).png"
                    guard FileManager.default.createFile(atPath: path, contents: Data(png)) else { throw CLIError("\(path): cannot write the file") }
                    print("\(path): \(image.w) x \(image.h) heat map over channel 0 of sample \(b)")
                }
            }
        } catch {
            fail(error)
        }
    }
}

/// A minimal PNG writer: 8-bit RGB, zlib stream of stored (uncompressed) deflate blocks.
enum PNG {
    /// The grey image (min-max scaled) blended towards pure red by heat / max(heat):
    /// rgb = (1 - h)·(g, g, g) + h·(1, 0, 0).
    static func heatMap(grey: [Double], heat: [Double], width: Int, height: Int) -> [UInt8] {
        let lo = grey.min() ?? 0, hi = grey.max() ?? 0
        let top = heat.max() ?? 0
        var rows: [UInt8] = []
        rows.reserveCapacity(height * (1 + 3 * width))
        for y in 0..<height {
            rows.append(0)   // filter: none
            for x in 0..<width {
                let i = y * width + x
                let g = hi > lo ? (grey[i] - lo) / (hi - lo) : 0.5
                let h = top > 0 && heat[i].isFinite ? Swift.min(Swift.max(heat[i] / top, 0), 1) : 0
                let r = (1 - h) * g + h, gb = (1 - h) * g
                rows.append(UInt8((r * 255).rounded()))
                rows.append(UInt8((gb * 255).rounded()))
                rows.append(UInt8((gb * 255).rounded()))
            }
        }
        return encode(rgb: rows, width: width, height: height)
    }

    /// `rgb`: height rows, each a filter byte and 3·width bytes.
    static func encode(rgb rows: [UInt8], width: Int, height: Int) -> [UInt8] {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr: [UInt8] = []
        ihdr += be32(UInt32(width)); ihdr += be32(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]   // 8 bits, truecolour, deflate, adaptive filtering, no interlace
        chunk("IHDR", ihdr, into: &out)
        var z: [UInt8] = [0x78, 0x01]
        var at = 0
        repeat {
            let n = Swift.min(65535, rows.count - at)
            z.append(at + n == rows.count ? 1 : 0)   // BFINAL, BTYPE = 00 (stored)
            z += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += rows[at..<(at + n)]
            at += n
        } while at < rows.count
        z += be32(adler32(rows))
        chunk("IDAT", z, into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        out += be32(UInt32(data.count))
        let body = Array(type.utf8) + data
        out += body
        out += be32(crc32(body))
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for v in bytes {
            a = (a + UInt32(v)) % 65521
            b = (b + a) % 65521
        }
        return b << 16 | a
    }
}
