"""A brain that follows a script carried in the customer's message — for tests only.

The message body is JSON: ``{"script": {"billing": [step, ...], ...}}``. Steps:

- ``{"call": "tool_name", "args": {...}}`` — call a tool;
- ``{"sleep": seconds}`` — hang (to test deadlines);
- ``{"finish": "answered", "answer": "...", "confidence": 0.9, "cite": true,
  "reason": "loop", "question": "..."}`` — end with a result; ``cite`` backs the answer
  with every successful tool call so far.

An agent the script does not name answers ``not_applicable``. Plain text bodies make every
agent answer at once with confidence 0.9, citing one ``lookup_balance`` call. The tools it
calls are in tests/support/tools.py (``SWITCHBOARD_EXTRA_TOOLS`` gives them to the agents).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from shared.brains import AgentProfile, AgentView, CallTool, Decision, Finish
from shared.contracts import AgentStatus, EscalationReason, Fact
from shared.settings import Settings

DEFAULT_SCRIPT = [
    {"call": "lookup_balance", "args": {}},
    {"finish": "answered", "answer": "{agent}: your balance is 42.", "confidence": 0.9, "cite": True},
]


class ScriptedBrain:
    name = "scripted"

    def __init__(self, settings: Settings, profiles: Mapping[str, AgentProfile] | None = None) -> None:
        self.settings = settings

    def decide(self, view: AgentView) -> Decision:
        steps = self._script(view)
        calls_done = len(view.history)
        seen_calls = 0
        for step in steps:
            if "call" in step:
                if seen_calls < calls_done:
                    seen_calls += 1
                    continue
                return CallTool(tool=step["call"], arguments=step.get("args", {}))
            if seen_calls < calls_done:
                continue
            if "sleep" in step:
                time.sleep(float(step["sleep"]))
                continue
            if "finish" in step:
                return self._finish(view, step)
        return Finish(status=AgentStatus.not_applicable)

    def _script(self, view: AgentView) -> list[dict[str, Any]]:
        last = next((m.body for m in reversed(view.task.window) if m.role == "customer"), "")
        try:
            doc = json.loads(last)
        except ValueError:
            return [
                {**s, "answer": s["answer"].format(agent=view.task.agent)} if "answer" in s else s
                for s in DEFAULT_SCRIPT
            ]
        steps: list[dict[str, Any]] = doc.get("script", {}).get(view.task.agent, [])
        return steps

    def _finish(self, view: AgentView, step: dict[str, Any]) -> Finish:
        status = AgentStatus(step["finish"])
        facts = []
        if step.get("cite"):
            facts = [
                Fact(statement=f"{c.tool} returned {c.output}", call_id=c.call_id)
                for c in view.history
                if c.error is None
            ]
        reason = step.get("reason")
        return Finish(
            status=status,
            answer=step.get("answer") or step.get("question"),
            confidence=float(step.get("confidence", 0.0)),
            facts=facts,
            escalation_reason=EscalationReason(reason) if reason else None,
            detail=step.get("detail"),
        )


class Script:
    """A brain for unit tests that returns the given decisions in turn: the n-th decision is
    made after n tool calls."""

    name = "script"

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)

    def decide(self, view: AgentView) -> Decision:
        return self.decisions[len(view.history)]
