"""Which worker processes are warm, for /readyz: each says so once its brain is loaded.

A worker process (every prefork child) calls ``announce_warm`` when it can take a task
without a cold start, and keeps its row fresh from a daemon thread; a clean exit deletes
the row, a killed process's row goes stale after ``FRESH_S`` and stops counting.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import WorkerProcess

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
FRESH_S = 15.0  # a row older than this is a process that is gone
STALE_S = 3600.0  # and one this old is deleted by whoever beats next

_stop = threading.Event()


def _me() -> tuple[str, int]:
    return socket.gethostname()[:255], os.getpid()


def announce_warm(queues: Iterable[str]) -> None:
    """This process takes tasks from ``queues`` now, warm; refreshed until it exits."""
    host, pid = _me()
    listed = sorted(set(queues))
    with session_scope() as s:
        s.execute(
            insert(WorkerProcess)
            .values(host=host, pid=pid, queues=listed)
            .on_conflict_do_update(
                index_elements=[WorkerProcess.host, WorkerProcess.pid],
                set_={"queues": listed, "warm_at": datetime.now(UTC), "seen_at": datetime.now(UTC)},
            )
        )
    _stop.clear()
    threading.Thread(target=_beat, args=(host, pid, listed), name="switchboard-heartbeat", daemon=True).start()


def _beat(host: str, pid: int, queues: list[str]) -> None:
    while not _stop.wait(HEARTBEAT_S):
        try:
            with session_scope() as s:
                now = datetime.now(UTC)
                seen = s.execute(
                    update(WorkerProcess)
                    .where(WorkerProcess.host == host, WorkerProcess.pid == pid)
                    .values(seen_at=now)
                ).rowcount  # type: ignore[attr-defined]
                if not seen:  # deleted meanwhile (a database restored, a cleanup): say it again
                    s.add(WorkerProcess(host=host, pid=pid, queues=queues))
                s.execute(delete(WorkerProcess).where(WorkerProcess.seen_at < now - timedelta(seconds=STALE_S)))
        except Exception as exc:  # the database is down: /readyz says so by itself
            log.debug("worker heartbeat failed (%s)", type(exc).__name__)


def retire() -> None:
    """A clean exit: this process takes no more tasks."""
    _stop.set()
    host, pid = _me()
    try:
        with session_scope() as s:
            s.execute(delete(WorkerProcess).where(WorkerProcess.host == host, WorkerProcess.pid == pid))
    except Exception as exc:  # its row goes stale on its own
        log.debug("could not retire worker row (%s)", type(exc).__name__)


def warm_queues(s: Session) -> set[str]:
    """The queues that have a warm worker process seen in the last ``FRESH_S`` seconds."""
    since = datetime.now(UTC) - timedelta(seconds=FRESH_S)
    rows = s.execute(select(WorkerProcess.queues).where(WorkerProcess.seen_at > since)).scalars()
    return {str(q) for queues in rows for q in queues}
