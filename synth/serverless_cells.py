"""Sparse count series for :func:`servetrace.synth.serverless.fit`: the same statistics as
:mod:`servetrace.synth.serverless_counts` computes on a dense functions × windows grid, from
the non-zero (function, window, count) cells alone.

Azure Functions 2019 holds 50,000 functions × 20,160 minutes over its 14 days, about a
quarter of them non-zero and heavy-tailed across functions (Shahrad et al., "Serverless in
the Wild", USENIX ATC 2020): a dense int64 grid is 8 GB before any float copy, where the
cells are about 2 GB. Everything here costs time and memory in proportion to the cells, except
the harmonic profile's mean (one pass over each modulated function's windows, in chunks of
functions) and the Hurst calibration's first :data:`~servetrace.synth.serverless_counts.
CALIBRATION_WINDOWS` windows of the busy functions, which are dense by definition.

Every function here is row-wise (each function's figures depend on its own cells only, in a
fixed order of operations), so chunking never changes a bit of the result; against the dense
path the statistics are the same up to floating-point summation order (sums of counts over
cells instead of over all windows; tests/test_serverless_cells.py checks both).
The input can be a LazyFrame (a scan of the store): only the key, window and count columns
are read, in the streaming engine.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.synth.serverless_counts import (
    _KEYS,
    BATCH_SIZE,
    COUNT_CV,
    COUNT_IDC,
    GAP_SIZE,
    MIN_FIRINGS,
    OTHER_SHARE,
    TABLE_SIZE,
    TIMER_SHARE,
    Grid,
    _design,
    harmonics_from_hourly,
)

CHUNK_CELLS = 1 << 22
"""Cells per chunk of functions that :func:`servetrace.synth.serverless.fit` processes at once
(temporaries stay a few hundred MB, and reused rather than faulted in anew)."""
SORT_CELLS = 1 << 22
"""Padded cells sorted per chunk of functions by :func:`segment_sort`."""
PROFILE_CELLS = 1 << 18
"""Function × window cells per chunk of the harmonic profile's mean."""


