"""The account agent: its name and the tools it owns."""

from __future__ import annotations

from agents.base import Agent
from shared.tools import registry

agent = Agent(name="account", registry=registry)
