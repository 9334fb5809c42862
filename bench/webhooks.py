"""`switchboard webhook-bench`: how fast POST /v1/helpdesks/{name}/webhook answers.

Intercom prioritises endpoints that answer within 500 ms and Zendesk gives up at 10 s, so
the route verifies, stores and enqueues, and leaves the helpdesk's API to a task. This
starts the real API (uvicorn, one process, as `switchboard api` runs it) on a database of its
own, with a Zendesk, a Freshdesk and an Intercom connected, and posts ``--requests`` signed
webhooks of each (new tickets, each a new delivery) from ``--concurrency`` clients at once,
over HTTP. It prints the answer time per helpdesk (p50, p95, p99, max, in ms) and how many
answered 2xx within 500 ms. No worker runs: the enqueued tasks wait on a broker database of
the bench's own, which is flushed after.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from bench.run import DEFAULT_DATABASE, say, summarize, with_database
from orchestrator.helpdesks import intercom, zendesk
from shared.migrate import upgrade
from shared.settings import get_settings

BROKER = "redis://127.0.0.1:6379/12"
SECRETS = {"zendesk": "bench-zd-secret-0123", "freshdesk": "bench-fd-token-0123", "intercom": "bench-ic-secret-0123"}
HELPDESKS: dict[str, dict[str, Any]] = {
    "zendesk": {"kind": "zendesk", "email": "bot@bench.test", "api_token": "t", "author_id": 1,
                "webhook_secret": SECRETS["zendesk"]},
    "freshdesk": {"kind": "freshdesk", "api_key": "k", "webhook_token": SECRETS["freshdesk"]},
    "intercom": {"kind": "intercom", "access_token": "t", "admin_id": "1", "client_secret": SECRETS["intercom"]},
}  # fmt: skip


def _payload(kind: str, n: int) -> dict[str, Any]:
    ticket = f"{n}{uuid.uuid4().int % 10**6:06d}"
    if kind == "zendesk":
        detail = {"id": ticket, "subject": "Help", "description": "<p>What is my balance?</p>", "requester_id": "5"}
        return {"type": zendesk.CREATED, "id": uuid.uuid4().hex, "detail": detail, "event": {}}
    if kind == "freshdesk":
        hook = {"ticket_id": ticket, "ticket_subject": "Help", "ticket_description": "<div>What is my balance?</div>",
                "ticket_latest_public_comment": "", "ticket_contact_email": f"c{n}@example.com"}  # fmt: skip
        return {"freshdesk_webhook": hook}
    source = {"id": "1", "body": "<p>What is my balance?</p>", "author": {"type": "user", "id": "5", "email": ""}}
    item = {"type": "conversation", "id": ticket, "source": source}
    return {"type": "notification_event", "id": f"notif_{uuid.uuid4().hex}", "topic": intercom.CREATED,
            "data": {"item": item}}  # fmt: skip


def _signed(kind: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if kind == "zendesk":
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers |= {zendesk.SIGNATURE: zendesk.sign(SECRETS[kind], at, raw), zendesk.TIMESTAMP: at}
    elif kind == "freshdesk":
        headers["Authorization"] = f"Bearer {SECRETS[kind]}"
    else:
        headers[intercom.SIGNATURE] = intercom.sign(SECRETS[kind], raw)
    return raw, headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    admin = args.database_url or get_settings().database_url or DEFAULT_DATABASE
    name = f"switchboard_webhook_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    port = _free_port()
    redis.Redis.from_url(BROKER).flushdb()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": url,
        "SWITCHBOARD_BROKER_URL": BROKER,
        "SWITCHBOARD_HELPDESKS": json.dumps(
            {k: v | {"base_url": "http://127.0.0.1:9"} for k, v in HELPDESKS.items()}  # never called here
        ),
        "SWITCHBOARD_API_RATE_LIMIT": "1000000/minute",
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
    }
    api = None
    try:
        upgrade(url)
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "orchestrator.api:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        say(f"webhook-bench: API up on {base}; {args.requests} webhooks per helpdesk, {args.concurrency} at once")
        return _measure(base, args)
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        redis.Redis.from_url(BROKER).flushdb()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"requests_per_helpdesk": args.requests, "concurrency": args.concurrency}
    with httpx.Client(base_url=base, timeout=15, limits=httpx.Limits(max_connections=args.concurrency)) as client:
        for kind in HELPDESKS:
            for warm in range(5):  # the first requests open the pool's connections
                raw, headers = _signed(kind, _payload(kind, 10**6 + warm))
                client.post(f"/v1/helpdesks/{kind}/webhook", content=raw, headers=headers)

            def one(n: int, kind: str = kind) -> tuple[int, float]:
                raw, headers = _signed(kind, _payload(kind, n))
                started = time.perf_counter()
                response = client.post(f"/v1/helpdesks/{kind}/webhook", content=raw, headers=headers)
                return response.status_code, (time.perf_counter() - started) * 1000

            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(one, range(args.requests)))
            times = [ms for _, ms in results]
            out[kind] = {
                "answer_ms": summarize(times),
                "status": {str(s): sum(1 for c, _ in results if c == s) for s in sorted({c for c, _ in results})},
                "within_500ms_2xx": sum(1 for c, ms in results if 200 <= c < 300 and ms < 500),
            }
    out["method"] = (
        "the real API (uvicorn, one process) on its own database and broker database; signed webhooks of new "
        "tickets over HTTP from a thread pool; time from sending to the whole answer, client side"
    )
    return out


def main(args: argparse.Namespace) -> int:
    out = run(args)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    # Every webhook taken; how fast is the numbers' to say, not the exit code's.
    ok = all(out[k]["status"] == {"202": args.requests} for k in HELPDESKS)
    return 0 if ok else 1
