#!/usr/bin/env python3
"""Writes and copies InLoop's relocatable install prefix (the Makefile's install targets call it).

  install.py stage --stage DIR --build .build-static/release --version V --mpi openmpi|mpich --fc FC
      lays out the prefix in DIR: lib/libInLoop.so.V (stripped; soname libInLoop.so.MAJOR; symlinks),
      lib/libinloop_fortran.a + include/inloop.mod (module compiled with FC), include/inloop.h and
      inloop.f90, lib/pkgconfig/inloop{,-fortran}.pc, lib/cmake/InLoop/, bin/inloop,
      share/doc/inloop/ (README, docs, examples, BUILDINFO: glibc, CPU and MPI it needs),
      share/inloop/fpm/ (an fpm package of the bindings); the debug info goes to DIR.debug/.
  install.py install --stage DIR --prefix P        copies the prefix, records share/inloop/manifest.txt
  install.py install-debug --stage DIR --prefix P  adds lib/.debug/libInLoop.so.V.debug (gdb finds it)
  install.py uninstall --prefix P                  removes what the manifest lists
  install.py dist --stage DIR --name NAME --out D  D/NAME.tar.gz, one top directory NAME/

Everything in the prefix is relative to where it is: pkg-config files use ${pcfiledir}, the CMake
package paths relative to its own file, and nothing has an absolute rpath.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join("share", "inloop", "manifest.txt")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw).stdout


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def needed(lib):
    """DT_NEEDED entries of an ELF file."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", sh("readelf", "-d", lib))


def glibc_baseline(*files):
    """Highest GLIBC_x.y symbol version the files need."""
    versions = set()
    for f in files:
        versions |= set(re.findall(r"\bGLIBC_(\d+(?:\.\d+)+)\b", sh("objdump", "-T", f)))
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")), default="?")


def fortran_compiler_id(fc):
    try:
        return sh(fc, "--version").splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError):
        return fc


