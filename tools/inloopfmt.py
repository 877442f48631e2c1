#!/usr/bin/env python3
"""InLoop native model format helpers (numpy only).

Independent Python side of the InLoop test references:

* ``read_safetensors`` / ``write_safetensors`` -- a hand-written safetensors
  reader/writer (no ``safetensors`` package needed);
* ``write_model`` / ``read_model`` -- the native InLoop model file
  (docs/FORMAT.md): safetensors whose ``__metadata__["inloop"]`` holds the
  architecture JSON as a string;
* ``forward`` / ``NumpyModel`` -- an independent float64 NumPy evaluation of
  the FORMAT.md semantics (validates the architecture on the way);
* ``write_io_bin`` / ``read_io_bin`` -- reference input/output pairs in a raw
  little-endian binary easy to read from C and Fortran:
  ``int64 n_in, int64 n_out, int64 batch``, then ``x`` as
  ``float64[batch][n_in]`` (sample after sample), then ``y`` as
  ``float64[batch][n_out]``.

Command line::

    python3 tools/inloopfmt.py selftest
    python3 tools/inloopfmt.py info  MODEL.safetensors
    python3 tools/inloopfmt.py check MODEL.safetensors MODEL.io.bin [--tol 1e-6]
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

import numpy as np

__all__ = [
    "read_safetensors", "write_safetensors", "write_model", "read_model",
    "validate", "forward", "NumpyModel", "activation", "count_params",
    "write_io_bin", "read_io_bin", "max_rel_err",
]

# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAME_OF = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}

MAX_HEADER = 100 * 1000 * 1000


def _dtype_name(dt: np.dtype) -> str:
    dt = np.dtype(dt)
    try:
        return _NAME_OF[(dt.kind, dt.itemsize)]
    except KeyError:
        raise TypeError(f"dtype {dt} is not supported for safetensors") from None


def read_safetensors(path):
    """Read a safetensors file -> (dict name -> np.ndarray (native byte order, copy), metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{path}: bad header length {n} (file size {len(data)})")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    body = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: __metadata__ is not an object")
    tensors = {}
    ranges = []
    for name, info in header.items():
        dtn = info.get("dtype")
        if dtn not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r}: unsupported dtype {dtn!r}")
        dt = _DTYPES[dtn]
        shape = tuple(int(s) for s in info["shape"])
        if any(s < 0 for s in shape):
            raise ValueError(f"{path}: tensor {name!r}: negative dimension in {shape}")
        b, e = (int(v) for v in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= e <= len(body)) or e - b != count * dt.itemsize:
            raise ValueError(f"{path}: tensor {name!r}: bad data_offsets {[b, e]} "
                             f"for {dtn}{list(shape)} (data size {len(body)})")
        ranges.append((b, e, name))
        arr = np.frombuffer(body[b:e], dtype=dt, count=count).reshape(shape)
        tensors[name] = arr.astype(dt.newbyteorder("="), copy=True)
    ranges.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: tensors {n0!r} and {n1!r} overlap")
    return tensors, metadata


def safetensors_bytes(tensors, metadata=None) -> bytes:
    """Serialise deterministically: ``__metadata__`` first, then tensors in sorted-name
    order (header entries and data), compact JSON padded with spaces to a multiple of 8."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map str -> str")
        header["__metadata__"] = dict(metadata)
    blobs = []
    off = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("tensor name __metadata__ is reserved")
        arr = np.asarray(tensors[name])
        dtn = _dtype_name(arr.dtype)
        raw = np.ascontiguousarray(arr, dtype=_DTYPES[dtn]).tobytes(order="C")
        header[name] = {"dtype": dtn, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(blobs)


def _atomic_write(path, payload: bytes):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


def write_safetensors(path, tensors, metadata=None):
    _atomic_write(path, safetensors_bytes(tensors, metadata))


# --------------------------------------------------------------------------
# architecture validation and NumPy forward (float64)
# --------------------------------------------------------------------------

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

try:  # scipy is optional
    from scipy.special import erf as _erf  # type: ignore
except Exception:  # pragma: no cover - fallback path
    _erf_vec = np.vectorize(math.erf, otypes=[np.float64])

    def _erf(x):
        return _erf_vec(np.asarray(x, dtype=np.float64))


def _sigmoid(x):
    # stable for any magnitude: exp never sees a positive argument
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_ACT_ALIASES = {"none": "identity", "linear": "identity", "identity": "identity"}
ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu",
               "gelu_tanh", "silu", "softplus", "elu")


def _act_spec(layer, where):
    """Normalise the activation of a layer dict -> (kind, param)."""
    name = layer.get("activation", "identity")
    if name is None:
        name = "identity"
    if not isinstance(name, str):
        raise ValueError(f"{where}: activation must be a string")
    name = _ACT_ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"{where}: unknown activation {name!r}")
    if name == "leaky_relu":
        return name, float(layer.get("alpha", 0.01))
    if name == "elu":
        return name, float(layer.get("alpha", 1.0))
    if name == "gelu":
        approx = layer.get("approximate", "none")
        if approx in (None, "none"):
            return "gelu", None
        if approx == "tanh":
            return "gelu_tanh", None
        raise ValueError(f"{where}: unknown gelu approximate {approx!r}")
    return name, None


def activation(kind, x, param=None):
    """Apply an activation (canonical kind, as returned by the spec parser) in float64."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "identity":
        return x.copy()
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, param * x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    if kind == "silu":
        return x * _sigmoid(x)
    if kind == "softplus":
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    if kind == "elu":
        return np.where(x > 0, x, param * np.expm1(np.minimum(x, 0.0)))
    raise ValueError(f"unknown activation {kind!r}")


