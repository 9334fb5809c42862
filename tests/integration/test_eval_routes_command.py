"""`switchboard eval-routes` as a user runs it, against the running test stack: a labelled CSV
and a route map in, the routing report out. The stack's agents follow the scripted brain
(every agent answers a plain message), so this proves the harness: the seeded sample, each
message through the HTTP API with the sandbox reset, who acted, and the scoring."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from switchboard.processes import switchboard_argv
from tests.integration.conftest import ROOT, Stack

pytestmark = pytest.mark.integration


def test_a_labelled_sample_goes_through_the_api_and_comes_back_scored(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    data.write_text(
        "utterance,label\n"
        "what is my balance,balance\nhow much do I have left,balance\nshow my balance please,balance\n"
        "someone stole my card,fraud\nI like turtles,unmapped\n"
    )
    routes = tmp_path / "routes.csv"
    routes.write_text("intent,route,escalation_reason,note\nbalance,billing,,\nfraud,human,sensitive,\n")
    api = urlsplit(stack.api)
    env = {**stack.env, "SWITCHBOARD_API_HOST": str(api.hostname), "SWITCHBOARD_API_PORT": str(api.port)}
    argv = [str(data), "--routes", str(routes), "--per-intent", "2", "--seed", "3", "--text-column", "utterance",
            "--label-column", "label", "--no-kb", "--json"]  # fmt: skip
    done = subprocess.run(
        switchboard_argv("eval-routes", *argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    # 2 of the 3 balance messages and the one fraud message; the unmapped one is not sent.
    assert (out["messages"], out["errors"], out["seed"], out["messages_per_intent"]) == (3, 0, 3, 2)
    assert out["per_intent"]["balance"]["n"] == 2 and out["per_intent"]["fraud"]["n"] == 1
    # The scripted brain has every agent answer a plain message: billing acted, but not alone.
    assert out["per_intent"]["balance"]["acted"] == {"account+billing+knowledge": 2}
    assert out["per_intent"]["balance"]["routed"] == 0
    assert out["wrong_actions"] == 0 and out["changes"] == 0  # the scripted answer reads, it changes nothing
    assert sum(out["outcomes"].values()) == 3 and 0 <= out["routing"] <= 1
