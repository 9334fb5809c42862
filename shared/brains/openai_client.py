"""One chat completion against an OpenAI-compatible endpoint: retries, deadline, budget, cost.

The SDK's own retries are off (``max_retries=0``) because they know nothing of the turn's
deadline: here a 429, a 5xx, a 408/409, a timeout or a refused connection is retried with
exponential backoff and jitter (or the server's ``Retry-After``, when longer), and only while
the next attempt still fits before ``deadline_at`` minus the time kept for the local
fallback. Anything else (400, 401, 404: a configuration problem) is not retried. Every way
of not getting an answer raises :class:`EndpointUnavailable` with a short ``reason``, the
label of ``switchboard_brain_fallbacks_total``.

Cost: ``usage`` of each response times ``settings.openai_prices`` (USD per million tokens;
cached prompt tokens at ``cached_input``, or at ``input`` when that price is 0; a model with
no price, e.g. a self-hosted one, costs 0). The daily budget is checked against the spend of
every process on the UTC day, kept in Postgres (``SharedLedger``); when that total cannot be
read, no call is made and the local brain answers (see docs/brains.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol, cast

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from shared import metrics
from shared.db import session_scope
from shared.errors import BrainUnavailable
from shared.models import ModelSpend
from shared.settings import ModelPrice, Settings

# Proposed for shared/metrics.py; defined here until they land there (getattr picks them up then).
BRAIN_FALLBACKS: Counter = getattr(metrics, "BRAIN_FALLBACKS", None) or Counter(
    "switchboard_brain_fallbacks_total",
    "Decisions the local brain made because the model endpoint could not",
    ["reason"],
)
MODEL_CALLS: Counter = getattr(metrics, "MODEL_CALLS", None) or Counter(
    "switchboard_model_calls_total", "Chat completion attempts, by model and result", ["model", "result"]
)
MODEL_TOKENS: Counter = getattr(metrics, "MODEL_TOKENS", None) or Counter(
    "switchboard_model_tokens_total", "Tokens reported by the model endpoint, by model and kind", ["model", "kind"]
)
MODEL_COST: Counter = getattr(metrics, "MODEL_COST", None) or Counter(
    "switchboard_model_cost_usd_total", "Model spend in USD from usage and the price table", ["model"]
)

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429})
# Reasons that say the endpoint itself is in trouble (not our budget, request or deadline).
OUTAGE = frozenset({"timeout", "unreachable", "server_error", "rate_limited"})
NO_KEY = "no-key"  # vLLM, Ollama and llama.cpp without --api-key accept any bearer token


class EndpointUnavailable(BrainUnavailable):
    """No answer from the endpoint for this decision; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.25
    cap_s: float = 2.0
    # Kept free before the deadline so the local brain can still answer in time.
    reserve_s: float = 0.3
    # A call with less time than this left is not worth starting.
    min_call_s: float = 0.3

    def delay(self, attempt: int, retry_after: float | None) -> float:
        # "equal jitter": grows like 2**attempt, yet two workers that failed together do not
        # retry together.
        step = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return max(retry_after or 0.0, step / 2 + random.uniform(0, step / 2))


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cost += other.cost
        self.calls += other.calls


def price_of(usage: Usage, price: ModelPrice | None) -> float:
    if price is None:
        return 0.0
    cached_price = price.cached_input or price.input
    fresh = max(0, usage.prompt_tokens - usage.cached_tokens)
    return (fresh * price.input + usage.cached_tokens * cached_price + usage.completion_tokens * price.output) / 1e6


class Spend(Protocol):
    """Where today's model spend is kept: ``spent_today`` is checked before each call."""

    def add(self, cost: float) -> None: ...

    def spent_today(self) -> float: ...


class SpendUnknown(Exception):
    """Today's spend could not be read, so the budget cannot be checked."""


@dataclass
class Ledger:
    """Spend per UTC day, in this process only (a test, a single-process tool)."""

    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    spent: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, cost: float) -> None:
        with self._lock:
            self._roll()
            self.spent += cost

    def spent_today(self) -> float:
        with self._lock:
            self._roll()
            return self.spent

    def _roll(self) -> None:
        now = datetime.now(UTC).date()
        if now != self.today:
            self.today, self.spent = now, 0.0


class SharedLedger:
    """Spend per UTC day summed over every process, in Postgres (``model_spend``).

    With a budget per process, N worker processes could spend N times the budget. Here each
    call's cost is added to the day's row (one upsert), and the budget is checked against
    that row. A cost that cannot be written (the database blinked) is kept and written with
    the next one, and counted meanwhile; a spend that cannot be read raises ``SpendUnknown``,
    so no call is made that the budget might not allow.
    """

    def __init__(self) -> None:
        self._unwritten: dict[date, float] = {}
        self._lock = threading.Lock()

    def add(self, cost: float) -> None:
        if cost <= 0:
            return
        today = datetime.now(UTC).date()
        with self._lock:
            owed = dict(self._unwritten)
            self._unwritten.clear()
        owed[today] = owed.get(today, 0.0) + cost
        try:
            with session_scope() as s:
                for day, amount in owed.items():
                    row = {"day": day, "spent_usd": Decimal(repr(amount)), "calls": 1}
                    s.execute(
                        pg_insert(ModelSpend)
                        .values(row)
                        .on_conflict_do_update(
                            index_elements=[ModelSpend.day],
                            set_={
                                "spent_usd": ModelSpend.spent_usd + Decimal(repr(amount)),
                                "calls": ModelSpend.calls + 1,
                                "updated_at": func.now(),
                            },
                        )
                    )
        except SQLAlchemyError as exc:
            with self._lock:
                for day, amount in owed.items():
                    self._unwritten[day] = self._unwritten.get(day, 0.0) + amount
            log.warning("model spend not recorded yet (%s); kept for the next call", type(exc).__name__)

    def spent_today(self) -> float:
        today = datetime.now(UTC).date()
        try:
            with session_scope() as s:
                stored = s.execute(select(ModelSpend.spent_usd).where(ModelSpend.day == today)).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise SpendUnknown(f"today's model spend could not be read ({type(exc).__name__})") from None
        with self._lock:
            return float(stored or 0) + self._unwritten.get(today, 0.0)


