"""A message that asks several things, a question that is not a request, the object named,
and replies written for the customer's locale: the local brain and the merge together
(intent engine stubbed, tools faked as in test_local_playbooks)."""

from __future__ import annotations

import pytest

from orchestrator.merge import decide
from shared.contracts import AgentResult, AgentStatus
from shared.i18n import HOLDING_REPLIES, REST_PASSED_ON
from shared.nlu.parts import is_policy_question, split_parts
from tests.unit import test_local_playbooks as playbooks
from tests.unit.test_local_playbooks import ago, backend, fresh, payment, run, says

__all__ = ["fresh"]  # the autouse fixture of test_local_playbooks: fresh backend, router and brain per test

AGENTS = ("billing", "account", "knowledge")


def turn(message: str, **kw: str) -> dict[str, AgentResult | None]:
    return {agent: run(agent, message, **kw) for agent in AGENTS}


def test_a_message_is_cut_where_a_new_request_starts_and_keeps_each_span() -> None:
    text = "I was charged twice, and I also can't log in"
    assert [s.of(text) for s in split_parts(text)] == ["I was charged twice", "I also can't log in"]
    text = "Hi, thanks. Please refund pay_3001 and reset my password"
    assert [s.of(text) for s in split_parts(text)] == ["Hi, thanks. Please refund pay_3001", "reset my password"]
    assert [s.of(t) for t in ["export my data and then cancel my plan"] for s in split_parts(t)] == [
        "export my data",
        "cancel my plan",
    ]
    # "and" inside one request does not cut it
    assert len(split_parts("I bought a keyboard and a mouse")) == 1
    assert len(split_parts("help")) == 1


def test_a_question_about_a_policy_is_not_a_request() -> None:
    for question in (
        "in what cases can I ask for a refund?",
        "how long do refunds take?",
        "what does it cost to cancel?",
    ):
        assert is_policy_question(question), question
    for request in (
        "can you refund my last payment?",
        "can I get a refund for my payment from Monday?",
        "I want to cancel",
        "please refund pay_3001",
    ):
        assert not is_policy_question(request), request


def two_part_message() -> str:
    text = "I was charged twice for my invoice, and I also can't log in to my account"
    says(text, "duplicate_charge", 0.6)
    says("I was charged twice for my invoice", "duplicate_charge", 0.9)
    says("I also can't log in to my account", "password_reset", 0.9)
    return text


def test_each_agent_acts_on_its_own_part_and_the_reply_answers_both_in_the_customers_order() -> None:
    backend.payments = [payment("pay_1", hours=145), payment("pay_2", hours=144)]
    text = two_part_message()
    results = turn(text)
    billing, account, knowledge = (results[a] for a in AGENTS)
    assert billing is not None and account is not None and knowledge is not None
    assert billing.status is AgentStatus.needs_info and billing.part_start == 0  # a told duplicate asks first
    assert account.status is AgentStatus.answered and backend.resets == 1
    assert account.part_start == text.index("I also")
    assert knowledge.status is AgentStatus.not_applicable
    merged = decide(results, 0.7)
    assert merged.outcome == "clarify" and merged.reply is not None
    # the sent reset is told, then the one question about the duplicate
    assert merged.reply.index("password reset link") < merged.reply.index("refund payment pay_2")


def test_the_parts_are_answered_in_the_order_the_customer_wrote_them() -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    text = "I forgot my password. Also, please cancel my subscription"
    says(text, "password_reset", 0.6)
    says("I forgot my password.", "password_reset", 0.95)
    says("Also, please cancel my subscription", "cancel_subscription", 0.95)
    merged = decide(turn(text), 0.7)
    assert merged.outcome == "resolved" and merged.reply is not None
    assert backend.resets == 1 and backend.cancelled == ["sub_1"]
    assert merged.reply.index("password reset link") < merged.reply.index("subscription is cancelled")
    assert merged.answered_by == ("account", "billing")


def test_one_agent_with_two_parts_runs_both_playbooks_in_turn() -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    backend.payments = [payment("pay_1", card_last4="1881", days=75)]
    text = "cancel my plan and refund my last payment"
    says(text, "cancel_subscription", 0.6)
    says("cancel my plan", "cancel_subscription", 0.95)
    says("refund my last payment", "refund_request", 0.95)
    r = run("billing", text)
    assert r.status is AgentStatus.answered and backend.cancelled == ["sub_1"] and backend.refunds == []
    answer = r.answer or ""
    assert answer.index("subscription is cancelled") < answer.index("30 days")  # outside the window: said so
    assert [c.tool for c in r.tool_calls] == ["get_subscription", "cancel_subscription", "list_payments"]
    assert {f.call_id for f in r.facts} == {c.call_id for c in r.tool_calls}


