"""The embedded servers can be restarted in the same process, at the same address: what
`switchboard soak` does to them, and what a client that reconnects relies on."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from switchboard.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = pytest.mark.integration


def test_the_embedded_postgres_restarts_at_the_same_url_with_its_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        server.stop()
        assert server.start() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
    finally:
        server.stop()


@pytest.mark.parametrize("persist", [True, False])
def test_the_embedded_redis_restarts_at_the_same_url_keeping_its_queues_only_if_it_persists(
    tmp_path: Path, persist: bool
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", tmp_path / "redis.log", persist=persist)
    url = server.start()
    try:
        redis.Redis.from_url(url).set("queued", "1")
        server.stop()
        assert server.start() == url
        # `switchboard run`'s broker keeps what was queued; one without persistence loses it.
        assert redis.Redis.from_url(url).get("queued") == (b"1" if persist else None)
    finally:
        server.stop()
