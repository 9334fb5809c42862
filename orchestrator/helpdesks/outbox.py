"""What a delivery to a connected helpdesk does, step by step, and one attempt at it.

A delivery row (the outbox of orchestrator/delivery.py) for a helpdesk source carries its
``steps``: ``reply`` (public, as the configured author), ``note`` (private, the handoff and
the suggested reply) and ``route`` (the escalation group or team, the tag, the priority).
``done`` lists the steps finished by earlier attempts, so a retry after a 429 on ``route``
does not post the reply again. Every attempt after the first reads the ticket before it
writes a reply or a note: an earlier attempt may have been written and its answer lost (a
timeout after sending, or a worker that died mid-attempt).

A bot's reply to a customer message older than a human's answer in the helpdesk is not sent
(the human took over): the delivery ends ``cancelled``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.helpdesks.clients import Attempt, Connector, connector
from shared.contracts import DeliveryState
from shared.metrics import HELPDESK_CALLS
from shared.settings import HelpdeskConfig

URGENT = frozenset({"policy", "injection"})
# At most this many calls a step (a look, then up to three writes: Intercom's route), and an
# attempt starts no step after STEP_BUDGET timeouts: the lease covers the longest attempt.
CALLS_PER_STEP = 4
STEP_BUDGET = 5


def lease_s(config: HelpdeskConfig) -> float:
    return config.timeout_s * (STEP_BUDGET + CALLS_PER_STEP) + 5


def turn_steps(outcome: str, reply: str | None, reason: str | None, note: str | None) -> list[dict[str, Any]]:
    """A bot turn's delivery: its reply; for an escalation, also the note and the routing."""
    steps: list[dict[str, Any]] = []
    if reply:
        steps.append({"do": "reply", "body": reply})
    if outcome == "escalated":
        steps.append({"do": "note", "body": note or f"Switchboard escalated this ticket ({reason})."})
        steps.append({"do": "route", "urgent": reason in URGENT})
    return steps


def handoff_note(reason: str, summary: str, suggested: str | None) -> str:
    lines = [f"Switchboard handed this ticket to a human ({reason}).", "", summary.strip()]
    if suggested:
        lines += ["", "Suggested reply (not sent):", suggested.strip()]
    if reason in URGENT:
        lines += ["", "Urgent: a policy or injection escalation."]
    return "\n".join(lines)


@dataclass(frozen=True)
class Sent:
    state: DeliveryState
    error: str | None
    retry_in: float | None
    done: list[int]


def send(
    name: str,
    config: HelpdeskConfig,
    ticket_id: str,
    payload: dict[str, Any],
    attempts: int,
    backoff_s: float,
    *,
    cancelled: bool = False,
) -> Sent:
    """One attempt at the steps not done yet."""
    done = sorted(set(payload.get("done") or []))
    if cancelled:
        return Sent(DeliveryState.cancelled, "a human answered in the helpdesk first", None, done)
    started = time.monotonic()
    with httpx.Client() as http:
        desk = connector(name, config, http)
        for index, step in enumerate(payload.get("steps") or []):
            if index in done:
                continue
            if time.monotonic() - started > config.timeout_s * STEP_BUDGET:
                return Sent(DeliveryState.pending, "attempt budget spent; the rest next attempt", 0.0, done)
            result = _run(desk, ticket_id, step, look_first=attempts > 1)
            HELPDESK_CALLS.labels(name, step["do"], result.result).inc()
            if result.result == "done":
                done.append(index)
                continue
            error = f"{step['do']}: {result.detail or result.result}"
            if result.result == "failed" or attempts >= config.max_attempts:
                return Sent(DeliveryState.failed, error, None, done)
            wait = result.retry_in if result.retry_in is not None else backoff_s
            return Sent(DeliveryState.pending, error, wait, done)
    return Sent(DeliveryState.delivered, None, None, done)


def _run(desk: Connector, ticket_id: str, step: dict[str, Any], *, look_first: bool) -> Attempt:
    if step["do"] == "reply":
        return desk.reply(ticket_id, step["body"], after_ambiguous=look_first)
    if step["do"] == "note":
        return desk.note(ticket_id, step["body"], after_ambiguous=look_first)
    if step["do"] == "route":
        return desk.route(ticket_id, urgent=bool(step.get("urgent")))
    return Attempt("failed", None, f"unknown step {step['do']!r}")
