#!/usr/bin/env python3
"""ONNX conformance of libInLoop.so against onnxruntime (issue 3).

Builds a varied set of ONNX models with onnx.helper (every operator of issue 3, opsets 7-20, dynamic
batch dimension), runs each in onnxruntime (1 thread, graph optimisations off: the reference) and in
InLoop through ctypes (inloop_model_load, inloop_model_run_f32, shapes from the model), at batch 1 and
batch 7, and compares within 1e-5 relative to max|y|. Also: the models in ../shared/models against
their stored references, real torch.onnx.export outputs when PyTorch imports (skipped otherwise),
bad files and wrong run-time arguments (non-OK status and a non-empty inloop_last_error()), and the
`inloop` CLI when it is built.

    python3 Tests/onnx/conformance.py [-k SUBSTRING] [--lib PATH] [--models DIR] [--keep DIR] [--list]

Every case runs in a forked child, so a crash of the library is one FAIL, not the end of the run.
Generated models are kept in build/onnx-conformance/<case>.onnx to reproduce a failure.
Prints `PASS name` / `FAIL name: detail` / `SKIP name: why` lines and ends with `N passed, M failed`.
"""
import argparse
import ctypes as C
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LIB = os.path.join(ROOT, ".build", "release", "libInLoop.so")
DEFAULT_CLI = os.path.join(ROOT, ".build", "release", "inloop")
DEFAULT_SHARED = os.path.join(ROOT, "..", "shared", "models")
TOL = 1e-5
BATCHES = (1, 7)
INT64_MAX = 2 ** 63 - 1


# =====================================================================================================
# InLoop through ctypes
# =====================================================================================================
class InLoop:
    """The C API of libInLoop.so. Function names follow Include/inloop.h."""

    def __init__(self, path):
        self.path = path
        L = self.lib = C.CDLL(path)
        P64 = C.POINTER(C.c_int64)
        L.inloop_last_error.restype = C.c_char_p
        L.inloop_status_string.restype = C.c_char_p
        L.inloop_status_string.argtypes = [C.c_int32]
        self._sig("inloop_model_load", [C.c_char_p, C.POINTER(C.c_void_p)])
        self._sig("inloop_model_load_buffer", [C.c_void_p, C.c_int64, C.POINTER(C.c_void_p)])
        self._sig("inloop_model_free", [C.c_void_p])
        for f in ("num_inputs", "num_outputs", "input_size", "output_size"):
            self._sig("inloop_model_" + f, [C.c_void_p, P64])
        for f in ("input_name", "output_name"):
            self._sig("inloop_model_" + f, [C.c_void_p, C.c_int64, C.POINTER(C.c_char_p)])
        for f in ("input_rank", "output_rank"):
            self._sig("inloop_model_" + f, [C.c_void_p, C.c_int64, P64])
        for f in ("input_shape", "output_shape"):
            self._sig("inloop_model_" + f, [C.c_void_p, C.c_int64, P64, C.c_int64])
        for f in ("input_index", "output_index"):
            self._sig("inloop_model_" + f, [C.c_void_p, C.c_char_p, P64])
        PF = C.POINTER(C.c_float)
        self._sig("inloop_model_run_f32", [C.c_void_p, C.c_int64, C.c_int64, C.POINTER(PF), C.c_int64, C.POINTER(PF)])
        PD = C.POINTER(C.c_double)
        self._sig("inloop_model_run_f64", [C.c_void_p, C.c_int64, C.c_int64, C.POINTER(PD), C.c_int64, C.POINTER(PD)])
        self._sig("inloop_model_forward_f32", [C.c_void_p, PF, C.c_int64, PF])
        self._sig("inloop_model_forward_sized_f32", [C.c_void_p, PF, C.c_int64, C.c_int64, PF, C.c_int64])

    def _sig(self, name, argtypes):
        f = getattr(self.lib, name, None)
        if f is not None:
            f.argtypes = argtypes
            f.restype = C.c_int32

    def has(self, name):
        return getattr(self.lib, name, None) is not None

    def fn(self, name):
        f = getattr(self.lib, name, None)
        if f is None:
            raise LibMissing(f"libInLoop.so has no {name} (header: Include/inloop.h)")
        return f

    def error(self):
        return (self.lib.inloop_last_error() or b"").decode("utf-8", "replace")

    def status(self, code):
        return (self.lib.inloop_status_string(code) or b"").decode()

    def load(self, path):
        m = C.c_void_p()
        st = self.fn("inloop_model_load")(os.fsencode(path), C.byref(m))
        return st, m

    def load_buffer(self, data):
        m = C.c_void_p()
        buf = C.create_string_buffer(data, len(data))
        st = self.fn("inloop_model_load_buffer")(buf, len(data), C.byref(m))
        return st, m

    def call(self, name, *args):
        """Calls name(*args); raises CallFailed on a non-OK status."""
        st = self.fn(name)(*args)
        if st != 0:
            raise CallFailed(f"{name} -> {st} ({self.status(st)}): {self.error()}")

    def count(self, m, what):
        n = C.c_int64(-1)
        self.call(f"inloop_model_num_{what}s", m, C.byref(n))
        return n.value

    def name(self, m, what, i):
        s = C.c_char_p()
        self.call(f"inloop_model_{what}_name", m, i, C.byref(s))
        return s.value.decode()

    def index(self, m, what, name):
        i = C.c_int64(-1)
        self.call(f"inloop_model_{what}_index", m, name.encode(), C.byref(i))
        return i.value

    def shape(self, m, what, i):
        """The per-sample dims the model reports for input/output i (without the batch axis)."""
        r = C.c_int64(-1)
        self.call(f"inloop_model_{what}_rank", m, i, C.byref(r))
        dims = (C.c_int64 * max(1, r.value))()
        self.call(f"inloop_model_{what}_shape", m, i, dims, r.value)
        return [dims[k] for k in range(r.value)]

    def run(self, m, xs, out_shapes, dtype=np.float32):
        """Runs on the list xs (input order of the model); returns the outputs (allocated from
        out_shapes, per-sample shapes, filled with NaN first so an unwritten value shows)."""
        batch = xs[0].shape[0]
        ctype = C.c_float if dtype == np.float32 else C.c_double
        xs = [np.ascontiguousarray(x, dtype=dtype) for x in xs]
        ys = [np.full((batch, *s), np.nan, dtype=dtype) for s in out_shapes]
        PX = C.POINTER(ctype)
        xp = (PX * len(xs))(*[x.ctypes.data_as(PX) for x in xs])
        yp = (PX * len(ys))(*[y.ctypes.data_as(PX) for y in ys])
        name = "inloop_model_run_f32" if dtype == np.float32 else "inloop_model_run_f64"
        self.call(name, m, batch, len(xs), xp, len(ys), yp)
        return ys


class LibMissing(Exception):
    pass


class CallFailed(Exception):
    pass


def per_sample(dims, expected_rank):
    """InLoop reports per-sample dims (no batch axis: Include/inloop.h, inloop_model_input_rank)."""
    return list(dims)


# =====================================================================================================
# Model building
# =====================================================================================================
class G:
    """A small graph builder: inputs have a dynamic batch dimension 'N' in front of `shape`."""

    def __init__(self, opset=13, seed=0):
        self.opset = opset
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.ranges = {}
        self.n = 0
        self.rng = np.random.default_rng(seed)
        self.extra_opsets = []
        self.ir_version = None

    def _name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def input(self, name, shape, lo=-2.0, hi=2.0):
        self.inputs.append((name, list(shape)))
        self.ranges[name] = (lo, hi)
        return name

    def const(self, arr, name=None, raw=True):
        arr = np.asarray(arr)
        if arr.dtype == np.float64 and not getattr(arr, "_keep64", False):
            arr = arr.astype(np.float32)
        name = name or self._name("c")
        if raw:
            t = numpy_helper.from_array(arr, name=name)
        else:  # typed fields (float_data / int64_data) instead of raw_data
            dt = helper.np_dtype_to_tensor_dtype(arr.dtype)
            t = helper.make_tensor(name, dt, arr.shape, arr.flatten().tolist(), raw=False)
        self.inits.append(t)
        return name

    def ints(self, vals, name=None):
        return self.const(np.asarray(vals, dtype=np.int64), name)

    def w(self, *shape, scale=None, lo=None, hi=None):
        """A random float32 weight (He-like scale from the trailing dims)."""
        if lo is not None:
            return self.const(self.rng.uniform(lo, hi, shape).astype(np.float32))
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / np.sqrt(max(1, fan))
        return self.const((self.rng.standard_normal(shape) * s).astype(np.float32))

    def op(self, op_type, inputs, n_out=1, name=None, domain=None, **attrs):
        name = name or self._name(op_type.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        kw = {} if domain is None else {"domain": domain}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs, **kw))
        return outs if n_out > 1 else outs[0]

    def output(self, tensor, name=None):
        """Marks a tensor as graph output (renamed to `name` through the producing node)."""
        if name and name != tensor:
            for node in self.nodes:
                for j, o in enumerate(node.output):
                    if o == tensor:
                        node.output[j] = name
                for j, i in enumerate(node.input):
                    if i == tensor:
                        node.input[j] = name
            tensor = name
        self.outputs.append(tensor)
        return tensor

    def model(self, out_shapes=None, check=True):
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s]) for n, s in self.inputs]
        outs = []
        for k, o in enumerate(self.outputs):
            shape = None if out_shapes is None else out_shapes[k]
            outs.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, shape))
        graph = helper.make_graph(self.nodes, "g", ins, outs, initializer=self.inits)
        ops = [helper.make_opsetid("", self.opset)] + self.extra_opsets
        m = helper.make_model(graph, producer_name="inloop-conformance", opset_imports=ops)
        m.ir_version = self.ir_version or min(m.ir_version, 8 if self.opset <= 17 else 9)
        if check:
            onnx.checker.check_model(m)
        return m


def ort_session(model_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def finish(g):
    """The final ModelProto of g: output shapes found by running onnxruntime at two batch sizes and
    declared with the symbolic batch dimension 'N', as exporters declare them."""
    m = g.model(check=False)
    sess = ort_session(m.SerializeToString())
    shapes = []
    for b in (2, 3):
        feed = {n: np.zeros((b, *s), np.float32) + 0.5 for n, s in g.inputs}
        shapes.append([y.shape for y in sess.run(None, feed)])
    decl = []
    for s2, s3 in zip(*shapes):
        decl.append([("N" if a != b else a) for a, b in zip(s2, s3)])
    return g.model(out_shapes=decl)


def inputs_for(g_inputs, ranges, batch, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for n, s in g_inputs:
        lo, hi = ranges.get(n, (-2.0, 2.0))
        out[n] = rng.uniform(lo, hi, (batch, *s)).astype(np.float32)
    return out


# =====================================================================================================
# The cases: name -> builder returning a G (or (G, options))
# =====================================================================================================
CASES = {}


def case(name, **opts):
    def deco(fn):
        CASES[name] = (fn, opts)
        return fn
    return deco


# ---- dense ---------------------------------------------------------------------------------------
@case("gemm_transB_o13")
def _():
    g = G(13); x = g.input("x", [8])
    g.output(g.op("Gemm", [x, g.w(5, 8), g.w(5, scale=0.1)], transB=1), "y"); return g


@case("gemm_alpha_beta_o11")
def _():
    g = G(11); x = g.input("x", [8])
    g.output(g.op("Gemm", [x, g.w(8, 5), g.w(1, 5, scale=0.3)], alpha=0.5, beta=2.0), "y"); return g


@case("gemm_transA_o13")
def _():
    g = G(13); x = g.input("x", [8])
    t = g.op("Transpose", [x], perm=[1, 0])
    g.output(g.op("Gemm", [t, g.w(8, 5), g.w(5)], transA=1, alpha=1.5), "y"); return g


@case("gemm_transA_transB_o13")
def _():
    g = G(13); x = g.input("x", [6])
    t = g.op("Transpose", [x], perm=[1, 0])
    g.output(g.op("Gemm", [t, g.w(4, 6), g.w(4)], transA=1, transB=1, beta=0.25), "y"); return g


@case("gemm_noC_o11")
def _():
    g = G(11); x = g.input("x", [8])
    g.output(g.op("Gemm", [x, g.w(5, 8)], transB=1), "y"); return g


@case("gemm_scalarC_o13")
def _():
    g = G(13); x = g.input("x", [8])
    g.output(g.op("Gemm", [x, g.w(8, 3), g.const(np.float32(0.7))], beta=0.3), "y"); return g


@case("gemm_typed_fields_o13")
def _():  # weights in float_data (not raw_data)
    g = G(13); x = g.input("x", [8])
    W = g.const(g.rng.standard_normal((5, 8)).astype(np.float32) * 0.3, raw=False)
    b = g.const(g.rng.standard_normal(5).astype(np.float32) * 0.1, raw=False)
    g.output(g.op("Gemm", [x, W, b], transB=1), "y"); return g


@case("matmul_add_o13")
def _():
    g = G(13); x = g.input("x", [8])
    g.output(g.op("Add", [g.op("MatMul", [x, g.w(8, 6)]), g.w(6)]), "y"); return g


@case("matmul_bias_left_o17")
def _():
    g = G(17); x = g.input("x", [8])
    h = g.op("Relu", [g.op("Add", [g.w(6), g.op("MatMul", [x, g.w(8, 6)])])])
    g.output(h, "y"); return g


@case("matmul_3d_o13")
def _():
    g = G(13); x = g.input("x", [3, 8])
    g.output(g.op("Add", [g.op("MatMul", [x, g.w(8, 4)]), g.w(4)]), "y"); return g


@case("matmul_vector_o13")
def _():  # x[N,8] @ w[8] -> [N]: a scalar per sample
    g = G(13); x = g.input("x", [8])
    g.output(g.op("MatMul", [x, g.w(8)]), "y"); return g


@case("matmul_const_left_o13")
def _():  # W[6,3] @ x[N,3,4] -> [N,6,4]
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("MatMul", [g.w(6, 3), x]), "y"); return g


@case("matmul_two_inputs_o13")
def _():  # batched product of two runtime tensors
    g = G(13); a = g.input("a", [3, 8]); b = g.input("b", [8, 2])
    g.output(g.op("MatMul", [a, b]), "y"); return g


# ---- broadcasting arithmetic -----------------------------------------------------------------------
@case("add_bcast_o13")
def _():
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("Add", [x, g.w(4)]), "y"); return g


@case("sub_bcast_o13")
def _():
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("Sub", [x, g.w(3, 1)]), "y"); return g


@case("mul_bcast_o13")
def _():
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("Mul", [x, g.w(1, 3, 1)]), "y"); return g


