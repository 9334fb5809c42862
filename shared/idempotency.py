"""Once-only side effects for tools, and the audit row that goes with each.

A Celery task can be redelivered and a model can repeat itself, so every money-moving or
account-changing tool call is keyed by (turn, tool, target). The key is claimed with
``INSERT … ON CONFLICT DO NOTHING`` in the same transaction as the side effect and its
audit event: either all three commit or none does. A concurrent retry with the same key
blocks on the unique index until the first transaction ends, then reads its result
instead of acting again; if the first one rolled back, the retry acts itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from limits import parse as parse_limit
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contracts import TurnState
from shared.errors import PolicyViolation
from shared.models import Action, Event, Turn
from shared.sandbox.models import SandboxIdempotency
from shared.settings import get_settings
from shared.tools import ToolContext

MAX_KEY_LENGTH = 255


def idempotency_key(turn_id: str, tool: str, *parts: str) -> str:
    """The key of one action in one turn: ``turn:tool[:part…]``, hashed if it is too long."""
    key = ":".join((turn_id, tool, *parts))
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{tool}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def once(session: Session, key: str, tool: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action`` at most once per key; a repeat returns the first run's result.

    Must run inside the caller's transaction, and ``action`` must do its writes on the
    same ``session``, so that the claim, the side effect and the stored result commit
    together. An exception from ``action`` rolls the claim back with everything else, so
    a refused call is evaluated afresh next time rather than replayed.
    """
    claimed = session.execute(
        insert(SandboxIdempotency)
        .values(key=key, tool=tool, result={})
        .on_conflict_do_nothing(index_elements=[SandboxIdempotency.key])
        .returning(SandboxIdempotency.key)
    ).scalar_one_or_none()
    if claimed is None:
        first: dict[str, Any] = session.execute(
            select(SandboxIdempotency.result).where(SandboxIdempotency.key == key)
        ).scalar_one()
        return first
    result = action()
    session.execute(update(SandboxIdempotency).where(SandboxIdempotency.key == key).values(result=result))
    return result


ACTION_DONE, ACTION_PENDING, ACTION_REFUSED = "done", "pending", "refused"


def record_action(
    session: Session,
    ctx: ToolContext,
    tool: str,
    *,
    key: str,
    object_id: str | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    data: dict[str, Any] | None = None,
    state: str = ACTION_DONE,
    backend: str | None = None,
) -> None:
    """Put a change on the record in the caller's transaction, the one that makes the change.

    The turn's row is locked (shared) first: a merge that runs at the same moment waits
    for this transaction and then reads the action, or ran first, and then the change is
    refused and rolled back with everything else. No change is made on a turn that ended.
    """
    state_now = session.execute(
        select(Turn.state).where(Turn.id == ctx.turn_id).with_for_update(read=True)
    ).scalar_one_or_none()
    if state_now != TurnState.running:
        raise PolicyViolation(
            f"This turn is over ({'no such turn' if state_now is None else 'it was merged'}): {tool} was not "
            "done and nothing more may be changed on it. Stop; a human will see the customer's request."
        )
    _within_velocity(session, ctx, tool, key)
    session.execute(
        insert(Action)
        .values(
            turn_id=ctx.turn_id,
            conversation_id=ctx.conversation_id,
            tenant=ctx.tenant,
            customer_id=ctx.customer_id,
            agent=ctx.agent,
            tool=tool,
            object_id=object_id,
            amount=amount,
            currency=currency,
            state=state,
            idempotency_key=key,
            backend=backend,
        )
        .on_conflict_do_update(
            constraint="uq_actions_idempotency_key",
            set_={"state": state, "amount": amount, "currency": currency, "updated_at": func.now()},
        )
    )
    audit(session, ctx, tool, {**(data or {}), "idempotency_key": key, "state": state})


def _within_velocity(session: Session, ctx: ToolContext, tool: str, key: str) -> None:
    """A customer's changes of one kind are limited per window (settings.velocity_limits).

    Counted in the change's own transaction, under a lock per (tenant, customer, tool), so
    two turns racing cannot both take the last one. A repeat of the same action (same key)
    is not a new one."""
    limit_text = get_settings().velocity_limits.get(tool)
    if limit_text is None:
        return
    limit = parse_limit(limit_text)
    lock = hashlib.sha256(f"{ctx.tenant}\x00{ctx.customer_id}\x00{tool}".encode()).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(lock[:8], "big", signed=True)})
    since = datetime.now(UTC) - timedelta(seconds=limit.get_expiry())
    recent = session.execute(
        select(func.count())
        .select_from(Action)
        .where(
            Action.tenant == ctx.tenant,
            Action.customer_id == ctx.customer_id,
            Action.tool == tool,
            Action.state != ACTION_REFUSED,
            Action.created_at > since,
            Action.idempotency_key != key,
        )
    ).scalar_one()
    if recent >= limit.amount:
        raise PolicyViolation(
            f"This customer has reached the limit of {limit.amount} {tool} per {limit.GRANULARITY.name}: "
            f"{tool} was not done. Do not retry; escalate to a human (reason: policy)."
        )


def prior_action(session: Session, ctx: ToolContext, tool: str, object_id: str, key: str) -> Action | None:
    """An earlier action of ``tool`` on ``object_id`` for this customer, done or unconfirmed
    (not the action of ``key`` itself, which a repeat of the same call may find)."""
    return session.execute(
        select(Action)
        .where(
            Action.tenant == ctx.tenant,
            Action.customer_id == ctx.customer_id,
            Action.tool == tool,
            Action.object_id == object_id,
            Action.state != ACTION_REFUSED,
            Action.idempotency_key != key,
        )
        .order_by(Action.id)
        .limit(1)
    ).scalar_one_or_none()


def settle_action(session: Session, key: str, state: str, amount: Decimal | None, currency: str | None) -> None:
    """A company's service answered a pending action: done or refused."""
    values: dict[str, Any] = {"state": state, "updated_at": func.now()}
    if amount is not None:
        values.update(amount=amount, currency=currency)
    session.execute(update(Action).where(Action.idempotency_key == key).values(**values))


def audit(session: Session, ctx: ToolContext, tool: str, data: dict[str, Any]) -> None:
    """Record a state change made by a tool, in the caller's transaction."""
    session.add(
        Event(
            conversation_id=ctx.conversation_id,
            turn_id=ctx.turn_id,
            kind=f"tool.{tool}",
            data={"agent": ctx.agent, "tenant": ctx.tenant, "customer_id": ctx.customer_id, **data},
        )
    )
