#!/usr/bin/env python3
"""Writes Tests/fixtures/golden/: the outputs of today's engine for every v1 native fixture, float32,
bitwise, through the public CLI (`inloop run MODEL --input x.npy --output y.npy`), and the checkpoint
fixtures (through Tests/c/test_golden.c --write, i.e. the C API). Guard rails for the engine rewrite
(docs/ENGINE.md §3.5, docs/ENGINE-BASELINE.md): the goldens must never change unless a change of the
numerics is intended and said so in the commit.

    python3 tools/make_golden.py                 # rewrite the goldens (OPENBLAS_CORETYPE=Haswell forced)
    python3 tools/make_golden.py --out DIR --coretype SkylakeX --no-checkpoints   # for comparisons

For each fixture `<name>` listed in Tests/fixtures/list.txt, with x the float32 rows of `<name>.io.bin`:
  <name>.b1.f32   the batch-1 output of each sample in turn (`inloop run` once per sample): the
                  batch-1 dense path (SIMD dot products, no BLAS when out*in <= 4096, true for every
                  fixture); also what reproducible mode gives at any batch size
  <name>.bN.f32   the output of one `inloop run` on all samples (batch N > 1: dense layers on the packed
                  FMA kernel (ilk_packed_gemm, the same bits on every AVX2+FMA CPU), the rest on sgemm)
raw little-endian float32, samples one after the other. manifest.txt lists them with their class:
  swift   batch 1, only arithmetic written in Swift or C (dense, identity/relu/leaky_relu, Cephes tanh,
          Cephes sigmoid and silu (since 2026-12-05), normalize): the same bits on every CPU and with
          every libm and OpenBLAS
  libm    batch 1 with glibc libm activations (gelu, softplus, elu): the same bits for
          one glibc (recorded in the manifest) on x86-64 with FMA
  blas    batch N: sgemm bits depend on OpenBLAS's kernel, so the goldens are written, and compared,
          with OPENBLAS_CORETYPE=Haswell forced (every AVX2+FMA x86-64 CPU can run that kernel), for
          the OpenBLAS and glibc recorded in the manifest
Then `build/test_golden --write` (built by `make c-programs`, run here) writes, through the C API, the
checkpoint fixtures Tests/fixtures/checkpoint_v1_{f32,f64}.safetensors with their continuation goldens
(golden/checkpoint_v1_*.after5.safetensors, .losses.txt) and the seeded-initialisation goldens
(golden/init_*.b1.f32); Tests/c/test_golden.c says what each holds.
When the checkpoint fixtures change on purpose, rewrite the legacy checkpoint_v1_*.pre_ranges files
from them with tools/strip_input_statistics.py (the same training state without input statistics).
Needs the release build (`swift build -c release`) and numpy.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "fixtures")
SCRATCH = os.environ.get("INLOOP_SCRATCH", ".build")
RELEASE = os.path.join(ROOT, SCRATCH, "release")
SWIFT_ACTIVATIONS = {"identity", "none", "linear", "relu", "leaky_relu", "tanh", "sigmoid", "silu"}


def read_io(name):
    with open(os.path.join(FIXTURES, name + ".io.bin"), "rb") as f:
        data = f.read()
    n_in, n_out, batch = struct.unpack("<3q", data[:24])
    x = np.frombuffer(data, "<f8", batch * n_in, 24).reshape(batch, n_in)
    x32 = x.astype(np.float32)
    if not np.array_equal(x32.astype(np.float64), x):
        sys.exit(f"{name}: x is not exactly float32")
    return x32, n_out


def activations(name):
    """The activation names of a v1 file (recursively through residual bodies)."""
    with open(os.path.join(FIXTURES, name + ".safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    meta = json.loads(header["__metadata__"]["inloop"])
    found = set()

    def walk(layers):
        for layer in layers:
            if layer.get("activation"):
                found.add(layer["activation"])
            walk(layer.get("layers", []))
    walk(meta["layers"])
    return found


def inloop_run(model, x, env, tmp):
    xi, yo = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(xi, np.ascontiguousarray(x, dtype=np.float32))
    subprocess.run([os.path.join(RELEASE, "inloop"), "run", model, "--input", xi, "--output", yo,
                    "--threads", "1"], env=env, check=True)
    y = np.load(yo)
    if y.dtype != np.float32:
        sys.exit(f"{model}: output dtype {y.dtype}, expected float32")
    return y


def versions(env):
    """OpenBLAS config, core name and glibc version, as the test program reports them."""
    out = subprocess.run([os.path.join(ROOT, "build", "test_golden"), "--versions"], env=env, check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


def build_program():
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    subprocess.run(["make", "-s", "-C", ROOT, "c-programs"], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "golden"))
    ap.add_argument("--coretype", default="Haswell", help="OPENBLAS_CORETYPE for the run ('' = detected)")
    ap.add_argument("--no-checkpoints", action="store_true", help="inference goldens only")
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("OPENBLAS_CORETYPE", None)
    if args.coretype:
        env["OPENBLAS_CORETYPE"] = args.coretype
    os.makedirs(args.out, exist_ok=True)
    build_program()
    ver = versions(env)
    names = [l.strip() for l in open(os.path.join(FIXTURES, "list.txt")) if l.strip()]
    lines = [f"# written by tools/make_golden.py; OPENBLAS_CORETYPE={args.coretype or '(detected)'}",
             f"openblas {ver['openblas']}", f"corename {ver['corename']}", f"glibc {ver['glibc']}",
             "# name file batch n_out class"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = os.path.join(FIXTURES, name + ".safetensors")
            x, n_out = read_io(name)
            batch = x.shape[0]
            if batch < 2:
                sys.exit(f"{name}: batch {batch}, need > 1 for the sgemm path")
            one = np.concatenate([inloop_run(model, x[s:s + 1], env, tmp).reshape(1, -1) for s in range(batch)])
            many = inloop_run(model, x, env, tmp).reshape(batch, -1)
            if one.shape[1] != n_out or many.shape[1] != n_out:
                sys.exit(f"{name}: output size {one.shape[1]}/{many.shape[1]}, expected {n_out}")
            klass = "swift" if activations(name) <= SWIFT_ACTIVATIONS else "libm"
            for suffix, y, k in (("b1", one, klass), ("bN", many, "blas")):
                fname = f"{name}.{suffix}.f32"
                y.astype("<f4").tofile(os.path.join(args.out, fname))
                lines.append(f"{name} {fname} {batch} {n_out} {k}")
    with open(os.path.join(args.out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(names)} fixtures -> {args.out}")
    if not args.no_checkpoints:
        subprocess.run([os.path.join(ROOT, "build", "test_golden"), "--write", FIXTURES], env=env, check=True)


if __name__ == "__main__":
    main()
