"""Offline evaluation of the intent engine: ``switchboard nlu eval``.

Trains on the train file only and scores the test file one message at a time,
the way the local brain sees messages, so the latency is that of a real query
(single-threaded, not amortised over a batch). Without ``--shots`` it runs both
the full-data setting and the 10-examples-per-intent setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from shared.nlu.embeddings import default_encoder
from shared.nlu.intents import Example, IntentClassifier

TEXT_COLUMN = "text"
LABEL_COLUMNS = ("category", "label", "intent")
CALIBRATION_BINS = 10


class EvalReport(BaseModel):
    accuracy: float
    macro_f1: float
    # Confidence quality: mean |accuracy - confidence| over 10 confidence bins,
    # weighted by how many answers fall in each; 0 is perfectly calibrated.
    expected_calibration_error: float
    train_seconds: float
    ms_per_query: float  # median
    ms_per_query_p95: float
    # CPU time of the querying thread (median): what a query costs on an idle core,
    # since wall time on a shared machine also counts waiting for a core.
    cpu_ms_per_query: float
    n_train: int
    n_test: int
    n_labels: int
    shots: int | None
    seed: int


def read_examples(path: Path) -> list[Example]:
    """(text, label) rows of a CSV with a ``text`` column and a label column."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
        if TEXT_COLUMN not in columns or label_column is None:
            raise ValueError(f"{path}: need columns 'text' and one of {', '.join(LABEL_COLUMNS)}")
        return [(row[TEXT_COLUMN], row[label_column]) for row in reader]


def sample_per_label(examples: Sequence[Example], shots: int, seed: int) -> list[Example]:
    """``shots`` examples of each label, chosen reproducibly by ``seed``."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(examples):
        by_label.setdefault(label, []).append(i)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label]
        chosen.extend(int(i) for i in rng.choice(rows, size=min(shots, len(rows)), replace=False))
    return [examples[i] for i in sorted(chosen)]


def _calibration_error(confidences: list[float], correct: list[bool]) -> float:
    conf, hit = np.array(confidences), np.array(correct, dtype=np.float64)
    bins = np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    error = 0.0
    for b in range(CALIBRATION_BINS):
        members = bins == b
        if members.any():
            error += members.mean() * abs(hit[members].mean() - conf[members].mean())
    return float(error)


def evaluate(train: Sequence[Example], test: Sequence[Example], *, shots: int | None, seed: int) -> EvalReport:
    if shots is not None:
        train = sample_per_label(train, shots, seed)
    encoder = default_encoder()
    encoder.embed("warm up")  # loading the model is start-up cost, not training
    started = time.perf_counter()
    classifier = IntentClassifier.train(train, encoder)
    train_seconds = time.perf_counter() - started

    predicted: list[str] = []
    confidences: list[float] = []
    latencies: list[float] = []
    cpu_times: list[float] = []
    with threadpool_limits(limits=1):
        for text, _ in test:
            started, cpu_started = time.perf_counter(), time.thread_time()
            prediction = classifier.predict(text, k=1)
            latencies.append((time.perf_counter() - started) * 1000.0)
            cpu_times.append((time.thread_time() - cpu_started) * 1000.0)
            predicted.append(prediction.label)
            confidences.append(prediction.confidence)

    expected = [label for _, label in test]
    correct = [p == e for p, e in zip(predicted, expected, strict=True)]
    return EvalReport(
        accuracy=round(sum(correct) / len(correct), 4),
        macro_f1=round(float(f1_score(expected, predicted, average="macro")), 4),
        expected_calibration_error=round(_calibration_error(confidences, correct), 4),
        train_seconds=round(train_seconds, 2),
        ms_per_query=round(statistics.median(latencies), 2),
        ms_per_query_p95=round(float(np.percentile(latencies, 95)), 2),
        cpu_ms_per_query=round(statistics.median(cpu_times), 2),
        n_train=len(train),
        n_test=len(test),
        n_labels=len(classifier.labels),
        shots=shots,
        seed=seed,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard nlu eval",
        description="Train the local intent engine on TRAIN and score it on TEST.",
    )
    parser.add_argument("--train", type=Path, required=True, help="CSV: text,category")
    parser.add_argument("--test", type=Path, required=True, help="CSV: text,category")
    parser.add_argument("--shots", type=int, help="examples per intent (default: run full data and 10-shot)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the few-shot sample")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        train, test = read_examples(args.train), read_examples(args.test)
    except (OSError, ValueError) as error:
        print(f"switchboard nlu eval: {error}", file=sys.stderr)
        return 2
    if args.shots is not None and args.shots < 1:
        print("switchboard nlu eval: --shots must be at least 1", file=sys.stderr)
        return 2
    if args.shots is not None:
        result: dict[str, object] = evaluate(train, test, shots=args.shots, seed=args.seed).model_dump()
    else:
        result = {
            "full": evaluate(train, test, shots=None, seed=args.seed).model_dump(),
            "ten_shot": evaluate(train, test, shots=10, seed=args.seed).model_dump(),
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
