"""The sandbox company's billing system: payments, invoices, refunds, subscriptions.

This is the sandbox backend of the billing agent's tools (agents/billing/tools.py) and
where the refund policy (POLICY.md §2-4) is enforced for it: a company that serves these
tools from its own services enforces its own. Every query is scoped to one customer of
the ticket's tenant (``owned_by``); another customer's payment, or any record of another
company's customer, is "not found for this customer", never revealed. Every
refusal (already refunded, outside the window, never charged, over the automatic limit)
is a PolicyViolation whose message says what to tell the customer or that a human must
approve: a refusal is never an ordinary output, so no brain can mistake it for a refund
that happened. The facts a refusal rests on (age, refunded amount) are in the payments
listing, for the agent to cite.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.errors import PolicyViolation, ToolError
from shared.idempotency import record_action
from shared.sandbox.models import (
    SandboxCustomer,
    SandboxInvoice,
    SandboxPayment,
    SandboxRefund,
    SandboxSubscription,
    money,
    owned_by,
)
from shared.sandbox.policy import RefundPolicy, read_policy, refund_refusal
from shared.settings import get_settings
from shared.tools import ToolContext

MAX_LISTED = 10
CANCELLABLE = ("active", "trialing", "past_due")
ENDING = "cancel_at_period_end"
CANCELED = ("canceled", "cancelled")
# Refunds that did not fail count against the payment: "never twice".
_LIVE_REFUND = SandboxRefund.status != "failed"


def _age(then: datetime, now: datetime) -> timedelta:
    return now - (then if then.tzinfo else then.replace(tzinfo=UTC))


def _refunded(session: Session, payment_ids: list[str]) -> dict[str, Decimal]:
    rows = session.execute(
        select(SandboxRefund.payment_id, func.sum(SandboxRefund.amount))
        .where(SandboxRefund.payment_id.in_(payment_ids), _LIVE_REFUND)
        .group_by(SandboxRefund.payment_id)
    )
    return {pid: total for pid, total in rows}


def _first_payments(session: Session, ctx: ToolContext, invoice_ids: set[str]) -> dict[str, list[SandboxPayment]]:
    """Succeeded payments per invoice, oldest first: the later ones are duplicates (POLICY.md §2)."""
    by_invoice: dict[str, list[SandboxPayment]] = {}
    if not invoice_ids:
        return by_invoice
    rows = session.execute(
        select(SandboxPayment)
        .where(
            owned_by(SandboxPayment.customer_id, ctx),
            SandboxPayment.invoice_id.in_(invoice_ids),
            SandboxPayment.status == "succeeded",
        )
        .order_by(SandboxPayment.created_at, SandboxPayment.id)
    ).scalars()
    for p in rows:
        by_invoice.setdefault(p.invoice_id or "", []).append(p)
    return by_invoice


def _over_ceiling(amount: Decimal, currency: str, policy: RefundPolicy) -> bool:
    ceiling = policy.ceiling(currency)
    return ceiling is None or amount > ceiling


def _payment_view(
    p: SandboxPayment, refunded: Decimal, duplicate_of: str | None, policy: RefundPolicy, now: datetime
) -> dict[str, Any]:
    age = _age(p.created_at, now)
    within = age <= timedelta(days=policy.refund_window_days)
    return {
        "id": p.id,
        "invoice_id": p.invoice_id,
        "amount": money(p.amount),
        "currency": p.currency,
        "card_last4": p.card_last4,
        "status": p.status,
        "created_at": p.created_at.isoformat(),
        "days_ago": age.days,
        "refunded_amount": money(refunded),
        "duplicate_of": duplicate_of,
        "within_refund_window": within,
        "refundable": p.status == "succeeded" and refunded == 0 and within,
        "needs_human_approval": _over_ceiling(p.amount, p.currency, policy),
    }


def payments(session: Session, ctx: ToolContext, *, invoice_id: str | None, limit: int) -> dict[str, Any]:
    """The customer's latest payments, with what a refund decision needs to know about each."""
    now = datetime.now(UTC)
    policy = read_policy(session, get_settings())
    mine = owned_by(SandboxPayment.customer_id, ctx)
    where = [mine] if invoice_id is None else [mine, SandboxPayment.invoice_id == invoice_id]
    total = session.execute(select(func.count()).select_from(SandboxPayment).where(*where)).scalar_one()
    rows = list(
        session.execute(
            select(SandboxPayment)
            .where(*where)
            .order_by(SandboxPayment.created_at.desc(), SandboxPayment.id.desc())
            .limit(limit)
        ).scalars()
    )
    refunded = _refunded(session, [p.id for p in rows])
    firsts = _first_payments(session, ctx, {p.invoice_id for p in rows if p.invoice_id})
    views = []
    for p in rows:
        paid = firsts.get(p.invoice_id or "", [])
        duplicate_of = paid[0].id if p in paid and paid.index(p) > 0 else None
        views.append(_payment_view(p, refunded.get(p.id, Decimal("0")), duplicate_of, policy, now))
    return {
        "payments": views,
        "shown": len(views),
        "total": total,
        "refund_window_days": policy.refund_window_days,
    }


