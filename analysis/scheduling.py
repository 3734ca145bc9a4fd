"""Scheduler simulation of a multi-tenant LLM trace through one server, for fairness.

Works on the canonical ``requests`` table grouped by tenant (``by``, default ``tenant``);
the fairness measures over its result are in :mod:`servetrace.analysis.fairness`, which
re-exports :func:`simulate`, :func:`simulate_runs`, :class:`Server` and :class:`SimResult`.

**Scheduler simulation** (:func:`simulate`) of a multi-tenant trace through one server
(:class:`Server`): continuous batching with iteration-level scheduling (Yu et al., *Orca*,
OSDI 2022), under three admission policies:

* ``fcfs``: first come, first served, over all tenants;
* ``vtc``: the Virtual Token Counter of Sheng et al., *Fairness in Serving Large Language
  Models*, OSDI 2024 (arXiv 2401.00588), Algorithm 1, implemented as follows. Each tenant
  ``u`` has a counter ``c_u``. When ``u`` gets a request while it has none waiting (it is not
  in the waiting queue ``Q``), its counter is lifted: ``c_u ← max(c_u, min{c_v : v ∈ Q})``
  when ``Q`` is not empty, else ``c_u ← max(c_u, c_l)`` with ``l`` the tenant that last
  left ``Q`` (``lift="paper"``; ``lift="artifact"`` leaves the counter alone when ``Q`` is
  empty, as the authors' S-LoRA code ``vtc_req_queue.py`` in Ying1123/VTC-artifact does).
  At every admission opportunity (an iteration boundary with a free batch slot) the
  scheduler repeatedly takes the waiting tenant with the smallest counter, admits its oldest
  waiting request if the request fits the batch (else stops: head-of-line blocking, as the
  paper's and the artifact's loop does), and charges ``w_in · input_tokens`` at admission;
  every decoded output token charges ``w_out`` to its tenant. The paper's guarantee
  (§4): for two tenants ``f`` and ``g`` both backlogged over ``[t1, t2)``,
  ``|W_f(t1, t2) − W_g(t1, t2)| ≤ 2·U`` with ``U = max(w_in · L_input, w_out · M)``, where
  ``L_input`` is the longest input and ``M`` the most tokens a running batch can hold
  (:func:`vtc_bound`);
* ``fairserve``: a documented simplification of FairServe (Khan et al., *Ensuring Fair LLM
  Serving Amid Diverse Applications*, arXiv 2411.15997, 2024): a *weighted* service counter
  (VTC's counter with every charge divided by the tenant's weight, ``weights``) plus rate
  throttling in the spirit of its overload-and-interaction-driven throttling: when the
  server is overloaded (at least ``overload_queue`` requests waiting, default one full batch)
  a new request is rejected if its tenant sent more than ``throttle_factor`` × its
  weighted fair share of the requests that arrived in the trailing ``throttle_window_s``
  (fair share = that window's requests × the tenant's weight / the total weight of the
  tenants that sent requests in it). FairServe's application-level ("interaction")
  exemption of follow-up calls and its per-application token weighting are not modelled.
  Throttled requests are never served (``throttled`` true, times null); consecutive
  rejections of one tenant form one throttle event in :attr:`SimResult.throttles`.

Server cost model (:class:`Server`): time advances in iterations. An iteration in which new
requests were admitted takes ``Σ input_tokens(admitted) / prefill_tokens_per_s`` for their
prefill plus ``1 / decode_tokens_per_s`` for one decode step of the whole batch (decode is
memory-bound: the step time does not depend on the batch size, so ``decode_tokens_per_s``
is the speed of one sequence); the prefill iteration yields a request's first output token,
so a request with ``O`` output tokens leaves after ``max(O, 1)`` iterations. The batch holds
at most ``max_batch`` sequences and, if ``max_batch_tokens`` is set, requests whose
``input_tokens + output_tokens`` sum to at most that (KV memory reserved for the whole
request at admission, as a scheduler that knows the output length would; a single request
larger than the memory runs alone). Per request the result gives the admission time
``start_s``, ``ttft_s`` (first token time − arrival) and ``finish_s``.

The schedule is that of a scheduler that looks at its queue at every iteration boundary: an
arrival joins the queue (and gets its lift) at the first boundary at or after it, and
admission is tried at every boundary. The loop, however, runs over scheduling *events*, not
iterations: between two events (a completion; an arrival while a slot is free; while the
smallest-counter tenant's next request does not fit the memory, the iteration at which
another tenant's counter overtakes it) nothing but decoding happens, so those iterations are
taken in one step. Counters are kept in closed form (``c = base + slope · iteration``, the
slope being ``w_out`` × the tenant's running sequences), so arrivals inside such a step are
lifted with the counters of their own boundary. The tests check the schedule against the
plain loop over iterations. The work per event is a few scalar operations and one
vectorized pass over the waiting tenants (smallest counter; ties go to the tenant that
appeared first in the trace, as with the artifact's insertion-ordered dict).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from servetrace.analysis.engine import Engine
from servetrace.analysis.tenancy import (  # noqa: F401 (W_IN, W_OUT, MEASURES: the API)
    _REQUIRED,
    MEASURES,
    W_IN,
    W_OUT,
    By,
    Frame,
    _check,
    _keys,
    _label,
    _lazy,
    _weights,
)

Scheduler = Literal["fcfs", "vtc", "fairserve"]

SCHEDULERS = ("fcfs", "vtc", "fairserve")
_FEW = 16  # arrivals taken into the queue one at a time (more: vectorized)


# ---------------------------------------------------------------------------------------------
# the server and the simulation


@dataclass(frozen=True)
class Server:
    """One LLM server with continuous batching (see the module docstring for the cost model).

    ``prefill_tokens_per_s``: prompt tokens prefilled per second; ``decode_tokens_per_s``:
    tokens per second of one sequence (one decode iteration of the batch takes
    ``1 / decode_tokens_per_s``); ``max_batch``: sequences in the running batch;
    ``max_batch_tokens``: optional KV capacity in tokens (a running request holds
    ``input_tokens + output_tokens``), ``M`` in the VTC bound.
    """

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_batch: int
    max_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"Server.{name}: must be a finite number > 0, got {v!r}")
        if not (isinstance(self.max_batch, int) and self.max_batch >= 1):
            raise ValueError(f"Server.max_batch: must be an integer >= 1, got "
                             f"{self.max_batch!r}")
        m = self.max_batch_tokens
        if m is not None and not (isinstance(m, int) and m >= 1):
            raise ValueError(f"Server.max_batch_tokens: must be an integer >= 1 or None, "
                             f"got {m!r}")


DEFAULT_SERVER = Server(prefill_tokens_per_s=8_000.0, decode_tokens_per_s=30.0, max_batch=64)
"""The server simulated when none is given (the report, ``servetrace fairness``): about one
7–13B model replica on one A100-class GPU (8,000 prompt tokens/s, 30 decode iterations/s, 64
sequences); a stand-in, not a measurement: pass a profile's figures for real hardware."""


