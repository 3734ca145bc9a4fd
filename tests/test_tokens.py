"""Token-length characterization: statistics against ground truth, formats on real traces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from servetrace.analysis import token_counts, tokens
from servetrace.analysis.fitting import distribution
from servetrace.loaders import azure_llm_2023, burstgpt


@pytest.fixture(scope="module")
def azure(shared: Path) -> pl.DataFrame:
    """Both Azure 2023 traces (Splitwise), with their trace id."""
    frames = []
    for part in ("code", "conv"):
        name = f"azure_llm_2023/{part}"
        path = shared / f"azure_llm_2023/AzureLLMInferenceTrace_{part}.csv"
        frames.append(azure_llm_2023.load([path], name).tables["requests"]
                      .with_columns(pl.lit(name).alias("trace")))
    return pl.concat(frames)


def _lognormal_pairs(n: int, rho: float, seed: int) -> pl.DataFrame:
    """Input/output token counts with lognormal marginals and a Gaussian copula of ρ."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([7.0, 5.0], [[1.0, rho], [rho, 1.0]], n)
    return pl.DataFrame({"input_tokens": np.round(np.exp(z[:, 0])).astype(np.int64),
                         "output_tokens": np.round(np.exp(z[:, 1])).astype(np.int64)})


# --------------------------------------------------------------------------- summaries


