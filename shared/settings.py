"""One Settings class, read once at start-up and passed down.

Every field has a default that works on one machine; the README's configuration table
lists them all. Environment variables use the prefix ``SWITCHBOARD_``; nested values
(``sources``, ``agent_deadlines_s``) are JSON.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse as parse_limit
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The one list of agent names: each has a queue, a worker role and a deadline of its own.
AGENTS: tuple[str, ...] = ("billing", "knowledge", "account")


def normalise_database_url(url: str) -> str:
    """Accept the common spellings of a Postgres URL and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class SourceConfig(BaseModel):
    """A helpdesk that sends tickets: where replies go and the secret that signs them."""

    callback_url: HttpUrl | None = None
    secret: SecretStr = Field(
        default=SecretStr(""), description="HMAC-SHA256 key for outbound (and inbound) signatures"
    )
    require_signature: bool = Field(
        default=False, description="reject POST /v1/tickets from this source without a valid signature"
    )
    tenant: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="the company this source's customers belong to; sources that name the same tenant "
        "share customers, any other source's customers are out of reach. Default: the source's own name",
    )


class ToolBackend(BaseModel):
    """A company's own REST service that serves one tool instead of the sandbox."""

    url: HttpUrl
    timeout_s: float = 2.0
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="e.g. an Authorization header")
    # A 429 or 5xx (or a refused connection) is tried again, honouring Retry-After, while
    # the agent's deadline leaves room; then the tool has failed (a human takes the turn).
    max_retries: int = Field(default=3, ge=0, le=10)


