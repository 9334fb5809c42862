"""The parts of a customer message that may ask different things, and questions vs requests.

"I was charged twice, and I also can't log in" asks billing and account for one thing each;
"export my data and then cancel my plan" asks two agents in order. `split_parts` cuts a
message where a new request can start (a sentence end, "and also", "and then", ", and",
"also", "plus", and their Spanish, French and German counterparts) and keeps each piece's
span in the original text, so every agent acts on its own part and the merge can answer
in the customer's order. A piece of fewer than `MIN_PART_WORDS` words is glued to its
neighbour: "Hi, thanks" or "and" alone asks nothing.

`is_question` and `is_statement` tell a question from a piece of context ("I signed up a
month ago"), which asks the knowledge base nothing.

`is_policy_question` tells a question about how things work ("in what cases can I get a
refund?", "how long do refunds take?", "what does it cost to cancel?") from a request to
act ("can you refund my last payment?", "I want to cancel"). Only a request starts an
action; a question goes to the knowledge base.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_PART_WORDS = 3

# Where a new request may begin. The separator itself belongs to neither part.
_BOUNDARY = re.compile(
    r"(?<=[.!?;])\s+|\n+|"
    r",?\s+\b(?:and\s+(?:also|then|additionally)|and\s+after\s+that|also|plus|as\s+well\s+as|"
    r"y\s+(?:también|luego|además)|además|et\s+(?:aussi|ensuite|puis)|aussi|"
    r"und\s+(?:auch|dann|außerdem)|außerdem)\b,?\s*|"
    r",\s+and\s+|\s+and\s+(?=(?:i|i'm|i've|my|please|can|could|you|then|"
    r"reset|cancel|refund|send|change|update|delete|close|export|tell|show|check|fix|remove|add)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int

    def of(self, text: str) -> str:
        return text[self.start : self.end]


def split_parts(text: str) -> list[Span]:
    """Non-overlapping spans of ``text`` in order; one span covering it when it has no parts."""
    spans: list[Span] = []
    position = 0
    for match in _BOUNDARY.finditer(text):
        if match.start() > position:
            spans.append(Span(position, match.start()))
        position = match.end()
    if position < len(text):
        spans.append(Span(position, len(text)))
    spans = [s for s in (_trimmed(text, s) for s in spans) if s is not None]
    # A short piece joins the piece after it ("I" + "also can't log in"); the last one joins
    # the piece before it.
    merged: list[Span] = []
    pending: Span | None = None
    for span in spans:
        if pending is not None:
            span, pending = Span(pending.start, span.end), None
        if _words(span.of(text)) < MIN_PART_WORDS:
            pending = span
        else:
            merged.append(span)
    if pending is not None:
        if merged:
            merged[-1] = Span(merged[-1].start, pending.end)
        else:
            merged.append(pending)
    return merged or [Span(0, len(text))]


def _trimmed(text: str, span: Span) -> Span | None:
    piece = span.of(text)
    stripped = piece.strip(" \t\r\n,;")
    if not stripped:
        return None
    start = span.start + piece.index(stripped)
    return Span(start, start + len(stripped))


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


# A request: the customer asks us to do something, or says they want it done.
_REQUEST = re.compile(
    r"\b(?:please|pls|can\s+you|could\s+you|would\s+you|will\s+you|i\s+(?:want|need|would\s+like|'d\s+like)|"
    r"i'd\s+like|i\s+wish|i\s+demand|give\s+me|send\s+me|do\s+it|go\s+ahead|"
    r"(?:refund|cancel|reset|delete|close|stop|change|update|reverse|return)\s+(?:my|me|it|the|our|this|that)|"
    r"por\s+favor|quiero|necesito|je\s+veux|je\s+voudrais|pouvez-vous|s'il\s+vous\s+pla[iî]t|"
    r"bitte|ich\s+(?:möchte|will|brauche))\b",
    re.IGNORECASE,
)
# A question about how things work in general.
_POLICY_QUESTION = re.compile(
    r"^\s*(?:in\s+what\s+cases|in\s+which\s+cases|when\s+(?:can|do|does|will|is|are)|how\s+(?:long|much|many|soon|often|does|do|is|are)|"
    r"what\s+(?:does|do|is|are|happens|if|would|will)|which|is\s+(?:it|there)|are\s+(?:there|you)|do\s+you|does\s+(?:it|your|the)|"
    r"can\s+i|could\s+i|may\s+i|am\s+i\s+(?:able|allowed|eligible)|"
    r"cu[aá]nto|cu[aá]ndo|c[oó]mo|combien|quand|comment|est-ce\s+que|wie\s+(?:lange|viel)|wann|kann\s+ich)\b",
    re.IGNORECASE,
)
# Words that point at the customer's own records: "can I get a refund for my payment from
# Monday?" is a request in question form.
_OWN_RECORD = re.compile(
    r"\b(?:my|mine|me|our|this|that|these|those|yesterday|today|last\s+(?:week|month|payment|charge)|"
    r"mi|mis|mon|ma|mes|mein|meine|meinen)\b|\b(?:pay|inv|ord|sub)_\w+",
    re.IGNORECASE,
)


def is_policy_question(text: str) -> bool:
    """A general question about how something works, not a request to act on an account."""
    if not _POLICY_QUESTION.search(text):
        return False
    return not _REQUEST.search(text) and not _OWN_RECORD.search(text)


_QUESTION_START = re.compile(
    r"^\W*(?:also,?\s+|and\s+|but\s+)?(?:how|what|when|where|why|which|who|can|could|do|does|did|is|are|will|would|"
    r"should|may|qu[eé]|c[oó]mo|cu[aá]ndo|d[oó]nde|comment|quand|o[uù]|pourquoi|est-ce|wie|was|wann|wo|warum|kann)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """The text asks a question (a question mark, or the form of one)."""
    return "?" in text or bool(_QUESTION_START.search(text))


_SUBJECT_START = re.compile(
    r"^\W*(?:but\s+|and\s+|so\s+)?(?:i|i'm|i've|i'd|we|we're|we've|my|our|it|it's|this|that|the|there|there's|"
    r"yo|mi|je|j'ai|nous|mon|ma|ich|wir|mein|meine)\b",
    re.IGNORECASE,
)


def is_statement(text: str) -> bool:
    """The text tells something ("I signed up a month ago") without asking or requesting."""
    return bool(_SUBJECT_START.search(text)) and not is_question(text) and not _REQUEST.search(text)
