"""Text folding shared by the detectors (not by redaction, which needs original offsets)."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'", "\u02bc": "'"})
_SPACES = re.compile(r"[ \t\u00a0\u2009\u202f]+")
_SENTENCE_BREAK = re.compile(r"(?:[.!?;]+(?=\s|$)|\n)+")

# The detectors only ever read the first part of a very long paste: what a customer asks for,
# or tries to inject, sits near the top, and the cost must stay bounded per message.
DETECTION_WINDOW = 8000


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
