"""The report's sessions and KV-cache sections on real traces: the 231 agentic coding
conversations (WEKA), checked against their own JSON files and a plain-Python prefix cache, and
the Mooncake conversation and Azure LLM 2023 traces, which have no sessions (and no hash ids)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import kvcache, report
from servetrace.cli import app
from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def weka_store(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("weka") / "store"
    [rec] = ingest(shared / "agentic_coding_weka", store=Store(root), progress=False)
    return root, rec["trace"]


@pytest.fixture(scope="module")
def weka(weka_store: tuple[Path, str]) -> pl.DataFrame:
    root, trace = weka_store
    return Store(root).scan("requests", trace).collect()


@pytest.fixture(scope="module")
def files(shared: Path) -> dict[str, Counter]:
    """Per conversation, from its JSON file: LLM requests (sub-agents' included), sub-agent
    requests, sub-agents."""
    out: dict[str, Counter] = {}

    def walk(requests: list[dict], counts: Counter, depth: int) -> None:
        for r in requests:
            if r["type"] == "subagent":
                counts["subagents"] += 1
                walk(r["requests"], counts, depth + 1)
            else:
                counts["requests"] += 1
                counts["subagent_requests"] += depth > 0

    for path in sorted((shared / "agentic_coding_weka").glob("*.json")):
        doc = json.loads(path.read_text())
        counts: Counter = Counter()
        walk(doc["requests"], counts, 0)
        out[doc["id"]] = counts
    return out


ORACLE_BLOCKS = 1_000_000
"""Blocks of the smallest sessions the plain-Python cache replays (session-scoped ids make
sessions independent, so a subset of whole sessions is checked exactly)."""


def _oracle(requests: pl.DataFrame) -> pl.DataFrame:
    """An infinite prefix cache written plainly, per session in arrival order: a request's
    cached prefix is its leading run of ids that the session accessed before. Replays the
    smallest sessions up to :data:`ORACLE_BLOCKS` blocks in all."""
    sizes = (requests.group_by("session").agg(pl.col("hash_ids").list.len().sum().alias("n"))
             .sort("n", "session").filter(pl.col("n").cum_sum() <= ORACLE_BLOCKS))
    rows = (requests.filter(pl.col("session").is_in(sizes["session"].implode()))
            .sort("arrival_s", maintain_order=True).select("session", "turn", "hash_ids"))
    seen: dict[str, set[int]] = {}
    out = []
    for session, turn, ids in rows.iter_rows():
        got = seen.setdefault(session, set())
        cached = 0
        for h in ids:
            if h not in got:
                break
            cached += 1
        got.update(ids)
        out.append((session, turn, len(ids), cached))
    return pl.DataFrame(out, schema=["session", "turn", "blocks", "cached"], orient="row")


def _table(section: report.Section, caption: str) -> pl.DataFrame:
    [frame] = [f for c, f in section.tables if c.startswith(caption)]
    return frame


def test_session_section_accounts_for_every_request(weka: pl.DataFrame, files) -> None:
    section = report.session_structure(weka)
    figures = dict(_table(section, "Key figures").iter_rows())
    assert (figures["requests"], figures["sessions"]) == ("5,237", "231")
    table = _table(section, "Sessions, most requests first")
    assert table.height == 231 and table["requests"].sum() == 5237
    assert table["requests"].is_sorted(descending=True)
    want = pl.DataFrame({"session": list(files),
                         **{k: [c[k] for c in files.values()]
                            for k in ("requests", "subagent_requests", "subagents")}})
    got = table.select("session", "requests", "subagent_requests", "subagents").sort("session")
    assert got.equals(want.sort("session"))
    assert table["max_depth"].max() == 1 and "tool_s" not in table.columns   # WEKA has none
    turns = _table(section, "Per turn index")
    first = turns.row(0, named=True)   # every conversation and every sub-agent starts a turn 1
    assert (first["turn"], first["requests"]) == (1, 231 + sum(c["subagents"]
                                                                 for c in files.values()))
    assert set(turns.columns) == {"turn", "requests", "think_s_p50", "server_s_p50",
                                  "growth_tokens_p50"}
    fan = _table(section, "Sub-agent fan-out")
    assert fan.filter(pl.col("level") == "session")["with_subagents"].item() == sum(
        c["subagents"] > 0 for c in files.values())
    assert _table(section, "Request types")["requests"].sum() == 5237
    assert len(section.charts) == 3 and not section.notes


@pytest.fixture(scope="module")
def kv_section(weka: pl.DataFrame) -> report.Section:
    return report.kv_cache(weka, block_tokens=64, scope="session")


def test_kv_section_matches_a_plain_prefix_cache(weka: pl.DataFrame, kv_section) -> None:
    section = kv_section
    per = _table(section, "Per session")
    assert per.height == 231 and per["requests"].sum() == 5237
    assert "a session hits its own blocks only" in [c for c, _ in section.tables][-1]
    oracle = _oracle(weka)
    assert oracle["session"].n_unique() > 80
    want = oracle.group_by("session").agg((pl.col("cached").sum() / pl.col("blocks").sum())
                                          .alias("want"))
    joined = per.join(want, on="session")
    assert joined.height == want.height
    assert (joined["block_hit_ratio"] - joined["want"]).abs().max() < 1e-12
    # the whole-trace figures are the per-session ones pooled
    blocks = weka["hash_ids"].list.len().sum()
    assert per["input_blocks"].sum() == blocks
    cached = (per["block_hit_ratio"] * per["input_blocks"]).sum()
    infinite = dict(_table(section, "Infinite cache").select("figure", "value").iter_rows())
    assert infinite["block_hit_ratio"] == f"{cached / blocks:.4g}" == "0.9216"
    assert f"{blocks:,} blocks of 64 tokens, ids scoped per session" in section.lead
    curve = _table(section, "LRU cache by capacity")
    assert curve["capacity_blocks"].max() == kvcache.footprint_blocks(weka, scope="session")
    assert curve["block_hit_ratio"].is_sorted()
    assert curve["block_hit_ratio"][-1] == pytest.approx(cached / blocks, abs=1e-9)
    assert curve["block_hit_ratio"][0] < 0.01          # one block holds almost nothing
    by_turn = _table(section, "Hit ratio by turn")
    assert by_turn["requests"].sum() == 5237
    first = by_turn.row(0, named=True)   # a first turn finds nothing of its session cached
    assert first["turn"] == 1 and first["block_hit_ratio"] < 0.01
    assert len(section.charts) == 3 and not section.notes


def test_report_html_of_the_agentic_sessions(weka_store, kv_section, monkeypatch) -> None:
    """`servetrace report` passes the trace's block size and scope (64, session) to the KV
    section; the arrival and length sections, tested elsewhere, are stubbed for speed."""
    root, trace = weka_store
    monkeypatch.setenv("SERVETRACE_STORE", str(root))
    stub = report.Section("stub")
    monkeypatch.setattr(report, "arrivals", lambda *a, **k: stub)
    monkeypatch.setattr(report, "token_lengths", lambda *a, **k: stub)
    seen = {}

    def kv(requests, *, block_tokens, scope, **kw):
        seen.update(block_tokens=block_tokens, scope=scope, requests=requests.height)
        return kv_section

    monkeypatch.setattr(report, "kv_cache", kv)
    out = root.parent / "weka.html"
    res = runner.invoke(app, ["report", trace, "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    titles = re.findall(r"<h2 id='s\d+'>([^<]*)</h2>", page)
    assert titles == ["stub", "stub", "Sessions and agents", "KV-cache prefix reuse"]
    assert seen == {"block_tokens": 64, "scope": "session", "requests": 5237}
    parts = re.split(r"<h2 id='s\d+'>", page)
    sessions_html, kv_html = parts[-2], parts[-1]
    assert sessions_html.count("<svg") == 3 and kv_html.count("<svg") == 3
    for axis in ("turn index", "prompt size (input tokens)", "cache capacity (tokens, log scale)",
                 "token hit ratio (cached / input tokens)", "time per request, p50 (s)"):
        assert axis in page
    for table in re.findall(r"<table>.*?</table>", sessions_html + kv_html, flags=re.S):
        assert table.count("<tr>") <= report.MAX_TABLE_ROWS + 1   # header + at most 25 rows
        assert "<caption>" in table
    assert "(first 25 of 231 rows)" in sessions_html and "(first 25 of 231 rows)" in kv_html


def test_no_session_or_kv_section_without_sessions_or_hash_ids(shared: Path, tmp_path: Path):
    store = Store(tmp_path / "store")
    [moon] = ingest(shared / "mooncake_fast25/conversation_trace.jsonl", store=store,
                    progress=False)
    req = store.scan("requests", moon["trace"]).collect()
    assert not report.has_sessions(req) and report.has_hash_ids(req)
    section = report.kv_cache(req, block_tokens=512)
    infinite = dict(_table(section, "Infinite cache").select("figure", "value").iter_rows())
    assert infinite["block_seen_ratio"] == "0.3664"   # the module's documented figure
    assert "per-session hit ratios: the trace names no sessions" in section.notes
    assert "ids scoped per trace (global)" in section.lead
    assert not [c for c, _ in section.tables if c.startswith("Per session")]
    [azure] = ingest(shared / "azure_llm_2023/AzureLLMInferenceTrace_code.csv", store=store,
                     progress=False)
    code = store.scan("requests", azure["trace"]).collect()
    assert not report.has_sessions(code) and not report.has_hash_ids(code)
    stub = report.Section("stub")
    for frame, kv in ((req, True), (code, False)):
        # only the builders' choice is under test: the arrival and length sections are stubbed
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(report, "arrivals", lambda *a, **k: stub)
            mp.setattr(report, "token_lengths", lambda *a, **k: stub)
            mp.setattr(report, "kv_cache", lambda *a, **k: report.Section("kv"))
            titles = [s.title for s in report.for_trace({"requests": frame},
                                                        hash_block_tokens=512)]
        assert titles == ["stub", "stub", *(["kv"] if kv else [])]
