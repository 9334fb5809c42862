"""The turn state machine and the once-only merge.

queued --start_turn--> running --merge_turn--> done

Every transition is one conditional UPDATE checked by its row count, so a redelivered
task, a second orchestrator or the sweeper can never run a step twice. Agent results
arrive as rows (``record_result``); the agent whose result completes the set runs the
merge at once, and the orchestrator's clock runs it at the deadline otherwise —
whichever comes first wins the conditional UPDATE, the other finds nothing to do.

Each function takes the caller's ``Session`` and does not commit: the edge (a Celery
task, ``orchestrator.fan_in``) owns the unit of work. Metrics and logs of a step are
handed to ``after_commit``, so a step that rolls back leaves no trace in them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, aliased

from orchestrator.delivery import queue_delivery
from orchestrator.desk import escalation_row, queued_event, reopen_for_message
from orchestrator.helpdesks.outbox import handoff_note
from orchestrator.merge import MergeDecision, decide, escalated, escalation_summary
from orchestrator.turn_record import first_reply_wait, turn_line
from orchestrator.turn_record import observe as observe_turn
from orchestrator.window import model_window
from shared.contracts import (
    AgentResult,
    AgentStatus,
    AgentTask,
    Customer,
    EscalationReason,
    MergeTrigger,
    Outcome,
    TurnState,
)
from shared.db import after_commit
from shared.guardrails import detect_injection, for_storage, mapping_for_storage, screen
from shared.i18n import language_of
from shared.idempotency import ACTION_DONE, ACTION_PENDING, ACTION_REFUSED
from shared.metrics import (
    AGENT_LATE_RESULTS,
    AGENT_TIMEOUTS,
    ESCALATIONS,
    MERGES,
    TURN_LATENCY,
    TURNS,
)
from shared.models import (
    Action,
    AgentRun,
    AgentStart,
    Conversation,
    Event,
    Message,
    ToolCall,
    Turn,
    new_id,
    record_event,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

WINDOW_MESSAGES = 20
TURN_DONE_CHANNEL = "switchboard_turn_done"
R = TypeVar("R", bound=Any)  # a message row with .created_at


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class ConversationBusy(Exception):
    """An earlier turn of the same conversation is still open: this one waits its turn."""


@dataclass(frozen=True)
class StartedTurn:
    turn_id: str
    deadline_at: float
    tasks: list[AgentTask]
    guardrail: str | None = None  # an escalation reason decided before any agent ran
    held: bool = False  # the conversation is with a human: the turn is done, nothing to merge


def _screen(body: str, customer: Customer) -> tuple[str, list[str]] | None:
    """Injection first (security wants to know), then a request for a human."""
    screening = screen(body, customer_email=customer.email, customer_id=customer.id)
    if screening.injection.flagged:
        return EscalationReason.injection.value, list(screening.injection.rules)
    # The name comes from the helpdesk but was typed by the customer: it reaches the model too.
    named = detect_injection(customer.name) if customer.name else None
    if named is not None and named.flagged:
        return EscalationReason.injection.value, [f"name:{rule}" for rule in named.rules]
    if screening.wants_human:
        return EscalationReason.human_requested.value, []
    return None


def _since_last_pause(newest_first: Sequence[R], ttl: timedelta) -> list[R]:
    """The messages after the conversation last sat idle longer than ``ttl``: a customer who
    comes back the next day starts a fresh context (the history stays on the record)."""
    kept = list(newest_first[:1])
    for newer, older in pairwise(newest_first):
        if newer.created_at - older.created_at > ttl:
            break
        kept.append(older)
    return kept


_EARLIER = aliased(Turn)
# Built once: every ticket's start reads the turn with whether an earlier one is open.
_QUEUED_TURN = select(
    Turn.conversation_id,
    Turn.state,
    select(_EARLIER.id)
    .where(
        _EARLIER.conversation_id == Turn.conversation_id,
        _EARLIER.state != TurnState.done,
        _EARLIER.seq < Turn.seq,
    )
    .exists()
    .label("busy"),
).where(Turn.id == bindparam("turn_id"))
_ATTEMPT = (
    update(Turn)
    .where(Turn.id == bindparam("turn_id"), Turn.state == TurnState.queued)
    .values(attempts=Turn.attempts + 1)
    .returning(Turn.attempts)
)


def _queued_conversation(s: Session, turn_id: str) -> str | None:
    """The conversation of a turn that may start now; None when it is not queued. Raises
    ConversationBusy while an earlier turn of the conversation (by its sequence number) is
    not done yet. One statement: the turn and whether an earlier one is open."""
    turn = s.execute(_QUEUED_TURN, {"turn_id": turn_id}).one_or_none()
    if turn is None:
        log.warning("turn %s does not exist; nothing to do", turn_id)
        return None
    if turn.state != TurnState.queued:
        return None
    if turn.busy:
        raise ConversationBusy(turn_id)
    return str(turn.conversation_id)


def begin_attempt(s: Session, turn_id: str) -> int | None:
    """Count one attempt to start a queued turn, committed before the start itself: a start
    that raises, or kills its worker, still counts. The attempt's number, or None when the
    turn is not queued (started already, or done). Raises ConversationBusy, counting
    nothing, while an earlier turn of the conversation is open: waiting is not failing."""
    if _queued_conversation(s, turn_id) is None:
        return None
    return s.execute(_ATTEMPT, {"turn_id": turn_id}).scalar_one_or_none()


def _claim_queued(s: Session, turn_id: str, **values: Any) -> Any:
    """The one step out of ``queued``: a conditional UPDATE, so only one caller makes it.
    The turn's conversation, message and creation time, or None when it was not queued."""
    return s.execute(
        update(Turn)
        .where(Turn.id == turn_id, Turn.state == TurnState.queued)
        .values(**values)
        .returning(Turn.conversation_id, Turn.message_id, Turn.created_at)
    ).one_or_none()