class _Helpdesk(BaseModel):
    """A real helpdesk connected by its own API (docs/helpdesks.md); its name is its source."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl = Field(description="the account's API root, e.g. https://acme.zendesk.com")
    tenant: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    max_attempts: int = Field(default=6, ge=1, le=20)


class ZendeskHelpdesk(_Helpdesk):
    kind: Literal["zendesk"]
    email: str = Field(description="the agent whose API token this is (Basic email/token:api_token)")
    api_token: SecretStr
    webhook_secret: SecretStr = Field(description="the webhook's signing secret")
    author_id: int = Field(description="the Zendesk user replies are posted as; their comments are ignored")
    escalation_group_id: int | None = None


class FreshdeskHelpdesk(_Helpdesk):
    kind: Literal["freshdesk"]
    api_key: SecretStr = Field(description="Basic api_key:X")
    webhook_token: SecretStr = Field(description="the automation rule sends it as Authorization: Bearer …")
    escalation_group_id: int | None = None


class IntercomHelpdesk(_Helpdesk):
    kind: Literal["intercom"]
    access_token: SecretStr
    client_secret: SecretStr = Field(description="the app's client secret: X-Hub-Signature is keyed by it")
    admin_id: str = Field(description="the admin replies are posted as; their replies are ignored")
    escalation_team_id: str | None = None


# The secret each kind of helpdesk proves its webhooks with.
INBOUND_SECRET = {"zendesk": "webhook_secret", "freshdesk": "webhook_token", "intercom": "client_secret"}
HelpdeskConfig = Annotated[ZendeskHelpdesk | FreshdeskHelpdesk | IntercomHelpdesk, Field(discriminator="kind")]


class SupportTargets(BaseModel):
    """What a support lead holds the system to; exported as ``switchboard_support_target`` so
    the alerts of deploy/prometheus/rules.yml compare with these, not with numbers in the rules."""

    model_config = ConfigDict(extra="forbid")

    resolution_rate_min: float = Field(default=0.60, ge=0, le=1, description="resolved / answered by the bot")
    resolution_rate_max: float = Field(
        default=0.70, ge=0, le=1, description="above it, the bot may be answering what it should escalate"
    )
    cost_per_resolution_max_usd: float = Field(default=0.05, ge=0, description="model spend over resolved turns")
    csat_min: float = Field(default=4.0, ge=1, le=5, description="average satisfaction, 1-5")


class DeskSla(BaseModel):
    """How soon a human must first answer an escalation of one reason, and its priority in
    the queue (higher first among those due at the same time)."""

    model_config = ConfigDict(extra="forbid")

    first_response_minutes: float = Field(gt=0)
    priority: int = Field(default=0, ge=0, le=9)


# An action may have been taken on these (timeout, tool failure) or the customer is waiting
# on a turn that never ran: a human looks first. The rest within a working half-day.
DESK_SLA = {
    "default": DeskSla(first_response_minutes=240, priority=0),
    "human_requested": DeskSla(first_response_minutes=60, priority=1),
    "sensitive": DeskSla(first_response_minutes=60, priority=1),
    "injection": DeskSla(first_response_minutes=120, priority=1),
    "timeout": DeskSla(first_response_minutes=30, priority=2),
    "tool_failure": DeskSla(first_response_minutes=30, priority=2),
    "processing_failed": DeskSla(first_response_minutes=30, priority=2),
}


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float = 0.0


# Passwords and secrets nobody should run with: what examples and images ship.
WEAK_SECRETS = frozenset(
    {"", "change-me", "changeme", "changethis", "secret", "password", "admin", "switchboard", "guest"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", env_file=None, extra="ignore")

    # production: refuse to start with an empty or well-known secret (the deploy files set it)
    environment: Literal["development", "production"] = "development"

    # Where state and messages live. None means: start the embedded servers in data_dir.
    database_url: str | None = None
    broker_url: str | None = None
    data_dir: Path = Path(".switchboard")
    # Trained intent classifiers, keyed by their examples; unset: data_dir/cache
    cache_dir: Path | None = None
    # Connections per process: mind Postgres max_connections across prefork children and hosts.
    db_pool_size: int = 5
    db_max_overflow: int = 5

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 256 * 1024
    # Requests per API key ("N/second|minute|hour"); counted in the broker's Redis when the
    # broker is Redis (shared by every API process), else in each API process's memory.
    api_rate_limit: str = "600/minute"

    # Turn lifecycle
    agents: tuple[str, ...] = AGENTS
    agent_deadline_s: float = 3.0
    agent_deadlines_s: dict[str, float] = Field(default_factory=dict)
    # An agent's deadline runs from the moment it starts its task. A turn waits for agents
    # that have not started yet (a burst, a restarting worker, a broker that lost the task)
    # up to this long after the turn started, then merges with what it has.
    turn_timeout_s: float = Field(default=30.0, gt=0)
    max_tool_steps: int = 6
    confidence_threshold: float = 0.7
    brain: str = "local"

    # Recovery: a turn still queued after requeue_after_s is enqueued again; a running
    # turn past its deadline by deadline_grace_s is merged by the sweeper.
    requeue_after_s: float = 15.0
    deadline_grace_s: float = 2.0
    sweep_interval_s: float = 2.0
    # A turn whose start failed this many times (an error, a worker killed while starting
    # it) is escalated to a human instead of tried again; later turns of its conversation go on.
    max_turn_attempts: int = Field(default=5, ge=1)

    # A customer who writes again after this long idle starts a fresh context for the agents.
    conversation_ttl_hours: float = Field(default=24.0, gt=0)
    # Personal data: conversations whose last message is older than this are deleted, with
    # every row that belongs to them, by the orchestrator once per retention_interval_s.
    retention_days: int = Field(default=90, ge=1)
    retention_interval_s: float = 3600.0

    # Policy (POLICY.md): refunds up to this amount are automatic, within this window
    max_auto_refund: float = 100.0
    refund_window_days: int = 30
    # max_auto_refund is an amount in this currency. Other currencies need a ceiling of
    # their own, e.g. {"EUR": 90, "GBP": 80}: a currency without one is never refunded
    # automatically (100 KWD is about 325 USD).
    refund_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    max_auto_refunds: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    # Velocity limits per customer, by tool ("N/second|minute|hour|day"): a change past its
    # limit is not made and the turn goes to a human (policy), whichever backend serves it.
    velocity_limits: dict[str, str] = Field(
        default_factory=lambda: {
            "refund_payment": "3/day",
            "cancel_subscription": "2/day",
            "send_password_reset": "3/hour",
        }
    )
    # Tools served by a company's own HTTP service instead of the sandbox, by tool name
    tool_backends: dict[str, ToolBackend] = Field(default_factory=dict)
    # More tools for the agents, as "module:NAME" of a list of tools (each goes to the
    # agents it names as owners): a company's own tools, or a test's or the bench's.
    extra_tools: tuple[str, ...] = ()

    # Gradual rollout: the bot answers this share of conversations (a stable hash of the
    # conversation decides). The others run in shadow: the agents run with tools that change
    # nothing, nothing is sent, and their answer becomes a human's suggested reply.
    rollout_percent: int = Field(default=100, ge=0, le=100)

    # The desk: a human's claim on an escalation lasts this long unless renewed (the web
    # desk and the CLI renew it while they are open); a lapsed one goes back to the queue.
    desk_lease_s: float = Field(default=120.0, ge=10, le=3600)
    # First-response due time and priority by escalation reason ("default" for the rest),
    # e.g. {"default": {"first_response_minutes": 240}, "timeout": {"first_response_minutes": 30, "priority": 2}}
    desk_sla: dict[str, DeskSla] = Field(default_factory=lambda: dict(DESK_SLA))
    # A web desk login lasts this long.
    desk_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # "About to breach": less than this many minutes left before the first-response due time.
    desk_sla_warning_minutes: float = Field(default=15.0, ge=0)
    # The seed's targets, as alert thresholds (SWITCHBOARD_SUPPORT_TARGETS, JSON).
    support_targets: SupportTargets = Field(default_factory=SupportTargets)

    # Knowledge base
    kb_top_k: int = 3
    # Recommended by `switchboard kb eval` (evals/data/kb_questions.yaml, re-ranked search
    # with the sections' own questions): off-topic questions score at most 0.33, product
    # questions no article answers 0.38, and 91 of 101 answerable ones are answered from the
    # right section at 0.39 (5 from a wrong one): never guess (POLICY rule 11), so the line
    # sits above the unanswerable ones.
    kb_min_score: float = 0.39
    # Articles `switchboard run` imports at start; unset: the sandbox company's demo corpus
    kb_dir: Path | None = None

    # OpenAI-compatible brain (used when brain = "openai"; falls back to local)
    openai_base_url: str | None = None
    openai_api_key: SecretStr = SecretStr("")
    openai_router_model: str = "gpt-4o-mini"
    openai_agent_model: str = "gpt-4o"
    openai_timeout_s: float = 2.5
    openai_max_retries: int = 2
    openai_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
            "gpt-4o": ModelPrice(input=2.50, output=10.0, cached_input=1.25),
        }
    )
    openai_daily_budget_usd: float = 50.0
    # The policy the model reads as instructions; unset: the shipped copy (shared/brains/openai_policy.py)
    openai_policy_file: Path | None = None

    # Outbound replies
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    # Real helpdesks, by a name that is also their source (docs/helpdesks.md)
    helpdesks: dict[str, HelpdeskConfig] = Field(default_factory=dict)
    delivery_timeout_s: float = 5.0
    delivery_max_attempts: int = 8
    delivery_backoff_s: float = 1.0
    delivery_backoff_max_s: float = 300.0

    # Observability
    log_level: str = "INFO"
    log_json: bool = True
    # Port of this worker's /metrics (the run command gives each worker its own).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    # Workers. A prefork worker runs worker_concurrency processes. An agent that waits on a
    # model spends its run waiting on HTTP, so a threads worker runs worker_threads of them in
    # one process instead. "auto": threads for the agent roles when the brain is "openai",
    # prefork for the rest (the local brain is CPU-bound, and the orchestrator's work too).
    worker_concurrency: int = Field(default=2, ge=1)
    worker_pool: Literal["auto", "prefork", "threads"] = "auto"
    # One role's pool, over worker_pool: e.g. {"knowledge": "threads"}
    worker_pools: dict[str, Literal["prefork", "threads"]] = Field(default_factory=dict)
    worker_threads: int = Field(default=32, ge=1, le=1000)

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, url: str | None) -> str | None:
        """Normalised once, here: everything that reads the setting gets a SQLAlchemy URL."""
        return normalise_database_url(url) if url else url

    @field_validator("velocity_limits")
    @classmethod
    def _velocity_limits_parse(cls, limits: dict[str, str]) -> dict[str, str]:
        for tool, limit in limits.items():
            try:
                parse_limit(limit)
            except ValueError:
                raise ValueError(
                    f"SWITCHBOARD_VELOCITY_LIMITS[{tool}]: {limit!r} is not a limit; write it like '3/day' or '5/hour'"
                ) from None
        return limits

    @model_validator(mode="after")
    def _budget_holds_a_deadline(self) -> Settings:
        longest = max((self.deadline_for(a) for a in self.agents), default=self.agent_deadline_s)
        if self.turn_timeout_s < longest:
            raise ValueError(
                f"SWITCHBOARD_TURN_TIMEOUT_S ({self.turn_timeout_s:g}) must be at least the longest agent "
                f"deadline ({longest:g} s): a turn must be able to wait for one agent's whole run"
            )
        return self

    @model_validator(mode="after")
    def _pools_of_known_roles(self) -> Settings:
        unknown = sorted(set(self.worker_pools) - {"orchestrator", *self.agents})
        if unknown:
            raise ValueError(
                f"SWITCHBOARD_WORKER_POOLS names no worker role: {', '.join(unknown)}; "
                f"use orchestrator, {', '.join(self.agents)}"
            )
        return self

    @model_validator(mode="after")
    def _helpdesks_are_sources_of_their_own(self) -> Settings:
        for name, helpdesk in self.helpdesks.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
                raise ValueError(f"SWITCHBOARD_HELPDESKS: {name!r} is not a source name (a-z, 0-9, '_.-')")
            if name in self.sources:
                raise ValueError(f"SWITCHBOARD_HELPDESKS: {name!r} is in SWITCHBOARD_SOURCES too; use one of them")
            empty = [f for f in INBOUND_SECRET.values() if f in type(helpdesk).model_fields]
            for secret in empty:
                if not getattr(helpdesk, secret).get_secret_value().strip():
                    raise ValueError(f"SWITCHBOARD_HELPDESKS[{name}].{secret} is empty: nothing could be verified")
        return self

    def weak_secrets(self) -> list[str]:
        """The settings that hold an empty or well-known secret or password."""
        weak = [
            f"SWITCHBOARD_SOURCES[{name}].secret"
            for name, source in self.sources.items()
            if source.secret.get_secret_value().strip().lower() in WEAK_SECRETS
        ]
        for setting, url in (
            ("SWITCHBOARD_DATABASE_URL", self.database_url),
            ("SWITCHBOARD_BROKER_URL", self.broker_url),
        ):
            password = urlsplit(url).password if url else None
            if password is not None and password.lower() in WEAK_SECRETS:
                weak.append(f"the password in {setting}")
        for name, helpdesk in self.helpdesks.items():
            secret = INBOUND_SECRET[helpdesk.kind]
            if getattr(helpdesk, secret).get_secret_value().strip().lower() in WEAK_SECRETS:
                weak.append(f"SWITCHBOARD_HELPDESKS[{name}].{secret}")
        return weak

    def pool_for(self, role: str) -> Literal["prefork", "threads"]:
        """The Celery pool of the worker of ``role`` (orchestrator or an agent)."""
        if role in self.worker_pools:
            return self.worker_pools[role]
        if self.worker_pool != "auto":
            return self.worker_pool
        return "threads" if role in self.agents and self.brain == "openai" else "prefork"

    def deadline_for(self, agent: str) -> float:
        return self.agent_deadlines_s.get(agent, self.agent_deadline_s)

    def sla_for(self, reason: str) -> DeskSla:
        return self.desk_sla.get(reason) or self.desk_sla.get("default") or DESK_SLA["default"]

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name, SourceConfig())

    def tenant_of(self, source: str) -> str:
        """The company whose customers a ticket from ``source`` may act for: customer identity is
        ``(tenant, customer.id)``, and a source is its own tenant unless configured otherwise."""
        helpdesk = self.helpdesks.get(source)
        if helpdesk is not None:
            return helpdesk.tenant or source
        return self.source(source).tenant or source


def refuse_weak_secrets(settings: Settings) -> None:
    """In production, stop at start rather than run with a password anyone can guess."""
    weak = settings.weak_secrets()
    if settings.environment == "production" and weak:
        from shared.errors import ConfigurationError

        raise ConfigurationError(
            f"SWITCHBOARD_ENVIRONMENT=production and {', '.join(weak)} is empty or a well-known value: "
            "set a long random one (e.g. `openssl rand -hex 24`)"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
