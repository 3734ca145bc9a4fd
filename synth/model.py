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

**Sessions** (:class:`Sessions`, where ``session`` is filled) — turn DAGs. The arrival
model describes session starts (the Cox process above; where every session starts at once,
as in WEKA's release where each conversation starts at its own zero, samples start theirs
at once too, :attr:`Sessions.together`, rather than invent a start process); each session
draws its turns from an empirical table; by turn class (2, 3, …, the last pooled) the
client's think time and the server's time on the previous turn, a turn starting
``server + think`` after the previous one (where the trace has ``think_s``/``server_s``;
otherwise the gaps between turns); the request-type mix by turn class; lengths from a
copula per turn index (1, 2, …, the last class pooled) with a shared per-session component
of the input score (its scores stratified per class, :func:`_even_scores`), or, with
prefix blocks, by context growth along the chain (below). **Sub-agents**
(:class:`SubAgents`, from ``subagent``/``parent_request_id``): a turn launches sub-agents
with a fitted probability, a fan-out and a turn count from empirical tables, nested down to
the deepest level seen; their requests are children of their launcher in the DAG, with
their own chain opening on a root the session's sub-agents share. Samples start with a
warm-up so that sessions are already under way at time 0; turns are counted from a
session's first request in the sample, as in the trace. Format-3 samples carry ``turn``,
``parent_request_id``, ``subagent``, ``agent_depth``, ``request_type``, ``think_s`` and
``server_s``.

**Prefix sharing** (:class:`Prefix`, where ``hash_ids`` is filled) — the structure of
prompt reuse, as block hashes show it (Mooncake's 512-token blocks, Qin et al., FAST 2025;
WEKA's agentic traces, 64-token full blocks; the trace's ``hash_block_tokens`` and
``hash_scope`` are passed to :func:`fit`, or the block size is read from the lengths):

* **roots** shared across chains (system and tool prompts): the most common first blocks of
  chains' first requests, each with the run of blocks ≥ 90 % of its chains share and its
  popularity (share of chains); only where ids are global (``session`` scope ids say
  nothing across sessions);
* **the chain**: a session's agent (or, without sessions, a conversation read from the
  first block after the root, with its size and member distances in request order as
  empirical tables): each member's hash ids are the previous member's minus its last
  ``dropped`` blocks, then new ones. Per position class a copula (as for lengths) of the
  input tokens appended to the previous member's (context growth; negative where a context
  is compacted) and of ``dropped``;
* **new blocks**: fresh integers per sample, so no two chains share a block unless a root
  says so; ``len(hash_ids) = ⌈input / block⌉`` (``⌊⌋`` where the trace keeps full blocks).

A chain's first input comes from the first turn's copula; each later one adds its growth,
and the inputs of each log-spaced position class (1, 2, 3, 4, 5–8, 9–16, …) are then
mapped, in the ranks the chains gave, onto the class's fitted marginal (Iman & Conover
1982): summed growths alone drift from it (contexts saturate and get compacted over tens of
turns; WEKA's sample held 1.4× the trace's blocks). Outputs follow from the
copula given the input's rank. Models of format 2 (no ``growth``) sample as before: chains
of independently drawn lengths, reordered to grow.

**Mix** — with ``by``, one model per group (tenant, model or log type), superposed; labels
(tenant, model, log type) are drawn from each group's empirical mix.

ServeGen client pools (Xiang et al., NSDI 2026) are built directly by :func:`from_servegen`:
per client, a piecewise rate per 600 s window with that window's Gamma/Weibull inter-arrival
shape, and lengths from the published per-window PMFs.

The parts live in their own modules: :mod:`~servetrace.synth.parameters` (the data),
:mod:`~servetrace.synth.arrivals` (with the rate driver in :mod:`~servetrace.synth.driver`),
:mod:`~servetrace.synth.lengths`, :mod:`~servetrace.synth.sessions`,
:mod:`~servetrace.synth.subagents`, :mod:`~servetrace.synth.session_dags` (sampling sessions
as turn DAGs), :mod:`~servetrace.synth.prefixes` and :mod:`~servetrace.synth.servegen_model`;
this module fits (in memory, or out of core from a ``LazyFrame``), samples and serializes.

