"""The bench's end-to-end phases: the real local brain on the demo sandbox, then a burst.

``local_brain``: the four workers restarted with ``SWITCHBOARD_BRAIN=local`` (prefork, the
product's default for it), the demo sandbox loaded, and the public example messages
(``evals/public/examples.yaml``, every message of every example) sent in a loop as tickets
of the sandbox's tenant, each its own conversation, ``inflight`` at a time (a closed loop:
a merge lets the next ticket in), so the workers are saturated and the queue does not grow.
Turn latency is from publishing the ticket to the merge's NOTIFY, as for the lone turns.

``burst``: ``rate`` tickets a second, evenly paced, for ``seconds`` (ten times the rate just
measured, so far more than the stack can take), then until every turn is final or the
drain time is up; what users would see is counted from the rows.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import yaml

from bench.cpu import cpu_ms_per_turn
from orchestrator.keys import create_key
from shared.celery_app import ORCHESTRATOR_QUEUE, agent_queue
from shared.contracts import EscalationReason, MergeTrigger, Role, TurnState
from shared.db import one_off_session
from shared.sandbox.models import SANDBOX_TENANT
from shared.settings import AGENTS, Settings

if TYPE_CHECKING:
    from bench.run import BenchRun

EXAMPLES = Path(__file__).resolve().parents[1] / "evals" / "public" / "examples.yaml"
DEMO_SOURCE = "bench-demo"
LOCAL_PREFIX = "local-"
WARM_PREFIX = "lwarm-"
BURST_PREFIX = "lburst-"
WARM_TIMEOUT_S = 240.0
# Ended without an answer of the agents: what a phase measures if most of its turns end so.
ERROR_REASONS = {EscalationReason.timeout, EscalationReason.tool_failure, EscalationReason.processing_failed}
ERROR_TRIGGERS = {MergeTrigger.gave_up, MergeTrigger.sweeper}


@dataclass(frozen=True)
class Example:
    id: str
    customer: dict[str, Any]
    body: str


def example_messages(path: Path = EXAMPLES) -> list[Example]:
    """Every message of every example, in order, with the example's customer."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Example(id=str(case["id"]), customer=dict(case["customer"]), body=str(body))
        for case in doc
        for body in case.get("turns", [])
    ]


def pacing(n: int, rate: float) -> list[float]:
    """When (seconds from the start) each of ``n`` tickets offered at ``rate`` a second is sent."""
    if rate <= 0:
        raise ValueError("a burst needs a positive rate")
    return [i / rate for i in range(n)]


def burst_size(rate_per_s: float, multiple: float, seconds: float) -> tuple[float, int]:
    """The burst's rate and how many tickets it offers: ``multiple`` times the rate, for ``seconds``."""
    rate = rate_per_s * multiple
    return rate, max(1, round(rate * seconds))


def account(offered: int, rows: Iterable[Sequence[str | None]]) -> dict[str, Any]:
    """What users saw of ``offered`` tickets, from their turns' (state, outcome, reason, trigger).

    Answered is a turn that is final (done) — a reply, a question or a human's queue — and a
    ticket with no turn, or a turn not final, is not. Timeouts are turns escalated as
    ``timeout``.
    """
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    answered = 0
    errors = 0
    for state, outcome, reason, trigger in rows:
        if state != TurnState.done:
            continue
        answered += 1
        outcomes[str(outcome)] += 1
        triggers[str(trigger)] += 1
        if reason:
            reasons[str(reason)] += 1
        if reason in ERROR_REASONS or trigger in ERROR_TRIGGERS:
            errors += 1
    return {
        "offered": offered,
        "answered": answered,
        "unanswered": offered - answered,
        "timeouts": reasons.get(EscalationReason.timeout, 0),
        "outcomes": dict(sorted(outcomes.items())),
        "escalation_reasons": dict(sorted(reasons.items())),
        "merge_triggers": dict(sorted(triggers.items())),
        "error_path_turns": errors,
    }


