"""Composing a reply from the sentences of a section that answer the question.

A section is cut into units a customer can read on their own: sentences of a
paragraph (its hard-wrapped lines joined), list items whole, table rows written out
with their column names. Retrieval scores every unit against the question
(``retrieval.answer``); the answer is the best one to three of them, in the order of the
article, as one paragraph of plain text: emphasis and code marks dropped, a link kept
as its words and its address. Units far below the best one are the section's other
topics and are left out.

A unit that leans on the one before it ("After that they are deleted") brings that one
along, and a list item brings the sentence that introduces its list ("We accept:").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["sentence", "item", "row", "code"]

MAX_UNITS = 3
# Units this close to the best one also answer; further below they are the section's other topics.
UNIT_MARGIN = 0.12
MAX_ANSWER_CHARS = 600

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_ITEM = re.compile(r"^(\s*)(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_QUOTE = re.compile(r"^\s*>\s?")
# A sentence ends at . ! ? followed by space and a capital, digit or quote: "e.g. the" stays whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”')\]]?\s+(?=[A-Z0-9\"“(¿¡])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|approx|incl|no|Mr|Mrs|Ms|Dr|St)\.$", re.IGNORECASE)
_LEANS_BACK = re.compile(
    r"^(?:it|this|that|these|those|they|them|then|after that|otherwise|also|however|if so|if not|"
    r"in that case|both)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Unit:
    text: str  # plain text on one line
    kind: Kind
    block: int  # units of one paragraph, list or table share it
    lead_in: bool = False  # a sentence ending in ":" right before a list or table


# --------------------------------------------------------------------------- Markdown to plain text

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^>\s]+)>")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_CODE = re.compile(r"`+([^`]*)`+")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\w)|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")


def plain(markdown: str) -> str:
    """Inline Markdown as readable text on one line: ``**Settings → Export**`` is ``Settings → Export``."""
    text = _IMAGE.sub(r"\1", markdown)
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _CODE.sub(r"\1", text)
    text = _STRONG.sub(r"\2", text)
    text = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    text = _STRIKE.sub(r"\1", text)
    text = _ESCAPE.sub(r"\1", text)
    return " ".join(text.split())


def flatten(markdown: str) -> str:
    """A whole section as one paragraph of plain text (when no unit has a score)."""
    return _join(units(markdown))


# --------------------------------------------------------------------------- units


def units(markdown: str) -> list[Unit]:
    """The section's readable units in document order."""
    out: list[Unit] = []
    for block, (kind, lines) in enumerate(_blocks(markdown)):
        if kind == "paragraph":
            out.extend(Unit(s, "sentence", block) for s in sentences(plain(" ".join(lines))))
        elif kind == "list":
            out.extend(Unit(item, "item", block) for item in _items(lines))
        elif kind == "table":
            out.extend(Unit(row, "row", block) for row in table_rows(lines))
        elif kind == "code":
            code = " ".join(" ".join(lines).split())
            if code:
                out.append(Unit(code, "code", block))
    # A sentence ending in ":" introduces the list or table that follows it.
    return [
        Unit(u.text, u.kind, u.block, lead_in=True)
        if u.kind == "sentence" and u.text.endswith(":") and i + 1 < len(out) and out[i + 1].kind in ("item", "row")
        else u
        for i, u in enumerate(out)
    ]