def _tensor(tensors, name, where, key, shape):
    if not isinstance(name, str):
        raise ValueError(f"{where}: '{key}' must name a tensor")
    if name not in tensors:
        raise ValueError(f"{where}: tensor {name!r} ('{key}') not found")
    t = tensors[name]
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{where}: tensor {name!r} ('{key}') has shape {list(t.shape)}, "
                         f"expected {list(shape)}")
    if t.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: tensor {name!r} has dtype {t.dtype}, expected F32 or F64")
    return t


def _compile(layers, tensors, size, prefix, used):
    """Validate a layer list; return (ops, out_size). ops are closures on float64 arrays."""
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{prefix or 'architecture'}: 'layers' must be a non-empty list")
    ops = []
    for i, layer in enumerate(layers):
        where = f"{prefix}layers[{i}]"
        if not isinstance(layer, dict):
            raise ValueError(f"{where}: not an object")
        typ = layer.get("type")
        if typ == "dense":
            n_in, n_out = layer.get("in"), layer.get("out")
            if not (isinstance(n_in, int) and isinstance(n_out, int)) or n_in <= 0 or n_out <= 0:
                raise ValueError(f"{where}: dense needs positive integer 'in' and 'out'")
            if n_in != size:
                raise ValueError(f"{where}: dense in={n_in} but the running size is {size}")
            w = _tensor(tensors, layer.get("weight"), where, "weight", (n_out, n_in))
            used.add(layer["weight"])
            b = None
            if layer.get("bias") is not None:
                b = _tensor(tensors, layer["bias"], where, "bias", (n_out,))
                used.add(layer["bias"])
            act = _act_spec(layer, where)
            ops.append(("dense", w, b, act))
            size = n_out
        elif typ == "activation":
            if "activation" not in layer:
                raise ValueError(f"{where}: activation layer needs 'activation'")
            ops.append(("act", _act_spec(layer, where)))
        elif typ in ("normalize", "denormalize"):
            m = _tensor(tensors, layer.get("mean"), where, "mean", (size,))
            s = _tensor(tensors, layer.get("std"), where, "std", (size,))
            used.update((layer["mean"], layer["std"]))
            if not np.all(s.astype(np.float32) > 0):
                raise ValueError(f"{where}: std tensor {layer['std']!r} must be > 0")
            ops.append((typ, m, s))
        elif typ == "residual":
            sub, out = _compile(layer.get("layers"), tensors, size, where + ".", used)
            if out != size:
                raise ValueError(f"{where}: residual body maps {size} -> {out}, must keep the size")
            ops.append(("residual", sub))
        else:
            raise ValueError(f"{where}: unknown layer type {typ!r}")
    return ops, size


