"""The agent loop: a bounded tool loop with the stopping rules that hold for every turn.

- at most ``max_steps`` brain decisions;
- never past the agent's deadline: no brain step and no tool call starts after it (the
  Celery soft time limit backs this up in a prefork worker for a brain or tool that hangs;
  a threads worker has none, and a tool that changes something must not run once the merge
  may have handed the turn to a human);
- the same tool with the same arguments twice escalates (``loop``);
- a critical tool failure escalates (``tool_failure``);
- a changing tool runs only when the customer asked for that action on that kind of
  object (``agents.consent``); otherwise the agent asks them to confirm.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.consent import confirmation, consented
from shared.brains import AgentProfile, AgentView, Brain, CallTool, Finish
from shared.brains.playbooks import call_signature
from shared.contracts import (
    AgentResult,
    AgentStatus,
    AgentTask,
    EscalationReason,
    Timings,
    ToolCallRecord,
)
from shared.errors import ToolError
from shared.metrics import TOOL_CALLS
from shared.tools import Tool, ToolContext, ToolRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agent:
    """An agent is a name, the tools it is given, and the intents and playbooks a brain reads.

    Tools are data: a brain is offered the agent's own tools (those of ``tools`` that name
    it as an owner). Every call goes through ``catalogue``, the tools of the whole system,
    which runs a tool only for an agent it names as an owner and tells a brain that asks
    for another agent's tool whose it is; without one, the agent's own tools are its
    catalogue.
    """

    name: str
    tools: Sequence[Tool] = ()
    profile: AgentProfile | None = None
    catalogue: ToolRegistry | None = field(default=None, repr=False, compare=False)
    registry: ToolRegistry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", self.catalogue or ToolRegistry(self.tools))

    def own_tools(self) -> list[Tool]:
        return [t for t in self.tools if self.name in t.owners]

    def joined(self, catalogue: ToolRegistry, extra: Sequence[Tool] = ()) -> Agent:
        """This agent in a system of agents: calls go through its catalogue, and the tools of
        ``extra`` that name it as an owner are its own too."""
        mine = [t for t in extra if self.name in t.owners]
        return Agent(self.name, tools=[*self.tools, *mine], profile=self.profile, catalogue=catalogue)

    def run(self, task: AgentTask, brain: Brain) -> AgentResult:
        started = time.time()
        history: list[ToolCallRecord] = []
        seen_calls: set[str] = set()
        tools = self.own_tools()
        ctx = ToolContext(
            turn_id=task.turn_id,
            conversation_id=task.conversation_id,
            agent=self.name,
            customer_id=task.customer.id,
            tenant=task.tenant,
            source=task.source,
            customer_email=task.customer.email,
            deadline_at=task.deadline_at,
            dry_run=task.shadow,
        )

        def finish(status: AgentStatus, decided_by: str | None = None, **fields: object) -> AgentResult:
            return AgentResult.model_validate(
                {
                    "turn_id": task.turn_id,
                    "agent": self.name,
                    "status": status,
                    "tool_calls": history,
                    "brain": decided_by or brain.name,
                    "timings": Timings(
                        queue_wait_ms=max(0.0, (started - task.published_at) * 1000),
                        run_ms=(time.time() - started) * 1000,
                    ),
                    **fields,
                }
            )

        for _step in range(task.max_steps):
            if time.time() >= task.deadline_at:
                return finish(AgentStatus.timed_out, detail="deadline reached inside the tool loop")
            decision = brain.decide(AgentView(task=task, tools=tools, history=list(history)))
            if isinstance(decision, Finish):
                return finish(
                    decision.status,
                    decision.brain,
                    answer=decision.answer,
                    confidence=decision.confidence,
                    facts=decision.facts,
                    actions=decision.actions,
                    escalation_reason=decision.escalation_reason,
                    customer_note=decision.customer_note,
                    detail=decision.detail,
                    part_start=decision.part_start,
                    tokens=decision.tokens,
                    cost=decision.cost,
                )
            assert isinstance(decision, CallTool)
            signature = call_signature(decision.tool, decision.arguments)
            if signature in seen_calls:
                return finish(
                    AgentStatus.escalate,
                    escalation_reason=EscalationReason.loop,
                    detail=f"{decision.tool} was called twice with the same arguments",
                )
            seen_calls.add(signature)
            if time.time() >= task.deadline_at:
                # The brain took the time: the turn may be merged without this agent by now.
                return finish(AgentStatus.timed_out, detail=f"deadline reached before calling {decision.tool}")
            tool = self.registry.get(decision.tool)
            if tool is not None and tool.side_effect != "read" and not consented(tool.name, task.window):
                # Whatever picked this tool (a classifier's score, a model), the customer did
                # not ask for it in words: ask them, and change nothing until they say so.
                question = confirmation(tool.name, decision.arguments)
                before = decision.done
                if before is not None and before.status is AgentStatus.answered and before.answer:
                    return finish(  # the parts already answered are still told, then the question
                        AgentStatus.needs_info,
                        answer=f"{before.answer}\n\n{question}",
                        confidence=before.confidence,
                        facts=before.facts,
                        actions=before.actions,
                        part_start=before.part_start,
                        detail=f"the message does not ask for {tool.name}: asked the customer to confirm",
                    )
                return finish(
                    AgentStatus.needs_info,
                    answer=question,
                    confidence=1.0,
                    part_start=decision.part_start,
                    detail=f"the message does not ask for {tool.name}: asked the customer to confirm",
                )
            record = self._call(ctx, decision)
            history.append(record)
            if record.critical:
                return finish(
                    AgentStatus.escalate,
                    escalation_reason=EscalationReason.tool_failure,
                    detail=f"{decision.tool} failed: {record.error}",
                )
        return finish(
            AgentStatus.escalate,
            escalation_reason=EscalationReason.loop,
            detail=f"no answer after {task.max_steps} steps",
        )

    def _call(self, ctx: ToolContext, decision: CallTool) -> ToolCallRecord:
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        start = time.perf_counter()
        # A model names the tool: a name the catalogue does not know is one label, not a new series.
        label = decision.tool if self.registry.get(decision.tool) is not None else "unknown"
        try:
            output = self.registry.execute(ctx, decision.tool, decision.arguments)
        except ToolError as exc:
            TOOL_CALLS.labels(self.name, label, "critical" if exc.critical else "error").inc()
            log.info("tool %s failed for turn %s: %s", decision.tool, ctx.turn_id, exc.message)
            return ToolCallRecord(
                call_id=call_id,
                tool=decision.tool,
                arguments=decision.arguments,
                error=exc.message,
                critical=exc.critical,
                error_kind=exc.kind,
                duration_ms=(time.perf_counter() - start) * 1000,
            )
        TOOL_CALLS.labels(self.name, label, "ok").inc()
        return ToolCallRecord(
            call_id=call_id,
            tool=decision.tool,
            arguments=decision.arguments,
            output=output,
            duration_ms=(time.perf_counter() - start) * 1000,
        )
