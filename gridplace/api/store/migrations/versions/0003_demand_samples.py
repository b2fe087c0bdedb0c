"""Demand history: requests per traffic source and window, per workload.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "demand_samples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("source", sa.String(63), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
    )
    op.create_index(
        "ix_demand_samples_workload_start", "demand_samples", ["workload", "window_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_demand_samples_workload_start", "demand_samples")
    op.drop_table("demand_samples")