def validate(arch, tensors):
    """Check an architecture dict against tensors (FORMAT.md). Returns (ops, used tensor names)."""
    if not isinstance(arch, dict):
        raise ValueError("architecture is not a JSON object")
    if arch.get("format") != "inloop":
        raise ValueError(f"architecture 'format' must be \"inloop\", got {arch.get('format')!r}")
    if arch.get("version") != 1:
        raise ValueError(f"architecture 'version' {arch.get('version')!r} not supported "
                         "(this reader reads version 1)")
    try:
        n_in = arch["input"]["size"]
        n_out = arch["output"]["size"]
    except (KeyError, TypeError):
        raise ValueError("architecture needs input.size and output.size") from None
    if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in > 0 and n_out > 0):
        raise ValueError("input.size and output.size must be positive integers")
    used = set()
    ops, size = _compile(arch.get("layers"), tensors, n_in, "", used)
    if size != n_out:
        raise ValueError(f"layers produce {size} values per sample but output.size is {n_out}")
    return ops, used


def _run(ops, x, cast):
    for op in ops:
        kind = op[0]
        if kind == "dense":
            _, w, b, (ak, ap) = op
            x = x @ cast(w).T
            if b is not None:
                x = x + cast(b)
            x = activation(ak, x, ap)
        elif kind == "act":
            ak, ap = op[1]
            x = activation(ak, x, ap)
        elif kind == "normalize":
            x = (x - cast(op[1])) / cast(op[2])
        elif kind == "denormalize":
            x = x * cast(op[2]) + cast(op[1])
        elif kind == "residual":
            x = x + _run(op[1], x, cast)
    return x


def forward(arch, tensors, x, dtype=np.float64, f32_params=True):
    """Evaluate the model on x[batch, n_in] in ``dtype`` (float64 by default).

    With ``f32_params`` (default) every tensor is first rounded to float32, as the
    engine does on load (F64 tensors are converted to float32)."""
    ops, _ = validate(arch, tensors)
    x = np.asarray(x)
    n_in = arch["input"]["size"]
    if x.ndim == 1:
        x = x.reshape(-1, n_in)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"input has shape {x.shape}, expected [batch, {n_in}]")

    def cast(t):
        t = np.asarray(t)
        if f32_params:
            t = t.astype(np.float32)
        return t.astype(dtype)

    return _run(ops, x.astype(dtype), cast)


def count_params(arch, tensors):
    _, used = validate(arch, tensors)
    return int(sum(tensors[n].size for n in used))


# --------------------------------------------------------------------------
# native model files
# --------------------------------------------------------------------------

def arch_json(arch) -> str:
    return json.dumps(arch, separators=(",", ":"))


def write_model(path, arch, tensors):
    """Write a native InLoop model (tensors kept as F32/F64 as given; other float/int
    dtypes are refused). The architecture is validated first."""
    for name, t in tensors.items():
        if np.asarray(t).dtype not in (np.float32, np.float64):
            raise TypeError(f"tensor {name!r}: dtype {np.asarray(t).dtype}; the native "
                            "format stores F32 or F64 only")
    validate(arch, tensors)
    write_safetensors(path, tensors, {"inloop": arch_json(arch)})


def read_model(path):
    """-> (arch dict, tensors dict). Validates the file like the engine would."""
    tensors, meta = read_safetensors(path)
    for k, v in meta.items():
        if not isinstance(v, str):
            raise ValueError(f"{path}: __metadata__[{k!r}] is not a string")
    if "inloop" not in meta:
        raise ValueError(f"{path}: __metadata__ has no 'inloop' key")
    for name, t in tensors.items():
        if t.dtype not in (np.float32, np.float64):
            raise ValueError(f"{path}: tensor {name!r} has dtype {t.dtype}; only F32/F64 allowed")
    arch = json.loads(meta["inloop"])
    validate(arch, tensors)
    return arch, tensors


class NumpyModel:
    """A native model file evaluated in NumPy: ``NumpyModel(path)(x) -> y``."""

    def __init__(self, path):
        self.path = path
        self.arch, self.tensors = read_model(path)
        self.n_in = self.arch["input"]["size"]
        self.n_out = self.arch["output"]["size"]
        self.params = count_params(self.arch, self.tensors)

    def forward(self, x, dtype=np.float64):
        return forward(self.arch, self.tensors, x, dtype=dtype)

    __call__ = forward


# --------------------------------------------------------------------------
# reference in/out pairs
# --------------------------------------------------------------------------

def io_bin_bytes(x, y) -> bytes:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x {x.shape} and y {y.shape} must be [batch, n] with the same batch")
    batch, n_in = x.shape
    n_out = y.shape[1]
    return (struct.pack("<qqq", n_in, n_out, batch)
            + np.ascontiguousarray(x, dtype="<f8").tobytes()
            + np.ascontiguousarray(y, dtype="<f8").tobytes())


