"""Intent classification from labelled examples, on CPU, in a few milliseconds.

Three scorers vote on every message; their scores are added with fixed weights:

- a linear SVM over the sentence embedding *and* TF-IDF word uni/bigrams: the
  embedding carries paraphrase, the words carry the exact terms that separate
  near-identical banking intents ("top up" vs "transfer"); best with many examples;
- multinomial logistic regression over the embedding alone: what holds up best
  with ten examples per intent, where the word features overfit;
- a similarity-weighted vote of the 10 nearest examples: picks up small clusters
  of phrasing that a linear boundary averages away.

The weights and C values were chosen by cross-validation on the Banking77 train
split only (docs/nlu.md). The confidence is softmax(score / T), with the
temperature T fitted on out-of-fold scores of the training examples, so 0.8
means "right about 80% of the time" on data like the examples.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from shared.arrays import read_npz, write_npz
from shared.nlu.embeddings import SentenceEncoder, default_encoder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SVM_C = 0.5
SVM_EMBEDDING_SCALE = 2.0  # the embedding's weight against the word features in the SVM
LOGISTIC_C = 10.0
LOGISTIC_WEIGHT = 0.4
NEIGHBOURS = 10
NEIGHBOUR_SHARPNESS = 0.05  # cosine gap that divides a neighbour's weight by e
NEIGHBOUR_WEIGHT = 1.0
# Used when some intent has a single example, so no out-of-fold scores exist;
# the value fitted on Banking77 with 10 examples per intent (docs/nlu.md).
FALLBACK_TEMPERATURE = 0.45

Matrix = NDArray[np.float64]
Example = tuple[str, str]  # (text, intent label)


class IntentScore(BaseModel):
    label: str
    confidence: float = Field(ge=0.0, le=1.0)


class IntentPrediction(BaseModel):
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    top: list[IntentScore]


class _Scorers:
    """The fitted parameters, as plain arrays so they save without pickle."""

    def __init__(self, arrays: dict[str, NDArray[Any]]) -> None:
        self.arrays = arrays
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, vocabulary=list(arrays["vocabulary"]))
        self.vectorizer.idf_ = arrays["idf"]
        self.n_labels = int(arrays["labels"].shape[0])
        # Both linear scorers read the embedding: fold them into one product per query.
        self._embedding_coef = np.ascontiguousarray(
            (arrays["svm_embedding_coef"] + LOGISTIC_WEIGHT * arrays["lr_coef"]).T
        )
        self._word_coef = np.ascontiguousarray(arrays["svm_word_coef"].T)
        self._bias = arrays["svm_bias"] + LOGISTIC_WEIGHT * arrays["lr_bias"]

    @classmethod
    def fit(cls, vectors: Matrix, texts: Sequence[str], y: NDArray[np.int64], n_labels: int) -> _Scorers:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        words = vectorizer.fit_transform(texts)
        svm = LinearSVC(C=SVM_C).fit(sparse.hstack([vectors * SVM_EMBEDDING_SCALE, words]).tocsr(), y)
        logistic = LogisticRegression(C=LOGISTIC_C, max_iter=3000).fit(vectors, y)
        svm_coef, svm_bias = _one_row_per_label(svm.coef_, svm.intercept_, 1.0)
        # With two labels sklearn keeps one logit d; softmax([-d/2, d/2]) == sigmoid(d).
        lr_coef, lr_bias = _one_row_per_label(logistic.coef_, logistic.intercept_, 0.5)
        dim = vectors.shape[1]
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(
            {
                "labels": np.arange(n_labels),
                "vocabulary": np.array(terms, dtype=str),
                "idf": vectorizer.idf_,
                "svm_embedding_coef": svm_coef[:, :dim] * SVM_EMBEDDING_SCALE,
                "svm_word_coef": svm_coef[:, dim:],
                "svm_bias": svm_bias,
                "lr_coef": lr_coef,
                "lr_bias": lr_bias,
                "memory": vectors.astype(np.float32),
                "memory_labels": y,
            }
        )

    def score(self, vectors: Matrix, texts: Sequence[str]) -> Matrix:
        """Fused scores, shape (len(texts), n_labels); higher is likelier."""
        words = self.vectorizer.transform(texts)
        linear = vectors @ self._embedding_coef + words @ self._word_coef + self._bias
        return np.asarray(linear + NEIGHBOUR_WEIGHT * self._neighbour_vote(vectors), dtype=np.float64)

    def _neighbour_vote(self, vectors: Matrix) -> Matrix:
        memory, memory_labels = self.arrays["memory"], self.arrays["memory_labels"]
        similarity = vectors.astype(np.float32) @ memory.T
        k = min(NEIGHBOURS, memory.shape[0])
        votes = np.zeros((vectors.shape[0], self.n_labels))
        for row, sims in enumerate(similarity):
            nearest = np.argpartition(-sims, k - 1)[:k]
            weights = np.exp((sims[nearest] - 1.0) / NEIGHBOUR_SHARPNESS)
            votes[row] = np.bincount(memory_labels[nearest], weights=weights, minlength=self.n_labels)
        return np.asarray(votes / np.clip(votes.sum(axis=1, keepdims=True), 1e-12, None), dtype=np.float64)


def _one_row_per_label(coef: Matrix, bias: Matrix, binary_scale: float) -> tuple[Matrix, Matrix]:
    if coef.shape[0] == 1:
        return np.vstack([-coef, coef]) * binary_scale, np.hstack([-bias, bias]) * binary_scale
    return coef, bias


def _softmax(scores: Matrix, temperature: float) -> Matrix:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _fit_temperature(scores: Matrix, y: NDArray[np.int64]) -> float:
    """The temperature that minimises log-loss of out-of-fold scores."""
    grid = np.geomspace(0.01, 10.0, 121)
    losses = [-np.log(_softmax(scores, t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(losses))])


class IntentClassifier:
    """Maps a customer message to one of the trained intents, with a confidence."""

    def __init__(self, labels: Sequence[str], scorers: _Scorers, temperature: float, encoder: SentenceEncoder) -> None:
        self.labels = list(labels)
        self.temperature = temperature
        self._scorers = scorers
        self._encoder = encoder

    @classmethod
    def train(
        cls,
        examples: Sequence[Example],
        encoder: SentenceEncoder | None = None,
        *,
        calibrate: bool = True,
    ) -> IntentClassifier:
        """Fit on (text, label) pairs; needs at least two distinct labels."""
        encoder = encoder or default_encoder()
        labels = sorted({label for _, label in examples})
        if len(labels) < 2:
            raise ValueError("an intent classifier needs examples of at least two intents")
        index = {label: i for i, label in enumerate(labels)}
        texts = [text for text, _ in examples]
        y = np.array([index[label] for _, label in examples], dtype=np.int64)
        vectors = encoder.embed_batch(texts).astype(np.float64)
        scorers = _Scorers.fit(vectors, texts, y, len(labels))
        temperature = FALLBACK_TEMPERATURE
        smallest = int(np.bincount(y).min())
        if calibrate and smallest >= 2:
            temperature = _fit_temperature(*_out_of_fold_scores(vectors, texts, y, len(labels)))
        return cls(labels, scorers, temperature, encoder)

    def predict(self, text: str, k: int = 3) -> IntentPrediction:
        """The likeliest intent, and the ``k`` likeliest with their confidences."""
        vector = self._encoder.embed(text).astype(np.float64)[None, :]
        probabilities = _softmax(self._scorers.score(vector, [text]), self.temperature)[0]
        ranked = np.argsort(-probabilities)[: max(1, k)]
        top = [IntentScore(label=self.labels[i], confidence=float(probabilities[i])) for i in ranked]
        return IntentPrediction(label=top[0].label, confidence=top[0].confidence, top=top)

    def top_k(self, text: str, k: int = 3) -> list[IntentScore]:
        return self.predict(text, k).top

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        arrays: dict[str, Any] = dict(self._scorers.arrays)
        arrays["labels"] = np.array(self.labels, dtype=str)
        arrays["meta"] = np.array([str(FORMAT_VERSION), self._encoder.model_id, repr(self.temperature)])
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: Path, encoder: SentenceEncoder | None = None) -> IntentClassifier:
        encoder = encoder or default_encoder()
        arrays = read_npz(path)
        version, model_id, temperature = (str(v) for v in arrays.pop("meta"))
        if version != str(FORMAT_VERSION) or model_id != encoder.model_id:
            raise ValueError(f"{path} was saved by another format or embedding model")
        labels = [str(label) for label in arrays["labels"]]
        return cls(labels, _Scorers(arrays), float(temperature), encoder)


def _out_of_fold_scores(
    vectors: Matrix, texts: Sequence[str], y: NDArray[np.int64], n_labels: int
) -> tuple[Matrix, NDArray[np.int64]]:
    # No more folds than the rarest intent has examples, so every fold trains on all intents.
    folds = StratifiedKFold(n_splits=min(3, int(np.bincount(y).min())), shuffle=True, random_state=0)
    scores = np.zeros((len(y), n_labels))
    for train, held_out in folds.split(vectors, y):
        fold = _Scorers.fit(vectors[train], [texts[i] for i in train], y[train], n_labels)
        scores[held_out] = fold.score(vectors[held_out], [texts[i] for i in held_out])
    return scores, y


def examples_fingerprint(examples: Sequence[Example], model_id: str) -> str:
    """Changes whenever the examples, the embedding model or the format change."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}\x1e{model_id}".encode())
    for text, label in examples:
        digest.update(f"\x1e{label}\x1f{text}".encode())
    return digest.hexdigest()


def load_or_train(
    examples: Sequence[Example], cache_dir: Path, encoder: SentenceEncoder | None = None
) -> IntentClassifier:
    """Reuse the classifier trained on exactly these examples, else train and cache it."""
    encoder = encoder or default_encoder()
    path = cache_dir / f"intents-{examples_fingerprint(examples, encoder.model_id)[:24]}.npz"
    if path.is_file():
        try:
            return IntentClassifier.load(path, encoder)
        except (OSError, ValueError, KeyError):
            pass  # a corrupt or foreign cache file is only a cache miss
    classifier = IntentClassifier.train(examples, encoder)
    try:
        classifier.save(path)
    except OSError as error:  # a read-only disk costs the next start-up a retrain, nothing more
        log.warning("cannot cache the intent classifier at %s: %s", path, error)
    return classifier