@case("div_bcast_o13")
def _():
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("Div", [x, g.w(4, lo=0.5, hi=2.0)]), "y"); return g


@case("binary_two_inputs_o13")
def _():
    g = G(13); x = g.input("x", [3, 4]); y = g.input("y", [1, 4]); z = g.input("z", [3, 1], 0.5, 2.0)
    h = g.op("Mul", [g.op("Add", [x, y]), x])
    h = g.op("Div", [g.op("Sub", [h, y]), z])
    g.output(h, "out"); return g


@case("scalar_consts_o11")
def _():  # scalar constants on either side: 3 / (x*x*2.5 + 1) - (1 - x)
    g = G(11); x = g.input("x", [5])
    s = g.op("Add", [g.op("Mul", [g.op("Mul", [x, x]), g.const(np.float32(2.5))]), g.const(np.float32(1.0))])
    h = g.op("Div", [g.const(np.float32(3.0)), s])
    g.output(g.op("Sub", [h, g.op("Sub", [g.const(np.float32(1.0)), x])]), "y"); return g


@case("normalize_o17")
def _():  # (x - mean) / std, then dense: the column_mlp pattern
    g = G(17); x = g.input("x", [10], -5, 5)
    h = g.op("Div", [g.op("Sub", [x, g.w(10, scale=2)]), g.w(10, lo=0.5, hi=3)])
    g.output(g.op("Gemm", [h, g.w(4, 10), g.w(4)], transB=1), "y"); return g


# ---- activations (one model each) ---------------------------------------------------------------------
def unary(op, opset=13, lo=-3.0, hi=3.0, **attrs):
    def build():
        g = G(opset); x = g.input("x", [5, 6], lo, hi)
        g.output(g.op(op, [x], **attrs), "y"); return g
    return build


for _n, _op, _kw in [
    ("relu", "Relu", {}), ("leakyrelu", "LeakyRelu", {"alpha": 0.1}), ("tanh", "Tanh", {}),
    ("sigmoid", "Sigmoid", {}), ("softplus", "Softplus", {}), ("elu", "Elu", {"alpha": 0.7}),
    ("selu", "Selu", {}), ("selu_attrs", "Selu", {"alpha": 1.5, "gamma": 1.1}), ("erf", "Erf", {}),
    ("neg", "Neg", {}), ("abs", "Abs", {}), ("identity", "Identity", {}),
]:
    case(f"act_{_n}_o13")(unary(_op, **_kw))
case("act_exp_o13")(unary("Exp", lo=-4, hi=4))
case("act_log_o13")(unary("Log", lo=0.05, hi=5))
case("act_sqrt_o13")(unary("Sqrt", lo=0.0, hi=5))
case("act_reciprocal_o13")(unary("Reciprocal", lo=0.3, hi=3))
case("act_gelu_o20")(unary("Gelu", opset=20))
case("act_gelu_tanh_o20")(unary("Gelu", opset=20, approximate="tanh"))
case("act_leakyrelu_default_o11")(unary("LeakyRelu", opset=11))


@case("act_gelu_erf_decomposed_o13")
def _():  # torch.onnx.export of nn.GELU() before opset 20: x * 0.5 * (1 + erf(x / sqrt(2)))
    g = G(13); x = g.input("x", [5, 6], -3, 3)
    e = g.op("Erf", [g.op("Div", [x, g.const(np.float32(1.4142135381698608))])])
    h = g.op("Mul", [g.op("Mul", [x, g.op("Add", [e, g.const(np.float32(1.0))])]), g.const(np.float32(0.5))])
    g.output(h, "y"); return g


@case("act_silu_decomposed_o13")
def _():  # torch's SiLU export: x * sigmoid(x)
    g = G(13); x = g.input("x", [5, 6], -4, 4)
    g.output(g.op("Mul", [x, g.op("Sigmoid", [x])]), "y"); return g


def pow_case(exponent, lo, hi):
    def build():
        g = G(13); x = g.input("x", [5, 6], lo, hi)
        g.output(g.op("Pow", [x, g.const(np.float32(exponent))]), "y"); return g
    return build


case("pow_2_o13")(pow_case(2.0, -3, 3))
case("pow_3_o13")(pow_case(3.0, -3, 3))
case("pow_half_o13")(pow_case(0.5, 0.0, 4))
case("pow_neg1p5_o13")(pow_case(-1.5, 0.2, 4))


# ---- Clip ----------------------------------------------------------------------------------------------
case("clip_attr_o10")(unary("Clip", opset=10, min=-0.5, max=0.8))   # Clip-6: attributes
case("clip_attr_default_o10")(unary("Clip", opset=10, max=1.0))


@case("clip_inputs_o11")
def _():
    g = G(11); x = g.input("x", [5, 6], -3, 3)
    g.output(g.op("Clip", [x, g.const(np.float32(-0.5)), g.const(np.float32(0.8))]), "y"); return g


@case("clip_relu6_o13")
def _():
    g = G(13); x = g.input("x", [5, 6], -3, 9)
    g.output(g.op("Clip", [x, g.const(np.float32(0.0)), g.const(np.float32(6.0))]), "y"); return g


@case("clip_min_only_o13")
def _():
    g = G(13); x = g.input("x", [5, 6], -3, 3)
    g.output(g.op("Clip", [x, g.const(np.float32(-0.25))]), "y"); return g


@case("clip_max_only_o17")
def _():
    g = G(17); x = g.input("x", [5, 6], -3, 3)
    g.output(g.op("Clip", [x, "", g.const(np.float32(0.4))]), "y"); return g


@case("clip_no_bounds_o13")
def _():
    g = G(13); x = g.input("x", [5, 6], -3, 3)
    g.output(g.op("Relu", [g.op("Clip", [x])]), "y"); return g


# ---- Softmax, Dropout ----------------------------------------------------------------------------------
case("softmax_last_o13")(unary("Softmax", axis=-1))
case("softmax_axis1_o13")(unary("Softmax", axis=1))
case("softmax_axis1_coerced_o11")(unary("Softmax", opset=11, axis=1))  # opset < 13: over the flattened [5*6]
case("softmax_default_o11")(unary("Softmax", opset=11))
case("softmax_last_o17")(unary("Softmax", opset=17, lo=-20, hi=20))


@case("dropout_o11")
def _():
    g = G(11); x = g.input("x", [6])
    g.output(g.op("Relu", [g.op("Dropout", [g.op("Gemm", [x, g.w(4, 6)], transB=1)], ratio=0.3)]), "y"); return g


@case("dropout_mask_o13")
def _():  # ratio as input, the (unused) mask output present
    g = G(13); x = g.input("x", [6])
    d = g.op("Dropout", [x, g.const(np.float32(0.5))], n_out=2)
    g.output(g.op("Tanh", [d[0]]), "y"); return g


# ---- shape manipulation --------------------------------------------------------------------------------
@case("flatten_gemm_o13")
def _():
    g = G(13); x = g.input("x", [2, 3, 4])
    f = g.op("Flatten", [x], axis=1)
    g.output(g.op("Gemm", [f, g.w(5, 24), g.w(5)], transB=1), "y"); return g


@case("flatten_default_o11")
def _():
    g = G(11); x = g.input("x", [3, 2, 2])
    g.output(g.op("Relu", [g.op("Flatten", [x])]), "y"); return g


def view_chain(g, x, opset_unsqueeze_input):
    """torch's x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat([.., -1]) -> Reshape."""
    s = g.op("Shape", [x])
    n = g.op("Gather", [s, g.const(np.array(0, dtype=np.int64))], axis=0)
    if opset_unsqueeze_input:
        u = g.op("Unsqueeze", [n, g.ints([0])])
    else:
        u = g.op("Unsqueeze", [n], axes=[0])
    c = g.op("Concat", [u, g.ints([-1])], axis=0)
    return g.op("Reshape", [x, c])


@case("reshape_view_chain_o13")
def _():
    g = G(13); x = g.input("x", [2, 3, 4])
    r = view_chain(g, g.op("Relu", [x]), True)
    g.output(g.op("Gemm", [r, g.w(3, 24), g.w(3)], transB=1), "y"); return g


@case("reshape_view_chain_o11")
def _():
    g = G(11); x = g.input("x", [2, 3, 4])
    g.output(g.op("Sigmoid", [view_chain(g, x, False)]), "y"); return g


@case("reshape_const_o13")
def _():  # [N,24] -> [-1,4,6] -> [0,24] (0 copies the dim)
    g = G(13); x = g.input("x", [24])
    r = g.op("Reshape", [x, g.ints([-1, 4, 6])])
    r = g.op("Transpose", [r], perm=[0, 2, 1])
    g.output(g.op("Reshape", [r, g.ints([0, 24])]), "y"); return g


@case("reshape_shape_slice_o13")
def _():  # torch's x.view(x.size(0), x.size(1), -1): Shape -> Slice(0:2) -> Concat -> Reshape
    g = G(13); x = g.input("x", [2, 3, 4])
    s = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([2]), g.ints([0])])
    g.output(g.op("Reshape", [x, g.op("Concat", [s, g.ints([-1])], axis=0)]), "y"); return g


@case("transpose_o13")
def _():
    g = G(13); x = g.input("x", [3, 4])
    g.output(g.op("Transpose", [x], perm=[0, 2, 1]), "y"); return g


@case("transpose_4d_o17")
def _():  # NCHW -> NHWC -> back with a different perm
    g = G(17); x = g.input("x", [2, 3, 4])
    t = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    g.output(g.op("Transpose", [g.op("Relu", [t])], perm=[0, 3, 2, 1]), "y"); return g


@case("concat_o13")
def _():
    g = G(13); x = g.input("x", [3, 4]); y = g.input("y", [2, 4])
    c = g.op("Concat", [x, y, x], axis=1)
    g.output(g.op("Concat", [c, g.op("Relu", [c])], axis=-1), "out"); return g


@case("split_attr_o11")
def _():
    g = G(11); x = g.input("x", [6, 4])
    a, b = g.op("Split", [x], n_out=2, axis=1, split=[2, 4])
    g.output(g.op("Relu", [a]), "y1"); g.output(g.op("Tanh", [b]), "y2"); return g


@case("split_input_o13")
def _():
    g = G(13); x = g.input("x", [6, 4])
    a, b, c = g.op("Split", [x, g.ints([1, 2, 3])], n_out=3, axis=1)
    g.output(a, "y1"); g.output(g.op("Neg", [b]), "y2"); g.output(c, "y3"); return g


@case("split_equal_o13")
def _():
    g = G(13); x = g.input("x", [4, 6])
    a, b, c = g.op("Split", [x], n_out=3, axis=-1)
    g.output(g.op("Add", [g.op("Mul", [a, b]), c]), "y"); return g


@case("slice_steps_o13")
def _():
    g = G(13); x = g.input("x", [8, 6])
    g.output(g.op("Slice", [x, g.ints([1, 0]), g.ints([7, 6]), g.ints([1, 2]), g.ints([2, 1])]), "y"); return g


@case("slice_reverse_o13")
def _():  # x[:, ::-1, :]
    g = G(13); x = g.input("x", [8, 6])
    g.output(g.op("Slice", [x, g.ints([-1]), g.ints([-INT64_MAX]), g.ints([1]), g.ints([-1])]), "y"); return g


@case("slice_neg_step2_o17")
def _():  # x[:, :, 5:0:-2] and negative axes
    g = G(17); x = g.input("x", [4, 7])
    g.output(g.op("Slice", [x, g.ints([5]), g.ints([0]), g.ints([-1]), g.ints([-2])]), "y"); return g


@case("slice_no_axes_o11")
def _():  # axes and steps absent: every axis, from the front (batch axis kept whole)
    g = G(11); x = g.input("x", [5, 6])
    g.output(g.op("Slice", [x, g.ints([0, 1, -4]), g.ints([INT64_MAX, 4, INT64_MAX])]), "y"); return g


@case("squeeze_attr_o11")
def _():
    g = G(11); x = g.input("x", [1, 5, 1])
    g.output(g.op("Squeeze", [x], axes=[1, 3]), "y"); return g


@case("squeeze_input_o13")
def _():
    g = G(13); x = g.input("x", [1, 5, 1])
    g.output(g.op("Squeeze", [x, g.ints([-1, 1])]), "y"); return g


@case("unsqueeze_attr_o11")
def _():
    g = G(11); x = g.input("x", [5])
    g.output(g.op("Unsqueeze", [x], axes=[1, 3]), "y"); return g


@case("unsqueeze_input_o13")
def _():
    g = G(13); x = g.input("x", [5])
    g.output(g.op("Unsqueeze", [x, g.ints([-1])]), "y"); return g


@case("gather_axis1_o13")
def _():
    g = G(13); x = g.input("x", [6, 4])
    g.output(g.op("Gather", [x, g.ints([4, 0, 2, 2])], axis=1), "y"); return g


@case("gather_scalar_o13")
def _():  # scalar index drops the axis: [N,6,4] -> [N,6]
    g = G(13); x = g.input("x", [6, 4])
    g.output(g.op("Gather", [x, g.const(np.array(3, dtype=np.int64))], axis=2), "y"); return g


@case("gather_negative_o11")
def _():
    g = G(11); x = g.input("x", [6, 4])
    g.output(g.op("Gather", [x, g.ints([-1, 0])], axis=-1), "y"); return g


@case("gather_2d_indices_o13")
def _():
    g = G(13); x = g.input("x", [6, 4])
    g.output(g.op("Gather", [x, g.ints([[0, 1], [5, 3]])], axis=1), "y"); return g


@case("constant_node_o13")
def _():  # weights from Constant nodes instead of initializers
    g = G(13); x = g.input("x", [6])
    W = g.rng.standard_normal((6, 3)).astype(np.float32)
    w = g.op("Constant", [], value=numpy_helper.from_array(W))
    b = g.op("Constant", [], value_floats=[0.1, -0.2, 0.3])
    g.output(g.op("Add", [g.op("MatMul", [x, w]), b]), "y"); return g


@case("initializer_as_input_o11")
def _():  # old exporters list the weights among the graph inputs too
    g = G(11); x = g.input("x", [6])
    g.output(g.op("Gemm", [x, g.w(3, 6, ), g.w(3)], transB=1), "y")
    g.extra_weight_inputs = True
    return g


@case("identity_passthrough_o13")
def _():  # an output that is (an alias of) the input, and a second computed output
    g = G(13); x = g.input("x", [4])
    g.output(g.op("Identity", [x]), "y1"); g.output(g.op("Relu", [x]), "y2"); return g


