"""One Settings class, read once at start-up and passed down.

Every field has a default that works on one machine; the README's configuration table
lists them all. Environment variables use the prefix ``SWITCHBOARD_``; nested values
(``sources``, ``agent_deadlines_s``) are JSON.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

AGENTS: tuple[str, ...] = ("billing", "knowledge", "account")


class SourceConfig(BaseModel):
    """A helpdesk that sends tickets: where replies go and the secret that signs them."""

    callback_url: HttpUrl | None = None
    secret: str = Field(default="", description="HMAC-SHA256 key for outbound (and inbound) signatures")
    require_signature: bool = Field(
        default=False, description="reject POST /v1/tickets from this source without a valid signature"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", env_file=None, extra="ignore")

    # Where state and messages live. None means: start the embedded servers in data_dir.
    database_url: str | None = None
    broker_url: str | None = None
    data_dir: Path = Path(".switchboard")

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 256 * 1024

    # Turn lifecycle
    agents: tuple[str, ...] = AGENTS
    agent_deadline_s: float = 3.0
    agent_deadlines_s: dict[str, float] = Field(default_factory=dict)
    max_tool_steps: int = 6
    confidence_threshold: float = 0.7
    brain: str = "local"

    # Recovery: a turn still queued after requeue_after_s is enqueued again; a running
    # turn past its deadline by deadline_grace_s is merged by the sweeper.
    requeue_after_s: float = 15.0
    deadline_grace_s: float = 2.0
    sweep_interval_s: float = 2.0
    max_turn_attempts: int = 5

    # Outbound replies
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
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

    # Workers
    worker_concurrency: int = 2

    def deadline_for(self, agent: str) -> float:
        return self.agent_deadlines_s.get(agent, self.agent_deadline_s)

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name, SourceConfig())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
