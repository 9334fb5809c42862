"""Reading the model's reply: a tool call, its ``finish``, or something to correct.

Evidence rules for ``finish``, so that nothing reaches a customer without a tool call of
this run behind it:

- a cited id that is not a successful call of this run (made up, misspelled, or a call
  that failed) is dropped and named in ``detail``;
- an ``answered`` result that keeps some citations loses confidence in proportion to the
  ones dropped (2 of 4 cited ids real: confidence halves), so the merge's threshold sees it;
- an ``answered`` result left with no citation at all escalates as ``low_confidence``, its
  answer kept as the suggested reply for the human;
- ``actions`` are every successful call of a tool that changes something, whatever the
  model says: a refund that happened is reported even if the model forgets it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field, ValidationError

from shared.brains import AgentView, CallTool, Decision, Finish
from shared.brains.openai_schema import FINISH, ROUTE, FunctionTool, drop_unset
from shared.contracts import AgentStatus, EscalationReason, Fact, ToolCallRecord
from shared.guardrails import redact


class FinishArgs(BaseModel):
    # Lenient on purpose: a server without strict mode may leave fields out.
    status: Literal["answered", "needs_info", "escalate", "not_applicable"]
    answer: str | None = None
    confidence: float = 0.0
    cited_call_ids: list[str] = Field(default_factory=list)
    escalation_reason: EscalationReason | None = None


class RouteArgs(BaseModel):
    agents: list[str]
    intent: str = ""
    confidence: float = 0.0


@dataclass(frozen=True)
class Problem:
    """A reply the brain cannot use; the model gets one chance to correct it."""

    problem: str
    call_id: str | None = None
    name: str | None = None
    raw: str | None = None


def read_decision(response: ChatCompletion, view: AgentView, tools: dict[str, FunctionTool]) -> Decision | Problem:
    call = _first_call(response)
    if isinstance(call, Problem):
        return call
    call_id, name, raw = call
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return Problem(f"The arguments of {name} are not valid JSON ({exc}).", call_id, name, raw)
    if not isinstance(args, dict):
        return Problem(f"The arguments of {name} must be a JSON object.", call_id, name, raw)
    if name == FINISH:
        try:
            return to_finish(FinishArgs.model_validate(args), view)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return Problem(f"Invalid finish arguments: {problems}.", call_id, name, raw)
    tool = tools.get(name)
    # An unknown tool name goes through: the registry answers with the tools it has, and
    # the model reads that as a tool error, as it would any other.
    return CallTool(tool=name, arguments=drop_unset(args, tool.optional) if tool else args)


def read_route(response: ChatCompletion, agents: list[str]) -> tuple[frozenset[str] | None, str]:
    """The agents the router chose, or None when its reply is unusable (then every agent works)."""
    call = _first_call(response)
    if isinstance(call, Problem) or call[1] != ROUTE:
        return None, "router reply unusable"
    try:
        args = RouteArgs.model_validate_json(call[2])
    except ValidationError:
        return None, "router arguments unusable"
    return frozenset(a for a in args.agents if a in agents), args.intent


def _first_call(response: ChatCompletion) -> tuple[str, str, str] | Problem:
    if not response.choices:
        return Problem("The reply had no choices.")
    choice = response.choices[0]
    message = choice.message
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if call.type == "function" and function is not None:
            return call.id, function.name, function.arguments or ""
    return Problem(
        f"Your reply had no function call (finish_reason {choice.finish_reason}); plain text is not delivered.",
        raw=message.content,
    )


def to_finish(args: FinishArgs, view: AgentView) -> Finish:
    ok = {c.call_id: c for c in view.history if c.error is None}
    cited = list(dict.fromkeys(args.cited_call_ids))
    kept = [i for i in cited if i in ok]
    dropped = [i for i in cited if i not in ok]
    facts, actions = evidence(view, kept)
    status = AgentStatus(args.status)
    reason = args.escalation_reason
    confidence = min(1.0, max(0.0, args.confidence))
    notes = [f"dropped citations of calls that did not succeed in this run: {', '.join(dropped)}"] if dropped else []
    if status is AgentStatus.answered and kept and dropped:
        confidence *= len(kept) / len(cited)
    if status is AgentStatus.answered and not kept:
        status, reason = AgentStatus.escalate, EscalationReason.low_confidence
        notes.append("the model's answer cites no successful tool call; a human should check it")
    if status is AgentStatus.escalate and reason is None:
        reason = EscalationReason.low_confidence
    if status is not AgentStatus.escalate:
        reason = None
    answer = redact(args.answer, customer_email=view.task.customer.email).text.strip() if args.answer else None
    return Finish(
        status=status,
        answer=answer or None,
        confidence=round(confidence, 3),
        facts=facts,
        actions=actions,
        escalation_reason=reason,
        detail="; ".join(notes) or None,
    )


def evidence(view: AgentView, cited: list[str] | None = None) -> tuple[list[Fact], list[str]]:
    """Facts for ``cited`` (every successful call when None) and the calls that changed something."""
    ok = {c.call_id: c for c in view.history if c.error is None}
    changes = {t.name for t in view.tools if t.side_effect != "read"}
    facts = [Fact(statement=statement(ok[i]), call_id=i) for i in (list(ok) if cited is None else cited)]
    return facts, [i for i, c in ok.items() if c.tool in changes]


def statement(call: ToolCallRecord) -> str:
    args: dict[str, Any] = call.arguments
    shown = ", ".join(f"{k}={v}" for k, v in args.items() if k != "query")
    return f"{call.tool}({shown}) succeeded"