def test_length_summary_matches_numpy_and_counts_nulls():
    rng = np.random.default_rng(0)
    x = np.round(rng.lognormal(6.0, 1.0, 5000)).astype(np.int64)
    x[:7] = 0
    group = np.where(np.arange(5000) % 3 == 0, "a", "b")
    frame = pl.DataFrame({"g": group, "input_tokens": x, "output_tokens": x // 2}).with_columns(
        pl.when(pl.int_range(pl.len()) % 100 == 50).then(None)
        .otherwise(pl.col("output_tokens")).alias("output_tokens"))
    got = tokens.length_summary(frame, "g")
    assert got.columns == ["g", "field", "n", "mean", "median", "p90", "p99", "max", "zeros",
                           "nulls"]
    assert got.height == 4 and got["g"].to_list() == ["a", "a", "b", "b"]
    for row in got.iter_rows(named=True):
        column = frame.filter(pl.col("g") == row["g"])[row["field"]]
        values = column.drop_nulls().to_numpy()
        assert row["n"] == len(values) and row["nulls"] == column.null_count()
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["median"] == np.median(values)
        assert row["p90"] == pytest.approx(np.percentile(values, 90), rel=1e-12)
        assert row["p99"] == pytest.approx(np.percentile(values, 99), rel=1e-12)
        assert row["max"] == values.max() and row["zeros"] == (values == 0).sum()
    assert got.filter(pl.col("field") == "output_tokens")["nulls"].sum() == 50
    assert got["zeros"].sum() == 14  # the 7 zero inputs and their zero outputs


def test_azure_conv_medians_are_the_splitwise_figures(azure):
    # Patel et al. (Splitwise, ISCA 2024): conversation trace median input 1020, output 129
    got = tokens.length_summary(azure.lazy(), "trace").filter(
        pl.col("trace") == "azure_llm_2023/conv")
    medians = dict(zip(got["field"], got["median"], strict=True))
    assert medians == {"input_tokens": 1020.0, "output_tokens": 129.0}
    assert got["n"].to_list() == [19366, 19366] and got["nulls"].sum() == 0


def test_ecdf_is_exact_at_kept_values_and_downsampled():
    rng = np.random.default_rng(1)
    x = rng.geometric(0.002, 20_000)
    frame = pl.DataFrame({"g": np.repeat(["a", "b"], 10_000), "input_tokens": x})
    got = tokens.ecdf(frame, by="g", points=50)
    assert got.columns == ["g", "value", "cdf"]
    for g in ("a", "b"):
        sample = frame.filter(pl.col("g") == g)["input_tokens"].to_numpy()
        part = got.filter(pl.col("g") == g)
        assert 40 <= part.height <= 50  # ≤ points; ≥ points − (bins swallowed by big jumps)
        values, cdf = part["value"].to_numpy(), part["cdf"].to_numpy()
        exact = (sample[None, :] <= values[:, None]).mean(axis=1)
        np.testing.assert_array_equal(cdf, exact)
        assert (np.diff(values) > 0).all() and values[-1] == sample.max() and cdf[-1] == 1.0
        # the kept values are, for each non-empty bin ((j−1)/50, j/50] of F, its last value
        distinct, counts = np.unique(sample, return_counts=True)
        cum = np.cumsum(counts)
        bins = -(-cum * 50 // len(sample))
        last = np.r_[bins[1:] != bins[:-1], True]
        np.testing.assert_array_equal(values, distinct[last])
    small = tokens.ecdf(pl.DataFrame({"input_tokens": [3, 1, 2, 2, None]}), points=200)
    assert small.to_dict(as_series=False) == {"value": [1.0, 2.0, 3.0], "cdf": [0.25, 0.75, 1.0]}


# --------------------------------------------------------------------------- fits


def _params(fits: pl.DataFrame, family: str) -> dict[str, float]:
    return json.loads(fits.filter(pl.col("family") == family)["params"][0])


def test_fit_lengths_recovers_lognormal_and_gamma_parameters():
    rng = np.random.default_rng(2)
    n = 10_000
    frame = pl.DataFrame({
        "g": np.repeat(["gamma", "lognormal"], n),
        "input_tokens": np.r_[np.round(rng.gamma(2.0, 400.0, n)),
                              np.round(rng.lognormal(6.5, 1.1, n))].astype(np.int64)})
    fits = tokens.fit_lengths(frame, "input_tokens", by="g")
    assert fits.columns[:3] == ["g", "field", "family"]
    assert set(fits["family"]) == {"lognormal", "gamma", "weibull", "pareto",
                                   "lognormal_mixture2"}
    gamma = fits.filter(pl.col("g") == "gamma")
    lognormal = fits.filter(pl.col("g") == "lognormal")
    # 10k samples: se(shape) ≈ 1.3%, se(mu) ≈ 0.011, se(sigma) ≈ 0.7%; tolerances ≥ 4 se.
    # Rounding to integer tokens moves values by ≤ 0.5 on a scale of hundreds.
    assert _params(gamma, "gamma") == pytest.approx({"shape": 2.0, "scale": 400.0}, rel=0.06)
    got = _params(lognormal, "lognormal")
    assert got["mu"] == pytest.approx(6.5, abs=0.05)
    assert got["sigma"] == pytest.approx(1.1, rel=0.03)
    # BIC charges the 5-parameter mixture 3·ln(n) ≈ 28 more: the true family ranks first
    for part, family in ((gamma, "gamma"), (lognormal, "lognormal")):
        ranked = part.filter(pl.col("scope") == "all").sort("rank_bic")
        assert ranked["family"][0] == family
        assert sorted(ranked["rank_aic"]) == [1, 2, 3, 4]
        assert ranked.filter(pl.col("rank_aic") == 1)["aic"][0] == ranked["aic"].min()
        two = ranked.filter(pl.col("n_params") == 2).sort("aic")  # same penalty: same order
        assert two["family"][0] == family
        tail = part.filter(pl.col("family") == "pareto").row(0, named=True)
        assert tail["scope"] == "tail" and tail["rank_aic"] is None and tail["n"] < n // 10 + 1
        assert part["family"][-1] == "pareto" and part["nulls"].to_list() == [0] * 5
    # the tail row is the tail_index fit, usable through servetrace.analysis.fitting.distribution
    hill = tokens.tail_index(frame, by="g").filter(pl.col("g") == "lognormal").row(0, named=True)
    tail = lognormal.filter(pl.col("family") == "pareto").row(0, named=True)
    assert _params(lognormal, "pareto") == {"alpha": hill["alpha"], "xm": hill["threshold"]}
    assert tail["threshold"] == hill["threshold"] and tail["ks"] == hill["ks"]
    assert distribution("pareto", tail["params"]).cdf(hill["threshold"]) == 0.0


def test_fit_lengths_subsample_is_seeded_and_small_groups_are_skipped():
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"g": ["big"] * 3000 + ["small"] * 50,
                          "output_tokens": rng.integers(1, 500, 3050)})
    kwargs = {"field": "output_tokens", "by": "g", "families": ("gamma", "lognormal"),
              "max_samples": 1000, "min_n": 100}
    one = tokens.fit_lengths(frame, seed=1, **kwargs)
    assert one.equals(tokens.fit_lengths(frame, seed=1, **kwargs))
    assert not one["params"].equals(tokens.fit_lengths(frame, seed=2, **kwargs)["params"])
    assert set(one["g"]) == {"big"} and one["n"].to_list() == [1000, 1000]


