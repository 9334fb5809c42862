"""`switchboard run`: the whole stack on one machine, started and stopped as one.

With no URLs configured it starts its own Postgres and Redis in the data folder
(orchestrator/embedded.py); with URLs it checks and uses those servers. Then it migrates,
starts the API and one worker per role, waits until each answers, prints where
everything is, and stops it all on Ctrl-C or SIGTERM. A child that dies on its own stops
the stack with a non-zero exit and the path of that child's log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery
from sqlalchemy.orm import Session

from agents.knowledge.kb import KnowledgeBaseUnavailable, import_directory
from agents.registry import agent_profiles
from orchestrator.keys import create_key, has_live_keys
from shared.brains.local import LocalBrain
from shared.celery_app import (
    DELIVERY_QUEUE,
    ORCHESTRATOR_QUEUE,
    agent_queue,
    create_app,
    wait_for_workers,
    worker_options,
)
from shared.contracts import Role
from shared.db import one_off_engine, one_off_session
from shared.errors import ConfigurationError
from shared.metrics import prepare_multiprocess_dir
from shared.migrate import upgrade
from shared.sandbox.loader import DEMO_KB, load_demo_into
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import AGENTS, Settings, get_settings
from switchboard.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    lock_data_dir,
    record_children,
    stop_leftover_children,
)
from switchboard.processes import ROLES, Supervisor, switchboard_argv
from switchboard.servers import check_broker, check_database

# Worker metrics ports follow in ROLES order from this one (9101 orchestrator … 9104
# account). SWITCHBOARD_METRICS_PORT given to `switchboard run` moves the whole block.
FIRST_WORKER_METRICS_PORT = 9101
READY_TIMEOUT_S = 60.0
# With no SWITCHBOARD_SOURCES, `switchboard run` accepts these: the README's example posts as
# "demo", and `switchboard eval` posts as "eval". Both reach the sandbox's demo customers.
DEMO_SOURCE = "demo"
DEMO_SOURCES: dict[str, dict[str, object]] = {
    DEMO_SOURCE: {"tenant": SANDBOX_TENANT},
    "eval": {"tenant": SANDBOX_TENANT},
}
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def worker_queues(role: str) -> list[str]:
    if role == "orchestrator":
        return [ORCHESTRATOR_QUEUE, DELIVERY_QUEUE]
    if role in AGENTS:
        return [agent_queue(role)]
    raise SystemExit(f"switchboard worker: unknown role {role!r}; use orchestrator, {', '.join(AGENTS)}")


def worker_argv(
    role: str,
    concurrency: int | None,
    loglevel: str = "INFO",
    also: Sequence[str] = (),
    *,
    pool: str | None = None,
    threads: int | None = None,
) -> list[str]:
    """The worker of ``role`` in the pool its settings give it (``pool`` overrides them).

    ``concurrency`` counts processes, so it sizes a prefork worker only: a threads worker is
    one process of ``threads`` (default ``SWITCHBOARD_WORKER_THREADS``) threads. ``also``:
    more queues for this worker, e.g. orchestrator.dead_letter to take parked tickets.
    """
    settings = get_settings()
    queues = [*worker_queues(role), *(q for q in also if q not in worker_queues(role))]
    chosen = pool or settings.pool_for(role)
    if chosen == "threads":
        return worker_options(queues, role, threads or settings.worker_threads, loglevel, pool="threads")
    return worker_options(queues, role, concurrency or settings.worker_concurrency, loglevel, pool=chosen)


def worker_processes(role: str, concurrency: int, settings: Settings) -> int:
    """How many processes of the worker of ``role`` take tasks: a threads worker is one."""
    return 1 if settings.pool_for(role) == "threads" else concurrency


def load_sandbox(database_url: str, settings: Settings) -> None:
    """Load the demo sandbox company and its knowledge base: idempotent, on every start.

    A Postgres without pgvector still runs everything else: the knowledge base is then
    skipped with one line that says how to get it.
    """
    loaded = load_demo_into(database_url)
    _say(f"Sandbox:  demo company loaded ({sum(loaded.values())} records)")
    corpus = settings.kb_dir or DEMO_KB
    engine = one_off_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            report = import_directory(session, corpus)
        _say(f"KB:       {corpus} ({report.articles} articles, {report.skipped} unchanged)")
    except KnowledgeBaseUnavailable as exc:
        _say(f"KB:       skipped: {exc}")
    finally:
        engine.dispose()


def demo_keys(database_url: str) -> dict[str, str]:
    """On the first start (no key exists yet): an admin key and a helpdesk key of the demo
    source, to be printed once. Later starts create nothing: the keys are not kept in clear."""
    with one_off_session(database_url) as s:
        if has_live_keys(s):
            return {}
        by = "switchboard run"
        admin = create_key(s, role=Role.admin, name="demo admin (created by switchboard run)", by=by)[1]
        helpdesk = create_key(s, role=Role.helpdesk, source=DEMO_SOURCE, name="demo helpdesk (run)", by=by)[1]
    return {"admin": admin, "helpdesk": helpdesk}


def prepare_brain(settings: Settings) -> None:
    """Train (or find cached) the intent classifier once, here, before the workers start.

    Otherwise every agent worker process would train the same classifier at the same time.
    """
    if settings.brain not in ("local", "openai"):
        return
    started = time.monotonic()
    LocalBrain(settings, agent_profiles()).warm_up()
    _say(f"Brain:    intent engine ready ({time.monotonic() - started:.1f}s)")


@dataclass
class _Stack:
    """What one run started, so that whatever happens it all stops, in reverse order."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    supervisor: Supervisor | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    demo_keys: dict[str, str] = field(default_factory=dict)  # role -> key, created on this start

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self) -> None:
        """Stop whatever was started, each part even if another fails."""
        supervisor, redis, postgres = self.supervisor, self.redis, self.postgres
        self.supervisor = self.redis = self.postgres = None
        if supervisor is not None and _try_to(f"stop the API and the workers (see {self.log_dir})", supervisor.stop):
            record_children(self.data_dir, {})  # else the next run stops what is left
        if redis is not None:
            _try_to(f"stop the embedded Redis (see {redis.log_path})", redis.stop)
        if postgres is not None:
            _try_to(f"stop the embedded Postgres (see {postgres.log_path})", postgres.stop)

    def first_death(self) -> str | None:
        """A line naming the first process that died on its own, or None."""
        if self.supervisor is not None:
            for name, code in self.supervisor.exited().items():
                return f"the {_title(name)} exited unexpectedly (code {code}); its log: {self.log_of(name)}"
        if self.redis is not None and not self.redis.alive():
            return f"the embedded Redis exited unexpectedly; its log: {self.redis.log_path}"
        if self.postgres is not None and not self.postgres.alive():
            return f"the embedded Postgres exited unexpectedly; its log: {self.postgres.log_path}"
        return None


