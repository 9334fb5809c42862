"""The local intent engine as the local brain uses it: one classifier over every agent's
labelled examples, and the entity patterns.

Training embeds a few hundred examples (a few seconds), so the classifier is cached on
disk keyed by a fingerprint of the examples and the model, and built once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class IntentRouter(Protocol):
    def classify(self, text: str) -> tuple[str, float]: ...

    def ranked(self, text: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` likeliest intents, likeliest first (never empty)."""
        ...

    def entities(self, text: str, *, now: datetime, timezone: str | None) -> dict[str, Any]: ...


class EmbeddingRouter:
    """The shared.nlu engine: embeddings + linear models + neighbours, calibrated confidence."""

    def __init__(self, examples: Mapping[str, list[str]], cache_dir: Path) -> None:
        from shared.nlu.intents import IntentClassifier, load_or_train

        pairs = [(text, intent) for intent, texts in examples.items() for text in texts]
        try:
            self.classifier = load_or_train(pairs, cache_dir)
        except OSError as exc:  # a read-only disk only costs the cache
            log.warning("intent classifier cache at %s unusable (%s); training in memory", cache_dir, exc)
            self.classifier = IntentClassifier.train(pairs)

    def classify(self, text: str) -> tuple[str, float]:
        prediction = self.classifier.predict(text)
        return prediction.label, prediction.confidence

    def ranked(self, text: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` likeliest intents with their confidences, likeliest first."""
        return [(s.label, s.confidence) for s in self.classifier.predict(text, k).top]

    def entities(self, text: str, *, now: datetime, timezone: str | None) -> dict[str, Any]:
        from shared.nlu.entities import extract_entities

        try:
            found = extract_entities(text, now=now, timezone=timezone or "UTC")
        except Exception:  # an unknown timezone name must not cost the customer an answer
            found = extract_entities(text, now=now, timezone="UTC")
        return {
            "payment_ids": found.payment_ids,
            "invoice_ids": found.invoice_ids,
            "order_ids": found.order_ids,
            "emails": found.emails,
            "amounts": [float(m.amount) for m in found.amounts],
            "currencies": [m.currency for m in found.amounts],
            "dates": [d.start.isoformat() for d in found.dates],
        }


def build_router(examples: Mapping[str, list[str]], cache_dir: Path) -> IntentRouter:
    return EmbeddingRouter(examples, cache_dir)
