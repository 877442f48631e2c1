#!/usr/bin/env python3
"""ONNX backend node tests through `inloop run` (issue 10, docs/ENGINE.md phase 6.7).

What it measures: the node test cases of the installed `onnx` package, regenerated locally from its
test-case collection (`onnx.backend.test.case.node.collect_testcases()`, the code behind
`python -m onnx.backend.test.cmd_tools generate-data`: one model, its inputs and its reference outputs
per case; nothing of it is committed). Each case runs in its own process through the release CLI,

    inloop run CASE/model.onnx --input NAME=in0.npy ... --output NAME=out0.npy ...

with each input passed as onnx gives it (shape [d0, d1, ...], d0 taken as the batch), and its outputs
are compared as onnx's backend test runner compares them: same shape, same dtype,
`np.testing.assert_allclose` with the case's rtol/atol (1e-3/1e-7 unless onnx sets others).

Classes of a case:
  pass         outputs within tolerance
  wrong        outputs of the wrong shape, dtype or values
  load         `inloop` refused the model (any error but "operator X is not supported")
  run          the model loads (`inloop inspect` succeeds) but `inloop run` fails
  crash        the process died of a signal (a Swift trap is SIGILL): always a bug
  timeout      no answer within --timeout seconds (default 20): always a bug
  non-float    an input or output is not a float32/float64 tensor (ints, bools, strings, float16,
               sequences...), which the CLI cannot take: the model is only loaded (`inloop inspect`)
  unsupported  loading fails with "operator X is not supported" (or an unsupported operator domain)

Which ops InLoop lists is discovered, not hard-coded: an op is listed when one of its single-node cases
loads without the "operator X is not supported" error. A case belongs to the op it tests (an
`_expanded` case, the op's function body, to the op it expands); the cases in scope are those of
listed ops, minus expanded cases whose body needs an op InLoop does not list (counted apart, they
enter the scope when that op is listed). The rate is passed / in-scope float cases; a second rate
counts the non-float cases of listed ops as failures too.

Regression guard (what `make test` runs, suite onnx-node): Tests/onnx/node_passing.txt lists the cases
that pass, one `name content-hash` a line. Each listed case is a check (FAIL when it no longer passes);
every crash or timeout, listed or not, is a FAIL too; cases that newly pass are reported, not failed.
A listed case whose content hash differs (another onnx version generated a different model or data) or
that the installed onnx no longer generates is reported and not checked: the list is about InLoop,
not about pip's onnx. The list holds only cases that pass with a margin: with --update, every passing
case is rerun under `OPENBLAS_CORETYPE=Haswell` (the kernels of any AVX2 CPU, Intel or AMD; more with
--coretypes) and a case whose error reaches half of the tolerance (max |y - ref| / (atol + rtol |ref|)
> 0.5) on any of the runs is left out as borderline.

    python3 Tests/onnx/node_tests.py [--brief] [-k SUBSTRING] [--jobs 2] [--timeout 20] [--cli PATH]
    python3 Tests/onnx/node_tests.py --update     # after the engine makes more cases pass
    make node-tests                               # the full per-op table (NODE_ARGS=--update to update)

Cases are generated into build/onnx-node/cases (kept while the onnx and numpy versions are the same;
--regen forces it) with one directory per case to reproduce it by hand. Ends with `N passed, M failed`.
"""
import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRATCH = os.environ.get("INLOOP_SCRATCH", ".build")
DEFAULT_CLI = os.path.join(ROOT, SCRATCH, "release", "inloop")
DEFAULT_WORK = os.path.join(ROOT, "build", "onnx-node")
PASSING = os.path.join(ROOT, "Tests", "onnx", "node_passing.txt")
GEN_VERSION = 3            # bump when the generated files change meaning
BORDERLINE = 0.5           # error / tolerance above which a passing case is too close to call
FLOATS = ("float32", "float64")
CLASSES = ("pass", "wrong", "load", "run", "crash", "timeout", "non-float", "unsupported")
FAILURES = ("load", "run", "wrong", "crash", "timeout")
UNSUPPORTED = re.compile(r"operator '([^']+)' is not supported|operator domain '([^']*)' is not supported")


# =====================================================================================================
# Generation: onnx's node test cases as model.onnx + .npy files
# =====================================================================================================
def op_id(node):
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"


