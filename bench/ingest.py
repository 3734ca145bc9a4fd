"""Ingest benchmark: a 10-million-row BurstGPT CSV through servetrace, DuckDB and pandas.

    python bench/ingest.py [--rows N] [--keep DIR]

Generates a BurstGPT v1 CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,
Log Type``) whose (request, response) token pairs are resampled jointly from the real
BurstGPT sample in ``../shared/traces/burstgpt_sample`` (about 1 in 20 responses set to 0,
the failed requests of the raw files), then measures, in this one process:

- servetrace: ``servetrace.loaders.ingest(path, as_format="burstgpt")`` into a fresh store (parse,
  validate every row, SHA-256 the source, write Parquet, commit);
- DuckDB: ``COPY (SELECT * FROM read_csv(path)) TO 'x.parquet'`` — the practical ceiling;
- pandas: ``read_csv`` + ``to_parquet`` (pyarrow engine).

Prints seconds, rows/s and peak RSS per stage, and the ratios the project targets:
servetrace ≥ 0.7× DuckDB's rate, ≥ 5× pandas, peak memory < 4 GB.
"""

from __future__ import annotations

import argparse
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


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write a BurstGPT-format CSV of ``rows`` rows, lengths from the real sample."""
    sample = pl.read_ndjson(SHARED / "burstgpt_sample" / "sample.jsonl")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, sample.height, rows)
    req = sample["input_length"].to_numpy()[pick]
    resp = sample["output_length"].to_numpy()[pick]
    resp = np.where(rng.random(rows) < 0.05, 0, resp)
    ts = np.cumsum(rng.exponential(0.5, rows)).round(0)
    model = np.where(rng.random(rows) < 0.8, "ChatGPT", "GPT-4")
    log = np.where(rng.random(rows) < 0.7, "Conversation log", "API log")
    pl.DataFrame({
        "Timestamp": ts.astype(np.int64), "Model": model, "Request tokens": req,
        "Response tokens": resp, "Total tokens": req + resp, "Log Type": log,
    }).write_csv(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args()
    with work_dir(args.keep) as work:
        csv = work / "BurstGPT_1.csv"
        if not csv.exists():
            print(f"generating {args.rows:,} rows -> {csv}", flush=True)
            generate(csv, args.rows)
        rows = sum(1 for _ in open(csv, "rb")) - 1
        print(f"{rows:,} rows, {csv.stat().st_size / 1e6:,.0f} MB", flush=True)

        def ours():
            store_dir = work / "store"
            shutil.rmtree(store_dir, ignore_errors=True)
            [rec] = ingest(csv, as_format="burstgpt", trace="bench", store=Store(store_dir),
                           progress=False)
            assert rec["rows"] + rec["rejected"] == rows
            return rec

        def with_duckdb():
            out = work / "duckdb.parquet"
            with duckdb.connect() as con:
                con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{out}' (FORMAT parquet)")

        def with_pandas():
            import pandas as pd

            pd.read_csv(csv).to_parquet(work / "pandas.parquet", engine="pyarrow")

        stages = [measure("servetrace ingest", ours), measure("duckdb read_csv->parquet",
                                                              with_duckdb),
                  measure("pandas read_csv+to_parquet", with_pandas)]
        print(report(rows, stages))
        s, d, p = (m.seconds for m in stages)
        print(f"servetrace rate / duckdb rate: {d / s:.2f}x (target >= 0.7)")
        print(f"servetrace rate / pandas rate: {p / s:.2f}x (target >= 5)")
        print(f"servetrace peak RSS: {stages[0].peak_gb:.2f} GB (target < 4)")


if __name__ == "__main__":
    main()
