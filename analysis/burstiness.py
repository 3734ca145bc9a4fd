"""Burstiness of arrival processes: inter-arrival times, counts, dispersion, self-similarity.

Every function takes ``events``, a Polars DataFrame or LazyFrame in one of two shapes, told
apart by its columns:

* **arrivals** — an ``arrival_s`` column (the canonical ``requests``, ``invocations`` or
  ``cold_starts`` tables): one row per event, seconds from the trace's zero;
* **counts** — ``window_start_s``, ``window_s`` and ``count`` (the canonical
  ``invocation_counts`` table): events per window. All rows must share one ``window_s``, the
  *base window*; rows that fall into the same group and window are added up. Inter-arrival
  statistics and fits are not defined on counts: :func:`interarrival_stats`,
  :func:`interarrival_gaps` and :func:`fit_interarrivals` raise ``ValueError`` (and
  :func:`summary` leaves their columns null); everything else works at integer multiples of
  the base window.

``by`` (a column name or a list of them) splits the events into groups (tenant, model,
function, trigger, ...); result frames then start with the ``by`` columns, one group per
distinct combination present in the data, sorted by them. Only the ``by`` columns and the time
columns are read, so a LazyFrame scan of a large Parquet store reads nothing else.

Conventions shared by all functions
-----------------------------------
*Resolution and ties.* :func:`resolution` finds the grid the timestamps sit on (3 s for the
Mooncake conversation trace, whose requests arrive in ~3 s ticks; 0.0 for continuous
timestamps). When it is positive, arrival times are snapped to that grid before anything else
(removing the millisecond jitter of the ticks), arrivals on the same tick are *ties*, and
windows finer than the grid are never used by default: structure below the resolution is an
artefact of the recording, not burstiness.

*Windows.* A window of size ``w`` is the half-open interval ``[o + k·w, o + (k+1)·w)`` for an
integer ``k``, aligned to the trace's zero: ``o = 0`` for arrivals; for counts ``o`` is the
phase of the base windows (``min(window_start_s) mod window_s``, 0 for every canonical
loader). Windows never align to a group's first event.

*Span.* All groups share the span of the whole input: for arrivals ``[first arrival, last
arrival + resolution)`` (the last arrival itself when the resolution is 0), for counts
``[first window start, last window end)``. Statistics over windows (dispersion, Hurst,
periodicity, bursts) use the *complete* windows inside the span, including the empty ones:
a group silent for hours has zero counts there. :func:`window_counts` lists every window that
overlaps the span (or ``[start_s, end_s)``), partial edge windows included.

*Vectorization.* Window counts come from integer bucketing of the (sorted) times and run-length
counting, coarser windows are aggregated from finer ones, and per-group series are processed as
matrices (groups × windows) in chunks of a few million cells; there is no loop over events.

References
----------
* Cox, D. R. & Lewis, P. A. W. (1966). *The Statistical Analysis of Series of Events*.
  Methuen. (Index of dispersion of counts.)
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
* Fisher, R. A. (1929). Tests of significance in harmonic analysis. *Proc. R. Soc. A* 125,
  54–59.
* Beran, J. (1994). *Statistics for Long-Memory Processes*. Chapman & Hall.
* Wang, Y. et al. (2024). BurstGPT: A real-world workload dataset to optimize LLM serving
  systems. arXiv:2401.17644 (KDD 2025). (Burstiness of LLM serving workloads.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import special

from servetrace.analysis import fitting
from servetrace.analysis.frames import columns, lazy, warn_empty

__all__ = [
    "bursts",
    "dispersion_curve",
    "fit_interarrivals",
    "hurst",
    "interarrival_gaps",
    "interarrival_stats",
    "periodicity",
    "resolution",
    "summary",
    "window_counts",
]

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
#: A CV (and a best fit) is reported only when the mean gap is at least this many times the
#: resolution r: rounding then moves E[X²] by at most r²/6 ≤ 0.2 % of the mean's square.
MIN_GAP_RESOLUTIONS = 10
#: Fewest events in a group's series for a Hurst estimate (fewer: null).
MIN_HURST_EVENTS = 100
#: Longest per-group series for Hurst and periodicity when the window is chosen by default.
MAX_SERIES = 1 << 15
_CHUNK_CELLS = 1 << 22  # groups × windows per dense matrix chunk
_GRID_TOL = 0.01        # resolution: a gap is on the grid within 1 % of the grid step
_GRID_SHARE = 0.99      # resolution: share of gaps that must be on the grid
_GRID_MIN_GAPS = 8      # resolution: fewest positive gaps to decide
_GRID_CANDIDATES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)  # gap quantiles
_GRID_MAX_GAPS = 1_000_000
#: :func:`summary` reports a dominant period only below this Fisher p-value ...
DOMINANT_P_VALUE = 0.01
#: ... and at least this autocorrelation at the period.
DOMINANT_STRENGTH = 0.2
_DAY_S, _WEEK_S = 86400.0, 604800.0
_AV_ITERATIONS = 5


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


def _grid_step(t: np.ndarray) -> float:
    """:func:`resolution` of sorted finite timestamps (at least two)."""
    step = max(1, -(-(t.size - 1) // _GRID_MAX_GAPS))  # evenly spaced consecutive gaps
    d = t[1::step] - t[:-1:step]
    tie = 64 * np.finfo(np.float64).eps * max(1.0, abs(float(t[0])), abs(float(t[-1])))
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

    @property
    def n_groups(self) -> int:
        return max(self.keys.height, 1)

    @property
    def unit_s(self) -> float:
        """Windows must be integer multiples of this (0.0: any window)."""
        return self.resolution_s


def _prepare(events: Events, by: By) -> _Prepared:
    """Read the time and group columns, assign group ids, sort, and find the resolution."""
    lf = lazy(events, "events")
    names = lf.collect_schema().names()
    cols = tuple(columns(by))
    missing = [c for c in cols if c not in names]
    if missing:
        raise ValueError(f"by: column {missing[0]!r} is not in events (columns: "
                         f"{', '.join(names)})")
    warn_empty(lf, cols)
    if "arrival_s" in names:
        return _prepare_arrivals(lf.select(*cols, "arrival_s").collect(), cols)
    if {"window_start_s", "window_s", "count"} <= set(names):
        return _prepare_counts(lf.select(*cols, "window_start_s", "window_s", "count")
                               .collect(), cols)
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
        # phase of the grid (circular mean of t mod r): 0 for every loader's zero-based ticks
        sample = t[:: max(1, t.size // 100_000)]
        phase = r / (2 * np.pi) * float(np.angle(np.exp(2j * np.pi * sample / r).mean()))
        if abs(phase) <= _GRID_TOL * r:
            ticks = np.rint(t / r).astype(np.int64)
            t = ticks * r
        else:
            t = phase + np.rint((t - phase) / r) * r
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


# --------------------------------------------------------------------------------------------
# Inter-arrival times


def _gaps(ev: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(gid, gap) of consecutive arrivals within a group (ties are 0 after snapping)."""
    if "gaps" not in ev.memo:
        if ev.n_groups == 1:  # one group: every consecutive pair
            ev.memo["gaps"] = (ev.gid[1:], np.diff(ev.times))
        else:
            same = ev.gid[1:] == ev.gid[:-1]
            ev.memo["gaps"] = (ev.gid[1:][same], np.diff(ev.times)[same])
    return ev.memo["gaps"]


