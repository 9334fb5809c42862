"""Tool backends: the sandbox store by default, a company's own HTTP service by setting.

``@backend_tool(...)`` makes a tool like ``function_tool`` does and puts one adapter in
front of it: when ``settings.tool_backends`` names the tool, the call is POSTed to
that URL instead of running the sandbox implementation. The contract of that service:

    POST <url>   headers: the configured ones, plus Idempotency-Key for changing tools
    {"tool": "refund_payment", "tenant": "acme", "source": "zendesk", "customer_id": "cust_1",
     "turn_id": "turn_…", "arguments": {...}, "idempotency_key": "turn_…:refund_payment:pay_1" | null}

    2xx → the JSON body is the tool's output
    4xx → {"error": "a message for the model", "kind": "not_found" | "policy" | "invalid"}
          (kind is optional: 404 means not_found, 403/409 policy, 400/422 invalid)
    5xx, a timeout, no connection → the tool failed; critical for money tools

The service owns its side of idempotency (a repeated key returns the first result) and
its policy; the agent still only ever acts for the ticket's own customer. The customer is
``(tenant, customer_id)``: a service that holds several companies' customers must look the
id up within ``tenant`` (the company the ticket's source belongs to, SWITCHBOARD_SOURCES).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError

from shared.db import session_scope
from shared.errors import PolicyViolation, ToolError
from shared.idempotency import (
    ACTION_DONE,
    ACTION_PENDING,
    ACTION_REFUSED,
    idempotency_key,
    record_action,
    settle_action,
)
from shared.settings import ToolBackend, get_settings
from shared.tools import SideEffect, Tool, ToolArgs, ToolContext, ToolFn, function_tool

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
_KIND_BY_STATUS = {400: "invalid", 403: "policy", 404: "not_found", 409: "policy", 422: "invalid"}


def backend_tool(
    *,
    owners: tuple[str, ...],
    side_effect: SideEffect = "read",
    key: tuple[str, ...] = (),
    critical: bool | None = None,
    name: str | None = None,
    precheck: Callable[[ToolContext, Any], None] | None = None,
) -> Callable[[ToolFn], Tool]:
    """Make ``fn(ctx, args)`` a tool whose backend can be swapped by configuration.

    ``key`` names the arguments that, with the turn and the tool, identify one action (a
    refund of *this* payment): the idempotency key sent to an HTTP backend. A failure of
    the backend is critical (the turn escalates) when ``critical`` is true, which is the
    default for money tools. Policy refusals are never critical: a human decides those.
    ``precheck(ctx, args)`` runs our own policy checks before a company's service is called
    (it raises what it refuses); the sandbox applies the same rules inside its transaction.
    """
    is_critical = side_effect == "money" if critical is None else critical

    def decorate(fn: ToolFn) -> Tool:
        tool_name = name or fn.__name__
        # The registry reads the argument model from the annotations; resolve them here,
        # because the wrapper's globals are this module's, not the tool module's.
        args_model = typing.get_type_hints(fn)["args"]

        @functools.wraps(fn)
        def run(ctx: ToolContext, args: Any) -> Any:
            backend = get_settings().tool_backends.get(tool_name)
            if backend is not None:
                if precheck is not None:
                    try:
                        precheck(ctx, args)
                    except ToolError as exc:
                        # A change that cannot be checked is not made: a lookup that failed
                        # is as critical as the change it guards.
                        if exc.kind == "backend":
                            exc.critical = is_critical
                        raise
                parts = _parts(args, key)
                action = None if side_effect == "read" else idempotency_key(ctx.turn_id, tool_name, *parts)
                return call_backend(
                    backend, tool_name, ctx, args, action, critical=is_critical, object_id=":".join(parts) or None
                )
            try:
                return fn(ctx, args)
            except SQLAlchemyError as exc:  # only the store: a timeout signal or a bug must propagate as is
                log.exception("tool %s failed on the sandbox store (turn %s)", tool_name, ctx.turn_id)
                raise ToolError(
                    f"{tool_name} failed: the sandbox store did not answer ({type(exc).__name__}). "
                    "Do not retry; escalate to a human.",
                    critical=is_critical,
                    kind="backend",
                ) from exc

        run.__annotations__ = {"ctx": ToolContext, "args": args_model, "return": Any}
        # What the model reads: one paragraph, without the source's indentation.
        run.__doc__ = " ".join(inspect.cleandoc(fn.__doc__ or "").split())
        return function_tool(owners=owners, side_effect=side_effect, name=tool_name)(run)

    return decorate


def _parts(args: ToolArgs, fields: tuple[str, ...]) -> list[str]:
    # An omitted target (cancel "my subscription") leaves the key at turn + tool.
    return [str(value) for value in (getattr(args, f) for f in fields) if value is not None]


def _error_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """The ``error`` message and ``kind`` of a 4xx JSON body, if it has them."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):  # {"error": {"message": ..., "kind": ...}} is common too
        body = {**body, **error}
        error = error.get("message")
    kind = body.get("kind")
    return (str(error)[:MAX_ERROR_CHARS] if error else None), (str(kind) if kind else None)