def write_io_bin(path, x, y):
    _atomic_write(path, io_bin_bytes(x, y))


def read_io_bin(path):
    """-> (x float64[batch, n_in], y float64[batch, n_out])."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: shorter than its 24-byte header")
    n_in, n_out, batch = struct.unpack("<qqq", data[:24])
    if min(n_in, n_out, batch) < 0 or len(data) != 24 + 8 * batch * (n_in + n_out):
        raise ValueError(f"{path}: header ({n_in}, {n_out}, {batch}) does not match size {len(data)}")
    v = np.frombuffer(data, dtype="<f8", offset=24).astype(np.float64)
    x = v[:batch * n_in].reshape(batch, n_in)
    y = v[batch * n_in:].reshape(batch, n_out)
    return x, y


def max_rel_err(y, ref):
    """max |y - ref| / max |ref| (or absolute if ref is all zeros)."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(y - ref))) if ref.size else 0.0
    return err / scale if scale > 0 else err


# --------------------------------------------------------------------------
# self-test and CLI
# --------------------------------------------------------------------------

def _selftest():
    import tempfile
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        # safetensors round trip, all supported dtypes, odd sizes, empty tensor
        ts = {
            "b": rng.standard_normal((3, 5)).astype(np.float32),
            "a": rng.standard_normal(7),
            "i32": np.arange(5, dtype=np.int32),
            "i64": np.arange(-3, 4, dtype=np.int64).reshape(7, 1),
            "empty": np.zeros((0, 4), np.float32),
            "scalar": np.array(2.5, np.float64),
        }
        p = os.path.join(d, "t.safetensors")
        write_safetensors(p, ts, {"k": "v", "inloop": "{}"})
        raw1 = open(p, "rb").read()
        (n,) = struct.unpack("<Q", raw1[:8])
        assert n % 8 == 0
        back, meta = read_safetensors(p)
        assert meta == {"k": "v", "inloop": "{}"}
        assert set(back) == set(ts)
        for k in ts:
            assert back[k].dtype == ts[k].dtype and back[k].shape == ts[k].shape, k
            assert np.array_equal(back[k], ts[k]), k
        write_safetensors(p, back, meta)
        assert open(p, "rb").read() == raw1, "safetensors bytes not reproducible"
        # sorted-name data layout
        hdr = json.loads(raw1[8:8 + n])
        offs = [hdr[k]["data_offsets"] for k in sorted(ts)]
        assert offs[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offs, offs[1:]))

        # io.bin round trip
        x = rng.standard_normal((4, 3))
        y = rng.standard_normal((4, 2))
        q = os.path.join(d, "t.io.bin")
        write_io_bin(q, x, y)
        x2, y2 = read_io_bin(q)
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
        assert os.path.getsize(q) == 24 + 8 * 4 * 5
        assert struct.unpack("<qqq", open(q, "rb").read(24)) == (3, 2, 4)

        # activations against scalar math
        xs = np.array([-800.0, -30.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 30.0, 800.0])
        ref = {
            "relu": lambda v: max(v, 0.0),
            "tanh": math.tanh,
            "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0,
            "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
            "gelu_tanh": lambda v: 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v ** 3))),
            "silu": lambda v: v / (1 + math.exp(-v)) if v > -700 else -0.0,
            "softplus": lambda v: math.log1p(math.exp(v)) if v < 700 else v,
        }
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            for k, f in ref.items():
                got = activation(k, xs)
                want = np.array([f(v) for v in xs])
                assert np.allclose(got, want, rtol=1e-14, atol=1e-300), (k, got, want)
            assert np.allclose(activation("leaky_relu", xs, 0.2), np.where(xs >= 0, xs, 0.2 * xs))
            assert np.allclose(activation("elu", xs, 0.7),
                               [v if v > 0 else 0.7 * math.expm1(v) for v in xs])
        assert activation("softplus", np.array([0.0]))[0] == math.log(2.0)

        # activation spec parsing
        assert _act_spec({}, "t") == ("identity", None)
        assert _act_spec({"activation": "none"}, "t") == ("identity", None)
        assert _act_spec({"activation": "linear"}, "t") == ("identity", None)
        assert _act_spec({"activation": "leaky_relu"}, "t") == ("leaky_relu", 0.01)
        assert _act_spec({"activation": "elu"}, "t") == ("elu", 1.0)
        assert _act_spec({"activation": "gelu"}, "t") == ("gelu", None)
        assert _act_spec({"activation": "gelu", "approximate": "tanh"}, "t") == ("gelu_tanh", None)

        # model round trip and forward vs. an explicit per-sample loop
        w1 = rng.standard_normal((4, 3)).astype(np.float32)
        b1 = rng.standard_normal(4).astype(np.float32)
        w2 = rng.standard_normal((4, 4))           # F64 tensor
        w3 = rng.standard_normal((2, 4)).astype(np.float32)
        mean = rng.standard_normal(3).astype(np.float32)
        std = rng.uniform(0.5, 2, 3).astype(np.float32)
        arch = {"format": "inloop", "version": 1, "name": "t",
                "input": {"name": "x", "size": 3}, "output": {"name": "y", "size": 2},
                "layers": [
                    {"type": "normalize", "mean": "m", "std": "s"},
                    {"type": "dense", "in": 3, "out": 4, "weight": "w1", "bias": "b1",
                     "activation": "elu", "alpha": 0.7},
                    {"type": "residual", "layers": [
                        {"type": "dense", "in": 4, "out": 4, "weight": "w2", "bias": None,
                         "activation": "tanh"},
                        {"type": "residual", "layers": [{"type": "activation", "activation": "silu"}]}]},
                    {"type": "dense", "in": 4, "out": 2, "weight": "w3"},
                    {"type": "denormalize", "mean": "m2", "std": "s2"}]}
        m2 = np.array([1.0, -2.0], np.float32)
        s2 = np.array([3.0, 0.5], np.float32)
        tens = {"w1": w1, "b1": b1, "w2": w2, "w3": w3, "m": mean, "s": std, "m2": m2, "s2": s2}
        mp = os.path.join(d, "m.safetensors")
        write_model(mp, arch, tens)
        model = NumpyModel(mp)
        assert model.arch == arch and model.params == 12 + 4 + 16 + 8 + 3 + 3 + 2 + 2
        assert model.tensors["w2"].dtype == np.float64
        xb = rng.standard_normal((5, 3))
        y = model(xb)
        f = np.float64
        w2r = w2.astype(np.float32).astype(f)
        for s in range(5):
            h = [(xb[s, j] - f(mean[j])) / f(std[j]) for j in range(3)]
            h = [sum(f(w1[o, j]) * h[j] for j in range(3)) + f(b1[o]) for o in range(4)]
            h = [v if v > 0 else 0.7 * math.expm1(v) for v in h]
            r = [math.tanh(sum(w2r[o, j] * h[j] for j in range(4))) for o in range(4)]
            r = [v + v / (1 + math.exp(-v)) for v in r]
            h = [h[o] + r[o] for o in range(4)]
            h = [sum(f(w3[o, j]) * h[j] for j in range(4)) for o in range(2)]
            h = [h[o] * f(s2[o]) + f(m2[o]) for o in range(2)]
            assert np.allclose(y[s], h, rtol=1e-12, atol=1e-12), (s, y[s], h)

        # validation errors name the layer
        bad = json.loads(json.dumps(arch))
        bad["layers"][2]["layers"][1]["layers"][0]["activation"] = "swish"
        try:
            validate(bad, tens)
            raise AssertionError("unknown activation accepted")
        except ValueError as e:
            assert "layers[2].layers[1].layers[0]" in str(e), e
        bad = json.loads(json.dumps(arch))
        bad["layers"][1]["out"] = 5
        try:
            validate(bad, tens)
            raise AssertionError("shape mismatch accepted")
        except ValueError as e:
            assert "layers[1]" in str(e), e
    print("inloopfmt selftest: OK")


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest")
    p = sub.add_parser("info")
    p.add_argument("model")
    p = sub.add_parser("check")
    p.add_argument("model")
    p.add_argument("io")
    p.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args(argv)
    if a.cmd == "selftest":
        _selftest()
        return 0
    m = NumpyModel(a.model)
    if a.cmd == "info":
        print(json.dumps(m.arch, indent=1))
        for k in sorted(m.tensors):
            t = m.tensors[k]
            print(f"  {k}: {_dtype_name(t.dtype)}{list(t.shape)}")
        print(f"{m.params} params")
        return 0
    x, y = read_io_bin(a.io)
    err = max_rel_err(m(x), y)
    ok = err <= a.tol
    print(f"{os.path.basename(a.model)}: rel err {err:.2e} ({'OK' if ok else 'FAIL'}, tol {a.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
