"""The end-to-end demo behind ``servetrace demo``: real traces in, one HTML report out.

Steps, each reported to ``on_step`` before it runs:

1. ingest the Azure LLM inference 2023 traces (code, conversation) and the Mooncake
   conversation trace into the store (downloaded, or served from ``SERVETRACE_MIRROR``);
2. characterize each: arrivals and burstiness, token lengths (:mod:`servetrace.analysis.report`);
3. fit a :class:`servetrace.synth.model.WorkloadModel` to each and sample a synthetic trace of the
   same duration (seed 0), saved as canonical ``requests`` Parquet;
4. compare synthetic traces with the real one next to the Poisson and gamma baselines
   (:func:`servetrace.synth.fidelity.fidelity`, mean errors over :data:`RUNS` seeds), and on
   held-out time (:func:`servetrace.synth.fidelity.holdout`);
5. export the synthetic traces for vLLM (``custom`` JSONL) and GuideLLM (trace file);
6. write one self-contained HTML report.

Everything lands in ``out_dir``: ``report.html``, ``synthetic/<trace>.parquet``,
``models/<trace>.json`` and ``exports/<format>/<trace>.<ext>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from servetrace.analysis import burstiness, plots, report
from servetrace.loaders import Store, ingest
from servetrace.synth import fidelity
from servetrace.synth.export import export
from servetrace.synth.model import fit

SOURCES = ("azure_llm_2023", "mooncake/conversation")
EXPORTS = {"vllm-custom": "jsonl", "guidellm": "jsonl"}
SEED = 0
RUNS = 5  # synthetic traces (seeds SEED…SEED+4) per comparison: errors are means over them


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote: the report, the synthetic traces, the exports, the traces used."""

    report: Path
    traces: tuple[str, ...]
    synthetic: dict[str, Path]
    exports: dict[str, Path]
    fidelity: pl.DataFrame


def _slug(trace: str) -> str:
    return trace.replace("/", "_")


def _fidelity_section(real: dict[str, pl.DataFrame], synthetic: dict[str, pl.DataFrame],
                      scores: dict[str, pl.DataFrame], held_out: dict[str, pl.DataFrame]
                      ) -> report.Section:
    """Fidelity tables and, per trace, the dispersion curves of real, model and baselines."""
    tables: list[tuple[str, pl.DataFrame]] = []
    charts = []
    for trace, frame in real.items():
        tables.append((f"{trace}: errors against the real trace (lower is better)",
                       scores[trace]))
        tables.append((f"{trace}: fitted on the first half, compared with the second",
                       held_out[trace]))
        duration = float(synthetic[trace]["arrival_s"].max())
        candidates = {"real": frame, "model": synthetic[trace],
                      **{kind: fidelity.baseline(frame, kind, duration, SEED + 10 + i)
                         for i, kind in enumerate(("poisson", "gamma"))}}
        curves = pl.concat([burstiness.dispersion_curve(c).with_columns(
            pl.lit(name).alias("trace")) for name, c in candidates.items()],
            how="diagonal_relaxed")
        charts.append(plots.dispersion(curves, by="trace").properties(
            title=f"{trace}: index of dispersion, real against synthetic"))
    lead = ("Each real trace is fitted (arrival process with its time-varying rate and "
            "burstiness, joint input/output lengths, sessions and prefixes where present) and "
            f"sampled for the same duration; errors are means over {RUNS} seeds. The baselines "
            "are what most benchmarks replay: Poisson arrivals with independently resampled "
            "lengths, and gamma arrivals with the trace's CV (vLLM's --burstiness). The "
            "verdict is a win where the model's mean error is below both baselines' by more "
            "than two standard errors, a loss where it is above either's by as much, and a "
            "tie otherwise.")
    return report.Section("Synthesis fidelity", lead, tuple(tables), tuple(charts))


def run(store: Store, out_dir: str | Path,
        on_step: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Run the demo (see the module docstring) and return what it wrote."""
    out = Path(out_dir)
    (out / "synthetic").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    traces: list[str] = []
    for source in SOURCES:
        on_step(f"ingesting {source}")
        traces += [r["trace"] for r in ingest(source, store=store, progress=False)]
    real = {t: store.scan("requests", t).collect().sort("arrival_s") for t in traces}
    sections: list[report.Section] = []
    for trace, frame in real.items():
        on_step(f"characterizing {trace}")
        sections += [report.arrivals(frame, title=f"{trace}: arrivals and burstiness"),
                     report.token_lengths(frame, title=f"{trace}: token lengths")]
    synthetic: dict[str, pl.DataFrame] = {}
    paths: dict[str, Path] = {}
    scores: dict[str, pl.DataFrame] = {}
    held_out: dict[str, pl.DataFrame] = {}
    for trace, frame in real.items():
        on_step(f"fitting and sampling {trace}")
        model = fit(frame, seed=SEED)
        model.save(out / "models" / f"{_slug(trace)}.json")
        duration = float(frame["arrival_s"].max())
        runs = [model.sample(duration, seed=SEED + i) for i in range(RUNS)]
        synthetic[trace] = runs[0]
        paths[trace] = out / "synthetic" / f"{_slug(trace)}.parquet"
        synthetic[trace].write_parquet(paths[trace])
        on_step(f"comparing {trace} with {RUNS} synthetic traces")
        scores[trace] = fidelity.fidelity(frame, runs, seed=SEED)
        held_out[trace] = fidelity.holdout(frame, seed=SEED, runs=RUNS)
    sections.append(_fidelity_section(real, synthetic, scores, held_out))
    exports: dict[str, Path] = {}
    for fmt, ext in EXPORTS.items():
        on_step(f"exporting for {fmt}")
        for trace, frame in synthetic.items():
            exports[f"{fmt}/{trace}"] = export(
                frame, fmt, out / "exports" / fmt / f"{_slug(trace)}.{ext}").path
    on_step("writing the report")
    meta = store.traces().filter(pl.col("trace").is_in(traces))
    page = report.render("servetrace demo: Azure LLM 2023 and Mooncake", sections, meta=meta)
    path = out / "report.html"
    path.write_text(page)
    summary = pl.concat([s.with_columns(pl.lit(t).alias("trace")) for t, s in scores.items()],
                        how="diagonal_relaxed")
    return DemoResult(path, tuple(traces), paths, exports,
                      summary.select("trace", pl.exclude("trace")))
