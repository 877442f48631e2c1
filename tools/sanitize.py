#!/usr/bin/env python3
"""`make sanitize`: the test programs once more against sanitizer builds of libInLoop.so.

  asan   libInLoop.so built with AddressSanitizer (`swift build --sanitize=address`; the C shim with
         UBSan too, `-fsanitize=undefined`); the Swift tests built and run the same way
         (`swift test --sanitize=address`); the C, Fortran and MPI test programs built as usual and run
         with the sanitizer runtime preloaded.
  tsan   libInLoop.so built with ThreadSanitizer; the programs that call InLoop from several threads.

Swift has no UBSan on Linux (`-sanitize=undefined` is refused for x86_64-unknown-linux-gnu); its own
overflow and bounds checks trap in every build, which the fuzzers and the tests exercise.

The test programs are gcc/gfortran executables, not instrumented themselves: the sanitizer runtime of
the Swift toolchain's clang is preloaded (LD_PRELOAD) so that it owns malloc from the first instruction,
and the C tests are compiled with -DINLOOP_SANITIZE so that their allocation counter (which interposes
malloc itself) steps aside; the allocation checks are the ordinary run's job.

A program passes when it exits 0, its own closing line reports no failure, and the sanitizer printed no
report. Ends with one line `N passed, M failed`. Usage: tools/sanitize.py [asan] [tsan] (default both).
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "sanitize")
FIXTURES = os.path.join(ROOT, "Tests", "fixtures")
MODELS = os.path.join(ROOT, "build", "models")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "models")
MPIRUN = ["mpirun", "-x", "LD_PRELOAD", "-x", "ASAN_OPTIONS", "-x", "TSAN_OPTIONS", "-x", "SWIFT_BACKTRACE"]

REPORT = re.compile(r"(ERROR: (Address|Thread|UndefinedBehavior)Sanitizer|WARNING: ThreadSanitizer|"
                    r"runtime error:|SUMMARY: \w+Sanitizer)")
totals = {"passed": 0, "failed": 0}


def toolchain_runtime(name):
    """The clang runtime library of the Swift toolchain that built the library (same version)."""
    swiftc = subprocess.run(["which", "swiftc"], capture_output=True, text=True).stdout.strip()
    base = os.path.dirname(os.path.dirname(os.path.realpath(swiftc)))
    hits = sorted(glob.glob(os.path.join(base, "lib", "clang", "*", "lib", "linux", f"libclang_rt.{name}-x86_64.so")))
    if not hits:
        sys.exit(f"sanitize: no libclang_rt.{name}-x86_64.so under {base}/lib/clang")
    return hits[-1]


def symbolizer():
    """The toolchain's llvm-symbolizer, so that reports name Swift functions and lines."""
    swiftc = subprocess.run(["which", "swiftc"], capture_output=True, text=True).stdout.strip()
    path = os.path.join(os.path.dirname(os.path.realpath(swiftc)), "llvm-symbolizer")
    return f":external_symbolizer_path={path}" if os.path.exists(path) else ""


def sh(cmd, env=None, timeout=3600, log=None):
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, shell=isinstance(cmd, str))
    out = p.stdout.decode("utf-8", "replace")
    if log:
        with open(log, "a") as fh:
            fh.write(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n{out}\n[exit {p.returncode}]\n")
    return p.returncode, out


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} sanitize/{name}{'' if ok else ': ' + detail}", flush=True)
    totals["passed" if ok else "failed"] += 1


def judge(name, code, out):
    """Exit 0, a closing line with no failure, no sanitizer report."""
    reports = [l for l in out.splitlines() if REPORT.search(l)]
    if reports:
        i = out.find(reports[0])
        return check(name, False, "sanitizer report:\n" + out[max(0, i - 200): i + 3000])
    m = re.findall(r"^\s*(\d+) passed, (\d+) failed", out, re.M)
    if code != 0 or not m or int(m[-1][1]) != 0:
        fails = "\n".join(l for l in out.splitlines() if l.startswith("FAIL"))[:3000]
        return check(name, False, f"exit {code}, closing line {m[-1] if m else 'missing'}\n{fails or out[-2000:]}")
    check(f"{name} ({m[-1][0]} checks, no report)", True)


def build_library(kind, scratch, log):
    flags = ["-c", "release", f"--sanitize={kind}", "--scratch-path", scratch, "-Xswiftc", "-g"]
    if kind == "address":
        flags += ["-Xcc", "-fsanitize=undefined", "-Xcc", "-fno-sanitize-recover=undefined"]
    code, out = sh(["swift", "build", *flags, "--product", "InLoop"], log=log)
    check(f"{kind}: libInLoop.so builds", code == 0, out[-3000:])
    return code == 0


