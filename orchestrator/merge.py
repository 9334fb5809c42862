"""Turning the agents' results into one outcome: a reply, one question, or an escalation.

Pure functions of the results, so the rules are unit-tested without any service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts import AgentResult, AgentStatus, EscalationReason, Outcome
from shared.i18n import HOLDING_REPLIES, REST_PASSED_ON
from shared.settings import AGENTS

# The holding reply in English; escalated() picks the customer's (shared.i18n.language_of).
HOLDING_REPLY = HOLDING_REPLIES["en"]


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
    # A message that asks several things is answered in the customer's order.
    answered.sort(key=lambda ar: _position(ar[1]))
    suggested = "\n\n".join(r.answer for _, r in answered if r.answer) or None

    def escalate(reason: EscalationReason | str, note: str | None = None) -> MergeDecision:
        return escalated(reason, suggested, tuple(a for a, _ in answered), note, language=language)

    # The parts of a several-part message already answered, surely enough to send: the
    # customer is told them whatever happens to the rest.
    sure_parts = [r.answer for _, r in answered if r.part_start is not None and r.answer and r.confidence >= threshold]
    for _, r in present:
        if r.status is AgentStatus.escalate:
            note = r.customer_note
            if sure_parts and r.part_start is not None:
                rest = note or REST_PASSED_ON.get(language, REST_PASSED_ON["en"])
                note = "\n\n".join([*sure_parts, rest])
            return escalate(r.escalation_reason or EscalationReason.policy, note)

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
        question = questions[0].answer
        if sure_parts and questions[0].part_start is not None:
            question = "\n\n".join([*sure_parts, question or ""])
        return MergeDecision(Outcome.clarify, question, answered_by=tuple(a for a, _ in answered))
    reply = "\n\n".join(r.answer for _, r in answered if r.answer)
    if not reply:
        return escalate(EscalationReason.low_confidence)
    return MergeDecision(Outcome.resolved, reply, answered_by=tuple(a for a, _ in answered))


def _position(result: AgentResult) -> int:
    return result.part_start if result.part_start is not None else 1 << 30


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
