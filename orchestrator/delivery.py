"""Outbound replies: signed webhooks to the helpdesk, retried with backoff, once per turn.

Signature: ``X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
with ``X-Switchboard-Timestamp: <unix seconds>``; the receiver recomputes it over the raw
body and rejects stale timestamps (see ``verify_signature``). ``X-Switchboard-Delivery``
carries the delivery id so a helpdesk can drop the rare duplicate that at-least-once
HTTP can produce when a worker dies after the POST but before recording it.

Each attempt first claims the row with a conditional UPDATE (pending -> sending) that
takes a lease and a fencing token (the attempt number), so two workers never post the
same reply at the same time, and a delivered row is never sent again:

- an attempt has a total deadline (``delivery_timeout_s`` for connect, send and the whole
  answer together, not per phase), and the lease is longer than that, so a lease ends only
  after its attempt has;
- the attempt is recorded only by the holder of the current token: a worker whose lease
  ran out (it was paused, its host stalled) finds the row taken and records nothing.

Leases are compared with the database's clock, so a host whose clock runs ahead cannot
take another's lease early. ``claim`` and ``record`` take the caller's session;
``deliver`` runs one attempt as two units of work with the HTTP call between them, never
inside a transaction.

A connected helpdesk (SWITCHBOARD_HELPDESKS: Zendesk, Freshdesk, Intercom) gets the same
outbox, claim and fencing; an attempt there is its API's calls (orchestrator/helpdesks/outbox.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import anyio
import httpx
from sqlalchemy import ColumnElement, Row, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from orchestrator.helpdesks import outbox
from shared.contracts import DeliveryState
from shared.db import after_commit, retrying, session_scope
from shared.metrics import DELIVERIES
from shared.models import Conversation, Delivery, Event, Turn, new_id
from shared.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
DELIVERY_HEADER = "X-Switchboard-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    if not timestamp or not signature:
        return False
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError:
        return False
    if not math.isfinite(age) or age > tolerance_s:  # nan and inf are never fresh
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempt: int, settings: Settings) -> float:
    return float(min(settings.delivery_backoff_max_s, settings.delivery_backoff_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Attempt:
    """What happened to one attempt; ``retry_in`` is set when another should follow."""

    state: str  # a DeliveryState, or "retry" or "skipped"
    retry_in: float | None = None


RETRY = "retry"
SKIPPED = "skipped"


def lease_s(settings: Settings) -> float:
    """How long an attempt at a signed webhook holds the row: longer than its total deadline."""
    return settings.delivery_timeout_s * 2 + 5


def _lease(settings: Settings) -> ColumnElement[Any]:
    """The row's lease, by its source: a connected helpdesk's attempt is a few API calls, each
    with its helpdesk's timeout (outbox.lease_s); a webhook's is one POST."""
    webhook = timedelta(seconds=lease_s(settings))
    if not settings.helpdesks:
        return literal(webhook)
    whens = [(Delivery.source == name, timedelta(seconds=outbox.lease_s(h))) for name, h in settings.helpdesks.items()]
    return case(*whens, else_=webhook)


class Addressee(Protocol):
    """What a reply is addressed by: a conversation, or a row of its columns."""

    @property
    def id(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def external_id(self) -> str: ...


def queue_delivery(
    s: Session,
    settings: Settings,
    conversation: Addressee,
    *,
    turn_id: str | None = None,
    escalation_id: str | None = None,
    outcome: str,
    reply: str | None,
    reason: str | None = None,
    note: str | None = None,
    resolved: bool = False,
) -> str | None:
    """The outbox row of a bot turn (``turn_id``) or of a human's reply (``escalation_id``), or
    None when its source takes no replies. A signed webhook for a source with a callback URL;
    the API's steps for a connected helpdesk."""
    helpdesk = settings.helpdesks.get(conversation.source)
    delivery_id = new_id("dlv")
    common = {"delivery_id": delivery_id, "conversation_id": conversation.id, "external_id": conversation.external_id}
    if helpdesk is not None:
        url = str(helpdesk.base_url)
        steps = (
            outbox.turn_steps(outcome, reply, reason, note) if turn_id is not None else [{"do": "reply", "body": reply}]
        )
        if not steps:
            return None
        payload: dict[str, Any] = common | {"helpdesk": helpdesk.kind, "turn_id": turn_id, "steps": steps, "done": []}
    else:
        callback = settings.source(conversation.source).callback_url
        if callback is None:
            return None
        url = str(callback)
        payload = common | {"turn_id": turn_id, "outcome": outcome, "reply": reply, "escalation_reason": reason}
        if escalation_id is not None:
            payload |= {"escalation_id": escalation_id, "author": "human", "resolved": resolved}
    s.add(
        Delivery(
            id=delivery_id,
            turn_id=turn_id,
            escalation_id=escalation_id,
            conversation_id=conversation.id,
            source=conversation.source,
            url=url,
            payload=payload,
        )
    )
    return delivery_id


def claim(s: Session, delivery_id: str, settings: Settings) -> Row[Any] | None:
    """Take the delivery for one attempt (pending -> sending). None when it is not ours to send.

    The returned ``attempts`` is the attempt's fencing token for ``record``.
    """
    now = func.now()
    return s.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            or_(
                Delivery.state == DeliveryState.pending,
                # a worker that died mid-attempt leaves 'sending' behind; its lease ends
                (Delivery.state == DeliveryState.sending) & (Delivery.next_attempt_at < now),
            ),
        )
        .values(
            state=DeliveryState.sending,
            attempts=Delivery.attempts + 1,
            next_attempt_at=now + _lease(settings),
        )
        .returning(Delivery.url, Delivery.payload, Delivery.source, Delivery.attempts, Delivery.turn_id)
    ).one_or_none()


