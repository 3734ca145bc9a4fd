"""Fidelity table: the fitted model against both baselines on the four shared LLM traces.

    python bench/fidelity.py [--runs 40] [--markdown]

Not a speed benchmark: the quality figures in the README's fidelity table, reproduced. For
each of Azure LLM 2023 code and conversation (Patel et al., ISCA 2024), Mooncake conversation
(Qin et al., FAST 2025) and the BurstGPT sample (Wang et al., 2024) in ``../shared/traces``:

- whole trace: :func:`servetrace.synth.model.fit` on the trace, ``runs`` samples of its span (seeds
  0 … runs − 1) scored by :func:`servetrace.synth.fidelity.fidelity`;
- held-out: :func:`servetrace.synth.fidelity.holdout` (fit on the first half, ``runs`` samples of
  the second half's span, baselines from the first half).

Prints the arrival metrics with mean errors, their standard deviations over the runs and the
verdict (win, tie or loss at two standard errors), then the count of each verdict. With
``--markdown``, the README's table: ``model / poisson / gamma`` per cell, bold where the model
wins, a dagger where it ties. 40 runs take about 90 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from servetrace.loaders import azure_llm_2023, burstgpt, mooncake
from servetrace.synth.fidelity import ARRIVAL_METRICS, fidelity, holdout
from servetrace.synth.model import fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
TRACES = {
    "Azure 2023 code": (azure_llm_2023, "azure_llm_2023/AzureLLMInferenceTrace_code.csv"),
    "Azure 2023 conv": (azure_llm_2023, "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"),
    "Mooncake conv": (mooncake, "mooncake_fast25/conversation_trace.jsonl"),
    "BurstGPT sample": (burstgpt, "burstgpt_sample/sample.jsonl"),
}
HEADERS = {"iat_cv": "CV", "idc_max_rel_error": "IDC curve", "hurst_av": "Hurst",
           "peak_to_mean_60s": "peak/mean 60 s", "iat_ks": "gap KS",
           "iat_wasserstein": "gap W1"}


def scores(runs: int) -> pl.DataFrame:
    """Arrival-metric rows of the whole-trace and held-out comparisons of every trace."""
    out = []
    for name, (loader, path) in TRACES.items():
        real = loader.load([SHARED / path], "bench/fidelity").tables["requests"]
        span = float(real["arrival_s"].max() - real["arrival_s"].min())
        model = fit(real)
        whole = fidelity(real, [model.sample(span, seed=s) for s in range(runs)], seed=0)
        held = holdout(real, seed=0, runs=runs)
        for time, table in (("whole", whole), ("held-out", held)):
            out.append(table.filter(pl.col("metric").is_in(ARRIVAL_METRICS)).with_columns(
                pl.lit(name).alias("trace"), pl.lit(time).alias("time")))
        print(f"{name}: done", file=sys.stderr)
    return pl.concat(out).select("trace", "time", pl.exclude("trace", "time"))


def _num(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.3g}"


def markdown(table: pl.DataFrame) -> str:
    """The README's table: one row per (trace, time), one cell per arrival metric."""
    lines = ["| trace | time | " + " | ".join(HEADERS.values()) + " |",
             "|---|---|" + "---|" * len(HEADERS)]
    for (trace, time), rows in table.group_by("trace", "time", maintain_order=True):
        cells = {r["metric"]: r for r in rows.iter_rows(named=True)}
        out = []
        for metric in HEADERS:
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
    args = parser.parse_args()
    table = scores(args.runs)
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(200)
    print(table.select("trace", "time", "metric", "real", "model", "model_sd", "poisson",
                       "poisson_sd", "gamma", "gamma_sd", "verdict")
          .with_columns(pl.col(pl.Float64).round_sig_figs(3)))
    print(table.group_by("verdict").len().sort("verdict"))
    if args.markdown:
        print(markdown(table))


if __name__ == "__main__":
    main()
