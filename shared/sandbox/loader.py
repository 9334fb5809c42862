"""Loading fixture and scenario files into the sandbox store, and the demo company.

A fixture YAML has the sections (customers, payments, ...; optionally ``policy:``); a
scenario file has one case or a list of cases, each with its ``fixture:``, ``customer:``
and ``policy:``. Loading upserts by id, so loading twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from shared.db import one_off_engine
from shared.sandbox.fixtures import SECTIONS, FixtureError, load_fixture, reset_sandbox, set_policy

DEMO = Path(__file__).with_name("demo.yaml")
# The demo company's knowledge base, which `switchboard run` imports unless SWITCHBOARD_KB_DIR says otherwise.
DEMO_KB = Path(__file__).with_name("kb")


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
    engine = one_off_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return load_file(session, DEMO, now=datetime.now(UTC), reset=reset)
    finally:
        engine.dispose()
