"""Reaching the servers Switchboard needs, with one-line errors that say what to do, and the
database a one-off command works on (the configured one, or the data folder's embedded one)."""

from __future__ import annotations

import contextlib
import random
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from shared.celery_app import broker_url_for_celery
from shared.errors import ConfigurationError
from shared.migrate import upgrade
from shared.settings import Settings
from switchboard.embedded import EmbeddedPostgres, lock_data_dir

# Below Linux's ephemeral range (32768-60999): a port chosen here cannot be taken meanwhile
# by the local end of some outbound connection before the server that wants it binds it.
PORTS = range(10_000, 32_000)


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free ports on 127.0.0.1 (the soak's and the tests' servers)."""
    for _ in range(200):
        first = random.randrange(PORTS.start, PORTS.stop - size)
        with contextlib.ExitStack() as probes:
            try:
                for port in range(first, first + size):
                    probes.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {size} consecutive free ports found")


def free_port() -> int:
    return free_port_block(1)


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or ''}".rstrip(":")
    socket_dir = parse_qs(parts.query).get("host")  # postgresql://user@/db?host=/socket/dir
    return socket_dir[0] if socket_dir else parts.path or url


def check_database(url: str) -> None:
    """Fail with one line when Postgres cannot be reached or the database is missing."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)  # libpq's spelling; it takes postgres:// too
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "does not exist" in first:
            raise ConfigurationError(
                f"Postgres at {_where(url)} is up but {first}. Create it (createdb) or fix SWITCHBOARD_DATABASE_URL."
            ) from None
        raise ConfigurationError(
            f"Cannot reach Postgres at {_where(url)} ({first}). Start it, or fix SWITCHBOARD_DATABASE_URL."
        ) from None


def check_broker(url: str) -> None:
    """Fail with one line when the broker (Redis or RabbitMQ) cannot be reached."""
    from kombu.connection import Connection

    try:
        with Connection(broker_url_for_celery(url), connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        raise ConfigurationError(
            f"Cannot reach the broker at {_where(url)} ({type(exc).__name__}: {str(exc)[:120]}). "
            "Start Redis or RabbitMQ, or fix SWITCHBOARD_BROKER_URL."
        ) from None


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one of the data folder."""
    if settings.database_url:
        check_database(settings.database_url)
        yield settings.database_url
        return
    data_dir = settings.data_dir.expanduser().resolve()
    server = EmbeddedPostgres(data_dir / "postgres")
    try:
        lock = lock_data_dir(data_dir)
    except ConfigurationError:
        # `switchboard run` holds the folder: its Postgres is up and migrated. Adopt it
        # and leave it running.
        yield server.start()
        return
    try:
        with migrated(server) as url:
            yield url
    finally:
        lock.close()


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh embedded Postgres with pgvector, migrated, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp, migrated(EmbeddedPostgres(Path(tmp) / "pg")) as url:
        yield url


@contextmanager
def migrated(server: EmbeddedPostgres) -> Iterator[str]:
    """The server started and its database at the latest schema; stopped when the block ends."""
    try:
        url = server.start()
        upgrade(url)
        yield url
    finally:
        server.stop()
