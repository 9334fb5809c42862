"""The desk: humans claim, answer, resolve, release or hand back what the agents escalated.

States (docs/desk.md): ``queued → claimed → resolved``; ``released`` and ``expired`` (a lease
that lapsed) put a claimed escalation back in the queue; ``handed_back`` gives the
conversation back to the bot. Every transition is one conditional change of the row, made
under its lock, and one ``escalation_events`` row (who, when, from, to).

A claim sets a lease (``desk_lease_s``) and a claim token that grows on every claim.
Heartbeat, reply, note, release and hand-back name the token; they change something only
while it is the current token, its lease has not lapsed (on the database's clock) and the
caller is the one who claimed. Anything else is a ``StaleClaim`` (HTTP 409).

A reply goes out through the delivery outbox like the bot's, once per (escalation, token,
the customer message the human last saw): a double click or a retried request sends once,
and a reply written before the customer's newest message is refused (``NewerMessage``).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from orchestrator.delivery import queue_delivery
from orchestrator.turn_record import first_reply_wait
from shared.db import after_commit
from shared.errors import NotFound, SwitchboardError
from shared.guardrails import for_storage
from shared.metrics import (
    DESK_CLAIM_WAIT,
    DESK_FIRST_REPLY,
    DESK_SUGGESTIONS,
    DESK_TRANSITIONS,
    FIRST_RESPONSE,
)
from shared.models import (
    Action,
    AgentRun,
    Conversation,
    DeskReply,
    Escalation,
    EscalationEvent,
    EscalationNote,
    Event,
    Message,
    ToolCall,
    Turn,
    new_id,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

# The bot's actor name on the record (a lapsed lease, a reopened escalation).
SYSTEM = "switchboard"


class DeskState(StrEnum):
    queued = "queued"
    claimed = "claimed"
    resolved = "resolved"
    handed_back = "handed_back"


OPEN = (DeskState.queued, DeskState.claimed)


class Acceptance(StrEnum):
    """What the human did with the agents' suggested reply."""

    unchanged = "unchanged"
    edited = "edited"
    discarded = "discarded"
    none = "none"  # there was no suggestion


class DeskError(SwitchboardError):
    """A desk request that cannot be done as asked (HTTP 409)."""

    title = "Conflict"


class Taken(DeskError):
    """The named escalation is not in the queue (claimed by someone, resolved, handed back)."""

    title = "Not in the queue"


class StaleClaim(DeskError):
    """The claim token is not the current one, its lease lapsed, or another human holds it."""

    title = "Claim not current"


class NewerMessage(DeskError):
    """The customer wrote again after the message the human last saw."""

    title = "Newer customer message"

    def __init__(self, detail: str, message: dict[str, Any]) -> None:
        super().__init__(detail)
        self.message = message


@dataclass(frozen=True)
class Claimed:
    escalation_id: str
    claim_token: int
    lease_expires_at: datetime


@dataclass(frozen=True)
class Replied:
    escalation_id: str
    message_id: str
    delivery_id: str | None
    resolved: bool
    acceptance: Acceptance
    duplicate: bool  # the same reply was sent before: nothing new was stored or sent


# --------------------------------------------------------------------------- entering the queue


def sla_due(settings: Settings, reason: str, now: datetime) -> tuple[int, datetime]:
    sla = settings.sla_for(reason)
    return sla.priority, now + timedelta(minutes=sla.first_response_minutes)


def escalation_row(settings: Settings, *, turn_id: str, conversation_id: str, reason: str, **rest: Any) -> Escalation:
    """A new escalation, queued with its SLA due time and priority (the merge adds it)."""
    now = datetime.now(UTC)
    priority, due = sla_due(settings, reason, now)
    return Escalation(
        id=new_id("esc"),
        turn_id=turn_id,
        conversation_id=conversation_id,
        reason=reason,
        state=DeskState.queued,
        priority=priority,
        sla_due_at=due,
        queued_at=now,
        **rest,
    )


def queued_event(escalation: Escalation) -> EscalationEvent:
    return EscalationEvent(
        escalation_id=escalation.id,
        kind="queued",
        actor=SYSTEM,
        from_state=None,
        to_state=DeskState.queued,
        data={"reason": escalation.reason},
    )


