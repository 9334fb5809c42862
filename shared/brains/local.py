"""The local brain: no model server, no cost.

The intent engine and playbooks that let it answer on its own arrive with the next
milestone (issue #3). Until then it answers nothing itself: each agent reports
``not_applicable`` and the merge hands the turn to a human with the reason
``low_confidence``. That is the safe default: no reply is ever invented.
"""

from __future__ import annotations

from shared.brains import AgentView, Decision, Finish
from shared.contracts import AgentStatus
from shared.settings import Settings


class LocalBrain:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def decide(self, view: AgentView) -> Decision:
        return Finish(status=AgentStatus.not_applicable, detail="the local brain has no playbook for this yet")
