#!/usr/bin/env python3
"""Run every InLoop test suite and print one closing line `N passed, M failed`.

Suites (each counted by its own number of checks; a suite that cannot run counts as one failure):
  swift      `swift test` (XCTest: engine core, formats, C ABI from Swift)
  header     Include/inloop.h regenerated from the compiler's header and compared; compiled as
             strict C99 and C++11
  bindings   every exported inloop_* symbol of libInLoop.so has a bind(C) interface in the
             Fortran module, and every header function is exported
  python     the NumPy reference tools' self-test; fixtures in sync with their generator
  c          Tests/c/test_c.c against fixtures and converted benchmark models
  c-training Tests/c/test_training.c: training, checkpoints, derivatives from C
  examples   examples/ compile, run, print the reference answer; README shows them verbatim
  fortran    Tests/fortran serial tests, and the error-stop behaviour without stat=
  fortran-training  Tests/fortran/test_training.f90: learn a smooth function, restart, adjoint
  mpi        Tests/mpi/test_mpi.f90 under `mpirun -np 2`; data-parallel training (test_mpi_training.f90)
             on 2 and 3 ranks; the mpi_f08 communicator (test_mpi_f08.f90)
  onnx       Tests/onnx/conformance.py: generated ONNX models vs onnxruntime, ../shared/models, bad
             files, run-time argument errors, the `inloop` CLI (skipped only when onnxruntime can be
             neither imported nor pip-installed)
  fuzz       the libFuzzer targets (Tests/fuzz): built (debug, -sanitize=fuzzer, .build-fuzz), every
             committed corpus file and crash regression file run through its target, then a few
             seconds of fuzzing per target (`Tests/fuzz/fuzz.py smoke`; one check per target and stage)
  lorenz96   examples/lorenz96: the two-scale truth trajectory is bitwise the same on 1, 2 and 4 ranks;
             the short demo (`--quick`, 2 ranks) trains online and its network beats no
             parameterization on forecast RMSE (the program's verdict and exit status)

Run from the repository root after `swift build -c release` (the Makefile's `test` target does it).
Logs go to build/test-logs/<suite>.log.
"""
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
LOGS = os.path.join(BUILD, "test-logs")
FIXTURES = os.path.join(ROOT, "Tests", "fixtures")
MODELS = os.path.join(BUILD, "models")
LIB = os.path.join(ROOT, ".build", "release", "libInLoop.so")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

totals = {"passed": 0, "failed": 0}
summary = []


