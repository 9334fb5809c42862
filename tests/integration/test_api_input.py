"""Bad input gets a 4xx problem document that says what to fix, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import Stack, rows, ticket, wait_done

pytestmark = pytest.mark.integration


def counts() -> tuple[int, int, int]:
    (r,) = rows(
        "SELECT (SELECT count(*) FROM conversations) c, (SELECT count(*) FROM messages WHERE role = 'customer') m, "
        "(SELECT count(*) FROM turns) t"
    )
    return r["c"], r["m"], r["t"]


@pytest.fixture
def nothing_stored(stack: Stack):  # type: ignore[no-untyped-def]
    before = counts()
    yield
    assert counts() == before, "a rejected request must not store anything"


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return str(body["detail"])


@pytest.mark.usefixtures("nothing_stored")
def test_missing_fields_are_named(stack: Stack) -> None:
    payload = ticket("hi")
    del payload["customer"], payload["external_id"]
    detail = problem(stack.http.post("/v1/tickets", json=payload), 422)
    assert "customer" in detail and "external_id" in detail


@pytest.mark.usefixtures("nothing_stored")
def test_wrong_types_are_explained(stack: Stack) -> None:
    payload = ticket("hi")
    payload["customer"] = {"id": "c1", "email": "not-an-email"}
    payload["body"] = 42
    detail = problem(stack.http.post("/v1/tickets", json=payload), 422)
    assert "customer.email" in detail and "body" in detail


@pytest.mark.usefixtures("nothing_stored")
def test_empty_body_text_is_rejected(stack: Stack) -> None:
    detail = problem(stack.http.post("/v1/tickets", json=ticket("   ")), 422)
    assert "body" in detail


@pytest.mark.usefixtures("nothing_stored")
def test_one_megabyte_body_is_refused_with_413(stack: Stack) -> None:
    payload = ticket("x" * (1024 * 1024))
    detail = problem(stack.http.post("/v1/tickets", json=payload), 413)
    assert "larger than" in detail


@pytest.mark.usefixtures("nothing_stored")
def test_invalid_json_is_a_400(stack: Stack) -> None:
    response = stack.http.post(
        "/v1/tickets", content=b'{"source": "helpdesk", ', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in problem(response, 400)


@pytest.mark.usefixtures("nothing_stored")
def test_unknown_fields_are_refused(stack: Stack) -> None:
    payload = ticket("hi", priority="urgent")
    assert "priority" in problem(stack.http.post("/v1/tickets", json=payload), 422)


@pytest.mark.usefixtures("nothing_stored")
def test_unknown_conversation_is_a_404(stack: Stack) -> None:
    assert "conv_nope" in problem(stack.http.get("/v1/conversations/conv_nope"), 404)
    response = stack.http.post("/v1/conversations/conv_nope/messages", json={"body": "hello"})
    assert "POST /v1/tickets" in problem(response, 404)


def _with_customer(**fields: object) -> dict[str, object]:
    payload = ticket("hi")
    payload["customer"] = {**payload["customer"], **fields}  # type: ignore[dict-item]
    return payload


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (ticket("refund\x00please"), "body"),
        (ticket("hi", subject="Charged\x00twice"), "subject"),
        (_with_customer(name="Ana\x00Ruiz"), "customer.name"),
        (_with_customer(id="cust\x001"), "customer.id"),
        (_with_customer(timezone="Mars/Olympus"), "customer.timezone"),
        (_with_customer(locale="english please"), "customer.locale"),
    ],
)
def test_nul_characters_and_unknown_time_zones_or_locales_are_a_422_that_names_the_field(
    stack: Stack, payload: dict[str, object], field: str
) -> None:
    detail = problem(stack.http.post("/v1/tickets", json=payload), 422)
    assert field in detail


def test_a_follow_up_with_a_nul_character_is_a_422(stack: Stack) -> None:
    first = stack.http.post("/v1/tickets", json=ticket("hello")).json()
    wait_done(first["turn_id"])
    before = counts()
    response = stack.http.post(f"/v1/conversations/{first['conversation_id']}/messages", json={"body": "a\x00b"})
    assert "NUL" in problem(response, 422)
    assert counts() == before


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_body_that_is_not_declared_json_is_a_415(stack: Stack, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = stack.http.post("/v1/tickets", content=json.dumps(ticket("hi")).encode(), headers=headers)
    assert "application/json" in problem(response, 415)


def test_every_answer_tells_browsers_and_proxies_not_to_sniff_frame_or_cache_it(stack: Stack) -> None:
    helpdesk = stack.client("helpdesk")
    answers = {
        "accepted": helpdesk.post("/v1/tickets", json=ticket("hello")),
        "no key": httpx.get(f"{stack.api}/v1/conversations/conv_x", timeout=10),
        "not found": helpdesk.get("/v1/conversations/conv_x"),
        "not JSON": helpdesk.post("/v1/tickets", content=b"x", headers={"Content-Type": "text/plain"}),
        "too large": helpdesk.post("/v1/tickets", json=ticket("x" * 300_000)),
    }
    assert [r.status_code for r in answers.values()] == [202, 401, 404, 415, 413]
    wait_done(answers["accepted"].json()["turn_id"])  # leave no turn running for the next test
    for name, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["cache-control"] == "no-store", name
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'", name
