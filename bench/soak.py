"""`switchboard soak`: tickets that each need one known refund, under faults, then a count of
what must hold.

One run starts its own servers (an embedded Postgres and Redis it may restart, or the
servers named by ``--database-url``/``--broker-url`` with the commands that restart them),
the API and the four workers, and a helpdesk that answers 503 to one delivery attempt in
ten. It posts ``--tickets`` tickets at ``--rate`` through the API as a helpdesk would
(retrying a 503 or a refused connection with the same delivery id, and posting every
tenth ticket twice), each from a customer of its own who was charged twice for one
invoice and asks for the duplicate to be refunded. Every ``--fault-every`` seconds it
injects the next fault: a worker or the API SIGKILLed as a whole process group and
started again, the broker restarted (no persistence: its queues are gone), the database
restarted. When the last ticket is posted and the last fault is over, it waits until
every turn is final and every reply delivered, then counts from the rows:

- ``lost``: tickets with no turn, or whose turn never became final;
- ``actions_twice``: customers refunded more than once; ``wrong_actions``: a refund of
  the first payment (the one that was not the duplicate);
- ``hidden_actions``: refunds whose turn neither replied about it nor escalated with it in
  the summary;
- ``replies_delivered_twice``: turns the helpdesk accepted a reply for more than once;
- ``timeout_escalations``: turns escalated as ``timeout``, and their share;
- ``http_5xx``: API answers of 500 or more other than 503 (503s are counted apart), each
  in ``server_errors`` (when, the body), with the API's first error lines and tracebacks in
  ``api_errors``;
- ``final_after_last_fault_s``: from the end of the last fault until every turn was final.

Progress goes to stderr, one JSON object to stdout. The composition root hands over how
to start processes and servers (``SoakRuntime``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg
from sqlalchemy import insert

from bench.run import ProcessGroup, on_sigterm, say, with_database
from orchestrator.keys import create_key
from shared.celery_app import wait_for_workers
from shared.contracts import Role
from shared.db import one_off_session
from shared.migrate import upgrade
from shared.sandbox.models import SANDBOX_TENANT, SandboxCustomer, SandboxInvoice, SandboxPayment
from shared.settings import AGENTS, Settings

SOURCE = "soak"
FAULT_KINDS = ("kill_worker", "kill_api", "restart_broker", "restart_database")
WORKER_ROLES = ("orchestrator", *AGENTS)
DOWN_S = 2.0  # how long a killed process or a stopped server stays down
FINAL_TIMEOUT_S = 600.0


class Server(Protocol):
    """A server the soak may restart: start() returns its URL (the same one every time)."""

    def start(self) -> str: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SoakRuntime:
    processes: Callable[[Mapping[str, str], Path], ProcessGroup]
    embedded_postgres: Callable[[Path], Server]
    embedded_redis: Callable[[Path], Server]
    check_database: Callable[[str], None]
    check_broker: Callable[[str], None]
    free_port: Callable[[], int]
    api_argv: Callable[[int], list[str]]
    prepare_brain: Callable[[Settings], None]  # train or find the intent classifier once, before the workers


@dataclass
class CommandServer:
    """A server named by flags: its URL, and the command that restarts it (or none)."""

    url: str
    restart_command: str | None

    def restart(self) -> None:
        assert self.restart_command is not None
        subprocess.run(shlex.split(self.restart_command), check=True, timeout=120)


@dataclass
class Tally:
    """What the helpdesk side saw: the API's answers, and the replies delivered to it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    refused_connections: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # external id -> turn id
    unaccepted: list[str] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)  # turn id -> 2xx deliveries
    delivery_attempts: int = 0
    delivery_503: int = 0
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # each 5xx but 503: when, what


