"""Replays as traces of the store: write a replay's outcome, recover a crashed one, and
replay a store trace end to end (the CLI's ``servetrace replay``).

A replay run by :func:`replay_trace` keeps its results file in ``<store>/replays/`` and holds
``<results>.lock`` while it runs; a run killed before it was stored is stored by
:func:`recover_pending` (the next ``servetrace replay``), or by :func:`recover` by hand.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import time
import uuid
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from servetrace.loaders import schema
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.store import Provenance, Store, file_lock
from servetrace.synth.replay import replay
from servetrace.synth.replay_results import (
    ReplayResult,
    class_tables,
    load_results,
    meta_path,
    summarize,
    to_requests,
    trace_ratios,
)


def _version() -> str:
    try:
        return importlib.metadata.version("servetrace")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _stamp() -> str:
    """UTC time and a random suffix: two replays started in the same second differ."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _running(results: Path, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
    """``<results>.lock``, held while a replay runs and is stored, so that
    :func:`recover_pending` never stores a run that is still going (see
    :func:`~servetrace.loaders.store.file_lock`)."""
    return file_lock(results.with_name(results.name + ".lock"), wait=wait)


def _name_of(results: Path) -> str:
    return results.name.removesuffix(".jsonl").replace("__", "/")


def recover_pending(store: Store) -> list[str]:
    """Store every replay in ``<store>/replays/`` that was killed before it was stored (its
    results file is there, its trace is not, and no running replay holds it); returns the
    names of the traces stored."""
    folder = store.root / "replays"
    if not folder.is_dir():
        return []
    stored = set(store.traces()["trace"]) if store.db_path.exists() else set()
    recovered = []
    for path in sorted(folder.glob("*.jsonl")):
        name = _name_of(path)
        if name in stored:
            continue
        with _running(path, wait=False) as free:
            if free:
                recovered.append(recover(store, path, name=name).trace)
    return recovered


def write_replay(store: Store, result: ReplayResult, *, name: str | None = None,
                 ttft_slo_s: float | None = None, tpot_slo_s: float | None = None,
                 license: str = "", citation: str = "") -> ReplayResult:
    """Store a replay's finished requests as trace ``name`` (default
    ``replay/<source>/<UTC timestamp>``); returns the result with ``trace`` set.

    ``traces.notes`` holds ``meta`` (the settings), the summary (with the given SLOs), the
    per-class, per-model and per-priority summaries where the records have such groups
    (``per_class``, ``per_model``, ``per_priority``: lists of rows of
    :func:`~servetrace.synth.replay_results.summarize_by`), ``interrupted``, ``cancelled``
    and ``not_sent``; ``origin`` is the replay zero.
    An empty replay (nothing finished) is stored as an empty trace.
    """
    source = result.meta.get("source") or "frame"
    name = name or f"replay/{source}/{_stamp()}"
    trace = result.records
    summary = (asdict(summarize(trace, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s,
                                **trace_ratios(result.meta)))
               if trace.height else None)
    frame = to_requests(trace, model=result.meta.get("model"), trace=name)
    started = result.meta.get("started_at")
    origin = datetime.fromisoformat(started) if started else None
    groups = class_tables(trace, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s)
    notes = {"replay": result.meta, "summary": summary,
             **{name.replace(" ", "_"): table.to_dicts() for name, table in groups.items()},
             "interrupted": result.interrupted,
             "cancelled": result.cancelled, "not_sent": result.not_sent,
             "results_file": str(result.results_path) if result.results_path else None}
    loaded = Loaded(tables={"requests": frame}, rejects=schema.empty("rejects"),
                    rows_read=frame.height, origin=origin, notes=notes)
    provenance = Provenance(
        dataset="replay", part=result.meta.get("source"), format="replay",
        source_urls=(str(result.meta.get("endpoint") or ""),),
        source_files=(str(result.results_path),) if result.results_path else (),
        sha256=(), loader_version=f"synth.replay/servetrace {_version()}",
        license=license, citation=citation)
    store.write(name, loaded, provenance)
    return replace(result, trace=name)


def recover(store: Store, results: str | Path, *, name: str | None = None,
            **summary_slos: float | None) -> ReplayResult:
    """Store the finished requests of a replay that crashed, from its results file and the
    settings file beside it (``<results>.meta.json``); see :func:`write_replay`."""
    path = Path(results)
    meta_file = meta_path(path)
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    records = load_results(path)
    result = ReplayResult(records=records, meta=meta, interrupted=True,
                          not_sent=max(int(meta.get("requests") or 0) - records.height, 0),
                          results_path=path)
    return write_replay(store, result, name=name, **summary_slos)


def replay_trace(trace: str, endpoint: str, *, store: Store | None = None,
                 name: str | None = None, ttft_slo_s: float | None = None,
                 tpot_slo_s: float | None = None, frame: pl.DataFrame | None = None,
                 **options: Any) -> ReplayResult:
    """Replay a store trace, or ``frame`` (a canonical ``requests`` frame, e.g. a Parquet
    file `servetrace generate` wrote, named ``trace``), and store the outcome as a new trace
    (the CLI's ``servetrace replay TRACE --endpoint URL``).

    ``name`` defaults to ``replay/<trace>/<UTC timestamp>`` (a file: its name without
    ``.parquet``); the results file defaults to ``<store>/replays/<name with / as
    __>.jsonl``. ``options`` go to :func:`replay`; ``block_tokens`` and ``hash_scope``
    default to the store trace's ``traces.hash_block_tokens`` and ``hash_scope``. The
    trace's license and citation are carried over. Also on Ctrl-C the finished requests
    are stored (``interrupted=True`` in the result and the notes).
    Raises ``ValueError`` when the trace has no requests.
    """
    store = store or Store()
    lic = cite = ""
    if frame is None:
        frame = store.scan("requests", trace).collect()
        meta = store.traces().filter(pl.col("trace") == trace)
        if meta.height:
            row = meta.row(0, named=True)
            lic, cite = row["license"] or "", row["citation"] or ""
            if row.get("hash_block_tokens") and options.get("block_tokens") is None:
                options["block_tokens"] = int(row["hash_block_tokens"])
                options["hash_scope"] = row.get("hash_scope") or "global"
        label = trace
    else:
        label = Path(trace).name.removesuffix(".parquet")
    if frame.is_empty():
        raise ValueError(f"trace {trace!r} has no requests"
                         + ("" if label != trace else f" in store {store.root}"))
    name = name or f"replay/{label}/{_stamp()}"
    results = Path(options.setdefault(
        "results", store.root / "replays" / (name.replace("/", "__") + ".jsonl")))
    with _running(results):
        result = replay(frame, endpoint, source=trace, **options)
        return write_replay(store, result, name=name, ttft_slo_s=ttft_slo_s,
                            tpot_slo_s=tpot_slo_s, license=lic, citation=cite)
