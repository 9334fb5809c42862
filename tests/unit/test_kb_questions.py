"""The questions an article lists for its sections: read with it, stored apart from its text, scored as passages."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.knowledge import kb, retrieval
from agents.knowledge.chunking import Article, Section, chunk_article, embedding_text, parse_article, read_article
from shared.errors import ConfigurationError

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


def test_a_listed_question_scores_its_section_like_a_passage_of_it() -> None:
    c = retrieval.Candidate("a", "A", "S", "Text.", dense=0.4, keyword=0.2, passages=(0.3, 0.35), asked=(0.8, 0.5))
    assert c.score("rerank", 0.1, 0.5, 0.9) == pytest.approx(0.9 * (0.5 * 0.4 + 0.5 * 0.72) + 0.1 * 0.2)
    assert c.score("rerank", 0.1, 0.5, 0.0) == pytest.approx(0.9 * (0.5 * 0.4 + 0.5 * 0.35) + 0.1 * 0.2)
    assert c.score("hybrid") == pytest.approx(0.9 * 0.4 + 0.1 * 0.2)  # the first stage does not see them
