"""The ``switchboard`` command: run, migrate, worker, api, bench and the offline evals.

Configuration errors (an unreachable server, a missing setting) print one line that says
what to do and exit 2; they never print a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from shared.errors import ConfigurationError


def _migrate(args: argparse.Namespace) -> int:
    from orchestrator.servers import check_database, migrate_database
    from shared.settings import get_settings

    settings = get_settings()
    if not settings.database_url:
        raise ConfigurationError(
            "SWITCHBOARD_DATABASE_URL is not set. Point it at a Postgres server, "
            "or use `switchboard run`, which starts its own."
        )
    check_database(settings.database_url)
    migrate_database(settings.database_url)
    print("database is at the latest schema")
    return 0


def _run(args: argparse.Namespace) -> int:
    from orchestrator.stack import run_stack

    return run_stack(args)


def _worker(args: argparse.Namespace) -> int:
    import os
    import tempfile

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Prefork children write their samples here; without it /metrics shows the parent only.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"switchboard-{args.role}-metrics-")
    from orchestrator.stack import worker_argv
    from shared.celery_app import app

    app.worker_main(worker_argv(args.role, args.concurrency, args.loglevel))
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        "orchestrator.api:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=settings.log_level.lower(),
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from orchestrator.bench import main as bench_main

    return bench_main(args)


def _external(module: str) -> Callable[[argparse.Namespace], int]:
    """Subcommands implemented as ``main(argv)`` in their own module."""

    def call(args: argparse.Namespace) -> int:
        import importlib

        main: Callable[[list[str]], int] = importlib.import_module(module).main
        return int(main(list(args.rest)))

    return call


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the whole stack on this machine (API, orchestrator, agents)")
    p.add_argument("--no-sandbox", action="store_true", help="do not load the demo sandbox data")
    p.add_argument("--concurrency", type=int, default=None, help="processes per worker (default: settings)")
    p.set_defaults(fn=_run)

    p = sub.add_parser("migrate", help="bring the database schema to the latest version")
    p.set_defaults(fn=_migrate)

    p = sub.add_parser("worker", help="run one Celery worker (orchestrator or an agent)")
    p.add_argument("role", help="orchestrator, billing, knowledge or account")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(fn=_worker)

    p = sub.add_parser("api", help="run the HTTP API")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(fn=_api)

    p = sub.add_parser("bench", help="measure orchestration overhead against plain Celery")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--turns", type=int, default=2000, help="turns for the throughput run")
    p.add_argument("--samples", type=int, default=200, help="sequential samples for latency percentiles")
    p.add_argument("--hung", type=int, default=30, help="turns with a hung agent for the overshoot")
    p.set_defaults(fn=_bench)

    p = sub.add_parser("nlu", help="offline evaluation of the intent engine")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_external("shared.nlu.evaluate"))

    p = sub.add_parser("guardrails", help="offline evaluation of the guardrails")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_external("shared.guardrails_eval"))

    p = sub.add_parser("sandbox", help="load, reset or show the sandbox company's records (demo, eval fixtures)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_external("shared.sandbox.cli"))

    p = sub.add_parser("kb", help="import, search and evaluate the knowledge base")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_external("agents.knowledge.cli"))

    p = sub.add_parser("eval", help="run scenario cases through the whole system")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_external("orchestrator.evaluate"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
    except ConfigurationError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
