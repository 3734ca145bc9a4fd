"""Events, their timestamp resolution, groups and window counts.

The one pass over the input that every burstiness metric shares.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from servetrace.analysis.frames import columns, lazy, warn_empty

Events = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None
#: Window sizes (s) tried by default: roughly geometric (1-2-5 and clock-friendly steps);
#: counts at a window are aggregated from the largest finer window already counted that
#: divides it, so a whole curve costs little more than its smallest window.
WINDOW_LADDER_S: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
    86400.0, 172800.0, 604800.0, 1209600.0, 2419200.0)
#: Smallest default window of :func:`dispersion_curve` when the timestamps are continuous (s).
MIN_WINDOW_S = 0.1
#: Fewest complete windows for a default dispersion window or a summary IDC.
MIN_WINDOWS = 10
#: Longest per-group series for Hurst and periodicity when the window is chosen by default.
MAX_SERIES = 1 << 15
_CHUNK_CELLS = 1 << 22  # groups × windows per dense matrix chunk
_GRID_TOL = 0.01        # resolution: a gap is on the grid within 1 % of the grid step
_GRID_SHARE = 0.99      # resolution: share of gaps that must be on the grid
_GRID_MIN_GAPS = 8      # resolution: fewest positive gaps to decide
_GRID_CANDIDATES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)  # gap quantiles
_GRID_MAX_GAPS = 1_000_000


# --------------------------------------------------------------------------------------------
# Resolution


def resolution(arrival_s: np.ndarray | pl.Series) -> float:
    """The time grid of the timestamps, in seconds; 0.0 when they are continuous.

    Rule: sort the finite timestamps and take the gaps between consecutive ones; gaps within a
    few float ulps of zero are exact ties and are ignored. At least 8 positive gaps are needed
    (otherwise 0.0). The candidate grid steps are the 0, 0.1, 1, 5, 10, 25, 50, 75 and 90th
    percentiles of the positive gaps, tried from the largest. Each is refined twice to
    Σ gap / Σ round(gap / g) over the gaps near a positive multiple of it (long gaps dilute
    the jitter of a single tick, which would otherwise grow with the multiple). A candidate
    ``g`` is the grid when at least 99 % of the positive gaps lie within ``0.01·g`` of an
    integer multiple of ``g`` (a multiple 0 being a tie blurred by jitter) and at least 8 of
    them near a positive multiple. The step returned is that refined ``g``, rounded to three
    significant digits when that moves it by less than 0.1 % (so Mooncake's ticks, jittered
    by a few milliseconds around 3 s, give exactly 3.0), else to ten.
    Timestamps recorded in whole milliseconds give 0.001 (unless a coarser grid holds);
    continuous timestamps (a Poisson process in float64, or the Azure 2023 trace with its
    100 ns digits and no common step) give 0.0, since a random gap is near a multiple of a
    candidate only 2 % of the time.

    The check runs on at most 1,000,000 evenly spaced gaps.
    """
    t = arrival_s.to_numpy() if isinstance(arrival_s, pl.Series) else np.asarray(arrival_s)
    t = t.astype(np.float64, copy=False)
    finite = np.isfinite(t)
    if not finite.all():
        t = t[finite]
    if t.size < 2:
        return 0.0
    return _grid_step(t if _is_sorted(t) else np.sort(t))


def _grid_stride(n: int) -> int:
    """:func:`resolution` reads the gaps ``t[j·s + 1] − t[j·s]`` of ``n`` sorted times for
    this stride ``s`` (at most :data:`_GRID_MAX_GAPS` of them, evenly spaced)."""
    return max(1, -(-(n - 1) // _GRID_MAX_GAPS))


def _grid_step(t: np.ndarray) -> float:
    """:func:`resolution` of sorted finite timestamps (at least two)."""
    step = _grid_stride(t.size)
    return _grid_step_of_gaps(t[1::step] - t[:-1:step], float(t[0]), float(t[-1]))


def _grid_step_of_gaps(d: np.ndarray, first: float, last: float) -> float:
    """:func:`resolution` from the strided gaps ``d`` (:func:`_grid_stride`) of sorted times
    running from ``first`` to ``last``: all it reads of them, so that a pass over a trace too
    large to hold can gather them chunk by chunk."""
    tie = 64 * np.finfo(np.float64).eps * max(1.0, abs(first), abs(last))
    pos = d[d > tie]
    if pos.size < _GRID_MIN_GAPS:
        return 0.0
    probe = pos[:: max(1, pos.size // 4096)]  # a cheap first look rejects most candidates
    for g in np.unique(np.quantile(pos, _GRID_CANDIDATES, method="lower"))[::-1]:
        g = _refine_grid(probe, float(g))
        if _grid_share(probe, g)[0] < _GRID_SHARE - 0.05:
            continue
        g = _refine_grid(pos, g)
        share, on = _grid_share(pos, g)
        if share >= _GRID_SHARE and on >= _GRID_MIN_GAPS:
            rounded = float(f"{g:.3g}")
            return rounded if abs(rounded - g) <= 1e-3 * g else float(f"{g:.10g}")
    return 0.0


def _refine_grid(gaps: np.ndarray, g: float) -> float:
    """Σ gap / Σ round(gap / g) over the gaps near a positive multiple of ``g`` (twice)."""
    for _ in range(2):
        steps = np.rint(gaps / g)
        on = (np.abs(gaps / g - steps) <= 2 * _GRID_TOL) & (steps >= 1)
        if not on.any():
            break
        g = float(gaps[on].sum() / steps[on].sum())
    return g


def _grid_share(gaps: np.ndarray, g: float) -> tuple[float, int]:
    """Share of gaps within ``_GRID_TOL·g`` of a multiple of g; how many at a positive one."""
    ratio = gaps / g
    steps = np.rint(ratio)
    near = np.abs(ratio - steps) <= _GRID_TOL
    return float(near.mean()), int((near & (steps >= 1)).sum())


def _is_sorted(t: np.ndarray) -> bool:
    return bool(np.all(t[1:] >= t[:-1]))


# --------------------------------------------------------------------------------------------
# Preparation: one pass over the input, shared by every metric


@dataclass(frozen=True)
class _Prepared:
    """Events of one input, grouped and sorted by (group, time); see the module docstring."""

    by: tuple[str, ...]
    keys: pl.DataFrame          # one row per group, sorted by the `by` columns
    kind: str                   # "arrivals" | "counts"
    resolution_s: float         # grid of the arrival times, or the counts' base window
    origin_s: float             # window phase o
    start_s: float              # span [start_s, end_s)
    end_s: float
    gid: np.ndarray             # group of each arrival / base window, ascending
    times: np.ndarray | None    # arrivals: snapped times, ascending within a group
    ticks: np.ndarray | None    # arrivals on a grid of phase 0: round(t / resolution)
    base_k: np.ndarray | None   # counts: base window index, ascending within a group
    base_c: np.ndarray | None   # counts: events in that base window
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # window → sparse
    memo: dict = field(default_factory=dict, compare=False, repr=False)   # other results
    # out of core (times and gid are None): window → the sparse counts of a pass over the rows
    source: Callable[[float], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = field(
        default=None, compare=False, repr=False)

    @property
    def n_groups(self) -> int:
        return max(self.keys.height, 1)

    @property
    def unit_s(self) -> float:
        """Windows must be integer multiples of this (0.0: any window)."""
        return self.resolution_s


NO_ARRIVALS = ("no arrival times: a batch (offline) trace is submitted as one job, so arrival "
               "metrics (burstiness, inter-arrival fits, rates) do not apply; token lengths do")
"""The one-line reason every arrival metric gives for a batch trace (``traces.batch``)."""


def has_arrivals(events: pl.DataFrame | pl.LazyFrame) -> bool:
    """Whether ``events`` has arrival times to analyse: false for a batch (offline) trace,
    whose ``arrival_s`` is null throughout (ServeGen offline; Yang et al., SOSP'26), true for
    window counts and for any frame with at least one arrival."""
    lf = events.lazy()
    if "arrival_s" not in lf.collect_schema().names():
        return True
    return bool(lf.select(pl.col("arrival_s").is_not_null().any()).collect().item())


def group_columns(names: Sequence[str], by: By) -> tuple[str, ...]:
    """The columns of ``by``; ``ValueError`` naming the first one not in ``names``."""
    cols = tuple(columns(by))
    missing = [c for c in cols if c not in names]
    if missing:
        raise ValueError(f"by: column {missing[0]!r} is not in events (columns: "
                         f"{', '.join(names)})")
    return cols


def _prepare(events: Events, by: By) -> _Prepared:
    """Read the time and group columns, assign group ids, sort, and find the resolution."""
    lf = lazy(events, "events")
    names = lf.collect_schema().names()
    cols = group_columns(names, by)
    if "arrival_s" in names:
        df = lf.select(*cols, "arrival_s").collect()
        if df.height and df["arrival_s"].null_count() == df.height:
            raise ValueError(NO_ARRIVALS)
        warn_empty(df, cols, lf)
        return _prepare_arrivals(df, cols)
    if {"window_start_s", "window_s", "count"} <= set(names):
        df = lf.select(*cols, "window_start_s", "window_s", "count").collect()
        warn_empty(df, cols, lf)
        return _prepare_counts(df, cols)
    raise ValueError("events: needs an 'arrival_s' column (requests, invocations) or "
                     "'window_start_s', 'window_s' and 'count' (invocation_counts); "
                     f"got {', '.join(names)}")


def _group_ids(df: pl.DataFrame, cols: tuple[str, ...]) -> tuple[pl.DataFrame, np.ndarray]:
    if not cols:
        return pl.DataFrame(), np.zeros(df.height, dtype=np.int64)
    keys = df.select(cols).unique().sort(list(cols), nulls_last=True)
    gid = (df.select(cols)
           .join(keys.with_row_index("_gid"), on=list(cols), how="left", nulls_equal=True,
                 maintain_order="left")["_gid"].to_numpy().astype(np.int64))
    return keys, gid


def _group_order(gid: np.ndarray, n_groups: int) -> np.ndarray:
    """Stable permutation sorting by group (radix sort when the ids fit 16 bits)."""
    small = gid.astype(np.int16) if n_groups < (1 << 15) else gid
    return np.argsort(small, kind="stable")


def _phase_stride(n: int) -> int:
    """The grid's phase is read from every this-many-th of ``n`` times (about 100,000)."""
    return max(1, n // 100_000)


def _grid_phase(sample: np.ndarray, r: float) -> float:
    """Phase of a grid of step ``r`` > 0 (circular mean of t mod r over ``sample``, the times
    at a stride of :func:`_phase_stride`); 0.0 within 1 % of r: every loader's zero-based
    ticks."""
    phase = r / (2 * np.pi) * float(np.angle(np.exp(2j * np.pi * sample / r).mean()))
    return 0.0 if abs(phase) <= _GRID_TOL * r else phase


def _snap_to_grid(t: np.ndarray, r: float, phase: float
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Times snapped to the grid of step ``r`` > 0 and ``phase`` (:func:`_grid_phase`), and
    on a grid of phase 0 their integer ticks round(t / r) (else None)."""
    if phase == 0.0:
        ticks = np.rint(t / r).astype(np.int64)
        return ticks * r, ticks
    return phase + np.rint((t - phase) / r) * r, None


def _prepare_arrivals(df: pl.DataFrame, cols: tuple[str, ...]) -> _Prepared:
    if df.height == 0:
        raise ValueError("events: no rows (arrival_s is empty)")
    t = df["arrival_s"].cast(pl.Float64).to_numpy()
    in_order = _is_sorted(t)  # false where a NaN (or null) is compared
    if not (np.isfinite(t[[0, -1]]).all() if in_order else np.isfinite(t).all()):
        raise ValueError("arrival_s: null or non-finite values; drop them first")
    keys, gid = _group_ids(df, cols)
    r = _grid_step(t if in_order else np.sort(t)) if t.size >= 2 else 0.0
    ticks = None
    if r > 0:
        t, ticks = _snap_to_grid(t, r, _grid_phase(t[:: _phase_stride(t.size)], r))
    if r > 0:  # snapping keeps the order of sorted times
        in_order = in_order or _is_sorted(t)
    if cols:
        order = _group_order(gid, keys.height) if in_order else np.lexsort((t, gid))
    elif not in_order:
        order = np.argsort(t, kind="stable")
    else:
        order = None
    if order is not None:
        t, gid = t[order], gid[order]
        ticks = ticks[order] if ticks is not None else None
    start, last = (float(t[0]), float(t[-1])) if not cols else (float(t.min()),
                                                                 float(t.max()))
    end = last + r if r > 0 else float(np.nextafter(last, np.inf))
    return _Prepared(cols, keys, "arrivals", r, 0.0, start, end, gid, t, ticks, None, None)


def _prepare_counts(df: pl.DataFrame, cols: tuple[str, ...]) -> _Prepared:
    if df.height == 0:
        raise ValueError("events: no rows (invocation_counts is empty)")
    sizes = df["window_s"].unique().drop_nulls()
    if sizes.len() != 1:
        raise ValueError(f"window_s: counts must share one window size, got "
                         f"{sorted(sizes.to_list())[:5]}; filter to one first")
    b = float(sizes[0])
    if not b > 0:
        raise ValueError(f"window_s: must be positive, got {b}")
    if df["window_start_s"].null_count() or df["count"].null_count():
        raise ValueError("window_start_s/count: null values")
    ws = df["window_start_s"].cast(pl.Float64).to_numpy()
    c = df["count"].to_numpy()
    if not np.isfinite(ws).all():
        raise ValueError("window_start_s: non-finite values")
    if (c < 0).any():
        raise ValueError("count: negative counts")
    origin = float(np.min(ws) % b)
    k = np.rint((ws - origin) / b).astype(np.int64)
    if np.abs(ws - origin - k * b).max() > 1e-6 * b:
        raise ValueError(f"window_start_s: windows are not aligned on a grid of window_s={b}")
    keys, gid = _group_ids(df, cols)
    order = np.lexsort((k, gid))
    gid, k, c = _runs(gid[order], k[order], c[order].astype(np.int64))
    start = origin + float(k.min()) * b
    end = origin + float(k.max() + 1) * b
    return _Prepared(cols, keys, "counts", b, origin, start, end, gid, None, None, k, c)


# --------------------------------------------------------------------------------------------
# Window counts: sparse (non-empty windows only) and dense (group × window matrices)


def _runs(gid: np.ndarray, k: np.ndarray, c: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collapse rows sorted by (gid, k) into one row per distinct (gid, k), adding ``c``."""
    n = k.size
    if n == 0:
        return gid, k, np.zeros(0, np.int64)
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(k[1:], k[:-1], out=change[1:])
    if gid[0] != gid[-1]:  # more than one group (gid is sorted)
        change[1:] |= gid[1:] != gid[:-1]
    starts = np.flatnonzero(change)
    counts = (np.diff(np.append(starts, n)) if c is None else np.add.reduceat(c, starts))
    return gid[starts], k[starts], counts.astype(np.int64)


def _multiple(w: float, unit: float) -> int | None:
    """``w / unit`` when it is a positive integer (to 1e-9), else None."""
    if unit <= 0:
        return None
    m = w / unit
    mi = round(m)
    return int(mi) if mi >= 1 and abs(m - mi) <= 1e-9 * max(1.0, m) else None


def _sparse(ev: _Prepared, w: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gid, k, count) of the non-empty windows ``[o + k·w, o + (k+1)·w)``, sorted."""
    key = float(w)
    if key in ev.cache:
        return ev.cache[key]
    finer = [v for v in ev.cache if v < key and _multiple(key, v)]
    if finer:
        v = max(finer)
        gid, k, c = ev.cache[v]
        out = _runs(gid, k // _multiple(key, v), c)
    elif ev.kind == "counts":
        m = _multiple(key, ev.resolution_s)
        if m is None:
            raise ValueError(f"window_s={w:g}: counts input supports multiples of its base "
                             f"window {ev.resolution_s:g} s only")
        out = _runs(ev.gid, ev.base_k // m, ev.base_c)
    elif ev.source is not None:
        out = ev.source(key)
    elif ev.ticks is not None and (m := _multiple(key, ev.resolution_s)) is not None:
        out = _runs(ev.gid, ev.ticks // m)
    else:
        out = _floor_runs(ev.gid, ev.times, ev.origin_s, key)
    ev.cache[key] = out
    return out


_BLOCK = 1 << 20  # rows per block where a full-length temporary is not needed


def _floor_runs(gid: np.ndarray, times: np.ndarray, origin: float, w: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_runs(gid, floor((times − origin) / w))``, computed in blocks of rows (no temporary
    of the full length); runs cut at a block edge are joined by a last :func:`_runs`."""
    parts = []
    for lo in range(0, times.size, _BLOCK):
        block = times[lo:lo + _BLOCK]
        scaled = (block - origin if origin else block) / w
        parts.append(_runs(gid[lo:lo + _BLOCK], np.floor(scaled, out=scaled).astype(np.int64)))
    if len(parts) == 1:
        return parts[0]
    g, k, c = (np.concatenate([part[i] for part in parts]) for i in range(3))
    return _runs(g, k, c)


def _complete(ev: _Prepared, w: float) -> tuple[int, int]:
    """Indices ``[k_lo, k_hi)`` of the windows lying wholly inside the span."""
    lo = math.ceil((ev.start_s - ev.origin_s) / w - 1e-9)
    hi = math.floor((ev.end_s - ev.origin_s) / w + 1e-9)
    return lo, max(hi, lo)


def _n_complete(ev: _Prepared, w: float) -> int:
    lo, hi = _complete(ev, w)
    return hi - lo


def _group_chunks(n_groups: int, n_windows: int) -> Iterator[tuple[int, int]]:
    rows = max(1, _CHUNK_CELLS // max(n_windows, 1))
    for g0 in range(0, n_groups, rows):
        yield g0, min(n_groups, g0 + rows)


def _dense(ev: _Prepared, w: float, k_lo: int, k_hi: int, g0: int, g1: int) -> np.ndarray:
    """Counts of groups ``[g0, g1)`` in windows ``[k_lo, k_hi)``: a float matrix."""
    gid, k, c = _sparse(ev, w)
    a, b = np.searchsorted(gid, [g0, g1])
    gid, k, c = gid[a:b], k[a:b], c[a:b]
    inside = (k >= k_lo) & (k < k_hi)
    x = np.zeros((g1 - g0, k_hi - k_lo))
    x[gid[inside] - g0, k[inside] - k_lo] = c[inside]
    return x


def _on_grid(ev: _Prepared, w: float) -> bool:
    return ev.resolution_s <= 0 or _multiple(w, ev.resolution_s) is not None


def _snap(w: float, unit: float) -> float:
    """The smallest multiple of ``unit`` that is ≥ ``w`` (``w`` itself when unit is 0)."""
    if unit <= 0:
        return float(w)
    return unit * max(1, math.ceil(w / unit - 1e-9))


def _ladder(ev: _Prepared, lo: float) -> list[float]:
    """Default windows ≥ ``lo``: the ladder snapped to multiples of the resolution."""
    unit = ev.unit_s
    out: list[float] = [unit] if unit >= lo * (1 - 1e-9) else []
    for v in WINDOW_LADDER_S:
        if v < lo * (1 - 1e-9):
            continue
        s = _snap(v, unit)
        if not out or s > out[-1] * (1 + 1e-9):
            out.append(float(f"{s:.12g}"))
    return out


def _default_window(ev: _Prepared, max_series: int = MAX_SERIES) -> float:
    """Smallest ladder window ≥ the resolution giving at most ``max_series`` windows."""
    need = (ev.end_s - ev.start_s) / max_series
    floor = MIN_WINDOW_S if ev.kind == "arrivals" else 0.0
    return next((w for w in _ladder(ev, max(need, ev.unit_s, floor)) if w >= need),
                _snap(need, ev.unit_s))


def _frame(ev: _Prepared, gidx: np.ndarray, columns: dict[str, object]) -> pl.DataFrame:
    """The ``by`` key columns of groups ``gidx`` beside ``columns``; NaN becomes null."""
    body = pl.DataFrame(columns)
    floats = [n for n, d in body.schema.items() if d.is_float()]
    if floats:
        body = body.with_columns(pl.col(floats).fill_nan(None))
    if not ev.by:
        return body
    return pl.concat([ev.keys[np.asarray(gidx, dtype=np.int64)], body], how="horizontal")


def window_counts(events: Events, window_s: float, by: By = None, start_s: float | None = None,
                  end_s: float | None = None) -> pl.DataFrame:
    """Events per window, empty windows included.

    Windows are ``[o + k·window_s, o + (k+1)·window_s)``, aligned to the trace's zero
    (``o = 0`` for arrivals; the phase of the base windows for counts input). Every window
    that overlaps ``[start_s, end_s)`` is listed, for every group, with its whole count (a
    window is not cut at ``start_s`` or ``end_s``). The defaults are the span of the input:
    the first event, and just past the last (past the last tick when the timestamps have a
    resolution). When the resolution is positive the times are snapped to the grid first, so
    a tick jittered across a window boundary is counted in its own window.

    Returns ``[by..., window_start_s, count, window_s]`` (count: Int64), sorted by group and
    window. The output is invocation_counts-shaped and can be passed back as ``events``.
    For counts input, ``window_s`` must be a multiple of the base window.
    """
    if not window_s > 0:
        raise ValueError(f"window_s: must be positive, got {window_s}")
    ev = _prepare(events, by)
    start = ev.start_s if start_s is None else float(start_s)
    end = ev.end_s if end_s is None else float(end_s)
    if not end > start:
        raise ValueError(f"end_s ({end}) must be after start_s ({start})")
    w = float(window_s)
    k_lo = math.floor((start - ev.origin_s) / w + 1e-9)
    k_hi = max(math.ceil((end - ev.origin_s) / w - 1e-9), k_lo + 1)
    n_w = k_hi - k_lo
    g = ev.n_groups
    gid, k, c = _sparse(ev, w)
    inside = (k >= k_lo) & (k < k_hi)
    flat = np.bincount(gid[inside] * n_w + (k[inside] - k_lo), weights=c[inside],
                       minlength=g * n_w).astype(np.int64)
    starts = ev.origin_s + (k_lo + np.arange(n_w)) * w
    return _frame(ev, np.repeat(np.arange(g), n_w),
                  {"window_start_s": np.tile(starts, g), "count": flat,
                   "window_s": np.full(g * n_w, w)})
