"""The stack an eval runs against: the one already running, or one it starts and stops.

A stack is running when the API at SWITCHBOARD_API_HOST/PORT answers /healthz; the eval
then needs the database that stack uses (SWITCHBOARD_DATABASE_URL, or the embedded
Postgres a `switchboard run` keeps in the data folder). Otherwise it starts the API and
the four workers exactly as `switchboard run` does (orchestrator/stack.py), against the
configured servers or the embedded ones, and stops them when the run ends.

``started_stack`` and ``running_embedded_database_url`` below adapt the run command's
private pieces; they belong in orchestrator/stack.py and orchestrator/embedded.py
(docs/evals.md, "Stack"), after which this module only keeps ``eval_stack``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from shared import db
from shared.errors import ConfigurationError
from shared.settings import Settings


@dataclass(frozen=True)
class EvalStack:
    api_url: str
    database_url: str
    started: bool  # by this eval (so --brain applies to it)
    problem: Callable[[], str | None]  # a line naming a process of ours that died, or None


@contextlib.contextmanager
def eval_stack(settings: Settings, *, brain: str | None, concurrency: int | None) -> Iterator[EvalStack]:
    api_url = api_base_url(settings)
    if _answers(api_url):
        database_url = settings.database_url or running_embedded_database_url(settings.data_dir)
        if not database_url:
            raise ConfigurationError(
                f"A stack answers at {api_url}, but SWITCHBOARD_DATABASE_URL is not set and no embedded Postgres "
                f"runs in {settings.data_dir}: set SWITCHBOARD_DATABASE_URL to that stack's database"
            )
        db.configure(settings.model_copy(update={"database_url": database_url}))
        yield EvalStack(api_url, database_url, started=False, problem=lambda: None)
        return
    extra_env = {"SWITCHBOARD_BRAIN": brain} if brain else {}
    print(f"switchboard eval: no stack answers at {api_url}; starting one for this run", file=sys.stderr)
    with started_stack(settings, concurrency=concurrency, sandbox=False, extra_env=extra_env) as stack:
        db.configure(settings.model_copy(update={"database_url": stack.database_url}))
        yield EvalStack(stack.api_url, stack.database_url, started=True, problem=stack.problem)


def _answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- to move into stack.py


@dataclass(frozen=True)
class StartedStack:
    api_url: str
    database_url: str
    broker_url: str
    problem: Callable[[], str | None]


def api_base_url(settings: Settings) -> str:
    from orchestrator import stack as run

    return run._base_url(settings)


@contextlib.contextmanager
def started_stack(
    settings: Settings,
    *,
    concurrency: int | None = None,
    sandbox: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[StartedStack]:
    """The stack as `switchboard run` starts it, stopped when the block ends (Ctrl-C, SIGTERM too).

    What it prints goes to stderr: stdout may carry a report (``eval --json``).
    """
    from orchestrator import stack as run
    from orchestrator.embedded import lock_data_dir

    data_dir = settings.data_dir.expanduser().resolve()
    lock = lock_data_dir(data_dir)
    stack = run._Stack(data_dir)
    saved_env = {key: os.environ.get(key) for key in extra_env or {}}
    previous = run._set_stop_signals(run._raise_keyboard_interrupt)
    try:
        os.environ.update(extra_env or {})  # the children inherit the run's environment
        try:
            with contextlib.redirect_stdout(sys.stderr):
                run._start(stack, settings, argparse.Namespace(no_sandbox=not sandbox, concurrency=concurrency))
        except run._StartupFailed as exc:
            raise ConfigurationError(f"the stack did not start: {exc}") from None
        assert stack.supervisor is not None
        env = stack.supervisor.env
        yield StartedStack(
            api_url=run._base_url(settings),
            database_url=env["SWITCHBOARD_DATABASE_URL"],
            broker_url=env["SWITCHBOARD_BROKER_URL"],
            problem=stack.first_death,
        )
    finally:
        run._set_stop_signals(signal.SIG_IGN)  # a second Ctrl-C must not leave orphans behind
        try:
            with contextlib.redirect_stdout(sys.stderr):
                stack.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            lock.close()


def running_embedded_database_url(data_dir: Path) -> str | None:
    """The URL of the embedded Postgres a `switchboard run` keeps running in ``data_dir``, if any."""
    from orchestrator.embedded import DATABASE, EmbeddedPostgres

    postgres = EmbeddedPostgres(data_dir.expanduser() / "postgres")
    if postgres._postmaster() is None:
        return None
    # postmaster.pid: pid, data dir, start time, port, socket dir, ...
    lines = (postgres.pgdata / "postmaster.pid").read_text().splitlines()
    if len(lines) < 5 or not lines[4].strip():
        return None
    return f"postgresql://postgres@/{DATABASE}?host={quote(lines[4].strip())}&port={lines[3].strip()}"
