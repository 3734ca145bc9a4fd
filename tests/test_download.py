"""Downloads: mirror lookup, verification, resumable cached downloads, the offline error."""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from servetrace.loaders import download
from servetrace.loaders.dataset import RemoteFile

PAYLOAD = b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + b"2023-11-16 18:17:03.9799600,1,2\n" * 5000


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD with ranges; ``mode`` makes it misbehave as real servers do."""

    requests: ClassVar[list[str | None]] = []
    mode: ClassVar[str] = "good"
    protocol_version = "HTTP/1.0"  # a body without length ends when the connection closes

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        first = len(type(self).requests) == 1
        if rng and start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.end_headers()
            return
        if self.mode == "range-restarts" and rng:
            start = 0  # a 206 that restarts at byte 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range",
                             f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        if self.mode == "no-length-cut" and first:
            self.end_headers()  # no length, then the connection drops early
            self.wfile.write(body[: len(body) // 3])
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "cut" and first:
            self.wfile.write(body[: len(body) // 2])  # stated length, sent half
            return
        if self.mode == "trickle":
            for i in range(0, len(body), 100):
                self.wfile.write(body[i:i + 100])
                self.wfile.flush()
                time.sleep(0.2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.requests = []
    _Handler.mode = "good"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _file(url: str, **kw) -> RemoteFile:
    return RemoteFile(url=f"{url}/x/trace.csv", name="trace.csv", **kw)


def test_mirror_found_recursively(mirror):
    f = RemoteFile("https://example.invalid/AzureLLMInferenceTrace_code.csv",
                   "AzureLLMInferenceTrace_code.csv")
    assert download.fetch(f) == mirror / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"


def test_mirror_missing_file_names_url(mirror):
    f = RemoteFile("https://example.invalid/nothing.csv", "nothing.csv")
    with pytest.raises(download.DownloadError, match=r"nothing\.csv is not in SERVETRACE_MIRROR"):
        download.fetch(f)


def test_mirror_checksum_mismatch(mirror):
    f = RemoteFile("https://example.invalid/AzureLLMInferenceTrace_code.csv",
                   "AzureLLMInferenceTrace_code.csv", sha256="0" * 64)
    with pytest.raises(download.DownloadError, match="SHA-256 differs"):
        download.fetch(f)


def test_download_verifies_and_caches(server, tmp_path, monkeypatch):
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path))
    f = _file(server, size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = download.fetch(f, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert download.fetch(f, progress=False) == path  # second call: from the cache
    assert _Handler.requests == [None]


def test_download_resumes_from_partial(server, tmp_path, monkeypatch):
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path))
    f = _file(server, size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    target = download.cache_dir() / hashlib.sha1(f.url.encode()).hexdigest()[:16] / f.name
    target.parent.mkdir(parents=True)
    target.with_name(f.name + ".part").write_bytes(PAYLOAD[:1000])
    assert download.fetch(f, progress=False).read_bytes() == PAYLOAD
    assert _Handler.requests == ["bytes=1000-"]


def test_download_bad_checksum_is_discarded(server, tmp_path, monkeypatch):
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path))
    with pytest.raises(download.DownloadError, match="SHA-256 differs"):
        download.fetch(_file(server, sha256="0" * 64), progress=False)
    assert not list(tmp_path.rglob("trace.csv*"))


def test_offline_error_names_url_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path))
    f = RemoteFile("http://127.0.0.1:9/AzureLLMInferenceTrace_code.csv",
                   "AzureLLMInferenceTrace_code.csv")
    with pytest.raises(download.DownloadError) as info:
        download.fetch(f, progress=False)
    assert "http://127.0.0.1:9/AzureLLMInferenceTrace_code.csv" in str(info.value)
    assert "SERVETRACE_MIRROR" in str(info.value)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path))
    return tmp_path


def _unpinned(url: str) -> RemoteFile:
    """A registered file with no published size or hash (312 of 335 are so)."""
    return _file(url)


def test_no_length_cut_off_early_is_completed_not_cached_truncated(server, cache):
    _Handler.mode = "no-length-cut"
    assert download.fetch(_unpinned(server), progress=False).read_bytes() == PAYLOAD
    third = len(PAYLOAD) // 3
    assert _Handler.requests == [None, f"bytes={third}-"]


def test_stated_length_cut_is_an_error_then_resumes(server, cache):
    _Handler.mode = "cut"
    with pytest.raises(download.DownloadError, match=r"ended at byte [\d,]+ .*run again to "
                                                     r"resume"):
        download.fetch(_unpinned(server), progress=False)
    assert not list(cache.rglob("trace.csv"))  # nothing truncated in the cache
    assert download.fetch(_unpinned(server), progress=False).read_bytes() == PAYLOAD
    assert _Handler.requests[-1] == f"bytes={len(PAYLOAD) // 2}-"


def test_a_206_restarting_at_zero_is_not_appended(server, cache):
    _Handler.mode = "range-restarts"
    f = _unpinned(server)
    part = download.cache_dir() / hashlib.sha1(f.url.encode()).hexdigest()[:16] / (
        f.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])
    assert download.fetch(f, progress=False).read_bytes() == PAYLOAD


def test_corrupt_cached_copy_is_fetched_again(server, cache):
    f = _file(server, size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = download.fetch(f, progress=False)
    path.write_bytes(b"garbage")
    assert download.fetch(f, progress=False).read_bytes() == PAYLOAD
    assert _Handler.requests == [None, None]


def test_a_trickle_is_a_stall(server, cache, monkeypatch):
    _Handler.mode = "trickle"
    monkeypatch.setenv("SERVETRACE_STALL_S", "1")
    with pytest.raises(download.DownloadError, match="stalled"):
        download.fetch(_unpinned(server), progress=False)


def test_download_base_redirects_to_a_local_server(server, cache, monkeypatch):
    """SERVETRACE_DOWNLOAD_BASE sends the official URL's host and path to another server."""
    monkeypatch.setenv("SERVETRACE_DOWNLOAD_BASE", server)
    f = RemoteFile(url="https://example.org/x/trace.csv", name="trace.csv")
    assert download.source_url(f) == f"{server}/example.org/x/trace.csv"
    assert download.fetch(f, progress=False).read_bytes() == PAYLOAD


