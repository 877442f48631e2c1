#!/usr/bin/env python3
"""Runs the libFuzzer targets of Tests/fuzz/targets (built by `make fuzz-build` into .build-fuzz).

  fuzz.py run   [--seconds S] [TARGET...]   `make fuzz`: fuzz each target for S seconds (FUZZ_SECONDS; or
                until FUZZ_RUNS executions when that is set and reached first),
                from its working corpus build/fuzz/corpus/<target> (seeded from the committed corpus and
                regression files, kept between runs); crashes, timeouts (> 1 s) and RSS over 2 GB are
                written to build/fuzz/crashes/<target>/. Prints executions per target and exits 1 on a finding.
  fuzz.py smoke [--seconds S] [TARGET...]   `make test` (suite `fuzz`): every committed corpus file and
                every regression file once through its target, then S seconds of fuzzing from the
                committed corpus (default 4). Ends with `N passed, M failed`.

Targets: native (safetensors + native model, first forward and tangent), onnx (reader, compiler, first
forward), config (YAML/JSON training configuration, trainer, one step), checkpoint (checkpoint reader,
one step) and npy (the CLI's .npy reader). Corpora: Tests/fuzz/corpus/<target> (Tests/fuzz/make_seeds.py;
the native target's is Tests/fixtures/*.safetensors), dictionaries Tests/fuzz/dict/<target>.dict.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "Tests", "fuzz")
BIN = os.path.join(ROOT, ".build-fuzz", "debug")
WORK = os.path.join(ROOT, "build", "fuzz")
TARGETS = ["native", "onnx", "config", "checkpoint", "npy"]
LIMITS = ["-timeout=1", "-rss_limit_mb=2048", "-malloc_limit_mb=2048"]
# Swift's own crash handler would exit before libFuzzer's writes the crashing input to a file.
ENV = dict(os.environ, SWIFT_BACKTRACE="enable=no")


def seeds(target):
    """Committed corpus files of a target (the native target's are the test fixtures)."""
    if target == "native":
        return sorted(glob.glob(os.path.join(ROOT, "Tests", "fixtures", "*.safetensors")))
    return sorted(glob.glob(os.path.join(FUZZ, "corpus", target, "*")))


def regressions(target):
    return sorted(glob.glob(os.path.join(FUZZ, "regressions", target, "*")))


def binary(target):
    return os.path.join(BIN, "fuzz-" + target)


def dict_args(target):
    d = os.path.join(FUZZ, "dict", target + ".dict")
    return ["-dict=" + d] if os.path.exists(d) else []


def run_files(target, files, attempts=3):
    """Each file once through the target (libFuzzer runs file arguments and exits); (ok, output).
    A run that ends in a timeout is tried again (up to `attempts` times): on a loaded machine the
    wall-clock timeout can hit an input that takes milliseconds."""
    if not files:
        return True, "no files"
    for _ in range(attempts):
        p = subprocess.run([binary(target), *LIMITS, *files], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, env=ENV)
        out = p.stdout.decode("utf-8", "replace")
        ran = len(re.findall(r"^Executed ", out, re.M))
        if p.returncode == 0 and ran == len(files):
            return True, out
        if "SUMMARY: libFuzzer: timeout" not in out:
            break
    return False, out


def fuzz(target, seconds, corpus_dirs, artifacts, extra=()):
    os.makedirs(artifacts, exist_ok=True)
    cmd = ["nice", binary(target), *LIMITS, *dict_args(target), f"-max_total_time={seconds}", "-print_final_stats=1",
           "-artifact_prefix=" + artifacts + os.sep, *extra, *corpus_dirs]
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds * 3 + 600, env=ENV)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    return p.returncode, int(m.group(1)) if m else 0, time.time() - t0, out


def new_artifacts(artifacts, before):
    return sorted(set(glob.glob(os.path.join(artifacts, "*"))) - before)


def spurious_timeout(target, artifact):
    """A timeout the input does not reproduce: it runs in under a second three times in a row (the
    machine was busy: libFuzzer's timeout is wall-clock). Such inputs are kept in build/fuzz/slow/."""
    if not os.path.basename(artifact).startswith("timeout-"):
        return False
    for _ in range(3):
        ok, out = run_files(target, [artifact], attempts=1)
        m = re.search(r"^Executed .* in (\d+) ms", out, re.M)
        if not ok or not m or int(m.group(1)) >= 1000:
            return False
    slow = os.path.join(WORK, "slow", target)
    os.makedirs(slow, exist_ok=True)
    shutil.move(artifact, os.path.join(slow, os.path.basename(artifact)))
    return True


