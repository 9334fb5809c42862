"""`switchboard bench`: what the event-driven fan-in costs, against plain Celery.

One run starts its own workers on one broker — the four Switchboard workers, driven by
``bench.brain.BenchBrain`` (instant agents that cite one instant tool call), and two
workers of the baseline app in ``bench.baseline`` — in a fresh database, and measures:

- ``baseline_group_join_ms``: a Celery group of three no-ops joined by the caller (one hop);
- ``baseline_blocking_turn_ms``: a task that joins such a group, awaited by the caller
  (two hops, the shape of a turn);
- ``turn_overhead_ms``: one turn at a time, from publishing the ``switchboard.ingest``
  task (the helpdesk's broker path) to the merge's commit, learnt by LISTEN on
  ``switchboard_turn_done``; the three series are sampled interleaved so noise hits all;
  ``turn_breakdown_p50_ms`` cuts those turns into segments by the rows' timestamps;
- ``throughput_turns_per_s`` / ``baseline_throughput_per_s``: N turns (N blocking
  group+join "turns") submitted at once, until the last one is done;
- ``deadline_overshoot_ms``: turns whose billing agent hangs, merged by the clock;
  ``finished_at`` minus when the merge was due (the last deadline of the agents that
  started, each from its own start, or the turn's budget when one never started);
  ``hung_agent_cutoff_after_deadline_ms``: how long after its own deadline each hung agent
  was cut off;
- ``model_bound``: turns whose three agents each wait 1 s on an HTTP call to the bench's
  model server, as a model would: the agent workers (ours and the baseline's) restarted in
  the threads pool, the orchestrators as before, so both run the same number of processes;
- ``cpu_ms_per_turn``: process CPU of the worker trees (and apart, the Postgres backends'
  and Redis's) over the two throughput runs, per turn (``bench.cpu``);
- ``local_brain`` and ``burst``: the four workers restarted on the real local brain, the
  demo sandbox, the public example messages in a loop, then a burst at ten times the rate
  measured (``bench.local``).

The targets are issue 12's (``bench.targets``); ``--skip`` leaves phases out.

Progress goes to stderr, the result to stdout. See docs/fan-in.md. How to check the
servers and start processes is the composition root's, handed over as a ``BenchRuntime``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.baseline import (
    BACKEND_ENV,
    BLOCKING_MODEL_TURN,
    BLOCKING_QUEUE,
    BLOCKING_TURN,
    BLOCKING_TURN_REPLY,
    FANOUT,
    JOIN_INTERVAL_S,
    JOIN_TIMEOUT_S,
    NOOP_QUEUE,
    create_baseline_app,
    join_group,
)
from bench.brain import HANG_MARK, HUNG_AGENT, MODEL_MARK
from bench.cpu import REDIS, CpuMeter, PostgresBackends, cpu_ms_per_turn, redis_server, worker_trees
from bench.local import LocalBrainPhases, burst_size
from bench.model_server import MODEL_WAIT_S, ModelServer
from bench.targets import Measured, evaluate
from orchestrator.keys import create_key
from orchestrator.turns import TURN_DONE_CHANNEL
from shared.celery_app import (
    DELIVERY_QUEUE,
    ORCHESTRATOR_QUEUE,
    agent_queue,
    create_app,
    wait_for_workers,
    worker_options,
)
from shared.contracts import Role
from shared.db import one_off_session
from shared.migrate import upgrade
from shared.settings import AGENTS, Settings

WARMUP = 20
PHASES = ("latency", "throughput", "overshoot", "model_bound", "local_brain", "burst")
BASELINE_WORKERS = ("bench-orchestrator", "bench-noop")
# Threads of each agent worker (ours and the baseline's) for the model-bound run: enough for
# 50 turns/s of 1-second model calls (Little's law) with room to spare.
MODEL_THREADS = 100
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER = "redis://127.0.0.1:6379/11"
INGEST = "switchboard.ingest"
BENCH_SOURCE = "bench"
# The segments of a lone turn, between the timestamps the bench and the rows record.
BREAKDOWN = (
    "publish_to_accept",  # broker hop to the orchestrator, task start, ticket validation
    "accept_to_claim",  # accept transaction, commit, start_turn called
    "claim_to_publish",  # start transaction (claim, window, event), commit, agent tasks built
    "publish_to_last_agent_start",  # 3 publishes, broker hop, the slowest of the 3 agent workers waking
    "last_agent_run_to_record",  # the (instant) agent loop, its result, record transaction opens
    "record_to_merge",  # record transaction, commit, merge called
    "merge_to_merged_event",  # merge transaction up to its last insert
    "merged_event_to_listener",  # the rest of the merge, commit, NOTIFY reaching the bench
)


class ProcessGroup(Protocol):
    """Child processes that start together and stop together (``switchboard.processes.Supervisor``)."""

    def start(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None) -> None: ...

    def start_worker(
        self, role: str, concurrency: int, extra_env: Mapping[str, str] | None = None, loglevel: str = "INFO"
    ) -> None: ...

    def exited(self) -> dict[str, int]: ...

    def kill(self, name: str, sig: int = ...) -> None: ...

    def stop(self, timeout: float = 15.0) -> None: ...


@dataclass(frozen=True)
class BenchRuntime:
    """What the bench needs of the composition root: server checks and a process group."""

    roles: tuple[str, ...]  # the worker roles of a stack
    check_database: Callable[[str], None]
    check_broker: Callable[[str], None]
    processes: Callable[[Mapping[str, str], Path], ProcessGroup]  # (env, log_dir)
    load_sandbox: Callable[[str], None] | None = None  # the demo company and its knowledge base, into a database
    prepare_brain: Callable[[Settings], None] | None = None  # train or find the intent classifier once


# --------------------------------------------------------------------------- pure helpers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolating linearly between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max and mean, rounded to microseconds when the unit is ms."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        **{f"p{q}": round(percentile(values, q), 3) for q in (50, 95, 99)},
        "max": round(max(values), 3),
        "mean": round(sum(values) / len(values), 3),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def render_table(report: dict[str, Any]) -> str:
    """The report for a person: one line per measure, then the targets."""
    lines = [f"{'measure':<30} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'n':>6}"]
    latencies = {
        "baseline_group_join_ms": report.get("baseline_group_join_ms"),
        "baseline_blocking_turn_ms": report.get("baseline_blocking_turn_ms"),
        "turn_overhead_ms": report.get("turn_overhead_ms"),
        "deadline_overshoot_ms": report.get("deadline_overshoot_ms"),
        "local_brain_turn_ms": report.get("local_brain", {}).get("turn_ms"),
        "burst_turn_ms": report.get("burst", {}).get("turn_ms"),
    }
    for key, s in latencies.items():
        if not s or not s.get("n"):
            continue
        lines.append(f"{key:<30} {s['p50']:>9.2f} {s['p95']:>9.2f} {s['p99']:>9.2f} {s['max']:>9.2f} {s['n']:>6}")
    rates = {
        "throughput_turns_per_s": report.get("throughput_turns_per_s"),
        "baseline_throughput_per_s": report.get("baseline_throughput_per_s"),
        "model_bound_turns_per_s": report.get("model_bound", {}).get("turns_per_s"),
        "model_bound_baseline_per_s": report.get("model_bound", {}).get("baseline_turns_per_s"),
        "local_brain_turns_per_s": report.get("local_brain", {}).get("turns_per_s"),
    }
    lines += [f"{key:<30} {value:>9.2f}" for key, value in rates.items() if value is not None]
    cpu = report.get("cpu_ms_per_turn", {})
    for kind in ("turn", "blocking"):
        if kind in cpu:
            c = cpu[kind]
            parts = ", ".join(f"{k} {v}" for k, v in c["by_worker"].items())
            servers = ", ".join(f"{k} {c[k]}" for k in ("postgres_backends", "redis") if c.get(k) is not None)
            lines.append(
                f"{'cpu_ms_per_turn ' + kind:<30} {c['total']:>9.2f}  workers {c['workers']} ({parts}); {servers}"
            )
    if "local_brain" in report and "cpu_ms_per_turn" in report["local_brain"]:
        lines.append(f"{'cpu_ms_per_turn local_brain':<30} {report['local_brain']['cpu_ms_per_turn']['total']:>9.2f}")
    if "burst" in report:
        b = report["burst"]
        lines.append(
            f"{'burst':<30} offered {b['offered']} at {b['rate_per_s']}/s, answered {b['answered']}, "
            f"timeouts {b['timeouts']}, drain {b['drain_s']} s; reasons {b['escalation_reasons']}"
        )
    for section in ("local_brain", "burst"):
        if warning := report.get(section, {}).get("warning"):
            lines.append(f"WARNING {section}: {warning}")
    lines.append("")
    for name, t in report["targets"].items():
        then = f"; then {t['then']}: {'pass' if t['pass_then'] else 'fail'}" if "then" in t else ""
        lines.append(
            f"{'PASS' if t['pass'] else 'FAIL'}  {name:<30} {t['measured']!s:>9}  (target {t['target']}{then})"
        )
    m = report["machine"]
    load = f", load {m['load_avg_1m']}" if "load_avg_1m" in m else ""
    lines.append(f"\n{m['cores']} cores{load}, broker {m['broker_scheme']}, python {m['python']}, celery {m['celery']}")
    return "\n".join(lines)


def cpu_ratio(cpu: Mapping[str, Mapping[str, object]], key: str = "total") -> float | None:
    """Our turn's CPU over the blocking pattern's: with their servers' (``total``) or ``workers`` only."""
    ours, theirs = cpu.get("turn", {}).get(key), cpu.get("blocking", {}).get(key)
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return ratio(float(ours), float(theirs))
    return None