def give_up(s: Session, turn_id: str, attempts: int) -> bool:
    """Take a turn that failed to start ``attempts`` times out of the queue for a human: it
    is merged as escalated (``processing_failed``) with no agent run, and the turns after it
    go on. False when it is no longer queued."""
    now = time.time()
    taken = _claim_queued(
        s,
        turn_id,
        state=TurnState.running,
        started_at=_ts(now),
        deadline_at=_ts(now),
        agents=[],
        escalation_reason=EscalationReason.processing_failed.value,
    )
    if taken is None:
        return False
    data = {"attempts": attempts}
    s.add(Event(conversation_id=taken.conversation_id, turn_id=turn_id, kind="turn.gave_up", data=data))
    log.error("turn %s could not be started in %d attempts: escalated to a human", turn_id, attempts)
    return True


def _hold(s: Session, turn_id: str, conversation: Row[Any]) -> StartedTurn | None:
    """A message of a conversation that is with a human: on the record for the human, and
    done at once. No agent runs and the bot says nothing until a human hands it back."""
    now = time.time()
    held = _claim_queued(
        s,
        turn_id,
        state=TurnState.done,
        outcome=Outcome.held,
        merge_trigger=MergeTrigger.held,
        agents=[],
        started_at=_ts(now),
        finished_at=_ts(now),
    )
    if held is None:
        return None
    conversation_id = conversation.id
    record_event(s, "turn.held", {}, conversation_id=conversation_id, turn_id=turn_id)
    # The human's: a resolved escalation of this conversation goes back to the queue.
    reopen_for_message(s, conversation_id, held.message_id)
    s.execute(_NOTIFY_DONE, {"channel": TURN_DONE_CHANNEL, "turn": turn_id})
    latency = max(0.0, now - held.created_at.timestamp())
    line = turn_line(
        turn_id=turn_id,
        conversation_id=conversation_id,
        source=conversation.source,
        customer_id=conversation.customer_id,
        seq=0,
        trigger=MergeTrigger.held,
        outcome=Outcome.held,
        reason=None,
        results={},
        expected=[],
        duration_s=latency,
        shadow=False,
    )

    def observe() -> None:
        TURNS.labels(Outcome.held).inc()
        TURN_LATENCY.labels(Outcome.held).observe(latency)
        log.info("turn %s held: its conversation is with a human", turn_id)
        observe_turn(line, None)

    after_commit(s, observe)
    return StartedTurn(turn_id=turn_id, deadline_at=now, tasks=[], held=True)


