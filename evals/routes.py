"""`switchboard eval-routes`: routing on real customer text, through the whole running system.

A labelled public data set (Banking77's or CLINC150's test split, or any CSV of text and
label) and a route map (``../shared/datasets/routes/``: each intent's agent, or ``human``)
give the expected route of each message. A seeded sample, ``--per-intent`` messages of each
mapped intent, goes through the running API as the eval's cases do: the sandbox reset for
each, one customer with a subscription, invoices and payments (so every action is possible,
and a wrong one shows), the message as the ticket's body. For each it reads which agents
acted (answered, asked or escalated; not "not applicable"), the outcome, and every change to
the sandbox.

- **routed**: the agent the map names acted and no other did; for ``human``, the turn was
  escalated.
- **wrong action**: a change to the sandbox made by an agent the map does not name for the
  message (a refund for a knowledge question, a cancelled subscription for an order), or any
  change on a message the map sends to a human. Every change is listed, on-route ones too,
  for a person to read.

The data sets measure; nothing here trains on them.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.cases import Case, Expect
from evals.judge import created
from evals.runner import CaseRun, CaseRunner, KnowledgeBase
from evals.stack import StackRuntime, eval_stack
from shared.errors import ConfigurationError
from shared.sandbox.loader import DEMO_KB
from shared.settings import Settings

CUSTOMER = {"id": "cust_9001", "email": "alex.morgan@example.com", "name": "Alex Morgan"}
FIXTURE: dict[str, Any] = {
    "customers": [{**CUSTOMER, "plan": "pro", "status": "active", "verified": True}],
    "subscriptions": [{"id": "sub_9001", "customer_id": "cust_9001", "plan": "pro", "status": "active",
                       "price": 49.00, "currency": "USD", "renews_on": "+20d"}],
    "invoices": [
        {"id": "inv_9001", "customer_id": "cust_9001", "amount": 49.00, "currency": "USD", "status": "paid",
         "issued_on": "-10d"},
        {"id": "inv_9002", "customer_id": "cust_9001", "amount": 49.00, "currency": "USD", "status": "paid",
         "issued_on": "-40d"},
    ],
    "payments": [
        {"id": "pay_9001", "invoice_id": "inv_9001", "customer_id": "cust_9001", "amount": 49.00, "currency": "USD",
         "card_last4": "4242", "status": "succeeded", "created_at": "-10d"},
        {"id": "pay_9002", "invoice_id": "inv_9002", "customer_id": "cust_9001", "amount": 49.00, "currency": "USD",
         "card_last4": "4242", "status": "succeeded", "created_at": "-40d"},
    ],
}  # fmt: skip
# Which agent's tools make each kind of change in the sandbox.
CHANGED_BY = {"refunds": "billing", "subscriptions": "billing", "password_resets": "account", "customers": "account"}
# An agent acted when it took the message on: answered, asked, or escalated it for its own reason
# (a refund over the ceiling is billing's call). "not applicable", a failure or a late result is not.
ACTING = ("answered", "needs_info", "escalate")
# CLINC150 keeps its out-of-scope messages apart from the test split; they are labelled this.
OUT_OF_SCOPE = "oos"


@dataclass(frozen=True)
class Labelled:
    text: str
    intent: str
    route: str  # an agent, or "human"
    reason: str = ""


@dataclass
class Outcome:
    item: Labelled
    acted: list[str] = field(default_factory=list)
    outcome: str | None = None
    reason: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def routed(self) -> bool:
        if self.item.route == "human":
            return self.outcome == "escalated"
        return self.acted == [self.item.route]

    @property
    def wrong_actions(self) -> list[dict[str, Any]]:
        return [c for c in self.changes if self.item.route == "human" or c["by"] != self.item.route]


def read_routes(path: Path) -> dict[str, tuple[str, str]]:
    """intent (or ``domain/intent``, or ``flow/subflow``) -> (route, escalation reason)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    routes: dict[str, tuple[str, str]] = {}
    for row in rows:
        key = row.get("intent") or row.get("subflow") or ""
        if not key or not row.get("route"):
            raise ConfigurationError(f"{path}: a row without intent and route: {row}")
        routes[key] = (row["route"].strip(), (row.get("escalation_reason") or "").strip())
    return routes


def read_labelled(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) from a CSV with those columns, or CLINC150's ``data_full.json``.

    From CLINC150: its test split, and its out-of-scope test messages labelled ``oos``.
    """
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        rows = [(str(text), str(label)) for text, label in doc["test"]]
        return rows + [(str(text), OUT_OF_SCOPE) for text, _ in doc.get("oos_test") or []]
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise ConfigurationError(
                f"{path}: no column {', '.join(sorted(missing))} (use --text-column/--label-column)"
            )
        return [(row[text_column], row[label_column]) for row in reader]


def sample(
    rows: Sequence[tuple[str, str]], routes: Mapping[str, tuple[str, str]], per_intent: int, seed: int
) -> list[Labelled]:
    """``per_intent`` messages of each intent the map routes, the same ones for the same seed."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, label in rows:
        if label in routes and text.strip():
            by_intent[label].append(text.strip())
    rng = random.Random(seed)
    chosen: list[Labelled] = []
    for intent in sorted(by_intent):
        texts = sorted(set(by_intent[intent]))
        for text in rng.sample(texts, min(per_intent, len(texts))):
            route, reason = routes[intent]
            chosen.append(Labelled(text, intent, route, reason))
    rng.shuffle(chosen)
    return chosen


