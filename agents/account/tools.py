"""The account agent's tools: the account on file, password resets, orders.

Each tool is its contract with the model (arguments, docstring, owner, side effect); the
sandbox implementation, including the rule that a reset link only goes to the email on
file, is shared/sandbox/account.py, and ``settings.tool_backends`` can route any of them
to a company's own service instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.backends import backend_tool
from shared.db import session_scope
from shared.idempotency import idempotency_key, once
from shared.sandbox import account
from shared.tools import Tool, ToolArgs, ToolContext

ACCOUNT = ("account",)


class NoArgs(ToolArgs):
    pass


class PasswordResetArgs(ToolArgs):
    email: str | None = Field(
        default=None,
        max_length=320,
        description="only if the customer named an address; the link only ever goes to the email on file",
    )


class ListOrdersArgs(ToolArgs):
    limit: int = Field(
        default=account.MAX_ORDERS, ge=1, le=account.MAX_ORDERS, description="how many, newest first (at most 10)"
    )


class OrderArgs(ToolArgs):
    order_id: str = Field(min_length=1, max_length=64, description="the order, as listed by list_orders")


@backend_tool(owners=("account", "billing"))
def fetch_customer_account(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
    """Get the customer's account: name, the email address on file, plan, status and whether the
    email is verified."""
    with session_scope() as session:
        return account.account_view(account.customer(session, ctx))


def _reset_precheck(ctx: ToolContext, args: PasswordResetArgs) -> None:
    """Before a company's account service is asked for a reset: only to the address on file,
    as its own account lookup (through its configured backend) gives it."""
    on_file = fetch_customer_account.fn(ctx, NoArgs())
    email = on_file.get("email") if isinstance(on_file, dict) else None
    account.reset_address(str(email) if email else None, args.email)


@backend_tool(owners=ACCOUNT, side_effect="write", precheck=_reset_precheck)
def send_password_reset(ctx: ToolContext, args: PasswordResetArgs) -> dict[str, Any]:
    """Send a password reset link to the email address on file for this customer. It is never
    sent to any other address. Safe to repeat within a turn: one link per turn."""
    with session_scope() as session:
        customer = account.customer(session, ctx)
        email = account.reset_address(customer.email, args.email)
        key = idempotency_key(ctx.turn_id, "send_password_reset")
        return once(session, key, "send_password_reset", lambda: account.send_reset(session, ctx, customer, email, key))


@backend_tool(owners=ACCOUNT)
def list_orders(ctx: ToolContext, args: ListOrdersArgs) -> dict[str, Any]:
    """List the customer's most recent orders from the shop, newest first (at most 10): status,
    when placed and delivered, total and the items."""
    with session_scope() as session:
        return account.orders(session, ctx, limit=args.limit)


@backend_tool(owners=ACCOUNT)
def get_order(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
    """Get one of the customer's orders: status, when placed and delivered, items with prices."""
    with session_scope() as session:
        return account.order(session, ctx, args.order_id)


TOOLS: list[Tool] = [fetch_customer_account, send_password_reset, list_orders, get_order]
