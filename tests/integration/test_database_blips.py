"""A database that blinks while an agent's result is stored loses nothing.

The blink is real: the process talks to Postgres through a local TCP relay that refuses
its next connections, as a restarting or failing-over server does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import delete

from orchestrator.fan_in import finish_agent_run
from orchestrator.ingest import accept_ticket
from orchestrator.turns import mark_published, start_turn
from shared import db
from shared.brains.openai_client import EndpointUnavailable, ModelClient, SharedLedger
from shared.contracts import AgentResult, AgentStatus, Fact, TicketIn, ToolCallRecord
from shared.models import ModelSpend
from shared.settings import Settings
from switchboard.servers import free_port
from tests.integration.conftest import rows
from tests.integration.test_model_budget import _ask, _settings
from tests.support.fake_openai import FakeOpenAI, completion

pytestmark = pytest.mark.integration


@dataclass
class Relay:
    """127.0.0.1:port → the real Postgres; ``refuse`` connections are closed at once."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    refuse: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, server: socket.socket, stop: threading.Event) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            with self.lock:
                if self.refuse > 0:
                    self.refuse -= 1
                    self.refused += 1
                    client.close()
                    continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()
        server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relayed(database_url: str) -> Iterator[Relay]:
    url = urlsplit(database_url)
    relay = Relay(target=(url.hostname or "127.0.0.1", url.port or 5432))
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", relay.port))  # listening before anyone connects
    thread = threading.Thread(target=relay.serve, args=(server, stop), daemon=True)
    thread.start()
    netloc = f"{url.username}@127.0.0.1:{relay.port}" if url.username else f"127.0.0.1:{relay.port}"
    try:
        with db.configured(Settings(database_url=urlunsplit(url._replace(netloc=netloc)))):
            yield relay
    finally:
        stop.set()
        thread.join(timeout=5)


def test_an_agent_result_stored_while_the_database_blinks_is_kept(relayed: Relay) -> None:
    settings = Settings(agents=["billing"])
    with db.session_scope() as s:
        ticket = TicketIn.model_validate(
            {"source": "blip", "external_id": uuid.uuid4().hex, "customer": {"id": "c"}, "body": "refund pay_1"}
        )
        accepted = accept_ticket(s, ticket, via="test")
        assert start_turn(s, accepted.turn_id, settings) is not None
        mark_published(s, accepted.turn_id)
    call = ToolCallRecord(call_id="call_1", tool="refund_payment", arguments={"payment_id": "pay_1"}, output={})
    result = AgentResult(
        turn_id=accepted.turn_id,
        agent="billing",
        status=AgentStatus.answered,
        answer="Refunded.",
        confidence=0.9,
        facts=[Fact(statement="refund_payment refunded pay_1", call_id="call_1")],
        tool_calls=[call],
        brain="test",
    )
    db.engine().dispose()  # every connection from here on is a new one, through the relay
    relayed.refuse = 2  # the server is "restarting": the next two connections fail
    finish_agent_run(result, time.time())
    assert relayed.refused == 2
    assert rows("SELECT agent, status FROM agent_runs WHERE turn_id = :t", t=accepted.turn_id) == [
        {"agent": "billing", "status": "answered"}
    ]
    assert rows("SELECT tool FROM tool_calls WHERE turn_id = :t", t=accepted.turn_id) == [{"tool": "refund_payment"}]


def test_a_reply_the_helpdesk_took_while_the_database_blinked_is_sent_once(relayed: Relay) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from orchestrator.delivery import deliver
    from tests.integration.test_delivery_fencing import SETTINGS, _delivery

    posts: list[str] = []

    class Helpdesk(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append(self.headers["X-Switchboard-Delivery"])
            # The helpdesk has the reply; right now the database restarts.
            db.engine().dispose()
            relayed.refuse = 2
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Helpdesk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        delivery_id = _delivery(f"http://127.0.0.1:{server.server_address[1]}/replies")
        attempt = deliver(delivery_id, SETTINGS)
        assert attempt.state == "delivered" and relayed.refused == 2
        assert rows("SELECT state FROM deliveries WHERE id = :d", d=delivery_id) == [{"state": "delivered"}]
        assert deliver(delivery_id, SETTINGS).state == "skipped"  # the sweeper finds nothing to send
        assert posts == [delivery_id]
    finally:
        server.shutdown()


def test_model_spend_is_kept_through_a_blink_and_no_model_call_is_made_unchecked(relayed: Relay) -> None:
    today = datetime.now(UTC).date()
    with db.session_scope() as s:
        s.execute(delete(ModelSpend).where(ModelSpend.day == today))
    usage = {"prompt_tokens": 300, "completion_tokens": 300, "cached_tokens": 0}  # 0.6 USD each
    answer = {"role": "assistant", "content": "hello"}
    try:
        with FakeOpenAI() as fake:
            fake.script("big", *(completion(answer, "stop", usage) for _ in range(2)))
            ledger = SharedLedger()
            client = ModelClient(_settings(fake, budget=10.0), ledger=ledger)
            db.engine().dispose()
            relayed.refuse = 1000  # the database is down from here
            # The spend cannot be read, so the budget cannot be checked: no call is made.
            with pytest.raises(EndpointUnavailable) as refused:
                _ask(client)
            assert refused.value.reason == "budget_unknown"
            assert fake.requests_for("big") == []
            # A cost that cannot be written (a call that ended as the database went) is kept.
            ledger.add(0.25)
            relayed.refuse = 0  # back
            assert ledger.spent_today() == pytest.approx(0.25)
            _ask(client)  # writes its own 0.6 and the 0.25 kept
        assert rows("SELECT spent_usd::float AS spent FROM model_spend WHERE day = :d", d=today) == [
            {"spent": pytest.approx(0.85)}
        ]
        assert ledger.spent_today() == pytest.approx(0.85)
    finally:
        with db.session_scope() as s:
            s.execute(delete(ModelSpend).where(ModelSpend.day == today))
