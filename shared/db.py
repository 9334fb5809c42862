"""Engine and session factory: one session per unit of work, never held across a hop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import ConfigurationError
from shared.settings import Settings

_engine: Engine | None = None
_engine_pid: int | None = None
_sessions: sessionmaker[Session] | None = None


def normalise_database_url(url: str) -> str:
    """Accept the common spellings of a Postgres URL and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def configure(settings: Settings) -> Engine:
    """Create (or, after a fork, re-create) the process's engine."""
    global _engine, _engine_pid, _sessions
    if not settings.database_url:
        raise ConfigurationError(
            "SWITCHBOARD_DATABASE_URL is not set: start the stack with `switchboard run` "
            "(which brings its own Postgres) or point it at a server, "
            "e.g. postgresql://postgres@127.0.0.1:5432/switchboard"
        )
    if _engine is not None:
        _engine.dispose(close=False)
    _engine = create_engine(
        normalise_database_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={"application_name": f"switchboard-{os.getpid()}"},
    )
    _engine_pid = os.getpid()
    _sessions = sessionmaker(_engine, expire_on_commit=False)

    @event.listens_for(_engine, "connect")
    def _utc(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")

    return _engine


def engine() -> Engine:
    if _engine is None or _engine_pid != os.getpid():
        from shared.settings import get_settings

        configure(get_settings())
    assert _engine is not None
    return _engine


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: committed at the end, rolled back on any error."""
    engine()
    assert _sessions is not None
    session = _sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
