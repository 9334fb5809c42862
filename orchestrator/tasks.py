"""Celery tasks of the orchestrator: thin adapters around plain functions.

Each task is an edge: it opens the unit of work (``session_scope``) and passes the
session to the logic in ingest, turns, sweeper and delivery. Task names are explicit so
renaming a module never orphans queued messages.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from celery import Task
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from orchestrator.clock import TurnClock, process_clock
from orchestrator.delivery import deliver
from orchestrator.fan_in import (
    DELIVER,
    HELPDESK_EVENT,
    enqueue_delivery,
    enqueue_helpdesk_event,
    merge_and_deliver,
    merge_when_due,
)
from orchestrator.helpdesks import webhook
from orchestrator.ingest import accept_ticket
from orchestrator.keys import principal_for, refusal_to_post
from orchestrator.reading import with_reading
from orchestrator.retention import purge_expired
from orchestrator.sweeper import AGENT_TASK_LOST_AFTER_S, sweep
from orchestrator.turns import (
    ConversationBusy,
    Merged,
    StartedTurn,
    begin_attempt,
    give_up,
    mark_published,
    republish_lost,
    restart_unpublished,
    start_turn,
)
from shared.celery_app import DEAD_LETTER_QUEUE, ORCHESTRATOR_QUEUE, agent_queue, agent_task_name, app
from shared.contracts import MergeTrigger, TicketIn
from shared.db import session_scope, unavailable
from shared.metrics import INGEST_RETRIES, QUEUE_WAIT, REFUSED_TASKS
from shared.settings import get_settings

log = logging.getLogger(__name__)

HANDLE_TURN = "switchboard.orchestrator.handle_turn"
INGEST = "switchboard.ingest"
BUSY_RETRY_S = 0.25


def enqueue_turn(turn_id: str) -> None:
    app.send_task(HANDLE_TURN, args=[turn_id], queue=ORCHESTRATOR_QUEUE, headers={"published_at": time.time()})


def merge_at_deadline(turn_id: str) -> float | None:
    """The clock's action: merge the turn if it is due, else say when to look again: at the
    latest within the shortest agent deadline, so an agent that starts late and is then
    killed is waited for to its own deadline, not to the end of the budget."""
    outcome = merge_when_due(turn_id, MergeTrigger.deadline)
    if isinstance(outcome, float):
        # Looking again within the shortest deadline means an agent that starts after this
        # look has its deadline after the next one: the merge is on time for it too.
        settings = get_settings()
        return min(outcome, time.time() + min(settings.deadline_for(a) for a in settings.agents))
    return None


def merge_by_sweeper(turn_id: str) -> Merged | None:
    outcome = merge_when_due(turn_id, MergeTrigger.sweeper)
    return outcome if isinstance(outcome, Merged) else None


RETENTION_LOCK_KEY = 0x5B0A2E
_next_purge = 0.0


def run_sweep() -> None:
    with session_scope() as s:
        sweep(
            s,
            get_settings(),
            enqueue_turn=enqueue_turn,
            merge=merge_by_sweeper,
            enqueue_delivery=enqueue_delivery,
            enqueue_helpdesk_event=enqueue_helpdesk_event,
            republish=republish,
            republish_lost=republish_lost_tasks,
            queue_depth=agent_queue_depth,
        )
    _purge_when_due()


def agent_queue_depth(agent: str) -> int | None:
    """How many tasks wait on an agent's queue (Redis and RabbitMQ both say); None if unknown."""
    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=agent_queue(agent), passive=True).message_count)
    except Exception as exc:  # the broker is down or will not say: the sweeper assumes the worst
        log.warning("could not read the depth of %s (%s)", agent_queue(agent), type(exc).__name__)
        return None


def _purge_when_due() -> None:
    """Retention, from the sweeper's timer: once per interval in each process, one at a time."""
    global _next_purge
    settings = get_settings()
    if time.monotonic() < _next_purge:
        return
    _next_purge = time.monotonic() + settings.retention_interval_s
    with session_scope() as s:
        if not s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RETENTION_LOCK_KEY}).scalar_one():
            return
        counts = purge_expired(s, settings.retention_days, by="retention job")
    if counts["conversations"]:
        log.info(
            "retention deleted %d conversations older than %d days", counts["conversations"], settings.retention_days
        )


