"""`switchboard desk-bench`, small: concurrent claimers take every escalation exactly once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import PG_ADMIN, ROOT

pytestmark = pytest.mark.integration


def test_concurrent_claimers_take_each_escalation_once_and_the_bench_says_so() -> None:
    argv = ["desk-bench", "--claimers", "8", "--escalations", "200", "--database-url", PG_ADMIN, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["claims"], out["left_in_queue"], out["double_claims"], out["errors"]) == (200, 0, 0, 0)
    assert out["claims_per_s"] > 0 and out["claim_latency_ms"]["n"] >= 200
