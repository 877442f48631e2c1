#!/usr/bin/env python3
"""Relocation test of the installed prefix (`make test-install`; the `install` suite of make test).

Installs with `make install PREFIX=<tmp>/a` (or unpacks --tarball), MOVES the prefix to <tmp>/moved/..,
and checks there, with LD_LIBRARY_PATH cleared:
  - the files the README promises; the soname, its symlinks, no absolute rpath, stripped + debug link;
  - ldd of the library and of bin/inloop: nothing from the Swift toolchain, no libswift* at all, nothing
    missing;
  - programs run with the toolchain's library directories hidden (a private mount namespace puts an
    empty tmpfs over them) and /proc/self/maps shows no mapped file from the toolchain;
  - the C example built through pkg-config, a Fortran program through pkg-config, one through CMake
    find_package(InLoop) (the module compiled by the project's compiler), one through fpm: each prints
    the reference outputs of Tests/fixtures/mlp_medium.io.bin (the NumPy reference the examples suite
    uses);
  - make install-debug puts the debug info where the debug link points; bin/inloop runs; make uninstall
    removes everything it installed.
Prints PASS/FAIL lines and `N passed, M failed`.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from run_tests import compare_printed  # noqa: E402  (the examples suite's comparison)

MODEL = os.path.join(ROOT, "Tests", "fixtures", "mlp_medium")
counts = {"passed": 0, "failed": 0}
HIDE = {"ok": False}


def check(name, ok, detail=""):
    counts["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'} install/{name}{'' if ok else ': ' + str(detail)[-2500:]}", flush=True)
    return ok


def run(cmd, env=None, cwd=None, timeout=900):
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, shell=isinstance(cmd, str))
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, repr(e)


def toolchain_dirs():
    """The Swift toolchain's runtime library directories and its root (absent: empty lists)."""
    code, out = run(["swift", "-print-target-info"])
    if code != 0:
        return [], []
    paths = json.loads(out[out.find("{"):])["paths"]
    libdirs = sorted({os.path.realpath(p) for p in paths.get("runtimeLibraryPaths", []) if os.path.isdir(p)})
    res = os.path.realpath(paths.get("runtimeResourcePath", ""))     # <root>/usr/lib/swift
    root = os.path.dirname(os.path.dirname(os.path.dirname(res))) if res else ""
    return libdirs, [root] if root and root != "/" else libdirs


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PKG_CONFIG", "CMAKE_", "FPM_"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def can_hide(libdirs):
    """Whether this process may hide directories in a private mount namespace (root, no seccomp ban)."""
    if not libdirs or not shutil.which("unshare"):
        return False
    code, _ = run(hidden("true", libdirs, force=True))
    return code == 0


def hidden(cmd, libdirs, force=False):
    """cmd in a private mount namespace with an empty tmpfs over each toolchain library directory
    (unless that is impossible here: see can_hide; ldd and /proc/self/maps are checked either way)."""
    if not (force or HIDE["ok"]):
        return ["sh", "-c", f"exec {cmd}"]
    mounts = " && ".join(f"mount -t tmpfs -o size=1m inloop-hidden '{d}'" for d in libdirs)
    inner = f"{mounts} && exec {cmd}" if mounts else f"exec {cmd}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


MAPS_C = r'''
#include <stdio.h>
#include <string.h>
#include "inloop.h"
int main(void) {   /* prints the library version, then every file mapped into this process */
    char line[4096];
    FILE *f = fopen("/proc/self/maps", "r");
    printf("version %s\n", inloop_version());
    while (f && fgets(line, sizeof line, f)) { char *p = strchr(line, '/'); if (p) printf("map %s", p); }
    return f == NULL;
}
'''

CMAKE_LISTS = '''cmake_minimum_required(VERSION 3.16)
project(inloop_consumer LANGUAGES C Fortran)
find_package(InLoop {version} REQUIRED CONFIG)
add_executable(example_f example.f90)
target_link_libraries(example_f PRIVATE InLoop::inloop_fortran)
add_executable(example_c example.c)
target_link_libraries(example_c PRIVATE InLoop::inloop)
'''