def test_an_escalated_part_does_not_hide_the_answered_one() -> None:
    text = "I forgot my password, and I also want my account deleted with all my data"
    says(text, "password_reset", 0.6)
    says("I forgot my password", "password_reset", 0.95)
    says("I also want my account deleted with all my data", "delete_account", 0.95)
    merged = decide(turn(text), 0.7)
    assert merged.outcome == "escalated" and merged.reason == "policy"
    assert merged.reply is not None and "password reset link" in merged.reply
    assert "close your account and delete your data" in merged.reply


def test_a_policy_question_is_answered_from_the_knowledge_base_and_moves_no_money() -> None:
    backend.payments = [payment("pay_1", days=2)]
    backend.kb = [
        {"article_id": "kb_refunds", "title": "Refunds", "section": "", "text": "Within 30 days.", "score": 0.8}
    ]
    question = says("in what cases can I ask for a refund?", "refund_request", 0.9)
    results = turn(question)
    assert results["billing"] is not None and results["billing"].status is AgentStatus.not_applicable
    assert results["knowledge"] is not None and results["knowledge"].status is AgentStatus.answered
    assert backend.refunds == []


def test_cancelling_an_order_never_cancels_the_subscription() -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    backend.orders = [{"id": "ord_5010", "items": [{"name": "Keyboard"}], "status": "placed", "placed_on": ago(days=1)}]
    message = says("assistance with cancelling order ord_5010", "cancel_subscription", 0.9)
    results = turn(message)
    assert backend.cancelled == []
    assert results["billing"] is not None and results["billing"].status is AgentStatus.not_applicable
    account = results["account"]
    assert account is not None and account.status is AgentStatus.escalate
    assert account.customer_note is not None and "ord_5010" in account.customer_note


def test_amounts_and_dates_are_written_for_the_customers_locale_and_time_zone() -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": "2027-01-03T23:30:00+00:00"}
    says("cancel my plan", "cancel_subscription")
    tokyo = run("billing", "cancel my plan", locale="en-GB", tz="Asia/Tokyo")
    assert "4 January 2027" in (tokyo.answer or "")  # 08:30 on the 4th in Tokyo
    playbooks.brain._understood.clear()
    backend.cancelled.clear()
    backend.subscription["status"] = "active"
    new_york = run("billing", "cancel my plan", locale="en-US", tz="America/New_York", turn="t2")
    assert "January 3, 2027" in (new_york.answer or "")
    backend.payments = [payment("pay_1", days=3)]
    says("refund pay_1", "refund_request", payment_ids=["pay_1"])
    french = run("billing", "refund pay_1", locale="fr-FR", turn="t3")
    # English words, the customer's conventions: the decimal comma and the no-break space of fr-FR
    assert "49,00\xa0US$" in (french.answer or "")


def test_an_escalation_is_acknowledged_in_the_customers_language() -> None:
    says("me robaron la tarjeta", "security_incident", 0.95)
    spanish = turn("me robaron la tarjeta", locale="es-ES")
    account = spanish["account"]
    assert account is not None and account.status is AgentStatus.escalate
    merged = decide(spanish, 0.7, language="es")
    assert merged.reply == HOLDING_REPLIES["es"]  # never the English acknowledgement
    assert REST_PASSED_ON.keys() == HOLDING_REPLIES.keys()


def test_an_amount_below_the_payment_named_is_refunded_in_part() -> None:
    backend.payments = [payment("pay_1", amount=49.0, days=10), payment("pay_2", invoice_id="inv_2", days=5)]
    says("please refund $10 of my last payment", "refund_request", amounts=[10.0])
    r = run("billing", "please refund $10 of my last payment")
    assert r.status is AgentStatus.answered and backend.refunds == ["pay_2:10.00"]
    assert "refunded $10.00 of your payment of $49.00 (pay_2)" in (r.answer or "")
    playbooks.brain._understood.clear()
    says("refund 20 of pay_1", "refund_request", amounts=[20.0], payment_ids=["pay_1"])
    assert run("billing", "refund 20 of pay_1", turn="t2").status is AgentStatus.answered
    assert backend.refunds == ["pay_2:10.00", "pay_1:20.00"]


def test_an_amount_above_the_payment_or_pointing_nowhere_asks_which_and_refunds_nothing() -> None:
    backend.payments = [payment("pay_1", amount=49.0, days=10), payment("pay_2", invoice_id="inv_2", days=5)]
    says("refund 80 of pay_1", "refund_request", amounts=[80.0], payment_ids=["pay_1"])
    assert run("billing", "refund 80 of pay_1").status is AgentStatus.needs_info
    playbooks.brain._understood.clear()
    says("refund $10 of a payment", "refund_request", amounts=[10.0])
    assert run("billing", "refund $10 of a payment", turn="t2").status is AgentStatus.needs_info
    assert backend.refunds == []


