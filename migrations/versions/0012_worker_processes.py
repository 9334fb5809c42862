"""worker processes: which warm worker processes consume which queues

Reviewed by hand. Each worker process (prefork children included) writes its row once its
brain is loaded and refreshes it while it lives; /readyz says ready only when every queue
has a warm process seen in the last seconds. A process that stops cleanly deletes its row;
one that was killed goes stale and stops counting.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_processes",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("warm_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("host", "pid"),
    )


def downgrade() -> None:
    op.drop_table("worker_processes")
