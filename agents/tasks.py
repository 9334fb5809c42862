"""Celery tasks of the agents: one task and one queue per agent.

An agent's deadline runs from the moment it starts its task (``admit_agent_task`` writes
the start). In a prefork worker one still running then is cut off by the soft time limit,
which Celery also counts from the task's start. A threads worker has no time limits (they
are signals, and only a process's main thread gets those): there the deadline is kept by
the run itself — every model call and tool backend call is given only the time left, and
the agent loop starts no step and no tool past it — while the orchestrator's clock merges
at the deadline without waiting. Either way a late result is recorded and ignored by the merge.
The agents and their tools are ``agents.registry.build_agents(settings)``; a finished run
goes to the orchestrator through its turn API (``finish_agent_run``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError

from agents.base import Agent
from agents.registry import AGENT_BY_NAME, agent_profiles, build_agents
from orchestrator.fan_in import Admission, admit_agent_task, finish_agent_run
from shared.brains import Brain, load_brain
from shared.celery_app import agent_queue, agent_task_name, app
from shared.contracts import AgentResult, AgentStatus, AgentTask, Timings
from shared.metrics import AGENT_LATENCY, QUEUE_WAIT, REFUSED_TASKS
from shared.settings import get_settings

log = logging.getLogger(__name__)

# The prefork soft limit is the deadline + 0.25 s: a run that ends later overran it.
OVERRUN_LOGGED_S = 0.25

_brain: Brain | None = None
_agents: dict[str, Agent] | None = None
# In a threads worker the first tasks may arrive together: one brain and one set of agents
# per process, built once.
_build_lock = threading.Lock()


def brain() -> Brain:
    global _brain
    if _brain is None:
        with _build_lock:
            if _brain is None:
                _brain = load_brain(get_settings(), agent_profiles())
    return _brain


def agents() -> dict[str, Agent]:
    global _agents
    if _agents is None:
        with _build_lock:
            if _agents is None:
                _agents = build_agents(get_settings())
    return _agents


def _unfinished(task: AgentTask, status: AgentStatus, detail: str, started: float) -> AgentResult:
    return AgentResult(
        turn_id=task.turn_id,
        agent=task.agent,
        status=status,
        detail=detail,
        brain=brain().name,
        timings=Timings(
            queue_wait_ms=max(0.0, (started - task.published_at) * 1000), run_ms=(time.time() - started) * 1000
        ),
    )


def run_agent(task: AgentTask) -> AgentResult | None:
    """Run one agent on its turn. None when the task names no turn of this agent (refused),
    or another copy of the task runs the agent."""
    started = time.time()
    QUEUE_WAIT.labels(agent_queue(task.agent)).observe(max(0.0, started - task.published_at))
    admission, task = admit_agent_task(task)
    if admission is Admission.forged:
        REFUSED_TASKS.labels(agent_task_name(task.agent), "no_such_turn").inc()
        log.warning("refused an agent task for %s naming turn %s: no such turn of this agent", task.agent, task.turn_id)
        return None
    if admission is Admission.duplicate:
        # Another copy of the task (one the sweeper published again) runs this agent.
        log.info("agent %s on turn %s started by another copy of its task; nothing to do", task.agent, task.turn_id)
        return None
    if admission is Admission.ended:
        result = _unfinished(task, AgentStatus.timed_out, "picked up after the turn was merged or its budget", started)
    else:
        try:
            result = agents()[task.agent].run(task, brain())
        except SoftTimeLimitExceeded:
            result = _unfinished(task, AgentStatus.timed_out, "cut off at the deadline", started)
        except Exception as exc:
            log.exception("agent %s failed on turn %s", task.agent, task.turn_id)
            result = _unfinished(task, AgentStatus.failed, f"{type(exc).__name__} in the agent", started)
    AGENT_LATENCY.labels(task.agent, result.status.value).observe(time.time() - started)
    overrun = time.time() - task.deadline_at
    if admission is Admission.running and overrun > OVERRUN_LOGGED_S:
        # Only a threads worker gets here (prefork's soft limit cuts the run off first): a
        # brain or tool that ignored the time it was given. The merge did not wait for it.
        log.warning(
            "agent %s on turn %s ran %.1fs past its deadline (%s); its result is recorded as it is",
            task.agent,
            task.turn_id,
            overrun,
            result.status.value,
        )
    try:
        finish_agent_run(result, started)
    except SoftTimeLimitExceeded:
        # The soft limit came while the result was being stored: the hard limit is seconds
        # away, and what the agent did must be on the record, so store it once more.
        log.warning("agent %s on turn %s cut off while recording; recording again", task.agent, task.turn_id)
        finish_agent_run(result, started)
    return result


def _make_task(agent: str) -> None:
    @app.task(name=agent_task_name(agent), bind=True)
    def agent_task(self: Task, payload: dict[str, Any]) -> str:
        try:
            task = AgentTask.model_validate(payload)
        except ValidationError as exc:
            # Not a task the orchestrator wrote: refuse it, count it, log where (not what).
            REFUSED_TASKS.labels(agent_task_name(agent), "invalid").inc()
            log.warning("refused an agent task for %s: %d invalid field(s)", agent, exc.error_count())
            return "refused"
        try:
            result = run_agent(task)
            return result.status.value if result is not None else "refused"
        except SoftTimeLimitExceeded:
            # Cut off while recording: the merge at the deadline does not need this result.
            log.warning("agent %s on turn %s cut off while recording its result", agent, task.turn_id)
            return AgentStatus.timed_out.value


for _agent in AGENT_BY_NAME:
    _make_task(_agent)
