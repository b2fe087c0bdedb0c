"""Token buckets shared by every server on one PostgreSQL (rate limits with ``--workers N``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rebuilt from nothing after a crash is fine (full buckets), so PostgreSQL skips its WAL.
    prefixes = ["UNLOGGED"] if op.get_context().dialect.name == "postgresql" else []
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at_s", sa.Float(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        prefixes=prefixes,
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
