"""Token roles: an issued token is a node's or a viewer's (read-only: CI runners, dashboards).

Tokens issued before this revision are node tokens. Only ``node_tokens`` changes, so this
revision commutes with any that touch other tables.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
# 0003 (observations) is built beside this one; whichever merges second chains onto the other.
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "node_tokens", sa.Column("role", sa.String(16), nullable=False, server_default="node")
    )


def downgrade() -> None:
    with op.batch_alter_table("node_tokens") as batch:  # SQLite drops a column by copying
        batch.drop_column("role")
