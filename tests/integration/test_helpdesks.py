"""Zendesk, Freshdesk and Intercom through the whole stack: the helpdesk's own webhook in, the
agents, and the reply, the escalation and the hand-off out through its API, over real HTTP to
local servers that behave as each API documents.

Each test writes the path its ticket took (the webhook's answer, the stored events, the API
calls the helpdesk saw) to artifacts/helpdesk-<kind>-<test>.json, for the record."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ROOT, Stack, rows, script, ticket, wait_done
from tests.support.fake_helpdesks import FakeHelpdesk
from tests.support.helpdesk_webhooks import (
    FRESHDESK,
    INTERCOM,
    ZENDESK,
    freshdesk_hook,
    intercom_admin_replied,
    intercom_created,
    intercom_rating,
    intercom_replied,
    signed,
    zendesk_comment,
    zendesk_created,
    zendesk_satisfaction,
)

pytestmark = pytest.mark.integration

KINDS = ("zendesk", "freshdesk", "intercom")
EMAIL = "ana.ruiz@example.com"


def post(stack: Stack, kind: str, payload: dict[str, Any], *, secret: str | None = None) -> httpx.Response:
    # Freshdesk's third rule says what it is in its URL (README): the test's payload carries it aside.
    query = payload.pop("_query", "")
    raw, headers = signed(kind, payload, secret=secret)
    return httpx.post(f"{stack.api}/v1/helpdesks/{kind}/webhook{query}", content=raw, headers=headers, timeout=10)


class Customer:
    """One customer of one helpdesk, and the webhooks that helpdesk sends for their ticket."""

    def __init__(self, kind: str, fake: FakeHelpdesk) -> None:
        self.kind, self.fake = kind, fake
        self.ticket = str(random.randrange(10**6, 10**9))
        self.user = str(random.randrange(10**6, 10**9))
        fake.users[self.user] = {
            "id": self.user,
            "email": EMAIL,
            "name": "Ana Ruiz",
            "locale": "es",
            "browser_language": "es",
            "iana_time_zone": "Europe/Madrid",
            "location": {"timezone": "Europe/Madrid"},
        }

    def new_ticket(self, body: str) -> dict[str, Any]:
        if self.kind == "zendesk":
            return zendesk_created(self.ticket, self.user, f"<p>{body}</p>")
        if self.kind == "freshdesk":
            return freshdesk_hook(self.ticket, EMAIL, body)
        return intercom_created(self.ticket, self.user, body)

    def follow_up(self, body: str) -> dict[str, Any]:
        if self.kind == "zendesk":
            return zendesk_comment(self.ticket, self.user, body, author_id=self.user)
        if self.kind == "freshdesk":
            return freshdesk_hook(self.ticket, EMAIL, "first message", latest_comment=f"<div>{body}</div>")
        return intercom_replied(self.ticket, self.user, body)

    def human_answer(self, body: str) -> dict[str, Any]:
        if self.kind == "zendesk":
            return zendesk_comment(self.ticket, self.user, body, author_id="9911", staff=True)
        if self.kind == "freshdesk":  # the third rule of the README: ?event=agent_replied
            return freshdesk_hook(self.ticket, EMAIL, "first message", latest_comment=body) | {
                "_query": "?event=agent_replied"
            }
        return intercom_admin_replied(self.ticket, self.user, "9911", body)

    def our_echo(self, body: str) -> dict[str, Any]:
        """Our own reply, as the helpdesk's webhook tells it back."""
        if self.kind == "zendesk":
            return zendesk_comment(self.ticket, self.user, body, author_id=str(ZENDESK["author_id"]), staff=True)
        if self.kind == "freshdesk":
            return freshdesk_hook(self.ticket, EMAIL, "first message", latest_comment=body) | {
                "_query": "?event=agent_replied"
            }
        return intercom_admin_replied(self.ticket, self.user, str(INTERCOM["admin_id"]), body)

    def public(self) -> list[str]:
        return self.fake.public_replies(self.ticket)

    def notes(self) -> list[str]:
        return [c.body for c in self.fake.ticket(self.ticket).comments if not c.public]

    def conversation(self) -> dict[str, Any]:
        found = rows("SELECT * FROM conversations WHERE source = :s AND external_id = :e", s=self.kind, e=self.ticket)
        assert found, f"no conversation for {self.kind} ticket {self.ticket}"
        return found[0]