def test_tail_index_recovers_the_pareto_exponent():
    rng = np.random.default_rng(4)
    n = 50_000
    # Pareto(α = 1.5, xm = 1000) token counts; above any threshold u the law is Pareto(α, u)
    x = np.floor(1000.0 * (1.0 + rng.pareto(1.5, n))).astype(np.int64)
    zeros = np.zeros(500, dtype=np.int64)  # failed responses: excluded from the tail
    got = tokens.tail_index(pl.DataFrame({"output_tokens": np.r_[x, zeros]}), "output_tokens",
                            q=0.9).row(0, named=True)
    assert got["n"] == n and got["threshold"] == np.quantile(x, 0.9, method="lower")
    assert got["k"] == (x > got["threshold"]).sum() and 4900 <= got["k"] <= 5000
    # se(α̂) = α/√k ≈ 0.021; 4 se. Flooring to integers changes ln(x/u) by < 1/u ≈ 1e-4.
    assert got["alpha"] == pytest.approx(1.5, abs=0.085)
    assert got["alpha_se"] == pytest.approx(got["alpha"] / math.sqrt(got["k"]))
    assert got["zipf_exponent"] == pytest.approx(1 / got["alpha"])
    assert got["ks"] < 0.025  # DKW bound at k = 5000 with estimated α: well above the noise
    exceed = x[x > got["threshold"]]
    loglik = stats.pareto(got["alpha"], scale=got["threshold"]).logpdf(exceed).sum()
    assert got["loglik"] == pytest.approx(loglik, rel=1e-9)
    # a lognormal has no power tail: its Hill estimate above p90 is much larger
    light = tokens.tail_index(pl.DataFrame({"input_tokens": rng.lognormal(6, 0.5, n)}))
    assert light["alpha"][0] > 3.5


# --------------------------------------------------------------------------- joint


