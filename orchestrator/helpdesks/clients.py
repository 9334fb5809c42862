"""Zendesk, Freshdesk and Intercom out: replies, escalations, and customer lookups.

Each call is one attempt; the delivery outbox (orchestrator/delivery.py) owns the retries,
their spacing and the attempt count, as it does for signed webhooks. An attempt ends as:

- ``done``;
- ``retry`` after ``retry_in`` seconds: 429 (Zendesk's and Freshdesk's ``Retry-After``,
  Intercom's ``X-RateLimit-Reset``), 5xx, a refused connection;
- ``ambiguous``: the request may have been written (a timeout after sending). The next attempt
  first reads the ticket's latest comments and sends nothing if our reply is there already;
- ``failed``: a 4xx that a retry cannot fix (bad credentials, no such ticket).
"""

from __future__ import annotations

import base64
import email.utils
import html
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from orchestrator.helpdesks import intercom, zendesk
from orchestrator.helpdesks.inbound import html_to_text
from shared.settings import FreshdeskHelpdesk, HelpdeskConfig, IntercomHelpdesk, ZendeskHelpdesk

Result = Literal["done", "retry", "ambiguous", "failed"]


def as_html(text: str) -> str:
    """Our plain text as the HTML body Freshdesk and Intercom expect: escaped (a reply is
    customer- or model-written text, never markup), paragraphs and line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join(f"<p>{'<br>'.join(html.escape(line) for line in p.splitlines())}</p>" for p in paragraphs)


def same_text(stored: str, ours: str, *, stored_is_html: bool = False) -> bool:
    """Whether a body the helpdesk holds says what ``ours`` (plain text) said, whatever
    markup (``stored_is_html``) and whitespace the helpdesk added."""
    text = html_to_text(stored) if stored_is_html else stored
    return " ".join(text.split()) == " ".join(ours.split())


RETRY_STATUS = frozenset({408, 409, 423, 425, 429})


@dataclass(frozen=True)
class Attempt:
    result: Result
    retry_in: float | None = None
    detail: str = ""


def _retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or ``X-RateLimit-Reset``
    (a unix time, Intercom's)."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - (now or time.time()))
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - (now or time.time()))
        except ValueError:
            return None
    return None


def classify(response: httpx.Response) -> Attempt:
    status = response.status_code
    if 200 <= status < 300:
        return Attempt("done")
    if status in RETRY_STATUS or status >= 500:
        return Attempt("retry", _retry_after(response), f"HTTP {status}")
    return Attempt("failed", None, f"HTTP {status}{_error_code(response)}")


def _error_code(response: httpx.Response) -> str:
    """The API's error code, never its message: a helpdesk's error body can quote the comment
    (the customer's or our text), and this detail is logged and stored (deliveries.last_error)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    code: Any = None
    if isinstance(body, Mapping):
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], Mapping) else {}
        code = body.get("error") if isinstance(body.get("error"), str) else first.get("code")
    return f" ({code[:60]})" if isinstance(code, str) and code.replace("_", "").isalnum() else ""


