"""What per-invocation times resolve below the window, for :func:`servetrace.synth.serverless.fit`:
timers anchored to the clock, each function's own within-window spacing, closed loops.

A per-minute trace (Azure Functions 2019) sees a timer as a function active every g-th
minute; per-invocation times (Azure Functions 2021, Zhang et al., SOSP 2021) show more, and
the minute grid gets some of it wrong:

* **Timers on exact times** (:func:`exact_timers`). Azure's timers fire on the wall clock: a
  60 s timer fires a few milliseconds past every minute, so on the minute grid its firings
  straddle window edges (windows of 0 and 2) and the grid test of
  :func:`~servetrace.synth.serverless_counts.detect_periodic` can miss it; and a timer's
  firings are not all on time: some are displaced by seconds to minutes, some missed.
  Invocations less than :data:`SAME_FIRING_S` apart are one firing; the period P₀ is the
  median gap between firings and the phase φ₀ the circular mean of the firing times mod P₀
  (Mardia & Jupp 2000); each firing is assigned its due firing k = round((t − φ)/P) and
  its offset e = t − φ − kP. P and φ are refitted by least squares on the firings within
  :data:`EXACT_TOL` · P of their due time (a clock-anchored timer: t_k = φ + kP + ε_k, so
  a period error does not accumulate over the trace), :data:`REFINE` times (the median
  gap's error drifts late firings off their due times; each round brings more back). A
  function is a timer when at least ``TIMER_SHARE`` of its firings (and at least
  ``MIN_FIRINGS``, both of :mod:`~servetrace.synth.serverless_counts`) are that close: a
  Poisson function's firing is that close with probability 2 · EXACT_TOL. Fitted per
  timer: period, phase, the missed-firing probability (due firings between the first and
  the last without an invocation; ``fit`` restates it over the timer's alive stretch), the
  invocations per firing (``BATCH_SIZE`` quantiles) and the offsets of its firings from
  their due times (:data:`OFFSET_SIZE` quantiles: the millisecond jitter of the scheduler
  and the displaced firings together), drawn per firing at sampling.
  :func:`with_exact_timers` puts them in place of the window grid's detection.
* **Timer lifetimes** (:func:`timer_lifetimes`, every timer, per-window traces included, read
  from the timers' own count cells): a timer seen in part of the trace fires in one stretch.
* **Within-window spacing per function** (:func:`fit_kappa`): the symmetric Dirichlet(κ)
  spacing of :class:`~servetrace.synth.serverless.WithinWindow`, fitted per function by
  maximum likelihood on that function's own windows of two invocations or more (at least
  :data:`MIN_WITHIN_GAPS` inner gaps; the others keep the trace's κ). One κ for the whole
  trace mixes fan-out bursts (many invocations milliseconds apart: κ → 0) with steady
  functions (gaps close to even: κ large) and gets both wrong.

* **Closed loops** (:func:`closed_loop`): a function whose next invocation starts when the
  previous one ends (gaps = duration + a nearly constant idle time) is sampled as that
  chain, the durations it draws setting its arrivals, instead of arrivals drawn apart from
  durations: the idle times a keep-alive policy sees are the loop's milliseconds, not the
  gaps' seconds.

Everything is vectorized over functions (Polars group-bys; the κ equation is solved by
bisection on all functions at once). Only the per-invocation times, keys and window are read,
so the dense :class:`~servetrace.synth.serverless_counts.Grid` and the sparse
:class:`~servetrace.synth.serverless_cells.Cells` serve alike; every figure is a function's
own, whatever chunks of functions the caller fits in.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import special

from servetrace.synth.serverless_cells import Cells, _ranges
from servetrace.synth.serverless_counts import BATCH_SIZE, MIN_FIRINGS, TIMER_SHARE, Grid

OFFSET_SIZE = 16
"""Quantiles of a timer's firing offsets from their due times kept per timer."""
EXACT_TOL = 0.01
"""A firing within this share of the period of its due time is on time."""
SAME_FIRING_S = 1.0
"""Invocations of a function closer than this are one firing (its batch)."""
MIN_WITHIN_GAPS = 10
"""Fewest within-window gaps for a function's own κ."""
MIN_LOOP_GAPS = 20
"""Fewest gaps for a closed-loop test."""
LOOP_SD_RATIO = 0.25
"""A closed loop's idle times vary at most this share of its gaps' standard deviation."""
LOOP_OVERLAP_S = 0.01
"""Idle times down to minus this count as starting after the previous end (clock rounding)."""
IDLE_SIZE = 16
"""Quantiles of a closed loop's idle times kept per function."""
REFINE = 3
"""Rounds of due-firing assignment and least squares in :func:`exact_timers`."""
KAPPA_RANGE = (1e-3, 1e3)
"""Bounds of a fitted κ."""
LIFETIME_CELLS = 1 << 24
"""Cells of timers :func:`timer_lifetimes` reads per chunk (a timer at most every window)."""


