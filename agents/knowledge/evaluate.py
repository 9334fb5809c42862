"""Measure knowledge-base retrieval on the eval corpus, and recommend ``kb_min_score``.

    switchboard kb eval [--kb-dir DIR] [--questions FILE] [--database-url URL]

Imports the corpus (by default into a throwaway embedded Postgres, so an operator's
knowledge base is never touched), asks every question of the question file
(evals/data/kb_questions.yaml) and prints one JSON object, for dense retrieval, the
hybrid one and the re-ranked one (what the knowledge agent uses): top-1 and top-3
accuracy by article and by section, the mean score of the right section against the
best wrong one, the best scores of out-of-scope and unanswerable questions, the threshold
that separates them, and how often the composed answer holds the words a question
``expect``s (against how often the whole section does). A sweep over the keyword and
section weights shows what the chosen weights cost or gain, and one over the weight of
the questions articles list for their sections (0: as if they listed none).

The threshold is chosen so that a wrong answer costs twice an escalation: a guess breaks
policy rule 11, an escalation only costs a human a minute. Among equally good thresholds
the one in the widest gap between scores wins.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agents.knowledge import kb, retrieval
from shared.errors import ConfigurationError

WRONG_ANSWER_COST = 2.0
KEYWORD_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4)
SECTION_SWEEP = (0.0, 0.2, 0.4, 0.6)
QUESTION_SWEEP = (0.0, 0.8, 0.9, 1.0)
THRESHOLD_CURVE = (0.25, 0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.45)
MODES: tuple[retrieval.Mode, ...] = ("dense", "hybrid", "rerank")


@dataclass(frozen=True)
class Question:
    q: str
    article: str  # the article that answers it
    section: str | None = None  # the heading path of the section that answers it ("" for the introduction)
    expect: tuple[str, ...] = ()  # the answer must contain one of these (case-insensitive)


@dataclass(frozen=True)
class QuestionSet:
    questions: list[Question]
    out_of_scope: list[str]  # nothing to do with the product
    unanswerable: list[str]  # about the product, but no article answers them


def load_questions(path: Path) -> QuestionSet:
    data = yaml.safe_load(path.read_text()) or {}
    questions = []
    for item in data.get("questions") or []:
        expect = item.get("expect")
        expect = [] if expect is None else [expect] if isinstance(expect, str) else expect
        section = item.get("section")
        questions.append(
            Question(
                q=str(item["q"]),
                article=str(item["article"]),
                section=None if section is None else str(section),
                expect=tuple(str(e) for e in expect),
            )
        )
    return QuestionSet(
        questions=questions,
        out_of_scope=[str(q) for q in data.get("out_of_scope") or []],
        unanswerable=[str(q) for q in data.get("unanswerable") or []],
    )


def recommend_threshold(in_scope: list[tuple[float, bool]], out_of_scope: list[float]) -> dict[str, Any]:
    """The score below which the knowledge agent should escalate instead of answering.

    ``in_scope`` is (best score, was the top section right) per question; answering a
    question from the wrong section is as bad as answering an out-of-scope one.
    """
    scores = sorted({s for s, _ in in_scope} | set(out_of_scope))
    cuts = [scores[0] - 0.01] + [(a + b) / 2 for a, b in pairwise(scores)] + [scores[-1] + 0.01]

    def outcome(t: float) -> tuple[float, float, int, int, int, int]:
        good = sum(1 for s, ok in in_scope if ok and s >= t)
        wrong = sum(1 for s, ok in in_scope if not ok and s >= t)
        leaked = sum(1 for s in out_of_scope if s >= t)
        gap = min(abs(t - s) for s in scores)
        return good - WRONG_ANSWER_COST * (wrong + leaked), gap, good, wrong, leaked, len(in_scope) - good - wrong

    best = max(cuts, key=lambda t: outcome(t)[:2])
    _, gap, good, wrong, leaked, escalated = outcome(best)
    return {
        "value": round(best, 3),
        "margin": round(gap, 3),
        "answered_right": good,
        "answered_wrong": wrong,
        "escalated": escalated,
        "out_of_scope_answered": leaked,
    }


def at_thresholds(
    in_scope: list[tuple[float, bool]], out_of_scope: list[float], cuts: tuple[float, ...]
) -> dict[str, dict[str, int]]:
    """What each of ``cuts`` as kb_min_score would do: how flat the choice is around the recommended one."""
    return {
        f"{t:.2f}": {
            "answered_right": sum(1 for s, ok in in_scope if ok and s >= t),
            "answered_wrong": sum(1 for s, ok in in_scope if not ok and s >= t),
            "out_of_scope_answered": sum(1 for s in out_of_scope if s >= t),
        }
        for t in cuts
    }


@dataclass(frozen=True)
class Asked:
    question: Question
    vector: list[float]
    found: list[retrieval.Candidate]  # every candidate, each with its passages scored


def _right(question: Question, hit: retrieval.Hit) -> bool:
    """The top section answers: its article, and its section when the question names one."""
    return hit.article_id == question.article and question.section in (None, hit.section)


def _contains(answer: str, expected: tuple[str, ...]) -> bool:
    text = " ".join(answer.split()).casefold()
    return any(" ".join(e.split()).casefold() in text for e in expected)


def measure(
    asked: list[Asked],
    no_answer: list[list[retrieval.Candidate]],
    mode: retrieval.Mode,
    keyword_weight: float = retrieval.KEYWORD_WEIGHT,
    section_weight: float = retrieval.SECTION_WEIGHT,
    question_weight: float = retrieval.QUESTION_WEIGHT,
    *,
    out_of_scope: int | None = None,
    cuts: tuple[float, ...] = THRESHOLD_CURVE,
) -> dict[str, Any]:
    """Retrieval and answers under one mode and weights.

    ``no_answer`` are the questions no section answers: the out-of-scope ones first
    (``out_of_scope`` of them), then the unanswerable ones.
    """
    top1 = top3 = section1 = section3 = 0
    right: list[float] = []
    wrong: list[float] = []
    in_scope: list[tuple[float, bool]] = []
    misses: list[dict[str, Any]] = []
    checked = contained = in_section = 0
    answer_chars: list[int] = []
    section_chars: list[int] = []
    weights = (keyword_weight, section_weight, question_weight)
    for item in asked:
        question = item.question
        found = _depth(item.found, mode, keyword_weight)
        hits = retrieval.rank(found, len(found), mode, *weights)
        top = hits[0]
        answered = [replace(h, answer=retrieval.answer(h, item.vector)) for h in hits[:2]]
        answer = retrieval.spanning(answered)[0].answer
        top1 += top.article_id == question.article
        top3 += question.article in {h.article_id for h in hits[:3]}
        section1 += _right(question, top)
        section3 += any(_right(question, h) for h in hits[:3])
        right.append(max((h.score for h in hits if _right(question, h)), default=0.0))
        wrong.append(max((h.score for h in hits if not _right(question, h)), default=0.0))
        in_scope.append((top.score, _right(question, top)))
        answer_chars.append(len(answer))
        section_chars.append(len(top.text))
        if question.expect:
            checked += 1
            contained += _contains(answer, question.expect)
            in_section += _contains(top.text, question.expect)
        if not _right(question, top) or (question.expect and not _contains(answer, question.expect)):
            misses.append(
                {
                    "q": question.q,
                    "expected": f"{question.article} > {question.section}",
                    "got": f"{top.article_id} > {top.section}",
                    "score": top.score,
                    "answer": answer,
                }
            )
    outside = [retrieval.rank(_depth(found, mode, keyword_weight), 1, mode, *weights)[0].score for found in no_answer]
    split = len(outside) if out_of_scope is None else out_of_scope
    off_topic, unanswerable = outside[:split], outside[split:]
    n = len(asked)
    return {
        "top1_accuracy": round(top1 / n, 3),
        "top3_accuracy": round(top3 / n, 3),
        "section_top1_accuracy": round(section1 / n, 3),
        "section_top3_accuracy": round(section3 / n, 3),
        "mean_score_correct": round(statistics.fmean(right), 3),
        "mean_score_best_wrong": round(statistics.fmean(wrong), 3),
        "min_top1_score_when_right": round(min((s for s, ok in in_scope if ok), default=0.0), 3),
        "out_of_scope_best_mean": round(statistics.fmean(off_topic), 3) if off_topic else None,
        "out_of_scope_best_max": round(max(off_topic), 3) if off_topic else None,
        "unanswerable_best_max": round(max(unanswerable), 3) if unanswerable else None,
        "threshold": recommend_threshold(in_scope, outside),
        "at_thresholds": at_thresholds(in_scope, outside, cuts),
        # Of the questions with `expect`: the top section's composed answer has it, and the whole section has it.
        "answer_has_expected": round(contained / checked, 3) if checked else None,
        "section_has_expected": round(in_section / checked, 3) if checked else None,
        "answer_chars_mean": round(statistics.fmean(answer_chars)),
        "section_chars_mean": round(statistics.fmean(section_chars)),
        "misses": misses,
    }


def _depth(found: list[retrieval.Candidate], mode: retrieval.Mode, keyword_weight: float) -> list[retrieval.Candidate]:
    """What the search sees: re-ranking scores the sentences of the first stage's best few only."""
    if mode != "rerank":
        return found
    best = {id(c) for c in retrieval.ordered(found, "hybrid", keyword_weight)[: retrieval.RERANK_DEPTH]}
    return [c for c in found if id(c) in best]


