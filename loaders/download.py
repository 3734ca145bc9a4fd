"""Fetching official dataset files: a local mirror first, then a verified download cache.

``SERVETRACE_MIRROR=DIR`` serves files from a local folder, searched recursively by the
official file name (with or without ``.gz``); tests and CI point it at ``../shared/traces``.
Otherwise files are downloaded into the cache (``$SERVETRACE_CACHE``, default
``~/.cache/servetrace``), keyed by URL, resumed from a partial ``.part`` file with an HTTP
Range request, and verified by size and SHA-256 where the registry knows them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from loaders.dataset import RemoteFile
from loaders.source import file_stats

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched or failed verification."""


def cache_dir() -> Path:
    return Path(os.environ.get("SERVETRACE_CACHE") or Path.home() / ".cache" / "servetrace")


def sha256_of(path: Path) -> str:
    return file_stats(path).sha256


def verify(path: Path, file: RemoteFile) -> None:
    """Raise :class:`DownloadError` when ``path`` differs from the registry's size or hash."""
    if file.size is not None and path.stat().st_size != file.size:
        raise DownloadError(f"{path}: size {path.stat().st_size} bytes, expected {file.size} "
                            f"for {file.url}")
    if file.sha256 is not None and sha256_of(path) != file.sha256:
        raise DownloadError(f"{path}: SHA-256 differs from the published one for {file.url}")


def find_in_mirror(mirror: Path, name: str) -> Path | None:
    """The first file under ``mirror`` named ``name`` (or its gzip twin), in sorted order."""
    stem = name.removesuffix(".gz")
    for candidate in (name, stem, stem + ".gz"):
        hits = sorted(p for p in mirror.rglob(candidate) if p.is_file())
        if hits:
            return hits[0]
    return None


def fetch(file: RemoteFile, *, progress: bool = True) -> Path:
    """A local, verified copy of an official file (from the mirror or the cache)."""
    mirror = os.environ.get("SERVETRACE_MIRROR")
    if mirror:
        hit = find_in_mirror(Path(mirror), file.name)
        if hit is None:
            raise DownloadError(f"{file.name} is not in SERVETRACE_MIRROR={mirror} "
                                f"(searched recursively); its official URL is {file.url}")
        verify(hit, file)
        return hit
    key = hashlib.sha1(file.url.encode()).hexdigest()[:16]
    target = cache_dir() / key / file.name
    if target.exists():
        verify(target, file)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _download(file, part, progress=progress)
    try:
        verify(part, file)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def _download(file: RemoteFile, part: Path, *, progress: bool) -> None:
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        with httpx.stream("GET", file.url, headers=headers, follow_redirects=True,
                          timeout=httpx.Timeout(30.0, read=120.0)) as resp:
            if resp.status_code == 416 and done:  # already complete
                return
            if resp.status_code not in (200, 206):
                raise DownloadError(f"{file.url}: HTTP {resp.status_code}")
            if resp.status_code == 200:
                done = 0  # the server ignored the range: start over
            total = int(resp.headers.get("content-length", 0)) + done or file.size
            with open(part, "ab" if done else "wb") as out, Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), disable=not progress,
                transient=True,
            ) as bar:
                task = bar.add_task(file.name, total=total, completed=done)
                for chunk in resp.iter_bytes(CHUNK):
                    out.write(chunk)
                    bar.update(task, advance=len(chunk))
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"cannot download {file.url} ({exc.__class__.__name__}: {exc}); "
            f"offline? set SERVETRACE_MIRROR=DIR to a folder holding {file.name}") from exc
