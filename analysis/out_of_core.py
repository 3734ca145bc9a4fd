"""Out-of-core characterization: the figures of ``servetrace analyze`` from a lazy scan.

:func:`arrival_summary` and :func:`token_summary` return what
:func:`servetrace.analysis.burstiness.summary` and :func:`servetrace.analysis.tokens.summary`
return for the same rows, from a ``LazyFrame`` (a store's
:meth:`~servetrace.loaders.Store.scan`, ``pl.scan_parquet``) that need not fit in memory: no
array per request is held beyond a chunk of :data:`CHUNK_ROWS` rows. Where each figure comes
from, and how close it is to the in-memory one (``tests/test_out_of_core_analyze.py``):

* window counts: the sparse counts of the non-empty windows at every window size the
  in-memory path computes from the times, each from one chunked pass over the rows with the
  same arithmetic per row (``ticks // m`` on a grid of phase 0, ``floor(t / w)`` otherwise) and
  merged by run-length counting; coarser windows and every statistic over the windows
  (``idc_*``, ``peak_to_mean_60s``, ``hurst_*``, ``dominant_period_*``, ``n_bursts``) are then
  the same code on the same counts: **identical**;
* ``n``, ``duration_s``, ``rate_per_s``, ``resolution_s``, ``tie_fraction``: counts, the first
  and last arrival per group, and the resolution from the strided gaps and the phase sample
  (:func:`~servetrace.analysis.counting.resolution`) gathered in one pass: **identical**;
* ``cv``: the sample SD of all gaps, exact gaps in two chunked passes (mean, then
  Σ (x − x̄)²). One group: summed in the same blocks of 2^20 gaps as in memory:
  **identical**. Several groups: each chunk's per-group sums added up, an order of addition
  that differs from one sequential sum: relative difference below 1e-12;
* ``best_fit``: continuous timestamps: the same seeded subsample of positive gaps that
  :func:`~servetrace.analysis.fitting.fit_distributions` draws (its indices depend only on
  the number of gaps; a pass gathers them); on a grid: the histogram of the gaps in ticks,
  all the grouped-data likelihood reads (:func:`~servetrace.analysis.fitting.fit_rounded_counts`):
  **identical**;
* token figures, from the ``GROUP BY`` histogram of (group, input, output) that the engine
  streams (lengths are bounded integers: a row per distinct pair): means, medians and p99
  **identical** (integer sums; the same order statistics); ``spearman`` from the mid-ranks of
  the cells (:func:`servetrace.synth.lengths._spearman_from_pairs`): relative difference
  below 1e-12; ``failure_rate`` a streamed aggregate: **identical**; best fits: all positive
  values from the histogram when a group has at most ``max_samples`` of them, else the same
  seeded subsample of rows gathered in a pass: **identical**.

Gaps need the arrivals in time order: a store's tables are sorted by ``arrival_s``. An input
that is not (found in the first pass) is characterized in memory instead, with a warning.

With an engine (:mod:`~servetrace.analysis.engine`: ``--engine ray``), the window counts and
the length histogram, which add up across rows, run as one task per partition of rows, each
reading its own rows from the scan's files, and are merged here: integer counts, so the
figures are the local engine's exactly. The passes over gaps carry the previous arrival from
row to row and stay in this process.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from servetrace.analysis import burstiness, fitting, tokens
from servetrace.analysis.counting import (
    _BLOCK,
    NO_ARRIVALS,
    By,
    _floor_runs,
    _grid_phase,
    _grid_step_of_gaps,
    _grid_stride,
    _multiple,
    _phase_stride,
    _Prepared,
    _runs,
    _snap_to_grid,
    group_columns,
)
from servetrace.analysis.engine import Engine
from servetrace.analysis.frames import columns, warn_empty
from servetrace.analysis.interarrival import _fit_groups, _request_figures
from servetrace.analysis.token_counts import _aggregate, _join, _Runs
from servetrace.synth.lengths import _spearman_from_pairs

#: Rows read at a time (4 Mi: 32 MB per float column).
CHUNK_ROWS = 1 << 22


def _chunks(lf: pl.LazyFrame, cols: Sequence[str], n: int, start: int = 0
            ) -> Iterator[pl.DataFrame]:
    """``cols`` of rows ``[start, n)`` of ``lf`` in consecutive slices of
    :data:`CHUNK_ROWS` rows (a Parquet scan reads only the row groups a slice covers)."""
    sel = lf.select(cols)
    for lo in range(start, n, CHUNK_ROWS):
        yield sel.slice(lo, min(CHUNK_ROWS, n - lo)).collect()


def _ranges(n: int, engine: Engine | None, partitions: int | None) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of the partitions an engine maps over (default 4 per CPU)."""
    parts = partitions or 4 * (engine.workers if engine is not None else 1)
    edges = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