def _zip(path, members: dict[str, bytes] | list[tuple[str, bytes]]):
    import warnings
    import zipfile

    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a duplicate name, as intended
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return path


def test_extract_keeps_member_paths(cache, tmp_path):
    archive = _zip(tmp_path / "m.zip", {"requests_minute/day_000.csv": b"a\n1\n",
                                        "other/day_000.csv": b"b\n2\n"})
    folder = download.extract(archive)
    assert (folder / "requests_minute" / "day_000.csv").read_bytes() == b"a\n1\n"
    assert (folder / "other" / "day_000.csv").read_bytes() == b"b\n2\n"


@pytest.mark.parametrize(("members", "message"), [
    ({"../evil.csv": b"x\n"}, "unsafe member path"),
    ({"/etc/evil.csv": b"x\n"}, "unsafe member path"),
    ([("a/x.csv", b"1\n"), ("a/x.csv", b"2\n")], "appears twice"),
])
def test_extract_refuses_unsafe_archives(cache, tmp_path, members, message):
    archive = _zip(tmp_path / "bad.zip", members)
    with pytest.raises(download.FormatError, match=message):
        download.extract(archive)
    assert not list((cache / "extracted").iterdir())
    assert not (tmp_path.parent / "evil.csv").exists()


def test_extract_caps_bombs(cache, tmp_path, monkeypatch):
    """5 MB of zeros deflate to ~5 KB (ratio ~1,000): over a cap of 50 it stops, early."""
    archive = _zip(tmp_path / "bomb.zip", {"z.csv": b"0" * 5_000_000})
    monkeypatch.setenv("SERVETRACE_EXTRACT_MAX_RATIO", "50")
    with pytest.raises(download.FormatError, match="would write more than"):
        download.extract(archive)
    assert not list((cache / "extracted").iterdir())
    monkeypatch.setenv("SERVETRACE_EXTRACT_MAX_RATIO", "2000")
    monkeypatch.setenv("SERVETRACE_EXTRACT_MAX_MEMBERS", "2")
    many = _zip(tmp_path / "many.zip", {f"{i}.csv": b"1\n" for i in range(3)})
    with pytest.raises(download.FormatError, match="more than 2 members"):
        download.extract(many)
    assert (download.extract(archive) / "z.csv").stat().st_size == 5_000_000
