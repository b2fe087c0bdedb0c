"""The weights cache: LRU eviction under the size limit, Range resume after an interrupted
download (served by a local http.server thread), checksum verification, local sources."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gridplace.executor.cache import Prewarmer, WeightCache
from gridplace.executor.errors import CacheFull, ChecksumMismatch, FetchFailed
from gridplace.executor.manifest import WeightSource
from tests.executor.fakes import Clock


def source_for(data: bytes, where: str) -> WeightSource:
    return WeightSource(source=where, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


class FileServer:
    """Serves ``files`` with Range support; ``cut_after`` bytes drop the first connection."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].split("-")[0]) if header else 0
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    server.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = {"/big.gguf": os.urandom(300_000), "/small.bin": b"x" * 1000}
    fs = FileServer(files)
    yield fs
    fs.close()


def test_an_interrupted_download_resumes_with_range(tmp_path: Path, server: FileServer) -> None:
    data = server.files["/big.gguf"]
    cache = WeightCache(tmp_path, 10_000_000)
    source = source_for(data, f"{server.url}/big.gguf")
    server.cut_after = 100_000
    with pytest.raises(FetchFailed):
        cache.fetch(source)
    assert (tmp_path / ".partial" / source.sha256).stat().st_size == 100_000
    path = cache.fetch(source)
    assert path.read_bytes() == data
    assert server.ranges == [None, "bytes=100000-"]
    assert cache.fetch(source) == path and len(server.ranges) == 2  # cached: no request


def test_a_checksum_mismatch_discards_the_download(tmp_path: Path, server: FileServer) -> None:
    cache = WeightCache(tmp_path, 10_000_000)
    bad = WeightSource(source=f"{server.url}/small.bin", sha256="0" * 64)
    with pytest.raises(ChecksumMismatch) as raised:
        cache.fetch(bad)
    assert raised.value.actual == hashlib.sha256(b"x" * 1000).hexdigest()
    assert cache.entries() == [] and not any((tmp_path / ".partial").iterdir())


def test_least_recently_used_is_evicted_and_pinned_never(tmp_path: Path) -> None:
    clock = Clock()
    cache = WeightCache(tmp_path / "cache", 2500, clock=clock)
    sources = {}
    for name in ("a", "b", "c"):
        data = name.encode() * 1000
        (tmp_path / name).write_bytes(data)
        sources[name] = source_for(data, str(tmp_path / name))
    cache.fetch(sources["a"])
    clock.advance(10)
    cache.fetch(sources["b"])
    clock.advance(10)
    assert cache.get(sources["a"]) is not None  # a used again: b is now the oldest
    clock.advance(10)
    cache.fetch(sources["c"])
    assert {e.sha256 for e in cache.entries()} == {sources["a"].sha256, sources["c"].sha256}
    clock.advance(10)
    with pytest.raises(CacheFull):  # a and c pinned: b cannot fit
        cache.fetch(sources["b"], pinned={sources["a"].sha256, sources["c"].sha256})
    cache.fetch(sources["b"], pinned={sources["c"].sha256})
    assert {e.sha256 for e in cache.entries()} == {sources["b"].sha256, sources["c"].sha256}
    assert cache.usage_bytes() <= 2500


def test_weights_larger_than_the_cache_are_refused(tmp_path: Path) -> None:
    (tmp_path / "w").write_bytes(b"z" * 5000)
    cache = WeightCache(tmp_path / "cache", 1000)
    with pytest.raises(CacheFull):
        cache.fetch(source_for(b"z" * 5000, str(tmp_path / "w")))


def test_the_prewarmer_fetches_in_the_background(tmp_path: Path, server: FileServer) -> None:
    data = server.files["/big.gguf"]
    prewarmer = Prewarmer(WeightCache(tmp_path, 10_000_000))
    source = source_for(data, f"{server.url}/big.gguf")
    prewarmer.request(source, ())
    first = prewarmer._jobs[source.sha256]
    # Under way or already cached when asked again: either way not fetched twice (the job may
    # finish before the second request, which then drops it and finds the file cached).
    prewarmer.request(source, ())
    first.result(timeout=10)
    assert prewarmer.ready(source) is not None and server.ranges == [None]
    missing = WeightSource(source=f"{server.url}/nope", sha256="1" * 64)
    prewarmer.request(missing, ())
    prewarmer._jobs[missing.sha256].result(timeout=10)
    assert "404" in prewarmer.errors[missing.sha256]
    prewarmer.close()
