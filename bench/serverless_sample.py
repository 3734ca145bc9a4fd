"""Serverless model benchmark: fit and sample 14 days × 50,000 functions, vectorized vs a loop.

    python bench/serverless_sample.py [--functions N] [--days D] [--loop-functions K]

Generates an Azure-Functions-2019-sized trace (Shahrad et al., "Serverless in the Wild",
USENIX ATC 2020: 14 days of per-minute counts, about 50,000 functions in the sampled release
the vHive/InVitro sampler draws from) as the canonical ``invocation_counts`` and
``functions`` tables, then, in this one process:

- servetrace: :func:`servetrace.synth.serverless.fit` on all N functions at once (from the
  non-zero cells, :mod:`servetrace.synth.serverless_cells`; with ``--parquet DIR`` from a
  lazy scan of the generated trace written there), then
  :func:`~servetrace.synth.serverless.sample_blocks` over D days (the same invocations as
  ``model.sample``, as sorted tables of bounded size, counted here);
- baseline: the same model fitted and sampled one function at a time in a Python loop
  (``fit`` on that function's rows, ``sample`` of its one-function model), on K functions
  spread evenly over the N; its time is extrapolated linearly to N (the loop's cost is per
  function) and the report says so. Both paths are warmed up first (imports, first calls).

The generated trace follows the paper's published shape, not its rows: per-function mean
rates log-normal over six orders of magnitude (median one invocation per :data:`MEDIAN_GAP_MIN`
minutes; most functions idle in most minutes, as 45 % of apps are invoked at most hourly),
a fifth of the functions timers (periods of 1 to 60 minutes, some firings missed), the rest
Poisson counts under a daily cycle and a log-normal hourly burst factor. Durations and
memory percentiles per function are log-normal around the paper's medians (about 1 s and
150 MB). Prints seconds and peak RSS per stage, the ratio (target ≥ 20×, peak < 8 GB) and
both paths' invocation counts (the loop samples the same functions with its own seeds).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure

from servetrace.synth import serverless as sv
from servetrace.synth import serverless_quantiles as sq

MEDIAN_GAP_MIN = 60.0
"""Median function: one invocation an hour."""
RATE_SIGMA = 2.0
"""σ of ln(mean invocations per minute) across functions."""
MAX_PER_MIN = 600.0
TIMER_SHARE = 0.2
CHUNK = 1000


def generate(n: int, days: float, seed: int, parquet: Path | None = None
             ) -> tuple[pl.DataFrame | pl.LazyFrame, pl.DataFrame]:
    """(``invocation_counts``, ``functions``) of ``n`` functions over ``days`` (module doc).

    With ``parquet`` the counts are written there, one file per chunk of functions, and
    returned as a lazy scan (what ``servetrace fit`` reads from the store): the full size is
    about 110M rows, more than the 8 GB target as a DataFrame of strings."""
    rng = np.random.default_rng(seed)
    n_t = int(days * 1440)
    rate = np.minimum(np.exp(rng.normal(np.log(1 / MEDIAN_GAP_MIN), RATE_SIGMA, n)),
                      MAX_PER_MIN)
    timer = rng.random(n) < TIMER_SHARE
    period = rng.choice([1, 5, 10, 15, 30, 60], n)
    phase = rng.integers(0, 60, n) % period
    day = 1 + 0.5 * np.sin(2 * np.pi * (np.arange(n_t) / 1440.0))
    parts = []
    for lo in range(0, n, CHUNK):  # chunks of functions bound memory
        hi = min(n, lo + CHUNK)
        k = hi - lo
        burst = np.exp(rng.normal(0, 0.7, (k, n_t // 60 + 1)))
        lam = rate[lo:hi, None] * day[None, :] * np.repeat(burst, 60, axis=1)[:, :n_t]
        c = rng.poisson(lam)
        t = timer[lo:hi]
        m = np.arange(n_t)[None, :]
        fires = ((m - phase[lo:hi, None]) % period[lo:hi, None] == 0) & (
            rng.random((k, n_t)) > 0.02)
        c[t] = fires[t].astype(np.int64)
        f, w = np.nonzero(c)
        part = pl.DataFrame({"f": (f + lo).astype(np.int64), "w": w.astype(np.int64),
                             "count": c[f, w].astype(np.int64)})
        del lam, c, fires, burst
        if parquet is None:
            parts.append(part)
        else:
            _canonical(part).write_parquet(parquet / f"part-{lo // CHUNK:05d}.parquet")
    counts = (_canonical(pl.concat(parts)) if parquet is None
              else pl.scan_parquet(parquet / "*.parquet"))
    dur = np.sort(np.exp(rng.normal(0, 1.5, (n, 1)) + rng.normal(0, 0.8, (n, 7))), axis=1)
    mem = np.sort(150 * np.exp(rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 0.2, (n, 8))),
                  axis=1)
    ids = pl.Series("f", np.arange(n))
    functions = pl.DataFrame({
        "function": ids.cast(pl.String).str.zfill(5).str.replace("^", "f"),
        "tenant": (ids // 7).cast(pl.String).str.replace("^", "o"),
        "app": (ids // 3).cast(pl.String).str.replace("^", "a"),
        "trigger": np.where(timer, "timer", "http"),
        **{c: dur[:, j] for j, c in enumerate(sq.DURATION_COLUMNS)},
        **{c: mem[:, j] for j, c in enumerate(sq.MEMORY_COLUMNS)}})
    return counts, functions


def _canonical(cells: pl.DataFrame) -> pl.DataFrame:
    return cells.select(
        pl.lit("azure_functions_2019/generated").alias("trace"),
        pl.format("f{}", pl.col("f").cast(pl.String).str.zfill(5)).alias("function"),
        pl.format("o{}", pl.col("f") // 7).alias("tenant"),
        pl.format("a{}", pl.col("f") // 3).alias("app"),
        (pl.col("w") * 60.0).alias("window_start_s"), pl.lit(60.0).alias("window_s"),
        pl.col("count"))


def vectorized(counts: pl.DataFrame | pl.LazyFrame, functions: pl.DataFrame, duration: float,
               seed: int) -> int:
    """Fit all functions at once, then sample in blocks of time (each a sorted canonical
    ``invocations`` table, as a writer would stream them to Parquet)."""
    model = sv.fit(counts, functions)
    return sum(block.height for block in sv.sample_blocks(model, duration, seed))


def loop(counts: pl.DataFrame, functions: pl.DataFrame, names: list[str], duration: float,
         seed: int) -> int:
    """The baseline: fit and sample one function at a time."""
    total = 0
    by = counts.partition_by("function", as_dict=True)
    for name in names:  # one iteration per function, the baseline's definition
        rows = by.get((name,))
        if rows is None:
            continue
        model = sv.fit(rows, functions.filter(pl.col("function") == name))
        total += model.sample(duration, seed).height
    return total


def cpu(fn):
    """``fn`` returning (its result, the process CPU seconds it took, all threads): on a
    shared machine CPU time is steadier than wall time."""
    def run():
        t0 = time.process_time()
        out = fn()
        return out, time.process_time() - t0
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=50_000)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--loop-functions", type=int, default=200,
                    help="functions the per-function loop runs (extrapolated to --functions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parquet", type=Path, default=None,
                    help="write the generated counts to this (empty) folder and fit from a "
                         "scan of it (the full size needs it to stay under 8 GB)")
    args = ap.parse_args()
    n, k = args.functions, min(args.loop_functions, args.functions)
    duration = args.days * 86400.0
    if args.parquet is not None:
        args.parquet.mkdir(parents=True, exist_ok=True)
        if any(args.parquet.iterdir()):
            sys.exit(f"--parquet {args.parquet}: the folder is not empty")
    gen = measure("generate", lambda: generate(n, args.days, args.seed, args.parquet))
    counts, functions = gen.result
    size = counts.lazy().select(pl.len(), pl.col("count").sum()).collect().row(0)
    print(f"{n:,} functions × {args.days:g} days: {size[0]:,} non-zero minute cells, "
          f"{int(size[1]):,} invocations (generated in {gen.seconds:.1f} s)")

    def rows_of(names: list[str]) -> pl.DataFrame:
        return counts.lazy().filter(pl.col("function").is_in(names)).collect()

    warm = functions["function"].head(3).to_list()  # imports and first calls, for both paths
    loop(rows_of(warm), functions, warm, 86400.0, args.seed)
    sv.fit(rows_of(warm), functions).sample(86400.0, args.seed)
    fast = measure("servetrace fit+sample", cpu(lambda: vectorized(counts, functions,
                                                                    duration, args.seed)))
    names = functions["function"].gather_every(max(n // k, 1)).head(k).to_list()
    some = rows_of(names)
    slow = measure("per-function loop", cpu(lambda: loop(some, functions, names, duration,
                                                         args.seed)))
    (fast_n, fast_cpu), (slow_n, slow_cpu) = fast.result, slow.result
    print(f"{'stage':<28}{'wall s':>10}{'CPU s':>10}{'peak GB':>10}{'invocations':>14}")
    print(f"{fast.name:<28}{fast.seconds:>10.2f}{fast_cpu:>10.2f}{fast.peak_gb:>10.2f}"
          f"{fast_n:>14,}")
    print(f"{slow.name + f' ({k} fns)':<28}{slow.seconds:>10.2f}{slow_cpu:>10.2f}"
          f"{slow.peak_gb:>10.2f}{slow_n:>14,}")
    wall, cpu_s = slow.seconds / k * n, slow_cpu / k * n
    print(f"loop extrapolated to {n:,} functions: {wall:.1f} s wall, {cpu_s:.1f} s CPU "
          f"({slow.seconds / k * 1e3:.1f} ms per function)")
    print(f"ratio (loop / servetrace): {wall / fast.seconds:.1f}x wall, "
          f"{cpu_s / fast_cpu:.1f}x CPU (target >= 20x); servetrace peak RSS {fast.peak_gb:.2f} GB "
          f"({fast.base_bytes / 1e9:.2f} GB before it; target < 8 GB); whole process "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB; load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
