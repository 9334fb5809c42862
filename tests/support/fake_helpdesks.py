"""Local servers that behave like Zendesk's, Freshdesk's and Intercom's APIs, as their docs say.

Each checks its own authentication (Zendesk Basic ``email/token:api_token``, Freshdesk Basic
``api_key:X``, Intercom Bearer), keeps tickets and their comments, and can be told to fail the
next requests: a 429 with the rate-limit headers each API documents (``Retry-After`` for
Zendesk and Freshdesk, ``X-RateLimit-Reset`` for Intercom), a 503, or a timeout *after* the
write (the request is applied, the answer never comes in time).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from orchestrator.helpdesks.inbound import html_to_text

Fault = Literal["429", "503", "timeout_after_write"]
Kind = Literal["zendesk", "freshdesk", "intercom"]
_ids = itertools.count(1000)


@dataclass
class Comment:
    id: int
    author_id: str
    body: str
    public: bool


@dataclass
class Ticket:
    id: str
    comments: list[Comment] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group_id: Any = None
    priority: Any = None
    assignee: Any = None


class FakeHelpdesk:
    """One account of ``kind``; ``faults`` apply to the next writes, one each."""

    def __init__(self, kind: Kind, *, credential: str, slow_s: float = 2.0):
        self.kind = kind
        self.credential = credential  # the Authorization header value it accepts
        self.slow_s = slow_s
        self.tickets: dict[str, Ticket] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.tag_ids: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHelpdesk:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ticket(self, ticket_id: str) -> Ticket:
        with self.lock:
            return self.tickets.setdefault(ticket_id, Ticket(ticket_id))

    def public_replies(self, ticket_id: str) -> list[str]:
        """What the customer reads: the text of each public comment (Freshdesk's and Intercom's are HTML)."""
        bodies = [c.body for c in self.ticket(ticket_id).comments if c.public]
        return bodies if self.kind == "zendesk" else [html_to_text(b) for b in bodies]

    # ---------------------------------------------------------------- the API

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        desk = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with desk.lock:
                    desk.requests.append((method, self.path))
                if self.headers.get("Authorization") != desk.credential:
                    self._answer(401, {"error": "Couldn't authenticate you"})
                    return
                write = method in ("POST", "PUT")
                fault = None
                if write:
                    with desk.lock:
                        fault = desk.faults.pop(0) if desk.faults else None
                if fault == "429":
                    self._answer(429, {"error": "rate limited"}, desk._rate_limit_headers())
                    return
                if fault == "503":
                    self._answer(503, {"error": "unavailable"})
                    return
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    self._answer(400, {"error": "invalid JSON"})
                    return
                if write and self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    self._answer(415, {"error": "send application/json"})
                    return
                status, answer = desk._route(method, self.path, body)
                if fault == "timeout_after_write":
                    time.sleep(desk.slow_s)  # written; the client gave up before this answer
                self._answer(status, answer)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def _rate_limit_headers(self) -> dict[str, str]:
        if self.kind == "intercom":
            reset = int(time.time()) + 1
            return {"X-RateLimit-Limit": "167", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        if self.kind == "zendesk":
            return {"Retry-After": "1", "X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0"}
        return {"Retry-After": "1", "X-RateLimit-Total": "200", "X-RateLimit-Remaining": "0"}

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = {
            "zendesk": [
                ("PUT", r"/api/v2/tickets/(\w+)\.json", self._zendesk_update),
                ("GET", r"/api/v2/tickets/(\w+)/comments\.json(\?.*)?", self._zendesk_comments),
                ("GET", r"/api/v2/users/(\w+)\.json", self._user),
            ],
            "freshdesk": [
                ("POST", r"/api/v2/tickets/(\w+)/reply", self._freshdesk_reply),
                ("POST", r"/api/v2/tickets/(\w+)/notes", self._freshdesk_note),
                ("PUT", r"/api/v2/tickets/(\w+)", self._freshdesk_update),
                ("GET", r"/api/v2/tickets/(\w+)/conversations(\?.*)?", self._freshdesk_conversations),
                ("GET", r"/api/v2/tickets/(\w+)", self._freshdesk_ticket),
                ("GET", r"/api/v2/contacts/(\w+)", self._user),
            ],
            "intercom": [
                ("POST", r"/conversations/(\w+)/reply", self._intercom_reply),
                ("POST", r"/conversations/(\w+)/parts", self._intercom_parts),
                ("POST", r"/conversations/(\w+)/tags", self._intercom_tag),
                ("POST", r"/(tags)", self._intercom_new_tag),
                ("GET", r"/conversations/(\w+)", self._intercom_conversation),
                ("GET", r"/contacts/(\w+)", self._user),
            ],
        }[self.kind]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                with self.lock:
                    return handler(match.group(1), body)
        return 404, {"error": f"no route {method} {path}"}

    def _user(self, user_id: str, _: dict[str, Any]) -> tuple[int, Any]:
        user = self.users.get(user_id)
        if user is None:
            return 404, {"error": "RecordNotFound"}
        return 200, {"user": user} if self.kind == "zendesk" else user

    # Zendesk: a comment comes only through a ticket update, nested under "ticket".
    def _zendesk_update(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        ticket_fields = body.get("ticket")
        if not isinstance(ticket_fields, dict):
            return 400, {"error": "InvalidEndpoint", "description": 'wrap the update in "ticket"'}
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        comment = ticket_fields.get("comment")
        if isinstance(comment, dict):
            if not comment.get("body"):
                return 422, {"error": "RecordInvalid", "details": {"body": "cannot be blank"}}
            public = bool(comment.get("public", True))
            ticket.comments.append(Comment(next(_ids), str(comment.get("author_id")), comment["body"], public))
        ticket.tags += [t for t in ticket_fields.get("additional_tags") or [] if t not in ticket.tags]
        ticket.group_id = ticket_fields.get("group_id", ticket.group_id)
        ticket.priority = ticket_fields.get("priority", ticket.priority)
        return 200, {"ticket": {"id": ticket_id, "tags": ticket.tags}}

    def _zendesk_comments(self, ticket_id: str, _: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        newest = sorted(ticket.comments, key=lambda c: c.id, reverse=True)
        return 200, {
            "comments": [
                {"id": c.id, "author_id": int(c.author_id), "body": c.body, "public": c.public} for c in newest
            ]
        }

    def _freshdesk_reply(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not body.get("body"):
            return 400, {"description": "Validation failed", "errors": [{"field": "body", "code": "missing_field"}]}
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        ticket.comments.append(Comment(next(_ids), "agent", body["body"], True))
        return 201, {"id": ticket.comments[-1].id, "body": body["body"], "ticket_id": int(ticket_id)}

    def _freshdesk_note(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        ticket.comments.append(Comment(next(_ids), "agent", body.get("body", ""), not body.get("private", True)))
        return 201, {"id": ticket.comments[-1].id, "private": body.get("private", True)}

    def _freshdesk_update(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        ticket.tags = list(body.get("tags", ticket.tags))
        ticket.group_id = body.get("group_id", ticket.group_id)
        ticket.priority = body.get("priority", ticket.priority)
        return 200, {"id": int(ticket_id), "tags": ticket.tags}

    def _freshdesk_ticket(self, ticket_id: str, _: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        return 200, {
            "id": int(ticket_id),
            "tags": ticket.tags,
            "group_id": ticket.group_id,
            "priority": ticket.priority,
        }

    def _freshdesk_conversations(self, ticket_id: str, _: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        return 200, [
            {"id": c.id, "body": c.body, "body_text": html_to_text(c.body), "private": not c.public, "incoming": False}
            for c in ticket.comments
        ]

    def _intercom_reply(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("type") != "admin" or not body.get("admin_id"):
            return 400, {"type": "error.list", "errors": [{"code": "parameter_invalid", "message": "admin_id"}]}
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        public = body.get("message_type") == "comment"
        ticket.comments.append(Comment(next(_ids), str(body["admin_id"]), body.get("body", ""), public))
        return 200, {"type": "conversation", "id": ticket_id}

    def _intercom_parts(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        if body.get("message_type") == "assignment":
            ticket.assignee = body.get("assignee_id")
        return 200, {"type": "conversation", "id": ticket_id}

    def _intercom_new_tag(self, _: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not body.get("name"):
            return 400, {"type": "error.list", "errors": [{"code": "parameter_not_found", "message": "name"}]}
        tag_id = self.tag_ids.setdefault(body["name"], str(next(_ids)))
        return 200, {"type": "tag", "id": tag_id, "name": body["name"]}

    def _intercom_tag(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        names = {v: k for k, v in self.tag_ids.items()}
        if body.get("id") not in names or not body.get("admin_id"):
            return 404, {"type": "error.list", "errors": [{"code": "tag_not_found", "message": "Tag not found"}]}
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        if names[body["id"]] not in ticket.tags:
            ticket.tags.append(names[body["id"]])
        return 200, {"type": "tag", "id": body["id"], "name": names[body["id"]]}

    def _intercom_conversation(self, ticket_id: str, _: dict[str, Any]) -> tuple[int, Any]:
        ticket = self.tickets.setdefault(ticket_id, Ticket(ticket_id))
        parts = [
            {
                "type": "conversation_part",
                "id": str(c.id),
                "part_type": "comment" if c.public else "note",
                "body": c.body,
                "author": {"type": "admin", "id": c.author_id},
            }
            for c in ticket.comments
        ]
        return 200, {"type": "conversation", "id": ticket_id, "conversation_parts": {"conversation_parts": parts}}


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(user.encode()).decode()
