"""The OpenAI brain: any OpenAI-compatible endpoint decides the agent's next step.

Per agent run (one agent on one turn) the brain is called once per step of the tool loop:

1. routing, once per turn and process: the cheap ``openai_router_model`` says which agents
   the message is for; an agent it did not choose answers ``not_applicable`` without a call
   to the strong model (an unusable router reply lets every agent work: cost, not a miss);
2. a step: the strong ``openai_agent_model`` gets the stable system prompt, the turn and the
   tool results (openai_prompt.py) and answers with one function call: a tool → ``CallTool``,
   ``finish`` → ``Finish`` under the evidence rules of openai_finish.py;
3. malformed output (bad JSON, no function call, invalid ``finish``) is answered once with a
   correction naming the problem; a second one escalates as ``low_confidence``: the model
   is not reliable on this turn and a human is cheaper than a guess;
4. tokens and cost of every call of the run (router included when this run paid for it)
   are summed into ``Finish.tokens`` / ``Finish.cost``.

When the endpoint cannot answer (down, timing out, rate-limiting past the deadline,
refusing the request, over the daily budget) the local brain decides instead, and keeps
deciding until the run ends, since its playbooks read the tool history as their own. The
result says so in ``detail`` ("openai→local: <reason>") and the
``switchboard_brain_fallbacks_total{reason}`` counter counts it. One exception: if the
model already made tool calls in this run, a playbook cannot continue from them, so the
run escalates as ``tool_failure`` with the calls made so far as its evidence.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.brains import AgentProfile, AgentView, Brain, CallTool, Decision, Finish
from shared.brains.local import LocalBrain
from shared.brains.openai_client import BRAIN_FALLBACKS, EndpointUnavailable, ModelClient, Usage
from shared.brains.openai_finish import Problem, evidence, read_decision, read_route
from shared.brains.openai_prompt import Prompts, correction
from shared.brains.openai_schema import FINISH, ROUTE, finish_tool, function_tool, route_tool
from shared.contracts import AgentStatus, AgentTask, EscalationReason
from shared.settings import Settings

log = logging.getLogger(__name__)

# In-process memory, bounded: a turn's route and a run's spend outlive no more than this.
MAX_ROUTES = 512
MAX_RUNS = 1024
FALLBACK_BRAIN = "openai→local"


@dataclass(frozen=True)
class Route:
    agents: frozenset[str] | None  # None: the router's reply was unusable, every agent works
    intent: str


@dataclass
class RunState:
    usage: Usage = field(default_factory=Usage)
    local_because: EndpointUnavailable | None = None


class OpenAIBrain:
    name = "openai"

    def __init__(
        self,
        settings: Settings,
        profiles: Mapping[str, AgentProfile] | None,
        *,
        fallback: Brain,
        client: ModelClient | None = None,
    ) -> None:
        self.settings = settings
        self.prompts = Prompts(settings, profiles or {})
        self.client = client or ModelClient(settings)
        self.fallback = fallback
        self._lock = threading.Lock()
        self._routes: OrderedDict[str, Route] = OrderedDict()
        self._runs: OrderedDict[tuple[str, str], RunState] = OrderedDict()

    def warm_up(self) -> None:
        """The fallback must be ready the moment the endpoint is not."""
        warm = getattr(self.fallback, "warm_up", None)
        if callable(warm):
            warm()

    def decide(self, view: AgentView) -> Decision:
        task = view.task
        # A run's first step has no history: start afresh even if a redelivered task left
        # the state of an earlier attempt behind.
        run = self._run(task, fresh=not view.history)
        if run.local_because is None:
            try:
                decision = self._decide(view, run)
            except EndpointUnavailable as exc:
                if view.history:
                    log.warning("openai brain lost the endpoint mid-run on turn %s (%s): escalating", task.turn_id, exc)
                    return self._close(task, run, self._stranded(view, exc))
                log.warning("openai brain falls back to local on turn %s for %s: %s", task.turn_id, task.agent, exc)
                BRAIN_FALLBACKS.labels(exc.reason).inc()
                run.local_because = exc
            else:
                return self._close(task, run, decision) if isinstance(decision, Finish) else decision
        decision = self.fallback.decide(view)
        if isinstance(decision, CallTool):
            return decision
        why = run.local_because
        assert why is not None
        note = f"{FALLBACK_BRAIN}: {why.reason} ({why.detail})"
        detail = f"{note}; {decision.detail}" if decision.detail else note
        # Finish.brain (proposed for shared/brains) names the deciding brain in AgentResult.brain;
        # it is set once that field exists, until then the detail above is the record.
        named: dict[str, Any] = {"brain": FALLBACK_BRAIN} if "brain" in Finish.__dataclass_fields__ else {}
        return self._close(task, run, replace(decision, detail=detail, **named))

    # ------------------------------------------------------------------ one step

    def _decide(self, view: AgentView, run: RunState) -> Decision:
        task = view.task
        route = self._route(task, run)
        if route.agents is not None and task.agent not in route.agents:
            chosen = ", ".join(sorted(route.agents)) or "no agent"
            return Finish(
                AgentStatus.not_applicable,
                detail=f"router ({self.settings.openai_router_model}): '{route.intent}' is for {chosen}",
            )
        tools = {t.name: function_tool(t) for t in view.tools if t.name not in (FINISH, ROUTE)}
        params: dict[str, Any] = {
            # Sorted, so the tool list is as stable a prefix as the system prompt.
            "tools": [tools[name].param for name in sorted(tools)] + [finish_tool()],
            "tool_choice": "required",
            # One step at a time: the agent loop runs one tool per decision and checks each.
            "parallel_tool_calls": False,
        }
        messages = self.prompts.messages(view)
        problem: Problem | None = None
        for _attempt in range(2):
            response, usage = self.client.complete(
                self.settings.openai_agent_model, messages, deadline_at=task.deadline_at, **params
            )
            run.usage.add(usage)
            outcome = read_decision(response, view, tools)
            if not isinstance(outcome, Problem):
                return outcome
            problem = outcome
            log.info("openai brain: unusable reply on turn %s (%s); correcting once", task.turn_id, problem.problem)
            messages = [*messages, *correction(problem.call_id, problem.name, problem.raw, problem.problem)]
        assert problem is not None
        facts, actions = evidence(view)
        return Finish(
            AgentStatus.escalate,
            confidence=0.0,
            facts=facts,
            actions=actions,
            escalation_reason=EscalationReason.low_confidence,
            detail=f"the model's reply was unusable twice: {problem.problem}",
        )

    def _route(self, task: AgentTask, run: RunState) -> Route:
        model = self.settings.openai_router_model
        if not model:  # routing switched off: every agent works on every turn
            return Route(None, "")
        with self._lock:
            cached = self._routes.get(task.turn_id)
        if cached is not None:
            return cached
        response, usage = self.client.complete(
            model,
            self.prompts.router_messages(task),
            deadline_at=task.deadline_at,
            tools=[route_tool(self.prompts.agents)],
            tool_choice={"type": "function", "function": {"name": ROUTE}},
        )
        run.usage.add(usage)
        agents, intent = read_route(response, self.prompts.agents)
        route = Route(agents, intent)
        with self._lock:
            self._routes[task.turn_id] = route
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
        return route

    # ------------------------------------------------------------------ bookkeeping

    def _run(self, task: AgentTask, fresh: bool) -> RunState:
        key = (task.turn_id, task.agent)
        with self._lock:
            run = self._runs.get(key)
            if run is None or fresh:
                run = self._runs[key] = RunState()
                while len(self._runs) > MAX_RUNS:
                    self._runs.popitem(last=False)
            return run

    def _close(self, task: AgentTask, run: RunState, finish: Finish) -> Finish:
        """The run is over: report what it cost, and forget it."""
        with self._lock:
            self._runs.pop((task.turn_id, task.agent), None)
        return replace(finish, tokens=finish.tokens + run.usage.tokens, cost=finish.cost + run.usage.cost)

    def _stranded(self, view: AgentView, exc: EndpointUnavailable) -> Finish:
        facts, actions = evidence(view)
        return Finish(
            AgentStatus.escalate,
            facts=facts,
            actions=actions,
            escalation_reason=EscalationReason.tool_failure,
            detail=f"model endpoint lost after {len(view.history)} tool call(s): {exc.reason} ({exc.detail}); "
            "the local brain cannot continue a run the model started",
        )


def create_openai_brain(settings: Settings, profiles: Mapping[str, AgentProfile] | None = None) -> Brain:
    """The factory ``load_brain`` calls for ``SWITCHBOARD_BRAIN=openai``: the local brain is its fallback."""
    return OpenAIBrain(settings, profiles, fallback=LocalBrain(settings, profiles))