def test_correlation_matches_scipy_and_the_gaussian_copula():
    rho = 0.6
    frame = pl.concat([_lognormal_pairs(20_000, rho, seed=5).with_columns(pl.lit("a").alias("g")),
                       _lognormal_pairs(2_000, 0.0, seed=6).with_columns(pl.lit("b").alias("g"))])
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                               .otherwise(pl.col("output_tokens")).alias("output_tokens"))
    got = tokens.correlation(frame, by="g")
    assert got.columns == ["g", "n", "pearson", "spearman", "pearson_log", "nulls"]
    a = got.row(0, named=True)
    pairs = frame.filter(pl.col("g") == "a").drop_nulls()
    x, y = pairs["input_tokens"].to_numpy(), pairs["output_tokens"].to_numpy()
    assert a["n"] == 19_999 and a["nulls"] == 1
    assert a["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert a["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # Gaussian copula: Spearman = (6/π) arcsin(ρ/2) (Kruskal 1958); se ≈ 0.005 at n = 20k
    assert a["spearman"] == pytest.approx(6 / math.pi * math.asin(rho / 2), abs=0.02)
    assert a["pearson_log"] == pytest.approx(rho, abs=0.02)  # ln(1+x) ≈ ln x at x ~ e^7
    assert abs(got.row(1, named=True)["spearman"]) < 0.07  # independent, n = 2000: 3 se


def test_output_by_input_buckets_partition_the_requests():
    frame = _lognormal_pairs(20_000, 0.5, seed=7)
    got = tokens.output_by_input(frame)
    assert got.columns == ["input_lo", "input_hi", "n", "output_p10", "output_p50",
                           "output_p90", "output_mean"]
    assert got["n"].sum() == frame.height and got["input_hi"].null_count() == 0
    lo, hi = got["input_lo"].to_numpy(), got["input_hi"].to_numpy()
    assert ((lo == 0) | (np.log2(np.maximum(lo, 1)) % 1 == 0)).all() and (hi > lo).all()
    assert hi[-1] > frame["input_tokens"].max()
    x, y = frame["input_tokens"].to_numpy(), frame["output_tokens"].to_numpy()
    for row in got.iter_rows(named=True):
        sub = y[(x >= row["input_lo"]) & (x < row["input_hi"])]
        assert row["n"] == len(sub)
        assert row["output_p50"] == pytest.approx(np.median(sub))
        assert row["output_p10"] == pytest.approx(np.percentile(sub, 10))
        assert row["output_mean"] == pytest.approx(sub.mean())
    # positive dependence: the conditional median of the output grows with the input
    big = got.filter(pl.col("n") >= 500)["output_p50"].to_numpy()
    assert (np.diff(big) > 0).all()
    custom = tokens.output_by_input(frame, edges=[100, 1000])
    assert custom["input_lo"].to_list() == [100.0, 1000.0]
    assert custom["input_hi"].to_list() == [1000.0, None]  # open last bucket
    assert custom["n"].sum() == (x >= 100).sum()


def test_azure_conversation_joint_distribution(azure):
    # the real rows agree with SciPy; measured Spearman ρ of this trace: 0.073 (weak)
    conv = azure.filter(pl.col("trace") == "azure_llm_2023/conv")
    got = tokens.correlation(conv).row(0, named=True)
    x, y = conv["input_tokens"].to_numpy(), conv["output_tokens"].to_numpy()
    assert got["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert abs(got["spearman"]) < 0.1
    buckets = tokens.output_by_input(conv)
    assert buckets["n"].sum() == 19_366


# --------------------------------------------------------------------------- time


def test_drift_matches_scipy_on_every_window_pair():
    rng = np.random.default_rng(8)
    n = 6000
    frame = pl.DataFrame({"arrival_s": rng.uniform(0, 600, n),
                          "g": rng.choice(["x", "y"], n),
                          "input_tokens": rng.integers(0, 60, n)})
    frame = frame.filter(~((pl.col("g") == "y") & pl.col("arrival_s").is_between(200, 400)))
    got = tokens.drift(frame, window_s=100.0, by="g")
    assert got.columns == ["g", "window_start_s", "next_window_start_s", "n", "n_next",
                           "wasserstein", "ks"]
    assert got.height == 5 + 3  # y: windows 0, 1, 4, 5 (a gap from 100 to 400)
    gap = got.filter((pl.col("g") == "y") & (pl.col("window_start_s") == 100.0))
    assert gap["next_window_start_s"].to_list() == [400.0]
    window = (pl.col("arrival_s") // 100) * 100
    for row in got.iter_rows(named=True):
        part = frame.filter(pl.col("g") == row["g"])
        a = part.filter(window == row["window_start_s"])["input_tokens"].to_numpy()
        b = part.filter(window == row["next_window_start_s"])["input_tokens"].to_numpy()
        assert (row["n"], row["n_next"]) == (len(a), len(b))
        assert row["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-12)
        assert row["ks"] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_drift_dense_keys_for_huge_windows_and_fractional_values():
    # window indices up to 2^61 and non-integer values: keys are numbered densely, same result
    rng = np.random.default_rng(11)
    n = 900
    frame = pl.DataFrame({"arrival_s": rng.choice([0.0, 2.0**40, 2.0**61], n),
                          "latency_s": rng.integers(0, 50, n) * 0.25})
    got = tokens.drift(frame, field="latency_s", window_s=1.0)
    assert got["window_start_s"].to_list() == [0.0, 2.0**40]
    for row in got.iter_rows(named=True):
        a = frame.filter(pl.col("arrival_s") == row["window_start_s"])["latency_s"].to_numpy()
        b = frame.filter(pl.col("arrival_s") == row["next_window_start_s"])["latency_s"]
        assert row["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-12)
        assert row["ks"] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_drift_measures_a_known_shift():
    # windows of N(0, 1) then, from the third hour, N(δ, 1): W₁ = δ, KS = 2Φ(δ/2) − 1
    rng = np.random.default_rng(9)
    delta, per = 0.5, 5000
    values = rng.normal(0.0, 1.0, 4 * per) + np.repeat([0, 0, delta, delta], per)
    frame = pl.DataFrame({"arrival_s": np.repeat(np.arange(4) * 3600.0 + 1.0, per),
                          "latency_s": values})
    got = tokens.drift(frame, field="latency_s", window_s=3600.0)
    assert got["window_start_s"].to_list() == [0.0, 3600.0, 7200.0]
    w, ks = got["wasserstein"].to_list(), got["ks"].to_list()
    # 5000 per window: sampling noise of W₁ and KS is ~0.02; 0.05 > 2.5 sd
    assert w[1] == pytest.approx(delta, abs=0.05)
    assert ks[1] == pytest.approx(2 * stats.norm.cdf(delta / 2) - 1, abs=0.03)
    assert max(w[0], w[2]) < 0.06 and max(ks[0], ks[2]) < 0.04


def test_failure_rate_recovers_a_known_probability():
    rng = np.random.default_rng(10)
    n, p = 40_000, 0.05
    frame = pl.DataFrame({"arrival_s": np.sort(rng.uniform(0, 4 * 3600, n)),
                          "g": rng.choice(["a", "b"], n), "failed": rng.random(n) < p})
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) < 10).then(None)
                               .otherwise(pl.col("failed")).alias("failed"))
    whole = tokens.failure_rate(frame, by="g")
    assert whole.columns == ["g", "n", "failed", "rate", "n_known"]
    assert whole["n"].sum() == n and whole["n_known"].sum() == n - 10
    se = math.sqrt(p * (1 - p) / (n / 2))
    assert ((whole["rate"] - p).abs() < 4 * se).all()
    assert (whole["rate"] == whole["failed"] / whole["n_known"]).all()
    hourly = tokens.failure_rate(frame, by="g", window_s=3600.0)
    assert hourly.columns == ["g", "window_start_s", "n", "failed", "rate", "n_known"]
    assert hourly.height == 8 and hourly["failed"].sum() == whole["failed"].sum()
    assert ((hourly["rate"] - p).abs() < 4 * math.sqrt(p * (1 - p) / (n / 8))).all()


def test_failure_rate_on_real_traces(azure, shared):
    # Azure records no failures: rate is null, never 0
    got = tokens.failure_rate(azure, by="trace")
    assert got["n"].to_list() == [8819, 19366] and got["rate"].null_count() == 2
    assert got["failed"].null_count() == 2 and got["n_known"].to_list() == [0, 0]
    # BurstGPT marks zero-token responses failed; this conversation sample has none
    sample = burstgpt.load([shared / "burstgpt_sample/sample.jsonl"], "burstgpt/sample")
    requests = sample.tables["requests"]
    got = tokens.failure_rate(requests).row(0, named=True)
    assert got == {"n": 1000, "failed": 0, "rate": 0.0, "n_known": 1000}
    failing = requests.with_columns((pl.col("output_tokens") < 50).alias("failed"))
    rate = tokens.failure_rate(failing, window_s=86400.0)["rate"][0]
    assert rate == pytest.approx((requests["output_tokens"] < 50).mean())


# --------------------------------------------------------------------------- overview


def test_summary_of_the_azure_traces(azure):
    got = tokens.summary(azure.lazy(), by="trace", max_samples=5000)
    assert got.columns == ["trace", "n", "input_mean", "input_median", "input_p99",
                           "output_mean", "output_median", "output_p99", "spearman",
                           "input_best_fit", "output_best_fit", "failure_rate"]
    conv = got.filter(pl.col("trace") == "azure_llm_2023/conv").row(0, named=True)
    assert (conv["n"], conv["input_median"], conv["output_median"]) == (19366, 1020.0, 129.0)
    corr = tokens.correlation(azure, by="trace")
    assert got["spearman"].to_list() == corr["spearman"].to_list()
    assert got["failure_rate"].null_count() == 2
    assert set(got["input_best_fit"]) <= set(tokens.WHOLE_FAMILIES)
    assert got["output_best_fit"].null_count() == 0
    fits = tokens.fit_lengths(azure, "output_tokens", by="trace", families=tokens.WHOLE_FAMILIES,
                              max_samples=5000)
    best = fits.filter(pl.col("rank_aic") == 1)["family"].to_list()
    assert got["output_best_fit"].to_list() == best
    plain = tokens.summary(azure.filter(pl.col("trace") == "azure_llm_2023/code"), families=())
    assert plain.columns == got.columns[1:] and plain["input_best_fit"].to_list() == [None]


def test_lazy_and_eager_inputs_agree(azure):
    lazy = azure.lazy()
    for call in (lambda f: tokens.length_summary(f, "trace"),
                 lambda f: tokens.ecdf(f, "output_tokens", "trace"),
                 lambda f: tokens.tail_index(f, "input_tokens", "trace"),
                 lambda f: tokens.correlation(f),
                 lambda f: tokens.output_by_input(f, "trace"),
                 lambda f: tokens.drift(f, "output_tokens", 600.0, "trace"),
                 lambda f: tokens.failure_rate(f, "trace", 600.0)):
        assert call(lazy).equals(call(azure))


def test_errors_name_the_column_or_parameter(azure):
    conv = azure.filter(pl.col("trace") == "azure_llm_2023/conv")
    with pytest.raises(ValueError, match="no column 'tenant'"):
        tokens.length_summary(conv, by="tenant")
    with pytest.raises(ValueError, match="no column 'arrival_s'"):
        tokens.drift(conv.drop("arrival_s"))
    with pytest.raises(ValueError, match="empty"):
        tokens.correlation(conv.head(0))
    with pytest.raises(ValueError, match="points"):
        tokens.ecdf(conv, points=0)
    with pytest.raises(ValueError, match="window_s"):
        tokens.drift(conv, window_s=0.0)
    with pytest.raises(ValueError, match="q must be"):
        tokens.tail_index(conv, q=1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        tokens.output_by_input(conv, edges=[0, 10, 10])
    with pytest.raises(ValueError, match="unknown distribution family 'zipf'"):
        tokens.fit_lengths(conv, families=("lognormal", "zipf"))
    with pytest.raises(ValueError, match="by column 'input_tokens'"):
        tokens.ecdf(conv, by="input_tokens")
    with pytest.raises(ValueError, match="'trace' must be numeric"):
        tokens.ecdf(conv, field="trace")
    with pytest.raises(ValueError, match="'failed' must be Boolean"):
        tokens.failure_rate(conv.with_columns(pl.lit(1).alias("failed")))


def test_counting_ranks_match_scipy_with_groups_ties_and_nulls():
    from scipy import stats as st

    rng = np.random.default_rng(0)
    n = 5000
    frame = pl.DataFrame({"tenant": rng.choice(["a", "b", "c"], n),
                          "input_tokens": rng.integers(0, 20, n),  # heavy ties
                          "output_tokens": rng.integers(0, 30, n)}).with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("output_tokens"))
        .alias("output_tokens"))
    got = tokens.correlation(frame, by="tenant")
    for tenant in ("a", "b", "c"):
        part = frame.filter(pl.col("tenant") == tenant).drop_nulls()
        want = st.spearmanr(part["input_tokens"], part["output_tokens"]).statistic
        assert got.filter(pl.col("tenant") == tenant)["spearman"][0] == pytest.approx(want)


# --------------------------------------------------------------------------- counting paths
# Integer token counts are summarized from per-(group, value) counts instead of sorts. Each
# counting path is checked against the sorting path it replaces (forced by allowing no
# counting table: _MAX_CELLS = 0) and against plain NumPy / SciPy, on random integers with
# heavy ties, zeros, negative values, nulls, a null key and groups of one row or none.


def _tied_frame(seed: int, n: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({
        "g": pl.Series(rng.choice(["a", "b", "c", ""], n).tolist()).replace("", None),
        "h": rng.integers(0, 2, n).astype(np.int32),
        "arrival_s": np.sort(rng.uniform(0, 5 * 3600, n)),
        "input_tokens": np.r_[rng.integers(-3, 40, n // 2),  # ties, zeros, negatives
                              np.exp(rng.normal(5, 1.5, n - n // 2)).astype(np.int64)],
        "output_tokens": rng.integers(0, 25, n),
        "failed": rng.random(n) < 0.1,
    })
    rows = pl.int_range(pl.len())
    return pl.concat([frame.with_columns(  # nulls in both fields, and a one-row group
        pl.when(rows % 11 == 3).then(None).otherwise(pl.col("input_tokens")).alias(
            "input_tokens"),
        pl.when(rows % 13 == 5).then(None).otherwise(pl.col("failed")).alias("failed")),
        pl.DataFrame({"g": ["solo", "void"], "h": pl.Series([0, 1], dtype=pl.Int32),
                      "arrival_s": [10.0, 20.0], "input_tokens": [7, None],
                      "output_tokens": [3, None], "failed": [True, None]})])


def _sorting_path(monkeypatch, call):
    with monkeypatch.context() as patch:
        patch.setattr(token_counts, "_MAX_CELLS", 0)
        return call()


@pytest.mark.parametrize("by", [None, "g", ["g", "h"]])
def test_counting_summaries_equal_the_sorting_path_exactly(monkeypatch, by):
    for seed in range(3):
        frame = _tied_frame(seed)
        for call in (lambda f: tokens.length_summary(f, by),
                     lambda f: tokens.output_by_input(f, by),
                     lambda f: tokens.output_by_input(f, by, edges=[0, 5, 30]),
                     lambda f: tokens.failure_rate(f, by, window_s=1800.0)):
            counted = call(frame)
            assert counted.equals(_sorting_path(monkeypatch, lambda c=call, f=frame: c(f)))
        for call in (lambda f: tokens.tail_index(f, "input_tokens", by, q=0.8),
                     lambda f: tokens.correlation(f, by),
                     lambda f: tokens.drift(f, "input_tokens", 1800.0, by)):
            # sums of logs, products and |F − G| steps are added in another order
            counted = call(frame)
            sorted_ = _sorting_path(monkeypatch, lambda c=call, f=frame: c(f))
            assert counted.drop(pl.selectors.float()).equals(sorted_.drop(pl.selectors.float()))
            for column in counted.select(pl.selectors.float()).columns:
                np.testing.assert_allclose(counted[column].to_numpy(), sorted_[column].to_numpy(),
                                           rtol=1e-12, atol=1e-15, err_msg=column)


def test_counting_quantiles_are_numpys_order_statistics():
    # Polars' linear rule, x_⌊h⌋ + (h − ⌊h⌋)(x_⌈h⌉ − x_⌊h⌋), h = (n − 1)q: NumPy's definition 7
    # (its lerp may round the last bit differently); the median of an even count is exact
    rng = np.random.default_rng(21)
    for n in (1, 2, 3, 10, 999, 4000):
        x = rng.integers(0, 6 if n > 100 else 1000, n)  # heavy ties when large
        got = tokens.length_summary(pl.DataFrame({"input_tokens": x}),
                                    fields=["input_tokens"]).row(0, named=True)
        assert got["median"] == np.median(x) and got["max"] == x.max() and got["n"] == n
        assert got["mean"] == pytest.approx(x.mean(), rel=1e-15)
        for q, name in ((0.9, "p90"), (0.99, "p99")):
            assert got[name] == pytest.approx(np.quantile(x, q), rel=1e-15, abs=0)
    # output_by_input: every bucket's quantiles are NumPy's on that bucket's outputs
    x, y = rng.integers(0, 3000, 5000), rng.integers(0, 50, 5000)
    got = tokens.output_by_input(pl.DataFrame({"input_tokens": x, "output_tokens": y}))
    for row in got.iter_rows(named=True):
        sub = y[(x >= row["input_lo"]) & (x < row["input_hi"])]
        want = np.quantile(sub, [0.1, 0.5, 0.9])
        np.testing.assert_allclose([row["output_p10"], row["output_p50"], row["output_p90"]],
                                   want, rtol=1e-15, atol=0)
        assert row["n"] == sub.size and row["output_mean"] == pytest.approx(sub.mean())


def test_counting_tail_index_is_the_direct_formula():
    # Hill on heavily tied values: u the lower q-quantile, k exceedances, and KS over the
    # sorted exceedances with F = 1 − (x/u)^(−α), at each rank i: max(i/k − F, F − (i−1)/k)
    rng = np.random.default_rng(22)
    x = np.floor(10 * (1 + rng.pareto(1.2, 20_000))).astype(np.int64)
    got = tokens.tail_index(pl.DataFrame({"input_tokens": np.r_[x, 0, 0]}),
                            q=0.7).row(0, named=True)
    u = np.quantile(x, 0.7, method="lower")
    tail = np.sort(x[x > u]).astype(float)
    k = tail.size
    alpha = k / np.log(tail / u).sum()
    f = 1 - (tail / u) ** -alpha
    i = np.arange(1, k + 1)
    assert (got["n"], got["threshold"], got["k"]) == (x.size, u, k)
    assert got["alpha"] == pytest.approx(alpha, rel=1e-12)
    assert got["ks"] == pytest.approx(max((i / k - f).max(), (f - (i - 1) / k).max()),
                                      rel=1e-12)
    assert got["loglik"] == pytest.approx(
        k * math.log(alpha) + k * alpha * math.log(u) - (alpha + 1) * np.log(tail).sum(),
        rel=1e-12)


def test_counting_correlation_and_failures_match_direct_formulas():
    rng = np.random.default_rng(23)
    x = rng.integers(0, 30, 8000)
    y = np.maximum(x + rng.integers(-10, 10, 8000), 0)  # tied, dependent
    got = tokens.correlation(pl.DataFrame({"input_tokens": x, "output_tokens": y})).row(
        0, named=True)
    assert got["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-13)
    assert got["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-13)
    assert got["pearson_log"] == pytest.approx(np.corrcoef(np.log1p(x), np.log1p(y))[0, 1],
                                               rel=1e-13)
    constant = tokens.correlation(pl.DataFrame({"input_tokens": [5, 5, 5],
                                                "output_tokens": [1, 2, 3]}))
    assert np.isnan(constant["pearson"][0]) and np.isnan(constant["spearman"][0])
    t = np.sort(rng.uniform(0, 10_000, 8000))
    failed = rng.random(8000) < 0.2
    got = tokens.failure_rate(pl.DataFrame({"arrival_s": t, "failed": failed}),
                              window_s=1000.0)
    hour = np.floor(t / 1000.0)
    assert got["window_start_s"].to_list() == (np.unique(hour) * 1000.0).tolist()
    assert got["n"].to_list() == np.unique(hour, return_counts=True)[1].tolist()
    assert got["failed"].to_list() == [int(failed[hour == h].sum()) for h in np.unique(hour)]
    assert got["rate"].to_list() == [failed[hour == h].mean() for h in np.unique(hour)]


@pytest.mark.parametrize("cells", [None, 3000, 0])  # dense CDFs, counted keys, sorted keys
def test_drift_paths_match_scipy(monkeypatch, cells):
    rng = np.random.default_rng(24)
    n = 4000  # 10 windows × 100 values = 1000 cells
    frame = pl.DataFrame({"arrival_s": np.sort(rng.uniform(0, 10 * 600, n)),
                          "output_tokens": rng.integers(100, 200, n)})
    frame = frame.filter(~pl.col("arrival_s").is_between(1800, 2400))  # an empty window
    if cells is not None:
        monkeypatch.setattr(token_counts, "_MAX_CELLS", cells)
    got = tokens.drift(frame, "output_tokens", window_s=600.0)
    assert got.height == 8 and got["next_window_start_s"][2] - got["window_start_s"][2] == 1200
    window = (pl.col("arrival_s") // 600) * 600
    for row in got.iter_rows(named=True):
        a = frame.filter(window == row["window_start_s"])["output_tokens"].to_numpy()
        b = frame.filter(window == row["next_window_start_s"])["output_tokens"].to_numpy()
        assert (row["n"], row["n_next"]) == (a.size, b.size)
        assert row["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
        assert row["ks"] == pytest.approx(stats.ks_2samp(a, b).statistic, rel=1e-12)
