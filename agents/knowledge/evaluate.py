"""Measure knowledge-base retrieval on the eval corpus, and recommend ``kb_min_score``.

    switchboard kb eval [--kb-dir DIR] [--questions FILE] [--database-url URL]

Imports the corpus (by default into a throwaway embedded Postgres, so an operator's
knowledge base is never touched), asks every question of the question file
and prints one JSON object: top-1 and top-3 article accuracy, the mean score of the
right article against the best wrong one, the best scores of out-of-scope questions, and
the threshold that separates them, for dense retrieval and for the hybrid one.

The threshold is chosen so that a wrong answer costs twice an escalation: a guess breaks
policy rule 11, an escalation only costs a human a minute. Among equally good thresholds
the one in the widest gap between scores wins.
"""

from __future__ import annotations

import statistics
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from agents.knowledge import kb
from shared.errors import ConfigurationError

WRONG_ANSWER_COST = 2.0
WEIGHT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)

Question = tuple[str, str]  # (question, expected article id)


def load_questions(path: Path) -> tuple[list[Question], list[str]]:
    data = yaml.safe_load(path.read_text())
    questions = [(str(item["q"]), str(item["article"])) for item in data.get("questions") or []]
    return questions, [str(q) for q in data.get("out_of_scope") or []]


def recommend_threshold(in_scope: list[tuple[float, bool]], out_of_scope: list[float]) -> dict[str, Any]:
    """The score below which the knowledge agent should escalate instead of answering.

    ``in_scope`` is (best score, was the top article right) per question; answering a
    question whose top article is wrong is as bad as answering an out-of-scope one.
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


def measure(
    asked: list[tuple[Question, list[kb.Candidate]]],
    unanswerable: list[list[kb.Candidate]],
    mode: kb.Mode,
    weight: float = kb.KEYWORD_WEIGHT,
) -> dict[str, Any]:
    top1 = top3 = 0
    right: list[float] = []
    wrong: list[float] = []
    in_scope: list[tuple[float, bool]] = []
    misses: list[dict[str, Any]] = []
    for (question, expected), found in asked:
        hits = kb.rank(found, len(found), mode, weight)
        top1 += hits[0].article_id == expected
        top3 += expected in {h.article_id for h in hits[:3]}
        right.append(max((h.score for h in hits if h.article_id == expected), default=0.0))
        wrong.append(max((h.score for h in hits if h.article_id != expected), default=0.0))
        in_scope.append((hits[0].score, hits[0].article_id == expected))
        if hits[0].article_id != expected:
            misses.append({"q": question, "expected": expected, "got": hits[0].article_id, "section": hits[0].section})
    outside = [kb.rank(found, 1, mode, weight)[0].score for found in unanswerable]
    n = len(asked)
    return {
        "top1_accuracy": round(top1 / n, 3),
        "top3_accuracy": round(top3 / n, 3),
        "mean_score_correct": round(statistics.fmean(right), 3),
        "mean_score_best_wrong": round(statistics.fmean(wrong), 3),
        "min_top1_score_when_right": round(min((s for s, ok in in_scope if ok), default=0.0), 3),
        "out_of_scope_best_mean": round(statistics.fmean(outside), 3) if outside else None,
        "out_of_scope_best_max": round(max(outside), 3) if outside else None,
        "threshold": recommend_threshold(in_scope, outside),
        "misses": misses,
    }


def evaluate(session: Session, questions: list[Question], out_of_scope: list[str]) -> dict[str, Any]:
    """Ask every question once; score the answers under every mode and keyword weight."""
    timings: list[float] = []

    def ask(text: str) -> list[kb.Candidate]:
        started = time.perf_counter()
        found = kb.candidates(session, text)
        timings.append((time.perf_counter() - started) * 1000)
        return found

    asked = [((q, expected), ask(q)) for q, expected in questions]
    unanswerable = [ask(q) for q in out_of_scope]
    if any(not found for _, found in asked):
        raise ConfigurationError(kb.KB_EMPTY)
    modes = {
        "dense": measure(asked, unanswerable, "dense"),
        "hybrid": measure(asked, unanswerable, "hybrid", kb.KEYWORD_WEIGHT),
    }
    sweep = {}
    for weight in WEIGHT_SWEEP:
        m = measure(asked, unanswerable, "hybrid", weight)
        sweep[str(weight)] = {k: m[k] for k in ("top1_accuracy", "top3_accuracy")} | {
            "threshold_margin": m["threshold"]["margin"],
            "wrong_answers_at_threshold": m["threshold"]["answered_wrong"] + m["threshold"]["out_of_scope_answered"],
        }
    chosen = max(modes, key=lambda name: _preference(modes[name]))
    articles, sections = kb.counts(session)
    return {
        "corpus": {"articles": articles, "sections": sections},
        "questions": len(questions),
        "out_of_scope_questions": len(out_of_scope),
        "keyword_weight": kb.KEYWORD_WEIGHT,
        "modes": modes,
        "keyword_weight_sweep": sweep,
        "chosen_mode": chosen,
        "recommended_kb_min_score": round(modes[chosen]["threshold"]["value"], 2),
        "latency_ms_p50": round(statistics.median(timings), 1),
    }


def _preference(result: dict[str, Any]) -> tuple[float, ...]:
    t = result["threshold"]
    safe = -(t["answered_wrong"] + t["out_of_scope_answered"])
    return (result["top1_accuracy"], safe, result["top3_accuracy"], t["margin"])
