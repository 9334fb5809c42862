"""What a helpdesk's webhook says, in our words, and why a webhook is refused or ignored."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal


class BadSignature(Exception):
    """401: the request is not from the helpdesk (signature, token or timestamp)."""


class MissingFields(Exception):
    """422: the payload lacks what a ticket needs; ``fields`` names each, as a dotted path."""

    def __init__(self, kind: str, fields: list[str]) -> None:
        super().__init__(f"this {kind} webhook lacks {', '.join(fields)}")
        self.fields = fields


@dataclass(frozen=True)
class Inbound:
    """A customer wrote: a new ticket (``created``) or a follow-up on one (``replied``)."""

    event: Literal["created", "replied"]
    ticket_id: str  # the helpdesk's ticket or conversation id: our external_id
    dedupe: str  # the same for every retry of this one webhook
    body: str
    subject: str = ""
    channel: str = "email"
    # The customer as the helpdesk names them; the email may need a lookup (``user_id``).
    user_id: str | None = None
    email: str | None = None
    name: str = ""
    locale: str | None = None
    timezone: str | None = None
    message_id: str | None = None  # the helpdesk's id of this comment or part, when it has one


@dataclass(frozen=True)
class HumanAnswered:
    """A human agent answered in the helpdesk itself: our escalation is answered there."""

    ticket_id: str
    dedupe: str
    author_id: str | None = None
    # What they wrote, when the helpdesk cannot say who wrote it (Freshdesk's rule): our own
    # reply coming back is not a human's answer.
    body: str | None = None


@dataclass(frozen=True)
class Rating:
    """The customer rated the conversation (CSAT), 1 to 5."""

    ticket_id: str
    dedupe: str
    score: int
    comment: str | None = None


@dataclass(frozen=True)
class Ignored:
    """A webhook we take (2xx) and do nothing with, and why: our own reply, a note, a topic we do not handle."""

    reason: str
    dedupe: str = ""
    details: dict[str, str] = field(default_factory=dict)


Event = Inbound | HumanAnswered | Rating | Ignored


class _Text(HTMLParser):
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The text a customer wrote in an HTML body: tags dropped (scripts and styles with their
    content), entities decoded, one blank line at most between paragraphs."""
    if "<" not in markup:
        return html.unescape(markup).strip()
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
