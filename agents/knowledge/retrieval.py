"""Finding the section that answers a question, and the sentences of it that do.

Two stages. The first is hybrid: the cosine similarity of each section's embedding
(its title, heading and text as plain text) plus a weight of Postgres full-text rank,
in which heading words weigh most and the title next (kb.py). It lifts the section that
names the customer's own words (``CSV``, ``2FA``) and pushes questions with no word in
common with the corpus further below ``kb_min_score``.

The second re-scores the first stage's best few sections by their best passage: every
unit of a section (answers.units: a sentence, a list item, a table row) read with its
neighbours and embedded after the title and heading. A section is then as good as its
text as a whole and the part of it that answers, which tells "Changing plans" from
"Annual billing" when one vector for a whole section cannot. A passage rather than a
lone sentence, because one sentence matches on a stray phrase ("six-digit codes").
The questions an article lists for a section (front matter ``questions``, customers'
own words: "team chat" for Slack) are passages of that section too, embedded as they
are; a question resembles another question more than the sentence that answers it, so
their similarity counts ``QUESTION_WEIGHT`` of a passage's. They only score the section:
the answer never holds them and the citation is the section's.

The answer is composed from the top section's units, each scored by its own sentence
and its passage together. A question that spans two sections of one article ("if we
moved up a plan and paid yearly") scores both within ``SPAN_MARGIN`` of each other; the
answer then holds the units of both, under the one citation.

Before any of it the question is read with the knowledge base's glossary: the words
customers use ("to-dos", "twelve months") put back into the articles' own ("tasks",
"yearly"), as the articles' front matter ``terms`` list them (``Glossary``). A small
embedding model knows little of a product's vocabulary; the glossary is where the people
who write the articles tell it. ``switchboard kb eval`` measures every mode and weight.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from agents.knowledge import answers
from agents.knowledge.kb import TS_CONFIG, embed_texts, require_tables
from shared.kb_models import EMBEDDING_DIMENSIONS, vector_literal
from shared.remembered import Remembered

# Score = (1 - k) * meaning + k * keyword rank, where meaning is the section's cosine
# similarity or, re-ranked, s * that + (1 - s) * its best passage's (a listed question's
# similarity times q). Measured by `switchboard kb eval` on evals/data/kb_questions.yaml.
KEYWORD_WEIGHT = 0.1
SECTION_WEIGHT = 0.5
QUESTION_WEIGHT = 0.9
RERANK_DEPTH = 6  # the right section is among the first stage's best 5 for every eval question
PASSAGE_REACH = 1  # units on each side of a unit in its passage
CANDIDATE_POOL = 24
VECTOR_CACHE_SIZE = 20_000  # embedded passages and sentences kept per process (1.5 kB each)
# The second section of the same article joins the answer when it scores this close to the first.
SPAN_MARGIN = 0.05

Mode = Literal["dense", "hybrid", "rerank"]
MODE: Mode = "rerank"  # what the knowledge agent searches with


@dataclass(frozen=True)
class Hit:
    article_id: str
    title: str
    section: str
    text: str  # the section as written (Markdown)
    score: float
    answer: str = ""  # the units of the section that answer the question, as one paragraph of plain text


@dataclass(frozen=True)
class Candidate:
    """A section with the parts of its score, before they are combined."""

    article_id: str
    title: str
    section: str
    text: str
    dense: float  # 1 - cosine distance
    keyword: float  # ts_rank normalised to [0, 1)
    passages: tuple[float, ...] = ()  # cosine similarity of each unit's passage, once re-ranked
    questions: tuple[str, ...] = ()  # the questions the section answers, as customers ask them
    asked: tuple[float, ...] = ()  # cosine similarity of each of those questions, once re-ranked

    def score(
        self,
        mode: Mode = MODE,
        keyword_weight: float = KEYWORD_WEIGHT,
        section_weight: float = SECTION_WEIGHT,
        question_weight: float = QUESTION_WEIGHT,
    ) -> float:
        if mode == "dense":
            return self.dense
        meaning = self.dense
        if mode == "rerank" and self.passages:
            best = max(self.passages)
            if self.asked and question_weight:
                best = max(best, question_weight * max(self.asked))
            meaning = section_weight * self.dense + (1 - section_weight) * best
        return (1 - keyword_weight) * meaning + keyword_weight * self.keyword


# The keyword query ORs the question's words: plainto_tsquery ANDs them, and a customer's
# question rarely has every one of its words in one section. The nearest-neighbour ORDER
# BY names the parameter itself, not a CTE column, or the HNSW index could not serve it.
_CANDIDATES = text(
    f"""
    WITH q AS (
        SELECT CAST(replace(CAST(plainto_tsquery('{TS_CONFIG}', :query) AS text), '&', '|') AS tsquery) AS tsq
    ), ids AS (
        (SELECT s.id FROM kb_sections s ORDER BY s.embedding <=> CAST(:embedding AS vector) LIMIT :pool)
        UNION
        (SELECT s.id FROM kb_sections s, q WHERE s.search_vector @@ q.tsq
         ORDER BY ts_rank(s.search_vector, q.tsq) DESC LIMIT :pool)
    )
    SELECT s.article_id, a.title, s.heading AS section, s.text, s.questions,
           1 - (s.embedding <=> CAST(:embedding AS vector)) AS dense,
           ts_rank(s.search_vector, q.tsq, 32) AS keyword
    FROM ids JOIN kb_sections s ON s.id = ids.id JOIN kb_articles a ON a.id = s.article_id, q
    """
)


def embed_query(query: str) -> list[float]:
    [vector] = embed_texts([" ".join(query.split())])
    return vector


def candidates(
    session: Session, query: str, *, pool: int = CANDIDATE_POOL, vector: Sequence[float] | None = None
) -> list[Candidate]:
    """The nearest sections by embedding and by keywords, each with both scores."""
    require_tables(session)
    return _candidates(session, query, pool=pool, vector=vector)


def _candidates(session: Session, query: str, *, pool: int, vector: Sequence[float] | None) -> list[Candidate]:
    query = " ".join(query.split())
    if not query:
        return []
    if vector is None:
        vector = embed_query(query)
    rows = session.execute(_CANDIDATES, {"embedding": vector_literal(list(vector)), "query": query, "pool": pool})
    return [
        Candidate(
            r.article_id, r.title, r.section, r.text, float(r.dense), float(r.keyword), questions=tuple(r.questions)
        )
        for r in rows.mappings()
    ]


def rerank(
    found: list[Candidate],
    vector: Sequence[float],
    *,
    depth: int = RERANK_DEPTH,
    keyword_weight: float = KEYWORD_WEIGHT,
) -> list[Candidate]:
    """The first stage's best ``depth`` sections, each with the score of every passage and listed question."""
    best = sorted(found, key=lambda c: c.score("hybrid", keyword_weight), reverse=True)[:depth]
    texts = [(passages(c), list(c.questions)) for c in best]
    sims = iter(_similarities([t for own, listed in texts for t in own + listed], vector))
    return [
        replace(c, passages=tuple(next(sims) for _ in own), asked=tuple(next(sims) for _ in listed))
        for c, (own, listed) in zip(best, texts, strict=True)
    ]