class _StartupFailed(Exception):
    pass


@contextlib.contextmanager
def _lifetime(settings: Settings, *, stop_quietly: bool = False) -> Iterator[_Stack]:
    """One run of the stack: its data folder locked, Ctrl-C/SIGTERM/SIGHUP raising
    KeyboardInterrupt, and whatever was started stopped at the end, whatever happens.

    ``stop_quietly`` sends what stopping prints to stderr, for a command whose stdout is
    its own (``eval --json``).
    """
    data_dir = settings.data_dir.expanduser().resolve()
    lock = lock_data_dir(data_dir)
    stack = _Stack(data_dir)
    previous = _set_stop_signals(_raise_keyboard_interrupt)
    try:
        yield stack
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave orphans behind.
        _set_stop_signals(signal.SIG_IGN)
        try:
            with contextlib.redirect_stdout(sys.stderr) if stop_quietly else contextlib.nullcontext():
                stack.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.close()


def run_stack(args: argparse.Namespace) -> int:
    settings = get_settings()
    with _lifetime(settings) as stack:
        # A ConfigurationError ends the run here and the CLI prints it: no "stopped" then.
        code = _run(stack, settings, args)
    _say("stopped")
    return code


@dataclass(frozen=True)
class StartedStack:
    """A stack that `started_stack` runs: where it is, and whether one of its processes died."""

    api_url: str
    database_url: str
    broker_url: str
    problem: Callable[[], str | None]  # a line naming a process that died on its own, or None


def api_base_url(settings: Settings) -> str:
    """Where a client on this machine reaches the API these settings describe."""
    return f"http://{_reachable_host(settings.api_host)}:{settings.api_port}"


