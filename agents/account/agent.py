"""The account agent: sign-in, account status and orders.

The pickers below are what its playbooks (playbooks.yaml) call by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agents.account.tools import TOOLS
from agents.base import Agent
from agents.records import records
from shared.brains import AgentProfile
from shared.brains.playbooks import Scope

HERE = Path(__file__).parent
_WORD = re.compile(r"[a-z0-9]+")
_STATUS = {
    "placed": "has been placed and is being prepared",
    "processing": "is being prepared for shipping",
    "shipped": "has shipped",
    "delivered": "was delivered",
    "cancelled": "was cancelled",
    "returned": "was returned",
}


def _describe(order: dict[str, Any]) -> str:
    items = ", ".join(str(i.get("name") or i.get("sku")) for i in order.get("items") or [] if isinstance(i, dict))
    status = str(order.get("status", "unknown"))
    text = f"Your order {order.get('id')}"
    text += f" ({items})" if items else ""
    text += f" {_STATUS.get(status, 'is ' + status)} (status: {status})"
    if order.get("delivered_on"):
        text += f"; it was delivered on {str(order['delivered_on'])[:10]}"
    elif order.get("placed_on"):
        text += f"; it was placed on {str(order['placed_on'])[:10]}"
    return text + "."


def referenced_order(orders: Any, scope: Scope) -> dict[str, Any] | None:
    """The order the customer means: by id, then by the items they name, else the latest."""
    rows = records(orders, "orders")
    if not rows:
        return None
    entities: dict[str, Any] = scope.get("entities") or {}
    ids = {str(i) for i in entities.get("order_ids", [])}
    chosen: dict[str, Any] | None = None
    if ids:
        chosen = next(
            (o for o in rows if str(o.get("id")) in ids or str(o.get("id")).removeprefix("ord_") in ids), None
        )
        if chosen is None:
            return None
    if chosen is None:
        words = set(_WORD.findall(str(scope.get("text") or "").lower()))

        def overlap(order: dict[str, Any]) -> int:
            names = " ".join(str(i.get("name", "")) for i in order.get("items") or [] if isinstance(i, dict))
            return len(words & set(_WORD.findall(names.lower())))

        chosen = max(rows, key=lambda o: (overlap(o), str(o.get("placed_on", ""))))
    return {**chosen, "summary": _describe(chosen)}


def mentions_another_email(text: str, *, scope: Scope) -> bool:
    """An address other than the one on file (the guardrails kept the customer's own and
    replaced any other with a placeholder before the agents saw the message)."""
    own = str((scope.get("customer") or {}).get("email") or "").lower()
    return "[email]" in (text or "") or any(
        str(e).lower() != own for e in (scope.get("entities") or {}).get("emails", [])
    )


profile = AgentProfile(
    name="account",
    intents=yaml.safe_load((HERE / "intents.yaml").read_text()),
    playbooks_file=HERE / "playbooks.yaml",
    pickers={"referenced_order": referenced_order},
    predicates={"mentions_another_email": mentions_another_email},
    instructions="You are the account agent: sign-in, password resets, account status and orders.",
)

agent = Agent(name="account", tools=TOOLS, profile=profile)
