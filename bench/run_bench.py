#!/usr/bin/env python3
"""`make bench`: InLoop forward vs bare BLAS on the same shapes, and the per-call cost of the
Fortran -> C -> Swift path, all timed in one run (compare ratios: these machines are shared).

Runs with one OpenBLAS thread and OPENBLAS_CORETYPE=SkylakeX unless set already (OpenBLAS
misdetects these CPUs as Haswell and leaves AVX-512 unused). Needs ../shared/models converted by
`make models` (the Makefile's bench target does it). NumPy (x @ W.T chain, its own OpenBLAS) is timed
as a peer when importable.
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


if __name__ == "__main__":
    main()