def run(suite, cmd, timeout=1800, **kw):
    """Runs cmd, logging its output; returns (returncode, output)."""
    os.makedirs(LOGS, exist_ok=True)
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, shell=isinstance(cmd, str), **kw)
        out = p.stdout.decode("utf-8", "replace")
        code = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") + f"\nTIMEOUT after {timeout}s\n"
        code = -1
    with open(os.path.join(LOGS, suite + ".log"), "a") as f:
        f.write(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n{out}\n[exit {code}]\n")
    return code, out


def record(suite, passed, failed, note=""):
    totals["passed"] += passed
    totals["failed"] += failed
    summary.append((suite, passed, failed, note))
    print(f"-- {suite}: {passed} passed, {failed} failed {note}".rstrip(), flush=True)


def check(suite, name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {suite}/{name}{'' if ok else ': ' + detail}", flush=True)
    return (1, 0) if ok else (0, 1)


def counted(suite, code, out):
    """Counts from a program that ends with `N passed, M failed`; a crash or mismatch is a failure."""
    m = re.findall(r"^\s*(\d+) passed, (\d+) failed", out, re.M)
    for line in out.splitlines():
        if line.startswith(("FAIL", "SKIP")):
            print(f"   {line}")
    if not m:
        tail = "\n".join(out.splitlines()[-15:])
        print(f"   {suite}: no summary line (exit {code}); last output:\n{tail}")
        return 0, 1
    p, f = int(m[-1][0]), int(m[-1][1])
    if code != 0 and f == 0:
        print(f"   {suite}: exit status {code} although no check failed")
        f = 1
    return p, f


def suite_swift():
    # Converted benchmark models are found through INLOOP_MODELS_DIR.
    code, out = run("swift", ["swift", "test", "-c", "debug"], timeout=3000)
    # The last summary is the whole run's: "Executed 28 tests, with [1 test skipped and ]0 failures".
    m = re.findall(r"Executed (\d+) tests?, with (?:(\d+) tests? skipped and )?(\d+) failures?", out)
    for line in out.splitlines():
        if "error:" in line or "failed (" in line or "skipped" in line:
            print("   " + line.strip())
    if not m:
        print("\n".join(out.splitlines()[-30:]))
        record("swift", 0, 1, "(no XCTest summary)")
        return
    n, skipped, f = int(m[-1][0]), int(m[-1][1] or 0), int(m[-1][2])
    if code != 0 and f == 0:
        f = 1
    record("swift", max(0, n - skipped - f), f, f"({skipped} skipped)" if skipped else "")


def suite_header():
    p = f = 0
    code, out = run("header", ["python3", "tools/gen_header.py", "--check"])
    a, b = check("header", "generated header is up to date", code == 0, out.strip()[-2000:]); p += a; f += b
    src = '#include "inloop.h"\nint main(void) { inloop_model *m = 0; int64_t n = 0;\n' \
          '  return (int)inloop_model_input_size(m, &n) + (int)(inloop_version()[0] == 0); }\n'
    os.makedirs(BUILD, exist_ok=True)
    for lang, compiler in (("c", "gcc -std=c99 -Wall -Wextra -pedantic -Werror"),
                           ("c++", "g++ -std=c++11 -Wall -Wextra -pedantic -Werror")):
        path = os.path.join(BUILD, "header_check." + ("c" if lang == "c" else "cpp"))
        with open(path, "w") as fh:
            fh.write(src)
        code, out = run("header", f"{compiler} -IInclude {path} -L.build/release -lInLoop -o {BUILD}/header_check_{lang.replace('+', 'x')}")
        a, b = check("header", f"compiles and links as {compiler.split()[0]} {compiler.split()[1]}", code == 0, out[-2000:]); p += a; f += b
    record("header", p, f)


def suite_bindings():
    p = f = 0
    code, out = run("bindings", ["nm", "-D", "--defined-only", LIB])
    exported = sorted(set(re.findall(r"\bT (inloop_\w+)$", out, re.M)))
    a, b = check("bindings", "library exports inloop_* symbols", code == 0 and len(exported) > 10, out[-500:]); p += a; f += b
    with open(os.path.join(ROOT, "fortran-bindings", "inloop.f90")) as fh:
        fortran = fh.read()
    bound = set(re.findall(r'bind\(\s*C\s*,\s*name\s*=\s*"(inloop_\w+)"\s*\)', fortran, re.I))
    missing = [s for s in exported if s not in bound]
    a, b = check("bindings", f"all {len(exported)} exported symbols have a Fortran bind(C) interface", not missing,
                 "no binding for: " + ", ".join(missing)); p += a; f += b
    with open(os.path.join(ROOT, "Include", "inloop.h")) as fh:
        declared = set(re.findall(r"\b(inloop_\w+)\(", fh.read()))
    a, b = check("bindings", "header and exported symbols agree", declared == set(exported),
                 f"header only: {sorted(declared - set(exported))}, library only: {sorted(set(exported) - declared)}"); p += a; f += b
    # No ICU (40 MB) or full Foundation in every Fortran process: swift-protobuf without traits needs
    # only FoundationEssentials; a dependency that pulls more must fail this test.
    code, out = run("bindings", ["ldd", LIB])
    heavy = [l.split()[0] for l in out.splitlines() if re.search(r"libFoundation\.so|_FoundationICU|libicu|FoundationInternationalization", l)]
    a, b = check("bindings", "libInLoop.so does not load ICU or full Foundation", code == 0 and not heavy, ", ".join(heavy)); p += a; f += b
    # The README compiles the module with plain `gfortran -c`: standard free form (132 columns), no warnings.
    os.makedirs(os.path.join(BUILD, "modcheck"), exist_ok=True)
    code, out = run("bindings", ["gfortran", "-std=f2018", "-Wall", "-Wextra", "-Werror", "-J", os.path.join(BUILD, "modcheck"),
                                 "-c", "fortran-bindings/inloop.f90", "-o", os.path.join(BUILD, "modcheck", "inloop.o")])
    a, b = check("bindings", "module compiles with plain gfortran -std=f2018 -Wall -Wextra -Werror (132 columns)",
                 code == 0, out[-1500:]); p += a; f += b
    stale = sorted(bound - set(exported))
    a, b = check("bindings", "Fortran binds no symbol the library lacks", not stale, ", ".join(stale)); p += a; f += b
    record("bindings", p, f)


def suite_python():
    p = f = 0
    code, out = run("python", ["python3", "tools/inloopfmt.py", "selftest"])
    a, b = check("python", "inloopfmt selftest", code == 0, out[-1500:]); p += a; f += b
    code, out = run("python", ["python3", "Tests/fixtures/make_fixtures.py", "--check"])
    a, b = check("python", "fixtures match their generator", code == 0, out[-1500:]); p += a; f += b
    record("python", p, f)


def suite_c():
    code, out = run("c", "make -s c-programs")
    if code != 0:
        print(out[-3000:])
        record("c", 0, 1, "(build failed)")
        return
    code, out = run("c", [os.path.join(BUILD, "test_c"), FIXTURES, MODELS])
    record("c", *counted("c", code, out))
    code, out = run("training", [os.path.join(BUILD, "test_training"), FIXTURES, BUILD, MODELS])
    record("c-training", *counted("c-training", code, out))


def compare_printed(out, io_path, tol=1e-5):
    """Numbers printed by an example vs the reference outputs of an io.bin file."""
    import struct
    with open(io_path, "rb") as fh:
        data = fh.read()
    n_in, n_out, batch = struct.unpack("<3q", data[:24])
    vals = struct.unpack(f"<{(len(data) - 24) // 8}d", data[24:])
    y = vals[batch * n_in:]
    nums = [float(t) for t in re.findall(r"[-+]?\d+\.\d*(?:[eEdD][-+]?\d+)?", out.replace("D", "E"))]
    if len(nums) < len(y):
        return False, f"printed {len(nums)} numbers, reference has {len(y)}"
    got = nums[-len(y):]
    scale = max(abs(v) for v in y)
    err = max(abs(a - b) for a, b in zip(got, y)) / scale
    return err <= tol, f"max relative error {err:.2e}"


def suite_examples():
    p = f = 0
    code, out = run("examples", "make -s fortran c-programs")
    a, b = check("examples", "examples build", code == 0, out[-3000:]); p += a; f += b
    model = os.path.join(FIXTURES, "mlp_medium")
    for exe in ("example_fortran", "example_c"):
        code, out = run("examples", [os.path.join(BUILD, exe), model + ".safetensors"])
        ok, detail = compare_printed(out, model + ".io.bin") if code == 0 else (False, out[-1500:])
        a, b = check("examples", f"{exe} prints the reference outputs", ok, detail); p += a; f += b
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    for path in ("examples/fortran/example.f90", "examples/c/example.c"):
        with open(os.path.join(ROOT, path)) as fh:
            src = fh.read().strip()
        a, b = check("examples", f"README shows {path} verbatim", src in readme,
                     "copy the file into the README code block"); p += a; f += b
    record("examples", p, f)


def suite_fortran():
    code, out = run("fortran", "make -s fortran")
    if code != 0:
        print(out[-3000:])
        record("fortran", 0, 1, "(build failed)")
        return
    code, out = run("fortran", [os.path.join(BUILD, "test_fortran"), FIXTURES, MODELS])
    p, f = counted("fortran", code, out)
    shared = os.path.join(os.path.dirname(ROOT), "shared", "models")
    code, out = run("fortran", [os.path.join(BUILD, "test_fortran_onnx"), shared, MODELS, FIXTURES])
    record("fortran-onnx", *counted("fortran-onnx", code, out))
    code, out = run("fortran", [os.path.join(BUILD, "test_fortran_training")])
    p2, f2 = counted("fortran-training", code, out)
    record("fortran-training", p2, f2)
    code, out = run("fortran", [os.path.join(BUILD, "test_error_stop")])
    a, b = check("fortran", "load without stat= on a missing file prints the message and stops with an error",
                 code != 0 and "inloop:" in out and "nonexistent" in out, f"exit {code}: {out[-800:]}")
    record("fortran", p + a, f + b)


def suite_mpi():
    code, out = run("mpi", "make -s fortran")
    if code != 0:
        record("mpi", 0, 1, "(build failed)")
        return
    model = os.path.join(FIXTURES, "mlp_medium")
    code, out = run("mpi", ["mpirun", "-np", "2", os.path.join(BUILD, "test_mpi"), model + ".safetensors", model + ".io.bin"],
                    timeout=600)
    record("mpi", *counted("mpi", code, out))
    # data-parallel training: even and uneven splits (3 ranks on 2 cores need --oversubscribe), through
    # node-shared memory (required: fails if unavailable) and through MPI collectives (the multi-node path)
    for np_args in (["-np", "2"], ["-np", "3", "--oversubscribe"]):
        for shm, name in (("1", "shm"), ("0", "mpi")):
            code, out = run("mpi", ["mpirun", "-x", f"INLOOP_MPI_SHARED_MEMORY={shm}", *np_args,
                                    os.path.join(BUILD, "test_mpi_training")], timeout=600)
            record(f"mpi-training{np_args[1]}-{name}", *counted("mpi-training", code, out))
    for shm, name in (("1", "shm"), ("0", "mpi")):
        code, out = run("mpi", ["mpirun", "-x", f"INLOOP_MPI_SHARED_MEMORY={shm}", "-np", "2",
                                os.path.join(BUILD, "test_mpi_alloc")], timeout=300)
        record(f"mpi-alloc-{name}", *counted("mpi-alloc", code, out))
    code, out = run("mpi", ["mpirun", "-np", "2", os.path.join(BUILD, "test_mpi_f08"), model + ".safetensors"], timeout=300)
    record("mpi-f08", *counted("mpi-f08", code, out))


def suite_onnx():
    probe = "import numpy, onnx, onnxruntime"
    if subprocess.run(["python3", "-c", probe], capture_output=True).returncode != 0:
        run("onnx", ["python3", "-m", "pip", "install", "-q", "numpy", "onnx", "onnxruntime"], timeout=900)
        if subprocess.run(["python3", "-c", probe], capture_output=True).returncode != 0:
            print("SKIP onnx: onnxruntime cannot be imported nor pip-installed (see build/test-logs/onnx.log)")
            record("onnx", 0, 0, "(SKIPPED: no onnxruntime)")
            return
    code, out = run("onnx", ["python3", "Tests/onnx/conformance.py"], timeout=1800)
    record("onnx", *counted("onnx", code, out))


def suite_fuzz():
    t0 = time.time()
    code, out = run("fuzz", "make -s fuzz-build", timeout=1800)
    build = time.time() - t0
    if code != 0:
        print(out[-3000:])
        record("fuzz", 0, 1, "(build failed)")
        return
    t0 = time.time()
    code, out = run("fuzz", ["python3", "Tests/fuzz/fuzz.py", "smoke"], timeout=600)
    record("fuzz", *counted("fuzz", code, out), f"(build {build:.0f} s, runs {time.time() - t0:.0f} s)")


def suite_lorenz96():
    p = f = 0
    code, out = run("lorenz96", "make -s lorenz96")
    if code != 0:
        print(out[-3000:])
        record("lorenz96", 0, 1, "(build failed)")
        return
    exe = os.path.join(BUILD, "lorenz96", "lorenz96")
    work = os.path.join(BUILD, "test-lorenz96")
    os.makedirs(work, exist_ok=True)
    # (a) 2000 steps of the truth model from its initial condition, written by rank 0 in global order
    dumps = {}
    for n in (1, 2, 4):
        path = os.path.join(work, f"truth_np{n}.bin")
        if os.path.exists(path):
            os.remove(path)
        extra = ["--oversubscribe"] if n > 2 else []
        code, out = run("lorenz96", ["mpirun", "-np", str(n), *extra, exe, "--truth-dump", path, "--steps", "2000"],
                        timeout=300)
        dumps[n] = open(path, "rb").read() if code == 0 and os.path.exists(path) else None
        if dumps[n] is None:
            print(f"   truth dump on {n} ranks failed (exit {code}):\n{out[-1500:]}")
    size_ok = dumps[1] is not None and len(dumps[1]) == 8 * (8 + 8 * 32)
    for n in (2, 4):
        a, b = check("lorenz96", f"truth trajectory bitwise identical on 1 and {n} ranks",
                     size_ok and dumps[n] == dumps[1], "files differ or missing"); p += a; f += b
    # (b) the short demo: trains online on 2 ranks, verdict from the program (exit status 1 on FAIL)
    t0 = time.time()
    code, out = run("lorenz96", ["mpirun", "-np", "2", exe, "--quick", "--out", work], timeout=600)
    elapsed = time.time() - t0
    card = out[out.find("===================="):] if "====================" in out else out[-2500:]
    ok = code == 0 and "VERDICT: PASS" in out and "train step" in out
    a, b = check("lorenz96", f"short demo: the learned parameterization beats none on forecast RMSE ({elapsed:.0f} s)",
                 ok, f"exit {code}:\n{card}"); p += a; f += b
    a, b = check("lorenz96", "short demo saved the model and wrote the plot data",
                 all(os.path.exists(os.path.join(work, n)) for n in ("l96_nn.safetensors", "distributions.dat", "rmse.dat")),
                 "missing output files"); p += a; f += b
    record("lorenz96", p, f, f"(short demo {elapsed:.0f} s)")


def main():
    if not os.path.exists(LIB):
        print(f"{LIB} not built; run `make test`")
        print("0 passed, 1 failed")
        return 1
    for old in glob.glob(os.path.join(LOGS, "*.log")):
        os.remove(old)
    suites = (suite_header, suite_bindings, suite_python, suite_c, suite_fortran, suite_mpi, suite_lorenz96,
              suite_examples, suite_onnx, suite_fuzz, suite_swift)
    chosen = sys.argv[1:]   # e.g. `run_tests.py mpi c`: only those suites (for development)
    unknown = [c for c in chosen if "suite_" + c not in {s.__name__ for s in suites}]
    if unknown:
        print(f"unknown suite(s) {unknown}; suites: {[s.__name__[6:] for s in suites]}")
        return 2
    for s in suites:
        if chosen and s.__name__[6:] not in chosen:
            continue
        try:
            s()
        except Exception as e:  # a broken suite is a failure, not a crash of the runner
            record(s.__name__[6:], 0, 1, f"(runner error: {e!r})")
    print("\nsuite      passed  failed")
    for suite, p, f, note in summary:
        print(f"{suite:10s} {p:6d}  {f:6d}  {note}")
    print(f"logs: {os.path.relpath(LOGS, ROOT)}/")
    print(f"{totals['passed']} passed, {totals['failed']} failed")
    return 0 if totals["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