def test_numbers_and_dates_follow_the_text_language_with_the_customers_conventions() -> None:
    from shared.i18n import babel_locale, format_day, format_money

    assert format_day("2027-01-03", babel_locale("es-MX", "es"), None) == "3 de enero de 2027"
    assert format_money(1234.5, "EUR", babel_locale("de-DE", "de")) == "1.234,50\xa0€"
    assert format_day("2027-01-03", babel_locale("de-DE", "en"), None) == "3 January 2027"  # English words
    assert format_money(49, "USD", babel_locale(None, "en")) == "$49.00"
    # a renewal at 23:30 UTC is the next day for a customer in Tokyo
    assert format_day("2027-01-03T23:30:00Z", babel_locale("ja-JP", "en"), "Asia/Tokyo").endswith("4, 2027")


def test_a_knowledge_answer_that_fits_is_sent_however_unsure_the_classifier_was_of_the_intent() -> None:
    backend.kb = [{"article_id": "kb_a", "title": "A", "section": "", "text": "Use offline mode.", "score": 0.8}]
    says("flight with no wifi, my to-dos?", "product_question", 0.45)
    merged = decide(turn("flight with no wifi, my to-dos?"), 0.7)
    assert merged.outcome == "resolved" and merged.reply is not None and "offline mode" in merged.reply
    backend.kb[0]["score"] = 0.1  # below kb_min_score: it says so and escalates
    playbooks.brain._understood.clear()
    assert decide(turn("flight with no wifi, my to-dos?", turn="t2"), 0.7).reason == "low_confidence"


def test_context_and_one_request_is_classified_by_the_request() -> None:
    backend.payments = [payment("pay_1", days=27)]
    text = "I signed up about four weeks ago but the tool isn't for us. Could I have that payment returned?"
    says(text, "product_question", 0.27)
    says("I signed up about four weeks ago but the tool isn't for us.", "product_question", 0.75)
    says("Could I have that payment returned?", "refund_request", 0.9)
    results = turn(text)
    assert results["knowledge"] is not None and results["knowledge"].status is AgentStatus.not_applicable
    assert results["billing"] is not None and results["billing"].status is AgentStatus.answered
    assert backend.refunds == ["pay_1"]


def test_a_part_about_someone_elses_account_hands_the_whole_message_over_and_nothing_moves() -> None:
    # Apart, "refund that one for him" lost the payment it pointed at and refunded the asker's own.
    backend.payments = [payment("pay_1", days=3)]
    text = "My husband got billed on his own account by mistake (payment pay_9). Could you refund that one for him?"
    says(text, "refund_request", 0.53, payment_ids=["pay_9"])
    says("My husband got billed on his own account by mistake (payment pay_9).", "other_account", 0.74)
    says("Could you refund that one for him?", "refund_request", 0.83)
    results = turn(text)
    assert backend.refunds == []
    assert results["billing"] is not None and results["billing"].status is AgentStatus.not_applicable
    account = results["account"]
    assert account is not None and (account.status, account.escalation_reason) == (AgentStatus.escalate, "sensitive")


def test_two_parts_of_one_agent_share_a_read_instead_of_looping() -> None:
    backend.payments = [payment("pay_1", days=3), payment("pay_2", invoice_id="inv_2", amount=19.0, days=2)]
    backend.payments[0]["refunded_amount"] = 49.0
    text = "where is my refund for pay_1? Also please refund pay_2"
    says(text, "refund_status", 0.6)
    says("where is my refund for pay_1?", "refund_status", 0.95, payment_ids=["pay_1"])
    says("Also please refund pay_2", "refund_request", 0.95, payment_ids=["pay_2"])
    r = run("billing", text)
    assert r.status is AgentStatus.answered, r.detail
    assert [c.tool for c in r.tool_calls] == ["list_payments", "refund_payment"]  # one read, used by both parts
    assert backend.refunds == ["pay_2"]
    answer = r.answer or ""
    assert answer.index("(pay_1) has been refunded") < answer.index("refunded your payment of $19.00 (pay_2)")


