"""sandbox tenants: each sandbox customer belongs to one company

Reviewed by hand. Customer identity is (tenant, customer id): the sandbox tools reach a
customer only from a ticket of the same tenant (a source's tenant is set in
SWITCHBOARD_SOURCES and defaults to the source's own name). Existing customers are the
demo company's, "demo", which `switchboard run` and the evals give their sources.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sandbox_customers",
        sa.Column("tenant", sa.String(64), nullable=False, server_default="demo"),
    )


def downgrade() -> None:
    op.drop_column("sandbox_customers", "tenant")
