"""Nothing lost, nothing silently changed in the store: concurrent writers of one trace,
several files into one trace, damaged files named, accounting said plainly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import Store, ingest
from servetrace.loaders.store import StoreError

BIN = Path(sys.executable).parent
runner = CliRunner()


@pytest.fixture
def spec(shared: Path) -> Path:
    return shared / "specimens"


def _ingest_cmd(path: Path, store: Path, trace: str) -> list[str]:
    return [str(BIN / "servetrace"), "ingest", str(path), "--trace", trace, "--store", str(store)]


def _consistent(store: Store, trace: str, rows: int) -> None:
    """``traces``, the views, the files and ``check`` all agree on the trace's rows."""
    record = store.traces().filter(pl.col("trace") == trace)
    assert record["rows"].item() == rows
    assert store.sql(f"SELECT count(*) FROM requests WHERE trace = '{trace}'").item() == rows
    assert store.check()["problem"].null_count() == store.check().height
    folder = store.root / "requests" / trace
    assert [p.stem for p in folder.iterdir()] == [record["ingest_id"].item()]


def test_two_ingests_of_one_trace_at_once_both_succeed(shared: Path, tmp_path: Path):
    """Real processes, started together, three times: the later commit wins whole."""
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    root = tmp_path / "store"
    for _ in range(3):
        procs = [subprocess.Popen(_ingest_cmd(path, root, "t"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr
        _consistent(Store(root), "t", 8819)


def test_a_writer_waits_for_the_trace_lock(shared: Path, tmp_path: Path):
    """While another writer holds the trace's lock, an ingest of that trace commits nothing."""
    store = Store(tmp_path / "store").create()
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    with store._lock("t"):
        proc = subprocess.Popen(_ingest_cmd(path, store.root, "t"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        assert proc.poll() is None
        assert store.traces().is_empty()
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    _consistent(store, "t", 8819)


def test_second_file_under_a_trace_does_not_drop_its_tables(spec: Path, tmp_path: Path):
    store = Store(tmp_path / "store")
    cold, reqs = spec / "huawei_2025_cold_starts_R2.csv", spec / "huawei_2025_requests_R2.csv"
    ingest(cold, trace="hw", store=store)
    n_cold = store.sql("SELECT count(*) FROM cold_starts").item()
    with pytest.raises(StoreError, match=r"already holds cold_starts \(.* rows\), which this "
                                         r"ingest would drop.*--replace"):
        ingest(reqs, trace="hw", store=store)
    assert store.sql("SELECT count(*) FROM cold_starts").item() == n_cold

    [record] = ingest([cold, reqs], trace="hw", store=store)
    tables = json.loads(record["tables"])
    assert tables["cold_starts"] == n_cold and tables["invocations"] > 0
    assert record["rows_read"] == record["rows_accepted"] + record["rejected"]
    assert len(record["source_files"]) == 2
    assert store.sql("SELECT count(*) FROM invocations").item() == tables["invocations"]
    assert store.sql("SELECT count(*) FROM cold_starts").item() == n_cold

    ingest(reqs, trace="hw", store=store, replace=True)
    assert store.sql("SELECT count(*) FROM cold_starts").item() == 0


def test_cli_several_files_need_a_trace_id(spec: Path, tmp_path: Path):
    args = ["ingest", str(spec / "huawei_2025_cold_starts_R2.csv"),
            str(spec / "huawei_2025_requests_R2.csv"), "--store", str(tmp_path / "s")]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "--trace" in res.output
    res = runner.invoke(app, [*args, "--trace", "hw"])
    assert res.exit_code == 0, res.output


def test_missing_and_corrupt_files_are_named(shared: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_MIRROR", str(shared))
    monkeypatch.setenv("COLUMNS", "400")
    store = Store(tmp_path / "store")
    ingest("azure_llm_2023", store=store)
    files = store.committed().filter(pl.col("table") == "requests")
    code, conv = (Path(p) for p in files.sort("trace")["path"])
    code.unlink()
    conv.write_bytes(conv.read_bytes()[:-100])

    res = runner.invoke(app, ["check", "--store", str(store.root)])
    assert res.exit_code == 1
    assert code.name in res.output and "missing" in res.output
    assert conv.name in res.output and "cannot be read" in res.output
    for args in (["sql", "select count(*) from requests"], ["list"],
                 ["analyze", "azure_llm_2023/code"]):
        res = runner.invoke(app, [*args, "--store", str(store.root)])
        assert res.exit_code == 1, args
        assert "Traceback" not in res.output
        assert code.name in res.output or conv.name in res.output, (args, res.output)
    with pytest.raises(StoreError, match="committed file is missing"):
        store.scan("requests", "azure_llm_2023/code")


def test_check_passes_on_a_sound_store_and_counts_rows(shared: Path, tmp_path: Path,
                                                       monkeypatch):
    monkeypatch.setenv("SERVETRACE_MIRROR", str(shared))
    store = Store(tmp_path / "store")
    ingest("azure_llm_2023/code", store=store)
    report = store.check()
    assert set(report["table"]) == {"requests", "rejects"}
    assert report["problem"].null_count() == report.height
    res = runner.invoke(app, ["check", "--store", str(store.root)])
    assert res.exit_code == 0, res.output


def test_wide_accounting_is_said_plainly(shared: Path, tmp_path: Path):
    """Azure Functions 2019 minute counts: rows read are functions, rows stored are minutes."""
    res = runner.invoke(app, ["ingest", str(shared / "azure_functions_2019"), "--store",
                              str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    line = " ".join(res.output.split())
    read, accepted, rejected = (int(x.replace(",", "")) for x in re.search(
        r"([\d,]+) rows read, ([\d,]+) accepted \([\d,]+ rows stored: .*\), ([\d,]+) rejected",
        line).groups())
    assert read == accepted + rejected
    res = runner.invoke(app, ["list", "--store", str(tmp_path / "s"), "--format", "json"])
    assert {r["rows_read"] for r in json.loads(res.stdout)} == {read}


def test_every_row_rejected_exits_non_zero(tmp_path: Path):
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,1,2\nnor this,3,4\n")
    res = runner.invoke(app, ["ingest", str(path), "--store", str(tmp_path / "s")])
    assert res.exit_code == 1
    assert "every row of azure_llm_2023/code was rejected" in \
        " ".join(res.output.split())
    assert Store(tmp_path / "s").sql("SELECT count(*) FROM rejects").item() == 2


def test_interrupted_first_ingest_leaves_no_orphans(tmp_path: Path, shared: Path):
    """Files of a trace that never committed are swept by the next write of any trace."""
    store = Store(tmp_path / "store").create()
    orphan = store.root / "requests" / "never" / "20260101T000000-deadbeef0000.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a file")
    ingest(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv", store=store)
    assert not orphan.parent.exists()


def test_list_on_a_missing_store_creates_nothing(tmp_path: Path):
    res = runner.invoke(app, ["list", "--store", str(tmp_path / "nowhere")])
    assert res.exit_code == 1
    assert "no store at" in res.output
    assert not (tmp_path / "nowhere").exists()
