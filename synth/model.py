"""Workload models: :func:`fit` a canonical ``requests`` table, :meth:`WorkloadModel.sample` one.

A :class:`WorkloadModel` is plain data (frozen dataclasses of floats, strings and tuples),
versioned and JSON-serializable, that keeps what the analysis measures, per group:

**Arrivals** (:class:`Arrivals`) — a doubly stochastic (Cox) process sampled by time
rescaling (Brown et al. 2002): unit-mean renewal epochs are mapped through the inverse of
the integrated rate Λ(t) = ∫ λ(u) du, window by window, with

    λ(t) = λ̄ · d(t) · x_⌊t/Δ⌋,    x_i = Q_x(Φ(z_i)),

* ``d(t)``: diurnal/weekly harmonics of ln λ fitted by least squares on hourly counts, only
  when the trace spans at least two periods;
* ``x_i``: the stochastic rate factor of base window ``Δ`` (mean 1): a Gaussian copula
  process. Its marginal ``Q_x`` is the empirical distribution of the trace's windowed rates
  with the renewal's own count noise filtered out: the Wiener smoother under the fitted
  driver's correlation, rescaled to the variance the renewal does not explain
  (:func:`smoothed_factors`), so that the table has the shape of the rate signal (a slow
  ramp's flat top) rather than of the counting noise. Its driver ``z`` is Gaussian with the
  autocovariance of increments of fractional Brownian motion over ``L`` windows
  (:func:`driver_acov`): L = 1 is fractional Gaussian noise of Hurst exponent H (long-range
  dependence, Leland et al. 1994), a larger L a random trend below L windows that is
  stationary beyond; generated exactly by circulant embedding (Davies &
  Harte 1987) and a cumulative sum, its ranks then mapped onto evenly spaced normal scores
  (Iman & Conover 1982: a sample as long as the trace has the table's factors exactly, in
  the driver's order). (H, L) are fitted to the aggregated variances of the
  windowed rates with their exact expected finite-sample values (:func:`fit_driver`): short
  traces are biased by long memory, and the fit accounts for it, so a sample as long as the
  trace disperses like it across window sizes. A dispersion test (:func:`_modulated`) keeps
  a flat rate where the trace shows none (a Poisson trace stays Poisson);
* OFF periods (:class:`OnOff`): gaps longer than ``Δ`` (at least :data:`MIN_OFF` of them)
  are silences the modulation cannot hold; they are cut out, their durations and the ON
  periods between them kept as empirical tables, and put back as an alternating renewal;
* the renewal (burstiness inside a window): gamma or Weibull unit-mean gaps chosen by AIC
  (:func:`servetrace.analysis.fitting.fit_distributions`) on the rescaled gaps, or their empirical
  quantile table when the Kolmogorov–Smirnov distance of the best exceeds the 5 % critical
  value ``1.36/√n``. A renewal process alone has a flat index of dispersion (→ CV², Cox &
  Lewis 1966); the modulation makes it grow with the window as in real traces. Finally the
  trace's inter-arrival CV is matched by simulation (method of simulated moments, McFadden
  1989; :func:`_calibrate_cv`): samples too bursty lift the modulation's low tail (a floor
  on the rate factors, since CV² = (1 + c_r²)·E[1/x] − 1 is set by how low the rate goes),
  leaving the renewal as the rescaled gaps show it — the process inside a state; samples
  not bursty enough raise the renewal's CV.

Timestamps on a grid (Mooncake's 3 s ticks, BurstGPT's whole seconds; :func:`_detect_tick`)
are spread uniformly within their tick before fitting, and sampled times are floored to the
same grid (``tick_s``), so a synthetic trace is compared like for like.

**Lengths** (:class:`Lengths`) — a Gaussian copula (Nelsen 2006) with empirical marginals
(the trace's input and output tokens as equally likely values, :meth:`Table.empirical`:
drawing a marginal is resampling it, Efron 1979, so a sample's lengths are as close to the
trace's as resampled ones) whose correlation ρ = 2 sin(π ρ_S / 6) reproduces the trace's
Spearman ρ_S (Kruskal 1958): input and output are never resampled independently. Input
scores are drawn by Latin hypercube (:func:`_stratified_normal`), so a sample's input
marginal is the fitted one to within 1/:data:`CHUNK`.

**Sessions** (:class:`Sessions`, where ``session`` is filled) — the arrival model describes
session starts; each session draws its turns and its think times (gaps between turns) from
empirical tables; lengths come from a copula per turn index (1, 2, …, the last class pooled),
which carries the growth of input across turns, with a shared per-session component of the
input score (its scores stratified per class, :func:`_even_scores`). Samples start with a
warm-up so that sessions are already under way at time 0; turns are counted from a
session's first request in the sample, as in the trace.

**Prefix sharing** (:class:`Prefix`, where ``hash_ids`` is filled) — a common root prefix
(blocks most requests share, e.g. a system prompt) and conversation chains: a chain's
members share its leading blocks, each member's prompt at least as long as the previous
one's, as Mooncake's 512-token block hashes do (Qin et al., FAST 2025). Chain sizes are an
empirical table, members follow each other at a fitted mean distance in request order, and
lengths come from a copula per position in the chain. ``len(hash_ids) = ⌈input / 512⌉``.

**Mix** — with ``by``, one model per group (tenant, model or log type), superposed; labels
(tenant, model, log type) are drawn from each group's empirical mix.

ServeGen client pools (Xiang et al., NSDI 2026) are built directly by :func:`from_servegen`:
per client, a piecewise rate per 600 s window with that window's Gamma/Weibull inter-arrival
shape, and lengths from the published per-window PMFs.

Sampling is vectorized (NumPy; loops run over groups, windows of a calibration or a handful
of length classes, never over requests) and deterministic: the same model, duration, seed and
rate scale give the same frame.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from scipy import optimize, special, stats

from servetrace.analysis.frames import warn_empty
from servetrace.loaders.schema import conform

VERSION = "2"
"""Version of the model format written; :meth:`WorkloadModel.from_json` reads it and the
versions in :data:`READABLE_VERSIONS`, and refuses others. 2 added :attr:`Table.step`."""
READABLE_VERSIONS = ("1", "2")
"""Format versions :meth:`WorkloadModel.from_json` reads: a version-1 document has no
``step`` tables and loads as it was written (every table interpolated)."""
BLOCK_TOKENS = 512
"""Tokens per prefix block (Mooncake's ``hash_ids``)."""
LADDER_S = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
            3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0)
"""Candidate base windows Δ of the rate modulation."""
WINDOW_COUNT = 30.0
"""Δ is the smallest ladder value holding this many arrivals on average ..."""
MIN_WINDOWS = 16
"""... unless that leaves fewer windows than this in the trace."""
TABLE_SIZE = 1024
"""Quantiles kept per empirical table."""
EMPIRICAL_SIZE = 1 << 15
"""Values kept per exact empirical marginal (:meth:`Table.empirical`): token lengths."""
CHUNK = 1 << 16
"""Values per chunk of the elementwise sampling steps (cache-sized)."""
MIN_GROUP_REQUESTS = 100
"""Groups smaller than this are pooled into one group (key ``None``) when fitting ``by``."""
MIN_OFF = 8
"""Fewest gaps longer than the base window for an ON/OFF layer (:class:`OnOff`)."""
CALIBRATION_EVENTS = 200_000
"""CV calibration: at most this many events per simulated sample ..."""
CALIBRATION_RUNS = 8
"""... this many samples per step (up to 4× for short traces) ..."""
CALIBRATION_STEPS = 6
"""... and at most this many fixed-point steps (:func:`_calibrate_cv`) ..."""
FLOOR_STEPS = 8
"""... or steps of the search for the modulation's floor (:func:`_calibrate_floor`)."""
MAX_LABELS = 1000
"""Label combinations (tenant, model, log type) kept per group, most frequent first."""
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
LABELS = ("tenant", "model", "log_type")
_COLUMNS = ("arrival_s", "input_tokens", "output_tokens", "tenant", "session", "model",
            "log_type", "failed", "hash_ids", "trace")
_SEED_ROOT = 0x5E7ACE  # mixes into every SeedSequence, so streams differ from plain seeds


# ----------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Table:
    """A quantile function as a table: ``values[j]`` at probability ``j / (len - 1)``.

    With ``log`` the interpolation is linear in ln(value) (positive heavy-tailed quantities:
    think times); with ``integer`` samples are rounded to whole numbers. With ``step`` the
    table is an empirical distribution of equally likely values instead (no interpolation:
    Q(u) = ``values[⌊u·len⌋]``, :meth:`empirical`). With ``cdf`` (same
    length as ``values``, ascending to 1) the table is a discrete distribution instead: the
    sorted support ``values`` with P(X ≤ values[j]) = cdf[j], sampled exactly by the inverse
    CDF, Q(u) = the smallest value whose CDF is ≥ u (nothing outside the support, every
    value at its own probability).
    """

    values: tuple[float, ...]
    log: bool = False
    integer: bool = False
    cdf: tuple[float, ...] = ()
    step: bool = False

    @functools.cached_property
    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(self.values, dtype=np.float64)
        if self.log:
            v = np.log(np.maximum(v, 1e-300))
        v = np.concatenate([v, v[-1:]])  # u = 1 lands on the last entry
        return v[:-1], np.diff(v)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantiles at probabilities ``u`` ∈ [0, 1] (linear interpolation between entries;
        the grid is uniform, so the entry is found by arithmetic, not by search). Large
        inputs go through in cache-sized chunks."""
        u = np.asarray(u, dtype=np.float64)
        out = np.empty(u.shape)
        flat_u, flat_out = u.reshape(-1), out.reshape(-1)
        for lo in range(0, len(flat_u), CHUNK):  # chunks of CHUNK values, not requests
            self._ppf_into(flat_u[lo:lo + CHUNK], flat_out[lo:lo + CHUNK])
        return out

    @functools.cached_property
    def _discrete(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.values, dtype=np.float64),
                np.asarray(self.cdf, dtype=np.float64))

    @functools.cached_property
    def _array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def _ppf_into(self, u: np.ndarray, out: np.ndarray) -> None:
        if self.step:  # equally likely values: the index is arithmetic, no search
            v = self._array
            np.multiply(u, len(v), out=out)
            i = out.astype(np.intp)
            np.minimum(i, len(v) - 1, out=i)  # u = 1 lands on the last value
            np.take(v, i, out=out)
            return
        if self.cdf:
            v, c = self._discrete
            i = np.searchsorted(c, u, side="left")
            np.minimum(i, len(v) - 1, out=i)
            np.take(v, i, out=out)
            return
        base, step = self._knots
        np.multiply(u, len(base) - 1, out=out)
        i = out.astype(np.intp)  # u ∈ [0, 1] → i ∈ [0, len − 1]: no clipping needed
        out -= i
        out *= step[i]
        out += base[i]
        if self.log:
            np.exp(out, out=out)
        if self.integer:
            np.rint(out, out=out)

    def mean(self) -> float:
        """Mean of the interpolated quantile function (trapezoid rule over probability);
        Σ v·p of a discrete table."""
        v = np.asarray(self.values, dtype=np.float64)
        if self.step:
            return float(v.mean())
        if self.cdf:
            return float((v * np.diff(np.asarray(self.cdf), prepend=0.0)).sum())
        if len(v) == 1:
            return float(v[0])
        if self.log:
            u = np.linspace(0.0, 1.0, 16 * len(v))
            return float(self.ppf(u).mean())
        return float(((v[1:] + v[:-1]) / 2).mean())

    @staticmethod
    def of(x: np.ndarray, *, log: bool = False, integer: bool = False,
           size: int = TABLE_SIZE) -> Table:
        """The empirical quantile table of ``x`` (at most ``size`` evenly spaced quantiles)."""
        x = np.asarray(x, dtype=np.float64)
        k = int(min(size, max(len(x), 2)))
        q = np.quantile(x, np.linspace(0.0, 1.0, k))
        return Table(tuple(float(v) for v in q), log, integer)

    @staticmethod
    def empirical(x: np.ndarray, *, integer: bool = False, size: int = EMPIRICAL_SIZE
                  ) -> Table:
        """The empirical distribution of ``x`` as a ``step`` table: its sorted values, each
        of probability 1/n, so that sampling it is resampling ``x`` (Efron 1979), ties and
        gaps of a discrete quantity (token counts) kept. Past ``size`` values, the
        inverted-CDF quantiles at (j + ½)/size: still values of ``x``, within 1/size of its
        CDF (Kolmogorov–Smirnov distance), far below the sampling noise of a sample."""
        x = np.sort(np.asarray(x, dtype=np.float64))
        if len(x) == 0:
            return Table((0.0,), integer=integer, step=True)
        if len(x) > size:  # the inverted CDF of the sorted values: x[⌈p·n⌉ − 1]
            p = (np.arange(size) + 0.5) / size
            x = x[np.clip(np.ceil(p * len(x)).astype(np.int64) - 1, 0, len(x) - 1)]
        return Table(tuple(float(v) for v in x), integer=integer, step=True)


@dataclass(frozen=True)
class Renewal:
    """Unit-mean renewal gaps: ``family`` gamma, weibull (``shape``) or empirical (``table``)."""

    family: str
    shape: float = 1.0
    table: Table | None = None
    cv: float = 1.0
    ks: float = 0.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` gaps of mean 1."""
        if self.family == "gamma":
            return rng.gamma(self.shape, 1.0 / self.shape, n)
        if self.family == "weibull":
            return rng.weibull(self.shape, n) / math.gamma(1.0 + 1.0 / self.shape)
        if self.family == "exponential":
            return rng.exponential(1.0, n)
        if self.family == "empirical" and self.table is not None:
            return self.table.ppf(rng.random(n))
        raise ValueError(f"renewal family {self.family!r} is not known")

    def with_cv(self, cv: float) -> Renewal:
        """The same family with coefficient of variation ``cv`` (exponential becomes gamma;
        an empirical table is raised to the power that gives ``cv``, then rescaled to mean 1)."""
        cv = float(min(max(cv, 0.05), 50.0))
        if self.family in ("gamma", "exponential"):
            return Renewal("gamma", shape=1.0 / cv ** 2, cv=cv, ks=self.ks)
        if self.family == "weibull":
            def f(k: float) -> float:
                return math.sqrt(special.gamma(1 + 2 / k) / special.gamma(1 + 1 / k) ** 2 - 1) - cv
            k = optimize.brentq(f, 0.02, 200.0)
            return Renewal("weibull", shape=float(k), cv=cv, ks=self.ks)
        assert self.table is not None
        v = np.asarray(self.table.values)

        def power(p: float) -> np.ndarray:
            w = v ** p
            return w / Table(tuple(w), log=self.table.log).mean()

        def g(p: float) -> float:
            w = power(p)
            t = Table(tuple(w), log=self.table.log)
            u = t.ppf(np.linspace(0.0, 1.0, 8 * len(w)))
            return float(u.std() / u.mean()) - cv

        lo, hi = 0.05, 5.0
        p = optimize.brentq(g, lo, hi) if g(lo) < 0 < g(hi) else (lo if g(lo) >= 0 else hi)
        return Renewal("empirical", table=Table(tuple(float(x) for x in power(p)),
                                                log=self.table.log), cv=cv, ks=self.ks)


