"""SQLAlchemy 2 typed models: every state change of a turn leaves a row behind."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from shared.contracts import TurnState


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_conversation_source_external"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(256))
    channel: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text, default="")
    customer_id: Mapped[str] = mapped_column(String(256), index=True)
    customer: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The sequence of its turns: incremented under the row's lock for each message, so
    # turns are numbered in the order their messages were stored (turns.seq).
    turn_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when a turn escalates: from then on the conversation is a human's, and no agent
    # acts on it until a human hands it back (which clears this).
    with_human_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A human answered in the helpdesk itself (Zendesk, Freshdesk, Intercom): a bot reply to a
    # customer message older than that is not sent.
    human_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # A retried follow-up with the same external id is one message, not two.
        Index(
            "uq_message_external",
            "conversation_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # customer | assistant | human
    body: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    turn_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A message the guardrails flagged as an injection: kept on the record for the human,
    # never put in an agent's window again.
    flagged: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # The moment of the insert, not of its transaction: two messages stored in one
    # transaction (a question and its answer) keep their order.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp(), nullable=False
    )


class Turn(Base):
    """One customer message and what Switchboard did about it.

    state: queued -> running -> done. outcome (when done): resolved | clarify | escalated.
    """

    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_open", "state", "deadline_at", postgresql_where=text("state <> 'done'")),
        UniqueConstraint("conversation_id", "seq", name="uq_turns_conversation_seq"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    # 1, 2, 3 … within the conversation: turns start strictly in this order, one at a time.
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=TurnState.queued.value)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    escalation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    merge_trigger: Mapped[str | None] = mapped_column(String(16), nullable=True)
    agents: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    results_in: Mapped[int] = mapped_column(Integer, default=0)
    # Outside the rollout: the agents run with tools that change nothing and nothing is sent.
    shadow: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _now()
    enqueued_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When its agent tasks were on the broker: a running turn without it lost them in a crash
    # of the orchestrator that started it, and the sweeper starts its agents again.
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The latest an agent that has not started yet may start: the turn waits for such agents
    # up to here (turn_timeout_s after the start), then merges with what it has.
    budget_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AgentStart(Base):
    """An agent began work on a turn, with the deadline it took: its start plus its own
    deadline. One per agent and turn, so a second copy of a task never runs the agent twice."""

    __tablename__ = "agent_starts"

    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True)
    agent: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgentRun(Base):
    __tablename__ = "agent_runs"
    __table_args__ = (UniqueConstraint("turn_id", "agent", name="uq_agent_run_turn_agent"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(default=0.0)
    late: Mapped[bool] = mapped_column(default=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime] = _now()


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = _now()


class Action(Base):
    """A change a tool made to the company's systems, written in the same transaction as the
    change (the sandbox), or before the call as ``pending`` and settled by the answer (a
    company's HTTP service). The merge reads these rows: no action is ever silent."""

    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_actions_idempotency_key"),
        CheckConstraint("state IN ('done', 'pending', 'refused')", name="ck_actions_state"),
        Index("ix_actions_customer_tool", "tenant", "customer_id", "tool", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # done | pending (a service's answer unknown) | refused
    idempotency_key: Mapped[str] = mapped_column(String(255))
    backend: Mapped[str | None] = mapped_column(Text, nullable=True)  # the service's URL; None: the sandbox
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Escalation(Base):
    """A turn a human must answer: the desk's queue (docs/desk.md has the states)."""

    __tablename__ = "escalations"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'claimed', 'resolved', 'handed_back')", name="ck_escalations_state"),
        CheckConstraint(
            "(state = 'claimed') = (claimed_by IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="ck_escalations_claim",
        ),
        Index(
            "ix_escalations_queue",
            "sla_due_at",
            text("priority DESC"),
            "queued_at",
            postgresql_where=text("state = 'queued'"),
        ),
        Index("ix_escalations_leases", "lease_expires_at", postgresql_where=text("state = 'claimed'")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    suggested_reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | claimed | resolved | handed_back
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    queued_at: Mapped[datetime] = _now()
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claim_token: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_reply_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _now()


class EscalationEvent(Base):
    """One transition of an escalation: who, when, from which state to which."""

    __tablename__ = "escalation_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(80))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    claim_token: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


class EscalationNote(Base):
    """A private note of a human on an escalation: never sent to the customer."""

    __tablename__ = "escalation_notes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class DeskReply(Base):
    """A human's reply, once per (escalation, claim token, message the human last saw)."""

    __tablename__ = "desk_replies"

    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), primary_key=True)
    claim_token: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seen_message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    author: Mapped[str] = mapped_column(String(80))
    resolved: Mapped[bool] = mapped_column()
    acceptance: Mapped[str] = mapped_column(String(16))  # unchanged | edited | discarded | none
    created_at: Mapped[datetime] = _now()


