"""Quantile functions of serverless durations and memory from published percentiles.

Azure Functions 2019 publishes, per function, the execution-time percentiles 0, 1, 25, 50,
75, 99, 100 and, per app, the allocated-memory percentiles 1, 5, 25, 50, 75, 95, 99, 100
(Shahrad et al., ATC 2020; ``AzureFunctionsDataset2019.md``). A sampler needs the whole
quantile function Q(p) between those knots.

:func:`pchip` interpolates Q through the knots ``(p_k, q_k)`` with the monotone piecewise
cubic Hermite interpolant of Fritsch & Carlson ("Monotone Piecewise Cubic Interpolation",
SIAM J. Numer. Anal. 17(2), 1980), with the derivative rule of Fritsch & Butland ("A Method
for Constructing Local Monotone Piecewise Cubic Interpolants", SIAM J. Sci. Stat. Comput.
5(2), 1984) that MATLAB's and SciPy's ``pchip`` use:

* interior knot k: slopes δ_{k-1}, δ_k of the neighbouring secants; d_k = 0 where they differ
  in sign or either is 0, else the weighted harmonic mean
  (w1 + w2) / (w1/δ_{k-1} + w2/δ_k) with w1 = 2h_k + h_{k-1}, w2 = h_k + 2h_{k-1};
* end knots: the three-point one-sided formula ((2h_0 + h_1)δ_0 − h_0δ_1)/(h_0 + h_1), set
  to 0 if its sign differs from δ_0's, and to 3δ_0 if δ_0, δ_1 differ in sign and
  |d| > 3|δ_0|.

Q therefore passes through every published percentile exactly, is non-decreasing (so it is
a quantile function), and is C¹, unlike the piecewise-uniform reading
(:func:`piecewise_uniform`: a uniform draw between neighbouring percentiles, i.e. linear Q),
which puts a flat density on each interval, a jump in density at each knot, and, between
p99 and p100, spreads 1 % of the mass evenly up to the maximum.

Everything is vectorized over functions: knots are one (F, K) array on probabilities shared
by all functions, and a draw evaluates each invocation's own function's cubic.
"""

from __future__ import annotations

import numpy as np

DURATION_PROBS = (0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0)
"""Probabilities of the ``functions`` table's ``duration_p{0,1,25,50,75,99,100}_s`` columns."""
MEMORY_PROBS = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99, 1.0)
"""Probabilities of ``memory_p{1,5,25,50,75,95,99,100}_mb``; below p1 Q is held at p1."""
DURATION_COLUMNS = tuple(f"duration_p{round(p * 100)}_s" for p in DURATION_PROBS)
CHUNK = 1 << 16
"""Draws evaluated per chunk (cache-sized)."""
MEMORY_COLUMNS = tuple(f"memory_p{round(p * 100)}_mb" for p in MEMORY_PROBS)


