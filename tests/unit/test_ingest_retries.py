"""A broker ticket the database cannot take is retried, then parked, never dropped."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from orchestrator import tasks
from shared import db
from shared.celery_app import DEAD_LETTER_QUEUE, app
from shared.settings import Settings

TICKET = {"source": "zendesk", "external_id": "48213", "customer": {"id": "cust_1"}, "body": "Charged twice"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("switchboard_ingest_retries_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(tasks, "INGEST_MAX_RETRIES", 3)
    monkeypatch.setattr(tasks.ingest, "max_retries", 3)
    broker = app.conf.broker_url
    app.conf.broker_url = "memory://"
    try:
        with db.configured(Settings(database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/switchboard")):
            yield
    finally:
        app.conf.broker_url = broker


@pytest.mark.usefixtures("database_down")
def test_a_ticket_the_database_cannot_take_is_retried_then_parked_in_the_dead_letter_queue() -> None:
    retried, parked = _count("retry"), _count("dead_letter")
    result = tasks.ingest.apply(args=[TICKET], kwargs={"api_key": "sb_key"}).get()
    assert result == {"error": "dead_lettered", "queue": DEAD_LETTER_QUEUE}
    assert _count("retry") - retried == 3 and _count("dead_letter") - parked == 1
    with app.connection_for_read() as conn, conn.SimpleQueue(DEAD_LETTER_QUEUE) as queue:
        message = queue.get(timeout=2)
        body = message.decode()
        message.ack()
    args, kwargs = body[0], body[1]
    assert args == [TICKET] and kwargs == {"api_key": "sb_key"}  # the same task, as it came
