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
from typing import Any

import yaml
from sqlalchemy import create_engine, pool
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from shared.db import normalise_database_url, session_scope
from shared.errors import ConfigurationError
from shared.sandbox.fixtures import SECTIONS, FixtureError, load_fixture, reset_sandbox, set_policy, snapshot

DEMO = Path(__file__).with_name("demo.yaml")


def _cases(doc: Any, case_id: str | None) -> list[Mapping[str, Any]]:
    """The cases of a scenario file, or the file itself as one fixture-only 'case'."""
    if isinstance(doc, Mapping) and ("fixture" in doc or "turns" in doc):
        cases: list[Any] = [doc]
    elif isinstance(doc, Mapping):
        extra = sorted(set(doc) - set(SECTIONS) - {"policy"})
        if extra:
            raise FixtureError(
                f"unknown top-level key(s) {', '.join(extra)}: a fixture file has the sections "
                f"{', '.join(SECTIONS)} (and policy); a scenario file has cases with fixture:"
            )
        policy = doc.get("policy")
        cases = [{"fixture": {k: v for k, v in doc.items() if k != "policy"}, "policy": policy}]
    elif isinstance(doc, list):
        cases = doc
    else:
        raise FixtureError("the file is neither a fixture (a mapping of sections) nor a list of scenario cases")
    for index, case in enumerate(cases):
        if not isinstance(case, Mapping):
            raise FixtureError(f"case [{index}] is not a mapping")
    if case_id is not None:
        chosen = [c for c in cases if str(c.get("id")) == case_id]
        if not chosen:
            known = ", ".join(str(c.get("id")) for c in cases if c.get("id") is not None) or "none"
            raise FixtureError(f"no case {case_id!r} in the file; its cases are: {known}")
        cases = chosen
    return cases


def load_document(
    session: Session, doc: Any, *, now: datetime, reset: bool = False, case_id: str | None = None
) -> dict[str, int]:
    """Load a parsed fixture or scenario file; returns how many records of each section."""
    cases = _cases(doc, case_id)
    policies: dict[str, tuple[Any, str]] = {}
    has_policy = any(case.get("policy") is not None for case in cases)
    for case in cases:
        policy = case.get("policy") or {}
        if not isinstance(policy, Mapping):
            raise FixtureError(f"case {case.get('id')}: policy: must be a mapping like {{max_auto_refund: 100.00}}")
        for key, value in policy.items():
            seen = policies.get(key)
            if seen is not None and seen[0] != value:
                raise FixtureError(
                    f"cases {seen[1]} and {case.get('id')} set policy {key} differently; load one with --case"
                )
            policies[key] = (value, str(case.get("id")))
    if reset:
        reset_sandbox(session)
    if has_policy:  # a file without policy: leaves the current overrides alone
        set_policy(session, {key: value for key, (value, _) in policies.items()})
    totals = dict.fromkeys(SECTIONS, 0)
    for case in cases:
        where = f"case {case['id']}: " if case.get("id") is not None else ""
        fixture = case.get("fixture") or {}
        if not isinstance(fixture, Mapping):
            raise FixtureError(f"{where}fixture: must be a mapping of sections")
        customer = case.get("customer")
        try:
            counts = load_fixture(
                session, fixture, customer=customer if isinstance(customer, Mapping) else None, now=now
            )
        except FixtureError as exc:
            raise FixtureError(f"{where}{exc}") from None
        for section, n in counts.items():
            totals[section] += n
    return totals


def load_file(
    session: Session, path: Path, *, now: datetime, reset: bool = False, case_id: str | None = None
) -> dict[str, int]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FixtureError(f"not valid YAML: {exc}") from None
    return load_document(session, doc, now=now, reset=reset, case_id=case_id)


def load_demo_into(database_url: str, *, reset: bool = False) -> dict[str, int]:
    """Load the demo data into that database: the hook `switchboard run` calls on every start.

    Idempotent: records are upserted by id (dates are refreshed relative to now); refunds
    and resets made during an earlier run stay.
    """
    engine = create_engine(normalise_database_url(database_url), poolclass=pool.NullPool)
    try:
        with Session(engine) as session, session.begin():
            return load_file(session, DEMO, now=datetime.now(UTC), reset=reset)
    finally:
        engine.dispose()


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
