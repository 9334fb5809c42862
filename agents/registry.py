"""The agents by name."""

from __future__ import annotations

from agents.account.agent import agent as account
from agents.base import Agent
from agents.billing.agent import agent as billing
from agents.knowledge.agent import agent as knowledge

AGENTS: dict[str, Agent] = {a.name: a for a in (billing, knowledge, account)}
