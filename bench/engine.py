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

Prints wall time, the driver's peak RSS (and its growth during the call), the summed peak RSS
of Ray's processes (workers and agents, sampled over ``/proc`` for names ``ray::*``), the
scratch folder's peak size (bytes the shuffle moves), the local/Ray time ratio and whether the
results are identical.

``--per-request-rows N`` measures instead the per-request figures behind the README's
estimate for the IBM Cloud Code Engine trace (see :func:`per_request_rate`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measured, measure, ray_processes_rss
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
        return ray_processes_rss()

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


def _gain(m: Measured) -> float:
    """GB the driver's RSS grew during the call (the RSS before it holds earlier stages')."""
    return (m.peak_bytes - m.base_bytes) / 1e9


def per_request_rate(rows: int, apps: int = 1780, days: int = 62, seed: int = 0) -> None:
    """The per-request figures behind the README's IBM estimate, on one CPU here.

    An ``invocations`` table shaped like IBM Cloud Code Engine's (Nasiri et al., EuroSys
    2026: 1,780 apps, 62 days, one row per request with its execution time): ``rows``
    requests over ``days``, apps drawn with Zipf(1) weights (an assumption: the trace's
    per-app skew is not published here), Poisson arrivals per app, log-normal durations.
    Prints the Parquet bytes per request of the columns the simulation reads, and the
    seconds per million requests of ``simulate`` (fixed 10 min and hybrid, by app)."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, apps + 1)
    app = rng.choice(apps, rows, p=w / w.sum())
    trace = pl.DataFrame({
        "app": pl.Series([f"{i:032x}" for i in range(apps)], dtype=pl.Categorical).gather(app),
        "arrival_s": rng.uniform(0, days * 86_400.0, rows),
        "duration_s": rng.lognormal(-2.0, 1.5, rows)}).sort("arrival_s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invocations.parquet"
        trace.write_parquet(path)
        size = path.stat().st_size
    print(f"IBM-shaped invocations: {rows:,} requests, {apps:,} apps (largest "
          f"{np.bincount(app).max() / rows:.1%} of requests), Parquet {size / rows:.1f} B per "
          f"request (app, arrival_s, duration_s)", flush=True)
    for name, pol in (("fixed 10 min", FixedKeepAlive(600.0)),
                      ("hybrid histogram", HybridHistogram())):
        m = measure(name, lambda pol=pol: simulate(trace, pol, by="app"))
        print(f"   {name:<17} {m.seconds:6.1f} s = {m.seconds / rows * 1e6:.2f} s per million "
              f"requests, +{(m.peak_bytes - m.base_bytes) / rows:.0f} B per request over "
              f"the input", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--per-request-rows", type=int, default=0,
                    help="only measure the per-request figures of the IBM estimate")
    args = ap.parse_args()
    if args.per_request_rows:
        per_request_rate(args.per_request_rows)
        return

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
                  f"{local.peak_gb:5.2f} GB (+{_gain(local):.2f} GB)", flush=True)
            with Sampler(scratch) as s:
                dist = measure(f"ray {name}", lambda pol=pol: simulate(
                    pl.scan_parquet(files), pol, by="app", functions=funcs, engine=ray,
                    partitions=parts, scratch=scratch))
            same = dist.result.equals(local.result)
            print(f"ray   {name:<17} {dist.seconds:7.1f} s   driver peak RSS "
                  f"{dist.peak_gb:5.2f} GB (+{_gain(dist):.2f} GB), Ray processes' peak RSS "
                  f"{s.rss / 1e9:5.2f} GB, shuffle {s.bytes / 1e9:.2f} GB in "
                  f"{parts} x {parts} files; {parts} partitions", flush=True)
            print(f"   local / ray time: {local.seconds / dist.seconds:.2f}x; identical "
                  f"results: {same}; {local.result.height:,} apps, cold fraction "
                  f"{local.result['cold_starts'].sum() / invocations:.4f}", flush=True)


if __name__ == "__main__":
    main()
