"""Retention: conversations past the age are deleted with all their rows; younger ones stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from orchestrator.ingest import accept_message, accept_ticket
from orchestrator.retention import purge_expired
from shared.contracts import MessageIn, TicketIn
from shared.models import Conversation, Event, Message, Turn
from shared.sandbox.models import SandboxIdempotency
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def _conversation(s: Session, days_ago: int) -> str:
    ticket = TicketIn.model_validate(
        {
            "source": "helpdesk",
            "external_id": f"ret-{uuid.uuid4().hex[:8]}",
            "customer": {"id": "cust_ret"},
            "body": "hello",
        }
    )
    accepted = accept_ticket(s, ticket, via="test")
    accept_message(s, accepted.conversation_id, MessageIn(body="and again"), via="test")
    then = func.now() - timedelta(days=days_ago)
    s.execute(update(Message).where(Message.conversation_id == accepted.conversation_id).values(created_at=then))
    s.execute(update(Conversation).where(Conversation.id == accepted.conversation_id).values(created_at=then))
    return accepted.conversation_id


def _left(s: Session, conversation_id: str) -> int:
    """Rows of the conversation itself, its messages, turns and events."""
    counts = [
        select(func.count()).select_from(Conversation).where(Conversation.id == conversation_id),
        select(func.count()).select_from(Message).where(Message.conversation_id == conversation_id),
        select(func.count()).select_from(Turn).where(Turn.conversation_id == conversation_id),
        select(func.count()).select_from(Event).where(Event.conversation_id == conversation_id),
    ]
    return sum(int(s.execute(query).scalar_one()) for query in counts)


def test_conversations_past_the_retention_age_are_deleted_and_younger_ones_stay(s: Session) -> None:
    old, young = _conversation(s, days_ago=91), _conversation(s, days_ago=89)
    assert purge_expired(s, 90, by="test", dry_run=True) == {"conversations": 1}
    assert _left(s, old) > 0  # a dry run deletes nothing
    counts = purge_expired(s, 90, by="test")
    assert counts["conversations"] == 1 and counts["messages"] == 2 and counts["turns"] == 2
    assert _left(s, old) == 0 and _left(s, young) > 0
    assert purge_expired(s, 90, by="test")["conversations"] == 0


def test_retention_run_dry_run_counts_without_deleting(database_url: str) -> None:
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "switchboard.cli", "retention", "run", "--dry-run"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["retention_days"] == 90 and "conversations" in report["would_delete"]


def test_the_tools_first_results_go_with_the_retention_age(s: Session) -> None:
    s.add_all(
        [
            SandboxIdempotency(key="turn_old:refund_payment:pay_1", tool="refund_payment", result={"refunded": True}),
            SandboxIdempotency(key="turn_new:refund_payment:pay_2", tool="refund_payment", result={"refunded": True}),
        ]
    )
    s.flush()
    s.execute(
        update(SandboxIdempotency)
        .where(SandboxIdempotency.key == "turn_old:refund_payment:pay_1")
        .values(created_at=func.now() - timedelta(days=91))
    )
    purge_expired(s, 90, by="test")
    left = s.execute(select(SandboxIdempotency.key).where(SandboxIdempotency.key.like("turn_%"))).scalars()
    assert list(left) == ["turn_new:refund_payment:pay_2"]
