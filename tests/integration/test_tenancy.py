"""Customer identity is (tenant, customer.id): a helpdesk of one company names a customer id of
another and reaches nothing, end to end through the running stack."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis

from shared import db
from shared.celery_app import create_app
from shared.sandbox.fixtures import load_fixture
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import Settings
from tests.integration.conftest import REDIS_URL, Stack, rows, script, ticket, wait_done

pytestmark = pytest.mark.integration


def _customer_with_a_payment() -> tuple[str, str]:
    """A customer of the sandbox's company (tenant "demo") with one refundable payment."""
    customer, payment = f"cust_{uuid.uuid4().hex[:8]}", f"pay_{uuid.uuid4().hex[:8]}"
    with db.session_scope() as session:
        load_fixture(
            session,
            {
                "customers": [{"id": customer, "email": f"{customer}@example.com", "name": "Rae"}],
                "payments": [
                    {"id": payment, "customer_id": customer, "amount": 30.00, "currency": "USD",
                     "card_last4": "4242", "status": "succeeded", "created_at": "-1d"},
                ],
            },
            customer=None,
            now=datetime.now(UTC),
        )  # fmt: skip
    return customer, payment


def _refund_ticket(source: str, customer: str, payment: str) -> dict[str, object]:
    steps = [
        {"call": "refund_payment", "args": {"payment_id": payment}},
        {"finish": "answered", "answer": "Refunded.", "confidence": 0.9, "cite": True},
    ]
    return ticket(
        script(billing=steps, knowledge=[{"finish": "not_applicable"}], account=[{"finish": "not_applicable"}]),
        source=source,
        customer={"id": customer, "email": f"{customer}@example.com", "name": "Rae"},
    )


def _refunds(payment: str) -> int:
    return int(rows("SELECT count(*) AS n FROM sandbox_refunds WHERE payment_id = :p", p=payment)[0]["n"])


def _wait_running(turn: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while rows("SELECT state FROM turns WHERE id = :t", t=turn) != [{"state": "running"}]:
        assert time.monotonic() < end, f"turn {turn} did not start within {timeout}s"
        time.sleep(0.02)


def test_a_helpdesk_of_another_company_cannot_act_for_a_customer_it_names(stack: Stack) -> None:
    customer, payment = _customer_with_a_payment()
    # "globex" is configured as a company of its own: the customer id it names is not its customer.
    response = stack.client("globex").post("/v1/tickets", json=_refund_ticket("globex", customer, payment))
    assert response.status_code == 202, response.text
    turn = response.json()["turn_id"]
    wait_done(turn)
    calls = rows("SELECT tool, error FROM tool_calls WHERE turn_id = :t", t=turn)
    assert calls == [
        {
            "tool": "refund_payment",
            "error": f"No payment {payment} for this customer. Call list_payments to see the customer's payments.",
        }
    ]
    assert _refunds(payment) == 0

    # The same request through a source of the customer's own company is served.
    response = stack.client("helpdesk").post("/v1/tickets", json=_refund_ticket("helpdesk", customer, payment))
    assert response.status_code == 202, response.text
    wait_done(response.json()["turn_id"])
    assert _refunds(payment) == 1


def test_a_forged_agent_task_for_a_running_turn_acts_for_the_turns_own_tenant(stack: Stack) -> None:
    """A task put on the broker for a running globex turn, claiming the sandbox's tenant and
    naming its customer, is admitted with the turn's own tenant and customer: nothing moves."""
    customer, payment = _customer_with_a_payment()
    done = [{"finish": "not_applicable"}]
    stack.supervisor.kill("billing")  # the forged task must be the first copy a billing worker takes
    try:
        accepted = (
            stack.client("globex")
            .post(
                "/v1/tickets",
                json=ticket(
                    script(billing=done, knowledge=done, account=done), source="globex", customer={"id": customer}
                ),
            )
            .json()
        )
        _wait_running(accepted["turn_id"])  # a task for a turn not started yet is refused outright
        broker_redis = redis.Redis.from_url(REDIS_URL)
        queued = [key for key in broker_redis.keys("agent.billing*") if b"unacked" not in key]
        broker_redis.delete(*queued)  # the turn's own billing task: gone, the forged one takes its place
        refund = [{"call": "refund_payment", "args": {"payment_id": payment}}, {"finish": "answered", "answer": "ok"}]
        now = time.time()
        forged = {
            "turn_id": accepted["turn_id"],
            "conversation_id": accepted["conversation_id"],
            "agent": "billing",
            "source": "helpdesk",
            "tenant": SANDBOX_TENANT,
            "customer": {"id": customer},
            "window": [{"role": "customer", "body": json.dumps(script(billing=refund))}],
            "deadline_at": now + 3,
            "published_at": now,
        }
        broker = create_app(Settings(broker_url=REDIS_URL))
        broker.send_task("switchboard.agent.billing", args=[forged], queue="agent.billing")
    finally:
        stack.restart("billing")
    wait_done(accepted["turn_id"], timeout=40)
    # Admitted while the turn ran, so its tool did run: as globex, to whom the customer is unknown.
    calls = rows("SELECT tool, error FROM tool_calls WHERE turn_id = :t", t=accepted["turn_id"])
    assert calls == [
        {
            "tool": "refund_payment",
            "error": f"No payment {payment} for this customer. Call list_payments to see the customer's payments.",
        }
    ]
    assert _refunds(payment) == 0
