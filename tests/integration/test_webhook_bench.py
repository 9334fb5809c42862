"""`switchboard webhook-bench`, small: every signed webhook of each helpdesk is taken, and the
bench prints how fast (the figures are the bench's to report, not this test's to judge)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import PG_ADMIN, ROOT

pytestmark = pytest.mark.integration


def test_the_webhook_bench_posts_signed_webhooks_of_each_helpdesk_and_reports_their_answer_times() -> None:
    argv = ["webhook-bench", "--requests", "20", "--concurrency", "4", "--database-url", PG_ADMIN, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *argv], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("zendesk", "freshdesk", "intercom"):
        assert out[kind]["status"] == {"202": 20}, out[kind]
        assert out[kind]["answer_ms"]["n"] == 20 and out[kind]["answer_ms"]["p50"] > 0
