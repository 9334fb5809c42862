"""Guardrails run on every customer message before any agent or model sees it.

Pure functions over strings, standard library only, microseconds per message:

- `redact` / `redact_mapping`: cards (Luhn), IBANs (mod 97), other people's emails, phone
  numbers, passwords, one-time codes, PINs and API keys become placeholders.
- `wants_human`: the customer asks for a person (EN/ES/FR/DE).
- `detect_injection`: instructions aimed at the assistant rather than requests for support.
- `screen`: all three in the order the orchestrator needs them.

Detection runs on the original text (an injected "reset the password for bob@x.com" must
still see the address); everything passed on to models and logs is the redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.guardrails.human_request import wants_human
from shared.guardrails.injection import FLAG_THRESHOLD, InjectionVerdict, detect_injection
from shared.guardrails.redaction import (
    PiiKind,
    RedactedSpan,
    Redaction,
    for_storage,
    iban_valid,
    luhn_valid,
    mapping_for_storage,
    redact,
    redact_mapping,
)

__all__ = [
    "FLAG_THRESHOLD",
    "InjectionVerdict",
    "PiiKind",
    "RedactedSpan",
    "Redaction",
    "Screening",
    "detect_injection",
    "for_storage",
    "iban_valid",
    "luhn_valid",
    "mapping_for_storage",
    "redact",
    "redact_mapping",
    "screen",
    "wants_human",
]


@dataclass(frozen=True, slots=True)
class Screening:
    """What the orchestrator needs to decide the first step of a turn."""

    redaction: Redaction
    wants_human: bool
    injection: InjectionVerdict


def screen(text: str, *, customer_email: str | None = None, customer_id: str | None = None) -> Screening:
    return Screening(
        redaction=redact(text, customer_email=customer_email),
        wants_human=wants_human(text),
        injection=detect_injection(text, customer_email=customer_email, customer_id=customer_id),
    )