@pytest.fixture(params=KINDS)
def customer(request: pytest.FixtureRequest, helpdesks: dict[str, FakeHelpdesk]) -> Customer:
    return Customer(request.param, helpdesks[request.param])


def until(what: str, check: Callable[[], Any], timeout: float = 25.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:g}s")


def event_state(event_id: str) -> str:
    return str(rows("SELECT state FROM helpdesk_events WHERE id = :e", e=event_id)[0]["state"])


def record_path(name: str, customer: Customer, answers: list[dict[str, Any]]) -> None:
    """The ticket's path, for the record: what the webhook route answered, what Switchboard
    stored and did, and what the helpdesk's API was asked."""
    conversation = customer.conversation()
    events = rows(
        "SELECT kind, data, at FROM events WHERE conversation_id = :c OR turn_id IN "
        "(SELECT id FROM turns WHERE conversation_id = :c) ORDER BY id",
        c=conversation["id"],
    )
    with customer.fake.lock:
        calls = [f"{m} {p}" for m, p in customer.fake.requests if customer.ticket in p or customer.user in p]
    out = ROOT / "artifacts" / f"helpdesk-{customer.kind}-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "webhook_answers": answers,
                "events": [{"kind": e["kind"], "at": e["at"].isoformat(), "data": e["data"]} for e in events],
                "helpdesk_api_calls": calls,
                "ticket_in_helpdesk": [
                    {"public": c.public, "author": c.author_id, "body": c.body[:160]}
                    for c in customer.fake.ticket(customer.ticket).comments
                ],
                "tags": customer.fake.ticket(customer.ticket).tags,
            },
            indent=2,
            default=str,
        )
    )


def test_a_ticket_is_answered_in_the_helpdesk_it_came_from(stack: Stack, customer: Customer) -> None:
    first = post(stack, customer.kind, customer.new_ticket("What is my balance?"))
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted"
    # The helpdesk sends it again (a retry, or at-least-once): taken once.
    again = post(stack, customer.kind, customer.new_ticket("What is my balance?"))
    if customer.kind == "freshdesk":  # no delivery id: the same ticket, event and text are the same webhook
        assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    else:  # a new delivery id for the same ticket: a second event, and still one conversation
        assert again.status_code == 202
    replies = until("the bot's reply in the helpdesk", customer.public)
    assert "balance is 42" in replies[0]
    comment = customer.fake.ticket(customer.ticket).comments[0]
    assert comment.author_id == {"zendesk": "777", "freshdesk": "agent", "intercom": "4242"}[customer.kind]
    conversation = customer.conversation()
    # The customer as the helpdesk knows them: looked up by id where the webhook gives only that.
    assert conversation["customer"]["email"] == EMAIL
    if customer.kind != "freshdesk":
        assert conversation["customer"]["id"] == customer.user
        assert conversation["customer"]["timezone"] == "Europe/Madrid"
    assert len(rows("SELECT id FROM turns WHERE conversation_id = :c", c=conversation["id"])) == 1

    follow = post(stack, customer.kind, customer.follow_up("And my last invoice?"))
    assert follow.status_code == 202, follow.text
    until("the reply to the follow-up", lambda: len(customer.public()) == 2)
    # Our own reply, told back by the helpdesk, is no customer message (no echo loop).
    echo = post(stack, customer.kind, customer.our_echo(customer.public()[-1]))
    assert echo.status_code in (200, 202), echo.text
    if echo.status_code == 202:  # stored (Freshdesk cannot say who wrote it): worked, and found ours
        until("the echo worked", lambda: event_state(echo.json()["event_id"]) == "done")
    else:
        assert echo.json()["status"] == "ignored"
    turns = rows("SELECT state, outcome FROM turns WHERE conversation_id = :c", c=conversation["id"])
    assert [t["outcome"] for t in turns] == ["resolved", "resolved"]
    assert customer.public() == replies[:1] + customer.public()[1:2]  # two replies, each once
    assert (
        rows("SELECT with_human_since FROM conversations WHERE id = :c", c=conversation["id"])[0]["with_human_since"]
        is None
    ), "our own reply did not count as a human taking over"
    record_path("answered", customer, [first.json(), again.json(), follow.json(), echo.json()])


