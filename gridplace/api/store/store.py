"""The store's queries: nodes, tokens, probes, plans with their per-node assignments, states,
observation windows and calibrations.

Every method is one short transaction and returns records (``records.py``). Database trouble
(unreachable, locked past the busy timeout) becomes ``DatabaseUnavailable``; a plan written on a
stale generation becomes ``GenerationConflict``. An SQLite file deleted or replaced under the
server, or found damaged, becomes ``DatabaseDamaged`` for every later request: a write to a
deleted file would be lost at the next start, so none is accepted. The store judges nothing:
whether a silent node is gone, or a change deserves a replan, is decided by its callers.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gridplace.api.security import Role, TokenHash
from gridplace.api.store.engine import WRITE_OPTION, create_store_engine, migrate
from gridplace.api.store.errors import DatabaseDamaged, DatabaseUnavailable, GenerationConflict
from gridplace.api.store.heartbeats import HeartbeatBuffer
from gridplace.api.store.records import (
    CalibrationRecord,
    NewPlan,
    NodeAssignments,
    NodeBasis,
    NodePulse,
    NodeRecord,
    NodeTokenRecord,
    ObservationRecord,
    PlanAssignmentIndex,
    PlanRecord,
    PlanSummary,
    StateRecord,
)
from gridplace.api.store.schema import (
    CalibrationRow,
    NodeRow,
    NodeStateRow,
    NodeTokenRow,
    ObservationRow,
    PlanAssignmentRow,
    PlanRow,
    ProbeRow,
    ServerSetting,
)
from gridplace.specs import LatencyProbes, Node, NodeStatus, ObservationWindow, PlacementPlan

ADMIN_TOKEN_KEY = "admin_token"
_STATUS_COLUMNS = ("status", "healthy", "throttle_ratio", "last_heartbeat", "updated_at")
# Every server of one database LISTENs here; a new plan or a revoked token NOTIFYs it, so that the
# others look at the shared marks (``sync_marks``) at once instead of at their next poll.
NOTIFY_CHANNEL = "gridplace_changes"
NAMES_REREAD_S = 1.0  # is_node: how often a miss may read every node's name again
NAMES_PER_QUERY = 500  # nodes_named: bound parameters per IN (old SQLite allows 999)
# Shared token buckets: one statement decides and hands out up to :want whole tokens, with the
# database's clock (read once, into the row's at_s: ``excluded.at_s`` is now), so servers with
# skewed clocks still agree. Every SET expression sees the row as it was.
_GRANT = "LEAST(:want, GREATEST(0, floor({level})))"
_LEVEL = "LEAST(:burst, b.tokens + (excluded.at_s - b.at_s) * :rate)"
LEASE_SHARED_TOKENS = text(
    "INSERT INTO rate_buckets AS b (key, tokens, at_s, granted) "
    f"VALUES (:key, :burst - {_GRANT.format(level=':burst')}, "
    "extract(epoch FROM clock_timestamp())::float8, "
    f"{_GRANT.format(level=':burst')}) ON CONFLICT (key) DO UPDATE SET "
    f"granted = {_GRANT.format(level=_LEVEL)}, "
    f"tokens = {_LEVEL} - {_GRANT.format(level=_LEVEL)}, at_s = excluded.at_s "
    "RETURNING tokens, granted"
)


class Store:
    """The service's database; ``Store.open(url)`` connects and migrates it to the head."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        self._sqlite_writer: contextlib.AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self._sqlite_file = sqlite_file_of(engine)
        self._sqlite_identity = _identity(self._sqlite_file) if self._sqlite_file else None
        self._damage: str | None = None  # once found damaged, refused until restarted
        # Called after a plan or a revocation commits here: this server sees its own writes at
        # once (other servers through NOTIFY or their poll).
        self.change_hooks: list[Callable[[], None]] = []
        # Heartbeats held in memory and written in batches (``buffer_heartbeats``), and the nodes
        # known to exist, so that a buffered heartbeat of an unknown node is still refused.
        self._heartbeats: HeartbeatBuffer | None = None
        self._known_nodes: set[str] = set()
        self._names_read_at = -NAMES_REREAD_S  # never

    @classmethod
    def open(cls, url: str) -> Store:
        engine = create_store_engine(url)
        migrate(engine)
        store = cls(engine)
        store.check_integrity()
        return store

    def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.close()  # a clean shutdown writes every heartbeat it answered
        self.engine.dispose()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        # SQLite has one writer at a time; its busy handler polls with sleeps of up to 100 ms,
        # which turns a queue of writers into seconds of tail latency. Writers of this process
        # queue on a lock instead (other processes still meet the busy timeout).
        self._check_file()
        lock = self._sqlite_writer if write else contextlib.nullcontext()
        try:
            with lock, (self._writer if write else self._reader).begin() as session:
                yield session
        except IntegrityError:
            raise  # a constraint said no: the caller knows what that means
        except OperationalError as error:  # unreachable, locked past the busy timeout, ...
            raise DatabaseUnavailable(f"database error: {error.orig}") from error
        except DatabaseError as error:
            if type(error) is not DatabaseError or self._sqlite_file is None:
                raise  # DataError, ProgrammingError...: a bug, not a damaged file
            # SQLite's "database disk image is malformed", "file is not a database"
            self._damage = (
                f"the database is damaged ({error.orig}); every request is refused: "
                "restore it from a backup and restart the server"
            )
            raise DatabaseDamaged(self._damage) from error
        except DBAPIError as error:
            if error.connection_invalidated:
                raise DatabaseUnavailable(f"database connection lost: {error.orig}") from error
            raise

    def ping(self) -> None:
        """Raise ``DatabaseUnavailable`` unless the database answers and its tables read."""
        with self._session(write=False) as session:
            session.execute(text("SELECT 1"))
            if self._sqlite_file is not None:  # a damaged page shows when it is read
                for table in (ServerSetting, NodeRow, PlanRow):
                    session.execute(select(table).limit(1)).first()

    def check_integrity(self) -> None:
        """SQLite's ``quick_check`` (at open: a damaged file is refused before serving)."""
        if self._sqlite_file is None:
            return
        with self._session(write=False) as session:
            rows = [str(row[0]) for row in session.execute(text("PRAGMA quick_check(5)"))]
        if rows != ["ok"]:
            found = "; ".join(line.strip() for row in rows for line in row.splitlines())
            self._damage = (
                f"the SQLite file {self._sqlite_file} is damaged ({found[:300]}): "
                "restore it from a backup"
            )
            raise DatabaseDamaged(self._damage)

    def _check_file(self) -> None:
        if self._damage is not None:
            raise DatabaseDamaged(self._damage)
        if self._sqlite_file is None:
            return
        identity = _identity(self._sqlite_file)
        if identity != self._sqlite_identity:
            what = "deleted or moved" if identity is None else "replaced"
            self._damage = (
                f"the SQLite file {self._sqlite_file} was {what} while the server ran; every "
                "request is refused (a write would be lost): restore it and restart the server"
            )
            raise DatabaseDamaged(self._damage)

    # ------------------------------------------------------------------------- admin token

    def admin_token_hash(self) -> TokenHash | None:
        with self._session(write=False) as session:
            row = session.get(ServerSetting, ADMIN_TOKEN_KEY)
            return TokenHash.from_dict(row.value) if row else None

    def ensure_admin_token_hash(self, candidate: TokenHash, now: datetime) -> TokenHash:
        """Store ``candidate`` unless a hash is stored already; return the one in force."""
        try:
            with self._session(write=True) as session:
                row = session.get(ServerSetting, ADMIN_TOKEN_KEY)
                if row is not None:
                    return TokenHash.from_dict(row.value)
                session.add(
                    ServerSetting(key=ADMIN_TOKEN_KEY, value=candidate.as_dict(), created_at=now)
                )
                return candidate
        except IntegrityError:  # another server stored one first
            stored = self.admin_token_hash()
            assert stored is not None
            return stored

    # ------------------------------------------------------------------------- node tokens

    def add_node_token(
        self,
        token_id: str,
        node: str,
        hashed: TokenHash,
        now: datetime,
        role: Role = Role.NODE,
    ) -> None:
        """Keep an issued token's hash; ``node`` is the node's name, or a viewer's label."""
        with self._session(write=True) as session:
            session.add(
                NodeTokenRow(
                    token_id=token_id,
                    node=node,
                    salt=hashed.salt_hex,
                    hash=hashed.hash_hex,
                    role=role.value,
                    created_at=now,
                    revoked_at=None,
                )
            )

    def node_token(self, token_id: str) -> NodeTokenRecord | None:
        with self._session(write=False) as session:
            row = session.get(NodeTokenRow, token_id)
            return _token_record(row) if row else None

    def rehash_node_token(self, token_id: str, stored: TokenHash, new: TokenHash) -> bool:
        """Store ``new`` in place of ``stored`` (a token's old slow hash, just verified):
        whether it was replaced. Another server that replaced it first wins; nothing else of
        the token (its revocation above all) is touched."""
        query = (
            update(NodeTokenRow)
            .where(
                NodeTokenRow.token_id == token_id,
                NodeTokenRow.salt == stored.salt_hex,
                NodeTokenRow.hash == stored.hash_hex,
            )
            .values(salt=new.salt_hex, hash=new.hash_hex)
        )
        with self._session(write=True) as session:
            return bool(getattr(session.execute(query), "rowcount", 0) == 1)

    def node_tokens(self, node: str | None = None) -> list[NodeTokenRecord]:
        query = select(NodeTokenRow).order_by(NodeTokenRow.created_at, NodeTokenRow.token_id)
        if node is not None:
            query = query.where(NodeTokenRow.node == node)
        with self._session(write=False) as session:
            return [_token_record(row) for row in session.scalars(query)]

    def revoke_node_token(self, token_id: str, now: datetime) -> NodeTokenRecord | None:
        with self._session(write=True) as session:
            row = session.get(NodeTokenRow, token_id)
            if row is None:
                return None
            changed = row.revoked_at is None
            if changed:
                row.revoked_at = now
                self._notify(session)
            record = _token_record(row)
        if changed:
            self._changed()
        return record

    # ------------------------------------------------------------------------------- nodes

    def upsert_node(self, node: Node, now: datetime) -> tuple[NodeRecord, bool]:
        """Register or replace a node's inventory; a status in the document counts as a report
        (it sets the heartbeat). Returns the record and whether it was created."""
        return self.upsert_nodes([node], now)[0]

    def upsert_nodes(self, nodes: list[Node], now: datetime) -> list[tuple[NodeRecord, bool]]:
        """``upsert_node`` for many nodes in one transaction: all of them or none."""
        for attempt in range(2):
            try:
                with self._session(write=True) as session:
                    rows = [_upsert_row(session, node, now) for node in nodes]
                    session.flush()
                    records = [(_node_record(row), created) for row, created in rows]
                self._known_nodes.update(node.name for node in nodes)  # see buffer_heartbeats
                return records
            except IntegrityError:  # registered concurrently: the second try updates them
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def node(self, name: str) -> NodeRecord | None:
        self.flush_heartbeats()
        with self._session(write=False) as session:
            row = session.get(NodeRow, name)
            return _node_record(row) if row else None

    def nodes(
        self, limit: int | None = None, offset: int = 0, after: str | None = None
    ) -> list[NodeRecord]:
        """Nodes by name: every one, or a page (``offset`` of them skipped after ``after``)."""
        query = select(NodeRow).order_by(NodeRow.name).offset(offset)
        if after is not None:
            query = query.where(NodeRow.name > after)
        if limit is not None:
            query = query.limit(limit)
        self.flush_heartbeats()
        with self._session(write=False) as session:
            return [_node_record(row) for row in session.scalars(query)]

    def nodes_named(self, names: Collection[str]) -> list[NodeRecord]:
        """The registered nodes among ``names``, by name (the others are not registered)."""
        wanted = sorted(set(names))
        self.flush_heartbeats()
        records: list[NodeRecord] = []
        with self._session(write=False) as session:
            for start in range(0, len(wanted), NAMES_PER_QUERY):
                chunk = wanted[start : start + NAMES_PER_QUERY]
                query = select(NodeRow).where(NodeRow.name.in_(chunk)).order_by(NodeRow.name)
                records.extend(_node_record(row) for row in session.scalars(query))
        return records

    def node_pulses(self) -> list[NodePulse]:
        """Every node's reported health, throttle and last sign of life: a few columns, no
        document parsed (10,000 nodes' documents cost seconds of CPU to read and validate)."""
        columns = (_NODES.c.name, _NODES.c.healthy, _NODES.c.throttle_ratio)
        times = (_NODES.c.last_heartbeat, _NODES.c.created_at)
        self.flush_heartbeats()
        with self._session(write=False) as session:
            rows = session.execute(select(*columns, *times).order_by(_NODES.c.name)).all()
        return [
            NodePulse(name, NodeBasis(bool(healthy), float(throttle)), heard, created)
            for name, healthy, throttle, heard, created in rows
        ]

    def node_count(self) -> int:
        with self._session(write=False) as session:
            return int(session.scalar(select(func.count()).select_from(NodeRow)) or 0)

    def quiet_count(self, cutoff: datetime) -> tuple[int, int]:
        """(nodes not heard from since ``cutoff``, all nodes); registration counts as heard."""
        heard = func.coalesce(NodeRow.last_heartbeat, NodeRow.created_at)
        self.flush_heartbeats()
        with self._session(write=False) as session:
            row = session.execute(
                select(func.count(case((heard < cutoff, 1))), func.count()).select_from(NodeRow)
            ).one()
        return int(row[0]), int(row[1])

    def report_status(self, name: str, status: NodeStatus, now: datetime) -> NodeRecord | None:
        """A heartbeat, read back: one UPDATE ... RETURNING, with the documents built before and
        after the transaction, so that the write lock is short.

        Committed before the agent's answer, so a killed server loses no acknowledged heartbeat.
        On PostgreSQL the commit does not wait for its WAL flush: a crash of PostgreSQL itself
        may lose the last ~0.6 s (3 x ``wal_writer_delay``) of heartbeats, never part of one,
        and the next heartbeat replaces them anyway; plans and tokens keep synchronous commits."""
        values = _status_values(status, now)
        if self._heartbeats is not None:
            self._heartbeats.discard(name)  # older than this one, which is written now
        with self._heartbeat_session() as session:
            found = session.execute(REPORT_STATUS, {"node_name": name, **values}).first()
        if found is None:
            return None
        self._known_nodes.add(name)
        document, created_at = found
        node = Node.model_validate({**document, "status": values["status"]})
        return NodeRecord(node=node, created_at=created_at, updated_at=now, last_heartbeat=now)

    def record_heartbeat(self, name: str, status: NodeStatus, now: datetime) -> bool:
        """A heartbeat without reading the node back: whether the node is registered.

        With ``buffer_heartbeats`` on, it is held in memory and written with the next batch (a
        node is looked up once, then remembered); otherwise written before this returns."""
        values = _status_values(status, now)
        if self._heartbeats is not None:
            if not self.is_node(name):
                return False
            self._heartbeats.add(name, values)
            return True
        with self._heartbeat_session() as session:
            result = session.execute(RECORD_HEARTBEAT, {"node_name": name, **values})
            return bool(getattr(result, "rowcount", 0) == 1)

    def buffer_known_heartbeat(self, name: str, status: NodeStatus, now: datetime) -> bool:
        """``record_heartbeat`` when it needs no I/O (buffering on, the node known): whether it
        was taken. Cheap enough for the event loop; otherwise call ``record_heartbeat``."""
        if self._heartbeats is None or name not in self._known_nodes:
            return False
        self._heartbeats.add(name, _status_values(status, now))
        return True

    def buffer_heartbeats(self, interval_s: float) -> None:
        """Write ``record_heartbeat``'s heartbeats in batches every ``interval_s`` (see
        ``heartbeats.py``: a killed server loses at most that long); 0 writes each at once."""
        self._heartbeats = (
            HeartbeatBuffer(self._write_heartbeats, interval_s) if interval_s > 0 else None
        )
        if self._heartbeats is not None:
            # Every node registered now is known from the start (and those this server
            # registers, as it does): otherwise each node's first heartbeat to this server (after
            # every restart, 10,000 of them at once) waited for a lookup in a worker thread.
            self._read_node_names()

    def _read_node_names(self) -> None:
        with self._session(write=False) as session:
            self._known_nodes.update(session.scalars(select(NodeRow.name)))
        self._names_read_at = time.monotonic()

    def flush_heartbeats(self) -> None:
        """Write the heartbeats held in memory now (before reading what they change)."""
        if self._heartbeats is not None and len(self._heartbeats):
            self._heartbeats.flush()

    def is_node(self, name: str) -> bool:
        """Whether ``name`` is registered: from memory once seen (forgotten when this server
        deletes it, or a heartbeat batch finds it gone), else every node's name is read again
        (at most once per ``NAMES_REREAD_S``: nodes another server registered arrive by the
        thousand, and so do their first heartbeats), else one indexed read."""
        if name in self._known_nodes:
            return True
        if time.monotonic() - self._names_read_at > NAMES_REREAD_S:
            self._read_node_names()
            return name in self._known_nodes
        with self._session(write=False) as session:
            found = session.scalar(select(NodeRow.name).where(NodeRow.name == name)) is not None
        if found:
            self._known_nodes.add(name)
        return found

    def _write_heartbeats(self, batch: list[dict[str, Any]]) -> None:
        """One transaction for a batch; a node deleted meanwhile (by any server) is forgotten,
        so that its next heartbeat is refused."""
        names = [values["node_name"] for values in batch]
        rows = [{**values, "heard_at": values["last_heartbeat"]} for values in batch]
        with self._heartbeat_session() as session:
            written = session.connection().execute(BATCH_HEARTBEAT, rows).rowcount
            if written != len(batch):  # some vanished, or were written newer by another way
                query = select(NodeRow.name).where(NodeRow.name.in_(names))
                self._known_nodes.difference_update(set(names) - set(session.scalars(query)))

    @contextmanager
    def _heartbeat_session(self) -> Iterator[Session]:
        with self._session(write=True) as session:
            if self.backend == "postgresql":  # see report_status
                session.execute(text("SET LOCAL synchronous_commit = off"))
            yield session

    def delete_node(self, name: str) -> bool:
        self._known_nodes.discard(name)  # its next heartbeat looks it up again: 404
        if self._heartbeats is not None:
            self._heartbeats.discard(name)
        with self._session(write=True) as session:
            row = session.get(NodeRow, name)
            if row is None:
                return False
            session.delete(row)
            session.execute(delete(NodeStateRow).where(NodeStateRow.node == name))
            return True

    # ------------------------------------------------------------------------------ probes

    def add_probes(self, submitter: str, probes: LatencyProbes, now: datetime, keep: int) -> int:
        """Store (or replace, by name) a probes document; keep the newest ``keep`` per submitter.
        Returns how many documents the submitter has stored."""
        document = probes.to_yaml_dict()
        with self._session(write=True) as session:
            existing = session.scalar(
                select(ProbeRow).where(
                    ProbeRow.submitter == submitter, ProbeRow.name == probes.metadata.name
                )
            )
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(
                ProbeRow(
                    submitter=submitter,
                    name=probes.metadata.name,
                    received_at=now,
                    samples=len(probes.spec.samples),
                    document=document,
                )
            )
            session.flush()
            ids = list(
                session.scalars(
                    select(ProbeRow.id)
                    .where(ProbeRow.submitter == submitter)
                    .order_by(ProbeRow.received_at.desc(), ProbeRow.id.desc())
                )
            )
            if len(ids) > keep:
                session.execute(delete(ProbeRow).where(ProbeRow.id.in_(ids[keep:])))
            return min(len(ids), keep)

    def probes(self) -> list[LatencyProbes]:
        with self._session(write=False) as session:
            documents = session.scalars(select(ProbeRow.document).order_by(ProbeRow.id)).all()
        return [LatencyProbes.model_validate(document) for document in documents]

    # ------------------------------------------------------------------------------- plans

    def latest_generation(self) -> int:
        with self._session(write=False) as session:
            return int(session.scalar(select(func.max(PlanRow.generation))) or 0)

    def latest_plan(self) -> PlanRecord | None:
        with self._session(write=False) as session:
            row = session.scalar(select(PlanRow).order_by(PlanRow.generation.desc()).limit(1))
            return _plan_record(row) if row else None

    def plan(self, generation: int) -> PlanRecord | None:
        with self._session(write=False) as session:
            row = session.get(PlanRow, generation)
            return _plan_record(row) if row else None

    def plans(self, limit: int, before: int | None = None) -> list[PlanSummary]:
        """Newest first; ``before`` pages backwards (generations lower than it)."""
        query = select(PlanRow).order_by(PlanRow.generation.desc()).limit(limit)
        if before is not None:
            query = query.where(PlanRow.generation < before)
        with self._session(write=False) as session:
            return [_plan_summary(row) for row in session.scalars(query)]

    def add_plan(self, new: NewPlan, now: datetime) -> PlanSummary:
        """Insert ``new`` as generation ``base_generation + 1``; ``GenerationConflict`` when that
        generation exists already (someone else wrote a plan since ``base_generation``)."""
        generation = new.base_generation + 1
        plan = new.plan
        if plan.metadata.generation != generation:
            raise ValueError(f"plan generation {plan.metadata.generation} != {generation}")
        status = plan.status
        row = PlanRow(
            generation=generation,
            name=plan.metadata.name,
            created_at=now,
            trigger=new.trigger,
            reasons=list(new.reasons),
            document=plan.to_yaml_dict(),
            inputs=new.inputs,
            options=new.options,
            basis={name: basis.as_dict() for name, basis in new.basis.items()},
            explanation=new.explanation,
            replicas=len(plan.spec.assignments),
            unplaced=len(status.unplaced) if status else 0,
            compile_s=new.compile_s,
            solve_s=new.solve_s,
        )
        try:
            with self._session(write=True) as session:
                latest = int(session.scalar(select(func.max(PlanRow.generation))) or 0)
                if latest != new.base_generation:
                    raise GenerationConflict(new.base_generation, latest)
                session.add(row)
                session.flush()  # the primary key decides between concurrent writers here
                session.add_all(
                    PlanAssignmentRow(
                        generation=generation,
                        position=position,
                        node=assignment.node,
                        assignment=assignment.to_yaml_dict(),
                    )
                    for position, assignment in enumerate(plan.spec.assignments)
                )
                self._notify(session)
                summary = _plan_summary(row)
        except IntegrityError as error:
            current = self.latest_generation()
            raise GenerationConflict(new.base_generation, current) from error
        self._changed()
        return summary

    def assignments_for(self, node: str) -> NodeAssignments:
        """The latest plan's assignments on ``node`` (in plan order) and that plan's generation."""
        with self._session(write=False) as session:
            latest = _latest_plan_key(session)
            if latest is None:
                return NodeAssignments(generation=None, plan_name=None)
            generation, name = latest
            documents = session.scalars(
                select(PlanAssignmentRow.assignment)
                .where(PlanAssignmentRow.generation == generation, PlanAssignmentRow.node == node)
                .order_by(PlanAssignmentRow.position)
            ).all()
        return NodeAssignments(generation=generation, plan_name=name, assignments=list(documents))

    def latest_assignments(self) -> PlanAssignmentIndex:
        """The latest plan's assignments by node (each node's in plan order)."""
        with self._session(write=False) as session:
            latest = _latest_plan_key(session)
            if latest is None:
                return PlanAssignmentIndex(generation=None, plan_name=None)
            generation, name = latest
            rows = session.execute(
                select(PlanAssignmentRow.node, PlanAssignmentRow.assignment)
                .where(PlanAssignmentRow.generation == generation)
                .order_by(PlanAssignmentRow.position)
            ).all()
            # Only the standbys of the plan's document are read (a JSON path), not all of it.
            standbys = session.scalar(
                select(PlanRow.document["spec"]["prewarm"]).where(PlanRow.generation == generation)
            )
        pairs = [(n, a) for n, a in rows]
        return PlanAssignmentIndex.build(generation, name, pairs, standbys or [])

    # ------------------------------------------------------------- shared between servers

    def sync_marks(self) -> tuple[int, int]:
        """(latest plan generation, revoked tokens): what each server compares every second to
        see another server's new plan or revocation."""
        with self._session(write=False) as session:
            generation = session.scalar(select(func.max(PlanRow.generation)))
            revoked = session.scalar(
                select(func.count()).where(NodeTokenRow.revoked_at.is_not(None))
            )
        return int(generation or 0), int(revoked or 0)

    def revoked_token_ids(self) -> set[str]:
        query = select(NodeTokenRow.token_id).where(NodeTokenRow.revoked_at.is_not(None))
        with self._session(write=False) as session:
            return set(session.scalars(query))

    def lease_shared_tokens(
        self, key: str, want: int, rate_per_s: float, burst: float
    ) -> tuple[int, float]:
        """Up to ``want`` tokens from ``key``'s bucket in the database (PostgreSQL only): (how
        many were handed out, the seconds until one is there when none was)."""
        values = {"key": key, "want": want, "rate": rate_per_s, "burst": burst}
        with self._session(write=True) as session:
            tokens, granted = session.execute(LEASE_SHARED_TOKENS, values).one()
        return int(granted), 0.0 if granted else (1.0 - float(tokens)) / rate_per_s

    @contextmanager
    def exclusive(self, lock_id: int) -> Iterator[bool]:
        """Whether this server holds ``lock_id`` among all servers of the database, held for the
        block (a PostgreSQL advisory lock; SQLite serves one process, which always holds it)."""
        if self.backend != "postgresql":
            yield True
            return
        with self.engine.connect() as connection:
            held = bool(
                connection.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id})
            )
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                    connection.commit()

    def _changed(self) -> None:
        for hook in self.change_hooks:
            hook()

    def _notify(self, session: Session) -> None:
        if self.backend == "postgresql":  # delivered at commit, to every listening server
            session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})

    # ------------------------------------------------------------------------------ states

    def put_state(
        self, node: str, observed_generation: int | None, report: dict[str, Any], now: datetime
    ) -> StateRecord:
        with self._session(write=True) as session:
            row = session.get(NodeStateRow, node)
            if row is None:
                row = NodeStateRow(node=node)
                session.add(row)
            row.observed_generation = observed_generation
            row.report = report
            row.reported_at = now
            session.flush()
            return _state_record(row)

    def state(self, node: str) -> StateRecord | None:
        with self._session(write=False) as session:
            row = session.get(NodeStateRow, node)
            return _state_record(row) if row else None

    # ------------------------------------------------------------------------ observations

    def add_observations(
        self,
        node: str,
        windows: list[ObservationWindow],
        now: datetime,
        keep_per_node: int,
        max_age_s: float,
    ) -> int:
        """Store ``node``'s windows, then apply retention: windows received more than
        ``max_age_s`` ago go (every node's), and the node keeps its newest ``keep_per_node``
        (by window end). Returns how many windows the node has stored."""
        cutoff = now - timedelta(seconds=max_age_s)
        with self._session(write=True) as session:
            session.add_all(
                ObservationRow(
                    node=node,
                    workload=w.workload,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    received_at=now,
                    window=w.to_yaml_dict(),
                )
                for w in windows
            )
            session.flush()
            session.execute(delete(ObservationRow).where(ObservationRow.received_at < cutoff))
            stale = select(ObservationRow.id).where(ObservationRow.node == node)
            stale = stale.order_by(ObservationRow.end_s.desc(), ObservationRow.id.desc())
            ids = list(session.scalars(stale.offset(keep_per_node)))
            if ids:
                session.execute(delete(ObservationRow).where(ObservationRow.id.in_(ids)))
            count = select(func.count()).select_from(ObservationRow)
            return int(session.scalar(count.where(ObservationRow.node == node)) or 0)

    def observations(
        self, workload: str | None = None, node: str | None = None, limit: int = 1000
    ) -> list[ObservationRecord]:
        """The newest ``limit`` windows (by end), oldest first, optionally of one workload/node."""
        query = select(ObservationRow).order_by(
            ObservationRow.end_s.desc(), ObservationRow.id.desc()
        )
        if workload is not None:
            query = query.where(ObservationRow.workload == workload)
        if node is not None:
            query = query.where(ObservationRow.node == node)
        with self._session(write=False) as session:
            rows = list(session.scalars(query.limit(limit)))
        return [
            ObservationRecord(row.id, row.received_at, ObservationWindow.model_validate(row.window))
            for row in reversed(rows)
        ]

    # ------------------------------------------------------------------------ calibrations

    def add_calibration(self, document: dict[str, Any], now: datetime, keep: int) -> int:
        with self._session(write=True) as session:
            row = CalibrationRow(computed_at=now, document=document)
            session.add(row)
            session.flush()
            old = select(CalibrationRow.id).order_by(CalibrationRow.id.desc()).offset(keep)
            ids = list(session.scalars(old))
            if ids:
                session.execute(delete(CalibrationRow).where(CalibrationRow.id.in_(ids)))
            return row.id

    def latest_calibration(self) -> CalibrationRecord | None:
        with self._session(write=False) as session:
            row = session.scalar(select(CalibrationRow).order_by(CalibrationRow.id.desc()).limit(1))
            return CalibrationRecord(row.id, row.computed_at, dict(row.document)) if row else None