def clock() -> TurnClock:
    return process_clock(lambda: TurnClock(get_settings(), merge_at_deadline, run_sweep))


def _observe_wait(task: Task, queue: str) -> None:
    published = (task.request.headers or {}).get("published_at") if task.request else None
    if isinstance(published, (int, float)):
        QUEUE_WAIT.labels(queue).observe(max(0.0, time.time() - published))


def fan_out(turn_id: str, attempt: int | None = None) -> bool:
    """Start a turn and publish one task per agent. False when there was nothing to start.
    ``attempt``: the attempt already counted (and committed) by the caller."""
    settings = get_settings()
    if attempt is None:
        with session_scope() as s:
            attempt = begin_attempt(s, turn_id)
    if attempt is None:
        return False
    if attempt > settings.max_turn_attempts:
        with session_scope() as s:
            gave_up = give_up(s, turn_id, attempt - 1)
        if gave_up:
            merge_and_deliver(turn_id, MergeTrigger.gave_up)
        return gave_up
    with session_scope() as s:
        started = start_turn(s, turn_id, settings)
    if started is None:
        return False
    if started.held:
        return True
    if started.guardrail is not None:
        merge_and_deliver(turn_id, MergeTrigger.guardrail, guardrail=started.guardrail)
        return True
    _publish(started)
    return True


def republish(turn_id: str) -> bool:
    """Start again the agents of a turn whose orchestrator died before publishing them."""
    with session_scope() as s:
        started = restart_unpublished(s, turn_id, get_settings())
    if started is None:
        return False
    _publish(started)
    return True


def republish_lost_tasks(turn_id: str, agents: list[str]) -> bool:
    """Publish again the agent tasks of a turn that no agent took up: lost with the broker."""
    with session_scope() as s:
        started = republish_lost(s, turn_id, agents, get_settings(), AGENT_TASK_LOST_AFTER_S)
    if started is None:
        return False
    _publish(started)
    return True


def _named_only(what: str) -> dict[str, str]:
    """Celery's ``argsrepr``/``kwargsrepr`` for a task whose arguments carry a customer's
    words or a key. Celery otherwise writes the first kilobyte of the arguments' repr into
    the message headers, and so into task events and Flower (the message, the customer's
    name and email, an API key); and computing it was 7 % of publishing an agent task."""
    return {"argsrepr": f"[{what}]", "kwargsrepr": "{}"}


def _publish(started: StartedTurn) -> None:
    """Arm the clock, put every agent task on the broker, then say so on the turn's row (a
    crash before that last step leaves it for the sweeper to publish again)."""
    # The clock is armed before publishing so even instant agents race a live timer.
    settings = get_settings()
    clock().schedule(started.turn_id, started.deadline_at)
    for task in with_reading(started.tasks):
        task = task.model_copy(update={"published_at": time.time()})
        deadline_s = settings.deadline_for(task.agent)
        app.send_task(
            agent_task_name(task.agent),
            args=[task.model_dump(mode="json")],
            queue=agent_queue(task.agent),
            # Celery counts both limits from the task's start in the worker, as the agent's
            # deadline runs from its start. The soft limit frees the worker slot of an agent
            # that hangs; the hard one is the backstop for code that swallows the soft one.
            soft_time_limit=deadline_s + 0.25,
            time_limit=deadline_s + 5,
            headers={"published_at": task.published_at},
            **_named_only(f"agent task {task.turn_id} {task.agent}"),
        )
    with session_scope() as s:
        mark_published(s, started.turn_id)


@app.task(name=HANDLE_TURN, bind=True, max_retries=None)
def handle_turn(self: Task, turn_id: str) -> bool:
    _observe_wait(self, ORCHESTRATOR_QUEUE)
    try:
        return fan_out(turn_id)
    except ConversationBusy:
        # Turns of one conversation run in order: try again once the earlier one merged.
        raise self.retry(countdown=BUSY_RETRY_S) from None


# Backoff of a broker ticket the database could not take: 1, 2, 4 … 60 s, about 15 minutes
# in all, then the dead-letter queue. Nothing is acknowledged before it is stored or parked.
INGEST_MAX_RETRIES = 20
INGEST_BACKOFF_MAX_S = 60.0


