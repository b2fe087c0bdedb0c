"""Stored latency probes, agents' reported state, and each node's throttle ratio as a column.

The throttle ratio used to live only inside the status JSON; the change check compares it for
every node on every tick, so it becomes a column, filled from the JSON of the rows already there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _throttle_ratio(status: Any) -> float:
    """The planner's reading of a NodeStatus document: forecast if given, else observed."""
    thermal = status.get("thermal") if isinstance(status, dict) else None
    if not isinstance(thermal, dict):
        return 0.0
    value = thermal.get("forecastThrottleRatio", thermal.get("throttleRatio", 0.0))
    return float(value) if isinstance(value, int | float) else 0.0


def upgrade() -> None:
    op.add_column(
        "nodes", sa.Column("throttle_ratio", sa.Float(), nullable=False, server_default="0")
    )
    nodes = sa.table(
        "nodes",
        sa.column("name", sa.String()),
        sa.column("status", _json()),
        sa.column("throttle_ratio", sa.Float()),
    )
    connection = op.get_bind()
    for name, status in connection.execute(sa.select(nodes.c.name, nodes.c.status)).all():
        ratio = _throttle_ratio(status)
        if ratio:
            connection.execute(
                nodes.update().where(nodes.c.name == name).values(throttle_ratio=ratio)
            )
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("submitter", sa.String(71), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("document", _json(), nullable=False),
    )
    op.create_index("ix_probes_submitter_name", "probes", ["submitter", "name"], unique=True)
    op.create_table(
        "node_states",
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("observed_generation", sa.Integer(), nullable=True),
        sa.Column("report", _json(), nullable=False),
        sa.Column("reported_at", _when(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_states")
    op.drop_index("ix_probes_submitter_name", "probes")
    op.drop_table("probes")
    op.drop_column("nodes", "throttle_ratio")
