"""``switchboard users``: the humans who log in to the web desk.

    switchboard users create --email E --role agent|admin [--password-stdin]
    switchboard users list
    switchboard users set-password --email E [--password-stdin]
    switchboard users disable --email E

The password is asked for twice at a terminal, or read from the first line of standard
input with --password-stdin (for scripts); it is never an argument, so it stays out of the
shell's history and the process list. Only its argon2id hash is stored. Like ``keys``, this
uses SWITCHBOARD_DATABASE_URL, or the embedded Postgres of the data folder.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from orchestrator.users import ROLES, create_user, disable_user, list_users, set_password
from shared.db import one_off_session
from shared.errors import ConfigurationError
from shared.settings import get_settings
from switchboard.keys import operator
from switchboard.servers import database


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard users", description="The humans of the web desk.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("create", help="create a desk user")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub.add_parser("list", help="every user: id, email, role, created, disabled")
    p = sub.add_parser("set-password", help="set a new password (logs the user out everywhere)")
    p.add_argument("--email", required=True)
    p.add_argument("--password-stdin", action="store_true")
    p = sub.add_parser("disable", help="disable a user (logs them out everywhere)")
    p.add_argument("--email", required=True)
    return parser


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise ConfigurationError("no password on standard input")
        return line
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ConfigurationError("the two passwords differ")
    return first


def _run(args: argparse.Namespace, url: str) -> int:
    with one_off_session(url) as s:
        if args.action == "create":
            person = create_user(
                s, email=args.email, role=args.role, password=_password(args.password_stdin), by=operator()
            )
            print(f"created {person.id} ({person.role}) {person.email}: log in at /desk")
        elif args.action == "list":
            for user_id, email, role, created, disabled in list_users(s):
                state = f"disabled {disabled:%Y-%m-%d %H:%M}" if disabled else "active"
                print(f"{user_id}  {role:<6}  {email}  {created:%Y-%m-%d %H:%M}  {state}")
        elif args.action == "set-password":
            set_password(s, email=args.email, password=_password(args.password_stdin), by=operator())
            print(f"password set for {args.email}")
        else:
            disable_user(s, email=args.email, by=operator())
            print(f"disabled {args.email}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        with database(get_settings()) as url:
            return _run(args, url)
    except ConfigurationError as exc:
        print(f"switchboard users: {exc}", file=sys.stderr)
        return 2
