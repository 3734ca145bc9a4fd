"""Workload-mix columns in the exports (issue 20): AIPerf's ``extra`` carries each request's
model (or LoRA adapter) and priority, every other format's notes name the mix columns it did
not write, and the consumers that assign adapters themselves get the trace's names and shares
in the form they read (vLLM flags, SGLang's skewed distribution, inference-perf's splits)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import polars as pl
import pytest

from servetrace.synth.export import FORMATS, LORA_CONSUMERS, _classes, export

MIX_COLUMNS = ["request_class", "offline", "priority", "slo_ttft_s", "slo_tpot_s", "model"]


def _mix(n: int = 40) -> pl.DataFrame:
    """A mix: online (priority 0, TTFT SLO 1 s) and offline (priority 2) requests over four
    adapters with shares 8:4:2:1 (geometric, ratio 2) scaled to ``n`` = 15·k rows."""
    rng = np.random.default_rng(3)
    models = np.repeat(["ad0", "ad1", "ad2", "ad3"], [8 * n // 15, 4 * n // 15, 2 * n // 15,
                                                      n // 15])
    m = models.size
    online = np.arange(m) % 3 != 0
    return pl.DataFrame({
        "trace": ["mix"] * m, "arrival_s": np.sort(rng.uniform(0, 60, m)),
        "input_tokens": rng.integers(10, 2000, m), "output_tokens": rng.integers(1, 300, m),
        "model": rng.permutation(models),
        "request_class": np.where(online, "online", "offline"), "offline": ~online,
        "priority": np.where(online, 0, 2),
        "slo_ttft_s": pl.Series(np.where(online, 1.0, np.nan)).fill_nan(None),
        "slo_tpot_s": pl.Series([None] * m, dtype=pl.Float64),
    })


def _llm_formats() -> list[str]:
    return [name for name, module in FORMATS.items() if not hasattr(module, "TABLES")]


@pytest.mark.parametrize("to", _llm_formats())
def test_every_export_names_the_mix_columns_it_did_not_write(to, tmp_path):
    frame = _mix(45)
    result = export(frame, to, tmp_path / f"out{FORMATS[to].SUFFIX}")
    lost = [c for c in MIX_COLUMNS if c != "slo_tpot_s" and c not in result.carried]
    [note] = [n for n in result.notes if "not written (no field" in n]
    for col in lost:
        assert col in note
    assert "slo_tpot_s" not in note  # null in every row: nothing lost
    if "model" in lost:
        assert "model (4 names: ad0, ad1, ad2, ad3)" in note
    assert ("model" in result.carried) == (to.startswith("aiperf-") and to != "aiperf-bailian")
    # the same trace without the mix columns exports as before: no such note
    plain = export(frame.drop(MIX_COLUMNS), to, tmp_path / f"plain{FORMATS[to].SUFFIX}")
    assert not any("not written" in n or "adapters" in n for n in plain.notes)
    assert plain.carried == ()


@pytest.mark.parametrize("to", ["aiperf-mooncake", "aiperf-single-turn", "aiperf-multi-turn"])
def test_aiperf_extra_carries_model_and_priority(to, tmp_path):
    frame = _mix(30)
    result = export(frame, to, tmp_path / "a.jsonl", priority=True)
    assert result.carried == ("model", "priority")
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    if to == "aiperf-multi-turn":  # one conversation per request here (no sessions)
        lines = [turn for line in lines for turn in line["turns"]]
    want = frame.sort("arrival_s", maintain_order=True)
    assert [line["extra"] for line in lines] == [
        {"model": m, "priority": p} for m, p in zip(want["model"], want["priority"],
                                                    strict=True)]
    # without priority=True only the model goes, and a note says how to send priorities
    models_only = export(frame, to, tmp_path / "b.jsonl")
    assert models_only.carried == ("model",)
    assert any("--set priority=true" in n for n in models_only.notes)
    first = json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])
    first = first["turns"][0] if to == "aiperf-multi-turn" else first
    assert set(first["extra"]) == {"model"}


def test_model_names_of_a_source_trace_are_not_sent(tmp_path):
    """A trace that is not a mix (no request_class) records the model it was served by
    (BurstGPT's ChatGPT, GPT-4): sending that name to the user's server would fail, so it is
    written only when asked, and a request without a model cannot be forced."""
    frame = _mix(30).drop("request_class")
    auto = export(frame, "aiperf-mooncake", tmp_path / "a.jsonl")
    assert "model" not in auto.carried
    assert "extra" not in json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert export(frame, "aiperf-mooncake", tmp_path / "b.jsonl", models=True).carried == (
        "model",)
    holes = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                               .otherwise(pl.col("model")).alias("model"))
    with pytest.raises(ValueError, match="1 requests name no model"):
        export(holes, "aiperf-mooncake", tmp_path / "c.jsonl", models=True)
    # and no adapter flags for a trace that is not a mix
    assert not any("adapters" in n for n in export(frame, "vllm-custom",
                                                   tmp_path / "v.jsonl").notes)


def test_adapter_notes_give_each_consumer_the_trace_shares(tmp_path):
    frame = _mix(45)  # 24 : 12 : 6 : 3 requests
    notes = {to: export(frame, to, tmp_path / f"o{FORMATS[to].SUFFIX}").notes
             for to in LORA_CONSUMERS}
    [vllm] = [n for n in notes["vllm-mooncake"] if "adapters" in n]
    assert "--lora-modules ad0 ad1 ad2 ad3" in vllm and "ad0 53.3%" in vllm
    [sglang] = [n for n in notes["sglang-custom"] if "adapters" in n]
    assert "--lora-name ad0 ad1 ad2 ad3 --lora-request-distribution skewed " \
           "--lora-zipf-alpha 2`" in sglang  # shares halve from one adapter to the next
    [ip] = [n for n in notes["weka"] if "adapters" in n]
    splits = [float(x) for x in re.findall(r"\bsplit: ([0-9.e-]+)\}", ip)]
    assert len(splits) == 4
    assert sum(splits) == 1.0  # exactly: inference-perf compares with !=
    assert splits == pytest.approx([24 / 45, 12 / 45, 6 / 45, 3 / 45], abs=2**-16)


def test_dyadic_splits_and_geometric_ratio():
    shares = np.array([0.5, 0.3, 0.15, 0.05, 1e-7])
    splits = _classes.dyadic_splits(shares)
    assert math.fsum(splits) == 1.0 and float(np.sum(splits)) == 1.0
    assert sum(splits.tolist()) == 1.0
    assert (splits >= _classes.SPLIT_UNIT).all()
    np.testing.assert_allclose(splits, shares, atol=2**-15)
    for alpha in (1.3, 2.0, 5.0):
        w = alpha ** -np.arange(6.0)
        assert _classes.geometric_alpha(w / w.sum()) == pytest.approx(alpha)
    assert _classes.geometric_alpha(np.array([1.0])) is None


def test_export_command_takes_the_mix_options(tmp_path):
    from typer.testing import CliRunner

    from servetrace.cli import app
    from servetrace.loaders import schema

    path = tmp_path / "mix.parquet"
    schema.conform("requests", _mix(30)).write_parquet(path)
    out = tmp_path / "a.jsonl"
    res = CliRunner().invoke(app, ["export", str(path), "--to", "aiperf-mooncake", "-o",
                                   str(out), "--set", "priority=true", "--set", "models=false",
                                   "--store", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first["extra"]) == {"priority"}
    assert "model (4 names" in " ".join(res.output.split())