class _Unsorted(Exception):
    """The rows are not in time order: the gaps need the in-memory path."""


class _Scan:
    """One trace's arrivals read chunk by chunk: its group keys and the grid of its times."""

    def __init__(self, lf: pl.LazyFrame, by: By) -> None:
        names = lf.collect_schema().names()
        cols = group_columns(names, by)
        if "arrival_s" not in names:
            raise ValueError("out of core: needs an 'arrival_s' column (requests, "
                             f"invocations); got {', '.join(names)}")
        t = pl.col("arrival_s").cast(pl.Float64)
        head = lf.select(pl.len().alias("n"), t.null_count().alias("nulls"),
                         (~t.is_finite()).sum().alias("bad")).collect().row(0, named=True)
        self.n = int(head["n"])
        if self.n == 0:
            raise ValueError("events: no rows (arrival_s is empty)")
        if head["nulls"] == self.n:
            raise ValueError(NO_ARRIVALS)
        if head["nulls"] or head["bad"]:
            raise ValueError("arrival_s: null or non-finite values; drop them first")
        warn_empty(lf, cols)
        self.lf, self.cols = lf, cols
        self.keys = (lf.select(cols).unique().sort(list(cols), nulls_last=True).collect()
                     if cols else pl.DataFrame())
        self.n_groups = max(self.keys.height, 1)
        self.r, self.phase = 0.0, 0.0
        self.first, self.last = self._first_pass()

    def chunks(self, lo: int = 0, hi: int | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(group id, snapped time, tick or None) of each chunk of rows ``[lo, hi)`` (all
        by default), in time order."""
        ids = self.keys.with_row_index("_gid") if self.cols else None
        for df in _chunks(self.lf, [*self.cols, "arrival_s"],
                          self.n if hi is None else hi, lo):
            t = df["arrival_s"].cast(pl.Float64).to_numpy()
            ticks = None
            if self.r > 0:
                t, ticks = _snap_to_grid(t, self.r, self.phase)
            if ids is None:
                gid = np.zeros(t.size, dtype=np.int64)
            else:
                gid = (df.select(self.cols).join(ids, on=list(self.cols), how="left",
                                                 nulls_equal=True, maintain_order="left")
                       ["_gid"].to_numpy().astype(np.int64))
            yield gid, t, ticks

    def _first_pass(self) -> tuple[np.ndarray, np.ndarray]:
        """Check the order, gather the resolution's strided gaps and phase sample, and find
        each group's first and last arrival (raw); sets the grid (``r``, ``phase``)."""
        stride, every = _grid_stride(self.n), _phase_stride(self.n)
        n_pairs = -(-(self.n - 1) // stride)
        left, right, sample = [], [], []
        lo_t = np.full(self.n_groups, np.inf)
        hi_t = np.full(self.n_groups, -np.inf)
        prev, at = -np.inf, 0
        for gid, t, _ in self.chunks():  # r = 0 yet: raw times
            if t[0] < prev or not bool(np.all(t[1:] >= t[:-1])):
                raise _Unsorted
            prev = float(t[-1])
            idx = np.arange(at, at + t.size)
            pair = idx // stride
            left.append(t[(idx % stride == 0) & (pair < n_pairs)])
            right.append(t[(idx % stride == 1) | ((stride == 1) & (idx > 0))])
            sample.append(t[idx % every == 0])
            # sorted times: a group's first row in the chunk is its least, its last its most
            seen, first = np.unique(gid, return_index=True)
            lo_t[seen] = np.minimum(lo_t[seen], t[first])
            seen, last = np.unique(gid[::-1], return_index=True)
            hi_t[seen] = np.maximum(hi_t[seen], t[::-1][last])
            at += t.size
        t0, t1 = float(lo_t.min()), float(hi_t.max())
        if self.n >= 2:
            a, b = np.concatenate(left), np.concatenate(right)[:n_pairs]
            self.r = _grid_step_of_gaps(b - a[: b.size], t0, t1)
        if self.r > 0:
            self.phase = _grid_phase(np.concatenate(sample), self.r)
        return lo_t, hi_t

    def snap(self, t: np.ndarray) -> np.ndarray:
        return _snap_to_grid(t, self.r, self.phase)[0] if self.r > 0 else t

    def sparse(self, w: float, engine: Engine | None = None, partitions: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gid, k, count) of the non-empty windows of size ``w``: what
        :func:`~servetrace.analysis.counting._sparse` computes from the times, by chunks;
        with an ``engine``, each partition of rows is a task whose runs are merged here
        (integer counts: the same result)."""
        if engine is None:
            return self.sparse_rows(w, 0, self.n)
        parts = engine.map(_sparse_rows, _ranges(self.n, engine, partitions), self, w)
        return self._merge(parts)

    def sparse_rows(self, w: float, lo: int, hi: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sparse` of rows ``[lo, hi)`` alone."""
        m = _multiple(w, self.r) if self.r > 0 and self.phase == 0.0 else None
        parts = []
        for gid, t, ticks in self.chunks(lo, hi):
            if self.cols:
                order = np.argsort(gid, kind="stable")
                gid, t = gid[order], t[order]
                ticks = None if ticks is None else ticks[order]
            if m is not None and ticks is not None:
                parts.append(_runs(gid, ticks // m))
            else:
                parts.append(_floor_runs(gid, t, 0.0, w))
        return self._merge(parts)

    def _merge(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sorted run per (group, window) from the runs of consecutive row ranges."""
        g, k, c = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if self.cols:
            order = np.lexsort((k, g))
            g, k, c = g[order], k[order], c[order]
        return _runs(g, k, c)

    def prepared(self, engine: Engine | None = None, partitions: int | None = None
                 ) -> _Prepared:
        first, last = self.snap(self.first), self.snap(self.last)
        r = self.r
        start, final = float(first.min()), float(last.max())
        end = final + r if r > 0 else float(np.nextafter(final, np.inf))
        return _Prepared(self.cols, self.keys, "arrivals", r, 0.0, start, end,
                         None, None, None, None, None,
                         source=lambda w: self.sparse(w, engine, partitions))

    def gaps(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(group id, gap) of consecutive arrivals of a group, chunk by chunk, in the order
        of the in-memory gaps within each group."""
        carry = np.full(self.n_groups, np.nan)
        for gid, t, _ in self.chunks():
            if not self.cols:
                d = np.diff(t, prepend=carry[0]) if not np.isnan(carry[0]) else np.diff(t)
                carry[0] = t[-1]
                yield np.zeros(d.size, dtype=np.int64), d
                continue
            order = np.argsort(gid, kind="stable")
            gid, t = gid[order], t[order]
            head = np.ones(gid.size, dtype=bool)
            head[1:] = gid[1:] != gid[:-1]
            before = np.where(head, carry[gid], np.roll(t, 1))
            keep = ~np.isnan(before)
            yield gid[keep], (t - before)[keep]
            last = np.flatnonzero(np.append(head[1:], True))
            carry[gid[last]] = t[last]


def _sparse_rows(rows: tuple[int, int], scan: _Scan, w: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partition's task: the window runs of its rows (module level: Ray pickles it)."""
    return scan.sparse_rows(w, *rows)


def _blocks(parts: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The concatenation of ``parts`` cut into blocks of :data:`_BLOCK` values (the last
    shorter): the blocks the in-memory sums are taken over."""
    pending = np.empty(0)
    for part in parts:
        pending = np.concatenate([pending, part]) if pending.size else part
        while pending.size >= _BLOCK:
            yield pending[:_BLOCK]
            pending = pending[_BLOCK:]
    if pending.size:
        yield pending


def _gap_moments(scan: _Scan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: number of gaps, zero gaps, and the sample SD of all gaps (two passes)."""
    g = scan.n_groups
    if not scan.cols:  # blocks of gaps, as :func:`interarrival._one_group_gaps` sums them
        total, count, ties = 0.0, 0, 0
        for block in _blocks(d for _, d in scan.gaps()):
            total += float(block.sum())
            count += block.size
            ties += int(np.count_nonzero(block == 0))
        mean = total / count if count else np.nan
        ss = 0.0
        for block in _blocks(d for _, d in scan.gaps()):
            dev = block - mean
            ss += float((dev * dev).sum())
        sd = math.sqrt(ss / (count - 1)) if count > 1 else np.nan
        return np.array([count]), np.array([ties]), np.array([sd])
    n = np.zeros(g, dtype=np.int64)
    ties = np.zeros(g, dtype=np.int64)
    total = np.zeros(g)
    for gid, d in scan.gaps():
        n += np.bincount(gid, minlength=g)
        ties += np.bincount(gid[d == 0], minlength=g)
        total += np.bincount(gid, weights=d, minlength=g)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    ss = np.zeros(g)
    for gid, d in scan.gaps():
        dev = d - mean[gid]
        ss += np.bincount(gid, weights=dev * dev, minlength=g)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.where(n > 1, np.sqrt(ss / (n - 1)), np.nan)
    return n, ties, sd


def _fit_inputs(scan: _Scan, positive: np.ndarray, seed: int, max_samples: int
                ) -> list[np.ndarray | tuple[np.ndarray, np.ndarray]]:
    """Per group, what :func:`interarrival._fit_groups` fits: on a grid the histogram of the
    gaps in ticks; otherwise the positive gaps, or where a group has more than
    ``max_samples`` the subsample :func:`fitting.fit_distributions` would draw (seeded
    indices into the group's positive gaps in time order), gathered in one pass."""
    g = scan.n_groups
    if scan.r > 0:
        hist = []
        for gid, d in scan.gaps():
            hist.append(pl.DataFrame({"g": gid, "k": np.rint(d / scan.r).astype(np.int64)})
                        .group_by("g", "k").len())
        table = (pl.concat(hist).group_by("g", "k").agg(pl.col("len").sum()).sort("g", "k")
                 if hist else pl.DataFrame(schema={"g": pl.Int64, "k": pl.Int64,
                                                   "len": pl.UInt32}))
        out: list = []
        for i in range(g):
            part = table.filter(pl.col("g") == i)
            out.append((part["k"].to_numpy(), part["len"].to_numpy().astype(np.int64)))
        return out
    wanted = []  # per group: sorted indices among its positive gaps (None: all of them)
    for size in positive:
        if size > max_samples:
            pick = np.random.default_rng(seed).choice(int(size), size=max_samples,
                                                      replace=False)
            wanted.append(np.sort(pick))
        else:
            wanted.append(None)
    seen = np.zeros(g, dtype=np.int64)
    got: list[list[np.ndarray]] = [[] for _ in range(g)]
    for gid, d in scan.gaps():
        pos = d > 0
        gid, d = gid[pos], d[pos]
        starts = np.searchsorted(gid, np.arange(g + 1))  # gid is sorted
        for i in np.unique(gid):  # a loop over groups, not rows
            part = d[starts[i]:starts[i + 1]]
            # the group's positive gaps of earlier chunks come first in its order
            got[i].append(part if wanted[i] is None else
                          part[_within(wanted[i], int(seen[i]), part.size)])
        seen += np.diff(starts)
    return [np.concatenate(parts) if parts else np.empty(0) for parts in got]


def _within(index: np.ndarray, lo: int, size: int) -> np.ndarray:
    """The sorted positions ``index`` that fall in ``[lo, lo + size)``, relative to ``lo``."""
    a, b = np.searchsorted(index, [lo, lo + size])
    return index[a:b] - lo


def arrival_summary(events: pl.LazyFrame, by: By = None, *, seed: int = 0,
                    engine: Engine | None = None, partitions: int | None = None
                    ) -> pl.DataFrame:
    """:func:`servetrace.analysis.burstiness.summary` of ``events`` (arrivals: a lazy
    ``requests`` or ``invocations`` scan) out of core; see the module docstring for what
    each figure is computed from and how close it is to the in-memory one.

    ``engine`` (:mod:`~servetrace.analysis.engine`; None: this process) computes the window
    counts as one task per partition of rows (``partitions``, default 4 per CPU), each
    reading its rows itself; the passes over the gaps, which carry state from one row to
    the next, stay in this process. The figures are the local engine's, exactly."""
    lf = events.lazy()
    try:
        scan = _Scan(lf, by)
    except _Unsorted:
        warnings.warn("out of core: the arrivals are not in time order; characterized in "
                      "memory", RuntimeWarning, stacklevel=2)
        return burstiness.summary(lf, by=by, seed=seed)
    ev = scan.prepared(engine, partitions)
    n_gaps, ties, sd = _gap_moments(scan)
    first, last = scan.snap(scan.first), scan.snap(scan.last)
    n = n_gaps + 1
    req = _request_figures(n, last - first, ties, sd, scan.r)
    ia = pl.DataFrame({k: req[k] for k in ("n", "duration_s", "rate_per_s", "cv",
                                           "resolution_s", "tie_fraction", "cv_request")}
                      ).fill_nan(None)

    def fits() -> pl.DataFrame:
        parts = _fit_inputs(scan, n_gaps - ties, seed, burstiness.SUMMARY_FIT_GAPS)
        return _fit_groups(ev, parts, ties, fitting.DEFAULT_FAMILIES, seed,
                           burstiness.SUMMARY_FIT_GAPS, 10)

    return burstiness._summary(ev, ia, fits)


def _pairs(lf: pl.LazyFrame, keys: list[str], engine: Engine | None = None,
           partitions: int | None = None) -> pl.DataFrame:
    """The (group, input, output) histogram ``[keys..., input_tokens, output_tokens, _c]``,
    sorted (sums over its cells then add in one order); with an ``engine``, one histogram
    per partition of rows, added up."""
    cells = [*keys, "input_tokens", "output_tokens"]
    if engine is None:
        table = _histogram(lf, cells)
    else:
        n = lf.select(pl.len()).collect().item()
        parts = engine.map(_histogram_rows, _ranges(n, engine, partitions), lf, cells)
        table = pl.concat(parts).group_by(cells).agg(pl.col("_c").sum())
    return table.sort(cells, nulls_last=True)


def _histogram(lf: pl.LazyFrame, cells: list[str]) -> pl.DataFrame:
    return (lf.group_by(cells).agg(pl.len().cast(pl.Int64).alias("_c"))
            .collect(engine="streaming"))


def _histogram_rows(rows: tuple[int, int], lf: pl.LazyFrame, cells: list[str]
                    ) -> pl.DataFrame:
    """One partition's task: the histogram of its rows (module level: Ray pickles it)."""
    return _histogram(lf.slice(rows[0], rows[1] - rows[0]), cells)


def _field_runs(cells: pl.DataFrame, field: str, n_groups: int
                ) -> tuple[_Runs | None, np.ndarray]:
    """The value runs of ``field`` per group ``_g`` from the histogram, and its nulls."""
    known = cells.filter(pl.col(field).is_not_null())
    nulls = np.bincount(cells.filter(pl.col(field).is_null())["_g"].to_numpy(),
                        weights=cells.filter(pl.col(field).is_null())["_c"].to_numpy(),
                        minlength=n_groups).astype(np.int64)
    marg = known.group_by("_g", field).agg(pl.col("_c").sum()).sort("_g", field)
    g, v, c = (marg[col].to_numpy().astype(np.int64) for col in ("_g", field, "_c"))
    cum = np.cumsum(c)
    n = np.bincount(g, weights=c, minlength=n_groups).astype(np.int64)
    return _Runs(g, v, c, cum, np.cumsum(n) - n, n), nulls


def token_summary(requests: pl.LazyFrame, by: By = None, *,
                  families: Sequence[str] = tokens.WHOLE_FAMILIES, min_n: int = 100,
                  max_samples: int = 200_000, seed: int = 0, engine: Engine | None = None,
                  partitions: int | None = None) -> pl.DataFrame:
    """:func:`servetrace.analysis.tokens.summary` of a lazy ``requests`` scan out of core,
    from the (group, input, output) histogram (see the module docstring); with an
    ``engine``, one histogram per partition of rows, added up (the same counts). Falls back
    to the in-memory function where the token columns are not integers."""
    lf = requests.lazy()
    schema = lf.collect_schema()
    keys = columns(by)
    if not all(f in schema and schema[f].is_integer() for f in tokens.FIELDS) or any(
            k in (*tokens.FIELDS, "failed") for k in keys):
        return tokens.summary(lf, by=by, families=families, min_n=min_n,
                              max_samples=max_samples, seed=seed)
    warn_empty(lf, keys)
    cells = _pairs(lf, keys, engine, partitions)
    if cells.height == 0:
        raise ValueError("summary: requests is empty (no rows)")
    ids = (cells.select(keys).unique().sort(keys, nulls_last=True).with_row_index("_g")
           .with_columns(pl.col("_g").cast(pl.Int64)) if keys
           else pl.DataFrame({"_g": [0]}, schema={"_g": pl.Int64}))
    cells = (cells.join(ids, on=keys, how="left", nulls_equal=True) if keys
             else cells.with_columns(pl.lit(0, pl.Int64).alias("_g")))
    g = ids.height
    out = ids.select("_g", *keys)
    failed = (lf.with_columns(pl.lit(None, pl.Boolean).alias("failed"))
              if "failed" not in schema or schema["failed"] == pl.Null else lf)
    if failed.collect_schema()["failed"] != pl.Boolean:
        raise ValueError(f"failure_rate: column 'failed' must be Boolean, not "
                         f"{schema['failed']}")
    known = pl.col("failed").is_not_null().sum().cast(pl.Int64)
    rate = _aggregate(failed, keys, [
        pl.len().cast(pl.Int64).alias("n"),
        pl.when(known > 0).then(pl.col("failed").sum() / known).alias("failure_rate")])
    out = _join(out, rate, keys)
    runs_of = {}
    for field, prefix in zip(tokens.FIELDS, ("input", "output"), strict=True):
        runs, nulls = _field_runs(cells, field, g)
        runs_of[field] = runs
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = runs.group_sum((runs.value * runs.count).astype(np.float64)) / runs.n
        out = out.join(pl.DataFrame({
            "_g": np.arange(g), f"{prefix}_mean": mean,
            f"{prefix}_median": runs.quantile(0.5, nulls=nulls),
            f"{prefix}_p99": runs.quantile(0.99, nulls=nulls)}).fill_nan(None), on="_g",
            how="left")
    both = cells.drop_nulls(tokens.FIELDS).sort("_g")
    rho = np.full(g, np.nan)
    for part in both.partition_by("_g", maintain_order=True):  # groups, not rows
        gi = int(part["_g"][0])
        if part["_c"].sum() >= 2:
            rho[gi] = _spearman_from_pairs(*(part[c].to_numpy() for c in (*tokens.FIELDS,
                                                                          "_c")))
    out = out.join(pl.DataFrame({"_g": np.arange(g), "spearman": rho}).fill_nan(None),
                   on="_g", how="left")
    ranked = [f for f in families if f != "pareto"]
    for field, prefix in zip(tokens.FIELDS, ("input", "output"), strict=True):
        name = f"{prefix}_best_fit"
        best = (_best_length_fits(lf, keys, ids, runs_of[field], field, ranked, min_n,
                                  max_samples, seed) if ranked
                else pl.DataFrame({"_g": [], name: []}, schema={"_g": pl.Int64,
                                                                 name: pl.String}))
        out = out.join(best.rename({"family": name}) if ranked else best, on="_g",
                       how="left")
    return out.sort("_g").select(*keys, "n", "input_mean", "input_median", "input_p99",
                                 "output_mean", "output_median", "output_p99", "spearman",
                                 "input_best_fit", "output_best_fit", "failure_rate")


def _best_length_fits(lf: pl.LazyFrame, keys: list[str], ids: pl.DataFrame, runs: _Runs,
                      field: str, families: Sequence[str], min_n: int, max_samples: int,
                      seed: int) -> pl.DataFrame:
    """``[_g, family]``: the family :func:`tokens.fit_lengths` ranks first per group with at
    least ``min_n`` positive values; its input rebuilt from the runs, or gathered."""
    g = ids.height
    pos = runs.value > 0
    n_pos = np.bincount(runs.group[pos], weights=runs.count[pos], minlength=g).astype(
        np.int64)
    values: list[np.ndarray | None] = [None] * g
    big = []
    for i in range(g):  # a loop over groups, not rows
        if n_pos[i] < min_n:
            continue
        if n_pos[i] <= max_samples:  # every positive value: the group's sorted runs
            sel = pos & (runs.group == i)
            values[i] = np.repeat(runs.value[sel], runs.count[sel])
        else:
            big.append(i)
    if big:
        for i, got in _gather_positive(lf, keys, ids, field, big, n_pos, max_samples,
                                       seed).items():
            values[i] = got
    rows = []
    for i in range(g):
        if values[i] is None:
            continue
        fits = fitting.fit_distributions(values[i], families, max_samples=max_samples,
                                         seed=seed)
        if fits.height:
            rows.append({"_g": i, "family": fits.filter(pl.col("rank_aic") == 1)["family"][0]})
    return pl.DataFrame(rows, schema={"_g": pl.Int64, "family": pl.String})


def _gather_positive(lf: pl.LazyFrame, keys: list[str], ids: pl.DataFrame, field: str,
                     groups: list[int], n_pos: np.ndarray, max_samples: int, seed: int
                     ) -> dict[int, np.ndarray]:
    """The positive values of ``field`` that :func:`fitting.fit_distributions` subsamples
    for each of ``groups`` (seeded indices among the group's positive values in row order),
    gathered in one chunked pass."""
    wanted = {i: np.sort(np.random.default_rng(seed).choice(int(n_pos[i]), size=max_samples,
                                                             replace=False)) for i in groups}
    seen = np.zeros(ids.height, dtype=np.int64)
    got: dict[int, list[np.ndarray]] = {i: [] for i in groups}
    n = lf.select(pl.len()).collect().item()
    for df in _chunks(lf, [*keys, field], n):
        if keys:
            gid = (df.select(keys).join(ids, on=keys, how="left", nulls_equal=True,
                                        maintain_order="left")["_g"].to_numpy())
        else:
            gid = np.zeros(df.height, dtype=np.int64)
        x = df[field].to_numpy()
        keep = ~np.isnan(x.astype(np.float64)) & (np.nan_to_num(x.astype(np.float64)) > 0)
        gid, x = gid[keep], x[keep]
        order = np.argsort(gid, kind="stable")
        gid, x = gid[order], x[order]
        starts = np.searchsorted(gid, np.arange(ids.height + 1))
        for i in groups:  # a loop over groups, not rows
            a, b = starts[i], starts[i + 1]
            got[i].append(x[a:b][_within(wanted[i], int(seen[i]), int(b - a))])
        seen += np.diff(starts)
    return {i: np.concatenate(parts) for i, parts in got.items()}