@dataclass
class Circuit:
    """After ``after`` decisions in a row found the endpoint failing, skip it for ``open_s``.

    Without it every turn of an outage would spend its retries (up to the deadline) before
    falling back; with it the local brain answers at once until the cool-down ends, then one
    call tries the endpoint again and a failure opens the circuit for another ``open_s``.
    """

    after: int = 3
    open_s: float = 30.0
    failures: int = 0
    open_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self) -> None:
        with self._lock:
            wait = self.open_until - time.time()
            if wait > 0:
                raise EndpointUnavailable(
                    "circuit_open", f"{self.failures} failed decisions in a row; next try in {wait:.0f}s"
                )

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.after:
                self.open_until = time.time() + self.open_s

    def succeeded(self) -> None:
        with self._lock:
            self.failures, self.open_until = 0, 0.0


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff
    return None


class ModelClient:
    def __init__(
        self,
        settings: Settings,
        *,
        backoff: Backoff | None = None,
        ledger: Spend | None = None,
        circuit: Circuit | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.backoff = backoff or Backoff()
        self.ledger: Spend = ledger or SharedLedger()
        self.circuit = circuit or Circuit()
        self.sleep = sleep
        self.client = OpenAI(
            base_url=settings.openai_base_url or "https://api.openai.com/v1",
            api_key=settings.openai_api_key.get_secret_value() or NO_KEY,
            timeout=settings.openai_timeout_s,
            max_retries=0,
        )

    def complete(
        self, model: str, messages: Iterable[dict[str, Any]], *, deadline_at: float, **params: Any
    ) -> tuple[ChatCompletion, Usage]:
        """One completion, retried within the deadline. Raises EndpointUnavailable."""
        self.circuit.check()
        try:
            answer = self._complete(model, list(messages), deadline_at, params)
        except EndpointUnavailable as exc:
            if exc.reason in OUTAGE:
                self.circuit.failed()
            raise
        self.circuit.succeeded()
        return answer

    def _complete(
        self, model: str, messages: list[dict[str, Any]], deadline_at: float, params: dict[str, Any]
    ) -> tuple[ChatCompletion, Usage]:
        attempt = 0
        while True:
            budget = self.settings.openai_daily_budget_usd
            try:
                spent = self.ledger.spent_today()
            except SpendUnknown as exc:
                raise EndpointUnavailable("budget_unknown", str(exc)) from None
            if spent >= budget:
                raise EndpointUnavailable("over_budget", f"spent {spent:.4f} of {budget:.2f} USD today")
            left = deadline_at - time.time() - self.backoff.reserve_s
            if left < self.backoff.min_call_s:
                raise EndpointUnavailable("deadline", f"{max(0.0, left):.2f}s left before the deadline")
            attempt += 1
            try:
                response = self.client.chat.completions.create(
                    model=model,
                    messages=cast(Any, messages),
                    timeout=min(self.settings.openai_timeout_s, left),
                    **params,
                )
            except openai.APIStatusError as exc:
                status = exc.status_code
                reason = "rate_limited" if status == 429 else "server_error"
                MODEL_CALLS.labels(model, str(status)).inc()
                if status < 500 and status not in RETRY_STATUS:
                    raise EndpointUnavailable("rejected", f"HTTP {status} from {model}: {_message(exc)}") from None
                retry_after = _retry_after(exc.response)
            except openai.APITimeoutError:
                reason, retry_after = "timeout", None
                MODEL_CALLS.labels(model, reason).inc()
            except openai.APIConnectionError:
                reason, retry_after = "unreachable", None
                MODEL_CALLS.labels(model, reason).inc()
            except openai.OpenAIError as exc:  # a body the SDK cannot read: not worth a retry
                MODEL_CALLS.labels(model, "bad_response").inc()
                raise EndpointUnavailable("bad_response", f"{type(exc).__name__}: {exc}") from None
            else:
                MODEL_CALLS.labels(model, "ok").inc()
                return response, self._account(model, response)
            if attempt > self.settings.openai_max_retries:
                raise EndpointUnavailable(reason, f"{model}: gave up after {attempt} attempts")
            delay = self.backoff.delay(attempt, retry_after)
            if time.time() + delay + self.backoff.min_call_s > deadline_at - self.backoff.reserve_s:
                raise EndpointUnavailable(
                    reason, f"{model}: attempt {attempt} failed; a retry would not fit the deadline"
                )
            self.sleep(delay)

    def _account(self, model: str, response: ChatCompletion) -> Usage:
        usage = Usage(calls=1)
        if response.usage is not None:
            details = response.usage.prompt_tokens_details
            usage.prompt_tokens = response.usage.prompt_tokens
            usage.completion_tokens = response.usage.completion_tokens
            usage.cached_tokens = (details.cached_tokens or 0) if details else 0
        usage.cost = price_of(usage, self.settings.openai_prices.get(model))
        self.ledger.add(usage.cost)
        MODEL_TOKENS.labels(model, "prompt").inc(usage.prompt_tokens)
        MODEL_TOKENS.labels(model, "cached").inc(usage.cached_tokens)
        MODEL_TOKENS.labels(model, "completion").inc(usage.completion_tokens)
        MODEL_COST.labels(model).inc(usage.cost)
        return usage


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc)[:300]
