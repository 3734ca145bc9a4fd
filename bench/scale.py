"""Scale benchmark: ingest, analyze and fit of large Azure-2024-format traces, one process each.

    python bench/scale.py [--rows N [N ...]] [--baseline-max N] [--today PYTHON] [--keep DIR]
                          [--stages STAGE [STAGE ...]]

For each size, writes a generated CSV in the Azure LLM 2024 format block by block
(:func:`bench.ingest.generate`: ``TIMESTAMP,ContextTokens,GeneratedTokens``, 50 requests/s,
lengths resampled from the real BurstGPT sample), then runs each stage as its own
subprocess, so that every stage's peak resident memory is its own (the child's ``VmHWM``:
the whole process, interpreter and imports included) and its wall time is measured from
outside:

- ``ingest``: ``servetrace.loaders.ingest`` into a fresh store (streamed in chunks);
- ``analyze``: ``servetrace analyze bench --format json`` (the CLI as a user runs it) — out
  of core: :mod:`servetrace.analysis.out_of_core`, chunked passes and a length histogram;
- ``fit``: ``servetrace fit bench`` — out of core: :func:`servetrace.synth.model.fit` of the
  store's lazy scan holds the arrival times (8 bytes a request) and, for the renewal, their
  windows (4 bytes), makes gaps chunk by chunk and reads lengths and labels as ``GROUP BY``
  histograms;
- ``fit in memory`` (sizes up to ``--baseline-max``): ``fit`` of the same trace collected
  into a DataFrame, as before this path existed, in the same code. The two models are
  compared: they must be identical;
- ``analyze today``, ``fit today`` (with ``--today PYTHON``, a Python environment with
  another checkout of servetrace installed, e.g. the main branch before this change; sizes
  up to ``--baseline-max``): its ``servetrace analyze`` and ``servetrace fit`` (the
  command beside that Python) on the same store.

Prints a table of seconds and peak GB per stage and size, and per stage the log-log slope of
time and of peak memory against rows between consecutive sizes (1 is linear). Targets (issue
19): peak under 4 GB for analyze and fit at every size, slopes near 1. The CSV is deleted
once ingested (the next size needs the disk); the stores are kept with ``--keep``.
``--stages`` runs only the stages named (``ingest``, ``analyze``, ``analyze in memory``,
``analyze today``, ``fit``, ``fit in memory``, ``fit today``); without ``ingest``, each
size's store must already be in the ``--keep`` folder (a run that ingested with ``--keep``),
so ingest can be measured once and the other stages again after a change.

``analyze in memory`` (sizes up to ``--baseline-max``) is :func:`burstiness.summary` and
:func:`tokens.summary` of the four columns collected into a DataFrame, as ``analyze`` did
before its out-of-core path; its figures are compared with the out-of-core ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import work_dir
from ingest import generate

INGEST = """
import sys
from pathlib import Path
from servetrace.loaders import Store, ingest
[rec] = ingest(Path(sys.argv[1]), as_format="azure_llm_2024", trace="bench",
               store=Store(Path(sys.argv[2])), progress=False)
assert rec["rows"] + rec["rejected"] == int(sys.argv[3]), rec
"""

ANALYZE_IN_MEMORY = """
import json, sys
from pathlib import Path
from servetrace.analysis import burstiness, tokens
from servetrace.loaders import Store
lf = Store(Path(sys.argv[1])).scan("requests", "bench")
frame = lf.select("arrival_s", "input_tokens", "output_tokens", "failed").collect()
doc = {"arrivals": burstiness.summary(frame).to_dicts(),
       "tokens": tokens.summary(frame).to_dicts()}
Path(sys.argv[2]).write_text(json.dumps(doc, default=str, indent=2))
"""

FIT_IN_MEMORY = """
import sys
from pathlib import Path
from servetrace.loaders import Store
from servetrace.synth.model import fit
fit(Store(Path(sys.argv[1])).scan("requests", "bench").collect()).save(sys.argv[2])
"""


STAGES = ("ingest", "analyze", "analyze in memory", "analyze today", "fit", "fit in memory",
          "fit today")


def _hwm_bytes(pid: int) -> int:
    """The peak resident size of process ``pid`` so far (``VmHWM``), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_stage(name: str, argv: list[str], log: Path, stdout: Path | None = None
              ) -> dict[str, object]:
    """Run ``argv`` as a child process; its wall seconds, peak RSS (GB) and exit status.
    Its output goes to ``log``, or its standard output to ``stdout`` where given.

    The peak is the child's ``VmHWM`` read every 10 ms while it runs (the high-water mark of
    its own address space since ``exec``). ``wait4``'s ``ru_maxrss`` would not do: Linux
    carries the parent's resident size at ``fork`` into it."""
    t0 = time.perf_counter()
    peak = 0
    with open(log, "ab") as out:
        out.write(f"--- {name}: {' '.join(argv)}\n".encode())
        out.flush()
        to = open(stdout, "wb") if stdout else out
        # in the log's folder: a folder named like the trace ("bench") is not taken for it
        proc = subprocess.Popen(argv, stdout=to, stderr=out if stdout else subprocess.STDOUT,
                                cwd=log.parent)
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _hwm_bytes(proc.pid))
            time.sleep(0.01)
        if stdout:
            to.close()
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"stage": name, "seconds": seconds, "peak_gb": peak / 1e9,
            "ok": proc.returncode == 0}


