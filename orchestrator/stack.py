"""Starting the stack: worker command lines now; `switchboard run` follows."""

from __future__ import annotations

import argparse

from shared.celery_app import DELIVERY_QUEUE, ORCHESTRATOR_QUEUE, agent_queue
from shared.settings import AGENTS, get_settings


def worker_queues(role: str) -> list[str]:
    if role == "orchestrator":
        return [ORCHESTRATOR_QUEUE, DELIVERY_QUEUE]
    if role in AGENTS:
        return [agent_queue(role)]
    raise SystemExit(f"switchboard worker: unknown role {role!r}; use orchestrator, {', '.join(AGENTS)}")


def worker_argv(role: str, concurrency: int | None, loglevel: str = "INFO") -> list[str]:
    settings = get_settings()
    return [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={','.join(worker_queues(role))}",
        f"--hostname={role}@%h",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def run_stack(args: argparse.Namespace) -> int:
    raise NotImplementedError
