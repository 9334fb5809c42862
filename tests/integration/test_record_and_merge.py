"""The last agent's result and the turn's merge are one transaction, on the real Postgres:
the merge sees every other result, one caller merges, and a merge that fails leaves nothing
half-done: the result is recorded on its own and the turn merged again."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, update

from orchestrator import fan_in
from orchestrator.fan_in import finish_agent_run, merge_when_due
from orchestrator.ingest import accept_ticket
from orchestrator.turns import Merged, claim_start, mark_published, start_turn
from shared import db
from shared.contracts import MergeTrigger, Outcome, TicketIn
from shared.models import Turn
from shared.settings import Settings
from tests.integration.conftest import rows
from tests.integration.test_turn_transitions import _answer

pytestmark = pytest.mark.integration

AGENTS = ("billing", "knowledge", "account")


@pytest.fixture(autouse=True)
def database(database_url: str) -> None:
    db.configure(Settings(database_url=database_url))


def _turn() -> str:
    with db.session_scope() as s:
        ticket = TicketIn.model_validate(
            {"source": "merge-test", "external_id": uuid.uuid4().hex, "customer": {"id": "c"}, "body": "hello"}
        )
        accepted = accept_ticket(s, ticket, via="test")
        assert start_turn(s, accepted.turn_id, Settings(agents=list(AGENTS))) is not None
        mark_published(s, accepted.turn_id)
    return accepted.turn_id


def _state(turn_id: str) -> dict[str, Any]:
    [turn] = rows("SELECT state, results_in, merge_trigger FROM turns WHERE id = :t", t=turn_id)
    return turn


def test_the_last_result_merges_the_turn_in_its_own_transaction() -> None:
    turn_id = _turn()
    assert finish_agent_run(_answer(turn_id, "billing"), time.time()) is None
    assert finish_agent_run(_answer(turn_id, "knowledge"), time.time()) is None
    assert _state(turn_id)["state"] == "running"

    merged = finish_agent_run(_answer(turn_id, "account"), time.time())

    assert isinstance(merged, Merged) and merged.decision.outcome is Outcome.resolved
    assert set(merged.decision.answered_by) == set(AGENTS)  # it saw the two results before it
    assert _state(turn_id) == {"state": "done", "results_in": 3, "merge_trigger": "all_in"}
    assert len(rows("SELECT 1 FROM agent_runs WHERE turn_id = :t", t=turn_id)) == 3
    # a redelivered last result changes nothing and merges nothing
    assert finish_agent_run(_answer(turn_id, "account"), time.time()) is None
    assert len(rows("SELECT 1 FROM events WHERE turn_id = :t AND kind = 'turn.merged'", t=turn_id)) == 1


def test_two_last_results_at_once_merge_once_with_every_result() -> None:
    for _ in range(5):
        turn_id = _turn()
        assert finish_agent_run(_answer(turn_id, "billing"), time.time()) is None
        barrier = threading.Barrier(2)
        merges: list[Merged | None] = []

        def finish(
            agent: str, tid: str = turn_id, gate: threading.Barrier = barrier, out: list[Merged | None] = merges
        ) -> None:
            gate.wait()
            out.append(finish_agent_run(_answer(tid, agent), time.time()))

        threads = [threading.Thread(target=finish, args=(agent,)) for agent in ("knowledge", "account")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        done = [m for m in merges if m is not None]
        assert len(merges) == 2 and len(done) == 1  # whoever came last merged, once
        assert set(done[0].decision.answered_by) == set(AGENTS)
        assert _state(turn_id) == {"state": "done", "results_in": 3, "merge_trigger": "all_in"}


def test_a_merge_that_fails_is_undone_and_the_result_recorded_and_merged_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turn_id = _turn()
    for agent in ("billing", "knowledge"):
        finish_agent_run(_answer(turn_id, agent), time.time())
    real_merge = fan_in.merge_turn
    calls: list[str] = []

    def merge_once_broken(*args: Any, **kwargs: Any) -> Merged | None:
        calls.append("merge")
        merged = real_merge(*args, **kwargs)  # every statement of the merge, then a bug
        if len(calls) == 1:
            raise RuntimeError("a bug in the merge")
        return merged

    monkeypatch.setattr(fan_in, "merge_turn", merge_once_broken)
    merged = finish_agent_run(_answer(turn_id, "account"), time.time())

    assert calls == ["merge", "merge"]
    assert isinstance(merged, Merged) and set(merged.decision.answered_by) == set(AGENTS)
    assert rows("SELECT agent FROM agent_runs WHERE turn_id = :t AND agent = 'account'", t=turn_id) == [
        {"agent": "account"}
    ]
    assert rows("SELECT tool FROM tool_calls WHERE turn_id = :t AND agent = 'account'", t=turn_id) == [
        {"tool": "lookup"}
    ]
    assert _state(turn_id)["state"] == "done"
    assert len(rows("SELECT 1 FROM events WHERE turn_id = :t AND kind = 'turn.merged'", t=turn_id)) == 1


def test_the_clock_at_the_deadline_of_a_merged_turn_reads_one_row_and_does_nothing() -> None:
    turn_id = _turn()
    for agent in AGENTS:
        finish_agent_run(_answer(turn_id, agent), time.time())
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.engine(), "before_cursor_execute", count)
    try:
        assert merge_when_due(turn_id, MergeTrigger.deadline) is None
    finally:
        event.remove(db.engine(), "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")
    assert _state(turn_id) == {"state": "done", "results_in": 3, "merge_trigger": "all_in"}


def test_the_clock_still_merges_a_running_turn_past_its_deadline() -> None:
    turn_id = _turn()
    finish_agent_run(_answer(turn_id, "billing"), time.time())
    with db.session_scope() as s:  # every agent started, and is past its own deadline
        for agent in ("knowledge", "account"):
            claim_start(s, turn_id, agent, 0.0)
        s.execute(update(Turn).where(Turn.id == turn_id).values(deadline_at=func.now() - timedelta(seconds=1)))
    merged = merge_when_due(turn_id, MergeTrigger.deadline)
    assert isinstance(merged, Merged) and merged.decision.answered_by == ("billing",)
    assert _state(turn_id)["merge_trigger"] == "deadline"