def _secants(probs: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.diff(probs)
    return h, np.diff(knots, axis=1) / h


def pchip_slopes(probs: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Fritsch–Butland derivatives of the monotone cubic at each knot, shape (F, K).

    ``probs``: (K,) strictly increasing; ``knots``: (F, K) non-decreasing rows.
    """
    probs = np.asarray(probs, dtype=np.float64)
    knots = np.atleast_2d(np.asarray(knots, dtype=np.float64))
    if knots.shape[1] != len(probs) or len(probs) < 2:
        raise ValueError(f"pchip: {knots.shape[1]} knots for {len(probs)} probabilities")
    if np.any(np.diff(probs) <= 0):
        raise ValueError("pchip: probabilities must be strictly increasing")
    h, delta = _secants(probs, knots)
    d = np.zeros_like(knots)
    if len(probs) == 2:
        d[:] = delta
        return d
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    a, b = delta[:, :-1], delta[:, 1:]
    same = (a * b) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = (w1 + w2) / (w1 / a + w2 / b)
    d[:, 1:-1] = np.where(same, hm, 0.0)
    d[:, 0] = _end_slope(h[0], h[1], delta[:, 0], delta[:, 1])
    d[:, -1] = _end_slope(h[-1], h[-2], delta[:, -1], delta[:, -2])
    return d


def _end_slope(h0: float, h1: float, d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    s = np.where(np.sign(s) != np.sign(d0), 0.0, s)
    big = (np.sign(d0) != np.sign(d1)) & (np.abs(s) > 3 * np.abs(d0))
    return np.where(big, 3 * d0, s)


def pchip_coefficients(probs: np.ndarray, knots: np.ndarray,
                       slopes: np.ndarray | None = None) -> np.ndarray:
    """Each function's cubic on each interval in Horner form: (F·(K − 1), 4) rows
    (a, b, c, d) with Q = a + s(b + s(c + s·d)), s ∈ [0, 1] the position in the interval
    (the Hermite basis of :func:`pchip` expanded: a = y₀, b = m₀, c = 3(y₁ − y₀) − 2m₀ − m₁,
    d = 2(y₀ − y₁) + m₀ + m₁, with m = slope × interval width)."""
    probs = np.asarray(probs, dtype=np.float64)
    knots = np.atleast_2d(np.asarray(knots, dtype=np.float64))
    d = pchip_slopes(probs, knots) if slopes is None else slopes
    h = np.diff(probs)
    y0, y1 = knots[:, :-1], knots[:, 1:]
    m0, m1 = d[:, :-1] * h, d[:, 1:] * h
    return np.stack([y0, m0, 3 * (y1 - y0) - 2 * m0 - m1, 2 * (y0 - y1) + m0 + m1],
                    axis=-1).reshape(-1, 4)


_LUT = 4096
"""Cells of the table that finds each draw's interval (one comparison then settles it)."""


def pchip(probs: np.ndarray, knots: np.ndarray, rows: np.ndarray, u: np.ndarray,
          slopes: np.ndarray | None = None, coefficients: np.ndarray | None = None
          ) -> np.ndarray:
    """Q_rows[i](u[i]): each draw's own function's monotone cubic quantile function.

    ``u`` below ``probs[0]`` (memory starts at p1) is held at the first knot. Rows whose knots
    hold a NaN give NaN. ``coefficients`` (from :func:`pchip_coefficients`) saves their
    computation when the same functions are drawn from again.
    """
    probs = np.asarray(probs, dtype=np.float64)
    coef = (pchip_coefficients(probs, knots, slopes) if coefficients is None
            else coefficients)
    u = np.asarray(u, dtype=np.float64)
    rows = np.asarray(rows)
    out = np.empty(u.shape)
    k1 = len(probs) - 1
    inv_h = 1.0 / np.diff(probs)
    # the interval of a draw: a table over [0, 1] (its cell's lower edge), then one step up
    # where a knot lies inside the cell (knots are further apart than a cell)
    fine = np.diff(probs).min() > 1.0 / _LUT
    lut = np.clip(np.searchsorted(probs, np.arange(_LUT + 1) / _LUT, side="right") - 1,
                  0, k1 - 1)
    inside = probs[0] <= 0.0 and probs[-1] >= 1.0 and (u.size == 0 or (
        float(u.min()) >= 0.0 and float(u.max()) < 1.0))  # no clipping needed
    for lo in range(0, len(u), CHUNK):  # cache-sized chunks of draws
        uc = u[lo:lo + CHUNK] if inside else np.clip(u[lo:lo + CHUNK], probs[0], probs[-1])
        if fine:
            j = lut[(uc * _LUT).astype(np.int64)]
            j += (uc >= probs[np.minimum(j + 1, k1)]) & (j < k1 - 1)
        else:
            j = np.clip(np.searchsorted(probs, uc, side="right") - 1, 0, k1 - 1)
        s = (uc - probs[j]) * inv_h[j]
        c = coef[rows[lo:lo + CHUNK].astype(np.int64) * k1 + j]
        out[lo:lo + CHUNK] = c[:, 0] + s * (c[:, 1] + s * (c[:, 2] + s * c[:, 3]))
    return out


def piecewise_uniform(probs: np.ndarray, knots: np.ndarray, rows: np.ndarray,
                      u: np.ndarray) -> np.ndarray:
    """The baseline reading of percentiles: Q linear between knots (a uniform draw within the
    chosen percentile interval), as replay tools that sample from percentile buckets do."""
    probs = np.asarray(probs, dtype=np.float64)
    knots = np.atleast_2d(np.asarray(knots, dtype=np.float64))
    u = np.asarray(u, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty(u.shape)
    k = knots.shape[1]
    yf = knots.ravel()
    inside = probs[0] <= 0.0 and probs[-1] >= 1.0 and (u.size == 0 or (
        float(u.min()) >= 0.0 and float(u.max()) < 1.0))  # no clipping needed
    for lo in range(0, len(u), CHUNK):  # cache-sized chunks of draws
        uc = u[lo:lo + CHUNK] if inside else np.clip(u[lo:lo + CHUNK], probs[0], probs[-1])
        j = np.clip(np.searchsorted(probs, uc, side="right") - 1, 0, len(probs) - 2)
        s = (uc - probs[j]) / (probs[j + 1] - probs[j])
        flat = rows[lo:lo + CHUNK] * k + j
        y0 = yf.take(flat)
        out[lo:lo + CHUNK] = y0 + s * (yf.take(flat + 1) - y0)
    return out