# ---- convolutions ---------------------------------------------------------------------------------------
@case("conv1d_pad_o13")
def _():
    g = G(13); x = g.input("x", [4, 20])
    g.output(g.op("Conv", [x, g.w(6, 4, 3), g.w(6)], kernel_shape=[3], pads=[1, 1]), "y"); return g


@case("conv1d_stride_dilation_o11")
def _():
    g = G(11); x = g.input("x", [4, 21])
    g.output(g.op("Conv", [x, g.w(5, 4, 3)], strides=[2], dilations=[2], pads=[2, 1]), "y"); return g


@case("conv2d_pad_o13")
def _():
    g = G(13); x = g.input("x", [3, 12, 10])
    g.output(g.op("Conv", [x, g.w(8, 3, 3, 3), g.w(8)], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), "y"); return g


@case("conv2d_stride_dilation_asym_o17")
def _():
    g = G(17); x = g.input("x", [3, 13, 11])
    g.output(g.op("Conv", [x, g.w(4, 3, 5, 3), g.w(4)], strides=[2, 1], pads=[2, 0, 1, 1], dilations=[1, 2]), "y"); return g


@case("conv2d_1x1_o13")
def _():
    g = G(13); x = g.input("x", [3, 5, 6])
    g.output(g.op("Conv", [x, g.w(7, 3, 1, 1), g.w(7)]), "y"); return g


@case("conv2d_depthwise_o13")
def _():
    g = G(13); x = g.input("x", [4, 10, 9])
    g.output(g.op("Conv", [x, g.w(4, 1, 3, 3), g.w(4)], group=4, pads=[1, 1, 1, 1]), "y"); return g


@case("conv2d_depthwise_multiplier_o13")
def _():
    g = G(13); x = g.input("x", [4, 8, 8])
    g.output(g.op("Conv", [x, g.w(8, 1, 3, 3), g.w(8)], group=4, strides=[2, 2], pads=[1, 1, 1, 1]), "y"); return g


@case("conv1d_depthwise_o13")
def _():
    g = G(13); x = g.input("x", [4, 20])
    g.output(g.op("Conv", [x, g.w(4, 1, 5)], group=4, pads=[2, 2]), "y"); return g


@case("conv2d_autopad_same_upper_o11")
def _():
    g = G(11); x = g.input("x", [3, 9, 10])
    g.output(g.op("Conv", [x, g.w(4, 3, 3, 3), g.w(4)], auto_pad="SAME_UPPER", strides=[2, 2]), "y"); return g


@case("conv2d_autopad_valid_o13")
def _():
    g = G(13); x = g.input("x", [3, 9, 10])
    g.output(g.op("Conv", [x, g.w(4, 3, 3, 3)], auto_pad="VALID"), "y"); return g


@case("conv2d_group2_o13", group_case=True)
def _():  # neither group 1 nor depthwise: matches onnxruntime, or refused at load naming 'group'
    g = G(13); x = g.input("x", [4, 6, 6])
    g.output(g.op("Conv", [x, g.w(6, 2, 3, 3), g.w(6)], group=2, pads=[1, 1, 1, 1]), "y"); return g


@case("convtranspose1d_o13")
def _():
    g = G(13); x = g.input("x", [4, 10])
    g.output(g.op("ConvTranspose", [x, g.w(4, 3, 4), g.w(3)], strides=[2], pads=[1, 1]), "y"); return g


@case("convtranspose2d_outpad_o13")
def _():
    g = G(13); x = g.input("x", [3, 6, 5])
    g.output(g.op("ConvTranspose", [x, g.w(3, 2, 3, 3), g.w(2)], strides=[2, 2], pads=[1, 1, 1, 1],
                  output_padding=[1, 1]), "y"); return g


@case("convtranspose2d_dilation_o11")
def _():
    g = G(11); x = g.input("x", [2, 5, 4])
    g.output(g.op("ConvTranspose", [x, g.w(2, 3, 2, 3)], dilations=[2, 1]), "y"); return g


@case("convtranspose2d_k2s2_o17")
def _():  # the U-Net upsampling block
    g = G(17); x = g.input("x", [4, 5, 5])
    g.output(g.op("ConvTranspose", [x, g.w(4, 4, 2, 2), g.w(4)], kernel_shape=[2, 2], strides=[2, 2]), "y"); return g


# ---- pooling ---------------------------------------------------------------------------------------------
@case("maxpool2d_o13")
def _():
    g = G(13); x = g.input("x", [3, 8, 10])
    g.output(g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2]), "y"); return g


@case("maxpool2d_pad_ceil_o13")
def _():
    g = G(13); x = g.input("x", [2, 11, 11])
    g.output(g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), "y"); return g


@case("maxpool2d_ceil_o17")
def _():
    g = G(17); x = g.input("x", [2, 7, 9])
    g.output(g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), "y"); return g


@case("maxpool1d_o11")
def _():
    g = G(11); x = g.input("x", [3, 15])
    g.output(g.op("MaxPool", [x], kernel_shape=[3], strides=[2], pads=[1, 1]), "y"); return g


@case("avgpool2d_o13")
def _():
    g = G(13); x = g.input("x", [3, 8, 10])
    g.output(g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2]), "y"); return g


@case("avgpool2d_pad_exclude_o13")
def _():
    g = G(13); x = g.input("x", [2, 9, 9])
    g.output(g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), "y"); return g


@case("avgpool2d_pad_include_o13")
def _():
    g = G(13); x = g.input("x", [2, 9, 9])
    g.output(g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                  count_include_pad=1), "y"); return g


@case("avgpool2d_ceil_o17")
def _():
    g = G(17); x = g.input("x", [2, 11, 10])
    g.output(g.op("AveragePool", [x], kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1), "y"); return g


@case("avgpool2d_ceil_pad_include_o17")
def _():
    g = G(17); x = g.input("x", [2, 10, 10])
    g.output(g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                  count_include_pad=1), "y"); return g


@case("avgpool1d_o11")
def _():
    g = G(11); x = g.input("x", [3, 16])
    g.output(g.op("AveragePool", [x], kernel_shape=[4], strides=[3], pads=[1, 2]), "y"); return g


@case("globalavgpool2d_o13")
def _():
    g = G(13); x = g.input("x", [5, 6, 7])
    g.output(g.op("GlobalAveragePool", [x]), "y"); return g


@case("globalavgpool1d_o13")
def _():
    g = G(13); x = g.input("x", [5, 9])
    g.output(g.op("Flatten", [g.op("GlobalAveragePool", [x])]), "y"); return g


# ---- normalisation -----------------------------------------------------------------------------------------
def bn_params(g, c):
    return [g.w(c, lo=0.5, hi=1.5), g.w(c, lo=-0.5, hi=0.5), g.w(c, lo=-0.3, hi=0.3), g.w(c, lo=0.2, hi=2.0)]


@case("batchnorm_after_conv_o13")
def _():
    g = G(13); x = g.input("x", [3, 8, 8])
    c = g.op("Conv", [x, g.w(5, 3, 3, 3), g.w(5)], pads=[1, 1, 1, 1])
    g.output(g.op("Relu", [g.op("BatchNormalization", [c, *bn_params(g, 5)], epsilon=1e-3)]), "y"); return g


@case("batchnorm_standalone_1d_o13")
def _():
    g = G(13); x = g.input("x", [4, 10])
    g.output(g.op("BatchNormalization", [x, *bn_params(g, 4)]), "y"); return g


@case("batchnorm_2d_input_o11")
def _():
    g = G(11); x = g.input("x", [6])
    g.output(g.op("BatchNormalization", [x, *bn_params(g, 6)], epsilon=1e-4), "y"); return g


@case("batchnorm_after_gemm_o13")
def _():
    g = G(13); x = g.input("x", [6])
    h = g.op("Gemm", [x, g.w(5, 6), g.w(5)], transB=1)
    g.output(g.op("BatchNormalization", [h, *bn_params(g, 5)]), "y"); return g


@case("batchnorm_shared_conv_output_o13")
def _():  # the conv output is used twice: BN must not be folded in place of the other use
    g = G(13); x = g.input("x", [2, 6, 6])
    c = g.op("Conv", [x, g.w(3, 2, 3, 3), g.w(3)], pads=[1, 1, 1, 1])
    b = g.op("BatchNormalization", [c, *bn_params(g, 3)])
    g.output(g.op("Add", [b, c]), "y"); return g


@case("batchnorm_after_convtranspose_group_o13")
def _():  # folded into ConvTranspose weights [C_in, C_out/group, k, k]: channel (i / (C_in/group))·(C_out/group) + j
    g = G(13); x = g.input("x", [4, 3, 3])
    c = g.op("ConvTranspose", [x, g.w(4, 3, 2, 2), g.w(6)], group=2, strides=[2, 2])
    g.output(g.op("Relu", [g.op("BatchNormalization", [c, *bn_params(g, 6)], epsilon=1e-3)]), "y"); return g


@case("batchnorm_after_conv_nobias_o13")
def _():  # folded: the conv gets a bias
    g = G(13); x = g.input("x", [4, 6, 5])
    c = g.op("Conv", [x, g.w(6, 2, 3, 3)], group=2, pads=[1, 0, 1, 1])
    g.output(g.op("BatchNormalization", [c, *bn_params(g, 6)]), "y"); return g


@case("batchnorm_conv_output_also_graph_output_o13")
def _():  # the conv output is a graph output too: not folded
    g = G(13); x = g.input("x", [2, 5, 5])
    c = g.op("Conv", [x, g.w(4, 2, 3, 3)])
    g.output(g.op("BatchNormalization", [c, *bn_params(g, 4)]), "y"); g.output(c, "z"); return g


@case("layernorm_o17")
def _():
    g = G(17); x = g.input("x", [5, 8])
    g.output(g.op("LayerNormalization", [x, g.w(8, lo=0.5, hi=1.5), g.w(8, lo=-.5, hi=.5)], axis=-1, epsilon=1e-5), "y")
    return g


@case("layernorm_axis1_nobias_o17")
def _():
    g = G(17); x = g.input("x", [4, 6], 1, 3)
    g.output(g.op("LayerNormalization", [x, g.w(4, 6, lo=0.5, hi=1.5)], axis=1, epsilon=1e-3), "y"); return g


# ---- resize / upsample ----------------------------------------------------------------------------------------
@case("resize_scales_asymmetric_floor_o13")
def _():  # torch's nn.Upsample(scale_factor=2, mode='nearest')
    g = G(13); x = g.input("x", [3, 4, 5])
    g.output(g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"), "y"); return g


@case("resize_scales_default_o13")
def _():  # half_pixel + round_prefer_floor
    g = G(13); x = g.input("x", [2, 4, 5])
    g.output(g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 3], np.float32))], mode="nearest"), "y"); return g


