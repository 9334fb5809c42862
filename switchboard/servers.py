"""Reaching the servers Switchboard needs, with one-line errors that say what to do."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from shared.celery_app import broker_url_for_celery
from shared.errors import ConfigurationError


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
