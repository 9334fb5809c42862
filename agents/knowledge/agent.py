"""The knowledge agent: product questions from the knowledge base, and the front door's questions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agents.base import Agent
from agents.knowledge.answers import flatten
from agents.knowledge.tools import TOOLS
from agents.records import records
from shared.brains import AgentProfile
from shared.brains.playbooks import Scope
from shared.guardrails.tool_output import WITHHELD

HERE = Path(__file__).parent


def confident_section(kb: Any, scope: Scope) -> dict[str, Any] | None:
    """The best section, if the knowledge base is sure enough; never a guess (policy rule 11).

    Its ``answer`` is the sentences that answer the question; a result without one (an
    older tool's) answers with its whole text, as one paragraph of plain text all the same.
    A section the tool-output screen withheld (it read as instructions to the assistant) is
    never an answer: the next one is, if it is sure enough.
    """
    hits = [h for h in records(kb, "results") if not _withheld(h)]
    threshold = float(scope.get("kb_min_score") or 0.0)
    if not hits or float(hits[0].get("score") or 0.0) < threshold:
        return None
    best = dict(hits[0])
    if not str(best.get("answer") or "").strip():
        best["answer"] = flatten(str(best.get("text") or ""))
    return best


def _withheld(hit: dict[str, Any]) -> bool:
    return any(str(hit.get(field) or "").startswith(WITHHELD) for field in ("text", "answer"))


profile = AgentProfile(
    name="knowledge",
    intents=yaml.safe_load((HERE / "intents.yaml").read_text()),
    playbooks_file=HERE / "playbooks.yaml",
    pickers={"confident_section": confident_section},
    predicates={},
    instructions="You are the knowledge agent: answer product questions from the knowledge base only, citing it.",
)

agent = Agent(name="knowledge", tools=TOOLS, profile=profile)
