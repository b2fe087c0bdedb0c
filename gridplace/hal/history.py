"""Telemetry history: a sampler that reads a backend at an interval, and the bounded local store
it writes to (a ring buffer in memory, optionally mirrored to a SQLite file).

Owns: how samples are taken, kept and bounded on the node.
Must not: interpret samples (``thermal`` does), or talk to the API.

Bounds: the ring keeps the last ``capacity`` samples (one sample = one GPU at one instant; the
default of 100,000 is 8 GPUs sampled every minute for about 8.7 days). The SQLite file keeps
``retention_days`` of samples and at most ``max_rows``; older rows are pruned as new ones arrive.
The file outlives the process: on open, the newest ``capacity`` rows fill the ring again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import astuple, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gridplace.hal.backend import GPUBackend
from gridplace.hal.device import Telemetry
from gridplace.hal.errors import HALError

_FIELDS = [f.name for f in fields(Telemetry)]
_BOOL_FIELDS = {f.name for f in fields(Telemetry) if "bool" in str(f.type)}
_INT_FIELDS = {f.name for f in fields(Telemetry) if str(f.type).startswith("int")}
_PRUNE_EVERY = 1000  # inserts between prunes: pruning scans an index, no need to do it each time


class TelemetryStore:
    """Samples in time order (per insertion), bounded in memory and on disk."""

    def __init__(
        self,
        capacity: int = 100_000,
        path: Path | None = None,
        retention_days: float = 30.0,
        max_rows: int = 2_000_000,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ring: deque[Telemetry] = deque(maxlen=capacity)
        self._retention_s = retention_days * 86_400
        self._max_rows = max_rows
        self._inserts = 0
        self._lock = threading.Lock()  # the sampler thread writes while the agent reads
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            columns = ", ".join(f"{name} {_column_type(name)}" for name in _FIELDS)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS samples ({columns})")
            self._db.execute("CREATE INDEX IF NOT EXISTS samples_time ON samples (timestamp_s)")
            self._db.commit()
            rows = self._db.execute(
                f"SELECT {', '.join(_FIELDS)} FROM samples ORDER BY timestamp_s DESC LIMIT ?",
                (capacity,),
            ).fetchall()
            self._ring.extend(_from_row(row) for row in reversed(rows))

    def __len__(self) -> int:
        return len(self._ring)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def add(self, samples: Iterable[Telemetry]) -> None:
        batch = list(samples)
        with self._lock:
            self._ring.extend(batch)
            if self._db is None or not batch:
                return
            placeholders = ", ".join("?" for _ in _FIELDS)
            self._db.executemany(
                f"INSERT INTO samples ({', '.join(_FIELDS)}) VALUES ({placeholders})",
                [_to_row(sample) for sample in batch],
            )
            self._inserts += len(batch)
            if self._inserts >= _PRUNE_EVERY:
                self._prune(batch[-1].timestamp_s)
                self._inserts = 0
            self._db.commit()

    def _prune(self, now_s: float) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM samples WHERE timestamp_s < ?", (now_s - self._retention_s,))
        self._db.execute(
            "DELETE FROM samples WHERE rowid NOT IN "
            "(SELECT rowid FROM samples ORDER BY timestamp_s DESC LIMIT ?)",
            (self._max_rows,),
        )

    def samples(
        self, since_s: float | None = None, until_s: float | None = None
    ) -> list[Telemetry]:
        """Samples with ``since_s <= timestamp_s <= until_s``, oldest first.

        Read from the SQLite file when there is one (it holds more than the ring), else the ring.
        """
        low = float("-inf") if since_s is None else since_s
        high = float("inf") if until_s is None else until_s
        with self._lock:
            if self._db is not None:
                rows = self._db.execute(
                    f"SELECT {', '.join(_FIELDS)} FROM samples "
                    "WHERE timestamp_s >= ? AND timestamp_s <= ? ORDER BY timestamp_s",
                    (max(low, -1e18), min(high, 1e18)),
                ).fetchall()
                return [_from_row(row) for row in rows]
            return sorted(
                (s for s in self._ring if low <= s.timestamp_s <= high),
                key=lambda s: s.timestamp_s,
            )


def _column_type(name: str) -> str:
    if name in _BOOL_FIELDS or name in _INT_FIELDS:
        return "INTEGER"
    if name == "uuid":
        return "TEXT"
    return "REAL"


def _to_row(sample: Telemetry) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, bool) else v for v in astuple(sample))


def _from_row(row: tuple[Any, ...]) -> Telemetry:
    values = {}
    for name, value in zip(_FIELDS, row, strict=True):
        if value is not None and name in _BOOL_FIELDS:
            value = bool(value)
        values[name] = value
    return Telemetry(**values)


class TelemetrySampler:
    """Reads ``backend.sample()`` every ``interval_s`` seconds into ``store``.

    A failed read (``HALError``) is kept in ``last_error`` and the loop goes on: the agent must
    not die because the driver hiccuped once. Ticks are aligned to the start time, so a slow read
    does not make the interval drift.
    """

    def __init__(
        self,
        backend: GPUBackend,
        store: TelemetryStore,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.backend = backend
        self.store = store
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self.last_error: HALError | None = None

    def sample_once(self) -> list[Telemetry]:
        samples = self.backend.sample()
        self.store.add(samples)
        return samples

    def run(self, count: int | None = None, stop: threading.Event | None = None) -> int:
        """Sample ``count`` times (forever when None) or until ``stop`` is set; returns how many
        reads succeeded."""
        start_s = self._clock()
        taken = succeeded = 0
        while count is None or taken < count:
            if stop is not None and stop.is_set():
                break
            try:
                self.sample_once()
                succeeded += 1
            except HALError as error:
                self.last_error = error
            taken += 1
            if count is not None and taken >= count:
                break
            wait_s = max(0.0, start_s + taken * self.interval_s - self._clock())
            if stop is not None:
                if stop.wait(wait_s):
                    break
            else:
                self._sleep(wait_s)
        return succeeded