@dataclass(frozen=True)
class Harmonic:
    """One term ``a cos(2π k t / period) + b sin(2π k t / period)`` of ln λ(t)."""

    period_s: float
    k: int
    a: float
    b: float


@dataclass(frozen=True)
class OnOff:
    """Silent (OFF) periods between active (ON) periods: an alternating renewal process of
    empirical ON and OFF durations (s); arrivals happen in ON time only, each ON period at a
    rate level drawn from ``levels`` (mean 1)."""

    on_s: Table
    off_s: Table
    levels: Table | None = None

    @property
    def on_fraction(self) -> float:
        on, off = self.on_s.mean(), self.off_s.mean()
        return on / (on + off) if on + off > 0 else 1.0


@dataclass(frozen=True)
class Arrivals:
    """A modulated renewal process (see the module docstring); ``rate`` in events per second.

    The driver (:func:`driver`, Hurst exponent ``hurst``, memory ``memory`` windows) is
    centred on the sample and its realized variance set to its expectation for the sample's
    length relative to ``span_s``, the fitted trace's span: a sample as long as the trace
    spreads its rate factors exactly like the trace's windowed rates (the modulation table is
    their within-trace distribution), a longer one more, a shorter one less. ``tick_s`` > 0
    floors sampled times to that grid; ``phase_s`` is the time of day/week of the sample's
    zero for the harmonics; ``offset`` normalizes them to mean 1; ``off`` an optional ON/OFF
    layer (``rate`` is then the rate in ON time).
    """

    rate: float
    window_s: float
    modulation: Table
    hurst: float
    span_s: float
    renewal: Renewal
    harmonics: tuple[Harmonic, ...] = ()
    offset: float = 0.0
    phase_s: float = 0.0
    tick_s: float = 0.0
    off: OnOff | None = None
    memory: int = 1

    @property
    def mean_rate(self) -> float:
        """Events per second over ON and OFF time (``rate`` counts ON time only)."""
        return self.rate * (self.off.on_fraction if self.off is not None else 1.0)


@dataclass(frozen=True)
class Piecewise:
    """Piecewise-stationary renewal arrivals (ServeGen): per window of ``window_s`` seconds a
    rate (events/s), an inter-arrival family (``Gamma``/``Weibull``/``""`` = Poisson) and its
    shape; the windows repeat cyclically past their end."""

    window_s: float
    rates: tuple[float, ...]
    families: tuple[str, ...]
    shapes: tuple[float, ...]
    tick_s: float = 0.0

    @property
    def mean_rate(self) -> float:
        return float(np.mean(self.rates)) if self.rates else 0.0


@dataclass(frozen=True)
class Lengths:
    """Joint input/output tokens: Gaussian copula of correlation ``rho`` over two tables."""

    input: Table
    output: Table
    rho: float
    spearman: float


@dataclass(frozen=True)
class Sessions:
    """Turns per session, think times (s) between turns, lengths per turn index, the
    within-session correlation of input normal scores, and the warm-up (s) before a sample
    (the 95th percentile of session durations)."""

    turns: Table
    think_s: Table
    by_turn: tuple[Lengths, ...]
    input_rho: float
    warmup_s: float = 0.0


@dataclass(frozen=True)
class Prefix:
    """Prefix blocks: ``root_blocks`` shared by a fraction ``root_share`` of requests, then a
    chain per conversation; chain sizes from ``chain_sizes``, members ``chain_gap`` apart in
    request order (mean, exponential); ``by_position`` the lengths of a chain's 1st, 2nd, …
    member (the last class pooling the rest): prompts grow along a conversation."""

    block_tokens: int
    root_blocks: int
    root_share: float
    chain_sizes: Table
    chain_gap: float
    by_position: tuple[Lengths, ...] = ()


@dataclass(frozen=True)
class Labels:
    """Empirical mix of label combinations; ``columns`` ⊆ tenant, model, log_type."""

    columns: tuple[str, ...]
    values: tuple[tuple[str | None, ...], ...]
    weights: tuple[float, ...]
    tenant_is_session: bool = False


@dataclass(frozen=True)
class Group:
    """One group's model: share of requests, arrivals, lengths and the optional parts."""

    key: str | None
    share: float
    arrivals: Arrivals | Piecewise
    lengths: Lengths
    labels: Labels
    sessions: Sessions | None = None
    prefix: Prefix | None = None
    failed: bool = False
    lengths_by_window: tuple[Lengths, ...] = ()
    lengths_window_s: float = 0.0

    @property
    def request_rate(self) -> float:
        """Mean requests per second (session starts × mean turns where there are sessions;
        turns cut by the end of a sample are not discounted)."""
        turns = self.sessions.turns.mean() if self.sessions is not None else 1.0
        return self.arrivals.mean_rate * turns


