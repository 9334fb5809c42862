"""Re-ranking finds the section that answers, on the sandbox corpus, without a database.

The first stage's scores are computed here as Postgres would (cosine similarity of the
embedded section texts; the keyword half left at 0), with the real local model, so the
re-ranking and the composed answers are the knowledge agent's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.knowledge import retrieval
from agents.knowledge.chunking import chunk_article, embedding_text, read_article
from agents.knowledge.kb import embed_texts

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "sandbox" / "kb"

Corpus = tuple[list[tuple[str, str, str, str]], np.ndarray]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    articles = [read_article(p) for p in sorted(CORPUS.glob("*.md"))]
    sections = [(a, s) for a in articles for s in chunk_article(a)]
    vectors = np.asarray(embed_texts([embedding_text(a, s) for a, s in sections]), dtype=np.float32)
    return [(a.id, a.title, s.heading, s.text) for a, s in sections], vectors


def ask(corpus: Corpus, question: str, mode: retrieval.Mode = "rerank") -> tuple[retrieval.Hit, str]:
    rows, vectors = corpus
    vector = retrieval.embed_query(question)
    dense = vectors @ np.asarray(vector, dtype=np.float32)
    found = [retrieval.Candidate(*row, dense=float(d), keyword=0.0) for row, d in zip(rows, dense, strict=True)]
    if mode == "rerank":
        found = retrieval.rerank(found, vector)
    hit = retrieval.rank(found, 1, mode)[0]
    return hit, retrieval.answer(hit, vector)


@pytest.mark.parametrize(
    ("question", "section", "says"),
    [
        ("i want to downgrade to free. when does that happen", "Changing plans", "end of the current billing period"),
        ("how much is business if we pay yearly", "Annual billing", "1,990"),
        ("We get a Slack message for every task update. Can we pick which channels get them?", "Slack", "channels"),
        ("how do i turn off push notifications on my ipad", "Notifications", "Profile → Notifications"),
        ("how long do refunds take?", "How long refunds take", "business days"),
        ("If I cancel today, do I get the rest of this month back?", "Subscription payments", "current period"),
    ],
)
def test_a_paraphrase_finds_the_section_that_answers_it(corpus: Corpus, question: str, section: str, says: str) -> None:
    hit, answer = ask(corpus, question)
    assert hit.section == section
    assert says in answer and "\n" not in answer


def test_re_ranking_by_passage_finds_the_price_table_over_the_yearly_prices(corpus: Corpus) -> None:
    question = "whats the price difference between pro and business"
    first_stage, _ = ask(corpus, question, mode="hybrid")
    hit, answer = ask(corpus, question)
    assert (first_stage.article_id, first_stage.section) == ("kb_plans_pricing", "Annual billing")
    assert (hit.article_id, hit.section) == ("kb_plans_pricing", "")  # the table above the first heading
    assert "pro: price 49.00 USD per month" in answer and "business: price 199.00 USD per month" in answer
    assert "|" not in answer


def test_a_downgrade_is_answered_without_the_upgrade_or_the_yearly_prices(corpus: Corpus) -> None:
    _, answer = ask(corpus, "i want to downgrade to free. when does that happen")
    assert answer == "Downgrades take effect at the end of the current billing period."


def test_re_ranking_scores_only_the_first_stages_best_few(corpus: Corpus) -> None:
    rows, vectors = corpus
    vector = retrieval.embed_query("how do I export to CSV")
    dense = vectors @ np.asarray(vector, dtype=np.float32)
    found = [retrieval.Candidate(*row, dense=float(d), keyword=0.0) for row, d in zip(rows, dense, strict=True)]
    reranked = retrieval.rerank(found, vector, depth=4)
    assert len(reranked) == 4 and all(c.passages for c in reranked)
    assert len(retrieval.ordered(reranked)) == 4
    assert retrieval.ordered(reranked)[0].section == "Export to CSV"