def invoices(session: Session, ctx: ToolContext, *, limit: int) -> dict[str, Any]:
    mine = owned_by(SandboxInvoice.customer_id, ctx)
    total = session.execute(select(func.count()).select_from(SandboxInvoice).where(mine)).scalar_one()
    rows = list(
        session.execute(
            select(SandboxInvoice)
            .where(mine)
            .order_by(SandboxInvoice.issued_on.desc(), SandboxInvoice.id.desc())
            .limit(limit)
        ).scalars()
    )
    paid_by: dict[str, list[str]] = {}
    for invoice_id, payment_id in session.execute(
        select(SandboxPayment.invoice_id, SandboxPayment.id)
        .where(SandboxPayment.invoice_id.in_([i.id for i in rows]))
        .order_by(SandboxPayment.created_at)
    ):
        paid_by.setdefault(invoice_id or "", []).append(payment_id)
    views = [
        {
            "id": i.id,
            "amount": money(i.amount),
            "currency": i.currency,
            "status": i.status,
            "issued_on": i.issued_on.isoformat(),
            "payments": paid_by.get(i.id, [])[:MAX_LISTED],
        }
        for i in rows
    ]
    return {"invoices": views, "shown": len(views), "total": total}


def refund(
    session: Session, ctx: ToolContext, *, payment_id: str, amount: Decimal | None, reason: str, key: str
) -> dict[str, Any]:
    """Refund a payment of the tool's customer under the refund policy; raises what it refuses."""
    now = datetime.now(UTC)
    # The row lock serialises refunds of one payment across turns: "never twice" holds
    # even for two different turns racing, which the idempotency key alone cannot see.
    payment = session.execute(
        select(SandboxPayment)
        .where(SandboxPayment.id == payment_id, owned_by(SandboxPayment.customer_id, ctx))
        .with_for_update()
    ).scalar_one_or_none()
    if payment is None:
        raise ToolError(
            f"No payment {payment_id} for this customer. Call list_payments to see the customer's payments.",
            kind="not_found",
        )
    prior = session.execute(
        select(SandboxRefund).where(SandboxRefund.payment_id == payment.id, _LIVE_REFUND).order_by(SandboxRefund.id)
    ).scalar()
    already = (
        None
        if prior is None
        else f"{money(prior.amount)} {prior.currency} on {prior.created_at.date().isoformat()} (refund {prior.id})"
    )
    refusal = refund_refusal(
        payment_id=payment.id,
        status=payment.status,
        paid=payment.amount,
        currency=payment.currency,
        age=_age(payment.created_at, now),
        already=already,
        amount=amount,
        policy=read_policy(session, get_settings()),
    )
    if refusal is not None:
        raise refusal
    amount = amount if amount is not None else payment.amount
    refund = SandboxRefund(
        id=f"re_{uuid.uuid4().hex[:12]}",
        payment_id=payment.id,
        customer_id=payment.customer_id,
        amount=amount,
        currency=payment.currency,
        status="succeeded",
        created_at=now,
        idempotency_key=key,
    )
    session.add(refund)
    record_action(
        session,
        ctx,
        "refund_payment",
        key=key,
        object_id=payment.id,
        amount=amount,
        currency=payment.currency,
        data={"refund_id": refund.id, "payment_id": payment.id, "amount": money(amount),
              "currency": payment.currency, "reason": reason},
    )  # fmt: skip
    session.flush()
    return {
        "refunded": True,
        "refund_id": refund.id,
        "payment_id": payment.id,
        "amount": money(amount),
        "currency": payment.currency,
        "card_last4": payment.card_last4,
        "status": refund.status,
        "message": f"Refunded {money(amount)} {payment.currency} to the card ending {payment.card_last4}; "
        "it takes 5-10 business days to appear on the statement.",
    }


