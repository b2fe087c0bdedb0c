"""The local weights cache: fetch (resumable), verify (sha256), evict least recently used.

Owns: the cache directory's layout, its size limit and eviction order, fetching from a local path
or an http(s) URL with ``Range`` resume, and the background pre-warmer (assigned replicas' weights
and standbys' in separate lanes).
Must not: know about plans or processes; what is pinned is told by the caller.

Layout: ``<root>/<sha256>/<file name>`` for verified files, ``<root>/.partial/<sha256>`` for an
interrupted fetch (resumed from its length, with ``Range: bytes=N-`` over HTTP; a server that
answers 200 instead of 206 sends it all again). Recency is the file's mtime, refreshed on every
use, so the order survives agent restarts; ties break by sha256 for determinism.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from gridplace.executor.errors import CacheError, CacheFull, ChecksumMismatch, FetchFailed
from gridplace.executor.manifest import WeightSource

log = logging.getLogger("gridplace.executor")
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CachedFile:
    sha256: str
    path: Path
    size_bytes: int
    used_at: float


class WeightCache:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, read=60.0))
        self._clock = clock
        self._lock = threading.Lock()  # eviction and promotion; fetches of one sha are serial
        (root / ".partial").mkdir(parents=True, exist_ok=True)

    def _partial(self, sha256: str) -> Path:
        return self.root / ".partial" / sha256

    def entries(self) -> list[CachedFile]:
        """Verified files, least recently used first."""
        out = []
        for directory in self.root.iterdir():
            if directory.name.startswith(".") or not directory.is_dir():
                continue
            for file in directory.iterdir():
                stat = file.stat()
                out.append(CachedFile(directory.name, file, stat.st_size, stat.st_mtime))
        return sorted(out, key=lambda e: (e.used_at, e.sha256))

    def usage_bytes(self) -> int:
        partial = sum(p.stat().st_size for p in (self.root / ".partial").iterdir())
        return sum(e.size_bytes for e in self.entries()) + partial

    def get(self, source: WeightSource) -> Path | None:
        """The cached file, marked as just used; None when not cached."""
        path = self.root / source.sha256 / source.file_name
        if not path.is_file():
            return None
        now = self._clock()
        os.utime(path, (now, now))
        return path

    def fits(self, need_bytes: int, pinned: Collection[str]) -> bool:
        """Whether ``need_bytes`` more could fit by evicting only files outside ``pinned`` (and
        nothing partial): what a standby asks before it may evict anything."""
        held = sum(e.size_bytes for e in self.entries() if e.sha256 in pinned)
        partial = sum(p.stat().st_size for p in (self.root / ".partial").iterdir())
        return held + partial + need_bytes <= self.max_bytes

    def evict(self, need_bytes: int, pinned: Collection[str]) -> list[str]:
        """Delete least recently used files, never a pinned sha256, until ``need_bytes`` more
        fit under the limit; returns what was evicted. ``CacheFull`` if they cannot fit."""
        with self._lock:
            if need_bytes > self.max_bytes:
                raise CacheFull(
                    f"{need_bytes} bytes are more than the whole cache ({self.max_bytes} bytes)"
                )
            evicted: list[str] = []
            used = self.usage_bytes()
            for entry in self.entries():
                if used + need_bytes <= self.max_bytes:
                    break
                if entry.sha256 in pinned:
                    continue
                shutil.rmtree(entry.path.parent, ignore_errors=True)
                used -= entry.size_bytes
                evicted.append(entry.sha256)
                log.info(
                    "cache: evicted %s (%d bytes, least recently used)",
                    entry.path.name,
                    entry.size_bytes,
                )
            if used + need_bytes > self.max_bytes:
                raise CacheFull(
                    f"{need_bytes} bytes do not fit: {used} of {self.max_bytes} bytes are held "
                    "by weights in use"
                )
            return evicted

    def fetch(self, source: WeightSource, pinned: Collection[str] = ()) -> Path:
        """The verified file for ``source``, fetched (or resumed) when not cached."""
        cached = self.get(source)
        if cached is not None:
            return cached
        partial = self._partial(source.sha256)
        have = partial.stat().st_size if partial.exists() else 0
        if source.size_bytes is not None:
            self.evict(max(0, source.size_bytes - have), {*pinned, source.sha256})
        if source.source.startswith(("http://", "https://")):
            self._fetch_http(source, partial)
        else:
            self._fetch_local(source, partial)
        digest = _sha256(partial)
        if digest != source.sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{source.source}: sha256 {digest}, expected {source.sha256} (partial discarded)",
                expected=source.sha256,
                actual=digest,
            )
        size = partial.stat().st_size
        target = self.root / source.sha256 / source.file_name
        target.parent.mkdir(exist_ok=True)
        os.replace(partial, target)
        now = self._clock()
        os.utime(target, (now, now))
        self.evict(0, {*pinned, source.sha256})  # over the limit when the size was not known
        log.info("cache: %s verified (%d bytes)", source.file_name, size)
        return target

    def _fetch_local(self, source: WeightSource, partial: Path) -> None:
        origin = Path(source.source)
        try:
            with open(origin, "rb") as reader, open(partial, "ab") as writer:
                reader.seek(writer.tell())
                shutil.copyfileobj(reader, writer, CHUNK_BYTES)
        except OSError as error:
            raise FetchFailed(f"{origin}: {error.strerror}") from error

    def _fetch_http(self, source: WeightSource, partial: Path) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with self._http.stream("GET", source.source, headers=headers) as response:
                if response.status_code == 416 and have:
                    return  # nothing after what we have: the checksum decides
                if response.status_code not in (200, 206):
                    raise FetchFailed(f"{source.source}: HTTP {response.status_code}")
                mode = "ab" if response.status_code == 206 else "wb"
                if have and mode == "wb":
                    log.info("cache: %s ignores Range; fetching from the start", source.source)
                with open(partial, mode) as writer:
                    for chunk in response.iter_bytes():  # as received: a cut loses nothing
                        writer.write(chunk)
        except httpx.HTTPError as error:
            # What arrived stays in the partial file; the next fetch resumes after it.
            raise FetchFailed(f"{source.source}: {error}") from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class Prewarmer:
    """Fetches in the background, so the agent keeps heartbeating meanwhile: the weights of
    assigned replicas one at a time, and a standby's (``standby=True``) one at a time in a lane
    of their own, so a standby's download never holds up an assigned replica's."""

    def __init__(self, cache: WeightCache, background: bool = True) -> None:
        self.cache = cache
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="prewarm") if background else None
        self._standby_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="standby") if background else None
        )
        self._jobs: dict[str, Future[Path | None]] = {}
        self.errors: dict[str, str] = {}  # sha256 -> why its last fetch failed

    def ready(self, source: WeightSource) -> Path | None:
        return self.cache.get(source)

    def fetching(self, source: WeightSource) -> bool:
        job = self._jobs.get(source.sha256)
        return job is not None and not job.done()

    def request(self, source: WeightSource, pinned: Collection[str], standby: bool = False) -> None:
        """Start fetching ``source`` unless cached or already under way."""
        job = self._jobs.get(source.sha256)
        if job is not None and not job.done():
            return
        if job is not None:
            del self._jobs[source.sha256]
        if self.cache.get(source) is not None:
            return
        pool = self._standby_pool if standby else self._pool
        if pool is None:
            self._run(source, tuple(pinned))
            return
        self._jobs[source.sha256] = pool.submit(self._run, source, tuple(pinned))

    def _run(self, source: WeightSource, pinned: tuple[str, ...]) -> Path | None:
        try:
            path = self.cache.fetch(source, pinned)
        except CacheError as error:  # reported as Degraded; the next loop asks again
            self.errors[source.sha256] = error.message
            log.warning("cache: fetching %s failed: %s", source.source, error.message)
            return None
        self.errors.pop(source.sha256, None)
        return path

    def close(self) -> None:
        for pool in (self._pool, self._standby_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
