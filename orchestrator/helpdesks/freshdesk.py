"""Freshdesk's automation-rule webhooks in.

Freshdesk does not sign webhooks: the rule sends a shared secret as ``Authorization: Bearer
<webhook_token>``. The body is the JSON the README gives to paste into the rule:
``{"freshdesk_webhook": {"ticket_id", "ticket_subject", "ticket_description",
"ticket_latest_public_comment", "ticket_contact_email", "ticket_contact_name",
"ticket_source", "ticket_status"}}``. A ticket with no public comment yet is a new ticket
(its description is the customer's message); otherwise the latest public comment is a
follow-up. Freshdesk has no delivery id, so a webhook is de-duplicated on (ticket id, event,
latest comment).

A third rule (a reply sent by an agent) adds ``"event": "agent_replied"``: a human answered
in Freshdesk. Freshdesk's placeholders do not say which agent, and our own replies are sent
by an agent too (the API key's), so the worker compares the comment with our replies first.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal

from orchestrator.helpdesks.inbound import BadSignature, Event, HumanAnswered, Inbound, MissingFields, html_to_text

# Freshdesk's ticket sources, as its API numbers them (and as the placeholder prints them).
SOURCES = {"1": "email", "2": "web", "3": "phone", "7": "chat", "9": "web", "10": "email", "email": "email",
           "portal": "web", "phone": "phone", "chat": "chat", "feedback widget": "web"}  # fmt: skip


def verify(headers: Mapping[str, str], token: str) -> None:
    scheme, _, sent = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent:
        raise BadSignature("send the helpdesk's webhook_token as `Authorization: Bearer <token>` (the rule's header)")
    if not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise BadSignature("that is not this helpdesk's webhook_token")


def parse(payload: Mapping[str, Any], *, hint: str | None = None) -> Event:
    """``hint``: the rule's ``?event=`` (the third rule's ``agent_replied``), when its body
    cannot say it (Freshdesk's simple content sends only the fields picked)."""
    hook = payload.get("freshdesk_webhook")
    if not isinstance(hook, Mapping):
        raise MissingFields("Freshdesk", ["freshdesk_webhook"])
    ticket_id = str(hook.get("ticket_id") or "").strip()
    email = str(hook.get("ticket_contact_email") or "").strip()
    comment = html_to_text(str(hook.get("ticket_latest_public_comment") or ""))
    description = html_to_text(str(hook.get("ticket_description") or ""))
    missing = [
        f"freshdesk_webhook.{n}" for n, v in (("ticket_id", ticket_id), ("ticket_contact_email", email)) if not v
    ]
    if str(hook.get("event") or hint or "") == "agent_replied":
        if not ticket_id:
            raise MissingFields("Freshdesk", ["freshdesk_webhook.ticket_id"])
        key = hashlib.sha256(f"{ticket_id}\x00agent_replied\x00{comment}".encode()).hexdigest()
        return HumanAnswered(ticket_id, f"freshdesk:{key}", None, comment or None)
    if not comment and not description:
        missing.append("freshdesk_webhook.ticket_description")
    if missing:
        raise MissingFields("Freshdesk", missing)
    event: Literal["created", "replied"] = "replied" if comment else "created"
    body = comment or description
    key = hashlib.sha256(f"{ticket_id}\x00{event}\x00{body}".encode()).hexdigest()
    return Inbound(
        event,
        ticket_id,
        f"freshdesk:{key}",
        body,
        subject=str(hook.get("ticket_subject") or ""),
        channel=SOURCES.get(str(hook.get("ticket_source") or "").strip().lower(), "email"),
        email=email,
        name=str(hook.get("ticket_contact_name") or ""),
    )
