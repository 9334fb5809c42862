"""The product's session (shared.db.UnitOfWork) reads and writes what a plain Session would.

Statements that return columns skip the ORM's per-call work when the session holds no
object; these tests pin what that must never change: what was added is seen by the next
statement, objects come back as objects, an UPDATE reaches the objects a session holds,
and a rollback undoes both kinds of statement.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared.db import UnitOfWork
from shared.models import Conversation, Event


def _conversation(s: Session) -> str:
    conversation_id = f"conv_{uuid.uuid4().hex}"
    s.add(
        Conversation(
            id=conversation_id,
            source="uow-test",
            external_id=conversation_id,
            channel="email",
            customer_id="c1",
            customer={"id": "c1", "email": "c1@example.com"},
        )
    )
    return conversation_id


def test_the_sessions_of_units_of_work_are_units_of_work(s: Session) -> None:
    assert isinstance(s, UnitOfWork)


def test_what_was_added_is_seen_by_the_next_statement(s: Session) -> None:
    s.add(Event(turn_id="turn_uow_seen", kind="test.added", data={}))
    count = select(func.count()).select_from(Event).where(Event.turn_id == "turn_uow_seen")
    assert s.execute(count).scalar_one() == 1
    assert s.scalar(count) == 1


def test_an_entity_comes_back_as_an_object_and_an_update_reaches_it(s: Session) -> None:
    conversation_id = _conversation(s)
    s.commit()
    s.expunge_all()
    [loaded] = s.execute(select(Conversation).where(Conversation.id == conversation_id)).scalars().all()
    assert isinstance(loaded, Conversation) and loaded.source == "uow-test"
    s.execute(update(Conversation).where(Conversation.id == conversation_id).values(source="uow-moved"))
    assert loaded.source == "uow-moved"  # the ORM's path: the object the session holds is kept in step


def test_column_statements_on_an_empty_session_return_the_same_rows_and_roll_back(s: Session) -> None:
    conversation_id = _conversation(s)
    s.commit()
    s.expunge_all()
    assert not s.identity_map
    row = s.execute(select(Conversation.id, Conversation.source).where(Conversation.id == conversation_id)).one()
    assert (row.id, row.source) == (conversation_id, "uow-test")
    moved = s.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(source="uow-moved")
        .returning(Conversation.source)
    ).scalar_one()
    assert moved == "uow-moved"
    assert s.execute(text("SELECT source FROM conversations WHERE id = :id"), {"id": conversation_id}).scalar() == (
        "uow-moved"
    )
    s.rollback()
    assert s.scalar(select(Conversation.source).where(Conversation.id == conversation_id)) == "uow-test"
