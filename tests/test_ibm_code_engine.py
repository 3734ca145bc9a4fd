"""IBM Cloud Code Engine traces (Nasiri et al., EuroSys'26): restricted unpickling, mapping.

The real files are not shipped; the frames here are written with pandas in the exact layout
of the official pickles (object columns of 32-hex hashes and Python lists mixing ints and
floats, int64 ``NumEvents``, protocol 5), and :data:`REAL_GLOBALS` lists the globals the real
``app_configs.pickle`` names (read with ``pickletools``), so the test frames are checked to
need nothing more. Expected values are computed by hand from the rows written.
"""

from __future__ import annotations

import math
import os
import pickle
import pickletools
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.cli import app as cli
from servetrace.extras import MissingExtra
from servetrace.loaders import ibm_code_engine as ibm
from servetrace.loaders import ingest, registry
from servetrace.loaders.source import FormatError

runner = CliRunner()
NAN = float("nan")
NS = ["d4dab60323a49596c81347e72f02d510", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"]
APPS = ["627b8e467087658f7cdc7314eea4f520", "370fb1b0cb903f9346d737921e96df01",
        "5f4dcc3b5aa765d61d8327deb882cf99", "e99a18c428cb38d5f260853678922e03"]
REAL_GLOBALS = {  # app_configs.pickle of the official release, as pickletools lists them
    ("pandas.core.frame", "DataFrame"), ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "slice"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex")}
MONDAY = 1_717_977_600.0  # 2024-06-10 00:00 UTC


def frame(columns: dict[str, list]) -> pd.DataFrame:
    """A frame like the official ones: every column object-typed except ``NumEvents``, the
    column labels too (pandas 3 would make them Arrow strings)."""
    out = pd.DataFrame({c: pd.Series(v, dtype="int64" if c == "NumEvents" else object)
                        for c, v in columns.items()})
    out.columns = pd.Index(list(columns), dtype=object)
    return out


def write_week(path: Path, rows: list[tuple], protocol: int = 5) -> Path:
    """``rows``: (namespace, app, times s, app exec ms, total exec ms, pods[, NumEvents])."""
    cols = {c: [] for c in ibm.TRAFFIC_COLUMNS}
    for ns, app_, times, app_ms, total_ms, pods, *n in rows:
        for c, v in zip(ibm.TRAFFIC_COLUMNS, (ns, app_, n[0] if n else len(times), times,
                                              app_ms, total_ms, pods), strict=True):
            cols[c].append(v)
    frame(cols).to_pickle(path, protocol=protocol)
    return path


def write_configs(path: Path, rows: list[tuple]) -> Path:
    cols = {c: [list(v) if isinstance(v, list) else v for v in col]
            for c, col in zip(ibm.CONFIG_COLUMNS, zip(*rows, strict=True), strict=True)}
    frame(cols).to_pickle(path)
    return path


def globals_named(path: Path) -> set[tuple[str, str]]:
    """The (module, name) pairs a pickle imports, read without running it."""
    found, strings, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "MEMOIZE" and strings:
            memo[len(memo)] = strings[-1]
        elif op.name in ("BINGET", "LONG_BINGET") and arg in memo:
            strings.append(memo[arg])
        elif op.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
    return found


WEEK = [  # two apps, Unix times; app 0's requests out of order across apps
    (NS[0], APPS[0], [MONDAY + 10.5, MONDAY + 3600.25, MONDAY + 90000.0],
     [120, 80.5, 3], [130.0, 95, 4.5], ["pod-a", "pod-a", "pod-b"]),
    (NS[1], APPS[1], [MONDAY + 5.0, MONDAY + 7200.0], [1000.0, 2], [1010, 2.5],
     ["pod-c", "pod-d"]),
]


def test_week_maps_onto_invocations(tmp_path, store):
    path = write_week(tmp_path / "week_1.pickle", WEEK)
    assert globals_named(path) <= ibm.ALLOWED
    assert registry.detect(path) is ibm
    [rec] = ingest(path, store=store, progress=False)
    assert rec["trace"] == "ibm_code_engine/week_1"
    assert (rec["rows_read"], rec["rows"], rec["rejected"]) == (5, 5, 0)
    assert rec["origin"] == datetime(2024, 6, 10, tzinfo=UTC)
    inv = store.scan("invocations", rec["trace"]).collect()
    assert inv["arrival_s"].to_list() == [5.0, 10.5, 3600.25, 7200.0, 90000.0]
    assert inv["duration_s"].to_list() == pytest.approx([1.0, 0.12, 0.0805, 0.002, 0.003])
    assert inv["total_exec_s"].to_list() == pytest.approx([1.01, 0.13, 0.095, 0.0025, 0.0045])
    assert inv["pod"].to_list() == ["pod-c", "pod-a", "pod-a", "pod-d", "pod-b"]
    assert inv["tenant"].to_list() == [NS[1], NS[0], NS[0], NS[1], NS[0]]
    assert (inv["app"] == inv["function"]).all()
    assert inv["app"].to_list()[:2] == [APPS[1], APPS[0]]


@pytest.mark.parametrize("protocol", [2, 4])
def test_older_pickle_protocols_load_alike(tmp_path, protocol):
    five = write_week(tmp_path / "week_1.pickle", WEEK)
    (tmp_path / "old").mkdir()
    other = write_week(tmp_path / "old" / "week_1.pickle", WEEK, protocol)
    assert other.read_bytes()[:2] == bytes([0x80, protocol])
    assert ibm.load([other], "t").tables["invocations"].equals(
        ibm.load([five], "t").tables["invocations"])


def test_relative_times_keep_their_zero(tmp_path):
    path = write_week(tmp_path / "week_2.pickle",
                      [(NS[0], APPS[0], [3.0, 1.5], [1, 1], [2, 2], ["p", "q"])])
    loaded = ibm.load([path], "t")
    assert loaded.origin is None and loaded.notes["time_base"] == "relative"
    assert loaded.tables["invocations"]["arrival_s"].to_list() == [1.5, 3.0]


def test_bad_rows_and_requests_go_to_rejects(tmp_path):
    path = write_week(tmp_path / "week_3.pickle", [
        *WEEK,
        (NS[0], APPS[2], [1.0, 2.0], [1.0], [1.0, 1.0], ["p", "p"]),    # lists disagree
        (NS[0], APPS[3], [1.0, 2.0], [1, 1], [1, 1], ["p", "p"], 3),    # NumEvents wrong
        (NS[1], None, [1.0], [1], [1], ["p"]),                          # no AppHash
        (NS[1], APPS[3], "not a list", [1], [1], ["p"], 1),             # a cell of text
        (NS[1], APPS[2], [MONDAY + 1, NAN, MONDAY + 2, MONDAY + 3, MONDAY + 4],
         [1, 1, -5, 1, NAN], [1, 1, 1, math.inf, 2], list("vwxyz")),
    ])
    loaded = ibm.load([path], "t")
    rej = loaded.rejects.sort("line", "raw")
    assert rej["line"].to_list() == [3, 4, 5, 6, 7, 7, 7]
    reasons = rej["reason"].to_list()
    assert reasons[0] == ("list lengths differ from NumEvents 2: InvocationTimes 2, "
                          "AppExecTimes 1, TotalExecTimes 2, PodHash 2")
    assert reasons[1].startswith("list lengths differ from NumEvents 3")
    assert reasons[2] == "missing AppHash"
    assert reasons[3] == "InvocationTimes is not a list of numbers: 'not a list'"
    assert sorted(reasons[4:]) == ["missing InvocationTimes value",
                                   "negative AppExecTimes value: -5.0 ms",
                                   "non-finite TotalExecTimes value: inf"]
    assert all(str(path) == s for s in rej["source"])
    assert f"AppHash={APPS[2]} request 2:" in rej.filter(
        pl.col("reason") == "missing InvocationTimes value")["raw"][0]
    inv = loaded.tables["invocations"]
    # 5 + 5 requests of consistent rows, 4 inconsistent rows counted once each
    assert loaded.rows_read == 14 == inv.height + loaded.rejects.height
    assert inv.height == 7 and loaded.notes["null_app_exec_times"] == 1


def test_slices_bound_the_conversion(tmp_path):
    assert ibm.slices(np.array([3, 2, 0, 4, 1]), 4) == [(0, 2), (2, 4), (4, 5)]
    assert ibm.slices(np.array([10, 1]), 4) == [(0, 1), (1, 2)]  # an app row is never split
    assert ibm.slices(np.array([], dtype=np.int64), 4) == []
    path = write_week(tmp_path / "week_4.pickle", WEEK * 3)
    whole = ibm.load_traffic(path, "t")
    for n in (1, 2, 4):
        sliced = ibm.load_traffic(path, "t", max_events=n)
        assert sliced.tables["invocations"].equals(whole.tables["invocations"])
        assert sliced.rows_read == whole.rows_read == 15


CONFIGS = [
    (NS[0], APPS[0], [1, 1.0, 2.0, NAN], [4, 4.0, 4.0, NAN], [100, 100.0, 50.0, NAN],
     [0, 0.0, 1.0, NAN]),
    (NS[1], APPS[1], [NAN, 0.25, 0.25, 0.5], [NAN, 0.5, 1.0, 1.0], [NAN, 10, 10, 10],
     [NAN, 0, 0, 0]),
    (NS[1], APPS[2], [1.0, 1.0], [4.0], [100, 100], [0, 0]),           # lengths differ
    (NS[1], APPS[3], [1.0, 1.0], [4.0, -4.0], [100, 100], [0, 0]),     # negative memory
]


def test_configs_map_onto_functions_and_daily_metrics(tmp_path, store):
    path = write_configs(tmp_path / "app_configs.pickle", CONFIGS)
    assert globals_named(path) <= ibm.ALLOWED
    assert registry.detect(path) is ibm
    [rec] = ingest(path, store=store, progress=False)
    assert rec["trace"] == "ibm_code_engine/app_configs"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (4, 2, 2)
    fn = store.scan("functions", rec["trace"]).collect().sort("app")
    assert fn.select("app", "cpu_request_m", "memory_limit_mb").rows() == [
        (APPS[1], 250.0, 1000.0), (APPS[0], 1000.0, 4000.0)]  # medians of the non-NaN days
    daily = store.scan("function_metrics", rec["trace"]).collect()
    assert daily.height == 2 * 4 * 3  # four metrics, three configured days per app
    one = daily.filter(pl.col("function") == APPS[0], pl.col("metric") == "AppMinScale")
    assert one.sort("window_start_s").select("window_start_s", "value").rows() == [
        (0.0, 0.0), (86400.0, 0.0), (172800.0, 1.0)]
    assert set(daily.select("metric", "unit").unique().rows()) == set(ibm.CONFIG_UNITS.items())
    rej = store.scan("rejects", rec["trace"]).collect().sort("line")
    assert rej["line"].to_list() == [3, 4]
    assert rej["reason"].to_list() == [
        "daily lists of different lengths: AppContainerRequestCpu 2, "
        "AppContainerRequestMemory 1, AppContainerConcurrency 2, AppMinScale 2",
        "negative or infinite AppContainerRequestMemory value"]


def test_the_real_files_globals_are_admitted():
    assert REAL_GLOBALS <= ibm.ALLOWED
    assert not {("os", "system"), ("posix", "system"), ("builtins", "eval"),
                ("builtins", "getattr"), ("subprocess", "Popen")} & ibm.ALLOWED


class Payload:
    """Runs a shell command when unpickled by a plain unpickler."""

    def __init__(self, target, arg):
        self.target, self.arg = target, arg

    def __reduce__(self):
        return self.target, (self.arg,)


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("target", [os.system, eval, subprocess.Popen])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, target, protocol):
    sentinel = tmp_path / "pwned"
    command = f"touch {sentinel}"
    arg = f"__import__('os').system({command!r})" if target is eval else \
        ["touch", str(sentinel)] if target is subprocess.Popen else command
    path = tmp_path / "week_5.pickle"
    path.write_bytes(pickle.dumps(Payload(target, arg), protocol=protocol))
    with pytest.raises(ibm.UnsafePickleError) as err:
        ibm.load([path], "t")
    module = {os.system: os.system.__module__, eval: "builtins",
              subprocess.Popen: "subprocess"}[target]
    assert f"{path}: refused to unpickle the global {module}.{target.__name__}" in str(err.value)
    assert not sentinel.exists()


def test_payload_inside_a_frame_cell_is_refused(tmp_path, monkeypatch):
    sentinel = tmp_path / "pwned"
    path = write_week(tmp_path / "week_6.pickle", [
        (NS[0], APPS[0], [1.0], [1], [1], [Payload(os.system, f"touch {sentinel}")])])
    assert registry.detect(path) is ibm  # it looks like a trace frame
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    res = runner.invoke(cli, ["ingest", str(path), "--trace", "ibm/w6"])
    assert res.exit_code == 1
    assert "refused to unpickle the global posix.system" in res.output
    assert "Traceback" not in res.output and not sentinel.exists()


def test_cli_ingests_a_week_under_a_trace_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    path = write_week(tmp_path / "week_7.pickle", WEEK)
    res = runner.invoke(cli, ["ingest", str(path), "--trace", "ibm/w7"])
    assert res.exit_code == 0, res.output
    assert "ibm/w7: 5 rows read, 5 stored, 0 rejected" in res.output
    res = runner.invoke(cli, ["sql", "select count(*) as n, round(sum(duration_s), 4) as d "
                                     "from invocations", "--format", "csv"])
    assert res.stdout == "n,d\n5,1.2055\n"


def test_plain_pickles_and_other_objects_are_not_frames(tmp_path):
    lst = tmp_path / "week_8.pickle"
    lst.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(FormatError, match="holds a list, not a DataFrame"):
        ibm.load([lst], "t")
    short = tmp_path / "week_9.pickle"
    short.write_bytes(pickle.dumps(frame({"AppHash": [APPS[0]], "NumEvents": [1]})))
    with pytest.raises(FormatError, match="frame lacks the column"):
        ibm.load_traffic(short, "t")
    cut = tmp_path / "week_10.pickle"
    cut.write_bytes(write_week(tmp_path / "w.pickle", WEEK).read_bytes()[:300])
    with pytest.raises(FormatError, match="not a readable pickled frame"):
        ibm.load([cut], "t")


def test_official_archive_says_how_to_extract(tmp_path):
    vol = tmp_path / "week_1.7z.003"
    vol.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(32))
    assert registry.detect(vol) is ibm
    with pytest.raises(FormatError, match=r"run `7z x week_1\.7z\.001`"):
        ibm.load([vol], "t")


def test_missing_pandas_names_the_extra(tmp_path, monkeypatch):
    path = write_week(tmp_path / "week_1.pickle", WEEK)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"pip install 'servetrace\[ibm\]'"):
        ibm.load([path], "t")


def test_dataset_parts_and_files():
    ds = ibm.DATASET
    assert [p.name for p in ds.parts] == ["app_configs", *(f"week_{w}" for w in range(1, 11))]
    assert len(ds.part("week_2").files) == 8 and len(ds.part("week_10").files) == 3
    assert ds.part("week_1").files[0].url.endswith("/compressed_data/week_1.7z.001")
    assert ds.part_for_file("week_10.pickle").name == "week_10"
    assert ds.part_for_file("app_configs.pickle").name == "app_configs"
    assert ds.license == "MIT"