@app.task(name=INGEST, bind=True, max_retries=INGEST_MAX_RETRIES)
def ingest(self: Task, ticket: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
    """A helpdesk that talks to the broker sends the same payload as POST /v1/tickets, and
    its key as ``api_key``: checked as the API checks it (a helpdesk key of that source, or
    an admin key; a configured source)."""
    _observe_wait(self, ORCHESTRATOR_QUEUE)
    try:
        parsed = TicketIn.model_validate(ticket)
    except ValidationError as exc:
        # A malformed ticket can never succeed: record why, do not retry it forever.
        log.error("switchboard.ingest rejected a ticket: %s", exc.errors(include_url=False, include_input=False))
        return {"error": "invalid ticket", "problems": exc.errors(include_url=False, include_input=False)}
    try:
        busy = False
        attempt: int | None = None
        with session_scope() as s:
            # The key is checked in the ticket's own transaction (one commit fewer a ticket),
            # before anything is written: a refused ticket stores nothing.
            refusal = _refusal(s, parsed.source, api_key)
            if refusal is not None:
                REFUSED_TASKS.labels(INGEST, refusal).inc()
                log.error("switchboard.ingest refused a ticket of source %r: %s", parsed.source, refusal)
                return {"error": "refused", "reason": refusal}
            accepted = accept_ticket(s, parsed, via="celery")
            if accepted.created:
                # The first attempt is counted with the ticket, in its transaction: one
                # commit fewer, and a start that crashes still counts, as before.
                try:
                    attempt = begin_attempt(s, accepted.turn_id)
                except ConversationBusy:  # a new conversation has no earlier turn; raised before any write
                    busy = True
    except Exception as exc:
        if not unavailable(exc):
            raise
        return _retry_later(self, ticket, api_key, exc)
    if busy:
        enqueue_turn(accepted.turn_id)
    elif attempt is not None:
        try:
            fan_out(accepted.turn_id, attempt)  # saves a queue hop; the sweeper covers a crash here
        except ConversationBusy:
            enqueue_turn(accepted.turn_id)
        except Exception:  # stored and committed: the sweeper starts it later
            log.exception("ticket stored as turn %s; its start failed and is left to the sweeper", accepted.turn_id)
    return accepted.model_dump()


def _retry_later(self: Task, ticket: dict[str, Any], api_key: str | None, exc: BaseException) -> dict[str, Any]:
    retries = self.request.retries
    if retries >= INGEST_MAX_RETRIES:
        # Parked, not dropped: the same task on a queue no worker takes until an operator says so.
        app.send_task(
            INGEST, args=[ticket], kwargs={"api_key": api_key}, queue=DEAD_LETTER_QUEUE, **_named_only("ticket")
        )
        INGEST_RETRIES.labels("dead_letter").inc()
        log.error(
            "switchboard.ingest could not store a ticket after %d retries (%s): parked in %s",
            retries,
            type(exc).__name__,
            DEAD_LETTER_QUEUE,
        )
        return {"error": "dead_lettered", "queue": DEAD_LETTER_QUEUE}
    INGEST_RETRIES.labels("retry").inc()
    countdown = min(INGEST_BACKOFF_MAX_S, 2.0**retries)
    log.warning("switchboard.ingest: the database did not answer (%s); retry in %.0fs", type(exc).__name__, countdown)
    raise self.retry(countdown=countdown, **_named_only("ticket"))


def _refusal(s: Session, source: str, api_key: str | None) -> str | None:
    """Why a broker ticket may not be taken (a metric label), or None."""
    if not api_key:
        return "no_key"
    principal = principal_for(s, api_key)
    if principal is None:
        return "unknown_key"
    return refusal_to_post(principal, source, get_settings().sources)


@app.task(name=DELIVER, bind=True, max_retries=None)
def deliver_reply(self: Task, delivery_id: str) -> str:
    attempt = deliver(delivery_id, get_settings())
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.state


@app.task(name=HELPDESK_EVENT, bind=True, max_retries=None)
def helpdesk_event(self: Task, event_id: str) -> str:
    """A connected helpdesk's webhook, stored by the route: the customer looked up, the
    ticket or message taken (orchestrator/helpdesks/webhook.py)."""
    with httpx.Client() as http:
        worked = webhook.work(event_id, get_settings(), http)
    if worked.retry_in is not None:
        raise self.retry(countdown=worked.retry_in)
    return worked.state
