"""The questions an article lists for its sections: read with it, searched with the section, never shown.

No database: the first stage's scores are computed as Postgres would (test_kb_retrieval),
with the real local model.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from agents.knowledge import kb, retrieval
from agents.knowledge.answers import units
from agents.knowledge.chunking import Article, Section, chunk_article, embedding_text, parse_article, read_article
from shared.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "shared" / "sandbox" / "kb"
EVAL_QUESTIONS = ROOT / "evals" / "data" / "kb_questions.yaml"
EVAL_CASES = ROOT / "evals" / "cases"

ARTICLE = """---
id: kb_export
title: Exporting
questions:
  "":  # the introduction
    - what can I take out of here
  Export to CSV:
    - get my tasks into excel
    - "  get my   tasks into excel "
  Export to JSON: a machine readable dump
---
# Exporting

Everything can be exported.

## Export to CSV
Choose **Settings → Export** and pick CSV.

## Export to JSON
The JSON export includes comments.

## Full account export
Owners export every project at once.
"""


def test_front_matter_questions_belong_to_the_sections_they_name() -> None:
    article = parse_article(ARTICLE, fallback_id="export", fmt="markdown")
    assert article.questions == {
        "": ("what can I take out of here",),
        "Export to CSV": ("get my tasks into excel",),  # whitespace collapsed, the repeat dropped
        "Export to JSON": ("a machine readable dump",),  # one question needs no list
    }
    assert "excel" not in article.body
    assert chunk_article(article) == [
        Section("", "Everything can be exported.", ("what can I take out of here",)),
        Section("Export to CSV", "Choose **Settings → Export** and pick CSV.", ("get my tasks into excel",)),
        Section("Export to JSON", "The JSON export includes comments.", ("a machine readable dump",)),
        Section("Full account export", "Owners export every project at once."),
    ]


def test_questions_under_a_null_heading_are_the_introductions() -> None:
    raw = "---\nquestions:\n  ~: [what is this]\n---\n# T\n\nIntro.\n\n## Part\nText.\n"
    sections = chunk_article(parse_article(raw, fallback_id="t", fmt="markdown"))
    assert [(s.heading, s.questions) for s in sections] == [("", ("what is this",)), ("Part", ())]


def test_a_question_for_a_heading_the_article_lacks_is_refused_with_the_headings_it_has(tmp_path: Path) -> None:
    path = tmp_path / "export.md"
    path.write_text(ARTICLE.replace("Export to JSON: a", "Export to XLS: a"))
    article = read_article(path)
    with pytest.raises(ConfigurationError, match=r"export\.md: .*'Export to XLS' \(its sections: '', 'Export to CSV'"):
        chunk_article(article)


@pytest.mark.parametrize(
    "questions",
    ["[how do I export]", "{Export to CSV: {a: 1}}", "{Export to CSV: [1, 2]}", "how do I export"],
)
def test_questions_that_are_not_a_map_of_headings_to_strings_are_refused(questions: str) -> None:
    raw = f"---\nid: kb_x\nquestions: {questions}\n---\n## Export to CSV\nPick CSV.\n"
    with pytest.raises(ConfigurationError, match=r"kb_x: .*questions"):
        parse_article(raw, fallback_id="x", fmt="markdown")


def test_every_piece_of_a_long_section_carries_its_questions() -> None:
    body = "## Long\n" + "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(8))
    sections = chunk_article(Article(id="l", title="L", body=body, questions={"Long": ("a long question",)}))
    assert len(sections) > 1 and all(s.questions == ("a long question",) for s in sections)


def test_questions_are_stored_apart_from_the_text_that_is_embedded_and_keyword_searched() -> None:
    article = parse_article(ARTICLE, fallback_id="export", fmt="markdown")
    section = chunk_article(article)[1]
    row = kb._section_row(article, 1, section, [0.0] * 384)
    assert row["questions"] == ["get my tasks into excel"]
    assert "excel" not in row["text"] + row["tsv_text"] + row["tsv_heading"] + embedding_text(article, section)


def test_changing_only_the_questions_imports_the_article_again() -> None:
    article = parse_article(ARTICLE, fallback_id="export", fmt="markdown")
    fewer = parse_article(
        ARTICLE.replace("  Export to JSON: a machine readable dump\n", ""), fallback_id="export", fmt="markdown"
    )
    assert article.body == fewer.body
    assert kb.content_hash(article) != kb.content_hash(fewer)


# --------------------------------------------------------------------------- the sandbox corpus


def _corpus_questions() -> list[tuple[str, str, str]]:
    return [
        (article.id, heading, question)
        for article in (read_article(p) for p in sorted(CORPUS.glob("*.md")))
        for heading, listed in article.questions.items()
        for question in listed
    ]


def test_every_section_of_the_sandbox_corpus_lists_three_to_six_questions() -> None:
    for article in (read_article(p) for p in sorted(CORPUS.glob("*.md"))):
        for section in chunk_article(article):
            assert 3 <= len(section.questions) <= 6, (article.id, section.heading)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _runs(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.casefold())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_no_listed_question_is_copied_from_an_eval_question() -> None:
    """The eval questions measure retrieval: a section's questions written from them would only echo them."""
    measured = _strings(yaml.safe_load(EVAL_QUESTIONS.read_text()))
    measured += [s for path in sorted(EVAL_CASES.glob("*.yaml")) for s in _strings(yaml.safe_load(path.read_text()))]
    six_word_runs = set().union(*(_runs(text, 6) for text in measured))
    whole = {" ".join(re.findall(r"[a-z0-9']+", text.casefold())) for text in measured}
    for article_id, heading, question in _corpus_questions():
        assert not _runs(question, 6) & six_word_runs, (article_id, heading, question)
        assert " ".join(re.findall(r"[a-z0-9']+", question.casefold())) not in whole, (article_id, heading, question)


