#!/usr/bin/env python3
"""Generate fortran-bindings/inloop_c.inc, the Fortran module `inloop_c`, from Include/inloop.h.

`inloop_c` holds the raw `bind(C)` interface of every function of the C header (`c_inloop_<name>`
binds `inloop_<name>`), in the header's sections and order with the header's comments, and the
status codes of the `inloop_status` enum as `integer(c_int32_t)` parameters. The idiomatic module
`inloop` (fortran-bindings/inloop.f90) includes this file and uses the module, so compiling
inloop.f90 as before gives both modules.

Types, argument by argument (a C type the table does not know stops the generator):
  int32_t, int64_t, double          integer(c_int32_t) / integer(c_int64_t) / real(c_double), value
  inloop_model *, inloop_trainer *  type(c_ptr), value               (handles)
  inloop_model **, inloop_trainer **, const char **
                                    type(c_ptr), intent(out)         (a handle or string stored by C)
  const char *                      character(kind=c_char), intent(in) :: s(*)  (NUL-terminated;
                                    type(c_ptr), value where C accepts NULL: NULLABLE below)
  const void *, float *, double *, const float *, const double *
                                    type(c_ptr), value               (arrays of any rank: c_loc)
  const int64_t *                   integer(c_int64_t), intent(in) :: a(*)
  int64_t *, int32_t *              integer(c_int64_t / c_int32_t), intent(out) :: a scalar, or
                                    a(*) for the array parameters (ARRAY_PARAMS), or type(c_ptr), value
                                    where C accepts NULL (NULLABLE)
  const float *const *, float *const * (and double), const char *const *, inloop_trainer *const *
                                    type(c_ptr), intent(in) :: a(*)  (arrays of c_loc addresses)
Returns: inloop_status -> integer(c_int32_t) :: status; const char * -> type(c_ptr); int32_t -> integer(c_int32_t).

It also writes fortran-bindings/inloop.f90 from the fypp template fortran-bindings/inloop.fypp, in
which each real32/real64 pair of procedures (forward, inloop_arg, step, evaluate, jvp, vjp, jacobian)
is written once in a `#:for k, s, c in KINDS` block (fypp: `pip install fypp`, as fortran-lang stdlib
uses it). Both outputs are committed, so building needs neither this script nor fypp.

  tools/gen_fortran.py [--check]

--check regenerates into memory and exits 1, printing a diff, if a committed file differs; without
fypp the twins are not checked (a `SKIP` line says so) and the exit status is 2 if all else agrees.
"""
import argparse
import difflib
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pointer parameters that are arrays (the C comment says how many values), not one value stored by C.
ARRAY_PARAMS = {"dims", "in_ranks", "in_dims", "out_capacity", "out_ranks", "out_dims", "counts"}
# (function, parameter): pointers C accepts as NULL, passed as type(c_ptr) so Fortran can give c_null_ptr.
NULLABLE = {("inloop_trainer_create_from_model", "config"),
            ("inloop_model_run_shaped_f32", "out_ranks"), ("inloop_model_run_shaped_f32", "out_dims"),
            ("inloop_model_run_shaped_f64", "out_ranks"), ("inloop_model_run_shaped_f64", "out_dims")}
HANDLES = {"inloop_model", "inloop_trainer"}
KIND = {"int32_t": "c_int32_t", "int64_t": "c_int64_t", "double": "c_double"}
WIDTH = 132


def parse_header(text):
    """(enum cases [(name, value, comment)], sections [(title, [functions])]) of the generated header;
    a function is (name, return type, [(type, name)], comment lines)."""
    enum = [(m.group(2), int(m.group(3)), m.group(1))
            for m in re.finditer(r"/// (.*)\n\s+(INLOOP_\w+) = (\d+)", text)]
    sections, comment = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("/* ====") and i + 1 < len(lines):
            sections.append((lines[i + 1][3:].strip(), []))
            continue
        if line.startswith("///"):
            comment.append(line[3:].strip())
            continue
        m = re.match(r"^(.*?)\b(inloop_\w+)\((.*)\);$", line)
        if m:
            if not sections:
                raise SystemExit(f"gen_fortran: {m.group(2)} comes before the first section")
            params = [] if m.group(3) == "void" else \
                [tuple(re.match(r"^(.*?)\s*(\w+)$", p.strip()).groups()) for p in m.group(3).split(",")]
            sections[-1][1].append((m.group(2), m.group(1).strip(), params, comment))
        if not line.startswith("///"):
            comment = []
    return enum, sections