@dataclass(frozen=True)
class ScaleRecord:
    """One scaling step applied to a model or a trace (see :mod:`servetrace.synth.scale`)."""

    op: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class WorkloadModel:
    """A fitted workload: groups, provenance, scaling history. Sample with :meth:`sample`."""

    source: str
    by: str | None
    span_s: float
    n_requests: int
    groups: tuple[Group, ...]
    history: tuple[ScaleRecord, ...] = ()
    version: str = VERSION

    @property
    def mean_rate(self) -> float:
        """Mean requests per second of a sample at ``rate_scale`` 1."""
        return float(sum(g.request_rate for g in self.groups))

    def mean_tokens(self) -> tuple[float, float]:
        """Mean input and output tokens per request, weighted by the groups' request rates."""
        rates = np.array([g.request_rate for g in self.groups])
        means = np.array([_mean_tokens(g) for g in self.groups])
        w = rates / rates.sum() if rates.sum() > 0 else np.full(len(rates), 1 / len(rates))
        return float(w @ means[:, 0]), float(w @ means[:, 1])

    def sample(self, duration_s: float, seed: int, rate_scale: float = 1.0) -> pl.DataFrame:
        """A synthetic canonical ``requests`` table over ``[0, duration_s)``.

        ``rate_scale`` multiplies every group's rate (the burst shape in time is kept: the same
        modulation path, renewal shape, ON/OFF durations and think times). Deterministic in
        ``seed``. Columns: the canonical ``requests`` schema, sorted by ``arrival_s``;
        ``trace`` is ``synth/<source>``; ``request_id`` numbers the rows ``"0"``, ``"1"``, …;
        ``tenant``/``model``/``log_type`` from the fitted mix; ``session`` (``"s<k>"``) where
        the model has sessions (and ``tenant`` = ``session`` where the trace had it so);
        ``failed`` = (``output_tokens`` == 0) where the trace had a ``failed`` column;
        ``hash_ids`` where the model has prefix blocks; latencies null. Times are floored to
        the fitted tick (``tick_s``), and time 0 is the fitted trace's first arrival for the
        diurnal phase.
        """
        return sample(self, duration_s, seed, rate_scale)

    def to_json(self) -> str:
        """The model as JSON text (plain objects tagged with their type; no pickles)."""
        return json.dumps(_to_plain(self), allow_nan=False, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> WorkloadModel:
        """The model from :meth:`to_json` text; a version outside
        :data:`READABLE_VERSIONS` is an error. Older documents load as they were written and
        are upgraded to the current ``version`` in memory."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("type") != "WorkloadModel":
            raise ValueError("from_json: not a servetrace WorkloadModel document")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"from_json: model version {data.get('version')!r} is not one "
                             f"of the supported versions {', '.join(READABLE_VERSIONS)}")
        data = {**data, "version": VERSION}
        model = _from_plain(data)
        assert isinstance(model, WorkloadModel)
        return model

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @staticmethod
    def load(path: str | Path) -> WorkloadModel:
        """Read a model written by :meth:`save`."""
        return WorkloadModel.from_json(Path(path).read_text())


_TYPES: dict[str, type] = {c.__name__: c for c in (
    Table, Renewal, Harmonic, OnOff, Arrivals, Piecewise, Lengths, Sessions, Prefix, Labels, Group,
    ScaleRecord, WorkloadModel)}


def _to_plain(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = _to_plain(getattr(obj, f.name))
        return out
    if isinstance(obj, tuple | list):
        if obj and all(type(v) is float for v in obj):  # tables: no recursion per number
            return list(obj)
        return [_to_plain(v) for v in obj]
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _from_plain(data: object) -> object:
    if isinstance(data, dict):
        cls = _TYPES.get(str(data.get("type")))
        if cls is None:
            raise ValueError(f"from_json: unknown object type {data.get('type')!r}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _coerce(_from_plain(data[f.name]), hints[f.name])
        return cls(**kwargs)
    if isinstance(data, list):
        if data and all(type(v) in (float, int) for v in data):
            return tuple(data)
        return tuple(_from_plain(v) for v in data)
    return data


def _coerce(value: object, hint: object) -> object:
    """JSON numbers back to the annotated float/int (1.0 is written as 1.0, but be safe)."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, tuple):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is float and isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return value


# ----------------------------------------------------------------------------- random streams


def _rng(seed: int, *path: int) -> np.random.Generator:
    """An independent generator per (seed, component path): changing one part of a model or
    of the sampling never shifts the random numbers of another."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [_SEED_ROOT, int(seed) & 0xFFFFFFFFFFFFFFFF, *path])))


def fgn(n: int, hurst: float, rng: np.random.Generator) -> np.ndarray:
    """Fractional Gaussian noise, unit variance, by circulant embedding (Davies & Harte 1987).

    Autocovariance γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H}); embedded in a circulant of
    size 2n whose eigenvalues (one FFT) are non-negative for fGn (Craigmile 2003), so the
    sample is exact. One more FFT of complex white noise scaled by √(λ/2n) gives the path.
    """
    if n <= 0:
        return np.zeros(0)
    if n == 1 or abs(hurst - 0.5) < 1e-9:
        return rng.standard_normal(n)
    k = np.arange(n + 1, dtype=np.float64)
    h2 = 2.0 * hurst
    gamma = 0.5 * ((k + 1) ** h2 - 2 * k ** h2 + np.abs(k - 1) ** h2)
    c = np.concatenate([gamma, gamma[-2:0:-1]])
    lam = np.maximum(np.fft.fft(c).real, 0.0)
    m = len(c)
    w = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    return np.fft.fft(np.sqrt(lam / m) * w).real[:n]


def driver_acov(hurst: float, memory: int, lags: int) -> np.ndarray:
    """Autocovariance γ(τ), τ = 0 … ``lags``, of the modulation's Gaussian driver
    z_i = B(i) − B(i − L): increments over ``memory`` = L windows of fractional Brownian motion
    B of Hurst exponent H. γ(τ) = ½(|τ+L|^{2H} + |τ−L|^{2H} − 2|τ|^{2H}) (Mandelbrot & Van
    Ness 1968). L = 1 is fractional Gaussian noise; a larger L behaves like fBm (a random
    trend) on scales below L windows and is stationary beyond them."""
    tau = np.arange(lags + 1, dtype=np.float64)
    h2 = 2.0 * hurst
    return 0.5 * (np.abs(tau + memory) ** h2 + np.abs(tau - memory) ** h2 - 2 * tau ** h2)


def driver(n: int, hurst: float, memory: int, rng: np.random.Generator) -> np.ndarray:
    """A path of the driver of :func:`driver_acov`: cumulative fGn differenced at lag L."""
    if memory <= 1:
        return fgn(n, hurst, rng)
    b = np.concatenate([[0.0], np.cumsum(fgn(n + memory, hurst, rng))])
    return b[memory:memory + n] - b[:n]


def _window_vars(acov: np.ndarray) -> np.ndarray:
    """V_j = Var(mean of j consecutive values), j = 0 … len(acov) − 1 (V_0 unused), of a
    stationary series: V_j = (j γ(0) + 2 Σ_{τ<j} (j − τ) γ(τ)) / j²."""
    n = len(acov) - 1
    j = np.arange(1, n + 1, dtype=np.float64)
    tau = np.arange(n + 1, dtype=np.float64)
    g1 = np.concatenate([[0.0], np.cumsum(acov[1:])])          # Σ_{τ=1}^{i} γ(τ)
    g2 = np.concatenate([[0.0], np.cumsum((tau * acov)[1:])])  # Σ_{τ=1}^{i} τ γ(τ)
    s = j * acov[0] + 2 * (j * g1[:-1] - g2[:-1])
    return np.concatenate([[np.nan], s / j ** 2])


def expected_block_vars(hurst: float, memory: int, n: int, ks: np.ndarray) -> np.ndarray:
    """E[sample variance of the m = ⌊n/k⌋ block means of size k] over n values of the driver:
    m/(m−1) · (V_k − V_{mk}) — the within-sample variances a trace of n windows shows."""
    v = _window_vars(driver_acov(hurst, memory, n))
    ks = np.asarray(ks, dtype=np.int64)
    m = n // ks
    return m / (m - 1) * (v[ks] - v[m * ks])


# ----------------------------------------------------------------------------- fitting helpers


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Φ⁻¹((rank − ½)/n), ties at their mean rank (van der Waerden scores)."""
    r = stats.rankdata(x)
    return special.ndtri((r - 0.5) / len(x))


