// inloop-bench-training: median time of one Adam training step (forward, MSE loss, backward, Adam
// update) at batch 256 for the benchmark MLPs, float32, as bench/bench_training.py compares with
// PyTorch in the same run. Prints `RESULT key seconds` lines.
//
//   inloop-bench-training MODELS_DIR [BATCH]
import InLoopCore
import InLoopFormats
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

let args = CommandLine.arguments
let dir = args.count > 1 ? args[1] : "build/models"
let batch = args.count > 2 ? Int(args[2]) ?? 256 : 256

do {
    for name in ["column_mlp", "column_mlp_small"] {
        let model = try NativeFormat.load(path: "\(dir)/\(name).safetensors")
        var config = TrainerConfig()
        config.optimizer = OptimizerConfig(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), learningRate: 1e-4)
        let trainer = try Trainer<Float>(network: try EngineNetwork<Float>(model: model), config: config)
        var random = RandomState(seed: 1)
        let x = (0..<(batch * model.inputSize)).map { _ in Float(random.normal()) }
        let y = (0..<(batch * model.outputSize)).map { _ in Float(random.normal()) }
        func step() { _ = try? trainer.trainStep(x: x, y: y, batch: batch) }
        for _ in 0..<3 { step() }
        var times: [Double] = []
        for _ in 0..<15 {
            let t0 = now()
            for _ in 0..<5 { step() }
            times.append((now() - t0) / 5)
        }
        times.sort()
        let t = times[times.count / 2]
        print("\(name): Adam step at batch \(batch): \(Double(Int(t * 1e5)) / 100) ms (\(trainer.network.parameterCount) parameters)")
        print("RESULT \(name)_adam_b\(batch)_s \(t)")
    }
} catch {
    print("inloop-bench-training: \(error)")
    exit(1)
}
