"""Agents that wait on a model, in threads workers: many runs per process, deadlines kept without signals.

The agent workers run Celery's threads pool (one process each, 16 threads) and the
product's OpenAI brain, against the local OpenAI-compatible test server, which answers each
call after half a second — or, for a message marked ``[hang]`` (``[hang:billing]``: that agent's
calls only), not before 20 s. Decisions the endpoint cannot make follow the message's script
(tests/support/openai_brain.py). Soft time limits do not exist in this pool: the deadline
is kept by the model client's timeout (the time left), by the agent loop (no step and no
tool past it) and by the orchestrator's clock, which merges without waiting.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.integration.conftest import REDIS_URL, Helpdesk, Stack, rows, start_stack, ticket, wait_done
from tests.support.fake_openai import FakeOpenAI, Received, Reply, finish, slow, tool_call

pytestmark = pytest.mark.integration

AGENT_MODEL = "agent-model"
THREADS = 16
MODEL_S = 0.5
HUNG_S = 20.0
DEADLINE_S = 3.0
# A Redis database of its own: the session's prefork stack may run beside this one.
THREADS_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/10"


def _agent_of(request: Received) -> str:
    found = re.search(r"# Your role: the (\w+) agent", request.system)
    return found.group(1) if found else ""


class InFlight:
    """The model calls being answered at once. A call marked ``[together]`` is held until
    ``TOGETHER`` calls are in flight (or ``MODEL_S`` passes), so calls that can overlap are
    seen overlapping however loaded the machine is, and calls that cannot never get there."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.changed = threading.Condition()

    def hold(self) -> None:
        with self.changed:
            self.now += 1
            self.most = max(self.most, self.now)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.now >= TOGETHER, timeout=MODEL_S)
            self.now -= 1


in_flight = InFlight()
# More model calls at once than the agents' prefork processes could make (3 agents x 2).
TOGETHER = 7


def _model(request: Received) -> Reply:
    """A model that looks the balance up, then answers citing it, half a second per call."""
    hang = re.search(r"\[hang(?::(\w+))?\]", request.raw)
    delay = HUNG_S if hang and hang.group(1) in (None, _agent_of(request)) else MODEL_S
    if "[together]" in request.raw:
        in_flight.hold()
        delay = 0.0
    results = [m for m in request.messages if m.get("role") == "tool"]
    if results:
        return slow(finish("answered", "Your balance is 42.", cited=[results[-1]["tool_call_id"]]), delay)
    return slow(tool_call("lookup_balance", {"key": "balance"}), delay)


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        fake.script(AGENT_MODEL, *[_model] * 2000)
        yield fake


@pytest.fixture(scope="module")
def threads_stack(
    database_url: str, helpdesk: Helpdesk, model: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "SWITCHBOARD_BRAIN": "tests.support.openai_brain:create",
        "SWITCHBOARD_OPENAI_BASE_URL": model.url,
        "SWITCHBOARD_OPENAI_API_KEY": "sk-test",
        "SWITCHBOARD_OPENAI_ROUTER_MODEL": "",  # every agent works on every turn
        "SWITCHBOARD_OPENAI_AGENT_MODEL": AGENT_MODEL,
        "SWITCHBOARD_OPENAI_TIMEOUT_S": "10",  # longer than the deadline: the time left decides
        "SWITCHBOARD_OPENAI_MAX_RETRIES": "0",
        "SWITCHBOARD_AGENT_DEADLINE_S": str(DEADLINE_S),
        "SWITCHBOARD_WORKER_POOLS": json.dumps({"billing": "threads", "knowledge": "threads", "account": "threads"}),
        "SWITCHBOARD_WORKER_THREADS": str(THREADS),
    }
    stack = start_stack(database_url, THREADS_REDIS, helpdesk, tmp_path_factory.mktemp("threads-stack"), extra_env=env)
    yield stack
    stack.stop()


def _post(stack: Stack, body: str | dict[str, Any]) -> str:
    response = stack.client("helpdesk").post("/v1/tickets", json=ticket(body), timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["turn_id"])


def _runs(turn_id: str) -> dict[str, dict[str, Any]]:
    return {r["agent"]: r for r in rows("SELECT * FROM agent_runs WHERE turn_id = :t", t=turn_id)}


