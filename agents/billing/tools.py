"""The billing agent's tools: payments, invoices, refunds, the subscription.

Each tool is its contract with the model (arguments, docstring, owner, side effect); the
sandbox implementation, including the refund policy it enforces, is shared/sandbox/billing.py,
and ``settings.tool_backends`` can route any of them to a company's own service instead.
Money-moving and changing calls run once per (turn, tool, target): the key is claimed in
the same transaction as the change and its audit event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field

from agents.records import amount, records, when
from shared.backends import backend_tool
from shared.db import session_scope
from shared.errors import ToolError
from shared.idempotency import idempotency_key, once, prior_action
from shared.sandbox import billing
from shared.sandbox.policy import refund_refusal, settings_policy
from shared.settings import get_settings
from shared.tools import Tool, ToolArgs, ToolContext

BILLING = ("billing",)


class ListArgs(ToolArgs):
    limit: int = Field(
        default=billing.MAX_LISTED, ge=1, le=billing.MAX_LISTED, description="how many, newest first (at most 10)"
    )


class ListPaymentsArgs(ListArgs):
    invoice_id: str | None = Field(default=None, max_length=64, description="only the payments of this invoice")


class RefundArgs(ToolArgs):
    payment_id: str = Field(
        min_length=1, max_length=64, description="the payment to refund, as listed by list_payments"
    )
    amount: Decimal | None = Field(
        default=None, gt=0, max_digits=12, decimal_places=2, description="omit to refund the whole payment"
    )
    reason: str = Field(default="", max_length=200, description="why, in a few words, e.g. 'duplicate charge'")


class SubscriptionArgs(ToolArgs):
    subscription_id: str | None = Field(
        default=None, max_length=64, description="omit for the customer's current subscription"
    )


@backend_tool(owners=BILLING)
def list_payments(ctx: ToolContext, args: ListPaymentsArgs) -> dict[str, Any]:
    """List the customer's most recent payments, newest first (at most 10): amount, status, the
    card's last four digits, the invoice, what was already refunded, whether it is within the
    refund window, and `duplicate_of` when an earlier payment already paid the same invoice."""
    with session_scope() as session:
        return billing.payments(session, ctx, invoice_id=args.invoice_id, limit=args.limit)


@backend_tool(owners=BILLING)
def list_invoices(ctx: ToolContext, args: ListArgs) -> dict[str, Any]:
    """List the customer's most recent invoices, newest first (at most 10), with the ids of the
    payments made for each."""
    with session_scope() as session:
        return billing.invoices(session, ctx, limit=args.limit)


def _refund_precheck(ctx: ToolContext, args: RefundArgs) -> None:
    """Before a company's payment service is asked for a refund, our own rules: the payment
    is this customer's (as its own list_payments gives it), succeeded, within the window,
    under the ceiling of its currency, never more than was paid, and never refunded before
    (by the service's word, or by our own record of actions)."""
    listed = list_payments.fn(ctx, ListPaymentsArgs())
    payment = next((p for p in records(listed, "payments") if p.get("id") == args.payment_id), None)
    if payment is None:
        raise ToolError(
            f"No payment {args.payment_id} for this customer. Call list_payments to see the customer's payments.",
            kind="not_found",
        )
    currency = str(payment.get("currency") or "")
    refunded = Decimal(str(amount(payment.get("refunded_amount"))))
    with session_scope() as session:
        key = idempotency_key(ctx.turn_id, "refund_payment", args.payment_id)
        prior = prior_action(session, ctx, "refund_payment", args.payment_id, key)
    already = None
    if prior is not None:
        already = f"{prior.amount or ''} {prior.currency or currency} on {prior.created_at.date().isoformat()}".strip()
    elif refunded > 0:
        already = f"{refunded:.2f} {currency}"
    created = when(payment.get("created_at"))
    refusal = refund_refusal(
        payment_id=args.payment_id,
        status=str(payment.get("status") or "unknown"),
        paid=Decimal(str(amount(payment.get("amount")))),
        currency=currency,
        age=datetime.now(UTC) - created if created is not None else timedelta.max,
        already=already,
        amount=args.amount,
        policy=settings_policy(get_settings()),
    )
    if refusal is not None:
        raise refusal


@backend_tool(owners=BILLING, side_effect="money", key=("payment_id",), precheck=_refund_precheck)
def refund_payment(ctx: ToolContext, args: RefundArgs) -> dict[str, Any]:
    """Refund one of the customer's payments, in full unless `amount` is given. Only succeeded
    payments within the refund window, never more than was paid, never twice; above the
    automatic limit a human must approve. Safe to repeat: a repeat returns the first result."""
    key = idempotency_key(ctx.turn_id, "refund_payment", args.payment_id)
    with session_scope() as session:
        return once(
            session,
            key,
            "refund_payment",
            lambda: billing.refund(
                session, ctx, payment_id=args.payment_id, amount=args.amount, reason=args.reason, key=key
            ),
        )


@backend_tool(owners=BILLING)
def get_subscription(ctx: ToolContext, args: SubscriptionArgs) -> dict[str, Any]:
    """Get the customer's subscription: plan, status, price, and when it renews or ends."""
    with session_scope() as session:
        sub = billing.current_subscription(session, ctx, args.subscription_id)
        return billing.no_subscription(session, ctx) if sub is None else billing.subscription_view(sub)


@backend_tool(owners=BILLING, side_effect="write", key=("subscription_id",))
def cancel_subscription(ctx: ToolContext, args: SubscriptionArgs) -> dict[str, Any]:
    """Cancel the customer's subscription at the end of the current period (status
    cancel_at_period_end). No refund is issued. Safe to repeat."""
    with session_scope() as session:
        sub = billing.current_subscription(session, ctx, args.subscription_id)
        if sub is None:
            raise ToolError(
                "This customer has no subscription to cancel. Tell the customer; call get_subscription for details.",
                kind="not_found",
            )
        key = idempotency_key(ctx.turn_id, "cancel_subscription", sub.id)
        return once(session, key, "cancel_subscription", lambda: billing.cancel(session, ctx, sub, key))


TOOLS: list[Tool] = [list_payments, list_invoices, refund_payment, get_subscription, cancel_subscription]
