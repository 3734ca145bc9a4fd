"""Measuring helpers for the benchmarks: wall time and peak RSS of a call, in this process.

Peak memory is sampled from ``/proc/self/status`` (VmRSS) by a background thread every few
milliseconds while the call runs, so stages run one after another in one process can each
report their own peak, measured above the resident size before the stage.
"""

from __future__ import annotations

import gc
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
