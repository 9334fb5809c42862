"""A process's first units of work, all at once (the API just restarted and every helpdesk
retry arrives together), share one engine, and every connection is set up as the engine
says: in UTC, whatever the server's default."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, text

import shared.settings
from shared import db
from shared.settings import Settings

pytestmark = pytest.mark.integration

THREADS = 32


def test_the_first_sessions_at_once_share_one_engine_and_every_connection_is_in_utc(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's default is another zone: a connection the engine's set-up missed shows it.
    separator = "&" if "?" in database_url else "?"
    settings = Settings(
        database_url=f"{database_url}{separator}options=-c%20timezone%3DPacific/Auckland",
        db_pool_size=THREADS,
    )
    monkeypatch.setattr(shared.settings, "get_settings", lambda: settings)
    real_create_engine = db.create_engine

    def slow_create_engine(*args: Any, **kwargs: Any) -> Engine:
        time.sleep(0.05)  # a start-up on a busy machine: every thread arrives before it is done
        return real_create_engine(*args, **kwargs)

    monkeypatch.setattr(db, "create_engine", slow_create_engine)
    for name in ("_engine", "_engine_pid", "_sessions"):
        monkeypatch.setattr(db, name, None)  # a process that has not built its engine yet
    start = threading.Barrier(THREADS)
    zones: Counter[str] = Counter()
    engines: set[int] = set()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def first_request() -> None:
        start.wait()
        try:
            with db.session_scope() as s:
                zone = str(s.execute(text("SELECT current_setting('TimeZone')")).scalar_one())
                bound = s.get_bind()
            with lock:
                zones[zone] += 1
                engines.add(id(bound))
        except BaseException as exc:  # every failure is the finding
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=first_request) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    built: Engine = db.engine()
    try:
        assert failures == []
        assert zones == {"UTC": THREADS}
        assert engines == {id(built)}
    finally:
        built.dispose()


def test_a_pooled_connection_whose_server_went_away_while_it_idled_is_replaced_not_used(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart or failover ends every server process; the pool's connections outlive
    theirs. One that idled past PING_AFTER_IDLE_S is pinged, found dead and replaced, and
    the unit of work never sees it."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.05)
    settings = Settings(database_url=database_url, db_pool_size=2)
    with db.configured(settings):
        with db.session_scope() as s:
            first = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.one_off_session(database_url) as admin:  # the server ends that process, as a restart does
            assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        time.sleep(0.1)  # idle past the threshold
        with db.session_scope() as s:
            second = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
