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


def run(n, mode=""):
    p = subprocess.run(["mpirun", "-np", str(n), os.path.join(ROOT, "build", "bench_mpi_training"),
                        os.path.join(ROOT, "build", "models")] + ([mode] if mode else []), env=env, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(p.stdout)
    m = re.search(r"RESULT mpi_training_\w*?\d+_samples_per_s\s+(\S+)", p.stdout)
    return float(m.group(1))


# The machine is shared and its speed drifts: the three runs are interleaved, round after round, and
# each keeps its best round, so that all three see the same quiet spells.
rounds = int(os.environ.get("INLOOP_BENCH_ROUNDS", "8"))
one = two = ceiling = 0.0
for _ in range(rounds):
    one = max(one, run(1))
    two = max(two, run(2))
    ceiling = max(ceiling, run(2, "independent"))

print("\n## Data-parallel training, column_mlp, Adam, 256 columns per rank, 1 thread per rank\n")
print("| run | samples/s | speed-up over 1 rank |")
print("|---|---|---|")
print(f"| 1 rank | {one:.0f} | 1.00× |")
print(f"| 2 ranks, data-parallel (gradients averaged every step) | {two:.0f} | {two / one:.2f}× |")
print(f"| 2 ranks training independently (no communication, each its whole update) | {ceiling:.0f} | {ceiling / one:.2f}× |")
print(f"\ntarget ≥ 1.70×: {'met' if two / one >= 1.7 else 'NOT met'} ({two / one:.2f}×). Two independent ranks show what this"
      f" machine gives two busy cores (shared caches, memory, noisy neighbours); data-parallel ranks each update only"
      f" their shard of the parameters, so they can come close to it or pass it: {100 * two / ceiling:.0f}% of it here.")
