"""A store folder copied, moved or renamed works at once from every client, reading its own
files; every column says its unit in SQL; the database file opens in the DuckDB CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from servetrace.loaders import Store, ingest, schema
from servetrace.loaders.store import DB_NAME

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DUCKDB_CLI = shutil.which("duckdb", path=str(BIN)) or shutil.which("duckdb")
QUERY = "select trace, count(*) as n from requests group by 1 order by 1"
COUNTS = {"azure_llm_2023/code": 8819, "azure_llm_2023/conv": 19366}
# folder names a user may well give a copy: spaces, quotes, glob characters, non-ASCII
NAMES = ["a b[1]/store", "it's \"quoted\"/st*re?", "ünïcødé ストア/[x]*", "plain"]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """A store holding Azure LLM 2023 code and conv, ingested once for the module."""
    root = tmp_path_factory.mktemp("orig") / "store"
    old = os.environ.get("SERVETRACE_MIRROR")
    os.environ["SERVETRACE_MIRROR"] = str(shared)
    try:
        ingest("azure_llm_2023", store=Store(root))
    finally:
        if old is None:
            del os.environ["SERVETRACE_MIRROR"]
        else:
            os.environ["SERVETRACE_MIRROR"] = old
    return root


def _cli_counts(text: str) -> dict[str, int]:
    """trace -> count from any client's printed table (digits may carry thousands commas)."""
    return {m.group(1): int(m.group(2).replace(",", ""))
            for m in re.finditer(r"(azure_llm_2023/\w+)\W+([\d,]+)", text)}


def _all_clients(store: Path, cwd: Path) -> dict[str, dict[str, int]]:
    """The query's answer from servetrace (Python and CLI), Python duckdb and the DuckDB CLI,
    each started in ``cwd``, opening the store read-only."""
    db = store / DB_NAME
    py = ("import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
          f"print(con.execute({QUERY!r}).fetchall())")
    runs = {
        "servetrace": [str(BIN / "servetrace"), "sql", QUERY, "--store", str(store),
                       "--format", "csv"],
        "python-duckdb": [sys.executable, "-c", py, str(db)],
        "duckdb-cli": [DUCKDB_CLI, "-readonly", "-csv", str(db), QUERY],
    }
    out = {"Store.sql": dict(Store(store).sql(QUERY).iter_rows())}
    for name, cmd in runs.items():
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        out[name] = _cli_counts(proc.stdout)
    return out


def test_duckdb_cli_is_installed():
    assert DUCKDB_CLI, "the DuckDB CLI (pip install 'servetrace[cli]') is not on PATH"


@pytest.mark.parametrize("name", NAMES)
def test_copy_then_delete_original(original: Path, tmp_path: Path, name: str):
    first = tmp_path / "first"
    shutil.copytree(original, first)
    copy = tmp_path / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(first, copy)
    shutil.rmtree(first)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for client, counts in _all_clients(copy, cwd=elsewhere).items():
        assert counts == COUNTS, client
    # Polars reads the committed files by exact path, never as a glob
    assert Store(copy).scan("requests").select(pl.len()).collect().item() == sum(COUNTS.values())


def test_relative_path_from_the_parent_folder(original: Path, tmp_path: Path):
    moved = tmp_path / "x y" / "data"
    shutil.copytree(original, moved)
    proc = subprocess.run([DUCKDB_CLI, "-csv", f"data/{DB_NAME}", QUERY], cwd=moved.parent,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _cli_counts(proc.stdout) == COUNTS
    proc = subprocess.run([DUCKDB_CLI, "-csv", DB_NAME, QUERY], cwd=moved,
                          capture_output=True, text=True, timeout=60)
    assert _cli_counts(proc.stdout) == COUNTS


def test_copy_reads_its_own_files_not_the_original(original: Path, tmp_path: Path):
    """A copy beside a living original: removing a trace from one changes only that one."""
    src = tmp_path / "src"
    shutil.copytree(original, src)
    copy = tmp_path / "copy[1]"
    shutil.copytree(src, copy)
    Store(src).remove("azure_llm_2023/conv")
    (tmp_path / "renamed").mkdir()
    moved = tmp_path / "renamed" / "ünï store"
    os.rename(copy, moved)
    assert _all_clients(moved, cwd=tmp_path)["duckdb-cli"] == COUNTS
    assert _all_clients(src, cwd=tmp_path)["duckdb-cli"] == {"azure_llm_2023/code": 8819}


def test_attach_gets_one_clear_error_never_rows(original: Path, tmp_path: Path):
    """ATTACH leaves the views no way to find the store's folder: an error that says what to
    run, even when the working directory is another store."""
    other = tmp_path / "other"
    shutil.copytree(original, other)
    Store(other).remove("azure_llm_2023/code")
    sql = f"ATTACH '{original / DB_NAME}' AS s (READ_ONLY); SELECT count(*) FROM s.requests"
    proc = subprocess.run([DUCKDB_CLI, ":memory:", sql], cwd=other, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "rather than through ATTACH" in proc.stderr + proc.stdout


def test_every_column_has_a_comment(original: Path):
    with duckdb.connect(str(original / DB_NAME), read_only=True) as con:
        rows = con.execute("SELECT table_name, column_name, comment FROM duckdb_columns() "
                           "WHERE database_name = current_database()").fetchall()
    got = {(t, c): comment for t, c, comment in rows}
    want = {(t, f.name): schema.comment(f)
            for t, s in {**schema.TABLES, "traces": schema.TRACES}.items() for f in s}
    assert set(got) == set(want)
    assert got == want
    assert all(want.values())
    assert got[("requests", "arrival_s")].endswith("[s]")
    assert got[("requests", "input_tokens")] == "prompt length [tokens]"


def test_storage_version_opens_in_every_duckdb_1x(original: Path):
    """The header's storage version is 64 (DuckDB 1.0's): every 1.x library and CLI reads it."""
    head = (original / DB_NAME).read_bytes()[:20]
    assert head[8:12] == b"DUCK"
    assert int.from_bytes(head[12:20], "little") == 64


def test_readme_sql_runs_verbatim(mirror: Path, tmp_path: Path):
    """The README's first SQL command, run as written from a folder whose data/ holds the
    demo's three traces, prints the README's counts."""
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines()
                   if line.startswith("duckdb data/servetrace.duckdb "))
    expected = dict(re.findall(r"^# (\S+)\s+(\d+)$", readme[readme.index(command):].split(
        "```")[0], flags=re.M))
    assert expected == {"azure_llm_2023/code": "8819", "azure_llm_2023/conv": "19366",
                        "mooncake/conversation": "12031"}
    for trace in ("azure_llm_2023", "mooncake/conversation"):
        ingest(trace, store=Store(tmp_path / "data"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = dict(re.findall(r"(\w+/\w+)\W+(\d+)", proc.stdout))
    assert printed == expected


def test_writing_under_a_question_mark_is_one_clear_error(mirror: Path, tmp_path: Path):
    """DuckDB cannot commit under a path with '?': the CLI says so in one line."""
    proc = subprocess.run([str(BIN / "servetrace"), "ingest", "azure_llm_2023/code", "--store",
                           str(tmp_path / "why?" / "store")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "cannot write a database whose path contains '?'" in proc.stderr
