"""Request classes of a workload mix in the analyses: the per-class mix table, fairness with
the class as the tenant key, and the report's per-class section (issue 20).

Ground truth: hand-built tables whose per-class counts, tokens, rates and percentiles are
known, and the flood of ``test_fairness`` (one class sends 400 requests at once, the other one
every 2 s), whose FCFS and VTC latencies are known in closed form.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import classes, report
from servetrace.analysis import fairness as fa
from servetrace.cli import app
from servetrace.loaders import schema


def _mix() -> pl.DataFrame:
    """online: 6 requests, offline: 3, batch-less rows: 1; arrivals over 0..100 s."""
    return pl.DataFrame({
        "arrival_s": [0.0, 10, 20, 30, 40, 50, 60, 70, 80, 100],
        "request_class": ["online"] * 6 + ["offline"] * 3 + [None],
        "offline": [False] * 6 + [True] * 3 + [None],
        "priority": [0, 0, 1, 1, 0, 0, 2, 2, 2, None],
        "slo_ttft_s": [1.0] * 6 + [None] * 3 + [None],
        "slo_tpot_s": [0.05, 0.05, 0.05, 0.1, 0.1, 0.1, None, None, None, None],
        "model": ["a", "b", "a", "a", "b", "a", "c", "c", "c", None],
        "input_tokens": [100, 200, 300, 400, 500, 600, 1000, 1000, 1000, 50],
        "output_tokens": [10, 10, 10, 10, 10, 10, 500, 500, 500, 0],
    })


def test_class_mix_known_answer():
    mix = classes.class_mix(_mix(), "class")
    assert mix["request_class"].to_list() == ["online", "offline", None]
    assert mix["requests"].to_list() == [6, 3, 1]
    assert mix["request_share"].to_list() == pytest.approx([0.6, 0.3, 0.1])
    assert mix["input_tokens"].to_list() == [2100, 3000, 50]
    assert mix["output_tokens"].to_list() == [60, 1500, 0]
    total = 2100 + 3000 + 50 + 60 + 1500
    assert mix["token_share"].to_list() == pytest.approx([2160 / total, 4500 / total,
                                                          50 / total])
    assert mix["rate_rps"].to_list() == pytest.approx([0.06, 0.03, 0.01])  # over 100 s
    assert mix["offline"].to_list() == [0, 3, 0]
    assert mix["priority_min"].to_list() == [0, 2, None]
    assert mix["priority_max"].to_list() == [1, 2, None]
    assert mix["slo_ttft_s"].to_list() == [1.0, None, None]
    assert mix["slo_tpot_s"].to_list() == [None, None, None]  # online mixes 0.05 and 0.1
    assert mix["models"].to_list() == [2, 1, 0]
    assert mix["input_p50"].to_list() == pytest.approx([350.0, 1000.0, 50.0])
    assert mix["input_p99"][0] == pytest.approx(500 + 0.95 * 100)  # linear, 6 values
    by_model = classes.class_mix(_mix(), "model")
    assert by_model["model"].to_list() == ["a", "c", "b", None]  # most requests first
    assert by_model["requests"].to_list() == [4, 3, 2, 1]


def test_no_classes_is_refused_not_a_null_class():
    plain = _mix().drop("request_class")
    assert not classes.has_classes(plain)
    assert not classes.has_classes(_mix().with_columns(pl.lit(None, pl.String)
                                                       .alias("request_class")))
    assert classes.has_classes(_mix().lazy())
    with pytest.raises(ValueError, match="missing column 'request_class'"):
        classes.class_mix(plain)
    with pytest.raises(ValueError, match="null in every row"):
        classes.class_mix(plain.with_columns(pl.lit(None, pl.String).alias("request_class")))


# -- fairness across classes -------------------------------------------------------------------
def _flood() -> pl.DataFrame:
    """Class ``offline``: 400 requests at t = 0; class ``online``: one every 2 s from
    t = 0.001 for 200 s; all 100 tokens in, 100 out; every request of one tenant."""
    online = np.arange(0.0, 200.0, 2.0) + 0.001
    arrival = np.concatenate([np.zeros(400), online])
    return pl.DataFrame({
        "tenant": ["one"] * arrival.size, "arrival_s": arrival,
        "request_class": ["offline"] * 400 + ["online"] * online.size,
        "input_tokens": [100] * arrival.size, "output_tokens": [100] * arrival.size})


FLOOD_SERVER = fa.Server(10_000.0, 50.0, 4, 1000)


def test_fairness_by_class_protects_the_online_class():
    """With the class as the tenant key VTC serves the online class as it asks (as the
    flooded tenant of test_fairness); keyed by the one tenant it waits out the flood as under
    FCFS (100 waves of 0.04 s prefill + 2 s decode)."""
    flood = _flood()
    service = fa.tenant_service(flood, by="class")
    assert dict(zip(service["request_class"], service["service"], strict=True)) == {
        "offline": 400 * 300.0, "online": 100 * 300.0}
    conc = fa.concentration(flood, by="class").row(0, named=True)
    assert conc["jain"] == pytest.approx((400 + 100) ** 2 / (2 * (400**2 + 100**2)))

    def online(scheduler: str, by: str) -> dict:
        lat = fa.tenant_latency(fa.simulate(flood, FLOOD_SERVER, scheduler, by=by))
        return lat.filter(pl.col("tenant") == "online").row(0, named=True) if by != "tenant" \
            else lat.row(0, named=True)

    assert online("fcfs", "class")["latency_mean_s"] > 100.0
    assert online("vtc", "class")["latency_mean_s"] < 5.0
    assert online("vtc", "request_class")["latency_mean_s"] < 5.0
    one = fa.simulate(flood, FLOOD_SERVER, "vtc", by="tenant").requests
    late = one.filter(pl.col("arrival_s") > 0)["start_s"].min()
    assert late == pytest.approx(100 * (0.04 + 2.0), abs=0.05)


def test_fairness_command_by_class(tmp_path):
    path = tmp_path / "flood.parquet"
    schema.conform("requests", _flood().with_columns(pl.lit("f").alias("trace"))
                   ).write_parquet(path)
    runner = CliRunner()
    res = runner.invoke(app, ["fairness", str(path), "--by", "class", "--scheduler", "vtc",
                              "--format", "json", "--store", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {r["tenant"] for r in doc["vtc_latency"]} == {"offline", "online"}
    plain = tmp_path / "plain.parquet"
    schema.conform("requests", _flood().drop("request_class").with_columns(
        pl.lit("f").alias("trace"))).write_parquet(plain)
    res = runner.invoke(app, ["fairness", str(plain), "--by", "class",
                              "--store", str(tmp_path / "s")])
    assert res.exit_code == 1 and "request_class" in res.output and "empty" in res.output
    assert "Traceback" not in res.output


# -- the report ------------------------------------------------------------------------------
def test_report_has_a_class_section_only_with_classes():
    frame = schema.conform("requests", _mix().with_columns(pl.lit("mix").alias("trace")))
    sections = report.for_trace({"requests": frame})
    titles = [s.title for s in sections]
    assert "Request classes" in titles
    section = sections[titles.index("Request classes")]
    _, table = section.tables[0]
    assert table.equals(classes.class_mix(frame))
    assert section.tables[1][0] == "Per model"
    assert len(section.charts) == 3  # rate per class over time, input and output ECDFs
    page = report.render("mix", sections)
    assert "Request classes" in page and "offline" in page
    assert "Request classes" not in [s.title for s in report.for_trace(
        {"requests": frame.with_columns(pl.lit(None, pl.String).alias("request_class"))})]


def test_analyze_by_class(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pl.DataFrame({"trace": ["m"] * n, "arrival_s": np.cumsum(rng.exponential(1.0, n)),
                          "request_class": rng.choice(["online", "offline"], n),
                          "input_tokens": rng.integers(1, 1000, n),
                          "output_tokens": rng.integers(1, 100, n)})
    path = tmp_path / "mix.parquet"
    schema.conform("requests", frame).write_parquet(path)
    res = CliRunner().invoke(app, ["analyze", str(path), "--by", "class", "--format", "json",
                                   "--store", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "online" in res.stdout and "request_class" in res.stdout
