"""The fixture format of evals/FORMAT.md: one pydantic model per section, and its dates.

Dates may be absolute (``2026-11-02``, ``2026-11-02T09:14:00Z``) or relative to ``now``
(``-3d``, ``-2h``, ``+5d``, ``-90m``, ``+1w``, ``now``). Unknown fields are errors, because a
misspelt field (``created_on``) would otherwise silently fall back to a default and
change what the case tests.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from shared.models import Base
from shared.sandbox.models import (
    SANDBOX_TENANT,
    SandboxCustomer,
    SandboxInvoice,
    SandboxOrder,
    SandboxPasswordReset,
    SandboxPayment,
    SandboxRefund,
    SandboxSubscription,
)

_RELATIVE = re.compile(r"^(?P<sign>[+-])\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[wdhm])$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
_DATE_HELP = "use an absolute date (2026-11-02, 2026-11-02T09:14:00Z) or a relative one (-3d, -2h, +5d, now)"


def parse_when(value: object, now: datetime) -> datetime:
    """An instant (UTC) from a fixture value: relative to ``now``, or absolute."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):  # YAML reads an unquoted 2026-11-02 as a date
        return datetime.combine(value, time(), tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date: {_DATE_HELP}")
    text = value.strip()
    if text.lower() == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match["unit"]]: float(match["n"])})
        return now + delta if match["sign"] == "+" else now - delta
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date: {_DATE_HELP}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _now(info: ValidationInfo) -> datetime:
    now = (info.context or {}).get("now")
    assert isinstance(now, datetime), "validate fixtures with context={'now': datetime}"
    return now


def _instant(value: object, info: ValidationInfo) -> datetime:
    return parse_when(value, _now(info))


def _day(value: object, info: ValidationInfo) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return parse_when(value, _now(info)).astimezone(UTC).date()


def _text(value: object) -> object:
    # YAML reads `id: 1001` as a number; an id is text however it was written.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _last4(value: object) -> object:
    # An unquoted 0005 reaches us as the number 5.
    return str(value).zfill(4) if isinstance(value, int) and not isinstance(value, bool) else value


Id = Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=64)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
Day = Annotated[date, BeforeValidator(_day)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Status = Annotated[str, Field(min_length=1, max_length=32)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id


class CustomerIn(Record):
    id: Id
    # the company the customer belongs to; a ticket reaches it only from a source of this tenant
    tenant: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = SANDBOX_TENANT
    email: Email | None = None
    name: str = ""
    plan: Status = "free"
    status: Status = "active"
    verified: bool = True
    timezone: str | None = None  # carried by the helpdesk; the store does not keep it
    locale: str | None = None


class SubscriptionIn(Record):
    id: Id
    customer_id: Id
    plan: Status
    status: Status = "active"
    price: Amount
    currency: Currency = "USD"
    renews_on: Day | None = None


class InvoiceIn(Record):
    id: Id
    customer_id: Id
    amount: Amount
    currency: Currency = "USD"
    status: Status = "paid"
    issued_on: Day | None = None  # default: now


class PaymentIn(Record):
    id: Id
    invoice_id: Id | None = None
    customer_id: Id
    amount: Amount
    currency: Currency = "USD"
    card_last4: Annotated[str | None, BeforeValidator(_last4), Field(pattern=r"^\d{4}$")] = None
    status: Status = "succeeded"
    created_at: Instant | None = None  # default: now


class RefundIn(Record):
    id: Id = Field(default_factory=lambda: f"re_{uuid.uuid4().hex[:12]}")
    payment_id: Id
    customer_id: Id | None = None  # FORMAT.md leaves it out: it is the payment's customer
    amount: Amount | None = None  # default: the whole payment
    currency: Currency | None = None
    status: Status = "succeeded"
    created_at: Instant | None = None  # default: now


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # items are free-form JSON beyond these
    sku: Annotated[str, BeforeValidator(_text)] = ""
    name: str
    qty: int = Field(default=1, ge=1)
    price: Amount = Decimal("0")


class OrderIn(Record):
    id: Id
    customer_id: Id
    items: list[OrderItemIn] = Field(default_factory=list)
    total: Amount | None = None  # default: the sum of the items
    currency: Currency = "USD"
    status: Status
    placed_on: Day | None = None  # default: now
    delivered_on: Day | None = None


class PasswordResetIn(Record):
    id: Id = Field(default_factory=lambda: f"pr_{uuid.uuid4().hex[:12]}")
    customer_id: Id
    sent_to: Email
    created_at: Instant | None = None  # default: now


# In load order: parents before children.
SECTIONS: dict[str, tuple[type[Record], type[Base]]] = {
    "customers": (CustomerIn, SandboxCustomer),
    "subscriptions": (SubscriptionIn, SandboxSubscription),
    "invoices": (InvoiceIn, SandboxInvoice),
    "payments": (PaymentIn, SandboxPayment),
    "refunds": (RefundIn, SandboxRefund),
    "orders": (OrderIn, SandboxOrder),
    "password_resets": (PasswordResetIn, SandboxPasswordReset),
}