def _block_vars(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block sizes k (log-spaced, ≥ 4 blocks) and the sample variances of the block means."""
    n = len(x)
    ks = np.unique(np.round(np.logspace(0, math.log10(max(n / 4, 1)), 16)).astype(np.int64))
    out = []
    for k in ks:  # a loop over ≤ 16 block sizes
        m = n // k
        out.append(float(x[: m * k].reshape(m, k).mean(axis=1).var(ddof=1)))
    return ks, np.array(out)


def fit_driver(x: np.ndarray, noise: float = 0.0) -> tuple[float, int, float]:
    """Hurst exponent H, memory L (windows) and signal scale of a windowed rate series
    ``x`` = signal + white noise of variance ``noise``.

    Aggregated-variance method (Taqqu, Teverovsky & Willinger 1995) generalized to the driver
    family of :func:`driver_acov` and made exact for a finite trace: for block sizes k the
    sample variance s²_k of the block means is matched, in log space, to

        S · E_{H,L}[s²_k] + noise / k

    where E is :func:`expected_block_vars` (it includes the downward bias that long-range
    dependence puts on a finite sample's variance, Beran 1994 §2) and S is fixed by k = 1.
    H on a grid over [0.05, 0.98], L over powers of 2 up to twice the series. Returns
    ``(H, L, S)``; ``(0.5, 1, 0)`` when the series holds no variance beyond the noise.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 8:
        return 0.5, 1, 0.0
    ks, sv = _block_vars(x)
    keep = sv > 0
    ks, sv = ks[keep], sv[keep]
    if len(sv) < 3 or sv[0] <= noise * 1.0001 or ks[0] != 1:
        return 0.5, 1, 0.0
    best = (math.inf, 0.5, 1, 0.0)
    memories = [1 << i for i in range(int(math.log2(2 * n)) + 1)]
    for memory in memories:  # ≤ 15 memories × a vectorized-enough grid of H
        for h in np.linspace(0.05, 0.98, 94):
            e = expected_block_vars(float(h), memory, n, ks)
            if not e[0] > 0:
                continue
            signal = (sv[0] - noise) / e[0]
            model = signal * e + noise / ks
            err = float(((np.log(np.maximum(model, 1e-300)) - np.log(sv)) ** 2).sum())
            if err < best[0] - 1e-12:
                best = (err, float(h), memory, float(signal))
    return best[1], best[2], best[3]


def _detect_tick(t: np.ndarray) -> float:
    """The grid the timestamps sit on (s), or 0 when they are continuous.

    The candidate grids are the smallest gap between distinct timestamps divided by 1 … 10
    (a trace with gaps of 2 s and 9 s sits on a 1 s grid); the first that is ≥ 1 ms (within
    2 %: float differences of millisecond stamps read 0.000999999999976) and of
    which every such gap is a whole multiple, within 2 % of the grid, is taken (Mooncake: 3 s
    ticks with ±3 ms jitter; BurstGPT: whole seconds), refined by least squares and rounded
    to the millisecond.
    """
    u = np.unique(t)
    if len(u) < 3:
        return 0.0
    d = np.diff(u)
    q0 = float(np.median(d[d < 1.5 * d.min()]))
    for k in range(1, 11):  # ≤ 10 candidate grids
        q = q0 / k
        if q < 1e-3 * (1 - 0.02):  # 1 ms within the grid's 2 % (0.000999999999976 is 1 ms)
            break
        m = np.maximum(np.rint(d / q), 1.0)
        q = float(d.sum() / m.sum())
        m = np.maximum(np.rint(d / q), 1.0)
        if np.abs(d - m * q).max() <= 0.02 * q:
            return round(q, 3)
    return 0.0


def _pick_window(rate: float, span: float) -> float:
    want = WINDOW_COUNT / rate if rate > 0 else span
    ladder = [w for w in LADDER_S if w <= span / MIN_WINDOWS]
    if not ladder:
        return max(span / MIN_WINDOWS, 1e-3)
    fits = [w for w in ladder if w >= want]
    return fits[0] if fits else ladder[-1]


def _harmonic_design(t: np.ndarray, harmonics: Sequence[tuple[float, int]]) -> np.ndarray:
    cols = []
    for period, k in harmonics:
        ang = 2 * np.pi * k * t / period
        cols += [np.cos(ang), np.sin(ang)]
    return np.stack(cols, axis=1) if cols else np.zeros((len(t), 0))


def _harmonic_value(a: Arrivals, t: np.ndarray) -> np.ndarray:
    if not a.harmonics:
        return np.ones_like(t)
    x = _harmonic_design(t + a.phase_s, [(h.period_s, h.k) for h in a.harmonics])
    coef = np.array([v for h in a.harmonics for v in (h.a, h.b)])
    return np.exp(x @ coef - a.offset)


def _clock(a: Arrivals, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid t_j over [0, duration] (steps of at most 60 s) and D(t_j) = ∫₀^{t_j} d(u) du, the
    deterministic clock of the harmonics (mean rate 1, so D(t) ≈ t over whole periods)."""
    n = max(math.ceil(duration / 60.0), 1)
    grid = np.linspace(0.0, duration, n + 1)
    d = _harmonic_value(a, (grid[:-1] + grid[1:]) / 2)
    return grid, np.concatenate([[0.0], np.cumsum(d * np.diff(grid))])


def _fit_harmonics(t: np.ndarray, span: float, phase: float
                   ) -> tuple[tuple[Harmonic, ...], float]:
    """Diurnal (≥ 2 days) and weekly (≥ 2 weeks) harmonics of ln(hourly count + ½)."""
    terms: list[tuple[float, int]] = []
    if span >= 2 * DAY_S:
        terms += [(DAY_S, k) for k in (1, 2, 3)]
    if span >= 2 * WEEK_S:
        terms += [(WEEK_S, k) for k in (1, 2)]
    if not terms:
        return (), 0.0
    hours = int(span // 3600)
    counts = np.bincount((t // 3600).astype(np.int64), minlength=hours)[:hours]
    mid = (np.arange(hours) + 0.5) * 3600 + phase
    x = _harmonic_design(mid, terms)
    y = np.log(counts + 0.5)
    design = np.column_stack([np.ones(hours), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    harmonics = tuple(Harmonic(p, k, float(coef[1 + 2 * i]), float(coef[2 + 2 * i]))
                      for i, (p, k) in enumerate(terms))
    # normalize: the mean of exp(harmonics) over the longest period is 1
    period = max(p for p, _ in terms)
    grid = np.linspace(0, period, 4096, endpoint=False)
    offset = float(np.log(np.exp(_harmonic_design(grid, terms) @ coef[1:]).mean()))
    return harmonics, offset


def _fit_renewal(u: np.ndarray) -> Renewal:
    """Unit-mean renewal for rescaled gaps ``u`` (see the module docstring)."""
    from servetrace.analysis.fitting import fit_distributions

    u = u[np.isfinite(u) & (u > 0)]
    if len(u) < 20:
        return Renewal("exponential")
    u = u / u.mean()
    cv = float(u.std() / u.mean())
    fits = fit_distributions(u, ("gamma", "weibull"), max_samples=50_000)
    best = fits.row(0, named=True)
    shape = float(json.loads(best["params"])["shape"])
    crit = 1.36 / math.sqrt(best["n"])
    if best["ks"] <= crit:
        return Renewal(best["family"], shape=shape, cv=cv, ks=float(best["ks"]))
    return Renewal("empirical", table=Table.of(u, log=True), cv=cv, ks=float(best["ks"]))


def _rescaled_gaps(t: np.ndarray, rates: np.ndarray, window: float) -> np.ndarray:
    """Gaps of Λ(t_k), Λ piecewise linear with ``rates`` per window (time rescaling)."""
    n_w = len(rates)
    edges_mass = np.concatenate([[0.0], np.cumsum(rates * window)])
    inside = t < n_w * window
    tt = t[inside]
    w = np.minimum((tt // window).astype(np.int64), n_w - 1)
    lam = edges_mass[w] + rates[w] * (tt - w * window)
    return np.diff(lam)


def _split_off(t: np.ndarray, span: float
               ) -> tuple[np.ndarray, float, OnOff | None, np.ndarray | None]:
    """OFF periods: gaps longer than the base window Δ (the modulation cannot hold a rate of 0
    for long); kept when there are at least :data:`MIN_OFF` of them.

    Returns the arrivals in ON time (each OFF gap replaced by the median ON gap), the ON span,
    the :class:`OnOff` (interior ON periods when there are enough, else all) and the level of
    each arrival's ON period. A level is the period's rate over the mean ON rate, shrunk
    toward 1 by √(1 − v/Var) where v is the mean Poisson variance 1/(λ_on · duration) of a
    period's rate estimate: bursts differ in intensity, not only in length."""
    g = np.diff(t)
    tau = _pick_window(len(t) / span, span)
    is_off = g > tau
    if is_off.sum() < MIN_OFF:
        return t, span, None, None
    fill = float(np.median(g[~is_off])) if (~is_off).any() else 0.0
    cut = np.where(is_off, g - fill, 0.0)
    t_on = t - np.concatenate([[0.0], np.cumsum(cut)])
    span_on = span - float(cut.sum())
    ends = t_on[:-1][is_off] + fill / 2
    bounds = np.concatenate([[0.0], ends, [max(span_on, float(ends[-1]))]])
    dur = np.maximum(np.diff(bounds), fill)
    period = np.minimum(np.searchsorted(bounds, t_on, side="right") - 1, len(dur) - 1)
    counts = np.bincount(period, minlength=len(dur)).astype(np.float64)
    rate_on = len(t) / span_on
    level = counts / (dur * rate_on)
    var = float(level.var())
    noise = float(np.mean(1.0 / (rate_on * dur)))
    shrink = math.sqrt(max(0.0, 1.0 - noise / var)) if var > 0 else 0.0
    level = np.maximum(1.0 + shrink * (level - 1.0), 0.05)
    level = level / level.mean()
    on = dur[1:-1] if len(dur) - 2 >= MIN_OFF // 2 else dur
    levels = level[1:-1] if len(dur) - 2 >= MIN_OFF // 2 else level
    return t_on, span_on, OnOff(Table.of(on, log=True), Table.of(g[is_off] - fill, log=True),
                                Table.of(levels / levels.mean())), level[period]


def _modulated(x: np.ndarray, noise: float, alpha: float = 1e-3) -> bool:
    """Whether the windowed rate factors vary more than the renewal noise alone explains:
    the index-of-dispersion test (Cox & Lewis 1966, §6.4; (m−1) s²_k k / noise ~ χ²_{m−1})
    at every block size k with m ≥ 8 blocks, Bonferroni-corrected at level ``alpha``."""
    if len(x) < 8 or not noise > 0:
        return len(x) >= 2 and float(np.var(x)) > 0
    ks, sv = _block_vars(x)
    m = len(x) // ks
    use = m >= 8
    if not use.any():
        return False
    stat = (m[use] - 1) * sv[use] * ks[use] / noise
    crit = stats.chi2.ppf(1 - alpha / use.sum(), m[use] - 1)
    return bool((stat > crit).any())


def smoothed_factors(x: np.ndarray, noise: float, hurst: float, memory: int) -> np.ndarray:
    """The signal part of windowed rate factors ``x`` = s + e, e white noise of variance
    ``noise`` (the renewal's own count noise), for the modulation table.

    ŝ = Σ_s (Σ_s + noise · I)⁻¹ (x − x̄), the Wiener smoother (Wiener 1949) with Σ_s the
    autocovariance of the fitted driver (:func:`driver_acov`, Hurst exponent ``hurst``,
    memory ``memory`` windows) scaled to the signal variance Var x − noise; applied in the
    frequency domain on a zero-padded circulant embedding (O(n log n)). ŝ is then rescaled to
    the signal variance, floored at 0 and normalized to mean 1.

    Shrinking each window on its own toward 1 by √(1 − noise / Var x) gives the right variance
    but keeps the *noise's* shape (Poisson-like counts make it bell-shaped whatever the
    signal); pooling neighbouring windows by the signal's own correlation recovers the
    signal's shape, e.g. the bounded, flat-topped distribution of a slow ramp, whose peaks
    the pointwise table overstates. For a white signal (H = ½, L = 1) the two coincide.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    signal = float(x.var()) - noise
    if n < 2 or not signal > 0:
        return np.ones(n)
    m = 1 << math.ceil(math.log2(2 * n))
    acov = driver_acov(hurst, memory, m // 2)
    acov = acov * (signal / acov[0])
    spectrum = np.maximum(np.fft.rfft(np.concatenate([acov, acov[-2:0:-1]])).real, 0.0)
    y = np.zeros(m)
    y[:n] = x - x.mean()
    s = np.fft.irfft(np.fft.rfft(y) * (spectrum / (spectrum + max(noise, 0.0))), m)[:n]
    sd = float(s.std())
    if not sd > 0:
        return np.ones(n)
    out = np.maximum(1.0 + s * (math.sqrt(signal) / sd), 0.0)
    return out / out.mean()


def fit_arrivals(times: np.ndarray, span_s: float | None = None, *, origin_s: float | None = None,
                 phase_s: float | None = None, tick_s: float | None = None,
                 detect_off: bool = True,
                 calibrate: bool = True, seed: int = 0) -> Arrivals:
    """Fit :class:`Arrivals` to event times (s) of a trace starting at ``origin_s``.

    ``origin_s`` defaults to the first time, ``phase_s`` (the absolute time of ``origin_s``,
    for the diurnal/weekly phase) to ``origin_s``, ``span_s`` to n mean gaps, ``tick_s`` to the
    detected grid (:func:`_detect_tick`). Steps: spreading ticked times uniformly within their
    tick (seeded); OFF periods (:func:`_split_off`, with ``detect_off``); base window Δ from
    :data:`LADDER_S` (≈ :data:`WINDOW_COUNT` events per window, ≥ :data:`MIN_WINDOWS`
    windows); harmonics when the span allows; windowed rate factors x_i (mean 1); the renewal
    fitted to the gaps rescaled by the modulation; x_i shrunk toward 1 by
    s = √(1 − v_noise/Var x), v_noise = CV_r²/(λ̄Δ) being the renewal's own contribution to
    Var x (renewal refitted thrice); the dispersion test (:func:`_modulated`); the driver
    (:func:`fit_driver`); the modulation table from the Wiener-smoothed factors
    (:func:`smoothed_factors`); with ``calibrate``, the renewal's CV (:func:`_calibrate_cv`).
    """
    t = np.sort(np.asarray(times, dtype=np.float64))
    n = len(t)
    if n < 2:
        raise ValueError("fit_arrivals: at least 2 arrivals are needed")
    origin = float(t[0]) if origin_s is None else float(origin_s)
    t = t - origin
    if t[0] < 0:
        raise ValueError("fit_arrivals: an arrival precedes origin_s")
    raw = t.copy()
    tick = _detect_tick(t) if tick_s is None else float(tick_s)
    span = float(span_s) if span_s is not None else float(t[-1] - t[0]) * n / (n - 1)
    if tick > 0:
        t = np.sort(t + _rng(seed, 1).random(n) * tick)
        span = max(span, float(np.floor(t[-1] / tick) + 1) * tick)
    if not span > 0:
        raise ValueError("fit_arrivals: the arrivals span no time (all equal)")
    phase = origin if phase_s is None else float(phase_s)
    harmonics, offset = _fit_harmonics(t, span, phase)
    if harmonics:  # the daily/weekly profile as a change of clock: τ = D(t) = ∫₀ᵗ d(u) du
        proto = Arrivals(1.0, 1.0, Table((1.0,)), 0.5, span, Renewal("exponential"),
                         harmonics, offset, phase, tick)
        grid, clock = _clock(proto, span)
        t = np.interp(t, grid, clock)
        span = float(clock[-1])
    off, level_at = None, None
    if detect_off:
        t, span, off, level_at = _split_off(t, span)
    rate = n / span
    window = _pick_window(rate, span)
    n_w = max(int(span // window), 1)
    det = np.ones(n_w)
    if level_at is not None:  # the ON-period levels act like a known multiplier per window
        mid = np.minimum(np.searchsorted(t, (np.arange(n_w) + 0.5) * window), len(t) - 1)
        det = det * level_at[mid]
    counts = np.bincount(np.minimum((t // window).astype(np.int64), n_w), minlength=n_w + 1)
    counts = counts[:n_w].astype(np.float64)
    x = counts / (rate * window * det)
    x = x / x.mean() if x.mean() > 0 else np.ones(n_w)
    var_x = float(x.var())
    shrink = 1.0
    renewal = Renewal("exponential")
    for _ in range(3):  # renewal ↔ shrinkage, a fixed point in a few steps
        xs = np.maximum(1.0 + shrink * (x - 1.0), 0.0)
        u = _rescaled_gaps(t, rate * det * xs, window)
        renewal = _fit_renewal(u)
        noise = float(np.mean(renewal.cv ** 2 / (rate * window * det)))
        shrink = math.sqrt(max(0.0, 1.0 - noise / var_x)) if var_x > 0 else 1.0
    xs = np.maximum(1.0 + shrink * (x - 1.0), 0.0)
    xs = xs / xs.mean() if xs.mean() > 0 else np.ones(n_w)
    if not _modulated(x, noise):  # no rate variation beyond the renewal's own noise
        shrink, xs = 0.0, np.ones(n_w)
        renewal = _fit_renewal(_rescaled_gaps(t, rate * det, window))
    hurst, memory, _ = fit_driver(x, noise) if n_w >= 8 and shrink > 0 else (0.5, 1, 0.0)
    if n_w >= 8 and shrink > 0:  # the table holds the signal's shape, not the noise's
        xs = smoothed_factors(x, noise, hurst, memory)
    fitted = Arrivals(rate, window, Table.of(xs), hurst, span, renewal, harmonics, offset,
                      phase, tick, off, memory)
    return _calibrate_cv(fitted, raw, seed) if calibrate else fitted


def _sample_cv(a: Arrivals, horizon: float, runs: int, seed: int,
               sessions: Sessions | None = None) -> tuple[float | None, float]:
    """Mean inter-arrival CV and mean count of ``runs`` samples of ``horizon`` seconds
    (seeds fixed by ``seed``: common random numbers across candidates); ``None`` for the CV
    when no sample has three gaps."""
    cvs, counts = [], []
    for r in range(runs):  # more runs for a short trace, whose CV is noisier
        if sessions is None:
            t = _arrival_times(a, horizon, 1.0, _rng(seed, 2, r))
        else:
            t = _session_requests(a, sessions, horizon, 1.0, _rng(seed, 2, r),
                                  _rng(seed, 3, r))[0]
        d = np.diff(t)
        counts.append(len(t))
        if len(d) > 2 and d.mean() > 0:
            cvs.append(d.std() / d.mean())
    return (float(np.mean(cvs)) if cvs else None), float(np.mean(counts))


def floored(table: Table, floor: float) -> Table:
    """The modulation table with every rate factor below ``floor`` raised to it, renormalized
    to mean 1 (see :func:`_calibrate_cv`)."""
    v = np.maximum(np.asarray(table.values, dtype=np.float64), floor)
    mean = Table(tuple(float(x) for x in v)).mean()
    return Table(tuple(float(x) for x in v / mean)) if mean > 0 else table


def _calibrate_cv(a: Arrivals, raw: np.ndarray, seed: int,
                  sessions: Sessions | None = None) -> Arrivals:
    """Match the mean inter-arrival CV of samples as long as the trace (up to
    :data:`CALIBRATION_EVENTS` events each; :data:`CALIBRATION_RUNS` seeds, up to 4× as many
    for short traces; common random numbers) to the trace's own (``raw`` times) — the
    method of simulated moments (McFadden 1989) — by moving the part of the model that the
    CV identifies and nothing else.

    With slow modulation, the gaps of a renewal of CV c_r run at rate λ̄x are a mixture over
    events (weight x) of renewal gaps scaled by 1/(λ̄x), so E[g] = 1/λ̄ and

        CV² = (1 + c_r²) · E[1/x] − 1,

    E over time: the inter-arrival CV is set by the renewal *and the harmonic mean of the
    rate factors*, i.e. by how low the modulation goes. The renewal is identified on its own
    by the time-rescaled gaps inside windows (Brown et al. 2002; :func:`_fit_renewal`), the
    process inside a state; the low tail of the modulation table is the least certain part
    of the fit (windowed counts there are few and noisy, and the smoother's rescaling to the
    signal variance overshoots toward 0, where 1/x diverges). So:

    * samples *too bursty* (CV above the trace's by more than 0.5 %): the modulation's low
      tail is lifted — every factor below a floor φ is raised to φ and the table renormalized
      to mean 1 (:func:`floored`), φ found by regula falsi on [min x, 1] (the sample CV
      falls as φ grows), the renewal left as fitted. On a two-state MMPP (20/s and 2/s, 60 s
      sojourns) raising the renewal's CV instead made it nearly regular (Weibull, CV 0.26)
      though each state is Poisson, and missed the gap distribution;
    * samples *not bursty enough*: the renewal's CV is raised (a few fixed-point steps, the
      factor bounded to [¼, 4]): lower tails that the modulation lacks (rare long silences
      shorter than the OFF threshold) are left to the renewal.

    Where ``a`` models session starts (``sessions`` given), the samples are the sessions'
    requests and only the start rate is corrected, so that the mean number of requests
    matches (sessions are cut by both ends of a trace). The renewal of session starts is left
    as fitted: raising its CV to reach the requests' CV (which a handful of long silences
    decide in a short trace) would clump whole sessions and overshoot the peaks.
    """
    raw = np.sort(raw)
    g = np.diff(raw)
    if len(g) < 10 or not g.mean() > 0:
        return a
    target = float(g.std() / g.mean())
    k = min(len(raw), CALIBRATION_EVENTS)
    horizon = float(raw[k - 1] - raw[0]) * k / max(k - 1, 1)
    if not horizon > 0:
        return a
    runs = min(4 * CALIBRATION_RUNS, max(CALIBRATION_RUNS, CALIBRATION_EVENTS // k))
    if sessions is not None:
        rate = a.rate
        best, best_err = a, math.inf
        for _ in range(CALIBRATION_STEPS):  # ≤ 6 fixed-point steps, each a batch of samples
            cand = dataclasses.replace(a, rate=rate)
            _, count = _sample_cv(cand, horizon, runs, seed, sessions)
            ratio = k / max(count, 1.0)
            err = abs(math.log(ratio))
            if err < best_err:
                best, best_err = cand, err
            if err < 0.005:
                break
            rate = rate * ratio
        return best
    got, _ = _sample_cv(a, horizon, runs, seed)
    if got is None:
        return a
    if math.log(got / target) > 0.005:
        return _calibrate_floor(a, target, horizon, 4 * runs, seed, got)
    base_cv = max(a.renewal.cv, 0.05)
    factor = 1.0
    best, best_err = a, abs(math.log(got / target))
    for _ in range(CALIBRATION_STEPS):  # ≤ 6 fixed-point steps, each a batch of samples
        factor = min(max(factor * target / got, 0.25), 4.0)
        cand = dataclasses.replace(a, renewal=a.renewal.with_cv(base_cv * factor))
        got_c, _ = _sample_cv(cand, horizon, runs, seed)
        if got_c is None:
            break
        got = got_c
        err = abs(math.log(got / target))
        if err < best_err:
            best, best_err = cand, err
        if err < 0.005:
            break
    return best


def _calibrate_floor(a: Arrivals, target: float, horizon: float, runs: int, seed: int,
                     got: float) -> Arrivals:
    """The floor φ of the modulation table (:func:`floored`) whose samples have CV
    ``target`` (``got`` the CV without a floor, above it): the root of
    f(φ) = ln(CV(φ)/target) on [min x, 1] by the Illinois variant of regula falsi (Dowell &
    Jarratt 1971), at most :data:`FLOOR_STEPS` batches of samples (common random numbers,
    so the sample CV is monotone in φ up to the renewal's noise). Called with twice the
    renewal calibration's runs: the CV of a sample with slow windows is noisier (its long
    gaps are few)."""
    def f(phi: float) -> tuple[float | None, Arrivals]:
        cand = dataclasses.replace(a, modulation=floored(a.modulation, phi))
        cv, _ = _sample_cv(cand, horizon, runs, seed)
        return (None if cv is None else math.log(cv / target)), cand

    lo, f_lo = float(min(a.modulation.values)), math.log(got / target)
    hi = 1.0
    f_hi, best = f(hi)
    if f_hi is None:
        return a
    best_err = abs(f_hi)
    if f_hi >= 0:  # even a flat low side is too bursty: the closest the floor gets
        return best
    side = 0
    for _ in range(FLOOR_STEPS - 1):  # each step a batch of samples
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        f_mid, cand = f(mid)
        if f_mid is None:
            break
        if abs(f_mid) < best_err:
            best, best_err = cand, abs(f_mid)
        if best_err < 0.002:
            break
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi /= 2
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if side == -1:
                f_lo /= 2
            side = -1
    return best


# ----------------------------------------------------------------------------- sampling helpers


def _unit_points(renewal: Renewal, total: float, rng: np.random.Generator) -> np.ndarray:
    """Renewal epochs of unit mean rate in [0, total), stationary-ish start (uniform offset)."""
    if total <= 0:
        return np.zeros(0)
    cv = max(renewal.cv, 1.0)
    n = int(total + 6.0 * cv * math.sqrt(total) + 16)
    parts = [renewal.draw(rng, n)]
    parts[0][0] *= rng.random()
    s = np.cumsum(parts[0])
    chunks = [s]
    while chunks[-1][-1] < total:  # rare: top up in chunks, never per event
        more = np.cumsum(renewal.draw(rng, max(n // 4, 16))) + chunks[-1][-1]
        chunks.append(more)
    s = np.concatenate(chunks) if len(chunks) > 1 else s
    return s[: np.searchsorted(s, total)]


def _on_off(off: OnOff, duration: float, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Alternating ON/OFF durations covering ``duration``: ON-time boundaries, the OFF time
    accumulated before each ON period, and the total ON time."""
    cycle = off.on_s.mean() + off.off_s.mean()
    m = int(duration / cycle * 1.5) + 8
    on = off.on_s.ppf(rng.random(m))
    gap = off.off_s.ppf(rng.random(m))
    on[0] *= rng.random()  # the sample starts at a random point of an ON period
    while (on + gap).sum() < duration:  # rare top-up, in chunks
        on = np.concatenate([on, off.on_s.ppf(rng.random(m))])
        gap = np.concatenate([gap, off.off_s.ppf(rng.random(m))])
    ends = np.cumsum(on + gap)
    k = int(np.searchsorted(ends, duration)) + 1
    on, gap = on[:k], gap[:k]
    bounds = np.cumsum(on)
    shift = np.concatenate([[0.0], np.cumsum(gap)])
    return bounds, shift, float(bounds[-1])


def _arrival_times(a: Arrivals, duration: float, rate_scale: float,
                   rng: np.random.Generator,
                   levels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Arrival times in [0, duration): see :class:`Arrivals`; ``levels`` = (ON-period ends,
    their rate levels) multiply the rate of the windows inside each period."""
    if a.harmonics:  # sample on the deterministic clock τ = D(t), then map back to t
        grid, clock = _clock(a, duration)
        tau = _arrival_times(dataclasses.replace(a, harmonics=(), tick_s=0.0),
                             float(clock[-1]), rate_scale, rng, levels)
        t = np.interp(tau, clock, grid)
        t = t[t < duration]
        if a.tick_s > 0:
            t = np.floor(t / a.tick_s) * a.tick_s
        return t
    if a.off is not None:
        bounds, shift, on_total = _on_off(a.off, duration, rng)
        levels = (a.off.levels.ppf(rng.random(len(bounds))) if a.off.levels is not None
                  else None)
        s = _arrival_times(dataclasses.replace(a, off=None, tick_s=0.0), on_total, rate_scale,
                           rng, (bounds, levels) if levels is not None else None)
        t = s + shift[np.searchsorted(bounds, s, side="right")]
        t = t[t < duration]
        if a.tick_s > 0:
            t = np.floor(t / a.tick_s) * a.tick_s
        return t
    n_w = math.ceil(duration / a.window_s) + 1
    span_w = max(int(a.span_s // a.window_s), 2)
    z = driver(n_w, a.hurst, a.memory, rng)
    if n_w > 2 and z.std() > 0:  # realized spread := its expectation for this horizon
        ratio = (expected_block_vars(a.hurst, a.memory, n_w, np.array([1]))[0]
                 / expected_block_vars(a.hurst, a.memory, span_w, np.array([1]))[0])
        # the driver's ranks onto evenly spaced scores: the windows' rate factors are the
        # table's quantiles exactly, so a sample's share of slow windows, which sets its
        # gaps' CV (:func:`_calibrate_cv`), is the fitted one and not a draw of it
        z = _even_scores(z) * math.sqrt(max(float(ratio), 0.0))
    else:
        z = z - z.mean()
    x = a.modulation.ppf(special.ndtr(z))
    edges = np.arange(n_w + 1) * a.window_s
    if levels is not None:
        ends, lv = levels
        x = x * lv[np.minimum(np.searchsorted(ends, edges[:-1] + a.window_s / 2), len(lv) - 1)]
    lam = a.rate * rate_scale * x
    mass = np.concatenate([[0.0], np.cumsum(lam * a.window_s)])
    s = _unit_points(a.renewal, float(mass[-1]), rng)
    # Λ⁻¹ by window: count the (sorted) epochs per window, then invert each window linearly
    per = np.diff(np.searchsorted(s, mass))
    w = np.repeat(np.arange(n_w), per)
    t = edges[w] + (s - mass[w]) / lam[w]
    t = t[t < duration]
    if a.tick_s > 0:
        t = np.floor(t / a.tick_s) * a.tick_s
    return t


def _piecewise_times(p: Piecewise, duration: float, rate_scale: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Per window, renewal epochs with that window's family and shape, then concatenated."""
    n_w = math.ceil(duration / p.window_s)
    idx = np.arange(n_w) % len(p.rates)
    rates = np.asarray(p.rates)[idx] * rate_scale
    fam = np.asarray(p.families)[idx]
    shape = np.asarray(p.shapes)[idx]
    shape = np.where((fam == "") | ~(shape > 0), 1.0, shape)
    mean_n = rates * p.window_s
    cv2 = np.where(fam == "Gamma", 1.0 / shape,
                   np.where(fam == "Weibull",
                            special.gamma(1 + 2 / shape) / special.gamma(1 + 1 / shape) ** 2 - 1,
                            1.0))
    draws = np.where(mean_n > 0,
                     np.ceil(mean_n + 8 * np.sqrt(mean_n * np.maximum(cv2, 1.0)) + 16), 0)
    draws = draws.astype(np.int64)
    total = int(draws.sum())
    win = np.repeat(np.arange(n_w), draws)
    fam_d, shape_d = fam[win], shape[win]
    g = np.empty(total)
    is_g, is_w = fam_d == "Gamma", fam_d == "Weibull"
    is_e = ~(is_g | is_w)
    g[is_g] = rng.gamma(shape_d[is_g], 1.0 / shape_d[is_g])
    g[is_w] = rng.weibull(shape_d[is_w]) / special.gamma(1 + 1 / shape_d[is_w])
    g[is_e] = rng.exponential(1.0, int(is_e.sum()))
    starts = np.concatenate([[0], np.cumsum(draws)[:-1]])
    first = starts[draws > 0]
    g[first] *= rng.random(len(first))
    cs = np.cumsum(g)
    base = np.concatenate([[0.0], cs])[starts]
    local = (cs - base[win]) / np.where(rates[win] > 0, rates[win], 1.0)
    keep = local < p.window_s
    t = win[keep] * p.window_s + local[keep]
    t = np.sort(t[t < duration])
    if p.tick_s > 0:
        t = np.floor(t / p.tick_s) * p.tick_s
    return t


def _tick(a: Arrivals | Piecewise) -> float:
    return a.tick_s


def _times(a: Arrivals | Piecewise, duration: float, rate_scale: float,
           rng: np.random.Generator) -> np.ndarray:
    if isinstance(a, Piecewise):
        return _piecewise_times(a, duration, rate_scale, rng)
    return _arrival_times(a, duration, rate_scale, rng)


def _copula(lengths: Lengths, z_in: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Input and output tokens from input normal scores ``z_in``: z_out = ρ z_in + √(1−ρ²) ε,
    each score mapped through Φ to its quantile table (in cache-sized chunks)."""
    n = len(z_in)
    x_in = np.empty(n, np.int64)
    x_out = np.empty(n, np.int64)
    c = math.sqrt(max(1.0 - lengths.rho ** 2, 0.0))
    buf = np.empty(min(n, CHUNK))
    for lo in range(0, n, CHUNK):  # chunks of CHUNK values, not requests
        z = z_in[lo:lo + CHUNK]
        k = len(z)
        eps = rng.standard_normal(k)
        eps *= c
        eps += lengths.rho * z
        u, o = buf[:k], np.empty(k)
        special.ndtr(z, out=u)
        lengths.input._ppf_into(u, o)
        x_in[lo:lo + k] = o
        special.ndtr(eps, out=u)
        lengths.output._ppf_into(u, o)
        x_out[lo:lo + k] = o
    return x_in, x_out


def _even_scores(z: np.ndarray) -> np.ndarray:
    """Evenly spaced normal scores Φ⁻¹((r + ½)/n) in the rank order r of ``z``.

    The rank-order method of Iman & Conover (1982): the scores keep the ranks, hence the
    rank correlations, of ``z``, and their distribution is the normal one stratified into n
    equal parts (Latin hypercube sampling, McKay, Beckman & Conover 1979). Used where
    a sample's draws are strongly dependent (a session's turns share most of their input
    score, ρ ≈ 0.85 on BurstGPT): independent scores would make a sample's length marginal
    hang on a few hundred session draws, far noisier than the trace's own marginal.
    """
    n = len(z)
    if n == 0:
        return z
    rank = np.empty(n)
    rank[np.argsort(z, kind="stable")] = np.arange(n)
    return special.ndtri((rank + 0.5) / n)


def _stratified_normal(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` standard normal input scores by Latin hypercube sampling (McKay, Beckman &
    Conover 1979): each run of :data:`CHUNK` consecutive requests takes one score in each of
    its CHUNK equally likely strata, in random order (a permutation per chunk: cache-sized,
    so about as fast as drawing the normals; one over all n would be several times slower).

    The requests are exchangeable, so nothing is lost by stratifying them, and a sample's
    input marginal is then the fitted table to within 1/CHUNK, where independent scores (like
    the baselines' resampling) leave it a sampling distance of about 1/√n away. The output
    score keeps its independent part, so the pair stays a Gaussian copula of correlation ρ.
    """
    u = np.empty(n)
    for lo in range(0, n, CHUNK):  # chunks of CHUNK values, not requests
        k = min(CHUNK, n - lo)
        u[lo:lo + k] = rng.permutation(k)
        u[lo:lo + k] += rng.random(k)
        u[lo:lo + k] /= k
    np.clip(u, 1e-16, 1.0 - 1e-16, out=u)  # Φ⁻¹(0) would be −∞
    return special.ndtri(u, out=u)


def _mean_tokens(g: Group) -> tuple[float, float]:
    if g.lengths_by_window:
        m = np.array([(lw.input.mean(), lw.output.mean()) for lw in g.lengths_by_window])
        return float(m[:, 0].mean()), float(m[:, 1].mean())
    return g.lengths.input.mean(), g.lengths.output.mean()


# ----------------------------------------------------------------------------- fit


def _lengths(inp: np.ndarray, out: np.ndarray) -> Lengths:
    if len(inp) >= 3 and np.ptp(inp) > 0 and np.ptp(out) > 0:
        rs = float(stats.spearmanr(inp, out).statistic)
    else:
        rs = 0.0
    rs = 0.0 if not math.isfinite(rs) else rs
    rho = 2.0 * math.sin(math.pi * rs / 6.0)
    return Lengths(Table.empirical(inp, integer=True), Table.empirical(out, integer=True),
                   rho, rs)


def _labels(frame: pl.DataFrame, tenant_is_session: bool) -> Labels:
    cols = tuple(c for c in LABELS if frame[c].null_count() < frame.height
                 and not (c == "tenant" and tenant_is_session))
    if not cols:
        return Labels((), ((),), (1.0,), tenant_is_session)
    mix = (frame.group_by(list(cols)).len().sort(["len", *cols], descending=[True] +
                                                  [False] * len(cols), nulls_last=True)
           .head(MAX_LABELS))
    w = mix["len"].to_numpy().astype(np.float64)
    values = tuple(tuple(r) for r in mix.select(list(cols)).iter_rows())
    return Labels(cols, values, tuple(float(v) for v in w / w.sum()), tenant_is_session)


def _fit_sessions(frame: pl.DataFrame) -> tuple[Sessions, np.ndarray]:
    """Turns per session, think times, lengths per turn index and the within-session
    correlation of input normal scores (requests without a session are sessions of one);
    also the session start times (first request of each session)."""
    s = (frame.with_row_index("_i")
         .with_columns(pl.coalesce(pl.col("session"),
                                   pl.format("_row{}", pl.col("_i"))).alias("_s"))
         .sort("arrival_s", maintain_order=True)
         .with_columns(pl.int_range(pl.len()).over("_s").alias("_turn"),
                       pl.col("arrival_s").diff().over("_s").alias("_think")))
    per = s.group_by("_s").agg(pl.len().alias("n"), pl.col("arrival_s").min().alias("t0"),
                               (pl.col("arrival_s").max() - pl.col("arrival_s").min())
                               .alias("dur"))
    starts = np.sort(per["t0"].to_numpy())
    turns = Table.of(per["n"].to_numpy(), integer=True)
    think = s["_think"].drop_nulls().to_numpy()
    think = think[think > 0]
    think_t = Table.of(think, log=True) if len(think) >= 2 else Table((60.0, 60.0), log=True)
    # lengths per turn index; classes 1..C, the last pooling turns ≥ C, each ≥ 50 requests
    turn = s["_turn"].to_numpy()
    c_max = 1
    for c in range(2, 9):
        if (turn >= c - 1).sum() >= 50:
            c_max = c
    cls = np.minimum(turn, c_max - 1)
    inp, out = s["input_tokens"].to_numpy(), s["output_tokens"].to_numpy()
    by_turn = tuple(_lengths(inp[cls == c], out[cls == c]) for c in range(c_max))
    # within-session correlation of input normal scores between consecutive turns
    z = np.zeros(len(inp))
    for c in range(c_max):  # ≤ 8 classes
        sel = cls == c
        if sel.sum() > 1:
            z[sel] = _normal_scores(inp[sel])
    prev = (s.select(pl.Series("_z", z), "_s").with_columns(
        pl.col("_z").shift(1).over("_s").alias("_p")).drop_nulls())
    rho = float(np.corrcoef(prev["_z"], prev["_p"])[0, 1]) if prev.height > 2 else 0.0
    rho = min(max(rho if math.isfinite(rho) else 0.0, 0.0), 0.99)
    warm = float(per["dur"].quantile(0.95) or 0.0)
    return Sessions(turns, think_t, by_turn, rho, warm), starts


def _fit_prefix(frame: pl.DataFrame, block_tokens: int = BLOCK_TOKENS) -> Prefix | None:
    h = frame.select(pl.col("hash_ids")).with_row_index("_i").filter(
        pl.col("hash_ids").list.len() > 0)
    if h.height < 10:
        return None
    # root blocks: leading blocks shared by the most common first block's requests
    first = h["hash_ids"].list.first()
    top = first.value_counts(sort=True).row(0)
    root_share = top[1] / h.height
    with_root = h.filter(first == top[0])
    # common leading length among root requests: positions where one id covers ≥ 90 %
    root_blocks = 0
    for pos in range(16):  # ≤ 16 leading positions
        col = with_root["hash_ids"].list.get(pos, null_on_oob=True)
        vc = col.drop_nulls().value_counts(sort=True)
        if vc.height == 0 or vc.row(0)[1] < 0.9 * with_root.height:
            break
        root_blocks += 1
    if root_share < 0.5 or root_blocks == 0:
        root_blocks, root_share = 0, 0.0
    chain = h.select("_i", pl.col("hash_ids").list.get(root_blocks, null_on_oob=True)
                     .alias("_c")).filter(pl.col("_c").is_not_null())
    if chain.height < 2:
        return Prefix(block_tokens, root_blocks, root_share, Table((1.0, 1.0), integer=True),
                      1.0)
    sizes = chain.group_by("_c").len()["len"].to_numpy()
    gaps = (chain.sort("_i").with_columns(pl.col("_i").diff().over("_c").alias("_g"))
            ["_g"].drop_nulls().to_numpy())
    gap = float(gaps.mean()) if len(gaps) else 1.0
    # lengths by position within the chain (classes of ≥ 50 requests, at most 8)
    lengths = frame.select("input_tokens", "output_tokens").with_row_index("_i")
    position = (chain.sort("_i").with_columns(pl.int_range(pl.len()).over("_c").alias("_p"))
                .select("_i", "_p"))
    lengths = lengths.join(position, on="_i", how="left").with_columns(
        pl.col("_p").fill_null(0))
    pos = lengths["_p"].to_numpy()
    c_max = 1
    for c in range(2, 9):  # ≤ 8 classes
        if (pos >= c - 1).sum() >= 50:
            c_max = c
    cls = np.minimum(pos, c_max - 1)
    inp, out = lengths["input_tokens"].to_numpy(), lengths["output_tokens"].to_numpy()
    by_position = tuple(_lengths(inp[cls == c], out[cls == c]) for c in range(c_max))
    return Prefix(block_tokens, root_blocks, float(root_share), Table.of(sizes, integer=True),
                  gap, by_position)


def _collect(requests: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(requests, pl.LazyFrame):
        names = requests.collect_schema().names()
        requests = requests.select([c for c in _COLUMNS if c in names]).collect()
    missing = [c for c in ("arrival_s", "input_tokens", "output_tokens")
               if c not in requests.columns]
    if missing:
        raise ValueError(f"fit: requests lacks column {missing[0]!r}")
    frame = requests.select([c for c in _COLUMNS if c in requests.columns])
    for c in ("tenant", "session", "model", "log_type", "trace"):
        frame = frame.with_columns(
            (pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String))
            .alias(c))
    if "failed" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("failed"))
    if "hash_ids" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.List(pl.Int64)).alias("hash_ids"))
    if frame.height and frame["arrival_s"].null_count() == frame.height:
        raise ValueError("fit: the requests have no arrival times (a batch trace): a workload "
                         "model needs arrivals")
    for c in ("arrival_s", "input_tokens", "output_tokens"):
        if frame[c].null_count():
            raise ValueError(f"fit: column {c!r} has nulls")
    if not frame["arrival_s"].is_finite().all():
        raise ValueError("fit: column 'arrival_s' has non-finite values")
    return frame.sort("arrival_s", maintain_order=True)


