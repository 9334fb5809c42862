"""agent starts and turn budgets: an agent's deadline runs from its own start

Reviewed by hand. agent_starts has one row per agent that began work on a turn, with the
deadline it set itself (its start plus its deadline). turns.budget_at is the latest time
an agent that has not started yet may still start: a turn waits for such agents up to its
budget, not merely for the agents' deadlines. Running turns that exist already get a
budget of their current deadline, which is what they had before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("budget_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE turns SET budget_at = deadline_at WHERE state <> 'queued'")
    op.create_table(
        "agent_starts",
        sa.Column("turn_id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("turn_id", "agent"),
    )


def downgrade() -> None:
    op.drop_table("agent_starts")
    op.drop_column("turns", "budget_at")
