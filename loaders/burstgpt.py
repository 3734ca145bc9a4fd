"""BurstGPT: ChatGPT (GPT-3.5) and GPT-4 requests served through Azure OpenAI.

Source: ``HPMLL/BurstGPT``, release assets (``v2.0``; the README lists the same six files under
``v1.2``). Three formats are read, told apart by their first line:

- v1, ``BurstGPT_{1,2}.csv`` and ``BurstGPT_without_fails_{1,2}.csv``:
  ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``;
- v2.0, ``BurstGPT_3.csv`` and ``BurstGPT_without_fails_3.csv``:
  ``Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type``;
- the JSON-lines conversion of ``BurstGPT_3.csv`` conversation logs made by a third party
  (``Sispheqgj/nano-kvrouter``, ``traces/burstgpt/sample.jsonl``), one object per line with
  ``request_id``, ``arrival_ms``, ``input_length``, ``output_length``, ``session_id``. It is not
  an official file: no part lists it, but a local copy is detected and loaded.

Mapping onto ``requests``:

- ``Timestamp`` is, per the README, "request submission time, seconds from 0:00:00 on the
  first day" of the collection. That zero is kept: ``arrival_s = Timestamp`` (so ``BurstGPT_3``
  starts near 19,440,110 s, not at 0) and the trace origin is null, because the README gives
  no calendar date for that first day. In the JSON-lines sample ``arrival_s = arrival_ms /
  1000``, whose zero is the sample's own first row (the converter subtracted it), not the
  collection's first midnight: that row is the first row of ``BurstGPT_3.csv`` (same session
  and tokens), at ``Timestamp`` 19,440,110 s. The offset is not added back, since the file
  itself does not state it.
- ``Request tokens`` → ``input_tokens``, ``Response tokens`` → ``output_tokens`` (JSON lines:
  ``input_length``, ``output_length``); ``Model`` → ``model``, ``Log Type`` → ``log_type``;
  ``Session ID`` (JSON lines: ``session_id``) → ``session``; JSON lines keep ``request_id``.
- ``failed`` is ``Response tokens == 0``, the README's marker of a failed request. Failed rows
  are never dropped; in the ``without_fails`` files the same rule gives ``false`` everywhere.
- ``Elapsed time`` → ``latency_s``. The v2.0 README defines it as "time between the request
  submission time and system response time, in seconds", i.e. the request's end-to-end
  response time (for a failed request, presumably the time until the failure was returned;
  the README does not say). A negative
  value cannot be a latency and rejects the row; an empty one leaves ``latency_s`` null.
- ``tenant`` (the unit of fairness, see DESIGN.md) is the session where the row has one, and
  otherwise ``Model + "/" + Log Type`` (e.g. ``GPT-4/API log``). The README says only
  conversation-mode rows carry a ``Session ID``, so in v2.0 conversation rows are tenants per
  conversation while API rows fall back to their model/log-type class; v1 has no sessions, so
  all its tenants are model/log-type classes (ChatGPT or GPT-4 × Conversation or API log).
- ``Total tokens`` is documented as request plus response tokens. It is not stored; a row
  where it is missing or differs is kept, and such rows are counted in
  ``Loaded.notes["total_tokens_mismatch"]``. ``notes["failed"]`` counts failed rows.

Parts are named after the file's suffix: ``1``, ``2``, ``without_fails_1``,
``without_fails_2``, ``3``, ``without_fails_3`` (trace ids ``burstgpt/3`` and so on).
Loading several files into one trace concatenates them and sorts by ``arrival_s``, which is
meaningful only for files sharing a time zero.

Wang et al., "BurstGPT: A Real-World Workload Dataset to Optimize LLM Serving Systems",
KDD 2025 (arXiv 2401.17644).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from servetrace.loaders import one_pass
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import REQUESTS, empty, validate, validate_csv
from servetrace.loaders.source import (
    FormatError,
    csv_rows,
    head,
    header_fields,
    jsonl_rows,
    parse_number,
    sort_by,
)

VERSION = "1"
HEADER_V1 = ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
             "Log Type"]
HEADER_V2 = ["Timestamp", "Session ID", "Elapsed time", "Model", "Request tokens",
             "Response tokens", "Total tokens", "Log Type"]
JSONL_KEYS = ["request_id", "arrival_ms", "input_length", "output_length", "session_id"]
_RELEASE = "https://github.com/HPMLL/BurstGPT/releases/download/v2.0/"


def _file(name: str, size: int | None = None, sha256: str | None = None) -> RemoteFile:
    return RemoteFile(_RELEASE + name, name, size=size, sha256=sha256)


DATASET = Dataset(
    name="burstgpt",
    title="BurstGPT (Azure OpenAI GPT-3.5/GPT-4 workload)",
    citation=("Yuxin Wang, Yuhan Chen, Zeyu Li, Xueze Kang, Yuchu Fang, Yeju Zhou, Yang Zheng, "
              "Zhenheng Tang, Xin He, Rui Guo, Xin Wang, Qiang Wang, Amelie Chi Zhou, "
              "Xiaowen Chu. BurstGPT: A Real-World Workload Dataset to Optimize LLM Serving "
              "Systems. KDD 2025. doi:10.1145/3711896.3737413"),
    license="CC-BY-4.0",
    homepage="https://github.com/HPMLL/BurstGPT",
    # Part names are the file's suffix after "BurstGPT_". Files 1-2: size and SHA-256 from the
    # official git-LFS pointers (the release assets agree); file 3: several agreeing
    # third-party pins; without_fails_3: a single third-party pin, so not pinned.
    parts=(
        Part("1", (_file("BurstGPT_1.csv", 52_283_111,
                         "4bb3783693d0a435686fbfc885615d2349bd067239079fa4b749f2e679e12122"),),
             "v1, first 2 months, failed requests included"),
        Part("2", (_file("BurstGPT_2.csv", 144_819_209,
                         "44bf5942b03fca42c01a226a545ad3a750ec62688faecd67b6831c56a8928bf7"),),
             "v1, second 2 months, failed requests included"),
        Part("without_fails_1", (_file(
            "BurstGPT_without_fails_1.csv", 51_429_517,
            "a4d068a7113ec0290e74063a1b3447dc6001a30e4298eb313581b71006dda1f4"),),
            "v1, first 2 months, failed requests removed"),
        Part("without_fails_2", (_file(
            "BurstGPT_without_fails_2.csv", 142_376_815,
            "56193aa9b2bb26128ded43d2d29a960df6bf5af062bcfc9b005f3fcaa4e6e501"),),
            "v1, second 2 months, failed requests removed"),
        Part("3", (_file("BurstGPT_3.csv", 231_682_327,
                         "2299986a07388aa303ec2c41d1131e756db650a39ed6ef9dfe7cc3d7f9a43b8f"),),
             "v2.0, another 110 days with sessions and elapsed time, failed requests included"),
        Part("without_fails_3", (_file("BurstGPT_without_fails_3.csv"),),
             "v2.0, another 110 days with sessions and elapsed time, failed requests removed"),
    ),
)


def _is_jsonl(path: Path) -> bool:
    first = head(path, 1)
    return bool(first) and first[0].lstrip().startswith("{")


def detect(path: Path) -> bool:
    """A v1 or v2.0 CSV header, or a first JSON line with the sample's keys."""
    first = head(path, 1)
    if not first:
        return False
    if first[0].lstrip().startswith("{"):
        try:
            obj = json.loads(first[0])
        except ValueError:
            return False
        return isinstance(obj, dict) and set(JSONL_KEYS) <= obj.keys()
    return header_fields(path) in (HEADER_V1, HEADER_V2)


