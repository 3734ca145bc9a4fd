"""Characterization benchmark: every arrival and token-length metric of a 10M-request trace.

    python bench/characterize.py [--rows N] [--keep DIR]

Generates a canonical ``requests`` Parquet file of N requests (default 10 million) over seven
days: gamma-renewal arrivals (CV 2) under a diurnal rate, 1,000 Zipf-weighted tenants, input
and output lengths from a Gaussian copula (lognormal marginals, ρ = 0.5), 5% failed. Then, in
this one process, it runs the same metrics twice:

- servetrace: ``servetrace.analysis.burstiness`` (inter-arrival statistics, the dispersion curve,
  Hurst exponents, inter-arrival fits, periodicity, bursts) and ``servetrace.analysis.tokens``
  (summaries, fits of both lengths, correlation, output by input bucket, hourly drift, failure
  rate), on the four columns they need, read once from the Parquet file into one contiguous
  chunk each;
- a straightforward pandas + SciPy implementation of the same metrics: ``read_parquet``,
  ``Series.diff``/``quantile``, per-window ``value_counts`` reindexed to include empty
  windows, ``scipy.stats.<family>.fit`` and ``kstest`` on the same 200,000-value subsample
  servetrace fits, ``spearmanr``, ``pd.cut`` + ``groupby().quantile``, and a loop over hours
  for the drift distances.

Prints seconds and peak RSS per side, servetrace's seconds per stage, and the ratio (target:
servetrace ≥ 10× faster, peak memory ≤ 4 GB).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report, work_dir

from servetrace.analysis import burstiness, tokens
from servetrace.loaders import schema

DAY = 86_400.0
WINDOWS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
           21_600.0, DAY)
FIT_SAMPLE = 200_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write a canonical ``requests`` Parquet file of ``rows`` requests over seven days."""
    rng = np.random.default_rng(seed)
    shape = 0.25  # gamma renewal, CV = 1 / sqrt(shape) = 2
    unit = np.cumsum(rng.gamma(shape, 1 / shape, rows))
    # time-rescale unit-rate arrivals through a diurnal intensity 1 + 0.6 sin(2πt/day)
    grid = np.linspace(0, 7 * DAY, 7 * 1440 + 1)
    intensity = 1 + 0.6 * np.sin(2 * np.pi * grid / DAY)
    cum = np.concatenate([[0.0], np.cumsum((intensity[1:] + intensity[:-1]) / 2 * np.diff(grid))])
    arrival = np.interp(unit * cum[-1] / unit[-1], cum, grid)
    z = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], rows)
    tenants = rng.zipf(1.6, rows) % 1000
    pl.DataFrame({
        "trace": "bench/characterize", "request_id": np.arange(rows).astype(str),
        "arrival_s": arrival, "tenant": pl.Series(tenants).cast(pl.String),
        "input_tokens": np.exp(6.5 + 1.1 * z[:, 0]).astype(np.int64) + 1,
        "output_tokens": np.exp(5.0 + 0.9 * z[:, 1]).astype(np.int64),
        "failed": rng.random(rows) < 0.05,
    }).pipe(lambda f: schema.conform("requests", f)).write_parquet(path)


def ours(path: Path) -> dict:
    """Every metric, timed one by one: the results by name, and ``seconds`` by stage."""
    seconds: dict[str, float] = {}

    def timed(name: str, fn):
        start = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - start
        return out

    # read the four columns once, in one contiguous chunk each (as pandas holds them): every
    # metric then reads its columns without copying
    lengths = timed("read", lambda: pl.scan_parquet(path).select(
        "arrival_s", "input_tokens", "output_tokens", "failed").collect().rechunk())
    arrivals = lengths.select("arrival_s")
    result = {name: timed(name, fn) for name, fn in (
        ("interarrival", lambda: burstiness.interarrival_stats(arrivals)),
        ("dispersion", lambda: burstiness.dispersion_curve(arrivals, window_s=list(WINDOWS))),
        ("hurst", lambda: burstiness.hurst(arrivals)),
        ("fits", lambda: burstiness.fit_interarrivals(arrivals)),
        ("periodicity", lambda: burstiness.periodicity(arrivals)),
        ("bursts", lambda: burstiness.bursts(arrivals)),
        ("lengths", lambda: tokens.length_summary(lengths)),
        ("input_fits", lambda: tokens.fit_lengths(lengths, "input_tokens")),
        ("output_fits", lambda: tokens.fit_lengths(lengths, "output_tokens")),
        ("correlation", lambda: tokens.correlation(lengths)),
        ("joint", lambda: tokens.output_by_input(lengths)),
        ("drift", lambda: [tokens.drift(lengths, f, window_s=3600.0) for f in tokens.FIELDS]),
        ("failures", lambda: tokens.failure_rate(lengths, window_s=3600.0)),
    )}
    result["seconds"] = seconds
    return result


def _pandas_fits(x: np.ndarray, families: tuple[str, ...], seed: int = 0) -> list[dict]:
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) > FIT_SAMPLE:
        x = np.random.default_rng(seed).choice(x, FIT_SAMPLE, replace=False)
    dists = {"exponential": stats.expon, "gamma": stats.gamma, "weibull": stats.weibull_min,
             "lognormal": stats.lognorm, "pareto": stats.pareto}
    out = []
    for family in families:
        if family == "lognormal_mixture2":
            out.append({"family": family, "params": _em_mixture(np.log(x))})
            continue
        dist = dists[family]
        params = dist.fit(x, floc=0) if family != "pareto" else dist.fit(x, floc=0,
                                                                          fscale=x.min())
        loglik = dist.logpdf(x, *params).sum()
        out.append({"family": family, "params": params, "aic": 2 * len(params) - 2 * loglik,
                    "ks": stats.kstest(x, dist.cdf, args=params).statistic})
    return out


