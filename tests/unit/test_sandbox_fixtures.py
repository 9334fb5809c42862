"""Scenario fixtures: relative dates, and errors that name the record and the field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.sandbox.fixture_format import CustomerIn, OrderIn, PaymentIn, RefundIn
from shared.sandbox.fixtures import FixtureError, parse_when, state_changes, validate_fixture

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "evals" / "public" / "examples.yaml"


def customer(cid: str = "cust_1") -> dict[str, Any]:
    return {
        "id": cid,
        "email": f"{cid}@example.com",
        "name": "Ana",
        "plan": "pro",
        "status": "active",
        "verified": True,
    }


def payment(pid: str | int = "pay_1", **fields: Any) -> dict[str, Any]:
    return {"id": pid, "customer_id": "cust_1", "amount": 49.00, "currency": "USD", "card_last4": "4242", **fields}


def error_of(fixture: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(FixtureError) as caught:
        validate_fixture(fixture, now=NOW, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-3d", NOW - timedelta(days=3)),
        ("-2h", NOW - timedelta(hours=2)),
        ("+5d", NOW + timedelta(days=5)),
        ("-145h", NOW - timedelta(hours=145)),
        ("-90m", NOW - timedelta(minutes=90)),
        ("+1w", NOW + timedelta(weeks=1)),
        ("now", NOW),
        ("2026-11-02", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-02T09:14:00Z", datetime(2026, 11, 2, 9, 14, tzinfo=UTC)),
        ("2026-11-02T09:14:00+01:00", datetime(2026, 11, 2, 8, 14, tzinfo=UTC)),
    ],
)
def test_relative_and_absolute_dates_resolve_against_now(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_dates_yaml_already_parsed_are_taken_as_utc() -> None:
    loaded = yaml.safe_load("a: 2026-11-02\nb: 2026-11-02T09:14:00Z\nc: 2026-11-02 09:14:00")
    assert parse_when(loaded["a"], NOW) == datetime(2026, 11, 2, tzinfo=UTC)
    assert parse_when(loaded["b"], NOW) == datetime(2026, 11, 2, 9, 14, tzinfo=UTC)
    assert parse_when(loaded["c"], NOW) == datetime(2026, 11, 2, 9, 14, tzinfo=UTC)


def test_a_relative_date_on_a_calendar_field_becomes_that_day() -> None:
    order = OrderIn.model_validate(
        {"id": "ord_1", "customer_id": "cust_1", "status": "shipped", "placed_on": "-3d", "delivered_on": "+1d"},
        context={"now": NOW},
    )
    assert order.placed_on == date(2026, 11, 21)
    assert order.delivered_on == date(2026, 11, 25)


def test_a_case_about_the_refund_window_means_the_same_whenever_it_runs() -> None:
    for now in (NOW, NOW + timedelta(days=400)):
        parsed = validate_fixture({"customers": [customer()], "payments": [payment(created_at="-31d")]}, now=now)
        assert isinstance(parsed["payments"][0], PaymentIn)
        assert now - parsed["payments"][0].created_at == timedelta(days=31)  # type: ignore[operator]


# --------------------------------------------------------------------------- shapes


def test_every_public_example_fixture_is_valid() -> None:
    cases = yaml.safe_load(EXAMPLES.read_text())
    assert cases, f"{EXAMPLES} holds no cases"
    for case in cases:
        validate_fixture(case["fixture"], now=NOW, customer=case["customer"])


def test_the_case_customer_is_added_when_the_fixture_lacks_it() -> None:
    parsed = validate_fixture(
        {"subscriptions": [{"id": "sub_1", "customer_id": "cust_9", "plan": "business", "price": 199}]},
        now=NOW,
        customer={"id": "cust_9", "email": "zoe@example.com", "name": "Zoe"},
    )
    added = parsed["customers"][0]
    assert isinstance(added, CustomerIn)
    assert (added.id, added.email, added.plan, added.status, added.verified) == (
        "cust_9",
        "zoe@example.com",
        "business",
        "active",
        True,
    )


def test_numbers_written_without_quotes_are_read_as_ids_and_card_digits() -> None:
    parsed = validate_fixture(
        {"customers": [customer()], "payments": [payment(pid=3001, card_last4=5, amount=19.99)]}, now=NOW
    )
    p = parsed["payments"][0]
    assert isinstance(p, PaymentIn)
    assert (p.id, p.card_last4, p.amount) == ("3001", "0005", Decimal("19.99"))


def test_a_refund_may_leave_out_its_customer_and_amount() -> None:
    parsed = validate_fixture(
        {"customers": [customer()], "payments": [payment()], "refunds": [{"payment_id": "pay_1"}]}, now=NOW
    )
    refund = parsed["refunds"][0]
    assert isinstance(refund, RefundIn)
    assert refund.id.startswith("re_") and refund.customer_id is None and refund.amount is None


# --------------------------------------------------------------------------- errors


def test_a_bad_date_names_the_record_and_the_field() -> None:
    message = error_of({"customers": [customer()], "payments": [payment(created_at="last tuesday")]})
    assert message.startswith("payments[0] (pay_1): created_at: 'last tuesday' is not a date")
    assert "-3d" in message


def test_a_misspelt_field_is_an_error_not_a_silent_default() -> None:
    message = error_of({"customers": [customer()], "payments": [payment(created_on="-3d")]})
    assert "payments[0] (pay_1): created_on: Extra inputs are not permitted" in message


def test_money_with_three_decimals_is_refused() -> None:
    message = error_of({"customers": [customer()], "payments": [payment(amount=49.999)]})
    assert message.startswith("payments[0] (pay_1): amount:")


def test_a_full_card_number_cannot_be_stored() -> None:
    message = error_of({"customers": [customer()], "payments": [payment(card_last4="4242 4242 4242 4242")]})
    assert "payments[0] (pay_1): card_last4:" in message


def test_a_missing_required_field_is_named() -> None:
    message = error_of({"customers": [customer()], "orders": [{"id": "ord_1", "customer_id": "cust_1"}]})
    assert message == "orders[0] (ord_1): status: Field required"


def test_an_unknown_section_is_named() -> None:
    assert "unknown section(s) payment" in error_of({"payment": []})


def test_a_section_that_is_not_a_list_is_refused() -> None:
    assert "fixture: payments must be a list" in error_of({"payments": {"id": "pay_1"}})


def test_duplicate_ids_are_refused() -> None:
    assert "payments: id(s) pay_1 appear more than once" in error_of(
        {"customers": [customer()], "payments": [payment(), payment()]}
    )


def test_a_reference_to_a_record_that_is_nowhere_is_named() -> None:
    message = error_of({"customers": [customer()], "payments": [payment(invoice_id="inv_9")]})
    assert message.startswith("payments[0] (pay_1): invoice_id 'inv_9' is not among the fixture's invoices")


def test_a_payment_for_another_customers_invoice_is_refused() -> None:
    message = error_of(
        {
            "customers": [customer("cust_1"), customer("cust_2")],
            "invoices": [{"id": "inv_1", "customer_id": "cust_2", "amount": 49, "issued_on": "-3d"}],
            "payments": [payment(invoice_id="inv_1")],
        }
    )
    assert message == "payments[0] (pay_1): invoice_id 'inv_1' belongs to cust_2, not to cust_1"


# --------------------------------------------------------------------------- state changes


def test_state_changes_list_new_refunds_and_changed_subscriptions_only() -> None:
    before = {
        "refunds": [],
        "subscriptions": [{"id": "sub_1", "plan": "pro", "status": "active", "price": 49.0}],
        "customers": [{"id": "cust_1", "email": "a@example.com", "name": "Ana", "plan": "pro"}],
    }
    after = {
        "refunds": [{"id": "re_1", "payment_id": "pay_2", "amount": 49.0}],
        "subscriptions": [{"id": "sub_1", "plan": "pro", "status": "cancel_at_period_end", "price": 49.0}],
        "customers": [{"id": "cust_1", "email": "a@example.com", "name": "Ana R.", "plan": "pro"}],
    }
    changes = state_changes(before, after)
    assert [(c["section"], c["id"], c["change"]) for c in changes] == [
        ("refunds", "re_1", "created"),
        ("subscriptions", "sub_1", "updated"),
    ]
    assert changes[1]["fields"] == {"status": ["active", "cancel_at_period_end"]}


def test_every_customer_of_the_public_examples_is_in_the_demo_with_what_the_example_needs() -> None:
    """`switchboard run` loads the demo; each example message then works against it as it is."""
    from shared.sandbox.loader import DEMO

    demo = yaml.safe_load(DEMO.read_text())
    customers = {c["id"]: c for c in demo["customers"]}
    paid = {(p["customer_id"], p["card_last4"]) for p in demo["payments"] if p["status"] == "succeeded"}
    for example in yaml.safe_load(EXAMPLES.read_text()):
        who = example["customer"]
        assert who["id"] in customers, example["id"]
        assert customers[who["id"]]["email"] == who["email"], example["id"]
        for payment in (example.get("fixture") or {}).get("payments", []):
            if payment["status"] == "succeeded":
                assert (payment["customer_id"], payment["card_last4"]) in paid, (example["id"], payment["id"])
