"""A connected helpdesk's webhook: verified and stored at once, worked by a task afterwards.

``read`` verifies the request its helpdesk's own way, on the raw body, and says what it is
(``BadSignature`` 401, ``MissingFields`` 422, or an event). ``store`` writes the event once
per (helpdesk, dedupe): the route answers 2xx after that one insert, well within the 500 ms
Intercom asks for, and never waits on the helpdesk's API.

``work`` runs on the delivery queue (it calls the helpdesk's API). It takes the row with a
conditional UPDATE that leases it (``next_attempt_at``) and counts the attempt, so two
workers never work one event at once; the sweeper re-enqueues a row whose lease ran out.
Then, for a customer's message: the customer looked up in the helpdesk when the ticket is
new (Zendesk gives only ``requester_id``; Intercom may lack the email), and the ticket or
follow-up accepted as ``POST /v1/tickets`` would. A lookup the helpdesk does not answer is
tried again with backoff; after ``max_attempts`` the ticket is taken with what the webhook
said (never lost). A human's answer in the helpdesk marks our escalation answered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from orchestrator import desk
from orchestrator.feedback import rate
from orchestrator.helpdesks import freshdesk, intercom, zendesk
from orchestrator.helpdesks.clients import connector, same_text
from orchestrator.helpdesks.inbound import BadSignature, Event, HumanAnswered, Ignored, Inbound, MissingFields, Rating
from orchestrator.ingest import accept_message, accept_ticket
from shared.contracts import Accepted, Customer, MessageIn, TicketIn
from shared.db import after_commit, retrying, session_scope
from shared.guardrails import for_storage
from shared.metrics import HELPDESK_EVENTS
from shared.models import Conversation, Escalation, HelpdeskEvent, Message, new_id
from shared.models import Event as EventRow
from shared.settings import HelpdeskConfig, Settings

log = logging.getLogger(__name__)

LEASE_S = 60.0  # longer than a lookup's timeout (at most 60 s)
GIVE_UP_AFTER = 3  # attempts beyond the lookups' max_attempts
BACKOFF_S = (1.0, 5.0, 15.0, 60.0, 300.0)
VIA = "helpdesk"


class InvalidPayload(Exception):
    """422: the body is not JSON (an object)."""


def read(config: HelpdeskConfig, headers: Mapping[str, str], raw: bytes, *, event: str | None = None) -> Event:
    """What a webhook of this helpdesk says; raises BadSignature or MissingFields. ``event`` is
    the URL's ``?event=`` (Freshdesk's rules name theirs there)."""
    if config.kind == "zendesk":
        zendesk.verify(headers, raw, config.webhook_secret.get_secret_value())
    elif config.kind == "freshdesk":
        freshdesk.verify(headers, config.webhook_token.get_secret_value())
    else:
        intercom.verify(headers, raw, config.client_secret.get_secret_value())
    try:
        payload = json.loads(raw)
    except ValueError:
        raise InvalidPayload("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("the body is not a JSON object")
    if config.kind == "zendesk":
        return zendesk.parse(payload, our_author_id=str(config.author_id))
    if config.kind == "freshdesk":
        return freshdesk.parse(payload, hint=event)
    return intercom.parse(payload, our_admin_id=config.admin_id)


@dataclass(frozen=True)
class Taken:
    event_id: str
    created: bool


def _without_nul(value: Any) -> Any:
    """Postgres stores no U+0000 in text or JSONB; a helpdesk's JSON may carry one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