def reopen_for_message(s: Session, conversation_id: str, message_id: str) -> str | None:
    """A customer wrote to a conversation that is with a human: its latest escalation, if
    resolved, goes back to the queue (an open one already shows the new message)."""
    latest = s.execute(
        select(Escalation)
        .where(Escalation.conversation_id == conversation_id)
        .order_by(Escalation.created_at.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()
    if latest is None or latest.state != DeskState.resolved:
        return None
    s.execute(
        update(Escalation)
        .where(Escalation.id == latest.id)
        .values(state=DeskState.queued, queued_at=func.now(), resolved_at=None)
    )
    _event(s, latest.id, "reopened", SYSTEM, DeskState.resolved, DeskState.queued, data={"message_id": message_id})
    return latest.id


# --------------------------------------------------------------------------- claim and lease


_CLAIM = text(
    """
    WITH next AS (
        SELECT id, state FROM escalations
         WHERE (state = 'queued' OR (state = 'claimed' AND lease_expires_at <= now()))
           AND (CAST(:named AS varchar) IS NULL OR id = :named)
         ORDER BY sla_due_at NULLS LAST, priority DESC, queued_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED)
    UPDATE escalations e
       SET state = 'claimed', claimed_by = :actor, claimed_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease_s),
           claim_token = e.claim_token + 1
      FROM next
     WHERE e.id = next.id
    RETURNING e.id, e.claim_token, e.lease_expires_at, e.queued_at, next.state AS was,
              e.claimed_at
    """
)


def claim(s: Session, actor: str, settings: Settings, escalation_id: str | None = None) -> Claimed | None:
    """Take the next escalation (by SLA due time, then priority, then age), or the named one.

    None when the queue is empty. A named one that is not in the queue raises ``Taken``
    (``NotFound`` when there is no such escalation). A claimed one whose lease lapsed is in
    the queue already: the claim records its expiry first.
    """
    row = s.execute(_CLAIM, {"named": escalation_id, "actor": actor, "lease_s": settings.desk_lease_s}).one_or_none()
    if row is None:
        if escalation_id is None:
            return None
        state = s.execute(select(Escalation.state).where(Escalation.id == escalation_id)).scalar_one_or_none()
        if state is None:
            raise NotFound(f"No escalation {escalation_id!r}.")
        raise Taken(
            f"Escalation {escalation_id} is {state}, not in the queue"
            + (": another human is working on it." if state != DeskState.resolved else ".")
        )
    if row.was == DeskState.claimed:
        _event(s, row.id, "expired", SYSTEM, DeskState.claimed, DeskState.queued, token=row.claim_token - 1)
    _event(s, row.id, "claimed", actor, DeskState.queued, DeskState.claimed, token=row.claim_token)
    wait_s = max(0.0, (row.claimed_at - row.queued_at).total_seconds())
    after_commit(s, lambda: DESK_CLAIM_WAIT.observe(wait_s))
    return Claimed(row.id, int(row.claim_token), row.lease_expires_at)


def _held(s: Session, escalation_id: str, token: int, actor: str) -> Escalation:
    """The escalation, locked, if ``token`` is its current claim, live, and ``actor``'s."""
    found = s.execute(
        select(Escalation, (Escalation.lease_expires_at > func.now()).label("live"))
        .where(Escalation.id == escalation_id)
        .with_for_update(of=Escalation)
    ).one_or_none()
    if found is None:
        raise NotFound(f"No escalation {escalation_id!r}.")
    escalation, live = found
    again = "Claim it again (POST /v1/escalations/claim with its escalation_id) to go on."
    if escalation.state != DeskState.claimed:
        raise StaleClaim(f"Escalation {escalation_id} is {escalation.state}, not claimed. {again}")
    if escalation.claim_token != token:
        raise StaleClaim(
            f"Claim token {token} is not current for escalation {escalation_id}: it was claimed again "
            f"since (token {escalation.claim_token}). {again}"
        )
    if escalation.claimed_by != actor:
        raise StaleClaim(f"Escalation {escalation_id} is claimed by someone else.")
    if not live:
        raise StaleClaim(f"The lease on escalation {escalation_id} lapsed: it is back in the queue. {again}")
    return escalation


def heartbeat(s: Session, escalation_id: str, token: int, actor: str, settings: Settings) -> datetime:
    """Extend the lease by ``desk_lease_s`` from now. Returns when it now expires."""
    _held(s, escalation_id, token, actor)
    until = s.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id)
        .values(lease_expires_at=func.now() + timedelta(seconds=settings.desk_lease_s))
        .returning(Escalation.lease_expires_at)
    ).scalar_one()
    assert until is not None  # just set
    return until