@case("resize_sizes_chain_o13")
def _():  # sizes from Shape(x)[0:2] ++ [8, 15], as exporters emit for size=(8, 15)
    g = G(13); x = g.input("x", [2, 4, 5])
    s = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([2]), g.ints([0])])
    sizes = g.op("Concat", [s, g.ints([8, 15])], axis=0)
    g.output(g.op("Resize", [x, "", "", sizes], mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor"), "y"); return g


@case("resize_roi_scales_o11")
def _():  # opset 11: roi is a required (empty) input
    g = G(11); x = g.input("x", [2, 3, 4])
    g.output(g.op("Resize", [x, g.const(np.zeros(0, np.float32)), g.const(np.array([1, 1, 2, 2], np.float32))],
                  mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), "y"); return g


@case("resize_1d_o13")
def _():
    g = G(13); x = g.input("x", [3, 7])
    g.output(g.op("Resize", [x, "", g.const(np.array([1, 1, 3], np.float32))], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"), "y"); return g


@case("resize_downsample_o17")
def _():
    g = G(17); x = g.input("x", [2, 8, 6])
    g.output(g.op("Resize", [x, "", g.const(np.array([1, 1, 0.5, 0.5], np.float32))], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"), "y"); return g


# family nd: linear and cubic modes (the node tests pass scales as a runtime input; these are constant)
def resize_case(x_shape, scales, opset=13, **attrs):
    def build():
        g = G(opset); x = g.input("x", x_shape)
        g.output(g.op("Resize", [x, "", g.const(np.array(scales, np.float32))], **attrs), "y"); return g
    return build


case("resize_linear_half_pixel_o13")(resize_case([2, 4, 5], [1, 1, 2, 1.5], mode="linear"))
# align_corners with scale·in integral: where it is not (e.g. 7 · 0.6), onnxruntime divides by the integer
# output length and the ONNX reference (the node tests' expected values, which InLoop follows) by scale·in
case("resize_linear_align_corners_down_o13")(resize_case([2, 6, 8], [1, 1, 0.5, 0.75], mode="linear",
                                                         coordinate_transformation_mode="align_corners"))
case("resize_linear_pytorch_half_pixel_o13")(resize_case([3, 5, 4], [1, 1, 0.4, 1.75], mode="linear",
                                                         coordinate_transformation_mode="pytorch_half_pixel"))
case("resize_cubic_o13")(resize_case([2, 5, 6], [1, 1, 2, 2], mode="cubic"))
case("resize_cubic_exclude_outside_o13")(resize_case([1, 6, 6], [1, 1, 0.8, 1.25], mode="cubic", cubic_coeff_a=-0.5,
                                                     exclude_outside=1, coordinate_transformation_mode="asymmetric"))
case("resize_trilinear_o13")(resize_case([1, 3, 4, 5], [1, 1, 2, 1.5, 0.8], mode="linear"))


@case("resize_linear_sizes_chain_o13")
def _():  # sizes from Shape(x)[0:2] ++ [7, 11], as torch exports F.interpolate(size=(7, 11), mode='bilinear')
    g = G(13); x = g.input("x", [2, 4, 5])
    s = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([2]), g.ints([0])])
    sizes = g.op("Concat", [s, g.ints([7, 11])], axis=0)
    g.output(g.op("Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), "y")
    return g


@case("upsample_linear_o9")
def _():
    g = G(9); x = g.input("x", [2, 3, 4])
    g.output(g.op("Upsample", [x, g.const(np.array([1, 1, 2, 2], np.float32))], mode="linear"), "y"); return g


# family nd: 3-D convolution and pooling
@case("conv3d_o13")
def _():  # pads, strides, dilation along depth, bias, then ReLU (fused)
    g = G(13); x = g.input("x", [3, 6, 5, 7])
    g.output(g.op("Relu", [g.op("Conv", [x, g.w(4, 3, 3, 2, 3), g.w(4, scale=0.1)], pads=[1, 0, 1, 1, 1, 0],
                                strides=[2, 1, 2], dilations=[2, 1, 1])]), "y"); return g


@case("conv3d_group_same_o13")
def _():
    g = G(13); x = g.input("x", [4, 4, 4, 4])
    g.output(g.op("Conv", [x, g.w(6, 2, 3, 3, 3)], group=2, auto_pad="SAME_UPPER"), "y"); return g


# family nd: 3-D pooling
@case("maxpool3d_o13")
def _():
    g = G(13); x = g.input("x", [2, 5, 6, 7])
    g.output(g.op("MaxPool", [x], kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[1, 1, 0, 0, 1, 1]), "y"); return g


@case("averagepool3d_ceil_include_pad_o13")
def _():
    g = G(13); x = g.input("x", [2, 5, 6, 7])
    g.output(g.op("AveragePool", [x], kernel_shape=[3, 2, 3], strides=[2, 2, 2], pads=[1, 0, 1, 1, 1, 0], ceil_mode=1,
                  count_include_pad=1), "y"); return g


@case("averagepool3d_same_upper_o13")
def _():
    g = G(13); x = g.input("x", [3, 4, 5, 6])
    g.output(g.op("AveragePool", [x], kernel_shape=[3, 3, 2], strides=[2, 2, 2], auto_pad="SAME_UPPER"), "y"); return g


@case("upsample_o9")
def _():  # Upsample-9: scales as an input
    g = G(9); x = g.input("x", [2, 3, 4])
    g.output(g.op("Upsample", [x, g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest"), "y"); return g


@case("upsample_attr_o7")
def _():  # Upsample-7: scales as an attribute
    g = G(7); x = g.input("x", [2, 3, 4])
    g.output(g.op("Upsample", [x], mode="nearest", scales=[1.0, 1.0, 3.0, 2.0]), "y"); return g


# ---- composite models ------------------------------------------------------------------------------------------
def mlp(opset):
    def build():
        g = G(opset, seed=opset); x = g.input("x", [12], -4, 4)
        h = g.op("Div", [g.op("Sub", [x, g.w(12)]), g.w(12, lo=0.5, hi=2)])
        for k, (i, o) in enumerate([(12, 32), (32, 32), (32, 32)]):
            h = g.op("LeakyRelu", [g.op("Gemm", [h, g.w(o, i, scale=np.sqrt(2 / i)), g.w(o, scale=0.1)], transB=1)],
                     alpha=0.3)
        g.output(g.op("Gemm", [h, g.w(7, 32), g.w(7)], transB=1), "y"); return g
    return build


for _o in (11, 13, 17):
    case(f"mlp_o{_o}")(mlp(_o))


@case("column_conv1d_like_o13")
def _():
    g = G(13); x = g.input("x", [4, 30])
    h = g.op("Relu", [g.op("Conv", [x, g.w(16, 4, 3), g.w(16)], pads=[1, 1])])
    h = g.op("Tanh", [g.op("Conv", [h, g.w(16, 16, 3), g.w(16)], pads=[1, 1])])
    g.output(g.op("Conv", [h, g.w(2, 16, 3), g.w(2)], pads=[1, 1]), "y"); return g


@case("cnn_bn_gap_softmax_o13")
def _():
    g = G(13); x = g.input("x", [2, 16, 16])
    h = g.op("Conv", [x, g.w(8, 2, 3, 3), g.w(8)], pads=[1, 1, 1, 1])
    h = g.op("Relu", [g.op("BatchNormalization", [h, *bn_params(g, 8)])])
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Relu", [g.op("Conv", [h, g.w(12, 8, 3, 3), g.w(12)], pads=[1, 1, 1, 1])])
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])])
    g.output(g.op("Softmax", [g.op("Gemm", [h, g.w(5, 12), g.w(5)], transB=1)], axis=-1), "y"); return g


@case("cnn_view_chain_o17")
def _():
    g = G(17); x = g.input("x", [2, 12, 12])
    h = g.op("Relu", [g.op("Conv", [x, g.w(6, 2, 3, 3), g.w(6)], pads=[1, 1, 1, 1])])
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Relu", [g.op("Conv", [h, g.w(8, 6, 3, 3), g.w(8)], pads=[1, 1, 1, 1])])
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = view_chain(g, h, True)
    h = g.op("Relu", [g.op("Gemm", [h, g.w(16, 72), g.w(16)], transB=1)])
    g.output(g.op("Gemm", [h, g.w(1, 16), g.w(1)], transB=1), "y"); return g


@case("unet_tiny_o13")
def _():
    g = G(13); x = g.input("x", [2, 8, 8])
    e = g.op("Relu", [g.op("Conv", [x, g.w(4, 2, 3, 3), g.w(4)], pads=[1, 1, 1, 1])])
    d = g.op("Relu", [g.op("Conv", [e, g.w(8, 4, 3, 3), g.w(8)], strides=[2, 2], pads=[1, 1, 1, 1])])
    u = g.op("ConvTranspose", [d, g.w(8, 4, 2, 2), g.w(4)], strides=[2, 2])
    c = g.op("Concat", [u, e], axis=1)
    r = g.op("Resize", [g.op("MaxPool", [c], kernel_shape=[2, 2], strides=[2, 2]), "",
                        g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest",
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    g.output(g.op("Conv", [g.op("Add", [r, c]), g.w(1, 8, 1, 1), g.w(1)]), "y"); return g


@case("multi_io_o13")
def _():  # two inputs, two outputs; inputs declared b before a
    g = G(13); b = g.input("b", [3, 4]); a = g.input("a", [5])
    f = g.op("Concat", [a, g.op("Flatten", [b])], axis=1)
    g.output(g.op("Tanh", [g.op("Gemm", [f, g.w(6, 17), g.w(6)], transB=1)]), "y_dense")
    g.output(g.op("Mul", [g.op("Relu", [b]), g.const(np.float32(2.0))]), "y_map")
    return g


@case("layernorm_attention_block_o17")
def _():  # a tiny transformer-ish block: LayerNorm, projections, Softmax(QK^T), residual
    g = G(17); x = g.input("x", [6, 8])
    h = g.op("LayerNormalization", [x, g.w(8, lo=.5, hi=1.5), g.w(8, lo=-.2, hi=.2)], axis=-1)
    q = g.op("MatMul", [h, g.w(8, 8)]); k = g.op("MatMul", [h, g.w(8, 8)]); v = g.op("MatMul", [h, g.w(8, 8)])
    s = g.op("Softmax", [g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])]),
                                       g.const(np.float32(8 ** -0.5))])], axis=-1)
    o = g.op("Add", [g.op("MatMul", [g.op("MatMul", [s, v]), g.w(8, 8)]), x])
    f = g.op("Add", [g.op("MatMul", [g.op("Gelu", [g.op("MatMul", [o, g.w(8, 16)])]), g.w(16, 8)]), o])
    g.output(f, "y"); g.opset = 20; return g


# ---- comparison, logic, selection, broadcasting (family logic, issue 10 phase 6) -----------------------
@case("logic_where_mask_o13")
def _():  # masks as exporters build them: comparisons, Not/And/Or/Xor, Where with broadcast operands
    g = G(13); x = g.input("x", [2, 4])
    a = g.op("Greater", [x, g.const(np.float32(0.5))])
    b = g.op("Less", [x, g.w(4, lo=-1, hi=1)])
    c = g.op("Or", [g.op("And", [a, g.op("Not", [b])]), g.op("Xor", [b, g.op("Equal", [x, x])])])
    g.output(g.op("Where", [c, g.op("Mul", [x, g.const(np.float32(2))]), g.w(1, 4)]), "y"); return g


@case("logic_masked_fill_o17")
def _():  # torch masked_fill(mask, -1e4) then softmax; GreaterOrEqual/LessOrEqual (opset 12+)
    g = G(17); x = g.input("x", [3, 5])
    m = g.op("And", [g.op("GreaterOrEqual", [x, g.w(5, lo=-1, hi=0)]), g.op("LessOrEqual", [x, g.const(np.float32(1.5))])])
    w = g.op("Where", [m, g.const(np.float32(-1e4)), x])
    g.output(g.op("Softmax", [w], axis=-1), "y"); return g


@case("expand_tile_o13")
def _():  # Expand of a [1, K] constant to Shape(x) = [N, K], Expand along a new axis, Tile
    g = G(13); x = g.input("x", [3])
    e = g.op("Expand", [g.w(1, 3), g.op("Shape", [x])])
    t = g.op("Tile", [x, g.ints([1, 2])])
    u = g.op("Expand", [g.op("Unsqueeze", [x, g.ints([1])]), g.ints([1, 2, 1])])
    g.output(g.op("Concat", [g.op("Add", [e, x]), t, g.op("Reshape", [u, g.ints([0, -1])])], axis=1), "y"); return g


@case("prelu_mod_sum_mean_o13")
def _():  # PRelu with torch's per-channel slope, Mod (fmod 1), variadic Sum and Mean, CastLike (opset 15)
    g = G(15); x = g.input("x", [4, 2, 2])
    p = g.op("PRelu", [x, g.w(4, 1, 1, lo=0.1, hi=0.5)])
    r = g.op("Mod", [x, g.const(np.float32(0.7))], fmod=1)
    s = g.op("Sum", [p, r, g.w(2, 2)])
    mask = g.op("CastLike", [g.op("Greater", [x, g.const(np.float32(0))]), x])
    g.output(g.op("Mean", [s, g.op("Mul", [mask, x]), p]), "y"); return g
# ---- family reduce: reductions, Pad, Einsum (axes and pads as initializers, which ONNX's node tests
# pass as run-time inputs instead) -------------------------------------------------------------------
@case("reduce_axes_attribute_o13")
def _():
    g = G(13); x = g.input("x", [3, 4], lo=0.2, hi=2.0)
    g.output(g.op("ReduceMean", [x], axes=[2], keepdims=1), "y_mean")
    g.output(g.op("ReduceL2", [x], axes=[1, 2], keepdims=0), "y_l2")
    g.output(g.op("ReduceLogSum", [x], axes=[-2]), "y_logsum")
    g.output(g.op("ReduceSum", [x, g.ints([1])], keepdims=0), "y_sum")
    return g


@case("reduce_axes_input_o18")
def _():
    g = G(18); x = g.input("x", [3, 2, 4], lo=0.5, hi=1.5)
    g.output(g.op("ReduceMax", [x, g.ints([1, 3])], keepdims=1), "y_max")
    g.output(g.op("ReduceMin", [x, g.ints([-1])], keepdims=0), "y_min")
    g.output(g.op("ReduceProd", [x, g.ints([2])]), "y_prod")
    g.output(g.op("ReduceSumSquare", [x, g.ints([1, 2])], keepdims=0), "y_sumsq")
    g.output(g.op("ReduceL1", [g.op("Sub", [x, g.const(np.float32(1.0))]), g.ints([3])]), "y_l1")
    g.output(g.op("ReduceLogSumExp", [x, g.ints([1, 2, 3])], keepdims=1), "y_lse")
    g.output(g.op("ReduceMean", [x, g.ints([])], noop_with_empty_axes=1), "y_noop")
    return g


@case("layernorm_decomposed_o13")
def _():  # torch's export of nn.LayerNorm before opset 17: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div
    g = G(13); x = g.input("x", [5, 8])
    m = g.op("ReduceMean", [x], axes=[-1]); d = g.op("Sub", [x, m])
    v = g.op("ReduceMean", [g.op("Pow", [d, g.const(np.float32(2.0))])], axes=[-1])
    n = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [v, g.const(np.float32(1e-5))])])])
    g.output(g.op("Add", [g.op("Mul", [n, g.w(8, lo=.5, hi=1.5)]), g.w(8, lo=-.2, hi=.2)]), "y"); return g


@case("pad_modes_o19")
def _():
    g = G(19); x = g.input("x", [3, 4])
    g.output(g.op("Pad", [x, g.ints([0, 1, 2, 0, 2, 1]), g.const(np.float32(0.5))]), "y_constant")
    g.output(g.op("Pad", [x, g.ints([0, 2, 1, 0, 1, 3])], mode="reflect"), "y_reflect")
    g.output(g.op("Pad", [x, g.ints([0, 1, 0, 0, 3, 2])], mode="edge"), "y_edge")
    g.output(g.op("Pad", [x, g.ints([1, 5, 2, 1]), "", g.ints([-2, -1])], mode="wrap"), "y_wrap")
    g.output(g.op("Pad", [x, g.ints([0, -1, 1, 0, 0, -1])]), "y_crop")
    return g


@case("pad_attributes_o7")
def _():
    g = G(7); x = g.input("x", [2, 3])
    g.output(g.op("Pad", [x], pads=[0, 1, 0, 0, 1, 2], value=-1.5), "y")
    return g


@case("einsum_attention_o12")
def _():  # torch exports of attention scores and batched products
    g = G(12); x = g.input("x", [2, 3, 4])
    q = g.op("Einsum", [x, g.w(4, 4)], equation="bhqd,de->bhqe")
    s = g.op("Einsum", [q, x], equation="bhqd,bhkd->bhqk")
    g.output(g.op("Einsum", [g.op("Softmax", [s], axis=-1), x], equation="bhqk,bhkd->bhqd"), "y_attention")
    g.output(g.op("Einsum", [x], equation="bhqd->bdqh"), "y_transpose")
    g.output(g.op("Einsum", [x, x], equation="bhqd,bhqd->bq"), "y_inner")
    return g
