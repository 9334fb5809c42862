"""An action runs only when the customer asked for that action on that kind of object.

A classifier's intent and score pick a playbook; they are never enough to move money or
change an account. Before a changing tool runs (whatever brain chose it, the local one or
a model), the customer's own words must name the action *and* its object: "refund the
duplicate payment", "cancel my subscription", "I forgot my password". A near miss —
subscribing to a newsletter, cancelling an order, asking for an invoice, a question
about the refund policy — names something else, and the agent hands the turn to a human
instead (``Agent.run``). The near misses we keep are in ``evals/data/near_misses.yaml``.

The rules are per tool; a changing tool without rules here (a company's own, by
``SWITCHBOARD_EXTRA_TOOLS``) is gated by its own service.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.contracts import WindowMessage

_W = r"(?:\W+\w+){0,4}?\W+"  # up to four words between an action and its object


@dataclass(frozen=True)
class Asks:
    """What a request for one tool says: the action with its object near it, and what
    makes the same words something else (a question about the policy, a negation)."""

    request: re.Pattern[str]
    unless: re.Pattern[str] | None = None
    # A request form overrides ``unless``: "Please refund it. How long does it take?"
    insists: re.Pattern[str] | None = None

    def met(self, text: str) -> bool:
        if not self.request.search(text):
            return False
        if self.unless is not None and self.unless.search(text):
            return bool(self.insists is not None and self.insists.search(text))
        return True


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_REFUND_OBJECT = (
    r"(?:payments?|paid|charges?|charged|charging|invoices?|bills?|billed|billing|transactions?|subscription|"
    r"orders?|purchases?|money|duplicate|double|twice|pay_\w+|inv_\w+|\$\s?\d|\d+(?:[.,]\d\d)?)"
)
_REFUND = r"(?:refund\w*|reimburs\w*|money back|charge ?back|reverse|reversal)"

_DUPLICATE = (
    r"(?:charged|billed|took|taken|paid|debited)\b(?:\W+\w+){0,8}?\W+(?:twice|two\s+times|double)\b"
    r"|\bduplicate\s+(?:charge|payment)|\bdouble[-\s]?(?:charged|billed|charge)"
)
_MONEY = r"(?:payment|charge|money|that|it|this)"

RULES: dict[str, Asks] = {
    "refund_payment": Asks(
        request=_rx(
            rf"\b{_REFUND}\b{_W}{_REFUND_OBJECT}|\b{_REFUND_OBJECT}\b{_W}{_REFUND}\b"
            rf"|\b{_REFUND}\b(?:\W+\w+)?\W+(?:it|them|that|this|both|me)\b"
            r"|\b(?:it|them|that|this|both)\b(?:\W+\w+){0,2}?\W+refunded\b"
            # the money back in other words: "can I get that back?", "have that payment returned"
            rf"|\b{_REFUND_OBJECT}\b.*\b(?:get|have|want|need)\W+(?:\w+\W+){{0,2}}?back\b"
            # "I'd like my 49 dollars back", "give me the 20 bucks back"
            r"|\b(?:i'?d\s+like|i\s+would\s+like|i\s+want|i\s+need|give\s+me|can\s+i\s+(?:get|have)|could\s+i\s+(?:get|have))"
            r"\W+(?:my\W+|the\W+|those\W+|that\W+)?(?:\$\s?\d+(?:[.,]\d\d)?|\d+(?:[.,]\d\d)?\s*(?:dollars|euros|bucks|pounds|usd|eur|€|\$)"
            r"|money|cash)\W+(?:\w+\W+){0,2}?back\b"
            rf"|\b{_MONEY}\W+(?:\w+\W+){{0,2}}?returned\b|\breturn\w*\W+(?:\w+\W+){{0,2}}?(?:payment|charge|money)\b"
            # a duplicate charge the customer asks us to put right
            rf"|(?:{_DUPLICATE}).*\b(?:fix|sort|resolve|correct|undo|reverse)\w*\b"
        ),
        # A question about refunds in general is not a request for one.
        unless=_rx(
            r"\brefunds?\s+(?:policy|policies|rules|terms|process|window|time)\b|\bhow\s+(?:long|many\s+days|much\s+time|do|does)\b"
            r"|\bwhen\s+(?:will|do|does|would)\b|\bdo\s+you\s+(?:offer|give|do|allow)\b|\bwhat\s+is\s+your\b|\bpolicy\b"
            r"|\b(?:don'?t|do\s+not|no\s+need\s+to|never)\s+(?:\w+\s+){0,2}refund"
        ),
        insists=_rx(
            r"\b(?:please|pls|i\s+want|i'?d\s+like|i\s+would\s+like|i\s+need|give\s+me|issue|process|refund\s+(?:me|my|the|this|that|it|both|pay_))\b"
        ),
    ),
    "cancel_subscription": Asks(
        request=_rx(
            rf"\b(?:cancel\w*|terminate|end|stop|discontinue|unsubscribe)\b{_W}(?:subscription|plan|membership|renewal|auto-?renew\w*)\b"
            r"|\b(?:subscription|plan|membership)\b(?:\W+\w+){0,3}?\W+(?:cancel\w*|terminated|ended|stopped)\b"
            # the renewal in other words: "make sure my plan doesn't renew"
            r"|\b(?:subscription|plan|membership)\b(?:\W+\w+){0,2}?\W+(?:doesn'?t|does\s+not|won'?t|will\s+not|not)"
            r"\s+(?:auto-?)?renew\b"
            r"|\b(?:don'?t|do\s+not|stop\s+(?:the\s+)?)(?:auto-?)?renew\w*\W+(?:\w+\W+){0,2}?(?:plan|subscription|membership)\b"
        ),
        unless=_rx(r"\b(?:don'?t|do\s+not|never|not)\s+(?:\w+\s+){0,2}(?:cancel|end|stop|terminate)"),
    ),
    "send_password_reset": Asks(
        request=_rx(
            r"\b(?:reset\w*|forg[oe]t\w*|change|recover\w*|new|lost)\b(?:\W+\w+){0,3}?\W+(?:password|passcode|pass\s?word|log\s?in|sign\s?in|credentials)\b"
            r"|\b(?:can'?t|cannot|can\s+not|unable\s+to|couldn'?t)\s+(?:log|sign)\s?(?:in|on|into)\b|\blocked\s+out\b"
            r"|\bpassword\b(?:\W+\w+){0,3}?\W+(?:reset|doesn'?t\s+work|not\s+working|wrong|expired)"
        ),
    ),
}


def customer_words(window: Sequence[WindowMessage]) -> str:
    """What the customer said on this turn: the latest message, and the one before it when
    we asked a question in between (an answer like "the second one" carries the request)."""
    said = [m for m in window if m.role == "customer"]
    if not said:
        return ""
    text = said[-1].body
    if len(window) >= 2 and window[-2].role == "assistant" and len(said) >= 2:
        text = f"{said[-2].body}\n{text}"
    return text


def asked_for(tool: str, text: str) -> bool:
    """True when ``text`` asks for ``tool``'s action on its kind of object (or the tool has no rules)."""
    rule = RULES.get(tool)
    return True if rule is None else rule.met(text)


