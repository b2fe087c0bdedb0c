"""Alembic's environment: run the revisions on the connection ``store.migrate`` passes in.

There is no alembic.ini; the Config is built in code (``gridplace.api.store.engine.migrate``),
which puts an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from gridplace.api.store.schema import Base


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("gridplace migrations run through gridplace.api.store.migrate()")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,  # for `alembic revision --autogenerate` during development
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
