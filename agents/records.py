"""Small helpers the agents' pickers share: reading tool outputs, amounts and dates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def records(value: Any, key: str) -> list[dict[str, Any]]:
    """The list of records in a tool's output, whether it is wrapped in ``{key: [...]}`` or not."""
    if isinstance(value, Mapping):
        inner = value.get(key)
        if isinstance(inner, list):
            return [r for r in inner if isinstance(r, dict)]
        return [dict(value)] if "id" in value else []
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    return []


def amount(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age_days(value: Any, now: datetime | None = None) -> float | None:
    moment = when(value)
    if moment is None:
        return None
    return ((now or datetime.now(UTC)) - moment).total_seconds() / 86400