def passages(c: Candidate | Hit) -> list[str]:
    """What is embedded for each unit of a section: the title and heading, then the unit among its neighbours."""
    texts = [u.text for u in answers.units(c.text)]
    return [
        f"{_topic(c)}. " + " ".join(texts[max(0, i - PASSAGE_REACH) : i + PASSAGE_REACH + 1]) for i in range(len(texts))
    ]


def sentences(c: Candidate | Hit) -> list[str]:
    """What is embedded for each unit of a section when its answer is composed: the title and
    heading, then the unit alone."""
    topic = _topic(c)
    return [f"{topic}. {u.text}" for u in answers.units(c.text)]


def _topic(c: Candidate | Hit) -> str:
    return f"{c.title}: {c.section}" if c.section else c.title


def ordered(
    found: list[Candidate],
    mode: Mode = MODE,
    keyword_weight: float = KEYWORD_WEIGHT,
    section_weight: float = SECTION_WEIGHT,
    question_weight: float = QUESTION_WEIGHT,
) -> list[Candidate]:
    """Best first. Re-ranking ranks only the sections whose passages were scored."""
    if mode == "rerank":
        found = [c for c in found if c.passages]
    return sorted(found, key=lambda c: c.score(mode, keyword_weight, section_weight, question_weight), reverse=True)