def call_backend(
    backend: ToolBackend,
    tool: str,
    ctx: ToolContext,
    args: ToolArgs,
    action_key: str | None,
    *,
    critical: bool,
    object_id: str | None = None,
) -> Any:
    """POST one tool call to a company's service and map its answer to output or ToolError.

    A changing call is on the record before it is sent (``actions``, pending) and settled by
    the answer: done on a 2xx, refused on a 4xx; no answer leaves it pending, which the
    merge reports as "may have been done, a human must check"."""
    payload = {
        "tool": tool,
        "tenant": ctx.tenant,
        "source": ctx.source,
        "customer_id": ctx.customer_id,
        "turn_id": ctx.turn_id,
        "arguments": args.model_dump(mode="json"),
        "idempotency_key": action_key,
    }
    headers = {name: value.get_secret_value() for name, value in backend.headers.items()}
    if action_key is not None:
        headers.setdefault("Idempotency-Key", action_key)
    unsure = " It may or may not have taken effect; a human must check." if action_key is not None else ""
    if action_key is not None:
        _pending(ctx, tool, action_key, object_id, getattr(args, "amount", None), str(backend.url))
    response = _post(backend, tool, ctx, payload, headers, critical=critical, unsure=unsure)
    status = response.status_code
    if 400 <= status < 500 and status != 429:
        message, kind = _error_message(response)
        kind = kind or _KIND_BY_STATUS.get(status, "error")
        message = message or f"{tool} was refused by the service (HTTP {status}). Do not retry with the same arguments."
        if action_key is not None:
            _settle(action_key, ACTION_REFUSED, None)
        if kind == "policy":
            raise PolicyViolation(message)
        raise ToolError(message, kind=kind)
    if not 200 <= status < 300:
        busy = "is overloaded (HTTP 429)" if status == 429 else f"is down: the service answered HTTP {status}"
        raise ToolError(
            f"{tool} {busy}, also when tried again. Do not retry; escalate to a human.{unsure}",
            critical=critical,
            kind="backend",
        )
    try:
        output = response.json()
    except ValueError:
        raise ToolError(
            f"{tool} answered with something that is not JSON. Do not retry; escalate to a human.{unsure}",
            critical=critical,
            kind="backend",
        ) from None
    if action_key is not None:
        _settle(action_key, ACTION_DONE, output if isinstance(output, dict) else None)
    return output


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_BACKOFF_S = 0.2
# Time kept free after the last try, for the agent to answer before its deadline.
RESERVE_S = 0.3
MIN_CALL_S = 0.1


def _post(
    backend: ToolBackend,
    tool: str,
    ctx: ToolContext,
    payload: dict[str, Any],
    headers: dict[str, str],
    *,
    critical: bool,
    unsure: str,
) -> httpx.Response:
    """POST, trying again on a 429, a 5xx or a refused connection (with backoff, honouring
    Retry-After) while the agent's deadline leaves room. A timeout is not tried again here:
    the service may still be making the change (its Idempotency-Key makes a later try safe)."""
    attempt = 0
    while True:
        left = (ctx.deadline_at - time.time() - RESERVE_S) if ctx.deadline_at is not None else backend.timeout_s
        timeout = max(MIN_CALL_S, min(backend.timeout_s, left))
        try:
            response: httpx.Response | None = httpx.post(
                str(backend.url), json=payload, headers=headers, timeout=timeout
            )
            failure = None
        except httpx.TimeoutException:
            raise ToolError(
                f"{tool} did not answer in {timeout:g}s; do not retry, escalate to a human.{unsure}",
                critical=critical,
                kind="backend",
            ) from None
        except httpx.HTTPError as exc:
            response, failure = None, exc
        if response is not None and response.status_code not in RETRY_STATUSES:
            return response
        delay = _retry_after(response) if response is not None else None
        delay = RETRY_BACKOFF_S * 2**attempt if delay is None else delay
        room = ctx.deadline_at is None or time.time() + delay + MIN_CALL_S <= ctx.deadline_at - RESERVE_S
        if attempt >= backend.max_retries or not room:
            if response is not None:
                return response  # the caller maps the last status to the tool's failure
            raise ToolError(
                f"{tool} could not be reached ({type(failure).__name__}): the service behind it is down. "
                "Do not retry; escalate to a human.",
                critical=critical,
                kind="backend",
            ) from None
        log.warning(
            "tool %s: %s from %s, try %d again in %.2fs",
            tool,
            response.status_code if response is not None else type(failure).__name__,
            backend.url,
            attempt + 2,
            delay,
        )
        time.sleep(delay)
        attempt += 1


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number, or an HTTP date), if the answer has one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _pending(ctx: ToolContext, tool: str, key: str, object_id: str | None, amount: Any, url: str) -> None:
    """The change is on the record before the service is asked to make it (its own unit of
    work, committed): whatever happens to the call or to this worker, the merge sees it."""
    with session_scope() as session:
        record_action(
            session,
            ctx,
            tool,
            key=key,
            object_id=object_id,
            amount=amount if isinstance(amount, Decimal) else None,
            state=ACTION_PENDING,
            backend=url,
            data={"backend": url},
        )


def _settle(key: str, state: str, output: dict[str, Any] | None) -> None:
    amount, currency = None, None
    if output is not None:
        try:
            amount = Decimal(str(output["amount"])) if output.get("amount") is not None else None
        except (ArithmeticError, ValueError):
            amount = None
        currency = str(output["currency"])[:3] if output.get("currency") else None
    try:
        with session_scope() as session:
            settle_action(session, key, state, amount, currency)
    except Exception:
        # The service answered; the action stays pending on the record, which the merge
        # reports as unconfirmed: a human checks instead of trusting a missing row.
        log.exception("could not settle the action %s as %s", key, state)