@dataclass(frozen=True)
class SimResult:
    """What :func:`simulate` returns.

    ``requests``: one row per request in arrival order: ``request_id``, ``tenant`` (the
    ``by`` key as a string), ``arrival_s``, ``input_tokens``, ``output_tokens``, ``start_s``
    (admission into the batch), ``ttft_s`` (first token time − arrival; null for a request
    with no output token), ``finish_s``, ``latency_s`` (finish − arrival), ``queue_s``
    (start − arrival), ``throttled`` (rejected by the ``fairserve`` throttle: times null).
    Times ending in ``_s`` that are instants (arrival, start, finish) share the trace's zero.

    ``service``: ``time_s``, ``tenant``, ``service`` (service received up to ``time_s``:
    ``w_in`` per prefilled input token, ``w_out`` per decoded output token), ``rate``
    (service per second since the previous sample). Sampled every ``service_interval_s``
    and at the end; a tenant has a row at a sample only if its service changed since the
    previous sample (otherwise it is unchanged).

    ``throttles``: ``tenant``, ``start_s``, ``end_s`` (first and last rejected arrival of a
    run of consecutive rejections of that tenant), ``requests`` (rejected in the run).

    ``scheduler``, ``w_in``, ``w_out`` as simulated; ``steps``: scheduling events the loop
    ran; ``iterations``: server iterations simulated.
    """

    requests: pl.DataFrame
    service: pl.DataFrame
    throttles: pl.DataFrame
    scheduler: str = "vtc"
    w_in: float = W_IN
    w_out: float = W_OUT
    steps: int = 0
    iterations: int = 0


