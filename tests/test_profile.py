"""Hardware profiles (synth/profile): the sweep against the test server recovers the server's
configured cost model (prefill rate, per-sequence and aggregate decode rate, the concurrency
knee, the KV-cache size it publishes), and the pure estimators recover known answers."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from servetrace.synth import profile as pf
from servetrace.synth.server import ServerConfig, serve

CONFIG = ServerConfig(prefill_base_s=0.004, prefill_tokens_per_s=20_000.0,
                      decode_tokens_per_s=200.0, max_concurrent_sequences=4,
                      kv_cache_tokens=8200, block_size=16)


@pytest.fixture(scope="module")
def measured():
    with serve(CONFIG) as url:
        return pf.profile_endpoint(url, prefill_tokens=(500, 2000, 4000), prefill_repeats=3,
                                   concurrency=(1, 2, 4, 8, 16), decode_tokens=16,
                                   level_s=0.8, api_key_env=None)


def test_sweep_recovers_the_server_cost_model(measured):
    p = measured
    # tolerances: a 2-core machine shared with other work delays some chunks (~0.1 s at
    # worst), which a 0.6 s measurement window feels
    assert p.prefill_tokens_per_s == pytest.approx(CONFIG.prefill_tokens_per_s, rel=0.2)
    assert p.decode_tokens_per_s_per_sequence == pytest.approx(CONFIG.decode_tokens_per_s,
                                                               rel=0.1)
    # aggregate: 4 slots x 200 tokens/s, less the prefill gap between a slot's requests
    assert p.decode_tokens_per_s == pytest.approx(800.0, rel=0.2)
    assert abs(p.max_concurrent_sequences - CONFIG.max_concurrent_sequences) <= 1
    assert p.knee_found is True
    assert p.kv_cache_tokens == 8200 // 16 * 16 and p.kv_cache_source == "vllm:cache_config_info"
    assert p.model == CONFIG.model and p.endpoint.endswith("/v1/completions")
    # below the knee every level scales linearly; beyond it requests queue (TTFT grows)
    x = {s.concurrency: s.output_tokens_per_s for s in p.sweep}
    assert x[2] / x[1] == pytest.approx(2, rel=0.2) and x[4] / x[1] == pytest.approx(4, rel=0.2)
    assert x[16] == pytest.approx(x[4], rel=0.2)
    ttft = {s.concurrency: s.ttft_p50_s for s in p.sweep}
    assert ttft[16] > 5 * ttft[1]
    assert all(s.failed == 0 for s in p.sweep)


def test_yaml_round_trip(measured, tmp_path):
    path = pf.write_profile(measured, tmp_path / "hw" / "profile.yaml")
    data = yaml.safe_load(path.read_text())
    assert list(data)[:4] == list(pf.PROFILE_KEYS)
    assert pf.read_profile(path) == measured


def test_scale_reads_the_written_profile(measured, tmp_path):
    from servetrace.synth.scale import HardwareProfile

    hw = HardwareProfile.from_yaml(pf.write_profile(measured, tmp_path / "profile.yaml"))
    assert hw == HardwareProfile(measured.prefill_tokens_per_s, measured.decode_tokens_per_s,
                                 measured.max_concurrent_sequences, measured.kv_cache_tokens,
                                 measured.name)
    assert hw.name.startswith(CONFIG.model + " @ http://127.0.0.1:")


def test_read_profile_by_hand_and_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("prefill_tokens_per_s: 12000\ndecode_tokens_per_s: 3000.5\n"
                    "max_concurrent_sequences: 256\nkv_cache_tokens: null\n")
    p = pf.read_profile(path)
    assert (p.prefill_tokens_per_s, p.decode_tokens_per_s, p.max_concurrent_sequences,
            p.kv_cache_tokens) == (12000, 3000.5, 256, None)
    for text, match in (("decode_tokens_per_s: 1\n", "missing key 'prefill_tokens_per_s'"),
                        ("prefill_tokens_per_s: -1\ndecode_tokens_per_s: 1\n"
                         "max_concurrent_sequences: 1\nkv_cache_tokens: 1\n", "positive"),
                        ("- 1\n", "mapping")):
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            pf.read_profile(path)


def test_fit_prefill_known_line():
    n = np.array([100, 1000, 4000, 8000])
    rate, base = pf.fit_prefill(n, 0.02 + n / 12_500)
    assert rate == pytest.approx(12_500) and base == pytest.approx(0.02)
    rng = np.random.default_rng(0)
    noisy = 0.02 + n / 12_500 + rng.normal(0, 0.002, n.size)  # 2 ms noise on 0.02..0.66 s
    assert pf.fit_prefill(n, noisy)[0] == pytest.approx(12_500, rel=0.02)
    with pytest.raises(ValueError, match="two distinct"):
        pf.fit_prefill([5, 5], [0.1, 0.2])
    with pytest.raises(ValueError, match="not measurable"):
        pf.fit_prefill([1, 2], [0.2, 0.1])


def test_find_knee_known_answers():
    levels = np.array([1, 2, 4, 8, 16, 32, 64])
    assert pf.find_knee(levels, 50.0 * np.minimum(levels, 12)) == (12, True)
    assert pf.find_knee(levels, 50.0 * levels) == (64, False)  # never saturated: lower bound
    assert pf.find_knee(levels[::-1], 50.0 * np.minimum(levels, 12)[::-1]) == (12, True)
    assert pf.find_knee([2, 4, 8], [100.0, 200.0, 200.0]) == (4, True)  # X_1 = X(2) / 2
    with pytest.raises(ValueError, match="nothing was measured"):
        pf.find_knee([1, 2], [0.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        pf.find_knee([1, 2], [1.0])


def test_kv_cache_from_metrics():
    vllm = ('# HELP x\nvllm:cache_config_info{block_size="16",cache_dtype="auto",'
            'num_gpu_blocks="27000",num_cpu_blocks="0"} 1.0\n')
    assert pf._kv_from_metrics(vllm) == (432_000, "vllm:cache_config_info")
    sglang = 'sglang:max_total_num_tokens{model_name="m"} 650000.0\n'
    assert pf._kv_from_metrics(sglang) == (650_000, "sglang:max_total_num_tokens")
    assert pf._kv_from_metrics("other_metric 1\n") == (None, None)


def test_bad_settings():
    with pytest.raises(ValueError, match="prefill_tokens"):
        pf.profile_endpoint("http://127.0.0.1:9", prefill_tokens=(100,))
    with pytest.raises(ValueError, match="concurrency"):
        pf.profile_endpoint("http://127.0.0.1:9", concurrency=())
