"""``switchboard sandbox``: loading fixture and scenario files into the real Postgres store.

The command runs in a subprocess, as an operator would run it, against the test database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from shared.db import session_scope
from shared.sandbox.fixtures import load_fixture, reset_sandbox, snapshot, state_changes
from shared.sandbox.loader import DEMO, load_demo_into
from tests.integration.conftest import PG_ADMIN, ROOT, rows

pytestmark = pytest.mark.integration


def _command() -> list[str]:
    """``switchboard sandbox``, with the same interpreter."""
    return [sys.executable, "-m", "switchboard.cli", "sandbox"]


def sandbox_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*_command(), *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(autouse=True)
def empty_sandbox(database_url: str) -> Iterator[None]:
    with session_scope() as session:
        reset_sandbox(session)
    yield


FIXTURE: dict[str, Any] = {
    "customers": [{"id": "cust_1", "email": "ana@example.com", "name": "Ana", "plan": "pro"}],
    "invoices": [{"id": "inv_1", "customer_id": "cust_1", "amount": 49.00, "issued_on": "-6d"}],
    "payments": [
        {"id": "pay_1", "invoice_id": "inv_1", "customer_id": "cust_1", "amount": 49.00, "card_last4": "4242",
         "status": "succeeded", "created_at": "-145h"},
    ],
    "refunds": [{"id": "re_1", "payment_id": "pay_1", "created_at": "-2h"}],
    "orders": [{"id": "ord_1", "customer_id": "cust_1", "items": [{"sku": "HUB-1", "name": "Desk Hub", "price": 89}],
                "status": "shipped", "placed_on": "2026-11-02"}],
}  # fmt: skip


def test_loading_a_fixture_file_writes_its_records_with_dates_relative_to_now(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "fixture.yaml"
    path.write_text(yaml.safe_dump(FIXTURE))
    done = sandbox_cli(database_url, "load", str(path))
    assert done.returncode == 0, done.stderr
    assert "Loaded 1 customers, 1 invoices, 1 payments, 1 refunds, 1 orders" in done.stdout
    payment = rows("SELECT created_at FROM sandbox_payments WHERE id = 'pay_1'")[0]
    assert abs(datetime.now(UTC) - timedelta(hours=145) - payment["created_at"]) < timedelta(minutes=1)
    # A refund takes its customer, amount and currency from its payment; an order its total.
    assert rows("SELECT customer_id, amount, currency FROM sandbox_refunds") == [
        {"customer_id": "cust_1", "amount": 49, "currency": "USD"}
    ]
    assert rows("SELECT total, placed_on::text AS placed_on FROM sandbox_orders") == [
        {"total": 89, "placed_on": "2026-11-02"}
    ]
    again = sandbox_cli(database_url, "load", str(path))
    assert again.returncode == 0
    assert rows("SELECT count(*) AS n FROM sandbox_payments") == [{"n": 1}], "loading twice changes nothing"


def test_a_scenario_case_loads_its_customer_and_policy(database_url: str, tmp_path: Path) -> None:
    cases = [
        {
            "id": "case-a",
            "customer": {"id": "cust_a", "email": "a@example.com", "name": "Ann"},
            "policy": {"max_auto_refund": 20.00},
            "fixture": {"payments": [{"id": "pay_a", "customer_id": "cust_a", "amount": 49, "created_at": "-1d"}]},
            "turns": ["refund please"],
        },
        {"id": "case-b", "customer": {"id": "cust_b"}, "fixture": {"customers": [{"id": "cust_b"}]}, "turns": ["hi"]},
    ]
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(cases))
    done = sandbox_cli(database_url, "load", str(path), "--case", "case-a", "--reset")
    assert done.returncode == 0, done.stderr
    assert rows("SELECT id, email, plan FROM sandbox_customers") == [
        {"id": "cust_a", "email": "a@example.com", "plan": "free"}
    ]
    assert rows("SELECT key, value FROM sandbox_policy") == [{"key": "max_auto_refund", "value": "20.00"}]
    missing = sandbox_cli(database_url, "load", str(path), "--case", "case-z")
    assert missing.returncode == 1 and "no case 'case-z' in the file; its cases are: case-a, case-b" in missing.stderr


def test_a_bad_fixture_is_refused_with_the_record_and_field_and_nothing_is_written(
    database_url: str, tmp_path: Path
) -> None:
    bad = {**FIXTURE, "orders": [{**FIXTURE["orders"][0], "placed_on": "yesterday-ish"}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = sandbox_cli(database_url, "load", str(path))
    assert done.returncode == 1
    assert f"{path}: orders[0] (ord_1): placed_on: 'yesterday-ish' is not a date" in done.stderr
    assert "Traceback" not in done.stderr
    assert rows("SELECT count(*) AS n FROM sandbox_customers") == [{"n": 0}]


def test_the_demo_covers_every_tool_and_reset_empties_the_store(database_url: str) -> None:
    done = sandbox_cli(database_url, "load", "--demo")
    assert done.returncode == 0, done.stderr
    demo = yaml.safe_load(DEMO.read_text())
    counts = rows(
        "SELECT (SELECT count(*) FROM sandbox_customers) AS customers, (SELECT count(*) FROM sandbox_orders) AS orders,"
        " (SELECT count(*) FROM sandbox_subscriptions) AS subscriptions, (SELECT count(*) FROM sandbox_refunds) AS r"
    )[0]
    assert counts == {
        "customers": len(demo["customers"]),
        "orders": len(demo["orders"]),
        "subscriptions": len(demo["subscriptions"]),
        "r": 1,
    }
    shown = sandbox_cli(database_url, "show", "--customer", "cust_1005")
    assert json.loads(shown.stdout)["refunds"][0]["payment_id"] == "pay_3501"
    assert sandbox_cli(database_url, "reset").returncode == 0
    assert rows("SELECT count(*) AS n FROM sandbox_customers") == [{"n": 0}]


def test_the_run_command_hook_loads_the_demo_idempotently(database_url: str) -> None:
    first = load_demo_into(database_url)
    second = load_demo_into(database_url)
    assert first == second and first["customers"] == len(yaml.safe_load(DEMO.read_text())["customers"]) == 10
    assert rows("SELECT count(*) AS n FROM sandbox_payments") == [{"n": first["payments"]}]


def test_a_database_without_the_sandbox_tables_says_to_migrate(tmp_path: Path) -> None:
    name = f"switchboard_unmigrated_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        done = sandbox_cli(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", "load", "--demo")
        assert done.returncode == 2
        assert "run `switchboard migrate` first" in done.stderr
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_snapshot_is_what_expect_state_compares_and_shows_the_runs_changes() -> None:
    with session_scope() as session:
        load_fixture(session, FIXTURE, customer=None, now=datetime.now(UTC))
        before = snapshot(session)
    assert before["refunds"][0] | {"created_at": None} == {
        "id": "re_1",
        "payment_id": "pay_1",
        "customer_id": "cust_1",
        "amount": 49.0,  # a float, so `amount: 49.00` in a case compares equal
        "currency": "USD",
        "status": "succeeded",
        "created_at": None,
    }
    assert (before["refunds_count"], before["password_resets_count"], before["customers_count"]) == (1, 0, 1)
    with session_scope() as session:
        load_fixture(
            session,
            {"customers": [{"id": "cust_1", "email": "new@example.com", "plan": "pro"}],
             "password_resets": [{"customer_id": "cust_1", "sent_to": "new@example.com"}]},
            customer=None,
            now=datetime.now(UTC),
        )  # fmt: skip
        after = snapshot(session, ["cust_1"])
    changes = state_changes(before, after)
    assert [(c["section"], c["change"]) for c in changes] == [("password_resets", "created"), ("customers", "updated")]
    assert changes[1]["fields"] == {"email": ["ana@example.com", "new@example.com"]}
