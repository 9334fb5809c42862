"""The OpenAI brain with the scripted brain as its fallback, for stacks of real workers.

``SWITCHBOARD_BRAIN=tests.support.openai_brain:create`` runs the product's OpenAI brain (its
client, deadline, retries and fallback rules) against a test's OpenAI-compatible server,
while a decision the endpoint cannot make follows the script in the message
(tests/support/scripted_brain.py) instead of loading the local brain's models.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.brains import AgentProfile, Brain
from shared.brains.openai import OpenAIBrain
from shared.settings import Settings
from tests.support.scripted_brain import ScriptedBrain


def create(settings: Settings, profiles: Mapping[str, AgentProfile] | None = None) -> Brain:
    return OpenAIBrain(settings, profiles, fallback=ScriptedBrain(settings, profiles))
