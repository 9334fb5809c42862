"""Prompt-injection detection on customer messages (EN, ES, FR, DE).

Each rule has a weight; the score is the noisy-OR of the rules that matched
(1 - Π(1 - w)), and a message is flagged at `FLAG_THRESHOLD`. Strong rules (override the
instructions, reveal the prompt, change a limit, DAN, act on another customer) flag alone;
weak cues ("new task", "say: …", "from now on") only flag together. A false positive
escalates an ordinary customer to a human, so every rule is anchored on what the
instruction is about ("previous instructions", "system prompt", "refund limit"), never on
a trigger verb alone: "ignore my last email", "please cancel my previous request" and
"what are your rules for refunds?" match nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.guardrails._text import fold, sentences
from shared.guardrails.injection_rules import (
    ACCOUNT_ACTION,
    CUSTOMER_ID,
    EMAIL,
    OTHER_ACCOUNT_PHRASE,
    RULES,
    TARGET_LINK,
)

FLAG_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    flagged: bool
    rules: tuple[str, ...]  # names of the rules that matched, in rule order
    score: float  # 0..1


def _acts_on_another_account(folded: str, customer_email: str | None, customer_id: str | None) -> bool:
    """An account-changing verb aimed at someone who is not this customer.

    Without the customer's own id or email we cannot tell "refund customer cust_9" (self) from
    an attack, so ids and emails only count when the caller passes them.
    """
    for sentence in sentences(folded):
        if not ACCOUNT_ACTION.search(sentence):
            continue
        if OTHER_ACCOUNT_PHRASE.search(sentence):
            return True
        if customer_id is not None:
            own_id = customer_id.casefold()
            if any(found != own_id for found in CUSTOMER_ID.findall(sentence)):
                return True
        if customer_email is not None:
            own_email = customer_email.strip().casefold()
            for match in EMAIL.finditer(sentence):
                linked = TARGET_LINK.search(sentence[max(0, match.start() - 24) : match.start()])
                if match.group() != own_email and linked:
                    return True
    return False


def detect_injection(
    text: str, *, customer_email: str | None = None, customer_id: str | None = None
) -> InjectionVerdict:
    """Flag instructions aimed at the assistant rather than requests for support."""
    folded = fold(text)
    matched: list[tuple[str, float]] = [(name, weight) for name, weight, pattern in RULES if pattern.search(folded)]
    if _acts_on_another_account(folded, customer_email, customer_id):
        matched.append(("other_account", 0.85))
    remaining = 1.0
    for _, weight in matched:
        remaining *= 1.0 - weight
    score = round(1.0 - remaining, 3)
    return InjectionVerdict(
        flagged=score >= FLAG_THRESHOLD,
        rules=tuple(name for name, _ in matched),
        score=score,
    )