@pytest.mark.parametrize(
    ("message", "agent", "status"),
    [
        ("help me cancel my subscription to your newsletter", "knowledge", AgentStatus.answered),
        ("I want to cancel my free account", "account", AgentStatus.escalate),  # closing it: a person confirms
        ("wanna see ur money back guarantee", "knowledge", AgentStatus.answered),
    ],
)
def test_the_thing_named_is_the_thing_acted_on(message: str, agent: str, status: AgentStatus) -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    backend.payments = [payment("pay_1", days=3)]
    backend.kb = [{"article_id": "kb_a", "title": "A", "section": "", "text": "See our policy.", "score": 0.8}]
    says(message, "refund_request" if "money back" in message else "cancel_subscription", 0.95)
    results = turn(message)
    assert backend.cancelled == [] and backend.refunds == []
    acted = {a: r.status for a, r in results.items() if r is not None and r.status is not AgentStatus.not_applicable}
    assert acted == {agent: status}


def test_an_invoice_asked_for_is_listed_from_the_customers_own() -> None:
    backend.invoices = [
        {"id": "inv_2", "amount": 49.0, "currency": "USD", "status": "paid", "issued_on": "2026-11-03"},
        {"id": "inv_1", "amount": 49.0, "currency": "USD", "status": "paid", "issued_on": "2026-10-03"},
    ]
    says("send me invoice inv_1", "invoice_request", invoice_ids=["inv_1"])
    r = run("billing", "send me invoice inv_1", locale="en-GB")
    assert r.status is AgentStatus.answered
    assert "- inv_1: US$49.00, issued 3 October 2026 (paid)" in (r.answer or "") and "inv_2" not in (r.answer or "")
    playbooks.brain._understood.clear()
    says("send me invoice inv_9", "invoice_request", invoice_ids=["inv_9"])
    assert run("billing", "send me invoice inv_9", turn="t2").status is AgentStatus.needs_info  # not theirs: ask


def test_a_withheld_knowledge_section_is_never_the_answer() -> None:
    from shared.guardrails.tool_output import WITHHELD

    backend.kb = [
        {"article_id": "kb_x", "title": "X", "section": "", "text": WITHHELD, "answer": WITHHELD, "score": 0.9},
        {"article_id": "kb_y", "title": "Y", "section": "", "text": "Use offline mode.", "score": 0.7},
    ]
    r = run("knowledge", says("phone on a plane?", "product_question"))
    assert (
        r.status is AgentStatus.answered and "offline mode" in (r.answer or "") and "withheld" not in (r.answer or "")
    )
    backend.kb = backend.kb[:1]
    playbooks.brain._understood.clear()
    assert run("knowledge", "phone on a plane?", turn="t2").status is AgentStatus.escalate


def test_unsure_intents_of_one_agent_add_up_to_that_agent_but_never_to_an_action() -> None:
    backend.payments = [payment("pay_1", days=3)]
    ranked = [("refund_request", 0.29), ("duplicate_charge", 0.27), ("payment_problem", 0.25), ("greeting", 0.1)]
    text = says("money thing from last week, sort it", "refund_request", 0.29)
    playbooks.router.rankings[text] = ranked
    results = turn(text)
    billing, knowledge = results["billing"], results["knowledge"]
    assert knowledge is not None and knowledge.status is AgentStatus.not_applicable
    assert billing is not None
    assert (billing.status, billing.escalation_reason) == (AgentStatus.escalate, "low_confidence")
    assert billing.confidence < 0.7 and backend.refunds == []  # 0.81 together, still never a refund


def test_a_confidence_just_under_the_act_threshold_never_rounds_up_onto_it() -> None:
    backend.payments = [payment("pay_1", days=3)]
    r = run("billing", says("please refund pay_1", "refund_request", 0.6996, payment_ids=["pay_1"]))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "low_confidence") and backend.refunds == []


def test_a_hand_off_to_a_person_is_never_pieced_together_from_unsure_readings() -> None:
    backend.kb = [{"article_id": "kb_2fa", "title": "2FA", "section": "", "text": "Use a backup code.", "score": 0.8}]
    ranked = [("product_question", 0.26), ("security_incident", 0.25), ("card_service", 0.23), ("password_reset", 0.04)]
    text = says("new phone, the six-digit sign-in app is gone", "product_question", 0.26)
    playbooks.router.rankings[text] = ranked
    results = turn(text)
    assert results["account"] is not None and results["account"].status is AgentStatus.not_applicable
    assert results["knowledge"] is not None and results["knowledge"].status is AgentStatus.answered


@pytest.mark.parametrize(
    ("locale", "words"),
    [("de-DE", "Ihre Daten zu löschen"), ("es-ES", "borrar tus datos"), ("fr-FR", "suppression de vos données"),
     (None, "delete your data")],
)  # fmt: skip
def test_an_acknowledgement_written_per_language_reaches_the_customer_in_theirs(locale: str | None, words: str) -> None:
    says("delete my account and all my data", "delete_account")
    r = run("account", "delete my account and all my data", locale=locale)
    assert r.status is AgentStatus.escalate and words in (r.customer_note or "")
