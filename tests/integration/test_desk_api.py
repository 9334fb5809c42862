"""The desk over HTTP on the running stack: humans claim, answer once, hand back.

The queue is shared with every other test of the stack, so these claim by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ANSWER, Helpdesk, Received, Stack, rows, script, ticket, wait_done

pytestmark = pytest.mark.integration

DRAFT = "Your refund of 25.00 USD for pay_1 is on its way."
# A cited answer below the confidence threshold: a human decides, with it as the suggestion.
UNSURE = [
    {"call": "lookup_balance", "args": {}},
    {"finish": "answered", "answer": DRAFT, "confidence": 0.3, "cite": True},
]
NOTHING = [{"finish": "not_applicable"}]


def escalate(stack: Stack) -> tuple[str, str]:
    """A ticket the agents were unsure of: (escalation id, conversation id)."""
    posted = stack.http.post("/v1/tickets", json=ticket(script(billing=UNSURE, knowledge=NOTHING, account=NOTHING)))
    assert posted.status_code == 202, posted.text
    accepted = posted.json()
    turn = wait_done(accepted["turn_id"])
    assert turn["outcome"] == "escalated", turn
    (row,) = rows("SELECT id FROM escalations WHERE turn_id = :t", t=accepted["turn_id"])
    return row["id"], accepted["conversation_id"]


def replies_for(helpdesk: Helpdesk, escalation_id: str, wait_s: float = 0.0) -> list[Received]:
    end = time.monotonic() + wait_s
    while True:
        with helpdesk.lock:
            got = [r for r in helpdesk.received if r.body.get("escalation_id") == escalation_id]
        if got or time.monotonic() >= end:
            return got
        time.sleep(0.05)


def test_only_humans_work_the_desk(stack: Stack) -> None:
    escalation_id, _ = escalate(stack)
    assert httpx.get(stack.api + "/v1/escalations", timeout=10).status_code == 401
    for path in ("/v1/escalations", f"/v1/escalations/{escalation_id}"):
        refused = stack.client("helpdesk").get(path)
        assert refused.status_code == 403 and "agent or admin key" in refused.json()["detail"]
    claim = stack.client("helpdesk").post("/v1/escalations/claim", json={"escalation_id": escalation_id})
    assert claim.status_code == 403
    assert rows("SELECT state FROM escalations WHERE id = :e", e=escalation_id) == [{"state": "queued"}]


def test_a_human_claims_reads_the_packet_and_replies_once(stack: Stack, helpdesk: Helpdesk) -> None:
    escalation_id, conversation_id = escalate(stack)
    ana, ben = stack.client("agent"), stack.client("agent2")

    listed = ana.get("/v1/escalations", params={"status": "queued", "limit": 200}).json()
    assert listed["items"] and all(i["state"] == "queued" for i in listed["items"])

    claimed = ana.post("/v1/escalations/claim", json={"escalation_id": escalation_id})
    assert claimed.status_code == 200, claimed.text
    token = claimed.json()["claim_token"]
    packet: dict[str, Any] = claimed.json()["escalation"]
    assert packet["reason"] == "low_confidence" and packet["suggested_reply"] == DRAFT
    assert packet["customer"]["email"] == "ana.ruiz@example.com"
    seen = packet["conversation"]["latest_customer_message_id"]

    taken = ben.post("/v1/escalations/claim", json={"escalation_id": escalation_id})
    assert taken.status_code == 409 and taken.headers["content-type"] == "application/problem+json"

    beat = ana.post(f"/v1/escalations/{escalation_id}/heartbeat", json={"claim_token": token})
    assert beat.status_code == 200 and beat.json()["lease_expires_at"] >= claimed.json()["lease_expires_at"]
    stale = ben.post(f"/v1/escalations/{escalation_id}/heartbeat", json={"claim_token": token})
    assert stale.status_code == 409  # the right token, the wrong human

    body = {"claim_token": token, "body": DRAFT, "seen_message_id": seen, "resolve": True}
    first = ana.post(f"/v1/escalations/{escalation_id}/reply", json=body)
    again = ana.post(f"/v1/escalations/{escalation_id}/reply", json=body)  # a double click
    assert first.status_code == again.status_code == 200, first.text
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert first.json()["acceptance"] == "unchanged" and first.json()["resolved"] is True

    (sent,) = replies_for(helpdesk, escalation_id, wait_s=10)
    assert sent.signature_ok and sent.body["reply"] == DRAFT and sent.body["outcome"] == "human_reply"
    assert sent.body["conversation_id"] == conversation_id
    time.sleep(1.0)  # a second delivery would have come by now
    assert len(replies_for(helpdesk, escalation_id)) == 1
    assert rows("SELECT state FROM escalations WHERE id = :e", e=escalation_id) == [{"state": "resolved"}]
    kinds = [
        r["kind"]
        for r in rows("SELECT kind FROM escalation_events WHERE escalation_id = :e ORDER BY id", e=escalation_id)
    ]
    assert kinds == ["queued", "claimed", "replied"]


def test_a_reply_to_a_conversation_that_moved_on_is_refused_with_the_new_message(stack: Stack) -> None:
    escalation_id, conversation_id = escalate(stack)
    ana = stack.client("agent")
    claimed = ana.post("/v1/escalations/claim", json={"escalation_id": escalation_id}).json()
    seen = claimed["escalation"]["conversation"]["latest_customer_message_id"]
    follow_up = stack.http.post(f"/v1/conversations/{conversation_id}/messages", json={"body": "and a second one"})
    assert follow_up.status_code == 202
    wait_done(follow_up.json()["turn_id"])  # held for the human: no agent ran
    refused = ana.post(
        f"/v1/escalations/{escalation_id}/reply",
        json={"claim_token": claimed["claim_token"], "body": "Refunded.", "seen_message_id": seen},
    )
    assert refused.status_code == 409
    assert refused.json()["message"]["body"] == "and a second one"
    assert rows(
        "SELECT count(*) AS n FROM messages WHERE conversation_id = :c AND role = 'human'", c=conversation_id
    ) == [{"n": 0}]


def test_what_to_fix_in_a_bad_request(stack: Stack) -> None:
    escalation_id, _ = escalate(stack)
    ana = stack.client("agent")
    missing = ana.post(f"/v1/escalations/{escalation_id}/reply", json={"claim_token": 1, "body": "hi"})
    assert missing.status_code == 422 and "seen_message_id" in missing.json()["detail"]
    zero = ana.post(f"/v1/escalations/{escalation_id}/heartbeat", json={"claim_token": 0})
    assert zero.status_code == 422 and "claim_token" in zero.json()["detail"]
    bad = ana.get("/v1/escalations", params={"status": "open"})
    assert bad.status_code == 400 and "queued" in bad.json()["detail"]
    assert ana.get("/v1/escalations/esc_nope").status_code == 404


def test_hand_back_returns_the_conversation_to_the_bot(stack: Stack) -> None:
    escalation_id, conversation_id = escalate(stack)
    ana = stack.client("agent")
    token = ana.post("/v1/escalations/claim", json={"escalation_id": escalation_id}).json()["claim_token"]
    handed = ana.post(f"/v1/escalations/{escalation_id}/hand-back", json={"claim_token": token})
    assert handed.status_code == 200 and handed.json()["state"] == "handed_back"
    body = json.dumps(script(billing=ANSWER, knowledge=NOTHING, account=NOTHING))
    follow_up = stack.http.post(f"/v1/conversations/{conversation_id}/messages", json={"body": body})
    turn = wait_done(follow_up.json()["turn_id"])
    assert turn["outcome"] == "resolved"  # the bot answers again


def test_the_cli_claims_shows_and_replies_once(stack: Stack, helpdesk: Helpdesk, tmp_path: Path) -> None:
    escalation_id, _ = escalate(stack)
    env = {
        **os.environ,
        "SWITCHBOARD_API_URL": stack.api,
        "SWITCHBOARD_API_KEY": stack.keys["agent"],
        "SWITCHBOARD_DESK_STATE": str(tmp_path / "desk.json"),
    }

    def desk(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "switchboard.cli", "desk", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    claimed = desk("claim", escalation_id)
    assert claimed.returncode == 0, claimed.stderr
    assert f"claimed {escalation_id}" in claimed.stdout and DRAFT in claimed.stdout  # the packet, with the draft
    state = json.loads((tmp_path / "desk.json").read_text())
    assert state[escalation_id]["claim_token"] >= 1 and (tmp_path / "desk.json").stat().st_mode & 0o077 == 0
    taken = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "desk", "claim", escalation_id],
        env={**env, "SWITCHBOARD_API_KEY": stack.keys["agent2"], "SWITCHBOARD_DESK_STATE": str(tmp_path / "b.json")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1 and "another human" in taken.stderr
    note = tmp_path / "reply.txt"
    note.write_text("Refunded today; 3 to 5 days to show.")
    sent = desk("reply", escalation_id, "--file", str(note), "--resolve")
    assert sent.returncode == 0 and "sent, resolved" in sent.stdout, sent.stderr
    (received,) = replies_for(helpdesk, escalation_id, wait_s=10)
    assert received.body["reply"] == "Refunded today; 3 to 5 days to show."
    listed = desk("list", "--status", "resolved", "--limit", "200", "--json")
    assert escalation_id in [i["id"] for i in json.loads(listed.stdout)["items"]]
    gone = desk("release", escalation_id)  # resolved: no claim is kept any more
    assert gone.returncode == 2 and "claim" in gone.stderr