class FlakyHelpdesk:
    """A helpdesk's reply endpoint: 503 to one delivery attempt in ten, 200 otherwise."""

    def __init__(self, tally: Tally, port: int, seed: int) -> None:
        rng = random.Random(seed)
        soak = tally

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with soak.lock:
                    soak.delivery_attempts += 1
                    flaky = rng.random() < 0.1
                    if flaky:
                        soak.delivery_503 += 1
                    else:
                        soak.delivered[json.loads(body).get("turn_id", "")] += 1
                self.send_response(503 if flaky else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@dataclass(frozen=True)
class SoakConfig:
    tickets: int
    rate: float
    fault_every: float
    faults: tuple[str, ...]
    concurrency: int
    seed: int
    database_url: str | None
    broker_url: str | None
    restart_database: str | None
    restart_broker: str | None
    log_level: str = "WARNING"
    keep: bool = False  # leave the soak's database for a look afterwards


def customer_id(i: int) -> str:
    return f"soak_{i:06d}"


def seed_customers(database_url: str, n: int) -> None:
    """N customers, each charged twice (two payments of one invoice, a minute apart)."""
    now = datetime.now(UTC)
    with one_off_session(database_url) as session:
        for start in range(0, n, 1000):
            ids = range(start, min(n, start + 1000))
            session.execute(
                insert(SandboxCustomer),
                [
                    {"id": customer_id(i), "tenant": SANDBOX_TENANT, "email": f"{customer_id(i)}@example.com",
                     "name": f"Customer {i}", "plan": "pro"}
                    for i in ids
                ],
            )  # fmt: skip
            session.execute(
                insert(SandboxInvoice),
                [
                    {"id": f"inv_{customer_id(i)}", "customer_id": customer_id(i), "amount": Decimal("49.00"),
                     "issued_on": (now - timedelta(days=3)).date()}
                    for i in ids
                ],
            )  # fmt: skip
            session.execute(
                insert(SandboxPayment),
                [
                    {"id": f"pay_{customer_id(i)}_{k}", "invoice_id": f"inv_{customer_id(i)}",
                     "customer_id": customer_id(i), "amount": Decimal("49.00"), "card_last4": "4242",
                     "created_at": now - timedelta(days=2, minutes=2 - k)}
                    for i in ids
                    for k in (1, 2)
                ],
            )  # fmt: skip


def ticket(i: int) -> dict[str, Any]:
    return {
        "source": SOURCE,
        "external_id": f"soak-{i}",
        "channel": "email",
        "customer": {"id": customer_id(i), "email": f"{customer_id(i)}@example.com", "name": f"Customer {i}"},
        "subject": "Charged twice",
        "body": f"I was charged twice for invoice inv_{customer_id(i)} this week. Please refund the duplicate payment.",
    }


class Soak:
    def __init__(self, cfg: SoakConfig, runtime: SoakRuntime) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.root = Path(tempfile.mkdtemp(prefix="switchboard-soak-"))
        self.tally = Tally()
        self.rng = random.Random(cfg.seed)
        self.faults_done: list[dict[str, Any]] = []
        # What a process manager (Kubernetes, systemd) does: a process that exits is started
        # again. Counted, because a crash that is not ours to inject is a finding.
        self.crashes: list[dict[str, Any]] = []
        self._processes = threading.Lock()
        self._stopping = False
        self._injected = threading.Event()
        self.last_fault_end: float | None = None
        self.postgres: Server | CommandServer | None = None
        self.redis: Server | CommandServer | None = None
        self.supervisor: ProcessGroup | None = None
        self.helpdesk: FlakyHelpdesk | None = None
        self.env: dict[str, str] = {}
        self.database_url = ""
        self.admin_url = ""
        self.broker_url = ""
        self.api_url = ""
        self.api_port = 0
        self.started = 0.0
        self.key = ""
        self._created_database = False

    # ---------------------------------------------------------------- servers and processes

    def _servers(self) -> None:
        if self.cfg.database_url:
            self.postgres = CommandServer(self.cfg.database_url, self.cfg.restart_database)
            self.admin_url = self.cfg.database_url
        else:
            embedded = self.runtime.embedded_postgres(self.root / "postgres")
            self.admin_url = embedded.start()
            self.postgres = embedded
        self.runtime.check_database(self.admin_url)
        name = f"switchboard_soak_{os.getpid()}"
        with psycopg.connect(_psycopg(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._created_database = True
        self.database_url = with_database(self.admin_url, name)
        if self.cfg.broker_url:
            self.redis = CommandServer(self.cfg.broker_url, self.cfg.restart_broker)
            self.broker_url = self.cfg.broker_url
        else:
            embedded_redis = self.runtime.embedded_redis(self.root / "redis")
            self.broker_url = embedded_redis.start()
            self.redis = embedded_redis
        self.runtime.check_broker(self.broker_url)
        say(f"soak: database {name}, broker {self.broker_url}")

    def _start(self) -> None:
        self._servers()
        upgrade(self.database_url)
        seed_customers(self.database_url, self.cfg.tickets)
        with one_off_session(self.database_url) as session:
            self.key = create_key(session, role=Role.helpdesk, source=SOURCE, name="soak", by="soak")[1]
        self.helpdesk = FlakyHelpdesk(self.tally, self.runtime.free_port(), self.cfg.seed)
        self.api_port = self.runtime.free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "PROMETHEUS_"))}
        self.env.update(
            {
                "SWITCHBOARD_DATABASE_URL": self.database_url,
                "SWITCHBOARD_BROKER_URL": self.broker_url,
                "SWITCHBOARD_DATA_DIR": str(self.root),
                "SWITCHBOARD_SOURCES": json.dumps(
                    {SOURCE: {"callback_url": self.helpdesk.url, "secret": uuid.uuid4().hex, "tenant": SANDBOX_TENANT}}
                ),
                "SWITCHBOARD_API_RATE_LIMIT": "1000000/minute",
                "SWITCHBOARD_LOG_LEVEL": self.cfg.log_level,
                "SWITCHBOARD_DELIVERY_BACKOFF_S": "0.5",
                "SWITCHBOARD_DELIVERY_MAX_ATTEMPTS": "20",
                "PYTHONUNBUFFERED": "1",
            }
        )
        # The classifier is trained once (or found in the usual cache), not by eight cold
        # worker processes at the same time.
        settings = Settings()
        cache = settings.cache_dir or settings.data_dir.expanduser() / "cache"
        self.env["SWITCHBOARD_CACHE_DIR"] = str(cache)
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the report's
            self.runtime.prepare_brain(Settings(data_dir=self.root, cache_dir=cache))
        self.supervisor = self.runtime.processes(self.env, self.root / "logs")
        self._start_process("api")
        for role in WORKER_ROLES:
            self._start_process(role)
        self._wait_ready()

    def _start_process(self, name: str) -> None:
        assert self.supervisor is not None
        if name == "api":
            self.supervisor.start("api", self.runtime.api_argv(self.api_port))
        else:
            self.supervisor.start_worker(name, self.cfg.concurrency, loglevel=self.cfg.log_level)

    def _wait_ready(self) -> None:
        from shared.celery_app import create_app

        client = create_app(Settings(broker_url=self.broker_url))
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                wait_for_workers(list(WORKER_ROLES), timeout=2.0, celery=client)
                # /readyz: every queue has a warm worker process, so no ticket pays a cold start.
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    say(f"soak: API and workers up and warm (logs in {self.root / 'logs'})")
                    return
            except (TimeoutError, httpx.HTTPError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the soak's processes did not come up in 180 s; see {self.root / 'logs'}")

    def _tear_down(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self.helpdesk is not None:
            self.helpdesk.stop()
        if self._created_database and not self.cfg.keep:
            try:
                with psycopg.connect(_psycopg(self.admin_url), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "switchboard_soak_{os.getpid()}" WITH (FORCE)')
            except psycopg.Error as exc:
                say(f"soak: could not drop the soak database ({exc})")
        for server in (self.redis, self.postgres):
            if server is not None and not isinstance(server, CommandServer):
                try:
                    server.stop()
                except Exception as exc:  # stopping the rest matters more
                    say(f"soak: could not stop a server ({exc})")

    # ---------------------------------------------------------------- faults

    def _supervise(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            assert self.supervisor is not None
            with self._processes:
                if self._stopping:
                    return
                for name, code in self.supervisor.exited().items():
                    self.crashes.append({"process": name, "code": code, "at_s": round(time.time() - self.started, 1)})
                    say(f"soak: the {name} process exited by itself (code {code}); starting it again")
                    self._start_process(name)

    def _faults(self, stop: threading.Event, done: threading.Event) -> None:
        try:
            self._inject(stop)
        finally:
            self._injected.set()
        # A child gets SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG): the
        # processes this thread restarted must live to the end of the run.
        done.wait()

    def _inject(self, stop: threading.Event) -> None:
        """Faults in turn while tickets come in, and until every kind happened once (a short
        run sees them all too)."""
        kinds = [k for k in self.cfg.faults if self._can(k)]
        i = 0
        while kinds and (i < len(kinds) or not stop.is_set()):
            time.sleep(self.cfg.fault_every)  # spaced the same after the last ticket too
            if i >= len(kinds) and stop.is_set():
                break
            kind = kinds[i % len(kinds)]
            i += 1
            started = time.time()
            with self._processes:
                target = self._fault(kind)
            self.last_fault_end = time.time()
            self.faults_done.append({"kind": kind, "target": target, "at_s": round(started - self.started, 1)})
            say(f"soak: fault {kind} ({target}) done in {self.last_fault_end - started:.1f}s")

    def _can(self, kind: str) -> bool:
        if kind == "restart_database":
            return not isinstance(self.postgres, CommandServer) or self.postgres.restart_command is not None
        if kind == "restart_broker":
            return not isinstance(self.redis, CommandServer) or self.redis.restart_command is not None
        return True

    def _fault(self, kind: str) -> str:
        assert self.supervisor is not None
        if kind in ("kill_worker", "kill_api"):
            name = "api" if kind == "kill_api" else self.rng.choice(WORKER_ROLES)
            self.supervisor.kill(name)
            time.sleep(DOWN_S)
            self._start_process(name)
            return name
        server = self.postgres if kind == "restart_database" else self.redis
        assert server is not None
        if isinstance(server, CommandServer):
            server.restart()
        else:
            server.stop()
            time.sleep(DOWN_S)
            server.start()
        return "postgres" if kind == "restart_database" else "redis"

    # ---------------------------------------------------------------- tickets

    def _post_guarded(self, client: httpx.Client, i: int) -> None:
        try:
            self._post(client, i)
        except Exception as exc:  # counted, never lost in a thread pool's future
            say(f"soak: posting ticket {i} failed: {type(exc).__name__}: {exc}")
            with self.tally.lock:
                self.tally.unaccepted.append(f"soak-{i}")

    def _post(self, client: httpx.Client, i: int) -> None:
        payload = ticket(i)
        delivery = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {self.key}", "X-Switchboard-Delivery": delivery}
        # A helpdesk retries until the ticket is taken: a 503 after its Retry-After, a refused
        # connection (the API restarting) after a second, with the same delivery id.
        reposted = False
        end = time.monotonic() + 600
        while time.monotonic() < end:
            try:
                response = client.post(f"{self.api_url}/v1/tickets", json=payload, headers=headers, timeout=10)
            except httpx.HTTPError:
                with self.tally.lock:
                    self.tally.refused_connections += 1
                time.sleep(1.0)
                continue
            with self.tally.lock:
                self.tally.statuses[response.status_code] += 1
                if response.status_code >= 500 and response.status_code != 503:
                    self.tally.server_errors.append(
                        {"at_s": round(time.time() - self.started, 1), "status": response.status_code,
                         "body": response.text[:300]}
                    )  # fmt: skip
            if response.status_code in (200, 201, 202):
                with self.tally.lock:
                    self.tally.accepted[payload["external_id"]] = response.json()["turn_id"]
                if i % 10 == 9 and not reposted:  # the helpdesk posts every tenth ticket twice
                    reposted = True
                    headers = {**headers, "X-Switchboard-Delivery": uuid.uuid4().hex}
                    continue
                return
            if response.status_code in (429, 503) or response.status_code >= 500:
                time.sleep(_retry_after(response))
                continue
            break  # a 4xx the helpdesk cannot fix by trying again
        with self.tally.lock:
            self.tally.unaccepted.append(payload["external_id"])

    def _submit(self) -> None:
        interval = 1.0 / self.cfg.rate
        # The client outlives the pool: every post in flight finishes before it closes.
        with httpx.Client() as client, ThreadPoolExecutor(max_workers=32) as pool:
            for i in range(self.cfg.tickets):
                due = self.started + i * interval
                time.sleep(max(0.0, due - time.time()))
                pool.submit(self._post_guarded, client, i)
                if i and i % 500 == 0:
                    say(f"soak: {i}/{self.cfg.tickets} tickets posted")

    # ---------------------------------------------------------------- the count

    def _wait_final(self) -> float | None:
        """When every turn was final (then it waits for the replies too); None if never."""
        final_at: float | None = None
        end = time.monotonic() + FINAL_TIMEOUT_S
        while time.monotonic() < end:
            try:
                with psycopg.connect(_psycopg(self.database_url)) as conn:
                    row = conn.execute(
                        "SELECT (SELECT count(*) FROM turns WHERE state <> 'done'), (SELECT count(*) FROM turns),"
                        " (SELECT count(*) FROM deliveries WHERE state IN ('pending', 'sending'))"
                    ).fetchone()
            except psycopg.Error:
                time.sleep(1)
                continue
            assert row is not None
            open_turns, turns, open_deliveries = row
            if open_turns == 0 and turns >= len(self.tally.accepted):
                final_at = final_at or time.time()
                if open_deliveries == 0:
                    return final_at
            else:
                final_at = None
            time.sleep(0.5)
        return None

    def _count(self, final_at: float | None) -> dict[str, Any]:
        with psycopg.connect(_psycopg(self.database_url)) as conn:
            turns = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT c.external_id, t.id, t.state, t.outcome, t.escalation_reason, t.reply, e.summary "
                    "FROM conversations c JOIN turns t ON t.conversation_id = c.id "
                    "LEFT JOIN escalations e ON e.turn_id = t.id"
                )
            }
            refunds = conn.execute("SELECT customer_id, payment_id, idempotency_key FROM sandbox_refunds").fetchall()
        lost = [f"soak-{i}" for i in range(self.cfg.tickets) if turns.get(f"soak-{i}", (None, None))[1] != "done"]
        per_customer = Counter(customer for customer, _, _ in refunds)
        by_turn = {str(key).split(":")[0]: payment for _, payment, key in refunds}
        hidden = 0
        for _turn_id, state, outcome, _reason, reply, summary in turns.values():
            payment = by_turn.get(_turn_id)
            if payment is None or state != "done":
                continue
            told = outcome != "escalated" and reply is not None and "refund" in reply.lower()
            summarised = outcome == "escalated" and summary is not None and payment in summary
            hidden += not (told or summarised)
        timeouts = sum(1 for t in turns.values() if t[2] == "escalated" and t[3] == "timeout")
        outcomes = Counter(f"{t[2]}/{t[3]}" if t[3] else str(t[2]) for t in turns.values())
        statuses = self.tally.statuses
        return {
            "tickets": self.cfg.tickets,
            "lost": len(lost),
            "actions_twice": sum(1 for n in per_customer.values() if n > 1),
            "wrong_actions": sum(1 for _, payment, _ in refunds if not payment.endswith("_2")),
            "hidden_actions": hidden,
            "replies_delivered_twice": sum(1 for n in self.tally.delivered.values() if n > 1),
            "timeout_escalations": timeouts,
            "timeout_escalations_pct": round(100.0 * timeouts / max(1, len(turns)), 2),
            "http_5xx": sum(n for code, n in statuses.items() if code >= 500 and code != 503),
            "http_503": statuses.get(503, 0),
            "final_after_last_fault_s": (
                None if final_at is None else round(final_at - (self.last_fault_end or final_at), 1)
            ),
            "refunds": len(refunds),
            "outcomes": dict(outcomes),
            "api_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "refused_connections": self.tally.refused_connections,
            "unaccepted": len(self.tally.unaccepted),
            "delivery_attempts": self.tally.delivery_attempts,
            "delivery_503": self.tally.delivery_503,
            "faults": Counter(f["kind"] for f in self.faults_done),
            "process_exits": len(self.crashes),
            "process_exit_log": self.crashes,
            "fault_log": self.faults_done,
            "config": {
                "rate_per_s": self.cfg.rate,
                "fault_every_s": self.cfg.fault_every,
                "concurrency": self.cfg.concurrency,
                "seed": self.cfg.seed,
            },
            "server_errors": self.tally.server_errors,
            # What the API logged at error level: a 5xx is a bug to find, not a number to see.
            "api_errors": _errors_logged(self.root / "logs" / "api.log") if self.tally.server_errors else [],
            "logs": str(self.root / "logs"),
        }

    def run(self) -> dict[str, Any]:
        stop, done = threading.Event(), threading.Event()
        threads = [
            threading.Thread(target=self._faults, args=(stop, done), daemon=True),
            threading.Thread(target=self._supervise, args=(done,), daemon=True),
        ]
        try:
            self._start()
            self.started = time.time()
            for thread in threads:
                thread.start()
            self._submit()
            stop.set()
            self._injected.wait()
            say(f"soak: {self.cfg.tickets} tickets posted, faults over; waiting until every turn is final")
            final_at = self._wait_final()
            report = self._count(final_at)
            report["duration_s"] = round(time.time() - self.started, 1)
            return report
        finally:
            stop.set()
            with self._processes:
                self._stopping = True  # what stops now is not a crash to restart
            self._tear_down()
            done.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout=10)


def _errors_logged(path: Path, most: int = 5) -> list[str]:
    """The first error-level lines of a JSON log (with their tracebacks), for the report."""
    found: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return [f"{path} unreadable: {exc}"]
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            found.append(f"{entry.get('ts')} {entry.get('logger')}: {entry.get('msg')}\n{entry.get('exc', '')}"[-4000:])
            if len(found) == most:
                break
    return found


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(30.0, max(0.2, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def main(args: argparse.Namespace, runtime: SoakRuntime) -> int:
    faults = tuple(f for f in (args.faults or ",".join(FAULT_KINDS)).split(",") if f)
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        print(
            f"switchboard soak: unknown fault {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}",
            file=sys.stderr,
        )
        return 2
    cfg = SoakConfig(
        tickets=args.tickets,
        rate=args.rate,
        fault_every=args.fault_every,
        faults=faults,
        concurrency=args.concurrency,
        seed=args.seed,
        database_url=args.database_url,
        broker_url=args.broker_url,
        restart_database=args.restart_database,
        restart_broker=args.restart_broker,
        log_level=args.log_level,
        keep=args.keep,
    )
    # SIGTERM unwinds like Ctrl-C, through the finally that stops the processes and servers.
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        report = Soak(cfg, runtime).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report, indent=None if args.json else 2, default=str))
    held = (
        report["lost"] == 0
        and report["actions_twice"] == 0
        and report["wrong_actions"] == 0
        and report["hidden_actions"] == 0
        and report["replies_delivered_twice"] == 0
        and report["http_5xx"] == 0
        and report["final_after_last_fault_s"] is not None
    )
    return 0 if held else 1
