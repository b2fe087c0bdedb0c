"""Heartbeats answered before they are written: held in memory, written in batches.

Owns: the pending heartbeats of this server (one per node, the latest wins) and the thread that
writes them every ``interval_s``, or sooner once ``max_pending`` wait, in one transaction per
batch (``write``), in node name order (several servers' batches lock rows in one order: no
deadlock). A batch that fails (the database away) is kept and retried; a newer heartbeat
of the same node replaces it. ``flush`` writes what is pending now: the store calls it before it
reads a node's heartbeat (this server reads its own writes) and on close (a clean shutdown loses
nothing). A killed process loses what was pending: at most ``interval_s`` plus one batch's write.
Must not: decide whether a node exists (the store does, before ``add``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gridplace.api")

Write = Callable[[list[dict[str, Any]]], None]


class HeartbeatBuffer:
    """Pending heartbeats by node name, written by ``write`` in batches (module docstring)."""

    def __init__(self, write: Write, interval_s: float, max_pending: int = 2_000) -> None:
        self._write = write
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # guards _pending
        self._writing = threading.Lock()  # one batch at a time, so batches land in order
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, values: dict[str, Any]) -> None:
        """Hold ``name``'s heartbeat (replacing a pending one) until the next batch."""
        with self._lock:
            self._pending[name] = values
            full = len(self._pending) >= self.max_pending
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name="gridplace-heartbeats")
                self._thread.daemon = True
                self._thread.start()
        if full:
            self._wake.set()

    def discard(self, name: str) -> None:
        """Forget ``name``'s pending heartbeat (the node is gone, or written directly)."""
        with self._lock:
            self._pending.pop(name, None)

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write what is pending now (blocking); on failure it stays pending and this raises."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                # In name order: servers writing the same nodes lock their rows in one order.
                # In arrival order, two servers' batches locked them in opposite orders and
                # PostgreSQL aborted one as a deadlock after a second's wait.
                self._write([{"node_name": name, **batch[name]} for name in sorted(batch)])
            except BaseException:
                with self._lock:  # newer heartbeats that arrived meanwhile win
                    self._pending = batch | self._pending
                raise

    def close(self) -> None:
        """Stop the writer thread and write what is left (a clean shutdown loses nothing)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception:
            log.error("the database refused the last %d heartbeats; they are lost", len(self))

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database may be back at the next tick; nothing is dropped
                log.warning("writing %d heartbeats failed; retrying", len(self), exc_info=True)
