"""Cold-start analysis: formats on the real Huawei 2025 specimen rows, statistics on synthetic
frames whose answers are known by construction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from servetrace.analysis import coldstart as cs
from servetrace.analysis.coldstart import COMPONENTS
from servetrace.loaders import huawei_2025

SPECIMENS = ("huawei_2025_cold_starts_R2.csv", "huawei_2025_cold_starts_all_regions.csv",
             "huawei_2025_requests_R2.csv", "huawei_2025_runtime_trigger_R2.csv")


@pytest.fixture(scope="module")
def huawei(shared: Path) -> dict[str, pl.DataFrame]:
    paths = [shared / "specimens" / name for name in SPECIMENS]
    return huawei_2025.load(paths, "huawei_2025/specimens").tables


def _cold(arrival, parts, **extra) -> pl.DataFrame:
    """A cold_starts frame from arrivals and a (n, 4) array of components; total = their sum."""
    parts = np.asarray(parts, dtype=np.float64)
    cols = {"arrival_s": np.asarray(arrival, dtype=np.float64),
            **{c: parts[:, i] for i, c in enumerate(COMPONENTS)},
            "total_s": parts.sum(axis=1)}
    return pl.DataFrame({**cols, **extra})


# --- real rows --------------------------------------------------------------------------------


def test_components_sum_to_total_on_specimen_rows(huawei):
    cold = huawei["cold_starts"]
    assert cold.height == 20
    parts = cold.select(pl.sum_horizontal(COMPONENTS)).to_series().to_numpy()
    np.testing.assert_allclose(parts, cold["total_s"].to_numpy(), rtol=0, atol=2e-6)
    out = cs.component_breakdown(cold)
    assert out["component"].to_list() == list(COMPONENTS)
    assert out["n"].to_list() == [20] * 4
    # shares add up to the whole; each share is Σ component / Σ total
    assert out["share"].sum() == pytest.approx(1.0, abs=1e-6)
    grand = cold["total_s"].sum()
    for row in out.iter_rows(named=True):
        values = cold[row["component"]].to_numpy()
        assert row["total_s"] == pytest.approx(values.sum(), rel=1e-12)
        assert row["share"] == pytest.approx(values.sum() / grand, rel=1e-12)
        assert row["p90_s"] == pytest.approx(np.percentile(values, 90), rel=1e-12)
    # scheduling dominates these rows (14.83 s of 25.84 s); pod allocation is ~0.4 %
    assert out.sort("share")["component"][-1] == "scheduling_s"


def test_breakdown_by_region_and_size_on_specimen_rows(huawei):
    out = cs.component_breakdown(huawei["cold_starts"], by=["region", "size"],
                                 include_total=True)
    assert out.columns[:3] == ["region", "size", "component"]
    n = out.filter(pl.col("component") == "total_s").select("region", "size", "n")
    # R2: ten 300-128 pods; R1: three 300-128, 600-512 and 1000-1024 large;
    # R5: 300-128, 400-256 (small, on the boundary) and 300-128 small, 6600/3400 large
    assert n.rows() == [("R1", "large", 2), ("R1", "small", 3), ("R2", "small", 10),
                        ("R5", "large", 2), ("R5", "small", 3)]
    shares = out.filter(pl.col("component") != "total_s").group_by("region", "size").agg(
        pl.col("share").sum())
    np.testing.assert_allclose(shares["share"].to_numpy(), 1.0, atol=1e-6)
    totals = out.filter(pl.col("component") == "total_s")
    assert totals["share"].to_list() == [1.0] * 5


def test_runtime_joined_from_functions_on_the_function_key(huawei):
    # the specimen functions (R2 runtime table) list none of the specimen cold starts' functions
    out = cs.component_breakdown(huawei["cold_starts"], by="runtime",
                                 functions=huawei["functions"])
    assert out["runtime"].null_count() == 4 and out["n"].to_list() == [20] * 4
    # a cold start of a listed function picks up its runtime and trigger
    cold = huawei["cold_starts"].head(3).with_columns(
        pl.Series("function", ["343---420---pool22-300-128", "565---486---pool30-1800-2048",
                               "565---486---pool30-1800-2048"]))
    out = cs.component_breakdown(cold, by=["runtime", "trigger"],
                                 functions=huawei["functions"].lazy())
    got = out.select("runtime", "trigger", "n").unique(maintain_order=True).rows()
    assert got == [("Java", "workflow", 1), ("http", "APIG", 2)]


def test_summary_of_specimen_rows(huawei):
    row = cs.summary(huawei["cold_starts"], huawei["functions"]).row(0, named=True)
    assert row["n_cold_starts"] == 20 and row["n_pods"] == 20 and row["n_regions"] == 3
    assert row["n_functions"] == 18  # 612---63 cold-starts three times in R2
    assert row["share_small"] == pytest.approx(16 / 20)
    assert row["n_residual_flagged"] == 0 and row["max_abs_residual_s"] < 1e-9
    assert row["dominant_component"] == "scheduling_s"
    assert row["max_total_s"] == pytest.approx(6.913106)
    assert row["share_with_runtime"] == 0.0 and row["top_runtime"] is None
    assert sum(row[f"share_{c}"] for c in COMPONENTS) == pytest.approx(1.0, abs=1e-6)


def test_pod_utility_on_specimen_request_rows(huawei):
    inv = huawei["invocations"]
    # the specimen cold starts and requests share no pod: nothing to pair
    assert cs.pod_utility(huawei["cold_starts"], inv).height == 0
    # a cold start of the pod that served the last five real requests (day 30)
    pod = "pool22-300-128-0000206093"
    cold = pl.DataFrame({"arrival_s": [2678398.5], "region": ["R2"], "pod": [pod],
                         "function": ["296---224---pool22-300-128"], "total_s": [0.4]})
    got = cs.pod_utility(cold, inv, keep_alive_s=60.0).row(0, named=True)
    end = 2678399.087 + 0.038679  # last request's arrival + totalCost_worker
    assert got["n_requests"] == 5
    assert got["end_s"] == pytest.approx(end, abs=1e-9)
    assert got["lifetime_s"] == pytest.approx(end - 2678398.5 + 60.0, abs=1e-9)
    assert got["utility"] == pytest.approx((end - 2678398.5) / 0.4, rel=1e-9)


# --- size classes -----------------------------------------------------------------------------


def test_size_class_boundaries():
    frame = pl.DataFrame({"cpu_limit_m": [300.0, 400, 401, 400, 300, 600, None],
                          "memory_limit_mb": [128.0, 256, 256, 257, None, None, 512]})
    got = frame.select(cs.size_class())["size"].to_list()
    assert got == ["small", "small", "large", "large", None, "large", "large"]
    custom = frame.select(cs.size_class(pl.col("cpu_limit_m"), "memory_limit_mb",
                                        cpu_max_m=300, memory_max_mb=128))["size"]
    assert custom.to_list()[:2] == ["small", "large"]


# --- component breakdown: known shares and percentiles --------------------------------------


def test_breakdown_known_shares_and_percentiles():
    rng = np.random.default_rng(1)
    n = 20_000
    # shares fixed by construction: the components' means are 1, 2, 3, 4 (share 0.1 .. 0.4)
    parts = np.column_stack([rng.exponential(1.0, n), np.full(n, 2.0),
                             rng.uniform(0.0, 6.0, n), rng.gamma(4.0, 1.0, n)])
    out = cs.component_breakdown(_cold(np.arange(n), parts))
    # the share of a component is its sample mean over the total's: SE ≈ sd/(mean_total √n)
    np.testing.assert_allclose(out["share"].to_numpy(), [0.1, 0.2, 0.3, 0.4], atol=0.005)
    dep = out.filter(pl.col("component") == "deploy_dep_s").row(0, named=True)
    # U(0, 6): p50 = 3, p90 = 5.4, p99 = 5.94; quantile SE ≈ 6√(q(1−q)/n) < 0.022
    assert dep["p50_s"] == pytest.approx(3.0, abs=0.07)
    assert dep["p90_s"] == pytest.approx(5.4, abs=0.05)
    assert dep["p99_s"] == pytest.approx(5.94, abs=0.02)
    code = out.filter(pl.col("component") == "deploy_code_s").row(0, named=True)
    assert code["p50_s"] == code["p99_s"] == code["mean_s"] == 2.0


def test_breakdown_groups_by_functions_runtime_with_exact_shares():
    parts = np.array([[1.0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 2], [0, 2, 0, 2]])
    cold = _cold([0, 1, 2, 3], parts, function=["f", "f", "g", "h"])
    functions = pl.DataFrame({"function": ["f", "g", "h"], "runtime": ["Java", "Go", "Go"]})
    out = cs.component_breakdown(cold, by="runtime", functions=functions)
    go = out.filter(pl.col("runtime") == "Go")["share"].to_list()
    java = out.filter(pl.col("runtime") == "Java")["share"].to_list()
    assert go == [0.0, 2 / 6, 0.0, 4 / 6]
    assert java == [0.25] * 4
    assert out["runtime"].to_list()[:4] == ["Go"] * 4  # groups sorted


def test_breakdown_skips_incomplete_rows_and_keeps_residuals():
    cold = _cold([0, 1, 2], [[1.0, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 1]])
    cold = cold.with_columns(pl.Series("pod_alloc_s", [1.0, None, 1.0]),
                             pl.Series("total_s", [4.0, 8.0, 5.0]))  # 3rd: residual 1 s
    out = cs.component_breakdown(cold)
    assert out["n"].to_list() == [2] * 4
    assert out["share"].sum() == pytest.approx(8 / 9)  # 1 − Σ residual / Σ total


def test_breakdown_errors():
    cold = _cold([0.0], [[1.0, 1, 1, 1]])
    with pytest.raises(ValueError, match="deploy_dep_s"):
        cs.component_breakdown(cold.drop("deploy_dep_s"))
    with pytest.raises(ValueError, match="functions"):
        cs.component_breakdown(cold, by="runtime")
    with pytest.raises(ValueError, match="no row"):
        cs.component_breakdown(cold.head(0))
    with pytest.raises(ValueError, match="more than one"):
        cs.component_breakdown(cold.with_columns(pl.lit("f").alias("function")), by="runtime",
                               functions=pl.DataFrame({"function": ["f", "f"],
                                                       "runtime": ["Java", "Go"]}))


# --- per-minute Spearman correlation ---------------------------------------------------------


def _driven(rng, minutes: int, driver: int, region: str) -> pl.DataFrame:
    """Cold starts whose per-minute mean time is driven by component ``driver`` alone."""
    counts = rng.poisson(5, minutes) + 1
    minute = np.repeat(np.arange(minutes), counts)
    n = len(minute)
    level = rng.lognormal(0.0, 1.0, minutes)[minute]  # shared by a minute's cold starts
    parts = rng.uniform(0.0, 0.01, (n, 4))  # small independent noise in every component
    parts[:, driver] += level
    arrival = minute * 60.0 + rng.uniform(0, 60, n)
    return _cold(arrival, parts, region=[region] * n)


def test_minute_correlation_finds_the_driving_component():
    rng = np.random.default_rng(7)
    cold = pl.concat([_driven(rng, 400, 3, "R1"), _driven(rng, 400, 0, "R2")])
    out = cs.minute_correlation(cold, by="region")
    assert out.columns == ["region", "variable", "n_windows", "spearman", "p_value"]
    assert out["n_windows"].unique().to_list() == [400]
    rho = {(r, v): s for r, v, s in out.select("region", "variable", "spearman").rows()}
    assert rho[("R1", "scheduling_s")] > 0.99 and rho[("R2", "pod_alloc_s")] > 0.99
    # independent components and the (independent) count: ρ ≈ 0, SE = 1/√399 ≈ 0.05
    for region, others in (("R1", COMPONENTS[:3]), ("R2", COMPONENTS[1:])):
        for v in (*others, "count"):
            assert abs(rho[(region, v)]) < 0.2, (region, v)
    # the p-value is scipy's for the same per-minute series
    minutes = (cold.filter(pl.col("region") == "R1")
               .group_by((pl.col("arrival_s") // 60).alias("w"))
               .agg(pl.col("total_s").mean(), pl.len().alias("count")))
    ref = stats.spearmanr(minutes["total_s"], minutes["count"])
    got = out.filter((pl.col("region") == "R1") & (pl.col("variable") == "count")).row(
        0, named=True)
    assert got["spearman"] == pytest.approx(ref.statistic, rel=1e-9)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)


def test_minute_correlation_count_drives_the_summed_time():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 40, 120)
    minute = np.repeat(np.arange(120), counts)
    # identical cold starts, in binary fractions so that a minute's sum is exact
    parts = np.tile([0.125, 0.25, 0.0, 0.5], (len(minute), 1))
    cold = _cold(minute * 60.0 + 1.0, parts)
    out = cs.minute_correlation(cold, statistic="sum")
    row = out.filter(pl.col("variable") == "count").row(0, named=True)
    assert row["spearman"] == pytest.approx(1.0) and row["p_value"] == 0.0
    # with the mean every minute looks the same: ρ is undefined, not a number
    mean = cs.minute_correlation(cold)
    assert mean["spearman"].null_count() == 5 and mean["p_value"].null_count() == 5
    # 30 s windows: every cold start is at second 1 of its minute, so the same 120 windows
    half = cs.minute_correlation(cold, window_s=30.0, statistic="sum")
    assert half["n_windows"][0] == 120
    assert half.filter(pl.col("variable") == "count")["spearman"][0] == pytest.approx(1.0)


def test_minute_correlation_errors():
    cold = _cold([0.0, 70.0], [[1.0, 1, 1, 1], [2, 2, 2, 2]])
    with pytest.raises(ValueError, match="window_s"):
        cs.minute_correlation(cold, window_s=0)
    with pytest.raises(ValueError, match="statistic"):
        cs.minute_correlation(cold, statistic="median")
    with pytest.raises(ValueError, match="arrival_s"):
        cs.minute_correlation(cold.drop("arrival_s"))
    few = cs.minute_correlation(cold)  # two windows: ρ undefined
    assert few["spearman"].null_count() == 5


# --- fitted distributions ---------------------------------------------------------------------


def test_fit_cold_start_times_recovers_lognormal_per_region():
    rng = np.random.default_rng(11)
    n = 4000
    truth = {"R1": (0.5, 0.6), "R2": (-1.0, 1.2)}
    frames = []
    for region, (mu, sigma) in truth.items():
        total = rng.lognormal(mu, sigma, n)
        parts = np.column_stack([total * 0.1, total * 0.2, total * 0.3, total * 0.4])
        frames.append(_cold(np.arange(n), parts, region=[region] * n))
    out = cs.fit_cold_start_times(pl.concat(frames), by="region")
    best = out.filter(pl.col("rank_aic") == 1)
    assert best["region"].to_list() == ["R1", "R2"]
    assert best["family"].to_list() == ["lognormal", "lognormal"]
    for region, params in zip(best["region"], best["params"], strict=True):
        p = json.loads(params)
        mu, sigma = truth[region]
        # MLE standard errors: σ/√n ≤ 0.019 for μ, σ/√(2n) ≤ 0.013 for σ
        assert p["mu"] == pytest.approx(mu, abs=0.08)
        assert p["sigma"] == pytest.approx(sigma, abs=0.05)
    assert out.filter(pl.col("region") == "R1")["n"].to_list() == [n] * 4


def test_fit_intervals_of_poisson_cold_starts():
    rng = np.random.default_rng(5)
    # function f cold-starts at rate 1/s, g at 4/s: each's gaps are Exp(mean 1 s, 0.25 s);
    # superposed, the platform sees a Poisson process at 5/s (gaps of mean 0.2 s)
    f = np.cumsum(rng.exponential(1.0, 3000))
    g = np.cumsum(rng.exponential(0.25, 12000))
    g = g[g < f[-1]]
    arrival = np.concatenate([f, g])
    fn = ["f"] * len(f) + ["g"] * len(g)
    cold = _cold(arrival, np.ones((len(arrival), 4)), function=fn)
    gaps = cs.cold_start_intervals(cold)
    assert gaps.height == len(arrival) - 1 and (gaps["interval_s"] >= 0).all()
    overall = cs.fit_intervals(cold)
    expo = overall.filter(pl.col("family") == "exponential").row(0, named=True)
    # mean of ~15,000 Exp(0.2 s) gaps: SE ≈ 0.2/√15000 = 0.0016 s
    assert json.loads(expo["params"])["scale"] == pytest.approx(0.2, abs=0.01)
    gamma = json.loads(overall.filter(pl.col("family") == "gamma")["params"][0])
    assert gamma["shape"] == pytest.approx(1.0, abs=0.05)
    per = cs.fit_intervals(cold, by="function").filter(pl.col("family") == "exponential")
    scales = [json.loads(p)["scale"] for p in per["params"]]
    assert per["function"].to_list() == ["f", "g"]
    assert scales == pytest.approx([1.0, 0.25], rel=0.06)  # SE 1.8 % and 1 %
    pooled = cs.fit_intervals(cold, per_function=True)
    assert pooled["n"][0] == len(arrival) - 2  # one gap fewer per function


def test_fit_intervals_drops_zero_gaps_and_errors():
    cold = _cold([0.0, 0.0, 1.0, 3.0, 3.0, 4.5], np.ones((6, 4)))
    out = cs.fit_intervals(cold)
    assert out["n"][0] == 3 and out["n_dropped"][0] == 2
    with pytest.raises(ValueError, match="fewer than two"):
        cs.fit_intervals(cold.head(1))
    with pytest.raises(ValueError, match="empty"):
        cs.fit_cold_start_times(cold.head(0))


# --- pod utility ------------------------------------------------------------------------------


def _pods() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    cold = pl.DataFrame({
        "arrival_s": [10.0, 100.0, 200.0, 300.0, 5.0],
        "pod": ["A", "B", "D", "E", "A"],
        "function": ["f", "g", "f", "g", "f"],
        "total_s": [2.0, 0.5, 1.0, 0.0, 9.0],
        "cpu_limit_m": [300.0, 300, 300, 1000, 300],
        "memory_limit_mb": [128.0, 128, 128, 1024, 128],
    })
    inv = pl.DataFrame({
        "arrival_s": [10.0, 20.0, 50.0, 100.4, 150.0, 300.5],
        "pod": ["A", "A", "A", "B", "C", "E"],
        "duration_s": [0.5, 1.0, 5.0, 0.1, 1.0, None],
    })
    functions = pl.DataFrame({"function": ["f", "g"], "runtime": ["Java", "Python3"]})
    return cold, inv, functions


def test_pod_utility_known_lifetimes():
    cold, inv, _ = _pods()
    out = cs.pod_utility(cold, inv, keep_alive_s=60.0)
    # A: earliest cold start at 5 s (9 s), last end 55 s → lifetime 110 s, U = 50 / 9
    # B: cold start at 100 s (0.5 s), one request ending 100.5 s → lifetime 60.5 s, U = 1
    # C: no cold start; D: no request; E: zero cold-start time → U null
    assert out["pod"].to_list() == ["A", "B", "E"]
    assert out["lifetime_s"].to_list() == pytest.approx([110.0, 60.5, 60.5])
    assert out["utility"][0] == pytest.approx(50 / 9)
    assert out["utility"][1] == pytest.approx(1.0)
    assert out["utility"][2] is None
    assert out["n_requests"].to_list() == [3, 1, 1]
    # the keep-alive moves the lifetime, not U
    longer = cs.pod_utility(cold, inv, keep_alive_s=600.0)
    assert longer["lifetime_s"].to_list() == pytest.approx([650.0, 600.5, 600.5])
    assert longer["utility"].to_list()[:2] == pytest.approx([50 / 9, 1.0])
    with pytest.raises(ValueError, match="keep_alive_s"):
        cs.pod_utility(cold, inv, keep_alive_s=-1)
    with pytest.raises(ValueError, match="duration_s"):
        cs.pod_utility(cold, inv.drop("duration_s"))


def test_pod_utility_by_runtime_and_summary():
    cold, inv, functions = _pods()
    out = cs.pod_utility(cold, inv.lazy(), by=["runtime", "size"], functions=functions)
    assert out.columns[:3] == ["runtime", "size", "pod"]
    assert out.select("runtime", "size", "pod").rows() == [
        ("Java", "small", "A"), ("Python3", "large", "E"), ("Python3", "small", "B")]
    summary = cs.pod_utility_summary(out, by="runtime")
    assert summary["runtime"].to_list() == ["Java", "Python3"]
    assert summary["n_pods"].to_list() == [1, 1]  # E's U is unknown
    # known utilities 0.5, 2, 4, 10: median 3, mean 4.125, one of four below 1
    pods = pl.DataFrame({"utility": [0.5, 2.0, 4.0, 10.0], "lifetime_s": [60.0] * 4,
                         "cold_start_s": [1.0, 2.0, 3.0, 4.0]})
    row = cs.pod_utility_summary(pods).row(0, named=True)
    assert row["n_pods"] == 4 and row["median_utility"] == 3.0
    assert row["mean_utility"] == pytest.approx(4.125)
    assert row["share_below_1"] == 0.25 and row["median_cold_start_s"] == 2.5
    assert row["p90_utility"] == pytest.approx(4.0 + 0.7 * 6.0)
    with pytest.raises(ValueError, match="runtime"):
        cs.pod_utility_summary(pods, by="runtime")


def test_pod_utility_matches_region_and_pod():
    cold = pl.DataFrame({"arrival_s": [0.0, 0.0], "region": ["R1", "R2"], "pod": ["p", "p"],
                         "function": ["f", "f"], "total_s": [1.0, 2.0]})
    inv = pl.DataFrame({"arrival_s": [1.0, 3.0], "region": ["R2", "R1"], "pod": ["p", "p"],
                        "duration_s": [1.0, 1.0]})
    out = cs.pod_utility(cold, inv, by="region")
    assert out.select("region", "utility").rows() == [("R1", 4.0), ("R2", 1.0)]
    assert math.isclose(out["lifetime_s"][0], 64.0)