def test_an_escalation_shows_in_the_helpdesk_and_a_human_answer_there_closes_ours(
    stack: Stack, customer: Customer
) -> None:
    body = json.dumps(
        script(billing=[{"finish": "escalate", "reason": "policy", "detail": "a refund over the ceiling"}])
    )
    taken = post(stack, customer.kind, customer.new_ticket(body))
    assert taken.status_code == 202, taken.text
    note = until("the handoff note in the helpdesk", customer.notes)[0]
    assert "Switchboard handed this ticket to a human (policy)" in note
    until(
        "the ticket routed to the humans", lambda: "switchboard-escalated" in customer.fake.ticket(customer.ticket).tags
    )
    ticket = customer.fake.ticket(customer.ticket)
    if customer.kind == "intercom":
        assert ticket.assignee == INTERCOM["escalation_team_id"]
    else:
        assert ticket.group_id == {"zendesk": ZENDESK, "freshdesk": FRESHDESK}[customer.kind]["escalation_group_id"]
        assert ticket.priority == {"zendesk": "urgent", "freshdesk": 4}[customer.kind]  # policy: urgent
    conversation = customer.conversation()
    escalation = rows("SELECT id, state FROM escalations WHERE conversation_id = :c", c=conversation["id"])[0]
    assert escalation["state"] == "queued"

    ours = [c.body for c in ticket.comments if c.public]  # the bot's, if it told the customer anything
    answered = post(stack, customer.kind, customer.human_answer("Hi Ana, I approved the refund myself."))
    assert answered.status_code == 202, answered.text
    until(
        "our escalation marked answered in the helpdesk",
        lambda: rows("SELECT state FROM escalations WHERE id = :e", e=escalation["id"])[0]["state"] == "resolved",
    )
    kinds = [e["kind"] for e in rows("SELECT kind FROM escalation_events WHERE escalation_id = :e ORDER BY id",
                                     e=escalation["id"])]  # fmt: skip
    assert kinds[-1] == "answered_in_helpdesk"
    # The customer writes again: the conversation is the human's, the bot says nothing.
    post(stack, customer.kind, customer.follow_up("Thanks, when will I see it?"))
    until(
        "the follow-up held for the human",
        lambda: (
            [
                t["outcome"]
                for t in rows("SELECT outcome FROM turns WHERE conversation_id = :c ORDER BY seq", c=conversation["id"])
            ]
            == ["escalated", "held"]
        ),
    )
    assert [c.body for c in ticket.comments if c.public] == ours  # nothing from the bot after the human
    record_path("escalated", customer, [taken.json(), answered.json()])


def test_a_reply_from_our_desk_goes_out_through_the_helpdesk_once_even_when_it_is_rate_limited(
    stack: Stack, customer: Customer
) -> None:
    body = json.dumps(script(billing=[{"finish": "escalate", "reason": "loop", "detail": "needs a person"}]))
    assert post(stack, customer.kind, customer.new_ticket(body)).status_code == 202
    until("the handoff note", customer.notes)
    conversation = customer.conversation()
    # Every step of the escalation's delivery is done before the faults are set: they are for
    # the human's reply, and a routing call still in flight must not take one of them.
    until(
        "the escalation's delivery done",
        lambda: (
            [d["state"] for d in rows("SELECT state FROM deliveries WHERE conversation_id = :c", c=conversation["id"])]
            == ["delivered"]
        ),
    )
    escalation_id = rows("SELECT id FROM escalations WHERE conversation_id = :c", c=conversation["id"])[0]["id"]
    agent = stack.client("agent")
    claimed = agent.post("/v1/escalations/claim", json={"escalation_id": escalation_id})
    assert claimed.status_code == 200, claimed.text
    claim = claimed.json()
    before = len(customer.public())
    customer.fake.faults = ["429", "timeout_after_write"]  # rate limited, then written but unanswered
    sent = agent.post(
        f"/v1/escalations/{escalation_id}/reply",
        json={
            "claim_token": claim["claim_token"],
            "seen_message_id": claim["escalation"]["conversation"]["latest_customer_message_id"],
            "body": "Hi Ana, a colleague here: your refund is approved.",
            "resolve": True,
        },
    )
    assert sent.status_code in (200, 201, 202), sent.text
    until(
        "the human's reply delivered",
        lambda: (
            rows("SELECT state FROM deliveries WHERE escalation_id = :e", e=escalation_id)[0]["state"] == "delivered"
        ),
        timeout=40,
    )
    human = [r for r in customer.public()[before:] if "a colleague here" in r]
    assert human == ["Hi Ana, a colleague here: your refund is approved."]  # once, after a 429 and a timeout
    (delivery,) = rows("SELECT id, attempts FROM deliveries WHERE escalation_id = :e", e=escalation_id)
    assert delivery["attempts"] >= 3
    # On the conversation's record: the human's reply delivered, once, after its attempts.
    recorded = rows(
        "SELECT data FROM events WHERE conversation_id = :c AND kind = 'delivery.delivered'", c=conversation["id"]
    )
    assert [e["data"]["attempts"] for e in recorded if e["data"].get("delivery_id") == delivery["id"]] == [
        delivery["attempts"]
    ]
    record_path("desk-reply", customer, [sent.json()])


