"""Serverless workload model: :func:`fit` per-function arrivals and sizes, sample invocations.

The serverless counterpart of :mod:`servetrace.synth.model` (same protocol: ``fit`` → plain,
versioned JSON → ``sample``), fitted on an ``invocation_counts`` table (per-window counts,
Azure Functions 2019) with its ``functions`` table, or on an ``invocations`` table
(per-invocation times, Azure Functions 2021). Every function keeps its owner, app and trigger
(``tenant``/``app``/``function``/``trigger``: the tenancy hierarchy of Shahrad et al.,
"Serverless in the Wild", USENIX ATC 2020), its own arrival process, and its own duration and
memory quantile functions, so the joint dependence of rate, burstiness, duration and memory
*across* functions is the trace's own: subsets (:mod:`servetrace.synth.serverless_subset`) and
superpositions (:func:`superpose_functions`) move whole functions.

**Arrivals, by kind** (detected per function from its count series and its trigger):

* ``periodic`` (:class:`Periodic`, timers): the gaps between a function's active windows sit
  on one value g (or whole multiples k·g: missed firings). Period g·Δ with the invocations
  per firing drawn from :data:`BATCH_SIZE` quantiles of the function's counts per active
  window (a timer whose run handles a varying backlog); a function active in every window is
  a timer only if its count there is steadier than a Poisson count (variance/mean ≤
  :data:`COUNT_IDC`, CV ≤ :data:`COUNT_CV`), of period Δ/b for its mean count b (a
  sub-window timer). Fitted: period, phase (first firing, plus the offset inside its window
  where times resolve it, else a seeded uniform offset per function, fixed over the sample,
  as a timer's is), jitter (share of gaps of g ± 1 windows: a firing moved by one window),
  and the missed-firing probability over the timer's alive stretch
  (:func:`~servetrace.synth.serverless_exact.timer_lifetimes`: a timer seen in part of the
  trace fires in one stretch of that share of a sample, so its rate and its run of regular
  firings are both kept).
  Timers (``trigger == "timer"``) need :data:`TIMER_SHARE` of their gaps on the grid (g ± 1
  included), other triggers :data:`OTHER_SHARE`, and every timer :data:`MIN_FIRINGS` firings.
  Where per-invocation times resolve the firings, timers are detected and fitted on them
  instead (:mod:`servetrace.synth.serverless_exact`: clock-anchored period and phase by least
  squares, each firing's offset from its due time drawn from the fitted offsets), and a grid
  timer whose resolved firings are off any clock is not one.
* ``modulated`` (:class:`Modulated`, the rest): a stationary Gaussian-copula process of
  per-window counts (the stochastic rate factor of :mod:`servetrace.synth.model`, used here on
  counts): count_t = Q_f(u_t), with ``Q_f`` the function's empirical count distribution (an
  exact zero probability plus :data:`TABLE_SIZE` quantiles of the non-zero counts, scaled so
  its mean is the function's mean count). The scores are rank-matched per sample,
  u_t = (rank of z_t − ½)/T with ``z`` fractional Gaussian noise of Hurst exponent H_f
  (generated exactly by circulant embedding, Davies & Harte 1987, for all functions at once):
  a sample's own count distribution is the fitted one (zero share, quantiles, mean) whatever
  its length, and the noise sets only the *order* of the counts in time. Without it, a path
  of strongly persistent noise over a few hundred windows visits only part of the marginal
  and samples as long as the trace under-disperse. H_f ∈ [0.2, 0.99] is calibrated by
  simulation (:func:`calibrate_hurst`) to the function's IDC curve and its OFF runs, on at
  most its first :data:`~servetrace.synth.serverless_counts.CALIBRATION_WINDOWS` windows.
  Where the trace spans two days (two weeks), a daily (and weekly) log-harmonic profile is
  fitted per function by least squares on hourly counts and divided out before the table is
  built, then multiplied back with stochastic rounding; shorter traces keep no harmonics (an
  8-hour sample cannot tell a daily cycle from a trend).
  Sparse functions (at least :data:`SPARSE` of their windows empty, three active windows or
  more) are a renewal of their active windows instead: gaps between active windows drawn from
  :data:`GAP_SIZE` quantiles of their own gaps (the trace read as a circle, so the idle
  stretch before the first and after the last call is a gap too, and the gaps add up to the
  span), counts from the same non-zero table. The
  idle times a keep-alive policy sees are then the function's own (the copula's ordering,
  one H per function, cannot keep a function that is idle often but never for long from
  idling long now and then); their harmonics are not applied.
* **within-window timing** (:class:`WithinWindow`): the c invocations of a window split it as
  a symmetric Dirichlet(κ, …, κ) of c + 1 spacings: κ = 1 is c uniform order statistics
  (InVitro's uniform spreading), κ → ∞ equidistant, κ < 1 clustered. Fitted from
  per-invocation times (Azure 2021) by moments: a normalized inner gap is Beta(κ, cκ), so
  Σ (g/Δ − 1/(c+1))² = Σ c/((c+1)²((c+1)κ + 1)) is solved for κ. Per-window traces (Azure
  2019) cannot resolve it: their κ is *stated* (default 1, or carried from a trace that
  resolves it by ``fit(..., within=fit_within(invocations))``), and ``source`` says which.
  From per-invocation times each function with enough windows of two invocations or more
  also gets its own κ by maximum likelihood (:attr:`Modulated.kappa`,
  :func:`servetrace.synth.serverless_exact.fit_kappa`: fan-out bursts and steady functions
  are not one κ); the trace's κ stays for the others and for carrying to per-window traces.

* ``chained`` (:class:`Chained`, closed loops, from per-invocation times and durations:
  :func:`servetrace.synth.serverless_exact.closed_loop`): each invocation starts an idle time
  (drawn from the function's ``IDLE_SIZE`` idle quantiles) after the previous one ends, so
  the durations a sample draws set its arrivals.

**Durations and memory** come from each function's percentiles through the monotone cubic
quantile function of :mod:`servetrace.synth.serverless_quantiles` (exact at every percentile);
from per-invocation data the percentiles are first computed at the same probabilities.

The count-series machinery (the grid, timer detection, harmonics, count and gap tables, the
Hurst calibration, within-window positions) and its constants are in
:mod:`servetrace.synth.serverless_counts`.
Scaling operators (subsets, superposition, time compression, cluster sizing) are in
:mod:`servetrace.synth.serverless_scale`. The model is plain data (frozen dataclasses of
tuples), serialized by :meth:`ServerlessModel.to_json` as strict JSON (unknown figures are
null); :data:`VERSION` is checked on load.
Fitting and sampling are vectorized over all functions. The fit works on the non-zero
(function, window, count) cells (:mod:`servetrace.synth.serverless_cells`: no functions ×
windows grid, whose 8 bytes a cell are 8 GB at Azure 2019's full size), reading a lazy table
in the streaming engine; only the copula's busy functions are dense, in chunks. The exact-time
features (timers on the clock, per-function κ, closed loops, of
:mod:`servetrace.synth.serverless_exact`) read the per-invocation times, which only an
``invocations`` table has (it is held whole anyway); timer lifetimes read the timers' cells.
Sampling draws the per-window cells of all functions, the timers' firings and the closed
loops' chains, then :func:`sample_blocks` spreads, sorts and sizes them in blocks of time of
bounded size. The only Python loops run over chunks of functions or
blocks of time (memory bound) or the fixed grid of candidate Hurst exponents.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import optimize

from servetrace.loaders.schema import conform
from servetrace.synth import serverless_cells as sc
from servetrace.synth import serverless_exact as sx
from servetrace.synth import serverless_quantiles as sq
from servetrace.synth.parameters import ScaleRecord
from servetrace.synth.serverless_counts import (
    _KEYS,
    BATCH_SIZE,
    CALIBRATION_WINDOWS,
    GAP_SIZE,
    TABLE_SIZE,
    Grid,
    _harmonic_periods,
    _profile,
    _renewal_cells,
    _rng,
    _scores_to_counts,
    _stochastic_round,
    _timer_phase,
    _with_keys,
    calibrate_hurst,
    dirichlet_positions,
    fgn_rows,
)
from servetrace.synth.serverless_exact import IDLE_SIZE, OFFSET_SIZE

VERSION = "serverless-2"
"""Version of the serverless model format; :meth:`ServerlessModel.from_json` refuses others
than :data:`READABLE`."""
READABLE = ("serverless-1", VERSION)
"""Formats :meth:`ServerlessModel.from_json` reads: ``serverless-1`` lacks the per-timer
offsets and per-function κ of exact times (their defaults: none)."""
SPARSE = 0.5
"""Share of empty windows from which a function's activity is a renewal of its gaps."""
MIN_ACTIVE_H = 2
"""Functions with fewer active windows keep H = 0.5 (nothing to order)."""
CHUNK_CELLS = 1 << 24
"""Function × window cells generated per chunk of functions."""
TIMER_CHUNK = 256
"""Timers whose firings are drawn per seeded chunk."""
BLOCK_INVOCATIONS = 1 << 21
"""Expected invocations per block of :func:`sample_blocks` (memory bound)."""
@dataclass(frozen=True)
class Functions:
    """The function dimension, one entry per function (index = row of every other array)."""

    tenant: tuple[str | None, ...]
    app: tuple[str | None, ...]
    function: tuple[str, ...]
    trigger: tuple[str | None, ...]
    kind: tuple[str, ...]
    """``periodic``, ``modulated`` or ``chained``."""


