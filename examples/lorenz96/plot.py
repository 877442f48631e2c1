#!/usr/bin/env python3
"""Plots the Lorenz '96 demo: X distributions (left) and forecast RMSE by lead time (right).

    python3 examples/lorenz96/plot.py [DIR]     # DIR: where lorenz96 wrote its data (build/lorenz96)

Reads DIR/distributions.dat and DIR/rmse.dat (written by the Fortran program, rank 0) and writes
DIR/lorenz96.png.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # label: (colour, line style, width)
    "truth": ("black", "-", 2.6),
    "InLoop NN": ("tab:blue", "-", 1.8),
    "cubic": ("tab:orange", "--", 1.8),
    "none": ("tab:red", ":", 1.8),
}


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                rows.append([float(v) for v in line.split()])
    return [list(col) for col in zip(*rows)]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "lorenz96")
    x, *densities = read(os.path.join(out, "distributions.dat"))
    lead, *rmse = read(os.path.join(out, "rmse.dat"))
    # Show the range where any distribution has mass, plus a margin.
    used = [i for i in range(len(x)) if any(d[i] > 1e-4 for d in densities)]
    lo, hi = x[used[0]] - 2, x[used[-1]] + 2

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for label, d in zip(STYLE, densities):
        colour, ls, lw = STYLE[label]
        left.plot(x, d, color=colour, linestyle=ls, linewidth=lw, label=label)
    left.set_xlim(lo, hi)
    left.set_xlabel("X")
    left.set_ylabel("probability density")
    left.set_title("Climate: distribution of X")
    left.legend(frameon=False)

    for label, r in zip(list(STYLE)[1:], rmse):
        colour, ls, lw = STYLE[label]
        right.plot(lead, r, color=colour, linestyle=ls, linewidth=lw, label=label)
    for t in (0.2, 0.5, 1, 2):
        right.axvline(t, color="0.85", linewidth=0.8, zorder=0)
    right.set_xlim(0, max(lead))
    right.set_ylim(bottom=0)
    right.set_xlabel("lead time (model time units)")
    right.set_ylabel("RMSE of X")
    right.set_title("Forecasts from the same start dates")
    right.legend(frameon=False, loc="upper left")

    fig.suptitle("Two-scale Lorenz '96 (K=8, J=32, F=20): single-scale model with a learned, "
                 "a cubic or no sub-grid parameterization", fontsize=11)
    fig.tight_layout()
    path = os.path.join(out, "lorenz96.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