def graph_ops(graph):
    """Every op of a graph and of its subgraphs (If/Loop/Scan bodies)."""
    import onnx
    ops = set()
    for n in graph.node:
        ops.add(op_id(n))
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                ops |= graph_ops(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    ops |= graph_ops(g)
    return ops


def expanded_base(name):
    m = re.match(r"(.*)_expanded(_ver\d+)?$", name)
    return m.group(1) if m else None


def probe(model):
    """The model with every graph input and output made a float32 tensor (keeping its shape, or [1]) and a
    default-domain opset imported: InLoop's reader checks the inputs and outputs before the nodes, so the
    probe's load says whether InLoop lists the node's op even when the CLI cannot take the case."""
    import onnx
    p = onnx.ModelProto()
    p.CopyFrom(model)
    for vi in list(p.graph.input) + list(p.graph.output):
        tt = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        if tt is not None and tt.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) and tt.HasField("shape"):
            continue
        dims = [onnx.TensorShapeProto.Dimension()]
        dims[0].dim_value = 1
        if tt is not None and tt.HasField("shape") and len(tt.shape.dim):
            dims = list(tt.shape.dim)
        vi.type.Clear()
        vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        vi.type.tensor_type.shape.dim.extend(dims)
    if not any(o.domain in ("", "ai.onnx") for o in p.opset_import):
        p.opset_import.append(onnx.helper.make_operatorsetid("", onnx.defs.onnx_opset_version()))
    return p


