"""The sandbox company's account system: the account on file, password resets, orders.

This is the sandbox backend of the account agent's tools (agents/account/tools.py).
Everything is scoped to one customer of the ticket's tenant (``owned_by``). A reset link
goes to the email address on file and nowhere else (POLICY.md §5): an address that differs is refused here, whatever the
model was persuaded to ask for.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.errors import PolicyViolation, ToolError
from shared.idempotency import record_action
from shared.sandbox.models import SandboxCustomer, SandboxOrder, SandboxPasswordReset, money, owned_by
from shared.tools import ToolContext

MAX_ORDERS = 10
MAX_ITEMS = 20
RESET_LINK_MINUTES = 60


def masked(email: str) -> str:
    """``dev.patel@example.com`` → ``d***@example.com``: enough to recognise, not to reuse."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def customer(session: Session, ctx: ToolContext) -> SandboxCustomer:
    """The tool's customer, if it is one of the ticket's tenant; another company's is none."""
    found = session.execute(select(SandboxCustomer).where(owned_by(SandboxCustomer.id, ctx))).scalar_one_or_none()
    if found is None:
        raise ToolError(
            "There is no account on file for this customer. Do not guess; escalate to a human if the "
            "customer needs anything changed on their account.",
            kind="not_found",
        )
    return found


def account_view(c: SandboxCustomer) -> dict[str, Any]:
    return {"customer_id": c.id, "name": c.name, "email": c.email, "plan": c.plan, "status": c.status,
            "verified": c.verified}  # fmt: skip


def reset_address(on_file: str | None, requested: str | None) -> str:
    """The address a reset link may go to: the one on file, and only if that is what was asked.
    The one copy of the rule: the sandbox applies it, and our code applies it before any
    call to a company's account service (agents/account/tools.py)."""
    if not on_file:
        raise PolicyViolation(
            "This account has no email address on file, so a reset link cannot be sent. "
            "Escalate to a human (reason: sensitive)."
        )
    if requested is not None and requested.strip().casefold() != on_file.strip().casefold():
        raise PolicyViolation(
            "A reset link can only be sent to the email address on file for this account, never to another "
            "address. Do not send it; escalate to a human (reason: sensitive)."
        )
    return on_file


def send_reset(session: Session, ctx: ToolContext, c: SandboxCustomer, email: str, key: str) -> dict[str, Any]:
    reset = SandboxPasswordReset(id=f"pr_{uuid.uuid4().hex[:12]}", customer_id=c.id, sent_to=email)
    session.add(reset)
    # The audit row names the address masked: events are read by people who need not see it.
    record_action(
        session,
        ctx,
        "send_password_reset",
        key=key,
        object_id=c.id,
        data={"reset_id": reset.id, "sent_to": masked(email)},
    )
    session.flush()
    return {
        "sent": True,
        "reset_id": reset.id,
        "sent_to": masked(email),
        "expires_in_minutes": RESET_LINK_MINUTES,
        "message": f"A password reset link was sent to the email address on file ({masked(email)}); "
        f"it expires in {RESET_LINK_MINUTES} minutes.",
    }


def _order_view(o: SandboxOrder, max_items: int, prices: bool) -> dict[str, Any]:
    items = [
        {k: v for k, v in item.items() if prices or k != "price"}
        for item in o.items[:max_items]
        if isinstance(item, dict)
    ]
    return {
        "id": o.id,
        "status": o.status,
        "placed_on": o.placed_on.isoformat(),
        "delivered_on": o.delivered_on.isoformat() if o.delivered_on else None,
        "total": money(o.total),
        "currency": o.currency,
        "items": items,
        "items_count": len(o.items),
    }


def orders(session: Session, ctx: ToolContext, *, limit: int) -> dict[str, Any]:
    mine = owned_by(SandboxOrder.customer_id, ctx)
    total = session.execute(select(func.count()).select_from(SandboxOrder).where(mine)).scalar_one()
    rows = session.execute(
        select(SandboxOrder).where(mine).order_by(SandboxOrder.placed_on.desc(), SandboxOrder.id.desc()).limit(limit)
    ).scalars()
    # The listing names the items without prices; get_order has the detail.
    views = [_order_view(o, max_items=5, prices=False) for o in rows]
    return {"orders": views, "shown": len(views), "total": total}


def order(session: Session, ctx: ToolContext, order_id: str) -> dict[str, Any]:
    found = session.execute(
        select(SandboxOrder).where(SandboxOrder.id == order_id, owned_by(SandboxOrder.customer_id, ctx))
    ).scalar_one_or_none()
    if found is None:
        raise ToolError(
            f"No order {order_id} for this customer. Call list_orders to see the customer's orders.", kind="not_found"
        )
    return {"order": _order_view(found, max_items=MAX_ITEMS, prices=True)}
