"""turn sequence: the turns of a conversation are numbered, and start in that order

Reviewed by hand. created_at (the transaction's start time) could order a later message
first, or tie; a number taken under the conversation row's lock cannot. Existing turns are
numbered by created_at, then id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("turn_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("turns", sa.Column("seq", sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE turns SET seq = numbered.n
        FROM (SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS n FROM turns)
             AS numbered
        WHERE turns.id = numbered.id
        """
    )
    op.execute(
        """
        UPDATE conversations SET turn_count = counted.n
        FROM (SELECT conversation_id, max(seq) AS n FROM turns GROUP BY conversation_id) AS counted
        WHERE conversations.id = counted.conversation_id
        """
    )
    op.alter_column("turns", "seq", nullable=False)
    op.create_unique_constraint("uq_turns_conversation_seq", "turns", ["conversation_id", "seq"])


def downgrade() -> None:
    op.drop_constraint("uq_turns_conversation_seq", "turns")
    op.drop_column("turns", "seq")
    op.drop_column("conversations", "turn_count")