def generate(work, force=False):
    """The cases' metadata (a list of dicts), generating their files when needed."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    stamp = {"onnx": onnx.__version__, "numpy": np.__version__, "generator": GEN_VERSION}
    cases_dir = os.path.join(work, "cases")
    manifest_path = os.path.join(cases_dir, "manifest.json")
    if not force and os.path.exists(manifest_path):
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            if manifest.get("stamp") == stamp:
                return manifest["cases"], stamp
        except (OSError, ValueError):
            pass
    t0 = time.time()
    shutil.rmtree(cases_dir, ignore_errors=True)
    os.makedirs(cases_dir)
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        testcases = collect_testcases()

    def normalize(v):
        if isinstance(v, onnx.TensorProto):
            return numpy_helper.to_array(v)
        if isinstance(v, np.generic):
            return np.asarray(v)
        return v

    def describe(v):
        if isinstance(v, np.ndarray):
            return str(v.dtype)
        return type(v).__name__

    metas = []
    single_op = {}
    for tc in testcases:
        g = tc.model.graph
        if expanded_base(tc.name) is None and len(g.node) >= 1:
            single_op[tc.name] = op_id(g.node[0])
    for tc in testcases:
        g = tc.model.graph
        inputs, outputs = tc.data_sets[0]
        inputs = [normalize(v) for v in inputs]
        outputs = [normalize(v) for v in outputs]
        in_names = [vi.name for vi in g.input]
        out_names = [vi.name for vi in g.output]
        model_bytes = tc.model.SerializeToString()
        # the content hash: the model and the dtypes and shapes of the data, not the values (some inputs
        # and most references come from NumPy's transcendental functions, whose last bits depend on the CPU)
        h = hashlib.sha1(model_bytes)
        for v in inputs + outputs:
            h.update((f"{v.dtype.str}{v.shape}" if isinstance(v, np.ndarray) else type(v).__name__).encode())
        base = expanded_base(tc.name)
        op = single_op.get(base, "?") if base is not None else (op_id(g.node[0]) if len(g.node) else "?")
        nonfloat = [f"input '{n}' {describe(v)}" for n, v in zip(in_names, inputs)
                    if not (isinstance(v, np.ndarray) and str(v.dtype) in FLOATS)]
        nonfloat += [f"output '{n}' {describe(v)}" for n, v in zip(out_names, outputs)
                     if not (isinstance(v, np.ndarray) and str(v.dtype) in FLOATS)]
        nonfloat += [f"{what} '{vi.name}' is a{'n ' if kind[0] in 'aeiou' else ' '}{kind}"
                     for what, vis in (("input", g.input), ("output", g.output)) for vi in vis
                     for kind in [vi.type.WhichOneof("value") or "untyped"] if kind != "tensor_type"]
        if len(in_names) != len(inputs) or len(out_names) != len(outputs):
            nonfloat.append("inputs/outputs do not match the graph's")
        d = os.path.join(cases_dir, tc.name)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(model_bytes)
        has_probe = bool(nonfloat) or not any(o.domain in ("", "ai.onnx") for o in tc.model.opset_import)
        if has_probe:
            with open(os.path.join(d, "probe.onnx"), "wb") as f:
                f.write(probe(tc.model).SerializeToString())
        if not nonfloat:
            for i, v in enumerate(inputs):
                np.save(os.path.join(d, f"in{i}.npy"), v)
            for j, v in enumerate(outputs):
                np.save(os.path.join(d, f"ref{j}.npy"), v)
        metas.append({
            "name": tc.name, "op": op, "expanded": base is not None, "ops": sorted(graph_ops(g)),
            "inputs": [[n, list(getattr(v, "shape", ()))] for n, v in zip(in_names, inputs)],
            "outputs": out_names, "nonfloat": nonfloat, "probe": has_probe, "rtol": tc.rtol, "atol": tc.atol,
            "hash": h.hexdigest()[:16],
        })
    with open(manifest_path, "w") as f:
        json.dump({"stamp": stamp, "cases": metas}, f)
    print(f"generated {len(metas)} node test cases from onnx {onnx.__version__} into "
          f"{os.path.relpath(cases_dir, ROOT)} ({time.time() - t0:.0f} s)", flush=True)
    return metas, stamp


# =====================================================================================================
# Running one case
# =====================================================================================================
def call(args, timeout, env):
    """(kind, returncode, stderr): kind is ok, error, crash or timeout; the process group is killed
    on a timeout, so nothing is left running."""
    try:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             start_new_session=True)
    except OSError as e:
        return "error", None, f"cannot start {args[0]}: {e}"
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.communicate()
        return "timeout", None, f"no answer within {timeout:g} s"
    err = err.decode("utf-8", "replace")
    if p.returncode < 0:
        try:
            sig = signal.Signals(-p.returncode).name
        except ValueError:
            sig = f"signal {-p.returncode}"
        fatal = [l.strip() for l in err.splitlines() if "Fatal error" in l or "error:" in l.lower()]
        return "crash", p.returncode, f"killed by {sig}" + (f": {fatal[0]}" if fatal else "")
    return ("ok" if p.returncode == 0 else "error"), p.returncode, err


def first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[len("inloop: "):] if line.startswith("inloop: ") else line
    return "(no message)"


def compare(meta, d, out_dir):
    """(ok, message, margin): onnx's assert_similar_outputs; margin = max error / tolerance."""
    import numpy as np
    margin = 0.0
    for j, name in enumerate(meta["outputs"]):
        ref = np.load(os.path.join(d, f"ref{j}.npy"))
        try:
            y = np.load(os.path.join(out_dir, f"out{j}.npy"))
        except (OSError, ValueError) as e:
            return False, f"output '{name}': cannot read: {e}", None
        if y.shape != ref.shape:
            return False, f"output '{name}' has shape {list(y.shape)}, expected {list(ref.shape)}", None
        if y.dtype != ref.dtype:
            return False, f"output '{name}' has dtype {y.dtype}, expected {ref.dtype}", None
        rtol, atol = meta["rtol"], meta["atol"]
        try:
            np.testing.assert_allclose(y, ref, rtol=rtol, atol=atol)
        except AssertionError:
            yd, rd = y.astype(np.float64), ref.astype(np.float64)
            with np.errstate(all="ignore"):
                bad = ~np.isclose(yd, rd, rtol=rtol, atol=atol, equal_nan=True)
                err = np.abs(yd - rd)
                rel = err / np.abs(rd)
            worst = int(np.argmax(np.where(bad, err, -1)))
            return False, (f"output '{name}': {int(bad.sum())} of {bad.size} values outside rtol {rtol:g}, "
                           f"atol {atol:g} (e.g. {yd.flat[worst]:.6g} for {rd.flat[worst]:.6g}; "
                           f"max abs error {np.nanmax(np.where(bad, err, 0)):.3g}, "
                           f"max rel error {np.nanmax(np.where(bad, rel, 0)):.3g})"), None
        with np.errstate(all="ignore"):
            yd, rd = y.astype(np.float64), ref.astype(np.float64)
            same = (yd == rd) | (np.isnan(yd) & np.isnan(rd))
            ratio = np.where(same, 0.0, np.abs(yd - rd) / (atol + rtol * np.abs(rd)))
        if ratio.size:
            margin = max(margin, float(np.nanmax(ratio)))
    return True, "", margin


