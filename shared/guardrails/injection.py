"""Prompt-injection detection on customer messages (EN, ES, FR, DE).

Each rule has a weight; the score is the noisy-OR of the rules that matched
(1 - Π(1 - w)), and a message is flagged at `FLAG_THRESHOLD`. Strong rules (override the
instructions, reveal the prompt, change a limit, DAN, act on another customer) flag alone;
weak cues ("new task", "say: …", "from now on") only flag together. A false positive
escalates an ordinary customer to a human, so every rule is anchored on what the
instruction is about ("previous instructions", "system prompt", "refund limit"), never on
a trigger verb alone: "ignore my last email", "please cancel my previous request" and
"what are your rules for refunds?" match nothing.

A message the rules let through is then read by the learned detector
(`shared.guardrails.injection_model`): when both of its keys turn it counts as one more
strong rule, `learned`. It loads on first use (numpy, scikit-learn and the embedding model:
`import shared.guardrails` stays light), costs one sentence embedding per message, and when
it cannot load the rules work alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.guardrails._text import fold, sentences
from shared.guardrails.injection_rules import (
    ACCOUNT_ACTION,
    CUSTOMER_ID,
    EMAIL,
    OTHER_ACCOUNT_PHRASE,
    RULES,
    TARGET_LINK,
    respell,
)

FLAG_THRESHOLD = 0.5
# The learned detector's two keys together are as sure as a strong rule.
LEARNED_RULE = "learned"
LEARNED_WEIGHT = 0.85
OTHER_ACCOUNT_WEIGHT = 0.85


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
    return _detect([text], customer_email, customer_id)[0]


def detect_injection_batch(texts: Sequence[str]) -> list[InjectionVerdict]:
    """Many texts that belong to no customer (tool outputs, articles): one embedding batch."""
    return _detect(texts, None, None)


def _detect(texts: Sequence[str], customer_email: str | None, customer_id: str | None) -> list[InjectionVerdict]:
    verdicts: list[InjectionVerdict] = []
    undecided: list[tuple[int, str, list[_Match]]] = []
    for i, text in enumerate(texts):
        folded, matched = _matched_rules(text, customer_email, customer_id)
        verdicts.append(_verdict(matched))
        if not verdicts[-1].flagged:  # when the rules are sure, the model would add nothing
            undecided.append((i, _unweighed(text, folded, matched), matched))
    if not undecided:
        return verdicts
    from shared.guardrails.injection_model import learned_scores  # numpy, sklearn: only when needed

    for (i, _, matched), learned in zip(undecided, learned_scores([rest for _, rest, _ in undecided]), strict=True):
        if learned is not None and learned.flagged:
            verdicts[i] = _verdict([*matched, (LEARNED_RULE, LEARNED_WEIGHT, None)])
    return verdicts


def _unweighed(text: str, folded: str, matched: list[_Match]) -> str:
    """What the model reads: a weak cue was weighed by the rules already and found not
    enough ("forget everything, the parcel came"), so the model judges the rest of the
    message, not that phrase a second time."""
    if not matched:
        return text
    for _, _, pattern in matched:
        folded = pattern.sub(" ", folded) if pattern is not None else folded
    return folded


def detect_injection_by_rules(
    text: str, *, customer_email: str | None = None, customer_id: str | None = None
) -> InjectionVerdict:
    """The rules alone: pure Python, microseconds; what `detect_injection` is without a model."""
    return _verdict(_matched_rules(text, customer_email, customer_id)[1])


_Match = tuple[str, float, "re.Pattern[str] | None"]


def _matched_rules(text: str, customer_email: str | None, customer_id: str | None) -> tuple[str, list[_Match]]:
    folded = respell(fold(text))
    matched: list[_Match] = [(name, weight, pattern) for name, weight, pattern in RULES if pattern.search(folded)]
    if _acts_on_another_account(folded, customer_email, customer_id):
        matched.append(("other_account", OTHER_ACCOUNT_WEIGHT, None))
    return folded, matched


def _verdict(matched: list[_Match]) -> InjectionVerdict:
    remaining = 1.0
    for _, weight, _ in matched:
        remaining *= 1.0 - weight
    score = round(1.0 - remaining, 3)
    return InjectionVerdict(
        flagged=score >= FLAG_THRESHOLD,
        rules=tuple(name for name, _, _ in matched),
        score=score,
    )
