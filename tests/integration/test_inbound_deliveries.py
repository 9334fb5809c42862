"""What comes in once is taken once: delivery ids, signed requests, and their replays."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from orchestrator.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from orchestrator.retention import prune_seen_deliveries
from shared import db
from shared.models import SeenDelivery
from tests.integration.conftest import WEBHOOK_SECRET, Stack, rows, script, ticket, wait_done

pytestmark = pytest.mark.integration

QUIET = script(
    billing=[{"finish": "not_applicable"}],
    knowledge=[{"finish": "answered", "answer": "Noted.", "confidence": 0.9}],
    account=[{"finish": "not_applicable"}],
)


def _messages(conversation_id: str) -> int:
    """The customer's messages: replies come and go with the turns, these only with a post."""
    query = "SELECT count(*) AS n FROM messages WHERE conversation_id = :c AND role = 'customer'"
    return int(rows(query, c=conversation_id)[0]["n"])


def _signed(raw: bytes, *, timestamp: float | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, raw)}


def _ticket(stack: Stack, key: str = "helpdesk", **kw: Any) -> dict[str, Any]:
    response = stack.client(key).post("/v1/tickets", json=ticket(json.dumps(QUIET), source=key, **kw))
    assert response.status_code == 202, response.text
    wait_done(response.json()["turn_id"])
    return dict(response.json())


def test_a_follow_up_delivered_again_with_its_delivery_id_is_taken_once(stack: Stack) -> None:
    first = _ticket(stack)
    url = f"/v1/conversations/{first['conversation_id']}/messages"
    headers = {DELIVERY_HEADER: f"dlv-{uuid.uuid4().hex}"}
    once = stack.client("helpdesk").post(url, json={"body": "Also, my invoice"}, headers=headers)
    assert once.status_code == 202 and once.json()["created"] is True
    again = stack.client("helpdesk").post(url, json={"body": "Also, my invoice"}, headers=headers)
    assert again.status_code == 202
    assert again.json() == {**once.json(), "created": False}
    assert _messages(first["conversation_id"]) == 2  # the ticket and one follow-up
    # Another delivery id is another message.
    other = stack.client("helpdesk").post(url, json={"body": "Also, my invoice"}, headers={DELIVERY_HEADER: "x-2"})
    assert other.json()["created"] is True and other.json()["turn_id"] != once.json()["turn_id"]


def test_a_delivery_id_is_the_sources_own(stack: Stack) -> None:
    delivery = {DELIVERY_HEADER: f"dlv-{uuid.uuid4().hex}"}
    mine = stack.client("helpdesk").post("/v1/tickets", json=ticket("hi", source="helpdesk"), headers=delivery)
    theirs = stack.client("globex").post("/v1/tickets", json=ticket("hi", source="globex"), headers=delivery)
    assert mine.json()["created"] is True and theirs.json()["created"] is True
    assert mine.json()["conversation_id"] != theirs.json()["conversation_id"]
    # A new ticket number under a delivery id seen before is the same delivery: nothing new.
    replay = stack.client("helpdesk").post("/v1/tickets", json=ticket("hi", source="helpdesk"), headers=delivery)
    assert replay.json() == {**mine.json(), "created": False}


def test_one_delivery_sent_many_times_at_once_is_stored_once(stack: Stack) -> None:
    first = _ticket(stack)
    url = f"{stack.api}/v1/conversations/{first['conversation_id']}/messages"
    headers = {"Authorization": f"Bearer {stack.keys['helpdesk']}", DELIVERY_HEADER: f"dlv-{uuid.uuid4().hex}"}

    def send(_: int) -> httpx.Response:
        return httpx.post(url, json={"body": "Sent by an impatient retry loop"}, headers=headers, timeout=15)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(send, range(6)))
    assert [a.status_code for a in answers] == [202] * 6
    assert len({a.json()["turn_id"] for a in answers}) == 1
    assert sorted(a.json()["created"] for a in answers) == [False] * 5 + [True]
    assert _messages(first["conversation_id"]) == 2


