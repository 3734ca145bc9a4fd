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
import re
import shutil
import tarfile
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from servetrace.loaders.dataset import RemoteFile
from servetrace.loaders.source import FormatError, file_sha256

CHUNK = 1 << 20
STALL_BYTES = 64 << 10


class DownloadError(RuntimeError):
    """A file could not be fetched or failed verification."""


def cache_dir() -> Path:
    return Path(os.environ.get("SERVETRACE_CACHE") or Path.home() / ".cache" / "servetrace")


def sha256_of(path: Path) -> str:
    return file_sha256(path)


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


def source_url(file: RemoteFile) -> str:
    """The address a file is downloaded from: its official URL, or, with
    ``SERVETRACE_DOWNLOAD_BASE=http://host:port``, ``<base>/<official host>/<official path>``
    (a local server in tests, or an HTTP mirror of the official hosts)."""
    base = os.environ.get("SERVETRACE_DOWNLOAD_BASE")
    if not base:
        return file.url
    url = urllib.parse.urlsplit(file.url)
    return f"{base.rstrip('/')}/{url.netloc}{url.path}" + (f"?{url.query}" if url.query else "")


def fetch(file: RemoteFile, *, progress: bool = True) -> Path:
    """A local, verified copy of an official file (from the mirror or the cache).

    A cached copy that fails verification is downloaded again once; a download that fails
    it is deleted, and the error names the file.
    """
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
        try:
            verify(target, file)
            return target
        except DownloadError:
            target.unlink()  # a corrupt cached copy: fetch it again below
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _download(file, part, progress=progress)
    try:
        verify(part, file)
    except DownloadError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{exc} (the download was deleted; run again to fetch it anew)"
                            ) from exc
    os.replace(part, target)
    return target


def _stall_s() -> float:
    return float(os.environ.get("SERVETRACE_STALL_S") or 120.0)


def _download(file: RemoteFile, part: Path, *, progress: bool) -> None:
    """Download into ``part``, resuming it, until its end is confirmed.

    The end is confirmed by the length the server stated (``Content-Length``, or the total
    of ``Content-Range``), else by a range request past the last byte answered with 416. A
    server that states no length and ignores ranges cannot confirm it: that is an error, not
    a silently truncated file. A 206 reply must start where asked (one that restarts at 0
    rewrites the file). Fewer than 64 KiB in any ``SERVETRACE_STALL_S`` seconds (default 120)
    is a stall, and an error; the partial file is kept for the next run to resume.
    """
    url = source_url(file)
    for _ in range(8):
        done = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={done}-"} if done else {}
        try:
            with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                              timeout=httpx.Timeout(30.0, read=_stall_s())) as resp:
                if resp.status_code == 416 and done:
                    return  # nothing past our last byte: complete
                if resp.status_code not in (200, 206):
                    raise DownloadError(f"{url}: HTTP {resp.status_code}")
                start, total = _span(resp, url, done)
                if resp.status_code == 200 and done:
                    if total is None:
                        raise DownloadError(
                            f"{url}: the server states no length and ignores ranges, so the "
                            "download cannot be confirmed complete; fetch it by hand and "
                            "point SERVETRACE_MIRROR at its folder")
                received = _receive(resp, part, start, total, file.name, progress)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise DownloadError(
                f"cannot download {url} ({exc.__class__.__name__}: {exc}); offline? set "
                f"SERVETRACE_MIRROR=DIR to a folder holding {file.name}") from exc
        except httpx.HTTPError as exc:
            have = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"{url}: the connection ended at byte {have:,} ({exc.__class__.__name__}: "
                f"{exc}); run again to resume ({part})") from exc
        if total is not None:
            if received != total:
                raise DownloadError(f"{url}: the connection ended at byte {received:,} of "
                                    f"{total:,}; run again to resume ({part})")
            return
    raise DownloadError(f"{url}: the end of the file could not be confirmed after 8 requests")


def _span(resp: httpx.Response, url: str, done: int) -> tuple[int, int | None]:
    """(first byte of the body in the file, file length or None) of a 200 or 206 reply."""
    length = resp.headers.get("content-length")
    if resp.status_code == 200:
        return 0, int(length) if length else None
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("content-range", ""))
    if not m:
        raise DownloadError(f"{url}: a 206 reply without a valid Content-Range")
    start = int(m.group(1))
    if start not in (0, done):
        raise DownloadError(f"{url}: asked for bytes from {done:,}, the server sent bytes "
                            f"from {start:,}")
    if m.group(3) != "*":
        return start, int(m.group(3))
    return start, start + int(length) if length else None


