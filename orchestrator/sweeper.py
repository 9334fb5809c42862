"""Recovery of work a crashed process left behind. Safe to run anywhere, any number of times.

``sweep`` runs in the caller's transaction (which holds the sweepers' advisory lock until
it commits); what it found is enqueued or merged after that commit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from orchestrator.desk import expire_leases
from shared.contracts import DeliveryState, TurnState
from shared.db import after_commit
from shared.metrics import SWEEPS
from shared.models import Delivery, Event, HelpdeskEvent, Turn
from shared.settings import Settings

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x5B0A2D  # any constant shared by every sweeper
BATCH = 200
# An orchestrator publishes a turn's agent tasks milliseconds after it starts the turn.
REPUBLISH_AFTER_S = 1.0
# An agent task published this long ago that no agent took up may be lost: a broker that
# restarted without persistence lost it, or a killed worker held it unacknowledged (it
# comes back an hour later). A burst only delays tasks, so the broker is asked how many
# tasks wait on the agent's queue: of the turns waiting for that agent, only as many as
# the queue is short of are published again, the oldest first. A copy that was only slow
# is harmless: one copy starts the agent, the others find it started.
AGENT_TASK_LOST_AFTER_S = 5.0
# Some agent of the turn has neither started nor sent a result.
_UNSTARTED_SQL = """EXISTS (SELECT 1 FROM jsonb_array_elements_text(turns.agents) AS a(agent)
           WHERE a.agent NOT IN (SELECT agent FROM agent_starts WHERE turn_id = turns.id)
             AND a.agent NOT IN (SELECT agent FROM agent_runs WHERE turn_id = turns.id))"""
_ALL_STARTED = text(f"NOT {_UNSTARTED_SQL}")
# The running turns (with budget left) waiting for :agent to start, oldest publish first.
_WAITING_FOR = text(
    """SELECT t.id, t.published_at < :lost_before AS overdue FROM turns t
       WHERE t.state = 'running' AND t.published_at IS NOT NULL AND t.budget_at > :now
         AND t.agents ? :agent
         AND NOT EXISTS (SELECT 1 FROM agent_starts a WHERE a.turn_id = t.id AND a.agent = :agent)
         AND NOT EXISTS (SELECT 1 FROM agent_runs r WHERE r.turn_id = t.id AND r.agent = :agent)
       ORDER BY t.published_at"""
)


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    expired_claims: list[str] = field(default_factory=list)  # escalations whose lease lapsed, queued again
    lost: dict[str, list[str]] = field(default_factory=dict)  # turn -> agents whose tasks are published again
    helpdesk_events: list[str] = field(default_factory=list)  # webhooks of helpdesks enqueued again
    skipped: bool = False  # another sweeper held the lock: this one did nothing


def sweep(
    s: Session,
    settings: Settings,
    *,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object] = lambda _: None,
    republish_lost: Callable[[str, list[str]], object] = lambda _t, _a: None,
    queue_depth: Callable[[str], int | None] = lambda _: None,
    enqueue_helpdesk_event: Callable[[str], None] = lambda _: None,
) -> SweepReport:
    """``queue_depth(agent)``: how many tasks wait on the agent's queue, None when the
    broker cannot say (then every overdue task counts as lost)."""
    report = SweepReport()
    now = datetime.now(UTC)
    if not s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK_KEY}).scalar_one():
        report.skipped = True  # another sweeper is at it
        return report
    report.requeued = list(
        s.execute(
            update(Turn)
            .where(
                Turn.id.in_(
                    select(Turn.id)
                    .where(
                        Turn.state == TurnState.queued,
                        Turn.enqueued_at < now - timedelta(seconds=settings.requeue_after_s),
                    )
                    .limit(BATCH)
                    .scalar_subquery()
                )
            )
            .values(enqueued_at=now)
            .returning(Turn.id)
        ).scalars()
    )
    for turn_id in report.requeued:
        s.add(Event(turn_id=turn_id, kind="turn.requeued", data={"by": "sweeper"}))
    # A running turn whose agent tasks never reached the broker (its orchestrator died
    # between the start and the publish) gets its agents again, with their whole time.
    report.republished = list(
        s.execute(
            select(Turn.id)
            .where(
                Turn.state == TurnState.running,
                Turn.published_at.is_(None),
                func.jsonb_array_length(Turn.agents) > 0,
                Turn.started_at < now - timedelta(seconds=REPUBLISH_AFTER_S),
            )
            .limit(BATCH)
        ).scalars()
    )
    grace = timedelta(seconds=settings.deadline_grace_s)
    report.merged = list(
        s.execute(
            select(Turn.id)
            .where(
                Turn.state == TurnState.running,
                Turn.deadline_at < now - grace,
                # published, or one that needs no agent (a guardrail's, a turn given up)
                (Turn.published_at.isnot(None)) | (func.jsonb_array_length(Turn.agents) == 0),
                # and not waiting for an agent that may still start
                or_(Turn.budget_at.is_(None), Turn.budget_at < now - grace, _ALL_STARTED),
            )
            .limit(BATCH)
        ).scalars()
    )
    report.lost = _lost_agent_tasks(s, settings, now, queue_depth)
    report.redelivered = list(
        s.execute(
            select(Delivery.id)
            .where(
                Delivery.state.in_((DeliveryState.pending, DeliveryState.sending)),
                Delivery.next_attempt_at < now - timedelta(seconds=settings.requeue_after_s),
            )
            .limit(BATCH)
        ).scalars()
    )
    # The desk: a human's claim whose lease lapsed goes back to the queue.
    report.expired_claims = expire_leases(s)
    # A helpdesk's webhook stored but never worked (its task lost, its worker gone mid-way).
    report.helpdesk_events = list(
        s.execute(
            select(HelpdeskEvent.id)
            .where(
                HelpdeskEvent.state == "pending",
                HelpdeskEvent.next_attempt_at < now - timedelta(seconds=settings.requeue_after_s),
            )
            .limit(BATCH)
        ).scalars()
    )

    def follow_up() -> None:
        _follow_up(report, enqueue_turn, merge, enqueue_delivery, republish, republish_lost)
        for event_id in report.helpdesk_events:
            if _each("re-enqueue helpdesk event", event_id, enqueue_helpdesk_event):
                SWEEPS.labels("requeue_helpdesk_event").inc()

    # Enqueue after the commit: a crash in between only means the next sweep does it.
    after_commit(s, follow_up)
    return report


def _lost_agent_tasks(
    s: Session, settings: Settings, now: datetime, queue_depth: Callable[[str], int | None]
) -> dict[str, list[str]]:
    lost: dict[str, list[str]] = {}
    lost_before = now - timedelta(seconds=AGENT_TASK_LOST_AFTER_S)
    for agent in settings.agents:
        waiting = s.execute(_WAITING_FOR, {"agent": agent, "now": now, "lost_before": lost_before}).all()
        overdue = [row.id for row in waiting if row.overdue]
        if not overdue:
            continue
        depth = queue_depth(agent)
        short = len(overdue) if depth is None else max(0, len(waiting) - depth)
        for turn_id in overdue[: min(short, BATCH)]:
            lost.setdefault(turn_id, []).append(agent)
    return lost


def _each(what: str, item: str, action: Callable[[str], object]) -> bool:
    """Run one follow-up; True when it did something (a merge or a republish can find that
    another process did it first)."""
    try:
        result = action(item)
        return bool(result) if what in ("merge", "republish", "republish lost tasks of") else True
    except Exception:
        log.exception("sweeper could not %s %s; the next sweep tries again", what, item)
        return False


def _republish_agents(republish_lost: Callable[[str, list[str]], object], agents: list[str], turn_id: str) -> object:
    return republish_lost(turn_id, agents)


def _follow_up(
    report: SweepReport,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object],
    republish_lost: Callable[[str, list[str]], object],
) -> None:
    # One item that fails (a broker hiccup, a turn whose merge raises) is logged and left for
    # the next sweep; it never keeps the sweeper from the others.
    for turn_id in report.requeued:
        if _each("requeue", turn_id, enqueue_turn):
            SWEEPS.labels("requeue_turn").inc()
    for turn_id in report.merged:
        if _each("merge", turn_id, merge):
            SWEEPS.labels("merge_turn").inc()
    for delivery_id in report.redelivered:
        if _each("redeliver", delivery_id, enqueue_delivery):
            SWEEPS.labels("redeliver").inc()
    for turn_id in report.republished:
        if _each("republish", turn_id, republish):
            SWEEPS.labels("republish").inc()
    for turn_id, agents in report.lost.items():
        if _each("republish lost tasks of", turn_id, functools.partial(_republish_agents, republish_lost, agents)):
            SWEEPS.labels("republish_lost").inc()
    if report.requeued or report.merged or report.redelivered or report.republished or report.lost:
        log.warning(
            "sweeper recovered work: requeued=%d merged=%d redelivered=%d republished=%d lost=%d",
            len(report.requeued),
            len(report.merged),
            len(report.redelivered),
            len(report.republished),
            len(report.lost),
        )
