"""servetrace.synth.scale: rate rescaling, time compression, tenant thinning, superposition,
hardware
targeting; every step recorded."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from servetrace.loaders import azure_llm_2023
from servetrace.synth.model import fit
from servetrace.synth.scale import (
    METADATA_KEY,
    HardwareProfile,
    Scaled,
    compress_time,
    offered_load,
    rate_scale_for,
    rescale_rate,
    sample_metadata,
    superpose,
    target_hardware,
    thin,
)

PROFILE = """
name: test-gpu
prefill_tokens_per_s: 20000
decode_tokens_per_s: 2000
max_concurrent_sequences: 64
kv_cache_tokens: 500000
"""


@pytest.fixture(scope="module")
def conv(shared) -> pl.DataFrame:
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    return azure_llm_2023.load([path], "azure_llm_2023/conv").tables["requests"] \
        .with_columns(pl.lit("azure_llm_2023/conv").alias("trace"))


@pytest.fixture(scope="module")
def poisson() -> pl.DataFrame:
    """2 requests/s for an hour, every request 1000 tokens in and 100 out, tenants a/b/c."""
    rng = np.random.default_rng(21)
    t = np.cumsum(rng.exponential(0.5, 7200))
    t = t[t < 3600]
    n = len(t)
    return pl.DataFrame({"trace": "p", "arrival_s": t, "input_tokens": np.full(n, 1000),
                         "output_tokens": np.full(n, 100),
                         "tenant": rng.choice(["a", "b", "c"], n)})


def _records(scaled: Scaled) -> list[dict[str, str]]:
    return json.loads(scaled.metadata()[METADATA_KEY])


def _cv(t: np.ndarray) -> float:
    g = np.diff(t)
    return float(g.std() / g.mean())


def test_rescale_model_keeps_burst_shape(conv):
    model = fit(conv)
    double = rescale_rate(model, 2.0)
    assert double.mean_rate == pytest.approx(2 * model.mean_rate)
    assert [r.op for r in double.history] == ["rescale_rate"]
    assert dict(double.history[0].params)["factor"] == "2.0"
    one = model.sample(3600, 9)["arrival_s"].to_numpy()
    two = double.sample(3600, 9)["arrival_s"].to_numpy()
    assert len(two) / len(one) == pytest.approx(2.0, rel=0.05)
    assert _cv(two) == pytest.approx(_cv(one), rel=0.05)
    assert model.history == ()  # the input model is unchanged (frozen)


def test_rescale_trace_thins_or_refits(poisson):
    half = rescale_rate(poisson, 0.5, seed=3)
    assert isinstance(half, Scaled)
    # binomial(n ≈ 7200, ½): sd ≈ 0.6 %
    assert half.requests.height / poisson.height == pytest.approx(0.5, abs=0.03)
    assert _records(half) == [{"op": "rescale_rate", "factor": "0.5", "method": "thinning",
                               "seed": "3"}]
    more = rescale_rate(poisson, 3.0, seed=3)
    assert more.requests.height / poisson.height == pytest.approx(3.0, rel=0.05)
    assert _records(more)[0]["method"] == "fit+sample"


def test_compress_time_and_chained_records(poisson):
    fast = compress_time(poisson, 4.0)
    assert (fast.requests["arrival_s"] * 4).to_list() == pytest.approx(
        poisson["arrival_s"].to_list())
    chained = compress_time(rescale_rate(poisson, 0.5, seed=1), 2.0)
    assert [r["op"] for r in _records(chained)] == ["rescale_rate", "compress_time"]
    with pytest.raises(ValueError, match="factor"):
        compress_time(poisson, 0.0)


def test_thin_keeps_whole_tenants(poisson):
    named = thin(poisson, tenants=["a", "c"])
    assert set(named.requests["tenant"].unique().to_list()) == {"a", "c"}
    assert named.requests.height == poisson.filter(pl.col("tenant") != "b").height
    some = thin(poisson, fraction=0.5, seed=2)
    kept = set(some.requests["tenant"].unique().to_list())
    for t in kept:  # every kept tenant keeps all its requests
        assert some.requests.filter(pl.col("tenant") == t).height == \
            poisson.filter(pl.col("tenant") == t).height
    assert _records(some)[0]["op"] == "thin"
    with pytest.raises(ValueError, match="tenants, fraction"):
        thin(poisson)


def test_superpose_merges_in_order(poisson, conv):
    both = superpose(poisson, conv.head(1000))
    assert both.requests.height == poisson.height + 1000
    assert both.requests["arrival_s"].is_sorted()
    assert set(both.requests["trace"].unique().to_list()) == {"p", "azure_llm_2023/conv"}
    assert _records(both) == [{"op": "superpose", "parts": "2",
                               "traces": "p;azure_llm_2023/conv"}]


def test_hardware_profile_from_yaml(tmp_path):
    from_text = HardwareProfile.from_yaml(PROFILE)
    path = tmp_path / "gpu.yaml"
    path.write_text(PROFILE)
    assert HardwareProfile.from_yaml(path) == from_text == HardwareProfile(
        20000, 2000, 64, 500000, "test-gpu")
    with pytest.raises(ValueError, match="kv_cache_tokens"):
        HardwareProfile.from_yaml("prefill_tokens_per_s: 1\ndecode_tokens_per_s: 1\n"
                                  "max_concurrent_sequences: 1\n")
    with pytest.raises(ValueError, match="decode_tokens_per_s"):
        HardwareProfile(1.0, -1.0, 1, 1.0)


def test_offered_load_formula_and_rate_scale(poisson):
    model = fit(poisson)
    profile = HardwareProfile.from_yaml(PROFILE)
    load = offered_load(model, profile)
    lam = model.mean_rate  # 2 requests/s; I = 1000, O = 100 tokens
    assert lam == pytest.approx(2.0, rel=0.03)
    t = 1000 / 20000 + 100 * 64 / 2000  # residence: 0.05 s prefill + 3.2 s decode
    assert load.compute == pytest.approx(lam * (1000 / 20000 + 100 / 2000))
    assert load.sequences == pytest.approx(lam * t / 64)
    assert load.kv_cache == pytest.approx(lam * t * (1000 + 50) / 500000)
    assert load.utilization == max(load.compute, load.sequences, load.kv_cache)
    scale = rate_scale_for(model, profile, 0.8)
    assert offered_load(model, profile, scale).utilization == pytest.approx(0.8)
    targeted = target_hardware(model, profile, 0.8)
    assert offered_load(targeted, profile).utilization == pytest.approx(0.8)
    record = dict(targeted.history[-1].params)
    assert targeted.history[-1].op == "target_hardware"
    assert record["profile"] == "test-gpu" and record["utilization"] == "0.8"
    meta = json.loads(sample_metadata(targeted, 60.0, 5)[METADATA_KEY])
    assert [m["op"] for m in meta] == ["target_hardware", "sample"]
    assert meta[-1]["seed"] == "5" and meta[-1]["source"] == "p"


def test_profile_without_a_kv_cache_size_has_no_kv_limit():
    from servetrace.synth.scale import HardwareProfile

    text = ("prefill_tokens_per_s: 8000\ndecode_tokens_per_s: 2000\n"
            "max_concurrent_sequences: 64\nkv_cache_tokens: null\n")
    profile = HardwareProfile.from_yaml(text)
    assert profile.kv_cache_tokens == float("inf")
    with pytest.raises(ValueError, match="kv_cache_tokens"):
        HardwareProfile.from_yaml(text.replace("null", "-5"))