def _ms(seconds: float) -> float:
    return seconds * 1000.0


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class BenchConfig:
    samples: int
    turns: int
    hung: int
    model_turns: int
    local_turns: int
    local_inflight: int
    burst_s: float
    burst_x: float
    burst_drain_s: float
    skip: frozenset[str]
    concurrency: int
    deadline_s: float
    admin_url: str
    broker_url: str
    backend_url: str


def config_from(args: argparse.Namespace, settings: Settings) -> BenchConfig:
    broker = settings.broker_url or DEFAULT_BROKER
    return BenchConfig(
        samples=max(1, int(args.samples)),
        turns=max(1, int(args.turns)),
        hung=max(1, int(args.hung)),
        model_turns=max(0, int(getattr(args, "model_turns", 300))),
        local_turns=max(0, int(getattr(args, "local_turns", 200))),
        # Enough tickets in flight to keep every slot of every worker busy; the queue does not grow.
        local_inflight=max(1, int(getattr(args, "local_inflight", 0) or 4 * settings.worker_concurrency)),
        burst_s=max(0.0, float(getattr(args, "burst_s", 10.0))),
        burst_x=max(0.0, float(getattr(args, "burst_x", 10.0))),
        burst_drain_s=max(1.0, float(getattr(args, "burst_drain_s", 240.0))),
        skip=skipped(
            getattr(args, "skip", None) or (),
            model_turns=int(getattr(args, "model_turns", 300)),
            local_turns=int(getattr(args, "local_turns", 200)),
            burst_s=float(getattr(args, "burst_s", 10.0)),
        ),
        concurrency=settings.worker_concurrency,
        deadline_s=max(settings.deadline_for(a) for a in settings.agents),
        admin_url=settings.database_url or DEFAULT_DATABASE,
        broker_url=broker,
        # The baseline needs a Redis result backend even when the broker is RabbitMQ.
        backend_url=broker if broker.startswith(("redis://", "rediss://")) else DEFAULT_BROKER,
    )


