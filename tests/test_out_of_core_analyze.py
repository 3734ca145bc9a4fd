"""Out-of-core ``analyze`` (issue 19, item 2): :mod:`servetrace.analysis.out_of_core`.

Ground truth: the in-memory :func:`burstiness.summary` and :func:`tokens.summary` of the same
rows. Every figure must be identical, except where the module docstring states a tolerance:
``cv`` with ``--by`` groups and ``spearman`` (sums added in another order), within 1e-12
relative. Chunks and gap blocks are made small so that every merge across a chunk or block
edge is exercised on ~200k rows.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import burstiness, counting, interarrival, out_of_core, tokens
from servetrace.cli import app
from servetrace.loaders import Store, ingest

CLOSE = {"cv", "spearman"}  # summed in another order: within 1e-12 (module docstring)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 30,000 rows and gap blocks of 2^14: many edges to merge across."""
    monkeypatch.setattr(out_of_core, "CHUNK_ROWS", 30_000)
    for module in (counting, interarrival, out_of_core):
        monkeypatch.setattr(module, "_BLOCK", 1 << 14)


def _bursty(n: int, seed: int) -> np.ndarray:
    """A Cox process: Poisson arrivals whose rate changes every 1,000 arrivals (gamma
    factors): bursty at every window, so the dispersion, Hurst and burst figures vary."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(0.02, n) * np.repeat(rng.gamma(0.5, 2, n // 1000), 1000))


@pytest.fixture(scope="module")
def requests() -> pl.DataFrame:
    n = 200_000
    rng = np.random.default_rng(3)
    inp = rng.zipf(1.5, n) % 5000 + 1  # heavy tail, many ties: token counts
    out = (inp // 4 + rng.integers(0, 80, n)) * (rng.random(n) > 0.03)
    return pl.DataFrame({
        "arrival_s": _bursty(n, 4),
        "input_tokens": inp,
        "output_tokens": pl.Series(out).scatter(rng.integers(0, n, 50), None),
        "tenant": rng.choice(["a", "b", "c", None], n, p=[0.6, 0.3, 0.099, 0.001]),
        "failed": pl.Series(out == 0).scatter(rng.integers(0, n, 70), None)})


def _assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns and got.height == want.height
    for c in want.columns:
        if c in CLOSE:
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12)
        else:
            assert got[c].equals(want[c]), (c, got[c].to_list(), want[c].to_list())


def _scan(frame: pl.DataFrame, path) -> pl.LazyFrame:
    frame.write_parquet(path, row_group_size=25_000)
    return pl.scan_parquet(path)


@pytest.mark.parametrize("grid", ["continuous", "ms", "shifted"])
@pytest.mark.parametrize("by", [None, "tenant"])
def test_arrival_summary_is_the_in_memory_summary(requests, tmp_path, grid, by):
    t = pl.col("arrival_s")
    frame = requests.with_columns({
        "continuous": t, "ms": (t * 1000).round() / 1000,  # a grid of phase 0: the ticks
        "shifted": (t * 10).floor() / 10 + 0.037,  # a grid of 0.1 s, phase 0.037 s
    }[grid])
    got = out_of_core.arrival_summary(_scan(frame, tmp_path / "r.parquet"), by=by)
    want = burstiness.summary(frame, by=by)
    _assert_same(got, want)
    assert want["resolution_s"][0] == {"continuous": 0.0, "ms": 0.001, "shifted": 0.1}[grid]
    assert want["idc_60s"].max() > 5 and want["n_bursts"].sum() > 0  # figures that vary
    if by is None and grid == "continuous":  # a figure with a tolerance must be exact here
        assert got["cv"].equals(want["cv"])


def test_arrival_summary_of_unsorted_rows_falls_back_to_memory(requests, tmp_path):
    frame = requests.sample(fraction=1.0, shuffle=True, seed=5)
    with pytest.warns(RuntimeWarning, match="not in time order"):
        got = out_of_core.arrival_summary(_scan(frame, tmp_path / "r.parquet"))
    _assert_same(got, burstiness.summary(frame))


def test_arrival_summary_errors_name_the_problem(requests, tmp_path):
    frame = requests.with_columns(requests["arrival_s"].scatter(7, None))
    with pytest.raises(ValueError, match="null or non-finite"):
        out_of_core.arrival_summary(_scan(frame, tmp_path / "a.parquet"))
    batch = requests.with_columns(pl.lit(None, pl.Float64).alias("arrival_s"))
    with pytest.raises(ValueError, match="no arrival times"):
        out_of_core.arrival_summary(_scan(batch, tmp_path / "b.parquet"))
    with pytest.raises(ValueError, match="'nope' is not in events"):
        out_of_core.arrival_summary(_scan(requests, tmp_path / "c.parquet"), by="nope")


@pytest.mark.parametrize("by", [None, "tenant"])
def test_token_summary_is_the_in_memory_summary(requests, tmp_path, by):
    lf = _scan(requests, tmp_path / "r.parquet")
    # 20,000 samples: the large groups' fits read a seeded subsample gathered from the rows,
    # the small group's every positive value rebuilt from the histogram
    got = out_of_core.token_summary(lf, by=by, max_samples=20_000)
    want = tokens.summary(requests, by=by, max_samples=20_000)
    _assert_same(got, want)
    assert want["failure_rate"].is_not_null().all() and want["spearman"].min() > 0.2


def test_token_summary_without_failures_column(requests, tmp_path):
    frame = requests.drop("failed")
    got = out_of_core.token_summary(_scan(frame, tmp_path / "r.parquet"), families=())
    want = tokens.summary(frame, families=())
    _assert_same(got, want)
    assert got["failure_rate"].is_null().all()


def test_cli_analyze_reads_out_of_core_and_matches_memory(shared, tmp_path):
    """The store's scan through ``servetrace analyze``: Mooncake's 3 s ticks (a grid of
    phase 0 after the loader's zero) and Azure 2023's continuous timestamps."""
    store = Store(tmp_path / "store")
    ingest(shared / "mooncake_fast25" / "conversation_trace.jsonl", store=store,
           progress=False)
    ingest(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv", store=store,
           progress=False)
    for trace in ("mooncake/conversation", "azure_llm_2023/code"):
        res = CliRunner().invoke(app, ["analyze", trace, "--format", "json", "--store",
                                       str(store.root)])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        frame = store.scan("requests", trace).collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = {"arrivals": burstiness.summary(frame).to_dicts(),
                    "tokens": tokens.summary(frame).to_dicts()}
        want = json.loads(json.dumps(want, default=str))
        for part in ("arrivals", "tokens"):
            [got_row], [want_row] = doc[part], want[part]
            for k, v in want_row.items():
                if k in CLOSE and v is not None:
                    assert got_row[k] == pytest.approx(v, rel=1e-12), (trace, k)
                else:
                    assert got_row[k] == v, (trace, k)


def test_rounded_fit_from_a_bounded_start_reaches_the_same_optimum(monkeypatch):
    """Above :data:`fitting.MAX_START_GAPS` gaps the search starts from evenly spaced order
    statistics of the histogram, not every gap: the same ranking and likelihood."""
    from servetrace.analysis import fitting

    rng = np.random.default_rng(6)
    steps = np.rint(rng.gamma(0.5, 40.0, 60_000)).astype(np.int64)  # 1 ms ticks, many ties
    full = fitting.fit_rounded(steps, 0.001)
    monkeypatch.setattr(fitting, "MAX_START_GAPS", 2_000)
    thin = fitting.fit_rounded(steps, 0.001)
    assert thin["family"].to_list() == full["family"].to_list()
    np.testing.assert_allclose(thin["loglik"].to_numpy(), full["loglik"].to_numpy(),
                               rtol=1e-7)
    assert full["n"][0] == thin["n"][0] == 60_000


@pytest.fixture(scope="session")
def ray_engine():
    """One local Ray instance for the session (``ray.init(num_cpus=2)``), as in
    tests/test_engine.py; skipped where the ``ray`` extra is not installed."""
    ray = pytest.importorskip("ray")
    from servetrace.analysis.engine import RayEngine

    started = not ray.is_initialized()
    yield RayEngine(num_cpus=2)
    if started:
        ray.shutdown()


def _engines_agree(requests, tmp_path, engine, by):
    """The figures with ``engine`` (3 partitions of rows, each several chunks) are the local
    engine's, exactly: window counts and histograms are integer counts merged in order."""
    lf = _scan(requests.with_columns((pl.col("arrival_s") * 1000).round() / 1000),
               tmp_path / "r.parquet")
    for fn in (out_of_core.arrival_summary, out_of_core.token_summary):
        local = fn(lf, by=by)
        assert fn(lf, by=by, engine=engine, partitions=3).equals(local), fn.__name__


@pytest.mark.parametrize("by", [None, "tenant"])
def test_partitioned_local_engine_equals_one_pass(requests, tmp_path, by):
    from servetrace.analysis.engine import LocalEngine

    _engines_agree(requests, tmp_path, LocalEngine(), by)


@pytest.mark.parametrize("by", [None, "tenant"])
def test_ray_engine_equals_local(requests, tmp_path, ray_engine, by):
    _engines_agree(requests, tmp_path, ray_engine, by)


def test_cli_analyze_on_ray_equals_local(shared, tmp_path, ray_engine):
    store = Store(tmp_path / "store")
    ingest(shared / "mooncake_fast25" / "conversation_trace.jsonl", store=store,
           progress=False)
    base = ["analyze", "mooncake/conversation", "--format", "json", "--store",
            str(store.root)]
    local = CliRunner().invoke(app, base)
    ray = CliRunner().invoke(app, [*base, "--engine", "ray", "--partitions", "3"])
    assert local.exit_code == ray.exit_code == 0, ray.output
    assert json.loads(ray.stdout) == json.loads(local.stdout)
    res = CliRunner().invoke(app, [*base, "--engine", "ray", "--report",
                                   str(tmp_path / "r.html")])
    assert res.exit_code == 1 and "--report and --png read the trace in memory" in res.output
    assert "Traceback" not in res.output