def error_path_warning(counted: dict[str, Any]) -> str | None:
    """A phase most of whose turns ended on an error path measured that path, not answers."""
    answered = int(counted["answered"])
    if answered and counted["error_path_turns"] * 2 > answered:
        return (
            f"{counted['error_path_turns']} of {answered} turns ended on an error path "
            f"({counted['escalation_reasons']}, {counted['merge_triggers']}): this measures failures, not answers"
        )
    if not answered:
        return "no turn was answered"
    return None


class LocalBrainPhases:
    """Restarts the run's workers on the local brain and measures the two phases."""

    def __init__(self, run: BenchRun) -> None:
        self.run = run
        self.examples = example_messages()
        self.sent: dict[str, float] = {}  # external id -> when published (wall clock)
        self.learnt: dict[str, float] = {}  # turn id -> when its merge was learnt
        self.sandbox: dict[str, Any] = {}

    # ---------------------------------------------------------------- set-up

    def start(self) -> None:
        run = self.run
        assert run.supervisor is not None
        settings = Settings()
        cache = settings.cache_dir or settings.data_dir.expanduser().resolve() / "cache"
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the report's
            if run.runtime.load_sandbox is not None:
                run.runtime.load_sandbox(run.database_url)
            if run.runtime.prepare_brain is not None:
                run.runtime.prepare_brain(Settings(brain="local", cache_dir=cache))
        self.sandbox = self._check_sandbox()
        with one_off_session(run.database_url) as session:
            self.api_key = create_key(session, role=Role.helpdesk, source=DEMO_SOURCE, name="bench demo", by="bench")[1]
        sources = {**json.loads(run.env.get("SWITCHBOARD_SOURCES", "{}")), DEMO_SOURCE: {"tenant": SANDBOX_TENANT}}
        local = {
            "SWITCHBOARD_BRAIN": "local",
            "SWITCHBOARD_EXTRA_TOOLS": "[]",
            "SWITCHBOARD_SOURCES": json.dumps(sources),
            "SWITCHBOARD_CACHE_DIR": str(cache),
        }
        roles = list(run.runtime.roles)
        for role in roles:
            run.supervisor.kill(role, 15)
        restarted = time.time()
        for role in roles:
            run.supervisor.start_worker(role, run.cfg.concurrency, local, loglevel="WARNING")
        run._wait_for(roles)
        self._wait_warm(restarted)
        self._say(f"workers restarted on the local brain (prefork, concurrency {run.cfg.concurrency}), warm")
        self.closed_loop(WARM_PREFIX, len(self.examples), inflight=run.cfg.concurrency, label="local warm-up")

    def _check_sandbox(self) -> dict[str, Any]:
        """Which example customers the demo sandbox holds, and whether it has its knowledge base."""
        wanted = sorted({str(e.customer["id"]) for e in self.examples})
        with psycopg.connect(self.run.database_url) as conn:
            have = {
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM sandbox_customers WHERE tenant = %s AND id = ANY(%s)", (SANDBOX_TENANT, wanted)
                ).fetchall()
            }
            kb = conn.execute("SELECT to_regclass('kb_sections') IS NOT NULL").fetchone()
        missing = [c for c in wanted if c not in have]
        if missing:
            self._say(f"example customers not in the demo sandbox: {', '.join(missing)} (their tickets still run)")
        return {"example_customers": len(wanted), "missing_customers": missing, "knowledge_base": bool(kb and kb[0])}

    def _wait_warm(self, since: float) -> None:
        """Every process of every worker has said it is warm (the brain loaded) since the restart."""
        wanted = {ORCHESTRATOR_QUEUE: self.run.cfg.concurrency} | {
            agent_queue(a): self.run.cfg.concurrency for a in AGENTS if a in self.run.runtime.roles
        }
        end = time.monotonic() + WARM_TIMEOUT_S
        with psycopg.connect(self.run.database_url, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT queues FROM worker_processes WHERE warm_at >= to_timestamp(%s)", (since,)
                ).fetchall()
                warm = Counter(q for (queues,) in rows for q in queues)
                if all(warm[q] >= n for q, n in wanted.items()):
                    return
                if dead := self.run.supervisor.exited() if self.run.supervisor else {}:
                    raise RuntimeError(f"workers exited at start-up: {dead}; see {self.run.log_dir}")
                if time.monotonic() >= end:
                    raise TimeoutError(f"local-brain workers not warm in {WARM_TIMEOUT_S:.0f}s: {dict(warm)}")
                time.sleep(0.5)

    # ---------------------------------------------------------------- tickets

    def _submit(self, prefix: str, i: int) -> None:
        example = self.examples[i % len(self.examples)]
        tag = f"{self.run.run_id}-{prefix}{i}"
        ticket = {"source": DEMO_SOURCE, "external_id": tag, "channel": "api", "customer": example.customer}
        ticket["body"] = example.body
        self.sent[tag] = time.time()
        self.run.client.send_task(
            "switchboard.ingest", args=[ticket], kwargs={"api_key": self.api_key}, queue=ORCHESTRATOR_QUEUE
        )

    def _learn(self, timeout: float, want: int) -> int:
        """Merges learnt within ``timeout``, returning as soon as ``want`` were; how many were."""
        assert self.run.listener is not None
        got = 0
        for note in self.run.listener.conn.notifies(timeout=max(0.01, timeout), stop_after=max(1, want)):
            self.learnt[note.payload] = time.time()
            got += 1
        return got

    def closed_loop(self, prefix: str, n: int, inflight: int, label: str) -> float:
        """``n`` tickets, ``inflight`` at a time; turns/s from the first publish to the last merge."""
        start = time.perf_counter()
        end = time.monotonic() + max(120.0, n * 1.0)
        submitted = 0
        merged = 0
        next_report = time.monotonic() + 5.0
        while submitted < min(inflight, n):
            self._submit(prefix, submitted)
            submitted += 1
        while merged < n:
            if time.monotonic() > end:
                raise TimeoutError(f"{label}: {merged} of {n} merged in time; see the logs in {self.run.log_dir}")
            got = self._learn(1.0, 1)  # back at the first merge: notifies() waits out its timeout for more
            merged += got
            for _ in range(got):
                if submitted < n:
                    self._submit(prefix, submitted)
                    submitted += 1
            if time.monotonic() >= next_report:
                self._say(f"{label}: {merged}/{n} merged")
                next_report = time.monotonic() + 5.0
        return n / (time.perf_counter() - start)

    def _turns(self, prefix: str) -> list[tuple[str, str, str | None, str | None, str | None, str | None]]:
        """(turn id, external id, state, outcome, escalation reason, merge trigger) of a phase's tickets."""
        with psycopg.connect(self.run.database_url) as conn:
            rows = conn.execute(
                "SELECT t.id, c.external_id, t.state, t.outcome, t.escalation_reason, t.merge_trigger FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id WHERE c.source = %s AND c.external_id LIKE %s",
                (DEMO_SOURCE, f"{self.run.run_id}-{prefix}%"),
            ).fetchall()
        return [(str(r[0]), str(r[1]), *(None if v is None else str(v) for v in r[2:])) for r in rows]  # type: ignore[misc]

    def by_example(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Each example's outcomes (outcome/reason: count) and one of its replies: are they real answers?"""
        tag = f"{self.run.run_id}-{prefix}"
        with psycopg.connect(self.run.database_url) as conn:
            rows = conn.execute(
                "SELECT c.external_id, t.outcome, t.escalation_reason, t.reply FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id WHERE c.source = %s AND c.external_id LIKE %s",
                (DEMO_SOURCE, f"{tag}%"),
            ).fetchall()
        seen: dict[str, dict[str, Any]] = {}
        for external_id, outcome, reason, reply in rows:
            example = self.examples[int(str(external_id).removeprefix(tag)) % len(self.examples)]
            entry = seen.setdefault(f"{example.id}: {example.body[:40]}", {"outcomes": Counter(), "reply": None})
            entry["outcomes"][f"{outcome}/{reason}" if reason else str(outcome)] += 1
            if entry["reply"] is None and reply:
                entry["reply"] = str(reply)[:160]
        return {k: {"outcomes": dict(v["outcomes"]), "reply": v["reply"]} for k, v in sorted(seen.items())}

    def _by_example_or_why_not(self, prefix: str) -> dict[str, Any]:
        try:
            return self.by_example(prefix)
        except Exception as exc:  # a look at the replies must not cost the run's figures
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _latencies_ms(self, turns: Sequence[tuple[str, str, Any, Any, Any, Any]]) -> list[float]:
        return [
            (self.learnt[tid] - self.sent[ext]) * 1000.0
            for tid, ext, *_ in turns
            if tid in self.learnt and ext in self.sent
        ]

    # ---------------------------------------------------------------- the phases

    def saturation(self, n: int, inflight: int) -> dict[str, Any]:
        from bench.run import summarize

        run = self.run
        self._say(f"local brain: {n} example tickets, {inflight} in flight")
        roles = list(run.runtime.roles)
        with run.cpu_meter(roles) as meter:
            rate = self.closed_loop(LOCAL_PREFIX, n, inflight, "local brain")
        turns = self._turns(LOCAL_PREFIX)
        latencies = self._latencies_ms(turns)
        counted = account(n, [t[2:] for t in turns])
        summary = summarize(latencies)
        self._say(f"local brain: {rate:.1f} turns/s, p50 {summary.get('p50')} ms, p95 {summary.get('p95')} ms")
        return {
            "turns_per_s": round(rate, 1),
            "turn_ms": summary,
            "turns": n,
            "inflight": inflight,
            "examples": len(self.examples),
            "sandbox": self.sandbox,
            "cpu_ms_per_turn": cpu_ms_per_turn(meter.spent(), n, roles),
            "checks": counted,
            "by_example": self._by_example_or_why_not(LOCAL_PREFIX),
            **({"warning": w} if (w := error_path_warning(counted)) else {}),
        }

    def burst(self, rate: float, n: int, drain_timeout: float) -> dict[str, Any]:
        from bench.run import summarize

        self._say(f"burst: {n} tickets at {rate:.1f}/s for {n / rate:.1f}s, then up to {drain_timeout:.0f}s to drain")
        start = time.monotonic()
        learnt_before = len(self.learnt)
        for i, at in enumerate(pacing(n, rate)):
            while (wait := start + at - time.monotonic()) > 0:
                self._learn(wait, n)  # read the merges meanwhile, with their time
            self._submit(BURST_PREFIX, i)
        offered_s = time.monotonic() - start
        end = time.monotonic() + drain_timeout
        next_report = time.monotonic() + 5.0
        while len(self.learnt) - learnt_before < n and time.monotonic() < end:
            self._learn(min(1.0, end - time.monotonic()), n)
            if time.monotonic() >= next_report:
                self._say(f"burst: {len(self.learnt) - learnt_before}/{n} merged")
                next_report = time.monotonic() + 5.0
        turns = self._turns(BURST_PREFIX)
        counted = account(n, [t[2:] for t in turns])
        final = [self.learnt[tid] for tid, *_ in turns if tid in self.learnt]
        offered_end = max((self.sent[ext] for _, ext, *_ in turns if ext in self.sent), default=time.time())
        drain_s = round(max(final) - offered_end, 2) if final and counted["unanswered"] == 0 else None
        self._say(
            f"burst: {counted['answered']}/{n} answered, {counted['timeouts']} timeouts, "
            f"drained {drain_s if drain_s is not None else 'not'} s after the last ticket"
        )
        return {
            **counted,
            "rate_per_s": round(rate, 1),
            "offered_in_s": round(offered_s, 2),
            "drain_s": drain_s,
            "drain_timeout_s": drain_timeout,
            "turn_ms": summarize(self._latencies_ms(turns)),
            **({"warning": w} if (w := error_path_warning(counted)) else {}),
        }

    def _say(self, message: str) -> None:
        from bench.run import say

        say(message)
