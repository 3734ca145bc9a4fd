"""Serverless fidelity tables: the fitted model against both baselines on the shared Azure
Functions 2019 and 2021 samples, and the representative subset against random ones.

    python bench/serverless_fidelity.py [--runs 20] [--subset-seeds 20] [--markdown]

Not a speed benchmark: the quality figures in the README's serverless fidelity tables,
reproduced. For the Azure Functions 2019 sample (500 functions × 480 minutes, Shahrad et al.,
USENIX ATC 2020) and the Azure Functions 2021 sample (the first 998 invocations, 49 functions,
1.8 h, per-invocation times; Zhang et al., SOSP 2021) in ``../shared/traces``:

- whole trace: :func:`servetrace.synth.serverless.fit` on the trace, ``runs`` samples of its
  span (seeds 0 … runs − 1) scored by :func:`servetrace.synth.serverless_fidelity.fidelity`
  beside the ``replay_uniform`` and ``poisson`` baselines (same seeds per run);
- held-out: :func:`servetrace.synth.serverless_fidelity.holdout` (fit on the first half,
  ``runs`` samples of the second half's span, baselines from the first half).

Prints every metric's mean errors and standard deviations over the runs, the verdict against
both baselines together and against each alone (win, tie or loss at two standard errors,
:func:`servetrace.synth.fidelity.verdict`), then the win/tie/loss counts per trace, time and
baseline. Then, over ``subset-seeds`` seeds, the distances of a 100-function representative
subset of the 2019 sample's 500 against the InVitro-style and random subsets
(:func:`servetrace.synth.serverless_subset.compare`), with the number of seeds on which the
representative subset is closer than the random one on every distance. With ``--markdown``,
the README's tables: ``model / replay / Poisson`` per cell, bold where the model wins against
both, a dagger where it ties.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from servetrace.loaders import azure_functions_2019, azure_functions_2021
from servetrace.synth import serverless as sv
from servetrace.synth import serverless_fidelity as sf
from servetrace.synth import serverless_subset as ss
from servetrace.synth.fidelity import verdict

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
AF19 = "Azure 2019 sample"
AF21 = "Azure 2021 sample"
HEADERS = {
    "idc_max_rel_error": "IDC max. rel. error (60 s … 30 min)",
    "function_idc_ks": "per-function IDC (60 s), KS",
    "iat_cv_ks": "per-function IAT CV (minute grid), KS",
    "cv0_share_error": "share of apps with CV 0, abs. error",
    "cv1_share_error": "share of apps with CV ≤ 1, abs. error",
    "rate_ks": "rate across functions, KS",
    "rate_wasserstein": "rate across functions, W1 (log10)",
    "duration_mean_error": "duration mean vs published, median \\|ln\\|",
    "duration_ks": "duration means across functions, KS",
    "memory_mean_error": "memory mean vs published, median \\|ln\\|",
    "memory_ks": "memory means across functions, KS",
    "cold_fixed10_error": "cold fraction, fixed 10 min, rel. error",
    "cold_fixed10_p75_error": "p75 app cold fraction, fixed 10 min",
    "cold_hybrid_error": "cold fraction, hybrid histogram, rel. error",
    "fine_idc_max_rel_error": "IDC max. rel. error (1 … 30 s)",
    "exact_iat_cv_ks": "per-function IAT CV (exact times), KS",
    "exact_cv1_share_error": "share of functions with exact CV ≤ 1, abs. error",
    "gap_ks": "inter-arrival gaps, KS",
    "cold_fixed10s_error": "cold fraction, fixed 10 s, rel. error",
    "cold_fixed60s_error": "cold fraction, fixed 60 s, rel. error",
}


def load(name: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The real table (and its ``functions`` table) of a shared sample."""
    if name == AF19:
        t = azure_functions_2019.load([SHARED / "azure_functions_2019"], "bench").tables
        return t["invocation_counts"], t["functions"]
    path = (SHARED / "azure_functions_2021"
            / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv")
    return azure_functions_2021.load([path], "bench").tables["invocations"], None


def _verdicts(table: pl.DataFrame, runs: int) -> pl.DataFrame:
    """Verdict of the model against each baseline alone."""
    out = {}
    for b in sf.BASELINES:
        out[f"vs_{b}"] = [
            verdict((r["model"], r["model_sd"], runs), [(r[b], r[f"{b}_sd"], runs)])
            for r in table.iter_rows(named=True)]
    return table.with_columns(pl.Series(k, v, pl.String) for k, v in out.items())


def scores(runs: int) -> pl.DataFrame:
    """Every metric of the whole-trace and held-out comparisons of both samples."""
    out = []
    for name in (AF19, AF21):
        real, fx = load(name)
        span = sf._span(real)
        model = sv.fit(real, fx)
        whole = sf.fidelity(real, [model.sample(span, seed=s) for s in range(runs)],
                            functions=fx, seed=0)
        held = sf.holdout(real, fx, seed=0, runs=runs)
        for time, table in (("whole", whole), ("held-out", held)):
            out.append(_verdicts(table, runs).filter(pl.col("model").is_not_null())
                       .with_columns(pl.lit(name).alias("trace"), pl.lit(time).alias("time")))
        print(f"{name}: done", file=sys.stderr)
    return pl.concat(out, how="diagonal_relaxed").select("trace", "time",
                                                         pl.exclude("trace", "time"))


def counts(table: pl.DataFrame) -> pl.DataFrame:
    """Wins, ties and losses per trace, time and opponent (both baselines, or each alone)."""
    parts = []
    for col, label in (("verdict", "both"), *((f"vs_{b}", b) for b in sf.BASELINES)):
        parts.append(table.group_by("trace", "time", maintain_order=True).agg(
            pl.lit(label).alias("against"),
            *[(pl.col(col) == v).sum().alias(v) for v in ("win", "tie", "loss")],
            pl.len().alias("metrics")))
    return pl.concat(parts).sort("trace", "time", "against", descending=[False, True, False])


def subsets(seeds: int, n: int = 100) -> tuple[pl.DataFrame, int]:
    """Mean distances per method over ``seeds``, and the number of seeds on which the
    representative subset is closer than the random one on every continuous distance (and
    no farther on the trigger mix, which its quotas make the smallest possible)."""
    counts_, functions = load(AF19)
    feats = ss.features(counts_, functions)
    res = ss.compare(feats, n, range(seeds))
    names = [c for c in res.columns if c not in ("seed", "method")]
    rep = res.filter(pl.col("method") == "representative").sort("seed")
    rnd = res.filter(pl.col("method") == "random").sort("seed")
    better = pl.all_horizontal(
        [(rep[c] < rnd[c]) if c != "trigger_tv" else (rep[c] <= rnd[c]) for c in names])
    wins = int(pl.select(better).to_series().sum())
    return res.drop("seed").group_by("method", maintain_order=True).mean(), wins


def _num(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.3g}"


def markdown(table: pl.DataFrame, trace: str) -> str:
    """A README table for one trace: one row per metric, whole and held-out cells."""
    lines = ["| metric | whole: model / replay / Poisson | held-out: model / replay / Poisson |",
             "|---|---|---|"]
    t = table.filter(pl.col("trace") == trace)
    for metric, head in HEADERS.items():
        cells = []
        for time in ("whole", "held-out"):
            r = t.filter((pl.col("time") == time) & (pl.col("metric") == metric))
            if r.height == 0:
                cells.append("—")
                continue
            r = r.row(0, named=True)
            text = " / ".join(_num(r[k]) for k in ("model", *sf.BASELINES))
            v = r["verdict"]
            cells.append(f"**{text}**" if v == "win" else f"{text} †" if v == "tie"
                         else f"{text} (loss)" if v == "loss" else text)
        if cells != ["—", "—"]:
            lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--subset-seeds", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(220)
    table = scores(args.runs)
    print(table.select("trace", "time", "metric", "model", "model_sd", "replay_uniform",
                       "replay_uniform_sd", "poisson", "poisson_sd", "verdict",
                       "vs_replay_uniform", "vs_poisson")
          .with_columns(pl.col(pl.Float64).round_sig_figs(3)))
    print(counts(table))
    res, wins = subsets(args.subset_seeds)
    print(res.with_columns(pl.col(pl.Float64).round_sig_figs(3)))
    print(f"representative closer than random on every distance: {wins} of "
          f"{args.subset_seeds} seeds")
    if args.markdown:
        for trace in (AF19, AF21):
            print(f"\n{trace}\n")
            print(markdown(table, trace))


if __name__ == "__main__":
    main()
