"""The local intent engine as the local brain uses it: one classifier over every agent's
labelled examples, and the entity patterns.

Training takes a few seconds (embedding a few hundred examples), so it happens once per
process, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol


class IntentRouter(Protocol):
    def classify(self, text: str) -> tuple[str, float]: ...

    def entities(self, text: str, *, now: datetime, timezone: str | None) -> dict[str, Any]: ...


def build_router(examples: Mapping[str, list[str]]) -> IntentRouter:
    raise NotImplementedError("the NLU engine is wired in by the next commit")