def _negative(column: str, label: str, source: str) -> tuple[pl.Expr, pl.Expr]:
    """A check: the parsed ``column`` is negative, with a reason quoting the ``source`` text."""
    return pl.col(column) < 0, pl.format("negative {}: {}", pl.lit(label), pl.col(source))


NUMERIC = ["Timestamp", "Elapsed time", "Request tokens", "Response tokens", "Total tokens"]
CATEGORICAL = ["Model", "Log Type"]


def _csv(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int, int]:
    """One v1/v2.0 CSV: (valid rows, rejects, rows read, valid rows whose total mismatches)."""
    header = header_fields(path)
    if header not in (HEADER_V1, HEADER_V2):
        raise FormatError(path, f"unexpected header {','.join(header)!r}; expected "
                                f"{','.join(HEADER_V1)!r} (v1) or {','.join(HEADER_V2)!r} "
                                f"(v2.0)", line=1)
    v2 = header == HEADER_V2
    text = {"arrival_s": "Timestamp", "input_tokens": "Request tokens",
            "output_tokens": "Response tokens"}
    checks = [_negative("arrival_s", "arrival_s (Timestamp)", "Timestamp")]
    if v2:
        text["latency_s"] = "Elapsed time"
        checks.append(_negative("latency_s", "latency_s (Elapsed time)", "Elapsed time"))

    def parse(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.with_columns(
            parse_number(pl.col("Timestamp")).alias("arrival_s"),
            parse_number(pl.col("Request tokens")).alias("input_tokens"),
            parse_number(pl.col("Response tokens")).alias("output_tokens"),
            parse_number(pl.col("Total tokens")).alias("_total"),
            pl.col("Model").alias("model"),
            pl.col("Log Type").alias("log_type"),
            (pl.col("Session ID") if v2 else pl.lit(None, pl.String)).alias("session"),
            (parse_number(pl.col("Elapsed time")) if v2 else pl.lit(None, pl.Float64))
            .alias("latency_s"),
        )

    rows = csv_rows(path, header, numeric=NUMERIC, categorical=CATEGORICAL)
    valid, rejects = validate_csv("requests", path, header, rows, parse, trace=trace,
                                  text=text, checks=checks, categorical=CATEGORICAL)
    total = pl.col("_total")
    mismatch = valid.select((total.is_null() | (
        total != pl.col("input_tokens") + pl.col("output_tokens"))).sum()).item()
    return valid.drop("_total"), rejects, rows.height, int(mismatch)


def _jsonl(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int, int]:
    """The JSON-lines sample: (valid rows, rejects, rows read, 0: it has no total)."""
    rows = jsonl_rows(path, JSONL_KEYS)
    parsed = rows.with_columns(
        (parse_number(pl.col("arrival_ms")) / 1000.0).alias("arrival_s"),
        parse_number(pl.col("input_length")).alias("input_tokens"),
        parse_number(pl.col("output_length")).alias("output_tokens"),
        pl.col("request_id"),
        pl.when(pl.col("session_id").str.strip_chars() != "").then(pl.col("session_id"))
        .alias("session"),
    )
    text = {"arrival_s": "arrival_ms", "input_tokens": "input_length",
            "output_tokens": "output_length"}
    valid, rejects = validate("requests", parsed, trace=trace, text=text, checks=[
        _negative("arrival_s", "arrival_s (arrival_ms)", "arrival_ms")])
    return valid, rejects, rows.height, 0


def stream_header_lines(path: Path) -> int:
    """Rows stand alone: a large file is read in chunks, each after the CSV header line (none
    for JSON lines; :mod:`servetrace.loaders.chunks`)."""
    return 0 if _is_jsonl(path) else 1


def one_pass_plan(path: Path) -> one_pass.Plan | None:
    """A v1 or v2.0 CSV as SQL for :mod:`servetrace.loaders.one_pass` (None for JSON lines).

    The same mapping as :func:`load`; a row is clean when its numbers are what
    :func:`load` accepts and its ``Total tokens`` equals request plus response tokens, so
    ``total_tokens_mismatch`` is 0 (a file with a mismatch takes :func:`load`'s reading).
    """
    if _is_jsonl(path):
        return None
    header = header_fields(path)
    if header not in (HEADER_V1, HEADER_V2):
        return None
    v2 = header == HEADER_V2
    i = one_pass.ident
    model, log_type = i("Model"), i("Log Type")
    session = i("Session ID") if v2 else "NULL::VARCHAR"
    # The model/log-type pairs of the first lines, spelled out: a constant per row costs
    # DuckDB less than a string built per row (other pairs are built).
    pairs = {tuple(line.split(",")[k] for k in (header.index("Model"),
                                                header.index("Log Type")))
             for line in head(path, 1000)[1:] if line.count(",") == len(header) - 1}
    known = " ".join(f"WHEN {model} = {one_pass.sql_str(m)} AND {log_type} = "
                     f"{one_pass.sql_str(t)} THEN {one_pass.sql_str(f'{m}/{t}')}"
                     for m, t in sorted(pairs) if m and t)
    combined = (f"CASE {known} ELSE {model} || '/' || {log_type} END" if known
                else f"{model} || '/' || {log_type}")
    select = {
        "arrival_s": i("Timestamp"),
        "tenant": f"coalesce({session}, {combined})",
        "session": session, "model": model, "log_type": log_type,
        "input_tokens": one_pass.count("Request tokens"),
        "output_tokens": one_pass.count("Response tokens"),
        "failed": f"{i('Response tokens')} = 0"}
    clean = [one_pass.clean_number("Timestamp"), one_pass.clean_count("Request tokens"),
             one_pass.clean_count("Response tokens"),
             f"{i('Total tokens')} = {i('Request tokens')} + {i('Response tokens')}"]
    if v2:
        select["latency_s"] = i("Elapsed time")
        clean.append(one_pass.clean_number("Elapsed time", required=False))
    return one_pass.Plan(
        columns=tuple(header), select=select, clean=" AND ".join(clean),
        types=dict.fromkeys(NUMERIC if v2 else [c for c in NUMERIC if c != "Elapsed time"],
                            "DOUBLE"),
        text=("model", "log_type", "session") if v2 else ("model", "log_type"),
        notes={"failed": pl.col("failed").sum()}, fixed_notes={"total_tokens_mismatch": 0})


def load(paths: list[Path], trace: str) -> Loaded:
    """Read BurstGPT CSV (v1, v2.0) or JSON-lines files onto ``requests``.

    ``model``, ``log_type`` and ``tenant`` come out Categorical (the store writes them as
    strings): a few distinct values over millions of rows.
    """
    canonical = empty("requests").drop("trace").with_columns(
        pl.col("model", "log_type").cast(pl.Categorical)).schema
    valids, rejects, read, mismatch = [], [], 0, 0
    for path in map(Path, paths):
        valid, bad, n, m = (_jsonl if _is_jsonl(path) else _csv)(path, trace)
        valids.append(valid.with_columns(
            [pl.col(c).cast(d) if c in valid.columns else pl.lit(None, d).alias(c)
             for c, d in canonical.items() if c in ("model", "log_type", "session")
             or c not in valid.columns]))
        rejects.append(bad)
        read, mismatch = read + n, mismatch + m
    requests = pl.concat(valids, how="diagonal_relaxed") if len(valids) > 1 else valids[0]
    requests = requests.with_columns(
        (pl.col("output_tokens") == 0).alias("failed"), _tenant(requests))
    requests = sort_by(requests).select([c for c in REQUESTS.names if c in requests.columns])
    notes = {"failed": int(requests["failed"].sum()), "total_tokens_mismatch": mismatch}
    return Loaded(tables={"requests": requests}, rejects=pl.concat([empty("rejects"), *rejects]),
                  rows_read=read, origin=None, notes=notes)


def _tenant(requests: pl.DataFrame) -> pl.Expr:
    """``session``, else ``model/log_type``: that text is built once per distinct pair."""
    def pair(frame: pl.DataFrame | None = None) -> pl.Expr | pl.Series:
        key = (pl.col("model").to_physical().cast(pl.UInt64) * (1 << 32)
               + pl.col("log_type").to_physical().cast(pl.UInt64))
        return key if frame is None else frame.select(key).to_series()

    pairs = requests.select("model", "log_type").unique().drop_nulls()
    names = pairs.select(pl.concat_str([pl.col("model"), pl.lit("/"), pl.col("log_type")]))
    combined = pair().replace_strict(pair(pairs), names.to_series(), default=None,
                                     return_dtype=pl.Categorical)
    return (pl.when(pl.col("session").is_null()).then(combined)
            .otherwise(pl.col("session").cast(pl.Categorical)).alias("tenant"))
