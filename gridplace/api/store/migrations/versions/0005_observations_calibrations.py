"""Observation windows posted by agents, and the calibrations computed from them.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("window", _json(), nullable=False),
    )
    op.create_index("ix_observations_node_end", "observations", ["node", "end_s"])
    op.create_index("ix_observations_workload_end", "observations", ["workload", "end_s"])
    op.create_index("ix_observations_received", "observations", ["received_at"])
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("computed_at", _when(), nullable=False),
        sa.Column("document", _json(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calibrations")
    op.drop_index("ix_observations_received", "observations")
    op.drop_index("ix_observations_workload_end", "observations")
    op.drop_index("ix_observations_node_end", "observations")
    op.drop_table("observations")