def compare_analyses(out_of_core: Path, in_memory: Path) -> str:
    """How the out-of-core ``analyze`` figures differ from the in-memory ones: the largest
    relative difference of a number, or the figures that differ otherwise."""
    try:
        a, b = (json.loads(p.read_text()) for p in (out_of_core, in_memory))
    except (OSError, ValueError) as exc:
        return f"not compared ({exc})"
    worst, unequal = 0.0, []
    for part in ("arrivals", "tokens"):
        for ra, rb in zip(a[part] or [], b[part] or [], strict=True):
            for k, vb in rb.items():
                va = ra.get(k)
                if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
                    rel = abs(va - vb) / max(abs(vb), 1e-300) if va != vb else 0.0
                    worst = max(worst, rel)
                elif va != vb:
                    unequal.append(f"{part}.{k}: {va!r} vs {vb!r}")
    return (f"largest relative difference {worst:.2e}" +
            (f"; differ: {'; '.join(unequal)}" if unequal else "; every other figure equal"))


def slopes(results: list[dict[str, object]]) -> list[str]:
    """Log-log slopes of seconds and peak GB against rows, per stage, between consecutive
    sizes where the stage succeeded at both."""
    lines = []
    stages = dict.fromkeys(str(r["stage"]) for r in results)
    for stage in stages:
        rows = sorted((r for r in results if r["stage"] == stage and r["ok"]),
                      key=lambda r: int(r["rows"]))
        for a, b in itertools.pairwise(rows):
            dx = math.log(int(b["rows"]) / int(a["rows"]))
            st = math.log(float(b["seconds"]) / float(a["seconds"])) / dx
            sm = math.log(float(b["peak_gb"]) / float(a["peak_gb"])) / dx
            lines.append(f"{stage:<16}{int(a['rows']):>12,} -> {int(b['rows']):<12,}"
                         f" time {st:5.2f}   memory {sm:5.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    ap.add_argument("--baseline-max", type=int, default=10_000_000,
                    help="largest size at which the in-memory fit also runs")
    ap.add_argument("--today", type=Path, help="python of another servetrace checkout, "
                    "whose `servetrace fit` runs side by side up to --baseline-max")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                    help="stages to run (default: all that apply)")
    args = ap.parse_args()
    if "ingest" not in args.stages and args.keep is None:
        ap.error("without the ingest stage, --keep must name the folder holding the stores")
    py = sys.executable
    cli = str(Path(py).parent / "servetrace")
    # the other checkout's command (its console script registers every command)
    today = str(args.today.parent / "servetrace") if args.today else ""
    results: list[dict[str, object]] = []
    with work_dir(args.keep) as work:
        log = work / "scale.log"
        for rows in args.rows:
            csv = work / f"{rows}" / "AzureLLMInferenceTrace_conv_1week.csv"
            store = work / f"{rows}" / "store"
            csv.parent.mkdir(exist_ok=True)
            if "ingest" in args.stages:
                print(f"generating {rows:,} rows -> {csv}", flush=True)
                generate(csv, rows, "azure_llm_2024")
                print(f"{rows:,} rows, {csv.stat().st_size / 1e6:,.0f} MB", flush=True)
            elif not store.exists():
                sys.exit(f"{store}: no store of {rows:,} rows; run the ingest stage first")
            model = csv.parent / "model.json"
            analysis = csv.parent / "analysis.json"
            small = rows <= args.baseline_max
            stages = [("ingest", [py, "-c", INGEST, str(csv), str(store), str(rows)]),
                      ("analyze", [cli, "analyze", "bench", "--format", "json", "--store",
                                   str(store)]),
                      ("analyze in memory", [py, "-c", ANALYZE_IN_MEMORY, str(store),
                                             str(csv.parent / "analysis_in_memory.json")]),
                      ("analyze today", [today, "analyze", "bench", "--format", "json",
                                         "--store", str(store)]),
                      ("fit", [cli, "fit", "bench", "-o", str(model), "--store", str(store)]),
                      ("fit in memory", [py, "-c", FIT_IN_MEMORY, str(store),
                                         str(csv.parent / "model_in_memory.json")]),
                      ("fit today", [today, "fit", "bench", "-o",
                                     str(csv.parent / "model_today.json"), "--store",
                                     str(store)])]
            stages = [(name, argv) for name, argv in stages if name in args.stages and
                      (small or not name.endswith(("in memory", "today"))) and
                      (args.today or not name.endswith("today"))]
            for name, argv in stages:
                if name == "ingest" and store.exists():
                    shutil.rmtree(store)
                r = {"rows": rows, **run_stage(name, argv, log, analysis if name == "analyze"
                                               else None)}
                results.append(r)
                print(f"{rows:>12,} {name:<18}{r['seconds']:>9.1f} s {r['peak_gb']:>7.2f} GB"
                      f"{'' if r['ok'] else '  FAILED (see ' + str(log) + ')'}", flush=True)
                if name == "ingest":
                    csv.unlink()
            ran = {name for name, _ in stages}
            if {"fit", "fit in memory"} <= ran:
                same = (model.exists() and (csv.parent / "model_in_memory.json").exists()
                        and model.read_text() ==
                        (csv.parent / "model_in_memory.json").read_text())
                print(f"{rows:>12,} out-of-core model == in-memory model: {same}", flush=True)
            if {"analyze", "analyze in memory"} <= ran:
                print(f"{rows:>12,} out-of-core analysis vs in memory: "
                      f"{compare_analyses(analysis, csv.parent / 'analysis_in_memory.json')}",
                      flush=True)
        print(f"\n{'rows':>12} {'stage':<16}{'seconds':>9} {'peak GB':>9}")
        for r in results:
            print(f"{int(r['rows']):>12,} {r['stage']:<16}{r['seconds']:>9.1f} "
                  f"{r['peak_gb']:>9.2f}{'' if r['ok'] else '  failed'}")
        print("\nlog-log slopes against rows (1 = linear):")
        print("\n".join(slopes(results)) or "(one size: no slope)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
