"""Mix sampling benchmark: what a mix costs over sampling its model alone.

    python bench/mix.py [--requests N]

Fits :func:`servetrace.synth.model.fit` to the real Azure LLM 2023 conversation trace in
``../shared/traces`` (Patel et al., "Splitwise", ISCA 2024), then, in this one process:

- baseline: ``model.sample(duration, seed)`` for the duration that holds N requests at the
  model's mean rate;
- servetrace mix: the same model as two priority classes (shares 0.6 and 0.3, TTFT SLOs,
  20 LoRA adapters of Zipf popularity drawn per request) plus an offline batch of its
  lengths (share 0.1), with a 3× spike over a tenth of the duration on both classes
  (thinning and an added copy), merged into one canonical table with the class columns.

Prints seconds, million requests per second and peak RSS per stage, the time ratio of the
mix to the baseline and both tables' sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import polars as pl
from _measure import measure, report

from servetrace.loaders import azure_llm_2023
from servetrace.synth import mix_popularity as mp
from servetrace.synth.mix import Mix, component
from servetrace.synth.mix_envelopes import Envelope
from servetrace.synth.model import fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2_000_000)
    args = ap.parse_args()
    path = SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    trace = azure_llm_2023.load([path], "azure_llm_2023/conv").tables["requests"]
    model = fit(trace.with_columns(pl.lit("azure_llm_2023/conv").alias("trace")))
    duration = args.requests / model.mean_rate
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "conv.json")
        zipf = mp.zipf(20, 1.1, prefix="lora", per="request")
        mix = Mix((component("chat", "conv.json", share=0.6, priority=0, slo_ttft_s=1.0,
                             models=zipf),
                   component("chat_low", "conv.json", share=0.3, priority=1, slo_ttft_s=5.0,
                             models=zipf),
                   component("backlog", "conv.json", kind="batch", share=0.1)),
                  (Envelope("spike", "burst", at_s=duration / 2, duration_s=duration / 10,
                            height=3.0),))
        # the mix's total is sized by its first component: scale it to N requests in all
        mix = Mix(mix.components, mix.envelopes, rate=args.requests / duration)
        base = measure("model.sample (baseline)", lambda: model.sample(duration, seed=1))
        mixed = measure("mix.sample", lambda: mix.sample(duration, seed=1, base=tmp))
    print(f"model: {path.name}, {model.mean_rate:.3g} req/s; duration {duration:,.0f} s; "
          f"baseline {base.result.height:,} rows, mix {mixed.result.height:,} rows "
          f"({mixed.result['request_class'].value_counts().sort('request_class').rows()})")
    print(report(args.requests, [base, mixed]))
    print(f"mix / baseline time: {mixed.seconds / base.seconds:.2f}x")


if __name__ == "__main__":
    main()
