"""The workload model's sessions as turn DAGs and their prefix structure (model format 3).

Ground truth: a trace drawn from a known session process (Poisson starts, geometric turns,
exponential think times, one root prefix of R blocks shared by every session, each turn
appending b blocks to the previous turn's) whose infinite-cache hit ratio is known in
closed form. Real traces: WEKA's agentic coding sessions (64-token blocks, ids local to a
session) and the Mooncake conversation trace (512-token blocks), both from ../shared/traces:
a sample at the fitted rate must reproduce their hit ratio and LRU hit-ratio curve, far
closer than a sample with no prefix sharing, and (Mooncake) closer than format 2's chains.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy import stats

from servetrace.analysis import kvcache
from servetrace.loaders import agentic_coding_weka, mooncake
from servetrace.synth.model import WorkloadModel, fit

B = 16          # tokens per block
R = 20          # root blocks shared by all sessions
A = 10          # first turn's own blocks
G = 5           # blocks appended per turn
P_END = 0.4     # a session ends after each turn with this probability: turns ~ geometric
THINK = 10.0    # mean think time (s)
RATE = 0.5      # session starts per second
SPAN = 8000.0


def known_sessions(seed: int = 0) -> pl.DataFrame:
    """Sessions of the process described in the module docstring, fully observed."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum(rng.exponential(1 / RATE, int(RATE * SPAN * 1.2)))
    starts = starts[starts < SPAN]
    turns = rng.geometric(P_END, len(starts))
    sess = np.repeat(np.arange(len(starts)), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    k = np.arange(len(sess)) - first[sess]
    think = np.where(k > 0, rng.exponential(THINK, len(sess)), 0.0)
    cs = np.cumsum(think)
    t = starts[sess] + cs - cs[first][sess]
    blocks = R + A + G * k
    # ids: root 0..R-1, then the session's own chain (a range long enough for its last turn)
    own = blocks - R
    longest = np.zeros(len(starts), np.int64)
    np.maximum.at(longest, sess, own)
    base = R + np.concatenate([[0], np.cumsum(longest)[:-1]])
    hash_ids = [list(range(R)) + list(range(base[s], base[s] + o))
                for s, o in zip(sess.tolist(), own.tolist(), strict=True)]  # test data only
    frame = pl.DataFrame({
        "arrival_s": t, "session": [f"s{s}" for s in sess.tolist()],
        "input_tokens": blocks * B, "output_tokens": rng.integers(50, 500, len(sess)),
        "hash_ids": pl.Series(hash_ids, dtype=pl.List(pl.Int64)),
        "think_s": think})
    return frame.sort("arrival_s")


def expected_hit_ratio() -> float:
    """1 − E[new blocks per session] / E[blocks per session] for K ~ geometric(p): the root's
    R blocks are new once in the whole trace; a session's own A + G (K − 1) are new; it reads
    Σ_k (R + A + G k) = K (R + A) + G K (K − 1) / 2 blocks. E[K] = 1/p, E[K(K−1)] = 2(1−p)/p²."""
    ek, ekk = 1 / P_END, 2 * (1 - P_END) / P_END ** 2
    return 1 - (A + G * (ek - 1)) / ((R + A) * ek + G * ekk / 2)


@pytest.fixture(scope="module")
def known() -> tuple[pl.DataFrame, WorkloadModel]:
    frame = known_sessions()
    return frame, fit(frame, block_tokens=B)


def test_fit_recovers_the_session_process(known):
    frame, model = known
    g = model.groups[0]
    n_sessions = frame["session"].n_unique()
    se = np.sqrt(1 - P_END) / P_END / np.sqrt(n_sessions)
    assert g.sessions.turns.mean() == pytest.approx(1 / P_END, abs=4 * se)
    think = np.concatenate([t.ppf(np.linspace(0, 1, 2001)) for t in g.sessions.think_by_turn])
    assert think.mean() == pytest.approx(THINK, rel=0.1)
    assert g.arrivals.mean_rate == pytest.approx(RATE, rel=0.1)
    p = g.prefix
    assert p.block_tokens == B and p.rounding == "ceil"
    assert p.roots == (R,) and p.root_weights[0] == pytest.approx(1.0)
    for lm in p.growth:  # every turn appends G blocks and keeps all the previous ones
        assert lm.input.values == (G * B,) * len(lm.input.values)
        assert set(lm.output.values) == {0.0}


def test_sample_hit_ratio_matches_the_closed_form(known):
    frame, model = known
    want = expected_hit_ratio()
    real = kvcache.hit_ratios(frame, block_tokens=B).block_hit_ratio
    assert real == pytest.approx(want, abs=0.01)
    s = model.sample(SPAN, 3)
    got = kvcache.hit_ratios(s, block_tokens=B).block_hit_ratio
    assert got == pytest.approx(want, abs=0.015)
    assert (s["hash_ids"].list.len() == s["input_tokens"] // B).all()
    # a later turn's ids extend its previous turn's: turn k's list starts with turn k−1's
    prev = s.sort("arrival_s").with_columns(pl.col("hash_ids").shift(1).over("session")
                                            .alias("p")).drop_nulls("p")
    extends = prev.select((pl.col("hash_ids").list.head(pl.col("p").list.len())
                           == pl.col("p")).mean()).item()
    assert extends > 0.97


def test_rate_scale_doubles_the_session_rate(known):
    _, model = known
    one = model.sample(SPAN, 5)["session"].n_unique()
    two = model.sample(SPAN, 5, rate_scale=2)["session"].n_unique()
    assert two / one == pytest.approx(2.0, abs=4 * np.sqrt(3 / one))


def test_format_2_documents_still_load_and_sample(known):
    _, model = known
    data = json.loads(model.to_json())
    new = {"roots", "root_weights", "growth", "rounding", "scope", "think_by_turn",
           "server_by_turn", "types", "type_mix", "subagents", "together"}

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in new}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    old = strip(data)
    old["version"] = "2"
    v2 = WorkloadModel.from_json(json.dumps(old))
    assert v2.version == "3" and not v2.groups[0].prefix.growth
    s = v2.sample(600, 1)
    assert s.height > 0 and s["turn"].null_count() == s.height  # format 2 had no DAG
    assert WorkloadModel.from_json(model.to_json()) == model


SPAWN, FAN, SUB_TURNS = 0.1, 2, 3


def with_subagents(frame: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    """``frame``'s sessions, each request launching with probability SPAWN FAN sub-agents of
    SUB_TURNS turns each, 1 s apart after their launcher, each on a chain of its own."""
    rng = np.random.default_rng(seed)
    main = frame.with_row_index("i").with_columns(
        pl.format("m{}", pl.col("i")).alias("request_id"))
    main = main.with_columns(pl.col("request_id").shift(1).over("session")
                             .alias("parent_request_id"),
                             pl.lit(None, pl.String).alias("subagent"))
    launch = np.flatnonzero(rng.random(main.height) < SPAWN)
    agent = np.repeat(np.arange(len(launch) * FAN), SUB_TURNS)
    turn = np.tile(np.arange(SUB_TURNS), len(launch) * FAN)
    parent_row = launch[agent // FAN]
    sub = pl.DataFrame({
        "arrival_s": main["arrival_s"].to_numpy()[parent_row] + 1.0 + turn,
        "session": main["session"].gather(parent_row),
        "input_tokens": (8 + 2 * turn) * B,
        "output_tokens": rng.integers(50, 500, len(agent)),
        "request_id": [f"a{a}.{k}" for a, k in zip(agent.tolist(), turn.tolist(), strict=True)],
        "subagent": [f"agent{a}" for a in agent.tolist()],
        "hash_ids": pl.Series([list(range(10 ** 7 + 100 * a, 10 ** 7 + 100 * a + 8 + 2 * k))
                               for a, k in zip(agent.tolist(), turn.tolist(), strict=True)],
                              dtype=pl.List(pl.Int64)),
    }).with_columns(pl.when(pl.Series(turn) == 0)
                    .then(main["request_id"].gather(parent_row))
                    .otherwise(pl.format("a{}.{}", pl.Series(agent), pl.Series(turn) - 1))
                    .alias("parent_request_id"))
    cols = ["arrival_s", "session", "input_tokens", "output_tokens", "request_id",
            "parent_request_id", "subagent", "hash_ids"]
    return pl.concat([main.select(cols), sub.select(cols)]).sort("arrival_s")


def test_fit_recovers_sub_agent_spawning(known):
    frame = with_subagents(known[0])
    model = fit(frame, block_tokens=B)
    sa = model.groups[0].sessions.subagents
    n_main = frame["subagent"].null_count()
    assert sa.spawn_p == pytest.approx(SPAWN, abs=4 * np.sqrt(SPAWN * (1 - SPAWN) / n_main))
    assert sa.fanout.mean() == pytest.approx(FAN) and sa.turns.mean() == pytest.approx(SUB_TURNS)
    assert sa.nested_p == 0 and sa.max_depth == 1
    s = model.sample(SPAN, 2)
    share = s["subagent"].is_not_null().mean()
    want = SPAWN * FAN * SUB_TURNS / (1 + SPAWN * FAN * SUB_TURNS)
    assert share == pytest.approx(want, rel=0.15)
    assert model.mean_rate == pytest.approx(s.height / SPAN, rel=0.1)
    # without prefix blocks the DAG is sampled all the same, lengths from the turn copulas
    bare = fit(frame.drop("hash_ids"))
    s = bare.sample(SPAN, 2)
    assert s["hash_ids"].null_count() == s.height
    assert s["subagent"].is_not_null().mean() == pytest.approx(want, rel=0.15)
    first = s.filter(pl.col("subagent").is_not_null() & (pl.col("turn") == 1))
    assert first["parent_request_id"].null_count() == 0


# ---- real traces ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weka(shared: Path) -> pl.DataFrame:
    files = sorted((shared / "agentic_coding_weka").glob("*.json"))
    return agentic_coding_weka.load(files, "weka").tables["requests"]


@pytest.fixture(scope="module")
def moon(shared: Path) -> pl.DataFrame:
    return mooncake.load([shared / "mooncake_fast25/conversation_trace.jsonl"],
                         "mooncake/conversation").tables["requests"]


def real_curve(real: pl.DataFrame, block: int, scope: str) -> tuple[np.ndarray, pl.Series, float]:
    """Capacities (8, log-spaced up to the footprint), the real LRU curve, real hit ratio."""
    fp = kvcache.footprint_blocks(real, scope=scope)
    caps = (np.geomspace(fp / 64, fp, 8) * block).astype(np.int64)
    curve = kvcache.lru_curve(real, caps, block_tokens=block, scope=scope)["block_hit_ratio"]
    return caps, curve, kvcache.hit_ratios(real, block_tokens=block, scope=scope).block_hit_ratio


def curve_error(real: tuple[np.ndarray, pl.Series, float], synth: pl.DataFrame, block: int,
                scope: str) -> tuple[float, float, float]:
    """(infinite-cache block hit ratio of ``synth``, of the real trace, mean absolute error
    of the LRU curve against the real one, :func:`real_curve`)."""
    caps, a, real_hit = real
    b = kvcache.lru_curve(synth, caps, block_tokens=block, scope=scope)["block_hit_ratio"]
    return (kvcache.hit_ratios(synth, block_tokens=block, scope=scope).block_hit_ratio,
            real_hit, float((a - b).abs().mean()))


def no_sharing(s: pl.DataFrame, block: int) -> pl.DataFrame:
    """The same requests with every block fresh: what independent-prompt benchmarks send."""
    nb = s["hash_ids"].list.len().to_numpy()
    off = np.concatenate([[0], np.cumsum(nb)])
    lists = pa.ListArray.from_arrays(pa.array(off), pa.array(np.arange(int(off[-1]))))
    return s.with_columns(pl.Series("hash_ids", lists, dtype=pl.List(pl.Int64)))


def test_weka_sessions_reuse_like_the_trace(weka):
    model = fit(weka, hash_scope="session")
    g = model.groups[0]
    assert g.prefix.block_tokens == 64 and g.prefix.rounding == "floor"
    assert g.sessions.together and g.sessions.subagents is not None
    s = model.sample(model.span_s, 1)
    assert (s["hash_ids"].list.len() == s["input_tokens"] // 64).all()
    real = real_curve(weka, 64, "session")
    hit, real_hit, mae = curve_error(real, s, 64, "session")
    assert hit == pytest.approx(real_hit, abs=0.02)
    _, _, naive = curve_error(real, no_sharing(s, 64), 64, "session")
    assert mae < 0.09 and mae < naive / 5  # 10 seeds: 0.054 ± 0.006 (format 2: 0.084)
    # turns per session and think times (main agents)
    main_r = weka.filter(pl.col("subagent").is_null())
    main_s = s.filter(pl.col("subagent").is_null())
    turns = stats.ks_2samp(main_r.group_by("session").len()["len"],
                           main_s.group_by("session").len()["len"])
    assert turns.pvalue > 0.01
    think = stats.ks_2samp(main_r.filter(pl.col("turn") > 1)["think_s"].drop_nulls(),
                           main_s.filter(pl.col("turn") > 1)["think_s"])
    assert think.statistic < 0.06
    # request types and sub-agents: the DAG's columns, consistent
    mix_r = (weka["request_type"] == "tool_result").mean()
    assert (s["request_type"] == "tool_result").mean() == pytest.approx(mix_r, abs=0.05)
    sub = s.filter(pl.col("subagent").is_not_null())
    assert 0 < sub.height < 0.1 * s.height
    ids = s.select("request_id", "session", "arrival_s")
    first = sub.filter(pl.col("turn") == 1).join(
        ids, left_on="parent_request_id", right_on="request_id", suffix="_parent")
    assert first.height == sub.filter(pl.col("turn") == 1).height
    assert (first["session"] == first["session_parent"]).all()
    assert (first["arrival_s"] >= first["arrival_s_parent"]).all()
    # fresh ids: no block is shared across sessions (ids are local to a session there)
    per = s.select("session", pl.col("hash_ids")).explode("hash_ids").unique()
    assert per["hash_ids"].is_duplicated().sum() == 0


def test_mooncake_reuse_beats_format_2_and_no_sharing(moon):
    model = fit(moon)
    p = model.groups[0].prefix
    assert p.block_tokens == 512 and p.rounding == "ceil" and p.roots[0] == 1
    old = dataclasses.replace(model, groups=(dataclasses.replace(
        model.groups[0], prefix=dataclasses.replace(p, growth=())),))
    real = real_curve(moon, 512, "global")
    new_err, old_err, naive_err, hits = [], [], [], []
    for seed in range(3):
        s = model.sample(model.span_s, seed)
        assert (s["hash_ids"].list.len() == (s["input_tokens"] + 511) // 512).all()
        hit, real_hit, mae = curve_error(real, s, 512, "global")
        hits.append(hit)
        new_err.append(mae)
        old_err.append(curve_error(real, old.sample(model.span_s, seed), 512, "global")[2])
        naive_err.append(curve_error(real, no_sharing(s, 512), 512, "global")[2])
    assert np.mean(hits) == pytest.approx(real_hit, abs=0.02)
    assert np.mean(new_err) < 0.75 * np.mean(old_err)
    assert np.mean(new_err) < np.mean(naive_err) / 3