def in_rollout(conversation_id: str, percent: int) -> bool:
    """Whether the bot answers this conversation: a stable hash of its id under ``percent``
    (the same conversation is always on the same side while the percentage stays)."""
    bucket = int.from_bytes(hashlib.sha256(conversation_id.encode()).digest()[:8], "big") % 100
    return bucket < percent


_STARTED_CONVERSATION = select(
    Conversation.id,
    Conversation.source,
    Conversation.customer_id,
    Conversation.customer,
    Conversation.with_human_since,
).where(Conversation.id == bindparam("conversation_id"))


def start_turn(s: Session, turn_id: str, settings: Settings) -> StartedTurn | None:
    """Claim a queued turn and build its agent tasks. None when it was already claimed."""
    conversation_id = _queued_conversation(s, turn_id)
    if conversation_id is None:
        return None
    conversation = s.execute(_STARTED_CONVERSATION, {"conversation_id": conversation_id}).one()
    if conversation.with_human_since is not None:
        return _hold(s, turn_id, conversation)

    now = time.time()
    # The earliest the turn can be due: every agent starting at once. Each agent moves the
    # turn's deadline on to its own when it starts (claim_start).
    deadlines = {agent: now + settings.deadline_for(agent) for agent in settings.agents}
    deadline_at = max(deadlines.values())
    budget_at = now + settings.turn_timeout_s
    shadow = not in_rollout(conversation.id, settings.rollout_percent)
    claimed = _claim_queued(
        s,
        turn_id,
        state=TurnState.running,
        started_at=_ts(now),
        deadline_at=_ts(deadline_at),
        budget_at=_ts(budget_at),
        agents=list(settings.agents),
        shadow=shadow,
    )
    if claimed is None:
        return None
    rows = _window_rows(s, conversation.id, claimed.message_id, settings)
    customer = Customer.model_validate(conversation.customer)
    latest = next((r.body for r in rows if r.id == claimed.message_id), None)
    if latest is None:  # not in the window (a flagged message is never): read it
        latest = s.execute(select(Message.body).where(Message.id == claimed.message_id)).scalar_one()
    verdict = _screen(latest, customer)
    window = model_window([(r.role, r.body) for r in reversed(rows)], customer.email)
    if verdict is not None:
        # Guardrails decide before any agent runs: no tool is called on this turn. The
        # reason is on the row, so whoever merges it (the sweeper too) keeps it.
        s.execute(update(Turn).where(Turn.id == turn_id).values(agents=[], escalation_reason=verdict[0]))
        if verdict[0] == EscalationReason.injection:
            s.execute(update(Message).where(Message.id == claimed.message_id).values(flagged=True))
        record_event(
            s,
            "guardrail.flagged",
            {"reason": verdict[0], "rules": verdict[1]},
            conversation_id=conversation.id,
            turn_id=turn_id,
        )
        return StartedTurn(turn_id=turn_id, deadline_at=now, tasks=[], guardrail=verdict[0])
    record_event(
        s,
        "turn.started",
        {"agents": list(settings.agents), "deadline_at": deadline_at, "budget_at": budget_at, "shadow": shadow},
        conversation_id=conversation.id,
        turn_id=turn_id,
    )
    tasks = _tasks(turn_id, conversation.id, conversation.source, customer, window, deadlines, settings)
    return StartedTurn(turn_id=turn_id, deadline_at=deadline_at, tasks=tasks)


def _window_rows(s: Session, conversation_id: str, message_id: str, settings: Settings) -> list[Any]:
    """The messages of the window up to the turn's own, newest first (with their ids)."""
    message_created = select(Message.created_at).where(Message.id == message_id).scalar_subquery()
    return _since_last_pause(
        s.execute(
            select(Message.id, Message.role, Message.body, Message.created_at)
            .where(
                Message.conversation_id == conversation_id,
                Message.created_at <= message_created,
                Message.flagged.is_(False),  # an injection never reaches a window again
            )
            .order_by(Message.created_at.desc())
            .limit(WINDOW_MESSAGES)
        ).all(),
        timedelta(hours=settings.conversation_ttl_hours),
    )