# ---- recurrent layers (family rnn): LSTM, GRU, RNN as torch exports them and as ONNX defines them ------
def _rnn_weights(g, gates, dirs, hidden, inp, bias=True):
    """W, R (and B) in torch's initialisation range U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    s = 1.0 / np.sqrt(hidden)
    w = g.w(dirs, gates * hidden, inp, lo=-s, hi=s)
    r = g.w(dirs, gates * hidden, hidden, lo=-s, hi=s)
    return (w, r, g.w(dirs, 2 * gates * hidden, lo=-s, hi=s)) if bias else (w, r)


@case("lstm_torch_batch_first_2layers_o14")
def _():  # nn.LSTM(5, 4, num_layers=2, batch_first=True): Transpose, one LSTM (layout 0) per layer, Squeeze
    g = G(14); x = g.input("x", [6, 5])
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    y1, _, _ = g.op("LSTM", [t, *_rnn_weights(g, 4, 1, 4, 5)], n_out=3, hidden_size=4)
    s1 = g.op("Squeeze", [y1, g.ints([1])])
    y2, h2, c2 = g.op("LSTM", [s1, *_rnn_weights(g, 4, 1, 4, 4)], n_out=3, hidden_size=4)
    g.output(g.op("Transpose", [g.op("Squeeze", [y2, g.ints([1])])], perm=[1, 0, 2]), "y")
    g.output(g.op("Transpose", [c2], perm=[1, 0, 2]), "c"); return g


@case("lstm_bidirectional_torch_o14")
def _():  # nn.LSTM(3, 4, bidirectional=True, batch_first=True) with (h0, c0) given: Y's two directions joined
    g = G(14); x = g.input("x", [5, 3]); h0 = g.input("h0", [2, 4], -1, 1); c0 = g.input("c0", [2, 4], -1, 1)
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    h = g.op("Transpose", [h0], perm=[1, 0, 2]); c = g.op("Transpose", [c0], perm=[1, 0, 2])
    y, yh, _ = g.op("LSTM", [t, *_rnn_weights(g, 4, 2, 4, 3), "", h, c], n_out=3, hidden_size=4, direction="bidirectional")
    yt = g.op("Transpose", [y], perm=[2, 0, 1, 3])                      # [N, seq, 2, 4]
    g.output(g.op("Reshape", [yt, g.ints([0, 0, 8])]), "y")
    g.output(g.op("Transpose", [yh], perm=[1, 0, 2]), "h"); return g


@case("lstm_peepholes_clip_reverse_o14")
def _():  # onnxruntime runs layout 0 only: batch-first data through Transposes (the Swift tests cover layout 1)
    g = G(14); x = g.input("x", [4, 3]); c0 = g.input("c0", [1, 5], -1, 1)
    w, r, b = _rnn_weights(g, 4, 1, 5, 3)
    t = g.op("Transpose", [x], perm=[1, 0, 2]); c = g.op("Transpose", [c0], perm=[1, 0, 2])
    y, yh, yc = g.op("LSTM", [t, w, r, b, "", "", c, g.w(1, 15, lo=-.5, hi=.5)], n_out=3, hidden_size=5,
                     direction="reverse", clip=0.8)
    g.output(g.op("Transpose", [y], perm=[2, 0, 1, 3]), "y")
    g.output(g.op("Transpose", [yh], perm=[1, 0, 2]), "h"); g.output(g.op("Transpose", [yc], perm=[1, 0, 2]), "c"); return g


@case("lstm_input_forget_hardsigmoid_o14")
def _():
    g = G(14); x = g.input("x", [3, 2])
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    y = g.op("LSTM", [t, *_rnn_weights(g, 4, 1, 3, 2)], hidden_size=3, input_forget=1,
             activations=["HardSigmoid", "Tanh", "Softsign"], activation_alpha=[0.3], activation_beta=[0.6])
    g.output(g.op("Transpose", [y], perm=[2, 0, 1, 3]), "y"); return g


@case("gru_torch_batch_first_o14")
def _():  # nn.GRU(4, 6, batch_first=True): linear_before_reset=1
    g = G(14); x = g.input("x", [5, 4])
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    y, yh = g.op("GRU", [t, *_rnn_weights(g, 3, 1, 6, 4)], n_out=2, hidden_size=6, linear_before_reset=1)
    g.output(g.op("Transpose", [g.op("Squeeze", [y, g.ints([1])])], perm=[1, 0, 2]), "y")
    g.output(g.op("Transpose", [yh], perm=[1, 0, 2]), "h"); return g


@case("gru_bidirectional_initial_h_o14")
def _():
    g = G(14); x = g.input("x", [4, 3]); h0 = g.input("h0", [2, 5], -1, 1)
    t = g.op("Transpose", [x], perm=[1, 0, 2]); h = g.op("Transpose", [h0], perm=[1, 0, 2])
    y, yh = g.op("GRU", [t, *_rnn_weights(g, 3, 2, 5, 3), "", h], n_out=2, hidden_size=5,
                 direction="bidirectional", linear_before_reset=1)
    g.output(g.op("Transpose", [y], perm=[2, 0, 1, 3]), "y"); g.output(g.op("Transpose", [yh], perm=[1, 0, 2]), "h"); return g


@case("gru_reset_before_clip_reverse_o14")
def _():  # linear_before_reset=0 (ONNX's default), no B, clip, reverse
    g = G(14); x = g.input("x", [3, 4])
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    y = g.op("GRU", [t, *_rnn_weights(g, 3, 1, 4, 4, bias=False)], hidden_size=4, direction="reverse", clip=0.9)
    g.output(g.op("Transpose", [y], perm=[2, 0, 1, 3]), "y"); return g


@case("rnn_relu_bidirectional_o14")
def _():
    g = G(14); x = g.input("x", [4, 3])
    t = g.op("Transpose", [x], perm=[1, 0, 2])
    y, yh = g.op("RNN", [t, *_rnn_weights(g, 1, 2, 5, 3)], n_out=2, hidden_size=5,
                 direction="bidirectional", activations=["Relu", "Tanh"])
    g.output(g.op("Transpose", [y], perm=[2, 0, 1, 3]), "y"); g.output(g.op("Transpose", [yh], perm=[1, 0, 2]), "h"); return g


# ---- family torch: Trilu (the causal mask of torch's attention exports) ------------------------------------
@case("trilu_lower_k1_o14")
def _():
    g = G(14); x = g.input("x", [2, 4, 5])
    g.output(g.op("Trilu", [x, g.ints(1)], upper=0), "y"); return g

@case("trilu_upper_weight_o14")
def _():  # an upper-triangular weight (default upper=1, no k) times the input: Trilu on a parameter
    g = G(14); x = g.input("x", [4, 5])
    g.output(g.op("Mul", [x, g.op("Trilu", [g.w(4, 5)])]), "y"); return g

@case("trilu_upper_negk_o14")
def _():
    g = G(14); x = g.input("x", [3, 5, 4])
    g.output(g.op("Trilu", [x, g.ints(-2)]), "y"); return g


# =====================================================================================================
# Running a case
# =====================================================================================================
def to_inloop_order(lib, m, names, arrays_by_name, what="input"):
    """Orders arrays by the model's own input indices, found through input_index(name)."""
    n = lib.count(m, what)
    if n != len(names):
        raise CallFailed(f"model reports {n} {what}s, the ONNX graph has {len(names)}")
    order = [None] * n
    for nm in names:
        i = lib.index(m, what, nm)
        if not 0 <= i < n or order[i] is not None:
            raise CallFailed(f"{what}_index('{nm}') = {i}")
        if lib.name(m, what, i) != nm:
            raise CallFailed(f"{what}_name({i}) = '{lib.name(m, what, i)}', expected '{nm}'")
        order[i] = nm
    return order


def compare(got, ref, tol=TOL):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {list(got.shape)} vs reference {list(ref.shape)}"
    if got.size == 0:
        return None
    if np.isnan(got).any() and not np.isnan(ref).any():
        i = np.unravel_index(np.argmax(np.isnan(got)), got.shape)
        return f"NaN (unwritten?) at {tuple(int(v) for v in i)}, expected {ref[i]:.7g}"
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    d = np.abs(got - ref)
    err = float(np.max(d)) / scale
    if err <= tol:
        return None
    i = np.unravel_index(np.argmax(d), d.shape)
    return (f"max rel err {err:.2e} at {tuple(int(v) for v in i)}: got {got[i]:.7g}, expected {ref[i]:.7g} "
            f"({int(np.sum(d > tol * scale))} of {d.size} values off)")


def check_model_file(lib, path, in_specs, out_names, refs, feeds, tol=TOL):
    """Loads path in InLoop, checks shapes, runs every batch of feeds; returns a list of problems."""
    problems = []
    st, m = lib.load(path)
    if st != 0:
        return [f"load -> {st} ({lib.status(st)}): {lib.error()}"]
    try:
        in_names = [n for n, _ in in_specs]
        order = to_inloop_order(lib, m, in_names, None, "input")
        out_order = to_inloop_order(lib, m, out_names, None, "output")
        spec = dict(in_specs)
        for i, nm in enumerate(order):
            got = per_sample(lib.shape(m, "input", i), len(spec[nm]))
            if got != list(spec[nm]):
                problems.append(f"input '{nm}' shape {lib.shape(m, 'input', i)}, ONNX per-sample {spec[nm]}")
        ref0 = refs[0]
        out_ps = []
        for i, nm in enumerate(out_order):
            expect = list(ref0[out_names.index(nm)].shape[1:])
            got = per_sample(lib.shape(m, "output", i), len(expect))
            out_ps.append(got)
            if got != expect:
                problems.append(f"output '{nm}' shape {lib.shape(m, 'output', i)}, onnxruntime per-sample {expect}")
        if problems:
            return problems
        results = {}
        for feed, ref in zip(feeds, refs):
            b = next(iter(feed.values())).shape[0]
            ys = lib.run(m, [feed[n] for n in order], out_ps)
            results[b] = ys
            for i, nm in enumerate(out_order):
                p = compare(ys[i], ref[out_names.index(nm)], tol)
                if p:
                    problems.append(f"batch {b}, output '{nm}': {p}")
        # back to the first batch size after another: the per-batch plans must not interfere, and
        # a rerun is bitwise the same
        b0 = next(iter(feeds[0].values())).shape[0]
        ys = lib.run(m, [feeds[0][n] for n in order], out_ps)
        for y0, y1 in zip(results[b0], ys):
            if not np.array_equal(y0, y1, equal_nan=True):
                problems.append(f"batch {b0} run again after batch {max(results)} differs "
                                f"(max |d| {float(np.nanmax(np.abs(y0 - y1))):.3g})")
                break
        if not problems and len(order) == 1 and len(out_order) == 1:
            problems += check_saved_fine_tune(lib, m, feeds[-1][order[0]], out_ps[0])
    except (CallFailed, LibMissing) as e:
        problems.append(str(e))
    finally:
        lib.fn("inloop_model_free")(m)
    return problems


def check_saved_fine_tune(lib, m, x, out_ps, dtype=np.float32, strict=False, losses=None):
    """Fine-tune 10 steps (defaults: Adam, MSE, the model's precision) toward zeros, save the model
    (native version 2 for a graph, 1 for a layer stack), load it back: its outputs must be bitwise
    those of the trainer's in-memory model. Models the trainer does not take (several inputs) are left
    out, unless strict (then a trainer that cannot be made or a step that fails is a problem). dtype
    picks the _f32 or _f64 step and run entry points; a float64 model is trained with no configuration
    at all, so the default precision (the model's: float64, which its Cast nodes need) is what is
    tested; losses (a list) receives the 10 losses."""
    PF = C.POINTER(C.c_float if dtype == np.float32 else C.c_double)
    VP = C.c_void_p
    t = VP()
    config = None
    if lib.fn("inloop_trainer_create_from_model")(m, config, C.byref(t)) != 0:
        return [f"trainer_create_from_model failed: {lib.error()}"] if strict else []
    problems = []
    handles = []
    try:
        x = np.ascontiguousarray(x, dtype)
        b = x.shape[0]
        y = np.zeros([b] + list(out_ps), dtype)
        loss = C.c_double()
        step = lib.fn("inloop_trainer_step_f32" if dtype == np.float32 else "inloop_trainer_step_f64")
        for _ in range(10):
            st = step(t, x.ctypes.data_as(PF), y.ctypes.data_as(PF), C.c_int64(b), C.byref(loss))
            if st != 0:   # e.g. a fixed batch the feed does not match
                return [f"trainer step -> {lib.status(st)}: {lib.error()}"] if strict else []
            if losses is not None:
                losses.append(loss.value)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tuned.safetensors").encode()
            st = lib.fn("inloop_trainer_save_model")(t, path)
            if st != 0:
                return [] if st == 7 else [f"save_model -> {lib.status(st)}: {lib.error()}"]   # 7: UNSUPPORTED
            mem = VP()
            if lib.fn("inloop_trainer_copy_model")(t, C.byref(mem)) != 0:
                return [f"trainer_copy_model failed: {lib.error()}"]
            handles.append(mem)
            st, back = lib.load(path.decode())
            if st != 0:
                return [f"the saved fine-tuned model does not load: {lib.status(st)}: {lib.error()}"]
            handles.append(back)
            y1 = lib.run(mem, [x], [list(out_ps)], dtype)[0]
            y2 = lib.run(back, [x], [list(out_ps)], dtype)[0]
            if not np.array_equal(y1, y2, equal_nan=True):
                problems.append(f"fine-tuned, saved and loaded: outputs differ from the in-memory model "
                                f"(max |d| {float(np.nanmax(np.abs(y1 - y2))):.3g})")
    finally:
        for h in handles:
            lib.fn("inloop_model_free")(h)
        lib.fn("inloop_trainer_free")(t)
    return problems


def check_via_cli(cli, path, in_specs, out_names, refs, feeds, tol=TOL):
    """As check_model_file, through `inloop run` with .npy files (a development aid: --via-cli)."""
    problems = []
    with tempfile.TemporaryDirectory() as d:
        for feed, ref in zip(feeds, refs):
            b = next(iter(feed.values())).shape[0]
            args = [cli, "run", path]
            for n, _ in in_specs:
                f = os.path.join(d, f"in_{n}.npy")
                np.save(f, feed[n])
                args += ["--input", f"{n}={f}"]
            for k, n in enumerate(out_names):
                args += ["--output", f"{n}={os.path.join(d, f'out_{k}.npy')}"]
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                return [p.stdout.strip()]
            for k, n in enumerate(out_names):
                q = compare(np.load(os.path.join(d, f"out_{k}.npy")), ref[k], tol)
                if q:
                    problems.append(f"batch {b}, output '{n}': {q}")
    return problems


def reference(model_bytes, feeds):
    sess = ort_session(model_bytes)
    return [sess.run(None, f) for f in feeds], [o.name for o in sess.get_outputs()]


def prepare_case(name, keep):
    """Builds a case; returns (path, input specs, output names, feeds, refs, opts)."""
    fn, opts = CASES[name]
    g = fn()
    m = finish(g)
    if getattr(g, "extra_weight_inputs", False):
        for t in g.inits:
            m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    data = m.SerializeToString()
    path = os.path.join(keep, name + ".onnx")
    with open(path, "wb") as f:
        f.write(data)
    feeds = [inputs_for(g.inputs, g.ranges, b, seed=b) for b in BATCHES]
    refs, out_names = reference(data, feeds)
    return path, g.inputs, out_names, feeds, refs, opts


# =====================================================================================================
# Process isolation
# =====================================================================================================
def isolated(fn, timeout=600):
    """Runs fn() in a forked child; returns its result (JSON-able) or raises RuntimeError on a crash
    or timeout."""
    sys.stdout.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = {"ok": fn()}
        except BaseException as e:  # noqa: BLE001
            res = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"}
        data = json.dumps(res).encode()
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    chunks, deadline = [], time.time() + timeout
    with os.fdopen(r, "rb") as f:
        while True:
            left = deadline - time.time()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise RuntimeError(f"timed out after {timeout} s")
            ready, _, _ = select.select([f], [], [], left)
            if ready:
                c = os.read(f.fileno(), 1 << 16)
                if not c:
                    break
                chunks.append(c)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise RuntimeError(f"crashed with signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})")
    res = json.loads(b"".join(chunks) or b"{}")
    if "error" in res:
        raise RuntimeError(res["error"])
    if "ok" not in res:
        raise RuntimeError(f"child exited with status {os.WEXITSTATUS(status)} without a result")
    return res["ok"]