def _require_arrivals(ev: _Prepared, what: str) -> None:
    if ev.kind != "arrivals":
        raise ValueError(f"{what}: needs arrival times (an 'arrival_s' column); inter-arrival "
                         "times are not defined on window counts (invocation_counts)")


def _group_moments(gid: np.ndarray, x: np.ndarray, g: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sample standard deviation (n − 1, two passes) of ``x`` per group."""
    if g == 1:
        m = float(x.mean()) if x.size else np.nan
        sd = float(x.std(ddof=1)) if x.size > 1 else np.nan
        return np.array([x.size]), np.array([m]), np.array([sd])
    n = np.bincount(gid, minlength=g)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(gid, weights=x, minlength=g) / n
        dev = x - mean[gid]
        sd = np.sqrt(np.bincount(gid, weights=dev * dev, minlength=g) / (n - 1))
    return n, mean, np.where(n > 1, sd, np.nan)


_SELECT_MIN = 1 << 16      # below this many values, quantiles by a plain partition
_SELECT_SAMPLE = 1 << 14   # strided sample that brackets each wanted rank


def _quantiles(x: np.ndarray, qs: Sequence[float], zeros: int = 0) -> np.ndarray:
    """``np.quantile(x, qs)`` (linear) of finite ``x``, the same bits, without copying or
    partitioning all of ``x``; with ``zeros`` > 0 (``x`` ≥ 0 holding that many zeros), the
    quantiles of its positive values, whose order statistics are those of ``x`` past the
    zeros.

    NumPy's rule (Hyndman & Fan 1996, definition 7): with h = (n − 1)·q, the order statistics
    a = x_(⌊h⌋) and b = x_(⌊h⌋+1) (both x_(n−1) when h ≥ n − 1) are interpolated as NumPy's
    ``_lerp`` does, a + (b − a)·γ, or b − (b − a)·(1 − γ) when γ = h − ⌊h⌋ ≥ ½. The order
    statistics are selected inside a narrow band of values around each rank: a sorted strided
    sample of x brackets the rank (±4 binomial standard deviations), one pass counts the
    values below the band and gathers those in it, and a partition of the band gives the
    rank. A band that misses its rank (an unlucky sample) falls back to a full partition.
    """
    q = np.asarray(qs, dtype=np.float64)
    n = x.size - zeros
    if x.size < _SELECT_MIN:
        return np.quantile(x[x > 0] if zeros else x, q)
    h = (n - 1) * q
    lo = np.floor(h)
    first = lo.astype(np.int64)
    second = first + 1
    top = h >= n - 1
    first[top] = second[top] = n - 1
    ranks = np.unique(np.concatenate([first, second])) + zeros  # ranks in x
    sample = np.sort(x[:: x.size // _SELECT_SAMPLE])
    m = sample.size
    p = ranks / (x.size - 1)
    slack = 4 * np.sqrt(m * p * (1 - p)) + 8
    at_lo = np.floor(p * (m - 1) - slack).astype(np.int64)
    at_hi = np.ceil(p * (m - 1) + slack).astype(np.int64)
    low = np.where(at_lo <= 0, -np.inf, sample[np.clip(at_lo, 0, m - 1)])
    high = np.where(at_hi >= m - 1, np.inf, sample[np.clip(at_hi, 0, m - 1)])
    found: dict[int, float] = {}
    i = 0
    while i < ranks.size:  # one band per group of overlapping brackets (a handful)
        a, b, j = low[i], high[i], i + 1
        while j < ranks.size and low[j] <= b:
            a, b, j = min(a, low[j]), max(b, high[j]), j + 1
        below = int(np.count_nonzero(x < a))
        inside = x >= a
        inside &= x <= b
        band = x[inside]
        k = ranks[i:j] - below
        if k.min() < 0 or k.max() >= band.size:  # the band missed: select among all
            return np.quantile(x[x > 0] if zeros else x, q)
        found.update(zip(ranks[i:j].tolist(), np.partition(band, k)[k].tolist(),
                         strict=True))
        i = j
    a = np.array([found[r + zeros] for r in first.tolist()])
    b = np.array([found[r + zeros] for r in second.tolist()])
    gamma = h - first  # NumPy: h − ⌊h⌋, with ⌊h⌋ = −1 past the end (b − a = 0 there)
    gamma[top] = h[top] + 1
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1 - gamma))[upper]
    return out


def _group_quantiles(gid: np.ndarray, x: np.ndarray, g: int, qs: Sequence[float]
                     ) -> np.ndarray:
    """Linear-interpolation quantiles of ``x`` per group: a (g, len(qs)) array, NaN if empty."""
    out = np.full((g, len(qs)), np.nan)
    if x.size == 0:
        return out
    if g == 1:
        out[0] = _quantiles(x, qs)
        return out
    frame = pl.DataFrame({"g": gid, "x": x}).group_by("g").agg(
        pl.col("x").quantile(q, "linear").alias(f"q{i}") for i, q in enumerate(qs))
    rows = frame["g"].to_numpy()
    for i in range(len(qs)):
        out[rows, i] = frame[f"q{i}"].to_numpy()
    return out


def _one_group_gaps(gap: np.ndarray, n_ties: int, qs: Sequence[float]
                    ) -> tuple[float, float, float, float, np.ndarray]:
    """Mean, sample SD, maximum and ``qs`` quantiles of the positive gaps of one group, and
    the sample SD of all its gaps, from gaps ≥ 0 of which ``n_ties`` are 0: the statistics
    :func:`_group_moments` and :func:`_quantiles` give, taken in blocks of rows without
    copying the positive gaps (the zeros add nothing to Σ x, and nothing to Σ (x − x̄)² over
    the positive gaps once masked; they are the lowest order statistics)."""
    n_all, n_pos = gap.size, gap.size - n_ties
    total = float(sum(float(gap[lo:lo + _BLOCK].sum()) for lo in range(0, n_all, _BLOCK)))
    mean_all = total / n_all if n_all else np.nan
    mean_pos = total / n_pos if n_pos else np.nan
    ss_all = ss_pos = 0.0
    for lo in range(0, n_all, _BLOCK):  # blocks of rows, not a loop over rows
        block = gap[lo:lo + _BLOCK]
        d = block - mean_all
        ss_all += float((d * d).sum())
        if n_ties:
            d = np.where(block > 0, block - mean_pos, 0.0)
            ss_pos += float((d * d).sum())
    ss_pos = ss_pos if n_ties else ss_all
    sd_all = math.sqrt(ss_all / (n_all - 1)) if n_all > 1 else np.nan
    sd_pos = math.sqrt(ss_pos / (n_pos - 1)) if n_pos > 1 else np.nan
    top = float(gap.max()) if n_pos else np.nan
    quantiles = (_quantiles(gap, qs, zeros=n_ties) if n_pos
                 else np.full(len(qs), np.nan))
    return mean_pos, sd_pos, top, sd_all, quantiles


def _interarrival(ev: _Prepared) -> pl.DataFrame:
    g = ev.n_groups
    n = np.array([ev.gid.size]) if g == 1 else np.bincount(ev.gid, minlength=g)
    bounds = np.concatenate([[0], np.cumsum(n)])
    duration = ev.times[bounds[1:] - 1] - ev.times[bounds[:-1]]
    ggid, gap = _gaps(ev)
    n_gaps = n - 1
    qs = (0.5, 0.9, 0.99)
    if g == 1:  # gaps ≥ 0 in time order: blocks of rows, no copies
        n_ties = np.array([np.count_nonzero(gap == 0)])
        mean, sd, top, sd_all, quantiles = _one_group_gaps(gap, int(n_ties[0]), qs)
        mean_b, sd_b, max_b = np.array([mean]), np.array([sd]), np.array([top])
        sd_req, q = np.array([sd_all]), quantiles[None, :]
    else:
        tie = gap == 0
        n_ties = np.bincount(ggid[tie], minlength=g)
        _, _, sd_req = _group_moments(ggid, gap, g)
        bg, bgap = ggid[~tie], gap[~tie]
        del tie
        n_b, mean_b, sd_b = _group_moments(bg, bgap, g)
        max_b = np.full(g, np.nan)
        starts = np.searchsorted(bg, np.arange(g))
        has = n_b > 0
        if has.any():
            max_b[has] = np.maximum.reduceat(bgap, starts[has])
        q = _group_quantiles(bg, bgap, g, qs)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_req = duration / n_gaps
        cv_req = np.where(n_gaps > 1, sd_req / mean_req, np.nan)
        return _frame(ev, np.arange(g), {
            "n": n.astype(np.int64), "duration_s": duration,
            "rate_per_s": np.where(duration > 0, n_gaps / duration, np.nan),
            "mean_s": mean_b, "cv": np.where(_resolved(mean_req, ev.resolution_s), cv_req,
                                             np.nan),
            "p50_s": q[:, 0], "p90_s": q[:, 1], "p99_s": q[:, 2], "max_s": max_b,
            "tie_fraction": np.where(n_gaps > 0, n_ties / n_gaps, np.nan),
            "resolution_s": np.full(g, ev.resolution_s),
            "n_batches": n - n_ties, "mean_batch_size": n / (n - n_ties),
            "cv_request": cv_req, "cv_batch": sd_b / mean_b,
        })


def _resolved(mean_gap: np.ndarray, r: float) -> np.ndarray:
    """Whether a mean gap is at least :data:`MIN_GAP_RESOLUTIONS` times the resolution r."""
    return np.asarray(mean_gap) >= MIN_GAP_RESOLUTIONS * r


def interarrival_stats(events: Events, by: By = None) -> pl.DataFrame:
    """Inter-arrival times per group: mean, coefficient of variation, percentiles, ties.

    Gaps are taken between consecutive arrivals of a group after snapping the times to the
    data's :func:`resolution` r. A zero gap (two arrivals on the same tick, or at the
    identical instant when the timestamps are continuous) is a *tie*, counted in
    ``tie_fraction`` = zero gaps / all gaps; the arrivals sharing a timestamp form one
    *batch*.

    ``cv`` is the one CV of the package (``summary``, ``fidelity`` and the model's calibration
    use it): s / x̄ over *all* gaps of the group, ties included as zero gaps (Cox & Lewis
    1966, s with n − 1). Rounding the times to a grid of r adds e_i − e_(i−1) to each gap,
    with e uniform on (−r/2, r/2): the mean is unchanged and the variance grows by r²/6
    (Sheppard), so this CV holds at any resolution the gaps are large against: a gamma
    renewal process of CV 2 at 1 ms (20 % ties) gives 2.00, where dropping the ties gave
    1.74. It is null (not resolvable) when the mean gap is below
    :data:`MIN_GAP_RESOLUTIONS` × r (Mooncake's 3 s ticks, 10 requests per tick).
    ``cv_request`` is the same figure never nulled, for comparing two traces recorded on one
    grid; ``cv_batch``, ``mean_s``, ``p50_s``, ``p90_s``, ``p99_s`` and ``max_s`` describe the
    gaps between batches (the positive gaps): the ticks' process (for Mooncake the ticks).

    Percentiles interpolate linearly; ``rate_per_s = (n − 1) / duration_s`` = 1 / mean
    request-level gap, with ``duration_s`` = last − first arrival. A Poisson process has
    CV = 1; a gamma renewal process with shape κ has CV = 1/√κ.

    Returns ``[by..., n, duration_s, rate_per_s, mean_s, cv, p50_s, p90_s, p99_s, max_s,
    tie_fraction, resolution_s, n_batches, mean_batch_size, cv_request, cv_batch]``;
    statistics that need more gaps than a group has are null. Raises ``ValueError`` for
    counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "interarrival_stats")
    return _interarrival(ev)


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
    idx = np.arange(scales.size)
    first = np.where(ok.any(1), np.where(ok, idx, scales.size).min(1), 0)
    last = np.where(ok.any(1), np.where(ok, idx, -1).max(1), 0)
    good = n >= 3
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


