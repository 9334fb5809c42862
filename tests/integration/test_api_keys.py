"""Who may call the API: every /v1 route takes a key, and a key sees only what is its own."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from orchestrator.keys import create_key, principal_for, revoke_key
from shared import db
from shared.contracts import Role
from tests.integration.conftest import ROOT, Stack, rows, ticket, wait_done

pytestmark = pytest.mark.integration


def _counts() -> dict[str, int]:
    # Customer messages only: a reply of an earlier test's turn may land at any moment.
    (r,) = rows(
        "SELECT (SELECT count(*) FROM conversations) c, (SELECT count(*) FROM messages WHERE role = 'customer') m"
    )
    return {"conversations": r["c"], "messages": r["m"]}


def _posted(stack: Stack, key: str, payload: dict[str, object]) -> dict[str, str]:
    response = stack.client(key).post("/v1/tickets", json=payload)
    assert response.status_code == 202, response.text
    return dict(response.json())


def _key(role: Role, source: str | None = None) -> str:
    with db.session_scope() as s:
        return create_key(s, role=role, source=source, name=f"test {role}", by="tests")[1]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/tickets"), ("POST", "/v1/conversations/conv_x/messages"), ("GET", "/v1/conversations/conv_x")],
)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer sb_not-a-key", "Basic dXNlcjpwdw=="])
def test_no_v1_route_answers_without_a_valid_key(
    stack: Stack, method: str, path: str, authorization: str | None
) -> None:
    before = _counts()
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.request(method, stack.api + path, json=ticket("hi"), headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "switchboard keys" in response.json()["detail"]
    assert _counts() == before


def test_a_revoked_key_is_refused_at_once(stack: Stack) -> None:
    token = _key(Role.helpdesk, "helpdesk")
    with db.session_scope() as s:
        principal = principal_for(s, token)
        assert principal is not None
        assert revoke_key(s, principal.key_id, by="tests")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(stack.api + "/v1/tickets", json=ticket("hi"), headers=headers).status_code == 401


def test_a_helpdesk_key_posts_only_for_its_own_source_and_learns_nothing_of_another(stack: Stack) -> None:
    victim = _posted(stack, "helpdesk", ticket("My card was charged twice", external_id="victim-1"))
    wait_done(victim["turn_id"])
    before = _counts()
    # The other source's key re-posts the victim's ticket number under the victim's source.
    stolen = stack.client("signed").post("/v1/tickets", json=ticket("x", external_id="victim-1"))
    assert stolen.status_code == 403 and "helpdesk" in stolen.json()["detail"]
    assert victim["conversation_id"] not in stolen.text
    assert _counts() == before


def test_a_helpdesk_key_reads_and_follows_up_only_its_own_conversations(stack: Stack) -> None:
    victim = _posted(stack, "helpdesk", ticket("hello", external_id="reads-1"))
    wait_done(victim["turn_id"])  # the bot's reply is in: nothing else adds a message
    path = f"/v1/conversations/{victim['conversation_id']}"
    assert stack.client("helpdesk").get(path).status_code == 200
    other = stack.client("signed")
    missing = other.get("/v1/conversations/conv_does_not_exist")
    hidden = other.get(path)
    # Another source's conversation looks exactly like one that does not exist.
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["title"] == missing.json()["title"]
    before = _counts()
    assert other.post(f"{path}/messages", json={"body": "cancel everything"}).status_code == 404
    assert _counts() == before


def test_an_agent_key_reads_only_escalated_conversations_and_posts_nothing(stack: Stack) -> None:
    token = _key(Role.agent)
    agent = httpx.Client(base_url=stack.api, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    quiet = _posted(stack, "helpdesk", ticket("hello", external_id="agent-1"))
    assert agent.get(f"/v1/conversations/{quiet['conversation_id']}").status_code == 404
    human = _posted(stack, "helpdesk", ticket("I want to talk to a human", external_id="agent-2"))
    assert wait_done(human["turn_id"])["outcome"] == "escalated"
    assert agent.get(f"/v1/conversations/{human['conversation_id']}").status_code == 200
    # A person read a customer's conversation: on the record; a helpdesk's own reads are not.
    reads = rows(
        "SELECT data FROM events WHERE kind = 'conversation.read' AND conversation_id = :c", c=human["conversation_id"]
    )
    assert [r["data"]["role"] for r in reads] == ["agent"]
    response = agent.post("/v1/tickets", json=ticket("hi"))
    assert response.status_code == 403 and "helpdesk key" in response.json()["detail"]


def test_an_unconfigured_source_is_refused_with_the_setting_to_add(stack: Stack) -> None:
    before = _counts()
    response = stack.http.post("/v1/tickets", json=ticket("hi", source="zendesk-eu"))
    assert response.status_code == 401
    assert "SWITCHBOARD_SOURCES" in response.json()["detail"] and "zendesk-eu" in response.json()["detail"]
    assert _counts() == before


def _keys_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_keys_are_created_once_listed_without_the_secret_and_revoked(stack: Stack, database_url: str) -> None:
    created = _keys_cli(database_url, "create", "--role", "helpdesk", "--source", "helpdesk", "--name", "cli test")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("sb_") and len(token) > 40 and "shown only now" in created.stderr
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(stack.api + "/v1/tickets", json=ticket("hi"), headers=headers).status_code == 202
    listed = _keys_cli(database_url, "list")
    line = next(row for row in listed.stdout.splitlines() if "cli test" in row)
    assert token not in listed.stdout and token[:10] in line and "active" in line
    assert rows("SELECT count(*) n FROM api_keys WHERE :t IN (id, name, digest, prefix)", t=token) == [{"n": 0}]
    key_id = line.split()[0]
    assert _keys_cli(database_url, "revoke", key_id).returncode == 0
    assert httpx.post(stack.api + "/v1/tickets", json=ticket("hi"), headers=headers).status_code == 401
    assert "revoked" in next(row for row in _keys_cli(database_url, "list").stdout.splitlines() if key_id in row)
    # Both are on the record, with who did it and not the key itself.
    audit = rows(
        "SELECT kind, data FROM events WHERE kind IN ('key.created', 'key.revoked') AND data->>'key_id' = :k "
        "ORDER BY id",
        k=key_id,
    )
    assert [e["kind"] for e in audit] == ["key.created", "key.revoked"]
    assert all(e["data"]["by"].startswith("cli") for e in audit) and token not in str(audit)
    refused = _keys_cli(database_url, "create", "--role", "helpdesk", "--name", "no source")
    assert refused.returncode == 2 and "--source" in refused.stderr
