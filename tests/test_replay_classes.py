"""Replay and the local server with request classes, offline backlogs, several models, LoRA
adapters and priorities (issue 20).

Ground truth is the server's cost model: with prefills serialized and never overlapping, a
request's TTFT is ``prefill_base_s + input_tokens / prefill rate`` of the model it names
(plus the adapter load time on an adapter miss), so which requests meet a TTFT SLO, and
hence each class's attainment, is known before the replay runs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import polars as pl
import pytest

from servetrace.synth import replay as rp
from servetrace.synth import replay_results as rr
from servetrace.synth.server import ModelSpec, Server, ServerConfig, models_config, parse_model

BASE = 0.005


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- the server ------------------------------------------------------------------------------
def test_parse_model_and_config():
    assert parse_model("m") == ("m", None, None)
    name, prefill, decode = parse_model("big=0.5,20")
    assert name == "big" and prefill == pytest.approx(2000) and decode == pytest.approx(50)
    for bad in ("=1,2", "x=1", "x=a,b", "x=0,1"):
        with pytest.raises(ValueError, match="--model"):
            parse_model(bad)
    config = models_config(["base=0.1,5", "big=0.5,20", "same"], max_concurrent_sequences=8)
    assert config.model == "base" and config.prefill_tokens_per_s == pytest.approx(10_000)
    assert config.models == (ModelSpec("big", 2000, 50), ModelSpec("same", 10_000, 200))
    assert config.rates("same") == (10_000, 200) and config.rates("nope") is None
    with pytest.raises(ValueError, match="given twice"):
        ServerConfig(models=(ModelSpec("servetrace-test", 1, 1),))


def test_server_lists_models_and_adapters_and_refuses_unknown_ones():
    config = ServerConfig(model="base", models=(ModelSpec("big", 2000, 50),),
                          lora_adapters=("ad0", "ad1"))
    with Server(config) as server:
        with urllib.request.urlopen(server.url + "/v1/models") as resp:
            data = json.loads(resp.read())["data"]
        assert [(m["id"], m["parent"]) for m in data] == [
            ("base", None), ("big", None), ("ad0", "base"), ("ad1", "base")]
        status, body = _post(server.url, {"model": "nope", "prompt": "a b", "max_tokens": 2})
        assert status == 404 and "`nope` does not exist" in body["message"]
        status, body = _post(server.url, {"model": "ad1", "prompt": "a b", "max_tokens": 2})
        assert status == 200 and body["model"] == "ad1"


@pytest.fixture(scope="module")
def two_models():
    """Default model: 0.05 ms/token prefill, 5 ms/token decode; ``big``: 0.6 and 20."""
    config = models_config(["small=0.05,5", "big=0.6,20"], prefill_base_s=BASE)
    with Server(config) as server:
        yield server


def _classes_trace() -> pl.DataFrame:
    """12 requests 0.3 s apart (the longest prefill takes 0.245 s: they never overlap),
    half to each model, inputs 40/80/400/600 tokens; class ``interactive`` (own TTFT SLO
    0.1 s, TPOT SLO 10 ms) and ``batch`` (no SLO of its own)."""
    n_in = [40, 80, 400, 600] * 3
    return pl.DataFrame({
        "request_id": [f"r{i}" for i in range(12)],
        "arrival_s": np.arange(12) * 0.3,
        "input_tokens": n_in,
        "output_tokens": [4] * 12,
        "model": ["big", "small"] * 6,
        "request_class": ["interactive"] * 6 + ["batch"] * 6,
        "priority": [0] * 6 + [1] * 6,
        "slo_ttft_s": [0.1] * 6 + [None] * 6,
        "slo_tpot_s": [0.01] * 6 + [None] * 6,
    })


@pytest.fixture(scope="module")
def classes_run(two_models):
    trace = _classes_trace()
    return trace, rp.replay(trace, two_models.url, api_key_env=None)


def test_each_request_goes_to_its_model_at_its_cost(classes_run, two_models):
    trace, result = classes_run
    rec = result.records.sort("index")
    assert rec["failed"].sum() == 0 and result.meta["trace_models"] is True
    assert rec["model"].to_list() == trace["model"].to_list()
    assert result.meta["models"] == ["big", "small"]
    config = two_models.config
    for name in ("big", "small"):
        one = rec.filter(pl.col("model") == name)
        model = config.ttft_s(one["input_tokens"].to_numpy(), name)
        excess = one["ttft_s"].to_numpy() - model
        assert excess.min() > -0.002 and np.median(excess) < 0.010
        np.testing.assert_allclose(one["tpot_s"].median(), 1 / config.rates(name)[1],
                                   rtol=0.15)
    assert rec["request_class"].to_list() == trace["request_class"].to_list()
    assert rec["priority"].to_list() == trace["priority"].to_list()
    assert not rec["offline"].any()


def test_per_class_attainment_matches_the_cost_model(classes_run, two_models):
    trace, result = classes_run
    config = two_models.config
    # the closed form: TTFT of every request on its model, idle server
    ttft = np.array([config.ttft_s(n, m) for n, m in zip(trace["input_tokens"],
                                                         trace["model"], strict=True)])
    tpot = np.array([1 / config.rates(m)[1] for m in trace["model"]])
    flag = 0.15  # the command's TTFT SLO, for the class without one
    slo = np.where(trace["slo_ttft_s"].is_null().to_numpy(), flag,
                   trace["slo_ttft_s"].fill_null(0).to_numpy())
    # no request near its threshold: a loaded machine's jitter stays below these margins
    assert np.abs(ttft - slo).min() > 0.05
    tpot_ok = np.where(trace["slo_tpot_s"].is_null().to_numpy(), True,
                       tpot <= trace["slo_tpot_s"].fill_null(0).to_numpy())
    good = (ttft <= slo) & tpot_ok
    cls = trace["request_class"].to_numpy()
    table = result.summary_by("request_class", ttft_slo_s=flag)
    got = dict(zip(table["request_class"], table["slo_attainment"], strict=True))
    for name in ("interactive", "batch"):
        assert got[name] == pytest.approx(good[cls == name].mean())
    assert 0 < got["interactive"] < got["batch"] < 1  # the test can tell classes apart
    rows = {r["request_class"]: r for r in table.to_dicts()}
    assert rows["interactive"]["ttft_slo_s"] == 0.1 and rows["batch"]["ttft_slo_s"] == flag
    assert rows["interactive"]["tpot_slo_s"] == 0.01 and rows["batch"]["tpot_slo_s"] is None
    summary = result.summary(ttft_slo_s=flag)
    assert summary.slo_attainment == pytest.approx(good.mean())
    assert table["goodput_rps"].sum() == pytest.approx(summary.goodput_rps)
    assert summary.goodput_tokens_per_s == pytest.approx(
        4 * good.sum() / summary.duration_s)
    by_model = result.summary_by("model", ttft_slo_s=flag)
    assert by_model["requests"].to_list() == [6, 6]
    assert by_model["request_share"].to_list() == [0.5, 0.5]
    tables = rr.class_tables(result.records, ttft_slo_s=flag)
    assert list(tables) == ["per class", "per model", "per priority"]


def test_trace_models_off_or_not_listed_sends_the_default(two_models):
    trace = _classes_trace().head(2).with_columns(pl.Series("model", ["big", "gpt-4"]))
    auto = rp.replay(trace, two_models.url, api_key_env=None)  # gpt-4 is not listed
    assert auto.meta["trace_models"] is False
    assert auto.records["model"].to_list() == ["small", "small"]
    forced = rp.replay(trace, two_models.url, api_key_env=None, trace_models=True)
    rec = forced.records.sort("index")
    assert rec["status"].to_list() == [200, 404] and rec["failed"].to_list() == [False, True]
    named = rp.replay(trace, two_models.url, api_key_env=None, model="big")
    assert named.records["model"].to_list() == ["big", "big"]


def test_lora_adapters_pay_a_load_when_not_resident():
    load = 0.06
    config = ServerConfig(model="base", prefill_base_s=BASE, prefill_tokens_per_s=20_000,
                          lora_adapters=("a", "b", "c"), max_loras=2, lora_load_s=load)
    order = ["a", "b", "a", "c", "b", "a", "base", "c"]
    # LRU of 2 adapters: a miss, b miss, a hit, c miss (evicts b), b miss (evicts a),
    # a miss (evicts c), base (no adapter), c miss
    misses = [True, True, False, True, True, True, False, True]
    trace = pl.DataFrame({"arrival_s": np.arange(8) * 0.15, "input_tokens": [200] * 8,
                          "output_tokens": [2] * 8, "model": order})
    with Server(config) as server:
        result = rp.replay(trace, server.url, api_key_env=None)
        assert server.lora_loads == sum(misses)
    rec = result.records.sort("index")
    assert rec["model"].to_list() == order
    expected = BASE + 200 / 20_000 + load * np.array(misses)
    excess = rec["ttft_s"].to_numpy() - expected
    assert excess.min() > -0.002 and excess.max() < 0.03


@pytest.mark.parametrize("priority_scheduling", [True, False])
def test_priority_scheduling_serves_lower_numbers_first(priority_scheduling):
    """One slot: a long request holds it while three more arrive with priorities 2, 1, 0;
    with priority scheduling they finish 0, 1, 2, without it in arrival order."""
    config = ServerConfig(max_concurrent_sequences=1, decode_tokens_per_s=200,
                          priority_scheduling=priority_scheduling)
    trace = pl.DataFrame({"arrival_s": [0.0, 0.02, 0.04, 0.06], "input_tokens": [10] * 4,
                          "output_tokens": [60, 3, 3, 3], "priority": [0, 2, 1, 0]})
    with Server(config) as server:
        result = rp.replay(trace, server.url, api_key_env=None, send_priority=True)
        assert [r.body["priority"] for r in server.received] == [0, 2, 1, 0]
    rec = result.records.with_columns((pl.col("sent_s") + pl.col("latency_s")).alias("end"))
    finish = rec.filter(pl.col("index") > 0).sort("end")["priority"].to_list()
    assert finish == ([0, 1, 2] if priority_scheduling else [2, 1, 0])


# -- the offline backlog ---------------------------------------------------------------------
def _online_offline(n_online: int = 40, n_offline: int = 60) -> pl.DataFrame:
    online = pl.DataFrame({"arrival_s": np.linspace(0.0, 1.5, n_online),
                           "input_tokens": [20] * n_online, "output_tokens": [3] * n_online,
                           "request_class": ["online"] * n_online,
                           "offline": [False] * n_online})
    offline = pl.DataFrame({"arrival_s": [0.0] * n_offline, "input_tokens": [10] * n_offline,
                            "output_tokens": [21] * n_offline,
                            "request_class": ["offline"] * n_offline,
                            "offline": [True] * n_offline})
    return pl.concat([online, offline])


def _in_flight_at(rec: pl.DataFrame, t: np.ndarray, who: pl.Expr) -> np.ndarray:
    part = rec.filter(who)
    start = part["sent_s"].to_numpy()
    end = start + part["latency_s"].to_numpy()
    return ((start[None, :] < t[:, None]) & (t[:, None] < end[None, :])).sum(axis=1)


@pytest.fixture(scope="module")
def fast():
    with Server(ServerConfig(prefill_base_s=BASE, decode_tokens_per_s=200.0)) as server:
        yield server


def test_offline_backlog_runs_beside_online_without_delaying_it(fast):
    trace = _online_offline()
    m = 4
    result = rp.replay(trace, fast.url, api_key_env=None, offline_concurrency=m)
    rec = result.records
    assert rec.height == 100 and rec["failed"].sum() == 0
    online, offline = rec.filter(~pl.col("offline")), rec.filter(pl.col("offline"))
    assert offline.height == 60 and (offline["request_class"] == "offline").all()
    # at most m offline requests in flight, and the backlog kept m busy while it lasted
    starts = offline["sent_s"].to_numpy()
    assert _in_flight_at(rec, starts, pl.col("offline")).max() <= m - 1
    assert (offline["scheduled_s"] == 0).all() and (offline["send_lag_s"] >= 0).all()
    # online sends are on time although offline requests are in flight when they go
    busy = _in_flight_at(rec, online["sent_s"].to_numpy(), pl.col("offline"))
    assert (busy > 0).mean() > 0.8
    assert online["send_lag_s"].median() < 0.003 and (online["wait_s"] < 1e-3).all()
    # closed form of the backlog's throughput: m at a time, each prefill + 20 decode steps
    latency = BASE + 10 / fast.config.prefill_tokens_per_s + 20 / 200
    summary = result.summary()
    assert summary.offline_requests == 60
    assert summary.offline_rps == pytest.approx(m / latency, rel=0.15)
    assert summary.offline_tokens_per_s == pytest.approx(21 * m / latency, rel=0.15)
    table = result.summary_by("request_class")
    assert table.filter(pl.col("request_class") == "offline")["offline"].item() == 60


def test_shared_concurrency_gives_offline_only_free_slots(fast):
    trace = _online_offline(n_online=30, n_offline=30)
    n = 3
    result = rp.replay(trace, fast.url, api_key_env=None, max_concurrency=n)
    rec = result.records
    offline = rec.filter(pl.col("offline"))
    online = rec.filter(~pl.col("offline"))
    t = offline["sent_s"].to_numpy() - 1e-6  # the counts the backlog saw before sending
    both = _in_flight_at(rec, t, pl.lit(True))
    assert both.max() <= n - 1
    # an online request waits only while n online requests hold every slot
    waited = online.filter(pl.col("wait_s") > 1e-3)
    ready = (waited["sent_s"] - waited["wait_s"]).to_numpy() + 1e-4
    assert (_in_flight_at(rec, ready, ~pl.col("offline")) >= n).all()
    assert result.meta["offline_concurrency"] is None


def test_offline_requests_need_a_concurrency_bound(fast):
    with pytest.raises(ValueError, match="offline_concurrency"):
        rp.replay(_online_offline(2, 2), fast.url, api_key_env=None)


# -- pure functions ------------------------------------------------------------------------
def _records(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base = {c: [None] * n for c in rr.RECORD_SCHEMA}
    base.update({"index": list(range(n)), "itl_s": [[] for _ in range(n)],
                 "input_tokens": [1] * n, "max_tokens": [1] * n, "chunks": [1] * n})
    base.update(cols)
    return pl.DataFrame(base, schema=rr.RECORD_SCHEMA)


def test_summary_by_known_answer():
    rec = _records(
        request_class=["a", "a", "a", "b", "b", None],
        model=["m1", "m2", "m1", "m1", "m1", "m1"],
        scheduled_s=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], send_lag_s=[0.0] * 6,
        sent_s=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], latency_s=[1.0] * 6,
        ttft_s=[0.1, 0.3, 0.2, 0.5, None, 0.1],
        tpot_s=[0.01, 0.01, 0.05, 0.01, None, 0.01],
        output_tokens=[10, 20, 30, 40, 0, 50],
        slo_ttft_s=[0.25, 0.25, 0.25, None, None, None],
        slo_tpot_s=[None, None, 0.02, None, None, None],
        failed=[False, False, False, False, True, False])
    # a: r0 good, r1 misses its own TTFT, r2 misses its own TPOT; b: r3 against the flag
    # 0.4 misses, r4 failed; null class: r5 good against the flag
    t = rr.summarize_by(rec, "request_class", ttft_slo_s=0.4)
    assert t["request_class"].to_list() == ["a", "b", None]
    assert t["requests"].to_list() == [3, 2, 1] and t["failed"].to_list() == [0, 1, 0]
    assert t["slo_attainment"].to_list() == pytest.approx([1 / 3, 0.0, 1.0])
    assert t["goodput_rps"].to_list() == pytest.approx([1 / 6, 0.0, 1 / 6])  # 6 s long
    assert t["goodput_tokens_per_s"].to_list() == pytest.approx([10 / 6, 0.0, 50 / 6])
    assert t["throughput_rps"].to_list() == pytest.approx([3 / 6, 1 / 6, 1 / 6])
    assert t["ttft_p50_s"].to_list() == pytest.approx([0.2, 0.5, 0.1])
    assert t["ttft_slo_s"].to_list() == [0.25, 0.4, 0.4]
    assert t["tpot_slo_s"].to_list() == [None, None, None]  # a mixes 0.02 and none
    s = rr.summarize(rec, ttft_slo_s=0.4)
    assert s.slo_attainment == pytest.approx(2 / 6)
    assert s.offline_requests == 0 and s.offline_rps is None
    # without the class columns (results files from before them): the flag for all
    old = rec.drop(*rr.CLASS_COLUMNS)
    assert rr.summarize(old, ttft_slo_s=0.4).slo_attainment == pytest.approx(4 / 6)
    assert rr.class_tables(old) == {}
    m = rr.summarize_by(rec, "model")
    assert m["model"].to_list() == ["m1", "m2"] and m["requests"].to_list() == [5, 1]
    with pytest.raises(ValueError, match="by must be"):
        rr.summarize_by(rec, "tenant")


def test_stored_trace_keeps_the_classes(classes_run, store):
    from servetrace.synth import replay_store as rs

    _, result = classes_run
    stored = rs.write_replay(store, result, ttft_slo_s=0.15)
    frame = store.scan("requests", stored.trace).collect().sort("arrival_s")
    assert frame["request_class"].to_list() == ["interactive"] * 6 + ["batch"] * 6
    assert frame["model"].to_list() == ["big", "small"] * 6
    assert frame["slo_ttft_s"].null_count() == 6 and not frame["offline"].any()
    notes = store.traces().filter(pl.col("trace") == stored.trace)["notes"].item()
    notes = json.loads(notes) if isinstance(notes, str) else notes
    assert [r["request_class"] for r in notes["per_class"]] == ["batch", "interactive"]
    assert [r["model"] for r in notes["per_model"]] == ["big", "small"]


# -- the command line --------------------------------------------------------------------------
def test_serve_command_runs_several_models():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("servetrace")
    proc = subprocess.Popen([str(exe), "serve", "--port", "0", "--model", "base=0.1,5",
                             "--model", "big=0.5,20", "--lora", "ad0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
            ids = [m["id"] for m in json.loads(resp.read())["data"]]
        assert ids == ["base", "big", "ad0"]
        assert _post(url, {"model": "other", "prompt": "a", "max_tokens": 1})[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_command_refuses_bad_costs():
    from typer.testing import CliRunner

    from servetrace.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", "big=1"])
    assert result.exit_code == 1 and "NAME=PREFILL_MS_PER_TOKEN" in result.output
    assert "Traceback" not in result.output


def test_replay_command_prints_per_class_tables(tmp_path, two_models):
    from typer.testing import CliRunner

    from servetrace.cli import app
    from servetrace.loaders import schema

    frame = _online_offline(6, 4).with_columns(
        pl.lit("mix").alias("trace"), pl.lit(0.5).alias("slo_ttft_s"),
        pl.Series("model", ["big", "small"] * 5))
    path = tmp_path / "mix.parquet"
    schema.conform("requests", frame).write_parquet(path)
    res = CliRunner().invoke(app, ["replay", str(path), "--endpoint", two_models.url,
                                   "--time-scale", "0.2", "--offline-concurrency", "2",
                                   "--store", str(tmp_path / "s"), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["request_class"] for r in doc["per class"]] == ["offline", "online"]
    assert [r["requests"] for r in doc["per class"]] == [4, 6]
    assert [r["offline"] for r in doc["per class"]] == [4, 0]
    assert [r["model"] for r in doc["per model"]] == ["big", "small"]
    assert doc["replay"][0]["offline_requests"] == 4
    res = CliRunner().invoke(app, ["replay", str(path), "--endpoint", two_models.url,
                                   "--store", str(tmp_path / "s")])
    assert res.exit_code == 1 and "--offline-concurrency" in res.output