def store(s: Session, helpdesk: str, event: Inbound | HumanAnswered | Rating) -> Taken:
    """The event, once: a retry of the same webhook finds the first one."""
    if isinstance(event, Inbound):
        # What a customer wrote is stored as every message is: no full card number or secret.
        data = dataclasses.asdict(event) | {"body": for_storage(event.body), "subject": for_storage(event.subject)}
        kind = "inbound"
    elif isinstance(event, Rating):
        comment = for_storage(event.comment) if event.comment else None
        data, kind = dataclasses.asdict(event) | {"comment": comment}, "rating"
    else:
        data, kind = dataclasses.asdict(event), "human"
    data = _without_nul(data)
    dedupe = _without_nul(event.dedupe)[:300]
    event_id = s.execute(
        insert(HelpdeskEvent)
        .values(id=new_id("hde"), helpdesk=helpdesk, dedupe=dedupe, kind=kind, event=data)
        .on_conflict_do_nothing(constraint="uq_helpdesk_events_dedupe")
        .returning(HelpdeskEvent.id)
    ).scalar_one_or_none()
    if event_id is not None:
        after_commit(s, HELPDESK_EVENTS.labels(helpdesk, kind, "taken").inc)
        return Taken(event_id, created=True)
    first = s.execute(
        select(HelpdeskEvent.id).where(HelpdeskEvent.helpdesk == helpdesk, HelpdeskEvent.dedupe == dedupe)
    ).scalar_one()
    after_commit(s, HELPDESK_EVENTS.labels(helpdesk, kind, "duplicate").inc)
    return Taken(first, created=False)


def ignored(helpdesk: str, event: Ignored) -> None:
    HELPDESK_EVENTS.labels(helpdesk, "ignored", "ignored").inc()
    log.info("helpdesk %s: webhook taken and ignored (%s)", helpdesk, event.reason)


# --------------------------------------------------------------------------- the task


@dataclass(frozen=True)
class Worked:
    state: str  # done | retry | failed | skipped
    retry_in: float | None = None
    accepted: Accepted | None = None


def claim(s: Session, event_id: str) -> HelpdeskEvent | None:
    row = s.execute(
        update(HelpdeskEvent)
        .where(
            HelpdeskEvent.id == event_id,
            HelpdeskEvent.state == "pending",
            HelpdeskEvent.next_attempt_at <= func.now(),
        )
        .values(attempts=HelpdeskEvent.attempts + 1, next_attempt_at=func.now() + timedelta(seconds=LEASE_S))
        .returning(HelpdeskEvent)
    ).scalar_one_or_none()
    if row is not None:
        s.expunge(row)
    return row


def work(event_id: str, settings: Settings, http: httpx.Client) -> Worked:
    with session_scope() as s:
        row = claim(s, event_id)
    if row is None:
        return Worked("skipped")
    config = settings.helpdesks.get(row.helpdesk)
    if config is None:
        return _finish(row, "failed", error=f"helpdesk {row.helpdesk!r} is no longer in SWITCHBOARD_HELPDESKS")
    if row.attempts > config.max_attempts + GIVE_UP_AFTER:
        # Tried again and again past its lookups (a worker that dies on it, a bug): on the
        # record as failed, with the helpdesk's events alert, instead of forever.
        return _finish(row, "failed", error=f"gave up after {row.attempts - 1} attempts: {row.last_error}")
    try:
        return _work(row, config, settings, http)
    except ValidationError as exc:  # what the helpdesk sent cannot be a ticket; a retry cannot fix it
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        return _finish(row, "failed", error=f"not a valid ticket ({fields})")


def _work(row: HelpdeskEvent, config: HelpdeskConfig, settings: Settings, http: httpx.Client) -> Worked:
    if row.kind == "human":
        human = HumanAnswered(**row.event)
        return retrying(lambda: _human_answered(row, human))
    if row.kind == "rating":
        rating = Rating(**row.event)
        return retrying(lambda: _rated(row, rating))
    inbound = Inbound(**row.event)
    with session_scope() as s:
        conversation_id = _conversation_of(s, row.helpdesk, inbound.ticket_id)
    looked_up: dict[str, Any] = {}
    if conversation_id is None and inbound.user_id and (config.kind == "zendesk" or not inbound.email):
        # A new ticket whose customer the webhook names by id only (Zendesk always; Intercom
        # when the part carries no email): ask the helpdesk who they are.
        try:
            looked_up = connector(row.helpdesk, config, http).customer(inbound.user_id)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (404, 410) and row.attempts < config.max_attempts:
                return _later(row, f"customer lookup: HTTP {exc.response.status_code}")
            log.warning("helpdesk %s: the ticket's customer is not in the helpdesk; taken without", row.helpdesk)
        except httpx.HTTPError as exc:
            if row.attempts < config.max_attempts:
                return _later(row, f"customer lookup: {type(exc).__name__}")
            log.warning("helpdesk %s: customer lookup failed %d times; the ticket is taken without", row.helpdesk,
                        row.attempts)  # fmt: skip
    return retrying(lambda: _accept(row, inbound, looked_up, settings))


