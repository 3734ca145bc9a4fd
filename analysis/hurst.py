"""Hurst exponent of the count process: aggregated variance, R/S and DFA, with a memory verdict.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.

References
----------
* Leland, W. E., Taqqu, M. S., Willinger, W. & Wilson, D. V. (1994). On the self-similar
  nature of Ethernet traffic (extended version). *IEEE/ACM Trans. Networking* 2(1), 1–15.
* Hurst, H. E. (1951). Long-term storage capacity of reservoirs. *Trans. ASCE* 116, 770–808;
  Mandelbrot, B. B. & Wallis, J. R. (1969). Robustness of the rescaled range R/S in the
  measurement of noncyclic long run statistical dependence. *Water Resour. Res.* 5(5).
* Anis, A. A. & Lloyd, E. H. (1976). The expected value of the adjusted rescaled Hurst range of
  independent normal summands. *Biometrika* 63(1), 111–116; Peters, E. E. (1994). *Fractal
  Market Analysis*. Wiley; Weron, R. (2002). Estimating long-range dependence: finite sample
  properties and confidence intervals. *Physica A* 312, 285–299.
* Peng, C.-K. et al. (1994). Mosaic organization of DNA nucleotides. *Phys. Rev. E* 49(2),
  1685–1689. (Detrended fluctuation analysis.)
* Taqqu, M. S., Teverovsky, V. & Willinger, W. (1995). Estimators for long-range dependence:
  an empirical study. *Fractals* 3(4), 785–798.
* Beran, J. (1994). *Statistics for Long-Memory Processes*. Chapman & Hall.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import special

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

#: Fewest events in a group's series for a Hurst estimate (fewer: null).
MIN_HURST_EVENTS = 100
_AV_ITERATIONS = 5


# --------------------------------------------------------------------------------------------
# Hurst exponent


def _scales(lo: int, hi: int) -> np.ndarray:
    """Integer scales from lo to hi, spaced by a factor √2."""
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    n = math.floor(math.log2(hi / lo) * 2) + 1
    return np.unique(np.round(lo * 2.0 ** (np.arange(n) / 2)).astype(np.int64))


def _loglog(scales: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise least-squares line through (log scale, log y) over the finite positive y."""
    ok = np.isfinite(y) & (y > 0)
    x = np.broadcast_to(np.log(scales.astype(np.float64)), y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where(ok, np.log(np.where(ok, y, 1.0)), 0.0)
        n = ok.sum(1)
        mx = np.where(ok, x, 0).sum(1) / n
        my = ly.sum(1) / n
        dx = np.where(ok, x - mx[:, None], 0)
        dy = np.where(ok, ly - my[:, None], 0)
        sxx, sxy, syy = (dx * dx).sum(1), (dx * dy).sum(1), (dy * dy).sum(1)
        slope = sxy / sxx
        r2 = np.where(syy > 0, sxy * sxy / (sxx * syy), 1.0)
    good = n >= 3
    if scales.size == 0:  # a trace too short for a single window: no line, no scale
        none = np.zeros(y.shape[0], dtype=scales.dtype)
        return {"slope": np.full(y.shape[0], np.nan), "r2": np.full(y.shape[0], np.nan),
                "n_scales": n.astype(np.int64), "min_scale": none, "max_scale": none}
    idx = np.arange(scales.size)
    first = np.where(ok.any(1), np.where(ok, idx, scales.size).min(1), 0)
    last = np.where(ok.any(1), np.where(ok, idx, -1).max(1), 0)
    return {"slope": np.where(good, slope, np.nan), "r2": np.where(good, r2, np.nan),
            "n_scales": n.astype(np.int64),
            "min_scale": np.where(good, scales[first], 0),
            "max_scale": np.where(good, scales[last], 0)}


def _bend(scales: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """How far the variance-time curve bends back toward slope −1 at its largest scales:
    local H (1 + slope/2) over each run of a third of the scales, the largest of them minus
    the one over the top third. A straight line (long memory) gives ≈ 0 up to noise; a
    short-range dependent process, whose curve flattens and then falls back to slope −1
    beyond its correlation time, gives a positive drop."""
    k = scales.size // 3
    if k < 3:
        return {}
    local = np.stack([_loglog(scales[i:i + k], v[:, i:i + k])["slope"]
                      for i in range(scales.size - k + 1)], axis=1) / 2 + 1
    peak = np.nanargmax(np.where(np.isfinite(local), local, -np.inf), axis=1)
    rows = np.arange(v.shape[0])
    return {"bend": local[rows, peak] - local[:, -1], "bend_from": scales[peak],
            "bend_scale": np.full(v.shape[0], scales[-k])}


def _h_aggregated_variance(x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Variance of block means at block sizes m ∝ m^(2H − 2) (Leland et al. 1994)."""
    n = x.shape[1]
    scales = _scales(1, n // 32)
    v = np.full((x.shape[0], scales.size), np.nan)
    for j, m in enumerate(scales):
        b = n // m
        v[:, j] = x[:, : b * m].reshape(x.shape[0], b, m).mean(2).var(1, ddof=1)
    fit = _loglog(scales, v)
    # the bend on the raw variances, before the correction below can straighten it
    bend = _bend(scales, v)
    short = bend["bend"] > HURST_BEND if bend else np.zeros(x.shape[0], dtype=bool)
    blocks = (n // scales).astype(np.float64)
    for _ in range(_AV_ITERATIONS):
        # E[s²] = Var X^(m) · (W − W^(2H−1)) / (W − 1) over W blocks under long memory
        # (Beran 1994, §1.4): divide it out at the current estimate of H, then refit. Not
        # under short-range dependence, where it would only flatten the bent curve further.
        h = np.clip(1 + fit["slope"] / 2, 0.5, 0.99)[:, None]
        bias = (blocks - blocks ** (2 * h - 1)) / (blocks - 1)
        fit = _loglog(scales, np.where(np.isfinite(h) & ~short[:, None], v / bias, v))
    fit.update(bend)
    return 1 + fit["slope"] / 2, fit


def _anis_lloyd(n: np.ndarray) -> np.ndarray:
    """Expected R/S of n iid normal values, with Peters' (n − ½)/n factor (Weron 2002)."""
    out = np.empty(n.size)
    for j, size in enumerate(n):  # one term per scale, not per event
        i = np.arange(1, size)
        ratio = math.exp(special.gammaln((size - 1) / 2) - special.gammaln(size / 2))
        out[j] = (size - 0.5) / size * ratio / math.sqrt(math.pi) * np.sqrt((size - i) / i).sum()
    return out


def _h_rescaled_range(x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Anis–Lloyd–Peters corrected R/S: H = 0.5 + slope of log(R/S / E[R/S]) on log n."""
    n = x.shape[1]
    scales = _scales(16, n // 4)
    rs = np.full((x.shape[0], scales.size), np.nan)
    for j, m in enumerate(scales):
        b = n // m
        z = x[:, : b * m].reshape(x.shape[0], b, m)
        z = z - z.mean(2, keepdims=True)
        prof = np.cumsum(z, axis=2)
        r = np.maximum(prof.max(2), 0) - np.minimum(prof.min(2), 0)
        s = np.sqrt((z * z).mean(2))
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(s > 0, r / s, np.nan)
        valid = np.isfinite(q).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rs[:, j] = np.where(valid > 0, np.nansum(q, 1) / valid, np.nan)
    fit = _loglog(scales, rs / _anis_lloyd(scales))
    fit["r2"] = _loglog(scales, rs)["r2"]  # of the classical R/S plot: the corrected is flat
    return 0.5 + fit["slope"], fit


def _h_dfa(x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """DFA-1 (Peng et al. 1994): F(n) of the linearly detrended profile ∝ n^H."""
    n = x.shape[1]
    scales = _scales(16, n // 4)
    y = np.cumsum(x - x.mean(1, keepdims=True), axis=1)
    f = np.full((x.shape[0], scales.size), np.nan)
    for j, m in enumerate(scales):
        b = n // m
        z = y[:, : b * m].reshape(x.shape[0], b, m)
        z = z - z.mean(2, keepdims=True)
        u = np.arange(m) - (m - 1) / 2
        suu = float((u * u).sum())
        beta = z @ u / suu
        resid = (z * z).mean(2) - beta * beta * suu / m
        f[:, j] = np.sqrt(np.maximum(resid, 0).mean(1))
    fit = _loglog(scales, f)
    return fit["slope"], fit


_HURST = {"aggregated_variance": _h_aggregated_variance, "rs": _h_rescaled_range,
          "dfa": _h_dfa}


#: :func:`hurst` flags short-range dependence when the aggregated-variance curve's local H
#: over its top third of scales is this much below the largest local H over any third
#: (fGn with H from 0.6 to 0.9, 2^14 points, 36 seeds: at most 0.09; the MMPP of
#: :func:`hurst`'s docstring: 0.10–0.25 over 1 h, 0.19–0.33 over 2 h, 0.30–0.43 over 4 h).
HURST_BEND = 0.15
#: ... and calls the counts long-range dependent only from this aggregated-variance H up,
LONG_MEMORY_H = 0.6
#: ... with a line through the variance-time curve of at least this R² (fGn: above 0.99).
HURST_MIN_R2 = 0.9


def _hurst_notes(method: str, h: np.ndarray, fit: dict[str, np.ndarray], w: float
                 ) -> pl.Series:
    """Per group, why an estimate is not to be read as long memory (None: no reason)."""
    out: list[str | None] = [None] * h.size
    if method == "dfa":
        for i in np.flatnonzero(h > 1):  # the few flagged groups, not every row
            out[i] = ("dfa above 1: the counts are not stationary (trend, cycle or level "
                      "shifts) at these scales; not a Hurst exponent")
    if method == "aggregated_variance" and "bend" in fit:
        for i in np.flatnonzero(np.isfinite(h) & (fit["bend"] > HURST_BEND)):
            out[i] = (f"the variance-time curve bends back toward slope -1 above "
                      f"{fit['bend_scale'][i] * w:g} s (local H there {fit['bend'][i]:.2f} "
                      f"below its peak, over the scales from {fit['bend_from'][i] * w:g} s): "
                      "short-range dependence, not long memory")
    return pl.Series("note", out, dtype=pl.String)


def _memory(av: np.ndarray, fit: dict[str, np.ndarray], dfa: np.ndarray) -> np.ndarray:
    """The verdict per group of :func:`hurst` (see its docstring); None where H is null."""
    bend = fit.get("bend", np.full(av.shape, np.nan))
    verdict = np.select(
        [~np.isfinite(av), bend > HURST_BEND, av < LONG_MEMORY_H, dfa > 1,
         ~np.isfinite(bend) | (fit["r2"] < HURST_MIN_R2)],
        [None, "short-range", "short-range", "non-stationary", "undetermined"], "long-range")
    return verdict.astype(object)


def _hurst(ev: _Prepared, base_window_s: float | None) -> pl.DataFrame:
    if base_window_s is None:
        w = _default_window(ev)
    else:
        w = float(base_window_s)
        if not w > 0:
            raise ValueError(f"base_window_s: must be positive, got {base_window_s}")
    k_lo, k_hi = _complete(ev, w)
    parts = []
    for g0, g1 in _group_chunks(ev.n_groups, k_hi - k_lo):
        x = _dense(ev, w, k_lo, k_hi, g0, g1)
        enough = x.sum(1) >= MIN_HURST_EVENTS
        rows = g1 - g0
        found = {}
        for method, estimator in _HURST.items():
            h, fit = estimator(x)
            found[method] = np.where(enough, h, np.nan), fit
        av, av_fit = found["aggregated_variance"]
        memory = _memory(av, av_fit, found["dfa"][0])
        for method, (h, fit) in found.items():
            parts.append(_frame(ev, np.arange(g0, g1), {
                "method": [method] * rows, "h": h,
                "min_scale_s": fit["min_scale"] * w, "max_scale_s": fit["max_scale"] * w,
                "n_scales": fit["n_scales"], "r2": fit["r2"],
                "window_s": np.full(rows, w), "n_windows": np.full(rows, k_hi - k_lo),
                "memory": pl.Series(memory, dtype=pl.String),
                "note": _hurst_notes(method, h, fit, w)}))
    out = pl.concat(parts)
    out = out.with_columns(
        pl.when(pl.col("h").is_null()).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("min_scale_s", "max_scale_s"))
    return out.sort(list(ev.by), nulls_last=True, maintain_order=True) if ev.by else out


def hurst(events: Events, by: By = None, base_window_s: float | None = None) -> pl.DataFrame:
    """Hurst exponent H of the count process by three estimators, with the scales used.

    The counts X_1..X_N in the complete base windows of the span (empty ones included) are the
    series. Scales are integers spaced by √2; each estimator is a least-squares line in
    log–log coordinates, and ``r2`` is its coefficient of determination.

    * ``aggregated_variance`` (Leland et al. 1994; Taqqu et al. 1995): the block means X^(m)
      over non-overlapping blocks of m windows have Var X^(m) ∝ m^(2H−2); m from 1 to N/32
      (at least 32 blocks). Under long memory the sample variance of W block means is biased
      low by the factor (W − W^(2H−1)) / (W − 1) (Beran 1994, *Statistics for Long-Memory
      Processes*, §1.4); it is divided out at the current estimate of H and the line refitted
      (5 times), which removes the usual downward bias of this estimator (H = 0.8 fGn of
      2^14 points: 0.77 → 0.79).
    * ``rs``: rescaled range (Hurst 1951; Mandelbrot & Wallis 1969). In each block of n,
      R = max − min of the cumulative deviations from the block mean (0 included) and S the
      block's standard deviation; R/S is averaged over blocks. The small-sample bias is
      removed with the Anis–Lloyd expected value with Peters' correction (Anis & Lloyd 1976;
      Peters 1994; Weron 2002): H = 0.5 + slope of log(R/S / E[R/S]_n) on log n;
      n from 16 to N/4. ``r2`` is that of the uncorrected R/S plot (the corrected points are
      flat when H = 0.5). R/S still underestimates strong long memory at these sizes
      (H = 0.8 fGn of 2^14 points: about 0.74; Taqqu et al. 1995): prefer the other two for
      the value, R/S as a cross-check.
    * ``dfa``: detrended fluctuation analysis of order 1 (Peng et al. 1994): the profile
      Y_k = Σ_{i≤k}(X_i − X̄) is cut into boxes of n, a least-squares line is removed in each,
      and the root mean square residual F(n) ∝ n^H; n from 16 to N/4.

    H ≈ 0.5 for short-range dependent counts (a Poisson process), 0.5 < H < 1 for long-range
    dependence (self-similar traffic); a trend or a strong daily cycle pushes every estimate
    towards or above 1 (read them with :func:`periodicity`). ``base_window_s`` defaults to
    the smallest ladder window (≥ the resolution, a multiple of it, and ≥ :data:`MIN_WINDOW_S`
    for continuous timestamps) giving at most :data:`MAX_SERIES` windows; for
    counts input it must be a multiple of the base window. ``h`` is null with fewer than 3
    scales or fewer than :data:`MIN_HURST_EVENTS` events in the series (a handful of events
    in thousands of windows gives ≈ 0.5 whatever their structure).

    ``memory`` is the verdict per group, the same on its three rows:

    * ``short-range`` — no long memory: the aggregated-variance H is below
      :data:`LONG_MEMORY_H` (Poisson and renewal counts: 0.5), or its variance-time curve
      bends back toward slope −1 at the largest scales. The local H (1 + slope / 2 of the raw
      curve) over the top third of the scales is then more than :data:`HURST_BEND` below the
      largest local H over any third of them; the finite-sample correction is not applied
      there (it assumes long memory and would flatten the bend). A two-state
      Markov-modulated Poisson process (20/s and 2/s, exponential 60 s sojourns; H = 0.5
      asymptotically) over 4 h reads H ≈ 0.86 and drops by 0.30–0.43; fGn-driven counts
      (H = 0.6 … 0.9) by at most 0.09. The bend shows only when the scales reach well past
      the correlation time: over 1 h that MMPP drops by 0.10–0.25 and is often not flagged;
    * ``non-stationary`` — not short-range by the above, but DFA reads above 1 (a trend,
      cycle or level shifts at these scales; over 1 h the same MMPP reads DFA ≈ 1.07): there
      is no Hurst exponent to report;
    * ``undetermined`` — none of the above, but the curve has too few scales to see a bend
      (under 9: a series of fewer than 736 windows) or a line fits it
      with R² below :data:`HURST_MIN_R2`: no verdict either way;
    * ``long-range`` — H ≥ :data:`LONG_MEMORY_H`, a straight variance-time curve (R² ≥
      :data:`HURST_MIN_R2`, no bend) and DFA at most 1 (fGn-driven counts with H = 0.8 read
      0.76–0.81).

    Read ``h`` with ``r2`` (a value from a curve no line fits is no exponent) and with the
    scale range ``min_scale_s`` … ``max_scale_s``: all of them depend on the base window.
    ``note`` says why, in words, where an estimate is not to be read as long memory: DFA
    above 1 on the dfa row, the bend on the aggregated_variance row.

    Returns ``[by..., method, h, min_scale_s, max_scale_s, n_scales, r2, window_s,
    n_windows, memory, note]``, three rows per group.
    """
    return _hurst(_prepare(events, by), base_window_s)