def vtc_bound(requests: Frame, server: Server, w_in: float = W_IN,
              w_out: float = W_OUT) -> float:
    """VTC's bound on the service difference of two backlogged tenants: ``2·U``.

    ``U = max(w_in · L_input, w_out · M)`` (Sheng et al., OSDI 2024, §4), ``L_input`` the
    longest input in ``requests`` and ``M`` the most tokens the running batch holds:
    ``server.max_batch_tokens``, or ``max_batch × max(input_tokens + output_tokens)`` when the
    server has no token limit.
    """
    _weights(w_in, w_out)
    lf = _lazy(requests)
    _check(lf, ["input_tokens", "output_tokens"])
    l_in, l_tot = lf.select(pl.col("input_tokens").max(),
                            (pl.col("input_tokens") + pl.col("output_tokens")).max().alias("total")
                            ).collect().row(0)
    if l_in is None:
        raise ValueError("requests: no rows")
    m = server.max_batch_tokens if server.max_batch_tokens is not None else (
        server.max_batch * l_tot)
    return 2.0 * max(w_in * float(l_in), w_out * float(m))


@dataclass(frozen=True)
class _Trace:
    """The arrays the simulation loop reads, in arrival order."""

    arrival: np.ndarray  # float64
    inp: np.ndarray  # int64
    out: np.ndarray  # int64
    tenant: np.ndarray  # int64 codes, 0.. by first appearance
    labels: pl.Series  # tenant label per code
    frame: pl.DataFrame  # request_id, tenant, arrival_s, input_tokens, output_tokens


def _prepare(requests: Frame, keys: list[str]) -> _Trace:
    lf = _lazy(requests)
    _check(lf, [*keys, *_REQUIRED])
    schema = lf.collect_schema()
    rid = (pl.col("request_id").cast(pl.String) if "request_id" in schema
           else pl.lit(None, pl.String)).alias("request_id")
    df = (lf.select(rid, _label(keys), pl.col("arrival_s").cast(pl.Float64),
                    pl.col("input_tokens").cast(pl.Int64), pl.col("output_tokens").cast(pl.Int64))
          .sort("arrival_s", maintain_order=True)
          .collect())
    if df.height == 0:
        raise ValueError("requests: no rows")
    for c in _REQUIRED:
        if df[c].null_count():
            raise ValueError(f"requests: column {c!r} has nulls")
    arrival = df["arrival_s"].to_numpy()
    if not np.isfinite(arrival).all():
        raise ValueError("requests: column 'arrival_s' has non-finite values")
    inp = df["input_tokens"].to_numpy()
    out = df["output_tokens"].to_numpy()
    if (inp < 0).any() or (out < 0).any():
        raise ValueError("requests: negative input_tokens or output_tokens")
    groups = (df.select("tenant").with_row_index("_i")
              .group_by("tenant", maintain_order=True).agg("_i"))
    codes = np.empty(df.height, dtype=np.int64)
    exploded = groups.with_row_index("_code").select("_code", "_i").explode("_i")
    codes[exploded["_i"].to_numpy()] = exploded["_code"].to_numpy()
    return _Trace(arrival, inp, out, codes, groups["tenant"], df)


def _over_share(arrival: np.ndarray, tenant: np.ndarray, weight: np.ndarray, window_s: float,
                factor: float) -> np.ndarray:
    """Per request ``i`` (arrival order): did its tenant send more than ``factor`` × its
    weighted fair share of the requests ``j ≤ i`` that arrived in ``(t_i − window_s, t_i]``?

    ``share_i = total_i · w / W_i`` with ``total_i`` those requests and ``W_i`` the weight of
    the tenants that sent at least one of them. Vectorized: per-tenant counts by binary search
    in (tenant, arrival) order; ``W_i`` by a sweep in which request ``j`` stands for its tenant
    from ``j`` until the tenant's next request or until ``t_j + window_s``, whichever is first.
    """
    n = arrival.size
    t = arrival - arrival[0]
    idx = np.arange(n)
    total = idx + 1 - np.searchsorted(t, t - window_s, side="right")
    order = np.lexsort((idx, tenant))
    span = float(t[-1]) + 2.0 * window_s + 1.0
    key = tenant[order] * span + t[order]
    own = np.empty(n, dtype=np.int64)
    own[order] = idx - np.searchsorted(key, key - window_s, side="right") + 1
    nxt = np.full(n, n, dtype=np.int64)
    same = tenant[order][1:] == tenant[order][:-1]
    nxt[order[:-1]] = np.where(same, order[1:], n)
    end = np.minimum(nxt, np.searchsorted(t, t + window_s, side="left"))
    w = weight[tenant]
    active = np.cumsum(w) - np.cumsum(np.bincount(end, weights=w, minlength=n + 1))[:n]
    share = total * w / np.maximum(active, w)
    return own > factor * share


