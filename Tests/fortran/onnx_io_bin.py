#!/usr/bin/env python3
"""Reference pairs of the shared ONNX models, in the io.bin layout the Fortran tests read (NumPy only).

For each model <m> reads ``SRC/<m>.io.safetensors`` (tensors ``x`` float32 [batch, ...], ``y_ref_f64``
float64 [batch, ...]) and writes ``OUT/<m>.onnx.io.bin`` in the layout of tools/inloopfmt.py:
``int64 n_in, n_out, batch``, then ``x`` as float64 [batch][n_in], then ``y_ref_f64`` as float64
[batch][n_out], where each sample is flattened row-major (ONNX order). That is the memory of the
Fortran arrays the test passes: x(W, H, C, batch) for an ONNX input (batch, C, H, W). x is float32
converted exactly to float64. The per-sample shapes are not stored: the test takes them from the
model (and checks them against its own table).

    python3 Tests/fortran/onnx_io_bin.py --src ../shared/models --out build/models [MODEL ...]

Without --src on disk, prints a note and exits 0 (the Fortran test then SKIPs those models).
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import inloopfmt as fmt  # noqa: E402

MODELS = ("l96", "column_mlp", "column_mlp_small", "column_conv1d", "cnn2d")


def convert(src, out, name):
    tensors, _ = fmt.read_safetensors(os.path.join(src, name + ".io.safetensors"))
    x, y = tensors["x"], tensors["y_ref_f64"]
    if x.ndim < 2 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x {x.shape} and y_ref_f64 {y.shape} are not [batch, ...] with one batch")
    batch = x.shape[0]
    path = os.path.join(out, name + ".onnx.io.bin")
    fmt.write_io_bin(path, x.astype(np.float64).reshape(batch, -1), y.astype(np.float64).reshape(batch, -1))
    xr, yr = fmt.read_io_bin(path)   # round trip
    assert np.array_equal(xr, x.reshape(batch, -1)) and np.array_equal(yr, y.reshape(batch, -1))
    print(f"{path}: x {list(x.shape)} -> y {list(y.shape)} (batch first, ONNX order)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(ROOT, "..", "shared", "models"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("models", nargs="*", default=list(MODELS))
    a = ap.parse_args(argv)
    if not os.path.isdir(a.src):
        print(f"no {a.src}: skipping the ONNX reference pairs")
        return 0
    os.makedirs(a.out, exist_ok=True)
    for name in a.models:
        convert(a.src, a.out, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
