"""Prefix (KV-cache) reuse: hand-worked traces, a plain OrderedDict LRU as the oracle, and the
Mooncake conversation trace's known ratio."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import kvcache as kv
from servetrace.loaders import mooncake

INF = kv.INF


def _frame(reqs: list[list[int]], tokens: list[int] | None = None, **cols) -> pl.DataFrame:
    data = {"hash_ids": reqs, "input_tokens": tokens or [16 * len(r) for r in reqs], **cols}
    return pl.DataFrame(data).with_columns(pl.col("hash_ids").cast(pl.List(pl.Int64)))


def _lru(reqs: list[list[int]], blocks: int) -> list[int]:
    """The model written plainly: blocks touched in prompt order, each moved to the MRU end or
    inserted (evicting the LRU block beyond ``blocks``); cached prefix = hits before the first
    miss."""
    cache: OrderedDict[int, None] = OrderedDict()
    out = []
    for ids in reqs:
        run, cached = True, 0
        for h in ids:
            if h in cache:
                cache.move_to_end(h)
                cached += run
            else:
                run = False
                cache[h] = None
                if len(cache) > blocks:
                    cache.popitem(last=False)
        out.append(cached)
    return out


def _stack(keys: list[int]) -> list[int]:
    stack: list[int] = []
    out = []
    for k in keys:
        if k in stack:
            i = stack.index(k)
            out.append(len(stack) - 1 - i)
            stack.pop(i)
        else:
            out.append(INF)
        stack.append(k)
    return out


def _random_trace(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Prompts that extend, truncate or repeat earlier prompts, plus fresh ones."""
    reqs: list[list[int]] = []
    for _ in range(n):
        if reqs and rng.random() < 0.6:
            base = reqs[rng.integers(len(reqs))]
            keep = base[: rng.integers(0, len(base) + 1)]
            reqs.append(keep + [int(x) for x in rng.integers(0, 40, rng.integers(0, 5))])
        else:
            reqs.append([int(x) for x in rng.integers(0, 40, rng.integers(0, 8))])
    return reqs


# --------------------------------------------------------------------------- hand-worked

HAND = [[1, 2, 3], [1, 2, 4], [5, 2, 3], [1, 2, 3, 4]]
HAND_TOKENS = [40, 48, 48, 60]


def test_hand_worked_infinite_cache():
    r = kv.prefix_reuse(_frame(HAND, HAND_TOKENS), block_tokens=16)
    assert r["seen_blocks"].to_list() == [0, 2, 2, 4]
    assert r["cached_blocks"].to_list() == [0, 2, 0, 4]       # [5, 2, 3]: 5 is new
    assert r["cached_tokens"].to_list() == [0, 32, 0, 60]     # capped at input_tokens
    h = kv.hit_ratios(_frame(HAND, HAND_TOKENS), block_tokens=16)
    assert h.block_seen_ratio == pytest.approx(8 / 13)
    assert h.block_hit_ratio == pytest.approx(6 / 13)
    assert h.token_hit_ratio == pytest.approx(92 / 196)
    assert h.request_hit_ratio == pytest.approx(2 / 4)
    assert h.mean_request_token_hit_ratio == pytest.approx((32 / 48 + 1.0) / 4)


def test_hand_worked_stack_distances_and_lru():
    flat = [k for r in HAND for k in r]
    assert kv.stack_distances(np.array(flat)).tolist() == [
        INF, INF, INF, 2, 2, INF, INF, 2, 4, 4, 2, 2, 4]
    df = _frame(HAND, HAND_TOKENS)
    three = kv.prefix_reuse(df, block_tokens=16, capacity_tokens=48)
    five = kv.prefix_reuse(df, block_tokens=16, capacity_tokens=5 * 16 + 15)
    assert three["cached_blocks"].to_list() == [0, 2, 0, 0]
    assert five["cached_blocks"].to_list() == [0, 2, 0, 4]
    curve = kv.lru_curve(df, [0, 48, 95, 10_000], block_tokens=16)
    assert curve["capacity_blocks"].to_list() == [0, 3, 5, 625]
    assert curve["block_hit_ratio"].to_list() == pytest.approx([0, 2 / 13, 6 / 13, 6 / 13])
    assert curve["token_hit_ratio"].to_list() == pytest.approx([0, 32 / 196, 92 / 196,
                                                                92 / 196])


def test_arrival_order_not_row_order():
    df = _frame([[1, 2], [1, 2, 3]], arrival_s=[5.0, 1.0])
    r = kv.prefix_reuse(df, block_tokens=16)
    assert r["arrival_s"].to_list() == [1.0, 5.0]
    assert r["cached_blocks"].to_list() == [0, 2]


# --------------------------------------------------------------------------- oracles