def stage(a):
    d = os.path.abspath(a.stage)
    dbg = d + ".debug"
    for p in (d, dbg):
        shutil.rmtree(p, ignore_errors=True)
    major = a.version.split(".")[0]
    real = f"libInLoop.so.{a.version}"
    lib = os.path.join(d, "lib")
    os.makedirs(lib)
    os.makedirs(dbg)
    # the library: debug info apart (objcopy), stripped, linked to its debug file by a gnu-debuglink
    src = os.path.join(a.build, "libInLoop.so")
    out = os.path.join(lib, real)
    shutil.copy2(src, out)
    sh("objcopy", "--only-keep-debug", "--compress-debug-sections", out, os.path.join(dbg, real + ".debug"))
    sh("strip", "--strip-unneeded", out)
    sh("objcopy", "--add-gnu-debuglink=" + os.path.join(dbg, real + ".debug"), out)
    os.chmod(out, 0o755)
    soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", sh("readelf", "-d", out))
    if not soname or soname.group(1) != f"libInLoop.so.{major}":
        sys.exit(f"{src}: soname {soname.group(1) if soname else 'missing'}, expected libInLoop.so.{major}")
    os.symlink(real, os.path.join(lib, f"libInLoop.so.{major}"))
    os.symlink(f"libInLoop.so.{major}", os.path.join(lib, "libInLoop.so"))
    # the CLI (statically linked Swift runtime too)
    os.makedirs(os.path.join(d, "bin"))
    shutil.copy2(os.path.join(a.build, "inloop"), os.path.join(d, "bin", "inloop"))
    sh("strip", "--strip-unneeded", os.path.join(d, "bin", "inloop"))
    # headers, the Fortran module source, and the module compiled with the configured Fortran compiler
    inc = os.path.join(d, "include")
    os.makedirs(inc)
    shutil.copy2(os.path.join(ROOT, "Include", "inloop.h"), inc)
    shutil.copy2(os.path.join(ROOT, "fortran-bindings", "inloop.f90"), inc)
    shutil.copy2(os.path.join(ROOT, "fortran-bindings", "inloop_c.inc"), inc)   # included by inloop.f90
    obj = os.path.join(dbg, "inloop_fortran.o")
    fflags = ["-O2", "-fPIC"]
    modflag = ["-J", inc] if "flang" not in os.path.basename(a.fc) else ["-module-dir", inc]
    sh(a.fc, *fflags, *modflag, "-c", os.path.join(ROOT, "fortran-bindings", "inloop.f90"), "-o", obj)
    sh("ar", "rcs", os.path.join(lib, "libinloop_fortran.a"), obj)
    fc_id = fortran_compiler_id(a.fc)
    # pkg-config: the prefix is found from the .pc file's own directory
    desc = "neural-network inference and training for Fortran and C models"
    common = ("prefix=${pcfiledir}/../..\nexec_prefix=${prefix}\nlibdir=${prefix}/lib\n"
              "includedir=${prefix}/include\n")
    write(os.path.join(lib, "pkgconfig", "inloop.pc"),
          f"{common}\nName: InLoop\nDescription: InLoop C API ({desc})\nVersion: {a.version}\n"
          "Libs: -L${libdir} -lInLoop -Wl,-rpath,${libdir}\nCflags: -I${includedir}\n")
    write(os.path.join(lib, "pkgconfig", "inloop-fortran.pc"),
          f"{common}fortran_compiler={fc_id}\n\nName: InLoop Fortran\n"
          f"Description: InLoop Fortran module `inloop` compiled with {fc_id} (other compilers: "
          "compile ${includedir}/inloop.f90 yourself, or use the CMake package)\n"
          f"Version: {a.version}\nRequires: inloop = {a.version}\n"
          "Libs: -L${libdir} -linloop_fortran\nCflags: -I${includedir}\n")
    # CMake package: InLoop::inloop (C), InLoop::inloop_fortran (the module, compiled by the
    # project's own Fortran compiler from the installed source)
    cm = os.path.join(lib, "cmake", "InLoop")
    write(os.path.join(cm, "InLoopConfig.cmake"), CMAKE_CONFIG.replace("@VERSION@", a.version)
          .replace("@MAJOR@", major).replace("@MPI@", a.mpi))
    write(os.path.join(cm, "InLoopConfigVersion.cmake"), CMAKE_VERSION.replace("@VERSION@", a.version))
    # fpm: the bindings as an fpm package (the same manifest as the repository's fpm.toml)
    fpm = os.path.join(d, "share", "inloop", "fpm")
    os.makedirs(os.path.join(fpm, "fortran-bindings"))
    shutil.copy2(os.path.join(ROOT, "fpm.toml"), fpm)
    shutil.copy2(os.path.join(ROOT, "fortran-bindings", "inloop.f90"), os.path.join(fpm, "fortran-bindings"))
    shutil.copy2(os.path.join(ROOT, "fortran-bindings", "inloop_c.inc"), os.path.join(fpm, "fortran-bindings"))
    # documentation, examples, and what the binaries need of the machine
    doc = os.path.join(d, "share", "doc", "inloop")
    os.makedirs(os.path.join(doc, "examples"))
    shutil.copy2(os.path.join(ROOT, "README.md"), doc)
    for f in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if f.endswith((".md", ".png")):
            shutil.copy2(os.path.join(ROOT, "docs", f), doc)
    for f in ("examples/c/example.c", "examples/fortran/example.f90", "Tests/fixtures/mlp_medium.safetensors",
              "Tests/fixtures/mlp_medium.io.bin"):
        shutil.copy2(os.path.join(ROOT, f), os.path.join(doc, "examples"))
    libs = needed(out)
    mpi_lib = [n for n in libs if re.match(r"libmpi(ch)?\.so", n)]
    mpi_version = sh("pkg-config", "--modversion", "mpich" if a.mpi == "mpich" else "ompi-c").strip()
    write(os.path.join(doc, "BUILDINFO"),
          f"InLoop {a.version} for Linux {os.uname().machine}\n"
          f"glibc:    {glibc_baseline(out, os.path.join(d, 'bin', 'inloop'))} or newer\n"
          "CPU:      x86-64 baseline (SSE2; no AVX needed; OpenBLAS picks its kernels at run time)\n"
          f"MPI:      {'MPICH' if a.mpi == 'mpich' else 'Open MPI'} {mpi_version} ({', '.join(mpi_lib)}); "
          "run with the same MPI's mpirun\n"
          f"Fortran:  include/inloop.mod and lib/libinloop_fortran.a from {fc_id}; other compilers "
          "compile include/inloop.f90 (CMake: InLoop::inloop_fortran does)\n"
          f"needs:    {', '.join(libs)}\n"
          "Swift:    runtime linked in statically; no Swift toolchain needed\n")


