"""The bench's brain and its one tool: agents that answer at once — or hang.

The bench's agent workers run with ``SWITCHBOARD_BRAIN=bench.brain:BenchBrain`` and
``SWITCHBOARD_EXTRA_TOOLS=["bench.brain:TOOLS"]``: the tool is given to the agents by
configuration, never registered in the product.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from shared.brains import AgentView, CallTool, Decision, Finish
from shared.contracts import AgentStatus, Fact
from shared.settings import AGENTS, Settings
from shared.tools import Tool, ToolArgs, ToolContext, function_tool

HANG_MARK = "[bench:hang]"
# A message with this mark makes every agent wait on one HTTP call to the bench's model server
# (``SWITCHBOARD_OPENAI_BASE_URL``), which answers after a second, as a model would.
MODEL_MARK = "[bench:model]"
HUNG_AGENT = "billing"
HANG_S = 30.0
BENCH_TOOL = "bench_lookup"


class BenchLookupArgs(ToolArgs):
    pass


@function_tool(owners=AGENTS, name=BENCH_TOOL)
def bench_lookup(ctx: ToolContext, args: BenchLookupArgs) -> dict[str, object]:
    """Look up nothing, at once: the cheapest tool call an answer can cite."""
    return {"customer_id": ctx.customer_id, "ok": True}


class BenchBrain:
    """Agents that answer at once, citing one instant tool call — or hang.

    The merge drops an answer without evidence, so each agent makes one call to
    ``bench_lookup`` and finishes citing it: two brain steps and one tool call, no I/O.
    The billing agent hangs for ``HANG_S`` when the customer's message carries
    ``HANG_MARK``; the soft time limit cuts it off and the clock merges at the deadline.
    """

    name = "bench"

    def __init__(self, settings: Settings, profiles: Mapping[str, object] | None = None) -> None:
        self.settings = settings
        self._model: httpx.Client | None = None

    def decide(self, view: AgentView) -> Decision:
        task = view.task
        if not view.history:
            said = [m.body for m in task.window if m.role == "customer"]
            if task.agent == HUNG_AGENT and any(HANG_MARK in body for body in said):
                time.sleep(HANG_S)
            if any(MODEL_MARK in body for body in said):
                self._wait_on_model(task.deadline_at)
            return CallTool(tool=BENCH_TOOL, arguments={})
        call = view.history[-1]
        return Finish(
            status=AgentStatus.answered,
            answer=f"{task.agent}: done.",
            confidence=0.9,
            facts=[Fact(statement=f"{call.tool} answered", call_id=call.call_id)],
        )

    def _wait_on_model(self, deadline_at: float) -> None:
        """One HTTP call that takes the model's time, given only the time left (as the OpenAI brain is)."""
        if self._model is None:  # one client per process, shared by a threads worker's threads
            threads = self.settings.worker_threads
            self._model = httpx.Client(limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads))
        url = (self.settings.openai_base_url or "http://127.0.0.1:9/").rstrip("/") + "/wait"
        self._model.get(url, timeout=max(0.1, deadline_at - time.time())).raise_for_status()


TOOLS: list[Tool] = [bench_lookup]
