"""The store: atomic, idempotent commits; exact row accounting; SQL views; lazy scans."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pytest

from servetrace.loaders import ingest, schema
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.store import AccountingError, Provenance, StoreError

ROOT = Path(__file__).resolve().parents[1]
PROV = Provenance("test", None, "test", (), (), (), "test/1", "CC0", "none")


def _requests(n: int) -> pl.DataFrame:
    return pl.DataFrame({"arrival_s": [float(i) for i in range(n)],
                         "input_tokens": [1] * n, "output_tokens": [2] * n})


def _loaded(n: int) -> Loaded:
    return Loaded(tables={"requests": _requests(n)}, rejects=schema.empty("rejects"),
                  rows_read=n)


def test_reading_a_missing_store_neither_creates_it_nor_fakes_rows(store):
    with pytest.raises(StoreError, match="no store at"):
        store.traces()
    assert not store.root.exists()


def test_views_exist_before_any_ingest(store):
    store.create()
    for table in schema.TABLES:
        assert store.sql(f"SELECT count(*) FROM {table}").item() == 0
    assert store.scan("requests").collect().schema == schema.polars_schema("requests")


def test_same_trace_twice_leaves_one_copy(store, mirror):
    ingest("azure_llm_2023/code", store=store)
    ingest("azure_llm_2023/code", store=store)
    assert store.sql("SELECT count(*) FROM requests").item() == 8819
    assert store.traces().height == 1
    files = list((store.root / "requests").glob("*/*.parquet"))
    assert len([f for f in files if "_schema" not in str(f)]) == 1


def test_reingest_replaces(store):
    store.write("a", _loaded(5), PROV)
    store.write("a", _loaded(3), PROV)
    assert store.sql("SELECT count(*) FROM requests WHERE trace = 'a'").item() == 3


def test_accounting_is_checked(store):
    bad = Loaded(tables={"requests": _requests(3)}, rejects=schema.empty("rejects"), rows_read=4)
    with pytest.raises(AccountingError, match=r"rows read \(4\) != rows accepted \(3\)"):
        store.write("a", bad, PROV)
    assert not store.db_path.exists()
    store.create()
    with pytest.raises(AccountingError):
        store.write("a", bad, PROV)
    assert store.traces().is_empty()


def test_traces_metadata(store, mirror):
    ingest("azure_llm_2023/conv", store=store)
    row = store.traces().row(0, named=True)
    assert row["rows_read"] == row["rows"] + row["rejected"] == 19366
    assert row["dataset"] == "azure_llm_2023" and row["license"] == "CC-BY-4.0"
    assert row["source_urls"][0].endswith("AzureLLMInferenceTrace_conv.csv")
    assert row["sha256"] == ["2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"]
    assert str(row["origin"]).startswith("2023-11-16 18:15:46.68059")
    assert row["end_s"] == pytest.approx(3501.721937)
    assert "Splitwise" in row["citation"]


def test_scan_is_lazy_and_typed(store, mirror):
    ingest("azure_llm_2023", store=store)
    lf = store.scan("requests", "azure_llm_2023/code")
    assert isinstance(lf, pl.LazyFrame)
    assert lf.select(pl.len()).collect().item() == 8819
    assert store.scan("requests").select(pl.len()).collect().item() == 8819 + 19366


def test_remove(store):
    store.write("a", _loaded(2), PROV)
    store.remove("a")
    assert store.sql("SELECT count(*) FROM requests").item() == 0
    assert not (store.root / "requests" / "a").exists()


def test_bad_trace_id(store):
    with pytest.raises(StoreError, match="invalid trace id"):
        store.write("../evil", _loaded(1), PROV)


def test_killed_ingest_leaves_previous_state(store, mirror):
    """A process killed after writing its files but before the commit changes nothing."""
    ingest("azure_llm_2023/code", store=store)
    script = textwrap.dedent(f"""
        import os
        from servetrace.loaders import Store, ingest
        from servetrace.loaders.store import Store as S
        S._commit = lambda self, record: os._exit(17)
        ingest({str(mirror / 'azure_llm_2023' / 'AzureLLMInferenceTrace_conv.csv')!r},
               trace="azure_llm_2023/code", store=Store({str(store.root)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == 17
    orphans = list((store.root / "requests" / "azure_llm_2023%2Fcode").glob("*.parquet"))
    assert len(orphans) == 2  # the new, uncommitted file is there ...
    assert store.sql("SELECT count(*) FROM requests").item() == 8819  # ... and unseen
    ingest("azure_llm_2023/code", store=store)  # the next ingest sweeps it
    assert len(list((store.root / "requests" / "azure_llm_2023%2Fcode").glob("*"))) == 1


def test_reader_in_another_process_sees_whole_traces(store, mirror):
    """While one process re-ingests in a loop, another only ever counts whole traces."""
    ingest("azure_llm_2023/conv", store=store)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from servetrace.loaders import Store, ingest
        s = Store({str(store.root)!r})
        for _ in range(3):
            ingest("azure_llm_2023/conv", store=s)
    """)], cwd=ROOT, env=os.environ.copy())
    seen = set()
    while writer.poll() is None:
        try:
            seen.add(store.sql("SELECT count(*) FROM requests").item())
        except (StoreError, duckdb.Error):
            pass  # the writer holds the database lock for the instant of its commit
    assert writer.returncode == 0
    assert seen == {19366}  # read at least once, and never a partial count


def test_store_made_before_new_traces_columns_takes_them(tmp_path):
    """A store whose ``traces`` table predates hash_block_tokens/hash_scope gains them (null
    for the traces already there) on the next write, instead of failing the insert."""
    import duckdb

    from servetrace.loaders import mooncake
    from servetrace.loaders.ingest import ingest
    from servetrace.loaders.store import Store

    src = tmp_path / "m.jsonl"
    src.write_text('{"timestamp": 0, "input_length": 600, "output_length": 5, '
                   '"hash_ids": [0, 1]}\n')
    store = Store(tmp_path / "store")
    ingest(src, trace="old/one", store=store, progress=False)
    with duckdb.connect(str(store.db_path)) as con:  # as an older servetrace left it
        con.execute("ALTER TABLE traces DROP COLUMN hash_block_tokens")
        con.execute("ALTER TABLE traces DROP COLUMN hash_scope")
        con.execute("COMMENT ON VIEW requests IS 'older layout'")
    assert mooncake.BLOCK_SIZE_TOKENS == 512
    ingest(src, trace="new/one", store=store, progress=False)
    got = store.sql("SELECT trace, hash_block_tokens, hash_scope FROM traces ORDER BY trace")
    assert got.rows() == [("new/one", 512, "global"), ("old/one", None, None)]
