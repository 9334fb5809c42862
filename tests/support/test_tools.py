"""Tools for tests: a read that always works, a critical backend that is down, a slow one."""

from __future__ import annotations

import time

from shared.tools import ToolArgs, ToolContext, registry

ALL = ("billing", "knowledge", "account")


class NoArgs(ToolArgs):
    pass


class LookupArgs(ToolArgs):
    key: str = "balance"


class SlowArgs(ToolArgs):
    seconds: float


@registry.tool(owners=ALL)
def lookup_balance(ctx: ToolContext, args: LookupArgs) -> dict[str, object]:
    """Look up the customer's balance."""
    return {"customer_id": ctx.customer_id, args.key: 42}


@registry.tool(owners=ALL, side_effect="money", critical=True)
def charge_backend(ctx: ToolContext, args: NoArgs) -> dict[str, object]:
    """A payments backend that is down."""
    raise ConnectionError("payments backend unreachable")


@registry.tool(owners=("billing",))
def billing_only_lookup(ctx: ToolContext, args: NoArgs) -> dict[str, object]:
    """A read only the billing agent may run."""
    return {"ok": True}


@registry.tool(owners=ALL)
def slow_lookup(ctx: ToolContext, args: SlowArgs) -> dict[str, object]:
    """A backend that takes its time."""
    time.sleep(args.seconds)
    return {"slept": args.seconds}