# =====================================================================================================
# Reporter
# =====================================================================================================
class Report:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def ok(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            detail = " ".join(str(detail).split())
            self.failures.append((name, detail))
            print(f"FAIL {name}: {detail}", flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)


# =====================================================================================================
# Sections
# =====================================================================================================
def wanted(only, label):
    """-k filters: a check runs when a filter is part of its label, or names the label's section."""
    return not only or any(o in label or o.split("/")[0] == label.split("/")[0] for o in only)


def run_cases(lib_path, rep, keep, only, via_cli=None):
    for name in CASES:
        if not wanted(only, name):
            continue
        try:
            path, in_specs, out_names, feeds, refs, opts = prepare_case(name, keep)
        except Exception as e:  # a bug of this script, not of InLoop
            rep.ok(name, False, f"building the model or the onnxruntime reference failed: {e!r}")
            continue

        def child():
            if via_cli:
                return check_via_cli(via_cli, path, in_specs, out_names, refs, feeds)
            return check_model_file(InLoop(lib_path), path, in_specs, out_names, refs, feeds)
        try:
            problems = isolated(child)
        except RuntimeError as e:
            problems = [str(e)]
        if opts.get("group_case") and problems and len(problems) == 1 and problems[0].startswith("load ->"):
            # refusing at load is allowed here, when the message names the attribute
            msg = problems[0]
            rep.ok(name, "group" in msg and "UNSUPPORTED" in msg, f"refused, but not clearly: {msg}")
            continue
        rep.ok(name, not problems, "; ".join(problems) + f" [model: {os.path.relpath(path, ROOT)}]")


# ---- full shapes (ENGINE.md §6.1): models outside the batch convenience --------------------------
def shaped_model(nodes, inputs, outputs, inits=()):
    """inputs/outputs: (name, shape with str symbols); float32; opset 17."""
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "shaped", [helper.make_tensor_value_info(n, f, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, f, s) for n, s in outputs], initializer=list(inits))
    m = helper.make_model(graph, producer_name="inloop-conformance", opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


SHAPED_CASES = {
    # a rank-1 input without batch axis (a land-sea mask) in a batched model
    "shaped/mask_rank1": (lambda: shaped_model(
        [helper.make_node("Mul", ["x", "mask"], ["y"])], [("x", ["N", 4]), ("mask", [4])], [("y", ["N", 4])]),
        [[(1, 4), (4,)], [(7, 4), (4,)]]),
    # a scalar input
    "shaped/scalar_input": (lambda: shaped_model(
        [helper.make_node("Mul", ["x", "s"], ["xs"]), helper.make_node("Add", ["xs", "x"], ["y"])],
        [("x", ["N", 3]), ("s", [])], [("y", ["N", 3])]),
        [[(1, 3), ()], [(7, 3), ()]]),
    # outputs without batch axis: x^T x (a transpose that moves the batch, a product over it)
    "shaped/gram_over_batch": (lambda: shaped_model(
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]), helper.make_node("MatMul", ["xt", "x"], ["y"])],
        [("x", ["N", 3])], [("xt", [3, "N"]), ("y", [3, 3])]),
        [[(1, 3)], [(7, 3)]]),
    # two symbols, one shared by two inputs
    "shaped/two_symbols": (lambda: shaped_model(
        [helper.make_node("Add", ["x", "lev"], ["y"])], [("x", ["N", "T", 3]), ("lev", ["T", 1])],
        [("y", ["N", "T", 3])]),
        [[(2, 5, 3), (5, 1)], [(7, 1, 3), (1, 1)]]),
    # static inputs with different leading dimensions (as ONNX's node tests)
    "shaped/static_broadcast": (lambda: shaped_model(
        [helper.make_node("Sub", ["a", "b"], ["y"])], [("a", [3, 4, 5]), ("b", [5])], [("y", [3, 4, 5])]),
        [[(3, 4, 5), (5,)]]),
}


def run_shaped_model(lib, m, xs, n_out):
    """inloop_model_run_shaped_f32 on the arrays xs; returns the outputs with their reported shapes."""
    PF = C.POINTER(C.c_float)
    xs = [np.array(x, dtype=np.float32, order="C") for x in xs]   # 0-d stays 0-d
    ranks = (C.c_int64 * len(xs))(*[x.ndim for x in xs])
    flat = [d for x in xs for d in x.shape]
    dims = (C.c_int64 * max(1, len(flat)))(*flat)
    orank = (C.c_int64 * n_out)()
    odims = (C.c_int64 * (8 * n_out))()
    I = C.c_int64
    lib.call("inloop_model_output_shapes", m, I(len(xs)), ranks, dims, I(n_out), orank, odims, I(8 * n_out))
    shapes, at = [], 0
    for k in range(n_out):
        shapes.append(tuple(odims[at:at + orank[k]]))
        at += orank[k]
    ys = [np.full(s, np.nan, np.float32) for s in shapes]
    caps = (C.c_int64 * n_out)(*[y.size for y in ys])
    xp = (PF * len(xs))(*[x.ctypes.data_as(PF) for x in xs])
    yp = (PF * n_out)(*[y.ctypes.data_as(PF) for y in ys])
    orank2 = (C.c_int64 * n_out)()
    odims2 = (C.c_int64 * (8 * n_out))()
    lib.call("inloop_model_run_shaped_f32", m, I(len(xs)), ranks, dims, xp, I(n_out), caps, yp, orank2, odims2, I(8 * n_out))
    if list(orank2) != list(orank) or list(odims2) != list(odims):
        raise CallFailed(f"run_shaped reported shapes {list(orank2)} {list(odims2)}, output_shapes {list(orank)} {list(odims)}")
    return ys


def run_shaped_cases(lib_path, rep, keep, only):
    for name, (build, size_sets) in SHAPED_CASES.items():
        if not wanted(only, name):
            continue
        data = build()
        path = os.path.join(keep, name.replace("/", "_") + ".onnx")
        with open(path, "wb") as f:
            f.write(data)
        sess = ort_session(data)
        in_names = [i.name for i in sess.get_inputs()]
        rng = np.random.default_rng(11)
        feeds = [[np.array(rng.uniform(-2, 2, s), dtype=np.float32) for s in sizes] for sizes in size_sets]
        refs = [sess.run(None, dict(zip(in_names, xs))) for xs in feeds]

        def child():
            lib = InLoop(lib_path)
            st, m = lib.load(path)
            if st != 0:
                return [f"load -> {lib.status(st)}: {lib.error()}"]
            problems = []
            for xs, ref in zip(feeds, refs):
                try:
                    ys = run_shaped_model(lib, m, xs, len(ref))
                except CallFailed as e:
                    problems.append(str(e))
                    continue
                for k, (y, r) in enumerate(zip(ys, ref)):
                    p = compare(y, r)
                    if p:
                        problems.append(f"output {k} at {[x.shape for x in xs]}: {p}")
            lib.fn("inloop_model_free")(m)
            return problems
        try:
            problems = isolated(child)
        except RuntimeError as e:
            problems = [str(e)]
        rep.ok(name, not problems, "; ".join(problems) + f" [model: {os.path.relpath(path, ROOT)}]")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64}[v["dtype"]]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=dt).reshape(v["shape"])
    return out


SHARED_MODELS = ["l96", "column_mlp", "column_mlp_small", "column_conv1d", "cnn2d"]


def run_shared(lib_path, rep, shared, only):
    for name in SHARED_MODELS:
        label = f"shared/{name}"
        if not wanted(only, label):
            continue
        path = os.path.join(shared, name + ".onnx")
        if not os.path.exists(path):
            rep.skip(label, f"{path} not found")
            continue
        with open(path, "rb") as f:
            data = f.read()
        mp = onnx.load_from_string(data)
        inits = {t.name for t in mp.graph.initializer}
        in_specs = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim][1:])
                    for i in mp.graph.input if i.name not in inits]
        io = read_safetensors(os.path.join(shared, name + ".io.safetensors"))
        x = io["x"].astype(np.float32)
        feeds = [{in_specs[0][0]: x[:1]}, {in_specs[0][0]: x[:7]}, {in_specs[0][0]: x}]
        refs, out_names = reference(data, feeds)

        def child():
            lib = InLoop(lib_path)
            problems = check_model_file(lib, path, in_specs, out_names, refs, feeds)
            # the stored references: y_ref (float32 forward) and y_ref_f64
            st, m = lib.load(path)
            if st == 0:
                try:
                    n_out = C.c_int64()
                    lib.call("inloop_model_output_size", m, C.byref(n_out))
                    y = np.full((x.shape[0], n_out.value), np.nan, np.float32)
                    PF = C.POINTER(C.c_float)
                    lib.call("inloop_model_forward_f32", m, np.ascontiguousarray(x).ctypes.data_as(PF), x.shape[0],
                             y.ctypes.data_as(PF))
                    for key in ("y_ref", "y_ref_f64"):
                        p = compare(y, io[key].reshape(y.shape))
                        if p:
                            problems.append(f"forward_f32 vs {key}: {p}")
                    if lib.has("inloop_model_run_f64"):
                        ys = lib.run(m, [x.astype(np.float64)], [list(io["y_ref"].shape[1:])], dtype=np.float64)
                        p = compare(ys[0], io["y_ref_f64"])
                        if p:
                            problems.append(f"run_f64 vs y_ref_f64: {p}")
                except CallFailed as e:
                    problems.append(str(e))
                finally:
                    lib.fn("inloop_model_free")(m)
            return problems
        try:
            problems = isolated(child)
        except RuntimeError as e:
            problems = [str(e)]
        rep.ok(label, not problems, "; ".join(problems))


def bad_graph(nodes, inits=(), inputs=(("x", [4]),), outputs=("y",), opset=13):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s]) for n, s in inputs]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(nodes, "bad", ins, outs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def bad_files(shared, keep):
    """(name, bytes, substrings the message must contain (case-insensitive), allowed statuses)."""
    rng = np.random.default_rng(3)
    good = None
    p = os.path.join(shared, "column_mlp.onnx")
    if os.path.exists(p):
        with open(p, "rb") as f:
            good = f.read()
    else:
        g = mlp(13)()
        good = finish(g).SerializeToString()
    out = []
    out.append(("truncated_protobuf_half", good[:len(good) // 2], [], None))
    out.append(("truncated_protobuf_header", good[:7], [], None))
    out.append(("wrong_magic_random_bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), [], None))
    out.append(("empty_file", b"", [], None))
    W = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    out.append(("cycle", bad_graph([
        helper.make_node("Add", ["x", "b_out"], ["a_out"], name="node_a"),
        helper.make_node("Relu", ["a_out"], ["b_out"], name="node_b"),
        helper.make_node("Identity", ["a_out"], ["y"], name="node_c")]), ["cycle"], None))
    out.append(("unknown_op", bad_graph([
        helper.make_node("Relu", ["x"], ["h"], name="first_relu"),
        helper.make_node("FancyOp", ["h"], ["y"], name="fancy_node")]), ["FancyOp", "fancy_node"], [7]))
    out.append(("unknown_op_custom_domain", bad_graph([
        helper.make_node("FusedGemm", ["x", "W"], ["y"], name="ms_node", domain="com.microsoft")], [W]),
        ["FusedGemm", "ms_node"], [7]))
    bad = numpy_helper.from_array(np.ones((5, 4), np.float32), "Wbad")
    bad.raw_data = bad.raw_data[:-4]  # 19 floats for a [5, 4] tensor
    out.append(("raw_data_length_mismatch", bad_graph([
        helper.make_node("Gemm", ["x", "Wbad"], ["y"], name="gemm", transB=1)], [bad]), ["Wbad"], [6]))
    typed = helper.make_tensor("Wtyped", TensorProto.FLOAT, [5, 4], [1.0] * 20)
    del typed.float_data[-1]  # 19 floats in float_data for a [5, 4] tensor
    out.append(("typed_data_length_mismatch", bad_graph([
        helper.make_node("Gemm", ["x", "Wtyped"], ["y"], name="gemm", transB=1)], [typed]), ["Wtyped"], [6]))
    ext = TensorProto(name="Wext", data_type=TensorProto.FLOAT, dims=[5, 4])
    ext.data_location = TensorProto.EXTERNAL
    e = ext.external_data.add(); e.key = "location"; e.value = "weights.bin"
    # from a file: the data file is missing (IO); from a buffer: refused (UNSUPPORTED)
    out.append(("external_data_missing", bad_graph([
        helper.make_node("Gemm", ["x", "Wext"], ["y"], name="gemm", transB=1)], [ext]), ["external", "weights.bin"], [5, 7]))
    out.append(("undefined_tensor", bad_graph([
        helper.make_node("Add", ["x", "nowhere"], ["y"], name="add_node")]), ["nowhere"], [6]))
    out.append(("gemm_shape_mismatch", bad_graph([
        helper.make_node("Gemm", ["x", "W"], ["y"], name="gemm_node", transB=1)], [W], inputs=(("x", [5]),)),
        ["gemm_node"], [6]))
    # Reshape's shape from an int64 graph input: a runtime integer tensor
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])]
    gph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_node")], "bad", ins,
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    mdl = helper.make_model(gph, opset_imports=[helper.make_opsetid("", 13)]); mdl.ir_version = 8
    out.append(("runtime_integer_shape", mdl.SerializeToString(), [], [6, 7]))
    out.append(("no_graph_output", bad_graph([helper.make_node("Relu", ["x"], ["h"], name="r")], outputs=()), [], None))
    for name, data, _, _ in out:
        with open(os.path.join(keep, "bad_" + name + ".onnx"), "wb") as f:
            f.write(data)
    return out


def run_bad(lib_path, rep, shared, keep, only):
    for name, data, needles, statuses in bad_files(shared, keep):
        label = f"bad/{name}"
        if not wanted(only, label):
            continue
        path = os.path.join(keep, "bad_" + name + ".onnx")

        def child():
            lib = InLoop(lib_path)
            res = []
            for how in ("file", "buffer"):
                if how == "file":
                    st, m = lib.load(path)
                else:
                    st, m = lib.load_buffer(data)
                msg = lib.error()
                plain = msg.replace(path, "<path>")  # the needles must be in the message, not the file name
                if st == 0:
                    lib.fn("inloop_model_free")(m)
                    res.append(f"{how}: loaded (status 0), expected an error")
                    continue
                if m.value:
                    res.append(f"{how}: handle not NULL on error")
                if not msg.strip():
                    res.append(f"{how}: status {st} but empty inloop_last_error()")
                miss = [s for s in needles if s.lower() not in plain.lower()]
                if miss:
                    res.append(f"{how}: message lacks {miss}: {msg!r}")
                if statuses and st not in statuses:
                    res.append(f"{how}: status {st} ({lib.status(st)}), expected one of {statuses}: {msg!r}")
                if st == 11:
                    res.append(f"{how}: INTERNAL error: {msg!r}")
            return res, lib.error()
        try:
            problems, msg = isolated(child)
        except RuntimeError as e:
            problems, msg = [str(e)], ""
        rep.ok(label, not problems, "; ".join(problems))
        if not problems and os.environ.get("CONFORMANCE_VERBOSE"):
            print(f"     message: {msg}")


def run_external_data(lib_path, rep, keep, only):
    """ONNX external data as onnx.save(..., save_as_external_data=True) writes it (and
    torch.onnx.export(dynamo=True) by default): model.onnx + model.onnx.data in one directory, loaded
    by path from another working directory and compared with onnxruntime (which reads the same files);
    from a buffer it is refused with a message naming inloop_model_load."""
    label = "external_data"
    if not wanted(only, label):
        return
    d = os.path.join(keep, "external_data")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    g = G(17, seed=11); x = g.input("x", [3, 6, 6])
    h = g.op("Relu", [g.op("Conv", [x, g.w(5, 3, 3, 3), g.w(5, scale=0.1)], pads=[1, 1, 1, 1])])
    h = g.op("Flatten", [g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])], axis=1)
    g.output(g.op("Gemm", [h, g.w(4, 45), g.w(4, scale=0.1)], transB=1), "y")
    m = finish(g)
    path = os.path.join(d, "ext_model.onnx")
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext_model.onnx.data",
              size_threshold=0)
    stored = onnx.load(path, load_external_data=False)
    n_ext = sum(1 for t in stored.graph.initializer if t.data_location == TensorProto.EXTERNAL)
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {b: inputs_for(g.inputs, g.ranges, b, 100 + b) for b in BATCHES}
    refs = {b: sess.run(None, feeds[b])[0] for b in BATCHES}
    with open(path, "rb") as f:
        model_bytes = f.read()

    def child():
        os.chdir(keep)   # the data file is found beside the model, not in the working directory
        lib = InLoop(lib_path)
        res = []
        st, mh = lib.load(os.path.join("external_data", "ext_model.onnx"))
        if st != 0:
            return [f"load: status {st}: {lib.error()}"]
        for b in BATCHES:
            y = lib.run(mh, [feeds[b]["x"]], [lib.shape(mh, "output", 0)])[0]
            p = compare(y, refs[b])
            if p:
                res.append(f"batch {b}: {p}")
        lib.fn("inloop_model_free")(mh)
        st, mh = lib.load_buffer(model_bytes)
        msg = lib.error()
        if st != 7 or "inloop_model_load" not in msg:
            res.append(f"load_buffer: status {st}, expected 7 (UNSUPPORTED) naming inloop_model_load: {msg!r}")
        if st == 0:
            lib.fn("inloop_model_free")(mh)
        return res
    try:
        problems = isolated(child)
    except RuntimeError as e:
        problems = [str(e)]
    if n_ext < 4:
        problems.append(f"only {n_ext} initializers stored externally")
    rep.ok(f"{label}/onnx.save external data vs onnxruntime, batches {BATCHES}", not problems, "; ".join(problems))


