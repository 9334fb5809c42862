"""The web desk at /desk: humans log in, work the queue, answer customers.

Server-rendered pages (Jinja2, every value autoescaped: a customer's ``<script>`` is shown
as text) and one small script (``static/desk.js``) that keeps the claim's lease alive while
the page is open and shows a banner when the customer writes again or the claim is lost.

Security: a session cookie (HttpOnly, SameSite=Strict, Secure outside development) holds a
random token whose SHA-256 digest is the only thing stored; every POST carries the
session's CSRF token (a form field, or the X-CSRF-Token header of the script's calls), and
a missing or wrong one is refused before anything is read. Login is rate limited per email.
Every write goes through ``orchestrator.desk`` with the person as the actor, fenced by the
claim token exactly as the API's writes are.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from limits import parse as parse_limit
from starlette.concurrency import run_in_threadpool

from orchestrator import desk
from orchestrator.desk import DeskError, NewerMessage
from orchestrator.fan_in import enqueue_delivery_soon
from orchestrator.users import Person, authenticate, close_session, open_session, session_person
from shared import db
from shared.errors import NotFound
from shared.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
HERE = Path(__file__).parent
COOKIE = "switchboard_desk"
LOGIN_COOKIE = "switchboard_desk_login"  # the login form's CSRF token, before there is a session
LOGIN_LIMIT = parse_limit("10/minute")
QUEUE_PAGE = 50
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
STATIC = {
    "desk.js": ("application/javascript", (HERE / "static" / "desk.js").read_bytes()),
    "desk.css": ("text/css", (HERE / "static" / "desk.css").read_bytes()),
}
LOGIN_ERRORS = {
    "stale": "The form is out of date: try again.",
    "limit": "Too many attempts: wait a minute.",
    "wrong": "Wrong email or password.",
}
DONE = {
    "sent": "Reply sent.",
    "resolved": "Reply sent; the escalation is resolved.",
    "duplicate": "That reply was sent already; it was not sent again.",
    "released": "Released: it is back in the queue.",
    "handed_back": "Handed back: the bot answers this conversation again.",
    "noted": "Note added.",
    "empty": "The queue is empty.",
}


def _unit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with db.session_scope() as s:
        return fn(s, *args, **kwargs)


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(_unit, fn, *args, **kwargs)


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class _Form:
    def __init__(self, raw: bytes) -> None:
        self.values = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def mount_desk(api: FastAPI, settings: Settings) -> None:
    secure = settings.environment == "production"  # development runs on plain http://localhost

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/desk")

    async def person_of(request: Request) -> tuple[Person, str] | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        return await _run(session_person, token)

    async def checked(request: Request) -> tuple[Person, str, _Form] | Response:
        """The person, their CSRF token and the form, for a POST that passed the CSRF check."""
        found = await person_of(request)
        if found is None:
            return RedirectResponse("/desk/login", status_code=303)
        person, csrf = found
        form = _Form(await request.body())
        sent = form.get("csrf") or request.headers.get("x-csrf-token", "")
        if not sent or not _same(sent, csrf):
            return _page("error.html", 403, title="Forbidden", detail="The form is out of date: reload the page.")
        return person, csrf, form

    @api.get("/desk/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        media, body = STATIC[name]
        return Response(body, media_type=media, headers={"cache-control": "public, max-age=300"})

    @api.get("/desk/login", include_in_schema=False)
    async def login_page(request: Request, error: str = "") -> Response:
        token = secrets.token_urlsafe(32)
        # A code, not a text: a link cannot put words of its own on the login page.
        response = _page("login.html", csrf=token, error=LOGIN_ERRORS.get(error, ""))
        set_cookie(response, LOGIN_COOKIE, token, 600)
        return response

    @api.post("/desk/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = _Form(await request.body())
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not _same(form.get("csrf"), expected):
            return RedirectResponse("/desk/login?error=stale", 303)
        email = form.get("email").strip()
        limiter = request.app.state.rate_limit.limiter
        if not limiter.hit(LOGIN_LIMIT, "desk-login", email.lower()):
            return RedirectResponse("/desk/login?error=limit", 303)
        person = await _run(authenticate, email, form.get("password"))
        if person is None:
            return RedirectResponse("/desk/login?error=wrong", 303)
        token, _ = await _run(open_session, person, settings.desk_session_hours)
        response = RedirectResponse("/desk", status_code=303)
        set_cookie(response, COOKIE, token, int(settings.desk_session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/desk")
        return response

    @api.post("/desk/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        got = await checked(request)
        if isinstance(got, Response):
            return got
        await _run(close_session, request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/desk/login", status_code=303)
        response.delete_cookie(COOKIE, path="/desk")
        return response

    @api.get("/desk", include_in_schema=False)
    async def queue(request: Request, done: str = "", after: str | None = None) -> Response:
        found = await person_of(request)
        if found is None:
            return RedirectResponse("/desk/login", status_code=303)
        person, csrf = found
        try:
            page = await _run(desk.list_escalations, ["queued", "claimed"], QUEUE_PAGE, after)
        except NotFound:
            return RedirectResponse("/desk", status_code=303)  # that one left the queue: start again
        return _page(
            "queue.html",
            person=person,
            csrf=csrf,
            items=page.items,
            next_cursor=page.next_cursor,
            done=DONE.get(done, ""),
        )

    @api.post("/desk/claim", include_in_schema=False)
    async def claim(request: Request) -> Response:
        got = await checked(request)
        if isinstance(got, Response):
            return got
        person, _, form = got
        try:
            claimed = await _run(desk.claim, person.actor, settings, form.get("escalation_id") or None)
        except (DeskError, NotFound) as exc:
            return _page("error.html", 409, title="Not claimed", detail=str(exc), back="/desk")
        if claimed is None:
            return RedirectResponse("/desk?done=empty", status_code=303)
        return RedirectResponse(f"/desk/escalations/{claimed.escalation_id}", status_code=303)

    @api.get("/desk/escalations/{escalation_id}", include_in_schema=False)
    async def escalation(request: Request, escalation_id: str, done: str = "") -> Response:
        found = await person_of(request)
        if found is None:
            return RedirectResponse("/desk/login", status_code=303)
        person, csrf = found
        try:
            packet = await _run(desk.read_packet, escalation_id, person.actor)
        except NotFound as exc:
            return _page("error.html", 404, title="Not found", detail=str(exc), back="/desk")
        e = packet["escalation"]
        mine = e["state"] == "claimed" and e["claimed_by"] == person.actor
        return _page(
            "escalation.html",
            person=person,
            csrf=csrf,
            p=packet,
            mine=mine,
            token=packet["claim_token"] if mine else None,
            lease_s=int(settings.desk_lease_s),
            done=DONE.get(done, ""),
        )

    @api.get("/desk/escalations/{escalation_id}/status", include_in_schema=False)
    async def status(request: Request, escalation_id: str) -> Response:
        found = await person_of(request)
        if found is None:
            return JSONResponse({"detail": "log in again"}, status_code=401)
        person, _ = found
        try:
            now = await _run(desk.status, escalation_id)
        except NotFound:
            return JSONResponse({"detail": "no such escalation"}, status_code=404)
        now["mine"] = now["state"] == "claimed" and now["claimed_by"] == person.actor
        now.pop("claimed_by")
        return JSONResponse(now)

    @api.post("/desk/escalations/{escalation_id}/{action}", include_in_schema=False)
    async def act(request: Request, escalation_id: str, action: str) -> Response:
        got = await checked(request)
        if isinstance(got, Response):
            return got
        person, _, form = got
        back = f"/desk/escalations/{escalation_id}"
        try:
            token = int(form.get("claim_token") or "0")
        except ValueError:
            token = 0
        try:
            if action == "heartbeat":
                until = await _run(desk.heartbeat, escalation_id, token, person.actor, settings)
                return JSONResponse({"lease_expires_at": until.isoformat()})
            if action == "reply":
                body = form.get("body").strip()
                if not body:
                    return _page("error.html", 422, title="Empty reply", detail="Write the reply first.", back=back)
                resolve = form.get("resolve") == "1"
                replied = await _run(
                    lambda s: desk.reply(
                        s,
                        escalation_id,
                        token,
                        person.actor,
                        body=body,
                        seen_message_id=form.get("seen_message_id"),
                        resolve=resolve,
                        settings=settings,
                    )
                )
                if replied.delivery_id is not None and not replied.duplicate:
                    await run_in_threadpool(enqueue_delivery_soon, replied.delivery_id)
                done = "duplicate" if replied.duplicate else ("resolved" if replied.resolved else "sent")
                return RedirectResponse(f"/desk?done={done}" if replied.resolved else f"{back}?done={done}", 303)
            if action == "release":
                await _run(desk.release, escalation_id, token, person.actor)
                return RedirectResponse("/desk?done=released", status_code=303)
            if action == "hand-back":
                await _run(desk.hand_back, escalation_id, token, person.actor)
                return RedirectResponse("/desk?done=handed_back", status_code=303)
            if action == "notes":
                body = form.get("body").strip()
                if not body:
                    return _page("error.html", 422, title="Empty note", detail="Write the note first.", back=back)
                await _run(desk.add_note, escalation_id, token, person.actor, body)
                return RedirectResponse(f"{back}?done=noted", status_code=303)
        except NewerMessage as exc:
            if action == "heartbeat":
                return JSONResponse({"detail": str(exc)}, status_code=409)
            return _page(
                "error.html", 409, title="The customer wrote again", detail=str(exc), message=exc.message, back=back
            )
        except DeskError as exc:
            if action == "heartbeat":
                return JSONResponse({"detail": str(exc)}, status_code=409)
            return _page("error.html", 409, title="Claim lost", detail=str(exc), back="/desk")
        except NotFound as exc:
            return _page("error.html", 404, title="Not found", detail=str(exc), back="/desk")
        return Response(status_code=404)
