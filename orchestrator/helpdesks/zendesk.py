"""Zendesk's event webhooks in.

Signed ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(secret, timestamp + body)) with
``X-Zendesk-Webhook-Signature-Timestamp`` (ISO 8601), per Zendesk's "Verifying webhook
authenticity". Events: ``zen:event-type:ticket.created`` (the ticket's description is the
customer's first message) and ``zen:event-type:ticket.comment_added`` (a follow-up). The event
names the requester by id only: the caller fetches ``GET /api/v2/users/{id}.json`` for the
email, name, locale and time zone. A comment written by our own author id is ignored (no echo
loop); a public comment by another agent is a human answering in Zendesk.

Satisfaction ratings come from a trigger ("Satisfaction changed") connected to the same
webhook, whose JSON body the README gives: ``{"switchboard_satisfaction": {"id", "ticket_id",
"rating", "comment"}}`` with Zendesk's ``{{satisfaction.current_rating}}`` and
``{{satisfaction.current_comment}}`` placeholders. Legacy CSAT is good or bad (5 or 1); a
1-5 score is taken as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.helpdesks.inbound import (
    BadSignature,
    Event,
    HumanAnswered,
    Ignored,
    Inbound,
    MissingFields,
    Rating,
    html_to_text,
)

SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
CREATED = "zen:event-type:ticket.created"
COMMENT = "zen:event-type:ticket.comment_added"
FRESH = timedelta(minutes=5)
CHANNELS = {"email": "email", "web": "web", "chat": "chat", "voice": "phone", "api": "api", "mobile": "chat"}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: datetime | None = None) -> None:
    signature, timestamp = headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, "")
    if not signature or not timestamp:
        raise BadSignature(f"send {SIGNATURE} and {TIMESTAMP} (Zendesk signs every webhook)")
    try:
        at = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise BadSignature(f"{TIMESTAMP} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if abs((now or datetime.now(UTC)) - at) > FRESH:
        raise BadSignature(f"{TIMESTAMP} is more than 5 minutes from now")
    if not hmac.compare_digest(signature.encode(), sign(secret, timestamp, body).encode()):
        raise BadSignature("the signature does not match this helpdesk's webhook_secret")


def _score(rating: str) -> int | None:
    word = rating.strip().lower()
    if word.startswith("good"):
        return 5
    if word.startswith("bad"):
        return 1
    return int(word) if word in ("1", "2", "3", "4", "5") else None


def _satisfaction(hook: Mapping[str, Any]) -> Event:
    ticket_id = str(hook.get("ticket_id") or "").strip()
    rating = str(hook.get("rating") or "")
    missing = [n for n, v in (("ticket_id", ticket_id), ("rating", rating)) if not v]
    if missing:
        raise MissingFields("Zendesk satisfaction", [f"switchboard_satisfaction.{n}" for n in missing])
    score = _score(rating)
    if score is None:  # "offered", "unoffered": asked, not answered yet
        return Ignored(f"satisfaction {rating[:40]!r} is not a rating")
    comment = str(hook.get("comment") or "").strip() or None
    dedupe = hashlib.sha256(f"{ticket_id}\x00{score}\x00{comment or ''}".encode()).hexdigest()
    return Rating(ticket_id, f"zendesk:csat:{dedupe}", score, comment)


def parse(payload: Mapping[str, Any], *, our_author_id: str) -> Event:
    if isinstance(payload.get("switchboard_satisfaction"), Mapping):
        return _satisfaction(payload["switchboard_satisfaction"])
    kind = str(payload.get("type") or "")
    dedupe = str(payload.get("id") or "")
    detail = payload.get("detail") if isinstance(payload.get("detail"), Mapping) else {}
    assert isinstance(detail, Mapping)
    if kind not in (CREATED, COMMENT):
        return Ignored(f"event {kind or 'without a type'} is not one Switchboard answers", dedupe)
    missing = [name for name, value in (("id", dedupe), ("detail.id", detail.get("id"))) if not value]
    ticket_id = str(detail.get("id") or "")
    channel = CHANNELS.get(str((detail.get("via") or {}).get("channel") or "email"), "email")
    requester = detail.get("requester_id")
    if kind == CREATED:
        body = html_to_text(str(detail.get("description") or ""))
        missing += [n for n, v in (("detail.description", body), ("detail.requester_id", requester)) if not v]
        if missing:
            raise MissingFields("Zendesk ticket.created", missing)
        return Inbound(
            "created",
            ticket_id,
            f"zendesk:{dedupe}",
            body,
            subject=str(detail.get("subject") or ""),
            channel=channel,
            user_id=str(requester),
        )
    comment = (payload.get("event") or {}).get("comment") if isinstance(payload.get("event"), Mapping) else None
    if not isinstance(comment, Mapping):
        raise MissingFields("Zendesk ticket.comment_added", [*missing, "event.comment"])
    author = comment.get("author") if isinstance(comment.get("author"), Mapping) else {}
    assert isinstance(author, Mapping)
    author_id = str(author.get("id") or "")
    if missing:
        raise MissingFields("Zendesk ticket.comment_added", missing)
    if author_id and author_id == str(our_author_id):
        return Ignored("our own comment", f"zendesk:{dedupe}")
    if not comment.get("is_public", True):
        return Ignored("a private note", f"zendesk:{dedupe}")
    if author.get("is_staff"):
        return HumanAnswered(ticket_id, f"zendesk:{dedupe}", author_id or None)
    body = html_to_text(str(comment.get("body") or ""))
    if not body:
        raise MissingFields("Zendesk ticket.comment_added", ["event.comment.body"])
    return Inbound(
        "replied",
        ticket_id,
        f"zendesk:{dedupe}",
        body,
        subject=str(detail.get("subject") or ""),
        channel=channel,
        user_id=str(requester or author_id) or None,
        name=str(author.get("name") or ""),
        message_id=str(comment.get("id") or "") or None,
    )


def customer_of(user: Mapping[str, Any]) -> dict[str, Any]:
    """The customer fields of a ``GET /api/v2/users/{id}.json`` answer."""
    u = user.get("user") if isinstance(user.get("user"), Mapping) else user
    assert isinstance(u, Mapping)
    return {
        "email": u.get("email") or None,
        "name": u.get("name") or "",
        "locale": u.get("locale") or None,
        "timezone": u.get("iana_time_zone") or None,
    }
