"""The `servetrace` command: ingest, list, sql, demo; errors as one line, non-zero exit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import Store
from servetrace.synth.session_fidelity import session_naive

runner = CliRunner()


@pytest.fixture
def env(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "store"


def test_ingest_list_sql(env, mirror):
    path = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    res = runner.invoke(app, ["ingest", str(path)])
    assert res.exit_code == 0, res.output
    assert "azure_llm_2023/code: 8,819 rows read, 8,819 stored, 0 rejected" in res.output
    res = runner.invoke(app, ["list", "--format", "json"])
    [row] = json.loads(res.stdout)
    assert (row["trace"], row["table"], row["rows"], row["rejected"]) == \
        ("azure_llm_2023/code", "requests", 8819, 0)
    assert row["span_s"] == pytest.approx(3435.948056)
    res = runner.invoke(app, ["sql", "select count(*) as n from requests", "--format", "csv"])
    assert res.stdout == "n\n8819\n"


def test_ingest_with_trace_and_format(env, mirror):
    path = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    res = runner.invoke(app, ["ingest", str(path), "--as", "azure_llm_2023", "--trace", "mine"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sql", "select trace from traces", "--format", "json"])
    assert json.loads(res.stdout) == [{"trace": "mine"}]


@pytest.mark.parametrize(("args", "message"), [
    (["ingest", "no_such_dataset"], "unknown dataset or format 'no_such_dataset'"),
    (["ingest", "azure_llm_2023/nope"], "dataset 'azure_llm_2023' has no part 'nope'"),
    (["sql", "select * from nowhere"], "nowhere"),
    (["list", "--format", "xml"], "--format must be table, csv or json"),
])
def test_errors_are_one_line(env, args, message):
    Store(env).create()
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output


def test_bad_file_error_names_file_and_line(env, tmp_path):
    bad = tmp_path / "AzureLLMInferenceTrace_code.csv"
    bad.write_text("time,in,out\n1,2,3\n")
    res = runner.invoke(app, ["ingest", str(bad), "--as", "azure_llm_2023"])
    assert res.exit_code == 1
    assert f"{bad}:1: unexpected header" in res.output.replace("\n", "")


def test_demo_console_script(mirror, tmp_path):
    """The installed `servetrace demo`, as a user runs it: ingest, characterize, fit, compare,
    export and one report, ending with the report's path."""
    exe = Path(sys.executable).with_name("servetrace")
    env = {**os.environ, "SERVETRACE_MIRROR": str(mirror), "COLUMNS": "200"}
    proc = subprocess.run([str(exe), "demo", "--store", str(tmp_path / "s")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for step in ("ingesting azure_llm_2023", "characterizing mooncake/conversation",
                 "fitting and sampling azure_llm_2023/conv", "exporting for guidellm"):
        assert step in proc.stderr  # progress, on stderr
    demo = tmp_path / "s" / "demo"
    assert proc.stdout.strip().splitlines()[-1].endswith(f"report: {demo / 'report.html'}")
    assert "verdict" in proc.stdout and "win" in proc.stdout
    import duckdb

    with duckdb.connect(str(tmp_path / "s" / "servetrace.duckdb"), read_only=True) as con:
        rows = con.sql("select trace, count(*) from requests group by 1 order by 1").fetchall()
    assert rows == [("azure_llm_2023/code", 8819), ("azure_llm_2023/conv", 19366),
                    ("mooncake/conversation", 12031)]
    page = (demo / "report.html").read_text()
    assert page.count("<svg") >= 10 and "<script" not in page
    for title in ("azure_llm_2023/conv: token lengths", "mooncake/conversation: arrivals",
                  "Synthesis fidelity", "fitted on the first half"):
        assert title in page
    synth = pl.read_parquet(demo / "synthetic" / "azure_llm_2023_conv.parquet")
    assert 15_000 < synth.height < 24_000  # the real hour holds 19,366 requests
    vllm = [json.loads(x) for x in
            (demo / "exports" / "vllm-custom" / "mooncake_conversation.jsonl").open()]
    guide = [json.loads(x) for x in
             (demo / "exports" / "guidellm" / "mooncake_conversation.jsonl").open()]
    assert len(vllm) == len(guide) > 5_000
    assert {"prompt", "output_tokens"} <= set(vllm[0])
    assert {"timestamp", "input_length", "output_length"} <= set(guide[0])


def test_report_writes_every_analysis_that_applies(env, mirror, tmp_path):
    """Requests with tenants get arrivals, lengths and fairness; per-minute serverless counts
    get arrivals and keep-alive; cold starts get the component breakdown."""
    burst = mirror / "burstgpt_sample" / "sample.jsonl"
    fns = mirror / "azure_functions_2019"
    cold = mirror / "specimens" / "huawei_2025_cold_starts_R2.csv"
    for path in (burst, fns, cold):
        assert runner.invoke(app, ["ingest", str(path)]).exit_code == 0
    traces = json.loads(runner.invoke(app, ["list", "--format", "json"]).stdout)
    ids = sorted({t["trace"] for t in traces})
    expected = {"burstgpt": ("Arrivals and burstiness", "Token lengths", "Per-tenant fairness",
                             "Sessions and agents"),   # its sample has sessions, no hash ids
                "azure_functions_2019": ("Invocations and burstiness", "Keep-alive policies"),
                "huawei_2025": ("Cold starts",)}
    assert [i.split("/")[0] for i in ids] == sorted(expected)
    for trace in ids:
        out = tmp_path / f"{trace.replace('/', '_')}.html"
        res = runner.invoke(app, ["report", trace, "-o", str(out)])
        assert res.exit_code == 0, res.output
        page = out.read_text()
        titles = re.findall(r"<h2 id='s\d+'>([^<]*)</h2>", page)
        assert tuple(titles) == expected[trace.split("/")[0]], trace
    res = runner.invoke(app, ["report", "nope/trace", "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 1 and "no trace 'nope/trace'" in res.output


def test_datasets_lists_every_registered_dataset():
    res = runner.invoke(app, ["datasets", "--format", "json"])
    names = [d["name"] for d in json.loads(res.stdout)]
    assert names == ["azure_llm_2023", "azure_llm_2024", "azure_lmm_2025", "burstgpt",
                     "mooncake", "agentic_coding_weka", "qwen_bailian", "tracelab",
                     "azure_copilot_agents_2026", "servegen", "servegen_conversations",
                     "servegen_offline", "azure_functions_2019", "azure_functions_2021",
                     "huawei_2023", "huawei_2025", "ibm_code_engine"]


def test_export_stored_traces(env, mirror, tmp_path):
    conv = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    assert runner.invoke(app, ["ingest", str(conv)]).exit_code == 0
    res = runner.invoke(app, ["export", "azure_llm_2023/conv", "--to", "guidellm", "-o",
                              str(tmp_path / "g.jsonl")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert len(lines) == 19366
    assert json.loads(lines[1]) == {"timestamp": 4.314579, "input_length": 396,
                                    "output_length": 109}
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    res = runner.invoke(app, ["export", "azure_functions_2019/sample", "--to", "vhive", "-o",
                              str(tmp_path / "vh")])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "vh" / "invocations.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["HashOwner", "HashApp", "HashFunction", "Trigger", "480"]
    res = runner.invoke(app, ["export", "azure_llm_2023/conv", "--to", "nope", "-o", "x"])
    assert res.exit_code == 1 and "unknown export format 'nope'; known formats:" in res.output


def test_export_serverless_formats(env, mirror, tmp_path):
    """Stored serverless traces and synthetic serverless Parquet export to vhive (per second
    with -O), faasrail and invocations-csv; options are typed and checked."""
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    res = runner.invoke(app, ["export", "azure_functions_2019/sample", "--to", "faasrail",
                              "-o", str(tmp_path / "spec.csv")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "spec.csv").read_text().splitlines()
    assert lines[0].startswith("avg,mapped_wreq,480,481,") and len(lines) > 100
    res = runner.invoke(app, ["export", "azure_functions_2019/sample", "--to",
                              "invocations-csv", "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 1 and "has no invocations rows" in res.output
    model, synth = tmp_path / "m.json", tmp_path / "s.parquet"
    assert runner.invoke(app, ["fit", "azure_functions_2019/sample", "-o",
                               str(model)]).exit_code == 0
    res = runner.invoke(app, ["generate", str(model), "--duration", "120", "--functions", "20",
                              "-o", str(synth)])
    assert res.exit_code == 0, res.output
    n = pl.read_parquet(synth).height
    res = runner.invoke(app, ["export", str(synth), "--to", "invocations-csv", "-O",
                              "tenancy=true", "-o", str(tmp_path / "i.csv")])
    assert res.exit_code == 0, res.output
    inv = pl.read_csv(tmp_path / "i.csv")
    assert inv.height == n and inv.columns[:4] == ["timestamp_s", "function", "owner", "app"]
    res = runner.invoke(app, ["export", str(synth), "--to", "vhive", "-O", "granularity=second",
                              "-o", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "v" / "invocations.csv").read_text().splitlines()[0].split(",")
    assert header[4] == "1" and len(header) - 4 <= 120
    res = runner.invoke(app, ["export", str(synth), "--to", "vhive", "-O", "granularity",
                              "-o", str(tmp_path / "w")])
    assert res.exit_code == 1 and "expected KEY=VALUE" in res.output
    res = runner.invoke(app, ["export", str(synth), "--to", "vhive", "-O", "first_minute=x",
                              "-o", str(tmp_path / "w")])
    assert res.exit_code == 1 and "first_minute=x: expected an integer" in res.output
    res = runner.invoke(app, ["export", str(synth), "--to", "faasrail", "-O", "seed=1",
                              "-o", str(tmp_path / "w.csv")])
    assert res.exit_code == 1 and "--option seed: faasrail accepts" in res.output


def test_export_prints_consumer_commands(env, mirror, tmp_path):
    """`--to help` needs no source; vLLM gets its block size and row count on the command
    line; SGLang's default re-chunks 512-token blocks to its 128; flags a format does not
    take are refused."""
    res = runner.invoke(app, ["export", "--to", "help"])
    assert res.exit_code == 0 and "aiperf-bailian" in res.output and "vidur-pypi" in res.output
    moon = mirror / "mooncake_fast25" / "conversation_trace.jsonl"
    res = runner.invoke(app, ["ingest", str(moon), "--trace", "moon"])
    assert res.exit_code == 0, res.output
    path = tmp_path / "v.jsonl"
    res = runner.invoke(app, ["export", "moon", "--to", "vllm-mooncake", "-o", str(path)])
    assert res.exit_code == 0, res.output
    assert (f"vllm bench serve --backend vllm --model MODEL --dataset-name timed_trace "
            f"--dataset-path {path} --timed-trace-chunk-hash-size 512 --num-prompts 12031"
            ) in res.output.replace("\n", " ")
    res = runner.invoke(app, ["export", "moon", "--to", "sglang-mooncake", "-o",
                              str(tmp_path / "s.jsonl")])
    assert res.exit_code == 0 and "--num-prompts 12031" in res.output
    first = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert first["input_length"] == 6758 and first["hash_ids"] == list(range(53))
    res = runner.invoke(app, ["export", "moon", "--to", "vidur", "--block-size", "16",
                              "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 1 and "--block-size does not apply" in res.output
    res = runner.invoke(app, ["export", "moon", "--to", "vllm-mooncake"])
    assert res.exit_code == 1 and "give a SOURCE trace and -o OUTPUT" in res.output
    res = runner.invoke(app, ["export", "moon", "--to", "vidur-pypi", "--set",
                              "date=2024-05-01", "-o", str(tmp_path / "p.csv")])
    assert res.exit_code == 0 and "--trace_request_generator_config_date 2024-05-01" in \
        res.output.replace("\n", " ")
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "2024-05-01,0.0,6758,500"


def test_coldstart_and_fairness_json(env, mirror):
    cold = mirror / "specimens" / "huawei_2025_cold_starts_all_regions.csv"
    assert runner.invoke(app, ["ingest", str(cold), "--trace", "hw/cold"]).exit_code == 0
    res = runner.invoke(app, ["coldstart", "hw/cold", "--by", "region", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"][0]["n_cold_starts"] == 10
    shares = {}
    for row in doc["components"]:
        shares[row["region"]] = shares.get(row["region"], 0.0) + row["share"]
    assert shares == pytest.approx({"R1": 1.0, "R5": 1.0})  # the four parts make the total
    sample = mirror / "burstgpt_sample" / "sample.jsonl"
    assert runner.invoke(app, ["ingest", str(sample)]).exit_code == 0
    res = runner.invoke(app, ["fairness", "burstgpt/sample", "--scheduler", "vtc",
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"][0]["tenants"] == 299 and doc["summary"][0]["requests"] == 1000
    assert {"vtc_service_difference", "vtc_latency"} <= set(doc)
    res = runner.invoke(app, ["coldstart", "burstgpt/sample"])
    assert res.exit_code == 1 and "has no cold_starts rows" in res.output


def test_fit_generate_export(env, mirror, tmp_path):
    conv = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    assert runner.invoke(app, ["ingest", str(conv)]).exit_code == 0
    model = tmp_path / "m.json"
    res = runner.invoke(app, ["fit", "azure_llm_2023/conv", "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert json.loads(model.read_text())  # a plain JSON document
    runs = []
    for seed in (7, 7, 8):
        path = tmp_path / f"s{len(runs)}.parquet"
        res = runner.invoke(app, ["generate", str(model), "--duration", "600", "--seed",
                                  str(seed), "--rate-scale", "2", "-o", str(path)])
        assert res.exit_code == 0, res.output
        runs.append(pl.read_parquet(path))
    assert runs[0].equals(runs[1]) and not runs[0].equals(runs[2])
    # twice the fitted 5.53 req/s over 600 s: 6,636 expected; bursty, so a wide margin
    assert 4_000 < runs[0].height < 10_000
    meta = pl.read_parquet_metadata(tmp_path / "s0.parquet")
    [record] = json.loads(meta["servetrace:scaling"])
    assert (record["op"], record["seed"], record["rate_scale"]) == ("sample", "7", "2.0")
    res = runner.invoke(app, ["export", str(tmp_path / "s0.parquet"), "--to", "vidur", "-o",
                              str(tmp_path / "v.csv")])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "v.csv").read_text().splitlines()) == runs[0].height + 1
    res = runner.invoke(app, ["generate", str(model), "--duration", "1", "-o", "x.csv"])
    assert res.exit_code == 1 and "write a .parquet file" in res.output


def test_analyze_prints_figures_and_writes_a_self_contained_report(env, mirror, tmp_path):
    sample = mirror / "mooncake_fast25" / "conversation_trace.jsonl"
    assert runner.invoke(app, ["ingest", str(sample)]).exit_code == 0
    res = runner.invoke(app, ["analyze", "mooncake/conversation", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [arrivals] = doc["arrivals"]
    assert arrivals["n"] == 12031 and arrivals["resolution_s"] == 3.0  # the 3 s ticks
    assert doc["tokens"][0]["n"] == 12031
    report, png = tmp_path / "r.html", tmp_path / "png"
    res = runner.invoke(app, ["analyze", "mooncake/conversation", "--report", str(report),
                              "--png", str(png)])
    assert res.exit_code == 0, res.output
    page = report.read_text()
    assert "<script" not in page and "src=" not in page  # nothing to fetch when viewed
    assert page.count("<svg") == len(list(png.glob("*.png"))) >= 6
    # issue 17, item 10: files named after what they show, not chart_01.png ...
    names = {p.name for p in png.glob("*.png")}
    assert {"index_of_dispersion_across_time_scales.png", "arrival_rate.png",
            "input_tokens_data_and_fits.png"} <= names, names
    assert not any(n.startswith("chart_") for n in names)
    assert "Apache-2.0" in page and "Index of dispersion" in page
    res = runner.invoke(app, ["analyze", "mooncake/conversation", "--by", "nope"])
    assert res.exit_code == 1 and "--by 'nope'" in res.output


def test_compare_reports_the_model_and_both_baselines(env, mirror, tmp_path):
    conv = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    assert runner.invoke(app, ["ingest", str(conv)]).exit_code == 0
    model, synth = tmp_path / "m.json", tmp_path / "s.parquet"
    assert runner.invoke(app, ["fit", "azure_llm_2023/conv", "-o", str(model)]).exit_code == 0
    assert runner.invoke(app, ["generate", str(model), "--duration", "3500", "-o",
                               str(synth)]).exit_code == 0
    res = runner.invoke(app, ["compare", "azure_llm_2023/conv", str(synth), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["metric"]: r for r in json.loads(res.stdout)["fidelity (errors; lower is better)"]}
    assert {"model", "poisson", "gamma", "model_best"} <= set(rows["hurst_av"])
    assert rows["hurst_av"]["model"] < rows["hurst_av"]["poisson"]
    second = tmp_path / "s2.parquet"
    assert runner.invoke(app, ["generate", str(model), "--duration", "3500", "--seed", "1",
                               "-o", str(second)]).exit_code == 0
    res = runner.invoke(app, ["compare", "azure_llm_2023/conv", str(synth), str(second),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    two = {r["metric"]: r for r in json.loads(res.stdout)["fidelity (errors; lower is better)"]}
    assert two["hurst_av"]["model_sd"] >= 0  # two runs: means and their spread
    assert two["hurst_av"]["verdict"] in {"win", "tie"}  # conv's H 0.78 against flat renewals
    assert two["hurst_av"]["model"] != rows["hurst_av"]["model"]


def test_keepalive_tradeoff_json(env, mirror):
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    res = runner.invoke(app, ["keepalive", "azure_functions_2019/sample", "--keep-alive", "60",
                              "--keep-alive", "600", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    fixed = [r for r in doc["tradeoff"] if r["policy"] == "fixed"]
    assert [r["keep_alive_s"] for r in fixed] == [60, 600]
    # a longer keep-alive: fewer cold starts, more idle memory
    assert fixed[0]["cold_starts"] > fixed[1]["cold_starts"]
    assert fixed[0]["wasted_gb_s"] < fixed[1]["wasted_gb_s"]
    assert doc["hybrid_overall"][0]["invocations"] == fixed[0]["invocations"]


def test_replay_against_the_local_server(env, mirror, tmp_path):
    from servetrace.synth.server import ServerConfig, serve

    rows = (mirror / "burstgpt_sample" / "sample.jsonl").read_text().splitlines()[:30]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(rows) + "\n")
    assert runner.invoke(app, ["ingest", str(small), "--as", "burstgpt",
                               "--trace", "small"]).exit_code == 0
    with serve(ServerConfig()) as url:
        res = runner.invoke(app, ["replay", "small", "--endpoint", url, "--time-scale",
                                  "0.001", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [summary] = doc["replay"]
    assert (summary["requests"], summary["succeeded"]) == (30, 30)
    assert doc["trace"].startswith("replay/small/")
    res = runner.invoke(app, ["sql", f"select count(*) as n from requests where trace = "
                              f"'{doc['trace']}'", "--format", "csv"])
    assert res.stdout == "n\n30\n"


def test_compare_with_a_reference_is_the_python_holdout(mirror, tmp_path):
    # issue 17, item 8: `compare` built its baselines from the trace it scored against, so a
    # held-out comparison through the CLI told the baselines the future
    from servetrace.loaders import azure_llm_2023
    from servetrace.synth import fidelity as fid
    from servetrace.synth.model import fit

    conv = azure_llm_2023.load([mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"],
                               "azure_llm_2023/conv").tables["requests"]
    first, second = fid.split_half(conv)
    model = fid._advance(fit(first, seed=0), fid._span(conv) / 2)
    paths = {name: tmp_path / f"{name}.parquet" for name in ("first", "second", "synth")}
    first.write_parquet(paths["first"])
    second.write_parquet(paths["second"])
    model.sample(fid._span(second), seed=0).write_parquet(paths["synth"])
    key = "fidelity (errors; lower is better)"

    def compare(*extra: str) -> dict:
        res = runner.invoke(app, ["compare", str(paths["second"]), str(paths["synth"]),
                                  *extra, "--format", "json"])
        assert res.exit_code == 0, res.output
        return {r["metric"]: r for r in json.loads(res.stdout)[key]}

    held = compare("--reference", str(paths["first"]))
    expect = {r["metric"]: r for r in fid.holdout(conv, seed=0).to_dicts()}
    assert held.keys() == expect.keys()
    for metric, row in expect.items():
        for column in ("model", "poisson", "gamma"):
            assert held[metric][column] == pytest.approx(row[column], nan_ok=True), metric
    told = compare()                            # baselines fitted on the test half itself
    assert any(told[m]["gamma"] != held[m]["gamma"] for m in held)
    assert told["iat_cv"]["model"] == held["iat_cv"]["model"]   # the model's errors agree


def test_by_on_a_column_empty_for_the_whole_trace_fails_naming_the_filled_ones(env, mirror,
                                                                               tmp_path):
    # issue 17, item 11: Azure LLM 2023 has no tenant or model; one null group says nothing
    code = mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    assert runner.invoke(app, ["ingest", str(code)]).exit_code == 0
    for args in (["analyze", "azure_llm_2023/code", "--by", "tenant"],
                 ["fit", "azure_llm_2023/code", "--by", "model", "-o", str(tmp_path / "m.json")],
                 ["report", "azure_llm_2023/code", "--by", "tenant", "-o",
                  str(tmp_path / "r.html")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
        message = " ".join(res.output.split())
        assert message.startswith(f"error: --by '{args[3]}': the column is empty")
        assert "columns with values: trace, input_tokens, output_tokens" in message
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "r.html").exists()
    res = runner.invoke(app, ["fit", "azure_llm_2023/code", "--by", "nope", "-o", "m.json"])
    assert res.exit_code == 1 and "--by 'nope': no such column" in res.output


def test_serverless_fit_generate_compare(env, mirror, tmp_path):
    """The table decides: invocation_counts → the serverless model, subset and scaling."""
    assert runner.invoke(app, ["ingest", str(mirror / "azure_functions_2019")]).exit_code == 0
    model = tmp_path / "af.json"
    res = runner.invoke(app, ["fit", "azure_functions_2019/sample", "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert "500 functions" in res.output
    assert json.loads(model.read_text())["type"] == "ServerlessModel"
    synth = tmp_path / "s.parquet"
    res = runner.invoke(app, ["generate", str(model), "--duration", "1800", "--seed", "1",
                              "--functions", "40", "--target-rps", "20", "-o", str(synth)])
    assert res.exit_code == 0, res.output
    frame = pl.read_parquet(synth)
    assert frame["function"].cast(pl.String).str.replace("~.*", "").n_unique() <= 40
    assert frame.height / 1800 == pytest.approx(20, rel=0.35)
    meta = json.loads(_scaling(synth))
    assert [r["op"] for r in meta] == ["representative_subset", "superpose_functions",
                                       "sample"]
    res = runner.invoke(app, ["compare", "azure_functions_2019/sample", str(synth),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "cold_fixed10_error" in res.output and "replay_uniform" in res.output
    res = runner.invoke(app, ["generate", str(model), "--duration", "60", "--functions", "0",
                              "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 1 and "--functions 0" in res.output
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("nodes: 2\ncores: 8\nmemory_mb: 32768\nkeep_alive_s: 600\n")
    sized = tmp_path / "c.parquet"
    res = runner.invoke(app, ["generate", str(model), "--duration", "600", "--functions", "40",
                              "--cluster", str(cluster), "--utilization", "0.5",
                              "-o", str(sized)])
    assert res.exit_code == 0, res.output
    ops = [r["op"] for r in json.loads(_scaling(sized))]
    assert ops == ["representative_subset", "superpose_functions", "size_to_cluster", "sample"]
    cluster.write_text("nodes: 2\ncpus: 8\n")
    res = runner.invoke(app, ["generate", str(model), "--duration", "60", "--cluster",
                              str(cluster), "--utilization", "0.5", "-o", str(sized)])
    assert res.exit_code == 1 and "unknown key(s) cpus" in res.output


def _scaling(path):
    import pyarrow.parquet as pq

    from servetrace.synth.scale import METADATA_KEY
    return pq.read_metadata(path).metadata[METADATA_KEY.encode()].decode()


def test_compare_scores_sessions_and_prefix_reuse(env, mirror, tmp_path):
    # a few real agentic sessions (64-token blocks, session-scoped ids, as `traces` records)
    folder = tmp_path / "agentic_coding_weka"
    folder.mkdir()
    for path in sorted((mirror / "agentic_coding_weka").glob("*.json"))[:12]:
        shutil.copy(path, folder / path.name)
    res = runner.invoke(app, ["ingest", str(folder), "--as", "agentic_coding_weka",
                              "--trace", "weka/few"])
    assert res.exit_code == 0, res.output
    real = Store(env).scan("requests", "weka/few").collect()
    span = float(real["arrival_s"].max())
    files = []
    for seed in (1, 2):
        files.append(str(tmp_path / f"s{seed}.parquet"))
        session_naive(real, span, seed, scope="session").write_parquet(files[-1])
    res = runner.invoke(app, ["compare", "weka/few", *files, "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["metric"]: r for r in json.loads(res.stdout)["fidelity (errors; lower is "
                                                           "better)"]}
    assert {"hit_curve_max_abs", "hit_inf_session", "turns_ks", "think_gap_ks",
            "growth_ks"} <= set(rows)
    assert "hit_inf_global" not in rows  # the trace's ids are session-scoped
    assert rows["hit_inf_session"]["real"] > 0.5 and rows["turns_ks"]["kind"] == "sessions"
    res = runner.invoke(app, ["compare", "weka/few", *files])
    assert res.exit_code == 0, res.output
    assert "hit_curve_max_abs" in res.output and "session_naive" in res.output
    res = runner.invoke(app, ["compare", "weka/few", files[0], "--scope", "tenant"])
    assert res.exit_code == 1 and "scope must be 'global' or 'session'" in res.output
    assert "Traceback" not in res.output
