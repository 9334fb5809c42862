"""seen deliveries: an inbound request taken once, by delivery id or signature

Reviewed by hand. A helpdesk that retries a delivery sends the same X-Switchboard-Delivery
id, and a replayed signed request carries the same signature: either seen before is
answered with what the first request created, and nothing is stored again. Rows are
pruned after a day by the retention job and go with their conversation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_deliveries",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(300), primary_key=True),
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("turn_id", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_seen_deliveries_conversation_id", "seen_deliveries", ["conversation_id"])
    op.create_index("ix_seen_deliveries_seen_at", "seen_deliveries", ["seen_at"])


def downgrade() -> None:
    op.drop_table("seen_deliveries")