def release(s: Session, escalation_id: str, token: int, actor: str) -> None:
    """Put it back in the queue for someone else."""
    _held(s, escalation_id, token, actor)
    _unclaim(s, escalation_id, DeskState.queued, queued_at=func.now())
    _event(s, escalation_id, "released", actor, DeskState.claimed, DeskState.queued, token=token)


def hand_back(s: Session, escalation_id: str, token: int, actor: str) -> None:
    """Give the conversation back to the bot: its next customer message is a normal turn."""
    escalation = _held(s, escalation_id, token, actor)
    _unclaim(s, escalation_id, DeskState.handed_back)
    s.execute(update(Conversation).where(Conversation.id == escalation.conversation_id).values(with_human_since=None))
    _event(s, escalation_id, "handed_back", actor, DeskState.claimed, DeskState.handed_back, token=token)
    if escalation.suggested_reply and not _replied(s, escalation_id):
        after_commit(s, lambda: DESK_SUGGESTIONS.labels(escalation.reason, Acceptance.discarded).inc())


def add_note(s: Session, escalation_id: str, token: int, actor: str, body: str) -> int:
    """A private note for the humans (stored redacted like every stored text)."""
    _held(s, escalation_id, token, actor)
    note = EscalationNote(escalation_id=escalation_id, author=actor, body=for_storage(body))
    s.add(note)
    s.flush()
    _event(s, escalation_id, "noted", actor, None, None, token=token, data={"note_id": note.id})
    return note.id


def answered_elsewhere(s: Session, escalation_id: str, actor: str) -> None:
    """A human answered the customer in the helpdesk itself: the escalation is resolved there
    (its first reply now, if none came before), and a claim of ours on it ends."""
    row = s.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id, Escalation.state.in_((DeskState.queued, DeskState.claimed)))
        .values(
            state=DeskState.resolved,
            resolved_at=func.now(),
            first_reply_at=func.coalesce(Escalation.first_reply_at, func.now()),
            claimed_by=None,
            lease_expires_at=None,
        )
        .returning(Escalation.state)
    ).first()
    if row is not None:
        _event(s, escalation_id, "answered_in_helpdesk", actor, None, DeskState.resolved)


def expire_leases(s: Session) -> list[str]:
    """Claims whose lease lapsed go back to the queue (the orchestrator's periodic job)."""
    rows = s.execute(
        update(Escalation)
        .where(Escalation.state == DeskState.claimed, Escalation.lease_expires_at <= func.now())
        .values(state=DeskState.queued, claimed_by=None, lease_expires_at=None, queued_at=func.now())
        .returning(Escalation.id, Escalation.claim_token)
    ).all()
    for escalation_id, token in rows:
        _event(s, escalation_id, "expired", SYSTEM, DeskState.claimed, DeskState.queued, token=token)
    if rows:
        log.info("desk: %d lapsed claims back in the queue", len(rows))
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- reply


