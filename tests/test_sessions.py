"""Sessions, turns and agents: a hand-built turn DAG with known answers, and the real Mooncake
conversation trace (no sessions at all) for the absent-columns path."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from servetrace.analysis import sessions
from servetrace.loaders import mooncake

# One trace, two sessions. s1: main agent r1 -> r2 -> r3 and a branch r2 -> r4; r2 launches
# sub-agents A (a1 -> a2) and B (b1). s2: q1 -> q2. Columns: id, session, parent, subagent,
# depth, turn, arrival, in, out, think, server, tool, latency, type.
_ROWS = [
    ("r1", "s1", None, None, 0, 1, 0.0, 100, 10, 0.0, 2.0, None, None, "text"),
    ("r2", "s1", "r1", None, 0, 2, 10.0, 150, 20, 5.0, 3.0, 1.0, None, "tool_result"),
    ("a1", "s1", "r2", "A", 1, 1, 12.0, 50, 5, 1.0, 1.0, None, None, "text"),
    ("b1", "s1", "r2", "B", 1, 1, 12.0, 40, 4, 1.0, 2.0, None, None, "text"),
    ("a2", "s1", "a1", "A", 1, 2, 14.0, 70, 5, 1.0, 1.0, 0.5, None, "tool_result"),
    ("r3", "s1", "r2", None, 0, 3, 20.0, 200, 10, 4.0, 2.5, 2.0, 3.0, "tool_result"),
    ("r4", "s1", "r2", None, 0, 3, 25.0, 180, 10, 3.0, 1.0, None, None, "text"),
    ("q1", "s2", None, None, 0, 1, 5.0, 10, 5, 0.0, 1.0, None, None, "text"),
    ("q2", "s2", "q1", None, 0, 2, 8.0, 30, 5, 2.0, 1.0, None, None, "text"),
]
_COLS = ["request_id", "session", "parent_request_id", "subagent", "agent_depth", "turn",
         "arrival_s", "input_tokens", "output_tokens", "think_s", "server_s", "tool_s",
         "latency_s", "request_type"]
_GROWTH = {"r1": None, "r2": 40, "a1": None, "b1": None, "a2": 15, "r3": 30, "r4": 10,
           "q1": None, "q2": 15}


@pytest.fixture
def dag() -> pl.DataFrame:
    frame = pl.DataFrame(_ROWS, schema=_COLS, orient="row")
    return frame.with_columns(pl.lit("t").alias("trace"),
                              pl.Series("model", ["m1"] * 7 + ["m2"] * 2))


@pytest.fixture(scope="module")
def moon(shared: Path) -> pl.DataFrame:
    path = shared / "mooncake_fast25/conversation_trace.jsonl"
    return mooncake.load([path], "t").tables["requests"]


def test_session_table(dag: pl.DataFrame) -> None:
    table = sessions.session_table(dag)
    assert table["session"].to_list() == ["s1", "s2"]
    assert table["trace"].to_list() == ["t", "t"]
    s1, s2 = table.rows(named=True)
    assert (s1["requests"], s1["turns"], s1["subagents"], s1["subagent_requests"],
            s1["max_depth"]) == (7, 3, 2, 3, 1)
    assert (s2["requests"], s2["turns"], s2["subagents"], s2["subagent_requests"]) == (2, 2, 0, 0)
    # s1 ends at r4's arrival + server time (26) after r3 (20 + latency 3); s2 at q2 + 1
    assert s1["duration_s"] == pytest.approx(26.0)
    assert s2["duration_s"] == pytest.approx(4.0)
    assert s1["input_tokens"] == 100 + 150 + 50 + 40 + 70 + 200 + 180
    assert s1["think_s"] == pytest.approx(15.0)
    assert s1["tool_s"] == pytest.approx(3.5) and s2["tool_s"] is None
    assert s1["cached_tokens"] is None  # absent column: null, not 0


def test_context_growth_follows_parents(dag: pl.DataFrame) -> None:
    growth = sessions.context_growth(dag)
    assert dict(zip(growth["request_id"], growth["growth_tokens"], strict=True)) == _GROWTH
    assert growth["request_id"].to_list() == dag["request_id"].to_list()  # input order
    assert set(growth.filter(pl.col("growth_tokens").is_not_null())["previous"]) == {"parent"}


def test_context_growth_in_arrival_order_without_parents(dag: pl.DataFrame) -> None:
    expected = {**_GROWTH, "r4": 180 - (200 + 10)}  # r4 now follows r3, not its parent r2
    for frame in (dag.drop("parent_request_id"),
                  dag.with_columns(pl.lit(None, pl.String).alias("parent_request_id"))):
        growth = sessions.context_growth(frame.lazy())
        assert dict(zip(growth["request_id"], growth["growth_tokens"], strict=True)) == expected
        assert set(growth["previous"].drop_nulls()) == {"arrival"}


def test_turn_stats(dag: pl.DataFrame) -> None:
    stats = sessions.turn_stats(dag)
    assert stats.columns == ["turn", "metric", "requests", "n", "mean", "p50", "p90", "p99"]
    think = stats.filter(pl.col("metric") == "think_s")
    assert think["turn"].to_list() == [1, 2, 3]
    assert think["requests"].to_list() == [4, 3, 2]
    # turn 1: r1 0, a1 1, b1 1, q1 0; turn 2: r2 5, a2 1, q2 2; turn 3: r3 4, r4 3
    assert think["p50"].to_list() == pytest.approx([0.5, 2.0, 3.5])
    growth = stats.filter((pl.col("metric") == "growth_tokens") & (pl.col("turn") == 2))
    assert growth.row(0, named=True)["n"] == 3
    assert growth.row(0, named=True)["mean"] == pytest.approx((40 + 15 + 15) / 3)
    tool = stats.filter((pl.col("metric") == "tool_s") & (pl.col("turn") == 1))
    assert tool.row(0, named=True)["n"] == 0 and tool.row(0, named=True)["mean"] is None


def test_derived_turns(dag: pl.DataFrame) -> None:
    stats = sessions.turn_stats(dag.drop("turn"), quantiles=(0.5,))
    think = stats.filter(pl.col("metric") == "think_s")
    # main s1 in arrival order r1 r2 r3 r4 -> turns 1..4; A: a1 1, a2 2; B: b1 1; s2: 1, 2
    assert think["turn"].to_list() == [1, 2, 3, 4]
    assert think["requests"].to_list() == [4, 3, 1, 1]
    assert sessions.session_table(dag.drop("turn"))["turns"].to_list() == [4, 2]


def test_subagents_and_fanout(dag: pl.DataFrame) -> None:
    agents = sessions.subagent_table(dag)
    assert agents["subagent"].to_list() == ["A", "B"]
    assert agents["spawned_by"].to_list() == ["r2", "r2"]
    assert agents["requests"].to_list() == [2, 1]
    assert agents["duration_s"].to_list() == pytest.approx([3.0, 2.0])
    out = sessions.fanout(dag)
    assert out["level"].to_list() == ["session", "parent_request"]
    ses, par = out.rows(named=True)
    assert (ses["units"], ses["with_subagents"], ses["mean"], ses["max"]) == (2, 1, 1.0, 2)
    assert (par["units"], par["mean"], par["max"], par["max_depth"]) == (1, 2.0, 2, 1)
    no_parents = sessions.fanout(dag.drop("parent_request_id"))
    assert no_parents.row(1, named=True)["units"] == 0
    assert no_parents.row(1, named=True)["mean"] is None


def test_request_type_mix_by_model(dag: pl.DataFrame) -> None:
    mix = sessions.request_type_mix(dag, by="model")
    assert mix.select("model", "request_type", "requests").rows() == [
        ("m1", "text", 4), ("m1", "tool_result", 3), ("m2", "text", 2)]
    assert mix["share"].to_list() == pytest.approx([4 / 7, 3 / 7, 1.0])


def test_summary(dag: pl.DataFrame) -> None:
    row = sessions.summary(dag).row(0, named=True)
    assert (row["requests"], row["sessions"]) == (9, 2)
    assert row["requests_per_session_mean"] == pytest.approx(4.5)
    assert row["requests_per_session_p50"] == pytest.approx(4.5)
    assert row["turns_per_session_mean"] == pytest.approx(2.5)
    # think: 0 0 1 1 1 2 3 4 5; growth: 10 15 15 30 40
    assert row["think_s_p50"] == pytest.approx(1.0)
    assert row["context_growth_p50"] == pytest.approx(15.0)
    assert row["subagent_share"] == pytest.approx(3 / 9)
    assert row["sessions_with_subagents"] == pytest.approx(0.5)
    by_model = sessions.summary(dag, by="model")
    assert by_model["model"].to_list() == ["m1", "m2"]
    assert by_model["sessions"].to_list() == [1, 1]
    assert by_model["subagent_share"].to_list() == pytest.approx([3 / 7, 0.0])


def test_all_null_columns_read_as_absent(dag: pl.DataFrame) -> None:
    nulls = dag.with_columns(
        pl.lit(None, pl.String).alias(c) for c in ("subagent", "parent_request_id")
    ).with_columns(pl.lit(None, pl.Int64).alias(c) for c in ("agent_depth", "turn"))
    table = sessions.session_table(nulls)
    assert table["subagents"].to_list() == [None, None]  # unknown, not 0
    assert sessions.summary(nulls)["subagent_share"].to_list() == [None]


def test_bad_input(dag: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="tenant"):
        sessions.summary(dag, by="tenant")
    with pytest.raises(ValueError, match="input_tokens"):
        sessions.session_table(dag.drop("input_tokens"))
    with pytest.raises(TypeError):
        sessions.summary([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="result column"):
        sessions.request_type_mix(dag, by="request_type")
    with pytest.raises(ValueError, match="result column"):
        sessions.turn_stats(dag, by="turn")
    with pytest.raises(ValueError, match="quantile"):
        sessions.turn_stats(dag, quantiles=(1.5,))


def test_mooncake_has_no_sessions(moon: pl.DataFrame) -> None:
    """The real conversation trace has arrival, lengths and hash ids only: every per-session
    figure is empty or null, and nothing crashes."""
    assert sessions.session_table(moon).height == 0
    assert sessions.subagent_table(moon).height == 0
    growth = sessions.context_growth(moon)
    assert growth.height == moon.height and growth["growth_tokens"].null_count() == moon.height
    row = sessions.summary(moon).row(0, named=True)
    assert (row["requests"], row["sessions"]) == (moon.height, 0)
    assert row["requests_per_session_mean"] is None and row["think_s_p50"] is None
    assert row["context_growth_p50"] is None and row["subagent_share"] is None
    stats = sessions.turn_stats(moon)
    assert stats["turn"].null_count() == stats.height == 4
    assert stats["requests"].to_list() == [moon.height] * 4
    mix = sessions.request_type_mix(moon)
    assert mix.rows() == [(None, moon.height, 1.0, moon["input_tokens"].sum(),
                           moon["output_tokens"].sum(), 1.0)]
    out = sessions.fanout(moon)
    assert out["units"].to_list() == [0, 0]


def _weka_rows(path: Path) -> tuple[list[dict], dict]:
    """The LLM requests of one agentic-coding conversation, flattened by hand (the loader is
    another module's work): sub-agent requests get the sub-agent's id, depth and its start
    time added to their own ``t``."""
    import json

    doc = json.loads(path.read_text())
    rows: list[dict] = []

    def walk(requests: list[dict], base: float, agent: str | None, depth: int) -> None:
        for r in requests:
            if r["type"] == "subagent":
                walk(r["requests"], base + r["t"], r["agent_id"], depth + 1)
                continue
            rows.append({"trace": "weka", "session": doc["id"], "subagent": agent,
                         "agent_depth": depth, "arrival_s": base + r["t"],
                         "input_tokens": r["in"], "output_tokens": r["out"],
                         "think_s": r.get("think_time"), "server_s": r.get("api_time"),
                         "request_type": r["type"], "model": r["model"]})

    walk(doc["requests"], 0.0, None, 0)
    return rows, doc["totals"]


def test_agentic_coding_sessions(shared: Path) -> None:
    """The 231 real conversations: the session table agrees with each file's own totals."""
    rows, totals = [], {}
    for path in sorted((shared / "agentic_coding_weka").glob("*.json")):
        more, total = _weka_rows(path)
        rows += more
        totals[more[0]["session"]] = total
    frame = pl.DataFrame(rows, infer_schema_length=None)
    assert frame.height == 5237
    table = sessions.session_table(frame)
    assert table.height == 231
    expected = pl.DataFrame({
        "session": list(totals),
        "subagents": [t.get("subagent_count", 0) for t in totals.values()],
        "input": [t["combined_tokens"]["input"] for t in totals.values()],
        "output": [t["combined_tokens"]["output"] for t in totals.values()]})
    joined = table.join(expected, on="session")
    assert joined["subagents"].to_list() == joined["subagents_right"].to_list()
    assert joined["input_tokens"].to_list() == joined["input"].to_list()
    assert joined["output_tokens"].to_list() == joined["output"].to_list()
    assert table["subagent_requests"].sum() == 5237 - 5136
    row = sessions.summary(frame).row(0, named=True)
    assert (row["requests"], row["sessions"]) == (5237, 231)
    assert row["subagent_share"] == pytest.approx(101 / 5237)
    # context grows turn by turn: most growth is positive, a few compactions are negative
    growth = sessions.context_growth(frame)["growth_tokens"].drop_nulls()
    assert growth.len() == 5237 - 231 - 9
    assert 0.5 < (growth >= 0).mean() < 1.0
    assert row["context_growth_p50"] > 0


def test_parent_links_need_no_session(dag: pl.DataFrame) -> None:
    """A Qwen-Bailian-like trace: parent links and turns, no session column."""
    frame = dag.drop("session", "subagent", "agent_depth")
    growth = sessions.context_growth(frame)
    got = dict(zip(growth["request_id"], growth["growth_tokens"], strict=True))
    # without agent ids a sub-agent's first request follows its launcher r2
    assert got == {**_GROWTH, "a1": 50 - 170, "b1": 40 - 170}
    assert sessions.session_table(frame).height == 0
    assert sessions.summary(frame)["context_growth_p50"].to_list() == [15.0]


def test_cli_sessions_on_a_session_trace(shared: Path, tmp_path: Path):
    """BurstGPT's sample: 1,000 requests in 299 sessions (counted here independently)."""
    import json

    from typer.testing import CliRunner

    from servetrace.cli import app
    from servetrace.loaders import Store, ingest

    store = Store(tmp_path / "s")
    ingest(shared / "burstgpt_sample" / "sample.jsonl", store=store)
    want = store.sql("SELECT count(DISTINCT session) FROM requests").item()
    res = CliRunner().invoke(app, ["sessions", "burstgpt/sample", "--store", str(store.root),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    [summary] = json.loads(res.stdout)["sessions"]
    assert summary["requests"] == 1000 and summary["sessions"] == want == 299
    assert summary["requests_per_session_mean"] == pytest.approx(1000 / 299)