def subscription_view(s: SandboxSubscription) -> dict[str, Any]:
    period_end = s.renews_on.isoformat() if s.renews_on else None
    return {
        "id": s.id,
        "plan": s.plan,
        "status": s.status,
        "price": money(s.price),
        "currency": s.currency,
        "renews_on": period_end,  # the end of the current period, whether or not it renews
        "will_renew": s.status in CANCELLABLE,
        "ends_on": period_end if s.status == ENDING else None,
    }


def current_subscription(session: Session, ctx: ToolContext, subscription_id: str | None) -> SandboxSubscription | None:
    """The named subscription, or the one that matters now: live before ending before over."""
    query = select(SandboxSubscription).where(owned_by(SandboxSubscription.customer_id, ctx))
    if subscription_id is not None:
        found = session.execute(query.where(SandboxSubscription.id == subscription_id)).scalar_one_or_none()
        if found is None:
            raise ToolError(
                f"No subscription {subscription_id} for this customer. "
                "Call get_subscription without an id to see the customer's current subscription.",
                kind="not_found",
            )
        return found
    subs = list(session.execute(query.order_by(SandboxSubscription.id)).scalars())
    rank = {**{s: 0 for s in CANCELLABLE}, ENDING: 1}
    subs.sort(key=lambda s: (rank.get(s.status, 2), -(s.renews_on.toordinal() if s.renews_on else 0)))
    return subs[0] if subs else None


def no_subscription(session: Session, ctx: ToolContext) -> dict[str, Any]:
    plan = session.execute(select(SandboxCustomer.plan).where(owned_by(SandboxCustomer.id, ctx))).scalar()
    return {
        "subscription": None,
        "plan": plan or "free",
        "message": "This customer has no subscription, so there is nothing to renew or cancel.",
    }


def cancel(session: Session, ctx: ToolContext, sub: SandboxSubscription, key: str) -> dict[str, Any]:
    # One conditional UPDATE, checked by its row count: the transition happens once.
    changed = session.execute(
        update(SandboxSubscription)
        .where(SandboxSubscription.id == sub.id, SandboxSubscription.status.in_(CANCELLABLE))
        .values(status=ENDING)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(sub)
    if changed:
        record_action(session, ctx, "cancel_subscription", key=key, object_id=sub.id, data={"subscription_id": sub.id})
    elif sub.status not in (ENDING, *CANCELED):
        raise PolicyViolation(
            f"Subscription {sub.id} is {sub.status} and cannot be cancelled by an agent. Escalate to a human."
        )
    view = subscription_view(sub)
    if sub.status == ENDING:
        ends = f" on {view['ends_on']}" if view["ends_on"] else " at the end of the current period"
        message = (
            f"The {sub.plan} subscription ends{ends} and will not renew; no refund is issued for the current period."
        )
    else:
        message = f"The {sub.plan} subscription was already canceled; nothing else to do."
    return {"cancelled": True, "already": not changed, "subscription": view, "refund": None, "message": message}