class Connector:
    """One helpdesk account, over ``http`` (an httpx client of the caller's)."""

    def __init__(self, name: str, config: HelpdeskConfig, http: httpx.Client) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.base = str(config.base_url).rstrip("/")

    # ---------------------------------------------------------------- transport

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.request(
            method, self.base + path, json=body, headers=self._headers(), timeout=self.config.timeout_s
        )

    def _write(self, method: str, path: str, body: dict[str, Any]) -> Attempt:
        try:
            return classify(self._call(method, path, body))
        except httpx.ConnectError as exc:  # nothing reached the helpdesk
            return Attempt("retry", None, f"connection refused: {exc}")
        except httpx.TimeoutException as exc:  # it may have been written
            return Attempt("ambiguous", None, f"{type(exc).__name__} after sending")
        except httpx.HTTPError as exc:
            return Attempt("ambiguous", None, f"{type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- the verbs

    def reply(self, ticket_id: str, body: str, *, after_ambiguous: bool = False) -> Attempt:
        """Post ``body`` to the customer, as the configured author. After an ambiguous attempt,
        look first: a reply already on the ticket is not sent again."""
        return self._once(ticket_id, body, public=True, look=after_ambiguous, write=self._reply)

    def note(self, ticket_id: str, body: str, *, after_ambiguous: bool = False) -> Attempt:
        """A private note for the helpdesk's humans (never shown to the customer)."""
        return self._once(ticket_id, body, public=False, look=after_ambiguous, write=self._note)

    def _once(self, ticket_id: str, body: str, *, public: bool, look: bool, write: Any) -> Attempt:
        if look:
            try:
                there = self.posted(ticket_id, body, public=public)
            except httpx.HTTPStatusError as exc:
                return classify(exc.response)
            except httpx.HTTPError as exc:
                return Attempt("retry", None, f"reading the ticket first: {type(exc).__name__}")
            if there:
                return Attempt("done", None, "already on the ticket (an earlier attempt was written)")
        result: Attempt = write(ticket_id, body)
        return result

    def posted(self, ticket_id: str, body: str, *, public: bool) -> bool:
        """Whether our author's latest comments (public, or private notes) include ``body``."""
        raise NotImplementedError

    def _reply(self, ticket_id: str, body: str) -> Attempt:
        raise NotImplementedError

    def _note(self, ticket_id: str, body: str) -> Attempt:
        raise NotImplementedError

    def route(self, ticket_id: str, *, urgent: bool) -> Attempt:
        """The ticket moved to the escalation group or team and tagged ``switchboard-escalated``,
        its priority raised when ``urgent``. Idempotent: sending it twice changes nothing more."""
        raise NotImplementedError

    def customer(self, user_id: str) -> dict[str, Any]:
        """The customer's email, name, locale and time zone, from the helpdesk."""
        raise NotImplementedError


TAG = "switchboard-escalated"


class Zendesk(Connector):
    config: ZendeskHelpdesk

    def _headers(self) -> dict[str, str]:
        user = f"{self.config.email}/token:{self.config.api_token.get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}

    def _reply(self, ticket_id: str, body: str) -> Attempt:
        comment = {"body": body, "public": True, "author_id": self.config.author_id}
        return self._write("PUT", f"/api/v2/tickets/{ticket_id}.json", {"ticket": {"comment": comment}})

    def _note(self, ticket_id: str, body: str) -> Attempt:
        comment = {"body": body, "public": False, "author_id": self.config.author_id}
        return self._write("PUT", f"/api/v2/tickets/{ticket_id}.json", {"ticket": {"comment": comment}})

    def posted(self, ticket_id: str, body: str, *, public: bool) -> bool:
        response = self._call("GET", f"/api/v2/tickets/{ticket_id}/comments.json?sort_order=desc")
        response.raise_for_status()
        comments = response.json().get("comments") or []
        return any(
            str(c.get("author_id")) == str(self.config.author_id)
            and bool(c.get("public", True)) == public
            and same_text(c.get("body") or "", body)
            for c in comments[:20]
        )

    def route(self, ticket_id: str, *, urgent: bool) -> Attempt:
        ticket: dict[str, Any] = {"additional_tags": [TAG]}  # adds to the tags (``tags`` would replace them)
        if self.config.escalation_group_id is not None:
            ticket["group_id"] = self.config.escalation_group_id
        if urgent:
            ticket["priority"] = "urgent"
        return self._write("PUT", f"/api/v2/tickets/{ticket_id}.json", {"ticket": ticket})

    def customer(self, user_id: str) -> dict[str, Any]:
        response = self._call("GET", f"/api/v2/users/{user_id}.json")
        response.raise_for_status()
        return zendesk.customer_of(response.json())


class Freshdesk(Connector):
    config: FreshdeskHelpdesk

    def _headers(self) -> dict[str, str]:
        user = f"{self.config.api_key.get_secret_value()}:X"
        return {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}

    def _reply(self, ticket_id: str, body: str) -> Attempt:
        return self._write("POST", f"/api/v2/tickets/{ticket_id}/reply", {"body": as_html(body)})

    def _note(self, ticket_id: str, body: str) -> Attempt:
        return self._write("POST", f"/api/v2/tickets/{ticket_id}/notes", {"body": as_html(body), "private": True})

    def posted(self, ticket_id: str, body: str, *, public: bool) -> bool:
        # Oldest first, 30 a page by default: read to the last page (100 a page), where ours would be.
        parts: list[Any] = []
        for page in range(1, 11):
            response = self._call("GET", f"/api/v2/tickets/{ticket_id}/conversations?per_page=100&page={page}")
            response.raise_for_status()
            got = response.json() if isinstance(response.json(), list) else []
            parts += got
            if len(got) < 100:
                break
        return any(
            bool(p.get("private")) != public
            and not p.get("incoming")
            and (
                same_text(p["body_text"], body)
                if p.get("body_text")
                else same_text(p.get("body") or "", body, stored_is_html=True)
            )
            for p in parts[-20:]
        )

    def route(self, ticket_id: str, *, urgent: bool) -> Attempt:
        # Freshdesk's ``tags`` replaces the ticket's tags: send the ones it has, and ours.
        try:
            current = self._call("GET", f"/api/v2/tickets/{ticket_id}")
        except httpx.HTTPError as exc:
            return Attempt("retry", None, f"reading the ticket's tags: {type(exc).__name__}")
        if current.status_code != 200:
            return classify(current)
        tags = [t for t in current.json().get("tags") or [] if isinstance(t, str)]
        update: dict[str, Any] = {"tags": [*tags, TAG] if TAG not in tags else tags}
        if self.config.escalation_group_id is not None:
            update["group_id"] = self.config.escalation_group_id
        if urgent:
            update["priority"] = 4  # urgent
        return self._write("PUT", f"/api/v2/tickets/{ticket_id}", update)

    def customer(self, user_id: str) -> dict[str, Any]:
        response = self._call("GET", f"/api/v2/contacts/{user_id}")
        response.raise_for_status()
        contact = response.json()
        return {
            "email": contact.get("email") or None,
            "name": contact.get("name") or "",
            "locale": contact.get("language") or None,
            "timezone": None,  # Freshdesk's time zones are Rails names, not IANA
        }


class Intercom(Connector):
    config: IntercomHelpdesk

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.access_token.get_secret_value()}",
            "Intercom-Version": "2.11",
            "Accept": "application/json",
        }

    def _reply(self, ticket_id: str, body: str) -> Attempt:
        reply = {"message_type": "comment", "type": "admin", "admin_id": self.config.admin_id, "body": as_html(body)}
        return self._write("POST", f"/conversations/{ticket_id}/reply", reply)

    def _note(self, ticket_id: str, body: str) -> Attempt:
        note = {"message_type": "note", "type": "admin", "admin_id": self.config.admin_id, "body": as_html(body)}
        return self._write("POST", f"/conversations/{ticket_id}/reply", note)

    def posted(self, ticket_id: str, body: str, *, public: bool) -> bool:
        response = self._call("GET", f"/conversations/{ticket_id}")
        response.raise_for_status()
        holder = response.json().get("conversation_parts") or {}
        parts = holder.get("conversation_parts") if isinstance(holder, Mapping) else []
        return any(
            str((p.get("author") or {}).get("id")) == str(self.config.admin_id)
            and p.get("part_type") == ("comment" if public else "note")
            and same_text(p.get("body") or "", body, stored_is_html=True)
            for p in (parts or [])[-20:]
        )

    def route(self, ticket_id: str, *, urgent: bool) -> Attempt:
        """Assigned to the escalation team and tagged. Intercom's API documents no priority
        update for a conversation, so ``urgent`` is said in the note, not set."""
        if self.config.escalation_team_id is not None:
            assigned = self._write(
                "POST",
                f"/conversations/{ticket_id}/parts",
                {
                    "message_type": "assignment",
                    "type": "team",
                    "admin_id": self.config.admin_id,
                    "assignee_id": self.config.escalation_team_id,
                },
            )
            if assigned.result != "done":
                return assigned
        # A tag is named by id: POST /tags creates it, or answers the one of that name.
        try:
            tag = self._call("POST", "/tags", {"name": TAG})
        except httpx.HTTPError as exc:
            return Attempt("retry", None, f"creating the tag: {type(exc).__name__}")
        if tag.status_code != 200:
            return classify(tag)
        return self._write(
            "POST",
            f"/conversations/{ticket_id}/tags",
            {"id": str(tag.json().get("id")), "admin_id": self.config.admin_id},
        )

    def customer(self, user_id: str) -> dict[str, Any]:
        response = self._call("GET", f"/contacts/{user_id}")
        response.raise_for_status()
        return intercom.customer_of(response.json())


KINDS: dict[str, type[Connector]] = {"zendesk": Zendesk, "freshdesk": Freshdesk, "intercom": Intercom}


def connector(name: str, config: HelpdeskConfig, http: httpx.Client) -> Connector:
    return KINDS[config.kind](name, config, http)