# --------------------------------------------------------------------------- retrieval

Corpus = tuple[list[tuple[str, str, str, str, tuple[str, ...]]], np.ndarray]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    articles = [read_article(p) for p in sorted(CORPUS.glob("*.md"))]
    sections = [(a, s) for a in articles for s in chunk_article(a)]
    vectors = np.asarray(kb.embed_texts([embedding_text(a, s) for a, s in sections]), dtype=np.float32)
    return [(a.id, a.title, s.heading, s.text, s.questions) for a, s in sections], vectors


def ask(corpus: Corpus, question: str, question_weight: float = retrieval.QUESTION_WEIGHT) -> retrieval.Hit:
    rows, vectors = corpus
    vector = retrieval.embed_query(question)
    dense = vectors @ np.asarray(vector, dtype=np.float32)
    found = [
        retrieval.Candidate(*row[:4], dense=float(d), keyword=0.0, questions=row[4])
        for row, d in zip(rows, dense, strict=True)
    ]
    [hit] = retrieval.rank(retrieval.rerank(found, vector), 1, question_weight=question_weight)
    return replace(hit, answer=retrieval.answer(hit, vector))


def test_a_listed_question_scores_its_section_like_a_passage_of_it() -> None:
    c = retrieval.Candidate("a", "A", "S", "Text.", dense=0.4, keyword=0.2, passages=(0.3, 0.35), asked=(0.8, 0.5))
    assert c.score("rerank", 0.1, 0.5, 0.9) == pytest.approx(0.9 * (0.5 * 0.4 + 0.5 * 0.72) + 0.1 * 0.2)
    assert c.score("rerank", 0.1, 0.5, 0.0) == pytest.approx(0.9 * (0.5 * 0.4 + 0.5 * 0.35) + 0.1 * 0.2)
    assert c.score("hybrid") == pytest.approx(0.9 * 0.4 + 0.1 * 0.2)  # the first stage does not see them


def test_a_question_in_other_words_finds_the_section_through_its_listed_questions(corpus: Corpus) -> None:
    question = "how do I let a new colleague into our account"
    without = ask(corpus, question, question_weight=0.0)
    hit = ask(corpus, question)
    assert (without.article_id, without.section) != ("kb_members", "Inviting")
    assert (hit.article_id, hit.section) == ("kb_members", "Inviting")
    assert hit.score > without.score
    assert "Workspace → Members → Invite" in hit.answer


def test_listed_questions_are_never_in_the_answer_and_the_hit_is_the_sections_own(corpus: Corpus) -> None:
    """Asked word for word, a section's own question is still answered from the section's sentences."""
    rows, _ = corpus
    texts = {(row[0], row[2]): row[3] for row in rows}
    listed = {q.casefold() for row in rows for q in row[4]}
    for _, _, question in _corpus_questions():
        hit = ask(corpus, question)
        assert hit.text == texts[(hit.article_id, hit.section)]
        sentences = {u.text for u in units(hit.text)}
        assert hit.answer and all(q not in hit.answer.casefold() for q in listed), question
        assert any(s in hit.answer for s in sentences), question
        assert not hasattr(hit, "questions")