@pytest.mark.parametrize("kind", KINDS)
def test_a_webhook_not_from_the_helpdesk_is_refused_and_nothing_is_stored(stack: Stack, kind: str) -> None:
    customer_payload = {
        "zendesk": zendesk_created("555001", "1", "<p>hi</p>"),
        "freshdesk": freshdesk_hook("555001", EMAIL, "hi"),
        "intercom": intercom_created("555001", "1", "hi"),
    }[kind]
    before = rows("SELECT count(*) AS n FROM helpdesk_events")[0]["n"]
    forged = post(stack, kind, customer_payload, secret="not-the-secret")
    assert forged.status_code == 401, forged.text
    assert "secret" in forged.json()["detail"] or "token" in forged.json()["detail"]
    raw, headers = signed(kind, customer_payload)
    if kind != "freshdesk":  # Freshdesk signs nothing: its token is the proof
        tampered = httpx.post(f"{stack.api}/v1/helpdesks/{kind}/webhook", content=raw + b" ", headers=headers)
        assert tampered.status_code == 401
    unknown = httpx.post(f"{stack.api}/v1/helpdesks/nosuch/webhook", content=raw, headers=headers)
    assert unknown.status_code == 404 and "SWITCHBOARD_HELPDESKS" in unknown.json()["detail"]
    lacking = {"zendesk": zendesk_created("555002", "", ""), "freshdesk": freshdesk_hook("", "", "hi"),
               "intercom": intercom_created("", "1", "hi")}[kind]  # fmt: skip
    invalid = post(stack, kind, lacking)
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["missing"], invalid.json()
    after = rows("SELECT count(*) AS n FROM helpdesk_events")[0]["n"]
    assert after == before


def _answered_ticket(stack: Stack, customer: Customer) -> dict[str, Any]:
    assert post(stack, customer.kind, customer.new_ticket("What is my balance?")).status_code == 202
    until("the bot's reply", customer.public)
    return customer.conversation()


@pytest.mark.parametrize("kind", ["zendesk", "intercom"])
def test_a_satisfaction_rating_in_the_helpdesk_is_counted_by_who_answered(
    stack: Stack, helpdesks: dict[str, FakeHelpdesk], kind: str
) -> None:
    customer = Customer(kind, helpdesks[kind])
    conversation = _answered_ticket(stack, customer)
    if kind == "zendesk":
        rated = post(stack, kind, zendesk_satisfaction(customer.ticket, "Good, I'm satisfied", "Quick, thanks"))
    else:
        rated = post(stack, kind, intercom_rating(customer.ticket, customer.user, 4, "<p>Quick, thanks</p>"))
    assert rated.status_code == 202, rated.text
    found = until(
        "the rating stored",
        lambda: rows(
            "SELECT score, comment, handled_by, via FROM feedback WHERE conversation_id = :c", c=conversation["id"]
        ),
    )
    assert found == [{"score": 5 if kind == "zendesk" else 4, "comment": "Quick, thanks", "handled_by": "bot",
                      "via": kind}]  # fmt: skip
    if kind == "zendesk":  # asked, not answered: nothing to count
        offered = post(stack, kind, zendesk_satisfaction(customer.ticket, "offered"))
        assert offered.status_code == 200 and offered.json()["status"] == "ignored"