Sampling is vectorized (NumPy; loops run over groups, windows of a calibration or a handful
of length classes, never over requests) and deterministic: the same model, duration, seed and
rate scale give the same frame.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from servetrace.analysis.frames import warn_empty
from servetrace.loaders.schema import conform
from servetrace.synth.arrivals import (
    T_CHUNK,
    _calibrate_cv,
    _detect_tick,
    _fit_sorted,
    _rng,
    _times,
    fit_arrivals,
)
from servetrace.synth.lengths import (
    _copula,
    _lengths,
    _mean_tokens,
    _stratified_normal,
    lengths_from_pairs,
)
from servetrace.synth.parameters import (
    _COLUMNS,
    LABELS,
    MAX_LABELS,
    MIN_GROUP_REQUESTS,
    Arrivals,
    Group,
    Harmonic,
    Labels,
    Lengths,
    OnOff,
    Piecewise,
    Prefix,
    Renewal,
    ScaleRecord,
    Sessions,
    SubAgents,
    Table,
)
from servetrace.synth.prefixes import (
    _fit_prefix,
    _prefix_chains,
    _prefix_ids,
    block_size,
)
from servetrace.synth.session_dags import _has_dag, _sample_chains, _turn_lengths
from servetrace.synth.sessions import (
    _fit_sessions,
    _session_requests,
)
from servetrace.synth.subagents import (
    _fit_subagents,
)

if typing.TYPE_CHECKING:
    from servetrace.analysis.engine import Engine


VERSION = "3"
"""Version of the model format written; :meth:`WorkloadModel.from_json` reads it and the
versions in :data:`READABLE_VERSIONS`, and refuses others. 2 added :attr:`Table.step`; 3 the
session DAG (think and server times and request types by turn, sub-agents) and the chain
prefix structure (shared roots, growth and kept blocks per position)."""
READABLE_VERSIONS = ("1", "2", "3")
"""Format versions :meth:`WorkloadModel.from_json` reads: a version-1 document has no
``step`` tables and loads as it was written (every table interpolated); version-1 and -2
documents have none of the format-3 fields and sample as they did."""


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
    Table, Renewal, Harmonic, OnOff, Arrivals, Piecewise, Lengths, Sessions, SubAgents, Prefix,
    Labels, Group, ScaleRecord, WorkloadModel)}


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


def _labels(frame: pl.DataFrame | pl.LazyFrame, tenant_is_session: bool) -> Labels:
    lf = frame.lazy()
    names = lf.collect_schema().names()
    counts = lf.select(pl.len().alias("__rows"),
                       *(pl.col(c).count() for c in LABELS if c in names)).collect().row(0)
    filled = dict(zip([c for c in LABELS if c in names], counts[1:], strict=True))
    cols = tuple(c for c in LABELS if filled.get(c, 0) > 0
                 and not (c == "tenant" and tenant_is_session))
    if not cols:
        return Labels((), ((),), (1.0,), tenant_is_session)
    mix = (lf.group_by(list(cols)).len().sort(["len", *cols], descending=[True] +
                                               [False] * len(cols), nulls_last=True)
           .head(MAX_LABELS)).collect()
    w = mix["len"].to_numpy().astype(np.float64)
    values = tuple(tuple(r) for r in mix.select(list(cols)).iter_rows())
    return Labels(cols, values, tuple(float(v) for v in w / w.sum()), tenant_is_session)


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
    # a store's trace is already in time order: check it rather than sort a copy
    return frame if frame["arrival_s"].is_sorted() else frame.sort("arrival_s",
                                                                    maintain_order=True)


