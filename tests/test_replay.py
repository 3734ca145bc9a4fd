"""Replay (synth/replay) over real HTTP on loopback against the test server (synth/server).

Ground truth comes from the server's cost model: on an idle server TTFT is
``prefill_base_s + input_tokens / prefill_tokens_per_s`` and tokens follow every
``1 / decode_tokens_per_s``; the server counts prompt words, so the prompt length sent is
checked exactly; its fault knobs decide exactly which requests fail or stall. Timing
tolerances are loose (a few ms on a shared 2-core machine); what must hold exactly is
asserted exactly (counts, statuses, send never before its scheduled time).
The summary's formulas are checked on hand-made records with known answers, and a real
trace (the first 40 rows of Azure LLM 2023 conversation) goes through the store and back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import aiohttp
import numpy as np
import polars as pl
import pytest

from servetrace.loaders import azure_llm_2023, schema
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.store import Provenance
from servetrace.synth import replay as rp
from servetrace.synth import replay_prompts
from servetrace.synth import replay_results as rr
from servetrace.synth import replay_store as rs
from servetrace.synth.server import Server, ServerConfig, serve

FAST = ServerConfig(prefill_base_s=0.005, prefill_tokens_per_s=50_000.0,
                    decode_tokens_per_s=200.0)


def _trace(n: int, span_s: float, seed: int = 0, max_in: int = 1500,
           max_out: int = 20) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "arrival_s": np.linspace(0.0, span_s, n),
        "tenant": rng.choice(["a", "b"], n),
        "input_tokens": rng.integers(100, max_in, n),
        "output_tokens": rng.integers(2, max_out, n),
    })


@pytest.fixture(scope="module")
def fast():
    with Server(FAST) as server:
        yield server


@pytest.fixture(scope="module")
def base_run(fast, tmp_path_factory):
    """50 requests evenly spaced over 2 s (40 ms apart: prefills never overlap)."""
    trace = _trace(50, 1.96)
    path = tmp_path_factory.mktemp("replay") / "results.jsonl"
    return trace, rp.replay(trace, fast.url, api_key_env=None, results=path)


# -- end to end --------------------------------------------------------------------------------
def test_records_follow_the_cost_model(base_run):
    trace, result = base_run
    rec = result.records.sort("index")
    assert rec.height == 50 and not result.interrupted and result.not_sent == 0
    assert rec["failed"].sum() == 0 and (rec["status"] == 200).all()
    # exact: tokens requested, received, streamed; prompt length as the server counted it
    assert rec["request_id"].to_list() == trace["request_id"].to_list()
    assert rec["max_tokens"].to_list() == trace["output_tokens"].to_list()
    assert rec["output_tokens"].to_list() == trace["output_tokens"].to_list()
    assert (rec["chunks"] == rec["output_tokens"]).all()
    assert rec["prompt_tokens"].to_list() == trace["input_tokens"].to_list()
    assert (rec["itl_s"].list.len() == rec["output_tokens"] - 1).all()
    # the schedule is the trace's; a request is never sent before its time
    np.testing.assert_allclose(rec["scheduled_s"], trace["arrival_s"], atol=1e-12)
    assert (rec["send_lag_s"] >= 0).all()
    np.testing.assert_allclose(rec["sent_s"] - rec["scheduled_s"], rec["send_lag_s"],
                               atol=1e-9)
    # TTFT: never below the model, its median excess a few ms (HTTP on loopback)
    model = FAST.ttft_s(rec["input_tokens"].to_numpy())
    excess = rec["ttft_s"].to_numpy() - model
    assert excess.min() > -0.002
    assert np.median(excess) < 0.010
    # TPOT = 1 / decode rate; latency = TTFT + (n - 1) TPOT; ITLs sum to the decode time
    np.testing.assert_allclose(rec["tpot_s"].median(), 1 / FAST.decode_tokens_per_s, rtol=0.1)
    np.testing.assert_allclose(rec["latency_s"],
                               rec["ttft_s"] + (rec["output_tokens"] - 1) * rec["tpot_s"],
                               rtol=1e-9)
    assert (rec["itl_s"].list.sum() <= rec["latency_s"] - rec["ttft_s"] + 1e-9).all()


def test_results_file_is_the_records(base_run):
    _, result = base_run
    assert result.results_path is not None
    written = rr.load_results(result.results_path)
    assert written.schema == rr.RECORD_SCHEMA
    assert written.sort("index").equals(result.records.sort("index"))
    meta = json.loads(result.results_path.with_name("results.jsonl.meta.json").read_text())
    assert meta["model"] == FAST.model and meta["requests"] == 50


def test_chat_api_discovers_the_model_and_sends_openai_fields():
    trace = _trace(6, 0.25)
    with Server(FAST) as server:
        result = rp.replay(trace, server.url + "/v1", api="chat", api_key_env=None)
        seen = server.received
    assert result.meta["model"] == FAST.model and result.meta["api"] == "chat"
    assert {r.path for r in seen} == {"/v1/chat/completions"}
    body = seen[0].body
    assert body["stream"] is True and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0]["role"] == "user"
    rec = result.records.sort("index")
    assert rec["output_tokens"].to_list() == trace["output_tokens"].to_list()
    assert rec["prompt_tokens"].to_list() == trace["input_tokens"].to_list()


def test_ignore_eos_and_min_output_tokens():
    trace = pl.DataFrame({"arrival_s": [0.0, 0.05, 0.1], "input_tokens": [5, 5, 5],
                          "output_tokens": [10, 10, 0]})
    config = ServerConfig(eos_after_tokens=3, decode_tokens_per_s=1000.0)
    with serve(config) as url:
        honoured = rp.replay(trace, url, api_key_env=None).records.sort("index")
        natural = rp.replay(trace, url, api_key_env=None, ignore_eos=False).records.sort(
            "index")
    assert honoured["max_tokens"].to_list() == [10, 10, 1]  # 0 raised to min_output_tokens
    assert honoured["output_tokens"].to_list() == [10, 10, 1]
    assert natural["output_tokens"].to_list() == [3, 3, 1]


def test_failures_are_recorded_not_fatal():
    trace = _trace(20, 0.5)
    with serve(ServerConfig(fail_every=5, decode_tokens_per_s=1000.0)) as url:
        result = rp.replay(trace, url, api_key_env=None)
    rec = result.records
    bad = rec.filter(pl.col("failed"))
    assert rec.height == 20 and bad.height == 4
    assert (bad["status"] == 500).all()
    assert bad["error"].str.starts_with("HTTP 500").all()
    assert bad["ttft_s"].is_null().all() and bad["tpot_s"].is_null().all()
    assert (bad["output_tokens"] == 0).all()
    good = rec.filter(~pl.col("failed"))
    assert (good["output_tokens"] == good["max_tokens"]).all()
    assert result.summary().failed == 4


def test_stall_is_recorded_as_a_timeout():
    trace = _trace(9, 0.2, max_out=4)
    config = ServerConfig(stall_every=3, stall_s=3.0, decode_tokens_per_s=1000.0)
    with serve(config) as url:
        result = rp.replay(trace, url, api_key_env=None, timeout_s=0.4)
    rec = result.records
    stalled = rec.filter(pl.col("failed"))
    assert rec.height == 9 and stalled.height == 3
    assert stalled["error"].str.starts_with("timeout").all()
    assert stalled["status"].is_null().all()
    assert stalled["latency_s"].min() >= 0.4 and stalled["latency_s"].max() < 1.5


def test_server_down():
    with Server() as server:
        url = server.url  # a port that was just free, now closed
    result = rp.replay(_trace(3, 0.1), url, model="m", api_key_env=None, timeout_s=2)
    assert result.records["failed"].all() and result.records["status"].is_null().all()
    assert result.records["error"].str.contains("Connect").all()
    with pytest.raises(ConnectionError, match="cannot list models"):
        rp.replay(_trace(3, 0.1), url, api_key_env=None, timeout_s=2)


def test_bounded_concurrency_waits_and_counts_the_wait_as_lag():
    trace = pl.DataFrame({"arrival_s": [0.0] * 8, "input_tokens": [10] * 8,
                          "output_tokens": [11] * 8})  # 10 gaps of 5 ms: 50 ms each
    with serve(FAST) as url:
        result = rp.replay(trace, url, api_key_env=None, max_concurrency=2)
    rec = result.records.sort("sent_s")
    start = rec["sent_s"].to_numpy()
    end = start + rec["latency_s"].to_numpy()
    in_flight = (start[:, None] >= start[None, :]) & (start[:, None] < end[None, :])
    assert in_flight.sum(axis=1).max() <= 2
    assert (rec["send_lag_s"] >= rec["wait_s"]).all()
    assert rec["wait_s"].max() > 0.1  # the last pair waited for three pairs before it


def test_api_key_is_sent_as_bearer_and_never_written(monkeypatch, tmp_path, store, capsys,
                                                     caplog):
    key = "sk-servetrace-SECRET-4242"
    monkeypatch.setenv("SERVETRACE_TEST_KEY", key)
    trace = _trace(5, 0.2)
    with Server(ServerConfig(api_key=key, decode_tokens_per_s=1000.0)) as server:
        prov = Provenance("test", None, "test", (), (), (), "test/1", "CC0", "none")
        store.write("k/src", Loaded(tables={"requests": trace}, rejects=schema.empty("rejects"),
                                    rows_read=5), prov)
        ok = rs.replay_trace("k/src", server.url, store=store, name="k/ok",
                             api_key_env="SERVETRACE_TEST_KEY")
        monkeypatch.setenv("SERVETRACE_TEST_KEY", key + "-wrong")
        denied = rp.replay(trace, server.url, api_key_env="SERVETRACE_TEST_KEY",
                           results=tmp_path / "denied.jsonl")
        auth = {r.authorization for r in server.received}
    assert auth == {f"Bearer {key}", f"Bearer {key}-wrong"}
    assert not ok.records["failed"].any()
    assert (denied.records["status"] == 401).all()
    assert ok.meta["api_key_env"] == "SERVETRACE_TEST_KEY"
    text = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
            and p.suffix in (".jsonl", ".json")]
    text += [str(store.sql("SELECT * FROM traces").to_dicts()),
             str(store.sql("SELECT * FROM requests").to_dicts()), repr(ok), repr(denied),
             caplog.text, *capsys.readouterr()]
    assert len(text) >= 7 and all(key not in t for t in text)


def test_ctrl_c_keeps_finished_requests(tmp_path, store):
    trace = _trace(40, 3.9, max_out=6)
    path = tmp_path / "cut.jsonl"
    timer = threading.Timer(1.2, os.kill, (os.getpid(), signal.SIGINT))
    with serve(FAST) as url:
        timer.start()
        result = rp.replay(trace, url, api_key_env=None, results=path)
    timer.join()
    rec = result.records
    assert result.interrupted and 0 < rec.height < 40
    assert result.not_sent > 0 and rec.height + result.cancelled + result.not_sent == 40
    assert not rec["failed"].any()  # what was kept finished; nothing half-done was recorded
    assert rr.load_results(path).sort("index").equals(rec.sort("index"))
    stored = rs.write_replay(store, result, name="replay/cut")
    assert store.sql("SELECT count(*) FROM requests WHERE trace = 'replay/cut'").item() \
        == rec.height
    notes = json.loads(store.traces().filter(pl.col("trace") == stored.trace)["notes"][0])
    assert notes["interrupted"] is True and notes["not_sent"] == result.not_sent


def test_async_cancellation_keeps_the_results_file(tmp_path):
    trace = _trace(30, 2.9, max_out=6)
    path = tmp_path / "async.jsonl"

    async def main(url: str) -> None:
        task = asyncio.ensure_future(rp.replay_async(trace, url, api_key_env=None,
                                                     results=path))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with serve(FAST) as url:
        asyncio.run(main(url))
    kept = rr.load_results(path)
    assert 0 < kept.height < 30 and not kept["failed"].any()
    assert kept["scheduled_s"].max() < 1.0


def test_replay_trace_lands_in_the_store(shared, store):
    src = azure_llm_2023.load([shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"],
                              "azure_llm_2023/conv")
    head = src.tables["requests"].head(40)
    prov = Provenance("azure_llm_2023", "conv", "azure", (), (), (), "test/1", "CC-BY-4.0",
                      "Patel et al., Splitwise, ISCA 2024")
    store.write("azure_llm_2023/conv", Loaded(tables={"requests": head},
                                              rejects=schema.empty("rejects"),
                                              rows_read=40), prov)
    span = head["arrival_s"].max() - head["arrival_s"].min()
    config = ServerConfig(prefill_tokens_per_s=500_000.0, decode_tokens_per_s=5_000.0)
    with serve(config) as url:
        result = rs.replay_trace("azure_llm_2023/conv", url, store=store,
                                 time_scale=1.5 / span, api_key_env=None, ttft_slo_s=1.0)
    name = result.trace
    assert name.startswith("replay/azure_llm_2023/conv/")
    back = store.scan("requests", name).collect()
    assert back.height == 40 and back["arrival_s"].is_sorted()
    assert back.schema == schema.polars_schema("requests")
    assert back["model"].unique().to_list() == [config.model]
    # sent in trace order; the source has no request ids, so they are the row numbers
    assert back["request_id"].to_list() == [str(i) for i in range(40)]
    assert back["input_tokens"].to_list() == head["input_tokens"].to_list()
    assert back["output_tokens"].to_list() == head["output_tokens"].clip(1).to_list()
    scheduled = ((head["arrival_s"] - head["arrival_s"][0]) * 1.5 / span).to_numpy()
    lag = back["arrival_s"].to_numpy() - scheduled  # arrival_s is the actual send time
    assert lag.min() >= 0 and np.median(lag) < 0.05
    assert back["ttft_s"].null_count() == 0 and not back["failed"].any()
    meta = store.traces().filter(pl.col("trace") == name).row(0, named=True)
    assert meta["dataset"] == "replay" and meta["part"] == "azure_llm_2023/conv"
    assert meta["license"] == "CC-BY-4.0" and meta["origin"] is not None
    notes = json.loads(meta["notes"])
    assert notes["summary"]["requests"] == 40 and notes["summary"]["ttft_slo_s"] == 1.0
    assert store.sql(f"SELECT count(*) FROM requests WHERE trace = '{name}'").item() == 40
    assert (store.root / "replays").is_dir()


def test_recover_after_a_crash(fast, tmp_path, store):
    path = tmp_path / "crash.jsonl"
    rp.replay(_trace(6, 0.25), fast.url, api_key_env=None, results=path, source="x/y")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]) + lines[4][:20])  # died while writing line 5
    result = rs.recover(store, path, name="replay/x/crash")
    assert result.records.height == 4 and result.not_sent == 2
    assert store.sql("SELECT count(*) FROM requests WHERE trace = 'replay/x/crash'").item() == 4
    assert store.traces()["part"].to_list() == ["x/y"]


def test_tokenizer_makes_prompt_lengths_exact(fast):
    def count(text: str) -> int:  # a toy tokenizer: words of more than 5 letters are 2 tokens
        return sum(1 + (len(w) > 5) for w in text.split())

    n = np.array([0, 1, 7, 50, 333])
    texts, counts = replay_prompts.exact_prompts(n, 3, count)
    assert [count(t) for t in texts] == counts.tolist()
    assert (counts <= n).all() and (n - counts <= 1).all()  # a 2-token word may not fit
    trace = pl.DataFrame({"arrival_s": [0.0, 0.01, 0.02], "input_tokens": [40, 80, 120],
                          "output_tokens": [2, 2, 2]})
    rec = rp.replay(trace, fast.url, api_key_env=None, tokenizer=count).records.sort("index")
    assert (rec["input_tokens"] <= trace["input_tokens"]).all()
    assert (rec["prompt_tokens"] < rec["input_tokens"]).all()  # words < tokens here


# -- pure functions --------------------------------------------------------------------------
def _records(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base = {c: [None] * n for c in rr.RECORD_SCHEMA}
    base.update({"index": list(range(n)), "itl_s": [[] for _ in range(n)],
                 "input_tokens": [1] * n, "max_tokens": [1] * n, "chunks": [1] * n})
    base.update(cols)
    return pl.DataFrame(base, schema=rr.RECORD_SCHEMA)


def test_summary_known_answer():
    rec = _records(
        scheduled_s=[0.0, 1.0, 2.0, 3.0, 4.0],
        sent_s=[0.001, 1.002, 2.003, 3.004, 4.1],
        send_lag_s=[0.001, 0.002, 0.003, 0.004, 0.1],
        ttft_s=[0.1, 0.2, 0.5, None, 0.1],
        tpot_s=[0.01, 0.05, 0.01, None, None],
        latency_s=[1.0, 1.0, 1.0, 0.2, 0.9],
        output_tokens=[10, 10, 10, 0, 1],
        failed=[False, False, False, True, False])
    s = rr.summarize(rec, ttft_slo_s=0.3, tpot_slo_s=0.02)
    assert (s.requests, s.succeeded, s.failed, s.output_tokens) == (5, 4, 1, 31)
    assert s.duration_s == pytest.approx(5.0)  # last end: 4.1 + 0.9
    assert s.target_rate == pytest.approx(1.0)
    assert s.achieved_rate == pytest.approx(4 / 4.099)
    assert s.rate_error == pytest.approx(4 / 4.099 - 1)
    assert s.send_lag_p50_s == pytest.approx(0.003) and s.send_lag_max_s == 0.1
    assert s.send_lag_p99_s == pytest.approx(0.004 + 0.96 * 0.096)
    # good: request 0 (both met) and 4 (one token: no TPOT); 1 misses TPOT, 2 TTFT, 3 failed
    assert s.slo_attainment == pytest.approx(2 / 5)
    assert s.goodput_rps == pytest.approx(2 / 5.0)
    assert s.ttft_p50_s == pytest.approx(0.15)  # over the four that succeeded
    assert rr.summarize(rec).slo_attainment == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="ttft_slo_s"):
        rr.summarize(rec, ttft_slo_s=0)
    with pytest.raises(ValueError, match="no requests"):
        rr.summarize(rec.clear())


def test_schedule():
    frame = pl.DataFrame({"arrival_s": [12.0, 10.0, 11.0, 10.0], "input_tokens": [1, 2, 3, 4],
                          "output_tokens": [5, 0, 7, 8]})
    plan = rp.schedule(frame.lazy(), time_scale=0.5)
    assert plan["scheduled_s"].to_list() == [0.0, 0.0, 0.5, 1.0]
    assert plan["input_tokens"].to_list() == [2, 4, 3, 1]  # ties keep trace order
    assert plan["max_tokens"].to_list() == [1, 8, 7, 5]
    assert plan["request_id"].to_list() == ["0", "1", "2", "3"]
    assert rp.schedule(frame, min_output_tokens=0)["max_tokens"].to_list() == [0, 8, 7, 5]
    for bad, match in ((frame.drop("input_tokens"), "missing column 'input_tokens'"),
                       (frame.clear(), "no rows"),
                       (frame.with_columns(pl.lit(-1).alias("output_tokens")), "negative"),
                       (frame.with_columns(pl.lit(None, pl.Float64).alias("arrival_s")),
                        "nulls")):
        with pytest.raises(ValueError, match=match):
            rp.schedule(bad)
    with pytest.raises(ValueError, match="time_scale"):
        rp.schedule(frame, time_scale=0)


def test_endpoint_urls():
    assert rp.endpoint_url("http://h:8000") == (
        "http://h:8000/v1/completions", "http://h:8000/v1/models", "completions")
    assert rp.endpoint_url("http://h:8000/v1/", "chat")[0] == "http://h:8000/v1/chat/completions"
    assert rp.endpoint_url("https://x.org/api/v1/chat/completions")[2] == "chat"
    with pytest.raises(ValueError, match="api"):
        rp.endpoint_url("http://h/v1/completions", "chat")
    with pytest.raises(ValueError, match="http"):
        rp.endpoint_url("h:8000")
    assert rp.redact_url("http://u:pw@h:1/v1?key=k") == "http://h:1/v1"


def test_server_non_streaming_and_unknown_model():
    body = {"model": FAST.model, "prompt": "a b c", "max_tokens": 4}

    async def post(url: str, payload: dict) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as s, s.post(url, json=payload) as r:
            return r.status, await r.json()

    with serve(FAST) as url:
        status, out = asyncio.run(post(url + "/v1/completions", body))
        missing, err = asyncio.run(post(url + "/v1/completions", {**body, "model": "nope"}))
    assert status == 200 and out["usage"] == {"prompt_tokens": 3, "completion_tokens": 4,
                                              "total_tokens": 7}
    assert len(out["choices"][0]["text"].split()) == 4
    assert missing == 404 and "nope" in err["message"]


def test_server_runs_as_a_process():
    proc = subprocess.Popen([sys.executable, "-m", "servetrace.synth.server", "--port", "0",
                             "--max-concurrent-sequences", "3", "--kv-cache-tokens", "480"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        models = json.loads(urllib.request.urlopen(url + "/v1/models", timeout=10).read())
        metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert models["data"][0]["id"] == ServerConfig().model
    assert 'num_gpu_blocks="30"' in metrics


def test_replay_works_inside_a_running_event_loop(fast):
    async def notebook_cell() -> rr.ReplayResult:  # Jupyter runs cells inside a loop
        return rp.replay(_trace(4, 0.1), fast.url, api_key_env=None)

    result = asyncio.run(notebook_cell())
    assert result.records.height == 4 and not result.records["failed"].any()


# -- interrupted, killed and failed runs ---------------------------------------------------
def test_second_ctrl_c_still_returns_what_finished(tmp_path):
    """Two Ctrl-C 5 ms apart: the replay still returns (and so stores) what finished. A
    second signal that lands after the replay returned is swallowed by this test's handler
    (not by the replay), so a fast machine cannot turn it into a test failure."""
    trace = _trace(40, 3.9, max_out=6)
    state = {"inside": True, "seen": []}

    def handler(signum, frame):
        state["seen"].append(state["inside"])
        if state["inside"]:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    timers = [threading.Timer(t, os.kill, (os.getpid(), signal.SIGINT)) for t in (1.2, 1.205)]
    try:
        with serve(FAST) as url:
            for timer in timers:
                timer.start()
            result = rp.replay(trace, url, api_key_env=None, results=tmp_path / "r.jsonl")
            state["inside"] = False
            for timer in timers:
                timer.join()
    finally:
        signal.signal(signal.SIGINT, old)
    assert len(state["seen"]) == 2 and state["seen"][0]
    assert result.interrupted and 0 < result.records.height < 40


def test_replays_started_in_one_second_get_their_own_names():
    assert len({rs._stamp() for _ in range(50)}) == 50


def test_killed_replays_are_recovered_from_the_command_line(fast, store):
    """A run whose process died before storing: `servetrace replay --recover` stores it,
    once; a run still going (its lock held) is left alone."""
    from typer.testing import CliRunner

    from servetrace.cli import app

    store.create()
    folder = store.root / "replays"
    done, going = folder / "replay__a__1.jsonl", folder / "replay__a__2.jsonl"
    for path in (done, going):
        rp.replay(_trace(6, 0.25), fast.url, api_key_env=None, results=path, source="a")
    with rs._running(going):
        res = CliRunner().invoke(app, ["replay", "--recover", "--store", str(store.root)])
        assert res.exit_code == 0, res.output
        assert store.traces()["trace"].to_list() == ["replay/a/1"]
    assert rs.recover_pending(store) == ["replay/a/2"]
    assert rs.recover_pending(store) == []
    assert store.sql("SELECT count(*) FROM requests").item() == 12


def test_every_request_failing_exits_non_zero(store):
    from typer.testing import CliRunner

    from servetrace.cli import app

    prov = Provenance("t", None, "t", (), (), (), "t/1", "", "")
    store.write("src", Loaded(tables={"requests": _trace(5, 0.2)},
                              rejects=schema.empty("rejects"), rows_read=5), prov)
    with serve(ServerConfig(fail_every=1)) as url:
        res = CliRunner().invoke(app, ["replay", "src", "--endpoint", url, "--store",
                                       str(store.root), "--timeout", "5"])
    assert res.exit_code == 1, res.output
    assert "every one of the 5 requests failed" in " ".join(res.output.split())
    replays = [t for t in store.traces()["trace"] if t.startswith("replay/src/")]
    assert len(replays) == 1