def reply(
    s: Session,
    escalation_id: str,
    token: int,
    actor: str,
    *,
    body: str,
    seen_message_id: str,
    resolve: bool,
    settings: Settings,
) -> Replied:
    """Send a human's reply to the customer, once, through the delivery outbox."""
    escalation = _held_or_replayed(s, escalation_id, token, actor, seen_message_id)
    if isinstance(escalation, Replied):
        return escalation
    latest = s.execute(
        select(Message.id, Message.body, Message.created_at)
        .where(Message.conversation_id == escalation.conversation_id, Message.role == "customer")
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    ).one()
    if latest.id != seen_message_id:
        raise NewerMessage(
            f"The customer wrote again after message {seen_message_id}: read their newest message "
            f"({latest.id}) and send the reply again with seen_message_id {latest.id!r}.",
            {"id": latest.id, "body": latest.body, "created_at": latest.created_at.isoformat()},
        )
    stored = for_storage(body)  # what is stored and sent holds no full card number or secret
    conversation = s.get_one(Conversation, escalation.conversation_id)
    message_id = new_id("msg")
    first_reply_s = first_reply_wait(s, conversation.id, datetime.now(UTC))
    s.add(Message(id=message_id, conversation_id=conversation.id, role="human", body=stored))
    delivery_id = queue_delivery(
        s, settings, conversation, escalation_id=escalation.id, outcome="human_reply", reply=stored, resolved=resolve
    )
    acceptance = accepted(escalation.suggested_reply, body)
    s.add(
        DeskReply(
            escalation_id=escalation_id,
            claim_token=token,
            seen_message_id=seen_message_id,
            message_id=message_id,
            delivery_id=delivery_id,
            author=actor,
            resolved=resolve,
            acceptance=acceptance,
        )
    )
    first = escalation.first_reply_at is None
    values: dict[str, Any] = {"first_reply_at": func.coalesce(Escalation.first_reply_at, func.now())}
    if resolve:
        values |= {"state": DeskState.resolved, "resolved_at": func.now(), "claimed_by": None, "lease_expires_at": None}
    s.execute(update(Escalation).where(Escalation.id == escalation_id).values(**values))
    _event(
        s,
        escalation_id,
        "replied",
        actor,
        DeskState.claimed,
        DeskState.resolved if resolve else DeskState.claimed,
        token=token,
        data={"message_id": message_id, "acceptance": acceptance, "resolved": resolve},
    )
    reason = escalation.reason
    waited = max(0.0, (datetime.now(UTC) - escalation.created_at).total_seconds())

    source = conversation.source

    def observe() -> None:
        if first_reply_s is not None:
            FIRST_RESPONSE.labels(source, "human").observe(first_reply_s)
        if first:
            DESK_FIRST_REPLY.labels(reason).observe(waited)
            if acceptance is not Acceptance.none:
                DESK_SUGGESTIONS.labels(reason, acceptance).inc()

    after_commit(s, observe)
    return Replied(escalation_id, message_id, delivery_id, resolve, acceptance, duplicate=False)


def _held_or_replayed(
    s: Session, escalation_id: str, token: int, actor: str, seen_message_id: str
) -> Escalation | Replied:
    """A reply sent already under this claim for this customer message is answered as it was
    (resolving may have ended the claim since); otherwise the claim must be held."""
    done = s.get(DeskReply, (escalation_id, token, seen_message_id))
    if done is not None:
        return Replied(
            escalation_id,
            done.message_id,
            done.delivery_id,
            done.resolved,
            Acceptance(done.acceptance),
            duplicate=True,
        )
    return _held(s, escalation_id, token, actor)


def accepted(suggested: str | None, sent: str) -> Acceptance:
    """Sent unchanged, edited (still mostly the suggestion) or discarded (something else)."""
    if not suggested:
        return Acceptance.none
    a, b = " ".join(suggested.split()), " ".join(sent.split())
    if a == b:
        return Acceptance.unchanged
    return Acceptance.edited if difflib.SequenceMatcher(None, a, b).ratio() >= 0.5 else Acceptance.discarded


def _replied(s: Session, escalation_id: str) -> bool:
    replied = select(DeskReply.message_id).where(DeskReply.escalation_id == escalation_id).limit(1)
    return s.execute(replied).first() is not None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def list_escalations(s: Session, states: Sequence[str], limit: int, after: str | None) -> Page:
    """Escalations in ``states``, in queue order (SLA due, priority, age), ``limit`` at a time;
    ``after`` is the cursor of the page before (the last id it listed)."""
    order = (Escalation.sla_due_at.asc().nulls_last(), Escalation.priority.desc(), Escalation.queued_at, Escalation.id)
    query = (
        select(Escalation, Conversation.customer, Conversation.source)
        .join(Conversation, Conversation.id == Escalation.conversation_id)
        .where(Escalation.state.in_(list(states)))
    )
    if after is not None:
        mark = s.execute(
            select(Escalation.sla_due_at, Escalation.priority, Escalation.queued_at, Escalation.id).where(
                Escalation.id == after
            )
        ).one_or_none()
        if mark is None:
            raise NotFound(f"No escalation {after!r} to list after: start again without a cursor.")
        query = query.where(_after(mark))
    rows = s.execute(query.order_by(*order).limit(limit + 1)).all()
    items = [_summary(e, customer, source) for e, customer, source in rows[:limit]]
    return Page(items, rows[limit - 1][0].id if len(rows) > limit else None)