def _conversation_of(s: Session, helpdesk: str, ticket_id: str) -> str | None:
    return s.execute(
        select(Conversation.id).where(Conversation.source == helpdesk, Conversation.external_id == ticket_id[:256])
    ).scalar_one_or_none()


def customer(inbound: Inbound, looked_up: Mapping[str, Any]) -> Customer:
    """The customer from what the webhook and the lookup said; a field the helpdesk filled in
    a way we cannot use (an email that is not one, a time zone that is not IANA) is left out."""
    fields = {
        "id": (inbound.user_id or inbound.email or inbound.ticket_id)[:256],
        "email": looked_up.get("email") or inbound.email,
        "name": (looked_up.get("name") or inbound.name or "")[:256],
        "locale": looked_up.get("locale") or inbound.locale,
        "timezone": looked_up.get("timezone") or inbound.timezone,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    while True:
        try:
            return Customer.model_validate(fields)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} - {"id"}
            if not bad:
                raise
            for name in bad:
                fields.pop(name, None)


def _accept(row: HelpdeskEvent, inbound: Inbound, looked_up: Mapping[str, Any], settings: Settings) -> Worked:
    body = inbound.body[:20_000]
    with session_scope() as s:
        conversation_id = _conversation_of(s, row.helpdesk, inbound.ticket_id)
        accepted: Accepted | None
        if conversation_id is None:
            ticket = TicketIn(
                source=row.helpdesk,
                external_id=inbound.ticket_id[:256],
                channel=inbound.channel,
                customer=customer(inbound, looked_up),
                subject=inbound.subject[:512],
                body=body,
            )
            accepted = accept_ticket(s, ticket, via=VIA)
        elif inbound.event == "created" or _is_first_message(s, conversation_id, body):
            # The ticket came in already (Zendesk sends ticket.created and the first comment,
            # in no guaranteed order): nothing new.
            accepted = None
        elif _is_our_reply(s, conversation_id, body):
            # Freshdesk's placeholder cannot say who wrote the latest public comment: one that
            # is our own reply (the bot's, or a human's from our desk) is no customer message.
            accepted = None
        else:
            message = MessageIn(body=body, external_id=(inbound.message_id or inbound.dedupe)[:256])
            accepted = accept_message(s, conversation_id, message, via=VIA, source=row.helpdesk)
        done = _mark(s, row, "done", conversation_id=accepted.conversation_id if accepted else conversation_id)
        if not done:
            return Worked("skipped")
    if accepted is not None and accepted.created:
        from orchestrator.tasks import enqueue_turn  # the task module imports this one

        try:
            enqueue_turn(accepted.turn_id)
        except Exception as exc:  # committed: the sweeper enqueues it
            log.warning("could not enqueue turn %s (%s); the sweeper will retry", accepted.turn_id, exc)
    return Worked("done", accepted=accepted)


def _is_first_message(s: Session, conversation_id: str, body: str) -> bool:
    customer_messages = (
        s.execute(
            select(Message.body).where(Message.conversation_id == conversation_id, Message.role == "customer").limit(2)
        )
        .scalars()
        .all()
    )
    return len(customer_messages) == 1 and customer_messages[0] == for_storage(body)


def _is_our_reply(s: Session, conversation_id: str, body: str) -> bool:
    latest = (
        s.execute(
            select(Message.body)
            .where(Message.conversation_id == conversation_id, Message.role != "customer")
            .order_by(Message.created_at.desc())
            .limit(3)
        )
        .scalars()
        .all()
    )
    return any(same_text(for_storage(body), b) for b in latest)


