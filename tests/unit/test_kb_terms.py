"""The knowledge base's glossary (front matter ``terms``) and answers that span two sections.

No database: the glossary is read the way retrieval.glossary builds it from the stored
articles, and the sandbox corpus's questions are scored as Postgres would
(test_kb_retrieval), with the real local model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agents.knowledge import kb, retrieval
from agents.knowledge.chunking import chunk_article, embedding_text, parse_article, read_article
from shared.errors import ConfigurationError
from shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "sandbox" / "kb"
THRESHOLD = Settings().kb_min_score

ARTICLE = """---
id: kb_tasks
title: Tasks
terms:
  tasks: [to-dos, "  to do   items "]
  offline: no wifi
---
# Tasks

## Offline
Tasks you opened recently are available offline.
"""


def test_front_matter_terms_map_the_articles_words_to_the_customers() -> None:
    article = parse_article(ARTICLE, fallback_id="tasks", fmt="markdown")
    assert article.terms == {"tasks": ("to-dos", "to do items"), "offline": ("no wifi",)}
    assert "to-dos" not in article.body
    assert all("wifi" not in s.text for s in chunk_article(article))


@pytest.mark.parametrize(
    ("terms", "says"),
    [
        ("[to-dos]", "terms must be a map"),
        ("{tasks: {a: 1}}", "must name a list of strings"),
        ("{tasks: [1, 2]}", "must name a list of strings"),
        ("{tasks: [Tasks]}", "lists itself"),
        ("{tasks: [to-dos], items: [To-Dos]}", "listed under two terms"),
    ],
)
def test_terms_that_could_be_read_two_ways_or_are_not_a_map_are_refused(terms: str, says: str) -> None:
    raw = f"---\nid: kb_x\nterms: {terms}\n---\n## Offline\nText.\n"
    with pytest.raises(ConfigurationError, match=rf"kb_x: .*{says}"):
        parse_article(raw, fallback_id="x", fmt="markdown")


def test_changing_only_the_terms_imports_the_article_again() -> None:
    article = parse_article(ARTICLE, fallback_id="tasks", fmt="markdown")
    fewer = parse_article(ARTICLE.replace("  offline: no wifi\n", ""), fallback_id="tasks", fmt="markdown")
    assert article.body == fewer.body
    assert kb.content_hash(article) != kb.content_hash(fewer)


def test_a_question_is_read_with_the_articles_words_whole_words_only_and_longest_first() -> None:
    glossary = retrieval.Glossary([{"tasks": ("to-dos", "to do items"), "task": ("to-do",), "offline": ("no wifi",)}])
    assert glossary.read("Can I see my To-Dos with NO  WiFi?") == "Can I see my tasks with offline?"
    assert glossary.read("my to do items and one to-do") == "my tasks and one task"
    assert glossary.read("no wifi-router, notodos, to-doss") == "no wifi-router, notodos, to-doss"
    assert retrieval.Glossary().read("my to-dos") == "my to-dos"


def test_the_first_article_given_decides_a_word_two_articles_claim() -> None:
    glossary = retrieval.Glossary([{"offline": ("no signal",)}, {"outage": ("No  Signal",)}])
    assert glossary.read("no signal") == "offline"
    assert retrieval.Glossary([{"outage": ("no signal",)}, {"offline": ("no signal",)}]).read("no signal") == "outage"


def _hit(article: str, section: str, score: float, answer: str) -> retrieval.Hit:
    return retrieval.Hit(article, article.title(), section, answer, score, answer)


def test_an_answer_spans_two_sections_of_one_article_that_score_alike() -> None:
    changing = _hit("kb_plans", "Changing plans", 0.45, "Upgrades take effect immediately.")
    yearly = _hit("kb_plans", "Annual billing", 0.41, "Business: 1,990 USD per year.")
    [first, second] = retrieval.spanning([changing, yearly])
    assert first.answer == "Upgrades take effect immediately. Business: 1,990 USD per year."
    assert (first.article_id, first.section, first.score) == ("kb_plans", "Changing plans", 0.45)
    assert second == yearly


@pytest.mark.parametrize(
    "second",
    [
        _hit("kb_other", "Annual billing", 0.44, "Business: 1,990 USD per year."),  # another article: another citation
        _hit("kb_plans", "Annual billing", 0.39, "Business: 1,990 USD per year."),  # further than SPAN_MARGIN behind
        _hit("kb_plans", "Annual billing", 0.44, "Upgrades take effect immediately."),  # nothing new
    ],
)
def test_an_answer_keeps_to_its_section_otherwise(second: retrieval.Hit) -> None:
    first = _hit("kb_plans", "Changing plans", 0.45, "Upgrades take effect immediately.")
    assert retrieval.spanning([first, second])[0] == first


# --------------------------------------------------------------------------- the sandbox corpus

Corpus = tuple[list[tuple[str, str, str, str, tuple[str, ...]]], np.ndarray, retrieval.Glossary]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    articles = [read_article(p) for p in sorted(CORPUS.glob("*.md"))]
    sections = [(a, s) for a in articles for s in chunk_article(a)]
    vectors = np.asarray(kb.embed_texts([embedding_text(a, s) for a, s in sections]), dtype=np.float32)
    rows = [(a.id, a.title, s.heading, s.text, s.questions) for a, s in sections]
    return rows, vectors, retrieval.Glossary(a.terms for a in sorted(articles, key=lambda a: a.id))


def ask(corpus: Corpus, question: str, *, read: bool = True) -> list[retrieval.Hit]:
    rows, vectors, glossary = corpus
    vector = retrieval.embed_query(glossary.read(question) if read else question)
    dense = vectors @ np.asarray(vector, dtype=np.float32)
    found = [
        retrieval.Candidate(*row[:4], dense=float(d), keyword=0.0, questions=row[4])
        for row, d in zip(rows, dense, strict=True)
    ]
    hits = retrieval.rank(retrieval.rerank(found, vector), 2)
    return retrieval.spanning([replace(h, answer=retrieval.answer(h, vector)) for h in hits])


def test_a_question_in_the_customers_words_is_answered_once_read_with_the_glossary(corpus: Corpus) -> None:
    question = "Will my to-dos still be there on my phone in airplane mode?"
    [without, _] = ask(corpus, question, read=False)
    [hit, _] = ask(corpus, question)
    assert without.score < THRESHOLD  # escalated as unanswered without the glossary
    assert (hit.article_id, hit.section) == ("kb_mobile_app", "Offline mode")
    assert hit.score >= THRESHOLD
    assert "available offline" in hit.answer


def test_a_question_about_moving_up_and_paying_yearly_gets_both_answers(corpus: Corpus) -> None:
    [hit, _] = ask(corpus, "If we upgraded to the business plan and paid annually, what would that come to?")
    assert hit.article_id == "kb_plans_pricing"
    assert "1,990 USD per year" in hit.answer and "prorated" in hit.answer
    assert "\n" not in hit.answer
