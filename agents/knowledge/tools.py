"""The knowledge agent's tool: search the help-center articles.

The tool returns the best sections with their scores and leaves the decision to the
playbook (or the model): below ``kb_min_score`` nothing in the knowledge base answers the
question, and policy rule 11 says to escalate rather than guess. Each section comes as
written (``text``) and as its ``answer``: the sentences of it that answer the question,
as one paragraph of plain text (retrieval.py, answers.py).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from agents.knowledge import kb, retrieval
from shared.db import session_scope
from shared.errors import ToolError
from shared.settings import get_settings
from shared.tools import MAX_OUTPUT_CHARS, Tool, ToolArgs, ToolContext, function_tool

MAX_TEXT_CHARS = 1200
MAX_ANSWER_CHARS = 800


class SearchKnowledgeBaseArgs(ToolArgs):
    query: str = Field(
        min_length=2,
        max_length=500,
        description="The customer's question, or the product topic to look up, in plain words.",
    )


@function_tool(owners=("knowledge",), side_effect="read")
def search_knowledge_base(ctx: ToolContext, args: SearchKnowledgeBaseArgs) -> dict[str, Any]:
    """Search the help-center articles for sections that answer a product question.

    Returns the best sections, best first, each with its article id and title (cite them),
    a score from 0 to 1, the section's text and its answer (the sentences of the text that
    answer the question). Answer only from these texts; when best_score is low, no article
    answers the question: say so or hand it to a human, never guess.
    """
    if not args.query.strip():
        raise ToolError("The query is blank: pass the customer's question in plain words.", kind="invalid")
    settings = get_settings()
    try:
        with session_scope() as session:
            hits = retrieval.search(session, args.query, settings.kb_top_k)
    except kb.KnowledgeBaseUnavailable as exc:
        raise ToolError(
            f"{exc}. Do not answer from memory: escalate this question to a human.", kind="backend"
        ) from exc
    if not hits:
        raise ToolError(f"{kb.KB_EMPTY}. Do not answer from memory: escalate this question to a human.", kind="backend")
    results = [
        {
            "article_id": h.article_id,
            "title": h.title,
            "section": h.section,
            "text": h.text,
            "score": h.score,
            "answer": h.answer,
        }
        for h in hits
    ]
    return {"results": _fit(results), "best_score": max(h.score for h in hits)}


def _fit(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shorten the texts so the whole output stays under the registry's cap.

    Past the cap the registry would keep only a preview of the JSON, and the model would
    lose the scores and the citations along with the text. The answers are short (at most
    a few sentences) and are clipped only after the texts.
    """
    budget = MAX_OUTPUT_CHARS - 200  # room for best_score and the braces around it
    limit = MAX_TEXT_CHARS
    while limit > 100:
        answer_limit = max(limit, MAX_ANSWER_CHARS)
        fitted = [{**r, "text": _clip(r["text"], limit), "answer": _clip(r["answer"], answer_limit)} for r in results]
        if len(json.dumps({"results": fitted})) <= budget:
            return fitted
        limit -= 100
    return [{**r, "text": _clip(r["text"], limit), "answer": _clip(r["answer"], limit)} for r in results]


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "…"


TOOLS: list[Tool] = [search_knowledge_base]
