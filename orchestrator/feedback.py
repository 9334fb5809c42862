"""Customers' satisfaction ratings (CSAT): from Zendesk and Intercom, and POST
/v1/conversations/{id}/feedback for every other helpdesk.

A rating belongs to one conversation and the way it came (``via``); a later one the same way
replaces it. ``handled_by`` says who the customer is rating: ``human`` when the conversation
was escalated or a human answered it in the helpdesk, ``bot`` when the bot answered alone.
The metric counts each rating once, when it first arrives (a changed rating updates the row).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db import after_commit
from shared.guardrails import for_storage
from shared.metrics import CSAT
from shared.models import Conversation, Escalation, Event, Feedback


@dataclass(frozen=True)
class Rated:
    conversation_id: str
    score: int
    handled_by: str
    created: bool


def handled_by(s: Session, conversation: Conversation) -> str:
    escalated = s.execute(select(Escalation.id).where(Escalation.conversation_id == conversation.id).limit(1)).first()
    return "human" if escalated is not None or conversation.human_answered_at is not None else "bot"


def rate(s: Session, conversation: Conversation, score: int, comment: str | None, *, via: str) -> Rated:
    if not 1 <= score <= 5:
        raise ValueError(f"a rating is 1 to 5, not {score}")
    who = handled_by(s, conversation)
    stored = for_storage(comment.strip()) if comment and comment.strip() else None
    inserted = s.execute(
        insert(Feedback)
        .values(
            conversation_id=conversation.id,
            source=conversation.source,
            via=via,
            score=score,
            comment=stored,
            handled_by=who,
        )
        .on_conflict_do_update(
            constraint="uq_feedback_conversation_via",
            set_={"score": score, "comment": stored, "handled_by": who, "updated_at": func.now()},
        )
        .returning(Feedback.created_at == Feedback.updated_at)
    ).scalar_one()
    created = bool(inserted)
    s.add(
        Event(
            conversation_id=conversation.id,
            kind="feedback.rated",
            data={"score": score, "via": via, "handled_by": who, "changed": not created},
        )
    )
    if created:
        after_commit(s, lambda: CSAT.labels(conversation.source, who).observe(score))
    return Rated(conversation.id, score, who, created)