def run_runtime_errors(lib_path, rep, keep, only):
    """Wrong arguments at run time on good models: non-OK status, a message, outputs untouched."""
    label = "runtime_errors"
    if not wanted(only, label):
        return
    path_single, _, _, _, _, _ = prepare_case("conv1d_pad_o13", keep)
    path_multi, _, _, _, _, _ = prepare_case("multi_io_o13", keep)

    def child():
        lib = InLoop(lib_path)
        PF = C.POINTER(C.c_float)
        results = []

        def expect_fail(what, st, ys=()):
            msg = lib.error()
            ok = st != 0 and bool(msg.strip()) and st != 11
            untouched = all(np.all(y == 12345.0) for y in ys)
            results.append((what, ok and untouched,
                            f"status {st} ({lib.status(st)}), message {msg!r}" + ("" if untouched else ", output written")))

        st, m = lib.load(path_single)
        if st != 0:
            return [("load", False, lib.error())]
        x = np.ones((3, 4, 20), np.float32)
        y = np.full((3, 6, 20), 12345.0, np.float32)
        xp = (PF * 1)(x.ctypes.data_as(PF))
        yp = (PF * 1)(y.ctypes.data_as(PF))
        run = lib.fn("inloop_model_run_f32")
        results.append(("good call", run(m, 3, 1, xp, 1, yp) == 0, lib.error()))
        y[...] = 12345.0
        expect_fail("batch 0", run(m, 0, 1, xp, 1, yp), [y])
        expect_fail("batch -1", run(m, -1, 1, xp, 1, yp), [y])
        x2 = (PF * 2)(x.ctypes.data_as(PF), x.ctypes.data_as(PF))
        expect_fail("2 inputs for a 1-input model", run(m, 3, 2, x2, 1, yp), [y])
        expect_fail("0 inputs", run(m, 3, 0, xp, 1, yp), [y])
        y2 = (PF * 2)(y.ctypes.data_as(PF), y.ctypes.data_as(PF))
        expect_fail("2 outputs for a 1-output model", run(m, 3, 1, xp, 2, y2), [y])
        expect_fail("NULL inputs array", run(m, 3, 1, None, 1, yp), [y])
        expect_fail("NULL input pointer", run(m, 3, 1, (PF * 1)(), 1, yp), [y])
        expect_fail("NULL output pointer", run(m, 3, 1, xp, 1, (PF * 1)()))
        fs = lib.fn("inloop_model_forward_sized_f32")
        expect_fail("forward_sized_f32 with 79 values per sample (model takes 4x20)",
                    fs(m, x.ctypes.data_as(PF), 79, 3, y.ctypes.data_as(PF), 120), [y])
        expect_fail("forward_sized_f32 with room for 119 outputs per sample (model gives 6x20)",
                    fs(m, x.ctypes.data_as(PF), 80, 3, y.ctypes.data_as(PF), 119), [y])
        r = C.c_int64()
        expect_fail("input_rank of index 1 (out of range)", lib.fn("inloop_model_input_rank")(m, 1, C.byref(r)))
        expect_fail("input_index of an unknown name", lib.fn("inloop_model_input_index")(m, b"nope", C.byref(r)))
        dims = (C.c_int64 * 1)()
        expect_fail("input_shape with room for 1 dim (rank 2 or 3)",
                    lib.fn("inloop_model_input_shape")(m, 0, dims, 1))
        lib.fn("inloop_model_free")(m)
        expect_fail("run on a freed handle", run(m, 3, 1, xp, 1, yp), [y])

        st, m = lib.load(path_multi)
        if st != 0:
            return results + [("load multi", False, lib.error())]
        b = np.ones((2, 3, 4), np.float32); a = np.ones((2, 5), np.float32)
        ia, ib = lib.index(m, "input", "a"), lib.index(m, "input", "b")
        xs = [None, None]; xs[ia] = a; xs[ib] = b
        o1 = lib.index(m, "output", "y_dense")
        outs = [np.full((2, 6), 12345.0, np.float32), np.full((2, 3, 4), 12345.0, np.float32)]
        if o1 == 1:
            outs.reverse()
        xp = (PF * 2)(*[v.ctypes.data_as(PF) for v in xs])
        yp = (PF * 2)(*[v.ctypes.data_as(PF) for v in outs])
        results.append(("multi-io good call", run(m, 2, 2, xp, 2, yp) == 0, lib.error()))
        for o in outs:
            o[...] = 12345.0
        expect_fail("multi-io: 1 input of 2", run(m, 2, 1, xp, 2, yp), outs)
        expect_fail("multi-io: 1 output of 2", run(m, 2, 2, xp, 1, yp), outs)
        expect_fail("multi-io: legacy forward_f32 on a 2-input model",
                    lib.fn("inloop_model_forward_f32")(m, a.ctypes.data_as(PF), 2, outs[0].ctypes.data_as(PF)), outs)
        lib.fn("inloop_model_free")(m)
        return results
    try:
        results = isolated(child)
    except RuntimeError as e:
        results = [("runtime checks", False, str(e))]
    for what, ok, detail in results:
        rep.ok(f"{label}/{what}", ok, detail)


def run_format_dispatch(lib_path, rep, shared, keep, only):
    """inloop_model_load picks the reader by content, not by the file name."""
    label = "dispatch"
    if not wanted(only, label):
        return
    src = os.path.join(shared, "column_mlp_small.onnx")
    if not os.path.exists(src):
        rep.skip(label, f"{src} not found")
        return
    renamed = os.path.join(keep, "onnx_named_as.safetensors")
    shutil.copyfile(src, renamed)
    native = os.path.join(ROOT, "Tests", "fixtures", "mlp_medium.safetensors")
    renamed2 = os.path.join(keep, "safetensors_named_as.onnx")
    shutil.copyfile(native, renamed2)

    def child():
        lib = InLoop(lib_path)
        res = []
        for p in (renamed, renamed2):
            st, m = lib.load(p)
            res.append((os.path.basename(p), st == 0, lib.error()))
            if st == 0:
                lib.fn("inloop_model_free")(m)
        with open(src, "rb") as f:
            st, m = lib.load_buffer(f.read())
        res.append(("load_buffer of .onnx bytes", st == 0, lib.error()))
        if st == 0:
            lib.fn("inloop_model_free")(m)
        return res
    try:
        results = isolated(child)
    except RuntimeError as e:
        results = [("loads", False, str(e))]
    for what, ok, detail in results:
        rep.ok(f"{label}/{what}", ok, detail)


# ---- torch.onnx.export ------------------------------------------------------------------------------------
def run_torch(lib_path, rep, keep, only):
    label = "torch"
    if not wanted(only, label):
        return
    try:
        import torch
        import torch.nn as nn
    except Exception as e:  # noqa: BLE001
        rep.skip("torch/*", f"PyTorch not importable ({type(e).__name__}); real torch.onnx.export models not tested")
        return
    torch.manual_seed(0)

    class Column(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv1d(4, 16, 3, padding=1), nn.Conv1d(16, 16, 3, padding=1), nn.Conv1d(16, 2, 3, padding=1)

        def forward(self, x):
            return self.c3(torch.tanh(self.c2(torch.relu(self.c1(x)))))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(8, 16, 3, padding=1), nn.GELU(), nn.AvgPool2d(2),
                                   nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 4, 1))
            self.h = nn.Sequential(nn.Linear(4 * 8 * 8, 32), nn.SiLU(), nn.Dropout(0.2), nn.Linear(32, 3))

        def forward(self, x):
            y = self.f(x)
            return self.h(y.view(y.size(0), -1))

    # (module, per-sample input shape, opsets). LayerNorm is exported as LayerNormalization from opset 17
    # only (below, as ReduceMean/Pow/Sqrt, operators outside issue 3).
    models = {
        "mlp": (nn.Sequential(nn.Linear(12, 64), nn.LeakyReLU(0.3), nn.Linear(64, 64), nn.ELU(), nn.Dropout(0.1),
                              nn.Linear(64, 64), nn.Softplus(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5)), [12], (13, 17)),
        "mlp_layernorm": (nn.Sequential(nn.Linear(12, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 5)), [12], (17,)),
        "conv1d_column": (Column(), [4, 60], (13, 17)),
        "cnn": (CNN(), [2, 16, 16], (13, 17)),
    }
    import warnings
    for nm, (mod, shape, opsets) in models.items():
        for opset in opsets:
            label = f"torch/{nm}_o{opset}"
            mod.eval()
            path = os.path.join(keep, f"torch_{nm}_o{opset}.onnx")
            try:
                # randomise BatchNorm statistics so the folding is exercised
                for mm in mod.modules():
                    if isinstance(mm, nn.BatchNorm2d):
                        mm.running_mean.uniform_(-0.5, 0.5); mm.running_var.uniform_(0.5, 2.0)
                x = torch.randn(2, *shape)
                kw = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=opset)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        torch.onnx.export(mod, (x,), path, dynamo=False, **kw)
                    except TypeError:
                        torch.onnx.export(mod, (x,), path, **kw)
                with open(path, "rb") as f:
                    data = f.read()
                feeds = [{"x": np.random.default_rng(b).standard_normal((b, *shape)).astype(np.float32)} for b in BATCHES]
                refs, out_names = reference(data, feeds)
                with torch.no_grad():
                    tref = mod(torch.from_numpy(feeds[1]["x"])).numpy()
                p = compare(refs[1][0], tref, 1e-4)
                if p:
                    print(f"   note: {label}: onnxruntime vs PyTorch: {p}")
            except Exception as e:  # noqa: BLE001
                rep.ok(label, False, f"export or onnxruntime reference failed: {e!r}")
                continue
            try:
                problems = isolated(lambda: check_model_file(InLoop(lib_path), path, [("x", shape)], out_names, refs, feeds))
            except RuntimeError as e:
                problems = [str(e)]
            rep.ok(label, not problems, "; ".join(problems) + f" [model: {os.path.relpath(path, ROOT)}]")


# ---- the inloop CLI -----------------------------------------------------------------------------------------
def write_npy(path, a):
    np.save(path, a)


