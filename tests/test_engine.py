"""The engines: the Ray engine and the partitioned local engine give the one-process result
(keep-alive, fairness runs, multi-seed fidelity runs, per-tenant fits).

Ray runs as one local instance for the whole session (``ray.init(num_cpus=2)``); the Ray tests
skip when Ray (the ``ray`` extra) is not installed, the others run everywhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import fairness as fa
from servetrace.analysis.engine import LocalEngine, get_engine, hash_bucket
from servetrace.analysis.keepalive import (
    FixedKeepAlive,
    HybridHistogram,
    NoKeepAlive,
    simulate,
    tradeoff,
)
from servetrace.extras import MissingExtra
from servetrace.loaders import Store, azure_functions_2019, azure_llm_2023, burstgpt, mooncake
from servetrace.synth.fidelity import ModelRun, fidelity, holdout
from servetrace.synth.model import fit


@pytest.fixture(scope="session")
def ray_engine() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from servetrace.analysis.engine import RayEngine

    started = not ray.is_initialized()
    engine = RayEngine(num_cpus=2)
    yield engine
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def azure_2019(shared: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    tables = azure_functions_2019.load([shared / "azure_functions_2019"],
                                       "azure_functions_2019/sample").tables
    return tables["invocation_counts"], tables["functions"]


def functions_trace(n: int = 50_000, minutes: int = 120, seed: int = 7) -> pl.DataFrame:
    """``n`` functions in ``n / 4`` apps with sparse per-minute counts over ``minutes``: each
    function is active in one random minute and in a random 2 % of the others (counts 1 +
    Poisson of a per-function rate), about ``n + 0.02 · n · minutes`` rows."""
    rng = np.random.default_rng(seed)
    active = rng.random((n, minutes)) < 0.02
    active[np.arange(n), rng.integers(0, minutes, n)] = True  # every function appears
    f, m = np.nonzero(active)
    rate = rng.exponential(3.0, n)
    return pl.DataFrame({
        "app": pl.Series([f"a{i}" for i in f // 4], dtype=pl.Categorical),
        "function": pl.Series([f"f{i}" for i in f], dtype=pl.Categorical),
        "window_start_s": m * 60.0, "window_s": 60.0,
        "count": 1 + rng.poisson(rate[f]),
    })


# -- the local engine: partitioned equals one pass ---------------------------------------------
@pytest.mark.parametrize("by", ["app", "function"])
def test_partitioned_local_equals_one_pass_on_the_real_sample(azure_2019, by):
    trace, funcs = azure_2019
    for pol in (FixedKeepAlive(600.0), HybridHistogram()):
        one = simulate(trace, pol, by=by, functions=funcs)
        for parts in (1, 7):
            got = simulate(trace.lazy(), pol, by=by, functions=funcs, engine=LocalEngine(),
                           partitions=parts)
            assert got.equals(one), (by, pol, parts)


def test_partitioned_invocations_with_durations_and_nulls(tmp_path):
    rng = np.random.default_rng(3)
    n = 4000
    trace = pl.DataFrame({
        "app": pl.Series([["x", "y", "z", None][i] for i in rng.integers(0, 4, n)],
                         dtype=pl.String),
        "arrival_s": np.sort(rng.uniform(0, 7200, n)),
        "duration_s": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(2.0, n)),
        "memory_mb": rng.choice([128.0, 512.0], n)}).with_columns(
            pl.col("duration_s").fill_nan(None))
    for pol in (FixedKeepAlive(60.0), HybridHistogram(min_idle_times=5)):
        one = simulate(trace, pol)
        got = simulate(trace, pol, engine=LocalEngine(), partitions=3, scratch=tmp_path)
        assert got.equals(one)
        assert got["app"].null_count() == 1  # the null app is one unit
    assert list(tmp_path.iterdir()) == []  # the scratch folder is removed


def test_partitioned_errors_as_one_pass():
    two = pl.DataFrame({"trace": ["a", "b"], "app": ["x", "x"], "arrival_s": [0.0, 1.0]})
    with pytest.raises(ValueError, match="2 traces in one frame"):
        simulate(two, NoKeepAlive, engine=LocalEngine(), partitions=2)
    bad = pl.DataFrame({"app": ["x", "y"], "arrival_s": [0.0, 1.0], "duration_s": [1.0, -1.0]})
    with pytest.raises(ValueError, match="negative or non-finite duration_s"):
        simulate(bad, NoKeepAlive, engine=LocalEngine(), partitions=2)
    with pytest.raises(ValueError, match="no invocations"):
        simulate(pl.DataFrame({"app": ["x"], "window_start_s": [0.0], "window_s": [60.0],
                               "count": [0]}), NoKeepAlive, engine=LocalEngine())
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        simulate(bad, NoKeepAlive, engine=LocalEngine(), partitions=0)


def test_hash_bucket_is_the_same_for_strings_and_categoricals():
    keys = [f"k{i}" for i in range(1000)]
    a = pl.DataFrame({"k": keys}).select(hash_bucket(["k"], 16)).to_series()
    b = pl.DataFrame({"k": pl.Series(list(reversed(keys)), dtype=pl.Categorical)}).select(
        hash_bucket(["k"], 16)).to_series()
    assert a.to_list() == list(reversed(b.to_list()))
    assert a.max() < 16 and a.n_unique() == 16  # 1000 keys fill 16 buckets
    with pytest.raises(ValueError, match="buckets must be >= 1"):
        hash_bucket(["k"], 0)


def test_engine_names_and_the_missing_extra(monkeypatch):
    assert isinstance(get_engine("local"), LocalEngine)
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        get_engine("spark")
    with pytest.raises(ValueError, match="--ray-address needs --engine ray"):
        get_engine("local", "auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'servetrace\[ray\]'"):
        get_engine("ray")


def test_cli_engine_ray_without_ray_is_one_line(mirror, tmp_path, monkeypatch):
    from servetrace.cli import app

    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    res = runner.invoke(app, ["keepalive", "azure_functions_2019/sample", "--engine", "ray"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "pip install 'servetrace[ray]'" in res.output
    res = runner.invoke(app, ["keepalive", "azure_functions_2019/sample", "--ray-address",
                              "auto"])
    assert res.exit_code == 1 and "--ray-address needs --engine ray" in res.output


def test_cli_compare_runs_and_fit_engine_errors_are_one_line(conv, tmp_path, monkeypatch):
    from servetrace.cli import app

    runner = CliRunner()
    real = tmp_path / "conv.parquet"
    conv.head(2000).write_parquet(real)
    store = ["--store", str(tmp_path / "s")]
    for args, message in (
            ([str(real), str(real), "--runs", "2"], "--runs samples a model .json"),
            ([str(real), "m.json", str(real)], "is the only SYNTHETIC argument"),
            ([str(real), "m.json", "--runs", "0"], "--runs must be at least 1")):
        res = runner.invoke(app, ["compare", *args, *store])
        assert res.exit_code == 1 and message in res.output, res.output
        assert "Traceback" not in res.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    res = runner.invoke(app, ["fit", str(real), "-o", str(tmp_path / "m.json"), "--by",
                              "tenant", "--engine", "ray", *store])
    assert res.exit_code == 1 and "pip install 'servetrace[ray]'" in res.output
    assert not (tmp_path / "m.json").exists()


# -- Ray: the same results as the local engine -------------------------------------------------
def test_ray_equals_local_on_the_real_sample(ray_engine, azure_2019):
    trace, funcs = azure_2019
    assert ray_engine.workers == 2
    local = tradeoff(trace, functions=funcs)
    assert tradeoff(trace, functions=funcs, engine=ray_engine).equals(local)
    one = simulate(trace, HybridHistogram(), by="function", functions=funcs)
    got = simulate(trace, HybridHistogram(), by="function", functions=funcs,
                   engine=ray_engine, partitions=5)
    assert got.equals(one)


def test_ray_equals_local_on_50000_functions(ray_engine):
    trace = functions_trace()
    assert trace["function"].n_unique() == 50_000
    for by in ("function", "app"):
        one = simulate(trace, HybridHistogram(), by=by)
        got = simulate(trace, HybridHistogram(), by=by, engine=ray_engine, partitions=8)
        assert got.height == trace[by].n_unique()
        assert got.equals(one), by


def test_ray_task_errors_read_as_local_ones(ray_engine):
    bad = pl.DataFrame({"app": ["x", "y"], "arrival_s": [0.0, 1.0], "duration_s": [1.0, -1.0]})
    with pytest.raises(ValueError, match="negative or non-finite duration_s"):
        simulate(bad, NoKeepAlive, engine=ray_engine, partitions=2)


def test_cli_keepalive_ray_reads_the_store(ray_engine, mirror, tmp_path, monkeypatch):
    from servetrace.cli import app

    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    args = ["keepalive", "azure_functions_2019/sample", "--by", "function", "--format", "json"]
    local = runner.invoke(app, args)
    ray = runner.invoke(app, [*args, "--engine", "ray", "--partitions", "3"])
    assert local.exit_code == 0 and ray.exit_code == 0, ray.output
    assert json.loads(ray.stdout) == json.loads(local.stdout)
    assert Store(tmp_path / "store").traces().height == 1
    bad = runner.invoke(app, [*args, "--engine", "spark"])
    assert bad.exit_code == 1 and "unknown engine 'spark'" in bad.output
    sample = mirror / "burstgpt_sample" / "sample.jsonl"
    assert runner.invoke(app, ["ingest", str(sample), "--as", "burstgpt",
                               "--trace", "b"]).exit_code == 0
    args = ["fairness", "b", "--scheduler", "fcfs", "--scheduler", "vtc", "--format", "json"]
    local = runner.invoke(app, args)
    ray = runner.invoke(app, [*args, "--engine", "ray"])
    assert local.exit_code == 0 and ray.exit_code == 0, ray.output
    assert json.loads(ray.stdout) == json.loads(local.stdout)
    assert "vtc_service_difference" in json.loads(ray.stdout)


def test_a_units_totals_do_not_depend_on_the_other_units():
    """A unit simulated alone gives bit for bit its row of the whole trace: per-unit sums are
    sequential (NumPy's pairwise ``add.reduceat`` changed one app's idle time in the last bit
    with the app's place in the arrays, and so with the partition it fell in)."""
    rng = np.random.default_rng(11)
    n_fn, minutes = 400, 1440
    f, m = np.nonzero(rng.random((n_fn, minutes)) < 0.3)
    trace = pl.DataFrame({"app": (f % 100).astype(str), "function": f.astype(str),
                          "window_start_s": m * 60.0, "window_s": 60.0,
                          "count": 1 + rng.poisson(rng.exponential(50.0, n_fn)[f])})
    funcs = pl.DataFrame({"function": np.arange(n_fn).astype(str),
                          "duration_mean_s": rng.exponential(2.0, n_fn)})
    for pol in (FixedKeepAlive(600.0), HybridHistogram(min_idle_times=5)):
        whole = simulate(trace, pol, functions=funcs)
        for (app,), rows in trace.partition_by("app", as_dict=True).items():
            alone = simulate(rows, pol, functions=funcs, horizon_s=86_400.0)
            assert alone.row(0) == whole.filter(pl.col("app") == app).row(0), (pol, app)


# -- fairness: one task per (server, scheduler) run -------------------------------------------
def _same(a: fa.SimResult, b: fa.SimResult) -> bool:
    return (a.requests.equals(b.requests) and a.service.equals(b.service)
            and a.throttles.equals(b.throttles)
            and (a.scheduler, a.steps, a.iterations) == (b.scheduler, b.steps, b.iterations))


@pytest.fixture(scope="module")
def bgpt(shared: Path) -> pl.DataFrame:
    """299 sessions of the real BurstGPT sample, time compressed 100× so requests overlap."""
    path = shared / "burstgpt_sample" / "sample.jsonl"
    return burstgpt.load([path], "burstgpt/sample").tables["requests"].with_columns(
        pl.col("arrival_s") / 100)


RUNS = [(fa.Server(4000.0, 30.0, 8, 16_000), "fcfs"), (fa.Server(4000.0, 30.0, 8), "vtc"),
        (fa.Server(2000.0, 30.0, 4), "fairserve")]


def test_fairness_runs_equal_one_at_a_time(bgpt):
    got = fa.simulate_runs(bgpt, RUNS, engine=LocalEngine())
    assert [r.scheduler for r in got] == ["fcfs", "vtc", "fairserve"]
    for (server, scheduler), res in zip(RUNS, got, strict=True):
        assert _same(res, fa.simulate(bgpt, server, scheduler))
    with pytest.raises(ValueError, match="scheduler: must be one of"):
        fa.simulate_runs(bgpt, [(RUNS[0][0], "lottery")])


def test_fairness_ray_equals_local(ray_engine, bgpt, tmp_path):
    path = tmp_path / "requests.parquet"
    bgpt.write_parquet(path)
    local = fa.simulate_runs(bgpt, RUNS)
    ray = fa.simulate_runs(pl.scan_parquet(path), RUNS, engine=ray_engine)  # workers read it
    assert all(_same(a, b) for a, b in zip(local, ray, strict=True))


# -- synthesis: multi-seed fidelity runs and per-group fits as engine tasks -------------------
@pytest.fixture(scope="module")
def conv(shared: Path) -> pl.DataFrame:
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    return azure_llm_2023.load([path], "azure_llm_2023/conv").tables["requests"]


@pytest.fixture(scope="module")
def tenants(shared: Path) -> pl.DataFrame:
    """The real BurstGPT sample in six tenants: its 299 users have at most 26 requests each
    (under MIN_GROUP_REQUESTS), so users are grouped by the first hex digit of their id // 3:
    five groups of ~190 requests and one (digit f) small enough to be pooled."""
    path = shared / "burstgpt_sample" / "sample.jsonl"
    return burstgpt.load([path], "burstgpt/sample").tables["requests"].with_columns(
        (pl.col("tenant").cast(pl.String).str.head(1).str.to_integer(base=16) // 3)
        .cast(pl.String).alias("tenant"))


def _span(frame: pl.DataFrame) -> float:
    return float(frame["arrival_s"].max() - frame["arrival_s"].min())


def test_model_runs_and_partitioned_fits_equal_the_local_path(conv, tenants):
    model = fit(conv)
    sampled = fidelity(conv, [model.sample(_span(conv), seed=s) for s in range(3)], seed=4)
    drawn = fidelity(conv, [ModelRun(model, _span(conv), s) for s in range(3)], seed=4,
                     engine=LocalEngine())
    assert drawn.equals(sampled) and drawn["verdict"].null_count() == 0
    one = fit(tenants, by="tenant")
    assert [g.key for g in one.groups] == ["0", "1", "2", "3", "4", None]
    for parts in (1, 3, 16):
        got = fit(tenants, by="tenant", engine=LocalEngine(), partitions=parts)
        assert got.to_json() == one.to_json(), parts
    rows = tenants.drop("session", "hash_ids")  # no sessions: the out-of-core fit
    lazy = fit(rows.lazy(), by="tenant")
    assert fit(rows.lazy(), by="tenant", engine=LocalEngine(), partitions=4).to_json() == \
        lazy.to_json()
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        fit(tenants, by="tenant", engine=LocalEngine(), partitions=0)


def test_ray_fidelity_runs_equal_local(ray_engine, conv, tmp_path):
    local = holdout(conv, seed=2, runs=3)
    assert holdout(conv, seed=2, runs=3, engine=ray_engine).equals(local)
    model = fit(conv)
    files = []
    for s in range(2):
        files.append(tmp_path / f"run{s}.parquet")
        model.sample(_span(conv), seed=s).write_parquet(files[-1])
    local = fidelity(conv, [pl.read_parquet(f) for f in files])
    ray = fidelity(conv, [pl.scan_parquet(f) for f in files], engine=ray_engine)  # read there
    assert ray.equals(local)
    with pytest.raises(ValueError, match="synthetic 2"):  # a short run fails as locally
        fidelity(conv, [ModelRun(model, _span(conv), 0), conv.head(2).lazy()],
                 engine=ray_engine)


def test_ray_session_fidelity_runs_equal_local(ray_engine, shared):
    """Mooncake's prefix blocks add the KV-cache rows and the session-naive baseline."""
    path = shared / "mooncake_fast25" / "conversation_trace.jsonl"
    real = mooncake.load([path], "mooncake/conversation").tables["requests"]
    model = fit(real, block_tokens=512)
    runs = [ModelRun(model, _span(real), s) for s in range(2)]
    local = fidelity(real, runs, block_tokens=512)
    assert "session_naive" in local.columns and "kvcache" in local["kind"].to_list()
    assert fidelity(real, runs, block_tokens=512, engine=ray_engine).equals(local)


def test_ray_fit_by_tenant_equals_local(ray_engine, tenants, tmp_path):
    assert fit(tenants, by="tenant", engine=ray_engine).to_json() == \
        fit(tenants, by="tenant").to_json()
    path = tmp_path / "requests.parquet"
    tenants.drop("session", "hash_ids").write_parquet(path)
    got = fit(pl.scan_parquet(path), by="tenant", engine=ray_engine, partitions=3)
    assert got.to_json() == fit(pl.read_parquet(path).lazy(), by="tenant").to_json()


def test_cli_fit_and_compare_on_ray(ray_engine, conv, tenants, tmp_path):
    from servetrace.cli import app

    runner = CliRunner()
    real, rows = tmp_path / "conv.parquet", tmp_path / "tenants.parquet"
    conv.write_parquet(real)
    tenants.write_parquet(rows)
    for name, args in (("conv", [str(real)]), ("tenants", [str(rows), "--by", "tenant"])):
        for engine in ("local", "ray"):
            res = runner.invoke(app, ["fit", *args, "-o", str(tmp_path / f"{name}-{engine}.json"),
                                      "--engine", engine, "--store", str(tmp_path / "s")])
            assert res.exit_code == 0, res.output
        assert (tmp_path / f"{name}-ray.json").read_text() == \
            (tmp_path / f"{name}-local.json").read_text()
    args = ["compare", str(real), str(tmp_path / "conv-local.json"), "--runs", "2",
            "--format", "json", "--store", str(tmp_path / "s")]
    local = runner.invoke(app, args)
    ray = runner.invoke(app, [*args, "--engine", "ray"])
    assert local.exit_code == 0 and ray.exit_code == 0, ray.output
    assert json.loads(ray.stdout) == json.loads(local.stdout)
    table = json.loads(local.stdout)["fidelity (errors; lower is better)"]
    assert {r["verdict"] for r in table} <= {"win", "tie", "loss"}  # two runs: a spread
    bad = runner.invoke(app, ["compare", str(real), str(real), "--runs", "2",
                              "--store", str(tmp_path / "s")])
    assert bad.exit_code == 1 and "--runs samples a model .json" in bad.output
    assert "Traceback" not in bad.output
