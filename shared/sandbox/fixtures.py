"""Load a scenario case's ``fixture:`` into the sandbox store, reset it, read it back.

The fixture shape and its dates are in ``fixture_format``. Records are upserted by id:
loading the same fixture twice changes nothing. A fixture is checked whole before any
row is written, and every error names the record and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Action
from shared.sandbox.fixture_format import SECTIONS, PaymentIn, Record, parse_when
from shared.sandbox.models import SANDBOX_TABLES
from shared.sandbox.policy import FixtureError, set_policy
from shared.sandbox.state import snapshot, state_changes

__all__ = [
    "SECTIONS",
    "FixtureError",
    "load_fixture",
    "parse_when",
    "reset_sandbox",
    "set_policy",
    "snapshot",
    "state_changes",
    "validate_fixture",
]

# (section, field) -> the section whose ids it refers to
_REFERENCES = {
    **{(s, "customer_id"): "customers" for s in SECTIONS if s != "customers"},
    ("payments", "invoice_id"): "invoices",
    ("refunds", "payment_id"): "payments",
}


def _label(section: str, index: int, raw: object) -> str:
    rid = raw.get("id") if isinstance(raw, Mapping) else None
    return f"{section}[{index}]" + (f" ({rid})" if rid is not None else "")


# Looks up a record already in the store, by section and id (None: not there).
Stored = Callable[[str, str], Any]


def _nothing_stored(section: str, record_id: str) -> None:
    return None


def _with_case_customer(
    fixture: Mapping[str, Any], customer: Mapping[str, Any] | None, stored: Stored
) -> dict[str, Any]:
    """FORMAT.md: the case's customer is added to the fixture's customers if absent."""
    records = dict(fixture)
    if customer is None or customer.get("id") is None:
        return records
    cid = str(customer["id"])
    listed = records.get("customers") or []
    if any(isinstance(c, Mapping) and str(c.get("id")) == cid for c in listed) or stored("customers", cid):
        return records
    subs = [s for s in records.get("subscriptions") or [] if isinstance(s, Mapping)]
    plan = next((s.get("plan") for s in subs if str(s.get("customer_id")) == cid), "free")
    fields = {k: customer[k] for k in ("id", "email", "name") if customer.get(k) is not None}
    records["customers"] = [*listed, {**fields, "plan": plan}]
    return records


def _parse(fixture: Mapping[str, Any], now: datetime) -> dict[str, list[Record]]:
    unknown = sorted(set(fixture) - set(SECTIONS))
    if unknown:
        raise FixtureError(f"fixture: unknown section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    parsed: dict[str, list[Record]] = {}
    for section, (model, _table) in SECTIONS.items():
        raw_list = fixture.get(section) or []
        if not isinstance(raw_list, list):
            raise FixtureError(f"fixture: {section} must be a list of records, not {type(raw_list).__name__}")
        records: list[Record] = []
        for index, raw in enumerate(raw_list):
            if not isinstance(raw, Mapping):
                raise FixtureError(f"{section}[{index}]: a record is a mapping like {{id: ..., ...}}, not {raw!r}")
            try:
                records.append(model.model_validate(raw, context={"now": now}))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
                raise FixtureError(f"{_label(section, index, raw)}: {problems}") from None
        ids = [r.id for r in records]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise FixtureError(f"{section}: id(s) {', '.join(dupes)} appear more than once")
        parsed[section] = records
    return parsed


def _check_references(parsed: dict[str, list[Record]], stored: Stored) -> None:
    """Name the record whose reference dangles, rather than let Postgres report a constraint."""
    owner: dict[tuple[str, str], str | None] = {}  # (section, id) -> customer id
    for section, records in parsed.items():
        for r in records:
            owner[(section, r.id)] = getattr(r, "customer_id", None)
    for (section, field), target in _REFERENCES.items():
        for index, r in enumerate(parsed[section]):
            ref = getattr(r, field)
            if ref is None:
                continue
            if (target, ref) not in owner:
                row = stored(target, ref)
                if row is None:
                    raise FixtureError(
                        f"{_label(section, index, {'id': r.id})}: {field} {ref!r} is not among the "
                        f"fixture's {target} nor in the sandbox; add it to {target}"
                    )
                owner[(target, ref)] = getattr(row, "customer_id", None)
            # A payment for another customer's invoice would let a case leak records.
            ref_owner = owner[(target, ref)]
            mine = getattr(r, "customer_id", None)
            if field != "customer_id" and mine is not None and ref_owner is not None and ref_owner != mine:
                raise FixtureError(
                    f"{_label(section, index, {'id': r.id})}: {field} {ref!r} belongs to {ref_owner}, not to {mine}"
                )


def validate_fixture(
    fixture: Mapping[str, Any],
    *,
    now: datetime,
    customer: Mapping[str, Any] | None = None,
    stored: Stored = _nothing_stored,
) -> dict[str, list[Record]]:
    """Check a fixture without writing it (no database needed): the parsed records by section.

    References must resolve within the fixture, or through ``stored`` to the store.
    Raises FixtureError naming the record and the field.
    """
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    parsed = _parse(_with_case_customer(fixture, customer, stored), now)
    _check_references(parsed, stored)
    return parsed


def _row(
    section: str, record: Record, parsed: dict[str, list[Record]], stored: Stored, now: datetime
) -> dict[str, Any]:
    data = record.model_dump(exclude={"timezone", "locale"})
    for when in ("created_at", "issued_on", "placed_on"):
        if when in data and data[when] is None:
            data[when] = now if when == "created_at" else now.astimezone(UTC).date()
    if section == "refunds":
        payment = next((p for p in parsed["payments"] if isinstance(p, PaymentIn) and p.id == data["payment_id"]), None)
        paid = payment or stored("payments", data["payment_id"])
        assert paid is not None  # checked by _check_references
        data["customer_id"] = data["customer_id"] or paid.customer_id
        data["amount"] = data["amount"] if data["amount"] is not None else paid.amount
        data["currency"] = data["currency"] or paid.currency
    elif section == "orders":
        items = data["items"]
        if data["total"] is None:
            data["total"] = sum((Decimal(i["price"]) * i["qty"] for i in items), Decimal("0"))
        data["items"] = [{**i, "price": f"{Decimal(i['price']):.2f}"} for i in items]
    return data


def load_fixture(
    session: Session, fixture: Mapping[str, Any], *, customer: Mapping[str, Any] | None, now: datetime
) -> dict[str, int]:
    """Upsert a case's fixture; ``customer`` (the case's own) is added if the fixture lacks it.

    Returns how many records of each section were loaded. Raises FixtureError, naming the
    record and the field, for anything it cannot load; nothing is written in that case.
    """
    now = now if now.tzinfo else now.replace(tzinfo=UTC)

    def stored(section: str, record_id: str) -> Any:
        return session.get(SECTIONS[section][1], record_id)

    parsed = validate_fixture(fixture, now=now, customer=customer, stored=stored)
    counts: dict[str, int] = {}
    for section, (_model, table) in SECTIONS.items():
        rows = [_row(section, r, parsed, stored, now) for r in parsed[section]]
        counts[section] = len(rows)
        if not rows:
            continue
        stmt = insert(table).values(rows)
        columns = {c: stmt.excluded[c] for c in rows[0] if c != "id"}
        session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns))
    session.flush()
    return counts


def reset_sandbox(session: Session) -> None:
    """Empty the sandbox store, its policy overrides and its idempotency records, and the
    record of the changes made to it (the actions the sandbox served): a fresh store has
    had nothing done to it, so a velocity limit starts from zero. Audit events stay."""
    for table in SANDBOX_TABLES:
        session.execute(delete(table))
    session.execute(delete(Action).where(Action.backend.is_(None)))
    session.flush()
