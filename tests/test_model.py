"""servetrace.synth.model: fit a WorkloadModel, sample it.

Ground truth: processes whose statistics are known (Poisson: CV 1, index of dispersion 1; a
gamma renewal of CV 2: CV 2; fractional Gaussian noise: lag-1 autocorrelation 2^{2H−1} − 1;
lognormal lengths of Gaussian correlation r: Spearman (6/π) asin(r/2); a slow ramp under
white noise: the modulation table keeps the ramp's flat shape). Real traces from
../shared/traces: the schema of samples, ticks, sessions, prefix blocks, ServeGen rates, and
fidelity against the two baselines the issue names (Poisson at the same mean rate; a gamma
renewal with the trace's CV), on the whole trace and on held-out time.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from known_processes import mmpp_arrivals
from scipy import stats

from servetrace.loaders import azure_llm_2023, burstgpt, mooncake, servegen
from servetrace.loaders.schema import REQUESTS, conform
from servetrace.synth.arrivals import fgn, fit_driver, smoothed_factors
from servetrace.synth.model import WorkloadModel, fit
from servetrace.synth.servegen_model import from_servegen

WINDOWS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def traces(shared) -> dict[str, pl.DataFrame]:
    a23 = shared / "azure_llm_2023"
    return {
        "code": azure_llm_2023.load([a23 / "AzureLLMInferenceTrace_code.csv"],
                                    "azure_llm_2023/code").tables["requests"]
        .with_columns(pl.lit("azure_llm_2023/code").alias("trace")),
        "conv": azure_llm_2023.load([a23 / "AzureLLMInferenceTrace_conv.csv"],
                                    "azure_llm_2023/conv").tables["requests"]
        .with_columns(pl.lit("azure_llm_2023/conv").alias("trace")),
        "mooncake": mooncake.load([shared / "mooncake_fast25/conversation_trace.jsonl"],
                                  "mooncake/conversation").tables["requests"],
        "burstgpt": burstgpt.load([shared / "burstgpt_sample/sample.jsonl"],
                                  "burstgpt/sample").tables["requests"],
    }


@pytest.fixture(scope="module")
def models(traces) -> dict[str, WorkloadModel]:
    return {name: fit(frame) for name, frame in traces.items()}


def _frame(t: np.ndarray, inp: np.ndarray | None = None, out: np.ndarray | None = None,
           **extra: object) -> pl.DataFrame:
    n = len(t)
    return pl.DataFrame({"arrival_s": t,
                         "input_tokens": np.full(n, 100) if inp is None else inp,
                         "output_tokens": np.full(n, 10) if out is None else out, **extra})


# ----------------------------------------------------------------------------- metrics


def _cv(t: np.ndarray) -> float:
    g = np.diff(np.sort(t))
    return float(g.std() / g.mean())


def _idc(t: np.ndarray, span: float, window: float) -> float:
    n = int(span // window)
    c = np.bincount(np.minimum((t // window).astype(np.int64), n), minlength=n + 1)[:n]
    return float(c.var() / c.mean())


def _curve(t: np.ndarray, span: float) -> dict[int, float]:
    """Index of dispersion Var/mean of counts per window, windows with ≥ 30 in the span (the
    IDC of n windows has a sampling SD of about √(2/(n − 1)) of itself: 0.26 at 30, 0.7 at 5,
    where one seed's curve can land anywhere)."""
    return {w: _idc(t, span, w) for w in WINDOWS if span // w >= 30}


def _hurst(t: np.ndarray, span: float) -> float:
    """Aggregated-variance Hurst exponent of 1 s counts: Var(mean of k) ∝ k^{2H−2}."""
    n = int(span)
    c = np.bincount(np.minimum(t.astype(np.int64), n), minlength=n + 1)[:n].astype(float)
    ks = np.unique(np.round(np.logspace(0, math.log10(n / 10), 12)).astype(int))
    v = [c[: (n // k) * k].reshape(-1, k).mean(axis=1).var() for k in ks]
    return 1 + np.polyfit(np.log(ks), np.log(v), 1)[0] / 2


def _errors(real: np.ndarray, synth: np.ndarray, span: float) -> dict[str, float]:
    rc, sc = _curve(real, span), _curve(synth, span)
    return {
        "cv": abs(_cv(synth) / _cv(real) - 1),
        "idc": max(abs(sc[w] / rc[w] - 1) for w in rc),
        "hurst": abs(_hurst(synth, span) - _hurst(real, span)),
        "ks": float(stats.ks_2samp(np.diff(real), np.diff(synth), method="asymp").statistic),
    }


def _baselines(fitted: np.ndarray, fit_span: float, span: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Poisson at the fitted mean rate; gamma renewal with the fitted CV (vLLM's
    --burstiness), both over ``span``."""
    rng = np.random.default_rng(seed)
    rate = len(fitted) / fit_span
    n = int(rate * span * 3) + 1000
    poisson = np.cumsum(rng.exponential(1 / rate, n))
    shape = 1 / _cv(fitted) ** 2
    gamma = np.cumsum(rng.gamma(shape, 1 / (rate * shape), n))
    return poisson[poisson < span], gamma[gamma < span]


def _fidelity(frame: pl.DataFrame, held_out: bool, seeds=(0, 1, 2)
              ) -> dict[str, dict[str, float]]:
    """Mean errors of model, Poisson and gamma over ``seeds``: real vs synthetic of the same
    duration; with ``held_out`` fitted on the first half, compared with the second."""
    a = frame["arrival_s"].to_numpy()
    a = a - a[0]
    if held_out:
        half = a[-1] / 2
        fitted, real, span = a[a < half], a[a >= half] - half, half
        model = fit(frame.filter(pl.Series(a < half)))
        fit_span = half
    else:
        fitted, real, span = a, a, a[-1] * len(a) / (len(a) - 1)
        model = fit(frame)
        fit_span = span
    out: dict[str, dict[str, list[float]]] = {"model": {}, "poisson": {}, "gamma": {}}
    for seed in seeds:
        synth = model.sample(span, seed)["arrival_s"].to_numpy()
        poisson, gamma = _baselines(fitted, fit_span, span, seed)
        for name, x in (("model", synth), ("poisson", poisson), ("gamma", gamma)):
            for k, v in _errors(real, x, span).items():
                out[name].setdefault(k, []).append(v)
    return {name: {k: float(np.mean(v)) for k, v in d.items()} for name, d in out.items()}


# ----------------------------------------------------------------------------- ground truth


def test_poisson_process_samples_cv_1_and_idc_1():
    rng = np.random.default_rng(11)
    model = fit(_frame(np.cumsum(rng.exponential(0.05, 100_000))))
    assert model.groups[0].arrivals.modulation.values == (1.0,) * len(
        model.groups[0].arrivals.modulation.values)  # no modulation detected
    t = np.concatenate([model.sample(7200, s)["arrival_s"].to_numpy() + 7200 * s
                        for s in range(3)])
    # 430k arrivals: CV's standard error ≈ 0.002; IDC over ≥ 2,160 windows: ≈ 0.03
    assert _cv(t) == pytest.approx(1.0, abs=0.02)
    for w in (1, 10):
        assert _idc(t, 21600, w) == pytest.approx(1.0, abs=0.12)
    assert len(t) / 21600 == pytest.approx(20.0, rel=0.02)


def test_gamma_renewal_cv_2_is_kept():
    rng = np.random.default_rng(12)
    shape = 0.25  # CV = 1/√shape = 2
    model = fit(_frame(np.cumsum(rng.gamma(shape, 0.1 / shape, 60_000))))
    t = model.sample(20_000, 3)["arrival_s"].to_numpy()
    assert _cv(t) == pytest.approx(2.0, rel=0.06)
    # a renewal process: IDC → CV² = 4 on windows ≫ the mean gap (0.1 s)
    assert _idc(t, 20_000, 20) == pytest.approx(4.0, rel=0.25)


def test_diurnal_profile_keeps_its_phase():
    rng = np.random.default_rng(16)
    days, peak = 4, 0.9

    def rate(t: np.ndarray) -> np.ndarray:  # 0.5/s on average, ×1.8 at 06:00, ×0.2 at 18:00
        return 0.5 * (1 + 0.8 * np.sin(2 * np.pi * t / 86400))

    t = np.cumsum(rng.exponential(1 / peak, int(peak * days * 86400 * 1.05)))
    t = t[t < days * 86400]
    t = t[rng.random(len(t)) < rate(t) / peak]  # thinning (Lewis & Shedler 1979)
    model = fit(_frame(t + 5 * 3600))  # the trace starts at 05:00: the phase must follow
    assert len(model.groups[0].arrivals.harmonics) == 3  # ≥ 2 days: diurnal harmonics
    s = model.sample(2 * 86400, 1)["arrival_s"].to_numpy()
    hours = np.bincount((s // 3600).astype(np.int64), minlength=48)[:48]
    truth = rate((np.arange(48) + 0.5) * 3600) * 3600  # the sample's zero is 05:00 too
    assert np.corrcoef(hours, truth)[0, 1] > 0.98
    assert hours.sum() == pytest.approx(truth.sum(), rel=0.05)


def test_fgn_autocorrelation():
    rng = np.random.default_rng(13)
    x = fgn(1 << 16, 0.8, rng)
    assert x.std() == pytest.approx(1.0, abs=0.05)
    lag1 = float(np.corrcoef(x[:-1], x[1:])[0, 1])
    assert lag1 == pytest.approx(2 ** 0.6 - 1, abs=0.03)  # 0.516 for H = 0.8


def test_modulation_table_keeps_the_signal_shape_not_the_noise():
    rng = np.random.default_rng(17)
    # a white signal: the Wiener smoother is a constant gain, the pointwise shrinkage exactly
    x = 1 + 0.2 * rng.standard_normal(500)
    x /= x.mean()
    pointwise = np.maximum(1 + math.sqrt(1 - 0.01 / x.var()) * (x - 1), 0)
    assert smoothed_factors(x, 0.01, 0.5, 1) == pytest.approx(pointwise / pointwise.mean())
    # a slow ramp 0.8 → 1.2 (uniform: variance 0.0134, excess kurtosis −1.2) under white
    # noise of variance 0.01 (a bell, kurtosis 0): shrinking each window keeps the bell
    ramp = np.linspace(0.8, 1.2, 600)
    x = ramp + 0.1 * rng.standard_normal(600)
    x /= x.mean()
    hurst, memory, _ = fit_driver(x, 0.01)
    table = smoothed_factors(x, 0.01, hurst, memory)
    pointwise = 1 + math.sqrt(1 - 0.01 / x.var()) * (x - 1)
    assert table.mean() == pytest.approx(1.0)
    assert table.var() == pytest.approx(x.var() - 0.01, rel=0.01)  # the signal's variance
    assert table.var() == pytest.approx(ramp.var(), rel=0.15)  # Var x − 0.01: SD ≈ 6 % here
    assert np.corrcoef(table, ramp)[0, 1] > 0.95
    assert stats.kurtosis(table) < -1.0 < -0.7 < stats.kurtosis(pointwise)


def test_lengths_spearman_and_marginals_recovered():
    rng = np.random.default_rng(14)
    r = 0.6
    z = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], 20_000)
    inp = np.rint(np.exp(6 + 1.0 * z[:, 0])).astype(np.int64)
    out = np.rint(np.exp(4 + 0.8 * z[:, 1])).astype(np.int64)
    model = fit(_frame(np.cumsum(rng.exponential(0.1, 20_000)), inp, out))
    s = model.sample(20_000, 4)
    truth = 6 / math.pi * math.asin(r / 2)  # 0.5756
    rho = stats.spearmanr(s["input_tokens"], s["output_tokens"]).statistic
    assert rho == pytest.approx(truth, abs=0.03)
    assert stats.ks_2samp(inp, s["input_tokens"], method="asymp").statistic < 0.03
    assert stats.ks_2samp(out, s["output_tokens"], method="asymp").statistic < 0.03


def test_mmpp_keeps_poisson_gaps_inside_a_state():
    # issue 17, item 5: the CV calibration pushed the renewal to a near-regular Weibull
    # (CV 0.26 on one hour) though each state is Poisson, and missed the gap distribution
    span = 2 * 3600.0
    real = mmpp_arrivals(span, 1)
    model = fit(_frame(real))
    renewal = model.groups[0].arrivals.renewal
    assert renewal.cv == pytest.approx(1.0, abs=0.1), renewal  # exponential inside a state
    e: dict[str, dict[str, list[float]]] = {"model": {}, "poisson": {}, "gamma": {}}
    for seed in range(8):
        synth = model.sample(span, seed)["arrival_s"].to_numpy()
        poisson, gamma = _baselines(real, span, span, 100 + seed)
        for name, x in (("model", synth), ("poisson", poisson), ("gamma", gamma)):
            for k, v in _errors(real, x, span).items():
                e[name].setdefault(k, []).append(v)
    m = {name: {k: float(np.mean(v)) for k, v in d.items()} for name, d in e.items()}
    # the gamma baseline is told the CV: the model comes within twice its sampling error
    assert m["model"]["cv"] < 2 * m["gamma"]["cv"], m
    assert m["model"]["ks"] < m["poisson"]["ks"] / 3, m  # the gap distribution
    for metric in ("idc", "hurst"):
        assert m["model"][metric] < min(m["poisson"][metric], m["gamma"][metric]) / 3, m


@pytest.mark.parametrize("name", ["code", "conv", "mooncake", "burstgpt"])
def test_lengths_tie_resampling_the_trace(traces, models, name):
    # issue 17, item 6: the baselines resample the real lengths; the model's copula
    # marginals must do at least as well on KS and W1 (Azure conv input W1 was 14.2 against
    # 5.3). Inputs are drawn by Latin hypercube from the exact empirical marginal: a lower
    # mean distance than resampling over 8 seeds. Outputs keep an independent part (the
    # copula): no worse than resampling by 3 standard errors of the difference (a tie at 5 %
    # over the 8 output comparisons, Bonferroni: z = 2.7)
    from servetrace.synth.fidelity import baseline

    real = traces[name]
    span = float(real["arrival_s"].max() - real["arrival_s"].min())
    runs: dict[str, list[list[float]]] = {"model": [], "resample": []}
    for seed in range(8):
        for kind, frame in (("model", models[name].sample(span, seed)),
                            ("resample", baseline(real, "poisson", span, 10 + 2 * seed))):
            row = []
            for col in ("input_tokens", "output_tokens"):
                a = real[col].to_numpy().astype(np.float64)
                b = frame[col].to_numpy().astype(np.float64)
                row += [stats.ks_2samp(a, b, method="asymp").statistic,
                        stats.wasserstein_distance(a, b)]
            runs[kind].append(row)
    mod, res = np.array(runs["model"]), np.array(runs["resample"])
    se = np.sqrt((mod.var(axis=0, ddof=1) + res.var(axis=0, ddof=1)) / 8)
    names = ("input KS", "input W1", "output KS", "output W1")
    for i, what in enumerate(names):
        bound = res[:, i].mean() if what.startswith("input") else res[:, i].mean() + 3 * se[i]
        assert mod[:, i].mean() < bound, (name, what, mod[:, i].mean(), res[:, i].mean(), se[i])


# ----------------------------------------------------------------------------- contract


def test_sample_schema_and_determinism(models):
    model = models["conv"]
    a = model.sample(600, seed=1)
    assert a.schema == conform("requests", a).schema
    assert a.columns == REQUESTS.names
    assert a.equals(model.sample(600, seed=1))
    assert not a.equals(model.sample(600, seed=2))
    t = a["arrival_s"].to_numpy()
    assert (np.diff(t) >= 0).all() and t[0] >= 0 and t[-1] < 600
    assert a["request_id"].n_unique() == a.height
    assert a["trace"].unique().to_list() == ["synth/azure_llm_2023/conv"]
    assert a.height == pytest.approx(600 * models["conv"].mean_rate, rel=0.3)


def test_rate_scale_doubles_count_and_keeps_cv(models):
    model = models["conv"]
    one = model.sample(3600, seed=5)["arrival_s"].to_numpy()
    two = model.sample(3600, seed=5, rate_scale=2.0)["arrival_s"].to_numpy()
    assert len(two) / len(one) == pytest.approx(2.0, rel=0.05)
    assert _cv(two) == pytest.approx(_cv(one), rel=0.05)


def test_json_round_trip(models, tmp_path):
    model = models["mooncake"]
    again = WorkloadModel.from_json(model.to_json())
    assert again == model
    assert again.sample(300, 7).equals(model.sample(300, 7))
    path = model.save(tmp_path / "model.json")
    assert WorkloadModel.load(path) == model
    text = model.to_json()
    assert '"version":"3"' in text and '"step":true' in text  # exact length marginals
    bad = text.replace('"version":"3"', '"version":"0"')
    with pytest.raises(ValueError, match="version '0' is not one of the supported"):
        WorkloadModel.from_json(bad)
    # a version-1 document (no step tables: interpolated marginals) loads as written
    old = (text.replace('"version":"3"', '"version":"1"').replace(',"step":true', '')
           .replace(',"step":false', ''))
    v1 = WorkloadModel.from_json(old)
    assert v1.version == "3" and not v1.groups[0].lengths.input.step
    assert v1.sample(300, 7).height == model.sample(300, 7).height


def test_errors_name_the_fault(traces):
    frame = traces["conv"]
    with pytest.raises(ValueError, match="output_tokens"):
        fit(frame.drop("output_tokens"))
    with pytest.raises(ValueError, match="by"):
        fit(frame, by="colour")
    with pytest.raises(ValueError, match="at least 20"):
        fit(frame.head(5))
    with pytest.raises(ValueError, match="duration_s"):
        fit(frame).sample(0, 1)


def test_groups_by_tenant_keep_their_shares():
    rng = np.random.default_rng(15)
    a = np.cumsum(rng.exponential(1 / 5, 20_000))
    b = np.cumsum(rng.exponential(1 / 1, 4_000))
    frame = _frame(np.concatenate([a, b]), tenant=["a"] * len(a) + ["b"] * len(b))
    frame = frame.filter(pl.col("arrival_s") < 3900).sort("arrival_s")
    model = fit(frame, by="tenant")
    assert [g.key for g in model.groups] == ["a", "b"]
    s = model.sample(3600, 1)
    share = s["tenant"].value_counts().sort("tenant")["count"].to_numpy() / s.height
    assert share == pytest.approx([5 / 6, 1 / 6], abs=0.02)


# ----------------------------------------------------------------------------- real traces


def test_mooncake_ticks_and_prefix_blocks(traces, models):
    s = models["mooncake"].sample(3600, 2)
    assert models["mooncake"].groups[0].arrivals.tick_s == 3.0
    assert (np.mod(s["arrival_s"].to_numpy(), 3.0) == 0).all()
    blocks = s["hash_ids"].list.len()
    assert (blocks == (s["input_tokens"] + 511) // 512).all()

    def shared(frame: pl.DataFrame) -> float:  # blocks seen in an earlier request
        ids = frame.select(pl.col("hash_ids").explode()).drop_nulls()["hash_ids"]
        return 1 - ids.is_first_distinct().sum() / len(ids)

    real = shared(traces["mooncake"])  # 0.366
    assert shared(s) == pytest.approx(real, abs=0.1)
    assert (s["hash_ids"].list.first() == 0).mean() == pytest.approx(1.0)  # the common root


def test_burstgpt_sessions(traces, models):
    real = traces["burstgpt"]
    samples = [models["burstgpt"].sample(60_664, seed) for seed in range(16)]
    assert models["burstgpt"].groups[0].arrivals.tick_s == 1.0
    s = samples[0]
    assert (s["tenant"] == s["session"]).all()  # the loader's convention: tenant = session

    def turns(frame: pl.DataFrame) -> float:
        return float(frame.group_by("session").len()["len"].mean())

    def think(frame: pl.DataFrame) -> float:
        return float(frame.sort("arrival_s").select(pl.col("arrival_s").diff().over("session"))
                     .drop_nulls().median().item())

    # one sample's count varies by ±25 % (sessions of up to 26 turns in bursts): mean of 16
    assert np.mean([x.height for x in samples]) == pytest.approx(real.height, rel=0.2)
    assert np.mean([turns(x) for x in samples]) == pytest.approx(turns(real), rel=0.2)
    assert np.mean([think(x) for x in samples]) == pytest.approx(think(real), rel=0.25)


def test_servegen_window_rates(shared):
    loaded = servegen.load([shared / "servegen" / "language" / "m-small"], "m-small")
    cw = loaded.tables["client_windows"]
    model = from_servegen(cw, loaded.tables["length_pmfs"], clients=["17"], source="m-small")
    s = model.sample(86_400, 8)
    counts = np.bincount((s["arrival_s"].to_numpy() // 600).astype(np.int64), minlength=144)
    rows = cw.filter(pl.col("client") == "17").sort("window_start_s").head(144)
    expected = rows["rate"].to_numpy() * 600
    # a renewal count over a window has variance ≈ CV² × mean (Cox & Lewis 1966): z-scores
    sd = np.sqrt(np.maximum(rows["cv"].fill_null(1.0).to_numpy(), 1.0) ** 2 * expected)
    busy = expected > 100
    assert np.abs((counts[busy] - expected[busy]) / sd[busy]).max() < 4.5
    assert counts.sum() / expected.sum() == pytest.approx(1.0, abs=0.01)
    assert s["tenant"].unique().to_list() == ["17"]
    assert s["input_tokens"].min() >= 0


@pytest.mark.parametrize("name", ["code", "conv", "mooncake", "burstgpt"])
def test_fidelity_beats_baselines_on_the_whole_trace(traces, name):
    e = _fidelity(traces[name], held_out=False)
    for metric in ("idc", "ks"):
        assert e["model"][metric] < min(e["poisson"][metric], e["gamma"][metric]), (metric, e)
    if name != "mooncake":  # Mooncake's 1 s counts are tick artefacts: every process ≈ 0.5
        assert e["model"]["hurst"] < min(e["poisson"]["hurst"], e["gamma"]["hurst"]), e


@pytest.mark.parametrize("name", ["code", "conv"])
def test_fidelity_holds_on_held_out_time(traces, name):
    e = _fidelity(traces[name], held_out=True)
    for metric in ("idc", "hurst", "ks"):
        assert e["model"][metric] < min(e["poisson"][metric], e["gamma"][metric]), (metric, e)


def test_a_millisecond_grid_read_through_float_differences_is_found() -> None:
    # issue 17, item 9: stamps in whole ms from a non-zero origin differ by
    # 0.000999999999976 s; the grid test had no tolerance at 1 ms, so it found no grid
    from servetrace.synth.arrivals import _detect_tick

    rng = np.random.default_rng(9)
    t = np.round(1000 + np.cumsum(rng.exponential(0.02, 5000)), 3)
    t = t - t[0]
    assert np.diff(np.unique(t)).min() < 1e-3
    assert _detect_tick(t) == _detect_tick(t[:2500]) == 0.001


def test_servegen_pmfs_are_sampled_exactly(shared):
    # issue 17, item 7: 256-point interpolated quantile tables drew values outside the PMF's
    # support and inflated rare extremes (a window whose largest value, 8,193 tokens, has
    # probability 3e-6 sampled a mean 8x its PMF's). Inverse-CDF sampling over the support:
    # Q(u) = v_j exactly for u in (F(v_(j-1)), F(v_j)], so every draw is in the support and
    # each value comes with its own probability.
    loaded = servegen.load([shared / "servegen" / "language" / "m-small"], "m-small")
    model = from_servegen(loaded.tables["client_windows"], loaded.tables["length_pmfs"])
    tables = [t for g in model.groups for lw in g.lengths_by_window
              for t in (lw.input, lw.output)]
    assert len(tables) > 4000 and all(t.cdf for t in tables)
    rng = np.random.default_rng(7)
    drawn = 0
    for t in tables:  # one check per client-window table, each vectorized over its support
        v, c = np.asarray(t.values), np.asarray(t.cdf)
        p = np.diff(c, prepend=0.0)
        assert (p > 0).all() and c[-1] == 1.0
        assert np.array_equal(t.ppf(c), v)                             # right end of each step
        left = np.nextafter(np.concatenate([[0.0], c[:-1]]), 1.0)
        assert np.array_equal(t.ppf(left), v)                          # left end
        mean = float((v * p).sum())
        assert t.mean() == pytest.approx(mean, rel=1e-12)
        sd = math.sqrt(float(((v - mean) ** 2 * p).sum()))
        n = max(10_000, math.ceil((5 * sd / (0.01 * mean)) ** 2))       # 1 % is 5 SE
        if n <= 40_000:
            x = t.ppf(rng.random(n))
            assert x.mean() == pytest.approx(mean, rel=0.01)
            assert np.isin(x[:1000], v).all()
            drawn += 1
    assert drawn > len(tables) // 5


def test_servegen_iat_shape_follows_the_fit_or_the_published_cv():
    # issue 17, item 7: a Weibull window carries a fitted shape and a published cv that
    # disagree; the choice is explicit. Shape 0.7 has CV √(Γ(1 + 2/0.7)/Γ(1 + 1/0.7)² − 1)
    k = 0.7
    fitted_cv = math.sqrt(math.gamma(1 + 2 / k) / math.gamma(1 + 1 / k) ** 2 - 1)
    n_w = 20
    cw = pl.DataFrame({"client": ["a"] * n_w, "window_start_s": np.arange(n_w) * 600.0,
                       "window_s": [600.0] * n_w, "rate": [20.0] * n_w,
                       "cv": [1.2] * n_w, "iat_family": ["Weibull"] * n_w,
                       "shape": [k] * n_w})

    def sampled_cv(iat: str) -> float:
        t = from_servegen(cw, iat=iat).sample(600.0 * n_w, 3)["arrival_s"].to_numpy()
        gaps = np.diff(t)
        return float(gaps.std() / gaps.mean())

    assert sampled_cv("fitted") == pytest.approx(fitted_cv, rel=0.03)   # ServeGen's default
    default = from_servegen(cw).groups[0].arrivals
    assert default == from_servegen(cw, iat="fitted").groups[0].arrivals
    assert sampled_cv("cv") == pytest.approx(1.2, rel=0.03)
    with pytest.raises(ValueError, match="iat must be"):
        from_servegen(cw, iat="nope")
