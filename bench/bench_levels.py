#!/usr/bin/env python3
"""InLoop at each kernel level (Kernels.cpuLevel: baseline, avx2, avx512 as this CPU allows) against
ONNX Runtime, 1 thread, in ONE process: per model and batch, the calls of every level and of ORT are
interleaved over ROUNDS rounds and the fastest round is kept, so that a busy shared machine moves both
sides alike. Prints ORT time ÷ InLoop time per level (above 1: InLoop is faster).

  INLOOP_LIB=.build/release/libInLoop.so python3 bench/bench_levels.py [model ...]
  env: ROUNDS (default 15), PEERS (default ../shared/peers: its peerlib/bench_peers), MODELS
  (default ../shared/models). The level is switched with ilk_set_cpu_level (an internal symbol of
  libInLoop.so, not part of the C API); a library without it is measured as one column (e.g. an older
  build, for a before/after comparison with the same script).
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get("PEERS", os.path.join(ROOT, "..", "shared", "peers"))
MODELS = os.environ.get("MODELS", os.path.join(ROOT, "..", "shared", "models"))
sys.path.insert(0, PEERS)
import peerlib as P  # noqa: E402
import bench_peers as B  # noqa: E402

# The shared models directory names its files <name>.weights.safetensors / <name>.architecture.json.
P.paths = lambda name: {"onnx": os.path.join(MODELS, f"{name}.onnx"),
                        "weights": os.path.join(MODELS, f"{name}.weights.safetensors"),
                        "sidecar": os.path.join(MODELS, f"{name}.architecture.json"),
                        "io": os.path.join(MODELS, f"{name}.io.safetensors")}

CASES = [("l96", 1), ("l96", 16), ("l96", 256), ("l96", 4096), ("column_mlp", 16), ("column_mlp", 256),
         ("column_mlp", 4096), ("column_mlp_small", 256), ("column_conv1d", 256), ("cnn2d", 1), ("cnn2d", 16)]
NAMES = {None: "inloop", 0: "baseline", 1: "avx2", 2: "avx512"}


def per_call(run, budget=0.02):
    """Mean time per call over a block of at least 3 calls and `budget` seconds."""
    run()
    n, t0 = 0, time.perf_counter()
    while True:
        run()
        n += 1
        t = time.perf_counter() - t0
        if t > budget and n >= 3:
            return t / n


def fmt(s):
    return f"{s * 1e6:.1f} us" if s < 1e-2 else f"{s * 1e3:.2f} ms"


def main():
    rounds = int(os.environ.get("ROUNDS", "15"))
    cases = [c for c in CASES if len(sys.argv) < 2 or c[0] in sys.argv[1:]]
    inl, ort = B.Peer("inloop", 1), B.Peer("ort", 1)
    c = inl.c
    levels = [None]
    if hasattr(c, "ilk_set_cpu_level"):
        levels = list(range(c.ilk_cpu_supported_level(), -1, -1))
    print(f"{os.environ.get('INLOOP_LIB')}: InLoop {inl.version}, ORT {ort.version}, {rounds} rounds")
    print("| model | batch | " + " | ".join(f"InLoop {NAMES[l]}" for l in levels) + " | ORT | "
          + " | ".join(f"ORT ÷ {NAMES[l]}" for l in levels) + " |")
    print("|---|---|" + "---|" * (2 * len(levels) + 1))
    for name, b in cases:
        x = P.make_input(name, b, P.load_model(name)[1])
        ri, ro = inl.make(name)(x), ort.make(name)(x)
        best, bo = {l: float("inf") for l in levels}, float("inf")
        for _ in range(rounds):
            for l in levels:
                if l is not None:
                    c.ilk_set_cpu_level(l)
                best[l] = min(best[l], per_call(ri))
            bo = min(bo, per_call(ro))
        print(f"| {name} | {b} | " + " | ".join(fmt(best[l]) for l in levels) + f" | {fmt(bo)} | "
              + " | ".join(f"{bo / best[l]:.2f}" for l in levels) + " |", flush=True)


if __name__ == "__main__":
    main()
