"""Reading help-center articles and cutting them into sections that embed well.

A section is what answers one question ("Export to CSV"), so articles are cut at their
headings (levels 1-3; deeper headings stay inside their section) and every chunk keeps
its heading path. all-MiniLM-L6-v2 reads about 256 word pieces and silently drops the
rest, so a section longer than ``MAX_SECTION_CHARS`` is split on paragraphs, then lines,
then sentences. HTML is turned into the same Markdown shape first; plain text, which has
no headings, is cut at blank lines.

An article may list, per section, the questions it answers as customers ask them (front
matter ``questions``, docs/knowledge-base.md). They are searched with the section, to
match a question that shares few words with the text, and are never part of its text.
It may also list ``terms``: its own words, each with the words customers use for them
("tasks": ["to-dos"]). A question is read with the customers' words put back into the
article's (retrieval.Glossary) before it is embedded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

import yaml

from agents.knowledge.answers import flatten
from shared.errors import ConfigurationError

Format = Literal["markdown", "html", "text"]

# ≈ 250 word pieces of English prose: what the embedding model reads of one chunk.
MAX_SECTION_CHARS = 1000
HEADING_SEPARATOR = " > "
FORMATS: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"^(#{1,3})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
# From coarse to fine: paragraphs, lines (a table, a list), sentences, words.
_SPLITS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n[ \t]*\n"), "\n\n"),
    (re.compile(r"\n"), "\n"),
    (re.compile(r"(?<=[.!?;:])\s+"), " "),
    (re.compile(r"\s+"), " "),
)


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    body: str  # without front matter
    format: Format = "markdown"
    source: str = ""
    # Section heading path -> the questions it answers, as customers ask them (front matter).
    questions: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    # The article's word -> the words customers use for it (front matter).
    terms: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Section:
    heading: str  # the heading path below the article's title, "" for its introduction
    text: str
    questions: tuple[str, ...] = ()  # searched with the section, never shown


def read_article(path: Path) -> Article:
    raw = path.read_text(encoding="utf-8", errors="replace")
    return parse_article(
        raw, fallback_id=slug(path.stem), fmt=FORMATS.get(path.suffix.lower(), "text"), source=str(path)
    )


def parse_article(raw: str, *, fallback_id: str, fmt: Format, source: str = "") -> Article:
    """Front matter's ``id``, ``title``, ``questions`` and ``terms`` when present; else the file's name and heading."""
    meta: dict[str, object] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        loaded = yaml.safe_load(match.group(1))
        if isinstance(loaded, dict):
            meta = {str(k): v for k, v in loaded.items()}
            raw = raw[match.end() :]
    html_title = ""
    if fmt == "html":
        html_title, raw = html_to_markdown(raw)
    title = str(meta.get("title") or html_title or first_heading(raw, fmt) or fallback_id).strip()
    article_id = str(meta.get("id") or fallback_id).strip()
    questions = parse_questions(meta.get("questions"), where=source or article_id)
    terms = parse_terms(meta.get("terms"), where=source or article_id)
    return Article(id=article_id, title=title, body=raw, format=fmt, source=source, questions=questions, terms=terms)


def parse_questions(value: object, *, where: str) -> dict[str, tuple[str, ...]]:
    """Front matter's ``questions``: a map of section heading path to the questions it answers.

    ``""`` (or a YAML null) names the introduction, the text before the first section
    heading. Whitespace is collapsed and repeats are dropped; a heading with no question
    left is left out.
    """
    shape = 'a map of section heading to a list of questions, e.g. {"Export to CSV": ["…", "…"]}'
    found: dict[str, tuple[str, ...]] = {}
    for name, asked in _lists_of_strings(
        value,
        "questions",
        shape,
        where=where,
        name=lambda heading: "" if heading is None else " ".join(str(heading).split()),
        wrong=lambda name: f"the questions of section {name!r} must be a list of strings",
    ):
        merged = found.get(name, ()) + asked
        if merged:  # two spellings of one heading ("", null) add up
            found[name] = tuple(dict.fromkeys(merged))
    return found


def parse_terms(value: object, *, where: str) -> dict[str, tuple[str, ...]]:
    """Front matter's ``terms``: a map of the article's word to the words customers use for it.

    Both sides are compared case-insensitively and with whitespace collapsed; a customer's
    word listed under two terms, or a term listed as its own synonym, is refused, because a
    question could then be read two ways.
    """
    shape = 'a map of the article\'s word to a list of the words customers use for it, e.g. {"tasks": ["to-dos"]}'
    found: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for word, words in _lists_of_strings(
        value,
        "terms",
        shape,
        where=where,
        name=lambda term: " ".join(str(term or "").split()),
        wrong=lambda word: f"the term {word!r} must name a list of strings",
    ):
        if not word:
            raise ConfigurationError(f"{where}: a term is blank ({shape})")
        for synonym in words:
            key = synonym.casefold()
            if key == word.casefold():
                raise ConfigurationError(f"{where}: the term {word!r} lists itself as a customer's word")
            if key in owner and owner[key] != word:
                raise ConfigurationError(
                    f"{where}: {synonym!r} is listed under two terms ({owner[key]!r} and {word!r}): keep it under one"
                )
            owner[key] = word
        if words:
            found[word] = found.get(word, ()) + words
    return found


def _lists_of_strings(
    value: object, field: str, shape: str, *, where: str, name: Callable[[object], str], wrong: Callable[[str], str]
) -> list[tuple[str, tuple[str, ...]]]:
    """A front matter map whose values are a string or a list of strings: each key as ``name``
    spells it, with its strings, whitespace collapsed and blanks and repeats dropped."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: front matter {field} must be {shape}")
    found = []
    for key, listed in value.items():
        spelled = name(key)
        items = [listed] if isinstance(listed, str) else listed
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ConfigurationError(f"{where}: {wrong(spelled)} ({shape})")
        found.append((spelled, tuple(dict.fromkeys(" ".join(x.split()) for x in items if x.strip()))))
    return found


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "article"