def run_case(meta, cli, work, timeout, env, tag="default", deadline=None):
    """The case's result: {"name", "class", "message", "margin", "unsupported_op"}."""
    name = meta["name"]
    d = os.path.join(work, "cases", name)
    model = os.path.join(d, "model.onnx")
    res = {"name": name, "class": None, "message": "", "margin": None, "unsupported_op": None}
    if deadline is not None and time.time() > deadline:
        res["class"], res["message"] = "timeout", "not run: the whole run's time budget (--budget) is spent"
        return res

    def unsupported(text):
        m = UNSUPPORTED.search(text)
        if m:
            res["class"] = "unsupported"
            res["unsupported_op"] = m.group(1) or meta["op"]
            res["message"] = first_line(text)
            return True
        return False

    def inspect(path):
        return call([cli, "inspect", path], timeout, env)

    if meta["nonfloat"]:
        # the CLI cannot take the case: load the probe (float I/O) to learn whether the op is listed
        kind, _, err = inspect(os.path.join(d, "probe.onnx"))
        if kind in ("crash", "timeout"):
            res["class"], res["message"] = kind, f"inloop inspect probe.onnx (float I/O): {err}"
        elif not (kind == "error" and unsupported(err)):
            res["class"] = "non-float"
            res["message"] = meta["nonfloat"][0]
        return res
    out_dir = os.path.join(work, "out-" + tag, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    args = [cli, "run", model]
    for i, (n, _) in enumerate(meta["inputs"]):
        args += ["--input", f"{n}={os.path.join(d, f'in{i}.npy')}"]
    for j, n in enumerate(meta["outputs"]):
        args += ["--output", f"{n}={os.path.join(out_dir, f'out{j}.npy')}"]
    kind, _, err = call(args, timeout, env)
    if kind in ("crash", "timeout"):
        res["class"], res["message"] = kind, err
    elif kind == "error":
        if unsupported(err):
            return res
        k2, _, err2 = inspect(model)
        if k2 in ("crash", "timeout"):
            res["class"], res["message"] = k2, f"inloop inspect: {err2}"
        elif k2 == "ok":
            res["class"], res["message"] = "run", first_line(err)
        else:
            res["class"], res["message"] = "load", first_line(err2)
            if meta["probe"]:   # e.g. no default-domain opset: does InLoop list the op at all?
                k3, _, err3 = inspect(os.path.join(d, "probe.onnx"))
                if k3 in ("crash", "timeout"):
                    res["class"], res["message"] = k3, f"inloop inspect probe.onnx: {err3}"
                elif k3 == "error":
                    unsupported(err3)
    else:
        ok, msg, margin = compare(meta, d, out_dir)
        res["class"], res["message"], res["margin"] = ("pass" if ok else "wrong"), msg, margin
    if res["class"] == "pass":
        shutil.rmtree(out_dir, ignore_errors=True)
    return res


def run_all(metas, cli, work, timeout, jobs, env, tag="default", progress=True, deadline=None):
    results = {}
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_case, m, cli, work, timeout, env, tag, deadline): m["name"] for m in metas}
        for k, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            name = futures[fut]
            try:
                results[name] = fut.result()
            except Exception as e:  # a broken comparison is that case's failure, not the end of the run
                results[name] = {"name": name, "class": "wrong", "message": f"harness error: {e!r}",
                                 "margin": None, "unsupported_op": None}
            if progress and sys.stdout.isatty() and k % 100 == 0:
                print(f"  {k}/{len(metas)} cases ({time.time() - t0:.0f} s)", flush=True)
    return results