def _tasks(
    turn_id: str,
    conversation_id: str,
    source: str,
    customer: Customer,
    window: list[Any],
    deadlines: dict[str, float],
    settings: Settings,
) -> list[AgentTask]:
    return [
        AgentTask(
            turn_id=turn_id,
            conversation_id=conversation_id,
            agent=agent,
            source=source,
            tenant=settings.tenant_of(source),
            customer=customer,
            window=window,
            deadline_at=deadline_at,
            published_at=time.time(),
            max_steps=settings.max_tool_steps,
        )
        for agent, deadline_at in deadlines.items()
    ]


_PUBLISHED = update(Turn).where(Turn.id == bindparam("turn_id")).values(published_at=func.now())


def mark_published(s: Session, turn_id: str) -> None:
    """Every agent task of the turn is on the broker."""
    s.execute(_PUBLISHED, {"turn_id": turn_id})


def restart_unpublished(s: Session, turn_id: str, settings: Settings) -> StartedTurn | None:
    """The agent tasks of a running turn whose orchestrator died before it published them,
    with fresh deadlines: the agents get their whole time, as if the turn started now.
    None when the turn is merged, or its tasks were published after all."""
    now = time.time()
    expected = s.execute(
        select(Turn.agents).where(Turn.id == turn_id, Turn.state == TurnState.running, Turn.published_at.is_(None))
    ).scalar_one_or_none()
    if not expected:
        return None
    deadlines = {agent: now + settings.deadline_for(agent) for agent in expected}
    budget_at = now + settings.turn_timeout_s
    restarted = s.execute(
        update(Turn)
        .where(Turn.id == turn_id, Turn.state == TurnState.running, Turn.published_at.is_(None))
        .values(started_at=_ts(now), deadline_at=_ts(max(deadlines.values())), budget_at=_ts(budget_at))
        .returning(Turn.conversation_id, Turn.message_id)
    ).one_or_none()
    if restarted is None:
        return None
    s.add(
        Event(
            conversation_id=restarted.conversation_id,
            turn_id=turn_id,
            kind="turn.republished",
            data={"agents": expected},
        )
    )
    return _restarted(s, turn_id, restarted, deadlines, settings)


def _restarted(s: Session, turn_id: str, turn: Any, deadlines: dict[str, float], settings: Settings) -> StartedTurn:
    conversation = s.get_one(Conversation, turn.conversation_id)
    customer = Customer.model_validate(conversation.customer)
    rows = _window_rows(s, conversation.id, turn.message_id, settings)
    window = model_window([(r.role, r.body) for r in reversed(rows)], customer.email)
    tasks = _tasks(turn_id, conversation.id, conversation.source, customer, window, deadlines, settings)
    return StartedTurn(turn_id=turn_id, deadline_at=max(deadlines.values()), tasks=tasks)


def _unstarted(s: Session, turn_id: str, expected: Sequence[str]) -> list[str]:
    """The agents of a turn that have neither started nor sent a result."""
    seen = set(
        s.execute(
            select(AgentStart.agent)
            .where(AgentStart.turn_id == turn_id)
            .union(select(AgentRun.agent).where(AgentRun.turn_id == turn_id))
        ).scalars()
    )
    return [a for a in expected if a not in seen]


def republish_lost(
    s: Session, turn_id: str, agents: Sequence[str], settings: Settings, lost_after_s: float
) -> StartedTurn | None:
    """The tasks of ``agents`` of a running turn, published ``lost_after_s`` ago and not
    started (a broker restart without persistence loses them; a killed worker can hold them
    for an hour): published again while the turn has budget left. Each agent runs at most
    once whatever copy it takes (claim_start). None when there is nothing to do."""
    now = time.time()
    turn = s.execute(
        update(Turn)
        .where(
            Turn.id == turn_id,
            Turn.state == TurnState.running,
            Turn.published_at < _ts(now - lost_after_s),
            Turn.budget_at > _ts(now),
        )
        .values(published_at=func.now())
        .returning(Turn.conversation_id, Turn.message_id, Turn.agents)
    ).one_or_none()
    if turn is None:
        return None
    lost = [a for a in _unstarted(s, turn_id, turn.agents) if a in agents]
    if not lost:
        return None
    s.add(
        Event(
            conversation_id=turn.conversation_id,
            turn_id=turn_id,
            kind="turn.republished",
            data={"agents": lost, "lost": True},
        )
    )
    deadlines = {agent: now + settings.deadline_for(agent) for agent in lost}
    return _restarted(s, turn_id, turn, deadlines, settings)


