"""Pydantic models that cross a queue or the HTTP boundary: the wire format.

Anything here is versioned by being additive: new fields get defaults, so a message
queued by an older process is still read by a newer one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # Postgres cannot store U+0000 in text or JSONB: refuse it here, as the caller's mistake.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character (U+0000); remove it")
        return value


_TIMEZONES = frozenset(available_timezones())


def _iana_timezone(name: str) -> str:
    if name not in _TIMEZONES:
        raise ValueError(f"{name!r} is not an IANA time zone; use one like 'Europe/Madrid' or 'UTC'")
    return name


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_iana_timezone)]
# BCP 47 as helpdesks send it: "en", "pt-BR", "zh_Hant_TW"
Locale = Annotated[str, StringConstraints(max_length=32, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")]


# --------------------------------------------------------------------------- ingest


class Customer(Strict):
    id: ShortText
    email: EmailStr | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)] = ""
    timezone: TimeZone | None = None
    locale: Locale | None = None


class TicketIn(Strict):
    """A new ticket from a helpdesk (POST /v1/tickets or the task switchboard.ingest)."""

    source: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = Field(
        description="the helpdesk that sends the ticket, e.g. 'zendesk'; lower-case letters, digits, '_.-'"
    )
    external_id: ShortText = Field(description="the helpdesk's own ticket id; (source, external_id) is unique")
    channel: Literal["email", "chat", "web", "phone", "api", "social"] = "email"
    customer: Customer
    subject: Annotated[str, StringConstraints(strip_whitespace=True, max_length=512)] = ""
    body: Body


class MessageIn(Strict):
    """A follow-up customer message on an existing conversation."""

    body: Body
    external_id: ShortText | None = Field(
        default=None, description="the helpdesk's id for this message; a retry with the same id is a no-op"
    )


class Accepted(BaseModel):
    conversation_id: str
    turn_id: str
    message_id: str
    created: bool = Field(description="false when this (source, external_id) was already accepted")


# --------------------------------------------------------------------------- the desk

# A Postgres bigint: a larger number is not a token the database could hold (422, not 500).
ClaimToken = Annotated[int, Field(ge=1, le=2**63 - 1, description="the claim_token the claim returned")]


class ClaimIn(Strict):
    escalation_id: ShortText | None = Field(default=None, description="claim this one; else the next in the queue")


class ClaimedOut(BaseModel):
    escalation: dict[str, Any] = Field(description="the handoff packet of the claimed escalation")
    claim_token: int
    lease_expires_at: str


class TokenIn(Strict):
    claim_token: ClaimToken


class ReplyIn(Strict):
    claim_token: ClaimToken
    body: Body = Field(description="the reply to send to the customer")
    seen_message_id: ShortText = Field(
        description="the newest customer message the human read (the packet's latest_customer_message_id)"
    )
    resolve: bool = Field(default=False, description="resolve the escalation with this reply")


class FeedbackIn(Strict):
    score: int = Field(ge=1, le=5, description="the customer's satisfaction, 1 (very unhappy) to 5 (very happy)")
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = Field(
        default=None, description="what the customer said with it (stored redacted)"
    )


class FeedbackOut(BaseModel):
    conversation_id: str
    score: int
    handled_by: str = Field(description="bot: the bot answered alone; human: escalated or answered by a human")
    created: bool = Field(description="false when this replaced an earlier rating given through the API")


class NoteIn(Strict):
    claim_token: ClaimToken
    body: Body = Field(description="a private note for the humans; never sent to the customer")


class RepliedOut(BaseModel):
    escalation_id: str
    message_id: str
    delivery_id: str | None
    resolved: bool
    acceptance: str = Field(description="the suggested reply was sent unchanged, edited, discarded, or none")
    duplicate: bool = Field(description="true when this reply was sent before: nothing new was sent")


# --------------------------------------------------------------------------- states
# The vocabulary of the turn and delivery state machines (celery's states.py, in one place).
# The tables keep string columns; these are the only values written to them.


class TurnState(StrEnum):
    """queued --start--> running --merge--> done"""

    queued = "queued"
    running = "running"
    done = "done"


class Outcome(StrEnum):
    resolved = "resolved"
    clarify = "clarify"
    escalated = "escalated"
    held = "held"  # the conversation is with a human: no agent ran and the bot said nothing


class MergeTrigger(StrEnum):
    """Who ran a turn's merge."""

    all_in = "all_in"  # the agent whose result completed the set
    deadline = "deadline"  # the orchestrator's clock
    sweeper = "sweeper"  # recovery of a turn whose orchestrator died
    guardrail = "guardrail"  # decided before fan-out: no agent ran
    gave_up = "gave_up"  # its start failed max_turn_attempts times: escalated, no agent ran
    held = "held"  # the conversation is with a human: done at once, no agent, no reply


class DeliveryState(StrEnum):
    """pending --claim--> sending --> delivered | failed | cancelled, or back to pending to retry
    (cancelled: a bot reply a human's answer in the helpdesk came before)"""

    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


class Role(StrEnum):
    """What an API key may do (README, security model)."""

    helpdesk = "helpdesk"  # one source: its tickets, follow-ups and conversations
    agent = "agent"  # a human support agent: the escalation desk and the conversations behind it
    admin = "admin"  # keys, erasure, retention, everything


