"""Recovery of work a crashed process left behind. Safe to run anywhere, any number of times.

``sweep`` runs in the caller's transaction (which holds the sweepers' advisory lock until
it commits); what it found is enqueued or merged after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from shared.contracts import DeliveryState, TurnState
from shared.db import after_commit
from shared.metrics import SWEEPS
from shared.models import Delivery, Event, Turn
from shared.settings import Settings

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x5B0A2D  # any constant shared by every sweeper
BATCH = 200
# An orchestrator publishes a turn's agent tasks milliseconds after it starts the turn.
REPUBLISH_AFTER_S = 1.0
# An agent task published this long ago that no agent took up is taken for lost (a broker
# restarted without persistence, a killed worker holding it unacknowledged): it is
# published again while its turn has budget left. A copy that was only slow is harmless:
# one copy starts the agent, the others find it started.
AGENT_TASK_LOST_AFTER_S = 5.0
# Some agent of the turn has neither started nor sent a result.
_UNSTARTED_SQL = """EXISTS (SELECT 1 FROM jsonb_array_elements_text(turns.agents) AS a(agent)
           WHERE a.agent NOT IN (SELECT agent FROM agent_starts WHERE turn_id = turns.id)
             AND a.agent NOT IN (SELECT agent FROM agent_runs WHERE turn_id = turns.id))"""
_UNSTARTED = text(_UNSTARTED_SQL)
_ALL_STARTED = text(f"NOT {_UNSTARTED_SQL}")


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # turns whose agent tasks were published again
    skipped: bool = False  # another sweeper held the lock: this one did nothing


def sweep(
    s: Session,
    settings: Settings,
    *,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object] = lambda _: None,
    republish_lost: Callable[[str], object] = lambda _: None,
) -> SweepReport:
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
    report.lost = list(
        s.execute(
            select(Turn.id)
            .where(
                Turn.state == TurnState.running,
                Turn.published_at < now - timedelta(seconds=AGENT_TASK_LOST_AFTER_S),
                Turn.budget_at > now,
                _UNSTARTED,
            )
            .limit(BATCH)
        ).scalars()
    )
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
    # Enqueue after the commit: a crash in between only means the next sweep does it.
    after_commit(s, lambda: _follow_up(report, enqueue_turn, merge, enqueue_delivery, republish, republish_lost))
    return report


def _each(what: str, item: str, action: Callable[[str], object]) -> bool:
    """Run one follow-up; True when it did something (a merge or a republish can find that
    another process did it first)."""
    try:
        result = action(item)
        return bool(result) if what in ("merge", "republish", "republish lost tasks of") else True
    except Exception:
        log.exception("sweeper could not %s %s; the next sweep tries again", what, item)
        return False


def _follow_up(
    report: SweepReport,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object],
    republish_lost: Callable[[str], object],
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
    for turn_id in report.lost:
        if _each("republish lost tasks of", turn_id, republish_lost):
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
