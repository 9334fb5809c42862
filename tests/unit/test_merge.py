"""The merge rules, as a support lead would state them."""

from __future__ import annotations

from orchestrator.merge import HOLDING_REPLY, decide
from shared.contracts import AgentResult, AgentStatus, EscalationReason, Fact, ToolCallRecord

T = 0.7


def result(
    agent: str,
    status: AgentStatus,
    answer: str | None = None,
    confidence: float = 0.9,
    reason: EscalationReason | None = None,
) -> AgentResult:
    calls = [ToolCallRecord(call_id=f"c_{agent}", tool="lookup", arguments={}, output={"ok": True})]
    facts = [Fact(statement="looked it up", call_id=f"c_{agent}")] if status is AgentStatus.answered else []
    return AgentResult(
        turn_id="t",
        agent=agent,
        status=status,
        answer=answer,
        confidence=confidence,
        escalation_reason=reason,
        tool_calls=calls,
        facts=facts,
    )


def test_answers_are_combined_in_a_stable_agent_order() -> None:
    d = decide(
        {
            "knowledge": result("knowledge", AgentStatus.answered, "KB."),
            "billing": result("billing", AgentStatus.answered, "Bill."),
            "account": result("account", AgentStatus.not_applicable),
        },
        T,
    )
    assert (d.outcome, d.reply) == ("resolved", "Bill.\n\nKB.")
    assert d.answered_by == ("billing", "knowledge")


def test_any_escalating_agent_escalates_the_turn_with_its_reason() -> None:
    d = decide(
        {
            "billing": result("billing", AgentStatus.escalate, reason=EscalationReason.policy),
            "knowledge": result("knowledge", AgentStatus.answered, "KB."),
        },
        T,
    )
    assert (d.outcome, d.reason, d.reply) == ("escalated", "policy", HOLDING_REPLY)
    assert d.suggested_reply == "KB."


def test_low_confidence_answer_escalates() -> None:
    d = decide({"billing": result("billing", AgentStatus.answered, "Maybe.", confidence=0.69)}, T)
    assert (d.outcome, d.reason) == ("escalated", "low_confidence")


def test_needs_info_asks_exactly_one_question() -> None:
    d = decide(
        {
            "billing": result("billing", AgentStatus.needs_info, "Which invoice?"),
            "account": result("account", AgentStatus.needs_info, "Which email?"),
            "knowledge": result("knowledge", AgentStatus.answered, "KB."),
        },
        T,
    )
    assert (d.outcome, d.reply) == ("clarify", "Which invoice?")


def test_every_agent_timed_out_escalates_with_timeout() -> None:
    d = decide({"billing": None, "knowledge": None, "account": result("account", AgentStatus.timed_out)}, T)
    assert (d.outcome, d.reason) == ("escalated", "timeout")


def test_missing_agent_does_not_block_the_others_answer() -> None:
    d = decide({"billing": None, "knowledge": result("knowledge", AgentStatus.answered, "KB.")}, T)
    assert (d.outcome, d.reply) == ("resolved", "KB.")


def test_nobody_able_to_answer_goes_to_a_human() -> None:
    d = decide({a: result(a, AgentStatus.not_applicable) for a in ("billing", "knowledge", "account")}, T)
    assert (d.outcome, d.reason) == ("escalated", "low_confidence")


def test_failed_agents_without_answers_escalate_as_tool_failure() -> None:
    d = decide(
        {
            "billing": result("billing", AgentStatus.failed),
            "knowledge": result("knowledge", AgentStatus.not_applicable),
        },
        T,
    )
    assert (d.outcome, d.reason) == ("escalated", "tool_failure")


def test_escalating_agent_can_acknowledge_the_request_to_the_customer() -> None:
    r = result("account", AgentStatus.escalate, reason=EscalationReason.policy)
    r = r.model_copy(update={"customer_note": "We've received your deletion request."})
    d = decide({"account": r}, T)
    assert (d.outcome, d.reason, d.reply) == ("escalated", "policy", "We've received your deletion request.")


def test_an_answer_without_tool_evidence_is_dropped() -> None:
    bare = AgentResult(turn_id="t", agent="billing", status=AgentStatus.answered, answer="You are owed 40.",
                       confidence=0.95)  # fmt: skip
    d = decide({"billing": bare, "knowledge": result("knowledge", AgentStatus.answered, "KB.")}, T)
    assert (d.outcome, d.reply) == ("resolved", "KB.")
    alone = decide({"billing": bare}, T)
    assert (alone.outcome, alone.reason) == ("escalated", "low_confidence")


def test_the_holding_reply_speaks_the_customers_language() -> None:
    from orchestrator.merge import escalated
    from shared.i18n import HOLDING_REPLIES, language_of

    assert [language_of(loc) for loc in ("es-MX", "fr_CA", "de", "en-GB")] == ["es", "fr", "de", "en"]
    # The merge writes the holding reply in that language; an agent's own acknowledgement stays its own.
    assert escalated("timeout", language="de").reply == HOLDING_REPLIES["de"]
    assert decide({"billing": None}, 0.7, language="fr").reply == HOLDING_REPLIES["fr"]
    assert escalated("policy", note="A colleague will check the refund.", language="es").reply == (
        "A colleague will check the refund."
    )
    assert escalated("timeout").reply == HOLDING_REPLY
    # No locale: the message's words say, when they clearly do.
    assert language_of(None, "Hola, no puedo entrar en mi cuenta, ¿me ayudas por favor?") == "es"
    assert language_of(None, "Bonjour, je ne peux pas payer ma commande, merci") == "fr"
    assert language_of(None, "Hallo, ich kann nicht auf mein Konto zugreifen, bitte helfen") == "de"
    assert language_of(None, "Hi, I can't log in to my account") == "en"
    assert language_of(None, "mi") == "en"  # one word is not enough
    # A locale we do not write yet: the message, then English.
    assert language_of("ja-JP", "") == "en" and language_of("pt-BR", "Hola, gracias por la ayuda") == "es"
