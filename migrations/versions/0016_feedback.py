"""feedback: customers' satisfaction ratings (CSAT), from the helpdesks and the API

Reviewed by hand.

- feedback: one rating per conversation and way it came (``via``: api, zendesk, intercom…);
  a later rating of the same conversation the same way replaces it (a customer may change
  their mind while the helpdesk lets them). ``handled_by`` is who answered the conversation:
  the bot alone, or a human (it was escalated, or a human answered in the helpdesk). The
  comment is stored redacted, like every stored text.
- helpdesk_events.kind may be ``rating``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 12:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("handled_by", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], ondelete="CASCADE", name="fk_feedback_conversation_id"
        ),
        sa.UniqueConstraint("conversation_id", "via", name="uq_feedback_conversation_via"),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name="ck_feedback_score"),
        sa.CheckConstraint("handled_by IN ('bot', 'human')", name="ck_feedback_handled_by"),
    )
    op.drop_constraint("ck_helpdesk_events_kind", "helpdesk_events", type_="check")
    op.create_check_constraint("ck_helpdesk_events_kind", "helpdesk_events", "kind IN ('inbound', 'human', 'rating')")


def downgrade() -> None:
    op.execute("DELETE FROM helpdesk_events WHERE kind = 'rating'")
    op.drop_constraint("ck_helpdesk_events_kind", "helpdesk_events", type_="check")
    op.create_check_constraint("ck_helpdesk_events_kind", "helpdesk_events", "kind IN ('inbound', 'human')")
    op.drop_table("feedback")
