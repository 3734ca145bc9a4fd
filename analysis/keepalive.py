"""Keep-alive simulation: cold starts and idle memory of serverless keep-alive policies.

Two settings:

- **Serverless functions** (:func:`simulate`, :func:`overall`, :func:`tradeoff`) on an
  ``invocations`` table (one row per invocation, ``arrival_s``) or an ``invocation_counts``
  table (per-window counts, e.g. Azure Functions 2019's per-minute counts). Policies:
  no keep-alive, a fixed keep-alive of any length (AWS Lambda ≈ 10 min, Azure Functions
  20 min, as Shahrad et al. 2020 report) and the *hybrid histogram* policy of Shahrad et al.,
  "Serverless in the Wild: Characterizing and Optimizing the Serverless Workload at a Large
  Cloud Provider", USENIX ATC 2020 (:class:`HybridHistogram`).
- **Serverless LLM serving** (:func:`servetrace.analysis.model_loading.model_loading`, its
  own module) on a ``requests`` table: an instance is a model replica and a cold start
  loads the model's weights from a storage tier (GPU memory, host memory, SSD, remote), the
  setting of ServerlessLLM (Fu et al., "ServerlessLLM:
  Low-Latency Serverless Inference for Large Language Models", OSDI 2024) and λScale (Yu et
  al., "λScale: Enabling Fast Scaling for Serverless Large Language Model Inference", 2025).

The instance model (the simplest of Shahrad et al. 2020, whose simulation keeps one image
per app and ignores concurrency): each unit (``by``: an app, a function, a model, ...) has **one
instance**. Invocation ``i`` runs on it from its start ``t_i`` for its duration ``d_i``;
overlapping invocations share the instance. With ``M_i = max(t_j + d_j, j ≤ i)`` (the
instance's busy end after invocation ``i``), the **idle time** before invocation ``i`` is
``IT_i = t_i - M_{i-1}`` (``≤ 0``: the instance is still busy, a warm start). After each
execution the policy picks a *pre-warm window* ``P`` and a *keep-alive end* ``E ≥ P``
(seconds after ``M_{i-1}``): the instance is unloaded at ``M_{i-1}`` if ``P > 0``, loaded again
at ``M_{i-1} + P`` and unloaded at ``M_{i-1} + E``. Then

- invocation ``i`` is **cold** iff it is the unit's first, or ``IT_i > 0`` and
  ``IT_i ∉ [P, E]``;
- the instance is **alive and idle** for ``max(0, min(IT_i, E) - P)`` seconds of that gap;
  after the unit's last invocation, up to the trace end (``horizon_s``);
- **wasted memory time** ``wasted_gb_s = memory_mb / 1024 · Σ idle seconds`` (the paper's
  "wasted memory time": memory held by a loaded but idle instance); loading time is not
  counted, nor any instance before the unit's first invocation.

A fixed keep-alive ``K`` is ``P = 0, E = K``: cold iff ``IT_i > K``, idle ``clip(IT_i, 0, K)``.
``FixedKeepAlive(0)`` makes every invocation that does not overlap the previous one cold.

Per-window counts (``invocation_counts``) are spread within their window by a documented,
seeded rule, **systematic sampling with a random phase**: the ``c`` invocations of a window
``[w, w + Δ)`` start at ``w + (u + k) Δ / c`` for ``k = 0 … c-1``, with one phase
``u ~ U[0, 1)`` per (unit, window) drawn from a hash of the unit's key, the window start and
``seed`` (so it does not depend on how the work is chunked); ``spread="even"`` uses
``u = 1/2``. A window is therefore one event with closed-form inner gaps
``Δ/c - d`` and never expands into per-invocation rows. With ``by`` coarser than the
function (e.g. ``by="app"``), the functions' counts in a window are added and their
durations averaged, weighted by count.

Durations: ``invocations.duration_s``; else the function's ``duration_mean_s`` (then
``duration_p50_s``) from ``functions``; else 0 (``duration_s`` overrides all). Memory per unit:
``memory_mb`` if given; else the largest over the unit's rows of ``invocations.memory_mb``,
then ``functions``' ``memory_limit_mb``, ``memory_mean_mb``, ``memory_p50_mb`` (an app instance
holds at least its largest function; Azure 2019's per-app figure is the same on every function
of the app); else :data:`DEFAULT_MEMORY_MB`. GB means 1024 MB.

A trace becomes per-unit event arrays in :mod:`~servetrace.analysis.keepalive_events`; the
kernels, the policies and the engines' map/reduce are here.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from servetrace.analysis.engine import Engine, hash_bucket
from servetrace.analysis.frames import columns as _by_list
from servetrace.analysis.frames import lazy as _lazy
from servetrace.analysis.keepalive_events import (
    _Events,
    _events,
    _require,
    _seg_sum,
)

Frame = pl.DataFrame | pl.LazyFrame

#: Memory of an instance when neither the trace nor ``functions`` gives one, in MB
#: (AWS Lambda's smallest and default memory size).
DEFAULT_MEMORY_MB = 128.0
#: Keep-alive lengths of :func:`tradeoff`'s default curve, in seconds (0 s … 4 h).
DEFAULT_KEEP_ALIVES = (0.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)

_MB_PER_GB = 1024.0
_KEYS = ("trace", "tenant", "app", "function")
_CHUNK_ROWS = 2_000_000  # trace rows per chunk of units prepared at once (Polars)
_SLICE_EVENTS = 1_000_000  # events per slice of units in the histogram kernel (NumPy)
_PCT_SCALE = 10**8  # percentiles in units of 1e-6 %, for exact integer ranks


# -- policies --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixedKeepAlive:
    """Keep the instance loaded for ``keep_alive_s`` seconds after each execution.

    Pre-warm window 0, keep-alive window ``keep_alive_s``: the policy of AWS Lambda (about
    10 min) and Azure Functions (20 min) that Shahrad et al. (ATC 2020) compare against.
    ``FixedKeepAlive(0)`` (:data:`NoKeepAlive`) unloads the instance as soon as it is idle.
    """

    keep_alive_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.keep_alive_s) and self.keep_alive_s >= 0):
            raise ValueError(f"keep_alive_s must be finite and >= 0, got {self.keep_alive_s!r}")

    @property
    def label(self) -> str:
        """``"fixed 10 min"``, ``"no keep-alive"``, ..."""
        k = self.keep_alive_s
        if k == 0:
            return "no keep-alive"
        for unit, size in (("h", 3600.0), ("min", 60.0)):
            if k >= size and k % size == 0:
                return f"fixed {k / size:g} {unit}"
        return f"fixed {k:g} s"


#: No keep-alive: every invocation that does not overlap the previous execution is cold.
NoKeepAlive = FixedKeepAlive(0.0)


@dataclass(frozen=True)
class HybridHistogram:
    """The hybrid histogram policy of Shahrad et al., "Serverless in the Wild", USENIX ATC 2020.

    Per unit (the paper: per application) the policy keeps a histogram of idle times (ITs)
    with ``bin_s`` bins (1 min) over ``range_s`` (4 h), learned online: the windows chosen
    after invocation ``i`` use only the ITs observed up to it (causal). From the histogram,

    - pre-warm window ``P = b_head · bin_s · (1 - margin)``, ``b_head`` the bin holding the
      ``prewarm_pct`` (5th) percentile of the ITs (lower bin edge, minus a 10 % margin);
    - keep-alive end ``E = (b_tail + 1) · bin_s · (1 + margin)``, ``b_tail`` the bin holding
      the ``keepalive_pct`` (99th) percentile (upper bin edge, plus a 10 % margin);

    percentile bin ``b_p`` = the smallest bin whose cumulative count reaches ``p % ·`` the
    in-range count (ITs beyond ``range_s`` are *out of bounds*, counted apart). ``E`` is
    measured, like ``P``, from the end of the execution, so the instance lives from
    ``P`` to ``E`` (the paper's keep-alive window is ``E - P``, starting at the pre-warm).

    The histogram is used only when it is representative; otherwise the policy falls back
    to a fixed keep-alive of ``fallback_s`` (``P = 0, E = fallback_s``):

    - fewer than ``min_idle_times`` ITs observed (in or out of bounds). Not in the paper,
      whose coefficient-of-variation test alone would accept a single IT (a histogram with
      one non-empty bin has the largest possible CV); our choice;
    - more than ``oob_threshold`` of the ITs out of bounds. The paper predicts those apps'
      next IT with an ARIMA model; this simplification uses the fixed keep-alive instead;
    - coefficient of variation of the bin counts ``CV = σ / μ`` (over all ``range_s /
      bin_s`` bins, population σ) below ``cv_threshold`` (2 in the paper): a flat histogram
      has no peak to predict from. The paper falls back to a "standard keep-alive" with
      no pre-warming and the histogram's range as keep-alive; ``fallback_s = range_s``
      reproduces it, the default (600 s, the 10-min fixed policy) is this project's choice.

    With per-window counts, the idle gaps between a window's own invocations enter the
    histogram too, and it is updated once per window (minute resolution): all gaps of a
    window are judged with the histogram of the earlier windows.
    """

    range_s: float = 4 * 3600.0
    bin_s: float = 60.0
    prewarm_pct: float = 5.0
    keepalive_pct: float = 99.0
    margin: float = 0.10
    min_idle_times: int = 10
    cv_threshold: float = 2.0
    fallback_s: float = 600.0
    oob_threshold: float = 0.5

    def __post_init__(self) -> None:
        checks = {
            "range_s": self.range_s > 0 and math.isfinite(self.range_s),
            "bin_s": 0 < self.bin_s <= self.range_s,
            "prewarm_pct": 0 <= self.prewarm_pct <= 100,
            "keepalive_pct": self.prewarm_pct <= self.keepalive_pct <= 100,
            "margin": 0 <= self.margin < 1,
            "min_idle_times": self.min_idle_times >= 1,
            "cv_threshold": self.cv_threshold >= 0,
            "fallback_s": self.fallback_s >= 0 and math.isfinite(self.fallback_s),
            "oob_threshold": 0 <= self.oob_threshold <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"HybridHistogram: invalid {name} = {getattr(self, name)!r}")
        if self.bins > 1 << 20:
            raise ValueError(f"HybridHistogram: range_s / bin_s = {self.bins} bins is too many")

    @property
    def bins(self) -> int:
        """Number of histogram bins, ``ceil(range_s / bin_s)``."""
        return max(1, math.ceil(self.range_s / self.bin_s - 1e-9))

    @property
    def label(self) -> str:
        return "hybrid histogram"


Policy = FixedKeepAlive | HybridHistogram


# -- kernels ----------------------------------------------------------------------------------
@dataclass
class _Gaps:
    first: np.ndarray  # event is its unit's first
    it: np.ndarray  # idle time before the event (NaN for a first event)
    inner: np.ndarray  # idle time between the event's own invocations (h - d)
    nin: np.ndarray  # number of inner gaps (c - 1)
    last: np.ndarray  # last event of each unit
    tail: np.ndarray  # per unit: idle time from its last execution to the horizon


def _gaps(ev: _Events) -> _Gaps:
    n = len(ev.s)
    first = np.zeros(n, bool)
    first[ev.starts] = True
    it = np.empty(n)
    it[0] = np.nan
    it[1:] = ev.s[1:] - ev.busy[:-1]
    it[first] = np.nan
    last = np.r_[ev.starts[1:], n] - 1
    return _Gaps(first, it, ev.h - ev.d, ev.c - 1, last, ev.horizon - ev.busy[last])


def _alive(x: np.ndarray, p: np.ndarray | float, e: np.ndarray | float) -> np.ndarray:
    """Seconds of an idle gap of length ``x`` the instance is loaded: ``[p, e] ∩ [0, x]``."""
    return np.where(x > 0, np.maximum(np.minimum(x, e) - p, 0.0), 0.0)


def _cold(x: np.ndarray, p: np.ndarray | float, e: np.ndarray | float) -> np.ndarray:
    """A gap of ``x`` ends in a cold start: the instance is idle and not loaded."""
    return (x > 0) & ((x < p) | (x > e))


@dataclass
class _Result:
    invocations: np.ndarray
    cold_starts: np.ndarray
    idle_s: np.ndarray
    gaps: np.ndarray
    histogram_gaps: np.ndarray


def _apply(ev: _Events, g: _Gaps, p, e, p_tail, e_tail, hist=None) -> _Result:
    """Per-unit totals for windows ``(p, e)`` per event and ``(p_tail, e_tail)`` per unit."""
    it = np.where(g.first, 0.0, g.it)
    cold = (g.first | _cold(it, p, e)).astype(np.int64)
    cold += np.where(_cold(g.inner, p, e), g.nin, 0)
    idle = _alive(it, p, e) + g.nin * _alive(g.inner, p, e)
    red = np.add.reduceat
    gaps = red((~g.first).astype(np.int64), ev.starts)
    hg = red((hist & ~g.first).astype(np.int64), ev.starts) if hist is not None else 0 * gaps
    return _Result(red(ev.c, ev.starts), red(cold, ev.starts),
                   _seg_sum(idle, ev.starts) + _alive(g.tail, p_tail, e_tail), gaps, hg)



def _fixed(ev: _Events, pol: FixedKeepAlive) -> _Result:
    k = float(pol.keep_alive_s)
    return _apply(ev, _gaps(ev), 0.0, k, 0.0, k)


def _wavelet(values: np.ndarray, weights: np.ndarray, bits: int
             ) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """A weighted wavelet matrix of ``values`` (Claude & Navarro, SPIRE 2012), for k-th
    smallest queries over any index range in ``bits`` steps; per level, from the top bit:
    zeros before position p (``r0c``), their total weight (``r0w``), number of zeros."""
    levels = []
    v, w = values, weights
    for bit in range(bits - 1, -1, -1):
        one = ((v >> bit) & 1).astype(bool)
        zero = ~one
        r0c = np.zeros(len(v) + 1, np.int64)
        np.cumsum(zero, out=r0c[1:])
        r0w = np.zeros(len(v) + 1, np.int64)
        np.cumsum(np.where(zero, w, 0), out=r0w[1:])
        levels.append((r0c, r0w, int(r0c[-1])))
        order = np.concatenate([np.flatnonzero(zero), np.flatnonzero(one)])
        v, w = v[order], w[order]
    return levels


def _kth(levels: list[tuple[np.ndarray, np.ndarray, int]], lo: np.ndarray, hi: np.ndarray,
         k: np.ndarray) -> np.ndarray:
    """Per query, the smallest value whose cumulative weight over ``[lo, hi)`` reaches ``k``
    (``1 ≤ k ≤`` the range's weight)."""
    bits = len(levels)
    res = np.zeros(len(lo), np.int64)
    for i, (r0c, r0w, nz) in enumerate(levels):
        z = r0w[hi] - r0w[lo]
        right = k > z
        l0, h0 = r0c[lo], r0c[hi]
        lo = np.where(right, nz + lo - l0, l0)
        hi = np.where(right, nz + hi - h0, h0)
        k = np.where(right, k - z, k)
        res |= right.astype(np.int64) << (bits - 1 - i)
    return res


def _rank(pct: float, total: np.ndarray) -> np.ndarray:
    """``max(1, ceil(pct / 100 · total))`` in exact integer arithmetic."""
    scaled = round(pct * 1e6)
    return np.maximum(1, -((-scaled * total) // _PCT_SCALE))


def _percentile_bins(b: np.ndarray, wgt: np.ndarray, nb: int, lo: np.ndarray, hi: np.ndarray,
                     total: np.ndarray, pcts: Sequence[float]) -> list[np.ndarray]:
    """Per query and percentile, the bin holding the percentile of the in-range ITs
    (weights ``wgt``, bins ``b``, ``nb`` = out of bounds) at element positions ``[lo, hi)``.

    Bin 0 (the commonest: ITs under a minute, every inner gap of a busy window) is counted
    by a prefix sum; only the other ITs go into the wavelet matrix, whose top value is the
    largest bin present (out-of-bounds ITs just above it, never selected: ranks stay within
    the in-range weight), so it has as few levels as the data allow."""
    zero = b == 0
    c_zero = np.zeros(len(b) + 1, np.int64)
    np.cumsum(np.where(zero, wgt, 0), out=c_zero[1:])
    rest = ~zero
    pos = np.zeros(len(b) + 1, np.int64)
    np.cumsum(rest, out=pos[1:])
    vals = b[rest]
    inr = vals < nb
    top = int(vals[inr].max()) if inr.any() else 0
    vals = np.where(inr, vals, top + 1)
    levels = _wavelet(vals, wgt[rest], max(1, (top + 1).bit_length())) if len(vals) else []
    z = c_zero[hi] - c_zero[lo]
    out = []
    for pct in pcts:
        k = _rank(pct, total)
        res = np.zeros(len(lo), np.int64)
        need = np.flatnonzero(k > z)
        if len(need):
            res[need] = _kth(levels, pos[lo[need]], pos[hi[need]], (k - z)[need])
        out.append(res)
    return out


def _hybrid(ev: _Events, pol: HybridHistogram) -> _Result:
    """The hybrid histogram policy over whole units: per event, the windows from the ITs of
    the unit's earlier events (prefix sums and a wavelet matrix over the ITs in event
    order; no loop over events)."""
    g = _gaps(ev)
    n = len(ev.s)
    nb = pol.bins
    has_b = ~g.first
    has_w = g.nin > 0
    per = has_b.astype(np.int64) + has_w
    off = np.cumsum(per) - per  # first IT element of each event
    m = int(per.sum())
    val = np.empty(m)
    wgt = np.empty(m, np.int64)
    ib = off[has_b]
    val[ib] = g.it[has_b]
    wgt[ib] = 1
    iw = (off + has_b)[has_w]
    val[iw] = g.inner[has_w]
    wgt[iw] = g.nin[has_w]
    eu = np.repeat(ev.unit, per)
    b = np.floor(np.maximum(val, 0.0) / pol.bin_s)
    b = np.where(b >= nb, nb, b).astype(np.int64)  # nb: out of bounds
    inr = b < nb
    c_in = np.zeros(m + 1, np.int64)
    np.cumsum(np.where(inr, wgt, 0), out=c_in[1:])
    c_oob = np.zeros(m + 1, np.int64)
    np.cumsum(np.where(inr, 0, wgt), out=c_oob[1:])
    # sum of squared bin counts: adding w to a bin holding n adds 2nw + w²
    key = eu * (nb + 1) + b
    order = np.argsort(key, kind="stable")
    ks, ws = key[order], wgt[order]
    cs = np.cumsum(ws)
    head = np.maximum.accumulate(np.where(np.r_[True, ks[1:] != ks[:-1]], np.arange(m), 0))
    before = cs - ws - (cs[head] - ws[head])
    dq = np.empty(m, np.int64)
    dq[order] = np.where(ks % (nb + 1) < nb, 2 * before * ws + ws * ws, 0)
    c_q = np.zeros(m + 1, np.int64)
    np.cumsum(dq, out=c_q[1:])
    # queries: before each event, then after each unit's last event (its tail gap)
    ulo = off[ev.starts]
    lo = np.concatenate([ulo[ev.unit], ulo])
    hi = np.concatenate([off, off[g.last] + per[g.last]])
    s_in = c_in[hi] - c_in[lo]
    s_oob = c_oob[hi] - c_oob[lo]
    q = c_q[hi] - c_q[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s_in / nb
        cv = np.sqrt(np.maximum(q / nb - mean * mean, 0.0)) / mean
    total = s_in + s_oob
    ok = ((total >= pol.min_idle_times) & (s_in > 0) & (s_oob <= pol.oob_threshold * total)
          & (cv >= pol.cv_threshold))
    p = np.zeros(len(lo))
    e = np.full(len(lo), float(pol.fallback_s))
    idx = np.flatnonzero(ok)
    if len(idx):
        b_head, b_tail = _percentile_bins(b, wgt, nb, lo[idx], hi[idx], s_in[idx],
                                          (pol.prewarm_pct, pol.keepalive_pct))
        p[idx] = b_head * pol.bin_s * (1.0 - pol.margin)
        e[idx] = (b_tail + 1) * pol.bin_s * (1.0 + pol.margin)
    return _apply(ev, g, p[:n], e[:n], p[n:], e[n:], ok[:n])


def _run(ev: _Events, pol: Policy) -> _Result:
    if isinstance(pol, FixedKeepAlive):
        return _fixed(ev, pol)
    if not isinstance(pol, HybridHistogram):
        raise ValueError(f"policy must be FixedKeepAlive or HybridHistogram, got {pol!r}")
    # slices of whole units, to bound the memory of the per-IT arrays
    parts, u0, n_units = [], 0, len(ev.starts)
    while u0 < n_units:
        u1 = int(np.searchsorted(ev.starts, ev.starts[u0] + _SLICE_EVENTS, side="left"))
        u1 = min(max(u1, u0 + 1), n_units)
        parts.append(_hybrid(ev.view(u0, u1), pol))
        u0 = u1
    return _Result(*(np.concatenate([getattr(r, f) for r in parts])
                     for f in ("invocations", "cold_starts", "idle_s", "gaps", "histogram_gaps")))


# -- public API -------------------------------------------------------------------------------
def _simulate_many(trace: Frame, policies: Sequence[Policy], by: str | Sequence[str] | None,
                   memory_mb: float | None, functions: Frame | None, seed: int,
                   duration_s: float | None, horizon_s: float | None, spread: str,
                   chunk_rows: int, engine: Engine | None = None, partitions: int | None = None,
                   scratch: str | Path | None = None, *, empty_ok: bool = False
                   ) -> list[pl.DataFrame]:
    cols = _by_list(by)
    if memory_mb is not None and not (math.isfinite(memory_mb) and memory_mb > 0):
        raise ValueError(f"memory_mb must be finite and > 0, got {memory_mb!r}")
    for pol in policies:
        if not isinstance(pol, FixedKeepAlive | HybridHistogram):
            raise ValueError(f"policy must be FixedKeepAlive or HybridHistogram, got {pol!r}")
    if engine is not None:
        return _simulate_on(engine, trace, policies, cols, memory_mb, functions, seed,
                            duration_s, horizon_s, spread, chunk_rows, partitions, scratch)
    keys, mems = [], []
    results: list[list[_Result]] = [[] for _ in policies]
    for ev in _events(trace, cols, functions=functions, duration_s=duration_s,
                      horizon_s=horizon_s, spread=spread, seed=seed, chunk_rows=chunk_rows):
        keys.append(ev.keys)
        mems.append(ev.memory_mb)
        for i, pol in enumerate(policies):
            results[i].append(_run(ev, pol))
    if not keys:
        if empty_ok:
            return []
        raise ValueError("trace: no invocations (every count is 0)")
    key = pl.concat(keys) if cols else pl.DataFrame({"_": np.zeros(sum(len(m) for m in mems))})
    mem = np.concatenate(mems)
    if memory_mb is not None:
        mem = np.full(len(mem), float(memory_mb))
    mem = np.where(np.isfinite(mem) & (mem > 0), mem, DEFAULT_MEMORY_MB)
    order = (key.with_row_index("_i").sort(cols)["_i"].to_numpy() if cols
             else np.arange(len(mem)))
    out = []
    for res in results:
        r = _Result(*(np.concatenate([getattr(x, f) for x in res])
                      for f in ("invocations", "cold_starts", "idle_s", "gaps",
                                "histogram_gaps")))
        frame = pl.DataFrame({
            "invocations": r.invocations,
            "cold_starts": r.cold_starts,
            "cold_fraction": r.cold_starts / r.invocations,
            "wasted_gb_s": r.idle_s * mem / _MB_PER_GB,
            "idle_s": r.idle_s,
            "memory_mb": mem,
            "histogram_fraction": np.where(r.gaps > 0, r.histogram_gaps / np.maximum(r.gaps, 1),
                                           0.0),
        }, schema={"invocations": pl.Int64, "cold_starts": pl.Int64,
                   "cold_fraction": pl.Float64, "wasted_gb_s": pl.Float64,
                   "idle_s": pl.Float64, "memory_mb": pl.Float64,
                   "histogram_fraction": pl.Float64})
        frame = pl.concat([key.select(cols), frame], how="horizontal") if cols else frame
        out.append(frame[order])
    return out


# -- partitioned over an engine ------------------------------------------------------------------
@dataclass(frozen=True)
class _Shuffle:
    """What a map task of :func:`_simulate_on` needs: the columns the simulation reads, how a
    row's end time is computed (for the horizon), the unit key and where buckets go."""

    cols: tuple[str, ...]
    by: tuple[str, ...]
    end: str  # "window" (window_start_s + window_s), "duration" (arrival_s + duration_s), "fixed"
    duration_s: float
    traces: bool  # collect the trace ids (a frame must hold one trace unless by has "trace")
    buckets: int
    scratch: str


def _shuffle_slice(span: tuple[int, int], source: Frame, plan: _Shuffle
                   ) -> tuple[float | None, list[str], int]:
    """Map task: rows ``[lo, lo + n)`` of ``source`` (only the needed columns; a Parquet scan
    reads only the row groups that hold them), split by :func:`hash_bucket` of the unit key
    into ``scratch/b<bucket>/s<lo>.parquet``. Returns the slice's latest end, its trace ids
    and its row count."""
    lo, n = span
    df = _lazy(source, "trace").slice(lo, n).select(plan.cols).collect()
    if df.height == 0:
        return None, [], 0
    if plan.end == "window":
        end = pl.col("window_start_s") + pl.col("window_s")
    elif plan.end == "duration":
        end = pl.col("arrival_s") + pl.col("duration_s").fill_null(0.0)
    else:
        end = pl.col("arrival_s") + plan.duration_s
    last = df.select(end.max()).item()
    traces = (df["trace"].cast(pl.String).unique().drop_nulls().to_list()
              if plan.traces else [])
    parts = df.with_columns(hash_bucket(plan.by, plan.buckets).alias("_b")).partition_by(
        "_b", as_dict=True, include_key=False)
    for (b,), part in parts.items():
        folder = Path(plan.scratch) / f"b{b:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / f"s{lo:015d}.parquet", statistics=False)
    return last, traces, df.height


def _simulate_bucket(bucket: int, plan: _Shuffle, policies: Sequence[Policy],
                     options: dict) -> list[pl.DataFrame]:
    """Reduce task: the units of one bucket, simulated as :func:`simulate` does in one process
    (its files in slice order, so the rows keep the trace's order)."""
    files = sorted((Path(plan.scratch) / f"b{bucket:05d}").glob("s*.parquet"))
    if not files:
        return []
    return _simulate_many(pl.scan_parquet(files), policies, list(plan.by), empty_ok=True,
                          **options)


def _simulate_on(engine: Engine, trace: Frame, policies: Sequence[Policy], by: list[str],
                 memory_mb: float | None, functions: Frame | None, seed: int,
                 duration_s: float | None, horizon_s: float | None, spread: str,
                 chunk_rows: int, partitions: int | None, scratch: str | Path | None
                 ) -> list[pl.DataFrame]:
    """:func:`_simulate_many` as a two-round map/reduce on ``engine`` (see :func:`simulate`).

    Round 1 (map): ``partitions`` row slices of the trace, each read once by its task, are
    split by unit-key hash into ``partitions`` buckets of Parquet files under ``scratch``.
    Round 2 (reduce): one task per bucket simulates its units; every unit lies whole in one
    bucket, and a unit's result depends only on its own rows, the seed and the horizon (the
    phase rule hashes the unit's key, not its chunk), so concatenating the buckets' rows and
    sorting by ``by`` gives the one-process result exactly."""
    lf = _lazy(trace, "trace")
    schema = lf.collect_schema()
    if "arrival_s" in schema:
        need = ["arrival_s"]
        end = "fixed" if duration_s is not None or "duration_s" not in schema else "duration"
    elif "window_start_s" in schema or "count" in schema:
        need = ["window_start_s", "window_s", "count"]
        end = "window"
    else:
        raise ValueError("trace: missing column 'arrival_s' (invocations) or "
                         "'window_start_s' and 'count' (invocation_counts)")
    _require(schema, need + by, "trace")
    extra = [*_KEYS, *(("duration_s", "memory_mb") if end != "window" else ())]
    cols = tuple(dict.fromkeys([*by, *need, *(c for c in extra if c in schema)]))
    n_rows = lf.select(pl.len()).collect().item()
    if n_rows == 0:
        raise ValueError("trace: no rows")
    n_parts = partitions if partitions is not None else 4 * engine.workers
    if n_parts < 1:
        raise ValueError(f"partitions must be >= 1, got {n_parts}")
    fx = _lazy(functions, "functions").collect() if functions is not None else None
    own = tempfile.mkdtemp(prefix="servetrace-shuffle-", dir=scratch)
    try:
        plan = _Shuffle(cols, tuple(by), end, float(duration_s or 0.0),
                        "trace" in schema and "trace" not in by, n_parts, own)
        step = math.ceil(n_rows / n_parts)
        spans = [(lo, step) for lo in range(0, n_rows, step)]
        mapped = engine.map(_shuffle_slice, spans, trace, plan)
        traces = set().union(*(t for _, t, _ in mapped))
        if len(traces) > 1:
            raise ValueError(f"trace: {len(traces)} traces in one frame; add 'trace' to by")
        if horizon_s is None:
            ends = [e for e, _, n in mapped if n and e is not None]
            horizon_s = max(ends) if ends else None
            if horizon_s is None or not math.isfinite(horizon_s):
                raise ValueError(f"trace: cannot find the trace end (horizon_s = {horizon_s!r})")
        options = {"memory_mb": memory_mb, "functions": fx, "seed": seed,
                   "duration_s": duration_s, "horizon_s": float(horizon_s), "spread": spread,
                   "chunk_rows": chunk_rows}
        reduced = [r for r in engine.map(_simulate_bucket, range(n_parts), plan, policies,
                                         options) if r]
    finally:
        shutil.rmtree(own, ignore_errors=True)
    if not reduced:
        raise ValueError("trace: no invocations (every count is 0)")
    out = []
    for i in range(len(policies)):
        frame = pl.concat([r[i] for r in reduced])
        if by:
            frame = frame.with_columns(pl.col(c).cast(schema[c]) for c in by).sort(by)
        out.append(frame)
    return out


def simulate(trace: Frame, policy: Policy, by: str | Sequence[str] | None = "app",
             memory_mb: float | None = None, functions: Frame | None = None, seed: int = 0,
             *, duration_s: float | None = None, horizon_s: float | None = None,
             spread: str = "phase", chunk_rows: int = _CHUNK_ROWS, engine: Engine | None = None,
             partitions: int | None = None, scratch: str | Path | None = None) -> pl.DataFrame:
    """Simulate a keep-alive policy per unit: cold starts and idle memory-time.

    ``trace`` is an ``invocations`` table (``arrival_s``, optionally ``duration_s`` and
    ``memory_mb``) or an ``invocation_counts`` table (``window_start_s``, ``window_s``,
    ``count``), eager or lazy (a LazyFrame is collected once, needed columns only). The
    instance model, the policies and the rule that spreads counts within their window are in
    the module docstring; :class:`HybridHistogram` cites Shahrad et al., ATC 2020.

    Per unit of ``by`` (``None``: the whole trace is one unit)::

        cold_fraction = cold_starts / invocations
        idle_s        = Σ seconds the instance is loaded but not executing (up to horizon_s)
        wasted_gb_s   = memory_mb / 1024 · idle_s

    Args:
        policy: :class:`FixedKeepAlive` (:data:`NoKeepAlive` = 0 s) or :class:`HybridHistogram`.
        by: the unit that owns one instance: ``"app"`` (the paper's choice), ``"function"``...
        memory_mb: memory of every instance; default: from the trace / ``functions``, else
            :data:`DEFAULT_MEMORY_MB`.
        functions: the ``functions`` table, for durations and memory (matched on the
            ``trace``/``tenant``/``app``/``function`` columns both have).
        seed: seeds the phases that spread per-window counts (same seed, same output).
        duration_s: execution time of every invocation, overriding the trace's.
        horizon_s: end of the simulated time; default the trace end (last window's end, or
            last arrival plus its duration).
        spread: ``"phase"`` (systematic with a seeded random phase) or ``"even"`` (phase 1/2).
        chunk_rows: trace rows per chunk of units (bounds memory; no effect on results).
        engine: run the units as ``partitions`` parallel tasks on an
            :class:`~servetrace.analysis.engine.Engine` (``RayEngine`` for a cluster): the
            trace's rows are read once, in ``partitions`` slices, and regrouped by a hash of
            the unit key into Parquet files under ``scratch`` (a temporary folder inside it,
            removed afterwards; on a cluster, a folder every worker sees), then each group of
            units is simulated by one task. Same result as without an engine, exactly.
            ``None`` (default): in this process, no intermediate files.
        partitions: slices and unit groups (default 4 per engine worker).
        scratch: folder for the regrouped rows (default: the system's temporary folder).

    Returns:
        One row per unit, sorted by ``by``: the ``by`` columns, ``invocations``,
        ``cold_starts``, ``cold_fraction``, ``wasted_gb_s``, ``idle_s``, ``memory_mb``,
        ``histogram_fraction`` (share of the unit's idle gaps whose windows came from its
        histogram rather than the fallback; 0 for a fixed policy).

    Raises:
        ValueError: a missing column, an empty trace, an invalid parameter, negative
            durations, several traces in one frame without ``"trace"`` in ``by``.
    """
    return _simulate_many(trace, [policy], by, memory_mb, functions, seed, duration_s,
                          horizon_s, spread, chunk_rows, engine, partitions, scratch)[0]


@dataclass(frozen=True)
class Overall:
    """Totals over units and the distribution of the per-unit cold-start fraction.

    ``p75_app_cold_fraction`` is the 3rd-quartile app cold-start percentage that Shahrad et
    al. (ATC 2020) use to compare policies ("app" stands for the unit).
    """

    units: int
    invocations: int
    cold_starts: int
    cold_fraction: float
    wasted_gb_s: float
    mean_app_cold_fraction: float
    p25_app_cold_fraction: float
    p50_app_cold_fraction: float
    p75_app_cold_fraction: float
    p90_app_cold_fraction: float
    p99_app_cold_fraction: float


def overall(per_app: pl.DataFrame) -> Overall:
    """Summarize :func:`simulate`'s per-unit frame.

    ``cold_fraction = Σ cold_starts / Σ invocations`` (invocation-weighted), ``wasted_gb_s =
    Σ wasted_gb_s``; the per-unit ``cold_fraction`` percentiles (linear interpolation) and
    mean weight every unit alike, as in Shahrad et al. (ATC 2020).
    """
    if not isinstance(per_app, pl.DataFrame):
        raise ValueError("per_app must be a polars DataFrame (the output of simulate)")
    _require(per_app.schema, ["invocations", "cold_starts", "cold_fraction", "wasted_gb_s"],
             "per_app")
    if per_app.height == 0:
        raise ValueError("per_app: no rows")
    f = pl.col("cold_fraction")
    row = per_app.select(
        pl.len().alias("units"), pl.col("invocations").sum(), pl.col("cold_starts").sum(),
        pl.col("wasted_gb_s").sum(), f.mean().alias("mean"),
        *[f.quantile(q / 100, "linear").alias(f"p{q}") for q in (25, 50, 75, 90, 99)],
    ).row(0, named=True)
    inv = int(row["invocations"])
    return Overall(
        units=int(row["units"]), invocations=inv, cold_starts=int(row["cold_starts"]),
        cold_fraction=row["cold_starts"] / inv if inv else float("nan"),
        wasted_gb_s=float(row["wasted_gb_s"]), mean_app_cold_fraction=float(row["mean"]),
        **{f"p{q}_app_cold_fraction": float(row[f"p{q}"]) for q in (25, 50, 75, 90, 99)})


def tradeoff(trace: Frame, keep_alive_s: Sequence[float] = DEFAULT_KEEP_ALIVES,
             by: str | Sequence[str] | None = "app", include_hybrid: bool = True,
             hybrid: HybridHistogram | None = None, memory_mb: float | None = None,
             functions: Frame | None = None, seed: int = 0, *, reference_s: float = 600.0,
             duration_s: float | None = None, horizon_s: float | None = None,
             spread: str = "phase", chunk_rows: int = _CHUNK_ROWS, engine: Engine | None = None,
             partitions: int | None = None, scratch: str | Path | None = None) -> pl.DataFrame:
    """The cold-start / wasted-memory trade-off across fixed keep-alive lengths (and hybrid).

    Each policy is simulated as in :func:`simulate` (the trace is prepared once; with an
    ``engine``, once per partition, as there). As in
    Shahrad et al. (ATC 2020), wasted memory is normalized to the fixed 10-minute
    policy: ``wasted_normalized = wasted_gb_s / wasted_gb_s(FixedKeepAlive(reference_s))``.

    Returns:
        One row per policy (fixed ones by increasing ``keep_alive_s``, then the hybrid):
        ``policy`` ("fixed" or "hybrid"), ``label``, ``keep_alive_s`` (null for the hybrid),
        ``invocations``, ``cold_starts``, ``cold_fraction`` (overall), ``p75_app_cold_fraction``,
        ``wasted_gb_s``, ``wasted_normalized``. Longer fixed keep-alives never give more cold
        starts nor less wasted memory.
    """
    lengths = sorted({float(k) for k in keep_alive_s})
    if not lengths and not include_hybrid:
        raise ValueError("tradeoff: no keep_alive_s and include_hybrid=False: nothing to run")
    pols: list[Policy] = [FixedKeepAlive(k) for k in lengths]
    if include_hybrid:
        pols.append(hybrid if hybrid is not None else HybridHistogram())
    extra = float(reference_s) not in lengths
    if extra:
        pols.append(FixedKeepAlive(float(reference_s)))
    frames = _simulate_many(trace, pols, by, memory_mb, functions, seed, duration_s, horizon_s,
                            spread, chunk_rows, engine, partitions, scratch)
    stats = [overall(f) for f in frames]
    ref = stats[-1] if extra else stats[lengths.index(float(reference_s))]
    shown = pols[:-1] if extra else pols
    return pl.DataFrame({
        "policy": ["fixed" if isinstance(p, FixedKeepAlive) else "hybrid" for p in shown],
        "label": [p.label for p in shown],
        "keep_alive_s": [p.keep_alive_s if isinstance(p, FixedKeepAlive) else None
                         for p in shown],
        "invocations": [s.invocations for s in stats[:len(shown)]],
        "cold_starts": [s.cold_starts for s in stats[:len(shown)]],
        "cold_fraction": [s.cold_fraction for s in stats[:len(shown)]],
        "p75_app_cold_fraction": [s.p75_app_cold_fraction for s in stats[:len(shown)]],
        "wasted_gb_s": [s.wasted_gb_s for s in stats[:len(shown)]],
        "wasted_normalized": [s.wasted_gb_s / ref.wasted_gb_s if ref.wasted_gb_s > 0
                              else float("nan") for s in stats[:len(shown)]],
    }, schema={"policy": pl.String, "label": pl.String, "keep_alive_s": pl.Float64,
               "invocations": pl.Int64, "cold_starts": pl.Int64, "cold_fraction": pl.Float64,
               "p75_app_cold_fraction": pl.Float64, "wasted_gb_s": pl.Float64,
               "wasted_normalized": pl.Float64})