def _fit_group(frame: pl.DataFrame, key: str | None, share: float, span: float,
               t_origin: float, tick: float, seed: int, block_tokens: int = 512,
               scope: str = "global") -> Group:
    has_sessions = frame["session"].null_count() < frame.height and \
        frame["session"].n_unique() < frame.height
    tenant_is_session = bool(
        frame["session"].null_count() < frame.height
        and frame.filter(pl.col("session").is_not_null())
        .select((pl.col("tenant") == pl.col("session")).fill_null(False).all()).item())
    inp = frame["input_tokens"].to_numpy()
    out = frame["output_tokens"].to_numpy()
    lengths = _lengths(inp, out)
    sessions = None
    times = frame["arrival_s"].to_numpy() - t_origin
    if has_sessions:
        sessions, starts = _fit_sessions(frame)
        sessions = dataclasses.replace(sessions, subagents=_fit_subagents(frame))
        if "subagent" in frame.columns and frame["subagent"].null_count() < frame.height:
            times = frame.filter(pl.col("subagent").is_null())["arrival_s"].to_numpy() - t_origin
        if float(np.ptp(starts)) <= max(tick, 1e-9):
            # every session starts at once (WEKA's release puts each conversation at 0):
            # samples do too (:attr:`Sessions.together`), sessions / span per second
            sessions = dataclasses.replace(sessions, together=True, warmup_s=0.0)
            arrivals = Arrivals(len(starts) / span, span / 16, Table((1.0, 1.0)), 0.5, span,
                                Renewal("exponential"), tick_s=tick)
        else:
            arrivals = fit_arrivals(starts - t_origin, span, origin_s=0.0, phase_s=t_origin,
                                    tick_s=tick, calibrate=False, seed=seed)
        if not sessions.together:  # a batch of the trace's own sessions needs no calibration
            arrivals = _calibrate_cv(arrivals, times, seed, sessions)
    else:
        arrivals = fit_arrivals(times, span, origin_s=0.0, phase_s=t_origin, tick_s=tick,
                                seed=seed)
    prefix = (_fit_prefix(frame, block_tokens, scope)
              if frame["hash_ids"].null_count() < frame.height else None)
    failed = bool(frame["failed"].null_count() < frame.height)
    return Group(key, share, arrivals, lengths, _labels(frame, tenant_is_session), sessions,
                 prefix, failed)


def fit(requests: pl.DataFrame | pl.LazyFrame, by: str | None = None, *,
        seed: int = 0, block_tokens: int | None = None,
        hash_scope: str = "global", engine: Engine | None = None,
        partitions: int | None = None) -> WorkloadModel:
    """Fit a :class:`WorkloadModel` to a canonical ``requests`` table.

    ``by``: ``None`` (one group, labels drawn from the trace's mix), ``"tenant"``, ``"model"``
    or ``"log_type"`` (one model per value; values with fewer than
    :data:`MIN_GROUP_REQUESTS` requests are pooled into one group keyed ``None``). ``seed``
    only drives the spreading of ticked timestamps within their tick. Needs ``arrival_s``,
    ``input_tokens``, ``output_tokens``; uses ``tenant``, ``session``, ``model``,
    ``log_type``, ``failed``, ``hash_ids`` where present and filled, and for sessions
    ``subagent``, ``request_id``, ``parent_request_id``, ``agent_depth``, ``request_type``,
    ``think_s``, ``server_s``. ``block_tokens``: tokens per block of ``hash_ids`` (the
    trace's ``traces.hash_block_tokens``; ``None`` reads it from the lengths,
    :func:`~servetrace.synth.prefixes.block_size`); ``hash_scope``: the trace's
    ``traces.hash_scope`` (``"session"``: ids local to a session, so no roots are shared
    across sessions).

    A ``LazyFrame`` (a store's :meth:`~servetrace.loaders.Store.scan`, ``pl.scan_parquet``)
    is fitted out of core where the trace has no sessions and no prefix blocks: only the
    arrival times are read into memory (8 bytes a request, read in slices into one array),
    and while the renewal is fitted each time's base window (4 bytes); gaps and rescaled
    gaps are made chunk by chunk for each sum (:mod:`~servetrace.synth.chunked`, NumPy's
    sums bit for bit); lengths and labels come from ``GROUP BY`` aggregates
    (:func:`_fit_lazy`); the model is the one the same rows in a ``DataFrame`` give.
    Sessions and prefix chains need the rows and are fitted in memory.

    ``engine`` (with ``by``): fit the groups as parallel tasks on an
    :class:`~servetrace.analysis.engine.Engine` (``RayEngine`` for a cluster). The group keys
    are split into ``partitions`` buckets by a hash of the key
    (:func:`~servetrace.analysis.engine.hash_bucket`; default 4 per engine worker), each
    bucket one task fitting its groups from its rows alone (out of core: from the shared lazy
    scan, filtered by the worker), the pooled small groups one more; the driver puts the
    groups back in key order. The model is the local fit's, byte for byte.
    """
    if hash_scope not in ("global", "session"):
        raise ValueError(f"fit: hash_scope must be 'global' or 'session', got {hash_scope!r}")
    if by is not None and by not in LABELS:
        raise ValueError(f"fit: by must be None or one of {', '.join(LABELS)}; got {by!r}")
    if partitions is not None and partitions < 1:
        raise ValueError(f"fit: partitions must be >= 1, got {partitions}")
    if by is None:
        engine = None  # one group: nothing to divide
    if isinstance(requests, pl.LazyFrame) and not _needs_rows(requests):
        return _fit_lazy(requests, by, seed, engine, partitions)
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
        parts = [(k, frame.filter(pl.col(by) == k)) for k in keys] if engine is None else []
        rest = frame.filter(~pl.col(by).is_in(keys) | pl.col(by).is_null())
        if rest.height >= 2:
            parts.append((None, rest))
    if block_tokens is None:
        block_tokens = block_size(frame)
    elif not (isinstance(block_tokens, int) and block_tokens > 0):
        raise ValueError(f"fit: block_tokens must be a positive integer, got {block_tokens!r}")
    fixed = (by, n, span, origin, tick, seed, block_tokens, hash_scope)
    if engine is None:
        groups = tuple(_fit_group(f, k, f.height / n, span, origin, tick, seed, block_tokens,
                                  hash_scope) for k, f in parts)
        return WorkloadModel(source, by, span, n, groups)
    tasks = [(ks, frame.filter(pl.col(by).is_in(ks)))
             for ks in _buckets(keys, by, partitions or 4 * engine.workers)]
    tasks += [([None], f) for _, f in parts]  # the pooled small groups
    fitted = {g.key: g for gs in engine.map(_fit_rows, tasks, *fixed) for g in gs}
    return WorkloadModel(source, by, span, n,
                         tuple(fitted[k] for k in [*keys, *([None] if parts else [])]))


