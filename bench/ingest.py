"""Ingest benchmark: large BurstGPT or Azure 2024 CSVs through servetrace, DuckDB and pandas.

    python bench/ingest.py [--format burstgpt|azure_llm_2024] [--rows N [N ...]]
                           [--pandas] [--chunked] [--keep DIR]

Generates, block by block, a CSV of each size in the chosen format:

- ``burstgpt``: BurstGPT v1 (``Timestamp,Model,Request tokens,Response tokens,Total tokens,
  Log Type``), (request, response) token pairs resampled jointly from the real BurstGPT
  sample in ``../shared/traces/burstgpt_sample`` (about 1 in 20 responses set to 0, the
  failed requests of the raw files);
- ``azure_llm_2024``: ``TIMESTAMP,ContextTokens,GeneratedTokens`` with the week files'
  ``2024-05-10 00:00:00.009930+00:00`` timestamps (1 in 10 without a fraction, as there),
  lengths from the same sample;

then measures, in this one process and for each size:

- servetrace: ``servetrace.loaders.ingest(path)`` into a fresh store (parse, validate every
  row, SHA-256 the source, write Parquet, commit): for a file larger than a chunk, in one
  DuckDB pass (:mod:`servetrace.loaders.one_pass`), which hands over to the chunked reading
  of :mod:`servetrace.loaders.chunks` for a file with a row it cannot vouch for;
- servetrace chunked (``--chunked``): the same with ``SERVETRACE_ONE_PASS=0``, the chunked
  Polars reading alone (the code before the one-pass reader);
- DuckDB: ``COPY (SELECT * FROM read_csv(path)) TO 'x.parquet'`` — the practical ceiling;
- pandas (``--pandas``, sizes up to 20M rows): ``read_csv`` + ``to_parquet``.

Prints seconds, rows/s, peak RSS and CPU seconds (user + system, this process) per stage,
and the ratios the project targets:
servetrace ≥ 0.7× DuckDB's rate and peak memory under 2 GB at every size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report, work_dir

from servetrace.loaders import Store, ingest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def generate(path: Path, rows: int, fmt: str, seed: int = 0, block: int = 5_000_000) -> None:
    """Write a CSV of ``rows`` rows in format ``fmt``, ``block`` rows at a time."""
    sample = pl.read_ndjson(SHARED / "burstgpt_sample" / "sample.jsonl")
    rng = np.random.default_rng(seed)
    t0 = 0.0
    last_us = 0
    with open(path, "wb") as fh:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            pick = rng.integers(0, sample.height, n)
            req = sample["input_length"].to_numpy()[pick]
            resp = sample["output_length"].to_numpy()[pick]
            gaps = rng.exponential(0.5 if fmt == "burstgpt" else 0.02, n)
            ts = t0 + np.cumsum(gaps)
            t0 = float(ts[-1])
            if fmt == "burstgpt":
                resp = np.where(rng.random(n) < 0.05, 0, resp)
                frame = pl.DataFrame({
                    "Timestamp": ts.round(0).astype(np.int64),
                    "Model": np.where(rng.random(n) < 0.8, "ChatGPT", "GPT-4"),
                    "Request tokens": req, "Response tokens": resp, "Total tokens": req + resp,
                    "Log Type": np.where(rng.random(n) < 0.7, "Conversation log", "API log")})
            else:
                us = (ts * 1e6).astype(np.int64)
                # 1 in 10 on a whole second, printed without a fraction; still sorted, as
                # the week files are (across blocks too: none before the last block's end)
                us = np.sort(np.maximum(np.where(rng.random(n) < 0.1,
                                                 us // 1_000_000 * 1_000_000, us), last_us))
                last_us = int(us[-1])
                when = pl.Series(us + 1_715_299_200_000_000).cast(pl.Datetime("us"))  # 05-10
                text = pl.select(pl.when(when.dt.microsecond() == 0)
                                 .then(when.dt.strftime("%Y-%m-%d %H:%M:%S+00:00"))
                                 .otherwise(when.dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00:00"))
                                 ).to_series()
                frame = pl.DataFrame({"TIMESTAMP": text, "ContextTokens": req,
                                      "GeneratedTokens": resp})
            frame.write_csv(fh, include_header=start == 0)


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def run(work: Path, rows: int, fmt: str, with_pandas: bool, chunked: bool = False) -> list:
    name = {"burstgpt": "BurstGPT_1.csv",
            "azure_llm_2024": "AzureLLMInferenceTrace_conv_1week.csv"}[fmt]
    csv = work / f"{rows}" / name
    csv.parent.mkdir(exist_ok=True)
    if not csv.exists():
        print(f"generating {rows:,} rows -> {csv}", flush=True)
        generate(csv, rows, fmt)
    print(f"{rows:,} rows of {fmt}, {csv.stat().st_size / 1e6:,.0f} MB", flush=True)

    def ours():
        store_dir = work / "store"
        shutil.rmtree(store_dir, ignore_errors=True)
        [rec] = ingest(csv, as_format=fmt, trace="bench", store=Store(store_dir),
                       progress=False)
        assert rec["rows"] + rec["rejected"] == rows
        return rec

    def with_duckdb():
        out = work / "duckdb.parquet"
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{out}' (FORMAT parquet)")

    def pandas_copy():
        import pandas as pd

        pd.read_csv(csv).to_parquet(work / "pandas.parquet", engine="pyarrow")

    def old():
        os.environ["SERVETRACE_ONE_PASS"] = "0"
        try:
            return ours()
        finally:
            del os.environ["SERVETRACE_ONE_PASS"]

    cpu = {}

    def timed(name, fn):
        c0 = _cpu()
        stage = measure(name, fn)
        cpu[name] = _cpu() - c0
        return stage

    # One tiny ingest first, so that no stage pays for importing the libraries it uses.
    tiny = work / "tiny" / csv.name
    tiny.parent.mkdir(exist_ok=True)
    with open(csv, "rb") as src:
        tiny.write_bytes(b"".join(src.readline() for _ in range(100)))
    ingest(tiny, as_format=fmt, trace="warm-up", store=Store(work / "tiny-store"),
           progress=False)
    stages = [timed("servetrace ingest", ours),
              timed("duckdb read_csv->parquet", with_duckdb)]
    if with_pandas and rows <= 20_000_000:
        stages.append(timed("pandas read_csv+to_parquet", pandas_copy))
    if chunked:
        stages.append(timed("servetrace chunked (before)", old))
    print(report(rows, stages))
    print("CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    s, d = stages[0].seconds, stages[1].seconds
    parts = json.loads(stages[0].result["files"] or "{}")
    files = parts.get("requests", {"": 0})
    one = len(parts.get("rejects", {})) == 1  # the chunked reading writes one per chunk
    print(f"servetrace: {len(files)} Parquet file(s) for requests"
          + (" (one DuckDB pass" + (")" if "00000" in files else ", then sorted by the store)")
             if one else " (chunked reading)"))
    print(f"servetrace rate / duckdb rate: {d / s:.2f}x (target >= 0.7)")
    for stage in stages[2:]:
        print(f"servetrace rate / {stage.name} rate: {stage.seconds / s:.2f}x")
    print(f"servetrace peak RSS: {stages[0].peak_gb:.2f} GB (target < 2)", flush=True)
    csv.unlink()  # the next size needs the disk
    return stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", choices=["burstgpt", "azure_llm_2024"], default="burstgpt")
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    ap.add_argument("--pandas", action="store_true", help="also time pandas (up to 20M rows)")
    ap.add_argument("--chunked", action="store_true",
                    help="also time the chunked reading alone (SERVETRACE_ONE_PASS=0)")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args()
    with work_dir(args.keep) as work:
        for rows in args.rows:
            run(work, rows, args.format, args.pandas, args.chunked)


if __name__ == "__main__":
    main()