@dataclass(frozen=True)
class Periodic:
    """Timers: one entry per periodic function (``index`` into :class:`Functions`)."""

    index: tuple[int, ...]
    period_s: tuple[float, ...]
    phase_s: tuple[float, ...]
    """First firing after the fitted zero; NaN where the offset inside a window is unknown
    (then a seeded uniform offset is added per function at sampling)."""
    window_phase_s: tuple[float, ...]
    """Start of the window of the first firing, after the fitted zero."""
    batch: tuple[float, ...]
    """Invocations per firing: ``BATCH_SIZE`` quantiles per function, flattened."""
    jitter: tuple[float, ...]
    miss: tuple[float, ...]
    alive: tuple[float, ...] = ()
    """Share of a sample's time each timer fires, in one stretch at a seeded uniform place
    inside the sample; 1 or empty: all of it
    (:func:`~servetrace.synth.serverless_exact.timer_lifetimes`)."""
    offset_s: tuple[float, ...] = ()
    """Timers fitted on exact times (:func:`~servetrace.synth.serverless_exact.exact_timers`):
    ``OFFSET_SIZE`` quantiles per timer of its firings' offsets from their due times,
    flattened; NaN rows for timers fitted on the window grid; empty: none."""


@dataclass(frozen=True)
class Modulated:
    """Copula count processes: one entry per modulated function, tables flattened row-major
    (``TABLE_SIZE`` values per function), harmonic coefficients ``n_harmonics`` per function."""

    index: tuple[int, ...]
    zero_p: tuple[float, ...]
    table: tuple[float, ...]
    hurst: tuple[float, ...]
    harmonic_periods_s: tuple[float, ...] = ()
    harmonics: tuple[float, ...] = ()
    """Per function and period: cos and sin coefficients of ln(rate), zero-mean profile."""
    gaps: tuple[float, ...] = ()
    """Sparse functions' gaps between active windows: ``GAP_SIZE`` quantiles per function,
    flattened; NaN rows for the copula functions (module doc)."""
    kappa: tuple[float, ...] = ()
    """Per function, its own within-window Dirichlet κ where per-invocation times resolve it
    (:func:`~servetrace.synth.serverless_exact.fit_kappa`); NaN or empty: the model's
    :attr:`WithinWindow.kappa`."""