# What we ask before a change the customer did not name, and the answer that consents.
_CONFIRM = "Just to be sure before I change anything: do you want me to {action}? Reply yes and I will."
_ACTIONS = {
    "refund_payment": "refund {target}",
    "cancel_subscription": "cancel your subscription at the end of the current period",
    "send_password_reset": "send a password reset link to the email address on file",
}
_YES = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|ok(?:ay)?|please\s+do|go\s+ahead|do\s+it|confirm(?:ed)?|correct|that'?s\s+right)\b",
    re.IGNORECASE,
)


def confirmation(tool: str, arguments: dict[str, object]) -> str:
    """The question an agent asks instead of a change the customer did not name."""
    payment = arguments.get("payment_id")
    amount = arguments.get("amount")
    target = f"payment {payment}" if payment else "that payment"
    if amount:
        target += f" ({amount})"
    action = _ACTIONS.get(tool, f"run {tool}").format(target=target)
    return _CONFIRM.format(action=action)


def consented(tool: str, window: Sequence[WindowMessage]) -> bool:
    """The customer asked for ``tool``'s action in words, or said yes to our question about it."""
    if asked_for(tool, customer_words(window)):
        return True
    if len(window) < 2 or window[-1].role != "customer" or window[-2].role != "assistant":
        return False
    asked = _ACTIONS.get(tool, f"run {tool}").split("{")[0].strip()
    question = window[-2].body
    return "before I change anything: do you want me to " + asked in question and bool(_YES.search(window[-1].body))