def _buckets(keys: list[str], by: str, partitions: int) -> list[list[str]]:
    """``keys`` (sorted) in at most ``partitions`` buckets by :func:`~servetrace.analysis.
    engine.hash_bucket`, each bucket's keys in their order; empty buckets dropped."""
    from servetrace.analysis.engine import hash_bucket

    frame = pl.DataFrame({by: keys}, schema={by: pl.String}).with_columns(
        hash_bucket([by], partitions).alias("_bucket"))
    return [rows[by].to_list()
            for _, rows in frame.group_by("_bucket", maintain_order=True)]


def _fit_rows(part: tuple[list[str | None], pl.DataFrame], by: str, n: int, span: float,
              origin: float, tick: float, seed: int, block_tokens: int,
              scope: str) -> list[Group]:
    """One engine task of :func:`fit`: the groups of ``keys`` from their rows (key ``None``:
    the pooled rows, fitted whole)."""
    keys, rows = part
    frames = ((k, rows if k is None else rows.filter(pl.col(by) == k)) for k in keys)
    return [_fit_group(f, k, f.height / n, span, origin, tick, seed, block_tokens, scope)
            for k, f in frames]


def _needs_rows(requests: pl.LazyFrame) -> bool:
    """Whether the trace has sessions or prefix blocks, whose fits need the rows."""
    names = requests.collect_schema().names()
    cols = [c for c in ("session", "hash_ids") if c in names]
    if not cols:
        return False
    return any(requests.select(pl.col(c).count() for c in cols).collect().row(0))


def _check_lazy(requests: pl.LazyFrame) -> int:
    """The checks of :func:`_collect` as one aggregate query; the number of rows."""
    names = requests.collect_schema().names()
    missing = [c for c in ("arrival_s", "input_tokens", "output_tokens") if c not in names]
    if missing:
        raise ValueError(f"fit: requests lacks column {missing[0]!r}")
    row = requests.select(
        pl.len().alias("n"),
        *(pl.col(c).null_count().alias(c) for c in ("arrival_s", "input_tokens",
                                                     "output_tokens")),
        (~pl.col("arrival_s").is_finite()).sum().alias("infinite"),
    ).collect(engine="streaming").row(0, named=True)
    n = int(row["n"])
    if n and row["arrival_s"] == n:
        raise ValueError("fit: the requests have no arrival times (a batch trace): a workload "
                         "model needs arrivals")
    for c in ("arrival_s", "input_tokens", "output_tokens"):
        if row[c]:
            raise ValueError(f"fit: column {c!r} has nulls")
    if row["infinite"]:
        raise ValueError("fit: column 'arrival_s' has non-finite values")
    return n