def _fit_group(frame: pl.DataFrame, key: str | None, share: float, span: float,
               t_origin: float, tick: float, seed: int) -> Group:
    has_sessions = frame["session"].null_count() < frame.height and \
        frame["session"].n_unique() < frame.height
    tenant_is_session = bool(
        frame["session"].null_count() < frame.height
        and frame.filter(pl.col("session").is_not_null())
        .select((pl.col("tenant") == pl.col("session")).all()).item())
    inp = frame["input_tokens"].to_numpy()
    out = frame["output_tokens"].to_numpy()
    lengths = _lengths(inp, out)
    sessions = None
    times = frame["arrival_s"].to_numpy() - t_origin
    if has_sessions:
        sessions, starts = _fit_sessions(frame)
        arrivals = fit_arrivals(starts - t_origin, span, origin_s=0.0, phase_s=t_origin,
                                tick_s=tick,
                                calibrate=False, seed=seed)
        arrivals = _calibrate_cv(arrivals, times, seed, sessions)
    else:
        arrivals = fit_arrivals(times, span, origin_s=0.0, phase_s=t_origin, tick_s=tick,
                                seed=seed)
    prefix = _fit_prefix(frame) if frame["hash_ids"].null_count() < frame.height else None
    failed = bool(frame["failed"].null_count() < frame.height)
    return Group(key, share, arrivals, lengths, _labels(frame, tenant_is_session), sessions,
                 prefix, failed)