def fortran_param(fname, ctype, pname):
    """(declaration, iso_c_binding names it needs) for one C parameter."""
    t = ctype.replace(" ", "")
    if t in KIND:
        k = KIND[t]
        return (f"{'real' if t == 'double' else 'integer'}({k}), value :: {pname}", {k})
    if t in {h + "*" for h in HANDLES} or t in {"constvoid*", "float*", "double*", "constfloat*", "constdouble*"}:
        return f"type(c_ptr), value :: {pname}", {"c_ptr"}
    if t in {h + "**" for h in HANDLES} or t == "constchar**":
        return f"type(c_ptr), intent(out) :: {pname}", {"c_ptr"}
    if t == "constchar*":
        if (fname, pname) in NULLABLE:
            return f"type(c_ptr), value :: {pname}", {"c_ptr"}
        return f"character(kind=c_char), intent(in) :: {pname}(*)", {"c_char"}
    if t == "constint64_t*":
        return f"integer(c_int64_t), intent(in) :: {pname}(*)", {"c_int64_t"}
    if t in ("int64_t*", "int32_t*"):
        k = KIND[t[:-1]]
        if (fname, pname) in NULLABLE:
            return f"type(c_ptr), value :: {pname}", {"c_ptr"}
        return f"integer({k}), intent(out) :: {pname}{'(*)' if pname in ARRAY_PARAMS else ''}", {k}
    if t in ("constfloat*const*", "float*const*", "constdouble*const*", "double*const*", "constchar*const*") \
            or t in {h + "*const*" for h in HANDLES}:
        return f"type(c_ptr), intent(in) :: {pname}(*)", {"c_ptr"}
    raise SystemExit(f"gen_fortran: {fname}: no Fortran type for parameter '{pname}' of C type '{ctype}'")


def fortran_result(fname, ctype):
    t = ctype.replace(" ", "")
    if t == "inloop_status":
        return "status", "integer(c_int32_t) :: status", {"c_int32_t"}
    if t == "constchar*":
        return "s", "type(c_ptr) :: s", {"c_ptr"}
    if t in KIND:
        return "n", f"{'real' if t == 'double' else 'integer'}({KIND[t]}) :: n", {KIND[t]}
    raise SystemExit(f"gen_fortran: {fname}: no Fortran type for its C result type '{ctype}'")


def wrap(head, items, tail, indent):
    """`head(items...)tail` on lines of at most WIDTH columns, continued with &."""
    out, line = [], indent + head + "("
    for k, it in enumerate(items):
        piece = it + (", " if k + 1 < len(items) else ")")
        if len(line) + len(piece.rstrip()) + 2 > WIDTH:
            out.append(line.rstrip() + " &")
            line = indent + "        " + piece
        else:
            line += piece
    if not items:
        line += ")"
    if len(line) + len(tail) + 2 > WIDTH:
        out.append(line.rstrip() + " &")
        line = indent + "        " + tail.strip()
    else:
        line += tail
    out.append(line)
    return out


def comment_lines(text, indent):
    out = []
    for c in text:
        if not c:
            out.append(indent + "!>")
            continue
        out += textwrap.wrap(c, WIDTH, initial_indent=indent + "!> ", subsequent_indent=indent + "!> ",
                             break_long_words=False, break_on_hyphens=False)
    return out


