"""`switchboard desk`: the escalation desk from a terminal or a script, over the API.

    switchboard desk list [--status queued,claimed] [--json]
    switchboard desk claim [ID] [--json]
    switchboard desk show ID [--json]
    switchboard desk reply ID (--body TEXT | --file PATH) [--resolve]
    switchboard desk release ID
    switchboard desk hand-back ID
    switchboard desk note ID (--body TEXT | --file PATH)
    switchboard desk heartbeat ID

It calls the API at ``SWITCHBOARD_API_URL`` (default http://127.0.0.1:8000) with the
agent or admin key in ``SWITCHBOARD_API_KEY``. A claim's token, and the newest customer
message ``claim`` or ``show`` printed, are kept in ``~/.config/switchboard/desk.json``
(mode 0600; ``SWITCHBOARD_DESK_STATE`` moves it), so ``reply`` answers what you read: if
the customer wrote again since, the reply is refused and the new message printed. Exit
codes: 0 done, 1 refused (409: the claim is not current, the customer wrote again, the
escalation is taken), 2 a usage or configuration problem, 3 the queue is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx

from shared.errors import ConfigurationError

EMPTY = 3
REFUSED = 1


class Desk:
    def __init__(self, url: str, key: str, state_path: Path) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=15)
        self.state_path = state_path

    # ---------------------------------------------------------------- local state

    def state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.state_path.read_text())
            return loaded
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def remember(self, escalation_id: str, **values: Any) -> None:
        state = self.state()
        state.setdefault(escalation_id, {}).update(values)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_path)

    def forget(self, escalation_id: str) -> None:
        state = self.state()
        if state.pop(escalation_id, None) is not None:
            self.state_path.write_text(json.dumps(state, indent=2))

    def token(self, escalation_id: str, given: int | None) -> int:
        if given is not None:
            return given
        token = self.state().get(escalation_id, {}).get("claim_token")
        if token is None:
            raise ConfigurationError(
                f"no claim of {escalation_id} on this machine: `switchboard desk claim {escalation_id}` first "
                "(or pass --token)"
            )
        return int(token)

    # ---------------------------------------------------------------- calls

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"the API at {self.http.base_url} did not answer ({exc})") from None


def _problem(response: httpx.Response) -> str:
    try:
        problem = response.json()
        return f"{problem.get('title', response.status_code)}: {problem.get('detail', '')}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _fail(response: httpx.Response) -> int:
    print(f"switchboard desk: {_problem(response)}", file=sys.stderr)
    if response.status_code == 409:
        try:
            newer = response.json().get("message")
        except ValueError:
            newer = None
        if newer:
            print(f"\nThe customer wrote ({newer['created_at']}):\n{textwrap.indent(newer['body'], '  ')}\n")
        return REFUSED
    return 2


def _print_packet(packet: dict[str, Any]) -> None:
    e = packet["escalation"]
    c = packet["customer"]
    print(f"{e['id']}  {e['state']}  reason {packet['reason']}  priority {e['priority']}  SLA due {e['sla_due_at']}")
    who = c["name"] or c["id"]
    where = ", ".join(x for x in (c["email"], c["locale"], c["timezone"]) if x)
    local = f"  local time {c['local_time']}" if c.get("local_time") else ""
    print(f"customer: {who} ({where}){local}")
    print(f"\nsummary:\n{textwrap.indent(packet['summary'], '  ')}")
    for f in packet["findings"]:
        print(f"\n{f['agent']} ({f['status']}, confidence {f['confidence']:.2f}): {f['answer'] or ''}")
        for fact in f["facts"]:
            print(f"  - {fact['statement']}")
    if packet["actions"]:
        print("\nactions on the record:")
        for a in packet["actions"]:
            amount = f" {a['amount']} {a['currency'] or ''}" if a["amount"] else ""
            print(f"  - {a['tool']} {a['object_id'] or ''}{amount}: {a['state']} ({a['agent']})")
    print("\nconversation:")
    for m in packet["conversation"]["messages"]:
        print(f"  [{m['created_at'][:19]}] {m['role']}: {m['body']}")
    if packet["suggested_reply"]:
        print(f"\nsuggested reply:\n{textwrap.indent(packet['suggested_reply'], '  ')}")
    for n in packet["notes"]:
        print(f"note by {n['author']}: {n['body']}")


def _body(args: argparse.Namespace) -> str:
    if (args.body is None) == (args.file is None):
        raise ConfigurationError("give the text with --body TEXT or --file PATH (one of them)")
    if args.file is not None:
        return str(Path(args.file).read_text())
    return str(args.body)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard desk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="escalations in queue order")
    p.add_argument("--status", default="queued,claimed", help="comma-separated: queued, claimed, resolved, handed_back")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("claim", help="claim the next escalation, or the one named")
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("show", help="the handoff packet")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    for name, help_text in (("reply", "send a reply to the customer"), ("note", "add a private note")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id")
        p.add_argument("--body")
        p.add_argument("--file")
        p.add_argument("--token", type=int, help="the claim token (default: the one claim kept)")
        if name == "reply":
            p.add_argument("--resolve", action="store_true", help="resolve the escalation with this reply")
    for name, help_text in (
        ("release", "put it back in the queue for someone else"),
        ("hand-back", "give the conversation back to the bot"),
        ("heartbeat", "keep the claim alive"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id")
        p.add_argument("--token", type=int)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    key = os.environ.get("SWITCHBOARD_API_KEY", "")
    if not key:
        raise ConfigurationError(
            "SWITCHBOARD_API_KEY is not set: use an agent key (`switchboard keys create --role agent --name NAME`)"
        )
    state = Path(os.environ.get("SWITCHBOARD_DESK_STATE") or Path.home() / ".config" / "switchboard" / "desk.json")
    desk = Desk(os.environ.get("SWITCHBOARD_API_URL", "http://127.0.0.1:8000"), key, state)

    if args.action == "list":
        r = desk.call("GET", "/v1/escalations", status=args.status, limit=args.limit)
        if r.status_code != 200:
            return _fail(r)
        page = r.json()
        if args.json:
            print(json.dumps(page))
            return 0
        for i in page["items"]:
            who = i["customer"]["name"] or i["customer"]["id"]
            print(f"{i['id']}  {i['state']:<8} {i['reason']:<16} due {i['sla_due_at']}  {who}  ({i['source']})")
        return 0
    if args.action in ("claim", "show"):
        if args.action == "claim":
            r = desk.call("POST", "/v1/escalations/claim", {"escalation_id": args.id} if args.id else {})
            if r.status_code == 204:
                print("the queue is empty", file=sys.stderr)
                return EMPTY
            if r.status_code != 200:
                return _fail(r)
            out = r.json()
            packet = out["escalation"]
            desk.remember(packet["escalation"]["id"], claim_token=out["claim_token"])
        else:
            r = desk.call("GET", f"/v1/escalations/{args.id}")
            if r.status_code != 200:
                return _fail(r)
            out = packet = r.json()
        escalation_id = packet["escalation"]["id"]
        desk.remember(escalation_id, seen_message_id=packet["conversation"]["latest_customer_message_id"])
        if args.json:
            print(json.dumps(out))
        else:
            if args.action == "claim":
                print(f"claimed {escalation_id} (token {out['claim_token']}, lease until {out['lease_expires_at']})\n")
            _print_packet(packet)
        return 0

    token = desk.token(args.id, args.token)
    if args.action == "reply":
        seen = desk.state().get(args.id, {}).get("seen_message_id")
        if not seen:
            raise ConfigurationError(f"read it first: `switchboard desk show {args.id}`")
        body = {"claim_token": token, "body": _body(args), "seen_message_id": seen, "resolve": args.resolve}
        r = desk.call("POST", f"/v1/escalations/{args.id}/reply", body)
        if r.status_code != 200:
            return _fail(r)
        out = r.json()
        print(
            ("sent before; not sent again" if out["duplicate"] else "sent") + (", resolved" if out["resolved"] else "")
        )
        if out["resolved"]:
            desk.forget(args.id)
        return 0
    if args.action == "note":
        r = desk.call("POST", f"/v1/escalations/{args.id}/notes", {"claim_token": token, "body": _body(args)})
        return 0 if r.status_code == 201 else _fail(r)
    path = {"release": "release", "hand-back": "hand-back", "heartbeat": "heartbeat"}[args.action]
    r = desk.call("POST", f"/v1/escalations/{args.id}/{path}", {"claim_token": token})
    if r.status_code != 200:
        return _fail(r)
    if args.action == "heartbeat":
        print(f"lease until {r.json()['lease_expires_at']}")
    else:
        desk.forget(args.id)
        print(f"{args.id} {r.json()['state']}")
    return 0
