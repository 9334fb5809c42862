"""Nothing accepted is lost, and nothing happens twice, when processes die."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    AMQP_URL,
    ANSWER,
    Helpdesk,
    Stack,
    rows,
    script,
    start_stack,
    ticket,
    wait_done,
)

pytestmark = pytest.mark.integration


def wait_state(turn_id: str, state: str, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if rows("SELECT state FROM turns WHERE id = :t", t=turn_id)[0]["state"] == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"turn {turn_id} never reached {state}")


def merged_once(turn_id: str) -> None:
    merges = rows("SELECT data FROM events WHERE turn_id = :t AND kind = 'turn.merged'", t=turn_id)
    assert len(merges) == 1, merges


def test_agent_worker_killed_mid_turn_still_finishes_once(stack: Stack, helpdesk: Helpdesk) -> None:
    accepted = stack.http.post("/v1/tickets", json=ticket(script(billing=[{"sleep": 30}], knowledge=ANSWER))).json()
    wait_state(accepted["turn_id"], "running")
    time.sleep(0.5)  # let the billing agent start hanging
    stack.supervisor.kill("billing")
    try:
        turn = wait_done(accepted["turn_id"], timeout=15)
        assert turn["outcome"] == "resolved"
        merged_once(accepted["turn_id"])
        helpdesk.wait_for(accepted["turn_id"])
        assert len(helpdesk.for_turn(accepted["turn_id"])) == 1
    finally:
        stack.restart("billing")


def test_turn_of_an_orchestrator_killed_after_fan_out_ends_once_and_is_delivered_once(
    stack: Stack, helpdesk: Helpdesk
) -> None:
    accepted = stack.http.post("/v1/tickets", json=ticket(script(billing=[{"sleep": 30}], knowledge=ANSWER))).json()
    wait_state(accepted["turn_id"], "running")
    stack.supervisor.kill("orchestrator")  # its deadline clock dies with it
    stack.restart("orchestrator")
    turn = wait_done(accepted["turn_id"], timeout=30)
    # Recoveries race and any may win: the sweeper of the new orchestrator, the cut-off
    # billing agent whose result completes the set, or, when the kill came before the
    # agents were published, the new orchestrator that published them again and armed its
    # own clock. The dead clock never merges. (Each on its own: test_turn_transitions.py.)
    republished = rows("SELECT id FROM events WHERE turn_id = :t AND kind = 'turn.republished'", t=accepted["turn_id"])
    recoveries = ("sweeper", "all_in", "deadline") if republished else ("sweeper", "all_in")
    assert turn["merge_trigger"] in recoveries and turn["outcome"] == "resolved"
    merged_once(accepted["turn_id"])
    helpdesk.wait_for(accepted["turn_id"], timeout=20)
    assert len(helpdesk.for_turn(accepted["turn_id"])) == 1


def test_turn_stored_while_no_orchestrator_runs_is_picked_up_later(stack: Stack) -> None:
    stack.supervisor.kill("orchestrator")
    try:
        accepted = stack.http.post("/v1/tickets", json=ticket(script(knowledge=ANSWER))).json()
        assert accepted["created"] is True
        assert rows("SELECT state FROM turns WHERE id = :t", t=accepted["turn_id"]) == [{"state": "queued"}]
    finally:
        stack.restart("orchestrator")
    assert wait_done(accepted["turn_id"], timeout=30)["outcome"] == "resolved"


@pytest.fixture
def rabbit_stack(database_url: str, helpdesk: Helpdesk, tmp_path: Path, stack: Stack) -> Iterator[Stack]:
    # The Redis stack is stopped for the duration so the two never share a database sweep.
    s = start_stack(database_url, AMQP_URL, helpdesk, tmp_path)
    yield s
    s.stop()


def test_rabbitmq_broker_runs_the_same_turn_by_url_alone(rabbit_stack: Stack, helpdesk: Helpdesk) -> None:
    accepted = rabbit_stack.http.post(
        "/v1/tickets", json=ticket(script(billing=[{"sleep": 30}], knowledge=ANSWER, account=ANSWER))
    ).json()
    turn = wait_done(accepted["turn_id"], timeout=20)
    assert (turn["outcome"], turn["merge_trigger"]) == ("resolved", "deadline")
    assert helpdesk.wait_for(accepted["turn_id"]).signature_ok
    merged_once(accepted["turn_id"])


def test_an_agent_worker_that_is_down_delays_the_answer_and_does_not_escalate_it(
    stack: Stack, helpdesk: Helpdesk
) -> None:
    # The billing worker is down for twice its deadline when the ticket comes: the turn
    # waits for it (its deadline runs from its start, the turn has a 30 s budget).
    stack.supervisor.kill("billing")
    try:
        accepted = stack.http.post("/v1/tickets", json=ticket(script(billing=ANSWER))).json()
        wait_state(accepted["turn_id"], "running")
        time.sleep(6)
        assert rows("SELECT state FROM turns WHERE id = :t", t=accepted["turn_id"]) == [{"state": "running"}]
    finally:
        stack.restart("billing")
    turn = wait_done(accepted["turn_id"], timeout=30)
    assert (turn["outcome"], turn["escalation_reason"]) == ("resolved", None)
    assert turn["reply"] == "Your balance is 42."
    runs = rows("SELECT agent, status FROM agent_runs WHERE turn_id = :t AND agent = 'billing'", t=accepted["turn_id"])
    assert runs == [{"agent": "billing", "status": "answered"}]
    merged_once(accepted["turn_id"])
    helpdesk.wait_for(accepted["turn_id"])
    assert len(helpdesk.for_turn(accepted["turn_id"])) == 1


def test_agent_tasks_the_broker_lost_are_published_again_while_the_turn_has_budget(
    stack: Stack, helpdesk: Helpdesk
) -> None:
    import redis

    from tests.integration.conftest import REDIS_URL

    stack.supervisor.kill("billing")
    try:
        accepted = stack.http.post("/v1/tickets", json=ticket(script(billing=ANSWER))).json()
        wait_state(accepted["turn_id"], "running")
        time.sleep(0.5)  # the billing task is on its queue, with no worker to take it
        broker = redis.Redis.from_url(REDIS_URL)
        lost = [key for key in broker.keys("agent.billing*") if b"unacked" not in key]
        assert lost, "the billing task was not on the broker"
        broker.delete(*lost)  # as a Redis restarted without persistence loses it
    finally:
        stack.restart("billing")
    turn = wait_done(accepted["turn_id"], timeout=40)
    assert (turn["outcome"], turn["reply"]) == ("resolved", "Your balance is 42.")
    events = rows("SELECT data FROM events WHERE turn_id = :t AND kind = 'turn.republished'", t=accepted["turn_id"])
    assert events and all(e["data"] == {"agents": ["billing"], "lost": True} for e in events)
    # However many copies were published, the agent ran once.
    assert len(rows("SELECT id FROM agent_runs WHERE turn_id = :t AND agent = 'billing'", t=accepted["turn_id"])) == 1
    assert (
        len(rows("SELECT turn_id FROM agent_starts WHERE turn_id = :t AND agent = 'billing'", t=accepted["turn_id"]))
        == 1
    )
    merged_once(accepted["turn_id"])
