"""api keys: callers of the API with a role (and a helpdesk key's source), stored as digests

Reviewed by hand: the key itself is never stored, only its SHA-256 digest (unique, the
lookup on every request) and a short prefix to recognise it in `switchboard keys list`.
Revoked keys stay as rows for the record.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("digest", name="uq_api_keys_digest"),
        sa.CheckConstraint("role IN ('helpdesk', 'agent', 'admin')", name="ck_api_keys_role"),
        sa.CheckConstraint("(role = 'helpdesk') = (source IS NOT NULL)", name="ck_api_keys_source"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