def _lazy_times(requests: pl.LazyFrame, n: int | None = None) -> np.ndarray:
    """The arrival times, sorted, as the only per-request array the lazy fit holds.

    With ``n``, the number of rows of ``requests`` (a scan whose slices the engine reads
    without reading what comes before them: the whole trace), they are read
    :data:`~servetrace.synth.arrivals.T_CHUNK` rows at a time into the one array, so that
    no column of the same size is held beside it."""
    times = pl.col("arrival_s").cast(pl.Float64)
    if n is None:
        s = requests.select(times).collect().to_series()
        if s.is_sorted():
            return np.array(s.to_numpy(), dtype=np.float64)  # writable: shifted in place
        return np.sort(s.to_numpy())
    out = np.empty(n)
    column = requests.select(times)
    in_order, last = True, -np.inf
    for lo in range(0, n, T_CHUNK):
        part = column.slice(lo, T_CHUNK).collect().to_series().to_numpy()
        out[lo:lo + part.size] = part
        if part.size:
            in_order = in_order and part[0] >= last and bool(np.all(part[1:] >= part[:-1]))
            last = part[-1]
    if not in_order:
        out.sort()
    return out


def _fit_group_lazy(requests: pl.LazyFrame, key: str | None, share: float, span: float,
                    t_origin: float, tick: float, seed: int,
                    times: np.ndarray | None = None) -> Group:
    """:func:`_fit_group` for a group without sessions or prefix blocks, from aggregates.
    ``times``: the group's sorted arrival times minus ``t_origin`` where the caller has
    them (taken over: overwritten)."""
    failed = (requests.select(pl.col("failed").count()).collect(engine="streaming").item() > 0
              if "failed" in requests.collect_schema().names() else False)
    if times is None:
        times = _lazy_times(requests)
        times -= t_origin
    arrivals = _fit_sorted(times, span, origin_s=0.0, phase_s=t_origin, tick_s=tick,
                           seed=seed)
    del times
    pairs = (requests.group_by("input_tokens", "output_tokens").len()
             .with_columns(pl.col("input_tokens", "output_tokens").cast(pl.Int64))
             .collect(engine="streaming"))  # sorted by lengths_from_pairs: any row order
    return Group(key, share, arrivals, lengths_from_pairs(pairs), _labels(requests, False),
                 None, None, failed)


def _fit_lazy(requests: pl.LazyFrame, by: str | None, seed: int,
              engine: Engine | None = None, partitions: int | None = None) -> WorkloadModel:
    """:func:`fit` out of core: see its docstring. Every step but the arrival times is a
    query the engine streams (counts, null counts, a length histogram, a label mix)."""
    n = _check_lazy(requests)
    if n < 20:
        raise ValueError(f"fit: at least 20 requests are needed, got {n}")
    names = requests.collect_schema().names()
    requests = requests.with_columns(  # as :func:`_collect` reads them
        (pl.col(c).cast(pl.String) if c in names else pl.lit(None, pl.String)).alias(c)
        for c in (*LABELS, "trace"))
    if by is not None:
        warn_empty(requests, [by])
    a = _lazy_times(requests, n)
    origin = float(a[0])
    last = float(a[-1])
    span = (last - origin) * n / (n - 1)
    a -= origin
    tick = _detect_tick(a)
    if tick > 0:
        span = max(span, float(np.floor((last - origin) / tick) + 1) * tick)
    if not span > 0:
        raise ValueError("fit: column 'arrival_s' spans no time (all arrivals equal)")
    traces = (requests.select(pl.col("trace").drop_nulls().unique().sort())
              .collect().to_series().to_list())
    source = traces[0] if len(traces) == 1 else ("mixed" if traces else "unknown")
    if by is None:  # one group: the times read for the tick are its times
        return WorkloadModel(source, by, span, n, (
            _fit_group_lazy(requests, None, 1.0, span, origin, tick, seed, times=a),))
    del a
    col = pl.col(by)
    sizes = requests.group_by(by).len().collect()
    big = sizes.filter((pl.col("len") >= MIN_GROUP_REQUESTS) & pl.col(by).is_not_null())
    keys = sorted(big[by].to_list())
    size = dict(zip(big[by].to_list(), big["len"].to_list(), strict=True))
    rest = n - sum(size.values())
    if engine is None:
        parts = [(k, size[k], requests.filter(col == k)) for k in keys]
        if rest >= 2:
            parts.append((None, rest, requests.filter(~col.is_in(keys) | col.is_null())))
        groups = tuple(_fit_group_lazy(lf, k, s / n, span, origin, tick, seed)
                       for k, s, lf in parts)
        return WorkloadModel(source, by, span, n, groups)
    tasks = [[(k, size[k]) for k in ks]
             for ks in _buckets(keys, by, partitions or 4 * engine.workers)]
    tasks += [[(None, rest)]] if rest >= 2 else []
    fitted = {g.key: g for gs in engine.map(_fit_scan, tasks, requests, by, keys, n, span,
                                            origin, tick, seed) for g in gs}
    return WorkloadModel(source, by, span, n,
                         tuple(fitted[k] for k in [*keys, *([None] if rest >= 2 else [])]))


