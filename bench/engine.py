"""The keep-alive simulation on the local engine and on Ray, side by side.

    python bench/engine.py [--functions N] [--days D] [--cpus C] [--partitions P]

Builds the ``invocation_counts`` table of ``bench/keepalive.py`` (``N`` functions × ``D`` days
of per-minute counts resampled from the real Azure Functions 2019 sample, grouped into
``N / 2`` apps) and writes it as Parquet files of 2M rows, as a store holds a large trace.
Then, per policy (fixed 10 min, hybrid histogram), ``simulate(..., by="app")`` over a lazy
scan of those files:

- local: in this process (the scan is collected once, then simulated in chunks);
- ray: ``RayEngine`` on a local Ray instance with ``C`` CPUs, ``P`` partitions (default 4 per
  CPU): ``P`` map tasks read a slice of the files each and write the rows regrouped by app
  hash to a scratch folder, ``P`` reduce tasks simulate one group each.

Prints wall time, the driver's peak RSS, the Ray workers' summed peak RSS (sampled over
``/proc`` for processes named ``ray::*``), the scratch folder's peak size (bytes the shuffle
moves), the local/Ray time ratio and whether the results are identical.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure
from keepalive import generate

from servetrace.analysis.engine import RayEngine
from servetrace.analysis.keepalive import FixedKeepAlive, HybridHistogram, simulate

FILE_ROWS = 2_000_000


class Sampler:
    """Peak summed RSS of the Ray worker processes and peak size of a folder, sampled."""

    def __init__(self, folder: Path, interval_s: float = 0.2) -> None:
        self.folder, self.interval_s = folder, interval_s
        self.rss = self.bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers_rss(self) -> int:
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as fh:
                    lines = fh.read().splitlines()
            except OSError:
                continue
            if lines and lines[0].split(None, 1)[-1].startswith("ray::"):
                total += next((int(x.split()[1]) * 1024 for x in lines
                               if x.startswith("VmRSS:")), 0)
        return total

    def _folder_bytes(self) -> int:
        total = 0
        for root, _, files in os.walk(self.folder):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        while not self._done.is_set():
            self.rss = max(self.rss, self._workers_rss())
            self.bytes = max(self.bytes, self._folder_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="servetrace-bench-engine-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        trace, funcs = generate(args.functions, args.days)
        files = []
        for i, lo in enumerate(range(0, trace.height, FILE_ROWS)):
            files.append(tmp_path / f"part-{i:04d}.parquet")
            trace.slice(lo, FILE_ROWS).write_parquet(files[-1])
        rows, invocations = trace.height, int(trace["count"].sum())
        del trace
        size = sum(f.stat().st_size for f in files)
        print(f"generated {args.functions:,} functions x {args.days} days: {rows:,} non-zero "
              f"minutes, {invocations:,} invocations, {len(files)} Parquet files, "
              f"{size / 1e9:.2f} GB ({time.perf_counter() - t0:.1f} s)", flush=True)

        t0 = time.perf_counter()
        ray = RayEngine(num_cpus=args.cpus)
        print(f"ray.init with {ray.workers} CPUs: {time.perf_counter() - t0:.1f} s", flush=True)
        parts = args.partitions or 4 * ray.workers
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        for name, pol in (("fixed 10 min", FixedKeepAlive(600.0)),
                          ("hybrid histogram", HybridHistogram())):
            local = measure(f"local {name}", lambda pol=pol: simulate(
                pl.scan_parquet(files), pol, by="app", functions=funcs))
            print(f"local {name:<17} {local.seconds:7.1f} s   driver peak RSS "
                  f"{local.peak_gb:5.2f} GB", flush=True)
            with Sampler(scratch) as s:
                dist = measure(f"ray {name}", lambda pol=pol: simulate(
                    pl.scan_parquet(files), pol, by="app", functions=funcs, engine=ray,
                    partitions=parts, scratch=scratch))
            same = dist.result.equals(local.result)
            print(f"ray   {name:<17} {dist.seconds:7.1f} s   driver peak RSS "
                  f"{dist.peak_gb:5.2f} GB, {ray.workers} workers' peak RSS "
                  f"{s.rss / 1e9:5.2f} GB, shuffle {s.bytes / 1e9:.2f} GB in "
                  f"{parts} x {parts} files; {parts} partitions", flush=True)
            print(f"   local / ray time: {local.seconds / dist.seconds:.2f}x; identical "
                  f"results: {same}; {local.result.height:,} apps, cold fraction "
                  f"{local.result['cold_starts'].sum() / invocations:.4f}", flush=True)


if __name__ == "__main__":
    main()
