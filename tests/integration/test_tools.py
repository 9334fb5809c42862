"""The billing and account tools against the real Postgres sandbox, through the product's tools.

Every call goes through ``TOOLS.execute`` as an agent's would: permissions, argument
validation, the sandbox store, idempotency, the audit log — and, for the HTTP backend,
a real local web server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import agents.account
import agents.billing  # noqa: F401  (registers the tools)
from agents.registry import TOOLS
from shared.db import session_scope
from shared.errors import PolicyViolation, ToolError
from shared.idempotency import idempotency_key, once
from shared.sandbox import billing
from shared.sandbox.fixtures import load_fixture, reset_sandbox, set_policy
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import get_settings
from shared.tools import ToolContext
from switchboard.servers import free_port
from tests.integration.conftest import rows

pytestmark = pytest.mark.integration

ANA, BO = "cust_1001", "cust_1002"


def pay(pid: str, customer: str, amount: float, created_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "customer_id": customer,
        "amount": amount,
        "currency": "USD",
        "card_last4": "4242",
        "status": "succeeded",
        "created_at": created_at,
        **extra,
    }


FIXTURE: dict[str, Any] = {
    "customers": [
        {"id": ANA, "email": "ana.ruiz@example.com", "name": "Ana Ruiz", "plan": "pro"},
        {"id": BO, "email": "bo.chen@example.com", "name": "Bo Chen", "plan": "business"},
    ],
    "subscriptions": [
        {"id": "sub_1", "customer_id": ANA, "plan": "pro", "status": "active", "price": 49.00, "renews_on": "+9d"},
        {"id": "sub_2", "customer_id": BO, "plan": "business", "price": 199.00, "renews_on": "+3d"},
    ],
    "invoices": [
        {"id": "inv_1", "customer_id": ANA, "amount": 49.00, "issued_on": "-6d"},
        {"id": "inv_2", "customer_id": BO, "amount": 199.00, "issued_on": "-4d"},
    ],
    "payments": [
        pay("pay_1", ANA, 49.00, "-145h", invoice_id="inv_1"),
        pay("pay_2", ANA, 49.00, "-144h", invoice_id="inv_1"),
        pay("pay_old", ANA, 49.00, "-31d"),
        pay("pay_recent", ANA, 49.00, "-29d"),
        pay("pay_failed", ANA, 49.00, "-2d", status="failed"),
        pay("pay_big", BO, 199.00, "-4d", invoice_id="inv_2"),
    ],
    "orders": [
        {"id": "ord_1", "customer_id": BO, "items": [{"sku": "HUB-1", "name": "Desk Hub", "qty": 1, "price": 89}],
         "total": 89.00, "status": "shipped", "placed_on": "-3d"},
    ],
}  # fmt: skip


@pytest.fixture(autouse=True)
def sandbox(database_url: str) -> Iterator[None]:
    with session_scope() as session:
        reset_sandbox(session)
        # Each test is a world of its own: the changes earlier tests made through a service
        # would count towards this one's velocity limits.
        session.execute(text("DELETE FROM actions"))
        load_fixture(session, FIXTURE, customer=None, now=datetime.now(UTC))
    yield


def fresh_turn() -> str:
    return f"turn_{uuid.uuid4().hex[:12]}"


def running_turn(turn: str, customer: str, state: str = "running") -> None:
    """The running turn a tool acts in: a change is on the record with its turn, and a tool
    changes nothing on a turn that is over."""
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO conversations (id, source, external_id, channel, subject, customer_id, customer) "
                "VALUES (:c, 'helpdesk', :c, 'email', '', :customer, CAST(:doc AS jsonb)) ON CONFLICT DO NOTHING"
            ),
            {"c": f"conv_{turn}", "customer": customer, "doc": json.dumps({"id": customer})},
        )
        session.execute(
            text(
                "INSERT INTO messages (id, conversation_id, role, body) VALUES (:m, :c, 'customer', 'hi') "
                "ON CONFLICT DO NOTHING"
            ),
            {"m": f"msg_{turn}", "c": f"conv_{turn}"},
        )
        session.execute(
            text(
                "INSERT INTO turns (id, conversation_id, message_id, seq, state, agents, results_in, attempts) "
                "VALUES (:t, :c, :m, 1, :state, '[]'::jsonb, 0, 0) ON CONFLICT (id) DO UPDATE SET state = :state"
            ),
            {"t": turn, "c": f"conv_{turn}", "m": f"msg_{turn}", "state": state},
        )


def context(
    customer: str = ANA, agent: str = "billing", turn: str | None = None, tenant: str = SANDBOX_TENANT
) -> ToolContext:
    turn = turn or f"turn_{uuid.uuid4().hex[:12]}"
    running_turn(turn, customer)
    return ToolContext(
        turn_id=turn,
        conversation_id=f"conv_{turn}",
        agent=agent,
        customer_id=customer,
        tenant=tenant,
        source="helpdesk",
    )


def call(tool: str, args: dict[str, Any] | None = None, **ctx: Any) -> Any:
    return TOOLS.execute(context(**ctx), tool, args or {})


def refused(tool: str, args: dict[str, Any] | None = None, **ctx: Any) -> ToolError:
    with pytest.raises(ToolError) as caught:
        call(tool, args, **ctx)
    return caught.value


def refunds(payment_id: str) -> list[dict[str, Any]]:
    return rows("SELECT * FROM sandbox_refunds WHERE payment_id = :p", p=payment_id)


# --------------------------------------------------------------------------- refunds: once


def test_a_refund_is_on_the_record_with_its_turn_agent_object_and_amount() -> None:
    turn = fresh_turn()
    out = call("refund_payment", {"payment_id": "pay_2", "amount": "20.00"}, turn=turn)
    assert out["refunded"] is True
    assert rows(f"SELECT {ACTION_COLUMNS} FROM actions WHERE turn_id = :t", t=turn) == [
        {
            "turn_id": turn,
            "agent": "billing",
            "tool": "refund_payment",
            "object_id": "pay_2",
            "amount": "20.00",
            "currency": "USD",
            "state": "done",
            "idempotency_key": f"{turn}:refund_payment:pay_2",
            "backend": None,
        }
    ]
    call("refund_payment", {"payment_id": "pay_2", "amount": "20.00"}, turn=turn)  # a repeat: the first result
    assert len(rows("SELECT id FROM actions WHERE turn_id = :t", t=turn)) == 1


def test_a_customer_past_the_velocity_limit_gets_a_human_not_another_refund(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_VELOCITY_LIMITS", json.dumps({"refund_payment": "2/day"}))
    get_settings.cache_clear()
    try:
        first = fresh_turn()
        call("refund_payment", {"payment_id": "pay_1"}, turn=first)
        call("refund_payment", {"payment_id": "pay_2"}, turn=fresh_turn())
        error = refused("refund_payment", {"payment_id": "pay_recent"}, turn=fresh_turn())
        assert isinstance(error, PolicyViolation)
        assert "limit of 2 refund_payment per day" in error.message and "escalate" in error.message
        assert refunds("pay_recent") == []
        # The limit is the customer's: another customer still gets an automatic refund.
        assert call("refund_payment", {"payment_id": "pay_big", "amount": "10.00"}, customer=BO)["refunded"] is True
        # A repeat of an action already made is not a new one.
        assert call("refund_payment", {"payment_id": "pay_1"}, turn=first)["refunded"] is True
    finally:
        get_settings.cache_clear()


def test_a_tool_changes_nothing_on_a_turn_that_is_over() -> None:
    turn = fresh_turn()
    ctx = context(turn=turn)
    running_turn(turn, ANA, state="done")  # merged before the tool ran (the agent was cut off)
    for tool, args in (("refund_payment", {"payment_id": "pay_2"}), ("cancel_subscription", {})):
        with pytest.raises(PolicyViolation, match="This turn is over"):
            TOOLS.execute(ctx, tool, args)
    assert refunds("pay_2") == [] and rows("SELECT * FROM actions WHERE turn_id = :t", t=turn) == []
    assert rows("SELECT status FROM sandbox_subscriptions WHERE id = 'sub_1'") == [{"status": "active"}]


def test_duplicate_charge_is_refunded_once_when_the_call_is_repeated_in_a_turn() -> None:
    first = call("refund_payment", {"payment_id": "pay_2"}, turn="turn_dup")
    again = call("refund_payment", {"payment_id": "pay_2", "reason": "retry"}, turn="turn_dup")
    assert first["refunded"] is True and first["amount"] == "49.00"
    assert again == first
    assert len(refunds("pay_2")) == 1
    events = rows("SELECT * FROM events WHERE kind = 'tool.refund_payment' AND turn_id = 'turn_dup'")
    assert len(events) == 1 and events[0]["data"]["refund_id"] == first["refund_id"]


def test_concurrent_retries_of_one_turn_refund_once() -> None:
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def attempt() -> None:
        barrier.wait()
        results.append(call("refund_payment", {"payment_id": "pay_2"}, turn="turn_race"))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and results[0] == results[1]
    assert len(refunds("pay_2")) == 1


def test_a_retry_waits_for_the_first_attempt_and_returns_its_result() -> None:
    ctx = context(turn="turn_slow")
    key = idempotency_key("turn_slow", "refund_payment", "pay_2")
    done: list[Any] = []
    with session_scope() as first:
        result = once(
            first,
            key,
            "refund_payment",
            lambda: billing.refund(first, ctx, payment_id="pay_2", amount=None, reason="", key=key),
        )
        retry = threading.Thread(
            target=lambda: done.append(TOOLS.execute(ctx, "refund_payment", {"payment_id": "pay_2"}))
        )
        retry.start()
        time.sleep(0.5)
        assert retry.is_alive(), "the retry must wait on the key while the first attempt is uncommitted"
    retry.join(10)
    assert done == [json.loads(json.dumps(result))]
    assert len(refunds("pay_2")) == 1


def test_two_turns_racing_for_one_payment_refund_it_once() -> None:
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            call("refund_payment", {"payment_id": "pay_2"})
            outcomes.append("refunded")
        except PolicyViolation as exc:
            outcomes.append(exc.message)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes)[1] == "refunded" and "already refunded" in sorted(outcomes)[0]
    assert len(refunds("pay_2")) == 1


def test_a_later_turn_is_told_the_payment_was_already_refunded() -> None:
    call("refund_payment", {"payment_id": "pay_2"})
    error = refused("refund_payment", {"payment_id": "pay_2"})
    assert isinstance(error, PolicyViolation) and not error.critical
    assert "pay_2 was already refunded: 49.00 USD" in error.message
    listed = call("list_payments")["payments"]
    assert next(p for p in listed if p["id"] == "pay_2")["refunded_amount"] == "49.00"


# --------------------------------------------------------------------------- refunds: policy


def test_a_refund_over_the_automatic_limit_needs_a_human() -> None:
    error = refused("refund_payment", {"payment_id": "pay_big"}, customer=BO)
    assert isinstance(error, PolicyViolation) and error.kind == "policy" and not error.critical
    assert "over the 100.00 USD limit" in error.message and "a human must approve" in error.message
    assert refunds("pay_big") == []


def test_the_case_policy_overrides_the_limit_and_a_refused_call_is_not_replayed() -> None:
    with session_scope() as session:
        set_policy(session, {"max_auto_refund": 20.00})
    assert "over the 20.00 USD limit" in refused("refund_payment", {"payment_id": "pay_2"}, turn="turn_p").message
    with session_scope() as session:
        set_policy(session, {})
    # The refusal rolled back its idempotency claim, so the same turn is evaluated afresh.
    assert call("refund_payment", {"payment_id": "pay_2"}, turn="turn_p")["refunded"] is True


def test_the_refund_ceiling_is_per_currency_and_a_currency_without_one_needs_a_human(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # F17: 100.00 KWD (about 325 USD) was refunded automatically under a ceiling of "100".
    with session_scope() as session:
        load_fixture(
            session,
            {"payments": [pay("pay_kwd", ANA, 100.00, "-1d", currency="KWD"), pay("pay_eur", ANA, 95.00, "-1d",
                                                                                  currency="EUR")]},
            customer=None,
            now=datetime.now(UTC),
        )  # fmt: skip
    listed = {p["id"]: p for p in call("list_payments")["payments"]}
    assert listed["pay_kwd"]["needs_human_approval"] is True
    error = refused("refund_payment", {"payment_id": "pay_kwd"})
    assert isinstance(error, PolicyViolation) and "no automatic refund limit for KWD" in error.message
    monkeypatch.setenv("SWITCHBOARD_MAX_AUTO_REFUNDS", json.dumps({"EUR": 90, "KWD": 30}))
    get_settings.cache_clear()
    try:
        assert "over the 90.00 EUR limit" in refused("refund_payment", {"payment_id": "pay_eur"}).message
        assert call("refund_payment", {"payment_id": "pay_kwd", "amount": "25.00"})["refunded"] is True
    finally:
        monkeypatch.delenv("SWITCHBOARD_MAX_AUTO_REFUNDS")
        get_settings.cache_clear()
    assert rows("SELECT payment_id, amount::text AS amount, currency FROM sandbox_refunds") == [
        {"payment_id": "pay_kwd", "amount": "25.00", "currency": "KWD"}
    ]


def test_payments_older_than_the_window_are_not_refunded() -> None:
    error = refused("refund_payment", {"payment_id": "pay_old"})
    assert isinstance(error, PolicyViolation)
    assert "outside the 30-day refund window" in error.message
    assert call("refund_payment", {"payment_id": "pay_recent"})["refunded"] is True
    with session_scope() as session:
        set_policy(session, {"refund_window_days": 60})
    assert call("refund_payment", {"payment_id": "pay_old"})["refunded"] is True


def test_a_refund_is_never_more_than_was_paid() -> None:
    error = refused("refund_payment", {"payment_id": "pay_2", "amount": "60.00"})
    assert error.kind == "invalid" and "cannot be more than" in error.message
    partial = call("refund_payment", {"payment_id": "pay_2", "amount": 20})
    assert (partial["amount"], refunds("pay_2")[0]["amount"]) == ("20.00", 20)


def test_a_payment_that_did_not_go_through_is_not_refunded() -> None:
    assert "was not charged" in refused("refund_payment", {"payment_id": "pay_failed"}).message


def test_another_customers_records_are_not_found_for_this_customer() -> None:
    error = refused("refund_payment", {"payment_id": "pay_big"})
    assert error.kind == "not_found"
    assert error.message == "No payment pay_big for this customer. Call list_payments to see the customer's payments."
    assert "199" not in error.message
    assert "No order ord_1 for this customer" in refused("get_order", {"order_id": "ord_1"}, agent="account").message
    assert "No subscription sub_2" in refused("cancel_subscription", {"subscription_id": "sub_2"}).message
    assert all(p["id"] != "pay_big" for p in call("list_payments")["payments"])
    assert rows("SELECT status FROM sandbox_subscriptions WHERE id = 'sub_2'") == [{"status": "active"}]


def test_a_ticket_of_another_company_reaches_nothing_of_a_customer_with_the_same_id() -> None:
    # Ana is the sandbox company's customer; a ticket through another company's source that
    # names her id sees no account, no records, and can change nothing.
    other = {"tenant": "globex"}
    assert refused("fetch_customer_account", agent="account", **other).kind == "not_found"
    assert refused("send_password_reset", agent="account", **other).kind == "not_found"
    assert refused("refund_payment", {"payment_id": "pay_2"}, **other).kind == "not_found"
    assert refused("cancel_subscription", **other).kind == "not_found"
    assert refused("get_order", {"order_id": "ord_1"}, customer=BO, agent="account", **other).kind == "not_found"
    assert call("list_orders", customer=BO, agent="account", **other) == {"orders": [], "shown": 0, "total": 0}
    assert call("list_payments", **other)["payments"] == []
    assert call("list_invoices", **other) == {"invoices": [], "shown": 0, "total": 0}
    assert call("get_subscription", **other)["subscription"] is None
    assert rows("SELECT count(*) AS n FROM sandbox_refunds") == [{"n": 0}]
    assert rows("SELECT count(*) AS n FROM sandbox_password_resets") == [{"n": 0}]
    assert rows("SELECT status FROM sandbox_subscriptions WHERE id = 'sub_1'") == [{"status": "active"}]


def test_each_company_reaches_its_own_customer_only() -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        load_fixture(
            session,
            {
                "customers": [{"id": "cust_g1", "tenant": "globex", "email": "gil@globex.example", "name": "Gil"}],
                "payments": [pay("pay_g1", "cust_g1", 20.00, "-1d")],
            },
            customer=None,
            now=now,
        )
    assert call("list_payments", customer="cust_g1")["payments"] == []
    assert refused("refund_payment", {"payment_id": "pay_g1"}, customer="cust_g1").kind == "not_found"
    assert [p["id"] for p in call("list_payments", customer="cust_g1", tenant="globex")["payments"]] == ["pay_g1"]
    refund = call("refund_payment", {"payment_id": "pay_g1"}, customer="cust_g1", tenant="globex")
    assert refund["refunded"] is True and refund["amount"] == "20.00"
    assert rows("SELECT customer_id, payment_id FROM sandbox_refunds") == [
        {"customer_id": "cust_g1", "payment_id": "pay_g1"}
    ]


def test_only_the_billing_agent_can_refund() -> None:
    error = refused("refund_payment", {"payment_id": "pay_2"}, agent="account")
    assert isinstance(error, PolicyViolation) and "belongs to billing" in error.message


# --------------------------------------------------------------------------- reads


def test_list_payments_marks_the_later_duplicate_and_the_refund_window() -> None:
    listed = {p["id"]: p for p in call("list_payments")["payments"]}
    assert listed["pay_2"]["duplicate_of"] == "pay_1" and listed["pay_1"]["duplicate_of"] is None
    assert listed["pay_old"]["within_refund_window"] is False and listed["pay_recent"]["refundable"] is True
    assert listed["pay_2"]["card_last4"] == "4242" and listed["pay_2"]["amount"] == "49.00"


def test_list_outputs_are_bounded_to_the_latest_ten() -> None:
    many = {
        "payments": [pay(f"pay_m{i:02}", ANA, 5.00, f"-{i}h") for i in range(15)],
        "orders": [{"id": f"ord_m{i:02}", "customer_id": ANA, "status": "delivered", "placed_on": f"-{i}d"}
                   for i in range(12)],
    }  # fmt: skip
    with session_scope() as session:
        load_fixture(session, many, customer=None, now=datetime.now(UTC))
    payments = call("list_payments")
    assert (payments["shown"], payments["total"]) == (10, 20)
    assert [p["id"] for p in payments["payments"][:2]] == ["pay_m00", "pay_m01"]
    orders = call("list_orders", agent="account")
    assert (orders["shown"], orders["total"]) == (10, 12)
    assert call("list_payments", {"limit": 3})["shown"] == 3
    assert refused("list_payments", {"limit": 50}).kind == "invalid"


def test_the_account_on_file_is_readable_by_account_and_billing_only() -> None:
    account = call("fetch_customer_account", agent="account")
    assert account == {
        "customer_id": ANA,
        "name": "Ana Ruiz",
        "email": "ana.ruiz@example.com",
        "plan": "pro",
        "status": "active",
        "verified": True,
    }
    assert call("fetch_customer_account", agent="billing") == account
    assert isinstance(refused("fetch_customer_account", agent="knowledge"), PolicyViolation)


def test_an_order_shows_its_status_and_items() -> None:
    order = call("get_order", {"order_id": "ord_1"}, customer=BO, agent="account")["order"]
    assert order["status"] == "shipped" and order["items"][0]["name"] == "Desk Hub"
    assert order["items"][0]["price"] == "89.00" and order["total"] == "89.00"


# --------------------------------------------------------------------------- subscriptions


def test_cancelling_ends_the_subscription_at_period_end_without_a_refund() -> None:
    assert call("get_subscription")["status"] == "active"
    done = call("cancel_subscription", turn="turn_c")
    assert done["subscription"]["status"] == "cancel_at_period_end" and done["refund"] is None
    assert "no refund" in done["message"]
    assert call("cancel_subscription", turn="turn_c") == done
    later = call("cancel_subscription")
    assert later["already"] is True and later["subscription"]["status"] == "cancel_at_period_end"
    assert rows("SELECT status FROM sandbox_subscriptions WHERE id = 'sub_1'") == [{"status": "cancel_at_period_end"}]
    assert rows("SELECT count(*) AS n FROM sandbox_refunds") == [{"n": 0}]
    assert len(rows("SELECT * FROM events WHERE kind = 'tool.cancel_subscription'")) == 1


def test_a_customer_without_a_subscription_has_nothing_to_cancel() -> None:
    with session_scope() as session:
        load_fixture(session, {"customers": [{"id": "cust_free", "email": "f@example.com"}]}, customer=None,
                     now=datetime.now(UTC))  # fmt: skip
    assert call("get_subscription", customer="cust_free")["subscription"] is None
    assert refused("cancel_subscription", customer="cust_free").kind == "not_found"


# --------------------------------------------------------------------------- password resets


def test_a_password_reset_goes_to_the_email_on_file_once_per_turn() -> None:
    sent = call("send_password_reset", agent="account", turn="turn_r")
    assert sent["sent"] is True and sent["sent_to"] == "a***@example.com"
    assert call("send_password_reset", {"email": "Ana.Ruiz@example.com"}, agent="account", turn="turn_r") == sent
    resets = rows("SELECT customer_id, sent_to FROM sandbox_password_resets")
    assert resets == [{"customer_id": ANA, "sent_to": "ana.ruiz@example.com"}]
    event = rows("SELECT data FROM events WHERE kind = 'tool.send_password_reset'")[0]["data"]
    assert "ana.ruiz@example.com" not in json.dumps(event)


def test_a_password_reset_to_another_address_is_refused() -> None:
    error = refused("send_password_reset", {"email": "attacker@example.net"}, agent="account")
    assert isinstance(error, PolicyViolation) and "only be sent to the email address on file" in error.message
    assert "ana.ruiz" not in error.message
    assert rows("SELECT * FROM sandbox_password_resets") == []


# --------------------------------------------------------------------------- HTTP backend


class Service:
    """A company's tool service: answers by path, records what it received."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.on_request: Callable[[], None] | None = None  # runs while the call is in flight
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                service.received.append((self.path, body, dict(self.headers.items())))
                if service.on_request is not None:
                    service.on_request()
                extra_headers: dict[str, str] = {}
                busy = self.path == "/busy-once" and sum(1 for r in service.received if r[0] == self.path) == 1
                if busy:
                    extra_headers["Retry-After"] = "0.3"
                status, answer = {
                    "/ok": (200, {"refunded": True, "refund_id": "re_remote", "echo": body["arguments"]}),
                    "/busy-once": (429, {"error": "slow down"}) if busy else (200, {"refunded": True}),
                    "/missing": (404, {"error": "No payment pay_x at Acme. Call list_payments first."}),
                    "/policy": (422, {"error": {"message": "Refunds above 10.00 need a manager.", "kind": "policy"}}),
                    "/down": (503, {"error": "maintenance"}),
                }.get(self.path, (200, {}))
                if self.path == "/slow":
                    time.sleep(1.0)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture()
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    svc = Service()
    yield svc
    svc.server.shutdown()
    get_settings.cache_clear()


