"""An agent task's message headers name the task, not its content. Celery otherwise writes
the first kilobyte of the arguments' repr into the headers, which task events and Flower
show to whoever watches the broker: the customer's message, name and email."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from orchestrator import tasks
from orchestrator.ingest import accept_ticket
from orchestrator.turns import start_turn
from shared import db
from shared.celery_app import agent_queue, create_app
from shared.contracts import TicketIn
from shared.settings import Settings
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration

AGENTS = ("billing", "knowledge", "account")
# The machine's real Redis, in a database no worker of the test stack reads: nothing takes
# these tasks but this test.
BROKER = REDIS_URL.rsplit("/", 1)[0] + "/13"
BODY = "Hi, Ada Lovelace here, I was charged twice for order 8841 and my phone is +44 20 7946 0958"


class _Clock:
    def schedule(self, turn_id: str, at: float) -> None:
        """The turn's deadline timer: not this test's subject."""


@pytest.fixture
def broker(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    db.configure(Settings(database_url=database_url))
    redis.Redis.from_url(BROKER).flushdb()
    app = create_app(Settings(broker_url=BROKER))
    monkeypatch.setattr(tasks, "app", app)
    monkeypatch.setattr(tasks, "clock", _Clock)
    yield app
    redis.Redis.from_url(BROKER).flushdb()


def _published(app: Celery, agent: str) -> Any:
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(agent_queue(agent))
        try:
            return queue.get(timeout=2)
        finally:
            queue.close()


def test_agent_tasks_are_published_whole_with_headers_that_hold_no_customer_text(broker: Celery) -> None:
    customer = {"id": f"cust_{uuid.uuid4().hex[:8]}", "email": "ada@example.com", "name": "Ada Lovelace"}
    with db.session_scope() as s:
        ticket = TicketIn.model_validate(
            {"source": "headers-test", "external_id": uuid.uuid4().hex, "customer": customer, "body": BODY}
        )
        accepted = accept_ticket(s, ticket, via="test")
        started = start_turn(s, accepted.turn_id, Settings(agents=list(AGENTS)))
    assert started is not None and not started.held and started.guardrail is None

    tasks._publish(started)

    for agent in AGENTS:
        message = _published(broker, agent)
        headers = message.headers
        assert headers["argsrepr"] == f"[agent task {accepted.turn_id} {agent}]"
        assert headers["kwargsrepr"] == "{}"
        shown = repr(headers)
        for personal in ("Ada", "ada@example.com", "8841", "7946"):
            assert personal not in shown, personal
        # The agent still gets the whole task: the body is the message's arguments.
        args, _kwargs, _embed = message.decode()
        assert args[0]["turn_id"] == accepted.turn_id and args[0]["agent"] == agent
        assert any("charged twice" in m["body"] for m in args[0]["window"])
        message.ack()