FPM_TOML = '''name = "consumer"
version = "0.1.0"
[build]
auto-executables = true
[dependencies]
inloop = {{ path = "{path}" }}
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fc", default="gfortran")
    ap.add_argument("--tarball", help="test the unpacked tarball instead of `make install`")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="inloop-install-")
    env = clean_env()
    try:
        first = os.path.join(tmp, "a")
        if a.tarball:
            with tarfile.open(a.tarball) as tar:
                tar.extractall(tmp)
            tops = [d for d in os.listdir(tmp) if d != "a"]
            ok = len(tops) == 1
            check("tarball has one top directory", ok, tops)
            if ok:
                os.rename(os.path.join(tmp, tops[0]), first)
            ok = ok and os.path.exists(os.path.join(first, "share", "doc", "inloop", "BUILDINFO"))
        else:
            code, out = run(["make", "-s", "install", f"PREFIX={first}", f"FC={a.fc}"], cwd=ROOT, timeout=3000)
            ok = check("make install PREFIX=<tmp>", code == 0, out)
            code, out = run(["make", "-s", "install-debug", f"PREFIX={first}", f"FC={a.fc}"], cwd=ROOT, timeout=3000)
            check("make install-debug PREFIX=<tmp>", code == 0, out)
        if not ok:
            return
        # move the prefix: nothing may remember where it was installed
        prefix = os.path.join(tmp, "moved", "somewhere", "inloop")
        os.makedirs(os.path.dirname(prefix))
        shutil.move(first, prefix)
        lib = os.path.join(prefix, "lib")
        with open(os.path.join(ROOT, "Sources", "InLoop", "Version.swift")) as fh:
            version = re.search(r'string = "([0-9.]+)"', fh.read()).group(1)
        major = version.split(".")[0]
        expect = [f"lib/libInLoop.so.{version}", f"lib/libInLoop.so.{major}", "lib/libInLoop.so",
                  "lib/libinloop_fortran.a", "include/inloop.h", "include/inloop.f90", "include/inloop_c.inc", "include/inloop.mod",
                  "lib/pkgconfig/inloop.pc", "lib/pkgconfig/inloop-fortran.pc",
                  "lib/cmake/InLoop/InLoopConfig.cmake", "lib/cmake/InLoop/InLoopConfigVersion.cmake",
                  "bin/inloop", "share/doc/inloop/README.md", "share/doc/inloop/BUILDINFO",
                  "share/inloop/fpm/fpm.toml", "share/inloop/fpm/fortran-bindings/inloop.f90",
                  "share/inloop/fpm/fortran-bindings/inloop_c.inc"]
        missing = [f for f in expect if not os.path.lexists(os.path.join(prefix, f))]
        check("the prefix has library, headers, module, pkg-config, CMake, fpm, CLI, docs", not missing, missing)
        so = os.path.join(lib, "libInLoop.so")
        code, dyn = run(["readelf", "-d", so])
        soname = re.findall(r"Library soname: \[([^\]]+)\]", dyn)
        check(f"soname libInLoop.so.{major}; libInLoop.so -> libInLoop.so.{major} -> libInLoop.so.{version}",
              soname == [f"libInLoop.so.{major}"] and os.readlink(so) == f"libInLoop.so.{major}"
              and os.readlink(os.path.join(lib, f"libInLoop.so.{major}")) == f"libInLoop.so.{version}",
              f"soname {soname}")
        paths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[([^\]]+)\]", dyn)
        absolute = [p for p in ":".join(paths).split(":") if p and not p.startswith("$ORIGIN")]
        check("no absolute rpath in libInLoop.so", not absolute, absolute)
        code, sec = run(["readelf", "-S", "-W", so])
        check("libInLoop.so stripped, with a debug link (debug info apart: make install-debug)",
              ".debug_info" not in sec and ".symtab" not in sec and ".gnu_debuglink" in sec, sec[-800:])
        if not a.tarball:
            dbg = os.path.join(lib, ".debug", f"libInLoop.so.{version}.debug")
            code, link = run(["readelf", "--string-dump=.gnu_debuglink", so])
            code2, dsec = run(["readelf", "-S", "-W", dbg])
            check("install-debug: lib/.debug has the debug info the library's debug link names",
                  code == 0 and os.path.basename(dbg) in link and code2 == 0 and ".debug_info" in dsec,
                  f"{link[-300:]} {dsec[-300:]}")
        with open(os.path.join(ROOT, "fpm.toml")) as fh:
            fpm_version = re.search(r'^version = "([^"]+)"', fh.read(), re.M)
        check("fpm.toml version is the library's", fpm_version and fpm_version.group(1) == version,
              f"fpm.toml {fpm_version and fpm_version.group(1)}, library {version}")

        libdirs, roots = toolchain_dirs()
        HIDE["ok"] = can_hide(libdirs)
        print(f"   Swift toolchain: {roots or 'none found'}; library directories hidden: {libdirs if HIDE['ok'] else 'none'}")
        if libdirs and not HIDE["ok"]:
            print("SKIP install/hiding the toolchain: no private mount namespace here (unshare); ldd and "
                  "/proc/self/maps still checked")
        for path in (so, os.path.join(prefix, "bin", "inloop")):
            code, out = run(["ldd", path], env=env)
            bad = [l.strip() for l in out.splitlines()
                   if "not found" in l or "libswift" in l or "Foundation" in l or "libdispatch" in l
                   or "libBlocksRuntime" in l or any(r and r in l for r in roots)]
            check(f"ldd {os.path.relpath(path, prefix)}: nothing from the Swift toolchain, nothing missing",
                  code == 0 and not bad, bad or out)

        # the C example and a /proc/self/maps probe, through pkg-config, run with the toolchain hidden
        pc_env = dict(env, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
        code, flags = run(["pkg-config", "--cflags", "--libs", "inloop"], env=pc_env)
        check("pkg-config inloop points into the moved prefix", code == 0 and f"-L{lib}" in flags.replace("//", "/")
              and "/a/" not in flags, flags)
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        with open(os.path.join(work, "maps.c"), "w") as fh:
            fh.write(MAPS_C)
        for name, src in (("example_c", os.path.join(ROOT, "examples", "c", "example.c")),
                          ("maps", os.path.join(work, "maps.c"))):
            code, out = run(f"gcc -O2 -std=c99 -Wall -Wextra -pedantic -Werror {src} $(pkg-config --cflags --libs inloop) "
                            f"-o {work}/{name}", env=pc_env)
            check(f"{name}: builds with pkg-config inloop", code == 0, out)
        code, out = run(hidden(f"{work}/maps", libdirs), env=env)
        maps = [l[4:] for l in out.splitlines() if l.startswith("map ")]
        from_toolchain = sorted({m for m in maps if any(r and m.startswith(r) for r in roots)})
        ours = sorted({m for m in maps if "libInLoop" in m})
        check("toolchain hidden: the program runs, maps libInLoop from the moved prefix and nothing of the toolchain",
              code == 0 and f"version {version}" in out and ours == [os.path.join(lib, f"libInLoop.so.{version}")]
              and not from_toolchain, f"exit {code}; libInLoop mapped from {ours}; toolchain files {from_toolchain}; {out[-600:]}")
        if HIDE["ok"]:
            code, out = run(hidden(f"ls -A {libdirs[0]}", libdirs), env=env)
            check("the toolchain's library directory is really hidden in that namespace", code == 0 and out.strip() == "",
                  out[-300:])

        def ran(name, exe):
            code, out = run(hidden(f"{exe} {MODEL}.safetensors", libdirs), env=env)
            ok, detail = compare_printed(out, MODEL + ".io.bin") if code == 0 else (False, f"exit {code}: {out[-1500:]}")
            check(f"{name}: prints the reference outputs (toolchain hidden)", ok, detail)

        ran("C example via pkg-config", f"{work}/example_c")
        fortran = os.path.join(ROOT, "examples", "fortran", "example.f90")
        code, out = run(f"{a.fc} {fortran} $(pkg-config --cflags --libs inloop-fortran) -o {work}/example_f", env=pc_env, cwd=work)
        if check(f"Fortran example builds with {a.fc} and pkg-config inloop-fortran", code == 0, out):
            ran("Fortran example via pkg-config", f"{work}/example_f")

        # CMake: find_package(InLoop) from the moved prefix; the module compiled by the project's compiler
        if shutil.which("cmake"):
            cm = os.path.join(tmp, "cmake")
            os.makedirs(cm)
            shutil.copy(fortran, cm)
            shutil.copy(os.path.join(ROOT, "examples", "c", "example.c"), cm)
            with open(os.path.join(cm, "CMakeLists.txt"), "w") as fh:
                fh.write(CMAKE_LISTS.format(version=version))
            cenv = dict(env, FC=shutil.which(a.fc) or a.fc, CC="gcc")
            code, out = run(["cmake", "-S", cm, "-B", os.path.join(cm, "b"), f"-DCMAKE_PREFIX_PATH={prefix}"], env=cenv)
            if code == 0:
                code, out2 = run(["cmake", "--build", os.path.join(cm, "b")], env=cenv)
                out += out2
            if check(f"CMake find_package(InLoop {version}) builds a Fortran ({a.fc}) and a C program", code == 0, out):
                ran("CMake InLoop::inloop_fortran program", os.path.join(cm, "b", "example_f"))
                ran("CMake InLoop::inloop program", os.path.join(cm, "b", "example_c"))
            with open(os.path.join(cm, "CMakeLists.txt"), "w") as fh:
                fh.write(CMAKE_LISTS.format(version=f"{int(major) + 1}.0"))
            code, out = run(["cmake", "-S", cm, "-B", os.path.join(cm, "b3"), f"-DCMAKE_PREFIX_PATH={prefix}"], env=cenv)
            check("CMake refuses an incompatible version request", code != 0 and "InLoop" in out, out[-800:])
        else:
            check("cmake available (make install-test-deps)", False, "cmake not found")

        # fpm: a project that depends on the installed fpm package of the bindings
        if shutil.which("fpm"):
            fp = os.path.join(tmp, "fpm")
            os.makedirs(os.path.join(fp, "app"))
            shutil.copy(fortran, os.path.join(fp, "app", "main.f90"))
            with open(os.path.join(fp, "fpm.toml"), "w") as fh:
                # fpm 0.12 takes a dependency path relative to the project (an absolute one is mangled)
                fh.write(FPM_TOML.format(path=os.path.relpath(os.path.join(prefix, "share", "inloop", "fpm"), fp)))
            fenv = dict(env, FPM_FC=a.fc)
            code, out = run(["fpm", "build", "--link-flag", f"-L{lib} -Wl,-rpath,{lib}"], env=fenv, cwd=fp)
            exes = [e for e in glob.glob(os.path.join(fp, "build", "*", "app", "*")) if os.access(e, os.X_OK)]
            if check(f"fpm builds a program depending on the installed bindings ({a.fc})", code == 0 and len(exes) == 1,
                     out):
                ran("fpm program", exes[0])
        else:
            check("fpm available (make install-test-deps)", False, "fpm not found")

        code, out = run(hidden(f"{prefix}/bin/inloop inspect {MODEL}.safetensors", libdirs), env=env)
        check("bin/inloop inspect runs from the moved prefix (toolchain hidden)", code == 0 and out.strip() != "", out[-800:])

        if not a.tarball:
            code, out = run(["make", "-s", "uninstall", f"PREFIX={prefix}"], cwd=ROOT)
            left = [os.path.relpath(os.path.join(r, f), prefix) for r, _, fs in os.walk(prefix) for f in fs]
            check("make uninstall removes every installed file", code == 0 and not left, left or out)
    finally:
        if a.keep:
            print(f"   kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{counts['passed']} passed, {counts['failed']} failed")
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0 if counts["failed"] == 0 else 1)