@contextlib.contextmanager
def started_stack(
    settings: Settings,
    *,
    concurrency: int | None = None,
    sandbox: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[StartedStack]:
    """The stack as `switchboard run` starts it, for a command that needs one for a while (the eval).

    It stops when the block ends, on Ctrl-C and SIGTERM too. What starting and stopping
    print goes to stderr: the command's stdout stays its own (``eval --json``). A start
    that fails raises ConfigurationError; ``extra_env`` goes to every child.
    """
    with _lifetime(settings, stop_quietly=True) as stack:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                args = argparse.Namespace(no_sandbox=not sandbox, concurrency=concurrency)
                _start(stack, settings, args, extra_env)
        except _StartupFailed as exc:
            raise ConfigurationError(f"the stack did not start: {exc}") from None
        assert stack.supervisor is not None
        env = stack.supervisor.env
        yield StartedStack(
            api_url=api_base_url(settings),
            database_url=env["SWITCHBOARD_DATABASE_URL"],
            broker_url=env["SWITCHBOARD_BROKER_URL"],
            problem=stack.first_death,
        )


def _run(stack: _Stack, settings: Settings, args: argparse.Namespace) -> int:
    try:
        _start(stack, settings, args)
        _announce(stack, settings)
        while (death := stack.first_death()) is None:
            time.sleep(0.25)
        _say(f"{death}. Stopping the rest.", err=True)
        return 1
    except _StartupFailed as exc:
        _say(f"{exc}. Stopping the rest.", err=True)
        return 1
    except KeyboardInterrupt:
        _say("stopping...")
        return 0


def _start(
    stack: _Stack, settings: Settings, args: argparse.Namespace, extra_env: Mapping[str, str] | None = None
) -> None:
    leftovers = stop_leftover_children(stack.data_dir)
    if leftovers:
        _say(f"stopped {', '.join(leftovers)} left running by an earlier run that did not stop cleanly")

    first_metrics_port = settings.metrics_port or FIRST_WORKER_METRICS_PORT
    stack.metrics_ports = {role: first_metrics_port + i for i, role in enumerate(ROLES)}
    _check_port_free(settings.api_host, settings.api_port, "SWITCHBOARD_API_PORT")
    for port in stack.metrics_ports.values():
        _check_port_free(settings.metrics_host, port, "SWITCHBOARD_METRICS_PORT (the first of four worker ports)")

    # Configured servers first: a wrong URL fails in a second, before anything starts.
    if settings.database_url:
        check_database(settings.database_url)
    if settings.broker_url:
        check_broker(settings.broker_url)

    database_url = settings.database_url
    if database_url:
        _say(f"Postgres: {_redact(database_url)}")
    else:
        stack.postgres = EmbeddedPostgres(stack.data_dir / "postgres")
        database_url = stack.postgres.start()
        _say(f"Postgres: embedded (18 + pgvector), data in {stack.postgres.pgdata}, log {stack.postgres.log_path}")
        check_database(database_url)
    broker_url = settings.broker_url
    if broker_url:
        _say(f"Broker:   {_redact(broker_url)}")
    else:
        stack.redis = EmbeddedRedis(stack.data_dir / "redis", stack.log_of("redis"))
        broker_url = stack.redis.start()
        _say(f"Broker:   embedded Redis 6.2 on {stack.redis.socket_path}, log {stack.redis.log_path}")
        check_broker(broker_url)

    upgrade(database_url)
    _say("Database: at the latest schema")
    if not args.no_sandbox:
        load_sandbox(database_url, settings)
    prepare_brain(settings.model_copy(update={"data_dir": stack.data_dir}))

    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_BROKER_URL": broker_url,
        "SWITCHBOARD_DATA_DIR": str(stack.data_dir),
        "PYTHONUNBUFFERED": "1",  # logs reach the files as they happen
        **(extra_env or {}),
    }
    env.pop("SWITCHBOARD_METRICS_PORT", None)  # each worker gets its own below
    if not settings.sources and "SWITCHBOARD_SOURCES" not in (extra_env or {}):
        env["SWITCHBOARD_SOURCES"] = json.dumps(DEMO_SOURCES)
        _say(f"Sources:  {', '.join(DEMO_SOURCES)} (none configured: set SWITCHBOARD_SOURCES for your helpdesks)")
    stack.supervisor = Supervisor(env=env, log_dir=stack.log_dir)
    _say(f"Logs:     {stack.log_dir}/<name>.log")

    # One multiprocess directory per process tree: each /metrics reports its own process
    # (and prefork children) only, so Prometheus summing over targets counts once.
    def metrics_env(name: str) -> dict[str, str]:
        directory = stack.data_dir / "metrics" / name
        prepare_multiprocess_dir(directory)
        return {"PROMETHEUS_MULTIPROC_DIR": str(directory)}

    stack.supervisor.start("api", switchboard_argv("api"), metrics_env("api"))
    concurrency = args.concurrency or settings.worker_concurrency
    for role in ROLES:
        metrics_port = {"SWITCHBOARD_METRICS_PORT": str(stack.metrics_ports[role])}
        stack.supervisor.start_worker(role, concurrency, {**metrics_env(role), **metrics_port})
    record_children(stack.data_dir, {name: proc.pid for name, proc in stack.supervisor.procs.items()})

    deadline = time.monotonic() + READY_TIMEOUT_S
    _wait_for_api(stack, settings, deadline)
    _wait_for_all_workers(stack, create_app(settings.model_copy(update={"broker_url": broker_url})), deadline)
    _wait_for_ready_processes(stack, settings, concurrency, deadline)
    if not args.no_sandbox:  # last: a start that fails creates no keys nobody saw
        stack.demo_keys = demo_keys(database_url)


