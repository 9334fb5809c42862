"""What the agents (and any model behind them) see of a conversation.

Everything is redacted first. Long conversations are cut down: beyond six messages the
last three stay verbatim and the earlier ones become one extractive summary line each,
so a prompt stays small and stable without a model call to summarise.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.contracts import WindowMessage
from shared.guardrails import redact

VERBATIM = 3
SUMMARISE_BEYOND = 6
SUMMARY_CHARS = 160


def model_window(messages: Sequence[tuple[str, str]], customer_email: str | None) -> list[WindowMessage]:
    """``messages`` are (role, body) oldest first; returns the redacted view."""
    clean = [(role, redact(body, customer_email=customer_email).text) for role, body in messages]
    if len(clean) <= SUMMARISE_BEYOND:
        return [WindowMessage(role=_role(r), body=b) for r, b in clean]
    earlier, recent = clean[:-VERBATIM], clean[-VERBATIM:]
    lines = [f"{_role(r)}: {_clip(b)}" for r, b in earlier]
    summary = WindowMessage(role="summary", body="Earlier in this conversation:\n" + "\n".join(lines))
    return [summary, *(WindowMessage(role=_role(r), body=b) for r, b in recent)]


def _role(role: str) -> str:
    return role if role in ("customer", "assistant", "human") else "assistant"


def _clip(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= SUMMARY_CHARS else flat[: SUMMARY_CHARS - 1] + "…"
