"""An action runs only when the message asks for that action on that kind of object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.consent import asked_for, confirmation, consented, customer_words
from shared.contracts import WindowMessage

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "evals" / "data" / "near_misses.yaml").read_text()
)


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:60] for c in CASES])
def test_a_changing_tool_runs_only_when_the_customer_asked_for_it(case: dict[str, Any]) -> None:
    assert asked_for(case["tool"], case["text"]) is case["asked"]


def test_the_set_holds_requests_and_near_misses_of_every_changing_tool() -> None:
    for tool in ("refund_payment", "cancel_subscription", "send_password_reset"):
        kinds = {c["asked"] for c in CASES if c["tool"] == tool}
        assert kinds == {True, False}, tool


def test_an_answer_to_our_question_carries_the_request_it_answers() -> None:
    window = [
        WindowMessage(role="customer", body="Please refund one of my payments"),
        WindowMessage(role="assistant", body="Which payment: pay_1 or pay_2?"),
        WindowMessage(role="customer", body="the second one"),
    ]
    assert asked_for("refund_payment", customer_words(window))
    # Without our question in between, an earlier message is not this turn's request.
    alone = [window[0], WindowMessage(role="customer", body="and what is my balance?")]
    assert not asked_for("refund_payment", customer_words(alone))


def test_a_tool_without_rules_is_left_to_its_own_service() -> None:
    assert asked_for("book_a_callback", "anything at all")


def test_a_yes_to_our_question_about_that_change_is_consent() -> None:
    question = confirmation("refund_payment", {"payment_id": "pay_9"})
    assert question.startswith("Just to be sure before I change anything: do you want me to refund payment pay_9?")
    said = [
        WindowMessage(role="customer", body="You took the same 49 bucks from my card two times this week."),
        WindowMessage(role="assistant", body=question),
    ]
    assert not consented("refund_payment", said[:1])
    assert consented("refund_payment", [*said, WindowMessage(role="customer", body="Yes please")])
    assert not consented("refund_payment", [*said, WindowMessage(role="customer", body="no, just tell me why")])
    # A yes to a question about another change is not consent to this one.
    other = WindowMessage(role="assistant", body=confirmation("cancel_subscription", {}))
    assert not consented("refund_payment", [said[0], other, WindowMessage(role="customer", body="yes")])
