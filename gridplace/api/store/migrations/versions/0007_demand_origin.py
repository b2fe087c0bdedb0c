"""Demand samples say where they came from: a gateway's count, or a node's observation window.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("demand_samples") as table:
        table.add_column(
            sa.Column("origin", sa.String(16), nullable=False, server_default="gateway")
        )
        table.add_column(sa.Column("node", sa.String(63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("demand_samples") as table:
        table.drop_column("node")
        table.drop_column("origin")