# =====================================================================================================
# Report
# =====================================================================================================
def normalize_reason(msg, work):
    msg = msg.replace(os.path.join(work, "cases") + os.sep, "")
    msg = re.sub(r"test_\w+/(model\.onnx|in\d+\.npy)", r"\1", msg)
    msg = re.sub(r"out-\w+/test_\w+/", "", msg)
    msg = re.sub(r"\(e\.g\. .*", "", msg)
    msg = re.sub(r"\d+ of \d+ values", "values", msg)
    msg = re.sub(r"\[[\d, ]*\]", "[...]", msg)
    msg = re.sub(r"(?<![\w.-])\d+(?![\w.-])", "N", msg)
    msg = re.sub(r"'[^']*'", "'...'", msg)
    return msg.strip()[:160]


def analyse(metas, results):
    """(listed ops, per-op rows, in-scope case names)."""
    listed = set()
    for m in metas:
        r = results.get(m["name"])
        if r and not m["expanded"] and r["class"] != "unsupported":
            listed.add(m["op"])
    rows = collections.OrderedDict()
    scope = []
    for m in sorted(metas, key=lambda m: (m["op"].lower(), m["name"])):
        r = results.get(m["name"])
        if r is None or m["op"] not in listed:
            continue
        row = rows.setdefault(m["op"], collections.Counter())
        if r["class"] == "unsupported":
            row["needs-unlisted"] += 1
            continue
        row[r["class"]] += 1
        if r["class"] != "non-float":
            scope.append(m["name"])
    return listed, rows, scope


def report(metas, results, work, brief, out=print):
    listed, rows, scope = analyse(metas, results)
    total_pass = sum(r["pass"] for r in rows.values())
    total_fail = sum(r[c] for r in rows.values() for c in FAILURES)
    total_nonfloat = sum(r["non-float"] for r in rows.values())
    total_needs = sum(r["needs-unlisted"] for r in rows.values())
    if not brief:
        out("")
        out(f"{'op':28s} {'cases':>5s} {'pass':>5s} {'fail':>5s}  {'load':>4s} {'run':>4s} {'wrong':>5s} "
            f"{'crash':>5s} {'time':>4s}  {'rate':>6s}  {'non-float':>9s} {'needs-unlisted':>14s}")
        for op, r in rows.items():
            n = r["pass"] + sum(r[c] for c in FAILURES)
            rate = f"{100 * r['pass'] / n:5.1f}%" if n else "     -"
            out(f"{op[:28]:28s} {n:5d} {r['pass']:5d} {n - r['pass']:5d}  {r['load']:4d} {r['run']:4d} "
                f"{r['wrong']:5d} {r['crash']:5d} {r['timeout']:4d}  {rate:>6s}  {r['non-float']:9d} "
                f"{r['needs-unlisted']:14d}")
    n = total_pass + total_fail
    unlisted = sorted({m["op"] for m in metas if m["op"] not in listed})
    classes = collections.Counter(results[s]["class"] for s in scope)
    out("")
    out(f"node tests: {len(results)} cases run, {len(listed)} ops listed by InLoop, {len(unlisted)} not")
    out(f"listed ops: {n} float cases in scope, {total_pass} pass: {100 * total_pass / max(n, 1):.1f}%; "
        f"with the {total_nonfloat} non-float cases as failures: "
        f"{100 * total_pass / max(n + total_nonfloat, 1):.1f}%; {total_needs} expanded cases need unlisted ops")
    out("failures: " + ", ".join(f"{c} {classes[c]}" for c in FAILURES))
    # grouped reasons: class, normalised first line, count, an example case
    groups = collections.Counter()
    example = {}
    for s in scope:
        r = results[s]
        if r["class"] in FAILURES:
            key = (r["class"], normalize_reason(r["message"], work))
            groups[key] += 1
            example.setdefault(key, s)
    if groups:
        out("failure reasons (class, cases, first line, e.g.):")
        for (cls, msg), k in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[: 25 if brief else 1000]:
            out(f"  {cls:7s} {k:4d}  {msg}   [{example[(cls, msg)]}]")
        if brief and len(groups) > 25:
            out(f"  ... {len(groups) - 25} more reasons (make node-tests prints all)")
    bad = sorted((r["name"], r["class"], r["message"]) for r in results.values() if r["class"] in ("crash", "timeout"))
    if bad:
        out(f"crashes and timeouts ({len(bad)}, each a bug):")
        for name, cls, msg in bad[: 50 if brief else None]:
            out(f"  {cls:7s} {name}: {msg}")
        if brief and len(bad) > 50:
            out(f"  ... {len(bad) - 50} more")
    if not brief:
        out("unlisted ops: " + ", ".join(unlisted))
    # cross-check with the list InLoop prints in its "not supported" message, when it prints one
    printed = set()
    for r in results.values():
        m = re.search(r"InLoop (?:supports|runs operators of the default ONNX domain): (.*)$", r["message"])
        if m:
            printed |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    if printed:
        all_ops = {m["op"] for m in metas}
        extra = sorted((listed & all_ops) - printed)
        missing = sorted((printed & all_ops) - listed)
        if extra or missing:
            out(f"note: discovered listing differs from InLoop's printed list: loads but not printed: "
                f"{', '.join(extra) or '-'}; printed but refused: {', '.join(missing) or '-'}")
        else:
            out(f"(the {len(listed)} listed ops are exactly the node-tested ops in InLoop's printed list of {len(printed)})")
    return listed, scope, total_pass, n


