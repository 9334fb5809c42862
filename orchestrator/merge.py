"""Turning the agents' results into one outcome: a reply, one question, or an escalation.

Pure functions of the results, so the rules are unit-tested without any service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts import AgentResult, AgentStatus, EscalationReason, Outcome
from shared.settings import AGENTS

HOLDING_REPLY = (
    "Thanks for your message. I've passed it to a member of our support team, "
    "who will pick it up and reply to you here."
)
# The holding reply in the customer's language: by their locale, else by the words of
# their message; English when neither says.
HOLDING_REPLIES = {
    "en": HOLDING_REPLY,
    "es": "Gracias por tu mensaje. Se lo he pasado a una persona de nuestro equipo de soporte, "
    "que lo revisará y te responderá aquí.",
    "fr": "Merci pour votre message. Je l'ai transmis à un membre de notre équipe d'assistance, "
    "qui le prendra en charge et vous répondra ici.",
    "de": "Danke für Ihre Nachricht. Ich habe sie an ein Mitglied unseres Support-Teams weitergegeben, "
    "das sich darum kümmert und Ihnen hier antwortet.",
}


# Words common in one of these languages and rare in the others' support messages.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MARKERS = {
    "es": _words("hola gracias por favor mi cuenta tengo quiero pago puedo ayuda cobro pedido funciona"),
    "fr": _words("bonjour merci mon compte je ne pas suis veux paiement aide commande votre est"),
    "de": _words("hallo danke mein konto ich nicht bitte habe zahlung hilfe bestellung ist und"),
}


def language_of(locale: str | None, text: str = "") -> str:
    """The language to answer in: the locale's, if we write it; else the message's, when at
    least two of its words are markers of one language and more than of any other."""
    if locale:
        language = locale.replace("_", "-").split("-")[0].lower()
        if language in HOLDING_REPLIES:
            return language
    words = {w.strip(".,;:!?¿¡'\"()").lower() for w in text.split()}
    counts = {lang: len(words & markers) for lang, markers in _MARKERS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    ranked = sorted(counts.values(), reverse=True)
    return best if ranked[0] >= 2 and ranked[0] > ranked[1] else "en"


# The order in which drafts are put together in a reply and reasons are reported: the
# same agents as shared.settings.AGENTS, but account before knowledge, so an answer about
# the customer's own records comes before the general article.
AGENT_ORDER = ("billing", "account", "knowledge")
assert sorted(AGENT_ORDER) == sorted(AGENTS)


@dataclass(frozen=True)
class MergeDecision:
    outcome: Outcome
    reply: str | None
    reason: str | None = None
    suggested_reply: str | None = None
    answered_by: tuple[str, ...] = ()


def escalated(
    reason: EscalationReason | str,
    suggested: str | None = None,
    answered_by: tuple[str, ...] = (),
    note: str | None = None,
    *,
    language: str = "en",
) -> MergeDecision:
    """The customer hears the escalating agent's acknowledgement, or the holding reply in
    their ``language`` (``language_of``)."""
    holding = HOLDING_REPLIES.get(language, HOLDING_REPLY)
    return MergeDecision(Outcome.escalated, note or holding, str(reason), suggested, answered_by)


def _ordered(results: dict[str, AgentResult | None]) -> list[tuple[str, AgentResult | None]]:
    rank = {a: i for i, a in enumerate(AGENT_ORDER)}
    return sorted(results.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def decide(results: dict[str, AgentResult | None], threshold: float, *, language: str = "en") -> MergeDecision:
    """Apply the merge rules. A missing result (None) is an agent that timed out. ``language``:
    of the holding reply, when the turn escalates."""
    ordered = _ordered(results)
    present = [(a, r) for a, r in ordered if r is not None]
    # An answer is only as good as the tool calls behind it: one that cites none is dropped
    # (AgentResult already refuses citations of calls that did not happen or failed).
    answered = [(a, r) for a, r in present if r.status is AgentStatus.answered and r.facts]
    suggested = "\n\n".join(r.answer for _, r in answered if r.answer) or None

    def escalate(reason: EscalationReason | str, note: str | None = None) -> MergeDecision:
        return escalated(reason, suggested, tuple(a for a, _ in answered), note, language=language)

    for _, r in present:
        if r.status is AgentStatus.escalate:
            return escalate(r.escalation_reason or EscalationReason.policy, r.customer_note)

    questions = [r for _, r in present if r.status is AgentStatus.needs_info and r.answer]
    if not answered and not questions:
        timed_out = any(r is None or r.status is AgentStatus.timed_out for _, r in ordered)
        if timed_out:
            return escalate(EscalationReason.timeout)
        if any(r.status is AgentStatus.failed for _, r in present):
            return escalate(EscalationReason.tool_failure)
        return escalate(EscalationReason.low_confidence)

    if any(r.confidence < threshold for _, r in answered):
        return escalate(EscalationReason.low_confidence)
    if questions:
        return MergeDecision(Outcome.clarify, questions[0].answer, answered_by=tuple(a for a, _ in answered))
    reply = "\n\n".join(r.answer for _, r in answered if r.answer)
    if not reply:
        return escalate(EscalationReason.low_confidence)
    return MergeDecision(Outcome.resolved, reply, answered_by=tuple(a for a, _ in answered))


def escalation_summary(
    customer: dict[str, Any],
    message: str,
    decision: MergeDecision,
    results: dict[str, AgentResult],
    missing: list[str],
    actions: Sequence[str] = (),
) -> str:
    """What a human needs to pick the ticket up without reading every row. ``actions`` are
    the changes on the record for the turn (the actions table), whatever the agents reported."""
    who = customer.get("name") or customer.get("id")
    lines = [
        f"Escalated: {decision.reason}.",
        f"Customer: {who} <{customer.get('email') or 'no email'}> (id {customer.get('id')}).",
        f"Message: {message[:500]}{'…' if len(message) > 500 else ''}",
    ]
    for agent, r in _ordered(dict(results)):
        if r is None:
            continue
        line = f"- {agent}: {r.status.value} (confidence {r.confidence:.2f})"
        if r.escalation_reason:
            line += f", reason {r.escalation_reason.value}"
        if r.detail:
            line += f" — {r.detail}"
        lines.append(line)
        lines.extend(f"    fact: {f.statement}" for f in r.facts)
        lines.extend(f"    action: {c.tool}({c.arguments})" for c in r.tool_calls if c.call_id in set(r.actions))
    lines.extend(f"- {agent}: no result before the deadline" for agent in missing)
    if actions:
        lines.append("Done on this turn (from the record, whatever the agents reported):")
        lines.extend(f"- {line}" for line in actions)
    if decision.suggested_reply:
        lines.append("Suggested reply (drafts of the agents that answered) is attached.")
    return "\n".join(lines)
