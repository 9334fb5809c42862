"""The agents by name, each built with its own list of tools.

``build_agents`` adds the tools that ``settings.extra_tools`` names (``module:NAME`` of a
list of tools, e.g. a company's own, or a test's) to the agents those tools name as owners.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from agents.account.agent import agent as account
from agents.base import Agent
from agents.billing.agent import agent as billing
from agents.knowledge.agent import agent as knowledge
from shared.brains import AgentProfile
from shared.errors import ConfigurationError
from shared.settings import AGENTS, Settings
from shared.tools import Tool, ToolRegistry

_PRODUCT: tuple[Agent, ...] = (billing, knowledge, account)
assert tuple(a.name for a in _PRODUCT) == AGENTS, "shared.settings.AGENTS names the same agents, in order"

# Every product tool, as the agents hold them: where a caller outside a turn runs one.
TOOLS = ToolRegistry(tool for agent in _PRODUCT for tool in agent.tools)
AGENT_BY_NAME: dict[str, Agent] = {a.name: a.joined(TOOLS) for a in _PRODUCT}


def agent_profiles() -> dict[str, AgentProfile]:
    return {a.name: a.profile for a in AGENT_BY_NAME.values() if a.profile}


def load_tools(specs: Sequence[str]) -> list[Tool]:
    """The tools named by ``module:NAME`` specs, each NAME a list of tools."""
    tools: list[Tool] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not attr:
            raise ConfigurationError(f"SWITCHBOARD_EXTRA_TOOLS: {spec!r} is not 'module:NAME' (a list of tools)")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"SWITCHBOARD_EXTRA_TOOLS: cannot load {spec!r} ({exc})") from None
        if not all(isinstance(t, Tool) for t in found):
            raise ConfigurationError(f"SWITCHBOARD_EXTRA_TOOLS: {spec!r} is not a list of tools")
        tools.extend(found)
    return tools


def build_agents(settings: Settings) -> dict[str, Agent]:
    """The agents as a worker runs them: the product's tools plus ``settings.extra_tools``."""
    extra = load_tools(settings.extra_tools)
    if not extra:
        return dict(AGENT_BY_NAME)
    catalogue = ToolRegistry([*TOOLS, *extra])
    return {a.name: a.joined(catalogue, extra) for a in _PRODUCT}
