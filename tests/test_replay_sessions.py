"""Closed-loop session replay with prefix-sharing prompts against the test server's prefix
cache (synth/replay_sessions, synth/prompts block prompts, synth/server PrefixCache).

Ground truth: :mod:`servetrace.analysis.kvcache` (Mattson stack distances) for what an LRU
prefix cache of a given capacity finds on a given order of requests; it is checked request
by request against the server's cache, and end to end over loopback HTTP on real agentic
sessions (WEKA agentic coding, three conversations with sub-agents). Closed-loop timing is
checked on every record: no request goes before the one it waits for has ended plus its
think time. Assertions on ratios are exact (same order of requests) up to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import kvcache
from servetrace.loaders import agentic_coding_weka
from servetrace.synth import replay as rp
from servetrace.synth import replay_prompts
from servetrace.synth import replay_results as rr
from servetrace.synth import replay_sessions as rsn
from servetrace.synth.prompts import block_prompts, exact_block_prompts
from servetrace.synth.server import PrefixCache, Server, ServerConfig

BLOCK = 4  # tokens per block in the end-to-end tests (the WEKA trace's 64, shrunk 16x)


# -- prompts -----------------------------------------------------------------------------------
def test_block_prompts_share_exactly_the_shared_prefix():
    ids = pl.Series([[1, 2, 3], [1, 2, 4], [7, 2, 3], [], None, [1, 2, 3]])
    n = np.array([12, 11, 12, 5, 3, 10])
    texts = block_prompts(ids, n, BLOCK, seed=3).to_list()
    words = [t.split(" ") if t else [] for t in texts]
    assert [len(w) for w in words] == n.tolist()
    assert words[0][:8] == words[1][:8] and words[0][8:11] != words[1][8:11]
    assert words[0][:4] != words[2][:4] and words[0][4:] == words[2][4:]  # id 2, 3 in common
    assert texts[5] == " ".join(words[0][:10])  # a partial last block is the block's start
    assert words[3] != words[4][:3] and words[3][:3] != words[0][:3]  # own words, not shared
    again = block_prompts(ids, n, BLOCK, seed=3).to_list()
    assert again == texts and block_prompts(ids, n, BLOCK, seed=4).to_list() != texts
    session = pl.Series(["a", "a", "a", "a", "a", "b"])
    scoped = block_prompts(ids, n, BLOCK, session=session).to_list()
    assert scoped[0][:20] == scoped[1][:20] and scoped[5] != scoped[0][:len(scoped[5])]


def test_block_prompts_errors():
    with pytest.raises(ValueError, match="block_tokens"):
        block_prompts(pl.Series([[1]]), [3], 0)
    with pytest.raises(ValueError, match="2 lengths for 1"):
        block_prompts(pl.Series([[1]]), [3, 4], 4)
    with pytest.raises(ValueError, match="negative"):
        block_prompts(pl.Series([[1]]), [-1], 4)


def test_exact_block_prompts_hit_the_tokenizer_count():
    def count(text: str) -> int:  # a tokenizer that splits words of 7+ letters in two
        return sum(1 + (len(w) >= 7) for w in text.split())

    ids = pl.Series([[1, 2, 3, 4], [1, 2, 3, 5], [9]])
    n = np.array([16, 15, 3])
    texts, counts = exact_block_prompts(ids, n, BLOCK, count, seed=1)
    assert counts.tolist() == [count(t) for t in texts]
    assert all(c == t or c == t - 1 for c, t in zip(counts, n, strict=True))
    plain = block_prompts(ids, n, BLOCK, seed=1).to_list()
    assert texts[0].split()[:4] == plain[0].split()[:4]  # only the end moved
    texts2, _ = exact_block_prompts(ids, n, BLOCK, lambda s: len(s.split()), seed=1)
    assert texts2 == plain  # a word-per-token tokenizer changes nothing


# -- the server's cache against the analysis ---------------------------------------------------
def _chained(n: int, seed: int) -> pl.DataFrame:
    """Sessions whose turns extend the previous turn's ids, plus a shared system prefix;
    partial last blocks carry ids of their own (as hash-derived traces do)."""
    rng = np.random.default_rng(seed)
    rows, fresh = [], iter(range(1000, 10**6))
    chains: dict[int, list[int]] = {}
    for i in range(n):
        s = int(rng.integers(0, 6))
        chain = chains.setdefault(s, [0, 1] if s % 2 else [2])
        chain += [next(fresh) for _ in range(int(rng.integers(1, 5)))]
        tail = int(rng.integers(1, BLOCK + 1))
        rows.append({"arrival_s": float(i), "session": str(s),
                     "hash_ids": [*chain, next(fresh)],
                     "input_tokens": len(chain) * BLOCK + tail})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("capacity", [0, 3 * BLOCK, 13 * BLOCK + 2, 40 * BLOCK, 10**6])
def test_prefix_cache_equals_the_analysis_request_by_request(capacity):
    trace = _chained(120, seed=capacity)
    texts = block_prompts(trace["hash_ids"], trace["input_tokens"], BLOCK).to_list()
    cache = PrefixCache(capacity, BLOCK)
    got = [cache.access(t.split()) for t in texts]
    want = kvcache.prefix_reuse(trace, block_tokens=BLOCK, capacity_tokens=capacity)
    assert got == want["cached_tokens"].to_list()
    assert cache.hits == sum(got) and cache.queries == trace["input_tokens"].sum()


# -- closed-loop rules ---------------------------------------------------------------------------
def test_dependencies_follow_parents_then_sessions():
    plan = pl.DataFrame({
        "index": [0, 1, 2, 3, 4, 5], "request_id": ["a", "b", "c", "d", "e", "f"],
        "session": ["s", "s", "s", "t", "t", None],
        "scheduled_s": [0.0, 10.0, 11.0, 0.0, 20.0, 5.0],
        "parent_request_id": [None, "a", "a", None, None, None],
        "think_s": [None, 2.0, None, None, None, None],
        "tool_s": [None, 1.0, None, None, None, None],
        "latency_s": [4.0, 1.0, 1.0, 5.0, 1.0, 1.0],
    })
    out = rsn.dependencies(plan, time_scale=0.5)
    assert out["after_index"].to_list() == [None, 0, 0, None, 3, None]
    # b: (think + tool) * scale; c: gap 11*0.5... the plan is already scaled: 11 - 0 - 4*0.5
    assert out["delay_s"].to_list() == [None, 1.5, 9.0, None, 17.5, None]
    assert rsn.dependencies(plan, closed_loop=False)["after_index"].null_count() == 6
    # a parent that comes later in the schedule is no dependency (the session decides)
    later = plan.with_columns(pl.Series("parent_request_id", [None, "c", None, None, None, None]))
    assert rsn.dependencies(later)["after_index"].to_list()[:3] == [None, 0, 1]


def test_slice_plan():
    plan = rp.schedule(pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0],
                                     "input_tokens": [1, 2, 3, 4],
                                     "output_tokens": [1, 1, 1, 1]}), time_scale=2.0)
    assert rsn.slice_plan(plan, limit=3)["input_tokens"].to_list() == [1, 2, 3]
    assert rsn.slice_plan(plan, duration_s=4.0)["input_tokens"].to_list() == [1, 2]
    assert rsn.slice_plan(plan, limit=1, duration_s=4.0)["index"].to_list() == [0]
    for bad in ({"limit": 0}, {"duration_s": 0.0}):
        with pytest.raises(ValueError):
            rsn.slice_plan(plan, **bad)


# -- end to end over HTTP ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weka(shared: Path) -> pl.DataFrame:
    """Three real conversations (260 requests, 33 of sub-agents), blocks shrunk from 64 to
    4 tokens (ids and their sharing kept; the partial tail scaled), 2 output tokens, think
    times capped at 20 s, so that a replay at time scale 0.001 takes about a second."""
    files = sorted((shared / "agentic_coding_weka").glob("*.json"))[:3]
    frame = agentic_coding_weka.load(files, "weka").tables["requests"]
    n = pl.col("hash_ids").list.len()
    return frame.with_columns(
        ((n - 1) * BLOCK + ((pl.col("input_tokens") - (n - 1) * 64) * BLOCK + 63) // 64)
        .alias("input_tokens"),
        pl.lit(2).alias("output_tokens"), pl.col("think_s").clip(upper_bound=20.0))


def _run(trace: pl.DataFrame, capacity: int, **options):
    config = ServerConfig(prefill_base_s=0.001, prefill_tokens_per_s=1e8,
                          decode_tokens_per_s=1e4, block_size=BLOCK,
                          prefix_cache_tokens=capacity)
    with Server(config) as server:
        result = rp.replay(trace, server.url, api_key_env=None, time_scale=0.001,
                           block_tokens=BLOCK, hash_scope="session", cache_tokens=capacity,
                           **options)
        return result, server.prefix_log


CAPACITIES = (3000 * BLOCK, 10**9)  # binding, and larger than the trace


@pytest.fixture(scope="module")
def runs(weka):
    """One closed-loop replay of the three conversations per capacity (progress recorded)."""
    out = {}
    for capacity in CAPACITIES:
        seen: list[rr.ReplayProgress] = []
        result, log = _run(weka, capacity, progress=seen.append, progress_interval_s=0.05)
        out[capacity] = result, log, seen
    return out


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_achieved_hit_ratio_is_what_lru_predicts(weka, runs, capacity):
    result, log, _ = runs[capacity]
    records = result.records
    assert records.height == weka.height and not records["failed"].any()
    assert records["cached_tokens"].sum() == sum(c for _, _, c in log)
    # the prediction on the order the requests were sent (closed loop reorders them)
    plan = rp.schedule(weka, keep=("hash_ids",)).join(records.select("index", "sent_s"),
                                                      on="index")
    order = plan.sort("sent_s").with_columns(pl.col("sent_s").alias("arrival_s"))
    want = kvcache.lru_curve(order, [capacity], block_tokens=BLOCK, scope="session")
    summary = result.summary()
    assert summary.hit_ratio == pytest.approx(want["token_hit_ratio"][0], abs=1e-12)
    assert summary.sent_order_lru_hit_ratio == pytest.approx(summary.hit_ratio, abs=1e-12)
    infinite = kvcache.hit_ratios(weka, block_tokens=BLOCK, scope="session").token_hit_ratio
    assert summary.trace_hit_ratio == pytest.approx(infinite, abs=1e-12)
    assert summary.trace_lru_hit_ratio is not None
    if capacity == 10**9:
        assert summary.hit_ratio == pytest.approx(infinite, abs=1e-12)
    else:
        assert summary.hit_ratio < infinite - 0.01  # the capacity binds


def test_closed_loop_never_sends_a_turn_early(weka, runs):
    result, _, seen = runs[10**9]
    records = result.records
    check = rr.closed_loop_check(records)
    assert check.height == records.height - 3  # all but the three first turns wait
    assert (check["early_s"] <= 1e-9).all()
    assert result.summary().closed_loop_violations == 0
    # sub-agents wait for the request that spawned them; every delay is the trace's think
    # time, scaled
    plan = rp.schedule(weka, keep=("parent_request_id", "think_s", "subagent"))
    joined = check.join(plan.select("index", "parent_request_id", "think_s", "subagent"),
                        on="index").join(plan.select(pl.col("index").alias("after_index"),
                                                     pl.col("request_id").alias("after_id")),
                                         on="after_index")
    assert joined.filter(pl.col("subagent").is_not_null()).height == 33
    assert (joined["after_id"] == joined["parent_request_id"]).all()
    assert np.allclose(joined["delay_s"], joined["think_s"] * 0.001)
    # progress: snapshots while running, the last one complete
    assert len(seen) >= 2 and seen[-1].finished == seen[-1].total == weka.height
    assert seen[-1].sent == weka.height and f"finished {weka.height}" in seen[-1].line()


def test_open_loop_and_a_slice(weka):
    result, _ = _run(weka, 10**9, closed_loop=False, limit=20)
    assert result.records.height == 20 and result.meta["limit"] == 20
    assert set(result.records["index"]) == set(range(20))
    assert result.summary().closed_loop_requests == 0


def test_server_reports_cached_tokens_and_prefills_only_the_rest():
    """Non-streaming usage carries ``prompt_tokens_details.cached_tokens``; the second of
    two equal prompts finds every block cached, and its TTFT is the cost model's for the
    uncached tokens only (the sleep never ends early)."""
    import asyncio

    import aiohttp

    config = ServerConfig(prefill_base_s=0.001, prefill_tokens_per_s=10_000.0,
                          decode_tokens_per_s=1e4, block_size=16, prefix_cache_tokens=10**6)
    text = block_prompts(pl.Series([[1, 2, 3]]), [3000], 1000)[0]

    async def ask(url: str, stream: bool) -> tuple[dict, list[float], float]:
        body = {"model": config.model, "prompt": text, "max_tokens": 1, "stream": stream,
                "stream_options": {"include_usage": True}}
        seen: dict = {}
        times: list[float] = []
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, error, _, prompt = await rp._exchange(
                session, url + "/v1/completions", json.dumps(body).encode(), times, 10.0,
                seen)
        assert status == 200 and error is None and prompt == 3000
        return seen, times, t0

    with Server(config) as server:
        first, times1, t1 = asyncio.run(ask(server.url, stream=False))
        second, times2, t2 = asyncio.run(ask(server.url, stream=True))
        log = server.prefix_log
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"cached_tokens": 3000}  # 188 blocks, 1 partial
    assert [c for _, _, c in log] == [0, 3000]
    assert times1[0] - t1 >= config.ttft_s(3000)  # 0.301 s: the whole prompt
    assert times2[0] - t2 < config.ttft_s(3000) / 2  # nothing left to prefill


def test_progress_printer_rewrites_a_terminal_line_and_throttles_a_log():
    import io

    def p(t: float, finished: int) -> rr.ReplayProgress:
        return rr.ReplayProgress(total=10, sent=10, finished=finished, failed=1, lag_s=0.002,
                                 max_lag_s=0.01, elapsed_s=t)

    tty = io.StringIO()
    printer = rr.ProgressPrinter(tty, tty=True)
    for t in range(5):
        printer(p(float(t), t))
    printer.close()
    text = tty.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n") and text.count("\n") == 1
    assert "sent 10/10  finished 4  failed 1  in flight 6  lag 2.0 ms (max 10.0 ms)" in text
    log = io.StringIO()
    printer = rr.ProgressPrinter(log, every_s=30.0, tty=False)
    for t in range(0, 100):  # once a second for 100 s, then the end
        printer(p(float(t), min(t // 10, 9)))
    printer(p(100.0, 10))
    printer.close()
    lines = log.getvalue().splitlines()
    assert [ln.split(" s ")[0].strip() for ln in lines] == ["0.0", "30.0", "60.0", "90.0",
                                                            "100.0"]
    assert "\r" not in log.getvalue() and "finished 10" in lines[-1]


def test_open_loop_global_ids_match_the_analysis_in_the_servers_order(shared):
    """The Mooncake conversation trace (global ids, no sessions: all open loop), its first
    150 requests over about a second, blocks shrunk from 512 to 4 tokens: requests overlap,
    so the server may look them up in another order than they were sent; on its order the
    prediction is exact, and the records' cached tokens are the server's."""
    from servetrace.loaders import mooncake

    path = shared / "mooncake_fast25" / "conversation_trace.jsonl"
    frame = mooncake.load([path], "mc").tables["requests"].head(150)
    n = pl.col("hash_ids").list.len()
    frame = frame.with_columns(
        ((n - 1) * BLOCK + ((pl.col("input_tokens") - (n - 1) * 512) * BLOCK + 511) // 512)
        .alias("input_tokens"), pl.lit(2).alias("output_tokens"))
    span = frame["arrival_s"].max() - frame["arrival_s"].min()
    capacity = 2000 * BLOCK
    config = ServerConfig(prefill_base_s=0.001, prefill_tokens_per_s=1e6,
                          decode_tokens_per_s=1e3, block_size=BLOCK,
                          prefix_cache_tokens=capacity)
    with Server(config) as server:
        result = rp.replay(frame, server.url, api_key_env=None, time_scale=1.0 / span,
                           block_tokens=BLOCK, hash_scope="global", cache_tokens=capacity)
        log, received = server.prefix_log, server.received
    records = result.records
    assert records.height == 150 and result.meta["closed_loop_requests"] == 0
    plan = rp.schedule(frame, keep=("hash_ids",))
    texts = block_prompts(plan["hash_ids"], plan["input_tokens"], BLOCK).to_list()
    index = {t: i for i, t in enumerate(texts)}
    assert len(index) == 150  # every prompt its own text
    prompt_of = {r.number: r.body["prompt"] for r in received}
    order = [index[prompt_of[number]] for number, _, _ in log]
    served = plan[order].with_columns(pl.int_range(pl.len()).cast(pl.Float64)
                                      .alias("arrival_s"))
    want = kvcache.prefix_reuse(served, block_tokens=BLOCK, capacity_tokens=capacity)
    assert [c for _, _, c in log] == want["cached_tokens"].to_list()
    by_index = dict(zip(records["index"], records["cached_tokens"], strict=True))
    assert [by_index[i] for i in order] == want["cached_tokens"].to_list()
    summary = result.summary()
    assert summary.hit_ratio == pytest.approx(
        want["cached_tokens"].sum() / want["input_tokens"].sum(), abs=1e-12)
    assert summary.trace_hit_ratio == pytest.approx(kvcache.hit_ratios(
        frame, block_tokens=BLOCK).token_hit_ratio, abs=1e-12)


def test_prompts_built_in_chunks_are_the_prompts_built_whole(weka):
    plan = rp.schedule(weka, keep=("hash_ids",))
    n = plan["input_tokens"].to_numpy()
    whole = block_prompts(plan["hash_ids"], n, BLOCK, 5, session=plan["session"]).to_list()
    chunked = replay_prompts.ChunkedPrompts(plan["hash_ids"], n, BLOCK, 5, plan["session"],
                                            words_per_chunk=20_000, keep=2)
    assert chunked.bounds.size > 20  # many chunks, few kept
    assert [chunked[i] for i in range(len(whole))] == whole
    assert [chunked[i] for i in (200, 3, 150)] == [whole[200], whole[3], whole[150]]
    ids = pl.Series([[], [], [1]])  # rows without ids: their own words depend on the row
    assert block_prompts(ids, [5, 5, 5], BLOCK).to_list()[1:] == block_prompts(
        ids.slice(1), [5, 5], BLOCK, first_row=1).to_list()