def route(monkeypatch: pytest.MonkeyPatch, **backends: dict[str, Any]) -> None:
    monkeypatch.setenv("SWITCHBOARD_TOOL_BACKENDS", json.dumps(backends))
    get_settings.cache_clear()


def test_a_tool_with_an_http_backend_posts_the_call_and_returns_the_answer(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/ok"), "headers": {"Authorization": "Bearer t0k"}})
    out = call("refund_payment", {"payment_id": "pay_2", "amount": "10.50"}, turn="turn_h")
    assert out == {"refunded": True, "refund_id": "re_remote", "echo": {"payment_id": "pay_2", "amount": "10.50",
                                                                        "reason": ""}}  # fmt: skip
    _path, body, headers = service.received[0]
    assert body == {
        "tool": "refund_payment",
        "tenant": SANDBOX_TENANT,  # the company whose customer ANA is: a shared service looks her up in it
        "source": "helpdesk",
        "customer_id": ANA,
        "turn_id": "turn_h",
        "arguments": {"payment_id": "pay_2", "amount": "10.50", "reason": ""},
        "idempotency_key": "turn_h:refund_payment:pay_2",
    }
    assert headers["Authorization"] == "Bearer t0k" and headers["Idempotency-Key"] == "turn_h:refund_payment:pay_2"
    assert refunds("pay_2") == [], "the sandbox is not touched when a backend serves the tool"
    assert len(rows("SELECT * FROM events WHERE kind = 'tool.refund_payment' AND turn_id = 'turn_h'")) == 1


ACTION_COLUMNS = "turn_id, agent, tool, object_id, amount::text AS amount, currency, state, idempotency_key, backend"


def test_a_change_sent_to_a_service_is_on_the_record_before_the_call_and_settled_by_its_answer(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/ok")}, cancel_subscription={"url": service.url("/down")})
    turn, other = fresh_turn(), fresh_turn()
    in_flight: list[list[dict[str, Any]]] = []
    query = f"SELECT {ACTION_COLUMNS} FROM actions WHERE turn_id = '{turn}'"
    service.on_request = lambda: in_flight.append(rows(query))
    call("refund_payment", {"payment_id": "pay_2", "amount": "10.50"}, turn=turn)
    pending = {
        "turn_id": turn,
        "agent": "billing",
        "tool": "refund_payment",
        "object_id": "pay_2",
        "amount": "10.50",
        "currency": None,
        "state": "pending",
        "idempotency_key": f"{turn}:refund_payment:pay_2",
        "backend": service.url("/ok"),
    }
    assert in_flight == [[pending]]  # while the service worked on it, the record said "pending"
    assert rows(query) == [{**pending, "state": "done"}]
    # A service that never answers leaves the action pending: the merge reports it as unconfirmed.
    refused("cancel_subscription", turn=other)
    assert [r["state"] for r in rows("SELECT state FROM actions WHERE turn_id = :t", t=other)] == ["pending"]


def test_a_refused_call_to_a_service_is_on_the_record_as_refused(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/missing")})
    turn = fresh_turn()
    refused("refund_payment", {"payment_id": "pay_2"}, turn=turn)  # our checks pass; the service refuses
    assert [r["state"] for r in rows("SELECT state FROM actions WHERE turn_id = :t", t=turn)] == ["refused"]


def test_no_service_is_called_for_a_turn_that_is_over(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/ok")})
    turn = fresh_turn()
    ctx = context(turn=turn)
    running_turn(turn, ANA, state="done")  # merged since the agent started
    with pytest.raises(PolicyViolation, match="This turn is over"):
        TOOLS.execute(ctx, "refund_payment", {"payment_id": "pay_2"})
    assert service.received == [] and rows("SELECT * FROM actions WHERE turn_id = :t", t=turn) == []


def test_our_refund_rules_hold_before_any_call_to_a_payment_service(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/ok")})
    # The payments come from their own backend (here the sandbox's list_payments).
    over = refused("refund_payment", {"payment_id": "pay_big"}, customer=BO)
    assert isinstance(over, PolicyViolation) and "over the 100.00 USD limit" in over.message
    old = refused("refund_payment", {"payment_id": "pay_old"})
    assert isinstance(old, PolicyViolation) and "outside the 30-day refund window" in old.message
    failed = refused("refund_payment", {"payment_id": "pay_failed"})
    assert isinstance(failed, PolicyViolation) and "did not go through" in failed.message
    assert refused("refund_payment", {"payment_id": "pay_2", "amount": "60.00"}).kind == "invalid"
    assert refused("refund_payment", {"payment_id": "pay_x"}).kind == "not_found"
    assert service.received == [], "no call reached the service"
    # Refunded once through the service; a later turn is refused by our own record of it.
    call("refund_payment", {"payment_id": "pay_2", "amount": "10.50"})
    again = refused("refund_payment", {"payment_id": "pay_2"})
    assert isinstance(again, PolicyViolation) and "was already refunded: 10.50" in again.message
    assert len(service.received) == 1


def test_a_reset_link_goes_to_an_account_service_only_for_the_address_on_file(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, send_password_reset={"url": service.url("/ok")})
    error = refused("send_password_reset", {"email": "attacker@evil.example"}, agent="account")
    assert isinstance(error, PolicyViolation) and "only be sent to the email address on file" in error.message
    assert service.received == []
    call("send_password_reset", {"email": "ana.ruiz@example.com"}, agent="account")
    assert len(service.received) == 1


def test_a_busy_service_is_tried_again_after_its_retry_after(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/busy-once")})
    sent = time.monotonic()
    assert call("refund_payment", {"payment_id": "pay_2"}) == {"refunded": True}
    assert [path for path, _, _ in service.received] == ["/busy-once", "/busy-once"]
    assert time.monotonic() - sent >= 0.3, "the second try came before the Retry-After the service asked for"
    # Both tries carried the same key: the service makes the change once.
    assert len({headers["Idempotency-Key"] for _, _, headers in service.received}) == 1


def test_a_service_that_stays_down_is_given_up_inside_the_agents_deadline(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/down"), "max_retries": 10})
    ctx = replace(context(), deadline_at=time.time() + 1.0)
    with pytest.raises(ToolError) as caught:
        TOOLS.execute(ctx, "refund_payment", {"payment_id": "pay_2"})
    assert caught.value.critical and "HTTP 503, also when tried again" in caught.value.message
    assert time.time() < ctx.deadline_at, "it gave up after the agent's deadline"
    assert 2 <= len(service.received) < 10  # tried again, but not all ten times: the deadline came first


def test_a_read_through_the_http_backend_carries_no_idempotency_key(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, list_payments={"url": service.url("/ok")})
    call("list_payments")
    assert service.received[0][1]["idempotency_key"] is None


def test_a_4xx_from_the_backend_is_its_message_for_the_model(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    route(
        monkeypatch,
        refund_payment={"url": service.url("/missing")},
        cancel_subscription={"url": service.url("/policy")},
    )
    error = refused("refund_payment", {"payment_id": "pay_2"})  # our own checks pass: the service answers
    assert (error.message, error.kind, error.critical) == (
        "No payment pay_x at Acme. Call list_payments first.",
        "not_found",
        False,
    )
    policy = refused("cancel_subscription")
    assert isinstance(policy, PolicyViolation) and policy.message == "Refunds above 10.00 need a manager."


def test_a_backend_that_does_not_answer_in_time_escalates(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/slow"), "timeout_s": 0.2})
    error = refused("refund_payment", {"payment_id": "pay_2"})  # /slow answers after its timeout
    assert error.message.startswith("refund_payment did not answer in 0.2s; do not retry, escalate")
    assert error.critical and error.kind == "backend"


def test_a_backend_that_is_down_is_critical_for_money_tools_only(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(monkeypatch, refund_payment={"url": service.url("/down")}, list_payments={"url": service.url("/down")})
    money = refused("refund_payment", {"payment_id": "pay_2"})
    assert "HTTP 503" in money.message and "escalate" in money.message and money.critical
    read = refused("list_payments")
    assert read.kind == "backend" and not read.critical


def test_a_sandbox_store_failure_is_critical_for_money_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    def store_down(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(billing, "refund", store_down)
    monkeypatch.setattr(billing, "payments", store_down)
    money = refused("refund_payment", {"payment_id": "pay_2"})
    assert money.critical and money.kind == "backend" and "did not answer (OperationalError)" in money.message
    assert "Traceback" not in money.message and "SELECT" not in money.message
    assert not refused("list_payments").critical