def _human_answered(row: HelpdeskEvent, human: HumanAnswered) -> Worked:
    """A human answered in the helpdesk: the conversation is theirs, our open escalation is
    answered there, and no bot reply to an earlier message goes out."""
    with session_scope() as s:
        conversation = s.execute(
            select(Conversation)
            .where(Conversation.source == row.helpdesk, Conversation.external_id == human.ticket_id[:256])
            .with_for_update()
        ).scalar_one_or_none()
        if conversation is not None and human.body and _is_our_reply(s, conversation.id, human.body):
            conversation = None  # our own reply, come back through the helpdesk's rule
        elif conversation is not None:
            s.execute(
                update(Conversation)
                .where(Conversation.id == conversation.id)
                .values(
                    human_answered_at=func.now(),
                    with_human_since=func.coalesce(Conversation.with_human_since, func.now()),
                )
            )
            open_ones = (
                s.execute(
                    select(Escalation.id).where(
                        Escalation.conversation_id == conversation.id, Escalation.state.in_(("queued", "claimed"))
                    )
                )
                .scalars()
                .all()
            )
            for escalation_id in open_ones:
                desk.answered_elsewhere(s, escalation_id, f"{row.helpdesk}:{human.author_id or 'agent'}")
            s.add(
                EventRow(
                    conversation_id=conversation.id,
                    kind="helpdesk.human_answered",
                    data={"helpdesk": row.helpdesk, "escalations": list(open_ones)},
                )
            )
        if not _mark(s, row, "done", conversation_id=conversation.id if conversation else None):
            return Worked("skipped")
    return Worked("done")


def _rated(row: HelpdeskEvent, rating: Rating) -> Worked:
    with session_scope() as s:
        conversation = s.execute(
            select(Conversation).where(
                Conversation.source == row.helpdesk, Conversation.external_id == rating.ticket_id[:256]
            )
        ).scalar_one_or_none()
        if conversation is not None:  # a ticket Switchboard never saw is not ours to count
            rate(s, conversation, rating.score, rating.comment, via=row.helpdesk)
        if not _mark(s, row, "done", conversation_id=conversation.id if conversation else None):
            return Worked("skipped")
    return Worked("done")


def _mark(s: Session, row: HelpdeskEvent, state: str, *, conversation_id: str | None = None,
          error: str | None = None) -> bool:  # fmt: skip
    """Record the attempt's end, if the row is still this attempt's (its lease held)."""
    ours = s.execute(
        update(HelpdeskEvent)
        .where(HelpdeskEvent.id == row.id, HelpdeskEvent.state == "pending", HelpdeskEvent.attempts == row.attempts)
        .values(
            state=state,
            conversation_id=conversation_id,
            last_error=error,
            done_at=func.now(),
            event={"ticket_id": row.event.get("ticket_id")},  # what the customer wrote is in messages now
        )
        .returning(HelpdeskEvent.id)
    ).scalar_one_or_none()
    if ours is not None:
        after_commit(s, HELPDESK_EVENTS.labels(row.helpdesk, row.kind, state).inc)
    return ours is not None


def _finish(row: HelpdeskEvent, state: str, *, error: str) -> Worked:
    with session_scope() as s:
        _mark(s, row, state, error=error)
    log.error("helpdesk event %s of %s %s: %s", row.id, row.helpdesk, state, error)
    return Worked(state)


def _later(row: HelpdeskEvent, error: str) -> Worked:
    wait = BACKOFF_S[min(row.attempts, len(BACKOFF_S)) - 1]
    with session_scope() as s:
        s.execute(
            update(HelpdeskEvent)
            .where(HelpdeskEvent.id == row.id, HelpdeskEvent.state == "pending", HelpdeskEvent.attempts == row.attempts)
            .values(last_error=error, next_attempt_at=func.now() + timedelta(seconds=wait))
        )
    log.warning("helpdesk event %s of %s: %s; trying again in %.0fs", row.id, row.helpdesk, error, wait)
    return Worked("retry", retry_in=wait)


__all__ = ["BadSignature", "InvalidPayload", "MissingFields", "read", "store", "work"]
