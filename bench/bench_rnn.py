#!/usr/bin/env python3
"""Recurrent layers: InLoop (libInLoop.so through ctypes, inloop_model_run_shaped_f32) against
onnxruntime (1 thread, sequential) on the same ONNX LSTM and GRU models, in one run; prints the median
per call of each and the ratio InLoop / onnxruntime (lower is better; compare ratios: machines are
shared), and checks that the outputs agree (max |Δ| relative to max |y|).

The models are written here with onnx.helper: one layer, layout 0 (X [seq, batch, input]), B given,
GRU with linear_before_reset = 1 (as torch exports nn.GRU), default activations.

    python3 bench/bench_rnn.py [--seq 32] [--batch 64] [--input 64] [--hidden 64] [--repeat 50]

Needs numpy, onnx, onnxruntime and .build/release/libInLoop.so (`make lib`), or INLOOP_LIB.
"""
import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
with open("/proc/cpuinfo") as f:
    if " avx512f" in f.read():
        os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")

try:
    import numpy as np
    import onnx
    import onnxruntime  # noqa: F401
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # `make bench` runs this when the ONNX packages are there
    print(f"bench_rnn: skipped ({e})")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model(cell, seq, batch, inp, hidden, directions=1, seed=0):
    rng = np.random.default_rng(seed)
    gates = 4 if cell == "LSTM" else 3
    w = (rng.standard_normal((directions, gates * hidden, inp)) / np.sqrt(inp)).astype(np.float32)
    r = (rng.standard_normal((directions, gates * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    b = (0.1 * rng.standard_normal((directions, 2 * gates * hidden))).astype(np.float32)
    attrs = {"hidden_size": hidden, "direction": "forward" if directions == 1 else "bidirectional"}
    if cell == "GRU":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(cell, ["X", "W", "R", "B"], ["Y"], **attrs)
    g = helper.make_graph(
        [node], cell.lower(),
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, "N", inp])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, directions, "N", hidden])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def timed(fn, repeat):
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--directions", type=int, default=1)
    args = ap.parse_args()

    lib = os.environ.get("INLOOP_LIB", os.path.join(ROOT, os.environ.get("INLOOP_SCRATCH", ".build"), "release", "libInLoop.so"))
    c = ctypes.CDLL(lib)
    c.inloop_last_error.restype = ctypes.c_char_p
    c.inloop_set_num_threads(ctypes.c_int32(1))
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

    failed = 0
    print(f"seq {args.seq}, batch {args.batch}, input {args.input}, hidden {args.hidden}, "
          f"directions {args.directions}; median of {args.repeat} calls, 1 thread")
    print(f"{'cell':6} {'InLoop ms':>10} {'ORT ms':>10} {'ratio':>7} {'max rel diff':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for cell in ["LSTM", "GRU"]:
            m = model(cell, args.seq, args.batch, args.input, args.hidden, args.directions)
            path = os.path.join(tmp, cell + ".onnx")
            onnx.save(m, path)
            x = np.random.default_rng(1).standard_normal((args.seq, args.batch, args.input)).astype(np.float32)
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            want = sess.run(None, {"X": x})[0]
            t_ort = timed(lambda: sess.run(None, {"X": x}), args.repeat)

            h = ctypes.c_void_p()
            if c.inloop_model_load(path.encode(), ctypes.byref(h)) != 0:
                sys.exit(f"inloop load {cell}: {c.inloop_last_error().decode()}")
            y = np.empty(want.shape, np.float32)
            in_ranks = (ctypes.c_int64 * 1)(3)
            in_dims = (ctypes.c_int64 * 3)(*x.shape)
            ins = (ctypes.c_void_p * 1)(x.ctypes.data)
            cap = (ctypes.c_int64 * 1)(y.size)
            outs = (ctypes.c_void_p * 1)(y.ctypes.data)
            run = c.inloop_model_run_shaped_f32
            run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

            def call():
                if run(h, 1, in_ranks, in_dims, ins, 1, cap, outs, None, None, 0) != 0:
                    raise RuntimeError(c.inloop_last_error().decode())
            call()
            diff = float(np.max(np.abs(y - want)) / max(np.max(np.abs(want)), 1e-30))
            t_in = timed(call, args.repeat)
            c.inloop_model_free(h)
            ok = diff < 1e-4
            failed += not ok
            print(f"{cell:6} {t_in * 1e3:10.3f} {t_ort * 1e3:10.3f} {t_in / t_ort:7.2f} {diff:13.2e}{'' if ok else '  MISMATCH'}")
            print(f"RESULT rnn_{cell.lower()}_ratio {t_in / t_ort:.3f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
