"""Read models: a conversation as the helpdesk and a human see it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.keys import Principal, may_see
from shared.contracts import AgentResult, ConversationView, Role, TurnState, TurnView
from shared.errors import NotFound
from shared.models import AgentRun, Conversation, Event, Message, Turn


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds() * 1000, 1) if a and b else None


def conversation_view(
    s: Session, conversation_id: str, principal: Principal, *, turns_limit: int = 50, before: int | None = None
) -> ConversationView:
    """The conversation's newest ``turns_limit`` turns (older than turn ``before``, by its
    sequence number, for the next page) and the messages of that stretch of time."""
    conversation = s.get(Conversation, conversation_id)
    if conversation is None or not may_see(s, principal, conversation):
        raise NotFound(f"No conversation {conversation_id!r}.")
    if principal.role is not Role.helpdesk:
        # A person read a customer's conversation: on the record (who, which, when).
        s.add(
            Event(
                conversation_id=conversation_id,
                kind="conversation.read",
                data={"key_id": principal.key_id, "role": principal.role.value},
            )
        )
    page = select(Turn).where(Turn.conversation_id == conversation_id)
    if before is not None:
        page = page.where(Turn.seq < before)
    newest_first = s.execute(page.order_by(Turn.seq.desc()).limit(turns_limit + 1)).scalars().all()
    more = len(newest_first) > turns_limit
    turns = list(reversed(newest_first[:turns_limit]))
    # The messages from the page's first customer message up to the next page's (newer) one.
    in_page = select(Message).where(Message.conversation_id == conversation_id)
    if more and turns:
        start = s.execute(select(Message.created_at).where(Message.id == turns[0].message_id)).scalar_one()
        in_page = in_page.where(Message.created_at >= start)
    if before is not None:
        newer = s.execute(
            select(Message.created_at)
            .join(Turn, Turn.message_id == Message.id)
            .where(Turn.conversation_id == conversation_id, Turn.seq == before)
        ).scalar_one_or_none()
        if newer is not None:
            in_page = in_page.where(Message.created_at < newer)
    messages = s.execute(in_page.order_by(Message.created_at, Message.id)).scalars().all()
    runs = (
        s.execute(select(AgentRun).where(AgentRun.turn_id.in_([t.id for t in turns]))).scalars().all() if turns else []
    )
    by_turn: dict[str, dict[str, AgentRun]] = {}
    for r in runs:
        by_turn.setdefault(r.turn_id, {})[r.agent] = r
    return ConversationView(
        id=conversation.id,
        source=conversation.source,
        external_id=conversation.external_id,
        channel=conversation.channel,
        subject=conversation.subject,
        customer=conversation.customer,
        messages=[
            {"id": m.id, "role": m.role, "body": m.body, "turn_id": m.turn_id, "created_at": _iso(m.created_at)}
            for m in messages
        ],
        turns=[_turn_view(t, by_turn.get(t.id, {})) for t in turns],
        next_before=turns[0].seq if more and turns else None,
    )


def _turn_view(t: Turn, runs: dict[str, AgentRun]) -> TurnView:
    agents: list[dict[str, Any]] = []
    for name in t.agents or []:
        run = runs.get(name)
        if run is None:
            agents.append(
                {"agent": name, "status": "timed_out" if t.state == TurnState.done else "pending", "late": False}
            )
            continue
        result = AgentResult.model_validate(run.result)
        agents.append(
            {
                "agent": name,
                "status": run.status,
                "confidence": run.confidence,
                "late": run.late,
                "answer": result.answer,
                "escalation_reason": result.escalation_reason,
                "detail": result.detail,
                "facts": [f.model_dump() for f in result.facts],
                "tool_calls": [c.model_dump(exclude={"output"}) for c in result.tool_calls],
                "timings_ms": result.timings.model_dump(),
            }
        )
    return TurnView(
        id=t.id,
        message_id=t.message_id,
        state=t.state,
        outcome=t.outcome,
        reply=t.reply,
        escalation_reason=t.escalation_reason,
        merge_trigger=t.merge_trigger,
        agents=agents,
        created_at=_iso(t.created_at) or "",
        started_at=_iso(t.started_at),
        finished_at=_iso(t.finished_at),
        timings_ms={
            "queue_wait": _ms(t.created_at, t.started_at),
            "agents": _ms(t.started_at, t.finished_at),
            "total": _ms(t.created_at, t.finished_at),
        },
    )
