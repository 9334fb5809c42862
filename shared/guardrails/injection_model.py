"""The learned injection detector that runs next to the rules: two keys, both must turn.

1. A logistic regression over the message's sentence embedding (all-MiniLM, 384-d) and
   its character n-grams (TF-IDF, 2-5 characters inside words, which carry the German and
   misspelt attacks an English-centric embedding misses): "does this read like an attack?"
2. The closest passage of a known attack: the largest cosine, over the message and each
   of its sentences, to the attack passages of the training data (their character n-grams).

Trained on deepset/prompt-injections' train split alone, the first key learns that a
command is an attack and a question is not: alone it flags most ordinary requests
("write me a receipt", "can I ignore this warning?"). The second key keeps it to what looks
like an attack it has seen, translated or reworded. Both thresholds were chosen by
cross-validation on the training data (shared/guardrails/injection_training.py).

The fitted weights ship in ``injection_model.npz`` (plain arrays, no pickle); nothing trains
at run time. The model loads on first use, once per process. When the file or the
embedding package is missing the rules work alone: `learned_score` returns None and logs
one warning.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from shared.arrays import read_npz, write_npz
from shared.remembered import Remembered

if TYPE_CHECKING:
    from shared.nlu.embeddings import SentenceEncoder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_PATH = Path(__file__).with_name("injection_model.npz")
# Fewer words than this carry no instruction the model can judge ("Agent!", a name).
MIN_WORDS = 4
# The character n-grams both keys read; saved with the weights so a reader cannot differ.
CHAR_NGRAMS = (2, 5)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+|\\n")

Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LearnedScore:
    probability: float  # the first key: P(attack) from the linear model
    similarity: float  # the second key: cosine to the closest known attack passage
    flagged: bool  # both keys at or over their thresholds, or the first over the decisive probability


def word_count(text: str) -> int:
    return len(text.split())


def segments(text: str) -> list[str]:
    """The sentences of ``text`` worth comparing (two words or more), then the whole text.

    An attack is often a line appended to an ordinary question; compared sentence by
    sentence it is not diluted by the question.
    """
    parts = [part.strip() for part in _SENTENCE_END.split(text)]
    return [part for part in parts if word_count(part) >= 2 and part != text.strip()] + [text]


def char_vectorizer(vocabulary: Sequence[str] | None = None, idf: Matrix | None = None) -> TfidfVectorizer:
    """The character n-gram TF-IDF both keys use; fitted when ``vocabulary`` is None."""
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, sublinear_tf=True, vocabulary=vocabulary)
    if idf is not None:
        vectorizer.idf_ = idf
    return vectorizer


REMEMBERED_SCORES = 4096
REMEMBER_SCORE_CHARS = 4000  # a longer text is scored again: 4,096 of them could hold 16 MB


class InjectionModel:
    """The fitted detector: ``score`` one text, or ``score_batch`` many (one embedding batch)."""

    def __init__(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any], encoder: SentenceEncoder) -> None:
        self.arrays = arrays
        self.meta = meta
        self.probability_threshold = float(meta["probability_threshold"])
        self.similarity_threshold = float(meta["similarity_threshold"])
        # Over this the first key decides alone (a model saved without one: never).
        self.decisive_probability = float(meta.get("decisive_probability", 2.0))
        self._encoder = encoder
        self._vectorizer = char_vectorizer([str(t) for t in arrays["vocabulary"]], arrays["idf"].astype(np.float64))
        self._embedding_coef = arrays["embedding_coef"].astype(np.float64)
        self._char_coef = arrays["char_coef"].astype(np.float64)
        self._bias = float(arrays["bias"])
        self._attacks = sparse.csr_matrix(
            (arrays["attack_data"].astype(np.float64), arrays["attack_indices"], arrays["attack_indptr"]),
            shape=tuple(int(n) for n in arrays["attack_shape"]),
        ).T.tocsr()  # (features, passages): one product gives every passage's cosine
        # The scores of the latest texts: a score depends on the text alone, and customers
        # send the same short messages all day ("thanks", "yes please", "is anyone there?").
        self._remembered: Remembered[str, LearnedScore] = Remembered(REMEMBERED_SCORES)

    def score(self, text: str) -> LearnedScore:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Sequence[str]) -> list[LearnedScore]:
        known = self._remembered.known(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            scored = list(zip(missing, self._scored(missing), strict=True))
            known.update(scored)
            self._remembered.keep((t, score) for t, score in scored if len(t) <= REMEMBER_SCORE_CHARS)
        return [known[t] for t in texts]

    def _scored(self, texts: Sequence[str]) -> list[LearnedScore]:
        if not texts:
            return []
        vectors = self._encoder.embed_batch(list(texts)).astype(np.float64)
        # One TF-IDF pass over every text's segments; each text is its own last segment, so
        # its row serves the first key too (sklearn's transform costs ~1 ms a call in Python).
        parts = [segments(text) for text in texts]
        ends = np.cumsum([len(p) for p in parts])
        grams = self._vectorizer.transform([segment for p in parts for segment in p])
        logits = vectors @ self._embedding_coef + grams[ends - 1] @ self._char_coef + self._bias
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        # The second key: the closest of a text's segments to the closest attack passage.
        cosines = (grams @ self._attacks).tocsr()
        out = []
        for i, probability in enumerate(probabilities):
            closest = cosines[ends[i] - len(parts[i]) : ends[i]]
            similarity = float(closest.max()) if closest.nnz else 0.0
            flagged = (
                probability >= self.probability_threshold and similarity >= self.similarity_threshold
            ) or probability >= self.decisive_probability
            out.append(LearnedScore(round(float(probability), 4), round(similarity, 4), bool(flagged)))
        return out

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        meta = np.array(json.dumps({"format": FORMAT_VERSION, **self.meta}, sort_keys=True))
        # a file shipped in the repository, read by every worker
        write_npz(path, {"meta": meta, **self.arrays}, compressed=True, mode=0o644)

    @classmethod
    def load(cls, path: Path, encoder: SentenceEncoder | None = None) -> InjectionModel:
        from shared.nlu.embeddings import default_encoder

        encoder = encoder or default_encoder()
        arrays = read_npz(path)
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT_VERSION or meta.get("embedding_model") != encoder.model_id:
            raise ValueError(f"{path} was saved by another format or embedding model")
        return cls(arrays, meta, encoder)


class _ProcessModel:
    """The one model of this process: loaded on first use; None for good when it cannot be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._model: InjectionModel | None = None
        self.path: Path | None = MODEL_PATH

    def get(self) -> InjectionModel | None:
        if self._loaded:
            return self._model
        with self._lock:
            if not self._loaded:
                self._model = self._open()
                self._loaded = True
            return self._model

    def _open(self) -> InjectionModel | None:
        if self.path is None:
            return None
        try:
            model = InjectionModel.load(self.path)
            model.score("warm the embedding model up")
        except Exception as exc:  # a missing file or package must cost the learned half, never a turn
            log.warning("learned injection detector unavailable, the rules work alone: %s: %s", type(exc).__name__, exc)
            return None
        return model

    def use(self, path: Path | None) -> None:
        with self._lock:
            self.path, self._model, self._loaded = path, None, False


_process_model = _ProcessModel()


def use_model(path: Path | None) -> None:
    """Load the detector from ``path`` from now on in this process (None: rules alone)."""
    _process_model.use(path)


def process_model() -> InjectionModel | None:
    return _process_model.get()


def learned_score(text: str) -> LearnedScore | None:
    """The process-wide model's score, or None when the text is too short or there is no model."""
    return learned_scores([text])[0]


def learned_scores(texts: Sequence[str]) -> list[LearnedScore | None]:
    """`learned_score` of each text, with one embedding batch for all of them."""
    out: list[LearnedScore | None] = [None] * len(texts)
    judged = [i for i, text in enumerate(texts) if word_count(text) >= MIN_WORDS]
    model = _process_model.get() if judged else None
    if model is None:
        return out
    try:
        scores = model.score_batch([texts[i] for i in judged])
    except Exception as exc:  # onnxruntime failing mid-run: these texts are judged by the rules
        log.warning("learned injection detector failed, the rules judged alone: %s", type(exc).__name__)
        return out
    for i, score in zip(judged, scores, strict=True):
        out[i] = score
    return out
