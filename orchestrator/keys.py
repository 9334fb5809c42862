"""API keys: who is calling, with which role, for which source.

A key is ``sb_`` and 43 characters of ``secrets.token_urlsafe`` (256 bits). Only its
SHA-256 digest is stored: a high-entropy token needs no slow hash, and a digest lookup is
one indexed read per request. The key is shown once, when it is created. A revoked key
stays as a row, for the record, and authenticates nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.contracts import Role
from shared.errors import ConfigurationError
from shared.models import ApiKey, Conversation, Escalation, Event, new_id

KEY_PREFIX = "sb_"
SHOWN_CHARS = 10  # what `keys list` shows of a key: enough to recognise it, useless to use


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: its key's id, role and (helpdesk keys) source."""

    key_id: str
    role: Role
    source: str | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(s: Session, *, role: Role, name: str, source: str | None = None, by: str) -> tuple[ApiKey, str]:
    """A new key and the token to hand over (the only time it can be read). ``by`` says who
    made it, for the audit event: ``cli:<os user>``, ``switchboard run``, a key id…"""
    if role is Role.helpdesk and not source:
        raise ConfigurationError("a helpdesk key needs --source: the one source it posts and reads for")
    if role is not Role.helpdesk and source:
        raise ConfigurationError(f"an {role} key is not bound to a source; leave out --source")
    if not name.strip():
        raise ConfigurationError("give the key a --name that says who holds it, e.g. 'zendesk production'")
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        name=name.strip()[:100],
        role=role.value,
        source=source,
        digest=digest(token),
        prefix=token[:SHOWN_CHARS],
    )
    s.add(key)
    s.add(Event(kind="key.created", data={"key_id": key.id, "role": role.value, "source": source, "by": by}))
    s.flush()
    return key, token


def list_keys(s: Session) -> list[ApiKey]:
    return list(s.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).scalars())


def revoke_key(s: Session, key_id: str, *, by: str) -> bool:
    """Revoke a key at once. False when there is no such key, or it was revoked already."""
    revoked = s.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiKey.id)
    ).scalar_one_or_none()
    if revoked is not None:
        s.add(Event(kind="key.revoked", data={"key_id": key_id, "by": by}))
    return revoked is not None


def has_live_keys(s: Session) -> bool:
    return s.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)).first() is not None


def principal_for(s: Session, token: str) -> Principal | None:
    """The caller a bearer token names, or None for an unknown or revoked key."""
    if not token.startswith(KEY_PREFIX):
        return None
    row = s.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.source).where(ApiKey.digest == digest(token), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    return None if row is None else Principal(key_id=row.id, role=Role(row.role), source=row.source)


def may_see(s: Session, principal: Principal, conversation: Conversation) -> bool:
    """A helpdesk key sees its own source's conversations, an agent key those behind an
    escalation, an admin key all. Callers answer 404 otherwise: no existence leak."""
    if principal.role is Role.admin:
        return True
    if principal.role is Role.helpdesk:
        return conversation.source == principal.source
    return (
        s.execute(select(Escalation.id).where(Escalation.conversation_id == conversation.id).limit(1)).first()
        is not None
    )


def refusal_to_post(principal: Principal, source: str | None, configured: Collection[str]) -> str | None:
    """Why this caller may not post a ticket of ``source`` (a metric label), or None.

    The one rule for the API and the broker: a helpdesk key posts for its own source, an
    admin key for any, and only for a configured source. ``source`` None is a follow-up:
    its conversation's source scopes it.
    """
    if principal.role not in (Role.helpdesk, Role.admin):
        return "role"
    if source is None:
        return None
    if principal.role is Role.helpdesk and principal.source != source:
        return "other_source"
    if source not in configured:
        return "unknown_source"
    return None
