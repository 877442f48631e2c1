#!/usr/bin/env python3
"""Gas-optics tables of the radiation demo's correlated-k scheme (examples/radiation/README.md).

    python3 examples/radiation/make_tables.py OUT.txt

For every band and gas (H2O, CO2, O3) a synthetic line-by-line spectrum is made over a periodic
sub-interval of the band: NLINES Lorentz lines at random positions, strengths drawn from the Malkmus
(1/S) exp(-S/S_max) distribution over four decades, random lower-state energies E'' for the
temperature dependence, half-widths pressure-broadened, with the Doppler width as floor:

    k(nu; p, T) = sum_i S_i(T) / pi * a_i / ((nu - nu_i)^2 + a_i^2)                   [m2 kg-1]
    S_i(T)      = S_i(T0) (T0/T) exp(-c2 E''_i (1/T - 1/T0)),   c2 = 1.4388 cm K, T0 = 296 K
    a_i         = sqrt(aL^2 + aD^2),  aL = 0.07 cm-1 (p/p0)(T0/T)^0.7,  aD = 3.58e-7 nu sqrt(T/M)

The strengths are scaled so that the band-mean k at (p0 = 1013.25 hPa, T0) is the band's K_MEAN
below (rough values of the real bands). At each table point (p, T) k(nu) is sorted (the correlated-k
assumption) and averaged over the g-intervals G_EDGES: k(g, p, T). Smooth absorbers (O3 in the
visible and ultraviolet, whose cross-sections vary little with p and T) get a log-uniform spread of
cross-sections across g instead. The file also holds the band-integrated Planck function of each
longwave band (for 100..400 K), the solar flux fraction and Rayleigh optical depth of each shortwave
band. Deterministic (fixed seed): the same file on every machine up to the last printed digit.
"""
import sys
import numpy as np

G_EDGES = np.array([0, .30, .50, .65, .75, .83, .89, .93, .96, .975, .985, .992, .996, .998, .9993, .9998, 1.0])
NG = len(G_EDGES) - 1                       # 16 g-points per band
P_TAB = np.logspace(np.log10(50.0), np.log10(110000.0), 20)   # Pa
T_TAB = np.array([160.0, 200.0, 240.0, 280.0, 320.0])          # K
P0, T0, C2 = 101325.0, 296.0, 1.4388
MOLAR = {"h2o": 18.0, "co2": 44.0, "o3": 48.0}
GASES = ("h2o", "co2", "o3")
WIDTH, NPTS, NLINES = 2.0, 8192, 16         # sub-interval (cm-1), its grid, lines in it

# Longwave bands: (nu1, nu2) cm-1, {gas: (band-mean k at p0,T0 in m2/kg, max E'' in cm-1)}, H2O self-continuum
# coefficient (m2/kg at e = 1 hPa, 296 K)
LW_BANDS = [
    ((10, 350),    {"h2o": (60.0, 800)}, 0.0),
    ((350, 500),   {"h2o": (15.0, 900)}, 0.0),
    ((500, 630),   {"h2o": (2.0, 1000), "co2": (0.5, 500)}, 0.0004),
    ((630, 700),   {"h2o": (0.3, 1000), "co2": (30.0, 500)}, 0.0004),
    ((700, 820),   {"h2o": (0.2, 1000), "co2": (1.0, 600)}, 0.0004),
    ((820, 980),   {"h2o": (0.03, 1200)}, 0.0006),
    ((980, 1080),  {"h2o": (0.03, 1200), "o3": (300.0, 400)}, 0.0004),
    ((1080, 1400), {"h2o": (1.0, 1200)}, 0.0002),
    ((1400, 2000), {"h2o": (25.0, 1000)}, 0.0),
    ((2000, 3000), {"h2o": (1.0, 1200), "co2": (10.0, 500)}, 0.0),
]
# Shortwave bands: (nu1, nu2), {gas: (band-mean k, E''max)} line absorbers, smooth O3 (kmin, kmax) or None
SW_BANDS = [
    ((2600, 4000),   {"h2o": (8.0, 1200), "co2": (0.5, 600)}, None),
    ((4000, 8000),   {"h2o": (1.0, 1200), "co2": (0.1, 600)}, None),
    ((8000, 14500),  {"h2o": (0.04, 1200)}, None),
    ((14500, 29000), {}, (1e-3, 6.0)),
    ((29000, 50000), {}, (1.0, 1.0e4)),
]


