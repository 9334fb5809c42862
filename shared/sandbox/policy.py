"""The policy limits the sandbox tools enforce: Settings, overridden per case.

A scenario case may carry ``policy: {max_auto_refund: 20.00}``; the eval harness stores it
in ``sandbox_policy`` and the tools read it here before falling back to Settings, so a
case changes the limits of the store it runs against without restarting any worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.errors import PolicyViolation, SwitchboardError, ToolError
from shared.sandbox.models import SandboxPolicy
from shared.settings import Settings


class FixtureError(SwitchboardError):
    """A fixture or policy that cannot be loaded; the message names the record and field."""


@dataclass(frozen=True)
class RefundPolicy:
    max_auto_refund: Decimal  # in refund_currency
    refund_window_days: int
    refund_currency: str = "USD"
    other_ceilings: Mapping[str, Decimal] = field(default_factory=dict)

    def ceiling(self, currency: str) -> Decimal | None:
        """The automatic refund ceiling in ``currency``; None when it has none (a human decides)."""
        if currency == self.refund_currency:
            return self.max_auto_refund
        return self.other_ceilings.get(currency)


def refund_refusal(
    *,
    payment_id: str,
    status: str,
    paid: Decimal,
    currency: str,
    age: timedelta,
    already: str | None,
    amount: Decimal | None,
    policy: RefundPolicy,
) -> ToolError | None:
    """Why a refund of this payment may not be made automatically, or None: the one copy of
    the rules, applied by the sandbox under its row lock and by our code before any call to
    a company's payment service (agents/billing/tools.py). ``already`` describes a refund
    made before, if there was one."""
    if already is not None:
        return PolicyViolation(
            f"Payment {payment_id} was already refunded: {already}. Do not refund it again; tell the "
            "customer it was already refunded."
        )
    if status != "succeeded":
        return PolicyViolation(
            f"Payment {payment_id} did not go through (status {status}): the customer was not charged "
            "for it, so there is nothing to refund. Tell the customer."
        )
    if age > timedelta(days=policy.refund_window_days):
        return PolicyViolation(
            f"Payment {payment_id} was made {age.days} days ago, outside the {policy.refund_window_days}-day "
            f"refund window: it cannot be refunded. Tell the customer that payments older than "
            f"{policy.refund_window_days} days are not refunded."
        )
    amount = amount if amount is not None else paid
    if amount > paid:
        return ToolError(
            f"Payment {payment_id} was {paid:.2f} {currency}; a refund cannot be more than "
            "that. Call refund_payment again without an amount to refund it in full.",
            kind="invalid",
        )
    ceiling = policy.ceiling(currency)
    if ceiling is None:
        return PolicyViolation(
            f"There is no automatic refund limit for {currency}: a human must approve any refund in "
            f"{currency}. Do not retry; escalate to a human (reason: policy)."
        )
    if amount > ceiling:
        return PolicyViolation(
            f"Refunding {amount:.2f} {currency} is over the {ceiling:.2f} "
            f"{currency} limit for automatic refunds: a human must approve it. Do not retry; "
            "escalate to a human (reason: policy)."
        )
    return None


def settings_policy(settings: Settings) -> RefundPolicy:
    """The policy of Settings alone: what our code applies before a company's own service."""
    return RefundPolicy(
        max_auto_refund=_money("max_auto_refund", settings.max_auto_refund),
        refund_window_days=settings.refund_window_days,
        refund_currency=settings.refund_currency,
        other_ceilings={
            currency: _money(f"max_auto_refunds.{currency}", value)
            for currency, value in settings.max_auto_refunds.items()
            if currency != settings.refund_currency
        },
    )


def _money(key: str, value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise FixtureError(f"policy: {key}: {value!r} is not an amount; write it like 100.00") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise FixtureError(f"policy: {key}: {value!r} must be a non-negative amount with at most two decimals")
    return amount


def _days(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FixtureError(f"policy: {key}: {value!r} must be a whole, non-negative number of days")
    return value


# The keys the tools read, and how each is checked. Other keys are stored as given, for
# whoever else reads the case's policy (they are not this module's business).
_CHECKS = {"max_auto_refund": _money, "refund_window_days": _days}


def set_policy(session: Session, overrides: Mapping[str, Any]) -> None:
    """Make ``overrides`` the only policy overrides (an empty mapping restores the defaults)."""
    rows = []
    for key, value in overrides.items():
        check = _CHECKS.get(key)
        stored = value if check is None else check(key, value)
        rows.append(SandboxPolicy(key=str(key), value=f"{stored:.2f}" if isinstance(stored, Decimal) else stored))
    session.execute(delete(SandboxPolicy))
    session.add_all(rows)
    session.flush()


def policy_overrides(session: Session) -> dict[str, Any]:
    return {key: value for key, value in session.execute(select(SandboxPolicy.key, SandboxPolicy.value))}


def read_policy(session: Session, settings: Settings) -> RefundPolicy:
    overrides = policy_overrides(session)
    return RefundPolicy(
        max_auto_refund=_money("max_auto_refund", overrides.get("max_auto_refund", settings.max_auto_refund)),
        refund_window_days=_days(
            "refund_window_days", overrides.get("refund_window_days", settings.refund_window_days)
        ),
        refund_currency=settings.refund_currency,
        other_ceilings={
            currency: _money(f"max_auto_refunds.{currency}", value)
            for currency, value in settings.max_auto_refunds.items()
            if currency != settings.refund_currency
        },
    )