def test_stack_distances_match_a_plain_stack(monkeypatch):
    rng = np.random.default_rng(3)
    for trial in range(150):
        keys = rng.integers(0, rng.integers(1, 15), rng.integers(1, 60))
        if trial % 3 == 0:        # long re-read runs, the merged-link path
            keys = np.concatenate([keys, keys[: rng.integers(0, len(keys) + 1)], keys])
        want = _stack(keys.tolist())
        assert kv.stack_distances(keys).tolist() == want
        monkeypatch.setattr(kv, "_CHUNK", int(rng.integers(1, 8)))   # chunk seams
        assert kv.stack_distances(keys).tolist() == want
        monkeypatch.setattr(kv, "_CHUNK", 1 << 24)


def test_sparse_and_negative_ids():
    keys = np.array([10**15, -7, 10**15, 3, -7, 10**15])
    assert kv.stack_distances(keys).tolist() == _stack(keys.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lru_matches_ordered_dict(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    caps_blocks = [0, 1, 2, 3, 5, 8, 13, 40, 1000]
    for trial in range(40):
        reqs = _random_trace(rng, int(rng.integers(1, 40)))
        df = _frame(reqs)
        if trial % 2:
            monkeypatch.setattr(kv, "_CHUNK", int(rng.integers(1, 20)))
        curve = kv.lru_curve(df, [16 * b for b in caps_blocks], block_tokens=16)
        total = sum(len(r) for r in reqs)
        for b, got in zip(caps_blocks, curve["block_hit_ratio"], strict=True):
            want = _lru(reqs, b)
            per = kv.prefix_reuse(df, block_tokens=16, capacity_tokens=16 * b)
            assert per["cached_blocks"].to_list() == want
            if total:
                assert got == pytest.approx(sum(want) / total, abs=1e-12)
        monkeypatch.setattr(kv, "_CHUNK", 1 << 24)


def test_capacity_beyond_footprint_is_the_infinite_cache():
    rng = np.random.default_rng(9)
    df = _frame(_random_trace(rng, 200))
    inf = kv.hit_ratios(df, block_tokens=16)
    curve = kv.lru_curve(df, [16 * 10**6], block_tokens=16)
    assert curve["block_hit_ratio"][0] == pytest.approx(inf.block_hit_ratio)
    assert curve["token_hit_ratio"][0] == pytest.approx(inf.token_hit_ratio)


# --------------------------------------------------------------------------- scope, turns, chunks


def test_session_scope_keys_blocks_by_session():
    df = _frame([[0, 1], [0, 1], [0, 1, 2]], session=["a", "b", "a"])
    assert kv.prefix_reuse(df, block_tokens=16)["cached_blocks"].to_list() == [0, 2, 2]
    local = kv.prefix_reuse(df, block_tokens=16, scope="session")
    assert local["cached_blocks"].to_list() == [0, 0, 2]
    curve = kv.lru_curve(df, [48, 64], block_tokens=16, scope="session")   # d = 3, 3
    assert curve["block_hit_ratio"].to_list() == pytest.approx([0, 2 / 7])


def test_hit_ratio_by_turn():
    df = _frame([[1, 2], [1, 2, 3], [7], [1, 2, 3, 4]], turn=[1, 2, 1, 3])
    t = kv.hit_ratio_by_turn(df, block_tokens=16)
    assert t["turn"].to_list() == [1, 2, 3]
    assert t["requests"].to_list() == [2, 1, 1]
    assert t["block_hit_ratio"].to_list() == pytest.approx([0, 2 / 3, 3 / 4])
    with pytest.raises(ValueError, match="turn"):
        kv.hit_ratio_by_turn(_frame([[1]]), block_tokens=16)


def test_rechunk_names_tuples_of_fine_ids():
    df = _frame([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 7], []])
    out = kv.rechunk(df, 2)
    assert out["hash_ids"].to_list() == [[0, 1, 2], [0, 1, 3], [0, 4], []]
    assert kv.rechunk(df, 1)["hash_ids"].to_list() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 5],
                                                       [0, 1, 6], []]
    coarse = kv.prefix_reuse(out, block_tokens=32)
    assert coarse["cached_blocks"].to_list() == [0, 2, 1, 0]


def test_bad_arguments():
    df = _frame([[1]])
    with pytest.raises(ValueError, match="block_tokens"):
        kv.prefix_reuse(df, block_tokens=0)
    with pytest.raises(ValueError, match="scope"):
        kv.prefix_reuse(df, block_tokens=16, scope="tenant")
    with pytest.raises(ValueError, match="session"):
        kv.prefix_reuse(df, block_tokens=16, scope="session")
    with pytest.raises(ValueError, match="capacity"):
        kv.lru_curve(df, [-1], block_tokens=16)
    with pytest.raises(ValueError, match="factor"):
        kv.rechunk(df, 0)
    with pytest.raises(ValueError, match="hash_ids"):
        kv.prefix_reuse(pl.DataFrame({"x": [1]}), block_tokens=16)