def fit(requests: pl.DataFrame | pl.LazyFrame, by: str | None = None, *,
        seed: int = 0) -> WorkloadModel:
    """Fit a :class:`WorkloadModel` to a canonical ``requests`` table.

    ``by``: ``None`` (one group, labels drawn from the trace's mix), ``"tenant"``, ``"model"``
    or ``"log_type"`` (one model per value; values with fewer than
    :data:`MIN_GROUP_REQUESTS` requests are pooled into one group keyed ``None``). ``seed``
    only drives the spreading of ticked timestamps within their tick. Needs ``arrival_s``,
    ``input_tokens``, ``output_tokens``; uses ``tenant``, ``session``, ``model``,
    ``log_type``, ``failed``, ``hash_ids`` where present and filled.
    """
    if by is not None and by not in LABELS:
        raise ValueError(f"fit: by must be None or one of {', '.join(LABELS)}; got {by!r}")
    frame = _collect(requests)
    if frame.height < 20:
        raise ValueError(f"fit: at least 20 requests are needed, got {frame.height}")
    if by is not None:
        warn_empty(requests if by in requests.collect_schema().names() else frame, [by])
    a = frame["arrival_s"].to_numpy()
    n = len(a)
    origin = float(a[0])
    span = float(a[-1] - a[0]) * n / (n - 1)
    tick = _detect_tick(a - origin)
    if tick > 0:
        span = max(span, float(np.floor((a[-1] - origin) / tick) + 1) * tick)
    if not span > 0:
        raise ValueError("fit: column 'arrival_s' spans no time (all arrivals equal)")
    traces = frame["trace"].drop_nulls().unique().sort().to_list()
    source = traces[0] if len(traces) == 1 else ("mixed" if traces else "unknown")
    if by is None:
        parts: list[tuple[str | None, pl.DataFrame]] = [(None, frame)]
    else:
        sizes = frame.group_by(by).len()
        big = sizes.filter((pl.col("len") >= MIN_GROUP_REQUESTS) & pl.col(by).is_not_null())
        keys = sorted(big[by].to_list())
        parts = [(k, frame.filter(pl.col(by) == k)) for k in keys]
        rest = frame.filter(~pl.col(by).is_in(keys) | pl.col(by).is_null())
        if rest.height >= 2:
            parts.append((None, rest))
    groups = tuple(_fit_group(f, k, f.height / n, span, origin, tick, seed) for k, f in parts)
    return WorkloadModel(source, by, span, n, groups)


