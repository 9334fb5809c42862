"""The desk's queue against the real Postgres: claims, leases, tokens, replies, hand-back.

Each test runs on a database of its own module (the queue is global: another module's
escalations must not be claimed here), emptied before each test. Every write commits, as
the API's do, so concurrent claimers really race.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text, update

from agents.billing.tools import TOOLS
from orchestrator import desk
from orchestrator.desk import Acceptance, DeskState, NewerMessage, StaleClaim, Taken
from orchestrator.ingest import accept_message, accept_ticket
from orchestrator.turns import claim_start, in_rollout, merge_turn, record_result, start_turn
from shared import db, metrics
from shared.contracts import (
    AgentResult,
    AgentStatus,
    Fact,
    MergeTrigger,
    MessageIn,
    Outcome,
    TicketIn,
    ToolCallRecord,
)
from shared.errors import NotFound, ToolError
from shared.models import Action, Conversation, Delivery, DeskReply, Escalation, EscalationEvent, Message
from shared.settings import Settings, SourceConfig
from shared.tools import ToolContext, ToolRegistry
from tests.integration.conftest import PG_ADMIN

pytestmark = pytest.mark.integration

SETTINGS = Settings(
    agents=["billing"],
    sources={
        "helpdesk": SourceConfig(callback_url="http://127.0.0.1:9/replies", secret="a-secret-long-enough-for-tests")
    },
)
ANA, BEN = "key:ana", "key:ben"


@pytest.fixture(scope="module")
def desk_db() -> Iterator[str]:
    name = f"switchboard_desk_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    from shared.migrate import upgrade

    upgrade(url)
    try:
        with db.configured(Settings(database_url=url)):
            yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def empty(desk_db: str) -> None:
    with db.session_scope() as s:
        s.execute(text("TRUNCATE conversations CASCADE"))


def escalated(reason: str = "low_confidence", body: str = "my invoice looks wrong") -> tuple[str, str]:
    """A ticket whose turn escalated for ``reason``, through the real merge: (escalation, conversation)."""
    ticket = TicketIn.model_validate(
        {
            "source": "helpdesk",
            "external_id": f"t-{uuid.uuid4().hex[:10]}",
            "customer": {"id": f"c-{uuid.uuid4().hex[:6]}", "email": "ana@example.com", "name": "Ana"},
            "body": body,
        }
    )
    with db.session_scope() as s:
        accepted = accept_ticket(s, ticket, via="test")
        assert start_turn(s, accepted.turn_id, SETTINGS) is not None
        merged = merge_turn(s, accepted.turn_id, MergeTrigger.guardrail, SETTINGS, guardrail=reason)
        assert merged is not None and merged.decision.outcome is Outcome.escalated
        escalation_id = s.execute(select(Escalation.id).where(Escalation.turn_id == accepted.turn_id)).scalar_one()
    return escalation_id, accepted.conversation_id


def claim(actor: str = ANA, named: str | None = None) -> desk.Claimed:
    with db.session_scope() as s:
        claimed = desk.claim(s, actor, SETTINGS, named)
    assert claimed is not None
    return claimed


def latest_customer_message(conversation_id: str) -> str:
    with db.session_scope() as s:
        return s.execute(
            select(Message.id)
            .where(Message.conversation_id == conversation_id, Message.role == "customer")
            .order_by(Message.created_at.desc())
            .limit(1)
        ).scalar_one()


def reply(claimed: desk.Claimed, body: str, seen: str, *, actor: str = ANA, resolve: bool = False) -> desk.Replied:
    with db.session_scope() as s:
        return desk.reply(
            s,
            claimed.escalation_id,
            claimed.claim_token,
            actor,
            body=body,
            seen_message_id=seen,
            resolve=resolve,
            settings=SETTINGS,
        )


def state(escalation_id: str) -> str:
    with db.session_scope() as s:
        return s.get_one(Escalation, escalation_id).state


def events(escalation_id: str) -> list[tuple[str, str, str | None, str | None]]:
    with db.session_scope() as s:
        rows = s.execute(
            select(EscalationEvent.kind, EscalationEvent.actor, EscalationEvent.from_state, EscalationEvent.to_state)
            .where(EscalationEvent.escalation_id == escalation_id)
            .order_by(EscalationEvent.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def count(model: type, **where: object) -> int:
    with db.session_scope() as s:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(s.execute(query).scalar_one())


# --------------------------------------------------------------------------- the queue


def test_an_escalation_enters_the_queue_with_its_reasons_sla_and_priority() -> None:
    before = datetime.now(UTC)
    urgent, _ = escalated("timeout")
    normal, _ = escalated("low_confidence")
    with db.session_scope() as s:
        a, b = s.get_one(Escalation, urgent), s.get_one(Escalation, normal)
        assert (a.state, a.priority, b.state, b.priority) == ("queued", 2, "queued", 0)
        assert a.sla_due_at is not None and b.sla_due_at is not None
        assert a.sla_due_at - before == pytest.approx(timedelta(minutes=30), abs=timedelta(seconds=30))
        assert b.sla_due_at - before == pytest.approx(timedelta(minutes=240), abs=timedelta(seconds=30))
    assert events(urgent) == [("queued", "switchboard", None, "queued")]


def test_the_next_claim_takes_the_soonest_due_then_the_higher_priority_then_the_oldest() -> None:
    late, _ = escalated("low_confidence")  # due in 240 min
    soon, _ = escalated("timeout")  # due in 30 min
    # Two due at the same moment: the higher priority first (then, of equal ones, the older).
    tie_low, _ = escalated("low_confidence")
    tie_high, _ = escalated("human_requested")
    with db.session_scope() as s:
        due = datetime.now(UTC) + timedelta(minutes=60)
        s.execute(update(Escalation).where(Escalation.id.in_([tie_low, tie_high])).values(sla_due_at=due))
    order = [claim().escalation_id for _ in range(4)]
    assert order == [soon, tie_high, tie_low, late]
    with db.session_scope() as s:
        assert desk.claim(s, ANA, SETTINGS) is None  # the queue is empty


def test_a_named_claim_takes_that_one_and_one_held_by_someone_else_is_refused() -> None:
    first, _ = escalated("timeout")
    wanted, _ = escalated("low_confidence")
    claimed = claim(BEN, named=wanted)
    assert claimed.escalation_id == wanted and claimed.claim_token == 1
    with pytest.raises(Taken, match="another human"):
        claim(ANA, named=wanted)
    with pytest.raises(NotFound):
        claim(ANA, named="esc_nope")
    assert state(first) == "queued"


def test_concurrent_claimers_never_get_the_same_escalation() -> None:
    made = {escalated()[0] for _ in range(12)}
    got: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claimer(actor: str) -> None:
        start.wait()
        while True:
            with db.session_scope() as s:
                claimed = desk.claim(s, actor, SETTINGS)
            if claimed is None:
                return
            with lock:
                got.append(claimed.escalation_id)

    threads = [threading.Thread(target=claimer, args=(f"key:{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(got) == sorted(made)  # each claimed once: none twice, none left
    assert count(EscalationEvent, kind="claimed") == 12


# --------------------------------------------------------------------------- the token and the lease


def test_a_claim_token_grows_on_every_claim_and_a_stale_one_changes_nothing() -> None:
    escalation_id, conversation_id = escalated()
    first = claim(ANA)
    with db.session_scope() as s:
        desk.release(s, escalation_id, first.claim_token, ANA)
    second = claim(BEN)
    assert second.claim_token == first.claim_token + 1
    seen = latest_customer_message(conversation_id)
    with pytest.raises(StaleClaim, match="claimed again"), db.session_scope() as s:
        desk.heartbeat(s, escalation_id, first.claim_token, BEN, SETTINGS)
    with pytest.raises(StaleClaim):
        reply(first, "Sorry about that!", seen, actor=BEN)
    # The right token from someone who did not claim it is refused too.
    with pytest.raises(StaleClaim, match="someone else"):
        reply(second, "Sorry about that!", seen, actor=ANA)
    assert count(Message, conversation_id=conversation_id, role="human") == 0
    assert count(DeskReply, escalation_id=escalation_id) == 0
    assert [e[0] for e in events(escalation_id)] == ["queued", "claimed", "released", "claimed"]


def test_a_lapsed_lease_goes_back_to_the_queue_with_an_expired_event() -> None:
    escalation_id, conversation_id = escalated()
    claimed = claim(ANA)
    with db.session_scope() as s:
        until = desk.heartbeat(s, escalation_id, claimed.claim_token, ANA, SETTINGS)
        assert until > claimed.lease_expires_at - timedelta(seconds=1)
        # The lease lapses (the database's clock decides).
        s.execute(
            update(Escalation)
            .where(Escalation.id == escalation_id)
            .values(lease_expires_at=func.now() - timedelta(seconds=1))
        )
    with pytest.raises(StaleClaim, match="lapsed"):
        reply(claimed, "Here you go", latest_customer_message(conversation_id))
    with db.session_scope() as s:
        assert desk.expire_leases(s) == [escalation_id]
    assert state(escalation_id) == "queued"
    assert events(escalation_id)[-1] == ("expired", "switchboard", "claimed", "queued")
    assert claim(BEN).claim_token == claimed.claim_token + 1


def test_a_lapsed_lease_is_claimable_before_the_periodic_job_runs() -> None:
    escalation_id, _ = escalated()
    claim(ANA)
    with db.session_scope() as s:
        s.execute(update(Escalation).values(lease_expires_at=func.now() - timedelta(seconds=1)))
    again = claim(BEN)
    assert again.escalation_id == escalation_id and again.claim_token == 2
    assert [e[0] for e in events(escalation_id)][-2:] == ["expired", "claimed"]


# --------------------------------------------------------------------------- reply


def test_a_reply_is_sent_once_however_often_it_is_posted_and_resolves() -> None:
    escalation_id, conversation_id = escalated()
    claimed = claim(ANA)
    seen = latest_customer_message(conversation_id)
    first = reply(claimed, "Refund on its way.", seen, resolve=True)
    again = reply(claimed, "Refund on its way.", seen, resolve=True)  # a double click, a retried request
    assert not first.duplicate and again.duplicate
    assert again.message_id == first.message_id and again.delivery_id == first.delivery_id
    assert count(Message, conversation_id=conversation_id, role="human") == 1
    assert count(Delivery, escalation_id=escalation_id) == 1
    with db.session_scope() as s:
        delivery = s.get_one(Delivery, first.delivery_id)
        assert delivery.payload["reply"] == "Refund on its way." and delivery.payload["outcome"] == "human_reply"
        row = s.get_one(Escalation, escalation_id)
        assert row.state == "resolved" and row.first_reply_at is not None and row.claimed_by is None
    assert events(escalation_id)[-1] == ("replied", ANA, "claimed", "resolved")


def test_a_reply_written_before_the_customers_newest_message_is_refused_with_it() -> None:
    escalation_id, conversation_id = escalated()
    claimed = claim(ANA)
    seen = latest_customer_message(conversation_id)
    with db.session_scope() as s:
        follow_up = accept_message(s, conversation_id, MessageIn(body="Actually it was two charges"), via="test")
        held = start_turn(s, follow_up.turn_id, SETTINGS)
        assert held is not None and held.held  # with a human: no agent runs
    with pytest.raises(NewerMessage) as refused:
        reply(claimed, "One refund coming.", seen)
    assert refused.value.message["id"] == follow_up.message_id
    assert refused.value.message["body"] == "Actually it was two charges"
    assert count(Message, conversation_id=conversation_id, role="human") == 0
    assert count(Delivery, escalation_id=escalation_id) == 0
    # Having read it, the human answers it.
    assert not reply(claimed, "Both refunded.", follow_up.message_id).duplicate


def test_what_the_human_did_with_the_suggested_reply_is_recorded() -> None:
    assert desk.accepted(None, "anything") is Acceptance.none
    assert desk.accepted("We refunded pay_1.", "We  refunded pay_1.\n") is Acceptance.unchanged
    assert desk.accepted("We refunded pay_1 today.", "We refunded pay_1 this morning.") is Acceptance.edited
    assert desk.accepted("We refunded pay_1 today.", "Please call us on Monday about it.") is Acceptance.discarded


# --------------------------------------------------------------------------- hand back, notes, reopen


def test_hand_back_gives_the_conversation_back_to_the_bot() -> None:
    escalation_id, conversation_id = escalated()
    claimed = claim(ANA)
    with db.session_scope() as s:
        desk.hand_back(s, escalation_id, claimed.claim_token, ANA)
    assert state(escalation_id) == "handed_back"
    with db.session_scope() as s:
        assert s.get_one(Conversation, conversation_id).with_human_since is None
        follow_up = accept_message(s, conversation_id, MessageIn(body="can I get an invoice?"), via="test")
        started = start_turn(s, follow_up.turn_id, SETTINGS)
        assert started is not None and not started.held and [t.agent for t in started.tasks] == ["billing"]
    with pytest.raises(StaleClaim), db.session_scope() as s:  # handed back: the claim is over
        desk.heartbeat(s, escalation_id, claimed.claim_token, ANA, SETTINGS)


def test_notes_are_private_redacted_and_need_the_claim() -> None:
    escalation_id, _ = escalated()
    claimed = claim(ANA)
    with db.session_scope() as s:
        desk.add_note(s, escalation_id, claimed.claim_token, ANA, "customer read card 4111 1111 1111 1111 aloud")
    with pytest.raises(StaleClaim), db.session_scope() as s:
        desk.add_note(s, escalation_id, claimed.claim_token + 1, ANA, "not mine")
    with db.session_scope() as s:
        notes = desk.packet(s, escalation_id)["notes"]
    assert len(notes) == 1 and "4111 1111 1111 1111" not in notes[0]["body"]


def test_a_customer_who_writes_after_a_resolve_puts_the_escalation_back_in_the_queue() -> None:
    escalation_id, conversation_id = escalated()
    claimed = claim(ANA)
    reply(claimed, "Done!", latest_customer_message(conversation_id), resolve=True)
    with db.session_scope() as s:
        follow_up = accept_message(s, conversation_id, MessageIn(body="it did not work"), via="test")
        start_turn(s, follow_up.turn_id, SETTINGS)
    assert state(escalation_id) == "queued"
    assert events(escalation_id)[-1] == ("reopened", "switchboard", "resolved", "queued")


# --------------------------------------------------------------------------- reading


def test_the_packet_has_what_a_human_needs() -> None:
    escalation_id, conversation_id = escalated("policy", body="refund pay_1 please")
    with db.session_scope() as s:
        packet = desk.packet(s, escalation_id)
    assert packet["reason"] == "policy" and packet["summary"]
    assert packet["customer"]["email"] == "ana@example.com" and packet["customer"]["name"] == "Ana"
    messages = packet["conversation"]["messages"]
    assert [m["role"] for m in messages] == ["customer", "assistant"]  # the question, and the bot's "passed on"
    assert messages[0]["body"] == "refund pay_1 please"
    assert packet["conversation"]["latest_customer_message_id"] == latest_customer_message(conversation_id)
    assert packet["sla_due_at"] is not None
    assert [h["kind"] for h in packet["history"]] == ["queued"]


def test_the_list_pages_in_queue_order() -> None:
    made = [escalated()[0] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        with db.session_scope() as s:
            page = desk.list_escalations(s, [DeskState.queued], 2, cursor)
        seen += [i["id"] for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made  # same SLA and priority: oldest first, each once


def test_the_desk_numbers_count_states_breaches_and_the_oldest_wait() -> None:
    breached, _ = escalated("timeout")
    soon, _ = escalated("timeout")
    later, _ = escalated("low_confidence")
    claim(ANA, named=later)
    with db.session_scope() as s:
        s.execute(
            update(Escalation)
            .where(Escalation.id == breached)
            .values(sla_due_at=func.now() - timedelta(minutes=1), queued_at=func.now() - timedelta(minutes=40))
        )
        s.execute(update(Escalation).where(Escalation.id == soon).values(sla_due_at=func.now() + timedelta(minutes=5)))
        numbers = desk.gauges(s, warning_minutes=15)
    assert numbers["by_state"] == {"queued": 2, "claimed": 1, "resolved": 0, "handed_back": 0}
    assert (numbers["breached"], numbers["about_to_breach"]) == (1, 1)
    assert numbers["oldest_queued_s"] == pytest.approx(40 * 60, abs=30)
    text_format = metrics.desk_exposition(numbers).decode()
    assert 'switchboard_desk_escalations{state="queued"} 2.0' in text_format
    assert "switchboard_desk_sla_breached 1.0" in text_format


# --------------------------------------------------------------------------- shadow mode


def test_the_rollout_share_is_stable_per_conversation() -> None:
    ids = [f"conv_{uuid.uuid4().hex}" for _ in range(2000)]
    assert not any(in_rollout(c, 0) for c in ids) and all(in_rollout(c, 100) for c in ids)
    half = [c for c in ids if in_rollout(c, 50)]
    assert 800 < len(half) < 1200  # about half: a hash, not a coin thrown per message
    assert [in_rollout(c, 50) for c in ids] == [in_rollout(c, 50) for c in ids]
    assert set(half) <= {c for c in ids if in_rollout(c, 80)}  # raising the share only adds


def test_a_shadow_turn_changes_nothing_sends_nothing_and_suggests_the_agents_answer() -> None:
    shadow = Settings(agents=["billing"], rollout_percent=0, sources=SETTINGS.sources)
    ticket = TicketIn.model_validate(
        {"source": "helpdesk", "external_id": uuid.uuid4().hex, "customer": {"id": "c1"}, "body": "refund pay_1"}
    )
    with db.session_scope() as s:
        accepted = accept_ticket(s, ticket, via="test")
        started = start_turn(s, accepted.turn_id, shadow)
        assert started is not None and started.tasks
        claim_of = claim_start(s, accepted.turn_id, "billing", 3.0)
    assert claim_of.shadow  # from the turn's row: the task cannot say otherwise
    ctx = ToolContext(
        turn_id=accepted.turn_id,
        conversation_id=accepted.conversation_id,
        agent="billing",
        customer_id="c1",
        tenant="helpdesk",
        source="helpdesk",
        dry_run=True,
    )
    refund = next(t for t in TOOLS if t.name == "refund_payment")
    with pytest.raises(ToolError) as refused:
        ToolRegistry(TOOLS).execute(ctx, refund.name, {"payment_id": "pay_1", "amount": None, "reason": "dup"})
    assert refused.value.kind == "shadow" and "nothing was changed" in refused.value.message
    assert count(Action, turn_id=accepted.turn_id) == 0

    call = ToolCallRecord(call_id="call_1", tool="list_payments", arguments={}, output={"payments": []})
    answer = AgentResult(
        turn_id=accepted.turn_id,
        agent="billing",
        status=AgentStatus.answered,
        answer="I can refund pay_1 for you.",
        confidence=0.95,
        facts=[Fact(statement="list_payments answered", call_id="call_1")],
        tool_calls=[call],
        brain="test",
    )
    with db.session_scope() as s:
        record_result(s, answer, time.time())
        merged = merge_turn(s, accepted.turn_id, MergeTrigger.all_in, shadow)
    assert merged is not None and merged.delivery_id is None  # nothing is sent
    assert (merged.decision.outcome, merged.decision.reason) == (Outcome.escalated, "shadow")
    assert count(Delivery, conversation_id=accepted.conversation_id) == 0
    assert count(Message, conversation_id=accepted.conversation_id, role="assistant") == 0
    with db.session_scope() as s:
        escalation = s.execute(select(Escalation).where(Escalation.turn_id == accepted.turn_id)).scalar_one()
        assert (escalation.reason, escalation.state) == ("shadow", "queued")
        assert escalation.suggested_reply == "I can refund pay_1 for you."


def test_a_shadow_turn_the_bot_would_have_escalated_keeps_its_reason_and_sends_nothing() -> None:
    shadow = Settings(agents=["billing"], rollout_percent=0, sources=SETTINGS.sources)
    ticket = TicketIn.model_validate(
        {"source": "helpdesk", "external_id": uuid.uuid4().hex, "customer": {"id": "c2"}, "body": "refund pay_1"}
    )
    with db.session_scope() as s:
        accepted = accept_ticket(s, ticket, via="test")
        assert start_turn(s, accepted.turn_id, shadow) is not None
        merged = merge_turn(s, accepted.turn_id, MergeTrigger.guardrail, shadow, guardrail="injection")
    assert merged is not None and merged.delivery_id is None
    assert (merged.decision.reason, merged.decision.reply) == ("injection", None)
    assert count(Message, conversation_id=accepted.conversation_id, role="assistant") == 0