def build_programs(libdir, log, runtime=None):
    """The C, Fortran and MPI test programs against the sanitizer library; returns what was built."""
    os.makedirs(os.path.join(BUILD, "mod"), exist_ok=True)
    os.makedirs(os.path.join(BUILD, "mpimod"), exist_ok=True)
    os.makedirs(os.path.join(BUILD, "ompmod"), exist_ok=True)
    link = f"-L{libdir} -lInLoop -Wl,-rpath,{libdir} -Wl,--allow-shlib-undefined"
    if runtime:  # the sanitizer runtime as the programs' first dependency, instead of LD_PRELOAD
        link = f"-Wl,--no-as-needed {runtime} -Wl,-rpath,{os.path.dirname(runtime)} -Wl,--as-needed " + link
    fflags = "-O1 -g -std=f2018 -ffree-line-length-none"
    cflags = "-O1 -g -std=c99 -DINLOOP_SANITIZE -IInclude"
    b = BUILD
    steps = [
        f"gfortran {fflags} -J{b}/mod -c fortran-bindings/inloop.f90 -o {b}/mod/inloop.o",
        f"mpifort {fflags} -J{b}/mpimod -c fortran-bindings/inloop.f90 -o {b}/mpimod/inloop.o",
    ]
    programs = {}
    for src in sorted(glob.glob(os.path.join(ROOT, "Tests", "c", "test_*.c"))):
        exe = os.path.join(b, os.path.basename(src)[:-2])
        programs[os.path.basename(exe)] = f"gcc {cflags} {src} {link} -lopenblas -lpthread -lm -o {exe}"
    for src in sorted(glob.glob(os.path.join(ROOT, "Tests", "fortran", "test_*.f90"))):
        exe = os.path.join(b, "f_" + os.path.basename(src)[:-4])
        programs[os.path.basename(exe)] = f"gfortran {fflags} -I{b}/mod {b}/mod/inloop.o {src} {link} -o {exe}"
    for src in sorted(glob.glob(os.path.join(ROOT, "Tests", "openmp", "test_*.f90"))):
        exe = os.path.join(b, "omp_" + os.path.basename(src)[:-4])
        steps.append(f"gfortran {fflags} -fopenmp -J{b}/ompmod -c fortran-bindings/inloop.f90 -o {b}/ompmod/inloop.o")
        programs[os.path.basename(exe)] = f"gfortran {fflags} -fopenmp -I{b}/ompmod {b}/ompmod/inloop.o {src} {link} -o {exe}"
    for src in sorted(glob.glob(os.path.join(ROOT, "Tests", "mpi", "test_*.f90")) +
                      glob.glob(os.path.join(ROOT, "Tests", "mpi", "test_*.c"))):
        if "alloc" in src:  # counts allocations through an interposer: the ordinary run's job
            continue
        base = os.path.basename(src)
        if base.endswith(".c"):
            exe = os.path.join(b, "mpi_" + base[:-2])
            programs[os.path.basename(exe)] = f"mpicc {cflags} {src} {link} -lm -o {exe}"
        else:
            exe = os.path.join(b, "mpi_" + base[:-4] + ("_f" if os.path.exists(src[:-4] + ".c") else ""))
            programs[os.path.basename(exe)] = f"mpifort {fflags} -I{b}/mpimod {b}/mpimod/inloop.o {src} {link} -o {exe}"
    for cmd in steps:
        code, out = sh(cmd, log=log)
        if code != 0:
            check("Fortran module builds", False, out[-2000:])
            return {}
    built = {}
    for name, cmd in programs.items():
        code, out = sh(cmd, log=log)
        if code == 0:
            built[name] = os.path.join(b, name)
        else:
            check(f"{name} builds", False, out[-2000:])
    return built


def program_args(name):
    """Arguments as tools/run_tests.py gives them; None for programs that need none."""
    model = os.path.join(FIXTURES, "mlp_medium")
    return {
        "test_c": [FIXTURES, MODELS],
        "test_training": [FIXTURES, BUILD, MODELS],
        "test_golden": [FIXTURES, BUILD],
        "test_shaped": [FIXTURES],
        "test_ranges": [FIXTURES],
        "test_ensemble": [FIXTURES, BUILD],
        "f_test_ensemble": [FIXTURES],
        "test_explain": [FIXTURES],
        "f_test_ranges": [BUILD],
        "test_noise": [FIXTURES, BUILD],
        "f_test_noise": [BUILD],
        "mpi_test_mpi_noise": [model + ".safetensors", os.path.join(BUILD, "test_mpi_noise.sanitize.bin"), BUILD],
        "f_test_serial": [FIXTURES, MODELS],
        "f_test_onnx": [SHARED, MODELS, FIXTURES],
        "f_test_threads_default": [model + ".safetensors"],
        "mpi_test_mpi": [model + ".safetensors", model + ".io.bin"],
        "mpi_test_mpi_f08": [model + ".safetensors"],
        "test_abi": [FIXTURES],
        "test_busy": [FIXTURES],
        "test_threads": [FIXTURES],
        "omp_test_openmp": [model + ".safetensors"],
        "mpi_test_collective": [BUILD],
        "mpi_test_mpi_reference": [FIXTURES],
        "mpi_test_collective_f": [BUILD],
    }.get(name, [])