class Start(StrEnum):
    running = "running"  # this copy of the task runs the agent
    duplicate = "duplicate"  # another copy started it: this one does nothing
    too_late = "too_late"  # merged, or past the turn's budget: record that and run no tool
    forged = "forged"  # no such turn, not this agent's, or not this conversation's


@dataclass(frozen=True)
class Claim:
    start: Start
    deadline_at: float  # the agent's own deadline: its start plus its deadline
    source: str = ""
    customer: dict[str, Any] | None = None  # the turn's conversation's, never the task's
    shadow: bool = False  # the turn's: tools that change anything refuse


_START = text(
    """WITH started AS (
           INSERT INTO agent_starts (turn_id, agent, started_at, deadline_at)
           VALUES (:turn, :agent, :now, :deadline) ON CONFLICT DO NOTHING RETURNING deadline_at)
       UPDATE turns SET deadline_at = greatest(turns.deadline_at, started.deadline_at)
       FROM started WHERE turns.id = :turn RETURNING turns.id"""
)


# Built once: every agent's start and result runs these, and building a statement and its
# cache key cost about 80 us a time (the compiled SQL was cached already).
_CLAIMED_TURN = (
    select(
        Turn.state,
        Turn.budget_at,
        Turn.agents,
        Turn.shadow,
        Conversation.id,
        Conversation.source,
        Conversation.customer,
    )
    .join(Conversation, Conversation.id == Turn.conversation_id)
    .where(Turn.id == bindparam("turn_id"))
    .with_for_update(of=Turn)
)


def claim_start(s: Session, turn_id: str, agent: str, deadline_s: float, conversation_id: str | None = None) -> Claim:
    """An agent takes its turn: its deadline runs from now, and the turn waits for it.

    The turn's row is locked while the start is written, so a merge at the deadline either
    sees this start or runs first (and this agent finds the turn done). Two statements: the
    locked read, and the start with the turn's deadline moved on.
    """
    now = time.time()
    turn = s.execute(_CLAIMED_TURN, {"turn_id": turn_id}).one_or_none()
    if turn is None or agent not in (turn.agents or []) or conversation_id not in (None, turn.id):
        return Claim(Start.forged, now)
    known = {"source": turn.source, "customer": turn.customer, "shadow": bool(turn.shadow)}
    spent = turn.budget_at is not None and turn.budget_at.timestamp() <= now
    if turn.state != TurnState.running or spent:
        return Claim(Start.too_late, now, **known)
    deadline_at = now + deadline_s
    started = s.execute(
        _START, {"turn": turn_id, "agent": agent, "now": _ts(now), "deadline": _ts(deadline_at)}
    ).scalar_one_or_none()
    return Claim(Start.running if started else Start.duplicate, deadline_at, **known)


def turn_running(s: Session, turn_id: str) -> bool:
    """The turn is running (not queued, not merged); a plain read, no lock."""
    state = s.execute(select(Turn.state).where(Turn.id == turn_id)).scalar_one_or_none()
    return state == TurnState.running


def merge_due(s: Session, turn_id: str, now: float) -> float | None:
    """When a running turn may be merged without its missing results: once every agent that
    started is past its deadline, and, while some agent has not started, once the turn's
    budget is spent. Locks the turn's row for the caller's merge. None when it is not running."""
    turn = s.execute(
        select(Turn.deadline_at, Turn.budget_at, Turn.agents)
        .where(Turn.id == turn_id, Turn.state == TurnState.running)
        .with_for_update()
    ).one_or_none()
    if turn is None:
        return None
    due = turn.deadline_at.timestamp() if turn.deadline_at is not None else now
    if turn.budget_at is not None and _unstarted(s, turn_id, turn.agents):
        due = max(due, turn.budget_at.timestamp())
    return due


# Its columns are those of the parameters it is executed with.
_RECORDED = pg_insert(AgentRun).on_conflict_do_nothing(constraint="uq_agent_run_turn_agent").returning(AgentRun.id)
_COUNTED = (
    update(Turn)
    .where(Turn.id == bindparam("turn_id"), Turn.state == TurnState.running)
    .values(results_in=Turn.results_in + 1)
    .returning(Turn.results_in, func.jsonb_array_length(Turn.agents))
)


