"""Ingest a dataset (by name, downloaded) or a local file or folder into the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from servetrace.loaders import chunks, download, one_pass, registry
from servetrace.loaders.dataset import Loaded, Part, combine
from servetrace.loaders.store import Provenance, Store, StoreError, check_trace_id


def _merged(provs: list[Provenance]) -> Provenance:
    """One provenance for several files of one trace: every file, URL and hash, in order."""
    if len(provs) == 1:
        return provs[0]

    def joined(values: list[str | None]) -> str:
        return "+".join(dict.fromkeys(v for v in values if v))

    return Provenance(
        dataset=joined([p.dataset for p in provs]), part=joined([p.part for p in provs]) or None,
        format=joined([p.format for p in provs]),
        source_urls=tuple(u for p in provs for u in p.source_urls),
        source_files=tuple(f for p in provs for f in p.source_files),
        sha256=tuple(h for p in provs for h in p.sha256),
        loader_version=joined([p.loader_version for p in provs]),
        license=joined([p.license for p in provs]),
        citation="; ".join(dict.fromkeys(p.citation for p in provs)))


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


def _load(mod: Any, paths: list[Path], trace: str
          ) -> Loaded | chunks.Stream | one_pass.OnePass:
    """The loader's reading of ``paths``: streamed in chunks when it is one file larger than a
    chunk in a format whose rows stand alone (:mod:`servetrace.loaders.chunks`), and tried
    in one DuckDB pass first where the loader has a plan for it
    (:mod:`servetrace.loaders.one_pass`; ``SERVETRACE_ONE_PASS=0`` skips that, for
    comparisons)."""
    if len(paths) == 1 and chunks.streams(mod, paths[0]):
        def stream() -> chunks.Stream:
            return chunks.Stream(mod, paths[0], trace, chunks.chunk_bytes())

        if (hasattr(mod, "one_pass_plan") and not _gzip(paths[0])
                and os.environ.get("SERVETRACE_ONE_PASS") != "0"):
            return one_pass.OnePass(mod, paths[0], trace, chunks.chunk_bytes(), stream)
        return stream()
    return mod.load(paths, trace)


def _gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def ingest(source: str | Path | list[str | Path], *, as_format: str | None = None,
           trace: str | None = None, store: Store | None = None, progress: bool = True,
           replace: bool = False) -> list[dict[str, Any]]:
    """Ingest ``source`` and return the ``traces`` record of each trace written.

    ``source`` is a local path (its format detected from the header unless ``as_format``
    names it) or a dataset name, optionally with a part (``azure_llm_2023/code``); a dataset
    name ingests each of its parts as its own trace ``<dataset>/<part>``. ``trace``
    overrides the trace id (for a whole dataset it becomes the prefix of each part's id).
    A list of local paths goes into one trace, named by ``trace``, in one commit (for
    example a Huawei region's cold starts and its requests). ``replace`` lets a re-ingest
    drop tables the trace holds that this one does not write (see :meth:`Store.write`).
    """
    store = store or Store()
    sources = [Path(s) for s in source] if isinstance(source, list | tuple) else [source]
    if len(sources) > 1:
        missing = [str(s) for s in sources if not Path(s).exists()]
        if missing:
            raise StoreError(f"several sources go into one trace only as local files; not "
                             f"found: {', '.join(missing)}")
        if not trace:
            raise StoreError("name the trace that several files go into with --trace")
    path = Path(sources[0])
    if path.exists():
        reads = []
        for path in map(Path, sources):
            mod = registry.module(as_format) if as_format else registry.detect(path)
            part = mod.DATASET.part_for_path(path)
            stem = Path(path.name.removesuffix(".gz")).stem
            trace_id = trace or f"{mod.DATASET.name}/{part.name if part else stem}"
            check_trace_id(trace_id)
            urls = tuple(f.url for f in part.files) if part else ()
            reads.append((mod, part, path, urls))
        loaded = _load(mod, [path], trace_id) if len(reads) == 1 else combine(
            [(path.name, mod.load([path], trace_id)) for mod, _, path, _ in reads])
        # Called after the rows are read, whose reading hashed the files on the way.
        return [store.write(trace_id, loaded, lambda: _merged(
            [_provenance(mod, part, [path], urls) for mod, part, path, urls in reads]),
            replace=replace)]

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
        loaded = _load(mod, paths, trace_id)
        urls = tuple(f.url for f in part.files)
        records.append(store.write(
            trace_id, loaded, lambda mod=mod, part=part, paths=paths, urls=urls:
            _provenance(mod, part, paths, urls), replace=replace))
    return records
