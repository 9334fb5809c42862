"""Issue 12's targets (a 2-core machine, ratios within one run), each with what was measured.

A target reads ``{"target": text, "measured": value, "pass": bool}``; one with a second,
harder step adds ``"then"`` (its text) and ``"pass_then"``. A phase that was skipped leaves
its targets out, and a figure that could not be measured (a zero baseline) fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TURN_VS_BLOCKING = (2.0, 1.5)  # turn p50 / two-hop blocking turn p50, at most
THROUGHPUT_VS_BLOCKING = (1.0, 2.0)  # throughput / blocking pattern with instant agents, at least
OVERSHOOT_P99_MS = 20.0
MODEL_BOUND_PER_S = 50.0
MODEL_BOUND_VS_BLOCKING = 10.0
LOCAL_BRAIN_PER_S = (40.0, 60.0)
LOCAL_BRAIN_P95_MS = 1000.0


@dataclass(frozen=True)
class Measured:
    """The figures the targets read; ``None`` for a phase that did not run."""

    turn_p50_ms: float | None = None
    blocking_turn_p50_ms: float | None = None
    throughput: float | None = None
    blocking_throughput: float | None = None
    overshoot_p99_ms: float | None = None
    model_bound_per_s: float | None = None
    model_bound_vs_blocking: float | None = None
    local_brain_per_s: float | None = None
    local_brain_p95_ms: float | None = None
    burst_offered: int | None = None
    burst_answered: int | None = None
    burst_timeouts: int | None = None


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def _at_most(measured: float | None, bound: float, text: str) -> dict[str, Any]:
    return {"target": text, "measured": measured, "pass": measured is not None and measured <= bound}


def _at_least(measured: float | None, bound: float, text: str) -> dict[str, Any]:
    return {"target": text, "measured": measured, "pass": measured is not None and measured >= bound}


def _then(target: dict[str, Any], passed: bool, text: str) -> dict[str, Any]:
    return {**target, "then": text, "pass_then": passed}


def evaluate(m: Measured) -> dict[str, dict[str, Any]]:
    """Every target of the phases that ran, in the order of the issue's table."""
    targets: dict[str, dict[str, Any]] = {}
    if m.turn_p50_ms is not None and m.blocking_turn_p50_ms is not None:
        first, then = TURN_VS_BLOCKING
        overhead = _ratio(m.turn_p50_ms, m.blocking_turn_p50_ms)
        targets["turn_p50_vs_blocking_turn_p50"] = _then(
            _at_most(overhead, first, f"<= {first:g}x the two-hop blocking turn p50"),
            overhead is not None and overhead <= then,
            f"<= {then:g}x",
        )
    if m.throughput is not None and m.blocking_throughput is not None:
        first, then = THROUGHPUT_VS_BLOCKING
        speedup = _ratio(m.throughput, m.blocking_throughput)
        targets["throughput_vs_blocking"] = _then(
            _at_least(speedup, first, f">= {first:g}x the blocking pattern, instant agents"),
            speedup is not None and speedup >= then,
            f">= {then:g}x",
        )
    if m.overshoot_p99_ms is not None:
        overshoot = round(m.overshoot_p99_ms, 3)
        targets["deadline_overshoot_p99_ms"] = _at_most(overshoot, OVERSHOOT_P99_MS, f"<= {OVERSHOOT_P99_MS:g} ms")
    if m.model_bound_per_s is not None:
        targets["model_bound_throughput"] = _at_least(
            m.model_bound_per_s, MODEL_BOUND_PER_S, f">= {MODEL_BOUND_PER_S:g} turns/s, 1 s per agent"
        )
        targets["model_bound_vs_blocking"] = _at_least(
            m.model_bound_vs_blocking, MODEL_BOUND_VS_BLOCKING, f">= {MODEL_BOUND_VS_BLOCKING:g}x the blocking pattern"
        )
    if m.local_brain_per_s is not None:
        first, then = LOCAL_BRAIN_PER_S
        targets["local_brain_throughput"] = _then(
            _at_least(m.local_brain_per_s, first, f">= {first:g} turns/s end to end"),
            m.local_brain_per_s >= then,
            f">= {then:g} turns/s",
        )
        targets["local_brain_p95_ms"] = _at_most(
            m.local_brain_p95_ms, LOCAL_BRAIN_P95_MS, f"turn p95 <= {LOCAL_BRAIN_P95_MS:g} ms"
        )
    if m.burst_offered is not None:
        targets["burst_timeouts"] = _at_most(m.burst_timeouts, 0, "0 escalated as timeout")
        answered = m.burst_answered if m.burst_answered is not None else 0
        targets["burst_all_answered"] = {
            "target": "every turn answered (final)",
            "measured": f"{answered}/{m.burst_offered}",
            "pass": m.burst_offered > 0 and answered == m.burst_offered,
        }
    return targets