# --------------------------------------------------------------------------------------------
# Distribution fits


def _fit_gaps(ev: _Prepared, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gid, gap) of the gaps :func:`fit_interarrivals` describes, in time order per group.

    Continuous timestamps: the positive gaps (exact ties left out). On a grid of r > 0: every
    arrival moves by an independent uniform offset in (−r/2, r/2) (seeded) and the group is
    re-sorted, so tied arrivals are spread within their tick as the model's fitting does
    (:func:`servetrace.synth.model.fit_arrivals`) and every gap, ties included, is kept.
    """
    ggid, gap = _gaps(ev)
    r = ev.resolution_s
    if r <= 0:
        positive = gap > 0
        if positive.all():
            return ggid, gap
        if ev.n_groups == 1:  # ids all 0: a view of the right length
            kept = gap[positive]
            return ev.gid[: kept.size], kept
        return ggid[positive], gap[positive]
    tt = ev.times + np.random.default_rng(seed).uniform(-r / 2, r / 2, ev.times.size)
    if ev.n_groups == 1:
        tt.sort()
        return ev.gid[1:], np.diff(tt)
    order = np.lexsort((tt, ev.gid))
    tt, tg = tt[order], ev.gid[order]
    keep = tg[1:] == tg[:-1]
    return tg[1:][keep], np.diff(tt)[keep]


def interarrival_gaps(events: Events, by: By = None, *, seed: int = 0) -> pl.DataFrame:
    """The inter-arrival times that :func:`fit_interarrivals` describes, one row per gap.

    Continuous timestamps: the gaps between consecutive distinct timestamps of a group (exact
    ties left out). On a grid of r > 0: every arrival is spread uniformly within its tick
    (±r/2, with ``seed``) and all gaps are kept, ties included, the values to compare with a
    fitted CDF at scales above r. Returns ``[by..., gap_s]`` in time order within each group.
    Raises ``ValueError`` for counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "interarrival_gaps")
    gid, gap = _fit_gaps(ev, seed)
    return _frame(ev, gid, {"gap_s": gap})


