"""Keep-alive simulation benchmark: 50,000 functions × 14 days of per-minute counts.

    python bench/keepalive.py [--functions N] [--days D] [--baseline-apps B]

Builds an ``invocation_counts`` table shaped like the full Azure Functions 2019 trace
(Shahrad et al., "Serverless in the Wild", USENIX ATC 2020): ``N`` functions × ``D`` days of
per-minute counts, only non-zero minutes stored. Each synthetic function is a randomly drawn
real function of the InVitro sample in ``../shared/traces/azure_functions_2019`` (500
functions × 480 minutes, 24 % of the minutes non-zero): its 480 minutes repeated over the
``D`` days, rotated by a random offset; its duration and memory are the real function's;
functions are grouped into ``N / 2`` apps at random (as in ``bench/wide_counts.py``). Then,
in this one process:

- servetrace: ``servetrace.analysis.keepalive.simulate`` per app with the ``functions`` table, the
  fixed 10-minute policy and the hybrid histogram policy, on the whole trace (vectorized NumPy /
  Polars over chunks of apps, counts spread within their minute by the seeded phase rule);
  then ``tradeoff`` (9 fixed keep-alive lengths and the hybrid policy on one preparation);
- baseline: a straightforward per-app Python loop over each app's active minutes (one
  iteration per non-zero minute of the app, the minute's invocations handled in closed form,
  the histogram a Python list scanned for its percentiles and CV at every minute), run on a
  random subsample of ``B`` apps and extrapolated linearly to the whole trace by its number
  of rows (non-zero function-minutes). The baseline uses the ``even`` spreading rule; its results
  are checked against ``simulate(..., spread="even")`` on the same subsample.

Prints seconds and peak RSS per stage and the speed-up of servetrace over the extrapolated
baseline. The target: the whole simulation on a laptop in minutes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure

from servetrace.analysis.keepalive import (
    DEFAULT_KEEP_ALIVES,
    FixedKeepAlive,
    HybridHistogram,
    simulate,
    tradeoff,
)
from servetrace.loaders import azure_functions_2019

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
MINUTES = 1440


def generate(functions: int, days: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(invocation_counts, functions)`` resampled from the real sample, as described above."""
    real = azure_functions_2019.load([SHARED / "azure_functions_2019"],
                                     "azure_functions_2019/sample").tables
    fn = real["functions"].with_row_index("r")
    ic = (real["invocation_counts"].with_columns(pl.col("function").cast(pl.String))
          .join(fn.select("function", "r"), on="function").sort("r", "window_start_s"))
    span = int(ic["window_start_s"].max() - ic["window_start_s"].min()) // 60 + 1  # 480
    minute = ((ic["window_start_s"] - ic["window_start_s"].min()) // 60).to_numpy()
    minute = minute.astype(np.int64)
    cnt = ic["count"].to_numpy()
    nnz = np.bincount(ic["r"].to_numpy(), minlength=fn.height)
    first = np.r_[0, np.cumsum(nnz)[:-1]]
    total_min = days * MINUTES
    reps = math.ceil(total_min / span)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, fn.height, functions)
    shift = rng.integers(0, total_min, functions)
    app_of = rng.integers(0, max(1, functions // 2), functions)
    names = pl.Series("function", [f"f{i:06d}" for i in range(functions)], pl.Categorical)
    apps = pl.Series("app", [f"a{i:06d}" for i in range(max(1, functions // 2))],
                     pl.Categorical)
    parts = []
    for lo in range(0, functions, 2000):
        idx = np.arange(lo, min(lo + 2000, functions))
        per = nnz[pick[idx]] * reps
        f = np.repeat(idx, per)
        k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        n_r = nnz[pick[f]]
        j = first[pick[f]] + k % n_r
        m = minute[j] + span * (k // n_r)
        keep = m < total_min
        f, j, m = f[keep], j[keep], (m[keep] + shift[f[keep]]) % total_min
        parts.append(pl.DataFrame({
            "app": apps.gather(app_of[f]), "function": names.gather(f),
            "window_start_s": m * 60.0, "window_s": np.full(len(m), 60.0),
            "count": cnt[j].astype(np.int64)}))
    trace = pl.concat(parts, rechunk=True)
    src = fn.select("duration_mean_s", "memory_mean_mb")[pick]
    funcs = pl.DataFrame({"app": apps.gather(app_of).cast(pl.String),
                          "function": names.cast(pl.String)}).hstack(src)
    return trace, funcs


# -- the baseline: a straightforward per-app loop ------------------------------------------
def baseline(trace: pl.DataFrame, funcs: pl.DataFrame, policy, horizon: float
             ) -> dict[str, tuple]:
    """Per app: (invocations, cold starts, idle seconds), one Python iteration per minute."""
    rows = (trace.with_columns(pl.col("app").cast(pl.String), pl.col("function").cast(pl.String))
            .join(funcs.select("function", "duration_mean_s"), on="function", how="left"))
    out = {}
    for (app,), g in rows.partition_by("app", as_dict=True).items():
        minutes: dict[float, list] = {}
        for ws, w, c, d in zip(g["window_start_s"], g["window_s"], g["count"],
                               g["duration_mean_s"], strict=True):
            acc = minutes.setdefault(ws, [w, 0, 0.0])
            acc[1] += c
            acc[2] += c * (d or 0.0)
        events = [(ws, c, w / c, dsum / c) for ws, (w, c, dsum) in sorted(minutes.items())]
        out[app] = _loop(events, policy, horizon)
    return out


def _loop(events, policy, horizon):
    hybrid = isinstance(policy, HybridHistogram)
    if hybrid:
        nb = policy.bins
        hist, oob = [0] * nb, 0
    busy, cold, idle, n = -math.inf, 0, 0.0, 0

    def windows():
        if not hybrid:
            return 0.0, policy.keep_alive_s
        s = sum(hist)
        total = s + oob
        if total < policy.min_idle_times or s == 0 or oob > policy.oob_threshold * total:
            return 0.0, policy.fallback_s
        mean = s / nb
        if math.sqrt(sum((x - mean) ** 2 for x in hist) / nb) / mean < policy.cv_threshold:
            return 0.0, policy.fallback_s
        bounds = []
        for pct in (policy.prewarm_pct, policy.keepalive_pct):
            need, acc = max(1, math.ceil(round(pct * 1e6) * s / 1e8)), 0
            for b, x in enumerate(hist):
                acc += x
                if acc >= need:
                    bounds.append(b)
                    break
        return (bounds[0] * policy.bin_s * (1 - policy.margin),
                (bounds[1] + 1) * policy.bin_s * (1 + policy.margin))

    def add(x, w):
        nonlocal oob
        b = int(max(x, 0.0) // policy.bin_s)
        if b < nb:
            hist[b] += w
        else:
            oob += w

    for j, (ws, c, h, d) in enumerate(events):
        s = ws + 0.5 * h
        p, e = windows()
        if j == 0:
            cold += 1
        else:
            it = s - busy
            if it > 0:
                cold += it < p or it > e
                idle += max(0.0, min(it, e) - p)
        g = h - d
        if c > 1 and g > 0:
            cold += (c - 1) * (g < p or g > e)
            idle += (c - 1) * max(0.0, min(g, e) - p)
        if hybrid:
            if j > 0:
                add(s - busy, 1)
            if c > 1:
                add(g, c - 1)
        busy = max(busy, s + (c - 1) * h + d)
        n += c
    p, e = windows()
    if horizon > busy:
        idle += max(0.0, min(horizon - busy, e) - p)
    return n, cold, idle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--baseline-apps", type=int, default=100)
    args = ap.parse_args()

    t0 = time.perf_counter()
    trace, funcs = generate(args.functions, args.days)
    print(f"generated {args.functions:,} functions x {args.days} days: {trace.height:,} "
          f"non-zero minutes, {trace['count'].sum():,} invocations, "
          f"{trace.estimated_size() / 1e9:.2f} GB in memory ({time.perf_counter() - t0:.1f} s)",
          flush=True)

    policies = {"fixed 10 min": FixedKeepAlive(600.0), "hybrid histogram": HybridHistogram()}
    ours = {}
    for name, pol in policies.items():
        cpu = time.process_time()
        m = measure(f"servetrace {name}",
                    lambda pol=pol: simulate(trace, pol, by="app", functions=funcs))
        cpu = time.process_time() - cpu
        ours[name] = m
        print(f"servetrace {name:<17} {m.seconds:8.1f} s (CPU {cpu:.1f} s)   peak RSS "
              f"{m.peak_gb:5.2f} GB (+{(m.peak_bytes - m.base_bytes) / 1e9:.2f} GB over the "
              f"{m.base_bytes / 1e9:.2f} GB before the call)", flush=True)
        print("   " + str(m.result.select(
            pl.col("cold_starts").sum() / pl.col("invocations").sum(),
            pl.col("wasted_gb_s").sum()).row(0)), flush=True)

    cpu = time.process_time()
    m = measure("servetrace tradeoff", lambda: tradeoff(trace, by="app", functions=funcs))
    cpu = time.process_time() - cpu
    print(f"servetrace tradeoff ({m.result.height} policies: {len(DEFAULT_KEEP_ALIVES)} fixed "
          f"+ hybrid, trace prepared once) {m.seconds:.1f} s (CPU {cpu:.1f} s)   peak RSS "
          f"{m.peak_gb:5.2f} GB", flush=True)
    print(m.result.select("label", "cold_fraction", "p75_app_cold_fraction",
                          "wasted_normalized"), flush=True)

    rng = np.random.default_rng(1)
    app_names = trace["app"].unique().to_numpy()
    chosen = rng.choice(app_names, min(args.baseline_apps, len(app_names)), replace=False)
    sub = trace.filter(pl.col("app").is_in(list(chosen)))
    horizon = float((trace["window_start_s"] + trace["window_s"]).max())
    for name, pol in policies.items():
        m = measure(f"baseline {name}", lambda pol=pol: baseline(sub, funcs, pol, horizon))
        check = simulate(sub, pol, by="app", functions=funcs, spread="even", horizon_s=horizon)
        agree = check.height == len(m.result) and all(
            (r["invocations"], r["cold_starts"]) == m.result[str(r["app"])][:2]
            and math.isclose(r["idle_s"], m.result[str(r["app"])][2], rel_tol=1e-9,
                             abs_tol=1e-6)
            for r in check.iter_rows(named=True))
        full = m.seconds / sub.height * trace.height
        print(f"baseline   {name:<17} {m.seconds:8.1f} s on {len(chosen)} apps "
              f"({sub.height:,} rows) -> {full:,.0f} s extrapolated to {trace.height:,} rows; "
              f"same results as servetrace: {agree}", flush=True)
        print(f"   servetrace is {full / ours[name].seconds:,.0f}x faster than the baseline",
              flush=True)


if __name__ == "__main__":
    main()