def _after(mark: Any) -> Any:
    """Keyset condition: strictly after ``mark`` in (sla_due_at NULLS LAST, priority DESC, queued_at, id)."""
    due, priority, queued, ident = mark
    tail = or_(
        Escalation.priority < priority,
        and_(Escalation.priority == priority, Escalation.queued_at > queued),
        and_(Escalation.priority == priority, Escalation.queued_at == queued, Escalation.id > ident),
    )
    if due is None:
        return and_(Escalation.sla_due_at.is_(None), tail)
    return or_(
        Escalation.sla_due_at > due,
        Escalation.sla_due_at.is_(None),
        and_(Escalation.sla_due_at == due, tail),
    )


def _summary(e: Escalation, customer: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "id": e.id,
        "state": e.state,
        "reason": e.reason,
        "priority": e.priority,
        "conversation_id": e.conversation_id,
        "source": source,
        "customer": {"id": customer.get("id"), "name": customer.get("name") or "", "email": customer.get("email")},
        "created_at": e.created_at.isoformat(),
        "queued_at": e.queued_at.isoformat(),
        "sla_due_at": e.sla_due_at.isoformat() if e.sla_due_at else None,
        "claimed_by": e.claimed_by,
        "lease_expires_at": e.lease_expires_at.isoformat() if e.lease_expires_at else None,
    }


def packet(s: Session, escalation_id: str) -> dict[str, Any]:
    """The handoff packet: what a human needs to answer without reading rows."""
    e = s.get(Escalation, escalation_id)
    if e is None:
        raise NotFound(f"No escalation {escalation_id!r}.")
    conversation = s.get_one(Conversation, e.conversation_id)
    messages = (
        s.execute(
            select(Message).where(Message.conversation_id == conversation.id).order_by(Message.created_at, Message.id)
        )
        .scalars()
        .all()
    )
    runs = s.execute(select(AgentRun).where(AgentRun.turn_id == e.turn_id).order_by(AgentRun.agent)).scalars().all()
    calls = s.execute(select(ToolCall).where(ToolCall.turn_id == e.turn_id).order_by(ToolCall.id)).scalars().all()
    actions = (
        s.execute(select(Action).where(Action.conversation_id == conversation.id).order_by(Action.id)).scalars().all()
    )
    notes = (
        s.execute(select(EscalationNote).where(EscalationNote.escalation_id == e.id).order_by(EscalationNote.id))
        .scalars()
        .all()
    )
    history = (
        s.execute(select(EscalationEvent).where(EscalationEvent.escalation_id == e.id).order_by(EscalationEvent.id))
        .scalars()
        .all()
    )
    turn = s.get_one(Turn, e.turn_id)
    customers = [m for m in messages if m.role == "customer"]
    by_call = {c.call_id: c for c in calls}
    findings = []
    for run in runs:
        result = run.result or {}
        findings.append(
            {
                "agent": run.agent,
                "status": run.status,
                "confidence": run.confidence,
                "late": run.late,
                "answer": result.get("answer"),
                "facts": [
                    {
                        "statement": f.get("statement"),
                        "evidence": _evidence(by_call.get(f.get("call_id") or "")),
                    }
                    for f in result.get("facts") or []
                ],
            }
        )
    customer = conversation.customer
    return {
        "escalation": _summary(e, customer, conversation.source),
        "reason": e.reason,
        "summary": e.summary,
        "suggested_reply": e.suggested_reply,
        "findings": findings,
        "actions": [
            {
                "tool": a.tool,
                "object_id": a.object_id,
                "amount": str(a.amount) if a.amount is not None else None,
                "currency": a.currency,
                "state": a.state,
                "agent": a.agent,
                "turn_id": a.turn_id,
                "at": a.created_at.isoformat(),
            }
            for a in actions
        ],
        "customer": {
            "id": customer.get("id"),
            "name": customer.get("name") or "",
            "email": customer.get("email"),
            "locale": customer.get("locale"),
            "timezone": customer.get("timezone"),
            "local_time": _local_time(customer.get("timezone")),
        },
        "conversation": {
            "id": conversation.id,
            "source": conversation.source,
            "external_id": conversation.external_id,
            "subject": conversation.subject,
            "messages": [
                {
                    "id": m.id,
                    "role": m.role,
                    "body": m.body,
                    "created_at": m.created_at.isoformat(),
                    "flagged": m.flagged,
                }
                for m in messages
            ],
            "latest_customer_message_id": customers[-1].id if customers else None,
        },
        "turn": {"id": turn.id, "outcome": turn.outcome, "merge_trigger": turn.merge_trigger},
        "claim_token": e.claim_token,  # the current claim's (the claimer's writes name it)
        "sla_due_at": e.sla_due_at.isoformat() if e.sla_due_at else None,
        "notes": [{"id": n.id, "author": n.author, "body": n.body, "at": n.created_at.isoformat()} for n in notes],
        "history": [
            {
                "kind": h.kind,
                "actor": h.actor,
                "from": h.from_state,
                "to": h.to_state,
                "claim_token": h.claim_token,
                "at": h.at.isoformat(),
            }
            for h in history
        ],
    }