def run_cli(cli, lib_path, rep, shared, keep, only):
    label = "cli"
    if not wanted(only, label):
        return
    if not os.path.exists(cli):
        rep.ok("cli/built", False, f"{cli} not found (swift build -c release --product inloop)")
        return
    env = dict(os.environ)

    def sh(args, timeout=120):
        p = subprocess.run([cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    mlp_path = os.path.join(shared, "column_mlp.onnx")
    if not os.path.exists(mlp_path):
        rep.skip("cli/*", f"{mlp_path} not found")
        return
    # inspect: counts for column_mlp (94 -> 8 x 256 -> 65; Sub, Div, 9 Gemm, 8 LeakyRelu)
    mp = onnx.load(mlp_path)
    counts = {}
    for n in mp.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    params = sum(int(np.prod(t.dims)) for t in mp.graph.initializer)
    code, out, err = sh(["inspect", mlp_path])
    problems = []
    if code != 0:
        problems.append(f"exit {code}: {err.strip()[-500:]}")
    else:
        for op, k in counts.items():
            if not any(line.split()[:2] == [op, str(k)] or
                       (op in line.split() and str(k) in line.replace(":", " ").split()) for line in out.splitlines()):
                problems.append(f"op count '{op} {k}' not printed")
        if f"{params:,}" not in out and str(params) not in out:
            problems.append(f"parameter count {params} not printed")
        if "998912" not in out.replace(",", "").replace("_", ""):
            problems.append("FLOPs per sample 998912 not printed")
        for s in ("x", "y", "94", "65"):
            if s not in out:
                problems.append(f"'{s}' not printed")
    rep.ok("cli/inspect column_mlp prints inputs, outputs, op counts, parameters, FLOPs", not problems,
           "; ".join(problems) + f"\n{out[-1500:]}")
    code, out, err = sh(["inspect", os.path.join(keep, "bad_unknown_op.onnx")])
    rep.ok("cli/inspect of a bad file exits non-zero with the message", code != 0 and "FancyOp" in (out + err),
           f"exit {code}, stderr {err.strip()[-400:]!r}")

    # run: npy in, npy out, against onnxruntime, float32 and float64 inputs, several models
    for model, batch in (("column_mlp", 5), ("column_conv1d", 3), ("cnn2d", 2)):
        path = os.path.join(shared, model + ".onnx")
        data = open(path, "rb").read()
        mp = onnx.load_from_string(data)
        shape = [d.dim_value for d in mp.graph.input[0].type.tensor_type.shape.dim][1:]
        for dt in (np.float32, np.float64):
            x = np.random.default_rng(1).standard_normal((batch, *shape)).astype(dt)
            xin = os.path.join(keep, f"cli_{model}_x.npy")
            yout = os.path.join(keep, f"cli_{model}_y.npy")
            if os.path.exists(yout):
                os.remove(yout)
            np.save(xin, x)
            code, out, err = sh(["run", path, "--input", xin, "--output", yout])
            name = f"cli/run {model} {np.dtype(dt).name} npy round trip matches onnxruntime"
            if code != 0 or not os.path.exists(yout):
                rep.ok(name, False, f"exit {code}: {err.strip()[-500:]}")
                continue
            y = np.load(yout)
            ref = ort_session(data).run(None, {"x": x.astype(np.float32)})[0]
            p = compare(y, ref)
            rep.ok(name, p is None and y.dtype == np.dtype(dt), (p or "") + f" (output dtype {y.dtype})")
    # run with a Fortran-ordered array and with a wrong shape
    x = np.asfortranarray(np.random.default_rng(2).standard_normal((4, 94)).astype(np.float32))
    xin = os.path.join(keep, "cli_fortran_x.npy"); yout = os.path.join(keep, "cli_fortran_y.npy")
    np.save(xin, x)
    code, out, err = sh(["run", mlp_path, "--input", xin, "--output", yout])
    ok = code == 0 and compare(np.load(yout), ort_session(open(mlp_path, "rb").read()).run(None, {"x": np.ascontiguousarray(x)})[0]) is None
    rep.ok("cli/run accepts a Fortran-order npy (or refuses it clearly)",
           ok or (code != 0 and "fortran" in (out + err).lower()), f"exit {code}: {err.strip()[-300:]}")
    np.save(xin, np.zeros((4, 93), np.float32))
    code, out, err = sh(["run", mlp_path, "--input", xin, "--output", yout])
    rep.ok("cli/run with a wrong input shape exits non-zero naming the sizes", code != 0 and "93" in (out + err),
           f"exit {code}: {(out + err).strip()[-300:]}")
    # a header whose shape overflows: a clear error, not a crash (SIGILL is exit -4 / 132)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }"
    header += b" " * (118 - len(header)) + b"\n"
    with open(xin, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16))
    code, out, err = sh(["run", mlp_path, "--input", xin, "--output", yout])
    rep.ok("cli/run with an npy shape that overflows exits 1 with a message", code == 1 and "too large" in (out + err),
           f"exit {code}: {(out + err).strip()[-300:]}")

    # convert: column_mlp.onnx -> safetensors, same outputs as the ONNX file
    for model in ("column_mlp", "l96", "column_mlp_small"):
        path = os.path.join(shared, model + ".onnx")
        dst = os.path.join(keep, f"cli_{model}.safetensors")
        if os.path.exists(dst):
            os.remove(dst)
        code, out, err = sh(["convert", path, dst])
        name = f"cli/convert {model}.onnx -> safetensors gives the ONNX outputs"
        if code != 0 or not os.path.exists(dst):
            rep.ok(name, False, f"exit {code}: {err.strip()[-500:]}")
            continue
        with open(dst, "rb") as f:
            head = f.read(9)
        io = read_safetensors(os.path.join(shared, model + ".io.safetensors"))
        x = io["x"].astype(np.float32)

        def child(dst=dst, path=path, x=x):
            lib = InLoop(lib_path)
            outs = []
            for p in (dst, path):
                st, m = lib.load(p)
                if st != 0:
                    return f"load {p}: {lib.error()}"
                n = C.c_int64()
                lib.call("inloop_model_output_size", m, C.byref(n))
                y = np.full((x.shape[0], n.value), np.nan, np.float32)
                PF = C.POINTER(C.c_float)
                lib.call("inloop_model_forward_f32", m, x.ctypes.data_as(PF), x.shape[0], y.ctypes.data_as(PF))
                lib.fn("inloop_model_free")(m)
                outs.append(y.tolist())
            return outs
        try:
            r = isolated(child)
        except RuntimeError as e:
            r = str(e)
        if isinstance(r, str):
            rep.ok(name, False, r)
            continue
        p = compare(np.array(r[0]), np.array(r[1])) or compare(np.array(r[0]), io["y_ref"].reshape(len(x), -1))
        rep.ok(name, p is None and head[8:9] == b"{", p or "not a safetensors file")
    # convert of generated graphs (Gemm alpha/beta/transB=0, MatMul+Add, Sub/Div, Constant nodes, Dropout)
    for case_name in ("mlp_o11", "gemm_alpha_beta_o11", "matmul_bias_left_o17", "normalize_o17", "constant_node_o13",
                      "dropout_mask_o13"):
        name = f"cli/convert generated {case_name} -> safetensors matches onnxruntime"
        path, _, _, feeds, refs, _ = prepare_case(case_name, keep)
        dst = os.path.join(keep, f"cli_{case_name}.safetensors")
        xin, yout = os.path.join(keep, "cli_gen_x.npy"), os.path.join(keep, "cli_gen_y.npy")
        np.save(xin, feeds[1]["x"])
        code, out, err = sh(["convert", path, dst])
        if code == 0:
            code, out, err = sh(["run", dst, "--input", xin, "--output", yout])
        p = compare(np.load(yout), refs[1][0]) if code == 0 else f"exit {code}: {err.strip()[-400:]}"
        rep.ok(name, p is None, p)
    # convert writes any graph (native v2): cnn2d's converted file gives bitwise the ONNX file's outputs
    dst = os.path.join(keep, "cli_cnn2d.safetensors")
    if os.path.exists(dst):
        os.remove(dst)
    code, out, err = sh(["convert", os.path.join(shared, "cnn2d.onnx"), dst])
    name = "cli/convert cnn2d.onnx (a graph, native v2) gives bitwise the ONNX outputs"
    if code != 0:
        rep.ok(name, False, f"exit {code}: {(out + err).strip()[-300:]}")
    else:
        io = read_safetensors(os.path.join(shared, "cnn2d.io.safetensors"))
        xin = os.path.join(keep, "cli_cnn2d_x.npy")
        np.save(xin, io["x"].astype(np.float32)[:4])
        ys = []
        for src in (os.path.join(shared, "cnn2d.onnx"), dst):
            yout = os.path.join(keep, "cli_cnn2d_y.npy")
            c2, o2, e2 = sh(["run", src, "--input", xin, "--output", yout])
            ys.append(np.load(yout) if c2 == 0 else f"run {src}: exit {c2}: {e2.strip()[-300:]}")
        if any(isinstance(y, str) for y in ys):
            rep.ok(name, False, "; ".join(y for y in ys if isinstance(y, str)))
        else:
            rep.ok(name, ys[0].shape == ys[1].shape and np.array_equal(ys[0].view(np.uint32), ys[1].view(np.uint32)),
                   f"shapes {ys[0].shape} {ys[1].shape}, max diff {np.abs(ys[0] - ys[1]).max()}")


# =====================================================================================================
def run_float64(lib_path, rep, keep, only):
    """float64 models compute in float64 (issue 10): a Gemm/Tanh chain and a MatMul+Add/Relu chain in
    DOUBLE, run through inloop_model_run_f64, match onnxruntime's float64 result within 1e-12
    relative; the same network computed in float32 misses that bound by orders of magnitude (so the
    check tells the two apart)."""
    if not wanted(only, "float64"):
        return
    rng = np.random.default_rng(64)
    D = TensorProto.DOUBLE

    def build(kind):
        nodes, inits = [], []
        def init(name, arr):
            inits.append(numpy_helper.from_array(np.asarray(arr, np.float64), name=name))
            return name
        cur, width = "x", 7
        for k, out in enumerate([16, 16, 3]):
            w = rng.standard_normal((out, width)) / np.sqrt(width)
            b = rng.standard_normal(out) * 0.1
            y = f"h{k}"
            if kind == "gemm":
                nodes.append(helper.make_node("Gemm", [cur, init(f"w{k}", w), init(f"b{k}", b)], [y], transB=1))
            else:
                nodes.append(helper.make_node("MatMul", [cur, init(f"w{k}", w.T)], [y + "m"]))
                nodes.append(helper.make_node("Add", [y + "m", init(f"b{k}", b)], [y]))
            if k < 2:
                nodes.append(helper.make_node("Tanh" if kind == "gemm" else "Relu", [y], [y + "a"]))
                y += "a"
            cur, width = y, out
        graph = helper.make_graph(nodes, f"f64_{kind}", [helper.make_tensor_value_info("x", D, ["N", 7])],
                                  [helper.make_tensor_value_info(cur, D, ["N", 3])], initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m

    lib = InLoop(lib_path)
    for kind in ("gemm", "matmul"):
        name = f"float64/{kind} chain in DOUBLE vs onnxruntime float64 within 1e-12"
        m = build(kind)
        path = os.path.join(keep, f"float64_{kind}.onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        x = rng.uniform(-2, 2, (9, 7))
        ref = ort_session(m.SerializeToString()).run(None, {"x": x})[0]
        st, h = lib.load(path)
        if st != 0:
            rep.ok(name, False, f"load -> {lib.status(st)}: {lib.error()}")
            continue
        try:
            y = lib.run(h, [x], [[3]], dtype=np.float64)[0]
            err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
            # the float32 computation of the same network, as a control
            sess32 = ort_session(onnx_to_float32(m).SerializeToString())
            y32 = sess32.run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)
            err32 = float(np.max(np.abs(y32 - ref)) / np.max(np.abs(ref)))
            rep.ok(name, err <= 1e-12 and err32 > 1e-10,
                   f"max rel err {err:.2e} (float32 control {err32:.2e})")
            y1 = lib.run(h, [x.astype(np.float32)], [[3]])[0]
            p = compare(y1, ref)
            rep.ok(f"float64/{kind}: the float32 entry point converts at the boundary", p is None, p)
        except CallFailed as e:
            rep.ok(name, False, str(e))
        finally:
            lib.fn("inloop_model_free")(h)


def onnx_to_float32(m):
    """The same model with DOUBLE initializers and values declared FLOAT (a float32 control)."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    for t in m2.graph.initializer:
        a = numpy_helper.to_array(t).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(a, name=t.name))
    for vi in list(m2.graph.input) + list(m2.graph.output):
        vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return m2


# =====================================================================================================
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="only", action="append", help="run only checks whose name contains this (repeatable)")
    ap.add_argument("--lib", default=os.environ.get("INLOOP_LIB", DEFAULT_LIB))
    ap.add_argument("--cli", default=DEFAULT_CLI)
    ap.add_argument("--models", default=DEFAULT_SHARED, help="../shared/models")
    ap.add_argument("--keep", default=os.path.join(ROOT, "build", "onnx-conformance"))
    ap.add_argument("--list", action="store_true", help="list the generated cases and exit")
    ap.add_argument("--via-cli", action="store_true",
                    help="run the generated cases through `inloop run` instead of the C API (development aid)")
    ap.add_argument("--reference-only", action="store_true",
                    help="build every model and its onnxruntime reference, without InLoop (develops this script)")
    a = ap.parse_args()
    if a.list:
        print("\n".join(CASES))
        return 0
    os.makedirs(a.keep, exist_ok=True)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}; library {a.lib}")
    rep = Report()
    if a.reference_only:
        for name in CASES:
            try:
                prepare_case(name, a.keep)
                rep.ok(f"reference/{name}", True)
            except Exception as e:  # noqa: BLE001
                rep.ok(f"reference/{name}", False, repr(e))
        print(f"{rep.passed} passed, {rep.failed} failed")
        return 1 if rep.failed else 0
    if a.via_cli:
        run_cases(a.lib, rep, a.keep, a.only, via_cli=a.cli)
        print(f"{rep.passed} passed, {rep.failed} failed")
        return 1 if rep.failed else 0
    if not os.path.exists(a.lib):
        print(f"FAIL library: {a.lib} not built")
        print("0 passed, 1 failed")
        return 1
    lib = InLoop(a.lib)
    missing = [f for f in ("inloop_model_run_f32", "inloop_model_input_rank", "inloop_model_input_shape",
                           "inloop_model_output_rank", "inloop_model_output_shape", "inloop_model_input_index",
                           "inloop_model_output_index") if not lib.has(f)]
    rep.ok("api: multi-input/output functions exported", not missing, f"missing: {missing}")
    del lib
    shared = os.path.abspath(a.models)
    run_cases(a.lib, rep, a.keep, a.only)
    run_shaped_cases(a.lib, rep, a.keep, a.only)
    run_shared(a.lib, rep, shared, a.only)
    run_bad(a.lib, rep, shared, a.keep, a.only)
    run_external_data(a.lib, rep, a.keep, a.only)
    run_runtime_errors(a.lib, rep, a.keep, a.only)
    run_format_dispatch(a.lib, rep, shared, a.keep, a.only)
    run_float64(a.lib, rep, a.keep, a.only)
    run_torch(a.lib, rep, a.keep, a.only)
    run_cli(a.cli, a.lib, rep, shared, a.keep, a.only)
    if rep.failures:
        print(f"\n{len(rep.failures)} failure(s): " + ", ".join(n for n, _ in rep.failures))
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 0 if rep.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