# ----------------------------------------------------------------------------- sample


def _expand_sessions(sessions: Sessions, starts: np.ndarray, duration: float, tick: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests of sessions starting at ``starts``: turns per session and think times from
    their tables; turns past ``duration`` are cut. Returns times (sorted), session index and
    turn index (0 = first)."""
    k = np.maximum(sessions.turns.ppf(rng.random(len(starts))).astype(np.int64), 1)
    sess = np.repeat(np.arange(len(starts)), k)
    first = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
    turn = np.arange(len(sess)) - first[sess]
    think = np.where(turn > 0, sessions.think_s.ppf(rng.random(len(sess))), 0.0)
    cs = np.cumsum(think)
    t = starts[sess] + cs - cs[first][sess]
    if tick > 0:
        t = np.floor(t / tick) * tick
    keep = t < duration
    t, sess, turn = t[keep], sess[keep], turn[keep]
    order = np.argsort(t, kind="stable")
    return t[order], sess[order], turn[order]


def _session_requests(a: Arrivals | Piecewise, sessions: Sessions, duration: float,
                      rate_scale: float, rng_t: np.random.Generator,
                      rng_s: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Requests of sessions starting in [−warm-up, duration): times, session, turn, and the
    number of sessions drawn. The warm-up (:attr:`Sessions.warmup_s`) fills the sample's
    start with sessions already under way, as in a window cut from a real trace. Turns are
    counted as :func:`_fit_sessions` counts them in a trace: from a session's first request
    inside the window (a session under way at 0 starts at turn 0), so that each request
    draws its lengths from the class it would have been fitted in; counting from the
    session's true start instead gave the warm-up's sessions the later turns' longer
    prompts (BurstGPT sample: mean input 1.3× the trace's)."""
    warm = sessions.warmup_s
    starts = _times(a, duration + warm, rate_scale, rng_t) - warm
    t, sess, turn = _expand_sessions(sessions, starts, duration, _tick(a), rng_s)
    keep = t >= 0
    t, sess, turn = t[keep], sess[keep], turn[keep]
    first = np.full(len(starts), np.iinfo(np.int64).max)
    np.minimum.at(first, sess, turn)
    return t, sess, turn - first[sess], len(starts)


def _sample_group(g: Group, gi: int, duration: float, seed: int, rate_scale: float
                  ) -> dict[str, object]:
    rng_t, rng_l, rng_s, rng_p, rng_lab = (_rng(seed, gi, k) for k in range(5))
    session_idx = None
    if g.sessions is not None:
        t, sess, turn, n_sess = _session_requests(g.arrivals, g.sessions, duration, rate_scale,
                                                  rng_t, rng_s)
        # lengths per turn class, with a shared session component in the input score
        rho = g.sessions.input_rho
        z_sess = rng_l.standard_normal(n_sess)[sess]
        z_in = math.sqrt(rho) * z_sess + math.sqrt(1 - rho) * rng_l.standard_normal(len(t))
        cls = np.minimum(turn, len(g.sessions.by_turn) - 1)
        inp = np.empty(len(t), np.int64)
        out = np.empty(len(t), np.int64)
        for c, lm in enumerate(g.sessions.by_turn):  # ≤ 8 turn classes
            sel = cls == c
            inp[sel], out[sel] = _copula(lm, _even_scores(z_in[sel]), rng_l)
        session_idx = sess
    else:
        t = _times(g.arrivals, duration, rate_scale, rng_t)
        if g.lengths_by_window:
            w = np.minimum((t // g.lengths_window_s).astype(np.int64) %
                           len(g.lengths_by_window), len(g.lengths_by_window) - 1)
            inp = np.empty(len(t), np.int64)
            out = np.empty(len(t), np.int64)
            for j, lm in enumerate(g.lengths_by_window):  # one per PMF window
                sel = w == j
                inp[sel], out[sel] = _copula(lm, _stratified_normal(int(sel.sum()), rng_l),
                                             rng_l)
        else:
            inp, out = _copula(g.lengths, _stratified_normal(len(t), rng_l), rng_l)
    hashes = None
    if g.prefix is not None:
        chain, position = _prefix_chains(g.prefix, len(t), rng_p)
        if g.prefix.by_position and g.sessions is None:
            cls = np.minimum(position, len(g.prefix.by_position) - 1)
            for c, lm in enumerate(g.prefix.by_position):  # ≤ 8 position classes
                sel = cls == c
                inp[sel], out[sel] = _copula(lm, _stratified_normal(int(sel.sum()), rng_p),
                                             rng_p)
        ids, offsets, perm = _prefix_ids(g.prefix, chain, inp, rng_p,
                                         reorder=g.sessions is None)
        inp, out = inp[perm], out[perm]
        hashes = (ids, offsets)
    n = len(t)
    lab = (rng_lab.choice(len(g.labels.weights), size=n, p=np.asarray(g.labels.weights))
           if len(g.labels.weights) > 1 else np.zeros(n, np.int64))
    return {"t": t, "input": inp, "output": out, "labels": lab, "session": session_idx,
            "hash": hashes}


def _prefix_chains(p: Prefix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chain (conversation) and position within it of ``n`` requests in arrival order: chain
    sizes from their table, members at exponential distances (mean ``chain_gap``) in request
    order from a uniform start."""
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mean_size = max(p.chain_sizes.mean(), 1.0)
    m = int(n / mean_size * 1.2) + 16
    sizes = np.maximum(p.chain_sizes.ppf(rng.random(m)).astype(np.int64), 1)
    while sizes.sum() < n:  # rare top-up, in chunks
        sizes = np.concatenate([sizes, np.maximum(
            p.chain_sizes.ppf(rng.random(m)).astype(np.int64), 1)])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    chain = np.repeat(np.arange(len(sizes)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    step = rng.exponential(p.chain_gap, len(chain))
    step[first] = 0.0
    cs = np.cumsum(step)
    at = rng.random(len(sizes))[chain] * n + cs - cs[first][chain]
    chain = chain[np.argsort(at)][:n]
    by_time = np.argsort(chain, kind="stable")
    start = np.searchsorted(chain[by_time], chain[by_time], side="left")
    position = np.empty(n, np.int64)
    position[by_time] = np.arange(n) - start
    return chain, position


def _prefix_ids(p: Prefix, chain: np.ndarray, inp: np.ndarray, rng: np.random.Generator, *,
                reorder: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened hash ids, list offsets and a permutation of the requests' lengths.

    With ``reorder`` the (input, output) pairs of a chain's members are permuted among them
    so that inputs grow along the chain, as a conversation's prompt grows by its history (the
    pairs, hence the joint length distribution, are unchanged). Each member's blocks are the
    root blocks, then the chain's leading blocks: a member shares with the earlier ones as
    many blocks as the longest of them has."""
    n = len(inp)
    nb = np.maximum(-(-inp // p.block_tokens), 0).astype(np.int64)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    perm = np.arange(n)
    if reorder:  # the k-th shortest member of a chain takes the chain's k-th slot in time
        by_time = np.argsort(chain, kind="stable")
        by_len = np.lexsort((nb, chain))
        perm[by_time] = by_len
        nb = nb[perm]
    root = np.where(rng.random(n) < p.root_share, np.minimum(nb, p.root_blocks), 0)
    own = nb - root
    # block ids: roots 0..root_blocks-1, then per chain a range as long as its longest member
    longest = np.zeros(int(chain.max()) + 1, np.int64)
    np.maximum.at(longest, chain, own)
    base = p.root_blocks + np.concatenate([[0], np.cumsum(longest)[:-1]])
    # each request = two runs of consecutive ids: root [0, root) and own [base_c, base_c+own)
    seg_len = np.stack([root, own], axis=1).ravel()
    seg_val = np.stack([np.zeros(n, np.int64), base[chain]], axis=1).ravel()
    nz = seg_len > 0
    seg_len, seg_val = seg_len[nz], seg_val[nz]
    total = int(seg_len.sum())
    # ids = one cumulative sum of steps: +1 inside a run, a jump at each run's start
    steps = np.ones(total, np.int64)
    if total:
        seg_off = np.cumsum(seg_len) - seg_len
        steps[seg_off[0]] = seg_val[0]
        steps[seg_off[1:]] = seg_val[1:] - (seg_val[:-1] + seg_len[:-1] - 1)
    ids = np.cumsum(steps)
    offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)
    return ids, offsets, perm


def sample(model: WorkloadModel, duration_s: float, seed: int, rate_scale: float = 1.0
           ) -> pl.DataFrame:
    """See :meth:`WorkloadModel.sample`."""
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ValueError(f"sample: duration_s must be a positive number, got {duration_s!r}")
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise ValueError(f"sample: rate_scale must be positive, got {rate_scale!r}")
    parts = []
    session_base = 0
    for gi, g in enumerate(model.groups):  # one vectorized pass per group
        s = _sample_group(g, gi, float(duration_s), int(seed), float(rate_scale))
        n = len(s["t"])
        cols: dict[str, object] = {
            "arrival_s": pl.Series("arrival_s", s["t"], pl.Float64),
            "input_tokens": pl.Series("input_tokens", s["input"], pl.Int64),
            "output_tokens": pl.Series("output_tokens", s["output"], pl.Int64),
        }
        lab = np.asarray(s["labels"])
        for j, c in enumerate(g.labels.columns):
            values = pl.Series([v[j] for v in g.labels.values], dtype=pl.String)
            cols[c] = values.gather(lab)
        if s["session"] is not None:
            sess = pl.Series(np.asarray(s["session"]) + session_base).cast(pl.String)
            cols["session"] = "s" + sess
            session_base += int(np.asarray(s["session"]).max()) + 1 if n else 0
            if g.labels.tenant_is_session:
                cols["tenant"] = cols["session"]
        if g.failed:
            cols["failed"] = pl.Series(s["output"] == 0)
        if s["hash"] is not None:
            ids, offsets = s["hash"]
            arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)
                                                    if offsets[-1] < 2**31 else offsets),
                                           pa.array(ids))
            cols["hash_ids"] = pl.Series("hash_ids", arr, pl.List(pl.Int64))
        frame = pl.DataFrame({k: (v if isinstance(v, pl.Series) else pl.Series(k, v))
                              for k, v in cols.items()}) if n else None
        if frame is not None:
            parts.append(frame)
    if parts:
        out = pl.concat(parts, how="diagonal_relaxed")
        if len(parts) > 1:
            out = out.sort("arrival_s", maintain_order=True)
    else:
        out = pl.DataFrame({"arrival_s": pl.Series([], dtype=pl.Float64),
                            "input_tokens": pl.Series([], dtype=pl.Int64),
                            "output_tokens": pl.Series([], dtype=pl.Int64)})
    out = out.with_columns(pl.lit(f"synth/{model.source}").alias("trace"),
                           pl.int_range(pl.len()).cast(pl.String).alias("request_id"))
    return conform("requests", out)


# ----------------------------------------------------------------------------- ServeGen


def _pmf_table(values: np.ndarray, probs: np.ndarray) -> Table:
    """The discrete :class:`Table` of a PMF: its support (values of positive probability,
    ascending, duplicates added up) and cumulative probabilities normalized to end at 1,
    sampled exactly by the inverse CDF (Devroye 1986, *Non-Uniform Random Variate
    Generation*, §III.2)."""
    v = np.asarray(values, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    keep = p > 0
    if not keep.any():
        return Table((0.0, 0.0), integer=True)
    v, inverse = np.unique(v[keep], return_inverse=True)
    p = np.bincount(inverse, weights=p[keep])
    cdf = np.cumsum(p) / p.sum()
    cdf[-1] = 1.0
    return Table(tuple(float(x) for x in v), integer=True, cdf=tuple(float(c) for c in cdf))


def _servegen_lengths(pmfs: pl.DataFrame) -> Lengths:
    """Lengths of one client window from its PMF rows (field, value, prob)."""
    fields = set(pmfs["field"].unique().to_list())

    def table(field: str) -> Table:
        rows = pmfs.filter(pl.col("field") == field)
        return _pmf_table(rows["value"].to_numpy(), rows["prob"].to_numpy())

    inp = table("input_tokens") if "input_tokens" in fields else (
        table("text_tokens") if "text_tokens" in fields else Table((0.0, 0.0), integer=True))
    out = table("output_tokens") if "output_tokens" in fields else \
        Table((0.0, 0.0), integer=True)
    return Lengths(inp, out, 0.0, 0.0)


def _shape_for_cv(families: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """The shape giving coefficient of variation ``cv`` for each window's family (NaN where
    ``cv`` is missing or not positive, or the family is not Gamma/Weibull): gamma 1/cv²;
    Weibull k solving Γ(1 + 2/k)/Γ(1 + 1/k)² − 1 = cv² by bisection on ln k in
    [ln 0.02, ln 100] (the CV falls as k grows), vectorized over windows."""
    cv = np.asarray(cv, dtype=np.float64)
    ok = np.isfinite(cv) & (cv > 0)
    out = np.full(cv.shape, np.nan)
    gam = ok & (families == "Gamma")
    out[gam] = 1.0 / cv[gam] ** 2
    wei = ok & (families == "Weibull")
    target = cv[wei] ** 2
    lo, hi = np.full(target.shape, math.log(0.02)), np.full(target.shape, math.log(100.0))
    for _ in range(60):  # 60 halvings of a bracket of width ln 5000: far below float noise
        mid = (lo + hi) / 2
        k = np.exp(mid)
        cv2 = np.expm1(special.gammaln(1 + 2 / k) - 2 * special.gammaln(1 + 1 / k))
        high = cv2 > target  # CV too high: the shape must grow
        lo, hi = np.where(high, mid, lo), np.where(high, hi, mid)
    out[wei] = np.exp((lo + hi) / 2)
    return out


def from_servegen(client_windows: pl.DataFrame | pl.LazyFrame,
                  length_pmfs: pl.DataFrame | pl.LazyFrame | None = None, *,
                  clients: Sequence[str] | None = None,
                  source: str | None = None, iat: str = "fitted") -> WorkloadModel:
    """A :class:`WorkloadModel` of a ServeGen client pool, built directly from its tables.

    Per client (one group, ``tenant`` = client): :class:`Piecewise` arrivals — the window's
    ``rate``, its ``iat_family`` (Gamma/Weibull, Poisson where null) and ``shape``, windows of
    ``window_s`` repeating past the last — and per PMF window (6 h) input/output lengths
    from ``length_pmfs`` (``input_tokens``, else ``text_tokens``; ``output_tokens``), sampled
    exactly from each PMF (discrete :class:`Table`: inverse CDF over its support).
    ServeGen publishes input and output PMFs separately, with no joint distribution, so the
    copula correlation is 0 here (the only case where they are drawn independently); a
    window whose PMF is empty uses the client's PMF pooled over its windows. ``clients``
    keeps only those; ``source`` names the pool (default: the ``trace`` column, else
    ``servegen``).

    ``iat`` chooses what sets a window's inter-arrival shape, since ServeGen's tables carry
    two figures that disagree (on m-small a Weibull window's fitted shape has a CV of a
    median 0.81 times its published ``cv``): ``"fitted"`` (default, ServeGen's own
    generator) samples the fitted ``shape``; ``"cv"`` keeps the family and solves for the
    shape whose CV is the window's ``cv`` column (gamma: shape = 1/cv²; Weibull:
    Γ(1 + 2/k)/Γ(1 + 1/k)² − 1 = cv²), falling back to the fitted shape where ``cv`` is
    missing.
    Xiang et al., "ServeGen", NSDI 2026.
    """
    if iat not in ("fitted", "cv"):
        raise ValueError(f"from_servegen: iat must be 'fitted' or 'cv', not {iat!r}")
    cw = client_windows.collect() if isinstance(client_windows, pl.LazyFrame) else client_windows
    need = ("client", "window_start_s", "window_s", "rate")
    for c in need:
        if c not in cw.columns:
            raise ValueError(f"from_servegen: client_windows lacks column {c!r}")
    if cw.height == 0:
        raise ValueError("from_servegen: client_windows is empty")
    lp = (length_pmfs.collect() if isinstance(length_pmfs, pl.LazyFrame) else length_pmfs)
    if clients is not None:
        cw = cw.filter(pl.col("client").is_in(list(clients)))
        if cw.height == 0:
            raise ValueError(f"from_servegen: none of the clients {list(clients)[:5]} found")
    for c in ("iat_family", "shape", "cv"):
        if c not in cw.columns:
            cw = cw.with_columns(pl.lit(None, pl.String if c == "iat_family" else pl.Float64)
                                 .alias(c))
    if iat == "cv":
        shape = _shape_for_cv(cw["iat_family"].fill_null("").to_numpy(),
                              cw["cv"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        cw = cw.with_columns(pl.Series("shape", shape).fill_nan(None)
                             .fill_null(cw["shape"].cast(pl.Float64)))
    trace = source or (cw["trace"][0] if "trace" in cw.columns else "servegen")
    cw = cw.sort("client", "window_start_s")
    t0 = float(cw["window_start_s"].min())
    span = float((cw["window_start_s"] + cw["window_s"]).max()) - t0
    expected = cw.group_by("client").agg((pl.col("rate") * pl.col("window_s")).sum()
                                         .alias("n")).sort("client")
    total = float(expected["n"].sum())
    groups = []
    for client, n in expected.iter_rows():  # one group per client
        rows = cw.filter(pl.col("client") == client)
        window = float(rows["window_s"][0])
        # windows on a regular grid from the pool's start (missing ones have rate 0)
        idx = np.rint((rows["window_start_s"].to_numpy() - t0) / window).astype(np.int64)
        n_w = math.ceil(span / window)
        rates = np.zeros(n_w)
        fams = np.full(n_w, "", dtype=object)
        shapes = np.ones(n_w)
        rates[idx] = rows["rate"].to_numpy()
        fams[idx] = rows["iat_family"].fill_null("").to_numpy()
        shapes[idx] = rows["shape"].fill_null(1.0).to_numpy()
        arrivals = Piecewise(window, tuple(float(v) for v in rates),
                             tuple(str(v) for v in fams), tuple(float(v) for v in shapes))
        by_window: tuple[Lengths, ...] = ()
        lw_s = 0.0
        pooled = Lengths(Table((0.0, 0.0), integer=True), Table((0.0, 0.0), integer=True),
                         0.0, 0.0)
        if lp is not None and lp.height:
            mine = lp.filter(pl.col("client") == client)
            if mine.height:
                pooled_rows = (mine.group_by("field", "value").agg(pl.col("prob").sum()))
                pooled = _servegen_lengths(pooled_rows)
                lw_s = float(mine["window_s"][0])
                n_lw = max(math.ceil(span / lw_s), 1)
                starts = np.rint((mine["window_start_s"].to_numpy() - t0) / lw_s)
                mine = mine.with_columns(pl.Series("_w", starts.astype(np.int64)))
                parts = {int(k[0]): f for k, f in mine.partition_by("_w", as_dict=True).items()}
                by_window = tuple(_servegen_lengths(parts[j]) if j in parts else pooled
                                  for j in range(n_lw))
        labels = Labels(("tenant",), ((str(client),),), (1.0,))
        groups.append(Group(str(client), float(n) / total if total > 0 else 0.0, arrivals,
                            pooled, labels, lengths_by_window=by_window,
                            lengths_window_s=lw_s))
    return WorkloadModel(str(trace), "tenant", span, round(total), tuple(groups))
