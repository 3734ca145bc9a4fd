"""Sparse serverless fitting (synth.serverless_cells) against the dense grid's statistics.

The dense functions of synth.serverless_counts are the reference: on a generated trace with
timers, Poisson functions under a daily cycle, sparse and busy functions, the statistics from
the non-zero cells must be the dense ones (exactly for counts and gaps, to rounding for sums
of scaled counts), and the fitted model must not depend on the chunk sizes. On per-invocation
times of known processes, the exact-time features (clock timers, alive stretches,
per-function κ, closed loops) are fitted from the cells without a dense grid, chunk by chunk,
and survive the sample's blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from servetrace.synth import serverless as sv
from servetrace.synth import serverless_cells as svx
from servetrace.synth import serverless_counts as svc

W = 60.0


@pytest.fixture(scope="module")
def trace():
    """120 functions over 3 days of minutes: 30 timers (some firings missed, one every
    minute), 90 Poisson functions from 1/500 to 30 per minute under a daily cycle; rows
    shuffled and one cell split in two rows (the builder must add them up)."""
    rng = np.random.default_rng(3)
    n_t = 3 * 1440
    counts = np.zeros((120, n_t), dtype=np.int64)
    for i in range(30):
        p = [1, 2, 5, 10, 60][i % 5]
        fire = np.arange(rng.integers(0, p), n_t, p)
        counts[i, fire[rng.random(len(fire)) > 0.05]] = 1 + (i % 3 == 0) * rng.integers(0, 3)
    rate = np.exp(rng.uniform(np.log(1 / 500), np.log(30), 90))
    day = 1 + 0.6 * np.sin(2 * np.pi * np.arange(n_t) / 1440)
    counts[30:] = rng.poisson(rate[:, None] * day[None, :])
    f, m = np.nonzero(counts)
    c = counts[f, m]
    f, m, c = np.append(f, f[0]), np.append(m, m[0]), np.append(c, 2)  # a repeated cell
    order = rng.permutation(len(f))
    f, m, c = f[order], m[order], c[order]
    table = pl.DataFrame({
        "trace": "sim", "tenant": [f"o{i // 4}" for i in f], "app": [f"a{i // 2}" for i in f],
        "function": [f"f{i}" for i in f], "trigger": ["timer" if i < 30 else "http" for i in f],
        "window_start_s": 600.0 + m * W, "window_s": W, "count": c})
    return table


@pytest.fixture(scope="module")
def model(trace):
    return sv.fit(trace)


def test_cells_equal_the_dense_grid(trace):
    g = svc.grid(trace)
    x = svx.cells(trace)
    assert x.keys.equals(g.keys)
    assert (x.n_t, x.origin_s, x.window_s) == (g.counts.shape[1], g.origin_s, g.window_s)
    assert np.array_equal(x.dense(np.arange(x.n_f)), g.counts)
    assert np.all(np.diff(x.fid * x.n_t + x.m) > 0)
    lazy = svx.cells(trace.lazy())
    assert np.array_equal(lazy.c, x.c) and np.array_equal(lazy.m, x.m)


def test_statistics_equal_the_dense_ones(trace):
    g = svc.grid(trace)
    x = svx.cells(trace)
    dense, sparse = svc.detect_periodic(g), svx.detect_periodic(x)
    assert sparse["periodic"].sum() >= 20
    for col in ("fid", "periodic", "active"):
        assert sparse[col].to_list() == dense[col].to_list(), col
    for col in ("period_s", "window_phase_s", "jitter", "miss"):
        np.testing.assert_allclose(sparse[col].to_numpy(), dense[col].to_numpy(), rtol=1e-12)
    per = dense["periodic"].to_numpy()
    np.testing.assert_array_equal(np.vstack(sparse["batch"].to_list())[per],
                                  np.vstack(dense["batch"].to_list())[per])
    mf = np.flatnonzero(~per)
    periods = svc._harmonic_periods(x.n_t * W)
    assert periods
    counts = g.counts[mf].astype(np.float64)
    coef = svc.fit_harmonics(counts, W, 0.0, periods)
    np.testing.assert_array_equal(svx.fit_harmonics(x, mf, periods), coef)
    counts /= svc._profile(coef, (np.arange(x.n_t) + 0.5) * W, periods)
    zero_p, table = svc._count_tables(counts)
    v = svx.scaled_counts(x, mf, coef, periods)
    np.testing.assert_allclose(x.dense(mf, values=np.nan_to_num(v)), counts, rtol=1e-12)
    z2, t2 = svx.count_tables(x, mf, v)
    np.testing.assert_array_equal(z2, zero_p)
    np.testing.assert_allclose(t2, table, rtol=1e-12)
    rows = np.zeros(x.n_f, dtype=bool)
    rows[mf[zero_p >= 0.5]] = True
    assert rows.sum() >= 10
    np.testing.assert_array_equal(svx.gap_tables(x, rows), svc._gap_tables(g.counts, rows))


def test_fit_does_not_depend_on_chunks(trace, model, monkeypatch):
    whole = model
    assert len(svx.function_chunks(svx.cells(trace), 5000)) > 10
    monkeypatch.setattr(svx, "CHUNK_CELLS", 5000)
    monkeypatch.setattr(svx, "SORT_CELLS", 64)
    monkeypatch.setattr(svx, "PROFILE_CELLS", 1)
    chunked = sv.fit(trace)
    assert chunked.to_json() == whole.to_json()
    kinds = np.array(whole.functions.kind)
    timer = np.array([int(f[1:]) < 30 for f in whole.functions.function])
    assert (kinds[timer] == "periodic").mean() > 0.8 and (kinds[~timer] == "modulated").all()


def test_fit_equals_the_dense_path(trace, model):
    """The model from the cells against the dense statistics assembled the way fit did before
    (same kinds, tables and exponents up to summation order)."""
    g = svc.grid(trace)
    det = svc.detect_periodic(g)
    per = det["periodic"].to_numpy()
    assert [k == "periodic" for k in model.functions.kind] == per.tolist()
    mf = np.flatnonzero(~per)
    x = g.counts[mf].astype(np.float64)
    periods = svc._harmonic_periods(x.shape[1] * W)
    coef = svc.fit_harmonics(x, W, 0.0, periods)
    x /= svc._profile(coef, (np.arange(x.shape[1]) + 0.5) * W, periods)
    zero_p, table = svc._count_tables(x)
    sparse = (zero_p >= sv.SPARSE) & ((x > 0).sum(axis=1) >= 3)
    busy = ((x > 0).sum(axis=1) >= sv.MIN_ACTIVE_H) & ~sparse
    hurst = np.full(len(mf), 0.5)
    hurst[busy] = svc.calibrate_hurst(x[busy], zero_p[busy], table[busy])
    np.testing.assert_allclose(model.modulated.table, table.ravel(), rtol=1e-12)
    np.testing.assert_array_equal(model.modulated.zero_p, zero_p)
    np.testing.assert_array_equal(model.modulated.hurst, hurst)
    assert model.n_invocations == int(g.counts.sum())


def test_invocations_input_and_errors():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 7200, 3000))
    f = rng.integers(0, 3, 3000)
    inv = pl.DataFrame({"trace": "x", "function": [f"f{i}" for i in f], "arrival_s": t + 30})
    g, x = svc.grid(inv), svx.cells(inv)
    assert np.array_equal(x.dense(np.arange(x.n_f)), g.counts)
    assert x.times.equals(g.times)
    with pytest.raises(ValueError, match="mixes window sizes"):
        svx.cells(pl.DataFrame({"function": ["a", "b"], "window_start_s": [0.0, 60.0],
                                "window_s": [60.0, 30.0], "count": [1, 2]}))
    with pytest.raises(ValueError, match="no rows"):
        svx.cells(pl.DataFrame({"function": ["a"], "window_start_s": [0.0],
                                "window_s": [60.0], "count": [0]}))
    assert dataclasses.replace(x).n_f == 3


def test_renewal_draws_whole_cycles():
    """Ground truth: a cycle of the stratified renewal uses each of the 32 gap quantiles once,
    so it spans exactly their sum S and holds 32 active windows: n_t windows hold 32·n_t/S
    of them, within one cycle, and every gap between them is a table value."""
    rng = np.random.default_rng(2)
    gaps = np.sort(rng.integers(1, 90, (50, svc.GAP_SIZE)), axis=1).astype(np.float64)
    gaps[0] = 1.0  # active in every window
    gaps[1, -1] = 20_000.0  # one gap longer than the sample
    table = np.ones((50, svc.TABLE_SIZE))
    n_t = 20_160
    r, w, c = svc._renewal_cells(gaps, table, n_t, svc._rng(0, 1))
    assert ((w >= 0) & (w < n_t)).all() and (c == 1).all()
    got = np.bincount(r, minlength=50)
    expect = svc.GAP_SIZE * n_t / gaps.sum(axis=1)
    assert (np.abs(got - expect) <= svc.GAP_SIZE + 1).all()
    assert got[0] == n_t
    for i in (2, 17, 49):
        step = np.diff(w[r == i]).astype(np.float64)
        assert np.isin(step, gaps[i]).all()


def test_sample_blocks_bounded_sorted_and_same_model(trace, model, monkeypatch):
    """Blocks concatenate to the sample, each sorted and after the previous; with blocks of a
    few thousand invocations the per-function rates stay the fitted ones (ground truth: the
    Poisson functions' rates, whose daily cycle averages out over whole days)."""
    day = 86400.0
    whole = model.sample(2 * day, seed=1)
    assert pl.concat(list(sv.sample_blocks(model, 2 * day, 1))).equals(whole)
    monkeypatch.setattr(sv, "BLOCK_INVOCATIONS", 5000)
    monkeypatch.setattr(sv, "TIMER_CHUNK", 7)
    blocks = list(sv.sample_blocks(model, 2 * day, 1))
    assert len(blocks) > 20
    last = -1.0
    for b in blocks:
        t = b["arrival_s"].to_numpy()
        assert (np.diff(t) >= 0).all() and (t.size == 0 or t[0] >= last)
        last = t[-1] if t.size else last
    s = pl.concat(blocks)
    assert s.height == pytest.approx(whole.height, rel=0.02)
    per_day = trace.group_by("function").agg(pl.col("count").sum() / 3)
    got = (s.group_by(pl.col("function").cast(pl.String)).agg((pl.len() / 2).alias("n"))
           .join(per_day, on="function"))
    busy = got.filter(pl.col("count") > 2000)
    assert busy.height >= 20
    err = (busy["n"] - busy["count"]).abs() / busy["count"].sqrt()
    assert (err < 6).all()
    assert s.equals(pl.concat(list(sv.sample_blocks(model, 2 * day, 1))))


# ------------------------------------------------ exact-time features on the sparse path

SPAN = 4 * 3600.0


def _exact_table() -> pl.DataFrame:
    """Per-invocation times over 4 hours: five clock timers (60 … 600 s, 0.01 s past their
    period, N(0, 20 ms) scheduler jitter, 10 % of firings missed) and a sixth alive for the
    first quarter only; a closed loop (lognormal durations, median 30 s, σ 0.15, the next
    start 20 … 100 ms after the previous end); two functions of four Dirichlet(κ) spaced
    invocations a minute (κ 0.2 and 5); 12 Poisson functions at 0.5 … 6 per minute."""
    rng = np.random.default_rng(17)
    ts, fs, ds = [], [], []

    def add(t, d=None):
        ts.append(t)
        fs.append(np.full(len(t), len(fs)))
        ds.append(np.exp(rng.normal(np.log(0.2), 0.5, len(t))) if d is None else d)

    for p in (60.0, 120.0, 120.0, 300.0, 600.0):
        k = np.arange(int(SPAN // p))
        t = 0.01 + k * p + rng.normal(0, 0.02, len(k))
        add(np.sort(t[(rng.random(len(k)) >= 0.1) & (t >= 0) & (t < SPAN)]))
    add(0.5 + np.arange(12) * 300.0)  # alive 3,600 s of 14,400
    d = np.exp(np.log(30.0) + 0.15 * rng.standard_normal(600))
    t = np.concatenate([[0.0], np.cumsum(d + rng.uniform(0.02, 0.1, 600))[:-1]])
    add(t[t < SPAN], d[t < SPAN])
    for kappa in (0.2, 5.0):
        g = rng.gamma(kappa, 1.0, (240, 5))
        pos = np.cumsum(g, axis=1)[:, :4] / g.sum(axis=1, keepdims=True)
        add(((np.arange(240)[:, None] + pos) * W).ravel())
    for r in np.geomspace(0.5, 6, 12) / W:
        add(np.sort(rng.random(rng.poisson(r * SPAN)) * SPAN))
    f = np.concatenate(fs)
    return pl.DataFrame({"trace": "sim", "arrival_s": np.concatenate(ts),
                         "app": [f"a{i}" for i in f], "function": [f"f{i:02d}" for i in f],
                         "duration_s": np.concatenate(ds)}).sort("arrival_s")


@pytest.fixture(scope="module")
def exact_trace():
    return _exact_table()


@pytest.fixture(scope="module")
def exact_model(exact_trace):
    return sv.fit(exact_trace)


def test_exact_features_from_cells_do_not_depend_on_chunks(exact_trace, exact_model,
                                                           monkeypatch):
    """The exact-time features (clock timers with their offsets, the part-time timer's alive
    share, per-function κ, the closed loop) fitted without any dense functions × windows grid,
    the same bits in chunks of a few functions, and each near its generating value."""
    from servetrace.synth import serverless_exact as sx

    whole = exact_model
    fn = list(whole.functions.function)
    kind = dict(zip(fn, whole.functions.kind, strict=True))
    assert [kind[f"f{i:02d}"] for i in range(7)] == ["periodic"] * 6 + ["chained"]
    p = whole.periodic
    row = {fn[i]: j for j, i in enumerate(p.index)}
    assert p.alive[row["f05"]] == pytest.approx(0.25, abs=0.01)
    assert p.alive[row["f00"]] == 1.0 and p.period_s[row["f00"]] == pytest.approx(60, abs=1e-3)
    off = np.asarray(p.offset_s).reshape(len(p.index), -1)[row["f00"]]
    assert np.abs(off[2:-2]).max() < 0.1  # the 20 ms jitter, not a window
    m = whole.modulated
    own = {fn[i]: k for i, k in zip(m.index, m.kappa, strict=True)}
    assert own["f07"] == pytest.approx(0.2, rel=0.25) and own["f08"] == pytest.approx(5, rel=0.25)

    def no_grid(*a, **k):
        raise AssertionError("a dense functions x windows grid was built")

    monkeypatch.setattr(svc, "grid", no_grid)
    monkeypatch.setattr(svx.Cells, "to_grid", no_grid)
    monkeypatch.setattr(svx, "CHUNK_CELLS", 300)
    monkeypatch.setattr(svx, "SORT_CELLS", 64)
    monkeypatch.setattr(svx, "PROFILE_CELLS", 1)
    monkeypatch.setattr(sx, "LIFETIME_CELLS", 300)
    assert len(svx.function_chunks(svx.cells(exact_trace))) > 5
    assert sv.fit(exact_trace).to_json() == whole.to_json()


def test_sample_blocks_carry_loops_timers_and_kappa(exact_model, monkeypatch):
    """In blocks of ~500 invocations: each block sorted and after the previous; the closed
    loop's invocations are the one-block sample's (its chains do not depend on the blocks)
    and keep their own durations (every idle time inside the generating 20 … 100 ms); the
    part-time timer fires one run of 12 firings 300 s apart; the 60 s clock timer fires on
    the clock; the per-function κ survives the blocks (likelihood refit on the sample)."""
    from servetrace.synth import serverless_exact as sx

    one = exact_model.sample(SPAN, seed=4)
    assert next(iter(sv.sample_blocks(exact_model, SPAN, 4))).height == one.height
    monkeypatch.setattr(sv, "BLOCK_INVOCATIONS", 500)
    blocks = list(sv.sample_blocks(exact_model, SPAN, 4))
    assert len(blocks) > 15
    last = -1.0
    for b in blocks:
        t = b["arrival_s"].to_numpy()
        assert (np.diff(t) >= 0).all() and (t.size == 0 or t[0] >= last)
        last = t[-1] if t.size else last
    s = pl.concat(blocks)

    def rows(frame, name):
        return frame.filter(pl.col("function") == name)

    loop, loop1 = rows(s, "f06"), rows(one, "f06")
    assert loop.select("arrival_s", "duration_s").equals(loop1.select("arrival_s", "duration_s"))
    t, d = loop["arrival_s"].to_numpy(), loop["duration_s"].to_numpy()
    idle = t[1:] - (t[:-1] + d[:-1])
    assert idle.size > 400 and idle.min() >= 0.02 - 1e-6 and idle.max() <= 0.1 + 1e-6
    part = np.diff(rows(s, "f05")["arrival_s"].to_numpy())
    assert abs(len(part) - 11) <= 1 and part == pytest.approx(np.full(len(part), 300), abs=0.5)
    clock = rows(s, "f00")["arrival_s"].to_numpy()
    assert (np.abs((clock - 0.01 + 30) % 60 - 30) < 0.1).mean() > 0.9
    x = svx.cells(s.with_columns(pl.col("function").cast(pl.String)))
    got = dict(zip(x.keys["function"].to_list(), sx.fit_kappa(x, np.nan), strict=True))
    assert got["f07"] < 0.3 and got["f08"] > 3.5