def campaign(target, seconds, runs, corpus_dirs, artifacts):
    """Fuzzes for `seconds` (or `runs` executions), continuing after timeouts that do not reproduce.
    Returns (exit code of the last session, executions, seconds, spurious timeouts, output)."""
    os.makedirs(artifacts, exist_ok=True)
    t0, execs, spurious, outs = time.time(), 0, 0, []
    while True:
        left = int(seconds - (time.time() - t0))
        if left < 1 or (runs and execs >= runs):
            return 0, execs, time.time() - t0, spurious, "".join(outs)
        before = set(glob.glob(os.path.join(artifacts, "*")))
        extra = [f"-runs={runs - execs}"] if runs else []
        code, n, _, out = fuzz(target, left, corpus_dirs, artifacts, extra)
        execs += n
        outs.append(out)
        if code == 0:
            return 0, execs, time.time() - t0, spurious, "".join(outs)
        found = new_artifacts(artifacts, before)
        if found and all(spurious_timeout(target, a) for a in found):
            spurious += 1
            continue
        return code, execs, time.time() - t0, spurious, "".join(outs)


def cmd_run(args):
    found = False
    summary = []
    for t in args.targets:
        corpus = os.path.join(WORK, "corpus", t)
        os.makedirs(corpus, exist_ok=True)
        for f in seeds(t) + regressions(t):
            dst = os.path.join(corpus, "seed-" + os.path.basename(f))
            if not os.path.exists(dst):
                shutil.copyfile(f, dst)
        artifacts = os.path.join(WORK, "crashes", t)
        runs = int(os.environ.get("FUZZ_RUNS") or 0)
        code, execs, secs, spurious, out = campaign(t, args.seconds, runs, [corpus], artifacts)
        log = os.path.join(WORK, f"{t}.log")
        with open(log, "w") as fh:
            fh.write(out)
        bad = [l for l in out.splitlines() if re.search(r"ERROR: libFuzzer|SUMMARY: libFuzzer|Fatal error|deadly signal|timeout", l)]
        status = "ok" if code == 0 else "FINDING"
        if spurious:
            status += f" ({spurious} timeouts that did not reproduce: build/fuzz/slow/{t})"
        found = found or code != 0
        summary.append((t, execs, secs, status))
        print(f"{t:11s} {execs:10d} executions in {secs:6.0f} s  {status}  (log {os.path.relpath(log, ROOT)})", flush=True)
        for l in bad[:5]:
            print("    " + l)
    print("\ntarget      executions  seconds  result")
    for t, e, s, st in summary:
        print(f"{t:11s} {e:10d} {s:8.0f}  {st}")
    return 1 if found else 0


def cmd_smoke(args):
    passed = failed = 0
    for t in args.targets:
        if not os.path.exists(binary(t)):
            print(f"FAIL fuzz/{t}: {binary(t)} not built (make fuzz-build)")
            failed += 1
            continue
        for what, files in (("corpus", seeds(t)), ("regressions", regressions(t))):
            if what == "regressions" and not files:
                continue   # no crash found for this target yet: nothing to count
            ok, out = run_files(t, files)
            if what == "corpus":
                ok = ok and len(files) > 0
            if ok:
                passed += 1
                print(f"PASS fuzz/{t}: {len(files)} {what} files run without a crash")
            else:
                failed += 1
                print(f"FAIL fuzz/{t}: {what} files: {out[-2500:]}")
        with_tmp = os.path.join(WORK, "smoke", t)
        shutil.rmtree(with_tmp, ignore_errors=True)
        os.makedirs(with_tmp)
        for f in seeds(t):
            shutil.copyfile(f, os.path.join(with_tmp, os.path.basename(f)))
        code, execs, secs, _, out = campaign(t, args.seconds, 0, [with_tmp], os.path.join(WORK, "smoke-crashes", t))
        if code == 0 and execs > 0:
            passed += 1
            print(f"PASS fuzz/{t}: {execs} executions in {secs:.0f} s without a finding")
        else:
            failed += 1
            print(f"FAIL fuzz/{t}: exit {code} after {execs} executions: {out[-2500:]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "smoke"])
    ap.add_argument("targets", nargs="*", default=TARGETS)
    ap.add_argument("--seconds", type=int, default=None)
    args = ap.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; targets: {TARGETS}")
    if args.seconds is None:
        args.seconds = int(os.environ.get("FUZZ_SECONDS", "300")) if args.command == "run" else 4
    return cmd_run(args) if args.command == "run" else cmd_smoke(args)


if __name__ == "__main__":
    sys.exit(main())