def k_distribution(rng, nu1, nu2, gas, kmean, emax):
    """k(g, p, T) of one gas in one band from its synthetic spectrum."""
    nu_c = 0.5 * (nu1 + nu2)
    grid = np.linspace(0.0, WIDTH, NPTS, endpoint=False)
    pos = rng.uniform(0.0, WIDTH, NLINES)
    s0 = np.empty(NLINES)
    n = 0
    while n < NLINES:                       # Malkmus: p(S) ~ (1/S) exp(-S/Smax) on [1e-4 Smax, inf)
        s = 10.0 ** (-4.0 * rng.uniform())
        if rng.uniform() < np.exp(-s):
            s0[n] = s
            n += 1
    s0 *= kmean * WIDTH / s0.sum()          # band-mean k at (p0, T0) = kmean (all lines in the interval)
    e_low = rng.uniform(0.0, emax, NLINES)
    d = grid[None, :] - pos[:, None]
    d = (d + 0.5 * WIDTH) % WIDTH - 0.5 * WIDTH            # periodic: nearest image
    out = np.empty((NG, len(P_TAB), len(T_TAB)))
    for it, t in enumerate(T_TAB):
        st = s0 * (T0 / t) * np.exp(-C2 * e_low * (1.0 / t - 1.0 / T0))
        a_d = 3.58e-7 * nu_c * np.sqrt(t / MOLAR[gas])
        for ip, p in enumerate(P_TAB):
            a = np.sqrt((0.07 * (p / P0) * (T0 / t) ** 0.7) ** 2 + a_d ** 2)
            # far wings of the other images: a Lorentz line's wing beyond +-W/2 is added as its mean
            k = (st[:, None] / np.pi * a / (d * d + a * a)).sum(0)
            k += st.sum() / WIDTH * (1.0 - 2.0 / np.pi * np.arctan(0.5 * WIDTH / a))
            ks = np.sort(k)
            idx = (G_EDGES * NPTS).astype(int)
            out[:, ip, it] = [ks[idx[g]:max(idx[g + 1], idx[g] + 1)].mean() for g in range(NG)]
    return out


def smooth_distribution(kmin, kmax):
    gm = 0.5 * (G_EDGES[:-1] + G_EDGES[1:])
    k = kmin * (kmax / kmin) ** gm
    return np.repeat(np.repeat(k[:, None, None], len(P_TAB), 1), len(T_TAB), 2)


def planck_band(nu1, nu2, t):
    """Band-integrated Planck radiance, W m-2 sr-1 (nu in cm-1)."""
    nu = np.linspace(nu1, nu2, 2001)
    c1, c2 = 1.191042e-8, 1.4388                  # W m-2 sr-1 (cm-1)^-4, cm K
    b = c1 * nu[None, :] ** 3 / np.expm1(c2 * nu[None, :] / t[:, None])
    return np.trapezoid(b, nu, axis=1) if hasattr(np, "trapezoid") else np.trapz(b, nu, axis=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "rad_tables.txt"
    rng = np.random.default_rng(20261203)
    lines = ["# InLoop radiation demo gas optics (examples/radiation/make_tables.py); k in m2/kg",
             f"{len(LW_BANDS)} {len(SW_BANDS)} {NG} {len(P_TAB)} {len(T_TAB)}",
             " ".join(f"{x:.9e}" for x in P_TAB), " ".join(f"{x:.9e}" for x in T_TAB),
             " ".join(f"{x:.9e}" for x in np.diff(G_EDGES))]

    def table(k):
        # Fortran order k(g, p, T): g fastest
        lines.append(" ".join(f"{x:.7e}" for x in k.transpose(2, 1, 0).ravel()))

    t_pl = np.arange(100.0, 400.5, 1.0)
    for (nu1, nu2), gases, cont in LW_BANDS:
        lines.append(f"{nu1} {nu2} {cont:.6e}")
        for gas in GASES:
            table(k_distribution(rng, nu1, nu2, gas, *gases[gas]) if gas in gases else np.zeros((NG, len(P_TAB), len(T_TAB))))
        lines.append(" ".join(f"{x:.9e}" for x in planck_band(nu1, nu2, t_pl)))
    # Solar spectrum: a 5778 K black body scaled to S0, the flux below/above the bands folded into the end bands
    nu = np.linspace(100.0, 100000.0, 400001)
    b_sun = nu ** 3 / np.expm1(1.4388 * nu / 5778.0)
    total = np.trapezoid(b_sun, nu) if hasattr(np, "trapezoid") else np.trapz(b_sun, nu)
    for i, ((nu1, nu2), gases, o3) in enumerate(SW_BANDS):
        lo = 0.0 if i == 0 else nu1
        hi = 1e9 if i == len(SW_BANDS) - 1 else nu2
        m = (nu >= lo) & (nu < hi)
        frac = (np.trapezoid(b_sun[m], nu[m]) if hasattr(np, "trapezoid") else np.trapz(b_sun[m], nu[m])) / total
        # Rayleigh optical depth of the whole atmosphere (p = p0): 0.0088 lambda^-4.05 (lambda in um),
        # solar-weighted over the band
        mb = (nu >= nu1) & (nu < nu2)
        lam = 1e4 / nu[mb]
        tau_r = float(np.sum(0.0088 * lam ** -4.05 * b_sun[mb]) / np.sum(b_sun[mb]))
        lines.append(f"{nu1} {nu2} {frac:.9e} {tau_r:.9e}")
        for gas in GASES:
            if gas in gases:
                k = k_distribution(rng, nu1, nu2, gas, *gases[gas])
            elif gas == "o3" and o3 is not None:
                k = smooth_distribution(*o3)
            else:
                k = np.zeros((NG, len(P_TAB), len(T_TAB)))
            table(k)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(LW_BANDS)} longwave and {len(SW_BANDS)} shortwave bands x {NG} g-points "
          f"= {NG * (len(LW_BANDS) + len(SW_BANDS))} g-points")


if __name__ == "__main__":
    main()