def exact_timers(g: Grid | Cells) -> pl.DataFrame:
    """Clock-anchored timers from per-invocation times (module doc).

    Returns one row per function with three firings or more: fid, periodic, period_s,
    phase_s (first due firing in [0, period) after the grid's origin), window_phase_s,
    miss, share (of firings on time), batch (``BATCH_SIZE`` quantiles) and offset
    (``OFFSET_SIZE`` quantiles, seconds)."""
    if g.times is None:
        raise ValueError("exact_timers: needs per-invocation times (an invocations table)")
    t = (g.times.select("fid", "arrival_s").sort("fid", "arrival_s")
         .with_columns(pl.col("arrival_s").diff().over("fid").alias("gap")))
    fire = t.filter(pl.col("gap").is_null() | (pl.col("gap") >= SAME_FIRING_S)).with_columns(
        pl.col("arrival_s").diff().over("fid").alias("fg"))
    first = fire.group_by("fid").agg(pl.col("fg").drop_nulls().median().alias("p0"),
                                     pl.len().alias("n"))
    first = first.filter((pl.col("n") >= 3) & (pl.col("p0") >= 2 * SAME_FIRING_S))
    two_pi = 2 * math.pi
    ang = two_pi * (pl.col("arrival_s") % pl.col("p0")) / pl.col("p0")
    phase0 = (fire.join(first, on="fid").group_by("fid").agg(
        pl.arctan2(ang.sin().sum(), ang.cos().sum()).alias("a"), pl.col("p0").first())
        .select("fid", "p0", ((pl.col("a") % two_pi) / two_pi * pl.col("p0")).alias("phi0")))

    def assign(frame: pl.DataFrame, period: str, phase: str) -> pl.DataFrame:
        k = ((pl.col("arrival_s") - pl.col(phase)) / pl.col(period)).round()
        return frame.with_columns(k.alias("k")).with_columns(
            (pl.col("arrival_s") - pl.col(phase) - pl.col("k") * pl.col(period)).alias("e"))

    ls = phase0.select("fid", pl.col("p0").alias("period_s"), pl.col("phi0").alias("phi"),
                       "p0")
    for _ in range(REFINE):  # a period error drifts the due times: refit, widen, refit
        f0 = assign(fire.join(ls, on="fid"), "period_s", "phi")
        core = f0.filter(pl.col("e").abs() <= EXACT_TOL * pl.col("period_s"))
        # least squares t = φ + kP on the on-time firings (anchored: no accumulated drift)
        fit_ = core.group_by("fid").agg(
            pl.cov("k", "arrival_s").alias("c"), pl.col("k").var().alias("v"),
            pl.col("k").mean().alias("km"), pl.col("arrival_s").mean().alias("tm"),
            pl.col("p0").first())
        fit_ = fit_.with_columns(pl.when(pl.col("v") > 0).then(pl.col("c") / pl.col("v"))
                                 .otherwise(pl.col("p0")).alias("period_s"))
        ls = fit_.select("fid", "period_s",
                         (pl.col("tm") - pl.col("km") * pl.col("period_s")).alias("phi"), "p0")
    ls = ls.drop("p0")
    f1 = assign(fire.join(ls, on="fid"), "period_s", "phi")
    on_time = (pl.col("e").abs() <= EXACT_TOL * pl.col("period_s"))
    per = f1.group_by("fid").agg(
        pl.len().alias("firings"), on_time.mean().alias("share"),
        pl.col("k").n_unique().alias("due_hit"),
        (pl.col("k").max() - pl.col("k").min() + 1).alias("due"),
        pl.col("k").min().alias("k0"), pl.col("period_s").first(), pl.col("phi").first(),
        *[pl.col("e").quantile((j + 0.5) / OFFSET_SIZE, "nearest").alias(f"o{j}")
          for j in range(OFFSET_SIZE)])
    # every invocation (batches included) counted at its due firing
    inv = assign(t.join(ls, on="fid"), "period_s", "phi").group_by("fid", "k").len()
    batch = inv.group_by("fid").agg(
        pl.col("len").quantile((j + 0.5) / BATCH_SIZE, "nearest").alias(f"b{j}")
        for j in range(BATCH_SIZE))
    per = per.join(batch, on="fid").sort("fid")
    period = per["period_s"].to_numpy()
    phase = (per["phi"].to_numpy() + per["k0"].to_numpy() * period)  # first due firing
    phase = np.mod(phase, period)
    return pl.DataFrame({
        "fid": per["fid"],
        "periodic": ((per["firings"].to_numpy() >= MIN_FIRINGS)
                     & (per["share"].to_numpy() >= TIMER_SHARE)),
        "period_s": period, "phase_s": phase,
        "window_phase_s": np.floor(phase / g.window_s) * g.window_s,
        "miss": 1 - per["due_hit"].to_numpy() / per["due"].to_numpy(),
        "share": per["share"].to_numpy(),
        "batch": per.select(f"b{j}" for j in range(BATCH_SIZE)).to_numpy().astype(np.float64),
        "offset": per.select(f"o{j}" for j in range(OFFSET_SIZE)).to_numpy(),
    })


