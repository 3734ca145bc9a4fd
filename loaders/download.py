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
import shutil
import tarfile
import zipfile
from pathlib import Path

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from servetrace.loaders.dataset import RemoteFile
from servetrace.loaders.source import FormatError, file_stats

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


def extract(archive: Path, suffix: str = ".csv") -> Path:
    """The ``suffix`` files of a zip or tar archive, extracted once into the cache.

    Returns their folder, ``$SERVETRACE_CACHE/extracted/<archive stem>-<hash prefix>``.
    Extraction goes to a temporary folder renamed into place, so an interrupted one is
    redone; member paths are flattened to their file names, so nothing is written outside.
    """
    key = file_stats(archive).sha256[:16]
    stem = archive.name.split(".")[0]
    target = cache_dir() / "extracted" / f"{stem}-{key}"
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and info.filename.endswith(suffix):
                        with zf.open(info) as src, open(tmp / Path(info.filename).name,
                                                        "wb") as out:
                            shutil.copyfileobj(src, out, CHUNK)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    src = tar.extractfile(member) if member.isfile() else None
                    if src is None or not member.name.endswith(suffix):
                        continue
                    with src, open(tmp / Path(member.name).name, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FormatError(archive, f"cannot extract the archive: {exc}") from exc
    (tmp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
