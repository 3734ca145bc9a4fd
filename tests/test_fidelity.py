"""Fidelity: the metrics agree on processes that match, and the fitted model beats the baselines."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from loaders import azure_llm_2023, burstgpt, mooncake
from loaders.schema import conform
from synth.fidelity import ARRIVAL_METRICS, baseline, fidelity, holdout, split_half
from synth.model import fit


def _renewal(shape: float, rate: float, duration: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.gamma(shape, 1 / (rate * shape), int(rate * duration * 1.3)))
    t = t[t < duration]
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], len(t))
    return conform("requests", pl.DataFrame({
        "trace": "truth", "request_id": np.arange(len(t)).astype(str), "arrival_s": t,
        "input_tokens": np.exp(6 + z[:, 0]).astype(np.int64) + 1,
        "output_tokens": np.exp(4 + z[:, 1]).astype(np.int64) + 1}))


def test_two_samples_of_one_poisson_process_agree():
    real, other = _renewal(1.0, 5.0, 3600, 1), _renewal(1.0, 5.0, 3600, 2)
    table = fidelity(real, other, baselines=False)
    err = dict(zip(table["metric"], table["model"], strict=True))
    real_cv = table.filter(pl.col("metric") == "iat_cv")["real"][0]
    assert real_cv == pytest.approx(1.0, abs=0.03)
    assert err["iat_cv"] < 0.03 and err["iat_ks"] < 0.03 and err["hurst_av"] < 0.1
    assert err["idc_max_rel_error"] < 0.6  # two noisy estimates; SD ≈ 0.19 each at 60 s
    assert err["spearman"] < 0.05 and err["input_ks"] < 0.03


def test_baselines_have_the_real_rate_and_cv():
    real = _renewal(0.25, 5.0, 3600, 3)  # CV 2
    poisson, gamma = (baseline(real, k, 3600, seed=4) for k in ("poisson", "gamma"))
    for frame in (poisson, gamma):
        assert frame.height == pytest.approx(real.height, rel=0.1)
    gaps = np.diff(gamma["arrival_s"].to_numpy())
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.08)
    gaps = np.diff(poisson["arrival_s"].to_numpy())
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="unknown baseline 'uniform'"):
        baseline(real, "uniform", 10, 0)


@pytest.fixture(scope="module")
def real_traces(shared):
    t = shared
    return {
        "code": azure_llm_2023.load([t / "azure_llm_2023/AzureLLMInferenceTrace_code.csv"],
                                    "azure_llm_2023/code").tables["requests"],
        "conv": azure_llm_2023.load([t / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"],
                                    "azure_llm_2023/conv").tables["requests"],
        "mooncake": mooncake.load([t / "mooncake_fast25/conversation_trace.jsonl"],
                                  "mooncake/conversation").tables["requests"],
        "burstgpt": burstgpt.load([t / "burstgpt_sample/sample.jsonl"],
                                  "burstgpt/sample").tables["requests"],
    }


@pytest.mark.parametrize("name", ["code", "conv", "mooncake", "burstgpt"])
def test_model_beats_both_baselines_on_the_whole_trace(real_traces, name):
    real = real_traces[name]
    span = float(real["arrival_s"].max() - real["arrival_s"].min())
    table = fidelity(real, fit(real).sample(span, seed=1), seed=0)
    best = dict(zip(table["metric"], table["model_best"], strict=True))
    # the dispersion curve, long-range dependence and the gap distribution: what the
    # baselines cannot reproduce. (CV: the gamma baseline is given the real CV, so the model
    # and it tie within sampling noise; peak-to-mean at 60 s is reported, not asserted.)
    for metric in ("idc_max_rel_error", "hurst_av", "iat_ks"):
        assert best[metric], (name, metric, table.filter(pl.col("metric") == metric))
    assert set(ARRIVAL_METRICS) <= set(table["metric"])


def test_model_holds_up_on_held_out_time(real_traces):
    table = holdout(real_traces["conv"], seed=0)
    arrivals = table.filter(pl.col("kind") == "arrivals")
    assert arrivals["model_best"].all(), arrivals


def test_split_half_restarts_both_halves_at_zero(real_traces):
    first, second = split_half(real_traces["conv"])
    assert first.height + second.height == real_traces["conv"].height
    assert first["arrival_s"].min() == 0.0 and second["arrival_s"].min() >= 0.0
    assert second["arrival_s"].max() <= first["arrival_s"].max() + 1.0
