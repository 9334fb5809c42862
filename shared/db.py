"""Engine and session factory: one session per unit of work, never held across a hop."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, pool
from sqlalchemy.engine import Result
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.sql.selectable import Select

from shared.errors import ConfigurationError
from shared.settings import Settings, normalise_database_url

log = logging.getLogger(__name__)
T = TypeVar("T")

# A pooled connection idle this long is pinged before use: a restarted or failed-over server
# takes longer than this to come back, so no connection from before it is used unpinged. One
# returned a moment ago is used at once (under load, every checkout), and should the server
# go away in that moment, the statement fails as one in flight would: a retry, or a 503.
PING_AFTER_IDLE_S = 1.0
_RETURNED_AT = "switchboard.returned_at"


class UnitOfWork(Session):
    """A session whose statements that return columns, not objects, go to its connection.

    ``Session.execute`` of an ORM statement does the ORM's work per call: autoflush, the
    ORM's compile state, bulk-persistence paths for an INSERT or UPDATE and the
    synchronisation of the objects it holds. Measured here on a one-row UPDATE … RETURNING,
    that was 0.76-0.85 ms of CPU against 0.31-0.42 ms on the session's connection, and a turn
    runs about thirty such statements. When the session holds no object — none pending,
    none loaded — there is nothing for that work to do, and a statement whose columns are
    columns (a text, an INSERT, UPDATE or DELETE returning columns or nothing, a SELECT of
    columns) returns the same rows either way; it runs on the connection, in the session's
    transaction. Anything else (a SELECT of entities, options, objects in the session) takes
    the ORM's path.
    """

    def execute(self, statement: Any, params: Any = None, **kw: Any) -> Result[Any]:
        if kw or not self._direct(statement):
            return super().execute(statement, params, **kw)
        return self.connection().execute(statement, params)

    def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        if kw or not self._direct(statement):
            return super().scalar(statement, params, **kw)
        return self.connection().execute(statement, params).scalar()

    def _direct(self, statement: Any) -> bool:
        """Nothing for the ORM to do: no object pending or loaded, and columns come back."""
        return not (self._new or self._deleted or len(self.identity_map)) and _columns_only(statement)


def _columns_only(statement: Any) -> bool:
    returned: Sequence[Any]
    if isinstance(statement, TextClause):
        return True
    if isinstance(statement, UpdateBase):
        returned = statement._returning
    elif isinstance(statement, Select):
        returned = statement._raw_columns
    else:
        return False
    return all(isinstance(c, ColumnElement) for c in returned)


_engine: Engine | None = None
_engine_pid: int | None = None
_sessions: sessionmaker[Session] | None = None
# The API's first requests arrive together on threads of their own (after a restart, every
# helpdesk retry at once): one of them builds the engine, the others wait for it.
_configuring = threading.RLock()


def _after_fork_in_child() -> None:
    global _configuring
    _configuring = threading.RLock()  # a parent thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def one_off_engine(url: str) -> Engine:
    """An engine for one command or one load that keeps no pool: dispose of it when done.

    ``url`` may come from outside the settings (an embedded server, a test), in any spelling.
    """
    return create_engine(normalise_database_url(url), poolclass=pool.NullPool, hide_parameters=True)


@contextmanager
def one_off_session(url: str) -> Iterator[Session]:
    """One unit of work on a database outside the settings (a command's): committed at the end."""
    engine = one_off_engine(url)
    try:
        with Session(engine) as session:
            with session.begin():
                yield session
            for action in _registered(session):
                action()
    finally:
        engine.dispose()


@contextmanager
def configured(settings: Settings) -> Iterator[Engine]:
    """This process's engine for ``settings`` for a while (a command, a test), then the
    one it had before, as it was."""
    global _engine, _engine_pid, _sessions
    saved = (_engine, _engine_pid, _sessions)
    _engine = None  # configure() must not dispose of the saved one
    try:
        yield configure(settings)
    finally:
        if _engine is not None:
            _engine.dispose()
        _engine, _engine_pid, _sessions = saved


def configure(settings: Settings) -> Engine:
    """Create (or, after a fork, re-create) the process's engine."""
    global _engine, _engine_pid, _sessions
    if not settings.database_url:
        raise ConfigurationError(
            "SWITCHBOARD_DATABASE_URL is not set: start the stack with `switchboard run` "
            "(which brings its own Postgres) or point it at a server, "
            "e.g. postgresql://postgres@127.0.0.1:5432/switchboard"
        )
    built = create_engine(
        settings.database_url,  # normalised by Settings
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # Not pool_pre_ping: a round trip on every checkout was a fifth of an agent task's
        # time under load. A connection is pinged when it sat in the pool a while (below).
        pool_pre_ping=False,
        # An error's message must not carry the row it failed on (a message body, an email).
        hide_parameters=True,
        # A server that is down or unreachable fails a request in seconds, not a TCP timeout.
        connect_args={"application_name": f"switchboard-{os.getpid()}", "connect_timeout": 5},
        pool_timeout=10,
    )

    @event.listens_for(built, "connect")
    def _utc(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")

    @event.listens_for(built, "checkin")
    def _returned(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(built, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return  # new, or back in the pool a moment ago: its server was there then
        try:
            built.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and checks out another (three tries).
            raise DisconnectionError(f"a pooled connection did not answer ({type(exc).__name__})") from exc

    # Published whole (listener and session factory with it), so no thread ever uses a half-made one.
    with _configuring:
        if _engine is not None:
            _engine.dispose(close=False)
        _engine, _engine_pid, _sessions = (
            built,
            os.getpid(),
            sessionmaker(built, class_=UnitOfWork, expire_on_commit=False),
        )
    return built


def engine() -> Engine:
    current = _engine
    if current is None or _engine_pid != os.getpid():
        from shared.settings import get_settings

        with _configuring:  # the first caller builds it; the rest find it built
            if _engine is None or _engine_pid != os.getpid():
                configure(get_settings())
            current = _engine
    assert current is not None
    return current


_AFTER_COMMIT = "switchboard.after_commit"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the unit of work of ``session`` has committed, never if it rolls back.

    Logic that takes a session leaves committing to its caller; what must follow the
    commit (a metric, a log line, a message to the broker) is handed over here.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work, opened by an edge (a task, a route): committed at the end, rolled back
    on any error; what ``after_commit`` registered runs after the commit."""
    engine()
    sessions = _sessions
    assert sessions is not None
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        actions = _registered(session)  # taken on rollback too, and dropped with the exception
        session.close()
    for action in actions:
        action()


def _registered(session: Session) -> list[Callable[[], None]]:
    actions: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
    return actions


def unavailable(exc: BaseException) -> bool:
    """The database did not answer (restarting, failed over, out of connections): a reason
    to try again shortly, not a bug."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


def retrying(action: Callable[[], T], *, attempts: int = 6, first_wait_s: float = 0.2) -> T:
    """``action()``, tried again with backoff (0.2, 0.4, 0.8 … s) while the database does
    not answer; the last failure is raised."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts - 1 or not unavailable(exc):
                raise
            log.warning("the database did not answer (%s); trying again", type(exc).__name__)
            time.sleep(first_wait_s * 2**attempt)
    raise AssertionError("unreachable")
