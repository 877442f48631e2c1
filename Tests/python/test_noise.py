#!/usr/bin/env python3
"""Noise inputs and the CRPS loss of libInLoop.so against independent NumPy references (ctypes).

  * inloop_noise_normal against Philox4x32-10 + Box-Muller written here in NumPy (uint64 arithmetic,
    the published round constants), for assorted seeds, steps, columns and features;
  * a model with noise features (inloop_model_set_noise_input / set_noise_step, block/stride column
    numbering) against a plain forward of inputs filled by the NumPy generator: bitwise;
  * the ensemble-CRPS trainer (loss {type: crps, members: M}, noise: {...}): inloop_trainer_evaluate
    against NumPy's CRPS of the rows the trainer builds (each sample M times, noise from the NumPy
    generator at (seed, step 0, column s*M + m)) run through the trainer's model (copy_model, whose
    weights are rounded to float32: 1e-6).

    python3 Tests/python/test_noise.py [--lib PATH]
Prints PASS/FAIL lines and `N passed, M failed`.
"""
import argparse
import ctypes as C
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
M32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr, key):
    """Philox4x32-10 of one counter (4 ints) under a key (2 ints), in uint64 arithmetic."""
    c = [np.uint64(v) for v in ctr]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & M32
            k1 = (k1 + np.uint64(0xBB67AE85)) & M32
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & M32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & M32]
    return [int(v) for v in c]


def normal(seed, step, column, feature):
    p = feature // 2
    w = philox4x32_10([p, column, step & 0xFFFFFFFF, step >> 32], [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF])
    a = w[0] | w[1] << 32
    b = w[2] | w[3] << 32
    u1 = ((a >> 11) + 1) * 2.0**-53
    u2 = (b >> 11) * 2.0**-53
    r = np.sqrt(-2 * np.log(u1))
    return float(r * (np.cos(2 * np.pi * u2) if feature % 2 == 0 else np.sin(2 * np.pi * u2)))


def crps_ensemble(x, y, fair=False):
    """CRPS of ensemble x (M,) against y: mean|x - y| - 1/(2 M^2) sum|x_i - x_j| (fair: 1/(2 M (M - 1)))."""
    m = len(x)
    return np.mean(np.abs(x - y)) - np.abs(x[:, None] - x[None, :]).sum() / (2 * m * (m - 1 if fair else m))


