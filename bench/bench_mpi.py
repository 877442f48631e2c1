#!/usr/bin/env python3
"""Data-parallel training throughput (part of `make bench`): column_mlp, Adam, 256 columns per rank,
1 OpenBLAS thread per rank, on 1 and 2 ranks (weak scaling); target ≥ 1.7× samples/s on 2 ranks."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
with open("/proc/cpuinfo") as f:
    if " avx512f" in f.read():
        env["OPENBLAS_CORETYPE"] = os.environ.get("INLOOP_BENCH_CORETYPE", "SkylakeX")
rates = {}
for n in (1, 2):
    p = subprocess.run(["mpirun", "-np", str(n), os.path.join(ROOT, "build", "bench_mpi_training"),
                        os.path.join(ROOT, "build", "models")], env=env, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(p.stdout)
    m = re.search(r"RESULT mpi_training_\d+_samples_per_s\s+(\S+)", p.stdout)
    rates[n] = float(m.group(1))
print("\n## Data-parallel training, column_mlp, Adam, 256 columns per rank, 1 thread per rank\n")
print("| ranks | samples/s | speed-up |")
print("|---|---|---|")
for n in (1, 2):
    print(f"| {n} | {rates[n]:.0f} | {rates[n] / rates[1]:.2f}× |")
