"""Session and prefix-reuse fidelity (synth/session_fidelity.py and its hooks in
synth/fidelity.py): metrics on ground truth (a trace against itself, a hand-made LRU curve),
the session-naive baseline (turn counts kept, Poisson starts, re-keyed private blocks), the
conversation-level split, and real sessions from ../shared/traces."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import kvcache
from servetrace.loaders import agentic_coding_weka, mooncake
from servetrace.loaders.schema import conform
from servetrace.synth import prefixes
from servetrace.synth import session_fidelity as sf
from servetrace.synth.fidelity import fidelity, holdout, verdict


def _sessions(n: int, span: float, seed: int, *, shared: bool = True) -> pl.DataFrame:
    """``n`` sessions starting uniformly in [0, span), k ∈ 1..5 turns 1 s apart, each turn
    extending the previous turn's blocks (16-token blocks): a shared root block 0 (when
    ``shared``), then blocks private to the session."""
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 6, n)
    sess = np.repeat(np.arange(n), k)
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    turn = np.arange(k.sum()) - first[sess]
    start = rng.uniform(0, span, n)
    blocks = 2 + 2 * turn  # grows by two blocks a turn
    base = 1_000 + 100 * sess
    ids = [([0] if shared else []) + list(range(b, b + m - (1 if shared else 0)))
           for b, m in zip(base.tolist(), blocks.tolist(), strict=True)]
    return conform("requests", pl.DataFrame({
        "trace": "hand", "request_id": [f"{s}/{t}" for s, t in zip(sess, turn, strict=True)],
        "arrival_s": start[sess] + turn, "session": [f"c{s}" for s in sess],
        "turn": turn + 1, "input_tokens": blocks * 16, "output_tokens": 10 + turn,
        "hash_ids": ids})).sort("arrival_s")


@pytest.fixture(scope="module")
def weka(shared):
    files = sorted((shared / "agentic_coding_weka").glob("*.json"))[:40]
    return agentic_coding_weka.load(files, "weka").tables["requests"]


@pytest.fixture(scope="module")
def moon(shared):
    return mooncake.load([shared / "mooncake_fast25/conversation_trace.jsonl"],
                         "mooncake/conversation").tables["requests"]


# ----------------------------------------------------------------------------- metrics


def test_a_trace_scores_zero_against_itself(weka, moon):
    for real, block, scope in ((weka, 64, "session"), (moon, 512, "global")):
        ref = sf.reference(real, block_tokens=block, scope=scope)
        errs = sf.errors(ref, real)
        assert errs and all(v == 0.0 for v in errs.values()), errs
    assert {"hit_curve_max_abs", "turns_ks", "think_gap_wasserstein", "growth_ks",
            "subagents_wasserstein", "subagent_share"} <= set(
        sf.errors(sf.reference(weka, block_tokens=64, scope="session"), weka))
    # Mooncake has no sessions: KV-cache rows only, its block size estimated exactly
    ref = sf.reference(moon)
    assert ref.block_tokens == 512 and ref.scopes == ("global",) and not ref.sessions
    assert ref.figures.inf["global"] == pytest.approx(0.3736, abs=1e-4)  # kvcache docstring


def test_hand_made_lru_curve():
    # two requests reading the same 4 blocks: the second's blocks each have stack distance
    # 3 (the other three blocks), so an LRU of B blocks hits them all iff B ≥ 4
    real = conform("requests", pl.DataFrame({
        "trace": "t", "arrival_s": [0.0, 1.0], "input_tokens": [64, 64], "output_tokens": [1, 1],
        "hash_ids": [[1, 2, 3, 4], [1, 2, 3, 4]]}))
    ref = sf.reference(real, block_tokens=16)
    assert ref.capacities == (16, 32, 48, 64)  # one block to the footprint of 4
    np.testing.assert_allclose(ref.figures.curve, [0, 0, 0, 0.5])
    # the same requests without shared prefixes (every block new): hits nowhere
    fresh = sf.fresh_blocks(real, 16)
    assert fresh["hash_ids"].to_list() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for cand in (fresh, real.with_columns(pl.lit(None, pl.List(pl.Int64)).alias("hash_ids"))):
        errs = sf.errors(ref, cand)
        assert errs["hit_curve_max_abs"] == pytest.approx(0.5)
        assert errs["hit_curve_mean_abs"] == pytest.approx(0.125)
        assert errs["hit_inf_global"] == pytest.approx(0.5)


def test_fresh_blocks_cover_the_input_with_new_ids():
    frame = conform("requests", pl.DataFrame({
        "trace": "t", "arrival_s": [0.0, 1.0, 2.0], "input_tokens": [1, 64, 65],
        "output_tokens": [1, 1, 1]}))
    out = sf.fresh_blocks(frame, 64)
    assert out["hash_ids"].list.len().to_list() == [1, 1, 2]
    ids = out["hash_ids"].explode()
    assert ids.n_unique() == ids.len() == 4


def test_block_size_estimate():
    real = _sessions(30, 100.0, 0)
    assert sf.block_size(real) == 16
    with pytest.raises(ValueError, match="no hash ids"):
        sf.block_size(real.with_columns(pl.lit([], pl.List(pl.Int64)).alias("hash_ids")))


# ----------------------------------------------------------------------------- baseline


def test_session_naive_keeps_whole_sessions_at_poisson_starts():
    real = _sessions(200, 10_000.0, 1)
    span = float(real["arrival_s"].max() - real["arrival_s"].min())
    rate = 200 / span
    duration = 1_000_000.0
    out = sf.session_naive(real, duration, seed=3)
    assert out["arrival_s"].is_sorted() and out["arrival_s"].max() < duration
    per = (out.with_columns(pl.col("session").str.split("#").list.first().alias("orig"))
           .group_by("session").agg(pl.len(), pl.col("orig").first(),
                                    pl.col("arrival_s").min().alias("start"),
                                    pl.col("turn").sort().alias("turns")))
    real_k = real.group_by("session").agg(pl.len().alias("k"))
    whole = per.filter(pl.col("start") < duration - 10).join(
        real_k, left_on="orig", right_on="session")
    assert whole.height > 0.99 * per.height
    assert (whole["len"] == whole["k"]).all()  # every copy has its session's turn count
    assert whole.select(pl.col("turns") == pl.int_ranges(1, pl.col("k") + 1)).to_series().all()
    # starts: Poisson at the real session rate (count and index of dispersion 1)
    starts = np.sort(per["start"].to_numpy())
    expected = rate * duration
    assert abs(len(starts) - expected) < 5 * np.sqrt(expected)
    counts = np.bincount((starts // 1000).astype(int), minlength=1000)
    idc = counts.var(ddof=1) / counts.mean()
    assert 0.8 < idc < 1.2, idc  # ~20 starts per window over 1,000 windows: SD 0.045
    gaps = np.diff(starts)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_session_naive_rekeys_private_blocks_and_keeps_shared_ones():
    real = _sessions(5, 100.0, 2)
    out = sf.session_naive(real, 5_000.0, seed=4)
    copies = out.with_columns(pl.col("session").str.split("#").list.first().alias("orig"))
    twice = copies.group_by("orig").agg(pl.col("session").n_unique()).filter(
        pl.col("session") > 1)["orig"]
    assert twice.len() > 0  # 250 expected copies of 5 sessions: each is drawn many times
    ex = copies.select("session", "orig", "hash_ids").explode("hash_ids")
    # the shared root block 0 is kept in every copy
    assert ex.filter(pl.col("hash_ids") == 0)["session"].n_unique() == out["session"].n_unique()
    # every other block belongs to one copy only
    owners = ex.filter(pl.col("hash_ids") != 0).unique().group_by("hash_ids").len()
    assert (owners["len"] == 1).all()
    # ... and within a copy the chain is intact: each turn extends the previous one
    by_copy = out.sort("session", "turn").with_columns(
        pl.col("hash_ids").shift(1).over("session").alias("prev"))
    chained = by_copy.filter(pl.col("prev").is_not_null()).select(
        (pl.col("hash_ids").list.head(pl.col("prev").list.len()) == pl.col("prev")).all())
    assert chained.item()
    # a copy's reuse is its original's: the infinite-cache ratio within a session matches
    r = kvcache.hit_ratios(real, block_tokens=16, scope="session").block_hit_ratio
    copy_one = out.filter(pl.col("session") == out["session"][0])
    orig = real.filter(pl.col("session") == out["session"][0].split("#")[0])
    assert kvcache.hit_ratios(copy_one, block_tokens=16, scope="session").block_hit_ratio == \
        pytest.approx(kvcache.hit_ratios(orig, block_tokens=16, scope="session")
                      .block_hit_ratio)
    assert 0 < r < 1
    # under session scope, ids are already the session's: they are left as they are
    same = sf.session_naive(real, 5_000.0, seed=4, scope="session")
    assert set(same["hash_ids"].explode().to_list()) == set(real["hash_ids"].explode()
                                                            .to_list())


def test_session_naive_requests_without_session_are_sessions_of_one():
    real = _sessions(50, 100.0, 5).with_columns(pl.lit(None, pl.String).alias("session"))
    out = sf.session_naive(real, 1_000.0, seed=0)
    assert out["session"].null_count() == out.height
    assert out["request_id"].n_unique() == out.height


# ----------------------------------------------------------------------------- split


def test_split_puts_every_session_wholly_on_one_side():
    real = _sessions(400, 1000.0, 6)
    real = pl.concat([real, real.head(50).with_columns(
        pl.lit(None, pl.String).alias("session"),
        pl.format("single{}", pl.int_range(pl.len())).alias("request_id"))])
    a, b = sf.split_sessions(real, seed=1)
    assert a.height + b.height == real.height
    sa, sb = set(a["session"].drop_nulls()), set(b["session"].drop_nulls())
    assert not sa & sb and len(sa | sb) == 400
    assert 0.4 < len(sa) / 400 < 0.6
    assert 10 < a["session"].null_count() < 40 and b["session"].null_count() == \
        50 - a["session"].null_count()
    again, _ = sf.split_sessions(real, seed=1)
    other, _ = sf.split_sessions(real, seed=2)
    assert again.equals(a) and set(other["session"].drop_nulls()) != sa


def test_conversations_of_a_trace_without_sessions_stay_whole(moon):
    # Mooncake has no session column: its conversations are read from the prefix chains,
    # and the split and the session-naive baseline keep each one whole
    conv = prefixes.conversations(moon)
    assert conv.null_count() < moon.height and conv.n_unique() < 0.7 * moon.height
    a, b = sf.split_sessions(moon, seed=3)
    ca, cb = set(prefixes.conversations(a).drop_nulls()), set(
        prefixes.conversations(b).drop_nulls())
    assert a.height + b.height == moon.height and ca and cb and not ca & cb
    out = sf.session_naive(moon, float(moon["arrival_s"].max()), seed=0)
    # a block private to one real conversation is in one copy only: no two copies share it
    owners = (moon.with_columns(conv).explode("hash_ids").drop_nulls("hash_ids")
              .group_by("hash_ids").agg(pl.col("conversation").n_unique().alias("n")))
    private = set(owners.filter(pl.col("n") == 1)["hash_ids"])
    kept = out["hash_ids"].explode().drop_nulls()
    assert not private & set(kept)  # every private id was re-keyed per copy
    assert kept.n_unique() > len(set(moon["hash_ids"].explode().drop_nulls()) - private)


# ----------------------------------------------------------------------------- hooks


def test_fidelity_adds_session_rows_and_the_session_naive_baseline():
    real = _sessions(300, 3_000.0, 7)
    span = float(real["arrival_s"].max())
    runs = [sf.session_naive(real, span, seed=100 + i) for i in range(4)]
    table = fidelity(real, runs, block_tokens=16, scope="global")
    rows = {r["metric"]: r for r in table.iter_rows(named=True)}
    assert "session_naive" in table.columns and "session_naive_sd" in table.columns
    assert rows["hit_curve_max_abs"]["kind"] == "kvcache"
    assert rows["turns_ks"]["kind"] == "sessions"
    assert {"hit_inf_global", "hit_inf_session"} <= set(rows)  # both scopes
    assert rows["hit_inf_global"]["real"] == pytest.approx(
        kvcache.hit_ratios(real, block_tokens=16).token_hit_ratio)
    # Poisson and gamma have no sessions: no think gaps, left out of the verdict
    gap = rows["think_gap_ks"]
    assert gap["poisson"] is None and gap["gamma"] is None and gap["verdict"] is not None
    # ... and no shared prefix: they miss every block
    assert rows["hit_inf_global"]["poisson"] == pytest.approx(rows["hit_inf_global"]["real"])

    def summary(r, k):
        return r[k], r[f"{k}_sd"], 4

    # verdicts: session rows against all three baselines, arrival rows against two, as before
    for metric, against in (("hit_curve_max_abs", ("poisson", "gamma", "session_naive")),
                            ("turns_ks", ("poisson", "gamma", "session_naive")),
                            ("iat_ks", ("poisson", "gamma"))):
        r = rows[metric]
        assert r["verdict"] == verdict(summary(r, "model"), [summary(r, k) for k in against])
    # a trace without sessions or hash ids is scored as before
    plain = real.drop("session", "hash_ids")
    t = fidelity(plain, [r.drop("session", "hash_ids") for r in runs[:2]])
    assert "session_naive" not in t.columns
    assert set(t["kind"]) <= {"arrivals", "lengths", "mix"}


def test_holdout_by_sessions():
    real = _sessions(600, 20_000.0, 8)
    table = holdout(real, runs=2, split="sessions", block_tokens=16)
    kinds = set(table["kind"])
    assert {"kvcache", "sessions", "arrivals"} <= kinds
    assert table.filter(pl.col("metric") == "turns_ks")["session_naive"][0] is not None
    with pytest.raises(ValueError, match="split must be"):
        holdout(real, split="random")


def test_session_naive_keeps_requests_without_blocks():
    real = _sessions(60, 200.0, 9)
    real = real.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0)
                             .then(pl.lit([], pl.List(pl.Int64))).otherwise("hash_ids")
                             .alias("hash_ids"))
    out = sf.session_naive(real, 400.0, seed=1, scope="global")
    assert out.height > 0 and (out["hash_ids"].list.len() == 0).any()
    assert out["hash_ids"].null_count() == real["hash_ids"].null_count() == 0
