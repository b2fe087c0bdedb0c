"""Token buckets in memory, one per key (a node, or a client address that failed to log in).

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a request takes one. An empty
bucket answers how long until the next token, which becomes ``Retry-After``. The buckets live in
this process: with several servers behind a balancer each enforces its own share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Lease = Callable[[str, int], tuple[int, float]]  # (key, want) -> (granted, wait s when none)

MAX_BUCKETS = 100_000  # past this, full (idle) buckets are dropped; they would refill anyway


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at monotonic time)
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate_per_s)

    def take(self, key: str) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            tokens = self._level(key, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate_per_s
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0.0

    def peek(self, key: str) -> float:
        """Like ``take`` but takes nothing: 0.0 when a token is there."""
        with self._lock:
            tokens = self._level(key, self._clock())
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]


class LeasedRateLimiter:
    """Token buckets in the database, leased ``lease`` tokens at a time (module docstring)."""

    def __init__(self, lease: Lease, size: int, clock: Callable[[], float] = time.monotonic):
        self._lease = lease
        self.size = size
        self._clock = clock
        self._held: dict[str, int] = {}
        self._refused_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def take_held(self, key: str) -> float | None:
        """From memory: 0.0 when a held token was taken, the wait when refused lately, None
        when the database must be asked (``take_leased``)."""
        with self._lock:
            held = self._held.get(key, 0)
            if held > 0:
                self._held[key] = held - 1
                return 0.0
            wait_s = self._refused_until.get(key, 0.0) - self._clock()
            return wait_s if wait_s > 0 else None

    def take_leased(self, key: str) -> float:
        """Lease from the database and take one (blocking: run it in a worker thread)."""
        granted, wait_s = self._lease(key, self.size)
        with self._lock:
            if len(self._held) + len(self._refused_until) > MAX_BUCKETS:
                self._held.clear()  # rare; forgotten leases only make a node wait a little
                self._refused_until.clear()
            if granted > 0:
                self._held[key] = self._held.get(key, 0) + granted - 1
                self._refused_until.pop(key, None)
                return 0.0
            self._refused_until[key] = self._clock() + wait_s
            return wait_s
