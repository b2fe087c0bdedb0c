"""What every server of one database must agree on, held in this process and kept current.

Owns: the latest plan generation and its assignments by node (``PlanCache``: an agent's pull with
a current ETag is answered from memory, without a database read; a changed generation is read
once, for every node at once, and each node's answer is serialized once per generation), and the
set of revoked tokens (checked in memory on every request, beside the verified-token cache).

``SharedState.sync`` compares two numbers with the database (``Store.sync_marks``: the latest
generation and the count of revoked tokens) and reloads what changed. It runs every
``sync_interval_s`` (1 s by default: the bound on how stale another server's plan or revocation
may be seen), and on PostgreSQL also at once when another server NOTIFYs (a listener thread), so
servers behind one balancer see a new plan or a revocation within milliseconds.
Must not: decide who may do what (``deps``) or write anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gridplace.api.security import VerifiedTokens
from gridplace.api.store import PlanAssignmentIndex, Store
from gridplace.api.store.store import NOTIFY_CHANNEL

log = logging.getLogger("gridplace.api")
LISTEN_RETRY_S = 1.0

Render = Callable[[str, PlanAssignmentIndex], bytes | None]


class PlanCache:
    """The latest generation this server knows of, and that plan's answers per node."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.generation = 0  # 0: no plan (an agent's ETag "0")
        self._index: PlanAssignmentIndex | None = None
        self._bodies: dict[str, tuple[int, bytes]] = {}

    def see(self, generation: int) -> None:
        """The database's latest generation, as polled or notified."""
        with self._lock:
            if generation > self.generation:
                self.generation = generation

    def cached(self, node: str) -> tuple[int, bytes] | None:
        """``node``'s answer for the known generation, if serialized already (no I/O)."""
        index = self._index
        if index is None or (index.generation or 0) != self.generation:
            return None
        return self._bodies.get(node)

    def index(self) -> PlanAssignmentIndex:
        """The latest generation's assignments (read once per generation). Blocking."""
        index = self._index
        if index is None or (index.generation or 0) != self.generation:
            index = self._store.latest_assignments()
            with self._lock:
                self._index, self._bodies = index, {}
                self.generation = max(self.generation, index.generation or 0)
        return index

    def answer(self, node: str, render: Render) -> tuple[int, bytes] | None:
        """(generation, ``node``'s answer) for the latest generation, reading the plan once per
        generation; None when ``render`` says the node is unknown. Blocking: run it in a worker
        thread."""
        index = self.index()
        found = self._bodies.get(node)
        if found is None:
            body = render(node, index)
            if body is None:
                return None
            found = (index.generation or 0, body)
            if self._index is index:
                self._bodies[node] = found
        return found


class SharedState:
    """The plan cache and the revoked tokens of this server, kept in step with the database."""

    def __init__(self, store: Store, verified: VerifiedTokens) -> None:
        self.store = store
        self.plans = PlanCache(store)
        self.verified = verified
        self.revoked: frozenset[str] = frozenset()
        self._revoked_count = -1
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        store.change_hooks.append(self.sync)

    def sync(self) -> None:
        """Compare the shared marks with the database and take in what changed (blocking)."""
        with self._sync_lock:
            generation, revoked_count = self.store.sync_marks()
            if revoked_count != self._revoked_count:
                self.revoke(self.store.revoked_token_ids())
                self._revoked_count = revoked_count
        self.plans.see(generation)

    def revoke(self, token_ids: set[str]) -> None:
        """Refuse these tokens from now on in this server (and drop them from the cache)."""
        fresh = set(token_ids) - self.revoked
        if fresh:
            self.revoked = self.revoked | fresh
            self.verified.forget_token_ids(fresh)

    def start_listening(self) -> None:
        """On PostgreSQL, sync at once whenever another server NOTIFYs (a daemon thread)."""
        if self.store.backend == "postgresql" and self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="gridplace-listen")
            self._listener.daemon = True
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=2 * LISTEN_RETRY_S)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_once()
            except Exception:  # a lost connection: the 1 s poll covers the gap; reconnect
                log.warning("listening for other servers' changes failed; retrying", exc_info=True)
                self._stop.wait(LISTEN_RETRY_S)

    def _listen_once(self) -> None:
        raw = self.store.engine.raw_connection()
        connection: Any = raw.driver_connection
        raw.detach()  # held for the thread's life, not returned to the pool
        try:
            connection.autocommit = True
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.sync()  # what changed before LISTEN took effect
            while not self._stop.is_set():
                if list(connection.notifies(timeout=LISTEN_RETRY_S, stop_after=1)):
                    self.sync()
        finally:
            raw.close()
