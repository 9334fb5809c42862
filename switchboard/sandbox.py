"""``switchboard sandbox``: load, reset and show the sandbox company's records.

    switchboard sandbox load FILE [--reset] [--case ID] [--now ISO]
    switchboard sandbox load --demo [--reset]
    switchboard sandbox reset
    switchboard sandbox show [--customer ID]

FILE is a YAML with the fixture's sections (customers, payments, ...; optionally
``policy:``), or a scenario file: one case or a list of cases, each with its ``fixture:``,
``customer:`` and ``policy:``. Loading upserts by id, so loading twice changes nothing;
``--reset`` empties the store first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError

from shared.db import session_scope
from shared.errors import ConfigurationError
from shared.sandbox.fixtures import FixtureError, reset_sandbox, snapshot
from shared.sandbox.loader import DEMO, load_file


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {section.replace('_', ' ')}" for section, n in counts.items() if n) or "nothing"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard sandbox", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    load = sub.add_parser("load", help="load a fixture or scenario file (or the demo) into the sandbox")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="a fixture YAML or a scenario file")
    source.add_argument("--demo", action="store_true", help="the demo data set (shared/sandbox/demo.yaml)")
    load.add_argument("--reset", action="store_true", help="empty the sandbox first")
    load.add_argument("--case", default=None, help="only this case of a scenario file")
    load.add_argument("--now", default=None, help="the moment relative dates count from (ISO 8601; default: now)")
    sub.add_parser("reset", help="empty the sandbox (records, policy overrides, idempotency keys)")
    show = sub.add_parser("show", help="print what a case's expect.state can check, as JSON")
    show.add_argument("--customer", action="append", default=None, help="only this customer (repeatable)")
    return parser


def _run(args: argparse.Namespace) -> str:
    if args.action == "reset":
        with session_scope() as session:
            reset_sandbox(session)
        return "The sandbox is empty."
    if args.action == "show":
        with session_scope() as session:
            return json.dumps(snapshot(session, args.customer), indent=2)
    now = datetime.now(UTC)
    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            raise FixtureError(f"--now {args.now!r} is not an ISO 8601 time, e.g. 2026-11-02T09:00:00Z") from None
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    path: Path = DEMO if args.demo else args.file
    with session_scope() as session:
        counts = load_file(session, path, now=now, reset=args.reset, case_id=args.case)
    return f"Loaded {_summary(counts)} from {path}" + (" into an emptied sandbox." if args.reset else ".")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(_run(args))
    except FixtureError as exc:
        where = f"{args.file}: " if getattr(args, "file", None) else ""
        print(f"switchboard sandbox: {where}{exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"switchboard sandbox: no such file: {exc.filename}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:
        print(f"switchboard sandbox: {exc}", file=sys.stderr)
        return 2
    except ProgrammingError as exc:
        if "sandbox_" not in str(exc.orig) or "does not exist" not in str(exc.orig):
            raise
        print("switchboard sandbox: the sandbox tables do not exist; run `switchboard migrate` first", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"switchboard sandbox: cannot reach the database ({str(exc.orig).strip()})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
