"""Integration fixtures: the machine's real Postgres, Redis and RabbitMQ, real Celery workers.

One test database per session (created, migrated, dropped), a Redis database of its own,
and a stack of real processes — the API under uvicorn and the four Celery workers — that
the tests talk to over HTTP and the broker. Agents are driven by the scripted brain in
tests/support, so a test's ticket body says what each agent does.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from orchestrator.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from shared import db
from shared.celery_app import wait_for_workers
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import Settings
from switchboard.processes import ROLES, Supervisor, switchboard_argv
from switchboard.servers import free_port
from tests.support.fake_helpdesks import FakeHelpdesk, Kind, basic
from tests.support.helpdesk_webhooks import CONFIGS, FRESHDESK, INTERCOM, ZENDESK

PG_ADMIN = os.environ.get("SWITCHBOARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS", "redis://127.0.0.1:6379/9")
AMQP_URL = os.environ.get("SWITCHBOARD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
WEBHOOK_SECRET = "test-secret-do-not-use"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"switchboard_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    from shared.migrate import upgrade

    upgrade(url)
    db.configure(Settings(database_url=url))
    yield url
    db.engine().dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def s(database_url: str) -> Iterator[Session]:
    """One session whose every commit is a savepoint of an outer transaction that is rolled back:
    the logic that takes a session, tested against the real Postgres, leaving nothing behind."""
    with db.engine().connect() as conn:
        outer = conn.begin()
        # The session class of the product's units of work (shared.db.UnitOfWork), so the logic
        # is tested on the statement paths it takes in production.
        session = db.UnitOfWork(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


# --------------------------------------------------------------------------- webhook receiver


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    signature_ok: bool


@dataclass
class Helpdesk:
    """A local helpdesk that receives replies; can be told to fail a ticket's next N posts."""

    url: str
    received: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # external ticket id -> posts to refuse
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_turn(self, turn_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.body.get("turn_id") == turn_id]

    def wait_for(self, turn_id: str, timeout: float = 20.0) -> Received:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.for_turn(turn_id)
            if got:
                return got[0]
            time.sleep(0.05)
        raise AssertionError(f"no reply for {turn_id} reached the helpdesk within {timeout}s")


