"""The stack an eval runs against: the one already running, or one it starts and stops.

A stack is running when the API at SWITCHBOARD_API_HOST/PORT answers /healthz; the eval
then needs the database that stack uses (SWITCHBOARD_DATABASE_URL, or the embedded
Postgres a `switchboard run` keeps in the data folder). Otherwise it starts the API and
the four workers exactly as `switchboard run` does, against the configured servers or
the embedded ones, and stops them when the run ends.

The eval is a client of the product: it does not know how a stack is started. The
composition root (``switchboard.cli``) hands it a ``StackRuntime`` that does.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from evals.runner import SOURCE as EVAL_SOURCE
from shared import db
from shared.errors import ConfigurationError
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import Settings


class RunningStack(Protocol):
    """What the eval needs of a stack it started."""

    @property
    def api_url(self) -> str: ...

    @property
    def database_url(self) -> str: ...

    @property
    def problem(self) -> Callable[[], str | None]: ...


class StartStack(Protocol):
    def __call__(
        self,
        settings: Settings,
        *,
        concurrency: int | None = None,
        sandbox: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[RunningStack]: ...


@dataclass(frozen=True)
class StackRuntime:
    """How to reach, find and start a stack: given by the composition root."""

    api_url: Callable[[Settings], str]  # where the API of these settings answers
    running_database_url: Callable[[Path], str | None]  # the embedded Postgres a run keeps in a data folder
    start: StartStack


@dataclass(frozen=True)
class EvalStack:
    api_url: str
    database_url: str
    started: bool  # by this eval (so --brain applies to it)
    problem: Callable[[], str | None]  # a line naming a process of ours that died, or None


@contextlib.contextmanager
def eval_stack(
    settings: Settings, runtime: StackRuntime, *, brain: str | None, concurrency: int | None
) -> Iterator[EvalStack]:
    api_url = runtime.api_url(settings)
    if _answers(api_url):
        database_url = settings.database_url or runtime.running_database_url(settings.data_dir.expanduser())
        if not database_url:
            raise ConfigurationError(
                f"A stack answers at {api_url}, but SWITCHBOARD_DATABASE_URL is not set and no embedded Postgres "
                f"runs in {settings.data_dir}: set SWITCHBOARD_DATABASE_URL to that stack's database"
            )
        db.configure(settings.model_copy(update={"database_url": database_url}))
        yield EvalStack(api_url, database_url, started=False, problem=lambda: None)
        return
    extra_env = {"SWITCHBOARD_BRAIN": brain} if brain else {}
    # The source the eval posts as must be configured in the stack it starts.
    sources = {
        name: {**cfg.model_dump(mode="json"), "secret": cfg.secret.get_secret_value()}
        for name, cfg in settings.sources.items()
    }
    # Its cases' customers are the sandbox's, so the eval source is of the sandbox's tenant.
    eval_source = {**sources.get(EVAL_SOURCE, {}), "tenant": SANDBOX_TENANT}
    extra_env["SWITCHBOARD_SOURCES"] = json.dumps({**sources, EVAL_SOURCE: eval_source})
    print(f"switchboard eval: no stack answers at {api_url}; starting one for this run", file=sys.stderr)
    with runtime.start(settings, concurrency=concurrency, sandbox=False, extra_env=extra_env) as stack:
        db.configure(settings.model_copy(update={"database_url": stack.database_url}))
        yield EvalStack(stack.api_url, stack.database_url, started=True, problem=stack.problem)


def _answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
