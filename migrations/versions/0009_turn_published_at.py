"""turn published_at: when a turn's agent tasks were on the broker

Reviewed by hand. A running turn without it lost its agent tasks with the orchestrator
that started it; the sweeper publishes them again, with fresh deadlines, instead of
merging the turn as a timeout. Turns that exist already count as published.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE turns SET published_at = coalesce(started_at, created_at) WHERE state <> 'queued'")


def downgrade() -> None:
    op.drop_column("turns", "published_at")
