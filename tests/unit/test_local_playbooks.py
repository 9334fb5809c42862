"""The local brain runs each agent's playbook as written (intent engine stubbed, tools faked).

The intent engine and the real sandbox tools are tested on their own; here the question
is whether POLICY.md, as written in the playbooks, leads to the right outcome.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.account.agent import profile as account_profile
from agents.base import Agent
from agents.billing.agent import profile as billing_profile
from agents.knowledge.agent import profile as knowledge_profile
from shared.brains.local import LocalBrain
from shared.contracts import AgentResult, AgentStatus, AgentTask, Customer, WindowMessage
from shared.errors import PolicyViolation
from shared.settings import Settings
from shared.tools import ToolArgs, ToolContext, ToolRegistry

NOW = datetime.now(UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).isoformat()


def payment(
    payment_id: str, *, invoice_id: str = "inv_1", amount: float = 49.0, card_last4: str = "4242", **age: float
) -> dict[str, Any]:
    """A succeeded payment as list_payments shows it, made ``age`` ago (e.g. days=3)."""
    refunded = age.pop("refunded_amount", None)
    record: dict[str, Any] = {
        "id": payment_id,
        "invoice_id": invoice_id,
        "amount": amount,
        "currency": "USD",
        "card_last4": card_last4,
        "status": "succeeded",
        "created_at": ago(**age),
    }
    if refunded is not None:
        record["refunded_amount"] = refunded
    return record


class Backend:
    """What the fake tools read and record."""

    def __init__(self) -> None:
        self.payments: list[dict[str, Any]] = []
        self.invoices: list[dict[str, Any]] = []
        self.subscription: dict[str, Any] | None = None
        self.orders: list[dict[str, Any]] = []
        self.kb: list[dict[str, Any]] = []
        self.refunds: list[str] = []
        self.resets = 0
        self.cancelled: list[str] = []
        self.ceiling = 100.0


backend = Backend()
tools = ToolRegistry()


class NoArgs(ToolArgs):
    pass


class Limit(ToolArgs):
    limit: int = 10


class RefundArgs(ToolArgs):
    payment_id: str
    amount: float | None = None
    reason: str = ""


class SubArgs(ToolArgs):
    subscription_id: str | None = None


class Query(ToolArgs):
    query: str


@tools.tool(owners=("billing",))
def list_payments(ctx: ToolContext, args: Limit) -> dict[str, Any]:
    return {"payments": backend.payments}


@tools.tool(owners=("billing",))
def list_invoices(ctx: ToolContext, args: Limit) -> dict[str, Any]:
    return {"invoices": backend.invoices}


@tools.tool(owners=("billing",), side_effect="money")
def refund_payment(ctx: ToolContext, args: RefundArgs) -> dict[str, Any]:
    payment = next(p for p in backend.payments if p["id"] == args.payment_id)
    if payment["amount"] > backend.ceiling:
        raise PolicyViolation("over the automatic limit: a human must approve it")
    if args.amount is not None and args.amount > payment["amount"]:
        raise PolicyViolation("more than was paid")
    backend.refunds.append(args.payment_id if args.amount is None else f"{args.payment_id}:{args.amount:.2f}")
    return {"refunded": True, "payment_id": args.payment_id}


@tools.tool(owners=("billing",))
def get_subscription(ctx: ToolContext, args: SubArgs) -> dict[str, Any]:
    return backend.subscription or {"subscription": None}


@tools.tool(owners=("billing",), side_effect="write")
def cancel_subscription(ctx: ToolContext, args: SubArgs) -> dict[str, Any]:
    backend.cancelled.append(str(args.subscription_id))
    return {"cancelled": True}


@tools.tool(owners=("account",), side_effect="write")
def send_password_reset(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
    backend.resets += 1
    return {"sent_to": ctx.customer_email}


@tools.tool(owners=("account",))
def list_orders(ctx: ToolContext, args: Limit) -> dict[str, Any]:
    return {"orders": backend.orders}


@tools.tool(owners=("knowledge",))
def search_knowledge_base(ctx: ToolContext, args: Query) -> dict[str, Any]:
    return {"results": backend.kb}


class StubRouter:
    """Stands in for the embedding classifier: the test says what the message means."""

    def __init__(self) -> None:
        self.meaning: dict[str, tuple[str, float, dict[str, Any]]] = {}
        self.rankings: dict[str, list[tuple[str, float]]] = {}  # the likeliest intents, when a test says

    def classify(self, text: str) -> tuple[str, float]:
        intent, confidence, _ = self.meaning.get(text, ("vague", 0.9, {}))
        return intent, confidence

    def ranked(self, text: str, k: int) -> list[tuple[str, float]]:
        return self.rankings.get(text) or [self.classify(text)]

    def entities(self, text: str, *, now: datetime, timezone: str | None) -> dict[str, Any]:
        return self.meaning.get(text, ("", 0.0, {}))[2]


router = StubRouter()
PROFILES = {"billing": billing_profile, "account": account_profile, "knowledge": knowledge_profile}
brain = LocalBrain(Settings(kb_min_score=0.5), PROFILES, router=router)


@pytest.fixture(autouse=True)
def fresh() -> None:
    global backend
    backend.__init__()  # type: ignore[misc]
    router.meaning.clear()
    router.rankings.clear()
    brain._understood.clear()


def run(agent: str, *messages: str, turn: str = "t1", locale: str | None = None, tz: str | None = None) -> AgentResult:
    window = [WindowMessage(role="customer" if i % 2 == 0 else "assistant", body=m) for i, m in enumerate(messages)]
    task = AgentTask(
        turn_id=turn,
        conversation_id="c1",
        agent=agent,
        source="helpdesk",
        tenant="demo",
        customer=Customer(id="cust_1", email="ana@example.com", name="Ana Ruiz", locale=locale, timezone=tz),
        window=window,
        deadline_at=time.time() + 3,
        published_at=time.time(),
    )
    return Agent(name=agent, tools=list(tools)).run(task, brain)


def says(text: str, intent: str, confidence: float = 0.9, **entities: Any) -> str:
    router.meaning[text] = (intent, confidence, entities)
    return text


def test_duplicate_charge_refunds_the_later_payment_once() -> None:
    backend.payments = [
        payment("pay_1", hours=145),
        payment("pay_2", hours=144),
    ]
    r = run("billing", says("charged twice, please refund the duplicate", "duplicate_charge"))
    assert r.status is AgentStatus.answered and backend.refunds == ["pay_2"]
    assert "refunded" in (r.answer or "") and "4242" in (r.answer or "")
    assert r.actions and all(f.call_id in {c.call_id for c in r.tool_calls} for f in r.facts)


def test_refund_outside_the_window_is_declined_citing_the_window() -> None:
    backend.payments = [payment("pay_1", card_last4="1881", days=75)]
    r = run("billing", says("refund please", "refund_request"))
    assert r.status is AgentStatus.answered and backend.refunds == []
    assert "30 days" in (r.answer or "")


def test_refund_over_the_ceiling_escalates_as_policy() -> None:
    backend.payments = [payment("pay_1", amount=199.0, card_last4="0005", days=4)]
    r = run("billing", says("refund the 199", "refund_request", amounts=[199.0]))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "policy") and backend.refunds == []


def test_refund_of_everything_escalates_without_touching_payments() -> None:
    r = run("billing", says("refund everything you ever took", "refund_request"))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "policy")
    assert r.tool_calls == []


def test_already_refunded_payment_is_not_refunded_again() -> None:
    backend.payments = [payment("pay_1", card_last4="1", refunded_amount=49.0, days=2)]
    r = run("billing", says("refund pay_1", "refund_request", payment_ids=["pay_1"]))
    assert r.status is AgentStatus.answered and "already been refunded" in (r.answer or "")
    assert backend.refunds == []


def test_ambiguous_refund_asks_which_payment() -> None:
    backend.payments = [
        payment("pay_1", days=40),
        payment("pay_2", invoice_id="inv_2", days=10),
    ]
    r = run("billing", says("I want a refund", "refund_request"))
    assert r.status is AgentStatus.needs_info and "Which payment" in (r.answer or "")


def test_answer_to_the_question_carries_the_intent_over() -> None:
    backend.payments = [
        payment("pay_1", card_last4="1", days=40),
        payment("pay_2", invoice_id="inv_2", amount=19.0, card_last4="1", days=10),
    ]
    first = says("I want a refund", "refund_request")
    answer = says("the 19 dollar one", "vague", 0.2, amounts=[19.0])
    r = run("billing", first, "Which payment would you like refunded?", answer, turn="t2")
    assert r.status is AgentStatus.answered and backend.refunds == ["pay_2"]


def test_cancellation_ends_at_period_end_without_refund() -> None:
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    r = run("billing", says("cancel my plan", "cancel_subscription"))
    assert r.status is AgentStatus.answered and backend.cancelled == ["sub_1"]
    assert "no refund" in (r.answer or "")


def test_other_agents_stay_out_of_a_billing_turn() -> None:
    message = says("cancel my plan", "cancel_subscription")
    assert run("account", message).status is AgentStatus.not_applicable
    assert run("knowledge", message).status is AgentStatus.not_applicable


def test_password_reset_goes_to_the_email_on_file() -> None:
    r = run("account", says("forgot my password", "password_reset"))
    assert r.status is AgentStatus.answered and backend.resets == 1 and "reset" in (r.answer or "")


def test_reset_to_another_address_escalates_as_sensitive() -> None:
    r = run("account", says("send the reset to my gmail", "password_reset_elsewhere"))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "sensitive") and backend.resets == 0


def test_order_status_picks_the_order_by_the_item_named() -> None:
    backend.orders = [
        {"id": "ord_1", "items": [{"name": "Desk Hub"}], "status": "shipped", "placed_on": ago(days=3)},
        {"id": "ord_2", "items": [{"name": "Headset"}], "status": "delivered", "placed_on": ago(days=1)},
    ]
    r = run("account", says("where is my desk hub", "order_status"))
    assert r.status is AgentStatus.answered and "ord_1" in (r.answer or "") and "shipped" in (r.answer or "")


def test_knowledge_answer_is_the_sentences_that_answer_and_cites_the_article() -> None:
    backend.kb = [
        {
            "article_id": "kb_export_data",
            "title": "Exporting",
            "section": "Export to CSV",
            "text": "Choose **Settings → Export** and pick\nCSV. The file has one row per task.\n\nJSON is on pro.",
            "answer": "Choose Settings → Export and pick CSV. The file has one row per task.",
            "score": 0.71,
        }
    ]
    r = run("knowledge", says("tasks into a spreadsheet?", "product_question"))
    assert r.status is AgentStatus.answered
    assert r.answer == (
        "Choose Settings → Export and pick CSV. The file has one row per task.\n\n"
        "(From our help article “Exporting”, kb_export_data.)"
    )


def test_knowledge_result_without_an_answer_replies_with_its_text_as_one_plain_paragraph() -> None:
    backend.kb = [
        {
            "article_id": "kb_export_data",
            "title": "Exporting",
            "section": "Export to CSV",
            "text": "Choose **Settings → Export** and pick\nCSV.",
            "score": 0.71,
        }
    ]
    r = run("knowledge", says("tasks into a spreadsheet?", "product_question"))
    assert r.answer == "Choose Settings → Export and pick CSV.\n\n(From our help article “Exporting”, kb_export_data.)"


def test_knowledge_below_the_threshold_says_it_does_not_know() -> None:
    backend.kb = [{"article_id": "kb_x", "title": "X", "section": "", "text": "unrelated", "score": 0.2}]
    r = run("knowledge", says("weather in Paris?", "product_question"))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "low_confidence")


def test_unrecognised_message_goes_to_the_knowledge_base() -> None:
    backend.kb = [{"article_id": "kb_a", "title": "A", "section": "", "text": "Answer.", "score": 0.8}]
    message = says("quantum entanglement of my kanban", "cancel_subscription", 0.1)
    assert run("knowledge", message).status is AgentStatus.answered
    assert run("billing", message).status is AgentStatus.not_applicable


def test_vague_message_gets_one_specific_question() -> None:
    r = run("knowledge", says("it doesn't work", "vague"))
    assert r.status is AgentStatus.needs_info and (r.answer or "").count("?") == 1


def test_legal_threat_escalates_as_policy() -> None:
    r = run("billing", says("I'll sue you", "legal_threat"))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "policy")


def test_unsure_intent_never_moves_money() -> None:
    backend.payments = [payment("pay_1", card_last4="1", days=2)]
    r = run("billing", says("money back timing?", "refund_request", 0.55))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "low_confidence")
    assert [c.tool for c in r.tool_calls] == ["list_payments"] and backend.refunds == []


def test_unsure_intent_still_escalates_for_the_right_reason_before_acting() -> None:
    r = run("account", says("send the reset link to [email] instead", "password_reset", 0.6))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "sensitive") and backend.resets == 0


def test_refund_of_a_payment_that_is_not_the_customers_escalates_as_sensitive() -> None:
    backend.payments = [payment("pay_1", card_last4="1", days=2)]
    r = run("billing", says("refund pay_999 for my husband", "refund_request", payment_ids=["pay_999"]))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "sensitive") and backend.refunds == []
    assert r.customer_note and "pay_999" not in r.customer_note


def test_legal_threat_hidden_in_a_product_complaint_goes_to_a_human() -> None:
    r = run("billing", says("My lawyer is preparing a claim about the lost data.", "product_question"))
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "policy")


def test_an_amount_that_matches_no_payment_asks_which_and_refunds_nothing() -> None:
    # F4: "$10 of my subscription payment" once refunded the latest payment (99.00) in full.
    backend.payments = [
        payment("pay_1", amount=49.0, days=10),
        payment("pay_2", invoice_id="inv_2", amount=99.0, days=5),
    ]
    r = run("billing", says("Please refund $10 of my subscription payment", "refund_request", amounts=[10.0]))
    assert r.status is AgentStatus.needs_info and "Which payment" in (r.answer or "")
    assert backend.refunds == []


def test_a_classifier_score_alone_never_changes_anything() -> None:
    # The intents and scores a real classifier gave these (issue 8): none asks for the change.
    backend.subscription = {"id": "sub_1", "plan": "pro", "status": "active", "renews_on": ago(days=-12)}
    backend.payments = [payment("pay_1", hours=145), payment("pay_2", hours=144)]
    for text, intent in (
        ("help me subscribe to your company newsletter", "cancel_subscription"),
        ("assistance with cancelling order 3707955617", "cancel_subscription"),
        ("get invoice from 2 purchases ago", "refund_request"),
        ("what is your refund policy?", "refund_request"),
    ):
        r = run("billing", says(text, intent, 0.83))
        assert backend.cancelled == [] and backend.refunds == [], text
        assert r.status is not AgentStatus.failed, text


def test_a_duplicate_charge_told_without_a_request_is_refunded_only_after_a_yes() -> None:
    backend.payments = [payment("pay_1", hours=145), payment("pay_2", hours=144)]
    told = says("you took the same 49 from my card two times this week", "duplicate_charge")
    asked = run("billing", told)
    assert asked.status is AgentStatus.needs_info and backend.refunds == []
    assert asked.answer is not None and "do you want me to refund payment pay_2" in asked.answer
    yes = says("yes please", "vague", 0.2)
    done = run("billing", told, asked.answer, yes, turn="t2")
    assert done.status is AgentStatus.answered and backend.refunds == ["pay_2"]
