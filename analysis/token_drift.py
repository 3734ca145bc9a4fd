"""Token lengths over time: distances between the length distributions of consecutive time
windows (:func:`drift`) and the failure rate per window (:func:`failure_rate`), with the
conventions of :mod:`servetrace.analysis.tokens` (which re-exports both).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from servetrace.analysis import token_counts as _counts
from servetrace.analysis.frames import columns as _keys
from servetrace.analysis.token_counts import (
    By,
    Frame,
    _aggregate,
    _collect,
    _dense_groups,
    _group_ids,
    _integer_values,
    _no_overlap,
    _positive,
    _read,
)


def drift(requests: Frame, field: str = "input_tokens", window_s: float = 3600.0,
          by: By = None) -> pl.DataFrame:
    """Distance between the distributions of ``field`` in consecutive time windows.

    Windows are [j·w, (j+1)·w) of ``arrival_s`` (w = ``window_s``, aligned to the trace's zero);
    each non-empty window is compared with the next non-empty one of its group (a gap shows as
    ``next_window_start_s`` − ``window_start_s`` > w). With F and G the two empirical CDFs on
    the sorted union of their values v_1 < … < v_m:

        wasserstein = W₁ = ∫ |F − G| dv = Σ_j |F(v_j) − G(v_j)| (v_{j+1} − v_j),
        ks          = sup_v |F(v) − G(v)|  (two-sample Kolmogorov–Smirnov statistic),

    the same values as ``scipy.stats.wasserstein_distance`` and ``ks_2samp(...).statistic``,
    computed for all window pairs at once from per-(window, value) counts. W₁ is in tokens
    (the mean shift when one distribution is a translate of the other); KS is in [0, 1].
    BurstGPT (Wang et al.) shows request and response lengths whose distributions shift over
    time; hour (3600 s) and day (86400 s) windows are the natural scales. Null values are
    excluded.

    Returns ``[by..., window_start_s, next_window_start_s, n, n_next, wasserstein, ks]``.
    """
    fn = "drift"
    keys = _keys(by)
    _positive(window_s, "window_s", fn)
    frame = _read(requests, keys, [field], fn, extra=["arrival_s"])
    if keys:
        frame, ids = _group_ids(frame, keys)
    else:
        ids = pl.DataFrame({"_g": [0]}, schema={"_g": pl.Int64})
    column = frame[field]
    known = frame["arrival_s"].is_not_null() & column.is_not_null()
    if column.dtype.is_float():
        known = known & column.is_finite()
    if not known.all():
        frame, column = frame.filter(known), column.filter(known)
    t = frame["arrival_s"].cast(pl.Float64).to_numpy()
    if not np.isfinite(t).all():
        raise ValueError(f"{fn}: arrival_s has non-finite values")
    with np.errstate(over="ignore"):
        scaled = t / window_s
    np.floor(scaled, out=scaled)
    if scaled.size and max(-scaled.min(), scaled.max()) >= 2.0**62:
        raise ValueError(f"{fn}: arrival_s / window_s beyond ±2^62 windows; use a larger "
                         "window_s")
    w = scaled.astype(np.int64)
    del scaled
    values = _integer_values(column)
    v = values if values is not None else column.cast(pl.Float64).to_numpy()
    group = frame["_g"].cast(pl.Int64).to_numpy() if keys else None
    g, w_first, w_next, n, n_next, wasserstein, ks = _window_distances(group, w, v)
    distances = pl.DataFrame({
        "_g": g, "window_start_s": w_first * window_s, "next_window_start_s": w_next * window_s,
        "n": n, "n_next": n_next, "wasserstein": wasserstein, "ks": ks,
    }, schema={"_g": ids.schema["_g"], "window_start_s": pl.Float64,
               "next_window_start_s": pl.Float64, "n": pl.Int64, "n_next": pl.Int64,
               "wasserstein": pl.Float64, "ks": pl.Float64})
    return (distances.join(ids, on="_g", how="left", maintain_order="left")
            .select(*keys, *distances.columns[1:])
            .sort([*keys, "window_start_s"], nulls_last=True))


def _window_distances(g: np.ndarray | None, w: np.ndarray, v: np.ndarray
                      ) -> tuple[np.ndarray, ...]:
    """W₁ and KS between consecutive non-empty windows, for all groups at once.

    One entry per request: ``g`` group id (None: one group), ``w`` window index (overwritten),
    ``v`` value (int64 or float64, finite). Each request gets one int64 key ordered by
    (group, window, value rank). With few cells, the full table of counts gives every
    window's CDF on the common grid of values (:func:`_dense_distances`). Otherwise counting
    the keys (a bincount when the table fits, else one sort and a run-length encoding) gives
    the counts per (window, value), in order; pair j compares window j with window j + 1 of
    the same group: window j's counts (side A) and window j + 1's (side B) are two sorted
    runs keyed (j, value), merged in linear time by a stable sort; cumulative counts within
    a pair give F and G at every point of the union of their values.

    Returns (group, first window index, next window index, n, n_next, W₁, KS) arrays, one entry
    per pair, ordered by group then window.
    """
    empty = np.zeros(0, dtype=np.int64)
    nothing = (empty, empty, empty, empty, empty, empty.astype(float), empty.astype(float))
    if w.size == 0:
        return nothing
    g_max = 0 if g is None else int(g.max())
    w_min = int(w.min())
    n_w = int(w.max()) - w_min + 1
    v_min, v_max = v.min(), v.max()
    integral = v.dtype.kind in "iu" or bool(np.all(v == np.floor(v)))
    values: np.ndarray | None = None  # distinct values, where ranks are not offsets
    if integral and v_max - v_min < _counts._MAX_CELLS:
        # ranks among the distinct values by counting over the value range: the (window,
        # rank) table then holds no empty value columns
        base = 0 if v.dtype.kind in "iu" and 0 <= v_min <= v_max // 2 else v_min
        offset = v if base == 0 else (v - base).astype(np.int64, copy=False)
        present = np.bincount(offset) > 0
        values = np.flatnonzero(present) + float(base)
        rank, n_r = (np.cumsum(present) - 1)[offset], len(values)
        del offset, present
    elif integral and v_max - v_min < 2.0**40:
        rank, n_r = (v - v_min).astype(np.int64), int(v_max - v_min) + 1
    else:
        values, rank = np.unique(v.astype(np.float64), return_inverse=True)
        n_r = len(values)
    window = w  # by group, then time (in place: w is not used again)
    window -= w_min
    if g is not None:
        window += g * n_w
    window_ids: np.ndarray | None = None  # distinct windows, where ids are not offsets
    if (g_max + 1) * n_w * n_r >= 2**62:  # keys would overflow: dense numbering
        if values is None:
            values, rank = np.unique(v.astype(np.float64), return_inverse=True)
            n_r = len(values)
        if (g_max + 1) * n_w * n_r >= 2**62:
            window_ids, window = np.unique(window, return_inverse=True)
    window *= n_r
    window += rank
    key = window
    del window, rank
    cells = (g_max + 1) * n_w * n_r if window_ids is None else len(window_ids) * n_r
    if window_ids is None and cells <= min(_counts._MAX_CELLS // 4, max(1 << 22, key.size)):
        # few cells: CDFs of every window on the common grid of values, pairs at once
        table = np.bincount(key, minlength=cells).reshape(-1, n_r)
        del key
        grid = values if values is not None else np.arange(n_r) + float(v_min)
        return _dense_distances(table, grid, n_w, w_min) or nothing
    if cells <= min(_counts._MAX_CELLS, max(_counts._MAX_CELLS // 4, 8 * key.size)):
        # counting, not sorting: the non-zero cells of a dense table, in key order
        table = np.bincount(key, minlength=cells)
        keys = np.flatnonzero(table)
        counts = table[keys]
        del table
    else:
        key.sort()
        first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        keys, counts = key[first], np.diff(np.append(first, key.size))
    del key

    key_window = keys // n_r
    key_rank = keys - key_window * n_r
    window_first = np.flatnonzero(np.r_[True, key_window[1:] != key_window[:-1]])
    window_code = key_window[window_first]
    if window_ids is not None:
        window_code = window_ids[window_code]
    window_n = np.add.reduceat(counts, window_first)
    window_g, window_w = window_code // n_w, window_code % n_w + w_min
    has_next = np.r_[window_g[1:] == window_g[:-1], False]
    if not has_next.any():
        return nothing
    index = np.repeat(np.arange(len(window_first)), np.diff(np.r_[window_first, len(keys)]))
    side_a = has_next[index]
    side_b = np.r_[False, has_next[:-1]][index]
    n_a = int(side_a.sum())
    both = np.concatenate([index[side_a] * n_r + key_rank[side_a],
                           (index[side_b] - 1) * n_r + key_rank[side_b]])
    # merge the two sorted runs: a stable sort (timsort) finds them and merges them in linear
    # time; equal keys keep A first
    order = np.argsort(both, kind="stable")
    both = both[order]
    pair = both // n_r
    rank_m = both - pair * n_r
    del both
    step_counts = np.concatenate([counts[side_a], counts[side_b]])[order]
    cum_a = np.cumsum(np.where(order < n_a, step_counts, 0))
    cum_b = np.cumsum(step_counts)
    cum_b -= cum_a
    del order, step_counts
    # counts before pair j: the A sides of earlier pairs hold n of their first window, the B
    # sides n of their second
    first_n = np.where(has_next, window_n, 0)
    second_n = np.where(has_next, np.r_[window_n[1:], 0], 0)
    before_a = np.cumsum(first_n) - first_n
    before_b = np.cumsum(second_n) - second_n
    gap = np.abs((cum_a - before_a[pair]) / window_n[pair]
                 - (cum_b - before_b[pair]) / window_n[pair + 1])
    del cum_a, cum_b
    value = rank_m + float(v_min) if values is None else values[rank_m]
    same_pair = np.r_[pair[1:] == pair[:-1], False]
    step = np.where(same_pair, np.r_[value[1:], 0.0] - value, 0.0)
    # a value present on both sides appears twice: only its last row has both counts in
    last = ~same_pair | np.r_[rank_m[1:] != rank_m[:-1], True]
    start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    pairs = pair[start]
    wasserstein = np.add.reduceat(gap * step, start)
    ks = np.maximum.reduceat(np.where(last, gap, 0.0), start)
    return (window_g[pairs], window_w[pairs], window_w[pairs + 1], window_n[pairs],
            window_n[pairs + 1], wasserstein, ks)


def _dense_distances(table: np.ndarray, grid: np.ndarray, n_w: int, w_min: int
                     ) -> tuple[np.ndarray, ...] | None:
    """:func:`_window_distances` from the full table of counts: row g·n_w + j is window
    w_min + j of group g, column i the count of value ``grid[i]`` (ascending). Each non-empty
    window's empirical CDF on the grid is its cumulative counts over n; between two grid
    points both CDFs are flat, so W₁ = Σ_i |F − G|(grid_i)·(grid_{i+1} − grid_i) and KS is
    the largest |F − G| on the grid: the same values as on the union of the two windows'
    values (W₁ up to the rounding of a longer sum). None when no window has a successor."""
    window_n = table.sum(1)
    code = np.flatnonzero(window_n)
    window_g, window_w, window_n = code // n_w, code % n_w + w_min, window_n[code]
    first = np.flatnonzero(window_g[1:] == window_g[:-1])  # pair j: windows j and j + 1
    if first.size == 0:
        return None
    cdf = np.cumsum(table[code], axis=1) / window_n[:, None]
    gap = np.abs(cdf[first] - cdf[first + 1])
    del cdf
    wasserstein = (gap[:, :-1] * np.diff(grid)).sum(1)
    return (window_g[first], window_w[first], window_w[first + 1], window_n[first],
            window_n[first + 1], wasserstein, gap.max(1))


def failure_rate(requests: Frame, by: By = None,
                 window_s: float | None = None) -> pl.DataFrame:
    """Share of failed requests per group (and per time window when ``window_s`` is given).

    rate = failed / n_known, where ``failed`` counts rows whose ``failed`` column is true and
    ``n_known`` the rows where it is not null. BurstGPT (Wang et al.) marks a failed request by
    a response of zero tokens; its loader sets ``failed`` from that. Sources that do not record
    failures (Azure, Mooncake) leave ``failed`` null or absent: their ``failed`` and ``rate``
    are null, never 0. Windows are [j·w, (j+1)·w) of ``arrival_s``; only non-empty ones appear.

    Returns ``[by..., (window_start_s,) n, failed, rate, n_known]``; ``n`` all rows.
    """
    fn = "failure_rate"
    keys = _keys(by)
    if window_s is not None:
        _positive(window_s, "window_s", fn)
    _no_overlap(keys, ["failed"], fn)
    needed = [*keys, "arrival_s"] if window_s is not None else keys
    frame = _collect(requests, needed, fn, optional=["failed"])
    if "failed" not in frame.columns or frame.schema["failed"] == pl.Null:
        frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("failed"))
    elif frame.schema["failed"] != pl.Boolean:
        raise ValueError(f"{fn}: column 'failed' must be Boolean, not {frame.schema['failed']}")
    if window_s is not None:
        counted = _failures_counted(frame, keys, window_s)
        if counted is not None:
            return counted
    group = list(keys)
    if window_s is not None:
        frame = frame.with_columns(
            ((pl.col("arrival_s") / window_s).floor() * window_s).alias("window_start_s"))
        group.append("window_start_s")
    known = pl.col("failed").is_not_null().sum().cast(pl.Int64)
    return _aggregate(frame, group, [
        pl.len().cast(pl.Int64).alias("n"),
        pl.when(known > 0).then(pl.col("failed").sum().cast(pl.Int64)).alias("failed"),
        pl.when(known > 0).then(pl.col("failed").sum() / known).alias("rate"),
        known.alias("n_known"),
    ])


def _failures_counted(frame: pl.DataFrame, keys: list[str], window_s: float
                      ) -> pl.DataFrame | None:
    """:func:`failure_rate` per window by counting rows per (group, window) cell, or None
    where counting does not apply (arrival_s not all finite, or too many cells)."""
    t = frame["arrival_s"].cast(pl.Float64)
    if t.null_count():
        return None
    t = t.to_numpy()
    if t.size == 0 or not np.isfinite(t).all():
        return None
    with np.errstate(over="ignore"):
        scaled = t / window_s
    start = np.floor(scaled, out=scaled)  # the window start, in windows (Polars' floor)
    w_min, w_max = float(start.min()), float(start.max())
    if not w_max - w_min < _counts._MAX_CELLS:  # also NaN-safe: t / window_s may overflow
        return None
    gid, ids = _dense_groups(frame, keys)
    n_w = int(w_max - w_min) + 1
    if n_w * ids.height > _counts._MAX_CELLS // 4:  # three count tables of this size
        return None
    start -= w_min
    cell = start.astype(np.int64)
    del scaled, start
    if gid is not None:
        cell += gid * n_w
    cells = n_w * ids.height
    n = np.bincount(cell, minlength=cells)
    failed = frame["failed"]
    known = failed.is_not_null().to_numpy()
    n_known = np.bincount(cell[known], minlength=cells) if not known.all() else n
    n_failed = np.bincount(cell[failed.fill_null(False).to_numpy()], minlength=cells)
    present = np.flatnonzero(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = n_failed[present] / n_known[present]
    has = n_known[present] > 0
    out = pl.DataFrame({
        "_g": present // n_w,
        "window_start_s": (present % n_w + w_min) * window_s,
        "n": n[present], "failed": pl.Series(n_failed[present]).set(~pl.Series(has), None),
        "rate": pl.Series(rate).set(~pl.Series(has), None), "n_known": n_known[present]},
        schema_overrides={"_g": pl.Int64, "n": pl.Int64, "failed": pl.Int64,
                          "n_known": pl.Int64})
    if not keys:
        return out.drop("_g")
    return (out.join(ids, on="_g", how="left").sort([*keys, "window_start_s"], nulls_last=True)
            .select(*keys, "window_start_s", "n", "failed", "rate", "n_known"))