class User(Base):
    """A human of the web desk. Only an argon2id hash of the password is stored."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('agent', 'admin')", name="ck_users_role"),
        Index("uq_users_email", text("lower(email)"), unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeskSession(Base):
    """A logged-in web desk session: the SHA-256 digest of its cookie, never the cookie."""

    __tablename__ = "desk_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """The audit log: one row per state change, so a turn can be explained afterwards."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    turn_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(48))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


class Delivery(Base):
    """The outbox of replies to helpdesks: one row per bot turn or human reply, delivered at
    most once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint("(turn_id IS NOT NULL) <> (escalation_id IS NOT NULL)", name="ck_deliveries_origin"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A bot's reply has its turn; a human's, its escalation (never both).
    turn_id: Mapped[str | None] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), unique=True)
    escalation_id: Mapped[str | None] = mapped_column(
        ForeignKey("escalations.id", ondelete="CASCADE", name="fk_deliveries_escalation_id"), nullable=True
    )
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _now()


class HelpdeskEvent(Base):
    """A webhook of a connected helpdesk, taken (2xx) and worked later by a task: the customer
    looked up in the helpdesk, the ticket or message accepted, or a human's answer recorded.
    ``event`` is cleared when it is done; the row stays a day to drop a retried webhook."""

    __tablename__ = "helpdesk_events"
    __table_args__ = (
        UniqueConstraint("helpdesk", "dedupe", name="uq_helpdesk_events_dedupe"),
        CheckConstraint("state IN ('pending', 'done', 'failed')", name="ck_helpdesk_events_state"),
        CheckConstraint("kind IN ('inbound', 'human', 'rating')", name="ck_helpdesk_events_kind"),
        Index("ix_helpdesk_events_pending", "next_attempt_at", postgresql_where=text("state = 'pending'")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    helpdesk: Mapped[str] = mapped_column(String(64))
    dedupe: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))  # inbound | human | rating
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE", name="fk_helpdesk_events_conversation_id"),
        nullable=True,
        index=True,
    )
    created_at: Mapped[datetime] = _now()
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Feedback(Base):
    """A customer's satisfaction rating (1-5) of a conversation, one per way it came in."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("conversation_id", "via", name="uq_feedback_conversation_via"),
        CheckConstraint("score BETWEEN 1 AND 5", name="ck_feedback_score"),
        CheckConstraint("handled_by IN ('bot', 'human')", name="ck_feedback_handled_by"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE", name="fk_feedback_conversation_id")
    )
    source: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(64))  # api | the helpdesk's name
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    handled_by: Mapped[str] = mapped_column(String(8))  # bot | human
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """A caller of the API. Only the SHA-256 digest of the key is stored: the key itself is
    shown once, when it is created, and cannot be read back."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("digest", name="uq_api_keys_digest"),
        CheckConstraint("role IN ('helpdesk', 'agent', 'admin')", name="ck_api_keys_role"),
        CheckConstraint("(role = 'helpdesk') = (source IS NOT NULL)", name="ck_api_keys_source"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(64))  # a helpdesk key's one source
    digest: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a key in a list
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SeenDelivery(Base):
    """An inbound request already taken, by the helpdesk's delivery id or, for a signed one,
    its signature: the same delivery again is answered with what the first one created.
    Kept a day (the retention job prunes them) and deleted with their conversation."""

    __tablename__ = "seen_deliveries"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(300), primary_key=True)  # "delivery:<id>" | "signature:<sha256>"
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    turn_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class WorkerProcess(Base):
    """A warm worker process (prefork children included) and the queues it takes tasks from,
    refreshed while it lives: /readyz is ready only when every queue has a fresh one."""

    __tablename__ = "worker_processes"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    queues: Mapped[list[Any]] = mapped_column(JSONB)
    warm_at: Mapped[datetime] = _now()
    seen_at: Mapped[datetime] = _now()


class ModelSpend(Base):
    """What model calls cost on one UTC day, summed over every process: the daily budget
    is checked against this one total."""

    __tablename__ = "model_spend"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    spent_usd: Mapped[Decimal] = mapped_column(Numeric(16, 8))
    calls: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _now()


# Built once: a turn writes three or four events. A Core INSERT, not an object: a unit of
# work that holds no object runs its statements without the ORM's per-call work (db.UnitOfWork).
_NEW_EVENT = insert(Event)


def record_event(
    s: Session, kind: str, data: dict[str, Any], *, conversation_id: str | None = None, turn_id: str | None = None
) -> None:
    """One row of the audit log, written now (in the session's transaction)."""
    s.execute(_NEW_EVENT, {"conversation_id": conversation_id, "turn_id": turn_id, "kind": kind, "data": data})