def first_heading(body: str, fmt: Format) -> str:
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        heading = _MD_HEADING.match(line) if fmt != "text" else None
        if heading:
            return heading.group(2)
        if fmt == "text" and len(line) <= 120:
            return line  # a plain-text article's first short line is its title
    return ""


def chunk_article(article: Article) -> list[Section]:
    """The article's sections in reading order, none longer than MAX_SECTION_CHARS, each with its questions.

    A section split in pieces gives each piece its questions. Questions for a heading the
    article does not have are refused: a renamed heading would otherwise lose them unseen.
    """
    if article.format == "text":
        body = article.body.strip()
        first, _, rest = body.partition("\n")
        if first.strip() == article.title:
            body = rest  # the title line is not a paragraph of its own
        sections = [Section("", piece) for piece in split_text(body)]
    else:
        sections = [
            Section(heading, piece)
            for heading, content in markdown_sections(article.body)
            for piece in split_text(content)
        ]
    if not article.questions:
        return sections
    headings = list(dict.fromkeys(s.heading for s in sections))
    unknown = [h for h in article.questions if h not in headings]
    if unknown:
        raise ConfigurationError(
            f"{article.source or article.id}: front matter questions name sections the article does not have: "
            f"{', '.join(map(repr, unknown))} (its sections: {', '.join(map(repr, headings))})"
        )
    return [replace(s, questions=article.questions.get(s.heading, ())) for s in sections]


def markdown_sections(body: str) -> list[tuple[str, str]]:
    """(heading path, text) for every heading with text under it, in order."""
    lines = body.splitlines()
    # A single level-1 heading is the article's title, not a section of it.
    h1_count = sum(1 for level, _ in _headings(lines) if level == 1)
    path: list[tuple[int, str]] = []
    sections: list[tuple[str, str]] = []
    current: list[str] = []

    def flush() -> None:
        content = "\n".join(current).strip()
        if content:
            names = [name for level, name in path if not (level == 1 and h1_count == 1)]
            sections.append((HEADING_SEPARATOR.join(names), content))
        current.clear()

    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _MD_HEADING.match(line)
        if heading is None:
            current.append(line)
            continue
        flush()
        level = len(heading.group(1))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, heading.group(2).strip()))
    flush()
    return sections


def _headings(lines: list[str]) -> list[tuple[int, str]]:
    found, fenced = [], False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _MD_HEADING.match(line)
        if heading:
            found.append((len(heading.group(1)), heading.group(2)))
    return found


def split_text(text: str, limit: int = MAX_SECTION_CHARS, level: int = 0) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at the coarsest boundary that fits."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    if level == len(_SPLITS):
        return [text[i : i + limit].strip() for i in range(0, len(text), limit) if text[i : i + limit].strip()]
    pattern, joiner = _SPLITS[level]
    pieces: list[str] = []
    current = ""
    for part in (p.strip() for p in pattern.split(text)):
        if not part:
            continue
        if len(part) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(split_text(part, limit, level + 1))
        elif current and len(current) + len(joiner) + len(part) > limit:
            pieces.append(current)
            current = part
        else:
            current = f"{current}{joiner}{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def embedding_text(article: Article, section: Section) -> str:
    """What is embedded for a section: the title and heading give a short section its topic.

    The text is the section as a customer reads it (answers.flatten): Markdown marks and
    table rules are noise to the model, and a table row reads better with its column names.
    """
    context = f"{article.title}: {section.heading}" if section.heading else article.title
    return f"{context}.\n{flatten(section.text)}"


# --------------------------------------------------------------------------- HTML

_BLOCKS = {"p", "div", "section", "article", "ul", "ol", "table", "tr", "blockquote", "pre", "main", "header"}
_SKIP = {"script", "style", "nav", "footer", "head", "noscript", "svg"}


class _HtmlToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._heading: list[str] | None = None
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skip += 1
        elif tag in ("h1", "h2", "h3"):
            self._heading = []
        elif tag in ("h4", "h5", "h6") or tag in _BLOCKS:
            self.out.append("\n\n")
            if tag == "pre":
                self._pre += 1
                self.out.append("```\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            name = " ".join("".join(self._heading).split())
            self.out.append(f"\n\n{'#' * int(tag[1])} {name}\n\n")
            self._heading = None
        elif tag == "pre" and self._pre:
            self._pre -= 1
            self.out.append("\n```\n\n")
        elif tag in _BLOCKS or tag in ("h4", "h5", "h6"):
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str, str]:
    """(the page's <title>, its text with h1-h3 as Markdown headings and blocks as paragraphs)."""
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    lines, fenced = [], False
    for line in "".join(parser.out).splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        lines.append(line.rstrip() if fenced else re.sub(r"[ \t]+", " ", line).strip())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return " ".join(parser.title.split()), text
