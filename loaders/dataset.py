"""What a loader module declares and what it returns.

Every module in ``loaders/`` that reads a public dataset exposes:

- ``DATASET``: a :class:`Dataset` (official files, citation, license);
- ``detect(path) -> bool``: whether a local file is in this dataset's format, from its header;
- ``load(paths, trace) -> Loaded``: the file(s) of one trace mapped onto canonical tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class RemoteFile:
    """One official file: where it lives and how to check it (size, SHA-256) where known."""

    url: str
    name: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Part:
    """A trace within a dataset (e.g. the code and conversation halves of Azure 2023)."""

    name: str
    files: tuple[RemoteFile, ...]
    description: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    citation: str
    license: str
    homepage: str
    parts: tuple[Part, ...]
    tables: tuple[str, ...] = ("requests",)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.parts)
        raise KeyError(f"dataset {self.name!r} has no part {name!r} (known: {known})")

    def part_for_path(self, path: Path) -> Part | None:
        """The part a local file or folder is: first a part whose whole multi-level name ends
        the path (``.../public/requests_minute`` is ``public/requests_minute``, not the private
        part of the same folder name), then :meth:`part_for_file` on its name."""
        posix = Path(path).resolve().as_posix()
        for p in self.parts:
            if "/" in p.name and posix.endswith("/" + p.name):
                return p
        return self.part_for_file(Path(path).name)

    def part_for_file(self, filename: str) -> Part | None:
        """The part whose official files include ``filename`` (gzip suffix ignored), or
        whose name ends with it (a folder such as ``m-small`` for ``language/m-small``)."""
        stem = filename.removesuffix(".gz")
        for p in self.parts:
            if p.name == stem or p.name.endswith("/" + stem) or any(
                    f.name.removesuffix(".gz") == stem for f in p.files):
                return p
        return None


@dataclass(frozen=True)
class Loaded:
    """A trace mapped onto canonical tables.

    ``rows_read`` counts source rows (data lines, JSON objects, PMF entries). Each is either
    accepted (it contributed to ``tables``; ``accepted`` counts them) or rejected (one row in
    ``rejects``). ``accepted`` may be left ``None`` when source rows map one-to-one onto
    stored rows; the store then counts the stored rows.
    """

    tables: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    rows_read: int
    accepted: int | None = None
    origin: datetime | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    hash_block_tokens: int | None = None
    hash_scope: str | None = None
    batch: bool = False
    """A batch (offline) trace: one job submitted whole, so ``requests.arrival_s`` is null."""


def combine(parts: list[tuple[str, Loaded]]) -> Loaded:
    """Several files' :class:`Loaded`, each named by its file, as one trace.

    Tables of the same name are stacked (sorted by ``arrival_s`` where they have it), rejects
    kept with their own file and line, counts added, and notes kept per file. The files must
    share a time origin (all null, or the same instant): their ``arrival_s`` are seconds from
    it, so other origins would misplace one file's times against the other's.
    """
    if len(parts) == 1:
        return parts[0][1]
    origins = {lo.origin for _, lo in parts}
    if len(origins) > 1:
        shown = ", ".join(f"{name}: {lo.origin}" for name, lo in parts)
        raise ValueError(f"these files have different time origins ({shown}); ingest them "
                         "as separate traces")
    names = {t for _, lo in parts for t in lo.tables}
    tables = {}
    for t in sorted(names):
        frame = pl.concat([lo.tables[t] for _, lo in parts if t in lo.tables],
                          how="diagonal_relaxed")
        tables[t] = frame.sort("arrival_s", maintain_order=True) \
            if "arrival_s" in frame.columns else frame
    accepted = [lo.accepted if lo.accepted is not None else sum(f.height for f in
                lo.tables.values()) for _, lo in parts]
    layouts = {(lo.hash_block_tokens, lo.hash_scope) for _, lo in parts}
    if len(layouts) > 1:
        shown = ", ".join(f"{name}: {lo.hash_block_tokens} tokens, {lo.hash_scope}"
                          for name, lo in parts)
        raise ValueError(f"these files have different hash-id layouts ({shown}); ingest them "
                         "as separate traces")
    block_tokens, scope = layouts.pop()
    batches = {lo.batch for _, lo in parts}
    if len(batches) > 1:
        raise ValueError("these files mix batch traces (no arrival times) with online ones; "
                         "ingest them as separate traces")
    return Loaded(
        tables=tables,
        rejects=pl.concat([lo.rejects for _, lo in parts], how="diagonal_relaxed"),
        rows_read=sum(lo.rows_read for _, lo in parts),
        accepted=sum(accepted),
        origin=origins.pop(),
        notes={name: lo.notes for name, lo in parts if lo.notes},
        hash_block_tokens=block_tokens, hash_scope=scope, batch=batches.pop())
