"""The plain-Celery baseline the bench measures Switchboard against.

A separate Celery app with a Redis result backend and its own queues, served by its own
workers, so nothing here touches the product's app, queues or database:

- ``bench.noop``: the cheapest task there is; three of them make a group;
- ``bench.blocking_turn``: what the product would look like if its orchestrator blocked
  on the fan-in — publish a group of three no-ops to another worker and join it. It holds
  its worker slot for the whole join (``disable_sync_subtasks=False``), which is exactly
  the cost the event-driven design avoids.

The bench starts the workers with ``celery -A bench.baseline:app worker`` and
passes the URLs in the environment (read here, once, because this module is the worker's
entry point).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, group

from shared.celery_app import broker_url_for_celery

NOOP_QUEUE = "bench.noop"
BLOCKING_QUEUE = "bench.orchestrator"
NOOP = "bench.noop"
MODEL_CALL = "bench.model_call"
BLOCKING_TURN = "bench.blocking_turn"
BLOCKING_MODEL_TURN = "bench.blocking_model_turn"
BLOCKING_TURN_REPLY = "bench.blocking_turn_reply"
FANOUT = 3
JOIN_TIMEOUT_S = 60.0
# The join. ResultSet.join() waits for each result on Redis pub/sub. join_native() and
# GroupResult.get() first read all results with one MGET and, unless every one is already
# there, sleep one ``interval`` before they start listening — and that interval defaults
# to 0.5 s (celery.backends.base.get_many). Measured here: join_native() took a median
# 510 ms for three no-ops, join_native(interval=0.001) 7.2 ms, join() 6.8 ms and
# join(interval=0) 6.6 ms. So: join(), with a short interval for good measure.
JOIN_INTERVAL_S = 0.001

BROKER_ENV = "SWITCHBOARD_BROKER_URL"
BACKEND_ENV = "SWITCHBOARD_BENCH_RESULT_BACKEND"
MODEL_ENV = "SWITCHBOARD_OPENAI_BASE_URL"  # the bench's model server, as the agents read it
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"


def create_baseline_app(broker_url: str, backend_url: str) -> Celery:
    """The same reliability settings as the product's app, plus a Redis result backend."""
    baseline = Celery("switchboard_bench", set_as_current=False)
    baseline.conf.update(
        broker_url=broker_url_for_celery(broker_url),
        result_backend=backend_url,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,
        task_default_queue=NOOP_QUEUE,
        task_routes={
            NOOP: {"queue": NOOP_QUEUE},
            MODEL_CALL: {"queue": NOOP_QUEUE},
            BLOCKING_TURN: {"queue": BLOCKING_QUEUE},
            BLOCKING_MODEL_TURN: {"queue": BLOCKING_QUEUE},
            BLOCKING_TURN_REPLY: {"queue": BLOCKING_QUEUE},
        },
        result_expires=300,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return baseline


app = create_baseline_app(os.environ.get(BROKER_ENV, DEFAULT_REDIS), os.environ.get(BACKEND_ENV, DEFAULT_REDIS))


@app.task(name=NOOP, shared=False)
def noop() -> None:
    return None


@app.task(name=MODEL_CALL, shared=False)
def model_call() -> None:
    """An agent of the blocking pattern that waits on the model: one call to the bench's model server."""
    import httpx

    httpx.get(os.environ.get(MODEL_ENV, "http://127.0.0.1:9").rstrip("/") + "/wait", timeout=10).raise_for_status()


def join_group(celery: Celery, fanout: int = FANOUT, *, inside_task: bool = False, task: str = NOOP) -> list[Any]:
    """Publish ``fanout`` tasks (no-ops by default) as a group (by task name) and wait for all of them."""
    result = group(celery.signature(task, queue=NOOP_QUEUE) for _ in range(fanout)).apply_async()
    values: list[Any] = result.join(
        timeout=JOIN_TIMEOUT_S, interval=JOIN_INTERVAL_S, disable_sync_subtasks=not inside_task
    )
    return values


@app.task(name=BLOCKING_TURN, ignore_result=True, shared=False)
def blocking_turn(done_key: str) -> None:
    """One 'turn' of the blocking pattern; counts itself done in Redis for the bench."""
    join_group(app, inside_task=True)
    app.backend.client.incr(done_key)


@app.task(name=BLOCKING_TURN_REPLY, shared=False)
def blocking_turn_reply() -> None:
    """The same turn for a caller that waits for it: its result is the 'reply'."""
    join_group(app, inside_task=True)


@app.task(name=BLOCKING_MODEL_TURN, ignore_result=True, shared=False)
def blocking_model_turn(done_key: str) -> None:
    """A turn of the blocking pattern whose three agents each wait on the model."""
    join_group(app, inside_task=True, task=MODEL_CALL)
    app.backend.client.incr(done_key)
