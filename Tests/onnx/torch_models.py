#!/usr/bin/env python3
"""Models exported from torch (Tests/onnx/torch/, written by tools/export_torch_models.py) through
libInLoop.so (issue 10, item 6): nn.LSTM (2 layers; bidirectional), nn.GRU, nn.TransformerEncoderLayer,
nn.MultiheadAttention, F.scaled_dot_product_attention and float64 models, each from the TorchScript
exporter and from the dynamo exporter with its default external data (`<model>.onnx.data`).

For every model: the reference is onnxruntime's output on the stored inputs (batches 1 and 7),
computed here (nothing InLoop computed is stored); InLoop's output must match within 1e-5 relative to
max|y| (float32 models, inloop_model_run_f32) or 1e-12 (float64 models, inloop_model_run_f64, with a
float32 control that must miss that bound); then 10 fine-tuning steps (conformance.py's
check_saved_fine_tune, strict: the trainer must take the model, the loss must fall), native v2 save and
reload, outputs bitwise equal to the in-memory model. Needs numpy, onnx, onnxruntime; no torch.

    python3 Tests/onnx/torch_models.py [-k SUBSTRING] [--lib PATH]

Prints PASS/FAIL lines and ends with `N passed, M failed`.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance as cf  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch")


def ort_reference(path, feeds):
    """onnxruntime's outputs (1 thread, optimisations off) for each feed; a path, so that external data
    is read beside it."""
    so = cf.ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = cf.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = cf.ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x})[0] for x in feeds]


def check(lib_path, name, info):
    """Runs in a forked child; returns [(check label, ok, detail)]."""
    lib = cf.InLoop(lib_path)
    path = os.path.join(HERE, name + ".onnx")
    data = np.load(os.path.join(HERE, info["inputs"]))
    feeds = [data[k] for k in sorted(data.files, key=lambda k: int(k[1:]))]
    f64 = info["dtype"] == "float64"
    dt = np.float64 if f64 else np.float32
    tol = 1e-12 if f64 else cf.TOL
    refs = ort_reference(path, feeds)
    out = []
    if info["external_data"] != os.path.exists(path + ".data"):
        out.append(("external data file as exported", False, f"{path}.data expected: {info['external_data']}"))
    st, m = lib.load(path)
    if st != 0:
        return out + [("load", False, f"{lib.status(st)}: {lib.error()}")]
    try:
        out_ps = cf.per_sample(lib.shape(m, "output", 0), refs[0].ndim - 1)
        errs, problems = [], []
        for x, ref in zip(feeds, refs):
            y = lib.run(m, [x], [out_ps], dt)[0]
            p = cf.compare(y, ref, tol)
            if p:
                problems.append(f"batch {x.shape[0]}: {p}")
            if y.shape == ref.shape:
                errs.append(float(np.max(np.abs(y - ref)) / max(float(np.max(np.abs(ref))), 1e-30)))
        err = max(errs) if errs else float("nan")
        out.append((f"{'float64' if f64 else 'float32'} vs onnxruntime within {tol:g} (max rel err {err:.2e})",
                    not problems, "; ".join(problems)))
        if f64 and not problems:
            # control: the float32 entry point rounds at the boundary, so it must miss the float64 bound
            y32 = lib.run(m, [feeds[-1].astype(np.float32)], [out_ps])[0].astype(np.float64)
            e32 = float(np.max(np.abs(y32 - refs[-1])) / np.max(np.abs(refs[-1])))
            out.append((f"float64 computation is not float32 (float32 entry point: {e32:.2e})", e32 > 1e-10, ""))
        losses = []
        problems = cf.check_saved_fine_tune(lib, m, feeds[-1], out_ps, dtype=dt, strict=True, losses=losses)
        fell = len(losses) == 10 and all(np.isfinite(losses)) and losses[-1] < losses[0]
        if not problems and not fell:
            problems.append(f"losses {losses}")
        loss_txt = f"loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else "no loss"
        out.append((f"fine-tune 10 steps ({loss_txt}), save v2, reload: bitwise", not problems, "; ".join(problems)))
    except (cf.CallFailed, cf.LibMissing) as e:
        out.append(("run", False, str(e)))
    finally:
        lib.fn("inloop_model_free")(m)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="only", action="append", help="only models whose name contains this")
    ap.add_argument("--lib", default=os.environ.get("INLOOP_LIB", cf.DEFAULT_LIB))
    a = ap.parse_args()
    with open(os.path.join(HERE, "manifest.json")) as f:
        manifest = json.load(f)
    print(f"models from torch {manifest['torch']} (opset {manifest['opset']}); onnxruntime {cf.ort.__version__}")
    rep = cf.Report()
    if not os.path.exists(a.lib):
        rep.ok("library", False, f"{a.lib} not built")
    for name, info in sorted(manifest["models"].items()):
        if a.only and not any(o in name for o in a.only):
            continue
        try:
            results = cf.isolated(lambda: check(a.lib, name, info), timeout=120)
        except RuntimeError as e:
            results = [("run", False, str(e))]
        for label, ok, detail in results:
            rep.ok(f"torch/{name}: {label}", ok, detail)
    if rep.failures:
        print(f"\n{len(rep.failures)} failure(s): " + ", ".join(n for n, _ in rep.failures))
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 0 if rep.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
