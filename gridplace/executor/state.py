"""The agent's local state file (SQLite, stdlib ``sqlite3``): one row per replica it started (table
``replicas``), and one per idle engine of a vram standby (table ``standbys``, same row shape).

Owns: the schema and every write, each committed at once (WAL), so that a SIGKILL at any point
leaves a row that says how far the step got.
Must not: decide anything (``reconcile`` reads the rows and acts).

Phases of a row, in the order a replica lives them::

    launching   written *before* the process is started: the port and id are reserved; the pid
                is not known yet (after a crash the process is looked for by its marker)
    starting    running with a recorded pid, not yet healthy; ``deadline_at`` is the start deadline
    running     healthy
    draining    taking no new requests; stopped once idle or at ``drain_deadline_at``
    failed      no process; ``next_retry_at`` is when it may be started again (backoff)

A stopped replica's row is deleted.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.errors import StateFileError

SCHEMA_VERSION = "1"


class Phase(StrEnum):
    LAUNCHING = "launching"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass(frozen=True)
class ReplicaRecord:
    replica_id: str
    spec: ReplicaSpec
    generation: int | None
    phase: Phase
    port: int | None = None
    endpoint: str | None = None
    pid: int | None = None
    pid_start_ticks: int | None = None
    argv: tuple[str, ...] = ()
    health_paths: tuple[str, ...] = ()
    inflight_metrics: tuple[str, ...] = ()
    drain_path: str | None = None
    started_at: float | None = None
    deadline_at: float | None = None  # start deadline
    drain_deadline_at: float | None = None
    leaving_since: float | None = None  # when the plan stopped wanting it here
    attempts: int = 0  # failed starts in a row (backoff exponent)
    next_retry_at: float | None = None
    message: str | None = None
    updated_at: float = 0.0

    @property
    def has_process(self) -> bool:
        return self.phase in (Phase.STARTING, Phase.RUNNING, Phase.DRAINING)


_JSON_FIELDS = {"spec", "argv", "health_paths", "inflight_metrics"}
_COLUMNS = [f.name for f in fields(ReplicaRecord)]


def _encode(record: ReplicaRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in _COLUMNS}
    row["spec"] = json.dumps(asdict(record.spec))
    for name in ("argv", "health_paths", "inflight_metrics"):
        row[name] = json.dumps(list(row[name]))
    row["phase"] = record.phase.value
    return row


def _decode(row: sqlite3.Row) -> ReplicaRecord:
    values = {name: row[name] for name in _COLUMNS}
    spec = json.loads(values["spec"])
    values["spec"] = ReplicaSpec(**{**spec, "gpus": tuple(spec["gpus"])})
    for name in ("argv", "health_paths", "inflight_metrics"):
        values[name] = tuple(json.loads(values[name]))
    values["phase"] = Phase(values["phase"])
    return ReplicaRecord(**values)


class StateFile:
    """The rows of one agent; ``path`` of ``:memory:`` keeps them in memory (tests). ``table``:
    ``replicas``, or ``standbys`` for the idle engines of vram standbys (``standby_engines``)."""

    def __init__(self, path: Path | str, table: str = "replicas") -> None:
        if table not in ("replicas", "standbys"):
            raise StateFileError(f"unknown state table {table!r}")
        self.path = path
        self.table = table
        try:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.Error as error:
            raise StateFileError(f"state file {path}: {error}") from error

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        found = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if found is not None and found[0] != SCHEMA_VERSION:
            raise StateFileError(
                f"schema {found[0]}, this agent knows {SCHEMA_VERSION}: use a new --state-file"
            )
        columns = ", ".join(
            f"{name} {'TEXT PRIMARY KEY' if name == 'replica_id' else ''}" for name in _COLUMNS
        )
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def sibling(self, table: str) -> StateFile:
        """Another table of the same file (a new in-memory one for ``:memory:``)."""
        return StateFile(self.path, table)

    def close(self) -> None:
        self._db.close()

    def put(self, record: ReplicaRecord) -> None:
        row = _encode(record)
        marks = ", ".join("?" for _ in _COLUMNS)
        self._db.execute(
            f"INSERT OR REPLACE INTO {self.table} ({', '.join(_COLUMNS)}) VALUES ({marks})",
            [row[name] for name in _COLUMNS],
        )

    def update(self, record: ReplicaRecord, now: float, **changes: Any) -> ReplicaRecord:
        updated = replace(record, **changes, updated_at=now)
        self.put(updated)
        return updated

    def delete(self, replica_id: str) -> None:
        self._db.execute(f"DELETE FROM {self.table} WHERE replica_id = ?", (replica_id,))

    def get(self, replica_id: str) -> ReplicaRecord | None:
        row = self._db.execute(
            f"SELECT * FROM {self.table} WHERE replica_id = ?", (replica_id,)
        ).fetchone()
        return _decode(row) if row else None

    def records(self) -> list[ReplicaRecord]:
        rows = self._db.execute(f"SELECT * FROM {self.table} ORDER BY replica_id").fetchall()
        return [_decode(row) for row in rows]
