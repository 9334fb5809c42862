"""Replies and escalations through each helpdesk's API, over real HTTP to local servers that
check auth and fail the way the APIs document (429 with their headers, 503, a timeout after
the write)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orchestrator.helpdesks.clients import Attempt, Connector, as_html, connector
from orchestrator.helpdesks.inbound import html_to_text
from shared.settings import FreshdeskHelpdesk, IntercomHelpdesk, ZendeskHelpdesk
from tests.support.fake_helpdesks import FakeHelpdesk, basic

KINDS = ("zendesk", "freshdesk", "intercom")


def config(kind: str, url: str, **extra: Any) -> Any:
    common = {"base_url": url, "timeout_s": 0.5, **extra}
    if kind == "zendesk":
        return ZendeskHelpdesk(
            kind="zendesk", email="bot@acme.test", api_token="zd-token", webhook_secret="whsec-zd-0123",
            author_id=777, escalation_group_id=42, **common,
        )  # fmt: skip
    if kind == "freshdesk":
        return FreshdeskHelpdesk(
            kind="freshdesk", api_key="fd-key", webhook_token="fd-hook-0123", escalation_group_id=7, **common
        )
    return IntercomHelpdesk(
        kind="intercom", access_token="ic-token", client_secret="ic-secret-0123", admin_id="42",
        escalation_team_id="team-9", **common,
    )  # fmt: skip


CREDENTIAL = {
    "zendesk": basic("bot@acme.test/token:zd-token"),
    "freshdesk": basic("fd-key:X"),
    "intercom": "Bearer ic-token",
}


@pytest.fixture(params=KINDS)
def desk(request: pytest.FixtureRequest) -> Iterator[tuple[FakeHelpdesk, Connector]]:
    kind = request.param
    with FakeHelpdesk(kind, credential=CREDENTIAL[kind]) as fake, httpx.Client() as http:
        yield fake, connector(f"acme-{kind}", config(kind, fake.url), http)


def test_a_reply_is_posted_as_the_configured_author_with_the_apis_own_auth(
    desk: tuple[FakeHelpdesk, Connector],
) -> None:
    fake, helpdesk = desk
    assert helpdesk.reply("35436", "Your refund is on its way.") == Attempt("done")
    assert fake.public_replies("35436") == ["Your refund is on its way."]
    author = fake.ticket("35436").comments[0].author_id
    assert author == {"zendesk": "777", "freshdesk": "agent", "intercom": "42"}[fake.kind]


def test_wrong_credentials_fail_for_good(desk: tuple[FakeHelpdesk, Connector]) -> None:
    fake, _ = desk
    with httpx.Client() as http:
        wrong = connector("x", config(fake.kind, fake.url).model_copy(update=_wrong(fake.kind)), http)
        attempt = wrong.reply("1", "hi")
    assert attempt.result == "failed" and "401" in attempt.detail
    assert fake.public_replies("1") == []


def _wrong(kind: str) -> dict[str, Any]:
    from pydantic import SecretStr

    field = {"zendesk": "api_token", "freshdesk": "api_key", "intercom": "access_token"}[kind]
    return {field: SecretStr("wrong")}


def test_a_rate_limit_is_waited_out_as_the_api_says(desk: tuple[FakeHelpdesk, Connector]) -> None:
    fake, helpdesk = desk
    fake.faults = ["429"]
    limited = helpdesk.reply("9", "hello")
    assert limited.result == "retry" and limited.retry_in is not None and 0 <= limited.retry_in <= 1.0
    fake.faults = ["503"]
    down = helpdesk.reply("9", "hello")
    assert down.result == "retry" and down.retry_in is None
    assert helpdesk.reply("9", "hello").result == "done"
    assert fake.public_replies("9") == ["hello"]  # the refused attempts wrote nothing


def test_a_timeout_after_the_write_is_checked_before_sending_again(desk: tuple[FakeHelpdesk, Connector]) -> None:
    fake, helpdesk = desk
    fake.faults = ["timeout_after_write"]
    first = helpdesk.reply("77", "We refunded pay_1.")
    assert first.result == "ambiguous"
    time.sleep(0.1)
    again = helpdesk.reply("77", "We refunded pay_1.", after_ambiguous=True)
    assert again.result == "done" and "already on the ticket" in again.detail
    assert fake.public_replies("77") == ["We refunded pay_1."]  # once
    # Had the first not been written, the look finds nothing and the reply goes out.
    assert helpdesk.reply("78", "Other", after_ambiguous=True).result == "done"
    assert fake.public_replies("78") == ["Other"]


def test_an_escalation_is_a_private_note_and_the_ticket_moves_to_the_humans(
    desk: tuple[FakeHelpdesk, Connector],
) -> None:
    fake, helpdesk = desk
    assert helpdesk.note("5", "Handoff: refund over the ceiling. Suggested: ...").result == "done"
    assert helpdesk.route("5", urgent=True).result == "done"
    ticket = fake.ticket("5")
    assert [(html_to_text(c.body)[:8], c.public) for c in ticket.comments] == [("Handoff:", False)]  # never public
    assert ticket.tags == ["switchboard-escalated"]
    if fake.kind == "intercom":
        assert ticket.assignee == "team-9"
    else:
        assert ticket.group_id == {"zendesk": 42, "freshdesk": 7}[fake.kind]
        assert ticket.priority == {"zendesk": "urgent", "freshdesk": 4}[fake.kind]


def test_the_customer_is_looked_up_in_the_helpdesk(desk: tuple[FakeHelpdesk, Connector]) -> None:
    fake, helpdesk = desk
    fake.users["20978392"] = {
        "id": 20978392,
        "email": "ana@example.com",
        "name": "Ana",
        "locale": "es",
        "language": "es",
        "browser_language": "es",
        "iana_time_zone": "Europe/Madrid",
        "location": {"timezone": "Europe/Madrid"},
    }
    found = helpdesk.customer("20978392")
    assert (found["email"], found["name"], found["locale"]) == ("ana@example.com", "Ana", "es")
    assert found["timezone"] == (None if fake.kind == "freshdesk" else "Europe/Madrid")


def test_routing_twice_changes_nothing_more_and_keeps_the_tickets_own_tags(
    desk: tuple[FakeHelpdesk, Connector],
) -> None:
    fake, helpdesk = desk
    fake.ticket("6").tags.append("vip")
    assert helpdesk.route("6", urgent=False).result == "done"
    assert helpdesk.route("6", urgent=False).result == "done"
    assert fake.ticket("6").tags == ["vip", "switchboard-escalated"]
    assert fake.ticket("6").priority is None  # not urgent: left as the helpdesk had it


def test_a_note_after_a_timeout_is_looked_for_before_it_is_written_again(
    desk: tuple[FakeHelpdesk, Connector],
) -> None:
    fake, helpdesk = desk
    fake.faults = ["timeout_after_write"]
    assert helpdesk.note("8", "Handoff: card declined twice.").result == "ambiguous"
    time.sleep(0.1)
    assert helpdesk.note("8", "Handoff: card declined twice.", after_ambiguous=True).result == "done"
    assert [(html_to_text(c.body), c.public) for c in fake.ticket("8").comments] == [
        ("Handoff: card declined twice.", False)
    ]
    # A public reply of the same text is not mistaken for the note.
    assert helpdesk.reply("8", "Handoff: card declined twice.", after_ambiguous=True).result == "done"
    assert len(fake.ticket("8").comments) == 2


def test_a_reply_is_text_never_markup_and_keeps_its_paragraphs(desk: tuple[FakeHelpdesk, Connector]) -> None:
    fake, helpdesk = desk
    written = 'Hi <b>Ana</b> & co,\nsee <a href="https://evil.test">this</a>.\n\nBest,\nSwitchboard'
    assert helpdesk.reply("12", written).result == "done"
    sent = fake.ticket("12").comments[0].body
    if fake.kind == "zendesk":  # a plain-text body: Zendesk shows it as text
        assert sent == written
    else:  # HTML bodies: escaped, so the helpdesk shows what was written, not a link
        assert sent == as_html(written)
        assert "<a href" not in sent and "&lt;a href=&quot;https://evil.test&quot;&gt;" in sent
        assert (
            sent.startswith("<p>Hi &lt;b&gt;Ana&lt;/b&gt; &amp; co,<br>") and "</p><p>Best,<br>Switchboard</p>" in sent
        )
    assert fake.public_replies("12") == [written]  # what the customer reads
    # Looking before a second send recognises it, markup and all.
    assert helpdesk.reply("12", written, after_ambiguous=True).detail.startswith("already on the ticket")


def test_a_refusal_names_the_apis_error_code_never_its_message() -> None:
    from orchestrator.helpdesks.clients import classify

    quoted = httpx.Response(422, json={"error": "RecordInvalid", "description": "Body: I'm Ana, card 4242…"})
    assert classify(quoted) == Attempt("failed", None, "HTTP 422 (RecordInvalid)")
    listed = httpx.Response(400, json={"errors": [{"code": "missing_field", "message": "ana@example.com ..."}]})
    assert classify(listed).detail == "HTTP 400 (missing_field)"
    assert classify(httpx.Response(404, text="<html>Ana's ticket</html>")).detail == "HTTP 404"
