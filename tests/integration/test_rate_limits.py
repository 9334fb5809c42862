"""Per-key rate limits: past the limit a key gets 429 with Retry-After; other keys are not slowed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from orchestrator.keys import create_key
from shared import db
from shared.contracts import Role
from switchboard.processes import switchboard_argv
from switchboard.servers import free_port
from tests.integration.conftest import REDIS_URL, ROOT, rows, ticket

pytestmark = pytest.mark.integration


@pytest.fixture
def limited_api(database_url: str) -> Iterator[str]:
    """An API process of its own that allows each key 3 requests a minute."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_BROKER_URL": REDIS_URL,
        "SWITCHBOARD_API_RATE_LIMIT": "3/minute",
        "SWITCHBOARD_SOURCES": json.dumps({"helpdesk": {}}),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(switchboard_argv("api", "--port", str(port)), env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end and proc.poll() is None, "the API did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _key() -> str:
    with db.session_scope() as s:
        return create_key(s, role=Role.helpdesk, source="helpdesk", name="rate limit test", by="tests")[1]


def test_past_its_limit_a_key_gets_429_with_retry_after_and_nothing_is_stored(limited_api: str) -> None:
    busy, other = _key(), _key()
    client = httpx.Client(base_url=limited_api, headers={"Authorization": f"Bearer {busy}"}, timeout=10)
    for _ in range(3):
        assert client.get("/v1/conversations/conv_none").status_code == 404
    payload = ticket("hello")
    refused = client.post("/v1/tickets", json=payload)
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3/minute" in refused.json()["detail"]
    assert rows("SELECT id FROM conversations WHERE external_id = :e", e=payload["external_id"]) == []
    fresh = httpx.get(f"{limited_api}/v1/conversations/conv_none", headers={"Authorization": f"Bearer {other}"})
    assert fresh.status_code == 404  # another key has its own count
