"""Tool results and knowledge-base sections are screened for injected instructions too.

A knowledge-base article anyone could edit, an order note or a name the customer typed all
reach the agent (and the OpenAI brain's context) as tool output. Every string of a few
words or more is read by the injection detector (rules, then the learned model) in
windows of about `WINDOW_WORDS` words, so one planted sentence in a long article is not
diluted by the rest of it; a string with a flagged window is replaced by `WITHHELD`. The
rest of the output is untouched: the agent still sees the ids, amounts and scores.

`screen_output` returns where it withheld (JSON paths such as ``results[0].text``) and
which detectors fired, never the text: that is for the log line and the metric.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.guardrails.injection import InjectionVerdict, detect_injection_batch
from shared.remembered import Remembered

WITHHELD = "[withheld: this text reads as instructions to the assistant, not as information]"
# Shorter strings (ids, statuses, plan names, "Pro plan monthly") cannot carry an instruction
# worth the embedding; the rules are cheap but would only see the same few words.
MIN_WORDS = 5
WINDOW_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True, slots=True)
class ScreenedOutput:
    value: Any  # the output with every flagged string replaced by WITHHELD
    withheld: tuple[str, ...]  # JSON paths of the replaced strings, in document order
    detectors: tuple[str, ...]  # the rules (or "learned") that fired, sorted


def windows(text: str) -> list[str]:
    """Consecutive sentences of at most about WINDOW_WORDS words (a longer sentence alone)."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        words = len(sentence.split())
        if current and size + words > WINDOW_WORDS:
            out.append(" ".join(current))
            current, size = [], 0
        current.append(sentence)
        size += words
    if current:
        out.append(" ".join(current))
    return out


# The verdicts on the latest windows: the same knowledge-base sections come back in search
# after search, and a verdict depends on the text alone (and on the process's detector).
_remembered: Remembered[str, InjectionVerdict] = Remembered(4096)


def _verdicts(texts: list[str]) -> list[InjectionVerdict]:
    """The detector's verdict on each text; a text read lately is not read again."""
    known = _remembered.known(texts)
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        found = dict(zip(missing, detect_injection_batch(missing), strict=True))
        known.update(found)
        _remembered.keep(found.items())
    return [known[t] for t in texts]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _replaced(value: Any, path: str, withheld: set[str]) -> Any:
    if isinstance(value, str):
        return WITHHELD if path in withheld else value
    if isinstance(value, dict):
        return {key: _replaced(item, f"{path}.{key}" if path else str(key), withheld) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(item, f"{path}[{i}]", withheld) for i, item in enumerate(value)]
    return value


def screen_output(value: Any) -> ScreenedOutput:
    """Withhold the strings of a JSON-like tool output that read as instructions."""
    candidates = [(path, text) for path, text in _strings(value, "") if len(text.split()) >= MIN_WORDS]
    if not candidates:
        return ScreenedOutput(value, (), ())
    pieces = [(path, window) for path, text in candidates for window in windows(text)]
    verdicts = _verdicts([window for _, window in pieces])
    flagged: dict[str, set[str]] = {}
    for (path, _), verdict in zip(pieces, verdicts, strict=True):
        if verdict.flagged:
            flagged.setdefault(path, set()).update(verdict.rules)
    if not flagged:
        return ScreenedOutput(value, (), ())
    withheld = tuple(path for path, _ in candidates if path in flagged)
    detectors = tuple(sorted(set().union(*flagged.values())))
    return ScreenedOutput(_replaced(value, "", set(flagged)), withheld, detectors)
