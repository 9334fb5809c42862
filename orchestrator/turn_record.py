"""What a support lead reads: one JSON line per finished turn, and the numbers behind the
resolution rate, escalation rate by reason, first-response time and cost per resolution.

``turn_line`` is logged by the ``switchboard.turns`` logger as the extra ``turn``: the JSON
formatter (shared/logs.py) writes it as one object per line and redacts it like every log
line, so a team can ship that logger's lines to its warehouse. It names the customer by id
only, never by email or name, and carries no message text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.contracts import AgentResult
from shared.metrics import FIRST_RESPONSE, SUPPORT_TURNS, TURN_COST
from shared.models import Message

turns_log = logging.getLogger("switchboard.turns")


def first_reply_wait(s: Session, conversation_id: str, now: datetime) -> float | None:
    """Seconds since the conversation's first customer message, if nothing was said to the
    customer before (call it before the reply's own message is added); None otherwise. One
    query: it runs in every merge that replies."""
    first, replied = s.execute(
        select(
            func.min(Message.created_at).filter(Message.role == "customer"),
            func.bool_or(Message.role != "customer"),
        ).where(Message.conversation_id == conversation_id)
    ).one()
    if replied or first is None:
        return None
    return max(0.0, float((now - first).total_seconds()))


def turn_line(
    *,
    turn_id: str,
    conversation_id: str,
    source: str,
    customer_id: str,
    seq: int,
    trigger: str,
    outcome: str,
    reason: str | None,
    results: Mapping[str, AgentResult],
    expected: Sequence[str],
    duration_s: float,
    shadow: bool,
) -> dict[str, Any]:
    agents: list[dict[str, Any]] = []
    for name in expected:
        result = results.get(name)
        if result is None:
            agents.append({"agent": name, "status": "missing"})
            continue
        agents.append(
            {
                "agent": name,
                "status": result.status.value,
                "confidence": result.confidence,
                "escalation_reason": result.escalation_reason.value if result.escalation_reason else None,
                "brain": result.brain,
                "tokens": result.tokens,
                "cost_usd": round(result.cost, 8),
                "tool_calls": [
                    {"tool": c.tool, "ms": round(c.duration_ms, 1), "error_kind": c.error_kind if c.error else None}
                    for c in result.tool_calls
                ],
            }
        )
    return {
        "turn_id": turn_id,
        "conversation_id": conversation_id,
        "source": source,
        "customer_id": customer_id,
        "seq": seq,
        "merged_by": trigger,
        "outcome": outcome,
        "escalation_reason": reason,
        "shadow": shadow,
        "agents": agents,
        "tokens": sum(r.tokens for r in results.values()),
        "cost_usd": round(sum(r.cost for r in results.values()), 8),
        "duration_s": round(duration_s, 3),
    }


def observe(line: Mapping[str, Any], first_reply_s: float | None, responder: str = "bot") -> None:
    """After the commit: the counters, and the line."""
    source = str(line["source"])
    SUPPORT_TURNS.labels(source, line["outcome"], line["escalation_reason"] or "").inc()
    if line["cost_usd"]:
        TURN_COST.labels(source).inc(float(line["cost_usd"]))
    if first_reply_s is not None:
        FIRST_RESPONSE.labels(source, responder).observe(first_reply_s)
    turns_log.info("turn finished", extra={"turn": dict(line)})
