"""A database that does not answer is 503 with Retry-After, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from orchestrator.api import create_app
from shared import db
from shared.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


@pytest.fixture
def api_without_database() -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/switchboard",
        broker_url="memory://",
        sources={"zendesk": {}},
    )
    with db.configured(settings):
        yield TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/tickets", {"source": "zendesk", "external_id": "1", "customer": {"id": "c"}, "body": "hi"}),
        ("POST", "/v1/conversations/conv_x/messages", {"body": "hi"}),
        ("GET", "/v1/conversations/conv_x", None),
    ],
)
def test_a_request_while_the_database_is_down_is_a_503_with_retry_after(
    api_without_database: TestClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = api_without_database.request(
        method, path, json=body, headers={"Authorization": "Bearer sb_some-key-the-database-would-know"}
    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Send the same request again" in response.json()["detail"]
    assert api_without_database.get("/readyz").status_code == 503
