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
  and the missed-firing probability (Σ(k − 1) over gaps of k·g, over all firings due).
  Timers (``trigger == "timer"``) need :data:`TIMER_SHARE` of their gaps on the grid (g ± 1
  included), other triggers :data:`OTHER_SHARE`, and every timer :data:`MIN_FIRINGS` firings.
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
  simulation (:func:`calibrate_hurst`) to the function's IDC curve and its OFF runs.
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

**Durations and memory** come from each function's percentiles through the monotone cubic
quantile function of :mod:`servetrace.synth.serverless_quantiles` (exact at every percentile);
from per-invocation data the percentiles are first computed at the same probabilities.

Scaling operators (subsets, superposition, time compression, cluster sizing) are in
:mod:`servetrace.synth.serverless_scale`. The model is plain data (frozen dataclasses of
tuples), serialized by :meth:`ServerlessModel.to_json` as strict JSON (unknown figures are
null); :data:`VERSION` is checked on load.
Fitting and sampling are vectorized over all functions (NumPy arrays of shape functions ×
windows, Polars group-bys); the only Python loops run over chunks of functions (memory bound)
or the fixed grid of candidate Hurst exponents.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import optimize

from servetrace.loaders.schema import conform
from servetrace.synth import serverless_quantiles as sq
from servetrace.synth.parameters import ScaleRecord

VERSION = "serverless-1"
"""Version of the serverless model format; :meth:`ServerlessModel.from_json` refuses others."""
BATCH_SIZE = 8
"""Quantiles of the invocations per firing kept per timer."""
TABLE_SIZE = 32
"""Quantiles of the non-zero per-window counts kept per modulated function."""
MIN_FIRINGS = 4
"""Fewest active windows for a periodic fit."""
TIMER_SHARE = 0.75
"""Share of a timer's gaps that must be on its period grid (g or k·g) ..."""
OTHER_SHARE = 0.95
"""... and of any other trigger's."""
COUNT_CV = 0.1
"""Largest CV of a periodic function's count per active window."""
COUNT_IDC = 0.2
"""Largest variance/mean of the count per window of a sub-window timer (Poisson: 1)."""
HURST_GRID = np.round(np.linspace(0.2, 0.99, 17), 3)
"""Candidate Hurst exponents of :func:`calibrate_hurst`."""
GAP_SIZE = 32
"""Quantiles of the gaps between active windows kept per sparse function."""
SPARSE = 0.5
"""Share of empty windows from which a function's activity is a renewal of its gaps."""
OFF_RUNS = (1, 2, 5, 10, 30)
"""OFF-run lengths (windows) whose counts :func:`calibrate_hurst` matches."""
MIN_ACTIVE_H = 2
"""Functions with fewer active windows keep H = 0.5 (nothing to order)."""
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
CHUNK_CELLS = 1 << 24
"""Function × window cells generated per chunk of functions."""
_KEYS = ("tenant", "app", "function")


# ----------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Functions:
    """The function dimension, one entry per function (index = row of every other array)."""

    tenant: tuple[str | None, ...]
    app: tuple[str | None, ...]
    function: tuple[str, ...]
    trigger: tuple[str | None, ...]
    kind: tuple[str, ...]
    """``periodic`` or ``modulated``."""


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
                                / np.asarray(p.period_s))
        m = self.modulated
        if m.index:
            tab = np.asarray(m.table).reshape(len(m.index), TABLE_SIZE)
            active = 1 - np.asarray(m.zero_p)
            if m.gaps:
                g = np.asarray(m.gaps).reshape(len(m.index), GAP_SIZE).mean(axis=1)
                active = np.where(np.isfinite(g), 1 / np.where(np.isfinite(g), g, 1), active)
            r[list(m.index)] = active * tab.mean(axis=1) / self.window_s
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
        if data.get("version") != VERSION:
            raise ValueError(f"from_json: model version {data.get('version')!r} is not the "
                             f"supported version {VERSION!r}")
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
            version=data["version"])

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


# ----------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Grid:
    """A trace as a dense functions × windows count matrix plus its function keys."""

    keys: pl.DataFrame
    """tenant, app, function, trigger; row i is function i."""
    counts: np.ndarray
    origin_s: float
    window_s: float
    times: pl.DataFrame | None = None
    """Per-invocation input only: ``fid``, ``arrival_s`` (from the origin), ``duration_s`` and
    ``memory_mb`` where the table has them."""