async def _post(url: str, body: bytes, headers: dict[str, str], total_s: float) -> httpx.Response:
    # httpx's timeout bounds each phase; fail_after bounds the whole attempt, and cancelling
    # closes the connection, so nothing of this attempt reaches the helpdesk after it.
    with anyio.fail_after(total_s):
        async with httpx.AsyncClient(timeout=total_s) as client:
            return await client.post(url, content=body, headers=headers)


def deliver(delivery_id: str, settings: Settings) -> Attempt:
    with session_scope() as s:
        row = claim(s, delivery_id, settings)
    if row is None:
        return Attempt(SKIPPED)
    if row.source in settings.helpdesks:
        return _deliver_to_helpdesk(delivery_id, row, settings)

    body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(settings.source(row.source).secret.get_secret_value(), timestamp, body),
        DELIVERY_HEADER: delivery_id,
        "User-Agent": "switchboard",
    }
    error: str | None = None
    try:
        response = anyio.run(_post, row.url, body, headers, settings.delivery_timeout_s)
        if 200 <= response.status_code < 300:
            state, retry_in = DeliveryState.delivered, None
        else:
            error = f"HTTP {response.status_code}"
            permanent = response.status_code in (400, 401, 403, 404, 410, 422)
    except TimeoutError:
        error, permanent = f"no answer within {settings.delivery_timeout_s:g}s", False
    except httpx.HTTPError as exc:
        error, permanent = f"{type(exc).__name__}: {exc}", False
    if error is not None:
        if permanent or row.attempts >= settings.delivery_max_attempts:
            state, retry_in = DeliveryState.failed, None
        else:
            state, retry_in = DeliveryState.pending, backoff_s(row.attempts, settings)

    def store() -> Attempt:
        with session_scope() as s:
            return record(s, delivery_id, row.turn_id, row.attempts, state, error, retry_in)

    # The helpdesk has the reply now: a database that blinks while that is stored must not
    # make the sweeper send it again (the soak's Postgres restarts did, 5 in 2000 turns).
    return retrying(store)


def _deliver_to_helpdesk(delivery_id: str, row: Row[Any], settings: Settings) -> Attempt:
    config = settings.helpdesks[row.source]
    with session_scope() as s:
        # A human answered in the helpdesk after the customer message this turn answers.
        overtaken = (
            row.turn_id is not None
            and s.execute(
                select(Turn.id)
                .join(Conversation, Conversation.id == Turn.conversation_id)
                .where(Turn.id == row.turn_id, Conversation.human_answered_at > Turn.created_at)
            ).first()
            is not None
        )
    sent = outbox.send(
        row.source,
        config,
        str(row.payload["external_id"]),
        row.payload,
        row.attempts,
        backoff_s(row.attempts, settings),
        cancelled=overtaken,
    )
    progress = row.payload | {"done": sent.done}

    def store() -> Attempt:
        with session_scope() as s:
            return record(s, delivery_id, row.turn_id, row.attempts, sent.state, sent.error, sent.retry_in, progress)

    return retrying(store)


def record(
    s: Session,
    delivery_id: str,
    turn_id: str | None,
    attempts: int,
    state: DeliveryState,
    error: str | None,
    retry_in: float | None,
    payload: dict[str, Any] | None = None,
) -> Attempt:
    """Record how an attempt ended: delivered or failed for good, or pending again to retry.

    Only the attempt that holds the row records: ``attempts`` is its token from ``claim``.
    ``payload``, when given, is stored with it (a helpdesk delivery's steps done so far).
    """
    ours = (Delivery.id == delivery_id) & (Delivery.state == DeliveryState.sending) & (Delivery.attempts == attempts)
    progress = {} if payload is None else {"payload": payload}
    if state is DeliveryState.pending:
        assert retry_in is not None
        still_ours = s.execute(
            update(Delivery)
            .where(ours)
            .values(
                state=DeliveryState.pending,
                last_error=error,
                next_attempt_at=func.now() + timedelta(seconds=retry_in),
                **progress,
            )
            .returning(Delivery.id)
        ).scalar_one_or_none()
        if still_ours is None:
            return _gone(delivery_id)
        after_commit(s, DELIVERIES.labels(RETRY).inc)
        log.warning("delivery %s attempt %d failed (%s); retrying in %.1fs", delivery_id, attempts, error, retry_in)
        return Attempt(RETRY, retry_in=retry_in)
    still_ours = s.execute(
        update(Delivery)
        .where(ours)
        .values(
            state=state,
            last_error=error,
            delivered_at=func.now() if state is DeliveryState.delivered else None,
            **progress,
        )
        .returning(Delivery.conversation_id)
    ).scalar_one_or_none()
    if still_ours is None:
        return _gone(delivery_id)
    # On the conversation's record too: a human's reply has no turn to hang it on.
    s.add(
        Event(
            conversation_id=still_ours,
            turn_id=turn_id,
            kind=f"delivery.{state}",
            data={"attempts": attempts, "error": error, "delivery_id": delivery_id},
        )
    )
    after_commit(s, DELIVERIES.labels(state).inc)
    if state is DeliveryState.failed:
        log.error("delivery %s failed for good after %d attempts: %s", delivery_id, attempts, error)
    return Attempt(state)


def _gone(delivery_id: str) -> Attempt:
    # Taken over by a later attempt after this one's lease ended, or erased or past
    # retention while it was in flight: this attempt records nothing, not even an event.
    log.info("delivery %s is no longer this attempt's (lease taken over, or erased); nothing recorded", delivery_id)
    return Attempt(SKIPPED)
