"""Each helpdesk's own webhook, as its docs describe it, read into our events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.helpdesks import freshdesk, intercom, zendesk
from orchestrator.helpdesks.inbound import (
    BadSignature,
    HumanAnswered,
    Ignored,
    Inbound,
    MissingFields,
    Rating,
    html_to_text,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_html_bodies_become_the_text_the_customer_wrote() -> None:
    markup = "<div><p>Hi&nbsp;there,</p><p>I was <b>charged</b> twice<br>for pay_1.</p><script>alert(1)</script></div>"
    assert html_to_text(markup) == "Hi there,\n\nI was charged twice\nfor pay_1."
    assert html_to_text("plain &amp; simple") == "plain & simple"


# --------------------------------------------------------------------------- Zendesk


def zendesk_event(kind: str, **comment: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "account_id": 9001,
        "id": "01HZX8K2Q3W4E5R6T7Y8U9I0OP",
        "time": "2026-12-02T07:59:58Z",
        "zendesk_event_version": "2022-11-06",
        "subject": "zen:ticket:35436",
        "detail": {
            "id": "35436",
            "subject": "Charged twice",
            "description": "<p>Hi, I was charged twice for my November invoice.</p>",
            "requester_id": "20978392",
            "via": {"channel": "email"},
            "status": "NEW",
        },
        "event": {},
    }
    if comment:
        event["event"] = {"comment": comment}
    return event


def zendesk_headers(body: bytes, secret: str = "zd-secret", at: datetime = NOW) -> dict[str, str]:
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {zendesk.SIGNATURE: zendesk.sign(secret, timestamp, body), zendesk.TIMESTAMP: timestamp}


def test_a_zendesk_webhook_is_taken_only_with_its_signature_fresh_and_intact() -> None:
    body = json.dumps(zendesk_event(zendesk.CREATED)).encode()
    zendesk.verify(zendesk_headers(body), body, "zd-secret", now=NOW)
    with pytest.raises(BadSignature, match="does not match"):
        zendesk.verify(zendesk_headers(body), body + b" ", "zd-secret", now=NOW)
    with pytest.raises(BadSignature, match="does not match"):
        zendesk.verify(zendesk_headers(body, secret="other"), body, "zd-secret", now=NOW)
    with pytest.raises(BadSignature, match="5 minutes"):
        zendesk.verify(zendesk_headers(body, at=NOW - timedelta(minutes=6)), body, "zd-secret", now=NOW)
    with pytest.raises(BadSignature, match="send"):
        zendesk.verify({}, body, "zd-secret", now=NOW)


def test_a_new_zendesk_ticket_is_a_new_ticket_whose_requester_is_looked_up() -> None:
    event = zendesk.parse(zendesk_event(zendesk.CREATED), our_author_id="777")
    assert isinstance(event, Inbound) and event.event == "created"
    assert (event.ticket_id, event.subject, event.user_id) == ("35436", "Charged twice", "20978392")
    assert event.body == "Hi, I was charged twice for my November invoice."
    assert event.email is None  # the event names the requester by id: GET /api/v2/users/{id}.json
    assert event.dedupe == "zendesk:01HZX8K2Q3W4E5R6T7Y8U9I0OP"
    looked_up = {"user": {"id": 20978392, "email": "ana@example.com", "name": "Ana", "locale": "es",
                          "iana_time_zone": "Europe/Madrid"}}  # fmt: skip
    assert zendesk.customer_of(looked_up) == {
        "email": "ana@example.com",
        "name": "Ana",
        "locale": "es",
        "timezone": "Europe/Madrid",
    }


def test_zendesk_comments_the_customer_ours_a_colleagues_and_a_note() -> None:
    customer = zendesk.parse(
        zendesk_event(zendesk.COMMENT, id=5, body="Still waiting", is_public=True, author={"id": "20978392"}),
        our_author_id="777",
    )
    assert isinstance(customer, Inbound) and customer.event == "replied" and customer.body == "Still waiting"
    ours = zendesk.parse(
        zendesk_event(zendesk.COMMENT, body="x", author={"id": "777", "is_staff": True}), our_author_id="777"
    )
    assert isinstance(ours, Ignored) and ours.reason == "our own comment"  # no echo loop
    colleague = zendesk.parse(
        zendesk_event(zendesk.COMMENT, body="On it", is_public=True, author={"id": "555", "is_staff": True}),
        our_author_id="777",
    )
    assert isinstance(colleague, HumanAnswered) and colleague.ticket_id == "35436"
    note = zendesk.parse(
        zendesk_event(zendesk.COMMENT, body="x", is_public=False, author={"id": "555"}), our_author_id="777"
    )
    assert isinstance(note, Ignored)


def test_a_zendesk_event_without_what_a_ticket_needs_says_what_is_missing() -> None:
    event = zendesk_event(zendesk.CREATED)
    del event["detail"]["requester_id"]
    event["detail"]["description"] = ""
    with pytest.raises(MissingFields) as missing:
        zendesk.parse(event, our_author_id="777")
    assert missing.value.fields == ["detail.description", "detail.requester_id"]
    other = zendesk.parse(zendesk_event("zen:event-type:ticket.priority_changed"), our_author_id="777")
    assert isinstance(other, Ignored)


# --------------------------------------------------------------------------- Freshdesk


def freshdesk_hook(comment: str = "") -> dict[str, Any]:
    return {
        "freshdesk_webhook": {
            "ticket_id": "1042",
            "ticket_subject": "Refund",
            "ticket_description": "<div>Please refund the duplicate charge.</div>",
            "ticket_latest_public_comment": comment,
            "ticket_contact_email": "ben@example.com",
            "ticket_contact_name": "Ben",
            "ticket_source": "Email",
            "ticket_status": "Open",
        }
    }


def test_a_freshdesk_webhook_needs_the_rules_bearer_token() -> None:
    freshdesk.verify({"authorization": "Bearer fd-token"}, "fd-token")
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic fd-token"}):
        with pytest.raises(BadSignature):
            freshdesk.verify(headers, "fd-token")


def test_freshdesk_new_tickets_and_comments_are_told_apart_and_deduplicated() -> None:
    new = freshdesk.parse(freshdesk_hook())
    assert isinstance(new, Inbound) and new.event == "created" and new.body == "Please refund the duplicate charge."
    assert (new.email, new.name, new.channel) == ("ben@example.com", "Ben", "email")
    again = freshdesk.parse(freshdesk_hook())
    reply = freshdesk.parse(freshdesk_hook("<p>Any news?</p>"))
    assert isinstance(again, Inbound) and isinstance(reply, Inbound)
    assert again.dedupe == new.dedupe != reply.dedupe  # no delivery id: (ticket, event, comment) is the key
    assert reply.event == "replied" and reply.body == "Any news?"
    with pytest.raises(MissingFields) as missing:
        freshdesk.parse({"freshdesk_webhook": {"ticket_id": "1"}})
    assert missing.value.fields == ["freshdesk_webhook.ticket_contact_email", "freshdesk_webhook.ticket_description"]


# --------------------------------------------------------------------------- Intercom


def intercom_notification(topic: str, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": "notification_event",
        "app_id": "abc123",
        "id": "notif_5b1c2d3e",
        "topic": topic,
        "created_at": 1764662400,
        "data": {
            "type": "notification_event_data",
            "item": {
                "type": "conversation",
                "id": "215470139",
                "title": None,
                "source": {
                    "type": "conversation",
                    "id": "2301",
                    "delivered_as": "customer_initiated",
                    "subject": "",
                    "body": "<p>I can&#39;t log in</p>",
                    "author": {"type": "user", "id": "6570cc", "name": "Cai", "email": ""},
                },
                "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "6570cc"}]},
                "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts or []},
            },
        },
    }


def test_an_intercom_notification_is_taken_only_with_its_signature() -> None:
    body = json.dumps(intercom_notification(intercom.CREATED)).encode()
    intercom.verify({intercom.SIGNATURE: intercom.sign("ic-secret", body)}, body, "ic-secret")
    with pytest.raises(BadSignature):
        intercom.verify({intercom.SIGNATURE: intercom.sign("ic-secret", body)}, body[:-1], "ic-secret")
    with pytest.raises(BadSignature):
        intercom.verify({}, body, "ic-secret")


def test_intercom_conversations_replies_and_admins() -> None:
    new = intercom.parse(intercom_notification(intercom.CREATED), our_admin_id="42")
    assert isinstance(new, Inbound) and new.event == "created" and new.body == "I can't log in"
    assert (new.ticket_id, new.user_id, new.email, new.dedupe) == (
        "215470139",
        "6570cc",
        None,
        "intercom:notif_5b1c2d3e",
    )
    parts = [
        {"part_type": "comment", "id": "1", "body": "<p>first</p>", "author": {"type": "user", "id": "6570cc"}},
        {"part_type": "comment", "id": "2", "body": "<p>Answer</p>", "author": {"type": "admin", "id": "42"}},
        {"part_type": "comment", "id": "3", "body": "<p>still broken</p>", "author": {"type": "user", "id": "6570cc"}},
    ]
    reply = intercom.parse(intercom_notification(intercom.REPLIED, parts), our_admin_id="42")
    assert isinstance(reply, Inbound) and reply.event == "replied" and reply.body == "still broken"
    ours = intercom.parse(intercom_notification(intercom.ADMIN_REPLIED, parts[:2]), our_admin_id="42")
    assert isinstance(ours, Ignored)
    human = [{"part_type": "comment", "id": "4", "body": "hi", "author": {"type": "admin", "id": "99"}}]
    colleague = intercom.parse(intercom_notification(intercom.ADMIN_REPLIED, human), our_admin_id="42")
    assert isinstance(colleague, HumanAnswered) and colleague.author_id == "99"
    assert intercom.customer_of(
        {"email": "cai@example.com", "name": "Cai", "browser_language": "fr", "location": {"timezone": "Europe/Paris"}}
    ) == {
        "email": "cai@example.com",
        "name": "Cai",
        "locale": "fr",
        "timezone": "Europe/Paris",
    }


def test_satisfaction_ratings_are_read_as_one_to_five() -> None:
    good = zendesk.parse(
        {"switchboard_satisfaction": {"ticket_id": "35436", "rating": "Good, I'm satisfied", "comment": " Fast "}},
        our_author_id="777",
    )
    assert isinstance(good, Rating) and (good.ticket_id, good.score, good.comment) == ("35436", 5, "Fast")
    bad = zendesk.parse({"switchboard_satisfaction": {"ticket_id": "35436", "rating": "bad"}}, our_author_id="777")
    assert isinstance(bad, Rating) and bad.score == 1 and bad.dedupe != good.dedupe
    three = zendesk.parse({"switchboard_satisfaction": {"ticket_id": "1", "rating": "3"}}, our_author_id="777")
    assert isinstance(three, Rating) and three.score == 3
    offered = zendesk.parse({"switchboard_satisfaction": {"ticket_id": "1", "rating": "offered"}}, our_author_id="7")
    assert isinstance(offered, Ignored)
    with pytest.raises(MissingFields) as missing:
        zendesk.parse({"switchboard_satisfaction": {"rating": "good"}}, our_author_id="777")
    assert missing.value.fields == ["switchboard_satisfaction.ticket_id"]

    def rated(value: Any) -> dict[str, Any]:
        item = {"type": "conversation", "id": "215", "conversation_rating": {"rating": value, "remark": "<p>ok</p>"}}
        return {"type": "notification_event", "id": "notif_9", "topic": "conversation.rating.added",
                "data": {"item": item}}  # fmt: skip

    four = intercom.parse(rated(4), our_admin_id="42")
    assert isinstance(four, Rating) and (four.ticket_id, four.score, four.comment) == ("215", 4, "ok")
    for wrong in (0, 6, "5", True, None):
        with pytest.raises(MissingFields):
            intercom.parse(rated(wrong), our_admin_id="42")


def test_a_freshdesk_agent_reply_rule_is_a_human_answering_carrying_what_they_wrote() -> None:
    hook = {
        "freshdesk_webhook": {
            "ticket_id": "88",
            "event": "agent_replied",
            "ticket_latest_public_comment": "<p>Done</p>",
        }
    }
    event = freshdesk.parse(hook)
    assert isinstance(event, HumanAnswered) and (event.ticket_id, event.body) == ("88", "Done")
    with pytest.raises(MissingFields):
        freshdesk.parse({"freshdesk_webhook": {"event": "agent_replied"}})