def _with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    for c in (*_KEYS, "trigger"):
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(c))
    keep = (pl.Categorical, pl.Enum)  # grouped as integers; keys become strings later
    return frame.with_columns(pl.col(c).cast(pl.String) for c in (*_KEYS, "trigger")
                              if not isinstance(frame.schema[c], keep))


def grid(table: pl.DataFrame | pl.LazyFrame, window_s: float = 60.0) -> Grid:
    """The dense count matrix of an ``invocation_counts`` or ``invocations`` table.

    Counts keep their own window (one ``window_s`` for the whole table, else an error);
    invocations are counted in ``window_s`` windows from the floor of the first arrival.
    """
    frame = _with_keys(table.lazy().collect())
    if frame.height == 0:
        raise ValueError("serverless fit: the table has no rows")
    if "count" in frame.columns and "window_start_s" in frame.columns:
        windows = frame["window_s"].unique()
        if windows.len() != 1:
            raise ValueError(f"serverless fit: invocation_counts mixes window sizes "
                             f"{sorted(windows.to_list())}; fit one window size at a time")
        w = float(windows[0])
        frame = frame.filter(pl.col("count") > 0)
        start = frame["window_start_s"].to_numpy()
        origin = float(start.min())
        m = np.rint((start - origin) / w).astype(np.int64)
        weight = frame["count"].to_numpy()
        times = None
    elif "arrival_s" in frame.columns:
        w = float(window_s)
        t = frame["arrival_s"].to_numpy()
        origin = math.floor(float(t.min()) / w) * w
        m = ((t - origin) // w).astype(np.int64)
        weight = None
        times = frame
    else:
        raise ValueError("serverless fit: need an invocation_counts table (window_start_s, "
                         "window_s, count) or an invocations table (arrival_s)")
    # one hashing pass over the string keys: row lists per function, scattered back
    keys = (frame.select(*_KEYS, "trigger").with_row_index("_r")
            .group_by(list(_KEYS), maintain_order=True)
            .agg(pl.col("trigger").drop_nulls().first(), pl.col("_r")))
    fid = np.empty(frame.height, dtype=np.int64)
    fid[keys["_r"].explode().to_numpy()] = np.repeat(np.arange(keys.height),
                                                     keys["_r"].list.len().to_numpy())
    keys = keys.drop("_r").with_columns(pl.col(*_KEYS, "trigger").cast(pl.String))
    n_t = int(m.max()) + 1
    counts = np.bincount(fid * n_t + m, weights=weight, minlength=keys.height * n_t)
    counts = np.rint(counts).astype(np.int64).reshape(keys.height, n_t)
    if times is not None:
        cols = [pl.Series("fid", fid), (pl.col("arrival_s") - origin).alias("arrival_s")]
        cols += [pl.col(c) for c in ("duration_s", "memory_mb") if c in frame.columns]
        times = frame.select(cols)
    return Grid(keys, counts, origin, w, times)


# ----------------------------------------------------------------------------- periodic


def _segments(counts: np.ndarray) -> pl.DataFrame:
    """Active cells as (fid, m, c, gap to the previous active window of the same function)."""
    f, m = np.nonzero(counts)
    cells = pl.DataFrame({"fid": f, "m": m, "c": counts[f, m]})
    return cells.with_columns(pl.col("m").diff().over("fid").alias("gap"))


def detect_periodic(g: Grid) -> pl.DataFrame:
    """Per function: whether it is periodic, and its fitted timer parameters (module doc).

    Columns: fid, periodic, period_s, window_phase_s, batch, jitter, miss, active.
    """
    cells = _segments(g.counts)
    stats = cells.group_by("fid").agg(
        pl.len().alias("active"), pl.col("gap").drop_nulls().median().alias("g"),
        pl.col("c").median().alias("b"), pl.col("c").mean().alias("c_mean"),
        (pl.col("c").var(ddof=0) / pl.col("c").mean()).fill_null(0.0).alias("c_idc"),
        (pl.col("c").std(ddof=0) / pl.col("c").mean()).fill_null(0.0).alias("c_cv"),
        pl.col("m").min().alias("first"), pl.col("m").max().alias("last"),
        *[pl.col("c").quantile((j + 0.5) / BATCH_SIZE, "nearest").alias(f"q{j}")
          for j in range(BATCH_SIZE)])
    stats = stats.with_columns(pl.col("g").fill_null(1).round().clip(1, None).cast(pl.Int64))
    gaps = cells.drop_nulls("gap").join(stats.select("fid", "g"), on="fid")
    k = pl.col("gap") / pl.col("g")
    gap_stats = gaps.group_by("fid").agg(
        ((pl.col("gap") % pl.col("g")) == 0).mean().alias("on_grid"),
        (((pl.col("gap") - pl.col("g")).abs() == 1) & (pl.col("g") > 1)).mean().alias("jitter"),
        pl.when((pl.col("gap") % pl.col("g")) == 0).then(k - 1).otherwise(0).sum()
        .alias("missed"))
    stats = stats.join(gap_stats, on="fid", how="left").fill_null(0)
    trig = g.keys["trigger"].fill_null("").to_numpy()[stats["fid"].to_numpy()]
    need = np.where(trig == "timer", TIMER_SHARE, OTHER_SHARE)
    share = stats["on_grid"].to_numpy() + stats["jitter"].to_numpy()
    gw = stats["g"].to_numpy().astype(np.float64)
    sub = gw == 1  # fires in every window: b firings per window
    # several firings per window: their count must be steadier than a Poisson count's
    steady = ~sub | ((stats["c_idc"].to_numpy() <= COUNT_IDC)
                     & (stats["c_cv"].to_numpy() <= COUNT_CV))
    periodic = (stats["active"].to_numpy() >= MIN_FIRINGS) & (share >= need) & steady
    c_mean = stats["c_mean"].to_numpy()
    period = np.where(sub, g.window_s / np.maximum(c_mean, 1.0), gw * g.window_s)
    qs = stats.select(f"q{j}" for j in range(BATCH_SIZE)).to_numpy().astype(np.float64)
    batch = np.where(sub[:, None], 1.0, np.maximum(qs, 1.0))
    active = stats["active"].to_numpy()
    missed = stats["missed"].to_numpy().astype(np.float64)
    return pl.DataFrame({
        "fid": stats["fid"], "periodic": periodic, "period_s": period,
        "window_phase_s": (stats["first"].to_numpy() % gw) * g.window_s,
        "batch": batch, "jitter": stats["jitter"].to_numpy().astype(np.float64),
        "miss": missed / np.maximum(active + missed, 1), "active": active,
    }).sort("fid")


def _timer_phase(g: Grid, fids: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Offset of the first firing after the origin, where times resolve it (circular mean of
    arrival mod period, Mardia & Jupp 2000), else NaN."""
    out = np.full(len(fids), np.nan)
    if g.times is None or len(fids) == 0:
        return out
    pos = pl.DataFrame({"fid": fids, "period": period, "j": np.arange(len(fids))})
    t = g.times.join(pos, on="fid")
    ang = 2 * np.pi * (t["arrival_s"].to_numpy() % t["period"].to_numpy()) / t["period"].to_numpy()
    t = t.with_columns(pl.Series("c", np.cos(ang)), pl.Series("s", np.sin(ang)))
    agg = t.group_by("j").agg(pl.col("c").sum(), pl.col("s").sum(), pl.col("period").first())
    phase = (np.arctan2(agg["s"].to_numpy(), agg["c"].to_numpy()) % (2 * np.pi)
             / (2 * np.pi) * agg["period"].to_numpy())
    out[agg["j"].to_numpy()] = phase
    return out


# ----------------------------------------------------------------------------- modulated


def fgn_rows(hurst: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance fractional Gaussian noise, one row per Hurst exponent, by circulant
    embedding (Davies & Harte 1987): γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H})."""
    h = np.asarray(hurst, dtype=np.float64)[:, None]
    k = np.arange(n + 1, dtype=np.float64)[None, :]
    acov = 0.5 * (np.abs(k + 1) ** (2 * h) - 2 * k ** (2 * h) + np.abs(k - 1) ** (2 * h))
    circ = np.concatenate([acov, acov[:, -2:0:-1]], axis=1)
    lam = np.maximum(np.fft.fft(circ, axis=1).real, 0.0)
    m = circ.shape[1]
    w = rng.standard_normal((len(h), m)) + 1j * rng.standard_normal((len(h), m))
    return np.fft.fft(np.sqrt(lam / (2 * m)) * w, axis=1).real[:, :n]


def _harmonic_periods(span_s: float) -> tuple[float, ...]:
    periods: list[float] = []
    if span_s >= 2 * DAY_S:
        periods += [DAY_S, DAY_S / 2]
    if span_s >= 2 * WEEK_S:
        periods.append(WEEK_S)
    return tuple(periods)


def _design(t: np.ndarray, periods: tuple[float, ...]) -> np.ndarray:
    cols = []
    for p in periods:
        cols += [np.cos(2 * np.pi * t / p), np.sin(2 * np.pi * t / p)]
    return np.stack(cols, axis=1)


def fit_harmonics(counts: np.ndarray, window_s: float, origin_s: float,
                  periods: tuple[float, ...]) -> np.ndarray:
    """Least-squares log-harmonic profile per function on hourly counts: ln(c_h + ½) =
    a + Σ_p (α_p cos ωt + β_p sin ωt); returns (F, 2·len(periods)) coefficients."""
    if not periods:
        return np.zeros((counts.shape[0], 0))
    per = max(1, round(3600.0 / window_s))
    n_h = counts.shape[1] // per
    hourly = counts[:, :n_h * per].reshape(counts.shape[0], n_h, per).sum(axis=2)
    t = origin_s + (np.arange(n_h) + 0.5) * per * window_s
    x = np.column_stack([np.ones(n_h), _design(t, periods)])
    coef, *_ = np.linalg.lstsq(x, np.log(hourly.T + 0.5), rcond=None)
    return coef[1:].T


def _profile(coef: np.ndarray, t: np.ndarray, periods: tuple[float, ...]) -> np.ndarray:
    """exp(harmonic part) at times t, (F, len(t)), normalized to mean 1 per function."""
    if not periods:
        return np.ones((coef.shape[0], len(t)))
    d = np.exp(coef @ _design(t, periods).T)
    return d / d.mean(axis=1, keepdims=True)


def _count_tables(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero probability and mean-matched non-zero quantile table per row (module doc)."""
    n_t = x.shape[1]
    nz = x > 0
    n_nz = nz.sum(axis=1)
    zero_p = 1 - n_nz / n_t
    srt = np.sort(np.where(nz, x, np.inf), axis=1)  # non-zero values first, ascending
    probs = (np.arange(TABLE_SIZE) + 0.5) / TABLE_SIZE
    idx = np.minimum((probs[None, :] * n_nz[:, None]).astype(np.int64),
                     np.maximum(n_nz - 1, 0)[:, None])
    table = np.take_along_axis(srt, idx, axis=1)
    table[n_nz == 0] = 0.0
    mean_nz = np.where(n_nz > 0, np.where(nz, x, 0).sum(axis=1) / np.maximum(n_nz, 1), 0.0)
    tmean = table.mean(axis=1)
    table *= np.where(tmean > 0, mean_nz / np.where(tmean > 0, tmean, 1), 1.0)[:, None]
    return zero_p, table


def _gap_tables(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``GAP_SIZE`` quantiles (inverted CDF at (j + ½)/GAP_SIZE) of the gaps, in windows,
    between the active windows of the selected rows, the trace taken as a circle; NaN rows
    elsewhere."""
    out = np.full((counts.shape[0], GAP_SIZE), np.nan)
    if not rows.any():
        return out
    seg = _segments(counts[rows])
    # the trace as a circle: the idle time before the first and after the last active window
    # is one more gap, so the gaps add up to the span and the rate is kept
    wrap = seg.group_by("fid").agg((counts.shape[1] - pl.col("m").max() + pl.col("m").min())
                                   .alias("gap"))
    cells = pl.concat([seg.drop_nulls("gap").select("fid", "gap"),
                       wrap.select("fid", pl.col("gap").cast(seg["gap"].dtype))])
    q = cells.group_by("fid").agg(
        pl.col("gap").quantile((j + 0.5) / GAP_SIZE, "nearest").alias(f"q{j}")
        for j in range(GAP_SIZE))
    sel = np.flatnonzero(rows)
    out[sel[q["fid"].to_numpy()]] = q.select(f"q{j}" for j in range(GAP_SIZE)).to_numpy()
    return out


def _renewal_cells(gaps: np.ndarray, table: np.ndarray, n_t: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Active windows of sparse functions as a renewal of their gap tables (the first one a
    uniform fraction of a drawn gap in; gaps stratified over the table), each with a count
    drawn from the non-zero table: (row, window, count) cells."""
    n = gaps.shape[0]
    k = int(np.ceil(n_t / max(float(np.nanmin(gaps)), 1.0))) + 1
    cycles = -(-k // GAP_SIZE)
    # stratified: every GAP_SIZE draws use each quantile once, in random order, so a sample
    # holds the table's gaps in their proportions (and the rate), not a multinomial of them
    perm = np.argsort(rng.random((n, cycles, GAP_SIZE)), axis=2).reshape(n, -1)[:, :k]
    draw = np.take_along_axis(gaps, perm, axis=1)
    start = np.floor(rng.random(n) * draw[:, 0])
    pos = start[:, None] + np.cumsum(draw, axis=1) - draw[:, :1]
    r, j = np.nonzero(pos < n_t)
    w = pos[r, j].astype(np.int64)
    x = table[r, (rng.random(len(r)) * TABLE_SIZE).astype(np.int64)]
    return r, w, np.maximum(_stochastic_round(x, rng), 1)


# ----------------------------------------------------------------------------- within window


def fit_within(invocations: pl.DataFrame | pl.LazyFrame, window_s: float = 60.0) -> WithinWindow:
    """κ of the Dirichlet within-window spacing from per-invocation times (module doc).

    Windows with at least two invocations of a function give the inner gaps; κ solves the
    moment equation by Brent's method on [10⁻³, 10³]."""
    g = grid(invocations, window_s)
    if g.times is None:
        raise ValueError("fit_within: needs an invocations table (arrival_s)")
    t = g.times.with_columns((pl.col("arrival_s") // window_s).alias("m")).sort("fid", "arrival_s")
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


# ----------------------------------------------------------------------------- sizes


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


# ----------------------------------------------------------------------------- fit


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
    frame = table.lazy().collect()
    g = grid(frame, window_s)
    if functions is not None:
        fx = _with_keys(functions.lazy().collect()).select(*_KEYS, pl.col("trigger").alias("_t"))
        keys = g.keys.join(fx.unique(list(_KEYS), keep="first"), on=list(_KEYS), how="left",
                           nulls_equal=True, maintain_order="left")
        g = dataclasses.replace(g, keys=keys.with_columns(
            pl.coalesce("trigger", "_t").alias("trigger")).drop("_t"))
    det = detect_periodic(g)
    n_f, n_t = g.counts.shape
    per = np.zeros(n_f, dtype=bool)
    per[det["fid"].to_numpy()] = det["periodic"].to_numpy()
    pdet = det.filter(pl.col("periodic"))
    pf = pdet["fid"].to_numpy()
    phase = _timer_phase(g, pf, pdet["period_s"].to_numpy())
    periodic = Periodic(
        index=tuple(int(i) for i in pf), period_s=tuple(pdet["period_s"].to_list()),
        phase_s=tuple(float(x) for x in phase),
        window_phase_s=tuple(pdet["window_phase_s"].to_list()),
        batch=tuple(float(b) for b in np.vstack(pdet["batch"].to_list() or
                                                   [np.zeros((0, BATCH_SIZE))]).ravel()),
        jitter=tuple(pdet["jitter"].to_list()), miss=tuple(pdet["miss"].to_list()))
    mf = np.flatnonzero(~per)
    span = n_t * g.window_s
    periods = _harmonic_periods(span)
    x = g.counts[mf].astype(np.float64)
    coef = fit_harmonics(x, g.window_s, 0.0, periods)
    if periods:
        x = x / _profile(coef, (np.arange(n_t) + 0.5) * g.window_s, periods)
    zero_p, table_ = _count_tables(x)
    active = (g.counts[mf] > 0).sum(axis=1)
    sparse = (zero_p >= SPARSE) & (active >= 3)
    gaps = _gap_tables(g.counts[mf], sparse)
    busy = (active >= MIN_ACTIVE_H) & ~sparse
    hurst = np.full(len(mf), 0.5)
    if busy.any():
        hurst[busy] = calibrate_hurst(x[busy], zero_p[busy], table_[busy])
    modulated = Modulated(
        index=tuple(int(i) for i in mf), zero_p=tuple(float(z) for z in zero_p),
        table=tuple(float(v) for v in table_.ravel()), hurst=tuple(float(h) for h in hurst),
        harmonic_periods_s=periods, harmonics=tuple(float(v) for v in coef.ravel()),
        gaps=tuple(float(v) for v in gaps.ravel()))
    if within is None:
        within = fit_within(frame, window_s) if g.times is not None else WithinWindow()
    dur = _knots(functions, g, sq.DURATION_COLUMNS, sq.DURATION_PROBS, "duration_s")
    mem = _knots(functions, g, sq.MEMORY_COLUMNS, sq.MEMORY_PROBS, "memory_mb")
    keys = g.keys
    src = source or (str(frame["trace"].drop_nulls().first()) if "trace" in frame.columns
                     and frame["trace"].drop_nulls().len() else "trace")
    return ServerlessModel(
        source=src, span_s=span, window_s=g.window_s,
        functions=Functions(
            tenant=tuple(keys["tenant"].to_list()), app=tuple(keys["app"].to_list()),
            function=tuple(keys["function"].to_list()), trigger=tuple(keys["trigger"].to_list()),
            kind=tuple("periodic" if p else "modulated" for p in per)),
        periodic=periodic, modulated=modulated, within=within,
        sizes=Sizes(sq.DURATION_PROBS, tuple(float(v) for v in dur.ravel()),
                    sq.MEMORY_PROBS, tuple(float(v) for v in mem.ravel())),
        n_invocations=int(g.counts.sum()))


# ----------------------------------------------------------------------------- sampling


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([0x5E7F11, seed, part])))


def _stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fl = np.floor(x)
    return (fl + (rng.random(x.shape) < (x - fl))).astype(np.int64)


def _modulated_counts(model: ServerlessModel, n_t: int, start_s: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero (function, window, count) cells of the modulated functions."""
    m = model.modulated
    n = len(m.index)
    if n == 0 or n_t == 0:
        return (np.zeros(0, np.int64),) * 3
    table = np.asarray(m.table).reshape(n, TABLE_SIZE)
    zero_p, hurst = np.asarray(m.zero_p), np.asarray(m.hurst)
    periods = tuple(m.harmonic_periods_s)
    coef = np.asarray(m.harmonics).reshape(n, 2 * len(periods))
    t_mid = start_s + (np.arange(n_t) + 0.5) * model.window_s
    gaps = (np.asarray(m.gaps).reshape(n, GAP_SIZE) if m.gaps
            else np.full((n, GAP_SIZE), np.nan))
    sparse = np.isfinite(gaps[:, 0])
    rows = max(1, CHUNK_CELLS // max(2 * n_t, 1))
    fs, ws, cs = [], [], []
    for lo in range(0, n, rows):  # chunks of functions bound memory
        sl = slice(lo, min(n, lo + rows))
        rng = _rng(seed, 1_000_000 + lo)
        sp = np.flatnonzero(sparse[sl])
        if sp.size:
            r, w, c = _renewal_cells(gaps[sl][sp], table[sl][sp], n_t, rng)
            fs.append(sp[r] + lo)
            ws.append(w)
            cs.append(c)
        x = _scores_to_counts(fgn_rows(hurst[sl], n_t, rng), zero_p[sl], table[sl])
        if periods:
            x = x * _profile(coef[sl], t_mid, periods)
        # an active window stays active: rounding never turns a non-zero count into 0
        c = np.where(x > 0, np.maximum(_stochastic_round(x, rng), 1), 0)
        c[sp] = 0  # sparse rows come from their renewal above
        f, w = np.nonzero(c)
        fs.append(f + lo)
        ws.append(w)
        cs.append(c[f, w])
    f, w, c = np.concatenate(fs), np.concatenate(ws), np.concatenate(cs)
    return np.asarray(m.index, dtype=np.int64)[f], w, c


def _scores_to_counts(z: np.ndarray, zero_p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rank-matched copula (module doc): row-wise ranks of ``z`` through the zero share and
    the non-zero table, as real-valued counts (rounded later)."""
    n_t = z.shape[1]
    # rank-matched: each sampled path visits the fitted marginal exactly
    u = (np.argsort(np.argsort(z, axis=1), axis=1) + 0.5) / n_t
    zp = zero_p[:, None]
    v = np.clip((u - zp) / np.maximum(1 - zp, 1e-12), 0, 1 - 1e-12)
    k = (v * TABLE_SIZE).astype(np.int64)
    return np.where(u < zp, 0.0, np.take_along_axis(table, k, axis=1))


def _log_idc(x: np.ndarray) -> np.ndarray:
    """ln IDC of row-wise block sums over 1, 2, 4, … windows (at least 8 blocks)."""
    n_f, n_t = x.shape
    out = []
    m = 1
    while n_t // m >= 8:
        k = n_t // m
        b = x[:, :k * m].reshape(n_f, k, m).sum(axis=2)
        mu = b.mean(axis=1)
        out.append(np.log(np.maximum(b.var(axis=1), 1e-12) / np.maximum(mu, 1e-12)))
        m *= 2
    return np.stack(out, axis=1) if out else np.zeros((n_f, 0))


def calibrate_hurst(x: np.ndarray, zero_p: np.ndarray, table: np.ndarray, seed: int = 0,
                    grid: np.ndarray = HURST_GRID, replicas: int = 3) -> np.ndarray:
    """H per function by simulated moments (McFadden 1989): for each H of ``grid``, rank-matched
    samples as long as the trace are drawn for all functions at once, and each function keeps
    the H whose mean ln IDC over block sizes 1, 2, 4, … windows and ln(1 + number of OFF runs
    of at least :data:`OFF_RUNS` windows) are closest (least squares) to the trace's. Counts
    carry the trend that rank scores flatten, so their IDC curve decides, and the OFF runs say
    how a sparse function's active windows cluster or spread (the idle times a keep-alive
    policy sees)."""
    n_f, n_t = x.shape
    target = _log_idc(x)
    if target.shape[1] < 2 or n_f == 0:
        return np.full(n_f, 0.5)
    target_runs = np.log1p(_runs(x))
    loss = np.empty((len(grid), n_f))
    rng = _rng(seed, 7)
    for i, h in enumerate(grid):  # a fixed grid of a dozen values, not functions
        sims = [_scores_to_counts(fgn_rows(np.full(n_f, h), n_t, rng), zero_p, table)
                for _ in range(replicas)]
        idc = np.mean([_log_idc(c) for c in sims], axis=0)
        runs = np.log1p(np.mean([_runs(c) for c in sims], axis=0))
        loss[i] = ((idc - target) ** 2).sum(axis=1) + ((runs - target_runs) ** 2).sum(axis=1)
    return np.asarray(grid)[np.argmin(loss, axis=0)]


def _runs(x: np.ndarray) -> np.ndarray:
    """Per row, the number of OFF runs (maximal stretches of empty windows between active
    ones, the idle times a keep-alive policy sees) at least 1, 2, 5, 10 and 30 windows
    long: (rows, 5)."""
    off = np.zeros((x.shape[0], x.shape[1] + 2), dtype=np.int8)
    off[:, 1:-1] = x == 0
    d = np.diff(off, axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)  # same rows, same order: each start has its end
    length = ce - cs
    inner = (cs > 0) & (ce < x.shape[1])  # before the first / after the last call: no idle
    out = np.zeros((x.shape[0], len(OFF_RUNS)))
    for j, k in enumerate(OFF_RUNS):  # five thresholds
        out[:, j] = np.bincount(rs, weights=(inner & (length >= k)).astype(np.float64),
                                minlength=x.shape[0])
    return out


def dirichlet_positions(counts: np.ndarray, kappa: float, rng: np.random.Generator
                        ) -> np.ndarray:
    """Positions in [0, 1) of ``counts[j]`` points per window: the first c of c + 1
    Dirichlet(κ) spacings' partial sums; concatenated window by window."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0)
    seg = counts + 1
    g = rng.gamma(kappa, 1.0, int(seg.sum()))
    cs = np.cumsum(g)
    ends = np.cumsum(seg) - 1
    starts = ends - seg + 1
    base = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
    tot = cs[ends] - base
    keep = np.ones(len(g), dtype=bool)
    keep[ends] = False
    win = np.repeat(np.arange(len(counts)), seg)[keep]
    return np.minimum((cs[keep] - base[win]) / tot[win], np.nextafter(1.0, 0.0))


def _periodic_times(model: ServerlessModel, duration: float, start_s: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    p = model.periodic
    if not p.index:
        return np.zeros(0, np.int64), np.zeros(0)
    rng = _rng(seed, 2)
    idx = np.asarray(p.index, dtype=np.int64)
    period = np.asarray(p.period_s)
    phase = np.asarray(p.phase_s)
    inside = np.minimum(period, model.window_s)
    unknown = np.isnan(phase)
    # offset inside the window: fixed per function (a timer fires at the same second)
    phase = np.where(unknown, np.asarray(p.window_phase_s) + rng.random(len(idx)) * inside,
                     phase)
    first_k = np.ceil((start_s - phase) / period).astype(np.int64)
    n = np.maximum(np.ceil((start_s + duration - phase) / period).astype(np.int64) - first_k, 0)
    fid = np.repeat(np.arange(len(idx)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first_k, n)
    t = phase[fid] + k * period[fid] - start_s
    keep = rng.random(len(t)) >= np.asarray(p.miss)[fid]
    shift = rng.random(len(t))
    jit = np.asarray(p.jitter)[fid]
    t = t + np.where(shift < jit / 2, -model.window_s,
                     np.where(shift < jit, model.window_s, 0.0))
    fid, t = fid[keep], t[keep]
    table = np.asarray(p.batch).reshape(-1, BATCH_SIZE)
    b = table[fid, (rng.random(len(fid)) * BATCH_SIZE).astype(np.int64)].astype(np.int64)
    fid, t = np.repeat(fid, b), np.repeat(t, b)
    ok = (t >= 0) & (t < duration)
    return idx[fid[ok]], t[ok]


def sample(model: ServerlessModel, duration_s: float, seed: int, start_s: float = 0.0
           ) -> pl.DataFrame:
    """A synthetic ``invocations`` table over ``[0, duration_s)``.

    ``start_s`` is where the sample starts after the fitted trace's zero (the phase of timers
    and harmonics: pass the fitted span to continue the trace). Columns: the canonical
    ``invocations`` schema, sorted by ``arrival_s``; ``trace`` = ``synth/<source>``;
    tenant/app/function/trigger from the model; ``duration_s`` and ``memory_mb`` drawn
    independently from the function's quantile functions (null where unknown). Deterministic
    in ``seed``.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"sample: duration_s must be finite and > 0, got {duration_s!r}")
    ts = model.time_scale
    dur_m, start_m = duration_s * ts, start_s * ts  # model time
    w = model.window_s
    n_t = math.ceil(dur_m / w)
    f_m, win, cnt = _modulated_counts(model, n_t, start_m, seed)
    pos = dirichlet_positions(cnt, model.within.kappa, _rng(seed, 3))
    t_m = (np.repeat(win, cnt) + pos) * w
    f_m = np.repeat(f_m, cnt)
    f_p, t_p = _periodic_times(model, dur_m, start_m, seed)
    fid = np.concatenate([f_m, f_p])
    t = np.concatenate([t_m, t_p])
    keep = t < dur_m
    fid, t = fid[keep], t[keep] / ts
    order = np.argsort(t, kind="stable")
    fid, t = fid[order], t[order]
    rng = _rng(seed, 4)
    s = model.sizes
    dur = sq.pchip(np.asarray(s.duration_probs),
                   np.asarray(s.duration_s).reshape(model.n_functions, -1), fid,
                   rng.random(len(fid)))
    mem = sq.pchip(np.asarray(s.memory_probs),
                   np.asarray(s.memory_mb).reshape(model.n_functions, -1), fid,
                   rng.random(len(fid)))
    fn = model.functions
    frame = pl.DataFrame({
        "trace": f"synth/{model.source}", "arrival_s": t,
        **{c: labels(list(getattr(fn, c)), fid, c) for c in ("tenant", "app", "function",
                                                            "trigger")},
        "duration_s": dur, "memory_mb": mem,
    }).with_columns(pl.col("duration_s", "memory_mb").fill_nan(None))
    return conform("invocations", frame, categorical=True)


def labels(values: list[str | None], fid: np.ndarray, name: str) -> pl.Series:
    """Per-invocation labels as an Enum column (no per-row strings are built; stored as
    strings by :func:`servetrace.loaders.schema.write_parquet`)."""
    cats = sorted({v for v in values if v is not None})
    return pl.Series(name, values, pl.Enum(cats)).gather(pl.Series(fid, dtype=pl.UInt32))