def record_result(s: Session, result: AgentResult, started_at: float) -> bool:
    """Store an agent's result. True when it completes the set and the merge should run now."""
    # Redacted once: the tool-call rows are the stored result's own calls.
    stored = mapping_for_storage(result.model_dump(mode="json"))
    run_id = s.execute(
        _RECORDED,
        {
            "turn_id": result.turn_id,
            "agent": result.agent,
            "status": result.status.value,
            "confidence": result.confidence,
            "result": stored,
            "started_at": _ts(started_at),
        },
    ).scalar_one_or_none()
    if run_id is None:  # a redelivered agent task: the first result stands
        return False
    if stored["tool_calls"]:
        s.execute(
            insert(ToolCall),
            [
                {
                    "turn_id": result.turn_id,
                    "agent": result.agent,
                    "call_id": c["call_id"],
                    "tool": c["tool"],
                    "arguments": c["arguments"],
                    "output": c["output"] if isinstance(c["output"], dict) else {"value": c["output"]},
                    "error": c["error"],
                    "duration_ms": c["duration_ms"],
                }
                for c in stored["tool_calls"]
            ],
        )
    counted = s.execute(_COUNTED, {"turn_id": result.turn_id}).one_or_none()
    if counted is None:
        # The merge already ran: keep the result for the record, but it changes nothing.
        s.execute(update(AgentRun).where(AgentRun.id == run_id).values(late=True))
        s.add(
            Event(
                turn_id=result.turn_id,
                kind="agent.late",
                data={"agent": result.agent, "status": result.status.value},
            )
        )
        after_commit(s, AGENT_LATE_RESULTS.labels(result.agent).inc)
        return False
    return bool(counted[0] >= counted[1])


@dataclass(frozen=True)
class Merged:
    turn_id: str
    decision: MergeDecision
    delivery_id: str | None


def _due_by(now: datetime) -> ColumnElement[bool]:
    """``merge_due`` as a condition on the turn's row: every agent that started is past its
    deadline, and, while one has not started, the budget is spent. An agent that starts
    concurrently moves ``turns.deadline_at`` under the row's lock, and Postgres re-checks
    the condition on that new row version, so the start is never merged over."""
    expected = func.jsonb_array_elements_text(Turn.agents).table_valued("value").alias("expected")
    started = (
        select(AgentStart.agent)
        .where(AgentStart.turn_id == Turn.id, AgentStart.agent == expected.c.value)
        .correlate_except(AgentStart)
    )
    answered = (
        select(AgentRun.agent)
        .where(AgentRun.turn_id == Turn.id, AgentRun.agent == expected.c.value)
        .correlate_except(AgentRun)
    )
    someone_unstarted = select(expected.c.value).where(~started.exists(), ~answered.exists()).exists()
    return and_(
        or_(Turn.deadline_at.is_(None), Turn.deadline_at <= now),
        or_(Turn.budget_at.is_(None), Turn.budget_at <= now, ~someone_unstarted),
    )


_MERGED_COLUMNS = (
    Turn.conversation_id,
    Turn.agents,
    Turn.created_at,
    Turn.message_id,
    Turn.escalation_reason,
    Turn.shadow,
    Turn.seq,
)
# The merge's statements, built once (a merge per turn); the clock's due-only merge adds its
# condition to the claim and builds that one.
_MERGE_CLAIM = (
    update(Turn)
    .where(Turn.id == bindparam("turn_id"), Turn.state == TurnState.running)
    .values(state=TurnState.done, merge_trigger=bindparam("trigger"), finished_at=bindparam("finished_at"))
    .returning(*_MERGED_COLUMNS)
)
_MERGE_RUNS = select(AgentRun.agent, AgentRun.result).where(AgentRun.turn_id == bindparam("turn_id"))
_MERGE_CONVERSATION = (
    select(
        Conversation.id,
        Conversation.source,
        Conversation.external_id,
        Conversation.customer_id,
        Conversation.customer,
        Message.body,
    )
    .join(Message, Message.id == bindparam("message_id"))
    .where(Conversation.id == bindparam("conversation_id"))
)
_NEW_REPLY = insert(Message)
_MERGE_ACTIONS = select(Action).where(Action.turn_id == bindparam("turn_id")).order_by(Action.id)
_MERGE_OUTCOME = (
    update(Turn)
    .where(Turn.id == bindparam("turn_id"))
    .values(outcome=bindparam("outcome"), reply=bindparam("reply"), escalation_reason=bindparam("reason"))
)
_NOTIFY_DONE = text("SELECT pg_notify(:channel, :turn)")