@dataclass(frozen=True)
class Cells:
    """A trace as its non-zero count cells, sorted by function then window."""

    keys: pl.DataFrame
    """tenant, app, function, trigger; row i is function i."""
    fid: np.ndarray
    """int64 function of each cell, ascending."""
    m: np.ndarray
    """int64 window of each cell (ascending within a function), from the origin."""
    c: np.ndarray
    """int64 count (> 0)."""
    n_t: int
    origin_s: float
    window_s: float
    times: pl.DataFrame | None = None
    """Per-invocation input only, as :attr:`Grid.times`."""

    @property
    def n_f(self) -> int:
        return self.keys.height

    def offsets(self) -> np.ndarray:
        """Start of each function's cells, and the end: (n_f + 1,)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.fid, minlength=self.n_f))])

    def dense(self, rows: np.ndarray, n_windows: int | None = None,
              values: np.ndarray | None = None) -> np.ndarray:
        """The dense (len(rows), n_windows) matrix of ``values`` (default: the counts) of the
        selected functions, over their first ``n_windows`` windows."""
        n_w = self.n_t if n_windows is None else min(n_windows, self.n_t)
        v = self.c if values is None else values
        pos = np.full(self.n_f, -1, dtype=np.int64)
        pos[rows] = np.arange(len(rows))
        sel = (pos[self.fid] >= 0) & (self.m < n_w)
        out = np.zeros((len(rows), n_w), dtype=v.dtype)
        out[pos[self.fid[sel]], self.m[sel]] = v[sel]
        return out

    def take(self, lo: int, hi: int) -> Cells:
        """The functions ``lo … hi − 1`` (renumbered from 0; the arrays are views but the
        function numbers)."""
        a, b = np.searchsorted(self.fid, [lo, hi])
        times = None
        if self.times is not None:
            times = (self.times.filter(pl.col("fid").is_between(lo, hi, closed="left"))
                     .with_columns(pl.col("fid") - lo))
        return Cells(self.keys.slice(lo, hi - lo), self.fid[a:b] - lo, self.m[a:b],
                     self.c[a:b], self.n_t, self.origin_s, self.window_s, times)

    def to_grid(self) -> Grid:
        """The dense :class:`Grid` (small traces and the dense statistics' callers)."""
        return Grid(self.keys, self.dense(np.arange(self.n_f)), self.origin_s, self.window_s,
                    self.times)


def function_chunks(x: Cells, cells: int | None = None) -> list[tuple[int, int]]:
    """Consecutive function ranges of about ``cells`` cells each (default
    :data:`CHUNK_CELLS`; a function is never split)."""
    per = np.bincount(x.fid, minlength=x.n_f)
    end = np.cumsum(per)
    size = CHUNK_CELLS if cells is None else cells
    cuts = np.unique(np.searchsorted(end, np.arange(size, int(end[-1]) if len(end) else 0,
                                                    size), side="left") + 1)
    bounds = [0, *(int(c) for c in cuts if 0 < c < x.n_f), x.n_f]
    return list(itertools.pairwise(bounds))


def _lazy_keys(lf: pl.LazyFrame) -> pl.LazyFrame:
    schema = lf.collect_schema()
    cols = []
    for c in (*_KEYS, "trigger"):
        if c not in schema:
            cols.append(pl.lit(None, pl.String).alias(c))
        elif not isinstance(schema[c], pl.Categorical | pl.Enum):
            cols.append(pl.col(c).cast(pl.String))
    return lf.with_columns(cols) if cols else lf


def cells(table: pl.DataFrame | pl.LazyFrame, window_s: float = 60.0) -> Cells:
    """The non-zero cells of an ``invocation_counts`` or ``invocations`` table, with the same
    function order, origin and windows as :func:`servetrace.synth.serverless_counts.grid`.

    Counts keep their own window (one ``window_s`` for the whole table, else an error) and
    repeated (function, window) rows add up; invocations are counted in ``window_s`` windows
    from the floor of the first arrival.
    """
    lf = _lazy_keys(table.lazy())
    schema = lf.collect_schema()
    times = None
    if "count" in schema and "window_start_s" in schema:
        windows = lf.select(pl.col("window_s").unique()).collect()["window_s"]
        if windows.len() > 1:
            raise ValueError(f"serverless fit: invocation_counts mixes window sizes "
                             f"{sorted(windows.to_list())}; fit one window size at a time")
        lf = lf.filter(pl.col("count") > 0)
        start, weight = "window_start_s", pl.col("count")
        if not schema["count"].is_integer():
            weight = weight.round()
    elif "arrival_s" in schema:
        frame = lf.collect()
        lf = frame.lazy()
        windows = pl.Series([float(window_s)] * (frame.height > 0))
        start, weight = "arrival_s", pl.lit(1, pl.Int64)
        times = frame
    else:
        raise ValueError("serverless fit: need an invocation_counts table (window_start_s, "
                         "window_s, count) or an invocations table (arrival_s)")
    lo = lf.select(pl.col(start).min()).collect().item() if windows.len() else None
    if lo is None:
        raise ValueError("serverless fit: the table has no rows")
    w = float(windows[0])
    origin = float(lo) if times is None else math.floor(float(lo) / w) * w
    # first-appearance order (as grid's), without holding the key columns: the first row
    # index of each key, from the streaming engine
    keys = (lf.select(*_KEYS, "trigger").with_row_index("_r").group_by(list(_KEYS))
            .agg(pl.col("_r").min(), pl.col("trigger").drop_nulls().first())
            .collect(engine="streaming").sort("_r").drop("_r"))
    index = keys.select(_KEYS).with_row_index("fid")
    m = (((pl.col(start) - origin) / w).round() if times is None
         else ((pl.col(start) - origin) / w).floor())
    rows = (lf.join(index.lazy(), on=list(_KEYS), how="left", nulls_equal=True,
                    maintain_order="left")
            .select(pl.col("fid").cast(pl.Int64), m.cast(pl.Int64).alias("m"),
                    weight.cast(pl.Int64).alias("c"))
            .collect(engine="streaming"))
    fid, mm, c = (rows[k].to_numpy() for k in ("fid", "m", "c"))
    del rows
    n_t = int(mm.max()) + 1
    if times is not None:  # one row per invocation, in the table's order
        times = times.select(pl.Series("fid", fid),
                             (pl.col("arrival_s") - origin).alias("arrival_s"),
                             *[pl.col(c) for c in ("duration_s", "memory_mb")
                               if c in times.columns])
    key = fid * n_t + mm
    if key.size > 1 and not bool((key[1:] > key[:-1]).all()):  # unsorted or repeated cells
        order = np.argsort(key, kind="stable")
        key, c = key[order], c[order]
        first = np.concatenate([[True], key[1:] != key[:-1]])
        c = np.add.reduceat(c, np.flatnonzero(first))
        key = key[first]
        fid, mm = key // n_t, key % n_t
    del key
    keys = keys.with_columns(pl.col(*_KEYS, "trigger").cast(pl.String))
    return Cells(keys, fid, mm, c, n_t, origin, w, times)


def segment_sort(offsets: np.ndarray, values: np.ndarray,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """``values`` sorted within each segment ``offsets[i]:offsets[i + 1]`` of the selected
    ``rows`` (all by default; others are left as they are), in place of a copy.

    Segments of similar length are sorted together as rows of a padded matrix (length order,
    chunks of :data:`SORT_CELLS`): the cost is that of sorting each function's own cells."""
    out = values.copy()
    n = np.diff(offsets)
    rows = np.arange(len(n)) if rows is None else np.asarray(rows)
    rows = rows[n[rows] > 1]
    if rows.size == 0:
        return out
    if values.dtype.kind in "iu" and values.size:
        # integers: one sort of (segment, value) packed in an int64 key
        idx, loc = _ranges(offsets, rows)
        v = values[idx]
        lo = int(v.min())
        vb = max(1, (int(v.max()) - lo).bit_length())
        if lo >= 0 and vb + max(1, len(rows).bit_length()) <= 62:
            key = loc.astype(np.int64) << vb
            key |= v - lo
            key.sort()
            out[idx] = (key & ((1 << vb) - 1)) + lo
            return out
    rows = rows[np.argsort(n[rows], kind="stable")]
    pad = np.inf if values.dtype.kind == "f" else np.iinfo(values.dtype).max
    lo = 0
    while lo < len(rows):  # chunks of functions of similar length: memory bound
        width = int(n[rows[lo]])
        hi = lo + 1
        while hi < len(rows) and (hi - lo + 1) * int(n[rows[hi]]) <= SORT_CELLS:
            width = int(n[rows[hi]])
            hi += 1
        r = rows[lo:hi]
        length = n[r]
        col = np.arange(width)
        mask = col[None, :] < length[:, None]
        src = (offsets[r][:, None] + col[None, :])[mask]
        block = np.full((len(r), width), pad, dtype=values.dtype)
        block[mask] = values[src]
        block.sort(axis=1)
        out[src] = block[mask]
        lo = hi
    return out


def _nearest(sorted_vals: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
             probs: np.ndarray) -> np.ndarray:
    """Polars' ``quantile(p, "nearest")`` of each row's segment: index ⌊(n − 1)p + ½⌋."""
    n = np.diff(offsets)[rows]
    idx = np.floor((n[:, None] - 1) * probs[None, :] + 0.5).astype(np.int64)
    return sorted_vals[offsets[rows][:, None] + idx]


def _gaps(x: Cells) -> tuple[np.ndarray, np.ndarray]:
    """Gap to the previous active window of the same function, per cell, and whether the cell
    has one (the first cell of a function has none)."""
    gap = np.empty_like(x.m)
    gap[0:1] = 0
    gap[1:] = x.m[1:] - x.m[:-1]
    has = np.ones(len(x.m), dtype=bool)
    has[0:1] = False
    has[1:] = x.fid[1:] == x.fid[:-1]
    return gap, has


MEDIAN_BINS = 64
"""Gap lengths (windows) whose per-function histogram gives :func:`_median_gap` directly."""


def _median_gap(gfid: np.ndarray, gval: np.ndarray, ng: np.ndarray,
                goff: np.ndarray) -> np.ndarray:
    """Polars' median of each function's gaps (the mean of the two middle values; 1 where
    there are none), from a histogram of gaps 1 … :data:`MEDIAN_BINS` − 1 per function, and
    from sorting only the functions whose middle gaps are longer."""
    n_f = len(ng)
    hist = np.bincount(gfid * MEDIAN_BINS + np.minimum(gval, MEDIAN_BINS - 1),
                       minlength=n_f * MEDIAN_BINS).reshape(n_f, MEDIAN_BINS)
    cum = np.cumsum(hist, axis=1)
    # the k-th smallest gap (0-based) is the first length whose cumulative count exceeds k
    lo_v = (cum <= ((ng - 1) // 2)[:, None]).sum(axis=1)
    hi_v = (cum <= (ng // 2)[:, None]).sum(axis=1)
    med = np.where(ng > 0, (lo_v + hi_v) / 2.0, 1.0)
    rest = np.flatnonzero((ng > 0) & (hi_v >= MEDIAN_BINS - 1))
    if rest.size:
        gs = segment_sort(goff, gval, rest)
        med[rest] = (gs[goff[:-1][rest] + (ng[rest] - 1) // 2]
                     + gs[goff[:-1][rest] + ng[rest] // 2]) / 2.0
    return med


def detect_periodic(x: Cells) -> pl.DataFrame:
    """:func:`servetrace.synth.serverless_counts.detect_periodic` from the cells: the same
    columns and values (``batch`` only where ``periodic``; ones elsewhere)."""
    n_f = x.n_f
    off = x.offsets()
    active = np.diff(off)
    gap, has = _gaps(x)
    # median gap (Polars' median: the mean of the two middle values), over the gaps only
    gfid, gval = x.fid[has], gap[has]
    del gap, has
    ng = np.bincount(gfid, minlength=n_f)
    goff = np.concatenate([[0], np.cumsum(ng)])
    med = _median_gap(gfid, gval, ng, goff)
    g = np.clip(np.round(med), 1, None).astype(np.int64)
    cf = x.c.astype(np.float64)
    c_mean = np.bincount(x.fid, cf, minlength=n_f) / active
    dev = cf - c_mean[x.fid]
    var = np.bincount(x.fid, dev * dev, minlength=n_f) / active
    del cf, dev
    c_idc = var / c_mean
    c_cv = np.sqrt(var) / c_mean
    first = x.m[off[:-1]]
    gg = g[gfid]
    on = (gval % gg) == 0
    jit = (np.abs(gval - gg) == 1) & (gg > 1)
    denom = np.maximum(ng, 1)
    on_grid = np.bincount(gfid, on, minlength=n_f) / denom
    jitter = np.bincount(gfid, jit, minlength=n_f) / denom
    missed = np.bincount(gfid, np.where(on, gval / gg - 1, 0.0), minlength=n_f)
    del gfid, gval, gg, on, jit
    trig = x.keys["trigger"].fill_null("").to_numpy()
    need = np.where(trig == "timer", TIMER_SHARE, OTHER_SHARE)
    share = on_grid + jitter
    gw = g.astype(np.float64)
    sub = gw == 1
    steady = ~sub | ((c_idc <= COUNT_IDC) & (c_cv <= COUNT_CV))
    periodic = (active >= MIN_FIRINGS) & (share >= need) & steady
    period = np.where(sub, x.window_s / np.maximum(c_mean, 1.0), gw * x.window_s)
    batch = np.ones((n_f, BATCH_SIZE))
    rows = np.flatnonzero(periodic & ~sub)
    if rows.size:
        cs = segment_sort(off, x.c, rows)
        qs = _nearest(cs, off, rows, (np.arange(BATCH_SIZE) + 0.5) / BATCH_SIZE)
        batch[rows] = np.maximum(qs.astype(np.float64), 1.0)
    return pl.DataFrame({
        "fid": np.arange(n_f), "periodic": periodic, "period_s": period,
        "window_phase_s": (first % gw) * x.window_s, "batch": batch,
        "jitter": jitter, "miss": missed / np.maximum(active + missed, 1), "active": active,
    })


def fit_harmonics(x: Cells, rows: np.ndarray, periods: tuple[float, ...]) -> np.ndarray:
    """:func:`servetrace.synth.serverless_counts.fit_harmonics` of the selected functions,
    its hourly counts summed from the cells."""
    if not periods:
        return np.zeros((len(rows), 0))
    per = max(1, round(3600.0 / x.window_s))
    n_h = x.n_t // per
    hourly = np.zeros((len(rows), n_h))
    for lo, hi in function_chunks(x):  # temporaries bounded
        sub = x.take(lo, hi)
        j = slice(*np.searchsorted(rows, [lo, hi]))
        pos = np.full(sub.n_f, -1, dtype=np.int64)
        pos[rows[j] - lo] = np.arange(j.stop - j.start)
        sel = (pos[sub.fid] >= 0) & (sub.m < n_h * per)
        hourly[j] = np.bincount(pos[sub.fid[sel]] * n_h + sub.m[sel] // per,
                                sub.c[sel].astype(np.float64),
                                minlength=(j.stop - j.start) * n_h).reshape(-1, n_h)
    return harmonics_from_hourly(hourly, per, x.window_s, 0.0, periods)


def _ranges(off: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices of the selected functions (in order) and the position in ``rows`` of each."""
    n = off[rows + 1] - off[rows]
    loc = np.repeat(np.arange(len(rows)), n)
    return np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + off[rows][loc], loc


def profile_period(n_t: int, window_s: float, periods: tuple[float, ...]) -> int:
    """Windows after which the harmonic profile repeats: the least common multiple of the
    periods in windows where each is a whole number of windows, else ``n_t``."""
    per = [p / window_s for p in periods]
    if not per or any(abs(q - round(q)) > 1e-9 for q in per):
        return n_t
    return min(n_t, math.lcm(*(round(q) for q in per)))


def scaled_counts(x: Cells, rows: np.ndarray, coef: np.ndarray,
                  periods: tuple[float, ...]) -> np.ndarray:
    """The counts of the selected functions' cells divided by their harmonic profile
    (:func:`servetrace.synth.serverless_counts._profile`: exp of the harmonics, mean 1 over the
    trace's windows), as floats aligned with the cells (NaN outside ``rows``).

    The profile repeats after :func:`profile_period` windows (a week, or a day), so it is
    evaluated over one repetition per function, in chunks of functions (its mean over the
    trace: q whole repetitions plus the first r windows), and each cell reads its window's
    value from there (same bits for every chunking)."""
    out = np.full(len(x.c), np.nan)
    off = x.offsets()
    if not periods:
        idx, _ = _ranges(off, rows)
        out[idx] = x.c[idx]
        return out
    p = profile_period(x.n_t, x.window_s, periods)
    q, r = divmod(x.n_t, p)
    d = _design((np.arange(p) + 0.5) * x.window_s, periods)
    step = max(1, PROFILE_CELLS // p)
    for lo in range(0, len(rows), step):  # chunks of functions: one repetition each
        cf = coef[lo:lo + step]
        s = cf[:, :1] * d[None, :, 0]
        for j in range(1, cf.shape[1]):  # fixed order, no BLAS blocking: same bits per row
            s += cf[:, j:j + 1] * d[None, :, j]
        e = np.exp(s, out=s)
        mean = (q * e.sum(axis=1) + e[:, :r].sum(axis=1)) / x.n_t
        idx, loc = _ranges(off, rows[lo:lo + step])
        out[idx] = x.c[idx] / (e[loc, x.m[idx] % p] / mean[loc])
    return out


def count_tables(x: Cells, rows: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`servetrace.synth.serverless_counts._count_tables` of the selected functions from
    their cells' values ``v`` (from :func:`scaled_counts`)."""
    off = x.offsets()
    n_nz = np.diff(off)[rows]
    zero_p = 1 - n_nz / x.n_t
    srt = segment_sort(off, v, rows)
    probs = (np.arange(TABLE_SIZE) + 0.5) / TABLE_SIZE
    idx = np.minimum((probs[None, :] * n_nz[:, None]).astype(np.int64),
                     np.maximum(n_nz - 1, 0)[:, None])
    table = srt[off[rows][:, None] + idx]
    pos = np.full(x.n_f, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    sel = pos[x.fid] >= 0
    total = np.bincount(pos[x.fid[sel]], v[sel], minlength=len(rows))
    mean_nz = total / np.maximum(n_nz, 1)
    tmean = table.mean(axis=1)
    table *= np.where(tmean > 0, mean_nz / np.where(tmean > 0, tmean, 1), 1.0)[:, None]
    return zero_p, table


def gap_tables(x: Cells, rows: np.ndarray) -> np.ndarray:
    """:func:`servetrace.synth.serverless_counts._gap_tables` from the cells: ``GAP_SIZE``
    nearest quantiles of each selected function's gaps between active windows, the trace a
    circle (the first cell's gap is the wrap-around one); NaN rows elsewhere. ``rows`` is a
    boolean mask over functions."""
    out = np.full((x.n_f, GAP_SIZE), np.nan)
    sel = np.flatnonzero(rows)
    if sel.size == 0:
        return out
    off = x.offsets()
    gap, _ = _gaps(x)
    first, last = off[:-1][sel], off[1:][sel] - 1
    gap[first] = x.n_t - x.m[last] + x.m[first]
    srt = segment_sort(off, gap, sel)
    out[sel] = _nearest(srt, off, sel, (np.arange(GAP_SIZE) + 0.5) / GAP_SIZE)
    return out
