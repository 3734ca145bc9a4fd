"""Fidelity tables: the fitted model against both baselines on the four shared LLM traces
and on a process of known structure.

    python bench/fidelity.py [--runs 40] [--markdown] [--engine ray [--cpus 2]]

Not a speed benchmark: the quality figures in the README's fidelity tables, reproduced. For
each of Azure LLM 2023 code and conversation (Patel et al., ISCA 2024), Mooncake conversation
(Qin et al., FAST 2025) and the BurstGPT sample (Wang et al., 2024) in ``../shared/traces``,
and a two-state Markov-modulated Poisson process (MMPP: 20/s and 2/s, exponential sojourns
of mean 60 s, 4 h, seed 1, lognormal lengths of Gaussian correlation 0.6 — Poisson inside
each state, so a model must not make its gaps regular):

- whole trace: :func:`servetrace.synth.model.fit` on the trace, ``runs`` samples of its span (seeds
  0 … runs − 1) scored by :func:`servetrace.synth.fidelity.fidelity`;
- held-out: :func:`servetrace.synth.fidelity.holdout` (fit on the first half, ``runs`` samples of
  the second half's span, baselines from the first half).

Prints the arrival and length metrics with mean errors, their standard deviations over the
runs and the verdict (win, tie or loss at two standard errors), then the count of each
verdict per kind. With ``--markdown``, the README's two tables (arrivals; lengths, where both
baselines resample the real lengths): ``model / poisson / gamma`` per cell, bold where the
model wins, a dagger where it ties. 40 runs take a few minutes.

``--engine ray``: every run (its sample, its two baselines and all their metrics) is one Ray
task (:func:`servetrace.synth.fidelity.fidelity` with an engine); the whole computation runs
on the local engine and then on a local Ray instance of ``--cpus`` CPUs (or the cluster at
``--ray-address``), side by side in this process: wall times, peak memory (this process's
growth; Ray's worker processes summed) and whether the tables are identical.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from servetrace.loaders import azure_llm_2023, burstgpt, mooncake
from servetrace.loaders.schema import conform
from servetrace.synth.fidelity import ARRIVAL_METRICS, ModelRun, fidelity, holdout
from servetrace.synth.model import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_engine_args, side_by_side

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
TRACES = {
    "Azure 2023 code": (azure_llm_2023, "azure_llm_2023/AzureLLMInferenceTrace_code.csv"),
    "Azure 2023 conv": (azure_llm_2023, "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"),
    "Mooncake conv": (mooncake, "mooncake_fast25/conversation_trace.jsonl"),
    "BurstGPT sample": (burstgpt, "burstgpt_sample/sample.jsonl"),
}
MMPP = "MMPP 20/2 per s, 60 s"
HEADERS = {"iat_cv": "CV", "idc_max_rel_error": "IDC curve", "hurst_av": "Hurst",
           "peak_to_mean_60s": "peak/mean 60 s", "iat_ks": "gap KS",
           "iat_wasserstein": "gap W1"}
LENGTH_HEADERS = {"input_ks": "input KS", "input_wasserstein": "input W1",
                  "output_ks": "output KS", "output_wasserstein": "output W1",
                  "spearman": "Spearman ρ"}


def mmpp(duration_s: float = 4 * 3600.0, seed: int = 1) -> pl.DataFrame:
    """Two-state MMPP requests (rates 20/s and 2/s, exponential sojourns of mean 60 s), the
    process of tests/test_burstiness.py, with lognormal input/output lengths of Gaussian
    correlation 0.6 (Spearman (6/π) asin(0.3) = 0.58)."""
    rng = np.random.default_rng(seed)
    k = int(duration_s / 60.0 * 2) + 10
    ends = np.cumsum(rng.exponential(60.0, k))
    starts = np.concatenate([[0.0], ends[:-1]])
    lam = np.where(np.arange(k) % 2 == 0, 20.0, 2.0)
    n = rng.poisson(lam * (ends - starts))
    t = np.repeat(starts, n) + rng.random(n.sum()) * np.repeat(ends - starts, n)
    t = np.sort(t[t < duration_s])
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], len(t))
    return conform("requests", pl.DataFrame({
        "trace": "mmpp", "request_id": np.arange(len(t)).astype(str), "arrival_s": t,
        "input_tokens": np.exp(6 + z[:, 0]).astype(np.int64) + 1,
        "output_tokens": np.exp(4 + z[:, 1]).astype(np.int64) + 1}))


def scores(runs: int, engine: Any = None) -> pl.DataFrame:
    """Arrival and length rows of the whole-trace and held-out comparisons of every trace,
    each run scored as one task of ``engine`` (default: one after another here)."""
    out = []
    keep = (*ARRIVAL_METRICS, *LENGTH_HEADERS)
    for name in (*TRACES, MMPP):
        if name == MMPP:
            real = mmpp()
        else:
            loader, path = TRACES[name]
            real = loader.load([SHARED / path], "bench/fidelity").tables["requests"]
        span = float(real["arrival_s"].max() - real["arrival_s"].min())
        model = fit(real)
        whole = fidelity(real, [ModelRun(model, span, s) for s in range(runs)], seed=0,
                         engine=engine)
        held = holdout(real, seed=0, runs=runs, engine=engine)
        for time, table in (("whole", whole), ("held-out", held)):
            out.append(table.filter(pl.col("metric").is_in(keep)).with_columns(
                pl.lit(name).alias("trace"), pl.lit(time).alias("time")))
        print(f"{name}: done", file=sys.stderr)
    # traces with hash ids also carry the session-naive baseline's columns
    return pl.concat(out, how="diagonal_relaxed").select("trace", "time",
                                                         pl.exclude("trace", "time"))


def _num(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.3g}"


def markdown(table: pl.DataFrame, headers: dict[str, str] = HEADERS) -> str:
    """A README table: one row per (trace, time), one cell per metric of ``headers``."""
    lines = ["| trace | time | " + " | ".join(headers.values()) + " |",
             "|---|---|" + "---|" * len(headers)]
    for (trace, time), rows in table.group_by("trace", "time", maintain_order=True):
        cells = {r["metric"]: r for r in rows.iter_rows(named=True)}
        out = []
        for metric in headers:
            r = cells[metric]
            text = " / ".join(_num(r[k]) for k in ("model", "poisson", "gamma"))
            out.append(f"**{text}**" if r["verdict"] == "win"
                       else f"{text} †" if r["verdict"] == "tie" else text)
        lines.append(f"| {trace} | {time} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--markdown", action="store_true")
    add_engine_args(parser)
    args = parser.parse_args()
    table = side_by_side(lambda engine: scores(args.runs, engine), args,
                         lambda a, b: a.equals(b))
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(200)
    print(table.select("trace", "time", "metric", "real", "model", "model_sd", "poisson",
                       "poisson_sd", "gamma", "gamma_sd", "verdict")
          .with_columns(pl.col(pl.Float64).round_sig_figs(3)))
    kind = pl.when(pl.col("metric").is_in(ARRIVAL_METRICS)).then(pl.lit("arrivals")) \
        .otherwise(pl.lit("lengths")).alias("kind")
    print(table.with_columns(kind).group_by("kind", "verdict").len().sort("kind", "verdict"))
    if args.markdown:
        print(markdown(table))
        print()
        print(markdown(table, LENGTH_HEADERS))


if __name__ == "__main__":
    main()