def evaluate(session: Session, questions: QuestionSet, *, kb_min_score: float | None = None) -> dict[str, Any]:
    """Ask every question once; score the answers under every mode and weight.

    ``kb_min_score``, the threshold the knowledge agent runs with, is added to the
    thresholds each result is shown at.
    """
    timings: list[float] = []

    read = retrieval.glossary(session).read

    def ask(question: str) -> tuple[list[float], list[retrieval.Candidate]]:
        started = time.perf_counter()
        text = read(question)
        vector = retrieval.embed_query(text)
        found = retrieval.candidates(session, text, vector=vector)
        retrieval.rerank(found, vector)
        timings.append((time.perf_counter() - started) * 1000)  # what a search costs
        # Every candidate's passages, for the weight sweep (whose first stage differs).
        return vector, retrieval.rerank(found, vector, depth=len(found))

    asked = [Asked(q, *ask(q.q)) for q in questions.questions]
    no_answer = [ask(q)[1] for q in questions.out_of_scope + questions.unanswerable]
    if any(not item.found for item in asked):
        raise ConfigurationError(kb.KB_EMPTY)
    split = len(questions.out_of_scope)
    cuts = tuple(sorted({*THRESHOLD_CURVE, *([] if kb_min_score is None else [round(kb_min_score, 2)])}))
    modes = {mode: measure(asked, no_answer, mode, out_of_scope=split, cuts=cuts) for mode in MODES}
    sweep = {
        f"keyword {keyword_weight} section {section_weight}": _swept(
            measure(asked, no_answer, "rerank", keyword_weight, section_weight, out_of_scope=split)
        )
        for keyword_weight in KEYWORD_SWEEP
        for section_weight in SECTION_SWEEP
    }
    question_sweep = {
        f"question {weight}": _swept(
            measure(asked, no_answer, "rerank", question_weight=weight, out_of_scope=split, cuts=cuts), kb_min_score
        )
        for weight in QUESTION_SWEEP
    }
    articles, sections = kb.counts(session)
    return {
        "corpus": {"articles": articles, "sections": sections},
        "questions": len(questions.questions),
        "out_of_scope_questions": len(questions.out_of_scope),
        "unanswerable_questions": len(questions.unanswerable),
        "mode": retrieval.MODE,
        "kb_min_score": kb_min_score,
        "keyword_weight": retrieval.KEYWORD_WEIGHT,
        "section_weight": retrieval.SECTION_WEIGHT,
        "question_weight": retrieval.QUESTION_WEIGHT,
        "sections_with_questions": _sections_with_questions(session),
        "rerank_depth": retrieval.RERANK_DEPTH,
        "modes": modes,
        "weight_sweep": sweep,
        "question_weight_sweep": question_sweep,
        "best_mode": max(modes, key=lambda name: _preference(modes[name])),
        "recommended_kb_min_score": round(modes[retrieval.MODE]["threshold"]["value"], 2),
        "latency_ms_p50": round(statistics.median(timings), 1),
    }


