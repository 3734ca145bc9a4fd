"""Streaming ingest: a large line-oriented source read as a sequence of bounded chunks.

A loader whose rows are independent of each other (each source line maps to at most one
stored row, with no link between rows, and its ``notes`` are counts that add up across
chunks) defines ``stream_header_lines(path) -> int``: how many header lines each chunk of
that file must repeat (1 for a CSV with a header, 0 for JSON lines). Such a file is
cut at line ends into chunk files of about ``chunk_bytes`` of content each, every chunk
starting with the source's header, and the loader reads one chunk at a time; the store
writes each chunk's tables as their own Parquet files before the next chunk is read, and
commits them all at once (:meth:`servetrace.loaders.store.Store.write`). Peak memory is
then that of one chunk, whatever the size of the file.

Everything a loader reports about a chunk is translated back to the source: a reject's
``source`` and ``line`` (and a :class:`FormatError`'s) name the source file and its own
line; counts in ``notes`` are added; and arrival times are put on one zero. A loader that
counts time from the file's first instant (``origin``, e.g. Azure's earliest timestamp)
gives each chunk its own origin: every chunk's ``arrival_s`` is shifted to the first
chunk's origin, exactly (the shift is computed in integer nanoseconds), and a chunk that
reaches before it sends the whole trace through one sort at the end (see
:func:`servetrace.loaders.store.Store.write`).

Gzip sources are decompressed as a stream; a truncated or corrupt stream is a
:class:`FormatError` before anything is committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from servetrace.loaders.dataset import Loaded
from servetrace.loaders.source import FormatError, remember_sha256

DEFAULT_CHUNK_BYTES = 128 << 20
"""Content bytes per chunk (``$SERVETRACE_CHUNK_BYTES``): about 3M rows of a BurstGPT or
Azure LLM CSV, under 1 GB of memory while the chunk is parsed, validated and written."""


def chunk_bytes() -> int:
    """The chunk size in content bytes: ``$SERVETRACE_CHUNK_BYTES`` or the default."""
    value = os.environ.get("SERVETRACE_CHUNK_BYTES")
    if not value:
        return DEFAULT_CHUNK_BYTES
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise ValueError(f"SERVETRACE_CHUNK_BYTES={value!r} is not a positive number of bytes")
    return size


def streams(mod: ModuleType, path: Path) -> bool:
    """Whether ``path`` is read in chunks: its loader streams and it is larger than a chunk
    (compressed size for gzip, whose content is larger still)."""
    return (hasattr(mod, "stream_header_lines") and path.is_file()
            and path.stat().st_size > chunk_bytes())


@dataclass(frozen=True)
class Chunk:
    """A chunk file: the source's header lines, then source lines ``first_line`` onwards."""

    path: Path
    first_line: int
    header_lines: int


