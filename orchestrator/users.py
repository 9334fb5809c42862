"""Humans of the web desk: accounts with argon2id password hashes, and login sessions.

Only a hash of each password is stored (argon2-cffi's PasswordHasher: argon2id, its
RFC 9106 low-memory profile), and only the SHA-256 digest of each session token: a copy of
the database logs nobody in. A session carries its own CSRF token, which every form and
every script call of the desk sends back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.errors import ConfigurationError
from shared.models import DeskSession, Event, User, new_id

HASHER = PasswordHasher()  # argon2id
MIN_PASSWORD = 12
ROLES = ("agent", "admin")
# Verified when the email is unknown, so a wrong email costs the time a wrong password does.
_DUMMY = HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    role: str

    @property
    def actor(self) -> str:
        return f"user:{self.id}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(s: Session, *, email: str, role: str, password: str, by: str) -> Person:
    email = email.strip()
    if "@" not in email or len(email) > 320:
        raise ConfigurationError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise ConfigurationError(f"--role takes {' or '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"the password must be at least {MIN_PASSWORD} characters")
    taken = s.execute(select(User.id).where(func.lower(User.email) == email.lower())).first()
    if taken is not None:
        raise ConfigurationError(f"a user {email} exists already")
    user = User(id=new_id("usr")[:40], email=email, role=role, password_hash=HASHER.hash(password))
    s.add(user)
    s.add(Event(kind="user.created", data={"user_id": user.id, "role": role, "by": by}))
    return Person(user.id, email, role)


def set_password(s: Session, *, email: str, password: str, by: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"the password must be at least {MIN_PASSWORD} characters")
    user_id = s.execute(
        update(User)
        .where(func.lower(User.email) == email.strip().lower())
        .values(password_hash=HASHER.hash(password))
        .returning(User.id)
    ).scalar_one_or_none()
    if user_id is None:
        raise ConfigurationError(f"no user {email}")
    s.execute(delete(DeskSession).where(DeskSession.user_id == user_id))  # logged out everywhere
    s.add(Event(kind="user.password_set", data={"user_id": user_id, "by": by}))


def disable_user(s: Session, *, email: str, by: str) -> None:
    user_id = s.execute(
        update(User)
        .where(func.lower(User.email) == email.strip().lower(), User.disabled_at.is_(None))
        .values(disabled_at=func.now())
        .returning(User.id)
    ).scalar_one_or_none()
    if user_id is None:
        raise ConfigurationError(f"no active user {email}")
    s.execute(delete(DeskSession).where(DeskSession.user_id == user_id))
    s.add(Event(kind="user.disabled", data={"user_id": user_id, "by": by}))


def list_users(s: Session) -> list[tuple[str, str, str, datetime, datetime | None]]:
    rows = s.execute(
        select(User.id, User.email, User.role, User.created_at, User.disabled_at).order_by(User.created_at)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def authenticate(s: Session, email: str, password: str) -> Person | None:
    user = s.execute(
        select(User).where(func.lower(User.email) == email.strip().lower(), User.disabled_at.is_(None))
    ).scalar_one_or_none()
    try:
        HASHER.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    return Person(user.id, user.email, user.role)


def open_session(s: Session, person: Person, hours: float) -> tuple[str, str]:
    """A new session: (the cookie's token, its CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    s.add(
        DeskSession(
            digest=_digest(token),
            user_id=person.id,
            csrf_token=csrf,
            expires_at=datetime.now(UTC) + timedelta(hours=hours),
        )
    )
    s.add(Event(kind="user.logged_in", data={"user_id": person.id}))
    # Sessions that ended are not kept.
    s.execute(delete(DeskSession).where(DeskSession.expires_at < func.now()))
    return token, csrf


def session_person(s: Session, token: str) -> tuple[Person, str] | None:
    """The person behind a session cookie and the session's CSRF token, or None."""
    row = s.execute(
        select(User.id, User.email, User.role, DeskSession.csrf_token)
        .join(DeskSession, DeskSession.user_id == User.id)
        .where(DeskSession.digest == _digest(token), DeskSession.expires_at > func.now(), User.disabled_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    return Person(row.id, row.email, row.role), row.csrf_token


def close_session(s: Session, token: str) -> None:
    s.execute(delete(DeskSession).where(DeskSession.digest == _digest(token)))
