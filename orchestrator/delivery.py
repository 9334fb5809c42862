"""Outbound replies: signed webhooks to the helpdesk, retried with backoff, once per turn.

Signature: ``X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
with ``X-Switchboard-Timestamp: <unix seconds>``; the receiver recomputes it over the raw
body and rejects stale timestamps (see ``verify_signature``). ``X-Switchboard-Delivery``
carries the delivery id so a helpdesk can drop the rare duplicate that at-least-once
HTTP can produce when a worker dies after the POST but before recording it.

Each attempt first claims the row with a conditional UPDATE (pending -> sending), so two
workers never post the same reply at the same time, and a delivered row is never sent
again. ``claim`` and ``record`` take the caller's session; ``deliver`` runs one attempt
as two units of work with the HTTP call between them, never inside a transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Row, or_, update
from sqlalchemy.orm import Session

from shared.contracts import DeliveryState
from shared.db import after_commit, session_scope
from shared.metrics import DELIVERIES
from shared.models import Delivery, Event
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


def claim(s: Session, delivery_id: str, settings: Settings) -> Row[Any] | None:
    """Take the delivery for one attempt (pending -> sending). None when it is not ours to send."""
    now = datetime.now(UTC)
    lease = timedelta(seconds=settings.delivery_timeout_s * 2 + 5)
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
        .values(state=DeliveryState.sending, attempts=Delivery.attempts + 1, next_attempt_at=now + lease)
        .returning(Delivery.url, Delivery.payload, Delivery.source, Delivery.attempts, Delivery.turn_id)
    ).one_or_none()


def deliver(delivery_id: str, settings: Settings, client: httpx.Client | None = None) -> Attempt:
    with session_scope() as s:
        row = claim(s, delivery_id, settings)
    if row is None:
        return Attempt(SKIPPED)

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
        if client is None:
            with httpx.Client(timeout=settings.delivery_timeout_s) as own:
                response = own.post(row.url, content=body, headers=headers)
        else:
            response = client.post(row.url, content=body, headers=headers)
        if 200 <= response.status_code < 300:
            state, retry_in = DeliveryState.delivered, None
        else:
            error = f"HTTP {response.status_code}"
            permanent = response.status_code in (400, 401, 403, 404, 410, 422)
    except httpx.HTTPError as exc:
        error, permanent = f"{type(exc).__name__}: {exc}", False
    if error is not None:
        if permanent or row.attempts >= settings.delivery_max_attempts:
            state, retry_in = DeliveryState.failed, None
        else:
            state, retry_in = DeliveryState.pending, backoff_s(row.attempts, settings)
    with session_scope() as s:
        return record(s, delivery_id, row.turn_id, row.attempts, state, error, retry_in)


def record(
    s: Session,
    delivery_id: str,
    turn_id: str,
    attempts: int,
    state: DeliveryState,
    error: str | None,
    retry_in: float | None,
) -> Attempt:
    """Record how an attempt ended: delivered or failed for good, or pending again to retry."""
    if state is DeliveryState.pending:
        assert retry_in is not None
        still_ours = s.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.sending)
            .values(
                state=DeliveryState.pending,
                last_error=error,
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=retry_in),
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
        .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.sending)
        .values(
            state=state,
            last_error=error,
            delivered_at=datetime.now(UTC) if state is DeliveryState.delivered else None,
        )
        .returning(Delivery.id)
    ).scalar_one_or_none()
    if still_ours is None:
        return _gone(delivery_id)
    s.add(Event(turn_id=turn_id, kind=f"delivery.{state}", data={"attempts": attempts, "error": error}))
    after_commit(s, DELIVERIES.labels(state).inc)
    if state is DeliveryState.failed:
        log.error("delivery %s failed for good after %d attempts: %s", delivery_id, attempts, error)
    return Attempt(state)


def _gone(delivery_id: str) -> Attempt:
    # Erased or past retention while the attempt was in flight: nothing of the conversation
    # may come back, not even an event naming its turn.
    log.info("delivery %s no longer exists (erased or expired during the attempt); nothing recorded", delivery_id)
    return Attempt(SKIPPED)
