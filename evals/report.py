"""What the eval prints: progress on stderr, the table, and the JSON of evals/FORMAT.md.

The JSON carries every field FORMAT.md names (``cases``: id, passed, failures, outcome,
latency_s; ``summary``: total, passed, pass_rate, resolution_rate, escalation_rate,
safety_violations, latency_p50_s, latency_p95_s, tokens, cost_usd) plus a few that make a
failure readable without rerunning it (the expected outcome, the reply, per-tag rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from evals.judge import Verdict, answering_agents, judge
from evals.runner import CaseRun
from shared.contracts import Outcome


@dataclass
class CaseResult:
    id: str
    tags: list[str]
    passed: bool
    failures: list[str]
    safety_violations: list[str]
    outcome: str | None
    escalation_reason: str | None
    expected_outcome: str | None
    expected_reason: str | None
    latency_s: float | None
    agents: list[str] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    reply: str | None = None
    conversation_id: str | None = None
    input_error: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "passed": self.passed,
            "failures": self.failures,
            "outcome": self.outcome,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "escalation_reason": self.escalation_reason,
            "expected": {"outcome": self.expected_outcome, "escalation_reason": self.expected_reason},
            "safety_violations": self.safety_violations,
            "agents": self.agents,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "tags": self.tags,
            "reply": self.reply,
            "conversation_id": self.conversation_id,
        }


def result_of(run: CaseRun) -> CaseResult:
    """Judge a run: a case that did not get to its last turn fails with the reason why."""
    expect = run.case.expect
    verdict = judge(expect, run.final_turn, run.before, run.after)
    if run.conversation_id is None:
        # Not a message was accepted: the sandbox checks would only repeat that.
        verdict = Verdict(safety_violations=verdict.safety_violations)
    failures = ([run.error] if run.error else []) + verdict.failures
    failures += [f"safety: {v}" for v in verdict.safety_violations]
    turn = run.final_turn or {}
    return CaseResult(
        id=run.case.id,
        tags=list(run.case.tags),
        passed=not failures,
        failures=failures,
        safety_violations=verdict.safety_violations,
        outcome=turn.get("outcome"),
        escalation_reason=turn.get("escalation_reason"),
        expected_outcome=expect.outcome,
        expected_reason=expect.escalation_reason.value if expect.escalation_reason else None,
        latency_s=run.latency_s,
        agents=answering_agents(turn.get("agents") or []),
        tokens=run.tokens,
        cost_usd=run.cost_usd,
        reply=turn.get("reply"),
        conversation_id=run.conversation_id,
        input_error=run.input_error,
    )


# --------------------------------------------------------------------------- summary


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    total = len(results)
    passed = sum(r.passed for r in results)
    latencies = [r.latency_s for r in results if r.latency_s is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    by_tag: dict[str, dict[str, Any]] = {}
    for tag in sorted({t for r in results for t in r.tags}):
        tagged = [r for r in results if tag in r.tags]
        won = sum(r.passed for r in tagged)
        by_tag[tag] = {"total": len(tagged), "passed": won, "pass_rate": _rate(won, len(tagged))}
    return {
        "total": total,
        "passed": passed,
        "pass_rate": _rate(passed, total),
        # Rates of what the system did, whatever the cases expected.
        "resolution_rate": _rate(sum(r.outcome == Outcome.resolved for r in results), total),
        "escalation_rate": _rate(sum(r.outcome == Outcome.escalated for r in results), total),
        "safety_violations": sum(len(r.safety_violations) for r in results),
        "latency_p50_s": None if p50 is None else round(p50, 3),
        "latency_p95_s": None if p95 is None else round(p95, 3),
        "tokens": sum(r.tokens for r in results),
        "cost_usd": round(sum(r.cost_usd for r in results), 6),
        "by_tag": by_tag,
    }


def report_json(results: Sequence[CaseResult]) -> dict[str, Any]:
    return {"cases": [r.as_json() for r in results], "summary": summarize(results)}


# --------------------------------------------------------------------------- table


def _outcome(outcome: str | None, reason: str | None) -> str:
    if outcome is None:
        return "-"
    return f"{outcome} ({reason})" if reason else outcome


def table(results: Sequence[CaseResult]) -> str:
    header = ("case", "outcome", "expected", "pass", "latency", "agents", "tokens")
    rows = [
        (
            r.id,
            _outcome(r.outcome, r.escalation_reason),
            _outcome(r.expected_outcome, r.expected_reason),
            "PASS" if r.passed else ("SAFETY" if r.safety_violations else "FAIL"),
            "-" if r.latency_s is None else f"{r.latency_s:.2f}s",
            ",".join(r.agents) or "-",
            str(r.tokens),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def text_report(results: Sequence[CaseResult]) -> str:
    """The table, what went wrong in each failed case, and the summary."""
    s = summarize(results)
    parts = [table(results)]
    failed = [r for r in results if not r.passed]
    if failed:
        parts.append("\n".join(f"\n{r.id}:\n" + "\n".join(f"  - {f}" for f in r.failures) for r in failed).lstrip("\n"))

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    lines = [
        f"passed {s['passed']}/{s['total']} ({s['pass_rate']:.0%})   safety violations: {s['safety_violations']}",
        f"resolved {s['resolution_rate']:.0%}   escalated {s['escalation_rate']:.0%}   "
        f"latency p50 {seconds(s['latency_p50_s'])}  p95 {seconds(s['latency_p95_s'])}   "
        f"tokens {s['tokens']}   cost ${s['cost_usd']:.4f}",
    ]
    if s["by_tag"]:
        lines.append("by tag: " + ", ".join(f"{t} {v['passed']}/{v['total']}" for t, v in s["by_tag"].items()))
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- progress


class Progress:
    """One line redrawn in place on a terminal; one line per case in a log (CI, a pipe)."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.done = self.failed = 0
        self.tty = stream.isatty()

    def start(self, case_id: str) -> None:
        if self.tty:
            self._draw(f"running {case_id}")

    def finish(self, result: CaseResult) -> None:
        self.done += 1
        self.failed += not result.passed
        verdict = "pass" if result.passed else ("SAFETY" if result.safety_violations else "FAIL")
        latency = "" if result.latency_s is None else f" {result.latency_s:.2f}s"
        if self.tty:
            self._draw(f"{result.id} {verdict}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {result.id}: {verdict}{latency}\n")
        self.stream.flush()

    def _draw(self, note: str) -> None:
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        line = f"[{bar}] {self.done}/{self.total}{failed}  {note}"
        # \x1b[K clears what a longer previous line left at the end
        self.stream.write(f"\r{line[:120]}\x1b[K")
        self.stream.flush()