def merge_turn(
    s: Session,
    turn_id: str,
    trigger: MergeTrigger,
    settings: Settings,
    *,
    guardrail: str | None = None,
    only_if_due: bool = False,
) -> Merged | None:
    """Merge a running turn exactly once. None when another caller merged it first, or,
    with ``only_if_due``, when it is not due yet (see ``merge_due``).

    ``guardrail`` is an escalation reason the guardrails decided before fan-out.
    ``only_if_due`` makes the due check part of the merge's one conditional UPDATE, so the
    clock's merge at a deadline starts with one statement, not a locked read first.
    """
    now = time.time()
    claim = _MERGE_CLAIM.where(_due_by(_ts(now))) if only_if_due else _MERGE_CLAIM
    claimed = s.execute(claim, {"turn_id": turn_id, "trigger": trigger, "finished_at": _ts(now)}).one_or_none()
    if claimed is None:
        return None
    # A reason decided before fan-out (the guardrails, a turn given up) is on the row already.
    guardrail = guardrail or claimed.escalation_reason
    runs = s.execute(_MERGE_RUNS, {"turn_id": turn_id}).all()
    results = {r.agent: AgentResult.model_validate(r.result) for r in runs}
    expected: list[str] = list(claimed.agents)
    missing = [a for a in expected if a not in results]
    conversation = s.execute(
        _MERGE_CONVERSATION, {"message_id": claimed.message_id, "conversation_id": claimed.conversation_id}
    ).one()
    body = conversation.body
    # The language an acknowledgement of an escalation is written in.
    language = language_of(conversation.customer.get("locale"), body)
    decision = (
        escalated(guardrail, language=language)
        if guardrail is not None
        else decide({a: results.get(a) for a in expected}, settings.confidence_threshold, language=language)
    )
    # What the tools did, as written with each change: the merge never relies on an
    # agent's result alone to know whether money moved.
    actions = s.execute(_MERGE_ACTIONS, {"turn_id": turn_id}).scalars().all()
    silent = [a for a in actions if a.state != ACTION_REFUSED and not _reported(a, results.get(a.agent))]
    if silent and decision.outcome is not Outcome.escalated:
        # An action the customer's reply would not mention (its agent was cut off, lost its
        # result, or failed after acting; or a service never answered): a human takes it.
        late = any(results.get(a.agent) is None or results[a.agent].status is AgentStatus.timed_out for a in silent)
        reason = EscalationReason.timeout if late else EscalationReason.tool_failure
        decision = escalated(reason, decision.suggested_reply, decision.answered_by, language=language)
    if claimed.shadow:
        # Shadow mode: the customer hears nothing from the bot. A turn the bot would have
        # answered (or asked about) goes to a human with that answer as the suggestion; one it
        # would have escalated keeps its reason (an injection stays an injection).
        if decision.outcome is Outcome.escalated:
            decision = replace(decision, reply=None)
        else:
            decision = MergeDecision(
                Outcome.escalated, None, EscalationReason.shadow.value, decision.reply, decision.answered_by
            )
    # What is stored and sent holds no full card number, IBAN or secret, whatever an agent
    # (or a model) wrote into its answer (PCI DSS: never stored).
    decision = replace(
        decision,
        reply=for_storage(decision.reply) if decision.reply is not None else None,
        suggested_reply=for_storage(decision.suggested_reply) if decision.suggested_reply is not None else None,
    )

    s.execute(
        _MERGE_OUTCOME,
        {"turn_id": turn_id, "outcome": decision.outcome, "reply": decision.reply, "reason": decision.reason},
    )
    first_reply_s = (
        first_reply_wait(s, conversation.id, _ts(now)) if decision.reply is not None and not claimed.shadow else None
    )
    if decision.reply is not None:
        s.execute(
            _NEW_REPLY,
            {
                "id": new_id("msg"),
                "conversation_id": conversation.id,
                "role": "assistant",
                "body": decision.reply,
                "turn_id": turn_id,
            },
        )
    note: str | None = None
    if decision.outcome is Outcome.escalated:
        assert decision.reason is not None
        # From now on the conversation is the human's: later messages are held for them.
        s.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id, Conversation.with_human_since.is_(None))
            .values(with_human_since=func.now())
        )
        summary = escalation_summary(
            conversation.customer, body, decision, results, missing, [_action_line(a, results) for a in actions]
        )
        escalation = escalation_row(
            settings,
            turn_id=turn_id,
            conversation_id=conversation.id,
            reason=decision.reason,
            summary=for_storage(summary),
            suggested_reply=decision.suggested_reply,
        )
        s.add(escalation)
        s.flush()
        s.add(queued_event(escalation))
        note = handoff_note(decision.reason, escalation.summary, decision.suggested_reply)
    record_event(
        s,
        "turn.merged",
        {"trigger": trigger, "outcome": decision.outcome, "reason": decision.reason, "missing": missing},
        conversation_id=conversation.id,
        turn_id=turn_id,
    )
    delivery_id = (
        None
        if claimed.shadow
        else queue_delivery(
            s,
            settings,
            conversation,
            turn_id=turn_id,
            outcome=decision.outcome,
            reply=decision.reply,
            reason=decision.reason,
            note=note,
        )
    )
    s.execute(_NOTIFY_DONE, {"channel": TURN_DONE_CHANNEL, "turn": turn_id})
    timed_out = [a for a in expected if a in missing or results[a].status is AgentStatus.timed_out]
    latency = max(0.0, now - claimed.created_at.timestamp())
    line = turn_line(
        turn_id=turn_id,
        conversation_id=conversation.id,
        source=conversation.source,
        customer_id=conversation.customer_id,
        seq=claimed.seq,
        trigger=trigger,
        outcome=decision.outcome,
        reason=decision.reason,
        results=results,
        expected=expected,
        duration_s=latency,
        shadow=claimed.shadow,
    )

    def observe_merge() -> None:
        _observe_merge(turn_id, trigger, decision, timed_out, latency)
        observe_turn(line, first_reply_s)

    after_commit(s, observe_merge)
    return Merged(turn_id=turn_id, decision=decision, delivery_id=delivery_id)


