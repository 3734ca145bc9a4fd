"""Sampling benchmark: 10 million requests from a fitted model, vectorized vs per request.

    python bench/sample.py [--requests N] [--baseline-requests N]

Fits :func:`servetrace.synth.model.fit` to the real Azure LLM 2023 conversation trace in
``../shared/traces`` (Patel et al., "Splitwise", ISCA 2024), then, in this one process:

- servetrace: ``model.sample(duration, seed)`` for the duration that holds N requests at the
  model's mean rate: the canonical ``requests`` frame (all columns, ids, labels);
- baseline: a straightforward per-request Python implementation of the same model: the same
  modulation path (one NumPy call per sample, per window), then a loop that draws each
  request's renewal gap, walks the integrated rate to its time, draws its input and output
  through the Gaussian copula (``random.gauss``, ``NormalDist.cdf``, table lookup) and
  appends a row; the rows become the same canonical frame.

Prints seconds, million requests per second and peak RSS per stage, the speed ratio (target
≥ 20×) and both samples' count, CV and mean lengths (the two implement one model).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report

from servetrace.loaders import azure_llm_2023
from servetrace.loaders.schema import conform
from servetrace.synth.arrivals import _rng, driver, expected_block_vars
from servetrace.synth.model import WorkloadModel, fit
from servetrace.synth.parameters import Arrivals, Table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def per_request(model: WorkloadModel, duration: float, seed: int) -> pl.DataFrame:
    """The baseline: one Python iteration per request (single group, no sessions/prefix)."""
    g = model.groups[0]
    a = g.arrivals
    assert isinstance(a, Arrivals) and a.off is None and g.sessions is None
    # the modulation path, as the vectorized sampler builds it (per window, not per request)
    n_w = math.ceil(duration / a.window_s) + 1
    span_w = max(int(a.span_s // a.window_s), 2)
    z = driver(n_w, a.hurst, a.memory, _rng(seed, 99))
    ratio = (expected_block_vars(a.hurst, a.memory, n_w, np.array([1]))[0]
             / expected_block_vars(a.hurst, a.memory, span_w, np.array([1]))[0])
    rank = np.argsort(np.argsort(z, kind="stable"))  # onto evenly spaced normal scores
    inv = NormalDist().inv_cdf
    z = [inv((r + 0.5) / n_w) * math.sqrt(ratio) for r in rank]
    phi = NormalDist().cdf
    mod = a.modulation.values
    rates = []
    for zi in z:  # per window
        u = phi(zi) * (len(mod) - 1)
        i = min(int(u), len(mod) - 2) if len(mod) > 1 else 0
        x = mod[i] + (u - i) * (mod[i + 1] - mod[i]) if len(mod) > 1 else mod[0]
        rates.append(a.rate * x)
    rnd = random.Random(seed)
    ren = a.renewal

    def gap() -> float:
        if ren.family == "gamma":
            return rnd.gammavariate(ren.shape, 1.0 / ren.shape)
        if ren.family == "weibull":
            return rnd.weibullvariate(1.0, ren.shape) / math.gamma(1 + 1 / ren.shape)
        if ren.family == "empirical":
            return table(ren.table.values, rnd.random(), ren.table.log)
        return rnd.expovariate(1.0)

    def table(v: tuple[float, ...], u: float, log: bool) -> float:
        pos = u * (len(v) - 1)
        i = min(int(pos), len(v) - 2)
        lo, hi = v[i], v[i + 1]
        if log:
            return math.exp(math.log(lo) + (pos - i) * (math.log(hi) - math.log(lo)))
        return lo + (pos - i) * (hi - lo)

    def marginal(t: Table, u: float) -> float:
        if t.step:  # equally likely values
            return t.values[min(int(u * len(t.values)), len(t.values) - 1)]
        return round(table(t.values, u, False))

    lm = g.lengths
    rho, rho_c = lm.rho, math.sqrt(max(1 - lm.rho ** 2, 0.0))
    times, ins, outs = [], [], []
    w, w_start, w_mass = 0, 0.0, rates[0] * a.window_s  # current window and Λ at its start
    lam_w = 0.0
    s = gap() * rnd.random()
    while True:  # per request
        while s - lam_w >= w_mass and w < n_w - 1:  # walk to the window holding Λ = s
            lam_w += w_mass
            w += 1
            w_start += a.window_s
            w_mass = rates[w] * a.window_s
        t = w_start + (s - lam_w) / rates[w]
        if t >= duration:
            break
        z1 = rnd.gauss(0.0, 1.0)
        z2 = rho * z1 + rho_c * rnd.gauss(0.0, 1.0)
        times.append(t)
        ins.append(int(marginal(lm.input, phi(z1))))
        outs.append(int(marginal(lm.output, phi(z2))))
        s += gap()
    frame = pl.DataFrame({"arrival_s": times, "input_tokens": ins, "output_tokens": outs},
                         schema={"arrival_s": pl.Float64, "input_tokens": pl.Int64,
                                 "output_tokens": pl.Int64})
    labels = g.labels
    pick = rnd.choices(range(len(labels.weights)), labels.weights, k=frame.height)
    for j, c in enumerate(labels.columns):
        frame = frame.with_columns(pl.Series(c, [labels.values[k][j] for k in pick],
                                             pl.String))
    frame = frame.with_columns(pl.lit(f"synth/{model.source}").alias("trace"),
                               pl.int_range(pl.len()).cast(pl.String).alias("request_id"))
    return conform("requests", frame)


def describe(name: str, frame: pl.DataFrame) -> str:
    t = frame["arrival_s"].to_numpy()
    g = np.diff(t)
    return (f"{name:<12}{frame.height:>12,} requests  CV {g.std() / g.mean():.3f}  "
            f"mean input {frame['input_tokens'].mean():.0f}  "
            f"mean output {frame['output_tokens'].mean():.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--baseline-requests", type=int, default=None,
                    help="requests for the per-request baseline (default: --requests)")
    args = ap.parse_args()
    path = SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    trace = azure_llm_2023.load([path], "azure_llm_2023/conv").tables["requests"]
    model = fit(trace.with_columns(pl.lit("azure_llm_2023/conv").alias("trace")))
    base_n = args.baseline_requests or args.requests
    duration = args.requests / model.mean_rate
    base_duration = base_n / model.mean_rate
    print(f"model of azure_llm_2023/conv: {model.mean_rate:.2f} requests/s; "
          f"sampling {duration:,.0f} s (~{args.requests:,} requests)", flush=True)
    model.sample(60.0, seed=0)  # first call: lazy imports and thread pools, not measured
    ours = measure("servetrace sample", lambda: model.sample(duration, seed=1))
    print(describe("servetrace", ours.result), flush=True)
    base = measure("per-request Python", lambda: per_request(model, base_duration, seed=1))
    print(describe("baseline", base.result), flush=True)
    print(report(ours.result.height, [ours]))
    print(report(base.result.height, [base]))
    ours_rate = ours.result.height / ours.seconds
    base_rate = base.result.height / base.seconds
    print(f"servetrace: {ours_rate / 1e6:.2f} M requests/s (target >= 1); "
          f"per-request Python: {base_rate / 1e6:.3f} M requests/s")
    print(f"speed ratio: {ours_rate / base_rate:.1f}x (target >= 20)")


if __name__ == "__main__":
    main()