CMAKE_CONFIG = r'''# InLoop CMake package (relocatable: every path is relative to this file).
#   find_package(InLoop REQUIRED)
#   target_link_libraries(my_c_program PRIVATE InLoop::inloop)          # C: inloop.h, libInLoop.so
#   target_link_libraries(my_model PRIVATE InLoop::inloop_fortran)      # Fortran: module inloop
# InLoop::inloop_fortran is compiled in your build tree by your project's Fortran compiler from the
# installed inloop.f90 (a .mod file only works with the compiler that wrote it); it exists when the
# Fortran language is enabled before find_package.
get_filename_component(_inloop_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(InLoop_VERSION "@VERSION@")
set(InLoop_MPI "@MPI@")
set(InLoop_INCLUDE_DIRS "${_inloop_prefix}/include")
set(InLoop_LIBRARIES InLoop::inloop)
if(NOT TARGET InLoop::inloop)
  add_library(InLoop::inloop SHARED IMPORTED)
  set_target_properties(InLoop::inloop PROPERTIES
    IMPORTED_LOCATION "${_inloop_prefix}/lib/libInLoop.so.@VERSION@"
    IMPORTED_SONAME "libInLoop.so.@MAJOR@"
    INTERFACE_INCLUDE_DIRECTORIES "${_inloop_prefix}/include")
endif()
get_property(_inloop_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if("Fortran" IN_LIST _inloop_languages AND NOT TARGET InLoop::inloop_fortran)
  if(NOT TARGET inloop_fortran)
    add_library(inloop_fortran STATIC "${_inloop_prefix}/include/inloop.f90")
    set_target_properties(inloop_fortran PROPERTIES
      Fortran_MODULE_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}/inloop_fortran_mod"
      POSITION_INDEPENDENT_CODE ON)
    target_include_directories(inloop_fortran INTERFACE "${CMAKE_CURRENT_BINARY_DIR}/inloop_fortran_mod")
    target_link_libraries(inloop_fortran PUBLIC InLoop::inloop)
  endif()
  add_library(InLoop::inloop_fortran ALIAS inloop_fortran)
endif()
if("inloop_fortran" IN_LIST InLoop_FIND_COMPONENTS AND NOT TARGET InLoop::inloop_fortran)
  set(InLoop_FOUND FALSE)
  set(InLoop_NOT_FOUND_MESSAGE "InLoop::inloop_fortran needs the Fortran language: enable it before find_package(InLoop)")
endif()
unset(_inloop_languages)
unset(_inloop_prefix)
'''

CMAKE_VERSION = r'''# Same major version is compatible (0.x: same minor), like write_basic_package_version_file(SameMajorVersion).
set(PACKAGE_VERSION "@VERSION@")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _have "${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+" _have_major "${PACKAGE_VERSION}")
  if(_have_major STREQUAL "0")
    set(_want "${PACKAGE_FIND_VERSION_MAJOR}.${PACKAGE_FIND_VERSION_MINOR}")
  else()
    set(_have "${_have_major}")
    set(_want "${PACKAGE_FIND_VERSION_MAJOR}")
  endif()
  if(_want STREQUAL _have)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  endif()
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "" AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")
  set(PACKAGE_VERSION "${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
'''


def files_of(d):
    """Relative paths of the files and symlinks under d, sorted."""
    out = []
    for root, dirs, files in os.walk(d):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(root, x))]:
            out.append(os.path.relpath(os.path.join(root, f), d))
    return sorted(out)


def install(a):
    if not os.path.isdir(a.stage):
        sys.exit(f"{a.stage}: not staged (make stage)")
    prefix = os.path.abspath(a.prefix)
    files = files_of(a.stage) + [MANIFEST]
    for rel in files[:-1]:
        src, dst = os.path.join(a.stage, rel), os.path.join(prefix, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            os.remove(dst)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    write(os.path.join(prefix, MANIFEST), "\n".join(files) + "\n")
    print(f"installed InLoop in {prefix} ({len(files)} files)")


def install_debug(a):
    dbg = os.path.abspath(a.stage) + ".debug"
    names = sorted(os.listdir(dbg))
    prefix = os.path.abspath(a.prefix)
    dst = os.path.join(prefix, "lib", ".debug")
    os.makedirs(dst, exist_ok=True)
    rels = []
    for f in names:
        if f.startswith("libInLoop.so") and f.endswith(".debug"):
            shutil.copy2(os.path.join(dbg, f), dst)
            rels.append(os.path.join("lib", ".debug", f))
    man = os.path.join(prefix, MANIFEST)
    if os.path.exists(man):
        with open(man) as fh:
            have = fh.read().split()
        write(man, "\n".join(sorted(set(have) | set(rels))) + "\n")
    print(f"installed {', '.join(rels)} in {prefix}")


def uninstall(a):
    prefix = os.path.abspath(a.prefix)
    man = os.path.join(prefix, MANIFEST)
    if not os.path.exists(man):
        sys.exit(f"{man}: no InLoop installation recorded in {prefix}")
    with open(man) as fh:
        files = [f for f in fh.read().split() if f and not f.startswith(("/", ".."))]
    dirs = set()
    for rel in files:
        p = os.path.join(prefix, rel)
        if os.path.lexists(p):
            os.remove(p)
        d = os.path.dirname(rel)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    for d in sorted(dirs, key=lambda x: -x.count("/")):   # deepest first; only directories left empty
        try:
            os.rmdir(os.path.join(prefix, d))
        except OSError:
            pass
    print(f"removed InLoop from {prefix} ({len(files)} files)")


def dist(a):
    path = os.path.join(a.out, a.name + ".tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(a.stage, arcname=a.name)
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("stage", "install", "install-debug", "uninstall", "dist"))
    ap.add_argument("--stage")
    ap.add_argument("--build")
    ap.add_argument("--version")
    ap.add_argument("--mpi", default="openmpi")
    ap.add_argument("--fc", default="gfortran")
    ap.add_argument("--prefix")
    ap.add_argument("--name")
    ap.add_argument("--out")
    a = ap.parse_args()
    {"stage": stage, "install": install, "install-debug": install_debug, "uninstall": uninstall, "dist": dist}[a.command](a)


if __name__ == "__main__":
    main()