def _reported(action: Action, result: AgentResult | None) -> bool:
    """The agent's own result carries this action as done: its answer can speak of it."""
    if action.state != ACTION_DONE or result is None:
        return False
    if result.status not in (AgentStatus.answered, AgentStatus.escalate, AgentStatus.needs_info):
        return False
    return any(c.tool == action.tool and c.error is None for c in result.tool_calls)


def _action_line(action: Action, results: dict[str, AgentResult]) -> str:
    what = f"{action.tool} {action.object_id or ''}".strip()
    if action.amount is not None:
        what += f" {action.amount:.2f} {action.currency or ''}".rstrip()
    state = {
        ACTION_DONE: "done",
        ACTION_PENDING: f"sent to {action.backend}, which never answered: check it before doing it again",
        ACTION_REFUSED: "refused by the service (nothing was done)",
    }.get(action.state, action.state)
    note = (
        ""
        if _reported(action, results.get(action.agent)) or action.state != ACTION_DONE
        else ("; the agent's result does not report it")
    )
    return f"{what} by {action.agent}: {state}{note}"


def _observe_merge(
    turn_id: str, trigger: MergeTrigger, decision: MergeDecision, timed_out: list[str], latency_s: float
) -> None:
    MERGES.labels(trigger).inc()
    TURNS.labels(decision.outcome).inc()
    TURN_LATENCY.labels(decision.outcome).observe(latency_s)
    for agent in timed_out:
        AGENT_TIMEOUTS.labels(agent).inc()
    if decision.reason:
        ESCALATIONS.labels(decision.reason).inc()
    log.info("turn %s merged by %s: %s %s", turn_id, trigger, decision.outcome, decision.reason or "")
