"""Erasure and retention: deleting conversations with every row that belongs to them.

A conversation's rows are its messages, turns, agent runs, tool calls, escalations,
deliveries and events (events carry the conversation or turn id as plain text, so they
are deleted by id, not by cascade), and the delivery ids it came in with (by cascade).
``erase_customer`` deletes one customer's conversations of one source; ``purge_expired``
those whose last message is older than ``retention_days``. Each records one event that
names no person: who asked, the source, and the counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, or_, select
from sqlalchemy.orm import Session

from shared.models import (
    AgentRun,
    Conversation,
    Delivery,
    Escalation,
    Event,
    HelpdeskEvent,
    Message,
    SeenDelivery,
    ToolCall,
    Turn,
)
from shared.sandbox.models import SandboxIdempotency

BATCH = 500
SEEN_DELIVERY_TTL = timedelta(hours=24)
TABLES = ("conversations", "messages", "turns", "agent_runs", "tool_calls", "escalations", "deliveries", "events")


def delete_conversations(s: Session, conversation_ids: list[str]) -> dict[str, int]:
    """Delete these conversations and every row that belongs to them; the counts by table."""
    counts = dict.fromkeys(TABLES, 0)
    if not conversation_ids:
        return counts
    turn_ids = list(s.execute(select(Turn.id).where(Turn.conversation_id.in_(conversation_ids))).scalars())
    steps: list[tuple[str, Delete]] = [
        ("tool_calls", delete(ToolCall).where(ToolCall.turn_id.in_(turn_ids))),
        ("agent_runs", delete(AgentRun).where(AgentRun.turn_id.in_(turn_ids))),
        # a bot's reply has its turn, a human's (the desk) its conversation only
        ("deliveries", delete(Delivery).where(Delivery.conversation_id.in_(conversation_ids))),
        # with their desk events, notes and replies (ON DELETE CASCADE)
        ("escalations", delete(Escalation).where(Escalation.turn_id.in_(turn_ids))),
        ("turns", delete(Turn).where(Turn.id.in_(turn_ids))),
        ("messages", delete(Message).where(Message.conversation_id.in_(conversation_ids))),
        ("conversations", delete(Conversation).where(Conversation.id.in_(conversation_ids))),
        # Last: deleting the deliveries and turns above waited for any transaction still
        # writing them (a delivery attempt recording its result, a late agent result), so
        # the events those wrote are committed now and go too; later writers find no row.
        ("events", delete(Event).where(or_(Event.conversation_id.in_(conversation_ids), Event.turn_id.in_(turn_ids)))),
    ]
    for table, statement in steps:
        result = cast(CursorResult[Any], s.execute(statement))
        counts[table] += result.rowcount
    return counts


def erase_customer(s: Session, *, source: str, customer_id: str, by: str) -> dict[str, int]:
    """Everything about one customer of one source. Idempotent: a second erasure counts zeros."""
    ids = list(
        s.execute(
            select(Conversation.id).where(Conversation.source == source, Conversation.customer_id == customer_id)
        ).scalars()
    )
    counts = delete_conversations(s, ids)
    s.add(Event(kind="customer.erased", data={"source": source, "by": by, "counts": counts}))
    return counts


def expired_conversations(s: Session, retention_days: int, *, now: datetime | None = None) -> list[str]:
    """Conversations whose last message is older than ``retention_days`` (at most BATCH).

    Only conversations created before the cutoff are candidates, and each is checked for a
    newer message through the messages' conversation index: no scan of every message.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    newer_message = (
        select(Message.id).where(Message.conversation_id == Conversation.id, Message.created_at >= cutoff).exists()
    )
    query = select(Conversation.id).where(Conversation.created_at < cutoff, ~newer_message).limit(BATCH)
    return list(s.execute(query).scalars())


def prune_seen_deliveries(s: Session, *, now: datetime | None = None) -> int:
    """Forget delivery ids and signatures older than SEEN_DELIVERY_TTL: a signature is stale
    after five minutes anyway, and a helpdesk retries a delivery within hours, not days. The
    connected helpdesks' webhooks worked that long ago go too (their text went when worked)."""
    cutoff = (now or datetime.now(UTC)) - SEEN_DELIVERY_TTL
    result = cast(CursorResult[Any], s.execute(delete(SeenDelivery).where(SeenDelivery.seen_at < cutoff)))
    worked = delete(HelpdeskEvent).where(HelpdeskEvent.state != "pending", HelpdeskEvent.done_at < cutoff)
    return result.rowcount + cast(CursorResult[Any], s.execute(worked)).rowcount


def prune_tool_results(s: Session, retention_days: int, *, now: datetime | None = None) -> int:
    """The sandbox tools' first results (masked addresses, last four digits), kept to replay a
    repeated call, go when the turns they answered are past the retention age too."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    old = delete(SandboxIdempotency).where(SandboxIdempotency.created_at < cutoff)
    return cast(CursorResult[Any], s.execute(old)).rowcount


def purge_expired(s: Session, retention_days: int, *, by: str, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with ``dry_run`` only count) the conversations past the retention age."""
    ids = expired_conversations(s, retention_days)
    if dry_run:
        return {"conversations": len(ids)}
    prune_seen_deliveries(s)
    prune_tool_results(s, retention_days)
    counts = delete_conversations(s, ids)
    if ids:
        s.add(Event(kind="retention.purged", data={"by": by, "retention_days": retention_days, "counts": counts}))
    return counts