def _fit(ev: _Prepared, families: Sequence[str], seed: int, max_samples: int,
         min_gaps: int) -> pl.DataFrame:
    ggid, gap = _gaps(ev)
    n_ties = (np.array([np.count_nonzero(gap == 0)]) if ev.n_groups == 1
              else np.bincount(ggid[gap == 0], minlength=ev.n_groups))
    r = ev.resolution_s
    if r <= 0:
        ggid, gap = _fit_gaps(ev, seed)
    else:  # gaps in whole ticks, ties included: the grouped-data likelihood
        gap = np.rint(gap / r).astype(np.int64)
    bounds = np.searchsorted(ggid, np.arange(ev.n_groups + 1))
    parts = []
    for g in range(ev.n_groups):  # one fit per group (each vectorized over its gaps)
        a, b = bounds[g], bounds[g + 1]
        if b - a < min_gaps:
            continue
        if r > 0:
            fit = fitting.fit_rounded(gap[a:b], r, families, seed=seed)
        else:
            fit = fitting.fit_distributions(gap[a:b], families, max_samples=max_samples,
                                            seed=seed)
        if fit.height == 0:
            continue
        fit = fit.with_columns(pl.lit(r).alias("resolution_s"),
                               pl.lit(int(n_ties[g]), dtype=pl.Int64).alias("n_ties"))
        parts.append(pl.concat([ev.keys[[g] * fit.height], fit], how="horizontal")
                     if ev.by else fit)
    if not parts:
        schema = {**ev.keys.schema, **fitting.FIT_SCHEMA, "resolution_s": pl.Float64,
                  "n_ties": pl.Int64}
        return pl.DataFrame(schema=schema)
    return pl.concat(parts)


