"""Which Celery pool each worker runs: threads for agents that wait on a model, prefork for CPU."""

from __future__ import annotations

import pytest
from celery.concurrency import get_implementation
from pydantic import ValidationError

from shared.settings import Settings
from switchboard import stack
from switchboard.worker import runs_tasks_in_process


def test_the_local_brain_keeps_every_worker_prefork() -> None:
    settings = Settings()
    assert {role: settings.pool_for(role) for role in ("orchestrator", *settings.agents)} == {
        "orchestrator": "prefork",
        "billing": "prefork",
        "knowledge": "prefork",
        "account": "prefork",
    }


def test_agents_of_the_openai_brain_run_in_threads_and_the_orchestrator_stays_prefork() -> None:
    settings = Settings(brain="openai")
    assert [settings.pool_for(a) for a in settings.agents] == ["threads"] * 3
    assert settings.pool_for("orchestrator") == "prefork"


def test_a_role_of_its_own_overrides_the_pool_of_all() -> None:
    settings = Settings(brain="openai", worker_pool="prefork", worker_pools={"knowledge": "threads"})
    assert settings.pool_for("billing") == "prefork" and settings.pool_for("knowledge") == "threads"


def test_a_pool_for_a_role_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no worker role: biling"):
        Settings(worker_pools={"biling": "threads"})


def _argv(monkeypatch: pytest.MonkeyPatch, settings: Settings, role: str, **kw: object) -> list[str]:
    monkeypatch.setattr(stack, "get_settings", lambda: settings)
    return stack.worker_argv(role, 2, **kw)  # type: ignore[arg-type]


def test_a_threads_worker_is_one_process_of_worker_threads_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(brain="openai", worker_threads=48)
    argv = _argv(monkeypatch, settings, "billing")
    assert "--pool=threads" in argv and "--concurrency=48" in argv  # the 2 processes asked for size prefork only
    assert stack.worker_processes("billing", 2, settings) == 1
    orchestrator = _argv(monkeypatch, settings, "orchestrator")
    assert "--pool=prefork" in orchestrator and "--concurrency=2" in orchestrator
    assert stack.worker_processes("orchestrator", 2, settings) == 2


def test_the_worker_command_can_choose_the_pool_and_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _argv(monkeypatch, Settings(), "account", pool="threads", threads=12)
    assert "--pool=threads" in argv and "--concurrency=12" in argv


def test_only_in_process_pools_warm_up_in_the_worker_itself() -> None:
    assert runs_tasks_in_process(get_implementation("threads"))
    assert not runs_tasks_in_process(get_implementation("prefork"))