def _content(path: Path, block: int = 1 << 22) -> Iterator[bytes]:
    """The file's bytes, gzip members decompressed as a stream. The file's SHA-256 (for the
    trace's provenance) is taken on the way, so the file is not read again for it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        if not gz:
            while data := fh.read(block):
                digest.update(data)
                yield data
            remember_sha256(path, digest.hexdigest())
            return
        inflate = None  # the decompressor of the member in progress, if any
        read = 0
        while data := fh.read(block):
            read += len(data)
            digest.update(data)
            while data:
                inflate = inflate or zlib.decompressobj(wbits=31)
                try:
                    out = inflate.decompress(data)
                except zlib.error as exc:
                    raise FormatError(path, f"corrupt gzip data before compressed byte "
                                            f"{read:,} ({exc}); no rows of this file were "
                                            "kept") from exc
                if out:
                    yield out
                if inflate.eof:  # another member may start in what is left
                    data, inflate = inflate.unused_data, None
                else:
                    data = b""
        if inflate is not None:
            raise FormatError(path, f"gzip stream ends early, at compressed byte {read:,} of "
                                    "a truncated file; no rows of this file were kept")
        remember_sha256(path, digest.hexdigest())


def split(path: Path, folder: Path, header_lines: int, size: int) -> Iterator[Chunk]:
    """Write ``path`` as chunk files in ``folder``, one at a time, each deleted once the
    next is asked for. A chunk ends at the last line end once ``size`` bytes have come (so
    it holds at most one read block more); lines are never cut.
    """
    header = b""
    blocks: list[bytes] = []  # content not yet written, joined only when a chunk is cut
    held = 0
    line = 1  # source line number of the first line held
    index = 0
    previous: Path | None = None

    def emit(buf: bytes, end: int) -> Chunk:
        nonlocal index, previous, line
        if previous is not None:
            previous.unlink(missing_ok=True)
        target = folder / f"chunk-{index:05d}{path.suffix if path.suffix != '.gz' else ''}"
        with open(target, "wb") as out:
            out.write(header)
            out.write(memoryview(buf)[:end])
        chunk = Chunk(target, line, header_lines)
        line += buf.count(b"\n", 0, end)
        index += 1
        previous = target
        return chunk

    for data in _content(path, block=min(size, 1 << 22)):
        blocks.append(data)
        held += len(data)
        if header_lines and not header:
            buf = b"".join(blocks)
            cut = -1
            for _ in range(header_lines):
                cut = buf.find(b"\n", cut + 1)
                if cut < 0:
                    break
            if cut < 0:
                blocks = [buf]
                continue
            header, rest = buf[:cut + 1], buf[cut + 1:]
            blocks, held, line = [rest], len(rest), 1 + header_lines
        if held >= size:
            buf = b"".join(blocks)
            cut = buf.rfind(b"\n")
            if cut < 0:  # one line longer than a chunk: read on to its end
                blocks = [buf]
                continue
            yield emit(buf, cut + 1)
            rest = buf[cut + 1:]
            blocks, held = [rest], len(rest)
    buf = b"".join(blocks)
    if buf or index == 0:
        if header_lines and not header:  # a file shorter than its header: the loader says so
            header, buf = buf, b""
        yield emit(buf, len(buf))
    if previous is not None:
        previous.unlink(missing_ok=True)


def _translate(frame: pl.DataFrame, source: Path, chunk: Chunk) -> pl.DataFrame:
    """Rejects of a chunk with the source's file name and line numbers."""
    if frame.is_empty():
        return frame
    shift = chunk.first_line - chunk.header_lines - 1
    return frame.with_columns(
        pl.lit(str(source)).alias("source"),
        pl.when(pl.col("line") > chunk.header_lines).then(pl.col("line") + shift)
        .otherwise(pl.col("line")).alias("line"))


def _add_notes(total: dict[str, Any], notes: dict[str, Any]) -> dict[str, Any]:
    """Counts added; any other remark kept once (a list where the chunks differ)."""
    out = dict(total)
    for key, value in notes.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, int | float) and isinstance(out[key], int | float) \
                and not isinstance(value, bool):
            out[key] = out[key] + value
        elif out[key] != value:
            seen = out[key] if isinstance(out[key], list) else [out[key]]
            out[key] = [*seen, value] if value not in seen else seen
    return out


@dataclass
class Stream:
    """The chunks of one source file as :class:`Loaded` pieces, on one time zero.

    Iterate it once; afterwards ``origin`` is the origin of the whole trace, ``notes`` the
    chunks' notes combined, and ``shift_s`` the shift (seconds) every stored ``arrival_s``
    still needs to count from ``origin``: 0.0 unless a chunk reached before the first
    chunk's origin.
    """

    mod: ModuleType
    path: Path
    trace: str
    size: int
    origin: Any = None
    notes: dict[str, Any] | None = None
    shift_s: float = 0.0

    def __iter__(self) -> Iterator[Loaded]:
        folder = Path(tempfile.mkdtemp(prefix="servetrace-chunks-"))
        first_origin = None
        notes: dict[str, Any] = {}
        try:
            header_lines = self.mod.stream_header_lines(self.path)
            for chunk in split(self.path, folder, header_lines, self.size):
                try:
                    loaded = self.mod.load([chunk.path], self.trace)
                except FormatError as exc:
                    line = exc.line
                    if line is not None and line > chunk.header_lines:
                        line += chunk.first_line - chunk.header_lines - 1
                    raise FormatError(self.path, exc.message, line=line) from None
                origin = loaded.origin
                tables = loaded.tables
                if origin is not None:
                    if first_origin is None:
                        first_origin = self.origin = origin
                    elif origin != first_origin:
                        ns = _delta_ns(origin, first_origin)
                        tables = {t: f.with_columns(pl.col("arrival_s") + ns / 1e9)
                                  if "arrival_s" in f.columns else f
                                  for t, f in tables.items()}
                        if origin < self.origin:
                            self.origin = origin
                notes = _add_notes(notes, loaded.notes)
                yield replace(loaded, tables=tables, origin=first_origin,
                              rejects=_translate(loaded.rejects, self.path, chunk), notes={})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.notes = notes
        if first_origin is not None and self.origin != first_origin:
            self.shift_s = _delta_ns(first_origin, self.origin) / 1e9


def _delta_ns(a: Any, b: Any) -> int:
    """``a - b`` in integer nanoseconds (datetimes, microsecond resolution or finer)."""
    d = a - b
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