def fit_kappa(g: Grid | Cells, fallback: float) -> np.ndarray:
    """Per-function κ of the Dirichlet within-window spacing by maximum likelihood (module
    doc), ``fallback`` for functions with fewer than :data:`MIN_WITHIN_GAPS` inner gaps.

    A window of c ≥ 2 invocations is split into c + 1 spacings s_j (from the window start to
    the first invocation, between invocations, from the last to the window end), each a share
    of the window; their log-likelihood under a symmetric Dirichlet(κ) is
    ln Γ((c+1)κ) − (c+1) ln Γ(κ) + (κ − 1) Σ ln s_j, concave in κ, so the score
    Σ_windows [(c+1)(ψ((c+1)κ) − ψ(κ)) + Σ_j ln s_j] = 0 has one root, found by bisection on
    ln κ over :data:`KAPPA_RANGE` for all functions at once. The likelihood sees clustering
    the second moment of the inner gaps cannot: c invocations milliseconds apart at a random
    place in the window have inner gaps whose squared distance from 1/(c+1) is that of
    uniform spacings (κ ≈ 1 by moments), while their logarithms are far below (κ → 0).
    Spacings are floored at 10⁻⁹ of the window (equal timestamps)."""
    out = np.full(g.keys.height, float(fallback))
    if g.times is None:
        return out
    w = g.window_s
    t = (g.times.select("fid", "arrival_s")
         .with_columns((pl.col("arrival_s") // w).alias("m")).sort("fid", "arrival_s")
         .with_columns(pl.len().over("fid", "m").alias("c")).filter(pl.col("c") >= 2))
    x = t.with_columns(((pl.col("arrival_s") - pl.col("m") * w) / w).alias("x"))
    inner = x.with_columns(pl.col("x").diff().over("fid", "m").alias("s")).drop_nulls("s")
    n = np.bincount(inner["fid"].to_numpy(), minlength=len(out))
    ok = n >= MIN_WITHIN_GAPS
    if not ok.any():
        return out
    # in (function, window) order: the sums below add up in the same order every run
    ends = x.group_by("fid", "m").agg(pl.col("x").min().alias("a"), pl.col("x").max().alias("b"),
                                      pl.col("c").first()).sort("fid", "m")
    floor = 1e-9
    logs = np.bincount(inner["fid"].to_numpy(),
                       weights=np.log(np.maximum(inner["s"].to_numpy(), floor)),
                       minlength=len(out))
    fid = ends["fid"].to_numpy()
    logs += np.bincount(fid, weights=np.log(np.maximum(ends["a"].to_numpy(), floor))
                        + np.log(np.maximum(1 - ends["b"].to_numpy(), floor)),
                        minlength=len(out))
    c1 = ends["c"].to_numpy().astype(np.float64) + 1

    def score(log_k: np.ndarray) -> np.ndarray:
        k = np.exp(log_k)[fid]
        return np.bincount(fid, weights=c1 * (special.digamma(c1 * k) - special.digamma(k)),
                           minlength=len(out)) + logs

    lo = np.full(len(out), math.log(KAPPA_RANGE[0]))
    hi = np.full(len(out), math.log(KAPPA_RANGE[1]))
    for _ in range(60):  # bisection on all functions at once: the score falls as κ grows
        mid = (lo + hi) / 2
        pos = score(mid) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    out[ok] = np.exp((lo + hi) / 2)[ok]
    return out


def closed_loop(g: Grid | Cells) -> pl.DataFrame:
    """Closed-loop functions from per-invocation times and durations (module doc): per
    function with at least :data:`MIN_LOOP_GAPS` gaps, whether it is one and its idle times'
    ``IDLE_SIZE`` quantiles (seconds from an invocation's end to the next one's start).

    A function whose next invocation starts when the previous one ends (a queue drained
    message by message, a loop that re-triggers itself) has gaps g_i = d_i + idle_i with
    the idle times nearly constant, so the durations explain the gaps: sd(idle) ≤
    :data:`LOOP_SD_RATIO` · sd(gap), and nearly all idle times ≥ 0 (an invocation does not
    start before the previous one ends). For arrivals independent of durations, sd(idle)² =
    sd(gap)² + sd(d)² ≥ sd(gap)², and a timer's gaps are steadier than its durations: neither
    passes. Returns fid, loop, and the idle quantile table ``idle``."""
    if g.times is None or "duration_s" not in g.times.columns:
        return pl.DataFrame({"fid": [], "loop": [], "idle": []},
                            schema={"fid": pl.Int64, "loop": pl.Boolean,
                                    "idle": pl.Array(pl.Float64, IDLE_SIZE)})
    t = (g.times.select("fid", "arrival_s", "duration_s").drop_nulls("duration_s")
         .sort("fid", "arrival_s")
         .with_columns(pl.col("arrival_s").diff().over("fid").alias("gap"),
                       (pl.col("arrival_s") - (pl.col("arrival_s") + pl.col("duration_s"))
                        .shift().over("fid")).alias("idle"))
         .drop_nulls("gap"))
    per = t.group_by("fid").agg(
        pl.len().alias("n"), pl.col("gap").std().alias("sd_gap"),
        pl.col("idle").std().alias("sd_idle"),
        (pl.col("idle") >= -LOOP_OVERLAP_S).mean().alias("after"),
        *[pl.col("idle").quantile((j + 0.5) / IDLE_SIZE, "nearest").alias(f"i{j}")
          for j in range(IDLE_SIZE)]).filter(pl.col("n") >= MIN_LOOP_GAPS).sort("fid")
    loop = ((per["sd_idle"] <= LOOP_SD_RATIO * per["sd_gap"]) & (per["after"] >= 0.95)
            & (per["sd_gap"] > 0))
    idle = np.maximum(per.select(f"i{j}" for j in range(IDLE_SIZE)).to_numpy(), 0.0)
    return pl.DataFrame({"fid": per["fid"], "loop": loop.fill_null(False),
                         "idle": idle}, schema_overrides={"fid": pl.Int64})


def with_exact_timers(det: pl.DataFrame, exact: pl.DataFrame) -> pl.DataFrame:
    """The grid detection with the timers that exact times find (period, phase, misses,
    batches, firing offsets) in place of the grid's figures for those functions, and the
    grid's timers whose resolved firings are off the clock demoted; adds ``phase_x`` and
    ``offset`` (NaN rows where the grid's figures stay)."""
    x = exact.filter(pl.col("periodic"))
    nan_rows = np.full((det.height, OFFSET_SIZE), np.nan)
    # firings that exact times resolve and find off any clock grid: the grid was too coarse
    off_clock = np.isin(det["fid"].to_numpy(), exact.filter(~pl.col("periodic"))["fid"])
    det = det.with_columns(pl.Series("periodic", det["periodic"].to_numpy() & ~off_clock))
    out = det.with_columns(pl.lit(None, pl.Float64).alias("phase_x"),
                           pl.Series("offset", nan_rows))
    if x.height == 0:
        return out
    pos = np.searchsorted(det["fid"].to_numpy(), x["fid"].to_numpy())
    periodic = det["periodic"].to_numpy().copy()
    periodic[pos] = True
    cols = {"period_s": x["period_s"], "window_phase_s": x["window_phase_s"],
            "jitter": pl.Series(np.zeros(x.height)), "miss": x["miss"]}
    upd = {}
    for name, values in cols.items():
        v = det[name].to_numpy().astype(np.float64).copy()
        v[pos] = values.to_numpy()
        upd[name] = v
    batch = det["batch"].to_numpy().astype(np.float64).reshape(det.height, BATCH_SIZE)
    batch[pos] = x["batch"].to_numpy()
    offset = nan_rows.copy()
    offset[pos] = x["offset"].to_numpy()
    phase = np.full(det.height, np.nan)
    phase[pos] = x["phase_s"].to_numpy()
    return det.with_columns(
        pl.Series("periodic", periodic), *(pl.Series(k, v) for k, v in upd.items()),
        pl.Series("batch", batch), pl.Series("phase_x", phase).fill_nan(None),
        pl.Series("offset", offset))


def timer_lifetimes(det: pl.DataFrame, x: Cells) -> pl.DataFrame:
    """Each timer's alive share of the fitted span and its missed firings while alive.

    A timer seen only in part of the trace (created or stopped inside it) fires for
    alive = (round((m_last − m_first)·Δ / P) + 1) · P seconds, m the first and last active
    windows (the whole span when that leaves less than one period out); its missed-firing
    probability is 1 − N / (due · b̄) over the due = alive / P firings, N its invocations
    and b̄ the mean of its batch table (clipped to [0, 0.99]). Thinning the firings of the
    whole span instead would keep the rate but scatter a run of regular firings (CV 0) into
    random gaps; firing the whole span at the alive part's rate would inflate the rate.
    Read from the timers' own cells (first, last, sum), in chunks of timers."""
    timers = det["periodic"].to_numpy()
    fid = det["fid"].to_numpy()[timers]  # the others keep their figures (alive 1)
    window_s, n_t = x.window_s, x.n_t
    span = n_t * window_s
    off = x.offsets()
    first, last = x.m[off[fid]], x.m[off[fid + 1] - 1]  # a timer has MIN_FIRINGS cells
    n = np.zeros(len(fid), np.int64)
    rows = max(1, LIFETIME_CELLS // max(n_t, 1))
    for lo in range(0, len(fid), rows):  # chunks of timers: no copy of all their cells
        f = fid[lo:lo + rows]
        idx, _ = _ranges(off, f)
        length = off[f + 1] - off[f]
        n[lo:lo + rows] = np.add.reduceat(x.c[idx], np.cumsum(length) - length)
    period = det["period_s"].to_numpy()[timers]
    alive = (np.round((last - first) * window_s / period) + 1) * period
    alive = np.where(alive + period >= span, span, np.minimum(alive, span))
    due = np.maximum(alive / period, 1.0)
    bmean = det["batch"].to_numpy().reshape(det.height, BATCH_SIZE)[timers].mean(axis=1)
    miss = det["miss"].to_numpy().astype(np.float64).copy()
    miss[timers] = np.clip(1 - n / (due * np.maximum(bmean, 1e-12)), 0.0, 0.99)
    share = np.ones(det.height)
    share[timers] = alive / span
    return det.with_columns(pl.Series("miss", miss), pl.Series("alive", share))
