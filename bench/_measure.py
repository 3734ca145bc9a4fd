"""Measuring helpers for the benchmarks: wall time and peak RSS of a call, in this process.

Peak memory is sampled from ``/proc/self/status`` (VmRSS) by a background thread every few
milliseconds while the call runs, so stages run one after another in one process can each
report their own peak, measured above the resident size before the stage.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Measured:
    name: str
    seconds: float
    peak_bytes: int
    base_bytes: int
    result: Any = None

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / 1e9


def measure(name: str, fn: Callable[[], Any], interval_s: float = 0.005) -> Measured:
    """Run ``fn`` once; return its wall time and the peak resident memory while it ran."""
    gc.collect()
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - t0
        done.set()
        thread.join()
    return Measured(name, elapsed, max(peak[0], rss_bytes()), base, result)


def report(rows: int, stages: list[Measured]) -> str:
    """A plain-text table of the stages: seconds, million rows per second, peak RSS."""
    lines = [f"{'stage':<28}{'seconds':>10}{'Mrows/s':>10}{'peak GB':>10}"]
    for m in stages:
        lines.append(f"{m.name:<28}{m.seconds:>10.2f}{rows / m.seconds / 1e6:>10.2f}"
                     f"{m.peak_gb:>10.2f}")
    return "\n".join(lines)


@contextmanager
def work_dir(keep: Path | None) -> Iterator[Path]:
    """The benchmark's work folder: ``keep`` (created, left in place) or a temporary folder
    removed afterwards."""
    work = keep or Path(tempfile.mkdtemp(prefix="servetrace-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def ray_processes_rss() -> int:
    """Summed resident memory of this machine's Ray worker processes (named ``ray::...``)."""
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


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray``, ``--cpus``, ``--ray-address`` of :func:`side_by_side`."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: run on Ray beside the local engine (time, memory, "
                             "identical results)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster instead")


def side_by_side(fn: Callable[[Any], Any], args: argparse.Namespace,
                 same: Callable[[Any, Any], bool]) -> Any:
    """``fn(None)`` (the local engine) when ``args.engine`` is local; with ``ray``, ``fn``
    on the local engine then on a Ray engine, in this process one after the other: prints
    each one's wall time, the growth of this process's peak resident memory, Ray's worker
    processes' summed peak, the time ratio and whether ``same(local, ray)``; returns Ray's
    result."""
    if args.engine == "local":
        return fn(None)
    from servetrace.analysis.engine import RayEngine

    t0 = time.perf_counter()
    ray = (RayEngine(args.ray_address) if args.ray_address
           else RayEngine(num_cpus=args.cpus))
    print(f"ray.init with {ray.workers} CPUs: {time.perf_counter() - t0:.1f} s", flush=True)
    local = measure("local", lambda: fn(None))
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], ray_processes_rss())
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        dist = measure("ray", lambda: fn(ray))
    finally:
        done.set()
        thread.join()
    grow = [(m.peak_bytes - m.base_bytes) / 1e9 for m in (local, dist)]
    print(f"local engine {local.seconds:7.1f} s, peak +{grow[0]:.2f} GB\n"
          f"Ray engine   {dist.seconds:7.1f} s, driver peak +{grow[1]:.2f} GB, Ray worker "
          f"processes' peak {peak[0] / 1e9:.2f} GB\n"
          f"local / Ray time {local.seconds / dist.seconds:.2f}x; identical results: "
          f"{same(local.result, dist.result)}", flush=True)
    return dist.result
