"""The web desk in a real browser: Debian's headless Chromium, driven by Playwright.

No browser is downloaded: Playwright starts /usr/bin/chromium (the `chromium` package,
which .ci/run installs). A screenshot of the reply page is kept in artifacts/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, Helpdesk, Stack, rows, script, ticket, wait_done

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("SWITCHBOARD_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SWITCHBOARD_ARTIFACTS", ROOT / "artifacts"))
PASSWORD = "correct horse battery staple"
DRAFT = "Your refund of 25.00 USD for pay_1 is on its way."
NOTHING = [{"finish": "not_applicable"}]
# Headless, and quiet on a machine without internet (no update, sync or metrics calls).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not shutil.which(CHROMIUM):
    pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")


@pytest.fixture(scope="module")
def human(stack: Stack) -> dict[str, str]:
    """A desk user, created with the real CLI (the password on standard input)."""
    email = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "users",
            "create",
            "--email",
            email,
            "--role",
            "agent",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env={**stack.env},
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    hashes = rows("SELECT password_hash FROM users WHERE email = :e", e=email)
    assert hashes and hashes[0]["password_hash"].startswith("$argon2id$") and PASSWORD not in hashes[0]["password_hash"]
    return {"email": email, "password": PASSWORD}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def dialogs() -> list[str]:
    """What any alert(), confirm() or prompt() on the page said: a script that ran."""
    return []


@pytest.fixture
def page(browser: Any, dialogs: list[str]) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        yield page
    finally:
        context.close()


def escalate(stack: Stack, **customer: str) -> tuple[str, str]:
    unsure = [  # a cited answer below the confidence threshold: a human decides, with it as the suggestion
        {"call": "lookup_balance", "args": {}},
        {"finish": "answered", "answer": DRAFT, "confidence": 0.3, "cite": True},
    ]
    payload = ticket(script(billing=unsure, knowledge=NOTHING, account=NOTHING))
    if customer:
        payload["customer"] = {**payload["customer"], **customer}
    posted = stack.http.post("/v1/tickets", json=payload).json()
    assert wait_done(posted["turn_id"])["outcome"] == "escalated"
    (row,) = rows("SELECT id FROM escalations WHERE turn_id = :t", t=posted["turn_id"])
    return row["id"], posted["conversation_id"]


def find_in_queue(page: Any, escalation_id: str) -> Any:
    """The escalation's row, paging through the queue (other tests' escalations are in it)."""
    while True:
        row = page.locator(f"tr[data-escalation='{escalation_id}']")
        if row.count():
            return row
        more = page.locator("#more")
        assert more.count(), f"{escalation_id} is not in the queue"
        more.click()
        page.wait_for_load_state()


def log_in(page: Any, stack: Stack, who: dict[str, str]) -> None:
    page.goto(stack.api + "/desk")
    assert page.url.endswith("/desk/login")  # no session: the login page
    page.fill("input[name=email]", who["email"])
    page.fill("input[name=password]", who["password"])
    page.click("button[type=submit]")
    page.wait_for_url(stack.api + "/desk")


def test_a_human_logs_in_claims_edits_the_suggestion_and_the_customer_gets_it_once(
    stack: Stack, helpdesk: Helpdesk, human: dict[str, str], page: Any
) -> None:
    escalation_id, conversation_id = escalate(stack)
    log_in(page, stack, human)
    cookie = next(c for c in page.context.cookies() if c["name"] == "switchboard_desk")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    row = find_in_queue(page, escalation_id)
    assert "low_confidence" in row.inner_text() and "Ana Ruiz" in row.inner_text()
    row.locator("button", has_text="Claim").click()
    page.wait_for_url(f"**/desk/escalations/{escalation_id}")

    (stored,) = rows("SELECT summary FROM escalations WHERE id = :e", e=escalation_id)
    assert page.locator("#summary").inner_text() == stored["summary"]
    composer = page.locator("#reply-body")
    assert composer.input_value() == DRAFT  # pre-filled with the agents' suggestion
    edited = DRAFT + " It should reach you in 3 to 5 days."
    composer.fill(edited)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "desk-reply.png"), full_page=True)
    page.click("#send-resolve")
    page.wait_for_url("**/desk?done=resolved")
    assert "resolved" in page.locator(".done").inner_text()

    end = time.monotonic() + 15
    while time.monotonic() < end and not _sent(helpdesk, escalation_id):
        time.sleep(0.1)
    time.sleep(1.0)  # a second delivery would have come by now
    sent = _sent(helpdesk, escalation_id)
    assert len(sent) == 1 and sent[0]["reply"] == edited
    assert rows("SELECT state FROM escalations WHERE id = :e", e=escalation_id) == [{"state": "resolved"}]
    assert rows("SELECT acceptance FROM desk_replies WHERE escalation_id = :e", e=escalation_id) == [
        {"acceptance": "edited"}
    ]
    humans = rows("SELECT body FROM messages WHERE conversation_id = :c AND role = 'human'", c=conversation_id)
    assert humans == [{"body": edited}]


def test_a_script_in_a_customer_message_is_shown_as_text(
    stack: Stack, human: dict[str, str], page: Any, dialogs: list[str]
) -> None:
    escalation_id, conversation_id = escalate(stack, name="<img src=x onerror=alert(1)>")
    attack = "<script>alert('owned')</script> my refund?"
    follow_up = stack.http.post(f"/v1/conversations/{conversation_id}/messages", json={"body": attack})
    wait_done(follow_up.json()["turn_id"])
    log_in(page, stack, human)
    page.goto(f"{stack.api}/desk/escalations/{escalation_id}")
    messages = page.locator("#messages")
    assert attack in messages.inner_text()  # the text, as the customer wrote it
    assert page.locator("#messages script").count() == 0 and page.locator("img").count() == 0
    assert "<img src=x onerror=alert(1)>" in page.locator(".customer-card").inner_text()
    page.wait_for_timeout(300)
    assert dialogs == []  # nothing ran


def test_the_page_says_when_the_customer_writes_again(stack: Stack, human: dict[str, str], page: Any) -> None:
    escalation_id, conversation_id = escalate(stack)
    log_in(page, stack, human)
    find_in_queue(page, escalation_id).locator("button", has_text="Claim").click()
    page.wait_for_url(f"**/desk/escalations/{escalation_id}")
    assert page.locator("#banner").is_hidden()
    follow_up = stack.http.post(f"/v1/conversations/{conversation_id}/messages", json={"body": "are you there?"})
    wait_done(follow_up.json()["turn_id"])
    page.wait_for_selector("#banner.newer", timeout=10_000)
    assert "are you there?" in page.locator("#banner").inner_text()
    # Sending the reply written before it is refused, with the new message shown.
    page.click("#send")
    assert page.locator("h1").inner_text() == "The customer wrote again"
    assert "are you there?" in page.locator("blockquote").inner_text()
    assert rows("SELECT count(*) AS n FROM desk_replies WHERE escalation_id = :e", e=escalation_id) == [{"n": 0}]


def test_a_post_without_the_csrf_token_changes_nothing(stack: Stack, human: dict[str, str], page: Any) -> None:
    escalation_id, _ = escalate(stack)
    log_in(page, stack, human)
    refused = page.request.post(
        f"{stack.api}/desk/claim",
        form={"escalation_id": escalation_id},
        max_redirects=0,
    )
    assert refused.status == 403
    assert rows("SELECT state FROM escalations WHERE id = :e", e=escalation_id) == [{"state": "queued"}]


def _sent(helpdesk: Helpdesk, escalation_id: str) -> list[dict[str, Any]]:
    with helpdesk.lock:
        return [dict(r.body) for r in helpdesk.received if r.body.get("escalation_id") == escalation_id]


def test_a_wrong_password_logs_nobody_in(stack: Stack, human: dict[str, str], page: Any) -> None:
    page.goto(stack.api + "/desk/login")
    page.fill("input[name=email]", human["email"])
    page.fill("input[name=password]", "not the password at all")
    page.click("button[type=submit]")
    page.wait_for_url("**/desk/login?error=wrong")
    assert page.locator(".error").inner_text() == "Wrong email or password."
    assert not [c for c in page.context.cookies() if c["name"] == "switchboard_desk"]
    page.goto(stack.api + "/desk/login?error=Call+us+on+555")  # a link cannot write on the page
    assert page.locator(".error").count() == 0
