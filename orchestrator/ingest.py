"""Accepting customer messages: store and commit first, enqueue after.

A crash between the commit and the enqueue loses nothing: the sweeper finds the turn
still ``queued`` and enqueues it again. A retried webhook (same ``source`` and
``external_id``, or the same message ``external_id``) creates nothing twice, and neither
does a delivery seen before (``accept_once``: the same delivery id, or the same signature).

The caller (the HTTP route, the ``switchboard.ingest`` task) owns the session and commits
before it enqueues.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contracts import Accepted, MessageIn, TicketIn, TurnState
from shared.db import after_commit
from shared.errors import NotFound
from shared.guardrails import for_storage
from shared.metrics import TICKETS_INGESTED
from shared.models import Conversation, Message, SeenDelivery, Turn, new_id, record_event

log = logging.getLogger(__name__)


def _count(s: Session, via: str, created: bool) -> None:
    after_commit(s, TICKETS_INGESTED.labels(via, "true" if created else "false").inc)


def nonces(delivery_id: str | None, signature: str | None) -> list[str]:
    """What makes a request the same delivery: the helpdesk's delivery id, and for a signed
    request its signature (a replay carries the same one; a new one needs the secret)."""
    found = []
    if delivery_id:
        found.append(f"delivery:{delivery_id}")
    if signature:
        found.append(f"signature:{hashlib.sha256(signature.encode()).hexdigest()}")
    return sorted(found)  # one lock order for requests that share some of them


def accept_once(s: Session, source: str, keys: Iterable[str], accept: Callable[[], Accepted], *, via: str) -> Accepted:
    """``accept()``, unless a delivery with one of ``keys`` was taken before for ``source``:
    then what that one created, with ``created`` false, and nothing is stored.

    The keys are inserted first: a concurrent request with one of them waits on its row
    until this transaction ends, then finds it (or, if this one rolled back, goes on).
    """
    keys = sorted(set(keys))
    if not keys:
        return accept()
    taken = set(
        s.execute(
            insert(SeenDelivery)
            .values([{"source": source, "nonce": key} for key in keys])
            .on_conflict_do_nothing()
            .returning(SeenDelivery.nonce)
        ).scalars()
    )
    if len(taken) < len(keys):
        if taken:  # ours, not committed: a delivery that was seen claims no new key
            s.execute(delete(SeenDelivery).where(SeenDelivery.source == source, SeenDelivery.nonce.in_(taken)))
        seen = s.execute(
            select(SeenDelivery.conversation_id, SeenDelivery.turn_id, SeenDelivery.message_id)
            .where(SeenDelivery.source == source, SeenDelivery.nonce.in_(set(keys) - taken))
            .limit(1)
        ).one_or_none()
        if seen is None:  # pruned or erased since: the delivery is new again
            return accept_once(s, source, keys, accept, via=via)
        _count(s, via, False)
        return Accepted(conversation_id=seen[0], turn_id=seen[1], message_id=seen[2], created=False)
    accepted = accept()
    s.execute(
        update(SeenDelivery)
        .where(SeenDelivery.source == source, SeenDelivery.nonce.in_(keys))
        .values(conversation_id=accepted.conversation_id, turn_id=accepted.turn_id, message_id=accepted.message_id)
    )
    return accepted


# Built once: every ticket runs these (building one and its cache key cost about 80 us). An
# INSERT takes its columns from the parameters it is executed with.
_NEW_CONVERSATION = (
    insert(Conversation).on_conflict_do_nothing(constraint="uq_conversation_source_external").returning(Conversation.id)
)
_NEW_MESSAGE = (
    insert(Message)
    # A concurrent retry of the same follow-up waits here for the first, then finds it.
    .on_conflict_do_nothing(
        index_elements=[Message.conversation_id, Message.external_id], index_where=Message.external_id.isnot(None)
    )
    .returning(Message.id)
)
_NEW_TURN = insert(Turn)
_NEXT_SEQ = (
    update(Conversation)
    .where(Conversation.id == bindparam("conversation_id"))
    .values(turn_count=Conversation.turn_count + 1, updated_at=func.now())
    .returning(Conversation.turn_count)
)


def accept_ticket(s: Session, ticket: TicketIn, *, via: str) -> Accepted:
    conversation_id = s.execute(
        _NEW_CONVERSATION,
        {
            "id": new_id("conv"),
            "source": ticket.source,
            "external_id": ticket.external_id,
            "channel": ticket.channel,
            "subject": for_storage(ticket.subject),
            "customer_id": ticket.customer.id,
            "customer": ticket.customer.model_dump(mode="json"),
        },
    ).scalar_one_or_none()
    if conversation_id is None:
        accepted = _existing_ticket(s, ticket)
    else:
        new = _new_turn(s, conversation_id, ticket.body, external_id=None, via=via)
        assert new is not None, "a message without an external id never conflicts"
        accepted = new
    _count(s, via, accepted.created)
    return accepted


def _existing_ticket(s: Session, ticket: TicketIn) -> Accepted:
    row = s.execute(
        select(Conversation.id, Turn.id, Turn.message_id)
        .join(Turn, Turn.conversation_id == Conversation.id)
        .where(Conversation.source == ticket.source, Conversation.external_id == ticket.external_id)
        .order_by(Turn.created_at)
        .limit(1)
    ).one()
    return Accepted(conversation_id=row[0], turn_id=row[1], message_id=row[2], created=False)


def conversation_source(s: Session, conversation_id: str, *, scope: str | None) -> str:
    """The source of a conversation the caller may post to (``scope``: a helpdesk key's own)."""
    source = s.execute(select(Conversation.source).where(Conversation.id == conversation_id)).scalar_one_or_none()
    if source is None or (scope is not None and source != scope):
        raise NotFound(f"No conversation {conversation_id!r}. Create it with POST /v1/tickets.")
    return source


def accept_message(
    s: Session, conversation_id: str, message: MessageIn, *, via: str, source: str | None = None
) -> Accepted:
    """A follow-up; ``source`` limits it to that source's conversations (a helpdesk key's)."""
    conversation = s.get(Conversation, conversation_id)
    if conversation is None or (source is not None and conversation.source != source):
        raise NotFound(f"No conversation {conversation_id!r}. Create it with POST /v1/tickets.")
    if message.external_id is not None:
        existing = _existing_message(s, conversation_id, message.external_id)
        if existing is not None:
            _count(s, via, False)
            return existing
    accepted = _new_turn(s, conversation_id, message.body, external_id=message.external_id, via=via)
    if accepted is None:  # the same follow-up, sent twice at once: the other request stored it
        assert message.external_id is not None
        existing = _existing_message(s, conversation_id, message.external_id)
        assert existing is not None, "the conflicting message is committed before ON CONFLICT returns"
        _count(s, via, False)
        return existing
    _count(s, via, True)
    return accepted


def _existing_message(s: Session, conversation_id: str, external_id: str) -> Accepted | None:
    row = s.execute(
        select(Message.id, Turn.id)
        .join(Turn, Turn.message_id == Message.id)
        .where(Message.conversation_id == conversation_id, Message.external_id == external_id)
    ).one_or_none()
    if row is None:
        return None
    return Accepted(conversation_id=conversation_id, turn_id=row[1], message_id=row[0], created=False)


def _new_turn(s: Session, conversation_id: str, body: str, *, external_id: str | None, via: str) -> Accepted | None:
    """The message and its queued turn. None when a message with this external id exists."""
    message_id, turn_id = new_id("msg"), new_id("turn")
    # A full card number, an IBAN or a password never reaches a table (PCI DSS); the agents
    # and the human still see "[card ending 4242]".
    stored = for_storage(body)
    inserted = s.execute(
        _NEW_MESSAGE,
        {
            "id": message_id,
            "conversation_id": conversation_id,
            "role": "customer",
            "body": stored,
            "external_id": external_id,
        },
    ).scalar_one_or_none()
    if inserted is None:
        return None
    # The conversation's row lock orders concurrent messages: a second one waits here until
    # the first commits, then takes the next number, whichever transaction began first.
    seq = s.execute(_NEXT_SEQ, {"conversation_id": conversation_id}).scalar_one()
    s.execute(
        _NEW_TURN,
        {
            "id": turn_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
            "state": TurnState.queued,
        },
    )
    record_event(s, "turn.queued", {"via": via}, conversation_id=conversation_id, turn_id=turn_id)
    return Accepted(conversation_id=conversation_id, turn_id=turn_id, message_id=message_id, created=True)
