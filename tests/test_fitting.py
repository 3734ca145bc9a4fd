"""Maximum-likelihood fits recover known parameters and rank the true family first."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from servetrace.analysis.fitting import FAMILIES, distribution, fit_distributions

N = 20_000


def _params(fits: pl.DataFrame, family: str) -> dict[str, float]:
    return json.loads(fits.filter(pl.col("family") == family)["params"][0])


@pytest.mark.parametrize(("family", "draw", "truth"), [
    ("gamma", lambda r: r.gamma(0.25, 8.0, N), {"shape": 0.25, "scale": 8.0}),
    ("gamma", lambda r: r.gamma(4.0, 0.5, N), {"shape": 4.0, "scale": 0.5}),
    ("weibull", lambda r: 3.0 * r.weibull(0.6, N), {"shape": 0.6, "scale": 3.0}),
    ("lognormal", lambda r: r.lognormal(6.5, 1.1, N), {"mu": 6.5, "sigma": 1.1}),
    ("exponential", lambda r: r.exponential(2.0, N), {"scale": 2.0}),
])
def test_parameters_recovered_and_true_family_ranked_first(family, draw, truth):
    x = draw(np.random.default_rng(1))
    fits = fit_distributions(x, ("exponential", "gamma", "weibull", "lognormal"))
    got = _params(fits, family)
    for name, value in truth.items():
        # 20k samples: standard errors are ~1% of each parameter; 5% is > 4 sigma
        assert got[name] == pytest.approx(value, rel=0.05), name
    if family != "exponential":  # exponential is nested in gamma and weibull
        assert fits["family"][0] == family
    best = fits.row(0, named=True)
    assert best["ks"] < 0.015  # DKW: P(KS > 0.015) < 2·exp(−2·N·0.015²) ≈ 2e-4
    assert best["rank_aic"] == 1 and best["aic"] == fits["aic"].min()


def test_pareto_and_mixture():
    rng = np.random.default_rng(2)
    pareto = 100 * (1 + rng.pareto(1.5, N))
    fits = fit_distributions(pareto, ("pareto", "lognormal"))
    assert fits["family"][0] == "pareto"
    assert _params(fits, "pareto")["alpha"] == pytest.approx(1.5, rel=0.05)
    mix = np.concatenate([rng.lognormal(3.0, 0.4, 3 * N // 10),
                          rng.lognormal(7.0, 0.6, 7 * N // 10)])
    fits = fit_distributions(mix, ("lognormal", "gamma", "lognormal_mixture2"))
    assert fits["family"][0] == "lognormal_mixture2"
    p = _params(fits, "lognormal_mixture2")
    assert (p["w"], p["mu1"], p["sigma1"], p["mu2"], p["sigma2"]) == pytest.approx(
        (0.3, 3.0, 0.4, 7.0, 0.6), rel=0.05)


def test_drops_non_positive_and_subsamples():
    x = np.concatenate([np.random.default_rng(3).exponential(1.0, 5000), [0.0, -1.0, np.nan]])
    fits = fit_distributions(x, ("exponential",), max_samples=1000)
    row = fits.row(0, named=True)
    assert (row["n"], row["n_dropped"]) == (1000, 3)
    assert fit_distributions(np.array([0.0, 1.0]), ("gamma",)).height == 0
    with pytest.raises(ValueError, match="unknown distribution family 'normal'"):
        fit_distributions(x, ("normal",))


@pytest.mark.parametrize("family", FAMILIES)
def test_distribution_round_trip(family):
    params = {"exponential": {"scale": 2.0}, "gamma": {"shape": 2.0, "scale": 1.5},
              "weibull": {"shape": 0.7, "scale": 3.0}, "lognormal": {"mu": 1.0, "sigma": 0.5},
              "pareto": {"alpha": 2.5, "xm": 1.0},
              "lognormal_mixture2": {"w": 0.4, "mu1": 0.0, "sigma1": 0.3, "mu2": 2.0,
                                     "sigma2": 0.5}}[family]
    dist = distribution(family, json.dumps(params))
    q = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(dist.cdf(dist.ppf(q)), q, rtol=1e-6)
    draws = dist.rvs(50_000, seed=4)
    assert np.array_equal(draws, dist.rvs(50_000, seed=4))
    assert draws.mean() == pytest.approx(dist.mean(), rel=0.03)


def test_tied_values_score_as_every_value():
    # Token counts repeat: log-likelihood and KS are taken over the distinct values weighted
    # by their counts, and the mixture's EM runs on distinct values. They must equal the sums
    # over every value, and the integer input (subsampled before conversion) must fit exactly
    # as its float copy does.
    from servetrace.analysis.fitting import _ks_runs, _mixture_mle, _ties, fit_family, ks_distance

    rng = np.random.default_rng(5)
    x = np.round(rng.lognormal(4.0, 1.0, 30_000)).astype(np.int64)
    x[:40] = 0  # dropped, counted
    families = ("exponential", "gamma", "weibull", "lognormal", "lognormal_mixture2")
    fits = fit_distributions(x, families, max_samples=20_000, seed=3)
    assert fits.equals(fit_distributions(x.astype(float), families, max_samples=20_000, seed=3))
    assert fits.equals(fit_distributions(pl.Series(x), families, max_samples=20_000, seed=3))
    assert fits["n_dropped"].to_list() == [40] * 5
    # the subsample fit_distributions draws, scored value by value
    sample = np.sort(np.random.default_rng(3).choice(x[x > 0], 20_000, replace=False)
                     .astype(float))
    first, weights = _ties(sample)
    assert weights is not None and weights.sum() == sample.size and first.size < 1000
    for row in fits.iter_rows(named=True):
        dist = fit_family(sample, row["family"])
        assert row["params"] == json.dumps(dist.params)
        assert row["loglik"] == pytest.approx(float(dist.logpdf(sample).sum()), rel=1e-12)
        ks = ks_distance(sample, dist)  # the same maximum, bit for bit
        assert row["ks"] == ks == _ks_runs(sample[first], np.append(first[1:], sample.size),
                                           sample.size, dist)
    # the weighted EM is the EM on every value (shuffled input is not recognised as sorted,
    # so it runs unweighted); continuous values have no ties and run unweighted too
    weighted = _mixture_mle(sample)
    plain = _mixture_mle(rng.permutation(sample))
    assert weighted == pytest.approx(plain, rel=1e-9)
    assert _ties(np.sort(rng.lognormal(0, 1, 1000)))[1] is None
