"""The billing agent: payments, invoices, refunds and subscriptions.

The pickers and predicates below are what its playbooks (playbooks.yaml) call by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agents.account.tools import fetch_customer_account
from agents.base import Agent
from agents.billing.tools import TOOLS
from agents.records import age_days, amount, records, when
from shared.brains import AgentProfile
from shared.brains.playbooks import Scope

HERE = Path(__file__).parent

# "refund everything", "my balance", "all my money": a refund with nothing to point to.
_UNSPECIFIED = re.compile(
    r"\b(everything|all (of )?(my|the|our) (money|payments|charges)|balance|whatever is left|what(ever)? remains|"
    r"remaining (amount|credit|money)|every (payment|charge)|all of it|saldo|todo|tout|solde|alles|guthaben)\b",
    re.IGNORECASE,
)


def _succeeded(payments: Any) -> list[dict[str, Any]]:
    return [
        p for p in records(payments, "payments") if p.get("status") in ("succeeded", "refunded", "partially_refunded")
    ]


def duplicate_payment(payments: Any, scope: Scope) -> dict[str, Any] | None:
    """The later of two succeeded payments for the same invoice (policy rule 2)."""
    by_invoice: dict[str, list[dict[str, Any]]] = {}
    for p in _succeeded(payments):
        if p.get("invoice_id"):
            by_invoice.setdefault(str(p["invoice_id"]), []).append(p)
    groups = [g for g in by_invoice.values() if len(g) > 1]
    if not groups:
        return None
    # ISO timestamps of one store sort as text; the latest group, then its latest payment
    group = max(groups, key=lambda g: max(str(p.get("created_at")) for p in g))
    return max(group, key=lambda p: str(p.get("created_at")))


def referenced_payment(payments: Any, scope: Scope) -> dict[str, Any] | None:
    """The payment the customer means: by id, then amount, then date; the only one otherwise.

    An amount below the payment the customer otherwise points at ("refund $10 of my last
    payment", "20 of pay_3001") is a partial refund of it: ``refund_amount`` in the scope.
    """
    candidates = _succeeded(payments)
    entities: dict[str, Any] = scope.get("entities") or {}
    ids = {str(i) for i in entities.get("payment_ids", [])}
    amounts = [amount(a) for a in entities.get("amounts", [])]
    if ids:
        named = next((p for p in candidates if str(p.get("id")) in ids), None)
        return _with_partial_amount(named, amounts, scope)
    if amounts:
        matching = [p for p in candidates if any(abs(amount(p.get("amount")) - a) < 0.005 for a in amounts)]
        if not matching:
            # "$10 of my subscription" names no payment by its amount: a partial refund of the one
            # the customer points at otherwise, or a question; never another payment in full.
            pointed = _pointed_without_amount(candidates, entities, str(scope.get("text") or ""))
            return _with_partial_amount(pointed, amounts, scope)
        candidates = matching
    invoices = {str(i) for i in entities.get("invoice_ids", [])}
    if invoices:
        candidates = [p for p in candidates if str(p.get("invoice_id")) in invoices] or candidates
    dates = [d for d in (when(x) for x in entities.get("dates", [])) if d is not None]
    if dates and candidates:
        target = dates[0]
        return min(candidates, key=lambda p: abs(((when(p.get("created_at")) or target) - target).total_seconds()))
    if len(candidates) == 1 or (candidates and amounts):
        return max(candidates, key=lambda p: str(p.get("created_at")))
    if candidates and len({p.get("invoice_id") for p in candidates}) == 1:
        return max(candidates, key=lambda p: str(p.get("created_at")))
    return None


_LATEST = re.compile(r"\b(last|latest|most recent|previous|[uú]ltimo|dernier|letzte[nm]?)\b", re.IGNORECASE)


def _pointed_without_amount(
    candidates: list[dict[str, Any]], entities: dict[str, Any], text: str
) -> dict[str, Any] | None:
    """The payment named by invoice, date, "my last payment", or the only one there is."""
    invoices = {str(i) for i in entities.get("invoice_ids", [])}
    if invoices:
        candidates = [p for p in candidates if str(p.get("invoice_id")) in invoices]
        return candidates[0] if len(candidates) == 1 else None
    dates = [d for d in (when(x) for x in entities.get("dates", [])) if d is not None]
    if dates and candidates:
        target = dates[0]
        return min(candidates, key=lambda p: abs(((when(p.get("created_at")) or target) - target).total_seconds()))
    if len(candidates) == 1:
        return candidates[0]
    if candidates and _LATEST.search(text):
        return max(candidates, key=lambda p: str(p.get("created_at")))
    return None


def _with_partial_amount(payment: dict[str, Any] | None, amounts: list[float], scope: Scope) -> dict[str, Any] | None:
    """The payment, with ``refund_amount`` set when the customer asked for less than all of it;
    None (ask which) when the amount asked is more than it, or several amounts are named."""
    if payment is None or not amounts:
        return payment
    paid = amount(payment.get("amount"))
    if any(abs(paid - a) < 0.005 for a in amounts):
        return payment
    if len(amounts) != 1 or not 0 < amounts[0] < paid:
        return None
    scope.values["refund_amount"] = round(amounts[0], 2)
    return payment


def partial_refund(refund_amount: Any, *, scope: Scope) -> bool:
    return refund_amount is not None


def latest_refunded(payments: Any, scope: Scope) -> dict[str, Any] | None:
    """The payment the customer means if it was refunded, else their latest refunded one."""
    refunded = [p for p in _succeeded(payments) if already_refunded(p, scope=scope)]
    entities: dict[str, Any] = scope.get("entities") or {}
    ids = {str(i) for i in entities.get("payment_ids", [])}
    if ids:
        refunded = [p for p in refunded if str(p.get("id")) in ids]
    return max(refunded, key=lambda p: str(p.get("created_at"))) if refunded else None


def active_subscription(subscription: Any, scope: Scope) -> dict[str, Any] | None:
    subs = records(subscription, "subscriptions") or records(subscription, "subscription")
    live = [s for s in subs if s.get("status") in ("active", "trialing", "past_due", "cancel_at_period_end")]
    return live[0] if live else None


def payments_summary(payments: Any, scope: Scope) -> str | None:
    rows = records(payments, "payments")[:5]
    if not rows:
        return None
    return "\n".join(
        f"- {p.get('id')}: {scope.money(amount(p.get('amount')), p.get('currency'))} on "
        f"{scope.day(p.get('created_at', ''))} ({p.get('status')}), invoice {p.get('invoice_id')}"
        for p in rows
    )


def invoices_summary(invoices: Any, scope: Scope) -> str | None:
    """The invoice the customer names (inv_…), else their latest five, one line each."""
    rows = records(invoices, "invoices")
    named = {str(i) for i in (scope.get("entities") or {}).get("invoice_ids", [])}
    if named:
        rows = [i for i in rows if str(i.get("id")) in named]
    if not rows:
        return None
    return "\n".join(
        f"- {i.get('id')}: {scope.money(amount(i.get('amount')), i.get('currency'))}, issued "
        f"{scope.day(i.get('issued_on', ''))} ({i.get('status')})"
        for i in rows[:5]
    )


def already_refunded(payment: dict[str, Any], *, scope: Scope) -> bool:
    return (
        payment.get("status") == "refunded"
        or bool(payment.get("refunded"))
        or (amount(payment.get("refunded_amount")) >= amount(payment.get("amount")) > 0)
    )


def outside_refund_window(payment: dict[str, Any], *, scope: Scope) -> bool:
    days = age_days(payment.get("created_at"))
    return days is not None and days > float(scope.get("refund_window_days") or 30)


def names_unknown_payment(payments: Any, entities: dict[str, Any] | None, *, scope: Scope) -> bool:
    """The customer points at a payment id that is not theirs (policy rule 1: reveal nothing)."""
    named = {str(i) for i in (entities or {}).get("payment_ids", [])}
    own = {str(p.get("id")) for p in records(payments, "payments")}
    return bool(named) and not named & own


def cancelling_already(sub: dict[str, Any], *, scope: Scope) -> bool:
    return sub.get("status") == "cancel_at_period_end"


def unspecified_amount(text: str, entities: dict[str, Any] | None, *, scope: Scope) -> bool:
    entities = entities or {}
    pointed = entities.get("payment_ids") or entities.get("amounts") or entities.get("invoice_ids")
    return bool(_UNSPECIFIED.search(text or "")) and not pointed


profile = AgentProfile(
    name="billing",
    intents=yaml.safe_load((HERE / "intents.yaml").read_text()),
    playbooks_file=HERE / "playbooks.yaml",
    pickers={
        "duplicate_payment": duplicate_payment,
        "referenced_payment": referenced_payment,
        "latest_refunded": latest_refunded,
        "active_subscription": active_subscription,
        "payments_summary": payments_summary,
        "invoices_summary": invoices_summary,
    },
    predicates={
        "already_refunded": already_refunded,
        "outside_refund_window": outside_refund_window,
        "cancelling_already": cancelling_already,
        "names_unknown_payment": names_unknown_payment,
        "unspecified_amount": unspecified_amount,
        "partial_refund": partial_refund,
    },
    instructions="You are the billing agent: payments, invoices, refunds and subscriptions of this customer.",
)

agent = Agent(name="billing", tools=[*TOOLS, fetch_customer_account], profile=profile)
