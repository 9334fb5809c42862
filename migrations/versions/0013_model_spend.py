"""model spend: the money spent on model calls per UTC day, across every process

Reviewed by hand. The daily budget (OPENAI_DAILY_BUDGET_USD) was counted in each worker
process's memory, so N processes could spend N times the budget (security review F19).
Each model call now adds its cost to the day's row, and every process checks the one total.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 07:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_spend",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spent_usd", sa.Numeric(precision=16, scale=8), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("model_spend")
