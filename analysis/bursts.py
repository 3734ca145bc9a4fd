"""Bursts: windows whose rate exceeds k × a rolling baseline.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.

References
----------
* Wang, Y. et al. (2024). BurstGPT: A real-world workload dataset to optimize LLM serving
  systems. arXiv:2401.17644 (KDD 2025). (Burstiness of LLM serving workloads.)
"""

from __future__ import annotations

import numpy as np
import polars as pl

from servetrace.analysis.counting import (
    By,
    Events,
    _complete,
    _dense,
    _frame,
    _group_chunks,
    _prepare,
    _Prepared,
)

# --------------------------------------------------------------------------------------------
# Bursts


_BURST_SCHEMA = {"start_s": pl.Float64, "end_s": pl.Float64, "length_s": pl.Float64,
                 "peak_rate_per_s": pl.Float64, "baseline_rate_per_s": pl.Float64,
                 "height": pl.Float64, "count": pl.Int64, "n_windows": pl.Int64}


def _rolling_median(x: np.ndarray, size: int) -> np.ndarray:
    """Centred rolling median of odd ``size`` along each row, mirrored at the row ends."""
    half = size // 2
    padded = np.pad(x, ((0, 0), (half, half)), mode="symmetric")
    med = pl.Series(padded.ravel()).rolling_median(size).to_numpy()
    return med.reshape(padded.shape)[:, size - 1:]


def _bursts(ev: _Prepared, window_s: float, k: float, baseline_s: float,
            min_count: int) -> pl.DataFrame:
    if not window_s > 0 or not baseline_s > 0 or not k > 0:
        raise ValueError(f"window_s, baseline_s and k must be positive, got {window_s}, "
                         f"{baseline_s}, {k}")
    w = float(window_s)
    k_lo, k_hi = _complete(ev, w)
    n = k_hi - k_lo
    parts = []
    if n >= 1:
        size = max(1, round(baseline_s / w))
        size = min(size + (size % 2 == 0), n if n % 2 else n - 1 or 1)
        for g0, g1 in _group_chunks(ev.n_groups, n):
            x = _dense(ev, w, k_lo, k_hi, g0, g1)
            # floor: the group's mean count per window over the span, so that silence (a
            # rolling median of 0) does not make every event a burst of infinite height
            base = np.maximum(_rolling_median(x, size), x.mean(1, keepdims=True))
            hot = (x > k * base) & (x >= min_count)
            pad = np.zeros((x.shape[0], n + 2), dtype=np.int8)
            pad[:, 1:-1] = hot
            edge = np.diff(pad, axis=1)
            gs, s = np.nonzero(edge == 1)
            _, e = np.nonzero(edge == -1)           # same row-major order as the starts
            if s.size == 0:
                continue
            width = n + 1
            idx = np.empty(2 * s.size, dtype=np.int64)
            idx[0::2], idx[1::2] = gs * width + s, gs * width + e
            xp = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1).ravel()
            bp = np.concatenate([base, np.zeros((x.shape[0], 1))], axis=1).ravel()
            peak = np.maximum.reduceat(xp, idx)[0::2]
            total = np.add.reduceat(xp, idx)[0::2]
            base_mean = np.add.reduceat(bp, idx)[0::2] / (e - s)
            height = peak / base_mean  # base ≥ the mean > 0 wherever a window is hot
            parts.append(_frame(ev, g0 + gs, {
                "start_s": ev.origin_s + (k_lo + s) * w, "end_s": ev.origin_s + (k_lo + e) * w,
                "length_s": (e - s) * w, "peak_rate_per_s": peak / w,
                "baseline_rate_per_s": base_mean / w, "height": height,
                "count": total.astype(np.int64), "n_windows": (e - s).astype(np.int64)}))
    if not parts:
        return pl.DataFrame(schema={**ev.keys.schema, **_BURST_SCHEMA})
    return pl.concat(parts)


def bursts(events: Events, window_s: float = 60.0, k: float = 2.0, baseline_s: float = 3600.0,
           by: By = None, *, min_count: int = 1) -> pl.DataFrame:
    """Bursts: runs of windows whose rate exceeds ``k`` times a rolling baseline.

    Counts N_i in the complete windows of ``window_s`` (empty ones included) are compared with
    a baseline B_i, the centred rolling median of the counts over ``baseline_s`` (an odd
    number of windows, mirrored at the ends of the span). The median, unlike the mean, is
    not raised by the burst it is measuring as long as the burst lasts less than half of
    ``baseline_s`` (the idea of Hampel's robust filter), floored at the group's mean count
    per window over the span, N̄: B_i = max(median_i, N̄). A window is hot when
    N_i > k·B_i and N_i ≥ ``min_count``; a burst is a maximal run of hot windows.

    The floor keeps a trace with long silences (a rolling median of 0) from reporting every
    active window as a burst of infinite height: a burst out of idleness is measured against
    the trace's mean rate, so ``height`` is always finite. With few events per window
    Poisson noise alone makes hot windows (P(N > k·λ) for a Poisson λ): choose ``window_s``
    so that windows hold tens of events, or raise ``min_count``. Burstiness of LLM serving
    traffic in these terms is discussed by Wang et al. (2024, BurstGPT).

    Returns one row per burst: ``[by..., start_s, end_s, length_s, peak_rate_per_s,
    baseline_rate_per_s, height, count, n_windows]`` where the rates are per second
    (count / window_s), ``baseline_rate_per_s`` is the mean baseline over the burst, height =
    peak rate / baseline rate, and ``count`` the events in the burst; sorted by group and
    start.
    """
    return _bursts(_prepare(events, by), window_s, k, baseline_s, min_count)
