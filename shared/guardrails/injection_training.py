"""Fit the learned injection detector and write ``injection_model.npz``; reproducible.

    switchboard guardrails train-injection --train ../shared/datasets/deepset-prompt-injections/train.jsonl

Attacks and benign prompts: deepset/prompt-injections' **train split** (the test split and
NotInject are for measuring only). Extra benign examples, all our own writing:

- the agents' labelled support messages (``agents/*/intents.yaml``), so "cancel my previous
  order" is known to be a request; they are in every training fold, never held out;
- ``data/benign_triggers.yaml``: ordinary messages that use the words attacks use ("please
  ignore my last email", "what are the rules for returns?", "translate this into German").
  Trained on deepset alone the first key learns that a command is an attack; these rows
  teach it otherwise. They are cross-validated with deepset's rows (held out in turn), so the
  false-positive targets below are measured on them too.

No public data set but deepset's train split is trained on. Everything is chosen by
stratified 5-fold cross-validation over deepset's rows and the trigger rows:

- ``C`` of the logistic regression: the value with the best out-of-fold recall at the
  1 % false-positive threshold (ties go to the smaller ``C``);
- the probability threshold: the out-of-fold score that 1 - ``TARGET_FPR`` of the held-out
  benign rows stay under;
- the decisive probability: the score over which the first key decides alone, the one that
  1 - ``ALONE_FPR`` of the held-out benign rows stay under;
- the similarity threshold: the highest one at which the rule (both keys, or the first alone
  over the decisive probability) still catches ``TARGET_RECALL`` of the held-out attacks.

Thresholds are the mean over three shuffles. The file records the sha256 of every input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from shared.guardrails.injection_model import MODEL_PATH, InjectionModel, char_vectorizer, segments
from shared.nlu.embeddings import SentenceEncoder, default_encoder

_REPO_ROOT = Path(__file__).resolve().parents[2]
C_GRID = (1.0, 4.0, 16.0, 64.0)
TARGET_FPR = 0.01
TARGET_RECALL = 0.80
# The first key deciding alone (held-out benign at 0.5 %) flagged 21 % of NotInject: off unless asked.
ALONE_FPR: float | None = None
FOLDS = 5
SEEDS = (0, 1, 2)
# An attack's sentence this close to a benign sentence is the ordinary question the attack
# was appended to: it is not kept as an attack passage.
BENIGN_PASSAGE = 0.8

Matrix = NDArray[np.float64]


def default_benign_files() -> list[Path]:
    return sorted(_REPO_ROOT.glob("agents/*/intents.yaml"))


def default_cv_benign_files() -> list[Path]:
    return [Path(__file__).with_name("data") / "benign_triggers.yaml"]


def read_labelled(path: Path) -> tuple[list[str], NDArray[np.int64]]:
    """deepset's jsonl: one {"text", "label"} per line, label 1 = injection."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(r["text"]) for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


def read_benign(paths: Sequence[Path]) -> list[str]:
    """Support messages from intents YAML files (intent: [examples]), all benign."""
    import yaml

    texts: list[str] = []
    for path in paths:
        for examples in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).values():
            texts += [str(e) for e in examples or ()]
    return texts


class _Fit:
    """One fit of both keys on some texts; scores others."""

    def __init__(self, texts: Sequence[str], vectors: Matrix, y: NDArray[np.int64], c: float) -> None:
        self.vectorizer = char_vectorizer().fit(texts)
        chars = self.vectorizer.transform(texts)
        self.regression = LogisticRegression(C=c, max_iter=5000).fit(sparse.hstack([vectors, chars]).tocsr(), y)
        self.attacks = self._attack_passages(texts, y)

    def _attack_passages(self, texts: Sequence[str], y: NDArray[np.int64]) -> sparse.csr_matrix:
        benign = self.vectorizer.transform(
            [s for t, label in zip(texts, y, strict=True) if not label for s in segments(t)]
        )
        attack = self.vectorizer.transform([s for t, label in zip(texts, y, strict=True) if label for s in segments(t)])
        closest_benign = (
            (attack @ benign.T).max(axis=1).toarray().ravel() if benign.shape[0] else np.zeros(attack.shape[0])
        )
        return attack[np.flatnonzero(closest_benign < BENIGN_PASSAGE)].tocsr()

    def probabilities(self, texts: Sequence[str], vectors: Matrix) -> Matrix:
        features = sparse.hstack([vectors, self.vectorizer.transform(texts)]).tocsr()
        return np.asarray(self.regression.predict_proba(features)[:, 1], dtype=np.float64)

    def similarities(self, texts: Sequence[str]) -> Matrix:
        attacks_t = self.attacks.T.tocsr()
        return np.array([float((self.vectorizer.transform(segments(t)) @ attacks_t).max()) for t in texts])


def _recall_at_fpr(scores: Matrix, y: NDArray[np.int64], fpr: float) -> float:
    threshold = float(np.quantile(scores[y == 0], 1 - fpr))
    return float((scores[y == 1] > threshold).mean())


