"""Out-of-core fitting (issue 19, item 2): ``fit`` of a LazyFrame from aggregates.

Ground truth: the in-memory fit of the same rows (the model must be the same, number for
number: the lazy path holds only the arrival times and reads lengths and labels as
``GROUP BY`` histograms), :meth:`Table.empirical` of the raw values, SciPy's Spearman ρ on
the expanded sample, and the driver grid's former per-memory computation
(:func:`expected_block_vars`).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from known_processes import mmpp_arrivals
from scipy import stats

from servetrace.synth.driver import _block_vars, _grid_block_vars, expected_block_vars
from servetrace.synth.lengths import _spearman_from_pairs, lengths_from_pairs, pair_counts
from servetrace.synth.model import fit
from servetrace.synth.parameters import Table


def _lengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    inp = rng.zipf(1.6, n) % 4000 + 1  # heavy tail, many ties: token counts
    out = inp // 4 + rng.integers(0, 80, n)
    return inp, out * (rng.random(n) > 0.03)


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> tuple[pl.DataFrame, list[str]]:
    """~225k requests of an MMPP (so the modulation and its driver are fitted), with a model
    mix and failures, written as two Parquet files as a streamed ingest writes them."""
    t = mmpp_arrivals(20_000, 3)
    rng = np.random.default_rng(0)
    inp, out = _lengths(len(t), rng)
    u = rng.random(len(t))
    frame = pl.DataFrame({
        "trace": "mmpp", "arrival_s": t, "input_tokens": inp, "output_tokens": out,
        "model": np.where(u < 0.7, "a", np.where(u < 0.9998, "b", "rare")),
        "failed": out == 0})
    folder = tmp_path_factory.mktemp("ooc")
    half = frame.height // 2
    paths = [str(folder / "part-0.parquet"), str(folder / "part-1.parquet")]
    frame.head(half).write_parquet(paths[0], row_group_size=50_000)
    frame.tail(frame.height - half).write_parquet(paths[1], row_group_size=50_000)
    return frame, paths


def test_table_from_counts_is_table_empirical():
    rng = np.random.default_rng(1)
    x = rng.zipf(1.8, 5_000) % 300
    values, counts = np.unique(x, return_counts=True)
    for size in (64, 4_999, 5_000, 1 << 15):  # quantiles past size, the sample below it
        assert Table.from_counts(values, counts, integer=True, size=size) == \
            Table.empirical(x, integer=True, size=size)
    with pytest.raises(ValueError, match="ascending"):
        Table.from_counts(values[::-1], counts[::-1])


def test_spearman_from_the_histogram_is_scipys_on_the_sample():
    rng = np.random.default_rng(2)
    for n in (5, 200, 50_000):
        inp, out = _lengths(n, rng)
        pairs = pair_counts(inp, out).sort("input_tokens", "output_tokens")
        got = _spearman_from_pairs(pairs["input_tokens"].to_numpy().astype(float),
                                   pairs["output_tokens"].to_numpy().astype(float),
                                   pairs["len"].to_numpy().astype(float))
        assert got == pytest.approx(stats.spearmanr(inp, out).statistic, abs=1e-12)
    lm = lengths_from_pairs(pair_counts(inp, out))
    assert lm.input == Table.empirical(inp, integer=True)
    assert lm.output == Table.empirical(out, integer=True)
    assert lm.rho == pytest.approx(2 * np.sin(np.pi * lm.spearman / 6))


def test_driver_grid_is_the_per_memory_computation():
    rng = np.random.default_rng(3)
    for n in (9, 1_000, 5_003):
        ks, _ = _block_vars(rng.standard_normal(n))
        memories = [1 << i for i in range(int(np.log2(2 * n)) + 1)]
        for h in (0.05, 0.5, 0.93):
            ref = np.array([expected_block_vars(h, m, n, ks) for m in memories])
            assert np.array_equal(_grid_block_vars(h, memories, n, ks), ref, equal_nan=True)


@pytest.mark.parametrize("by", [None, "model"])
def test_fit_of_a_scan_is_the_in_memory_model(trace, by):
    frame, paths = trace
    lazy = fit(pl.scan_parquet(paths), by=by)
    eager = fit(frame, by=by)
    assert lazy.to_json() == eager.to_json()
    a = lazy.groups[0].arrivals
    assert a.modulation.values != (1.0,) and (a.hurst, a.memory) != (0.5, 1)  # driver fitted
    if by == "model":
        assert [g.key for g in lazy.groups] == ["a", "b", None]  # "rare" (~45 rows) pooled


def test_fit_of_a_scan_checks_as_the_in_memory_fit(trace):
    frame, _ = trace
    bad = frame.head(100).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("input_tokens"))
        .alias("input_tokens"))
    for f in (bad, bad.lazy()):
        with pytest.raises(ValueError, match="'input_tokens' has nulls"):
            fit(f)
    with pytest.raises(ValueError, match="lacks column 'output_tokens'"):
        fit(frame.lazy().drop("output_tokens"))
    with pytest.raises(ValueError, match="at least 20"):
        fit(frame.head(5).lazy())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit(frame.head(2_000).lazy(), by="tenant")
    assert any("null in every row" in str(w.message) for w in seen)


def test_a_scan_with_sessions_is_fitted_from_its_rows(trace):
    frame, _ = trace
    part = frame.head(3_000).with_columns(
        ("s" + (pl.int_range(pl.len()) // 3).cast(pl.String)).alias("session"))
    assert fit(part.lazy()).to_json() == fit(part).to_json()
    assert fit(part.lazy()).groups[0].sessions is not None


def test_chunked_passes_over_the_times_are_the_whole_array_passes(monkeypatch):
    """Window counts, rescaled gaps and the harmonic clock run in chunks of
    ``T_CHUNK`` times; chunk edges (a gap across two chunks, a window split by them) must not
    show: the fit with chunks of 1,000 times is the fit with one chunk."""
    from servetrace.synth import arrivals

    t = mmpp_arrivals(3 * 86_400, 5, rates=(0.6, 0.1), sojourn=900.0)  # harmonics: 3 days
    assert len(t) > 20_000
    whole = arrivals.fit_arrivals(t, seed=1)
    monkeypatch.setattr(arrivals, "T_CHUNK", 1_000)
    assert arrivals.fit_arrivals(t, seed=1) == whole
    assert whole.harmonics  # the clock was chunked too
    rng = np.random.default_rng(4)
    rates = rng.random(900) + 0.5
    tt = np.sort(rng.random(5_500) * 7.0 * 1_000)  # some past the 900 windows: left out
    edges = np.concatenate([[0.0], np.cumsum(rates * 7.0)])
    inside = tt[tt < 900 * 7.0]
    w = (inside // 7.0).astype(np.int64)
    whole_gaps = np.diff(edges[w] + rates[w] * (inside - w * 7.0))  # Λ(t) in one pass
    assert np.array_equal(arrivals._rescaled_gaps(tt, rates, 7.0), whole_gaps)
    x = np.sort(np.random.default_rng(6).random(10_000) * 100)
    assert np.array_equal(arrivals._bin_counts(x, 3.0, 30, clip=30),
                          np.bincount(np.minimum((x // 3).astype(np.int64), 30),
                                      minlength=31)[:30])


def test_the_tick_of_sorted_times_is_that_of_shuffled_ones():
    from servetrace.synth.arrivals import _detect_tick

    rng = np.random.default_rng(7)
    for t in (np.floor(mmpp_arrivals(2_000, 8)),                      # whole seconds, ties
              np.round(mmpp_arrivals(500, 9) * 1000) / 1000,          # milliseconds
              3.0 * np.arange(500) + rng.uniform(-0.003, 0.003, 500),  # 3 s ticks, jitter
              mmpp_arrivals(500, 10)):                                 # continuous
        t = np.sort(t)
        assert _detect_tick(t) == _detect_tick(rng.permutation(t))
    assert _detect_tick(np.sort(np.floor(mmpp_arrivals(2_000, 8)))) == 1.0