def test_feedback_through_the_api_is_scoped_validated_and_replaces_the_earlier_one(stack: Stack) -> None:
    created = stack.client("helpdesk").post("/v1/tickets", json=ticket("Where is my invoice?"))
    assert created.status_code == 202, created.text
    conversation_id = created.json()["conversation_id"]
    wait_done(created.json()["turn_id"])
    url = f"/v1/conversations/{conversation_id}/feedback"
    first = stack.client("helpdesk").post(url, json={"score": 2, "comment": "Card 4242 4242 4242 4242 was wrong"})
    assert first.status_code == 201, first.text
    assert first.json() == {"conversation_id": conversation_id, "score": 2, "handled_by": "bot", "created": True}
    again = stack.client("helpdesk").post(url, json={"score": 4})
    assert again.status_code == 200 and again.json()["created"] is False
    stored = rows("SELECT score, comment FROM feedback WHERE conversation_id = :c", c=conversation_id)
    assert stored == [{"score": 4, "comment": None}]
    # What to fix, and nothing stored, for each refused request.
    for body, status in (({"score": 6}, 422), ({"score": 0}, 422), ({"comment": "no score"}, 422),
                         ({"score": 3, "extra": 1}, 422)):  # fmt: skip
        refused = stack.client("helpdesk").post(url, json=body)
        assert refused.status_code == status, (body, refused.text)
    assert stack.client("agent").post(url, json={"score": 5}).status_code == 403  # a human does not rate for a customer
    assert stack.client("globex").post(url, json={"score": 5}).status_code == 404  # another source's conversation
    assert httpx.post(stack.api + url, json={"score": 5}).status_code == 401
    assert rows("SELECT score FROM feedback WHERE conversation_id = :c", c=conversation_id) == [{"score": 4}]


def test_a_support_lead_reads_resolution_csat_cost_and_targets_per_helpdesk(stack: Stack, customer: Customer) -> None:
    _answered_ticket(stack, customer)
    scraped = httpx.get(stack.api + "/metrics", timeout=10).text
    resolved = re.search(
        rf'switchboard_support_turns_total\{{outcome="resolved",reason="",source="{customer.kind}"\}} ([0-9.e+]+)',
        scraped,
    )
    assert resolved and float(resolved.group(1)) >= 1, scraped[-3000:]
    assert re.search(
        rf'switchboard_first_response_seconds_count\{{responder="bot",source="{customer.kind}"\}}', scraped
    )
    assert 'switchboard_support_target{target="resolution_rate_min"} 0.6' in scraped
    assert 'switchboard_support_target{target="cost_per_resolution_max_usd"} 0.05' in scraped
    assert 'switchboard_support_target{target="csat_min"} 4.0' in scraped


def test_every_finished_turn_is_one_redacted_json_line(stack: Stack, customer: Customer) -> None:
    conversation = _answered_ticket(stack, customer)
    turn_id = rows("SELECT id FROM turns WHERE conversation_id = :c", c=conversation["id"])[0]["id"]
    assert stack.supervisor.log_dir is not None

    def lines() -> list[dict[str, Any]]:
        # Whoever merged the turn logs it: the orchestrator, or the agent whose result came last.
        found = []
        for path in stack.supervisor.log_dir.glob("*.log"):  # type: ignore[union-attr]
            for raw in path.read_text(errors="replace").splitlines():
                if turn_id in raw and '"turn finished"' in raw:
                    found.append(dict(json.loads(raw)))
        return found

    (entry,) = until("the turn's line in a worker's log", lines)  # one line per turn
    assert entry["logger"] == "switchboard.turns"
    turn = entry["turn"]
    # Freshdesk's rule names the customer by email only: the id is the email, and the line redacts it.
    expected_id = "[email]" if "@" in conversation["customer_id"] else conversation["customer_id"]
    assert (turn["conversation_id"], turn["source"], turn["customer_id"]) == (
        conversation["id"],
        customer.kind,
        expected_id,
    )
    assert turn["outcome"] == "resolved" and turn["escalation_reason"] is None
    assert {a["agent"] for a in turn["agents"]} == {"billing", "knowledge", "account"}
    calls = [c for a in turn["agents"] for c in a["tool_calls"]]
    assert calls and all(c["tool"] == "lookup_balance" and c["ms"] >= 0 for c in calls)
    assert {"tokens", "cost_usd", "duration_s", "merged_by"} <= turn.keys()
    assert EMAIL not in json.dumps(entry) and "balance is 42" not in json.dumps(entry)  # no text, no email


