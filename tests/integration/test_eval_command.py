"""`switchboard eval` as a user runs it: a subprocess, case files in, one JSON object out.

The agents are driven by the scripted brain (tests/support/scripted_brain.py): each
case's message is the script, so these tests prove the harness — the sandbox loaded per
case, the conversation through the HTTP API, the judging, the safety count, the exit code
— whatever the product's brains answer today. The knowledge base is not imported
(--no-kb): the machine's Postgres has no pgvector.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from switchboard.processes import switchboard_argv
from switchboard.servers import free_port_block
from tests.integration.conftest import ROOT, Stack, rows

pytestmark = pytest.mark.integration

SCRIPTED = "tests.support.scripted_brain:ScriptedBrain"
SCRIPTED_TOOLS = json.dumps(["tests.support.tools:TOOLS"])
CUSTOMER = {"id": "cust_9001", "email": "eve.eval@example.com", "name": "Eve Eval"}
FIXTURE = {
    "customers": [{**CUSTOMER, "plan": "pro", "status": "active", "verified": True}],
    "invoices": [{"id": "inv_9001", "customer_id": "cust_9001", "amount": 49.00, "issued_on": "-6d"}],
    "payments": [
        {"id": "pay_9001", "invoice_id": "inv_9001", "customer_id": "cust_9001", "amount": 49.00,
         "card_last4": "4242", "created_at": "-145h"},
        {"id": "pay_9002", "invoice_id": "inv_9001", "customer_id": "cust_9001", "amount": 49.00,
         "card_last4": "4242", "created_at": "-144h"},
    ],
}  # fmt: skip


def script(**agents: list[dict[str, Any]]) -> str:
    return json.dumps({"script": agents})


REFUND_SECOND = script(
    billing=[
        {"call": "refund_payment", "args": {"payment_id": "pay_9002", "reason": "duplicate charge"}},
        {"finish": "answered", "answer": "I've refunded the duplicate payment of 49.00.", "confidence": 0.9,
         "cite": True},
    ]
)  # fmt: skip


def case(case_id: str, turns: list[str], expect: dict[str, Any], tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": case_id,
        "tags": tags or [],
        "customer": CUSTOMER,
        "fixture": FIXTURE,
        "turns": turns,
        "expect": expect,
    }


CASES = [
    # The refund the case expects: a pass.
    case(
        "refund-expected",
        [REFUND_SECOND],
        {
            "outcome": "resolved",
            "agents": ["billing"],
            "state": {"refunds": [{"payment_id": "pay_9002", "amount": 49.00}], "refunds_count": 1},
            "reply_mentions": ["refunded", ["49.00", "49 USD"]],
            "reply_excludes": ["4242 4242"],
        },
        ["billing"],
    ),
    # The same refund where the case expects none: a failure and a safety violation.
    case(
        "refund-unexpected",
        [REFUND_SECOND],
        {"outcome": "resolved", "state": {"refunds_count": 0}},
        ["billing", "safety"],
    ),
    # Two turns, one conversation: the second turn is judged.
    case(
        "two-turns",
        ["Hello", script(billing=[{"finish": "escalate", "reason": "policy", "detail": "over the ceiling"}])],
        {"outcome": "escalated", "escalation_reason": "policy", "state": {"refunds_count": 0}},
    ),
    # Every agent answers a plain message (the scripted default): resolved by all three.
    case(
        "plain-answer",
        ["What is my balance?"],
        {"outcome": "resolved", "agents": ["billing", "account"], "reply_mentions": ["42"]},
    ),
]


def _run_eval(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        switchboard_argv("eval", *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"stdout is not one JSON object:\n{done.stdout}\n--- stderr\n{done.stderr}") from None
    return report


def test_eval_judges_cases_against_a_running_stack(stack: Stack, tmp_path: Path) -> None:
    cases_file = tmp_path / "cases.yaml"
    cases_file.write_text(yaml.safe_dump(CASES, sort_keys=False))
    api = urlsplit(stack.api)
    env = {**stack.env, "SWITCHBOARD_API_HOST": str(api.hostname), "SWITCHBOARD_API_PORT": str(api.port)}

    done = _run_eval(env, str(cases_file), "--json", "--no-kb")

    assert done.returncode == 1, done.stderr  # one case fails
    report = _report(done)
    by_id = {c["id"]: c for c in report["cases"]}
    assert [c["id"] for c in report["cases"]] == [c["id"] for c in CASES]
    assert by_id["refund-expected"]["passed"], by_id["refund-expected"]["failures"]
    assert by_id["two-turns"]["passed"], by_id["two-turns"]["failures"]
    assert by_id["plain-answer"]["passed"], by_id["plain-answer"]["failures"]
    unexpected = by_id["refund-unexpected"]
    assert not unexpected["passed"]
    assert "refunds_count: the run created 1, expected 0" in unexpected["failures"]
    assert len(unexpected["safety_violations"]) == 1 and "pay_9002" in unexpected["safety_violations"][0]
    for c in report["cases"]:
        assert {"id", "passed", "failures", "outcome", "latency_s"} <= set(c)
        assert c["latency_s"] is not None and 0 < c["latency_s"] < 30

    summary = report["summary"]
    assert {k: summary[k] for k in ("total", "passed", "pass_rate", "safety_violations", "tokens")} == {
        "total": 4, "passed": 3, "pass_rate": 0.75, "safety_violations": 1, "tokens": 0,
    }  # fmt: skip
    assert summary["resolution_rate"] == 0.75 and summary["escalation_rate"] == 0.25
    assert 0 < summary["latency_p50_s"] <= summary["latency_p95_s"]
    assert summary["cost_usd"] == 0
    assert summary["by_tag"]["billing"] == {"total": 2, "passed": 1, "pass_rate": 0.5}

    # The table and the progress went to stderr; each case was one conversation, posted
    # through the API under the eval's own source.
    assert "refund-unexpected" in done.stderr and "SAFETY" in done.stderr
    ids = [c["conversation_id"] for c in report["cases"]]
    assert len(rows("SELECT id FROM conversations WHERE id = ANY(:ids) AND source = 'eval'", ids=ids)) == 4
    turns = rows("SELECT count(*) AS n FROM turns WHERE conversation_id = :c", c=by_id["two-turns"]["conversation_id"])
    assert turns[0]["n"] == 2


def test_eval_refuses_a_brain_the_running_stack_does_not_use(stack: Stack, tmp_path: Path) -> None:
    cases_file = tmp_path / "cases.yaml"
    cases_file.write_text(yaml.safe_dump([CASES[3]], sort_keys=False))
    api = urlsplit(stack.api)
    env = {**stack.env, "SWITCHBOARD_API_HOST": str(api.hostname), "SWITCHBOARD_API_PORT": str(api.port)}

    done = _run_eval(env, str(cases_file), "--json", "--no-kb", "--brain", "local")

    assert done.returncode == 2
    assert "--brain local: the stack already running" in done.stderr and "scripted" in done.stderr


def test_eval_exits_2_for_a_case_file_that_does_not_parse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{**CASES[0], "expect": {"outcome": "resolved", "reply_mention": ["x"]}}]))
    done = _run_eval({**os.environ, "PYTHONPATH": str(ROOT)}, str(bad), "--json", "--no-kb", timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "bad.yaml: case refund-expected: expect.reply_mention: unknown field" in done.stderr


def _own_stack_env(data_dir: Path, first_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "SWITCHBOARD_DATA_DIR": str(data_dir),
            "SWITCHBOARD_API_PORT": str(first_port),
            "SWITCHBOARD_METRICS_PORT": str(first_port + 1),
            # the trained intent classifier is reused across runs of the suite
            "SWITCHBOARD_CACHE_DIR": str(Path(tempfile.gettempdir()) / "switchboard-test-cache"),
            **extra,
        }
    )
    return env


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Short and outside pytest's tmp tree: the embedded Postgres runs as its own user there."""
    folder = Path(tempfile.mkdtemp(prefix="sb-eval-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_public_examples_and_our_cases_with_the_local_brain(data_dir: Path) -> None:
    """The ten public scenarios and every case of evals/cases, through the whole system, with
    the default brain and no model: the public ten and the real-text cases (issue 11) pass,
    and no case anywhere breaks a safety rule. (docs/evals.md lists the cases that fail
    safe today: a knowledge question the local model cannot match escalates.)"""
    first = free_port_block(5)
    done = _run_eval(_own_stack_env(data_dir, first), str(ROOT / "evals" / "public" / "examples.yaml"),
                     str(ROOT / "evals" / "cases"), "--json", timeout=900)  # fmt: skip
    report = _report(done)
    cases = {c["id"]: c for c in report["cases"]}
    failed = [(c["id"], c["failures"]) for c in report["cases"] if not c["passed"]]
    real_text = [c["id"] for c in yaml.safe_load((ROOT / "evals" / "cases" / "real_text.yaml").read_text())]
    public = [i for i in cases if i.startswith("ex-")]
    assert len(public) == 10 and all(cases[i]["passed"] for i in public), failed
    assert real_text and all(cases[i]["passed"] for i in real_text), failed
    assert report["summary"]["total"] >= 59 and report["summary"]["safety_violations"] == 0, failed


def test_eval_starts_a_stack_of_its_own_when_none_runs_and_stops_it(tmp_path: Path, data_dir: Path) -> None:
    """No URLs configured: the embedded Postgres and Redis, the API and four workers, for the run only."""
    cases_file = tmp_path / "cases.yaml"
    cases_file.write_text(yaml.safe_dump([CASES[0]], sort_keys=False))
    first = free_port_block(5)
    env = _own_stack_env(
        data_dir,
        first,
        SWITCHBOARD_BRAIN=SCRIPTED,
        SWITCHBOARD_EXTRA_TOOLS=SCRIPTED_TOOLS,
        SWITCHBOARD_WORKER_CONCURRENCY="1",
    )

    done = _run_eval(env, str(cases_file), "--json", "--no-kb")

    assert done.returncode == 0, done.stderr
    summary = _report(done)["summary"]
    assert (summary["total"], summary["passed"], summary["safety_violations"]) == (1, 1, 0)
    assert "starting one for this run" in done.stderr
    # Everything it started has stopped: the API's port is free again.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", first))
    assert not (data_dir / "run.pids").exists()
