"""helpdesk events: the webhooks of Zendesk, Freshdesk and Intercom, taken before they are worked

Reviewed by hand.

- helpdesk_events: one row per webhook a connected helpdesk sent (docs/helpdesks.md). The
  route verifies it, stores what it says and answers 2xx at once; a task on the delivery
  queue then looks the customer up in the helpdesk and takes the ticket or message. Unique on
  (helpdesk, dedupe): a retried webhook is stored once. ``next_attempt_at`` is the lease of
  the attempt working it, then when to try again; the sweeper re-enqueues a row left behind.
  ``event`` (what the customer wrote) is cleared once the event is done; the row is kept a
  day for de-duplication, like seen_deliveries.
- conversations.human_answered_at: a human answered in the helpdesk itself. A bot reply to a
  customer message older than that is not sent.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 11:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "helpdesk_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("helpdesk", sa.String(64), nullable=False),
        sa.Column("dedupe", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("helpdesk", "dedupe", name="uq_helpdesk_events_dedupe"),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], ondelete="CASCADE", name="fk_helpdesk_events_conversation_id"
        ),
        sa.CheckConstraint("state IN ('pending', 'done', 'failed')", name="ck_helpdesk_events_state"),
        sa.CheckConstraint("kind IN ('inbound', 'human')", name="ck_helpdesk_events_kind"),
    )
    op.create_index("ix_helpdesk_events_pending", "helpdesk_events", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"))  # fmt: skip
    op.create_index("ix_helpdesk_events_conversation_id", "helpdesk_events", ["conversation_id"])
    op.add_column("conversations", sa.Column("human_answered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("conversations", "human_answered_at")
    op.drop_table("helpdesk_events")
