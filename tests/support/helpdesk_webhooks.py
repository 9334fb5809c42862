"""Webhooks as Zendesk, Freshdesk and Intercom send them (their documented shapes), signed
their own way, for tests that post them to POST /v1/helpdesks/{name}/webhook."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from orchestrator.helpdesks import intercom, zendesk

# The connected helpdesks of the test stack: name -> (kind, the settings entry but base_url).
ZENDESK = {
    "kind": "zendesk",
    "email": "bot@acme.test",
    "api_token": "zd-api-token",
    "webhook_secret": "zd-webhook-secret-0123",
    "author_id": 777,
    "escalation_group_id": 42,
    "timeout_s": 1.0,
}
FRESHDESK = {
    "kind": "freshdesk",
    "api_key": "fd-api-key",
    "webhook_token": "fd-webhook-token-0123",
    "escalation_group_id": 7,
    "timeout_s": 1.0,
}
INTERCOM = {
    "kind": "intercom",
    "access_token": "ic-access-token",
    "client_secret": "ic-client-secret-0123",
    "admin_id": "4242",
    "escalation_team_id": "team-9",
    "timeout_s": 1.0,
}
CONFIGS = {"zendesk": ZENDESK, "freshdesk": FRESHDESK, "intercom": INTERCOM}


def zendesk_created(ticket_id: str, requester_id: str, description: str, subject: str = "Help") -> dict[str, Any]:
    return {
        "type": zendesk.CREATED,
        "account_id": 9001,
        "id": uuid.uuid4().hex,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "zendesk_event_version": "2022-11-06",
        "subject": f"zen:ticket:{ticket_id}",
        "detail": {
            "id": ticket_id,
            "subject": subject,
            "description": description,
            "requester_id": requester_id,
            "via": {"channel": "email"},
            "status": "NEW",
        },
        "event": {},
    }


def zendesk_comment(
    ticket_id: str, requester_id: str, body: str, *, author_id: str, staff: bool = False, public: bool = True
) -> dict[str, Any]:
    event = zendesk_created(ticket_id, requester_id, "", "Help")
    event["type"] = zendesk.COMMENT
    event["event"] = {
        "comment": {
            "id": uuid.uuid4().int % 10**9,
            "body": body,
            "is_public": public,
            "author": {"id": author_id, "is_staff": staff, "name": "Agent" if staff else "Ana"},
        }
    }
    return event


def freshdesk_hook(ticket_id: str, email: str, description: str, latest_comment: str = "") -> dict[str, Any]:
    return {
        "freshdesk_webhook": {
            "ticket_id": ticket_id,
            "ticket_subject": "Help",
            "ticket_description": f"<div>{description}</div>",
            "ticket_latest_public_comment": latest_comment,
            "ticket_contact_email": email,
            "ticket_contact_name": "Ana Ruiz",
            "ticket_source": "Email",
            "ticket_status": "Open",
        }
    }


def _conversation(conversation_id: str, contact_id: str, source_body: str, parts: list[dict[str, Any]]) -> Any:
    return {
        "type": "conversation",
        "id": conversation_id,
        "title": None,
        "source": {
            "type": "conversation",
            "id": "403918" + conversation_id[-3:],
            "delivered_as": "customer_initiated",
            "subject": "",
            "body": source_body,
            "author": {"type": "user", "id": contact_id, "name": "Ana Ruiz", "email": ""},
        },
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": contact_id}]},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts},
    }


def intercom_notification(topic: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "notification_event",
        "app_id": "abc123",
        "id": f"notif_{uuid.uuid4().hex}",
        "topic": topic,
        "created_at": int(datetime.now(UTC).timestamp()),
        "data": {"type": "notification_event_data", "item": item},
    }


def intercom_created(conversation_id: str, contact_id: str, body: str) -> dict[str, Any]:
    return intercom_notification(intercom.CREATED, _conversation(conversation_id, contact_id, f"<p>{body}</p>", []))


def intercom_replied(conversation_id: str, contact_id: str, body: str) -> dict[str, Any]:
    part = {"type": "conversation_part", "id": str(uuid.uuid4().int % 10**9), "part_type": "comment",
            "body": f"<p>{body}</p>", "author": {"type": "user", "id": contact_id}}  # fmt: skip
    return intercom_notification(intercom.REPLIED, _conversation(conversation_id, contact_id, "<p>…</p>", [part]))


def intercom_admin_replied(conversation_id: str, contact_id: str, admin_id: str, body: str) -> dict[str, Any]:
    part = {"type": "conversation_part", "id": str(uuid.uuid4().int % 10**9), "part_type": "comment",
            "body": f"<p>{body}</p>", "author": {"type": "admin", "id": admin_id}}  # fmt: skip
    return intercom_notification(intercom.ADMIN_REPLIED, _conversation(conversation_id, contact_id, "<p>…</p>", [part]))


def signed(kind: str, payload: dict[str, Any], *, secret: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body as sent, and the headers that prove it, the helpdesk's own way."""
    raw = json.dumps(payload).encode()
    config = CONFIGS[kind]
    headers = {"Content-Type": "application/json"}
    if kind == "zendesk":
        key = secret or str(config["webhook_secret"])
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers |= {zendesk.SIGNATURE: zendesk.sign(key, at, raw), zendesk.TIMESTAMP: at}
    elif kind == "freshdesk":
        headers["Authorization"] = f"Bearer {secret or config['webhook_token']}"
    else:
        headers[intercom.SIGNATURE] = intercom.sign(secret or str(config["client_secret"]), raw)
    return raw, headers


def zendesk_satisfaction(ticket_id: str, rating: str, comment: str = "") -> dict[str, Any]:
    """The body of the README's Zendesk trigger on "Satisfaction changed"."""
    return {"switchboard_satisfaction": {"ticket_id": ticket_id, "rating": rating, "comment": comment}}


def intercom_rating(conversation_id: str, contact_id: str, rating: int, remark: str = "") -> dict[str, Any]:
    item = _conversation(conversation_id, contact_id, "<p>…</p>", [])
    item["conversation_rating"] = {"rating": rating, "remark": remark, "created_at": 1764662400,
                                   "contact": {"type": "contact", "id": contact_id}}  # fmt: skip
    return intercom_notification(intercom.RATING_ADDED, item)