def sqlite_file_of(engine: Engine) -> str | None:
    """The absolute path of an SQLite engine's file; None for PostgreSQL."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    return os.path.abspath(os.path.expanduser(engine.url.database))


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``: a new inode means the file was replaced."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _upsert_row(session: Session, node: Node, now: datetime) -> tuple[NodeRow, bool]:
    document = node.model_copy(update={"status": None}).to_yaml_dict()
    row = session.get(NodeRow, node.name)
    created = row is None
    if row is None:
        row = NodeRow(
            name=node.name,
            document=document,
            status=None,
            healthy=True,
            throttle_ratio=0.0,
            last_heartbeat=None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    else:
        row.document = document
        row.updated_at = now
    if node.status is not None:
        _apply_status(row, node.status, now)
    return row, created


# Built once, on the table rather than the mapped class: the ORM's bulk-update bookkeeping (session
# synchronization, statement coercion) cost more than the UPDATE itself per heartbeat.
_NODES = cast(Table, NodeRow.__table__)
RECORD_HEARTBEAT = (
    update(_NODES)
    .where(_NODES.c.name == bindparam("node_name"))
    .values({column: bindparam(column) for column in _STATUS_COLUMNS})
)
REPORT_STATUS = RECORD_HEARTBEAT.returning(_NODES.c.document, _NODES.c.created_at)
# A batch of buffered heartbeats (executemany), never over a newer one written directly.
BATCH_HEARTBEAT = RECORD_HEARTBEAT.where(
    or_(
        _NODES.c.last_heartbeat.is_(None),
        _NODES.c.last_heartbeat <= bindparam("heard_at", type_=_NODES.c.last_heartbeat.type),
    )
)


def _status_values(status: NodeStatus, now: datetime) -> dict[str, Any]:
    # The server's clock, not the agent's: a node with a wrong clock must not look alive forever.
    stamped = status.model_copy(update={"last_heartbeat": now})
    return {
        "status": stamped.to_yaml_dict(),
        "healthy": stamped.healthy,
        "throttle_ratio": throttle_ratio_of(stamped),
        "last_heartbeat": now,
        "updated_at": now,
    }


def _apply_status(row: NodeRow, status: NodeStatus, now: datetime) -> None:
    for key, value in _status_values(status, now).items():
        setattr(row, key, value)


def throttle_ratio_of(status: NodeStatus | None) -> float:
    """The derate the planner books for a node with this status (see ``Node.throttle_ratio``)."""
    thermal = status.thermal if status else None
    if thermal is None:
        return 0.0
    if thermal.forecast_throttle_ratio is not None:
        return thermal.forecast_throttle_ratio
    return thermal.throttle_ratio


def _node_record(row: NodeRow) -> NodeRecord:
    document = dict(row.document)
    if row.status is not None:
        document["status"] = row.status
    return NodeRecord(
        node=Node.model_validate(document),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_heartbeat=row.last_heartbeat,
    )


def _token_record(row: NodeTokenRow) -> NodeTokenRecord:
    return NodeTokenRecord(
        token_id=row.token_id,
        node=row.node,
        hash=TokenHash(salt_hex=row.salt, hash_hex=row.hash),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        role=Role(row.role),
    )


def _plan_summary(row: PlanRow) -> PlanSummary:
    return PlanSummary(
        generation=row.generation,
        name=row.name,
        created_at=row.created_at,
        trigger=row.trigger,
        reasons=[str(r) for r in row.reasons],
        replicas=row.replicas,
        unplaced=row.unplaced,
        compile_s=row.compile_s,
        solve_s=row.solve_s,
    )


def _plan_record(row: PlanRow) -> PlanRecord:
    return PlanRecord(
        summary=_plan_summary(row),
        plan=PlacementPlan.model_validate(row.document),
        inputs=list(row.inputs),
        options=dict(row.options),
        basis={name: NodeBasis.from_dict(value) for name, value in row.basis.items()},
        explanation=list(row.explanation),
    )


def _state_record(row: NodeStateRow) -> StateRecord:
    return StateRecord(
        node=row.node,
        observed_generation=row.observed_generation,
        report=dict(row.report),
        reported_at=row.reported_at,
    )


def _latest_plan_key(session: Session) -> tuple[int, str] | None:
    """The latest plan's (generation, name), or None before the first plan."""
    row = session.execute(
        select(PlanRow.generation, PlanRow.name).order_by(PlanRow.generation.desc()).limit(1)
    ).first()
    return None if row is None else (row[0], row[1])