# --------------------------------------------------------------------------- agents


class AgentStatus(StrEnum):
    answered = "answered"
    needs_info = "needs_info"
    escalate = "escalate"
    not_applicable = "not_applicable"
    failed = "failed"
    timed_out = "timed_out"


class EscalationReason(StrEnum):
    human_requested = "human_requested"
    policy = "policy"
    low_confidence = "low_confidence"
    injection = "injection"
    tool_failure = "tool_failure"
    timeout = "timeout"
    loop = "loop"
    sensitive = "sensitive"
    processing_failed = "processing_failed"  # the turn could not be started in max_turn_attempts
    shadow = "shadow"  # outside rollout_percent: the agents' answer is a human's suggestion, nothing was sent


class WindowMessage(BaseModel):
    role: Literal["customer", "assistant", "human", "summary"]
    body: str


class ReadingPart(BaseModel):
    """One request of a message that asks several: where it starts and what it asks."""

    text: str
    start: int
    intent: str
    confidence: float
    entities: dict[str, Any] = Field(default_factory=dict)


class MessageReading(BaseModel):
    """What the local brain read in the turn's message, read once by the orchestrator and sent
    to every agent so none of them embeds the message again. ``reader`` names the intent
    engine that read it (its examples and model): an agent with another one reads the message
    itself."""

    reader: str
    intent: str
    confidence: float
    entities: dict[str, Any] = Field(default_factory=dict)
    carried_over: bool = False
    parts: list[ReadingPart] = Field(default_factory=list)


class AgentTask(BaseModel):
    """What an agent is asked to do for one turn."""

    turn_id: str
    conversation_id: str
    agent: str
    # The customer, source and tenant a tool acts for are set from the turn's own row when
    # the task is admitted (orchestrator.fan_in.admit_agent_task): what a message says is
    # never trusted. Identity is (tenant, customer.id).
    source: str = Field(default="", description="the helpdesk the conversation came in through")
    tenant: str = Field(default="", description="the company the customer belongs to")
    customer: Customer
    window: list[WindowMessage] = Field(description="the conversation as the agent may see it, oldest first")
    deadline_at: float = Field(
        description="unix time by which the result must be recorded: set when the agent starts, from its own deadline"
    )
    published_at: float = Field(description="unix time the task was put on the queue")
    max_steps: int = 6
    shadow: bool = Field(
        default=False, description="shadow mode (set from the turn's row): tools that change anything refuse"
    )
    reading: MessageReading | None = Field(
        default=None, description="the message as the orchestrator's local brain read it, when it did"
    )


class ToolCallRecord(BaseModel):
    call_id: str
    tool: str
    arguments: dict[str, Any]
    output: Any = None
    error: str | None = None
    critical: bool = Field(default=False, description="a failure the agent must not answer past")
    error_kind: str | None = Field(
        default=None, description="invalid | not_found | policy | backend | shadow (not run: shadow mode) | error"
    )
    duration_ms: float = 0.0


class Fact(BaseModel):
    """Something the agent learned; ``call_id`` names the tool call that backs it."""

    statement: str
    call_id: str


class Timings(BaseModel):
    queue_wait_ms: float = 0.0
    run_ms: float = 0.0


class AgentResult(BaseModel):
    turn_id: str
    agent: str
    status: AgentStatus
    answer: str | None = Field(default=None, description="draft reply, or the clarifying question")
    facts: list[Fact] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list, description="call_ids of tool calls that changed something")
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    escalation_reason: EscalationReason | None = None
    customer_note: str | None = Field(
        default=None, description="when escalating: what to tell the customer meanwhile (an acknowledgement)"
    )
    detail: str | None = Field(default=None, description="why, for a human reading the turn")
    part_start: int | None = Field(
        default=None,
        ge=0,
        description="where the part of the customer's message this result answers starts, when the message "
        "asks several things; the merge answers the parts in that order",
    )
    tokens: int = 0
    cost: float = 0.0
    brain: str = ""
    timings: Timings = Field(default_factory=Timings)

    @model_validator(mode="after")
    def _evidence_exists(self) -> AgentResult:
        # A fact or an action that no tool call of this run backs is a claim without
        # evidence: refuse it at the boundary rather than let it reach a customer.
        known = {c.call_id for c in self.tool_calls if c.error is None}
        missing = [f.call_id for f in self.facts if f.call_id not in known]
        missing += [a for a in self.actions if a not in known]
        if missing:
            raise ValueError(f"facts/actions cite tool calls that did not succeed: {missing}")
        if self.status is AgentStatus.escalate and self.escalation_reason is None:
            raise ValueError("an escalating result needs an escalation_reason")
        return self


# --------------------------------------------------------------------------- views


class TurnView(BaseModel):
    id: str
    message_id: str
    state: str
    outcome: str | None
    reply: str | None
    escalation_reason: str | None
    merge_trigger: str | None
    agents: list[dict[str, Any]]
    created_at: str
    started_at: str | None
    finished_at: str | None
    timings_ms: dict[str, float | None]


class ConversationView(BaseModel):
    id: str
    source: str
    external_id: str
    channel: str
    subject: str
    customer: dict[str, Any]
    messages: list[dict[str, Any]]
    turns: list[TurnView]
    next_before: int | None = Field(
        default=None, description="older turns exist: ask again with before=this for the page before"
    )