def test_worked_webhooks_are_kept_a_day_for_duplicates_then_pruned(s: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.retention import prune_seen_deliveries
    from shared.models import HelpdeskEvent

    old = datetime.now(UTC) - timedelta(hours=25)
    for dedupe, state, done_at in (("a", "done", old), ("b", "failed", old), ("c", "done", datetime.now(UTC)),
                                   ("d", "pending", None)):  # fmt: skip
        s.add(HelpdeskEvent(id=f"hde_test_{dedupe}", helpdesk="zendesk", dedupe=f"prune:{dedupe}", kind="inbound",
                            event={}, state=state, done_at=done_at))  # fmt: skip
    s.flush()
    prune_seen_deliveries(s)
    left = s.query(HelpdeskEvent.dedupe).filter(HelpdeskEvent.dedupe.like("prune:%")).all()
    assert sorted(d for (d,) in left) == ["prune:c", "prune:d"]  # a pending one is never lost


def test_a_webhook_that_cannot_be_a_ticket_is_failed_on_the_record_and_a_nul_is_dropped(
    stack: Stack, helpdesks: dict[str, FakeHelpdesk]
) -> None:
    customer = Customer("zendesk", helpdesks["zendesk"])
    nul = post(stack, "zendesk", customer.new_ticket("What is my\u0000 balance?"))
    assert nul.status_code == 202, nul.text
    until("the reply", customer.public)
    stored = rows("SELECT body FROM messages WHERE conversation_id = :c AND role = 'customer'",
                  c=customer.conversation()["id"])  # fmt: skip
    assert stored == [{"body": "What is my balance?"}]

    empty = Customer("zendesk", helpdesks["zendesk"])
    only_nul = post(stack, "zendesk", empty.new_ticket("\u0000"))
    assert only_nul.status_code == 202, only_nul.text
    event_id = only_nul.json()["event_id"]
    until("the event failed", lambda: event_state(event_id) == "failed")
    (row,) = rows("SELECT last_error, event FROM helpdesk_events WHERE id = :e", e=event_id)
    assert "not a valid ticket" in row["last_error"] and "body" in row["last_error"]
    assert row["event"] == {"ticket_id": empty.ticket}  # nothing the customer wrote is kept
    assert not rows("SELECT id FROM conversations WHERE source = 'zendesk' AND external_id = :e", e=empty.ticket)


@pytest.mark.parametrize("human_answered_first", [True, False])
def test_a_bot_reply_a_human_answered_before_is_not_sent(
    database_url: str, helpdesks: dict[str, FakeHelpdesk], human_answered_first: bool
) -> None:
    """The outbox's own check, on real rows and over HTTP: a bot reply to a customer message
    older than a human's answer in the helpdesk ends cancelled, and nothing reaches the ticket."""
    from sqlalchemy import func, update

    from orchestrator.delivery import deliver, queue_delivery
    from shared import db
    from shared.models import Conversation, Message, Turn, new_id
    from shared.settings import Settings
    from tests.integration.conftest import helpdesks_setting

    settings = Settings(database_url=database_url, helpdesks=helpdesks_setting(helpdesks))
    ticket_id = str(random.randrange(10**6, 10**9))
    with db.session_scope() as s:
        conversation = Conversation(id=new_id("conv"), source="zendesk", external_id=ticket_id, channel="email",
                                    subject="", customer_id="1", customer={"id": "1"})  # fmt: skip
        message = Message(id=new_id("msg"), conversation_id=conversation.id, role="customer", body="balance?")
        turn = Turn(id=new_id("turn"), conversation_id=conversation.id, message_id=message.id, seq=1, state="done")
        s.add(conversation)
        s.flush()
        s.add(message)
        s.flush()
        s.add(turn)
        s.flush()
        delivery_id = queue_delivery(s, settings, conversation, turn_id=turn.id, outcome="resolved", reply="Late.")
        assert delivery_id is not None
    if human_answered_first:
        with db.session_scope() as s:  # after the turn's message: a later transaction, a later now()
            s.execute(update(Conversation).where(Conversation.external_id == ticket_id)
                      .values(human_answered_at=func.now()))  # fmt: skip
    deliver(delivery_id, settings)
    (state,) = rows("SELECT state FROM deliveries WHERE id = :d", d=delivery_id)
    if human_answered_first:
        assert state["state"] == "cancelled"
        assert helpdesks["zendesk"].public_replies(ticket_id) == []
    else:
        assert state["state"] == "delivered"
        assert helpdesks["zendesk"].public_replies(ticket_id) == ["Late."]
