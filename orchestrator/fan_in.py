"""The turn API: what an agent calls when its run is done, and what the clock, the sweeper
and the guardrails call to merge a turn.

Each call is one unit of work (one transaction): the record and merge functions of
``orchestrator.turns`` take its session (the last result and the merge share one); the reply
is handed to the delivery queue only after the merge committed.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum

from sqlalchemy.orm import Session

from orchestrator.turns import Merged, Start, claim_start, merge_due, merge_turn, record_result, turn_running
from shared.celery_app import DELIVERY_QUEUE, app
from shared.contracts import AgentResult, AgentTask, Customer, MergeTrigger
from shared.db import after_commit, retrying, session_scope, unavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)

DELIVER = "switchboard.deliver"


def enqueue_delivery(delivery_id: str, countdown: float | None = None) -> None:
    app.send_task(DELIVER, args=[delivery_id], queue=DELIVERY_QUEUE, countdown=countdown)


HELPDESK_EVENT = "switchboard.helpdesk_event"


def enqueue_helpdesk_event(event_id: str, countdown: float | None = None) -> None:
    app.send_task(HELPDESK_EVENT, args=[event_id], queue=DELIVERY_QUEUE, countdown=countdown)


def enqueue_helpdesk_event_soon(event_id: str) -> None:
    """Enqueue a stored webhook; if the broker does not answer, the sweeper enqueues it later."""
    try:
        enqueue_helpdesk_event(event_id)
    except Exception as exc:
        log.warning("could not enqueue helpdesk event %s (%s); the sweeper will retry", event_id, exc)


def enqueue_delivery_soon(delivery_id: str) -> None:
    """Enqueue a committed delivery; if the broker does not answer, the sweeper sends it later."""
    try:
        enqueue_delivery(delivery_id)
    except Exception as exc:
        log.warning("could not enqueue delivery %s (%s); the sweeper will retry", delivery_id, exc)


def merge_and_deliver(turn_id: str, trigger: MergeTrigger, *, guardrail: str | None = None) -> Merged | None:
    """Merge the turn once (None when another caller merged it first) and send its reply."""
    with session_scope() as s:
        merged = merge_turn(s, turn_id, trigger, get_settings(), guardrail=guardrail)
        _deliver_after_commit(s, merged)
    return merged


def merge_when_due(turn_id: str, trigger: MergeTrigger) -> Merged | float | None:
    """Merge a turn without its missing results if that is due now (the clock, the sweeper).

    The merge when due; the time it will be due when it is not yet (an agent started late,
    or one has not started and the turn has budget left); None when it was merged already.
    """
    with session_scope() as s:
        # At a deadline the turn is nearly always merged already, by its last agent: one
        # read says so (profiled under load, the clock's statements on merged turns were an
        # eighth of the orchestrator's time). Otherwise the merge is due nearly always: try
        # it (one statement), and only when it did not happen ask why (merged meanwhile, or
        # due later).
        if not turn_running(s, turn_id):
            return None
        settings = get_settings()
        merged = merge_turn(s, turn_id, trigger, settings, only_if_due=True)
        if merged is None:
            now = time.time()
            due = merge_due(s, turn_id, now)  # locks the row: what it says holds for the merge
            if due is None:
                return None
            if due > now:
                return due
            merged = merge_turn(s, turn_id, trigger, settings)  # due since the first look
        _deliver_after_commit(s, merged)
    return merged


def finish_agent_run(result: AgentResult, started: float) -> Merged | None:
    """Record an agent's result; the one that completes the set merges the turn at once, in
    the same transaction.

    The merge sees every other result: the count that says this one completes the set is an
    UPDATE of the turn's row, which waits for the row lock of every other agent's record
    transaction, so they have all committed, and under READ COMMITTED each statement of the
    merge reads what was committed before it began. If the merge fails for any other reason
    than the database, nothing of that transaction is kept: the result is recorded again on
    its own and the merge tried again after it (the clock and the sweeper are behind it too).
    """

    def record_and_merge() -> Merged | None:
        with session_scope() as s:
            if not record_result(s, result, started):
                return None
            merged = merge_turn(s, result.turn_id, MergeTrigger.all_in, get_settings())
            _deliver_after_commit(s, merged)
            return merged

    def record() -> bool:
        with session_scope() as s:
            return record_result(s, result, started)

    # A result holds what the agent did (a refund among it): a database that blinks while
    # it is stored must not lose it. The record is once-only, so a try again is safe.
    try:
        return retrying(record_and_merge)
    except Exception as exc:
        if unavailable(exc):
            raise
        log.exception("merging turn %s with its last result failed; recording it alone", result.turn_id)
    if not retrying(record):
        return None
    return merge_and_deliver(result.turn_id, MergeTrigger.all_in)


class Admission(StrEnum):
    running = "running"  # run it, with the customer of the turn's own conversation
    ended = "ended"  # merged, or past the turn's budget: record that it came too late, run no tool
    duplicate = "duplicate"  # another copy of the task started this agent: do nothing
    forged = "forged"  # no such turn, not this agent's, or another conversation: refuse


def admit_agent_task(task: AgentTask) -> tuple[Admission, AgentTask]:
    """Check an agent task against its turn's row (the broker is not a way in) and, when it
    may run, start the agent's clock: its deadline is its own deadline from now.

    The customer a tool acts for, and the source and tenant that scope it, are those of
    the turn's conversation, never the ones the message carries.
    """
    settings = get_settings()
    with session_scope() as s:
        claim = claim_start(s, task.turn_id, task.agent, settings.deadline_for(task.agent), task.conversation_id)
    if claim.start is Start.forged:
        return Admission.forged, task
    source = claim.source
    admitted = task.model_copy(
        update={
            "customer": Customer.model_validate(claim.customer),
            "source": source,
            "tenant": settings.tenant_of(source),
            "deadline_at": claim.deadline_at,
            "shadow": claim.shadow,
        }
    )
    admission = {
        Start.running: Admission.running,
        Start.duplicate: Admission.duplicate,
        Start.too_late: Admission.ended,
    }[claim.start]
    return admission, admitted


def _deliver_after_commit(s: Session, merged: Merged | None) -> None:
    if merged is not None and merged.delivery_id is not None:
        delivery_id = merged.delivery_id
        after_commit(s, lambda: enqueue_delivery(delivery_id))
