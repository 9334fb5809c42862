"""The bad-input catalogue: each wrong request gets the 4xx that says what to fix, and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stack, rows, ticket

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


def _stored() -> dict[str, int]:
    (r,) = rows(
        "SELECT (SELECT count(*) FROM conversations) c, (SELECT count(*) FROM messages WHERE role = 'customer') m, "
        "(SELECT count(*) FROM turns) t, (SELECT count(*) FROM api_keys) k"
    )
    return dict(r)


def _ticket(**changes: Any) -> bytes:
    payload: dict[str, Any] = ticket("I was charged twice")
    for key, value in changes.items():
        if key.startswith("customer_"):
            payload["customer"][key.removeprefix("customer_")] = value
        elif value is _DROP:
            payload.pop(key)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


def _without_customer_field(field: str) -> bytes:
    payload = ticket("hi")
    del payload["customer"][field]
    return json.dumps(payload).encode()


_DROP = object()
NESTED = b'{"source": "helpdesk", "external_id": "n1", "customer": ' + b"[" * 2000 + b"]" * 2000 + b', "body": "x"}'

# (id, key, method, path, headers, body, status)
CASES: list[tuple[str, str | None, str, str, dict[str, str], bytes | None, int]] = [
    ("invalid-json", "helpdesk", "POST", "/v1/tickets", JSON, b'{"source": "helpdesk", ', 400),
    ("empty-body", "helpdesk", "POST", "/v1/tickets", JSON, b"", 400),
    ("json-array", "helpdesk", "POST", "/v1/tickets", JSON, b"[]", 422),
    ("json-string", "helpdesk", "POST", "/v1/tickets", JSON, b'"a ticket"', 422),
    ("json-null", "helpdesk", "POST", "/v1/tickets", JSON, b"null", 422),
    ("no-source", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(source=_DROP), 422),
    ("no-external-id", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(external_id=_DROP), 422),
    ("no-customer", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer=_DROP), 422),
    ("no-body", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body=_DROP), 422),
    ("empty-body-text", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body=""), 422),
    ("blank-body-text", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body=" \n\t "), 422),
    ("body-too-long", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body="x" * 20_001), 422),
    ("body-a-number", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body=42), 422),
    ("body-a-list", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body=["hi"]), 422),
    ("body-nul", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body="refund\x00me"), 422),
    ("subject-nul", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(subject="a\x00b"), 422),
    ("subject-too-long", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(subject="s" * 513), 422),
    ("source-upper-case", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(source="Helpdesk"), 422),
    ("source-with-space", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(source="help desk"), 422),
    ("source-too-long", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(source="h" * 65), 422),
    ("external-id-empty", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(external_id=""), 422),
    ("external-id-too-long", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(external_id="e" * 257), 422),
    ("external-id-a-number", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(external_id=48213), 422),
    ("channel-unknown", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(channel="fax"), 422),
    ("customer-a-string", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer="cust_1"), 422),
    ("customer-no-id", "helpdesk", "POST", "/v1/tickets", JSON, _without_customer_field("id"), 422),
    ("customer-bad-email", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer_email="not-an-email"), 422),
    ("customer-nul-name", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer_name="Ana\x00"), 422),
    ("timezone-on-mars", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer_timezone="Mars/Olympus"), 422),
    ("locale-prose", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer_locale="english please"), 422),
    ("customer-extra-field", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(customer_vip=True), 422),
    ("unknown-field", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(priority="urgent"), 422),
    ("lone-surrogate", "helpdesk", "POST", "/v1/tickets", JSON, _ticket().replace(b"twice", b"\\ud800"), 400),
    ("deeply-nested", "helpdesk", "POST", "/v1/tickets", JSON, NESTED, 400),
    ("one-megabyte", "helpdesk", "POST", "/v1/tickets", JSON, _ticket(body="x" * 1024 * 1024), 413),
    ("text-plain", "helpdesk", "POST", "/v1/tickets", {"content-type": "text/plain"}, _ticket(), 415),
    (
        "form-post",
        "helpdesk",
        "POST",
        "/v1/tickets",
        {"content-type": "application/x-www-form-urlencoded"},
        b"source=helpdesk",
        415,
    ),
    ("no-content-type", "helpdesk", "POST", "/v1/tickets", {}, _ticket(), 415),
    ("unconfigured-source", "admin", "POST", "/v1/tickets", JSON, _ticket(source="zendesk-eu"), 401),
    ("no-key", None, "POST", "/v1/tickets", JSON, _ticket(), 401),
    ("unknown-key", "sb_not-a-key", "POST", "/v1/tickets", JSON, _ticket(), 401),
    ("other-sources-key", "signed", "POST", "/v1/tickets", JSON, _ticket(), 403),
    ("unsigned-signing-source", "admin", "POST", "/v1/tickets", JSON, _ticket(source="signed"), 401),
    (
        "follow-up-unknown-conversation",
        "helpdesk",
        "POST",
        "/v1/conversations/conv_nope/messages",
        JSON,
        b'{"body": "hello"}',
        404,
    ),
    ("follow-up-no-body", "helpdesk", "POST", "/v1/conversations/conv_nope/messages", JSON, b"{}", 422),
    ("follow-up-nul", "helpdesk", "POST", "/v1/conversations/conv_nope/messages", JSON, b'{"body": "a\\u0000b"}', 422),
    (
        "follow-up-extra-field",
        "helpdesk",
        "POST",
        "/v1/conversations/conv_nope/messages",
        JSON,
        b'{"body": "hi", "from": "x"}',
        422,
    ),
    ("read-unknown-conversation", "helpdesk", "GET", "/v1/conversations/conv_nope", {}, None, 404),
    ("erase-with-a-helpdesk-key", "helpdesk", "DELETE", "/v1/customers/helpdesk/cust_1001", {}, None, 403),
]


@pytest.mark.parametrize(("key", "method", "path", "headers", "body", "status"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_a_wrong_request_gets_a_4xx_that_says_what_to_fix_and_stores_nothing(
    stack: Stack, key: str | None, method: str, path: str, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    token = stack.keys.get(key, key) if key else None
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    before = _stored()
    response = httpx.request(method, stack.api + path, content=body, headers={**headers, **auth}, timeout=30)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert _stored() == before, "a refused request stored something"


def test_the_catalogue_is_at_least_forty_requests() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
