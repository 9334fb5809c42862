"""Recovery of work a crashed process left behind. Safe to run anywhere, any number of times.

``sweep`` runs in the caller's transaction (which holds the sweepers' advisory lock until
it commits); what it found is enqueued or merged after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from shared.contracts import DeliveryState, TurnState
from shared.db import after_commit
from shared.metrics import SWEEPS
from shared.models import Delivery, Event, Turn
from shared.settings import Settings

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x5B0A2D  # any constant shared by every sweeper
BATCH = 200


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    skipped: bool = False  # another sweeper held the lock: this one did nothing


def sweep(
    s: Session,
    settings: Settings,
    *,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
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
    report.merged = list(
        s.execute(
            select(Turn.id)
            .where(
                Turn.state == TurnState.running, Turn.deadline_at < now - timedelta(seconds=settings.deadline_grace_s)
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
    after_commit(s, lambda: _follow_up(report, enqueue_turn, merge, enqueue_delivery))
    return report


def _follow_up(
    report: SweepReport,
    enqueue_turn: Callable[[str], None],
    merge: Callable[[str], object],
    enqueue_delivery: Callable[[str], None],
) -> None:
    for turn_id in report.requeued:
        enqueue_turn(turn_id)
        SWEEPS.labels("requeue_turn").inc()
    for turn_id in report.merged:
        if merge(turn_id) is not None:
            SWEEPS.labels("merge_turn").inc()
    for delivery_id in report.redelivered:
        enqueue_delivery(delivery_id)
        SWEEPS.labels("redeliver").inc()
    if report.requeued or report.merged or report.redelivered:
        log.warning(
            "sweeper recovered work: requeued=%d merged=%d redelivered=%d",
            len(report.requeued),
            len(report.merged),
            len(report.redelivered),
        )
