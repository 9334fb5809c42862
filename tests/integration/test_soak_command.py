"""`switchboard soak` as the release check runs it, short: a subprocess on servers it starts
and restarts itself (an embedded Postgres, a Redis without persistence), every fault kind,
one JSON object out. What must hold under faults holds: nothing lost, no refund made twice
or on the wrong payment, no refund the customer or a human was not told of, no reply
delivered twice, no server error but 503, every turn final once the faults are over."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from switchboard.processes import switchboard_argv
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def test_a_short_soak_with_every_fault_kind_keeps_every_ticket_and_every_refund_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    done = subprocess.run(
        switchboard_argv("soak", "--tickets", "60", "--rate", "5", "--fault-every", "2", "--json"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"stdout is not one JSON object:\n{done.stdout}\n--- stderr\n{done.stderr}") from None
    context = json.dumps(report, indent=1) + "\n--- stderr\n" + done.stderr[-3000:]
    # Each fault kind happened at least once while tickets came in.
    assert set(report["faults"]) == {"kill_worker", "kill_api", "restart_broker", "restart_database"}, context
    assert report["tickets"] == 60 and report["unaccepted"] == 0, context
    assert report["lost"] == 0, context
    assert (report["actions_twice"], report["wrong_actions"], report["hidden_actions"]) == (0, 0, 0), context
    assert report["replies_delivered_twice"] == 0, context
    assert report["http_5xx"] == 0, context
    assert report["final_after_last_fault_s"] is not None, context
    # Every ticket ended with its refund made (once: above), or with a human: a turn whose
    # agent was cut off (timeout), or whose sandbox store did not answer while Postgres
    # restarted (tool_failure, nothing moved: no hidden action above), or a question asked.
    with_a_human = sum(n for outcome, n in report["outcomes"].items() if outcome.startswith("escalated/"))
    assert report["refunds"] + with_a_human + report["outcomes"].get("clarify", 0) >= 60, context
    assert done.returncode == 0, context
