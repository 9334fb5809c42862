"""Personal data where it belongs only: none in any log, no card number, IBAN or password in any table."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from orchestrator.delivery import DELIVERY_HEADER
from shared.celery_app import create_app
from shared.settings import Settings
from tests.integration.conftest import REDIS_URL, Stack, rows, script, ticket, wait_done
from tests.support.tools import LEAKED_CARD

pytestmark = pytest.mark.integration

EMAIL = "zoe.quartermaine@example.org"
NAME = "Zoe Quartermaine"
PHONE = "+44 7700 900123"
CARD = "4242 4242 4242 4242"
BODY = f"Hi, this is {NAME}. I was charged twice on my card {CARD}; call me on {PHONE} or write to {EMAIL}."


def _customer() -> dict[str, str]:
    return {"id": "cust_pii_1", "email": EMAIL, "name": NAME}


def test_a_ticket_full_of_personal_data_leaves_none_in_any_log(stack: Stack) -> None:
    by_http = stack.client("helpdesk").post("/v1/tickets", json=ticket(BODY, customer=_customer())).json()
    human = (
        stack.client("helpdesk")
        .post("/v1/tickets", json=ticket(f"I want to talk to a human. {BODY}", customer=_customer()))
        .json()
    )
    # The broker path: a helpdesk that sends switchboard.ingest itself.
    broker_ticket = ticket(BODY, customer=_customer())
    create_app(Settings(broker_url=REDIS_URL)).send_task(
        "switchboard.ingest", args=[broker_ticket], kwargs={"api_key": stack.keys["helpdesk"]}, queue="orchestrator"
    )
    for turn_id in (by_http["turn_id"], human["turn_id"]):
        wait_done(turn_id)
    end = time.monotonic() + 20
    while not rows("SELECT 1 FROM conversations WHERE external_id = :e", e=broker_ticket["external_id"]):
        assert time.monotonic() < end, "the broker ticket was not ingested"
        time.sleep(0.2)
    time.sleep(1.0)  # the workers' last lines (task succeeded, delivery) reach their files

    assert stack.supervisor.log_dir is not None
    logs = {path.name: path.read_text(errors="replace") for path in stack.supervisor.log_dir.glob("*.log")}
    assert {"api.log", "orchestrator.log", "billing.log"} <= set(logs) and any(logs.values())
    digits = re.compile(r"\D")
    for name, text in logs.items():
        for secret in (EMAIL, NAME, PHONE, CARD, "Quartermaine"):
            assert secret not in text, f"{secret!r} in {name}"
        squeezed = digits.sub("", text)
        assert digits.sub("", CARD) not in squeezed, f"the card number in {name}"


def test_card_numbers_ibans_and_passwords_are_never_stored_and_never_served(stack: Stack) -> None:
    iban = "GB82 WEST 1234 5698 7654 32"
    body = f"My card {CARD} was charged twice. Refund to {iban}. My password is hunter2secret, if you need it."
    payload = ticket(body, subject=f"Card {CARD}", customer=_customer())
    accepted = stack.client("helpdesk").post("/v1/tickets", json=payload).json()
    wait_done(accepted["turn_id"])
    conversation = accepted["conversation_id"]
    stored = [
        *(r["body"] for r in rows("SELECT body FROM messages WHERE conversation_id = :c", c=conversation)),
        *(r["subject"] for r in rows("SELECT subject FROM conversations WHERE id = :c", c=conversation)),
        *(r["summary"] for r in rows("SELECT summary FROM escalations WHERE conversation_id = :c", c=conversation)),
    ]
    view = stack.client("helpdesk").get(f"/v1/conversations/{accepted['conversation_id']}").text
    digits = re.compile(r"\D")
    for text in [*stored, view]:
        assert CARD not in text and digits.sub("", CARD) not in digits.sub("", text)
        assert iban not in text and "hunter2secret" not in text
    (customer_message,) = (
        r["body"]
        for r in rows("SELECT body FROM messages WHERE conversation_id = :c AND role = 'customer'", c=conversation)
    )
    assert "[card ending 4242]" in customer_message and "[iban]" in customer_message
    assert EMAIL in view  # the customer's own address stays: the human needs it


def _everything_about(conversation_ids: list[str], turn_ids: list[str], needles: list[str]) -> list[str]:
    """Every row left that belongs to these conversations or names one of the needles."""
    found = []
    for table in ("messages", "turns", "escalations", "deliveries", "seen_deliveries"):
        found += [
            f"{table}: {r}" for r in rows(f"SELECT * FROM {table} WHERE conversation_id = ANY(:c)", c=conversation_ids)
        ]
    for table in ("agent_runs", "tool_calls"):
        found += [f"{table}: {r}" for r in rows(f"SELECT id FROM {table} WHERE turn_id = ANY(:t)", t=turn_ids)]
    found += [
        f"conversations: {r}" for r in rows("SELECT id FROM conversations WHERE id = ANY(:c)", c=conversation_ids)
    ]
    found += [
        f"events: {r}"
        for r in rows("SELECT id, kind FROM events WHERE conversation_id = ANY(:c) OR turn_id = ANY(:t)",
                      c=conversation_ids, t=turn_ids)
    ]  # fmt: skip
    # Every text column of every table of ours (the sandbox_* tables are the demo company's
    # own systems, not Switchboard's record of the conversation).
    columns = rows(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND data_type IN ('text', 'character varying', 'jsonb') AND table_name NOT LIKE 'sandbox%' "
        "AND table_name <> 'alembic_version'"
    )
    assert {"conversations", "messages", "events", "seen_deliveries"} <= {c["table_name"] for c in columns}
    for needle in needles:
        for c in columns:
            table, column = c["table_name"], c["column_name"]
            hits = rows(f'SELECT count(*) AS n FROM "{table}" WHERE "{column}"::text LIKE :n', n=f"%{needle}%")
            if hits[0]["n"]:
                found.append(f"{table}.{column} names {needle!r} in {hits[0]['n']} row(s)")
    return found


def test_what_agents_and_tools_return_is_stored_without_card_numbers_too(stack: Stack) -> None:
    """A backend may return a whole card number, and an agent cite it in its facts and its
    note for the human: the tool-call rows, the agent results and the escalation keep none."""
    steps = {
        "billing": [
            {"call": "card_on_file", "args": {}},
            {"finish": "answered", "answer": "Found the charge.", "confidence": 0.9, "cite": True},
        ],
        "knowledge": [{"finish": "escalate", "reason": "policy", "detail": "a human should look"}],
        "account": [{"finish": "not_applicable"}],
    }
    accepted = stack.client("helpdesk").post("/v1/tickets", json=ticket(script(**steps))).json()
    wait_done(accepted["turn_id"])
    turn = accepted["turn_id"]
    stored = [
        *(str(r) for r in rows("SELECT arguments, output, error FROM tool_calls WHERE turn_id = :t", t=turn)),
        *(str(r["result"]) for r in rows("SELECT result FROM agent_runs WHERE turn_id = :t", t=turn)),
        *(str(r) for r in rows("SELECT summary, suggested_reply FROM escalations WHERE turn_id = :t", t=turn)),
    ]
    tool_call, *runs, escalation = stored
    assert len(runs) == 3 and "[card ending 4444]" in tool_call and "[card ending 4444]" in escalation
    assert any("[card ending 4444]" in run for run in runs)  # billing's fact cites the output
    digits = re.compile(r"\D")
    for text in stored:
        assert LEAKED_CARD.replace(" ", "") not in digits.sub("", text), text


def test_erasure_leaves_no_row_that_names_the_customer_and_keeps_everyone_else(stack: Stack) -> None:
    erased = {"id": "cust_erase_me", "email": "erin.erased@example.net", "name": "Erin Erased"}
    kept = {"id": "cust_keep_me", "email": "kim.kept@example.net", "name": "Kim Kept"}
    helpdesk = stack.client("helpdesk")
    first = helpdesk.post(
        "/v1/tickets", json=ticket("Charged twice?", customer=erased), headers={DELIVERY_HEADER: uuid.uuid4().hex}
    ).json()
    second = helpdesk.post("/v1/tickets", json=ticket("I want to talk to a human", customer=erased)).json()
    other = helpdesk.post("/v1/tickets", json=ticket("Charged twice?", customer=kept)).json()
    for accepted in (first, second, other):
        wait_done(accepted["turn_id"])
    follow = helpdesk.post(f"/v1/conversations/{first['conversation_id']}/messages", json={"body": "Any news?"})
    wait_done(follow.json()["turn_id"])

    path = "/v1/customers/helpdesk/cust_erase_me"
    assert helpdesk.delete(path).status_code == 403  # only an admin erases
    response = stack.http.delete(path)
    assert response.status_code == 200, response.text
    counts = response.json()["erased"]
    assert counts["conversations"] == 2 and counts["messages"] >= 5 and counts["turns"] == 3
    assert counts["escalations"] >= 1 and counts["events"] > 0

    conversations = [first["conversation_id"], second["conversation_id"]]
    turns = [first["turn_id"], second["turn_id"], follow.json()["turn_id"]]
    assert _everything_about(conversations, turns, ["cust_erase_me", "erin.erased@example.net", "Erin Erased"]) == []
    assert stack.http.get(f"/v1/conversations/{other['conversation_id']}").status_code == 200
    (audit,) = rows("SELECT data FROM events WHERE kind = 'customer.erased' AND data->'counts'->>'turns' = '3'")
    assert "erase_me" not in str(audit["data"]) and "erin" not in str(audit["data"]).lower()
    again = stack.http.delete(path).json()["erased"]
    assert set(again.values()) == {0}