def _fit_scan(part: list[tuple[str | None, int]], requests: pl.LazyFrame, by: str,
              keys: list[str], n: int, span: float, origin: float, tick: float,
              seed: int) -> list[Group]:
    """One engine task of the out-of-core fit: each group of ``part`` (key, rows) from the
    shared scan, filtered here (key ``None``: the rows of no key in ``keys``)."""
    col = pl.col(by)
    return [_fit_group_lazy(requests.filter(col == k if k is not None
                                            else ~col.is_in(keys) | col.is_null()),
                            k, s / n, span, origin, tick, seed) for k, s in part]


def _sample_group(g: Group, gi: int, duration: float, seed: int, rate_scale: float
                  ) -> dict[str, object]:
    if (g.prefix is not None and g.prefix.growth) or (g.prefix is None
                                                       and _has_dag(g.sessions)):
        return _sample_chains(g, gi, duration, seed, rate_scale)
    rng_t, rng_l, rng_s, rng_p, rng_lab = (_rng(seed, gi, k) for k in range(5))
    session_idx = None
    if g.sessions is not None:
        t, sess, turn, n_sess = _session_requests(g.arrivals, g.sessions, duration, rate_scale,
                                                  rng_t, rng_s)
        inp, out = _turn_lengths(g.sessions, sess, turn, n_sess, rng_l)
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
    id_base = 0
    key_base = 0
    agent_base = 0
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
        extra = s.get("extra") or {}
        if extra:
            cols.update(_extra_columns(extra, key_base, agent_base, g.sessions))
            agent_base += int(np.max(extra["agent"], initial=-1)) + 1
        cols["_k"] = pl.Series("_k", np.arange(n, dtype=np.int64) + key_base)
        key_base += n
        if s["hash"] is not None:
            ids, offsets = s["hash"]
            ids = ids + id_base  # groups never share a block by chance
            id_base = int(ids.max()) + 1 if len(ids) else id_base
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
    if "_pk" in out.columns:  # parents by key, to the rows' final numbers
        row = np.empty(out.height, np.int64)
        row[out["_k"].to_numpy()] = np.arange(out.height)
        pk = out["_pk"].fill_null(-1).to_numpy()
        out = out.with_columns(pl.Series("parent_request_id", np.where(
            pk >= 0, row[np.maximum(pk, 0)], -1)).cast(pl.String).replace("-1", None))
        out = out.drop("_pk")
    return conform("requests", out.drop("_k", strict=False))


def _extra_columns(extra: dict[str, np.ndarray], key_base: int, agent_base: int,
                   sessions: Sessions | None) -> dict[str, pl.Series]:
    """The session DAG's columns of a format-3 sample (see :func:`_sample_chains`)."""
    cols = {"turn": pl.Series("turn", extra["turn"], pl.Int64),
            "_pk": pl.Series("_pk", np.where(extra["parent"] >= 0, extra["parent"] + key_base,
                                             -1), pl.Int64),
            "subagent": pl.DataFrame({"a": extra["agent"] + agent_base,
                                      "m": extra["agent"] >= 0}).select(
                pl.when(pl.col("m")).then(pl.format("a{}", pl.col("a"))).alias("subagent")
            )["subagent"],
            "agent_depth": pl.Series("agent_depth", extra["agent_depth"], pl.Int64)}
    if sessions is not None and sessions.think_by_turn:
        cols["think_s"] = pl.Series("think_s", extra["think_s"], pl.Float64)
        if sessions.server_by_turn:
            cols["server_s"] = pl.Series("server_s", extra["server_s"], pl.Float64)
    if "request_type" in extra and sessions is not None:
        cols["request_type"] = pl.Series(list(sessions.types), dtype=pl.String).gather(
            extra["request_type"])
    return cols