def _blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) for each paragraph, list, table and code block; headings are left out."""
    blocks: list[tuple[str, list[str]]] = []
    kind, lines = "", list[str]()  # the block being read
    fenced = False

    def close() -> None:
        nonlocal kind, lines
        if lines:
            blocks.append((kind, lines))
        kind, lines = "", []

    for raw in markdown.splitlines():
        if _FENCE.match(raw):
            if fenced:
                close()
            else:
                close()
                kind = "code"
            fenced = not fenced
            continue
        if fenced:
            lines.append(raw)
            continue
        line = _QUOTE.sub("", raw)
        if not line.strip():
            if kind != "list":  # a blank line between items keeps the list
                close()
            else:
                lines.append("")
            continue
        if _HEADING.match(line):
            close()  # a heading below level 3 names what follows; it is not an answer
            continue
        if line.lstrip().startswith("|"):
            if kind != "table":
                close()
                kind = "table"
            lines.append(line)
            continue
        if _ITEM.match(line):
            if kind != "list":
                close()
                kind = "list"
            lines.append(line)
            continue
        if kind == "list":
            if lines and lines[-1] == "" and not line.startswith((" ", "\t")):
                close()  # a paragraph after the list
                kind = "paragraph"
            lines.append(line)  # else the item's continued line
            continue
        if kind not in ("paragraph", ""):
            close()
        kind = "paragraph"
        lines.append(line)
    close()
    return blocks


def _items(lines: list[str]) -> list[str]:
    items: list[list[str]] = []
    for line in lines:
        match = _ITEM.match(line)
        if match and (not items or len(match.group(1)) <= 1):
            items.append([match.group(2)])
        elif items and line.strip():
            # A nested item or a continued line belongs to the item above it.
            items[-1].append(match.group(2) if match else line)
    return [text for text in (plain(" ".join(parts)) for parts in items) if text]


def sentences(text: str) -> list[str]:
    """One paragraph's sentences; an abbreviation ("e.g.") does not end one."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.start()].rstrip()
        if _ABBREVIATION.search(piece.rstrip("\"”')]")):
            continue
        end = match.end() - len(match.group(0)) + len(match.group(0).rstrip())
        out.append(text[start:end].strip())
        start = match.end()
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return [s for s in out if s]


def table_rows(lines: list[str]) -> list[str]:
    """Each body row as a sentence with its column names: "pro: price 49.00 USD, members up to 25."."""
    rows = [_cells(line) for line in lines if not _TABLE_RULE.match(line)]
    ruled = any(_TABLE_RULE.match(line) for line in lines)
    header, body = (rows[0], rows[1:]) if ruled and len(rows) > 1 else ([], rows)
    out = []
    for row in body:
        if not any(row):
            continue
        if header:
            named = [f"{name} {value}" if name else value for name, value in zip(header[1:], row[1:], strict=False)]
            rest = ", ".join(v for v in named if v.strip())
            out.append(f"{row[0]}: {rest}." if rest else f"{row[0]}.")
        else:
            out.append(", ".join(c for c in row if c) + ".")
    return out


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [plain(cell) for cell in inner.split("|")]


# --------------------------------------------------------------------------- the answer


def select(found: Sequence[Unit], scores: Sequence[float], *, limit: int = MAX_UNITS) -> list[int]:
    """Indexes of the units that answer, in document order: the best, and up to ``limit`` close to it."""
    if not found:
        return []
    if len(scores) != len(found):
        return list(range(min(limit, len(found))))  # no scores: the section's opening
    ranked = sorted(range(len(found)), key=lambda i: -scores[i])
    best = scores[ranked[0]]
    picked: set[int] = set()
    for i in (i for i in ranked[:limit] if scores[i] >= best - UNIT_MARGIN):  # best first
        more = picked | {i} | _context(found, i)
        # The best unit always; the others while the answer stays short (one more for a lead-in).
        if picked and (len(more) > limit + 1 or _length(found, more) > MAX_ANSWER_CHARS):
            continue
        picked = more
    return sorted(picked)


def _context(found: Sequence[Unit], i: int) -> set[int]:
    """The units that ``found[i]`` cannot be read without."""
    unit, needed = found[i], set()
    if unit.kind in ("item", "row"):
        j = i
        while j > 0 and found[j - 1].block == unit.block:
            j -= 1
        if j > 0 and found[j - 1].lead_in:
            needed.add(j - 1)
    elif unit.kind == "sentence" and i > 0 and found[i - 1].block == unit.block and _LEANS_BACK.match(unit.text):
        needed.add(i - 1)
    return needed


def _length(found: Sequence[Unit], picked: set[int]) -> int:
    return sum(len(found[i].text) + 1 for i in picked)


def compose(markdown: str, scores: Sequence[float] | None = None, *, limit: int = MAX_UNITS) -> str:
    """The answer from a section: its best units (``scores`` aligned with ``units(markdown)``)."""
    found = units(markdown)
    return _join([found[i] for i in select(found, scores or (), limit=limit)])


def _join(chosen: Sequence[Unit]) -> str:
    """One paragraph: sentences as they are, the items of one list joined by semicolons."""
    text = ""
    for n, unit in enumerate(chosen):
        piece = unit.text
        following = chosen[n + 1] if n + 1 < len(chosen) else None
        same_list = following is not None and following.kind == unit.kind == "item" and following.block == unit.block
        if unit.kind in ("item", "code") and not piece.endswith((".", "!", "?", ":", ";")):
            piece += ";" if same_list else "."
        text = f"{text} {piece}" if text else piece
    return text
