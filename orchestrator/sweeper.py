"""Recovery of work a crashed process left behind. Safe to run anywhere, any number of times.

``sweep`` runs in the caller's transaction (which holds the sweepers' advisory lock until
it commits); what it found is enqueued or merged after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update
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


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    skipped: bool = False  # another sweeper held the lock: this one did nothing


def sweep(
    s: Session,
    settings: Settings,
    *,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object] = lambda _: None,
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
    report.merged = list(
        s.execute(
            select(Turn.id)
            .where(
                Turn.state == TurnState.running,
                Turn.deadline_at < now - timedelta(seconds=settings.deadline_grace_s),
                # published, or one that needs no agent (a guardrail's, a turn given up)
                (Turn.published_at.isnot(None)) | (func.jsonb_array_length(Turn.agents) == 0),
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
    after_commit(s, lambda: _follow_up(report, enqueue_turn, merge, enqueue_delivery, republish))
    return report


def _each(what: str, item: str, action: Callable[[str], object]) -> bool:
    """Run one follow-up; True when it did something (a merge or a republish can find that
    another process did it first)."""
    try:
        result = action(item)
        return bool(result) if what in ("merge", "republish") else True
    except Exception:
        log.exception("sweeper could not %s %s; the next sweep tries again", what, item)
        return False


def _follow_up(
    report: SweepReport,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
    republish: Callable[[str], object],
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
    if report.requeued or report.merged or report.redelivered or report.republished:
        log.warning(
            "sweeper recovered work: requeued=%d merged=%d redelivered=%d republished=%d",
            len(report.requeued),
            len(report.merged),
            len(report.redelivered),
            len(report.republished),
        )
