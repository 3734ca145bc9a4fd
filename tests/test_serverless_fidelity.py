"""Serverless fidelity and subsets on the real Azure Functions samples (../shared/traces).

Azure Functions 2019 (Shahrad et al., ATC'20): the 500-function InVitro sample, 480 minutes.
Azure Functions 2021: the first 998 invocations of the per-invocation trace.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from servetrace.loaders import azure_functions_2019, azure_functions_2021
from servetrace.synth import serverless as sv
from servetrace.synth import serverless_counts as svc
from servetrace.synth import serverless_fidelity as sf
from servetrace.synth import serverless_scale as sc
from servetrace.synth import serverless_subset as ss

SPAN = 480 * 60.0


@pytest.fixture(scope="module")
def af19(shared):
    loaded = azure_functions_2019.load([shared / "azure_functions_2019"], "af19")
    return loaded.tables["invocation_counts"], loaded.tables["functions"]


@pytest.fixture(scope="module")
def whole(af19):
    counts, functions = af19
    model = sv.fit(counts, functions)
    samples = [model.sample(SPAN, seed=s) for s in range(2)]
    return sf.fidelity(counts, samples, functions=functions)


@pytest.fixture(scope="module")
def held_out(af19):
    counts, functions = af19
    return sf.holdout(counts, functions, runs=2)


def _row(frame: pl.DataFrame, metric: str) -> dict:
    return frame.filter(pl.col("metric") == metric).row(0, named=True)


def test_metrics_on_known_shapes():
    """Per-minute IAT CV: a 1-per-minute timer has CV 0; two invocations per window at the
    window start give 100 zero gaps and 99 gaps of 60 s: CV = √(199/99 − 1) = √(100/99)."""
    timer = np.ones((1, 100), dtype=np.int64)
    pairs = np.full((1, 100), 2, dtype=np.int64)
    assert sf.iat_cv(timer, 60.0)[0] == pytest.approx(0.0, abs=1e-12)
    assert sf.iat_cv(pairs, 60.0)[0] == pytest.approx(np.sqrt(100 / 99), rel=1e-12)
    rng = np.random.default_rng(0)
    poisson = rng.poisson(3.0, 20_000).astype(np.float64)
    idc = sf._idc(poisson, 60.0, 60.0)
    assert all(v == pytest.approx(1.0, abs=0.15) for v in idc.values())


def test_replay_baseline_is_the_trace_per_minute(af19):
    counts, functions = af19
    replay = sf.baseline(counts, "replay_uniform", SPAN, 1, functions)
    assert replay.height == counts["count"].sum()
    g_real, g_rep = svc.grid(counts), svc.grid(replay)
    order = [g_rep.keys["function"].to_list().index(f) for f in g_real.keys["function"]]
    assert np.array_equal(g_rep.counts[order], g_real.counts)


def test_whole_trace_model_beats_poisson_and_percentile_replay(whole):
    better = (whole["model"] < whole["poisson"]).sum()
    assert better >= 12, whole
    # per-minute metrics: replay of the trace itself is exact, so it cannot be beaten there
    for m in ("rate_ks", "iat_cv_ks", "function_idc_ks"):
        assert _row(whole, m)["replay_uniform"] == 0.0
    # sizes: the monotone cubic quantile function is closer to the published means than the
    # piecewise-uniform reading both baselines use
    for m in ("duration_mean_error", "duration_ks"):
        assert _row(whole, m)["verdict"] == "win", whole
    # the Serverless-in-the-Wild view: shares of apps with IAT CV 0 and <= 1 within 3 points
    assert _row(whole, "cv0_share_error")["model"] < 0.03
    assert _row(whole, "cv1_share_error")["model"] < 0.03


def test_held_out_model_beats_poisson_and_wins_sizes(held_out):
    # README: 11 of 14 over 4 seeds (memory KS is a coin toss between model and Poisson)
    assert (held_out["model"] < held_out["poisson"]).sum() >= 10, held_out
    assert _row(held_out, "duration_mean_error")["verdict"] == "win", held_out
    assert _row(held_out, "duration_ks")["model_best"], held_out  # a win over 4 seeds
    assert _row(held_out, "cold_fixed10_error")["model"] < 0.1
    assert _row(held_out, "cold_hybrid_error")["model"] < 0.05


def test_representative_subset_beats_random_over_20_seeds(af19):
    counts, functions = af19
    feats = ss.features(counts, functions)
    assert feats.height == 500
    rep, rnd = [], []
    for seed in range(20):
        rep.append(ss.distances(feats, ss.representative(feats, 100, seed)))
        rnd.append(ss.distances(feats, ss.random_subset(feats, 100, seed)))
    names = list(rep[0])
    r = np.array([[d[n] for n in names] for d in rep])
    b = np.array([[d[n] for n in names] for d in rnd])
    cont = [i for i, n in enumerate(names) if n != "trigger_tv"]
    assert (r[:, cont] < b[:, cont]).all(), (names, r, b)
    t = names.index("trigger_tv")  # quotas: the smallest TV any subset of 100 can have
    assert (r[:, t] <= b[:, t]).all() and r[:, t].mean() < b[:, t].mean()


def test_representative_beats_invitro_style_on_average(af19):
    counts, functions = af19
    feats = ss.features(counts, functions)
    res = ss.compare(feats, 100, range(4)).drop("seed").group_by("method").mean()
    rep = res.filter(pl.col("method") == "representative").drop("method").row(0)
    inv = res.filter(pl.col("method") == "invitro").drop("method").row(0)
    assert all(a < b for a, b in zip(rep, inv, strict=True)), res


def test_subset_model_keeps_functions(af19):
    counts, functions = af19
    model = sv.fit(counts, functions)
    feats = ss.features(counts, functions)
    rows = ss.representative(feats, 50, 0)
    names = feats["function"].gather(rows).to_list()
    index = [model.functions.function.index(n) for n in names]
    sub = sc.subset(model, index, op="representative_subset", seed=0)
    assert sub.n_functions == 50 and sub.history[-1].op == "representative_subset"
    s = sub.sample(3600.0, seed=0)
    assert set(s["function"].cast(pl.String).unique()) <= set(names)


def test_azure_2021_within_minute_fitted(shared):
    loaded = azure_functions_2021.load(
        [shared / "azure_functions_2021" / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"],
        "af21")
    inv = loaded.tables["invocations"]
    model = sv.fit(inv)
    assert model.within.source == "fitted" and 0 < model.within.kappa < 1  # clustered
    assert model.n_functions == inv["function"].n_unique()
    s = model.sample(3600.0, seed=0)
    assert s["duration_s"].null_count() == 0
    out = sf.holdout(inv, runs=3)
    assert set(out["metric"]) >= {"iat_cv_ks", "cold_fixed10_error", "duration_mean_error",
                                  *sf.FINE_METRICS}
    # below the minute (README: 20 seeds): clock-anchored timers and fan-out bursts that the
    # uniform within-minute replay spreads out; the model is below both baselines held out
    for m in ("exact_iat_cv_ks", "gap_ks", "fine_idc_max_rel_error", "iat_cv_ks"):
        assert _row(out, m)["model_best"], (m, out)
    assert _row(out, "exact_iat_cv_ks")["model"] < 0.3 < _row(out, "exact_iat_cv_ks")[
        "replay_uniform"]


def test_joint_dependence_across_functions_kept(af19):
    """Rate, burstiness, duration and memory travel together (each function keeps its own):
    the Spearman correlations across functions of a sample's per-function figures are the
    trace's within 0.1 (sampling noise of 500 functions' rates and means). Real values:
    rate–duration −0.34, rate–memory 0.17, duration–memory 0.07, rate–IAT CV 0.62, so a model
    drawing sizes or rates independently of the function fails."""
    from scipy import stats

    counts, functions = af19
    model = sv.fit(counts, functions)
    real = ss.features(counts, functions)
    synth = ss.features(model.sample(SPAN, seed=5)).join(
        real.select("function"), on="function", how="semi")
    pairs = [("rate", "duration"), ("rate", "memory"), ("duration", "memory"),
             ("rate", "iat_cv")]
    for a, b in pairs:
        r = stats.spearmanr(real[a], real[b], nan_policy="omit").statistic
        s = stats.spearmanr(synth[a], synth[b], nan_policy="omit").statistic
        assert abs(r - s) < 0.1, (a, b, r, s)


def _bursts_and_poisson(seed: int, n_min: int = 240) -> pl.DataFrame:
    """10 Poisson functions at 0.5/s and 10 burst functions: each minute, one burst of five
    invocations 1 ms apart at a uniform time (a fan-out), 0.1 s durations, one app each."""
    rng = np.random.default_rng(seed)
    span = n_min * 60.0
    n = rng.poisson(0.5 * span, 10)
    t_p = rng.random(int(n.sum())) * span
    f_p = np.repeat(np.arange(10), n)
    start = (np.arange(n_min)[None, :] + rng.random((10, n_min)) * 0.99) * 60.0
    t_b = (start[:, :, None] + np.arange(5) * 1e-3).ravel()
    f_b = np.repeat(np.arange(10, 20), n_min * 5)
    f = np.concatenate([f_p, f_b])
    return pl.DataFrame({"trace": "sim", "arrival_s": np.concatenate([t_p, t_b]),
                         "app": [f"a{i}" for i in f], "function": [f"f{i}" for i in f],
                         "duration_s": 0.1}).sort("arrival_s")


def test_sub_minute_metrics_on_known_processes():
    """Exact-time figures: a Poisson function's IAT CV is 1, a burst function's (four gaps of
    1 ms, one of 60 s + the difference of two U(0, 59.4 s) starts, variance v = 2·59.4²/12)
    √(5(1 + v/60²) − 1) = 2.195. The superposition's count in a window [a, a + w) inside a
    minute: Poisson(5 w) plus 5 × Binomial(10, p), p = |[a, a + w) ∩ [0, 59.4)| / 59.4; the
    IDC pools the windows' means and variances over their places in the minute. A fresh draw
    of the same process scores near zero; the per-minute replay spreads each burst over its
    minute, which the exact IAT CV, the gap distribution and a 10 s keep-alive see (the
    per-minute metrics cannot)."""
    real = _bursts_and_poisson(0)
    rm = sf.metrics(real)
    cv = rm["fine"]["iat_cv"]
    assert len(cv) == 20
    assert np.sort(cv)[:10] == pytest.approx(np.ones(10), abs=0.06)
    v = 2 * (0.99 * 60) ** 2 / 12
    assert np.sort(cv)[10:] == pytest.approx(np.full(10, np.sqrt(5 * (1 + v / 3600) - 1)),
                                             abs=0.06)
    for w in (5.0, 10.0, 30.0):
        a = np.arange(0, 60, w)
        p = np.clip(np.minimum(a + w, 59.4) - a, 0, None) / 59.4
        mu, var = 5 * w + 50 * p, 5 * w + 250 * p * (1 - p)
        expected = (var.mean() + mu.var()) / mu.mean()
        assert rm["fine"]["idc"][w] == pytest.approx(expected, rel=0.1), (w, rm["fine"]["idc"])
    same = sf.errors(rm, sf.metrics(_bursts_and_poisson(1)))
    replay = sf.errors(rm, sf.metrics(sf.baseline(real, "replay_uniform", 240 * 60.0, 1)))
    assert set(sf.FINE_METRICS) <= set(same)
    assert same["exact_iat_cv_ks"] < 0.3 and replay["exact_iat_cv_ks"] >= 0.5
    assert same["gap_ks"] < 0.02 and replay["gap_ks"] > 0.08
    assert same["cold_fixed10s_error"] < 0.05 and replay["cold_fixed10s_error"] > 0.5
    # on the minute grid the replay is the trace: no per-minute metric can tell
    assert replay["iat_cv_ks"] == 0.0 and replay["function_idc_ks"] == 0.0
