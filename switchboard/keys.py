"""``switchboard keys``: create, list and revoke API keys.

    switchboard keys create --role helpdesk --source S --name NAME
    switchboard keys create --role agent|admin --name NAME
    switchboard keys list
    switchboard keys revoke ID

With SWITCHBOARD_DATABASE_URL set these use that database; unset, the embedded Postgres
of the data folder, so they work beside a running `switchboard run` given the same
SWITCHBOARD_DATA_DIR. The new key is printed once and cannot be shown again.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from orchestrator.keys import create_key, list_keys, revoke_key
from shared.contracts import Role
from shared.db import one_off_session
from shared.errors import ConfigurationError
from shared.settings import get_settings
from switchboard.servers import database


def operator() -> str:
    """Who runs this command, for the audit events: the login of the shell it runs in."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard keys", description="Create, list and revoke API keys.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("create", help="create a key and print it (once)")
    p.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the key may do")
    p.add_argument("--source", default=None, help="a helpdesk key's source (required for --role helpdesk)")
    p.add_argument("--name", required=True, help="who holds the key, e.g. 'zendesk production'")
    sub.add_parser("list", help="every key: id, role, source, name, created, revoked")
    p = sub.add_parser("revoke", help="revoke a key at once")
    p.add_argument("id", help="the key's id, as `switchboard keys list` shows it")
    return parser


def _run(args: argparse.Namespace, url: str) -> int:
    settings = get_settings()
    with one_off_session(url) as s:
        if args.action == "create":
            role = Role(args.role)
            if role is Role.helpdesk and args.source and args.source not in settings.sources:
                print(
                    f"switchboard keys: note: source {args.source!r} is not in SWITCHBOARD_SOURCES of this "
                    "environment; the API refuses tickets of a source it is not configured with",
                    file=sys.stderr,
                )
            key, token = create_key(s, role=role, name=args.name, source=args.source, by=operator())
            print(token)
            print(f"created {key.id} ({role}{f', source {key.source}' if key.source else ''}): "
                  "the key above is shown only now; send it as `Authorization: Bearer <key>`",
                  file=sys.stderr)  # fmt: skip
            return 0
        if args.action == "list":
            for key in list_keys(s):
                state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                print(
                    f"{key.id}  {key.role:<8}  {key.source or '-':<16}  {key.prefix}…  "
                    f"{key.created_at:%Y-%m-%d %H:%M}  {state}  {key.name}"
                )
            return 0
        if not revoke_key(s, args.id, by=operator()):
            print(f"switchboard keys: no active key {args.id!r} (see `switchboard keys list`)", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        with database(get_settings()) as url:
            return _run(args, url)
    except ConfigurationError as exc:
        print(f"switchboard keys: {exc}", file=sys.stderr)
        return 2