def fit_interarrivals(events: Events, by: By = None,
                      families: Sequence[str] = fitting.DEFAULT_FAMILIES, *, seed: int = 0,
                      max_samples: int = 200_000, min_gaps: int = 10) -> pl.DataFrame:
    """Maximum-likelihood fits of the inter-arrival times, ranked by AIC and BIC, with KS.

    Continuous timestamps: :func:`servetrace.analysis.fitting.fit_distributions` (AIC, Akaike 1974;
    BIC, Schwarz 1978; KS distance) on each group's positive gaps (exact ties, zero gaps, are not
    fitted; their number is in ``n_ties``). Timestamps on a grid (:func:`resolution`
    r > 0): :func:`servetrace.analysis.fitting.fit_rounded` on *every* gap in whole ticks, ties
    included, by the grouped-data likelihood of a continuous gap read through rounded
    timestamps (Heitjan 1989): ties below the resolution are neither dropped (which biases
    the CV down and the family towards Weibull; a gamma renewal process of CV 2 at 1 ms has
    20 % ties) nor invented. ``loglik`` is then that of the tick counts, ``ks`` the discrete
    KS distance, and ``n`` counts the ties; ``seed`` only drives the search's starting point.
    The fitted process is the request process at the data's resolution, whose CV is
    :func:`interarrival_stats`' ``cv``. Groups with fewer than ``min_gaps`` gaps are left out.

    Returns ``[by..., family, params, n, n_dropped, n_params, loglik, aic, bic, ks, rank_aic,
    rank_bic, resolution_s, n_ties]``, per group sorted by ``rank_aic``. Raises
    ``ValueError`` for counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "fit_interarrivals")
    return _fit(ev, families, seed, max_samples, min_gaps)


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


# --------------------------------------------------------------------------------------------
# Summary


#: The columns of :func:`summary` after the ``by`` columns, in order.
SUMMARY_COLUMNS = (
    "n", "duration_s", "rate_per_s", "cv", "resolution_s", "idc_1s", "idc_60s", "idc_3600s",
    "peak_to_mean_60s", "hurst_av", "hurst_rs", "hurst_dfa", "hurst_memory", "best_fit",
    "dominant_period_s", "n_bursts", "tie_fraction", "dominant_period_strength", "notes")


def summary(events: Events, by: By = None, *, seed: int = 0) -> pl.DataFrame:
    """One row per group with the key burstiness figures (for the CLI and the report).

    Columns: ``[by..., n, duration_s, rate_per_s, cv, resolution_s, idc_1s, idc_60s,
    idc_3600s, peak_to_mean_60s, hurst_av, hurst_rs, hurst_dfa, hurst_memory, best_fit,
    dominant_period_s, n_bursts, tie_fraction, dominant_period_strength, notes]``
    (:data:`SUMMARY_COLUMNS`).
    ``seed`` is the fits' starting point on gridded timestamps.

    * n, duration_s, rate_per_s, cv, tie_fraction: :func:`interarrival_stats` (cv at the
      data's resolution). For counts input: n = Σ counts, duration_s = the span,
      rate_per_s = n / duration_s, cv, tie_fraction and best_fit are null;
    * idc_1s, idc_60s, idc_3600s, peak_to_mean_60s: :func:`dispersion_curve` at 1 s, 60 s and
      3600 s, each snapped up to a multiple of the resolution; null with fewer than
      :data:`MIN_WINDOWS` complete windows, and null (with a note) for a window below the
      resolution (Mooncake's 3 s ticks: idc_1s; per-minute counts: idc_1s);
    * hurst_av, hurst_rs, hurst_dfa, hurst_memory: :func:`hurst` with its default base
      window (its ``h`` per method and its ``memory`` verdict);
    * best_fit: the family ranked first by AIC in :func:`fit_interarrivals` (fitted on at
      most 50,000 gaps per group, for speed);
    * dominant_period_s / _strength: the highest :func:`periodicity` periodogram peak when its
      Fisher p-value is below :data:`DOMINANT_P_VALUE` and its strength (autocorrelation at
      the period) at least :data:`DOMINANT_STRENGTH`, else null. Fisher's test alone rejects
      white noise for any non-stationary series (a single burst gives p ≈ 0 at a low
      frequency); the autocorrelation asks that the series actually repeat;
    * n_bursts: :func:`bursts` with its defaults (60 s windows, k = 2, 1 h baseline);
    * notes: why figures are null where the data cannot resolve them (cv and best_fit when
      the mean gap is under :data:`MIN_GAP_RESOLUTIONS` × the resolution; a window below the
      resolution; counts input), "; "-separated; null when nothing is left out.
    """
    ev = _prepare(events, by)
    g = ev.n_groups
    if ev.kind == "arrivals":
        ia = _interarrival(ev)
        base = ia.select("n", "duration_s", "rate_per_s", "cv", "resolution_s", "tie_fraction")
    else:
        n = np.bincount(ev.gid, weights=ev.base_c, minlength=g).astype(np.int64)
        span = ev.end_s - ev.start_s
        base = pl.DataFrame({"n": n, "duration_s": np.full(g, span),
                             "rate_per_s": n / span, "cv": np.full(g, np.nan),
                             "resolution_s": np.full(g, ev.resolution_s),
                             "tie_fraction": np.full(g, np.nan)}).fill_nan(None)
    below = {w: w < ev.unit_s * (1 - 1e-9) for w in (1.0, 60.0, 3600.0)}
    d1, d60, d3600 = ({k: np.where(below[w], np.nan, v) for k, v in
                       _dispersion(ev, _snap(w, ev.unit_s), MIN_WINDOWS).items()}
                      for w in (1.0, 60.0, 3600.0))
    cols: dict[str, object] = {"idc_1s": d1["idc"], "idc_60s": d60["idc"],
                               "idc_3600s": d3600["idc"],
                               "peak_to_mean_60s": d60["peak_to_mean"]}
    hu = _hurst(ev, None)
    for method, name in (("aggregated_variance", "hurst_av"), ("rs", "hurst_rs"),
                         ("dfa", "hurst_dfa")):
        cols[name] = _per_group(ev, hu.filter(pl.col("method") == method), "h")
    cols["hurst_memory"] = _per_group(ev, hu.filter(pl.col("method") == "dfa"), "memory")
    if ev.kind == "arrivals":
        fits = _fit(ev, fitting.DEFAULT_FAMILIES, seed, 50_000, 10)
        best = _per_group(ev, fits.filter(pl.col("rank_aic") == 1), "family")
        unresolved = ia["cv"].is_null() & ia["cv_request"].is_not_null()
        cols["best_fit"] = pl.select(pl.when(unresolved).then(None).otherwise(best))
        cols["best_fit"] = cols["best_fit"].to_series().alias("best_fit")
    else:
        cols["best_fit"] = pl.Series([None] * g, dtype=pl.String)
    per = _periodicity(ev, None, 1).filter(
        (pl.col("method") == "periodogram") & (pl.col("p_value") < DOMINANT_P_VALUE)
        & (pl.col("strength") >= DOMINANT_STRENGTH))
    cols["dominant_period_s"] = _per_group(ev, per, "period_s")
    cols["dominant_period_strength"] = _per_group(ev, per, "strength")
    bu = _bursts(ev, 60.0, 2.0, 3600.0, 1)
    nb = _per_group(ev, bu.group_by(list(ev.by)).agg(pl.len().alias("n")) if ev.by
                    else pl.DataFrame({"n": [bu.height]}), "n")
    cols["n_bursts"] = nb.fill_null(0).cast(pl.Int64)
    notes = _summary_notes(ev, ia if ev.kind == "arrivals" else None, below)
    hurst_notes = [_per_group(ev, hu.filter(pl.col("method") == m), "note").alias(m)
                   for m in ("aggregated_variance", "dfa")]
    cols["notes"] = pl.DataFrame([notes, *hurst_notes]).select(pl.concat_str(
        pl.all(), separator="; ", ignore_nulls=True).replace("", None))["notes"]
    extra = pl.DataFrame(cols)
    extra = extra.with_columns(pl.col(c).fill_nan(None) for c, d in extra.schema.items()
                               if d.is_float())
    body = pl.concat([base, extra], how="horizontal").select(SUMMARY_COLUMNS)
    return pl.concat([ev.keys, body], how="horizontal") if ev.by else body


def _summary_notes(ev: _Prepared, ia: pl.DataFrame | None, below: dict[float, bool]
                   ) -> pl.Series:
    """Why :func:`summary` leaves a figure null where the data cannot resolve it, per group
    (null when nothing is left out): "; "-separated, naming the columns."""
    r = ev.resolution_s
    parts: list[pl.Expr] = []
    if ia is None:
        parts.append(pl.lit("cv, tie_fraction, best_fit: window counts have no arrival times"))
        frame = pl.DataFrame({"_": np.zeros(ev.n_groups)})
    else:
        frame = ia.select(pl.col("cv").is_null() & pl.col("cv_request").is_not_null(),
                          (pl.col("duration_s") / (pl.col("n") - 1)).alias("gap"))
        parts.append(pl.when(pl.col("cv")).then(pl.format(
            f"cv, best_fit: the mean gap ({{}} s) is under {MIN_GAP_RESOLUTIONS} × the "
            f"resolution ({r:g} s), which hides the gaps", pl.col("gap").round_sig_figs(3))))
    late = [w for w, b in below.items() if b]
    if late:
        names = ", ".join(["idc_1s", "idc_60s, peak_to_mean_60s", "idc_3600s"][i]
                          for i, w in enumerate(below) if below[w])
        parts.append(pl.lit(f"{names}: window below the resolution ({r:g} s)"))
    notes = frame.with_columns(pl.concat_str(parts, separator="; ", ignore_nulls=True)
                               .alias("notes"))["notes"]
    return notes.replace("", None)


def _per_group(ev: _Prepared, frame: pl.DataFrame, column: str) -> pl.Series:
    """``column`` of ``frame`` (≤ one row per group) aligned to the groups, null where absent."""
    if not ev.by:
        value = frame[column][0] if frame.height else None
        return pl.Series(column, [value], dtype=frame.schema[column])
    keyed = ev.keys.join(frame.select(*ev.by, column), on=list(ev.by), how="left",
                         nulls_equal=True, maintain_order="left")
    return keyed[column]