# =====================================================================================================
# The committed list of passing cases
# =====================================================================================================
def read_passing(path):
    cases = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].split()
                if line:
                    cases[line[0]] = line[1] if len(line) > 1 else None
    return cases


def write_passing(path, metas, names, stamp, coretypes, dropped):
    by_name = {m["name"]: m for m in metas}
    with open(path, "w") as f:
        f.write("# ONNX backend node test cases that pass through `inloop run` (Tests/onnx/node_tests.py).\n")
        f.write(f"# Written by `node_tests.py --update` from onnx {stamp['onnx']}'s cases: name and content hash\n")
        f.write("# (model, inputs, reference outputs). `make test` fails a case listed here that stops passing.\n")
        f.write(f"# Each passed on this CPU and with OPENBLAS_CORETYPE={','.join(coretypes) or '-'} with error <= "
                f"{BORDERLINE} x tolerance;\n# {len(dropped)} passing cases were left out as borderline"
                + (f": {', '.join(sorted(dropped))}" if dropped else "") + ".\n")
        for n in sorted(names):
            f.write(f"{n} {by_name[n]['hash']}\n")


# =====================================================================================================
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=DEFAULT_CLI, help="the inloop executable (default: %(default)s)")
    ap.add_argument("--work", default=DEFAULT_WORK, help="generated cases and outputs (default: %(default)s)")
    ap.add_argument("--list", default=PASSING, help="the passing-case list (default: %(default)s)")
    ap.add_argument("-k", dest="filter", default="", help="only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per inloop process")
    ap.add_argument("--budget", type=float, default=1200.0,
                    help="seconds for the whole run; cases not started by then are timeouts (default: %(default)s)")
    ap.add_argument("--regen", action="store_true", help="regenerate the cases even if cached")
    ap.add_argument("--brief", action="store_true", help="no per-op table (the make test suite)")
    ap.add_argument("--update", action="store_true", help="rewrite the passing list from this run")
    ap.add_argument("--coretypes", default="Haswell",
                    help="OPENBLAS_CORETYPE values that --update reruns the passing cases with")
    ap.add_argument("--json", help="write every case's result to this file")
    args = ap.parse_args()
    t_start = time.time()

    if not os.access(args.cli, os.X_OK):
        print(f"FAIL onnx-node: {args.cli} is not built (swift build -c release)")
        print("0 passed, 1 failed")
        return 1
    try:
        metas, stamp = generate(args.work, args.regen)
    except Exception as e:  # an onnx whose test cases cannot be generated: one failure, not a traceback
        print(f"FAIL onnx-node: cannot generate the node test cases: {e!r}")
        print("0 passed, 1 failed")
        return 1
    if args.filter:
        metas = [m for m in metas if args.filter in m["name"]]
    if not metas:
        print(f"FAIL onnx-node: no node test case{' matches ' + repr(args.filter) if args.filter else ''}")
        print("0 passed, 1 failed")
        return 1
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.time()
    results = run_all(metas, args.cli, args.work, args.timeout, args.jobs, env, deadline=t_start + args.budget)
    t_run = time.time() - t0
    print(f"ran {len(metas)} cases in {t_run:.0f} s ({args.jobs} processes at a time), onnx {stamp['onnx']}")
    print("== report ==")
    listed, scope, n_pass, n_scope = report(metas, results, args.work, args.brief)
    print("== end of report ==")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stamp": stamp, "results": results}, f, indent=1)

    passing_now = sorted(n for n in scope if results[n]["class"] == "pass")
    if args.update:
        if args.filter:
            print("FAIL onnx-node: --update needs the whole set (no -k)")
            print("0 passed, 1 failed")
            return 1
        keep = {n for n in passing_now if (results[n]["margin"] or 0.0) <= BORDERLINE}
        dropped = {n: f"margin {results[n]['margin']:.2f}" for n in passing_now if n not in keep}
        coretypes = [c for c in args.coretypes.split(",") if c]
        by_name = {m["name"]: m for m in metas}
        for core in coretypes:
            env2 = dict(env, OPENBLAS_CORETYPE=core)
            again = run_all([by_name[n] for n in sorted(keep)], args.cli, args.work, args.timeout, args.jobs,
                            env2, tag=core.lower(), progress=False)
            for n, r in again.items():
                if r["class"] != "pass" or (r["margin"] or 0.0) > BORDERLINE:
                    keep.discard(n)
                    dropped[n] = f"{core}: {r['class']}" + (f" margin {r['margin']:.2f}" if r["margin"] else "")
        for n, why in sorted(dropped.items()):
            print(f"   borderline, left out: {n} ({why})")
        write_passing(args.list, metas, keep, stamp, coretypes, dropped)
        print(f"wrote {os.path.relpath(args.list, ROOT)}: {len(keep)} cases ({len(dropped)} borderline left out)")

    # the regression guard
    listed_cases = read_passing(args.list)
    by_name = {m["name"]: m for m in metas}
    passed = failed = 0
    changed, absent = [], []
    for name, h in sorted(listed_cases.items()):
        if name not in by_name:
            if not args.filter:
                absent.append(name)
            continue
        if h is not None and h != by_name[name]["hash"]:
            changed.append(name)
            continue
        r = results[name]
        if r["class"] == "pass":
            passed += 1
        else:
            failed += 1
            print(f"FAIL onnx-node/{name}: passed before, now {r['class']}: {r['message']}")
    for r in sorted(results.values(), key=lambda r: r["name"]):
        if r["class"] in ("crash", "timeout") and r["name"] not in listed_cases:
            failed += 1
            print(f"FAIL onnx-node/{r['name']}: {r['class']} ({r['message']})")
    new = [n for n in passing_now if n not in listed_cases]
    close = [n for n in new if (results[n]["margin"] or 0.0) > BORDERLINE]
    new = [n for n in new if n not in close]
    if new:
        print(f"newly passing ({len(new)}, not in {os.path.relpath(args.list, ROOT)}; "
              f"`make node-tests NODE_ARGS=--update` adds them): {' '.join(new[:40])}{' ...' if len(new) > 40 else ''}")
    if close:
        print(f"passing too close to the tolerance to be listed ({len(close)}): {' '.join(close)}")
    if changed:
        print(f"note: {len(changed)} listed cases differ in onnx {stamp['onnx']} (content hash), not checked: "
              + " ".join(changed[:20]) + (" ..." if len(changed) > 20 else ""))
    if absent:
        print(f"note: {len(absent)} listed cases are not generated by onnx {stamp['onnx']}, not checked: "
              + " ".join(absent[:20]) + (" ..." if len(absent) > 20 else ""))
    if not listed_cases:
        print(f"FAIL onnx-node: {os.path.relpath(args.list, ROOT)} is missing or empty (run with --update)")
        failed += 1
    elif not args.filter and 2 * (len(changed) + len(absent)) > len(listed_cases):
        # a guard that checks nothing must not pass
        print(f"FAIL onnx-node: {len(changed) + len(absent)} of the {len(listed_cases)} listed cases differ in "
              f"onnx {stamp['onnx']} or are gone: the list is out of date (run with --update)")
        failed += 1
    print(f"onnx-node: {len(listed_cases)} listed cases, {passed} pass; {n_pass} of {n_scope} in-scope cases pass "
          f"({100 * n_pass / max(n_scope, 1):.1f}%); {time.time() - t_start:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
