"""Serverless model (synth.serverless): ground truth from simulated functions, JSON, scaling.

Statistics are checked against processes with known parameters: timers of known period,
phase and missed-firing probability, Poisson functions of known rate, Dirichlet within-minute
spacing of known κ, a daily cycle of known amplitude, and percentile interpolation against
SciPy's PCHIP and a known distribution.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import interpolate, stats

from servetrace.synth import serverless as sv
from servetrace.synth import serverless_counts as svc
from servetrace.synth import serverless_quantiles as sq
from servetrace.synth import serverless_scale as sc

W = 60.0


def _counts_table(counts: np.ndarray, names: list[str], triggers: list[str]) -> pl.DataFrame:
    f, m = np.nonzero(counts)
    return pl.DataFrame({
        "trace": "sim", "tenant": [f"o{i}" for i in f], "app": [f"a{i}" for i in f],
        "function": [names[i] for i in f], "trigger": [triggers[i] for i in f],
        "window_start_s": m * W, "window_s": W, "count": counts[f, m],
    })


@pytest.fixture(scope="module")
def population():
    """40 timers (periods 2..60 min, known phase, 10 % missed firings) and 40 Poisson
    functions (rates 0.05..20 per minute) over one day of minutes, plus lognormal durations."""
    rng = np.random.default_rng(7)
    n_t = 1440
    counts = np.zeros((80, n_t), dtype=np.int64)
    periods = rng.choice([2, 5, 10, 15, 30, 60], 40)
    phases = np.array([rng.integers(0, p) for p in periods])
    for i, (p, ph) in enumerate(zip(periods, phases, strict=True)):
        fire = np.arange(ph, n_t, p)
        fire = fire[rng.random(len(fire)) >= 0.1]
        counts[i, fire] = 1
    rates = np.exp(rng.uniform(np.log(0.05), np.log(20), 40))
    counts[40:] = rng.poisson(rates[:, None], (40, n_t))
    names = [f"f{i}" for i in range(80)]
    triggers = ["timer"] * 40 + ["http"] * 40
    sigma = rng.uniform(0.3, 1.5, 80)
    med = np.exp(rng.uniform(-3, 2, 80))
    probs = np.array(sq.DURATION_PROBS)
    pk = np.clip(probs, 1e-4, 1 - 1e-4)
    knots = med[:, None] * np.exp(sigma[:, None] * stats.norm.ppf(pk)[None, :])
    functions = pl.DataFrame({
        "trace": "sim", "tenant": [f"o{i}" for i in range(80)],
        "app": [f"a{i}" for i in range(80)], "function": names, "trigger": triggers,
        **{c: knots[:, j] for j, c in enumerate(sq.DURATION_COLUMNS)}})
    table = _counts_table(counts, names, triggers)
    model = sv.fit(table, functions)
    return dict(counts=counts, periods=periods, phases=phases, rates=rates, knots=knots,
                table=table, functions=functions, model=model)


def test_timers_recovered(population):
    m = population["model"]
    kinds = np.array(m.functions.kind)
    assert (kinds[:40] == "periodic").all()
    assert (kinds[40:] == "modulated").all()
    p = m.periodic
    period = np.array(p.period_s)
    assert np.array_equal(period, population["periods"][np.array(p.index)] * W)
    # the first firing's window, modulo the period (a missed first firing moves it by a period)
    wphase = np.array(p.window_phase_s) / W
    truth = population["phases"][np.array(p.index)]
    assert np.array_equal(wphase % (period / W), truth % (period / W))
    # missed-firing probability 0.1: within 3 binomial SEs per timer (n firings due)
    due = 1440 / (period / W)
    se = np.sqrt(0.1 * 0.9 / due)
    assert (np.abs(np.array(p.miss) - 0.1) < 3.5 * se).mean() >= 0.95
    assert np.allclose(np.asarray(p.batch), 1.0) and np.allclose(p.jitter, 0.0)


def test_poisson_rates_and_memory(population):
    m = population["model"]
    fitted = m.function_rates()[40:] * W
    true = population["rates"]
    se = np.sqrt(true / 1440)
    assert (np.abs(fitted - true) < 4 * se + 1e-9).all()
    # a Poisson function has no memory: the simulated-moments H stays near 1/2
    hurst = np.array(m.modulated.hurst)
    assert np.median(hurst) <= 0.6


def test_sample_reproduces_timers_and_rates(population):
    m = population["model"]
    s = m.sample(86400.0, seed=3)
    assert s.equals(m.sample(86400.0, seed=3))
    assert not s.equals(m.sample(86400.0, seed=4))
    g = svc.grid(s)
    names = g.keys["function"].to_list()
    # timers fire on their period: the gaps of a timer without misses are multiples of it
    p = m.periodic
    for j in (0, 5, 11):
        f = m.functions.function[p.index[j]]
        t = np.sort(s.filter(pl.col("function") == f)["arrival_s"].to_numpy())
        ratio = np.diff(t) / p.period_s[j]
        assert np.allclose(ratio, np.round(ratio), atol=1e-6)
    # Poisson functions: sampled rates within 5 SE of the truth (rank-matched: exact marginal)
    got = np.array([g.counts[names.index(f"f{i}")].sum() / 1440 for i in range(40, 80)])
    true = population["rates"]
    assert (np.abs(got - true) < 5 * np.sqrt(true / 1440) + 0.01).all()
    assert s["duration_s"].null_count() == 0 and (s["duration_s"] > 0).all()


def test_durations_follow_percentiles(population):
    m = population["model"]
    s = m.sample(86400.0, seed=1).with_columns(pl.col("function").cast(pl.String))
    big = s.group_by("function").agg(pl.col("duration_s").quantile(0.5, "linear").alias("q50"),
                                     pl.col("duration_s").quantile(0.25, "linear").alias("q25"),
                                     pl.len()).filter(pl.col("len") >= 2000)
    idx = big["function"].str.slice(1).cast(pl.Int64).to_numpy()
    knots = population["knots"]
    assert big.height >= 10
    assert np.allclose(big["q50"].to_numpy(), knots[idx, 3], rtol=0.08)
    assert np.allclose(big["q25"].to_numpy(), knots[idx, 2], rtol=0.1)


def test_pchip_matches_scipy_exact_and_monotone():
    rng = np.random.default_rng(0)
    probs = np.array(sq.DURATION_PROBS)
    knots = np.sort(np.exp(rng.normal(0, 2, (200, len(probs)))), axis=1)
    knots[:20, 2:5] = knots[:20, 2:3]  # flat stretches (ties) are common in real rows
    u = np.linspace(0, 1, 2001)
    rows = np.repeat(np.arange(200), len(u))
    got = sq.pchip(probs, knots, rows, np.tile(u, 200)).reshape(200, len(u))
    want = interpolate.PchipInterpolator(probs, knots, axis=1)(u)
    assert np.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert (np.diff(got, axis=1) >= -1e-12).all()
    at = sq.pchip(probs, knots, np.repeat(np.arange(200), len(probs)),
                  np.tile(probs, 200)).reshape(200, len(probs))
    assert np.array_equal(at, knots) or np.allclose(at, knots, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_pchip_closer_than_piecewise_uniform(sigma):
    """Ground truth: a lognormal cut at its 0.01 % and 99.99 % quantiles, given by the seven
    published percentile levels; the monotone cubic's quantile function is closer (mean
    |ln Q̂ − ln Q|) and its mean closer to the true mean than the piecewise-uniform reading."""
    probs = np.array(sq.DURATION_PROBS)
    d = stats.lognorm(sigma)
    inner = np.clip(probs, 1e-4, 1 - 1e-4)
    knots = d.ppf(inner)[None, :]
    u = np.linspace(0, 1, 100_001)[1:-1]
    truth = d.ppf(np.interp(u, probs, inner))
    rows = np.zeros(len(u), dtype=np.int64)
    a = sq.pchip(probs, knots, rows, u)
    b = sq.piecewise_uniform(probs, knots, rows, u)
    err_a = np.abs(np.log(a / truth)).mean()
    err_b = np.abs(np.log(b / truth)).mean()
    assert err_a < 0.5 * err_b
    assert abs(a.mean() - truth.mean()) < abs(b.mean() - truth.mean())


@pytest.mark.parametrize("kappa", [0.3, 1.0, 4.0])
def test_within_window_kappa_recovered(kappa):
    rng = np.random.default_rng(11)
    c = rng.integers(2, 12, 3000)
    pos = svc.dirichlet_positions(c, kappa, rng)
    win = np.repeat(np.arange(len(c)), c)
    inv = pl.DataFrame({"function": "f", "arrival_s": (win + pos) * W})
    got = sv.fit_within(inv)
    assert got.source == "fitted"
    assert got.kappa == pytest.approx(kappa, rel=0.12)


def test_daily_harmonic_recovered():
    rng = np.random.default_rng(5)
    n_t = 4 * 1440
    t = (np.arange(n_t) + 0.5) * W
    amp = 0.8
    lam = 5.0 * np.exp(amp * np.cos(2 * np.pi * t / 86400.0))
    counts = rng.poisson(lam)[None, :]
    m = sv.fit(_counts_table(counts, ["f0"], ["http"]))
    assert m.modulated.harmonic_periods_s == (86400.0, 43200.0)
    a, b = m.modulated.harmonics[:2]
    assert math.hypot(a, b) == pytest.approx(amp, abs=0.1)
    s = m.sample(2 * 86400.0, seed=0)
    hours = np.bincount((s["arrival_s"].to_numpy() // 3600).astype(int) % 24, minlength=24)
    assert hours[[23, 0, 1]].sum() > 3 * hours[[11, 12, 13]].sum()


def test_json_round_trip_and_version(population):
    m = population["model"]
    text = m.to_json()
    assert "NaN" not in text and json.loads(text)["periodic"]["phase_s"][0] is None
    back = sv.ServerlessModel.from_json(text)
    assert back.to_json() == text
    assert back.sample(3600.0, seed=2).equals(m.sample(3600.0, seed=2))
    data = json.loads(text)
    data["version"] = "serverless-0"
    with pytest.raises(ValueError, match="version"):
        sv.ServerlessModel.from_json(json.dumps(data))


def test_scaling_operators_labelled(population):
    m = population["model"]
    up = sc.target_rate(m, 3.0 * m.mean_rate, op="superpose_functions", seed=1)
    assert up.n_functions == 3 * m.n_functions
    assert up.mean_rate == pytest.approx(3 * m.mean_rate, rel=1e-9)
    assert up.history[-1].op == "superpose_functions"
    fast = sc.target_rate(m, 3.0 * m.mean_rate, op="compress_time")
    assert fast.mean_rate == pytest.approx(3 * m.mean_rate, rel=1e-9)
    assert fast.history[-1].op == "compress_time"
    md = json.loads(next(iter(sc.metadata(up, 3600.0, 0).values())))
    assert [r["op"] for r in md] == ["superpose_functions", "sample"]
    # superposition keeps each function's burst shape: a timer stays on its period;
    # compression shrinks the period by the factor
    a = up.sample(7200.0, seed=0)
    b = fast.sample(7200.0, seed=0)
    assert a.height == pytest.approx(3 * m.mean_rate * 7200, rel=0.1)
    assert b.height == pytest.approx(3 * m.mean_rate * 7200, rel=0.1)
    timer = m.functions.function[m.periodic.index[0]]
    period = m.periodic.period_s[0]
    tb = np.sort(b.filter(pl.col("function") == timer)["arrival_s"].to_numpy())
    ratio = np.diff(tb) / (period / 3)
    assert np.allclose(ratio, np.round(ratio), atol=1e-6)
    down = sc.superpose_functions(m, 0.5, seed=2)
    assert 0.25 * m.n_functions < down.n_functions < 0.75 * m.n_functions


def test_bad_input():
    with pytest.raises(ValueError, match="no rows"):
        sv.fit(pl.DataFrame({"function": [], "arrival_s": []},
                            schema={"function": pl.String, "arrival_s": pl.Float64}))
    mixed = pl.DataFrame({"function": ["a", "b"], "window_start_s": [0.0, 0.0],
                          "window_s": [60.0, 1.0], "count": [1, 2]})
    with pytest.raises(ValueError, match="mixes window sizes"):
        sv.fit(mixed)
    with pytest.raises(ValueError, match="need an invocation_counts"):
        sv.fit(pl.DataFrame({"function": ["a"]}))


def test_sparse_renewal_keeps_idle_times():
    """Ground truth: a function active once every 3..7 minutes (uniform gaps, a random count
    1..3 each time) is idle at most 6 minutes, its rate is 1/5 active minutes × 2 calls. The
    sampled idle times stay in 2..6 minutes and the rate within 5 %; a fixed 10-minute
    keep-alive sees no cold start after the first (a copula ordering would idle longer)."""
    rng = np.random.default_rng(3)
    n_t = 1440
    pos = np.cumsum(rng.integers(3, 8, 400))
    pos = pos[pos < n_t]
    counts = np.zeros((1, n_t), dtype=np.int64)
    counts[0, pos] = rng.integers(1, 4, len(pos))
    m = sv.fit(_counts_table(counts, ["f0"], ["queue"]))
    assert m.functions.kind == ("modulated",) and np.isfinite(m.modulated.gaps).all()
    s = m.sample(4 * 86400.0, seed=0)
    minutes = np.unique((s["arrival_s"].to_numpy() // W).astype(np.int64))
    idle = np.diff(minutes) - 1
    assert idle.min() >= 2 and idle.max() <= 6
    assert s.height / (4 * 1440) == pytest.approx(2 / 5, rel=0.05)


def test_cluster_load_and_sizing():
    """Ground truth: Poisson functions of total rate Λ and a constant 0.5 s duration offer
    Λ · 0.5 / cores of CPU; sizing to twice that replicates every function once more."""
    rng = np.random.default_rng(9)
    n_t = 720
    rates = rng.uniform(1, 20, 30)  # per minute
    counts = rng.poisson(rates[:, None], (30, n_t))
    names = [f"f{i}" for i in range(30)]
    functions = pl.DataFrame({
        "tenant": [f"o{i}" for i in range(30)], "app": [f"a{i}" for i in range(30)],
        "function": names, "trigger": "http",
        **{c: np.full(30, 0.5) for c in sq.DURATION_COLUMNS},
        **{c: np.full(30, 256.0) for c in sq.MEMORY_COLUMNS}})
    m = sv.fit(_counts_table(counts, names, ["http"] * 30), functions)
    cluster = sc.Cluster(nodes=2, cores=4, memory_mb=8192)
    load = sc.offered_load(m.sample(7200.0, 0), cluster, 7200.0)
    truth = counts.sum() / (n_t * W) * 0.5 / 8
    assert load.cpu == pytest.approx(truth, rel=0.05)
    # every app is busy often enough to stay warm: 30 instances of 256 MB held throughout
    assert load.warm_instances == pytest.approx(30, rel=0.05)
    assert load.memory == pytest.approx(30 * 256 / (2 * 8192), rel=0.05)
    sized, reached = sc.size_to_cluster(m, cluster, 2 * load.utilization, pilot_s=3600.0)
    assert sized.history[-1].op == "size_to_cluster"
    assert reached.utilization == pytest.approx(2 * load.utilization, rel=0.1)
    assert sized.n_functions == pytest.approx(60, abs=3)
    with pytest.raises(ValueError, match="nodes"):
        sc.Cluster(nodes=0, cores=4, memory_mb=1024)


def test_fgn_rows_covariance_and_paired_independence():
    """fGn rows have the exact autocovariance γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H})
    at lags 0–3 (unit variance), for H on and off ½; rows that share one FFT (real and
    imaginary parts, Dietrich & Newsam 1997) are uncorrelated. Averaged over 4,000 rows of
    64 values the tolerances are several standard errors wide."""
    fgn_rows = svc.fgn_rows
    rng = np.random.default_rng(11)
    rows, n = 4000, 64
    for h in (0.3, 0.5, 0.85):
        x = fgn_rows(np.full(rows, h), n, rng)
        assert x.shape == (rows, n)
        for k in range(4):
            want = 0.5 * (abs(k + 1) ** (2 * h) - 2 * k ** (2 * h) + abs(k - 1) ** (2 * h))
            got = float(np.mean(x[:, : n - k] * x[:, k:]))
            assert got == pytest.approx(want, abs=0.02), (h, k)
        half = rows // 2  # row i and row i + half come from one transform
        assert abs(float(np.mean(x[:half] * x[half:]))) < 0.01, h
    mixed = fgn_rows(np.array([0.3, 0.9, 0.3, 0.5, 0.9]), 16, rng)
    assert mixed.shape == (5, 16) and np.isfinite(mixed).all()
