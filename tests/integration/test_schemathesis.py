"""Schemathesis against the running API's own OpenAPI schema: whatever it sends, no 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_generated_requests_never_get_a_server_error(stack: Stack, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{stack.api}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {stack.keys['admin']}",
            "--max-examples",
            "40",
            "--seed",
            "20261201",  # the same inputs every run: a failure can be replayed
            "--request-timeout",
            "15",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its crash cache (.schemathesis/) stays out of the checkout
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # It did send requests to every operation, many of them ("Test cases: N generated, N passed").
    total, tested = re.search(r"Selected: \d+/(\d+)", done.stdout), re.search(r"Tested: (\d+)", done.stdout)
    assert total and tested and tested.group(1) == total.group(1), done.stdout[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert cases and int(cases.group(1)) == int(cases.group(2)) >= 100, done.stdout[-2000:]
