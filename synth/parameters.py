"""The parameters of a workload model: plain, frozen data (tables, renewal, arrivals, lengths,
sessions, prefixes, labels, groups) and the constants that size them.

Every class here is a field of :class:`servetrace.synth.model.WorkloadModel` (or of one of its
fields), serialized to JSON by :mod:`servetrace.synth.model`; what each part means, and how it
is fitted and sampled, is told there and in :mod:`~servetrace.synth.arrivals`,
:mod:`~servetrace.synth.lengths`, :mod:`~servetrace.synth.sessions` and
:mod:`~servetrace.synth.prefixes`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

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
            "log_type", "failed", "hash_ids", "trace", "request_id", "parent_request_id",
            "subagent", "agent_depth", "request_type", "think_s", "server_s")


_SEED_ROOT = 0x5E7ACE  # mixes into every SeedSequence, so streams differ from plain seeds


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

    @staticmethod
    def from_counts(values: np.ndarray, counts: np.ndarray, *, integer: bool = False,
                    size: int = EMPIRICAL_SIZE) -> Table:
        """:meth:`empirical` of the sample in which each of the sorted distinct ``values``
        occurs ``counts`` times (a histogram, as a store aggregates it): the same table,
        value for value, without expanding the sample — past ``size`` values the
        inverted-CDF positions ⌈p·n⌉ − 1 are looked up in the cumulative counts."""
        v = np.asarray(values, dtype=np.float64)
        c = np.asarray(counts, dtype=np.int64)
        keep = c > 0
        v, c = v[keep], c[keep]
        if len(v) > 1 and not (np.diff(v) > 0).all():
            raise ValueError("Table.from_counts: values must be distinct and ascending")
        n = int(c.sum())
        if n == 0:
            return Table((0.0,), integer=integer, step=True)
        if n > size:
            p = (np.arange(size) + 0.5) / size
            pos = np.clip(np.ceil(p * n).astype(np.int64) - 1, 0, n - 1)
            x = v[np.searchsorted(np.cumsum(c), pos, side="right")]
        else:
            x = np.repeat(v, c)
        return Table(tuple(float(x_) for x_ in x), integer=integer, step=True)


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
class SubAgents:
    """Sub-agent spawning (format 3): a main-agent turn launches sub-agents with probability
    ``spawn_p``, ``fanout`` of them (how many per launching turn); each runs ``turns`` turns;
    a sub-agent launches its own with probability ``nested_p`` per turn, down to
    ``max_depth`` levels. A sub-agent's requests share, within their session, a root of
    ``root_blocks`` blocks (its own system prompt), then extend their own chain; ``first``
    the lengths of a sub-agent's first request."""

    spawn_p: float
    fanout: Table
    turns: Table
    nested_p: float = 0.0
    max_depth: int = 1
    root_blocks: int = 0
    first: Lengths | None = None


@dataclass(frozen=True)
class Sessions:
    """Turns per session, think times (s) between turns, lengths per turn index, the
    within-session correlation of input normal scores, and the warm-up (s) before a sample
    (the 95th percentile of session durations).

    Format 3 adds, per turn class (turn 2, 3, …, the last pooled; the first turn has none):
    ``think_by_turn`` the client's think time (s) before a turn and ``server_by_turn`` the
    server's time (s) on the turn before it (a turn starts ``server + think`` after the
    previous one; empty where the trace lacks them: then ``think_by_turn`` holds the gaps);
    ``types``/``type_mix`` the request-type mix per turn class (turn 1 first);
    ``subagents`` the spawning of sub-agents; ``together``: the trace starts every session
    at once (WEKA's release puts each conversation at its own zero, with no wall-clock
    time), so a sample does too: ``rate × rate_scale × duration`` sessions (rounded at
    random) at time 0, no warm-up, rather than inventing a start process the trace does
    not show."""

    turns: Table
    think_s: Table
    by_turn: tuple[Lengths, ...]
    input_rho: float
    warmup_s: float = 0.0
    think_by_turn: tuple[Table, ...] = ()
    server_by_turn: tuple[Table, ...] = ()
    types: tuple[str, ...] = ()
    type_mix: tuple[tuple[float, ...], ...] = ()
    subagents: SubAgents | None = None
    together: bool = False


@dataclass(frozen=True)
class Prefix:
    """Prefix blocks: ``root_blocks`` shared by a fraction ``root_share`` of requests, then a
    chain per conversation; chain sizes from ``chain_sizes``, members ``chain_gap`` apart in
    request order (mean, exponential); ``by_position`` the lengths of a chain's 1st, 2nd, …
    member (the last class pooling the rest): prompts grow along a conversation.

    Format 3 (``growth`` non-empty) replaces the reordering of independent lengths by the
    chain itself: ``roots`` (lengths in blocks) are prefixes shared across chains (system and
    tool prompts), a chain starting with root j with probability ``root_weights[j]`` (none
    with the rest); per position class 1, 2, … (the last pooled) ``growth`` is a copula of
    the input tokens appended to the previous member's (``input``, negative where a context
    is compacted) and of the previous member's blocks not kept (``output``): a member's
    hash ids are the previous member's first ``len − dropped`` blocks, then new ones.
    ``rounding`` ``"ceil"`` gives ⌈input / block⌉ blocks (Mooncake), ``"floor"`` full
    blocks only (WEKA's agentic traces); ``scope`` is the fitted trace's ``hash_scope``;
    ``chain_gaps`` the distances between a chain's members in request order (their table
    replaces the exponential of mean ``chain_gap``: Mooncake's turns are rarely less than
    140 requests apart, which an exponential of mean 734 puts 10 % of them under 35);
    ``inputs_by_position`` the input marginal per log-spaced position class (positions 1,
    2, 3, 4, then 5–8, 9–16, …; :func:`~servetrace.synth.prefixes._log_class`), onto which
    sampled inputs are mapped."""

    block_tokens: int
    root_blocks: int
    root_share: float
    chain_sizes: Table
    chain_gap: float
    by_position: tuple[Lengths, ...] = ()
    roots: tuple[int, ...] = ()
    root_weights: tuple[float, ...] = ()
    growth: tuple[Lengths, ...] = ()
    rounding: str = "ceil"
    scope: str = "global"
    chain_gaps: Table | None = None
    inputs_by_position: tuple[Table, ...] = ()


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
        """Mean requests per second (session starts × mean turns where there are sessions,
        sub-agents' turns included; turns cut by the end of a sample are not discounted)."""
        turns = self.sessions.turns.mean() if self.sessions is not None else 1.0
        sub = self.sessions.subagents if self.sessions is not None else None
        if sub is not None:  # each turn's sub-agents' turns (and theirs, level by level)
            per = sub.fanout.mean() * sub.turns.mean()
            nested = sum((sub.nested_p * per) ** k for k in range(sub.max_depth))
            turns *= 1.0 + sub.spawn_p * per * nested
        return self.arrivals.mean_rate * turns


@dataclass(frozen=True)
class ScaleRecord:
    """One scaling step applied to a model or a trace (see :mod:`servetrace.synth.scale`)."""

    op: str
    params: tuple[tuple[str, str], ...]