def _swept(m: dict[str, Any], at: float | None = None) -> dict[str, Any]:
    """One point of a sweep: accuracy, and what its own threshold (and ``at``) would answer."""
    t = m["threshold"]
    point = {k: m[k] for k in ("top1_accuracy", "section_top1_accuracy", "answer_has_expected")} | {
        "threshold": t["value"],
        "threshold_margin": t["margin"],
        "right_at_threshold": t["answered_right"],
        "wrong_at_threshold": t["answered_wrong"] + t["out_of_scope_answered"],
    }
    if at is not None:  # what the weight does at the threshold the knowledge agent runs with, not retuned
        point[f"at_kb_min_score {at:.2f}"] = m["at_thresholds"][f"{at:.2f}"]
    return point


def _sections_with_questions(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(kb.KbSection).where(func.cardinality(kb.KbSection.questions) > 0)
        )
        or 0
    )


def _preference(result: dict[str, Any]) -> tuple[float, ...]:
    """Right answers at the threshold less the cost of wrong ones, then section accuracy."""
    t = result["threshold"]
    net = t["answered_right"] - WRONG_ANSWER_COST * (t["answered_wrong"] + t["out_of_scope_answered"])
    return (net, result["section_top1_accuracy"], result["top1_accuracy"], t["margin"])
