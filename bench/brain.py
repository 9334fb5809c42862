"""The bench's brain and its one tool: agents that answer at once — or hang.

The bench's agent workers run with ``SWITCHBOARD_BRAIN=bench.brain:BenchBrain`` and
``SWITCHBOARD_EXTRA_TOOLS=["bench.brain:TOOLS"]``: the tool is given to the agents by
configuration, never registered in the product.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from shared.brains import AgentView, CallTool, Decision, Finish
from shared.contracts import AgentStatus, Fact
from shared.settings import AGENTS, Settings
from shared.tools import Tool, ToolArgs, ToolContext, function_tool

HANG_MARK = "[bench:hang]"
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

    def decide(self, view: AgentView) -> Decision:
        task = view.task
        if not view.history:
            if task.agent == HUNG_AGENT and any(HANG_MARK in m.body for m in task.window if m.role == "customer"):
                time.sleep(HANG_S)
            return CallTool(tool=BENCH_TOOL, arguments={})
        call = view.history[-1]
        return Finish(
            status=AgentStatus.answered,
            answer=f"{task.agent}: done.",
            confidence=0.9,
            facts=[Fact(statement=f"{call.tool} answered", call_id=call.call_id)],
        )


TOOLS: list[Tool] = [bench_lookup]
