"""Keep-alive simulation: cases known by construction, a naive reference, real traces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.analysis.keepalive import (
    FixedKeepAlive,
    HybridHistogram,
    NoKeepAlive,
    overall,
    simulate,
    tradeoff,
)
from servetrace.analysis.model_loading import TIERS, StorageTier, model_loading
from servetrace.loaders import azure_functions_2019, azure_functions_2021, azure_llm_2023, burstgpt
from servetrace.loaders.schema import conform


def invocations(times, duration=1.0, app="a") -> pl.DataFrame:
    times = np.asarray(times, dtype=float)
    return pl.DataFrame({"arrival_s": times, "app": [app] * len(times),
                         "duration_s": np.broadcast_to(np.asarray(duration, float), times.shape)})


def counts(minutes, count=1, function="f", app="a") -> pl.DataFrame:
    minutes = np.asarray(minutes)
    return pl.DataFrame({"app": [app] * len(minutes), "function": [function] * len(minutes),
                         "window_start_s": minutes * 60.0, "window_s": 60.0,
                         "count": np.broadcast_to(np.asarray(count, np.int64), minutes.shape)})


def one(frame: pl.DataFrame) -> dict:
    assert frame.height == 1
    return frame.row(0, named=True)


# -- fixed keep-alive: known by construction ---------------------------------------------------
def test_period_below_keep_alive_cold_starts_once():
    # every 300 s for 1 s; kept 600 s: only the first is cold; idle 299 s per gap, none after
    # the last (the horizon is the last execution's end)
    r = one(simulate(invocations(np.arange(100) * 300.0), FixedKeepAlive(600), memory_mb=512))
    assert (r["invocations"], r["cold_starts"]) == (100, 1)
    assert r["idle_s"] == pytest.approx(99 * 299.0)
    assert r["wasted_gb_s"] == pytest.approx(99 * 299.0 * 0.5)


def test_period_above_keep_alive_every_invocation_cold():
    r = one(simulate(invocations(np.arange(50) * 900.0), FixedKeepAlive(600)))
    assert r["cold_starts"] == 50
    assert r["idle_s"] == pytest.approx(49 * 600.0)  # alive the full keep-alive each time


def test_no_keep_alive_cold_unless_overlapping():
    r = one(simulate(invocations(np.arange(40) * 10.0, duration=2.0), NoKeepAlive))
    assert (r["cold_starts"], r["idle_s"]) == (40, 0.0)
    # each invocation lasts longer than the period: the instance never idles
    r = one(simulate(invocations(np.arange(40) * 10.0, duration=15.0), NoKeepAlive))
    assert r["cold_starts"] == 1


def test_tail_counts_idle_up_to_the_horizon():
    r = one(simulate(invocations([0.0, 100.0], duration=0.0), FixedKeepAlive(600),
                     horizon_s=400.0))
    assert r["idle_s"] == pytest.approx(100.0 + 300.0)


def test_per_minute_counts_period_below_and_above():
    every10 = counts(np.arange(0, 1440, 10))  # once every 10 minutes, a day
    assert one(simulate(every10, FixedKeepAlive(1200), duration_s=1.0))["cold_starts"] == 1
    # the phase moves each start within its minute, so gaps lie in (540, 660) s
    assert one(simulate(every10, FixedKeepAlive(300), duration_s=1.0))["cold_starts"] == 144
    busy = counts(np.arange(600), count=5)  # 5 per minute, every minute, zero duration
    assert one(simulate(busy, NoKeepAlive))["cold_starts"] == 3000
    assert one(simulate(busy, FixedKeepAlive(60)))["cold_starts"] == 1


def test_phase_spread_matches_its_distribution():
    # one invocation every minute at 60 (m + u_m), u_m ~ U[0,1) iid: the gap is 60 (1 + u' - u),
    # triangular on (0, 120). P(gap > 60) = 1/2, P(gap > 30) = 7/8, E[min(gap, 60)] = 50 s.
    # n = 20,000 gaps; the indicator of an ascent has variance ~ 1/(12 n), sd ~ 0.002.
    n = 20_000
    trace = counts(np.arange(n))
    r60 = one(simulate(trace, FixedKeepAlive(60), seed=3))
    assert r60["cold_fraction"] == pytest.approx(0.5, abs=0.01)
    assert r60["idle_s"] / (n - 1) == pytest.approx(50.0, abs=0.5)  # sd of the mean ~ 0.1 s
    r30 = one(simulate(trace, FixedKeepAlive(30), seed=3))
    assert r30["cold_fraction"] == pytest.approx(7 / 8, abs=0.01)
    # even spreading: every gap is exactly 60 s, never above a 60 s keep-alive
    assert one(simulate(trace, FixedKeepAlive(60), spread="even"))["cold_starts"] == 1
    assert one(simulate(trace, FixedKeepAlive(59), spread="even"))["cold_starts"] == n


def test_seed_and_chunking():
    rng = np.random.default_rng(0)
    frames = [counts(np.sort(rng.choice(2000, 300, replace=False)), rng.integers(1, 4, 300),
                     function=f"f{i}", app=f"a{i % 7}") for i in range(30)]
    trace = pl.concat(frames)
    a = simulate(trace, HybridHistogram(min_idle_times=5), seed=1)
    assert a.equals(simulate(trace, HybridHistogram(min_idle_times=5), seed=1))
    assert a.equals(simulate(trace, HybridHistogram(min_idle_times=5), seed=1, chunk_rows=500))
    b = simulate(trace, FixedKeepAlive(120), seed=2)
    assert not b.equals(simulate(trace, FixedKeepAlive(120), seed=1))
    assert a["app"].to_list() == sorted(a["app"].to_list())
    # rows grouped by chunk with a blockwise counting sort = a stable argsort
    import servetrace.analysis.keepalive_events as ka

    key = rng.integers(0, 37, 10_001).astype(np.uint16)
    perm, bounds = ka._group_rows(key, 37, block=1000)
    assert np.array_equal(perm.to_numpy(), np.argsort(key, kind="stable"))
    assert np.array_equal(bounds, np.r_[0, np.cumsum(np.bincount(key, minlength=37))])


def test_hash_collisions_and_close_times_are_handled(monkeypatch: pytest.MonkeyPatch):
    import servetrace.analysis.keepalive_events as ka

    rng = np.random.default_rng(5)
    trace = pl.concat([invocations(np.sort(rng.uniform(0, 1e5, 200)), app=f"a{i}")
                       for i in range(12)])
    pol = HybridHistogram(min_idle_times=3, cv_threshold=0.5)
    expected = simulate(trace, pol)
    # a Categorical key groups units by its codes, a String key by a hash: same results
    cat = simulate(trace.with_columns(pl.col("app").cast(pl.Categorical)), pol)
    assert cat.with_columns(pl.col("app").cast(pl.String)).equals(expected)
    # a null key is a unit of its own
    nulls = trace.with_columns(pl.when(pl.col("app") == "a3").then(None).otherwise("app")
                               .alias("app"))
    for frame in (nulls, nulls.with_columns(pl.col("app").cast(pl.Categorical))):
        got = simulate(frame, pol)
        assert got.height == 12 and got["app"].null_count() == 1
        assert got.drop("app").sort("idle_s").equals(expected.drop("app").sort("idle_s"))
    # every unit key hashes alike: the units are told apart by their keys instead
    monkeypatch.setattr(ka, "_unit_code", lambda by, schema: (pl.lit(7, pl.UInt64), False))
    assert simulate(trace, pol).equals(expected)
    # times closer than the composite sort key's rounding still come out in order
    ids = np.array([10**9, 10**9, 0, 10**9])
    t = np.array([5e5 + 2e-7, 5e5 + 1e-7, 0.0, 5e5])
    for n_ids in (10**9 + 1, 1 << 40):
        order = ka._order(ids, t, n_ids)
        assert list(zip(ids[order], t[order], strict=True)) == sorted(zip(ids, t, strict=True))
    order = ka._order(ids // 10**9, t, 2)  # 16-bit ids: radix sort, then by time
    assert list(t[order]) == [0.0, 5e5, 5e5 + 1e-7, 5e5 + 2e-7]


# -- hybrid histogram --------------------------------------------------------------------------
def test_hybrid_periodic_app_is_warm_once_learned():
    # every 20 min for 1 s: ITs of 1199 s, bin 19. Until min_idle_times ITs are known the
    # 10-min fallback makes every gap cold; then P = 19·60·0.9 = 1026 s, E = 20·60·1.1 = 1320 s.
    pol = HybridHistogram()
    n = 100
    r = one(simulate(invocations(np.arange(n) * 1200.0), pol))
    assert r["cold_starts"] == 1 + pol.min_idle_times
    learned = n - 1 - pol.min_idle_times
    assert r["histogram_fraction"] == pytest.approx(learned / (n - 1))
    assert r["idle_s"] == pytest.approx(pol.min_idle_times * 600.0 + learned * (1199 - 1026))
    # the same from per-minute counts (a timer every 30 min, 0.5 s): the phases spread the
    # ITs over (1739.5, 1859.5) s, bins 28-30, so P ≤ 29·60·0.9 and E = 31·60·1.1 hold them
    timer = one(simulate(counts(np.arange(0, 14 * 1440, 30)), pol, duration_s=0.5))
    assert timer["cold_starts"] == 1 + pol.min_idle_times
    # a fixed keep-alive long enough to be warm holds the instance the whole gap
    fixed = one(simulate(invocations(np.arange(n) * 1200.0), FixedKeepAlive(1320)))
    assert fixed["cold_starts"] == 1 and fixed["idle_s"] > 5 * r["idle_s"]


def test_hybrid_out_of_bounds_falls_back():
    five_hours = invocations(np.arange(60) * 5 * 3600.0)  # beyond the 4 h histogram
    assert one(simulate(five_hours, HybridHistogram()))["cold_starts"] == 60
    r = one(simulate(five_hours, HybridHistogram(fallback_s=6 * 3600)))
    assert (r["cold_starts"], r["histogram_fraction"]) == (1, 0.0)


def test_hybrid_flat_histogram_is_not_representative():
    # Exponential ITs with mean 1 h: bin counts ∝ exp(-b/60) over 240 bins, CV ≈ 1.04 (plus
    # sampling noise ~ 240/n) < 2: after ~100 ITs the policy falls back.
    gaps = np.random.default_rng(1).exponential(3600.0, 3000)
    r = one(simulate(invocations(np.cumsum(gaps), duration=0.0), HybridHistogram()))
    assert r["histogram_fraction"] < 0.1


def _reference(events: list[tuple[float, int, float, float]], pol: HybridHistogram,
               horizon: float) -> tuple[int, int, float]:
    """One unit, a plain loop over its events (start, count, spacing, duration)."""
    nb = pol.bins
    hist, oob = [0] * nb, 0

    def windows() -> tuple[float, float]:
        s = sum(hist)
        total = s + oob
        if total < pol.min_idle_times or s == 0 or oob > pol.oob_threshold * total:
            return 0.0, pol.fallback_s
        mean = s / nb
        cv = math.sqrt(sum((x - mean) ** 2 for x in hist) / nb) / mean
        if cv < pol.cv_threshold:
            return 0.0, pol.fallback_s

        def pct(p: float) -> int:
            need, acc = max(1, math.ceil(round(p * 1e6) * s / 1e8)), 0
            for b, x in enumerate(hist):
                acc += x
                if acc >= need:
                    return b
            raise AssertionError

        return (pct(pol.prewarm_pct) * pol.bin_s * (1 - pol.margin),
                (pct(pol.keepalive_pct) + 1) * pol.bin_s * (1 + pol.margin))

    def add(x: float, w: int) -> None:
        nonlocal oob
        b = int(max(x, 0.0) // pol.bin_s)
        if b < nb:
            hist[b] += w
        else:
            oob += w

    cold, idle, busy, n = 0, 0.0, -math.inf, 0
    for j, (s, c, h, d) in enumerate(events):
        p, e = windows()
        if j == 0:
            cold += 1
        else:
            it = s - busy
            if it > 0:
                cold += it < p or it > e
                idle += max(0.0, min(it, e) - p)
        g = h - d
        if c > 1 and g > 0:
            cold += (c - 1) * (g < p or g > e)
            idle += (c - 1) * max(0.0, min(g, e) - p)
        if j > 0:
            add(s - busy, 1)
        if c > 1:
            add(g, c - 1)
        busy = max(busy, s + (c - 1) * h + d)
        n += c
    p, e = windows()
    if horizon > busy:
        idle += max(0.0, min(horizon - busy, e) - p)
    return n, cold, idle


def test_hybrid_matches_a_naive_loop():
    # small bins so that every branch is taken: histogram, out of bounds, flat, too few ITs
    pol = HybridHistogram(range_s=900.0, bin_s=60.0, min_idle_times=4, cv_threshold=1.5,
                          fallback_s=120.0, oob_threshold=0.3)
    rng = np.random.default_rng(7)
    rows, expected = [], {}
    horizon = 0.0
    units = []
    for i in range(40):
        scale = rng.choice([50.0, 300.0, 700.0, 1500.0])
        n = int(rng.integers(1, 80))
        minutes = np.unique(np.cumsum(1 + rng.poisson(scale / 60.0, n)))
        cnt = rng.choice([1, 1, 1, 2, 7], len(minutes))
        units.append((f"u{i:02d}", minutes, cnt, float(rng.choice([0.0, 2.0, 20.0]))))
        horizon = max(horizon, (minutes[-1] + 1) * 60.0)
    for name, minutes, cnt, dur in units:
        rows.append(pl.DataFrame({"function": name, "window_start_s": minutes * 60.0,
                                  "window_s": 60.0, "count": cnt}))
        h = 60.0 / cnt
        events = [(m * 60.0 + 0.5 * hh, int(c), hh, dur)
                  for m, c, hh in zip(minutes, cnt, h, strict=True)]
        expected[name] = _reference(events, pol, horizon)
    funcs = pl.DataFrame({"function": [u[0] for u in units],
                          "duration_mean_s": [u[3] for u in units]})
    got = simulate(pl.concat(rows), pol, by="function", spread="even", functions=funcs)
    assert got.height == len(units)
    fractions = []
    for r in got.iter_rows(named=True):
        n, cold, idle = expected[r["function"]]
        assert (r["invocations"], r["cold_starts"]) == (n, cold), r["function"]
        assert r["idle_s"] == pytest.approx(idle, rel=1e-9, abs=1e-6), r["function"]
        fractions.append(r["histogram_fraction"])
    assert 0 < np.mean(fractions) < 1  # both the histogram and the fallback were used


# -- memory and durations from functions -------------------------------------------------------
def test_durations_and_memory_from_functions():
    trace = pl.concat([counts(np.arange(0, 100, 5), function="f1"),
                       counts(np.arange(0, 100, 5), count=3, function="f2")])
    funcs = pl.DataFrame({"app": ["a", "a"], "function": ["f1", "f2"],
                          "duration_mean_s": [4.0, 8.0], "memory_mean_mb": [100.0, 300.0]})
    r = one(simulate(trace, FixedKeepAlive(0), functions=funcs, spread="even"))
    # one instance per app holds the larger function's memory; 4 invocations per window,
    # 15 s apart, running (1·4 + 3·8) / 4 = 7 s: 3 inner gaps of 8 s, all cold with K = 0
    assert r["memory_mb"] == 300.0
    assert (r["invocations"], r["cold_starts"]) == (80, 80)
    r = one(simulate(trace, FixedKeepAlive(10), functions=funcs, spread="even"))
    assert r["cold_starts"] == 20
    # 3 inner gaps of 8 s per window, 19 gaps between windows kept 10 s, and the last
    # window's end (59.5 s into its minute) to the trace end: 0.5 s
    assert r["idle_s"] == pytest.approx(20 * 3 * 8.0 + 19 * 10.0 + 0.5)
    assert r["wasted_gb_s"] == pytest.approx(r["idle_s"] * 300 / 1024)
    assert one(simulate(trace, FixedKeepAlive(10)))["memory_mb"] == 128.0  # the default
    # a function name shared by two apps: matched on (app, function), not on the name alone
    twin = pl.concat([counts([0, 10], function="f", app="a"), counts([0, 10], function="f",
                                                                     app="b")])
    funcs = pl.DataFrame({"app": ["a", "b"], "function": ["f", "f"],
                          "duration_mean_s": [100.0, 1000.0], "memory_mean_mb": [1.0, 2.0]})
    per = simulate(twin, FixedKeepAlive(0), functions=funcs, horizon_s=4000.0)
    assert per["memory_mb"].to_list() == [1.0, 2.0]
    # a 1000 s execution starting in minute 0 is still running at minute 10: one cold start
    assert per["cold_starts"].to_list() == [2, 1]
    funcs = funcs.with_columns(app=pl.Series(["a", "c"]))  # app b has no entry: defaults
    per = simulate(twin, FixedKeepAlive(0), functions=funcs, horizon_s=4000.0)
    assert per["memory_mb"].to_list() == [1.0, 128.0]
    assert per["cold_starts"].to_list() == [2, 2]
    # the same with function names unique in functions (the one-key join): app must match
    one_key = funcs.filter(pl.col("app") == "c").with_columns(app=pl.lit("b"))
    per = simulate(twin, FixedKeepAlive(0), functions=one_key, horizon_s=4000.0)
    assert per["memory_mb"].to_list() == [128.0, 2.0]
    assert per["cold_starts"].to_list() == [2, 1]


# -- summaries -----------------------------------------------------------------------------
def test_overall_totals_and_percentiles():
    per = pl.DataFrame({"app": list("abcde"), "invocations": [10, 10, 10, 10, 60],
                        "cold_starts": [0, 1, 2, 3, 6],
                        "cold_fraction": [0.0, 0.1, 0.2, 0.3, 0.1],
                        "wasted_gb_s": [1.0, 2.0, 3.0, 4.0, 5.0]})
    o = overall(per)
    assert (o.units, o.invocations, o.cold_starts) == (5, 100, 12)
    assert o.cold_fraction == pytest.approx(0.12)
    assert o.wasted_gb_s == pytest.approx(15.0)
    assert o.p50_app_cold_fraction == pytest.approx(0.1)
    assert o.p75_app_cold_fraction == pytest.approx(0.2)
    assert o.mean_app_cold_fraction == pytest.approx(0.14)


def _check_curve(curve: pl.DataFrame) -> None:
    fixed = curve.filter(pl.col("policy") == "fixed").sort("keep_alive_s")
    for col in ("cold_fraction", "p75_app_cold_fraction"):
        assert fixed[col].is_between(0, 1).all()
        assert (fixed[col].diff().drop_nulls() <= 1e-12).all(), col
    assert (fixed["wasted_gb_s"].diff().drop_nulls() >= -1e-9).all()
    assert fixed.filter(pl.col("keep_alive_s") == 0)["wasted_gb_s"].item() == 0
    assert fixed.filter(pl.col("keep_alive_s") == 600)["wasted_normalized"].item() == 1.0
    hybrid = curve.filter(pl.col("policy") == "hybrid")
    assert hybrid.height == 1 and hybrid["keep_alive_s"].is_null().all()
    assert 0 <= hybrid["cold_fraction"].item() <= 1


def test_real_azure_functions_2019_tradeoff(shared: Path):
    loaded = azure_functions_2019.load([shared / "azure_functions_2019"],
                                       "azure_functions_2019/sample").tables
    trace, funcs = loaded["invocation_counts"], loaded["functions"]
    curve = tradeoff(trace, functions=funcs)
    _check_curve(curve)
    assert (curve["invocations"] == trace["count"].sum()).all()
    per = simulate(trace, HybridHistogram(), by="function", functions=funcs)
    assert per.height == trace["function"].n_unique()
    assert per["cold_fraction"].is_between(0, 1).all()
    assert (per["cold_starts"] >= 1).all()
    assert per["memory_mb"].min() > 0 and per["wasted_gb_s"].min() >= 0
    # the hybrid policy beats the 10-min fixed one on idle memory here, as in the paper
    hyb = curve.filter(pl.col("policy") == "hybrid")
    assert hyb["wasted_normalized"].item() < 1


def test_real_azure_functions_2021_tradeoff(shared: Path):
    inv = azure_functions_2021.load(
        [shared / "azure_functions_2021/AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"],
        "azure_functions_2021/invocations").tables["invocations"]
    for by in ("app", "function"):
        curve = tradeoff(inv, by=by)
        _check_curve(curve)
        assert (curve["invocations"] == inv.height).all()
    # the 10-min reference is simulated for the normalization even when not asked for
    two = tradeoff(inv, keep_alive_s=(1200, 60), include_hybrid=False)
    assert two["keep_alive_s"].to_list() == [60.0, 1200.0]
    assert two["wasted_normalized"][0] < 1 < two["wasted_normalized"][1]
    per = simulate(inv.lazy(), FixedKeepAlive(600), by=["app", "function"])
    assert per.height == inv.select("app", "function").n_unique()


# -- model loading --------------------------------------------------------------------------
def requests(times, service=0.0, model="m") -> pl.DataFrame:
    times = np.asarray(times, float)
    return pl.DataFrame({"arrival_s": times, "model": [model] * len(times),
                         "latency_s": np.broadcast_to(np.asarray(service, float), times.shape)})


def test_model_loading_known_cases():
    tier = StorageTier("test", bandwidth_gb_s=5.0)  # 100 GB: 20 s
    r = one(model_loading(requests(np.arange(50) * 100.0, 2.0), 100.0, tier, 300.0))
    assert (r["requests"], r["cold_starts"], r["delayed_requests"]) == (50, 1, 1)
    assert r["load_s"] == 20.0
    assert r["added_latency_mean_s"] == pytest.approx(20.0 / 50)
    r = one(model_loading(requests(np.arange(50) * 1000.0, 2.0), 100.0, tier, 300.0))
    assert (r["cold_starts"], r["cold_rate"]) == (50, 1.0)
    assert r["added_latency_p99_s"] == pytest.approx(20.0)
    # requests during the load wait for its remainder: arrivals 0..9 s wait 20 - t
    r = one(model_loading(requests(np.arange(10.0)), 100.0, tier, 0.0))
    assert (r["cold_starts"], r["delayed_requests"]) == (1, 10)
    assert r["added_latency_mean_s"] == pytest.approx(np.mean(20.0 - np.arange(10.0)))
    # without keep-alive, a request arriving during the load still finds the replica
    r = one(model_loading(requests([0.0, 10.0, 35.0]), 100.0, tier, 0.0))
    assert r["cold_starts"] == 2
    assert r["replica_s"] == pytest.approx(20.0 + 20.0)
    assert TIERS["host"].load_s(64.0) == pytest.approx(2.0)


def test_model_loading_matches_a_naive_loop():
    rng = np.random.default_rng(11)
    frames, expected = [], {}
    for i in range(25):
        n = int(rng.integers(1, 120))
        t = np.sort(np.round(rng.exponential(rng.choice([2.0, 20.0, 200.0]), n).cumsum(), 1))
        sv = rng.choice([0.0, 1.0, 30.0]) * rng.random(n)
        frames.append(pl.DataFrame({"arrival_s": t, "model": f"m{i:02d}", "latency_s": sv}))
        expected[f"m{i:02d}"] = (t, sv)
    trace = pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=1)
    for load_gb, keep in ((0.0, 0.0), (50.0, 0.0), (50.0, 15.0), (400.0, 5.0)):
        got = model_loading(trace, load_gb, StorageTier("t", 10.0), keep, horizon_s=1e9)
        for r in got.iter_rows(named=True):
            t, sv = expected[r["model"]]
            load = load_gb / 10.0
            cold, waits, alive = 0, [], 0.0
            ready, busy, since = -math.inf, -math.inf, 0.0
            for ti, si in zip(t, sv, strict=True):
                if ti > busy + keep:  # no replica: load one
                    if cold:
                        alive += busy + keep - since
                    cold, ready, since = cold + 1, ti + load, ti
                start = max(ti, ready)
                waits.append(start - ti)
                busy = max(busy, start + si)
            alive += busy + keep - since  # the horizon is far
            assert r["cold_starts"] == cold, (r["model"], load_gb, keep)
            assert r["added_latency_mean_s"] == pytest.approx(np.mean(waits), abs=1e-9)
            assert r["added_latency_p99_s"] == pytest.approx(np.quantile(waits, 0.99), abs=1e-9)
            assert r["delayed_requests"] == sum(w > 0 for w in waits)
            assert r["replica_s"] == pytest.approx(alive)


def test_model_loading_real_traces(shared: Path):
    conv = azure_llm_2023.load([shared / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"],
                               "azure_llm_2023/conv").tables["requests"]
    rates = [one(model_loading(conv, 26.0, "ssd", k, by=None))["cold_rate"]
             for k in (0.0, 1.0, 10.0, 60.0)]
    assert all(0 < r <= 1 for r in rates)
    assert rates == sorted(rates, reverse=True)
    # canonical frame, model null throughout: one unit with a null key
    canon = conform("requests", conv.with_columns(pl.lit("azure_llm_2023/conv").alias("trace")))
    assert model_loading(canon, 26.0, "remote", 10.0)["model"].null_count() == 1
    bg = burstgpt.load([shared / "burstgpt_sample/sample.jsonl"], "burstgpt/sample"
                       ).tables["requests"]
    per = model_loading(bg, 14.0, "host", 60.0, by="tenant")
    assert per.height == bg["tenant"].n_unique() and per["requests"].sum() == bg.height
    assert per["cold_rate"].is_between(0, 1).all()
    assert (per["added_latency_p99_s"] <= per["load_s"] + 1e-12).all()


# -- errors --------------------------------------------------------------------------------
def test_errors_name_the_fault():
    trace = invocations([0.0, 1.0])
    with pytest.raises(ValueError, match="'arrival_s'"):
        simulate(trace.drop("arrival_s"), NoKeepAlive)
    with pytest.raises(ValueError, match="'tenant'"):
        simulate(trace, NoKeepAlive, by="tenant")
    with pytest.raises(ValueError, match="no rows"):
        simulate(trace.clear(), NoKeepAlive)
    with pytest.raises(ValueError, match="policy"):
        simulate(trace, 600)
    with pytest.raises(ValueError, match="keep_alive_s"):
        FixedKeepAlive(-1)
    with pytest.raises(ValueError, match="cv_threshold"):
        HybridHistogram(cv_threshold=-1)
    with pytest.raises(ValueError, match="'function'"):
        simulate(trace, NoKeepAlive, functions=pl.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="add 'trace' to by"):
        simulate(pl.concat([trace.with_columns(trace=pl.lit("x")),
                            trace.with_columns(trace=pl.lit("y"))]), NoKeepAlive)
    with pytest.raises(ValueError, match="unknown storage tier"):
        model_loading(requests([0.0]), 1.0, "tape", 0.0)
    with pytest.raises(ValueError, match="'model'"):
        model_loading(requests([0.0]).drop("model"), 1.0, "ssd", 0.0)