def _wait_for_api(stack: _Stack, settings: Settings, deadline: float) -> None:
    import httpx

    url = f"{api_base_url(settings)}/healthz"
    while time.monotonic() < deadline:
        _fail_if_died(stack)
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise _StartupFailed(f"the API did not answer {url} within {READY_TIMEOUT_S:.0f}s; its log: {stack.log_of('api')}")


def _wait_for_all_workers(stack: _Stack, app: Celery, deadline: float) -> None:
    while True:
        _fail_if_died(stack)
        try:
            wait_for_workers(list(ROLES), timeout=1.0, celery=app)
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise _StartupFailed(
                    f"not every worker answered a ping within {READY_TIMEOUT_S:.0f}s; see the logs in {stack.log_dir}"
                ) from None


def _wait_for_ready_processes(stack: _Stack, settings: Settings, concurrency: int, deadline: float) -> None:
    """A worker answers a ping before its prefork children have loaded the brain; a task
    that reached a child still starting would spend its deadline waiting. Up means every
    child of every worker says it is ready (switchboard_worker_ready_processes)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    host = _reachable_host(settings.metrics_host)
    waiting = dict(stack.metrics_ports)
    while waiting:
        _fail_if_died(stack)
        for role, port in list(waiting.items()):
            try:
                text = httpx.get(f"http://{host}:{port}/metrics", timeout=1.0).text
            except httpx.HTTPError:
                continue
            ready = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "switchboard_worker_ready_processes"
                for sample in family.samples
            )
            if ready >= worker_processes(role, concurrency, settings):
                del waiting[role]
        if waiting and time.monotonic() >= deadline:
            raise _StartupFailed(
                f"the {', '.join(waiting)} worker processes did not finish starting within {READY_TIMEOUT_S:.0f}s; "
                f"see the logs in {stack.log_dir}"
            )
        if waiting:
            time.sleep(0.1)


def _fail_if_died(stack: _Stack) -> None:
    death = stack.first_death()
    if death is not None:
        raise _StartupFailed(death)


def _announce(stack: _Stack, settings: Settings) -> None:
    api = api_base_url(settings)
    metrics_host = _reachable_host(settings.metrics_host)
    lines = [
        "",
        "Switchboard is running.",
        f"  API      {api}",
        f"  OpenAPI  {api}/docs",
        f"  desk     {api}/desk  (log in as a user of `switchboard users create --email E --role agent`)",
        f"  metrics  {api}/metrics  (api)",
        *(f"           http://{metrics_host}:{port}/metrics  ({role})" for role, port in stack.metrics_ports.items()),
        f"  logs     {stack.log_dir}/<name>.log  (api, {', '.join(ROLES)}{', redis' if stack.redis else ''})",
        *_key_lines(stack.demo_keys, api),
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _key_lines(keys: dict[str, str], api: str) -> list[str]:
    if not keys:
        return ["  keys     `switchboard keys list`; a new one: `switchboard keys create --role ROLE --name NAME`"]
    ticket = (
        '{"source": "demo", "external_id": "T-1", "customer": {"id": "cust_1001", "email": "ana.ruiz@example.com"}, '
        '"body": "Hi, I was charged twice for my November invoice."}'
    )
    return [
        f"  keys     admin     {keys['admin']}",
        f"           helpdesk  {keys['helpdesk']}  (source {DEMO_SOURCE})",
        "           shown only now: keep them (`switchboard keys list` shows their ids)",
        "  try      curl -s -XPOST "
        + f"{api}/v1/tickets -H 'Authorization: Bearer {keys['helpdesk']}' "
        + f"-H 'Content-Type: application/json' -d '{ticket}'",
    ]


def _reachable_host(host: str) -> str:
    """Where a browser on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _check_port_free(host: str, port: int, setting: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the servers will: a port in TIME_WAIT is free to them
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"Port {port} on {host} is not free ({exc.strerror}); is another Switchboard running? "
                f"Stop what holds it, or set {setting}."
            ) from None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))


def _try_to(what: str, step: Callable[[], None]) -> bool:
    try:
        step()
    except Exception as exc:
        _say(f"could not {what}: {type(exc).__name__}: {exc}", err=True)
        return False
    return True


def _title(name: str) -> str:
    return "API" if name == "api" else f"{name} worker"


def _say(line: str, err: bool = False) -> None:
    print(f"switchboard: {line}", file=sys.stderr if err else sys.stdout, flush=True)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _set_stop_signals(handler: _Handler) -> dict[signal.Signals, _Handler]:
    """SIGTERM (a service manager) and SIGHUP (the terminal closed) stop like Ctrl-C."""
    return {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