class Lib:
    def __init__(self, path):
        L = self.L = C.CDLL(path)
        L.inloop_last_error.restype = C.c_char_p
        L.inloop_noise_normal.argtypes = [C.c_int64, C.c_int64, C.c_int64, C.c_int64, C.POINTER(C.c_double)]
        L.inloop_model_load.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
        L.inloop_model_free.argtypes = [C.c_void_p]
        L.inloop_model_set_noise_input.argtypes = [C.c_void_p, C.c_int64, C.c_int64, C.c_int64, C.c_int64]
        L.inloop_model_set_noise_step.argtypes = [C.c_void_p, C.c_int64, C.c_int64, C.c_int64, C.c_int64]
        dp = C.POINTER(C.c_double)
        L.inloop_model_forward_f64.argtypes = [C.c_void_p, dp, C.c_int64, dp]
        L.inloop_trainer_create.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
        L.inloop_trainer_free.argtypes = [C.c_void_p]
        L.inloop_trainer_evaluate_f64.argtypes = [C.c_void_p, dp, dp, C.c_int64, dp]
        L.inloop_trainer_copy_model.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]

    def ok(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: status {status}: {self.L.inloop_last_error().decode()}")


def ptr(a):
    return a.ctypes.data_as(C.POINTER(C.c_double))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(ROOT, os.environ.get("INLOOP_SCRATCH", ".build"), "release", "libInLoop.so"))
    args = ap.parse_args()
    lib = Lib(args.lib)
    L = lib.L
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
        passed += ok
        failed += not ok

    # Published known answers (Random123 kat_vectors) for the NumPy Philox itself
    kat = [([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
           ([0xffffffff] * 4, [0xffffffff] * 2, [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
           ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1])]
    check("NumPy Philox4x32-10 reproduces the Random123 known answers",
          all(philox4x32_10(c, k) == r for c, k, r in kat))

    # inloop_noise_normal against the NumPy generator
    worst = 0.0
    out = C.c_double()
    cases = [(0, 0, 0, 0), (1, 0, 0, 1), (7, 12345, 99, 3), (2**40 + 5, 2**33 + 1, 2**32 - 1, 17), (-3, 5, 3, 0)]
    for seed, step, col, feat in cases:
        lib.ok(L.inloop_noise_normal(seed, step, col, feat, C.byref(out)), "noise_normal")
        ref = normal(seed & 0xFFFFFFFFFFFFFFFF, step, col, feat)
        worst = max(worst, abs(out.value - ref))
    check("inloop_noise_normal equals the NumPy Philox + Box-Muller (5 keys)", worst <= 1e-15, f"max diff {worst}")
    st = L.inloop_noise_normal(1, -1, 0, 0, C.byref(out))
    check("inloop_noise_normal: a negative step is INVALID_ARGUMENT", st != 0)

    # A model with noise features vs a plain forward of NumPy-filled inputs
    fixture = os.path.join(ROOT, "Tests", "fixtures", "mlp_medium.safetensors")
    m = C.c_void_p()
    lib.ok(L.inloop_model_load(fixture.encode(), C.byref(m)), "load")
    n_in = C.c_int64()
    n_out = C.c_int64()
    L.inloop_model_input_size.argtypes = [C.c_void_p, C.POINTER(C.c_int64)]
    L.inloop_model_output_size.argtypes = [C.c_void_p, C.POINTER(C.c_int64)]
    lib.ok(L.inloop_model_input_size(m, C.byref(n_in)), "input_size")
    lib.ok(L.inloop_model_output_size(m, C.byref(n_out)), "output_size")
    nin, nout = n_in.value, n_out.value
    batch, first, count, seed, step = 6, 1, min(3, nin - 1), 424242, 31
    block, stride, col0 = 2, 10, 5
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, nin))
    xr = x.copy()
    for j in range(batch):
        col = col0 + (j // block) * stride + j % block
        for i in range(count):
            xr[j, first + i] = normal(seed, step, col, i)
    y_ref = np.zeros((batch, nout))
    lib.ok(L.inloop_model_forward_f64(m, ptr(xr), batch, ptr(y_ref)), "plain forward")
    lib.ok(L.inloop_model_set_noise_input(m, 0, first, count, seed), "set_noise_input")
    lib.ok(L.inloop_model_set_noise_step(m, step, col0, block, stride), "set_noise_step")
    y = np.zeros((batch, nout))
    x_before = x.copy()
    lib.ok(L.inloop_model_forward_f64(m, ptr(x), batch, ptr(y)), "noise forward")
    check("noise features (blocks of 2, stride 10): the forward equals a plain forward of NumPy-filled inputs, bitwise",
          np.array_equal(y, y_ref), f"max diff {np.abs(y - y_ref).max()}")
    check("noise forward leaves the caller's array unchanged", np.array_equal(x, x_before))
    check("set_noise_input: features beyond the input are INVALID_ARGUMENT", L.inloop_model_set_noise_input(m, 0, nin - 1, 2, 1) != 0)
    check("set_noise_step: stride < block is INVALID_ARGUMENT", L.inloop_model_set_noise_step(m, 0, 0, 4, 3) != 0)
    L.inloop_model_free(m)

    # The ensemble-CRPS trainer against NumPy
    members, bsz = 4, 5
    for fair in (False, True):
        crps_trainer(lib, rng, members, bsz, fair, check)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def crps_trainer(lib, rng, members, bsz, fair, check):
    L = lib.L
    cfg = (b"model:\n  inputs: 3\n  layers:\n    - {type: dense, out: 8, activation: tanh}\n    - {type: dense, out: 2}\n"
           b"loss: {type: crps, members: 4, fair: " + (b"true" if fair else b"false") +
           b"}\nnoise: {first: 2, count: 1, seed: 99}\nseed: 5\nprecision: float64\n")
    t = C.c_void_p()
    lib.ok(L.inloop_trainer_create(cfg, C.byref(t)), "trainer_create")
    xb = rng.standard_normal((bsz, 3))
    yb = rng.standard_normal((bsz, 2))
    loss = C.c_double()
    lib.ok(L.inloop_trainer_evaluate_f64(t, ptr(xb), ptr(yb), bsz, C.byref(loss)), "trainer_evaluate")
    tm = C.c_void_p()
    lib.ok(L.inloop_trainer_copy_model(t, C.byref(tm)), "copy_model")
    rows = np.repeat(xb, members, axis=0)
    for r in range(bsz * members):
        rows[r, 2] = normal(99, 0, r, 0)
    pred = np.zeros((bsz * members, 2))
    lib.ok(L.inloop_model_forward_f64(tm, ptr(rows), bsz * members, ptr(pred)), "forward of the rows")
    ref = np.mean([crps_ensemble(pred[s * members:(s + 1) * members, o], yb[s, o], fair=fair) for s in range(bsz) for o in range(2)])
    # (the copied model holds the weights rounded to float32, the saved models' default type: 1e-6)
    check(("fair" if fair else "plain") + " CRPS loss (4 members, noise feature) equals NumPy's ensemble CRPS of the same rows (1e-6)",
          abs(loss.value - ref) <= 1e-6 * max(1.0, abs(ref)), f"{loss.value} vs {ref}")
    L.inloop_model_free(tm)
    L.inloop_trainer_free(t)


if __name__ == "__main__":
    sys.exit(main())