def case_of(item: Labelled, index: int) -> Case:
    return Case.model_validate(
        {
            "id": f"route-{index:04d}-{item.intent}",
            "customer": CUSTOMER,
            "fixture": FIXTURE,
            "turns": [item.text],
            "expect": Expect(),
        }
    )


def outcome_of(item: Labelled, run: CaseRun) -> Outcome:
    if run.error is not None or run.final_turn is None:
        return Outcome(item, error=run.error or "no turn")
    turn = run.final_turn
    changes = []
    for section, by in CHANGED_BY.items():
        for record in created(run.before, run.after, section):
            changes.append({"section": section, "by": by, "created": record})
    from shared.sandbox.state import state_changes

    for change in state_changes(dict(run.before), dict(run.after)):
        if change["change"] != "created" and change["section"] in CHANGED_BY:
            changes.append({"section": change["section"], "by": CHANGED_BY[change["section"]], "changed": change})
    return Outcome(
        item,
        acted=sorted(
            str(a.get("agent")) for a in turn.get("agents") or [] if a.get("status") in ACTING and not a.get("late")
        ),
        outcome=turn.get("outcome"),
        reason=turn.get("escalation_reason"),
        changes=changes,
    )


def report(outcomes: Sequence[Outcome], meta: Mapping[str, Any]) -> dict[str, Any]:
    done = [o for o in outcomes if o.error is None]
    per_intent: dict[str, dict[str, Any]] = {}
    for intent in sorted({o.item.intent for o in outcomes}):
        mine = [o for o in done if o.item.intent == intent]
        per_intent[intent] = {
            "route": next(o.item.route for o in outcomes if o.item.intent == intent),
            "n": len(mine),
            "routed": sum(o.routed for o in mine),
            "acted": dict(Counter("+".join(o.acted) or "none" for o in mine)),
            "outcomes": dict(Counter(str(o.outcome) for o in mine)),
            "wrong_actions": sum(len(o.wrong_actions) for o in mine),
        }
    return {
        **meta,
        "messages": len(outcomes),
        "errors": len(outcomes) - len(done),
        "routing": round(sum(o.routed for o in done) / len(done), 4) if done else None,
        "routed": sum(o.routed for o in done),
        "outcomes": dict(Counter(str(o.outcome) for o in done)),
        "escalation_reasons": dict(Counter(str(o.reason) for o in done if o.outcome == "escalated")),
        "wrong_actions": sum(len(o.wrong_actions) for o in done),
        "changes": sum(len(o.changes) for o in done),
        "by_route": {
            route: {
                "n": len(mine := [o for o in done if o.item.route == route]),
                "routed": sum(o.routed for o in mine),
            }
            for route in sorted({o.item.route for o in done})
        },
        "per_intent": per_intent,
        "wrong": [
            {
                "intent": o.item.intent,
                "route": o.item.route,
                "text": o.item.text,
                "acted": o.acted,
                "changes": o.wrong_actions,
            }
            for o in done
            if o.wrong_actions
        ],
        "misrouted_examples": [
            {
                "intent": o.item.intent,
                "route": o.item.route,
                "text": o.item.text,
                "acted": o.acted,
                "outcome": o.outcome,
                "reason": o.reason,
            }
            for o in done
            if not o.routed
        ][:50],
        "failed": [{"intent": o.item.intent, "text": o.item.text, "error": o.error} for o in outcomes if o.error],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard eval-routes", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("data", type=Path, help="a labelled CSV (e.g. banking77/test.csv) or clinc150/data_full.json")
    parser.add_argument("--routes", type=Path, required=True, help="the route map CSV (intent, route, …)")
    parser.add_argument("--per-intent", type=int, default=4, help="messages of each mapped intent (default 4)")
    parser.add_argument("--seed", type=int, default=20261202, help="the sample's seed")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--kb", type=Path, default=None, help="the knowledge-base corpus (default: the demo's)")
    parser.add_argument("--no-kb", action="store_true", help="do not import a knowledge base")
    parser.add_argument("--turn-timeout", type=float, default=30.0, metavar="S")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    return parser


def main(argv: Sequence[str], runtime: StackRuntime) -> int:
    args = _parser().parse_args(list(argv))
    try:
        routes = read_routes(args.routes)
        items = sample(
            read_labelled(args.data, args.text_column, args.label_column), routes, args.per_intent, args.seed
        )
    except (ConfigurationError, OSError, KeyError, ValueError) as exc:
        print(f"switchboard eval-routes: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("switchboard eval-routes: no message of the data has an intent the route map names", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    kb = KnowledgeBase(None if args.no_kb else (args.kb or DEMO_KB))
    with eval_stack(Settings(), runtime, brain=None, concurrency=None) as stack:
        print(f"switchboard eval-routes: {kb.import_corpus()}; {len(items)} messages", file=sys.stderr)
        runner = CaseRunner(stack.api_url, kb, turn_timeout_s=args.turn_timeout)
        try:
            for index, item in enumerate(items):
                outcomes.append(outcome_of(item, runner.run(case_of(item, index))))
                if (index + 1) % 25 == 0:
                    print(f"switchboard eval-routes: {index + 1}/{len(items)}", file=sys.stderr)
        finally:
            runner.close()
    meta = {
        "data": str(args.data),
        "routes": str(args.routes),
        "messages_per_intent": args.per_intent,
        "seed": args.seed,
    }
    out = report(outcomes, meta)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(json.dumps({k: v for k, v in out.items() if k not in ("per_intent", "misrouted_examples")}, indent=2))
    return 0 if out["errors"] == 0 else 1