def _out_of_fold(
    texts: list[str],
    vectors: Matrix,
    y: NDArray[np.int64],
    extra: list[str],
    extra_vectors: Matrix,
    c: float,
    seed: int,
) -> tuple[Matrix, Matrix]:
    """Out-of-fold (probability, similarity) for every deepset row; the extra benign rows train every fold."""
    probability, similarity = np.zeros(len(y)), np.zeros(len(y))
    folds = StratifiedKFold(n_splits=min(FOLDS, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for train, held in folds.split(vectors, y):
        fit = _Fit(
            [texts[i] for i in train] + extra,
            np.vstack([vectors[train], extra_vectors]),
            np.concatenate([y[train], np.zeros(len(extra), dtype=np.int64)]),
            c,
        )
        held_texts = [texts[i] for i in held]
        probability[held] = fit.probabilities(held_texts, vectors[held])
        similarity[held] = fit.similarities(held_texts)
    return probability, similarity


def _similarity_threshold(
    probability: Matrix,
    similarity: Matrix,
    y: NDArray[np.int64],
    p_threshold: float,
    decisive: float,
    target_recall: float,
) -> float:
    """The highest similarity threshold at which the rule still catches ``target_recall`` of the attacks."""
    alone = int(((y == 1) & (probability >= decisive)).sum())
    attacks = np.sort(similarity[(y == 1) & (probability >= p_threshold) & (probability < decisive)])[::-1]
    needed = int(np.ceil(target_recall * int((y == 1).sum()))) - alone
    if needed <= 0:
        return float(attacks[0]) if len(attacks) else 1.0
    if len(attacks) < needed:  # the first key alone misses more: the second must not cut further
        return float(attacks[-1]) if len(attacks) else 0.0
    return float(attacks[needed - 1])


def flags(probability: Matrix, similarity: Matrix, p_threshold: float, s_threshold: float, decisive: float) -> Any:
    """The detector's rule: both keys, or the first alone over the decisive probability."""
    return ((probability >= p_threshold) & (similarity >= s_threshold)) | (probability >= decisive)


def choose_thresholds(
    runs: Sequence[tuple[Matrix, Matrix]],
    y: NDArray[np.int64],
    target_fpr: float = TARGET_FPR,
    target_recall: float = TARGET_RECALL,
    alone_fpr: float | None = ALONE_FPR,
) -> dict[str, float]:
    """Thresholds from out-of-fold scores (the mean over shuffles) and the rule's out-of-fold rates."""
    p_t = [float(np.quantile(p[y == 0], 1 - target_fpr)) for p, _ in runs]
    d_t = [float(np.quantile(p[y == 0], 1 - alone_fpr)) if alone_fpr is not None else 2.0 for p, _ in runs]
    s_t = [_similarity_threshold(p, s, y, pt, dt, target_recall) for (p, s), pt, dt in zip(runs, p_t, d_t, strict=True)]
    p_threshold, decisive, s_threshold = float(np.mean(p_t)), float(np.mean(d_t)), float(np.mean(s_t))
    oof = [flags(p, s, p_threshold, s_threshold, decisive) for p, s in runs]
    return {
        "probability_threshold": p_threshold,
        "similarity_threshold": s_threshold,
        "decisive_probability": decisive,
        "recall": float(np.mean([f[y == 1].mean() for f in oof])),
        "false_positive_rate": float(np.mean([f[y == 0].mean() for f in oof])),
    }


def cross_validate(
    train_file: Path,
    benign_files: Sequence[Path],
    cv_benign_files: Sequence[Path],
    encoder: SentenceEncoder,
    c_grid: Sequence[float] = C_GRID,
) -> dict[str, Any]:
    """Embed everything once and score every row out of fold, for each ``C`` and shuffle."""
    deepset_texts, deepset_y = read_labelled(train_file)
    cv_benign = read_benign(cv_benign_files)
    texts = deepset_texts + cv_benign
    y = np.concatenate([deepset_y, np.zeros(len(cv_benign), dtype=np.int64)])
    extra = read_benign(benign_files)
    vectors = encoder.embed_batch(texts).astype(np.float64)
    extra_vectors = encoder.embed_batch(extra).astype(np.float64).reshape(len(extra), -1)
    runs = {c: [_out_of_fold(texts, vectors, y, extra, extra_vectors, c, seed) for seed in SEEDS] for c in c_grid}
    recall_by_c = {c: float(np.mean([_recall_at_fpr(p, y, 0.01) for p, _ in runs[c]])) for c in c_grid}
    best_c = max(c_grid, key=lambda c: (round(recall_by_c[c], 3), -c))
    return {
        "texts": texts,
        "y": y,
        "vectors": vectors,
        "extra": extra,
        "extra_vectors": extra_vectors,
        "runs": runs,
        "recall_by_c": recall_by_c,
        "c": best_c,
        "deepset_rows": len(deepset_y),
    }


def train(
    train_file: Path,
    benign_files: Sequence[Path],
    encoder: SentenceEncoder | None = None,
    c_grid: Sequence[float] = C_GRID,
    cv_benign_files: Sequence[Path] = (),
    target_fpr: float = TARGET_FPR,
    target_recall: float = TARGET_RECALL,
    alone_fpr: float | None = ALONE_FPR,
) -> tuple[InjectionModel, dict[str, Any]]:
    encoder = encoder or default_encoder()
    cv = cross_validate(train_file, benign_files, cv_benign_files, encoder, c_grid)
    texts, y, vectors, extra, extra_vectors = cv["texts"], cv["y"], cv["vectors"], cv["extra"], cv["extra_vectors"]
    best_c, recall_by_c = cv["c"], cv["recall_by_c"]
    chosen = choose_thresholds(cv["runs"][best_c], y, target_fpr, target_recall, alone_fpr)
    fit = _Fit(
        texts + extra,
        np.vstack([vectors, extra_vectors]),
        np.concatenate([y, np.zeros(len(extra), dtype=np.int64)]),
        best_c,
    )
    dim = vectors.shape[1]
    coef = fit.regression.coef_.ravel()
    vocabulary = sorted(fit.vectorizer.vocabulary_, key=fit.vectorizer.vocabulary_.get)
    arrays: dict[str, NDArray[Any]] = {
        "vocabulary": np.array(vocabulary, dtype=str),
        "idf": fit.vectorizer.idf_.astype(np.float32),
        "embedding_coef": coef[:dim].astype(np.float32),
        "char_coef": coef[dim:].astype(np.float32),
        "bias": np.array(float(fit.regression.intercept_[0])),
        "attack_data": fit.attacks.data.astype(np.float16),  # cosines need no more
        "attack_indices": fit.attacks.indices.astype(np.int32),
        "attack_indptr": fit.attacks.indptr.astype(np.int32),
        "attack_shape": np.array(fit.attacks.shape, dtype=np.int64),
    }
    report = {
        "cv_recall_at_1pct_fpr_by_c": {str(c): round(r, 4) for c, r in recall_by_c.items()},
        "c": best_c,
        "targets": {"false_positive_rate": target_fpr, "recall": target_recall, "alone_false_positive_rate": alone_fpr},
        "cv_recall": round(chosen["recall"], 4),
        "cv_false_positive_rate": round(chosen["false_positive_rate"], 4),
    }
    meta: dict[str, Any] = {
        "embedding_model": encoder.model_id,
        "probability_threshold": round(chosen["probability_threshold"], 4),
        "similarity_threshold": round(chosen["similarity_threshold"], 4),
        "decisive_probability": round(chosen["decisive_probability"], 4),
        "train_file": train_file.name,
        "train_sha256": _sha256(train_file),
        "train_rows": cv["deepset_rows"],
        "benign_files": {_shown(p): _sha256(p) for p in benign_files},
        "benign_rows": len(extra),
        "cv_benign_files": {_shown(p): _sha256(p) for p in cv_benign_files},
        "cv_benign_rows": len(y) - cv["deepset_rows"],
        "attack_passages": int(fit.attacks.shape[0]),
        "cross_validation": report,
    }
    return InjectionModel(arrays, meta, encoder), meta


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shown(path: Path) -> str:
    """``billing/intents.yaml``: the same name whether read from the tree or a snapshot of it."""
    return f"{path.parent.name}/{path.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard guardrails train-injection", description=__doc__)
    parser.add_argument("--train", required=True, help="deepset-prompt-injections train.jsonl (text, label)")
    parser.add_argument(
        "--benign",
        nargs="*",
        default=None,
        help="intents YAML files of benign support messages (default: agents/*/intents.yaml; none: --benign)",
    )
    parser.add_argument(
        "--benign-cv",
        nargs="*",
        default=None,
        help="YAML files of benign messages cross-validated with deepset's rows (default: data/benign_triggers.yaml)",
    )
    parser.add_argument("--target-fpr", type=float, default=TARGET_FPR, help="held-out benign flagged by the first key")
    parser.add_argument("--target-recall", type=float, default=TARGET_RECALL, help="held-out attacks to catch")
    parser.add_argument(
        "--alone-fpr",
        type=float,
        default=ALONE_FPR or 0.0,
        help="held-out benign over the decisive probability, where the first key decides alone (default 0: never)",
    )
    parser.add_argument("--out", default=str(MODEL_PATH), help=f"where to write the model (default {MODEL_PATH.name})")
    args = parser.parse_args(argv)
    train_file = Path(args.train)
    if not train_file.is_file():
        parser.error(f"{train_file} not found")
    benign = default_benign_files() if args.benign is None else [Path(p) for p in args.benign]
    cv_benign = default_cv_benign_files() if args.benign_cv is None else [Path(p) for p in args.benign_cv]
    alone = args.alone_fpr if args.alone_fpr > 0 else None
    model, meta = train(
        train_file,
        benign,
        cv_benign_files=cv_benign,
        target_fpr=args.target_fpr,
        target_recall=args.target_recall,
        alone_fpr=alone,
    )
    model.save(Path(args.out))
    json.dump({"written": args.out, **meta}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
