"""Opening the database: the engine for a URL, SQLite's pragmas, and migrating to the head.

SQLite (the default) is a file in WAL mode: readers never wait for the writer. Its transactions
that write start with ``BEGIN IMMEDIATE`` (sessions made with ``write=True``), so two writers queue
on the busy timeout instead of failing when a read lock cannot be upgraded. PostgreSQL needs none
of this; its migrations take an advisory lock so that two servers starting at once do not both
run them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from gridplace.api.store.errors import DatabaseDamaged, DatabaseUnavailable, UnsupportedDatabase

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "gridplace_write"
# Any constant works; it only has to be the same for every gridplace server on one database.
MIGRATION_LOCK_ID = 0x67726964  # "grid"
MIGRATIONS = "gridplace.api.store:migrations"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise UnsupportedDatabase(f"not a database URL: {url!r}") from error
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UnsupportedDatabase(
            f"database {backend!r} is not supported; use sqlite:///FILE or postgresql+psycopg://..."
        )
    if parsed.drivername == "postgresql":  # no driver named: psycopg 3 is the one installed
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        raise UnsupportedDatabase(
            "PostgreSQL is spoken through psycopg 3: write the URL as postgresql+psycopg://..."
        )
    return parsed


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL), with the settings described above."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise UnsupportedDatabase(
                "an in-memory SQLite database cannot be shared by the server's threads; "
                "give a file: sqlite:///gridplace.db"
            )
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise UnsupportedDatabase(f"directory {parent} of the SQLite file does not exist")
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own would be DEFERRED only).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config(connection: Connection) -> Config:
    """Alembic's Config built in code: the packaged scripts, and the connection to run on."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (an empty database gets every table)."""
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK_ID}
                )
            command.upgrade(alembic_config(connection), revision)
    except OperationalError as error:
        raise DatabaseUnavailable(f"cannot migrate the database: {error.orig}") from error
    except DatabaseError as error:  # SQLite: "file is not a database", a damaged header
        raise DatabaseDamaged(
            f"cannot open the database {engine.url.database or engine.url.host} ({error.orig}): "
            "it is damaged or not a gridplace database; restore it from a backup"
        ) from error


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def scratch_schema(base_url: str, prefix: str = "scratch") -> Iterator[str]:
    """A URL into a fresh PostgreSQL schema of ``base_url``'s database, dropped on exit: tests
    and benchmarks share one server without seeing each other's tables."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