def gauges(s: Session, warning_minutes: float) -> dict[str, Any]:
    """The desk's numbers as they are now, read from the rows (every API process reads the
    same): open escalations by state, the oldest queued one's age, and those whose first
    response is due within ``warning_minutes`` or overdue."""
    by_state = {
        row[0]: int(row[1]) for row in s.execute(select(Escalation.state, func.count()).group_by(Escalation.state))
    }
    unanswered = (Escalation.state.in_(OPEN)) & Escalation.first_reply_at.is_(None) & Escalation.sla_due_at.isnot(None)
    row = s.execute(
        select(
            func.extract(
                "epoch", func.now() - func.min(Escalation.queued_at).filter(Escalation.state == DeskState.queued)
            ),
            func.count().filter(unanswered, Escalation.sla_due_at <= func.now()),
            func.count().filter(
                unanswered,
                Escalation.sla_due_at > func.now(),
                Escalation.sla_due_at <= func.now() + timedelta(minutes=warning_minutes),
            ),
        )
    ).one()
    return {
        "by_state": {state.value: int(by_state.get(state.value, 0)) for state in DeskState},
        "oldest_queued_s": float(row[0] or 0.0),
        "breached": int(row[1]),
        "about_to_breach": int(row[2]),
    }


def status(s: Session, escalation_id: str) -> dict[str, Any]:
    """What the web desk polls while a page is open: the claim, and the newest customer message."""
    e = s.get(Escalation, escalation_id)
    if e is None:
        raise NotFound(f"No escalation {escalation_id!r}.")
    latest = s.execute(
        select(Message.id, Message.body, Message.created_at)
        .where(Message.conversation_id == e.conversation_id, Message.role == "customer")
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    ).one_or_none()
    return {
        "state": e.state,
        "claimed_by": e.claimed_by,
        "claim_token": e.claim_token,
        "lease_expires_at": e.lease_expires_at.isoformat() if e.lease_expires_at else None,
        "latest_customer_message_id": latest.id if latest else None,
        "latest_customer_message": latest.body if latest else None,
    }


def read_packet(s: Session, escalation_id: str, actor: str) -> dict[str, Any]:
    """The packet as a person reads it: on the record (who, which, when)."""
    found = packet(s, escalation_id)
    s.add(
        Event(
            conversation_id=found["conversation"]["id"],
            kind="escalation.read",
            data={"escalation_id": escalation_id, "by": actor},
        )
    )
    return found


def _evidence(call: ToolCall | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {"tool": call.tool, "arguments": call.arguments, "output": call.output, "error": call.error}


def _local_time(zone: str | None) -> str | None:
    if not zone:
        return None
    try:
        return datetime.now(ZoneInfo(zone)).isoformat(timespec="minutes")
    except (KeyError, ValueError):
        return None


# --------------------------------------------------------------------------- record


def _unclaim(s: Session, escalation_id: str, state: DeskState, **values: Any) -> None:
    s.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id)
        .values(state=state, claimed_by=None, lease_expires_at=None, **values)
    )


def _event(
    s: Session,
    escalation_id: str,
    kind: str,
    actor: str,
    from_state: str | None,
    to_state: str | None,
    *,
    token: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    s.execute(
        pg_insert(EscalationEvent).values(
            escalation_id=escalation_id,
            kind=kind,
            actor=actor,
            from_state=from_state,
            to_state=to_state,
            claim_token=token,
            data=data or {},
        )
    )
    after_commit(s, lambda: DESK_TRANSITIONS.labels(kind).inc())
