"""The HTTP API: routes only. Validation lives in the pydantic contracts, work in services.

Each route is an edge: it opens the unit of work and passes the session to the service.
Every ``/v1`` route takes an API key (``Authorization: Bearer <key>``, orchestrator/keys.py):
a helpdesk key posts and reads for its own source only, and what a key may not see is a
404, the same as what does not exist.

Errors are RFC 9457 problem documents (``application/problem+json``) whose ``detail``
says what to fix.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import desk
from orchestrator.conversations import conversation_view
from orchestrator.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from orchestrator.desk import DeskError, DeskState, NewerMessage
from orchestrator.fan_in import enqueue_delivery_soon, enqueue_helpdesk_event_soon
from orchestrator.feedback import rate
from orchestrator.helpdesks import webhook
from orchestrator.helpdesks.inbound import BadSignature, Ignored, MissingFields
from orchestrator.ingest import accept_message, accept_once, accept_ticket, conversation_source, nonces
from orchestrator.keys import Principal, principal_for, refusal_to_post
from orchestrator.retention import erase_customer
from orchestrator.tasks import enqueue_turn
from orchestrator.web_desk import mount_desk
from shared import db, metrics
from shared.celery_app import DELIVERY_QUEUE, ORCHESTRATOR_QUEUE, agent_queue
from shared.celery_app import app as celery_app
from shared.contracts import (
    Accepted,
    ClaimedOut,
    ClaimIn,
    ConversationView,
    FeedbackIn,
    FeedbackOut,
    MessageIn,
    NoteIn,
    RepliedOut,
    ReplyIn,
    Role,
    TicketIn,
    TokenIn,
)
from shared.errors import ConfigurationError, NotFound
from shared.models import Conversation
from shared.settings import Settings, get_settings, refuse_weak_secrets
from shared.workers import warm_queues

log = logging.getLogger(__name__)
T = TypeVar("T")


class BodyLimit:
    """Refuse request bodies over the limit before reading them whole (413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(self.limit, send)


class JsonOnly:
    """A request with a body must say it is JSON (415 otherwise): a browser's cross-site form
    or text/plain POST never reaches a route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The web desk's forms are urlencoded; a session's CSRF token guards them instead.
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") and not _is_desk(scope["path"]):
            content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
            media = content_type.split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                body = json.dumps(
                    _problem(
                        415,
                        "Unsupported Media Type",
                        f"Send the body as JSON with Content-Type: application/json (got {media or 'none'!r}).",
                    )
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


# What every answer says to a browser or proxy that meets it: conversations hold personal
# data (never cached), and customer text in a JSON answer is never run as a page.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
)
# The web desk's pages load their own script and style sheet, and nothing else.
DESK_PREFIX = "/desk"
DESK_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def _is_desk(path: str) -> bool:
    return path == DESK_PREFIX or path.startswith(DESK_PREFIX + "/")


class SecurityHeaders:
    """Add SECURITY_HEADERS to every answer of the API, errors and refusals included."""

    def __init__(self, app: ASGIApp, *, except_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.except_paths = except_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.except_paths):
            await self.app(scope, receive, send)
            return

        extra = DESK_SECURITY_HEADERS if _is_desk(scope["path"]) else SECURITY_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if extra is DESK_SECURITY_HEADERS and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))  # a page with a customer's data is not kept
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, send: Send) -> None:
    body = json.dumps(
        _problem(413, "Payload Too Large", f"The request body is larger than {limit} bytes. Send a shorter message.")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        _problem(status, title, detail, **extra), status_code=status, media_type="application/problem+json"
    )


def _describe(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    items = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        items.append({"field": ".".join(loc) or "body", "problem": e.get("msg", "invalid")})
    if any(e.get("type") == "json_invalid" for e in errors):
        return "The body is not valid JSON. Send a JSON object.", items
    return "; ".join(f"{i['field']}: {i['problem']}" for i in items), items


class Unauthenticated(Exception):
    """401: no key, or one that is unknown or revoked; or a source that is not configured."""

    def __init__(self, detail: str, title: str = "Unauthorized") -> None:
        super().__init__(detail)
        self.title = title


class Forbidden(Exception):
    """403: a valid key whose role may not do this."""


class BadRequest(Exception):
    """400 with a title: a header or value the route cannot take."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title = title


class InvalidBody(Exception):
    """400 (not JSON) or 422 (wrong fields) for a body a route reads raw."""

    def __init__(self, title: str, exc: ValidationError) -> None:
        self.detail, self.errors = _describe(list(exc.errors(include_url=False)))
        super().__init__(self.detail)
        self.title = title
        self.status = 400 if "JSON" in self.detail else 422


Body = TypeVar("Body", TicketIn, MessageIn)


def _parsed(model: type[Body], raw: bytes, title: str) -> Body:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidBody(title, exc) from None


# A helpdesk's id for one delivery, the same on each retry of it (its webhook delivery id).
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")


def _delivery_id(request: Request) -> str | None:
    value = request.headers.get(DELIVERY_HEADER)
    if value is not None and not _DELIVERY_ID.fullmatch(value):
        raise BadRequest(
            "Invalid delivery id",
            f"{DELIVERY_HEADER} must be 1-200 visible ASCII characters, no spaces: the helpdesk's id of this "
            "delivery, the same on every retry of it. Leave the header out if there is none.",
        )
    return value


def _signed_by(source: str, raw: bytes, request: Request, settings: Settings) -> str | None:
    """The signature a request of ``source`` must carry, checked; None if it signs nothing.
    Raises Unauthenticated for a missing, wrong or stale one."""
    config = settings.source(source)
    if not config.require_signature:
        return None
    signature = request.headers.get(SIGNATURE_HEADER)
    if not verify_signature(config.secret.get_secret_value(), request.headers.get(TIMESTAMP_HEADER), signature, raw):
        raise Unauthenticated(
            f"Sign the body with the {source!r} secret: {SIGNATURE_HEADER}: "
            f"v1=HMAC-SHA256(secret, timestamp + '.' + body), and send {TIMESTAMP_HEADER} (unix seconds, "
            "within 5 minutes of now).",
            title="Bad signature",
        )
    return signature


class TooManyRequests(Exception):
    """429: the key used up its rate limit; ``retry_after`` seconds until the window resets."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"This key may make {limit} requests; try again in {retry_after}s.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class RateLimit:
    limiter: FixedWindowRateLimiter
    item: RateLimitItem
    spelled: str

    def check(self, key_id: str) -> None:
        try:
            allowed = self.limiter.hit(self.item, key_id)
        except Exception as exc:  # the counter's store is down: serve, and say so
            log.warning("rate limit not checked (%s); serving the request", type(exc).__name__)
            return
        if not allowed:
            reset = self.limiter.get_window_stats(self.item, key_id).reset_time
            raise TooManyRequests(self.spelled, max(1, math.ceil(reset - time.time())))


def rate_limit(settings: Settings) -> RateLimit:
    try:
        item = parse_limit(settings.api_rate_limit)
    except ValueError:
        raise ConfigurationError(
            f"SWITCHBOARD_API_RATE_LIMIT={settings.api_rate_limit!r}: write it like '600/minute'"
        ) from None
    broker = settings.broker_url or ""
    if broker.startswith(("redis://", "rediss://")):
        store = broker
    elif broker.startswith("unix://"):
        store = "redis+unix://" + broker[len("unix://") :]
    else:
        store = "memory://"
    return RateLimit(FixedWindowRateLimiter(storage_from_string(store)), item, settings.api_rate_limit)


def _principal(token: str) -> Principal | None:
    with db.session_scope() as s:
        return principal_for(s, token)


async def authenticated(request: Request) -> Principal:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "Send an API key as `Authorization: Bearer <key>`; create one with "
            "`switchboard keys create --role helpdesk --source SOURCE --name NAME`."
        )
    principal = await run_in_threadpool(_principal, token.strip())
    if principal is None:
        raise Unauthenticated("That API key is unknown or revoked. Use a key from `switchboard keys list`.")
    limit: RateLimit = request.app.state.rate_limit
    await run_in_threadpool(limit.check, principal.key_id)
    return principal


# The caller of a /v1 route (the template's SessionDep pattern).
Caller = Annotated[Principal, Depends(authenticated)]


def _may_post(principal: Principal, source: str | None, settings: Settings) -> None:
    """The posting rule of orchestrator/keys.py, as the API answers it."""
    reason = refusal_to_post(principal, source, settings.sources)
    if reason == "role":
        raise Forbidden(f"An {principal.role} key cannot post messages; a helpdesk key of the source does.")
    if reason == "other_source":
        raise Forbidden(
            f"This key posts for the source {principal.source!r}, not {source!r}: "
            f"use that source's key, or set source to {principal.source!r}."
        )
    if reason == "unknown_source":
        raise Unauthenticated(
            f"The source {source!r} is not configured. Add it to SWITCHBOARD_SOURCES, "
            f'e.g. {{"{source}": {{"callback_url": "https://…", "secret": "…"}}}}.',
            title="Unknown source",
        )


# The two posting routes read their body raw (a signature covers the bytes as sent), so
# FastAPI does not see it: these describe it, and the headers a helpdesk may send.
_RAW_BODIES = (TicketIn, MessageIn)


def _body_doc(model: type[TicketIn] | type[MessageIn]) -> dict[str, Any]:
    def header(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if pattern:
            schema["pattern"] = pattern
        return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        },
        "parameters": [
            header(
                DELIVERY_HEADER,
                "the helpdesk's id of this delivery, the same on every retry: one seen before is answered "
                "with what it created, and nothing is stored again",
                f"^{_DELIVERY_ID.pattern}$",
            ),
            header(SIGNATURE_HEADER, "v1=HMAC-SHA256(secret, timestamp + '.' + body), for a source that signs"),
            header(TIMESTAMP_HEADER, "unix seconds of the signature, within 5 minutes of now"),
        ],
    }


def _openapi(api: FastAPI) -> Callable[[], dict[str, Any]]:
    def schema() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in _RAW_BODIES:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in body.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components[model.__name__] = body
            api.openapi_schema = document
        return api.openapi_schema

    return schema


RETRY_AFTER_S = 5


def service_unavailable(what: str) -> JSONResponse:
    """503 with Retry-After: nothing was stored, and the same request later will be taken."""
    response = problem(
        503,
        "Service Unavailable",
        f"{what}; nothing was stored. Send the same request again in {RETRY_AFTER_S} s "
        f"(with the same {DELIVERY_HEADER} or external_id, it is taken once).",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    refuse_weak_secrets(settings)
    unsigned = sorted(
        n
        for n, c in settings.sources.items()
        if (c.require_signature or c.callback_url) and not c.secret.get_secret_value()
    )
    if unsigned:
        # Anyone can compute an HMAC with an empty key: such a source would check nothing.
        raise ConfigurationError(
            f"SWITCHBOARD_SOURCES: {', '.join(unsigned)} require a signature or get signed replies "
            "but have no secret; give each a secret"
        )
    # In production the API does not describe itself to whoever reaches the port.
    docs = settings.environment != "production"
    api = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description="Customer messages in; replies, clarifying questions or escalations out.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    api.state.rate_limit = rate_limit(settings)
    api.openapi = _openapi(api)  # type: ignore[method-assign]

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _describe(list(exc.errors()))
        return problem(422 if "JSON" not in detail else 400, "Invalid request", detail, errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        # A database that is restarting or unreachable is "try again", not a bug: a helpdesk
        # reads 500 as a fault of ours and 503 + Retry-After as a reason to retry.
        if not db.unavailable(exc):
            raise exc
        log.warning("database unavailable: %s", type(exc).__name__)
        return service_unavailable("The database is not answering")

    api.add_exception_handler(DBAPIError, _database)
    api.add_exception_handler(SQLAlchemyTimeoutError, _database)

    @api.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not Found", str(exc))

    @api.exception_handler(Unauthenticated)
    async def _unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        response = problem(401, exc.title, str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="switchboard"'
        return response

    @api.exception_handler(InvalidBody)
    async def _invalid_body(_: Request, exc: InvalidBody) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, errors=exc.errors)

    @api.exception_handler(BadRequest)
    async def _bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return problem(400, exc.title, str(exc))

    @api.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return problem(403, "Forbidden", str(exc))

    @api.exception_handler(TooManyRequests)
    async def _too_many(_: Request, exc: TooManyRequests) -> JSONResponse:
        response = problem(429, "Too Many Requests", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @api.post("/v1/tickets", status_code=202, response_model=Accepted, openapi_extra=_body_doc(TicketIn))
    async def post_ticket(request: Request, principal: Caller) -> Any:
        _may_post(principal, None, settings)  # the role first: an agent key learns nothing of the body
        raw = await request.body()
        ticket = _parsed(TicketIn, raw, "Invalid ticket")
        _may_post(principal, ticket.source, settings)
        keys = nonces(_delivery_id(request), _signed_by(ticket.source, raw, request, settings))

        def accept(s: Session) -> Accepted:
            return accept_once(s, ticket.source, keys, lambda: accept_ticket(s, ticket, via="http"), via="http")

        accepted: Accepted = await _run(_in_unit_of_work, accept)
        if accepted.created:
            await _run(_enqueue, accepted.turn_id)
        return accepted

    @api.post(
        "/v1/conversations/{conversation_id}/messages",
        status_code=202,
        response_model=Accepted,
        openapi_extra=_body_doc(MessageIn),
    )
    async def post_message(conversation_id: str, request: Request, principal: Caller) -> Any:
        _may_post(principal, None, settings)
        raw = await request.body()
        message = _parsed(MessageIn, raw, "Invalid message")
        delivery_id = _delivery_id(request)

        def accept(s: Session) -> Accepted:
            # A follow-up is its conversation's source's: signed if that source signs.
            source = conversation_source(s, conversation_id, scope=principal.source)
            keys = nonces(delivery_id, _signed_by(source, raw, request, settings))
            return accept_once(
                s,
                source,
                keys,
                lambda: accept_message(s, conversation_id, message, via="http", source=principal.source),
                via="http",
            )

        accepted: Accepted = await _run(_in_unit_of_work, accept)
        if accepted.created:
            await _run(_enqueue, accepted.turn_id)
        return accepted

    @api.post(
        "/v1/helpdesks/{name}/webhook",
        status_code=202,
        responses={
            200: {"description": "taken and ignored (our own reply, a note, a topic Switchboard does not answer)"},
            401: {"description": "not signed (Zendesk, Intercom) or not carrying the token (Freshdesk) as configured"},
            404: {"description": "no helpdesk of that name in SWITCHBOARD_HELPDESKS"},
            422: {"description": "the payload lacks what a ticket needs; `missing` names each field"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": "the helpdesk's own webhook payload, verified its own way (docs/helpdesks.md)",
            }
        },
    )
    async def helpdesk_webhook(name: str, request: Request) -> Any:
        """A Zendesk, Freshdesk or Intercom webhook, as that helpdesk sends it. Stored, answered
        at once, and worked by a task (the customer looked up, the ticket taken)."""
        config = settings.helpdesks.get(name)
        if config is None:
            raise NotFound(f"No helpdesk {name!r}. Connect it in SWITCHBOARD_HELPDESKS (docs/helpdesks.md).")
        raw = await request.body()
        try:
            event = webhook.read(config, request.headers, raw, event=request.query_params.get("event"))
        except BadSignature as exc:
            raise Unauthenticated(str(exc), title="Bad signature") from None
        except webhook.InvalidPayload as exc:
            return problem(422, "Invalid webhook", f"{exc}: send the {config.kind} webhook's JSON as it is.")
        except MissingFields as exc:
            return problem(422, "Invalid webhook", str(exc), missing=exc.fields)
        limit: RateLimit = request.app.state.rate_limit
        await _run(limit.check, f"helpdesk:{name}")
        if isinstance(event, Ignored):
            webhook.ignored(name, event)
            return JSONResponse({"status": "ignored", "reason": event.reason}, status_code=200)
        taken: webhook.Taken = await _run(_in_unit_of_work, webhook.store, name, event)
        if taken.created:
            await _run(enqueue_helpdesk_event_soon, taken.event_id)
        return JSONResponse(
            {"status": "accepted" if taken.created else "duplicate", "event_id": taken.event_id}, status_code=202
        )

    @api.post(
        "/v1/conversations/{conversation_id}/feedback",
        response_model=FeedbackOut,
        responses={201: {"description": "the first rating of this conversation through the API"}},
    )
    async def post_feedback(conversation_id: str, body: FeedbackIn, principal: Caller) -> Any:
        """The customer's satisfaction rating (CSAT) of a conversation, for helpdesks whose own
        ratings do not reach Switchboard. Zendesk's and Intercom's come through their webhook."""
        if principal.role not in (Role.helpdesk, Role.admin):
            raise Forbidden("A rating comes from the customer's helpdesk: use its helpdesk key (or an admin key).")

        def rated(s: Session) -> FeedbackOut:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None or (principal.source is not None and conversation.source != principal.source):
                raise NotFound(f"No conversation {conversation_id!r}.")
            done = rate(s, conversation, body.score, body.comment, via="api")
            return FeedbackOut(
                conversation_id=conversation_id, score=done.score, handled_by=done.handled_by, created=done.created
            )

        out: FeedbackOut = await _run(_in_unit_of_work, rated)
        return JSONResponse(out.model_dump(), status_code=201 if out.created else 200)

    @api.get("/v1/conversations/{conversation_id}", response_model=ConversationView)
    async def get_conversation(
        conversation_id: str,
        principal: Caller,
        turns: int = Query(50, ge=1, le=200, description="how many of the newest turns, with their messages"),
        before: int | None = Query(None, ge=1, le=2**31 - 1, description="next_before of the page after: older turns"),
    ) -> Any:
        return await _run(
            _in_unit_of_work, conversation_view, conversation_id, principal, turns_limit=turns, before=before
        )

    @api.delete("/v1/customers/{source}/{customer_id}")
    async def erase(source: str, customer_id: str, principal: Caller) -> dict[str, Any]:
        """Erasure: every conversation of this customer of this source, with all its rows."""
        if principal.role is not Role.admin:
            raise Forbidden("Only an admin key may erase a customer.")
        counts = await _run(
            _in_unit_of_work, erase_customer, source=source, customer_id=customer_id, by=principal.key_id
        )
        return {"source": source, "customer_id": customer_id, "erased": counts}

    # ------------------------------------------------------------------ the desk (docs/desk.md)

    def _human(principal: Principal) -> str:
        """The actor a desk write is recorded under: a human's key (agent or admin)."""
        if principal.role not in (Role.agent, Role.admin):
            raise Forbidden(
                "The desk is for humans: use an agent or admin key "
                "(`switchboard keys create --role agent --name NAME`)."
            )
        return f"key:{principal.key_id}"

    @api.exception_handler(DeskError)
    async def _desk_conflict(_: Request, exc: DeskError) -> JSONResponse:
        extra = {"message": exc.message} if isinstance(exc, NewerMessage) else {}
        return problem(409, exc.title, str(exc), **extra)

    @api.get("/v1/escalations")
    async def list_escalations(
        principal: Caller,
        status: str = Query("queued,claimed", description="comma-separated: queued, claimed, resolved, handed_back"),
        limit: int = Query(50, ge=1, le=200),
        cursor: str | None = Query(None, description="next_cursor of the page before"),
    ) -> dict[str, Any]:
        _human(principal)
        states = [v.strip() for v in status.split(",") if v.strip()]
        unknown = [v for v in states if v not in DeskState.__members__]
        if unknown or not states:
            raise BadRequest(
                "Invalid status",
                f"status takes {', '.join(DeskState)} (comma-separated); got {', '.join(unknown) or 'nothing'}.",
            )
        page = await _run(_in_unit_of_work, desk.list_escalations, states, limit, cursor)
        return {"items": page.items, "next_cursor": page.next_cursor}

    @api.get("/v1/escalations/{escalation_id}")
    async def get_escalation(escalation_id: str, principal: Caller) -> dict[str, Any]:
        actor = _human(principal)
        return dict(await _run(_in_unit_of_work, desk.read_packet, escalation_id, actor))

    @api.post(
        "/v1/escalations/claim",
        response_model=ClaimedOut,
        responses={204: {"description": "the queue is empty"}, 409: {"description": "the named one is taken"}},
    )
    async def claim_escalation(principal: Caller, body: ClaimIn | None = None) -> Any:
        actor = _human(principal)
        named = body.escalation_id if body else None

        def claim(s: Session) -> ClaimedOut | None:
            claimed = desk.claim(s, actor, settings, named)
            if claimed is None:
                return None
            return ClaimedOut(
                escalation=desk.packet(s, claimed.escalation_id),
                claim_token=claimed.claim_token,
                lease_expires_at=claimed.lease_expires_at.isoformat(),
            )

        claimed = await _run(_in_unit_of_work, claim)
        return Response(status_code=204) if claimed is None else claimed

    @api.post("/v1/escalations/{escalation_id}/heartbeat")
    async def heartbeat_escalation(escalation_id: str, body: TokenIn, principal: Caller) -> dict[str, Any]:
        actor = _human(principal)
        until = await _run(_in_unit_of_work, desk.heartbeat, escalation_id, body.claim_token, actor, settings)
        return {"escalation_id": escalation_id, "claim_token": body.claim_token, "lease_expires_at": until.isoformat()}

    @api.post("/v1/escalations/{escalation_id}/reply", response_model=RepliedOut)
    async def reply_escalation(escalation_id: str, body: ReplyIn, principal: Caller) -> Any:
        actor = _human(principal)
        replied: desk.Replied = await _run(
            _in_unit_of_work,
            lambda s: desk.reply(
                s,
                escalation_id,
                body.claim_token,
                actor,
                body=body.body,
                seen_message_id=body.seen_message_id,
                resolve=body.resolve,
                settings=settings,
            ),
        )
        if replied.delivery_id is not None and not replied.duplicate:
            await _run(enqueue_delivery_soon, replied.delivery_id)
        return RepliedOut(
            escalation_id=replied.escalation_id,
            message_id=replied.message_id,
            delivery_id=replied.delivery_id,
            resolved=replied.resolved,
            acceptance=replied.acceptance.value,
            duplicate=replied.duplicate,
        )

    @api.post("/v1/escalations/{escalation_id}/release")
    async def release_escalation(escalation_id: str, body: TokenIn, principal: Caller) -> dict[str, Any]:
        actor = _human(principal)
        await _run(_in_unit_of_work, desk.release, escalation_id, body.claim_token, actor)
        return {"escalation_id": escalation_id, "state": DeskState.queued}

    @api.post("/v1/escalations/{escalation_id}/hand-back")
    async def hand_back_escalation(escalation_id: str, body: TokenIn, principal: Caller) -> dict[str, Any]:
        actor = _human(principal)
        await _run(_in_unit_of_work, desk.hand_back, escalation_id, body.claim_token, actor)
        return {"escalation_id": escalation_id, "state": DeskState.handed_back}

    @api.post("/v1/escalations/{escalation_id}/notes", status_code=201)
    async def note_escalation(escalation_id: str, body: NoteIn, principal: Caller) -> dict[str, Any]:
        actor = _human(principal)
        note_id = await _run(_in_unit_of_work, desk.add_note, escalation_id, body.claim_token, actor, body.body)
        return {"escalation_id": escalation_id, "note_id": note_id}

    mount_desk(api, settings)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await _run(_readiness)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics_endpoint() -> Response:
        payload, content_type = metrics.render()
        payload += metrics.targets_exposition(settings.support_targets.model_dump())
        try:
            numbers = await _run(_in_unit_of_work, desk.gauges, settings.desk_sla_warning_minutes)
            payload += metrics.desk_exposition(numbers)
        except Exception as exc:  # the process's own metrics are still worth a scrape
            log.warning("desk gauges not read: %s", type(exc).__name__)
        return Response(payload, media_type=content_type)

    api.add_middleware(JsonOnly)
    api.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Outermost, so the 413 and 415 answers carry them too; the interactive docs need scripts.
    api.add_middleware(SecurityHeaders, except_paths=("/docs", "/redoc"))
    return api


def _enqueue(turn_id: str) -> None:
    try:
        enqueue_turn(turn_id)
    except Exception as exc:  # stored and committed already: the sweeper enqueues it later
        log.warning("could not enqueue turn %s (%s); the sweeper will retry", turn_id, exc)


def _readiness() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with db.engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    if checks["database"] == "ok":
        # Ready means a ticket is answered now, not after a cold start: every queue has a
        # worker process that loaded its brain and was seen in the last seconds.
        settings = get_settings()
        wanted = [ORCHESTRATOR_QUEUE, DELIVERY_QUEUE, *(agent_queue(a) for a in settings.agents)]
        try:
            with db.session_scope() as s:
                warm = warm_queues(s)
            cold = [q for q in wanted if q not in warm]
            checks["workers"] = "ok" if not cold else f"error: no warm worker for {', '.join(cold)}"
        except Exception as exc:
            checks["workers"] = f"error: {type(exc).__name__}"
    return checks


def _in_unit_of_work(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(session, ...)`` in one transaction, committed before the route answers."""
    with db.session_scope() as s:
        return fn(s, *args, **kwargs)


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Database and broker calls are blocking: keep them off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
