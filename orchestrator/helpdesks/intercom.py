"""Intercom's webhook notifications in.

Signed ``X-Hub-Signature: sha1=<hex HMAC-SHA1(client_secret, body)>``. Topics
``conversation.user.created`` (the conversation's source is the customer's first message)
and ``conversation.user.replied`` (the newest conversation part by the user or lead); the
notification's ``id`` is the same on every retry. Bodies are HTML; the customer is the source
or part author, and the caller fetches ``GET /contacts/{id}`` when the email is missing.
``conversation.admin.replied`` by an admin other than ours is a human answering in Intercom.
``conversation.rating.added`` carries the customer's rating (1-5) in ``conversation_rating``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
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

SIGNATURE = "x-hub-signature"
CREATED = "conversation.user.created"
REPLIED = "conversation.user.replied"
ADMIN_REPLIED = "conversation.admin.replied"
RATING_ADDED = "conversation.rating.added"
CUSTOMERS = ("user", "lead", "contact")


def sign(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    sent = headers.get(SIGNATURE, "")
    if not sent.startswith("sha1="):
        raise BadSignature(f"send {SIGNATURE}: sha1=<hex> (Intercom signs every notification)")
    if not hmac.compare_digest(sent.encode(), sign(secret, body).encode()):
        raise BadSignature("the signature does not match this helpdesk's client_secret")


def _parts(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    holder = item.get("conversation_parts")
    parts = holder.get("conversation_parts") if isinstance(holder, Mapping) else None
    return [p for p in parts or [] if isinstance(p, Mapping)]


def parse(payload: Mapping[str, Any], *, our_admin_id: str) -> Event:
    topic = str(payload.get("topic") or "")
    notification = str(payload.get("id") or "")
    data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    item = data.get("item") if isinstance(data.get("item"), Mapping) else {}
    assert isinstance(item, Mapping)
    dedupe = f"intercom:{notification}"
    if topic == RATING_ADDED:
        rated = item.get("conversation_rating") if isinstance(item.get("conversation_rating"), Mapping) else {}
        assert isinstance(rated, Mapping)
        score: Any = rated.get("rating")
        missing = [n for n, v in (("id", notification), ("data.item.id", item.get("id"))) if not v]
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            missing.append("data.item.conversation_rating.rating (1-5)")
        if missing:
            raise MissingFields("Intercom", missing)
        remark = html_to_text(str(rated.get("remark") or "")) or None
        return Rating(str(item["id"]), dedupe, score, remark)
    if topic not in (CREATED, REPLIED, ADMIN_REPLIED):
        return Ignored(f"topic {topic or 'without a name'} is not one Switchboard answers", dedupe)
    conversation_id = str(item.get("id") or "")
    missing = [n for n, v in (("id", notification), ("data.item.id", conversation_id)) if not v]
    if topic == ADMIN_REPLIED:
        if missing:
            raise MissingFields("Intercom", missing)
        admins = [p for p in _parts(item) if (p.get("author") or {}).get("type") == "admin"]
        admin_id = str(((admins[-1].get("author") or {}).get("id")) if admins else "")
        if admin_id == str(our_admin_id):
            return Ignored("our own reply", dedupe)
        return HumanAnswered(conversation_id, dedupe, admin_id or None)
    source = item.get("source") if isinstance(item.get("source"), Mapping) else {}
    assert isinstance(source, Mapping)
    said: Any
    author: Any
    if topic == CREATED:
        said, author = source.get("body"), source.get("author")
        part_id = str(source.get("id") or "") or None
    else:
        theirs = [p for p in _parts(item) if (p.get("author") or {}).get("type") in CUSTOMERS and p.get("body")]
        said, author = (theirs[-1].get("body"), theirs[-1].get("author")) if theirs else (None, None)
        part_id = str(theirs[-1].get("id") or "") or None if theirs else None
    body = html_to_text(str(said or ""))
    if not body:
        missing.append("data.item.source.body" if topic == CREATED else "data.item.conversation_parts (a user part)")
    author = author if isinstance(author, Mapping) else {}
    contacts = item.get("contacts")
    listed = contacts.get("contacts") if isinstance(contacts, Mapping) else None
    contact_id = str(author.get("id") or (listed[0].get("id") if listed and isinstance(listed[0], Mapping) else ""))
    if not contact_id:
        missing.append("data.item.source.author.id")
    if missing:
        raise MissingFields("Intercom", missing)
    return Inbound(
        "created" if topic == CREATED else "replied",
        conversation_id,
        dedupe,
        body,
        subject=html_to_text(str(source.get("subject") or item.get("title") or "")),
        channel="chat",
        user_id=contact_id,
        email=str(author.get("email") or "") or None,
        name=str(author.get("name") or ""),
        message_id=part_id,
    )


def customer_of(contact: Mapping[str, Any]) -> dict[str, Any]:
    """The customer fields of a ``GET /contacts/{id}`` answer."""
    location = contact.get("location") if isinstance(contact.get("location"), Mapping) else {}
    assert isinstance(location, Mapping)
    return {
        "email": contact.get("email") or None,
        "name": contact.get("name") or "",
        "locale": contact.get("browser_language") or contact.get("language_override") or None,
        "timezone": location.get("timezone") or None,
    }
