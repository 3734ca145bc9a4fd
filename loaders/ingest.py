"""Ingest a dataset (by name, downloaded) or a local file or folder into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servetrace.loaders import download, registry
from servetrace.loaders.dataset import Part
from servetrace.loaders.store import Provenance, Store, check_trace_id


def _provenance(mod: Any, part: Part | None, paths: list[Path], urls: tuple[str, ...],
                ) -> Provenance:
    files = sorted(p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))
                   if p.is_file())
    ds = mod.DATASET
    return Provenance(
        dataset=ds.name, part=part.name if part else None, format=ds.name,
        source_urls=urls, source_files=tuple(str(p.resolve()) for p in files),
        sha256=tuple(download.sha256_of(p) for p in files),
        loader_version=f"{mod.__name__}/{mod.VERSION}", license=ds.license,
        citation=ds.citation)


def ingest(source: str | Path, *, as_format: str | None = None, trace: str | None = None,
           store: Store | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Ingest ``source`` and return the ``traces`` record of each trace written.

    ``source`` is a local path (its format detected from the header unless ``as_format``
    names it) or a dataset name, optionally with a part (``azure_llm_2023/code``); a dataset
    name ingests each of its parts as its own trace ``<dataset>/<part>``. ``trace``
    overrides the trace id (for a whole dataset it becomes the prefix of each part's id).
    """
    store = store or Store()
    path = Path(source)
    if path.exists():
        mod = registry.module(as_format) if as_format else registry.detect(path)
        part = mod.DATASET.part_for_path(path)
        stem = Path(path.name.removesuffix(".gz")).stem
        trace_id = trace or f"{mod.DATASET.name}/{part.name if part else stem}"
        check_trace_id(trace_id)
        loaded = mod.load([path], trace_id)
        urls = tuple(f.url for f in part.files) if part else ()
        return [store.write(trace_id, loaded, _provenance(mod, part, [path], urls))]

    name, _, part_name = str(source).partition("/")
    mod = registry.module(name)
    parts = [mod.DATASET.part(part_name)] if part_name else list(mod.DATASET.parts)
    records = []
    for part in parts:
        if trace and len(parts) > 1:
            trace_id = f"{trace}/{part.name}"
        else:
            trace_id = trace or f"{name}/{part.name}"
        check_trace_id(trace_id)
        paths = [download.fetch(f, progress=progress) for f in part.files]
        loaded = mod.load(paths, trace_id)
        urls = tuple(f.url for f in part.files)
        records.append(store.write(trace_id, loaded, _provenance(mod, part, paths, urls)))
    return records
