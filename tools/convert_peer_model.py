#!/usr/bin/env python3
"""Convert the shared benchmark models (../shared/models) to the native InLoop format.

For each model name reads ``<name>.architecture.json``, ``<name>.weights.safetensors`` and
``<name>.io.safetensors`` (tensors x, y_ref, y_ref_f64) from --src and writes

* ``OUT/<name>.safetensors`` -- native InLoop model (docs/FORMAT.md), weights as given (F32);
* ``OUT/<name>.io.bin``      -- reference pair: x (float32 converted exactly to float64) and
  y = y_ref_f64 (see tools/inloopfmt.py for the layout).

The result is re-read and evaluated with the NumPy reference (tools/inloopfmt.py); the max
error relative to max |y_ref_f64| must be <= --tol (1e-6).

Models with layers that have no native equivalent (conv1d, conv2d, maxpool2d, flatten) are
refused with a message naming the layer; those are loaded through ONNX instead.

    python3 tools/convert_peer_model.py --src /work/shared/models --out build/models \\
        column_mlp column_mlp_small l96
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inloopfmt as fmt  # noqa: E402

DEFAULT_MODELS = ("column_mlp", "column_mlp_small", "l96")
NO_NATIVE = ("conv1d", "conv2d", "maxpool2d", "flatten")


class ConversionError(Exception):
    pass


def _activation_fields(src, where):
    out = {}
    act = src.get("activation", "none")
    if act is None:
        act = "none"
    act = {"none": "identity", "linear": "identity"}.get(act, act)
    out["activation"] = act
    if act in ("leaky_relu", "elu") and "alpha" in src:
        out["alpha"] = float(src["alpha"])
    if act == "gelu" and "approximate" in src:
        out["approximate"] = src["approximate"]
    return out


def convert_layers(layers, prefix=""):
    native = []
    for i, layer in enumerate(layers):
        where = f"{prefix}layers[{i}]"
        typ = layer.get("type")
        if typ in ("normalize", "denormalize"):
            native.append({"type": typ, "mean": layer["mean"], "std": layer["std"]})
        elif typ == "dense":
            d = {"type": "dense", "in": int(layer["in"]), "out": int(layer["out"]),
                 "weight": layer["weight"]}
            if layer.get("bias") is not None:
                d["bias"] = layer["bias"]
            d.update(_activation_fields(layer, where))
            native.append(d)
        elif typ == "activation":
            d = {"type": "activation"}
            d.update(_activation_fields(layer, where))
            native.append(d)
        elif typ == "residual":
            native.append({"type": "residual",
                           "layers": convert_layers(layer["layers"], where + ".")})
        elif typ in NO_NATIVE:
            raise ConversionError(
                f"{where} is a '{typ}' layer, which has no equivalent in the native InLoop "
                f"format (dense-only); load this model from its .onnx file instead")
        else:
            raise ConversionError(f"{where}: unknown layer type {typ!r}")
    return native


def _size(spec, what):
    shape = spec["shape"]
    if len(shape) != 2:
        raise ConversionError(f"{what} shape {shape} is not [batch, n]; not a dense model")
    return int(shape[1])


def convert(name, src, out, tol):
    arch_path = os.path.join(src, f"{name}.architecture.json")
    with open(arch_path) as f:
        peer = json.load(f)
    layers = convert_layers(peer["layers"])
    arch = {
        "format": "inloop",
        "version": 1,
        "name": peer.get("name", name),
        "input": {"name": peer["input"].get("name", "x"), "size": _size(peer["input"], "input")},
        "output": {"name": peer["output"].get("name", "y"), "size": _size(peer["output"], "output")},
        "layers": layers,
    }
    weights, _ = fmt.read_safetensors(os.path.join(src, f"{name}.weights.safetensors"))
    _, used = fmt.validate(arch, weights)
    missing_dtype = [k for k in used if weights[k].dtype != np.float32]
    if missing_dtype:
        raise ConversionError(f"tensors not F32: {sorted(missing_dtype)}")
    tensors = {k: weights[k] for k in sorted(used)}
    unused = sorted(set(weights) - used)
    if unused:
        print(f"{name}: note: {len(unused)} weight tensors not referenced, dropped: {unused}",
              file=sys.stderr)

    io, _ = fmt.read_safetensors(os.path.join(src, f"{name}.io.safetensors"))
    x = io["x"].astype(np.float64)                 # exact: float32 -> float64
    y = io["y_ref_f64"].astype(np.float64)
    n_in, n_out = arch["input"]["size"], arch["output"]["size"]
    if x.ndim != 2 or x.shape[1] != n_in or y.shape != (x.shape[0], n_out):
        raise ConversionError(f"io shapes x{list(x.shape)} y{list(y.shape)} do not match "
                              f"{n_in} -> {n_out}")

    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, f"{name}.safetensors")
    io_path = os.path.join(out, f"{name}.io.bin")
    fmt.write_model(model_path, arch, tensors)
    fmt.write_io_bin(io_path, x, y)

    # independent check of what was written
    model = fmt.NumpyModel(model_path)
    for k, t in tensors.items():
        if model.tensors[k].dtype != np.float32 or not np.array_equal(model.tensors[k], t):
            raise ConversionError(f"tensor {k!r} did not round-trip exactly")
    x2, y2 = fmt.read_io_bin(io_path)
    if not (np.array_equal(x2, x) and np.array_equal(y2, y)):
        raise ConversionError("io.bin did not round-trip exactly")
    err = fmt.max_rel_err(model(x2), y2)
    if not err <= tol:
        raise ConversionError(f"numpy check rel err {err:.1e} > {tol:g}")
    n_layers = len(arch["layers"])
    print(f"{name}: {n_layers} layers, {model.params} params, numpy check rel err {err:.1e} "
          f"-> {model_path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert shared benchmark models to native InLoop files.")
    ap.add_argument("--src", default="/work/shared/models", help="directory of the peer models")
    ap.add_argument("--out", default="build/models", help="output directory")
    ap.add_argument("--tol", type=float, default=1e-6, help="max relative error of the NumPy check")
    ap.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    a = ap.parse_args(argv)
    failed = []
    for name in a.models:
        try:
            convert(name, a.src, a.out, a.tol)
        except (ConversionError, ValueError, KeyError, OSError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"{name}: error: {msg}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"conversion failed for: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