def test_empty_trace():
    df = _frame([[], []])
    assert kv.prefix_reuse(df, block_tokens=16)["cached_blocks"].to_list() == [0, 0]
    curve = kv.lru_curve(df, [16], block_tokens=16)
    assert np.isnan(curve["block_hit_ratio"][0])


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def conversation(shared: Path) -> pl.DataFrame:
    path = shared / "mooncake_fast25" / "conversation_trace.jsonl"
    return mooncake.load([path], "t").tables["requests"]


def test_mooncake_conversation_ratios(conversation):
    assert conversation.height == 12_031
    assert round(conversation["input_tokens"].mean()) == 12_035
    assert round(conversation["output_tokens"].mean()) == 343
    h = kv.hit_ratios(conversation, block_tokens=512)
    assert h.input_blocks == 288_500
    assert round(h.block_seen_ratio, 4) == 0.3664
    assert round(h.block_hit_ratio, 4) == 0.3664       # chained ids: seen implies prefix seen
    assert round(h.token_hit_ratio, 4) == 0.3736
    assert round(h.mean_request_token_hit_ratio, 4) == 0.4094   # the paper's "40%"


def test_mooncake_lru_curve_rises_to_the_infinite_cache(conversation):
    caps = [512 * b for b in (0, 1_000, 10_000, 100_000, 182_790)]
    curve = kv.lru_curve(conversation, caps, block_tokens=512)
    hb = curve["block_hit_ratio"].to_numpy()
    assert hb[0] == 0 and np.all(np.diff(hb) >= 0)
    assert round(hb[-1], 4) == 0.3664      # 182,790 distinct blocks: nothing is ever evicted
    small = conversation.head(400)
    reqs = small["hash_ids"].to_list()
    got = kv.lru_curve(small, [512 * b for b in (50, 500, 2000)], block_tokens=512)
    for b, hit in zip((50, 500, 2000), got["block_hit_ratio"], strict=True):
        assert hit == pytest.approx(sum(_lru(reqs, b)) / sum(map(len, reqs)), abs=1e-12)


def test_null_and_empty_lists_have_no_blocks():
    df = pl.DataFrame({"hash_ids": [[1, 2], [], None, [1, 2, 3]]},
                      schema={"hash_ids": pl.List(pl.Int64)})
    r = kv.prefix_reuse(df.slice(0), block_tokens=16)
    assert r["input_blocks"].to_list() == [2, 0, 0, 3]
    assert r["cached_blocks"].to_list() == [0, 0, 0, 2]
    assert r["cached_tokens"].to_list() == [0, 0, 0, 32]   # no input_tokens: full blocks
    with pytest.raises(ValueError, match="null ids"):
        kv.prefix_reuse(pl.DataFrame({"hash_ids": [[1, None]]}), block_tokens=16)


def test_session_scope_matches_ordered_dict_on_pairs():
    rng = np.random.default_rng(5)
    reqs = _random_trace(rng, 60)
    sess = [str(x) for x in rng.integers(0, 4, len(reqs))]
    df = _frame(reqs, session=sess)
    keyed = [[hash((s, h)) for h in r] for r, s in zip(reqs, sess, strict=True)]
    for b in (2, 7, 30):
        got = kv.prefix_reuse(df, block_tokens=16, scope="session", capacity_tokens=16 * b)
        assert got["cached_blocks"].to_list() == _lru(keyed, b)