def generate(header):
    enum, sections = parse_header(header)
    if not enum or not sections:
        raise SystemExit("gen_fortran: no inloop_status enum or no sections found in the header")
    names = [f"c_{f[0]}" for _, fs in sections for f in fs]
    o = ["! inloop_c: the raw bind(C) interfaces of libInLoop.so, one per function of Include/inloop.h, and",
         "! the status codes. GENERATED by tools/gen_fortran.py from Include/inloop.h: do not edit; run",
         "! `make header` (which regenerates both). Included by inloop.f90 (module inloop), which uses it.",
         "!",
         "! c_inloop_<name> binds the C function inloop_<name>: see Include/inloop.h for what it does, its",
         "! statuses and who owns what. Arrays are passed as c_loc addresses, strings to C NUL-terminated",
         "! (trim(s)//c_null_char), strings from C as type(c_ptr); indices are 0-based, as in C.",
         "module inloop_c",
         "    use, intrinsic :: iso_c_binding, only: c_ptr, c_char, c_int32_t, c_int64_t, c_double",
         "    implicit none",
         "    private",
         ""]
    for group in ([e[0] for e in enum], names):
        line = "    public :: "
        for k, n in enumerate(group):
            piece = n + ("" if k == len(group) - 1 else ", ")
            if len(line) + len(piece) + 2 > WIDTH:
                o.append(line.rstrip() + " &")
                line = "        " + piece
            else:
                line += piece
        o.append(line)
    o.append("")
    o.append("    ! Status codes (enum inloop_status)")
    for n, v, c in enum:
        o += comment_lines([c], "    ")
        o.append(f"    integer(c_int32_t), parameter :: {n} = {v}")
    o += ["", "    interface"]
    for title, funcs in sections:
        o.append("        ! " + "-" * 8 + " " + title)
        for fname, ret, params, comment in funcs:
            rname, rdecl, needs = fortran_result(fname, ret)
            decls = []
            for ctype, pname in params:
                d, k = fortran_param(fname, ctype, pname)
                decls.append(d)
                needs |= k
            o += comment_lines(comment, "        ")
            o += wrap(f"function c_{fname}", [p for _, p in params], f' bind(C, name="{fname}") result({rname})', "        ")
            order = ["c_ptr", "c_char", "c_int32_t", "c_int64_t", "c_double"]
            o.append("            import :: " + ", ".join(n for n in order if n in needs))
            o += ["            " + d for d in decls]
            o.append("            " + rdecl)
            o.append("        end function")
            o.append("")
    o[-1:] = ["    end interface", "end module inloop_c", ""]
    for line in o:
        if len(line) > WIDTH:
            raise SystemExit(f"gen_fortran: line longer than {WIDTH} columns: {line!r}")
    return "\n".join(o)


def twins(template):
    """inloop.f90 from its fypp template, or None when fypp cannot be imported."""
    try:
        import fypp
    except ImportError:
        return None
    opts = fypp.FyppOptions()
    opts.no_folding = True          # keep the template's lines as they are (all within 132 columns)
    opts.line_numbering = False
    return fypp.Fypp(opts).process_text(template)


def emit(path, text, check):
    """Writes text to path, or with check compares; returns 0 when up to date or written, else 1."""
    rel = os.path.relpath(path, ROOT)
    if not check:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"gen_fortran: wrote {rel}")
        return 0
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if old != text:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                   rel + " (committed)", rel + " (generated)"))
        print(f"gen_fortran: {rel} is stale; run `make header` and commit it")
        return 1
    print(f"gen_fortran: {rel} is up to date")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    fb = os.path.join(ROOT, "fortran-bindings")
    with open(os.path.join(ROOT, "Include", "inloop.h"), encoding="utf-8") as f:
        code = emit(os.path.join(fb, "inloop_c.inc"), generate(f.read()), a.check)
    with open(os.path.join(fb, "inloop.fypp"), encoding="utf-8") as f:
        text = twins(f.read())
    if text is None:
        print("SKIP gen_fortran: fypp cannot be imported (pip install fypp): inloop.f90 not regenerated from inloop.fypp")
        return code or 2
    return code | emit(os.path.join(fb, "inloop.f90"), text, a.check)


if __name__ == "__main__":
    sys.exit(main())
