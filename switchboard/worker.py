"""The worker entry: which modules define tasks, and process start-up for every Celery
worker (database, logs, metrics, the clock, a warm brain): in each prefork child, or in the
worker's own process for a threads pool (docs/fan-in.md, "Pools and deadlines").

``worker_app()`` names the task modules in the app's ``include`` list (polar's tasks.py):
this module among them, so its signal handlers are connected in every worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery, signals

from shared import db, metrics
from shared.celery_app import ORCHESTRATOR_QUEUE, agent_queue, app
from shared.logs import configure_logging
from shared.settings import get_settings
from shared.workers import announce_warm, retire

log = logging.getLogger(__name__)

TASK_MODULES = ("switchboard.worker", "orchestrator.tasks", "agents.tasks")
_consumes_orchestrator = False
_consumes_agents = False
_in_process = False  # tasks run in this process (a threads pool), not in prefork children
_queues: list[str] = []


def worker_app() -> Celery:
    """The product's Celery app with every task module of the product included."""
    app.conf.include = list(TASK_MODULES)
    return app


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@signals.celeryd_after_setup.connect
def _remember_queues(sender: str, instance: Any, **_: Any) -> None:
    global _consumes_orchestrator, _consumes_agents, _in_process
    queues = instance.app.amqp.queues.consume_from or instance.app.amqp.queues
    _queues[:] = [str(q) for q in queues]
    _consumes_orchestrator = ORCHESTRATOR_QUEUE in queues
    _consumes_agents = any(str(q).startswith("agent.") for q in queues)
    if runs_tasks_in_process(instance.pool_cls):
        # No child process will send worker_process_init: this process is the one that
        # takes tasks, so it warms up here, before its consumer starts (a ping is answered
        # only once the brain is loaded), and retires at worker_shutdown.
        _in_process = True
        _child_process()


def runs_tasks_in_process(pool_cls: Any) -> bool:
    """A threads (or gevent, eventlet) pool runs tasks in the worker's own process."""
    return str(getattr(pool_cls, "__module__", "")).rsplit(".", 1)[-1] in ("thread", "gevent", "eventlet")


@signals.worker_shutdown.connect
def _main_exit(**_: Any) -> None:
    if _in_process:
        retire()


@signals.worker_init.connect
def _main_process(**_: Any) -> None:
    settings = get_settings()
    db.configure(settings)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


@signals.worker_process_init.connect
def _child_process(**_: Any) -> None:
    if not _in_process:
        db.configure(get_settings())  # never share a parent's connections across a fork
    if _consumes_orchestrator:
        from orchestrator.tasks import clock

        clock()
        _read_for_the_agents()
    if _consumes_agents:
        # Load the brain's models now: a cold embedding model takes seconds, and the first
        # turn after a deploy must not spend its 3-second deadline on it.
        from agents.tasks import agents, brain

        warm_up = getattr(brain(), "warm_up", None)
        try:
            if callable(warm_up):
                warm_up()
            agents()  # the agents and their tools, built once per process
        except Exception:  # the first turn will try again and fail visibly if it must
            log.exception("warming up the brain failed")
        if agent_queue("knowledge") in _queues:
            threading.Thread(target=_warm_knowledge_base, name="kb-warm-up", daemon=True).start()
    # The orchestrator screens every message and the agents every tool output with the learned
    # injection detector: load it now too (it logs and leaves the rules alone if it cannot).
    from shared.guardrails.injection_model import process_model

    process_model()
    # What `switchboard run` waits for before it says the stack is up, and /readyz.
    metrics.READY_PROCESSES.set(1)
    try:
        announce_warm(_queues)
    except Exception as exc:  # the database is down: the heartbeat says it when it is back
        log.warning("could not say this worker process is warm (%s)", type(exc).__name__)


def _warm_knowledge_base() -> None:
    """Embed the knowledge base's passages into this process's cache, beside its first turns:
    re-ranking then embeds only the customer's question (it embedded every candidate passage
    of a cold process: most of the knowledge agent's CPU per question)."""
    from agents.knowledge.retrieval import warm_passages

    started = time.monotonic()
    try:
        with db.session_scope() as s:
            embedded = warm_passages(s)
    except Exception as exc:  # no knowledge base yet, or the database is down: turns embed as they go
        log.warning("could not warm the knowledge base's passages (%s)", type(exc).__name__)
        return
    log.info("knowledge base warm: %d passages embedded in %.1fs", embedded, time.monotonic() - started)


def _read_for_the_agents() -> None:
    """With the local brain, the orchestrator reads each turn's message once and sends the
    reading to the agents (orchestrator.reading): one embedding per turn instead of three."""
    from agents.tasks import brain
    from orchestrator.reading import use_reader
    from shared.brains.local import LocalBrain

    local = brain()
    if not isinstance(local, LocalBrain):
        return
    try:
        local.warm_up()
    except Exception:  # the agents read the message themselves, and say why they cannot
        log.exception("warming up the local brain for reading turns failed")
        return
    use_reader(local.read)


@signals.worker_process_shutdown.connect
def _child_exit(pid: int | None = None, **_: Any) -> None:
    retire()
    metrics.mark_process_dead(pid or os.getpid())
