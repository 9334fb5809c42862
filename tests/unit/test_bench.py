from __future__ import annotations

import argparse

import pytest

from agents.registry import TOOLS, build_agents
from bench import brain as bench
from bench.brain import BenchBrain
from bench.run import (
    config_from,
    evaluate_targets,
    model_bound_targets,
    percentile,
    ratio,
    render_table,
    summarize,
    with_database,
)
from shared.brains import AgentView, CallTool, Finish
from shared.contracts import AgentStatus, AgentTask, Customer, ToolCallRecord, WindowMessage
from shared.settings import Settings


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)  # numpy.percentile(..., 95) gives the same


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 99) == 7.5


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_reports_the_quoted_percentiles() -> None:
    summary = summarize([float(v) for v in range(1, 101)])
    assert summary["n"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["max"] == 100.0
    assert summary["mean"] == pytest.approx(50.5)


def test_ratio_of_a_zero_baseline_is_unknown_not_infinite() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None


def test_targets_pass_at_their_bounds_and_fail_beyond() -> None:
    ratios, targets = evaluate_targets(15.0, 10.0, 200.0, 100.0, 20.0)
    assert ratios == {"turn_overhead_p50_vs_baseline_p50": 1.5, "throughput_vs_baseline": 2.0}
    assert all(t["pass"] for t in targets.values())

    _, targets = evaluate_targets(15.1, 10.0, 199.0, 100.0, 20.1)
    assert not any(t["pass"] for t in targets.values())


def test_targets_fail_when_the_baseline_measured_nothing() -> None:
    ratios, targets = evaluate_targets(15.0, 0.0, 200.0, 0.0, 1.0)
    assert ratios["throughput_vs_baseline"] is None
    assert not targets["turn_overhead_p50"]["pass"]
    assert not targets["throughput"]["pass"]


def test_table_shows_each_target_with_its_verdict() -> None:
    ratios, targets = evaluate_targets(30.0, 10.0, 50.0, 100.0, 5.0)
    s = summarize([1.0, 2.0, 3.0])
    report = {
        "baseline_group_join_ms": s,
        "turn_overhead_ms": s,
        "deadline_overshoot_ms": s,
        "throughput_turns_per_s": 50.0,
        "baseline_throughput_per_s": 100.0,
        "ratios": ratios,
        "targets": targets,
        "machine": {"cores": 2, "broker_scheme": "redis", "python": "3.11", "celery": "5"},
    }
    table = render_table(report)
    assert "FAIL  turn_overhead_p50" in table
    assert "PASS  deadline_overshoot_p99_ms" in table


def test_bench_database_lives_on_the_configured_server() -> None:
    url = with_database("postgresql+psycopg://app:pw@db.internal:5433/switchboard?sslmode=require", "bench_1")
    assert url == "postgresql://app:pw@db.internal:5433/bench_1?sslmode=require"


def test_rabbitmq_broker_still_gets_a_redis_result_backend_for_the_baseline() -> None:
    args = argparse.Namespace(samples=10, turns=20, hung=3)
    cfg = config_from(args, Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert cfg.broker_url.startswith("amqp://")
    assert cfg.backend_url.startswith("redis://")
    cfg = config_from(args, Settings(broker_url="redis://127.0.0.1:6379/4", agent_deadlines_s={"billing": 5.0}))
    assert cfg.backend_url == "redis://127.0.0.1:6379/4"
    assert cfg.deadline_s == 5.0


def _view(agent: str, body: str, history: list[ToolCallRecord] | None = None) -> AgentView:
    task = AgentTask(
        turn_id="turn_1",
        conversation_id="conv_1",
        agent=agent,
        source="helpdesk",
        tenant="demo",
        customer=Customer(id="cust_1"),
        window=[WindowMessage(role="customer", body=body)],
        deadline_at=0.0,
        published_at=0.0,
    )
    return AgentView(task=task, tools=[], history=history or [])


def test_bench_brain_calls_one_instant_tool_then_answers_citing_it() -> None:
    brain = BenchBrain(Settings())
    first = brain.decide(_view("knowledge", "hello"))
    assert isinstance(first, CallTool)
    assert first.tool == bench.BENCH_TOOL
    call = ToolCallRecord(call_id="call_1", tool=first.tool, arguments={}, output={"ok": True})
    decision = brain.decide(_view("knowledge", "hello", [call]))
    assert isinstance(decision, Finish)
    assert decision.status is AgentStatus.answered
    assert decision.confidence >= Settings().confidence_threshold
    assert [f.call_id for f in decision.facts] == ["call_1"]  # the evidence the merge requires


def test_every_agent_may_call_the_bench_tool() -> None:
    agents = build_agents(Settings(extra_tools=("bench.brain:TOOLS",)))
    for agent in Settings().agents:
        assert bench.BENCH_TOOL in {t.name for t in agents[agent].own_tools()}
    assert TOOLS.get(bench.BENCH_TOOL) is None  # given by the bench's configuration, not in the product


def test_bench_brain_hangs_only_the_billing_agent_of_a_marked_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("bench.brain.time.sleep", slept.append)
    brain = BenchBrain(Settings())
    brain.decide(_view("knowledge", f"refund please {bench.HANG_MARK}"))
    brain.decide(_view("billing", "refund please"))
    assert slept == []
    brain.decide(_view("billing", f"refund please {bench.HANG_MARK}"))
    assert slept == [bench.HANG_S]


def test_model_bound_agents_wait_on_the_model_server_once_within_their_deadline() -> None:
    import time

    from bench.model_server import ModelServer

    with_model = ModelServer(wait_s=0.2).start()
    try:
        brain = BenchBrain(Settings(openai_base_url=with_model.url))
        view = _view("account", f"my plan {bench.MODEL_MARK}")
        view = AgentView(task=view.task.model_copy(update={"deadline_at": time.time() + 3}), tools=[], history=[])
        started = time.monotonic()
        assert isinstance(brain.decide(view), CallTool)
        assert time.monotonic() - started >= 0.2 and with_model.requests == 1
        brain.decide(_view("account", "my plan"))  # no mark: no wait
        assert with_model.requests == 1
    finally:
        with_model.stop()


def test_model_bound_targets_pass_at_their_bounds() -> None:
    targets = model_bound_targets(50.0, 10.0)
    assert targets["model_bound_throughput"]["pass"] and targets["model_bound_vs_blocking"]["pass"]
    targets = model_bound_targets(49.9, None)
    assert not targets["model_bound_throughput"]["pass"] and not targets["model_bound_vs_blocking"]["pass"]
