"""The ``switchboard`` command: run, migrate, worker, api, bench, and the data and eval tools.

Configuration errors (an unreachable server, a missing setting) print one line that says
what to do and exit 2; they never print a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.errors import ConfigurationError

if TYPE_CHECKING:
    from evals.stack import StackRuntime


def _migrate(args: argparse.Namespace) -> int:
    from shared.migrate import upgrade
    from shared.settings import get_settings
    from switchboard.servers import check_database

    settings = get_settings()
    if not settings.database_url:
        raise ConfigurationError(
            "SWITCHBOARD_DATABASE_URL is not set. Point it at a Postgres server, "
            "or use `switchboard run`, which starts its own."
        )
    check_database(settings.database_url)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def _run(args: argparse.Namespace) -> int:
    from switchboard.stack import run_stack

    return run_stack(args)


def _worker(args: argparse.Namespace) -> int:
    import os
    import tempfile

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Prefork children write their samples here; without it /metrics shows the parent only.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"switchboard-{args.role}-metrics-")
    from shared.settings import get_settings, refuse_weak_secrets
    from switchboard.stack import worker_argv
    from switchboard.worker import worker_app

    refuse_weak_secrets(get_settings())  # one line and exit 2, before Celery starts

    worker_app().worker_main(
        worker_argv(args.role, args.concurrency, args.loglevel, args.also_queue, pool=args.pool, threads=args.threads)
    )
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.logs import configure_logging
    from shared.settings import get_settings, refuse_weak_secrets

    settings = get_settings()
    refuse_weak_secrets(settings)
    # The API logs as the workers do: JSON lines through the redacting formatter, uvicorn's too.
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        "orchestrator.api:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bench.run import BenchRuntime
    from bench.run import main as bench_main
    from shared.settings import get_settings
    from switchboard.processes import ROLES, Supervisor
    from switchboard.servers import check_broker, check_database
    from switchboard.stack import load_sandbox, prepare_brain

    runtime = BenchRuntime(
        roles=ROLES,
        check_database=check_database,
        check_broker=check_broker,
        processes=lambda env, log_dir: Supervisor(env=env, log_dir=log_dir),
        load_sandbox=lambda database_url: load_sandbox(database_url, get_settings()),
        prepare_brain=prepare_brain,
    )
    return bench_main(args, runtime)


def _webhook_bench(args: argparse.Namespace) -> int:
    from bench.webhooks import main as webhook_bench_main

    return webhook_bench_main(args)


def _desk_bench(args: argparse.Namespace) -> int:
    from bench.desk import main as desk_bench_main

    return desk_bench_main(args)


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import SoakRuntime
    from bench.soak import main as soak_main
    from switchboard.embedded import EmbeddedPostgres, EmbeddedRedis
    from switchboard.processes import Supervisor, switchboard_argv
    from switchboard.servers import check_broker, check_database, free_port
    from switchboard.stack import prepare_brain

    runtime = SoakRuntime(
        processes=lambda env, log_dir: Supervisor(env=env, log_dir=log_dir),
        embedded_postgres=EmbeddedPostgres,
        # The machine's Redis keeps nothing on disk: the soak's loses its queues on a restart too.
        embedded_redis=lambda root: EmbeddedRedis(root, root / "redis.log", persist=False),
        check_database=check_database,
        check_broker=check_broker,
        free_port=free_port,
        api_argv=lambda port: switchboard_argv("api", "--host", "127.0.0.1", "--port", str(port)),
        prepare_brain=prepare_brain,
    )
    return soak_main(args, runtime)


def _eval_routes(argv: list[str]) -> int:
    from evals.routes import main as routes_main

    return routes_main(argv, _eval_runtime())


def _eval_runtime() -> StackRuntime:
    from evals.stack import StackRuntime
    from switchboard.embedded import EmbeddedPostgres
    from switchboard.stack import api_base_url, started_stack

    return StackRuntime(
        api_url=api_base_url,
        running_database_url=lambda data_dir: EmbeddedPostgres(data_dir / "postgres").running_url(),
        start=started_stack,
    )


def _eval(argv: list[str]) -> int:
    from evals.cli import main as eval_main

    return eval_main(argv, _eval_runtime())


def _nlu(argv: list[str]) -> int:
    from shared.nlu.evaluate import main as nlu_eval

    return nlu_eval(_after_eval("nlu", argv))


def _guardrails(argv: list[str]) -> int:
    if argv[:1] == ["train-injection"]:
        from shared.guardrails.injection_training import main as train_injection

        return train_injection(argv[1:])
    from shared.guardrails.evaluate import main as guardrails_eval

    return guardrails_eval(_after_eval("guardrails", argv))


def _kb(argv: list[str]) -> int:
    from switchboard.kb import main as kb_main

    return kb_main(argv)


def _keys(argv: list[str]) -> int:
    from switchboard.keys import main as keys_main

    return keys_main(argv)


def _users(argv: list[str]) -> int:
    from switchboard.users import main as users_main

    return users_main(argv)


def _desk(argv: list[str]) -> int:
    from switchboard.desk_cli import main as desk_main

    return desk_main(argv)


def _erase(argv: list[str]) -> int:
    from switchboard.privacy import erase_main

    return erase_main(argv)


def _retention(argv: list[str]) -> int:
    from switchboard.privacy import retention_main

    return retention_main(argv)


def _sandbox(argv: list[str]) -> int:
    from switchboard.sandbox import main as sandbox_main

    return sandbox_main(argv)


def _after_eval(command: str, argv: list[str]) -> list[str]:
    """`switchboard nlu eval ARGS`: the one action of these commands is spelled out."""
    if argv[:1] == ["eval"]:
        return argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        return argv
    raise SystemExit(f"usage: switchboard {command} eval [options]  (see `switchboard {command} eval --help`)")


EXTERNAL_HELP = {
    "nlu": "offline evaluation of the intent engine (Banking77)",
    "guardrails": "offline evaluation of the guardrails; train-injection rebuilds the learned injection detector",
    "sandbox": "load, reset or show the sandbox company's records (demo, eval fixtures)",
    "kb": "import, search and evaluate the knowledge base",
    "keys": "create, list and revoke API keys",
    "desk": "the escalation desk: list, claim, show, reply, release, hand back",
    "users": "the humans who log in to the web desk (/desk)",
    "erase": "erase everything about one customer",
    "retention": "delete conversations past the retention age",
    "eval": "run scenario cases through the whole system and judge them",
    "eval-routes": "routing and wrong actions on a labelled public data set, through the whole system",
}


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
    p.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        default=None,
        help="default: the role's SWITCHBOARD_WORKER_POOL(S) (threads for agents of the openai brain)",
    )
    p.add_argument("--concurrency", type=int, default=None, help="prefork processes (default: settings)")
    p.add_argument("--threads", type=int, default=None, help="threads of a threads pool (default: settings)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument(
        "--also-queue",
        action="append",
        default=[],
        metavar="QUEUE",
        help="consume this queue too, e.g. orchestrator.dead_letter (tickets parked while the database was down)",
    )
    p.set_defaults(fn=_worker)

    p = sub.add_parser("api", help="run the HTTP API")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(fn=_api)

    p = sub.add_parser("bench", help="measure orchestration overhead against plain Celery")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--turns", type=int, default=600, help="turns for the throughput run")
    p.add_argument("--samples", type=int, default=200, help="sequential samples for latency percentiles")
    p.add_argument("--hung", type=int, default=30, help="turns with a hung agent for the overshoot")
    p.add_argument(
        "--model-turns", type=int, default=300, help="turns whose agents wait 1 s on a model (0: skip model_bound)"
    )
    p.add_argument("--local-turns", type=int, default=200, help="local-brain example tickets (0: skip local_brain)")
    p.add_argument("--local-inflight", type=int, default=0, help="local-brain tickets in flight (0: 4 x concurrency)")
    p.add_argument("--burst-s", type=float, default=10.0, help="seconds of the burst (0: skip burst)")
    p.add_argument("--burst-x", type=float, default=10.0, help="the burst's rate, times the local-brain rate")
    p.add_argument("--burst-drain-s", type=float, default=240.0, help="how long the burst may take to drain")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["latency", "throughput", "overshoot", "model_bound", "local_brain", "burst"],
        help="leave a phase out (repeatable)",
    )
    p.set_defaults(fn=_bench)

    p = sub.add_parser("desk-bench", help="many humans claiming from one escalation queue; prints JSON")
    p.add_argument("--claimers", type=int, default=32, help="concurrent claimers (threads, a connection each)")
    p.add_argument("--escalations", type=int, default=1000, help="escalations in the queue")
    p.add_argument("--database-url", default=None, help="a Postgres to create the bench's database in")
    p.add_argument("--json", action="store_true", help="print the JSON object on one line")
    p.set_defaults(fn=_desk_bench)

    p = sub.add_parser("webhook-bench", help="how fast the helpdesks' webhook route answers; prints JSON")
    p.add_argument("--requests", type=int, default=300, help="signed webhooks per helpdesk")
    p.add_argument("--concurrency", type=int, default=8, help="clients at once")
    p.add_argument("--database-url", default=None, help="a Postgres to create the bench's database in")
    p.add_argument("--json", action="store_true", help="print the JSON object on one line")
    p.set_defaults(fn=_webhook_bench)

    p = sub.add_parser("soak", help="tickets that each need one refund, under faults; prints what held (JSON)")
    p.add_argument("--tickets", type=int, default=600, help="how many tickets, each from a customer of its own")
    # What a 2-core machine sustains with the local brain (about 2 turns/s, faults included):
    # faster, and the queue only grows.
    p.add_argument("--rate", type=float, default=2.0, help="tickets per second (default 2, what 2 cores sustain)")
    p.add_argument("--fault-every", type=float, default=15.0, help="seconds between faults")
    p.add_argument(
        "--faults",
        default=None,
        help="comma-separated: kill_worker, kill_api, restart_broker, restart_database (default: all)",
    )
    p.add_argument("--concurrency", type=int, default=2, help="prefork children per worker")
    p.add_argument("--seed", type=int, default=8, help="the fault and flaky-helpdesk sequence")
    p.add_argument("--database-url", default=None, help="a Postgres to create the soak's database in (else embedded)")
    p.add_argument("--broker-url", default=None, help="a Redis to use (else embedded)")
    p.add_argument("--restart-database", default=None, help="the command that restarts --database-url's server")
    p.add_argument("--restart-broker", default=None, help="the command that restarts --broker-url's server")
    p.add_argument(
        "--log-level", default="WARNING", help="of the soak's API and workers (their logs stay in the run's folder)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the soak's database (and its embedded servers' data) afterwards"
    )
    p.add_argument("--json", action="store_true", help="print the JSON object on one line")
    p.set_defaults(fn=_soak)

    for name, help_text in EXTERNAL_HELP.items():
        sub.add_parser(name, help=help_text, add_help=False)  # they parse their own arguments (main)
    return parser


# Subcommands that parse their own arguments: everything after the name is theirs, so
# `switchboard eval --json cases.yaml` works as well as `switchboard eval cases.yaml --json`.
EXTERNAL: dict[str, Callable[[list[str]], int]] = {
    "nlu": _nlu,
    "guardrails": _guardrails,
    "sandbox": _sandbox,
    "kb": _kb,
    "keys": _keys,
    "desk": _desk,
    "users": _users,
    "erase": _erase,
    "retention": _retention,
    "eval": _eval,
    "eval-routes": _eval_routes,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTERNAL:
        try:
            return int(EXTERNAL[argv[0]](argv[1:]))
        except ConfigurationError as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            return 2
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
