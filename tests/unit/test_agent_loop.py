"""The agent loop's stopping rules, with a brain written inline (no services)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from agents.base import Agent
from shared.brains import CallTool, Finish
from shared.contracts import AgentResult, AgentStatus, AgentTask, Customer, Fact, WindowMessage
from shared.errors import ToolError
from shared.tools import ToolArgs, ToolContext, ToolRegistry
from tests.support.scripted_brain import Script

tools = ToolRegistry()


class KeyArgs(ToolArgs):
    key: str


@tools.tool(owners=("billing",))
def read_value(ctx: ToolContext, args: KeyArgs) -> dict[str, str]:
    """Read a value."""
    return {"key": args.key, "value": "v"}


@tools.tool(owners=("billing",), critical=True)
def move_money(ctx: ToolContext, args: KeyArgs) -> dict[str, str]:
    """A payments backend that is down."""
    raise TimeoutError("backend timed out")


@tools.tool(owners=("billing",))
def soft_fail(ctx: ToolContext, args: KeyArgs) -> dict[str, str]:
    """Fails in a way the model can recover from."""
    raise ToolError("No payment pay_9. Call list_payments first.")


def task(**kw: object) -> AgentTask:
    now = time.time()
    base = dict(
        turn_id="t1",
        conversation_id="c1",
        agent="billing",
        source="helpdesk",
        tenant="demo",
        customer=Customer(id="cust"),
        window=[WindowMessage(role="customer", body="hi")],
        deadline_at=now + 3,
        published_at=now,
    )
    return AgentTask.model_validate({**base, **kw})


agent = Agent(name="billing", tools=list(tools))


def test_answer_backed_by_a_tool_call() -> None:
    brain = Script(CallTool("read_value", {"key": "a"}), Finish(AgentStatus.answered, "It is v.", 0.9, facts=[]))
    r = agent.run(task(), brain)
    assert r.status is AgentStatus.answered and r.tool_calls[0].output == {"key": "a", "value": "v"}


def test_same_tool_with_same_arguments_twice_escalates_as_loop() -> None:
    brain = Script(CallTool("read_value", {"key": "a"}), CallTool("read_value", {"key": "a"}))
    r = agent.run(task(), brain)
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "loop")
    assert len(r.tool_calls) == 1


def test_same_tool_with_other_arguments_is_not_a_loop() -> None:
    brain = Script(
        CallTool("read_value", {"key": "a"}),
        CallTool("read_value", {"key": "b"}),
        Finish(AgentStatus.answered, "ok", 0.9),
    )
    assert agent.run(task(), brain).status is AgentStatus.answered


def test_critical_tool_failure_escalates_without_a_stack_trace() -> None:
    brain = Script(CallTool("move_money", {"key": "a"}), Finish(AgentStatus.answered, "Refunded", 0.99))
    r = agent.run(task(), brain)
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "tool_failure")
    assert "Traceback" not in (r.tool_calls[0].error or "")


def test_recoverable_tool_error_goes_back_to_the_brain() -> None:
    brain = Script(CallTool("soft_fail", {"key": "a"}), Finish(AgentStatus.needs_info, "Which payment?", 0.9))
    r = agent.run(task(), brain)
    assert r.status is AgentStatus.needs_info
    assert r.tool_calls[0].error == "No payment pay_9. Call list_payments first."


def test_invalid_arguments_tell_the_model_what_to_fix() -> None:
    brain = Script(CallTool("read_value", {"kee": "a"}), Finish(AgentStatus.not_applicable))
    r = agent.run(task(), brain)
    assert "key" in (r.tool_calls[0].error or "") and "call read_value again" in (r.tool_calls[0].error or "")


def test_tool_of_another_agent_is_refused_where_it_runs() -> None:
    other = Agent(name="account", tools=list(tools))
    brain = Script(CallTool("read_value", {"key": "a"}), Finish(AgentStatus.not_applicable))
    r = other.run(task(agent="account"), brain)
    assert "may not call read_value" in (r.tool_calls[0].error or "")


def test_max_steps_stops_the_loop() -> None:
    brain = Script(*[CallTool("read_value", {"key": str(i)}) for i in range(10)])
    r = agent.run(task(max_steps=3), brain)
    assert (r.status, r.escalation_reason) == (AgentStatus.escalate, "loop") and len(r.tool_calls) == 3


def test_past_deadline_the_loop_stops_with_timed_out() -> None:
    brain = Script(CallTool("read_value", {"key": "a"}))
    r = agent.run(task(deadline_at=time.time() - 1), brain)
    assert r.status is AgentStatus.timed_out and r.tool_calls == []


def test_a_tool_decided_after_the_deadline_is_never_called() -> None:
    """A threads worker has no soft time limit: a brain that takes past the deadline to pick
    a tool must not have it run, since the merge may have given the turn to a human by then."""
    ran: list[str] = []
    slow_tools = ToolRegistry()

    @slow_tools.tool(owners=("billing",), side_effect="read")
    def note_call(ctx: ToolContext, args: KeyArgs) -> dict[str, str]:
        """Record that it ran."""
        ran.append(args.key)
        return {"key": args.key}

    class SlowBrain:
        name = "slow"

        def decide(self, view: object) -> CallTool:
            time.sleep(0.3)
            return CallTool("note_call", {"key": "late"})

    r = Agent(name="billing", tools=list(slow_tools)).run(task(deadline_at=time.time() + 0.1), SlowBrain())
    assert r.status is AgentStatus.timed_out and "before calling note_call" in (r.detail or "")
    assert ran == [] and r.tool_calls == []


def test_a_fact_without_a_tool_call_behind_it_is_refused() -> None:
    with pytest.raises(ValidationError, match="did not succeed"):
        AgentResult(
            turn_id="t",
            agent="billing",
            status=AgentStatus.answered,
            answer="You are owed 40",
            facts=[Fact(statement="owed 40", call_id="call_made_up")],
        )


def test_a_tool_name_the_model_made_up_is_counted_as_unknown_not_as_a_new_series() -> None:
    from prometheus_client import REGISTRY

    def calls(tool: str) -> float:
        labels = {"agent": "billing", "tool": tool, "result": "error"}
        return REGISTRY.get_sample_value("switchboard_tool_calls_total", labels) or 0.0

    before = calls("unknown")
    brain = Script(CallTool("drop_table_users_now", {}), Finish(AgentStatus.not_applicable))
    r = agent.run(task(), brain)
    assert "no tool named" in (r.tool_calls[0].error or "")
    assert calls("unknown") == before + 1 and calls("drop_table_users_now") == 0.0
