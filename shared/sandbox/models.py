"""The sandbox company's records, on the shared metadata so Alembic sees them.

Money is ``Numeric(12, 2)`` (never float); ``*_on`` columns are calendar dates and
``*_at`` columns are instants (UTC). Every table is prefixed ``sandbox_`` so a real
deployment can tell at a glance which tables belong to the demo company.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models import Base

if TYPE_CHECKING:
    from shared.tools import ToolContext

Money = Numeric(12, 2)

# The company the demo customers belong to. A source reaches them when SWITCHBOARD_SOURCES
# gives it this tenant (`switchboard run` and the evals do).
SANDBOX_TENANT = "demo"


def _customer_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("sandbox_customers.id", ondelete="CASCADE"), index=True)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class SandboxCustomer(Base):
    __tablename__ = "sandbox_customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The company the customer belongs to: tools reach a customer only from a ticket of the
    # same tenant. Ids are unique across the sandbox, so two tenants cannot share one.
    tenant: Mapped[str] = mapped_column(String(64), default=SANDBOX_TENANT, server_default=SANDBOX_TENANT)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(256), default="")
    plan: Mapped[str] = mapped_column(String(32), default="free")
    status: Mapped[str] = mapped_column(String(32), default="active")
    verified: Mapped[bool] = mapped_column(default=True)


def owned_by(column: Any, ctx: ToolContext) -> ColumnElement[bool]:
    """``column`` (a customer id) names the tool's customer, and that customer is one of the
    ticket's tenant: every sandbox query of a customer's records goes through this, so a
    ticket from one company never reaches another company's customer (it reads as none)."""
    mine = select(SandboxCustomer.id).where(SandboxCustomer.id == ctx.customer_id, SandboxCustomer.tenant == ctx.tenant)
    return column == mine.scalar_subquery()  # type: ignore[no-any-return]


class SandboxSubscription(Base):
    __tablename__ = "sandbox_subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = _customer_fk()
    plan: Mapped[str] = mapped_column(String(32))
    # active | trialing | past_due | cancel_at_period_end | canceled
    status: Mapped[str] = mapped_column(String(32), default="active")
    price: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    renews_on: Mapped[date | None] = mapped_column(Date)


class SandboxInvoice(Base):
    __tablename__ = "sandbox_invoices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = _customer_fk()
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(32), default="paid")  # draft | open | paid | void
    issued_on: Mapped[date] = mapped_column(Date)


class SandboxPayment(Base):
    __tablename__ = "sandbox_payments"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="ck_sandbox_payments_amount"),
        # The store can hold the last four digits of a card and nothing more.
        CheckConstraint("card_last4 ~ '^[0-9]{4}$'", name="ck_sandbox_payments_card_last4"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A payment may exist without an invoice (a one-off charge, an order).
    invoice_id: Mapped[str | None] = mapped_column(
        ForeignKey("sandbox_invoices.id", ondelete="SET NULL"), index=True, nullable=True
    )
    customer_id: Mapped[str] = _customer_fk()
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    card_last4: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(32), default="succeeded")  # succeeded | failed | pending
    created_at: Mapped[datetime] = _created_at()


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_sandbox_refunds_amount"),
        # A second line of defence behind the tool's idempotency row: one refund per key.
        Index(
            "uq_sandbox_refunds_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("sandbox_payments.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[str] = _customer_fk()
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(32), default="succeeded")  # succeeded | pending | failed
    created_at: Mapped[datetime] = _created_at()
    # Null for refunds loaded from a fixture; set for every refund a tool made.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))


class SandboxOrder(Base):
    __tablename__ = "sandbox_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = _customer_fk()
    items: Mapped[list[Any]] = mapped_column(JSONB, default=list)  # [{sku, name, qty, price}]
    total: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(32))  # processing | shipped | delivered | cancelled | returned
    placed_on: Mapped[date] = mapped_column(Date)
    delivered_on: Mapped[date | None] = mapped_column(Date)


class SandboxPasswordReset(Base):
    __tablename__ = "sandbox_password_resets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = _customer_fk()
    sent_to: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = _created_at()


class SandboxIdempotency(Base):
    """The first result of a side-effecting tool call, by key (turn + tool + target)."""

    __tablename__ = "sandbox_idempotency"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _created_at()


class SandboxPolicy(Base):
    """Per-case overrides of policy settings (e.g. max_auto_refund); absent keys use Settings."""

    __tablename__ = "sandbox_policy"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)


# Children before parents: the order in which a reset deletes rows.
SANDBOX_TABLES: tuple[type[Base], ...] = (
    SandboxIdempotency,
    SandboxPolicy,
    SandboxPasswordReset,
    SandboxRefund,
    SandboxPayment,
    SandboxInvoice,
    SandboxOrder,
    SandboxSubscription,
    SandboxCustomer,
)


def money(amount: Decimal) -> str:
    """An amount as tools show it: two decimals, exact (a float would print 49.0)."""
    return f"{amount:.2f}"
