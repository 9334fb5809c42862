"""Celery tasks of the orchestrator: thin adapters around plain functions.

Task names are explicit so renaming a module never orphans queued messages.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from pydantic import ValidationError

from orchestrator.clock import TurnClock, process_clock
from orchestrator.delivery import deliver
from orchestrator.ingest import accept_ticket
from orchestrator.sweeper import sweep
from orchestrator.turns import ConversationBusy, Merged, merge_turn, start_turn
from shared.celery_app import DELIVERY_QUEUE, ORCHESTRATOR_QUEUE, agent_queue, agent_task_name, app
from shared.contracts import TicketIn
from shared.metrics import QUEUE_WAIT
from shared.settings import get_settings

log = logging.getLogger(__name__)

HANDLE_TURN = "switchboard.orchestrator.handle_turn"
DELIVER = "switchboard.deliver"
BUSY_RETRY_S = 0.25


def enqueue_turn(turn_id: str) -> None:
    app.send_task(HANDLE_TURN, args=[turn_id], queue=ORCHESTRATOR_QUEUE, headers={"published_at": time.time()})


def enqueue_delivery(delivery_id: str, countdown: float | None = None) -> None:
    app.send_task(DELIVER, args=[delivery_id], queue=DELIVERY_QUEUE, countdown=countdown)


def after_merge(merged: Merged | None) -> None:
    """What follows a merge wherever it ran: hand the reply to the delivery queue."""
    if merged is not None and merged.delivery_id is not None:
        enqueue_delivery(merged.delivery_id)


def merge_at_deadline(turn_id: str) -> None:
    after_merge(merge_turn(turn_id, "deadline", get_settings()))


def merge_by_sweeper(turn_id: str) -> Merged | None:
    merged = merge_turn(turn_id, "sweeper", get_settings())
    after_merge(merged)
    return merged


def run_sweep() -> None:
    sweep(get_settings(), enqueue_turn=enqueue_turn, merge=merge_by_sweeper, enqueue_delivery=enqueue_delivery)


def clock() -> TurnClock:
    return process_clock(lambda: TurnClock(get_settings(), merge_at_deadline, run_sweep))


def _observe_wait(task: Task, queue: str) -> None:
    published = (task.request.headers or {}).get("published_at") if task.request else None
    if isinstance(published, (int, float)):
        QUEUE_WAIT.labels(queue).observe(max(0.0, time.time() - published))


def fan_out(turn_id: str) -> bool:
    """Start a turn and publish one task per agent. False when there was nothing to start."""
    started = start_turn(turn_id, get_settings())
    if started is None:
        return False
    if started.guardrail is not None:
        after_merge(merge_turn(turn_id, "guardrail", get_settings(), guardrail=started.guardrail))
        return True
    # The clock is armed before publishing so even instant agents race a live timer.
    clock().schedule(started.turn_id, started.deadline_at)
    for task in started.tasks:
        remaining = max(0.05, task.deadline_at - time.time())
        app.send_task(
            agent_task_name(task.agent),
            args=[task.model_dump(mode="json")],
            queue=agent_queue(task.agent),
            # The soft limit frees the worker slot of an agent that hangs; the hard one
            # is the backstop for code that swallows the soft one.
            soft_time_limit=remaining + 0.25,
            time_limit=remaining + 5,
            headers={"published_at": task.published_at},
        )
    return True


@app.task(name=HANDLE_TURN, bind=True, max_retries=None)
def handle_turn(self: Task, turn_id: str) -> bool:
    _observe_wait(self, ORCHESTRATOR_QUEUE)
    try:
        return fan_out(turn_id)
    except ConversationBusy:
        # Turns of one conversation run in order: try again once the earlier one merged.
        raise self.retry(countdown=BUSY_RETRY_S) from None


@app.task(name="switchboard.ingest", bind=True)
def ingest(self: Task, ticket: dict[str, Any]) -> dict[str, Any]:
    """A helpdesk that talks to the broker sends the same payload as POST /v1/tickets."""
    _observe_wait(self, ORCHESTRATOR_QUEUE)
    try:
        parsed = TicketIn.model_validate(ticket)
    except ValidationError as exc:
        # A malformed ticket can never succeed: record why, do not retry it forever.
        log.error("switchboard.ingest rejected a ticket: %s", exc.errors(include_url=False, include_input=False))
        return {"error": "invalid ticket", "problems": exc.errors(include_url=False, include_input=False)}
    accepted = accept_ticket(parsed, via="celery")
    if accepted.created:
        try:
            fan_out(accepted.turn_id)  # saves a queue hop; the sweeper covers a crash here
        except ConversationBusy:
            enqueue_turn(accepted.turn_id)
    return accepted.model_dump()


@app.task(name=DELIVER, bind=True, max_retries=None)
def deliver_reply(self: Task, delivery_id: str) -> str:
    attempt = deliver(delivery_id, get_settings())
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.state