def asan():
    log = os.path.join(BUILD, "asan.log")
    scratch = os.path.join(ROOT, ".build-asan")
    if not build_library("address", scratch, log):
        return
    built = build_programs(os.path.join(scratch, "release"), log)
    env = dict(os.environ, LD_PRELOAD=toolchain_runtime("asan"), SWIFT_BACKTRACE="enable=no",
               # leaks: the Swift runtime's metadata caches and Open MPI's globals live until exit
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1" + symbolizer(),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for name, exe in built.items():
        if name == "f_test_error_stop":  # stops the program on purpose (error stop): not a test run
            continue
        if name == "test_threads":  # checks the thread default under a launcher: run_tests.py runs it so
            continue
        if name.startswith("mpi_"):
            for np_args in (["-np", "2"], ["-np", "3", "--oversubscribe"]):
                code, out = sh(MPIRUN + np_args + [exe] + program_args(name), env=env, timeout=1200, log=log)
                judge(f"asan: {name} on {np_args[1]} ranks", code, out)
        else:
            code, out = sh([exe] + program_args(name), env=env, timeout=1800, log=log)
            judge(f"asan: {name}", code, out)
            if name == "omp_test_openmp":  # OMP_NUM_THREADS=1 above: run it with its threads too
                code, out = sh([exe] + program_args(name), env=dict(env, OMP_NUM_THREADS="2"), timeout=1800, log=log)
                judge(f"asan: {name} on 2 threads", code, out)
    # the Swift tests, instrumented by the Swift driver itself (no preload)
    senv = dict(os.environ, SWIFT_BACKTRACE="enable=no", ASAN_OPTIONS="detect_leaks=0:halt_on_error=1" + symbolizer(),
                OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    code, out = sh(["swift", "test", "--sanitize=address", "--scratch-path", os.path.join(ROOT, ".build-asan-test")],
                   env=senv, timeout=3600, log=log)
    reports = [l for l in out.splitlines() if REPORT.search(l)]
    m = re.findall(r"Executed (\d+) tests?, with (?:\d+ tests? skipped and )?(\d+) failures?", out)
    m = sorted(m, key=lambda t: int(t[0]))  # the largest count is the run's total
    ok = code == 0 and not reports and bool(m)
    check(f"asan: swift test ({m[-1][0] if m else '?'} tests, no report)" if ok else "asan: swift test", ok,
          (reports[0] if reports else "") + out[-3000:])


def tsan():
    log = os.path.join(BUILD, "tsan.log")
    scratch = os.path.join(ROOT, ".build-tsan")
    if not build_library("thread", scratch, log):
        return
    # Linked in, not preloaded: a preloaded TSan runtime is inherited by the llvm-symbolizer it starts
    # to print a report, which cannot load it (it needs libdispatch), so the report was lost (SIGPIPE).
    built = build_programs(os.path.join(scratch, "release"), log, runtime=toolchain_runtime("tsan"))
    env = dict(os.environ, SWIFT_BACKTRACE="enable=no",
               TSAN_OPTIONS=f"halt_on_error=1:suppressions={os.path.join(ROOT, 'tools', 'tsan.supp')}" + symbolizer(),
               OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    # the programs that call InLoop from several threads at once
    threaded = [n for n in built if n in ("test_c", "test_busy") or "openmp" in n]
    for name in threaded:
        code, out = sh([built[name]] + program_args(name), env=env, timeout=3600, log=log)
        judge(f"tsan: {name}", code, out)


def main():
    kinds = sys.argv[1:] or ["asan", "tsan"]
    os.makedirs(BUILD, exist_ok=True)
    for k in kinds:
        {"asan": asan, "tsan": tsan}[k]()
    print(f"{totals['passed']} passed, {totals['failed']} failed")
    sys.exit(1 if totals["failed"] else 0)


if __name__ == "__main__":
    main()
