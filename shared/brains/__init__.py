"""The brain contract: what fills an agent's tool loop.

A brain looks at the agent's view of the turn (the conversation window, its tools, the
tool calls made so far) and decides the next step: call a tool, or finish with a result.
Two providers implement it in the product (``local`` and ``openai``); tests plug in a
scripted one by import path (``SWITCHBOARD_BRAIN=package.module:Class``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared.contracts import AgentStatus, AgentTask, EscalationReason, Fact, ToolCallRecord
from shared.settings import Settings
from shared.tools import Tool


@dataclass(frozen=True)
class AgentProfile:
    """What a brain knows about an agent besides its tools: intents and playbooks.

    Both brains read the same profile: the local brain executes the playbooks, the OpenAI
    brain receives them (and POLICY) as instructions.
    """

    name: str
    intents: Mapping[str, list[str]]
    playbooks_file: Path
    pickers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    predicates: Mapping[str, Callable[..., bool]] = field(default_factory=dict)
    instructions: str = ""


@dataclass(frozen=True)
class AgentView:
    task: AgentTask
    tools: list[Tool]
    history: list[ToolCallRecord]


@dataclass(frozen=True)
class CallTool:
    tool: str
    arguments: dict[str, Any]
    # For a message that asks several things: where the part this call serves starts, and
    # the result of the parts already done (told to the customer if this call must wait).
    part_start: int | None = None
    done: Finish | None = None


@dataclass(frozen=True)
class Finish:
    status: AgentStatus
    answer: str | None = None
    confidence: float = 0.0
    facts: list[Fact] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    escalation_reason: EscalationReason | None = None
    detail: str | None = None
    customer_note: str | None = None
    tokens: int = 0
    cost: float = 0.0
    # The brain that actually decided, when not the configured one ("openai→local" on a fallback).
    brain: str | None = None
    # Where in the customer's message the part this answers starts, when the message asks
    # several things: the merge answers the parts in the customer's order.
    part_start: int | None = None


Decision = CallTool | Finish


class Brain(Protocol):
    name: str

    def decide(self, view: AgentView) -> Decision: ...


BUILTIN = {"local": "shared.brains.local:LocalBrain", "openai": "shared.brains.openai:create_openai_brain"}


def load_brain(settings: Settings, profiles: Mapping[str, AgentProfile] | None = None) -> Brain:
    """Build the configured brain: a built-in name or ``module:Class``.

    A brain factory is called as ``factory(settings, profiles)``.
    """
    spec = BUILTIN.get(settings.brain, settings.brain)
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"SWITCHBOARD_BRAIN={settings.brain!r}: use one of {sorted(BUILTIN)} or 'module:Class'")
    factory = getattr(importlib.import_module(module_name), attr)
    brain: Brain = factory(settings, dict(profiles or {}))
    return brain
