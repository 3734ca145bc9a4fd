"""Wide-to-long benchmark: a full-scale Azure Functions 2019 day to ``invocation_counts``.

    python bench/wide_counts.py [--functions N] [--keep DIR]

Generates ``invocations_per_function_md.anon.d01.csv`` shaped like one day of the Azure
Functions 2019 trace (Shahrad et al., "Serverless in the Wild", USENIX ATC 2020): 50,000
functions × 1,440 minute columns. Sparsity and counts mimic the real InVitro sample in
``../shared/traces/azure_functions_2019`` (500 functions × 480 minutes, 24.2 % of the cells
non-zero, 1 being the commonest count and a heavy tail up to thousands): each synthetic
function is a randomly drawn real function's 480 minutes repeated three times, rotated by a
random offset; owners, apps and functions get fresh 64-hex-digit hashes. Then measures, in
this one process:

- servetrace: ``servetrace.loaders.ingest(path)`` into a fresh store (read, validate every cell,
  unpivot the non-zero cells, SHA-256 the source, write Parquet, commit);
- pandas: ``read_csv`` + ``melt`` + filter ``count > 0`` + ``to_parquet`` (pyarrow engine).

Prints seconds, million long rows per second and peak RSS per stage, and the targets:
servetrace ≥ 5× pandas, peak memory ≤ 3 GB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report, work_dir

from servetrace.loaders import Store, ingest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
IDS = ["HashOwner", "HashApp", "HashFunction", "Trigger"]
MINUTES = 1440


def generate(path: Path, functions: int, seed: int = 0) -> None:
    """Write a day file of ``functions`` rows resampled from the real sample's rows."""
    real = pl.read_csv(SHARED / "azure_functions_2019" / "invocations.csv")
    counts = real.drop(IDS).to_numpy().astype(np.int32)  # 500 x 480
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, counts.shape[0], functions)
    shift = rng.integers(0, MINUTES, functions)
    day = np.tile(counts, (1, MINUTES // counts.shape[1]))  # 500 x 1440
    cols = (np.arange(MINUTES)[None, :] + shift[:, None]) % MINUTES
    dense = day[pick[:, None], cols]

    def hashes(n: int) -> np.ndarray:
        return np.array([rng.bytes(32).hex() for _ in range(n)])

    owners, apps = hashes(functions // 4), hashes(functions // 2)
    app = rng.integers(0, functions // 2, functions)
    ids = pl.DataFrame({"HashOwner": owners[app % len(owners)], "HashApp": apps[app],
                        "HashFunction": hashes(functions),
                        "Trigger": real["Trigger"].to_numpy()[pick]})
    ids.hstack(pl.DataFrame(dense, schema=[str(m) for m in range(1, MINUTES + 1)])
               ).write_csv(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=50_000)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args()
    with work_dir(args.keep) as work:
        csv = work / "invocations_per_function_md.anon.d01.csv"
        if not csv.exists():
            print(f"generating {args.functions:,} functions x {MINUTES} minutes -> {csv}",
                  flush=True)
            generate(csv, args.functions)
        print(f"{csv.stat().st_size / 1e6:,.0f} MB", flush=True)

        def ours():
            store_dir = work / "store"
            shutil.rmtree(store_dir, ignore_errors=True)
            [rec] = ingest(csv, trace="bench", store=Store(store_dir), progress=False)
            assert rec["rejected"] == 0
            return rec

        def with_pandas():
            import pandas as pd

            wide = pd.read_csv(csv)
            long = wide.melt(id_vars=IDS, var_name="minute", value_name="count")
            long = long[long["count"] > 0]
            long["window_start_s"] = (long["minute"].astype(int) - 1) * 60.0
            long.drop(columns="minute").to_parquet(work / "pandas.parquet", engine="pyarrow")
            return len(long)

        stages = [measure("servetrace ingest", ours),
                  measure("pandas melt+filter+parquet", with_pandas)]
        # invocation_counts rows (each function also adds one functions row)
        rows = stages[0].result["rows"] - args.functions
        assert rows == stages[1].result, (rows, stages[1].result)
        print(f"{rows:,} non-zero function-minutes "
              f"({rows / (args.functions * MINUTES):.1%} of {args.functions * MINUTES:,} cells)")
        print(report(rows, stages))
        s, p = (m.seconds for m in stages)
        print(f"servetrace / pandas speed: {p / s:.2f}x (target >= 5)")
        print(f"servetrace peak RSS: {stages[0].peak_gb:.2f} GB (target <= 3); "
              f"pandas {stages[1].peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