@dataclass(frozen=True)
class Chained:
    """Closed loops (:func:`~servetrace.synth.serverless_exact.closed_loop`): each invocation
    starts an idle time after the previous one ends; ``IDLE_SIZE`` idle quantiles per
    function, flattened. Time compression shrinks their cycles, not the durations drawn, so
    a compressed loop's invocations overlap."""

    index: tuple[int, ...] = ()
    idle_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class WithinWindow:
    """Dirichlet(κ) spacing of a window's invocations; ``source`` ``fitted`` or ``stated``."""

    kappa: float = 1.0
    source: str = "stated"


@dataclass(frozen=True)
class Sizes:
    """Percentile knots per function (rows of ``len(probs)``), NaN where unknown."""

    duration_probs: tuple[float, ...]
    duration_s: tuple[float, ...]
    memory_probs: tuple[float, ...]
    memory_mb: tuple[float, ...]


@dataclass(frozen=True)
class ServerlessModel:
    """A fitted serverless workload. Sample with :meth:`sample`."""

    source: str
    span_s: float
    window_s: float
    functions: Functions
    periodic: Periodic
    modulated: Modulated
    within: WithinWindow
    sizes: Sizes
    n_invocations: int
    time_scale: float = 1.0
    """Model seconds per sampled second (time compression; 1 = none)."""
    history: tuple[ScaleRecord, ...] = ()
    chained: Chained = Chained()
    version: str = VERSION

    @property
    def n_functions(self) -> int:
        return len(self.functions.function)

    def function_rates(self) -> np.ndarray:
        """Mean invocations per second of each function in a sample (harmonics average to
        about 1 and are ignored here)."""
        r = np.zeros(self.n_functions)
        p = self.periodic
        if p.index:
            r[list(p.index)] = (np.asarray(p.batch).reshape(-1, BATCH_SIZE).mean(axis=1)
                                * (1 - np.asarray(p.miss))
                                * (np.asarray(p.alive) if p.alive else 1.0)
                                / np.asarray(p.period_s))
        m = self.modulated
        if m.index:
            tab = np.asarray(m.table).reshape(len(m.index), TABLE_SIZE)
            active = 1 - np.asarray(m.zero_p)
            if m.gaps:
                g = np.asarray(m.gaps).reshape(len(m.index), GAP_SIZE).mean(axis=1)
                active = np.where(np.isfinite(g), 1 / np.where(np.isfinite(g), g, 1), active)
            r[list(m.index)] = active * tab.mean(axis=1) / self.window_s
        c = self.chained
        if c.index:
            idx = np.asarray(c.index, dtype=np.int64)
            u = np.tile((np.arange(64) + 0.5) / 64, len(idx))
            s = self.sizes
            d = sq.pchip(np.asarray(s.duration_probs),
                         np.asarray(s.duration_s).reshape(self.n_functions, -1),
                         np.repeat(idx, 64), u).reshape(len(idx), 64).mean(axis=1)
            idle = np.asarray(c.idle_s).reshape(len(idx), IDLE_SIZE).mean(axis=1)
            r[idx] = 1 / np.maximum(np.nan_to_num(d) + idle, 1e-9)
        return r * self.time_scale

    @property
    def mean_rate(self) -> float:
        """Mean invocations per second of a sample."""
        return float(self.function_rates().sum())

    def sample(self, duration_s: float, seed: int, start_s: float = 0.0) -> pl.DataFrame:
        """A synthetic canonical ``invocations`` table over ``[0, duration_s)``; see
        :func:`sample`."""
        return sample(self, duration_s, seed, start_s)

    def to_json(self) -> str:
        """The model as JSON (plain objects; no pickles)."""
        return json.dumps(_nan_to_null({"type": "ServerlessModel", **dataclasses.asdict(self)}),
                          allow_nan=False, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> ServerlessModel:
        """The model from :meth:`to_json` text; another ``version`` is an error."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("type") != "ServerlessModel":
            raise ValueError("from_json: not a servetrace ServerlessModel document")
        if data.get("version") not in READABLE:
            raise ValueError(f"from_json: model version {data.get('version')!r} is not a "
                             f"supported version ({', '.join(READABLE)})")
        def tup(cls, d):  # lists back to tuples, null back to NaN
            hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
            return cls(**{k: tuple(math.nan if x is None and "float" in hints[k] else x
                                   for x in v) if isinstance(v, list) else v
                          for k, v in d.items()})
        return ServerlessModel(
            source=data["source"], span_s=float(data["span_s"]),
            window_s=float(data["window_s"]), functions=tup(Functions, data["functions"]),
            periodic=tup(Periodic, data["periodic"]), modulated=tup(Modulated, data["modulated"]),
            within=WithinWindow(**data["within"]), sizes=tup(Sizes, data["sizes"]),
            n_invocations=int(data["n_invocations"]), time_scale=float(data["time_scale"]),
            history=tuple(ScaleRecord(r["op"], tuple(tuple(p) for p in r["params"]))
                          for r in data["history"]),
            chained=tup(Chained, data["chained"]) if "chained" in data else Chained(),
            version=VERSION)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @staticmethod
    def load(path: str | Path) -> ServerlessModel:
        return ServerlessModel.from_json(Path(path).read_text())


def _nan_to_null(obj: object) -> object:
    """Unknown figures (NaN) as JSON null: the document stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [None if isinstance(v, float) and math.isnan(v) else _nan_to_null(v)
                for v in obj]
    return obj


def fit_within(invocations: pl.DataFrame | pl.LazyFrame, window_s: float = 60.0) -> WithinWindow:
    """κ of the Dirichlet within-window spacing from per-invocation times (module doc).

    Windows with at least two invocations of a function give the inner gaps; κ solves the
    moment equation by Brent's method on [10⁻³, 10³]."""
    g = sc.cells(invocations, window_s)
    if g.times is None:
        raise ValueError("fit_within: needs an invocations table (arrival_s)")
    return _within_from_times(g.times, window_s)


def _within_from_times(times: pl.DataFrame, window_s: float) -> WithinWindow:
    t = times.with_columns((pl.col("arrival_s") // window_s).alias("m")).sort("fid", "arrival_s")
    gaps = t.with_columns(pl.col("arrival_s").diff().over("fid", "m").alias("gap"),
                          pl.len().over("fid", "m").alias("c")).drop_nulls("gap")
    if gaps.height < 10:
        raise ValueError(f"fit_within: {gaps.height} within-window gaps; need at least 10")
    x = gaps["gap"].to_numpy() / window_s
    c = gaps["c"].to_numpy().astype(np.float64)
    lhs = float(((x - 1 / (c + 1)) ** 2).sum())

    def excess(log_k: float) -> float:
        k = math.exp(log_k)
        return float((c / ((c + 1) ** 2 * ((c + 1) * k + 1))).sum()) - lhs

    lo, hi = math.log(1e-3), math.log(1e3)
    if excess(lo) <= 0:
        kappa = 1e-3
    elif excess(hi) >= 0:
        kappa = 1e3
    else:
        kappa = math.exp(optimize.brentq(excess, lo, hi, xtol=1e-6))
    return WithinWindow(kappa=kappa, source="fitted")


def _source(table: pl.DataFrame | pl.LazyFrame) -> str:
    """The table's first non-null ``trace`` value, else ``trace``."""
    lf = table.lazy()
    if "trace" not in lf.collect_schema():
        return "trace"
    v = lf.select(pl.col("trace").drop_nulls().first()).collect(engine="streaming").item()
    return "trace" if v is None else str(v)


def _knots(functions: pl.DataFrame | None, g: Grid, columns: tuple[str, ...],
           probs: tuple[float, ...], raw: str | None) -> np.ndarray:
    out = np.full((g.keys.height, len(probs)), np.nan)
    if g.times is not None and raw is not None and raw in g.times.columns:
        q = g.times.drop_nulls(raw).group_by("fid").agg(
            pl.col(raw).quantile(p, "linear").alias(f"q{i}") for i, p in enumerate(probs))
        out[q["fid"].to_numpy()] = q.select(f"q{i}" for i in range(len(probs))).to_numpy()
        return out
    if functions is None:
        return out
    fx = _with_keys(functions.lazy().collect())
    have = [c for c in columns if c in fx.columns]
    if len(have) != len(columns):
        return out
    j = g.keys.select(_KEYS).with_row_index("_f").join(
        fx.select(*_KEYS, *columns).unique(list(_KEYS), keep="first"), on=list(_KEYS),
        how="inner", nulls_equal=True)
    vals = j.select(columns).to_numpy().astype(np.float64)
    # a percentile row must be a quantile function: sort guards rounding in the source
    out[j["_f"].to_numpy()] = np.sort(vals, axis=1)
    return out


def fit(table: pl.DataFrame | pl.LazyFrame, functions: pl.DataFrame | pl.LazyFrame | None = None,
        *, within: WithinWindow | None = None, window_s: float = 60.0,
        source: str | None = None) -> ServerlessModel:
    """Fit a :class:`ServerlessModel` to an ``invocation_counts`` or ``invocations`` table.

    Args:
        table: per-window counts (their own window) or per-invocation arrivals (counted in
            ``window_s`` windows; durations from ``duration_s`` where present).
        functions: the ``functions`` table (trigger, duration and memory percentiles).
        within: the within-window spacing for per-window counts (default: fitted from
            per-invocation times, else stated κ = 1, uniform).
        source: the model's source label (default: the table's ``trace`` value).
    """
    g = sc.cells(table, window_s)
    if functions is not None:
        fx = _with_keys(functions.lazy().collect()).select(*_KEYS, pl.col("trigger").alias("_t"))
        keys = g.keys.join(fx.unique(list(_KEYS), keep="first"), on=list(_KEYS), how="left",
                           nulls_equal=True, maintain_order="left")
        g = dataclasses.replace(g, keys=keys.with_columns(
            pl.coalesce("trigger", "_t").alias("trigger")).drop("_t"))
    chunks = sc.function_chunks(g)
    det = pl.concat([sc.detect_periodic(g.take(lo, hi)).with_columns(pl.col("fid") + lo)
                     for lo, hi in chunks])
    if g.times is not None:  # timers on the clock, seen on exact times (serverless_exact)
        det = sx.with_exact_timers(det, sx.exact_timers(g))
    n_f, n_t = g.n_f, g.n_t
    det = sx.timer_lifetimes(det, g)
    loops = sx.closed_loop(g).filter(pl.col("loop"))
    chain = np.zeros(n_f, dtype=bool)
    chain[loops["fid"].to_numpy()] = True
    # a closed loop's arrivals follow its durations: neither a timer nor a count process
    det = det.with_columns(pl.col("periodic") & ~pl.Series(chain[det["fid"].to_numpy()]))
    per = np.zeros(n_f, dtype=bool)
    per[det["fid"].to_numpy()] = det["periodic"].to_numpy()
    pdet = det.filter(pl.col("periodic"))
    pf = pdet["fid"].to_numpy()
    phase = _timer_phase(g, pf, pdet["period_s"].to_numpy())
    offset = ()
    if "offset" in pdet.columns:
        exact = pdet["phase_x"].is_not_null().to_numpy()
        phase = np.where(exact, pdet["phase_x"].fill_null(np.nan).to_numpy(), phase)
        offset = tuple(float(v) for v in pdet["offset"].to_numpy().ravel())
    periodic = Periodic(
        index=tuple(int(i) for i in pf), period_s=tuple(pdet["period_s"].to_list()),
        phase_s=tuple(float(x) for x in phase),
        window_phase_s=tuple(pdet["window_phase_s"].to_list()),
        batch=tuple(float(b) for b in np.vstack(pdet["batch"].to_list() or
                                                   [np.zeros((0, BATCH_SIZE))]).ravel()),
        jitter=tuple(pdet["jitter"].to_list()), miss=tuple(pdet["miss"].to_list()),
        offset_s=offset, alive=tuple(pdet["alive"].to_list()))
    mf = np.flatnonzero(~per & ~chain)
    span = n_t * g.window_s
    periods = _harmonic_periods(span)
    # the cells of the modulated functions, divided by their harmonic profile (sparse: the
    # dense functions × windows grid is never built; serverless_cells' module doc)
    coef = sc.fit_harmonics(g, mf, periods)
    parts: list[tuple[np.ndarray, ...]] = []
    for lo, hi in chunks:  # chunks of functions: temporaries bounded, results row-wise
        sub = g.take(lo, hi)
        j = slice(*np.searchsorted(mf, [lo, hi]))
        rows = mf[j] - lo
        x = sc.scaled_counts(sub, rows, coef[j], periods)
        zp, tab = sc.count_tables(sub, rows, x)
        active = np.diff(sub.offsets())[rows]  # the profile is positive: active where c is
        sparse = (zp >= SPARSE) & (active >= 3)
        mask = np.zeros(sub.n_f, dtype=bool)
        mask[rows[sparse]] = True
        busy = (active >= MIN_ACTIVE_H) & ~sparse
        head = sub.dense(rows[busy], CALIBRATION_WINDOWS, np.nan_to_num(x))
        parts.append((zp, tab, sc.gap_tables(sub, mask)[rows], busy, head))
    zero_p, table_, gaps, busy, head = (np.concatenate(p) for p in zip(*parts, strict=True))
    hurst = np.full(len(mf), 0.5)
    if busy.any():
        hurst[busy] = calibrate_hurst(head, zero_p[busy], table_[busy])
    if within is None:
        within = _within_from_times(g.times, window_s) if g.times is not None else WithinWindow()
    kappa = sx.fit_kappa(g, math.nan)[mf] if g.times is not None else np.zeros(0)
    modulated = Modulated(
        index=tuple(int(i) for i in mf), zero_p=tuple(float(z) for z in zero_p),
        table=tuple(float(v) for v in table_.ravel()), hurst=tuple(float(h) for h in hurst),
        harmonic_periods_s=periods, harmonics=tuple(float(v) for v in coef.ravel()),
        gaps=tuple(float(v) for v in gaps.ravel()), kappa=tuple(float(k) for k in kappa))
    dur = _knots(functions, g, sq.DURATION_COLUMNS, sq.DURATION_PROBS, "duration_s")
    mem = _knots(functions, g, sq.MEMORY_COLUMNS, sq.MEMORY_PROBS, "memory_mb")
    keys = g.keys
    src = source or _source(table)
    return ServerlessModel(
        source=src, span_s=span, window_s=g.window_s,
        functions=Functions(
            tenant=tuple(keys["tenant"].to_list()), app=tuple(keys["app"].to_list()),
            function=tuple(keys["function"].to_list()), trigger=tuple(keys["trigger"].to_list()),
            kind=tuple("periodic" if p else "chained" if c else "modulated"
                       for p, c in zip(per, chain, strict=True))),
        periodic=periodic, modulated=modulated, within=within,
        sizes=Sizes(sq.DURATION_PROBS, tuple(float(v) for v in dur.ravel()),
                    sq.MEMORY_PROBS, tuple(float(v) for v in mem.ravel())),
        n_invocations=int(g.c.sum()),
        chained=Chained(index=tuple(int(i) for i in loops["fid"]),
                        idle_s=tuple(float(v) for v in loops["idle"].to_numpy().ravel())))


def _modulated_counts(model: ServerlessModel, n_t: int, start_s: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero (function, window, count) cells of the modulated functions."""
    parts = list(_modulated_chunks(model, n_t, start_s, seed))
    if not parts:
        return (np.zeros(0, np.int32),) * 3
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _modulated_chunks(model: ServerlessModel, n_t: int, start_s: float, seed: int
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`_modulated_counts` chunk by chunk of functions (int32 arrays)."""
    m = model.modulated
    n = len(m.index)
    if n == 0 or n_t == 0:
        return
    index = np.asarray(m.index, dtype=np.int32)
    table = np.asarray(m.table).reshape(n, TABLE_SIZE)
    zero_p, hurst = np.asarray(m.zero_p), np.asarray(m.hurst)
    periods = tuple(m.harmonic_periods_s)
    coef = np.asarray(m.harmonics).reshape(n, 2 * len(periods))
    t_mid = start_s + (np.arange(n_t) + 0.5) * model.window_s
    gaps = (np.asarray(m.gaps).reshape(n, GAP_SIZE) if m.gaps
            else np.full((n, GAP_SIZE), np.nan))
    sparse = np.isfinite(gaps[:, 0])
    rows = max(1, CHUNK_CELLS // max(2 * n_t, 1))
    for lo in range(0, n, rows):  # chunks of functions bound memory
        sl = slice(lo, min(n, lo + rows))
        rng = _rng(seed, 1_000_000 + lo)
        sp = np.flatnonzero(sparse[sl])
        if sp.size:
            r, w, c = _renewal_cells(gaps[sl][sp], table[sl][sp], n_t, rng)
            yield index[sp[r] + lo], w.astype(np.int32), c.astype(np.int32)
        cp = np.flatnonzero(~sparse[sl])  # sparse rows came from their renewal above
        if cp.size == 0:
            continue
        x = _scores_to_counts(fgn_rows(hurst[sl][cp], n_t, rng), zero_p[sl][cp],
                              table[sl][cp])
        if periods:
            x = x * _profile(coef[sl][cp], t_mid, periods)
        # an active window stays active: rounding never turns a non-zero count into 0
        c = np.where(x > 0, np.maximum(_stochastic_round(x, rng), 1), 0)
        f, w = np.nonzero(c)
        yield index[cp[f] + lo], w.astype(np.int32), c[f, w].astype(np.int32)


def _function_kappa(model: ServerlessModel) -> float | np.ndarray:
    """κ of the within-window spacing: the model's, or per function where some function has
    its own (:attr:`Modulated.kappa`; the model's for the others)."""
    m = model.modulated
    own = np.asarray(m.kappa, dtype=np.float64)
    if own.size == 0 or not np.isfinite(own).any():
        return model.within.kappa
    per_f = np.full(model.n_functions, model.within.kappa)
    per_f[np.asarray(m.index, dtype=np.int64)] = np.where(np.isfinite(own), own,
                                                         model.within.kappa)
    return per_f


def _periodic_times(model: ServerlessModel, duration: float, start_s: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(function, time) of every timer firing in ``[0, duration)``, function-major, drawn in
    chunks of :data:`TIMER_CHUNK` timers (each its own seeded stream: memory bound, and the
    draws do not depend on how many timers there are)."""
    parts = list(_periodic_chunks(model, duration, start_s, seed))
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _periodic_chunks(model: ServerlessModel, duration: float, start_s: float, seed: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`_periodic_times` chunk by chunk of timers."""
    p = model.periodic
    if not p.index:
        return
    idx = np.asarray(p.index, dtype=np.int32)
    period = np.asarray(p.period_s)
    inside = np.minimum(period, model.window_s)
    # offset inside the window: fixed per function (a timer fires at the same second)
    phase = np.asarray(p.phase_s)
    phase = np.where(np.isnan(phase), np.asarray(p.window_phase_s)
                     + _rng(seed, 2).random(len(idx)) * inside, phase)
    miss, jitter = np.asarray(p.miss), np.asarray(p.jitter)
    batch = np.asarray(p.batch).reshape(-1, BATCH_SIZE)
    # one alive stretch per timer, at a seeded place inside the sample
    alive = np.asarray(p.alive) if p.alive else np.ones(len(idx))
    begin = _rng(seed, 9).random(len(idx)) * (1 - alive) * duration
    offset = np.asarray(p.offset_s).reshape(-1, OFFSET_SIZE) if p.offset_s else None
    for lo in range(0, len(idx), TIMER_CHUNK):  # chunks of timers bound memory
        sl = slice(lo, lo + TIMER_CHUNK)
        rng = _rng(seed, 2_000_000 + lo)
        ph, pe = phase[sl], period[sl]
        first_k = np.ceil((start_s - ph) / pe).astype(np.int64)
        n = np.maximum(np.ceil((start_s + duration - ph) / pe).astype(np.int64) - first_k, 0)
        fid = np.repeat(np.arange(len(ph)), n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first_k, n)
        t = ph[fid] + k * pe[fid] - start_s
        keep = rng.random(len(t)) >= miss[sl][fid]
        if p.alive:
            keep &= (t >= begin[sl][fid]) & (t < begin[sl][fid] + alive[sl][fid] * duration)
        shift = rng.random(len(t))
        jit = jitter[sl][fid]
        t = t + np.where(shift < jit / 2, -model.window_s,
                         np.where(shift < jit, model.window_s, 0.0))
        fid, t = fid[keep], t[keep]
        if offset is not None:  # timers on exact times: each firing off its due time as fitted
            o = offset[sl][fid, (rng.random(len(fid)) * OFFSET_SIZE).astype(np.int64)]
            t = t + np.where(np.isfinite(o), o, 0.0)
        b = batch[sl][fid, (rng.random(len(fid)) * BATCH_SIZE).astype(np.int64)].astype(np.int64)
        fid, t = np.repeat(fid, b), np.repeat(t, b)
        ok = (t >= 0) & (t < duration)
        yield idx[sl][fid[ok]], t[ok]


def _chained_rounds(model: ServerlessModel, duration: float, seed: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Closed loops: per function, durations d_k from its quantile function and idle times
    from its idle table, t_(k+1) = t_k + d_k + idle_k, from a uniform place in a first
    cycle; (function, time, duration) of the invocations in [0, duration), round by round
    of bounded steps (memory bound)."""
    c = model.chained
    if not c.index:
        return
    rng = _rng(seed, 10)
    idx = np.asarray(c.index, dtype=np.int32)
    idle = np.asarray(c.idle_s).reshape(len(idx), IDLE_SIZE)
    s = model.sizes
    probs = np.asarray(s.duration_probs)
    knots = np.asarray(s.duration_s).reshape(model.n_functions, -1)
    cycle = 1 / np.maximum(model.function_rates()[idx] / model.time_scale, 1e-12)
    k = int(np.ceil(duration / max(float(cycle.min()), 1e-3) * 1.5)) + 16
    k = min(k, max(64, CHUNK_CELLS // len(idx)))  # steps per round: bounded memory
    # each row a chain: extended (rarely) until every chain passes the end
    t0 = -rng.random(len(idx)) * cycle
    rows = np.arange(len(idx))
    while rows.size:
        d = np.nan_to_num(sq.pchip(probs, knots, np.repeat(idx[rows], k),
                                   rng.random(rows.size * k)).reshape(rows.size, k))
        gap = d + idle[rows[:, None], (rng.random((rows.size, k)) * IDLE_SIZE).astype(np.int64)]
        t = t0[rows, None] + np.concatenate([np.zeros((rows.size, 1)),
                                             np.cumsum(gap, axis=1)[:, :-1]], axis=1)
        r, j = np.nonzero((t >= 0) & (t < duration))
        yield idx[rows[r]], t[r, j], d[r, j]
        end = t[:, -1] + gap[:, -1]
        t0[rows] = end
        rows = rows[end < duration]


def sample(model: ServerlessModel, duration_s: float, seed: int, start_s: float = 0.0
           ) -> pl.DataFrame:
    """A synthetic ``invocations`` table over ``[0, duration_s)``.

    ``start_s`` is where the sample starts after the fitted trace's zero (the phase of timers
    and harmonics: pass the fitted span to continue the trace). Columns: the canonical
    ``invocations`` schema, sorted by ``arrival_s``; ``trace`` = ``synth/<source>``;
    tenant/app/function/trigger from the model; ``duration_s`` and ``memory_mb`` drawn
    independently from the function's quantile functions (null where unknown). Deterministic
    in ``seed``. The blocks of :func:`sample_blocks`, concatenated.
    """
    blocks = list(sample_blocks(model, duration_s, seed, start_s))
    return pl.concat(blocks) if len(blocks) > 1 else blocks[0]


def sample_blocks(model: ServerlessModel, duration_s: float, seed: int, start_s: float = 0.0
                  ) -> Iterator[pl.DataFrame]:
    """:func:`sample` as consecutive ``invocations`` tables over equal stretches of windows,
    in time order, each expected to hold at most :data:`BLOCK_INVOCATIONS` invocations (by
    the model's mean rate; one block for a small sample): write or reduce a long sample
    without holding it (a 14-day sample of Azure 2019's 50,000 functions is about 150M
    invocations).

    The per-window counts of all functions are drawn first and kept as compact cells
    (int32 function, window, count: 12 bytes per active function-window); each block then
    spreads its windows' invocations, adds the timers' firings, sorts and draws sizes. Every
    block draws from its own seeded stream, so the sample is the same however it is read."""
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"sample: duration_s must be finite and > 0, got {duration_s!r}")
    ts = model.time_scale
    dur_m, start_m = duration_s * ts, start_s * ts  # model time
    w = model.window_s
    n_t = math.ceil(dur_m / w)
    expect = model.mean_rate * duration_s
    n_b = min(max(1, math.ceil(expect / BLOCK_INVOCATIONS) if math.isfinite(expect) else 1), n_t)
    step = -(-n_t // n_b)  # windows per block
    n_b = -(-n_t // step)
    small = np.int16 if n_b < 1 << 15 else np.int64
    # each chunk's cells and firings go to their blocks as drawn (a stable radix sort on the
    # small block number): no second copy of the whole sample's cells
    cells: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(n_b)]
    for f, win, cnt in _modulated_chunks(model, n_t, start_m, seed):
        _to_blocks(cells, (win // step).astype(small), f, win, cnt)
    fires: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(n_b)]
    for f, t in _periodic_chunks(model, dur_m, start_m, seed):
        _to_blocks(fires, np.clip(t // (step * w), 0, n_b - 1).astype(small), f, t)
    loops: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(n_b)]
    for f, t, d in _chained_rounds(model, dur_m, seed):  # with their own durations
        _to_blocks(loops, np.clip(t // (step * w), 0, n_b - 1).astype(small), f, t, d)
    kappa = _function_kappa(model)
    s = model.sizes
    dur_k = np.asarray(s.duration_s).reshape(model.n_functions, -1)
    mem_k = np.asarray(s.memory_mb).reshape(model.n_functions, -1)
    dur_c = sq.pchip_coefficients(np.asarray(s.duration_probs), dur_k)
    mem_c = sq.pchip_coefficients(np.asarray(s.memory_probs), mem_k)
    fn = model.functions
    enums = {c: labels(list(getattr(fn, c)), None, c) for c in ("tenant", "app", "function",
                                                                 "trigger")}
    for b in range(n_b):  # blocks of windows: memory bound
        f_m, win, cb = _joined(cells[b], 3, np.int32)
        f_p, t_p = _joined(fires[b], 2, np.float64)
        f_c, t_c, d_c = _joined(loops[b], 3, np.float64)
        cells[b] = fires[b] = loops[b] = []
        rng = _rng(seed, 3_000_000 + b)
        if np.ndim(kappa) == 0 and kappa == 1.0:
            # Dirichlet(1) spacings are the order statistics of c uniforms: as a set (the
            # block is sorted by time below) c uniform positions, without the spacings
            pos = rng.random(int(cb.sum(dtype=np.int64)))
        else:
            pos = dirichlet_positions(cb, kappa if np.ndim(kappa) == 0 else kappa[f_m], rng)
        t = np.concatenate([(np.repeat(win, cb) + pos) * w, t_p])
        fid = np.concatenate([np.repeat(f_m, cb), f_p.astype(np.int32)])
        del pos
        keep = t < dur_m
        fid, t = fid[keep], t[keep]
        t, fid = _time_order(t / ts if ts != 1.0 else t, fid, model.n_functions)
        if f_c.size:  # closed loops merged in time order, keeping their drawn durations
            t, fid, at = _merge_sorted(t, fid, t_c / ts, f_c.astype(np.int32))
        rng = _rng(seed, 4_000_000 + b)
        dur = sq.pchip(np.asarray(s.duration_probs), dur_k, fid, rng.random(len(fid)),
                       coefficients=dur_c)
        if f_c.size:
            dur[at] = d_c[np.argsort(t_c, kind="stable")]
        mem = sq.pchip(np.asarray(s.memory_probs), mem_k, fid, rng.random(len(fid)),
                       coefficients=mem_c)
        frame = pl.DataFrame({
            "trace": f"synth/{model.source}", "arrival_s": t,
            **{c: v.gather(pl.Series(fid, dtype=pl.UInt32)) for c, v in enums.items()},
            "duration_s": dur, "memory_mb": mem,
        }).with_columns(pl.col("duration_s", "memory_mb").fill_nan(None))
        yield conform("invocations", frame, categorical=True)


def _to_blocks(out: list[list[tuple[np.ndarray, ...]]], block: np.ndarray,
               *arrays: np.ndarray) -> None:
    """Append each block's share of ``arrays`` (in their order) to ``out[block]``."""
    order = np.argsort(block, kind="stable")
    cuts = np.cumsum(np.bincount(block, minlength=len(out)))[:-1]
    for b, part in enumerate(zip(*(np.split(a[order], cuts) for a in arrays), strict=True)):
        if len(part[0]):
            out[b].append(part)


def _joined(parts: list[tuple[np.ndarray, ...]], n: int, dtype: type) -> tuple[np.ndarray, ...]:
    """The block's pieces concatenated (``n`` empty arrays where it has none)."""
    if not parts:
        return (*(np.zeros(0, np.int32) for _ in range(n - 1)), np.zeros(0, dtype))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _merge_sorted(t: np.ndarray, fid: np.ndarray, t_c: np.ndarray, f_c: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted ``t`` (with ``fid``) and unsorted ``t_c`` (with ``f_c``) merged in time order,
    and where each of ``t_c`` sorted landed (its durations go there)."""
    order = np.argsort(t_c, kind="stable")
    t_c, f_c = t_c[order], f_c[order]
    at = np.searchsorted(t, t_c, side="right")
    return np.insert(t, at, t_c), np.insert(fid, at, f_c), at + np.arange(len(at))


def _time_order(t: np.ndarray, fid: np.ndarray, n_f: int) -> tuple[np.ndarray, np.ndarray]:
    """``t`` sorted, with ``fid`` in the same order: one sort of int64 keys packing the time
    (its offset from the block's first, in quanta of span/2^(62 − b)) above the function
    (b bits), instead of an argsort and two gathers. Times are rounded down to the quantum
    (under a nanosecond for a day's block of 65,536 functions); where that would exceed a
    microsecond the times are argsorted as they are."""
    if t.size == 0:
        return t, fid
    bits = max(1, (n_f - 1).bit_length())
    lo = float(t.min())
    span = float(t.max()) - lo
    quanta = float(1 << (62 - bits)) if bits < 52 else 0.0
    res = span / (quanta - 1) if quanta > 1 else math.inf
    if not res <= 1e-6:
        order = np.argsort(t, kind="stable")
        return t[order], fid[order]
    if res == 0.0:
        res = 1.0
    key = ((t - lo) * (1.0 / res)).astype(np.int64)
    key <<= bits
    key |= fid
    key.sort()
    fid = (key & ((1 << bits) - 1)).astype(np.int32)
    key >>= bits
    return lo + key * res, fid


def labels(values: list[str | None], fid: np.ndarray | None, name: str) -> pl.Series:
    """Per-invocation labels as an Enum column (no per-row strings are built; stored as
    strings by :func:`servetrace.loaders.schema.write_parquet`); ``fid`` None: one label per
    function."""
    cats = sorted({v for v in values if v is not None})
    per_function = pl.Series(name, values, pl.Enum(cats))
    return per_function if fid is None else per_function.gather(pl.Series(fid, dtype=pl.UInt32))


