"""Session and prefix-reuse fidelity tables: the fitted model against the Poisson, gamma and
session-naive baselines on the agentic coding sessions and the Mooncake conversation trace.

    python bench/session_fidelity.py [--runs 10] [--markdown] [--engine ray [--cpus 2]]

Not a speed benchmark: the quality figures of the README's session fidelity table,
reproduced (run time and peak memory are printed per trace for scale). For WEKA's agentic
coding sessions (231 conversations, 64-token blocks, session-scoped ids) and the Mooncake
conversation trace (Qin et al., FAST 2025; 512-token blocks, global ids, no session
column) in ``../shared/traces``:

- whole trace: :func:`servetrace.synth.model.fit` on the trace, ``runs`` samples of its span
  (seeds 0 … runs − 1), scored by :func:`servetrace.synth.fidelity.fidelity` with the trace's
  block size and scope;
- held-out: :func:`servetrace.synth.fidelity.holdout` with ``split="sessions"``: fit on half
  of the conversations, score on the other half (requests without a session are
  conversations of one), baselines built from the fitted half.

Prints the KV-cache and session rows (mean errors, standard deviations over the runs, the
verdict at two standard errors against every baseline that has the figure). Where the model
cannot be fitted or sampled, says so and prints the baselines' errors alone (the same
seeds as :func:`~servetrace.synth.fidelity.fidelity` uses). With ``--markdown``, the
README's table: ``model / poisson / gamma / session-naive`` per cell, bold where the model
wins, a dagger where it ties. ``--engine ray`` scores each run as one Ray task, side by
side with the local engine (``bench/fidelity.py`` describes the comparison printed).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from servetrace.loaders import agentic_coding_weka, mooncake
from servetrace.synth import session_fidelity as sf
from servetrace.synth.fidelity import (
    SESSION_BASELINE,
    ModelRun,
    _baseline_seed,
    baseline,
    fidelity,
    holdout,
)
from servetrace.synth.model import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_engine_args, measure, side_by_side

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
TRACES = {  # name: (loader, path, block tokens, scope) as the traces table records them
    "WEKA agentic": (agentic_coding_weka, "agentic_coding_weka", 64, "session"),
    "Mooncake conv": (mooncake, "mooncake_fast25/conversation_trace.jsonl", 512, "global"),
}
KEEP = ("kvcache", "sessions")
HEADERS = {"hit_curve_max_abs": "hit curve max", "hit_curve_mean_abs": "hit curve mean",
           "hit_inf_global": "∞ hit (global)", "hit_inf_session": "∞ hit (session)",
           "turns_ks": "turns KS", "think_gap_ks": "think gap KS", "growth_ks": "growth KS",
           "subagents_wasserstein": "sub-agents W1"}
CANDIDATES = ("model", "poisson", "gamma", SESSION_BASELINE)


def _load(name: str) -> pl.DataFrame:
    loader, path, _, _ = TRACES[name]
    p = SHARED / path
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    return loader.load(files, "bench/session_fidelity").tables["requests"]


def baselines_only(real: pl.DataFrame, reference: pl.DataFrame, duration: float, runs: int,
                   block: int, scope: str, seed: int = 0) -> pl.DataFrame:
    """The three baselines' session errors with fidelity()'s seeds, for a trace the model
    cannot be fitted on (a table with a null model column)."""
    ref = sf.reference(real, block_tokens=block, scope=scope)
    per: dict[str, list[dict]] = {k: [] for k in CANDIDATES[1:]}
    for i in range(runs):
        for k, kind in enumerate(CANDIDATES[1:]):
            s = _baseline_seed(seed, i, k)
            cand = (sf.session_naive(reference, duration, s, scope=scope)
                    if kind == SESSION_BASELINE else baseline(reference, kind, duration, s))
            per[kind].append(sf.errors(ref, cand, seed))
    names = list(per["poisson"][0])
    real_values = sf.real_values(ref)

    def mean_sd(kind: str, n: str) -> tuple[float | None, float | None]:
        v = np.array([r[n] for r in per[kind] if r.get(n) is not None], np.float64)
        return (float(v.mean()) if v.size else None,
                float(v.std(ddof=1)) if v.size > 1 else None)

    cols: dict[str, list] = {"metric": names, "kind": [sf.KINDS[n] for n in names],
                             "real": [real_values.get(n) for n in names],
                             "model": [None] * len(names), "model_sd": [None] * len(names)}
    for kind in CANDIDATES[1:]:
        pairs = [mean_sd(kind, n) for n in names]
        cols[kind] = [p[0] for p in pairs]
        cols[f"{kind}_sd"] = [p[1] for p in pairs]
    cols["verdict"] = [None] * len(names)
    return pl.DataFrame(cols, schema_overrides={c: pl.Float64 for c in cols
                                                if c not in ("metric", "kind", "verdict")}
                        ).with_columns(pl.col("verdict").cast(pl.String))


def _score_trace(name: str, runs: int, engine: Any = None) -> list[tuple[str, pl.DataFrame]]:
    """The whole-trace and held-out tables of one trace (baselines alone where the model
    fails, with the failure printed)."""
    _, _, block, scope = TRACES[name]
    real = _load(name)
    span = float(real["arrival_s"].max() - real["arrival_s"].min())
    try:
        model = fit(real)
        whole = fidelity(real, [ModelRun(model, span, s) for s in range(runs)],
                         seed=0, block_tokens=block, scope=scope, engine=engine)
    except Exception as exc:  # the bench reports any failure of the model
        print(f"{name}: the model failed on the whole trace: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        whole = baselines_only(real, real, span, runs, block, scope)
    try:
        held = holdout(real, seed=0, runs=runs, split="sessions", block_tokens=block,
                       scope=scope, engine=engine)
    except Exception as exc:
        print(f"{name}: the model failed on held-out sessions: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        a, b = sf.split_sessions(real, 0)
        start = real["arrival_s"].min()
        a, b = (h.with_columns(pl.col("arrival_s") - start) for h in (a, b))
        held = baselines_only(b, a, float(b["arrival_s"].max() - b["arrival_s"].min()),
                              runs, block, scope)
    return [("whole", whole), ("held-out sessions", held)]


def scores(runs: int, engine: Any = None) -> pl.DataFrame:
    out = []
    for name in TRACES:
        m = measure(name, functools.partial(_score_trace, name, runs, engine))
        for mode, table in m.result:
            out.append(table.filter(pl.col("kind").is_in(KEEP)).select(
                pl.lit(name).alias("trace"), pl.lit(mode).alias("time"), "metric", "real",
                *(c for k in CANDIDATES for c in (k, f"{k}_sd")), "verdict"))
        print(f"{name}: {m.seconds:.0f} s, peak {m.peak_gb:.2f} GB", file=sys.stderr)
    return pl.concat(out, how="vertical_relaxed")


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.3g}"


def markdown(table: pl.DataFrame) -> str:
    """The README table: one row per (trace, time), one cell per metric of HEADERS that
    either trace has."""
    have = [m for m in HEADERS if m in set(table["metric"])]
    lines = ["| trace | scored on | " + " | ".join(HEADERS[m] for m in have) + " |",
             "|---|---|" + "---|" * len(have)]
    for (trace, mode), rows in table.group_by("trace", "time", maintain_order=True):
        cells = {r["metric"]: r for r in rows.iter_rows(named=True)}
        out = []
        for metric in have:
            r = cells.get(metric)
            if r is None:
                out.append("")
                continue
            text = " / ".join(_num(r[k]) for k in CANDIDATES)
            out.append(f"**{text}**" if r["verdict"] == "win"
                       else f"{text} †" if r["verdict"] == "tie" else text)
        lines.append(f"| {trace} | {mode} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--markdown", action="store_true")
    add_engine_args(parser)
    args = parser.parse_args()
    table = side_by_side(lambda engine: scores(args.runs, engine), args,
                         lambda a, b: a.equals(b))
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(250)
    print(table.with_columns(pl.col(pl.Float64).round_sig_figs(3)))
    if args.markdown:
        print(markdown(table))


if __name__ == "__main__":
    main()