def simulate(requests: Frame, server: Server, scheduler: Scheduler = "vtc", by: By = "tenant",
             w_in: float = W_IN, w_out: float = W_OUT, *,
             weights: Mapping[str, float] | None = None,
             lift: Literal["paper", "artifact"] = "paper",
             service_interval_s: float | None = None,
             throttle_window_s: float = 60.0, throttle_factor: float = 1.0,
             overload_queue: int | None = None) -> SimResult:
    """Run a multi-tenant trace through one :class:`Server` under a scheduler.

    ``scheduler``: ``fcfs``, ``vtc`` or ``fairserve`` (see the module docstring for each, the
    server's cost model and what is simplified). ``w_in``/``w_out``: the cost of an input and
    an output token, for VTC's counters and for the recorded service. ``weights``: tenant
    label → weight (``fairserve`` only: a tenant's charges are divided by its weight; default
    1). ``lift``: VTC's counter lift when the queue is empty (``paper``: to the counter of
    the tenant that last left the queue; ``artifact``: none). ``service_interval_s``: the
    sampling interval of :attr:`SimResult.service` (default: the arrival span / 100).
    ``throttle_window_s``, ``throttle_factor``, ``overload_queue``: the ``fairserve``
    throttle (default overload: ``server.max_batch`` requests waiting).

    Deterministic: the same input gives the same result. Ties between equal counters go to
    the tenant found first among the waiting ones.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: must be one of {SCHEDULERS}, got {scheduler!r}")
    if lift not in ("paper", "artifact"):
        raise ValueError(f"lift: must be 'paper' or 'artifact', got {lift!r}")
    if not isinstance(server, Server):
        raise TypeError(f"server: expected a Server, got {type(server).__name__}")
    _weights(w_in, w_out)
    keys = _keys(by)
    tr = _prepare(requests, keys)
    n_ten = tr.labels.len()
    weight = np.ones(n_ten)
    if weights is not None:
        if scheduler != "fairserve":
            raise ValueError("weights: only the 'fairserve' scheduler weights tenants")
        index = {lab: i for i, lab in enumerate(tr.labels.to_list())}
        for lab, w in weights.items():
            if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
                raise ValueError(f"weights[{lab!r}]: must be a finite number > 0, got {w!r}")
            if lab in index:
                weight[index[lab]] = float(w)
    span = float(tr.arrival[-1] - tr.arrival[0])
    if service_interval_s is None:
        service_interval_s = span / 100.0 if span > 0 else 1.0
    if not (math.isfinite(service_interval_s) and service_interval_s > 0):
        raise ValueError(f"service_interval_s: must be a finite number > 0, got "
                         f"{service_interval_s!r}")
    over = None
    if scheduler == "fairserve":
        if not (math.isfinite(throttle_window_s) and throttle_window_s > 0):
            raise ValueError(f"throttle_window_s: must be a finite number > 0, got "
                             f"{throttle_window_s!r}")
        if not (math.isfinite(throttle_factor) and throttle_factor > 0):
            raise ValueError(f"throttle_factor: must be a finite number > 0, got "
                             f"{throttle_factor!r}")
        if overload_queue is None:
            overload_queue = server.max_batch
        if not (isinstance(overload_queue, int) and overload_queue >= 0):
            raise ValueError(f"overload_queue: must be an integer >= 0, got {overload_queue!r}")
        over = _over_share(tr.arrival, tr.tenant, weight, throttle_window_s, throttle_factor)
    loop = _Loop(tr, server, scheduler, w_in, w_out, weight, lift, service_interval_s, over,
                 overload_queue or 0)
    loop.run()
    return loop.result(tr)


def _run(run: tuple[Server, Scheduler], requests: Frame, options: dict) -> SimResult:
    server, scheduler = run
    return simulate(requests, server, scheduler, **options)


def simulate_runs(requests: Frame, runs: Sequence[tuple[Server, Scheduler]],
                  by: By = "tenant", *, engine: Engine | None = None,
                  **options: object) -> list[SimResult]:
    """:func:`simulate` once per ``(server, scheduler)`` of ``runs``, in that order.

    The runs are independent (each sees the whole trace; tenants share one server, so a
    single run does not split by tenant), which makes a sweep over schedulers or server
    sizes embarrassingly parallel: with an ``engine``
    (:class:`~servetrace.analysis.engine.RayEngine`) every run is one task, and the trace goes
    to the workers once (a lazy Parquet scan as its plan: each worker reads the files
    itself). ``options`` are :func:`simulate`'s (``w_in``, ``weights``, ...). Same results
    as the runs one after another: :func:`simulate` is deterministic.
    """
    for server, scheduler in runs:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: must be one of {SCHEDULERS}, got {scheduler!r}")
        if not isinstance(server, Server):
            raise TypeError(f"server: expected a Server, got {type(server).__name__}")
    options = {"by": by, **options}
    if engine is None:
        return [_run(r, requests, options) for r in runs]
    return engine.map(_run, list(runs), requests, options)


class _Loop:
    """The event loop of :func:`simulate`: state in arrays, one pass over scheduling events.

    Per-tenant state that the vectorized steps read (counters ``cb + slope · iteration``,
    queue lengths, the set of waiting tenants) lives in NumPy arrays; per-tenant scalars that
    only the loop touches live in Python lists, which are cheaper to index one at a time.
    """

    def __init__(self, tr: _Trace, server: Server, scheduler: str, w_in: float, w_out: float,
                 weight: np.ndarray, lift: str, interval: float, over: np.ndarray | None,
                 overload_queue: int) -> None:
        n = tr.arrival.size
        n_ten = weight.size
        self.scheduler, self.w_in, self.w_out, self.lift = scheduler, w_in, w_out, lift
        self.arr, self.inp, self.out, self.ten = tr.arrival, tr.inp, tr.out, tr.tenant
        self.fp = tr.inp + tr.out
        self.steps_of = np.maximum(tr.out, 1)
        self.B = server.max_batch
        self.M = math.inf if server.max_batch_tokens is None else server.max_batch_tokens
        self.P, self.D = float(server.prefill_tokens_per_s), float(server.decode_tokens_per_s)
        self.start = np.full(n, np.nan)
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.throttled = np.zeros(n, dtype=bool)
        self.over, self.overload_queue = over, overload_queue
        # per-tenant FIFO queues: request ids by tenant, in arrival order
        counts = np.bincount(self.ten, minlength=n_ten)
        self.by_t = np.argsort(self.ten, kind="stable")
        tstart = np.zeros(n_ten, dtype=np.int64)
        tstart[1:] = np.cumsum(counts)[:-1]
        self.next_of = tstart.tolist()  # per tenant: position in by_t of its next queued one
        self.qlen = np.zeros(n_ten, dtype=np.int64)
        # the waiting tenants, as a compact set (array + positions), with copies of their
        # counters' base and slope aligned with it, so that the smallest counter is one
        # vectorized pass over contiguous memory
        self.bl = np.empty(n_ten, dtype=np.int64)
        self.bcb = np.empty(n_ten)
        self.bsl = np.empty(n_ten)
        self.blpos = [-1] * n_ten
        self.nbl = 0
        self.last_left = -1
        # VTC counters in closed form: c = cb + slope · iteration, slope = kc · running
        self.kc = (w_out / weight).tolist()  # counter charge per decoded token
        self.ci = (w_in / weight).tolist()  # counter charge per input token
        self.cb = np.zeros(n_ten)
        self.slope = np.zeros(n_ten)
        self.r = [0] * n_ten  # running sequences per tenant
        self.sb = [0.0] * n_ten  # service = sb + w_out · r · iteration
        self.interval = interval
        self.t0 = float(tr.arrival[0])
        self.sample_i = 1
        self.prev_s = np.zeros(n_ten)
        self.prev_t = self.t0
        self.rows: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        self.steps = 0
        self.iters = 0

    # -- queue ------------------------------------------------------------------------------

    def _counter(self, v: int, it: int) -> float:
        return float(self.cb[v] + self.slope[v] * it)

    def _floor(self, it: int) -> float:
        """The smallest counter among the waiting tenants at iteration ``it``."""
        nbl = self.nbl
        return float((self.bcb[:nbl] + self.bsl[:nbl] * it).min())

    def _join(self, u: np.ndarray) -> None:
        a, b = self.nbl, self.nbl + u.size
        self.bl[a:b] = u
        self.bcb[a:b] = self.cb[u]
        self.bsl[a:b] = self.slope[u]
        for j, v in enumerate(u.tolist(), a):
            self.blpos[v] = j
        self.nbl = b

    def _lift(self, v: int, it: int) -> None:
        """A request of tenant ``v`` arrives while ``v`` has none waiting: lift its counter
        to the smallest waiting counter (or, with none waiting and ``lift="paper"``, to the
        counter of the tenant that last left the queue), and make ``v`` waiting."""
        if self.nbl:
            floor = self._floor(it)
        elif self.lift == "paper" and self.last_left >= 0:
            floor = self._counter(self.last_left, it)
        else:
            floor = -math.inf
        c = self._counter(v, it)
        if floor > c:
            self.cb[v] += floor - c
        p = self.nbl
        self.bl[p] = v
        self.bcb[p] = self.cb[v]
        self.bsl[p] = self.slope[v]
        self.blpos[v] = p
        self.nbl = p + 1

    def _enqueue(self, a: int, b: int, it: int, qtotal: int) -> int:
        """Arrivals ``a:b``, all seen at iteration boundary ``it``, join the queue (or are
        throttled); return the number of requests waiting."""
        m = b - a
        if self.over is not None:
            flag = self.over[a:b]
            room = self.overload_queue - qtotal
            if room > 0:
                flag = flag & (np.arange(m) >= room)
            self.throttled[a:b] = flag
            ts = self.ten[a:b][~flag]
        else:
            ts = self.ten[a:b]
        if self.scheduler == "fcfs":
            return qtotal + m
        if ts.size <= _FEW:
            qlen = self.qlen
            for v in ts.tolist():
                if qlen[v] == 0:
                    self._lift(v, it)
                qlen[v] += 1
            return qtotal + ts.size
        # many arrivals at one boundary: the same lifts, vectorized. Each newly waiting tenant
        # is lifted to the smallest waiting counter; a lifted counter is never below it, so
        # the floor does not move within the group, except when nobody was waiting: then the
        # first newcomer sets it.
        fresh = ts[self.qlen[ts] == 0]
        if fresh.size:
            u, first = np.unique(fresh, return_index=True)
            u = u[np.argsort(first, kind="stable")]
            cur = self.cb[u] + self.slope[u] * it
            if self.nbl:
                new = np.maximum(cur, self._floor(it))
            else:
                lead = float(cur[0])
                if self.lift == "paper" and self.last_left >= 0:
                    lead = max(lead, self._counter(self.last_left, it))
                new = np.maximum(cur, lead)
                new[0] = lead
            self.cb[u] += new - cur
            self._join(u)
        np.add.at(self.qlen, ts, 1)
        return qtotal + ts.size

    def _ingest(self, nxt: int, t_end: float, qtotal: int, t: float = 0.0, pt: float = 0.0,
                k: int = 0) -> tuple[int, int]:
        """Take the arrivals up to ``t_end`` into the queue, each at the first iteration
        boundary at or after its arrival (``k`` iterations after a prefill of ``pt`` from
        ``t``; with ``k = 0``, all at the current boundary). Return (next arrival, queued)."""
        hi = int(np.searchsorted(self.arr, t_end, side="right"))
        if hi <= nxt:
            return nxt, qtotal
        base = self.iters - k
        if hi - nxt <= _FEW:  # a few arrivals: one by one, as Algorithm 1 states it
            arr, over, ten, qlen, D = self.arr, self.over, self.ten, self.qlen, self.D
            fcfs = self.scheduler == "fcfs"
            for i in range(nxt, hi):
                if over is not None and qtotal >= self.overload_queue and over[i]:
                    self.throttled[i] = True
                    continue
                qtotal += 1
                if fcfs:
                    continue
                v = int(ten[i])
                if qlen[v] == 0:
                    j = 0 if k <= 1 else math.ceil((float(arr[i]) - t - pt) * D - 1e-9)
                    self._lift(v, self.iters if k <= 1 else base + min(max(j, 1), k))
                qlen[v] += 1
            return hi, qtotal
        if k <= 1:
            return hi, self._enqueue(nxt, hi, self.iters, qtotal)
        j = np.ceil((self.arr[nxt:hi] - t - pt) * self.D - 1e-9)
        j = np.clip(j, 1, k).astype(np.int64)
        cuts = [0, *(np.flatnonzero(np.diff(j)) + 1).tolist(), hi - nxt]
        for a, b in itertools.pairwise(cuts):
            qtotal = self._enqueue(nxt + a, nxt + b, base + int(j[a]), qtotal)
        return hi, qtotal

    def _leave(self, v: int) -> None:
        p = self.blpos[v]
        e = self.nbl - 1
        last = int(self.bl[e])
        self.bl[p] = last
        self.bcb[p] = self.bcb[e]
        self.bsl[p] = self.bsl[e]
        self.blpos[last] = p
        self.blpos[v] = -1
        self.nbl = e
        self.last_left = v

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        arr, inp, fp, ten, out = self.arr, self.inp, self.fp, self.ten, self.out
        steps_of, by_t, next_of, qlen = self.steps_of, self.by_t, self.next_of, self.qlen
        r, slope, kc, ci, cb, sb = self.r, self.slope, self.kc, self.ci, self.cb, self.sb
        bl, bcb, bsl, blpos = self.bl, self.bcb, self.bsl, self.blpos
        start, first, finish = self.start, self.first, self.finish
        throttled = self.throttled
        w_in, w_out, B, M, P, D = self.w_in, self.w_out, self.B, self.M, self.P, self.D
        dt = 1.0 / D
        n = arr.size
        fcfs = self.scheduler == "fcfs"
        skip = self.over is not None
        running: list[tuple[int, int]] = []  # heap of (last iteration, request)
        mem = 0
        t = float(arr[0])
        fh = 0  # FCFS: first queued request (arrival order)
        nxt, qtotal = self._ingest(0, t, 0)  # nxt: first arrival not yet in the queue
        t_arr = float(arr[nxt]) if nxt < n else math.inf  # its arrival time
        while True:
            self.steps += 1
            it = self.iters
            admitted: list[int] = []
            blocked = -1  # VTC: the tenant whose next request did not fit
            pre = 0
            free = B - len(running)
            if fcfs:
                while free and fh < nxt:
                    q = fh
                    f = int(fp[q])
                    if running and mem + f > M:
                        break
                    fh += 1
                    free -= 1
                    v = int(ten[q])
                    x = int(inp[q])
                    r[v] += 1
                    sb[v] += w_in * x - w_out * it
                    heapq.heappush(running, (it + int(steps_of[q]), q))
                    admitted.append(q)
                    pre += x
                    mem += f
            else:
                while free and self.nbl:
                    nbl = self.nbl
                    if nbl == 1:
                        v = int(bl[0])
                    else:  # smallest counter; ties to the tenant that appeared first
                        vals = bcb[:nbl] + bsl[:nbl] * it
                        j = int(vals.argmin())
                        tie = vals == vals[j]
                        v = int(bl[j] if np.count_nonzero(tie) == 1 else bl[:nbl][tie].min())
                    h = next_of[v]
                    q = int(by_t[h])
                    if skip:
                        while throttled[q]:
                            h += 1
                            q = int(by_t[h])
                    f = int(fp[q])
                    if running and mem + f > M:
                        blocked = v
                        break
                    next_of[v] = h + 1
                    left = int(qlen[v]) - 1
                    qlen[v] = left
                    qtotal -= 1
                    free -= 1
                    x = int(inp[q])
                    r[v] += 1
                    slope[v] = kc[v] * r[v]
                    cb[v] += ci[v] * x - kc[v] * it
                    sb[v] += w_in * x - w_out * it
                    if left == 0:
                        self._leave(v)
                    else:
                        p = blpos[v]
                        bcb[p] = cb[v]
                        bsl[p] = slope[v]
                    heapq.heappush(running, (it + int(steps_of[q]), q))
                    admitted.append(q)
                    pre += x
                    mem += f
            if not running:
                if nxt >= n:
                    break
                self._sample_idle(t_arr)
                t = max(t, t_arr)
                nxt, qtotal = self._ingest(nxt, t, qtotal)
                t_arr = float(arr[nxt]) if nxt < n else math.inf
                continue
            pt = pre / P
            k = running[0][0] - it
            if free and nxt < n:
                k = min(k, max(math.ceil((t_arr - t - pt) * D - 1e-9), 1))
            if free and blocked >= 0 and k > 1:
                k = min(k, self._overtaken(blocked, it))
            t_new = t + pt + k * dt
            if admitted:
                if len(admitted) == 1:
                    start[admitted[0]] = t
                    first[admitted[0]] = t + pt + dt
                else:
                    start[admitted] = t
                    first[admitted] = t + pt + dt
            if t_new >= self.t0 + self.sample_i * self.interval:
                self._sample(t, pt, k, t_new)
            it_new = it + k
            self.iters = it_new
            if t_arr <= t_new:  # before the completions: counters in closed form need the
                # slopes of the round to be evaluated inside it
                nxt, qtotal = self._ingest(nxt, t_new, qtotal, t, pt, k)
                t_arr = float(arr[nxt]) if nxt < n else math.inf
            while running and running[0][0] == it_new:
                q = heapq.heappop(running)[1]
                v = int(ten[q])
                finish[q] = t_new
                r[v] -= 1
                slope[v] = kc[v] * r[v]
                ph = it_new - 1 if out[q] == 0 else it_new  # no token: undo its charge
                cb[v] += kc[v] * ph
                sb[v] += w_out * ph
                p = blpos[v]
                if p >= 0:
                    bcb[p] = cb[v]
                    bsl[p] = slope[v]
                mem -= int(fp[q])
            t = t_new
        self._final(t)

    def _overtaken(self, v: int, it: int) -> int:
        """Iterations from ``it`` until a waiting tenant's counter overtakes that of ``v``,
        the smallest one, whose next request does not fit the batch: the next iteration at
        which the scheduler, retrying every iteration, could pick someone else (a tenant
        with a smaller slope: fewer running sequences or a larger weight). Ties go to the
        tenant that appeared first, as in the loop."""
        nbl = self.nbl
        p = self.blpos[v]
        vals = self.bcb[:nbl] + self.bsl[:nbl] * it
        ds = self.bsl[p] - self.bsl[:nbl]
        mask = ds > 0
        if not mask.any():
            return 1 << 62
        cross = (vals[mask] - vals[p]) / ds[mask]
        j = np.where(self.bl[:nbl][mask] < v, np.ceil(cross), np.floor(cross) + 1.0)
        return max(1, int(j.min()))

    # -- service samples --------------------------------------------------------------------

    def _service(self, iters: float) -> np.ndarray:
        return np.asarray(self.sb) + self.w_out * np.asarray(self.r, dtype=np.float64) * iters

    def _record(self, ts: float, s: np.ndarray) -> None:
        changed = np.flatnonzero(s != self.prev_s)
        if changed.size:
            gap = ts - self.prev_t
            rate = (s[changed] - self.prev_s[changed]) / gap if gap > 0 else np.full(
                changed.size, np.nan)
            self.rows.append((ts, changed, s[changed], rate))
            self.prev_s = s
        self.prev_t = ts

    def _sample(self, t: float, pt: float, k: int, t_new: float) -> None:
        while True:
            ts = self.t0 + self.sample_i * self.interval
            if ts > t_new:
                return
            frac = min(float(k), max(0.0, (ts - t - pt) * self.D))
            self._record(ts, self._service(self.iters + frac))
            self.sample_i += 1

    def _sample_idle(self, t_next: float) -> None:
        ts = self.t0 + self.sample_i * self.interval
        if ts <= t_next:
            self._record(ts, self._service(self.iters))
            self.sample_i = math.floor((t_next - self.t0) / self.interval) + 1

    def _final(self, t: float) -> None:
        if t > self.prev_t:
            self._record(t, self._service(self.iters))

    # -- result -----------------------------------------------------------------------------

    def result(self, tr: _Trace) -> SimResult:
        first = np.where(self.out == 0, np.nan, self.first)
        reqs = tr.frame.with_columns(
            pl.Series("start_s", self.start, nan_to_null=True),
            pl.Series("ttft_s", first - self.arr, nan_to_null=True),
            pl.Series("finish_s", self.finish, nan_to_null=True),
        ).with_columns(
            (pl.col("finish_s") - pl.col("arrival_s")).alias("latency_s"),
            (pl.col("start_s") - pl.col("arrival_s")).alias("queue_s"),
            pl.Series("throttled", self.throttled),
        )
        if self.rows:
            times = np.concatenate([np.full(c.size, ts) for ts, c, _, _ in self.rows])
            codes = np.concatenate([c for _, c, _, _ in self.rows])
            service = pl.DataFrame({
                "time_s": times,
                "tenant": tr.labels.gather(codes),
                "service": np.concatenate([s for _, _, s, _ in self.rows]),
                "rate": np.concatenate([x for _, _, _, x in self.rows]),
            })
        else:
            service = pl.DataFrame(schema={"time_s": pl.Float64, "tenant": pl.String,
                                           "service": pl.Float64, "rate": pl.Float64})
        return SimResult(reqs, service, _throttle_events(reqs), self.scheduler, self.w_in,
                         self.w_out, self.steps, self.iters)


def _throttle_events(reqs: pl.DataFrame) -> pl.DataFrame:
    """Runs of consecutive throttled requests of one tenant (in that tenant's arrival order)."""
    return (reqs.select("tenant", "arrival_s", "throttled").with_row_index("_i")
            .sort(["tenant", "_i"], nulls_last=True)
            .with_columns((pl.col("throttled") != pl.col("throttled").shift(1)
                           .over("tenant")).fill_null(True).cum_sum().alias("_run"))
            .filter(pl.col("throttled"))
            .group_by("tenant", "_run")
            .agg(pl.col("arrival_s").min().alias("start_s"),
                 pl.col("arrival_s").max().alias("end_s"),
                 pl.len().cast(pl.Int64).alias("requests"))
            .sort("start_s", "tenant")
            .select("tenant", "start_s", "end_s", "requests"))
