"""`switchboard desk-bench`: many humans claiming from one queue at once.

It creates a database of its own on the Postgres of ``--database-url`` (default: the
machine's, or SWITCHBOARD_DATABASE_URL's server), fills the queue with ``--escalations``
escalations (conversations, messages, turns and escalations written as the merge writes
them), then starts ``--claimers`` threads, each with its own database connection, that
claim with ``orchestrator.desk.claim`` until the queue is empty, as the API's claim route
does. It prints claims per second, claim latency (p50, p95, p99), and double claims: an
escalation claimed by two claimers, or twice. That must be 0.

Threads, not processes: the claim's time is spent in Postgres (psycopg releases the GIL
while it waits), and 32 processes would measure the 2-core machine's scheduler instead.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text

from bench.run import DEFAULT_DATABASE, say, summarize, with_database
from orchestrator import desk
from shared import db
from shared.migrate import upgrade
from shared.settings import Settings, get_settings


def _fill(url: str, n: int) -> None:
    """``n`` queued escalations, due over the next hours in an order the claim must keep."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        conversations, messages, turns, escalations = [], [], [], []
        for i in range(n):
            c, m, t, e = (f"{p}_bench_{i:05d}_{uuid.uuid4().hex[:6]}" for p in ("conv", "msg", "turn", "esc"))
            customer = json.dumps({"id": f"cust_{i}", "email": f"c{i}@example.com", "name": f"Customer {i}"})
            conversations.append((c, "bench", f"ext-{i}", "email", "", f"cust_{i}", customer))
            messages.append((m, c, "customer", f"message {i}"))
            turns.append((t, c, m, "done", "escalated", "low_confidence", i + 1))
            due = now + timedelta(minutes=30 + (i * 7) % 600)
            escalations.append((e, t, c, "low_confidence", "summary", "queued", i % 3, due, now))
        cur.executemany(
            "INSERT INTO conversations (id, source, external_id, channel, subject, customer_id, customer, turn_count)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 1)",
            conversations,
        )
        cur.executemany("INSERT INTO messages (id, conversation_id, role, body) VALUES (%s, %s, %s, %s)", messages)
        cur.executemany(
            "INSERT INTO turns (id, conversation_id, message_id, state, outcome, escalation_reason, seq, agents,"
            " results_in, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, '[]', 0, 1)",
            turns,
        )
        cur.executemany(
            "INSERT INTO escalations (id, turn_id, conversation_id, reason, summary, state, priority, sla_due_at,"
            " queued_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            escalations,
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    admin = args.database_url or settings.database_url or DEFAULT_DATABASE
    name = f"switchboard_desk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    try:
        upgrade(url)
        say(f"desk-bench: database {name}; {args.escalations} escalations in the queue")
        _fill(url, args.escalations)
        desk_settings = Settings(database_url=url, db_pool_size=args.claimers, db_max_overflow=0)
        with db.configured(desk_settings):
            return _race(args, desk_settings, url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _race(args: argparse.Namespace, settings: Settings, url: str) -> dict[str, Any]:
    latencies: list[float] = []
    claimed: list[tuple[str, str, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(args.claimers + 1)

    def claimer(actor: str) -> None:
        mine: list[tuple[str, str, int]] = []
        times: list[float] = []
        ready.wait()
        while True:
            started = time.perf_counter()
            try:
                with db.session_scope() as s:
                    got = desk.claim(s, actor, settings)
            except Exception as exc:  # counted and shown: a bench that hides errors measures nothing
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            times.append(time.perf_counter() - started)
            if got is None:
                break
            mine.append((got.escalation_id, actor, got.claim_token))
        with lock:
            claimed.extend(mine)
            latencies.extend(times)

    threads = [threading.Thread(target=claimer, args=(f"bench:{i}",)) for i in range(args.claimers)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    per_escalation = Counter(e for e, _, _ in claimed)
    with db.session_scope() as s:
        events: dict[str, int] = {
            str(row[0]): int(row[1])
            for row in s.execute(
                text("SELECT escalation_id, count(*) FROM escalation_events WHERE kind = 'claimed' GROUP BY 1")
            )
        }
        left = s.execute(text("SELECT count(*) FROM escalations WHERE state = 'queued'")).scalar_one()
    double = sum(1 for n in per_escalation.values() if n > 1) + sum(1 for n in events.values() if n > 1)
    out = {
        "escalations": args.escalations,
        "claimers": args.claimers,
        "claims": len(claimed),
        "left_in_queue": int(left),
        "double_claims": double,
        "errors": len(errors),
        "claims_per_s": round(len(claimed) / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
        "claim_latency_ms": summarize([x * 1000 for x in latencies]),
        "method": (
            "N threads, one Postgres connection each, call orchestrator.desk.claim (FOR UPDATE SKIP LOCKED, "
            "conditional UPDATE, claim event) in its own transaction until the queue is empty; latency counts "
            "every claim call, the last (empty) one included"
        ),
    }
    if errors:
        out["first_error"] = errors[0]
    return out


def main(args: argparse.Namespace) -> int:
    out = run(args)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    ok = out["double_claims"] == 0 and out["errors"] == 0 and out["left_in_queue"] == 0
    ok = ok and out["claims"] == out["escalations"]
    return 0 if ok else 1
