#!/usr/bin/env python3
"""`make bench`, the issue-14 table: onnxruntime's time ÷ InLoop's time for the five benchmark models of
../shared/models at batches 1, 16, 256, 4096 (cnn2d: 1, 16, 128), with 1 and with 2 threads, both
called from Python in the same process (InLoop through ctypes on libInLoop.so with
inloop_model_load + inloop_model_forward_f32, ORT through InferenceSession.run), measured in alternating
rounds so that both see the same machine. Above 1: InLoop is faster. Also prints the CPU, the OpenBLAS
kernel family and InLoop's kernel level, and checks that both give the same outputs.

Each thread count runs in its own worker process (inloop_set_num_threads(T), ORT intra_op_num_threads=T).
Usage: python3 bench/bench_ort_table.py [--threads 1 2] [--models ...] [--budget SECONDS]
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared", "models"))
LIB = os.environ.get("INLOOP_LIB", os.path.join(ROOT, ".build", "release", "libInLoop.so"))
MODELS = {"l96": [1, 16, 256, 4096], "column_mlp": [1, 16, 256, 4096], "column_mlp_small": [1, 16, 256, 4096],
          "column_conv1d": [1, 16, 256, 4096], "cnn2d": [1, 16, 128]}


def cpu_line():
    name, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} logical CPUs, ISA {' '.join(isa) or '?'}"


def timeit(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def median_per_call(f, budget):
    f()
    one = max(1e-7, timeit(f, 1))
    n = max(1, int(budget / 7 / one))
    return sorted(timeit(f, n) for _ in range(7))[3]


def worker(threads, models, budget):
    import numpy as np
    import onnxruntime as ort
    c = ctypes.CDLL(LIB)
    c.inloop_version.restype = ctypes.c_char_p
    c.inloop_last_error.restype = ctypes.c_char_p
    if c.inloop_set_num_threads(ctypes.c_int32(threads)) != 0:
        sys.exit(f"inloop_set_num_threads({threads}): {c.inloop_last_error().decode()}")
    fwd = c.inloop_model_forward_f32
    fwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    info = {"inloop": c.inloop_version().decode(), "ort": ort.__version__, "rows": []}
    if hasattr(c, "ilk_cpu_level"):  # the kernel level InLoop dispatched to (an internal symbol of the library)
        c.ilk_cpu_level_name.restype = ctypes.c_char_p
        info["kernels"] = (f"{c.ilk_cpu_level_name(c.ilk_cpu_level()).decode()} (this CPU supports "
                           f"{c.ilk_cpu_level_name(c.ilk_cpu_supported_level()).decode()}; INLOOP_CPU lowers it)")
    try:  # the OpenBLAS libInLoop.so loaded (the process's first libopenblas)
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_get_config.restype = ctypes.c_char_p
        info["openblas"] = f"{ob.openblas_get_config().decode()}; kernels {ob.openblas_get_corename().decode()}"
    except (OSError, AttributeError):
        info["openblas"] = "?"
    for name in models:
        path = os.path.join(SHARED, name + ".onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape][1:]
        h = ctypes.c_void_p()
        if c.inloop_model_load(path.encode(), ctypes.byref(h)) != 0:
            sys.exit(f"inloop_model_load {path}: {c.inloop_last_error().decode()}")
        nout = ctypes.c_int64()
        c.inloop_model_output_size(h, ctypes.byref(nout))
        for b in MODELS[name]:
            x = np.random.default_rng(b).uniform(-1, 1, (b, *shape)).astype(np.float32)
            y = np.empty((b, nout.value), np.float32)
            feed = {iname: x}
            xp, yp, hv = x.ctypes.data, y.ctypes.data, h.value

            def run_inloop():
                if fwd(hv, xp, b, yp) != 0:
                    raise RuntimeError(c.inloop_last_error().decode())

            def run_ort():
                return sess.run(None, feed)
            ref = run_ort()[0].reshape(b, -1)
            run_inloop()
            err = float(np.max(np.abs(y - ref)) / max(1e-30, float(np.max(np.abs(ref)))))
            t_ort, t_inl = [], []
            for _ in range(3):  # alternating rounds: both see the same machine; the lowest median is kept
                t_ort.append(median_per_call(run_ort, budget))
                t_inl.append(median_per_call(run_inloop, budget))
            info["rows"].append({"model": name, "batch": b, "ort": min(t_ort), "inloop": min(t_inl), "err": err})
        c.inloop_model_free(h)
    print("JSON " + json.dumps(info))


def fmt(t):
    return f"{t * 1e6:.1f} µs" if t < 1e-3 else f"{t * 1e3:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--budget", type=float, default=0.35, help="seconds of timed calls per peer, round and row")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.models, a.budget)
        return
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        print("\nORT table skipped: numpy and onnxruntime are not importable (pip install numpy onnxruntime)")
        return
    missing = [m for m in a.models if not os.path.exists(os.path.join(SHARED, m + ".onnx"))]
    if missing or not os.path.exists(LIB):
        print(f"\nORT table skipped: {'missing ' + ', '.join(missing) + ' in ' + SHARED if missing else LIB + ' not built'}")
        return
    runs = {}
    # As bench/run_bench.py: OpenBLAS 0.3.21 takes AVX-512 CPUs for Haswell; give it its AVX-512 kernels
    # there (INLOOP_BENCH_CORETYPE overrides, e.g. to compare with Haswell).
    base = dict(os.environ)
    if "avx512f" in cpu_line() or os.environ.get("INLOOP_BENCH_CORETYPE"):
        base["OPENBLAS_CORETYPE"] = os.environ.get("INLOOP_BENCH_CORETYPE", "SkylakeX")
    for t in a.threads:
        env = dict(base, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(t), "--budget", str(a.budget),
                            "--models", *a.models], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = [l for l in p.stdout.splitlines() if l.startswith("JSON ")]
        if p.returncode != 0 or not line:
            sys.exit(f"bench_ort_table: worker with {t} threads failed:\n{p.stdout[-2000:]}")
        runs[t] = json.loads(line[0][5:])
    first = runs[a.threads[0]]
    print(f"\n== ORT ÷ InLoop (onnxruntime {first['ort']}, InLoop {first['inloop']}; both from Python, same process, "
          f"alternating rounds; above 1: InLoop is faster) ==")
    print(f"CPU: {cpu_line()}")
    print(f"OpenBLAS: {first['openblas']}; OPENBLAS_CORETYPE={base.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"InLoop kernels: {first.get('kernels', 'baseline x86-64 (no dispatch in this build)')}")
    worst = max(r["err"] for run in runs.values() for r in run["rows"])
    print(f"InLoop vs ORT outputs: worst max|Δ|/max|y| {worst:.1e} over all rows")
    for t, run in runs.items():
        print(f"\n## {t} thread{'s' if t > 1 else ''}: ORT time ÷ InLoop time\n")
        print("| model | " + " | ".join(f"batch {b}" for b in [1, 16, 256, 4096]) + " |")
        print("|---|---|---|---|---|")
        for m in a.models:
            cells = []
            for b in [1, 16, 256, 4096]:
                r = [x for x in run["rows"] if x["model"] == m and (x["batch"] == b or (b == 256 and m == "cnn2d" and x["batch"] == 128))]
                cells.append(f"{r[0]['ort'] / r[0]['inloop']:.2f}" + (" (128)" if r and r[0]["batch"] == 128 else "") if r else "–")
            print(f"| {m} | " + " | ".join(cells) + " |")
    print("\n## times per call (median, lowest of 3 alternating rounds)\n")
    hdr = " | ".join(f"InLoop {t}t | ORT {t}t" for t in runs)
    print(f"| model | batch | {hdr} |" + (" InLoop 2t ÷ 1t speed-up | ORT 2t ÷ 1t speed-up |" if 1 in runs and 2 in runs else ""))
    print("|---|---|" + "---|---|" * len(runs) + ("---|---|" if 1 in runs and 2 in runs else ""))
    for i, r in enumerate(first["rows"]):
        cells = " | ".join(f"{fmt(run['rows'][i]['inloop'])} | {fmt(run['rows'][i]['ort'])}" for run in runs.values())
        extra = ""
        if 1 in runs and 2 in runs:
            r1, r2 = runs[1]["rows"][i], runs[2]["rows"][i]
            extra = f" {r1['inloop'] / r2['inloop']:.2f}× | {r1['ort'] / r2['ort']:.2f}× |"
        print(f"| {r['model']} | {r['batch']} | {cells} |{extra}")


if __name__ == "__main__":
    main()
