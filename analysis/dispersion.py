"""Index of dispersion of counts across window sizes.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.

References
----------
* Cox, D. R. & Lewis, P. A. W. (1966). *The Statistical Analysis of Series of Events*.
  Methuen. (Index of dispersion of counts.)
* Leland, W. E., Taqqu, M. S., Willinger, W. & Wilson, D. V. (1994). On the self-similar
  nature of Ethernet traffic (extended version). *IEEE/ACM Trans. Networking* 2(1), 1–15.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from servetrace.analysis.counting import (
    MIN_WINDOW_S,
    MIN_WINDOWS,
    By,
    Events,
    _complete,
    _frame,
    _ladder,
    _n_complete,
    _on_grid,
    _prepare,
    _Prepared,
    _snap,
    _sparse,
)

# --------------------------------------------------------------------------------------------
# Dispersion


def _dispersion(ev: _Prepared, w: float, min_windows: int = 2) -> dict[str, np.ndarray]:
    """Mean, variance, IDC and peak-to-mean of complete-window counts, per group."""
    g = ev.n_groups
    gid, k, c = _sparse(ev, w)
    k_lo, k_hi = _complete(ev, w)
    n_w = k_hi - k_lo
    inside = (k >= k_lo) & (k < k_hi)
    gi, ci = gid[inside], c[inside].astype(np.float64)
    s1 = np.bincount(gi, weights=ci, minlength=g)
    s2 = np.bincount(gi, weights=ci * ci, minlength=g)
    peak = np.zeros(g)
    np.maximum.at(peak, gi, ci)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n_w
        var = np.maximum(s2 - n_w * mean**2, 0) / (n_w - 1)
        ok = (n_w >= max(min_windows, 2)) & (mean > 0)
        return {"n_windows": np.full(g, n_w, dtype=np.int64),
                "mean": np.where(n_w >= 1, mean, np.nan),
                "variance": np.where(n_w >= 2, var, np.nan),
                "idc": np.where(ok, var / mean, np.nan),
                "peak_to_mean": np.where(ok, peak / mean, np.nan)}


def dispersion_curve(events: Events, window_s: Sequence[float] | None = None, by: By = None
                     ) -> pl.DataFrame:
    """Index of dispersion of counts and peak-to-mean ratio as curves over the window size.

    For window size w, with N_k the events in the k-th complete window of the span (empty
    windows included, alignment as in the module docstring) and W windows:
    mean = Σ N_k / W, variance = Σ (N_k − mean)² / (W − 1),
    IDC(w) = variance / mean (Cox & Lewis 1966), peak_to_mean(w) = max N_k / mean.
    A Poisson process has IDC = 1 at every w; IDC growing with w as w^(2H−1) is the signature
    of long-range dependence (Leland et al. 1994), the burstiness across time scales seen in
    LLM serving traces (Wang et al. 2024, BurstGPT).

    Default windows: :data:`WINDOW_LADDER_S` from max(resolution, :data:`MIN_WINDOW_S`),
    snapped up to multiples of the resolution (Mooncake: 3, 6, 15, 30, 60, ... s), up to the
    largest that leaves :data:`MIN_WINDOWS` complete windows (one week or more when the trace
    is long enough). Given windows are all computed; a row needs 2 windows and a positive mean
    for IDC. ``on_grid`` is false for a window that is not a multiple of the resolution (its
    counts alias the ticks).

    Returns ``[by..., window_s, n_windows, mean, variance, idc, peak_to_mean, on_grid]``,
    sorted by group and window.
    """
    ev = _prepare(events, by)
    if window_s is None:
        lo = max(ev.resolution_s, MIN_WINDOW_S if ev.kind == "arrivals" else 0.0)
        windows = [w for w in _ladder(ev, lo)
                   if _n_complete(ev, w) >= MIN_WINDOWS]
        windows = windows or [_snap(lo, ev.unit_s)]
    else:
        windows = sorted({float(w) for w in window_s})
        if not windows or windows[0] <= 0:
            raise ValueError(f"window_s: must be positive sizes, got {list(window_s)}")
    parts = []
    for w in windows:
        d = _dispersion(ev, w)
        g = ev.n_groups
        parts.append(_frame(ev, np.arange(g), {
            "window_s": np.full(g, w), **d, "on_grid": np.full(g, _on_grid(ev, w))}))
    out = pl.concat(parts)
    return out.sort([*ev.by, "window_s"], nulls_last=True, maintain_order=True)
