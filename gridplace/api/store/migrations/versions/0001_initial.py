"""Initial store: server settings, nodes, node tokens, plans and their per-node assignments.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "server_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", _json(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("document", _json(), nullable=False),
        sa.Column("status", _json(), nullable=True),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("last_heartbeat", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
    )
    op.create_table(
        "node_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("revoked_at", _when(), nullable=True),
    )
    op.create_index("ix_node_tokens_node", "node_tokens", ["node"])
    op.create_table(
        "plans",
        sa.Column("generation", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("options", _json(), nullable=False),
        sa.Column("basis", _json(), nullable=False),
        sa.Column("explanation", _json(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("unplaced", sa.Integer(), nullable=False),
        sa.Column("compile_s", sa.Float(), nullable=False),
        sa.Column("solve_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "plan_assignments",
        sa.Column("generation", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("assignment", _json(), nullable=False),
    )
    op.create_index("ix_plan_assignments_node", "plan_assignments", ["node", "generation"])


def downgrade() -> None:
    op.drop_index("ix_plan_assignments_node", "plan_assignments")
    op.drop_table("plan_assignments")
    op.drop_table("plans")
    op.drop_index("ix_node_tokens_node", "node_tokens")
    op.drop_table("node_tokens")
    op.drop_table("nodes")
    op.drop_table("server_settings")
