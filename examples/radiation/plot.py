#!/usr/bin/env python3
"""The radiation demo's picture: python3 examples/radiation/plot.py OUT_DIR -> OUT_DIR/radiation.png

Reads profiles.dat, drift.dat and timing.dat written by build/radiation/radiation."""
import os
import sys

import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

d = sys.argv[1] if len(sys.argv) > 1 else "build/radiation"
prof = np.loadtxt(os.path.join(d, "profiles.dat"))
drift = np.loadtxt(os.path.join(d, "drift.dat"))
timing = np.loadtxt(os.path.join(d, "timing.dat"))
p = prof[:, 0]

fig, ax = plt.subplots(1, 4, figsize=(17, 5.2))
a = ax[0]
a.plot(prof[:, 1], p, "C3-", label="SW scheme")
a.plot(prof[:, 2], p, "C3--", label="SW emulator")
a.plot(prof[:, 3], p, "C0-", label="LW scheme")
a.plot(prof[:, 4], p, "C0--", label="LW emulator")
a.set_xlabel("mean heating rate (K/day)")
a.set_title("heating rates, coupled run")
a.legend(fontsize=8)
a = ax[1]
a.plot(prof[:, 5], p, "C3-", label="SW")
a.plot(prof[:, 6], p, "C0-", label="LW")
a.axvline(0.3, color="k", lw=0.8, ls=":", label="target 0.3")
a.set_xlabel("RMSE emulator vs scheme (K/day)")
a.set_title("heating-rate error by height")
a.legend(fontsize=8)
for a in ax[:2]:
    a.set_yscale("log")
    a.set_ylim(1000, 1)
    a.set_ylabel("pressure (hPa)")
a = ax[2]
a.plot(drift[:, 0], drift[:, 1], "k-")
a.axhline(1.0, color="C3", lw=0.8, ls=":", label="1 K")
a.set_xlabel("day of the coupled run")
a.set_ylabel("RMS T(emulator run) - T(scheme run) (K)")
a.set_title("temperature drift (all columns, layers)")
a.legend(fontsize=8)
a = ax[3]
bars = a.bar(["scheme", "emulator"], timing[:2], color=["C7", "C2"])
a.set_yscale("log")
a.set_ylabel("radiation call per column (us, 1 thread)")
a.set_title(f"speed-up {timing[0] / timing[1]:.0f}x (whole step {timing[2] / timing[3]:.1f}x)")
for b, v in zip(bars, timing[:2]):
    a.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom")
fig.tight_layout()
out = os.path.join(d, "radiation.png")
fig.savefig(out, dpi=90)
print("wrote", out)
