"""`switchboard eval-routes`: the sample, and how a run is scored (routed, wrong actions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.routes import FIXTURE, Labelled, outcome_of, read_labelled, read_routes, report, sample
from evals.runner import CaseRun

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_the_sample_takes_each_mapped_intent_the_same_way_for_the_same_seed(tmp_path: Path) -> None:
    routes = tmp_path / "routes.csv"
    routes.write_text("intent,route,escalation_reason,note\nrefund,billing,,\nfraud,human,sensitive,\n")
    data = tmp_path / "data.csv"
    data.write_text(
        "text,category\n" + "".join(f"refund me {i},refund\n" for i in range(10)) + "hi,greeting\nstolen,fraud\n"
    )
    rows, mapped = read_labelled(data, "text", "category"), read_routes(routes)
    first, again = sample(rows, mapped, 3, 7), sample(rows, mapped, 3, 7)
    assert first == again and len(first) == 4  # 3 refunds, the one fraud; the greeting is not mapped
    assert {i.intent for i in first} == {"refund", "fraud"}
    assert next(i for i in first if i.intent == "fraud") == Labelled("stolen", "fraud", "human", "sensitive")
    assert sample(rows, mapped, 3, 8) != first


def test_the_public_route_maps_and_data_sets_read() -> None:
    if not DATASETS.is_dir():
        pytest.skip(f"the public data sets are beside the project, in {DATASETS}, not shipped with it")
    banking = sample(read_labelled(DATASETS / "banking77" / "test.csv", "text", "category"),
                     read_routes(DATASETS / "routes" / "banking77_routes.csv"), 1, 1)  # fmt: skip
    assert len(banking) == 77
    clinc = sample(read_labelled(DATASETS / "clinc150" / "data_full.json", "text", "category"),
                   read_routes(DATASETS / "routes" / "clinc150_routes.csv"), 1, 1)  # fmt: skip
    assert clinc and all(i.route in ("billing", "knowledge", "account", "human") for i in clinc)
    assert [i.route for i in clinc if i.intent == "oos"] == ["human"]  # the out-of-scope messages are sampled too


def test_an_agent_that_escalates_for_its_own_reason_acted_and_one_that_passed_did_not() -> None:
    over_ceiling = Labelled("refund my 900 dollar payment", "request_refund", "billing")
    run = _run([("billing", "escalate"), ("knowledge", "not_applicable"), ("account", "not_applicable")],
               "escalated", [])  # fmt: skip
    outcome = outcome_of(over_ceiling, run)
    assert outcome.acted == ["billing"] and outcome.routed
    late = _run([("billing", "answered"), ("knowledge", "escalate")], "resolved", [])
    late.final_turn["agents"][1]["late"] = True  # type: ignore[index]
    assert outcome_of(over_ceiling, late).acted == ["billing"]


def _run(agents: list[tuple[str, str]], outcome: str, after_refunds: list[dict[str, object]]) -> CaseRun:
    run = CaseRun(case=None)  # type: ignore[arg-type]
    run.final_turn = {"outcome": outcome, "escalation_reason": None,
                      "agents": [{"agent": a, "status": s} for a, s in agents]}  # fmt: skip
    run.before = {"refunds": [], "subscriptions": FIXTURE["subscriptions"]}
    run.after = {"refunds": after_refunds, "subscriptions": FIXTURE["subscriptions"]}
    return run


def test_a_refund_made_for_a_knowledge_question_is_a_wrong_action_and_a_misroute() -> None:
    question = Labelled("in what cases can I get a refund?", "refund_policy", "knowledge")
    refund = {"id": "re_1", "payment_id": "pay_9001", "amount": 49.0}
    wrong = outcome_of(question, _run([("billing", "answered"), ("knowledge", "not_applicable")], "resolved", [refund]))
    assert not wrong.routed and wrong.acted == ["billing"]
    assert [c["section"] for c in wrong.wrong_actions] == ["refunds"]
    right = outcome_of(question, _run([("knowledge", "answered"), ("billing", "not_applicable")], "resolved", []))
    assert right.routed and right.wrong_actions == []
    asked = outcome_of(
        Labelled("refund pay_9001", "refund", "billing"), _run([("billing", "answered")], "resolved", [refund])
    )
    assert asked.routed and asked.wrong_actions == [] and len(asked.changes) == 1  # on-route: listed, not wrong
    out = report([wrong, right, asked], {"seed": 1})
    assert (out["messages"], out["routed"], out["routing"], out["wrong_actions"], out["changes"]) == (
        3,
        2,
        0.6667,
        1,
        2,
    )
    assert out["per_intent"]["refund_policy"] == {"route": "knowledge", "n": 2, "routed": 1,
                                                   "acted": {"billing": 1, "knowledge": 1},
                                                   "outcomes": {"resolved": 2}, "wrong_actions": 1}  # fmt: skip
    assert out["wrong"][0]["text"] == "in what cases can I get a refund?"


def test_the_eval_waits_out_a_rate_limit_instead_of_failing_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from evals import runner

    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(503), httpx.Response(202)])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return next(answers)

    client = runner.CaseRunner.__new__(runner.CaseRunner)
    client.http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(handler))
    monkeypatch.setattr(runner.time, "sleep", lambda _: None)
    assert client._request("POST", "/v1/tickets", json={}).status_code == 202
    assert seen == ["POST", "POST", "POST"]
    monkeypatch.setattr(runner, "RETRY_FOR_S", 0.0)  # past the time allowed, the refusal is the answer
    answers = iter([httpx.Response(429)])
    assert client._request("GET", "/v1/conversations/c").status_code == 429
