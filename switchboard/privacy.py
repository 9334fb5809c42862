"""``switchboard erase`` and ``switchboard retention``: deleting personal data on request and by age.

    switchboard erase --source S --customer ID     everything about one customer, with counts
    switchboard retention run [--dry-run]          conversations past SWITCHBOARD_RETENTION_DAYS

With SWITCHBOARD_DATABASE_URL set these use that database; unset, the embedded Postgres
of the data folder (beside a running `switchboard run`, given the same data folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from orchestrator.retention import erase_customer, purge_expired
from shared.db import one_off_session
from shared.errors import ConfigurationError
from shared.settings import get_settings
from switchboard.keys import operator
from switchboard.servers import database


def erase_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="switchboard erase", description="Erase everything about one customer of one source."
    )
    parser.add_argument("--source", required=True, help="the helpdesk the customer came through")
    parser.add_argument("--customer", required=True, help="the customer's id in that helpdesk")
    args = parser.parse_args(list(argv))
    return _with_database(lambda url: _erase(url, args.source, args.customer))


def retention_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="switchboard retention", description="Delete conversations past the retention age."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="delete (or count, with --dry-run) what is older than SWITCHBOARD_RETENTION_DAYS")
    run.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    args = parser.parse_args(list(argv))
    return _with_database(lambda url: _retention(url, dry_run=args.dry_run))


def _erase(url: str, source: str, customer_id: str) -> int:
    with one_off_session(url) as s:
        counts = erase_customer(s, source=source, customer_id=customer_id, by=f"switchboard erase ({operator()})")
    print(json.dumps({"source": source, "customer_id": customer_id, "erased": counts}))
    return 0


def _retention(url: str, *, dry_run: bool) -> int:
    days = get_settings().retention_days
    total: dict[str, int] = {}
    while True:  # in batches, so one run never holds a huge transaction
        with one_off_session(url) as s:
            counts = purge_expired(s, days, by=f"switchboard retention run ({operator()})", dry_run=dry_run)
        for table, n in counts.items():
            total[table] = total.get(table, 0) + n
        if dry_run or not counts["conversations"]:
            break
    verb = "would delete" if dry_run else "deleted"
    print(json.dumps({"retention_days": days, verb.replace(" ", "_"): total}))
    return 0


def _with_database(action: Callable[[str], int]) -> int:
    try:
        with database(get_settings()) as url:
            return int(action(url))
    except ConfigurationError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
