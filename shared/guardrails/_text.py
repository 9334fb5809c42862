"""Text folding shared by the detectors (not by redaction, which needs original offsets)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'", "\u02bc": "'"})
_SPACES = re.compile(r"[ \t\u00a0\u2009\u202f]+")
_SENTENCE_BREAK = re.compile(r"(?:[.!?;]+(?=\s|$)|\n)+")

# The detectors read the whole message: an instruction hidden past the first screenful is
# still an instruction. The API's body limit (20,000 characters) bounds the cost.
DETECTION_WINDOW = 20_000


def compile_alternation(patterns: Iterable[str], flags: int = 0) -> re.Pattern[str]:
    r"""One regex matching any of ``patterns``.

    Branches that start with ``\b`` (before a letter) share one leading ``(?<!\w)`` instead:
    CPython's engine scans a long message several times faster that way than with a ``\b``
    at the head of every branch, and the matches are the same.
    """
    patterns = list(patterns)
    worded = [p[2:] for p in patterns if p.startswith(r"\b")]
    other = [f"(?:{p})" for p in patterns if not p.startswith(r"\b")]
    parts = [r"(?<!\w)(?:" + "|".join(f"(?:{p})" for p in worded) + ")"] if worded else []
    return re.compile("|".join(parts + other), flags)


def fold(text: str) -> str:
    """Lower-case, accent-free, typographic apostrophes made plain, runs of spaces squeezed.

    Customers type "hablar con un agente" and "hablar con un agénte", "möchte" and "mochte";
    matching one folded form keeps every pattern written once.
    """
    decomposed = unicodedata.normalize("NFKD", text[:DETECTION_WINDOW].translate(_APOSTROPHES))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped.casefold())


def sentences(folded: str) -> list[str]:
    """Split folded text into sentences; rules that must co-occur are checked per sentence."""
    return [part.strip() for part in _SENTENCE_BREAK.split(folded) if part.strip()]