def _em_mixture(y: np.ndarray, iterations: int = 500) -> tuple[float, ...]:
    w, m1, s1, m2, s2 = 0.5, *np.quantile(y, [0.25]), y.std() / 2, *np.quantile(y, [0.75]), \
        y.std() / 2
    for _ in range(iterations):
        a = w * stats.norm.pdf(y, m1, s1)
        b = (1 - w) * stats.norm.pdf(y, m2, s2)
        r = a / (a + b)
        w = r.mean()
        m1, m2 = (r * y).sum() / r.sum(), ((1 - r) * y).sum() / (1 - r).sum()
        s1 = np.sqrt((r * (y - m1) ** 2).sum() / r.sum())
        s2 = np.sqrt(((1 - r) * (y - m2) ** 2).sum() / (1 - r).sum())
    return (w, m1, s1, m2, s2)


def _rs(series: np.ndarray, size: int) -> float:
    values = []
    for start in range(0, len(series) - size + 1, size):
        block = series[start:start + size]
        dev = np.cumsum(block - block.mean())
        if block.std() > 0:
            values.append((dev.max() - dev.min()) / block.std())
    return float(np.mean(values))


def baseline(path: Path) -> dict:
    import pandas as pd

    df = pd.read_parquet(path, columns=["arrival_s", "input_tokens", "output_tokens", "failed"])
    t = df["arrival_s"]
    gaps = t.diff().dropna()
    result: dict = {"interarrival": {"mean": gaps.mean(), "cv": gaps.std() / gaps.mean(),
                                     **gaps.quantile([0.5, 0.9, 0.99]).to_dict()}}
    end = t.max()
    curve = []
    for w in WINDOWS:
        n = int(end // w) + 1
        counts = (t // w).astype("int64").value_counts().reindex(range(n), fill_value=0)
        curve.append({"window_s": w, "idc": counts.var() / counts.mean(),
                      "peak_to_mean": counts.max() / counts.mean()})
    result["dispersion"] = pd.DataFrame(curve)
    base = (t // 1.0).astype("int64").value_counts().reindex(range(int(end) + 1), fill_value=0)
    scales = [2 ** k for k in range(0, 14)]
    variances = [base.groupby(np.arange(len(base)) // m).sum().var() / m ** 2 for m in scales]
    result["hurst_av"] = 1 + np.polyfit(np.log(scales), np.log(variances), 1)[0] / 2
    rs = [_rs(base.to_numpy(dtype=float), m) for m in scales[3:]]
    result["hurst_rs"] = np.polyfit(np.log(scales[3:]), np.log(rs), 1)[0]
    result["fits"] = _pandas_fits(gaps.to_numpy(), ("exponential", "gamma", "weibull",
                                                    "lognormal"))
    minute = (t // 60).astype("int64").value_counts().reindex(range(int(end // 60) + 1),
                                                              fill_value=0)
    power = np.abs(np.fft.rfft(minute - minute.mean())) ** 2
    freqs = np.fft.rfftfreq(len(minute), 60.0)
    result["period_s"] = 1 / freqs[1:][np.argmax(power[1:])]
    baseline_rate = minute.rolling(60, min_periods=1).mean()
    hot = (minute > 2 * baseline_rate).astype(int)
    result["bursts"] = int(((hot.diff() == 1)).sum())
    result["lengths"] = df[["input_tokens", "output_tokens"]].describe(
        percentiles=[0.5, 0.9, 0.99])
    for name in ("input_tokens", "output_tokens"):
        result[f"{name}_fits"] = _pandas_fits(df[name].to_numpy(dtype=float), (
            "exponential", "gamma", "weibull", "lognormal", "pareto", "lognormal_mixture2"))
    result["pearson"] = df["input_tokens"].corr(df["output_tokens"])
    result["spearman"] = stats.spearmanr(df["input_tokens"], df["output_tokens"]).statistic
    edges = [0, *(2 ** k for k in range(0, 20))]
    bucket = pd.cut(df["input_tokens"], edges, right=False)
    result["joint"] = df.groupby(bucket, observed=True)["output_tokens"].quantile(
        [0.1, 0.5, 0.9]).unstack()
    hour = (t // 3600).astype("int64")
    drift = []
    groups = {h: g for h, g in df.groupby(hour)}
    keys = sorted(groups)
    for a, b in itertools.pairwise(keys):
        for name in ("input_tokens", "output_tokens"):
            x, y = groups[a][name].to_numpy(), groups[b][name].to_numpy()
            drift.append((a, name, stats.wasserstein_distance(x, y), stats.ks_2samp(x, y)
                          .statistic))
    result["drift"] = drift
    result["failures"] = df.groupby(hour)["failed"].mean()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args()
    with work_dir(args.keep) as work:
        path = work / "requests.parquet"
        if not path.exists():
            print(f"generating {args.rows:,} requests -> {path}", flush=True)
            generate(path, args.rows)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        stages = [measure("servetrace characterize", lambda: ours(path)),
                  measure("pandas + scipy", lambda: baseline(path))]
        print(report(rows, stages))
        mine, theirs = stages
        print("servetrace stages (s): " + ", ".join(
            f"{name} {sec:.2f}" for name, sec in mine.result["seconds"].items()))
        print(f"servetrace speed-up over pandas + SciPy: {theirs.seconds / mine.seconds:.1f}x "
              "(target >= 10)")
        print(f"servetrace peak RSS: {mine.peak_gb:.2f} GB (target <= 4); pandas + SciPy: "
              f"{theirs.peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
