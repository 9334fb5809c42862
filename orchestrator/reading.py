"""The turn's message read once, in the orchestrator, for every agent.

With the local brain each agent process would otherwise embed and classify the same message
(and each of its parts) itself: three times per turn. The composition root
(``switchboard.worker``) gives the orchestrator process a reader, the local brain's
``read``; the orchestrator calls it once per turn, after the turn's transaction (no row lock
is held while it computes), and sends the reading in every agent's task. An agent whose intent
engine differs (another version in a rolling deploy) ignores it and reads the message itself,
and so does every agent when there is no reader or it fails: a reading saves CPU, it is never
needed for an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.contracts import AgentTask, MessageReading

log = logging.getLogger(__name__)

Reader = Callable[[AgentTask], MessageReading]

_reader: Reader | None = None


def use_reader(reader: Reader | None) -> None:
    """Read every turn's message with this (None: the agents read it themselves)."""
    global _reader
    _reader = reader


def with_reading(tasks: list[AgentTask]) -> list[AgentTask]:
    """The turn's agent tasks, each carrying the one reading of the message."""
    reader = _reader
    if reader is None or not tasks:
        return tasks
    try:
        reading = reader(tasks[0])
    except Exception as exc:  # the agents read it themselves; the turn goes on
        log.warning(
            "reading turn %s for the agents failed (%s); each agent reads it", tasks[0].turn_id, type(exc).__name__
        )
        return tasks
    return [task.model_copy(update={"reading": reading}) for task in tasks]
