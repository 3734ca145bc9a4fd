"""Dominant periods of the counts: periodogram and autocorrelation.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.

References
----------
* Fisher, R. A. (1929). Tests of significance in harmonic analysis. *Proc. R. Soc. A* 125,
  54–59.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from servetrace.analysis.counting import (
    By,
    Events,
    _complete,
    _default_window,
    _dense,
    _frame,
    _group_chunks,
    _prepare,
    _Prepared,
)

#: :func:`summary` reports a dominant period only below this Fisher p-value ...
DOMINANT_P_VALUE = 0.01
#: ... and at least this autocorrelation at the period.
DOMINANT_STRENGTH = 0.2
_DAY_S, _WEEK_S = 86400.0, 604800.0


# --------------------------------------------------------------------------------------------
# Periodicity


def _detrend(x: np.ndarray) -> np.ndarray:
    """Remove each row's least-squares line."""
    n = x.shape[1]
    u = np.arange(n) - (n - 1) / 2
    xc = x - x.mean(1, keepdims=True)
    suu = float((u * u).sum()) or 1.0
    return xc - np.outer(xc @ u / suu, u)


def _acf(x: np.ndarray) -> np.ndarray:
    """Autocorrelation of each row at lags 0..N−1, normalized by N − lag (x centred)."""
    n = x.shape[1]
    f = np.fft.rfft(x, 2 * n, axis=1)
    cov = np.fft.irfft(f * np.conj(f), 2 * n, axis=1)[:, :n] / (n - np.arange(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(cov / cov[:, :1], -1, 1)


def _periodicity(ev: _Prepared, window_s: float | None, max_periods: int) -> pl.DataFrame:
    w = _default_window(ev) if window_s is None else float(window_s)
    if not w > 0:
        raise ValueError(f"window_s: must be positive, got {window_s}")
    k_lo, k_hi = _complete(ev, w)
    n = k_hi - k_lo
    parts = []
    if n >= 8:
        for g0, g1 in _group_chunks(ev.n_groups, n):
            parts.extend(_periodicity_chunk(ev, w, k_lo, k_hi, g0, g1, max_periods))
    schema = {**ev.keys.schema, "period_s": pl.Float64, "strength": pl.Float64,
              "method": pl.String, "power_fraction": pl.Float64, "p_value": pl.Float64,
              "window_s": pl.Float64}
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat([p.cast(schema) for p in parts])  # type: ignore[arg-type]
    return out.sort(list(ev.by), nulls_last=True, maintain_order=True) if ev.by else out


def _periodicity_chunk(ev: _Prepared, w: float, k_lo: int, k_hi: int, g0: int, g1: int,
                       max_periods: int) -> list[pl.DataFrame]:
    x = _detrend(_dense(ev, w, k_lo, k_hi, g0, g1))
    rows, n = x.shape
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    nf = power.shape[1] - 1                       # Fourier frequencies k = 1..N/2
    total = power[:, 1:].sum(1)
    acf = _acf(x)
    kk = np.arange(power.shape[1])
    left = np.concatenate([np.full((rows, 1), np.inf), power[:, :-1]], axis=1)
    right = np.concatenate([power[:, 1:], np.full((rows, 1), -np.inf)], axis=1)
    peak = (power > left) & (power >= right) & (kk >= 2)
    score = np.where(peak, power, -np.inf)
    top = np.argsort(-score, axis=1, kind="stable")[:, :max_periods]
    gi, j = np.nonzero(np.take_along_axis(score, top, 1) > -np.inf)
    k = top[gi, j]
    # refine each peak's frequency by a parabola through the power at k − 1, k, k + 1, then
    # put the period on the lag grid (whole windows)
    p0, p1, p2 = power[gi, k - 1], power[gi, k], power[gi, np.minimum(k + 1, nf)]
    curve = p0 - 2 * p1 + p2
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(curve < 0, np.clip(0.5 * (p0 - p2) / curve, -0.5, 0.5), 0.0)
    lag = np.clip(np.rint(n / (k + delta)).astype(np.int64), 1, n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = power[gi, k] / total[gi]
        p = np.minimum(1.0, nf * (1 - g) ** (nf - 1))
    first = np.ones(k.size, dtype=bool)  # two peaks on one lag: keep the stronger (first)
    first[1:] = (gi[1:] != gi[:-1]) | (lag[1:] != lag[:-1])
    for later in range(2, max_periods):
        first[later:] &= (gi[later:] != gi[:-later]) | (lag[later:] != lag[:-later])
    gi, lag, g, p = gi[first], lag[first], g[first], p[first]
    out = [_frame(ev, g0 + gi, {
        "period_s": lag * w, "strength": acf[gi, lag], "method": ["periodogram"] * gi.size,
        "power_fraction": g, "p_value": p, "window_s": np.full(gi.size, w)})]
    span = (k_hi - k_lo) * w
    for period in (_DAY_S, _WEEK_S):
        lag_p = round(period / w)
        if span >= 2 * period and lag_p >= 2 and abs(lag_p * w - period) <= 1e-6 * period:
            out.append(_frame(ev, np.arange(g0, g1), {
                "period_s": np.full(rows, period), "strength": acf[:, lag_p],
                "method": ["acf"] * rows, "power_fraction": np.full(rows, np.nan),
                "p_value": np.full(rows, np.nan), "window_s": np.full(rows, w)}))
    return out


def periodicity(events: Events, by: By = None, window_s: float | None = None,
                max_periods: int = 3) -> pl.DataFrame:
    """Dominant periods of the counts and their strength, from the periodogram and the ACF.

    The counts in the complete windows of the span are linearly detrended; their periodogram
    I(f_k) = |Σ_t x_t e^(−2πi k t/N)|² is searched for local maxima at k ≥ 2 (at least two
    cycles in the span), and the ``max_periods`` highest are reported (method
    ``periodogram``). Each peak's frequency is refined by a parabola through the power at
    k − 1, k, k + 1 and its period rounded to whole windows (two peaks on one period: the
    stronger is kept). Columns:

    * ``strength``: the sample autocorrelation at the period's lag L (in windows),
      Σ x_t x_(t+L) / (N − L) divided by Σ x_t² / N, clipped to [−1, 1] (1: the series
      repeats exactly). Counting noise lowers it in small windows: compare strengths at one
      ``window_s``;
    * ``power_fraction`` g = I(f_k) / Σ_j I(f_j), the share of the variance at that frequency;
    * ``p_value``: Fisher's (1929) test of a periodic component against white noise,
      min(1, M (1 − g)^(M − 1)) with M Fourier frequencies (the first term of his exact
      distribution, accurate when small; for peaks after the highest it is conservative).

    For traces spanning at least two days (two weeks) a row with method ``acf`` gives the
    autocorrelation at exactly 86,400 s (604,800 s): the diurnal (weekly) strength. The
    window defaults to the smallest ladder window (≥ the resolution) with at most
    :data:`MAX_SERIES` windows.

    Returns ``[by..., period_s, strength, method, power_fraction, p_value, window_s]``.
    """
    if max_periods < 1:
        raise ValueError(f"max_periods: must be at least 1, got {max_periods}")
    return _periodicity(_prepare(events, by), window_s, max_periods)
