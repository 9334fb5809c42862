"""sandbox store: the demo company's customers, billing, orders; tool idempotency; per-case policy

Reviewed by hand after autogenerate: money is NUMERIC(12,2); a payment keeps at most the
last four digits of a card (CHECK); a refund's idempotency key is unique when present, as a
second line of defence behind sandbox_idempotency; children cascade with their customer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 07:08:39.173987
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_customers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "sandbox_idempotency",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "sandbox_policy",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "sandbox_invoices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sandbox_invoices_customer_id"), "sandbox_invoices", ["customer_id"], unique=False)
    op.create_table(
        "sandbox_orders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("placed_on", sa.Date(), nullable=False),
        sa.Column("delivered_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sandbox_orders_customer_id"), "sandbox_orders", ["customer_id"], unique=False)
    op.create_table(
        "sandbox_password_resets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("sent_to", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_sandbox_password_resets_customer_id"), "sandbox_password_resets", ["customer_id"], unique=False
    )
    op.create_table(
        "sandbox_subscriptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("renews_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_sandbox_subscriptions_customer_id"), "sandbox_subscriptions", ["customer_id"], unique=False
    )
    op.create_table(
        "sandbox_payments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("card_last4 ~ '^[0-9]{4}$'", name="ck_sandbox_payments_card_last4"),
        sa.CheckConstraint("amount >= 0", name="ck_sandbox_payments_amount"),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["invoice_id"], ["sandbox_invoices.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sandbox_payments_customer_id"), "sandbox_payments", ["customer_id"], unique=False)
    op.create_index(op.f("ix_sandbox_payments_invoice_id"), "sandbox_payments", ["invoice_id"], unique=False)
    op.create_table(
        "sandbox_refunds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.CheckConstraint("amount > 0", name="ck_sandbox_refunds_amount"),
        sa.ForeignKeyConstraint(["customer_id"], ["sandbox_customers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["payment_id"], ["sandbox_payments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sandbox_refunds_customer_id"), "sandbox_refunds", ["customer_id"], unique=False)
    op.create_index(op.f("ix_sandbox_refunds_payment_id"), "sandbox_refunds", ["payment_id"], unique=False)
    op.create_index(
        "uq_sandbox_refunds_idempotency_key",
        "sandbox_refunds",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    for table in (
        "sandbox_refunds",
        "sandbox_payments",
        "sandbox_subscriptions",
        "sandbox_password_resets",
        "sandbox_orders",
        "sandbox_invoices",
        "sandbox_policy",
        "sandbox_idempotency",
        "sandbox_customers",
    ):
        # Dropping a table drops its indexes and constraints with it.
        op.drop_table(table)
