"""The turn's message read once by the orchestrator and acted on by every agent from that
reading (orchestrator.reading, LocalBrain.read): no agent classifies it again, an agent
whose intent engine differs reads it itself, and a reader that fails costs nothing but CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from agents.base import Agent
from orchestrator.reading import use_reader, with_reading
from shared.brains.local import LocalBrain
from shared.contracts import AgentStatus, AgentTask, Customer, MessageReading, WindowMessage
from shared.settings import Settings
from tests.unit import test_local_playbooks as playbooks
from tests.unit.test_local_playbooks import PROFILES, StubRouter, backend, payment

__all__ = ["fresh"]
fresh = playbooks.fresh  # the autouse fixture: a fresh fake backend per test


class CountingRouter(StubRouter):
    """The stub intent engine, counting how often the message is classified."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def classify(self, text: str) -> tuple[str, float]:
        self.calls += 1
        return super().classify(text)

    def ranked(self, text: str, k: int) -> list[tuple[str, float]]:
        self.calls += 1
        return super().ranked(text, k)

    def entities(self, text: str, *, now: datetime, timezone: str | None) -> dict[str, Any]:
        self.calls += 1
        return super().entities(text, now=now, timezone=timezone)


def task(agent: str, message: str, reading: MessageReading | None = None) -> AgentTask:
    return AgentTask(
        turn_id="t-read",
        conversation_id="c1",
        agent=agent,
        source="helpdesk",
        tenant="demo",
        customer=Customer(id="cust_1", email="ana@example.com", name="Ana Ruiz"),
        window=[WindowMessage(role="customer", body=message)],
        deadline_at=time.time() + 3,
        published_at=time.time(),
        reading=reading,
    )


def brains() -> tuple[LocalBrain, CountingRouter, LocalBrain, CountingRouter]:
    """The orchestrator's brain, which knows the message, and an agent's, which does not."""
    orchestrator_router, agent_router = CountingRouter(), CountingRouter()
    orchestrator = LocalBrain(Settings(kb_min_score=0.5), PROFILES, router=orchestrator_router)
    agent = LocalBrain(Settings(kb_min_score=0.5), PROFILES, router=agent_router)
    return orchestrator, orchestrator_router, agent, agent_router


@pytest.fixture(autouse=True)
def no_reader() -> Iterator[None]:
    yield
    use_reader(None)


MESSAGE = "I was charged twice for my invoice, and I also can't log in to my account"


def knows_two_parts(router: CountingRouter) -> None:
    router.meaning[MESSAGE] = ("duplicate_charge", 0.6, {})
    router.meaning["I was charged twice for my invoice"] = ("duplicate_charge", 0.9, {"invoice_ids": ["inv_1"]})
    router.meaning["I also can't log in to my account"] = ("password_reset", 0.9, {})


def test_every_agent_acts_on_the_orchestrators_reading_without_classifying_the_message() -> None:
    orchestrator, orchestrator_router, agent_brain, agent_router = brains()
    knows_two_parts(orchestrator_router)
    backend.payments = [payment("pay_1", hours=145), payment("pay_2", hours=144)]
    # the reading crosses the broker as JSON, as Celery carries the task
    wire = task("billing", MESSAGE, orchestrator.read(task("billing", MESSAGE))).model_dump(mode="json")
    sent = AgentTask.model_validate(wire)
    assert sent.reading is not None and [p.intent for p in sent.reading.parts] == ["duplicate_charge", "password_reset"]

    billing = Agent(name="billing", tools=list(playbooks.tools)).run(sent, agent_brain)
    account = Agent(name="account", tools=list(playbooks.tools)).run(
        sent.model_copy(update={"agent": "account"}), agent_brain
    )

    assert agent_router.calls == 0  # the agent's brain never read the message
    # the duplicate is found and, told but not asked for, confirmed before any refund
    assert billing.status is AgentStatus.needs_info and "pay_2" in (billing.answer or "") and backend.refunds == []
    assert account.status is AgentStatus.answered and backend.resets == 1
    assert billing.part_start == 0 and account.part_start == MESSAGE.index("I also")


def test_a_reading_by_another_intent_engine_is_ignored_and_the_agent_reads_the_message_itself() -> None:
    _, _, agent_brain, agent_router = brains()
    knows_two_parts(agent_router)
    backend.payments = [payment("pay_1", hours=145), payment("pay_2", hours=144)]
    # a reading from an orchestrator on other examples (a rolling deploy) says something else
    stale = MessageReading(reader="local:another-version", intent="cancel_subscription", confidence=0.99)

    result = Agent(name="billing", tools=list(playbooks.tools)).run(task("billing", MESSAGE, stale), agent_brain)

    assert agent_router.calls > 0
    assert result.status is AgentStatus.needs_info and "pay_2" in (result.answer or "")  # its own reading
    assert backend.cancelled == [] and backend.refunds == []


def test_the_orchestrator_sends_one_reading_in_every_agent_task() -> None:
    orchestrator, orchestrator_router, _, _ = brains()
    knows_two_parts(orchestrator_router)
    tasks = [task(agent, MESSAGE) for agent in ("billing", "knowledge", "account")]

    assert with_reading(tasks) == tasks  # no reader: the agents read it themselves
    use_reader(orchestrator.read)
    sent = with_reading(tasks)

    readings = [t.reading for t in sent]
    assert readings[0] is not None and readings[0].reader == orchestrator.reader
    assert all(r == readings[0] for r in readings)
    assert [t.agent for t in sent] == ["billing", "knowledge", "account"]
    assert orchestrator_router.calls > 0


def test_a_reader_that_fails_leaves_the_tasks_as_they_were(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: AgentTask) -> MessageReading:
        raise RuntimeError("embedding model gone")

    tasks = [task(agent, MESSAGE) for agent in ("billing", "account")]
    use_reader(broken)

    assert with_reading(tasks) == tasks
    assert "each agent reads it" in caplog.text and MESSAGE not in caplog.text
