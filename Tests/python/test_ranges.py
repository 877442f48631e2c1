#!/usr/bin/env python3
"""Input-range guards of libInLoop.so against NumPy (ctypes), issue 15 item 3's reference.

A model's ranges are set from NumPy samples (inloop_model_set_input_range_from_samples_f64, then read
back with inloop_model_input_range and compared with the samples' min, max, mean and standard
deviation), or from lo/hi arrays; columns are then drawn partly outside them (below, above, NaN) and:

  * REPORT: per-column counts (inloop_model_range_flags) and per-feature counts
    (inloop_model_range_feature_counts) against NumPy's count of (x < lo) | (x > hi) | isnan(x);
    the outputs equal a forward without the check (the inputs are not touched);
  * FLAG_ONLY: 1/0 per column against NumPy's any();
  * CLAMP: the outputs equal a plain forward of np.clip(x, lo, hi) (bitwise), the caller's x is
    unchanged, and the counts are REPORT's.

    python3 Tests/python/test_ranges.py [--lib PATH] [--model PATH]
Prints PASS/FAIL lines and `N passed, M failed`.
"""
import argparse
import ctypes as C
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OFF, REPORT, CLAMP, FLAG_ONLY = 0, 1, 2, 3
STD_DDOF = 0   # the population standard deviation (Chan's M2 / count)

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS ranges/" + name)
    else:
        failed += 1
        print("FAIL ranges/" + name + ("  " + detail if detail else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(ROOT, ".build", "release", "libInLoop.so"))
    ap.add_argument("--model", default=os.path.join(ROOT, "Tests", "fixtures", "mlp_medium.safetensors"))
    a = ap.parse_args()
    L = C.CDLL(a.lib)
    P, I64 = C.c_void_p, C.c_int64
    dp = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
    i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
    i64p = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
    L.inloop_model_load.argtypes = [C.c_char_p, C.POINTER(P)]
    L.inloop_model_free.argtypes = [P]
    L.inloop_last_error.restype = C.c_char_p
    L.inloop_model_input_size.argtypes = [P, C.POINTER(I64)]
    L.inloop_model_output_size.argtypes = [P, C.POINTER(I64)]
    L.inloop_model_forward_f64.argtypes = [P, dp, I64, dp]
    L.inloop_model_set_range_check.argtypes = [P, C.c_int32]
    L.inloop_model_range_flags.argtypes = [P, I64, i32p]
    L.inloop_model_range_feature_counts.argtypes = [P, I64, i64p]
    L.inloop_model_set_input_range.argtypes = [P, I64, dp, dp]
    L.inloop_model_set_input_range_from_samples_f64.argtypes = [P, dp, I64]
    L.inloop_model_input_range.argtypes = [P, I64, dp, dp, dp, dp, C.POINTER(I64)]

    def ok(st, what):
        if st != 0:
            raise SystemExit(f"{what}: status {st}: {L.inloop_last_error().decode()}")

    plain, guarded = P(), P()
    ok(L.inloop_model_load(a.model.encode(), C.byref(plain)), "load")
    ok(L.inloop_model_load(a.model.encode(), C.byref(guarded)), "load")
    n_in, n_out = I64(), I64()
    L.inloop_model_input_size(plain, C.byref(n_in))
    L.inloop_model_output_size(plain, C.byref(n_out))
    k, m = n_in.value, n_out.value
    rng = np.random.default_rng(2026)

    # ranges from samples: the library's statistics against NumPy's
    centre = rng.uniform(-2, 2, k)
    width = rng.uniform(0.5, 3, k)
    samples = np.ascontiguousarray(centre + width * rng.standard_normal((500, k)))   # C order: x(k, 500)
    ok(L.inloop_model_set_input_range_from_samples_f64(guarded, samples, 500), "ranges from samples")
    lo, hi, mean, std = (np.zeros(k) for _ in range(4))
    count = I64()
    ok(L.inloop_model_input_range(guarded, k, lo, hi, mean, std, C.byref(count)), "input_range")
    check("from samples: lo and hi are the samples' min and max",
          np.array_equal(lo, samples.min(axis=0)) and np.array_equal(hi, samples.max(axis=0)))
    check("from samples: mean and std as NumPy's (1e-12)",
          np.allclose(mean, samples.mean(axis=0), rtol=1e-12, atol=1e-12)
          and np.allclose(std, samples.std(axis=0, ddof=STD_DDOF), rtol=1e-12),
          f"mean err {np.abs(mean - samples.mean(axis=0)).max():.3g}")
    check("from samples: the sample count", count.value == 500, str(count.value))

    def columns(batch, seed, nan):
        r = np.random.default_rng(seed)
        x = lo + (hi - lo) * r.uniform(0, 1, (batch, k))
        pick = r.uniform(0, 1, (batch, k))
        x = np.where(pick < 0.05, lo - r.uniform(0.01, 2, (batch, k)), x)     # below
        x = np.where((pick >= 0.05) & (pick < 0.09), hi + r.uniform(0.01, 2, (batch, k)), x)   # above
        if nan:
            x = np.where((pick >= 0.09) & (pick < 0.10), np.nan, x)             # NaN is outside
        x[0] = lo        # the bounds themselves are inside
        if batch > 1:
            x[1] = hi
        return np.ascontiguousarray(x)

    def fwd(model, x):
        y = np.zeros((x.shape[0], m))
        st = L.inloop_model_forward_f64(model, x, x.shape[0], y)
        return st, y

    for batch, nan in ((1, False), (7, True), (64, False), (300, True)):
        x = columns(batch, batch, nan)
        x0 = x.copy()
        outside = (x < lo) | (x > hi) | np.isnan(x)
        want_cols = outside.sum(axis=1).astype(np.int32)
        want_feat = outside.sum(axis=0).astype(np.int64)

        ok(L.inloop_model_set_range_check(guarded, REPORT), "REPORT")
        st, y = fwd(guarded, x)
        got = np.full(batch, -1, np.int32)
        feat = np.full(k, -1, np.int64)
        check(f"batch {batch} REPORT: per-column counts as NumPy's",
              L.inloop_model_range_flags(guarded, batch, got) == 0 and np.array_equal(got, want_cols),
              f"status {st}, got {got[:8]}, want {want_cols[:8]}")
        check(f"batch {batch} REPORT: per-feature counts as NumPy's",
              L.inloop_model_range_feature_counts(guarded, k, feat) == 0 and np.array_equal(feat, want_feat))
        if not np.isnan(x).any():
            _, yp = fwd(plain, x)
            check(f"batch {batch} REPORT: outputs as a forward without the check", st == 0 and np.array_equal(y, yp))

        ok(L.inloop_model_set_range_check(guarded, FLAG_ONLY), "FLAG_ONLY")
        fwd(guarded, x)
        got = np.full(batch, -1, np.int32)
        check(f"batch {batch} FLAG_ONLY: 1/0 per column as NumPy's any()",
              L.inloop_model_range_flags(guarded, batch, got) == 0 and np.array_equal(got, outside.any(axis=1).astype(np.int32)))

        ok(L.inloop_model_set_range_check(guarded, CLAMP), "CLAMP")
        st, y = fwd(guarded, x)
        clipped = np.ascontiguousarray(np.where(np.isnan(x), x, np.clip(x, lo, hi)))
        got = np.full(batch, -1, np.int32)
        L.inloop_model_range_flags(guarded, batch, got)
        check(f"batch {batch} CLAMP: counts as REPORT's", np.array_equal(got, want_cols))
        check(f"batch {batch} CLAMP: the caller's x is unchanged", np.array_equal(x, x0, equal_nan=True))
        if not np.isnan(x).any():
            _, yc = fwd(plain, clipped)
            check(f"batch {batch} CLAMP: outputs are a plain forward of np.clip(x, lo, hi), bitwise",
                  st == 0 and np.array_equal(y, yc))

    # ranges from lo/hi arrays: the same counts with other bounds
    lo2 = np.ascontiguousarray(lo + 0.25 * (hi - lo))
    hi2 = np.ascontiguousarray(hi - 0.25 * (hi - lo))
    ok(L.inloop_model_set_input_range(guarded, k, lo2, hi2), "set_input_range")
    ok(L.inloop_model_set_range_check(guarded, REPORT), "REPORT")
    x = columns(50, 99, False)
    fwd(guarded, x)
    got = np.full(50, -1, np.int32)
    L.inloop_model_range_flags(guarded, 50, got)
    want = ((x < lo2) | (x > hi2)).sum(axis=1).astype(np.int32)
    check("lo/hi arrays: per-column counts as NumPy's", np.array_equal(got, want))
    bad = np.ascontiguousarray(lo2.copy())
    bad[0] = hi2[0] + 1
    check("lo/hi arrays: lo > hi is INVALID_ARGUMENT", L.inloop_model_set_input_range(guarded, k, bad, hi2) == 2)

    L.inloop_model_free(plain)
    L.inloop_model_free(guarded)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