def _receive(resp: httpx.Response, part: Path, start: int, total: int | None, name: str,
             progress: bool) -> int:
    """Write the body at ``start`` of ``part``; returns the file's size after it."""
    stall = _stall_s()
    received = start
    with open(part, "r+b" if start and part.exists() else "wb") as out, Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), disable=not progress, transient=True,
    ) as bar:
        out.seek(start)
        out.truncate()
        task = bar.add_task(name, total=total, completed=start)
        mark_t, mark_b = time.monotonic(), received
        for chunk in resp.iter_bytes():
            out.write(chunk)
            out.flush()  # what arrived is on disk: a killed run resumes from it
            received += len(chunk)
            bar.update(task, advance=len(chunk))
            now = time.monotonic()
            if now - mark_t >= stall:
                if received - mark_b < STALL_BYTES:
                    raise DownloadError(
                        f"{resp.url}: stalled ({received - mark_b:,} bytes in the last "
                        f"{now - mark_t:.0f} s; SERVETRACE_STALL_S={stall:g}); run again to "
                        f"resume from byte {received:,}")
                mark_t, mark_b = now, received
    return received


def _limit(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _member_path(root: Path, name: str, archive: Path) -> Path:
    """Where a member lands: its own path under ``root``, never outside it."""
    parts = [p for p in Path(name.replace("\\", "/")).parts if p not in ("", ".", "/")]
    if not parts or ".." in parts or Path(name).is_absolute():
        raise FormatError(archive, f"unsafe member path {name!r} (absolute or with '..')")
    return root.joinpath(*parts)


def extract(archive: Path, suffix: str = ".csv") -> Path:
    """The ``suffix`` files of a zip or tar archive, extracted once into the cache.

    Returns their folder, ``$SERVETRACE_CACHE/extracted/<archive stem>-<hash prefix>``, where
    each member keeps its own path (``requests_minute/day_000.csv`` and
    ``other/day_000.csv`` stay two files); a member path that leaves the folder (absolute,
    ``..``) or names a file twice is an error. Extraction is capped, against archive bombs,
    at ``SERVETRACE_EXTRACT_MAX_BYTES`` bytes written (default 256 GiB), a ratio of
    ``SERVETRACE_EXTRACT_MAX_RATIO`` bytes written per archive byte (default 1,100: above
    what deflate or xz reach on one level of real CSV) and ``SERVETRACE_EXTRACT_MAX_MEMBERS``
    members (default 100,000), counted as bytes are written, whatever the headers claim.
    Extraction goes to a temporary folder renamed into place, so an interrupted one is redone.
    """
    key = file_sha256(archive)[:16]
    stem = archive.name.split(".")[0]
    target = cache_dir() / "extracted" / f"{stem}-{key}"
    if (target / ".complete").exists():
        return target
    max_bytes = min(_limit("SERVETRACE_EXTRACT_MAX_BYTES", 256 * 2**30),
                    _limit("SERVETRACE_EXTRACT_MAX_RATIO", 1100) * archive.stat().st_size)
    max_members = _limit("SERVETRACE_EXTRACT_MAX_MEMBERS", 100_000)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written, members = 0, 0

    def copy(name: str, src: Any) -> None:
        nonlocal written, members
        members += 1
        if members > max_members:
            raise FormatError(archive, f"more than {max_members:,.0f} members "
                                       "(SERVETRACE_EXTRACT_MAX_MEMBERS)")
        dest = _member_path(tmp, name, archive)
        if dest.exists():
            raise FormatError(archive, f"member {name!r} appears twice")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise FormatError(archive, f"extracting it would write more than "
                                               f"{max_bytes:,.0f} bytes (SERVETRACE_EXTRACT_"
                                               "MAX_BYTES, SERVETRACE_EXTRACT_MAX_RATIO)")
                out.write(chunk)

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and info.filename.endswith(suffix):
                        with zf.open(info) as src:
                            copy(info.filename, src)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    src = tar.extractfile(member) if member.isfile() else None
                    if src is None or not member.name.endswith(suffix):
                        continue
                    with src:
                        copy(member.name, src)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FormatError(archive, f"cannot extract the archive: {exc}") from exc
    except FormatError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
