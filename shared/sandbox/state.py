"""What a scenario case's ``expect.state`` can check, read back from the sandbox store.

``snapshot`` is plain JSON (money as float, so ``49.00`` in a case's YAML compares equal).
The harness takes one before the run and one after: ``*_count`` in a case means records
the run created, i.e. ``after[...] - before[...]``, and ``state_changes`` lists every
change a case may or may not have expected (a refund, a reset, a plan or email change).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Base
from shared.sandbox.models import SandboxCustomer, SandboxPasswordReset, SandboxRefund, SandboxSubscription

# section -> (table, the fields a case may compare)
_SECTIONS: dict[str, tuple[type[Base], tuple[str, ...]]] = {
    "refunds": (SandboxRefund, ("id", "payment_id", "customer_id", "amount", "currency", "status", "created_at")),
    "password_resets": (SandboxPasswordReset, ("id", "customer_id", "sent_to", "created_at")),
    "subscriptions": (
        SandboxSubscription,
        ("id", "customer_id", "plan", "status", "price", "currency", "renews_on"),
    ),
    "customers": (SandboxCustomer, ("id", "email", "name", "plan", "status", "verified")),
}
# Fields whose change is a state change worth reporting (timestamps and names are not).
_WATCHED = {
    "subscriptions": ("plan", "status", "price", "customer_id"),
    "customers": ("email", "plan", "status", "verified"),
}


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def snapshot(session: Session, customer_ids: Collection[str] | None = None) -> dict[str, Any]:
    """The sandbox's refunds, password resets, subscriptions and customers, with counts.

    ``customer_ids`` limits it to those customers' records (cases run side by side).
    """
    shot: dict[str, Any] = {}
    for section, (table, fields) in _SECTIONS.items():
        key = table.id if section == "customers" else table.customer_id  # type: ignore[attr-defined]
        query = select(table).order_by(table.id)  # type: ignore[attr-defined]
        if customer_ids is not None:
            query = query.where(key.in_(list(customer_ids)))
        records = [{f: _plain(getattr(row, f)) for f in fields} for row in session.execute(query).scalars()]
        shot[section] = records
        shot[f"{section}_count"] = len(records)
    return shot


def state_changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record created, removed or changed between two snapshots.

    Each change is ``{"section", "id", "change": created | removed | updated, "fields"}``;
    for an update, ``fields`` maps each changed field to ``[before, after]``.
    """
    changes: list[dict[str, Any]] = []
    for section in _SECTIONS:
        old = {r["id"]: r for r in before.get(section, [])}
        new = {r["id"]: r for r in after.get(section, [])}
        for rid in sorted(new.keys() - old.keys()):
            changes.append({"section": section, "id": rid, "change": "created", "fields": new[rid]})
        for rid in sorted(old.keys() - new.keys()):
            changes.append({"section": section, "id": rid, "change": "removed", "fields": old[rid]})
        for rid in sorted(old.keys() & new.keys()):
            diff = {
                f: [old[rid].get(f), new[rid].get(f)]
                for f in _WATCHED.get(section, ())
                if old[rid].get(f) != new[rid].get(f)
            }
            if diff:
                changes.append({"section": section, "id": rid, "change": "updated", "fields": diff})
    return changes
