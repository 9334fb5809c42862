"""One reply, one sender at a time: an attempt has a total deadline, and only the holder of
the current lease records how it ended."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, update

from orchestrator.delivery import claim, deliver, record
from orchestrator.ingest import accept_ticket
from shared import db
from shared.contracts import DeliveryState, TicketIn, TurnState
from shared.models import Delivery, Turn
from shared.settings import Settings
from switchboard.servers import free_port
from tests.integration.conftest import rows

pytestmark = pytest.mark.integration

SETTINGS = Settings(delivery_timeout_s=1.0, delivery_max_attempts=5, delivery_backoff_s=0.1)


@pytest.fixture
def drip() -> Iterator[str]:
    """A helpdesk that accepts the POST, then answers one byte every 0.3 s: each read
    finishes inside any per-phase timeout, and the whole answer would take about a minute."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + b"ok" * 100:
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break  # the client gave up and closed: what the deadline is for
                    time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/replies"
    stop.set()
    thread.join(timeout=5)
    server.close()


def _delivery(url: str) -> str:
    with db.session_scope() as s:
        ticket = TicketIn.model_validate(
            {"source": "helpdesk", "external_id": uuid.uuid4().hex, "customer": {"id": "c"}, "body": "hi"}
        )
        accepted = accept_ticket(s, ticket, via="test")
        # A reply exists only for a merged turn: done, so the running stack leaves it alone.
        s.execute(update(Turn).where(Turn.id == accepted.turn_id).values(state=TurnState.done, outcome="resolved"))
        delivery_id = f"dlv_{uuid.uuid4().hex}"
        s.add(
            Delivery(
                id=delivery_id,
                turn_id=accepted.turn_id,
                conversation_id=accepted.conversation_id,
                source="helpdesk",
                url=url,
                payload={"reply": "hi"},
            )
        )
    return delivery_id


def test_an_attempt_that_outlasts_its_total_deadline_is_cut_off_and_retried(database_url: str, drip: str) -> None:
    delivery_id = _delivery(drip)
    attempt = deliver(delivery_id, SETTINGS)
    assert attempt.state == "retry"
    (row,) = rows("SELECT state, attempts, last_error FROM deliveries WHERE id = :d", d=delivery_id)
    assert row == {"state": "pending", "attempts": 1, "last_error": "no answer within 1s"}


def test_an_attempt_whose_lease_was_taken_over_records_nothing(database_url: str) -> None:
    delivery_id = _delivery("http://127.0.0.1:9/unused")
    with db.session_scope() as s:
        first = claim(s, delivery_id, SETTINGS)
    assert first is not None and first.attempts == 1
    # The first worker stalls past its lease (the lease ends at the database's clock)...
    with db.session_scope() as s:
        s.execute(
            update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=func.now() - timedelta(seconds=1))
        )
    # ...a second worker takes the row, sends, and records the delivery.
    with db.session_scope() as s:
        second = claim(s, delivery_id, SETTINGS)
    assert second is not None and second.attempts == 2
    with db.session_scope() as s:
        assert record(s, delivery_id, second.turn_id, 2, DeliveryState.delivered, None, None).state == "delivered"
    # The first wakes up and records its failure: the row is no longer its to write.
    with db.session_scope() as s:
        late = record(s, delivery_id, first.turn_id, 1, DeliveryState.pending, "HTTP 503", 0.1)
    assert late.state == "skipped"
    (row,) = rows("SELECT state, attempts, last_error FROM deliveries WHERE id = :d", d=delivery_id)
    assert row == {"state": "delivered", "attempts": 2, "last_error": None}
    events = rows("SELECT kind FROM events WHERE turn_id = :t AND kind LIKE 'delivery.%%'", t=first.turn_id)
    assert events == [{"kind": "delivery.delivered"}]


def test_a_lease_still_held_cannot_be_taken(database_url: str) -> None:
    delivery_id = _delivery("http://127.0.0.1:9/unused")
    with db.session_scope() as s:
        assert claim(s, delivery_id, SETTINGS) is not None
    with db.session_scope() as s:
        assert claim(s, delivery_id, SETTINGS) is None