def skipped(names: Sequence[str], *, model_turns: int, local_turns: int, burst_s: float) -> frozenset[str]:
    """The phases left out: those named, those sized 0, and the burst without the local brain
    (its rate is ten times the local brain's)."""
    unknown = set(names) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown bench phases {sorted(unknown)}; the phases are {', '.join(PHASES)}")
    skip = set(names)
    if model_turns <= 0:
        skip.add("model_bound")
    if local_turns <= 0:
        skip.add("local_brain")
    if burst_s <= 0 or "local_brain" in skip:
        skip.add("burst")
    return frozenset(skip)


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database; spelled for psycopg."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    return urlunsplit(parts._replace(path=f"/{name}"))


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class TurnListener:
    """LISTEN switchboard_turn_done: the merge's commit, learnt without polling."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"LISTEN {TURN_DONE_CHANNEL}")

    def wait(self, count: int, timeout: float, label: str = "") -> list[tuple[str, float]]:
        """The next ``count`` merged turn ids, each with the wall-clock time it was learnt."""
        got: list[tuple[str, float]] = []
        end = time.monotonic() + timeout
        next_report = time.monotonic() + 5.0
        while len(got) < count:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{label}: {len(got)} of {count} turns merged within {timeout:.0f}s")
            for note in self.conn.notifies(timeout=min(left, 1.0), stop_after=count - len(got)):
                got.append((note.payload, time.time()))
            if label and time.monotonic() >= next_report:
                say(f"{label}: {len(got)}/{count} merged")
                next_report = time.monotonic() + 5.0
        return got

    def close(self) -> None:
        self.conn.close()


class BenchRun:
    """A fresh database, the workers, the clients; everything undone on exit."""

    def __init__(self, cfg: BenchConfig, run_id: str, runtime: BenchRuntime) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.runtime = runtime
        self.database = f"switchboard_bench_{os.getpid()}"
        self.database_url = with_database(cfg.admin_url, self.database)
        self.admin_dsn = with_database(cfg.admin_url, "postgres")
        self.log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.supervisor: ProcessGroup | None = None
        self.listener: TurnListener | None = None
        self._created_db = False
        self.timed: dict[str, tuple[float, float]] = {}
        self.cutoff_ms: list[float] = []
        self.model: ModelServer | None = None
        self.env: dict[str, str] = {}
        self.cpu: dict[str, dict[str, object]] = {}

    def cpu_meter(self, workers: Sequence[str]) -> CpuMeter:
        """A meter of the named workers' trees, this database's backends (not the bench's LISTEN) and Redis."""

        def listening() -> list[int]:
            return [self.listener.conn.info.backend_pid] if self.listener else []

        return CpuMeter(
            worker_trees(workers),
            PostgresBackends(self.database_url, self.database, listening),
            redis_server(self.redis_port),
        )

    @property
    def redis_port(self) -> int:
        """The broker's port: its Redis server's CPU is read by it (a RabbitMQ broker: none)."""
        parts = urlsplit(self.cfg.broker_url)
        return (parts.port or 6379) if parts.scheme.startswith("redis") else -1

    # ---------------------------------------------------------------- set-up and tear-down

    def __enter__(self) -> BenchRun:
        try:
            self._set_up()
        except BaseException:
            self._tear_down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._tear_down()

    def _set_up(self) -> None:
        self.runtime.check_database(self.admin_dsn)
        self.runtime.check_broker(self.cfg.broker_url)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
            self._created_db = True
        upgrade(self.database_url)
        with one_off_session(self.database_url) as session:  # the bench posts as a helpdesk would
            self.api_key = create_key(session, role=Role.helpdesk, source=BENCH_SOURCE, name="bench", by="bench")[1]
        say(f"database {self.database} migrated; broker {self.cfg.broker_url}")
        self.client = create_app(Settings(broker_url=self.cfg.broker_url, database_url=self.database_url))
        self.baseline = create_baseline_app(self.cfg.broker_url, self.cfg.backend_url)
        self._purge_queues()
        self.model = ModelServer().start()
        self._start_workers()
        self.listener = TurnListener(self.database_url)

    def _tear_down(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.supervisor is not None:
            say("stopping workers")
            self.supervisor.stop()
            self.supervisor = None
        if self.model is not None:
            self.model.stop()
            self.model = None
        if self._created_db:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._created_db = False
            say(f"database {self.database} dropped; worker logs in {self.log_dir}")

    def _purge_queues(self) -> None:
        """Messages a killed earlier run left behind would count as ours."""
        queues = [ORCHESTRATOR_QUEUE, DELIVERY_QUEUE, *(agent_queue(a) for a in AGENTS), NOOP_QUEUE, BLOCKING_QUEUE]
        with self.client.connection_for_write() as conn:
            for name in queues:
                try:
                    conn.default_channel.queue_purge(name)
                except Exception:  # a queue that does not exist yet (RabbitMQ) holds nothing
                    conn.release()

    def _start_workers(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("SWITCHBOARD_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR")}
        env.update(
            {
                "SWITCHBOARD_DATABASE_URL": self.database_url,
                "SWITCHBOARD_BROKER_URL": self.cfg.broker_url,
                "SWITCHBOARD_BRAIN": "bench.brain:BenchBrain",
                "SWITCHBOARD_EXTRA_TOOLS": json.dumps(["bench.brain:TOOLS"]),
                "SWITCHBOARD_SOURCES": json.dumps({BENCH_SOURCE: {}}),
                "SWITCHBOARD_LOG_LEVEL": "WARNING",
                "SWITCHBOARD_OPENAI_BASE_URL": self.model.url if self.model else "",
                BACKEND_ENV: self.cfg.backend_url,
            }
        )
        self.env = env
        supervisor = self.supervisor = self.runtime.processes(env, self.log_dir)
        c = self.cfg.concurrency
        for role in self.runtime.roles:
            supervisor.start_worker(role, c, loglevel="WARNING")
        baseline = {"bench-orchestrator": BLOCKING_QUEUE, "bench-noop": NOOP_QUEUE}
        for name, queue in baseline.items():
            argv = [sys.executable, "-m", "celery", "-A", "bench.baseline:app"]
            supervisor.start(name, [*argv, *worker_options([queue], name, c, "WARNING")])
        self._wait_for([*self.runtime.roles, *baseline])
        say(f"workers up: {', '.join(sorted([*self.runtime.roles, *baseline]))} (prefork, concurrency {c})")

    def _wait_for(self, wanted: list[str]) -> None:
        assert self.supervisor is not None
        end = time.monotonic() + 90
        while True:
            if dead := self.supervisor.exited():
                raise RuntimeError(f"workers exited at start-up: {dead}; see {self.log_dir}")
            try:
                wait_for_workers(wanted, timeout=1.0, celery=self.client)
                return
            except TimeoutError:
                if time.monotonic() >= end:
                    raise TimeoutError(f"workers did not come up within 90s; see {self.log_dir}") from None

    def _agents_in_threads(self) -> None:
        """The agent workers, ours and the baseline's, again as one process of MODEL_THREADS threads."""
        assert self.supervisor is not None
        agents = [r for r in self.runtime.roles if r in AGENTS]
        for name in [*agents, "bench-noop"]:
            self.supervisor.kill(name, signal.SIGTERM)
        pools = json.dumps(dict.fromkeys(agents, "threads"))
        threads = {"SWITCHBOARD_WORKER_POOLS": pools, "SWITCHBOARD_WORKER_THREADS": str(MODEL_THREADS)}
        for role in agents:
            self.supervisor.start_worker(role, self.cfg.concurrency, threads, loglevel="WARNING")
        argv = [sys.executable, "-m", "celery", "-A", "bench.baseline:app"]
        noop = worker_options([NOOP_QUEUE], "bench-noop", MODEL_THREADS, "WARNING", pool="threads")
        self.supervisor.start("bench-noop", [*argv, *noop])
        self._wait_for([*agents, "bench-noop"])
        say(f"agent workers restarted: threads pool, {MODEL_THREADS} threads, one process each")

    # ---------------------------------------------------------------- one unit of each

    def _ticket(self, tag: str, hang: bool = False) -> dict[str, Any]:
        body = "Why was I charged twice this month?" + (f" {HANG_MARK}" if hang else "")
        return {
            "source": BENCH_SOURCE,
            "external_id": f"{self.run_id}-{tag}",
            "channel": "api",
            "customer": {"id": "cust_bench", "name": "Bench Customer"},
            "body": body,
        }

    def _submit_turn(self, tag: str, hang: bool = False, model: bool = False) -> None:
        ticket = self._ticket(tag, hang)
        if model:
            ticket["body"] += f" {MODEL_MARK}"
        self.client.send_task(INGEST, args=[ticket], kwargs={"api_key": self.api_key}, queue=ORCHESTRATOR_QUEUE)

    def _turn_ms(self, tag: str) -> tuple[float, str, float, float]:
        """One turn, alone: its time, its id, and when it was sent and learnt (wall clock)."""
        assert self.listener is not None
        sent = time.time()
        start = time.perf_counter()
        self._submit_turn(tag)
        [(turn_id, learnt)] = self.listener.wait(1, timeout=30, label="")
        return _ms(time.perf_counter() - start), turn_id, sent, learnt

    def _group_join_ms(self) -> float:
        start = time.perf_counter()
        join_group(self.baseline)
        return _ms(time.perf_counter() - start)

    def _blocking_turn_ms(self) -> float:
        """Two hops like a turn: caller -> blocking 'orchestrator' task -> group of no-ops, joined."""
        start = time.perf_counter()
        self.baseline.send_task(BLOCKING_TURN_REPLY, queue=BLOCKING_QUEUE).get(
            timeout=JOIN_TIMEOUT_S, interval=JOIN_INTERVAL_S
        )
        return _ms(time.perf_counter() - start)

    # ---------------------------------------------------------------- the measures

    def measure(self) -> dict[str, Any]:
        cfg = self.cfg
        run = [p for p in PHASES if p not in cfg.skip]
        say(f"phases: {', '.join(run)}" + (f" (skipped: {', '.join(sorted(cfg.skip))})" if cfg.skip else ""))
        report: dict[str, Any] = {}
        ratios: dict[str, float | None] = {}
        measured: dict[str, Any] = {}
        checks: dict[str, Any] = {}
        if "latency" in run:
            baseline_ms, blocking_ms, turn_ms = self.latency()
            report |= {
                "baseline_group_join_ms": summarize(baseline_ms),
                "turn_overhead_ms": summarize(turn_ms),
                "baseline_blocking_turn_ms": summarize(blocking_ms),
                "turn_breakdown_p50_ms": self.breakdown(),
            }
            turn_p50, blocking_p50 = percentile(turn_ms, 50), percentile(blocking_ms, 50)
            ratios["turn_overhead_p50_vs_baseline_p50"] = ratio(turn_p50, percentile(baseline_ms, 50))
            ratios["turn_overhead_p50_vs_blocking_turn_p50"] = ratio(turn_p50, blocking_p50)
            measured |= {"turn_p50_ms": turn_p50, "blocking_turn_p50_ms": blocking_p50}
            checks["latency_turns"] = self.outcomes("lat-")
            self.settle()
        if "throughput" in run:
            baseline_tput = self.baseline_throughput()
            turn_tput = self.turn_throughput()
            report |= {
                "throughput_turns_per_s": round(turn_tput, 1),
                "baseline_throughput_per_s": round(baseline_tput, 1),
                "cpu_ms_per_turn": {
                    **self.cpu,
                    "vs_blocking": cpu_ratio(self.cpu),
                    "workers_vs_blocking": cpu_ratio(self.cpu, "workers"),
                },
            }
            ratios["throughput_vs_baseline"] = ratio(turn_tput, baseline_tput)
            measured |= {"throughput": turn_tput, "blocking_throughput": baseline_tput}
            checks["throughput_turns"] = self.outcomes("tput-")
            self.settle()
        if "overshoot" in run:
            overshoot_ms, committed_ms, triggers = self.overshoot()
            report |= {
                "deadline_overshoot_ms": summarize(overshoot_ms),
                "deadline_overshoot_to_commit_ms": summarize(committed_ms),
                "hung_agent_cutoff_after_deadline_ms": summarize(self.cutoff_ms),
            }
            measured["overshoot_p99_ms"] = percentile(overshoot_ms, 99)
            checks["hung_turn_merge_triggers"] = triggers
        if "model_bound" in run:
            model_bound = report["model_bound"] = self.model_bound()
            ratios["model_bound_vs_blocking"] = model_bound["vs_blocking"]
            measured |= {
                "model_bound_per_s": model_bound["turns_per_s"],
                "model_bound_vs_blocking": model_bound["vs_blocking"],
            }
            checks["model_bound_turns"] = self.outcomes("model-")
        if "local_brain" in run:
            self.settle()
            phases = LocalBrainPhases(self)
            phases.start()
            local = report["local_brain"] = phases.saturation(cfg.local_turns, cfg.local_inflight)
            measured |= {"local_brain_per_s": local["turns_per_s"], "local_brain_p95_ms": local["turn_ms"].get("p95")}
            checks["local_brain"] = local["checks"]
            if "burst" in run:
                rate, n = burst_size(local["turns_per_s"], cfg.burst_x, cfg.burst_s)
                burst = report["burst"] = phases.burst(rate, n, cfg.burst_drain_s)
                measured |= {
                    "burst_offered": burst["offered"],
                    "burst_answered": burst["answered"],
                    "burst_timeouts": burst["timeouts"],
                }
                checks["burst"] = {k: burst[k] for k in ("outcomes", "escalation_reasons", "merge_triggers")}
        report |= {"ratios": ratios, "targets": evaluate(Measured(**measured)), "checks": checks}
        return {
            **report,
            "method": {
                "samples": cfg.samples,
                "warmup": WARMUP,
                "turns": cfg.turns,
                "hung": cfg.hung,
                "deadline_s": cfg.deadline_s,
                "fanout": FANOUT,
                "turn_path": "publish switchboard.ingest -> orchestrator worker (accept_ticket, fan_out inline) "
                "-> 3 agent workers -> last result merges; timed to LISTEN switchboard_turn_done",
                "baseline_join": f"GroupResult.join(interval={JOIN_INTERVAL_S}): pub/sub per result on a Redis result "
                "backend (join_native()/get() sleep one 0.5 s default interval before listening)",
                "baseline_blocking_turn": "caller -> bench.blocking_turn_reply on its own worker, which joins a group "
                "of 3 no-ops on another worker; the caller waits on its result (two hops, like a turn)",
                "baseline_throughput_pattern": "bench.blocking_turn on its own worker: group of 3 no-ops on "
                "another worker, join(disable_sync_subtasks=False)",
                "overshoot": "turns.finished_at - when the merge was due: the last deadline of the agents that "
                "started (each from its own start), or the turn's budget if an agent never started",
                "overshoot_to_commit": "time LISTEN learnt the merge - when the merge was due",
                "hung_agent_cutoff": "agent_runs.finished_at of the hung agent's cut-off result - its own deadline",
                "model_bound": f"each of the 3 agents waits {MODEL_WAIT_S:g} s on one HTTP call to a local server; "
                f"agent workers (ours and the baseline's no-op worker) in the threads pool, {MODEL_THREADS} threads, "
                "one process each; orchestrators (ours, and the blocking one) prefork at worker_concurrency; "
                "model_turns ingest tasks at once vs 10 x concurrency bench.blocking_model_turn tasks",
                "cpu_ms_per_turn": "process CPU (user+system, psutil, sampled every 0.25 s) over each throughput run "
                "/ its turns: the worker process trees (ours during ours, the baseline's during the baseline's), the "
                "Postgres backends of the bench's database, and the broker's Redis server (all of it: shared)",
                "local_brain": f"SWITCHBOARD_BRAIN=local, the 4 workers restarted prefork at worker_concurrency, the "
                f"demo sandbox; local_turns tickets of the public example messages in a loop, local_inflight "
                f"({cfg.local_inflight}) at a time, each its own conversation; latency publish -> merge NOTIFY",
                "burst": f"burst_x ({cfg.burst_x:g}) x the local_brain rate for burst_s ({cfg.burst_s:g}) s, evenly "
                f"paced, then up to burst_drain_s ({cfg.burst_drain_s:g}) s until every turn is final; drain_s: "
                "last merge - last ticket published",
                "local_turns": cfg.local_turns,
                "skipped": sorted(cfg.skip),
            },
            "machine": machine_facts(cfg, self._server_version()),
        }

    def latency(self) -> tuple[list[float], list[float], list[float]]:
        """Group joins, blocking turns and turns, one at a time, interleaved so noise hits all three."""
        baseline: list[float] = []
        blocking: list[float] = []
        turns: list[float] = []
        total = WARMUP + self.cfg.samples
        say(f"latency: {total} each of turns, group joins and blocking turns, one at a time ({WARMUP} warm-up)")
        for i in range(total):
            # Rotate the order so none always follows another's aftermath.
            order = [0, 1, 2][i % 3 :] + [0, 1, 2][: i % 3]
            for kind in order:
                if kind == 0:
                    b = self._group_join_ms()
                elif kind == 1:
                    k = self._blocking_turn_ms()
                else:
                    t, turn_id, sent, learnt = self._turn_ms(f"lat-{i}")
            if i == 0:
                self._expect_resolved("lat-")
            if i >= WARMUP:
                baseline.append(b)
                blocking.append(k)
                turns.append(t)
                self.timed[turn_id] = (sent, learnt)
            if (i + 1) % 50 == 0:
                say(
                    f"latency: {i + 1}/{total}; p50 so far turn {percentile(turns or [t], 50):.2f} ms, "
                    f"group join {percentile(baseline or [b], 50):.2f} ms"
                )
        return baseline, blocking, turns

    def turn_throughput(self) -> float:
        assert self.listener is not None
        n = self.cfg.turns
        say(f"throughput: submitting {n} turns")
        roles = list(self.runtime.roles)
        with self.cpu_meter(roles) as meter:
            start = time.perf_counter()
            for i in range(n):
                self._submit_turn(f"tput-{i}")
            say(f"throughput: {n} turns submitted in {time.perf_counter() - start:.2f}s")
            self.listener.wait(n, timeout=max(120.0, n * 0.5), label="throughput")
            elapsed = time.perf_counter() - start
        self.cpu["turn"] = cpu_ms_per_turn(meter.spent(), n, roles)
        say(f"throughput: {n} turns merged in {elapsed:.2f}s = {n / elapsed:.1f}/s")
        return n / elapsed

    def model_bound(self) -> dict[str, Any]:
        """Turns whose agents wait on a model: ours, then the blocking pattern, same processes."""
        assert self.listener is not None
        self._agents_in_threads()
        n = self.cfg.model_turns
        say(f"model-bound: submitting {n} turns whose agents wait {MODEL_WAIT_S:g} s on the model")
        start = time.perf_counter()
        for i in range(n):
            self._submit_turn(f"model-{i}", model=True)
        self.listener.wait(n, timeout=max(120.0, n * 0.5), label="model-bound")
        ours = n / (time.perf_counter() - start)
        say(f"model-bound: {n} turns in {n / ours:.2f}s = {ours:.1f}/s")
        blocking = self._blocking_throughput(BLOCKING_MODEL_TURN, 10 * self.cfg.concurrency, "model-bound baseline")
        return {
            "turns_per_s": round(ours, 1),
            "baseline_turns_per_s": round(blocking, 2),
            "vs_blocking": ratio(ours, blocking),
            "turns": n,
            "baseline_turns": 10 * self.cfg.concurrency,
            "model_wait_s": MODEL_WAIT_S,
            "agent_threads": MODEL_THREADS,
            "model_requests": self.model.requests if self.model else 0,
        }

    def baseline_throughput(self) -> float:
        with CpuMeter(worker_trees(BASELINE_WORKERS), redis_server(self.redis_port)) as meter:
            rate = self._blocking_throughput(BLOCKING_TURN, self.cfg.turns, "baseline throughput")
        self.cpu["blocking"] = cpu_ms_per_turn(meter.spent(), self.cfg.turns, BASELINE_WORKERS, servers=(REDIS,))
        return rate

    def _blocking_throughput(self, task: str, n: int, label: str) -> float:
        key = f"switchboard-bench:{self.run_id}:{task}:done"
        redis = self.baseline.backend.client
        say(f"{label}: submitting {n} blocking group+join turns")
        start = time.perf_counter()
        for _ in range(n):
            self.baseline.send_task(task, args=[key], queue=BLOCKING_QUEUE)
        end = time.monotonic() + max(120.0, n * 0.2)
        next_report = time.monotonic() + 5.0
        while int(redis.get(key) or 0) < n:
            if time.monotonic() > end:
                raise TimeoutError(f"{label}: {int(redis.get(key) or 0)} of {n} done in time")
            if time.monotonic() >= next_report:
                say(f"{label}: {int(redis.get(key) or 0)}/{n} done")
                next_report = time.monotonic() + 5.0
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        redis.delete(key)
        say(f"{label}: {n} done in {elapsed:.2f}s = {n / elapsed:.1f}/s")
        return n / elapsed

    def overshoot(self) -> tuple[list[float], list[float], dict[str, int]]:
        assert self.listener is not None
        n = self.cfg.hung
        say(f"overshoot: {n} turns with the {HUNG_AGENT} agent hung, submitted together")
        for i in range(n):
            self._submit_turn(f"hung-{i}", hang=True)
        learnt = dict(self.listener.wait(n, timeout=self.cfg.deadline_s + 90, label="overshoot"))
        due, finished, triggers = self._hung_rows(list(learnt))
        overshoot = [_ms(finished[tid] - due[tid]) for tid in learnt]
        committed = [_ms(learnt[tid] - due[tid]) for tid in learnt]
        self._await_late_results(list(learnt))
        self.cutoff_ms = [_ms(c) for c in self._cutoffs(list(learnt))]
        say(f"overshoot: p50 {percentile(overshoot, 50):.2f} ms, max {max(overshoot):.2f} ms; triggers {triggers}")
        return overshoot, committed, triggers

    def _hung_rows(self, turn_ids: list[str]) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
        """When each turn was due to merge without its hung agent, and when it merged.

        Due: the last deadline of the agents that started (each agent's own deadline runs
        from its start), or the turn's budget when one never started (it waited for it).
        """
        with psycopg.connect(self.database_url) as conn:
            turns = conn.execute(
                "SELECT id, extract(epoch FROM finished_at), extract(epoch FROM budget_at), agents, merge_trigger "
                "FROM turns WHERE id = ANY(%s)",
                (turn_ids,),
            ).fetchall()
            starts = conn.execute(
                "SELECT turn_id, agent, extract(epoch FROM deadline_at) FROM agent_starts WHERE turn_id = ANY(%s)",
                (turn_ids,),
            ).fetchall()
        deadlines: dict[str, dict[str, float]] = {}
        for turn_id, agent, deadline in starts:
            deadlines.setdefault(turn_id, {})[agent] = float(deadline)
        due: dict[str, float] = {}
        finished: dict[str, float] = {}
        triggers: dict[str, int] = {}
        for turn_id, finished_at, budget_at, agents, trigger in turns:
            started = deadlines.get(turn_id, {})
            moments = list(started.values())
            if any(a not in started for a in agents):
                moments.append(float(budget_at))
            due[turn_id] = max(moments)
            finished[turn_id] = float(finished_at)
            triggers[trigger] = triggers.get(trigger, 0) + 1
        return due, finished, triggers

    def _cutoffs(self, turn_ids: list[str]) -> list[float]:
        """How long after its own deadline each hung agent was cut off (its result recorded)."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM r.finished_at - s.deadline_at) FROM agent_runs r "
                "JOIN agent_starts s ON s.turn_id = r.turn_id AND s.agent = r.agent "
                "WHERE r.agent = %s AND r.turn_id = ANY(%s)",
                (HUNG_AGENT, turn_ids),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def _await_late_results(self, turn_ids: list[str]) -> None:
        """Let the cut-off agents record their late results, so stopping kills nothing mid-task."""
        end = time.monotonic() + self.cfg.deadline_s + 15
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < end:
                row = conn.execute(
                    "SELECT count(*) FROM agent_runs WHERE agent = %s AND turn_id = ANY(%s)", (HUNG_AGENT, turn_ids)
                ).fetchone()
                if row is not None and row[0] >= len(turn_ids):
                    return
                time.sleep(0.2)
        say(f"overshoot: not every cut-off {HUNG_AGENT} result was recorded in time")

    def settle(self) -> None:
        """Let the clock's deadline timers of the turns just run fire (each is a no-op UPDATE)."""
        pause = self.cfg.deadline_s + 1.0
        say(f"settling {pause:.1f}s for the deadline timers of finished turns")
        time.sleep(pause)

    def breakdown(self) -> dict[str, float]:
        """Where a lone turn's time goes: p50 of each segment, from the rows' own timestamps.

        Wall clocks of the driver, the workers and Postgres are the same host clock.
        """
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT t.id, extract(epoch FROM t.created_at), extract(epoch FROM t.started_at),"
                " extract(epoch FROM min(r.started_at - (r.result->'timings'->>'queue_wait_ms')::float"
                "  * interval '1 millisecond')),"
                " extract(epoch FROM max(r.started_at)), extract(epoch FROM max(r.finished_at)),"
                " extract(epoch FROM t.finished_at),"
                " (SELECT extract(epoch FROM max(e.at)) FROM events e"
                "  WHERE e.turn_id = t.id AND e.kind = 'turn.merged')"
                " FROM turns t JOIN agent_runs r ON r.turn_id = t.id WHERE t.id = ANY(%s) GROUP BY t.id",
                (list(self.timed),),
            ).fetchall()
        segments: dict[str, list[float]] = {name: [] for name in BREAKDOWN}
        for turn_id, *stamps in rows:
            sent, learnt = self.timed[turn_id]
            points = [sent, *(float(x) for x in stamps), learnt]
            for name, a, b in zip(BREAKDOWN, points, points[1:], strict=False):
                segments[name].append(_ms(b - a))
        return {name: round(percentile(v, 50), 3) for name, v in segments.items() if v}

    def _expect_resolved(self, prefix: str) -> None:
        """Instant agents must resolve every turn: anything else measures an error path."""
        seen = self.outcomes(prefix)
        if set(seen) != {"resolved/all_in"}:
            raise RuntimeError(f"bench turns ended {seen}, not resolved/all_in; see the logs in {self.log_dir}")

    def outcomes(self, prefix: str) -> dict[str, int]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT t.outcome || '/' || t.merge_trigger, count(*) FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id WHERE c.external_id LIKE %s GROUP BY 1",
                (f"{self.run_id}-{prefix}%",),
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def _server_version(self) -> str:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that stops workers and drops the database


def main(args: argparse.Namespace, runtime: BenchRuntime) -> int:
    cfg = config_from(args, Settings())
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with BenchRun(cfg, run_id=f"{os.getpid()}-{uuid.uuid4().hex[:6]}", runtime=runtime) as run:
            report = run.measure()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 0


def machine_facts(cfg: BenchConfig, postgres: str) -> dict[str, Any]:
    import celery
    import kombu
    import sqlalchemy

    return {
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
        "postgres": postgres,
        "broker_scheme": cfg.broker_url.split("://", 1)[0],
        "result_backend_scheme": cfg.backend_url.split("://", 1)[0],
        "worker_pool": "prefork",
        "worker_concurrency": cfg.concurrency,
    }