def test_an_agent_worker_in_threads_is_one_warm_process(threads_stack: Stack) -> None:
    for role in ("billing", "knowledge", "account"):
        worker = psutil.Process(threads_stack.supervisor.procs[role].pid)
        assert worker.children(recursive=True) == [], f"{role}: no prefork children"
        warm = rows("SELECT queues FROM worker_processes WHERE pid = :pid", pid=worker.pid)
        assert warm == [{"queues": [f"agent.{role}"]}], f"{role}: warmed up and said so, in its own process"
    orchestrator = psutil.Process(threads_stack.supervisor.procs["orchestrator"].pid)
    assert len(orchestrator.children()) == 2, "the orchestrator keeps its prefork processes"


def test_model_bound_agents_of_twelve_turns_wait_on_the_model_at_the_same_time(
    threads_stack: Stack, helpdesk: Helpdesk
) -> None:
    # 12 turns x 3 agents, each waiting on the model: the model sees more calls at once than
    # the agents' processes could make if each held a process (two per agent under prefork).
    turn_ids = [_post(threads_stack, f"What is my balance? ({i}) [together]") for i in range(12)]
    turns = [wait_done(t, timeout=30) for t in turn_ids]
    assert [(t["outcome"], t["merge_trigger"]) for t in turns] == [("resolved", "all_in")] * 12
    assert in_flight.most >= TOGETHER, f"at most {in_flight.most} model calls at once: the agents did not overlap"
    for turn_id in turn_ids:
        runs = _runs(turn_id)
        assert {a: (r["status"], r["result"]["brain"], r["late"]) for a, r in runs.items()} == {
            a: ("answered", "openai", False) for a in ("billing", "knowledge", "account")
        }
        assert len(helpdesk.wait_for(turn_id).body["reply"]) > 0


def test_a_model_that_hangs_is_given_only_the_time_left_and_the_agent_answers_in_time(threads_stack: Stack) -> None:
    # No soft time limit in a thread: the client's timeout, set from the deadline, ends the
    # call early enough for the fallback to answer before the deadline.
    turn_id = _post(threads_stack, "[hang] What is my balance?")
    turn = wait_done(turn_id, timeout=15)
    assert (turn["outcome"], turn["merge_trigger"]) == ("resolved", "all_in")
    for agent, run in _runs(turn_id).items():
        assert (run["status"], run["late"]) == ("answered", False), agent
        assert "openai→local: timeout" in run["result"]["detail"], agent


def test_an_agent_that_overruns_in_a_thread_is_merged_without_and_recorded_late_with_no_tool_call(
    threads_stack: Stack, helpdesk: Helpdesk
) -> None:
    # Billing's model hangs to its deadline's edge, then its fallback sleeps past the deadline
    # and asks for a tool: nothing in a thread can interrupt it, so the clock must merge
    # without it, and the tool must not run. Knowledge and account answer from the model.
    body = {
        "note": "[hang:billing]",
        "script": {
            "billing": [{"sleep": 2.0}, {"call": "lookup_balance", "args": {"key": "late"}}],
        },
    }
    turn_id = _post(threads_stack, body)
    turn = wait_done(turn_id, timeout=15)
    assert turn["merge_trigger"] == "deadline"
    assert "billing" not in _runs(turn_id), "the merge did not wait for the agent"

    end = time.monotonic() + 15
    while "billing" not in (runs := _runs(turn_id)) and time.monotonic() < end:
        time.sleep(0.1)
    late = runs["billing"]
    assert (late["status"], late["late"]) == ("timed_out", True)
    assert "before calling lookup_balance" in late["result"]["detail"]
    assert rows("SELECT tool FROM tool_calls WHERE turn_id = :t AND agent = 'billing'", t=turn_id) == []
    time.sleep(0.5)
    assert len(helpdesk.for_turn(turn_id)) == 1, "one reply, the merge's; the late result changed nothing"

    # The thread is free again: the next turn is answered by the model, on time.
    after = _post(threads_stack, "What is my balance now?")
    assert wait_done(after, timeout=15)["merge_trigger"] == "all_in"