def rank(
    found: list[Candidate],
    k: int,
    mode: Mode = MODE,
    keyword_weight: float = KEYWORD_WEIGHT,
    section_weight: float = SECTION_WEIGHT,
    question_weight: float = QUESTION_WEIGHT,
) -> list[Hit]:
    """The ``k`` best as hits, without answers (``answer`` composes one) and without the listed questions."""
    return [
        Hit(
            c.article_id,
            c.title,
            c.section,
            c.text,
            round(c.score(mode, keyword_weight, section_weight, question_weight), 4),
        )
        for c in ordered(found, mode, keyword_weight, section_weight, question_weight)[:k]
    ]


def answer(hit: Hit, vector: Sequence[float]) -> str:
    """The units of the hit's section that answer, each scored by its sentence and its passage."""
    if not answers.units(hit.text):
        return ""
    own = _similarities(sentences(hit), vector)
    around = _similarities(passages(hit), vector)
    return answers.compose(hit.text, [(a + b) / 2 for a, b in zip(own, around, strict=True)])


def spanning(hits: list[Hit]) -> list[Hit]:
    """The hits, the first one's answer joined by the second's when the question spans both.

    Two sections of one article that score within ``SPAN_MARGIN`` of each other both answer
    (a question about moving up a plan and paying yearly); the citation, the article, is
    the same. A second answer the first already holds is not repeated.
    """
    if len(hits) < 2:
        return hits
    first, second = hits[0], hits[1]
    if first.article_id != second.article_id or first.score - second.score > SPAN_MARGIN or not second.answer:
        return hits
    if second.answer in first.answer:
        return hits
    return [replace(first, answer=f"{first.answer} {second.answer}".strip()), *hits[1:]]


def search(session: Session, query: str, k: int = 3, *, mode: Mode = MODE) -> list[Hit]:
    """The ``k`` best sections for ``query``, best first, each with its answer; empty only when the KB is empty."""
    require_tables(session)
    query = glossary(session).read(" ".join(query.split()))
    if not query:
        return []
    vector = embed_query(query)
    found = _candidates(session, query, pool=CANDIDATE_POOL, vector=vector)
    if mode == "rerank":
        found = rerank(found, vector, depth=max(k, RERANK_DEPTH))
    hits = [replace(hit, answer=answer(hit, vector)) for hit in rank(found, max(k, 2), mode)]
    return spanning(hits)[:k]


# --------------------------------------------------------------------------- the glossary

GLOSSARY_TTL_S = 30.0  # an import by another process is read into questions within this


class Glossary:
    """The articles' words and the words customers use for them, to read a question with.

    ``read`` puts each customer's word or phrase back into the article's word, whole words
    only and case-insensitively, the longest phrase first ("twelve months" before
    "months"). Two articles that list one customer's word under different terms: the first
    one given (retrieval reads them by article id) decides, so a question always reads the
    same way.
    """

    def __init__(self, terms: Iterable[Mapping[str, Sequence[str]]] = ()) -> None:
        self._means: dict[str, str] = {}  # the customer's word, casefolded -> the article's word
        for article in terms:
            for word, said in article.items():
                for synonym in said:
                    self._means.setdefault(" ".join(str(synonym).split()).casefold(), str(word))
        said_longest_first = sorted(self._means, key=len, reverse=True)
        alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in said_longest_first)
        # "(?<![\w-])": "wifi-router" is one word, not "wifi" and "router"
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE) if self._means else None

    def read(self, question: str) -> str:
        if self._pattern is None:
            return question
        return self._pattern.sub(lambda m: self._means[" ".join(m.group(0).split()).casefold()], question)


