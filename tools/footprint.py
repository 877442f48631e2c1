#!/usr/bin/env python3
"""`make footprint`: what an installed InLoop costs a cluster job, measured on the staged prefix.

Prints
  - the size of the installed prefix (files as installed: `make install`), and of its parts;
  - the peak resident memory (VmHWM) of a Fortran process (bench/footprint.f90, built against the
    prefix through pkg-config inloop-fortran) that loads column_mlp.onnx and runs 1 and 256 columns,
    next to that of the same program that never loads InLoop's model (the process baseline);
  - for each ../shared/models/*.onnx, the time from the inloop_model_load call to the end of the first
    forward (batch 1), median and fastest of 7 fresh processes (bench/footprint_load.c).
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, env=None):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {cmd}\n{p.stdout}")
    return p.stdout


def size_of(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", required=True)
    ap.add_argument("--models", default=os.path.join(os.path.dirname(ROOT), "shared", "models"))
    ap.add_argument("--fc", default="gfortran")
    a = ap.parse_args()
    stage = os.path.abspath(a.stage)
    mb = 1024 * 1024
    print(f"installed prefix ({os.path.relpath(stage, ROOT)}): {size_of(stage) / mb:.1f} MiB")
    for part in ("lib", "bin", "include", "share"):
        print(f"  {part + '/':9s}{size_of(os.path.join(stage, part)) / mb:8.1f} MiB")
    lib = glob.glob(os.path.join(stage, "lib", "libInLoop.so.*.*.*"))
    for f in lib + [os.path.join(stage, "bin", "inloop")]:
        print(f"  {os.path.relpath(f, stage):28s}{os.path.getsize(f) / mb:6.1f} MiB")
    dbg = stage + ".debug"
    if os.path.isdir(dbg):
        print(f"  (debug info, make install-debug: {size_of(dbg) / mb:.1f} MiB more)")

    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(stage, "lib", "pkgconfig"), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    env.pop("LD_LIBRARY_PATH", None)
    work = tempfile.mkdtemp(prefix="inloop-footprint-")
    sh(f"{a.fc} -O2 {ROOT}/bench/footprint.f90 $(pkg-config --cflags --libs inloop-fortran) -o {work}/footprint", env)
    sh(f"gcc -O2 -std=c99 -Wall -Wextra -Werror {ROOT}/bench/footprint_load.c $(pkg-config --cflags --libs inloop) "
       f"-o {work}/footprint_load", env)
    mlp = os.path.join(a.models, "column_mlp.onnx")
    if os.path.exists(mlp):
        print(f"\npeak resident memory (VmHWM) of a Fortran process ({a.fc}) with column_mlp.onnx:")
        for ncol in (1, 256):
            out = sh([f"{work}/footprint", mlp, str(ncol)], env)
            lines = dict(l.rsplit(":", 1) for l in out.splitlines() if ":" in l)
            before = int(lines["VmHWM_kB before load"])
            after = int(lines[f"VmHWM_kB after forward of {ncol} columns"])
            print(f"  {ncol:4d} columns: {after / 1024:6.1f} MiB (before the load: {before / 1024:.1f} MiB)")
    else:
        print(f"\n{mlp} missing: no memory measurement")
    models = sorted(glob.glob(os.path.join(a.models, "*.onnx")))
    if models:
        print("\ninloop_model_load call to end of first forward (batch 1), 7 fresh processes: median (fastest)")
        print(f"  {'model':22s} {'load ms':>9s} {'forward ms':>11s} {'total ms':>18s} {'VmHWM MiB':>10s}")
    for m in models:
        rows = [[float(v) for v in sh([f"{work}/footprint_load", m], env).split()] for _ in range(7)]
        med = [statistics.median(r[k] for r in rows) for k in range(4)]
        best = min(r[2] for r in rows)
        print(f"  {os.path.basename(m):22s} {med[0]:9.2f} {med[1]:11.2f} {med[2]:9.2f} ({best:6.2f}) {med[3] / 1024:10.1f}")
    sh(["rm", "-rf", work])


if __name__ == "__main__":
    main()
