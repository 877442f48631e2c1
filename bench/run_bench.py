#!/usr/bin/env python3
"""`make bench`: InLoop forward vs bare BLAS on the same shapes, and the per-call cost of the
Fortran -> C -> Swift path, all timed in one run (compare ratios: these machines are shared).

Runs with one OpenBLAS thread and OPENBLAS_CORETYPE=SkylakeX unless set already (OpenBLAS
misdetects these CPUs as Haswell and leaves AVX-512 unused). Needs ../shared/models converted by
`make models` (the Makefile's bench target does it). NumPy (x @ W.T chain, its own OpenBLAS) is timed
as a peer when importable.

The ONNX section times ../shared/models/*.onnx (l96, column_mlp, column_conv1d, cnn2d) through the C
API (build/bench_onnx, no Python in the loop) and onnxruntime in this process (1 thread, sequential,
`session.run` from Python, when importable), model by model in the same run.
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")
env = dict(os.environ)
env.setdefault("OPENBLAS_NUM_THREADS", "1")
env.setdefault("OMP_NUM_THREADS", "1")
# OpenBLAS takes these CPUs for Haswell; use its AVX-512 kernels when the CPU has AVX-512
# (INLOOP_BENCH_CORETYPE overrides, e.g. to compare with Haswell).
with open("/proc/cpuinfo") as f:
    has_avx512 = " avx512f" in f.read()
env["OPENBLAS_CORETYPE"] = os.environ.get("INLOOP_BENCH_CORETYPE", "SkylakeX" if has_avx512 else env.get("OPENBLAS_CORETYPE", ""))


def results(cmd):
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout
    for line in out.splitlines():
        if not line.startswith("RESULT"):
            print(line)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed")
    return {k: float(v) for k, v in re.findall(r"^\s*RESULT\s+(\S+)\s+(\S+)\s*$", out, re.M)}


def numpy_peer(batches):
    try:
        import numpy as np
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import inloopfmt
    except ImportError:
        print("numpy peer: skipped (numpy not importable)")
        return {}
    arch, tensors = inloopfmt.read_model(os.path.join(MODELS, "column_mlp.safetensors"))
    ws = []
    for L in arch["layers"]:
        if L["type"] == "dense":
            ws.append((np.ascontiguousarray(tensors[L["weight"]].T), tensors[L["bias"]]))
    out = {}
    for b in batches:
        x = np.random.default_rng(0).standard_normal((b, 94)).astype(np.float32)

        def run():
            h = x
            for w, bias in ws:
                h = h @ w
                h += bias
            return h
        run()
        n = max(3, int(0.05 / max(1e-6, timeit(run, 1))))
        out[b] = sorted(timeit(run, n) for _ in range(7))[3]
    return out


def timeit(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main():
    if "--onnx-only" in sys.argv:  # just the ONNX section (needs build/bench_onnx)
        print(f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} OPENBLAS_NUM_THREADS={env['OPENBLAS_NUM_THREADS']}")
        onnx_bench()
        return
    if not os.path.exists(os.path.join(MODELS, "column_mlp.safetensors")):
        sys.exit("bench: build/models/column_mlp.safetensors missing (run `make models` with ../shared present)")
    print(f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} OPENBLAS_NUM_THREADS={env['OPENBLAS_NUM_THREADS']}\n")
    print("== engine core (Swift) vs bare BLAS calls on the same layer shapes ==")
    core = results([os.path.join(ROOT, ".build", "release", "inloop-bench"), MODELS])
    print("\n== the same models called from Fortran ==")
    fort = results([os.path.join(ROOT, "build", "bench_fortran"), MODELS])
    # The l96 batch-1 figures are sub-microsecond differences: time the core path again after the
    # Fortran run and keep the best of all, as the Fortran side keeps its best round.
    for _ in range(3):
        again = results([os.path.join(ROOT, ".build", "release", "inloop-bench"), MODELS, "--l96-only"])
        core["l96_b1_core_s"] = min(core["l96_b1_core_s"], again["l96_b1_core_s"])
    batches = [1, 16, 256, 4096]
    peer = numpy_peer(batches)

    flops = 998912
    print("\n## column_mlp forward, 1 thread (median per call; GFLOP/s)\n")
    print("| batch | InLoop from Fortran | InLoop core | bare sgemm/sgemv | InLoop core / bare | InLoop reproducible mode | NumPy (x @ W.T) |")
    print("|---|---|---|---|---|---|---|")
    for b in batches:
        e, r, f = core[f"column_mlp_b{b}_engine_s"], core[f"column_mlp_b{b}_bare_s"], fort[f"column_mlp_b{b}_fortran_s"]
        g = lambda t: f"{t * 1e6:.1f} µs ({flops * b / t / 1e9:.1f})"
        npy = g(peer[b]) if b in peer else "–"
        rep = g(core[f"column_mlp_b{b}_reproducible_s"])
        print(f"| {b} | {g(f)} | {g(e)} | {g(r)} | {100 * r / e:.0f}% | {rep} | {npy} |")
    c, fm, raw = core["l96_b1_core_s"], fort["l96_b1_fortran_s"], fort["l96_b1_rawc_s"]
    print("\n## l96 at batch 1 (one grid point per call)\n")
    print("| path | time per call | overhead over the core |")
    print("|---|---|---|")
    print(f"| engine core called from Swift | {c * 1e9:.0f} ns | – |")
    print(f"| Fortran raw bind(C) -> C ABI -> core | {raw * 1e9:.0f} ns | {(raw - c) * 1e9:.0f} ns |")
    print(f"| Fortran `net%forward` -> C ABI -> core | {fm * 1e9:.0f} ns | {(fm - c) * 1e9:.0f} ns |")
    onnx_bench()


# FLOPs per sample (../shared/models/README.md) and batch sizes of the ONNX section.
ONNX_MODELS = {"l96": (4224, [1, 16, 256, 4096]), "column_mlp": (998912, [1, 16, 256, 4096]),
               "column_conv1d": (437760, [1, 16, 256, 4096]), "cnn2d": (12845184, [1, 16, 128])}
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared", "models"))


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def median_per_call(f, rounds=9, target=0.05):
    f()
    n = max(1, int(target / max(1e-7, timeit(f, 1))))
    return sorted(timeit(f, n) for _ in range(rounds))[rounds // 2]


def onnx_bench():
    bench = os.path.join(ROOT, "build", "bench_onnx")
    if not os.path.exists(bench):
        print("\nONNX section skipped: build/bench_onnx not built (make bench builds it)")
        return
    probe = subprocess.run([bench, os.path.join(SHARED, "l96.onnx"), "1"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if probe.returncode != 0:
        print(f"\nONNX section skipped: InLoop cannot run {SHARED}/l96.onnx: {probe.stdout.strip()[-300:]}")
        return
    try:
        import numpy as np
        import onnxruntime as ort
        ort_version = ort.__version__
    except ImportError:
        ort, ort_version = None, ""
        print("\nonnxruntime not importable: InLoop times only (pip install onnxruntime)")
    print(f"\n== ONNX models: InLoop (C API) vs onnxruntime {ort_version if ort else ''} (1 thread each) ==")
    rows = {}
    for name, (flops, batches) in ONNX_MODELS.items():
        path = os.path.join(SHARED, name + ".onnx")
        inl = results([bench, path, *map(str, batches)])
        native = os.path.join(MODELS, name + ".safetensors")  # the same model as a native layer stack
        nat = results([bench, native, *map(str, batches)]) if os.path.exists(native) else {}
        peer = {}
        if ort:
            sess = ort_session(path)
            shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape][1:]
            for b in batches:
                feed = {"x": np.random.default_rng(b).uniform(-1, 1, (b, *shape)).astype(np.float32)}
                peer[b] = median_per_call(lambda: sess.run(None, feed))
        rows[name] = [(b, inl[f"b{b}_s"], peer.get(b), nat.get(f"b{b}_s")) for b in batches]
    g = lambda t, b, flops: f"{t * 1e6:.1f} µs ({flops * b / t / 1e9:.1f})" if t < 1e-3 else \
        f"{t * 1e3:.2f} ms ({flops * b / t / 1e9:.1f})"
    for name, (flops, _) in ONNX_MODELS.items():
        print(f"\n## {name}.onnx forward, 1 thread (median per call; GFLOP/s)\n")
        print("| batch | InLoop, .onnx (C API) | onnxruntime (Python session.run) | ORT time / InLoop time "
              "| InLoop, native .safetensors |")
        print("|---|---|---|---|---|")
        for b, t, p, n in rows[name]:
            ratio = f"{p / t:.2f}×" if p else "–"
            print(f"| {b} | {g(t, b, flops)} | {g(p, b, flops) if p else '–'} | {ratio} | {g(n, b, flops) if n else '–'} |")
    # l96 at batch 1: per call, InLoop through C vs onnxruntime's session.run overhead from Python
    per = results([bench, os.path.join(SHARED, "l96.onnx"), "--per-call"])["b1_s"]
    print("\n## l96.onnx at batch 1 (one grid point per call)\n")
    print("| path | time per call | onnxruntime / InLoop |")
    print("|---|---|---|")
    print(f"| InLoop, inloop_model_forward_f32 from C (best of 15 × 100k calls) | {per * 1e9:.0f} ns | – |")
    if ort:
        sess = ort_session(os.path.join(SHARED, "l96.onnx"))
        x = np.full((1, 1), 0.7, np.float32)
        feed = {"x": x}
        t_run = min(median_per_call(lambda: sess.run(None, feed), rounds=5) for _ in range(3))
        y = np.zeros((1, 1), np.float32)
        io = sess.io_binding()
        io.bind_cpu_input("x", x)
        io.bind_output("y", "cpu", 0, np.float32, [1, 1], y.ctypes.data)
        t_io = min(median_per_call(lambda: sess.run_with_iobinding(io), rounds=5) for _ in range(3))
        print(f"| onnxruntime `session.run` from Python | {t_run * 1e9:.0f} ns | {t_run / per:.1f}× |")
        print(f"| onnxruntime `run_with_iobinding` from Python | {t_io * 1e9:.0f} ns | {t_io / per:.1f}× |")


if __name__ == "__main__":
    main()