_TERMS = text("SELECT terms FROM kb_articles WHERE terms <> '{}'::jsonb ORDER BY id")
_glossaries: dict[str, tuple[float, Glossary]] = {}  # database URL -> (read at, its glossary)
_glossaries_lock = threading.Lock()


def glossary(session: Session) -> Glossary:
    """The knowledge base's glossary, from every article's ``terms``: read from the database
    at most every ``GLOSSARY_TTL_S`` per process (an import in this process reads it at once)."""
    key = str(session.get_bind().engine.url)
    now = time.monotonic()
    with _glossaries_lock:
        kept = _glossaries.get(key)
    if kept is not None and now - kept[0] < GLOSSARY_TTL_S:
        return kept[1]
    read = Glossary(terms for (terms,) in session.execute(_TERMS))
    with _glossaries_lock:
        _glossaries[key] = (now, read)
    return read


def forget_glossaries() -> None:
    """The next search reads the terms again (called by an import)."""
    with _glossaries_lock:
        _glossaries.clear()


# --------------------------------------------------------------------------- passage vectors

_cache: Remembered[str, Any] = Remembered(VECTOR_CACHE_SIZE)


def _similarities(texts: list[str], vector: Sequence[float]) -> list[float]:
    """Cosine similarity of each text to ``vector``; the texts' vectors are cached in the process.

    A knowledge base has a few thousand sentences and customers ask about the same ones
    all day: after the first questions re-ranking embeds only the question.
    """
    if not texts:
        return []
    known = _vectors(texts)
    matrix = np.stack([known[t] for t in texts]).reshape(len(texts), EMBEDDING_DIMENSIONS)
    return [round(float(x), 4) for x in matrix @ np.asarray(vector, dtype=np.float32)]


def _vectors(texts: list[str]) -> dict[str, Any]:
    """The vector of each text, from the process's cache or embedded now (and cached)."""
    known = _cache.known(texts)
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        embedded = [
            (t, np.asarray(row, dtype=np.float32)) for t, row in zip(missing, embed_texts(missing), strict=True)
        ]
        known.update(embedded)
        _cache.keep(embedded)
    return known


_EVERY_SECTION = text(
    """
    SELECT a.title, s.heading AS section, s.text, s.questions
    FROM kb_sections s JOIN kb_articles a ON a.id = s.article_id
    ORDER BY a.id, s.position
    """
)


def warm_passages(session: Session, *, limit: int = VECTOR_CACHE_SIZE, batch: int = 64) -> int:
    """Embed the passages, sentences and listed questions of every section into the process's
    cache, so re-ranking and answering embed only the customer's question, from the first one on. A worker does it
    once when it starts, beside its first turns; the cache is shared under its lock. Returns
    how many texts it embedded (at most ``limit``: the cache holds no more)."""
    require_tables(session)
    texts: list[str] = []
    for r in session.execute(_EVERY_SECTION).mappings():
        section = Candidate("", r.title, r.section, r.text, 0.0, 0.0, questions=tuple(r.questions))
        texts += [*passages(section), *sentences(section), *section.questions]
        if len(texts) >= limit:
            break
    texts = list(dict.fromkeys(texts))[:limit]
    for start in range(0, len(texts), batch):  # in slices: a turn waiting on the lock waits for one slice
        _vectors(texts[start : start + batch])
    return len(texts)
