"""sticky escalations: a conversation with a human stays with the human; flagged messages

Reviewed by hand. conversations.with_human_since is set when a turn escalates; while it is
set, later messages are held for the human and no agent runs. messages.flagged marks a
message the guardrails flagged as an injection, so no later window carries it. Existing
conversations whose latest turn escalated are with a human from that turn's end.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("with_human_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("messages", sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        """
        UPDATE conversations c SET with_human_since = last.finished_at
        FROM (SELECT DISTINCT ON (conversation_id) conversation_id, outcome, finished_at
              FROM turns WHERE state = 'done' ORDER BY conversation_id, seq DESC) AS last
        WHERE c.id = last.conversation_id AND last.outcome = 'escalated'
        """
    )


def downgrade() -> None:
    op.drop_column("messages", "flagged")
    op.drop_column("conversations", "with_human_since")