@pytest.fixture(scope="session")
def helpdesk() -> Iterator[Helpdesk]:
    port = free_port()
    desk = Helpdesk(url=f"http://127.0.0.1:{port}/replies")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            external_id = json.loads(raw).get("external_id", "")
            with desk.lock:
                failing = desk.failures.get(external_id, 0) > 0
                if failing:
                    desk.failures[external_id] -= 1
                else:
                    desk.received.append(
                        Received(
                            body=json.loads(raw),
                            headers=dict(self.headers.items()),
                            signature_ok=verify_signature(
                                WEBHOOK_SECRET,
                                self.headers.get(TIMESTAMP_HEADER),
                                self.headers.get(SIGNATURE_HEADER),
                                raw,
                            ),
                        )
                    )
            self.send_response(503 if failing else 200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield desk
    server.shutdown()


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    supervisor: Supervisor
    metrics_ports: dict[str, int]
    keys: dict[str, str] = field(default_factory=dict)  # admin, and a helpdesk key per source

    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def http(self) -> httpx.Client:
        """The API as an admin key calls it."""
        return self.client("admin")

    def client(self, key: str) -> httpx.Client:
        """One client per key for the whole stack, closed with it."""
        if key not in self.clients:
            self.clients[key] = httpx.Client(
                base_url=self.api, headers={"Authorization": f"Bearer {self.keys[key]}"}, timeout=10
            )
        return self.clients[key]

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        self.supervisor.stop()

    def restart(self, role: str) -> None:
        self.supervisor.procs.pop(role, None)
        self.supervisor.start_worker(role, 2, {"SWITCHBOARD_METRICS_PORT": str(self.metrics_ports[role])})


QUEUES = ("orchestrator", "orchestrator.delivery", "agent.billing", "agent.knowledge", "agent.account")


def _purge_broker(url: str) -> None:
    """Drop what an earlier, interrupted run left on the broker's queues."""
    from kombu import Connection

    with Connection(url) as conn:
        for queue in QUEUES:
            channel = conn.channel()
            try:
                channel.queue_purge(queue)
            except Exception:  # a queue that does not exist yet has nothing to purge
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


@pytest.fixture(scope="session")
def helpdesks() -> Iterator[dict[str, FakeHelpdesk]]:
    """A local Zendesk, Freshdesk and Intercom, connected to the stack by SWITCHBOARD_HELPDESKS
    under their kind's name."""
    credentials: dict[Kind, str] = {
        "zendesk": basic(f"{ZENDESK['email']}/token:{ZENDESK['api_token']}"),
        "freshdesk": basic(f"{FRESHDESK['api_key']}:X"),
        "intercom": f"Bearer {INTERCOM['access_token']}",
    }
    with contextlib.ExitStack() as running:
        yield {
            kind: running.enter_context(FakeHelpdesk(kind, credential=credential, slow_s=2.0))
            for kind, credential in credentials.items()
        }


def helpdesks_setting(fakes: dict[str, FakeHelpdesk] | None) -> dict[str, Any]:
    return {kind: CONFIGS[kind] | {"base_url": fake.url} for kind, fake in (fakes or {}).items()}


def start_stack(
    database_url: str,
    broker_url: str,
    helpdesk: Helpdesk,
    tmp: Path,
    with_api: bool = True,
    helpdesks: dict[str, FakeHelpdesk] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Stack:
    if broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    else:
        _purge_broker(broker_url)
    metrics_dir = tmp / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_BROKER_URL": broker_url,
        "SWITCHBOARD_BRAIN": "tests.support.scripted_brain:ScriptedBrain",
        "SWITCHBOARD_EXTRA_TOOLS": json.dumps(["tests.support.tools:TOOLS"]),
        "SWITCHBOARD_AGENT_DEADLINE_S": "3",
        "SWITCHBOARD_SWEEP_INTERVAL_S": "0.5",
        "SWITCHBOARD_REQUEUE_AFTER_S": "3",
        "SWITCHBOARD_MAX_TURN_ATTEMPTS": "2",  # a poison turn is given up in seconds
        "SWITCHBOARD_DEADLINE_GRACE_S": "1",
        "SWITCHBOARD_DELIVERY_BACKOFF_S": "0.2",
        "SWITCHBOARD_API_RATE_LIMIT": "100000/minute",  # the limits have a test of their own
        "SWITCHBOARD_SOURCES": json.dumps(
            {
                # helpdesk, signed and eval are one company, the sandbox's: they share its customers
                "helpdesk": {"callback_url": helpdesk.url, "secret": WEBHOOK_SECRET, "tenant": SANDBOX_TENANT},
                "signed": {
                    "callback_url": helpdesk.url,
                    "secret": WEBHOOK_SECRET,
                    "require_signature": True,
                    "tenant": SANDBOX_TENANT,
                },
                "eval": {"tenant": SANDBOX_TENANT},  # what `switchboard eval` posts as, against this stack
                "globex": {},  # another company: its own tenant, none of the sandbox's customers
            }
        ),
        "SWITCHBOARD_HELPDESKS": json.dumps(helpdesks_setting(helpdesks)),
        "SWITCHBOARD_LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **(extra_env or {}),
    }
    supervisor = Supervisor(env=env, log_dir=tmp / "logs")
    ports = {role: free_port() for role in ROLES}
    for role, port in ports.items():
        supervisor.start_worker(role, 2, {"SWITCHBOARD_METRICS_PORT": str(port)})
    api = ""
    if with_api:
        port = free_port()
        supervisor.start("api", switchboard_argv("api", "--port", str(port)))
        api = f"http://127.0.0.1:{port}"
    stack = Stack(api=api, env=env, supervisor=supervisor, metrics_ports=ports, keys=_keys())
    try:
        _wait_ready(stack, broker_url, with_api)
    except Exception:
        supervisor.stop()
        raise
    return stack


def _keys() -> dict[str, str]:
    """An admin key and a helpdesk key of each configured source, in the test database."""
    from orchestrator.keys import create_key
    from shared.contracts import Role

    with db.session_scope() as s:
        keys = {"admin": create_key(s, role=Role.admin, name="tests: admin", by="tests")[1]}
        for human in ("agent", "agent2"):  # two humans of the desk
            keys[human] = create_key(s, role=Role.agent, name=f"tests: {human}", by="tests")[1]
        for source in ("helpdesk", "signed", "globex"):
            keys[source] = create_key(s, role=Role.helpdesk, source=source, name=f"tests: {source}", by="tests")[1]
    return keys


def _wait_ready(stack: Stack, broker_url: str, with_api: bool) -> None:
    from shared.celery_app import create_app

    wait_for_workers(
        list(ROLES),
        timeout=90,
        celery=create_app(Settings(broker_url=broker_url)),
    )
    if with_api:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(stack.api + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the API did not come up")


@pytest.fixture(scope="session")
def stack(
    database_url: str, helpdesk: Helpdesk, helpdesks: dict[str, FakeHelpdesk], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(database_url, REDIS_URL, helpdesk, tmp_path_factory.mktemp("stack"), helpdesks=helpdesks)
    yield s
    s.stop()


# --------------------------------------------------------------------------- helpers


def ticket(
    body: str | dict[str, Any], *, source: str = "helpdesk", external_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "source": source,
        "external_id": external_id or f"ext-{uuid.uuid4().hex[:10]}",
        "channel": "email",
        "customer": {"id": "cust_1001", "email": "ana.ruiz@example.com", "name": "Ana Ruiz"},
        "subject": "Help",
        "body": body if isinstance(body, str) else json.dumps(body),
        **extra,
    }


def script(**agents: list[dict[str, Any]]) -> dict[str, Any]:
    return {"script": agents}


ANSWER = [
    {"call": "lookup_balance", "args": {}},
    {"finish": "answered", "answer": "Your balance is 42.", "confidence": 0.9, "cite": True},
]


def wait_done(turn_id: str, timeout: float = 20.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with db.engine().connect() as conn:
            row = conn.execute(text("SELECT * FROM turns WHERE id = :id"), {"id": turn_id}).mappings().one()
        if row["state"] == "done":
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"turn {turn_id} did not finish within {timeout}s (state {row['state']})")


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.engine().connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings().all()]
