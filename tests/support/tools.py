"""Tools for tests: a read that always works, a critical backend that is down, a slow one.

The integration stack gives them to the agents with ``SWITCHBOARD_EXTRA_TOOLS=["tests.support.tools:TOOLS"]``.
"""

from __future__ import annotations

import time

from shared.settings import AGENTS
from shared.tools import Tool, ToolArgs, ToolContext, function_tool

ALL = AGENTS


class NoArgs(ToolArgs):
    pass


class LookupArgs(ToolArgs):
    key: str = "balance"


class SlowArgs(ToolArgs):
    seconds: float


@function_tool(owners=ALL)
def lookup_balance(ctx: ToolContext, args: LookupArgs) -> dict[str, object]:
    """Look up the customer's balance."""
    return {"customer_id": ctx.customer_id, args.key: 42}


@function_tool(owners=ALL, side_effect="money", critical=True)
def charge_backend(ctx: ToolContext, args: NoArgs) -> dict[str, object]:
    """A payments backend that is down."""
    raise ConnectionError("payments backend unreachable")


@function_tool(owners=("billing",))
def billing_only_lookup(ctx: ToolContext, args: NoArgs) -> dict[str, object]:
    """A read only the billing agent may run."""
    return {"ok": True}


@function_tool(owners=ALL)
def slow_lookup(ctx: ToolContext, args: SlowArgs) -> dict[str, object]:
    """A backend that takes its time."""
    time.sleep(args.seconds)
    return {"slept": args.seconds}


# A full card number no customer typed: a backend that returns more than it should.
LEAKED_CARD = "5555 5555 5555 4444"


@function_tool(owners=ALL)
def card_on_file(ctx: ToolContext, args: NoArgs) -> dict[str, object]:
    """A payments backend that returns the whole card number."""
    return {"card": LEAKED_CARD, "note": f"charged to {LEAKED_CARD.replace(' ', '')}"}


TOOLS: list[Tool] = [lookup_balance, charge_backend, billing_only_lookup, slow_lookup, card_on_file]