def test_cli_kvcache_reads_the_block_size_and_names_the_ratios(mirror: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from servetrace.cli import app
    from servetrace.loaders import Store, ingest

    store = Store(tmp_path / "s")
    ingest("mooncake/conversation", store=store)
    runner = CliRunner()
    res = runner.invoke(app, ["kvcache", "mooncake/conversation", "--store", str(store.root),
                              "--capacity", "100000000", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [ratios] = doc["hit_ratios"]
    assert ratios["block_tokens"] == 512 and ratios["scope"] == "global"
    assert round(ratios["block_seen_ratio"], 4) == 0.3664
    assert doc["lru"][0]["block_hit_ratio"] == pytest.approx(ratios["block_hit_ratio"])
    ingest("azure_llm_2023/code", store=store)
    res = runner.invoke(app, ["kvcache", "azure_llm_2023/code", "--store", str(store.root)])
    assert res.exit_code == 1 and "carry no hash_ids" in res.output


@pytest.mark.parametrize("dtype", [pl.UInt32, pl.Int32, pl.UInt16])
def test_narrow_ids_are_read_in_place_with_the_same_results(dtype, monkeypatch):
    """A trace built with uint32 ids (bench/kvcache.py) gives the int64 trace's exact curve,
    and the global-scope keys are the ids' own buffer, not a widened copy."""
    rng = np.random.default_rng(4)
    reqs = _random_trace(rng, 300)
    wide = _frame(reqs)
    narrow = wide.with_columns(pl.col("hash_ids").cast(pl.List(dtype)))
    caps = [16 * b for b in (0, 1, 3, 8, 40, 1000)]
    monkeypatch.setattr(kv, "_CHUNK", 97)
    assert kv.lru_curve(narrow, caps, block_tokens=16).equals(
        kv.lru_curve(wide, caps, block_tokens=16))
    got = kv.prefix_reuse(narrow, block_tokens=16, capacity_tokens=16 * 5)["cached_blocks"]
    assert got.to_list() == _lru(reqs, 5)
    key = kv._columns(narrow, 16, "global")[2]
    flat = np.asarray(narrow["hash_ids"].to_arrow().flatten())
    assert key.dtype == flat.dtype and np.shares_memory(key, flat)


def test_hit_ratio_by_session_and_footprint_by_scope():
    """Session-local ids never hit another session's blocks; global ids do."""
    df = _frame([[0, 1], [0, 1], [0, 1, 2], [5]], session=["a", "b", "a", None])
    local = kv.hit_ratio_by_session(df.head(3), block_tokens=16, scope="session")
    assert local["session"].to_list() == ["a", "b"]
    assert local["cached_blocks"].to_list() == [2, 0]
    assert local["block_hit_ratio"].to_list() == pytest.approx([2 / 5, 0])
    assert local["request_hit_ratio"].to_list() == pytest.approx([1 / 2, 0])
    shared = kv.hit_ratio_by_session(df, block_tokens=16)
    assert shared["session"].to_list() == ["a", "b", None]
    assert shared["block_hit_ratio"].to_list() == pytest.approx([2 / 5, 1, 0])
    # token-weighted: a's second prompt is 40 tokens, its cached 2 blocks are 32 of them
    tok = _frame([[0, 1], [0, 1, 2]], tokens=[32, 40], session=["a", "a"])
    row = kv.hit_ratio_by_session(tok, block_tokens=16, scope="session").row(0, named=True)
    assert row["token_hit_ratio"] == pytest.approx(32 / 72)
    assert row["mean_request_token_hit_ratio"] == pytest.approx((0 + 32 / 40) / 2)
    lru = kv.hit_ratio_by_session(df, block_tokens=16, capacity_tokens=32)   # two blocks
    assert _lru([[0, 1], [0, 1], [0, 1, 2], [5]], 2) == [0, 2, 2, 0]
    assert lru["cached_blocks"].to_list() == [0 + 2, 2, 0]
    assert kv.footprint_blocks(df.head(3), scope="session") == 5
    assert kv.footprint_blocks(df) == 4
    with pytest.raises(ValueError, match="session"):
        kv.hit_ratio_by_session(_frame([[1]]), block_tokens=16)


def test_reuse_by_whole_frame_is_hit_ratios():
    rng = np.random.default_rng(3)
    df = _frame(_random_trace(rng, 120))
    r = kv.prefix_reuse(df, block_tokens=16)
    whole = kv.reuse_by(r).row(0, named=True)
    h = kv.hit_ratios(df, block_tokens=16)
    for name in ("block_seen_ratio", "block_hit_ratio", "token_hit_ratio", "request_hit_ratio",
                 "mean_request_token_hit_ratio"):
        assert whole[name] == pytest.approx(getattr(h, name))
    assert whole["cached_blocks"] == int(r["cached_blocks"].sum())


def test_session_scope_with_ids_too_wide_to_pack():
    """(session, id) keys are packed into one int64 when the id range allows; ids spanning
    most of int64 take the other path, with the same answers."""
    rng = np.random.default_rng(6)
    reqs = _random_trace(rng, 60)
    wide = [[h * 2 * 10**17 - 4 * 10**18 for h in r] for r in reqs]
    sess = [str(x) for x in rng.integers(0, 4, len(reqs))]
    flat = [h for r in wide for h in r]
    assert (max(flat) - min(flat) + 1) * len(set(sess)) >= 1 << 62      # the unpacked path
    keyed = [[hash((s, h)) for h in r] for r, s in zip(reqs, sess, strict=True)]
    for ids in (reqs, wide):
        df = _frame(ids, session=sess)
        for b in (3, 30):
            got = kv.prefix_reuse(df, block_tokens=16, scope="session", capacity_tokens=16 * b)
            assert got["cached_blocks"].to_list() == _lru(keyed, b)
