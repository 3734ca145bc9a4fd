"""Downloads: mirror lookup, verification, resumable cached downloads, the offline error."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from servetrace.loaders import download
from servetrace.loaders.dataset import RemoteFile

PAYLOAD = b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + b"2023-11-16 18:17:03.9799600,1,2\n" * 5000


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str | None]] = []

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.requests = []
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