@pytest.mark.parametrize("value", ["", "has space", "x" * 201, "naïve".encode()])
def test_a_delivery_id_that_is_not_one_is_a_400_and_stores_nothing(stack: Stack, value: str | bytes) -> None:
    payload = ticket("hi")
    response = stack.client("helpdesk").post("/v1/tickets", json=payload, headers={DELIVERY_HEADER: value})
    assert response.status_code == 400
    assert DELIVERY_HEADER in response.json()["detail"]
    assert rows("SELECT id FROM conversations WHERE external_id = :e", e=payload["external_id"]) == []


def test_a_signed_ticket_is_taken_and_the_same_request_replayed_is_a_no_op(stack: Stack) -> None:
    raw = json.dumps(ticket(json.dumps(QUIET), source="signed")).encode()
    headers = _signed(raw)
    first = stack.client("signed").post("/v1/tickets", content=raw, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["created"] is True
    replay = stack.client("signed").post("/v1/tickets", content=raw, headers=headers)
    assert replay.json() == {**first.json(), "created": False}
    assert rows("SELECT count(*) AS n FROM seen_deliveries WHERE source = 'signed'")[0]["n"] >= 1


@pytest.mark.parametrize(
    ("when", "secret"),
    [(-301, WEBHOOK_SECRET), (301, WEBHOOK_SECRET), (0, "another-secret")],
    ids=["stale", "from-the-future", "wrong-secret"],
)
def test_a_signed_source_refuses_a_stale_future_or_wrongly_signed_ticket(
    stack: Stack, when: float, secret: str
) -> None:
    payload = ticket("hi", source="signed")
    raw = json.dumps(payload).encode()
    response = stack.client("signed").post(
        "/v1/tickets", content=raw, headers=_signed(raw, timestamp=time.time() + when, secret=secret)
    )
    assert response.status_code == 401 and response.json()["title"] == "Bad signature"
    assert rows("SELECT id FROM conversations WHERE external_id = :e", e=payload["external_id"]) == []


def test_a_follow_up_on_a_signing_sources_conversation_must_be_signed(stack: Stack) -> None:
    raw = json.dumps(ticket(json.dumps(QUIET), source="signed")).encode()
    first = stack.client("signed").post("/v1/tickets", content=raw, headers=_signed(raw)).json()
    wait_done(first["turn_id"])
    url = f"/v1/conversations/{first['conversation_id']}/messages"
    unsigned = stack.client("signed").post(url, json={"body": "and another thing"})
    assert unsigned.status_code == 401 and SIGNATURE_HEADER in unsigned.json()["detail"]
    by_admin = stack.http.post(url, json={"body": "and another thing"})  # the source signs, whoever posts
    assert by_admin.status_code == 401
    assert _messages(first["conversation_id"]) == 1
    body = json.dumps({"body": "and another thing"}).encode()
    headers = _signed(body)
    signed = stack.client("signed").post(url, content=body, headers=headers)
    assert signed.status_code == 202 and signed.json()["created"] is True
    replay = stack.client("signed").post(url, content=body, headers=headers)
    assert replay.json() == {**signed.json(), "created": False}
    assert _messages(first["conversation_id"]) == 2


def test_delivery_ids_are_forgotten_after_a_day() -> None:
    with db.session_scope() as s:
        s.add(SeenDelivery(source="helpdesk", nonce=f"delivery:old-{uuid.uuid4().hex}"))
        s.add(SeenDelivery(source="helpdesk", nonce=f"delivery:new-{uuid.uuid4().hex}"))
        s.flush()
        s.execute(
            update(SeenDelivery)
            .where(SeenDelivery.nonce.like("delivery:old-%"))
            .values(seen_at=datetime.now(UTC) - timedelta(hours=25))
        )
    with db.session_scope() as s:
        assert prune_seen_deliveries(s) >= 1
    left = rows("SELECT nonce FROM seen_deliveries WHERE nonce LIKE 'delivery:old-%' OR nonce LIKE 'delivery:new-%'")
    assert [r["nonce"][:13] for r in left] == ["delivery:new-"]
